//! AREAD with HEMP: the candidate snapshot/restore is exact (every parameter, buffer, mask,
//! embedding row and optimizer moment), masks survive a checkpoint, and a short run on the
//! synthetic dataset goes through warm-up and mask updates.

mod common;

use std::collections::BTreeMap;

use mdrec_data::EncodedData;
use mdrec_models::multidomain::aread::{Aread, Mask};
use mdrec_models::Probes;
use mdrec_nn::device::cpu;
use mdrec_nn::ModelContext;
use mdrec_train::checkpoint::{Checkpoint, CheckpointWriter};
use mdrec_train::engine::Engine;
use mdrec_train::progress::Progress;
use mdrec_train::{prepare_dataset, train_run, RunConfig, TrainConfig};

const FIELDS: usize = 4;
const VOCAB: usize = 12;
const DOMAINS: usize = 3;
const TASKS: usize = 1;

fn data(n: usize, seed: u64) -> EncodedData {
    common::random_data(n, seed, FIELDS, VOCAB, DOMAINS, TASKS)
}

fn engine() -> Engine {
    let ctx = ModelContext::uniform(FIELDS, VOCAB, 4, 1, DOMAINS, TASKS);
    let cfg = TrainConfig {
        lr: 0.01,
        batch_size: 64,
        ..TrainConfig::default()
    };
    let f = mdrec_models::find("aread").unwrap();
    let c = f.resolve(&f.tiny_config()).unwrap();
    Engine::new(f, &c, ctx, &cfg, 7, &cpu()).unwrap()
}

fn aread(e: &mut Engine) -> &mut Aread {
    e.model.hemp_mut().expect("aread has the HEMP hook")
}

/// Every dense tensor (parameters, BatchNorm statistics, masks) by name, as bits.
fn dense(e: &Engine) -> BTreeMap<String, Vec<u32>> {
    e.model
        .named_tensors()
        .into_iter()
        .map(|(n, _, v)| (n, v.into_iter().map(f32::to_bits).collect()))
        .collect()
}

fn some_mask(e: &mut Engine, skip: usize) -> Mask {
    let sizes = aread(e).sizes().to_vec();
    let mut m = Mask::full(&sizes);
    let (s, r, c) = m.block(1);
    for j in (0..r * c).step_by(skip) {
        m.edges_mut()[s + j] = false;
    }
    m.validate();
    assert!(m.has_output());
    m
}

#[test]
fn snapshot_restore_around_candidate_training_is_exact() {
    let d = data(640, 3);
    let mut e = engine();
    let m = some_mask(&mut e, 3);
    aread(&mut e)
        .set_masks(&[Some(m.clone()), Some(m.clone()), None])
        .unwrap();
    let rows0: Vec<u32> = d.rows_of_domain(0)[..64].to_vec();
    let rows1: Vec<u32> = d.rows_of_domain(1)[..64].to_vec();
    // Some main steps so the optimizers have moments.
    for _ in 0..3 {
        e.train_step(&d, &rows0).unwrap();
        e.train_step(&d, &rows1).unwrap();
    }
    let dense0 = dense(&e);
    let store0 = e.store.clone();
    let optim0 = e.optimizer().into_bytes().unwrap();
    let state = e.save_state();

    // Candidate training: other mask, fresh fast optimizer, reset embedding moments, then a
    // main step too.
    let other = some_mask(&mut e, 2);
    aread(&mut e).set_mask(0, Some(other)).unwrap();
    let mut fast = burn::optim::AdamConfig::new().with_beta_2(0.99).init();
    e.store.reset_optimizer_state();
    for _ in 0..3 {
        e.step_with(
            &d,
            &rows0,
            &mut fast,
            0.05,
            0.05,
            0.0,
            &mut Probes::new(true),
        )
        .unwrap();
    }
    e.train_step(&d, &rows1).unwrap();
    assert_ne!(dense(&e), dense0, "candidate training changed nothing");
    assert_ne!(e.store, store0);

    e.restore_state(&state, &[]);
    assert_eq!(
        dense(&e),
        dense0,
        "dense parameters, buffers or masks differ"
    );
    assert!(e.store == store0, "embedding rows or moments differ");
    assert_eq!(
        e.optimizer().into_bytes().unwrap(),
        optim0,
        "optimizer state differs"
    );
    assert_eq!(aread(&mut e).masks()[0].as_ref(), Some(&m));

    // Training continues from the restored state exactly as from the original.
    let mut twin = engine();
    twin.restore_state(&state, &[]);
    let a = e.train_step(&d, &rows0).unwrap();
    let b = twin.train_step(&d, &rows0).unwrap();
    assert_eq!(a.to_bits(), b.to_bits());
    assert_ne!(dense(&e), dense0, "restored parameters no longer train");
}

#[test]
fn masks_survive_a_checkpoint_and_are_reported() {
    let d = data(320, 5);
    let mut e = engine();
    let m0 = some_mask(&mut e, 2);
    let m2 = some_mask(&mut e, 5);
    aread(&mut e)
        .set_masks(&[Some(m0.clone()), None, Some(m2.clone())])
        .unwrap();
    let rows: Vec<u32> = d.rows_of_domain(0)[..64].to_vec();
    e.train_step(&d, &rows).unwrap();
    let snap = e.snapshot();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let mut w = CheckpointWriter::default();
    w.add("", snap.model.as_ref(), &snap.store);
    w.write(&path, Default::default()).unwrap();
    let mut fresh = engine();
    Checkpoint::read(&path)
        .unwrap()
        .load_into("", fresh.model.as_mut(), &mut fresh.store)
        .unwrap();
    let got = aread(&mut fresh).masks();
    assert_eq!(got, vec![Some(m0.clone()), None, Some(m2.clone())]);
    let rep = fresh.model.report();
    assert_eq!(rep["active_edges"][0], m0.active_edges());
    assert!(rep["active_edges"][1].is_null());
    let or = &rep["overlap_ratio"]["l1-l2"];
    assert_eq!(or[0][0], 1.0);
    assert_eq!(or[0][2].as_f64(), m0.overlap(&m2, 1));
    assert!(or[1][0].is_null());
}

struct Log(Vec<String>);

impl Progress for Log {
    fn start_epoch(&mut self, _: &str, _: usize, _: usize) {}
    fn step(&mut self, _: usize, _: f64) {}
    fn message(&mut self, line: &str) {
        self.0.push(line.to_string());
    }
}

#[test]
fn hemp_runs_warm_up_and_mask_updates_on_the_synthetic_dataset() {
    let cfg = tiny_aread_config();
    let prepared = prepare_dataset(&cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log(Vec::new());
    let out = train_run(&cfg, &prepared, dir.path(), &mut log).unwrap();
    let msgs = log.0.join("\n");
    assert!(msgs.contains("hemp: warm-up 4 batches"), "{msgs}");
    // Updates before batch 0 and after batch 6 (R = 6).
    assert!(msgs.contains("hemp: mask update 2"), "{msgs}");
    let rep = &out.report.model_report;
    let active = rep["active_edges"].as_array().expect("masks reported");
    assert_eq!(active.len(), 3);
    assert!(
        active.iter().all(|a| a.as_u64().is_some_and(|n| n > 0)),
        "{rep}"
    );
    assert!(out.test_logits.iter().all(|x| x.is_finite()));
    // The run directory reloads with the masks.
    let (_, logits, _) = mdrec_train::evaluate_run(dir.path()).unwrap();
    assert_eq!(logits, out.test_logits);
}

#[test]
fn bad_hemp_config_is_an_error_naming_the_key() {
    let f = mdrec_models::find("aread").unwrap();
    let err = f
        .resolve(&serde_json::json!({"hemp": {"warmup": 3}}))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("warmup") && err.contains("warm_up_interval"),
        "{err}"
    );
    let ctx = ModelContext::uniform(FIELDS, VOCAB, 4, 1, DOMAINS, TASKS);
    let c = f
        .resolve(&serde_json::json!({"hemp": {"prune_ratio": 0.0}}))
        .unwrap();
    let err = Engine::new(f, &c, ctx, &TrainConfig::default(), 1, &cpu())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("hemp.prune_ratio"), "{err}");
}

/// A tiny AREAD on 3,000 synthetic rows: W = 4, R = 6, 8 steps of 128 rows.
fn tiny_aread_config() -> RunConfig {
    let mut cfg = RunConfig::default();
    cfg.set_model_name("aread");
    for s in [
        "dataset.synthetic_rows=3000",
        "dataset.synthetic_domains=3",
        "model.mmoe_experts=2",
        "model.expert_dims=[8]",
        "model.levels=[2, 4]",
        "model.level_dims=[[8], [4]]",
        "model.cross_layers=1",
        "model.hemp.warm_up_interval=4",
        "model.hemp.regroup_interval=6",
        "model.hemp.reference_batch_size=128",
        "model.hemp.update_steps=2",
        "model.hemp.eval_batches=1",
        "model.hemp.candidates=2",
        "train.epochs=1",
        "train.batch_size=128",
        "train.max_steps_per_epoch=8",
    ] {
        cfg.set(s).unwrap();
    }
    cfg
}

#[test]
fn hei_alone_trains_without_hemp_and_augmentation_feeds_the_candidates() {
    // HEI alone: no schedule messages, no masks.
    let mut cfg = tiny_aread_config();
    cfg.set("model.hemp.enabled=false").unwrap();
    let prepared = prepare_dataset(&cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log(Vec::new());
    let out = train_run(&cfg, &prepared, dir.path(), &mut log).unwrap();
    let msgs = log.0.join("\n");
    assert!(!msgs.contains("hemp:"), "{msgs}");
    let active = out.report.model_report["active_edges"].clone();
    // Without HEMP the model has no masks, so it reports none (a mask report, even of zero
    // active edges, would mean masks were built).
    assert!(active.is_null(), "no masks expected: {active}");
    // HEI on AREAD's single-domain batches (the masks-vs-batching ablation): a different run.
    let mut dom = cfg.clone();
    dom.set("train.batching=\"domain\"").unwrap();
    let out_dom = train_run(&dom, &prepared, dir.path(), &mut Log(Vec::new())).unwrap();
    assert_ne!(out_dom.test_logits, out.test_logits);
    // The same config with augmentation is refused: nothing would read the augmented rows.
    cfg.set("train.augment.small_share=0.3").unwrap();
    let err = match train_run(&cfg, &prepared, dir.path(), &mut Log(Vec::new())) {
        Ok(_) => panic!("augmentation without HEMP must be refused"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("HEMP"), "{err}");

    // HEMP with augmentation: the augmented rows are built (small domains = under 30 % here).
    let mut cfg = tiny_aread_config();
    cfg.set("train.augment.small_share=0.3").unwrap();
    cfg.set("train.augment.cold={ max_count = 1000 }").unwrap();
    let prepared = prepare_dataset(&cfg).unwrap();
    let mut log = Log(Vec::new());
    train_run(&cfg, &prepared, dir.path(), &mut log).unwrap();
    let msgs = log.0.join("\n");
    assert!(
        msgs.contains("augmentation: ") && msgs.contains("hemp: mask update"),
        "{msgs}"
    );
}
