//! Data-parallel training across processes or replica threads: the collective operations a
//! training step needs, the group a run trains in, and the runner of `train.replicas`.
//!
//! The `mdrec` binary implements [`Collective`] over MPI (its `mpi` feature) and
//! [`join`]s the group before training; `train.replicas = N` runs N replicas on threads of one
//! process ([`replicated`]) with the same scheme. Without a group every function here
//! describes a single process and training is unchanged.
//!
//! The scheme (see ARCHITECTURE.md, "Distributed training"): every rank holds the whole
//! dense model, walks the same seeded batch order, and computes the forward and backward pass
//! of its contiguous share of each global batch ([`share`]). Loss weights are computed over
//! the global batch, so the rank losses sum to the single-process loss. Embedding tables are
//! sharded row-wise across the ranks (`train.embedding.sharding`; the store exchanges ids,
//! rows and row gradients with the owners, see `mdrec_nn::embedding`) or replicated; either
//! way every rank's rows receive the global batch's gradients in one process's order. Dense
//! gradients are summed ([`Collective::sum`]) with a presence flag per parameter, so a
//! parameter no rank touched gets no optimizer step, as in one process.

use std::ops::Range;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::time::Instant;

pub use mdrec_nn::collective::{group, join, rank, size, traffic, Collective, Traffic};
use mdrec_nn::collective::{with_group, ReplicaFailed, ReplicaLeft, Replicas};

use crate::progress::{Progress, Silent};
use crate::TrainError;

/// Run `body` as `n` data-parallel replicas on threads of this process (`train.replicas`):
/// replica 0 on the calling thread with `progress` (it writes the run directory), the others
/// on their own threads, silent. Returns replica 0's result. A replica that fails releases the
/// others from their collectives; the error returned is the lowest failing replica's (a panic
/// is re-raised on this thread).
pub fn replicated<R: Send>(
    n: usize,
    progress: &mut dyn Progress,
    body: impl Fn(&mut dyn Progress) -> Result<R, TrainError> + Sync,
) -> Result<R, TrainError> {
    if group().is_some() {
        return Err(TrainError::Config(format!(
            "train.replicas = {n} in a process group (mpirun): use one replica per process and \
             as many processes as replicas"
        )));
    }
    let replicas = Replicas::new(n);
    // `Err(None)`: left because another replica failed.
    type Outcome<R> = Result<R, Option<Failure>>;
    enum Failure {
        Error(TrainError),
        Panic(Box<dyn std::any::Any + Send>),
    }
    let one = |rank: usize, progress: &mut dyn Progress| -> Outcome<R> {
        let r = catch_unwind(AssertUnwindSafe(|| {
            with_group(replicas.member(rank), || body(progress))
        }));
        match r {
            Ok(Ok(v)) => {
                replicas.leave(rank);
                Ok(v)
            }
            Ok(Err(e)) => {
                replicas.fail(rank);
                Err(Some(Failure::Error(e)))
            }
            Err(p) if p.is::<ReplicaFailed>() => Err(None),
            Err(p) if p.is::<ReplicaLeft>() => {
                let l = p.downcast_ref::<ReplicaLeft>().copied();
                let l = l.expect("checked above");
                replicas.fail(rank);
                Err(Some(Failure::Error(TrainError::Tensor(format!(
                    "train.replicas: replica {} waited in a collective after replica {} had finished (the replicas' collective calls differ: a bug)",
                    l.waiting, l.left
                )))))
            }
            Err(p) => {
                replicas.fail(rank);
                Err(Some(Failure::Panic(p)))
            }
        }
    };
    let outcomes: Vec<Outcome<R>> = std::thread::scope(|s| {
        let mut others = Vec::new();
        for rank in 1..n {
            let one = &one;
            let spawned = std::thread::Builder::new()
                .name(format!("replica-{rank}"))
                // The calling thread's default, so a replica has the stack one process has.
                .stack_size(8 << 20)
                .spawn_scoped(s, move || {
                    mdrec_nn::denormals::flush();
                    one(rank, &mut Silent)
                });
            match spawned {
                Ok(h) => others.push(h),
                Err(e) => {
                    replicas.fail(0);
                    return vec![Err(Some(Failure::Error(TrainError::Config(format!(
                        "train.replicas: could not start replica thread {rank}: {e}"
                    )))))];
                }
            }
        }
        let mut all = vec![one(0, progress)];
        all.extend(
            others
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| Err(Some(Failure::Panic(p))))),
        );
        all
    });
    let (mut result, mut error) = (None, None);
    for (rank, o) in outcomes.into_iter().enumerate() {
        match o {
            Ok(v) if rank == 0 => result = Some(v),
            Ok(_) | Err(None) => {}
            Err(Some(Failure::Panic(p))) => resume_unwind(p),
            Err(Some(Failure::Error(e))) if error.is_none() => {
                error = Some(match rank {
                    0 => e,
                    _ => TrainError::Config(format!("replica {rank} of {n}: {e}")),
                })
            }
            Err(Some(Failure::Error(_))) => {}
        }
    }
    match (error, result) {
        (Some(e), _) => Err(e),
        (None, Some(v)) => Ok(v),
        (None, None) => Err(TrainError::Config(
            "train.replicas: the replicas stopped without a result".into(),
        )),
    }
}

/// Whether this process writes the run directory, logs and reports (rank 0).
pub fn is_writer() -> bool {
    rank() == 0
}

/// Every rank's `local` (lengths may differ), concatenated in rank order, on the writer
/// (rank 0) alone; `None` on the other ranks. Without a group, `Some(local)`. Evaluation
/// gathers its logits this way, so one rank, not every rank, holds them and computes the
/// metrics.
pub fn gather_on_writer(local: Vec<f32>) -> Option<Vec<f32>> {
    let Some(g) = group() else {
        return Some(local);
    };
    let mut send = vec![Vec::new(); g.size()];
    send[0] = local;
    let parts = g.all_to_all(&send);
    (g.rank() == 0).then(|| parts.concat())
}

/// The writer's `bytes` on every rank (what the other ranks pass is ignored): how rank 0
/// tells the group a result only it computed, such as the monitored metric of an epoch.
/// Without a group, `bytes` itself.
pub fn from_writer(bytes: &[u8]) -> Vec<u8> {
    let Some(g) = group() else {
        return bytes.to_vec();
    };
    // A byte is exact in an f32; only rank 0 contributes to the gather.
    let mine: Vec<f32> = if g.rank() == 0 {
        bytes.iter().map(|&b| f32::from(b)).collect()
    } else {
        Vec::new()
    };
    g.gather(&mine).into_iter().map(|b| b as u8).collect()
}

/// One training step's exchange: the dense sums `sum` performs, counted in [`traffic`] with
/// the step's embedding exchanges (which the store recorded).
pub(crate) fn exchange(group: &dyn Collective, sum: impl FnOnce(&mut dyn FnMut(&mut [f32]))) {
    let t0 = Instant::now();
    let mut dense = 0u64;
    sum(&mut |buf: &mut [f32]| {
        dense += 4 * buf.len() as u64;
        group.sum(buf)
    });
    let (embedding, nanos) = mdrec_nn::collective::take_embedding();
    mdrec_nn::collective::count(
        true,
        dense,
        embedding,
        nanos + t0.elapsed().as_nanos() as u64,
    );
}

/// The end-of-run line of a group of `size` ranks that trained for `seconds`: this rank's
/// steps, bytes sent per step into the dense sums and the embedding exchanges, and the time
/// spent inside collectives (waiting for slower ranks included).
pub fn summary(size: usize, seconds: f64) -> String {
    let t = traffic();
    let per_step = |b: u64| b as f64 / t.steps.max(1) as f64 / (1 << 20) as f64;
    format!(
        "distributed: {size} ranks, {} steps; per step and rank: dense sum {:.3} MiB, embedding exchange {:.3} MiB; collectives {:.1} s of {seconds:.1} s",
        t.steps,
        per_step(t.dense_bytes),
        per_step(t.embedding_bytes),
        t.nanos as f64 * 1e-9,
    )
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
    // Sharded tables differ between ranks by design: only whole ones are compared.
    for (name, _, _, weights) in engine.store.tables() {
        if !engine.store.is_table_sharded(name) {
            eat(name, weights);
        }
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
    fn the_writer_alone_gathers_and_tells_the_group() {
        let seen = std::sync::Mutex::new(Vec::new());
        replicated(3, &mut Silent, |_| {
            let r = rank();
            let gathered = gather_on_writer(vec![r as f32; r + 1]);
            let told = from_writer(&[7, r as u8, 255]);
            seen.lock().unwrap().push((r, gathered, told));
            Ok(())
        })
        .unwrap();
        let mut seen = seen.into_inner().unwrap();
        seen.sort_by_key(|s| s.0);
        assert_eq!(seen[0].1, Some(vec![0.0, 1.0, 1.0, 2.0, 2.0, 2.0]));
        for (r, gathered, told) in &seen {
            assert_eq!(told, &vec![7, 0, 255], "rank {r}");
            assert_eq!(gathered.is_some(), *r == 0);
        }
        assert_eq!(gather_on_writer(vec![1.0]), Some(vec![1.0]));
        assert_eq!(from_writer(&[3]), vec![3]);
    }

    #[test]
    fn without_a_group_this_is_one_writing_process() {
        assert_eq!((rank(), size(), is_writer()), (0, 1, true));
        assert!(group().is_none());
    }
}
