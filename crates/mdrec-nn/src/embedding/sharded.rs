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
//! Dynamic tables (stream training) are not sharded.

use super::*;
use crate::collective::{self, owner, shard_rows, take_shard, Collective};
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
    /// Shard every static table of at least `min_rows` rows row-wise over `size` processes,
    /// keeping the rows (and optimizer state) of `rank`; returns the names of the sharded
    /// tables. Smaller tables, and the tables of a store that is dynamic, stay whole
    /// (replicated on every rank).
    pub fn shard(&mut self, rank: usize, size: usize, min_rows: usize) -> Vec<String> {
        let mut names = Vec::new();
        if size <= 1 || rank >= size {
            return names;
        }
        for t in &mut self.tables {
            if t.dynamic.is_some() || t.shard.is_some() || t.rows < min_rows.max(size) {
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
        names
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
            let sharded = self.tables[f.table].shard.is_some();
            let presum = sharded && self.presum;
            at.clear();
            for_each_id(self.pooling, f, batch, |r, id, scale| {
                let src = &grad[r * width + f.offset..r * width + f.offset + f.dim];
                if presum {
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
                if sharded {
                    send(owner(id, size).0);
                } else {
                    (0..size).for_each(&mut send);
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
        for (k, f) in self.fields.iter().enumerate() {
            let t = &mut self.tables[f.table];
            for (from, (counts, ids, id_at, g_at)) in parts.iter_mut().enumerate() {
                let c = counts[k] as usize;
                for &id in &ids[*id_at..*id_at + c] {
                    if t.resolve(id).is_none() {
                        return Err(format!(
                            "embedding exchange: rank {from} sent a gradient for id {id} of table `{}`, which this rank does not hold",
                            t.name
                        ));
                    }
                    Self::accumulate(t, id, &grads_in[from][*g_at..*g_at + f.dim], 1.0);
                    *g_at += f.dim;
                }
                *id_at += c;
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
