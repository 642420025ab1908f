//! Repetitive Exposure Weight (REW, `[train.rew]`; §6.2 of Pan et al., "Ads Recommendation in
//! a Collapsed and Entangled World", KDD 2024) and the repeat-exposure rate of top-k
//! recommendations that judges it.
//!
//! **Repeated impression.** The training rows are a log: each row is an impression of an item
//! to a user at the schema's `time`. A row is a *repeat* when the same user had an earlier row
//! (in `(time, row)` order) of the same item group (`item_field`, a categorical field: the item
//! id itself, or a coarser group such as MovieLens' genre) at most `window_seconds` before it.
//!
//! **Weights.** For a repeated row with a negative label (per task), with the earlier rows
//! `j` of its window at time gaps `Δ_j` and the last one at gap `Δ_last`, and decay
//! `δ(Δ) = 2^{−Δ / half_life_seconds}`:
//!
//! - `w_count = 1 + Σ_j δ(Δ_j)` (grows with the time-decayed number of exposures);
//! - `w_recency = 1 + δ(Δ_last)` (larger the more recent the last exposure);
//! - `w_rep = min(max_weight, α · w_count + (1 − α) · w_recency)` (always ≥ 1).
//!
//! Every other negative has weight 1, and every positive of the task gets
//! `w_debias = Σ_i (1 − y_i) · w_i / Σ_i (1 − y_i)` (the paper's correction of the bias the
//! up-weighted negatives introduce). The weights multiply the per-element loss of their
//! (row, task).
//!
//! **Repeat-exposure rate.** For every user of the test split, the user's test rows are ranked
//! by the first task's predicted score and the top `top_k` kept; the rate is the share of
//! those recommendations that are repeats with respect to the training log (same user, same
//! item group, a training row at most `window_seconds` earlier). The share among all test rows
//! is reported beside it as the base rate.

use std::collections::HashMap;

use mdrec_data::{EncodedData, FieldRole};
use mdrec_nn::ModelContext;
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// `[train.rew]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RewConfig {
    /// Weight the loss (`true`) or only measure the repeat-exposure rate (`false`: the
    /// baseline of a comparison).
    pub enabled: bool,
    /// α of `w_rep = α · w_count + (1 − α) · w_recency`, in `[0, 1]`.
    pub alpha: f64,
    /// Categorical field that identifies "the same or similar" items; default: the field with
    /// roles `prior` and `item`.
    pub item_field: Option<String>,
    /// An earlier impression at most this many seconds before makes a row a repeat.
    pub window_seconds: i64,
    /// Half-life of the time decay of counts and recency, seconds.
    pub half_life_seconds: f64,
    /// Upper bound of `w_rep`.
    pub max_weight: f64,
    /// `k` of the repeat-exposure rate of top-k recommendations.
    pub top_k: usize,
}

impl Default for RewConfig {
    fn default() -> Self {
        RewConfig {
            enabled: true,
            alpha: 0.5,
            item_field: None,
            window_seconds: 86_400,
            half_life_seconds: 3_600.0,
            max_weight: 4.0,
            top_k: 10,
        }
    }
}

impl RewConfig {
    /// Checks the numbers, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(format!(
                "train.rew.alpha must be in [0, 1], got {}",
                self.alpha
            ));
        }
        if self.window_seconds <= 0 {
            return Err(format!(
                "train.rew.window_seconds must be positive, got {}",
                self.window_seconds
            ));
        }
        if !(self.half_life_seconds.is_finite() && self.half_life_seconds > 0.0) {
            return Err(format!(
                "train.rew.half_life_seconds must be positive, got {}",
                self.half_life_seconds
            ));
        }
        if !(self.max_weight.is_finite() && self.max_weight >= 1.0) {
            return Err(format!(
                "train.rew.max_weight must be at least 1, got {}",
                self.max_weight
            ));
        }
        if self.top_k == 0 {
            return Err("train.rew.top_k must be at least 1".into());
        }
        Ok(())
    }

    fn decay(&self, gap: i64) -> f64 {
        (-(gap as f64) / self.half_life_seconds).exp2()
    }

    /// Column of the item-group field in `Batch::cat` / `EncodedData::cat`.
    pub fn item_column(&self, ctx: &ModelContext) -> Result<usize, TrainError> {
        let cats: Vec<_> = ctx.fields.iter().filter(|f| !f.multi_hot).collect();
        let found = match &self.item_field {
            Some(n) => cats.iter().find(|f| &f.name == n),
            None => cats
                .iter()
                .find(|f| f.has_role(FieldRole::Prior) && f.has_role(FieldRole::Item)),
        };
        found.map(|f| f.column).ok_or_else(|| {
            TrainError::Config(format!(
                "train.rew.item_field: {}; categorical fields: {}",
                match &self.item_field {
                    Some(n) => format!("no categorical field `{n}`"),
                    None => "no field has roles prior and item; name one".into(),
                },
                cats.iter()
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }
}

/// What a row's earlier impressions of the same (user, item group) are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exposure {
    /// `Σ_j δ(Δ_j)` over the earlier rows in the window (0 when none).
    pub decayed_count: f64,
    /// Gap to the last earlier row in the window (`None`: not a repeat).
    pub last_gap: Option<i64>,
}

fn check_time(data: &EncodedData, what: &str) -> Result<(), TrainError> {
    if data.time.len() != data.len() {
        return Err(TrainError::Config(format!(
            "train.rew needs event times on the {what} rows: set the schema's `time` column"
        )));
    }
    Ok(())
}

/// The exposure of every row of `data` with respect to its own earlier rows.
pub fn exposures(
    data: &EncodedData,
    item_col: usize,
    cfg: &RewConfig,
) -> Result<Vec<Exposure>, TrainError> {
    check_time(data, "training")?;
    let n = data.len();
    let items = &data.cat[item_col];
    let mut by_key: HashMap<(u64, u32), Vec<usize>> = HashMap::new();
    for (i, (&group, &item)) in data.group.iter().zip(items).take(n).enumerate() {
        by_key.entry((group, item)).or_default().push(i);
    }
    let mut out = vec![
        Exposure {
            decayed_count: 0.0,
            last_gap: None,
        };
        n
    ];
    for rows in by_key.values_mut() {
        rows.sort_by_key(|&i| (data.time[i], i));
        let mut lo = 0;
        for (k, &i) in rows.iter().enumerate() {
            let t = data.time[i];
            while t - data.time[rows[lo]] > cfg.window_seconds {
                lo += 1;
            }
            if k > lo {
                let count = rows[lo..k]
                    .iter()
                    .map(|&j| cfg.decay(t - data.time[j]))
                    .sum();
                out[i] = Exposure {
                    decayed_count: count,
                    last_gap: Some(t - data.time[rows[k - 1]]),
                };
            }
        }
    }
    Ok(out)
}

/// REW loss weights of `data`, `[n, T]` row-major (see the module docs).
pub fn rew_weights(
    data: &EncodedData,
    item_col: usize,
    n_tasks: usize,
    cfg: &RewConfig,
) -> Result<Vec<f32>, TrainError> {
    let ex = exposures(data, item_col, cfg)?;
    let n = data.len();
    let mut w = vec![1.0f32; n * n_tasks];
    for t in 0..n_tasks {
        let labels = &data.labels[t];
        let (mut neg_w, mut neg_n) = (0.0f64, 0usize);
        for i in 0..n {
            if labels[i] > 0.5 {
                continue;
            }
            let wi = match ex[i].last_gap {
                Some(gap) => {
                    let w_count = 1.0 + ex[i].decayed_count;
                    let w_recency = 1.0 + cfg.decay(gap);
                    (cfg.alpha * w_count + (1.0 - cfg.alpha) * w_recency).min(cfg.max_weight)
                }
                None => 1.0,
            };
            w[i * n_tasks + t] = wi as f32;
            neg_w += wi;
            neg_n += 1;
        }
        let debias = if neg_n > 0 { neg_w / neg_n as f64 } else { 1.0 };
        for i in 0..n {
            if labels[i] > 0.5 {
                w[i * n_tasks + t] = debias as f32;
            }
        }
    }
    Ok(w)
}

/// Repeat-exposure rates of a test split: `(top-k rate, rate among all test rows)`.
pub fn repeat_exposure(
    train: &EncodedData,
    test: &EncodedData,
    test_logits: &[f32],
    n_tasks: usize,
    item_col: usize,
    cfg: &RewConfig,
) -> Result<(f64, f64), TrainError> {
    check_time(train, "training")?;
    check_time(test, "test")?;
    let mut log: HashMap<(u64, u32), Vec<i64>> = HashMap::new();
    for i in 0..train.len() {
        log.entry((train.group[i], train.cat[item_col][i]))
            .or_default()
            .push(train.time[i]);
    }
    for v in log.values_mut() {
        v.sort_unstable();
    }
    let repeat = |i: usize| {
        let t = test.time[i];
        log.get(&(test.group[i], test.cat[item_col][i]))
            .is_some_and(|times| {
                // an earlier training impression within the window: the last time < t
                let k = times.partition_point(|&x| x < t);
                k > 0 && t - times[k - 1] <= cfg.window_seconds
            })
    };
    let mut by_user: HashMap<u64, Vec<usize>> = HashMap::new();
    for i in 0..test.len() {
        by_user.entry(test.group[i]).or_default().push(i);
    }
    let (mut top_rep, mut top_n, mut all_rep) = (0usize, 0usize, 0usize);
    for rows in by_user.values_mut() {
        rows.sort_by(|&a, &b| {
            test_logits[b * n_tasks]
                .total_cmp(&test_logits[a * n_tasks])
                .then(a.cmp(&b))
        });
        for (r, &i) in rows.iter().enumerate() {
            let rep = repeat(i);
            all_rep += rep as usize;
            if r < cfg.top_k {
                top_rep += rep as usize;
                top_n += 1;
            }
        }
    }
    let frac = |a: usize, b: usize| if b > 0 { a as f64 / b as f64 } else { 0.0 };
    Ok((frac(top_rep, top_n), frac(all_rep, test.len())))
}
