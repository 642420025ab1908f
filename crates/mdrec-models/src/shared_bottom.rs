//! SharedBottom — Caruana, "Multitask Learning", Machine Learning 1997; the multi-domain
//! multi-task form of M3oE Table 2 ("ShBot-MTMD"): one shared bottom MLP and a tower per
//! (domain, task).
//!
//! Reference implementation: torch-rechub `models/multi_task/shared_bottom.py` (MTL) and
//! Scenario-Wise-Rec `models/multi_domain/sharebottom.py` (MDL), model-spec §4.2.
//! Deviations from reference: towers run on their domain's rows only (the references run every
//! tower on the whole batch and select with `where`); outputs are logits. With `norm = "batch"`
//! this changes tower BatchNorm statistics from whole-batch to per-domain (model-spec §1.3).
//! Defaults: Scenario-Wise-Rec MovieLens (bottom `[128]`, tower `[8]`, no norm by default).

use burn::module::Module;
use burn::tensor::Device;
use mdrec_data::rng::Rng;
use mdrec_nn::{Mlp, MlpConfig, ModelContext, ModelInput};
use serde::{Deserialize, Serialize};

use crate::heads::{HeadLayout, Heads};
use crate::model::{ModelError, ModelOutput, Probes, RecModel, ZooModel};

/// Config of [`SharedBottom`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Shared bottom widths.
    pub bottom_dims: Vec<usize>,
    /// Tower hidden widths (before the 1-unit output).
    pub tower_dims: Vec<usize>,
    /// Towers per (domain, task) or per task.
    pub heads: HeadLayout,
    /// Hidden-layer options for bottom and towers.
    pub mlp: MlpConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bottom_dims: vec![128],
            tower_dims: vec![8],
            heads: HeadLayout::DomainTask,
            mlp: MlpConfig::default(),
        }
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

    fn tiny() -> Config {
        Config {
            bottom_dims: vec![16],
            tower_dims: vec![4],
            ..Config::default()
        }
    }

    fn build(
        cfg: &Config,
        ctx: &ModelContext,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Self, ModelError> {
        if cfg.bottom_dims.is_empty() {
            return Err(ModelError::Invalid {
                model: Self::NAME.into(),
                message: "bottom_dims must not be empty".into(),
            });
        }
        let bottom = Mlp::new(ctx.input_dim(), &cfg.bottom_dims, &cfg.mlp, rng, device);
        let heads = Heads::new(
            cfg.heads,
            ctx.n_domains(),
            ctx.n_tasks(),
            bottom.out_dim(),
            &cfg.tower_dims,
            &cfg.mlp,
            rng,
            device,
        );
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
        let logits = self.heads.forward(input, |group, _t| match group {
            Some(d) => input.rows_of(h.clone(), d),
            None => h.clone(),
        });
        ModelOutput {
            logits,
            aux_loss: None,
        }
    }
}
