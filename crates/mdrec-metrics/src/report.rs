//! The sliced evaluation report every run writes ([`evaluate`] → [`EvalReport`]): per
//! (domain, task) cell, per task pooled over domains, per domain averaged over tasks, and the
//! overall numbers the references print or early-stop on. [`EvalReport::metric`] looks a
//! scalar up by name for early stopping and tables.
//!
//! Cost: per task, one counting pass over the rows, one sort per domain segment and one sort
//! of the whole column (plus the same on `(group, key)` pairs when gAUC is on). Buffers are
//! allocated once per call and reused across tasks.

use serde::{Deserialize, Serialize};

use crate::auc::{auc_keys, row_key};
use crate::gauc::gauc_pairs;
use crate::logloss::bce;
use crate::stats::weighted_domain_auc;

/// Errors of [`evaluate`] and [`EvalReport::metric`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    /// Inputs of inconsistent lengths.
    #[error("{0}")]
    Shape(String),
    /// A NaN or infinite logit.
    #[error("non-finite logit {value} at row {row}, task `{task}`")]
    NonFinite {
        /// Row.
        row: usize,
        /// Task name.
        task: String,
        /// The value.
        value: f32,
    },
    /// A label that is not finite or lies outside `[0, 1]` (labels are 0/1).
    #[error("label {value} at row {row}, task `{task}` is not in [0, 1]")]
    InvalidLabel {
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

/// Inputs of [`evaluate`]. Rows are samples; `logits` and `labels` hold `n_tasks` values per
/// row.
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
    /// Training rows per domain, the weights of DomainAUC (`None`: this split's counts). Must
    /// have one entry per domain name.
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
    /// Group-size-weighted gAUC (FuxiCTR / DIN) of the cell's rows, grouped by the group key.
    pub gauc: Option<f64>,
    /// Unweighted mean of the per-group AUCs (torchrec).
    pub gauc_mean: Option<f64>,
    /// Mean BCE.
    pub logloss: Option<f64>,
    /// Calibration: Σ predicted probability / Σ label (PCOC; 1 = calibrated, `null` without
    /// positives).
    #[serde(default)]
    pub pcoc: Option<f64>,
    /// Mean predicted probability minus the positive rate (`null` when empty).
    #[serde(default)]
    pub bias: Option<f64>,
}

/// Metrics of a slice pooled over cells.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceMetrics {
    /// Task or domain name.
    pub name: String,
    /// Rows in the slice.
    pub n: usize,
    /// Per task: AUC pooled over domains. Per domain: mean over tasks of the defined cell AUCs.
    pub auc: Option<f64>,
    /// Per task: weighted gAUC pooled over domains (groups = users, not user × domain). Per
    /// domain: mean over tasks of the defined cell gAUCs. `None` without group keys.
    pub gauc: Option<f64>,
    /// Mean BCE over the slice's (row, task) pairs.
    pub logloss: Option<f64>,
    /// Σ predicted probability / Σ label over the slice's (row, task) pairs (PCOC).
    #[serde(default)]
    pub pcoc: Option<f64>,
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
    /// Per task, DomainAUC (cell AUCs weighted by the domain's training rows, undefined cells
    /// skipped and the weights renormalised), averaged over the tasks where it is defined.
    pub domain_auc: Option<f64>,
    /// Cells whose AUC is undefined (single class or empty).
    pub n_undefined_cells: usize,
    /// Σ predicted probability / Σ label over all (row, task) pairs (PCOC).
    #[serde(default)]
    pub pcoc: Option<f64>,
}

/// The sliced evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Rows.
    pub n: usize,
    /// One per (domain, task), domain-major.
    pub cells: Vec<CellMetrics>,
    /// Per task, pooled over all domains (in task order).
    pub tasks: Vec<SliceMetrics>,
    /// Per domain (in domain order). **Not pooled over tasks**: `auc` / `gauc` are the means
    /// over tasks of the defined per-(domain, task) cell values; `logloss` is the mean BCE over
    /// the domain's (row, task) pairs; `n` is the domain's row count.
    pub domains: Vec<SliceMetrics>,
    /// Overall numbers.
    pub overall: OverallMetrics,
    /// Human-readable list of cells and slices whose AUC or gAUC is undefined, e.g.
    /// `domain age_25 / task like: single class (n=120, positives=0)`. Order: cells
    /// (domain-major), then domains whose every cell is undefined, then tasks. Without group keys
    /// gAUC is simply not computed and not listed.
    pub undefined: Vec<String>,
    /// Per domain, the weight DomainAUC and Major-K / Minor-K use: the domain's training rows
    /// when given ([`EvalInput::train_domain_counts`]), else its rows in this slice. Empty in
    /// reports written before it existed.
    #[serde(default)]
    pub domain_weights: Vec<f64>,
    /// Run-level figures computed outside [`evaluate`] (e.g. `repeat_exposure_top10`, the
    /// share of top-10 recommendations that repeat a recent exposure), looked up by name by
    /// [`EvalReport::metric`] (lower is better).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub extra: std::collections::BTreeMap<String, f64>,
}

/// Mean of the defined values; `None` when none is defined.
fn mean_defined(xs: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let (mut s, mut k) = (0.0, 0usize);
    for x in xs.flatten() {
        s += x;
        k += 1;
    }
    (k > 0).then(|| s / k as f64)
}

/// Why a slice's AUC is undefined: `single class (n=.., positives=..)` or `empty (n=0)`.
fn auc_undefined_why(n: usize, positives: usize) -> String {
    if n == 0 {
        "empty (n=0)".to_string()
    } else {
        format!("single class (n={n}, positives={positives})")
    }
}

fn validate(inp: &EvalInput) -> Result<(), MetricsError> {
    let t_n = inp.n_tasks;
    let n = inp.domain.len();
    let d_n = inp.domain_names.len();
    if t_n == 0 {
        return Err(MetricsError::Shape("evaluate: n_tasks is 0".into()));
    }
    if inp.logits.len() != n * t_n || inp.labels.len() != n * t_n || inp.task_names.len() != t_n {
        return Err(MetricsError::Shape(format!(
            "evaluate: {} logits, {} labels and {} task names for {n} rows (domain.len()) × \
             {t_n} tasks; expected {} logits, {} labels, {t_n} task names",
            inp.logits.len(),
            inp.labels.len(),
            inp.task_names.len(),
            n * t_n,
            n * t_n
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
    if let Some(c) = inp.train_domain_counts {
        if c.len() != d_n {
            return Err(MetricsError::Shape(format!(
                "evaluate: {} training domain counts for {d_n} domain names",
                c.len()
            )));
        }
    }
    if let Some((row, &domain)) = inp
        .domain
        .iter()
        .enumerate()
        .find(|(_, &d)| d as usize >= d_n)
    {
        return Err(MetricsError::DomainOutOfRange {
            row,
            domain,
            n_domains: d_n,
        });
    }
    if let Some((k, &value)) = inp.logits.iter().enumerate().find(|(_, x)| !x.is_finite()) {
        return Err(MetricsError::NonFinite {
            row: k / t_n,
            task: inp.task_names[k % t_n].clone(),
            value,
        });
    }
    if let Some((k, &value)) = inp
        .labels
        .iter()
        .enumerate()
        .find(|(_, y)| !(0.0..=1.0).contains(*y))
    {
        return Err(MetricsError::InvalidLabel {
            row: k / t_n,
            task: inp.task_names[k % t_n].clone(),
            value,
        });
    }
    Ok(())
}

/// Compute every slice of the report.
///
/// Errors (never panics on data): inconsistent lengths, `n_tasks == 0`, a non-finite logit
/// (row and task named), a label outside `[0, 1]`, a domain index without a name, a
/// `train_domain_counts` of the wrong length. Undefined metrics (single-class or empty slices)
/// are `None` and listed in [`EvalReport::undefined`].
pub fn evaluate(inp: &EvalInput) -> Result<EvalReport, MetricsError> {
    validate(inp)?;
    let t_n = inp.n_tasks;
    let n = inp.domain.len();
    let d_n = inp.domain_names.len();

    // Counting sort of the rows by domain: perm[offsets[d]..offsets[d + 1]] are domain d's rows.
    let mut offsets = vec![0usize; d_n + 1];
    for &d in inp.domain {
        offsets[d as usize + 1] += 1;
    }
    for d in 0..d_n {
        offsets[d + 1] += offsets[d];
    }
    let mut perm = vec![0usize; n];
    let mut cursor = offsets.clone();
    for (i, &d) in inp.domain.iter().enumerate() {
        perm[cursor[d as usize]] = i;
        cursor[d as usize] += 1;
    }
    let domain_rows: Vec<usize> = (0..d_n).map(|d| offsets[d + 1] - offsets[d]).collect();

    let mut cells: Vec<CellMetrics> = (0..d_n)
        .flat_map(|d| (0..t_n).map(move |t| (d, t)).collect::<Vec<_>>())
        .map(|(d, t)| CellMetrics {
            domain: inp.domain_names[d].clone(),
            domain_index: d,
            task: inp.task_names[t].clone(),
            n: domain_rows[d],
            positives: 0,
            auc: None,
            gauc: None,
            gauc_mean: None,
            logloss: None,
            pcoc: None,
            bias: None,
        })
        .collect();
    let mut cell_bce_sum = vec![0.0f64; d_n * t_n];
    let mut cell_p_sum = vec![0.0f64; d_n * t_n];
    let mut cell_pos = vec![0usize; d_n * t_n];
    let mut tasks = Vec::with_capacity(t_n);
    let mut undefined_cells: Vec<Vec<String>> = vec![Vec::new(); d_n * t_n];
    let mut undefined_tasks = Vec::new();

    let mut keys = vec![0u64; n];
    let mut pairs: Vec<(u64, u64)> = Vec::new();
    if inp.group.is_some() {
        pairs.resize(n, (0, 0));
    }
    for t in 0..t_n {
        let task = &inp.task_names[t];
        let mut task_pos = 0usize;
        let mut task_bce = 0.0f64;
        let mut task_p = 0.0f64;
        for d in 0..d_n {
            let seg = offsets[d]..offsets[d + 1];
            let (mut pos, mut bce_sum, mut p_sum) = (0usize, 0.0f64, 0.0f64);
            for k in seg.clone() {
                let r = perm[k];
                let (y, x) = (inp.labels[r * t_n + t], inp.logits[r * t_n + t]);
                keys[k] = row_key(y, x);
                pos += (keys[k] & 1) as usize;
                bce_sum += bce(f64::from(x), f64::from(y));
                p_sum += 1.0 / (1.0 + (-f64::from(x)).exp());
                if let Some(g) = inp.group {
                    pairs[k] = (g[r], keys[k]);
                }
            }
            let c = &mut cells[d * t_n + t];
            c.positives = pos;
            c.auc = auc_keys(&mut keys[seg.clone()]);
            c.logloss = (c.n > 0).then(|| bce_sum / c.n as f64);
            c.pcoc = (pos > 0).then(|| p_sum / pos as f64);
            c.bias = (c.n > 0).then(|| (p_sum - pos as f64) / c.n as f64);
            cell_p_sum[d * t_n + t] = p_sum;
            cell_pos[d * t_n + t] = pos;
            task_p += p_sum;
            let why = &mut undefined_cells[d * t_n + t];
            let label = format!("domain {} / task {task}", inp.domain_names[d]);
            if c.auc.is_none() {
                why.push(format!("{label}: {}", auc_undefined_why(c.n, pos)));
            }
            if inp.group.is_some() {
                let g = gauc_pairs(&mut pairs[seg]);
                c.gauc = g.weighted;
                c.gauc_mean = g.mean;
                if g.weighted.is_none() && c.auc.is_some() {
                    why.push(format!(
                        "{label}: gAUC undefined, no group holds both classes ({} groups)",
                        g.n_groups
                    ));
                }
            }
            cell_bce_sum[d * t_n + t] = bce_sum;
            task_pos += pos;
            task_bce += bce_sum;
        }
        let auc = auc_keys(&mut keys);
        if auc.is_none() {
            undefined_tasks.push(format!("task {task}: {}", auc_undefined_why(n, task_pos)));
        }
        let gauc = if inp.group.is_some() {
            let g = gauc_pairs(&mut pairs);
            if g.weighted.is_none() && auc.is_some() {
                undefined_tasks.push(format!(
                    "task {task}: gAUC undefined, no group holds both classes ({} groups)",
                    g.n_groups
                ));
            }
            g.weighted
        } else {
            None
        };
        tasks.push(SliceMetrics {
            name: task.clone(),
            n,
            auc,
            gauc,
            logloss: (n > 0).then(|| task_bce / n as f64),
            pcoc: (task_pos > 0).then(|| task_p / task_pos as f64),
        });
    }

    let mut undefined: Vec<String> = undefined_cells.into_iter().flatten().collect();
    let domains: Vec<SliceMetrics> = (0..d_n)
        .map(|d| {
            let cs = &cells[d * t_n..(d + 1) * t_n];
            let pairs_n = domain_rows[d] * t_n;
            let auc = mean_defined(cs.iter().map(|c| c.auc));
            if auc.is_none() {
                undefined.push(format!(
                    "domain {}: AUC undefined for every task (n={})",
                    inp.domain_names[d], domain_rows[d]
                ));
            }
            SliceMetrics {
                name: inp.domain_names[d].clone(),
                n: domain_rows[d],
                auc,
                gauc: mean_defined(cs.iter().map(|c| c.gauc)),
                logloss: (pairs_n > 0).then(|| {
                    cell_bce_sum[d * t_n..(d + 1) * t_n].iter().sum::<f64>() / pairs_n as f64
                }),
                pcoc: {
                    let pos: usize = cell_pos[d * t_n..(d + 1) * t_n].iter().sum();
                    (pos > 0).then(|| {
                        cell_p_sum[d * t_n..(d + 1) * t_n].iter().sum::<f64>() / pos as f64
                    })
                },
            }
        })
        .collect();
    undefined.extend(undefined_tasks);

    let weights: Vec<f64> = match inp.train_domain_counts {
        Some(c) => c.iter().map(|&x| x as f64).collect(),
        None => domain_rows.iter().map(|&x| x as f64).collect(),
    };
    let domain_auc = mean_defined((0..t_n).map(|t| {
        let a: Vec<Option<f64>> = (0..d_n).map(|d| cells[d * t_n + t].auc).collect();
        weighted_domain_auc(&a, &weights)
    }));
    let total = n * t_n;
    let overall = OverallMetrics {
        auc_mean_cells: mean_defined(cells.iter().map(|c| c.auc)),
        auc_task_pooled_mean: mean_defined(tasks.iter().map(|t| t.auc)),
        gauc_task_mean: mean_defined(tasks.iter().map(|t| t.gauc)),
        logloss: (total > 0).then(|| cell_bce_sum.iter().sum::<f64>() / total as f64),
        domain_auc,
        n_undefined_cells: cells.iter().filter(|c| c.auc.is_none()).count(),
        pcoc: {
            let pos: usize = cell_pos.iter().sum();
            (pos > 0).then(|| cell_p_sum.iter().sum::<f64>() / pos as f64)
        },
    };
    Ok(EvalReport {
        n,
        cells,
        tasks,
        domains,
        overall,
        undefined,
        domain_weights: weights,
        extra: Default::default(),
    })
}

/// The overall metric names and whether higher is better.
const OVERALL_NAMES: [(&str, bool); 5] = [
    ("auc_mean_cells", true),
    ("auc_task_pooled_mean", true),
    ("gauc_task_mean", true),
    ("logloss", false),
    ("domain_auc", true),
];

/// The accepted name forms, for error messages.
const NAME_FORMS: &str = "auc_mean_cells, auc_task_pooled_mean, gauc_task_mean, logloss, \
    domain_auc, major<K>_auc, minor<K>_auc, auc/<task>, gauc/<task>, logloss/<task>, \
    auc/<domain>/<task>, gauc/<domain>/<task>, logloss/<domain>/<task>";

/// Check that `name` has one of the accepted metric forms, before any data is known: an
/// overall name, `major<K>_auc` / `minor<K>_auc` with `K >= 1`, or `auc|gauc|logloss/<slice>`
/// with a non-empty slice. Whether the slice names a task or cell of the data is checked by
/// [`EvalReport::metric`].
pub fn check_metric_name(name: &str) -> Result<(), MetricsError> {
    let unknown = || MetricsError::UnknownMetric {
        name: name.to_string(),
        accepted: NAME_FORMS.to_string(),
    };
    if OVERALL_NAMES.iter().any(|(n, _)| *n == name) {
        return Ok(());
    }
    let k = name
        .strip_prefix("major")
        .or_else(|| name.strip_prefix("minor"))
        .and_then(|r| r.strip_suffix("_auc"));
    if let Some(k) = k {
        return match k.parse::<usize>() {
            Ok(k) if k > 0 => Ok(()),
            _ => Err(unknown()),
        };
    }
    match name.split_once('/') {
        Some(("auc" | "gauc" | "logloss", rest)) if !rest.is_empty() => Ok(()),
        _ => Err(unknown()),
    }
}

fn list_names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let all: Vec<&str> = names.collect();
    let shown = all.iter().take(20).copied().collect::<Vec<_>>().join(", ");
    if all.len() > 20 {
        format!("{shown}, … ({} more)", all.len() - 20)
    } else {
        shown
    }
}

impl EvalReport {
    /// Every accepted metric name for this report: the overall names, then per task `auc/`,
    /// `gauc/`, `logloss/<task>`, then per cell `auc/`, `gauc/`, `logloss/<domain>/<task>`.
    pub fn accepted_metric_names(&self) -> Vec<String> {
        let mut v: Vec<String> = OVERALL_NAMES.iter().map(|(s, _)| s.to_string()).collect();
        for t in &self.tasks {
            for m in ["auc", "gauc", "logloss"] {
                v.push(format!("{m}/{}", t.name));
            }
        }
        for c in &self.cells {
            for m in ["auc", "gauc", "logloss"] {
                v.push(format!("{m}/{}/{}", c.domain, c.task));
            }
        }
        v
    }

    /// Look up a scalar by name for early stopping and tables; returns
    /// `(value, higher_is_better)`.
    ///
    /// Names: `auc_mean_cells`, `auc_task_pooled_mean`, `gauc_task_mean`, `logloss`,
    /// `domain_auc` (see [`OverallMetrics`]); `auc/<task>`, `gauc/<task>`, `logloss/<task>`
    /// (pooled over domains); `auc/<domain>/<task>`, `gauc/<domain>/<task>`,
    /// `logloss/<domain>/<task>` (one cell). Only `logloss*` is lower-is-better.
    ///
    /// Errors: an unknown name ([`MetricsError::UnknownMetric`], listing the accepted forms and
    /// this report's task and domain names), or a known name whose value is undefined on this
    /// split ([`MetricsError::Undefined`], saying why).
    ///
    /// ```
    /// # use mdrec_metrics::{evaluate, EvalInput};
    /// let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    /// let (domains, tasks) = (names(&["a"]), names(&["click"]));
    /// let report = evaluate(&EvalInput {
    ///     logits: &[0.3, -1.0, 2.0, 0.1],
    ///     labels: &[1.0, 0.0, 1.0, 0.0],
    ///     n_tasks: 1,
    ///     domain: &[0, 0, 0, 0],
    ///     group: None,
    ///     domain_names: &domains,
    ///     task_names: &tasks,
    ///     train_domain_counts: None,
    /// })
    /// .unwrap();
    /// assert_eq!(report.metric("auc/a/click").unwrap(), (1.0, true));
    /// assert!(!report.metric("logloss").unwrap().1);
    /// assert!(report.metric("gauc/click").is_err()); // no group keys given
    /// ```
    pub fn metric(&self, name: &str) -> Result<(f64, bool), MetricsError> {
        let o = &self.overall;
        let undefined = |slice: Option<String>, gauc: bool| MetricsError::Undefined {
            name: name.to_string(),
            why: self.why_undefined(slice.as_deref(), gauc),
        };
        if let Some(&(_, hib)) = OVERALL_NAMES.iter().find(|(n, _)| *n == name) {
            let v = match name {
                "auc_mean_cells" => o.auc_mean_cells,
                "auc_task_pooled_mean" => o.auc_task_pooled_mean,
                "gauc_task_mean" => o.gauc_task_mean,
                "logloss" => o.logloss,
                _ => o.domain_auc,
            };
            return v
                .map(|v| (v, hib))
                .ok_or_else(|| undefined(None, name == "gauc_task_mean"));
        }
        if let Some(v) = self.major_minor(name) {
            return v;
        }
        if let Some(v) = self.calibration_or_extra(name) {
            return v;
        }
        let unknown = || MetricsError::UnknownMetric {
            name: name.to_string(),
            accepted: format!(
                "{NAME_FORMS}; tasks: {}; domains: {}",
                list_names(self.tasks.iter().map(|t| t.name.as_str())),
                list_names(self.domains.iter().map(|d| d.name.as_str()))
            ),
        };
        let Some((kind, rest)) = name.split_once('/') else {
            return Err(unknown());
        };
        let (is_gauc, hib) = match kind {
            "auc" => (false, true),
            "gauc" => (true, true),
            "logloss" => (false, false),
            _ => return Err(unknown()),
        };
        let pick = |auc: Option<f64>, gauc: Option<f64>, ll: Option<f64>| match kind {
            "auc" => auc,
            "gauc" => gauc,
            _ => ll,
        };
        if let Some(t) = self.tasks.iter().find(|t| t.name == rest) {
            return pick(t.auc, t.gauc, t.logloss)
                .map(|v| (v, hib))
                .ok_or_else(|| undefined(Some(format!("task {}", t.name)), is_gauc));
        }
        if let Some(c) = self
            .cells
            .iter()
            .find(|c| rest.strip_prefix(c.domain.as_str()) == Some(&format!("/{}", c.task)))
        {
            return pick(c.auc, c.gauc, c.logloss)
                .map(|v| (v, hib))
                .ok_or_else(|| {
                    undefined(
                        Some(format!("domain {} / task {}", c.domain, c.task)),
                        is_gauc,
                    )
                });
        }
        Err(unknown())
    }

    /// `pcoc` (overall), `pcoc/<task>`, `pcoc/<domain>/<task>`, `bias/<domain>/<task>` and the
    /// names of [`EvalReport::extra`]; `None` for other names. PCOC is best at 1, so its
    /// "higher is better" flag (false) is only nominal; these names are for tables, not for
    /// early stopping.
    fn calibration_or_extra(&self, name: &str) -> Option<Result<(f64, bool), MetricsError>> {
        let undefined = || MetricsError::Undefined {
            name: name.to_string(),
            why: "no positive labels (PCOC) or no rows in the slice".into(),
        };
        let found = |v: Option<f64>| Some(v.map(|v| (v, false)).ok_or_else(undefined));
        if let Some(v) = self.extra.get(name) {
            return Some(Ok((*v, false)));
        }
        if name == "pcoc" {
            return found(self.overall.pcoc);
        }
        let (kind, rest) = name.split_once('/')?;
        if kind != "pcoc" && kind != "bias" {
            return None;
        }
        if kind == "pcoc" {
            if let Some(t) = self.tasks.iter().find(|t| t.name == rest) {
                return found(t.pcoc);
            }
        }
        let c = self
            .cells
            .iter()
            .find(|c| rest.strip_prefix(c.domain.as_str()) == Some(&format!("/{}", c.task)))?;
        found(if kind == "pcoc" { c.pcoc } else { c.bias })
    }

    /// `major<K>_auc` / `minor<K>_auc` (AREAD's Major5AUC, Minor5AUC, Minor10AUC; see
    /// [`crate::major_minor_k`]): per task, the DomainAUC of the `K` domains with the most / the
    /// fewest training rows, averaged over the tasks where it is defined. `None` when `name` is
    /// not of that form.
    fn major_minor(&self, name: &str) -> Option<Result<(f64, bool), MetricsError>> {
        let (major, k) = if let Some(r) = name.strip_prefix("major") {
            (true, r.strip_suffix("_auc")?)
        } else {
            (false, name.strip_prefix("minor")?.strip_suffix("_auc")?)
        };
        let k: usize = k.parse().ok().filter(|&k| k > 0)?;
        let undefined = |why: String| MetricsError::Undefined {
            name: name.to_string(),
            why,
        };
        let d_n = self.domains.len();
        if self.domain_weights.len() != d_n {
            return Some(Err(undefined(
                "this report has no per-domain weights (written by an older mdrec); re-evaluate the run".into(),
            )));
        }
        let t_n = self.tasks.len();
        let counts: Vec<usize> = self.domain_weights.iter().map(|&w| w as usize).collect();
        let v = mean_defined((0..t_n).map(|t| {
            let a: Vec<Option<f64>> = (0..d_n).map(|d| self.cells[d * t_n + t].auc).collect();
            let (maj, min) = crate::major_minor_k(&a, &counts, k);
            if major {
                maj
            } else {
                min
            }
        }));
        Some(v.map(|v| (v, true)).ok_or_else(|| {
            undefined(format!(
                "every domain AUC of the {} {k} domains is undefined",
                if major { "largest" } else { "smallest" }
            ))
        }))
    }

    /// Why a metric is undefined: the slice's entry in [`EvalReport::undefined`] (`slice` is its
    /// prefix, e.g. `task click`), or a summary for the overall numbers.
    fn why_undefined(&self, slice: Option<&str>, gauc: bool) -> String {
        let groups_given = self.cells.iter().any(|c| c.gauc.is_some())
            || self.undefined.iter().any(|u| u.contains("gAUC undefined"));
        if gauc && !groups_given && self.cells.iter().any(|c| c.auc.is_some()) {
            return "no group keys were given to evaluate (EvalInput::group is None)".into();
        }
        let about_gauc = |u: &&String| u.contains("gAUC undefined");
        if let Some(prefix) = slice {
            let mut mine = self
                .undefined
                .iter()
                .filter(|u| u.strip_prefix(prefix).is_some_and(|r| r.starts_with(": ")));
            let hit = if gauc {
                mine.clone().find(about_gauc).or_else(|| mine.next())
            } else {
                mine.find(|u| !about_gauc(u))
            };
            if let Some(u) = hit {
                return u.clone();
            }
        }
        format!(
            "no defined value on this split; undefined: {}",
            list_names(self.undefined.iter().map(|s| s.as_str()))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::lcg_eval_case;
    use crate::{auc, gauc, logloss_from_logits};

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-12)
    }

    #[test]
    fn golden_report_against_sklearn() {
        // golden/make_golden.py, section "eval report": lcg_eval_case(3000, 21, 3, 2, 200);
        // per-cell sklearn roc_auc_score, FuxiCTR gAUC / avgAUC, mean BCE from logits;
        // sklearn 2-D macro roc_auc_score(Y, X) for auc_task_pooled_mean; train counts 5,3,2.
        let c = lcg_eval_case(3000, 21, 3, 2, 200);
        let (dn, tn) = (names(&["d0", "d1", "d2"]), names(&["click", "like"]));
        let r = evaluate(&EvalInput {
            logits: &c.logits,
            labels: &c.labels,
            n_tasks: 2,
            domain: &c.domain,
            group: Some(&c.group),
            domain_names: &dn,
            task_names: &tn,
            train_domain_counts: Some(&[5, 3, 2]),
        })
        .unwrap();
        // (n, positives, auc, gauc, gauc_mean, logloss), domain-major.
        let cells = [
            (
                1020,
                107,
                0.6497169647152757,
                0.679684317718941,
                0.6720328282828283,
                0.696091222361136,
            ),
            (
                1020,
                238,
                0.6656037095144964,
                0.6568878689360619,
                0.6498500881834215,
                0.7278807754275218,
            ),
            (
                962,
                151,
                0.7918643486497743,
                0.7879639452040441,
                0.7684226190476192,
                0.5523760434339223,
            ),
            (
                962,
                292,
                0.7666044776119403,
                0.7160392999391765,
                0.7164650742775743,
                0.5648308381752214,
            ),
            (
                1018,
                199,
                0.8748903246390684,
                0.8778835252049539,
                0.8742238095238094,
                0.4281942010668274,
            ),
            (
                1018,
                358,
                0.8976320467242255,
                0.8942347187412972,
                0.8883234735612037,
                0.4128416226135298,
            ),
        ];
        assert_eq!(r.cells.len(), 6);
        for (i, (cell, want)) in r.cells.iter().zip(cells).enumerate() {
            assert_eq!(
                (cell.domain_index, cell.task.as_str()),
                (i / 2, tn[i % 2].as_str())
            );
            assert_eq!((cell.n, cell.positives), (want.0, want.1), "cell {i}");
            assert!(close(cell.auc, want.2), "cell {i} auc {:?}", cell.auc);
            assert!(close(cell.gauc, want.3), "cell {i} gauc {:?}", cell.gauc);
            assert!(
                close(cell.gauc_mean, want.4),
                "cell {i} gauc_mean {:?}",
                cell.gauc_mean
            );
            assert!(
                close(cell.logloss, want.5),
                "cell {i} logloss {:?}",
                cell.logloss
            );
        }
        let tasks = [
            (0.7821638496202301, 0.7761077966336485, 0.5591001657592741),
            (0.779954315110565, 0.7804170783788972, 0.5686928096937361),
        ];
        for (t, want) in r.tasks.iter().zip(tasks) {
            assert_eq!(t.n, 3000);
            assert!(close(t.auc, want.0) && close(t.gauc, want.1) && close(t.logloss, want.2));
        }
        let o = &r.overall;
        assert!(close(o.auc_task_pooled_mean, 0.7810590823653976));
        assert!(close(o.auc_mean_cells, 0.7743853119757967));
        assert!(close(o.gauc_task_mean, 0.7782624375062728));
        assert!(close(o.logloss, 0.5638964877265051));
        assert!(close(o.domain_auc, 0.7398527296330296));
        assert_eq!(o.n_undefined_cells, 0);
        assert!(r.undefined.is_empty(), "{:?}", r.undefined);
        // Domain slices: mean over tasks of the cell AUCs, BCE over the domain's pairs.
        assert_eq!(r.domains[1].n, 962);
        assert!(close(r.domains[1].auc, (cells[2].2 + cells[3].2) / 2.0));
        assert!(close(r.domains[1].gauc, (cells[2].3 + cells[3].3) / 2.0));
        assert!(close(r.domains[1].logloss, (cells[2].5 + cells[3].5) / 2.0));
        // Without train counts, DomainAUC weights are this split's domain sizes.
        let r2 = evaluate(&EvalInput {
            logits: &c.logits,
            labels: &c.labels,
            n_tasks: 2,
            domain: &c.domain,
            group: None,
            domain_names: &dn,
            task_names: &tn,
            train_domain_counts: None,
        })
        .unwrap();
        let dauc = |t: usize| {
            (1020.0 * cells[t].2 + 962.0 * cells[2 + t].2 + 1018.0 * cells[4 + t].2) / 3000.0
        };
        assert!(close(r2.overall.domain_auc, (dauc(0) + dauc(1)) / 2.0));
        assert_eq!(r2.overall.gauc_task_mean, None);
        assert!(r2
            .cells
            .iter()
            .all(|c| c.gauc.is_none() && c.gauc_mean.is_none()));
        assert!(
            r2.undefined.is_empty(),
            "no gAUC requested is not 'undefined'"
        );
    }

    #[test]
    fn major_minor_k_by_name() {
        let c = lcg_eval_case(700, 5, 4, 3, 30);
        let (dn, tn) = (
            names(&["a", "b", "c", "d"]),
            names(&["click", "like", "buy"]),
        );
        let counts = [50usize, 400, 10, 200];
        let r = evaluate(&EvalInput {
            logits: &c.logits,
            labels: &c.labels,
            n_tasks: 3,
            domain: &c.domain,
            group: None,
            domain_names: &dn,
            task_names: &tn,
            train_domain_counts: Some(&counts),
        })
        .unwrap();
        let cell = |d: usize, t: usize| r.cells[d * 3 + t].auc.unwrap();
        // Major-2 = domains b (400) and d (200); Minor-1 = domain c (10); per task, then mean.
        let major2 = (0..3)
            .map(|t| (400.0 * cell(1, t) + 200.0 * cell(3, t)) / 600.0)
            .sum::<f64>()
            / 3.0;
        let minor1 = (0..3).map(|t| cell(2, t)).sum::<f64>() / 3.0;
        let (v, hib) = r.metric("major2_auc").unwrap();
        assert!((v - major2).abs() < 1e-12 && hib);
        assert!((r.metric("minor1_auc").unwrap().0 - minor1).abs() < 1e-12);
        // K beyond the domain count is every domain: DomainAUC.
        let all = r.metric("minor9_auc").unwrap().0;
        assert!((all - r.overall.domain_auc.unwrap()).abs() < 1e-12);
        assert!(r.metric("major0_auc").is_err() && r.metric("majorx_auc").is_err());
        // A report from before the weights existed says why instead of guessing.
        let mut old = r.clone();
        old.domain_weights.clear();
        let e = old.metric("major2_auc").unwrap_err().to_string();
        assert!(e.contains("older mdrec"), "{e}");
    }

    #[test]
    fn slices_agree_with_direct_computation() {
        let c = lcg_eval_case(700, 5, 4, 3, 30);
        let (dn, tn) = (
            names(&["a", "b", "c", "d"]),
            names(&["click", "like", "buy"]),
        );
        let r = evaluate(&EvalInput {
            logits: &c.logits,
            labels: &c.labels,
            n_tasks: 3,
            domain: &c.domain,
            group: Some(&c.group),
            domain_names: &dn,
            task_names: &tn,
            train_domain_counts: None,
        })
        .unwrap();
        for cell in &r.cells {
            let (d, t) = (
                cell.domain_index,
                tn.iter().position(|x| *x == cell.task).unwrap(),
            );
            let rows: Vec<usize> = (0..700).filter(|&i| c.domain[i] as usize == d).collect();
            let y: Vec<f32> = rows.iter().map(|&i| c.labels[i * 3 + t]).collect();
            let s: Vec<f32> = rows.iter().map(|&i| c.logits[i * 3 + t]).collect();
            let g: Vec<u64> = rows.iter().map(|&i| c.group[i]).collect();
            assert_eq!(cell.auc, auc(&y, &s));
            let gr = gauc(&y, &s, &g);
            assert_eq!((cell.gauc, cell.gauc_mean), (gr.weighted, gr.mean));
            let ll = logloss_from_logits(&y, &s).unwrap();
            assert!((cell.logloss.unwrap() - ll).abs() < 1e-12);
        }
        let ll_all = logloss_from_logits(&c.labels, &c.logits).unwrap();
        assert!((r.overall.logloss.unwrap() - ll_all).abs() < 1e-12);
        // metric() agrees with the fields.
        assert_eq!(
            r.metric("auc/b/like").unwrap(),
            (r.cells[4].auc.unwrap(), true)
        );
        assert_eq!(
            r.metric("gauc/b/like").unwrap(),
            (r.cells[4].gauc.unwrap(), true)
        );
        assert_eq!(
            r.metric("logloss/d/buy").unwrap(),
            (r.cells[11].logloss.unwrap(), false)
        );
        assert_eq!(
            r.metric("auc/buy").unwrap(),
            (r.tasks[2].auc.unwrap(), true)
        );
        assert_eq!(
            r.metric("gauc/click").unwrap(),
            (r.tasks[0].gauc.unwrap(), true)
        );
        assert_eq!(
            r.metric("logloss/like").unwrap(),
            (r.tasks[1].logloss.unwrap(), false)
        );
        assert_eq!(
            r.metric("domain_auc").unwrap(),
            (r.overall.domain_auc.unwrap(), true)
        );
        assert_eq!(
            r.metric("gauc_task_mean").unwrap(),
            (r.overall.gauc_task_mean.unwrap(), true)
        );
        assert!(!r.metric("logloss").unwrap().1);
        // Every accepted name resolves (all defined here).
        let accepted = r.accepted_metric_names();
        assert_eq!(accepted.len(), 5 + 3 * 3 + 3 * 12);
        for name in &accepted {
            assert!(r.metric(name).is_ok(), "{name}");
        }
        for bad in [
            "auc/nope",
            "auc",
            "precision/click",
            "auc/a/nope",
            "auc/a/click/x",
            "",
        ] {
            let err = r.metric(bad).unwrap_err();
            assert!(matches!(err, MetricsError::UnknownMetric { .. }), "{bad}");
            let msg = err.to_string();
            assert!(
                msg.contains("auc_mean_cells") && msg.contains("auc/<domain>/<task>"),
                "{msg}"
            );
            assert!(msg.contains("tasks: click, like, buy") && msg.contains("domains: a, b"));
        }
    }

    #[test]
    fn single_class_and_empty_cells_are_undefined_and_counted_not_nan() {
        let (dn, tn) = (names(&["a", "age_25", "empty"]), names(&["click"]));
        let r = evaluate(&EvalInput {
            logits: &[0.1, 0.2, 0.3, 0.4, 0.5],
            labels: &[1.0, 0.0, 0.0, 0.0, 0.0],
            n_tasks: 1,
            domain: &[0, 0, 1, 1, 1],
            group: Some(&[1, 1, 2, 2, 3]),
            domain_names: &dn,
            task_names: &tn,
            train_domain_counts: Some(&[10, 20, 30]),
        })
        .unwrap();
        assert_eq!(r.cells[0].auc, Some(0.0));
        assert_eq!(r.cells[1].auc, None);
        assert_eq!(
            (r.cells[2].n, r.cells[2].auc, r.cells[2].logloss),
            (0, None, None)
        );
        assert_eq!(r.overall.n_undefined_cells, 2);
        assert_eq!(r.overall.auc_mean_cells, Some(0.0));
        // DomainAUC skips undefined domains and renormalises.
        assert_eq!(r.overall.domain_auc, Some(0.0));
        assert_eq!(
            r.undefined,
            vec![
                "domain age_25 / task click: single class (n=3, positives=0)".to_string(),
                "domain empty / task click: empty (n=0)".to_string(),
                "domain age_25: AUC undefined for every task (n=3)".to_string(),
                "domain empty: AUC undefined for every task (n=0)".to_string(),
            ]
        );
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"auc\":null") && !json.contains("NaN"));
        let back: EvalReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back.cells.len(), 3);
        assert_eq!(back.undefined, r.undefined);
        assert_eq!(back.cells[1].auc, None);
        let err = r.metric("auc/age_25/click").unwrap_err().to_string();
        assert!(
            err.contains("undefined") && err.contains("positives=0"),
            "{err}"
        );
        let err = r.metric("logloss/empty/click").unwrap_err().to_string();
        assert!(err.contains("empty (n=0)"), "{err}");
        let err = r.metric("gauc/age_25/click").unwrap_err().to_string();
        assert!(err.contains("single class"), "{err}");
    }

    #[test]
    fn gauc_without_both_classes_per_group_is_reported() {
        // Each user holds one row: every group is single-class, the cell AUC is defined.
        let (dn, tn) = (names(&["a"]), names(&["click"]));
        let r = evaluate(&EvalInput {
            logits: &[0.1, 0.2, 0.3, 0.4],
            labels: &[1.0, 0.0, 1.0, 0.0],
            n_tasks: 1,
            domain: &[0, 0, 0, 0],
            group: Some(&[1, 2, 3, 4]),
            domain_names: &dn,
            task_names: &tn,
            train_domain_counts: None,
        })
        .unwrap();
        assert!(r.cells[0].auc.is_some() && r.cells[0].gauc.is_none());
        let err = r.metric("gauc/click").unwrap_err().to_string();
        assert!(
            err.contains("no group holds both classes (4 groups)"),
            "{err}"
        );
        let err = r.metric("gauc_task_mean").unwrap_err().to_string();
        assert!(err.contains("undefined"), "{err}");
        // Without group keys the reason says so.
        let r = evaluate(&EvalInput {
            group: None,
            logits: &[0.1, 0.2, 0.3, 0.4],
            labels: &[1.0, 0.0, 1.0, 0.0],
            n_tasks: 1,
            domain: &[0, 0, 0, 0],
            domain_names: &dn,
            task_names: &tn,
            train_domain_counts: None,
        })
        .unwrap();
        let err = r.metric("gauc/a/click").unwrap_err().to_string();
        assert!(err.contains("no group keys"), "{err}");
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        let (dn, tn) = (names(&["a"]), names(&["click", "like"]));
        let base = EvalInput {
            logits: &[0.1, 0.2, 0.3, f32::NAN],
            labels: &[1.0, 0.0, 0.0, 1.0],
            n_tasks: 2,
            domain: &[0, 0],
            group: None,
            domain_names: &dn,
            task_names: &tn,
            train_domain_counts: None,
        };
        let e = evaluate(&base).unwrap_err().to_string();
        assert!(e.contains("row 1") && e.contains("`like`"), "{e}");
        let ok_logits = [0.1, 0.2, 0.3, 0.4];
        let e = evaluate(&EvalInput {
            logits: &ok_logits,
            domain: &[0, 3],
            ..base
        })
        .unwrap_err();
        assert!(e.to_string().contains("domain index 3"), "{e}");
        let e = evaluate(&EvalInput {
            logits: &ok_logits,
            labels: &[1.0, 0.0, 2.0, 1.0],
            ..base
        })
        .unwrap_err();
        assert!(
            matches!(e, MetricsError::InvalidLabel { row: 1, .. }),
            "{e}"
        );
        let shape_errors = [
            EvalInput {
                logits: &ok_logits[..3],
                ..base
            },
            EvalInput {
                logits: &ok_logits,
                labels: &[1.0],
                ..base
            },
            EvalInput {
                logits: &ok_logits,
                group: Some(&[1]),
                ..base
            },
            EvalInput {
                logits: &ok_logits,
                train_domain_counts: Some(&[1, 2]),
                ..base
            },
            EvalInput {
                logits: &ok_logits,
                n_tasks: 0,
                ..base
            },
            EvalInput {
                logits: &ok_logits,
                task_names: &dn,
                ..base
            },
        ];
        for inp in &shape_errors {
            assert!(matches!(evaluate(inp), Err(MetricsError::Shape(_))));
        }
        // Zero rows is not an error: everything is undefined.
        let r = evaluate(&EvalInput {
            logits: &[],
            labels: &[],
            domain: &[],
            ..base
        })
        .unwrap();
        assert_eq!(
            (r.n, r.overall.logloss, r.overall.auc_mean_cells),
            (0, None, None)
        );
    }

    #[test]
    fn metric_name_forms_are_checked_without_data() {
        for ok in [
            "auc_mean_cells",
            "logloss",
            "major5_auc",
            "minor10_auc",
            "auc/click",
            "gauc/d0/like",
        ] {
            check_metric_name(ok).unwrap();
        }
        for bad in [
            "auc_mean_cell",
            "major0_auc",
            "majorx_auc",
            "auc/",
            "ndcg/click",
            "",
        ] {
            let e = check_metric_name(bad).unwrap_err().to_string();
            assert!(
                e.contains("auc_mean_cells") && e.contains("major<K>_auc"),
                "{bad}: {e}"
            );
        }
    }
}
