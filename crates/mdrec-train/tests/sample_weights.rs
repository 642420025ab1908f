//! The schema's per-row sample-weight column multiplies every task's loss on the row.

use mdrec_data::Prepared;
use mdrec_train::progress::Progress;
use mdrec_train::{prepare_dataset, train_run, RunConfig};

struct Quiet;

impl Progress for Quiet {
    fn start_epoch(&mut self, _: &str, _: usize, _: usize) {}
    fn step(&mut self, _: usize, _: f64) {}
    fn message(&mut self, _: &str) {}
}

fn config(batch_size: usize) -> RunConfig {
    let mut cfg = RunConfig::default();
    cfg.set_model_name("mmoe");
    for s in [
        "dataset.synthetic_rows=3000",
        "train.epochs=1",
        "train.max_steps_per_epoch=6",
        "train.weight_decay=0.0",
        "train.embedding.weight_decay=0.0",
    ] {
        cfg.set(s).unwrap();
    }
    cfg.set(&format!("train.batch_size={batch_size}")).unwrap();
    cfg
}

/// Test logits after training on `prepared` with the training rows weighted by `weight`
/// (`None`: no weight column).
fn logits(cfg: &RunConfig, prepared: &Prepared, weight: Option<f32>) -> Vec<f32> {
    let mut p = prepared.clone();
    p.train.weight =
        mdrec_data::Col::Owned(weight.map_or_else(Vec::new, |w| vec![w; p.train.len()]));
    let dir = tempfile::tempdir().unwrap();
    train_run(cfg, &p, dir.path(), &mut Quiet)
        .unwrap()
        .test_logits
}

#[test]
fn weights_scale_the_loss_one_changes_nothing_and_zero_trains_nothing() {
    let cfg = config(128);
    let prepared = prepare_dataset(&cfg).unwrap();
    let plain = logits(&cfg, &prepared, None);
    assert_eq!(logits(&cfg, &prepared, Some(1.0)), plain);
    assert_ne!(logits(&cfg, &prepared, Some(3.0)), plain);
    // With every weight 0 no gradient reaches any parameter: the model stays as initialised,
    // whatever the batches (unweighted training with another batch size ends elsewhere).
    let other = config(64);
    assert_ne!(logits(&other, &prepared, None), plain);
    assert_eq!(
        logits(&cfg, &prepared, Some(0.0)),
        logits(&other, &prepared, Some(0.0))
    );
}
