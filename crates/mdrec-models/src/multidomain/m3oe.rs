//! M3oE — Zhang et al., "M3oE: Multi-Domain Multi-Task Mixture-of-Experts Recommendation
//! Framework", SIGIR 2024. Equations reconstructed from the official code (see docs/models.md).
//!
//! Reference implementation: `Applied-Machine-Learning-Lab/M3oE`
//! `MDMTRec/models/multi_domain/model.py` (class `MDMTRec`).
//! Deviations from reference: per-domain parts (the domain-specific star layer, gates and towers)
//! run on their domain's rows instead of the whole batch followed by a `where`; outputs are
//! logits; the loss is the trainer's per-(domain, task) cell-mean sum for every number of domains
//! and tasks (the reference uses it only for 3 domains × 2 tasks). The outer (AutoML) loss of
//! `bilevel` is that same objective, not the reference's plain mean BCE over `[B, T]`.
//!
//! Fusion-weight modes (`automl`; see docs/models.md):
//! - `joint` (default) is what the official code runs: its `~flag` filter keeps the four fusion
//!   weights in the main optimizer, which trains them every batch with everything else.
//! - `bilevel` is the paper's intended split (Eq. 11): the four pre-sigmoid scalars
//!   φ = {bal_d, bal_t, exp_d, exp_t} are the model's [`RecModel::outer_params`], so the main
//!   optimizer never updates them; once per epoch, after the epoch's batches, the trainer takes
//!   one Adam step on φ alone (`train.automl_lr`, default 1e-3 = official
//!   `learning_rate_darts`; weight decay = `train.weight_decay`) on the loss of one batch of
//!   `train.batch_size` rows drawn from `train.automl_batch_source`: `valid` (default, the
//!   paper; set `train` explicitly to reproduce the official code) or `train` (the official code's "valid_data_iter" reads the training loader,
//!   docs/models.md). Embeddings and the other dense parameters are not changed by that step.
//! - `fixed` pins all four at 0.5 (the paper's "w/o AutoML").
//!
//! The outer-step keys live in `TrainConfig`, not in this model's config: the step is a property
//! of the training loop (which split, which optimizer, when), the trainer must read the source
//! split anyway, and any model that reports outer parameters gets the same schedule without a
//! per-model branch in the trainer.
//!
//! Structure (config names → official `fcn_dims = [f1, f2, f3, f4]`):
//! - domain representation: `h = x (W_s ⊙ W_d) + b_s + b_d` (width `star_dim` = f1), then
//!   `e = MLP_LN(h → shared_dim) + MLP_LN(x → shared_dim)` (f2);
//! - experts `MLP_LN(e → expert_dims)` (expert_dims = `[f4]`): `num_shared_experts` shared, one per
//!   domain, one per task;
//! - for objective (d, t): `s = Σ softmax(Linear(stopgrad(e))) · E_S`,
//!   `D = α E_D[d] + (1 − α)/(S − 1) Σ_{j≠d} E_D[j]`, `T = β E_T[t] + (1 − β)/(T − 1) Σ_{u≠t} E_T[u]`,
//!   `r = s + γ_D D + γ_T T` (or the concatenation, `fusion = "concat"`);
//! - tower per (d, t): `Linear(f4, f4) → LayerNorm → ReLU → Linear(f4, 1)`.
//!
//! α, β, γ_D, γ_T are sigmoids of four trainable scalars initialised to 1 (σ(1) = 0.7311);
//! `automl = "fixed"` pins them to 0.5. The learned values are in the run report under
//! `model_report` and in `metrics.jsonl` per epoch. Probes: `gate/<domain>/<task>`.

use burn::module::{Module, Param, ParamId};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};
use mdrec_data::rng::Rng;
use mdrec_nn::init::{self, WeightInit};
use mdrec_nn::layers::mix;
use mdrec_nn::{Gate, GateKind, Mlp, MlpConfig, ModelContext, ModelInput, Norm};
use serde::{Deserialize, Serialize};

use crate::blocks::heads::{HeadLayout, Heads, HeadsConfig};
use crate::model::{model_config, Built, Invalid, ModelOutput, Probes, RecModel, ZooModel};

/// How the fusion weights are obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AutoMl {
    /// Trainable, updated by the main optimizer every batch (official code).
    #[default]
    Joint,
    /// All four weights fixed at 0.5 ("w/o AutoML").
    Fixed,
    /// Trainable, excluded from the main optimizer and updated by one outer step per epoch on
    /// one held-out batch (paper Eq. 11; see the module docs).
    Bilevel,
}

/// How the shared, domain and task views are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FusionKind {
    /// `s + γ_D D + γ_T T` (paper).
    #[default]
    Add,
    /// `[s ; γ_D D ; γ_T T]` (ablation "concat modules").
    Concat,
    /// `g_s s + g_D D + g_T T` with `g = softmax(Linear(stopgrad(e)))`, one gate per (domain,
    /// task) (ablation "fully gated modules", paper §3.6). \[INFERRED\] The paper names the
    /// ablation only: the gate's input is the shared experts' (stop-gradient `e`), and it
    /// replaces the scales γ_D, γ_T (and the shared view's implicit 1); α and β still balance
    /// the own against the other domain / task experts inside D and T.
    Gated,
}

model_config! {
    /// Config of [`M3oe`].
    pub struct Config {
        /// Width of the domain-specific star layer (official f1).
        star_dim: usize = 512 => 16,
        /// Width of the domain representation `e` (official f2).
        shared_dim: usize = 256 => 16,
        /// Expert MLP widths on `e` (official `[f4]`).
        expert_dims: Vec<usize> = vec![64] => vec![8],
        /// Number of shared experts (official `expert_num`, default 4).
        num_shared_experts: usize = 4 => 2,
        /// Use the domain experts (ablation "w/o domain module" = false).
        domain_experts: bool = true,
        /// Use the task experts (ablation "w/o task module" = false).
        task_experts: bool = true,
        /// Fusion-weight mode.
        automl: AutoMl = AutoMl::Joint,
        /// Initial value of the four pre-sigmoid fusion scalars (official CLI default 1).
        fusion_init: f32 = 1.0,
        /// Add or concatenate the three views.
        fusion: FusionKind = FusionKind::Add,
        /// Gate form for the shared experts.
        gate: GateKind = GateKind::Linear,
    }
}

/// The four pre-sigmoid fusion scalars.
#[derive(Module, Debug)]
pub struct FusionWeights {
    bal_d: Param<Tensor<1>>,
    bal_t: Param<Tensor<1>>,
    exp_d: Param<Tensor<1>>,
    exp_t: Param<Tensor<1>>,
}

/// Multi-domain multi-task mixture of experts.
#[derive(Module, Debug)]
pub struct M3oe {
    star_shared_w: Param<Tensor<2>>,
    star_shared_b: Param<Tensor<1>>,
    star_domain_w: Vec<Param<Tensor<2>>>,
    star_domain_b: Vec<Param<Tensor<1>>>,
    star_mlp: Mlp,
    skip: Mlp,
    shared: Vec<Mlp>,
    domain: Vec<Mlp>,
    task: Vec<Mlp>,
    gates: Vec<Gate>,
    view_gates: Vec<Gate>,
    weights: Option<FusionWeights>,
    heads: Heads,
    #[module(skip)]
    n_domains: usize,
    #[module(skip)]
    n_tasks: usize,
    #[module(skip)]
    fusion: FusionKind,
    #[module(skip)]
    automl: AutoMl,
}

impl ZooModel for M3oe {
    const NAME: &'static str = "m3oe";
    const PAPER: &'static str = "Zhang et al., M3oE: Multi-Domain Multi-Task Mixture-of-Experts Recommendation Framework, SIGIR 2024";
    type Config = Config;

    fn validate(cfg: &Config) -> Result<(), Invalid> {
        if cfg.num_shared_experts == 0
            || cfg.expert_dims.is_empty()
            || cfg.star_dim == 0
            || cfg.shared_dim == 0
        {
            return Err(Invalid(
                "num_shared_experts, star_dim, shared_dim must be ≥ 1 and expert_dims non-empty"
                    .into(),
            ));
        }
        Ok(())
    }

    fn build(cfg: &Config, ctx: &ModelContext, rng: &mut Rng, device: &Device) -> Built<Self> {
        let (d_in, s_n, t_n) = (ctx.input_dim(), ctx.n_domains(), ctx.n_tasks());
        let ln = MlpConfig {
            norm: Norm::Layer,
            ..MlpConfig::default()
        };
        let xavier = |rng: &mut Rng| {
            init::param(
                init::weight(rng, d_in, cfg.star_dim, WeightInit::XavierUniform),
                [d_in, cfg.star_dim],
                device,
            )
        };
        let star_shared_w = xavier(rng);
        let star_domain_w = (0..s_n).map(|_| xavier(rng)).collect();
        let zeros = || init::param(vec![0.0; cfg.star_dim], [cfg.star_dim], device);
        let star_shared_b = zeros();
        let star_domain_b = (0..s_n).map(|_| zeros()).collect();
        let star_mlp = Mlp::new(cfg.star_dim, &[cfg.shared_dim], &ln, rng, device);
        let skip = Mlp::new(d_in, &[cfg.shared_dim], &ln, rng, device);
        let experts = |n: usize, rng: &mut Rng| -> Vec<Mlp> {
            (0..n)
                .map(|_| Mlp::new(cfg.shared_dim, &cfg.expert_dims, &ln, rng, device))
                .collect()
        };
        let shared = experts(cfg.num_shared_experts, rng);
        let domain = if cfg.domain_experts {
            experts(s_n, rng)
        } else {
            Vec::new()
        };
        let task = if cfg.task_experts {
            experts(t_n, rng)
        } else {
            Vec::new()
        };
        let h = *cfg.expert_dims.last().expect("non-empty");
        let gates = (0..s_n * t_n)
            .map(|_| {
                Gate::new(
                    cfg.shared_dim,
                    cfg.num_shared_experts,
                    cfg.gate,
                    rng,
                    device,
                )
            })
            .collect();
        let weights = (cfg.automl != AutoMl::Fixed).then(|| {
            let p = || init::param(vec![cfg.fusion_init], [1], device);
            FusionWeights {
                bal_d: p(),
                bal_t: p(),
                exp_d: p(),
                exp_t: p(),
            }
        });
        let views = 1 + usize::from(cfg.domain_experts) + usize::from(cfg.task_experts);
        let tower_in = match cfg.fusion {
            FusionKind::Add | FusionKind::Gated => h,
            FusionKind::Concat => h * views,
        };
        let view_gates = match cfg.fusion {
            FusionKind::Gated => (0..s_n * t_n)
                .map(|_| Gate::new(cfg.shared_dim, views, cfg.gate, rng, device))
                .collect(),
            _ => Vec::new(),
        };
        let heads = Heads::new(
            &HeadsConfig::new(HeadLayout::DomainTask, vec![h]),
            ctx,
            tower_in,
            &ln,
            rng,
            device,
        );
        Ok(M3oe {
            star_shared_w,
            star_shared_b,
            star_domain_w,
            star_domain_b,
            star_mlp,
            skip,
            shared,
            domain,
            task,
            gates,
            view_gates,
            weights,
            heads,
            n_domains: s_n,
            n_tasks: t_n,
            fusion: cfg.fusion,
            automl: cfg.automl,
        })
    }
}

/// `[1, 1]` weight for broadcasting, or `None` for the fixed 0.5.
fn w(p: Option<&Param<Tensor<1>>>) -> Option<Tensor<2>> {
    p.map(|p| sigmoid(p.val()).reshape([1, 1]))
}

fn scale(x: Tensor<2>, w: &Option<Tensor<2>>) -> Tensor<2> {
    match w {
        Some(w) => x * w.clone(),
        None => x.mul_scalar(0.5),
    }
}

/// `a·own + (1 − a)/(n − 1) · Σ_{others}` given the sum over all; `own` alone when n = 1.
fn balance(own: Tensor<2>, sum: Tensor<2>, n: usize, a: &Option<Tensor<2>>) -> Tensor<2> {
    if n == 1 {
        return own;
    }
    let others = sum - own.clone();
    match a {
        Some(a) => {
            own * a.clone() + others * a.clone().neg().add_scalar(1.0).div_scalar((n - 1) as f32)
        }
        None => own.mul_scalar(0.5) + others.mul_scalar(0.5 / (n - 1) as f32),
    }
}

impl M3oe {
    /// The four fusion weights after the sigmoid (α = bal_d, β = bal_t, γ_D = exp_d,
    /// γ_T = exp_t).
    pub fn fusion_weights(&self) -> [f32; 4] {
        match &self.weights {
            None => [0.5; 4],
            Some(f) => [&f.bal_d, &f.bal_t, &f.exp_d, &f.exp_t].map(|p| {
                let v = p.val().into_data().try_to_vec::<f32>().expect("f32")[0];
                1.0 / (1.0 + (-v).exp())
            }),
        }
    }
}

impl RecModel for M3oe {
    /// # Shapes
    /// - x: `[B, D_in]`; star layer per domain on its rows `[n_d, f1]` → `h: [B, f1]`;
    ///   `e: [B, f2]`; shared experts `[B, N_s, H]`; domain / task experts `[B, H]` each;
    ///   per objective (d, t) on domain rows: gate `[n_d, N_s]`, `r: [n_d, H]` (or `[n_d, k·H]`
    ///   concatenated); logits `[B, T]`
    fn forward(&self, ctx: &ModelContext, input: &ModelInput, probes: &mut Probes) -> ModelOutput {
        let x = input.flat();
        let ws = self.star_shared_w.val();
        let bs = self.star_shared_b.val();
        let h = input.route(|d| {
            let w = ws.clone() * self.star_domain_w[d].val();
            let b = (bs.clone() + self.star_domain_b[d].val()).unsqueeze_dim(0);
            input.rows_of(x.clone(), d).matmul(w) + b
        });
        let e = self.star_mlp.forward(h) + self.skip.forward(x);
        let e_sg = e.clone().detach();
        let shared: Tensor<3> = Tensor::stack(
            self.shared
                .iter()
                .map(|m| m.forward(e.clone()))
                .collect::<Vec<_>>(),
            1,
        );
        let dom: Vec<Tensor<2>> = self.domain.iter().map(|m| m.forward(e.clone())).collect();
        let task: Vec<Tensor<2>> = self.task.iter().map(|m| m.forward(e.clone())).collect();
        let sum = |v: &[Tensor<2>]| v.iter().cloned().reduce(|a, b| a + b);
        let (dom_sum, task_sum) = (sum(&dom), sum(&task));
        let fw = self.weights.as_ref();
        let (bal_d, bal_t, exp_d, exp_t) = (
            w(fw.map(|f| &f.bal_d)),
            w(fw.map(|f| &f.bal_t)),
            w(fw.map(|f| &f.exp_d)),
            w(fw.map(|f| &f.exp_t)),
        );
        let t_n = self.n_tasks;
        let logits = self.heads.forward(input, |group, t| {
            let d = group.expect("M3oE heads are per (domain, task)");
            let gate = self.gates[d * t_n + t].forward(input.rows_of(e_sg.clone(), d));
            probes.record(
                || crate::ProbeKey::head_gate(Some(&ctx.domains[d]), &ctx.tasks[t]),
                || gate.clone(),
            );
            let gated = self.fusion == FusionKind::Gated;
            let mut views = vec![mix(input.rows_of(shared.clone(), d), gate)];
            if let Some(ds) = &dom_sum {
                let v = balance(
                    input.rows_of(dom[d].clone(), d),
                    input.rows_of(ds.clone(), d),
                    self.n_domains,
                    &bal_d,
                );
                views.push(if gated { v } else { scale(v, &exp_d) });
            }
            if let Some(ts) = &task_sum {
                let v = balance(
                    input.rows_of(task[t].clone(), d),
                    input.rows_of(ts.clone(), d),
                    self.n_tasks,
                    &bal_t,
                );
                views.push(if gated { v } else { scale(v, &exp_t) });
            }
            match self.fusion {
                FusionKind::Add => views.into_iter().reduce(|a, b| a + b).expect("one view"),
                FusionKind::Concat => Tensor::cat(views, 1),
                FusionKind::Gated => {
                    let g = self.view_gates[d * t_n + t].forward(input.rows_of(e_sg.clone(), d));
                    probes.record(
                        || {
                            crate::ProbeKey::other(format!(
                                "view_gate/{}/{}",
                                ctx.domains[d], ctx.tasks[t]
                            ))
                        },
                        || g.clone(),
                    );
                    mix(Tensor::stack(views, 1), g)
                }
            }
        });
        ModelOutput::from(logits)
    }

    fn report(&self) -> serde_json::Value {
        let [bal_d, bal_t, exp_d, exp_t] = self.fusion_weights();
        serde_json::json!({ "fusion_weights": { "bal_d": bal_d, "bal_t": bal_t, "exp_d": exp_d, "exp_t": exp_t } })
    }

    /// φ in `bilevel` mode; none otherwise (`joint`: the main optimizer trains them).
    fn outer_params(&self) -> Vec<ParamId> {
        match (&self.weights, self.automl) {
            (Some(f), AutoMl::Bilevel) => vec![f.bal_d.id, f.bal_t.id, f.exp_d.id, f.exp_t.id],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mdrec_nn::device::cpu;

    #[test]
    fn fusion_weights_start_at_sigmoid_one_and_fixed_mode_is_half() {
        let ctx = ModelContext::uniform(3, 10, 4, 1, 3, 2);
        let m = M3oe::build(&M3oe::tiny(), &ctx, &mut Rng::new(1), &cpu()).unwrap();
        for v in m.fusion_weights() {
            assert!((v - 0.731_058_6).abs() < 1e-6, "{v}");
        }
        let fixed = Config {
            automl: AutoMl::Fixed,
            ..M3oe::tiny()
        };
        let m = M3oe::build(&fixed, &ctx, &mut Rng::new(1), &cpu()).unwrap();
        assert_eq!(m.fusion_weights(), [0.5; 4]);
        assert_eq!(m.report()["fusion_weights"]["bal_d"], 0.5);
    }

    #[test]
    fn balance_weights_own_expert_and_spreads_the_rest() {
        let dev = cpu();
        let own = init::tensor(vec![1.0, 2.0], [1, 2], &dev);
        let sum = init::tensor(vec![1.0 + 3.0 + 5.0, 2.0 + 4.0 + 6.0], [1, 2], &dev);
        let a = Some(init::tensor(vec![0.8], [1, 1], &dev));
        let got = balance(own, sum, 3, &a)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        // 0.8·own + 0.2/2 · (others)
        let want = [0.8 * 1.0 + 0.1 * 8.0, 0.8 * 2.0 + 0.1 * 10.0];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
    }

    /// Zeroes every `linear.weight` of a module: its MLP layers then output a constant (their
    /// bias through the norm and activation) whatever the input.
    struct ZeroLinearWeights(Vec<String>);

    impl burn::module::ModuleMapper for ZeroLinearWeights {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.0.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.0.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if self.0.last().map(String::as_str) == Some("weight")
                && self.0.iter().rev().nth(1).map(String::as_str) == Some("linear")
            {
                param.map(|t| t.zeros_like().require_grad())
            } else {
                param
            }
        }
    }

    #[test]
    fn shared_expert_gates_do_not_train_the_domain_layer() {
        // The model's own forward, with only the shared view (no domain or task experts) and
        // shared experts whose outputs are constants (zero input weights, distinct biases):
        // then the only path from the logits back to the star layer would be the gates, and
        // the gates read stop-gradient(e). A loss on the logits must leave the star layer
        // without gradient, while it does train the gates.
        let dev = cpu().autodiff();
        let ctx = ModelContext::uniform(3, 10, 4, 1, 2, 2);
        let cfg = Config {
            domain_experts: false,
            task_experts: false,
            ..M3oe::tiny()
        };
        let mut m = M3oe::build(&cfg, &ctx, &mut Rng::new(2), &dev).unwrap();
        m.shared = std::mem::take(&mut m.shared)
            .into_iter()
            .map(|e| e.map(&mut ZeroLinearWeights(Vec::new())))
            .collect();
        let inp = crate::testing::random_input(&ctx, &[0, 1, 1, 0, 1, 0], 4, &dev);
        let out = m.forward(&ctx, &inp, &mut Probes::new(false));
        let weights = init::tensor((1..=12).map(|i| i as f32 / 7.0).collect(), [6, 2], &dev);
        let grads = (out.logits * weights).sum().backward();
        let magnitude = |g: Option<Tensor<2>>| -> f32 {
            g.map_or(0.0, |g| {
                g.into_data()
                    .try_to_vec::<f32>()
                    .unwrap()
                    .iter()
                    .map(|v| v.abs())
                    .sum()
            })
        };
        let star = magnitude(m.star_shared_w.val().grad(&grads))
            + magnitude(m.star_domain_w[0].val().grad(&grads))
            + magnitude(m.star_domain_w[1].val().grad(&grads));
        assert_eq!(star, 0.0, "the shared-expert gates trained the star layer");
        // The gates themselves do learn (the setup has a live gate path).
        let mut g = GradSum(&grads, 0.0);
        m.gates[0].visit(&mut g);
        assert!(g.1 > 0.0, "no gradient reached the gate");
    }

    /// Σ |gradient| over a module's float parameters.
    struct GradSum<'a>(&'a burn::tensor::Gradients, f32);

    impl burn::module::ModuleVisitor for GradSum<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = param.val().grad(self.0) {
                self.1 += g.abs().sum().into_scalar::<f32>();
            }
        }
    }

    #[test]
    fn gated_fusion_replaces_the_scales_by_a_gate_over_the_views() {
        let dev = cpu().autodiff();
        let ctx = ModelContext::uniform(3, 10, 4, 1, 3, 2);
        let input = || {
            let mut r = Rng::new(5);
            let emb = init::tensor(
                (0..6 * 12).map(|_| r.normal() as f32).collect(),
                [6, 12],
                &dev,
            );
            let dense = init::tensor((0..6).map(|i| i as f32 / 6.0).collect(), [6, 1], &dev);
            ModelInput::new(emb, Some(dense), vec![0, 1, 2, 0, 1, 2], 3)
        };
        let run = |fusion: FusionKind| {
            let cfg = Config {
                fusion,
                ..M3oe::tiny()
            };
            let m = M3oe::build(&cfg, &ctx, &mut Rng::new(3), &dev).unwrap();
            let mut probes = Probes::new(true);
            let out = m.forward(&ctx, &input(), &mut probes);
            let grads = out.logits.sum().backward();
            let g = m.weights.as_ref().unwrap().exp_d.val().grad(&grads);
            (g, probes)
        };
        let (g_add, _) = run(FusionKind::Add);
        assert!(g_add.is_some(), "γ_D scales the domain view in `add`");
        let (g_gated, probes) = run(FusionKind::Gated);
        assert!(g_gated.is_none(), "γ_D must not be used in `gated`");
        // One gate per (domain, task) over the three views, rows summing to 1.
        let gate = &probes.values()["view_gate/d1/t0"];
        assert_eq!(gate.dims(), [2, 3]);
        for row in gate
            .clone()
            .sum_dim(1)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
        {
            assert!((row - 1.0).abs() < 1e-5);
        }
    }
}
