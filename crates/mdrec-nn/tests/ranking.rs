//! The in-batch ranking loss (§6.1 of Pan et al., KDD 2024, after its reference \[40\]): values
//! against direct formulas, gradients against central finite differences.

use burn::tensor::Tensor;
use mdrec_nn::burn;
use mdrec_nn::device::cpu;
use mdrec_nn::init::tensor;
use mdrec_nn::ranking::{ranking_loss, RankingForm};

const B: usize = 7;
const T: usize = 2;
// rows: domain, (label click, label like)
const DOMAIN: [u32; B] = [0, 0, 1, 1, 0, 1, 0];
const LABELS: [f32; B * T] = [
    1.0, 0.0, //
    0.0, 0.0, //
    1.0, 1.0, //
    0.0, 1.0, //
    0.0, 0.0, //
    1.0, 1.0, //
    1.0, 0.0,
];
// domain 0 / like has no positive and domain 1 / like no negative: they contribute nothing.
// domain 2 is empty.
const N_DOMAINS: usize = 3;

fn logits() -> Vec<f32> {
    (0..B * T)
        .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.4)
        .collect()
}

fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// The ranking term computed directly in f64.
fn direct(z: &[f32], form: RankingForm) -> f64 {
    let mut total = 0.0;
    for d in 0..N_DOMAINS as u32 {
        let rows: Vec<usize> = (0..B).filter(|&i| DOMAIN[i] == d).collect();
        for t in 0..T {
            let pos: Vec<usize> = rows
                .iter()
                .copied()
                .filter(|&i| LABELS[i * T + t] > 0.5)
                .collect();
            let neg: Vec<usize> = rows
                .iter()
                .copied()
                .filter(|&i| LABELS[i * T + t] < 0.5)
                .collect();
            if pos.is_empty() || neg.is_empty() {
                continue;
            }
            let zz = |i: usize| z[i * T + t] as f64;
            total += match form {
                RankingForm::Pairwise => {
                    let mut s = 0.0;
                    for &i in &pos {
                        for &j in &neg {
                            s += softplus(-(zz(i) - zz(j)));
                        }
                    }
                    s / (pos.len() * neg.len()) as f64
                }
                RankingForm::Listwise => {
                    let lse = rows.iter().map(|&i| zz(i).exp()).sum::<f64>().ln();
                    -pos.iter().map(|&i| zz(i) - lse).sum::<f64>() / pos.len() as f64
                }
            };
        }
    }
    total
}

fn value(z: &[f32], form: RankingForm) -> f64 {
    let dev = cpu();
    ranking_loss(
        tensor(z.to_vec(), [B, T], &dev),
        &LABELS,
        &DOMAIN,
        N_DOMAINS,
        form,
        &dev,
    )
    .expect("cells with both classes")
    .into_scalar::<f32>() as f64
}

#[test]
fn value_matches_the_direct_formula() {
    let z = logits();
    for form in [RankingForm::Pairwise, RankingForm::Listwise] {
        let (got, want) = (value(&z, form), direct(&z, form));
        assert!(
            (got - want).abs() < 1e-5 * want.max(1.0),
            "{form:?}: {got} vs {want}"
        );
    }
}

#[test]
fn gradient_matches_central_finite_differences() {
    let z = logits();
    let ad = cpu().autodiff();
    for form in [RankingForm::Pairwise, RankingForm::Listwise] {
        let x: Tensor<2> = tensor(z.clone(), [B, T], &ad).require_grad();
        let loss = ranking_loss(x.clone(), &LABELS, &DOMAIN, N_DOMAINS, form, &ad).unwrap();
        let grads = loss.backward();
        let g = x
            .grad(&grads)
            .expect("logits get a gradient")
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let h = 1e-2f32;
        let mut nonzero = 0;
        for k in 0..B * T {
            let (mut up, mut down) = (z.clone(), z.clone());
            up[k] += h;
            down[k] -= h;
            let fd = (value(&up, form) - value(&down, form)) / (2.0 * h as f64);
            assert!(
                (g[k] as f64 - fd).abs() < 2e-3,
                "{form:?} element {k}: autodiff {} vs finite difference {fd}",
                g[k]
            );
            if fd.abs() > 1e-3 {
                nonzero += 1;
            }
        }
        // domain 0 / like has no positive: its rows get no ranking gradient on that task
        for i in (0..B).filter(|&i| DOMAIN[i] == 0) {
            assert_eq!(g[i * T + 1], 0.0, "{form:?} row {i}");
        }
        // the cells with both classes: domain 0 / click (4 rows) and domain 1 / click (3 rows)
        assert_eq!(nonzero, 7, "{form:?}: {nonzero} non-zero gradients");
    }
}

#[test]
fn pairwise_gradient_pushes_positives_up_and_negatives_down() {
    let z = vec![0.0f32; B * T];
    let ad = cpu().autodiff();
    let x: Tensor<2> = tensor(z, [B, T], &ad).require_grad();
    let loss = ranking_loss(
        x.clone(),
        &LABELS,
        &DOMAIN,
        N_DOMAINS,
        RankingForm::Pairwise,
        &ad,
    )
    .unwrap();
    let g = x
        .grad(&loss.backward())
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    for k in 0..B * T {
        let (d, t) = (DOMAIN[k / T] as usize, k % T);
        let cell_has_both = (0..B).any(|i| DOMAIN[i] as usize == d && LABELS[i * T + t] > 0.5)
            && (0..B).any(|i| DOMAIN[i] as usize == d && LABELS[i * T + t] < 0.5);
        if !cell_has_both {
            continue;
        }
        if LABELS[k] > 0.5 {
            assert!(g[k] < 0.0, "positive {k}: {}", g[k]);
        } else {
            assert!(g[k] > 0.0, "negative {k}: {}", g[k]);
        }
    }
}

#[test]
fn no_cell_with_both_classes_gives_none() {
    let dev = cpu();
    let labels = [1.0f32; B * T];
    let z = tensor(logits(), [B, T], &dev);
    assert!(ranking_loss(z, &labels, &DOMAIN, N_DOMAINS, RankingForm::Pairwise, &dev).is_none());
}
