//! Joining a data-parallel process group for `mdrec train` under `mpirun`.
//!
//! With the `mpi` feature the group is the MPI world (Open MPI through rsmpi): sums are
//! reduced to rank 0 and broadcast, so every rank receives the same bits and the replicas
//! never drift apart; sharded embedding tables exchange ids, rows and row gradients by
//! all-to-all-v. Without the feature, a launch by `mpirun` with more than one process is
//! refused: N independent copies would each train the whole run into the same directory.

use anyhow::Result;

/// The number of processes a launcher (Open MPI, MPICH/Hydra, Slurm's PMI) started this one
/// with, read from its environment; 1 outside a launcher.
fn launched_size() -> usize {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"]
        .iter()
        .find_map(|k| std::env::var(k).ok()?.parse().ok())
        .unwrap_or(1)
}

/// Refuse a launch of several processes for a command other than `train`: N copies of
/// `eval`, `bench` or `serve` would each do the whole job (and write the same files).
pub fn single_process(command: &str) -> Result<()> {
    let n = launched_size();
    if n > 1 {
        anyhow::bail!(
            "`mdrec {command}` was started as one of {n} processes; only `mdrec train` runs \
             across processes, run `{command}` without mpirun"
        );
    }
    Ok(())
}

/// Keeps MPI initialised while training runs (finalised when dropped).
pub struct Membership {
    #[cfg(feature = "mpi")]
    _universe: Option<mpi::environment::Universe>,
}

#[cfg(not(feature = "mpi"))]
pub fn join() -> Result<Membership> {
    let n = launched_size();
    if n > 1 {
        anyhow::bail!(
            "started by a launcher as one of {n} processes, but this mdrec was built without \
             the `mpi` feature, so the processes would not train together; build it with \
             `cargo build --release --workspace --features mdrec-cli/mpi` (needs libopenmpi-dev and \
             libclang-dev) or run one process"
        );
    }
    Ok(Membership {})
}

#[cfg(feature = "mpi")]
pub fn join() -> Result<Membership> {
    if launched_size() <= 1 {
        return Ok(Membership { _universe: None });
    }
    let universe =
        mpi::initialize().ok_or_else(|| anyhow::anyhow!("MPI was already initialised"))?;
    let group = world::World::new(&universe);
    mdrec_train::dist::join(std::sync::Arc::new(group)).map_err(anyhow::Error::msg)?;
    Ok(Membership {
        _universe: Some(universe),
    })
}

#[cfg(feature = "mpi")]
mod world {
    use mdrec_train::dist::Collective;
    use mpi::collective::SystemOperation;
    use mpi::datatype::{Equivalence, Partition, PartitionMut};
    use mpi::topology::{Communicator, SimpleCommunicator};
    use mpi::traits::*;
    use mpi::Count;

    /// The MPI world as a [`Collective`]. It keeps only its rank and size: the world
    /// communicator is a handle MPI owns, fetched for each operation, so this type is plain
    /// data that any thread may hold (training calls it from one thread).
    pub struct World {
        rank: usize,
        size: usize,
    }

    impl World {
        pub fn new(universe: &mpi::environment::Universe) -> Self {
            let w = universe.world();
            World {
                rank: w.rank() as usize,
                size: w.size() as usize,
            }
        }
    }

    fn comm() -> SimpleCommunicator {
        SimpleCommunicator::world()
    }

    fn displacements(counts: &[Count]) -> Vec<Count> {
        counts
            .iter()
            .scan(0, |at, &c| {
                let d = *at;
                *at += c;
                Some(d)
            })
            .collect()
    }

    /// All-to-all-v: `send[d]` to rank `d`; what each rank sent here, by sender. The counts
    /// travel first (one all-to-all), then the values (one all-to-all-v).
    fn exchange<T: Equivalence + Copy + Default>(send: &[Vec<T>]) -> Vec<Vec<T>> {
        let w = comm();
        let counts: Vec<Count> = send.iter().map(|v| v.len() as Count).collect();
        let mut recv_counts = vec![0 as Count; send.len()];
        w.all_to_all_into(&counts[..], &mut recv_counts[..]);
        let flat: Vec<T> = send.iter().flatten().copied().collect();
        let recv_displs = displacements(&recv_counts);
        let total: Count = recv_counts.iter().sum();
        let mut out = vec![T::default(); total as usize];
        {
            let displs = displacements(&counts);
            let part = Partition::new(&flat[..], &counts[..], &displs[..]);
            let mut recv = PartitionMut::new(&mut out[..], &recv_counts[..], &recv_displs[..]);
            w.all_to_all_varcount_into(&part, &mut recv);
        }
        recv_displs
            .iter()
            .zip(&recv_counts)
            .map(|(&d, &c)| out[d as usize..(d + c) as usize].to_vec())
            .collect()
    }

    impl Collective for World {
        fn rank(&self) -> usize {
            self.rank
        }

        fn size(&self) -> usize {
            self.size
        }

        fn sum(&self, buf: &mut [f32]) {
            let w = comm();
            let root = w.process_at_rank(0);
            if self.rank == 0 {
                let mut total = vec![0.0f32; buf.len()];
                root.reduce_into_root(&buf[..], &mut total[..], SystemOperation::sum());
                buf.copy_from_slice(&total);
            } else {
                root.reduce_into(&buf[..], SystemOperation::sum());
            }
            root.broadcast_into(buf);
        }

        fn gather(&self, local: &[f32]) -> Vec<f32> {
            let w = comm();
            let n = local.len() as Count;
            let mut counts = vec![0 as Count; self.size];
            w.all_gather_into(&n, &mut counts[..]);
            let displs = displacements(&counts);
            let total: Count = counts.iter().sum();
            let mut out = vec![0.0f32; total as usize];
            {
                let mut part = PartitionMut::new(&mut out[..], &counts[..], &displs[..]);
                w.all_gather_varcount_into(local, &mut part);
            }
            out
        }

        fn all_to_all(&self, send: &[Vec<f32>]) -> Vec<Vec<f32>> {
            exchange(send)
        }

        fn all_to_all_u32(&self, send: &[Vec<u32>]) -> Vec<Vec<u32>> {
            exchange(send)
        }

        fn barrier(&self) {
            comm().barrier();
        }

        fn abort(&self, code: i32) -> ! {
            comm().abort(code)
        }
    }
}
