//! The on-disk cache of prepared datasets.
//!
//! File `<dir>/<key>.mdrec-cache`, key = sha256 over the cache format version, a fingerprint of
//! this crate's source ([`CODE_HASH`], so a cache written by other encoding code is a miss even
//! when nobody bumped the version), the canonical JSON of the schema spec, the split spec, the
//! source config and, for each source file, its path, length and sha256. Layout (little-endian):
//!
//! ```text
//! magic "MDRECDC\0" | u32 version | 32-byte key | u64 body length | body | sha256(body)
//! body = bytes(schema json) | bytes(vocabs json) | bytes(source) | train | valid | test
//! ```
//!
//! A file whose key differs is a miss. A truncated or corrupted file (length or checksum
//! mismatch, undecodable body) is reported to the caller and rebuilt, never trusted.
//! Writes go to a temporary file that is renamed into place.
//!
//! The folder is bounded: after a write, the least recently used `*.mdrec-cache` files (a hit
//! refreshes a file's modification time) are removed until the folder's cache files total at
//! most [`max_cache_bytes`] (4 GiB, or `MDREC_CACHE_MAX_GB`); the file just written is kept.
//! Every change of the data code or the config makes new files, so without a bound the folder
//! only grows.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::prepared::Prepared;
use crate::schema::SchemaSpec;
use crate::split::SplitSpec;
use crate::store::{put_bytes, put_u64, EncodedData, Reader};
use crate::DataError;

/// Magic bytes of a cache file.
pub const MAGIC: &[u8; 8] = b"MDRECDC\0";
/// Cache file layout version (header and body framing); bump when the layout changes. Changes
/// to how data is encoded are covered by [`CODE_HASH`].
pub const CACHE_VERSION: u32 = 3;
/// Fingerprint of this crate's source at build time (see `build.rs`): any change to the data
/// code makes old cache files misses, so they are rebuilt rather than trusted.
pub const CODE_HASH: &str = env!("MDREC_DATA_CODE_HASH");

fn file_sha256(path: &Path) -> Result<(u64, [u8; 32]), DataError> {
    let mut f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        len += n as u64;
        h.update(&buf[..n]);
    }
    Ok((len, h.finalize().into()))
}

/// The cache key of a request.
pub fn cache_key(
    spec: &SchemaSpec,
    split: &SplitSpec,
    config_json: &str,
    files: &[PathBuf],
) -> Result<[u8; 32], DataError> {
    cache_key_for_code(CODE_HASH, spec, split, config_json, files)
}

/// [`cache_key`] as data code with fingerprint `code` would compute it.
pub fn cache_key_for_code(
    code: &str,
    spec: &SchemaSpec,
    split: &SplitSpec,
    config_json: &str,
    files: &[PathBuf],
) -> Result<[u8; 32], DataError> {
    let mut h = Sha256::new();
    let mut part = |tag: &str, b: &[u8]| {
        h.update(tag.as_bytes());
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    part("version", &CACHE_VERSION.to_le_bytes());
    part("code", code.as_bytes());
    part("spec", spec.canonical_json().as_bytes());
    part(
        "split",
        serde_json::to_string(split)
            .expect("split serializes")
            .as_bytes(),
    );
    part("source", config_json.as_bytes());
    for f in files {
        let (len, sha) = file_sha256(f)?;
        part("file", f.display().to_string().as_bytes());
        part("len", &len.to_le_bytes());
        part("sha256", &sha);
    }
    Ok(h.finalize().into())
}

/// Loads a cache file. `Ok(None)`: no file or a different key (a plain miss).
/// `Err(reason)`: the file exists with this key but is truncated or corrupt.
pub fn load(path: &Path, key: &[u8; 32]) -> Result<Option<Prepared>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read cache file: {e}")),
    };
    let mut r = Reader::new(&bytes);
    let head = (|| {
        let magic = r.take(8)?;
        let version = r.u32()?;
        let k = r.take(32)?;
        let len = r.u64()?;
        Some((magic, version, k, len))
    })();
    let Some((magic, version, k, len)) = head else {
        return Err("truncated header".into());
    };
    if magic != MAGIC {
        return Err("bad magic bytes".into());
    }
    if version != CACHE_VERSION || k != key {
        return Ok(None);
    }
    let Some(body) = usize::try_from(len).ok().and_then(|l| r.take(l)) else {
        return Err(format!("truncated body (expected {len} bytes)"));
    };
    let Some(sum) = r.take(32) else {
        return Err("truncated checksum".into());
    };
    if !r.at_end() {
        return Err("trailing bytes after checksum".into());
    }
    if Sha256::digest(body).as_slice() != sum {
        return Err("checksum mismatch (corrupted file)".into());
    }
    let p = decode_body(body).ok_or_else(|| "undecodable body".to_string())?;
    // Recently used for the eviction order (best effort: a read-only folder still hits).
    if let Ok(f) = std::fs::File::options().append(true).open(path) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
    Ok(Some(p))
}

/// The bound on a cache folder's `*.mdrec-cache` files: `MDREC_CACHE_MAX_GB` (a positive
/// number of GiB) or 4 GiB.
pub fn max_cache_bytes() -> Result<u64, DataError> {
    match std::env::var("MDREC_CACHE_MAX_GB") {
        Err(_) => Ok(4 << 30),
        Ok(v) => match v.trim().parse::<f64>() {
            Ok(g) if g.is_finite() && g > 0.0 => Ok((g * (1u64 << 30) as f64) as u64),
            _ => Err(DataError::Config(format!(
                "MDREC_CACHE_MAX_GB must be a positive number of GiB, got `{v}`"
            ))),
        },
    }
}

/// Removes the least recently modified `*.mdrec-cache` files of `dir` (never `keep`) until
/// they total at most `max_bytes`; returns the removed paths. Files that vanish meanwhile
/// (another process evicting) are skipped.
pub fn evict(dir: &Path, keep: &Path, max_bytes: u64) -> Result<Vec<PathBuf>, DataError> {
    let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let Ok(e) = e else { continue };
        let path = e.path();
        if path.extension().is_none_or(|x| x != "mdrec-cache") {
            continue;
        }
        let Ok(m) = e.metadata() else { continue };
        files.push((m.modified().unwrap_or(std::time::UNIX_EPOCH), m.len(), path));
    }
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    files.sort();
    let mut removed = Vec::new();
    for (_, len, path) in files {
        if total <= max_bytes {
            break;
        }
        if path == keep {
            continue;
        }
        if std::fs::remove_file(&path).is_ok() {
            total -= len;
            removed.push(path);
        }
    }
    Ok(removed)
}

fn decode_body(body: &[u8]) -> Option<Prepared> {
    let mut r = Reader::new(body);
    let schema = serde_json::from_slice(r.bytes()?).ok()?;
    let vocabs = serde_json::from_slice(r.bytes()?).ok()?;
    let source = String::from_utf8(r.bytes()?.to_vec()).ok()?;
    let train = EncodedData::read_from(&mut r)?;
    let valid = EncodedData::read_from(&mut r)?;
    let test = EncodedData::read_from(&mut r)?;
    r.at_end().then_some(Prepared {
        schema,
        vocabs,
        train,
        valid,
        test,
        source,
        cache: None,
    })
}

/// Writes a cache file atomically (temporary file + rename).
pub fn store(path: &Path, key: &[u8; 32], p: &Prepared) -> Result<(), DataError> {
    let mut body = Vec::new();
    put_bytes(
        &mut body,
        serde_json::to_string(&p.schema)
            .expect("schema serializes")
            .as_bytes(),
    );
    put_bytes(
        &mut body,
        serde_json::to_string(&p.vocabs)
            .expect("vocabs serialize")
            .as_bytes(),
    );
    put_bytes(&mut body, p.source.as_bytes());
    p.train.write_to(&mut body);
    p.valid.write_to(&mut body);
    p.test.write_to(&mut body);
    let mut out = Vec::with_capacity(body.len() + 84);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&CACHE_VERSION.to_le_bytes());
    out.extend_from_slice(key);
    put_u64(&mut out, body.len() as u64);
    out.extend_from_slice(&body);
    out.extend_from_slice(&Sha256::digest(&body));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, &out).map_err(|e| DataError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| DataError::io(path, e))?;
    if let Some(dir) = path.parent() {
        evict(dir, path, max_cache_bytes()?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_removes_the_least_recently_used_files_and_keeps_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = std::time::SystemTime::now() - std::time::Duration::from_secs(1000);
        let file = |name: &str, len: usize, age: u64| {
            let p = dir.path().join(name);
            std::fs::write(&p, vec![0u8; len]).unwrap();
            let f = std::fs::File::options().append(true).open(&p).unwrap();
            f.set_modified(t0 + std::time::Duration::from_secs(age))
                .unwrap();
            p
        };
        let old = file("a.mdrec-cache", 100, 1);
        let mid = file("b.mdrec-cache", 100, 2);
        let new = file("c.mdrec-cache", 100, 3);
        let other = file("data.csv", 1000, 0);
        // the oldest file is the one just written: kept; the next oldest goes
        let removed = evict(dir.path(), &old, 200).unwrap();
        assert_eq!(removed, vec![mid.clone()]);
        assert!(old.exists() && new.exists() && other.exists());
        assert!(evict(dir.path(), &new, 200).unwrap().is_empty());
        assert_eq!(evict(dir.path(), &new, 0).unwrap(), vec![old]);
        assert!(new.exists() && other.exists());
    }
}
