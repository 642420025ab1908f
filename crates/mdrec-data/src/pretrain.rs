//! `mdrec data pretrain`: user and item vectors from the TRAINING split of a prepared
//! dataset, by a truncated SVD of the user–item matrix, for use as pre-trained vectors
//! ([`crate::pretrained`]).
//!
//! The matrix has one row per user value and one column per item value of the fitted
//! vocabularies (so a value seen only in the validation or test split has no row and gets no
//! vector); entry `(u, i)` is the number of training rows of that pair (`implicit`) or of its
//! positive rows of one task (`positive:<task>`). Rows whose id is out of vocabulary are
//! skipped. The SVD is randomized (Halko, Martinsson and Tropp, "Finding Structure with
//! Randomness", SIAM Review 2011, Algorithm 4.4 with subspace iterations): a seeded Gaussian
//! test matrix of `dim + oversample` columns, `power_iters` subspace iterations with QR
//! re-orthonormalisation, then the exact SVD of the small projected matrix (`nalgebra`). It
//! was chosen over ALS because it has no regularisation or iteration count to tune and is
//! exact on a matrix of rank ≤ `dim + oversample`, which the golden test checks. A user's vector
//! is `U_k[u] · diag(√σ)` and an item's `V_k[i] · diag(√σ)`, so their dot product is the rank-k
//! approximation of the entry; each component's sign is fixed so that the item loading of
//! largest magnitude is positive (the output does not depend on the solver's sign choice).

use std::collections::BTreeMap;

use nalgebra::DMatrix;

use crate::pretrained::Vectors;
use crate::schema::{FieldKind, FieldRole};
use crate::{DataError, Prepared, Rng};

/// What an entry of the matrix counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PretrainValue {
    /// Every training row of the pair counts 1.
    Implicit,
    /// Training rows of the pair whose label of this task is positive count 1.
    Positive(String),
}

impl std::str::FromStr for PretrainValue {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "implicit" => Ok(PretrainValue::Implicit),
            _ => match s.strip_prefix("positive:") {
                Some(t) if !t.is_empty() => Ok(PretrainValue::Positive(t.to_string())),
                _ => Err(format!("`{s}`: expected `implicit` or `positive:<task>`")),
            },
        }
    }
}

/// Settings of [`pretrain`].
#[derive(Debug, Clone, PartialEq)]
pub struct PretrainConfig {
    /// Vector width `k`.
    pub dim: usize,
    /// Extra columns of the random test matrix.
    pub oversample: usize,
    /// Subspace iterations.
    pub power_iters: usize,
    /// Seed (stream `pretrain/svd`).
    pub seed: u64,
    /// What an entry counts.
    pub value: PretrainValue,
    /// The user field (default: the categorical field with role `user` and the largest vocabulary).
    pub user_field: Option<String>,
    /// The item field (default: the categorical field with role `item` and the largest vocabulary).
    pub item_field: Option<String>,
}

/// The result of [`pretrain`].
#[derive(Debug, Clone)]
pub struct Pretrained {
    /// The user field's name.
    pub user_field: String,
    /// The item field's name.
    pub item_field: String,
    /// User vectors keyed by raw user id.
    pub users: Vectors,
    /// Item vectors keyed by raw item id.
    pub items: Vectors,
    /// The top `dim` singular values, descending.
    pub singular: Vec<f64>,
    /// Share of the matrix's squared Frobenius norm the `dim` components hold.
    pub energy: f64,
    /// Non-zero entries of the matrix.
    pub entries: usize,
    /// Training rows used (in-vocabulary pairs counted by `value`).
    pub rows_used: usize,
}

/// A truncated SVD `A ≈ U diag(σ) Vᵀ`: `u [rows, k]`, `s` (σ, descending), `v [cols, k]`.
#[derive(Debug, Clone)]
pub struct Svd {
    /// Left singular vectors, one column each.
    pub u: DMatrix<f64>,
    /// Singular values, descending.
    pub s: Vec<f64>,
    /// Right singular vectors, one column each.
    pub v: DMatrix<f64>,
}

/// Sizes of [`randomized_svd`].
#[derive(Debug, Clone, Copy)]
pub struct SvdOptions {
    /// Components kept.
    pub k: usize,
    /// Extra columns of the random test matrix.
    pub oversample: usize,
    /// Subspace iterations.
    pub power_iters: usize,
}

/// The truncated SVD of a sparse `rows × cols` matrix given as `(row, col, value)` entries
/// (duplicates add up), by the randomized range finder with `power_iters` subspace iterations
/// (`progress` gets each iteration's number).
pub fn randomized_svd(
    rows: usize,
    cols: usize,
    entries: &[(u32, u32, f64)],
    opts: SvdOptions,
    rng: &mut Rng,
    mut progress: impl FnMut(usize),
) -> Result<Svd, String> {
    let SvdOptions {
        k,
        oversample,
        power_iters,
    } = opts;
    let l = (k + oversample).min(rows).min(cols);
    if k == 0 || k > l {
        return Err(format!(
            "dim {k} must be in 1..={} (the matrix is {rows} × {cols})",
            rows.min(cols)
        ));
    }
    // A · X for X [cols, l] and Aᵀ · Y for Y [rows, l]
    let a_mul = |x: &DMatrix<f64>| {
        let mut y = DMatrix::<f64>::zeros(rows, x.ncols());
        for &(r, c, v) in entries {
            for j in 0..x.ncols() {
                y[(r as usize, j)] += v * x[(c as usize, j)];
            }
        }
        y
    };
    let at_mul = |y: &DMatrix<f64>| {
        let mut x = DMatrix::<f64>::zeros(cols, y.ncols());
        for &(r, c, v) in entries {
            for j in 0..y.ncols() {
                x[(c as usize, j)] += v * y[(r as usize, j)];
            }
        }
        x
    };
    let omega = DMatrix::<f64>::from_fn(cols, l, |_, _| rng.normal());
    let mut q = a_mul(&omega).qr().q();
    for it in 0..power_iters {
        let z = at_mul(&q).qr().q();
        q = a_mul(&z).qr().q();
        progress(it + 1);
    }
    // B = Qᵀ A, [l, cols], as (Aᵀ Q)ᵀ
    let b = at_mul(&q).transpose();
    let svd = b.svd(true, true);
    let (ub, vt) = (
        svd.u.ok_or("SVD without U")?,
        svd.v_t.ok_or("SVD without Vᵀ")?,
    );
    let mut order: Vec<usize> = (0..svd.singular_values.len()).collect();
    order.sort_by(|&a, &b| svd.singular_values[b].total_cmp(&svd.singular_values[a]));
    order.truncate(k);
    let u_full = &q * &ub;
    let mut u = DMatrix::<f64>::zeros(rows, k);
    let mut v = DMatrix::<f64>::zeros(cols, k);
    let mut s = Vec::with_capacity(k);
    for (j, &o) in order.iter().enumerate() {
        s.push(svd.singular_values[o]);
        // sign: the item loading of largest magnitude (the first of ties) is positive
        let col = vt.row(o);
        let big = (0..cols).fold(0, |b, c| if col[c].abs() > col[b].abs() { c } else { b });
        let sign = if col[big] < 0.0 { -1.0 } else { 1.0 };
        for c in 0..cols {
            v[(c, j)] = sign * col[c];
        }
        for r in 0..rows {
            u[(r, j)] = sign * u_full[(r, o)];
        }
    }
    Ok(Svd { u, s, v })
}

/// The categorical fields of a prepared dataset, in column order.
fn categorical(p: &Prepared) -> Vec<&crate::FittedField> {
    p.schema
        .fields
        .iter()
        .filter(|f| f.kind == FieldKind::Categorical)
        .collect()
}

/// The id field of a role: the named field, or the categorical field with the role and the
/// largest vocabulary.
fn id_field(
    p: &Prepared,
    name: Option<&str>,
    role: FieldRole,
    flag: &str,
) -> Result<(usize, String), DataError> {
    let cats = categorical(p);
    let pick = match name {
        Some(n) => cats.iter().position(|f| f.name == n).ok_or_else(|| {
            DataError::Config(format!(
                "{flag} {n}: no categorical field `{n}`; categorical fields: {}",
                cats.iter()
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?,
        None => cats
            .iter()
            .enumerate()
            .filter(|(_, f)| f.roles.contains(&role) && f.code.is_none())
            .max_by_key(|(i, f)| (f.vocab_size, std::cmp::Reverse(*i)))
            .map(|(i, _)| i)
            .ok_or_else(|| {
                DataError::Config(
                    format!("no categorical field has role `{role:?}`; name one with {flag}")
                        .to_lowercase(),
                )
            })?,
    };
    Ok((pick, cats[pick].name.clone()))
}

/// Factorises the training split of `p` (see the module doc). `progress` gets status lines.
pub fn pretrain(
    p: &Prepared,
    cfg: &PretrainConfig,
    mut progress: impl FnMut(&str),
) -> Result<Pretrained, DataError> {
    let (uc, user_field) = id_field(
        p,
        cfg.user_field.as_deref(),
        FieldRole::User,
        "--user-field",
    )?;
    let (ic, item_field) = id_field(
        p,
        cfg.item_field.as_deref(),
        FieldRole::Item,
        "--item-field",
    )?;
    if uc == ic {
        return Err(DataError::Config(format!(
            "the user and item fields are both `{user_field}`"
        )));
    }
    let cats = categorical(p);
    let vocab = |i: usize| &p.vocabs.tables[&cats[i].table];
    let (uv, iv) = (vocab(uc), vocab(ic));
    let tr = &p.train;
    let label = match &cfg.value {
        PretrainValue::Implicit => None,
        PretrainValue::Positive(t) => {
            Some(p.schema.tasks.iter().position(|x| x == t).ok_or_else(|| {
                DataError::Config(format!(
                    "--value positive:{t}: no task `{t}`; tasks: {}",
                    p.schema.tasks.join(", ")
                ))
            })?)
        }
    };
    let mut counts: BTreeMap<(u32, u32), f64> = BTreeMap::new();
    let mut rows_used = 0;
    for r in 0..tr.n_rows {
        let (u, i) = (tr.cat[uc][r], tr.cat[ic][r]);
        if u < 2 || i < 2 {
            continue;
        }
        if let Some(t) = label {
            if tr.labels[t][r] < 0.5 {
                continue;
            }
        }
        rows_used += 1;
        *counts.entry((u - 2, i - 2)).or_insert(0.0) += 1.0;
    }
    let entries: Vec<(u32, u32, f64)> = counts.iter().map(|(&(u, i), &v)| (u, i, v)).collect();
    let (rows, cols) = (uv.values.len(), iv.values.len());
    progress(&format!(
        "pretrain: {rows} {user_field} × {cols} {item_field}, {} non-zero entries from {rows_used} of {} training rows",
        entries.len(),
        tr.n_rows
    ));
    if entries.is_empty() {
        return Err(DataError::Config(
            "pretrain: the training split gives an empty user–item matrix".into(),
        ));
    }
    let mut rng = Rng::for_stream(cfg.seed, "pretrain/svd");
    let iters = cfg.power_iters;
    let opts = SvdOptions {
        k: cfg.dim,
        oversample: cfg.oversample,
        power_iters: iters,
    };
    let Svd { u, s, v } = randomized_svd(rows, cols, &entries, opts, &mut rng, |i| {
        progress(&format!("pretrain: subspace iteration {i}/{iters}"))
    })
    .map_err(|m| DataError::Config(format!("pretrain: {m}")))?;
    let total: f64 = entries.iter().map(|e| e.2 * e.2).sum();
    let energy = s.iter().map(|x| x * x).sum::<f64>() / total;
    let scale: Vec<f64> = s.iter().map(|x| x.sqrt()).collect();
    let mut has_row = vec![false; rows];
    let mut has_col = vec![false; cols];
    for e in &entries {
        has_row[e.0 as usize] = true;
        has_col[e.1 as usize] = true;
    }
    let vectors = |m: &DMatrix<f64>, has: &[bool], names: &[String], what: &str| {
        let (mut ids, mut data) = (Vec::new(), Vec::new());
        for (r, name) in names.iter().enumerate() {
            if !has[r] {
                continue;
            }
            ids.push(name.clone());
            data.extend((0..cfg.dim).map(|j| (m[(r, j)] * scale[j]) as f32));
        }
        Vectors::new(ids, data, cfg.dim, |i| format!("{what} vector {i}"))
    };
    Ok(Pretrained {
        users: vectors(&u, &has_row, &uv.values, "user")?,
        items: vectors(&v, &has_col, &iv.values, "item")?,
        user_field,
        item_field,
        singular: s,
        energy,
        entries: entries.len(),
        rows_used,
    })
}
