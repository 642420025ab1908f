//! Tables sharded row-wise across the process group of data-parallel training.
//!
//! A sharded table's rows are dealt to the ranks by [`owner`] (`id mod N`); each rank keeps
//! its rows with their optimizer state, so a table's memory is divided by N. Every rank
//! computes its own share of the batch:
//!
//! 1. **Lookup** ([`EmbeddingStore::lookup`]): each rank sends every owner the ids of its share
//!    that the owner holds (one all-to-all of ids, with a count per field in front), the owners
//!    answer with the rows (one all-to-all of rows), and each rank pools them as one process
//!    would. Replicated tables (small ones, or sharding off) are read locally.
//! 2. **Update** ([`EmbeddingStore::apply_gradient_routed`]): each rank sends each row
//!    gradient of its share, already multiplied by its pooling weight, to the row's owner
//!    (for a replicated table: to every rank), with the ids. Each rank accumulates what it
//!    receives field by field, ranks in order, rows in order: exactly the order one process
//!    accumulates the whole batch in, so the sums, and the optimizer steps on them, are the
//!    same bits as with replicated tables.
//!
//! A lookup asks each owner for each distinct id of a field once per step (a hot id's row
//! travels once, however often the share repeats it). Gradients travel once per occurrence:
//! summing a row's gradients before sending would change the order of the sums, and with it
//! the bits. `train.embedding.presum_gradients` sums them anyway (each rank sends one
//! gradient per distinct id and field), for fewer bytes and results equal up to rounding.
//!
//! **Dynamic tables** (stream training) are sharded the same way: rank r holds the ids
//! `id mod N = r` under shard keys `2 + id / N` (a map of `1/N` of the id space), with its own
//! part of the row capacity, its own count-min sketch (the same hashes, so the shards' sketches
//! add up to one table's) and its own admission stream. Admission runs on every rank over the
//! whole global batch, each rank admitting and counting only its ids, before the lookup asks
//! the owners for rows. PAD and OOV are held by every rank: their gradients go to every rank
//! (as for a replicated table), and the gradient of an id whose owner holds no row for it
//! (it reads OOV) is summed over the group into every rank's OOV row once per step, so the
//! OOV rows stay equal and a new row copied from OOV (`new_rows = "oov"`) starts where one
//! process's would. With every id admitted and unbounded capacity this trains the bits of
//! replicated tables; with bounded capacity each shard evicts among its own rows.
//!
//! A dynamic shard's state joins into one table ([`StoreState::merge`]: shard 0's PAD and
//! OOV rows, then every shard's rows in rank order, one id map over the whole id space, the
//! sketches side by side) that keeps each shard's layout, free rows, counters and RNG, so
//! the same number of ranks continues from it exactly; any other number of ranks, or one
//! process, takes the rows of its ids from it ([`fit_dynamic_state`]).

use super::*;
use crate::collective::{self, owner, shard_rows, take_shard, Collective};
use crate::dynamic::shard_id;
use std::sync::Arc;

/// The group a sharded store exchanges with, checked against the store's shard layout.
fn group_of(shard: (usize, usize)) -> Result<Arc<dyn Collective>, String> {
    let g = collective::group().ok_or_else(|| {
        format!(
            "embedding tables are sharded over {} processes, but this process is not in a group",
            shard.1
        )
    })?;
    if (g.rank(), g.size()) != shard {
        return Err(format!(
            "embedding tables are sharded for rank {} of {}, this process is rank {} of {}",
            shard.0,
            shard.1,
            g.rank(),
            g.size()
        ));
    }
    Ok(g)
}

/// Splits a received message into its per-field counts and its ids, checking that they agree.
fn split_counts(msg: &[u32], fields: usize, from: usize) -> Result<(&[u32], &[u32]), String> {
    if msg.len() < fields {
        return Err(format!(
            "embedding exchange: rank {from} sent {} values, fewer than the {fields} field counts",
            msg.len()
        ));
    }
    let (counts, ids) = msg.split_at(fields);
    let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
    if total != ids.len() as u64 {
        return Err(format!(
            "embedding exchange: rank {from} announced {total} ids and sent {}",
            ids.len()
        ));
    }
    Ok((counts, ids))
}

impl EmbeddingStore {
    /// Shard every table of at least `min_rows` rows (ids, for a dynamic table) row-wise over
    /// `size` processes, keeping the rows (and optimizer state, and a dynamic table's map and
    /// statistics) of `rank`; returns the names of the sharded tables. Smaller tables stay
    /// whole (replicated on every rank).
    pub fn shard(
        &mut self,
        rank: usize,
        size: usize,
        min_rows: usize,
    ) -> Result<Vec<String>, String> {
        let mut names = Vec::new();
        if size <= 1 || rank >= size {
            return Ok(names);
        }
        for t in &mut self.tables {
            if t.shard.is_some() || t.key_space() < min_rows.max(size) {
                continue;
            }
            if let (Some(d), Some(policy)) = (&t.dynamic, &self.policy) {
                let whole = t.export();
                let n_keys = t.key_space();
                let mut part = Dynamic::new(
                    crate::dynamic::shard_keys(n_keys, size),
                    0,
                    policy,
                    d.rng.clone(),
                );
                part.sketch = vec![0.0; d.sketch.len()];
                t.dynamic = Some(part);
                t.shard = Some((rank, size));
                t.global_rows = n_keys;
                let moments = (!t.s1.is_empty(), !t.s2.is_empty());
                t.import(&whole, moments.0, moments.1)?;
                names.push(t.name.clone());
                continue;
            }
            let dim = t.dim;
            t.global_rows = t.rows;
            t.rows = shard_rows(t.global_rows, rank, size);
            t.weight = take_shard(&t.weight, dim, rank, size);
            if !t.s1.is_empty() {
                t.s1 = take_shard(&t.s1, dim, rank, size);
            }
            if !t.s2.is_empty() {
                t.s2 = take_shard(&t.s2, dim, rank, size);
            }
            t.slot = vec![UNTOUCHED; t.rows];
            t.shard = Some((rank, size));
            names.push(t.name.clone());
        }
        Ok(names)
    }

    /// Whether any table is sharded across a process group.
    pub fn is_sharded(&self) -> bool {
        self.tables.iter().any(|t| t.shard.is_some())
    }

    /// Whether table `name` is sharded (this process holds only its rows).
    pub fn is_table_sharded(&self, name: &str) -> bool {
        self.tables
            .iter()
            .any(|t| t.name == name && t.shard.is_some())
    }

    /// The shard layout `(rank, size)` of the sharded tables.
    fn shard_layout(&self) -> Option<(usize, usize)> {
        self.tables.iter().find_map(|t| t.shard)
    }

    /// [`lookup`](Self::lookup) of a store with sharded tables (see the module docs).
    pub(super) fn lookup_routed(&self, batch: &Batch, out: &mut [f32]) -> Result<(), LookupError> {
        let layout = self.shard_layout().expect("called for a sharded store");
        let g = group_of(layout).map_err(LookupError::Exchange)?;
        let size = layout.1;
        let t0 = std::time::Instant::now();
        let sharded: Vec<&FieldSlot> = self
            .fields
            .iter()
            .filter(|f| self.tables[f.table].shard.is_some())
            .collect();
        let n = sharded.len();
        // Per owner: a count per sharded field, then the field's distinct ids in first-seen
        // order. `slots[k]` holds, per occurrence of field k in `for_each_id` order, the
        // index of its id among those the owner is asked for the field.
        let mut ask: Vec<Vec<u32>> = vec![vec![0; n]; size];
        let mut slots: Vec<Vec<u32>> = Vec::with_capacity(n);
        let mut index: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
        for f in &self.fields {
            let t = &self.tables[f.table];
            if t.shard.is_none() {
                self.lookup_field(f, batch, out)?;
                continue;
            }
            let k = slots.len();
            let mut slot = Vec::new();
            let mut bad = None;
            index.clear();
            for_each_id(self.pooling, f, batch, |r, id, _| {
                if (id as usize) >= t.global_rows {
                    bad.get_or_insert((r, id));
                    return;
                }
                let (o, _) = owner(id, size);
                let j = *index.entry(id).or_insert_with(|| {
                    ask[o][k] += 1;
                    ask[o].push(id);
                    ask[o][k] - 1
                });
                slot.push(j);
            });
            if let Some((row, id)) = bad {
                return Err(LookupError::Id(IdOutOfRange {
                    field: f.name.clone(),
                    table: t.name.clone(),
                    id,
                    rows: t.global_rows,
                    row,
                }));
            }
            slots.push(slot);
        }
        let asked = g.all_to_all_u32(&ask);
        let mut answer = Vec::with_capacity(size);
        for (from, msg) in asked.iter().enumerate() {
            let (counts, ids) = split_counts(msg, n, from).map_err(LookupError::Exchange)?;
            let mut rows = Vec::new();
            let mut at = 0;
            for (f, &c) in sharded.iter().zip(counts) {
                let t = &self.tables[f.table];
                for &id in &ids[at..at + c as usize] {
                    let row = t.resolve(id).ok_or_else(|| {
                        LookupError::Exchange(format!(
                            "embedding exchange: rank {from} asked for id {id} of table `{}`, which this rank does not hold",
                            t.name
                        ))
                    })?;
                    rows.extend_from_slice(&t.weight[row * t.dim..(row + 1) * t.dim]);
                }
                at += c as usize;
            }
            answer.push(rows);
        }
        let got = g.all_to_all(&answer);
        let sent: usize = (0..size)
            .filter(|&d| d != layout.0)
            .map(|d| 4 * (ask[d].len() + answer[d].len()))
            .sum();
        // Where field k's rows start in each owner's answer.
        let mut base = vec![0usize; size];
        for (k, f) in sharded.iter().enumerate() {
            let mut short = None;
            let mut next = slots[k].iter();
            for_each_id(self.pooling, f, batch, |r, id, _| {
                let (o, _) = owner(id, size);
                let j = *next.next().expect("one slot per occurrence") as usize;
                let at = base[o] + j * f.dim;
                let Some(src) = got[o].get(at..at + f.dim) else {
                    short.get_or_insert(o);
                    return;
                };
                let dst = &mut out[r * self.width + f.offset..r * self.width + f.offset + f.dim];
                if f.multi_hot {
                    dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                } else {
                    dst.copy_from_slice(src);
                }
            });
            if let Some(o) = short {
                return Err(LookupError::Exchange(format!(
                    "embedding exchange: rank {o} answered fewer rows of field `{}` than asked",
                    f.name
                )));
            }
            for (b, a) in base.iter_mut().zip(&ask) {
                *b += a[k] as usize * f.dim;
            }
            if f.multi_hot && self.pooling == Pooling::Mean && batch.len > 0 {
                let col = &batch.multi[f.column];
                for r in 0..batch.len {
                    let len = (col.offsets[r + 1] - col.offsets[r]) as usize;
                    if len > 1 {
                        let inv = 1.0 / len as f32;
                        out[r * self.width + f.offset..r * self.width + f.offset + f.dim]
                            .iter_mut()
                            .for_each(|d| *d *= inv);
                    }
                }
            }
        }
        collective::note_embedding(sent as u64, t0.elapsed().as_nanos() as u64);
        Ok(())
    }

    /// [`apply_gradient`](Self::apply_gradient) in a process group: `batch` is this process's
    /// share of the global batch and `grad` its looked-up buffer's gradient. Each row gradient
    /// goes to the rank that holds the row (to every rank for a replicated table), every rank
    /// accumulates the global batch's gradients of its rows in one process's order, and
    /// applies the optimizer step. A collective: every rank calls it for the same step.
    pub fn apply_gradient_routed(
        &mut self,
        batch: &Batch,
        grad: &[f32],
        lr: f64,
        weight_decay: f64,
    ) -> Result<(), String> {
        let g = collective::group().ok_or("routed embedding update outside a process group")?;
        if let Some(layout) = self.shard_layout() {
            group_of(layout)?;
        }
        if grad.len() != batch.len * self.width {
            return Err(format!(
                "embedding gradient has {} values for {} rows × width {}",
                grad.len(),
                batch.len,
                self.width
            ));
        }
        let t0 = std::time::Instant::now();
        let (rank, size, width) = (g.rank(), g.size(), self.width);
        let n = self.fields.len();
        let mut ids: Vec<Vec<u32>> = vec![vec![0; n]; size];
        let mut grads: Vec<Vec<f32>> = vec![Vec::new(); size];
        // With `presum`: where each id of the field already has its gradient in its owner's
        // message.
        let mut at: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
        for (k, f) in self.fields.iter().enumerate() {
            let t = &self.tables[f.table];
            let sharded = t.shard.is_some();
            // PAD and OOV of a sharded dynamic table are held by every rank
            let everywhere = |id: u32| !sharded || (t.dynamic.is_some() && id < RESERVED);
            let presum = sharded && self.presum;
            at.clear();
            for_each_id(self.pooling, f, batch, |r, id, scale| {
                let src = &grad[r * width + f.offset..r * width + f.offset + f.dim];
                if presum && !everywhere(id) {
                    let d = owner(id, size).0;
                    if let Some(&i) = at.get(&id) {
                        let dst = &mut grads[d][i..i + f.dim];
                        dst.iter_mut().zip(src).for_each(|(g, x)| *g += x * scale);
                        return;
                    }
                    at.insert(id, grads[d].len());
                }
                let mut send = |d: usize| {
                    ids[d][k] += 1;
                    ids[d].push(id);
                    grads[d].extend(src.iter().map(|x| x * scale));
                };
                if everywhere(id) {
                    (0..size).for_each(&mut send);
                } else {
                    send(owner(id, size).0);
                }
            });
        }
        let sent: usize = ids
            .iter()
            .zip(&grads)
            .enumerate()
            .filter(|(d, _)| *d != rank)
            .map(|(_, (i, g))| 4 * (i.len() + g.len()))
            .sum();
        let ids_in = g.all_to_all_u32(&ids);
        let grads_in = g.all_to_all(&grads);
        // Per source: its counts, its ids and where each field's entries start.
        let mut parts = Vec::with_capacity(size);
        for (from, msg) in ids_in.iter().enumerate() {
            let (counts, ids) = split_counts(msg, n, from)?;
            let want: usize = self
                .fields
                .iter()
                .zip(counts)
                .map(|(f, &c)| f.dim * c as usize)
                .sum();
            if grads_in[from].len() != want {
                return Err(format!(
                    "embedding exchange: rank {from} sent {} gradient values for {want}",
                    grads_in[from].len()
                ));
            }
            parts.push((counts, ids, 0usize, 0usize));
        }
        // Per sharded dynamic table: the summed gradient of the ids that read OOV because
        // their owner holds no row for them, and their count (empty for other tables).
        let mut strays: Vec<Vec<f32>> = self
            .tables
            .iter()
            .map(|t| match (&t.dynamic, t.shard) {
                (Some(_), Some(_)) => vec![0.0; t.dim + 1],
                _ => Vec::new(),
            })
            .collect();
        for (k, f) in self.fields.iter().enumerate() {
            let t = &mut self.tables[f.table];
            let stray = &mut strays[f.table];
            for (from, (counts, ids, id_at, g_at)) in parts.iter_mut().enumerate() {
                let c = counts[k] as usize;
                for &id in &ids[*id_at..*id_at + c] {
                    let Some(row) = t.resolve(id) else {
                        return Err(format!(
                            "embedding exchange: rank {from} sent a gradient for id {id} of table `{}`, which this rank does not hold",
                            t.name
                        ));
                    };
                    let g = &grads_in[from][*g_at..*g_at + f.dim];
                    if !stray.is_empty() && id >= RESERVED && row == DEFAULT_ROW as usize {
                        let (sum, n) = stray.split_at_mut(f.dim);
                        sum.iter_mut().zip(g).for_each(|(s, x)| *s += x);
                        n[0] += 1.0;
                    } else {
                        Self::accumulate(t, id, g, 1.0);
                    }
                    *g_at += f.dim;
                }
                *id_at += c;
            }
        }
        if strays.iter().any(|s| !s.is_empty()) {
            // One sum over the group; every rank then adds the same values to its OOV row.
            let mut buf: Vec<f32> = strays.concat();
            g.sum(&mut buf);
            let mut at = 0;
            for (t, s) in self.tables.iter_mut().zip(&strays) {
                if s.is_empty() {
                    continue;
                }
                let (sum, n) = buf[at..at + s.len()].split_at(t.dim);
                if n[0] > 0.0 {
                    Self::accumulate(t, DEFAULT_ROW, sum, 1.0);
                }
                at += s.len();
            }
        }
        self.optimizer_step(lr, weight_decay);
        collective::note_embedding(sent as u64, t0.elapsed().as_nanos() as u64);
        Ok(())
    }
}

impl EmbeddingStore {
    /// The shard this process holds, when tables are sharded.
    pub fn shard_info(&self) -> Option<ShardInfo> {
        let (rank, size) = self.shard_layout()?;
        Some(ShardInfo {
            rank,
            size,
            tables: self
                .tables
                .iter()
                .filter(|t| t.shard.is_some())
                .map(|t| ShardedTable {
                    name: t.name.clone(),
                    rows: t.global_rows,
                    dim: t.dim,
                })
                .collect(),
        })
    }
}

impl EmbeddingStore {
    /// [`table_stats`](Self::table_stats) of the whole tables: a sharded table's rows, bytes,
    /// capacity, admissions and evictions summed over the group (PAD and OOV of a dynamic
    /// table counted once). A collective when tables are sharded.
    pub fn group_table_stats(&self) -> Result<Vec<TableStats>, String> {
        let mut stats = self.table_stats();
        let Some(layout) = self.shard_layout() else {
            return Ok(stats);
        };
        let g = group_of(layout)?;
        let size = layout.1;
        let fields = |s: &TableStats| {
            [
                s.live_rows as u64,
                s.allocated_rows as u64,
                s.capacity.unwrap_or(0) as u64,
                s.admitted,
                s.evicted,
                s.bytes as u64,
                s.map_bytes as u64,
            ]
        };
        let mine: Vec<u32> = stats.iter().flat_map(fields).flat_map(words).collect();
        let all = g.all_to_all_u32(&vec![mine.clone(); size]);
        if all.iter().any(|m| m.len() != mine.len()) {
            return Err("table statistics: the ranks hold different tables".into());
        }
        for (k, (s, t)) in stats.iter_mut().zip(&self.tables).enumerate() {
            if t.shard.is_none() {
                continue;
            }
            let mut sum = [0u64; 7];
            for m in &all {
                for (i, v) in sum.iter_mut().enumerate() {
                    let at = 2 * (k * 7 + i);
                    *v += from_words(m[at], m[at + 1]);
                }
            }
            // PAD and OOV rows are on every rank
            let extra = if t.dynamic.is_some() {
                (size - 1) * RESERVED as usize
            } else {
                0
            };
            s.live_rows = sum[0] as usize - extra;
            s.allocated_rows = sum[1] as usize - extra;
            s.capacity = s.capacity.map(|_| sum[2] as usize);
            (s.admitted, s.evicted) = (sum[3], sum[4]);
            (s.bytes, s.map_bytes) = (sum[5] as usize, sum[6] as usize);
        }
        Ok(stats)
    }

    /// The whole store on rank 0: the shards of every sharded table gathered there and joined
    /// ([`StoreState::merge`]) into a store of whole tables, for saving or publishing a model
    /// outside the group (rank 0 holds the tables whole once). A collective when tables are
    /// sharded, in which the other ranks get a copy of their own store; a copy otherwise.
    pub fn joined(&self) -> Result<EmbeddingStore, String> {
        let Some(layout) = self.shard_layout() else {
            return Ok(self.clone());
        };
        let g = group_of(layout)?;
        let words = encode_state(&self.export_state());
        let send: Vec<Vec<u32>> = (0..layout.1)
            .map(|d| if d == 0 { words.clone() } else { Vec::new() })
            .collect();
        let all = g.all_to_all_u32(&send);
        if layout.0 != 0 {
            return Ok(self.clone());
        }
        let parts: Vec<StoreState> = all
            .iter()
            .enumerate()
            .map(|(r, w)| decode_state(w).map_err(|e| format!("the state rank {r} sent: {e}")))
            .collect::<Result<_, _>>()?;
        let state = StoreState::merge(&parts)?;
        let mut whole = self.clone();
        for t in &mut whole.tables {
            if t.shard.take().is_none() {
                continue;
            }
            t.rows = t.global_rows;
            if let (Some(part), Some(policy)) = (&t.dynamic, &self.policy) {
                // the import below sets the capacity, counters and RNG
                let mut d = Dynamic::new(t.global_rows, 0, policy, part.rng.clone());
                d.sketch = vec![0.0; part.sketch.len()];
                t.dynamic = Some(d);
            }
        }
        whole.import_state(&state)?;
        Ok(whole)
    }
}

/// A u64 as two words of the group's `u32` exchanges, low first.
fn words(v: u64) -> [u32; 2] {
    [v as u32, (v >> 32) as u32]
}

/// [`words`]' inverse.
fn from_words(lo: u32, hi: u32) -> u64 {
    u64::from(lo) | (u64::from(hi) << 32)
}

/// A store state as 32-bit words (the group's exchanges carry `u32`s): a JSON header with the
/// arrays' names, kinds and lengths, then their values (u64 as two words, low first).
fn encode_state(s: &StoreState) -> Vec<u32> {
    let tables: Vec<serde_json::Value> = s
        .tables
        .iter()
        .map(|t| {
            let arrays: Vec<(String, &str, usize)> = t
                .arrays
                .iter()
                .map(|(n, a)| match a {
                    StateArray::F32(v) => (n.clone(), "f32", v.len()),
                    StateArray::U32(v) => (n.clone(), "u32", v.len()),
                    StateArray::U64(v) => (n.clone(), "u64", v.len()),
                })
                .collect();
            serde_json::json!({"name": t.name, "dim": t.dim, "arrays": arrays})
        })
        .collect();
    let header = serde_json::json!({
        "step": s.step, "window": s.window, "shard": s.shard, "tables": tables
    })
    .to_string()
    .into_bytes();
    let mut out = vec![header.len() as u32];
    out.extend(header.chunks(4).map(|c| {
        let mut b = [0u8; 4];
        b[..c.len()].copy_from_slice(c);
        u32::from_le_bytes(b)
    }));
    for t in &s.tables {
        for (_, a) in &t.arrays {
            match a {
                StateArray::F32(v) => out.extend(v.iter().map(|x| x.to_bits())),
                StateArray::U32(v) => out.extend_from_slice(v),
                StateArray::U64(v) => out.extend(v.iter().copied().flat_map(words)),
            }
        }
    }
    out
}

/// [`encode_state`]'s inverse.
fn decode_state(w: &[u32]) -> Result<StoreState, String> {
    #[derive(serde::Deserialize)]
    struct Table {
        name: String,
        dim: usize,
        arrays: Vec<(String, String, usize)>,
    }
    #[derive(serde::Deserialize)]
    struct Header {
        step: u64,
        window: u64,
        shard: Option<ShardInfo>,
        tables: Vec<Table>,
    }
    let len = *w.first().ok_or("empty message")? as usize;
    let words = len.div_ceil(4);
    let bytes: Vec<u8> = w
        .get(1..1 + words)
        .ok_or("message shorter than its header")?
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .take(len)
        .collect();
    let h: Header = serde_json::from_slice(&bytes).map_err(|e| format!("header: {e}"))?;
    let mut at = 1 + words;
    let mut take = |n: usize| -> Result<&[u32], String> {
        let v = w.get(at..at + n).ok_or("message shorter than its arrays")?;
        at += n;
        Ok(v)
    };
    let mut tables = Vec::with_capacity(h.tables.len());
    for t in h.tables {
        let mut arrays = Vec::with_capacity(t.arrays.len());
        for (name, kind, n) in t.arrays {
            let a = match kind.as_str() {
                "f32" => StateArray::F32(take(n)?.iter().map(|&x| f32::from_bits(x)).collect()),
                "u32" => StateArray::U32(take(n)?.to_vec()),
                "u64" => StateArray::U64(
                    take(2 * n)?
                        .chunks_exact(2)
                        .map(|p| from_words(p[0], p[1]))
                        .collect(),
                ),
                other => return Err(format!("array kind `{other}`")),
            };
            arrays.push((name, a));
        }
        tables.push(TableState {
            name: t.name,
            dim: t.dim,
            arrays,
        });
    }
    Ok(StoreState {
        step: h.step,
        window: h.window,
        tables,
        shard: h.shard,
    })
}

impl ShardInfo {
    /// Checks that `infos` are the shards `0..size` of one layout, in rank order.
    pub fn check_set<'a>(infos: impl IntoIterator<Item = &'a ShardInfo>) -> Result<(), String> {
        let infos: Vec<&ShardInfo> = infos.into_iter().collect();
        let Some(first) = infos.first() else {
            return Err("no shards".into());
        };
        if infos.len() != first.size {
            return Err(format!(
                "{} shards of a store sharded over {} processes",
                infos.len(),
                first.size
            ));
        }
        for (r, i) in infos.iter().enumerate() {
            if i.rank != r || i.size != first.size || i.tables != first.tables {
                return Err(format!(
                    "shard {r} of {}: it says rank {} of {} with {} sharded tables, unlike shard 0",
                    first.size,
                    i.rank,
                    i.size,
                    i.tables.len()
                ));
            }
        }
        Ok(())
    }

    /// The sharded table `name`, if it is one.
    pub fn table(&self, name: &str) -> Option<&ShardedTable> {
        self.tables.iter().find(|t| t.name == name)
    }
}

impl StoreState {
    /// The whole store's state from the states of its `size` shards, in rank order: sharded
    /// tables' rows interleaved back ([`collective::interleave`]), whole tables taken from
    /// shard 0 (every rank holds the same).
    pub fn merge(parts: &[StoreState]) -> Result<StoreState, String> {
        let infos: Vec<&ShardInfo> = parts
            .iter()
            .map(|p| p.shard.as_ref().ok_or("a whole store among shards"))
            .collect::<Result<_, _>>()?;
        ShardInfo::check_set(infos.iter().copied())?;
        let first = &parts[0];
        if parts.iter().any(|p| {
            p.step != first.step || p.window != first.window || p.tables.len() != first.tables.len()
        }) {
            return Err("the shards were saved at different steps".into());
        }
        let mut tables = first.tables.clone();
        for (k, table) in tables.iter_mut().enumerate() {
            let Some(st) = infos[0].table(&table.name) else {
                continue;
            };
            if table.arrays.iter().any(|(n, _)| n == "row_of") {
                let shards: Vec<&TableState> = parts.iter().map(|p| &p.tables[k]).collect();
                table.arrays = join_dynamic(&shards, st.rows)
                    .map_err(|e| format!("table `{}`: {e}", table.name))?;
                continue;
            }
            for (name, array) in table.arrays.iter_mut() {
                let StateArray::F32(_) = array else { continue };
                let mut views = Vec::with_capacity(parts.len());
                for p in parts {
                    match p.tables[k].arrays.iter().find(|(n, _)| n == name) {
                        Some((_, StateArray::F32(v))) => views.push(v.as_slice()),
                        _ => {
                            return Err(format!(
                                "a shard of table `{}` lacks its `{name}` array",
                                table.name
                            ))
                        }
                    }
                }
                if views.iter().all(|v| v.is_empty()) {
                    continue;
                }
                let whole = collective::interleave(&views, st.rows, st.dim)
                    .map_err(|e| format!("table `{}`, array `{name}`: {e}", table.name))?;
                *array = StateArray::F32(whole);
            }
        }
        Ok(StoreState {
            step: first.step,
            window: first.window,
            tables,
            shard: None,
        })
    }
}

/// Values per shard in a joined dynamic table's `shards` array: rows, capacity, live,
/// admitted, evicted, free rows, RNG state (4).
const SHARD_META: usize = 10;

/// Per-row arrays of a dynamic table and the values each row has in them (`None`: the row
/// width).
const ROW_ARRAYS: [(&str, Option<usize>); 7] = [
    ("weight", None),
    ("s1", None),
    ("s2", None),
    ("count", Some(1)),
    ("last_step", Some(1)),
    ("last_window", Some(1)),
    ("score", Some(1)),
];

/// `rows` (in order) of per-row array `key` of `t`, `width` values each (an empty array —
/// an optimizer without that moment — stays empty).
fn pick_rows(
    t: &TableState,
    key: &str,
    width: usize,
    rows: &[usize],
) -> Result<StateArray, String> {
    fn take<T: Copy>(
        v: &[T],
        w: usize,
        rows: &[usize],
        t: &TableState,
        key: &str,
    ) -> Result<Vec<T>, String> {
        let mut out = Vec::with_capacity(rows.len() * w);
        for &r in rows {
            out.extend_from_slice(v.get(r * w..(r + 1) * w).ok_or_else(|| {
                format!("saved table `{}`: array `{key}` has no row {r}", t.name)
            })?);
        }
        Ok(out)
    }
    Ok(match t.get(key).ok_or_else(|| t.missing("per-row", key))? {
        StateArray::F32(v) if v.is_empty() => StateArray::F32(Vec::new()),
        StateArray::F32(v) => StateArray::F32(take(v, width, rows, t, key)?),
        StateArray::U64(v) => StateArray::U64(take(v, width, rows, t, key)?),
        StateArray::U32(v) => StateArray::U32(take(v, width, rows, t, key)?),
    })
}

/// Appends the rows of `part` to `whole` for every per-row array (`skip`: rows of `part` left
/// out, PAD and OOV after the first shard).
fn append_rows(
    whole: &mut Vec<(String, StateArray)>,
    part: &TableState,
    skip: usize,
) -> Result<(), String> {
    for (key, w) in ROW_ARRAYS {
        let w = w.unwrap_or(part.dim);
        let src = part.get(key).ok_or_else(|| part.missing("per-row", key))?;
        let dst = match whole.iter_mut().find(|(k, _)| k == key) {
            Some((_, a)) => a,
            None => {
                whole.push((key.to_string(), src.clone()));
                continue;
            }
        };
        match (dst, src) {
            (StateArray::F32(d), StateArray::F32(s)) if !s.is_empty() => d.extend_from_slice(
                s.get(skip * w..)
                    .ok_or("a shard with fewer rows than PAD and OOV")?,
            ),
            (StateArray::F32(_), StateArray::F32(_)) => {}
            (StateArray::U64(d), StateArray::U64(s)) => d.extend_from_slice(
                s.get(skip * w..)
                    .ok_or("a shard with fewer rows than PAD and OOV")?,
            ),
            _ => return Err(format!("array `{key}` differs in type between shards")),
        }
    }
    Ok(())
}

/// One dynamic table from its `size` shards (rank order) over `n_keys` ids (see the module
/// docs).
fn join_dynamic(
    shards: &[&TableState],
    n_keys: usize,
) -> Result<Vec<(String, StateArray)>, String> {
    let size = shards.len();
    let reserved = RESERVED as usize;
    let mut arrays: Vec<(String, StateArray)> = Vec::new();
    let mut row_of = vec![NONE; n_keys.max(reserved)];
    let (mut key_of, mut free, mut sketch) = (Vec::new(), Vec::new(), Vec::new());
    let mut shard_meta = Vec::with_capacity(size * SHARD_META);
    let mut totals = [0u64; 4]; // capacity, live, admitted, evicted
    let mut offset = reserved;
    let first_meta = shards[0].u64s("meta")?;
    for (r, t) in shards.iter().enumerate() {
        let keys = t.u32s("key_of")?;
        let rows = keys.len();
        let meta = t.u64s("meta")?;
        if rows < reserved || meta.len() != 9 {
            return Err(format!("shard {r}: bad id map or meta"));
        }
        append_rows(&mut arrays, t, if r == 0 { 0 } else { reserved })?;
        // a shard row's row in the joined table
        let whole = |lr: u32| -> u32 {
            if lr < RESERVED {
                lr
            } else {
                (offset + lr as usize - reserved) as u32
            }
        };
        for (lr, &k) in keys
            .iter()
            .enumerate()
            .skip(if r == 0 { 0 } else { reserved })
        {
            key_of.push(if k == NONE {
                NONE
            } else {
                shard_id(k, r, size)
            });
            if k != NONE {
                let id = shard_id(k, r, size) as usize;
                if id >= row_of.len() {
                    return Err(format!(
                        "shard {r} holds id {id} of a table of {n_keys} ids"
                    ));
                }
                row_of[id] = whole(lr as u32);
            }
        }
        let own_free = t.u32s("free")?;
        free.extend(own_free.iter().map(|&lr| whole(lr)));
        sketch.extend_from_slice(t.f32s("sketch")?);
        for (total, v) in totals.iter_mut().zip(&meta[..4]) {
            *total += v;
        }
        shard_meta.extend([
            rows as u64,
            meta[0],
            meta[1],
            meta[2],
            meta[3],
            own_free.len() as u64,
        ]);
        shard_meta.extend_from_slice(&meta[5..9]);
        offset += rows - reserved;
    }
    let mut meta = totals.to_vec();
    meta.extend_from_slice(&first_meta[4..9]);
    arrays.extend([
        ("row_of".to_string(), StateArray::U32(row_of)),
        ("key_of".to_string(), StateArray::U32(key_of)),
        ("free".to_string(), StateArray::U32(free)),
        ("sketch".to_string(), StateArray::F32(sketch)),
        ("meta".to_string(), StateArray::U64(meta)),
        ("shards".to_string(), StateArray::U64(shard_meta)),
    ]);
    Ok(arrays)
}

/// A dynamic table's state (whole, or joined from shards) cut to the layout of a table
/// with a sketch of `sketch_len` counters: for `shard = Some((rank, size))` the rows of the
/// ids that rank holds under their shard keys, for `None` the whole table. A state joined
/// from `size` shards gives each rank back exactly its shard (rows, free rows, counters,
/// sketch, RNG); otherwise (re-sharding) a shard takes the live rows of its ids in order, its
/// part of the capacity, the sketches summed and an RNG stream drawn from the saved one, and
/// rank 0 keeps the admission and eviction counts.
pub(super) fn fit_dynamic_state(
    ts: &TableState,
    shard: Option<(usize, usize)>,
    sketch_len: usize,
    n_keys: usize,
) -> Result<TableState, String> {
    let bad = |e: String| format!("saved table `{}`: {e}", ts.name);
    let saved_sketch = ts.f32s("sketch")?;
    // a joined state holds one sketch per shard, a whole one one
    let parts = ts.u64s("shards").map_or(1, |v| v.len() / SHARD_META);
    if sketch_len > 0 && saved_sketch.len() != parts * sketch_len {
        return Err(bad(format!(
            "its sketch has {} counters for {parts} shard(s), this table's {sketch_len} (another sketch_width?)",
            saved_sketch.len()
        )));
    }
    let summed = || {
        let mut s = vec![0.0f32; sketch_len];
        for part in saved_sketch.chunks(sketch_len.max(1)).take(parts) {
            s.iter_mut().zip(part).for_each(|(a, b)| *a += b);
        }
        s
    };
    let Some((rank, size)) = shard else {
        // the whole table: only the sketches change
        let mut out = ts.clone();
        out.arrays.retain(|(k, _)| k != "shards");
        for (k, a) in &mut out.arrays {
            if k == "sketch" {
                *a = StateArray::F32(summed());
            }
        }
        return Ok(out);
    };
    let reserved = RESERVED as usize;
    let keys = ts.u32s("key_of")?;
    let meta = ts.u64s("meta")?;
    if meta.len() != 9 || keys.len() < reserved {
        return Err(bad("bad meta array or id map".into()));
    }
    let layout = ts
        .u64s("shards")
        .ok()
        .filter(|v| v.len() == size * SHARD_META);
    let mut rows: Vec<usize> = (0..reserved).collect();
    let (mut free, new_meta, sketch);
    match layout {
        Some(l) => {
            // exactly the shard that was saved
            let at = |r: usize, i: usize| l[r * SHARD_META + i];
            let start = reserved
                + (0..rank)
                    .map(|r| at(r, 0) as usize - reserved)
                    .sum::<usize>();
            let end = start + at(rank, 0) as usize - reserved;
            if end > keys.len() {
                return Err(bad("the shards' rows exceed the table's".into()));
            }
            rows.extend(start..end);
            let local = |w: u32| w as usize - start + reserved;
            free = Vec::new();
            for &w in ts.u32s("free")? {
                if (start..end).contains(&(w as usize)) {
                    free.push(local(w) as u32);
                }
            }
            if free.len() as u64 != at(rank, 5) {
                return Err(bad(format!(
                    "shard {rank}'s free rows do not match its count"
                )));
            }
            new_meta = vec![
                at(rank, 1),
                at(rank, 2),
                at(rank, 3),
                at(rank, 4),
                meta[4],
                at(rank, 6),
                at(rank, 7),
                at(rank, 8),
                at(rank, 9),
            ];
            sketch = if sketch_len == 0 {
                Vec::new()
            } else {
                saved_sketch[rank * sketch_len..(rank + 1) * sketch_len].to_vec()
            };
        }
        None => {
            rows.extend(
                (reserved..keys.len()).filter(|&w| keys[w] != NONE && owns(keys[w], rank, size)),
            );
            free = Vec::new();
            let saved = Rng::from_state([meta[5], meta[6], meta[7], meta[8]]).next_u64();
            let rng = Rng::for_stream(saved, &format!("embedding/shard-{rank}-of-{size}")).state();
            let first = u64::from(rank == 0);
            new_meta = vec![
                crate::dynamic::shard_capacity(meta[0] as usize, n_keys, rank, size) as u64,
                (rows.len() - reserved) as u64,
                meta[2] * first,
                meta[3] * first,
                meta[4],
                rng[0],
                rng[1],
                rng[2],
                rng[3],
            ];
            sketch = summed();
        }
    }
    let mut key_of = Vec::with_capacity(rows.len());
    let mut row_of = vec![NONE; crate::dynamic::shard_keys(n_keys, size)];
    for (lr, &w) in rows.iter().enumerate() {
        let id = keys[w];
        if id == NONE {
            key_of.push(NONE);
            continue;
        }
        if !owns(id, rank, size) || id as usize >= n_keys {
            return Err(bad(format!(
                "row {w} holds id {id}, which rank {rank} of {size} does not hold"
            )));
        }
        let k = shard_key(id, size);
        key_of.push(k);
        row_of[k as usize] = lr as u32;
    }
    // a shard's arrays only: the whole state's rows are never copied
    let mut arrays = Vec::with_capacity(ROW_ARRAYS.len() + 5);
    for (key, w) in ROW_ARRAYS {
        arrays.push((
            key.to_string(),
            pick_rows(ts, key, w.unwrap_or(ts.dim), &rows)?,
        ));
    }
    arrays.extend([
        ("row_of".to_string(), StateArray::U32(row_of)),
        ("key_of".to_string(), StateArray::U32(key_of)),
        ("free".to_string(), StateArray::U32(free)),
        ("sketch".to_string(), StateArray::F32(sketch)),
        ("meta".to_string(), StateArray::U64(new_meta)),
    ]);
    Ok(TableState {
        name: ts.name.clone(),
        dim: ts.dim,
        arrays,
    })
}
