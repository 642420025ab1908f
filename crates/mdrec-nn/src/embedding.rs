//! The embedding store: mdrec's own sparse embedding tables.
//!
//! Embedding-heavy CTR training is dominated by the tables, and a dense optimizer over a table of
//! a million rows costs as much per step as the whole table (burn 194 samples/s, PyTorch 178/s in
//! the foundation measurements, against 9–16k/s with sparse rows). So tables live outside burn as
//! contiguous `Vec<f32>` rows with row-wise optimizer state, and each step:
//!
//! 1. [`EmbeddingStore::lookup`] gathers the batch's rows into one `[B, Σ dim_f]` buffer (mean or
//!    sum pooling for multi-hot fields), which the trainer turns into a leaf tensor with
//!    `require_grad`;
//! 2. after `backward`, [`EmbeddingStore::apply_gradient`] scatters the leaf's gradient into the
//!    rows the batch touched (duplicates accumulated) and applies the optimizer to those rows only.
//!
//! The optimizers are "lazy": a row's state only advances when the row is touched (like
//! PyTorch `SparseAdam` / TF `LazyAdam`; bias correction uses the global step as they do).
//! Weight decay, when set, is an L2 term on touched rows only. All scratch buffers are reused
//! across steps.

use mdrec_data::rng::Rng;
use mdrec_data::Batch;
use serde::{Deserialize, Serialize};

use crate::dynamic::{
    owns, shard_key, Dynamic, Eviction, NewRows, TablePolicy, TableStats, DEFAULT_ROW, NONE,
    RESERVED,
};
use crate::input::FieldInfo;

mod sharded;

/// Row-wise optimizer for embedding tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SparseOptimizer {
    /// Adam on touched rows (PyTorch `SparseAdam` semantics).
    #[default]
    Adam,
    /// Adam on every row at every step, untouched rows with a zero gradient plus the L2 term:
    /// `torch.optim.Adam` on a dense `nn.Embedding`, as the official M3oE / torch-rechub code
    /// trains. Rows of ids a batch does not hold keep moving (their moments decay, and weight
    /// decay pulls them through Adam's normalisation), so unseen ids drift from their
    /// initialisation. Costs a pass over every table per step.
    AdamDense,
    /// Adagrad on touched rows (PEPNet trains embeddings with Adagrad).
    Adagrad,
    /// Plain SGD.
    Sgd,
}

/// Pooling of a multi-hot field's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// Mean over the field's ids (zero vector for an empty list).
    #[default]
    Mean,
    /// Sum over the field's ids.
    Sum,
}

/// Embedding tables and their optimizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddingConfig {
    /// Default embedding width (a schema field's `dim` overrides it).
    pub dim: usize,
    /// Initial rows ~ N(0, init_std²) (reference code: 1e-4).
    pub init_std: f32,
    /// Row-wise optimizer.
    pub optimizer: SparseOptimizer,
    /// Learning rate; `None` = the dense learning rate.
    pub lr: Option<f64>,
    /// L2 penalty on touched rows; `None` = the dense weight decay.
    pub weight_decay: Option<f64>,
    /// Adam β₁.
    pub beta1: f64,
    /// Adam β₂.
    pub beta2: f64,
    /// Adam ε (PyTorch default 1e-8) / Adagrad ε (1e-10 in PyTorch; we use the same field).
    pub eps: f64,
    /// Multi-hot pooling.
    pub pooling: Pooling,
    /// How tables are laid out across the processes of data-parallel training.
    pub sharding: Sharding,
    /// Tables with fewer rows stay whole on every rank under `sharding = "row"`.
    pub shard_min_rows: usize,
    /// Under `sharding = "row"`, sum the gradients of an id that occurs several times in a
    /// process's share before sending them to the row's owner: a hot id's gradient travels
    /// once per step instead of once per occurrence, and the sums happen in another order
    /// than one process's, so the result is no longer the same bits (it differs by rounding).
    pub presum_gradients: bool,
}

/// Layout of the embedding tables across the processes of data-parallel training (no
/// effect in one process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Sharding {
    /// Rows dealt to the ranks by `id mod N`: each rank holds 1/N of every table and its
    /// optimizer state ([`crate::collective::owner`]).
    #[default]
    Row,
    /// Every rank holds every table.
    Replicated,
}

impl Default for EmbeddingConfig {
    fn default() -> Self {
        EmbeddingConfig {
            dim: 16,
            init_std: 1e-4,
            optimizer: SparseOptimizer::Adam,
            lr: None,
            weight_decay: None,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            pooling: Pooling::Mean,
            sharding: Sharding::Row,
            shard_min_rows: 0,
            presum_gradients: false,
        }
    }
}

const UNTOUCHED: u32 = u32::MAX;

#[derive(Debug, Clone, PartialEq)]
struct Table {
    name: String,
    /// Allocated rows (a static table: its vocabulary size).
    rows: usize,
    dim: usize,
    weight: Vec<f32>,
    /// Adam first moment / Adagrad accumulator (empty for SGD).
    s1: Vec<f32>,
    /// Adam second moment (empty otherwise).
    s2: Vec<f32>,
    /// `slot[row]` = position of the row in `touched` during a step, or `UNTOUCHED`.
    slot: Vec<u32>,
    touched: Vec<u32>,
    grad: Vec<f32>,
    /// The id → row map of a table that grows and shrinks (`None`: row = id).
    dynamic: Option<Dynamic>,
    /// `(rank, size)` when this process holds only its shard of a table sharded row-wise
    /// across a process group ([`crate::collective::owner`]); `rows` is then the shard's.
    shard: Option<(usize, usize)>,
    /// Rows of the whole table (equal to `rows` unless sharded).
    global_rows: usize,
}

impl Table {
    /// The row an id reads and trains: the id itself in a static table, the mapped row (or
    /// the default row) in a dynamic one; `None` when the id is outside the table.
    #[inline]
    fn resolve(&self, id: u32) -> Option<usize> {
        match (&self.dynamic, self.shard) {
            (None, None) => ((id as usize) < self.rows).then_some(id as usize),
            (None, Some((rank, size))) => {
                let (owner, local) = crate::collective::owner(id, size);
                ((id as usize) < self.global_rows && owner == rank).then_some(local)
            }
            (Some(d), None) => d.row(id).map(|r| r as usize),
            (Some(d), Some((rank, size))) => ((id as usize) < self.global_rows
                && owns(id, rank, size))
            .then(|| d.row(shard_key(id, size)))
            .flatten()
            .map(|r| r as usize),
        }
    }

    /// Number of ids the table accepts.
    fn key_space(&self) -> usize {
        match (&self.dynamic, self.shard) {
            (Some(d), None) => d.row_of.len(),
            _ => self.global_rows,
        }
    }

    /// Number of optimizer moment arrays.
    fn moments(&self) -> usize {
        usize::from(!self.s1.is_empty()) + usize::from(!self.s2.is_empty())
    }

    /// Gives `row` fresh weights (from `rng`) and zero optimizer state, growing the arrays
    /// when `row` is one past the end.
    fn reset_row(&mut self, row: usize, init_std: f32, rng: &mut Rng) {
        let dim = self.dim;
        if row == self.rows {
            self.rows += 1;
            self.weight.resize(self.rows * dim, 0.0);
            if !self.s1.is_empty() {
                self.s1.resize(self.rows * dim, 0.0);
            }
            if !self.s2.is_empty() {
                self.s2.resize(self.rows * dim, 0.0);
            }
            self.slot.push(UNTOUCHED);
        }
        let range = row * dim..(row + 1) * dim;
        for w in &mut self.weight[range.clone()] {
            *w = (rng.normal() as f32) * init_std;
        }
        if !self.s1.is_empty() {
            self.s1[range.clone()].fill(0.0);
        }
        if !self.s2.is_empty() {
            self.s2[range].fill(0.0);
        }
    }

    /// The table's state as named arrays ([`EmbeddingStore::export_state`]).
    fn export(&self) -> TableState {
        let t = self;
        let mut arrays = vec![
            ("weight".to_string(), StateArray::F32(t.weight.clone())),
            ("s1".to_string(), StateArray::F32(t.s1.clone())),
            ("s2".to_string(), StateArray::F32(t.s2.clone())),
        ];
        if let Some(d) = &t.dynamic {
            let rng = d.rng.state();
            let meta = vec![
                d.capacity as u64,
                d.live as u64,
                d.admitted,
                d.evicted,
                d.sketch_window,
                rng[0],
                rng[1],
                rng[2],
                rng[3],
            ];
            arrays.extend([
                ("row_of".to_string(), StateArray::U32(d.row_of.clone())),
                ("key_of".to_string(), StateArray::U32(d.key_of.clone())),
                ("free".to_string(), StateArray::U32(d.free.clone())),
                ("sketch".to_string(), StateArray::F32(d.sketch.clone())),
                ("count".to_string(), StateArray::U64(d.count.clone())),
                (
                    "last_step".to_string(),
                    StateArray::U64(d.last_step.clone()),
                ),
                (
                    "last_window".to_string(),
                    StateArray::U64(d.last_window.clone()),
                ),
                ("score".to_string(), StateArray::F32(d.score.clone())),
                ("meta".to_string(), StateArray::U64(meta)),
            ]);
        }
        TableState {
            name: t.name.clone(),
            dim: t.dim,
            arrays,
        }
    }

    /// Restores a [`TableState`] into this table ([`EmbeddingStore::import_state`]): a
    /// dynamic table's state is first cut to this table's layout (a shard's part of a whole
    /// or joined state, see [`sharded::fit_dynamic_state`]).
    fn import(&mut self, ts: &TableState, use_s1: bool, use_s2: bool) -> Result<(), String> {
        let t = self;
        let fitted;
        let ts = match &t.dynamic {
            // a shard, or a whole table from a joined state (its sketches to be summed)
            Some(d)
                if ts.get("row_of").is_some()
                    && (t.shard.is_some() || ts.get("shards").is_some()) =>
            {
                fitted = sharded::fit_dynamic_state(ts, t.shard, d.sketch.len(), t.key_space())?;
                &fitted
            }
            _ => ts,
        };
        if t.name != ts.name || t.dim != ts.dim {
            return Err(format!(
                "saved table `{}` (width {}) does not match table `{}` (width {})",
                ts.name, ts.dim, t.name, t.dim
            ));
        }
        let f32s = |key: &str| ts.f32s(key).map(<[f32]>::to_vec);
        let u32s = |key: &str| ts.u32s(key).map(<[u32]>::to_vec);
        let u64s = |key: &str| ts.u64s(key).map(<[u64]>::to_vec);
        let (mut weight, mut s1, mut s2) = (f32s("weight")?, f32s("s1")?, f32s("s2")?);
        if let (Some((rank, size)), None) = (t.shard, &t.dynamic) {
            if weight.len() != t.global_rows * t.dim {
                return Err(format!(
                    "saved table `{}` has {} values, the model's table {} rows × {}",
                    ts.name,
                    weight.len(),
                    t.global_rows,
                    t.dim
                ));
            }
            for v in [&mut weight, &mut s1, &mut s2] {
                if !v.is_empty() {
                    *v = crate::collective::take_shard(v, t.dim, rank, size);
                }
            }
        }
        if weight.len() % t.dim != 0 {
            return Err(format!(
                "saved table `{}`: {} values is not a multiple of width {}",
                ts.name,
                weight.len(),
                t.dim
            ));
        }
        let rows = weight.len() / t.dim;
        let moment_ok = |v: &Vec<f32>, used: bool| v.len() == if used { rows * t.dim } else { 0 };
        if !moment_ok(&s1, use_s1) || !moment_ok(&s2, use_s2) {
            return Err(format!(
                "saved table `{}`: optimizer state does not match the optimizer",
                ts.name
            ));
        }
        match (&mut t.dynamic, ts.get("row_of").is_some()) {
            (None, false) => {
                if rows != t.rows {
                    return Err(format!(
                        "saved table `{}` has {rows} rows, the model {}",
                        ts.name, t.rows
                    ));
                }
            }
            (Some(d), true) => {
                let meta = u64s("meta")?;
                let [capacity, live, admitted, evicted, sketch_window, r0, r1, r2, r3] = meta[..]
                else {
                    return Err(format!("saved table `{}`: bad meta array", ts.name));
                };
                let row_of = u32s("row_of")?;
                let key_of = u32s("key_of")?;
                let per_row = [u64s("count")?, u64s("last_step")?, u64s("last_window")?];
                let score = f32s("score")?;
                if row_of.len() != d.row_of.len()
                    || key_of.len() != rows
                    || per_row.iter().any(|v| v.len() != rows)
                    || score.len() != rows
                    || row_of.iter().any(|&r| r != NONE && r as usize >= rows)
                {
                    return Err(format!("saved table `{}`: inconsistent id map", ts.name));
                }
                let [count, last_step, last_window] = per_row;
                d.row_of = row_of;
                d.key_of = key_of;
                d.free = u32s("free")?;
                d.sketch = f32s("sketch")?;
                d.sketch_window = sketch_window;
                d.count = count;
                d.last_step = last_step;
                d.last_window = last_window;
                d.score = score;
                d.capacity = capacity as usize;
                d.live = live as usize;
                d.admitted = admitted;
                d.evicted = evicted;
                d.rng = Rng::from_state([r0, r1, r2, r3]);
            }
            (None, true) | (Some(_), false) => {
                return Err(format!(
                    "saved table `{}` is {} but this run's table is {}",
                    ts.name,
                    if ts.get("row_of").is_some() {
                        "dynamic"
                    } else {
                        "static"
                    },
                    if t.dynamic.is_some() {
                        "dynamic"
                    } else {
                        "static"
                    }
                ));
            }
        }
        t.rows = rows;
        t.weight = weight;
        t.s1 = s1;
        t.s2 = s2;
        t.slot = vec![UNTOUCHED; rows];
        t.touched.clear();
        t.grad.clear();
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
struct FieldSlot {
    name: String,
    table: usize,
    dim: usize,
    offset: usize,
    multi_hot: bool,
    column: usize,
}

/// Embedding tables with sparse, row-wise updates. `==` compares weights, optimizer moments
/// and the step counter (a snapshot/restore check).
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingStore {
    tables: Vec<Table>,
    fields: Vec<FieldSlot>,
    width: usize,
    optimizer: SparseOptimizer,
    pooling: Pooling,
    beta1: f64,
    beta2: f64,
    eps: f64,
    step: u64,
    init_std: f32,
    /// Admission and eviction of the dynamic tables (`None`: static tables).
    policy: Option<TablePolicy>,
    /// The current stream window (dynamic tables' scores and expiry).
    window: u64,
    /// [`EmbeddingConfig::presum_gradients`].
    presum: bool,
}

/// One named array of a table's state ([`EmbeddingStore::export_state`]).
#[derive(Debug, Clone, PartialEq)]
pub enum StateArray {
    /// Weights, moments, scores.
    F32(Vec<f32>),
    /// Id maps, free rows, the sketch.
    U32(Vec<u32>),
    /// Counters, steps, windows, RNG state.
    U64(Vec<u64>),
}

/// A table's full training state as named plain arrays.
#[derive(Debug, Clone, PartialEq)]
pub struct TableState {
    /// Table name.
    pub name: String,
    /// Row width.
    pub dim: usize,
    /// `weight`, `s1`, `s2` (F32); a dynamic table also has `row_of`, `key_of`, `free`,
    /// `sketch` (U32), `count`, `last_step`, `last_window`, `meta` (U64) and `score` (F32).
    pub arrays: Vec<(String, StateArray)>,
}

impl TableState {
    /// Array `key`, if the state has it.
    fn get(&self, key: &str) -> Option<&StateArray> {
        self.arrays.iter().find(|(k, _)| k == key).map(|(_, a)| a)
    }

    /// Array `key` as f32 values (an error, naming the table and the array, otherwise).
    fn f32s(&self, key: &str) -> Result<&[f32], String> {
        match self.get(key) {
            Some(StateArray::F32(v)) => Ok(v),
            _ => Err(self.missing("f32", key)),
        }
    }

    /// Array `key` as u32 values.
    fn u32s(&self, key: &str) -> Result<&[u32], String> {
        match self.get(key) {
            Some(StateArray::U32(v)) => Ok(v),
            _ => Err(self.missing("u32", key)),
        }
    }

    /// Array `key` as u64 values.
    fn u64s(&self, key: &str) -> Result<&[u64], String> {
        match self.get(key) {
            Some(StateArray::U64(v)) => Ok(v),
            _ => Err(self.missing("u64", key)),
        }
    }

    fn missing(&self, kind: &str, key: &str) -> String {
        format!("saved table `{}` has no {kind} array `{key}`", self.name)
    }
}

/// Everything training changes in a store, as plain arrays (checkpoints).
#[derive(Debug, Clone, PartialEq)]
pub struct StoreState {
    /// Optimizer steps so far.
    pub step: u64,
    /// Current stream window.
    pub window: u64,
    /// One entry per table.
    pub tables: Vec<TableState>,
    /// Set when this is one process's shard of a store sharded across a group: its sharded
    /// tables' arrays hold only that process's rows ([`StoreState::merge`] joins the shards).
    pub shard: Option<ShardInfo>,
}

/// Which shard of a store sharded row-wise across a process group a [`StoreState`] (or a
/// weights file) holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// The process's rank.
    pub rank: usize,
    /// Processes in the group.
    pub size: usize,
    /// The sharded tables (the others are whole on every rank).
    pub tables: Vec<ShardedTable>,
}

/// A table sharded row-wise ([`ShardInfo`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardedTable {
    /// Table name.
    pub name: String,
    /// Rows of the whole table.
    pub rows: usize,
    /// Row width.
    pub dim: usize,
}

/// An embedding id outside its table (a corrupted cache or a schema/data mismatch).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("embedding id {id} of field `{field}` is outside table `{table}` with {rows} rows (batch row {row})")]
pub struct IdOutOfRange {
    /// Field name.
    pub field: String,
    /// Table name.
    pub table: String,
    /// The offending id.
    pub id: u32,
    /// Table rows.
    pub rows: usize,
    /// Row of the batch.
    pub row: usize,
}

/// Why a lookup failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// An id outside its table.
    #[error(transparent)]
    Id(#[from] IdOutOfRange),
    /// The exchange with the other processes of a group failed (sharded tables).
    #[error("{0}")]
    Exchange(String),
}

impl EmbeddingStore {
    /// Tables for `fields` (fields naming the same table share it; the table gets the largest
    /// vocabulary and the first field's width), initialised from `rng`.
    pub fn new(fields: &[FieldInfo], cfg: &EmbeddingConfig, rng: &mut Rng) -> Self {
        let mut tables: Vec<Table> = Vec::new();
        let mut slots = Vec::with_capacity(fields.len());
        for f in fields {
            let t = match tables.iter().position(|t| t.name == f.table) {
                Some(t) => {
                    assert_eq!(
                        tables[t].dim, f.dim,
                        "fields sharing table `{}` must have one width",
                        f.table
                    );
                    tables[t].rows = tables[t].rows.max(f.vocab_size);
                    t
                }
                None => {
                    tables.push(Table {
                        name: f.table.clone(),
                        rows: f.vocab_size,
                        dim: f.dim,
                        weight: Vec::new(),
                        s1: Vec::new(),
                        s2: Vec::new(),
                        slot: Vec::new(),
                        touched: Vec::new(),
                        grad: Vec::new(),
                        dynamic: None,
                        shard: None,
                        global_rows: 0,
                    });
                    tables.len() - 1
                }
            };
            slots.push(FieldSlot {
                name: f.name.clone(),
                table: t,
                dim: f.dim,
                offset: f.offset,
                multi_hot: f.multi_hot,
                column: f.column,
            });
        }
        for t in &mut tables {
            let n = t.rows * t.dim;
            t.weight = (0..n)
                .map(|_| (rng.normal() as f32) * cfg.init_std)
                .collect();
            if cfg.optimizer != SparseOptimizer::Sgd {
                t.s1 = vec![0.0; n];
            }
            if matches!(
                cfg.optimizer,
                SparseOptimizer::Adam | SparseOptimizer::AdamDense
            ) {
                t.s2 = vec![0.0; n];
            }
            t.slot = vec![UNTOUCHED; t.rows];
            t.global_rows = t.rows;
        }
        let width = fields.iter().map(|f| f.dim).sum();
        EmbeddingStore {
            tables,
            fields: slots,
            width,
            optimizer: cfg.optimizer,
            pooling: cfg.pooling,
            beta1: cfg.beta1,
            beta2: cfg.beta2,
            eps: cfg.eps,
            step: 0,
            init_std: cfg.init_std,
            policy: None,
            window: 0,
            presum: cfg.presum_gradients,
        }
    }

    /// Width of one looked-up row (`Σ dim_f`).
    pub fn width(&self) -> usize {
        self.width
    }

    /// Number of optimizer steps applied so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Total number of embedding parameters (of the whole tables, also when this process
    /// holds only its shard of some).
    pub fn num_params(&self) -> usize {
        self.tables
            .iter()
            .map(|t| match t.shard {
                Some(_) => t.global_rows * t.dim,
                None => t.weight.len(),
            })
            .sum()
    }

    /// Embedding parameters this process holds (its shards and the whole tables).
    pub fn held_params(&self) -> usize {
        self.tables.iter().map(|t| t.weight.len()).sum()
    }

    /// True when the tables grow and evict (stream training's admission policy).
    pub fn is_dynamic(&self) -> bool {
        self.policy.is_some()
    }

    /// Bytes this process holds for its tables' rows and optimizer state.
    pub fn held_bytes(&self) -> usize {
        self.tables
            .iter()
            .map(|t| 4 * (t.weight.len() + t.s1.len() + t.s2.len()))
            .sum()
    }

    /// Gather the batch's embeddings into `out` (`[B, width]`, row-major), reusing its buffer.
    ///
    /// With tables sharded across a process group ([`shard`](Self::shard)) this is a
    /// collective: every rank of the group must call it for the same step (an empty batch
    /// takes part without rows of its own).
    pub fn lookup(&self, batch: &Batch, out: &mut Vec<f32>) -> Result<(), LookupError> {
        out.clear();
        out.resize(batch.len * self.width, 0.0);
        if self.is_sharded() {
            return self.lookup_routed(batch, out);
        }
        for f in &self.fields {
            self.lookup_field(f, batch, out)?;
        }
        Ok(())
    }

    /// The rows of field `f` for every row of `batch` into `out` (pooled for multi-hot
    /// fields), from this process's table.
    fn lookup_field(
        &self,
        f: &FieldSlot,
        batch: &Batch,
        out: &mut [f32],
    ) -> Result<(), IdOutOfRange> {
        let b = batch.len;
        if b == 0 {
            return Ok(());
        }
        let n_cat = batch.cat.len() / b;
        let t = &self.tables[f.table];
        let resolve = |id: u32, row: usize| {
            t.resolve(id).ok_or_else(|| IdOutOfRange {
                field: f.name.clone(),
                table: t.name.clone(),
                id,
                rows: t.key_space(),
                row,
            })
        };
        if !f.multi_hot {
            for r in 0..b {
                let row = resolve(batch.cat[r * n_cat + f.column], r)?;
                let src = &t.weight[row * t.dim..(row + 1) * t.dim];
                out[r * self.width + f.offset..r * self.width + f.offset + f.dim]
                    .copy_from_slice(src);
            }
        } else {
            let col = &batch.multi[f.column];
            for r in 0..b {
                let ids = &col.values[col.offsets[r] as usize..col.offsets[r + 1] as usize];
                let dst = &mut out[r * self.width + f.offset..r * self.width + f.offset + f.dim];
                for &id in ids {
                    let row = resolve(id, r)?;
                    let src = &t.weight[row * t.dim..(row + 1) * t.dim];
                    for (d, s) in dst.iter_mut().zip(src) {
                        *d += s;
                    }
                }
                if self.pooling == Pooling::Mean && ids.len() > 1 {
                    let inv = 1.0 / ids.len() as f32;
                    dst.iter_mut().for_each(|d| *d *= inv);
                }
            }
        }
        Ok(())
    }

    fn accumulate(t: &mut Table, id: u32, g: &[f32], scale: f32) {
        let dim = t.dim;
        // `lookup` checked every id of the batch
        let row = t.resolve(id).expect("id checked by lookup");
        let s = match t.slot[row] {
            UNTOUCHED => {
                let s = t.touched.len() as u32;
                t.slot[row] = s;
                t.touched.push(row as u32);
                t.grad.resize(t.grad.len() + dim, 0.0);
                s
            }
            s => s,
        };
        let dst = &mut t.grad[s as usize * dim..(s as usize + 1) * dim];
        for (d, x) in dst.iter_mut().zip(g) {
            *d += x * scale;
        }
    }

    /// Scatter the gradient of the looked-up buffer (`[B, width]`) to the touched rows and apply
    /// one optimizer step with learning rate `lr` and L2 penalty `weight_decay` to them.
    ///
    /// `batch` must be the batch the buffer was looked up for.
    pub fn apply_gradient(&mut self, batch: &Batch, grad: &[f32], lr: f64, weight_decay: f64) {
        assert_eq!(
            grad.len(),
            batch.len * self.width,
            "embedding gradient has the wrong size"
        );
        let width = self.width;
        let (fields, tables) = (&self.fields, &mut self.tables);
        for f in fields {
            let t = &mut tables[f.table];
            for_each_id(self.pooling, f, batch, |r, id, scale| {
                let g = &grad[r * width + f.offset..r * width + f.offset + f.dim];
                Self::accumulate(t, id, g, scale);
            });
        }
        self.optimizer_step(lr, weight_decay);
    }

    /// One optimizer step on the rows gradients were accumulated into (every row for
    /// `adam_dense`); clears the accumulated gradients.
    pub(crate) fn optimizer_step(&mut self, lr: f64, weight_decay: f64) {
        self.step += 1;
        let step = self.step as i32;
        let (b1, b2, eps) = (self.beta1, self.beta2, self.eps);
        let bc1 = 1.0 - b1.powi(step);
        let bc2_sqrt = (1.0 - b2.powi(step)).sqrt();
        let wd = weight_decay as f32;
        if self.optimizer == SparseOptimizer::AdamDense {
            let step_size = (lr / bc1) as f32;
            let (b1, b2, eps, bc2_sqrt) = (b1 as f32, b2 as f32, eps as f32, bc2_sqrt as f32);
            for t in &mut self.tables {
                let dim = t.dim;
                for id in 0..t.rows {
                    let slot = t.slot[id];
                    let row = id * dim..(id + 1) * dim;
                    let (w, m, v) = (
                        &mut t.weight[row.clone()],
                        &mut t.s1[row.clone()],
                        &mut t.s2[row],
                    );
                    for k in 0..dim {
                        let g = if slot == UNTOUCHED {
                            0.0
                        } else {
                            t.grad[slot as usize * dim + k]
                        } + wd * w[k];
                        m[k] = b1 * m[k] + (1.0 - b1) * g;
                        v[k] = b2 * v[k] + (1.0 - b2) * g * g;
                        w[k] -= step_size * m[k] / (v[k].sqrt() / bc2_sqrt + eps);
                    }
                    t.slot[id] = UNTOUCHED;
                }
                t.touched.clear();
                t.grad.clear();
            }
            return;
        }
        for t in &mut self.tables {
            let dim = t.dim;
            for (s, &id) in t.touched.iter().enumerate() {
                let row = id as usize * dim..(id as usize + 1) * dim;
                let g = &t.grad[s * dim..(s + 1) * dim];
                let w = &mut t.weight[row.clone()];
                match self.optimizer {
                    SparseOptimizer::Sgd => {
                        for (w, &g) in w.iter_mut().zip(g) {
                            let g = g + wd * *w;
                            *w -= (lr as f32) * g;
                        }
                    }
                    SparseOptimizer::Adagrad => {
                        let acc = &mut t.s1[row];
                        for ((w, &g), a) in w.iter_mut().zip(g).zip(acc) {
                            let g = g + wd * *w;
                            *a += g * g;
                            *w -= (lr as f32) * g / (a.sqrt() + eps as f32);
                        }
                    }
                    SparseOptimizer::Adam | SparseOptimizer::AdamDense => {
                        let step_size = (lr / bc1) as f32;
                        let (m, v) = (&mut t.s1[row.clone()], &mut t.s2[row]);
                        for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m).zip(v) {
                            let g = g + wd * *w;
                            *m = (b1 as f32) * *m + (1.0 - b1 as f32) * g;
                            *v = (b2 as f32) * *v + (1.0 - b2 as f32) * g * g;
                            let denom = v.sqrt() / bc2_sqrt as f32 + eps as f32;
                            *w -= step_size * *m / denom;
                        }
                    }
                }
                t.slot[id as usize] = UNTOUCHED;
            }
            t.touched.clear();
            t.grad.clear();
        }
    }

    /// Table names, rows, widths and weights (for checkpoints and analyses).
    pub fn tables(&self) -> impl Iterator<Item = (&str, usize, usize, &[f32])> {
        self.tables
            .iter()
            .map(|t| (t.name.as_str(), t.rows, t.dim, t.weight.as_slice()))
    }

    /// Replace the weights of table `name` (optimizer state is reset).
    pub fn load_table(
        &mut self,
        name: &str,
        rows: usize,
        dim: usize,
        values: &[f32],
    ) -> Result<(), String> {
        let t = self
            .tables
            .iter_mut()
            .find(|t| t.name == name)
            .ok_or_else(|| {
                format!("checkpoint has embedding table `{name}` that this model does not have")
            })?;
        if t.global_rows != rows || t.dim != dim || values.len() != rows * dim {
            return Err(format!(
                "embedding table `{name}`: checkpoint has shape [{rows}, {dim}] ({} values), model expects [{}, {}]",
                values.len(),
                t.global_rows,
                t.dim
            ));
        }
        match t.shard {
            Some((rank, size)) => {
                t.weight = crate::collective::take_shard(values, dim, rank, size);
            }
            None => t.weight.copy_from_slice(values),
        }
        t.s1.iter_mut().for_each(|x| *x = 0.0);
        t.s2.iter_mut().for_each(|x| *x = 0.0);
        Ok(())
    }

    /// Forget the optimizer state (moments, accumulators, step counter) and keep the weights:
    /// the next steps behave like a freshly created optimizer (AREAD's HEMP candidates).
    pub fn reset_optimizer_state(&mut self) {
        for t in &mut self.tables {
            t.s1.iter_mut().for_each(|x| *x = 0.0);
            t.s2.iter_mut().for_each(|x| *x = 0.0);
        }
        self.step = 0;
    }

    /// Names of all tables.
    pub fn table_names(&self) -> Vec<String> {
        self.tables.iter().map(|t| t.name.clone()).collect()
    }
    /// Turns every table into one that grows and shrinks under `policy` (stream training):
    /// each keeps its PAD and OOV rows and its id space, and gets a row for an id only when
    /// [`admit`](Self::admit) admits it. New rows draw their values from
    /// `Rng::for_stream(seed, "embedding/admission/<table>")`.
    pub fn make_dynamic(&mut self, policy: &TablePolicy, seed: u64) -> Result<(), String> {
        policy.validate()?;
        if self.is_sharded() {
            return Err("tables sharded across processes cannot be made dynamic".into());
        }
        if self.optimizer == SparseOptimizer::AdamDense {
            return Err("train.embedding.optimizer = \"adam_dense\" updates every row at every step, which a table that grows and shrinks cannot do; use adam, adagrad or sgd".into());
        }
        for t in &mut self.tables {
            let n_keys = t.rows;
            let keep = (RESERVED as usize).min(t.rows);
            t.weight.truncate(keep * t.dim);
            t.s1.truncate(keep * t.dim);
            t.s2.truncate(keep * t.dim);
            t.slot.truncate(keep);
            t.rows = keep;
            let rng = Rng::for_stream(seed, &format!("embedding/admission/{}", t.name));
            let capacity = policy.capacity_of(&t.name, n_keys);
            let mut d = Dynamic::new(n_keys, capacity, policy, rng);
            while t.rows < RESERVED as usize {
                t.reset_row(t.rows, self.init_std, &mut d.rng);
            }
            t.dynamic = Some(d);
        }
        self.policy = Some(policy.clone());
        Ok(())
    }

    /// Starts stream window `window`: later occurrences are scored in it, and rows not seen
    /// for more than `ttl_windows` windows are evicted now.
    pub fn begin_window(&mut self, window: u64) {
        self.window = window;
        let Some(policy) = self.policy.as_ref() else {
            return;
        };
        for t in &mut self.tables {
            if let Some(d) = t.dynamic.as_mut() {
                d.decay_sketch(window, policy.score_decay);
                if let Some(ttl) = policy.ttl_windows {
                    d.expire(ttl, window);
                }
            }
        }
    }

    /// Admission before a training step on `batch`: records every occurrence of an id that has
    /// a row, then gives rows to the new ids the policy admits (evicting when a table is full).
    /// A no-op for static tables. Ids outside a table are left for [`lookup`](Self::lookup) to
    /// report.
    pub fn admit(&mut self, batch: &Batch) {
        let Some(policy) = self.policy.as_ref() else {
            return;
        };
        let (step, window) = (self.step + 1, self.window);
        let n_cat = batch.cat.len().checked_div(batch.len).unwrap_or(0);
        for pass in [Pass::Protect, Pass::Admit, Pass::Count] {
            for f in &self.fields {
                let t = &mut self.tables[f.table];
                if t.dynamic.is_none() {
                    continue;
                }
                let mut each =
                    |id: u32| admit_one(t, id, pass, policy, step, window, self.init_std);
                if f.multi_hot {
                    batch.multi[f.column].values.iter().for_each(|&id| each(id));
                } else {
                    (0..batch.len).for_each(|r| each(batch.cat[r * n_cat + f.column]));
                }
            }
        }
        for t in &mut self.tables {
            if let Some(d) = t.dynamic.as_mut() {
                d.end_step();
            }
        }
    }

    /// Rows, admissions, evictions and bytes of every table.
    pub fn table_stats(&self) -> Vec<TableStats> {
        self.tables
            .iter()
            .map(|t| {
                let row_bytes = t.dim * 4 * (1 + t.moments());
                match &t.dynamic {
                    None => TableStats {
                        table: t.name.clone(),
                        live_rows: t.rows,
                        allocated_rows: t.rows,
                        capacity: None,
                        admitted: 0,
                        evicted: 0,
                        bytes: t.rows * row_bytes,
                        map_bytes: 0,
                    },
                    Some(d) => TableStats {
                        table: t.name.clone(),
                        live_rows: d.live + RESERVED as usize,
                        allocated_rows: t.rows,
                        capacity: Some(d.capacity),
                        admitted: d.admitted,
                        evicted: d.evicted,
                        bytes: t.rows * row_bytes,
                        map_bytes: d.map_bytes(),
                    },
                }
            })
            .collect()
    }

    /// The id → row map of a dynamic table (`u32::MAX`: no row; such ids read the OOV row).
    pub fn row_map(&self, table: &str) -> Option<&[u32]> {
        self.tables
            .iter()
            .find(|t| t.name == table)
            .and_then(|t| t.dynamic.as_ref())
            .map(|d| d.row_of.as_slice())
    }

    /// Replace table `name` by saved rows of a dynamic table and its id → row map (scoring a
    /// stream-trained model); optimizer state is reset.
    pub fn load_dynamic_table(
        &mut self,
        name: &str,
        rows: usize,
        dim: usize,
        values: &[f32],
        row_of: &[u32],
    ) -> Result<(), String> {
        let t = self
            .tables
            .iter_mut()
            .find(|t| t.name == name)
            .ok_or_else(|| {
                format!("checkpoint has embedding table `{name}` that this model does not have")
            })?;
        if t.dim != dim || values.len() != rows * dim || rows < RESERVED as usize {
            return Err(format!(
                "embedding table `{name}`: checkpoint has shape [{rows}, {dim}] ({} values), model expects width {}",
                values.len(),
                t.dim
            ));
        }
        if row_of.len() != t.key_space() {
            return Err(format!(
                "embedding table `{name}`: the checkpoint's id map covers {} ids, the vocabulary has {}",
                row_of.len(),
                t.key_space()
            ));
        }
        let mut key_of = vec![NONE; rows];
        for (k, &r) in row_of.iter().enumerate() {
            if r == NONE {
                continue;
            }
            if r as usize >= rows || key_of[r as usize] != NONE {
                return Err(format!(
                    "embedding table `{name}`: id {k} maps to row {r}, which is outside the {rows} rows or taken"
                ));
            }
            key_of[r as usize] = k as u32;
        }
        let live = key_of
            .iter()
            .filter(|&&k| k != NONE)
            .count()
            .saturating_sub(RESERVED as usize);
        let policy = TablePolicy::default();
        let mut d = Dynamic::new(
            row_of.len(),
            rows.saturating_sub(RESERVED as usize),
            &policy,
            Rng::new(0),
        );
        d.sketch = Vec::new(); // scoring admits nothing
        d.row_of = row_of.to_vec();
        d.free = (0..rows as u32)
            .filter(|&r| key_of[r as usize] == NONE)
            .collect();
        d.count = vec![0; rows];
        d.last_step = vec![0; rows];
        d.last_window = vec![0; rows];
        d.score = vec![0.0; rows];
        d.key_of = key_of;
        d.live = live;
        t.rows = rows;
        t.weight = values.to_vec();
        t.s1 = if t.s1.is_empty() {
            Vec::new()
        } else {
            vec![0.0; rows * dim]
        };
        t.s2 = if t.s2.is_empty() {
            Vec::new()
        } else {
            vec![0.0; rows * dim]
        };
        t.slot = vec![UNTOUCHED; rows];
        t.dynamic = Some(d);
        Ok(())
    }

    /// Everything training changes, as named arrays: weights, moments, and each dynamic
    /// table's map, statistics, sketch and RNG ([`import_state`](Self::import_state) restores it).
    pub fn export_state(&self) -> StoreState {
        let tables = self.tables.iter().map(Table::export).collect();
        StoreState {
            step: self.step,
            window: self.window,
            tables,
            shard: self.shard_info(),
        }
    }

    /// Restores an [`export_state`](Self::export_state) of a store built the same way (same
    /// tables and widths; dynamic tables made dynamic with the same policy).
    /// A whole store's state also restores into a sharded store (each process keeps its
    /// rows: re-sharding); a shard's state must be [merged](StoreState::merge) first.
    pub fn import_state(&mut self, state: &StoreState) -> Result<(), String> {
        if let Some(s) = &state.shard {
            return Err(format!(
                "the saved state is shard {} of {}; join the shards first",
                s.rank, s.size
            ));
        }
        if state.tables.len() != self.tables.len() {
            return Err(format!(
                "the saved state has {} embedding tables, this model has {}",
                state.tables.len(),
                self.tables.len()
            ));
        }
        let use_s1 = self.optimizer != SparseOptimizer::Sgd;
        let use_s2 = matches!(
            self.optimizer,
            SparseOptimizer::Adam | SparseOptimizer::AdamDense
        );
        for (t, ts) in self.tables.iter_mut().zip(&state.tables) {
            t.import(ts, use_s1, use_s2)?;
        }
        self.step = state.step;
        self.window = state.window;
        Ok(())
    }
}

/// Calls `each(row, id, scale)` for every id of field `f` in `batch`, batch rows in order;
/// `scale` is the id's share of the field's pooled embedding (1/len under mean pooling).
fn for_each_id(
    pooling: Pooling,
    f: &FieldSlot,
    batch: &Batch,
    mut each: impl FnMut(usize, u32, f32),
) {
    let b = batch.len;
    if b == 0 {
        return;
    }
    let n_cat = batch.cat.len() / b;
    if !f.multi_hot {
        for r in 0..b {
            each(r, batch.cat[r * n_cat + f.column], 1.0);
        }
    } else {
        let col = &batch.multi[f.column];
        for r in 0..b {
            let ids = &col.values[col.offsets[r] as usize..col.offsets[r + 1] as usize];
            let scale = if pooling == Pooling::Mean && !ids.is_empty() {
                1.0 / ids.len() as f32
            } else {
                1.0
            };
            for &id in ids {
                each(r, id, scale);
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Pass {
    /// Mark the rows the batch uses, so that admissions do not evict them.
    Protect,
    /// Give rows to admitted new ids.
    Admit,
    /// Record every occurrence of an id that has a row (counts, scores, recency).
    Count,
}

/// One occurrence of `id` in a batch, for [`EmbeddingStore::admit`].
fn admit_one(
    t: &mut Table,
    id: u32,
    pass: Pass,
    policy: &TablePolicy,
    step: u64,
    window: u64,
    init_std: f32,
) {
    // A shard of a table sharded across a group admits and counts the ids it holds, under
    // their shard keys.
    let key = match t.shard {
        Some((rank, size)) if (id as usize) < t.global_rows && owns(id, rank, size) => {
            shard_key(id, size)
        }
        Some(_) => return,
        None => id,
    };
    let Some(d) = t.dynamic.as_mut() else {
        return;
    };
    match (d.row_of.get(key as usize).copied(), pass) {
        (None, _) => {} // outside the id space: `lookup` reports it
        (Some(NONE), Pass::Admit) => {
            // the sketch counts ids (one hash for every layout: shards' sketches add up)
            let (admit, estimate) = d.decide(id, policy, window);
            if !admit {
                return;
            }
            if d.live >= d.capacity {
                let Some((victim, _, _)) = d.next_victim(policy, step, window) else {
                    return; // every live row serves this batch: the id stays on the OOV row
                };
                if policy.eviction == Eviction::Score && f64::from(estimate) <= victim {
                    return; // not more frequent than what it would replace
                }
                d.take_victim();
            }
            let row = d.free.pop().unwrap_or(t.rows as u32);
            if row as usize == d.key_of.len() {
                d.key_of.push(NONE);
                d.count.push(0);
                d.last_step.push(0);
                d.last_window.push(window);
                d.score.push(0.0);
            }
            let r = row as usize;
            d.row_of[key as usize] = row;
            d.key_of[r] = key;
            (d.count[r], d.score[r], d.last_window[r]) = (0, 0.0, window);
            d.live += 1;
            d.admitted += 1;
            d.last_step[r] = step;
            let mut rng = std::mem::replace(&mut d.rng, Rng::new(0));
            t.reset_row(r, init_std, &mut rng);
            if let Some(d) = t.dynamic.as_mut() {
                d.rng = rng;
            }
            if policy.new_rows == NewRows::Oov {
                let (dim, oov) = (t.dim, DEFAULT_ROW as usize);
                t.weight.copy_within(oov * dim..(oov + 1) * dim, r * dim);
            }
        }
        (Some(NONE), _) | (Some(_), Pass::Admit) => {}
        (Some(r), Pass::Protect) => d.last_step[r as usize] = step,
        (Some(r), Pass::Count) => d.touch(r, step, window, policy.score_decay),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::cpu;
    use crate::init::tensor;
    use crate::layers::linear;
    use crate::loss::bce_with_logits;
    use burn::module::Module;
    use burn::tensor::{Device, Tensor, TensorData};
    use mdrec_data::Jagged;

    fn fields() -> Vec<FieldInfo> {
        let f = |name: &str, vocab, offset, multi_hot, column| FieldInfo {
            name: name.into(),
            table: name.into(),
            vocab_size: vocab,
            dim: 3,
            offset,
            multi_hot,
            column,
            roles: vec![],
        };
        vec![f("user", 5, 0, false, 0), f("tags", 6, 3, true, 0)]
    }

    fn batch() -> Batch {
        // Row 0 and 2 share user 3; tags repeat ids across rows and within row 1.
        Batch {
            len: 4,
            cat: vec![3, 1, 3, 4],
            multi: vec![Jagged {
                offsets: vec![0, 2, 5, 5, 6],
                values: vec![2, 5, 2, 2, 3, 5],
            }],
            labels: vec![1.0, 0.0, 0.0, 1.0],
            domain: vec![0; 4],
            ..Batch::default()
        }
    }

    /// Σ_rows BCE(Linear(emb), y) with the embeddings as a tensor.
    fn loss(emb: Tensor<2>, lin: &burn::nn::Linear, labels: &[f32], device: &Device) -> Tensor<1> {
        let logits = lin.forward(emb);
        let y = tensor(labels.to_vec(), [labels.len(), 1], device);
        bce_with_logits(logits, y).sum()
    }

    #[test]
    fn sparse_gradient_matches_finite_differences() {
        let cfg = EmbeddingConfig {
            init_std: 0.7,
            optimizer: SparseOptimizer::Sgd,
            ..EmbeddingConfig::default()
        };
        let fields = fields();
        let mut store = EmbeddingStore::new(&fields, &cfg, &mut Rng::new(5));
        let before: Vec<Vec<f32>> = store.tables().map(|t| t.3.to_vec()).collect();
        let ad = cpu().autodiff();
        let plain = cpu();
        let lin = linear(
            6,
            1,
            crate::init::WeightInit::XavierUniform,
            &mut Rng::new(9),
            &ad,
        );
        let lin_plain = lin.clone().valid();
        let b = batch();
        let mut buf = Vec::new();
        store.lookup(&b, &mut buf).unwrap();
        let leaf = Tensor::<2>::from_data(TensorData::new(buf.clone(), [4, 6]), &ad).require_grad();
        let grads = loss(leaf.clone(), &lin, &b.labels, &ad).backward();
        let g = leaf
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        // SGD with lr = 1: new = old − grad, so the applied gradient is old − new.
        store.apply_gradient(&b, &g, 1.0, 0.0);
        let after: Vec<Vec<f32>> = store.tables().map(|t| t.3.to_vec()).collect();

        let eps = 1e-2f32;
        let mut checked = 0;
        for (ti, table) in before.iter().enumerate() {
            for k in 0..table.len() {
                let mut l = [0f64; 2];
                for (s, sign) in [1.0f32, -1.0].iter().enumerate() {
                    let mut probe = EmbeddingStore::new(&fields, &cfg, &mut Rng::new(5));
                    let mut vals = table.clone();
                    vals[k] += sign * eps;
                    let (name, rows, dim) = {
                        let t = probe.tables().nth(ti).unwrap();
                        (t.0.to_string(), t.1, t.2)
                    };
                    probe.load_table(&name, rows, dim, &vals).unwrap();
                    let mut pb = Vec::new();
                    probe.lookup(&b, &mut pb).unwrap();
                    let e = Tensor::<2>::from_data(TensorData::new(pb, [4, 6]), &plain);
                    l[s] = loss(e, &lin_plain, &b.labels, &plain).into_scalar::<f32>() as f64;
                }
                let fd = (l[0] - l[1]) / (2.0 * eps as f64);
                let applied = (table[k] - after[ti][k]) as f64;
                assert!(
                    (fd - applied).abs() < 2e-3 + 1e-2 * fd.abs(),
                    "table {ti} entry {k}: finite difference {fd}, sparse update {applied}"
                );
                if fd.abs() > 1e-4 {
                    checked += 1;
                }
            }
        }
        assert!(checked >= 12, "only {checked} entries had a gradient");
        // Untouched rows (user 0, 2; tags 0, 1, 4) must not move.
        assert_eq!(before[0][0..3], after[0][0..3]);
        assert_eq!(before[1][12..15], after[1][12..15]);
    }

    #[test]
    fn sparse_adam_matches_dense_adam_on_a_touched_row() {
        // One row, gradients g_t; reference: PyTorch Adam formulas written out in f64.
        let fields = vec![FieldInfo {
            name: "f".into(),
            table: "f".into(),
            vocab_size: 3,
            dim: 1,
            offset: 0,
            multi_hot: false,
            column: 0,
            roles: vec![],
        }];
        let cfg = EmbeddingConfig {
            init_std: 0.0,
            ..EmbeddingConfig::default()
        };
        let mut store = EmbeddingStore::new(&fields, &cfg, &mut Rng::new(1));
        let b = Batch {
            len: 1,
            cat: vec![2],
            domain: vec![0],
            labels: vec![0.0],
            ..Batch::default()
        };
        let (lr, b1, b2, eps) = (0.1f64, 0.9f64, 0.999f64, 1e-8f64);
        let (mut w, mut m, mut v) = (0.0f64, 0.0, 0.0);
        for (t, g) in [0.5f64, -1.0, 0.25, 2.0].iter().enumerate() {
            store.apply_gradient(&b, &[*g as f32], lr, 0.0);
            let t = (t + 1) as i32;
            m = b1 * m + (1.0 - b1) * g;
            v = b2 * v + (1.0 - b2) * g * g;
            w -= lr / (1.0 - b1.powi(t)) * m / (v.sqrt() / (1.0 - b2.powi(t)).sqrt() + eps);
        }
        let got = store.tables().next().unwrap().3[2] as f64;
        assert!((got - w).abs() < 1e-5, "sparse adam {got}, reference {w}");
        assert_eq!(
            store.tables().next().unwrap().3[0],
            0.0,
            "untouched row moved"
        );
    }

    /// `adam_dense` is `torch.optim.Adam` (L2 weight decay) on the whole table: a row the
    /// batches touch only at step 1 keeps moving afterwards on its decaying moment and its
    /// weight-decay gradient; the sparse Adam leaves it where step 1 put it.
    #[test]
    fn dense_adam_moves_every_row_as_torch_adam() {
        let fields = vec![FieldInfo {
            name: "f".into(),
            table: "f".into(),
            vocab_size: 3,
            dim: 1,
            offset: 0,
            multi_hot: false,
            column: 0,
            roles: vec![],
        }];
        let batch = |id: u32| Batch {
            len: 1,
            cat: vec![id],
            domain: vec![0],
            labels: vec![0.0],
            ..Batch::default()
        };
        let (lr, b1, b2, eps, wd) = (0.1f64, 0.9f64, 0.999f64, 1e-8f64, 0.01f64);
        let init = |opt| {
            let cfg = EmbeddingConfig {
                init_std: 1.0,
                optimizer: opt,
                ..EmbeddingConfig::default()
            };
            EmbeddingStore::new(&fields, &cfg, &mut Rng::new(1))
        };
        let mut dense = init(SparseOptimizer::AdamDense);
        let mut sparse = init(SparseOptimizer::Adam);
        let w0: Vec<f64> = dense
            .tables()
            .next()
            .unwrap()
            .3
            .iter()
            .map(|&x| x as f64)
            .collect();
        // reference for every row: row 2 gets gradient 0.5 at step 1, then only batches of row 1
        let grads = [
            [0.0, 0.0, 0.5],
            [0.0, -1.0, 0.0],
            [0.0, 0.25, 0.0],
            [0.0, 2.0, 0.0],
        ];
        let (mut w, mut m, mut v) = (w0.clone(), vec![0.0; 3], vec![0.0; 3]);
        for (t, g) in grads.iter().enumerate() {
            let id = if t == 0 { 2 } else { 1 };
            dense.apply_gradient(&batch(id), &[g[id as usize] as f32], lr, wd);
            sparse.apply_gradient(&batch(id), &[g[id as usize] as f32], lr, wd);
            let t = (t + 1) as i32;
            for r in 0..3 {
                let g = g[r] + wd * w[r];
                m[r] = b1 * m[r] + (1.0 - b1) * g;
                v[r] = b2 * v[r] + (1.0 - b2) * g * g;
                w[r] -= lr / (1.0 - b1.powi(t)) * m[r]
                    / (v[r].sqrt() / (1.0 - b2.powi(t)).sqrt() + eps);
            }
        }
        let got = dense.tables().next().unwrap().3.to_vec();
        for r in 0..3 {
            assert!(
                (got[r] as f64 - w[r]).abs() < 1e-5,
                "row {r}: {got:?} vs {w:?}"
            );
            assert!(
                (w[r] - w0[r]).abs() > 1e-3,
                "row {r} did not move in the reference"
            );
        }
        let sp = sparse.tables().next().unwrap().3.to_vec();
        assert_eq!(
            sp[0] as f64, w0[0],
            "sparse Adam moved a row no batch holds"
        );
        assert!(
            (sp[2] as f64 - got[2] as f64).abs() > 1e-3,
            "row 2 should differ after step 1"
        );
    }

    /// Sparse Adagrad and sparse Adam with L2 weight decay against PyTorch's formulas written
    /// out in f64, on a row touched at steps 1, 2 and 4 (a step without the row leaves it and
    /// its state alone; Adam's bias correction still counts every step of the store).
    #[test]
    fn sparse_adagrad_and_sparse_adam_with_weight_decay_follow_the_formulas() {
        let fields = vec![FieldInfo {
            name: "f".into(),
            table: "f".into(),
            vocab_size: 3,
            dim: 2,
            offset: 0,
            multi_hot: false,
            column: 0,
            roles: vec![],
        }];
        let batch = |id: u32| Batch {
            len: 1,
            cat: vec![id],
            domain: vec![0],
            labels: vec![0.0],
            ..Batch::default()
        };
        // (id, gradient of that row) per step
        let steps = [
            (1u32, [0.5, -0.2]),
            (1, [-1.0, 0.3]),
            (2, [0.7, 0.7]),
            (1, [0.25, 2.0]),
        ];
        let (lr, wd, b1, b2) = (0.1f64, 0.05f64, 0.9f64, 0.999f64);
        for opt in [SparseOptimizer::Adagrad, SparseOptimizer::Adam] {
            let eps = if opt == SparseOptimizer::Adagrad {
                1e-10
            } else {
                1e-8
            };
            let cfg = EmbeddingConfig {
                init_std: 1.0,
                optimizer: opt,
                eps,
                ..EmbeddingConfig::default()
            };
            let mut store = EmbeddingStore::new(&fields, &cfg, &mut Rng::new(3));
            let w0: Vec<f64> = store
                .tables()
                .next()
                .unwrap()
                .3
                .iter()
                .map(|&x| x as f64)
                .collect();
            let mut w = w0.clone();
            let (mut s1, mut s2) = (vec![0.0f64; 6], vec![0.0f64; 6]);
            for (t, (id, g)) in steps.iter().enumerate() {
                let g32: Vec<f32> = g.iter().map(|&x| x as f32).collect();
                store.apply_gradient(&batch(*id), &g32, lr, wd);
                let t = (t + 1) as i32;
                for (k, &gk) in g.iter().enumerate() {
                    let i = *id as usize * 2 + k;
                    let g = gk + wd * w[i];
                    match opt {
                        SparseOptimizer::Adagrad => {
                            s1[i] += g * g;
                            w[i] -= lr * g / (s1[i].sqrt() + eps);
                        }
                        _ => {
                            s1[i] = b1 * s1[i] + (1.0 - b1) * g;
                            s2[i] = b2 * s2[i] + (1.0 - b2) * g * g;
                            w[i] -= lr / (1.0 - b1.powi(t)) * s1[i]
                                / (s2[i].sqrt() / (1.0 - b2.powi(t)).sqrt() + eps);
                        }
                    }
                }
            }
            let got = store.tables().next().unwrap().3.to_vec();
            for i in 0..6 {
                assert!(
                    (got[i] as f64 - w[i]).abs() < 1e-5,
                    "{opt:?} entry {i}: {got:?} vs {w:?}"
                );
            }
            // Row 0 was never touched; rows 1 and 2 moved, and weight decay made a difference
            // (the same steps without it end elsewhere).
            assert_eq!(got[0..2], [w0[0] as f32, w0[1] as f32]);
            let mut plain = EmbeddingStore::new(&fields, &cfg, &mut Rng::new(3));
            for (id, g) in &steps {
                let g32: Vec<f32> = g.iter().map(|&x| x as f32).collect();
                plain.apply_gradient(&batch(*id), &g32, lr, 0.0);
            }
            let p = plain.tables().next().unwrap().3.to_vec();
            assert!(
                (p[2] - got[2]).abs() > 1e-4,
                "{opt:?}: weight decay had no effect"
            );
        }
    }

    #[test]
    fn out_of_range_id_is_an_error_naming_the_field() {
        let fields = fields();
        let store = EmbeddingStore::new(&fields, &EmbeddingConfig::default(), &mut Rng::new(1));
        let mut b = batch();
        b.cat[2] = 99;
        let err = store.lookup(&b, &mut Vec::new()).unwrap_err().to_string();
        assert!(
            err.contains("`user`") && err.contains("99") && err.contains("batch row 2"),
            "{err}"
        );
    }
}
