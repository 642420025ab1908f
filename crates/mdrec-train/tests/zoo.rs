//! Zoo conformance: every registered model, no per-model branches, no skips.
//!
//! For each model with its `tiny` config: logits are finite and `[B, T]`; 40 steps on a
//! learnable synthetic multi-domain set lower the loss; a checkpoint round trip gives identical
//! logits; probes, when a model records them, are named and finite.

use mdrec_data::rng::Rng;
use mdrec_data::{Batch, EncodedData};
use mdrec_models::{Probes, MODELS};
use mdrec_nn::device::cpu;
use mdrec_nn::ModelContext;
use mdrec_train::checkpoint::{Checkpoint, CheckpointWriter};
use mdrec_train::engine::{make_input, Engine};
use mdrec_train::TrainConfig;

const FIELDS: usize = 4;
const VOCAB: usize = 12;
const DOMAINS: usize = 3;
const TASKS: usize = 2;

/// Labels from a fixed logistic rule on the ids, the numeric input and the domain, so that a
/// model can learn them.
fn learnable(n: usize, seed: u64) -> EncodedData {
    let mut rng = Rng::new(seed);
    let score: Vec<Vec<f64>> = (0..FIELDS)
        .map(|_| (0..VOCAB).map(|_| rng.normal() * 1.5).collect())
        .collect();
    let cat: Vec<Vec<u32>> = (0..FIELDS)
        .map(|_| {
            (0..n)
                .map(|_| 2 + rng.below(VOCAB as u64 - 2) as u32)
                .collect()
        })
        .collect();
    let num: Vec<f32> = (0..n).map(|_| rng.next_f32()).collect();
    let domain: Vec<u32> = (0..n).map(|_| rng.below(DOMAINS as u64) as u32).collect();
    let labels = (0..TASKS)
        .map(|t| {
            (0..n)
                .map(|i| {
                    let mut z: f64 = (0..FIELDS).map(|f| score[f][cat[f][i] as usize]).sum();
                    z += if domain[i] == 1 { -1.0 } else { 0.5 } + 2.0 * num[i] as f64 - t as f64;
                    (rng.next_f64() < 1.0 / (1.0 + (-z).exp())) as u8 as f32
                })
                .collect()
        })
        .collect();
    EncodedData {
        n_rows: n,
        cat: cat.into_iter().map(Into::into).collect(),
        multi: vec![],
        num: vec![mdrec_data::Col::Owned(num)],
        domain: mdrec_data::Col::Owned(domain),
        labels,
        group: (0..n as u64).map(|i| i % 50).collect(),
        ..Default::default()
    }
}

fn mean_bce(logits: &[f32], data: &EncodedData) -> f64 {
    let mut s = 0.0;
    for i in 0..data.len() {
        for t in 0..TASKS {
            let x = logits[i * TASKS + t] as f64;
            let y = data.labels[t][i] as f64;
            s += x.max(0.0) - x * y + (-x.abs()).exp().ln_1p();
        }
    }
    s / (data.len() * TASKS) as f64
}

#[test]
fn every_model_conforms() {
    let data = learnable(1536, 11);
    let ctx = ModelContext::uniform(FIELDS, VOCAB, 4, 1, DOMAINS, TASKS);
    conforms(&ctx, &data);
}

/// Slots of the behaviour sequence the sequence test adds: field 0 is the target item.
const SLOTS: usize = 3;

/// [`learnable`] plus a behaviour sequence of `SLOTS` slots over field 0's table (items,
/// positions and interval buckets, right-padded), the labels nudged up when the target item is
/// in the history; `encoder` encodes it.
fn with_sequence(
    n: usize,
    seed: u64,
    encoder: mdrec_data::SeqEncoder,
) -> (ModelContext, EncodedData) {
    let mut data = learnable(n, seed);
    let mut rng = Rng::for_stream(seed, "zoo/sequence");
    let mut slots: Vec<Vec<u32>> = (0..3 * SLOTS).map(|_| Vec::with_capacity(n)).collect();
    for i in 0..n {
        let len = rng.below(SLOTS as u64 + 1) as usize;
        for k in 0..SLOTS {
            let real = k < len;
            let id = 2 + rng.below(VOCAB as u64 - 2) as u32;
            slots[k].push(if real { id } else { 0 });
            slots[SLOTS + k].push(if real { 2 + k as u32 } else { 0 });
            let dt = 2 + rng.below(mdrec_data::INTERVAL_BUCKETS as u64) as u32;
            slots[2 * SLOTS + k].push(if real { dt } else { 0 });
        }
        if (0..len).any(|k| slots[k][i] == data.cat[0][i]) {
            for t in 0..TASKS {
                data.labels[t][i] = 1.0;
            }
        }
    }
    data.cat.extend(slots.into_iter().map(Into::into));
    let mut ctx = ModelContext::uniform(FIELDS + 3 * SLOTS, VOCAB, 4, 1, DOMAINS, TASKS);
    for (j, f) in ctx.fields.iter_mut().enumerate().skip(FIELDS) {
        let (part, k) = ((j - FIELDS) / SLOTS, (j - FIELDS) % SLOTS);
        f.name = format!("hist.{part}.{k}");
        f.table = ["f0", "hist.pos", "hist.dt"][part].to_string();
        f.vocab_size = [VOCAB, SLOTS + 2, mdrec_data::INTERVAL_BUCKETS as usize + 2][part];
    }
    let slot = |part: usize| (0..SLOTS).map(|k| FIELDS + part * SLOTS + k).collect();
    ctx.sequences = vec![mdrec_nn::SequenceInfo {
        name: "hist".into(),
        encoder,
        items: slot(0),
        positions: slot(1),
        intervals: slot(2),
        target: Some(0),
        roles: vec![mdrec_data::FieldRole::User],
    }];
    (ctx, data)
}

#[test]
fn every_model_conforms_with_a_tim_sequence() {
    let (ctx, data) = with_sequence(1536, 12, mdrec_data::SeqEncoder::Tim);
    conforms(&ctx, &data);
}

#[test]
fn every_model_conforms_with_a_din_sequence() {
    let (ctx, data) = with_sequence(1536, 13, mdrec_data::SeqEncoder::Din);
    conforms(&ctx, &data);
}

/// The conformance checks of every model on `ctx` and `data`.
fn conforms(ctx: &ModelContext, data: &EncodedData) {
    let cfg = TrainConfig {
        lr: 0.01,
        batch_size: 128,
        weight_decay: 0.0,
        embedding: mdrec_nn::EmbeddingConfig {
            lr: Some(0.05),
            ..Default::default()
        },
        ..TrainConfig::default()
    };
    let dev = cpu();
    assert!(!MODELS.is_empty());
    for factory in MODELS {
        let name = factory.name();
        let tiny = factory
            .resolve(&factory.tiny_config())
            .unwrap_or_else(|e| panic!("{name}: tiny config does not resolve: {e}"));
        let mut engine = Engine::new(*factory, &tiny, ctx.clone(), &cfg, 3, &dev)
            .unwrap_or_else(|e| panic!("{name}: build failed: {e}"));

        let before_snap = engine.snapshot();
        let before = before_snap.predict(data, 500, &dev).unwrap();
        assert_eq!(
            before.len(),
            data.len() * TASKS,
            "{name}: logits are not [B, T]"
        );
        assert!(
            before.iter().all(|x| x.is_finite()),
            "{name}: non-finite logits"
        );
        let loss_before = mean_bce(&before, data);

        let order: Vec<u32> = (0..data.len() as u32).collect();
        for step in 0..40 {
            let chunk = order
                .chunks(cfg.batch_size)
                .nth(step % (data.len() / cfg.batch_size))
                .unwrap();
            engine
                .train_step(data, chunk)
                .unwrap_or_else(|e| panic!("{name}: step failed: {e}"));
        }
        let snap = engine.snapshot();
        let after = snap.predict(data, 500, &dev).unwrap();
        let loss_after = mean_bce(&after, data);
        assert!(
            loss_after < loss_before - 0.02,
            "{name}: loss did not fall ({loss_before:.4} → {loss_after:.4})"
        );

        // Save → load into a freshly initialised model (other seed) → identical logits.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let mut w = CheckpointWriter::default();
        w.add("", snap.model.as_ref(), &snap.store);
        w.write(&path, Default::default()).unwrap();
        let mut fresh = Engine::new(*factory, &tiny, ctx.clone(), &cfg, 99, &dev).unwrap();
        Checkpoint::read(&path)
            .unwrap()
            .load_into("", fresh.model.as_mut(), &mut fresh.store)
            .unwrap();
        let reloaded = fresh.snapshot().predict(data, 500, &dev).unwrap();
        assert_eq!(
            after, reloaded,
            "{name}: checkpoint round trip changed the logits"
        );

        // Probes are named and finite when a model records any.
        let mut batch = Batch::default();
        data.fill_batch(&(0..64).collect::<Vec<u32>>(), &mut batch);
        let input = make_input(&snap.ctx, &snap.store, &batch, &mut Vec::new(), &dev).unwrap();
        let mut probes = Probes::new(true);
        snap.model.forward(&snap.ctx, &input, &mut probes);
        for (k, v) in probes.values() {
            assert!(!k.is_empty());
            let vals = v.clone().into_data().try_to_vec::<f32>().unwrap();
            assert!(
                vals.iter().all(|x| x.is_finite()),
                "{name}: probe {k} not finite"
            );
        }
    }
}

#[test]
fn unknown_model_key_is_named_with_accepted_keys() {
    let f = mdrec_models::find("mmoe").unwrap();
    let err = f
        .resolve(&serde_json::json!({"num_expert": 3}))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("num_expert") && err.contains("num_experts"),
        "{err}"
    );
    let err = mdrec_models::find("nope").err().unwrap().to_string();
    assert!(err.contains("mmoe"), "{err}");
}

#[test]
fn same_seed_same_training() {
    let data = learnable(512, 5);
    let ctx = ModelContext::uniform(FIELDS, VOCAB, 4, 1, DOMAINS, TASKS);
    let cfg = TrainConfig {
        batch_size: 128,
        ..TrainConfig::default()
    };
    let f = mdrec_models::find("mmoe").unwrap();
    let c = f.resolve(&f.tiny_config()).unwrap();
    let run = || {
        let mut e = Engine::new(f, &c, ctx.clone(), &cfg, 7, &cpu()).unwrap();
        for ch in (0..512u32).collect::<Vec<_>>().chunks(128) {
            e.train_step(&data, ch).unwrap();
        }
        e.snapshot().predict(&data, 256, &cpu()).unwrap()
    };
    assert_eq!(run(), run());
}
