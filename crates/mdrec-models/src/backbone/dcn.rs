//! DCN — Wang et al., "Deep & Cross Network for Ad Click Predictions", ADKDD 2017
//!.
//!
//! `x_0 = [emb ; dense]`; cross network `x_{l+1} = x_0 (w_lᵀ x_l) + b_l + x_l` ([`CrossNet`]) and
//! a DNN on `x_0` in parallel; the combination `[x_L ; h]` feeds [`Heads`]: with the default
//! empty `tower_dims` each head is the paper's combination layer `Linear(D + h → 1)`. One head
//! per task by default (`heads = "domain_task"` gives one per (domain, task)).
//!
//! Reference implementation: torch-rechub `models/ranking/dcn.py` + `basic/layers.py::CrossNetwork`
//! (`y = Linear([x_L ; h])`), AREAD `model/dcn.py`.
//! Deviations from reference: AREAD's extra `Linear(x)` term is not added (paper and
//! torch-rechub form); several tasks share the cross network and the DNN and have their own
//! heads; outputs are logits. Defaults from AREAD: 3 cross layers, DNN `[256, 128, 64]`,
//! BatchNorm, dropout 0.2.
//!
//! Probes: `cross` (`x_L`, `[B, D]`).
//!
//! # Shapes
//! - x_0: `[B, D]` (D = Σ dim_f + n_numeric); x_L `[B, D]`; DNN `[B, h]`; combination
//!   `[B, D + h]`; logits `[B, T]`

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use mdrec_data::rng::Rng;
use mdrec_nn::{Mlp, MlpConfig, ModelContext, ModelInput};

use crate::backbone::deepfm::reference_mlp;
use crate::blocks::heads::{HeadLayout, Heads, HeadsConfig};
use crate::blocks::interaction::CrossNet;
use crate::model::{model_config, Built, Invalid, ModelOutput, Probes, RecModel, ZooModel};

model_config! {
    /// Config of [`Dcn`].
    pub struct Config {
        /// Number of cross layers.
        cross_layers: usize = 3 => 2,
        /// DNN hidden widths.
        dnn_dims: Vec<usize> = vec![256, 128, 64] => vec![16],
        /// Output heads: tower layout and tower hidden widths.
        heads: HeadsConfig = HeadsConfig::new(HeadLayout::Task, vec![]),
        /// Hidden-layer options of the DNN and the heads.
        mlp: MlpConfig = reference_mlp(),
    }
}

/// Deep & Cross Network (v1).
#[derive(Module, Debug)]
pub struct Dcn {
    cross: CrossNet,
    dnn: Mlp,
    heads: Heads,
}

impl ZooModel for Dcn {
    const NAME: &'static str = "dcn";
    const PAPER: &'static str =
        "Wang et al., Deep & Cross Network for Ad Click Predictions, ADKDD 2017";
    type Config = Config;

    fn validate(cfg: &Config) -> Result<(), Invalid> {
        if cfg.cross_layers == 0 || cfg.dnn_dims.is_empty() {
            return Err(Invalid(
                "cross_layers must be ≥ 1 and dnn_dims non-empty".into(),
            ));
        }
        Ok(())
    }

    fn build(cfg: &Config, ctx: &ModelContext, rng: &mut Rng, device: &Device) -> Built<Self> {
        let d = ctx.input_dim();
        let cross = CrossNet::new(d, cfg.cross_layers, rng, device);
        let dnn = Mlp::new(d, &cfg.dnn_dims, &cfg.mlp, rng, device);
        let heads = Heads::new(&cfg.heads, ctx, d + dnn.out_dim(), &cfg.mlp, rng, device);
        Ok(Dcn { cross, dnn, heads })
    }
}

impl RecModel for Dcn {
    /// # Shapes
    /// - x_0: `[B, D]` → `[x_L ; h]`: `[B, D + h]` → logits `[B, T]`
    fn forward(&self, _ctx: &ModelContext, input: &ModelInput, probes: &mut Probes) -> ModelOutput {
        let x0 = input.flat();
        let xl = self.cross.forward(x0.clone());
        probes.record(|| crate::ProbeKey::other("cross"), || xl.clone());
        let z = Tensor::cat(vec![xl, self.dnn.forward(x0)], 1);
        let logits = self.heads.forward_shared(input, &z);
        ModelOutput::from(logits)
    }
}
