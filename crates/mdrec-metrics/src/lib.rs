//! Evaluation metrics of mdrec, on plain `f32` / `f64` slices (no tensors).
//!
//! | file | owns |
//! |---|---|
//! | `auc.rs` | [`auc`]: exact, tie-aware ROC AUC (Mann–Whitney, ties ½ = sklearn `roc_auc_score`) and the sort-key kernel the other files reuse |
//! | `gauc.rs` | [`gauc`] → [`GaucResult`]: FuxiCTR/DIN group-size-weighted gAUC and the torchrec unweighted mean; single-class groups excluded and counted |
//! | `logloss.rs` | [`bce`] of one logit, [`logloss_from_logits`], [`logloss_from_probs`], and the M3oE quirk [`sklearn_2d_logloss_compat`] (compat only) |
//! | `stats.rs` | [`relaimpr`], [`weighted_domain_auc`] (DomainAUC), [`major_minor_k`], [`welch_t_test`], [`student_t_cdf`] |
//! | `report.rs` | [`evaluate`] → [`EvalReport`]: per (domain, task) cell, per task, per domain, overall; [`EvalReport::metric`] lookup by name |
//!
//! Definitions and their sources are in `docs/metrics.md`. Undefined values (a single-class or empty slice)
//! are `None` — `null` in JSON, never NaN — and [`evaluate`] lists them in
//! [`EvalReport::undefined`]. Functions never panic on data; the slice-level functions panic
//! only when their arguments differ in length (a programmer error), and [`evaluate`] returns
//! a [`MetricsError`] for every malformed input.
//!
//! ```
//! use mdrec_metrics::{auc, gauc, logloss_from_logits, relaimpr};
//!
//! let labels = [0.0, 1.0, 0.0, 1.0];
//! let scores = [0.1, 0.9, 0.4, 0.4]; // one tie between a positive and a negative
//! assert_eq!(auc(&labels, &scores), Some(0.875));
//! assert_eq!(auc(&[1.0, 1.0], &[0.2, 0.3]), None); // single class: undefined
//!
//! let g = gauc(&labels, &scores, &[7, 7, 8, 8]); // two users
//! assert_eq!((g.weighted, g.n_groups_used), (Some(0.75), 2));
//!
//! let ll = logloss_from_logits(&labels, &[-2.0, 2.0, -1.0, 0.5]).unwrap();
//! assert!(ll > 0.0);
//! assert!((relaimpr(0.7661, 0.7607) - 2.07).abs() < 0.005);
//! ```

#![warn(missing_docs)]

mod auc;
mod gauc;
mod logloss;
mod report;
mod stats;
#[cfg(test)]
mod testutil;

pub use auc::auc;
pub use gauc::{gauc, GaucResult};
pub use logloss::{bce, logloss_from_logits, logloss_from_probs, sklearn_2d_logloss_compat};
pub use report::{
    check_metric_name, evaluate, CellMetrics, EvalInput, EvalReport, MetricsError, OverallMetrics,
    SliceMetrics,
};
pub use stats::{
    major_minor_k, relaimpr, student_t_cdf, weighted_domain_auc, welch_t_test, WelchResult,
};
