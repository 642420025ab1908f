//! HiNet — Zhou et al., "HiNet: Novel Multi-Scenario & Multi-Task Learning with Hierarchical
//! Information Extraction", ICDE 2023. Multi-domain (scenario) multi-task:
//!
//! 1. **Scenario extraction layer** on the flat input `x`:
//!    - SEI (sub-expert integration): `SEI(x) = Σ_j g_j · SubExpert_j(x)`, `g = softmax(W x + b)`
//!      over `sub_experts` MLPs (an MMoE with one gate);
//!    - one scenario-*shared* SEI and one scenario-*specific* SEI per domain, all on every row;
//!    - SAN (scenario-aware attentive network): `a = softmax(W_o · MLP(e_s) + b_o) ∈ R^S` from the
//!      row's scenario embedding `e_s`; the current scenario is masked out, **not** renormalised:
//!      `a'_j = a_j · 1[j ≠ s]`, and the transfer representation is `Σ_j a'_j · SEI_j(x)`;
//!    - `r = [transfer ; specific ; shared]` with `specific = SEI_s(x)` of the row's domain `s`.
//! 2. **Task extraction layer**: one CGC level on `r` — `task_experts` specific experts per head,
//!    `shared_experts` shared experts, per-head gate `softmax(Linear(r))` over own + shared
//!    experts — then a tower `MLP(tower_dims) → Linear(1)` per head. With
//!    `heads = "domain_task"` (default) the heads are the (domain, task) pairs, as the official
//!    code (whose "tasks" are scenario × task pairs, e.g. `scernario_a_is_order`); a head's
//!    specific experts, gate and tower run on its domain's rows only. `heads = "task"` gives one
//!    CGC head per task shared by every domain.
//!
//! The scenario embedding `e_s` is the embedding of the schema's field(s) with role `domain`, or a
//! learned per-domain table of width `domain_emb_dim` when the schema has none (see
//! [`DomainEmbedding`], also used by [`crate::multidomain::adasparse`] and [`crate::multidomain::m2m`]).
//!
//! Reference implementation: official TF1 `mrchor/HiNet` `src/HiNet.py`; the MDL-only port in
//! AREAD `model/hinet.py`.
//! Deviations from reference: the CGC gates are a real softmax over the experts (the official
//! `cgc_net` takes the softmax over a singleton axis, so every weight is 1 and the mixture is an
//! unweighted sum — docs/models.md; no compat flag: no published number depends on it);
//! the SEI and CGC gates are `softmax(Linear(x))` without the official ReLU before the softmax;
//! the SAN MLP is `MLP(san_dims) → Linear(S)` with ReLU on the hidden layers only (official:
//! units `[128, 64, 1, S]`, ReLU on every layer including the scenario logits); the current
//! scenario is masked as in the paper and the official code (AREAD's port does not mask it,
//! docs/models.md); no input BatchNorm (the official `tf.layers.batch_normalization` is called
//! without `training=True`, so it only ever applies its initial moving statistics — an affine
//! map); no dropout by default (official 0.5 in SEI sub-experts and towers; `mlp.dropout`);
//! no L2 term (the run's weight decay applies); experts and towers initialised as PyTorch's
//! `nn.Linear` (official: Xavier for SEI sub-experts); one CGC level (`level_number = 1`, the
//! official default); outputs are logits.
//! Defaults (official flags): 5 sub-experts of `[128, 64]` per SEI, SAN hidden `[128, 64]`,
//! 2 specific experts per head and 2 shared experts of `[128, 64]`, towers `[128, 64]`.
//!
//! Probes: `san/<domain>` (masked SAN weights `[n_d, S]`), `sei_gate/shared` and
//! `sei_gate/<domain>` (`[B, sub_experts]`), `transfer`, `specific`, `shared` (`[B, H]`),
//! `gate/<group>/<task>` (CGC gates `[n_g, task_experts + shared_experts]`; `<group>` is the
//! domain, or `all` with `heads = "task"`).

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};
use mdrec_data::rng::Rng;
use mdrec_data::FieldRole;
use mdrec_nn::init::{self, WeightInit};
use mdrec_nn::layers::{linear, mix};
use mdrec_nn::{Gate, GateKind, Mlp, MlpConfig, ModelContext, ModelInput};

use crate::blocks::domain::DomainEmbedding;
use crate::blocks::heads::{HeadLayout, Heads, HeadsConfig};
use crate::model::{model_config, Built, Invalid, ModelOutput, Probes, RecModel, ZooModel};

model_config! {
    /// Config of [`Hinet`].
    pub struct Config {
        /// Sub-experts per SEI module (shared and each scenario-specific one).
        sub_experts: usize = 5 => 2,
        /// Sub-expert MLP widths; the last is the width `H` of the SEI output.
        sei_dims: Vec<usize> = vec![128, 64] => vec![8],
        /// Hidden widths of the SAN MLP (before its `S` scenario logits).
        san_dims: Vec<usize> = vec![128, 64] => vec![4],
        /// Width of the learned per-domain embedding used when the schema has no `domain` field.
        domain_emb_dim: usize = 8,
        /// Specific CGC experts per head.
        task_experts: usize = 2 => 1,
        /// Shared CGC experts.
        shared_experts: usize = 2 => 1,
        /// CGC expert MLP widths.
        expert_dims: Vec<usize> = vec![128, 64] => vec![8],
        /// CGC gate form.
        gate: GateKind = GateKind::Linear,
        /// Output heads: tower layout and tower hidden widths.
        heads: HeadsConfig = HeadsConfig::new(HeadLayout::DomainTask, vec![128, 64]) => HeadsConfig::new(HeadLayout::DomainTask, vec![4]),
        /// Hidden-layer options of sub-experts, SAN, CGC experts and towers.
        mlp: MlpConfig = MlpConfig::default(),
    }
}

/// Sub-expert integration: sub-expert MLPs mixed by one softmax gate on the same input.
#[derive(Module, Debug)]
pub struct Sei {
    experts: Vec<Mlp>,
    gate: Gate,
}

impl Sei {
    fn new(
        d_in: usize,
        n: usize,
        dims: &[usize],
        mlp: &MlpConfig,
        rng: &mut Rng,
        device: &Device,
    ) -> Self {
        let experts = (0..n)
            .map(|_| Mlp::new(d_in, dims, mlp, rng, device))
            .collect();
        let gate = Gate::new(d_in, n, GateKind::Linear, rng, device);
        Sei { experts, gate }
    }

    /// # Shapes
    /// - x: `[N, D_in]` → (output `[N, H]`, gate `[N, n]`)
    fn forward(&self, x: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let outs: Vec<Tensor<2>> = self.experts.iter().map(|e| e.forward(x.clone())).collect();
        let gate = self.gate.forward(x);
        (mix(Tensor::stack(outs, 1), gate.clone()), gate)
    }
}

/// One-hot `[B, S]` of the rows' domains (host-built, no gradient).
pub(crate) fn domain_one_hot(input: &ModelInput, n_domains: usize, device: &Device) -> Tensor<2> {
    let b = input.batch_size;
    let mut v = vec![0.0f32; b * n_domains];
    for (i, &d) in input.domain.iter().enumerate() {
        v[i * n_domains + d as usize] = 1.0;
    }
    init::tensor(v, [b, n_domains], device)
}

/// Hierarchical information extraction network.
#[derive(Module, Debug)]
pub struct Hinet {
    shared_sei: Sei,
    /// One scenario-specific SEI per domain.
    specific: Vec<Sei>,
    domain_emb: DomainEmbedding,
    san: Mlp,
    san_out: Linear,
    /// Specific CGC experts, head `h`'s `j`-th at `h · task_experts + j`.
    task_experts: Vec<Mlp>,
    shared_experts: Vec<Mlp>,
    /// One CGC gate per head.
    gates: Vec<Gate>,
    heads: Heads,
    #[module(skip)]
    n_tasks: usize,
    #[module(skip)]
    m_s: usize,
}

impl ZooModel for Hinet {
    const NAME: &'static str = "hinet";
    const PAPER: &'static str = "Zhou et al., HiNet: Novel Multi-Scenario & Multi-Task Learning with Hierarchical Information Extraction, ICDE 2023";
    type Config = Config;

    fn build(cfg: &Config, ctx: &ModelContext, rng: &mut Rng, device: &Device) -> Built<Self> {
        let invalid = |message: &str| Invalid(message.into());
        if cfg.sub_experts == 0 || cfg.sei_dims.is_empty() {
            return Err(invalid(
                "sub_experts must be ≥ 1 and sei_dims non-empty (an SEI needs a sub-expert)",
            ));
        }
        if cfg.task_experts + cfg.shared_experts == 0 {
            return Err(invalid(
                "task_experts + shared_experts must be ≥ 1 (a CGC gate needs an expert)",
            ));
        }
        if cfg.expert_dims.is_empty() {
            return Err(invalid("expert_dims must not be empty"));
        }
        if cfg.sei_dims.contains(&0)
            || cfg.san_dims.contains(&0)
            || cfg.expert_dims.contains(&0)
            || cfg.heads.tower_dims.contains(&0)
        {
            return Err(invalid("layer widths must be ≥ 1"));
        }
        let s = ctx.n_domains();
        let t_n = ctx.n_tasks();
        let d_in = ctx.input_dim();
        let sei =
            |rng: &mut Rng| Sei::new(d_in, cfg.sub_experts, &cfg.sei_dims, &cfg.mlp, rng, device);
        let shared_sei = sei(rng);
        let specific: Vec<Sei> = (0..s).map(|_| sei(rng)).collect();
        let domain_emb =
            DomainEmbedding::new(ctx, &[FieldRole::Domain], cfg.domain_emb_dim, rng, device)?;
        let san = Mlp::new(domain_emb.dim(), &cfg.san_dims, &cfg.mlp, rng, device);
        let san_out = linear(san.out_dim(), s, WeightInit::TorchDefault, rng, device);
        let h = *cfg.sei_dims.last().expect("non-empty");
        let r_dim = 3 * h;
        let groups = cfg.heads.n_groups(ctx);
        let n_heads = groups * t_n;
        let expert = |rng: &mut Rng| Mlp::new(r_dim, &cfg.expert_dims, &cfg.mlp, rng, device);
        let task_experts: Vec<Mlp> = (0..n_heads * cfg.task_experts)
            .map(|_| expert(rng))
            .collect();
        let shared_experts: Vec<Mlp> = (0..cfg.shared_experts).map(|_| expert(rng)).collect();
        let gates = (0..n_heads)
            .map(|_| {
                Gate::new(
                    r_dim,
                    cfg.task_experts + cfg.shared_experts,
                    cfg.gate,
                    rng,
                    device,
                )
            })
            .collect();
        let e_dim = *cfg.expert_dims.last().expect("non-empty");
        let heads = Heads::new(&cfg.heads, ctx, e_dim, &cfg.mlp, rng, device);
        Ok(Hinet {
            shared_sei,
            specific,
            domain_emb,
            san,
            san_out,
            task_experts,
            shared_experts,
            gates,
            heads,
            n_tasks: t_n,
            m_s: cfg.task_experts,
        })
    }
}

impl Hinet {
    /// Masked SAN weights `a ⊙ (1 − onehot(domain))`.
    ///
    /// # Shapes
    /// - result `[B, S]`; row `i` is 0 at column `domain[i]`, rows sum to `1 − a_domain < 1`
    fn san_weights(&self, ctx: &ModelContext, input: &ModelInput, one_hot: Tensor<2>) -> Tensor<2> {
        let e = self.domain_emb.forward(ctx, input);
        let a = softmax(self.san_out.forward(self.san.forward(e)), 1);
        a * (one_hot.neg().add_scalar(1.0))
    }
}

impl RecModel for Hinet {
    /// # Shapes
    /// - x: `[B, D_in]`; SEI outputs `[B, H]`; specific SEIs stacked `[B, S, H]`
    /// - scenario embedding `[B, k]` → SAN `[B, S]` (own domain masked) → transfer `[B, H]`
    /// - `r = [transfer ; specific ; shared]`: `[B, 3H]`
    /// - CGC head `(g, t)` on group rows: experts `[n_g, m_s + m_sh, E]`, gate
    ///   `[n_g, m_s + m_sh]` → `[n_g, E]` → tower → logits `[B, T]`
    fn forward(&self, ctx: &ModelContext, input: &ModelInput, probes: &mut Probes) -> ModelOutput {
        let x = input.flat();
        let device = x.device();
        let s_n = self.specific.len();
        let (shared, g_shared) = self.shared_sei.forward(x.clone());
        probes.record(|| crate::ProbeKey::other("sei_gate/shared"), || g_shared);
        let spec: Vec<Tensor<2>> = self
            .specific
            .iter()
            .enumerate()
            .map(|(d, sei)| {
                let (out, g) = sei.forward(x.clone());
                probes.record(
                    || crate::ProbeKey::other(format!("sei_gate/{}", ctx.domains[d])),
                    || g,
                );
                out
            })
            .collect();
        let spec: Tensor<3> = Tensor::stack(spec, 1);
        let one_hot = domain_one_hot(input, s_n, &device);
        let san = self.san_weights(ctx, input, one_hot.clone());
        if probes.enabled() {
            for d in (0..s_n).filter(|&d| input.routing.counts[d] > 0) {
                probes.record(
                    || crate::ProbeKey::other(format!("san/{}", ctx.domains[d])),
                    || input.rows_of(san.clone(), d),
                );
            }
        }
        let transfer = mix(spec.clone(), san);
        let specific = mix(spec, one_hot);
        probes.record(|| crate::ProbeKey::other("transfer"), || transfer.clone());
        probes.record(|| crate::ProbeKey::other("specific"), || specific.clone());
        probes.record(|| crate::ProbeKey::other("shared"), || shared.clone());
        let r = Tensor::cat(vec![transfer, specific, shared], 1);

        let sh: Option<Tensor<3>> = (!self.shared_experts.is_empty()).then(|| {
            Tensor::stack(
                self.shared_experts
                    .iter()
                    .map(|e| e.forward(r.clone()))
                    .collect(),
                1,
            )
        });
        let t_n = self.n_tasks;
        let m_s = self.m_s;
        // Rows of the current group, computed once per group (the heads ask task by task).
        let mut cache: Option<(Option<usize>, Tensor<2>, Option<Tensor<3>>)> = None;
        let logits = self.heads.forward(input, |group, t| {
            if cache.as_ref().map(|c| c.0) != Some(group) {
                let (rg, shg) = match group {
                    Some(d) => (
                        input.rows_of(r.clone(), d),
                        sh.clone().map(|s| input.rows_of(s, d)),
                    ),
                    None => (r.clone(), sh.clone()),
                };
                cache = Some((group, rg, shg));
            }
            let (_, rg, shg) = cache.as_ref().expect("filled above");
            let h = group.unwrap_or(0) * t_n + t;
            let own: Vec<Tensor<2>> = self.task_experts[h * m_s..(h + 1) * m_s]
                .iter()
                .map(|e| e.forward(rg.clone()))
                .collect();
            let experts = match (own.is_empty(), shg) {
                (true, Some(s)) => s.clone(),
                (false, None) => Tensor::stack(own, 1),
                (false, Some(s)) => Tensor::cat(vec![Tensor::stack(own, 1), s.clone()], 1),
                (true, None) => unreachable!("built with at least one CGC expert"),
            };
            let gate = self.gates[h].forward(rg.clone());
            probes.record(
                || {
                    crate::ProbeKey::head_gate(
                        group.map(|d| ctx.domains[d].as_str()),
                        &ctx.tasks[t],
                    )
                },
                || gate.clone(),
            );
            mix(experts, gate)
        });
        ModelOutput::from(logits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mdrec_nn::device::cpu;

    use crate::testing::random_input as input;

    fn vec2(t: &Tensor<2>) -> Vec<f32> {
        t.clone().into_data().try_to_vec::<f32>().unwrap()
    }

    /// Rows `rows` of a row-major `[B, w]` vector.
    fn pick(v: &[f32], w: usize, rows: &[usize]) -> Vec<f32> {
        rows.iter()
            .flat_map(|&i| v[i * w..(i + 1) * w].to_vec())
            .collect()
    }

    #[test]
    fn san_masks_the_own_scenario_without_renormalising() {
        let dev = cpu();
        for with_field in [false, true] {
            let mut ctx = ModelContext::uniform(3, 10, 4, 1, 3, 2);
            if with_field {
                ctx.fields[2].roles = vec![FieldRole::Domain];
            }
            let m = Hinet::build(&Hinet::tiny(), &ctx, &mut Rng::new(3), &dev).unwrap();
            assert_eq!(m.domain_emb.from_fields(), with_field);
            let domain = [2u32, 0, 1, 1, 0, 2, 2];
            let inp = input(&ctx, &domain, 5, &dev);
            let mut probes = Probes::new(true);
            let out = m.forward(&ctx, &inp, &mut probes);
            assert_eq!(out.logits.dims(), [7, 2]);
            for (d, name) in ctx.domains.iter().enumerate() {
                let a = vec2(&probes.values()[&format!("san/{name}")]);
                for row in a.chunks(3) {
                    assert_eq!(row[d], 0.0, "own scenario {d} not masked: {row:?}");
                    let others: f32 = row.iter().sum();
                    assert!(
                        row.iter()
                            .enumerate()
                            .all(|(j, &w)| j == d || (w > 0.0 && w < 1.0)),
                        "{row:?}"
                    );
                    // Softmax over all S scenarios, own weight dropped: the sum stays below 1.
                    assert!(others < 1.0 - 1e-4, "renormalised: {row:?}");
                }
            }
        }
    }

    #[test]
    fn own_specific_expert_is_specific_other_experts_are_transfer() {
        let dev = cpu();
        let ctx = ModelContext::uniform(3, 10, 4, 0, 3, 2);
        let domain = [0u32, 1, 0, 2, 1, 0];
        let d0 = [0usize, 2, 5];
        let inp = input(&ctx, &domain, 9, &dev);
        let run = |m: &Hinet| {
            let mut probes = Probes::new(true);
            let logits = vec2(&m.forward(&ctx, &inp, &mut probes).logits);
            let p = probes.values();
            (logits, vec2(&p["transfer"]), vec2(&p["specific"]))
        };
        let h = Hinet::tiny().sei_dims[0];
        let base = Hinet::build(&Hinet::tiny(), &ctx, &mut Rng::new(3), &dev).unwrap();
        let (l0, tr0, sp0) = run(&base);

        // Another domain's specific SEI replaced: for domain-0 rows the specific part is the
        // same, the transfer part and the logits move.
        let mut m = Hinet::build(&Hinet::tiny(), &ctx, &mut Rng::new(3), &dev).unwrap();
        m.specific[1] = Sei::new(
            ctx.input_dim(),
            2,
            &[h],
            &MlpConfig::default(),
            &mut Rng::new(77),
            &dev,
        );
        let (l1, tr1, sp1) = run(&m);
        assert_eq!(pick(&sp1, h, &d0), pick(&sp0, h, &d0));
        assert_ne!(pick(&tr1, h, &d0), pick(&tr0, h, &d0));
        assert_ne!(pick(&l1, 2, &d0), pick(&l0, 2, &d0));
        // Domain-2 rows do not read domain 1 as their own either.
        assert_eq!(pick(&sp1, h, &[3]), pick(&sp0, h, &[3]));

        // The row's own specific SEI replaced: its transfer part is unchanged (SAN weight 0),
        // the specific part and the logits move.
        let mut m = Hinet::build(&Hinet::tiny(), &ctx, &mut Rng::new(3), &dev).unwrap();
        m.specific[0] = Sei::new(
            ctx.input_dim(),
            2,
            &[h],
            &MlpConfig::default(),
            &mut Rng::new(77),
            &dev,
        );
        let (l2, tr2, sp2) = run(&m);
        assert_eq!(pick(&tr2, h, &d0), pick(&tr0, h, &d0));
        assert_ne!(pick(&sp2, h, &d0), pick(&sp0, h, &d0));
        assert_ne!(pick(&l2, 2, &d0), pick(&l0, 2, &d0));
        // Rows of domains 1 and 2 see domain 0 only through the transfer part.
        assert_eq!(pick(&sp2, h, &[1, 3, 4]), pick(&sp0, h, &[1, 3, 4]));
        assert_ne!(pick(&tr2, h, &[1, 3, 4]), pick(&tr0, h, &[1, 3, 4]));
    }

    #[test]
    fn cgc_gates_are_a_softmax_over_own_and_shared_experts() {
        let dev = cpu();
        let ctx = ModelContext::uniform(3, 10, 4, 0, 2, 2);
        let cfg = Config {
            task_experts: 2,
            shared_experts: 3,
            ..Hinet::tiny()
        };
        let domain = [1u32, 0, 1, 1];
        let inp = input(&ctx, &domain, 4, &dev);
        for (layout, key, n) in [
            (HeadLayout::DomainTask, "gate/d1/t1", 3),
            (HeadLayout::Task, "gate/all/t1", 4),
        ] {
            let cfg = Config {
                heads: HeadsConfig {
                    layout,
                    ..cfg.heads.clone()
                },
                ..cfg.clone()
            };
            let m = Hinet::build(&cfg, &ctx, &mut Rng::new(3), &dev).unwrap();
            let mut probes = Probes::new(true);
            m.forward(&ctx, &inp, &mut probes);
            let g = &probes.values()[key];
            assert_eq!(g.dims(), [n, 5]);
            // A real softmax: weights in (0, 1) that sum to 1 (the official code's are all 1).
            for row in vec2(g).chunks(5) {
                assert!(row.iter().all(|&w| w > 0.0 && w < 1.0), "{row:?}");
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{row:?}");
            }
        }
    }

    #[test]
    fn invalid_configs_are_errors() {
        let dev = cpu();
        let ctx = ModelContext::uniform(3, 10, 4, 0, 3, 2);
        for cfg in [
            Config {
                sub_experts: 0,
                ..Hinet::tiny()
            },
            Config {
                sei_dims: vec![],
                ..Hinet::tiny()
            },
            Config {
                task_experts: 0,
                shared_experts: 0,
                ..Hinet::tiny()
            },
            Config {
                expert_dims: vec![8, 0],
                ..Hinet::tiny()
            },
            Config {
                domain_emb_dim: 0,
                ..Hinet::tiny()
            },
        ] {
            assert!(matches!(
                Hinet::build(&cfg, &ctx, &mut Rng::new(1), &dev),
                Err(Invalid(_))
            ));
        }
    }
}
