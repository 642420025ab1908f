//! PLE — Tang et al., "Progressive Layered Extraction (PLE): A Novel Multi-Task Learning (MTL)
//! Model for Personalized Recommendations", RecSys 2020. Multi-domain multi-task form: the heads
//! of the paper's tasks are the (domain, task) pairs (`heads = "domain_task"`, the default) or the
//! tasks shared by every domain (`heads = "task"`). `num_levels` stacked CGC levels, each with
//! `specific_experts` experts per head and `shared_experts` shared experts, then a tower per head.
//!
//! Reference implementation: torch-rechub `models/multi_task/ple.py`, Scenario-Wise-Rec
//! `models/multi_domain/ple.py`.
//! Deviations from reference: gates default to the paper's `softmax(Linear(x))`
//! (`gate = "linear_bn"` gives torch-rechub's BN-before-softmax); shared experts run once on the
//! whole batch, a head's specific experts, gate and tower only on its domain's rows (the
//! references run every head on the whole batch); consequently, with `heads = "domain_task"`,
//! the shared gate of a level ℓ < L is one gate per domain that mixes the specific experts of
//! *that domain's* heads and the shared experts (the references mix the specific experts of
//! every head, evaluated also on rows of other domains). With `heads = "task"` the shared gate is
//! exactly the paper's (all `T·specific_experts + shared_experts` experts). `shared_gate =
//! "shared_only"` is the FuxiCTR/STEM variant whose shared gate covers only the shared experts
//! (docs/models.md, a compat flag for STEM's PLE numbers; STEM's unused last-level shared
//! output is not computed). Outputs are logits.
//! Defaults: `specific_experts = 1`, `shared_experts = 2`, `expert_dims = [64, 32]`,
//! `tower_dims = [16]`, one level — between Scenario-Wise-Rec's KuaiRand/MIND setting
//! (`[64, 32]`, tower `[16]`, 2 specific + 1 shared) and STEM's (1 specific, several shared);
//! \[INFERRED\] for MovieLens-1M.
//!
//! Probes: `gate/<domain>/<task>` (`[n_d, specific + shared]`, last level),
//! `gate/<level>/<domain>/<task>` for earlier levels and `shared_gate/<level>/<domain>`
//! (`[n_d, width]`) for the shared gates (`<domain>` is `all` with `heads = "task"`).

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use mdrec_data::rng::Rng;
use mdrec_nn::layers::mix;
use mdrec_nn::{Gate, GateKind, Mlp, MlpConfig, ModelContext, ModelInput};
use serde::{Deserialize, Serialize};

use crate::blocks::heads::{HeadLayout, Heads, HeadsConfig};
use crate::model::{model_config, Built, Invalid, ModelOutput, Probes, RecModel, ZooModel};

/// Which experts the shared gate of a level ℓ < L mixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SharedGate {
    /// Every expert the row reaches: specific experts of the heads plus shared experts (the PLE
    /// paper, torch-rechub).
    #[default]
    All,
    /// Only the shared experts (FuxiCTR / STEM `CGC_Layer`, docs/models.md).
    SharedOnly,
}

model_config! {
    /// Config of [`Ple`].
    pub struct Config {
        /// Number of stacked CGC levels (L).
        num_levels: usize = 1 => 2,
        /// Specific experts per head and level.
        specific_experts: usize = 1 => 1,
        /// Shared experts per level.
        shared_experts: usize = 2 => 1,
        /// Expert MLP widths (every expert of every level).
        expert_dims: Vec<usize> = vec![64, 32] => vec![8],
        /// Gate form.
        gate: GateKind = GateKind::Linear,
        /// Output heads: tower layout and tower hidden widths.
        heads: HeadsConfig = HeadsConfig::new(HeadLayout::DomainTask, vec![16]) => HeadsConfig::new(HeadLayout::DomainTask, vec![4]),
        /// Hidden-layer options for experts and towers.
        mlp: MlpConfig = MlpConfig::default(),
        /// Experts mixed by the shared gate of levels ℓ < L.
        shared_gate: SharedGate = SharedGate::All,
    }
}

/// One CGC level.
#[derive(Module, Debug)]
pub struct CgcLevel {
    /// Specific experts, head `h`'s `j`-th at `h · m_s + j`.
    specific: Vec<Mlp>,
    /// Shared experts.
    shared: Vec<Mlp>,
    /// One gate per head over `m_s + m_sh` experts.
    gates: Vec<Gate>,
    /// One shared gate per row group (empty at the last level).
    shared_gates: Vec<Gate>,
}

/// Progressive layered extraction.
#[derive(Module, Debug)]
pub struct Ple {
    levels: Vec<CgcLevel>,
    heads: Heads,
    #[module(skip)]
    n_tasks: usize,
    #[module(skip)]
    m_s: usize,
    #[module(skip)]
    shared_gate: SharedGate,
}

impl ZooModel for Ple {
    const NAME: &'static str = "ple";
    const PAPER: &'static str = "Tang et al., Progressive Layered Extraction (PLE): A Novel Multi-Task Learning (MTL) Model for Personalized Recommendations, RecSys 2020";
    type Config = Config;

    fn build(cfg: &Config, ctx: &ModelContext, rng: &mut Rng, device: &Device) -> Built<Self> {
        let invalid = Invalid;
        if cfg.num_levels == 0 {
            return Err(invalid("num_levels must be ≥ 1".into()));
        }
        if cfg.specific_experts + cfg.shared_experts == 0 {
            return Err(invalid(
                "specific_experts + shared_experts must be ≥ 1 (a head gate needs an expert)"
                    .into(),
            ));
        }
        if cfg.expert_dims.is_empty() {
            return Err(invalid("expert_dims must not be empty".into()));
        }
        let groups = cfg.heads.n_groups(ctx);
        let n_heads = groups * ctx.n_tasks();
        if n_heads < 2 {
            return Err(invalid(format!(
                "PLE needs at least 2 heads, got {n_heads} ({} domain(s) × {} task(s) with \
                 heads = {:?}): with one head there is nothing to share or separate, use `mmoe` \
                 or `shared_bottom`",
                ctx.n_domains(),
                ctx.n_tasks(),
                cfg.heads.layout
            )));
        }
        let shared_width = match cfg.shared_gate {
            SharedGate::All => ctx.n_tasks() * cfg.specific_experts + cfg.shared_experts,
            SharedGate::SharedOnly => cfg.shared_experts,
        };
        if cfg.num_levels > 1 && shared_width == 0 {
            return Err(invalid(
                "shared_gate = \"shared_only\" with shared_experts = 0 leaves the shared gate of \
                 levels < num_levels without experts"
                    .into(),
            ));
        }
        let m = cfg.specific_experts + cfg.shared_experts;
        let mut levels = Vec::with_capacity(cfg.num_levels);
        let mut d_in = ctx.input_dim();
        let mut h_dim = d_in;
        for level in 0..cfg.num_levels {
            let mut expert = || Mlp::new(d_in, &cfg.expert_dims, &cfg.mlp, rng, device);
            let specific: Vec<Mlp> = (0..n_heads * cfg.specific_experts)
                .map(|_| expert())
                .collect();
            let shared: Vec<Mlp> = (0..cfg.shared_experts).map(|_| expert()).collect();
            h_dim = specific
                .first()
                .or(shared.first())
                .expect("at least one expert")
                .out_dim();
            let gates = (0..n_heads)
                .map(|_| Gate::new(d_in, m, cfg.gate, rng, device))
                .collect();
            let shared_gates = if level + 1 < cfg.num_levels {
                (0..groups)
                    .map(|_| Gate::new(d_in, shared_width, cfg.gate, rng, device))
                    .collect()
            } else {
                Vec::new()
            };
            levels.push(CgcLevel {
                specific,
                shared,
                gates,
                shared_gates,
            });
            d_in = h_dim;
        }
        let heads = Heads::new(&cfg.heads, ctx, h_dim, &cfg.mlp, rng, device);
        Ok(Ple {
            levels,
            heads,
            n_tasks: ctx.n_tasks(),
            m_s: cfg.specific_experts,
            shared_gate: cfg.shared_gate,
        })
    }
}

impl Ple {
    /// Rows of row group `g` (a domain, or every row with one group).
    fn rows(&self, input: &ModelInput, x: Tensor<2>, g: usize) -> Tensor<2> {
        match self.heads.layout() {
            HeadLayout::DomainTask => input.rows_of(x, g),
            HeadLayout::Task => x,
        }
    }

    /// Assemble per-group outputs in batch order.
    fn route(&self, input: &ModelInput, f: impl FnMut(usize) -> Tensor<2>) -> Tensor<2> {
        match self.heads.layout() {
            HeadLayout::DomainTask => input.route(f),
            HeadLayout::Task => {
                let mut f = f;
                f(0)
            }
        }
    }
}

fn group_name(ctx: &ModelContext, layout: HeadLayout, g: usize) -> String {
    match layout {
        HeadLayout::DomainTask => ctx.domains[g].clone(),
        HeadLayout::Task => "all".to_string(),
    }
}

impl RecModel for Ple {
    /// # Shapes
    /// Head `h = g · T + t` belongs to row group `g` (domain `g` with `heads = "domain_task"`,
    /// all rows with `heads = "task"`); `n_g` = rows of group `g`, `E` = expert width.
    /// - level 1: `x_sh = x: [B, D_in]`, `x_h = rows of x: [n_g, D_in]`
    /// - shared experts on all rows `[B, m_sh, E]`; specific experts of head `h` on its group's
    ///   rows `[n_g, m_s, E]`; head gate `[n_g, m_s + m_sh]` → `out_h: [n_g, E]`
    /// - shared gate (ℓ < L), per group on its rows: `[n_g, T·m_s + m_sh]` ("all") or
    ///   `[n_g, m_sh]` ("shared_only") → per-group `out_sh` routed back to batch order `[B, E]`,
    ///   the next level's `x_sh`. The next level's `x_h` is `out_h` (`[n_g, E]`), so a head's
    ///   specific experts never see rows of another domain at any level.
    /// - towers on `out_h` of level L `[n_g, E]` → logits `[B, T]`
    fn forward(&self, ctx: &ModelContext, input: &ModelInput, probes: &mut Probes) -> ModelOutput {
        let t_n = self.n_tasks;
        let m_s = self.m_s;
        let layout = self.heads.layout();
        let n_groups = self.heads.n_groups();
        let n_heads = n_groups * t_n;
        let last = self.levels.len() - 1;
        let present = |g: usize| layout == HeadLayout::Task || input.routing.counts[g] > 0;

        let x = input.flat();
        let mut x_sh = x.clone();
        // Per-head inputs on the group's rows; `None` for groups without rows in this batch.
        let mut x_h: Vec<Option<Tensor<2>>> = (0..n_heads)
            .map(|h| {
                let g = h / t_n;
                present(g).then(|| self.rows(input, x.clone(), g))
            })
            .collect();

        for (l, level) in self.levels.iter().enumerate() {
            let shared: Vec<Tensor<2>> = level
                .shared
                .iter()
                .map(|e| e.forward(x_sh.clone()))
                .collect();
            let shared: Option<Tensor<3>> = (!shared.is_empty()).then(|| Tensor::stack(shared, 1));
            let mut out_h: Vec<Option<Tensor<2>>> = vec![None; n_heads];
            let mut group_step = |g: usize| -> Option<Tensor<2>> {
                let shared_g = shared.clone().map(|s| {
                    let [b, k, e] = s.dims();
                    let s2: Tensor<2> = s.reshape([b, k * e]);
                    let s2 = self.rows(input, s2, g);
                    let n = s2.dims()[0];
                    s2.reshape([n, k, e])
                });
                let mut group_specific: Vec<Tensor<2>> = Vec::new();
                for t in 0..t_n {
                    let h = g * t_n + t;
                    let xh = x_h[h].clone().expect("head input of a present group");
                    let mut experts: Vec<Tensor<2>> = level.specific[h * m_s..(h + 1) * m_s]
                        .iter()
                        .map(|e| e.forward(xh.clone()))
                        .collect();
                    let gate = level.gates[h].forward(xh);
                    probes.record(
                        || {
                            let gn = group_name(ctx, layout, g);
                            if l == last {
                                crate::ProbeKey::HeadGate {
                                    domain: gn,
                                    task: ctx.tasks[t].clone(),
                                }
                            } else {
                                crate::ProbeKey::LevelGate {
                                    level: l + 1,
                                    unit: format!("{gn}/{}", ctx.tasks[t]),
                                }
                            }
                        },
                        || gate.clone(),
                    );
                    if l < last && self.shared_gate == SharedGate::All {
                        group_specific.extend(experts.iter().cloned());
                    }
                    let mut stacked: Option<Tensor<3>> = (!experts.is_empty())
                        .then(|| Tensor::stack(std::mem::take(&mut experts), 1));
                    if let Some(s) = &shared_g {
                        stacked = Some(match stacked {
                            Some(sp) => Tensor::cat(vec![sp, s.clone()], 1),
                            None => s.clone(),
                        });
                    }
                    out_h[h] = Some(mix(stacked.expect("at least one expert"), gate));
                }
                if l == last {
                    return None;
                }
                let xs = self.rows(input, x_sh.clone(), g);
                let gate = level.shared_gates[g].forward(xs);
                probes.record(
                    || {
                        crate::ProbeKey::other(format!(
                            "shared_gate/{}/{}",
                            l + 1,
                            group_name(ctx, layout, g)
                        ))
                    },
                    || gate.clone(),
                );
                let mut parts = group_specific;
                if let Some(s) = &shared_g {
                    let [n, k, e] = s.dims();
                    parts.extend(
                        s.clone()
                            .chunk(k, 1)
                            .into_iter()
                            .map(|c: Tensor<3>| c.reshape([n, e])),
                    );
                }
                Some(mix(Tensor::stack(parts, 1), gate))
            };
            if l < last {
                x_sh = self.route(input, |g| group_step(g).expect("shared output"));
            } else {
                for g in (0..n_groups).filter(|&g| present(g)) {
                    group_step(g);
                }
            }
            x_h = out_h;
        }

        let logits = self.heads.forward(input, |group, t| {
            let g = group.unwrap_or(0);
            x_h[g * t_n + t]
                .clone()
                .expect("head output of a present group")
        });
        ModelOutput::from(logits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mdrec_nn::device::cpu;

    use crate::testing::random_input as input;

    #[test]
    fn rejects_a_single_head() {
        let dev = cpu();
        let ctx = ModelContext::uniform(3, 10, 4, 0, 1, 1);
        let err = Ple::build(&Ple::tiny(), &ctx, &mut Rng::new(1), &dev).unwrap_err();
        assert!(err.to_string().contains("at least 2 heads"), "{err}");
        // One task shared by three domains is one head with `heads = "task"` ...
        let ctx = ModelContext::uniform(3, 10, 4, 0, 3, 1);
        let cfg = Config {
            heads: HeadsConfig::new(HeadLayout::Task, vec![4]),
            ..Ple::tiny()
        };
        let err = Ple::build(&cfg, &ctx, &mut Rng::new(1), &dev).unwrap_err();
        assert!(
            err.to_string()
                .contains("at least 2 heads, got 1 (3 domain(s) × 1 task(s)"),
            "{err}"
        );
        // ... and three heads per (domain, task).
        assert!(Ple::build(&Ple::tiny(), &ctx, &mut Rng::new(1), &dev).is_ok());
    }

    #[test]
    fn rejects_empty_configs() {
        let dev = cpu();
        let ctx = ModelContext::uniform(3, 10, 4, 0, 2, 2);
        for (cfg, want) in [
            (
                Config {
                    num_levels: 0,
                    ..Ple::tiny()
                },
                "num_levels must be ≥ 1",
            ),
            (
                Config {
                    specific_experts: 0,
                    shared_experts: 0,
                    ..Ple::tiny()
                },
                "specific_experts + shared_experts must be ≥ 1",
            ),
            (
                Config {
                    expert_dims: vec![],
                    ..Ple::tiny()
                },
                "expert_dims must not be empty",
            ),
        ] {
            let Err(Invalid(e)) = Ple::build(&cfg, &ctx, &mut Rng::new(1), &dev) else {
                panic!("{want}: built");
            };
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn shared_gate_width_follows_the_flag() {
        let dev = cpu();
        let ctx = ModelContext::uniform(3, 10, 4, 1, 3, 2);
        let domain = [0u32, 1, 2, 1, 0, 2, 2];
        let inp = input(&ctx, &domain, 5, &dev);
        let width = |flag: SharedGate| {
            let cfg = Config {
                num_levels: 2,
                specific_experts: 2,
                shared_experts: 3,
                shared_gate: flag,
                ..Ple::tiny()
            };
            let m = Ple::build(&cfg, &ctx, &mut Rng::new(3), &dev).unwrap();
            let mut probes = Probes::new(true);
            let out = m.forward(&ctx, &inp, &mut probes);
            assert_eq!(out.logits.dims(), [domain.len(), 2]);
            let g = &probes.values()["shared_gate/1/d1"];
            // Head gates cover own specific + shared experts.
            assert_eq!(probes.values()["gate/1/d1/t0"].dims(), [2, 5]);
            (g.dims(), m.num_params())
        };
        // T · m_s + m_sh = 2 · 2 + 3 with "all", m_sh = 3 with "shared_only".
        let (all, p_all) = width(SharedGate::All);
        let (only, p_only) = width(SharedGate::SharedOnly);
        assert_eq!(all, [2, 7]);
        assert_eq!(only, [2, 3]);
        // Three per-domain shared gates of one level, 4 more outputs each on 13 + 1 weights.
        assert_eq!(p_all - p_only, 3 * 4 * (ctx.input_dim() + 1));
    }

    #[test]
    fn shared_gate_width_with_task_heads() {
        let dev = cpu();
        let ctx = ModelContext::uniform(3, 10, 4, 0, 3, 2);
        let domain = [0u32, 1, 2, 1];
        let inp = input(&ctx, &domain, 6, &dev);
        for (flag, w) in [(SharedGate::All, 2 * 2 + 3), (SharedGate::SharedOnly, 3)] {
            let cfg = Config {
                num_levels: 3,
                specific_experts: 2,
                shared_experts: 3,
                shared_gate: flag,
                heads: HeadsConfig::new(HeadLayout::Task, vec![4]),
                ..Ple::tiny()
            };
            let m = Ple::build(&cfg, &ctx, &mut Rng::new(3), &dev).unwrap();
            let mut probes = Probes::new(true);
            let out = m.forward(&ctx, &inp, &mut probes);
            assert_eq!(out.logits.dims(), [4, 2]);
            assert_eq!(probes.values()["shared_gate/2/all"].dims(), [4, w]);
            assert!(!probes.values().contains_key("shared_gate/3/all"));
            assert_eq!(probes.values()["gate/all/t1"].dims(), [4, 5]);
        }
    }
}
