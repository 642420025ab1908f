//! Encoded columnar data of one split ([`EncodedData`]), batch filling and epoch row order.
//!
//! Columns are stored per field (struct of arrays); [`EncodedData::fill_batch`] gathers rows
//! into a reusable [`Batch`] in the row-major layout the tensor side expects.

use crate::batch::Jagged;
use crate::col::JaggedCol;
use crate::col::{Col, Pages};
use crate::rng::Rng;
use crate::Batch;

/// Encoded columnar data of one split.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EncodedData {
    /// Number of rows.
    pub n_rows: usize,
    /// One column per categorical field (schema order of categorical fields).
    pub cat: Vec<Col<u32>>,
    /// One jagged column per multi-hot field (offsets len `n_rows + 1`).
    pub multi: Vec<JaggedCol>,
    /// One column per numeric field, already transformed.
    pub num: Vec<Col<f32>>,
    /// Domain index per row.
    pub domain: Col<u32>,
    /// One column per task, values 0.0 / 1.0.
    pub labels: Vec<Col<f32>>,
    /// Group key per row (0 when the schema has no group).
    pub group: Col<u64>,
    /// Event time per row (empty when the schema declares no `time` column).
    pub time: Col<i64>,
    /// Per task: when each row's positive label became known ([`NEVER`] for none); an empty
    /// column for a task without a `label_time` column.
    pub label_time: Vec<Col<i64>>,
    /// Sample weight per row (empty when the schema declares no `weight` column).
    pub weight: Col<f32>,
}

/// The label time of a row whose positive never arrived.
pub const NEVER: i64 = i64::MAX;

impl EncodedData {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.n_rows
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.n_rows == 0
    }

    /// Fills `out` with the given rows (indices into this split), reusing its buffers.
    /// Sets `out.rows = rows`. Panics only if a row index is out of range (a caller bug).
    pub fn fill_batch(&self, rows: &[u32], out: &mut Batch) {
        out.cat.clear();
        for &r in rows {
            let r = r as usize;
            out.cat.extend(self.cat.iter().map(|c| c[r]));
        }
        out.multi.truncate(self.multi.len());
        out.multi.resize_with(self.multi.len(), Jagged::default);
        for (j, src) in out.multi.iter_mut().zip(&self.multi) {
            j.offsets.clear();
            j.values.clear();
            j.offsets.push(0);
            for &r in rows {
                j.values.extend_from_slice(src.row(r as usize));
                j.offsets.push(j.values.len() as u32);
            }
        }
        out.num.clear();
        for &r in rows {
            let r = r as usize;
            out.num.extend(self.num.iter().map(|c| c[r]));
        }
        self.fill_target_columns(rows, out);
    }

    /// The part of a batch its loss weights need: `len`, domains, labels, group keys and row
    /// indices.
    fn fill_target_columns(&self, rows: &[u32], out: &mut Batch) {
        out.len = rows.len();
        out.domain.clear();
        out.domain
            .extend(rows.iter().map(|&r| self.domain[r as usize]));
        out.labels.clear();
        for &r in rows {
            let r = r as usize;
            out.labels.extend(self.labels.iter().map(|c| c[r]));
        }
        out.group.clear();
        out.group
            .extend(rows.iter().map(|&r| self.group[r as usize]));
        out.rows.clear();
        out.rows.extend_from_slice(rows);
    }

    /// True when the columns are views of mapped files (the out-of-core store).
    pub fn is_mapped(&self) -> bool {
        self.domain.is_mapped()
    }

    /// [`Col::advise`] for the rows `range` of every column.
    fn advise(&self, range: std::ops::Range<usize>, pages: Pages) {
        for c in self.cat.iter().chain([&self.domain]) {
            c.advise(range.clone(), pages);
        }
        for c in self.num.iter().chain(&self.labels).chain([&self.weight]) {
            c.advise(range.clone(), pages);
        }
        for c in self.label_time.iter().chain([&self.time]) {
            c.advise(range.clone(), pages);
        }
        for j in &self.multi {
            j.advise(range.clone(), pages);
        }
        self.group.advise(range, pages);
    }

    /// Drops the pages of mapped columns from this process's resident set
    /// ([`Pages::Release`]); later reads fault them back in from the page cache or the disk.
    pub fn release(&self) {
        self.advise(0..self.n_rows, Pages::Release);
    }

    /// Fills `out` with what a batch's loss weights need of `rows` — domains, labels, group
    /// keys and row indices — and no features (`cat`, `multi` and `num` are left empty): a
    /// data-parallel process reads the features of its own share only.
    pub fn fill_targets(&self, rows: &[u32], out: &mut Batch) {
        out.cat.clear();
        out.multi.clear();
        out.num.clear();
        self.fill_target_columns(rows, out);
    }

    /// Asks the kernel to read the blocks ([`SHUFFLE_BLOCK_ROWS`]) holding `rows` of every
    /// mapped column into the page cache ([`Pages::Prefetch`]): the training loop calls it
    /// with a window's rows before training on them.
    pub fn prefetch(&self, rows: &[u32]) {
        if !self.is_mapped() {
            return;
        }
        let mut blocks: Vec<usize> = rows
            .iter()
            .map(|&r| r as usize / SHUFFLE_BLOCK_ROWS)
            .collect();
        blocks.sort_unstable();
        blocks.dedup();
        for b in blocks {
            self.advise(
                b * SHUFFLE_BLOCK_ROWS..(b + 1) * SHUFFLE_BLOCK_ROWS,
                Pages::Prefetch,
            );
        }
    }

    /// Number of rows per domain.
    pub fn domain_counts(&self, n_domains: usize) -> Vec<usize> {
        let mut c = vec![0usize; n_domains];
        for &d in &self.domain {
            if let Some(x) = c.get_mut(d as usize) {
                *x += 1;
            }
        }
        c
    }

    /// Positive rate of each task.
    pub fn positive_rates(&self) -> Vec<f64> {
        self.labels
            .iter()
            .map(|c| {
                if c.is_empty() {
                    0.0
                } else {
                    c.iter().map(|&x| f64::from(x)).sum::<f64>() / c.len() as f64
                }
            })
            .collect()
    }

    /// Rows of one domain, in order.
    pub fn rows_of_domain(&self, d: u32) -> Vec<u32> {
        (0..self.n_rows as u32)
            .filter(|&r| self.domain[r as usize] == d)
            .collect()
    }

    /// A new split made of the given rows, in the given order.
    pub fn subset(&self, rows: &[u32]) -> EncodedData {
        let pick32 = |c: &Col<u32>| rows.iter().map(|&r| c[r as usize]).collect::<Col<u32>>();
        let pickf = |c: &Col<f32>| rows.iter().map(|&r| c[r as usize]).collect::<Col<f32>>();
        let multi = self
            .multi
            .iter()
            .map(|src| {
                let mut j = Jagged {
                    offsets: Vec::with_capacity(rows.len() + 1),
                    values: Vec::new(),
                };
                j.offsets.push(0);
                for &r in rows {
                    j.values.extend_from_slice(src.row(r as usize));
                    j.offsets.push(j.values.len() as u32);
                }
                JaggedCol::from(j)
            })
            .collect();
        EncodedData {
            n_rows: rows.len(),
            cat: self.cat.iter().map(pick32).collect(),
            multi,
            num: self.num.iter().map(pickf).collect(),
            domain: pick32(&self.domain),
            labels: self.labels.iter().map(pickf).collect(),
            group: rows.iter().map(|&r| self.group[r as usize]).collect(),
            time: pick_opt(&self.time, rows),
            label_time: self.label_time.iter().map(|c| pick_opt(c, rows)).collect(),
            weight: pick_opt(&self.weight, rows),
        }
    }

    /// The rows of `self` followed by the rows of `other` (same schema: same number of
    /// columns of each kind).
    ///
    /// # Panics
    /// If the column layouts differ (a programmer error: both come from one schema).
    pub fn concat(&self, other: &EncodedData) -> EncodedData {
        assert!(
            self.cat.len() == other.cat.len()
                && self.multi.len() == other.multi.len()
                && self.num.len() == other.num.len()
                && self.labels.len() == other.labels.len(),
            "EncodedData::concat: different column layouts"
        );
        let join = |a: &Col<u32>, b: &Col<u32>| Col::from([&a[..], &b[..]].concat());
        let joinf = |a: &Col<f32>, b: &Col<f32>| Col::from([&a[..], &b[..]].concat());
        let multi = self
            .multi
            .iter()
            .zip(&other.multi)
            .map(|(a, b)| {
                let base = *a.offsets.last().unwrap_or(&0);
                let mut offsets = a.offsets.to_vec();
                offsets.extend(b.offsets.iter().skip(1).map(|o| o + base));
                JaggedCol {
                    offsets: offsets.into(),
                    values: [a.values.as_slice(), b.values.as_slice()].concat().into(),
                }
            })
            .collect();
        EncodedData {
            n_rows: self.n_rows + other.n_rows,
            cat: self
                .cat
                .iter()
                .zip(&other.cat)
                .map(|(a, b)| join(a, b))
                .collect(),
            multi,
            num: self
                .num
                .iter()
                .zip(&other.num)
                .map(|(a, b)| joinf(a, b))
                .collect(),
            domain: join(&self.domain, &other.domain),
            labels: self
                .labels
                .iter()
                .zip(&other.labels)
                .map(|(a, b)| joinf(a, b))
                .collect(),
            group: [self.group.as_slice(), other.group.as_slice()]
                .concat()
                .into(),
            time: [self.time.as_slice(), other.time.as_slice()]
                .concat()
                .into(),
            label_time: self
                .label_time
                .iter()
                .zip(&other.label_time)
                .map(|(a, b)| Col::from([a.as_slice(), b.as_slice()].concat()))
                .collect(),
            weight: [self.weight.as_slice(), other.weight.as_slice()]
                .concat()
                .into(),
        }
    }

    /// Appends a binary encoding (little-endian) to `out`.
    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        put_u64(out, self.n_rows as u64);
        put_u64(out, self.cat.len() as u64);
        for c in &self.cat {
            put_u32s(out, c);
        }
        put_u64(out, self.multi.len() as u64);
        for j in &self.multi {
            put_u32s(out, &j.offsets);
            put_u32s(out, &j.values);
        }
        put_u64(out, self.num.len() as u64);
        for c in &self.num {
            put_f32s(out, c);
        }
        put_u32s(out, &self.domain);
        put_u64(out, self.labels.len() as u64);
        for c in &self.labels {
            put_f32s(out, c);
        }
        put_u64(out, self.group.len() as u64);
        for g in &self.group {
            out.extend_from_slice(&g.to_le_bytes());
        }
        put_i64s(out, &self.time);
        put_u64(out, self.label_time.len() as u64);
        for c in &self.label_time {
            put_i64s(out, c);
        }
        put_f32s(out, &self.weight);
    }

    /// Decodes what [`EncodedData::write_to`] wrote; `None` on any inconsistency.
    pub(crate) fn read_from(r: &mut Reader<'_>) -> Option<EncodedData> {
        let n_rows = r.u64()? as usize;
        let n_cat = r.u64()? as usize;
        let mut cat = Vec::new();
        for _ in 0..n_cat {
            cat.push(Col::from(r.u32s()?));
        }
        let n_multi = r.u64()? as usize;
        let mut multi = Vec::new();
        for _ in 0..n_multi {
            let offsets = r.u32s()?;
            let values = r.u32s()?;
            if offsets.len() != n_rows + 1
                || offsets.last().copied() != Some(values.len() as u32)
                || offsets.windows(2).any(|w| w[0] > w[1])
            {
                return None;
            }
            multi.push(JaggedCol::from(Jagged { offsets, values }));
        }
        let n_num = r.u64()? as usize;
        let mut num = Vec::new();
        for _ in 0..n_num {
            num.push(Col::from(r.f32s()?));
        }
        let domain = r.u32s()?;
        let n_lab = r.u64()? as usize;
        let mut labels = Vec::new();
        for _ in 0..n_lab {
            labels.push(Col::from(r.f32s()?));
        }
        let n_group = r.u64()? as usize;
        let bytes = r.take(n_group.checked_mul(8)?)?;
        let group: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
            .collect();
        let time = Col::from(r.i64s()?);
        let n_lt = r.u64()? as usize;
        let mut label_time = Vec::new();
        for _ in 0..n_lt {
            label_time.push(Col::from(r.i64s()?));
        }
        let weight = r.f32s()?;
        let optional = |c: &Col<i64>| c.is_empty() || c.len() == n_rows;
        let ok = cat.iter().all(|c| c.len() == n_rows)
            && num.iter().all(|c| c.len() == n_rows)
            && labels.iter().all(|c| c.len() == n_rows)
            && domain.len() == n_rows
            && group.len() == n_rows
            && optional(&time)
            && label_time.iter().all(optional)
            && (weight.is_empty() || weight.len() == n_rows);
        ok.then_some(EncodedData {
            n_rows,
            cat,
            multi,
            num,
            domain: domain.into(),
            labels,
            group: group.into(),
            time,
            label_time,
            weight: weight.into(),
        })
    }
}

/// `column[rows]`, or an empty column when `column` is empty (an absent optional column).
fn pick_opt<T: bytemuck::Pod>(column: &[T], rows: &[u32]) -> Col<T> {
    if column.is_empty() {
        Col::default()
    } else {
        rows.iter().map(|&r| column[r as usize]).collect()
    }
}

fn put_i64s(out: &mut Vec<u8>, v: &[i64]) {
    put_u64(out, v.len() as u64);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

pub(crate) fn put_u64(out: &mut Vec<u8>, x: u64) {
    out.extend_from_slice(&x.to_le_bytes());
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u64(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_u32s(out: &mut Vec<u8>, xs: &[u32]) {
    put_u64(out, xs.len() as u64);
    out.reserve(xs.len() * 4);
    for x in xs {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

fn put_f32s(out: &mut Vec<u8>, xs: &[f32]) {
    put_u64(out, xs.len() as u64);
    out.reserve(xs.len() * 4);
    for x in xs {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

/// A bounds-checked little-endian reader.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    pub(crate) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    pub(crate) fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.u64()?).ok()?;
        self.take(n)
    }
    fn u32s(&mut self) -> Option<Vec<u32>> {
        let n = usize::try_from(self.u64()?).ok()?;
        let b = self.take(n.checked_mul(4)?)?;
        Some(
            b.chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        )
    }
    fn f32s(&mut self) -> Option<Vec<f32>> {
        let n = usize::try_from(self.u64()?).ok()?;
        let b = self.take(n.checked_mul(4)?)?;
        Some(
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        )
    }
    fn i64s(&mut self) -> Option<Vec<i64>> {
        let n = usize::try_from(self.u64()?).ok()?;
        let b = self.take(n.checked_mul(8)?)?;
        Some(
            b.chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect(),
        )
    }
    pub(crate) fn at_end(&self) -> bool {
        self.pos == self.buf.len()
    }
}

/// Row order of one epoch: `0..n`, shuffled with `Rng::for_stream(seed, "shuffle/{epoch}")`
/// when `shuffle` is true.
pub fn epoch_order(n: usize, shuffle: bool, seed: u64, epoch: usize) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n as u32).collect();
    if shuffle {
        Rng::for_stream(seed, &format!("shuffle/{epoch}")).shuffle(&mut v);
    }
    v
}

/// Rows per block of [`block_order`]: a block's values are contiguous in every column file
/// (64 KiB of a 4-byte column), so reading a block is one sequential read per column.
pub const SHUFFLE_BLOCK_ROWS: usize = 16_384;
/// Blocks per window of [`block_order`] (64 blocks of 16,384 rows: about a million rows).
pub const SHUFFLE_WINDOW_BLOCKS: usize = 64;

/// The training order of one epoch over a split read from mapped column files (the
/// out-of-core store): the rows are cut into blocks of `block` consecutive rows, the blocks are
/// shuffled with `Rng::for_stream(seed, "shuffle/{epoch}/blocks")`, consecutive runs of
/// `window` shuffled blocks form windows, and the rows inside window `w` are shuffled with
/// `Rng::for_stream(seed, "shuffle/{epoch}/window/{w}")`.
///
/// Guarantees: every row once per epoch; the block order is a uniform random permutation;
/// within a window the order is a uniform permutation of its rows; rows of different windows
/// keep their windows' order (two rows closer than a block apart in the file land in the same
/// window). A window reads `window` contiguous runs of `block` values per column, so the reads
/// stay sequential in the large and the resident part of the files stays near one window.
pub fn block_order(n: usize, block: usize, window: usize, seed: u64, epoch: usize) -> Vec<u32> {
    shuffle_blocks(n, block, window, seed, &format!("shuffle/{epoch}"))
}

/// [`block_order`] with the streams `{stream}/blocks` and `{stream}/window/{w}`.
fn shuffle_blocks(n: usize, block: usize, window: usize, seed: u64, stream: &str) -> Vec<u32> {
    let block = block.max(1);
    let mut blocks: Vec<u32> = (0..n.div_ceil(block) as u32).collect();
    Rng::for_stream(seed, &format!("{stream}/blocks")).shuffle(&mut blocks);
    let mut order = Vec::with_capacity(n);
    for (w, group) in blocks.chunks(window.max(1)).enumerate() {
        let start = order.len();
        for &b in group {
            let a = b as usize * block;
            order.extend(a as u32..(a + block).min(n) as u32);
        }
        Rng::for_stream(seed, &format!("{stream}/window/{w}")).shuffle(&mut order[start..]);
    }
    order
}

/// The training order of one epoch of data-parallel training over `ranks` processes, each
/// reading its own part of the split. Process `r`'s share of a global batch of `batch` rows is
/// `[batch r / ranks, batch (r + 1) / ranks)` (as `dist::share` cuts it); it owns the
/// contiguous rows `[n s_r / batch, n s_(r+1) / batch)`, where `s_r = batch r / ranks` (parts
/// proportional to the shares, so every process runs out of rows at the same step), and
/// shuffles them with [`block_order`]'s scheme (streams `shuffle/{epoch}/rank/{r}`). Global
/// batch `i` is the concatenation over the processes of each one's `i`-th micro-batch, so the
/// share a process trains on is drawn from its own rows. Only whole global batches are formed:
/// fewer than two micro-batches of rows per process are left out of each epoch (which rows
/// changes every epoch), as with a distributed sampler that drops the last batch.
pub fn partitioned_order(
    n: usize,
    ranks: usize,
    batch: usize,
    seed: u64,
    epoch: usize,
) -> Vec<u32> {
    let ranks = ranks.max(1);
    let batch = batch.max(ranks);
    let start = |r: usize| batch * r / ranks;
    let cut = |r: usize| (n as u128 * start(r) as u128 / batch as u128) as usize;
    let part = |r: usize| cut(r)..cut(r + 1);
    let micro = |r: usize| start(r + 1) - start(r);
    let orders: Vec<Vec<u32>> = (0..ranks)
        .map(|r| {
            let p = part(r);
            let mut o = shuffle_blocks(
                p.len(),
                SHUFFLE_BLOCK_ROWS,
                SHUFFLE_WINDOW_BLOCKS,
                seed,
                &format!("shuffle/{epoch}/rank/{r}"),
            );
            o.iter_mut().for_each(|x| *x += p.start as u32);
            o
        })
        .collect();
    let steps = (0..ranks)
        .map(|r| orders[r].len() / micro(r))
        .min()
        .unwrap_or(0);
    let mut out = Vec::with_capacity(steps * batch);
    for i in 0..steps {
        for (r, o) in orders.iter().enumerate() {
            let m = micro(r);
            out.extend_from_slice(&o[i * m..(i + 1) * m]);
        }
    }
    out
}

/// AREAD's single-domain batches of one epoch (its `run.py` sampler, used by the HEMP schedule
/// and by `train.batching = "domain"`): every batch holds rows of one domain. Domain `d`'s
/// training rows are shuffled with `Rng::for_stream(seed, "hemp/rows/{epoch}/{d}")` and cut into
/// batches of `batch_size` (the last one shorter); the sequence of batches, where domain `d`
/// appears once per batch it has, is shuffled with `Rng::for_stream(seed, "hemp/sequence")` (the
/// same stream every epoch, so the domain order repeats while the rows inside change).
pub fn domain_batches(
    train: &EncodedData,
    n_domains: usize,
    batch_size: usize,
    seed: u64,
    epoch: usize,
) -> Vec<Vec<u32>> {
    let mut per: Vec<std::collections::VecDeque<Vec<u32>>> = (0..n_domains)
        .map(|d| {
            let mut rows = train.rows_of_domain(d as u32);
            Rng::for_stream(seed, &format!("hemp/rows/{epoch}/{d}")).shuffle(&mut rows);
            rows.chunks(batch_size.max(1))
                .map(<[u32]>::to_vec)
                .collect()
        })
        .collect();
    let mut seq: Vec<usize> = (0..n_domains)
        .flat_map(|d| std::iter::repeat_n(d, per[d].len()))
        .collect();
    Rng::for_stream(seed, "hemp/sequence").shuffle(&mut seq);
    // every domain appears in `seq` exactly as often as it has batches
    seq.into_iter().filter_map(|d| per[d].pop_front()).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn partitioned_batches_draw_each_share_from_its_own_rows() {
        let (n, ranks, batch) = (100_003, 3, 1000);
        let o = partitioned_order(n, ranks, batch, 9, 1);
        assert_eq!(o.len() % batch, 0, "whole global batches only");
        assert!(
            n - o.len() < 2 * batch + ranks,
            "drops fewer than two micro-batches per process"
        );
        let mut seen = o.clone();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), o.len(), "no row twice");
        for b in o.chunks(batch) {
            for r in 0..ranks {
                let share = batch * r / ranks..batch * (r + 1) / ranks;
                let cut = |r: usize| (n * (batch * r / ranks) / batch) as u32;
                let part = cut(r)..cut(r + 1);
                assert!(b[share].iter().all(|x| part.contains(x)), "rank {r}");
            }
        }
        assert_eq!(o, partitioned_order(n, ranks, batch, 9, 1));
        assert_ne!(o, partitioned_order(n, ranks, batch, 9, 2));
    }

    #[test]
    fn block_order_visits_every_row_once_and_keeps_windows_of_blocks_together() {
        let (n, block, window) = (10_007, 16, 8);
        let a = block_order(n, block, window, 5, 1);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert!(sorted.iter().copied().eq(0..n as u32), "a permutation");
        assert_eq!(a, block_order(n, block, window, 5, 1), "seeded");
        assert_ne!(a, block_order(n, block, window, 5, 2), "another epoch");
        // each window holds `window` whole blocks (whole-block n, so that windows align)
        let b = block_order(10_000, block, window, 5, 1);
        for w in b.chunks(block * window) {
            let mut blocks: Vec<usize> = w.iter().map(|&r| r as usize / block).collect();
            blocks.sort_unstable();
            blocks.dedup();
            assert!(blocks.len() <= window);
        }
        // and is shuffled inside: not block-sequential
        assert_ne!(a[1], a[0] + 1);
    }

    use super::*;

    fn sample() -> EncodedData {
        EncodedData {
            n_rows: 3,
            cat: vec![vec![2, 3, 4].into(), vec![5, 6, 7].into()],
            multi: vec![Jagged {
                offsets: vec![0, 2, 2, 3],
                values: vec![10, 11, 12],
            }
            .into()],
            num: vec![vec![0.5, 1.5, 2.5].into()],
            domain: vec![0, 1, 0].into(),
            labels: vec![vec![1.0, 0.0, 1.0].into(), vec![0.0, 0.0, 1.0].into()],
            group: vec![7, 8, 9].into(),
            time: vec![30, 10, 20].into(),
            label_time: vec![vec![31, NEVER, 25].into(), vec![].into()],
            weight: vec![1.0, 0.5, 2.0].into(),
        }
    }

    #[test]
    fn fill_batch_gathers_rows_incl_multi_hot() {
        let d = sample();
        let mut b = Batch::default();
        d.fill_batch(&[2, 0], &mut b);
        assert_eq!(b.len, 2);
        assert_eq!(b.cat, vec![4, 7, 2, 5]);
        assert_eq!(b.multi[0].offsets, vec![0, 1, 3]);
        assert_eq!(b.multi[0].values, vec![12, 10, 11]);
        assert_eq!(b.num, vec![2.5, 0.5]);
        assert_eq!(b.domain, vec![0, 0]);
        assert_eq!(b.labels, vec![1.0, 1.0, 1.0, 0.0]);
        assert_eq!(b.group, vec![9, 7]);
        assert_eq!(b.rows, vec![2, 0]);
        // reuse: a second fill overwrites, no stale data
        d.fill_batch(&[1], &mut b);
        assert_eq!(b.len, 1);
        assert_eq!(b.cat, vec![3, 6]);
        assert_eq!(b.multi[0].offsets, vec![0, 0]);
        assert!(b.multi[0].values.is_empty());
        assert_eq!(b.labels, vec![0.0, 0.0]);
        assert_eq!(b.rows, vec![1]);
    }

    #[test]
    fn concat_equals_the_subsets_it_is_made_of() {
        let d = sample();
        let (a, b) = (d.subset(&[0, 1]), d.subset(&[2]));
        assert_eq!(a.concat(&b), d);
        let twice = d.concat(&d);
        assert_eq!(twice.subset(&[3, 4, 5]), d);
        assert_eq!(twice.multi[0].offsets, vec![0, 2, 2, 3, 5, 5, 6]);
    }

    #[test]
    fn subset_matches_fill_batch_and_binary_roundtrip() {
        let d = sample();
        let s = d.subset(&[2, 1]);
        assert_eq!(s.n_rows, 2);
        let mut a = Batch::default();
        let mut b = Batch::default();
        d.fill_batch(&[2, 1], &mut a);
        s.fill_batch(&[0, 1], &mut b);
        a.rows = b.rows.clone();
        assert_eq!(a, b);
        assert_eq!(d.domain_counts(2), vec![2, 1]);
        let mut buf = Vec::new();
        d.write_to(&mut buf);
        let mut r = Reader::new(&buf);
        assert_eq!(EncodedData::read_from(&mut r).unwrap(), d);
        assert!(r.at_end());
        let mut r = Reader::new(&buf[..buf.len() - 1]);
        assert!(EncodedData::read_from(&mut r).is_none());
    }

    #[test]
    fn domain_batches_hold_one_domain_and_cover_every_row_once() {
        let d = EncodedData {
            n_rows: 7,
            domain: vec![0, 1, 0, 0, 1, 2, 0].into(),
            ..EncodedData::default()
        };
        let b = domain_batches(&d, 3, 2, 9, 0);
        // domain 0: 4 rows -> 2 batches, domain 1: 1 batch, domain 2: 1 batch
        assert_eq!(b.len(), 4);
        let mut all: Vec<u32> = b.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..7).collect::<Vec<u32>>());
        for batch in &b {
            assert!(batch.len() <= 2);
            assert!(batch
                .iter()
                .all(|&r| d.domain[r as usize] == d.domain[batch[0] as usize]));
        }
        assert_eq!(b, domain_batches(&d, 3, 2, 9, 0));
        assert_ne!(
            domain_batches(&d, 3, 2, 9, 1),
            domain_batches(&d, 3, 2, 10, 1)
        );
    }

    #[test]
    fn epoch_order_is_a_deterministic_permutation() {
        let a = epoch_order(1000, true, 42, 0);
        assert_eq!(a, epoch_order(1000, true, 42, 0));
        assert_ne!(a, epoch_order(1000, true, 42, 1));
        assert_ne!(a, epoch_order(1000, true, 43, 0));
        let mut s = a.clone();
        s.sort_unstable();
        assert_eq!(s, (0..1000).collect::<Vec<u32>>());
        assert_eq!(epoch_order(5, false, 42, 3), vec![0, 1, 2, 3, 4]);
    }
}
