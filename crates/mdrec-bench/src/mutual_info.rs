//! Ground-truth feature correlation by mutual information (Pan et al., "Ads Recommendation in a
//! Collapsed and Entangled World", KDD 2024, §7.1, Eq. 7–8): `Cor = MI(X_{con_b}, Y_{con_t})`.
//!
//! Every MI here is the plug-in estimate in **nats** (natural logarithm) from a contingency
//! table of counts, `I = Σ p(x,y) ln(p(x,y) / (p(x) p(y)))`. The plug-in estimate is biased
//! upwards by about `(K_xy − K_x − K_y + 1) / 2N` (`K` the non-empty cells, `N` the rows), which
//! matters for id fields with many values and few rows each; [`MiStats::mi_mm`] subtracts that
//! (Miller–Madow correction applied to `I = H(X) + H(Y) − H(X,Y)`), and [`MiStats::nmi`] is
//! `I / H(Y)`, the share of the label's entropy the feature explains.
//!
//! Two tables are measured on a split (the training split in `mdrec analyze`):
//! - [`field_label_mi`]: each embedded field (categorical: its id; multi-hot: its whole set of
//!   ids) against each task's label, over all rows and per domain.
//! - [`behaviour_mi`] (Eq. 8): for target rows of category `c_t`, the indicator "the user's
//!   behaviour at position `p` has category `c_i`" against the label.
//!
//! What the paper states and what is inferred. §7.1 gives Eq. 7, `Cor = MI(X_{con_b},
//! Y_{con_t})`, and Eq. 8, `Cor = MI(X_{C(X)=c_i ∧ P(X)=p}, Y_{C(Y)=c_t})`, with the sentence
//! "select a subset of samples with target category c_t, and then for behaviors with category
//! c_i while at various positions p … quantify the correlation"; it defers the details to its
//! reference \[82\] (the Temporal Interest Network paper), which is not in this repository.
//! \[INFERRED\] here:
//! - `Y` is the task's binary label of the target row and the sample is the rows whose target
//!   (item) has category `c_t`;
//! - `X_{C(X)=c_i ∧ P(X)=p}` is the binary indicator "the behaviour at position `p` has category
//!   `c_i`", so each (c_t, c_i, p) is the MI of a 2×2 table over the `N` rows of `c_t`
//!   (plug-in, nats; `mi_mm` also subtracts the Miller–Madow bias, `1/2N` when all four cells
//!   are non-empty: the same for every `c_i` and `p` of one `c_t`, so it shifts but does not
//!   reorder the comparison across positions and behaviour categories);
//! - a behaviour is an earlier row of the same user (the user field's id), strictly earlier in
//!   the split's `time` column (rows at the same time are not each other's history), position 1
//!   the most recent; earlier rows that share one time are ordered by row index (the later row
//!   is the more recent), which is arbitrary but deterministic: on MovieLens-1M 77 % of the
//!   ratings share their second with another rating of the same user; its category is the category field of that row's item (a multi-hot
//!   category field counts a behaviour or target under each of its values). On MovieLens a
//!   "behaviour" is a rating, not a click, and only the training split's rows are history;
//! - only rows with at least `positions` earlier behaviours are used, so every position is
//!   measured on the same rows and a far position is not weakened by missing histories.
//!
//! The paper's observations ("semantic correlation": same-category behaviours correlate more;
//! "temporal correlation": MI decreases from the most recent to the oldest position) are what
//! `mi_position_<run>.svg` plots; they are claims about Tencent's data, not checks of this code.

use std::collections::HashMap;

use mdrec_data::EncodedData;
use mdrec_nn::FieldInfo;
use serde::Serialize;

/// Mutual information of one contingency table.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MiStats {
    /// Rows counted.
    pub n: u64,
    /// Plug-in MI in nats.
    pub mi: f64,
    /// `mi` minus the Miller–Madow bias estimate `(K_xy − K_x − K_y + 1) / 2N` (may be < 0).
    pub mi_mm: f64,
    /// `mi / H(Y)` (0 when the label is constant).
    pub nmi: f64,
    /// Entropy of X in nats.
    pub h_x: f64,
    /// Entropy of Y in nats.
    pub h_y: f64,
    /// Distinct X values seen.
    pub values: usize,
}

/// Entropy (nats) of counts summing to `n`.
fn entropy(counts: impl Iterator<Item = u64>, n: f64) -> f64 {
    counts
        .filter(|&c| c > 0)
        .map(|c| {
            let p = c as f64 / n;
            -p * p.ln()
        })
        .sum()
}

/// MI of the table `joint[x][y]` (counts); `None` when it holds no rows.
pub fn mi_from_counts<R: AsRef<[u64]>>(joint: &[R]) -> Option<MiStats> {
    let ny = joint.iter().map(|r| r.as_ref().len()).max().unwrap_or(0);
    let n: u64 = joint.iter().flat_map(|r| r.as_ref().iter()).sum();
    if n == 0 {
        return None;
    }
    let nf = n as f64;
    let row = |r: &R| r.as_ref().iter().sum::<u64>();
    let col = |y: usize| {
        joint
            .iter()
            .map(|r| r.as_ref().get(y).copied().unwrap_or(0))
            .sum::<u64>()
    };
    let h_x = entropy(joint.iter().map(row), nf);
    let h_y = entropy((0..ny).map(col), nf);
    let h_xy = entropy(joint.iter().flat_map(|r| r.as_ref().iter().copied()), nf);
    let mi = (h_x + h_y - h_xy).max(0.0);
    let k = |it: &mut dyn Iterator<Item = u64>| it.filter(|&c| c > 0).count() as f64;
    let (kx, ky) = (k(&mut joint.iter().map(row)), k(&mut (0..ny).map(col)));
    let kxy = k(&mut joint.iter().flat_map(|r| r.as_ref().iter().copied()));
    Some(MiStats {
        n,
        mi,
        mi_mm: mi - (kxy - kx - ky + 1.0) / (2.0 * nf),
        nmi: if h_y > 0.0 { mi / h_y } else { 0.0 },
        h_x,
        h_y,
        values: kx as usize,
    })
}

/// The binary label of row `r` of task `t`: `None` when it is not a finite number.
fn label(data: &EncodedData, t: usize, r: usize) -> Option<usize> {
    let y = data.labels[t][r];
    y.is_finite().then_some(usize::from(y > 0.5))
}

/// MI of one field and one task's label on the rows of one domain (or all).
#[derive(Debug, Clone, Serialize)]
pub struct FieldMi {
    /// Field name.
    pub field: String,
    /// Task name.
    pub task: String,
    /// Domain name, or `all`.
    pub domain: String,
    /// The estimate.
    pub stats: MiStats,
}

/// MI between every field of `fields` (categorical: the id; multi-hot: the set of ids) and every
/// task's label on `data`, over all rows and per domain (`domains[d]` names domain `d`).
pub fn field_label_mi(
    fields: &[FieldInfo],
    data: &EncodedData,
    domains: &[String],
    tasks: &[String],
) -> Vec<FieldMi> {
    let (nd, nt) = (domains.len(), tasks.len());
    let mut out = Vec::new();
    for f in fields {
        // counts[key][(domain · T + task) · 2 + y]
        let mut counts: HashMap<Vec<u32>, Vec<u64>> = HashMap::new();
        for r in 0..data.len() {
            let key = if f.multi_hot {
                let j = &data.multi[f.column];
                let mut v = j.values[j.offsets[r] as usize..j.offsets[r + 1] as usize].to_vec();
                v.sort_unstable();
                v
            } else {
                vec![data.cat[f.column][r]]
            };
            let d = data.domain[r] as usize;
            if d >= nd {
                continue;
            }
            let c = counts.entry(key).or_insert_with(|| vec![0; nd * nt * 2]);
            for t in 0..nt {
                if let Some(y) = label(data, t, r) {
                    c[(d * nt + t) * 2 + y] += 1;
                }
            }
        }
        // Deterministic order of the table's rows (the sums do not depend on it, the floating
        // point rounding does).
        let mut keys: Vec<&Vec<u32>> = counts.keys().collect();
        keys.sort();
        for t in 0..nt {
            let table = |ds: &[usize]| -> Vec<[u64; 2]> {
                keys.iter()
                    .map(|k| {
                        let c = &counts[*k];
                        let mut cell = [0u64; 2];
                        for &d in ds {
                            cell[0] += c[(d * nt + t) * 2];
                            cell[1] += c[(d * nt + t) * 2 + 1];
                        }
                        cell
                    })
                    .collect()
            };
            let all: Vec<usize> = (0..nd).collect();
            let scopes = std::iter::once(("all".to_string(), all)).chain(
                (0..nd)
                    .filter(|_| nd > 1)
                    .map(|d| (domains[d].clone(), vec![d])),
            );
            for (domain, ds) in scopes {
                if let Some(stats) = mi_from_counts(&table(&ds)) {
                    out.push(FieldMi {
                        field: f.name.clone(),
                        task: tasks[t].clone(),
                        domain,
                        stats,
                    });
                }
            }
        }
    }
    out
}

/// Where [`behaviour_mi`] finds users, times and categories.
pub struct BehaviourSpec<'a> {
    /// The user field (categorical).
    pub user: &'a FieldInfo,
    /// The item-category field (categorical or multi-hot).
    pub category: &'a FieldInfo,
    /// Names of the category ids (index = id); ids without a name (PAD, OOV) are skipped.
    pub category_names: Vec<Option<String>>,
    /// Behaviour positions 1..=positions.
    pub positions: usize,
}

/// Eq. 8 for one (task, target category, behaviour category, position).
#[derive(Debug, Clone, Serialize)]
pub struct BehaviourMi {
    /// Task name.
    pub task: String,
    /// Target category `c_t`.
    pub target: String,
    /// Behaviour category `c_i`.
    pub behaviour: String,
    /// Position `p` (1 = most recent).
    pub position: usize,
    /// Rows with a target of category `c_t` and a full history.
    pub rows: u64,
    /// Rows among them whose behaviour at `p` has category `c_i`.
    pub hits: u64,
    /// `MI(1[C(X_p) = c_i], Y)` on those rows, nats (plug-in).
    pub mi: f64,
    /// `mi` minus the Miller–Madow bias estimate (may be < 0).
    pub mi_mm: f64,
}

/// The most counters [`behaviour_mi`] allocates (8 bytes each): 2^25, 256 MiB.
pub const MAX_BEHAVIOUR_CELLS: u128 = 1 << 25;

/// Eq. 8 on `data` (see the module docs); `Err` with a reason when the data cannot give it.
pub fn behaviour_mi(
    spec: &BehaviourSpec,
    data: &EncodedData,
    tasks: &[String],
) -> Result<Vec<BehaviourMi>, String> {
    if data.time.len() != data.len() {
        return Err("the schema declares no `time` column, so behaviours have no order".into());
    }
    if spec.user.multi_hot {
        return Err(format!("user field `{}` is multi-hot", spec.user.name));
    }
    let p_n = spec.positions;
    if p_n == 0 {
        return Err("positions must be ≥ 1".into());
    }
    let n_cat = spec.category_names.len();
    // Every (task, target category, behaviour category, position) has its own counts.
    let cells = tasks.len() as u128 * (n_cat as u128).pow(2) * p_n as u128 * 2;
    if cells > MAX_BEHAVIOUR_CELLS {
        return Err(format!(
            "category field `{}` has {n_cat} ids; Eq. 8 counts every pair of categories at every \
             position ({cells} counters for {} tasks × {p_n} positions, at most {MAX_BEHAVIOUR_CELLS}); \
             name a coarser field with --category-field or ask for fewer positions",
            spec.category.name,
            tasks.len()
        ));
    }
    let cats = |r: usize| -> Vec<usize> {
        let ids: Vec<u32> = if spec.category.multi_hot {
            let j = &data.multi[spec.category.column];
            j.values[j.offsets[r] as usize..j.offsets[r + 1] as usize].to_vec()
        } else {
            vec![data.cat[spec.category.column][r]]
        };
        let mut v: Vec<usize> = ids
            .into_iter()
            .map(|i| i as usize)
            .filter(|&i| i < n_cat && spec.category_names[i].is_some())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let users = &data.cat[spec.user.column];
    let mut order: Vec<usize> = (0..data.len()).collect();
    order.sort_by_key(|&r| (users[r], data.time[r], r));
    let nt = tasks.len();
    // rows[(t · C + c_t) · 2 + y]; hits[(((t · C + c_t) · C + c_i) · P + p) · 2 + y]
    let mut rows = vec![0u64; nt * n_cat * 2];
    let mut hits = vec![0u64; nt * n_cat * n_cat * p_n * 2];
    let mut start = 0; // first index in `order` of the current user
    let mut same_time = 0; // first index in `order` of the current (user, time)
    for k in 0..order.len() {
        let r = order[k];
        if k > 0 && users[order[k - 1]] != users[r] {
            start = k;
            same_time = k;
        } else if k > 0 && data.time[order[k - 1]] != data.time[r] {
            same_time = k;
        }
        if same_time - start < p_n {
            continue;
        }
        let history: Vec<Vec<usize>> = (1..=p_n).map(|p| cats(order[same_time - p])).collect();
        for ct in cats(r) {
            for t in 0..nt {
                let Some(y) = label(data, t, r) else { continue };
                rows[(t * n_cat + ct) * 2 + y] += 1;
                for (p, hc) in history.iter().enumerate() {
                    for &ci in hc {
                        hits[(((t * n_cat + ct) * n_cat + ci) * p_n + p) * 2 + y] += 1;
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    let named: Vec<usize> = (0..n_cat)
        .filter(|&c| spec.category_names[c].is_some())
        .collect();
    for t in 0..nt {
        for &ct in &named {
            let base = [rows[(t * n_cat + ct) * 2], rows[(t * n_cat + ct) * 2 + 1]];
            if base[0] + base[1] == 0 {
                continue;
            }
            for &ci in &named {
                for p in 0..p_n {
                    let i = (((t * n_cat + ct) * n_cat + ci) * p_n + p) * 2;
                    let h = [hits[i], hits[i + 1]];
                    let table = [h, [base[0] - h[0], base[1] - h[1]]];
                    let (mi, mi_mm) =
                        mi_from_counts(&table).map_or((0.0, 0.0), |s| (s.mi, s.mi_mm));
                    out.push(BehaviourMi {
                        task: tasks[t].clone(),
                        target: spec.category_names[ct].clone().unwrap_or_default(),
                        behaviour: spec.category_names[ci].clone().unwrap_or_default(),
                        position: p + 1,
                        rows: base[0] + base[1],
                        hits: h[0] + h[1],
                        mi,
                        mi_mm,
                    });
                }
            }
        }
    }
    if out.is_empty() {
        return Err(format!(
            "no row has {p_n} earlier behaviours of its user (fewer positions may do)"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mdrec_data::Jagged;

    #[test]
    fn mi_of_known_tables() {
        let ln2 = std::f64::consts::LN_2;
        // Independent: p(x, y) = p(x) p(y) exactly.
        let s = mi_from_counts(&[[10u64, 30], [20, 60]]).unwrap();
        assert!(s.mi.abs() < 1e-12, "{s:?}");
        // A deterministic binary copy of a balanced label: I = H(Y) = ln 2, NMI = 1.
        let s = mi_from_counts(&[[50u64, 0], [0, 50]]).unwrap();
        assert!((s.mi - ln2).abs() < 1e-12 && (s.nmi - 1.0).abs() < 1e-12);
        assert!((s.h_x - ln2).abs() < 1e-12 && (s.h_y - ln2).abs() < 1e-12);
        // Hand-computed 2×2: [[3, 1], [1, 3]] / 8: I = 2·(3/8) ln(3/2) + 2·(1/8) ln(1/2).
        let s = mi_from_counts(&[[3u64, 1], [1, 3]]).unwrap();
        let want = 0.75 * 1.5f64.ln() + 0.25 * 0.5f64.ln();
        assert!((s.mi - want).abs() < 1e-12, "{} vs {want}", s.mi);
        assert_eq!((s.n, s.values), (8, 2));
        // Miller–Madow: all four cells, two X and two Y values: bias (4 − 2 − 2 + 1) / 16.
        assert!((s.mi_mm - (want - 1.0 / 16.0)).abs() < 1e-12);
        // Three X values, one never seen with y = 1.
        let s = mi_from_counts(&[vec![2u64, 2], vec![4, 0], vec![0, 0]]).unwrap();
        // p(y=1) = 1/4; H(Y) = −(3/4 ln 3/4 + 1/4 ln 1/4); H(Y|X) = (1/2) ln 2.
        let hy = -(0.75 * 0.75f64.ln() + 0.25 * 0.25f64.ln());
        assert!((s.mi - (hy - 0.5 * ln2)).abs() < 1e-12);
        assert_eq!(s.values, 2);
        assert!(mi_from_counts::<[u64; 2]>(&[]).is_none());
    }

    #[test]
    fn mi_golden_asymmetric_table() {
        // [[10, 20], [30, 40]] / 100: p(x) = (0.3, 0.7), p(y) = (0.4, 0.6), so
        // I = 0.1 ln(0.1/0.12) + 0.2 ln(0.2/0.18) + 0.3 ln(0.3/0.28) + 0.4 ln(0.4/0.42)
        //   = 0.004021743230482457 nats (written out by hand, value from a second program).
        let s = mi_from_counts(&[[10u64, 20], [30, 40]]).unwrap();
        let by_hand = 0.1 * (0.1f64 / 0.12).ln()
            + 0.2 * (0.2f64 / 0.18).ln()
            + 0.3 * (0.3f64 / 0.28).ln()
            + 0.4 * (0.4f64 / 0.42).ln();
        assert!((s.mi - by_hand).abs() < 1e-15, "{} vs {by_hand}", s.mi);
        assert!((s.mi - 0.004_021_743_230_482_457).abs() < 1e-15);
        // Miller–Madow bias (4 − 2 − 2 + 1) / (2 · 100) = 0.005 exceeds the plug-in MI here.
        assert!((s.mi_mm - (-0.000_978_256_769_517_542_8)).abs() < 1e-15);
        let hy = -(0.4 * 0.4f64.ln() + 0.6 * 0.6f64.ln());
        assert!((s.h_y - hy).abs() < 1e-15 && (s.nmi - by_hand / hy).abs() < 1e-15);
        // MI is symmetric: the transposed table gives the same value.
        let t = mi_from_counts(&[[10u64, 30], [20, 40]]).unwrap();
        assert!((t.mi - s.mi).abs() < 1e-15 && (t.mi_mm - s.mi_mm).abs() < 1e-15);
    }

    #[test]
    fn identical_variables_give_their_entropy() {
        // X = Y with counts (5, 3, 2): I = H(X) = −(0.5 ln 0.5 + 0.3 ln 0.3 + 0.2 ln 0.2), and
        // Miller–Madow gives H(X) + (K − 1) / 2N, the corrected entropy of X
        // (K_xy = K_x = K_y = 3: bias (3 − 3 − 3 + 1) / 20 = −0.1).
        let s = mi_from_counts(&[vec![5u64, 0, 0], vec![0, 3, 0], vec![0, 0, 2]]).unwrap();
        let h = -(0.5 * 0.5f64.ln() + 0.3 * 0.3f64.ln() + 0.2 * 0.2f64.ln());
        assert!((s.mi - h).abs() < 1e-12 && (s.h_x - h).abs() < 1e-12);
        assert!((s.mi - 1.029_653_014_064_573_7).abs() < 1e-12);
        assert!((s.mi_mm - (h + 0.1)).abs() < 1e-12);
        assert!((s.nmi - 1.0).abs() < 1e-12);
    }

    #[test]
    fn miller_madow_removes_the_bias_of_independent_variables() {
        // X uniform on 50 values and Y a fair coin, drawn independently by a fixed xorshift
        // generator: the true MI is 0 and the plug-in estimate's expected bias is about
        // (50 − 1)(2 − 1) / 2N = 0.006125 nats at N = 4000, with a spread of about
        // √(2 · 49) / 2N ≈ 0.0012 per table. Over 200 tables the mean plug-in MI sits at the
        // bias and the mean corrected MI at 0 (each within about 0.0001).
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (n, reps) = (4000, 200);
        let (mut plug_in, mut corrected) = (0.0, 0.0);
        for _ in 0..reps {
            let mut table = vec![[0u64; 2]; 50];
            for _ in 0..n {
                let x = (next() % 50) as usize;
                let y = (next() >> 32) as usize & 1;
                table[x][y] += 1;
            }
            let s = mi_from_counts(&table).unwrap();
            plug_in += s.mi / reps as f64;
            corrected += s.mi_mm / reps as f64;
        }
        let bias = 49.0 / (2.0 * n as f64);
        assert!(
            (plug_in - bias).abs() < 0.1 * bias,
            "mean plug-in {plug_in}, bias {bias}"
        );
        assert!(corrected.abs() < 0.1 * bias, "mean corrected {corrected}");
    }

    fn info(name: &str, column: usize, multi_hot: bool) -> FieldInfo {
        FieldInfo {
            name: name.into(),
            table: name.into(),
            vocab_size: 8,
            dim: 4,
            offset: 0,
            multi_hot,
            column,
            roles: vec![],
        }
    }

    fn data(cat: Vec<Vec<u32>>, time: Vec<i64>, label: Vec<f32>, domain: Vec<u32>) -> EncodedData {
        let n = label.len();
        EncodedData {
            n_rows: n,
            cat: cat.into_iter().map(Into::into).collect(),
            multi: vec![Jagged {
                offsets: (0..=n as u32).collect(),
                values: vec![2; n],
            }
            .into()],
            num: vec![],
            domain: domain.into(),
            labels: vec![label.into()],
            group: vec![0; n].into(),
            time: time.into(),
            label_time: vec![vec![].into()],
            weight: vec![].into(),
        }
    }

    #[test]
    fn field_mi_sees_a_copied_label_and_ignores_noise() {
        // Field a copies the label, field b is independent of it, field m (multi-hot) is one
        // constant set; two domains of equal size.
        let n = 40;
        let y: Vec<f32> = (0..n).map(|r| (r % 2) as f32).collect();
        let a: Vec<u32> = (0..n).map(|r| 2 + (r % 2) as u32).collect();
        let b: Vec<u32> = (0..n).map(|r| 2 + ((r / 2) % 2) as u32).collect();
        let dom: Vec<u32> = (0..n).map(|r| (r / 20) as u32).collect();
        let d = data(vec![a, b], vec![], y, dom);
        let fields = [info("a", 0, false), info("b", 1, false), info("m", 0, true)];
        let rows = field_label_mi(&fields, &d, &["d0".into(), "d1".into()], &["click".into()]);
        assert_eq!(rows.len(), 3 * 3, "3 fields × (all + 2 domains)");
        let get = |f: &str, dm: &str| {
            rows.iter()
                .find(|r| r.field == f && r.domain == dm)
                .unwrap()
                .stats
        };
        for dm in ["all", "d0", "d1"] {
            assert!((get("a", dm).mi - std::f64::consts::LN_2).abs() < 1e-12);
            assert!(get("b", dm).mi.abs() < 1e-12);
            assert!(get("m", dm).mi.abs() < 1e-12);
        }
        assert_eq!(get("a", "d1").n, 20);
    }

    #[test]
    fn behaviour_mi_finds_the_position_that_predicts_the_label() {
        // One user; categories A (id 2) and B (id 3) in time order follow the de Bruijn
        // sequence 00010111 repeated, so over the 40 rows with two earlier behaviours every
        // (c_{r−2}, c_{r−1}, c_r) occurs equally often. The label is 1 exactly when the behaviour
        // two steps back is A: given either target category, MI at position 2 is H(Y) = ln 2 and
        // at position 1 it is 0.
        let n = 42;
        let cats: Vec<u32> = [2, 2, 2, 3, 2, 3, 3, 3]
            .iter()
            .cycle()
            .take(n)
            .copied()
            .collect();
        let y: Vec<f32> = (0..n)
            .map(|r| f32::from(u8::from(r >= 2 && cats[r - 2] == 2)))
            .collect();
        // Reverse the row order: the time column, not the row order, defines the history.
        let rev = |v: &[u32]| v.iter().rev().copied().collect::<Vec<_>>();
        let time: Vec<i64> = (0..n as i64).rev().map(|t| t * 10).collect();
        let y_rev: Vec<f32> = y.iter().rev().copied().collect();
        let d = data(vec![vec![2; n], rev(&cats)], time, y_rev, vec![0; n]);
        let user = info("user", 0, false);
        let category = info("genre", 1, false);
        let names = vec![None, None, Some("A".to_string()), Some("B".to_string())];
        let spec = BehaviourSpec {
            user: &user,
            category: &category,
            category_names: names,
            positions: 2,
        };
        let rows = behaviour_mi(&spec, &d, &["click".into()]).unwrap();
        let get = |t: &str, b: &str, p: usize| {
            rows.iter()
                .find(|r| r.target == t && r.behaviour == b && r.position == p)
                .unwrap()
        };
        let ln2 = std::f64::consts::LN_2;
        for t in ["A", "B"] {
            assert_eq!(get(t, "A", 1).rows, 20);
            for b in ["A", "B"] {
                assert!((get(t, b, 2).mi - ln2).abs() < 1e-12, "{:?}", get(t, b, 2));
                assert!(get(t, b, 1).mi.abs() < 1e-12, "{:?}", get(t, b, 1));
            }
        }
        // Rows at the same time are not each other's history.
        let d = data(
            vec![vec![2; 4], vec![2, 3, 2, 3]],
            vec![5; 4],
            vec![1.0; 4],
            vec![0; 4],
        );
        let spec = BehaviourSpec {
            positions: 1,
            ..spec
        };
        assert!(behaviour_mi(&spec, &d, &["click".into()]).is_err());
        // An id field as "category" would need n² counters per position: refused, by name.
        let names = (0..3000).map(|i| Some(format!("c{i}"))).collect();
        let spec = BehaviourSpec {
            category_names: names,
            positions: 10,
            ..spec
        };
        let e = behaviour_mi(&spec, &d, &["click".into()]).unwrap_err();
        assert!(
            e.contains("`genre`") && e.contains("--category-field"),
            "{e}"
        );
        // Without a time column there is no order.
        let d = data(
            vec![vec![2; 4], vec![2; 4]],
            vec![],
            vec![1.0; 4],
            vec![0; 4],
        );
        let e = behaviour_mi(&spec, &d, &["click".into()]).unwrap_err();
        assert!(e.contains("time"), "{e}");
    }
}
