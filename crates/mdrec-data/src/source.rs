//! Where a dataset's rows come from ([`DatasetSource`]): a recipe's files with its options, the
//! synthetic generator, or user CSV files with a schema. What each source's schema, loader and
//! cache identity are is the recipe table's business ([`crate::recipe`]).

use std::path::PathBuf;

use crate::movielens::{MovieLensDomain, MovieLensOrder};
use crate::recipe::DatasetName;
use crate::synthetic::SyntheticConfig;

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
        /// Behaviour history length (`dataset.history`; 0 = none, see
        /// [`crate::movielens::add_history`]).
        history: usize,
        /// How the history sequences are encoded (`dataset.history_encoder`).
        history_encoder: crate::SeqEncoder,
    },
    /// The official MovieLens-100K folder (`u.data`, `u.user`, `u.item`), read with the
    /// MovieLens-1M protocol (three age domains).
    /// Rows in the default MovieLens-1M row order ([`MovieLensOrder::Merged`]).
    MovieLens100k {
        /// The unzipped `ml-100k` folder.
        dir: PathBuf,
    },
    /// AliCCP in the layout of the official AREAD code (see [`crate::aliccp_amazon`]).
    Aliccp {
        /// The folder holding AREAD's preprocessed AliCCP file.
        dir: PathBuf,
    },
    /// Amazon Review 2018 in the layout of the official AREAD code (see [`crate::aliccp_amazon`]).
    Amazon {
        /// The folder holding AREAD's preprocessed Amazon file.
        dir: PathBuf,
    },
    /// A KuaiRand release with its paper protocol (see [`crate::kuairand`]).
    KuaiRand {
        /// The release's `data` folder (or the folder holding it).
        dir: PathBuf,
        /// Pure (M3oE) or 1K (Crocodile).
        version: crate::kuairand::KuaiRandVersion,
    },
    /// AliCCP from the official raw files with a paper's protocol (see [`crate::aliccp_raw`]).
    AliccpRaw {
        /// The folder holding `sample_skeleton_*.csv` and `common_features_*.csv`.
        dir: PathBuf,
        /// Crocodile (3 scenarios) or AREAD (30 categories).
        protocol: crate::aliccp_raw::AliccpProtocol,
    },
    /// Amazon Review 2018 from the official per-category files, AREAD's preprocessing (see
    /// [`crate::amazon_raw`]).
    AmazonRaw {
        /// The folder holding `<Category>.json.gz` and `meta_<Category>.json.gz`.
        dir: PathBuf,
    },
    /// AliExpress from the official release (see [`crate::aliexpress`]).
    AliExpress {
        /// The folder holding the five `AliExpress_<CC>` folders.
        dir: PathBuf,
    },
    /// The synthetic generator.
    Synthetic(SyntheticConfig),
    /// The synthetic delayed-feedback stream (see [`crate::delayed`]).
    SyntheticDelayed(crate::delayed::DelayedConfig),
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

impl DatasetSource {
    /// The dataset (row of the recipe table) this source reads.
    pub fn name(&self) -> DatasetName {
        match self {
            DatasetSource::MovieLens1m { .. } => DatasetName::MovieLens1m,
            DatasetSource::MovieLens100k { .. } => DatasetName::MovieLens100k,
            DatasetSource::Aliccp { .. } => DatasetName::Aliccp,
            DatasetSource::Amazon { .. } => DatasetName::Amazon,
            DatasetSource::KuaiRand { version, .. } => match version {
                crate::kuairand::KuaiRandVersion::Pure => DatasetName::KuaiRandPure,
                crate::kuairand::KuaiRandVersion::OneK => DatasetName::KuaiRand1k,
            },
            DatasetSource::AliExpress { .. } => DatasetName::AliExpress,
            DatasetSource::AliccpRaw { protocol, .. } => match protocol {
                crate::aliccp_raw::AliccpProtocol::Crocodile => DatasetName::AliccpRawCrocodile,
                crate::aliccp_raw::AliccpProtocol::Aread => DatasetName::AliccpRawAread,
            },
            DatasetSource::AmazonRaw { .. } => DatasetName::AmazonRaw,
            DatasetSource::Synthetic(_) => DatasetName::Synthetic,
            DatasetSource::SyntheticDelayed(_) => DatasetName::SyntheticDelayed,
            DatasetSource::Csv { .. } => DatasetName::Csv,
        }
    }
}
