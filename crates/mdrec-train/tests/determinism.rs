//! One seed, one result: a run gives the same bits whether it has the process to itself or
//! shares it with other runs on other threads (`mdrec bench --jobs`, parallel tests), dropout
//! included.

use mdrec_train::progress::Silent;
use mdrec_train::{prepare_dataset, train_run, RunConfig};

fn logits(cfg: &RunConfig) -> Vec<f32> {
    let prepared = prepare_dataset(cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    train_run(cfg, &prepared, dir.path(), &mut Silent)
        .unwrap()
        .test_logits
}

#[test]
fn runs_on_threads_of_one_process_give_the_bits_each_gives_alone() {
    let mut cfg = RunConfig::default();
    // DeepFM's MLP has dropout 0.2 by default.
    cfg.set_model_name("deepfm");
    for s in [
        "dataset.synthetic_rows=3000",
        "train.epochs=1",
        "train.max_steps_per_epoch=12",
        "train.batch_size=200",
    ] {
        cfg.set(s).unwrap();
    }
    let alone = logits(&cfg);
    let together: Vec<Vec<f32>> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..3).map(|_| s.spawn(|| logits(&cfg))).collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for (i, got) in together.iter().enumerate() {
        assert!(
            got == &alone,
            "run {i} of 3 on threads differs from the run alone"
        );
    }
}
