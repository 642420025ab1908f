//! The contract between the serving layer and a model: the [`Scorer`] / [`Loader`] traits, the
//! data they exchange ([`ModelMeta`], [`RawBatch`], [`Scores`]) and the server configuration
//! ([`ServeConfig`], [`ModelSource`]). Nothing here depends on HTTP or on any ML code.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The datatype of one raw input column, as named by the Open Inference Protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Datatype {
    /// Strings (OIP `BYTES`; JSON strings on the wire).
    Bytes,
    /// 64-bit signed integers (OIP `INT64`; JSON integers on the wire).
    Int64,
    /// 32-bit floats (OIP `FP32`; JSON numbers on the wire, finite only).
    Fp32,
}

impl Datatype {
    /// The OIP name: `"BYTES"`, `"INT64"` or `"FP32"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Datatype::Bytes => "BYTES",
            Datatype::Int64 => "INT64",
            Datatype::Fp32 => "FP32",
        }
    }

    /// Parses an OIP datatype name (exact, upper case); `None` for any other name.
    pub fn parse(name: &str) -> Option<Datatype> {
        match name {
            "BYTES" => Some(Datatype::Bytes),
            "INT64" => Some(Datatype::Int64),
            "FP32" => Some(Datatype::Fp32),
            _ => None,
        }
    }
}

impl std::fmt::Display for Datatype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One raw column a model reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputSpec {
    /// Column name, as clients send it in `inputs[].name`.
    pub name: String,
    /// Datatype clients must send.
    pub datatype: Datatype,
    /// When true a request may leave this input out; the scorer then gets `None` for it.
    pub optional: bool,
}

/// What a loaded model reads and writes; reported by the metadata endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelMeta {
    /// Raw columns the model reads, in the order of [`RawBatch::columns`].
    pub inputs: Vec<InputSpec>,
    /// Task names, one FP32 output each, in the order of [`Scores::tasks`].
    pub outputs: Vec<String>,
    /// Domain names (reported in the metadata `parameters`).
    pub domains: Vec<String>,
    /// Platform string reported in metadata, e.g. `"mdrec-mmoe"`.
    pub platform: String,
}

/// One merged batch of raw rows: `columns[i]` belongs to `meta.inputs[i]`; `None` when an
/// optional input is absent; every present column has `n_rows` values as strings (INT64/FP32
/// values are formatted with Rust's `Display`, e.g. 3 -> "3", 0.5 -> "0.5"; FP32 values are
/// formatted as `f32`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawBatch {
    /// Number of rows; every present column has this many values.
    pub n_rows: usize,
    /// One entry per `meta.inputs`, `None` for an absent optional input.
    pub columns: Vec<Option<Vec<String>>>,
}

/// Probabilities, task-major: `tasks[t][r]` for task `meta.outputs[t]` and row `r`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scores {
    /// One vector of `n_rows` probabilities per task, in `meta.outputs` order.
    pub tasks: Vec<Vec<f32>>,
}

/// A loaded model that turns raw rows into probabilities. Called from dedicated scoring threads
/// (never from the async runtime), possibly from several threads at once.
pub trait Scorer: Send + Sync + 'static {
    /// What the model reads and writes; must not change over the scorer's lifetime.
    fn meta(&self) -> &ModelMeta;
    /// Scores a batch. `Err(message)` names the offending row (0-based within the batch) and
    /// column, e.g. "row 3, `domain`: value `x` was not seen in training". The server re-scores
    /// merged requests one by one on an error, so the message a client sees uses its own rows.
    fn score(&self, batch: &RawBatch) -> Result<Scores, String>;
}

/// Loads one version directory into a scorer (a corrupt / half-written directory is an `Err`).
/// Called on a blocking thread.
pub trait Loader: Send + Sync + 'static {
    /// Loads `dir`; `Err(reason)` when it cannot be served.
    fn load(&self, dir: &Path) -> Result<Arc<dyn Scorer>, String>;
}

/// Server settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeConfig {
    /// Address to bind; port 0 picks a free port (see [`crate::Server::local_addr`]).
    pub addr: SocketAddr,
    /// A scoring thread stops adding requests to a batch once it holds this many rows (a single
    /// larger request is scored alone).
    pub max_batch_rows: usize,
    /// How long a scoring thread waits for more requests after the first one of a batch.
    pub max_delay_us: u64,
    /// Largest accepted request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// Per-request deadline from arrival to scored; past it the client gets 504.
    pub request_timeout_ms: u64,
    /// Repository rescan period; 0 turns polling off (the load endpoint still works).
    pub poll_interval_ms: u64,
    /// Scoring threads per served version (at least 1 is used).
    pub workers: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_batch_rows: 256,
            max_delay_us: 200,
            max_body_bytes: 8 * 1024 * 1024,
            request_timeout_ms: 1000,
            poll_interval_ms: 1000,
            workers: 1,
        }
    }
}

/// Where the served models come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSource {
    /// Named run directories, each served as version 1; no rescans.
    Runs(Vec<(String, PathBuf)>),
    /// A model repository: `DIR/<name>/<version>/` with integer version folder names. The newest
    /// version that loads is served; the folder is rescanned every `poll_interval_ms` and on
    /// `POST /v2/repository/models/{name}/load`.
    Repository(PathBuf),
}
