//! AutoInt — Song et al., "AutoInt: Automatic Feature Interaction Learning via Self-Attentive
//! Neural Networks", CIKM 2019.
//!
//! Every field is one attention token: categorical fields are their embeddings, numeric input
//! `m` is `x_m · v_m` with a learned vector `v_m` (paper §4.2). `layers` interacting layers
//! ([`InteractingLayer`]: `num_heads` heads of width `head_dim`, residual `W_Res`, ReLU) run over
//! the tokens of each row; the flattened output `[e^Res_1 ⊕ … ⊕ e^Res_M]` feeds [`Heads`], whose
//! default `Linear(M·H·d', 1)` per task is the paper's output layer. With non-empty `dnn_dims`
//! the model is AutoInt+: a DNN on the flat input runs in parallel and its output is
//! concatenated to the attention output before the heads. One head per task by default
//! (`heads = "domain_task"` gives one per (domain, task)).
//!
//! Field widths (`projection`): `none` feeds the embeddings to the first layer as they are
//! (the paper; every field needs the same width), `per_field` first maps each field with its own
//! `Linear(d_f → H·d')` (fields of any width; AREAD projects every field with one shared
//! `Linear(k → 64)`), `auto` (default) is `none` when the widths agree and `per_field`
//! otherwise.
//!
//! Reference implementation: AREAD `model/layer.py::build_atten / atten_forward` (`Linear(k→64)`,
//! 3 × `MultiheadAttention(64, 2 heads)`, residual, ReLU, `Linear(F·64 → 1)`); torch-rechub
//! `models/ranking/autoint.py` (+ LR + optional MLP); DeepCTR-Torch `InteractingLayer`.
//! Deviations from reference: the paper's layer is used (no in/out-projection biases, no output
//! projection, unscaled scores unless `scaled = true`) instead of `nn.MultiheadAttention`; no
//! first-order LR term (torch-rechub adds one); several tasks share the attention stack and have
//! their own heads; outputs are logits. Defaults from the paper: 3 layers, 2 heads of width 32,
//! residual on, AutoInt without the DNN.
//!
//! Probes: `attention/<l>` (layer `l`'s attention weights, `[B, H·M·M]`).
//!
//! # Shapes
//! - tokens `[B, M, d_0]` (M = F + n_numeric); layer `l` → `[B, M, H·d']`
//! - representation `[B, M·H·d']` (+ DNN `[B, h]`) → logits `[B, T]`

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};
use mdrec_data::rng::Rng;
use mdrec_nn::init::{self, WeightInit};
use mdrec_nn::{Mlp, MlpConfig, ModelContext, ModelInput};
use serde::{Deserialize, Serialize};

use crate::backbone::deepfm::reference_mlp;
use crate::blocks::heads::{HeadLayout, Heads, HeadsConfig};
use crate::blocks::interaction::{common_dim, stack_fields, FieldProjection, InteractingLayer};
use crate::model::{model_config, Built, Invalid, ModelOutput, Probes, RecModel, ZooModel};

/// How fields reach the first attention layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Projection {
    /// `none` when every field has the same width, `per_field` otherwise.
    #[default]
    Auto,
    /// The embeddings as they are (every field needs the same width).
    None,
    /// One `Linear(d_f → num_heads · head_dim)` per field.
    PerField,
}

model_config! {
    /// Config of [`AutoInt`].
    pub struct Config {
        /// Number of interacting layers.
        layers: usize = 3 => 2,
        /// Attention heads per layer.
        num_heads: usize = 2,
        /// Width `d'` of each head.
        head_dim: usize = 32 => 4,
        /// Residual `W_Res e_m` in every layer.
        residual: bool = true,
        /// Divide attention scores by √d' (the paper does not).
        scaled: bool = false,
        /// Dropout on the attention weights (training only).
        attention_dropout: f64 = 0.0,
        /// How fields reach the first layer.
        projection: Projection = Projection::Auto,
        /// DNN widths of AutoInt+ (empty: AutoInt).
        dnn_dims: Vec<usize> = vec![],
        /// Output heads: tower layout and tower hidden widths.
        heads: HeadsConfig = HeadsConfig::new(HeadLayout::Task, vec![]),
        /// Hidden-layer options of the DNN and the heads.
        mlp: MlpConfig = reference_mlp(),
    }
}

/// AutoInt / AutoInt+.
#[derive(Module, Debug)]
pub struct AutoInt {
    projection: Option<FieldProjection>,
    numeric: Option<Param<Tensor<2>>>,
    layers: Vec<InteractingLayer>,
    dnn: Option<Mlp>,
    heads: Heads,
}

impl AutoInt {
    /// The attention tokens of a batch.
    ///
    /// # Shapes
    /// - result: `[B, F + n_numeric, d_0]`
    fn tokens(&self, ctx: &ModelContext, input: &ModelInput) -> Tensor<3> {
        let e = match &self.projection {
            Some(p) => p.forward(input.emb.clone()),
            None => stack_fields(input.emb.clone(), &ctx.fields),
        };
        match (&self.numeric, &input.dense) {
            (Some(v), Some(x)) => {
                let x: Tensor<3> = x.clone().unsqueeze_dim(2); // [B, n, 1]
                let v: Tensor<3> = v.val().unsqueeze(); // [1, n, d_0]
                Tensor::cat(vec![e, x * v], 1)
            }
            _ => e,
        }
    }
}

impl ZooModel for AutoInt {
    const NAME: &'static str = "autoint";
    const PAPER: &'static str = "Song et al., AutoInt: Automatic Feature Interaction Learning via Self-Attentive Neural Networks, CIKM 2019";
    type Config = Config;

    fn build(cfg: &Config, ctx: &ModelContext, rng: &mut Rng, device: &Device) -> Built<Self> {
        let invalid = Invalid;
        if cfg.layers == 0 {
            return Err(invalid("layers must be ≥ 1".into()));
        }
        if ctx.fields.is_empty() {
            return Err(invalid("AutoInt needs at least one embedded field".into()));
        }
        let width = cfg.num_heads * cfg.head_dim;
        let equal = common_dim(&ctx.fields, "projection = \"none\"");
        let per_field = match (cfg.projection, &equal) {
            (Projection::PerField, _) | (Projection::Auto, Err(_)) => true,
            (Projection::None, Err(e)) => {
                return Err(invalid(format!("{e}, or use projection = \"per_field\"")))
            }
            _ => false,
        };
        if width == 0 {
            return Err(invalid(format!(
                "num_heads and head_dim must be ≥ 1 (got {} and {})",
                cfg.num_heads, cfg.head_dim
            )));
        }
        let projection = per_field.then(|| FieldProjection::new(&ctx.fields, width, rng, device));
        let d0 = match (&projection, equal) {
            (Some(p), _) => p.out_dim(),
            (None, Ok(k)) => k,
            (None, Err(e)) => return Err(invalid(e)),
        };
        let n = ctx.n_numeric;
        // PyTorch `Linear(1, d_0, bias=False)` per numeric input (torch-rechub): U(±1).
        let numeric = (n > 0).then(|| {
            init::param(
                init::weight(rng, 1, n * d0, WeightInit::TorchDefault),
                [n, d0],
                device,
            )
        });
        let mut layers = Vec::with_capacity(cfg.layers);
        let mut d_in = d0;
        for _ in 0..cfg.layers {
            let l = InteractingLayer::new(
                d_in,
                cfg.num_heads,
                cfg.head_dim,
                cfg.residual,
                cfg.scaled,
                cfg.attention_dropout,
                rng,
                device,
            )
            .map_err(invalid)?;
            d_in = l.out_dim();
            layers.push(l);
        }
        let tokens = ctx.fields.len() + n;
        let dnn = (!cfg.dnn_dims.is_empty())
            .then(|| Mlp::new(ctx.input_dim(), &cfg.dnn_dims, &cfg.mlp, rng, device));
        let rep = tokens * d_in + dnn.as_ref().map_or(0, Mlp::out_dim);
        let heads = Heads::new(&cfg.heads, ctx, rep, &cfg.mlp, rng, device);
        Ok(AutoInt {
            projection,
            numeric,
            layers,
            dnn,
            heads,
        })
    }
}

impl RecModel for AutoInt {
    /// # Shapes
    /// - tokens `[B, M, d_0]` → attention `[B, M, H·d']` → flat `[B, M·H·d']` (+ DNN `[B, h]`)
    ///   → logits `[B, T]`
    fn forward(&self, ctx: &ModelContext, input: &ModelInput, probes: &mut Probes) -> ModelOutput {
        let mut x = self.tokens(ctx, input);
        let b = input.batch_size;
        for (l, layer) in self.layers.iter().enumerate() {
            let (out, w) = layer.forward_with_weights(x);
            probes.record(
                || crate::ProbeKey::other(format!("attention/{l}")),
                || {
                    let n = w.dims().iter().product::<usize>() / b;
                    w.reshape([b, n])
                },
            );
            x = out;
        }
        let [_, m, h] = x.dims();
        let mut z: Tensor<2> = x.reshape([b, m * h]);
        if let Some(dnn) = &self.dnn {
            z = Tensor::cat(vec![z, dnn.forward(input.flat())], 1);
        }
        let logits = self.heads.forward_shared(input, &z);
        ModelOutput::from(logits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mdrec_nn::device::cpu;

    #[test]
    fn unequal_widths_use_per_field_projections_unless_told_not_to() {
        let dev = cpu();
        let mut ctx = ModelContext::uniform(3, 10, 4, 2, 2, 2);
        ctx.fields[1].dim = 6;
        ctx.fields[2].offset = 10;
        let m = AutoInt::build(&AutoInt::tiny(), &ctx, &mut Rng::new(1), &dev).unwrap();
        assert!(m.projection.is_some());
        let emb = init::tensor(vec![0.5; 3 * 14], [3, 14], &dev);
        let dense = init::tensor(vec![1.0; 3 * 2], [3, 2], &dev);
        let input = ModelInput::new(emb, Some(dense), vec![0, 1, 0], 2);
        let out = m.forward(&ctx, &input, &mut Probes::new(true));
        assert_eq!(out.logits.dims(), [3, 2]);
        // 3 fields + 2 numeric tokens.
        let cfg = Config {
            projection: Projection::None,
            ..AutoInt::tiny()
        };
        let err = AutoInt::build(&cfg, &ctx, &mut Rng::new(1), &dev)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("`f1` (6)") && err.contains("per_field"),
            "{err}"
        );
        // Equal widths: no projection by default.
        let ctx = ModelContext::uniform(3, 10, 4, 0, 1, 1);
        let m = AutoInt::build(&AutoInt::tiny(), &ctx, &mut Rng::new(1), &dev).unwrap();
        assert!(m.projection.is_none());
    }

    #[test]
    fn numeric_inputs_are_tokens() {
        let dev = cpu();
        let ctx = ModelContext::uniform(2, 10, 4, 1, 1, 1);
        let m = AutoInt::build(&AutoInt::tiny(), &ctx, &mut Rng::new(1), &dev).unwrap();
        let emb = init::tensor((0..16).map(|v| v as f32).collect(), [2, 8], &dev);
        let dense = init::tensor(vec![2.0, -1.0], [2, 1], &dev);
        let input = ModelInput::new(emb, Some(dense), vec![0, 0], 1);
        let t = m.tokens(&ctx, &input);
        assert_eq!(t.dims(), [2, 3, 4]);
        let v = m
            .numeric
            .as_ref()
            .unwrap()
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let got = t.into_data().try_to_vec::<f32>().unwrap();
        // Row 1, token 2 = x · v = −v.
        for (i, vi) in v.iter().enumerate() {
            assert_eq!(got[12 + 8 + i], -vi);
        }
        assert_eq!(&got[..8], &[0., 1., 2., 3., 4., 5., 6., 7.]);
    }
}
