//! Data-parallel training across processes: the collective operations a training step needs
//! and the one process group a run trains in.
//!
//! The `mdrec` binary implements [`Collective`] over MPI (its `mpi` feature) and
//! [`join`]s the group before training; without a group every function here describes a
//! single process and training is unchanged.
//!
//! The scheme (see ARCHITECTURE.md, "Distributed training"): every rank holds the whole
//! model and every embedding table (replicated, not sharded), walks the same seeded batch
//! order, and computes the forward and backward pass of its contiguous share of each global
//! batch ([`share`]). Loss weights are computed over the global batch, so the rank losses sum
//! to the single-process loss. Embedding-row gradients are concatenated in rank order
//! ([`Collective::gather`]) and every rank applies the global batch's update; dense gradients
//! are summed ([`Collective::sum`]) with a presence flag per parameter, so a parameter no rank
//! touched gets no optimizer step, as in one process.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// The collective operations of data-parallel training. Implementations must give every rank
/// bit-identical results (e.g. reduce to one rank, then broadcast), so the replicas never
/// drift apart.
pub trait Collective: Send + Sync {
    /// This process's rank, `0..size`.
    fn rank(&self) -> usize;
    /// Number of processes.
    fn size(&self) -> usize;
    /// Element-wise sum of `buf` over all ranks, written back into `buf` on every rank.
    fn sum(&self, buf: &mut [f32]);
    /// Every rank's `local` (lengths may differ), concatenated in rank order, on every rank.
    fn gather(&self, local: &[f32]) -> Vec<f32>;
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

/// Whether this process writes the run directory, logs and reports (rank 0).
pub fn is_writer() -> bool {
    rank() == 0
}

/// What this process sent into collectives so far (for the end-of-run summary).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Training steps that communicated.
    pub steps: u64,
    /// Bytes of dense gradients (and the loss) this rank contributed to sums.
    pub dense_bytes: u64,
    /// Bytes of embedding-row gradients this rank contributed to gathers.
    pub embedding_bytes: u64,
    /// Wall time spent inside the collectives, in nanoseconds (includes waiting for slower
    /// ranks).
    pub nanos: u64,
}

static STEPS: AtomicU64 = AtomicU64::new(0);
static DENSE: AtomicU64 = AtomicU64::new(0);
static EMBEDDING: AtomicU64 = AtomicU64::new(0);
static NANOS: AtomicU64 = AtomicU64::new(0);

/// The traffic of the step's collectives so far.
pub fn traffic() -> Traffic {
    Traffic {
        steps: STEPS.load(Ordering::Relaxed),
        dense_bytes: DENSE.load(Ordering::Relaxed),
        embedding_bytes: EMBEDDING.load(Ordering::Relaxed),
        nanos: NANOS.load(Ordering::Relaxed),
    }
}

/// One training step's exchange: every rank's embedding-row gradients (`rows`, replaced by
/// the global batch's) and the dense sums `sum` performs, counted in [`traffic`].
pub(crate) fn exchange(
    group: &dyn Collective,
    rows: &mut Vec<f32>,
    sum: impl FnOnce(&mut dyn FnMut(&mut [f32])),
) {
    let t0 = Instant::now();
    EMBEDDING.fetch_add(4 * rows.len() as u64, Ordering::Relaxed);
    *rows = group.gather(rows);
    let mut dense = 0u64;
    sum(&mut |buf: &mut [f32]| {
        dense += 4 * buf.len() as u64;
        group.sum(buf)
    });
    DENSE.fetch_add(dense, Ordering::Relaxed);
    STEPS.fetch_add(1, Ordering::Relaxed);
    NANOS.fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
}

/// Check that every rank holds the same model: a SHA-256 of the engine's dense tensors and
/// embedding weights is compared across the group (a no-op without one). The replicas stay
/// identical by construction; this catches a rank that drifted (e.g. a collective that did
/// not give every rank the same bits) before its numbers are trusted.
pub fn check_replicas(engine: &crate::engine::Engine, when: &str) -> Result<(), crate::TrainError> {
    use sha2::{Digest, Sha256};
    let Some(group) = group() else {
        return Ok(());
    };
    let mut h = Sha256::new();
    // Values go to the hash in blocks of little-endian bytes (one update per float would
    // dominate for tables of many rows).
    let mut bytes = Vec::with_capacity(4 << 12);
    let mut eat = |name: &str, values: &[f32]| {
        h.update(name.as_bytes());
        for block in values.chunks(1 << 12) {
            bytes.clear();
            bytes.extend(block.iter().flat_map(|v| v.to_le_bytes()));
            h.update(&bytes);
        }
    };
    for (name, _, values) in engine.model.named_tensors() {
        eat(&name, &values);
    }
    for (name, _, _, weights) in engine.store.tables() {
        eat(name, weights);
    }
    // 8 digest bytes as 16-bit halves, exact in f32.
    let digest = h.finalize();
    let mine: Vec<f32> = digest[..8]
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]) as f32)
        .collect();
    let all = group.gather(&mine);
    let differ: Vec<usize> = all
        .chunks(mine.len())
        .enumerate()
        .filter(|(_, d)| *d != mine.as_slice())
        .map(|(r, _)| r)
        .collect();
    if differ.is_empty() {
        Ok(())
    } else {
        Err(crate::TrainError::Tensor(format!(
            "distributed training: after {when} the model of rank {} differs from ranks {differ:?}",
            group.rank()
        )))
    }
}

/// The contiguous share of `n` batch rows that `rank` of `size` computes: the rows are split
/// as evenly as possible, lower ranks first.
pub fn share(n: usize, rank: usize, size: usize) -> Range<usize> {
    (n * rank / size)..(n * (rank + 1) / size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_the_batch_in_order_without_overlap() {
        for n in [0, 1, 5, 1024, 1025] {
            for size in 1..5 {
                let mut next = 0;
                for r in 0..size {
                    let s = share(n, r, size);
                    assert_eq!(s.start, next, "n {n} size {size} rank {r}");
                    assert!(s.len() >= n / size && s.len() <= n / size + 1);
                    next = s.end;
                }
                assert_eq!(next, n);
            }
        }
    }

    #[test]
    fn without_a_group_this_is_one_writing_process() {
        assert_eq!((rank(), size(), is_writer()), (0, 1, true));
        assert!(group().is_none());
    }
}
