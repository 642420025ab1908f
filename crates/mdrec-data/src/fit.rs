//! Fitting and encoding: vocabularies, numeric statistics, domain and label derivation.
//!
//! Everything is fitted on the TRAIN rows only and then frozen. Vocabulary ids are
//! deterministic: 0 = PAD, 1 = OOV, then the kept values (count in train >= `min_count`) in
//! sorted order (numeric order when every kept value of the table parses as an integer) get ids
//! 2, 3, ... Values unseen in train (or rarer than `min_count`) map to OOV. Work is done per
//! distinct raw value (the interned dictionary of a [`RawColumn`]) and then gathered per row.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::raw::{sort_values, RawColumn, RawTable};
use crate::schema::{FieldKind, FittedField, NumericStats, Schema, SchemaSpec, Transform};
use crate::store::EncodedData;
use crate::{DataError, Jagged};

/// Id of padding.
pub const PAD: u32 = 0;
/// Id of out-of-vocabulary values.
pub const OOV: u32 = 1;

/// The vocabulary of one embedding table: `values[i]` has id `i + 2`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Vocab {
    /// Kept values in id order.
    pub values: Vec<String>,
}

impl Vocab {
    /// Number of ids incl. PAD and OOV.
    pub fn size(&self) -> usize {
        self.values.len() + 2
    }
    /// The raw value of an id (`None` for PAD, OOV and ids out of range).
    pub fn value(&self, id: u32) -> Option<&str> {
        (id >= 2)
            .then(|| self.values.get(id as usize - 2).map(String::as_str))
            .flatten()
    }
    /// Value -> id lookup table.
    pub fn index(&self) -> HashMap<&str, u32> {
        self.values
            .iter()
            .enumerate()
            .map(|(i, v)| (v.as_str(), i as u32 + 2))
            .collect()
    }
    /// The id of a raw value (OOV when not kept).
    pub fn id_of(&self, v: &str) -> u32 {
        self.values
            .iter()
            .position(|x| x == v)
            .map_or(OOV, |i| i as u32 + 2)
    }
}

/// All fitted vocabularies, so that data can be re-encoded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Vocabs {
    /// Table name -> vocabulary.
    pub tables: BTreeMap<String, Vocab>,
    /// Effective raw domain value -> domain index.
    pub domain_map: BTreeMap<String, u32>,
}

/// Resolves the group column: a field name means that field's column.
fn group_column(spec: &SchemaSpec) -> Option<&str> {
    let g = spec.group.as_deref()?;
    Some(
        spec.fields
            .iter()
            .find(|f| f.name == g)
            .map_or(g, |f| f.column()),
    )
}

/// Count of each dict code among `rows`.
fn code_counts(col: &RawColumn, rows: &[u32]) -> Vec<u64> {
    let mut c = vec![0u64; col.dict.len()];
    for &r in rows {
        c[col.codes[r as usize] as usize] += 1;
    }
    c
}

/// First row (in split order train, valid, test) whose code is `code`, for error messages.
fn first_row(col: &RawColumn, splits: &[Vec<u32>; 3], code: u32) -> usize {
    splits
        .iter()
        .find_map(|s| col.first_row_in(s, code))
        .or_else(|| col.first_row_with(code))
        .unwrap_or(0)
}

/// Splits a multi-hot raw value into tokens (empty string = no tokens); `Err` on empty tokens.
fn tokens<'a>(v: &'a str, sep: &str, max_len: Option<usize>) -> Result<Vec<&'a str>, String> {
    if v.is_empty() {
        return Ok(Vec::new());
    }
    let mut t: Vec<&str> = v.split(sep).collect();
    if t.iter().any(|x| x.is_empty()) {
        return Err(format!(
            "empty value in multi-hot list `{v}` (separator `{sep}`)"
        ));
    }
    if let Some(m) = max_len {
        t.truncate(m);
    }
    Ok(t)
}

fn parse_number(v: &str) -> Result<f64, String> {
    match v.trim().parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(x),
        Ok(_) => Err(format!("non-finite number `{v}`")),
        Err(_) => Err(format!("not a number: `{v}`")),
    }
}

/// Fits the schema on `splits[0]` (train) and encodes all three splits.
pub fn fit_encode(
    spec: &SchemaSpec,
    origin: &str,
    t: &RawTable,
    splits: &[Vec<u32>; 3],
) -> Result<(Schema, Vocabs, [EncodedData; 3]), DataError> {
    t.check_shape()?;
    let train = &splits[0];
    if train.is_empty() {
        return Err(DataError::Config("the training split is empty".into()));
    }
    let mut out: [EncodedData; 3] = Default::default();
    for (o, s) in out.iter_mut().zip(splits) {
        o.n_rows = s.len();
    }

    // ---- domain
    let dcol = t.require(&spec.domain.column, origin, "domain")?;
    let (domain_map, domain_names) = match &spec.domain.map {
        Some(map) => {
            let n = map.values().max().map_or(0, |m| *m as usize + 1);
            let names = match &spec.domain.names {
                Some(n) => n.clone(),
                None => (0..n as u32)
                    .map(|i| {
                        let mut keys: Vec<String> = map
                            .iter()
                            .filter(|(_, v)| **v == i)
                            .map(|(k, _)| k.clone())
                            .collect();
                        sort_values(&mut keys);
                        keys.join("|")
                    })
                    .collect(),
            };
            (map.clone(), names)
        }
        None => {
            let counts = code_counts(dcol, train);
            let mut vals: Vec<String> = dcol
                .dict
                .iter()
                .zip(&counts)
                .filter(|(_, c)| **c > 0)
                .map(|(v, _)| v.clone())
                .collect();
            sort_values(&mut vals);
            let map: BTreeMap<String, u32> = vals
                .iter()
                .enumerate()
                .map(|(i, v)| (v.clone(), i as u32))
                .collect();
            let names = match &spec.domain.names {
                Some(n) if n.len() != vals.len() => {
                    return Err(DataError::schema(
                        origin,
                        format!(
                            "domain.names has {} names but column `{}` has {} distinct values in the training split",
                            n.len(),
                            spec.domain.column,
                            vals.len()
                        ),
                    ))
                }
                Some(n) => n.clone(),
                None => vals,
            };
            (map, names)
        }
    };
    let code_dom: Vec<Option<u32>> = dcol
        .dict
        .iter()
        .map(|v| domain_map.get(v).copied())
        .collect();
    for (o, s) in out.iter_mut().zip(splits) {
        o.domain = Vec::with_capacity(s.len());
        for &r in s {
            let c = dcol.codes[r as usize];
            match code_dom[c as usize] {
                Some(d) => o.domain.push(d),
                None => {
                    let what = if spec.domain.map.is_some() {
                        "is not in domain.map"
                    } else {
                        "was not seen in the training split"
                    };
                    return Err(t.error_at(
                        r as usize,
                        &spec.domain.column,
                        format!("domain value `{}` {what}", dcol.dict[c as usize]),
                    ));
                }
            }
        }
    }
    let dc = out[0].domain_counts(domain_names.len());
    if let Some(i) = dc.iter().position(|&c| c == 0) {
        return Err(DataError::EmptyDomain {
            domain: domain_names[i].clone(),
            index: i,
        });
    }

    // ---- tasks
    for task in &spec.tasks {
        let col = t.require(&task.column, origin, &format!("task `{}`", task.name))?;
        let per_code: Vec<Result<f32, String>> = col
            .dict
            .iter()
            .map(|v| {
                let x = parse_number(v)?;
                task.rule.apply(x).ok_or_else(|| {
                    format!(
                        "task `{}`: binary label must be 0 or 1, got `{v}`",
                        task.name
                    )
                })
            })
            .collect();
        for (o, s) in out.iter_mut().zip(splits) {
            let mut lab = Vec::with_capacity(s.len());
            for &r in s {
                match &per_code[col.codes[r as usize] as usize] {
                    Ok(y) => lab.push(*y),
                    Err(m) => return Err(t.error_at(r as usize, &task.column, m.clone())),
                }
            }
            o.labels.push(lab);
        }
        let tl = out[0].labels.last().map(Vec::as_slice).unwrap_or_default();
        let pos = tl.iter().filter(|&&y| y > 0.5).count();
        if pos == 0 || pos == tl.len() {
            return Err(DataError::SingleClass {
                task: task.name.clone(),
                value: if pos == 0 { 0.0 } else { 1.0 },
            });
        }
    }

    // ---- categorical / multi-hot vocabularies, one per table
    let mut cols: Vec<&RawColumn> = Vec::with_capacity(spec.fields.len());
    for f in &spec.fields {
        cols.push(t.require(f.column(), origin, &format!("field `{}`", f.name))?);
    }
    // per field, per code: the token list (multi-hot) or the single value (categorical)
    let mut field_tokens: Vec<Option<Vec<Vec<&str>>>> = Vec::with_capacity(spec.fields.len());
    for (f, col) in spec.fields.iter().zip(&cols) {
        if f.kind != FieldKind::MultiHot {
            field_tokens.push(None);
            continue;
        }
        let mut per_code = Vec::with_capacity(col.dict.len());
        for (c, v) in col.dict.iter().enumerate() {
            match tokens(v, f.sep(), f.max_len) {
                Ok(tk) => per_code.push(tk),
                Err(m) => {
                    let r = first_row(col, splits, c as u32);
                    return Err(t.error_at(r, f.column(), m));
                }
            }
        }
        field_tokens.push(Some(per_code));
    }
    let mut table_counts: BTreeMap<&str, (u32, HashMap<&str, u64>)> = BTreeMap::new();
    for ((f, col), tk) in spec.fields.iter().zip(&cols).zip(&field_tokens) {
        if f.kind == FieldKind::Numeric {
            continue;
        }
        let counts = code_counts(col, train);
        let entry = table_counts
            .entry(f.table())
            .or_insert_with(|| (f.min_count, HashMap::new()));
        for (c, n) in counts.iter().enumerate() {
            match tk {
                None => {
                    *entry.1.entry(col.dict[c].as_str()).or_insert(0) += n;
                }
                Some(per_code) => {
                    for tok in &per_code[c] {
                        *entry.1.entry(tok).or_insert(0) += n;
                    }
                }
            }
        }
    }
    let mut vocabs = Vocabs {
        tables: BTreeMap::new(),
        domain_map,
    };
    for (name, (min_count, counts)) in &table_counts {
        let mut kept: Vec<String> = counts
            .iter()
            .filter(|(_, &n)| n >= u64::from(*min_count))
            .map(|(v, _)| v.to_string())
            .collect();
        sort_values(&mut kept);
        vocabs
            .tables
            .insert(name.to_string(), Vocab { values: kept });
    }

    // ---- encode fields
    let mut fitted = Vec::with_capacity(spec.fields.len());
    for ((f, col), tk) in spec.fields.iter().zip(&cols).zip(&field_tokens) {
        let mut ff = FittedField {
            name: f.name.clone(),
            kind: f.kind,
            table: if f.kind == FieldKind::Numeric {
                String::new()
            } else {
                f.table().to_string()
            },
            vocab_size: 0,
            dim: f.dim,
            roles: f.roles.clone(),
            stats: None,
            n_oov_train: 0,
        };
        match f.kind {
            FieldKind::Categorical => {
                let vocab = &vocabs.tables[f.table()];
                ff.vocab_size = vocab.size();
                let idx = vocab.index();
                let ids: Vec<u32> = col
                    .dict
                    .iter()
                    .map(|v| idx.get(v.as_str()).copied().unwrap_or(OOV))
                    .collect();
                for (si, (o, s)) in out.iter_mut().zip(splits).enumerate() {
                    let c: Vec<u32> = s
                        .iter()
                        .map(|&r| ids[col.codes[r as usize] as usize])
                        .collect();
                    if si == 0 {
                        ff.n_oov_train = c.iter().filter(|&&x| x == OOV).count() as u64;
                    }
                    o.cat.push(c);
                }
            }
            FieldKind::MultiHot => {
                let vocab = &vocabs.tables[f.table()];
                ff.vocab_size = vocab.size();
                let idx = vocab.index();
                let per_code = tk.as_ref().map(Vec::as_slice).unwrap_or_default();
                let ids: Vec<Vec<u32>> = per_code
                    .iter()
                    .map(|tks| {
                        tks.iter()
                            .map(|v| idx.get(v).copied().unwrap_or(OOV))
                            .collect()
                    })
                    .collect();
                for (si, (o, s)) in out.iter_mut().zip(splits).enumerate() {
                    let mut j = Jagged {
                        offsets: Vec::with_capacity(s.len() + 1),
                        values: Vec::new(),
                    };
                    j.offsets.push(0);
                    for &r in s {
                        j.values
                            .extend_from_slice(&ids[col.codes[r as usize] as usize]);
                        j.offsets.push(j.values.len() as u32);
                    }
                    if si == 0 {
                        ff.n_oov_train = j.values.iter().filter(|&&x| x == OOV).count() as u64;
                    }
                    o.multi.push(j);
                }
            }
            FieldKind::Numeric => {
                let mut raw = Vec::with_capacity(col.dict.len());
                for (c, v) in col.dict.iter().enumerate() {
                    match parse_number(v) {
                        Ok(x) => raw.push(x),
                        Err(m) => {
                            let r = first_row(col, splits, c as u32);
                            return Err(t.error_at(r, f.column(), m));
                        }
                    }
                }
                let counts = code_counts(col, train);
                let n: f64 = counts.iter().sum::<u64>() as f64;
                let (mut min, mut max, mut sum) = (f64::INFINITY, f64::NEG_INFINITY, 0.0);
                for (x, &k) in raw.iter().zip(&counts) {
                    if k > 0 {
                        min = min.min(*x);
                        max = max.max(*x);
                        sum += x * k as f64;
                    }
                }
                let mean = sum / n;
                let var = raw
                    .iter()
                    .zip(&counts)
                    .map(|(x, &k)| k as f64 * (x - mean) * (x - mean))
                    .sum::<f64>()
                    / n;
                let stats = NumericStats {
                    min,
                    max,
                    mean,
                    std: var.sqrt(),
                };
                let tr = f.transform.unwrap_or(Transform::None);
                let mut vals = Vec::with_capacity(raw.len());
                for (c, x) in raw.iter().enumerate() {
                    match stats.transform(tr, *x) {
                        Some(y) => vals.push(y as f32),
                        None => {
                            let r = first_row(col, splits, c as u32);
                            return Err(t.error_at(
                                r,
                                f.column(),
                                format!("value {x} is outside the domain of transform {tr:?}")
                                    .to_lowercase(),
                            ));
                        }
                    }
                }
                for (o, s) in out.iter_mut().zip(splits) {
                    o.num.push(
                        s.iter()
                            .map(|&r| vals[col.codes[r as usize] as usize])
                            .collect(),
                    );
                }
                ff.stats = Some(stats);
            }
        }
        fitted.push(ff);
    }

    // ---- group keys
    if let Some(gname) = group_column(spec) {
        let col = t.require(gname, origin, "group")?;
        let ints: Option<Vec<u64>> = col.dict.iter().map(|v| v.parse::<u64>().ok()).collect();
        let keys: Vec<u64> = match ints {
            Some(k) => k,
            None => {
                let mut sorted = col.dict.clone();
                sort_values(&mut sorted);
                let rank: HashMap<&str, u64> = sorted
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (v.as_str(), i as u64))
                    .collect();
                col.dict.iter().map(|v| rank[v.as_str()]).collect()
            }
        };
        for (o, s) in out.iter_mut().zip(splits) {
            o.group = s
                .iter()
                .map(|&r| keys[col.codes[r as usize] as usize])
                .collect();
        }
    } else {
        for (o, s) in out.iter_mut().zip(splits) {
            o.group = vec![0; s.len()];
        }
    }

    let schema = Schema::new(
        spec.clone(),
        fitted,
        domain_names,
        spec.tasks.iter().map(|t| t.name.clone()).collect(),
    );
    Ok((schema, vocabs, out))
}
