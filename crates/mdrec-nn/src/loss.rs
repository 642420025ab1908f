//! Losses on logits and the weights that turn per-element losses into the objective.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// Element-wise binary cross-entropy on logits, numerically stable:
/// `max(x, 0) − x·y + ln(1 + e^{−|x|})`. Finite for any finite logit (40 with the wrong label
/// gives 40, not `inf`).
pub fn bce_with_logits<const D: usize>(logits: Tensor<D>, labels: Tensor<D>) -> Tensor<D> {
    let pos = logits.clone().clamp_min(0.0);
    let soft = logits.clone().abs().neg().exp().log1p();
    pos - logits * labels + soft
}

/// How per-element losses of a batch are reduced to one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Reduction {
    /// Σ over (domain, task) cells of the mean loss within the cell (M3oE Eq. 12, generalised to
    /// any number of domains and tasks; empty cells contribute nothing).
    #[default]
    CellMeanSum,
    /// Mean over every (row, task) element (torch-rechub `BCELoss` on `[B, T]`).
    Mean,
    /// Σ over tasks of the mean over rows (FuxiCTR multi-task).
    TaskMeanSum,
}

/// Fill `out` (`[len, n_tasks]`, row-major) with the weight of each element so that
/// `Σ weight · bce` equals the chosen reduction. `domain` holds each row's domain.
pub fn element_weights(
    domain: &[u32],
    n_domains: usize,
    n_tasks: usize,
    reduction: Reduction,
    out: &mut Vec<f32>,
) {
    let len = domain.len();
    out.clear();
    match reduction {
        Reduction::Mean => out.resize(len * n_tasks, 1.0 / (len * n_tasks).max(1) as f32),
        Reduction::TaskMeanSum => out.resize(len * n_tasks, 1.0 / len.max(1) as f32),
        Reduction::CellMeanSum => {
            let mut counts = vec![0usize; n_domains];
            for &d in domain {
                counts[d as usize] += 1;
            }
            out.reserve(len * n_tasks);
            for &d in domain {
                let w = 1.0 / counts[d as usize] as f32;
                out.extend(std::iter::repeat_n(w, n_tasks));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::cpu;
    use crate::init::tensor;

    #[test]
    fn bce_matches_direct_formula_and_is_stable() {
        let d = cpu();
        let x = [-40.0f32, -2.0, 0.0, 0.5, 3.0, 40.0];
        let y = [1.0f32, 0.0, 1.0, 1.0, 0.0, 0.0];
        let l = bce_with_logits(tensor(x.to_vec(), [6], &d), tensor(y.to_vec(), [6], &d));
        let got = l.into_data().try_to_vec::<f32>().unwrap();
        for i in 0..6 {
            let p = 1.0 / (1.0 + (-(x[i] as f64)).exp());
            let direct = -(y[i] as f64 * p.max(1e-300).ln()
                + (1.0 - y[i] as f64) * (1.0 - p).max(1e-300).ln());
            let want = if x[i].abs() >= 40.0 { 40.0 } else { direct };
            assert!(
                (got[i] as f64 - want).abs() < 1e-4,
                "x={} got {} want {}",
                x[i],
                got[i],
                want
            );
            assert!(got[i].is_finite());
        }
    }

    #[test]
    fn every_element_weight_follows_its_reduction() {
        // Rows' domains: 0, 0, 2, 0, 2 (domain 1 empty); 2 tasks → 10 weights, row-major.
        let dom = [0u32, 0, 2, 0, 2];
        let mut w = Vec::new();
        let (a, b) = (1.0 / 3.0, 0.5);
        element_weights(&dom, 3, 2, Reduction::CellMeanSum, &mut w);
        assert_eq!(w, [a, a, a, a, b, b, a, a, b, b]);
        // Σ = one per non-empty (domain, task) cell: 2 domains × 2 tasks.
        assert!((w.iter().sum::<f32>() - 4.0).abs() < 1e-6);
        element_weights(&dom, 3, 2, Reduction::Mean, &mut w);
        assert_eq!(w, [0.1; 10]);
        element_weights(&dom, 3, 2, Reduction::TaskMeanSum, &mut w);
        assert_eq!(w, [0.2; 10]);
        // An empty batch gives no weights and no division by zero.
        element_weights(&[], 3, 2, Reduction::CellMeanSum, &mut w);
        assert!(w.is_empty());
    }
}
