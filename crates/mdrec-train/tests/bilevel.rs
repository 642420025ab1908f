//! Bi-level optimisation of outer parameters (M3oE `automl = "bilevel"`): the main step never
//! changes them, the outer step changes only them, `joint` trains them in the main step, and
//! the whole schedule is deterministic.

mod common;

use std::collections::BTreeMap;

use mdrec_data::EncodedData;
use mdrec_nn::device::cpu;
use mdrec_nn::ModelContext;
use mdrec_train::engine::Engine;
use mdrec_train::progress::Silent;
use mdrec_train::{prepare_dataset, train_run, RunConfig, TrainConfig};

const FIELDS: usize = 4;
const VOCAB: usize = 12;
const DOMAINS: usize = 3;
const TASKS: usize = 2;
const PHI: [&str; 4] = [
    "weights.bal_d",
    "weights.bal_t",
    "weights.exp_d",
    "weights.exp_t",
];

fn data(n: usize, seed: u64) -> EncodedData {
    common::random_data(n, seed, FIELDS, VOCAB, DOMAINS, TASKS)
}

fn engine(automl: &str) -> (Engine, ModelContext) {
    let ctx = ModelContext::uniform(FIELDS, VOCAB, 4, 1, DOMAINS, TASKS);
    let cfg = TrainConfig {
        lr: 0.01,
        batch_size: 128,
        automl_lr: 0.01,
        ..TrainConfig::default()
    };
    let f = mdrec_models::find("m3oe").unwrap();
    let mut over = f.tiny_config();
    over["automl"] = serde_json::Value::String(automl.into());
    let c = f.resolve(&over).unwrap();
    (
        Engine::new(f, &c, ctx.clone(), &cfg, 7, &cpu()).unwrap(),
        ctx,
    )
}

fn tensors(e: &Engine) -> BTreeMap<String, Vec<f32>> {
    e.model
        .named_tensors()
        .into_iter()
        .map(|(n, _, v)| (n, v))
        .collect()
}

fn tables(e: &Engine) -> Vec<Vec<f32>> {
    e.store.tables().map(|(_, _, _, w)| w.to_vec()).collect()
}

/// Names whose values differ between `a` and `b`.
fn changed(a: &BTreeMap<String, Vec<f32>>, b: &BTreeMap<String, Vec<f32>>) -> Vec<String> {
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "same parameters"
    );
    a.iter()
        .filter(|(k, v)| b[*k] != **v)
        .map(|(k, _)| k.clone())
        .collect()
}

#[test]
fn bilevel_main_steps_skip_phi_and_outer_step_updates_only_phi() {
    let d = data(640, 1);
    let (mut e, _) = engine("bilevel");
    assert!(e.has_outer_params());
    let t0 = tensors(&e);
    for k in PHI {
        assert!(t0.contains_key(k), "{k} missing: {:?}", t0.keys());
    }
    let rows: Vec<u32> = (0..640).collect();
    for ch in rows.chunks(128) {
        e.train_step(&d, ch).unwrap();
    }
    let t1 = tensors(&e);
    let c = changed(&t0, &t1);
    for k in PHI {
        assert_eq!(t0[k], t1[k], "main steps changed {k}");
    }
    // Every other parameter was trained (all are on the forward path with a gradient).
    assert_eq!(c.len(), t0.len() - PHI.len(), "unchanged: {c:?}");

    let emb = tables(&e);
    let l = e.outer_step(&d, &rows[..128]).unwrap();
    assert!(l.is_finite());
    let t2 = tensors(&e);
    let mut c = changed(&t1, &t2);
    c.sort();
    assert_eq!(c, PHI.to_vec(), "outer step must change φ and nothing else");
    assert_eq!(tables(&e), emb, "outer step must not touch the embeddings");

    // Later main steps still leave φ alone (the main optimizer holds no state for it).
    e.train_step(&d, &rows[..128]).unwrap();
    let t3 = tensors(&e);
    for k in PHI {
        assert_eq!(t2[k], t3[k], "main step changed {k}");
    }
}

#[test]
fn joint_main_step_trains_phi_and_has_no_outer_step() {
    let d = data(256, 2);
    let (mut e, _) = engine("joint");
    assert!(!e.has_outer_params());
    let t0 = tensors(&e);
    let rows: Vec<u32> = (0..128).collect();
    e.train_step(&d, &rows).unwrap();
    let t1 = tensors(&e);
    for k in PHI {
        assert_ne!(t0[k], t1[k], "joint step left {k} unchanged");
    }
    // outer_step is a no-op without outer parameters.
    e.outer_step(&d, &rows).unwrap();
    assert!(changed(&t1, &tensors(&e)).is_empty());
}

/// Whole runs through the trainer: the outer step runs once per epoch (φ moves between
/// epochs although the main optimizer never touches it), and two runs with the same seed
/// give the same φ.
#[test]
fn bilevel_runs_are_deterministic_and_move_phi_once_per_epoch() {
    let run = |source: &str| {
        let mut cfg = RunConfig::default();
        cfg.set_model_name("m3oe");
        cfg.set("dataset.synthetic_rows=2000").unwrap();
        cfg.set("model.automl=\"bilevel\"").unwrap();
        cfg.set("model.star_dim=16").unwrap();
        cfg.set("model.shared_dim=16").unwrap();
        cfg.set("model.expert_dims=[8]").unwrap();
        cfg.set("train.epochs=3").unwrap();
        cfg.set("train.patience=5").unwrap();
        cfg.set("train.batch_size=256").unwrap();
        cfg.set("train.automl_lr=0.05").unwrap();
        cfg.set(&format!("train.automl_batch_source=\"{source}\""))
            .unwrap();
        let prepared = prepare_dataset(&cfg).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = train_run(&cfg, &prepared, dir.path(), &mut Silent).unwrap();
        let lines: Vec<serde_json::Value> =
            std::fs::read_to_string(dir.path().join("metrics.jsonl"))
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
        // every dense parameter and embedding row the run kept
        let weights = std::fs::read(dir.path().join("weights.safetensors")).unwrap();
        (out.report.model_report, lines, weights)
    };
    let (a, lines, wa) = run("valid");
    let (b, lines_b, wb) = run("valid");
    assert_eq!(a, b, "same seed, same φ");
    assert!(wa == wb, "same seed, different weights.safetensors");
    // and the same per-epoch metrics (losses, validation metrics, φ), seconds aside
    let strip = |l: &[serde_json::Value]| -> Vec<serde_json::Value> {
        l.iter()
            .map(|v| {
                let mut v = v.clone();
                v.as_object_mut()
                    .unwrap()
                    .retain(|k, _| !k.contains("seconds") && !k.ends_with("_s"));
                v
            })
            .collect()
    };
    assert_eq!(strip(&lines), strip(&lines_b));
    assert_eq!(lines.len(), 3);
    let w: Vec<f64> = lines
        .iter()
        .map(|l| {
            assert!(l["outer_loss"].as_f64().unwrap().is_finite());
            l["model_report"]["fusion_weights"]["bal_d"]
                .as_f64()
                .unwrap()
        })
        .collect();
    let init = 1.0 / (1.0 + (-1.0f64).exp());
    assert!(
        (w[0] - init).abs() > 1e-6,
        "no outer step in epoch 1: {w:?}"
    );
    assert!(
        w[0] != w[1] && w[1] != w[2],
        "φ must move every epoch: {w:?}"
    );
    // The source split matters: drawing the outer batch from train gives other weights.
    let (c, _, _) = run("train");
    assert_ne!(a, c);
}
