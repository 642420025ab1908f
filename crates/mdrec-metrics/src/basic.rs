//! AUC, gAUC and LogLoss on slices.

use std::collections::BTreeMap;

/// Exact ROC AUC with ties counted ½ (sklearn `roc_auc_score`).
///
/// `None` when `labels` is empty or has a single class. Labels are 0/1 (any value > 0.5 is a
/// positive).
pub fn auc(labels: &[f32], scores: &[f32]) -> Option<f64> {
    assert_eq!(
        labels.len(),
        scores.len(),
        "auc: labels and scores differ in length"
    );
    let mut idx: Vec<u32> = (0..labels.len() as u32).collect();
    auc_indexed(labels, scores, &mut idx)
}

/// AUC over the rows `idx` (reordered in place).
pub(crate) fn auc_indexed(labels: &[f32], scores: &[f32], idx: &mut [u32]) -> Option<f64> {
    let n_pos = idx.iter().filter(|&&i| labels[i as usize] > 0.5).count();
    let n_neg = idx.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    idx.sort_unstable_by(|&a, &b| scores[a as usize].total_cmp(&scores[b as usize]));
    // Sum of ranks (1-based, ties averaged) of the positives.
    let mut rank_sum = 0.0f64;
    let mut i = 0;
    while i < idx.len() {
        let s = scores[idx[i] as usize];
        let mut j = i;
        let mut pos_in_tie = 0usize;
        while j < idx.len() && scores[idx[j] as usize] == s {
            if labels[idx[j] as usize] > 0.5 {
                pos_in_tie += 1;
            }
            j += 1;
        }
        let avg_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum += avg_rank * pos_in_tie as f64;
        i = j;
    }
    let np = n_pos as f64;
    Some((rank_sum - np * (np + 1.0) / 2.0) / (np * n_neg as f64))
}

/// Group AUC.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GaucResult {
    /// Σ n_g·AUC_g / Σ n_g over groups with both classes (DIN / FuxiCTR).
    pub weighted: Option<f64>,
    /// Unweighted mean of AUC_g over those groups (torchrec).
    pub mean: Option<f64>,
    /// Number of groups.
    pub n_groups: usize,
    /// Groups with both classes.
    pub n_groups_used: usize,
    /// Groups excluded because they hold one class only.
    pub n_groups_single_class: usize,
}

/// Group AUC of `scores` grouped by `groups`.
pub fn gauc(labels: &[f32], scores: &[f32], groups: &[u64]) -> GaucResult {
    assert_eq!(
        labels.len(),
        groups.len(),
        "gauc: labels and groups differ in length"
    );
    let mut by: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
    for (i, &g) in groups.iter().enumerate() {
        by.entry(g).or_default().push(i as u32);
    }
    let (mut wsum, mut nsum, mut msum, mut used, mut single) = (0.0, 0usize, 0.0, 0usize, 0usize);
    for rows in by.values_mut() {
        match auc_indexed(labels, scores, rows) {
            Some(a) => {
                wsum += a * rows.len() as f64;
                nsum += rows.len();
                msum += a;
                used += 1;
            }
            None => single += 1,
        }
    }
    GaucResult {
        weighted: (used > 0).then(|| wsum / nsum as f64),
        mean: (used > 0).then(|| msum / used as f64),
        n_groups: by.len(),
        n_groups_used: used,
        n_groups_single_class: single,
    }
}

/// Stable BCE of one logit: `max(x,0) − x·y + ln(1 + e^{−|x|})`.
pub(crate) fn bce(x: f64, y: f64) -> f64 {
    x.max(0.0) - x * y + (-x.abs()).exp().ln_1p()
}

/// Mean BCE computed from logits (no clipping needed). `None` when empty.
pub fn logloss_from_logits(labels: &[f32], logits: &[f32]) -> Option<f64> {
    assert_eq!(labels.len(), logits.len());
    if labels.is_empty() {
        return None;
    }
    let s: f64 = labels
        .iter()
        .zip(logits)
        .map(|(&y, &x)| bce(x as f64, y as f64))
        .sum();
    Some(s / labels.len() as f64)
}

/// sklearn `log_loss` on probabilities clipped to `[eps, 1 − eps]`. `None` when empty.
pub fn logloss_from_probs(labels: &[f32], probs: &[f32], eps: f64) -> Option<f64> {
    assert_eq!(labels.len(), probs.len());
    if labels.is_empty() {
        return None;
    }
    let s: f64 = labels
        .iter()
        .zip(probs)
        .map(|(&y, &p)| {
            let p = (p as f64).clamp(eps, 1.0 - eps);
            -(y as f64 * p.ln() + (1.0 - y as f64) * (1.0 - p).ln())
        })
        .sum();
    Some(s / labels.len() as f64)
}

/// M3oE's printed overall "Logloss" (compat only, model-spec §2.2): sklearn `log_loss` on 2-D
/// `[N, T]` inputs row-normalises the predictions: `−mean_i Σ_t y_it·log(p_it / Σ_t' p_it')`.
/// It is not a BCE; report it only to compare with M3oE's tables.
pub fn sklearn_2d_logloss_compat(labels: &[f32], probs: &[f32], n_tasks: usize) -> Option<f64> {
    if labels.is_empty() || n_tasks == 0 {
        return None;
    }
    let eps = 1e-15f64;
    let n = labels.len() / n_tasks;
    let mut s = 0.0;
    for i in 0..n {
        let row = &probs[i * n_tasks..(i + 1) * n_tasks];
        let z: f64 = row.iter().map(|&p| (p as f64).clamp(eps, 1.0 - eps)).sum();
        for t in 0..n_tasks {
            let p = (row[t] as f64).clamp(eps, 1.0 - eps) / z;
            s -= labels[i * n_tasks + t] as f64 * p.ln();
        }
    }
    Some(s / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// LCG shared with golden/make_golden.py.
    pub(crate) fn lcg_case(n: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let mut s = seed;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f64) / ((1u64 << 31) as f64)
        };
        let mut y = Vec::new();
        let mut p = Vec::new();
        for _ in 0..n {
            let u = next();
            let v = next();
            let label = if u < 0.35 { 1.0 } else { 0.0 };
            // Scores correlated with the label, rounded to 1 decimal: many ties.
            let score = ((0.6 * v + 0.4 * label) * 10.0).round() / 10.0;
            y.push(label as f32);
            p.push(score as f32);
        }
        (y, p)
    }

    #[test]
    fn auc_golden_against_sklearn() {
        // python3 golden/make_golden.py (sklearn 1.x): roc_auc_score on the LCG cases.
        let cases = [
            (50usize, 1u64, 0.975051975051975f64),
            (1000, 7, 0.9385215806206372),
            (333, 42, 0.945925925925926),
        ];
        for (n, seed, want) in cases {
            let (y, p) = lcg_case(n, seed);
            let got = auc(&y, &p).unwrap();
            assert!(
                (got - want).abs() < 1e-9,
                "n={n} seed={seed}: {got} vs sklearn {want}"
            );
        }
    }

    #[test]
    fn logloss_golden_against_sklearn() {
        // golden/make_golden.py: log_loss(y, clip(p, 0.05, 0.95)).
        let cases = [
            (50usize, 1u64, 0.32426389076221007f64),
            (1000, 7, 0.3949582655183516),
            (333, 42, 0.3803551130551319),
        ];
        for (n, seed, want) in cases {
            let (y, p) = lcg_case(n, seed);
            let p: Vec<f32> = p.iter().map(|v| v.clamp(0.05, 0.95)).collect();
            let got = logloss_from_probs(&y, &p, 1e-15).unwrap();
            assert!((got - want).abs() < 1e-6, "n={n}: {got} vs {want}");
        }
    }

    #[test]
    fn auc_properties() {
        let (y, p) = lcg_case(400, 3);
        let a = auc(&y, &p).unwrap();
        let flipped: Vec<f32> = p.iter().map(|x| 1.0 - x).collect();
        assert!((auc(&y, &flipped).unwrap() - (1.0 - a)).abs() < 1e-12);
        let monotone: Vec<f32> = p.iter().map(|x| (x * 3.0).exp()).collect();
        assert!((auc(&y, &monotone).unwrap() - a).abs() < 1e-12);
        assert_eq!(auc(&y, &vec![0.3; y.len()]), Some(0.5));
        assert_eq!(auc(&[1.0, 1.0], &[0.1, 0.2]), None);
        assert_eq!(auc(&[], &[]), None);
        assert_eq!(auc(&[0.0, 1.0], &[0.1, 0.2]), Some(1.0));
    }

    #[test]
    fn gauc_torchrec_example() {
        // torchrec tests/test_gauc.py: groups {[.9,.8,.7]/[1,0,1], [.6,.5]/[1,0]} → mean 0.75;
        // the DIN/FuxiCTR impression-weighted value is (0.5·3 + 1·2)/5 = 0.70.
        let y = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0];
        let p = [0.9, 0.8, 0.7, 0.6, 0.5, 0.3, 0.2];
        let g = [1u64, 1, 1, 2, 2, 3, 3];
        let r = gauc(&y, &p, &g);
        assert!((r.mean.unwrap() - 0.75).abs() < 1e-12);
        assert!((r.weighted.unwrap() - 0.70).abs() < 1e-12);
        assert_eq!(
            (r.n_groups, r.n_groups_used, r.n_groups_single_class),
            (3, 2, 1)
        );
    }

    #[test]
    fn logloss_matches_probability_form_and_is_stable() {
        let y = [1.0f32, 0.0, 1.0, 0.0];
        let x = [2.0f32, -1.0, -0.5, 3.0];
        let probs: Vec<f32> = x.iter().map(|&v| 1.0 / (1.0 + (-v).exp())).collect();
        let a = logloss_from_logits(&y, &x).unwrap();
        let b = logloss_from_probs(&y, &probs, 1e-7).unwrap();
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        assert!((logloss_from_logits(&[0.0], &[40.0]).unwrap() - 40.0).abs() < 1e-9);
        assert_eq!(logloss_from_logits(&[], &[]), None);
    }

    #[test]
    fn sklearn_2d_compat_row_normalises() {
        // Two tasks, one row: y=[1,0], p=[0.8,0.2] → −log(0.8/1.0).
        let v = sklearn_2d_logloss_compat(&[1.0, 0.0], &[0.8, 0.2], 2).unwrap();
        assert!((v - (-(0.8f64).ln())).abs() < 1e-6);
    }
}
