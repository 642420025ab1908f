//! PEPNet — Chang et al., "PEPNet: Parameter and Embedding Personalized Network for Infusing
//! with Personalized Prior Information", KDD 2023. Three registered models
//! share the blocks of this file:
//!
//! - `epnet`: **EPNet** (embedding personalization) then plain towers ([`Heads`]).
//!   `δ_domain = GateNU(E(F_d) ⊕ stopgrad(E))`, `O_ep = δ_domain ⊗ E`, where `E` is the general
//!   embedding ([`ModelInput::flat`]) and `E(F_d)` the embeddings of the fields with role
//!   `domain` (and `context`, if any), or a learned per-domain embedding of width
//!   `domain_emb_dim` when the schema has no such field (as [`crate::multidomain::star`]).
//! - `ppnet`: **PPNet** (parameter personalization) on `O = E`.
//! - `pepnet`: EPNet then PPNet on `O = O_ep`.
//! - `epnet_s`: **EPNet-S** (AREAD's baseline, SWR's `EPNet`): EPNet then **one** tower shared
//!   by every domain and task — hidden layers `tower_dims` on `O_ep` and a `Linear(h, T)` output,
//!   one logit per task. With one task this is exactly AREAD/SWR's single shared tower; with
//!   several tasks the hidden layers are shared by the tasks too (`epnet` with
//!   `heads = "task"` is the variant with one tower per task).
//!
//! **Gate NU** (Eq. 2–3): `δ = γ · σ(W2 · ReLU(W1 x + b1) + b2)`, γ = 2 (`gate.gamma`), hidden
//! width `gate.hidden` (default: the output width, as SWR and QunBB).
//!
//! **PPNet** (Eq. 7–9): `O_prior` = embeddings of the fields with role `user`, `item` or
//! `author` (whichever exist; empty is allowed) and the gate input is
//! `O_prior ⊕ stopgrad(O)`. Every tower layer `l = 1..L` (the output layer included) has one
//! Gate NU per head group whose `h_l · T` outputs are split into one chunk per task; the chunk
//! multiplies the *input* of layer `l` of that task's tower:
//! `H^(l+1)_t = f((δ^(l)_t ⊗ H^(l)_t) W^(l)_t + b^(l)_t)`, `H^(1)_t = O`, `f` = ReLU and no
//! activation on the last layer (logits).
//!
//! Reference implementations: no official code. FuxiCTR `model_zoo/PEPNet/src/PPNet.py`
//! (single-task PPNet), QunBB TF2 port `recsys/layers/interaction.py`
//! Deviations from reference: Eq. 9 is followed literally — the gate multiplies the input of
//! every layer including the output layer (FuxiCTR HEAD and QunBB gate *after* each hidden
//! layer and leave the output Linear ungated); Scenario-Wise-Rec's PPNet (tower input = gate
//! input, non-id embeddings never trained, docs/models.md) is not replicated; the general
//! embedding `E` includes the numeric inputs; tower hidden layers are plain `Linear → ReLU`
//! (no BN, no dropout) and initialised as PyTorch's `nn.Linear`; the final layer returns logits
//! (the paper's sigmoid is in the loss). Default heads: `epnet` one tower per (domain, task)
//! (AREAD's "EPNet"), `ppnet` and `pepnet` one tower per task shared by every domain (paper
//! §3.2, "shared top DNN task towers"); `heads` switches either way. Tower widths default to the
//! paper's `[100, 64]` (also for `epnet_s`; SWR's EPNet-S uses a BN tower `[128, 64, 32]`, AREAD
//! `(256, 128, 64, 32)` with BN and dropout 0.2 — `tower_dims` and `mlp` give either).
//!
//! Ablation switches (the paper's Fig. 5): `gate.general_input` — what `stopgrad(E)` becomes
//! in both gates' inputs: kept without gradient (default), with gradient, or removed;
//! `ep_granularity` — bit-wise `δ_domain` (default) or vector-wise, one scale per field
//! broadcast over its dimensions (the paper's "vector-wise product is optional");
//! `gate.init` / `tower_init` — PyTorch's default initialisation (default) or Xavier, which
//! the paper uses.
//!
//! Probes: `ep_gate` (`δ_domain`, `[B, D_in]`).
//!
//! # Shapes
//! - E: `[B, D_in]`; domain prior `[B, k_d]`; `δ_domain`, `O_ep`: `[B, D_in]`
//! - prior `[B, p + D_in]`; PPNet gate of layer `l` `[n, h_l · T]`; logits `[B, T]`

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::{Device, Tensor};
use mdrec_data::rng::Rng;
use mdrec_data::FieldRole;
use mdrec_nn::init::WeightInit;
use mdrec_nn::layers::linear;
use mdrec_nn::{Mlp, MlpConfig, ModelContext, ModelInput};
use serde::{Deserialize, Serialize};

use crate::blocks::domain::DomainEmbedding;
use crate::blocks::heads::{HeadLayout, Heads, HeadsConfig};
use crate::model::{
    model_config, Built, Invalid, ModelConfig, ModelOutput, Probes, RecModel, ZooModel,
};

/// What the general embedding `E` (or `O_ep`) adds to a gate's input (the paper's Fig. 5d
/// compares the three).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GeneralInput {
    /// `E` concatenated without back-propagation into it (Eq. 5 and 8, the paper's best).
    #[default]
    StopGradient,
    /// `E` concatenated with back-propagation: the gates also train the embeddings.
    Backprop,
    /// No general input: a gate reads its prior fields only.
    None,
}

impl GeneralInput {
    /// The general part of a gate input, or `None` when the gate does not read it.
    fn apply(self, e: Tensor<2>) -> Option<Tensor<2>> {
        match self {
            GeneralInput::StopGradient => Some(e.detach()),
            GeneralInput::Backprop => Some(e),
            GeneralInput::None => None,
        }
    }

    /// Its width in a gate input of general width `d`.
    fn width(self, d: usize) -> usize {
        if self == GeneralInput::None {
            0
        } else {
            d
        }
    }
}

/// How EPNet's scales apply to the general embedding (Eq. 6; the paper calls the vector-wise
/// product an option for inputs with many fields and wide embeddings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EpGranularity {
    /// One scale per element of `E` (bit-wise, Eq. 6 as written).
    #[default]
    Bit,
    /// One scale per field, shared by the field's embedding dimensions (each numeric input is
    /// a field of width 1).
    Vector,
}

/// Options of every Gate NU of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GateNuConfig {
    /// Hidden width; `None` = the gate's output width.
    pub hidden: Option<usize>,
    /// Output scale γ: δ ∈ (0, γ).
    pub gamma: f64,
    /// The general input of every gate (EPNet's `E`, PPNet's `O`).
    pub general_input: GeneralInput,
    /// Initialisation of the gates' Linear layers (the paper trains with Xavier).
    pub init: WeightInit,
}

impl Default for GateNuConfig {
    fn default() -> Self {
        GateNuConfig {
            hidden: None,
            gamma: 2.0,
            general_input: GeneralInput::StopGradient,
            init: WeightInit::TorchDefault,
        }
    }
}

impl GateNuConfig {
    fn check(&self) -> Result<(), Invalid> {
        if !(self.gamma.is_finite() && self.gamma > 0.0) || self.hidden == Some(0) {
            return Err(Invalid(
                "gate.gamma must be finite and > 0, gate.hidden ≥ 1".into(),
            ));
        }
        Ok(())
    }
}

/// Gate neural unit: `δ = γ · σ(W2 · ReLU(W1 x + b1) + b2)`.
#[derive(Module, Debug)]
pub struct GateNu {
    l1: Linear,
    l2: Linear,
    #[module(skip)]
    gamma: f64,
}

impl GateNu {
    /// A gate from `in_dim` inputs to `out_dim` scales.
    pub fn new(
        in_dim: usize,
        out_dim: usize,
        cfg: &GateNuConfig,
        rng: &mut Rng,
        device: &Device,
    ) -> Self {
        let hidden = cfg.hidden.unwrap_or(out_dim);
        GateNu {
            l1: linear(in_dim, hidden, cfg.init, rng, device),
            l2: linear(hidden, out_dim, cfg.init, rng, device),
            gamma: cfg.gamma,
        }
    }

    /// # Shapes
    /// - x: `[N, in_dim]` → δ `[N, out_dim]`, values in (0, γ)
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        sigmoid(self.l2.forward(relu(self.l1.forward(x)))).mul_scalar(self.gamma)
    }
}

/// Concatenate field embeddings; `None` when `fields` is empty.
fn fields_cat(ctx: &ModelContext, input: &ModelInput, fields: &[usize]) -> Option<Tensor<2>> {
    (!fields.is_empty())
        .then(|| Tensor::cat(fields.iter().map(|&i| input.field(ctx, i)).collect(), 1))
}

/// EPNet: domain-side embedding personalization.
#[derive(Module, Debug)]
pub struct EpNet {
    gate: GateNu,
    /// The domain-side prior `E(F_d)`: the `domain`/`context` fields, else a learned table.
    domain_emb: DomainEmbedding,
    #[module(skip)]
    general_input: GeneralInput,
    /// Vector-wise: the width of each field of `E` (the numeric inputs last, width 1 each);
    /// empty for bit-wise scales.
    #[module(skip)]
    groups: Vec<usize>,
}

impl EpNet {
    fn new(
        gate: &GateNuConfig,
        domain_emb_dim: usize,
        granularity: EpGranularity,
        ctx: &ModelContext,
        rng: &mut Rng,
        device: &Device,
    ) -> Built<Self> {
        gate.check()?;
        let domain_emb = DomainEmbedding::new(
            ctx,
            &[FieldRole::Domain, FieldRole::Context],
            domain_emb_dim,
            rng,
            device,
        )?;
        let d_in = ctx.input_dim();
        let groups: Vec<usize> = match granularity {
            EpGranularity::Bit => Vec::new(),
            EpGranularity::Vector => {
                let mut fields: Vec<(usize, usize)> =
                    ctx.fields.iter().map(|f| (f.offset, f.dim)).collect();
                fields.sort_unstable();
                let contiguous = fields
                    .iter()
                    .try_fold(0, |at, &(o, d)| (o == at).then_some(at + d))
                    == Some(ctx.emb_dim());
                if !contiguous {
                    return Err(Invalid(
                        "ep_granularity = \"vector\": the fields do not tile the embedding input"
                            .into(),
                    ));
                }
                fields
                    .iter()
                    .map(|&(_, d)| d)
                    .chain(std::iter::repeat_n(1, ctx.n_numeric))
                    .collect()
            }
        };
        let out = if groups.is_empty() {
            d_in
        } else {
            groups.len()
        };
        let in_dim = domain_emb.dim() + gate.general_input.width(d_in);
        Ok(EpNet {
            gate: GateNu::new(in_dim, out, gate, rng, device),
            domain_emb,
            general_input: gate.general_input,
            groups,
        })
    }

    /// The domain-side prior `E(F_d)`.
    ///
    /// # Shapes
    /// - result `[B, k_d]`
    fn domain_prior(&self, ctx: &ModelContext, input: &ModelInput) -> Tensor<2> {
        self.domain_emb.forward(ctx, input)
    }

    /// `δ_domain = GateNU(E(F_d) ⊕ stopgrad(E))`.
    ///
    /// # Shapes
    /// - result `[B, D_in]`
    pub fn gate(&self, ctx: &ModelContext, input: &ModelInput) -> Tensor<2> {
        let mut parts = vec![self.domain_prior(ctx, input)];
        parts.extend(self.general_input.apply(input.flat()));
        let delta = self.gate.forward(Tensor::cat(parts, 1));
        if self.groups.is_empty() {
            return delta;
        }
        let n = delta.dims()[0];
        Tensor::cat(
            self.groups
                .iter()
                .enumerate()
                .map(|(g, &w)| delta.clone().narrow(1, g, 1).expand([n, w]))
                .collect(),
            1,
        )
    }

    /// `O_ep = δ_domain ⊗ E`.
    ///
    /// # Shapes
    /// - result `[B, D_in]`
    pub fn forward(
        &self,
        ctx: &ModelContext,
        input: &ModelInput,
        probes: &mut Probes,
    ) -> Tensor<2> {
        let delta = self.gate(ctx, input);
        probes.record(|| crate::ProbeKey::other("ep_gate"), || delta.clone());
        delta * input.flat()
    }
}

/// The towers of one head group (all tasks) with their per-layer Gate NUs.
#[derive(Module, Debug)]
pub struct PpGroup {
    /// `layers[t][l]`: layer `l` of task `t`'s tower.
    layers: Vec<Vec<Linear>>,
    /// `gates[l]`: Gate NU of layer `l`, `h_l · T` outputs.
    gates: Vec<GateNu>,
    /// Input width `h_l` of each layer.
    #[module(skip)]
    widths: Vec<usize>,
}

impl PpGroup {
    /// # Shapes
    /// - o: `[n, D_in]`, prior: `[n, P]` → logits `[n, T]`
    fn forward(&self, o: Tensor<2>, prior: Tensor<2>) -> Tensor<2> {
        let n_layers = self.widths.len();
        let mut h: Vec<Tensor<2>> = vec![o; self.layers.len()];
        for (l, (gate, &w)) in self.gates.iter().zip(&self.widths).enumerate() {
            let delta = gate.forward(prior.clone());
            h = h
                .into_iter()
                .enumerate()
                .map(|(t, x)| {
                    let y = self.layers[t][l].forward(x * delta.clone().narrow(1, t * w, w));
                    if l + 1 < n_layers {
                        relu(y)
                    } else {
                        y
                    }
                })
                .collect();
        }
        Tensor::cat(h, 1)
    }
}

/// PPNet: task towers whose every layer is scaled by a Gate NU of the personalized prior.
#[derive(Module, Debug)]
pub struct PpNet {
    groups: Vec<PpGroup>,
    #[module(skip)]
    prior_fields: Vec<usize>,
    #[module(skip)]
    general_input: GeneralInput,
    #[module(skip)]
    layout: HeadLayout,
}

impl PpNet {
    fn new(
        gate: &GateNuConfig,
        heads: &HeadsConfig,
        tower_init: WeightInit,
        ctx: &ModelContext,
        rng: &mut Rng,
        device: &Device,
    ) -> Built<Self> {
        gate.check()?;
        let prior_fields =
            ctx.fields_with_any_role(&[FieldRole::User, FieldRole::Item, FieldRole::Author]);
        let d_in = ctx.input_dim();
        let p = prior_fields
            .iter()
            .map(|&i| ctx.fields[i].dim)
            .sum::<usize>()
            + gate.general_input.width(d_in);
        if p == 0 {
            return Err(Invalid(
                "PPNet with gate.general_input = \"none\" needs a field with role user, item or author"
                    .into(),
            ));
        }
        let t_n = ctx.n_tasks();
        let widths: Vec<usize> = std::iter::once(d_in)
            .chain(heads.tower_dims.iter().copied())
            .collect();
        let n_groups = heads.n_groups(ctx);
        let groups = (0..n_groups)
            .map(|_| {
                let layers = (0..t_n)
                    .map(|_| {
                        widths
                            .iter()
                            .enumerate()
                            .map(|(l, &w)| {
                                let out = widths.get(l + 1).copied().unwrap_or(1);
                                linear(w, out, tower_init, rng, device)
                            })
                            .collect()
                    })
                    .collect();
                let gates = widths
                    .iter()
                    .map(|&w| GateNu::new(p, w * t_n, gate, rng, device))
                    .collect();
                PpGroup {
                    layers,
                    gates,
                    widths: widths.clone(),
                }
            })
            .collect();
        Ok(PpNet {
            groups,
            prior_fields,
            general_input: gate.general_input,
            layout: heads.layout,
        })
    }

    /// # Shapes
    /// - o: `[B, D_in]` (E or O_ep) → logits `[B, T]`
    fn forward(&self, ctx: &ModelContext, input: &ModelInput, o: Tensor<2>) -> Tensor<2> {
        let parts: Vec<Tensor<2>> = fields_cat(ctx, input, &self.prior_fields)
            .into_iter()
            .chain(self.general_input.apply(o.clone()))
            .collect();
        let prior = Tensor::cat(parts, 1);
        match self.layout {
            HeadLayout::DomainTask => input.route(|d| {
                self.groups[d].forward(input.rows_of(o.clone(), d), input.rows_of(prior.clone(), d))
            }),
            HeadLayout::Task => self.groups[0].forward(o, prior),
        }
    }
}

model_config! {
    /// Config of [`Epnet`].
    pub struct EpnetConfig {
        /// Gate NU options.
        gate: GateNuConfig = GateNuConfig::default(),
        /// Width of the learned per-domain embedding used when the schema has no `domain` field.
        domain_emb_dim: usize = 8,
        /// Bit-wise (one scale per element) or vector-wise (one per field) EPNet scales.
        ep_granularity: EpGranularity = EpGranularity::Bit,
        /// Output heads: tower layout and tower hidden widths.
        heads: HeadsConfig = HeadsConfig::new(HeadLayout::DomainTask, vec![100, 64]) => HeadsConfig::new(HeadLayout::DomainTask, vec![8]),
        /// Hidden-layer options of the towers.
        mlp: MlpConfig = MlpConfig::default(),
    }
}

/// EPNet followed by plain towers.
#[derive(Module, Debug)]
pub struct Epnet {
    ep: EpNet,
    heads: Heads,
}

impl ZooModel for Epnet {
    const NAME: &'static str = "epnet";
    const PAPER: &'static str = "Chang et al., PEPNet: Parameter and Embedding Personalized Network for Infusing with Personalized Prior Information, KDD 2023 (EPNet)";
    type Config = EpnetConfig;

    fn build(cfg: &EpnetConfig, ctx: &ModelContext, rng: &mut Rng, device: &Device) -> Built<Self> {
        let ep = EpNet::new(
            &cfg.gate,
            cfg.domain_emb_dim,
            cfg.ep_granularity,
            ctx,
            rng,
            device,
        )?;
        let heads = Heads::new(&cfg.heads, ctx, ctx.input_dim(), &cfg.mlp, rng, device);
        Ok(Epnet { ep, heads })
    }
}

impl RecModel for Epnet {
    /// # Shapes
    /// - E `[B, D_in]` → O_ep `[B, D_in]` → towers → logits `[B, T]`
    fn forward(&self, ctx: &ModelContext, input: &ModelInput, probes: &mut Probes) -> ModelOutput {
        let o = self.ep.forward(ctx, input, probes);
        let logits = self.heads.forward_shared(input, &o);
        ModelOutput::from(logits)
    }
}

/// Config of [`EpnetS`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EpnetSConfig {
    /// Gate NU options.
    pub gate: GateNuConfig,
    /// Width of the learned per-domain embedding used when the schema has no `domain` field.
    pub domain_emb_dim: usize,
    /// Bit-wise (one scale per element) or vector-wise (one per field) EPNet scales.
    pub ep_granularity: EpGranularity,
    /// Hidden widths of the one shared tower (before its `Linear(h, T)` output).
    pub tower_dims: Vec<usize>,
    /// Hidden-layer options of the tower.
    pub mlp: MlpConfig,
}

impl Default for EpnetSConfig {
    fn default() -> Self {
        let e = EpnetConfig::default();
        EpnetSConfig {
            gate: e.gate,
            domain_emb_dim: e.domain_emb_dim,
            ep_granularity: e.ep_granularity,
            tower_dims: e.heads.tower_dims,
            mlp: e.mlp,
        }
    }
}

/// EPNet followed by one tower shared by every domain and task.
#[derive(Module, Debug)]
pub struct EpnetS {
    ep: EpNet,
    tower: Mlp,
    /// `Linear(h, T)`: one logit per task.
    out: Linear,
}

impl ModelConfig for EpnetSConfig {
    fn tiny() -> EpnetSConfig {
        EpnetSConfig {
            tower_dims: vec![8],
            ..EpnetSConfig::default()
        }
    }
}

impl ZooModel for EpnetS {
    const NAME: &'static str = "epnet_s";
    const PAPER: &'static str = "Chang et al., PEPNet: Parameter and Embedding Personalized Network for Infusing with Personalized Prior Information, KDD 2023 (EPNet-S: EPNet with one shared tower, a baseline of Luo et al., One for Dozens: Adaptive REcommendation for All Domains with Counterfactual Augmentation (AREAD))";
    type Config = EpnetSConfig;

    fn validate(cfg: &EpnetSConfig) -> Result<(), Invalid> {
        if cfg.tower_dims.contains(&0) {
            return Err(Invalid("tower_dims must not contain a width of 0".into()));
        }
        Ok(())
    }

    fn build(
        cfg: &EpnetSConfig,
        ctx: &ModelContext,
        rng: &mut Rng,
        device: &Device,
    ) -> Built<Self> {
        let ep = EpNet::new(
            &cfg.gate,
            cfg.domain_emb_dim,
            cfg.ep_granularity,
            ctx,
            rng,
            device,
        )?;
        let tower = Mlp::new(ctx.input_dim(), &cfg.tower_dims, &cfg.mlp, rng, device);
        let out = linear(
            tower.out_dim(),
            ctx.n_tasks(),
            WeightInit::TorchDefault,
            rng,
            device,
        );
        Ok(EpnetS { ep, tower, out })
    }
}

impl RecModel for EpnetS {
    /// # Shapes
    /// - E `[B, D_in]` → O_ep `[B, D_in]` → shared tower `[B, h]` → logits `[B, T]`
    fn forward(&self, ctx: &ModelContext, input: &ModelInput, probes: &mut Probes) -> ModelOutput {
        let o = self.ep.forward(ctx, input, probes);
        ModelOutput {
            logits: self.out.forward(self.tower.forward(o)),
            aux_loss: None,
        }
    }
}

model_config! {
    /// Config of [`Ppnet`].
    pub struct PpnetConfig {
        /// Gate NU options.
        gate: GateNuConfig = GateNuConfig::default(),
        /// Output heads: tower layout and tower hidden widths.
        heads: HeadsConfig = HeadsConfig::new(HeadLayout::Task, vec![100, 64]) => HeadsConfig::new(HeadLayout::Task, vec![8]),
        /// Initialisation of the gated towers' Linear layers (the paper trains with Xavier).
        tower_init: WeightInit = WeightInit::TorchDefault,
    }
}

/// PPNet on the general embedding.
#[derive(Module, Debug)]
pub struct Ppnet {
    pp: PpNet,
}

impl ZooModel for Ppnet {
    const NAME: &'static str = "ppnet";
    const PAPER: &'static str = "Chang et al., PEPNet: Parameter and Embedding Personalized Network for Infusing with Personalized Prior Information, KDD 2023 (PPNet)";
    type Config = PpnetConfig;

    fn build(cfg: &PpnetConfig, ctx: &ModelContext, rng: &mut Rng, device: &Device) -> Built<Self> {
        let pp = PpNet::new(&cfg.gate, &cfg.heads, cfg.tower_init, ctx, rng, device)?;
        Ok(Ppnet { pp })
    }
}

impl RecModel for Ppnet {
    /// # Shapes
    /// - E `[B, D_in]` → gated towers → logits `[B, T]`
    fn forward(&self, ctx: &ModelContext, input: &ModelInput, _probes: &mut Probes) -> ModelOutput {
        ModelOutput {
            logits: self.pp.forward(ctx, input, input.flat()),
            aux_loss: None,
        }
    }
}

model_config! {
    /// Config of [`Pepnet`].
    pub struct PepnetConfig {
        /// Gate NU options (EPNet and PPNet).
        gate: GateNuConfig = GateNuConfig::default(),
        /// Width of the learned per-domain embedding used when the schema has no `domain` field.
        domain_emb_dim: usize = 8,
        /// Bit-wise (one scale per element) or vector-wise (one per field) EPNet scales.
        ep_granularity: EpGranularity = EpGranularity::Bit,
        /// Output heads: tower layout and tower hidden widths.
        heads: HeadsConfig = HeadsConfig::new(HeadLayout::Task, vec![100, 64]) => HeadsConfig::new(HeadLayout::Task, vec![8]),
        /// Initialisation of the gated towers' Linear layers (the paper trains with Xavier).
        tower_init: WeightInit = WeightInit::TorchDefault,
    }
}

/// EPNet then PPNet on `O_ep`.
#[derive(Module, Debug)]
pub struct Pepnet {
    ep: EpNet,
    pp: PpNet,
}

impl ZooModel for Pepnet {
    const NAME: &'static str = "pepnet";
    const PAPER: &'static str = "Chang et al., PEPNet: Parameter and Embedding Personalized Network for Infusing with Personalized Prior Information, KDD 2023";
    type Config = PepnetConfig;

    fn build(
        cfg: &PepnetConfig,
        ctx: &ModelContext,
        rng: &mut Rng,
        device: &Device,
    ) -> Built<Self> {
        let ep = EpNet::new(
            &cfg.gate,
            cfg.domain_emb_dim,
            cfg.ep_granularity,
            ctx,
            rng,
            device,
        )?;
        let pp = PpNet::new(&cfg.gate, &cfg.heads, cfg.tower_init, ctx, rng, device)?;
        Ok(Pepnet { ep, pp })
    }
}

impl RecModel for Pepnet {
    /// # Shapes
    /// - E `[B, D_in]` → O_ep `[B, D_in]` → gated towers → logits `[B, T]`
    fn forward(&self, ctx: &ModelContext, input: &ModelInput, probes: &mut Probes) -> ModelOutput {
        let o = self.ep.forward(ctx, input, probes);
        ModelOutput {
            logits: self.pp.forward(ctx, input, o),
            aux_loss: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::tensor::{Int, TensorData};
    use mdrec_nn::device::cpu;
    use mdrec_nn::init;
    use mdrec_nn::input::Routing;

    fn input(ctx: &ModelContext, domain: &[u32], device: &Device) -> ModelInput {
        let b = domain.len();
        let mut rng = Rng::new(7);
        let values = init::normal(&mut rng, b * ctx.emb_dim(), 1.0);
        let mut emb = init::tensor(values, [b, ctx.emb_dim()], device);
        if device.is_autodiff() {
            emb = emb.require_grad();
        }
        ModelInput {
            batch_size: b,
            emb,
            dense: None,
            domain: domain.to_vec(),
            routing: Routing::new(domain, ctx.n_domains(), device),
            sets: vec![],
            seq_masks: vec![],
        }
    }

    #[test]
    fn ep_gate_does_not_train_the_general_embedding() {
        let dev = cpu().autodiff();
        // No field has role `domain`: the domain prior is the learned table.
        let ctx = ModelContext::uniform(3, 10, 4, 0, 2, 2);
        let m = Pepnet::build(&Pepnet::tiny(), &ctx, &mut Rng::new(3), &dev).unwrap();
        let inp = input(&ctx, &[1, 0, 1, 1, 0], &dev);
        let grads = m.ep.gate(&ctx, &inp).sum().backward();
        if let Some(g) = inp.emb.grad(&grads) {
            let g = g.into_data().try_to_vec::<f32>().unwrap();
            assert!(g.iter().all(|&v| v == 0.0), "gate loss reached E: {g:?}");
        }
        // The domain embedding is trained through the gate.
        let table = m.ep.domain_emb.table().unwrap();
        assert!(table.grad(&grads).is_some());
        // E still receives gradient through O_ep = δ ⊗ E.
        let grads =
            m.ep.forward(&ctx, &inp, &mut Probes::new(false))
                .sum()
                .backward();
        assert!(inp.emb.grad(&grads).is_some());
    }

    /// EPNet-S has one tower: its dense parameters are EPNet's plus one `D_in → h → T` tower,
    /// whatever the number of domains, and rows of every domain train the same tower weights
    /// (EPNet's per-(domain, task) towers only get gradient from their own domain's rows).
    #[test]
    fn epnet_s_has_one_tower_shared_by_every_domain() {
        let dev = cpu();
        let h = 8;
        for n_domains in [2usize, 5] {
            let mut ctx = ModelContext::uniform(3, 10, 4, 0, n_domains, 2);
            // A domain field: the EPNet prior does not depend on the number of domains.
            ctx.fields[2].roles = vec![FieldRole::Domain];
            let (d_in, t_n) = (ctx.input_dim(), ctx.n_tasks());
            let s = EpnetS::build(&EpnetS::tiny(), &ctx, &mut Rng::new(2), &dev).unwrap();
            let ep = s.ep.num_params();
            assert_eq!(s.num_params(), ep + (d_in * h + h) + (h * t_n + t_n));
            // EPNet with per-(domain, task) towers: S·T towers of D_in → h → 1.
            let e = Epnet::build(&Epnet::tiny(), &ctx, &mut Rng::new(2), &dev).unwrap();
            assert_eq!(
                e.num_params(),
                ep + n_domains * t_n * (d_in * h + h + h + 1)
            );
        }

        // Gradient of the logits of domain-0 rows only.
        struct Touched<'a>(&'a burn::tensor::Gradients, Vec<bool>);
        impl burn::module::ModuleVisitor for Touched<'_> {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
                let g = p.val().grad(self.0).map(|g| {
                    g.into_data()
                        .try_to_vec::<f32>()
                        .unwrap()
                        .iter()
                        .any(|&v| v != 0.0)
                });
                self.1.push(g.unwrap_or(false));
            }
        }
        let dev = cpu().autodiff();
        let ctx = ModelContext::uniform(3, 10, 4, 0, 2, 2);
        let domain = [0u32, 1, 0, 1, 1];
        let inp = input(&ctx, &domain, &dev);
        let rows0 = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 2], [2]), &dev);
        let s = EpnetS::build(&EpnetS::tiny(), &ctx, &mut Rng::new(2), &dev).unwrap();
        let grads = s
            .forward(&ctx, &inp, &mut Probes::new(false))
            .logits
            .select(0, rows0.clone())
            .sum()
            .backward();
        let mut t = Touched(&grads, Vec::new());
        s.tower.visit(&mut t);
        s.out.visit(&mut t);
        assert!(
            t.1.iter().all(|&g| g),
            "domain-0 rows train the whole shared tower"
        );
        let e = Epnet::build(&Epnet::tiny(), &ctx, &mut Rng::new(2), &dev).unwrap();
        let grads = e
            .forward(&ctx, &inp, &mut Probes::new(false))
            .logits
            .select(0, rows0)
            .sum()
            .backward();
        let mut t = Touched(&grads, Vec::new());
        e.heads.visit(&mut t);
        // Towers (d0,t0), (d0,t1) touched; (d1,t0), (d1,t1) not: 4 tensors per tower.
        assert_eq!(t.1.len(), 16);
        assert!(
            t.1[..8].iter().all(|&g| g) && !t.1[8..].iter().any(|&g| g),
            "{:?}",
            t.1
        );
    }

    #[test]
    fn gate_nu_lies_in_zero_gamma() {
        let dev = cpu();
        let mut rng = Rng::new(5);
        let cfg = GateNuConfig::default();
        let g = GateNu::new(6, 10, &cfg, &mut rng, &dev);
        let x = init::tensor(init::normal(&mut rng, 64 * 6, 3.0), [64, 6], &dev);
        let v = g.forward(x).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(v.len(), 640);
        assert!(v.iter().all(|&d| d > 0.0 && d < cfg.gamma as f32), "{v:?}");
    }

    #[test]
    fn roles_choose_the_priors() {
        let dev = cpu();
        let mut ctx = ModelContext::uniform(4, 10, 4, 1, 3, 2);
        ctx.fields[0].roles = vec![FieldRole::Prior, FieldRole::User];
        ctx.fields[1].roles = vec![FieldRole::Prior, FieldRole::Item];
        ctx.fields[3].roles = vec![FieldRole::Domain];
        for layout in [HeadLayout::Task, HeadLayout::DomainTask] {
            let cfg = PepnetConfig {
                heads: HeadsConfig {
                    layout,
                    ..Pepnet::tiny().heads
                },
                ..Pepnet::tiny()
            };
            let m = Pepnet::build(&cfg, &ctx, &mut Rng::new(1), &dev).unwrap();
            assert!(m.ep.domain_emb.from_fields());
            assert_eq!(m.ep.domain_emb.fields(), [3]);
            assert_eq!(m.pp.prior_fields, vec![0, 1]);
            let domain = [2u32, 0, 1, 2];
            let mut inp = input(&ctx, &domain, &dev);
            inp.dense = Some(init::tensor(vec![0.5; 4], [4, 1], &dev));
            let out = m.forward(&ctx, &inp, &mut Probes::new(true));
            assert_eq!(out.logits.dims(), [4, 2]);
            let v = out.logits.into_data().try_to_vec::<f32>().unwrap();
            assert!(v.iter().all(|x| x.is_finite()));
            // PPNet's towers read E (here a fixed O_ep) and the prior: with O_ep held fixed, the
            // logits depend on a field's embedding exactly when the field is a prior field
            // (user or item role), not on the domain field or a field without a role.
            let d_in = ctx.input_dim();
            let o = init::tensor(
                init::normal(&mut Rng::new(8), 4 * d_in, 1.0),
                [4, d_in],
                &dev,
            );
            let pp = |inp: &ModelInput| {
                m.pp.forward(&ctx, inp, o.clone())
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap()
            };
            let base = pp(&inp);
            for f in 0..4 {
                let mut e = inp.emb.clone().into_data().try_to_vec::<f32>().unwrap();
                for r in 0..4 {
                    for k in 0..4 {
                        e[r * 16 + f * 4 + k] += 1.5;
                    }
                }
                let mut moved = input(&ctx, &domain, &dev);
                moved.dense = inp.dense.clone();
                moved.emb = init::tensor(e, [4, 16], &dev);
                let changed = pp(&moved) != base;
                assert_eq!(
                    changed,
                    f < 2,
                    "{layout:?}: field {f} changed the towers: {changed}"
                );
            }
        }
    }
    /// Fig. 5d's three gate inputs: with back-propagation the gate loss reaches `E`, with stop
    /// gradient it does not, and without a general input the gate is narrower and ignores `E`.
    #[test]
    fn general_input_switch_controls_what_the_gates_read_and_train() {
        let dev = cpu().autodiff();
        let mut ctx = ModelContext::uniform(3, 10, 4, 0, 2, 2);
        ctx.fields[0].roles = vec![FieldRole::User];
        let inp = input(&ctx, &[1, 0, 1, 1, 0], &dev);
        let with = |general_input| PepnetConfig {
            gate: GateNuConfig {
                general_input,
                ..GateNuConfig::default()
            },
            ..Pepnet::tiny()
        };
        let reaches_e = |cfg: &PepnetConfig| {
            let m = Pepnet::build(cfg, &ctx, &mut Rng::new(3), &dev).unwrap();
            let grads = m.ep.gate(&ctx, &inp).sum().backward();
            inp.emb.grad(&grads).is_some_and(|g| {
                g.into_data()
                    .try_to_vec::<f32>()
                    .unwrap()
                    .iter()
                    .any(|&v| v != 0.0)
            })
        };
        assert!(!reaches_e(&with(GeneralInput::StopGradient)));
        assert!(reaches_e(&with(GeneralInput::Backprop)));
        assert!(!reaches_e(&with(GeneralInput::None)));
        let d_in = ctx.input_dim();
        let n = |cfg: &PepnetConfig| {
            Pepnet::build(cfg, &ctx, &mut Rng::new(3), &dev)
                .unwrap()
                .ep
                .gate
                .num_params()
        };
        // The first gate layer loses its D_in general inputs (hidden width = D_in).
        assert_eq!(
            n(&with(GeneralInput::StopGradient)) - n(&with(GeneralInput::None)),
            d_in * d_in
        );
        // PPNet without prior fields and without general input has nothing to read.
        let ctx = ModelContext::uniform(3, 10, 4, 0, 2, 2);
        let e = Pepnet::build(&with(GeneralInput::None), &ctx, &mut Rng::new(3), &dev)
            .err()
            .unwrap();
        assert!(e.0.contains("general_input"), "{}", e.0);
    }

    /// Vector-wise EPNet: one scale per field, shared by the field's dimensions; each numeric
    /// input is a field of width 1.
    #[test]
    fn vector_wise_epnet_shares_one_scale_per_field() {
        let dev = cpu();
        let ctx = ModelContext::uniform(3, 10, 4, 2, 2, 2);
        let cfg = EpnetConfig {
            ep_granularity: EpGranularity::Vector,
            ..Epnet::tiny()
        };
        let m = Epnet::build(&cfg, &ctx, &mut Rng::new(4), &dev).unwrap();
        assert_eq!(m.ep.groups, [4, 4, 4, 1, 1]);
        let mut inp = input(&ctx, &[0, 1, 1], &dev);
        inp.dense = Some(init::tensor(vec![0.5; 6], [3, 2], &dev));
        let delta = m.ep.gate(&ctx, &inp);
        assert_eq!(delta.dims(), [3, 14]);
        let v = delta.into_data().try_to_vec::<f32>().unwrap();
        for row in v.chunks(14) {
            for field in [&row[0..4], &row[4..8], &row[8..12]] {
                assert!(field.iter().all(|&x| x == field[0]), "{row:?}");
            }
            assert!(row.iter().all(|&x| x > 0.0 && x < 2.0));
        }
        // Bit-wise: one gate output per element of E.
        let bit = Epnet::build(&Epnet::tiny(), &ctx, &mut Rng::new(4), &dev).unwrap();
        assert_eq!(bit.ep.gate(&ctx, &inp).dims(), [3, 14]);
        assert!(m.ep.gate.num_params() < bit.ep.gate.num_params());
    }

    #[test]
    fn xavier_initialisation_reaches_gates_and_gated_towers() {
        let dev = cpu();
        let ctx = ModelContext::uniform(3, 10, 4, 0, 2, 2);
        let xavier = PepnetConfig {
            gate: GateNuConfig {
                init: WeightInit::XavierUniform,
                ..GateNuConfig::default()
            },
            tower_init: WeightInit::XavierUniform,
            ..Pepnet::tiny()
        };
        let a = Pepnet::build(&Pepnet::tiny(), &ctx, &mut Rng::new(6), &dev).unwrap();
        let b = Pepnet::build(&xavier, &ctx, &mut Rng::new(6), &dev).unwrap();
        // U(±1/√fan_in) vs U(±√(6/(fan_in+fan_out))): 12 → 8 here, bounds 0.289 and 0.548.
        let max = |l: &Linear| {
            l.weight
                .val()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
                .iter()
                .fold(0.0f32, |m, x| m.max(x.abs()))
        };
        let (ta, tb) = (&a.pp.groups[0].layers[0][0], &b.pp.groups[0].layers[0][0]);
        let [fan_in, fan_out] = ta.weight.dims();
        let (torch, xavier) = (
            1.0 / (fan_in as f32).sqrt(),
            (6.0 / (fan_in + fan_out) as f32).sqrt(),
        );
        assert!(max(ta) <= torch && max(tb) <= xavier && max(tb) > torch);
        let (ga, gb) = (&a.ep.gate.l1, &b.ep.gate.l1);
        let [fan_in, _] = ga.weight.dims();
        assert!(max(ga) <= 1.0 / (fan_in as f32).sqrt() && max(gb) > max(ga));
    }
}
