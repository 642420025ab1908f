//! Losses that push experts apart (Crocodile, Xu et al. 2025, Eq. 6 and Table 4): the
//! cross-expert covariance loss and the alternatives the paper compares it with.
//!
//! Every loss takes the experts' outputs on the same rows, `outs[p]: [N, d]` (`N` rows, `d` the
//! common expert width), and returns a scalar `[1]`. Pairs run over `p > q`.
//!
//! | loss | formula |
//! |---|---|
//! | `cov` (paper Eq. 6) | `(1/d²) Σ_{p>q} ‖C_pᵀ C_q‖₁ / n`, `C_p = O_p − mean_rows(O_p)`, `n` per [`CovNormalize`] |
//! | `dot` | `Σ_{p>q} mean_k ⟨O_k^p, O_k^q⟩` |
//! | `cos` | `Σ_{p>q} mean_k cos(O_k^p, O_k^q)` |
//! | `dcorr` | `Σ_{p>q} dCor²(O^p, O^q)` (squared distance correlation over the `N` rows) |
//! | `ole` | `Σ_{p>q} ‖C_pᵀ C_q‖_F / (d·n)` (the F-norm form) |
//! | `importance` | `CV²` of the gates' total weight per expert (Shazeer et al. 2017) — see [`importance_loss`] |
//! | `trans` | `Σ_{p>q} mean_rows ‖O_p W_pq − O_q‖₁ + mean_rows ‖O_p − O_p W_pq W_pqᵀ‖₁`, `W_pq` learned — see [`transformation_loss`] |
//!
//! The paper gives exact forms only for `cov` (literal Eq. 6: no `1/N`, hence
//! `normalize = "none"` by default); the others are \[INFERRED\] from the names in its Table 4 and
//! documented here. `trans` stands for Table 4's "Trans5", "one of the effective versions of
//! equivalent transformation losses" of ETL (Chen et al., "Toward Equivalent Transformation of
//! User Preferences in Cross Domain Recommendation", TOIS 2023). Neither paper says which
//! version that is; ETL's official code (github.com/xuChenSJTU/ETL-master, `model_my.py`)
//! relates two domains' user representations by one learned `d × d` matrix `W` (Xavier-uniform,
//! gain √2), maps `z_x W` into the other domain and keeps `W` near-orthogonal with the per-row
//! L1 norm of `z_x − z_x W Wᵀ`. Here each pair of experts plays the two domains: `O_p W_pq`
//! should equal `O_q` (the transfer, measured directly since the experts have no decoders) and
//! `W_pq` should stay invertible by its transpose. It pulls the experts towards rotations of
//! one another, the opposite of the separation losses, which is what Table 4 reports it doing
//! (AUC −0.06 %). Row sampling (the paper: "as low as 32 samples") is the caller's: pass the
//! first rows of a shuffled batch.

use burn::module::Param;
use burn::tensor::{Device, Tensor};
use mdrec_data::rng::Rng;
use serde::{Deserialize, Serialize};

/// Which expert-separation loss to add (Crocodile Table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DisentangleKind {
    /// No extra loss.
    None,
    /// Cross-expert covariance loss (Eq. 6).
    #[default]
    Cov,
    /// Mean dot product of expert outputs.
    Dot,
    /// Mean cosine similarity of expert outputs.
    Cos,
    /// Squared distance correlation.
    Dcorr,
    /// Frobenius norm of the cross-covariance.
    Ole,
    /// Load balance of gate importance (acts on gates, not on expert outputs).
    Importance,
    /// ETL's equivalent transformation between each pair of experts (learned maps).
    Trans,
}

/// The `n` that divides `C_pᵀ C_q` in the covariance losses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CovNormalize {
    /// `n = 1`: Eq. 6 as printed (the matrix is `N·Cov`).
    #[default]
    None,
    /// `n = N`: the biased covariance.
    N,
    /// `n = N − 1`: the unbiased covariance.
    NMinus1,
}

impl CovNormalize {
    fn divisor(self, n: usize) -> f32 {
        match self {
            CovNormalize::None => 1.0,
            CovNormalize::N => n as f32,
            CovNormalize::NMinus1 => (n.max(2) - 1) as f32,
        }
    }
}

fn centered(o: &Tensor<2>) -> Tensor<2> {
    o.clone() - o.clone().mean_dim(0)
}

fn pairs(k: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..k).flat_map(move |p| (0..p).map(move |q| (p, q)))
}

fn sum_pairs(n_experts: usize, mut f: impl FnMut(usize, usize) -> Tensor<1>) -> Option<Tensor<1>> {
    pairs(n_experts).map(|(p, q)| f(p, q)).reduce(|a, b| a + b)
}

/// The loss `kind` over expert outputs `outs` (`[N, d]` each); `None` for
/// [`DisentangleKind::None`], [`DisentangleKind::Importance`] (see [`importance_loss`]),
/// [`DisentangleKind::Trans`] (see [`transformation_loss`]) or fewer than two experts.
pub fn expert_loss(
    kind: DisentangleKind,
    outs: &[Tensor<2>],
    normalize: CovNormalize,
) -> Option<Tensor<1>> {
    let [n, d] = outs.first()?.dims();
    match kind {
        DisentangleKind::None | DisentangleKind::Importance | DisentangleKind::Trans => None,
        DisentangleKind::Cov => {
            let c: Vec<Tensor<2>> = outs.iter().map(centered).collect();
            let scale = 1.0 / ((d * d) as f32 * normalize.divisor(n));
            sum_pairs(outs.len(), |p, q| {
                c[p].clone().transpose().matmul(c[q].clone()).abs().sum()
            })
            .map(|s| s * scale)
        }
        DisentangleKind::Ole => {
            let c: Vec<Tensor<2>> = outs.iter().map(centered).collect();
            let scale = 1.0 / (d as f32 * normalize.divisor(n));
            sum_pairs(outs.len(), |p, q| {
                let m = c[p].clone().transpose().matmul(c[q].clone());
                (m.clone() * m).sum().add_scalar(1e-12).sqrt()
            })
            .map(|s| s * scale)
        }
        DisentangleKind::Dot => sum_pairs(outs.len(), |p, q| {
            (outs[p].clone() * outs[q].clone()).sum_dim(1).mean()
        }),
        DisentangleKind::Cos => {
            let unit: Vec<Tensor<2>> = outs
                .iter()
                .map(|o| {
                    let norm = (o.clone() * o.clone()).sum_dim(1).add_scalar(1e-12).sqrt();
                    o.clone() / norm
                })
                .collect();
            sum_pairs(outs.len(), |p, q| {
                (unit[p].clone() * unit[q].clone()).sum_dim(1).mean()
            })
        }
        DisentangleKind::Dcorr => {
            let a: Vec<Tensor<2>> = outs.iter().map(double_centered_distances).collect();
            let v: Vec<Tensor<1>> = a.iter().map(|x| (x.clone() * x.clone()).mean()).collect();
            sum_pairs(outs.len(), |p, q| {
                let cov = (a[p].clone() * a[q].clone()).mean();
                cov / (v[p].clone() * v[q].clone()).add_scalar(1e-12).sqrt()
            })
        }
    }
}

/// The learned maps of [`transformation_loss`] for `n_experts` experts of width `d`: one
/// `d × d` matrix per pair `p > q` (in the order `(1,0), (2,0), (2,1), (3,0), …`), drawn
/// Xavier-uniform with gain √2 as ETL's code does (bound `√2·√(6/2d) = √(6/d)`).
pub fn transformation_maps(
    n_experts: usize,
    d: usize,
    rng: &mut Rng,
    device: &Device,
) -> Vec<Param<Tensor<2>>> {
    let bound = (6.0 / d.max(1) as f32).sqrt();
    pairs(n_experts)
        .map(|_| crate::init::param(crate::init::uniform(rng, d * d, bound), [d, d], device))
        .collect()
}

/// ETL's equivalent-transformation loss between every pair of experts (`trans`, see the module
/// docs): `Σ_{p>q} mean_rows ‖O_p W_pq − O_q‖₁ + mean_rows ‖O_p − O_p W_pq W_pqᵀ‖₁`, the L1
/// norms per row over the `d` dimensions. `maps` come from [`transformation_maps`]; `None` for
/// fewer than two experts.
pub fn transformation_loss(outs: &[Tensor<2>], maps: &[Tensor<2>]) -> Option<Tensor<1>> {
    let l1 = |x: Tensor<2>| x.abs().sum_dim(1).mean();
    pairs(outs.len())
        .zip(maps)
        .map(|((p, q), w)| {
            let mapped = outs[p].clone().matmul(w.clone());
            let back = mapped.clone().matmul(w.clone().transpose());
            l1(mapped - outs[q].clone()) + l1(outs[p].clone() - back)
        })
        .reduce(|a, b| a + b)
}

/// Pairwise Euclidean distances of the rows of `o` (`[N, d]` → `[N, N]`), double-centred.
fn double_centered_distances(o: &Tensor<2>) -> Tensor<2> {
    let sq = (o.clone() * o.clone()).sum_dim(1); // [N, 1]
    let gram = o.clone().matmul(o.clone().transpose());
    let d2 = sq.clone() + sq.transpose() - gram * 2.0;
    // The diagonal is zero by definition: mask it out rather than take the square root of
    // rounding noise (whose gradient would be huge), and floor the rest.
    let [n, _] = o.dims();
    let off_diag: Tensor<2> = Tensor::ones([n, n], &o.device()) - Tensor::eye(n, &o.device());
    let dist = d2.clamp_min(0.0).add_scalar(1e-9).sqrt() * off_diag;
    let row = dist.clone().mean_dim(1);
    let col = dist.clone().mean_dim(0);
    let all = dist.clone().mean().reshape([1, 1]);
    dist - row - col + all
}

/// Load-balancing loss on gates `gates[s]: [N_s, K]` (or `[N_s, K·d]` for element-wise gates,
/// expert-major): `CV²` of each expert's total weight over all rows and gates, i.e.
/// `var(imp) / mean(imp)²` with the population variance.
pub fn importance_loss(gates: &[Tensor<2>], n_experts: usize) -> Option<Tensor<1>> {
    let imp = gates
        .iter()
        .map(|g| {
            let [n, w] = g.dims();
            g.clone()
                .reshape([n, n_experts, w / n_experts])
                .sum_dim(2)
                .sum_dim(0)
                .reshape([n_experts])
        })
        .reduce(|a, b| a + b)?;
    let mean = imp.clone().mean();
    let var = (imp - mean.clone()).powi_scalar(2).mean();
    Some(var / (mean.clone() * mean).add_scalar(1e-12))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::cpu;
    use crate::init::tensor;
    use burn::tensor::Device;
    use mdrec_data::rng::Rng;

    fn random(rng: &mut Rng, n: usize, d: usize) -> Vec<f32> {
        (0..n * d).map(|_| rng.normal() as f32).collect()
    }

    /// Eq. 6 computed with loops in f64.
    fn cov_direct(outs: &[Vec<f32>], n: usize, d: usize, div: f64) -> f64 {
        let centered: Vec<Vec<f64>> = outs
            .iter()
            .map(|o| {
                let mut c: Vec<f64> = o.iter().map(|&x| x as f64).collect();
                for j in 0..d {
                    let m = (0..n).map(|i| c[i * d + j]).sum::<f64>() / n as f64;
                    (0..n).for_each(|i| c[i * d + j] -= m);
                }
                c
            })
            .collect();
        let mut total = 0.0;
        for p in 0..outs.len() {
            for q in 0..p {
                for a in 0..d {
                    for b in 0..d {
                        let s: f64 = (0..n)
                            .map(|i| centered[p][i * d + a] * centered[q][i * d + b])
                            .sum();
                        total += s.abs();
                    }
                }
            }
        }
        total / (d * d) as f64 / div
    }

    fn scalar(t: Tensor<1>) -> f64 {
        t.into_scalar::<f32>() as f64
    }

    #[test]
    fn cov_loss_matches_direct_computation() {
        let dev = cpu();
        let mut rng = Rng::new(3);
        let (n, d) = (7, 5);
        let raw: Vec<Vec<f32>> = (0..3).map(|_| random(&mut rng, n, d)).collect();
        let outs: Vec<Tensor<2>> = raw
            .iter()
            .map(|v| tensor(v.clone(), [n, d], &dev))
            .collect();
        for (norm, div) in [
            (CovNormalize::None, 1.0),
            (CovNormalize::N, n as f64),
            (CovNormalize::NMinus1, (n - 1) as f64),
        ] {
            let got = scalar(expert_loss(DisentangleKind::Cov, &outs, norm).unwrap());
            let want = cov_direct(&raw, n, d, div);
            assert!(
                (got - want).abs() < 1e-4 * want.max(1.0),
                "{norm:?}: {got} vs {want}"
            );
        }
        // Identical experts have the largest covariance; shifting one expert by a constant per
        // dimension changes nothing (covariance is centred).
        let shifted: Vec<f32> = raw[0]
            .iter()
            .enumerate()
            .map(|(i, x)| x + (i % d) as f32)
            .collect();
        let outs2 = vec![
            tensor(shifted, [n, d], &dev),
            outs[1].clone(),
            outs[2].clone(),
        ];
        let a = scalar(expert_loss(DisentangleKind::Cov, &outs, CovNormalize::None).unwrap());
        let b = scalar(expert_loss(DisentangleKind::Cov, &outs2, CovNormalize::None).unwrap());
        assert!((a - b).abs() < 1e-4 * a);
        assert!(expert_loss(DisentangleKind::Cov, &outs[..1], CovNormalize::None).is_none());
    }

    /// Gradient of every loss w.r.t. the expert outputs against central finite differences.
    #[test]
    fn losses_match_finite_differences() {
        let dev = cpu();
        let ad: Device = dev.clone().autodiff();
        let mut rng = Rng::new(11);
        let (n, d) = (6, 3);
        let raw: Vec<Vec<f32>> = (0..3).map(|_| random(&mut rng, n, d)).collect();
        for kind in [
            DisentangleKind::Cov,
            DisentangleKind::Dot,
            DisentangleKind::Cos,
            DisentangleKind::Dcorr,
            DisentangleKind::Ole,
        ] {
            let eval = |vals: &[Vec<f32>]| -> f64 {
                let outs: Vec<Tensor<2>> = vals
                    .iter()
                    .map(|v| tensor(v.clone(), [n, d], &dev))
                    .collect();
                scalar(expert_loss(kind, &outs, CovNormalize::N).unwrap())
            };
            let leaves: Vec<Tensor<2>> = raw
                .iter()
                .map(|v| tensor(v.clone(), [n, d], &ad).require_grad())
                .collect();
            let grads = expert_loss(kind, &leaves, CovNormalize::N)
                .unwrap()
                .backward();
            for (p, leaf) in leaves.iter().enumerate() {
                let g = leaf
                    .grad(&grads)
                    .unwrap()
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap();
                for i in [0, 4, 10, 17] {
                    let h = 3e-3;
                    let mut up = raw.clone();
                    up[p][i] += h;
                    let mut dn = raw.clone();
                    dn[p][i] -= h;
                    let fd = (eval(&up) - eval(&dn)) / (2.0 * h as f64);
                    let an = g[i] as f64;
                    assert!(
                        (fd - an).abs() < 2e-2 * fd.abs().max(an.abs()).max(0.05),
                        "{kind:?} expert {p} element {i}: analytic {an} vs finite-difference {fd}"
                    );
                }
            }
        }
    }

    /// The transformation loss by loops in f64, and its gradients (outputs and maps) against
    /// central finite differences.
    #[test]
    fn transformation_loss_matches_direct_computation_and_finite_differences() {
        let dev = cpu();
        let ad: Device = dev.clone().autodiff();
        let mut rng = Rng::new(17);
        let (n, d) = (5, 3);
        let raw: Vec<Vec<f32>> = (0..3).map(|_| random(&mut rng, n, d)).collect();
        let maps: Vec<Vec<f32>> = transformation_maps(3, d, &mut rng, &dev)
            .into_iter()
            .map(|w| w.val().into_data().try_to_vec::<f32>().unwrap())
            .collect();
        assert_eq!(maps.len(), 3);
        let bound = (6.0f32 / d as f32).sqrt();
        assert!(maps.iter().flatten().all(|w| w.abs() <= bound));
        let direct = |outs: &[Vec<f32>], maps: &[Vec<f32>]| -> f64 {
            let mut total = 0.0;
            for (i, (p, q)) in [(1, 0), (2, 0), (2, 1)].into_iter().enumerate() {
                let (o, w) = (&outs[p], &maps[i]);
                for r in 0..n {
                    let m: Vec<f64> = (0..d)
                        .map(|j| {
                            (0..d)
                                .map(|k| o[r * d + k] as f64 * w[k * d + j] as f64)
                                .sum()
                        })
                        .collect();
                    for j in 0..d {
                        let back: f64 = (0..d).map(|k| m[k] * w[j * d + k] as f64).sum();
                        total += (m[j] - outs[q][r * d + j] as f64).abs() / n as f64;
                        total += (o[r * d + j] as f64 - back).abs() / n as f64;
                    }
                }
            }
            total
        };
        let eval = |outs: &[Vec<f32>], maps: &[Vec<f32>]| -> f64 {
            let t = |v: &[Vec<f32>], shape: [usize; 2]| -> Vec<Tensor<2>> {
                v.iter().map(|x| tensor(x.clone(), shape, &dev)).collect()
            };
            scalar(transformation_loss(&t(outs, [n, d]), &t(maps, [d, d])).unwrap())
        };
        let (got, want) = (eval(&raw, &maps), direct(&raw, &maps));
        assert!((got - want).abs() < 1e-4 * want.max(1.0), "{got} vs {want}");
        let leaf = |v: &Vec<f32>, shape| tensor(v.clone(), shape, &ad).require_grad();
        let o_leaves: Vec<Tensor<2>> = raw.iter().map(|v| leaf(v, [n, d])).collect();
        let w_leaves: Vec<Tensor<2>> = maps.iter().map(|v| leaf(v, [d, d])).collect();
        let grads = transformation_loss(&o_leaves, &w_leaves)
            .unwrap()
            .backward();
        let fd = |outs: bool, a: usize, i: usize| -> f64 {
            let h = 1e-3;
            let (mut up_o, mut up_w, mut dn_o, mut dn_w) =
                (raw.clone(), maps.clone(), raw.clone(), maps.clone());
            if outs {
                up_o[a][i] += h;
                dn_o[a][i] -= h;
            } else {
                up_w[a][i] += h;
                dn_w[a][i] -= h;
            }
            (eval(&up_o, &up_w) - eval(&dn_o, &dn_w)) / (2.0 * h as f64)
        };
        for (is_out, leaves) in [(true, &o_leaves), (false, &w_leaves)] {
            for (a, l) in leaves.iter().enumerate() {
                let g = l
                    .grad(&grads)
                    .unwrap()
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap();
                for i in [0, 4, 8] {
                    let (f, an) = (fd(is_out, a, i), g[i] as f64);
                    assert!(
                        (f - an).abs() < 2e-2 * f.abs().max(an.abs()).max(0.05),
                        "outputs {is_out} #{a} element {i}: analytic {an} vs finite-difference {f}"
                    );
                }
            }
        }
    }

    #[test]
    fn dcorr_is_one_for_identical_and_small_for_independent_experts() {
        let dev = cpu();
        let mut rng = Rng::new(5);
        let (n, d) = (64, 4);
        let a = random(&mut rng, n, d);
        let b = random(&mut rng, n, d);
        let same = vec![
            tensor(a.clone(), [n, d], &dev),
            tensor(a.clone(), [n, d], &dev),
        ];
        let indep = vec![tensor(a, [n, d], &dev), tensor(b, [n, d], &dev)];
        let s = scalar(expert_loss(DisentangleKind::Dcorr, &same, CovNormalize::None).unwrap());
        let i = scalar(expert_loss(DisentangleKind::Dcorr, &indep, CovNormalize::None).unwrap());
        assert!((s - 1.0).abs() < 1e-3, "dCor² of identical experts {s}");
        assert!(i < 0.3, "dCor² of independent experts {i}");
    }

    #[test]
    fn importance_is_zero_for_balanced_gates() {
        let dev = cpu();
        let balanced = tensor(vec![0.5; 8], [4, 2], &dev);
        let skewed = tensor(vec![0.9, 0.1, 0.9, 0.1, 0.9, 0.1, 0.9, 0.1], [4, 2], &dev);
        let b = scalar(importance_loss(&[balanced], 2).unwrap());
        let s = scalar(importance_loss(&[skewed], 2).unwrap());
        assert!(b.abs() < 1e-9);
        // imp = (3.6, 0.4): mean 2, variance 2.56 → CV² = 0.64.
        assert!((s - 0.64).abs() < 1e-5, "{s}");
    }
}
