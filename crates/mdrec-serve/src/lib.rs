//! `mdrec-serve`: an Open Inference Protocol (KServe v2) HTTP server for mdrec models, generic
//! over a small [`Scorer`] / [`Loader`] pair so it needs no ML code, plus a closed-loop load
//! generator ([`loadgen()`]).
//!
//! # Why tokio + axum
//! axum sits on hyper, which gives HTTP/1.1 keep-alive, streaming bodies (so a body limit can
//! answer 413 without buffering more than the limit) and graceful shutdown (stop accepting,
//! finish what was received, close idle keep-alive connections) with little code and no extra
//! layers. The async runtime only parses, routes and waits: scoring runs on dedicated OS threads
//! per served version ([`batcher`]), so a slow model never blocks the runtime, and loading
//! versions runs on tokio's blocking pool.
//!
//! # Layout
//! - [`api`]: the traits and data types shared with model code, and the configuration.
//! - [`request`]: OIP infer request parsing/validation and the response body.
//! - [`batcher`]: per-version queue and dynamic batching on scoring threads.
//! - [`registry`]: models, versions, loading, rescans and atomic version swaps.
//! - [`server`]: HTTP routes, [`Server`] lifecycle and the repository poller.
//! - [`metrics`]: Prometheus metrics (the `prometheus` crate, text format).
//! - [`mod@loadgen`]: the load generator.
//!
//! # Endpoints
//! `GET /v2/health/live`, `GET /v2/health/ready`, `GET /v2/models/{name}[/versions/{v}]`,
//! `GET /v2/models/{name}[/versions/{v}]/ready`, `POST /v2/models/{name}[/versions/{v}]/infer`,
//! `POST /v2/repository/models/{name}/load`, `GET /metrics`. Errors are
//! `{"error": "message"}` with 400 (bad request or a row the scorer refused), 404 (unknown model,
//! version or endpoint), 408 (body not received before the deadline), 413 (body too large), 500 (scorer failure, or the newest version of a
//! model failed to load on the load endpoint), 503 (not ready, shutting down), 504 (deadline).

pub mod api;
pub mod batcher;
pub mod loadgen;
pub mod metrics;
pub mod registry;
pub mod request;
pub mod server;

pub use api::{
    Datatype, InputSpec, Loader, ModelMeta, ModelSource, RawBatch, Scorer, Scores, ServeConfig,
};
pub use loadgen::{loadgen, LoadgenConfig, LoadgenReport};
pub use server::Server;
