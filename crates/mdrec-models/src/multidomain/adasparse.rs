//! AdaSparse — Yang et al., "AdaSparse: Learning Adaptively Sparse Structures for Multi-Domain
//! Click-Through Rate Prediction", CIKM 2022. Domain-adaptive neuron pruning:
//!
//! - the input is split into the domain embedding `e_d` (the schema's field(s) with role
//!   `domain`, or a learned per-domain table, see [`DomainEmbedding`]) and the domain-agnostic
//!   features `x_a` (every other field and the numeric inputs);
//! - **pruner 0** scales the agnostic input, `x_a ← π^0 ⊙ x_a` (`prune_input`), and the trunk
//!   reads `h^0 = [e_d ; x_a]`;
//! - every hidden block `h^{l+1} = Block_l(h^l)` (`Linear → [norm] → act → [dropout]`, `mlp`) is
//!   followed by its pruner, `h^{l+1} ← π^{l+1} ⊙ h^{l+1}`;
//! - a pruner computes `v = W_π [e_d ; h]` (Linear without bias) and the neuron-wise factor
//!   `π` in one of three forms (`form`):
//!   - `binarization`: `π = 1[σ(α·v) > ε]`, exactly 0 or 1; in training the gradient passes
//!     straight through to `σ(α·v)` (the step has none) \[INFERRED: straight-through\];
//!   - `scaling`: `π = β·σ(v)`;
//!   - `fusion` (default): `π = β·σ(α·v)`, set to exactly 0 where `≤ ε`;
//! - the heads (`heads`, `tower_dims`; default one `Linear(h, 1)` per task, the reference's output
//!   layer once per task) give the logits `[B, T]`.
//!
//! **α annealing**: α starts at `alpha` and grows by `delta_alpha` on every *training* forward
//! (input on an autodiff device), capped at `alpha_max` when set; inference forwards read α and
//! never change it. α is a buffer of the model (`alpha`, saved in checkpoints, never trained), so
//! a run's α depends only on its number of training steps. The current α is in the
//! `model_report`.
//!
//! Reference implementation: Scenario-Wise-Rec `models/multi_domain/adasparse.py` with
//! `basic/layers.py::Pruner`; AREAD / SATrans `models/adasparse.py`.
//! Deviations from reference: factors below ε are truly zero (SWR multiplies by
//! `sign(π − ε)`, which makes them *negative*, and its Binarization returns ±1); α anneals only on training forwards (SWR increments it on every forward, evaluation
//! included, so its validation and test numbers depend on how often it evaluated); α is a
//! checkpointed buffer (SWR: a plain attribute, lost on reload); Binarization has a
//! straight-through gradient; Scaling has no ε threshold (the paper's form; SWR thresholds it
//! too, with the sign bug); multi-task heads in place of the single output; outputs are logits.
//! `detach_domain = true` gives AREAD's stop-gradient on `e_d` inside the pruners. No sparsity
//! regulariser (none of the references has one).
//! Defaults (SWR MovieLens): `dims = [32, 32]`, BatchNorm and dropout 0.2 in the blocks, Fusion,
//! ε = 1e-2, β = 2, α = 1, δα = 1e-4.
//!
//! Probes: `prune/0` (input factors `[B, |x_a|]`, with `prune_input`) and `prune/<l>` (factors of
//! hidden block `l`, `[B, dims[l-1]]`).

use burn::module::{Module, RunningState};
use burn::nn::Linear;
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};
use mdrec_data::rng::Rng;
use mdrec_data::FieldRole;
use mdrec_nn::init::{self, WeightInit};
use mdrec_nn::{Mlp, MlpConfig, ModelContext, ModelInput, Norm};
use serde::{Deserialize, Serialize};

use crate::blocks::domain::DomainEmbedding;
use crate::blocks::heads::{HeadLayout, Heads, HeadsConfig};
use crate::model::{model_config, Built, Invalid, ModelOutput, Probes, RecModel, ZooModel};

/// How a pruner turns `v` into neuron factors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PrunerForm {
    /// `1[σ(α·v) > ε]`.
    Binarization,
    /// `β·σ(v)`.
    Scaling,
    /// `β·σ(α·v)`, zero where `≤ ε`.
    #[default]
    Fusion,
}

model_config! {
    /// Config of [`AdaSparse`].
    pub struct Config {
        /// Hidden widths of the pruned trunk (one pruner after each block).
        dims: Vec<usize> = vec![32, 32] => vec![8, 8],
        /// Factor form.
        form: PrunerForm = PrunerForm::Fusion,
        /// Threshold ε (Binarization, Fusion).
        epsilon: f64 = 1e-2,
        /// Scale β (Scaling, Fusion).
        beta: f64 = 2.0,
        /// Initial α (Binarization, Fusion).
        alpha: f64 = 1.0,
        /// Increase of α per training forward.
        delta_alpha: f64 = 1e-4,
        /// Upper bound of α (none by default, as the reference).
        alpha_max: Option<f64> = None,
        /// Prune the domain-agnostic input (pruner 0).
        prune_input: bool = true,
        /// Stop the gradient of the pruners into the domain embedding (AREAD).
        detach_domain: bool = false,
        /// Width of the learned per-domain embedding used when the schema has no `domain` field.
        domain_emb_dim: usize = 8,
        /// Output heads: tower layout and tower hidden widths.
        heads: HeadsConfig = HeadsConfig::new(HeadLayout::Task, vec![]),
        /// Options of the trunk blocks and the tower hidden layers.
        mlp: MlpConfig = MlpConfig { norm: Norm::Batch, dropout: 0.2, ..MlpConfig::default() } => MlpConfig::default(),
    }
}

/// A domain-adaptive pruner: `v = W [e_d ; h]` (no bias) → factors.
#[derive(Module, Debug)]
pub struct Pruner {
    linear: Linear,
}

impl Pruner {
    fn new(k: usize, width: usize, rng: &mut Rng, device: &Device) -> Self {
        let w = init::weight(rng, k + width, width, WeightInit::TorchDefault);
        Pruner {
            linear: Linear {
                weight: init::param(w, [k + width, width], device),
                bias: None,
            },
        }
    }
}

/// The factor rule shared by every pruner of a model.
#[derive(Debug, Clone, Copy)]
struct Rule {
    form: PrunerForm,
    epsilon: f64,
    beta: f64,
}

impl Rule {
    /// Factors from `v` with the current α (`[1, 1]`).
    ///
    /// # Shapes
    /// - v: `[N, w]` → π `[N, w]`, every value ≥ 0
    fn factors(&self, v: Tensor<2>, alpha: Tensor<2>, training: bool) -> Tensor<2> {
        match self.form {
            PrunerForm::Binarization => {
                let soft = sigmoid(v * alpha);
                let hard = soft.clone().greater_elem(self.epsilon).float();
                if training {
                    // Forward: exactly `hard` (x − x = 0); backward: the gradient of σ(α·v).
                    hard + (soft.clone() - soft.detach())
                } else {
                    hard
                }
            }
            PrunerForm::Scaling => sigmoid(v).mul_scalar(self.beta),
            PrunerForm::Fusion => {
                let s = sigmoid(v * alpha).mul_scalar(self.beta);
                let drop = s.clone().lower_equal_elem(self.epsilon);
                s.mask_fill(drop, 0.0)
            }
        }
    }
}

/// Domain-adaptive sparse network.
#[derive(Module, Debug)]
pub struct AdaSparse {
    domain_emb: DomainEmbedding,
    input_pruner: Option<Pruner>,
    /// One hidden block per entry of `dims`.
    blocks: Vec<Mlp>,
    /// The pruner after each block.
    pruners: Vec<Pruner>,
    heads: Heads,
    /// α, `[1]` (a buffer).
    alpha: RunningState<Tensor<1>>,
    /// Column ranges `(start, len)` of `flat` that form the domain-agnostic input.
    #[module(skip)]
    agnostic: Vec<(usize, usize)>,
    #[module(skip)]
    rule: Rule,
    #[module(skip)]
    delta_alpha: f64,
    #[module(skip)]
    alpha_max: Option<f64>,
    #[module(skip)]
    detach_domain: bool,
}

impl ZooModel for AdaSparse {
    const NAME: &'static str = "adasparse";
    const PAPER: &'static str = "Yang et al., AdaSparse: Learning Adaptively Sparse Structures for Multi-Domain Click-Through Rate Prediction, CIKM 2022";
    type Config = Config;

    fn build(cfg: &Config, ctx: &ModelContext, rng: &mut Rng, device: &Device) -> Built<Self> {
        let invalid = Invalid;
        let finite = |v: f64| v.is_finite();
        if !finite(cfg.beta) || cfg.beta <= 0.0 {
            return Err(invalid(format!(
                "beta must be finite and > 0, got {}",
                cfg.beta
            )));
        }
        if !finite(cfg.epsilon) || cfg.epsilon < 0.0 {
            return Err(invalid(format!(
                "epsilon must be finite and ≥ 0, got {}",
                cfg.epsilon
            )));
        }
        match cfg.form {
            PrunerForm::Fusion if cfg.epsilon >= cfg.beta => {
                return Err(invalid(format!(
                "with form = \"fusion\" epsilon ({}) must be < beta ({}): every factor would be 0",
                cfg.epsilon, cfg.beta
            )))
            }
            PrunerForm::Binarization if cfg.epsilon >= 1.0 => {
                return Err(invalid(format!(
                    "with form = \"binarization\" epsilon ({}) must be < 1: σ(α·v) < 1, every \
                     factor would be 0",
                    cfg.epsilon
                )))
            }
            _ => {}
        }
        if !finite(cfg.alpha) || cfg.alpha <= 0.0 {
            return Err(invalid(format!(
                "alpha must be finite and > 0, got {}",
                cfg.alpha
            )));
        }
        if !finite(cfg.delta_alpha) || cfg.delta_alpha < 0.0 {
            return Err(invalid(format!(
                "delta_alpha must be finite and ≥ 0, got {}",
                cfg.delta_alpha
            )));
        }
        if let Some(m) = cfg.alpha_max {
            if !finite(m) || m < cfg.alpha {
                return Err(invalid(format!(
                    "alpha_max ({m}) must be finite and ≥ alpha ({})",
                    cfg.alpha
                )));
            }
        }
        if cfg.dims.contains(&0) || cfg.heads.tower_dims.contains(&0) {
            return Err(invalid("layer widths must be ≥ 1".into()));
        }
        if cfg.dims.is_empty() && !cfg.prune_input {
            return Err(invalid(
                "dims is empty and prune_input is false: the model would have no pruner".into(),
            ));
        }
        let domain_emb =
            DomainEmbedding::new(ctx, &[FieldRole::Domain], cfg.domain_emb_dim, rng, device)?;
        let k = domain_emb.dim();
        // Domain-agnostic columns of `flat`: every field that is not read as the domain
        // embedding, then the numeric inputs; adjacent ranges merged.
        let mut agnostic: Vec<(usize, usize)> = Vec::new();
        let mut push = |start: usize, len: usize| match agnostic.last_mut() {
            Some((s, l)) if *s + *l == start => *l += len,
            _ => agnostic.push((start, len)),
        };
        let mut fields: Vec<usize> = (0..ctx.fields.len())
            .filter(|i| !domain_emb.fields().contains(i))
            .collect();
        fields.sort_by_key(|&i| ctx.fields[i].offset);
        for i in fields {
            push(ctx.fields[i].offset, ctx.fields[i].dim);
        }
        if ctx.n_numeric > 0 {
            push(ctx.emb_dim(), ctx.n_numeric);
        }
        let agn_dim: usize = agnostic.iter().map(|r| r.1).sum();
        if agn_dim == 0 {
            return Err(invalid(
                "the schema has no input besides the domain field(s): nothing to prune".into(),
            ));
        }
        let input_pruner = cfg
            .prune_input
            .then(|| Pruner::new(k, agn_dim, rng, device));
        let mut blocks = Vec::with_capacity(cfg.dims.len());
        let mut pruners = Vec::with_capacity(cfg.dims.len());
        let mut width = k + agn_dim;
        for &d in &cfg.dims {
            blocks.push(Mlp::new(width, &[d], &cfg.mlp, rng, device));
            pruners.push(Pruner::new(k, d, rng, device));
            width = d;
        }
        let heads = Heads::new(&cfg.heads, ctx, width, &cfg.mlp, rng, device);
        Ok(AdaSparse {
            domain_emb,
            input_pruner,
            blocks,
            pruners,
            heads,
            alpha: RunningState::new(init::tensor(vec![cfg.alpha as f32], [1], device)),
            agnostic,
            rule: Rule {
                form: cfg.form,
                epsilon: cfg.epsilon,
                beta: cfg.beta,
            },
            delta_alpha: cfg.delta_alpha,
            alpha_max: cfg.alpha_max,
            detach_domain: cfg.detach_domain,
        })
    }
}

impl AdaSparse {
    /// The current α.
    pub fn alpha(&self) -> f32 {
        self.alpha.value_sync().into_scalar::<f32>()
    }

    /// α for this forward: advanced by δα (and stored) in training, unchanged otherwise.
    fn step_alpha(&self, training: bool) -> Tensor<1> {
        let a = self.alpha.value_sync();
        if !training {
            return a;
        }
        let mut next = a.add_scalar(self.delta_alpha);
        if let Some(m) = self.alpha_max {
            next = next.clamp_max(m);
        }
        self.alpha.update(next.clone());
        // Flush the per-thread update so that the stored value is current right away.
        let _ = self.alpha.value_sync();
        next
    }

    /// `π ⊙ h` with the factors of `pruner` on `[e ; h]`.
    fn prune(
        &self,
        pruner: &Pruner,
        e: &Tensor<2>,
        h: Tensor<2>,
        alpha: &Tensor<2>,
        training: bool,
        probe: impl FnOnce(&Tensor<2>),
    ) -> Tensor<2> {
        let v = pruner
            .linear
            .forward(Tensor::cat(vec![e.clone(), h.clone()], 1));
        let pi = self.rule.factors(v, alpha.clone(), training);
        probe(&pi);
        h * pi
    }
}

impl RecModel for AdaSparse {
    /// # Shapes
    /// - flat `[B, D_in]` → domain embedding `e [B, k]`, agnostic `x_a [B, D_a]`
    /// - π⁰ `[B, D_a]`; `h⁰ = [e ; π⁰ ⊙ x_a]`: `[B, k + D_a]`
    /// - block `l`: `[B, dims[l]]`, π^l `[B, dims[l]]` → heads → logits `[B, T]`
    fn forward(&self, ctx: &ModelContext, input: &ModelInput, probes: &mut Probes) -> ModelOutput {
        let x = input.flat();
        let training = x.device().is_autodiff();
        let alpha: Tensor<2> = self.step_alpha(training).reshape([1, 1]);
        let e = self.domain_emb.forward(ctx, input);
        let e_p = if self.detach_domain {
            e.clone().detach()
        } else {
            e.clone()
        };
        let parts: Vec<Tensor<2>> = self
            .agnostic
            .iter()
            .map(|&(s, l)| x.clone().narrow(1, s, l))
            .collect();
        let mut xa = if parts.len() == 1 {
            parts.into_iter().next().expect("one range")
        } else {
            Tensor::cat(parts, 1)
        };
        if let Some(p) = &self.input_pruner {
            xa = self.prune(p, &e_p, xa, &alpha, training, |pi| {
                probes.record(|| crate::ProbeKey::other("prune/0"), || pi.clone())
            });
        }
        let mut h = Tensor::cat(vec![e, xa], 1);
        for (l, (block, pruner)) in self.blocks.iter().zip(&self.pruners).enumerate() {
            h = block.forward(h);
            h = self.prune(pruner, &e_p, h, &alpha, training, |pi| {
                probes.record(
                    || crate::ProbeKey::other(format!("prune/{}", l + 1)),
                    || pi.clone(),
                )
            });
        }
        let logits = self.heads.forward_shared(input, &h);
        ModelOutput::from(logits)
    }

    fn report(&self) -> serde_json::Value {
        serde_json::json!({ "alpha": self.alpha() })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::{DynModel, Holder};
    use mdrec_nn::device::cpu;

    use crate::testing::random_input as input;

    fn factors(m: &AdaSparse, ctx: &ModelContext, inp: &ModelInput) -> Vec<Vec<f32>> {
        let mut probes = Probes::new(true);
        m.forward(ctx, inp, &mut probes);
        (0..=m.blocks.len())
            .map(|l| {
                probes.values()[&format!("prune/{l}")]
                    .clone()
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn factors_are_non_negative_and_exactly_zero_at_or_below_epsilon() {
        let ctx = ModelContext::uniform(3, 10, 4, 1, 3, 2);
        let domain = [0u32, 2, 1, 1, 0, 2, 0, 1];
        // ε = 1 with β = 2: Fusion zeroes every factor with σ(α·v) ≤ ½, about half of them.
        for dev in [cpu(), cpu().autodiff()] {
            let cfg = Config {
                epsilon: 1.0,
                ..AdaSparse::tiny()
            };
            let m = AdaSparse::build(&cfg, &ctx, &mut Rng::new(3), &dev).unwrap();
            let inp = input(&ctx, &domain, 4, &dev);
            let all: Vec<f32> = factors(&m, &ctx, &inp).concat();
            let zeros = all.iter().filter(|&&v| v == 0.0).count();
            assert!(all.iter().all(|&v| v == 0.0 || v > 1.0), "{all:?}");
            assert!(zeros > 0 && zeros < all.len(), "{zeros} of {}", all.len());
        }
        // Binarization: exactly 0 or 1, in training too (straight-through keeps the values).
        for dev in [cpu(), cpu().autodiff()] {
            let cfg = Config {
                form: PrunerForm::Binarization,
                epsilon: 0.5,
                ..AdaSparse::tiny()
            };
            let m = AdaSparse::build(&cfg, &ctx, &mut Rng::new(3), &dev).unwrap();
            let all: Vec<f32> = factors(&m, &ctx, &input(&ctx, &domain, 4, &dev)).concat();
            assert!(all.iter().all(|&v| v == 0.0 || v == 1.0), "{all:?}");
            assert!(all.contains(&0.0) && all.contains(&1.0));
        }
        // Scaling: in (0, β).
        let cfg = Config {
            form: PrunerForm::Scaling,
            ..AdaSparse::tiny()
        };
        let m = AdaSparse::build(&cfg, &ctx, &mut Rng::new(3), &cpu()).unwrap();
        let all: Vec<f32> = factors(&m, &ctx, &input(&ctx, &domain, 4, &cpu())).concat();
        assert!(all.iter().all(|&v| v > 0.0 && v < 2.0), "{all:?}");
    }

    #[test]
    fn pruned_neurons_pass_nothing_and_binarization_still_trains_the_pruner() {
        let dev = cpu().autodiff();
        let ctx = ModelContext::uniform(3, 10, 4, 0, 2, 1);
        let cfg = Config {
            form: PrunerForm::Binarization,
            epsilon: 0.5,
            ..AdaSparse::tiny()
        };
        let m = AdaSparse::build(&cfg, &ctx, &mut Rng::new(5), &dev).unwrap();
        let inp = input(&ctx, &[0, 1, 1, 0, 1], 6, &dev);
        let out = m.forward(&ctx, &inp, &mut Probes::new(false));
        let grads = out.logits.sum().backward();
        // The step has no gradient; the straight-through estimator gives the pruner one.
        let g = m.pruners[0]
            .linear
            .weight
            .val()
            .grad(&grads)
            .expect("pruner gradient");
        let g = g.into_data().try_to_vec::<f32>().unwrap();
        assert!(g.iter().any(|&v| v != 0.0));
    }

    #[test]
    fn alpha_anneals_on_training_forwards_only() {
        let ctx = ModelContext::uniform(3, 10, 4, 0, 3, 2);
        let cfg = Config {
            delta_alpha: 0.25,
            alpha_max: Some(1.6),
            ..AdaSparse::tiny()
        };
        let train = cpu().autodiff();
        let m = AdaSparse::build(&cfg, &ctx, &mut Rng::new(3), &train).unwrap();
        assert_eq!(m.alpha(), 1.0);
        let eval_batch = input(&ctx, &[0, 1, 2, 2], 8, &cpu());
        let valid = m.valid();
        let before = valid
            .forward(&ctx, &eval_batch, &mut Probes::new(false))
            .logits;
        // Inference forwards leave α alone and give the same logits every time.
        for _ in 0..3 {
            let again = valid
                .forward(&ctx, &eval_batch, &mut Probes::new(false))
                .logits;
            assert_eq!(
                again.into_data().try_to_vec::<f32>().unwrap(),
                before.clone().into_data().try_to_vec::<f32>().unwrap()
            );
        }
        assert_eq!(valid.alpha(), 1.0);
        assert_eq!(m.alpha(), 1.0);
        // Training forwards advance it by δα each, up to alpha_max.
        let batch = input(&ctx, &[0, 1, 2, 2], 8, &train);
        m.forward(&ctx, &batch, &mut Probes::new(false));
        assert_eq!(m.alpha(), 1.25);
        m.forward(&ctx, &batch, &mut Probes::new(false));
        assert_eq!(m.alpha(), 1.5);
        m.forward(&ctx, &batch, &mut Probes::new(false));
        assert_eq!(m.alpha(), 1.6);
        // An inference copy carries it; evaluating that copy does not move either.
        let valid = m.valid();
        valid.forward(&ctx, &eval_batch, &mut Probes::new(false));
        assert_eq!(valid.alpha(), 1.6);
        assert_eq!(m.alpha(), 1.6);
        assert_eq!(m.report()["alpha"], serde_json::json!(1.6f32));
    }

    #[test]
    fn alpha_survives_a_checkpoint_round_trip() {
        let ctx = ModelContext::uniform(3, 10, 4, 0, 2, 1);
        let train = cpu().autodiff();
        let m = AdaSparse::build(&AdaSparse::tiny(), &ctx, &mut Rng::new(3), &train).unwrap();
        let batch = input(&ctx, &[0, 1, 1], 2, &train);
        for _ in 0..4 {
            m.forward(&ctx, &batch, &mut Probes::new(false));
        }
        let trained = Holder {
            model: Some(m.valid()),
        };
        let named: BTreeMap<String, (Vec<usize>, Vec<f32>)> = trained
            .named_tensors()
            .into_iter()
            .map(|(n, s, v)| (n, (s, v)))
            .collect();
        let alpha = &named["alpha"].1;
        assert!((alpha[0] - 1.0004).abs() < 1e-6, "{alpha:?}");
        let mut fresh = Holder {
            model: Some(
                AdaSparse::build(&AdaSparse::tiny(), &ctx, &mut Rng::new(9), &train).unwrap(),
            ),
        };
        fresh.load_named(&named).unwrap();
        assert_eq!(fresh.model.as_ref().unwrap().alpha(), alpha[0]);
    }

    #[test]
    fn domain_field_is_the_pruner_input_not_pruned() {
        let dev = cpu();
        let mut ctx = ModelContext::uniform(4, 10, 4, 1, 3, 2);
        ctx.fields[1].roles = vec![FieldRole::Domain];
        let m = AdaSparse::build(&AdaSparse::tiny(), &ctx, &mut Rng::new(3), &dev).unwrap();
        assert!(m.domain_emb.from_fields());
        // Fields 0, 2, 3 and the numeric input: columns 0..4 and 8..17.
        assert_eq!(m.agnostic, vec![(0, 4), (8, 9)]);
        let inp = input(&ctx, &[0, 1, 2], 1, &dev);
        let mut probes = Probes::new(true);
        let out = m.forward(&ctx, &inp, &mut probes);
        assert_eq!(out.logits.dims(), [3, 2]);
        assert_eq!(probes.values()["prune/0"].dims(), [3, 13]);
    }

    #[test]
    fn invalid_configs_are_errors() {
        let dev = cpu();
        let ctx = ModelContext::uniform(3, 10, 4, 0, 3, 2);
        let t = AdaSparse::tiny;
        for cfg in [
            Config { beta: 0.0, ..t() },
            Config {
                epsilon: -1.0,
                ..t()
            },
            Config {
                epsilon: 2.0,
                ..t()
            },
            Config {
                form: PrunerForm::Binarization,
                epsilon: 1.0,
                ..t()
            },
            Config {
                alpha: f64::NAN,
                ..t()
            },
            Config {
                delta_alpha: -1e-4,
                ..t()
            },
            Config {
                alpha_max: Some(0.5),
                ..t()
            },
            Config {
                dims: vec![],
                prune_input: false,
                ..t()
            },
            Config {
                dims: vec![4, 0],
                ..t()
            },
            Config {
                domain_emb_dim: 0,
                ..t()
            },
        ] {
            let r = AdaSparse::build(&cfg, &ctx, &mut Rng::new(1), &dev);
            assert!(matches!(r, Err(Invalid(_))), "{cfg:?}");
        }
    }
}
