//! Exact, tie-aware ROC AUC (the definition of scikit-learn `roc_auc_score`).
//!
//! This file owns the AUC kernel shared by every other metric: a row becomes one `u64` sort key
//! (order-preserving bits of the score, then the label bit), the keys are sorted once, and the
//! Mann–Whitney statistic is accumulated over blocks of tied scores in exact integer
//! arithmetic. That equals sklearn's `roc_auc_score` (ties counted ½) up to the last bit of the
//! final division.

/// Order-preserving map of an `f32` onto `u32`: `a < b ⇔ key(a) < key(b)`, `-0.0` and `+0.0`
/// share a key (they tie, as in sklearn) and every NaN shares one key above `+∞`.
#[inline]
pub(crate) fn score_bits(x: f32) -> u32 {
    let x = if x.is_nan() { f32::NAN } else { x + 0.0 };
    let b = x.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// Is this label a positive? Labels are 0/1; anything above ½ counts as positive.
#[inline]
pub(crate) fn is_pos(y: f32) -> bool {
    y > 0.5
}

/// Sort key of one row: score bits in the high half, the label in bit 0.
#[inline]
pub(crate) fn row_key(y: f32, s: f32) -> u64 {
    (u64::from(score_bits(s)) << 1) | u64::from(is_pos(y))
}

/// AUC of keys that are already sorted ascending (see [`row_key`]). `None` when a class is
/// missing.
pub(crate) fn auc_sorted(keys: &[u64]) -> Option<f64> {
    // Σ over positives of (#negatives below + ½ #negatives tied), doubled to stay integral.
    let mut twice_u: u128 = 0;
    let (mut neg_below, mut n_pos) = (0u64, 0u64);
    let mut i = 0;
    while i < keys.len() {
        let score = keys[i] >> 1;
        let (mut pos, mut neg) = (0u64, 0u64);
        while i < keys.len() && keys[i] >> 1 == score {
            if keys[i] & 1 == 1 {
                pos += 1;
            } else {
                neg += 1;
            }
            i += 1;
        }
        twice_u += u128::from(pos) * u128::from(2 * neg_below + neg);
        neg_below += neg;
        n_pos += pos;
    }
    if n_pos == 0 || neg_below == 0 {
        return None;
    }
    let denom = 2.0 * n_pos as f64 * neg_below as f64;
    Some(twice_u as f64 / denom)
}

/// Sort `keys` in place and return their AUC.
pub(crate) fn auc_keys(keys: &mut [u64]) -> Option<f64> {
    keys.sort_unstable();
    auc_sorted(keys)
}

/// Exact ROC AUC with ties counted ½ (= scikit-learn `roc_auc_score`).
///
/// Labels are 0/1 (a label above 0.5 is a positive). Returns `None` when the input is empty or
/// holds a single class (sklearn raises there). One allocation of `8·n` bytes and one sort:
/// O(n log n). Scores are compared as `f32`; `-0.0` ties with `+0.0`, NaN scores (which
/// [`crate::evaluate`] rejects) all tie with each other above `+∞`.
///
/// # Panics
/// If `labels` and `scores` differ in length (a programmer error).
pub fn auc(labels: &[f32], scores: &[f32]) -> Option<f64> {
    assert_eq!(
        labels.len(),
        scores.len(),
        "auc: labels and scores differ in length"
    );
    let mut keys: Vec<u64> = labels
        .iter()
        .zip(scores)
        .map(|(&y, &s)| row_key(y, s))
        .collect();
    auc_keys(&mut keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{lcg_case, Lcg};

    /// Brute-force Mann–Whitney over all (positive, negative) pairs.
    fn auc_pairs(y: &[f32], s: &[f32]) -> Option<f64> {
        let (mut num, mut np, mut nn) = (0.0, 0usize, 0usize);
        for i in 0..y.len() {
            if y[i] > 0.5 {
                np += 1;
                for j in 0..y.len() {
                    if y[j] <= 0.5 {
                        num += if s[i] > s[j] {
                            1.0
                        } else if s[i] == s[j] {
                            0.5
                        } else {
                            0.0
                        };
                    }
                }
            } else {
                nn += 1;
            }
        }
        (np > 0 && nn > 0).then(|| num / (np * nn) as f64)
    }

    #[test]
    fn auc_golden_against_sklearn() {
        // golden/make_golden.py, section "auc": sklearn.metrics.roc_auc_score(y, p) on
        // lcg_case(n, seed, p_pos, signal, decimals) (same LCG in Python and Rust).
        let cases: [(usize, u64, f64, f64, i32, f64); 6] = [
            (50, 1, 0.35, 0.4, 1, 0.975051975051975),
            (1000, 7, 0.35, 0.4, 1, 0.9385215806206372),
            (333, 42, 0.35, 0.4, 1, 0.945925925925926),
            (2000, 3, 0.2, 0.1, 1, 0.6396470414124447),
            (5000, 11, 0.05, 0.05, 2, 0.5758643477484316),
            (100_000, 5, 0.5, 0.02, 3, 0.5172451583094259),
        ];
        for (n, seed, p_pos, signal, dec, want) in cases {
            let (y, p) = lcg_case(n, seed, p_pos, signal, dec);
            let got = auc(&y, &p).unwrap();
            assert!(
                (got - want).abs() < 1e-12,
                "n={n} seed={seed}: {got} vs sklearn {want}"
            );
        }
    }

    #[test]
    fn auc_matches_brute_force_pairs() {
        for seed in 0..20 {
            let (y, p) = lcg_case(60 + seed as usize, seed, 0.3, 0.2, 1);
            assert_eq!(
                auc(&y, &p).map(|v| (v * 1e12).round()),
                auc_pairs(&y, &p).map(|v| (v * 1e12).round()),
                "seed {seed}"
            );
        }
    }

    #[test]
    fn auc_properties() {
        let (y, p) = lcg_case(400, 3, 0.35, 0.4, 1);
        let a = auc(&y, &p).unwrap();
        // AUC(1 − s) = 1 − AUC(s), ties included.
        let flipped: Vec<f32> = p.iter().map(|x| 1.0 - x).collect();
        assert!((auc(&y, &flipped).unwrap() - (1.0 - a)).abs() < 1e-12);
        // Strictly monotone transforms keep the ranking.
        let monotone: Vec<f32> = p.iter().map(|x| (x * 3.0).exp()).collect();
        assert!((auc(&y, &monotone).unwrap() - a).abs() < 1e-12);
        let logit: Vec<f32> = p
            .iter()
            .map(|x| ((x + 0.01) / (1.01 - x)).ln() * 2.0 - 7.0)
            .collect();
        assert!((auc(&y, &logit).unwrap() - a).abs() < 1e-12);
        // Swapping labels also flips the AUC.
        let y_swapped: Vec<f32> = y.iter().map(|v| 1.0 - v).collect();
        assert!((auc(&y_swapped, &p).unwrap() - (1.0 - a)).abs() < 1e-12);
        // All ties → ½; -0 ties with +0.
        assert_eq!(auc(&y, &vec![0.3; y.len()]), Some(0.5));
        assert_eq!(auc(&[0.0, 1.0], &[0.0, -0.0]), Some(0.5));
        // Undefined cases.
        assert_eq!(auc(&[1.0, 1.0], &[0.1, 0.2]), None);
        assert_eq!(auc(&[0.0; 3], &[0.1, 0.2, 0.3]), None);
        assert_eq!(auc(&[], &[]), None);
        // Perfect, inverted, negative and infinite scores.
        assert_eq!(auc(&[0.0, 1.0], &[0.1, 0.2]), Some(1.0));
        assert_eq!(auc(&[1.0, 0.0], &[0.1, 0.2]), Some(0.0));
        assert_eq!(
            auc(
                &[0.0, 1.0, 0.0, 1.0],
                &[-3.0, -1.0, f32::NEG_INFINITY, f32::INFINITY]
            ),
            Some(1.0)
        );
        // The crate-doc example: one tie between a positive and a negative.
        assert_eq!(
            auc(&[0.0, 1.0, 0.0, 1.0], &[0.1, 0.9, 0.4, 0.4]),
            Some(0.875)
        );
    }

    #[test]
    fn auc_is_permutation_invariant() {
        let (y, p) = lcg_case(500, 9, 0.4, 0.3, 1);
        let a = auc(&y, &p).unwrap();
        let mut rng = Lcg::new(77);
        let mut idx: Vec<usize> = (0..y.len()).collect();
        for i in (1..idx.len()).rev() {
            let j = (rng.next_f64() * (i + 1) as f64) as usize;
            idx.swap(i, j.min(i));
        }
        let y2: Vec<f32> = idx.iter().map(|&i| y[i]).collect();
        let p2: Vec<f32> = idx.iter().map(|&i| p[i]).collect();
        assert_eq!(auc(&y2, &p2), Some(a));
    }
}
