//! The declared schema ([`SchemaSpec`], written by humans in TOML) and the fitted schema
//! ([`Schema`], frozen after fitting on the training split, written as `schema.json`).
//!
//! The spec says which raw columns become which features, how the domain index and the task
//! labels are derived, and which column groups rows for gAUC. Parsing rejects unknown keys
//! (naming the key and the accepted ones) and [`SchemaSpec::validate`] rejects inconsistent specs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::DataError;

fn one() -> u32 {
    1
}

/// The declared schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaSpec {
    /// Feature fields, in model order.
    pub fields: Vec<FieldSpec>,
    /// How each row's domain index is derived.
    pub domain: DomainSpec,
    /// Binary tasks.
    pub tasks: Vec<TaskSpec>,
    /// Column (or field name) that groups rows for gAUC, e.g. `"user_id"`.
    #[serde(default)]
    pub group: Option<String>,
    /// Integer event-time column (e.g. Unix seconds): stream training orders rows by it and cuts
    /// its windows on it. Read only with labels (training data), like the task columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// Per-row sample weight column: a finite number ≥ 0 that multiplies every task's loss on
    /// the row in training (evaluation metrics stay unweighted). Read only with labels
    /// (training data), like the task columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<String>,
    /// Similarity encoding of two fields' pre-trained vectors (see [`crate::pretrained`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similarity: Option<crate::pretrained::SimilaritySpec>,
    /// Semantic IDs: LSH codes of a field's pre-trained vectors (see [`crate::pretrained`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semantic_id: Option<crate::pretrained::SemanticIdSpec>,
}

/// One feature field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// Field name (unique).
    pub name: String,
    /// Source column; defaults to `name`.
    #[serde(default)]
    pub column: Option<String>,
    /// Kind of feature.
    pub kind: FieldKind,
    /// Values seen fewer times than this in the training split map to OOV (id 1).
    #[serde(default = "one")]
    pub min_count: u32,
    /// Embedding dimension override.
    #[serde(default)]
    pub dim: Option<usize>,
    /// Embedding table shared with other fields; defaults to the field's own table (`name`).
    #[serde(default)]
    pub table: Option<String>,
    /// Multi-hot separator, default `"|"`.
    #[serde(default)]
    pub sep: Option<String>,
    /// Multi-hot truncation: keep the first `max_len` values of a row. Sequence fields: the
    /// number of behaviour slots (required); a longer list keeps its `max_len` most recent.
    #[serde(default)]
    pub max_len: Option<usize>,
    /// Sequence fields: column of the behaviours' integer timestamps, a list aligned with the
    /// ids (same separator and length).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_column: Option<String>,
    /// Sequence fields: integer column holding the target's time (same clock as
    /// `time_column`); defaults to the schema's `time`. Read for every row, records to score
    /// included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_time: Option<String>,
    /// Sequence fields: where the padding goes, `"right"` (default) or `"left"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub padding: Option<Padding>,
    /// Sequence fields: how the model's input layer encodes the behaviours, `"mean"` (default),
    /// `"din"` or `"tim"` (see [`SeqEncoder`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder: Option<SeqEncoder>,
    /// Sequence fields: the categorical field holding the target item (DIN and TIM attend to
    /// it); defaults to the categorical field that reads the sequence's table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Numeric transform, default `"none"`.
    #[serde(default)]
    pub transform: Option<Transform>,
    /// How a numeric field reaches the model: `{ kind = "scalar" }` (the default: one dense
    /// input), `{ kind = "bucket", buckets = 10 }` or `{ kind = "mnse", bases = [2, 3, 10] }`
    /// (see [`NumericEncoding`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<NumericEncoding>,
    /// Roles of the field for models (e.g. `["prior", "user"]`).
    #[serde(default)]
    pub roles: Vec<FieldRole>,
    /// Fixed pre-trained vectors keyed by this categorical field's raw value (see
    /// [`crate::pretrained`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretrained: Option<crate::pretrained::PretrainedSpec>,
}

impl FieldSpec {
    /// The source column.
    pub fn column(&self) -> &str {
        self.column.as_deref().unwrap_or(&self.name)
    }
    /// The embedding table name.
    pub fn table(&self) -> &str {
        self.table.as_deref().unwrap_or(&self.name)
    }
    /// The multi-hot separator.
    pub fn sep(&self) -> &str {
        self.sep.as_deref().unwrap_or("|")
    }
    /// The names of the fitted slot fields of a sequence field, in fitted order: the items
    /// `<name>.0 …`, then (TIM) the positions `<name>.pos.0 …` and intervals `<name>.dt.0 …`.
    pub fn slot_names(&self) -> Vec<(String, SeqPart, usize)> {
        let l = self.max_len.unwrap_or(0);
        let mut parts = vec![SeqPart::Item];
        if self.encoder == Some(SeqEncoder::Tim) {
            parts.extend([SeqPart::Position, SeqPart::Interval]);
        }
        let n = &self.name;
        parts
            .into_iter()
            .flat_map(|p| {
                (0..l).map(move |k| {
                    let name = match p {
                        SeqPart::Item => format!("{n}.{k}"),
                        SeqPart::Position => format!("{n}.pos.{k}"),
                        SeqPart::Interval => format!("{n}.dt.{k}"),
                    };
                    (name, p, k)
                })
            })
            .collect()
    }
    /// The target-time column of a sequence field (`target_time`, else the schema's `time`).
    pub fn target_time_column<'a>(&'a self, spec: &'a SchemaSpec) -> Option<&'a str> {
        self.target_time.as_deref().or(spec.time.as_deref())
    }
}

/// Kind of a feature field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    /// One id per row.
    Categorical,
    /// A variable-length list of ids per row.
    MultiHot,
    /// One real number per row.
    Numeric,
    /// A user's behaviour sequence: a list of ids, oldest first, with optional aligned
    /// timestamps. Fitted as `max_len` categorical slot fields (see [`SeqSlot`]).
    Sequence,
}

/// Where a sequence field puts its padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    /// Slots hold the behaviours most recent first, then PAD: `[b_newest, …, b_oldest, PAD…]`.
    #[default]
    Right,
    /// PAD first, then the behaviours oldest first: `[PAD…, b_oldest, …, b_newest]`.
    Left,
}

/// How the input layer encodes a sequence field (`mdrec_nn::sequence`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeqEncoder {
    /// Mean of the behaviour embeddings (padding excluded), as multi-hot pooling.
    #[default]
    Mean,
    /// DIN target attention (Zhou et al., KDD 2018).
    Din,
    /// TIM, the Temporal Interest Module (Eq. 1 of Pan et al., KDD 2024; Zhou et al., WWW 2024):
    /// needs `time_column`.
    Tim,
}

/// What a categorical slot field fitted from a sequence field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeqPart {
    /// The behaviour's id (the sequence's table, PAD for an empty slot).
    Item,
    /// Its recency rank: id `2 + k` for the k-th most recent behaviour (table `<name>.pos`).
    Position,
    /// Its time-interval bucket to the target ([`interval_bucket`], table `<name>.dt`).
    Interval,
}

/// The slot of a sequence field that a fitted categorical field holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqSlot {
    /// The sequence field's name.
    pub sequence: String,
    /// What the slot holds.
    pub part: SeqPart,
    /// The slot's index, `0..max_len`.
    pub slot: usize,
}

/// Buckets of the time interval between a behaviour and its target.
pub const INTERVAL_BUCKETS: u32 = 32;

/// The interval bucket of `dt = target time − behaviour time` (`dt ≥ 1`, any clock unit):
/// `floor(log2(dt))`, capped at `INTERVAL_BUCKETS − 1`; its id is `2 +` the bucket. With Unix
/// seconds, bucket 16 is about 18 hours to 36 hours, bucket 24 about 6.5 to 13 months.
pub fn interval_bucket(dt: i64) -> u32 {
    debug_assert!(dt >= 1);
    (63 - dt.max(1).leading_zeros()).min(INTERVAL_BUCKETS - 1)
}

/// Role of a field, used by models that treat some fields specially.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldRole {
    /// A prior feature (e.g. user / item id for domain-prior models).
    Prior,
    /// Describes the user.
    User,
    /// Describes the item.
    Item,
    /// Describes the item's author.
    Author,
    /// Describes the domain.
    Domain,
    /// Describes the context.
    Context,
}

/// Numeric transform, fitted on the training split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    /// Raw value.
    None,
    /// `(x - min) / (max - min)` with train min/max (0 when max == min); not clipped.
    MinMax,
    /// `ln(1 + x)`; `x <= -1` is an error.
    Log1p,
    /// `(x - mean) / std` with train mean/std (std 0 is treated as 1).
    Standard,
}

fn ten() -> usize {
    10
}

fn default_bases() -> Vec<u32> {
    vec![2, 3, 10]
}

/// How a numeric field reaches the model (§3.2 of Pan et al., "Ads Recommendation in a
/// Collapsed and Entangled World", KDD 2024).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum NumericEncoding {
    /// One dense input: the value after the field's `transform`.
    Scalar,
    /// Equal-frequency bucketing fitted on the training split: the field becomes a categorical
    /// field (table `<name>`) whose id is the value's bucket. Ties keep a value in one bucket,
    /// so a field with few distinct values gets fewer buckets than asked for.
    Bucket {
        /// Buckets asked for (at least 2).
        #[serde(default = "ten")]
        buckets: usize,
    },
    /// Multiple Numeral Systems Encoding (the paper's Eq. 2): the integer `floor(x)` of the raw
    /// value is written in every base of `bases`; digit `d` at position `k` of base `b` is one
    /// learnable embedding; the embeddings of one base are pooled, and the bases are
    /// concatenated (`pool = "concat"`, Eq. 2) or summed into one vector (`pool = "sum"`).
    Mnse {
        /// Numeral systems (each at least 2), e.g. `[2, 3, 10]`.
        #[serde(default = "default_bases")]
        bases: Vec<u32>,
        /// Digits per base; by default each base gets the digits the largest training value
        /// needs. Larger values saturate to the largest code of that width.
        #[serde(default)]
        width: Option<usize>,
        /// How the bases are combined.
        #[serde(default)]
        pool: MnsePool,
    },
}

/// How MNSE combines its bases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MnsePool {
    /// One embedded field per base (`<name>.mnse<b>`), concatenated: Eq. 2's `[·, ·, …]`.
    #[default]
    Concat,
    /// One embedded field (`<name>.mnse`) pooling the codes of every base together.
    Sum,
}

impl NumericEncoding {
    /// Names of the embedded fields (= their tables) this encoding gives field `name`; empty
    /// for the scalar encoding.
    pub fn embedded_names(&self, name: &str) -> Vec<String> {
        match self {
            NumericEncoding::Scalar => vec![],
            NumericEncoding::Bucket { .. } => vec![name.to_string()],
            NumericEncoding::Mnse {
                bases,
                pool: MnsePool::Concat,
                ..
            } => bases.iter().map(|b| format!("{name}.mnse{b}")).collect(),
            NumericEncoding::Mnse {
                pool: MnsePool::Sum,
                ..
            } => vec![format!("{name}.mnse")],
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        match self {
            NumericEncoding::Scalar => Ok(()),
            NumericEncoding::Bucket { buckets } => {
                if *buckets < 2 {
                    return Err(format!(
                        "encoding.buckets must be at least 2, got {buckets}"
                    ));
                }
                Ok(())
            }
            NumericEncoding::Mnse { bases, width, .. } => {
                if bases.is_empty() {
                    return Err("encoding.bases must not be empty".into());
                }
                if let Some(b) = bases.iter().find(|b| !(2..=1000).contains(*b)) {
                    return Err(format!("encoding.bases: base {b} is not in 2..=1000"));
                }
                let set: BTreeSet<u32> = bases.iter().copied().collect();
                if set.len() != bases.len() {
                    return Err(format!("encoding.bases {bases:?} repeats a base"));
                }
                if let Some(w) = width {
                    if !(1..=64).contains(w) {
                        return Err(format!("encoding.width must be in 1..=64, got {w}"));
                    }
                }
                Ok(())
            }
        }
    }
}

/// The digits of `n` in `base`, least significant first, exactly `width` of them; `n` larger
/// than the largest `width`-digit number saturates to it (every digit `base - 1`). The paper's
/// example: 51 in base 2 is `[1, 1, 0, 0, 1, 1]`, in base 3 with width 6 `[0, 2, 2, 1, 0, 0]`
/// (positions 1..6; the paper writes them most significant first).
pub fn mnse_digits(n: u64, base: u32, width: usize) -> Vec<u32> {
    let b = u64::from(base);
    let max = (0..width).try_fold(1u64, |acc, _| acc.checked_mul(b));
    let mut n = match max {
        Some(m) => n.min(m - 1),
        None => n,
    };
    (0..width)
        .map(|_| {
            let d = (n % b) as u32;
            n /= b;
            d
        })
        .collect()
}

/// Digits `n` needs in `base` (at least 1).
pub fn mnse_width(n: u64, base: u32) -> usize {
    let b = u64::from(base);
    let (mut n, mut w) = (n / b, 1);
    while n > 0 {
        n /= b;
        w += 1;
    }
    w
}

/// How the domain index of a row is derived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainSpec {
    /// Source column.
    pub column: String,
    /// Raw value -> domain index; `None` = the values of the column seen in the training split,
    /// in sorted order (numeric order when all values are integers).
    #[serde(default)]
    pub map: Option<BTreeMap<String, u32>>,
    /// Domain names by index; defaults to the raw values.
    #[serde(default)]
    pub names: Option<Vec<String>>,
}

/// One binary task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Task name.
    pub name: String,
    /// Source column.
    pub column: String,
    /// How the label is derived from the column.
    pub rule: LabelRule,
    /// Integer column holding when the row's positive label became known (same clock as the
    /// schema's `time`; empty for a row that never turned positive): delayed feedback in stream
    /// training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_time: Option<String>,
}

/// Label rule: TOML `rule = "binary"`, `{ gt = 3 }`, `{ ge = 4 }` or `{ eq = 1 }`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelRule {
    /// The column holds 0 or 1.
    Binary,
    /// Positive when the value is greater than the threshold.
    Gt(f64),
    /// Positive when the value is greater than or equal to the threshold.
    Ge(f64),
    /// Positive when the value equals the threshold.
    Eq(f64),
}

impl LabelRule {
    /// Applies the rule to a parsed value; `None` when `Binary` sees something other than 0/1.
    pub fn apply(&self, x: f64) -> Option<f32> {
        let b = match *self {
            LabelRule::Binary => {
                if x == 0.0 {
                    false
                } else if x == 1.0 {
                    true
                } else {
                    return None;
                }
            }
            LabelRule::Gt(t) => x > t,
            LabelRule::Ge(t) => x >= t,
            LabelRule::Eq(t) => x == t,
        };
        Some(if b { 1.0 } else { 0.0 })
    }
}

/// 1-based line of a byte offset.
fn line_of(s: &str, offset: usize) -> usize {
    s.as_bytes()[..offset.min(s.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

impl SchemaSpec {
    fn validate_sequence(&self, f: &FieldSpec) -> Result<(), String> {
        match f.max_len {
            None => return Err("a sequence field needs max_len (its number of slots)".into()),
            Some(l) if l > 4096 => return Err(format!("max_len {l} is above 4096")),
            _ => {}
        }
        if f.encoder == Some(SeqEncoder::Tim) && f.time_column.is_none() {
            return Err("encoder = \"tim\" needs time_column (its time-interval encoding)".into());
        }
        if f.time_column.is_some() && f.target_time_column(self).is_none() {
            return Err(
                "time_column needs the target's time: set target_time or the schema's time".into(),
            );
        }
        if let Some(t) = &f.target {
            match self.fields.iter().find(|g| &g.name == t) {
                Some(g) if g.kind == FieldKind::Categorical && g.encoding.is_none() => {
                    if g.dim != f.dim {
                        return Err(format!(
                            "target `{t}` has dim {:?}, the sequence {:?}; DIN and TIM need one width",
                            g.dim, f.dim
                        ));
                    }
                }
                _ => return Err(format!("target `{t}` is not a categorical field")),
            }
        }
        let attends = matches!(f.encoder, Some(SeqEncoder::Din | SeqEncoder::Tim));
        if attends && self.sequence_target(f).is_none() {
            return Err(format!(
                "encoder `{}` attends to a target item: set target (a categorical field) or share table `{}` with one",
                if f.encoder == Some(SeqEncoder::Din) { "din" } else { "tim" },
                f.table()
            ));
        }
        Ok(())
    }

    /// The categorical field a sequence field attends to: `target`, else the categorical
    /// field reading the sequence's table (`None` when there is none).
    pub fn sequence_target(&self, f: &FieldSpec) -> Option<&FieldSpec> {
        match &f.target {
            Some(t) => self.fields.iter().find(|g| &g.name == t),
            None => self
                .fields
                .iter()
                .find(|g| g.kind == FieldKind::Categorical && g.table() == f.table()),
        }
    }

    /// Parses and validates a TOML schema; `origin` names it in errors (usually the file name).
    pub fn from_toml_str(s: &str, origin: &str) -> Result<Self, DataError> {
        let spec: SchemaSpec = toml::from_str(s).map_err(|e| {
            let at = match e.span() {
                Some(span) => format!("{origin}:{}", line_of(s, span.start)),
                None => origin.to_string(),
            };
            DataError::schema(at, e.message().trim_end_matches('.').to_string())
        })?;
        spec.validate(origin)?;
        Ok(spec)
    }

    /// Reads, parses and validates a TOML schema file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, DataError> {
        let path = path.as_ref();
        let s = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        Self::from_toml_str(&s, &path.display().to_string())
    }

    /// Canonical JSON (used for hashes and cache keys).
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(self).expect("schema spec serializes")
    }

    /// Checks the spec for consistency.
    pub fn validate(&self, origin: &str) -> Result<(), DataError> {
        let err = |msg: String| Err(DataError::schema(origin, msg));
        if self.fields.is_empty() {
            return err("no fields declared".into());
        }
        if self.tasks.is_empty() {
            return err("no tasks declared".into());
        }
        let mut names = BTreeSet::new();
        // table -> (kind class, min_count, dim, first field)
        let mut tables: BTreeMap<&str, (bool, u32, Option<usize>, &str)> = BTreeMap::new();
        // (embedded field = table name, numeric field) of bucket and MNSE encodings
        let mut embedded_tables: Vec<(String, &String)> = Vec::new();
        for f in &self.fields {
            let n = &f.name;
            if n.is_empty() {
                return err("a field has an empty name".into());
            }
            if !names.insert(n.as_str()) {
                return err(format!("field `{n}`: duplicate field name"));
            }
            if f.min_count == 0 {
                return err(format!("field `{n}`: min_count must be at least 1"));
            }
            if f.dim == Some(0) {
                return err(format!("field `{n}`: dim must be at least 1"));
            }
            if f.kind != FieldKind::Numeric && f.transform.is_some() {
                return err(format!(
                    "field `{n}`: transform is only valid for numeric fields (kind is {:?})",
                    f.kind
                )
                .to_lowercase());
            }
            let list = matches!(f.kind, FieldKind::MultiHot | FieldKind::Sequence);
            if !list && (f.sep.is_some() || f.max_len.is_some()) {
                return err(format!(
                    "field `{n}`: sep and max_len are only valid for multi_hot and sequence fields"
                ));
            }
            if f.kind != FieldKind::Sequence
                && (f.time_column.is_some()
                    || f.target_time.is_some()
                    || f.padding.is_some()
                    || f.encoder.is_some()
                    || f.target.is_some())
            {
                return err(format!(
                    "field `{n}`: time_column, target_time, padding, encoder and target are only valid for sequence fields"
                ));
            }
            if f.kind == FieldKind::Sequence {
                if let Err(m) = self.validate_sequence(f) {
                    return err(format!("field `{n}`: {m}"));
                }
                for (s, _, _) in f.slot_names() {
                    embedded_tables.push((s, n));
                }
            }
            if f.sep.as_deref() == Some("") {
                return err(format!("field `{n}`: sep must not be empty"));
            }
            if f.max_len == Some(0) {
                return err(format!("field `{n}`: max_len must be at least 1"));
            }
            if f.kind != FieldKind::Numeric && f.encoding.is_some() {
                return err(format!(
                    "field `{n}`: encoding is only valid for numeric fields (kind is {:?})",
                    f.kind
                )
                .to_lowercase());
            }
            if f.kind == FieldKind::Numeric {
                let embedded = f.encoding.as_ref().map(|e| {
                    e.validate()
                        .map(|()| e.embedded_names(n))
                        .map_err(|m| format!("field `{n}`: {m}"))
                });
                let embedded = match embedded {
                    Some(Err(m)) => return err(m),
                    Some(Ok(v)) => v,
                    None => vec![],
                };
                if f.table.is_some() || f.min_count != 1 || (f.dim.is_some() && embedded.is_empty())
                {
                    return err(format!(
                        "field `{n}`: table and min_count are not valid for numeric fields (dim only with an embedding encoding)"
                    ));
                }
                for e in embedded {
                    embedded_tables.push((e, n));
                }
                continue;
            }
            let is_multi = f.kind == FieldKind::MultiHot;
            match tables.get(f.table()) {
                None => {
                    tables.insert(f.table(), (is_multi, f.min_count, f.dim, n));
                }
                Some(&(_, mc, dim, first)) => {
                    if dim != f.dim {
                        return err(format!(
                            "field `{n}`: shares table `{}` with field `{first}` but dim differs ({:?} vs {dim:?}); one table has one width",
                            f.table(),
                            f.dim
                        ));
                    }
                    if mc != f.min_count {
                        return err(format!(
                            "field `{n}`: shares table `{}` with field `{first}` but min_count differs ({} vs {mc})",
                            f.table(),
                            f.min_count
                        ));
                    }
                }
            }
        }
        for (e, n) in &embedded_tables {
            if tables.contains_key(e.as_str()) || (e != *n && names.contains(e.as_str())) {
                return err(format!(
                    "field `{n}`: its encoding's embedded field `{e}` collides with a field or table of that name"
                ));
            }
        }
        let mut tnames = BTreeSet::new();
        for t in &self.tasks {
            if t.name.is_empty() {
                return err("a task has an empty name".into());
            }
            if !tnames.insert(t.name.as_str()) {
                return err(format!("task `{}`: duplicate task name", t.name));
            }
            if let LabelRule::Gt(x) | LabelRule::Ge(x) | LabelRule::Eq(x) = t.rule {
                if !x.is_finite() {
                    return err(format!("task `{}`: threshold must be finite", t.name));
                }
            }
        }
        if let Some(map) = &self.domain.map {
            if map.is_empty() {
                return err("domain.map is empty".into());
            }
            let n = map.values().max().copied().unwrap_or(0) as usize + 1;
            let used: BTreeSet<u32> = map.values().copied().collect();
            for i in 0..n as u32 {
                if !used.contains(&i) {
                    return err(format!(
                        "domain.map: domain index {i} is not used (indices must be 0..{n})"
                    ));
                }
            }
            if let Some(names) = &self.domain.names {
                if names.len() != n {
                    return err(format!(
                        "domain.names has {} names but domain.map defines {n} domains",
                        names.len()
                    ));
                }
            }
        }
        if let Some(names) = &self.domain.names {
            let set: BTreeSet<&String> = names.iter().collect();
            if set.len() != names.len() {
                return err("domain.names contains duplicates".into());
            }
        }
        if let Some(g) = &self.group {
            if g.is_empty() {
                return err("group must not be empty".into());
            }
        }
        crate::pretrained::validate(self).or_else(err)
    }
}

/// min / max / mean / std (population) of a numeric field over the training split, raw values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NumericStats {
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
    /// Mean.
    pub mean: f64,
    /// Population standard deviation.
    pub std: f64,
}

impl NumericStats {
    /// Applies `t` with these statistics; `None` when the value is outside the transform's domain.
    pub fn transform(&self, t: Transform, x: f64) -> Option<f64> {
        let y = match t {
            Transform::None => x,
            Transform::MinMax => {
                let r = self.max - self.min;
                if r > 0.0 {
                    (x - self.min) / r
                } else {
                    0.0
                }
            }
            Transform::Log1p => {
                if x <= -1.0 {
                    return None;
                }
                x.ln_1p()
            }
            Transform::Standard => {
                let s = if self.std > 0.0 { self.std } else { 1.0 };
                (x - self.mean) / s
            }
        };
        y.is_finite().then_some(y)
    }
}

/// A fitted field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FittedField {
    /// Field name.
    pub name: String,
    /// Kind.
    pub kind: FieldKind,
    /// Embedding table (fields sharing a table share the vocabulary).
    pub table: String,
    /// Vocabulary size of the table incl. PAD = 0 and OOV = 1; 0 for numeric.
    pub vocab_size: usize,
    /// Embedding dimension override.
    pub dim: Option<usize>,
    /// Roles.
    pub roles: Vec<FieldRole>,
    /// Statistics of numeric fields.
    pub stats: Option<NumericStats>,
    /// Training rows (categorical) or values (multi-hot) of this field mapped to OOV.
    pub n_oov_train: u64,
    /// How this embedded field codes a numeric field's value (bucket and MNSE encodings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<NumericCode>,
    /// The sequence slot this categorical field holds (fields fitted from a sequence field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<SeqSlot>,
}

/// How an embedded field made from a numeric field turns the raw value `x` into ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NumericCode {
    /// Equal-frequency buckets: id = 2 + the number of `boundaries` (ascending, fitted on the
    /// training split) that are `<= x`.
    Bucket {
        /// The first value of every bucket but the first.
        boundaries: Vec<f64>,
    },
    /// MNSE: the digits of `floor(x)` (`x >= 0`) in each `(base, width)`, least significant
    /// first; digit `d` at position `k` (from 0) of the `i`-th base has id
    /// `2 + Σ_{j<i} base_j·width_j + k·base_i + d`.
    Digits {
        /// `(base, width)` pairs this field holds.
        bases: Vec<(u32, usize)>,
    },
}

impl NumericCode {
    /// Vocabulary size incl. PAD and OOV.
    pub fn vocab_size(&self) -> usize {
        match self {
            NumericCode::Bucket { boundaries } => boundaries.len() + 3,
            NumericCode::Digits { bases } => {
                2 + bases.iter().map(|&(b, w)| b as usize * w).sum::<usize>()
            }
        }
    }

    /// The ids of raw value `x` (one for a bucket, Σ widths for MNSE); an error for MNSE on a
    /// negative value.
    pub fn ids(&self, x: f64) -> Result<Vec<u32>, String> {
        match self {
            NumericCode::Bucket { boundaries } => {
                Ok(vec![2 + boundaries.partition_point(|b| *b <= x) as u32])
            }
            NumericCode::Digits { bases } => {
                if x < 0.0 {
                    return Err(format!("MNSE codes non-negative values, got {x}"));
                }
                let n = x.floor().min(u64::MAX as f64) as u64;
                let mut out = Vec::new();
                let mut off = 2u32;
                for &(b, w) in bases {
                    for (k, d) in mnse_digits(n, b, w).into_iter().enumerate() {
                        out.push(off + k as u32 * b + d);
                    }
                    off += b * w as u32;
                }
                Ok(out)
            }
        }
    }
}

/// The fitted schema, frozen after fitting on the training split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schema {
    /// The declared schema.
    pub spec: SchemaSpec,
    /// Fitted fields, same order as `spec.fields`.
    pub fields: Vec<FittedField>,
    /// Domain names, index = domain id.
    pub domains: Vec<String>,
    /// Task names.
    pub tasks: Vec<String>,
    /// First 16 hex chars of the sha256 of the canonical JSON of the other members.
    pub hash: String,
}

impl Schema {
    /// Builds a schema and computes its hash.
    pub fn new(
        spec: SchemaSpec,
        fields: Vec<FittedField>,
        domains: Vec<String>,
        tasks: Vec<String>,
    ) -> Self {
        let mut s = Schema {
            spec,
            fields,
            domains,
            tasks,
            hash: String::new(),
        };
        s.hash = s.compute_hash();
        s
    }

    /// The hash of everything but `hash`.
    pub fn compute_hash(&self) -> String {
        let v = serde_json::json!({
            "spec": self.spec, "fields": self.fields, "domains": self.domains, "tasks": self.tasks,
        });
        let json = serde_json::to_string(&v).expect("schema serializes");
        hex(&Sha256::digest(json.as_bytes()))[..16].to_string()
    }

    fn of_kind(&self, k: FieldKind) -> Vec<&FittedField> {
        self.fields.iter().filter(|f| f.kind == k).collect()
    }
    /// Categorical fields in schema order.
    pub fn categorical_fields(&self) -> Vec<&FittedField> {
        self.of_kind(FieldKind::Categorical)
    }
    /// Multi-hot fields in schema order.
    pub fn multi_hot_fields(&self) -> Vec<&FittedField> {
        self.of_kind(FieldKind::MultiHot)
    }
    /// Numeric fields in schema order.
    pub fn numeric_fields(&self) -> Vec<&FittedField> {
        self.of_kind(FieldKind::Numeric)
    }
    /// Number of domains.
    pub fn n_domains(&self) -> usize {
        self.domains.len()
    }
    /// Number of tasks.
    pub fn n_tasks(&self) -> usize {
        self.tasks.len()
    }
    /// Pretty JSON, byte-identical across runs for the same inputs.
    pub fn to_json_pretty(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("schema serializes");
        s.push('\n');
        s
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_table_with_two_widths_is_an_error() {
        let toml = r#"
[[fields]]
name = "a"
kind = "categorical"
table = "t"
dim = 8
[[fields]]
name = "b"
kind = "categorical"
table = "t"
[domain]
column = "d"
[[tasks]]
name = "click"
column = "c"
rule = "binary"
"#;
        let err = SchemaSpec::from_toml_str(toml, "s.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("field `b`") && err.contains("dim differs"),
            "{err}"
        );
    }

    const OK: &str = r#"
group = "user_id"
[domain]
column = "d"
[[fields]]
name = "user_id"
kind = "categorical"
roles = ["prior", "user"]
[[fields]]
name = "price"
kind = "numeric"
transform = "log1p"
[[fields]]
name = "tags"
kind = "multi_hot"
max_len = 3
[[tasks]]
name = "click"
column = "rating"
rule = { gt = 3 }
[[tasks]]
name = "buy"
column = "buy"
rule = "binary"
"#;

    #[test]
    fn parses_a_valid_spec() {
        let s = SchemaSpec::from_toml_str(OK, "s.toml").unwrap();
        assert_eq!(s.fields.len(), 3);
        assert_eq!(s.fields[0].min_count, 1);
        assert_eq!(s.fields[0].roles, vec![FieldRole::Prior, FieldRole::User]);
        assert_eq!(s.fields[2].kind, FieldKind::MultiHot);
        assert_eq!(s.fields[1].transform, Some(Transform::Log1p));
        assert_eq!(s.tasks[0].rule, LabelRule::Gt(3.0));
        assert_eq!(s.tasks[1].rule, LabelRule::Binary);
        assert_eq!(s.group.as_deref(), Some("user_id"));
    }

    #[test]
    fn unknown_key_names_key_accepted_keys_file_and_line() {
        let bad = OK.replace("max_len = 3", "max_len = 3\nmaxlen = 4");
        let e = SchemaSpec::from_toml_str(&bad, "my.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("my.toml:"), "{e}");
        assert!(e.contains("maxlen"), "{e}");
        assert!(e.contains("max_len") && e.contains("min_count"), "{e}");
        let line = bad.lines().position(|l| l.starts_with("maxlen")).unwrap() + 1;
        assert!(e.starts_with(&format!("my.toml:{line}:")), "{e}");
    }

    #[test]
    fn validation_errors() {
        let cases = [
            (
                OK.replace("name = \"price\"", "name = \"user_id\""),
                "duplicate field",
            ),
            (OK.replace("max_len = 3", "min_count = 0"), "min_count"),
            (
                OK.replace("roles = [\"prior\", \"user\"]", "transform = \"min_max\""),
                "transform is only valid for numeric",
            ),
            (
                OK.replace("[[tasks]]", "[[notasks]]"),
                "unknown field `notasks`",
            ),
            (
                OK.replace("kind = \"numeric\"", "kind = \"numerical\""),
                "numerical",
            ),
        ];
        for (s, want) in cases {
            let e = SchemaSpec::from_toml_str(&s, "x.toml")
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{e} !~ {want}");
            assert!(e.starts_with("x.toml"), "{e}");
        }
        let no_tasks = "tasks = []\n".to_string() + OK.split("[[tasks]]").next().unwrap();
        let e = SchemaSpec::from_toml_str(&no_tasks, "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no tasks"), "{e}");
    }

    #[test]
    fn transforms() {
        let st = NumericStats {
            min: 1.0,
            max: 5.0,
            mean: 3.0,
            std: 2.0,
        };
        assert_eq!(st.transform(Transform::MinMax, 3.0), Some(0.5));
        assert_eq!(st.transform(Transform::Standard, 5.0), Some(1.0));
        assert_eq!(st.transform(Transform::None, 7.0), Some(7.0));
        assert!((st.transform(Transform::Log1p, 1.0).unwrap() - 2f64.ln()).abs() < 1e-12);
        assert_eq!(st.transform(Transform::Log1p, -1.0), None);
    }
}
