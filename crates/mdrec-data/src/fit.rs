//! Fitting and encoding: vocabularies, numeric statistics, domain and label derivation.
//!
//! [`fit`] learns everything from the TRAIN rows only; the result is frozen into an
//! [`Encoder`], and [`Encoder::encode`] is the one function that turns raw rows into encoded
//! columns: for the three splits when a dataset is prepared, and for new records when a trained
//! run scores them (`mdrec predict`, `mdrec serve`). Vocabulary ids are
//! deterministic: 0 = PAD, 1 = OOV, then the kept values (count in train >= `min_count`) in
//! sorted order (numeric order when every kept value of the table parses as an integer) get ids
//! 2, 3, ... Values unseen in train (or rarer than `min_count`) map to OOV. Work is done per
//! distinct raw value (the interned dictionary of a [`RawColumn`]) and then gathered per row.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::col::Col;
use crate::pretrained::Derived;
use crate::raw::{sort_values, RawColumn, RawTable};
use crate::schema::{
    interval_bucket, mnse_width, FieldKind, FieldSpec, FittedField, MnsePool, NumericCode,
    NumericEncoding, NumericStats, Padding, Schema, SchemaSpec, SeqEncoder, SeqPart, SeqSlot,
    Transform, INTERVAL_BUCKETS,
};
use crate::store::EncodedData;
use crate::{DataError, Jagged};

/// What [`Encoder::encode`] does with the task columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Labels {
    /// Read and check them (training data).
    Read,
    /// Ignore them and fill the label columns with 0 (records to score carry no labels).
    Skip,
}

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

/// The ids of a sequence's raw list, oldest first, keeping the `max_len` most recent (the
/// last ones); `Err` on empty tokens.
fn seq_tokens<'a>(v: &'a str, sep: &str, max_len: Option<usize>) -> Result<Vec<&'a str>, String> {
    let mut t = tokens(v, sep, None)?;
    if let Some(m) = max_len {
        t.drain(..t.len().saturating_sub(m));
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

/// A code's cached result while encoding: computed on its first row, borrowed for the others.
fn cached<T>(
    cache: &mut [Option<T>],
    code: u32,
    f: impl FnOnce() -> Result<T, String>,
) -> Result<&T, String> {
    let slot = &mut cache[code as usize];
    match slot {
        Some(v) => Ok(v),
        None => Ok(slot.insert(f()?)),
    }
}

/// Fits the schema on the `train` rows: domain map and names, vocabularies (one per table) and
/// numeric statistics. `n_oov_train` is left at 0; [`fit_encode`] fills it in.
pub fn fit(
    spec: &SchemaSpec,
    origin: &str,
    t: &RawTable,
    train: &[u32],
) -> Result<(Schema, Vocabs), DataError> {
    fit_derived(spec, origin, &FitRows::Table { t, train }).map(|(s, v, _)| (s, v))
}

/// Where a raw value was first seen: file (index into the files list) and 1-based line.
#[derive(Debug, Clone, Copy)]
struct Seen {
    file: u32,
    line: u64,
}

/// The distinct training values of one raw column with their counts, accumulated over chunks
/// of rows (the out-of-core path, [`crate::ooc`]), and where each was first seen.
#[derive(Debug, Default)]
struct StreamedColumn {
    index: HashMap<String, u32>,
    dict: Vec<String>,
    counts: Vec<u64>,
    seen: Vec<Seen>,
}

/// What fitting needs of the training rows, gathered chunk by chunk: for each column the
/// schema fits on (the domain column and every field's column), its distinct training values
/// and their counts. Memory grows with the distinct values, not with the rows.
#[derive(Debug, Default)]
pub struct StreamedCounts {
    files: Vec<String>,
    columns: BTreeMap<String, StreamedColumn>,
}

impl StreamedCounts {
    /// Counts for the columns `spec` fits on.
    pub fn new(spec: &SchemaSpec) -> Self {
        let mut columns = BTreeMap::new();
        columns.insert(spec.domain.column.clone(), StreamedColumn::default());
        for f in &spec.fields {
            columns.insert(f.column().to_string(), StreamedColumn::default());
        }
        StreamedCounts {
            files: Vec::new(),
            columns,
        }
    }

    /// Adds the training rows `train` of the chunk `t`; an error names a missing column.
    pub fn add(&mut self, origin: &str, t: &RawTable, train: &[u32]) -> Result<(), DataError> {
        // per chunk code: training rows holding it, and the first of them
        let mut counts: Vec<u64> = Vec::new();
        let mut first: Vec<u32> = Vec::new();
        for (name, acc) in &mut self.columns {
            let col = t.require(name, origin, "schema")?;
            counts.clear();
            counts.resize(col.dict.len(), 0);
            first.clear();
            first.resize(col.dict.len(), 0);
            for &r in train {
                let c = col.codes[r as usize] as usize;
                if counts[c] == 0 {
                    first[c] = r;
                }
                counts[c] += 1;
            }
            for (code, &n) in counts.iter().enumerate().filter(|(_, &n)| n > 0) {
                let v = &col.dict[code];
                let i = match acc.index.get(v.as_str()) {
                    Some(&i) => i as usize,
                    None => {
                        let r = first[code] as usize;
                        let file = t.file_of(r);
                        let fi = match self.files.iter().position(|f| f == file) {
                            Some(i) => i,
                            None => {
                                self.files.push(file.to_string());
                                self.files.len() - 1
                            }
                        };
                        acc.index.insert(v.clone(), acc.dict.len() as u32);
                        acc.dict.push(v.clone());
                        acc.counts.push(0);
                        acc.seen.push(Seen {
                            file: fi as u32,
                            line: u64::from(t.row_line[r]),
                        });
                        acc.dict.len() - 1
                    }
                };
                acc.counts[i] += n;
            }
        }
        Ok(())
    }
}

/// The rows a schema is fitted on: an in-memory table's training rows, or counts streamed
/// from chunks.
pub(crate) enum FitRows<'a> {
    /// Rows `train` of table `t`.
    Table {
        /// The table.
        t: &'a RawTable,
        /// Its training rows.
        train: &'a [u32],
    },
    /// Counts gathered chunk by chunk.
    Streamed(&'a StreamedCounts),
}

/// The distinct training values of one column and their counts.
struct TrainValues<'a> {
    dict: &'a [String],
    counts: std::borrow::Cow<'a, [u64]>,
    rows: &'a FitRows<'a>,
    column: &'a RawColumn,
    seen: &'a [Seen],
}

impl<'a> FitRows<'a> {
    fn values(
        &'a self,
        name: &str,
        origin: &str,
        what: &str,
    ) -> Result<TrainValues<'a>, DataError> {
        static EMPTY: RawColumn = RawColumn {
            name: String::new(),
            dict: Vec::new(),
            codes: Vec::new(),
        };
        match self {
            FitRows::Table { t, train } => {
                let col = t.require(name, origin, what)?;
                Ok(TrainValues {
                    dict: &col.dict,
                    counts: code_counts(col, train).into(),
                    rows: self,
                    column: col,
                    seen: &[],
                })
            }
            FitRows::Streamed(s) => {
                let c = s.columns.get(name).ok_or_else(|| {
                    DataError::schema(origin, format!("{what}: column `{name}` not found"))
                })?;
                Ok(TrainValues {
                    dict: &c.dict,
                    counts: c.counts.as_slice().into(),
                    rows: self,
                    column: &EMPTY,
                    seen: &c.seen,
                })
            }
        }
    }
}

impl TrainValues<'_> {
    /// The distinct values that occur in training, with their codes and counts.
    fn used(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(c, &n)| (c, n))
    }

    /// A parse error at the first training row holding value `code` of column `field`.
    fn error(&self, code: usize, field: &str, msg: impl Into<String>) -> DataError {
        match self.rows {
            FitRows::Table { t, train } => t.error_at(
                self.column
                    .first_row_in(train, code as u32)
                    .unwrap_or_default(),
                field,
                msg,
            ),
            FitRows::Streamed(s) => {
                let at = self.seen[code];
                DataError::parse(&s.files[at.file as usize], at.line, field, msg)
            }
        }
    }
}

/// [`fit`], also returning the loaded pre-trained vectors (when the spec has any).
fn fit_derived(
    spec: &SchemaSpec,
    origin: &str,
    rows: &FitRows<'_>,
) -> Result<(Schema, Vocabs, Option<Arc<Derived>>), DataError> {
    // ---- domain
    let dcol = rows.values(&spec.domain.column, origin, "domain")?;
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
            let mut vals: Vec<String> = dcol
                .dict
                .iter()
                .zip(dcol.counts.iter())
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

    // ---- vocabularies (one per table) and numeric statistics, from the train rows
    let mut table_counts: BTreeMap<&str, (u32, HashMap<&str, u64>)> = BTreeMap::new();
    let mut stats: Vec<Option<NumericStats>> = Vec::with_capacity(spec.fields.len());
    // distinct training values of each numeric field with their counts, ascending
    let mut numeric_values: Vec<Vec<(f64, u64)>> = Vec::with_capacity(spec.fields.len());
    for f in &spec.fields {
        let col = rows.values(f.column(), origin, &format!("field `{}`", f.name))?;
        if f.kind == FieldKind::Numeric {
            let (mut min, mut max, mut sum, mut n) = (f64::INFINITY, f64::NEG_INFINITY, 0.0, 0.0);
            let mut xs = Vec::new();
            for (c, k) in col.used() {
                let x = parse_number(&col.dict[c]).map_err(|m| col.error(c, f.column(), m))?;
                min = min.min(x);
                max = max.max(x);
                sum += x * k as f64;
                n += k as f64;
                xs.push((x, k));
            }
            let mean = sum / n;
            let var = xs
                .iter()
                .map(|(x, k)| *k as f64 * (x - mean) * (x - mean))
                .sum::<f64>()
                / n;
            stats.push(Some(NumericStats {
                min,
                max,
                mean,
                std: var.sqrt(),
            }));
            if let (Some(NumericEncoding::Mnse { .. }), true) = (&f.encoding, min < 0.0) {
                let c = col
                    .used()
                    .find(|(c, _)| parse_number(&col.dict[*c]).is_ok_and(|x| x < 0.0));
                return Err(col.error(
                    c.map_or(0, |(c, _)| c),
                    f.column(),
                    format!(
                        "field `{}`: MNSE codes non-negative values, the training split holds {min}",
                        f.name
                    ),
                ));
            }
            xs.sort_by(|a, b| a.0.total_cmp(&b.0));
            numeric_values.push(xs);
            continue;
        }
        stats.push(None);
        numeric_values.push(Vec::new());
        let entry = table_counts
            .entry(f.table())
            .or_insert_with(|| (f.min_count, HashMap::new()));
        for (c, n) in col.used() {
            let v = col.dict[c].as_str();
            if matches!(f.kind, FieldKind::MultiHot | FieldKind::Sequence) {
                let tk = if f.kind == FieldKind::Sequence {
                    seq_tokens(v, f.sep(), f.max_len)
                } else {
                    tokens(v, f.sep(), f.max_len)
                }
                .map_err(|m| col.error(c, f.column(), m))?;
                for tok in tk {
                    *entry.1.entry(tok).or_insert(0) += n;
                }
            } else {
                *entry.1.entry(v).or_insert(0) += n;
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
    let mut fields = Vec::with_capacity(spec.fields.len());
    for ((f, stats), values) in spec.fields.iter().zip(stats).zip(&numeric_values) {
        let numeric = f.kind == FieldKind::Numeric;
        let base = FittedField {
            name: f.name.clone(),
            kind: f.kind,
            table: if numeric {
                String::new()
            } else {
                f.table().to_string()
            },
            vocab_size: if numeric {
                0
            } else {
                vocabs.tables[f.table()].size()
            },
            dim: f.dim,
            roles: f.roles.clone(),
            stats,
            n_oov_train: 0,
            code: None,
            seq: None,
        };
        if numeric {
            fields.extend(encoded_fields(&f.name, f.encoding.as_ref(), &base, values));
        } else if f.kind == FieldKind::Sequence {
            fields.extend(sequence_fields(f, &base));
        } else {
            fields.push(base);
        }
    }
    let derived = Derived::load(spec)?.map(Arc::new);
    if let Some(d) = &derived {
        let FitRows::Table { t, train } = *rows else {
            return Err(DataError::schema(
                origin,
                "pre-trained vectors (pretrained, similarity, semantic_id) need the rows in memory; the out-of-core path (dataset.out_of_core) does not fit them",
            ));
        };
        for (name, n, missing) in d.coverage(spec, t, origin, train)? {
            if missing > 0 {
                eprintln!(
                    "pretrained: field `{name}`: {missing} of {n} training values have no vector (zero vector)"
                );
            }
        }
        fields.extend(derived_fields(d, spec, origin, t, train)?);
    }
    let schema = Schema::new(
        spec.clone(),
        fields,
        domain_names,
        spec.tasks.iter().map(|t| t.name.clone()).collect(),
    );
    Ok((schema, vocabs, derived))
}

/// The fitted fields of the features derived from pre-trained vectors, fitted on `train`.
fn derived_fields(
    d: &Derived,
    spec: &SchemaSpec,
    origin: &str,
    t: &RawTable,
    train: &[u32],
) -> Result<Vec<FittedField>, DataError> {
    let mut out = Vec::new();
    for (k, feat) in d.features.iter().enumerate() {
        let vals = d.values(spec, k, t, origin, train)?;
        let mut sorted: Vec<f64> = vals.iter().map(|&x| f64::from(x)).collect();
        sorted.sort_by(f64::total_cmp);
        let mut counts: Vec<(f64, u64)> = Vec::new();
        for x in sorted {
            match counts.last_mut() {
                Some((y, c)) if *y == x => *c += 1,
                _ => counts.push((x, 1)),
            }
        }
        let base = FittedField {
            name: feat.name.clone(),
            kind: FieldKind::Numeric,
            table: String::new(),
            vocab_size: 0,
            dim: None,
            roles: vec![],
            // no transform reads them, and many long decimals would put the schema's hash at
            // the mercy of JSON float parsing
            stats: None,
            n_oov_train: 0,
            code: None,
            seq: None,
        };
        out.extend(encoded_fields(
            &feat.name,
            feat.encoding.as_ref(),
            &base,
            &counts,
        ));
    }
    Ok(out)
}

/// The categorical slot fields of sequence field `f` (`base` is its fitted form), in the
/// order of [`FieldSpec::slot_names`].
fn sequence_fields(f: &FieldSpec, base: &FittedField) -> Vec<FittedField> {
    let l = f.max_len.unwrap_or(0);
    f.slot_names()
        .into_iter()
        .map(|(name, part, slot)| {
            let (table, vocab_size) = match part {
                SeqPart::Item => (base.table.clone(), base.vocab_size),
                SeqPart::Position => (format!("{}.pos", f.name), l + 2),
                SeqPart::Interval => (format!("{}.dt", f.name), INTERVAL_BUCKETS as usize + 2),
            };
            FittedField {
                name,
                kind: FieldKind::Categorical,
                table,
                vocab_size,
                seq: Some(SeqSlot {
                    sequence: f.name.clone(),
                    part,
                    slot,
                }),
                ..base.clone()
            }
        })
        .collect()
}

/// Boundaries of equal-frequency buckets over the distinct training values `values`
/// (ascending, with counts): a value whose share of training rows below it is `s` falls in
/// bucket `floor(s · buckets)`; a boundary is the first value of a bucket other than the first.
pub fn bucket_boundaries(values: &[(f64, u64)], buckets: usize) -> Vec<f64> {
    let total: u64 = values.iter().map(|v| v.1).sum();
    let mut out = Vec::new();
    let (mut below, mut last) = (0u64, None);
    for &(x, k) in values {
        let b = (below as u128 * buckets as u128 / total.max(1) as u128) as usize;
        if last.is_some_and(|l| b > l) {
            out.push(x);
        }
        last = Some(b);
        below += k;
    }
    out
}

/// The fitted fields of numeric field `f` (`base` is its scalar form): itself, one
/// categorical bucket field, or the MNSE multi-hot field(s).
fn encoded_fields(
    name: &str,
    encoding: Option<&NumericEncoding>,
    base: &FittedField,
    values: &[(f64, u64)],
) -> Vec<FittedField> {
    let embedded = |name: String, kind: FieldKind, code: NumericCode| FittedField {
        table: name.clone(),
        name,
        kind,
        vocab_size: code.vocab_size(),
        code: Some(code),
        ..base.clone()
    };
    match encoding {
        None | Some(NumericEncoding::Scalar) => vec![base.clone()],
        Some(NumericEncoding::Bucket { buckets }) => vec![embedded(
            name.to_string(),
            FieldKind::Categorical,
            NumericCode::Bucket {
                boundaries: bucket_boundaries(values, *buckets),
            },
        )],
        Some(e @ NumericEncoding::Mnse { bases, width, pool }) => {
            let max = values.last().map_or(0, |v| v.0.max(0.0).floor() as u64);
            let pairs: Vec<(u32, usize)> = bases
                .iter()
                .map(|&b| (b, width.unwrap_or_else(|| mnse_width(max, b))))
                .collect();
            let names = e.embedded_names(name);
            match pool {
                MnsePool::Concat => names
                    .into_iter()
                    .zip(pairs)
                    .map(|(n, p)| {
                        embedded(
                            n,
                            FieldKind::MultiHot,
                            NumericCode::Digits { bases: vec![p] },
                        )
                    })
                    .collect(),
                MnsePool::Sum => names
                    .into_iter()
                    .map(|n| {
                        embedded(
                            n,
                            FieldKind::MultiHot,
                            NumericCode::Digits {
                                bases: pairs.clone(),
                            },
                        )
                    })
                    .collect(),
            }
        }
    }
}

/// A fitted schema and its vocabularies, ready to encode raw rows; built once (value -> id
/// lookups included) and reused for every table it encodes.
#[derive(Debug, Clone)]
pub struct Encoder {
    schema: Schema,
    vocabs: Vocabs,
    /// Table name -> (raw value -> id).
    index: BTreeMap<String, HashMap<String, u32>>,
    /// The schema's pre-trained vectors (`Ok(None)` without any; `Err` when they could not be
    /// read, reported by [`Encoder::encode`]).
    derived: Result<Option<Arc<Derived>>, String>,
}

impl Encoder {
    /// The encoder of a fitted schema (reading its pre-trained vectors, if any; a failure is
    /// reported by [`Encoder::encode`]).
    pub fn new(schema: Schema, vocabs: Vocabs) -> Self {
        let derived = Derived::load(&schema.spec)
            .map(|d| d.map(Arc::new))
            .map_err(|e| e.to_string());
        Encoder {
            derived,
            ..Self::with_derived(schema, vocabs, None)
        }
    }

    /// An encoder with pre-trained vectors already loaded.
    fn with_derived(schema: Schema, vocabs: Vocabs, derived: Option<Arc<Derived>>) -> Self {
        let index = vocabs
            .tables
            .iter()
            .map(|(name, v)| {
                let idx = v
                    .values
                    .iter()
                    .enumerate()
                    .map(|(i, x)| (x.clone(), i as u32 + 2))
                    .collect();
                (name.clone(), idx)
            })
            .collect();
        Encoder {
            schema,
            vocabs,
            index,
            derived: Ok(derived),
        }
    }

    /// The fitted schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The vocabularies.
    pub fn vocabs(&self) -> &Vocabs {
        &self.vocabs
    }

    /// The raw columns [`encode`](Self::encode) reads, in schema order without repeats: every
    /// field's column and the domain column (the task and group columns only with labels).
    pub fn input_columns(&self) -> Vec<&str> {
        let spec = &self.schema.spec;
        let mut out: Vec<&str> = Vec::new();
        let seq_columns = spec
            .fields
            .iter()
            .filter(|f| f.time_column.is_some())
            .flat_map(|f| {
                [f.time_column.as_deref(), f.target_time_column(spec)]
                    .into_iter()
                    .flatten()
            });
        for c in spec
            .fields
            .iter()
            .map(|f| f.column())
            .chain(seq_columns)
            .chain([spec.domain.column.as_str()])
        {
            if !out.contains(&c) {
                out.push(c);
            }
        }
        out
    }

    /// Encodes sequence field `f` of `rows` into its slot columns (appended to `cat` in the
    /// order of [`FieldSpec::slot_names`]). Errors name the row's file, line and column: an
    /// empty list entry, a timestamp list of another length than the ids, a timestamp or target
    /// time that is not an integer, and a behaviour not strictly earlier than its target.
    fn encode_sequence(
        &self,
        origin: &str,
        t: &RawTable,
        rows: &[u32],
        f: &FieldSpec,
        cat: &mut Vec<Col<u32>>,
    ) -> Result<(), DataError> {
        let spec = &self.schema.spec;
        let l = f.max_len.unwrap_or(0);
        let n = rows.len();
        let what = format!("field `{}`", f.name);
        let col = t.require(f.column(), origin, &what)?;
        let times = match &f.time_column {
            Some(c) => Some((c.as_str(), t.require(c, origin, &what)?)),
            None => None,
        };
        let target = match (&times, f.target_time_column(spec)) {
            (Some(_), Some(c)) => Some((c, t.require(c, origin, &what)?)),
            _ => None,
        };
        let idx = &self.index[f.table()];
        let tim = f.encoder == Some(SeqEncoder::Tim);
        let left = f.padding.unwrap_or_default() == Padding::Left;
        let mut id_cache: Vec<Option<(Vec<u32>, usize)>> = vec![None; col.dict.len()];
        let mut time_cache: Vec<Option<Vec<i64>>> =
            vec![None; times.map_or(0, |(_, c)| c.dict.len())];
        let mut target_cache: Vec<Option<i64>> =
            vec![None; target.map_or(0, |(_, c)| c.dict.len())];
        let parts = if tim { 3 } else { 1 };
        let mut out: Vec<Vec<u32>> = (0..parts * l).map(|_| Vec::with_capacity(n)).collect();
        for &r in rows {
            let ri = r as usize;
            let c = col.codes[ri];
            let (ids, n_all) = cached(&mut id_cache, c, || {
                let raw = &col.dict[c as usize];
                let ids = seq_tokens(raw, f.sep(), f.max_len)?
                    .iter()
                    .map(|v| idx.get(*v).copied().unwrap_or(OOV))
                    .collect();
                Ok((ids, tokens(raw, f.sep(), None)?.len()))
            })
            .map_err(|m| t.error_at(ri, f.column(), m))?;
            let k = ids.len();
            // recency rank of slot s, `None` for padding
            let rank = |s: usize| -> Option<usize> {
                if left {
                    (s >= l - k).then(|| l - 1 - s)
                } else {
                    (s < k).then_some(s)
                }
            };
            // index into `ids` (oldest first) of the behaviour of recency rank q
            let of_rank = |q: usize| k - 1 - q;
            for (s, o) in out[..l].iter_mut().enumerate() {
                o.push(rank(s).map_or(PAD, |q| ids[of_rank(q)]));
            }
            let (Some((tcol_name, tcol)), Some((gcol_name, gcol))) = (times, target) else {
                continue;
            };
            let tc = tcol.codes[ri];
            let all_ts = cached(&mut time_cache, tc, || {
                tokens(&tcol.dict[tc as usize], f.sep(), None)?
                    .iter()
                    .map(|x| {
                        x.trim().parse::<i64>().map_err(|_| {
                            format!("sequence `{}`: timestamp `{x}` is not an integer", f.name)
                        })
                    })
                    .collect()
            })
            .map_err(|m| t.error_at(ri, tcol_name, m))?;
            if all_ts.len() != *n_all {
                return Err(t.error_at(
                    ri,
                    tcol_name,
                    format!(
                        "sequence `{}`: {} timestamps for {n_all} ids",
                        f.name,
                        all_ts.len()
                    ),
                ));
            }
            let ts = &all_ts[n_all - k..];
            let gc = gcol.codes[ri];
            let now = *cached(&mut target_cache, gc, || {
                let v = &gcol.dict[gc as usize];
                v.trim().parse::<i64>().map_err(|_| {
                    format!("sequence `{}`: target time `{v}` is not an integer", f.name)
                })
            })
            .map_err(|m| t.error_at(ri, gcol_name, m))?;
            if let Some(&late) = all_ts.iter().find(|&&x| x >= now) {
                return Err(t.error_at(
                    ri,
                    tcol_name,
                    format!(
                        "sequence `{}`: a behaviour at time {late} is not before the target's time {now} (history must be strictly earlier)",
                        f.name
                    ),
                ));
            }
            if tim {
                for s in 0..l {
                    let q = rank(s);
                    out[l + s].push(q.map_or(PAD, |q| 2 + q as u32));
                    out[2 * l + s]
                        .push(q.map_or(PAD, |q| 2 + interval_bucket(now - ts[of_rank(q)])));
                }
            }
        }
        cat.extend(out.into_iter().map(Col::from));
        Ok(())
    }

    /// Encodes `rows` of `t`: unknown categorical values map to OOV; an unknown domain, a
    /// non-number in a numeric column, a value outside a transform's domain or (with
    /// [`Labels::Read`]) an invalid label is an error naming the row's file, line and column.
    pub fn encode(
        &self,
        origin: &str,
        t: &RawTable,
        rows: &[u32],
        labels: Labels,
    ) -> Result<EncodedData, DataError> {
        let spec = &self.schema.spec;
        let n = rows.len();
        let mut o = EncodedData {
            n_rows: n,
            ..Default::default()
        };

        // ---- domain
        let dcol = t.require(&spec.domain.column, origin, "domain")?;
        let code_dom: Vec<Option<u32>> = dcol
            .dict
            .iter()
            .map(|v| self.vocabs.domain_map.get(v).copied())
            .collect();
        o.domain.reserve(n);
        for &r in rows {
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

        // ---- tasks
        for task in &spec.tasks {
            if labels == Labels::Skip {
                o.labels.push(vec![0.0; n].into());
                continue;
            }
            let col = t.require(&task.column, origin, &format!("task `{}`", task.name))?;
            let mut cache: Vec<Option<f32>> = vec![None; col.dict.len()];
            let mut lab = Vec::with_capacity(n);
            for &r in rows {
                let c = col.codes[r as usize];
                let y = cached(&mut cache, c, || {
                    let v = &col.dict[c as usize];
                    let x = parse_number(v)?;
                    task.rule.apply(x).ok_or_else(|| {
                        format!(
                            "task `{}`: binary label must be 0 or 1, got `{v}`",
                            task.name
                        )
                    })
                })
                .map_err(|m| t.error_at(r as usize, &task.column, m))?;
                lab.push(*y);
            }
            o.labels.push(lab.into());
        }

        // ---- fields (a numeric field with an embedding encoding has one or more fitted
        // fields, each coding the raw value)
        let mut fitted = self.schema.fields.iter();
        for f in &spec.fields {
            let n_fitted = match &f.encoding {
                Some(e @ NumericEncoding::Mnse { .. })
                | Some(e @ NumericEncoding::Bucket { .. }) => e.embedded_names(&f.name).len(),
                _ if f.kind == FieldKind::Sequence => f.slot_names().len(),
                _ => 1,
            };
            let ffs: Vec<&FittedField> = fitted.by_ref().take(n_fitted).collect();
            if f.kind == FieldKind::Sequence {
                self.encode_sequence(origin, t, rows, f, &mut o.cat)?;
                continue;
            }
            let ff = ffs.first().copied().ok_or_else(|| {
                DataError::schema(origin, format!("field `{}` has no fitted field", f.name))
            })?;
            let col = t.require(f.column(), origin, &format!("field `{}`", f.name))?;
            let at = |r: u32| move |m: String| t.error_at(r as usize, f.column(), m);
            if ff.code.is_some() {
                for ff in ffs {
                    let code = ff.code.as_ref().expect("checked");
                    let mut cache: Vec<Option<Vec<u32>>> = vec![None; col.dict.len()];
                    let mut ids_of = |r: u32| -> Result<Vec<u32>, DataError> {
                        let c = col.codes[r as usize];
                        cached(&mut cache, c, || {
                            code.ids(parse_number(&col.dict[c as usize])?)
                        })
                        .cloned()
                        .map_err(at(r))
                    };
                    if ff.kind == FieldKind::Categorical {
                        let mut v = Vec::with_capacity(n);
                        for &r in rows {
                            v.push(ids_of(r)?[0]);
                        }
                        o.cat.push(v.into());
                    } else {
                        let mut j = Jagged {
                            offsets: Vec::with_capacity(n + 1),
                            values: Vec::new(),
                        };
                        j.offsets.push(0);
                        for &r in rows {
                            j.values.extend_from_slice(&ids_of(r)?);
                            j.offsets.push(j.values.len() as u32);
                        }
                        o.multi.push(j.into());
                    }
                }
                continue;
            }
            match f.kind {
                FieldKind::Categorical => {
                    let idx = &self.index[f.table()];
                    let ids: Vec<u32> = col
                        .dict
                        .iter()
                        .map(|v| idx.get(v.as_str()).copied().unwrap_or(OOV))
                        .collect();
                    o.cat.push(
                        rows.iter()
                            .map(|&r| ids[col.codes[r as usize] as usize])
                            .collect(),
                    );
                }
                FieldKind::MultiHot => {
                    let idx = &self.index[f.table()];
                    let mut cache: Vec<Option<Vec<u32>>> = vec![None; col.dict.len()];
                    let mut j = Jagged {
                        offsets: Vec::with_capacity(n + 1),
                        values: Vec::new(),
                    };
                    j.offsets.push(0);
                    for &r in rows {
                        let c = col.codes[r as usize];
                        let ids = cached(&mut cache, c, || {
                            Ok(tokens(&col.dict[c as usize], f.sep(), f.max_len)?
                                .iter()
                                .map(|v| idx.get(*v).copied().unwrap_or(OOV))
                                .collect())
                        })
                        .map_err(at(r))?;
                        j.values.extend_from_slice(ids);
                        j.offsets.push(j.values.len() as u32);
                    }
                    o.multi.push(j.into());
                }
                FieldKind::Numeric => {
                    let stats = ff.stats.ok_or_else(|| {
                        DataError::schema(
                            origin,
                            format!("numeric field `{}` has no fitted statistics", f.name),
                        )
                    })?;
                    let tr = f.transform.unwrap_or(Transform::None);
                    let mut cache: Vec<Option<f32>> = vec![None; col.dict.len()];
                    let mut vals = Vec::with_capacity(n);
                    for &r in rows {
                        let c = col.codes[r as usize];
                        let y = cached(&mut cache, c, || {
                            let x = parse_number(&col.dict[c as usize])?;
                            stats.transform(tr, x).map(|y| y as f32).ok_or_else(|| {
                                format!("value {x} is outside the domain of transform {tr:?}")
                                    .to_lowercase()
                            })
                        })
                        .map_err(at(r))?;
                        vals.push(*y);
                    }
                    o.num.push(vals.into());
                }
                // encoded above, before the field's column is read
                FieldKind::Sequence => {}
            }
        }

        // ---- features derived from pre-trained vectors (their fitted fields come last)
        let rest: Vec<&FittedField> = fitted.collect();
        let derived = self
            .derived
            .as_ref()
            .map_err(|e| DataError::Config(e.clone()))?;
        match derived {
            None if !rest.is_empty() => {
                return Err(DataError::schema(
                    origin,
                    format!("{} fitted fields have no declared field", rest.len()),
                ))
            }
            None => {}
            Some(d) => {
                let mut rest = rest.into_iter();
                for (k, feat) in d.features.iter().enumerate() {
                    let n_fitted = match &feat.encoding {
                        Some(e) if !e.embedded_names(&feat.name).is_empty() => {
                            e.embedded_names(&feat.name).len()
                        }
                        _ => 1,
                    };
                    let ffs: Vec<&FittedField> = rest.by_ref().take(n_fitted).collect();
                    if ffs.len() != n_fitted || ffs.iter().any(|f| !f.name.starts_with(&feat.name))
                    {
                        return Err(DataError::schema(
                            origin,
                            format!(
                                "the fitted schema does not match the pre-trained feature `{}`",
                                feat.name
                            ),
                        ));
                    }
                    let vals = d.values(spec, k, t, origin, rows)?;
                    push_values(&mut o, &ffs, &vals).map_err(|m| {
                        DataError::schema(origin, format!("feature `{}`: {m}", feat.name))
                    })?;
                }
            }
        }

        // ---- group keys
        o.group = match group_column(spec).map(|g| (g, t.column(g))) {
            Some((_, Some(col))) => {
                let ints: Option<Vec<u64>> =
                    col.dict.iter().map(|v| v.parse::<u64>().ok()).collect();
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
                rows.iter()
                    .map(|&r| keys[col.codes[r as usize] as usize])
                    .collect()
            }
            Some((g, None)) if labels == Labels::Read => {
                t.require(g, origin, "group")?;
                vec![0; n].into()
            }
            _ => vec![0; n].into(),
        };

        // ---- event and label times (training data only)
        if labels == Labels::Read {
            if let Some(tc) = &spec.time {
                o.time = int_column(t, origin, tc, "time", rows, false)?.into();
            }
            if let Some(wc) = &spec.weight {
                o.weight = weight_column(t, origin, wc, rows)?.into();
            }
            for task in &spec.tasks {
                o.label_time.push(match &task.label_time {
                    Some(c) => int_column(
                        t,
                        origin,
                        c,
                        &format!("label_time of task `{}`", task.name),
                        rows,
                        true,
                    )?
                    .into(),
                    None => Col::default(),
                });
            }
        }
        Ok(o)
    }
}

/// Encodes the per-row values `vals` of one derived numeric feature into its fitted fields:
/// a code (bucket, MNSE) gives ids, no code one dense input.
fn push_values(o: &mut EncodedData, ffs: &[&FittedField], vals: &[f32]) -> Result<(), String> {
    for ff in ffs {
        let Some(code) = &ff.code else {
            o.num.push(vals.to_vec().into());
            continue;
        };
        let mut cache: HashMap<u32, Vec<u32>> = HashMap::new();
        let mut ids_of = |x: f32| -> Result<Vec<u32>, String> {
            if let Some(v) = cache.get(&x.to_bits()) {
                return Ok(v.clone());
            }
            let v = code.ids(f64::from(x))?;
            cache.insert(x.to_bits(), v.clone());
            Ok(v)
        };
        if ff.kind == FieldKind::Categorical {
            let v: Result<Vec<u32>, String> = vals.iter().map(|&x| Ok(ids_of(x)?[0])).collect();
            o.cat.push(v?.into());
        } else {
            let mut j = Jagged {
                offsets: Vec::with_capacity(vals.len() + 1),
                values: Vec::new(),
            };
            j.offsets.push(0);
            for &x in vals {
                j.values.extend_from_slice(&ids_of(x)?);
                j.offsets.push(j.values.len() as u32);
            }
            o.multi.push(j.into());
        }
    }
    Ok(())
}

/// The sample weights of column `name` at `rows`: each a finite number ≥ 0; anything else is an
/// error naming the row.
fn weight_column(
    t: &RawTable,
    origin: &str,
    name: &str,
    rows: &[u32],
) -> Result<Vec<f32>, DataError> {
    let col = t.require(name, origin, "weight")?;
    let mut cache: Vec<Option<f32>> = vec![None; col.dict.len()];
    let mut out = Vec::with_capacity(rows.len());
    for &r in rows {
        let c = col.codes[r as usize];
        let w = cached(&mut cache, c, || {
            let v = col.dict[c as usize].trim();
            match v.parse::<f32>() {
                Ok(w) if w.is_finite() && w >= 0.0 => Ok(w),
                _ => Err(format!(
                    "sample weight must be a finite number >= 0, got `{v}`"
                )),
            }
        })
        .map_err(|m| t.error_at(r as usize, name, m))?;
        out.push(*w);
    }
    Ok(out)
}

/// The integer values of column `name` at `rows`; with `empty_is_never`, an empty cell is
/// [`crate::NEVER`] (a label that never arrived). Anything else that is not an integer is an
/// error naming the row.
fn int_column(
    t: &RawTable,
    origin: &str,
    name: &str,
    what: &str,
    rows: &[u32],
    empty_is_never: bool,
) -> Result<Vec<i64>, DataError> {
    let col = t.require(name, origin, what)?;
    let mut cache: Vec<Option<i64>> = vec![None; col.dict.len()];
    let mut out = Vec::with_capacity(rows.len());
    for &r in rows {
        let c = col.codes[r as usize];
        let x = cached(&mut cache, c, || {
            let v = col.dict[c as usize].trim();
            if empty_is_never && v.is_empty() {
                return Ok(crate::NEVER);
            }
            v.parse::<i64>()
                .map_err(|_| format!("{what}: not an integer time: `{v}`"))
        })
        .map_err(|m| t.error_at(r as usize, name, m))?;
        out.push(*x);
    }
    Ok(out)
}

/// What the checks of an encoded training split need, summed over its parts: rows per domain,
/// positives per task and OOV ids per categorical and multi-hot column.
#[derive(Debug, Default, Clone)]
pub(crate) struct TrainSummary {
    rows: usize,
    domain_counts: Vec<usize>,
    positives: Vec<usize>,
    oov_cat: Vec<u64>,
    oov_multi: Vec<u64>,
}

impl TrainSummary {
    /// Adds the rows of `part` (a training split or a chunk of one).
    pub(crate) fn add(&mut self, part: &EncodedData, n_domains: usize) {
        fn add_to<T: std::ops::AddAssign + Copy>(acc: &mut Vec<T>, xs: impl Iterator<Item = T>) {
            for (i, x) in xs.enumerate() {
                match acc.get_mut(i) {
                    Some(a) => *a += x,
                    None => acc.push(x),
                }
            }
        }
        self.rows += part.len();
        add_to(
            &mut self.domain_counts,
            part.domain_counts(n_domains).into_iter(),
        );
        add_to(
            &mut self.positives,
            part.labels
                .iter()
                .map(|l| l.iter().filter(|&&y| y > 0.5).count()),
        );
        add_to(
            &mut self.oov_cat,
            part.cat
                .iter()
                .map(|c| c.iter().filter(|&&x| x == OOV).count() as u64),
        );
        add_to(
            &mut self.oov_multi,
            part.multi
                .iter()
                .map(|j| j.values.iter().filter(|&&x| x == OOV).count() as u64),
        );
    }

    /// Checks that every domain and both classes of every task occur in the training split,
    /// and returns `schema` with each field's `n_oov_train` filled in.
    pub(crate) fn finish(&self, schema: Schema) -> Result<Schema, DataError> {
        let n = schema.n_domains();
        let dc = (0..n).map(|d| self.domain_counts.get(d).copied().unwrap_or(0));
        if let Some(i) = dc.clone().position(|c| c == 0) {
            return Err(DataError::EmptyDomain {
                domain: schema.domains[i].clone(),
                index: i,
            });
        }
        for (i, task) in schema.spec.tasks.iter().enumerate() {
            let pos = self.positives.get(i).copied().unwrap_or(0);
            if pos == 0 || pos == self.rows {
                return Err(DataError::SingleClass {
                    task: task.name.clone(),
                    value: if pos == 0 { 0.0 } else { 1.0 },
                });
            }
        }
        let (mut cat, mut multi) = (self.oov_cat.iter(), self.oov_multi.iter());
        let mut fields = schema.fields;
        for ff in &mut fields {
            ff.n_oov_train = match ff.kind {
                FieldKind::Categorical => cat.next().copied().unwrap_or(0),
                FieldKind::MultiHot => multi.next().copied().unwrap_or(0),
                // sequence fields are fitted as categorical slot fields
                FieldKind::Numeric | FieldKind::Sequence => 0,
            };
        }
        Ok(Schema::new(
            schema.spec,
            fields,
            schema.domains,
            schema.tasks,
        ))
    }
}

/// Fits the schema on counts gathered chunk by chunk (the out-of-core path); `n_oov_train` is
/// left at 0 ([`TrainSummary::finish`] fills it in).
pub(crate) fn fit_streamed(
    spec: &SchemaSpec,
    origin: &str,
    counts: &StreamedCounts,
) -> Result<(Schema, Vocabs), DataError> {
    fit_derived(spec, origin, &FitRows::Streamed(counts)).map(|(s, v, _)| (s, v))
}

/// Fits the schema on `splits[0]` (train) and encodes all three splits with the fitted
/// [`Encoder`]; checks that every domain and both classes of every task occur in train.
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
    let (schema, vocabs, derived) = fit_derived(spec, origin, &FitRows::Table { t, train })?;
    let enc = Encoder::with_derived(schema, vocabs, derived);
    let tr = enc.encode(origin, t, train, Labels::Read)?;
    let mut summary = TrainSummary::default();
    summary.add(&tr, enc.schema.n_domains());
    let schema = summary.finish(enc.schema.clone())?;
    let va = enc.encode(origin, t, &splits[1], Labels::Read)?;
    let te = enc.encode(origin, t, &splits[2], Labels::Read)?;
    let vocabs = enc.vocabs;
    Ok((schema, vocabs, [tr, va, te]))
}
