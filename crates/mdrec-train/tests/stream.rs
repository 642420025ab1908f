//! Stream training: windows in time order scored before training, growing and evicting
//! tables, the progressive report, determinism, and id maps that survive the saved weights.

use mdrec_nn::device::cpu;
use mdrec_train::checkpoint::{Checkpoint, CheckpointWriter};
use mdrec_train::config::ResolvedRun;
use mdrec_train::engine::Engine;
use mdrec_train::progress::Silent;
use mdrec_train::stream::WindowLine;
use mdrec_train::{context_from_schema, prepare_dataset, train_run, RunConfig, TrainedModels};

fn stream_config(extra: &[&str]) -> RunConfig {
    let mut cfg = RunConfig::default();
    for s in [
        "dataset.synthetic_rows=6000",
        "train.mode=\"stream\"",
        "train.stream.window_rows=1000",
        "train.batch_size=256",
    ]
    .iter()
    .chain(extra)
    {
        cfg.set(s).unwrap();
    }
    cfg
}

fn lines(dir: &std::path::Path) -> Vec<WindowLine> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn stream_run_scores_each_window_before_training_and_bounds_the_tables() {
    let cfg = stream_config(&["train.stream.tables.capacity_fraction=0.25"]);
    let prepared = prepare_dataset(&cfg).unwrap();
    assert_eq!(prepared.train.len(), 6000);
    assert!(prepared.valid.is_empty() && prepared.test.is_empty());
    assert!(
        prepared.train.time.windows(2).all(|w| w[0] <= w[1]),
        "rows in time order"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = train_run(&cfg, &prepared, dir.path(), &mut Silent).unwrap();
    let l = lines(dir.path());
    assert_eq!(l.len(), 6);
    let mut before = 0;
    for (k, w) in l.iter().enumerate() {
        assert_eq!((w.window, w.rows, w.rows_before), (k, 1000, before));
        before += w.rows;
        for t in &w.tables {
            let cap = t.capacity.unwrap();
            assert!(t.live_rows <= cap + 2, "{t:?}");
            assert!(
                t.allocated_rows <= cap + 2,
                "rows are reused, not grown: {t:?}"
            );
        }
        assert!(w.tasks.iter().all(|t| t.predicted_rate > 0.0));
    }
    // The first window is scored by an untrained model: nothing is admitted before it.
    let user = |w: &WindowLine| {
        w.tables
            .iter()
            .find(|t| t.table == "user_id")
            .unwrap()
            .clone()
    };
    assert!(user(&l[5]).evicted > 0, "a quarter of the users do not fit");
    let s = out.report.stream.as_ref().unwrap();
    assert_eq!((s.windows, s.rows), (6, 6000));
    assert_eq!(
        out.report.test.tasks[0].n, 6000,
        "progressive over every row"
    );
    assert_eq!(out.report.valid.tasks[0].n, 600, "the last 10 %");
    assert!((0.0..=1.0).contains(&s.progressive_auc.unwrap()));

    // Same config, same result.
    let dir2 = tempfile::tempdir().unwrap();
    let again = train_run(&cfg, &prepared, dir2.path(), &mut Silent).unwrap();
    assert_eq!(
        serde_json::to_value(&out.report.test).unwrap(),
        serde_json::to_value(&again.report.test).unwrap()
    );
    assert_eq!(
        std::fs::read(dir.path().join("weights.safetensors")).unwrap(),
        std::fs::read(dir2.path().join("weights.safetensors")).unwrap()
    );
}

#[test]
fn first_window_vocabulary_admits_nothing_later() {
    let cfg = stream_config(&["train.stream.tables.admission=\"first_window\""]);
    let prepared = prepare_dataset(&cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    train_run(&cfg, &prepared, dir.path(), &mut Silent).unwrap();
    let l = lines(dir.path());
    let admitted = |w: &WindowLine| w.tables.iter().map(|t| t.admitted).sum::<u64>();
    assert!(admitted(&l[0]) > 0);
    assert_eq!(admitted(&l[0]), admitted(&l[5]));
}

/// The weights file of a stream run holds each table's id → row map; a model loaded from it
/// scores exactly as the trained engine did, evicted and never-admitted ids included.
#[test]
fn id_maps_survive_the_weights_file_and_scoring() {
    let cfg = stream_config(&["train.stream.tables.capacity_fraction=0.3"]);
    let prepared = prepare_dataset(&cfg).unwrap();
    let ResolvedRun {
        cfg: resolved,
        factory,
        model_cfg,
        ..
    } = cfg.resolve().unwrap();
    let tc = &resolved.train;
    let ctx = context_from_schema(&prepared.schema, tc.embedding.dim);
    let mut engine = Engine::new(factory, &model_cfg, ctx, tc, tc.seed, &cpu()).unwrap();
    engine
        .store
        .make_dynamic(&tc.stream.tables, tc.seed)
        .unwrap();
    let rows: Vec<u32> = (0..4000).collect();
    for chunk in rows.chunks(256) {
        engine.train_step(&prepared.train, chunk).unwrap();
    }
    let stats = engine.store.table_stats();
    assert!(stats.iter().any(|t| t.evicted > 0), "{stats:?}");
    let all: Vec<u32> = (0..prepared.train.len() as u32).collect();
    let want = engine.predict_rows(&prepared.train, &all, 1000).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let snap = engine.snapshot();
    let mut w = CheckpointWriter::default();
    w.add("", snap.model.as_ref(), &snap.store);
    w.write(&dir.path().join("weights.safetensors"), Default::default())
        .unwrap();
    std::fs::write(
        dir.path().join("config.resolved.json"),
        serde_json::to_string(&resolved).unwrap(),
    )
    .unwrap();
    assert!(Checkpoint::read(&dir.path().join("weights.safetensors")).is_ok());
    let loaded = TrainedModels::load(dir.path(), &prepared.schema).unwrap();
    let got = loaded.logits(&prepared.train, 1000).unwrap();
    let diff = want.iter().zip(&got).filter(|(a, b)| a != b).count();
    assert_eq!(diff, 0, "first: {:?} vs {:?}", &want[..6], &got[..6]);
}

#[test]
fn stream_settings_are_checked_before_reading_data() {
    for (set, needle) in [
        ("train.stream.window_rows=0", "window_rows"),
        (
            "train.stream.tables.capacity_fraction=1.5",
            "capacity_fraction",
        ),
        ("train.stream.tables.admission=\"often\"", "expected one of"),
        ("train.setting=\"isolated\"", "setting mdmt"),
        ("train.embedding.optimizer=\"adam_dense\"", "adam_dense"),
    ] {
        let mut cfg = stream_config(&[]);
        let err = match cfg.set(set) {
            Err(e) => e.to_string(),
            Ok(()) => cfg
                .resolve()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default(),
        };
        assert!(err.contains(needle), "{set}: {err}");
    }
    let mut cfg = stream_config(&[]);
    cfg.set("train.stream.window_seconds=60").unwrap();
    let err = cfg
        .resolve()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("not both"), "{err}");
}

/// Every zoo model trains in stream mode (its tiny config, two short windows, small tables
/// with eviction) and reports a progressive AUC.
#[test]
fn every_zoo_model_trains_as_a_stream() {
    let base = stream_config(&[
        "dataset.synthetic_rows=1200",
        "train.stream.window_rows=600",
        "train.stream.tables.capacity_fraction=0.5",
    ]);
    let prepared = prepare_dataset(&base).unwrap();
    for factory in mdrec_models::MODELS {
        let name = factory.name();
        let mut cfg = base.clone();
        cfg.set_model_name(name);
        if let serde_json::Value::Object(m) = factory.tiny_config() {
            for (k, v) in m {
                cfg.model.insert(k, v);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let out = train_run(&cfg, &prepared, dir.path(), &mut Silent)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let s = out.report.stream.unwrap();
        assert_eq!((s.windows, s.rows), (2, 1200), "{name}");
        assert!(s.progressive_logloss.unwrap().is_finite(), "{name}");
    }
}

/// Delayed feedback: each row is trained once when released, and each positive reported after
/// its release once more (a late positive); the task must have a label-time column.
#[test]
fn delayed_feedback_trains_released_rows_and_late_positives() {
    let mut cfg = RunConfig::default();
    for s in [
        "dataset.name=\"synthetic-delayed\"",
        "dataset.delayed.n_rows=3000",
        "dataset.delayed.days=3",
        "train.mode=\"stream\"",
        "train.stream.window_seconds=21600",
        "train.batch_size=256",
        "train.stream.delayed.wait={ fixed = { seconds = 3600 } }",
        "train.stream.delayed.correction=\"fnw\"",
    ] {
        cfg.set(s).unwrap();
    }
    let prepared = prepare_dataset(&cfg).unwrap();
    let d = &prepared.train;
    let events = mdrec_data::delayed::schedule(
        &d.time,
        &d.labels[0],
        &d.label_time[0],
        &cfg.train.stream.delayed.as_ref().unwrap().wait,
    );
    let late = events
        .iter()
        .filter(|e| e.kind == mdrec_data::delayed::EventKind::LatePositive)
        .count();
    assert!(late > 0, "the fixture has late positives");
    let dir = tempfile::tempdir().unwrap();
    let out = train_run(&cfg, &prepared, dir.path(), &mut Silent).unwrap();
    let trained: usize = lines(dir.path()).iter().map(|w| w.trained).sum();
    assert_eq!(trained, 3000 + late);
    let task = &out.report.stream.unwrap().tasks[0];
    assert!(task.calibration.unwrap().is_finite() && task.auc.is_some());

    // the synthetic stream's other task-less datasets refuse the section
    let mut bad = stream_config(&["train.stream.delayed.task=\"click\""]);
    let prepared = prepare_dataset(&bad).unwrap();
    let err = train_run(&bad, &prepared, dir.path(), &mut Silent)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("no label_time column"), "{err}");
    bad.set("dataset.delayed.n_rows=10").unwrap();
    let err = bad.resolve().err().unwrap().to_string();
    assert!(err.contains("dataset.delayed applies to"), "{err}");
}
