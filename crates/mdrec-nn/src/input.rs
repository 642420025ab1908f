//! What a model is built for ([`ModelContext`]) and what it receives per batch ([`ModelInput`]).
//!
//! The embedded fields of a batch arrive as one flat tensor `emb: [B, Σ dim_f]` (categorical
//! fields first, then pooled multi-hot fields, each in schema order; [`FieldInfo::offset`] says
//! where a field starts). Numeric fields arrive as `dense: [B, n_numeric]`.
//!
//! Per-domain computation uses [`ModelInput::route`]: the model computes each domain's outputs on
//! that domain's rows only, and the router puts the rows back in batch order with one `cat` and
//! one `select`. The cost of a batch therefore does not grow with the number of domains.
//!
//! # Embedding sets (multi-embedding)
//!
//! A model may ask for extra *embedding sets* ([`EmbeddingSetSpec`]): copies of all (or some)
//! fields with their own tables (`<table>@<set>`), optionally of another width. They live in the
//! same embedding store, so they get the same sparse row-wise updates; the model receives each
//! set as `ModelInput::sets[k]` (`[B, width_k]`) and finds its fields in
//! `ModelContext::sets[k].fields` (offsets relative to the set). The base set stays
//! `ModelInput::emb`, so a model that asks for no sets sees nothing new.

use burn::tensor::{Device, Int, Tensor, TensorData};
use mdrec_data::{Batch, FieldKind, FieldRole, Schema, SeqPart};

use crate::embedding::{EmbeddingStore, LookupError};

/// One embedded field as a model sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldInfo {
    /// Field name from the schema.
    pub name: String,
    /// Embedding table the field reads (fields may share a table).
    pub table: String,
    /// Rows of the table (vocabulary size incl. PAD and OOV).
    pub vocab_size: usize,
    /// Embedding width.
    pub dim: usize,
    /// Offset of the field inside `ModelInput::emb`.
    pub offset: usize,
    /// True for a pooled multi-hot field.
    pub multi_hot: bool,
    /// Index of the field's column in `Batch::cat` (categorical) or `Batch::multi` (multi-hot).
    pub column: usize,
    /// Roles declared in the schema (prior, user, item, domain, ...).
    pub roles: Vec<FieldRole>,
}

/// The shapes a model is built for, derived from the fitted schema.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelContext {
    /// Embedded fields in input order.
    pub fields: Vec<FieldInfo>,
    /// Number of numeric (dense) inputs.
    pub n_numeric: usize,
    /// Domain names; index = domain id.
    pub domains: Vec<String>,
    /// Task names; index = task id (column of the logits).
    pub tasks: Vec<String>,
    /// Extra embedding sets the model asked for (empty for most models).
    pub sets: Vec<EmbeddingSet>,
    /// Behaviour sequences: each a group of slot fields of `fields` that
    /// [`crate::sequence::SequenceEncoders`] turns into one field before the model sees it
    /// (empty without sequence fields).
    pub sequences: Vec<SequenceInfo>,
}

/// A sequence field as the input layer sees it: its slot fields (indices into
/// [`ModelContext::fields`], slot order) and how it is encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceInfo {
    /// The sequence field's name.
    pub name: String,
    /// Its encoder.
    pub encoder: mdrec_data::SeqEncoder,
    /// The behaviour-id slots (PAD = 0 marks padding).
    pub items: Vec<usize>,
    /// The recency-rank slots (TIM only).
    pub positions: Vec<usize>,
    /// The time-interval-bucket slots (TIM only).
    pub intervals: Vec<usize>,
    /// The target item's field, if any (DIN and TIM need one).
    pub target: Option<usize>,
    /// The sequence's roles.
    pub roles: Vec<FieldRole>,
}

impl SequenceInfo {
    /// Every slot field of the sequence.
    pub fn slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.items
            .iter()
            .chain(&self.positions)
            .chain(&self.intervals)
            .copied()
    }
}

/// A model's request for one extra embedding set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EmbeddingSetSpec {
    /// Set name; its tables are `<table>@<name>`. Unique per model.
    pub name: String,
    /// Width of every field in this set; `None` keeps each field's schema width.
    pub dim: Option<usize>,
    /// Only fields carrying one of these roles (all fields when empty).
    pub roles: Vec<FieldRole>,
}

impl EmbeddingSetSpec {
    /// A full copy of every field at its schema width.
    pub fn copy(name: impl Into<String>) -> Self {
        EmbeddingSetSpec {
            name: name.into(),
            dim: None,
            roles: vec![],
        }
    }

    /// One full copy of every field per width in `dims`, named `<prefix>1`, `<prefix>2`, …
    /// (table 0 being the schema's own).
    pub fn tables(prefix: &str, dims: &[usize]) -> Vec<Self> {
        dims.iter()
            .enumerate()
            .map(|(i, &d)| EmbeddingSetSpec {
                name: format!("{prefix}{}", i + 1),
                dim: Some(d),
                roles: vec![],
            })
            .collect()
    }
}

/// An extra embedding set as a model sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingSet {
    /// Set name (see [`EmbeddingSetSpec::name`]).
    pub name: String,
    /// The set's fields; `offset` is relative to the set's tensor `ModelInput::sets[k]` and
    /// `table` is the set's own table name.
    pub fields: Vec<FieldInfo>,
}

impl EmbeddingSet {
    /// Width of the set's tensor.
    pub fn width(&self) -> usize {
        self.fields.iter().map(|f| f.dim).sum()
    }
}

impl FieldInfo {
    /// Whether the schema gives the field `role`.
    pub fn has_role(&self, role: FieldRole) -> bool {
        self.roles.contains(&role)
    }
}

impl ModelContext {
    /// Width of `ModelInput::emb`.
    pub fn emb_dim(&self) -> usize {
        self.fields.iter().map(|f| f.dim).sum()
    }

    /// Width of [`ModelInput::flat`]: embeddings followed by numeric inputs.
    pub fn input_dim(&self) -> usize {
        self.emb_dim() + self.n_numeric
    }

    /// Number of domains.
    pub fn n_domains(&self) -> usize {
        self.domains.len()
    }

    /// Number of tasks.
    pub fn n_tasks(&self) -> usize {
        self.tasks.len()
    }

    /// This context with the extra embedding sets of `specs` (replacing any it had).
    ///
    /// Errors name the set: an empty or duplicate name, a zero width, or roles no field has.
    pub fn with_sets(&self, specs: &[EmbeddingSetSpec]) -> Result<ModelContext, String> {
        let mut sets: Vec<EmbeddingSet> = Vec::with_capacity(specs.len());
        for spec in specs {
            if spec.name.is_empty() || spec.name.contains('@') {
                return Err(format!(
                    "embedding set name `{}` must be non-empty and without `@`",
                    spec.name
                ));
            }
            if sets.iter().any(|s| s.name == spec.name) {
                return Err(format!("embedding set `{}` is requested twice", spec.name));
            }
            if spec.dim == Some(0) {
                return Err(format!("embedding set `{}` has width 0", spec.name));
            }
            let mut fields = Vec::new();
            let mut offset = 0;
            let selected = |i: usize| {
                spec.roles.is_empty() || self.fields[i].roles.iter().any(|r| spec.roles.contains(r))
            };
            for (i, f) in self.fields.iter().enumerate() {
                // a sequence's slots go into the set only with everything its encoder reads
                let incomplete = self.sequences.iter().any(|s| {
                    s.slots().any(|j| j == i)
                        && !(s.slots().all(selected)
                            && (s.encoder == mdrec_data::SeqEncoder::Mean
                                || s.target.is_some_and(selected)))
                });
                if !selected(i) || incomplete {
                    continue;
                }
                let dim = spec.dim.unwrap_or(f.dim);
                fields.push(FieldInfo {
                    table: format!("{}@{}", f.table, spec.name),
                    dim,
                    offset,
                    ..f.clone()
                });
                offset += dim;
            }
            if fields.is_empty() {
                return Err(format!(
                    "embedding set `{}` selects fields with roles {:?}, but no field of the schema has one",
                    spec.name, spec.roles
                ));
            }
            sets.push(EmbeddingSet {
                name: spec.name.clone(),
                fields,
            });
        }
        Ok(ModelContext {
            sets,
            ..self.clone()
        })
    }

    /// Whether field `i` is a slot of a sequence.
    pub fn is_slot(&self, i: usize) -> bool {
        self.sequences.iter().any(|s| s.slots().any(|j| j == i))
    }

    /// Every field the embedding store serves, at its offset in the store's row: the base fields,
    /// then each set's fields after them.
    pub fn store_fields(&self) -> Vec<FieldInfo> {
        let mut out = self.fields.clone();
        let mut base = self.emb_dim();
        for s in &self.sets {
            out.extend(s.fields.iter().map(|f| FieldInfo {
                offset: base + f.offset,
                ..f.clone()
            }));
            base += s.width();
        }
        out
    }

    /// Index of the set named `name`.
    pub fn set_index(&self, name: &str) -> Option<usize> {
        self.sets.iter().position(|s| s.name == name)
    }

    /// Indices of the fields that carry `role`.
    pub fn fields_with_role(&self, role: FieldRole) -> Vec<usize> {
        (0..self.fields.len())
            .filter(|&i| self.fields[i].has_role(role))
            .collect()
    }

    /// Indices of the fields that carry any of `roles`, in field order, each once.
    pub fn fields_with_any_role(&self, roles: &[FieldRole]) -> Vec<usize> {
        (0..self.fields.len())
            .filter(|&i| roles.iter().any(|&r| self.fields[i].has_role(r)))
            .collect()
    }

    /// The context of a fitted schema: categorical fields, then multi-hot fields, each in
    /// schema order, with width `dim` where the schema gives one and `default_dim` otherwise;
    /// numeric fields as dense inputs.
    pub fn from_schema(schema: &Schema, default_dim: usize) -> ModelContext {
        let mut fields = Vec::new();
        let mut offset = 0;
        for (multi_hot, kind) in [(false, FieldKind::Categorical), (true, FieldKind::MultiHot)] {
            for (column, f) in schema.fields.iter().filter(|f| f.kind == kind).enumerate() {
                let dim = f.dim.unwrap_or(default_dim);
                fields.push(FieldInfo {
                    name: f.name.clone(),
                    table: f.table.clone(),
                    vocab_size: f.vocab_size,
                    dim,
                    offset,
                    multi_hot,
                    column,
                    roles: f.roles.clone(),
                });
                offset += dim;
            }
        }
        let sequences = sequences_of(schema, &fields);
        ModelContext {
            fields,
            sequences,
            n_numeric: schema
                .fields
                .iter()
                .filter(|f| f.kind == FieldKind::Numeric)
                .count(),
            domains: schema.domains.clone(),
            tasks: schema.tasks.clone(),
            sets: vec![],
        }
    }

    /// A context for `n_fields` categorical fields of width `dim` and vocabulary `vocab`
    /// (tests and benchmarks).
    pub fn uniform(
        n_fields: usize,
        vocab: usize,
        dim: usize,
        n_numeric: usize,
        n_domains: usize,
        n_tasks: usize,
    ) -> Self {
        let fields = (0..n_fields)
            .map(|i| FieldInfo {
                name: format!("f{i}"),
                table: format!("f{i}"),
                vocab_size: vocab,
                dim,
                offset: i * dim,
                multi_hot: false,
                column: i,
                roles: vec![],
            })
            .collect();
        ModelContext {
            fields,
            n_numeric,
            domains: (0..n_domains).map(|d| format!("d{d}")).collect(),
            tasks: (0..n_tasks).map(|t| format!("t{t}")).collect(),
            sets: vec![],
            sequences: vec![],
        }
    }
}

/// The sequences of a fitted schema over the context's `fields` (which hold every fitted
/// categorical field, slots included, under its fitted name).
fn sequences_of(schema: &Schema, fields: &[FieldInfo]) -> Vec<SequenceInfo> {
    let index = |name: &str| fields.iter().position(|f| f.name == name);
    let mut out: Vec<SequenceInfo> = Vec::new();
    for f in schema
        .spec
        .fields
        .iter()
        .filter(|f| f.kind == FieldKind::Sequence)
    {
        let mut s = SequenceInfo {
            name: f.name.clone(),
            encoder: f.encoder.unwrap_or_default(),
            items: vec![],
            positions: vec![],
            intervals: vec![],
            target: schema.spec.sequence_target(f).and_then(|t| index(&t.name)),
            roles: f.roles.clone(),
        };
        for ff in &schema.fields {
            let Some(slot) = ff.seq.as_ref().filter(|x| x.sequence == f.name) else {
                continue;
            };
            let Some(i) = index(&ff.name) else { continue };
            match slot.part {
                SeqPart::Item => s.items.push(i),
                SeqPart::Position => s.positions.push(i),
                SeqPart::Interval => s.intervals.push(i),
            }
        }
        out.push(s);
    }
    out
}

/// The model input of a batch on `device`, its embeddings looked up in `store` (`emb_buf` is
/// reused between batches). On an autodiff device `ModelInput::emb` (and every extra embedding
/// set) is a view of one `require_grad` leaf; see [`make_input_leaf`].
pub fn make_input(
    ctx: &ModelContext,
    store: &EmbeddingStore,
    batch: &Batch,
    emb_buf: &mut Vec<f32>,
    device: &Device,
) -> Result<ModelInput, LookupError> {
    make_input_leaf(ctx, store, batch, emb_buf, device).map(|(input, _)| input)
}

/// [`make_input`], also returning the leaf `[B, store width]` whose gradient the caller
/// scatters back to the embedding store. Without extra embedding sets the leaf is
/// `ModelInput::emb` itself; with sets, `emb` and `sets[k]` are column ranges of it.
pub fn make_input_leaf(
    ctx: &ModelContext,
    store: &EmbeddingStore,
    batch: &Batch,
    emb_buf: &mut Vec<f32>,
    device: &Device,
) -> Result<(ModelInput, Tensor<2>), LookupError> {
    store.lookup(batch, emb_buf)?;
    let b = batch.len;
    let mut leaf = tensor2(emb_buf.clone(), b, store.width(), device);
    if device.is_autodiff() {
        leaf = leaf.require_grad();
    }
    let (emb, sets) = if ctx.sets.is_empty() {
        (leaf.clone(), Vec::new())
    } else {
        let base = ctx.emb_dim();
        let mut at = base;
        let sets = ctx
            .sets
            .iter()
            .map(|s| {
                let t = leaf.clone().narrow(1, at, s.width());
                at += s.width();
                t
            })
            .collect();
        (leaf.clone().narrow(1, 0, base), sets)
    };
    let dense = (ctx.n_numeric > 0).then(|| tensor2(batch.num.clone(), b, ctx.n_numeric, device));
    let input = ModelInput {
        batch_size: b,
        emb,
        dense,
        domain: batch.domain.clone(),
        routing: Routing::new(&batch.domain, ctx.n_domains(), device),
        sets,
        seq_masks: seq_masks(ctx, batch, device),
    };
    Ok((input, leaf))
}

/// One `[B, max_len]` mask per sequence: 1 where the slot holds a behaviour, 0 for PAD.
pub fn seq_masks(ctx: &ModelContext, batch: &Batch, device: &Device) -> Vec<Tensor<2>> {
    let b = batch.len;
    let n_cat = batch.cat.len().checked_div(b).unwrap_or(0);
    ctx.sequences
        .iter()
        .map(|s| {
            let l = s.items.len();
            let mut m = Vec::with_capacity(b * l);
            for r in 0..b {
                m.extend(s.items.iter().map(|&i| {
                    let id = batch.cat[r * n_cat + ctx.fields[i].column];
                    if id == mdrec_data::PAD {
                        0.0
                    } else {
                        1.0
                    }
                }));
            }
            tensor2(m, b, l, device)
        })
        .collect()
}

fn tensor2(values: Vec<f32>, rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values, [rows, cols]), device)
}

/// Row indices of each domain in a batch, and the permutation that restores batch order.
#[derive(Debug, Clone)]
pub struct Routing {
    /// Rows of each domain (`None` when the domain has no rows in this batch).
    pub rows: Vec<Option<Tensor<1, Int>>>,
    /// Number of rows of each domain.
    pub counts: Vec<usize>,
    /// `inv[i]` = position of batch row `i` in the domain-sorted order; `None` when the batch
    /// is already in domain-sorted order (e.g. a single domain).
    pub inv: Option<Tensor<1, Int>>,
}

impl Routing {
    /// Build the routing of a batch from its host-side domain ids.
    pub fn new(domain: &[u32], n_domains: usize, device: &Device) -> Self {
        let mut lists: Vec<Vec<i64>> = vec![Vec::new(); n_domains];
        for (i, &d) in domain.iter().enumerate() {
            lists[d as usize].push(i as i64);
        }
        let counts: Vec<usize> = lists.iter().map(Vec::len).collect();
        let sorted = domain.windows(2).all(|w| w[0] <= w[1]);
        let inv = if sorted {
            None
        } else {
            let mut inv = vec![0i64; domain.len()];
            let mut pos = 0i64;
            for l in &lists {
                for &r in l {
                    inv[r as usize] = pos;
                    pos += 1;
                }
            }
            Some(int_tensor(inv, device))
        };
        let rows = lists
            .into_iter()
            .map(|l| (!l.is_empty()).then(|| int_tensor(l, device)))
            .collect();
        Routing { rows, counts, inv }
    }
}

fn int_tensor(v: Vec<i64>, device: &Device) -> Tensor<1, Int> {
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), device)
}

/// Everything a model receives for one batch.
#[derive(Debug, Clone)]
pub struct ModelInput {
    /// Number of rows.
    pub batch_size: usize,
    /// Embedded fields, `[B, Σ dim_f]` (see [`FieldInfo::offset`]).
    pub emb: Tensor<2>,
    /// Numeric inputs `[B, n_numeric]`, `None` when the schema has none.
    pub dense: Option<Tensor<2>>,
    /// Host copy of each row's domain, `[B]`.
    pub domain: Vec<u32>,
    /// Per-domain row routing.
    pub routing: Routing,
    /// The extra embedding sets, `sets[k]: [B, ModelContext::sets[k].width()]` (empty unless
    /// the model asked for sets).
    pub sets: Vec<Tensor<2>>,
    /// Per sequence of [`ModelContext::sequences`], `[B, max_len]`: 1 for a behaviour, 0 for
    /// padding (empty without sequences; the encoders consume them).
    pub seq_masks: Vec<Tensor<2>>,
}

impl ModelInput {
    /// An input without extra embedding sets, routed over `n_domains` (tests and tools; the
    /// trainer builds inputs from the embedding store).
    pub fn new(
        emb: Tensor<2>,
        dense: Option<Tensor<2>>,
        domain: Vec<u32>,
        n_domains: usize,
    ) -> Self {
        let device = emb.device();
        ModelInput {
            batch_size: domain.len(),
            routing: Routing::new(&domain, n_domains, &device),
            emb,
            dense,
            domain,
            sets: vec![],
            seq_masks: vec![],
        }
    }

    /// Embeddings and numeric inputs side by side: `[B, emb_dim + n_numeric]` (the usual MLP
    /// input, Scenario-Wise-Rec's `EmbeddingLayer` order).
    pub fn flat(&self) -> Tensor<2> {
        match &self.dense {
            Some(d) => Tensor::cat(vec![self.emb.clone(), d.clone()], 1),
            None => self.emb.clone(),
        }
    }

    /// The embedding of one field: `[B, dim_f]`.
    pub fn field(&self, ctx: &ModelContext, i: usize) -> Tensor<2> {
        let f = &ctx.fields[i];
        self.emb.clone().narrow(1, f.offset, f.dim)
    }

    /// Embedding set `k` followed by the numeric inputs: `[B, width_k + n_numeric]` (the
    /// [`flat`](Self::flat) input of an expert that reads set `k`).
    pub fn set_flat(&self, k: usize) -> Tensor<2> {
        match &self.dense {
            Some(d) => Tensor::cat(vec![self.sets[k].clone(), d.clone()], 1),
            None => self.sets[k].clone(),
        }
    }

    /// The base embeddings, every set and the numeric inputs side by side (a gate that reads
    /// every table): `[B, emb_dim + Σ width_k + n_numeric]`.
    pub fn flat_all(&self) -> Tensor<2> {
        if self.sets.is_empty() {
            return self.flat();
        }
        let mut parts = vec![self.emb.clone()];
        parts.extend(self.sets.iter().cloned());
        parts.extend(self.dense.iter().cloned());
        Tensor::cat(parts, 1)
    }

    /// The embedding of field `i` of set `k`: `[B, dim]`.
    pub fn set_field(&self, ctx: &ModelContext, k: usize, i: usize) -> Tensor<2> {
        let f = &ctx.sets[k].fields[i];
        self.sets[k].clone().narrow(1, f.offset, f.dim)
    }

    /// The rows of `x` (`[B, ...]`) that belong to domain `d`.
    pub fn rows_of<const D: usize>(&self, x: Tensor<D>, d: usize) -> Tensor<D> {
        if self.routing.counts[d] == self.batch_size {
            x
        } else {
            let rows = self.routing.rows[d]
                .clone()
                .expect("rows_of called for an empty domain");
            x.select(0, rows)
        }
    }

    /// Compute per-domain outputs on each domain's rows and return them in batch order.
    ///
    /// `f(d, self)` must return `[n_d, K]` for the rows of domain `d` (in batch order within
    /// the domain, as [`ModelInput::rows_of`] gives them). Empty domains are skipped.
    ///
    /// # Shapes
    /// - result: `[B, K]`
    pub fn route(&self, mut f: impl FnMut(usize) -> Tensor<2>) -> Tensor<2> {
        let parts: Vec<Tensor<2>> = (0..self.routing.counts.len())
            .filter(|&d| self.routing.counts[d] > 0)
            .map(&mut f)
            .collect();
        let joined = if parts.len() == 1 {
            parts.into_iter().next().expect("one part")
        } else {
            Tensor::cat(parts, 0)
        };
        match &self.routing.inv {
            Some(inv) => joined.select(0, inv.clone()),
            None => joined,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::cpu;
    use crate::init::tensor;

    #[test]
    fn roles_are_typed_and_select_fields_in_field_order() {
        let mut ctx = ModelContext::uniform(4, 10, 2, 0, 2, 1);
        ctx.fields[3].roles = vec![FieldRole::Prior, FieldRole::User];
        ctx.fields[1].roles = vec![FieldRole::Item];
        ctx.fields[2].roles = vec![FieldRole::Domain];
        assert_eq!(ctx.fields_with_role(FieldRole::Prior), [3]);
        assert!(
            ctx.fields[2].has_role(FieldRole::Domain) && !ctx.fields[2].has_role(FieldRole::Item)
        );
        // Any of several roles: field order, each field once.
        let roles = [FieldRole::User, FieldRole::Item, FieldRole::Prior];
        assert_eq!(ctx.fields_with_any_role(&roles), [1, 3]);
        // A set restricted to roles copies only those fields.
        let spec = EmbeddingSetSpec {
            name: "prior".into(),
            dim: None,
            roles: vec![FieldRole::Prior, FieldRole::Domain],
        };
        let with = ctx.with_sets(&[spec]).unwrap();
        let names: Vec<&str> = with.sets[0]
            .fields
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(names, ["f2", "f3"]);
    }

    #[test]
    fn route_restores_batch_order() {
        let dev = cpu();
        let domain = vec![2u32, 0, 2, 1, 0];
        let x = tensor((0..5).map(|i| i as f32).collect(), [5, 1], &dev);
        let input = ModelInput {
            batch_size: 5,
            emb: x.clone(),
            dense: None,
            domain: domain.clone(),
            routing: Routing::new(&domain, 3, &dev),
            sets: vec![],
            seq_masks: vec![],
        };
        // Each domain adds 100·d to its rows: the result must be x + 100·domain, in batch order.
        let out = input.route(|d| input.rows_of(x.clone(), d).add_scalar(100.0 * d as f32));
        let got = out.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(got, vec![200.0, 1.0, 202.0, 103.0, 4.0]);
    }

    #[test]
    fn embedding_sets_copy_fields_with_own_tables_after_the_base() {
        let mut ctx = ModelContext::uniform(3, 10, 4, 0, 2, 1);
        ctx.fields[0].roles = vec![FieldRole::User];
        ctx.fields[2].table = "f0".into(); // shares f0's table
        let specs = [
            EmbeddingSetSpec::copy("me1"),
            EmbeddingSetSpec {
                name: "prior".into(),
                dim: Some(8),
                roles: vec![FieldRole::User],
            },
        ];
        let ctx = ctx.with_sets(&specs).unwrap();
        assert_eq!(ctx.sets.len(), 2);
        assert_eq!(ctx.sets[0].width(), 12);
        assert_eq!(ctx.sets[1].width(), 8);
        let tables: Vec<&str> = ctx.sets[0]
            .fields
            .iter()
            .map(|f| f.table.as_str())
            .collect();
        assert_eq!(tables, ["f0@me1", "f1@me1", "f0@me1"]);
        let all = ctx.store_fields();
        let offsets: Vec<usize> = all.iter().map(|f| f.offset).collect();
        assert_eq!(offsets, [0, 4, 8, 12, 16, 20, 24]);
        assert_eq!(all[6].name, "f0");
        assert_eq!(all[6].dim, 8);
        // Bad requests are errors naming the set.
        let dup = [EmbeddingSetSpec::copy("a"), EmbeddingSetSpec::copy("a")];
        assert!(ctx.with_sets(&dup).unwrap_err().contains("`a`"));
        let none = [EmbeddingSetSpec {
            name: "p".into(),
            dim: None,
            roles: vec![FieldRole::Item],
        }];
        assert!(ctx.with_sets(&none).unwrap_err().contains("`p`"));
    }
}
