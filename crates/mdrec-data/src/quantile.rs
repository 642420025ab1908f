//! The one quantile function of mdrec: linear interpolation between the two nearest ranks, the
//! default of numpy's `quantile` and pandas' `Series.quantile`. The AREAD time split, AREAD's
//! augmentation temperature, HEMP's mask thresholds and the analysis percentiles all use it, so
//! they agree with the Python reference code they follow.

/// The `q`-quantile of `values` (any order), or `None` when `values` is empty. `q` is clamped to
/// `[0, 1]`; the result sits at position `q (n - 1)` of the sorted values (sorted with
/// [`f64::total_cmp`]), interpolated linearly between its two neighbours.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    sorted_quantile(&v, q)
}

/// [`quantile`] of values that are already sorted ascending.
pub fn sorted_quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let pos = q.clamp(0.0, 1.0) * last as f64;
    let lo = (pos.floor() as usize).min(last);
    let hi = (pos.ceil() as usize).min(last);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_like_numpy() {
        let v = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&v, 1.0), Some(4.0));
        assert_eq!(quantile(&v, 0.5), Some(2.5));
        assert_eq!(quantile(&v, 0.9), Some(3.7));
        assert!((quantile(&v, 0.3).unwrap() - 1.9).abs() < 1e-12);
        assert_eq!(quantile(&[5.0], 0.3), Some(5.0));
        assert!((quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.6).unwrap() - 3.4).abs() < 1e-12);
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&v, 1.5), Some(4.0));
        assert_eq!(sorted_quantile(&[1.0, f64::INFINITY], 0.0), Some(1.0));
    }
}
