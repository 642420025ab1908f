//! SharedBottom — Caruana, "Multitask Learning", Machine Learning 1997; the multi-domain
//! multi-task form of M3oE Table 2 ("ShBot-MTMD"): one shared bottom MLP and a tower per
//! (domain, task).
//!
//! Reference implementation: torch-rechub `models/multi_task/shared_bottom.py` (MTL) and
//! Scenario-Wise-Rec `models/multi_domain/sharebottom.py` (MDL)
//! Deviations from reference: towers run on their domain's rows only (the references run every
//! tower on the whole batch and select with `where`); outputs are logits. With `norm = "batch"`
//! this changes tower BatchNorm statistics from whole-batch to per-domain.
//! Defaults: Scenario-Wise-Rec MovieLens (bottom `[128]`, tower `[8]`, no norm by default).

use burn::module::Module;
use burn::tensor::Device;
use mdrec_data::rng::Rng;
use mdrec_nn::{Mlp, MlpConfig, ModelContext, ModelInput};

use crate::blocks::heads::{HeadLayout, Heads, HeadsConfig};
use crate::model::{ensure, model_config, Built, Invalid, ModelOutput, Probes, RecModel, ZooModel};

model_config! {
    /// Config of [`SharedBottom`].
    pub struct Config {
        /// Shared bottom widths.
        bottom_dims: Vec<usize> = vec![128] => vec![16],
        /// Output heads: tower layout and tower hidden widths.
        heads: HeadsConfig = HeadsConfig::new(HeadLayout::DomainTask, vec![8]) => HeadsConfig::new(HeadLayout::DomainTask, vec![4]),
        /// Hidden-layer options for bottom and towers.
        mlp: MlpConfig = MlpConfig::default(),
    }
}

/// Shared bottom + per-head towers.
#[derive(Module, Debug)]
pub struct SharedBottom {
    bottom: Mlp,
    heads: Heads,
}

impl ZooModel for SharedBottom {
    const NAME: &'static str = "shared_bottom";
    const PAPER: &'static str =
        "Caruana, Multitask Learning, Machine Learning 1997 (MDMT form as in M3oE Table 2)";
    type Config = Config;

    fn validate(cfg: &Config) -> Result<(), Invalid> {
        ensure(!cfg.bottom_dims.is_empty(), "bottom_dims must not be empty")
    }

    fn build(cfg: &Config, ctx: &ModelContext, rng: &mut Rng, device: &Device) -> Built<Self> {
        let bottom = Mlp::new(ctx.input_dim(), &cfg.bottom_dims, &cfg.mlp, rng, device);
        let heads = Heads::new(&cfg.heads, ctx, bottom.out_dim(), &cfg.mlp, rng, device);
        Ok(SharedBottom { bottom, heads })
    }
}

impl RecModel for SharedBottom {
    /// # Shapes
    /// - x: `[B, D_in]` → bottom `[B, H]` → per head on its rows `[n_d, H]` → logits `[B, T]`
    fn forward(
        &self,
        _ctx: &ModelContext,
        input: &ModelInput,
        _probes: &mut Probes,
    ) -> ModelOutput {
        let h = self.bottom.forward(input.flat());
        let logits = self.heads.forward_shared(input, &h);
        ModelOutput::from(logits)
    }
}
