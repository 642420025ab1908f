//! The dataset table: every dataset mdrec knows, in one place.
//!
//! A [`Recipe`] row says what a dataset is called (and its aliases), which split it uses by
//! default and which it accepts, its domains, the files it reads and where to obtain them, and
//! where its prepared cache goes by default. For each [`DatasetSource`] this module also owns
//! the declared schema, the cache identity and the loader (`resolve`, `load_table`).
//! Everything that needs to know about a dataset reads it from here: the `[dataset]` config
//! ([`crate::config`]), the data path ([`crate::prepare()`]) and `mdrec data list`.

use std::path::PathBuf;

use crate::aliccp_amazon::{self, AliccpAmazon};
use crate::movielens::{self, MovieLensDomain, MovieLensOrder, ML100K_HINT, ML1M_HINT};
use crate::names::string_enum;
use crate::raw::RawTable;
use crate::schema::SchemaSpec;
use crate::source::DatasetSource;
use crate::synthetic;
use crate::{csv, DataError};

string_enum! {
    /// A dataset of the table (`dataset.name`).
    #[derive(Default)]
    pub enum DatasetName: "dataset.name" {
        /// MovieLens-1M, the M3oE benchmark protocol.
        MovieLens1m = "movielens-1m" | "ml-1m",
        /// The embedded synthetic generator.
        #[default]
        Synthetic = "synthetic",
        /// Delimited files with a header row and a TOML schema.
        Csv = "csv",
        /// AliCCP in the layout of the official AREAD code.
        Aliccp = "aliccp",
        /// Amazon Review 2018 in the layout of the official AREAD code.
        Amazon = "amazon",
        /// The synthetic conversion stream with delayed (and burst) reports.
        SyntheticDelayed = "synthetic-delayed",
        /// MovieLens-100K with the MovieLens-1M protocol (a small second benchmark).
        MovieLens100k = "movielens-100k" | "ml-100k",
        /// KuaiRand-Pure from the official release, M3oE's protocol.
        KuaiRandPure = "kuairand-pure",
        /// KuaiRand-1K from the official release, Crocodile's protocol.
        KuaiRand1k = "kuairand-1k",
        /// AliExpress from the official release: 5 country domains, click and purchase.
        AliExpress = "aliexpress",
        /// AliCCP from the official raw files, Crocodile's protocol (3 scenario domains).
        AliccpRawCrocodile = "aliccp-raw-crocodile",
        /// AliCCP from the official raw files, AREAD's protocol (30 item-category domains).
        AliccpRawAread = "aliccp-raw-aread",
        /// Amazon Review 2018 from the official per-category files, AREAD's preprocessing.
        AmazonRaw = "amazon-raw",
    }
}

string_enum! {
    /// A split protocol (`dataset.split`).
    #[derive(Default)]
    pub enum SplitName: "dataset.split" {
        /// Source order cut by `dataset.ratios` (the M3oE protocol on MovieLens-1M).
        #[default]
        M3oe = "m3oe",
        /// Source order cut by `dataset.ratios` (same as `m3oe`, for other datasets).
        Sequential = "sequential",
        /// Seeded shuffle cut by `dataset.ratios`.
        Random = "random",
        /// By the integer column `dataset.time_column`: valid from `valid_from`, test from
        /// `test_from`.
        Time = "time",
        /// The AREAD protocol of `aliccp` / `aliccp-raw-aread` (column `train_tag`) and
        /// `amazon` / `amazon-raw` (timestamp quantiles 0.9 / 0.95).
        Aread = "aread",
        /// The dataset's own train / test files (`aliexpress`, `aliccp-raw-crocodile`;
        /// validation: the last 10 % of each train file), column `part`.
        Official = "official",
    }
}

/// Where a dataset's prepared cache goes when `dataset.cache_dir` is not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheHome {
    /// `<data_dir>/.mdrec-cache`, next to the raw files.
    DataDir,
    /// `./.mdrec-cache` in the working directory.
    WorkingDir,
    /// Not cached (generating is as fast as reading a cache).
    None,
}

/// One row of the dataset table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recipe {
    /// The dataset.
    pub name: DatasetName,
    /// What it is, in a few words.
    pub summary: &'static str,
    /// The split used when `dataset.split` is not set.
    pub default_split: SplitName,
    /// The splits it accepts.
    pub splits: &'static [SplitName],
    /// Its domains.
    pub domains: &'static str,
    /// Whether `dataset.data_dir` is required (the folder of its files).
    pub needs_data_dir: bool,
    /// The files it reads.
    pub files: &'static str,
    /// Where to obtain the data.
    pub obtain: &'static str,
    /// Default cache location.
    pub cache: CacheHome,
}

const RATIO_SPLITS: &[SplitName] = &[
    SplitName::M3oe,
    SplitName::Sequential,
    SplitName::Random,
    SplitName::Time,
];
const OFFICIAL_SPLITS: &[SplitName] = &[
    SplitName::Official,
    SplitName::Sequential,
    SplitName::Random,
];
const AREAD_SPLITS: &[SplitName] = &[
    SplitName::Aread,
    SplitName::Sequential,
    SplitName::Random,
    SplitName::Time,
];

/// The dataset table, in [`DatasetName::ALL`] order.
pub const RECIPES: [Recipe; 13] = [
    Recipe {
        name: DatasetName::MovieLens1m,
        summary: "MovieLens-1M ratings, click = rating > 3, like = rating > 4",
        default_split: SplitName::M3oe,
        splits: RATIO_SPLITS,
        domains: "3 age groups (dataset.domain = \"age\", default) or 18 first genres (\"genre\")",
        needs_data_dir: true,
        files: "ratings.dat, users.dat, movies.dat (the unzipped ml-1m folder)",
        obtain: ML1M_HINT,
        cache: CacheHome::DataDir,
    },
    Recipe {
        name: DatasetName::Synthetic,
        summary: "generated multi-domain multi-task clicks (seeded by train.seed)",
        default_split: SplitName::M3oe,
        splits: RATIO_SPLITS,
        domains:
            "dataset.synthetic_domains (default 25), Zipf-sized by dataset.synthetic_domain_skew",
        needs_data_dir: false,
        files: "none",
        obtain: "built in",
        cache: CacheHome::None,
    },
    Recipe {
        name: DatasetName::Csv,
        summary: "your delimited files with a header row (or Parquet files) and a schema TOML",
        default_split: SplitName::M3oe,
        splits: RATIO_SPLITS,
        domains: "as the schema's [domain] section declares",
        needs_data_dir: false,
        files:
            "dataset.schema (TOML) and dataset.files (CSV with RFC 4180 quoting, or all Parquet / Arrow IPC)",
        obtain: "your own data",
        cache: CacheHome::WorkingDir,
    },
    Recipe {
        name: DatasetName::Aliccp,
        summary: "Ali-CCP clicks as AREAD preprocesses them",
        default_split: SplitName::Aread,
        splits: AREAD_SPLITS,
        domains: "30 item categories (feature 206)",
        needs_data_dir: true,
        files: aliccp_amazon::ALICCP_FILE,
        obtain: "https://tianchi.aliyun.com/dataset/408, then AREAD's preprocess.py",
        cache: CacheHome::DataDir,
    },
    Recipe {
        name: DatasetName::Amazon,
        summary:
            "Amazon Review 2018, label = rating above the user's mean, as AREAD preprocesses it",
        default_split: SplitName::Aread,
        splits: AREAD_SPLITS,
        domains: "25 main categories",
        needs_data_dir: true,
        files: aliccp_amazon::AMAZON_FILE,
        obtain: "https://nijianmo.github.io/amazon/index.html, then AREAD's preprocess.py",
        cache: CacheHome::DataDir,
    },
    Recipe {
        name: DatasetName::SyntheticDelayed,
        summary: "generated conversions whose reports arrive late, some advertisers in bursts (seeded by train.seed; stream training's delayed feedback)",
        default_split: SplitName::M3oe,
        splits: RATIO_SPLITS,
        domains: "4 placements (dataset.delayed.n_domains)",
        needs_data_dir: false,
        files: "none",
        obtain: "built in",
        cache: CacheHome::None,
    },
    Recipe {
        name: DatasetName::MovieLens100k,
        summary: "MovieLens-100K ratings with the MovieLens-1M protocol, click = rating > 3, like = rating > 4",
        default_split: SplitName::M3oe,
        splits: RATIO_SPLITS,
        domains: "3 age groups (under 25, 25-34, 35 or older)",
        needs_data_dir: true,
        files: "u.data, u.user, u.item (the unzipped ml-100k folder)",
        obtain: ML100K_HINT,
        cache: CacheHome::DataDir,
    },
    Recipe {
        name: DatasetName::KuaiRandPure,
        summary: "KuaiRand-Pure short-video logs, M3oE's protocol (tasks click = is_click, long_view)",
        default_split: SplitName::M3oe,
        splits: RATIO_SPLITS,
        domains: "M3oE protocol: the 3 tabs with the most interactions; tasks click, long_view",
        needs_data_dir: true,
        files: "log_standard_4_08_to_4_21_pure.csv, log_standard_4_22_to_5_08_pure.csv, log_random_4_22_to_5_08_pure.csv, user_features_pure.csv, video_features_basic_pure.csv (KuaiRand-Pure/data)",
        obtain: "KuaiRand-Pure.tar.gz from https://zenodo.org/records/10439422 (CC BY-SA 4.0)",
        cache: CacheHome::DataDir,
    },
    Recipe {
        name: DatasetName::KuaiRand1k,
        summary: "KuaiRand-1K short-video logs, Crocodile's protocol (task click = is_click)",
        default_split: SplitName::M3oe,
        splits: RATIO_SPLITS,
        domains: "Crocodile protocol: tabs 0, 1, 2, 4, 6; task click",
        needs_data_dir: true,
        files: "log_standard_4_08_to_4_21_1k.csv, log_standard_4_22_to_5_08_1k.csv, log_random_4_22_to_5_08_1k.csv, user_features_1k.csv, video_features_basic_1k.csv (KuaiRand-1K/data)",
        obtain: "KuaiRand-1K.tar.gz from https://zenodo.org/records/10439422 (CC BY-SA 4.0)",
        cache: CacheHome::DataDir,
    },
    Recipe {
        name: DatasetName::AliExpress,
        summary: "AliExpress search logs of 5 countries, tasks click and purchase (conversion)",
        default_split: SplitName::Official,
        splits: OFFICIAL_SPLITS,
        domains: "5 countries (ES, FR, NL, RU, US); tasks click, purchase",
        needs_data_dir: true,
        files: "AliExpress_{ES,FR,NL,RU,US}/train.csv and test.csv (.csv.gz also read)",
        obtain: "https://tianchi.aliyun.com/dataset/74690 (Tianchi account; Tianchi dataset terms)",
        cache: CacheHome::DataDir,
    },
    Recipe {
        name: DatasetName::AliccpRawCrocodile,
        summary: "Ali-CCP from the raw files, Crocodile's protocol (task click; buy kept as a column)",
        default_split: SplitName::Official,
        splits: OFFICIAL_SPLITS,
        domains: "Crocodile protocol: scenarios 1, 2, 3 (feature 301) as S1, S2, S3; task click",
        needs_data_dir: true,
        files: "sample_skeleton_{train,test}.csv, common_features_{train,test}.csv (.csv.gz also read)",
        obtain: "sample_train.tar.gz, sample_test.tar.gz from https://tianchi.aliyun.com/dataset/408 (Tianchi account; Tianchi dataset terms)",
        cache: CacheHome::DataDir,
    },
    Recipe {
        name: DatasetName::AliccpRawAread,
        summary: "Ali-CCP from the raw files, AREAD's protocol (frequency >= 15, 30 categories, click)",
        default_split: SplitName::Aread,
        splits: AREAD_SPLITS,
        domains: "AREAD protocol: the 30 largest item categories (feature 206) with >= 75 users and items; task click",
        needs_data_dir: true,
        files: "sample_skeleton_{train,test}.csv, common_features_{train,test}.csv (.csv.gz also read)",
        obtain: "sample_train.tar.gz, sample_test.tar.gz from https://tianchi.aliyun.com/dataset/408 (Tianchi account; Tianchi dataset terms)",
        cache: CacheHome::DataDir,
    },
    Recipe {
        name: DatasetName::AmazonRaw,
        summary: "Amazon Review 2018 from the per-category files, AREAD's preprocessing (12 months, 3-core, label = rating above the user's mean)",
        default_split: SplitName::Aread,
        splits: AREAD_SPLITS,
        domains: "AREAD protocol: 25 main categories (metadata main_cat)",
        needs_data_dir: true,
        files: "<Category>.json.gz and meta_<Category>.json.gz per category",
        obtain: "https://nijianmo.github.io/amazon/index.html (per-category data; research use, cite Ni et al. 2019)",
        cache: CacheHome::DataDir,
    },
];

impl DatasetName {
    /// This dataset's row of the table.
    pub fn recipe(self) -> &'static Recipe {
        // RECIPES is in ALL order (checked by a test)
        let i = Self::ALL.iter().position(|&n| n == self).unwrap_or(0);
        &RECIPES[i]
    }

    /// MovieLens-1M or MovieLens-100K (the MovieLens recipe: its record columns, `row_order`).
    pub fn is_movielens(self) -> bool {
        matches!(self, DatasetName::MovieLens1m | DatasetName::MovieLens100k)
    }

    /// The AREAD dataset this is, if any.
    pub fn aliccp_amazon(self) -> Option<AliccpAmazon> {
        match self {
            DatasetName::Aliccp | DatasetName::AliccpRawAread => Some(AliccpAmazon::Aliccp),
            DatasetName::Amazon | DatasetName::AmazonRaw => Some(AliccpAmazon::Amazon),
            _ => None,
        }
    }
}

/// How a source is read and identified: its schema, where that schema came from, its data files,
/// the JSON identity of its options (part of the cache key) and a human description.
pub(crate) struct Resolved {
    pub spec: SchemaSpec,
    pub origin: String,
    pub files: Vec<PathBuf>,
    pub config_json: String,
    pub description: String,
}

/// The schema, files and cache identity of a source (checks that its files exist; reads only
/// the schema).
pub(crate) fn resolve(src: &DatasetSource) -> Result<Resolved, DataError> {
    match src {
        DatasetSource::MovieLens1m {
            dir,
            domain,
            row_order,
            history,
            history_encoder,
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
            let mut description = format!("{description}, {} row order", row_order.name());
            let mut schema = domain.schema().to_string();
            if *history > 0 {
                // the history fields are part of the spec (and so of the cache key); the source
                // identity says how the columns were made
                let genre_table = match domain {
                    MovieLensDomain::Age => "genre",
                    MovieLensDomain::Genre => "domain_indicator",
                };
                schema.push_str(&movielens::history_fields_toml(
                    *history,
                    genre_table,
                    *history_encoder,
                ));
                config_json = serde_json::json!({
                    "movielens-1m": { "domain": domain.name(), "row_order": row_order.name(),
                        "history": history }
                })
                .to_string();
                description = format!("{description}, history {history}");
            }
            Ok(Resolved {
                spec: SchemaSpec::from_toml_str(&schema, &origin)?,
                origin,
                files: files.to_vec(),
                config_json,
                description,
            })
        }
        DatasetSource::MovieLens100k { dir } => {
            let files = movielens::movielens_100k_files(dir)?;
            let origin = "<embedded movielens-100k schema>".to_string();
            Ok(Resolved {
                spec: SchemaSpec::from_toml_str(movielens::MOVIELENS_100K_SCHEMA, &origin)?,
                origin,
                files: files.to_vec(),
                config_json: "\"movielens-100k\"".to_string(),
                description: format!("movielens-100k ({}), merged row order", dir.display()),
            })
        }
        DatasetSource::Aliccp { dir } => resolve_aliccp_amazon(AliccpAmazon::Aliccp, dir),
        DatasetSource::Amazon { dir } => resolve_aliccp_amazon(AliccpAmazon::Amazon, dir),
        DatasetSource::KuaiRand { dir, version } => {
            let files = version.files(dir)?;
            let origin = format!("<embedded {} schema>", version.dataset());
            Ok(Resolved {
                spec: SchemaSpec::from_toml_str(version.schema(), &origin)?,
                origin,
                files: files.all(),
                config_json: serde_json::json!({ "kuairand": version.name() }).to_string(),
                description: format!(
                    "{} ({}), {}",
                    version.dataset(),
                    files.logs[0].parent().unwrap_or(dir).display(),
                    version.protocol()
                ),
            })
        }
        DatasetSource::AliExpress { dir } => {
            let files = crate::aliexpress::aliexpress_files(dir)?;
            let origin = "<embedded aliexpress schema>".to_string();
            Ok(Resolved {
                spec: SchemaSpec::from_toml_str(&crate::aliexpress::aliexpress_schema(), &origin)?,
                origin,
                files,
                config_json: "\"aliexpress\"".to_string(),
                description: format!("aliexpress ({}), 5 countries", dir.display()),
            })
        }
        DatasetSource::AliccpRaw { dir, protocol } => {
            let files = crate::aliccp_raw::aliccp_files(dir)?;
            let origin = format!("<embedded {} schema>", protocol.dataset());
            Ok(Resolved {
                spec: SchemaSpec::from_toml_str(protocol.schema(), &origin)?,
                origin,
                files: files.all(),
                config_json: serde_json::json!({ "aliccp_raw": protocol.name() }).to_string(),
                description: format!(
                    "{} ({}), {}",
                    protocol.dataset(),
                    dir.display(),
                    protocol.protocol()
                ),
            })
        }
        DatasetSource::AmazonRaw { dir } => {
            let files = crate::amazon_raw::amazon_raw_files(dir)?;
            let origin = "<embedded amazon-raw schema>".to_string();
            Ok(Resolved {
                spec: SchemaSpec::from_toml_str(aliccp_amazon::AMAZON_SCHEMA, &origin)?,
                origin,
                files: files.all(),
                config_json: "\"amazon_raw\"".to_string(),
                description: format!(
                    "amazon-raw ({}), {} categories, AREAD preprocessing",
                    dir.display(),
                    files.reviews.len()
                ),
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
        DatasetSource::SyntheticDelayed(cfg) => {
            cfg.validate()?;
            let origin = "<embedded delayed-feedback schema>".to_string();
            Ok(Resolved {
                spec: SchemaSpec::from_toml_str(&crate::delayed::delayed_schema_toml(cfg), &origin)?,
                origin,
                files: Vec::new(),
                config_json: serde_json::json!({ "synthetic_delayed": cfg }).to_string(),
                description: format!(
                    "synthetic delayed conversions (seed {}, {} rows over {} days, {:.0} % burst advertisers)",
                    cfg.seed,
                    cfg.n_rows,
                    cfg.days,
                    cfg.burst_share * 100.0
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

fn resolve_aliccp_amazon(
    which: AliccpAmazon,
    dir: &std::path::Path,
) -> Result<Resolved, DataError> {
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

/// Reads a source's rows.
pub(crate) fn load_table(src: &DatasetSource) -> Result<RawTable, DataError> {
    match src {
        DatasetSource::MovieLens1m {
            dir,
            row_order,
            history,
            ..
        } => {
            let mut t = movielens::load_movielens_1m(dir, *row_order)?;
            if *history > 0 {
                movielens::add_history(&mut t, *history)?;
            }
            Ok(t)
        }
        DatasetSource::MovieLens100k { dir } => {
            movielens::load_movielens_100k(dir, MovieLensOrder::Merged)
        }
        DatasetSource::Aliccp { dir } => {
            let which = AliccpAmazon::Aliccp;
            aliccp_amazon::load(which, &which.file(dir)?)
        }
        DatasetSource::Amazon { dir } => {
            let which = AliccpAmazon::Amazon;
            aliccp_amazon::load(which, &which.file(dir)?)
        }
        DatasetSource::KuaiRand { dir, version } => {
            crate::kuairand::load(*version, &version.files(dir)?)
        }
        DatasetSource::AliExpress { dir } => {
            crate::aliexpress::load(&crate::aliexpress::aliexpress_files(dir)?)
        }
        DatasetSource::AliccpRaw { dir, protocol } => {
            crate::aliccp_raw::load(*protocol, &crate::aliccp_raw::aliccp_files(dir)?)
        }
        DatasetSource::AmazonRaw { dir } => {
            crate::amazon_raw::load(&crate::amazon_raw::amazon_raw_files(dir)?)
        }
        DatasetSource::Synthetic(cfg) => Ok(synthetic::generate(cfg).table),
        DatasetSource::SyntheticDelayed(cfg) => Ok(crate::delayed::generate_delayed(cfg).table),
        DatasetSource::Csv {
            files, delimiter, ..
        } => {
            let columnar = files.iter().filter(|f| crate::pq::is_columnar(f)).count();
            match columnar {
                0 => csv::read_csv_files(files, *delimiter),
                n if n == files.len() => crate::pq::read_columnar_files(files),
                _ => Err(DataError::Config(
                    "dataset.files: mixes CSV with Parquet or Arrow IPC files; convert them to one kind".into(),
                )),
            }
        }
    }
}

/// The dataset table as a Markdown table (what `mdrec data list` prints).
pub fn table_markdown() -> String {
    let mut s = String::from(
        "| dataset | aliases | default split | other splits | domains | files | where to get it |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for r in &RECIPES {
        let others: Vec<&str> = r
            .splits
            .iter()
            .filter(|&&x| x != r.default_split)
            .map(|x| x.name())
            .collect();
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            r.name,
            r.name.aliases().join(", "),
            r.default_split,
            others.join(", "),
            r.domains,
            r.files,
            r.obtain
        ));
    }
    s
}

/// The dataset names for help texts: `movielens-1m (alias ml-1m), synthetic, ...`.
pub fn names_help() -> String {
    DatasetName::accepted()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_rows_follow_the_names_and_accept_their_default_split() {
        assert_eq!(RECIPES.len(), DatasetName::ALL.len());
        for (r, n) in RECIPES.iter().zip(DatasetName::ALL) {
            assert_eq!(r.name, *n);
            assert_eq!(n.recipe().name, *n);
            assert!(r.splits.contains(&r.default_split), "{n}");
        }
        let md = table_markdown();
        assert!(md.contains("| movielens-1m | ml-1m | m3oe |"), "{md}");
        assert!(md.contains("grouplens.org"), "{md}");
    }

    #[test]
    fn names_parse_with_aliases_and_list_the_accepted_ones() {
        assert_eq!(
            "ml-1m".parse::<DatasetName>().unwrap(),
            DatasetName::MovieLens1m
        );
        assert_eq!(DatasetName::MovieLens1m.to_string(), "movielens-1m");
        let e = "rnd".parse::<SplitName>().unwrap_err().to_string();
        assert_eq!(
            e,
            "dataset.split: unknown value \"rnd\"; expected one of: m3oe, sequential, random, time, aread, official"
        );
        let e = "ml1m".parse::<DatasetName>().unwrap_err().to_string();
        assert!(
            e.contains("movielens-1m (alias ml-1m), synthetic, csv, aliccp, amazon"),
            "{e}"
        );
    }
}
