//! `train.replicas`: data-parallel replicas on threads of one process train what one replica
//! trains on the same global batch (up to the order of floating-point sums), repeat bit for
//! bit, and give the same bits whether the tables are sharded across the replicas or whole
//! on each.

use mdrec_data::Prepared;
use mdrec_train::progress::Silent;
use mdrec_train::{prepare_dataset, train_run, RunConfig};

fn config(model: &str, extra: &[&str]) -> RunConfig {
    let mut cfg = RunConfig::default();
    cfg.set_model_name(model);
    for s in [
        "dataset.synthetic_rows=4000",
        "train.epochs=2",
        "train.max_steps_per_epoch=8",
        "train.batch_size=250",
        "train.lr=0.01",
    ]
    .iter()
    .chain(extra)
    {
        cfg.set(s).unwrap();
    }
    cfg
}

/// Test logits and the saved weights' bytes of a run of `cfg` with `replicas` replicas.
fn run(cfg: &RunConfig, prepared: &Prepared, replicas: usize) -> (Vec<f32>, Vec<u8>) {
    let mut cfg = cfg.clone();
    cfg.train.replicas = replicas;
    let dir = tempfile::tempdir().unwrap();
    let out = train_run(&cfg, prepared, dir.path(), &mut Silent).unwrap();
    let weights = std::fs::read(dir.path().join("weights.safetensors")).unwrap();
    (out.test_logits, weights)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn mean_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len().max(1) as f32
}

/// For runs that are close to one replica but not equal to rounding (each replica normalises
/// its share with the share's statistics, or draws its own dropout masks): asserts that two
/// replicas' test logits `two` are nearer one replica's `one` than another seed's run is.
/// "Near" is measured against a reseeded run, not a constant: the gap itself depends on the
/// machine's floating-point kernels (0.16 on one CPU, 0.21 on another for DeepFM, against
/// about 1.0 for a reseeded run).
fn assert_nearer_than_a_reseed(what: &str, cfg: &RunConfig, one: &[f32], two: &[f32]) {
    assert!(two.iter().all(|x| x.is_finite()), "{what}");
    let mut reseeded = cfg.clone();
    reseeded.set("train.seed=7").unwrap();
    let (other, _) = run(&reseeded, &prepare_dataset(&reseeded).unwrap(), 1);
    let (d, reseed) = (mean_diff(one, two), mean_diff(one, &other));
    assert!(
        d < 0.5 * reseed,
        "{what}: 1 vs 2 replicas differ by {d} on average, a reseeded run by {reseed}"
    );
}

#[test]
fn replicas_train_what_one_replica_trains_and_repeat_bit_for_bit() {
    // mmoe: plain; m3oe bilevel: the outer step runs whole on every replica; ple: per-domain
    // routing (a replica's share may lack a domain); mmoe with dropout: each replica thread
    // draws its masks from its own stream (burn's generator is one per process).
    for (model, extra) in [
        ("mmoe", &[][..]),
        ("m3oe", &["model.automl=\"bilevel\""][..]),
        ("ple", &[][..]),
        ("mmoe", &["model.mlp.dropout=0.3"][..]),
    ] {
        let cfg = config(model, extra);
        let prepared = prepare_dataset(&cfg).unwrap();
        let (one, _) = run(&cfg, &prepared, 1);
        let (two, w2) = run(&cfg, &prepared, 2);
        let (again, w2b) = run(&cfg, &prepared, 2);
        assert_eq!(two, again, "{model}: two runs with 2 replicas differ");
        assert!(w2 == w2b, "{model}: saved weights differ");
        let d = max_diff(&one, &two);
        if extra.first().is_some_and(|e| e.contains("dropout")) {
            assert_nearer_than_a_reseed("mmoe with dropout", &cfg, &one, &two);
            continue;
        }
        // 250 rows split 125 / 125 (and 84 / 83 / 83 below): only the order of the sums differs.
        assert!(d < 1e-3, "{model}: 1 vs 2 replicas differ by {d}");
        assert!(
            d > 0.0 || model == "m3oe",
            "{model}: suspiciously identical"
        );
        let (three, _) = run(&cfg, &prepared, 3);
        let d = max_diff(&one, &three);
        assert!(d < 1e-3, "{model}: 1 vs 3 replicas differ by {d}");
    }
}

#[test]
fn sharded_and_whole_tables_give_the_same_bits_across_replicas() {
    let row = config("mmoe", &["train.embedding.sharding=\"row\""]);
    let whole = config("mmoe", &["train.embedding.sharding=\"replicated\""]);
    let prepared = prepare_dataset(&row).unwrap();
    assert_eq!(run(&row, &prepared, 2).0, run(&whole, &prepared, 2).0);
}

#[test]
fn settings_of_several_models_and_stream_training_run_as_replicas() {
    for extra in [
        &["train.setting=\"mdl\""][..],
        // bounded tables, replicated: every replica makes one process's admissions
        &[
            "train.mode=\"stream\"",
            "train.stream.window_rows=1000",
            "train.stream.tables.capacity_fraction=0.5",
            "train.embedding.sharding=\"replicated\"",
        ][..],
        // sharded tables admitting at the second sighting, unbounded: each replica admits
        // its ids as one process would, and ids without rows train the shared OOV row
        &[
            "train.mode=\"stream\"",
            "train.stream.window_rows=1000",
            "train.stream.tables.admission=\"min_count\"",
            "train.embedding.sharding=\"row\"",
        ][..],
    ] {
        let cfg = config("mmoe", extra);
        let prepared = prepare_dataset(&cfg).unwrap();
        let (one, _) = run(&cfg, &prepared, 1);
        let (two, _) = run(&cfg, &prepared, 2);
        let d = max_diff(&one, &two);
        assert!(d < 1e-3, "{extra:?}: 1 vs 2 replicas differ by {d}");
    }
}

#[test]
fn models_with_running_statistics_train_as_replicas() {
    // deepfm: BatchNorm and dropout in its MLP; star: partitioned normalisation.
    for model in ["deepfm", "star"] {
        let cfg = config(model, &[]);
        let prepared = prepare_dataset(&cfg).unwrap();
        let (one, _) = run(&cfg, &prepared, 1);
        let (two, w2) = run(&cfg, &prepared, 2);
        assert!(run(&cfg, &prepared, 2).1 == w2, "{model}: two runs differ");
        assert_nearer_than_a_reseed(model, &cfg, &one, &two);
    }
}

#[test]
fn areads_hemp_schedule_trains_as_replicas_with_the_batch_means_of_its_gates() {
    // The replicas split HEMP's single-domain batches (warm-up, main and candidate steps); the
    // gate values it records are the group's weighted means of the shares' means, so every
    // replica picks the same masks. Without BatchNorm and dropout a replica's half batch
    // computes what one process computes on it, so two replicas follow one process up to
    // the order of sums, through several mask updates.
    let cfg = config(
        "aread",
        &[
            "train.epochs=1",
            "train.max_steps_per_epoch=10",
            "model.mlp.norm=\"none\"",
            "model.mlp.dropout=0.0",
            "model.hemp.reference_batch_size=250",
            "model.hemp.warm_up_interval=6",
            "model.hemp.regroup_interval=4",
            "model.hemp.update_steps=2",
            "model.hemp.candidates=3",
        ],
    );
    let prepared = prepare_dataset(&cfg).unwrap();
    let (one, _) = run(&cfg, &prepared, 1);
    let (two, w2) = run(&cfg, &prepared, 2);
    assert!(run(&cfg, &prepared, 2).1 == w2, "two runs differ");
    let d = max_diff(&one, &two);
    assert!(d < 1e-3, "1 vs 2 replicas differ by up to {d}");
}

#[test]
fn a_refused_config_ends_every_replica_with_its_error() {
    // HEMP's state is not in checkpoints: refused, by every replica.
    let cfg = config("aread", &["train.checkpoint_every_steps=2"]);
    let prepared = prepare_dataset(&cfg).unwrap();
    let mut cfg = cfg;
    cfg.train.replicas = 2;
    let dir = tempfile::tempdir().unwrap();
    let e = train_run(&cfg, &prepared, dir.path(), &mut Silent)
        .err()
        .expect("HEMP with checkpoints is refused")
        .to_string();
    assert!(
        e.contains("HEMP") && e.contains("checkpoint_every_steps"),
        "{e}"
    );
    let mut bad = RunConfig::default();
    assert!(bad.set("train.replicas=0").is_ok());
    let e = bad.resolve().err().unwrap().to_string();
    assert!(e.contains("train.replicas must be at least 1"), "{e}");
}
