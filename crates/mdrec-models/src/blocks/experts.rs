//! The expert bank shared by the mixture-of-experts models: building `n` expert MLPs in a
//! fixed order and stacking their outputs (with the `expert/<i>` probes).

use burn::tensor::{Device, Tensor};
use mdrec_data::rng::Rng;
use mdrec_nn::{Mlp, MlpConfig};

use crate::model::Probes;

/// `n` expert MLPs of hidden widths `dims` on `d_in` inputs, built one after the other from
/// `rng` (expert `i` draws its initial values right after expert `i - 1`).
pub fn expert_bank(
    n: usize,
    d_in: usize,
    dims: &[usize],
    mlp: &MlpConfig,
    rng: &mut Rng,
    device: &Device,
) -> Vec<Mlp> {
    (0..n)
        .map(|_| Mlp::new(d_in, dims, mlp, rng, device))
        .collect()
}

/// The experts' outputs stacked along a new expert axis; output `i` is recorded as the probe
/// `expert/<i>`.
///
/// # Shapes
/// - outs: `E × [B, H]` → `[B, E, H]`
pub fn stack_experts(outs: Vec<Tensor<2>>, probes: &mut Probes) -> Tensor<3> {
    for (i, o) in outs.iter().enumerate() {
        probes.record(|| crate::ProbeKey::Expert(i), || o.clone());
    }
    Tensor::stack(outs, 1)
}

/// Every expert of `experts` on the same input `x`, stacked as [`stack_experts`] does.
///
/// # Shapes
/// - x: `[B, D]` → `[B, E, H]`
pub fn run_experts(experts: &[Mlp], x: &Tensor<2>, probes: &mut Probes) -> Tensor<3> {
    stack_experts(
        experts.iter().map(|e| e.forward(x.clone())).collect(),
        probes,
    )
}
