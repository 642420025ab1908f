//! Tables sharded across a process group train exactly what whole tables train in one
//! process. The group here is replica threads of this test process ([`Replicas`], one per
//! rank, what `train.replicas` trains on) behind the same `Collective` trait the MPI build
//! implements, so the exchange logic is checked without MPI;
//! `crates/mdrec-cli/tests/distributed.rs` runs it under `mpirun`.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use mdrec_data::batch::Jagged;
use mdrec_data::rng::Rng;
use mdrec_data::Batch;
use mdrec_nn::collective::{self, with_group, Replicas};
use mdrec_nn::dynamic::{Admission, Eviction, NewRows, TablePolicy};
use mdrec_nn::{
    EmbeddingConfig, EmbeddingStore, FieldInfo, SparseOptimizer, StateArray, StoreState,
};

const RANKS: usize = 3;

/// `f(rank)` on each of `RANKS` replica threads of a fresh group, results in rank order. A
/// rank that panics releases the others from their collectives (so a failure fails the test
/// rather than hanging it) and its panic is re-raised.
fn on_ranks<T: Send>(f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    on_n_ranks(RANKS, f)
}

/// [`on_ranks`] on `n` ranks.
fn on_n_ranks<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let g = Replicas::new(n);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|r| {
                let (g, f) = (&g, &f);
                s.spawn(move || {
                    let out = catch_unwind(AssertUnwindSafe(|| with_group(g.member(r), || f(r))));
                    if out.is_err() {
                        g.fail(r);
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // The panic that failed first, not a rank released by it.
    let mut ok = Vec::new();
    let mut released = None;
    for r in results {
        match r {
            Ok(v) => ok.push(v),
            Err(p) if p.is::<collective::ReplicaFailed>() => released = Some(p),
            Err(p) => resume_unwind(p),
        }
    }
    if let Some(p) = released {
        resume_unwind(p);
    }
    ok
}

/// `user` and `friend` share one table; `tags` is multi-hot.
fn fields() -> Vec<FieldInfo> {
    let f = |name: &str, table: &str, vocab, offset, multi_hot, column| FieldInfo {
        name: name.into(),
        table: table.into(),
        vocab_size: vocab,
        dim: 3,
        offset,
        multi_hot,
        column,
        roles: vec![],
    };
    vec![
        f("user", "user", 11, 0, false, 0),
        f("friend", "user", 11, 3, false, 1),
        f("tags", "tags", 6, 6, true, 0),
    ]
}

const WIDTH: usize = 9;

fn batch(rng: &mut Rng, len: usize) -> Batch {
    let cat = (0..len * 2).map(|_| rng.below(11) as u32).collect();
    let mut offsets = vec![0u32];
    let mut values = Vec::new();
    for _ in 0..len {
        for _ in 0..rng.below(4) {
            values.push(rng.below(6) as u32);
        }
        offsets.push(values.len() as u32);
    }
    Batch {
        len,
        cat,
        multi: vec![Jagged { offsets, values }],
        ..Batch::default()
    }
}

/// Five seeded batches of `len` rows and a random gradient of each one's looked-up buffer.
fn batches_and_gradients(len: usize) -> (Vec<Batch>, Vec<Vec<f32>>) {
    let mut rng = Rng::new(7);
    let batches: Vec<Batch> = (0..5).map(|_| batch(&mut rng, len)).collect();
    let grads = batches
        .iter()
        .map(|b| (0..b.len * WIDTH).map(|_| rng.normal() as f32).collect())
        .collect();
    (batches, grads)
}

/// Rows `range` of `b`.
fn rows(b: &Batch, range: std::ops::Range<usize>) -> Batch {
    let n_cat = b.cat.len() / b.len;
    let col = &b.multi[0];
    let (lo, hi) = (col.offsets[range.start], col.offsets[range.end]);
    Batch {
        len: range.len(),
        cat: b.cat[range.start * n_cat..range.end * n_cat].to_vec(),
        multi: vec![Jagged {
            offsets: col.offsets[range.start..=range.end]
                .iter()
                .map(|o| o - lo)
                .collect(),
            values: col.values[lo as usize..hi as usize].to_vec(),
        }],
        ..Batch::default()
    }
}

fn share(n: usize, r: usize) -> std::ops::Range<usize> {
    (n * r / RANKS)..(n * (r + 1) / RANKS)
}

/// Trains `steps` batches in one process with whole tables and on the thread group with
/// tables of at least `min_rows` rows sharded; every rank's lookups must equal its share of
/// the whole lookup and the joined shards the whole store, bit for bit.
fn check(optimizer: SparseOptimizer, min_rows: usize, expect_sharded: &[&str]) {
    let cfg = EmbeddingConfig {
        dim: 3,
        init_std: 0.1,
        optimizer,
        weight_decay: Some(1e-3),
        ..EmbeddingConfig::default()
    };
    let (batches, grads) = batches_and_gradients(13);
    let mut whole = EmbeddingStore::new(&fields(), &cfg, &mut Rng::new(3));
    let mut looked = Vec::new();
    for (b, gr) in batches.iter().zip(&grads) {
        let mut out = Vec::new();
        whole.lookup(b, &mut out).unwrap();
        looked.push(out);
        whole.apply_gradient(b, gr, 0.05, 1e-3);
    }
    let mut after = Vec::new();
    whole.lookup(&batches[0], &mut after).unwrap();
    let states: Vec<(Vec<String>, StoreState)> = on_ranks(|r| {
        let mut store = EmbeddingStore::new(&fields(), &cfg, &mut Rng::new(3));
        let names = store.shard(r, RANKS, min_rows).unwrap();
        for ((b, gr), want) in batches.iter().zip(&grads).zip(&looked) {
            let rr = share(b.len, r);
            let local = rows(b, rr.clone());
            let mut out = Vec::new();
            store.lookup(&local, &mut out).unwrap();
            assert_eq!(out, want[rr.start * WIDTH..rr.end * WIDTH], "rank {r}");
            store
                .apply_gradient_routed(&local, &gr[rr.start * WIDTH..rr.end * WIDTH], 0.05, 1e-3)
                .unwrap();
        }
        // A rank with nothing to look up still answers the others.
        let mut out = Vec::new();
        if r == 0 {
            store.lookup(&batches[0], &mut out).unwrap();
            assert_eq!(out, after);
        } else {
            store.lookup(&Batch::default(), &mut out).unwrap();
            assert!(out.is_empty());
        }
        (names, store.export_state())
    });
    assert_eq!(
        states[0].0, expect_sharded,
        "{optimizer:?} min_rows {min_rows}"
    );
    let parts: Vec<StoreState> = states.into_iter().map(|(_, s)| s).collect();
    let joined = if expect_sharded.is_empty() {
        assert!(parts.iter().all(|p| p.shard.is_none()));
        assert!(parts.iter().all(|p| *p == parts[0]));
        parts[0].clone()
    } else {
        StoreState::merge(&parts).unwrap()
    };
    assert_eq!(
        joined,
        whole.export_state(),
        "{optimizer:?} min_rows {min_rows}"
    );
}

#[test]
fn sharded_tables_train_what_whole_tables_train_bit_for_bit() {
    for opt in [
        SparseOptimizer::Adam,
        SparseOptimizer::Adagrad,
        SparseOptimizer::AdamDense,
        SparseOptimizer::Sgd,
    ] {
        check(opt, 0, &["user", "tags"]);
    }
    // Small tables stay whole on every rank; routing their gradients to every rank gives the
    // same result.
    check(SparseOptimizer::Adam, 7, &["user"]);
    check(SparseOptimizer::Adam, 100, &[]);
}

#[test]
fn a_whole_state_reshards_into_any_number_of_ranks() {
    let cfg = EmbeddingConfig {
        dim: 3,
        init_std: 0.1,
        ..EmbeddingConfig::default()
    };
    let mut whole = EmbeddingStore::new(&fields(), &cfg, &mut Rng::new(3));
    let b = batch(&mut Rng::new(1), 9);
    whole.apply_gradient(&b, &vec![0.5; 9 * WIDTH], 0.1, 0.0);
    let state = whole.export_state();
    for size in 2..5 {
        let parts: Vec<StoreState> = (0..size)
            .map(|r| {
                let mut s = EmbeddingStore::new(&fields(), &cfg, &mut Rng::new(99));
                s.shard(r, size, 0).unwrap();
                s.import_state(&state).unwrap();
                let e = s.export_state();
                assert_eq!(e.shard.as_ref().unwrap().rank, r);
                e
            })
            .collect();
        assert_eq!(StoreState::merge(&parts).unwrap(), state, "size {size}");
        // A shard's own state is refused by a whole store, and a set missing a rank by merge.
        let mut s = EmbeddingStore::new(&fields(), &cfg, &mut Rng::new(99));
        let e = s.import_state(&parts[1]).unwrap_err();
        assert!(e.contains("shard 1 of"), "{e}");
        let e = StoreState::merge(&parts[1..]).unwrap_err();
        assert!(!e.is_empty());
    }
}

/// A lookup asks each owner for each distinct id of a field once: every row of every share has
/// user 4 (owner: rank 1) and friend 5 (owner: rank 2), no tags.
#[test]
fn a_lookup_asks_for_each_distinct_id_of_a_field_once() {
    let cfg = EmbeddingConfig {
        dim: 3,
        ..EmbeddingConfig::default()
    };
    let share = Batch {
        len: 2,
        cat: vec![4, 5, 4, 5],
        multi: vec![Jagged {
            offsets: vec![0, 0, 0],
            values: vec![],
        }],
        ..Batch::default()
    };
    let sent: Vec<u64> = on_ranks(|r| {
        let mut store = EmbeddingStore::new(&fields(), &cfg, &mut Rng::new(3));
        store.shard(r, RANKS, 0).unwrap();
        let mut out = Vec::new();
        store.lookup(&share, &mut out).unwrap();
        assert_eq!(out.len(), 2 * WIDTH);
        collective::take_embedding().0
    });
    // Bytes each rank sends to the others: 3 field counts to every other rank, plus one id per
    // (field, owner) it needs and 3 floats per id it answers. Rank 0: user 4 → rank 1, friend
    // 5 → rank 2: 2 · (3 + 1) u32. Ranks 1 and 2: counts to both others, one id to the other
    // owner, and one row answered to each other rank: (3 + 3) + (3 + 1 + 3) values. Once per
    // occurrence it would be 200 bytes.
    assert_eq!(sent, vec![4 * 8, 4 * 13, 4 * 13]);
}

/// `presum_gradients`: a rank sends one gradient per distinct id of a field (fewer bytes when
/// its share repeats ids, as these shares of 11 ids do) and the tables train what whole tables
/// train, up to the order of the sums.
#[test]
fn presummed_gradients_travel_once_per_id_and_train_what_whole_tables_train_to_rounding() {
    let cfg = |presum| EmbeddingConfig {
        dim: 3,
        init_std: 0.1,
        presum_gradients: presum,
        ..EmbeddingConfig::default()
    };
    let (batches, grads) = batches_and_gradients(30);
    let mut whole = EmbeddingStore::new(&fields(), &cfg(false), &mut Rng::new(3));
    for (b, gr) in batches.iter().zip(&grads) {
        whole.apply_gradient(b, gr, 0.05, 0.0);
    }
    let want = whole.export_state();
    let train = |presum: bool| -> (StoreState, u64) {
        let parts: Vec<(StoreState, u64)> = on_ranks(|r| {
            let mut store = EmbeddingStore::new(&fields(), &cfg(presum), &mut Rng::new(3));
            store.shard(r, RANKS, 0).unwrap();
            collective::take_embedding();
            for (b, gr) in batches.iter().zip(&grads) {
                let rr = share(b.len, r);
                store
                    .apply_gradient_routed(
                        &rows(b, rr.clone()),
                        &gr[rr.start * WIDTH..rr.end * WIDTH],
                        0.05,
                        0.0,
                    )
                    .unwrap();
            }
            (store.export_state(), collective::take_embedding().0)
        });
        let sent = parts.iter().map(|p| p.1).sum();
        let states: Vec<StoreState> = parts.into_iter().map(|p| p.0).collect();
        (StoreState::merge(&states).unwrap(), sent)
    };
    let (exact, per_occurrence) = train(false);
    assert_eq!(exact, want, "without presum: the same bits");
    let (summed, per_id) = train(true);
    assert!(
        per_id < per_occurrence,
        "{per_id} vs {per_occurrence} bytes"
    );
    let floats = |s: &StoreState| -> Vec<f32> {
        s.tables
            .iter()
            .flat_map(|t| &t.arrays)
            .flat_map(|(_, a)| match a {
                StateArray::F32(v) => v.clone(),
                _ => Vec::new(),
            })
            .collect()
    };
    let (a, b) = (floats(&summed), floats(&want));
    assert_eq!(a.len(), b.len());
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    assert!(worst < 1e-5, "presummed tables differ by {worst}");
}

// ---- dynamic tables (stream training) ----

fn dynamic_cfg() -> EmbeddingConfig {
    EmbeddingConfig {
        dim: 3,
        init_std: 0.1,
        optimizer: SparseOptimizer::Adam,
        ..EmbeddingConfig::default()
    }
}

/// A dynamic store (`policy`, admission seed 5), sharded over `size` ranks as rank `rank`
/// when `size > 1`.
fn dynamic_store(policy: &TablePolicy, rank: usize, size: usize) -> EmbeddingStore {
    let mut s = EmbeddingStore::new(&fields(), &dynamic_cfg(), &mut Rng::new(3));
    s.make_dynamic(policy, 5).unwrap();
    if size > 1 {
        assert_eq!(s.shard(rank, size, 0).unwrap(), ["user", "tags"]);
    }
    s
}

/// One stream step on rank `r` of `size`: admission over the global batch, the lookup of
/// the rank's share, the routed update; returns the share's lookup.
fn dynamic_step(s: &mut EmbeddingStore, b: &Batch, gr: &[f32], r: usize, size: usize) -> Vec<f32> {
    s.begin_window(s.steps());
    s.admit(b);
    let rr = (b.len * r / size)..(b.len * (r + 1) / size);
    let local = rows(b, rr.clone());
    let mut out = Vec::new();
    s.lookup(&local, &mut out).unwrap();
    s.apply_gradient_routed(&local, &gr[rr.start * WIDTH..rr.end * WIDTH], 0.05, 0.0)
        .unwrap();
    out
}

/// The lookups of every batch of `batches` by a whole (unsharded) store.
fn whole_lookups(s: &EmbeddingStore, batches: &[Batch]) -> Vec<f32> {
    let mut all = Vec::new();
    for b in batches {
        let mut out = Vec::new();
        s.lookup(b, &mut out).unwrap();
        all.extend(out);
    }
    all
}

#[test]
fn sharded_dynamic_tables_admitting_every_id_train_what_replicated_ones_train() {
    // every id admitted, unbounded, new rows from OOV: the same bits
    check_dynamic(&TablePolicy::default(), 0.0);
}

#[test]
fn ids_without_rows_train_the_oov_row_of_every_shard() {
    // Admitted at their second sighting: until then an id reads OOV and its gradient, sent
    // to its owner, must reach every rank's OOV row (summed over the group, so up to the
    // order of the sums). 11 ids in a wide sketch: no collisions, the same admissions as
    // one table.
    check_dynamic(
        &TablePolicy {
            admission: Admission::MinCount,
            min_count: 2,
            ..TablePolicy::default()
        },
        1e-5,
    );
}

/// Trains the same batches with one whole dynamic store and with shards over `RANKS`
/// ranks; every lookup must agree within `tol` (0: bit for bit), also after joining.
fn check_dynamic(policy: &TablePolicy, tol: f32) {
    let policy = policy.clone();
    let close = |a: &[f32], b: &[f32], what: &str| {
        assert_eq!(a.len(), b.len(), "{what}");
        let d = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(d <= tol, "{what}: differs by {d}");
    };
    let (batches, grads) = batches_and_gradients(13);
    let mut whole = dynamic_store(&policy, 0, 1);
    let mut looked = Vec::new();
    for (b, gr) in batches.iter().zip(&grads) {
        whole.begin_window(whole.steps());
        whole.admit(b);
        let mut out = Vec::new();
        whole.lookup(b, &mut out).unwrap();
        looked.push(out);
        whole.apply_gradient(b, gr, 0.05, 0.0);
    }
    let want = whole_lookups(&whole, &batches);
    let results = on_ranks(|r| {
        let mut s = dynamic_store(&policy, r, RANKS);
        for ((b, gr), whole_out) in batches.iter().zip(&grads).zip(&looked) {
            let out = dynamic_step(&mut s, b, gr, r, RANKS);
            let rr = share(b.len, r);
            close(
                &out,
                &whole_out[rr.start * WIDTH..rr.end * WIDTH],
                &format!("rank {r}"),
            );
        }
        let joined = s.joined().unwrap();
        assert_eq!(joined.is_sharded(), r != 0, "rank 0 gets the joined tables");
        (s.export_state(), s.group_table_stats().unwrap(), joined)
    });
    // every rank holds rows of its own ids only, and the statistics add up to the whole's
    let rows_of = |p: &StoreState| match p.tables[0].arrays.iter().find(|(k, _)| k == "key_of") {
        Some((_, StateArray::U32(k))) => k.len(),
        _ => unreachable!(),
    };
    let held: usize = results.iter().map(|r| rows_of(&r.0) - 2).sum();
    assert_eq!(held + 2, whole.table_stats()[0].allocated_rows);
    assert!(results
        .iter()
        .all(|r| rows_of(&r.0) < whole.table_stats()[0].allocated_rows));
    for (r, (_, stats, joined)) in results.iter().enumerate() {
        for (st, w) in stats.iter().zip(whole.table_stats()) {
            assert_eq!(
                (st.live_rows, st.admitted),
                (w.live_rows, w.admitted),
                "rank {r}"
            );
        }
        if r == 0 {
            close(&whole_lookups(joined, &batches), &want, "joined");
        }
    }
    let parts: Vec<StoreState> = results.into_iter().map(|r| r.0).collect();
    let merged = StoreState::merge(&parts).unwrap();
    let mut reloaded = dynamic_store(&policy, 0, 1);
    reloaded.import_state(&merged).unwrap();
    close(&whole_lookups(&reloaded, &batches), &want, "reloaded");
}

/// Bounded tables (per-shard capacity, min-count sketch, score eviction, expiry, random new
/// rows):
/// the joined state continues exactly on the same number of ranks, every rank's OOV row
/// stays equal, and another number of ranks (or one process) takes the same rows.
#[test]
fn bounded_sharded_dynamic_tables_resume_exactly_and_reshard() {
    let policy = TablePolicy {
        admission: Admission::MinCount,
        min_count: 2,
        capacity_fraction: Some(0.5),
        eviction: Eviction::Score,
        new_rows: NewRows::Random,
        sketch_width: 64,
        ttl_windows: Some(1), // expired rows wait in the free lists
        ..TablePolicy::default()
    };
    let (mut batches, grads) = batches_and_gradients(20);
    // users 6..10 appear in the first batch only: they expire two windows later
    for b in &mut batches[1..] {
        b.cat.iter_mut().for_each(|id| *id %= 6);
    }
    let run = |from: Option<&StoreState>, steps: std::ops::Range<usize>| {
        on_ranks(|r| {
            let mut s = dynamic_store(&policy, r, RANKS);
            if let Some(state) = from {
                s.import_state(state).unwrap();
            }
            for k in steps.clone() {
                dynamic_step(&mut s, &batches[k], &grads[k], r, RANKS);
            }
            s.export_state()
        })
    };
    let straight = run(None, 0..5);
    let first = StoreState::merge(&run(None, 0..3)).unwrap();
    let freed = first
        .tables
        .iter()
        .flat_map(|t| &t.arrays)
        .any(|(k, a)| k == "free" && matches!(a, StateArray::U32(v) if !v.is_empty()));
    assert!(freed, "expired rows in the free lists at the checkpoint");
    let resumed = run(Some(&first), 3..5);
    assert_eq!(resumed, straight, "resume from the joined state");
    // bounded: some ids read OOV, whose gradients were summed into every rank's OOV row
    let oov = |p: &StoreState| match &p.tables[0].arrays[0].1 {
        StateArray::F32(w) => w[3..6].to_vec(),
        _ => unreachable!(),
    };
    assert!(straight.iter().all(|p| oov(p) == oov(&straight[0])));
    let merged = StoreState::merge(&straight).unwrap();
    let mut whole = dynamic_store(&policy, 0, 1);
    whole.import_state(&merged).unwrap();
    let want = whole_lookups(&whole, &batches);
    let stats = whole.table_stats();
    assert!(stats[0].evicted > 0 || stats[0].live_rows < 11, "{stats:?}");
    // two ranks take the same rows from the three ranks' state
    let looked: Vec<Vec<Vec<f32>>> = on_n_ranks(2, |r| {
        let mut s = dynamic_store(&policy, r, 2);
        s.import_state(&merged).unwrap();
        let mut all = Vec::new();
        for b in &batches {
            let rr = (b.len * r / 2)..(b.len * (r + 1) / 2);
            let mut out = Vec::new();
            s.lookup(&rows(b, rr), &mut out).unwrap();
            all.push(out);
        }
        all
    });
    let mut two = Vec::new();
    for (a, b) in looked[0].iter().zip(&looked[1]) {
        two.extend_from_slice(a);
        two.extend_from_slice(b);
    }
    assert_eq!(two, want, "re-sharded over 2 ranks");
    // a shard's state with another sketch width is refused by name
    let other = TablePolicy {
        sketch_width: 32,
        ..policy.clone()
    };
    let e = dynamic_store(&other, 0, 1)
        .import_state(&merged)
        .unwrap_err();
    assert!(e.contains("sketch"), "{e}");
}
