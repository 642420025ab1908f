//! `mdrec-data`: the data path of mdrec, from raw logs to mini-batches.
//!
//! ```text
//! source (MovieLens files | official raw releases | AREAD AliCCP / Amazon files | CSV + TOML schema | synthetic)
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
//! | [`recipe`] | the dataset table: names, aliases, default split, schema, loader, cache identity, where to get the data |
//! | [`records`] | records to score: the raw columns a run reads, derived columns, exporting a split |
//! | [`config`] | the `[dataset]` config section, typed and validated without reading files |
//! | [`source`], [`split`] | where rows come from; how they are split into train / valid / test |
//! | [`raw`], [`csv`], [`pq`] | interned string tables; delimited files with a header (RFC 4180 quoting); Parquet records |
//! | [`movielens`] | MovieLens-1M (age or genre domains) |
//! | [`aliccp_amazon`] | AliCCP and Amazon in the layout of AREAD's preprocessed files |
//! | [`aliccp_raw`] | AliCCP from the official raw files (Crocodile's 3 scenario domains or AREAD's 30 categories) |
//! | [`amazon_raw`] | Amazon Review 2018 from the official per-category files, AREAD's preprocessing |
//! | [`aliexpress`] | AliExpress (5 country domains, click and purchase) from the official release |
//! | [`kuairand`] | KuaiRand-Pure (M3oE protocol) and KuaiRand-1K (Crocodile protocol) from the official release |
//! | [`synthetic`] | the synthetic generator (optionally long-tailed domains) |
//! | [`delayed`] | delayed feedback: a synthetic stream with late conversions, waiting policies, training events |
//! | [`schema`], [`fit`] | declared / fitted schema; fitting on train, the one encoder |
//! | [`mod@prepare`], [`prepared`], [`cache`] | the one data path, its result and its on-disk cache |
//! | [`store`], [`batch`] | encoded splits, batch filling, epoch order, single-domain batches |
//! | [`mod@augment`] | AREAD's popularity-based counterfactual augmentation (train split only) |
//! | [`mod@quantile`] | the one quantile function (linear interpolation, numpy's default) |
//! | [`rng`], [`error`] | deterministic random numbers; the error type |
//!
//! Every source goes through the same code ([`prepare()`]); the MovieLens recipe declares its
//! features in an embedded TOML schema ([`MOVIELENS_1M_SCHEMA`]) like any user dataset. Bad
//! input is never repaired: it is a [`DataError`] naming the file, the line and the field.
//! Results are deterministic: the same inputs and seed give byte-identical outputs.

mod names;

pub mod aliccp_amazon;
pub mod aliccp_raw;
pub mod aliexpress;
pub mod amazon_raw;
pub mod augment;
pub mod batch;
pub mod cache;
pub mod col;
pub mod config;
pub mod csv;
pub mod delayed;
pub mod error;
pub mod fit;
pub mod ipc;
pub mod kuairand;
pub mod movielens;
pub mod ooc;
pub mod pq;
pub mod prepare;
pub mod prepared;
pub mod pretrain;
pub mod pretrained;
pub mod quantile;
pub mod raw;
mod rawfiles;
pub mod recipe;
pub mod records;
pub mod rng;
pub mod schema;
pub mod source;
pub mod split;
pub mod store;
pub mod synthetic;

pub use aliccp_amazon::{AliccpAmazon, ALICCP_FILE, AMAZON_DOMAINS, AMAZON_FILE};
pub use aliccp_raw::AliccpProtocol;
pub use augment::{augment, AugmentConfig, Augmentation, ColdRule, PopularityScope};
pub use batch::{Batch, Jagged};
pub use col::{Col, JaggedCol};
pub use config::DatasetConfig;
pub use csv::{read_csv_files, write_csv, write_csv_rows, write_csv_with, CsvChunks};
pub use error::DataError;
pub use fit::{Encoder, Labels, Vocab, Vocabs, OOV, PAD};
pub use ipc::{is_arrow, write_ipc_rows, IpcChunks};
pub use kuairand::KuaiRandVersion;
pub use movielens::{
    add_history, load_movielens_1m, MovieLensDomain, MovieLensOrder, HISTORY_COLUMNS, ML1M_GENRES,
    ML1M_HINT, MOVIELENS_1M_GENRE_SCHEMA, MOVIELENS_1M_SCHEMA,
};
pub use pq::{
    is_columnar, is_parquet, read_columnar_files, write_parquet_rows, ParquetChunks, RecordChunks,
};
pub use prepare::{
    apply_encodings, apply_pretrained, prepare, prepare_for, prepare_table, prepare_with,
    PrepareRequest,
};
pub use prepared::{write_schema_json, CacheInfo, Prepared};
pub use quantile::{quantile, sorted_quantile};
pub use raw::{ColumnBuilder, RawColumn, RawTable};
pub use recipe::{DatasetName, Recipe, SplitName, RECIPES};
pub use records::{export_split, ColumnType, ExportSplit, RecordColumn, RecordFormat};
pub use rng::Rng;
pub use schema::{
    interval_bucket, mnse_digits, mnse_width, DomainSpec, FieldKind, FieldRole, FieldSpec,
    FittedField, LabelRule, MnsePool, NumericCode, NumericEncoding, NumericStats, Padding, Schema,
    SchemaSpec, SeqEncoder, SeqPart, SeqSlot, TaskSpec, Transform, INTERVAL_BUCKETS,
};
pub use source::DatasetSource;
pub use split::{split_rows, SplitSpec};
pub use store::{
    block_order, domain_batches, epoch_order, partitioned_order, EncodedData, NEVER,
    SHUFFLE_BLOCK_ROWS, SHUFFLE_WINDOW_BLOCKS,
};
pub use synthetic::{generate, synthetic_schema_toml, SyntheticConfig, SyntheticData};
