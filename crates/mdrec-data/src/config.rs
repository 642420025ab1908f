//! The `[dataset]` section of a run config ([`DatasetConfig`]): which dataset, which split, and
//! the options of each. Values are typed ([`DatasetName`], [`SplitName`], [`MovieLensDomain`],
//! [`MovieLensOrder`]), so an unknown value is rejected while the config is parsed, with the
//! accepted ones in the message. [`DatasetConfig::validate`] checks everything else that can be
//! checked without reading a file, naming the key; [`DatasetConfig::request`] turns the section
//! into what [`crate::prepare()`] reads, with the defaults of the dataset's row in the recipe table.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::movielens::{MovieLensDomain, MovieLensOrder};
use crate::prepare::PrepareRequest;
use crate::recipe::{CacheHome, DatasetName, SplitName};
use crate::source::DatasetSource;
use crate::split::{check_ratios, SplitSpec};
use crate::synthetic::SyntheticConfig;
use crate::DataError;

/// Which data to train on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatasetConfig {
    /// A dataset of the table (`mdrec data list`): `movielens-1m` (alias `ml-1m`), `synthetic`,
    /// `csv`, `aliccp` or `amazon` (the files of the official AREAD code, see
    /// [`crate::aliccp_amazon`]), the official raw releases (`kuairand-pure`, `kuairand-1k`,
    /// `aliexpress`, `aliccp-raw-crocodile`, `aliccp-raw-aread`, `amazon-raw`), ...
    pub name: DatasetName,
    /// Folder of the raw files (`movielens-1m`: the official `ml-1m` folder; `aliccp` /
    /// `amazon`: the folder holding AREAD's preprocessed CSV; the raw releases: the folder of
    /// their files).
    pub data_dir: Option<PathBuf>,
    /// Split: `m3oe` / `sequential` (rows in source order, cut by `ratios`; `m3oe` is the M3oE
    /// protocol on MovieLens-1M), `random` (seeded shuffle, cut by `ratios`), `time` (by the
    /// integer column `time_column`: valid from `valid_from`, test from `test_from`), or `aread`
    /// (`aliccp`, `aliccp-raw-aread`, `amazon`, `amazon-raw` only, and required there instead of
    /// `m3oe`: AliCCP by its `train_tag` column, Amazon by `timestamp` quantiles 0.9 / 0.95), or
    /// `official` (`aliexpress`, `aliccp-raw-crocodile` only, and required there: their own
    /// train / test files). Unset: the dataset's own protocol ([`split`](Self::split)).
    pub split: Option<SplitName>,
    /// Domain definition of `movielens-1m`: `age` (three age groups, the M3oE protocol; the
    /// default) or `genre` (the movie's first genre, 18 long-tailed domains). Other datasets
    /// reject it.
    pub domain: Option<MovieLensDomain>,
    /// Row order of `movielens-1m` (`movielens-100k` always uses `merged`), which the sequential `m3oe` split cuts (and the seeded
    /// `random` split shuffles): `merged` (the default: the pandas < 2.2 merge order, which the
    /// official M3oE run's published numbers come from) or `ratings` (`ratings.dat` order, what
    /// the M3oE script's merges give with pandas >= 2.2). Other datasets reject it.
    pub row_order: Option<MovieLensOrder>,
    /// `movielens-1m` only: each rating's previous `history` rated movies of its user, strictly
    /// earlier in time, as two sequence fields (`history`: movie ids, `history_genre`: their
    /// first genres) with their timestamps (`history_time`) against the rating's `timestamp`
    /// (see [`crate::movielens::add_history`]). 0 (the default) adds nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<usize>,
    /// How the history sequences reach the model: `mean` (default), `din` or `tim`
    /// ([`crate::SeqEncoder`]); needs `history`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_encoder: Option<crate::SeqEncoder>,
    /// Train / valid / test fractions for `m3oe`, `sequential` and `random`.
    pub ratios: [f64; 3],
    /// Column of the `time` split.
    pub time_column: Option<String>,
    /// First time value of the validation split.
    pub valid_from: Option<i64>,
    /// First time value of the test split.
    pub test_from: Option<i64>,
    /// Schema TOML for `csv`.
    pub schema: Option<PathBuf>,
    /// Data files for `csv`.
    pub files: Vec<PathBuf>,
    /// Where the encoded cache lives (default: `<data_dir>/.mdrec-cache` or `./.mdrec-cache`,
    /// as the dataset's row of the table says).
    pub cache_dir: Option<PathBuf>,
    /// Number of rows of the `synthetic` dataset.
    pub synthetic_rows: Option<usize>,
    /// Number of domains of the `synthetic` dataset.
    pub synthetic_domains: Option<usize>,
    /// Zipf exponent of the `synthetic` domain sizes (share of domain d ∝ 1 / (d + 1)^skew;
    /// 0 = equal sizes; default 1, which with 25 domains puts 12 of them under 2 % of the rows).
    pub synthetic_domain_skew: Option<f64>,
    /// The `synthetic-delayed` generator's settings (rows, days, delays, burst share; its seed
    /// is `train.seed`), e.g. `dataset.delayed.n_rows = 50000`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delayed: Option<crate::delayed::DelayedConfig>,
    /// Encodings of numeric fields of the dataset's schema, by field name, replacing the
    /// schema's: e.g. `[dataset.encodings]` `age = { kind = "mnse", bases = [2, 3, 10] }`
    /// (see [`crate::NumericEncoding`]).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub encodings: std::collections::BTreeMap<String, crate::NumericEncoding>,
    /// Pre-trained vectors of categorical fields of the dataset's schema, by field name,
    /// replacing the schema's: e.g. `[dataset.pretrained]`
    /// `user_id = { path = "users.safetensors" }` (see [`crate::pretrained`]).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub pretrained: std::collections::BTreeMap<String, crate::pretrained::PretrainedSpec>,
    /// Similarity encoding of two pre-trained fields, replacing the schema's (see
    /// [`crate::pretrained::SimilaritySpec`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similarity: Option<crate::pretrained::SimilaritySpec>,
    /// Semantic IDs of a pre-trained field, replacing the schema's (see
    /// [`crate::pretrained::SemanticIdSpec`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semantic_id: Option<crate::pretrained::SemanticIdSpec>,
    /// Raw domain value → domain index, replacing the schema's (every dataset): several raw
    /// domains become one, e.g. the clusters `mdrec precluster` writes (AREAD's baselines
    /// train on pre-clustered domains). Indices must be `0..n`, each used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_map: Option<std::collections::BTreeMap<String, u32>>,
    /// `csv` only: prepare the files out of core (two passes over them in chunks, the encoded
    /// columns written to a store in the cache folder and read through memory maps, see
    /// [`crate::ooc`]) for data whose encoded columns do not fit in memory. Training then
    /// shuffles block-wise ([`crate::block_order`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub out_of_core: bool,
}

impl Default for DatasetConfig {
    fn default() -> Self {
        DatasetConfig {
            name: DatasetName::Synthetic,
            data_dir: None,
            split: None,
            ratios: [0.8, 0.1, 0.1],
            time_column: None,
            valid_from: None,
            test_from: None,
            schema: None,
            files: Vec::new(),
            cache_dir: None,
            synthetic_rows: None,
            synthetic_domains: None,
            synthetic_domain_skew: None,
            domain: None,
            row_order: None,
            history: None,
            history_encoder: None,
            delayed: None,
            encodings: Default::default(),
            pretrained: Default::default(),
            similarity: None,
            domain_map: None,
            semantic_id: None,
            out_of_core: false,
        }
    }
}

fn config_err(msg: String) -> DataError {
    DataError::Config(msg)
}

impl DatasetConfig {
    /// The split protocol: `split` when set, else the dataset's default (`m3oe` for
    /// MovieLens and user CSV, `aread` for AliCCP and Amazon, `official` where the release
    /// ships its own train / test files).
    pub fn split(&self) -> SplitName {
        self.split.unwrap_or(self.name.recipe().default_split)
    }

    /// Checks every key that can be checked without reading a file: options that do not apply
    /// to the dataset, a split the dataset does not accept, missing keys of the split or the
    /// dataset, ratios, time bounds and synthetic sizes. Errors name the key.
    pub fn validate(&self) -> Result<(), DataError> {
        let name = self.name;
        let recipe = name.recipe();
        let only = |key: &str, set: bool, owner: DatasetName| {
            if set && name != owner {
                Err(config_err(format!(
                    "dataset.{key} applies to {owner} only, not to `{name}`"
                )))
            } else {
                Ok(())
            }
        };
        only("domain", self.domain.is_some(), DatasetName::MovieLens1m)?;
        only(
            "row_order",
            self.row_order.is_some(),
            DatasetName::MovieLens1m,
        )?;
        only("history", self.history.is_some(), DatasetName::MovieLens1m)?;
        only("out_of_core", self.out_of_core, DatasetName::Csv)?;
        if self.history_encoder.is_some() && self.history.unwrap_or(0) == 0 {
            return Err(config_err(
                "dataset.history_encoder needs dataset.history (a history length of at least 1)"
                    .into(),
            ));
        }
        if self.history.is_some_and(|n| n > 1000) {
            return Err(config_err(format!(
                "dataset.history must be at most 1000, got {}",
                self.history.unwrap_or(0)
            )));
        }
        only(
            "synthetic_rows",
            self.synthetic_rows.is_some(),
            DatasetName::Synthetic,
        )?;
        only(
            "synthetic_domains",
            self.synthetic_domains.is_some(),
            DatasetName::Synthetic,
        )?;
        only(
            "synthetic_domain_skew",
            self.synthetic_domain_skew.is_some(),
            DatasetName::Synthetic,
        )?;
        only(
            "delayed",
            self.delayed.is_some(),
            DatasetName::SyntheticDelayed,
        )?;
        if let Some(d) = &self.delayed {
            d.validate()
                .map_err(|e| config_err(format!("dataset.delayed: {e}")))?;
        }
        only("schema", self.schema.is_some(), DatasetName::Csv)?;
        only("files", !self.files.is_empty(), DatasetName::Csv)?;
        if recipe.needs_data_dir && self.data_dir.is_none() {
            return Err(config_err(format!(
                "dataset.data_dir: dataset {name} needs --data-dir DIR (the folder with {}); {}",
                recipe.files, recipe.obtain
            )));
        }
        if name == DatasetName::Csv {
            if self.schema.is_none() {
                return Err(config_err(
                    "dataset.schema: dataset csv needs dataset.schema (a schema TOML file)".into(),
                ));
            }
            if self.files.is_empty() {
                return Err(config_err(
                    "dataset.files: dataset csv needs dataset.files (one or more CSV files)".into(),
                ));
            }
        }
        let split = self.split();
        let time = split == SplitName::Time;
        for (key, set) in [
            ("time_column", self.time_column.is_some()),
            ("valid_from", self.valid_from.is_some()),
            ("test_from", self.test_from.is_some()),
        ] {
            if set && !time {
                return Err(config_err(format!(
                    "dataset.{key} applies to split = \"time\" only, not to `{}`",
                    split
                )));
            }
        }
        if matches!(
            split,
            SplitName::M3oe | SplitName::Sequential | SplitName::Random
        ) {
            check_ratios(&self.ratios).map_err(|e| config_err(format!("dataset.ratios: {e}")))?;
        }
        // the split itself (accepted by the dataset, complete)
        self.split_spec(0)?;
        if let Some(n) = self.synthetic_rows {
            if n == 0 || n > u32::MAX as usize / 2 {
                return Err(config_err(format!(
                    "dataset.synthetic_rows must be in 1..2^31, got {n}"
                )));
            }
        }
        if let Some(d) = self.synthetic_domains {
            if !(1..=1024).contains(&d) {
                return Err(config_err(format!(
                    "dataset.synthetic_domains must be in 1..=1024, got {d}"
                )));
            }
        }
        if let Some(k) = self.synthetic_domain_skew {
            if !k.is_finite() || k < 0.0 {
                return Err(config_err(format!(
                    "dataset.synthetic_domain_skew must be finite and non-negative, got {k}"
                )));
            }
        }
        if name == DatasetName::Synthetic {
            self.synthetic(0).validate().map_err(|e| {
                config_err(format!(
                    "dataset.synthetic_rows / synthetic_domains / synthetic_domain_skew: {e}"
                ))
            })?;
        }
        Ok(())
    }

    /// The split this section asks for.
    pub fn split_spec(&self, seed: u64) -> Result<SplitSpec, DataError> {
        let recipe = self.name.recipe();
        let split = self.split();
        if !recipe.splits.contains(&split) {
            let why = match (split, self.name.aliccp_amazon()) {
                (SplitName::M3oe, Some(a)) => format!(
                    "`m3oe` is the MovieLens protocol; dataset {} uses split = \"aread\" ({})",
                    self.name,
                    a.split_summary()
                ),
                (SplitName::M3oe, None)
                    if self.name.recipe().default_split == SplitName::Official =>
                {
                    format!(
                        "`m3oe` is the MovieLens protocol; dataset {} uses split = \"official\" (its train / test files)",
                        self.name
                    )
                }
                (SplitName::Aread, None) => format!(
                    "`aread` is the protocol of datasets aliccp, aliccp-raw-aread, amazon and amazon-raw, not of `{}`",
                    self.name
                ),
                _ => format!("dataset {} does not accept it", self.name),
            };
            return Err(config_err(format!(
                "dataset.split: {why}; accepted: {}",
                recipe
                    .splits
                    .iter()
                    .map(|s| s.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        match split {
            SplitName::M3oe | SplitName::Sequential => Ok(SplitSpec::Sequential {
                ratios: self.ratios,
            }),
            SplitName::Random => Ok(SplitSpec::Random {
                ratios: self.ratios,
                seed,
            }),
            SplitName::Time => match (&self.time_column, self.valid_from, self.test_from) {
                (Some(column), Some(valid_from), Some(test_from)) => {
                    if valid_from > test_from {
                        return Err(config_err(format!(
                            "dataset.valid_from ({valid_from}) is after dataset.test_from ({test_from})"
                        )));
                    }
                    Ok(SplitSpec::ByTime {
                        column: column.clone(),
                        valid_from,
                        test_from,
                    })
                }
                _ => Err(config_err(
                    "dataset.split: split `time` needs dataset.time_column, dataset.valid_from and dataset.test_from".into(),
                )),
            },
            // every recipe with an official split (aliexpress, aliccp-raw-crocodile) writes it to
            // the column `part`
            SplitName::Official => Ok(crate::aliexpress::aliexpress_split()),
            SplitName::Aread => match self.name.aliccp_amazon() {
                Some(a) => Ok(a.split()),
                None => Err(config_err(format!(
                    "dataset.split: `aread` is the protocol of datasets aliccp, aliccp-raw-aread, amazon and amazon-raw, not of `{}`",
                    self.name
                ))),
            },
        }
    }

    /// The synthetic generator's config for `seed` (the `synthetic_*` keys over the defaults).
    fn synthetic(&self, seed: u64) -> SyntheticConfig {
        let mut sc = SyntheticConfig {
            seed,
            ..SyntheticConfig::default()
        };
        if let Some(n) = self.synthetic_rows {
            sc.n_rows = n;
        }
        if let Some(d) = self.synthetic_domains {
            sc.n_domains = d;
        }
        if let Some(k) = self.synthetic_domain_skew {
            sc.domain_skew = k;
        }
        sc
    }

    /// The source this section names (`seed` seeds the synthetic generator).
    pub fn source(&self, seed: u64) -> Result<DatasetSource, DataError> {
        let dir = || {
            self.data_dir.clone().ok_or_else(|| {
                config_err(format!(
                    "dataset.data_dir: dataset {} needs --data-dir DIR",
                    self.name
                ))
            })
        };
        Ok(match self.name {
            DatasetName::MovieLens1m => DatasetSource::MovieLens1m {
                dir: dir()?,
                domain: self.domain.unwrap_or_default(),
                row_order: self.row_order.unwrap_or_default(),
                history: self.history.unwrap_or(0),
                history_encoder: self.history_encoder.unwrap_or_default(),
            },
            DatasetName::MovieLens100k => DatasetSource::MovieLens100k { dir: dir()? },
            DatasetName::Aliccp => DatasetSource::Aliccp { dir: dir()? },
            DatasetName::Amazon => DatasetSource::Amazon { dir: dir()? },
            DatasetName::KuaiRandPure => DatasetSource::KuaiRand {
                dir: dir()?,
                version: crate::kuairand::KuaiRandVersion::Pure,
            },
            DatasetName::KuaiRand1k => DatasetSource::KuaiRand {
                dir: dir()?,
                version: crate::kuairand::KuaiRandVersion::OneK,
            },
            DatasetName::AliExpress => DatasetSource::AliExpress { dir: dir()? },
            DatasetName::AliccpRawCrocodile => DatasetSource::AliccpRaw {
                dir: dir()?,
                protocol: crate::aliccp_raw::AliccpProtocol::Crocodile,
            },
            DatasetName::AliccpRawAread => DatasetSource::AliccpRaw {
                dir: dir()?,
                protocol: crate::aliccp_raw::AliccpProtocol::Aread,
            },
            DatasetName::AmazonRaw => DatasetSource::AmazonRaw { dir: dir()? },
            DatasetName::Synthetic => DatasetSource::Synthetic(self.synthetic(seed)),
            DatasetName::SyntheticDelayed => {
                DatasetSource::SyntheticDelayed(crate::delayed::DelayedConfig {
                    seed,
                    ..self.delayed.clone().unwrap_or_default()
                })
            }
            DatasetName::Csv => DatasetSource::Csv {
                schema: self.schema.clone().ok_or_else(|| {
                    config_err("dataset.schema: dataset csv needs a schema TOML file".into())
                })?,
                files: self.files.clone(),
                delimiter: b',',
            },
        })
    }

    /// The cache folder: `dataset.cache_dir`, else the dataset's default (see [`CacheHome`]).
    pub fn cache_dir(&self) -> Option<PathBuf> {
        self.cache_dir
            .clone()
            .or_else(|| match self.name.recipe().cache {
                CacheHome::DataDir => self.data_dir.as_ref().map(|d| d.join(".mdrec-cache")),
                CacheHome::WorkingDir => Some(PathBuf::from(".mdrec-cache")),
                CacheHome::None => None,
            })
    }

    /// What to prepare: [`Self::validate`], then the source, split and cache folder.
    pub fn request(&self, seed: u64) -> Result<PrepareRequest, DataError> {
        self.validate()?;
        Ok(PrepareRequest {
            source: self.source(seed)?,
            split: self.split_spec(seed)?,
            cache_dir: self.cache_dir(),
        })
    }

    /// This section with the dataset's option defaults spelled out (MovieLens-1M's `domain` and
    /// `row_order`), as a run directory's `config.resolved.json` records it: a default that
    /// changes must not change what a recorded run claims it was trained on.
    pub fn resolved(&self) -> DatasetConfig {
        let mut d = self.clone();
        d.split = Some(self.split());
        if d.name == DatasetName::MovieLens1m {
            d.domain.get_or_insert_default();
            d.row_order.get_or_insert_default();
        }
        d
    }
}
