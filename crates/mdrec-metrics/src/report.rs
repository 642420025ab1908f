//! The sliced evaluation report every run writes: per (domain, task) cell, per task, per
//! domain, and overall.

use serde::{Deserialize, Serialize};

use crate::basic::{auc_indexed, bce, gauc};
use crate::stats::weighted_domain_auc;

/// Errors of [`evaluate`] and [`EvalReport::metric`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    /// Inputs of inconsistent lengths.
    #[error("{0}")]
    Shape(String),
    /// A NaN or infinite score.
    #[error("non-finite logit {value} at row {row}, task `{task}`")]
    NonFinite {
        /// Row.
        row: usize,
        /// Task name.
        task: String,
        /// The value.
        value: f32,
    },
    /// A domain index outside the domain list.
    #[error("row {row} has domain index {domain}, but only {n_domains} domains are named")]
    DomainOutOfRange {
        /// Row.
        row: usize,
        /// Its domain index.
        domain: u32,
        /// Number of domains.
        n_domains: usize,
    },
    /// An unknown metric name.
    #[error("unknown metric `{name}`; accepted: {accepted}")]
    UnknownMetric {
        /// Requested name.
        name: String,
        /// Accepted names.
        accepted: String,
    },
    /// The metric exists but is undefined on this data.
    #[error("metric `{name}` is undefined: {why}")]
    Undefined {
        /// Metric name.
        name: String,
        /// Why.
        why: String,
    },
}

/// Inputs of [`evaluate`].
pub struct EvalInput<'a> {
    /// Pre-sigmoid scores, row-major `[n, n_tasks]`.
    pub logits: &'a [f32],
    /// Labels 0/1, row-major `[n, n_tasks]`.
    pub labels: &'a [f32],
    /// Number of tasks.
    pub n_tasks: usize,
    /// Domain of each row, `[n]`.
    pub domain: &'a [u32],
    /// Group key of each row for gAUC (`None`: no gAUC).
    pub group: Option<&'a [u64]>,
    /// Domain names.
    pub domain_names: &'a [String],
    /// Task names.
    pub task_names: &'a [String],
    /// Training rows per domain, the weights of DomainAUC (`None`: this split's counts).
    pub train_domain_counts: Option<&'a [usize]>,
}

/// Metrics of one (domain, task) cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellMetrics {
    /// Domain name.
    pub domain: String,
    /// Domain index.
    pub domain_index: usize,
    /// Task name.
    pub task: String,
    /// Rows.
    pub n: usize,
    /// Positive rows.
    pub positives: usize,
    /// AUC (`null` when single-class or empty).
    pub auc: Option<f64>,
    /// Group-size-weighted gAUC.
    pub gauc: Option<f64>,
    /// Unweighted mean gAUC.
    pub gauc_mean: Option<f64>,
    /// Mean BCE.
    pub logloss: Option<f64>,
}

/// Metrics of a slice pooled over cells.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceMetrics {
    /// Task or domain name.
    pub name: String,
    /// Rows (per task) or (row, task) pairs (per domain).
    pub n: usize,
    /// Per task: AUC pooled over domains. Per domain: mean over tasks of the cell AUC.
    pub auc: Option<f64>,
    /// Per task: pooled weighted gAUC. Per domain: mean over tasks of the cell gAUC.
    pub gauc: Option<f64>,
    /// Mean BCE over the slice's (row, task) pairs.
    pub logloss: Option<f64>,
}

/// Overall numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverallMetrics {
    /// Mean over defined cells of the cell AUC (M3oE's early-stopping number).
    pub auc_mean_cells: Option<f64>,
    /// Mean over tasks of the task AUC pooled over domains (M3oE's printed "overall AUC":
    /// sklearn's 2-D macro average).
    pub auc_task_pooled_mean: Option<f64>,
    /// Mean over tasks of the pooled weighted gAUC.
    pub gauc_task_mean: Option<f64>,
    /// Mean BCE over all (row, task) pairs.
    pub logloss: Option<f64>,
    /// Per task, DomainAUC (cell AUCs weighted by training rows of the domain), averaged over
    /// tasks.
    pub domain_auc: Option<f64>,
    /// Cells whose AUC is undefined.
    pub n_undefined_cells: usize,
}

/// The sliced evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Rows.
    pub n: usize,
    /// One per (domain, task), domain-major.
    pub cells: Vec<CellMetrics>,
    /// Per task, pooled over domains.
    pub tasks: Vec<SliceMetrics>,
    /// Per domain, mean over tasks of the cell metrics.
    pub domains: Vec<SliceMetrics>,
    /// Overall numbers.
    pub overall: OverallMetrics,
    /// Human-readable list of undefined cells and slices.
    pub undefined: Vec<String>,
}

fn mean(xs: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = xs.flatten().collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Compute every slice of the report.
pub fn evaluate(inp: &EvalInput) -> Result<EvalReport, MetricsError> {
    let t_n = inp.n_tasks;
    let n = inp.domain.len();
    let d_n = inp.domain_names.len();
    if inp.logits.len() != n * t_n || inp.labels.len() != n * t_n || inp.task_names.len() != t_n {
        return Err(MetricsError::Shape(format!(
            "evaluate: {} logits, {} labels, {} task names for {n} rows × {t_n} tasks",
            inp.logits.len(),
            inp.labels.len(),
            inp.task_names.len()
        )));
    }
    if let Some(g) = inp.group {
        if g.len() != n {
            return Err(MetricsError::Shape(format!(
                "evaluate: {} group keys for {n} rows",
                g.len()
            )));
        }
    }
    for (i, &d) in inp.domain.iter().enumerate() {
        if d as usize >= d_n {
            return Err(MetricsError::DomainOutOfRange {
                row: i,
                domain: d,
                n_domains: d_n,
            });
        }
    }
    for (k, &x) in inp.logits.iter().enumerate() {
        if !x.is_finite() {
            return Err(MetricsError::NonFinite {
                row: k / t_n,
                task: inp.task_names[k % t_n].clone(),
                value: x,
            });
        }
    }
    // Column views per task.
    let col = |src: &[f32], t: usize| -> Vec<f32> { (0..n).map(|i| src[i * t_n + t]).collect() };
    let mut rows_of: Vec<Vec<u32>> = vec![Vec::new(); d_n];
    for (i, &d) in inp.domain.iter().enumerate() {
        rows_of[d as usize].push(i as u32);
    }
    let mut undefined = Vec::new();
    let mut cells = Vec::with_capacity(d_n * t_n);
    let mut tasks = Vec::with_capacity(t_n);
    let mut task_cols = Vec::with_capacity(t_n);
    for t in 0..t_n {
        let y = col(inp.labels, t);
        let s = col(inp.logits, t);
        let mut all: Vec<u32> = (0..n as u32).collect();
        let a = auc_indexed(&y, &s, &mut all);
        if a.is_none() {
            undefined.push(format!(
                "task {}: AUC undefined (n={n}, single class or empty)",
                inp.task_names[t]
            ));
        }
        let g = inp.group.map(|g| gauc(&y, &s, g));
        let ll = (n > 0).then(|| {
            y.iter()
                .zip(&s)
                .map(|(&y, &x)| bce(x as f64, y as f64))
                .sum::<f64>()
                / n as f64
        });
        tasks.push(SliceMetrics {
            name: inp.task_names[t].clone(),
            n,
            auc: a,
            gauc: g.and_then(|g| g.weighted),
            logloss: ll,
        });
        task_cols.push((y, s));
    }
    for (d, rows) in rows_of.iter().enumerate() {
        for (t, (y, s)) in task_cols.iter().enumerate() {
            let positives = rows.iter().filter(|&&r| y[r as usize] > 0.5).count();
            let mut idx = rows.clone();
            let a = auc_indexed(y, s, &mut idx);
            if a.is_none() {
                undefined.push(format!(
                    "domain {} / task {}: AUC undefined (n={}, positives={positives})",
                    inp.domain_names[d],
                    inp.task_names[t],
                    rows.len()
                ));
            }
            let (gw, gm) = match inp.group {
                Some(g) => {
                    let yy: Vec<f32> = rows.iter().map(|&r| y[r as usize]).collect();
                    let ss: Vec<f32> = rows.iter().map(|&r| s[r as usize]).collect();
                    let gg: Vec<u64> = rows.iter().map(|&r| g[r as usize]).collect();
                    let res = gauc(&yy, &ss, &gg);
                    (res.weighted, res.mean)
                }
                None => (None, None),
            };
            let ll = (!rows.is_empty()).then(|| {
                rows.iter()
                    .map(|&r| bce(s[r as usize] as f64, y[r as usize] as f64))
                    .sum::<f64>()
                    / rows.len() as f64
            });
            cells.push(CellMetrics {
                domain: inp.domain_names[d].clone(),
                domain_index: d,
                task: inp.task_names[t].clone(),
                n: rows.len(),
                positives,
                auc: a,
                gauc: gw,
                gauc_mean: gm,
                logloss: ll,
            });
        }
    }
    let domains = (0..d_n)
        .map(|d| {
            let cs = &cells[d * t_n..(d + 1) * t_n];
            let nn: usize = cs.iter().map(|c| c.n).sum();
            let ll = (nn > 0).then(|| {
                cs.iter()
                    .map(|c| c.logloss.unwrap_or(0.0) * c.n as f64)
                    .sum::<f64>()
                    / nn as f64
            });
            SliceMetrics {
                name: inp.domain_names[d].clone(),
                n: nn,
                auc: mean(cs.iter().map(|c| c.auc)),
                gauc: mean(cs.iter().map(|c| c.gauc)),
                logloss: ll,
            }
        })
        .collect();
    let weights: Vec<f64> = match inp.train_domain_counts {
        Some(c) => c.iter().map(|&x| x as f64).collect(),
        None => rows_of.iter().map(|r| r.len() as f64).collect(),
    };
    let domain_auc = mean((0..t_n).map(|t| {
        let a: Vec<Option<f64>> = (0..d_n).map(|d| cells[d * t_n + t].auc).collect();
        weighted_domain_auc(&a, &weights)
    }));
    let total = n * t_n;
    let overall = OverallMetrics {
        auc_mean_cells: mean(cells.iter().map(|c| c.auc)),
        auc_task_pooled_mean: mean(tasks.iter().map(|t| t.auc)),
        gauc_task_mean: mean(tasks.iter().map(|t| t.gauc)),
        logloss: (total > 0)
            .then(|| tasks.iter().map(|t| t.logloss.unwrap_or(0.0)).sum::<f64>() / t_n as f64),
        domain_auc,
        n_undefined_cells: cells.iter().filter(|c| c.auc.is_none()).count(),
    };
    Ok(EvalReport {
        n,
        cells,
        tasks,
        domains,
        overall,
        undefined,
    })
}

impl EvalReport {
    /// Every accepted metric name for this report.
    pub fn accepted_metric_names(&self) -> Vec<String> {
        let mut v: Vec<String> = [
            "auc_mean_cells",
            "auc_task_pooled_mean",
            "gauc_task_mean",
            "logloss",
            "domain_auc",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for t in &self.tasks {
            v.push(format!("auc/{}", t.name));
            v.push(format!("gauc/{}", t.name));
            v.push(format!("logloss/{}", t.name));
        }
        for c in &self.cells {
            v.push(format!("auc/{}/{}", c.domain, c.task));
            v.push(format!("logloss/{}/{}", c.domain, c.task));
        }
        v
    }

    /// Look up a scalar by name; returns `(value, higher_is_better)`.
    ///
    /// Names: `auc_mean_cells`, `auc_task_pooled_mean`, `gauc_task_mean`, `logloss`,
    /// `domain_auc`, `auc/<task>`, `gauc/<task>`, `logloss/<task>`, `auc/<domain>/<task>`,
    /// `logloss/<domain>/<task>`.
    pub fn metric(&self, name: &str) -> Result<(f64, bool), MetricsError> {
        let o = &self.overall;
        let undefined = |why: &str| MetricsError::Undefined {
            name: name.to_string(),
            why: why.to_string(),
        };
        let found: Option<(Option<f64>, bool)> = match name {
            "auc_mean_cells" => Some((o.auc_mean_cells, true)),
            "auc_task_pooled_mean" => Some((o.auc_task_pooled_mean, true)),
            "gauc_task_mean" => Some((o.gauc_task_mean, true)),
            "logloss" => Some((o.logloss, false)),
            "domain_auc" => Some((o.domain_auc, true)),
            _ => {
                let parts: Vec<&str> = name.split('/').collect();
                match parts.as_slice() {
                    [m, t] => self
                        .tasks
                        .iter()
                        .find(|x| x.name == *t)
                        .and_then(|x| match *m {
                            "auc" => Some((x.auc, true)),
                            "gauc" => Some((x.gauc, true)),
                            "logloss" => Some((x.logloss, false)),
                            _ => None,
                        }),
                    [m, d, t] => self
                        .cells
                        .iter()
                        .find(|c| c.domain == *d && c.task == *t)
                        .and_then(|c| match *m {
                            "auc" => Some((c.auc, true)),
                            "logloss" => Some((c.logloss, false)),
                            _ => None,
                        }),
                    _ => None,
                }
            }
        };
        match found {
            None => Err(MetricsError::UnknownMetric {
                name: name.to_string(),
                accepted: self.accepted_metric_names().join(", "),
            }),
            Some((None, _)) => Err(undefined(
                "no defined value on this split (single-class or empty slices)",
            )),
            Some((Some(v), hib)) => Ok((v, hib)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::basic::auc;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn slices_agree_with_direct_computation() {
        // 8 rows, 2 domains, 2 tasks.
        let logits = [
            0.1, 0.2, -0.3, 0.5, 0.9, -1.0, 0.4, 0.0, -0.2, 0.3, 0.8, 0.1, 0.0, -0.5, 1.2, 0.7,
        ];
        let labels = [
            1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0,
        ];
        let domain = [0, 1, 0, 1, 0, 1, 0, 1];
        let (dn, tn) = (names(&["a", "b"]), names(&["click", "like"]));
        let r = evaluate(&EvalInput {
            logits: &logits,
            labels: &labels,
            n_tasks: 2,
            domain: &domain,
            group: Some(&[1, 1, 2, 2, 1, 1, 2, 2]),
            domain_names: &dn,
            task_names: &tn,
            train_domain_counts: Some(&[3, 1]),
        })
        .unwrap();
        let pick = |d: u32, t: usize| -> (Vec<f32>, Vec<f32>) {
            (0..8)
                .filter(|&i| domain[i] == d)
                .map(|i| (labels[i * 2 + t], logits[i * 2 + t]))
                .unzip()
        };
        let (y, s) = pick(0, 0);
        assert_eq!(r.cells[0].auc, auc(&y, &s));
        assert_eq!(r.cells[0].n, 4);
        let (y, s) = pick(1, 1);
        assert_eq!(r.cells[3].auc, auc(&y, &s));
        let click: (Vec<f32>, Vec<f32>) = (0..8).map(|i| (labels[i * 2], logits[i * 2])).unzip();
        assert_eq!(r.tasks[0].auc, auc(&click.0, &click.1));
        let cells: Vec<f64> = r.cells.iter().filter_map(|c| c.auc).collect();
        assert!(
            (r.overall.auc_mean_cells.unwrap() - cells.iter().sum::<f64>() / cells.len() as f64)
                .abs()
                < 1e-12
        );
        let pooled = (r.tasks[0].auc.unwrap() + r.tasks[1].auc.unwrap()) / 2.0;
        assert!((r.overall.auc_task_pooled_mean.unwrap() - pooled).abs() < 1e-12);
        // cells are domain-major: [a/click, a/like, b/click, b/like]; weights 3 (a) and 1 (b).
        let dauc0 = (3.0 * r.cells[0].auc.unwrap() + r.cells[2].auc.unwrap()) / 4.0;
        let dauc1 = (3.0 * r.cells[1].auc.unwrap() + r.cells[3].auc.unwrap()) / 4.0;
        assert_eq!(r.overall.n_undefined_cells, 0);
        assert!((r.overall.domain_auc.unwrap() - (dauc0 + dauc1) / 2.0).abs() < 1e-12);
        assert_eq!(
            r.metric("auc/b/like").unwrap(),
            (r.cells[3].auc.unwrap(), true)
        );
        assert!(!r.metric("logloss").unwrap().1);
        let err = r.metric("auc/nope").unwrap_err().to_string();
        assert!(
            err.contains("auc_mean_cells") && err.contains("auc/a/click"),
            "{err}"
        );
    }

    #[test]
    fn single_class_cell_is_undefined_and_counted_not_nan() {
        let dn = names(&["a", "b"]);
        let tn = names(&["click"]);
        let r = evaluate(&EvalInput {
            logits: &[0.1, 0.2, 0.3, 0.4],
            labels: &[1.0, 0.0, 1.0, 1.0],
            n_tasks: 1,
            domain: &[0, 0, 1, 1],
            group: None,
            domain_names: &dn,
            task_names: &tn,
            train_domain_counts: None,
        })
        .unwrap();
        assert_eq!(r.cells[1].auc, None);
        assert_eq!(r.overall.n_undefined_cells, 1);
        assert!(
            r.undefined[0].contains("domain b / task click")
                && r.undefined[0].contains("positives=2"),
            "{:?}",
            r.undefined
        );
        assert_eq!(r.overall.auc_mean_cells, Some(0.0));
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"auc\":null") && !json.contains("NaN"));
        assert!(r
            .metric("auc/b/click")
            .unwrap_err()
            .to_string()
            .contains("undefined"));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let dn = names(&["a"]);
        let tn = names(&["click"]);
        let base = EvalInput {
            logits: &[0.1, f32::NAN],
            labels: &[1.0, 0.0],
            n_tasks: 1,
            domain: &[0, 0],
            group: None,
            domain_names: &dn,
            task_names: &tn,
            train_domain_counts: None,
        };
        assert!(evaluate(&base).unwrap_err().to_string().contains("row 1"));
        let e = evaluate(&EvalInput {
            logits: &[0.1, 0.2],
            domain: &[0, 3],
            ..base
        })
        .unwrap_err();
        assert!(e.to_string().contains("domain index 3"));
    }
}
