//! Comparisons across models, domains and seeds: RelaImpr, DomainAUC, Major-K / Minor-K AUC
//! (definitions and sources in `docs/metrics.md`), and Welch's t-test, whose p-values come from
//! the Student-t distribution of `statrs`.

use statrs::distribution::{ContinuousCDF, StudentsT};

/// RelaImpr (M3oE, after SAR-Net): `((AUC_model − 0.5) / (AUC_base − 0.5) − 1) × 100`, in %.
pub fn relaimpr(auc_model: f64, auc_base: f64) -> f64 {
    ((auc_model - 0.5) / (auc_base - 0.5) - 1.0) * 100.0
}

/// DomainAUC (AREAD, Luo et al., "One for Dozens: Adaptive REcommendation for All Domains
/// with Counterfactual Augmentation", AAAI 2025): `Σ w_d AUC_d / Σ w_d` over the domains whose AUC is
/// defined and whose weight is positive and finite. Undefined domains are skipped and the
/// weights renormalised (the reference code yields NaN instead). AREAD's weights are the
/// training rows per domain. `None` when no domain qualifies.
///
/// # Panics
/// If the two slices differ in length (a programmer error).
pub fn weighted_domain_auc(per_domain_auc: &[Option<f64>], weights: &[f64]) -> Option<f64> {
    assert_eq!(
        per_domain_auc.len(),
        weights.len(),
        "weighted_domain_auc: one weight per domain"
    );
    let (mut s, mut w) = (0.0, 0.0);
    for (a, &wd) in per_domain_auc.iter().zip(weights) {
        if let (Some(a), true) = (a, wd.is_finite() && wd > 0.0) {
            s += a * wd;
            w += wd;
        }
    }
    (w > 0.0).then(|| s / w)
}

/// Major-K / Minor-K AUC (AREAD's Major5AUC, Minor5AUC, Minor10AUC): the
/// [`weighted_domain_auc`] of the `k` domains with the most training rows (major) and of the
/// `k` with the fewest (minor), weights = training rows. Ranking and weights by training count
/// are inferred (the paper defines the metrics, the code has none). Ties in the count are
/// broken by domain index (lower index ranks as larger). The subsets are fixed by the ranking:
/// a domain with an undefined AUC is skipped inside its subset, not replaced. `k` larger than
/// the number of domains takes all of them; `k = 0` gives `(None, None)`.
///
/// # Panics
/// If the two slices differ in length (a programmer error).
pub fn major_minor_k(
    per_domain_auc: &[Option<f64>],
    train_counts: &[usize],
    k: usize,
) -> (Option<f64>, Option<f64>) {
    assert_eq!(
        per_domain_auc.len(),
        train_counts.len(),
        "major_minor_k: one training count per domain"
    );
    let mut order: Vec<usize> = (0..train_counts.len()).collect();
    order.sort_by(|&a, &b| train_counts[b].cmp(&train_counts[a]).then(a.cmp(&b)));
    let pick = |ids: &[usize]| {
        let a: Vec<Option<f64>> = ids.iter().map(|&d| per_domain_auc[d]).collect();
        let w: Vec<f64> = ids.iter().map(|&d| train_counts[d] as f64).collect();
        weighted_domain_auc(&a, &w)
    };
    let k = k.min(order.len());
    let major = pick(&order[..k]);
    let minor = pick(&order[order.len() - k..]);
    (major, minor)
}

/// Result of Welch's unequal-variance t-test.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WelchResult {
    /// t statistic (positive when mean(a) > mean(b)).
    pub t: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub df: f64,
    /// Two-sided p-value.
    pub p_two_sided: f64,
}

fn mean_var(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let m = x.iter().sum::<f64>() / n;
    let v = x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (n - 1.0);
    (m, v)
}

/// Welch's unequal-variance t-test (= scipy `ttest_ind(a, b, equal_var=False)`, two-sided).
///
/// `None` with fewer than two values in a sample, a non-finite value, or zero variance in
/// both samples (scipy returns NaN there).
pub fn welch_t_test(a: &[f64], b: &[f64]) -> Option<WelchResult> {
    if a.len() < 2 || b.len() < 2 || a.iter().chain(b).any(|v| !v.is_finite()) {
        return None;
    }
    let (ma, va) = mean_var(a);
    let (mb, vb) = mean_var(b);
    let (sa, sb) = (va / a.len() as f64, vb / b.len() as f64);
    let se2 = sa + sb;
    if se2 <= 0.0 || !se2.is_finite() {
        return None;
    }
    let t = (ma - mb) / se2.sqrt();
    let df = se2 * se2 / (sa * sa / (a.len() as f64 - 1.0) + sb * sb / (b.len() as f64 - 1.0));
    // Two-sided p = 2·P(T > |t|), from the survival function (no 1 − cdf cancellation).
    let p = 2.0 * StudentsT::new(0.0, 1.0, df).ok()?.sf(t.abs());
    Some(WelchResult {
        t,
        df,
        p_two_sided: p,
    })
}

/// CDF of Student's t distribution with `df > 0` degrees of freedom (real-valued `df`
/// allowed, as Welch needs). `None` for `df <= 0` or NaN inputs.
pub fn student_t_cdf(t: f64, df: f64) -> Option<f64> {
    if t.is_nan() || df.is_nan() || df <= 0.0 {
        return None;
    }
    if t.is_infinite() {
        return Some(if t > 0.0 { 1.0 } else { 0.0 });
    }
    Some(StudentsT::new(0.0, 1.0, df).ok()?.cdf(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Lcg;

    #[test]
    fn relaimpr_reproduces_m3oe_table2() {
        assert!((relaimpr(0.7661, 0.7607) - 2.07).abs() < 0.005);
        assert!((relaimpr(0.7702, 0.7635) - 2.54).abs() < 0.005);
    }

    #[test]
    fn domain_auc_skips_undefined_and_renormalises() {
        let v = weighted_domain_auc(&[Some(0.7), None, Some(0.9)], &[1.0, 5.0, 3.0]).unwrap();
        assert!((v - (0.7 + 2.7) / 4.0).abs() < 1e-12);
        assert_eq!(weighted_domain_auc(&[None], &[1.0]), None);
        let (maj, min) = major_minor_k(&[Some(0.6), Some(0.7), Some(0.8)], &[10, 30, 20], 1);
        assert_eq!((maj, min), (Some(0.7), Some(0.6)));
        // k = 2 of 4: major = {1 (40), 3 (30)}, minor = {2 (20), 0 (10)}; domain 3 undefined.
        let aucs = [Some(0.6), Some(0.7), Some(0.8), None];
        let (maj, min) = major_minor_k(&aucs, &[10, 40, 20, 30], 2);
        assert_eq!(maj, Some(0.7));
        assert!((min.unwrap() - (0.6 * 10.0 + 0.8 * 20.0) / 30.0).abs() < 1e-12);
        assert_eq!(major_minor_k(&aucs, &[10, 40, 20, 30], 0), (None, None));
        let all = weighted_domain_auc(&aucs, &[10.0, 40.0, 20.0, 30.0]);
        assert_eq!(major_minor_k(&aucs, &[10, 40, 20, 30], 9), (all, all));
        // Zero or non-finite weights are ignored.
        assert_eq!(
            weighted_domain_auc(&[Some(0.7), Some(0.9)], &[0.0, f64::NAN]),
            None
        );
    }

    #[test]
    fn welch_matches_scipy() {
        // golden/make_golden.py, section "welch": scipy.stats.ttest_ind(a, b, equal_var=False)
        // (t, Welch–Satterthwaite df, two-sided p).
        let check = |a: &[f64], b: &[f64], want: (f64, f64, f64)| {
            let r = welch_t_test(a, b).unwrap();
            assert!((r.t - want.0).abs() < 1e-10, "t {r:?} vs {want:?}");
            assert!((r.df - want.1).abs() < 1e-9, "df {r:?} vs {want:?}");
            assert!(
                (r.p_two_sided - want.2).abs() < 1e-10 * want.2.max(1e-3),
                "p {r:?} vs {want:?}"
            );
        };
        check(
            &[0.712, 0.718, 0.709, 0.721, 0.715],
            &[0.705, 0.707, 0.701, 0.711, 0.703],
            (3.514809724503436, 7.67301355319941, 0.008449786215060389),
        );
        check(
            &[0.5, 0.52, 0.49],
            &[0.51, 0.50, 0.53, 0.52, 0.50, 0.49],
            (-0.4685212856658182, 3.947862846406764, 0.6641092030760958),
        );
        let mut rng = Lcg::new(99);
        let e: Vec<f64> = (0..30).map(|_| rng.next_f64()).collect();
        let f: Vec<f64> = (0..40).map(|_| rng.next_f64() * 0.5 + 0.6).collect();
        check(
            &e,
            &f,
            (
                -3.9582513713009115,
                38.38627734519731,
                0.0003158681623390705,
            ),
        );
        check(
            &[1.0, 2.0],
            &[1.5, 1.6, 1.7, 1.8, 1.9, 2.0, 2.1, 2.2, 2.3, 2.4],
            (-0.883940316036729, 1.0745172634705185, 0.5307580956680293),
        );
        // Symmetry: swapping the samples flips t, keeps df and p.
        let r1 = welch_t_test(&e, &f).unwrap();
        let r2 = welch_t_test(&f, &e).unwrap();
        assert_eq!(
            (r1.t, r1.df, r1.p_two_sided),
            (-r2.t, r2.df, r2.p_two_sided)
        );
        // Undefined.
        assert!(welch_t_test(&[1.0], &[2.0, 3.0]).is_none());
        assert!(welch_t_test(&[1.0, 1.0], &[2.0, 2.0]).is_none());
        assert!(welch_t_test(&[1.0, f64::NAN], &[2.0, 3.0]).is_none());
    }

    #[test]
    fn student_t_cdf_matches_scipy() {
        // scipy.stats.t.cdf(t, df) (scipy 1.17.1).
        let cases = [
            (2.0, 5.0, 0.9490302605850708),
            (-1.3, 2.5, 0.15024339463535416),
            (0.0, 7.0, 0.5),
            (10.0, 3.0, 0.9989358004707929),
            (-4.0, 30.5, 0.00018668972513020198),
            (1.5, 1000.0, 0.9330349805889568),
            (0.3, 1.0, 0.5927735790777423),
        ];
        for (t, df, want) in cases {
            let got = student_t_cdf(t, df).unwrap();
            assert!(
                (got - want).abs() < 1e-12 * want.max(1e-2) * 100.0,
                "t={t} df={df}: {got} vs {want}"
            );
        }
        assert_eq!(student_t_cdf(f64::INFINITY, 3.0), Some(1.0));
        // scipy.stats.t.sf(2.0, 10) * 2: the two-sided p of t = 2 at 10 degrees of freedom.
        let p = 2.0 * (1.0 - student_t_cdf(2.0, 10.0).unwrap());
        assert!((p - 0.07338803477074408).abs() < 1e-12, "{p}");
        assert_eq!(student_t_cdf(1.0, 0.0), None);
    }
}
