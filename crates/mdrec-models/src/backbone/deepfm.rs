//! DeepFM — Guo et al., "DeepFM: A Factorization-Machine based Neural Network for CTR
//! Prediction", IJCAI 2017.
//!
//! `logit_t = LR_t(x) + FM(E) + head_t(DNN(x))`: the first-order term, the FM second-order term
//! ([`Fm`]) on the per-field embeddings `E: [B, F, k]` and a DNN on the flat input
//! `x = [emb ; dense]`, all sharing the embeddings. Multi-task multi-domain form: the DNN output
//! feeds [`Heads`] (one `Linear(h, 1)` per task by default — DeepFM's output unit; `heads =
//! "domain_task"` gives one per (domain, task)); the wide terms add to every task's logit (the
//! first-order weights are per task, the FM term is shared).
//!
//! First-order term (`linear`):
//! - `per_feature` (default, the paper's `⟨w, x⟩` over one-hot features): a scalar weight per
//!   feature value and task, served as an extra embedding set `first_order` of width `T`
//!   (sparse row-wise updates like every embedding), plus `Linear(n_numeric → T)` on the numeric
//!   inputs and a per-task bias.
//! - `flat`: `Linear(D_in → T)` on the flat embeddings and numeric inputs (torch-rechub's and
//!   AREAD's `LR` on the flattened embeddings).
//! - `none`.
//!
//! Reference implementation: torch-rechub `models/ranking/deepfm.py` (`LR(F·k) + FM + MLP_BN`),
//! AREAD `model/dfm.py`.
//! Deviations from reference: the first-order term defaults to the paper's per-feature weights
//! (references: `lr_mode = flat` on the embeddings), a multi-hot field contributing the mean of
//! its values' weights (the store mean-pools); numeric inputs go to the DNN and the
//! first-order term, not to the FM (which needs embeddings); several tasks share the FM term and
//! have their own first-order weights and output heads; outputs are logits. Defaults from
//! AREAD: DNN `[256, 128]`, BatchNorm, dropout 0.2. FM needs every field at one embedding
//! width: otherwise the build fails naming the fields.
//!
//! Probes: `fm` (`[B, 1]`), `first_order` (`[B, T]`).
//!
//! # Shapes
//! - x: `[B, D_in]`; E: `[B, F, k]`; FM `[B, 1]`; first order `[B, T]`; DNN `[B, h]`
//! - logits `[B, T]`

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};
use mdrec_data::rng::Rng;
use mdrec_nn::init::{self, WeightInit};
use mdrec_nn::layers::linear;
use mdrec_nn::{EmbeddingSetSpec, Mlp, MlpConfig, ModelContext, ModelInput, Norm};
use serde::{Deserialize, Serialize};

use crate::blocks::heads::{HeadLayout, Heads, HeadsConfig};
use crate::blocks::interaction::{common_dim, dense, stack_fields, Fm};
use crate::model::{model_config, Built, Invalid, ModelOutput, Probes, RecModel, ZooModel};

/// Name of the embedding set holding the per-feature first-order weights.
pub const FIRST_ORDER_SET: &str = "first_order";

/// How the first-order (linear) term is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LinearMode {
    /// A scalar weight per feature value and task (FM's `⟨w, x⟩`), plus a linear map of the
    /// numeric inputs and a bias.
    #[default]
    PerFeature,
    /// `Linear(D_in → T)` on the flat embeddings and numeric inputs (references' `LR`).
    Flat,
    /// No first-order term.
    None,
}

impl LinearMode {
    /// The embedding sets this mode needs (`per_feature`: one set of width `T`).
    pub fn embedding_sets(self, ctx: &ModelContext) -> Vec<EmbeddingSetSpec> {
        match self {
            LinearMode::PerFeature => vec![EmbeddingSetSpec {
                name: FIRST_ORDER_SET.into(),
                dim: Some(ctx.n_tasks()),
                roles: vec![],
            }],
            _ => vec![],
        }
    }
}

/// The first-order term `[B, T]` of DeepFM and xDeepFM (see [`LinearMode`]).
#[derive(Module, Debug)]
pub struct FirstOrder {
    flat: Option<Linear>,
    numeric: Option<Linear>,
    bias: Option<Param<Tensor<1>>>,
    #[module(skip)]
    set: Option<usize>,
    #[module(skip)]
    n_tasks: usize,
}

impl FirstOrder {
    /// The term for `mode`, or `None` for [`LinearMode::None`]. `ctx` must carry the sets of
    /// [`LinearMode::embedding_sets`].
    pub fn new(
        mode: LinearMode,
        ctx: &ModelContext,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Option<Self>, Invalid> {
        let t = ctx.n_tasks();
        Ok(match mode {
            LinearMode::None => None,
            LinearMode::Flat => Some(FirstOrder {
                flat: Some(linear(
                    ctx.input_dim(),
                    t,
                    WeightInit::TorchDefault,
                    rng,
                    device,
                )),
                numeric: None,
                bias: None,
                set: None,
                n_tasks: t,
            }),
            LinearMode::PerFeature => {
                let set = ctx.set_index(FIRST_ORDER_SET).ok_or_else(|| {
                    Invalid(format!(
                        "linear = \"per_feature\" needs the embedding set `{FIRST_ORDER_SET}`"
                    ))
                })?;
                Some(FirstOrder {
                    flat: None,
                    numeric: (ctx.n_numeric > 0)
                        .then(|| dense(ctx.n_numeric, t, false, rng, device)),
                    bias: Some(init::param(vec![0.0; t], [t], device)),
                    set: Some(set),
                    n_tasks: t,
                })
            }
        })
    }

    /// # Shapes
    /// - result: `[B, T]`
    pub fn forward(&self, input: &ModelInput) -> Tensor<2> {
        if let Some(l) = &self.flat {
            return l.forward(input.flat());
        }
        let b = input.batch_size;
        let t = self.n_tasks;
        let set = self.set.expect("per-feature first order has a set");
        let w = input.sets[set].clone(); // [B, F·T]
        let f = w.dims()[1] / t;
        let mut y: Tensor<2> = w.reshape([b, f, t]).sum_dim(1).reshape([b, t]);
        if let (Some(l), Some(d)) = (&self.numeric, &input.dense) {
            y = y + l.forward(d.clone());
        }
        if let Some(bias) = &self.bias {
            y = y + bias.val().unsqueeze::<2>();
        }
        y
    }
}

/// The DNN options shared by the backbones' defaults: `MLP_BN` with dropout 0.2 (AREAD).
pub(crate) fn reference_mlp() -> MlpConfig {
    MlpConfig {
        norm: Norm::Batch,
        dropout: 0.2,
        ..MlpConfig::default()
    }
}

model_config! {
    /// Config of [`DeepFm`].
    pub struct Config {
        /// DNN hidden widths.
        dnn_dims: Vec<usize> = vec![256, 128] => vec![16],
        /// Output heads: tower layout and tower hidden widths.
        heads: HeadsConfig = HeadsConfig::new(HeadLayout::Task, vec![]),
        /// First-order term.
        linear: LinearMode = LinearMode::PerFeature,
        /// Hidden-layer options of the DNN and the heads.
        mlp: MlpConfig = reference_mlp(),
    }
}

/// DeepFM: first-order + FM + DNN.
#[derive(Module, Debug)]
pub struct DeepFm {
    first: Option<FirstOrder>,
    fm: Fm,
    dnn: Mlp,
    heads: Heads,
}

impl ZooModel for DeepFm {
    const NAME: &'static str = "deepfm";
    const PAPER: &'static str = "Guo et al., DeepFM: A Factorization-Machine based Neural Network for CTR Prediction, IJCAI 2017";
    type Config = Config;

    fn embedding_sets(cfg: &Config, ctx: &ModelContext) -> Result<Vec<EmbeddingSetSpec>, Invalid> {
        Ok(cfg.linear.embedding_sets(ctx))
    }

    fn build(cfg: &Config, ctx: &ModelContext, rng: &mut Rng, device: &Device) -> Built<Self> {
        let invalid = Invalid;
        if cfg.dnn_dims.is_empty() {
            return Err(invalid("dnn_dims must not be empty".into()));
        }
        let k = common_dim(&ctx.fields, "the FM term").map_err(invalid)?;
        let first = FirstOrder::new(cfg.linear, ctx, rng, device)?;
        let dnn = Mlp::new(ctx.input_dim(), &cfg.dnn_dims, &cfg.mlp, rng, device);
        let heads = Heads::new(&cfg.heads, ctx, dnn.out_dim(), &cfg.mlp, rng, device);
        Ok(DeepFm {
            first,
            fm: Fm::new(k, true),
            dnn,
            heads,
        })
    }
}

impl RecModel for DeepFm {
    /// # Shapes
    /// - x: `[B, D_in]`, E: `[B, F, k]` → FM `[B, 1]`, first order `[B, T]`, DNN `[B, h]` →
    ///   logits `[B, T]`
    fn forward(&self, ctx: &ModelContext, input: &ModelInput, probes: &mut Probes) -> ModelOutput {
        let h = self.dnn.forward(input.flat());
        let mut logits = self.heads.forward_shared(input, &h);
        let fm = self
            .fm
            .forward(stack_fields(input.emb.clone(), &ctx.fields));
        probes.record(|| crate::ProbeKey::other("fm"), || fm.clone());
        logits = logits + fm;
        if let Some(first) = &self.first {
            let y1 = first.forward(input);
            probes.record(|| crate::ProbeKey::other("first_order"), || y1.clone());
            logits = logits + y1;
        }
        ModelOutput::from(logits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mdrec_nn::device::cpu;
    use mdrec_nn::input::Routing;

    fn input(ctx: &ModelContext, b: usize, seed: u64, device: &Device) -> ModelInput {
        let mut rng = Rng::new(seed);
        let domain: Vec<u32> = (0..b as u32).map(|i| i % ctx.n_domains() as u32).collect();
        let emb = init::tensor(
            init::normal(&mut rng, b * ctx.emb_dim(), 1.0),
            [b, ctx.emb_dim()],
            device,
        );
        let dense = (ctx.n_numeric > 0).then(|| {
            init::tensor(
                init::normal(&mut rng, b * ctx.n_numeric, 1.0),
                [b, ctx.n_numeric],
                device,
            )
        });
        let sets = ctx
            .sets
            .iter()
            .map(|s| {
                init::tensor(
                    init::normal(&mut rng, b * s.width(), 1.0),
                    [b, s.width()],
                    device,
                )
            })
            .collect();
        ModelInput {
            batch_size: b,
            emb,
            dense,
            domain: domain.clone(),
            routing: Routing::new(&domain, ctx.n_domains(), device),
            sets,
            seq_masks: vec![],
        }
    }

    #[test]
    fn per_feature_first_order_sums_the_weights_of_each_field() {
        let dev = cpu();
        let base = ModelContext::uniform(3, 10, 4, 2, 2, 2);
        let cfg = Config::default();
        let ctx = base
            .with_sets(&DeepFm::embedding_sets(&cfg, &base).unwrap())
            .unwrap();
        assert_eq!(ctx.sets[0].width(), 3 * 2);
        let m = DeepFm::build(&cfg, &ctx, &mut Rng::new(1), &dev).unwrap();
        let inp = input(&ctx, 5, 2, &dev);
        let first = m.first.as_ref().unwrap();
        let got = first.forward(&inp).into_data().try_to_vec::<f32>().unwrap();
        let w = inp.sets[0].clone().into_data().try_to_vec::<f32>().unwrap();
        let x = inp
            .dense
            .clone()
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let wn = first
            .numeric
            .as_ref()
            .unwrap()
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap(); // [2, T]
        for r in 0..5 {
            for t in 0..2 {
                let mut want: f32 = (0..3).map(|f| w[r * 6 + f * 2 + t]).sum();
                want += (0..2).map(|i| x[r * 2 + i] * wn[i * 2 + t]).sum::<f32>();
                assert!((got[r * 2 + t] - want).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn unequal_field_widths_are_an_error_naming_the_fields() {
        let dev = cpu();
        let mut ctx = ModelContext::uniform(3, 10, 4, 0, 1, 1);
        ctx.fields[2].dim = 8;
        let cfg = Config {
            linear: LinearMode::Flat,
            ..Config::default()
        };
        let err = DeepFm::build(&cfg, &ctx, &mut Rng::new(1), &dev)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("`f2` (8)"), "{err}");
    }

    #[test]
    fn logits_are_heads_plus_fm_plus_first_order() {
        let dev = cpu();
        let ctx = ModelContext::uniform(3, 10, 4, 1, 2, 2);
        let cfg = Config {
            linear: LinearMode::Flat,
            mlp: MlpConfig::default(),
            ..Config::default()
        };
        let m = DeepFm::build(&cfg, &ctx, &mut Rng::new(1), &dev).unwrap();
        let inp = input(&ctx, 6, 3, &dev);
        let mut probes = Probes::new(true);
        let out = m.forward(&ctx, &inp, &mut probes).logits;
        assert_eq!(out.dims(), [6, 2]);
        let host = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
        // Every term by hand from the input and the parameters: the deep part ...
        let h = m.dnn.forward(inp.flat());
        let deep = host(m.heads.forward(&inp, |_, _| h.clone()));
        let emb = host(inp.emb.clone()); // [6, 3 fields · 4]
        let flat = host(inp.flat()); // [6, 12 + 1]
        let lin = m.first.as_ref().unwrap().flat.as_ref().unwrap();
        let w = host(lin.weight.val()); // [13, 2]
        let bias = lin
            .bias
            .as_ref()
            .unwrap()
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let got = host(out);
        for r in 0..6 {
            // ... the FM term Σ_{i<j} ⟨e_i, e_j⟩ over the three fields ...
            let e = |f: usize, d: usize| emb[r * 12 + f * 4 + d];
            let mut fm = 0.0;
            for i in 0..3 {
                for j in i + 1..3 {
                    fm += (0..4).map(|d| e(i, d) * e(j, d)).sum::<f32>();
                }
            }
            for t in 0..2 {
                // ... and the flat first-order term x·W + b.
                let first: f32 = bias[t]
                    + (0..13)
                        .map(|i| flat[r * 13 + i] * w[i * 2 + t])
                        .sum::<f32>();
                let want = deep[r * 2 + t] + fm + first;
                let g = got[r * 2 + t];
                assert!((g - want).abs() < 1e-4, "row {r} task {t}: {g} vs {want}");
            }
        }
    }
}
