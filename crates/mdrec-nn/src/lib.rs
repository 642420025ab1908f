//! The tensor side of mdrec: everything between a host-side [`mdrec_data::Batch`] and a model.
//!
//! This crate owns:
//! - [`device`]: choosing the compute device (burn `flex` on CPU; CUDA behind the `cuda` feature).
//!   burn 0.22 dispatches the backend at run time from the [`Device`](burn::tensor::Device), so
//!   models are written once against `Tensor<D>` and never name a backend.
//! - [`embedding`]: our own embedding store. Tables are contiguous row arrays with row-wise
//!   optimizer state (Adam, Adagrad, SGD); a batch's rows are gathered into one leaf tensor and its
//!   gradient is scattered back to the touched rows only (sparse updates).
//! - [`collective`]: the process group of data-parallel training (implemented over MPI by the
//!   binary) and the row-wise layout of tables sharded across it.
//! - [`dynamic`]: tables that grow and shrink in stream training: admission, capacity, eviction
//!   and expiry, with the id → row map that is saved with the weights.
//! - [`input`]: [`ModelInput`] (what every model receives) and [`ModelContext`] (the shapes a model
//!   is built for), including the per-domain row routing that keeps per-domain work proportional
//!   to the domain's rows.
//! - [`layers`]: shared blocks (deterministically initialised `Linear`, `Mlp` with BN/LN/none,
//!   softmax gates) that model files compose.
//! - [`loss`]: numerically stable BCE on logits and the per-(domain, task) loss weights.
//! - [`init`]: deterministic parameter initialisation from the run seed.
//!
//! It does not own models (see `mdrec-models`), training loops or metrics.

#![warn(missing_docs)]

pub mod collective;
pub mod denormals;
pub mod device;
pub mod disentangle;
pub mod dynamic;
pub mod embedding;
pub mod init;
pub mod input;
pub mod layers;
pub mod loss;
pub mod ranking;
pub mod sequence;

pub use burn;
pub use dynamic::{Admission, Eviction, NewRows, TablePolicy, TableStats};
pub use embedding::{
    EmbeddingConfig, EmbeddingStore, LookupError, ShardInfo, ShardedTable, SparseOptimizer,
    StateArray, StoreState, TableState,
};
pub use input::{
    EmbeddingSet, EmbeddingSetSpec, FieldInfo, ModelContext, ModelInput, SequenceInfo,
};
pub use layers::{Activation, Gate, GateKind, Mlp, MlpConfig, Norm};
pub use sequence::SequenceEncoders;
