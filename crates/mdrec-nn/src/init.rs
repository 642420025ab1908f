//! Deterministic parameter initialisation.
//!
//! burn's own initialisers draw from a backend-global generator; mdrec instead draws every
//! initial value from the run's seeded [`Rng`] so the same seed gives the same model on any
//! device and thread count.

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use mdrec_data::rng::Rng;

/// A parameter tensor from host values.
pub fn param<const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
    device: &Device,
) -> Param<Tensor<D>> {
    Param::from_tensor(tensor(values, shape, device))
}

/// A tensor from host values.
pub fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    debug_assert_eq!(values.len(), shape.iter().product::<usize>());
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// `n` values uniform in `[-bound, bound)`.
pub fn uniform(rng: &mut Rng, n: usize, bound: f32) -> Vec<f32> {
    (0..n)
        .map(|_| (rng.next_f32() * 2.0 - 1.0) * bound)
        .collect()
}

/// `n` values from `N(0, std²)`.
pub fn normal(rng: &mut Rng, n: usize, std: f32) -> Vec<f32> {
    (0..n).map(|_| rng.normal() as f32 * std).collect()
}

/// Weight initialisation schemes.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightInit {
    /// PyTorch's `nn.Linear` default: U(±1/√fan_in) (Kaiming-uniform with a = √5).
    TorchDefault,
    /// Xavier/Glorot uniform: U(±√(6/(fan_in+fan_out))).
    XavierUniform,
    /// Xavier/Glorot normal (FuxiCTR's `reset_parameters`).
    XavierNormal,
}

/// Values for a `[fan_in, fan_out]` weight.
pub fn weight(rng: &mut Rng, fan_in: usize, fan_out: usize, init: WeightInit) -> Vec<f32> {
    let n = fan_in * fan_out;
    match init {
        WeightInit::TorchDefault => uniform(rng, n, 1.0 / (fan_in as f32).sqrt()),
        WeightInit::XavierUniform => uniform(rng, n, (6.0 / (fan_in + fan_out) as f32).sqrt()),
        WeightInit::XavierNormal => normal(rng, n, (2.0 / (fan_in + fan_out) as f32).sqrt()),
    }
}
