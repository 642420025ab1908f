//! The auxiliary in-batch ranking loss added to BCE (`train.ranking`, §6.1 of Pan et al.,
//! "Ads Recommendation in a Collapsed and Entangled World", KDD 2024).
//!
//! The paper defers the form to its reference \[40\] (Lin et al., "Understanding the Ranking Loss
//! for Recommendation with Sparse User Feedback", KDD 2024), whose main method is
//! *Combined-Pair*: BCE plus a RankNet pairwise logistic loss over the (positive, negative)
//! pairs of a batch. \[40\] also studies a listwise variant (*Combined-List*). Both are here, and
//! both compare rows only within one (domain, task) cell of the batch:
//!
//! - `pairwise`: for cell `c` with positives `P_c` and negatives `N_c` in the batch,
//!   `L_c = 1/(|P_c|·|N_c|) Σ_{i∈P_c} Σ_{j∈N_c} ln(1 + e^{−(z_i − z_j)})`;
//! - `listwise`: softmax cross-entropy over the cell's rows with the labels normalised to a
//!   distribution, `L_c = −Σ_{i∈c} (y_i / |P_c|) · ln softmax(z_c)_i`.
//!
//! A cell contributes only when it holds both classes. The ranking term is `Σ_c L_c` (the sum
//! over cells of a per-cell mean, like the default `cell_mean_sum` reduction of BCE) and the
//! objective is `BCE + weight · Σ_c L_c`.
//!
//! Cost of `pairwise`: one `[n_d, n_d]` matrix per (domain, task) of the batch (`n_d` the
//! domain's rows), so `Σ_d n_d² · T` elements per step; `listwise` is linear in the batch.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// The form of the ranking loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RankingForm {
    /// RankNet pairwise logistic loss over in-cell (positive, negative) pairs (\[40\]'s
    /// Combined-Pair).
    #[default]
    Pairwise,
    /// Softmax cross-entropy over the cell's rows (\[40\]'s Combined-List).
    Listwise,
}

/// `[train.ranking]`: an auxiliary ranking loss added to BCE.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RankingLoss {
    /// λ: the ranking term's weight (the objective is `BCE + weight · ranking`).
    pub weight: f64,
    /// `pairwise` (default) or `listwise`.
    #[serde(default)]
    pub form: RankingForm,
}

impl RankingLoss {
    /// Checks `weight` (finite, non-negative).
    pub fn validate(&self) -> Result<(), String> {
        if !self.weight.is_finite() || self.weight < 0.0 {
            return Err(format!(
                "train.ranking.weight must be finite and non-negative, got {}",
                self.weight
            ));
        }
        Ok(())
    }
}

fn softplus<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    // ln(1 + e^x) = max(x, 0) + ln(1 + e^{−|x|}), finite for any finite x
    x.clone().clamp_min(0.0) + x.abs().neg().exp().log1p()
}

/// The ranking term `Σ_c L_c` of a batch (see the module docs) on `logits` (`[B, T]`), with the
/// batch's host-side `labels` (`[B, T]` row-major, 0/1) and row `domain`s; `None` when no cell
/// of the batch holds both classes.
pub fn ranking_loss(
    logits: Tensor<2>,
    labels: &[f32],
    domain: &[u32],
    n_domains: usize,
    form: RankingForm,
    device: &Device,
) -> Option<Tensor<1>> {
    let b = domain.len();
    if b == 0 {
        return None;
    }
    let t_n = labels.len() / b;
    let mut rows: Vec<Vec<i64>> = vec![Vec::new(); n_domains];
    for (i, &d) in domain.iter().enumerate() {
        if let Some(r) = rows.get_mut(d as usize) {
            r.push(i as i64);
        }
    }
    let mut total: Option<Tensor<1>> = None;
    for r in rows.iter().filter(|r| r.len() >= 2) {
        let n = r.len();
        let idx: Tensor<1, Int> = Tensor::from_data(TensorData::new(r.clone(), [n]), device);
        let z_d = logits.clone().select(0, idx);
        for t in 0..t_n {
            let y: Vec<f32> = r.iter().map(|&i| labels[i as usize * t_n + t]).collect();
            let pos = y.iter().filter(|&&v| v > 0.5).count();
            if pos == 0 || pos == n {
                continue;
            }
            let z = z_d.clone().narrow(1, t, 1); // [n, 1]
            let term = match form {
                RankingForm::Pairwise => {
                    let neg = n - pos;
                    let w = 1.0 / (pos * neg) as f32;
                    let mut mask = vec![0.0f32; n * n];
                    for i in 0..n {
                        if y[i] > 0.5 {
                            for j in 0..n {
                                if y[j] <= 0.5 {
                                    mask[i * n + j] = w;
                                }
                            }
                        }
                    }
                    let mask: Tensor<2> = Tensor::from_data(TensorData::new(mask, [n, n]), device);
                    // diff[i, j] = z_i − z_j
                    let diff = z.clone().expand([n, n]) - z.transpose().expand([n, n]);
                    (softplus(diff.neg()) * mask).sum()
                }
                RankingForm::Listwise => {
                    let target: Vec<f32> = y
                        .iter()
                        .map(|&v| if v > 0.5 { 1.0 / pos as f32 } else { 0.0 })
                        .collect();
                    let target: Tensor<2> =
                        Tensor::from_data(TensorData::new(target, [n, 1]), device);
                    (log_softmax(z, 0) * target).sum().neg()
                }
            };
            total = Some(match total {
                Some(s) => s + term,
                None => term,
            });
        }
    }
    total
}
