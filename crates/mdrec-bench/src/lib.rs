//! What mdrec builds on top of training: benches, analyses, speed workloads and charts.
//!
//! This crate owns everything that runs or reads many trained runs and turns them into tables
//! and pictures; the training loop, run directories and reports themselves are `mdrec-train`'s.
//!
//! | module | owns |
//! |---|---|
//! | [`mod@bench`] | `mdrec bench`: a spec of (model, seed) runs, resumable, → `table.md`, `speed.md`, `runs.csv`, `summary.json`, `environment.md` |
//! | [`analyze`] | `mdrec analyze`: representation analyses of trained runs (information abundance and spectra of every field, IA after expert projection, expert utilisation, Diversity Index, entanglement within and across runs, mask overlap) |
//! | [`mutual_info`] | plug-in mutual information between fields and labels, and between behaviour categories at a position and the label (Pan et al. §7.1) |
//! | [`speed`] | `mdrec speed`: training / inference samples/s of fixed workloads (figures, never pass/fail) |
//! | [`plot`] | SVG charts (line charts, heat maps, the per-run training curve `curve.svg`) |
//!
//! Dependencies point one way: `mdrec-cli` → `mdrec-bench` → `mdrec-train` → `mdrec-models` →
//! `mdrec-nn` → `mdrec-data`, with `mdrec-metrics` beside them. Errors are
//! [`mdrec_train::TrainError`]s, so a bench fails with the same messages a single run does.

#![warn(missing_docs)]

pub mod analyze;
pub mod bench;
pub mod mutual_info;
pub mod plot;
pub mod precluster;
pub mod speed;

pub use mdrec_train::TrainError;
