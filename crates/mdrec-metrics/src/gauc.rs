//! Group AUC (Zhou et al., Deep Interest Network, KDD 2018, §6.3): the FuxiCTR / DIN impression-weighted gAUC and the torchrec
//! unweighted mean, from one sort of `(group, score, label)` keys.

use serde::{Deserialize, Serialize};

use crate::auc::{auc_sorted, row_key};

/// Group AUC of one slice.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GaucResult {
    /// `Σ n_g·AUC_g / Σ n_g` over the groups holding both classes (DIN / FuxiCTR `gAUC`, the
    /// number the references report). `None` when no group holds both classes.
    pub weighted: Option<f64>,
    /// Unweighted mean of `AUC_g` over the same groups (torchrec, FuxiCTR `avgAUC`).
    pub mean: Option<f64>,
    /// Distinct groups in the slice.
    pub n_groups: usize,
    /// Groups with both classes (those that contribute).
    pub n_groups_used: usize,
    /// Groups excluded because they hold a single class.
    pub n_groups_single_class: usize,
}

/// Group AUC of `scores` grouped by `groups` (a user id, typically), FuxiCTR semantics: groups
/// with a single class are excluded (not an error, unlike torch-rechub) and counted in
/// [`GaucResult::n_groups_single_class`].
///
/// One allocation of `16·n` bytes and one sort; no per-group allocation.
///
/// ```
/// // torchrec's example: AUCs 0.5 (3 rows) and 1.0 (2 rows).
/// let r = mdrec_metrics::gauc(
///     &[1.0, 0.0, 1.0, 1.0, 0.0],
///     &[0.9, 0.8, 0.7, 0.6, 0.5],
///     &[1, 1, 1, 2, 2],
/// );
/// assert!((r.mean.unwrap() - 0.75).abs() < 1e-12);
/// assert!((r.weighted.unwrap() - 0.70).abs() < 1e-12);
/// ```
///
/// # Panics
/// If the three slices differ in length (a programmer error).
pub fn gauc(labels: &[f32], scores: &[f32], groups: &[u64]) -> GaucResult {
    assert!(
        labels.len() == scores.len() && labels.len() == groups.len(),
        "gauc: labels, scores and groups differ in length"
    );
    let mut pairs: Vec<(u64, u64)> = groups
        .iter()
        .zip(labels.iter().zip(scores))
        .map(|(&g, (&y, &s))| (g, row_key(y, s)))
        .collect();
    gauc_pairs(&mut pairs)
}

/// Sort `(group, row_key)` pairs in place and compute the group AUC.
pub(crate) fn gauc_pairs(pairs: &mut [(u64, u64)]) -> GaucResult {
    pairs.sort_unstable();
    let mut keys_scratch: Vec<u64> = Vec::new();
    let (mut wsum, mut nsum, mut msum) = (0.0f64, 0usize, 0.0f64);
    let (mut n_groups, mut used) = (0usize, 0usize);
    let mut i = 0;
    while i < pairs.len() {
        let g = pairs[i].0;
        let start = i;
        while i < pairs.len() && pairs[i].0 == g {
            i += 1;
        }
        n_groups += 1;
        keys_scratch.clear();
        keys_scratch.extend(pairs[start..i].iter().map(|p| p.1));
        if let Some(a) = auc_sorted(&keys_scratch) {
            let n_g = i - start;
            wsum += a * n_g as f64;
            nsum += n_g;
            msum += a;
            used += 1;
        }
    }
    GaucResult {
        weighted: (used > 0).then(|| wsum / nsum as f64),
        mean: (used > 0).then(|| msum / used as f64),
        n_groups,
        n_groups_used: used,
        n_groups_single_class: n_groups - used,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auc;
    use crate::testutil::lcg_grouped;

    #[test]
    fn torchrec_example() {
        // torchrec tests (GAUC metric): groups {[.9,.8,.7]/[1,0,1], [.6,.5]/[1,0]}: per-group
        // AUCs 0.5 and 1.0 → mean 0.75; DIN/FuxiCTR weighted (0.5·3 + 1·2)/5 = 0.70. A third,
        // single-class group is excluded and counted.
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
    fn golden_against_fuxictr_python() {
        // golden/make_golden.py, section "gauc": FuxiCTR gAUC (weighted) and avgAUC (mean),
        // per-group sklearn roc_auc_score, on lcg_grouped(n, seed, n_groups, p_pos, signal).
        let cases = [
            (
                2000usize,
                13u64,
                50u64,
                0.3,
                0.2,
                0.6902433010296916f64,
                0.6936816642484057f64,
                49usize,
                50usize,
            ),
            (
                300,
                4,
                40,
                0.2,
                0.3,
                0.8803916978776529,
                0.8759057971014493,
                23,
                40,
            ),
        ];
        for (n, seed, ng, p_pos, signal, w, m, used, total) in cases {
            let (y, p, g) = lcg_grouped(n, seed, ng, p_pos, signal);
            let r = gauc(&y, &p, &g);
            assert!((r.weighted.unwrap() - w).abs() < 1e-12, "{r:?} vs {w}");
            assert!((r.mean.unwrap() - m).abs() < 1e-12, "{r:?} vs {m}");
            assert_eq!((r.n_groups_used, r.n_groups), (used, total));
            assert_eq!(r.n_groups_single_class, total - used);
        }
    }

    #[test]
    fn one_group_equals_auc_and_edge_cases() {
        let (y, p, _) = lcg_grouped(500, 8, 10, 0.3, 0.2);
        let r = gauc(&y, &p, &vec![7; y.len()]);
        assert_eq!(r.weighted, auc(&y, &p));
        assert_eq!(r.mean, auc(&y, &p));
        let empty = gauc(&[], &[], &[]);
        assert_eq!(
            (empty.weighted, empty.mean, empty.n_groups),
            (None, None, 0)
        );
        // Every group single-class → undefined, not NaN.
        let r = gauc(&[1.0, 1.0, 0.0], &[0.1, 0.2, 0.3], &[1, 1, 2]);
        assert_eq!((r.weighted, r.n_groups_single_class), (None, 2));
    }
}
