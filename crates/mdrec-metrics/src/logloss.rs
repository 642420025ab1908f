//! LogLoss: mean binary cross-entropy from logits (numerically stable, what
//! the report uses) or from probabilities (sklearn `log_loss` with clipping), and the M3oE 2-D
//! compat quirk.

/// Stable BCE of one logit: `max(x, 0) − x·y + ln(1 + e^{−|x|})`.
#[inline]
pub fn bce(x: f64, y: f64) -> f64 {
    x.max(0.0) - x * y + (-x.abs()).exp().ln_1p()
}

/// Mean BCE computed from pre-sigmoid logits (no clipping needed: exact for any finite logit).
/// `None` when empty.
///
/// # Panics
/// If `labels` and `logits` differ in length (a programmer error).
pub fn logloss_from_logits(labels: &[f32], logits: &[f32]) -> Option<f64> {
    assert_eq!(
        labels.len(),
        logits.len(),
        "logloss_from_logits: labels and logits differ in length"
    );
    if labels.is_empty() {
        return None;
    }
    let s: f64 = labels
        .iter()
        .zip(logits)
        .map(|(&y, &x)| bce(f64::from(x), f64::from(y)))
        .sum();
    Some(s / labels.len() as f64)
}

/// sklearn `log_loss(y, p)` with the probabilities clipped to `[eps, 1 − eps]` (FuxiCTR passes
/// `eps = 1e-7`). `None` when empty.
///
/// # Panics
/// If `labels` and `probs` differ in length (a programmer error).
pub fn logloss_from_probs(labels: &[f32], probs: &[f32], eps: f64) -> Option<f64> {
    assert_eq!(
        labels.len(),
        probs.len(),
        "logloss_from_probs: labels and probs differ in length"
    );
    if labels.is_empty() {
        return None;
    }
    let s: f64 = labels
        .iter()
        .zip(probs)
        .map(|(&y, &p)| {
            let (y, p) = (f64::from(y), f64::from(p).clamp(eps, 1.0 - eps));
            -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
        })
        .sum();
    Some(s / labels.len() as f64)
}

/// **Compat only — not a LogLoss.** M3oE's printed overall "Logloss" (official M3oE repository, `CTRTrainer.evaluate`; see docs/metrics.md): the
/// M3oE trainer passes 2-D `[N, T]` arrays to sklearn (1.2.x) `log_loss`, which treats the
/// tasks as classes, clips to `[ε, 1 − ε]` (ε = f64 machine epsilon, sklearn's `eps="auto"`),
/// **row-normalises** the predictions and returns `−mean_i Σ_t y_it·ln(p_it / Σ_t' p_it')`.
/// (sklearn ≥ 1.5 no longer normalises.) Use it only to compare against M3oE's tables; report
/// [`logloss_from_logits`] otherwise.
///
/// `labels` and `probs` are row-major `[N, n_tasks]`. `None` when empty or `n_tasks == 0`.
///
/// # Panics
/// If the lengths differ or are not a multiple of `n_tasks` (a programmer error).
pub fn sklearn_2d_logloss_compat(labels: &[f32], probs: &[f32], n_tasks: usize) -> Option<f64> {
    assert_eq!(
        labels.len(),
        probs.len(),
        "sklearn_2d_logloss_compat: labels and probs differ in length"
    );
    if labels.is_empty() || n_tasks == 0 {
        return None;
    }
    assert_eq!(
        labels.len() % n_tasks,
        0,
        "sklearn_2d_logloss_compat: length is not a multiple of n_tasks"
    );
    let eps = f64::EPSILON;
    let mut s = 0.0;
    for (y_row, p_row) in labels
        .chunks_exact(n_tasks)
        .zip(probs.chunks_exact(n_tasks))
    {
        let clip = |p: f32| f64::from(p).clamp(eps, 1.0 - eps);
        let z: f64 = p_row.iter().map(|&p| clip(p)).sum();
        for (&y, &p) in y_row.iter().zip(p_row) {
            if y != 0.0 {
                s -= f64::from(y) * (clip(p) / z).ln();
            }
        }
    }
    Some(s / (labels.len() / n_tasks) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{lcg_case, lcg_eval_case};

    #[test]
    fn from_probs_golden_against_sklearn() {
        // golden/make_golden.py, section "logloss_from_probs":
        // log_loss(y, clip(p, eps, 1 - eps)) on lcg_case(n, seed, 0.35, 0.4, 1); p holds 0 and 1.
        let cases = [
            (50usize, 1u64, 0.05, 0.32426389076221007f64),
            (1000, 7, 0.05, 0.3949582655183516),
            (333, 42, 1e-7, 0.3748099028510729),
            (2000, 3, 1e-15, 0.3825223305865907),
        ];
        for (n, seed, eps, want) in cases {
            let (y, p) = lcg_case(n, seed, 0.35, 0.4, 1);
            let got = logloss_from_probs(&y, &p, eps).unwrap();
            assert!((got - want).abs() < 1e-12, "n={n}: {got} vs {want}");
        }
    }

    #[test]
    fn from_logits_golden_against_sklearn() {
        // golden/make_golden.py, section "logloss_from_logits": log_loss(y, sigmoid(x)),
        // x = f32(8·(p − 0.5)) on lcg_case(n, seed, 0.35, 0.4, 2).
        for (n, seed, want) in [
            (1000usize, 7u64, 0.319249538099548f64),
            (2000, 3, 0.3089985166100953),
        ] {
            let (y, p) = lcg_case(n, seed, 0.35, 0.4, 2);
            let x: Vec<f32> = p
                .iter()
                .map(|&v| (8.0 * (f64::from(v) - 0.5)) as f32)
                .collect();
            let got = logloss_from_logits(&y, &x).unwrap();
            assert!((got - want).abs() < 1e-12, "n={n}: {got} vs {want}");
        }
    }

    #[test]
    fn logits_and_probs_agree_and_logits_are_stable() {
        let y = [1.0f32, 0.0, 1.0, 0.0];
        let x = [2.0f32, -1.0, -0.5, 3.0];
        let probs: Vec<f32> = x.iter().map(|&v| 1.0 / (1.0 + (-v).exp())).collect();
        let a = logloss_from_logits(&y, &x).unwrap();
        let b = logloss_from_probs(&y, &probs, 1e-7).unwrap();
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        // Large logits: exact, where a probability would saturate.
        assert!((logloss_from_logits(&[0.0], &[40.0]).unwrap() - 40.0).abs() < 1e-9);
        assert!((logloss_from_logits(&[1.0], &[-100.0]).unwrap() - 100.0).abs() < 1e-9);
        assert!(logloss_from_logits(&[1.0], &[100.0]).unwrap() < 1e-40);
        assert_eq!(logloss_from_logits(&[], &[]), None);
        assert_eq!(logloss_from_probs(&[], &[], 1e-7), None);
        // Clipping keeps p = 0 for a positive finite.
        let v = logloss_from_probs(&[1.0], &[0.0], 1e-7).unwrap();
        assert!((v - (1e7f64).ln()).abs() < 1e-6);
    }

    #[test]
    fn sklearn_2d_compat_golden_against_sklearn_1_2_1() {
        // golden/make_golden.py under sklearn 1.2.1, section "sklearn_2d_logloss_compat".
        let v = sklearn_2d_logloss_compat(
            &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0],
            &[0.8, 0.3, 0.4, 0.6, 0.9, 0.7],
            2,
        )
        .unwrap();
        assert!((v - 0.743774024324185).abs() < 1e-6, "{v}");
        let c = lcg_eval_case(3000, 21, 3, 2, 200);
        let p: Vec<f32> = c
            .logits
            .iter()
            .map(|&x| (1.0 / (1.0 + (-f64::from(x)).exp())) as f32)
            .collect();
        let v = sklearn_2d_logloss_compat(&c.labels, &p, 2).unwrap();
        assert!((v - 0.2358721343851226).abs() < 1e-6, "{v}");
        // It is not the mean BCE.
        let bce = logloss_from_logits(&c.labels, &c.logits).unwrap();
        assert!((v - bce).abs() > 0.1);
        assert_eq!(sklearn_2d_logloss_compat(&[], &[], 2), None);
    }
}
