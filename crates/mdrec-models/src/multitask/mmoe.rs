//! MMoE — Ma et al., "Modeling Task Relationships in Multi-task Learning with Multi-gate
//! Mixture-of-Experts", KDD 2018. Multi-domain multi-task form ("MMoE-MTMD" in M3oE Table 2):
//! shared experts, one gate and one tower per (domain, task) head.
//!
//! Reference implementation: torch-rechub `models/multi_task/mmoe.py`, Scenario-Wise-Rec
//! `models/multi_domain/mmoe.py`.
//! Deviations from reference: gates default to the paper's `softmax(Linear(x))`
//! (`gate = "linear_bn"` gives torch-rechub's BN-before-softmax); experts run once on the whole
//! batch, gates and towers on their domain's rows only; outputs are logits.
//!
//! Probes: `gate/<domain>/<task>` (`[n_d, E]`) and `expert/<e>` (`[B, H]`).

use burn::module::Module;
use burn::tensor::Device;
use mdrec_data::rng::Rng;
use mdrec_nn::{Gate, GateKind, Mlp, MlpConfig, ModelContext, ModelInput};

use crate::blocks::experts::{expert_bank, run_experts};
use crate::blocks::heads::{HeadLayout, Heads, HeadsConfig};
use crate::model::{ensure, model_config, Built, Invalid, ModelOutput, Probes, RecModel, ZooModel};

model_config! {
    /// Config of [`Mmoe`].
    pub struct Config {
        /// Number of shared experts.
        num_experts: usize = 4 => 2,
        /// Expert MLP widths.
        expert_dims: Vec<usize> = vec![128, 64] => vec![16],
        /// Gate form.
        gate: GateKind = GateKind::Linear,
        /// Output heads: tower layout and tower hidden widths.
        heads: HeadsConfig = HeadsConfig::new(HeadLayout::DomainTask, vec![32]) => HeadsConfig::new(HeadLayout::DomainTask, vec![4]),
        /// Hidden-layer options for experts and towers.
        mlp: MlpConfig = MlpConfig::default(),
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

    fn validate(cfg: &Config) -> Result<(), Invalid> {
        ensure(
            cfg.num_experts > 0 && !cfg.expert_dims.is_empty(),
            "num_experts must be ≥ 1 and expert_dims non-empty",
        )
    }

    fn build(cfg: &Config, ctx: &ModelContext, rng: &mut Rng, device: &Device) -> Built<Self> {
        let d_in = ctx.input_dim();
        let experts: Vec<Mlp> = expert_bank(
            cfg.num_experts,
            d_in,
            &cfg.expert_dims,
            &cfg.mlp,
            rng,
            device,
        );
        let h = experts[0].out_dim();
        let heads = Heads::new(&cfg.heads, ctx, h, &cfg.mlp, rng, device);
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
        let stacked = run_experts(&self.experts, &x, probes);
        let logits = self
            .heads
            .forward_gated(ctx, input, &self.gates, &x, &stacked, probes);
        ModelOutput::from(logits)
    }
}
