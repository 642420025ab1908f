//! AREAD — Luo et al., "One for Dozens: Adaptive REcommendation for All Domains with
//! Counterfactual Augmentation", AAAI 2025.
//!
//! This module owns the model side of AREAD: the hierarchical expert network (HEI) on an MMoE
//! base, the per-domain masks `M_d` (their layout, [`Mask::validate`], the Mask Overlap Ratio of
//! the paper's analysis), the masked forward pass, the bagging loss and the HEMP hyper-parameters
//! ([`HempConfig`]). The HEMP schedule itself (warm-up, candidate masks, pruning, selection)
//! lives in `mdrec-train/src/hemp.rs`, which reaches this model through the schedule hook
//! [`crate::RecModel::hemp_mut`].
//!
//! Forward: `x = [emb ; dense]`, `e_dom` = the domain field's embedding (a learned
//! per-domain table when the schema has no field with role `domain`). An MMoE with
//! `mmoe_experts` experts and `N_1` gates gives one input `u_n` per level-1 expert. Level 1:
//! `e_{1,n} = MLP(u_n)`. Level `l ≥ 2`, expert `n`: `a = softmax(Linear(2k → N_{l−1})(q))` with
//! `q = [e_dom ; e_group]`, masked and renormalised (Eq. 4)
//! `a'[i] = a[i]·M[i,n] / (Σ_i a[i]·M[i,n] + 1e-8)`, `e_{l,n} = MLP(Σ_i a'[i] e_{l−1,i})`.
//! Final expert `j`: `z_j = W_j [cn ; e_{L,j}] + lin`, `p_j = σ(z_j)`. Prediction = mean of
//! `p_j` over the active final experts `K(M_d)` (all of them without a mask); the model returns
//! the **logit of that mean**, computed stably as `LSE_j log σ(z_j) − LSE_j log σ(−z_j)`.
//! `e_group` = mean of `GroupEmb[n]` over the active level-1 experts (0 without a mask).
//! Inactive experts are not computed (their output is zero) and get no gate, so they receive no
//! gradient and their BatchNorm statistics are not updated. With masks the HEI runs per domain on
//! that domain's rows; a batch without any mask (warm-up, HEI alone) runs as one pass, so
//! BatchNorm sees the whole batch.
//!
//! Losses: without masks the trainer's BCE on the returned logits is the warm-up loss
//! `BCE(mean_j p_j, y)`. With masks (every domain of the batch masked, training only)
//! [`RecModel::forward_train`] supplies the bagging loss per (row, task):
//! `(1/|K|) Σ_{j∈K} BCE(p_j, y)` (the code's mean, not the paper's sum).
//!
//! Masks are model state: one non-trainable tensor `masks: [S, edge_num]` (a row of zeros =
//! no mask yet). It is saved in checkpoints like any tensor, never receives a gradient (so no
//! optimizer step or weight decay touches it) and is reported by [`RecModel::report`] (active
//! edges per domain, Mask Overlap Ratio per level).
//!
//! Reference implementation: `Chrissie-Law/AREAD-Multi-Domain-Recommendation`
//! `model/aread.py` (forward, `validate_mask`, `generate_mask`, `prun_single_mask`), `run.py`
//! (HEMP).
//! Deviations from reference:
//! - several tasks: each final expert's output layer and the linear branch have `T` outputs
//!   (the reference is single-task); the bagging loss is per (row, task) and the trainer's
//!   reduction applies on top;
//! - the explicit L2 term (λ = 1e-5 on embeddings, linear, experts, towers, cross net) is the
//!   trainer's `weight_decay` (default 1e-5) / embedding weight decay, applied to every dense
//!   parameter (BatchNorm included);
//! - the output layer has a bias when `linear = false` (otherwise `lin` carries it, as the
//!   reference);
//! - the unused attention branch and `final_gate` are not built (docs/models.md);
//! - in a batch that mixes masked and unmasked domains (never the case under HEMP, whose
//!   batches hold one domain) training falls back to the warm-up loss for the whole batch;
//! - without a mask the level-`l ≥ 2` gates are used as they are (Eq. 4 with an all-ones mask
//!   would divide by `1 + 1e-8`).
//!
//! Probes: `hemp/gate/l<l>/d<d>` for `l = 2..L` (1-based levels): `[1, N_{l−1}·N_l]`, entry
//! `(i, n)` row-major = batch mean over domain `d`'s rows of the raw softmax gate `a_{l,n}[i]`
//! (zeros for inactive experts). HEMP reads them for its gate memory and pruning.
//! `gate/<domain>/l<l>`: `[n_d, N_{l−1}]` (`N_0` = MMoE experts), for each of the domain's rows
//! the weight the active level-`l` experts give each expert below, after the mask (Eq. 4),
//! averaged over those experts: `mdrec analyze`'s expert utilisation per domain.
//!
//! # Shapes
//! - x `[B, D]`; MMoE experts `[B, E, H_0]`; per domain on its rows: `u_n [n_d, H_0]`,
//!   `e_{l,n} [n_d, H_l]`, `q [n_d, 2k]`, gate `[n_d, N_{l−1}]`, `z_j [n_d, T]`; logits `[B, T]`.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::activation::{relu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use mdrec_data::rng::Rng;
use mdrec_data::FieldRole;
use mdrec_nn::init::{self, WeightInit};
use mdrec_nn::layers::{linear, mix};
use mdrec_nn::loss::bce_with_logits;
use mdrec_nn::{Gate, GateKind, Mlp, MlpConfig, ModelContext, ModelInput, Norm};
use serde::{Deserialize, Serialize};

use crate::blocks::domain::DomainEmbedding;
use crate::blocks::experts::expert_bank;
use crate::blocks::interaction::CrossNet;
use crate::model::{
    model_config, Built, Invalid, ModelOutput, Probes, RecModel, TrainOutput, ZooModel,
};

/// How HEMP's candidate masks are pruned and its exploration decays (AREAD paper, Algorithm 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum HempMode {
    /// Algorithm 1: start from the top `init_active` (S0) gates, prune by `prune_ratio` (α)
    /// after each of the `update_steps` candidate steps while the sparsity is above
    /// `target_sparsity` (S); `init_active`, `candidates` and `random_sigma` stay constant.
    #[default]
    Paper,
    /// The official `run.py`: exactly `update_steps` prune steps with no sparsity stop; at every
    /// mask update `random_sigma ← 0.99·σ`, `init_active ← max(0.1, 0.95·a)`,
    /// `Z_f ← 0.99·Z_f`, `Z = max(1, ⌊Z_f⌋)`.
    Code,
}

/// Which parameters a candidate's training starts from and is restored to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum HempSnapshot {
    /// Every parameter, buffer, embedding row and optimizer moment (fix of docs/models.md).
    #[default]
    All,
    /// The official code: the MMoE experts and gates and the group embedding are not restored,
    /// so candidate exploration leaks into them.
    Code,
}

/// HEMP hyper-parameters (AREAD paper, Algorithm 1; defaults = the official CLI and the paper).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HempConfig {
    /// Run the HEMP schedule. `false` trains HEI alone: ordinary mixed-domain batches, no masks,
    /// the loss on the mean of every output (the ablation row "HEI").
    pub enabled: bool,
    /// Pruning / decay behaviour.
    pub mode: HempMode,
    /// Warm-up batches W at batch size `reference_batch_size` (`warm_up_interval`).
    pub warm_up_interval: usize,
    /// Batches between mask updates R at batch size `reference_batch_size`
    /// (`regroup_interval`).
    pub regroup_interval: usize,
    /// Batch size the intervals are given for: `W = warm_up_interval · reference / batch_size`.
    pub reference_batch_size: usize,
    /// Candidate training steps k (`regroup_update_step`).
    pub update_steps: usize,
    /// Original-train batches a candidate is scored on (`regroup_eval_step`).
    pub eval_batches: usize,
    /// Candidate masks per domain Z (`candidate_mask_num`).
    pub candidates: usize,
    /// σ_r of the random flips `|N(0, σ_r)|` (`random_modify_sigma`).
    pub random_sigma: f64,
    /// Fraction of gates kept at initialisation, S0 (`init_active_percent`).
    pub init_active: f64,
    /// Sparsity at which pruning stops in `paper` mode, S.
    pub target_sparsity: f64,
    /// Fraction pruned per step, α.
    pub prune_ratio: f64,
    /// Learning rate of the candidates' fresh Adam, lr_u (`update_lr`).
    pub update_lr: f64,
    /// β₂ of the candidates' Adam (β₁ = 0.9).
    pub update_beta2: f64,
    /// Weight decay of the candidates' Adam.
    pub update_weight_decay: f64,
    /// Keep recording gate values between mask updates (the paper's intent). `false` is the
    /// official code, whose recording condition is never true after warm-up, so later
    /// candidates start from random masks (docs/models.md).
    pub record_gates_after_warmup: bool,
    /// What a candidate is restored to (docs/models.md).
    pub snapshot: HempSnapshot,
    /// Decay of σ_r per update in `code` mode.
    pub sigma_decay: f64,
    /// Decay of the kept fraction per update in `code` mode.
    pub active_decay: f64,
    /// Floor of the kept fraction in `code` mode.
    pub active_floor: f64,
    /// Decay of the (real-valued) candidate count per update in `code` mode.
    pub candidates_decay: f64,
}

impl Default for HempConfig {
    fn default() -> Self {
        HempConfig {
            enabled: true,
            mode: HempMode::Paper,
            warm_up_interval: 100,
            regroup_interval: 2000,
            reference_batch_size: 1024,
            update_steps: 5,
            eval_batches: 5,
            candidates: 10,
            random_sigma: 0.2,
            init_active: 0.7,
            target_sparsity: 0.4,
            prune_ratio: 0.05,
            update_lr: 1e-2,
            update_beta2: 0.99,
            update_weight_decay: 1e-8,
            record_gates_after_warmup: true,
            snapshot: HempSnapshot::All,
            sigma_decay: 0.99,
            active_decay: 0.95,
            active_floor: 0.1,
            candidates_decay: 0.99,
        }
    }
}

impl HempConfig {
    /// Check ranges serde cannot; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        let pos_int = [
            ("warm_up_interval", self.warm_up_interval),
            ("regroup_interval", self.regroup_interval),
            ("reference_batch_size", self.reference_batch_size),
            ("update_steps", self.update_steps),
            ("eval_batches", self.eval_batches),
            ("candidates", self.candidates),
        ];
        for (k, v) in pos_int {
            if v == 0 {
                return Err(format!("hemp.{k} must be ≥ 1"));
            }
        }
        let unit = [
            ("init_active", self.init_active),
            ("prune_ratio", self.prune_ratio),
            ("update_beta2", self.update_beta2),
            ("sigma_decay", self.sigma_decay),
            ("active_decay", self.active_decay),
            ("active_floor", self.active_floor),
            ("candidates_decay", self.candidates_decay),
        ];
        for (k, v) in unit {
            if !(v.is_finite() && v > 0.0 && v <= 1.0) {
                return Err(format!("hemp.{k} must be in (0, 1], got {v}"));
            }
        }
        if !(self.target_sparsity.is_finite() && (0.0..=1.0).contains(&self.target_sparsity)) {
            return Err(format!(
                "hemp.target_sparsity must be in [0, 1], got {}",
                self.target_sparsity
            ));
        }
        for (k, v) in [
            ("random_sigma", self.random_sigma),
            ("update_weight_decay", self.update_weight_decay),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("hemp.{k} must be ≥ 0, got {v}"));
            }
        }
        if !(self.update_lr.is_finite() && self.update_lr > 0.0) {
            return Err(format!(
                "hemp.update_lr must be positive, got {}",
                self.update_lr
            ));
        }
        Ok(())
    }

    /// An interval given at `reference_batch_size`, in batches of `batch_size` (at least 1).
    pub fn scaled(&self, interval: usize, batch_size: usize) -> usize {
        (interval * self.reference_batch_size / batch_size.max(1)).max(1)
    }
}

model_config! {
    /// Config of [`Aread`].
    pub struct Config {
        /// Experts of the MMoE base (`mmoe_n_expert`).
        mmoe_experts: usize = 4 => 2,
        /// MMoE expert widths (`expert_dims`).
        expert_dims: Vec<usize> = vec![256, 128, 64] => vec![8],
        /// Experts per HEI level, `N_1..N_L` (`N_1` = number of MMoE gates).
        levels: Vec<usize> = vec![3, 6, 12] => vec![2, 4],
        /// Hidden widths of the experts of each level (`aread_tower_dims`).
        level_dims: Vec<Vec<usize>> = vec![vec![64, 32], vec![32, 16], vec![16, 8]] => vec![vec![8], vec![4]],
        /// Add `Linear(x)` to every output logit.
        linear: bool = true,
        /// Concatenate a DCN-v1 cross network output to each final expert (`use_dcn`).
        dcn: bool = true,
        /// Cross layers of the DCN branch.
        cross_layers: usize = 3 => 1,
        /// Width of the learned domain table (and of the group embedding) when the schema has no
        /// field with role `domain`; otherwise the domain field's width is used.
        domain_emb_dim: usize = 32 => 4,
        /// Hidden-layer options of every expert (`MLP_AREAD`: BN, ReLU, dropout 0.2).
        mlp: MlpConfig = MlpConfig { norm: Norm::Batch, dropout: 0.2, ..MlpConfig::default() } => MlpConfig { norm: Norm::Batch, ..MlpConfig::default() },
        /// HEMP schedule (read by the trainer).
        hemp: HempConfig = HempConfig::default() => HempConfig { warm_up_interval: 4, regroup_interval: 8, reference_batch_size: 64, update_steps: 2, eval_batches: 1, candidates: 2, ..HempConfig::default() },
    }
}

/// A per-domain mask `M_d = [m^(0), m^(1), …, m^(L)]` over the HEI, stored as
/// blocks of booleans: block 0 = input edges (`N_1`), block `k ∈ 1..L` = edges level `k` →
/// level `k+1` (`N_k × N_{k+1}`, row-major `[i, n]`), block `L` = output edges (`N_L`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    sizes: Vec<usize>,
    edges: Vec<bool>,
}

/// Number of edges of a mask over levels `sizes`: `N_1 + Σ N_{l−1}N_l + N_L`.
pub fn edge_num(sizes: &[usize]) -> usize {
    sizes[0] + sizes.windows(2).map(|w| w[0] * w[1]).sum::<usize>() + sizes[sizes.len() - 1]
}

impl Mask {
    /// A mask with every edge off.
    pub fn empty(sizes: &[usize]) -> Self {
        Mask {
            sizes: sizes.to_vec(),
            edges: vec![false; edge_num(sizes)],
        }
    }

    /// A mask with every edge on.
    pub fn full(sizes: &[usize]) -> Self {
        Mask {
            sizes: sizes.to_vec(),
            edges: vec![true; edge_num(sizes)],
        }
    }

    /// A mask from its flat edges (blocks in order); `None` when the length is wrong.
    pub fn from_edges(sizes: &[usize], edges: Vec<bool>) -> Option<Self> {
        (edges.len() == edge_num(sizes)).then(|| Mask {
            sizes: sizes.to_vec(),
            edges,
        })
    }

    /// Experts per level.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// Number of levels L.
    pub fn n_levels(&self) -> usize {
        self.sizes.len()
    }

    /// Every edge, blocks in order.
    pub fn edges(&self) -> &[bool] {
        &self.edges
    }

    /// Mutable edges (blocks in order).
    pub fn edges_mut(&mut self) -> &mut [bool] {
        &mut self.edges
    }

    /// `(start, rows, cols)` of block `k` in [`edges`](Self::edges).
    pub fn block(&self, k: usize) -> (usize, usize, usize) {
        let l = self.sizes.len();
        let (rows, cols) = if k == 0 {
            (1, self.sizes[0])
        } else if k < l {
            (self.sizes[k - 1], self.sizes[k])
        } else {
            (self.sizes[l - 1], 1)
        };
        let start = if k == 0 {
            0
        } else {
            self.sizes[0]
                + self.sizes[..k.min(l)]
                    .windows(2)
                    .map(|w| w[0] * w[1])
                    .sum::<usize>()
        };
        (start, rows, cols)
    }

    /// Edge `(i, n)` of block `k`.
    pub fn get(&self, k: usize, i: usize, n: usize) -> bool {
        let (s, _, c) = self.block(k);
        self.edges[s + i * c + n]
    }

    /// Set edge `(i, n)` of block `k`.
    pub fn set(&mut self, k: usize, i: usize, n: usize, v: bool) {
        let (s, _, c) = self.block(k);
        self.edges[s + i * c + n] = v;
    }

    /// Input edges of expert `n` of level `l` (0-based): `(block, i, n)` triples.
    fn inputs(&self, l: usize, n: usize) -> Vec<(usize, usize, usize)> {
        if l == 0 {
            vec![(0, 0, n)]
        } else {
            (0..self.sizes[l - 1]).map(|i| (l, i, n)).collect()
        }
    }

    /// Output edges of expert `n` of level `l` (0-based).
    fn outputs(&self, l: usize, n: usize) -> Vec<(usize, usize, usize)> {
        let last = self.sizes.len() - 1;
        if l == last {
            vec![(last + 1, n, 0)]
        } else {
            (0..self.sizes[l + 1]).map(|m| (l + 1, n, m)).collect()
        }
    }

    fn any(&self, e: &[(usize, usize, usize)]) -> bool {
        e.iter().any(|&(k, i, n)| self.get(k, i, n))
    }

    /// Whether expert `n` of level `l` (0-based) is active (has an input edge). After
    /// [`validate`](Self::validate) an active expert also has an output edge.
    pub fn expert_active(&self, l: usize, n: usize) -> bool {
        self.any(&self.inputs(l, n))
    }

    /// The final experts with an active output edge, `K(M_d)`.
    pub fn active_outputs(&self) -> Vec<usize> {
        let last = self.sizes.len();
        (0..self.sizes[last - 1])
            .filter(|&j| self.get(last, j, 0))
            .collect()
    }

    /// Whether any output edge is on (a mask is usable only then).
    pub fn has_output(&self) -> bool {
        !self.active_outputs().is_empty()
    }

    /// Number of active edges.
    pub fn active_edges(&self) -> usize {
        self.edges.iter().filter(|&&e| e).count()
    }

    /// Active inter-level edges over all inter-level edges (`‖T‖₀ / Σ N_{l−1}N_l`); 0 for a
    /// single level.
    pub fn middle_density(&self) -> f64 {
        let (mut on, mut all) = (0usize, 0usize);
        for k in 1..self.sizes.len() {
            let (s, r, c) = self.block(k);
            on += self.edges[s..s + r * c].iter().filter(|&&e| e).count();
            all += r * c;
        }
        if all == 0 {
            0.0
        } else {
            on as f64 / all as f64
        }
    }

    /// `validate_mask`: (1) a level-1 expert with an outgoing edge gets its
    /// input edge; (2) a final expert with an incoming edge gets its output edge; (3) dangling
    /// experts are removed until nothing changes: an expert without input edges loses its
    /// output edges, one without output edges loses its input edges.
    pub fn validate(&mut self) {
        let l_n = self.sizes.len();
        for t in 0..self.sizes[0] {
            if self.any(&self.outputs(0, t)) {
                self.set(0, 0, t, true);
            }
        }
        for t in 0..self.sizes[l_n - 1] {
            if self.any(&self.inputs(l_n - 1, t)) {
                self.set(l_n, t, 0, true);
            }
        }
        loop {
            let mut changed = false;
            for l in 0..l_n {
                for n in 0..self.sizes[l] {
                    let ins = self.inputs(l, n);
                    let outs = self.outputs(l, n);
                    let (has_in, has_out) = (self.any(&ins), self.any(&outs));
                    let clear = match (has_in, has_out) {
                        (false, true) => outs,
                        (true, false) => ins,
                        _ => continue,
                    };
                    for (k, i, m) in clear {
                        self.set(k, i, m, false);
                    }
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
    }

    /// Mask Overlap Ratio of block `k` (AREAD paper analysis): `|A ∧ B| / |A ∨ B|`; `None` when both
    /// blocks are empty.
    pub fn overlap(&self, other: &Mask, k: usize) -> Option<f64> {
        let (s, r, c) = self.block(k);
        let (a, b) = (&self.edges[s..s + r * c], &other.edges[s..s + r * c]);
        let inter = a.iter().zip(b).filter(|(x, y)| **x && **y).count();
        let union = a.iter().zip(b).filter(|(x, y)| **x || **y).count();
        (union > 0).then(|| inter as f64 / union as f64)
    }
}

/// One HEI level: its experts and, from level 2 on, one gate per expert.
#[derive(Module, Debug)]
pub struct Level {
    experts: Vec<Mlp>,
    gates: Vec<Linear>,
}

/// AREAD: HEI on an MMoE base with per-domain masks.
#[derive(Module, Debug)]
pub struct Aread {
    dom: DomainEmbedding,
    group_emb: Param<Tensor<2>>,
    mmoe_experts: Vec<Mlp>,
    mmoe_gates: Vec<Gate>,
    levels: Vec<Level>,
    out: Vec<Linear>,
    lin: Option<Linear>,
    cross: Option<CrossNet>,
    masks: Param<Tensor<2>>,
    #[module(skip)]
    sizes: Vec<usize>,
    #[module(skip)]
    hemp: HempConfig,
}

impl ZooModel for Aread {
    const NAME: &'static str = "aread";
    const PAPER: &'static str = "Luo et al., One for Dozens: Adaptive REcommendation for All Domains with Counterfactual Augmentation, AAAI 2025";
    type Config = Config;

    fn build(cfg: &Config, ctx: &ModelContext, rng: &mut Rng, device: &Device) -> Built<Self> {
        let invalid = Invalid;
        if cfg.mmoe_experts == 0 || cfg.expert_dims.is_empty() || cfg.expert_dims.contains(&0) {
            return Err(invalid(
                "mmoe_experts must be ≥ 1 and expert_dims non-empty with positive widths".into(),
            ));
        }
        if cfg.levels.is_empty() || cfg.levels.contains(&0) {
            return Err(invalid(format!(
                "levels must list ≥ 1 positive expert counts, got {:?}",
                cfg.levels
            )));
        }
        if cfg.level_dims.len() != cfg.levels.len()
            || cfg
                .level_dims
                .iter()
                .any(|d| d.is_empty() || d.contains(&0))
        {
            return Err(invalid(format!(
                "level_dims needs one non-empty list of positive widths per level ({} levels), got {:?}",
                cfg.levels.len(),
                cfg.level_dims
            )));
        }
        if cfg.dcn && cfg.cross_layers == 0 {
            return Err(invalid("cross_layers must be ≥ 1 when dcn = true".into()));
        }
        cfg.hemp.validate().map_err(invalid)?;
        let d_in = ctx.input_dim();
        let t_n = ctx.n_tasks();
        let dom = DomainEmbedding::new(ctx, &[FieldRole::Domain], cfg.domain_emb_dim, rng, device)?;
        let k = dom.dim();
        let n1 = cfg.levels[0];
        let group_emb = init::param(init::normal(rng, n1 * k, 1.0), [n1, k], device);
        let mmoe_experts: Vec<Mlp> = expert_bank(
            cfg.mmoe_experts,
            d_in,
            &cfg.expert_dims,
            &cfg.mlp,
            rng,
            device,
        );
        let mmoe_gates = (0..n1)
            .map(|_| Gate::new(d_in, cfg.mmoe_experts, GateKind::Linear, rng, device))
            .collect();
        let mut levels = Vec::with_capacity(cfg.levels.len());
        let mut h = *cfg.expert_dims.last().expect("non-empty");
        for (l, (&n, dims)) in cfg.levels.iter().zip(&cfg.level_dims).enumerate() {
            let experts = (0..n)
                .map(|_| Mlp::new(h, dims, &cfg.mlp, rng, device))
                .collect();
            let gates = if l == 0 {
                Vec::new()
            } else {
                (0..n)
                    .map(|_| {
                        linear(
                            2 * k,
                            cfg.levels[l - 1],
                            WeightInit::TorchDefault,
                            rng,
                            device,
                        )
                    })
                    .collect()
            };
            levels.push(Level { experts, gates });
            h = *dims.last().expect("non-empty");
        }
        let cross = cfg
            .dcn
            .then(|| CrossNet::new(d_in, cfg.cross_layers, rng, device));
        let cn_dim = if cfg.dcn { d_in } else { 0 };
        let n_l = *cfg.levels.last().expect("non-empty");
        let out = (0..n_l)
            .map(|_| {
                let mut l = linear(cn_dim + h, t_n, WeightInit::TorchDefault, rng, device);
                if cfg.linear {
                    l.bias = None;
                }
                l
            })
            .collect();
        let lin = cfg
            .linear
            .then(|| linear(d_in, t_n, WeightInit::TorchDefault, rng, device));
        let e = edge_num(&cfg.levels);
        let masks = Param::from_tensor(init::tensor(
            vec![0.0; ctx.n_domains() * e],
            [ctx.n_domains(), e],
            device,
        ))
        .set_require_grad(false);
        Ok(Aread {
            dom,
            group_emb,
            mmoe_experts,
            mmoe_gates,
            levels,
            out,
            lin,
            cross,
            masks,
            sizes: cfg.levels.clone(),
            hemp: cfg.hemp.clone(),
        })
    }
}

/// `log(1 + e^x)`, stable.
fn softplus<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    relu(x.clone()) + x.abs().neg().exp().log1p()
}

/// `log Σ_j e^{a_j}` over the last axis of `[n, T, J]`, stable → `[n, T]`.
fn logsumexp(a: Tensor<3>) -> Tensor<2> {
    let [n, t, _] = a.dims();
    let m = a.clone().max_dim(2).detach();
    let s = (a - m.clone()).exp().sum_dim(2).log() + m;
    s.reshape([n, t])
}

/// The logit of the mean of `σ(z_j)` over the `J` stacked logits `[n, T, J]`:
/// `LSE_j log σ(z_j) − LSE_j log σ(−z_j)` (the `log J` cancels).
pub fn logit_of_mean_sigmoid(z: Tensor<3>) -> Tensor<2> {
    let [n, t, j] = z.dims();
    if j == 1 {
        return z.reshape([n, t]);
    }
    logsumexp(softplus(z.clone().neg()).neg()) - logsumexp(softplus(z).neg())
}

/// Eq. 4: `a'[i] = a[i]·M[i] / (Σ_i a[i]·M[i] + 1e-8)` for the mask column `mask` of one
/// expert.
///
/// # Shapes
/// - a `[n, N_{l−1}]`, `mask.len() = N_{l−1}` → `[n, N_{l−1}]`
pub fn masked_gate(a: Tensor<2>, mask: &[bool]) -> Tensor<2> {
    let n = mask.len();
    let col: Vec<f32> = mask.iter().map(|&b| f32::from(u8::from(b))).collect();
    let col = Tensor::<2>::from_data(TensorData::new(col, [1, n]), &a.device());
    let am = a * col;
    let z = am.clone().sum_dim(1).add_scalar(1e-8);
    am / z
}

/// The bagging loss (Eq. 8, the code's mean): `(1/|K|) Σ_j BCE(σ(z_j), y)` per element.
///
/// # Shapes
/// - each `z_j` `[n, T]`, y `[n, T]` → `[n, T]`
pub fn bagging_loss(z: Vec<Tensor<2>>, y: Tensor<2>) -> Tensor<2> {
    let k = z.len();
    z.into_iter()
        .map(|zj| bce_with_logits(zj, y.clone()))
        .reduce(|a, b| a + b)
        .expect("≥ 1 output")
        .div_scalar(k as f32)
}

impl Aread {
    /// Experts per level.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// The HEMP hyper-parameters of this model.
    pub fn hemp_config(&self) -> &HempConfig {
        &self.hemp
    }

    /// Number of domains.
    pub fn n_domains(&self) -> usize {
        self.masks.val().dims()[0]
    }

    /// The mask of every domain (`None`: not set yet), read from the mask tensor.
    pub fn masks(&self) -> Vec<Option<Mask>> {
        let t = self.masks.val();
        let [s, e] = t.dims();
        let v = t.into_data().try_to_vec::<f32>().expect("f32 masks");
        (0..s)
            .map(|d| {
                let edges: Vec<bool> = v[d * e..(d + 1) * e].iter().map(|&x| x > 0.5).collect();
                edges
                    .iter()
                    .any(|&x| x)
                    .then(|| Mask::from_edges(&self.sizes, edges).expect("mask width"))
            })
            .collect()
    }

    /// Replace the masks of every domain (`None` clears one). Errors on a wrong count, a mask
    /// over other levels, or a mask without an output edge.
    pub fn set_masks(&mut self, masks: &[Option<Mask>]) -> Result<(), String> {
        let [s, e] = self.masks.val().dims();
        if masks.len() != s {
            return Err(format!("{} masks for {s} domains", masks.len()));
        }
        let mut v = vec![0.0f32; s * e];
        for (d, m) in masks.iter().enumerate() {
            if let Some(m) = m {
                if m.sizes != self.sizes {
                    return Err(format!(
                        "mask of domain {d} is over levels {:?}, the model has {:?}",
                        m.sizes, self.sizes
                    ));
                }
                if !m.has_output() {
                    return Err(format!("mask of domain {d} has no output edge"));
                }
                for (x, &b) in v[d * e..(d + 1) * e].iter_mut().zip(&m.edges) {
                    *x = f32::from(u8::from(b));
                }
            }
        }
        let device = self.masks.val().device();
        let t = Tensor::<2>::from_data(TensorData::new(v, [s, e]), &device);
        self.masks = Param::initialized(self.masks.id, t).set_require_grad(false);
        Ok(())
    }

    /// Set (or clear) the mask of one domain.
    pub fn set_mask(&mut self, d: usize, mask: Option<Mask>) -> Result<(), String> {
        let mut all = self.masks();
        if d >= all.len() {
            return Err(format!("domain {d} out of range ({} domains)", all.len()));
        }
        all[d] = mask;
        self.set_masks(&all)
    }

    /// Ids of the parameters the official HEMP snapshot leaves out (MMoE experts and gates,
    /// group embedding; `snapshot = "code"`).
    pub fn unsnapshotted_params(&self) -> Vec<burn::module::ParamId> {
        struct Ids(Vec<burn::module::ParamId>);
        impl burn::module::ModuleVisitor for Ids {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
                self.0.push(p.id);
            }
        }
        let mut ids = Ids(vec![self.group_emb.id]);
        for e in &self.mmoe_experts {
            e.visit(&mut ids);
        }
        for g in &self.mmoe_gates {
            g.visit(&mut ids);
        }
        ids.0
    }

    /// The forward pass; with `labels` (training) also the bagging loss `[B, T]` when every
    /// domain of the batch has a mask.
    fn run(
        &self,
        ctx: &ModelContext,
        input: &ModelInput,
        labels: Option<&Tensor<2>>,
        probes: &mut Probes,
    ) -> (Tensor<2>, Option<Tensor<2>>) {
        let x = input.flat();
        let device = x.device();
        let t_n = ctx.n_tasks();
        let e_dom = self.dom.forward(ctx, input);
        let k = self.dom.dim();
        let cn = self.cross.as_ref().map(|c| c.forward(x.clone()));
        let lin = self.lin.as_ref().map(|l| l.forward(x.clone()));
        let experts: Tensor<3> = Tensor::stack(
            self.mmoe_experts
                .iter()
                .map(|e| e.forward(x.clone()))
                .collect::<Vec<_>>(),
            1,
        );
        let masks = self.masks();
        let present = (0..masks.len()).filter(|&d| input.routing.counts[d] > 0);
        let bag = labels.is_some() && present.clone().all(|d| masks[d].is_some());
        let l_n = self.sizes.len();
        // Without masks nothing depends on the domain split, so a mixed batch runs as one pass:
        // BatchNorm then normalises over the whole batch (as in MMoE) instead of over each
        // domain's few rows (a domain with one row in the batch would normalise to zero), and
        // 18 domains cost one pass, not 18. Probes (HEMP's per-domain gate memory) need the
        // per-domain path.
        let one_pass = !probes.enabled() && present.clone().all(|d| masks[d].is_none());
        // The HEI on the rows of domain `d`, or on the whole batch (`None`).
        let mut body = |d: Option<usize>| {
            let mask = d.and_then(|d| masks[d].as_ref());
            let active = |l: usize, n: usize| mask.is_none_or(|m| m.expert_active(l, n));
            let xd = rows(input, x.clone(), d);
            let n_d = xd.dims()[0];
            let ed = rows(input, experts.clone(), d);
            let e_group = match mask {
                Some(m) => {
                    let ids: Vec<i64> = (0..self.sizes[0])
                        .filter(|&n| m.get(0, 0, n))
                        .map(|n| n as i64)
                        .collect();
                    let c = ids.len();
                    let ids = Tensor::<1, Int>::from_data(TensorData::new(ids, [c]), &device);
                    self.group_emb
                        .val()
                        .select(0, ids)
                        .mean_dim(0)
                        .expand([n_d, k])
                }
                None => Tensor::zeros([n_d, k], &device),
            };
            let q = Tensor::cat(vec![rows(input, e_dom.clone(), d), e_group], 1);
            // Expert utilisation for `mdrec analyze`: per level, the effective gate weights of
            // the active experts, summed (divided by their count when recorded).
            let util_of = d.filter(|_| probes.enabled());
            let util = |l: usize, sum: Option<Tensor<2>>, count: usize, probes: &mut Probes| {
                if let (Some(d), Some(sum)) = (util_of, sum) {
                    probes.record(
                        || crate::ProbeKey::DomainLevelGate {
                            domain: ctx.domains[d].clone(),
                            level: l + 1,
                        },
                        || sum.div_scalar(count as f32),
                    );
                }
            };
            let add = |acc: Option<Tensor<2>>, g: &Tensor<2>| match acc {
                Some(a) => Some(a + g.clone().detach()),
                None => Some(g.clone().detach()),
            };
            // Level 1.
            let (mut g_sum, mut g_count) = (None, 0);
            let mut prev: Vec<Option<Tensor<2>>> = (0..self.sizes[0])
                .map(|n| {
                    active(0, n).then(|| {
                        let g = self.mmoe_gates[n].forward(xd.clone());
                        if util_of.is_some() {
                            g_sum = add(g_sum.take(), &g);
                            g_count += 1;
                        }
                        self.levels[0].experts[n].forward(mix(ed.clone(), g))
                    })
                })
                .collect();
            util(0, g_sum, g_count, probes);
            for l in 1..l_n {
                let (mut a_sum, mut a_count) = (None, 0);
                let (n_prev, n_here) = (self.sizes[l - 1], self.sizes[l]);
                let h_prev = prev
                    .iter()
                    .flatten()
                    .next()
                    .map(|t| t.dims()[1])
                    .unwrap_or(1);
                let stacked: Tensor<3> = Tensor::stack(
                    prev.iter()
                        .map(|p| {
                            p.clone()
                                .unwrap_or_else(|| Tensor::zeros([n_d, h_prev], &device))
                        })
                        .collect::<Vec<_>>(),
                    1,
                );
                let mut gate_means: Vec<Tensor<2>> = Vec::new();
                let mut next = Vec::with_capacity(n_here);
                for n in 0..n_here {
                    if !active(l, n) {
                        if probes.enabled() {
                            gate_means.push(Tensor::zeros([1, n_prev], &device));
                        }
                        next.push(None);
                        continue;
                    }
                    let a = softmax(self.levels[l].gates[n].forward(q.clone()), 1);
                    if probes.enabled() {
                        gate_means.push(a.clone().detach().mean_dim(0));
                    }
                    let a = match mask {
                        Some(m) => {
                            let col: Vec<bool> = (0..n_prev).map(|i| m.get(l, i, n)).collect();
                            masked_gate(a, &col)
                        }
                        None => a,
                    };
                    if util_of.is_some() {
                        a_sum = add(a_sum.take(), &a);
                        a_count += 1;
                    }
                    next.push(Some(
                        self.levels[l].experts[n].forward(mix(stacked.clone(), a)),
                    ));
                }
                if let (true, Some(d)) = (probes.enabled(), d) {
                    let g: Tensor<2> = Tensor::cat(gate_means, 0).transpose();
                    probes.record(
                        || crate::ProbeKey::other(format!("hemp/gate/l{}/d{d}", l + 1)),
                        || g.reshape([1, n_prev * n_here]),
                    );
                }
                util(l, a_sum, a_count, probes);
                prev = next;
            }
            let finals: Vec<usize> = match mask {
                Some(m) => m.active_outputs(),
                None => (0..self.sizes[l_n - 1]).collect(),
            };
            let cn_d = cn.as_ref().map(|c| rows(input, c.clone(), d));
            let lin_d = lin.as_ref().map(|c| rows(input, c.clone(), d));
            let z: Vec<Tensor<2>> = finals
                .iter()
                .map(|&j| {
                    let e = prev[j]
                        .clone()
                        .expect("an active output has an active expert");
                    let inp = match &cn_d {
                        Some(c) => Tensor::cat(vec![c.clone(), e], 1),
                        None => e,
                    };
                    let z = self.out[j].forward(inp);
                    match &lin_d {
                        Some(li) => z + li.clone(),
                        None => z,
                    }
                })
                .collect();
            let stacked: Tensor<3> = Tensor::stack(z.clone(), 2);
            let logits = logit_of_mean_sigmoid(stacked);
            if bag {
                let y = rows(input, labels.expect("bag implies labels").clone(), d);
                Tensor::cat(vec![logits, bagging_loss(z, y)], 1)
            } else {
                logits
            }
        };
        let joined = if one_pass {
            body(None)
        } else {
            input.route(|d| body(Some(d)))
        };
        if bag {
            (
                joined.clone().narrow(1, 0, t_n),
                Some(joined.narrow(1, t_n, t_n)),
            )
        } else {
            (joined, None)
        }
    }
}

/// The rows of domain `d` of a batch tensor (`None`: all of them).
fn rows<const D: usize>(input: &ModelInput, x: Tensor<D>, d: Option<usize>) -> Tensor<D> {
    match d {
        Some(d) => input.rows_of(x, d),
        None => x,
    }
}

impl RecModel for Aread {
    fn hemp(&self) -> Option<&Aread> {
        Some(self)
    }

    fn hemp_mut(&mut self) -> Option<&mut Aread> {
        Some(self)
    }

    fn forward(&self, ctx: &ModelContext, input: &ModelInput, probes: &mut Probes) -> ModelOutput {
        let (logits, _) = self.run(ctx, input, None, probes);
        ModelOutput::from(logits)
    }

    /// The bagging loss when every domain of the batch has a mask; otherwise none
    /// (the trainer's BCE on the logit of the mean = the warm-up loss).
    fn forward_train(
        &self,
        ctx: &ModelContext,
        input: &ModelInput,
        labels: &Tensor<2>,
        probes: &mut Probes,
    ) -> TrainOutput {
        let (logits, element_loss) = self.run(ctx, input, Some(labels), probes);
        TrainOutput {
            output: ModelOutput::from(logits),
            element_loss,
        }
    }

    /// Per domain: active edges of its mask; per inter-level block: the Mask Overlap Ratio
    /// matrix over the domains (null where undefined); null before any mask is set.
    fn report(&self) -> serde_json::Value {
        let masks = self.masks();
        if masks.iter().all(Option::is_none) {
            return serde_json::Value::Null;
        }
        let total = edge_num(&self.sizes);
        let active: Vec<serde_json::Value> = masks
            .iter()
            .map(|m| match m {
                Some(m) => serde_json::json!(m.active_edges()),
                None => serde_json::Value::Null,
            })
            .collect();
        let mut overlap = serde_json::Map::new();
        for k in 1..self.sizes.len() {
            let mat: Vec<Vec<Option<f64>>> = masks
                .iter()
                .map(|a| {
                    masks
                        .iter()
                        .map(|b| match (a, b) {
                            (Some(a), Some(b)) => a.overlap(b, k),
                            _ => None,
                        })
                        .collect()
                })
                .collect();
            overlap.insert(format!("l{}-l{}", k, k + 1), serde_json::json!(mat));
        }
        serde_json::json!({
            "levels": self.sizes,
            "edges": total,
            "active_edges": active,
            "overlap_ratio": overlap,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mdrec_nn::device::cpu;

    fn mask(sizes: &[usize], on: &[(usize, usize, usize)]) -> Mask {
        let mut m = Mask::empty(sizes);
        for &(k, i, n) in on {
            m.set(k, i, n, true);
        }
        m
    }

    #[test]
    fn edge_count_and_blocks_follow_the_spec() {
        let sizes = [3, 6, 12];
        assert_eq!(edge_num(&sizes), 105);
        let m = Mask::empty(&sizes);
        assert_eq!(m.block(0), (0, 1, 3));
        assert_eq!(m.block(1), (3, 3, 6));
        assert_eq!(m.block(2), (21, 6, 12));
        assert_eq!(m.block(3), (93, 12, 1));
    }

    #[test]
    fn validate_adds_io_edges_and_removes_dangling_experts() {
        let sizes = [2, 2, 2];
        // Path 0 → 1 → 0 without input/output edges: both are added.
        // Level-2 expert 0 also feeds level-3 expert 1, fine. Level-1 expert 1 → level-2
        // expert 1, which has no outgoing edge: dangling, removed (and level-1 expert 1 then
        // has no output, so its input edge is removed too).
        let mut m = mask(
            &sizes,
            &[(1, 0, 1), (2, 1, 0), (2, 1, 1), (1, 1, 0), (0, 0, 1)],
        );
        // Edges: L1e0→L2e1, L2e1→L3e0, L2e1→L3e1, L1e1→L2e0, input of L1e1.
        // L2e0 has input (from L1e1) but no output → loses input edge; then L1e1 has an input
        // edge but no output → loses its input.
        m.validate();
        let want = mask(
            &sizes,
            &[
                (0, 0, 0),
                (1, 0, 1),
                (2, 1, 0),
                (2, 1, 1),
                (3, 0, 0),
                (3, 1, 0),
            ],
        );
        assert_eq!(m, want);
        // A final expert whose only input is a dangling chain loses everything; a mask
        // whose only edge is an output edge becomes empty.
        let mut m = mask(&sizes, &[(3, 1, 0)]);
        m.validate();
        assert_eq!(m, Mask::empty(&sizes));
        assert!(!m.has_output());
        // A hidden expert without inputs loses its outputs, then the final expert dangles.
        let mut m = mask(&sizes, &[(2, 0, 0)]);
        m.validate();
        assert_eq!(m, Mask::empty(&sizes));
        // Full masks are valid as they are.
        let mut f = Mask::full(&sizes);
        f.validate();
        assert_eq!(f, Mask::full(&sizes));
    }

    #[test]
    fn overlap_ratio_is_jaccard_per_block() {
        let sizes = [2, 2];
        let a = mask(&sizes, &[(1, 0, 0), (1, 0, 1), (1, 1, 1)]);
        let b = mask(&sizes, &[(1, 0, 1), (1, 1, 0), (1, 1, 1)]);
        // ∧ = {(0,1), (1,1)}, ∨ = all four → 0.5.
        assert_eq!(a.overlap(&b, 1), Some(0.5));
        assert_eq!(a.overlap(&a, 1), Some(1.0));
        let e = Mask::empty(&sizes);
        assert_eq!(e.overlap(&e, 1), None);
        assert_eq!(a.overlap(&e, 1), Some(0.0));
    }

    fn vals(t: Tensor<2>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn masked_gate_renormalises_over_active_edges() {
        let dev = cpu();
        let a = init::tensor(vec![0.2, 0.3, 0.5, 0.6, 0.3, 0.1], [2, 3], &dev);
        let got = vals(masked_gate(a, &[true, false, true]));
        let want = [0.2 / 0.7, 0.0, 0.5 / 0.7, 0.6 / 0.7, 0.0, 0.1 / 0.7];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn bagging_loss_is_the_mean_bce_of_the_outputs() {
        let dev = cpu();
        // Two rows, one task, three outputs.
        let z = [[0.5f64, -1.0, 2.0], [-0.3, 0.8, 0.0]];
        let y = [1.0f64, 0.0];
        let zs = (0..3)
            .map(|j| init::tensor(vec![z[0][j] as f32, z[1][j] as f32], [2, 1], &dev))
            .collect();
        let got = vals(bagging_loss(zs, init::tensor(vec![1.0, 0.0], [2, 1], &dev)));
        for r in 0..2 {
            let want: f64 = (0..3)
                .map(|j| {
                    let p = 1.0 / (1.0 + (-z[r][j]).exp());
                    -(y[r] * p.ln() + (1.0 - y[r]) * (1.0 - p).ln())
                })
                .sum::<f64>()
                / 3.0;
            assert!(
                (got[r] as f64 - want).abs() < 1e-5,
                "row {r}: {} vs {want}",
                got[r]
            );
        }
    }

    fn tiny_model(dev: &Device) -> (Aread, ModelContext) {
        let ctx = ModelContext::uniform(3, 10, 4, 1, 2, 2);
        let cfg = Config {
            mlp: MlpConfig::default(),
            ..Aread::tiny()
        };
        (
            Aread::build(&cfg, &ctx, &mut Rng::new(5), dev).unwrap(),
            ctx,
        )
    }

    fn input(ctx: &ModelContext, dev: &Device, domain: Vec<u32>) -> ModelInput {
        let b = domain.len();
        let mut rng = Rng::new(9);
        let emb = init::tensor(
            init::normal(&mut rng, b * ctx.emb_dim(), 1.0),
            [b, ctx.emb_dim()],
            dev,
        );
        let dense = init::tensor(init::normal(&mut rng, b, 1.0), [b, 1], dev);
        ModelInput::new(emb, Some(dense), domain, ctx.n_domains())
    }

    #[test]
    fn prediction_is_the_mean_of_the_active_outputs() {
        let dev = cpu();
        let (mut m, ctx) = tiny_model(&dev);
        let x = input(&ctx, &dev, vec![0, 0, 0, 0, 0]);
        let sizes = m.sizes().to_vec();
        let p = |m: &Aread| -> Vec<f32> {
            vals(m.forward(&ctx, &x, &mut Probes::new(false)).logits)
                .into_iter()
                .map(|z| 1.0 / (1.0 + (-z).exp()))
                .collect()
        };
        // Outputs 1 and 3 active, each fed by both level-1 experts.
        let only = |js: &[usize]| {
            let mut t = Mask::empty(&sizes);
            for &j in js {
                for i in 0..sizes[0] {
                    t.set(1, i, j, true);
                }
            }
            t.validate();
            t
        };
        m.set_mask(0, Some(only(&[1, 3]))).unwrap();
        let both = p(&m);
        m.set_mask(0, Some(only(&[1]))).unwrap();
        let p1 = p(&m);
        m.set_mask(0, Some(only(&[3]))).unwrap();
        let p3 = p(&m);
        for i in 0..both.len() {
            let want = (p1[i] + p3[i]) / 2.0;
            assert!((both[i] - want).abs() < 1e-5, "{} vs {want}", both[i]);
        }
        // A mask with one active output: the bagging loss is BCE on the logits.
        let dev_ad = cpu().autodiff();
        let (mut m, ctx) = tiny_model(&dev_ad);
        m.set_masks(&[Some(only(&[2])), Some(only(&[0]))]).unwrap();
        let x = input(&ctx, &dev_ad, vec![0, 1, 0, 1]);
        let y = init::tensor(
            vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0],
            [4, 2],
            &dev_ad,
        );
        let out = m.forward_train(&ctx, &x, &y, &mut Probes::new(false));
        let bag = vals(
            out.element_loss
                .expect("masked batch gives the bagging loss"),
        );
        let bce = vals(bce_with_logits(out.output.logits, y));
        for (a, b) in bag.iter().zip(&bce) {
            assert!((a - b).abs() < 1e-5, "{bag:?} vs {bce:?}");
        }
    }

    struct Grads<'a> {
        grads: &'a burn::tensor::Gradients,
        nonzero: usize,
        total: usize,
    }

    impl burn::module::ModuleVisitor for Grads<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.total += 1;
            if let Some(g) = p.val().grad(self.grads) {
                let v = g.into_data().try_to_vec::<f32>().unwrap();
                if v.iter().any(|x| *x != 0.0) {
                    self.nonzero += 1;
                }
            }
        }
    }

    #[test]
    fn unmasked_training_batches_run_in_one_pass() {
        // With the domain read from a field, the routing is the only thing the domain ids
        // change. Without masks a mixed batch must give the same training-mode outputs as the
        // same rows in one domain: BatchNorm normalises over the whole batch, not over each
        // domain's rows (domain 1 has a single row here, which per-domain BN maps to zero).
        let dev = cpu().autodiff();
        let mut ctx = ModelContext::uniform(3, 10, 4, 1, 2, 2);
        ctx.fields[0].roles.push(FieldRole::Domain);
        let cfg = Config {
            mlp: MlpConfig {
                norm: Norm::Batch,
                ..MlpConfig::default()
            },
            ..Aread::tiny()
        };
        let m = Aread::build(&cfg, &ctx, &mut Rng::new(5), &dev).unwrap();
        let run = |domain: Vec<u32>| {
            vals(
                m.forward(&ctx, &input(&ctx, &dev, domain), &mut Probes::new(false))
                    .logits,
            )
        };
        let mixed = run(vec![0, 0, 1, 0, 0, 0]);
        let one = run(vec![0; 6]);
        for (a, b) in mixed.iter().zip(&one) {
            assert!((a - b).abs() < 1e-5, "{mixed:?} vs {one:?}");
        }
    }

    #[test]
    fn utilisation_probes_are_per_domain_distributions_after_the_mask() {
        let dev = cpu();
        let (mut m, ctx) = tiny_model(&dev);
        let sizes = m.sizes().to_vec();
        // Domain 0: level-2 experts read level-1 expert 0 only; domain 1 unmasked.
        let mut t = Mask::empty(&sizes);
        for n in 0..sizes[1] {
            t.set(1, 0, n, true);
        }
        t.validate();
        m.set_masks(&[Some(t), None]).unwrap();
        let x = input(&ctx, &dev, vec![0, 1, 0, 1, 1]);
        let mut probes = Probes::new(true);
        m.forward(&ctx, &x, &mut probes);
        let get = |d: usize, l: usize| {
            let v = &probes.values()[&format!("gate/{}/l{l}", ctx.domains[d])];
            (v.dims(), vals(v.clone()))
        };
        for (d, rows) in [(0, 2), (1, 3)] {
            for l in 1..=sizes.len() {
                let width = if l == 1 {
                    m.mmoe_experts.len()
                } else {
                    sizes[l - 2]
                };
                let (dims, v) = get(d, l);
                assert_eq!(dims, [rows, width], "domain {d} level {l}");
                for r in v.chunks(width) {
                    let sum: f32 = r.iter().sum();
                    assert!((sum - 1.0).abs() < 1e-5, "weights sum to {sum}");
                }
            }
        }
        // The mask sends all of domain 0's level-2 weight to level-1 expert 0.
        let (_, v) = get(0, 2);
        assert!(
            v.chunks(sizes[0]).all(|r| (r[0] - 1.0).abs() < 1e-5),
            "{v:?}"
        );
        let (_, v) = get(1, 2);
        assert!(v.chunks(sizes[0]).all(|r| r[0] < 0.999), "{v:?}");
    }

    #[test]
    fn masked_out_experts_get_no_gradient_and_masks_none() {
        let dev = cpu().autodiff();
        let (mut m, ctx) = tiny_model(&dev);
        let sizes = m.sizes().to_vec();
        // Level-2 experts 0 and 1 active (from level-1 expert 0 only); 2 and 3 masked out.
        let mut t = Mask::empty(&sizes);
        t.set(1, 0, 0, true);
        t.set(1, 0, 1, true);
        t.validate();
        m.set_masks(&[Some(t.clone()), Some(t)]).unwrap();
        let x = input(&ctx, &dev, vec![0, 1, 0, 1, 1]);
        let y = init::tensor(vec![1.0; 10], [5, 2], &dev);
        let out = m.forward_train(&ctx, &x, &y, &mut Probes::new(false));
        let grads = out.element_loss.unwrap().sum().backward();
        let check = |module: &dyn Fn(&mut Grads)| {
            let mut g = Grads {
                grads: &grads,
                nonzero: 0,
                total: 0,
            };
            module(&mut g);
            (g.nonzero, g.total)
        };
        for n in [2, 3] {
            let (nz, total) = check(&|g| m.levels[1].experts[n].visit(g));
            assert!(total > 0);
            assert_eq!(nz, 0, "masked-out level-2 expert {n} got a gradient");
            let (nz, _) = check(&|g| m.levels[1].gates[n].visit(g));
            assert_eq!(nz, 0, "gate of masked-out expert {n} got a gradient");
        }
        let (nz, _) = check(&|g| m.levels[0].experts[1].visit(g));
        assert_eq!(nz, 0, "masked-out level-1 expert got a gradient");
        let (nz, total) = check(&|g| m.levels[1].experts[0].visit(g));
        assert_eq!(nz, total, "an active expert must get gradients");
        assert!(
            m.masks.val().grad(&grads).is_none(),
            "the mask tensor got a gradient"
        );
    }

    #[test]
    fn bad_configs_are_errors_naming_the_key() {
        let ctx = ModelContext::uniform(3, 10, 4, 1, 2, 1);
        let dev = cpu();
        let bad = [
            Config {
                level_dims: vec![vec![8]],
                ..Aread::tiny()
            },
            Config {
                levels: vec![],
                level_dims: vec![],
                ..Aread::tiny()
            },
            Config {
                hemp: HempConfig {
                    init_active: 1.5,
                    ..HempConfig::default()
                },
                ..Aread::tiny()
            },
        ];
        for (cfg, key) in bad.iter().zip(["level_dims", "levels", "init_active"]) {
            let err = Aread::build(cfg, &ctx, &mut Rng::new(1), &dev)
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn logit_of_mean_is_stable_and_exact() {
        let dev = cpu();
        let z = [-50.0f32, -2.0, 0.3, 4.0, 60.0];
        let t = init::tensor(z.to_vec(), [1, 1, 5], &dev);
        let got = logit_of_mean_sigmoid(t)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()[0];
        let p: f64 = z
            .iter()
            .map(|&v| 1.0 / (1.0 + (-(v as f64)).exp()))
            .sum::<f64>()
            / 5.0;
        let want = (p / (1.0 - p)).ln();
        assert!((got as f64 - want).abs() < 1e-5, "{got} vs {want}");
        let t = init::tensor(vec![100.0, 120.0], [1, 1, 2], &dev);
        let got = logit_of_mean_sigmoid(t)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()[0];
        assert!(got.is_finite() && got > 99.0, "{got}");
    }
}
