//! MLP — the single-domain, single-task baseline ("Isolated" / M3oE's "MLP").
//!
//! Paper: M3oE (Zhang et al., SIGIR 2024) §3.2 describes its MLP baseline as "a linear operation
//! with a ReLU activation function and layer normalization", trained per (domain, task).
//! Reference implementation: none in the M3oE repository.
//! Deviations from reference: hidden widths default to M3oE's expert stack `[512, 256, 256, 64]`
//! \[INFERRED\].
//!
//! The model ignores the domain and has one output per task. Its default training setting is
//! [`Setting::Isolated`]: the trainer builds one instance per (domain, task) cell and trains it on
//! that cell's rows only.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::Device;
use mdrec_data::rng::Rng;
use mdrec_nn::init::WeightInit;
use mdrec_nn::layers::linear;
use mdrec_nn::{Mlp, MlpConfig, ModelContext, ModelInput, Norm};

use crate::model::{model_config, Built, ModelOutput, Probes, RecModel, Setting, ZooModel};

model_config! {
    /// Config of [`MlpModel`].
    pub struct Config {
        /// Hidden widths.
        dims: Vec<usize> = vec![512, 256, 256, 64] => vec![16, 8],
        /// Hidden-layer options (LayerNorm by default, as M3oE describes).
        mlp: MlpConfig = MlpConfig { norm: Norm::Layer, ..MlpConfig::default() },
    }
}

/// A plain MLP with one logit per task.
#[derive(Module, Debug)]
pub struct MlpModel {
    mlp: Mlp,
    out: Linear,
}

impl ZooModel for MlpModel {
    const NAME: &'static str = "mlp";
    const PAPER: &'static str =
        "M3oE \"MLP\" baseline (Zhang et al., SIGIR 2024 §3.2); trained per (domain, task)";
    const SETTING: Setting = Setting::Isolated;
    type Config = Config;

    fn build(cfg: &Config, ctx: &ModelContext, rng: &mut Rng, device: &Device) -> Built<Self> {
        let mlp = Mlp::new(ctx.input_dim(), &cfg.dims, &cfg.mlp, rng, device);
        let out = linear(
            mlp.out_dim(),
            ctx.n_tasks(),
            WeightInit::TorchDefault,
            rng,
            device,
        );
        Ok(MlpModel { mlp, out })
    }
}

impl RecModel for MlpModel {
    /// # Shapes
    /// - x: `[B, D_in]` → hidden `[B, h]` → logits `[B, T]`
    fn forward(
        &self,
        _ctx: &ModelContext,
        input: &ModelInput,
        _probes: &mut Probes,
    ) -> ModelOutput {
        let logits = self.out.forward(self.mlp.forward(input.flat()));
        ModelOutput::from(logits)
    }
}
