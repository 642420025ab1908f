//! The process group of data-parallel training: the collective operations the embedding
//! store and the trainer need, the group a training thread belongs to, the in-process group
//! of replica threads ([`Replicas`]), and the traffic counters.
//!
//! The `mdrec` binary implements [`Collective`] over MPI (its `mpi` feature) and [`join`]s the
//! group before training; a run with `train.replicas = N` trains N replicas on N threads of one
//! process, each inside [`with_group`]. Without a group every function here describes one
//! process. The scheme is in ARCHITECTURE.md, "Distributed training".

use std::cell::{Cell, RefCell};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock};

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
    /// Whether the ranks are threads of one process ([`Replicas`]): they then share the
    /// process's globals, such as burn's random generator.
    fn threads(&self) -> bool {
        false
    }
}

static GROUP: OnceLock<Arc<dyn Collective>> = OnceLock::new();

thread_local! {
    /// The group of the replica this thread trains ([`with_group`]); it takes precedence over
    /// the process's group.
    static LOCAL: RefCell<Option<Arc<dyn Collective>>> = const { RefCell::new(None) };
}

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

/// Run `f` on this thread as a member of `group` (a replica thread of [`Replicas`]): every
/// [`group`] call inside `f` on this thread returns it. The thread's traffic counters start
/// from zero.
pub fn with_group<R>(group: Arc<dyn Collective>, f: impl FnOnce() -> R) -> R {
    struct Reset(Option<Arc<dyn Collective>>);
    impl Drop for Reset {
        fn drop(&mut self) {
            LOCAL.with(|l| *l.borrow_mut() = self.0.take());
        }
    }
    let _reset = Reset(LOCAL.with(|l| l.borrow_mut().replace(group)));
    COUNTERS.with(|c| c.set(Counters::default()));
    f()
}

/// The group of more than one process (or replica thread) this thread trains in, if any.
pub fn group() -> Option<Arc<dyn Collective>> {
    LOCAL
        .with(|l| l.borrow().clone())
        .or_else(|| GROUP.get().cloned())
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

/// A training thread's traffic so far, and the embedding exchanges of its step in progress.
#[derive(Clone, Copy, Default)]
struct Counters {
    total: Traffic,
    pending_bytes: u64,
    pending_nanos: u64,
}

thread_local! {
    // Per thread: each rank of a group trains on one thread (its own process under MPI, its
    // own thread among replicas), so a thread's counters are its rank's.
    static COUNTERS: Cell<Counters> = const {
        Cell::new(Counters {
            total: Traffic { steps: 0, dense_bytes: 0, embedding_bytes: 0, nanos: 0 },
            pending_bytes: 0,
            pending_nanos: 0,
        })
    };
}

fn update(f: impl FnOnce(&mut Counters)) {
    COUNTERS.with(|c| {
        let mut v = c.get();
        f(&mut v);
        c.set(v);
    })
}

/// The traffic of this thread's training steps' collectives so far.
pub fn traffic() -> Traffic {
    COUNTERS.with(|c| c.get().total)
}

/// Adds to the [`traffic`] counters: one step (`step`), dense and embedding bytes sent, and
/// the time spent.
pub fn count(step: bool, dense_bytes: u64, embedding_bytes: u64, nanos: u64) {
    update(|c| {
        c.total.steps += u64::from(step);
        c.total.dense_bytes += dense_bytes;
        c.total.embedding_bytes += embedding_bytes;
        c.total.nanos += nanos;
    })
}

/// Records an embedding exchange (bytes sent to other ranks, time spent) for the step in
/// progress; the trainer claims it with [`take_embedding`].
pub fn note_embedding(bytes: u64, nanos: u64) {
    update(|c| {
        c.pending_bytes += bytes;
        c.pending_nanos += nanos;
    })
}

/// The embedding exchanges recorded since the last call: `(bytes, nanoseconds)`.
pub fn take_embedding() -> (u64, u64) {
    let mut out = (0, 0);
    update(|c| {
        out = (c.pending_bytes, c.pending_nanos);
        c.pending_bytes = 0;
        c.pending_nanos = 0;
    });
    out
}

/// A group of `size` replicas that train on threads of one process (`train.replicas`): each
/// thread holds a [`Replica`] handle and exchanges through shared mailboxes. A sum adds the
/// ranks' buffers in rank order on every rank, so all replicas receive the same bits.
///
/// A replica that fails calls [`Replicas::fail`]: every replica waiting in (or later entering)
/// a collective then unwinds with a [`ReplicaFailed`] payload instead of waiting forever.
pub struct Replicas {
    size: usize,
    sync: Mutex<Rendezvous>,
    arrived: Condvar,
    f32s: RwLock<Vec<Vec<f32>>>,
    u32s: RwLock<Vec<Vec<u32>>>,
    /// One buffer per replica for [`Collective::sum`], kept between steps (the exchanges'
    /// mailboxes hand their messages over, so they keep nothing).
    sums: RwLock<Vec<Vec<f32>>>,
}

struct Rendezvous {
    waiting: usize,
    generation: u64,
    failed: Option<usize>,
    /// A replica that finished: a collective can no longer complete.
    left: Option<usize>,
}

/// The unwind payload of a replica that left a collective because replica `.0` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaFailed(pub usize);

/// The unwind payload of replica `waiting`, which entered a collective that replica `left`
/// will never enter (it finished): the replicas did not make the same collective calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaLeft {
    /// The replica that waited.
    pub waiting: usize,
    /// The replica that had finished.
    pub left: usize,
}

/// One replica's handle on its [`Replicas`] group.
pub struct Replica {
    rank: usize,
    group: Arc<Replicas>,
}

impl Replicas {
    /// A group of `size` replicas; [`Replicas::member`] gives each its handle.
    pub fn new(size: usize) -> Arc<Self> {
        Arc::new(Replicas {
            size,
            sync: Mutex::new(Rendezvous {
                waiting: 0,
                generation: 0,
                failed: None,
                left: None,
            }),
            arrived: Condvar::new(),
            f32s: RwLock::new(vec![Vec::new(); size * size]),
            u32s: RwLock::new(vec![Vec::new(); size * size]),
            sums: RwLock::new(vec![Vec::new(); size]),
        })
    }

    /// The handle of replica `rank`.
    pub fn member(self: &Arc<Self>, rank: usize) -> Arc<dyn Collective> {
        assert!(rank < self.size, "replica {rank} of {}", self.size);
        Arc::new(Replica {
            rank,
            group: self.clone(),
        })
    }

    /// Replica `rank` failed: release every replica from its collectives (they unwind with
    /// [`ReplicaFailed`]). The first failure is the one reported.
    pub fn fail(&self, rank: usize) {
        let mut s = self.sync.lock().unwrap_or_else(|e| e.into_inner());
        s.failed.get_or_insert(rank);
        self.arrived.notify_all();
    }

    /// Replica `rank` finished: a replica that waits in a collective now (or later) would
    /// wait forever, so it unwinds with [`ReplicaLeft`] instead.
    pub fn leave(&self, rank: usize) {
        let mut s = self.sync.lock().unwrap_or_else(|e| e.into_inner());
        s.left.get_or_insert(rank);
        self.arrived.notify_all();
    }

    /// Wait until every replica arrives (or unwind if one failed or finished).
    fn wait(&self, rank: usize) {
        let mut s = self.sync.lock().unwrap_or_else(|e| e.into_inner());
        let generation = s.generation;
        if s.failed.is_none() && s.left.is_none() {
            s.waiting += 1;
            if s.waiting == self.size {
                s.waiting = 0;
                s.generation += 1;
                self.arrived.notify_all();
                return;
            }
            while s.generation == generation && s.failed.is_none() && s.left.is_none() {
                s = self.arrived.wait(s).unwrap_or_else(|e| e.into_inner());
            }
        }
        if s.generation != generation {
            return;
        }
        let (failed, left) = (s.failed, s.left);
        drop(s);
        // Not a panic of this replica: no panic message; the runner reports.
        match (failed, left) {
            (Some(r), _) => std::panic::resume_unwind(Box::new(ReplicaFailed(r))),
            (None, Some(left)) => std::panic::resume_unwind(Box::new(ReplicaLeft {
                waiting: rank,
                left,
            })),
            (None, None) => unreachable!("released without a new generation"),
        }
    }

    /// Each replica's `send[d]` to replica `d`; returns what every replica sent to `rank`.
    fn exchange<T: Copy>(
        &self,
        mail: &RwLock<Vec<Vec<T>>>,
        rank: usize,
        send: &[&[T]],
    ) -> Vec<Vec<T>> {
        let n = self.size;
        assert_eq!(send.len(), n, "an exchange needs one message per replica");
        {
            let mut m = mail.write().unwrap_or_else(|e| e.into_inner());
            for (d, v) in send.iter().enumerate() {
                let slot = &mut m[rank * n + d];
                slot.clear();
                slot.extend_from_slice(v);
            }
        }
        self.wait(rank);
        // Each message is read by its one receiver: taken, not copied, so the mailboxes hold
        // no buffer between exchanges (an evaluation's logits would otherwise stay resident).
        let out = {
            let mut m = mail.write().unwrap_or_else(|e| e.into_inner());
            (0..n)
                .map(|s| std::mem::take(&mut m[s * n + rank]))
                .collect()
        };
        self.wait(rank);
        out
    }
}

impl Collective for Replica {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.group.size
    }
    fn sum(&self, buf: &mut [f32]) {
        let g = &self.group;
        let n = g.size;
        {
            let mut m = g.sums.write().unwrap_or_else(|e| e.into_inner());
            let slot = &mut m[self.rank];
            slot.clear();
            slot.extend_from_slice(buf);
        }
        g.wait(self.rank);
        {
            // Rank order on every replica: the same bits everywhere.
            let m = g.sums.read().unwrap_or_else(|e| e.into_inner());
            buf.copy_from_slice(&m[0]);
            for part in &m[1..n] {
                buf.iter_mut().zip(part).for_each(|(b, x)| *b += x);
            }
        }
        g.wait(self.rank);
    }
    fn gather(&self, local: &[f32]) -> Vec<f32> {
        let send = vec![local; self.group.size];
        self.group
            .exchange(&self.group.f32s, self.rank, &send)
            .concat()
    }
    fn all_to_all(&self, send: &[Vec<f32>]) -> Vec<Vec<f32>> {
        let send: Vec<&[f32]> = send.iter().map(Vec::as_slice).collect();
        self.group.exchange(&self.group.f32s, self.rank, &send)
    }
    fn all_to_all_u32(&self, send: &[Vec<u32>]) -> Vec<Vec<u32>> {
        let send: Vec<&[u32]> = send.iter().map(Vec::as_slice).collect();
        self.group.exchange(&self.group.u32s, self.rank, &send)
    }
    fn barrier(&self) {
        self.group.wait(self.rank);
    }
    fn threads(&self) -> bool {
        true
    }
    fn abort(&self, _code: i32) -> ! {
        self.group.fail(self.rank);
        std::panic::resume_unwind(Box::new(ReplicaFailed(self.rank)));
    }
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

    /// Three replica threads: sums give every replica the same rank-order sum, all-to-all
    /// delivers by sender, and a failed replica releases the others from their collectives.
    #[test]
    fn replica_threads_exchange_and_a_failure_releases_the_others() {
        let g = Replicas::new(3);
        let out: Vec<(Vec<f32>, Vec<Vec<u32>>, usize)> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..3)
                .map(|r| {
                    let m = g.member(r);
                    s.spawn(move || {
                        with_group(m, || {
                            let g = group().unwrap();
                            let mut buf = vec![r as f32 + 0.5, 1.0];
                            g.sum(&mut buf);
                            let send: Vec<Vec<u32>> =
                                (0..3).map(|d| vec![(10 * r + d) as u32]).collect();
                            let got = g.all_to_all_u32(&send);
                            (buf, got, rank())
                        })
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (r, (buf, got, rank)) in out.into_iter().enumerate() {
            assert_eq!(buf, vec![0.5 + 1.5 + 2.5, 3.0]);
            assert_eq!(
                got,
                vec![vec![r as u32], vec![10 + r as u32], vec![20 + r as u32]]
            );
            assert_eq!(rank, r);
        }
        assert!(
            group().is_none(),
            "the thread-local group ends with with_group"
        );

        let g = Replicas::new(2);
        let waiting = g.member(1);
        let h = std::thread::spawn(move || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| waiting.barrier()))
        });
        g.fail(0);
        let payload = h.join().unwrap().unwrap_err();
        assert_eq!(
            payload.downcast_ref::<ReplicaFailed>(),
            Some(&ReplicaFailed(0))
        );

        // A replica that finished while another waits in a collective releases it too.
        let g = Replicas::new(2);
        let waiting = g.member(0);
        let h = std::thread::spawn(move || {
            let mut buf = [1.0f32];
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| waiting.sum(&mut buf)))
        });
        g.leave(1);
        let payload = h.join().unwrap().unwrap_err();
        assert_eq!(
            payload.downcast_ref::<ReplicaLeft>(),
            Some(&ReplicaLeft {
                waiting: 0,
                left: 1
            })
        );
    }
}
