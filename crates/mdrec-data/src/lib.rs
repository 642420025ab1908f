//! `mdrec-data`: the data path of mdrec, from raw logs to mini-batches.
//!
//! ```text
//! source (MovieLens-1M files | AREAD AliCCP / Amazon files | CSV + TOML schema | synthetic)
//!   -> RawTable            interned string columns, every row knows its file and line
//!   -> split row indices   sequential / random (cumulative floor) / by time / time quantiles
//!   -> fit on TRAIN only   vocabularies (0 = PAD, 1 = OOV, kept values sorted -> 2..),
//!                          numeric statistics and transforms, domain map, label rules
//!   -> EncodedData         columnar u32 / f32 per split, cached on disk by content hash
//!   -> Batch               rows gathered in place by `EncodedData::fill_batch`
//!   (AREAD) -> augment     counterfactual copies of training rows into small domains
//! ```
//!
//! | module | owns |
//! |---|---|
//! | [`raw`], [`csv`] | interned string tables; delimited files with a header |
//! | [`movielens`] | the MovieLens-1M recipe (age or genre domains) |
//! | [`aread`] | the AREAD AliCCP / Amazon recipes (AREAD's preprocessed files) |
//! | [`synthetic`] | the synthetic generator (optionally long-tailed domains) |
//! | [`schema`], [`fit`] | declared / fitted schema; fitting and encoding on train |
//! | [`prepare`], [`cache`] | the one data path and its on-disk cache; splits |
//! | [`store`], [`batch`] | encoded splits, batch filling, epoch order |
//! | [`augment`] | AREAD's popularity-based counterfactual augmentation (train split only) |
//! | [`rng`], [`error`] | deterministic random numbers; the error type |
//!
//! Every source goes through the same code ([`prepare`]); the MovieLens recipe declares its
//! features in an embedded TOML schema ([`MOVIELENS_1M_SCHEMA`]) like any user dataset. Bad
//! input is never repaired: it is a [`DataError`] naming the file, the line and the field.
//! Results are deterministic: the same inputs and seed give byte-identical outputs.

pub mod aread;
pub mod augment;
pub mod batch;
pub mod cache;
pub mod csv;
pub mod error;
pub mod fit;
pub mod movielens;
pub mod prepare;
pub mod raw;
pub mod rng;
pub mod schema;
pub mod store;
pub mod synthetic;

pub use aread::{AreadDataset, ALICCP_FILE, AMAZON_DOMAINS, AMAZON_FILE};
pub use augment::{augment, AugmentConfig, Augmentation, ColdRule, PopularityScope};
pub use batch::{Batch, Jagged};
pub use csv::{read_csv_files, write_csv, write_csv_with};
pub use error::DataError;
pub use fit::{Vocab, Vocabs, OOV, PAD};
pub use movielens::{
    load_movielens_1m, MovieLensDomain, MovieLensOrder, ML1M_GENRES, ML1M_HINT,
    MOVIELENS_1M_GENRE_SCHEMA, MOVIELENS_1M_SCHEMA,
};
pub use prepare::{
    movielens_split, prepare, prepare_table, quantile_linear, split_rows, write_schema_json,
    CacheInfo, DatasetSource, PrepareRequest, Prepared, SplitSpec,
};
pub use raw::{ColumnBuilder, RawColumn, RawTable};
pub use rng::Rng;
pub use schema::{
    DomainSpec, FieldKind, FieldRole, FieldSpec, FittedField, LabelRule, NumericStats, Schema,
    SchemaSpec, TaskSpec, Transform,
};
pub use store::{epoch_order, EncodedData};
pub use synthetic::{generate, synthetic_schema_toml, SyntheticConfig, SyntheticData};
