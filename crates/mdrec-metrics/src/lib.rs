//! Evaluation metrics of mdrec, on plain slices (no tensors).
//!
//! - [`auc`]: exact, tie-aware ROC AUC (Mann–Whitney with average ranks, = sklearn
//!   `roc_auc_score`).
//! - [`gauc`]: group AUC with FuxiCTR/DIN semantics (weighted by group size) and the torchrec
//!   unweighted mean; single-class groups are excluded and counted.
//! - [`logloss_from_logits`] / [`logloss_from_probs`]: mean binary cross-entropy.
//! - [`relaimpr`], [`weighted_domain_auc`], [`major_minor_k`], [`welch_t_test`].
//! - [`evaluate`]: the sliced report (per domain × task, per task, per domain, overall) that
//!   every run writes.
//!
//! Undefined values (a single-class slice, an empty slice) are `None` — `null` in JSON — and are
//! listed in [`EvalReport::undefined`]; they are never NaN.
//!
//! ```
//! let auc = mdrec_metrics::auc(&[0.0, 1.0, 0.0, 1.0], &[0.1, 0.9, 0.4, 0.4]).unwrap();
//! assert!((auc - 0.875).abs() < 1e-12);
//! ```

#![warn(missing_docs)]

mod basic;
mod report;
mod stats;

pub use basic::{
    auc, gauc, logloss_from_logits, logloss_from_probs, sklearn_2d_logloss_compat, GaucResult,
};
pub use report::{
    evaluate, CellMetrics, EvalInput, EvalReport, MetricsError, OverallMetrics, SliceMetrics,
};
pub use stats::{major_minor_k, relaimpr, weighted_domain_auc, welch_t_test, WelchResult};
