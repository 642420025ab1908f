//! Train / valid / test splits: the [`SplitSpec`] a dataset is cut by, and the row indices
//! each split gets ([`split_rows`]).
//!
//! Ratio splits cut at cumulative-floor boundaries (`floor(r0 n)`, `floor((r0 + r1) n)`), on
//! the source order (`Sequential`) or on a seeded shuffle (`Random`, each split's rows then
//! sorted ascending so that they keep the source order). Time splits compare an integer column
//! against fixed bounds (`ByTime`) or against quantiles of that column (`TimeQuantiles`).

use serde::{Deserialize, Serialize};

use crate::quantile::sorted_quantile;
use crate::raw::{RawColumn, RawTable};
use crate::rng::Rng;
use crate::DataError;

/// How rows are split into train / valid / test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SplitSpec {
    /// Source order, cumulative-floor boundaries.
    Sequential {
        /// train / valid / test fractions, summing to 1.
        ratios: [f64; 3],
    },
    /// Shuffle with `Rng::for_stream(seed, "split")`, cumulative-floor boundaries, then each
    /// split's rows sorted ascending.
    Random {
        /// train / valid / test fractions, summing to 1.
        ratios: [f64; 3],
        /// Split seed.
        seed: u64,
    },
    /// `t < valid_from` -> train, `valid_from <= t < test_from` -> valid, else test.
    ByTime {
        /// Integer time column.
        column: String,
        /// First time of the validation split.
        valid_from: i64,
        /// First time of the test split.
        test_from: i64,
    },
    /// By quantiles of an integer time column (the AREAD Amazon protocol: 0.9 / 0.95):
    /// `t < q(valid_q)` -> train, `q(valid_q) <= t < q(test_q)` -> valid, else test, where
    /// `q` is the quantile over all rows with linear interpolation (pandas' default).
    TimeQuantiles {
        /// Integer time column.
        column: String,
        /// Quantile where validation starts, in [0, 1].
        valid_q: f64,
        /// Quantile where test starts, in [valid_q, 1].
        test_q: f64,
    },
    /// Stream training: every row in "train", ordered by the integer time column (ties keep
    /// the source order); valid and test are empty (stream training validates progressively).
    Stream {
        /// Integer time column.
        column: String,
    },
}

pub(crate) fn check_ratios(r: &[f64; 3]) -> Result<(), DataError> {
    let sum: f64 = r.iter().sum();
    if r.iter().any(|x| !x.is_finite() || *x < 0.0) || (sum - 1.0).abs() > 1e-6 {
        return Err(DataError::Config(format!(
            "split ratios must be non-negative and sum to 1, got {r:?}"
        )));
    }
    Ok(())
}

/// Cumulative-floor boundaries: `[floor(r0 n), floor((r0 + r1) n)]`.
pub fn ratio_bounds(n: usize, r: &[f64; 3]) -> (usize, usize) {
    let a = ((r[0] * n as f64).floor() as usize).min(n);
    let b = (((r[0] + r[1]) * n as f64).floor() as usize).clamp(a, n);
    (a, b)
}

/// Row indices of train / valid / test.
pub fn split_rows(t: &RawTable, split: &SplitSpec) -> Result<[Vec<u32>; 3], DataError> {
    let n = t.n_rows();
    match split {
        SplitSpec::Sequential { ratios } => {
            check_ratios(ratios)?;
            let (a, b) = ratio_bounds(n, ratios);
            let n = n as u32;
            Ok([
                (0..a as u32).collect(),
                (a as u32..b as u32).collect(),
                (b as u32..n).collect(),
            ])
        }
        SplitSpec::Random { ratios, seed } => {
            check_ratios(ratios)?;
            let (a, b) = ratio_bounds(n, ratios);
            let mut rows: Vec<u32> = (0..n as u32).collect();
            Rng::for_stream(*seed, "split").shuffle(&mut rows);
            let mut out = [rows[..a].to_vec(), rows[a..b].to_vec(), rows[b..].to_vec()];
            for s in &mut out {
                s.sort_unstable();
            }
            Ok(out)
        }
        SplitSpec::ByTime {
            column,
            valid_from,
            test_from,
        } => {
            check_time_bounds(*valid_from, *test_from)?;
            let (col, times) = int_times(t, column, "by-time split")?;
            Ok(cut_by_time(
                &col.codes,
                &times,
                *valid_from as f64,
                *test_from as f64,
            ))
        }
        SplitSpec::TimeQuantiles {
            column,
            valid_q,
            test_q,
        } => {
            if !(0.0..=1.0).contains(valid_q) || !(0.0..=1.0).contains(test_q) || valid_q > test_q {
                return Err(DataError::Config(format!(
                    "time-quantile split: need 0 <= valid_q <= test_q <= 1, got {valid_q} and {test_q}"
                )));
            }
            let (col, times) = int_times(t, column, "time-quantile split")?;
            let mut all: Vec<f64> = col
                .codes
                .iter()
                .map(|&c| times[c as usize] as f64)
                .collect();
            all.sort_by(f64::total_cmp);
            let (Some(a), Some(b)) = (
                sorted_quantile(&all, *valid_q),
                sorted_quantile(&all, *test_q),
            ) else {
                return Ok(Default::default()); // no rows
            };
            Ok(cut_by_time(&col.codes, &times, a, b))
        }
        SplitSpec::Stream { column } => {
            let (col, times) = int_times(t, column, "stream order")?;
            let mut rows: Vec<u32> = (0..n as u32).collect();
            rows.sort_by_key(|&r| (times[col.codes[r as usize] as usize], r));
            Ok([rows, Vec::new(), Vec::new()])
        }
    }
}

pub(crate) fn check_time_bounds(valid_from: i64, test_from: i64) -> Result<(), DataError> {
    if valid_from > test_from {
        return Err(DataError::Config(format!(
            "by-time split: valid_from ({valid_from}) is after test_from ({test_from})"
        )));
    }
    Ok(())
}

/// The integer value of each distinct raw value of a time column.
pub(crate) fn int_times<'t>(
    t: &'t RawTable,
    column: &str,
    what: &str,
) -> Result<(&'t RawColumn, Vec<i64>), DataError> {
    let col = t.require(column, what, "split")?;
    let mut times = Vec::with_capacity(col.dict.len());
    for (c, v) in col.dict.iter().enumerate() {
        match v.trim().parse::<i64>() {
            Ok(x) => times.push(x),
            Err(_) => {
                let r = col.first_row_with(c as u32).unwrap_or(0);
                return Err(t.error_at(r, column, format!("not an integer time: `{v}`")));
            }
        }
    }
    Ok((col, times))
}

/// `x < a` -> train, `a <= x < b` -> valid, else test (compared as f64; exact below 2^53).
pub(crate) fn cut_by_time(codes: &[u32], times: &[i64], a: f64, b: f64) -> [Vec<u32>; 3] {
    let mut out: [Vec<u32>; 3] = Default::default();
    for (r, &c) in codes.iter().enumerate() {
        let x = times[c as usize] as f64;
        let k = if x < a {
            0
        } else if x < b {
            1
        } else {
            2
        };
        out[k].push(r as u32);
    }
    out
}
