//! Shared building blocks that model files compose: `Linear` with deterministic init, `Mlp`
//! (Linear → [BN|LN] → activation → dropout per hidden layer, as in the reference MLPs) and softmax gates.

use burn::module::Module;
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear,
};
use burn::tensor::activation::{relu, sigmoid, softmax};
use burn::tensor::{Device, Tensor, TensorData};
use mdrec_data::rng::Rng;
use serde::{Deserialize, Serialize};

use crate::init::{self, WeightInit};

/// A `Linear(fan_in → fan_out)` with weights drawn from `rng`.
///
/// The bias follows PyTorch (U(±1/√fan_in)) for [`WeightInit::TorchDefault`] and is zero
/// otherwise.
pub fn linear(
    fan_in: usize,
    fan_out: usize,
    init: WeightInit,
    rng: &mut Rng,
    device: &Device,
) -> Linear {
    let w = init::weight(rng, fan_in, fan_out, init);
    let b = match init {
        WeightInit::TorchDefault => init::uniform(rng, fan_out, 1.0 / (fan_in as f32).sqrt()),
        _ => vec![0.0; fan_out],
    };
    Linear {
        weight: init::param(w, [fan_in, fan_out], device),
        bias: Some(init::param(b, [fan_out], device)),
    }
}

/// Normalisation inside an MLP hidden layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Norm {
    /// No normalisation.
    #[default]
    None,
    /// BatchNorm1d (torch-rechub / Scenario-Wise-Rec `MLP`).
    Batch,
    /// LayerNorm (M3oE `MLP_N`).
    Layer,
}

/// Hidden-layer activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// max(x, 0).
    #[default]
    Relu,
    /// Logistic sigmoid.
    Sigmoid,
    /// Identity.
    None,
}

impl Activation {
    fn apply<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Activation::Relu => relu(x),
            Activation::Sigmoid => sigmoid(x),
            Activation::None => x,
        }
    }
}

/// Configuration of an [`Mlp`]; embedded in model configs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MlpConfig {
    /// Normalisation after each hidden Linear.
    pub norm: Norm,
    /// Activation after the normalisation.
    pub activation: Activation,
    /// Dropout probability after the activation (training only).
    pub dropout: f64,
    /// Weight initialisation.
    pub init: WeightInit,
}

impl Default for MlpConfig {
    fn default() -> Self {
        MlpConfig {
            norm: Norm::None,
            activation: Activation::Relu,
            dropout: 0.0,
            init: WeightInit::TorchDefault,
        }
    }
}

/// One hidden layer of an [`Mlp`].
#[derive(Module, Debug)]
pub struct MlpLayer {
    linear: Linear,
    bn: Option<BatchNorm>,
    ln: Option<LayerNorm>,
    dropout: Dropout,
    #[module(skip)]
    activation: Activation,
}

/// A stack of hidden layers `Linear → [norm] → act → [dropout]`, without an output layer.
#[derive(Module, Debug)]
pub struct Mlp {
    layers: Vec<MlpLayer>,
    #[module(skip)]
    out_dim: usize,
}

impl Mlp {
    /// Hidden layers of widths `dims` on an input of width `in_dim`. Empty `dims` is the identity.
    pub fn new(
        in_dim: usize,
        dims: &[usize],
        cfg: &MlpConfig,
        rng: &mut Rng,
        device: &Device,
    ) -> Self {
        let mut layers = Vec::with_capacity(dims.len());
        let mut fan_in = in_dim;
        for &d in dims {
            layers.push(MlpLayer {
                linear: linear(fan_in, d, cfg.init, rng, device),
                bn: (cfg.norm == Norm::Batch).then(|| BatchNormConfig::new(d).init(device)),
                ln: (cfg.norm == Norm::Layer).then(|| LayerNormConfig::new(d).init(device)),
                dropout: DropoutConfig::new(cfg.dropout).init(),
                activation: cfg.activation,
            });
            fan_in = d;
        }
        Mlp {
            layers,
            out_dim: fan_in,
        }
    }

    /// Width of the output.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// # Shapes
    /// - x: `[N, in_dim]` → `[N, out_dim]`
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let mut h = x;
        for l in &self.layers {
            h = l.linear.forward(h);
            if let Some(bn) = &l.bn {
                h = bn.forward(h);
            }
            if let Some(ln) = &l.ln {
                h = ln.forward(h);
            }
            h = l.activation.apply(h);
            h = dropout(&l.dropout, h);
        }
        h
    }
}

thread_local! {
    /// This thread's stream of dropout masks ([`seed_dropout`]).
    static DROPOUT_STREAM: std::cell::RefCell<Option<Rng>> = const { std::cell::RefCell::new(None) };
}

/// Make this thread's [`dropout`] draw its masks from a stream seeded by `seed`. The trainer
/// seeds it before each training pass. burn's own generator is one per process: runs on
/// several threads of one process (replicas, `mdrec bench --jobs`, parallel tests) would take
/// each other's numbers from it in an order the scheduler picks, so training never uses it.
pub fn seed_dropout(seed: u64) {
    DROPOUT_STREAM.with(|r| *r.borrow_mut() = Some(Rng::new(seed)));
}

/// Dropout in training: the kept elements (probability `1 − p`, scaled by `1 / (1 − p)`) come
/// from this thread's stream ([`seed_dropout`]); on a thread that never seeded one (a model's
/// forward pass called outside the trainer), from burn's `Dropout`.
pub fn dropout<const D: usize>(d: &Dropout, x: Tensor<D>) -> Tensor<D> {
    if !d.training.is_enabled() || !x.device().is_autodiff() || d.prob == 0.0 {
        return x;
    }
    let keep = 1.0 - d.prob;
    let mask = DROPOUT_STREAM.with(|r| {
        r.borrow_mut().as_mut().map(|rng| {
            let n = x.shape().num_elements();
            let m: Vec<f32> = (0..n)
                .map(|_| {
                    if rng.next_f64() < keep {
                        (1.0 / keep) as f32
                    } else {
                        0.0
                    }
                })
                .collect();
            Tensor::<D>::from_data(TensorData::new(m, x.shape()), &x.device())
        })
    });
    match mask {
        Some(m) => x * m,
        None => d.forward(x),
    }
}

/// How a mixture gate is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GateKind {
    /// `softmax(Linear(x))` — the MMoE paper.
    #[default]
    Linear,
    /// `softmax(BN(Linear(x)))` — torch-rechub / Scenario-Wise-Rec.
    LinearBn,
}

/// A softmax gate over `n` experts.
#[derive(Module, Debug)]
pub struct Gate {
    linear: Linear,
    bn: Option<BatchNorm>,
}

impl Gate {
    /// A gate from `in_dim` inputs to `n` experts.
    pub fn new(in_dim: usize, n: usize, kind: GateKind, rng: &mut Rng, device: &Device) -> Self {
        Gate {
            linear: linear(in_dim, n, WeightInit::TorchDefault, rng, device),
            bn: (kind == GateKind::LinearBn).then(|| BatchNormConfig::new(n).init(device)),
        }
    }

    /// # Shapes
    /// - x: `[N, in_dim]` → weights `[N, n]`, rows sum to 1
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let mut g = self.linear.forward(x);
        if let Some(bn) = &self.bn {
            g = bn.forward(g);
        }
        softmax(g, 1)
    }
}

/// Mix expert outputs with gate weights.
///
/// # Shapes
/// - experts: `[N, E, H]`, gate: `[N, E]` → `[N, H]`
pub fn mix(experts: Tensor<3>, gate: Tensor<2>) -> Tensor<2> {
    let [n, e, h] = experts.dims();
    let g: Tensor<3> = gate.reshape([n, 1, e]);
    g.matmul(experts).reshape([n, h])
}
