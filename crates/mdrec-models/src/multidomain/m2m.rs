//! M2M — Zhang et al., "Leaving No One Behind: A Multi-Scenario Multi-Task Meta Learning
//! Approach for Advertiser Modeling", WSDM 2022. Multi-domain (scenario)
//! multi-task with meta units whose weights are generated from the scenario view:
//!
//! - **expert views**: `num_experts` MLPs (`expert_dims`, last width `H`) on the flat input,
//!   `E ∈ [B, n_e, H]`;
//! - **scenario view** `s = LeakyReLU(Linear(e_s))` from the scenario embedding (the schema's
//!   field(s) with role `domain`, or a learned per-domain table, see [`DomainEmbedding`]);
//! - **task view** of task `t`: `τ_t = LeakyReLU(Linear(u_t))` from a learned task embedding
//!   `u_t` (`task_emb_dim`), width `H`;
//! - **meta attention** (per task): a meta unit with `W = reshape(Linear_W(s)) ∈ R^{2H×2H}`,
//!   `b = Linear_b(s)`; `m_i = LeakyReLU([E_i ; τ_t] W + b)`, score `v·m_i` (`v` learned,
//!   initialised to ones), `α = softmax_i(score)` over the experts, `r_t = Σ_i α_i E_i`;
//! - **meta tower** (per task, `meta_tower_layers` layers): `o ← LeakyReLU(o W_k + b_k + o)` with
//!   `W_k = reshape(Linear(s)) ∈ R^{H×H}`, `b_k = Linear(s)` (residual, as the reference);
//! - a tower `MLP(tower_dims) → Linear(1)` per task (`heads = "task"`, default) or per
//!   (domain, task) on `o_t` gives the logits `[B, T]`.
//!
//! Every step is computed per row with that row's generated weights (batched matmuls), so a
//! row's logits never depend on the other rows of its batch.
//!
//! **Attention across the batch is not reproduced.** Scenario-Wise-Rec feeds the `[B, D]`
//! embedding to `nn.Transformer` as one unbatched sequence of length `B`, so every sample
//! attends to every other sample of its batch (docs/models.md). Our choice: the
//! transformer is dropped by default (`field_attention.layers = 0`); `field_attention.layers = L`
//! puts `L` post-norm transformer encoder layers (multi-head self-attention + ReLU feed-forward,
//! as `nn.TransformerEncoderLayer`) over the *fields of one sample* — tokens are the field
//! embeddings `[B, F, k]`, which needs every field at the same width — before the experts.
//!
//! Reference implementation: Scenario-Wise-Rec `models/multi_domain/m2m.py` (MDL, one output);
//! QunBB `recsys/multidomain/m2m.py` (TF2 port) for the meta unit.
//! Deviations from reference: no transformer across the batch (above); weight/bias generators
//! are plain `Linear` layers (SWR: `Linear → BatchNorm → LeakyReLU` MLPs, so the generated
//! weights are batch-normalised over the batch); the experts use `mlp` (ReLU, no BN by default;
//! SWR: BN + LeakyReLU); the task view comes from a learned task embedding (SWR's MDL form
//! derives it from the domain embedding, its "task" being the domain); one meta attention and
//! one meta tower per task (the multi-task form; SWR has one output); the output towers have no
//! BN by default (`mlp`); QunBB's unnormalised attention scores are not followed (softmax, as
//! SWR); outputs are logits.
//! Defaults (SWR): 4 experts of width 16, scenario view 16, one meta tower layer, LeakyReLU
//! slope 0.1, towers `[64, 32]`.
//!
//! Probes: `meta_attention/<task>` (`[B, n_e]`, rows sum to 1), `expert/<i>` (`[B, H]`).

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, LayerNormConfig, Linear};
use burn::tensor::activation::{leaky_relu, relu, softmax};
use burn::tensor::{Device, Tensor};
use mdrec_data::rng::Rng;
use mdrec_data::FieldRole;
use mdrec_nn::init::{self, WeightInit};
use mdrec_nn::layers::{linear, mix};
use mdrec_nn::{Mlp, MlpConfig, ModelContext, ModelInput};
use serde::{Deserialize, Serialize};

use crate::blocks::domain::DomainEmbedding;
use crate::blocks::experts::{expert_bank, run_experts};
use crate::blocks::heads::{HeadLayout, Heads, HeadsConfig};
use crate::model::{model_config, Built, Invalid, ModelOutput, Probes, RecModel, ZooModel};

/// Self-attention over the fields of one sample (the in-sample replacement of SWR's
/// transformer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FieldAttentionConfig {
    /// Encoder layers; 0 = no attention (default).
    pub layers: usize,
    /// Attention heads; must divide the field width.
    pub heads: usize,
    /// Hidden width of the feed-forward block.
    pub ff_dim: usize,
}

impl Default for FieldAttentionConfig {
    fn default() -> Self {
        FieldAttentionConfig {
            layers: 0,
            heads: 4,
            ff_dim: 16,
        }
    }
}

model_config! {
    /// Config of [`M2m`].
    pub struct Config {
        /// Number of expert views.
        num_experts: usize = 4 => 2,
        /// Expert MLP widths; the last is the view width `H`.
        expert_dims: Vec<usize> = vec![16] => vec![8],
        /// Width of the scenario view.
        scenario_dim: usize = 16 => 4,
        /// Width of the learned task embedding.
        task_emb_dim: usize = 16 => 4,
        /// Width of the learned per-domain embedding used when the schema has no `domain` field.
        domain_emb_dim: usize = 8,
        /// Meta tower layers (residual meta units).
        meta_tower_layers: usize = 1,
        /// Negative slope of the LeakyReLU in the views and meta units.
        leaky_slope: f64 = 0.1,
        /// Output heads: tower layout and tower hidden widths.
        heads: HeadsConfig = HeadsConfig::new(HeadLayout::Task, vec![64, 32]) => HeadsConfig::new(HeadLayout::Task, vec![4]),
        /// Hidden-layer options of experts and output towers.
        mlp: MlpConfig = MlpConfig::default(),
        /// Optional in-sample self-attention over the fields.
        field_attention: FieldAttentionConfig = FieldAttentionConfig::default(),
    }
}

/// A post-norm transformer encoder layer over the `F` field tokens of each sample.
#[derive(Module, Debug)]
pub struct FieldAttentionLayer {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    ln1: LayerNorm,
    ff1: Linear,
    ff2: Linear,
    ln2: LayerNorm,
    #[module(skip)]
    heads: usize,
}

impl FieldAttentionLayer {
    fn new(dim: usize, heads: usize, ff: usize, rng: &mut Rng, device: &Device) -> Self {
        let mut lin = |i, o| linear(i, o, WeightInit::XavierUniform, rng, device);
        FieldAttentionLayer {
            q: lin(dim, dim),
            k: lin(dim, dim),
            v: lin(dim, dim),
            o: lin(dim, dim),
            ff1: lin(dim, ff),
            ff2: lin(ff, dim),
            ln1: LayerNormConfig::new(dim).init(device),
            ln2: LayerNormConfig::new(dim).init(device),
            heads,
        }
    }

    /// # Shapes
    /// - x: `[B, F, k]` → `[B, F, k]`; attention weights `[B, heads, F, F]` (within a sample)
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, f, k] = x.dims();
        let h = self.heads;
        let dh = k / h;
        let split = |t: Tensor<3>| -> Tensor<4> { t.reshape([b, f, h, dh]).swap_dims(1, 2) };
        let q = split(self.q.forward(x.clone()));
        let kk = split(self.k.forward(x.clone()));
        let v = split(self.v.forward(x.clone()));
        let att = softmax(
            q.matmul(kk.swap_dims(2, 3)).div_scalar((dh as f64).sqrt()),
            3,
        );
        let a: Tensor<3> = att.matmul(v).swap_dims(1, 2).reshape([b, f, k]);
        let x = self.ln1.forward(x + self.o.forward(a));
        let y = self.ff2.forward(relu(self.ff1.forward(x.clone())));
        self.ln2.forward(x + y)
    }
}

/// A meta unit whose `[n_in, n_out]` weight and bias are generated from the scenario view.
#[derive(Module, Debug)]
pub struct MetaUnit {
    w_gen: Linear,
    b_gen: Linear,
    #[module(skip)]
    n_in: usize,
    #[module(skip)]
    n_out: usize,
}

impl MetaUnit {
    fn new(s: usize, n_in: usize, n_out: usize, rng: &mut Rng, device: &Device) -> Self {
        MetaUnit {
            w_gen: linear(s, n_in * n_out, WeightInit::TorchDefault, rng, device),
            b_gen: linear(s, n_out, WeightInit::TorchDefault, rng, device),
            n_in,
            n_out,
        }
    }

    /// `x W(s) + b(s)` with each row's own generated weights.
    ///
    /// # Shapes
    /// - x: `[B, N, n_in]`, s: `[B, s]` → `[B, N, n_out]`
    fn forward(&self, x: Tensor<3>, s: Tensor<2>) -> Tensor<3> {
        let b = s.dims()[0];
        let w: Tensor<3> = self
            .w_gen
            .forward(s.clone())
            .reshape([b, self.n_in, self.n_out]);
        let bias: Tensor<3> = self.b_gen.forward(s).reshape([b, 1, self.n_out]);
        x.matmul(w) + bias
    }
}

/// Meta attention and meta tower of one task.
#[derive(Module, Debug)]
pub struct TaskBranch {
    /// Learned task embedding `u_t`.
    task_emb: Param<Tensor<2>>,
    task_view: Linear,
    attention: MetaUnit,
    /// Score vector `v` of the meta attention, `[2H, 1]`.
    score: Param<Tensor<2>>,
    tower: Vec<MetaUnit>,
}

/// Multi-scenario multi-task meta learning.
#[derive(Module, Debug)]
pub struct M2m {
    attention: Vec<FieldAttentionLayer>,
    experts: Vec<Mlp>,
    domain_emb: DomainEmbedding,
    scenario_view: Linear,
    tasks: Vec<TaskBranch>,
    heads: Heads,
    #[module(skip)]
    slope: f64,
    #[module(skip)]
    field_dim: usize,
}

impl ZooModel for M2m {
    const NAME: &'static str = "m2m";
    const PAPER: &'static str = "Zhang et al., Leaving No One Behind: A Multi-Scenario Multi-Task Meta Learning Approach for Advertiser Modeling, WSDM 2022";
    type Config = Config;

    fn build(cfg: &Config, ctx: &ModelContext, rng: &mut Rng, device: &Device) -> Built<Self> {
        let invalid = Invalid;
        if cfg.num_experts == 0 || cfg.expert_dims.is_empty() {
            return Err(invalid(
                "num_experts must be ≥ 1 and expert_dims non-empty".into(),
            ));
        }
        if cfg.expert_dims.contains(&0)
            || cfg.heads.tower_dims.contains(&0)
            || cfg.scenario_dim == 0
            || cfg.task_emb_dim == 0
        {
            return Err(invalid(
                "expert_dims, tower_dims, scenario_dim and task_emb_dim must be ≥ 1".into(),
            ));
        }
        if !cfg.leaky_slope.is_finite() {
            return Err(invalid("leaky_slope must be finite".into()));
        }
        let fa = &cfg.field_attention;
        let mut field_dim = 0;
        if fa.layers > 0 {
            let dims: Vec<usize> = ctx.fields.iter().map(|f| f.dim).collect();
            let Some(&k) = dims.first() else {
                return Err(invalid(
                    "field_attention needs embedded fields; the schema has none".into(),
                ));
            };
            if dims.iter().any(|&d| d != k) {
                return Err(invalid(format!(
                    "field_attention needs every field at the same width (its tokens are the \
                     fields), got widths {dims:?}"
                )));
            }
            if fa.heads == 0 || !k.is_multiple_of(fa.heads) || fa.ff_dim == 0 {
                return Err(invalid(format!(
                    "field_attention.heads ({}) must divide the field width {k} and \
                     field_attention.ff_dim must be ≥ 1",
                    fa.heads
                )));
            }
            field_dim = k;
        }
        let attention = (0..fa.layers)
            .map(|_| FieldAttentionLayer::new(field_dim, fa.heads, fa.ff_dim, rng, device))
            .collect();
        let d_in = ctx.input_dim();
        let experts: Vec<Mlp> = expert_bank(
            cfg.num_experts,
            d_in,
            &cfg.expert_dims,
            &cfg.mlp,
            rng,
            device,
        );
        let h = experts[0].out_dim();
        let domain_emb =
            DomainEmbedding::new(ctx, &[FieldRole::Domain], cfg.domain_emb_dim, rng, device)?;
        let s = cfg.scenario_dim;
        let scenario_view = linear(domain_emb.dim(), s, WeightInit::TorchDefault, rng, device);
        let u = cfg.task_emb_dim;
        let tasks = (0..ctx.n_tasks())
            .map(|_| TaskBranch {
                task_emb: init::param(
                    init::normal(rng, u, 1.0 / (u as f32).sqrt()),
                    [1, u],
                    device,
                ),
                task_view: linear(u, h, WeightInit::TorchDefault, rng, device),
                attention: MetaUnit::new(s, 2 * h, 2 * h, rng, device),
                score: init::param(vec![1.0; 2 * h], [2 * h, 1], device),
                tower: (0..cfg.meta_tower_layers)
                    .map(|_| MetaUnit::new(s, h, h, rng, device))
                    .collect(),
            })
            .collect();
        let heads = Heads::new(&cfg.heads, ctx, h, &cfg.mlp, rng, device);
        Ok(M2m {
            attention,
            experts,
            domain_emb,
            scenario_view,
            tasks,
            heads,
            slope: cfg.leaky_slope,
            field_dim,
        })
    }
}

impl M2m {
    /// The expert input: the flat input, its field embeddings first passed through the
    /// in-sample field attention when configured.
    ///
    /// # Shapes
    /// - result `[B, D_in]`
    fn expert_input(&self, input: &ModelInput) -> Tensor<2> {
        if self.attention.is_empty() {
            return input.flat();
        }
        let [b, w] = input.emb.dims();
        let k = self.field_dim;
        let mut t: Tensor<3> = input.emb.clone().reshape([b, w / k, k]);
        for layer in &self.attention {
            t = layer.forward(t);
        }
        let e: Tensor<2> = t.reshape([b, w]);
        match &input.dense {
            Some(d) => Tensor::cat(vec![e, d.clone()], 1),
            None => e,
        }
    }

    /// Meta attention then meta tower of task branch `br`.
    ///
    /// # Shapes
    /// - experts `[B, n_e, H]`, s `[B, s]` → (`o_t [B, H]`, attention `[B, n_e]`)
    fn branch(
        &self,
        br: &TaskBranch,
        experts: &Tensor<3>,
        s: &Tensor<2>,
    ) -> (Tensor<2>, Tensor<2>) {
        let [b, n_e, h] = experts.dims();
        let tau = leaky_relu(br.task_view.forward(br.task_emb.val()), self.slope);
        let tau: Tensor<3> = tau.reshape([1, 1, h]).expand([b, n_e, h]);
        let m_in = Tensor::cat(vec![experts.clone(), tau], 2);
        let m = leaky_relu(br.attention.forward(m_in, s.clone()), self.slope);
        let score: Tensor<3> = m.matmul(br.score.val().unsqueeze_dim(0));
        let alpha = softmax(score.reshape([b, n_e]), 1);
        let mut o = mix(experts.clone(), alpha.clone());
        for unit in &br.tower {
            let y: Tensor<2> = unit
                .forward(o.clone().reshape([b, 1, h]), s.clone())
                .reshape([b, h]);
            o = leaky_relu(y + o, self.slope);
        }
        (o, alpha)
    }
}

impl RecModel for M2m {
    /// # Shapes
    /// - expert input `[B, D_in]` (field attention: `[B, F, k]` tokens per sample) → experts
    ///   `[B, n_e, H]`
    /// - scenario embedding `[B, k_s]` → scenario view `[B, s]`; task view `[H]`
    /// - per task: meta attention input `[B, n_e, 2H]`, generated `W [B, 2H, 2H]` → scores
    ///   `[B, n_e]` → `r_t [B, H]` → meta tower (`W_k [B, H, H]`) → `o_t [B, H]`
    /// - towers on `o_t` → logits `[B, T]`
    fn forward(&self, ctx: &ModelContext, input: &ModelInput, probes: &mut Probes) -> ModelOutput {
        let x = self.expert_input(input);
        let experts = run_experts(&self.experts, &x, probes);
        let s = leaky_relu(
            self.scenario_view
                .forward(self.domain_emb.forward(ctx, input)),
            self.slope,
        );
        let o: Vec<Tensor<2>> = self
            .tasks
            .iter()
            .enumerate()
            .map(|(t, br)| {
                let (o, alpha) = self.branch(br, &experts, &s);
                probes.record(
                    || crate::ProbeKey::other(format!("meta_attention/{}", ctx.tasks[t])),
                    || alpha,
                );
                o
            })
            .collect();
        let logits = self.heads.forward(input, |group, t| match group {
            Some(d) => input.rows_of(o[t].clone(), d),
            None => o[t].clone(),
        });
        ModelOutput::from(logits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mdrec_nn::device::cpu;

    /// A batch whose rows come from `rows` (row-major `[n, emb_dim]`) and `domain`.
    fn batch(ctx: &ModelContext, values: Vec<f32>, domain: &[u32], device: &Device) -> ModelInput {
        let b = domain.len();
        let mut emb = init::tensor(values, [b, ctx.emb_dim()], device);
        if device.is_autodiff() {
            emb = emb.require_grad();
        }
        let dense = (ctx.n_numeric > 0).then(|| {
            let v: Vec<f32> = (0..b * ctx.n_numeric)
                .map(|i| (i % 7) as f32 / 7.0)
                .collect();
            init::tensor(v, [b, ctx.n_numeric], device)
        });
        ModelInput::new(emb, dense, domain.to_vec(), ctx.n_domains())
    }

    fn logits(m: &M2m, ctx: &ModelContext, inp: &ModelInput) -> Vec<f32> {
        m.forward(ctx, inp, &mut Probes::new(false))
            .logits
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    }

    #[test]
    fn a_rows_logits_do_not_depend_on_the_other_rows_of_its_batch() {
        let mut ctx = ModelContext::uniform(4, 10, 4, 0, 3, 2);
        ctx.fields[3].roles = vec![FieldRole::Domain];
        let w = ctx.emb_dim();
        // Rows 0, 3, 4 are fixed; the other rows (and their domains) differ between batches.
        let fixed = [0usize, 3, 4];
        let make = |seed: u64| {
            let mut rng = Rng::new(seed);
            let mut v = init::normal(&mut rng, 6 * w, 1.0);
            let mut keep = Rng::new(1);
            let kept = init::normal(&mut keep, 6 * w, 1.0);
            for &i in &fixed {
                v[i * w..(i + 1) * w].copy_from_slice(&kept[i * w..(i + 1) * w]);
            }
            let mut domain = [0u32, 1, 2, 2, 1, 0];
            if seed.is_multiple_of(2) {
                domain[1] = 2;
                domain[2] = 0;
                domain[5] = 1;
            }
            (v, domain)
        };
        for layers in [0, 2] {
            let cfg = Config {
                field_attention: FieldAttentionConfig {
                    layers,
                    heads: 2,
                    ff_dim: 8,
                },
                ..M2m::tiny()
            };
            for dev in [cpu().autodiff(), cpu()] {
                let m = M2m::build(&cfg, &ctx, &mut Rng::new(3), &dev).unwrap();
                let (va, da) = make(10);
                let (vb, db) = make(11);
                let a = logits(&m, &ctx, &batch(&ctx, va.clone(), &da, &dev));
                let b = logits(&m, &ctx, &batch(&ctx, vb, &db, &dev));
                for &i in &fixed {
                    for t in 0..2 {
                        let (x, y) = (a[i * 2 + t], b[i * 2 + t]);
                        assert!((x - y).abs() < 1e-5, "layers {layers}, row {i}: {x} vs {y}");
                    }
                }
                assert_ne!(a, b, "the batches do differ");
                // Alone in a batch of one, row 3 gives the same logits.
                let one = batch(&ctx, va[3 * w..4 * w].to_vec(), &[da[3]], &dev);
                let single = logits(&m, &ctx, &one);
                assert!((single[0] - a[6]).abs() < 1e-5 && (single[1] - a[7]).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn meta_attention_is_a_softmax_over_experts_and_reads_the_scenario() {
        let dev = cpu();
        let ctx = ModelContext::uniform(3, 10, 4, 1, 3, 2);
        let cfg = Config {
            num_experts: 3,
            ..M2m::tiny()
        };
        let m = M2m::build(&cfg, &ctx, &mut Rng::new(3), &dev).unwrap();
        let mut rng = Rng::new(4);
        let v = init::normal(&mut rng, 4 * ctx.emb_dim(), 1.0);
        let mut probes = Probes::new(true);
        let inp = batch(&ctx, v.clone(), &[0, 1, 2, 0], &dev);
        let out = m.forward(&ctx, &inp, &mut probes).logits;
        assert_eq!(out.dims(), [4, 2]);
        for t in ["t0", "t1"] {
            let a = probes.values()[&format!("meta_attention/{t}")].clone();
            assert_eq!(a.dims(), [4, 3]);
            for row in a.into_data().try_to_vec::<f32>().unwrap().chunks(3) {
                assert!(row.iter().all(|&x| x > 0.0 && x < 1.0), "{row:?}");
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            }
        }
        // Same features, other scenarios: the generated weights differ, so do the logits.
        let other = logits(&m, &ctx, &batch(&ctx, v, &[1, 2, 0, 1], &dev));
        let base = out.into_data().try_to_vec::<f32>().unwrap();
        for i in 0..4 {
            assert_ne!(base[i * 2], other[i * 2], "row {i}");
        }
    }

    #[test]
    fn invalid_configs_are_errors() {
        let dev = cpu();
        let mut ctx = ModelContext::uniform(3, 10, 4, 0, 3, 2);
        let attn = |layers, heads| Config {
            field_attention: FieldAttentionConfig {
                layers,
                heads,
                ff_dim: 4,
            },
            ..M2m::tiny()
        };
        for cfg in [
            Config {
                num_experts: 0,
                ..M2m::tiny()
            },
            Config {
                expert_dims: vec![],
                ..M2m::tiny()
            },
            Config {
                scenario_dim: 0,
                ..M2m::tiny()
            },
            Config {
                domain_emb_dim: 0,
                ..M2m::tiny()
            },
            attn(1, 3),
            attn(1, 0),
        ] {
            let r = M2m::build(&cfg, &ctx, &mut Rng::new(1), &dev);
            assert!(matches!(r, Err(Invalid(_))), "{cfg:?}");
        }
        assert!(M2m::build(&attn(1, 2), &ctx, &mut Rng::new(1), &dev).is_ok());
        // Fields of different widths cannot be attention tokens.
        ctx.fields[2].dim = 8;
        let err = M2m::build(&attn(1, 2), &ctx, &mut Rng::new(1), &dev).unwrap_err();
        assert!(err.to_string().contains("same width"), "{err}");
    }
}
