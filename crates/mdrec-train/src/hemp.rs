//! HEMP — AREAD's hierarchical expert mask pruning schedule (Algorithm 1).
//!
//! This module owns the schedule around AREAD's training steps: the single-domain batch
//! sequence, the warm-up with its per-domain gate memory, and every `R` batches the mask update
//! (candidate generation from recorded gates with random flips, candidate training from a
//! common snapshot with pruning, selection by loss on original training batches). The model
//! side (mask layout, `validate`, masked forward, bagging loss, the hyper-parameters
//! [`HempConfig`]) is `mdrec_models::multidomain::aread`. The trainer opts in when the model's schedule
//! hook (`RecModel::hemp`) returns it with HEMP enabled ([`applies`]); every other model trains
//! exactly as before.
//!
//! Schedule (batch size `bs`; `W = warm_up_interval·ref/bs`, `R = regroup_interval·ref/bs`):
//! - every mini-batch holds one domain: domain `d` appears `⌈n_d/bs⌉` times in a sequence
//!   shuffled once per run (`hemp/sequence`), its rows reshuffled every epoch;
//! - warm-up (first epoch only, before its batches): `W` batches in round-robin domain order
//!   `S−1, …, 0, S−1, …` from the original rows, no masks (loss `BCE(mean_j p_j)`), main
//!   optimizer; the batch-mean gate values of every level `l ≥ 2` are recorded per domain;
//! - mask update before batch 0 of the first epoch and whenever `(i+1) % R == 0`: the whole
//!   engine state Θ0 (parameters, buffers, masks, both dense optimizers, embedding rows and
//!   moments) is saved; per domain, `Z` candidates: `generate_mask`, restore Θ0 exactly, train
//!   `update_steps` steps with a fresh Adam (`update_lr`, β = (0.9, `update_beta2`),
//!   `update_weight_decay`; embeddings: the store's optimizer with fresh state at `update_lr`)
//!   on the domain's augmented rows (original rows without augmentation), pruning after every
//!   step, then score on `eval_batches` original batches of the domain (inference mode); the
//!   lowest mean loss wins; Θ0 is restored and the winners become the masks; the gate memory is
//!   cleared;
//! - the batch itself is then trained with **its own** domain's mask (fix of docs/models.md),
//!   bagging loss, main optimizer; with `record_gates_after_warmup` its gates are recorded.
//!
//! Deviations from the reference (`run.py`): the snapshot covers every parameter and the
//! optimizer states (docs/models.md; `snapshot = "code"` leaves the MMoE experts, gates and group
//! embedding out, as the code); gate values keep being recorded after warm-up by default
//! (docs/models.md); all candidates of a domain are scored on the same original batches (the code draws
//! new ones per candidate); candidate scoring runs the inference model and leaves out the L2
//! term; the candidates' embedding optimizer uses the store's configured β; `generate_mask`'s
//! redraw loop gives up after 1000 draws (then `origin ∨ prun`, validated).
//!
//! The augmented training set of the counterfactual augmentation is an input ([`Hemp::new`]'s `augmented`), built by
//! `mdrec-data`; without it candidates train on the original rows.

use burn::optim::decay::WeightDecayConfig;
use burn::optim::AdamConfig;
use mdrec_data::rng::Rng;
use mdrec_data::{quantile, EncodedData};
use mdrec_models::multidomain::aread::{self, edge_num, HempConfig, HempMode, HempSnapshot, Mask};
use mdrec_models::Probes;

use crate::engine::Engine;
use crate::progress::Progress;
use crate::TrainError;

/// Most redraws of `generate_mask` before it falls back to `origin ∨ prun`.
const MAX_DRAWS: usize = 1000;

/// Whether the engine's model follows the HEMP schedule (it is AREAD).
pub fn applies(engine: &Engine) -> bool {
    engine.model.hemp().is_some_and(|m| m.hemp_config().enabled)
}

fn model(engine: &Engine) -> &aread::Aread {
    engine.model.hemp().expect("HEMP runs on AREAD")
}

fn model_mut(engine: &mut Engine) -> &mut aread::Aread {
    engine.model.hemp_mut().expect("HEMP runs on AREAD")
}

/// Rows of one domain drawn batch by batch, reshuffled at every wrap.
struct Cycle {
    rows: Vec<u32>,
    pos: usize,
    rng: Rng,
}

impl Cycle {
    fn new(mut rows: Vec<u32>, mut rng: Rng) -> Self {
        rng.shuffle(&mut rows);
        Cycle { rows, pos: 0, rng }
    }

    fn next(&mut self, n: usize) -> Vec<u32> {
        let n = n.min(self.rows.len());
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            if self.pos == self.rows.len() {
                self.rng.shuffle(&mut self.rows);
                self.pos = 0;
            }
            out.push(self.rows[self.pos]);
            self.pos += 1;
        }
        out
    }
}

/// Sum and count of recorded batch-mean gate values per inter-level block.
#[derive(Clone)]
struct GateMemory {
    sums: Vec<Vec<f64>>,
    count: usize,
}

/// `min_k quantile_p(positive entries of values[k])` over the blocks that have any.
fn threshold(values: &[Vec<f64>], p: f64) -> Option<f64> {
    values
        .iter()
        .filter_map(|v| {
            let pos: Vec<f64> = v.iter().copied().filter(|&x| x > 0.0).collect();
            quantile(&pos, p)
        })
        .reduce(f64::min)
}

/// `generate_mask('mask_max_gate', …)` (AREAD paper, Algorithm 1): `gates[k−1]` = mean recorded gate values
/// of inter-level block `k` (row-major `[i, n]`, empty when nothing was recorded), `active` = a,
/// `sigma` = σ_r, `current` = the domain's mask `M_d` if set.
pub fn generate_mask(
    sizes: &[usize],
    gates: &[Vec<f64>],
    active: f64,
    sigma: f64,
    current: Option<&Mask>,
    rng: &mut Rng,
) -> Mask {
    let prun = match threshold(gates, 1.0 - active) {
        Some(thr) => {
            let mut m = Mask::empty(sizes);
            for (k, g) in gates.iter().enumerate() {
                let (s, _, _) = m.block(k + 1);
                for (j, &v) in g.iter().enumerate() {
                    m.edges_mut()[s + j] = v > 0.0 && v >= thr;
                }
            }
            m
        }
        None => {
            let mut m = Mask::full(sizes);
            for _ in 0..MAX_DRAWS {
                let mut r = Mask::empty(sizes);
                for e in r.edges_mut() {
                    *e = rng.next_f64() < active;
                }
                r.validate();
                if r.has_output() {
                    m = r;
                    break;
                }
            }
            m
        }
    };
    let rand_percent = (rng.normal() * sigma).abs().min(1.0);
    let origin = current.cloned().unwrap_or_else(|| prun.clone());
    let is_nor = origin.active_edges() as f64 / edge_num(sizes) as f64 > active;
    let base: Vec<bool> = origin
        .edges()
        .iter()
        .zip(prun.edges())
        .map(|(a, b)| *a || *b)
        .collect();
    for _ in 0..MAX_DRAWS {
        let mut m = Mask::from_edges(sizes, base.clone()).expect("same sizes");
        for e in m.edges_mut() {
            let flip = rng.next_f64() < rand_percent;
            *e = if is_nor { *e ^ flip } else { *e || flip };
        }
        m.validate();
        if m != origin && m.has_output() {
            return m;
        }
    }
    let mut m = Mask::from_edges(sizes, base).expect("same sizes");
    m.validate();
    if m.has_output() {
        m
    } else if origin.has_output() {
        origin
    } else {
        Mask::full(sizes)
    }
}

/// `prun_single_mask` (AREAD paper, Algorithm 1): `V = gate ⊙ T` per inter-level block from the latest
/// forward (`gates[k−1]` row-major); edges below `min_k quantile_ratio(positive V)` are removed,
/// the mask validated; a result without output edges keeps `t`.
pub fn prune(t: &Mask, gates: &[Vec<f64>], ratio: f64) -> Mask {
    let v: Vec<Vec<f64>> = gates
        .iter()
        .enumerate()
        .map(|(k, g)| {
            let (s, _, _) = t.block(k + 1);
            g.iter()
                .enumerate()
                .map(|(j, &x)| if t.edges()[s + j] { x } else { 0.0 })
                .collect()
        })
        .collect();
    let Some(thr) = threshold(&v, ratio) else {
        return t.clone();
    };
    let mut out = t.clone();
    for (k, vk) in v.iter().enumerate() {
        let (s, _, _) = out.block(k + 1);
        for (j, &x) in vk.iter().enumerate() {
            if out.edges()[s + j] && x < thr {
                out.edges_mut()[s + j] = false;
            }
        }
    }
    out.validate();
    if out.has_output() {
        out
    } else {
        t.clone()
    }
}

/// The HEMP state of one training run.
pub struct Hemp<'a> {
    cfg: HempConfig,
    sizes: Vec<usize>,
    batch_size: usize,
    warm_up: usize,
    regroup: usize,
    sigma: f64,
    active: f64,
    z_f: f64,
    memory: Vec<GateMemory>,
    original: Vec<Option<Cycle>>,
    augmented_rows: Vec<Option<Cycle>>,
    augmented: Option<&'a EncodedData>,
    rng: Rng,
    updates: usize,
}

impl<'a> Hemp<'a> {
    /// The schedule for `engine` (an AREAD model, see [`applies`]) on `train`; `augmented` is
    /// the domain-augmented training set used for candidate training (the AREAD paper's counterfactual augmentation), or `None` for
    /// the original rows.
    pub fn new(
        engine: &Engine,
        train: &EncodedData,
        augmented: Option<&'a EncodedData>,
    ) -> Result<Self, TrainError> {
        let m = model(engine);
        let cfg = m.hemp_config().clone();
        cfg.validate()
            .map_err(|e| TrainError::Config(format!("model.{e}")))?;
        let sizes = m.sizes().to_vec();
        let s_n = engine.ctx.n_domains();
        let tc = engine.train_config();
        let seed = tc.seed;
        let cycles = |data: &EncodedData, what: &str| -> Vec<Option<Cycle>> {
            (0..s_n)
                .map(|d| {
                    let rows = data.rows_of_domain(d as u32);
                    (!rows.is_empty()).then(|| {
                        Cycle::new(rows, Rng::for_stream(seed, &format!("hemp/{what}/{d}")))
                    })
                })
                .collect()
        };
        let original = cycles(train, "original");
        let augmented_rows = match augmented {
            Some(a) => cycles(a, "augmented"),
            None => (0..s_n).map(|_| None).collect(),
        };
        let empty = GateMemory {
            sums: sizes.windows(2).map(|w| vec![0.0; w[0] * w[1]]).collect(),
            count: 0,
        };
        Ok(Hemp {
            warm_up: cfg.scaled(cfg.warm_up_interval, tc.batch_size),
            regroup: cfg.scaled(cfg.regroup_interval, tc.batch_size),
            batch_size: tc.batch_size,
            sigma: cfg.random_sigma,
            active: cfg.init_active,
            z_f: cfg.candidates as f64,
            memory: vec![empty; s_n],
            sizes,
            original,
            augmented_rows,
            augmented,
            rng: Rng::for_stream(seed, "hemp/masks"),
            updates: 0,
            cfg,
        })
    }

    /// Warm-up batches `W` and mask-update interval `R`, in batches.
    pub fn intervals(&self) -> (usize, usize) {
        (self.warm_up, self.regroup)
    }

    /// Number of mask updates done.
    pub fn updates(&self) -> usize {
        self.updates
    }

    /// Adds the gate values of a main step on `rows` rows of domain `d` to its memory.
    fn record(&mut self, d: usize, probes: &Probes, rows: usize) {
        let Some(gates) = self.batch_gates(d, probes, rows) else {
            return;
        };
        let mem = &mut self.memory[d];
        for (sums, level) in mem.sums.iter_mut().zip(gates) {
            if let Some(v) = level {
                for (s, x) in sums.iter_mut().zip(v) {
                    *s += x as f64;
                }
            }
        }
        mem.count += 1;
    }

    /// The batch-mean gate values of every level a step on `rows` rows of domain `d` recorded,
    /// `None` when it recorded none ([`group_means`] in data-parallel training).
    fn batch_gates(&self, d: usize, probes: &Probes, rows: usize) -> Option<Vec<Option<Vec<f32>>>> {
        let mut levels: Vec<Option<Vec<f32>>> = (0..self.sizes.len().saturating_sub(1))
            .map(|k| {
                probes
                    .values()
                    .get(&format!("hemp/gate/l{}/d{d}", k + 2))
                    .and_then(|v| v.clone().into_data().try_to_vec::<f32>().ok())
            })
            .collect();
        let lens: Vec<usize> = self.sizes.windows(2).map(|w| w[0] * w[1]).collect();
        group_means(&mut levels, &lens, rows);
        levels.iter().any(Option::is_some).then_some(levels)
    }

    /// The gate values of the step on `rows` rows of domain `d` that `probes` recorded (zeros
    /// for a level it did not record).
    fn latest_gates(&self, d: usize, probes: &Probes, rows: usize) -> Vec<Vec<f64>> {
        let levels = self.batch_gates(d, probes, rows);
        self.sizes
            .windows(2)
            .enumerate()
            .map(|(k, w)| match levels.as_ref().and_then(|l| l[k].as_ref()) {
                Some(v) => v.iter().map(|&x| f64::from(x)).collect(),
                None => vec![0.0; w[0] * w[1]],
            })
            .collect()
    }

    fn clear_memory(&mut self) {
        for m in &mut self.memory {
            m.sums
                .iter_mut()
                .for_each(|s| s.iter_mut().for_each(|x| *x = 0.0));
            m.count = 0;
        }
    }

    /// The warm-up (first epoch, before its batches): `W` batches in round-robin domain order,
    /// no masks, gate values recorded. Returns the mean loss.
    pub fn warm_up(
        &mut self,
        engine: &mut Engine,
        train: &EncodedData,
        progress: &mut dyn Progress,
    ) -> Result<f64, TrainError> {
        let domains: Vec<usize> = (0..self.original.len())
            .filter(|&d| self.original[d].is_some())
            .collect();
        if domains.is_empty() {
            return Ok(0.0);
        }
        let mut queue: Vec<usize> = Vec::new();
        let mut sum = 0.0;
        for _ in 0..self.warm_up {
            if queue.is_empty() {
                queue = domains.clone();
            }
            let d = queue.pop().expect("refilled");
            let rows = self.original[d]
                .as_mut()
                .expect("non-empty")
                .next(self.batch_size);
            let mut probes = Probes::new(true);
            sum += engine.train_step_probed(train, &rows, &mut probes)?;
            self.record(d, &probes, rows.len());
        }
        let mean = sum / self.warm_up as f64;
        progress.message(&format!(
            "hemp: warm-up {} batches, loss {mean:.5}",
            self.warm_up
        ));
        Ok(mean)
    }

    /// One step of the main loop: batch `i` of `epoch` (`rows`, one domain); a mask update
    /// first when it is due. Returns the batch loss.
    pub fn step(
        &mut self,
        engine: &mut Engine,
        train: &EncodedData,
        epoch: usize,
        i: usize,
        rows: &[u32],
        progress: &mut dyn Progress,
    ) -> Result<f64, TrainError> {
        if (epoch == 1 && i == 0) || (i + 1).is_multiple_of(self.regroup) {
            self.update_masks(engine, train, progress)?;
        }
        let d = train.domain[rows[0] as usize] as usize;
        let record = self.cfg.record_gates_after_warmup;
        let mut probes = Probes::new(record);
        let loss = engine.train_step_probed(train, rows, &mut probes)?;
        if record {
            self.record(d, &probes, rows.len());
        }
        Ok(loss)
    }

    /// The mask update: candidates per domain from a common snapshot, the best by loss.
    pub fn update_masks(
        &mut self,
        engine: &mut Engine,
        train: &EncodedData,
        progress: &mut dyn Progress,
    ) -> Result<(), TrainError> {
        let (z_n, active, sigma) = match self.cfg.mode {
            HempMode::Paper => (self.cfg.candidates, self.active, self.sigma),
            HempMode::Code => {
                self.sigma *= self.cfg.sigma_decay;
                self.active = (self.active * self.cfg.active_decay).max(self.cfg.active_floor);
                self.z_f *= self.cfg.candidates_decay;
                ((self.z_f.floor() as usize).max(1), self.active, self.sigma)
            }
        };
        let keep = match self.cfg.snapshot {
            HempSnapshot::All => Vec::new(),
            HempSnapshot::Code => model(engine).unsnapshotted_params(),
        };
        let state = engine.save_state();
        let mut masks = model(engine).masks();
        let mut chosen: Vec<Option<Mask>> = masks.clone();
        let dense_wd = self.cfg.update_weight_decay;
        let fast = AdamConfig::new()
            .with_beta_1(0.9)
            .with_beta_2(self.cfg.update_beta2 as f32)
            .with_epsilon(1e-8)
            .with_weight_decay((dense_wd > 0.0).then(|| WeightDecayConfig::new(dense_wd as f32)));
        let mut summary = Vec::new();
        for d in 0..masks.len() {
            let Some(orig) = self.original[d].as_mut() else {
                continue;
            };
            let eval_batches: Vec<Vec<u32>> = (0..self.cfg.eval_batches)
                .map(|_| orig.next(self.batch_size))
                .collect();
            let mem = &self.memory[d];
            let gates: Vec<Vec<f64>> = if mem.count == 0 {
                mem.sums.iter().map(|s| vec![0.0; s.len()]).collect()
            } else {
                mem.sums
                    .iter()
                    .map(|s| s.iter().map(|x| x / mem.count as f64).collect())
                    .collect()
            };
            let mut best: Option<(f64, Mask)> = None;
            for _ in 0..z_n {
                let mut t = generate_mask(
                    &self.sizes,
                    &gates,
                    active,
                    sigma,
                    masks[d].as_ref(),
                    &mut self.rng,
                );
                engine.restore_state(&state, &keep);
                model_mut(engine)
                    .set_mask(d, Some(t.clone()))
                    .map_err(TrainError::Tensor)?;
                let mut optim = fast.init();
                engine.store.reset_optimizer_state();
                for _ in 0..self.cfg.update_steps {
                    let rows = match (self.augmented, self.augmented_rows[d].as_mut()) {
                        (Some(_), Some(c)) => c.next(self.batch_size),
                        _ => self.original[d]
                            .as_mut()
                            .expect("non-empty")
                            .next(self.batch_size),
                    };
                    let data = match (self.augmented, self.augmented_rows[d].is_some()) {
                        (Some(a), true) => a,
                        _ => train,
                    };
                    let mut probes = Probes::new(true);
                    engine.step_with(
                        data,
                        &rows,
                        &mut optim,
                        self.cfg.update_lr,
                        self.cfg.update_lr,
                        dense_wd,
                        &mut probes,
                    )?;
                    let prune_now = match self.cfg.mode {
                        HempMode::Code => true,
                        HempMode::Paper => t.middle_density() > self.cfg.target_sparsity,
                    };
                    if prune_now {
                        let g = self.latest_gates(d, &probes, rows.len());
                        t = prune(&t, &g, self.cfg.prune_ratio);
                        model_mut(engine)
                            .set_mask(d, Some(t.clone()))
                            .map_err(TrainError::Tensor)?;
                    }
                }
                let loss = engine.eval_loss(train, &eval_batches)?;
                if best.as_ref().is_none_or(|(b, _)| loss < *b) {
                    best = Some((loss, t));
                }
            }
            if let Some((loss, t)) = best {
                summary.push(format!("d{d}: {} edges, loss {loss:.4}", t.active_edges()));
                chosen[d] = Some(t);
            }
        }
        engine.restore_state(&state, &keep);
        masks = chosen;
        model_mut(engine)
            .set_masks(&masks)
            .map_err(TrainError::Tensor)?;
        self.clear_memory();
        self.updates += 1;
        progress.message(&format!(
            "hemp: mask update {} ({} candidates/domain, a = {active:.3}, σ = {sigma:.3}): {}",
            self.updates,
            z_n,
            summary.join(", ")
        ));
        Ok(())
    }
}

/// In data-parallel training a rank's probes are means over its share of a batch of `rows`
/// rows: the shares' means of each level (`lens[k]` values), weighted by their rows, are
/// summed over the group, so every rank gets the batch mean one process records (up to the
/// order of the sums) and the ranks' masks stay equal. A level no rank recorded stays `None`.
/// Without a group, nothing changes.
fn group_means(levels: &mut [Option<Vec<f32>>], lens: &[usize], rows: usize) {
    let Some(group) = crate::dist::group() else {
        return;
    };
    let share = crate::dist::share(rows, group.rank(), group.size()).len() as f32;
    // per level: the weighted values, then the rows that recorded them
    let mut buf = Vec::new();
    for (level, &n) in levels.iter().zip(lens) {
        match level {
            Some(v) if share > 0.0 => {
                buf.extend(v.iter().map(|x| x * share));
                buf.push(share);
            }
            _ => buf.extend(std::iter::repeat_n(0.0, n + 1)),
        }
    }
    group.sum(&mut buf);
    let mut at = 0;
    for (level, &n) in levels.iter_mut().zip(lens) {
        let total = buf[at + n];
        *level = (total > 0.0).then(|| buf[at..at + n].iter().map(|x| x / total).collect());
        at += n + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_groups_gate_means_are_the_batch_means() {
        let seen = std::sync::Mutex::new(Vec::new());
        crate::dist::replicated(2, &mut crate::progress::Silent, |_| {
            // a batch of 3 rows: rank 0 computes 1 of them, rank 1 two; level 1 only rank 1
            let r = crate::dist::rank();
            let mut levels = vec![Some(vec![r as f32 + 1.0; 2]), (r == 1).then(|| vec![4.0])];
            group_means(&mut levels, &[2, 1], 3);
            seen.lock().unwrap().push(levels);
            Ok(())
        })
        .unwrap();
        let want = vec![Some(vec![5.0 / 3.0; 2]), Some(vec![4.0])];
        for levels in seen.into_inner().unwrap() {
            assert_eq!(levels, want);
        }
        let mut alone = vec![Some(vec![0.5]), None];
        group_means(&mut alone, &[1, 1], 3);
        assert_eq!(alone, vec![Some(vec![0.5]), None]);
    }

    #[test]
    fn quantile_interpolates_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&v, 1.0), Some(4.0));
        assert!((quantile(&v, 0.5).unwrap() - 2.5).abs() < 1e-12);
        assert!((quantile(&v, 0.3).unwrap() - 1.9).abs() < 1e-12);
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn prune_drops_the_weakest_active_edges_and_validates() {
        let sizes = [2, 2];
        let t = Mask::full(&sizes);
        // Block 1 gates: (0,0)=0.9 (0,1)=0.1 (1,0)=0.6 (1,1)=0.4.
        let g = vec![vec![0.9, 0.1, 0.6, 0.4]];
        let p = prune(&t, &g, 0.05);
        // quantile_0.05 of {0.9, 0.1, 0.6, 0.4} = 0.1 + 0.15·0.3 = 0.145 → (0,1) removed.
        assert!(!p.get(1, 0, 1));
        assert_eq!(p.active_edges(), t.active_edges() - 1);
        // Pruning that would leave no output keeps the mask.
        let mut single = Mask::empty(&sizes);
        for (k, i, n) in [(0, 0, 0), (1, 0, 0), (2, 0, 0)] {
            single.set(k, i, n, true);
        }
        assert_eq!(prune(&single, &[vec![0.5, 0.0, 0.0, 0.0]], 0.05), single);
    }

    #[test]
    fn generated_masks_are_valid_and_differ_from_the_origin() {
        let sizes = [3, 6, 12];
        let mut rng = Rng::new(4);
        let gates: Vec<Vec<f64>> = vec![
            (0..18).map(|i| (i % 5) as f64 / 10.0).collect(),
            (0..72).map(|i| (i % 7) as f64 / 10.0).collect(),
        ];
        let first = generate_mask(&sizes, &gates, 0.7, 0.2, None, &mut rng);
        assert!(first.has_output());
        let mut v = first.clone();
        v.validate();
        assert_eq!(v, first, "generated mask is not valid");
        for _ in 0..20 {
            let next = generate_mask(&sizes, &gates, 0.7, 0.2, Some(&first), &mut rng);
            assert!(next.has_output());
            assert_ne!(next, first);
        }
        // Without recorded gates: a random mask, still valid.
        let empty = vec![vec![0.0; 18], vec![0.0; 72]];
        let r = generate_mask(&sizes, &empty, 0.7, 0.2, None, &mut rng);
        assert!(r.has_output());
    }
}
