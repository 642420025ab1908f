//! Logit uncertainty for exploration (the paper's §6.4, Eq. 6): a post-hoc last-layer Laplace
//! approximation of each output tower.
//!
//! The paper puts a Gaussian process on the last hidden layer and explores by Thompson sampling
//! from the posterior of the logit. We use the Laplace approximation of the last linear layer
//! instead of a GP with random features or inducing points because (1) it needs no change to
//! training: it is fitted after the fact on a trained run; (2) for the last `Linear(h, 1)` of a
//! logistic output it is the exact Gauss–Newton posterior of those weights around the trained
//! ones; (3) it is cheap: one pass over the training rows and one `(h+1) × (h+1)` Cholesky
//! factorisation per head. The price: the hidden layer is treated as fixed, so the variance
//! only measures how well the training rows cover a direction of the last hidden space.
//!
//! For each head (a tower's output unit, i.e. a (row group, task) pair of
//! [`mdrec_models::blocks::heads::Heads`]), with `h̃ = [h, 1]` the tower's last hidden layer
//! and a 1 for the bias, over the training rows that reach that tower (its domain's rows for
//! `heads.layout = "domain_task"`, every row for `"task"`):
//!
//! `Λ = λ I + Σ_i p_i (1 − p_i) h̃_i h̃_iᵀ`, `p_i = σ(logit_i)`,
//!
//! and the logit of a row has mean `μ` (the model's logit) and variance `σ² = h̃ᵀ Λ⁻¹ h̃`.
//! `λ` is the prior precision of the weights (`--prior-precision`, default
//! [`DEFAULT_PRIOR_PRECISION`]). A Thompson sample is `σ(f̂)`, `f̂ ~ N(μ, σ²)`, drawn per row and
//! task from the stream `thompson/<row>` of the given seed.
//!
//! `Λ⁻¹` of every head is stored in the run directory as [`FILE`] (`f64`, one tensor per head).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mdrec_data::rng::Rng;
use mdrec_data::{Batch, EncodedData};
use mdrec_models::blocks::heads::{capture_towers, TowerCall};
use mdrec_models::Probes;
use nalgebra::{DMatrix, DVector};
use safetensors::tensor::{Dtype, TensorView};

use crate::engine::{make_input, Snapshot};
use crate::scoring::probability;
use crate::trainer::TrainedModels;
use crate::TrainError;

/// The file in a run directory that holds the posterior covariances.
pub const FILE: &str = "uncertainty.safetensors";

/// The default prior precision `λ` of the last layer's weights (a unit Gaussian prior).
pub const DEFAULT_PRIOR_PRECISION: f64 = 1.0;

const META_KEY: &str = "mdrec.uncertainty";

/// The message for a model whose logits are not its [`Heads`](mdrec_models::blocks::heads::Heads)'
/// tower outputs.
fn not_heads(model: &str, why: &str) -> TrainError {
    TrainError::Config(format!(
        "model {model}: uncertainty needs a model whose outputs come from blocks::heads::Heads ({why})"
    ))
}

/// The precision `Λ = λ I + Σ p(1−p) h̃ h̃ᵀ` of one head, accumulated row by row.
#[derive(Debug, Clone)]
pub struct Precision {
    lambda: DMatrix<f64>,
    v: DVector<f64>,
    rows: usize,
}

impl Precision {
    /// The prior `λ I` for a last hidden layer of width `h` (matrix size `h + 1`).
    pub fn new(h: usize, prior_precision: f64) -> Self {
        Precision {
            lambda: DMatrix::identity(h + 1, h + 1) * prior_precision,
            v: DVector::zeros(h + 1),
            rows: 0,
        }
    }

    /// Adds one row: its last hidden layer `h` and its logit.
    pub fn add(&mut self, h: &[f32], logit: f32) {
        let p = probability(logit) as f64;
        let w = p * (1.0 - p);
        for (k, &x) in h.iter().enumerate() {
            self.v[k] = x as f64;
        }
        self.v[h.len()] = 1.0;
        self.lambda.ger(w, &self.v, &self.v, 1.0);
        self.rows += 1;
    }

    /// The matrix `Λ`.
    pub fn matrix(&self) -> &DMatrix<f64> {
        &self.lambda
    }

    /// Rows added.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// `Λ⁻¹` by a Cholesky factorisation; an error when `Λ` is not positive definite (a prior
    /// precision ≤ 0 with too few rows, or non-finite hidden values).
    pub fn covariance(&self) -> Result<DMatrix<f64>, String> {
        let chol = self.lambda.clone().cholesky().ok_or_else(|| {
            "the precision matrix is not positive definite (is --prior-precision > 0 and are the hidden values finite?)".to_string()
        })?;
        Ok(chol.inverse())
    }
}

/// The logit variance `h̃ᵀ Σ h̃` of a row with last hidden layer `h` under covariance `cov`.
pub fn variance(cov: &DMatrix<f64>, h: &[f32]) -> f64 {
    let n = h.len();
    let x = |k: usize| if k == n { 1.0 } else { h[k] as f64 };
    let mut s = 0.0;
    for i in 0..=n {
        let mut r = 0.0;
        for j in 0..=n {
            r += cov[(i, j)] * x(j);
        }
        s += x(i) * r;
    }
    s.max(0.0)
}

/// A Thompson sample `σ(f̂)`, `f̂ ~ N(logit, var)`, for every `(row, task)` of row-major
/// `[n, T]` logits; row `i` is numbered `first_row + i` and draws its tasks in order from the
/// stream `thompson/<row>` of `seed`, so a row's samples do not depend on how rows are chunked.
pub fn thompson(
    logits: &[f32],
    var: &[f32],
    n_tasks: usize,
    seed: u64,
    first_row: usize,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(logits.len());
    for (i, (l, v)) in logits
        .chunks(n_tasks.max(1))
        .zip(var.chunks(n_tasks.max(1)))
        .enumerate()
    {
        let mut rng = Rng::for_stream(seed, &format!("thompson/{}", first_row + i));
        for (&m, &s2) in l.iter().zip(v) {
            let f = m as f64 + (s2.max(0.0) as f64).sqrt() * rng.normal();
            out.push(probability(f as f32));
        }
    }
    out
}

/// The posterior of one head.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadPosterior {
    /// Tower index in the model's heads.
    pub tower: usize,
    /// Output column of the tower.
    pub col: usize,
    /// Task index.
    pub task: usize,
    /// The domain whose rows reach the tower, `None` for every row.
    pub domain: Option<usize>,
    /// Training rows that reached the tower.
    pub rows: usize,
    /// `Λ⁻¹`, `(h+1) × (h+1)`.
    pub cov: DMatrix<f64>,
}

/// The posteriors of every head of a run's model.
#[derive(Debug, Clone, PartialEq)]
pub struct Posterior {
    /// The prior precision `λ` used.
    pub prior_precision: f64,
    /// The schema hash of the run.
    pub schema_hash: String,
    /// One entry per head, by (tower, column).
    pub heads: Vec<HeadPosterior>,
}

/// One tower call on the host: the batch rows it covered, its hidden layer and logits.
struct HostCall {
    key: (usize, usize),
    tasks: Vec<usize>,
    domain: Option<usize>,
    rows: Vec<usize>,
    h: usize,
    hidden: Vec<f32>,
    logits: Vec<f32>,
}

fn to_vec(t: burn::tensor::Tensor<2>) -> Result<Vec<f32>, TrainError> {
    t.into_data()
        .try_to_vec::<f32>()
        .map_err(|e| TrainError::Tensor(format!("{e:?}")))
}

/// The one model of `trained` and its name, or an error for multi-part settings.
fn single_model(trained: &TrainedModels) -> Result<(&Snapshot, String), TrainError> {
    let name = trained.cfg.resolve()?.factory.name().to_string();
    let snap = trained.single().ok_or_else(|| {
        TrainError::Config(format!(
            "model {name}: uncertainty supports runs with one model for every row and task; this run's setting trains several models"
        ))
    })?;
    Ok((snap, name))
}

/// Runs the model on `rows` of `data` batch by batch; `f` gets each batch's model logits
/// (`[b, T]`) and its tower calls, checked to reproduce the logits.
fn for_each_batch(
    trained: &TrainedModels,
    data: &EncodedData,
    rows: &[u32],
    batch_size: usize,
    mut f: impl FnMut(usize, &[f32], &[HostCall]) -> Result<(), TrainError>,
) -> Result<(), TrainError> {
    let (snap, name) = single_model(trained)?;
    let ctx = &snap.ctx;
    let n_t = ctx.n_tasks();
    let device = trained.device().clone().without_autodiff();
    let mut batch = Batch::default();
    let mut buf = Vec::new();
    let mut start = 0usize;
    for chunk in rows.chunks(batch_size.max(1)) {
        data.fill_batch(chunk, &mut batch);
        let input = make_input(ctx, &snap.store, &batch, &mut buf, &device)?;
        let mut probes = Probes::new(false);
        let (out, calls) = capture_towers(|| snap.model.forward(ctx, &input, &mut probes));
        if calls.is_empty() {
            return Err(not_heads(&name, "it made no Heads tower call"));
        }
        let logits = to_vec(out.logits)?;
        let b = chunk.len();
        let mut covered = vec![0u8; b * n_t];
        let mut host = Vec::with_capacity(calls.len());
        for TowerCall {
            tower,
            domain,
            tasks,
            hidden,
            logits: tl,
        } in calls
        {
            let [n, h] = hidden.dims();
            let rows: Vec<usize> = match domain {
                Some(d) => (0..b).filter(|&i| input.domain[i] as usize == d).collect(),
                None => (0..b).collect(),
            };
            if rows.len() != n {
                return Err(not_heads(
                    &name,
                    "a tower ran on rows other than its group's",
                ));
            }
            let tlv = to_vec(tl)?;
            for (r, &i) in rows.iter().enumerate() {
                for (c, &t) in tasks.iter().enumerate() {
                    let (a, m) = (tlv[r * tasks.len() + c], logits[i * n_t + t]);
                    if (a - m).abs() > 1e-4 * (1.0 + m.abs()) {
                        return Err(not_heads(&name, "its logits are not the towers' outputs"));
                    }
                    covered[i * n_t + t] += 1;
                }
            }
            for c in 0..tasks.len() {
                host.push(HostCall {
                    key: (tower, c),
                    tasks: tasks.clone(),
                    domain,
                    rows: rows.clone(),
                    h,
                    hidden: Vec::new(),
                    logits: Vec::new(),
                });
            }
            let last = host.len() - tasks.len();
            let hv = to_vec(hidden)?;
            for (c, call) in host[last..].iter_mut().enumerate() {
                call.hidden = hv.clone();
                call.logits = (0..n).map(|r| tlv[r * tasks.len() + c]).collect();
            }
        }
        if covered.iter().any(|&c| c != 1) {
            return Err(not_heads(
                &name,
                "its towers do not give each row's logits exactly once",
            ));
        }
        f(start, &logits, &host)?;
        start += b;
    }
    Ok(())
}

impl Posterior {
    /// Fits the posterior of every head on the rows of `data` (a run's training split).
    pub fn fit(
        trained: &TrainedModels,
        data: &EncodedData,
        prior_precision: f64,
        schema_hash: &str,
        batch_size: usize,
    ) -> Result<Posterior, TrainError> {
        if !(prior_precision.is_finite() && prior_precision > 0.0) {
            return Err(TrainError::Config(format!(
                "--prior-precision must be a finite number > 0, got {prior_precision}"
            )));
        }
        let rows: Vec<u32> = (0..data.len() as u32).collect();
        let mut acc: BTreeMap<(usize, usize), (usize, Option<usize>, Precision)> = BTreeMap::new();
        for_each_batch(trained, data, &rows, batch_size, |_, _, calls| {
            for call in calls {
                let task = call.tasks[call.key.1];
                let e = acc.entry(call.key).or_insert_with(|| {
                    (task, call.domain, Precision::new(call.h, prior_precision))
                });
                for r in 0..call.rows.len() {
                    e.2.add(&call.hidden[r * call.h..(r + 1) * call.h], call.logits[r]);
                }
            }
            Ok(())
        })?;
        let mut heads = Vec::with_capacity(acc.len());
        for ((tower, col), (task, domain, p)) in acc {
            let cov = p
                .covariance()
                .map_err(|e| TrainError::Config(format!("tower {tower} output {col}: {e}")))?;
            heads.push(HeadPosterior {
                tower,
                col,
                task,
                domain,
                rows: p.rows(),
                cov,
            });
        }
        Ok(Posterior {
            prior_precision,
            schema_hash: schema_hash.to_string(),
            heads,
        })
    }

    /// Logits and logit variances, row-major `[n, T]`, for every row of `data`.
    pub fn mean_var(
        &self,
        trained: &TrainedModels,
        data: &EncodedData,
        batch_size: usize,
    ) -> Result<(Vec<f32>, Vec<f32>), TrainError> {
        let n_t = trained.ctx.n_tasks();
        let by_key: BTreeMap<(usize, usize), &HeadPosterior> =
            self.heads.iter().map(|h| ((h.tower, h.col), h)).collect();
        let rows: Vec<u32> = (0..data.len() as u32).collect();
        let mut logits = Vec::with_capacity(data.len() * n_t);
        let mut var = vec![0.0f32; data.len() * n_t];
        for_each_batch(trained, data, &rows, batch_size, |start, l, calls| {
            logits.extend_from_slice(l);
            for call in calls {
                let head = by_key.get(&call.key).ok_or_else(|| {
                    TrainError::Config(format!(
                        "{FILE} has no posterior for tower {} output {} (no training row reached it, or the file is from another model); run `mdrec uncertainty` again",
                        call.key.0, call.key.1
                    ))
                })?;
                if head.cov.nrows() != call.h + 1 {
                    return Err(TrainError::Config(format!(
                        "{FILE}: tower {} has a {}-wide covariance but the model's last hidden layer has width {}; the file is from another model: run `mdrec uncertainty` again",
                        call.key.0,
                        head.cov.nrows(),
                        call.h
                    )));
                }
                let t = call.tasks[call.key.1];
                for (r, &i) in call.rows.iter().enumerate() {
                    let h = &call.hidden[r * call.h..(r + 1) * call.h];
                    var[(start + i) * n_t + t] = variance(&head.cov, h) as f32;
                }
            }
            Ok(())
        })?;
        Ok((logits, var))
    }

    /// Writes the posterior to `path` (atomically).
    pub fn save(&self, path: &Path) -> Result<(), TrainError> {
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = self
            .heads
            .iter()
            .map(|h| {
                let n = h.cov.nrows();
                let mut b = Vec::with_capacity(n * n * 8);
                for i in 0..n {
                    for j in 0..n {
                        b.extend_from_slice(&h.cov[(i, j)].to_le_bytes());
                    }
                }
                (format!("tower{}/out{}", h.tower, h.col), vec![n, n], b)
            })
            .collect();
        let views: Vec<(String, TensorView<'_>)> = bytes
            .iter()
            .map(|(k, shape, b)| {
                (
                    k.clone(),
                    TensorView::new(Dtype::F64, shape.clone(), b).expect("consistent tensor view"),
                )
            })
            .collect();
        let heads: Vec<serde_json::Value> = self
            .heads
            .iter()
            .map(|h| {
                serde_json::json!({
                    "tower": h.tower, "out": h.col, "task": h.task,
                    "domain": h.domain, "rows": h.rows,
                })
            })
            .collect();
        let meta = serde_json::json!({
            "method": "last-layer Laplace",
            "prior_precision": self.prior_precision,
            "schema_hash": self.schema_hash,
            "heads": heads,
        });
        let mut m = std::collections::HashMap::new();
        m.insert(META_KEY.to_string(), meta.to_string());
        let data = safetensors::serialize(views, &Some(m))
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))?;
        let tmp = path.with_extension("safetensors.tmp");
        std::fs::write(&tmp, data).map_err(|e| TrainError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))
    }

    /// Reads `run`'s [`FILE`]; a missing file is an error naming it and the command that
    /// creates it, a file fitted for another schema an error too.
    pub fn load(run: &Path, schema_hash: &str) -> Result<Posterior, TrainError> {
        let path: PathBuf = run.join(FILE);
        if !path.exists() {
            return Err(TrainError::Config(format!(
                "{}: missing; create it with `mdrec uncertainty --run {}`",
                path.display(),
                run.display()
            )));
        }
        let bad = |why: String| TrainError::Checkpoint(format!("{}: {why}", path.display()));
        let bytes = std::fs::read(&path).map_err(|e| TrainError::io(&path, e))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
        let (_, meta) =
            safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        let meta: serde_json::Value = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get(META_KEY))
            .ok_or_else(|| bad(format!("no `{META_KEY}` metadata")))
            .and_then(|j| serde_json::from_str(j).map_err(|e| bad(e.to_string())))?;
        let hash = meta["schema_hash"].as_str().unwrap_or_default();
        if hash != schema_hash {
            return Err(bad(format!(
                "fitted for schema {hash}, the run's schema is {schema_hash}; run `mdrec uncertainty --run {}` again",
                run.display()
            )));
        }
        let prior_precision = meta["prior_precision"]
            .as_f64()
            .ok_or_else(|| bad("no prior_precision".into()))?;
        let mut heads = Vec::new();
        for h in meta["heads"]
            .as_array()
            .ok_or_else(|| bad("no heads".into()))?
        {
            let get = |k: &str| {
                h[k].as_u64()
                    .map(|v| v as usize)
                    .ok_or_else(|| bad(format!("head without `{k}`")))
            };
            let (tower, col) = (get("tower")?, get("out")?);
            let name = format!("tower{tower}/out{col}");
            let view = st
                .tensor(&name)
                .map_err(|e| bad(format!("`{name}`: {e}")))?;
            let shape = view.shape();
            if view.dtype() != Dtype::F64 || shape.len() != 2 || shape[0] != shape[1] {
                return Err(bad(format!("`{name}` is not a square F64 matrix")));
            }
            let n = shape[0];
            let vals: Vec<f64> = view
                .data()
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect();
            heads.push(HeadPosterior {
                tower,
                col,
                task: get("task")?,
                domain: h["domain"].as_u64().map(|d| d as usize),
                rows: get("rows")?,
                cov: DMatrix::from_row_slice(n, n, &vals),
            });
        }
        Ok(Posterior {
            prior_precision,
            schema_hash: schema_hash.to_string(),
            heads,
        })
    }
}

/// One candidate of the replay simulation: a held-out (user, item) row of one task.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// User key (the schema's gAUC group: raw ids, so users unseen in training stay apart).
    pub user: u64,
    /// Item id.
    pub item: u32,
    /// The held-out label (the reward when picked).
    pub reward: f32,
    /// The model's logit.
    pub logit: f32,
    /// The logit variance.
    pub var: f32,
    /// Whether the item is cold (few training rows).
    pub cold: bool,
}

/// What a policy picked over a replay.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyOutcome {
    /// Candidates picked.
    pub picks: usize,
    /// Σ reward of the picks.
    pub reward: f64,
    /// Picks of cold items.
    pub cold_picks: usize,
    /// Distinct items picked.
    pub distinct_items: usize,
}

/// Replay options: `rounds` rounds of `users` users (drawn with replacement among users with
/// more than `k` candidates), `k` picks each.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplayOptions {
    /// Rounds.
    pub rounds: usize,
    /// Users per round.
    pub users: usize,
    /// Picks per user and round.
    pub k: usize,
    /// Seed of the user draws and of the samples.
    pub seed: u64,
}

/// A seeded offline replay: each round draws users; for each, every policy picks `k` of the
/// user's candidates and earns their held-out labels. Policies: `greedy` (top-k logits),
/// `thompson` (top-k of a fresh sample `f̂ ~ N(logit, var)` per candidate and round) and
/// `random` (a uniform draw of k). The model is not updated between rounds (no online
/// learning), so this measures what exploration costs in reward and gains in coverage, not
/// what it teaches the model. Streams: `replay/users`, `replay/thompson`, `replay/random`.
pub fn replay(cands: &[Candidate], opt: ReplayOptions) -> [(&'static str, PolicyOutcome); 3] {
    let mut by_user: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, c) in cands.iter().enumerate() {
        by_user.entry(c.user).or_default().push(i);
    }
    let users: Vec<&Vec<usize>> = by_user.values().filter(|v| v.len() > opt.k).collect();
    let mut outcomes: [(&'static str, PolicyOutcome); 3] = [
        ("greedy", PolicyOutcome::default()),
        ("thompson", PolicyOutcome::default()),
        ("random", PolicyOutcome::default()),
    ];
    if users.is_empty() || opt.k == 0 {
        return outcomes;
    }
    let mut items: [std::collections::BTreeSet<u32>; 3] = Default::default();
    let mut user_rng = Rng::for_stream(opt.seed, "replay/users");
    let mut ts_rng = Rng::for_stream(opt.seed, "replay/thompson");
    let mut rnd_rng = Rng::for_stream(opt.seed, "replay/random");
    let top_k = |score: &[(f64, usize)]| -> Vec<usize> {
        let mut s = score.to_vec();
        s.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        s.into_iter().take(opt.k).map(|(_, i)| i).collect()
    };
    for _ in 0..opt.rounds {
        for _ in 0..opt.users {
            let rows = users[user_rng.below(users.len() as u64) as usize];
            let greedy: Vec<(f64, usize)> =
                rows.iter().map(|&i| (cands[i].logit as f64, i)).collect();
            let sampled: Vec<(f64, usize)> = rows
                .iter()
                .map(|&i| {
                    let c = &cands[i];
                    let z = ts_rng.normal();
                    (c.logit as f64 + (c.var.max(0.0) as f64).sqrt() * z, i)
                })
                .collect();
            let mut shuffled = rows.clone();
            rnd_rng.shuffle(&mut shuffled);
            let picks = [top_k(&greedy), top_k(&sampled), shuffled[..opt.k].to_vec()];
            for (p, picked) in picks.iter().enumerate() {
                let o = &mut outcomes[p].1;
                for &i in picked {
                    o.picks += 1;
                    o.reward += cands[i].reward as f64;
                    o.cold_picks += usize::from(cands[i].cold);
                    items[p].insert(cands[i].item);
                }
            }
        }
    }
    for (o, set) in outcomes.iter_mut().zip(&items) {
        o.1.distinct_items = set.len();
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_matches_a_hand_computed_case() {
        // λ = 2, rows h = [1, 0] (logit 0: p(1-p) = 1/4) and h = [0, 2] (logit 0 too).
        let mut p = Precision::new(2, 2.0);
        p.add(&[1.0, 0.0], 0.0);
        p.add(&[0.0, 2.0], 0.0);
        // h̃ = [1, 0, 1] and [0, 2, 1]: Σ w h̃h̃ᵀ = 1/4 [[1,0,1],[0,0,0],[1,0,1]]
        //                                        + 1/4 [[0,0,0],[0,4,2],[0,2,1]]
        let want = DMatrix::from_row_slice(3, 3, &[2.25, 0.0, 0.25, 0.0, 3.0, 0.5, 0.25, 0.5, 2.5]);
        assert!((p.matrix() - &want).abs().max() < 1e-12, "{}", p.matrix());
        assert_eq!(p.rows(), 2);
        let cov = p.covariance().unwrap();
        assert!((&cov * &want - DMatrix::<f64>::identity(3, 3)).abs().max() < 1e-12);
        // σ² of h = [1, 0] is h̃ᵀ Λ⁻¹ h̃ with h̃ = [1, 0, 1]
        let x = DVector::from_vec(vec![1.0, 0.0, 1.0]);
        let want_var = (x.transpose() * &cov * &x)[(0, 0)];
        assert!((variance(&cov, &[1.0, 0.0]) - want_var).abs() < 1e-12);
    }

    #[test]
    fn variance_is_smaller_where_the_training_rows_are_dense() {
        let mut rng = Rng::for_stream(1, "test/laplace");
        let mut p = Precision::new(3, 1.0);
        for _ in 0..500 {
            // rows near (1, 1, 0); the third direction barely varies
            let h = [
                1.0 + 0.3 * rng.normal() as f32,
                1.0 + 0.3 * rng.normal() as f32,
                0.01 * rng.normal() as f32,
            ];
            p.add(&h, 0.5 * rng.normal() as f32);
        }
        let cov = p.covariance().unwrap();
        let near = variance(&cov, &[1.0, 1.0, 0.0]);
        let far = variance(&cov, &[1.0, 1.0, 3.0]);
        let farther = variance(&cov, &[-4.0, 5.0, 0.0]);
        assert!(near < 0.05, "near {near}");
        assert!(far > 20.0 * near, "near {near} far {far}");
        assert!(farther > 20.0 * near, "near {near} farther {farther}");
        // the prior alone (no rows) gives |h̃|² / λ
        let prior = Precision::new(3, 1.0).covariance().unwrap();
        assert!((variance(&prior, &[1.0, 1.0, 0.0]) - 3.0).abs() < 1e-12);
        assert!(near < variance(&prior, &[1.0, 1.0, 0.0]));
    }

    #[test]
    fn replay_policies_pick_by_logit_by_sample_and_at_random() {
        // two users with 4 candidates each; the best logits are the rewarded warm items, the
        // cold items have low logits and a large variance
        let mut cands = Vec::new();
        for user in 0..2u64 {
            for j in 0..4u32 {
                let cold = j >= 2;
                cands.push(Candidate {
                    user,
                    item: 10 * user as u32 + j,
                    reward: if cold { 0.0 } else { 1.0 },
                    logit: if cold { -1.0 } else { 1.0 },
                    var: if cold { 25.0 } else { 0.0 },
                    cold,
                });
            }
        }
        let opt = ReplayOptions {
            rounds: 50,
            users: 4,
            k: 2,
            seed: 3,
        };
        let out = replay(&cands, opt);
        assert_eq!(out, replay(&cands, opt), "seeded");
        let [(_, greedy), (_, ts), (_, random)] = &out;
        assert_eq!(greedy.picks, 400);
        assert_eq!(
            greedy.reward, 400.0,
            "greedy always picks the two warm items"
        );
        assert_eq!(greedy.cold_picks, 0);
        assert!(ts.cold_picks > 0 && ts.reward < 400.0, "{ts:?}");
        assert!(ts.distinct_items > greedy.distinct_items);
        assert!(random.cold_picks > ts.cold_picks / 2, "{random:?}");
        // no variance: Thompson is greedy
        let flat: Vec<Candidate> = cands.iter().map(|c| Candidate { var: 0.0, ..*c }).collect();
        let [(_, g), (_, t), _] = replay(&flat, opt);
        assert_eq!(g, t);
    }

    #[test]
    fn a_precision_that_is_not_positive_definite_is_an_error() {
        let p = Precision::new(2, 0.0);
        assert!(p.covariance().unwrap_err().contains("positive definite"));
    }

    #[test]
    fn thompson_samples_are_seeded_per_row_and_centre_on_the_mean() {
        let logits = [0.3f32, -1.0, 2.0, 0.0];
        let var = [0.5f32, 0.0, 1.0, 4.0];
        let a = thompson(&logits, &var, 2, 7, 10);
        assert_eq!(a, thompson(&logits, &var, 2, 7, 10));
        assert_ne!(a, thompson(&logits, &var, 2, 8, 10));
        // chunking does not change a row's draw
        assert_eq!(a[2..], thompson(&logits[2..], &var[2..], 2, 7, 11)[..]);
        // zero variance gives σ(μ)
        assert_eq!(a[1], probability(-1.0));
        // with a small variance the mean of the samples is close to σ(μ) (a sanity check)
        let n = 4000;
        let l = vec![0.5f32; n];
        let v = vec![0.01f32; n];
        let s = thompson(&l, &v, 1, 3, 0);
        let mean = s.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
        assert!((mean - probability(0.5) as f64).abs() < 0.01, "mean {mean}");
        let distinct: std::collections::BTreeSet<u32> = s.iter().map(|x| x.to_bits()).collect();
        assert!(distinct.len() > n / 2, "rows draw independently");
    }
}
