//! Comparisons across models, domains and seeds: RelaImpr, DomainAUC, Major/Minor-K AUC and
//! Welch's t-test.

/// RelaImpr (M3oE, after SAR-Net): `((AUC_model − 0.5) / (AUC_base − 0.5) − 1) × 100`, in %.
pub fn relaimpr(auc_model: f64, auc_base: f64) -> f64 {
    ((auc_model - 0.5) / (auc_base - 0.5) - 1.0) * 100.0
}

/// DomainAUC (AREAD): `Σ w_d AUC_d / Σ w_d` over domains whose AUC is defined (undefined domains
/// are skipped and the weights renormalised, instead of the reference's NaN).
pub fn weighted_domain_auc(per_domain_auc: &[Option<f64>], weights: &[f64]) -> Option<f64> {
    assert_eq!(per_domain_auc.len(), weights.len());
    let (mut s, mut w) = (0.0, 0.0);
    for (a, &wd) in per_domain_auc.iter().zip(weights) {
        if let Some(a) = a {
            s += a * wd;
            w += wd;
        }
    }
    (w > 0.0).then(|| s / w)
}

/// Major-K / Minor-K AUC (AREAD): the training-count-weighted AUC of the `k` largest and the `k`
/// smallest domains by training count [INFERRED ranking and weights, model-spec §2.4].
pub fn major_minor_k(
    per_domain_auc: &[Option<f64>],
    train_counts: &[usize],
    k: usize,
) -> (Option<f64>, Option<f64>) {
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

/// Welch's t-test (scipy `ttest_ind(equal_var=False)`). `None` with fewer than two values in a
/// sample or zero variance in both.
pub fn welch_t_test(a: &[f64], b: &[f64]) -> Option<WelchResult> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let (ma, va) = mean_var(a);
    let (mb, vb) = mean_var(b);
    let (sa, sb) = (va / a.len() as f64, vb / b.len() as f64);
    let se2 = sa + sb;
    if se2 <= 0.0 {
        return None;
    }
    let t = (ma - mb) / se2.sqrt();
    let df = se2 * se2 / (sa * sa / (a.len() as f64 - 1.0) + sb * sb / (b.len() as f64 - 1.0));
    // Two-sided p = I_{df/(df+t²)}(df/2, 1/2).
    let p = reg_inc_beta(df / 2.0, 0.5, df / (df + t * t));
    Some(WelchResult {
        t,
        df,
        p_two_sided: p,
    })
}

fn ln_gamma(x: f64) -> f64 {
    // Lanczos approximation (g = 7, n = 9).
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + 7.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Continued fraction for the incomplete beta (Numerical Recipes `betacf`).
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let tiny = 1e-300;
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < tiny {
        d = tiny;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < tiny {
            d = tiny;
        }
        c = 1.0 + aa / c;
        if c.abs() < tiny {
            c = tiny;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < tiny {
            d = tiny;
        }
        c = 1.0 + aa / c;
        if c.abs() < tiny {
            c = tiny;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// Regularised incomplete beta `I_x(a, b)`.
fn reg_inc_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_cf(a, b, x) / a
    } else {
        1.0 - ln_front.exp() * beta_cf(b, a, 1.0 - x) / b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn welch_matches_scipy() {
        // golden/make_golden.py: scipy.stats.ttest_ind(a, b, equal_var=False)
        let a = [0.712, 0.718, 0.709, 0.721, 0.715];
        let b = [0.705, 0.707, 0.701, 0.711, 0.703];
        let r = welch_t_test(&a, &b).unwrap();
        assert!(
            (r.t - WELCH_AB.0).abs() < 1e-9,
            "t {} vs {}",
            r.t,
            WELCH_AB.0
        );
        assert!(
            (r.p_two_sided - WELCH_AB.1).abs() < 1e-9,
            "p {} vs {}",
            r.p_two_sided,
            WELCH_AB.1
        );
        let c = [0.5, 0.52, 0.49];
        let d = [0.51, 0.50, 0.53, 0.52, 0.50, 0.49];
        let r = welch_t_test(&c, &d).unwrap();
        assert!(
            (r.t - WELCH_CD.0).abs() < 1e-9 && (r.p_two_sided - WELCH_CD.1).abs() < 1e-9,
            "{r:?}"
        );
        assert!(welch_t_test(&[1.0], &[2.0, 3.0]).is_none());
    }

    const WELCH_AB: (f64, f64) = (3.514809724503436, 0.008449786215060389);
    const WELCH_CD: (f64, f64) = (-0.4685212856658182, 0.6641092030760958);
}
