//! The one data path every source goes through: source -> [`RawTable`] -> split row indices ->
//! fit on train -> encode all splits ([`Prepared`]), with an optional on-disk cache.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::aread;
use crate::cache;
use crate::fit::{fit_encode, Vocabs};
use crate::movielens::{self, MovieLensDomain, MovieLensOrder};
use crate::raw::RawTable;
use crate::rng::Rng;
use crate::schema::{Schema, SchemaSpec};
use crate::store::EncodedData;
use crate::synthetic::{self, SyntheticConfig};
use crate::{csv, DataError};

/// How rows are split into train / valid / test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SplitSpec {
    /// Source order, cumulative-floor boundaries.
    Sequential {
        /// train / valid / test fractions, summing to 1.
        ratios: [f64; 3],
    },
    /// Shuffle with `Rng::for_stream(seed, "split")`, cumulative-floor boundaries, then each
    /// split's rows sorted ascending.
    Random {
        /// train / valid / test fractions, summing to 1.
        ratios: [f64; 3],
        /// Split seed.
        seed: u64,
    },
    /// `t < valid_from` -> train, `valid_from <= t < test_from` -> valid, else test.
    ByTime {
        /// Integer time column.
        column: String,
        /// First time of the validation split.
        valid_from: i64,
        /// First time of the test split.
        test_from: i64,
    },
    /// By quantiles of an integer time column (the AREAD Amazon protocol: 0.9 / 0.95):
    /// `t < q(valid_q)` -> train, `q(valid_q) <= t < q(test_q)` -> valid, else test, where
    /// `q` is the quantile over all rows with linear interpolation (pandas' default).
    TimeQuantiles {
        /// Integer time column.
        column: String,
        /// Quantile where validation starts, in [0, 1].
        valid_q: f64,
        /// Quantile where test starts, in [valid_q, 1].
        test_q: f64,
    },
}

/// The named MovieLens split protocols: `"m3oe"` (sequential 0.8/0.1/0.1, the default) and
/// `"random"` (random 0.8/0.1/0.1 with `seed`).
pub fn movielens_split(name: &str, seed: u64) -> Result<SplitSpec, DataError> {
    let ratios = [0.8, 0.1, 0.1];
    match name {
        "m3oe" => Ok(SplitSpec::Sequential { ratios }),
        "random" => Ok(SplitSpec::Random { ratios, seed }),
        other => Err(DataError::Config(format!(
            "unknown movielens split `{other}`; expected one of: m3oe, random"
        ))),
    }
}

/// The quantile `q` of `values` with linear interpolation between the two nearest ranks
/// (pandas / numpy default): position `q (n - 1)` in sorted order. `values` must not be empty.
pub fn quantile_linear(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    sorted_quantile(&v, q)
}

/// [`quantile_linear`] on already sorted values.
pub(crate) fn sorted_quantile(v: &[f64], q: f64) -> f64 {
    let pos = q * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    let frac = pos - lo as f64;
    v[lo] + (v[hi] - v[lo]) * frac
}

fn check_ratios(r: &[f64; 3]) -> Result<(), DataError> {
    let sum: f64 = r.iter().sum();
    if r.iter().any(|x| !x.is_finite() || *x < 0.0) || (sum - 1.0).abs() > 1e-6 {
        return Err(DataError::Config(format!(
            "split ratios must be non-negative and sum to 1, got {r:?}"
        )));
    }
    Ok(())
}

/// Cumulative-floor boundaries: `[floor(r0 n), floor((r0 + r1) n)]`.
pub fn ratio_bounds(n: usize, r: &[f64; 3]) -> (usize, usize) {
    let a = ((r[0] * n as f64).floor() as usize).min(n);
    let b = (((r[0] + r[1]) * n as f64).floor() as usize).clamp(a, n);
    (a, b)
}

/// Row indices of train / valid / test.
pub fn split_rows(t: &RawTable, split: &SplitSpec) -> Result<[Vec<u32>; 3], DataError> {
    let n = t.n_rows();
    match split {
        SplitSpec::Sequential { ratios } => {
            check_ratios(ratios)?;
            let (a, b) = ratio_bounds(n, ratios);
            let n = n as u32;
            Ok([
                (0..a as u32).collect(),
                (a as u32..b as u32).collect(),
                (b as u32..n).collect(),
            ])
        }
        SplitSpec::Random { ratios, seed } => {
            check_ratios(ratios)?;
            let (a, b) = ratio_bounds(n, ratios);
            let mut rows: Vec<u32> = (0..n as u32).collect();
            Rng::for_stream(*seed, "split").shuffle(&mut rows);
            let mut out = [rows[..a].to_vec(), rows[a..b].to_vec(), rows[b..].to_vec()];
            for s in &mut out {
                s.sort_unstable();
            }
            Ok(out)
        }
        SplitSpec::ByTime {
            column,
            valid_from,
            test_from,
        } => {
            if valid_from > test_from {
                return Err(DataError::Config(format!(
                    "by-time split: valid_from ({valid_from}) is after test_from ({test_from})"
                )));
            }
            let (col, times) = int_times(t, column, "by-time split")?;
            Ok(cut_by_time(
                &col.codes,
                &times,
                *valid_from as f64,
                *test_from as f64,
            ))
        }
        SplitSpec::TimeQuantiles {
            column,
            valid_q,
            test_q,
        } => {
            if !(0.0..=1.0).contains(valid_q) || !(0.0..=1.0).contains(test_q) || valid_q > test_q {
                return Err(DataError::Config(format!(
                    "time-quantile split: need 0 <= valid_q <= test_q <= 1, got {valid_q} and {test_q}"
                )));
            }
            if n == 0 {
                return Ok(Default::default());
            }
            let (col, times) = int_times(t, column, "time-quantile split")?;
            let mut all: Vec<f64> = col
                .codes
                .iter()
                .map(|&c| times[c as usize] as f64)
                .collect();
            all.sort_by(f64::total_cmp);
            let (a, b) = (
                sorted_quantile(&all, *valid_q),
                sorted_quantile(&all, *test_q),
            );
            Ok(cut_by_time(&col.codes, &times, a, b))
        }
    }
}

/// The integer value of each distinct raw value of a time column.
fn int_times<'t>(
    t: &'t RawTable,
    column: &str,
    what: &str,
) -> Result<(&'t crate::raw::RawColumn, Vec<i64>), DataError> {
    let col = t.require(column, what, "split")?;
    let mut times = Vec::with_capacity(col.dict.len());
    for (c, v) in col.dict.iter().enumerate() {
        match v.trim().parse::<i64>() {
            Ok(x) => times.push(x),
            Err(_) => {
                let r = col.first_row_with(c as u32).unwrap_or(0);
                return Err(t.error_at(r, column, format!("not an integer time: `{v}`")));
            }
        }
    }
    Ok((col, times))
}

/// `x < a` -> train, `a <= x < b` -> valid, else test (compared as f64; exact below 2^53).
fn cut_by_time(codes: &[u32], times: &[i64], a: f64, b: f64) -> [Vec<u32>; 3] {
    let mut out: [Vec<u32>; 3] = Default::default();
    for (r, &c) in codes.iter().enumerate() {
        let x = times[c as usize] as f64;
        let k = if x < a {
            0
        } else if x < b {
            1
        } else {
            2
        };
        out[k].push(r as u32);
    }
    out
}

/// Where a prepared result came from in the cache.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheInfo {
    /// The cache file.
    pub path: PathBuf,
    /// True when the result was loaded from the cache.
    pub hit: bool,
    /// Set when an existing cache file was rejected (corrupt, truncated) and rebuilt.
    pub rebuilt_reason: Option<String>,
}

/// A dataset source.
#[derive(Debug, Clone, PartialEq)]
pub enum DatasetSource {
    /// The official MovieLens-1M folder (`ratings.dat`, `users.dat`, `movies.dat`).
    MovieLens1m {
        /// The unzipped `ml-1m` folder.
        dir: PathBuf,
        /// Which domains: three age groups (default) or the 18 first genres.
        domain: MovieLensDomain,
        /// Row order (what the sequential split cuts): the pandas < 2.2 merge order (default,
        /// the official M3oE run's) or `ratings.dat` order.
        row_order: MovieLensOrder,
    },
    /// AliCCP in the layout of the official AREAD code (see [`crate::aread`]).
    Aliccp {
        /// The folder holding AREAD's preprocessed AliCCP file.
        dir: PathBuf,
    },
    /// Amazon Review 2018 in the layout of the official AREAD code (see [`crate::aread`]).
    Amazon {
        /// The folder holding AREAD's preprocessed Amazon file.
        dir: PathBuf,
    },
    /// The synthetic generator.
    Synthetic(SyntheticConfig),
    /// Delimited files with a header row and a TOML schema.
    Csv {
        /// The schema TOML file.
        schema: PathBuf,
        /// Data files, concatenated in order (same header).
        files: Vec<PathBuf>,
        /// Field delimiter, e.g. `b','`.
        delimiter: u8,
    },
}

/// What to prepare.
#[derive(Debug, Clone, PartialEq)]
pub struct PrepareRequest {
    /// The source.
    pub source: DatasetSource,
    /// The split.
    pub split: SplitSpec,
    /// Cache directory (`None` = no cache).
    pub cache_dir: Option<PathBuf>,
}

/// A prepared dataset: fitted schema, vocabularies and the three encoded splits.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// The fitted schema.
    pub schema: Schema,
    /// The fitted vocabularies.
    pub vocabs: Vocabs,
    /// Training split.
    pub train: EncodedData,
    /// Validation split.
    pub valid: EncodedData,
    /// Test split.
    pub test: EncodedData,
    /// Human description of the source.
    pub source: String,
    /// Cache use, when a cache directory was given.
    pub cache: Option<CacheInfo>,
}

/// The spec, its origin name, the data files and a JSON description of the source config.
struct Resolved {
    spec: SchemaSpec,
    origin: String,
    files: Vec<PathBuf>,
    config_json: String,
    description: String,
}

fn resolve(src: &DatasetSource) -> Result<Resolved, DataError> {
    match src {
        DatasetSource::MovieLens1m {
            dir,
            domain,
            row_order,
        } => {
            let files = movielens::movielens_files(dir)?;
            let (origin, mut config_json, description) = match domain {
                // unchanged key and description for the default, so existing caches stay valid
                MovieLensDomain::Age => (
                    "<embedded movielens-1m schema>".to_string(),
                    "\"movielens-1m\"".to_string(),
                    format!("movielens-1m ({})", dir.display()),
                ),
                MovieLensDomain::Genre => (
                    "<embedded movielens-1m genre schema>".to_string(),
                    serde_json::json!({ "movielens-1m": { "domain": domain.name() } }).to_string(),
                    format!("movielens-1m ({}), genre domains", dir.display()),
                ),
            };
            if *row_order == MovieLensOrder::Ratings {
                // the order changes the split, so it is part of the cache key (`merged`, the
                // order before the option existed, keeps the old key so its caches stay valid)
                config_json = serde_json::json!({
                    "movielens-1m": { "domain": domain.name(), "row_order": row_order.name() }
                })
                .to_string();
            }
            let description = format!("{description}, {} row order", row_order.name());
            Ok(Resolved {
                spec: SchemaSpec::from_toml_str(domain.schema(), &origin)?,
                origin,
                files: files.to_vec(),
                config_json,
                description,
            })
        }
        DatasetSource::Aliccp { dir } | DatasetSource::Amazon { dir } => {
            let which = aread::AreadDataset::of_source(src).expect("aread source");
            let file = which.file(dir)?;
            let origin = format!("<embedded {} schema>", which.name());
            Ok(Resolved {
                spec: SchemaSpec::from_toml_str(which.schema(), &origin)?,
                origin,
                files: vec![file.clone()],
                config_json: serde_json::json!({ "aread": which.name() }).to_string(),
                description: format!("{} ({})", which.name(), file.display()),
            })
        }
        DatasetSource::Synthetic(cfg) => {
            cfg.validate()?;
            let origin = "<embedded synthetic schema>".to_string();
            Ok(Resolved {
                spec: SchemaSpec::from_toml_str(&synthetic::synthetic_schema_toml(cfg), &origin)?,
                origin,
                files: Vec::new(),
                config_json: serde_json::json!({ "synthetic": cfg }).to_string(),
                description: format!(
                    "synthetic (seed {}, {} rows, {} domains, {} tasks)",
                    cfg.seed, cfg.n_rows, cfg.n_domains, cfg.n_tasks
                ),
            })
        }
        DatasetSource::Csv {
            schema,
            files,
            delimiter,
        } => {
            if files.is_empty() {
                return Err(DataError::Config("csv source: no data files given".into()));
            }
            Ok(Resolved {
                spec: SchemaSpec::from_file(schema)?,
                origin: schema.display().to_string(),
                files: files.clone(),
                config_json: serde_json::json!({ "csv": { "delimiter": delimiter } }).to_string(),
                description: format!(
                    "csv ({})",
                    files
                        .iter()
                        .map(|f| f.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
        }
    }
}

fn load_table(src: &DatasetSource) -> Result<RawTable, DataError> {
    match src {
        DatasetSource::MovieLens1m { dir, row_order, .. } => {
            movielens::load_movielens_1m(dir, *row_order)
        }
        DatasetSource::Aliccp { dir } | DatasetSource::Amazon { dir } => {
            let which = aread::AreadDataset::of_source(src).expect("aread source");
            aread::load(which, &which.file(dir)?)
        }
        DatasetSource::Synthetic(cfg) => Ok(synthetic::generate(cfg).table),
        DatasetSource::Csv {
            files, delimiter, ..
        } => csv::read_csv_files(files, *delimiter),
    }
}

/// Prepares a dataset: loads it from the cache when possible, else parses, splits, fits on
/// the training split and encodes (and writes the cache).
pub fn prepare(req: &PrepareRequest) -> Result<Prepared, DataError> {
    let r = resolve(&req.source)?;
    let mut cache_target: Option<(PathBuf, [u8; 32], Option<String>)> = None;
    if let Some(dir) = &req.cache_dir {
        let key = cache::cache_key(&r.spec, &req.split, &r.config_json, &r.files)?;
        let path = dir.join(format!("{}.mdrec-cache", crate::schema::hex(&key)));
        match cache::load(&path, &key) {
            Ok(Some(mut p)) => {
                p.cache = Some(CacheInfo {
                    path,
                    hit: true,
                    rebuilt_reason: None,
                });
                return Ok(p);
            }
            Ok(None) => cache_target = Some((path, key, None)),
            Err(reason) => {
                eprintln!(
                    "warning: {}: {reason}; ignoring the cache file and rebuilding",
                    path.display()
                );
                cache_target = Some((path, key, Some(reason)));
            }
        }
    }
    let table = load_table(&req.source)?;
    let splits = split_rows(&table, &req.split)?;
    let (schema, vocabs, [train, valid, test]) = fit_encode(&r.spec, &r.origin, &table, &splits)?;
    drop(table);
    let mut p = Prepared {
        schema,
        vocabs,
        train,
        valid,
        test,
        source: r.description,
        cache: None,
    };
    if let Some((path, key, reason)) = cache_target {
        cache::store(&path, &key, &p)?;
        p.cache = Some(CacheInfo {
            path,
            hit: false,
            rebuilt_reason: reason,
        });
    }
    Ok(p)
}

/// Prepares from an in-memory raw table and spec (no cache); used by tests and custom sources.
pub fn prepare_table(
    spec: &SchemaSpec,
    origin: &str,
    table: &RawTable,
    split: &SplitSpec,
    source: &str,
) -> Result<Prepared, DataError> {
    spec.validate(origin)?;
    let splits = split_rows(table, split)?;
    let (schema, vocabs, [train, valid, test]) = fit_encode(spec, origin, table, &splits)?;
    Ok(Prepared {
        schema,
        vocabs,
        train,
        valid,
        test,
        source: source.to_string(),
        cache: None,
    })
}

/// Writes `schema.json` (pretty, byte-stable) into `dir`.
pub fn write_schema_json(p: &Prepared, dir: &Path) -> Result<PathBuf, DataError> {
    let path = dir.join("schema.json");
    std::fs::write(&path, p.schema.to_json_pretty()).map_err(|e| DataError::io(&path, e))?;
    Ok(path)
}
