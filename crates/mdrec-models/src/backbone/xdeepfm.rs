//! xDeepFM — Lian et al., "xDeepFM: Combining Explicit and Implicit Feature Interactions for
//! Recommender Systems", KDD 2018.
//!
//! `logit_t = LR_t(x) + head_t([p⁺ ; DNN(x)])`: a first-order term (as [`crate::backbone::deepfm`]), a
//! Compressed Interaction Network ([`Cin`]) on the per-field embeddings `X^0: [B, m, k]` whose
//! sum-pooled feature maps form `p⁺`, and a DNN on the flat input `x = [emb ; dense]`. With the
//! default empty `tower_dims` each head is the paper's output unit
//! `w_dnnᵀ x_dnn + w_cinᵀ p⁺ + b` (Eq. 8); the first-order term adds to every task's logit. One
//! head per task by default (`heads = "domain_task"` gives one per (domain, task)).
//!
//! Reference implementation: the authors' TensorFlow code (Leavingseason/xDeepFM
//! `exDeepFM.py::_build_extra_cin`, also Microsoft Recommenders' port): 1×1 convolutions over the
//! outer products, bias on, `cross_activation = identity`, `SPLIT_HALF = True`; DeepCTR-Torch
//! `layers/interaction.py::CIN` (ReLU by default).
//! Deviations from reference: the first-order term defaults to per-feature weights served as an
//! embedding set (see [`crate::backbone::deepfm::LinearMode`]; `linear = "flat"` is a linear map of the
//! flat input); weights are drawn as PyTorch's `Conv1d` / `Linear` (U(±1/√fan_in)), CIN biases
//! start at zero; numeric inputs go to the DNN and the first-order term, not to the CIN; several
//! tasks share the CIN and the DNN and have their own heads and first-order weights; outputs
//! are logits. Defaults: CIN `[128, 128]` with `split_half`, identity activation, bias; DNN
//! `[256, 128]` with BatchNorm and dropout 0.2 (as the other backbones here; the paper used
//! 400-400). The CIN needs every field at one embedding width: otherwise the build fails naming
//! the fields.
//!
//! Probes: `cin` (`p⁺`, `[B, Σ H'_l]`), `first_order` (`[B, T]`).
//!
//! # Shapes
//! - x: `[B, D_in]`; X^0 `[B, m, k]`; p⁺ `[B, Σ H'_l]`; DNN `[B, h]`; first order `[B, T]`
//! - logits `[B, T]`

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use mdrec_data::rng::Rng;
use mdrec_nn::{Activation, EmbeddingSetSpec, Mlp, MlpConfig, ModelContext, ModelInput};

use crate::backbone::deepfm::{reference_mlp, FirstOrder, LinearMode};
use crate::blocks::heads::{HeadLayout, Heads, HeadsConfig};
use crate::blocks::interaction::{common_dim, stack_fields, Cin};
use crate::model::{model_config, Built, Invalid, ModelOutput, Probes, RecModel, ZooModel};

model_config! {
    /// Config of [`XDeepFm`].
    pub struct Config {
        /// Feature maps per CIN layer.
        cin_dims: Vec<usize> = vec![128, 128] => vec![4, 3],
        /// Every CIN layer but the last sends half its maps to the output and half on.
        split_half: bool = true,
        /// Bias in the CIN layers.
        cin_bias: bool = true,
        /// CIN activation (`none` = identity, the authors' default).
        cin_activation: Activation = Activation::None,
        /// DNN hidden widths (empty: no DNN, "CIN + linear").
        dnn_dims: Vec<usize> = vec![256, 128] => vec![16],
        /// Output heads: tower layout and tower hidden widths.
        heads: HeadsConfig = HeadsConfig::new(HeadLayout::Task, vec![]),
        /// First-order term.
        linear: LinearMode = LinearMode::PerFeature,
        /// Hidden-layer options of the DNN and the heads.
        mlp: MlpConfig = reference_mlp(),
    }
}

/// xDeepFM: first-order + CIN + DNN.
#[derive(Module, Debug)]
pub struct XDeepFm {
    first: Option<FirstOrder>,
    cin: Cin,
    dnn: Option<Mlp>,
    heads: Heads,
}

impl ZooModel for XDeepFm {
    const NAME: &'static str = "xdeepfm";
    const PAPER: &'static str = "Lian et al., xDeepFM: Combining Explicit and Implicit Feature Interactions for Recommender Systems, KDD 2018";
    type Config = Config;

    fn embedding_sets(cfg: &Config, ctx: &ModelContext) -> Result<Vec<EmbeddingSetSpec>, Invalid> {
        Ok(cfg.linear.embedding_sets(ctx))
    }

    fn build(cfg: &Config, ctx: &ModelContext, rng: &mut Rng, device: &Device) -> Built<Self> {
        let invalid = Invalid;
        common_dim(&ctx.fields, "the CIN").map_err(invalid)?;
        let first = FirstOrder::new(cfg.linear, ctx, rng, device)?;
        let cin = Cin::new(
            ctx.fields.len(),
            &cfg.cin_dims,
            cfg.split_half,
            cfg.cin_bias,
            cfg.cin_activation,
            rng,
            device,
        )
        .map_err(invalid)?;
        let dnn = (!cfg.dnn_dims.is_empty())
            .then(|| Mlp::new(ctx.input_dim(), &cfg.dnn_dims, &cfg.mlp, rng, device));
        let heads = Heads::new(
            &cfg.heads,
            ctx,
            cin.out_dim() + dnn.as_ref().map_or(0, Mlp::out_dim),
            &cfg.mlp,
            rng,
            device,
        );
        Ok(XDeepFm {
            first,
            cin,
            dnn,
            heads,
        })
    }
}

impl RecModel for XDeepFm {
    /// # Shapes
    /// - X^0 `[B, m, k]` → p⁺ `[B, Σ H'_l]`; x `[B, D_in]` → DNN `[B, h]`;
    ///   `[p⁺ ; h]` → logits `[B, T]` (+ first order `[B, T]`)
    fn forward(&self, ctx: &ModelContext, input: &ModelInput, probes: &mut Probes) -> ModelOutput {
        let p = self
            .cin
            .forward(stack_fields(input.emb.clone(), &ctx.fields));
        probes.record(|| crate::ProbeKey::other("cin"), || p.clone());
        let z = match &self.dnn {
            Some(dnn) => Tensor::cat(vec![p, dnn.forward(input.flat())], 1),
            None => p,
        };
        let mut logits = self.heads.forward_shared(input, &z);
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

    #[test]
    fn bad_cin_configs_are_errors_naming_the_problem() {
        let dev = cpu();
        let ctx = ModelContext::uniform(3, 10, 4, 0, 1, 1);
        let cfg = Config {
            cin_dims: vec![5, 4],
            linear: LinearMode::Flat,
            ..Config::default()
        };
        let err = XDeepFm::build(&cfg, &ctx, &mut Rng::new(1), &dev)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("even"), "{err}");
        let mut ctx2 = ctx.clone();
        ctx2.fields[0].dim = 2;
        let cfg = Config {
            linear: LinearMode::Flat,
            ..Config::default()
        };
        let err = XDeepFm::build(&cfg, &ctx2, &mut Rng::new(1), &dev)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("CIN") && err.contains("`f1` (4)"), "{err}");
    }
}
