//! The process group of data-parallel training: the collective operations the embedding
//! store and the trainer need, the one group a process joins, and the traffic counters.
//!
//! The `mdrec` binary implements [`Collective`] over MPI (its `mpi` feature) and [`join`]s the
//! group before training; without a group every function here describes one process. The
//! scheme is in ARCHITECTURE.md, "Distributed training".

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// The collective operations of data-parallel training. Implementations must give every rank
/// bit-identical results for [`sum`](Self::sum) (e.g. reduce to one rank, then broadcast), so
/// the replicas never drift apart.
pub trait Collective: Send + Sync {
    /// This process's rank, `0..size`.
    fn rank(&self) -> usize;
    /// Number of processes.
    fn size(&self) -> usize;
    /// Element-wise sum of `buf` over all ranks, written back into `buf` on every rank.
    fn sum(&self, buf: &mut [f32]);
    /// Every rank's `local` (lengths may differ), concatenated in rank order, on every rank.
    fn gather(&self, local: &[f32]) -> Vec<f32>;
    /// All-to-all of floats: `send[d]` goes to rank `d` (`send.len() == size`); returns what
    /// every rank sent to this one, indexed by the sending rank.
    fn all_to_all(&self, send: &[Vec<f32>]) -> Vec<Vec<f32>>;
    /// [`all_to_all`](Self::all_to_all) of ids.
    fn all_to_all_u32(&self, send: &[Vec<u32>]) -> Vec<Vec<u32>>;
    /// Wait until every rank reaches this point.
    fn barrier(&self);
    /// End every process of the group with exit status `code` (a failed rank must not leave
    /// the others waiting in a collective).
    fn abort(&self, code: i32) -> !;
}

static GROUP: OnceLock<Arc<dyn Collective>> = OnceLock::new();

/// Make `group` the process group every later training step uses. A group of one process is
/// ignored. Errors if a group was already joined.
pub fn join(group: Arc<dyn Collective>) -> Result<(), String> {
    if group.size() <= 1 {
        return Ok(());
    }
    GROUP
        .set(group)
        .map_err(|_| "a process group was already joined".to_string())
}

/// The joined group of more than one process, if any.
pub fn group() -> Option<&'static Arc<dyn Collective>> {
    GROUP.get()
}

/// This process's rank (0 without a group).
pub fn rank() -> usize {
    group().map_or(0, |g| g.rank())
}

/// Number of processes (1 without a group).
pub fn size() -> usize {
    group().map_or(1, |g| g.size())
}

/// What this process sent into collectives so far (for the end-of-run summary).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Training steps that communicated.
    pub steps: u64,
    /// Bytes of dense gradients (and the loss) this rank contributed to sums.
    pub dense_bytes: u64,
    /// Bytes this rank sent in the embedding exchanges of training steps (ids, rows,
    /// row gradients).
    pub embedding_bytes: u64,
    /// Wall time spent inside the collectives, in nanoseconds (includes waiting for slower
    /// ranks).
    pub nanos: u64,
}

static STEPS: AtomicU64 = AtomicU64::new(0);
static DENSE: AtomicU64 = AtomicU64::new(0);
static EMBEDDING: AtomicU64 = AtomicU64::new(0);
static NANOS: AtomicU64 = AtomicU64::new(0);

/// The traffic of the training steps' collectives so far.
pub fn traffic() -> Traffic {
    Traffic {
        steps: STEPS.load(Ordering::Relaxed),
        dense_bytes: DENSE.load(Ordering::Relaxed),
        embedding_bytes: EMBEDDING.load(Ordering::Relaxed),
        nanos: NANOS.load(Ordering::Relaxed),
    }
}

/// Adds to the [`traffic`] counters: one step (`step`), dense and embedding bytes sent, and
/// the time spent.
pub fn count(step: bool, dense_bytes: u64, embedding_bytes: u64, nanos: u64) {
    STEPS.fetch_add(u64::from(step), Ordering::Relaxed);
    DENSE.fetch_add(dense_bytes, Ordering::Relaxed);
    EMBEDDING.fetch_add(embedding_bytes, Ordering::Relaxed);
    NANOS.fetch_add(nanos, Ordering::Relaxed);
}

static PENDING_BYTES: AtomicU64 = AtomicU64::new(0);
static PENDING_NANOS: AtomicU64 = AtomicU64::new(0);

/// Records an embedding exchange (bytes sent to other ranks, time spent) for the step in
/// progress; the trainer claims it with [`take_embedding`].
pub fn note_embedding(bytes: u64, nanos: u64) {
    PENDING_BYTES.fetch_add(bytes, Ordering::Relaxed);
    PENDING_NANOS.fetch_add(nanos, Ordering::Relaxed);
}

/// The embedding exchanges recorded since the last call: `(bytes, nanoseconds)`.
pub fn take_embedding() -> (u64, u64) {
    (
        PENDING_BYTES.swap(0, Ordering::Relaxed),
        PENDING_NANOS.swap(0, Ordering::Relaxed),
    )
}

/// The rank that holds row `id` of a table sharded row-wise over `size` ranks, and the row's
/// index in that rank's shard: ids are dealt round-robin (`id mod size`), which spreads both
/// the rows and, for ids numbered by frequency, the hot rows evenly.
#[inline]
pub fn owner(id: u32, size: usize) -> (usize, usize) {
    let id = id as usize;
    (id % size, id / size)
}

/// Rows of a table of `rows` rows that `rank` of `size` holds.
pub fn shard_rows(rows: usize, rank: usize, size: usize) -> usize {
    (rows + size - 1).saturating_sub(rank) / size
}

/// The full `[rows, dim]` array from the `size` shards of a row-wise sharded table
/// (`parts[r]`: rank r's rows, in order).
pub fn interleave(parts: &[&[f32]], rows: usize, dim: usize) -> Result<Vec<f32>, String> {
    let size = parts.len();
    for (r, p) in parts.iter().enumerate() {
        let want = shard_rows(rows, r, size) * dim;
        if p.len() != want {
            return Err(format!(
                "shard {r} of {size} holds {} values, a table of {rows} rows × {dim} needs {want}",
                p.len()
            ));
        }
    }
    let mut out = vec![0.0; rows * dim];
    for (g, row) in out.chunks_exact_mut(dim.max(1)).enumerate().take(rows) {
        let (r, local) = owner(g as u32, size);
        row.copy_from_slice(&parts[r][local * dim..(local + 1) * dim]);
    }
    Ok(out)
}

/// The rows `rank` of `size` holds of a full `[rows, dim]` array.
pub fn take_shard(full: &[f32], dim: usize, rank: usize, size: usize) -> Vec<f32> {
    full.chunks_exact(dim.max(1))
        .skip(rank)
        .step_by(size)
        .flatten()
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_rows_and_interleave_back() {
        for rows in [0usize, 1, 2, 7, 10] {
            for size in 1..5 {
                let dim = 3;
                let full: Vec<f32> = (0..rows * dim).map(|x| x as f32).collect();
                let parts: Vec<Vec<f32>> =
                    (0..size).map(|r| take_shard(&full, dim, r, size)).collect();
                let total: usize = (0..size).map(|r| shard_rows(rows, r, size)).sum();
                assert_eq!(total, rows, "rows {rows} size {size}");
                let refs: Vec<&[f32]> = parts.iter().map(Vec::as_slice).collect();
                assert_eq!(interleave(&refs, rows, dim).unwrap(), full);
                for g in 0..rows {
                    let (r, l) = owner(g as u32, size);
                    assert_eq!(parts[r][l * dim], (g * dim) as f32);
                }
            }
        }
        let e = interleave(&[&[0.0; 3], &[]], 2, 3).unwrap_err();
        assert!(e.contains("shard 1 of 2"), "{e}");
    }

    #[test]
    fn without_a_group_this_is_one_process() {
        assert_eq!((rank(), size()), (0, 1));
        assert!(group().is_none());
    }
}
