//! AdaTT — Li et al., "AdaTT: Adaptive Task-to-Task Fusion Network for Multitask Learning in
//! Recommendations", KDD 2023. Two registered models share this file's code:
//!
//! - `adatt_sp`: **AdaTT-sp**, task-specific units only.
//! - `adatt`: **AdaTT** (the paper's general form), task-specific units plus one shared unit.
//!
//! M3oE (§3.2) uses both as baselines ("AdaTT refers to the overall approach that involves both
//! task-specific and shared modules. AdaTT-sp refers to the version without the shared module").
//!
//! # Structure
//! `L = expert_dims.len()` extraction levels. A **unit** owns `task_experts` experts (the shared
//! unit `shared_experts`), a gate and an input slot; at level 1 every slot is the flat input
//! `x = E ⊕ dense`. At each level:
//! - every expert reads its own unit's slot: `o_{u,j} = Expert_{u,j}(x_u)` (`Linear → ReLU`
//!   per width of the level, the reference's `MLP`);
//! - every unit's gate reads its slot and mixes **all** experts of the level (own, other units',
//!   shared): `g_u = softmax(Linear(x_u))`, `f_u = Σ_k g_u[k] · o_k`;
//! - native-expert residual (`self_exp_res_connect`, on by default):
//!   `f_u += Σ_j w_{u,j} · o_{u,j}` with `w_u = 1` (constant) or learned `W_self`, initialised
//!   `U(−√(1/c_u), +√(1/c_u))` for a unit of `c_u` experts;
//! - the next level's slot of unit `u` is `f_u`. The shared unit has a gate (and a residual)
//!   only at levels ℓ < L, as in the reference; at level L only the task units fuse.
//!
//! Towers ([`Heads`]) read the level-L output of their unit.
//!
//! **Units** (`units`): the AdaTT "tasks" of the multi-domain multi-task setting.
//! - `"task"` (default): one unit per task, shared by every domain; head (d, t) — or the task-t
//!   head with `heads = "task"` — reads unit t.
//! - `"domain_task"`: one unit per (domain, task) cell, i.e. AdaTT with the `S·T` cells as its
//!   tasks: every unit's experts and gates run on every row (so a cell's experts are fused into
//!   other domains' cells, which is what task-to-task fusion means here), except that at level L
//!   the gate of cell (d, t) is evaluated only on domain d's rows, the only rows its tower sees.
//!   Cost grows with `S·T`.
//!
//! **Residual rule** (which units get the constant 1 and which a learned `W_self`) follows the
//! reference classes: AdaTT-sp (`AdaTTSp`) learns `W_self` when `task_experts > 1` and adds the
//! native expert itself otherwise; AdaTT (`AdaTTWSharedExps`) uses the constant 1 only when every
//! unit, the shared one included, has exactly one expert, and learns `W_self` for every unit
//! otherwise (a one-expert unit then gets a learned scalar).
//!
//! Reference implementation: `facebookresearch/AdaTT` `mtl_lib.py` (`AdaTTSp`,
//! `AdaTTWSharedExps`, `CentralTaskArch`), commit `0efdd82`.
//! Deviations from reference: the reference adds AdaTT's residual to the gate weights
//! (`gates[:, u, own] += w_u`, then `gates @ experts`) and AdaTT-sp's to the fused output
//! (`+ einsum(W_self, own experts)`); both are `(G + R)·O = G·O + R·O`, computed here one way
//! (added to the output) for both. Units may be (domain, task) cells (see above); towers are
//! per (domain, task) or per task ([`HeadLayout`]); level-L gates of (domain, task) units run on
//! their domain's rows only; gates may be `linear_bn`; experts and towers take the shared
//! [`MlpConfig`] (default `Linear → ReLU`, as the reference); numeric inputs are part of `x`;
//! outputs are logits. Defaults: `task_experts = 1`, `shared_experts = 1` and
//! `self_exp_res_connect = true` are the reference's `MtlConfigs`; `expert_dims = [[128], [64]]`
//! (two fusion levels with the widths of [`crate::multitask::mmoe`]'s experts) and `tower_dims = [32]` are
//! \[INFERRED\] (neither paper nor M3oE gives sizes). M3oE runs AdaTT in its "-MTL" group (one
//! model per domain): `--set train.setting=mtl` reproduces that; the default is MDMT.
//!
//! Probes (levels numbered from 1; `<unit>` is the task, `<domain>/<task>` for cell units, or
//! `shared`): `expert/<level>/<unit>/<j>` (`[B, H_ℓ]`), `gate/<level>/<unit>` (softmax weights
//! over every expert of the level, `[n, N_ℓ]`), `fused/<level>/<unit>` (`f_u` with residual,
//! `[n, H_ℓ]`); `n = B` except for cell units at level L (`n_d`).

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};
use mdrec_data::rng::Rng;
use mdrec_nn::init;
use mdrec_nn::layers::mix;
use mdrec_nn::{Gate, GateKind, Mlp, MlpConfig, ModelContext, ModelInput};
use serde::{Deserialize, Serialize};

use crate::blocks::heads::{HeadLayout, Heads, HeadsConfig};
use crate::model::{
    model_config, Built, Invalid, ModelConfig, ModelOutput, Probes, RecModel, ZooModel,
};

/// What an AdaTT task unit is in the multi-domain multi-task setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Units {
    /// One unit per task, shared by every domain.
    #[default]
    Task,
    /// One unit per (domain, task) cell.
    DomainTask,
}

/// The native-expert residual of a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Residual {
    /// No residual (`self_exp_res_connect = false`).
    Off,
    /// `+ Σ_j o_{u,j}` (constant weight 1).
    Unit,
    /// `+ Σ_j W_self[u, j] · o_{u,j}`, `W_self` learned.
    Learned,
}

model_config! {
    /// Config of [`Adatt`].
    pub struct AdattConfig {
        /// What a task unit is.
        units: Units = Units::Task,
        /// Experts per task unit and level.
        task_experts: usize = 1,
        /// Experts of the shared unit per level.
        shared_experts: usize = 1,
        /// Expert widths, one list per extraction level (the reference's `expert_out_dims`).
        expert_dims: Vec<Vec<usize>> = vec![vec![128], vec![64]] => vec![vec![8], vec![6]],
        /// Gate form.
        gate: GateKind = GateKind::Linear,
        /// Output heads: tower layout and tower hidden widths.
        heads: HeadsConfig = HeadsConfig::new(HeadLayout::DomainTask, vec![32]) => HeadsConfig::new(HeadLayout::DomainTask, vec![4]),
        /// Native-expert residual (the reference insists it stays on).
        self_exp_res_connect: bool = true,
        /// Hidden-layer options for experts and towers.
        mlp: MlpConfig = MlpConfig::default(),
    }
}

/// Config of [`AdattSp`]: [`AdattConfig`] without shared experts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdattSpConfig {
    /// What a task unit is.
    pub units: Units,
    /// Experts per task unit and level.
    pub task_experts: usize,
    /// Expert widths, one list per extraction level (the reference's `expert_out_dims`).
    pub expert_dims: Vec<Vec<usize>>,
    /// Gate form.
    pub gate: GateKind,
    /// Output heads: tower layout and tower hidden widths.
    pub heads: HeadsConfig,
    /// Native-expert residual (the reference insists it stays on).
    pub self_exp_res_connect: bool,
    /// Hidden-layer options for experts and towers.
    pub mlp: MlpConfig,
}

impl Default for AdattSpConfig {
    fn default() -> Self {
        let g = AdattConfig::default();
        AdattSpConfig {
            units: g.units,
            task_experts: g.task_experts,
            expert_dims: g.expert_dims,
            gate: g.gate,
            heads: g.heads,
            self_exp_res_connect: g.self_exp_res_connect,
            mlp: g.mlp,
        }
    }
}

impl AdattSpConfig {
    /// The general config with no shared unit and AdaTT-sp's residual rule.
    fn general(&self) -> (AdattConfig, Residual) {
        let residual = match (self.self_exp_res_connect, self.task_experts) {
            (false, _) => Residual::Off,
            (true, 1) => Residual::Unit,
            (true, _) => Residual::Learned,
        };
        let cfg = AdattConfig {
            units: self.units,
            task_experts: self.task_experts,
            shared_experts: 0,
            expert_dims: self.expert_dims.clone(),
            gate: self.gate,
            heads: self.heads.clone(),
            self_exp_res_connect: self.self_exp_res_connect,
            mlp: self.mlp.clone(),
        };
        (cfg, residual)
    }
}

/// One extraction level.
#[derive(Module, Debug)]
pub struct Level {
    /// Experts: unit `u`'s `j`-th at `u · m + j`, then the shared unit's.
    experts: Vec<Mlp>,
    /// One gate per fusing unit (task units, then the shared unit below the last level).
    gates: Vec<Gate>,
    /// Learned `W_self` row `[1, c_u]` per fusing unit (empty unless [`Residual::Learned`]).
    self_w: Vec<Param<Tensor<2>>>,
}

/// The AdaTT network behind [`Adatt`] and [`AdattSp`].
#[derive(Module, Debug)]
pub struct AdattNet {
    levels: Vec<Level>,
    heads: Heads,
    #[module(skip)]
    units: Units,
    #[module(skip)]
    residual: Residual,
    /// Number of task units.
    #[module(skip)]
    n_units: usize,
    /// Experts per task unit.
    #[module(skip)]
    m: usize,
    /// Experts of the shared unit (0: none).
    #[module(skip)]
    m_sh: usize,
    #[module(skip)]
    n_tasks: usize,
}

impl AdattNet {
    /// Build from the general config; `residual` is the variant's rule.
    fn new(
        cfg: &AdattConfig,
        residual: Residual,
        ctx: &ModelContext,
        rng: &mut Rng,
        device: &Device,
    ) -> Built<Self> {
        let invalid = Invalid;
        if cfg.expert_dims.is_empty() {
            return Err(invalid(
                "expert_dims must list at least one extraction level, e.g. [[128], [64]]".into(),
            ));
        }
        if let Some(l) = cfg.expert_dims.iter().position(|d| d.is_empty()) {
            return Err(invalid(format!(
                "expert_dims[{l}] is empty: every extraction level needs at least one expert layer"
            )));
        }
        if cfg.expert_dims.iter().flatten().any(|&w| w == 0) {
            return Err(invalid("expert_dims must not contain a width of 0".into()));
        }
        if cfg.task_experts == 0 {
            return Err(invalid(
                "task_experts must be ≥ 1: AdaTT fuses every task unit's own experts".into(),
            ));
        }
        let n_units = match cfg.units {
            Units::Task => ctx.n_tasks(),
            Units::DomainTask => ctx.n_domains() * ctx.n_tasks(),
        };
        if n_units == 0 {
            return Err(invalid("the data has no task (or no domain)".into()));
        }
        let (m, m_sh) = (cfg.task_experts, cfg.shared_experts);
        let n_levels = cfg.expert_dims.len();
        let mut d_in = ctx.input_dim();
        let mut levels = Vec::with_capacity(n_levels);
        for (l, dims) in cfg.expert_dims.iter().enumerate() {
            let experts: Vec<Mlp> = (0..n_units * m + m_sh)
                .map(|_| Mlp::new(d_in, dims, &cfg.mlp, rng, device))
                .collect();
            let fusing = n_units + usize::from(m_sh > 0 && l + 1 < n_levels);
            let n_experts = experts.len();
            let gates = (0..fusing)
                .map(|_| Gate::new(d_in, n_experts, cfg.gate, rng, device))
                .collect();
            let self_w = if residual == Residual::Learned {
                (0..fusing)
                    .map(|u| {
                        let c = if u < n_units { m } else { m_sh };
                        let bound = (1.0 / c as f32).sqrt();
                        init::param(init::uniform(rng, c, bound), [1, c], device)
                    })
                    .collect()
            } else {
                Vec::new()
            };
            d_in = experts[0].out_dim();
            levels.push(Level {
                experts,
                gates,
                self_w,
            });
        }
        let heads = Heads::new(&cfg.heads, ctx, d_in, &cfg.mlp, rng, device);
        Ok(AdattNet {
            levels,
            heads,
            units: cfg.units,
            residual,
            n_units,
            m,
            m_sh,
            n_tasks: ctx.n_tasks(),
        })
    }

    /// Unit (slot) read by expert `j` of a level.
    fn owner(&self, j: usize) -> usize {
        (j / self.m).min(self.n_units)
    }

    /// Experts `[start, start + count)` owned by fusing unit `u`.
    fn own_range(&self, u: usize) -> (usize, usize) {
        if u < self.n_units {
            (u * self.m, self.m)
        } else {
            (self.n_units * self.m, self.m_sh)
        }
    }

    fn unit_name(&self, ctx: &ModelContext, u: usize) -> String {
        if u == self.n_units {
            return "shared".into();
        }
        match self.units {
            Units::Task => ctx.tasks[u].clone(),
            Units::DomainTask => format!(
                "{}/{}",
                ctx.domains[u / self.n_tasks],
                ctx.tasks[u % self.n_tasks]
            ),
        }
    }

    /// The native-expert residual of unit `u` on its (selected) expert outputs.
    ///
    /// # Shapes
    /// - own: `c_u × [n, H]` → `[n, H]`
    fn residual(&self, level: &Level, u: usize, own: Vec<Tensor<2>>) -> Option<Tensor<2>> {
        match self.residual {
            Residual::Off => None,
            Residual::Unit => own.into_iter().reduce(|a, b| a + b),
            Residual::Learned => {
                let st: Tensor<3> = Tensor::stack(own, 1);
                let [n, c, _] = st.dims();
                Some(mix(st, level.self_w[u].val().expand([n, c])))
            }
        }
    }

    /// # Shapes
    /// `U` task units, `N_ℓ = U·m + m_sh` experts of width `H_ℓ` at level ℓ.
    /// - x: `[B, D_in]`; slots `U (+1) × [B, D_ℓ]`; experts `[B, N_ℓ, H_ℓ]`
    /// - gate of unit u `[n, N_ℓ]`; fused `[n, H_ℓ]` (`n = B`, or `n_d` for cell units at level L)
    /// - towers on level-L outputs → logits `[B, T]`
    fn forward(&self, ctx: &ModelContext, input: &ModelInput, probes: &mut Probes) -> ModelOutput {
        let x = input.flat();
        let n_slots = self.n_units + usize::from(self.m_sh > 0);
        let mut slots: Vec<Option<Tensor<2>>> = vec![Some(x); n_slots];
        let last = self.levels.len() - 1;
        for (l, level) in self.levels.iter().enumerate() {
            let outs: Vec<Tensor<2>> = level
                .experts
                .iter()
                .enumerate()
                .map(|(j, e)| {
                    e.forward(
                        slots[self.owner(j)]
                            .clone()
                            .expect("slot of a unit with experts"),
                    )
                })
                .collect();
            for (j, o) in outs.iter().enumerate() {
                let u = self.owner(j);
                let k = j - self.own_range(u).0;
                probes.record(
                    || crate::ProbeKey::GroupExpert {
                        group: format!("{}/{}", l + 1, self.unit_name(ctx, u)),
                        index: k,
                    },
                    || o.clone(),
                );
            }
            let all: Tensor<3> = Tensor::stack(outs.clone(), 1);
            let mut next: Vec<Option<Tensor<2>>> = vec![None; n_slots];
            for (u, gate) in level.gates.iter().enumerate() {
                // Cell units at the last level: only their domain's rows reach their tower.
                let domain =
                    (l == last && self.units == Units::DomainTask).then_some(u / self.n_tasks);
                if domain.is_some_and(|d| input.routing.counts[d] == 0) {
                    continue;
                }
                let sel = |t: Tensor<2>| match domain {
                    Some(d) => input.rows_of(t, d),
                    None => t,
                };
                let g = gate.forward(sel(slots[u].clone().expect("slot of a fusing unit")));
                let all_u = match domain {
                    Some(d) => input.rows_of(all.clone(), d),
                    None => all.clone(),
                };
                let mut f = mix(all_u, g.clone());
                let (start, c) = self.own_range(u);
                let own = outs[start..start + c].iter().cloned().map(sel).collect();
                if let Some(r) = self.residual(level, u, own) {
                    f = f + r;
                }
                probes.record(
                    || crate::ProbeKey::LevelGate {
                        level: l + 1,
                        unit: self.unit_name(ctx, u),
                    },
                    || g,
                );
                probes.record(
                    || {
                        crate::ProbeKey::other(format!(
                            "fused/{}/{}",
                            l + 1,
                            self.unit_name(ctx, u)
                        ))
                    },
                    || f.clone(),
                );
                next[u] = Some(f);
            }
            slots = next;
        }
        let t_n = self.n_tasks;
        let unit_out = |u: usize| slots[u].clone().expect("output of a unit with rows");
        let logits = self
            .heads
            .forward(input, |group, t| match (self.units, group) {
                (Units::Task, Some(d)) => input.rows_of(unit_out(t), d),
                (Units::Task, None) => unit_out(t),
                (Units::DomainTask, Some(d)) => unit_out(d * t_n + t),
                (Units::DomainTask, None) => input.route(|d| unit_out(d * t_n + t)),
            });
        ModelOutput::from(logits)
    }
}

/// AdaTT: task units and a shared unit, fused level by level.
#[derive(Module, Debug)]
pub struct Adatt {
    net: AdattNet,
}

impl ZooModel for Adatt {
    const NAME: &'static str = "adatt";
    const PAPER: &'static str = "Li et al., AdaTT: Adaptive Task-to-Task Fusion Network for Multitask Learning in Recommendations, KDD 2023";
    type Config = AdattConfig;

    fn build(cfg: &AdattConfig, ctx: &ModelContext, rng: &mut Rng, device: &Device) -> Built<Self> {
        if cfg.shared_experts == 0 {
            return Err(Invalid(
                "shared_experts must be ≥ 1 (AdaTT without a shared unit is `adatt_sp`)".into(),
            ));
        }
        let residual = match (
            cfg.self_exp_res_connect,
            cfg.task_experts,
            cfg.shared_experts,
        ) {
            (false, _, _) => Residual::Off,
            (true, 1, 1) => Residual::Unit,
            (true, _, _) => Residual::Learned,
        };
        Ok(Adatt {
            net: AdattNet::new(cfg, residual, ctx, rng, device)?,
        })
    }
}

impl RecModel for Adatt {
    /// # Shapes
    /// - see [`AdattNet`]: x `[B, D_in]` → level outputs `[n, H_ℓ]` → logits `[B, T]`
    fn forward(&self, ctx: &ModelContext, input: &ModelInput, probes: &mut Probes) -> ModelOutput {
        self.net.forward(ctx, input, probes)
    }
}

/// AdaTT-sp: task units only.
#[derive(Module, Debug)]
pub struct AdattSp {
    net: AdattNet,
}

impl ModelConfig for AdattSpConfig {
    fn tiny() -> AdattSpConfig {
        AdattSpConfig {
            expert_dims: vec![vec![8], vec![6]],
            heads: HeadsConfig::new(HeadLayout::DomainTask, vec![4]),
            ..AdattSpConfig::default()
        }
    }
}

impl ZooModel for AdattSp {
    const NAME: &'static str = "adatt_sp";
    const PAPER: &'static str = "Li et al., AdaTT: Adaptive Task-to-Task Fusion Network for Multitask Learning in Recommendations, KDD 2023 (AdaTT-sp)";
    type Config = AdattSpConfig;

    fn build(
        cfg: &AdattSpConfig,
        ctx: &ModelContext,
        rng: &mut Rng,
        device: &Device,
    ) -> Built<Self> {
        let (general, residual) = cfg.general();
        Ok(AdattSp {
            net: AdattNet::new(&general, residual, ctx, rng, device)?,
        })
    }
}

impl RecModel for AdattSp {
    /// # Shapes
    /// - see [`AdattNet`]: x `[B, D_in]` → level outputs `[n, H_ℓ]` → logits `[B, T]`
    fn forward(&self, ctx: &ModelContext, input: &ModelInput, probes: &mut Probes) -> ModelOutput {
        self.net.forward(ctx, input, probes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;
    use mdrec_nn::device::cpu;
    use mdrec_nn::init::tensor;

    use crate::testing::random_input as input;

    fn vals(t: &Tensor<2>) -> Vec<f32> {
        t.clone().into_data().try_to_vec::<f32>().unwrap()
    }

    fn assert_close(a: &Tensor<2>, b: &Tensor<2>, what: &str) {
        assert_eq!(a.dims(), b.dims(), "{what}");
        let (a, b) = (vals(a), vals(b));
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "{what}: {x} vs {y}");
        }
    }

    fn run(
        name: &str,
        over: serde_json::Value,
        ctx: &ModelContext,
        domain: &[u32],
    ) -> (Box<dyn crate::DynModel>, Probes, Tensor<2>) {
        let f = find(name).unwrap();
        let cfg = f.resolve(&over).unwrap();
        let dev = cpu();
        let m = f.build(&cfg, ctx, &mut Rng::new(3), &dev).unwrap();
        let inp = input(ctx, domain, 9, &dev);
        let mut p = Probes::new(true);
        let out = m.forward(ctx, &inp, &mut p);
        assert_eq!(out.logits.dims(), [domain.len(), ctx.n_tasks()]);
        (m, p, out.logits)
    }

    fn stack(p: &Probes, keys: &[String]) -> Tensor<3> {
        Tensor::stack(keys.iter().map(|k| p.values()[k].clone()).collect(), 1)
    }

    /// AdaTT-sp: no shared experts, softmax gates over the `T·m` task experts, and the fused
    /// output of a unit is its mixture plus its own expert (`m = 1`).
    #[test]
    fn sp_output_is_mixture_plus_own_expert() {
        let ctx = ModelContext::uniform(3, 10, 4, 1, 2, 3);
        let domain = [0u32, 1, 1, 0, 1];
        let (_, p, _) = run("adatt_sp", serde_json::json!({}), &ctx, &domain);
        assert!(!p.values().keys().any(|k| k.contains("shared")));
        for l in 1..=2 {
            let keys: Vec<String> = ctx
                .tasks
                .iter()
                .map(|t| format!("expert/{l}/{t}/0"))
                .collect();
            let experts = stack(&p, &keys);
            for t in &ctx.tasks {
                let g = &p.values()[&format!("gate/{l}/{t}")];
                assert_eq!(g.dims(), [5, 3], "one weight per task expert, none shared");
                let sums = vals(&g.clone().sum_dim(1));
                assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
                let want = mix(experts.clone(), g.clone())
                    + p.values()[&format!("expert/{l}/{t}/0")].clone();
                assert_close(&p.values()[&format!("fused/{l}/{t}")], &want, "fused");
            }
        }
    }

    /// With `task_experts > 1` AdaTT-sp learns `W_self`: fused = mixture + Σ_j w_j · own_j, the
    /// weights initialised in ±√(1/m).
    #[test]
    fn sp_learned_self_weights() {
        let ctx = ModelContext::uniform(3, 10, 4, 0, 1, 2);
        let dev = cpu();
        let cfg = AdattSpConfig {
            task_experts: 3,
            ..AdattSp::tiny()
        };
        let m = AdattSp::build(&cfg, &ctx, &mut Rng::new(5), &dev).unwrap();
        assert_eq!(m.net.residual, Residual::Learned);
        let inp = input(&ctx, &[0, 0, 0, 0], 2, &dev);
        let mut p = Probes::new(true);
        m.forward(&ctx, &inp, &mut p);
        for (l, level) in m.net.levels.iter().enumerate() {
            assert_eq!(level.self_w.len(), 2);
            let l = l + 1;
            let all: Vec<String> = (0..2)
                .flat_map(|t| (0..3).map(move |j| format!("expert/{l}/t{t}/{j}")))
                .collect();
            let experts = stack(&p, &all);
            for t in 0..2 {
                let w = vals(&level.self_w[t].val());
                assert!(w.iter().all(|v| v.abs() <= (1.0f32 / 3.0).sqrt()), "{w:?}");
                let g = p.values()[&format!("gate/{l}/t{t}")].clone();
                assert_eq!(g.dims(), [4, 6]);
                let mut want = mix(experts.clone(), g);
                for (j, wj) in w.iter().enumerate() {
                    want = want
                        + p.values()[&format!("expert/{l}/t{t}/{j}")]
                            .clone()
                            .mul_scalar(*wj);
                }
                assert_close(&p.values()[&format!("fused/{l}/t{t}")], &want, "fused");
            }
        }
    }

    /// AdaTT: gates cover task and shared experts; the shared unit fuses only below the last
    /// level; with one expert per unit the residual is the constant 1 on the native expert,
    /// i.e. the effective gate row sums to 2 with the native weight raised by 1.
    #[test]
    fn general_gates_cover_shared_experts_and_add_one_to_native() {
        let ctx = ModelContext::uniform(3, 10, 4, 1, 2, 2);
        let domain = [1u32, 0, 1, 1];
        let (m, p, _) = run("adatt", serde_json::json!({}), &ctx, &domain);
        // Constant residual: no learned weights.
        assert!(!m
            .named_tensors()
            .iter()
            .any(|(n, _, _)| n.contains("self_w")));
        assert!(p.values().contains_key("gate/1/shared"));
        assert!(!p.values().contains_key("gate/2/shared"));
        for l in 1..=2 {
            let mut keys: Vec<String> = ctx
                .tasks
                .iter()
                .map(|t| format!("expert/{l}/{t}/0"))
                .collect();
            keys.push(format!("expert/{l}/shared/0"));
            let experts = stack(&p, &keys);
            let units: Vec<&str> = if l == 1 {
                vec!["t0", "t1", "shared"]
            } else {
                vec!["t0", "t1"]
            };
            for (u, name) in units.iter().enumerate() {
                let g = p.values()[&format!("gate/{l}/{name}")].clone();
                assert_eq!(g.dims(), [4, 3]);
                let sums = vals(&g.clone().sum_dim(1));
                assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5));
                // Reference form: gates[:, u, own] += 1, then gates @ experts.
                let mut one_hot = vec![0.0f32; 3];
                one_hot[u] = 1.0;
                let raised = g + tensor(one_hot, [1, 3], &cpu());
                let sums = vals(&raised.clone().sum_dim(1));
                assert!(sums.iter().all(|s| (s - 2.0).abs() < 1e-5));
                let want = mix(experts.clone(), raised);
                assert_close(&p.values()[&format!("fused/{l}/{name}")], &want, "fused");
            }
        }
    }

    /// The reference's rule: AdaTT learns `W_self` for every unit as soon as any unit (here the
    /// shared one) has more than one expert; AdaTT-sp with one expert per unit never does.
    #[test]
    fn residual_rule_follows_the_reference() {
        let ctx = ModelContext::uniform(2, 10, 4, 0, 2, 2);
        let dev = cpu();
        let g = AdattConfig {
            shared_experts: 2,
            ..Adatt::tiny()
        };
        let m = Adatt::build(&g, &ctx, &mut Rng::new(1), &dev).unwrap();
        assert_eq!(m.net.residual, Residual::Learned);
        // Level 1: two task units [1, 1] and the shared unit [1, 2]; level 2: task units only.
        let shapes: Vec<Vec<[usize; 2]>> = m
            .net
            .levels
            .iter()
            .map(|l| l.self_w.iter().map(|w| w.val().dims()).collect())
            .collect();
        assert_eq!(
            shapes,
            vec![vec![[1, 1], [1, 1], [1, 2]], vec![[1, 1], [1, 1]]]
        );
        let sp = AdattSp::build(&AdattSp::tiny(), &ctx, &mut Rng::new(1), &dev).unwrap();
        assert_eq!(sp.net.residual, Residual::Unit);
        let off = AdattSpConfig {
            self_exp_res_connect: false,
            task_experts: 2,
            ..AdattSp::tiny()
        };
        let sp = AdattSp::build(&off, &ctx, &mut Rng::new(1), &dev).unwrap();
        assert_eq!(sp.net.residual, Residual::Off);
        assert!(sp.net.levels.iter().all(|l| l.self_w.is_empty()));
    }

    /// One task unit with one expert: the gate is identically 1 and the fused output is twice
    /// the expert (MMoE with one expert plus the identity residual); without the residual it is
    /// the expert itself (a shared-bottom).
    #[test]
    fn one_unit_reduces_to_a_doubled_expert() {
        let ctx = ModelContext::uniform(3, 10, 4, 0, 2, 1);
        let domain = [0u32, 1, 1];
        for (res, factor) in [(true, 2.0f32), (false, 1.0)] {
            let over = serde_json::json!({"expert_dims": [[5]], "self_exp_res_connect": res});
            let (_, p, _) = run("adatt_sp", over, &ctx, &domain);
            let g = vals(&p.values()["gate/1/t0"]);
            assert_eq!(g.len(), 3);
            assert!(g.iter().all(|&v| (v - 1.0).abs() < 1e-6), "{g:?}");
            let want = p.values()["expert/1/t0/0"].clone().mul_scalar(factor);
            assert_close(&p.values()["fused/1/t0"], &want, "fused");
        }
    }

    /// Cell units: one unit per (domain, task), gates over every cell's experts; at the last
    /// level a cell's gate runs on its domain's rows only, and an absent domain is skipped.
    #[test]
    fn domain_task_units() {
        let ctx = ModelContext::uniform(3, 10, 4, 1, 3, 2);
        let domain = [2u32, 0, 2, 2, 0];
        for heads in ["domain_task", "task"] {
            let over = serde_json::json!({"units": "domain_task", "heads": {"layout": heads}});
            let (_, p, logits) = run("adatt", over, &ctx, &domain);
            assert!(vals(&logits).iter().all(|v| v.is_finite()));
            // 6 cells × 1 expert + 1 shared.
            assert_eq!(p.values()["gate/1/d1/t0"].dims(), [5, 7]);
            assert_eq!(p.values()["gate/1/shared"].dims(), [5, 7]);
            assert_eq!(p.values()["gate/2/d2/t1"].dims(), [3, 7]);
            assert_eq!(p.values()["gate/2/d0/t0"].dims(), [2, 7]);
            assert!(!p.values().contains_key("gate/2/d1/t0"));
        }
        // Task units: as many units as tasks, whatever the number of domains.
        let (_, p, _) = run("adatt", serde_json::json!({}), &ctx, &domain);
        assert_eq!(p.values()["gate/2/t1"].dims(), [5, 3]);
    }

    #[test]
    fn invalid_configs_are_errors() {
        let ctx = ModelContext::uniform(3, 10, 4, 0, 2, 2);
        let cases = [
            (
                "adatt",
                serde_json::json!({"expert_dims": []}),
                "extraction level",
            ),
            (
                "adatt_sp",
                serde_json::json!({"expert_dims": [[4], []]}),
                "expert_dims[1]",
            ),
            (
                "adatt",
                serde_json::json!({"expert_dims": [[4, 0]]}),
                "width of 0",
            ),
            (
                "adatt_sp",
                serde_json::json!({"task_experts": 0}),
                "task_experts",
            ),
            (
                "adatt",
                serde_json::json!({"shared_experts": 0}),
                "adatt_sp",
            ),
        ];
        for (name, over, msg) in cases {
            let f = find(name).unwrap();
            let cfg = f.resolve(&over).unwrap();
            let err = f
                .build(&cfg, &ctx, &mut Rng::new(1), &cpu())
                .err()
                .expect("error");
            assert!(matches!(err, crate::ModelError::Invalid { .. }), "{err}");
            assert!(err.to_string().contains(msg), "{err}");
        }
        // AdaTT-sp has no shared experts to configure.
        let err = find("adatt_sp")
            .unwrap()
            .resolve(&serde_json::json!({"shared_experts": 1}))
            .unwrap_err();
        assert!(err.to_string().contains("shared_experts"), "{err}");
    }
}
