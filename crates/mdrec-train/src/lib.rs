//! Training, evaluation and the run directory.
//!
//! This crate owns the training loop ([`engine`] for one step, [`trainer`] for epochs, early
//! stopping with best-weights restore and the training settings), AREAD's mask schedule
//! ([`hemp`]), data-parallel training across processes ([`dist`]), the run configuration
//! ([`config`]), checkpoints ([`checkpoint`]), reports ([`report`]), progress display
//! ([`progress`]) and scoring new records with a finished run ([`scoring`]). It combines the
//! data path, the embedding store, a zoo model and the metrics; it never parses raw files
//! itself (that is `mdrec-data`).
//!
//! What is built on finished runs (benches over many runs, representation analyses, speed
//! workloads, charts) lives in `mdrec-bench`, which depends on this crate, never the reverse.

#![warn(missing_docs)]

use std::path::{Path, PathBuf};

pub mod checkpoint;
pub mod config;
pub mod dist;
pub mod engine;
pub mod hemp;
pub mod progress;
pub mod report;
pub mod resume;
pub mod rew;
pub mod scoring;
pub mod stream;
pub mod trainer;
pub mod uncertainty;

pub use config::{DatasetConfig, RunConfig, TrainConfig};
pub use mdrec_nn::denormals;
pub use scoring::{probability, write_predictions, RunScorer, Scored};
pub use trainer::{
    context_from_schema, evaluate_run, load_run, prepare_dataset, read_run_config, resume_run,
    train_run, LoadedRun, RunOutcome, TrainedModels,
};

/// Errors of training and evaluation.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Bad configuration.
    #[error("config: {0}")]
    Config(String),
    /// Data problems (reading, splitting, fitting, caching), with their cause; the message
    /// names the file, line or key.
    #[error(transparent)]
    Data(#[from] mdrec_data::DataError),
    /// A tensor, batch or mask that does not fit what the model expects (a bug, not bad input).
    #[error("tensor: {0}")]
    Tensor(String),
    /// Model construction.
    #[error(transparent)]
    Model(#[from] mdrec_models::ModelError),
    /// Metrics.
    #[error("metrics: {0}")]
    Metrics(String),
    /// Checkpoint problems.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// Non-finite loss.
    #[error("training diverged: {0}")]
    Diverged(String),
    /// File system.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

impl TrainError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
