//! MMoE — Ma et al., "Modeling Task Relationships in Multi-task Learning with Multi-gate
//! Mixture-of-Experts", KDD 2018. Multi-domain multi-task form ("MMoE-MTMD" in M3oE Table 2):
//! shared experts, one gate and one tower per (domain, task) head.
//!
//! Reference implementation: torch-rechub `models/multi_task/mmoe.py`, Scenario-Wise-Rec
//! `models/multi_domain/mmoe.py` (model-spec §4.3).
//! Deviations from reference: gates default to the paper's `softmax(Linear(x))`
//! (`gate = "linear_bn"` gives torch-rechub's BN-before-softmax); experts run once on the whole
//! batch, gates and towers on their domain's rows only; outputs are logits.
//!
//! Probes: `gate/<domain>/<task>` (`[n_d, E]`) and `expert/<e>` (`[B, H]`).

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use mdrec_data::rng::Rng;
use mdrec_nn::{Gate, GateKind, Mlp, MlpConfig, ModelContext, ModelInput};
use serde::{Deserialize, Serialize};

use crate::heads::{HeadLayout, Heads};
use crate::model::{ModelError, ModelOutput, Probes, RecModel, ZooModel};

/// Config of [`Mmoe`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Number of shared experts.
    pub num_experts: usize,
    /// Expert MLP widths.
    pub expert_dims: Vec<usize>,
    /// Tower hidden widths.
    pub tower_dims: Vec<usize>,
    /// Gate form.
    pub gate: GateKind,
    /// Heads per (domain, task) or per task.
    pub heads: HeadLayout,
    /// Hidden-layer options for experts and towers.
    pub mlp: MlpConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            num_experts: 4,
            expert_dims: vec![128, 64],
            tower_dims: vec![32],
            gate: GateKind::Linear,
            heads: HeadLayout::DomainTask,
            mlp: MlpConfig::default(),
        }
    }
}

/// Multi-gate mixture of experts.
#[derive(Module, Debug)]
pub struct Mmoe {
    experts: Vec<Mlp>,
    gates: Vec<Gate>,
    heads: Heads,
}

impl ZooModel for Mmoe {
    const NAME: &'static str = "mmoe";
    const PAPER: &'static str = "Ma et al., Modeling Task Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts, KDD 2018";
    type Config = Config;

    fn tiny() -> Config {
        Config {
            num_experts: 2,
            expert_dims: vec![16],
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
        if cfg.num_experts == 0 || cfg.expert_dims.is_empty() {
            return Err(ModelError::Invalid {
                model: Self::NAME.into(),
                message: "num_experts must be ≥ 1 and expert_dims non-empty".into(),
            });
        }
        let d_in = ctx.input_dim();
        let experts: Vec<Mlp> = (0..cfg.num_experts)
            .map(|_| Mlp::new(d_in, &cfg.expert_dims, &cfg.mlp, rng, device))
            .collect();
        let h = experts[0].out_dim();
        let heads = Heads::new(
            cfg.heads,
            ctx.n_domains(),
            ctx.n_tasks(),
            h,
            &cfg.tower_dims,
            &cfg.mlp,
            rng,
            device,
        );
        let n_gates = heads.n_groups() * ctx.n_tasks();
        let gates = (0..n_gates)
            .map(|_| Gate::new(d_in, cfg.num_experts, cfg.gate, rng, device))
            .collect();
        Ok(Mmoe {
            experts,
            gates,
            heads,
        })
    }
}

impl RecModel for Mmoe {
    /// # Shapes
    /// - x: `[B, D_in]`; experts stacked `[B, E, H]`; gate of head (d, t) on domain rows
    ///   `[n_d, E]`; mixture `[n_d, H]`; logits `[B, T]`
    fn forward(&self, ctx: &ModelContext, input: &ModelInput, probes: &mut Probes) -> ModelOutput {
        let x = input.flat();
        let outs: Vec<Tensor<2>> = self.experts.iter().map(|e| e.forward(x.clone())).collect();
        for (i, o) in outs.iter().enumerate() {
            probes.record(|| format!("expert/{i}"), || o.clone());
        }
        let stacked: Tensor<3> = Tensor::stack(outs, 1);
        let logits = self
            .heads
            .forward_gated(ctx, input, &self.gates, &x, &stacked, probes);
        ModelOutput {
            logits,
            aux_loss: None,
        }
    }
}
