//! Early stopping on a case built to over-fit: the validation labels are the opposite of the
//! rule the training labels follow, so every epoch that learns the rule makes the validation
//! log-loss worse. Patience then fires before `train.epochs`, and `keep = "best"` restores the
//! weights of the best validation epoch, `keep = "last"` keeps the final ones.

use mdrec_data::Prepared;
use mdrec_train::progress::Silent;
use mdrec_train::{prepare_dataset, train_run, RunConfig};

const EPOCHS: usize = 8;
const PATIENCE: usize = 2;

/// Labels of `data` from a rule of its first categorical column and its domain (`flip`: the
/// opposite rule).
fn relabel(data: &mut mdrec_data::EncodedData, flip: bool) {
    for (t, col) in data.labels.iter_mut().enumerate() {
        for (i, y) in col.iter_mut().enumerate() {
            let rule = (data.cat[0][i] as usize + data.domain[i] as usize + t).is_multiple_of(2);
            *y = (rule != flip) as u8 as f32;
        }
    }
}

fn config(keep: &str) -> RunConfig {
    let mut cfg = RunConfig::default();
    cfg.set_model_name("shared_bottom");
    for s in [
        "dataset.synthetic_rows=2000",
        "train.batch_size=64",
        "train.lr=0.01",
        "train.monitor=\"logloss\"",
        &format!("train.epochs={EPOCHS}"),
        &format!("train.patience={PATIENCE}"),
        &format!("train.keep=\"{keep}\""),
    ] {
        cfg.set(s).unwrap();
    }
    cfg
}

fn prepared(cfg: &RunConfig) -> Prepared {
    let mut p = prepare_dataset(cfg).unwrap();
    relabel(&mut p.train, false);
    relabel(&mut p.valid, true);
    p
}

fn epochs(dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn patience_stops_training_and_the_best_epoch_weights_are_kept() {
    let cfg = config("best");
    let p = prepared(&cfg);
    let dir = tempfile::tempdir().unwrap();
    let out = train_run(&cfg, &p, dir.path(), &mut Silent).unwrap();
    let lines = epochs(dir.path());
    let loss: Vec<f64> = lines
        .iter()
        .map(|l| l["valid_logloss"].as_f64().unwrap())
        .collect();
    // The construction works: validation gets worse once the rule is being learnt.
    assert!(loss[loss.len() - 1] > loss[0], "{loss:?}");
    // Patience fired: fewer epochs than configured, the last `PATIENCE` without improvement.
    let run = out.report.epochs_run;
    assert!(run < EPOCHS, "ran all {EPOCHS} epochs: {loss:?}");
    assert_eq!(lines.len(), run);
    let improved: Vec<bool> = lines
        .iter()
        .map(|l| l["improved"].as_bool().unwrap())
        .collect();
    assert!(
        improved[run - PATIENCE..].iter().all(|i| !i),
        "{improved:?}"
    );
    assert!(improved[run - PATIENCE - 1], "{improved:?}");
    // The best epoch is the one with the lowest validation log-loss, and it is what was kept.
    let best = out.report.best_epoch["all"];
    assert_eq!(best, run - PATIENCE);
    let (arg, min) = loss
        .iter()
        .enumerate()
        .fold((0, f64::MAX), |a, (i, &x)| if x < a.1 { (i, x) } else { a });
    assert_eq!(best, arg + 1, "{loss:?}");
    let kept = out.report.valid.overall.logloss.unwrap();
    assert!((kept - min).abs() < 1e-9, "kept {kept}, epochs {loss:?}");
    assert!(
        (kept - loss[run - 1]).abs() > 1e-6,
        "best and last coincide"
    );
}

#[test]
fn keep_last_keeps_the_final_weights_of_an_early_stopped_run() {
    let cfg = config("last");
    let p = prepared(&cfg);
    let dir = tempfile::tempdir().unwrap();
    let out = train_run(&cfg, &p, dir.path(), &mut Silent).unwrap();
    let lines = epochs(dir.path());
    let run = out.report.epochs_run;
    assert!(run < EPOCHS);
    assert_eq!(out.report.best_epoch["all"], run);
    let last = lines[run - 1]["valid_logloss"].as_f64().unwrap();
    let kept = out.report.valid.overall.logloss.unwrap();
    assert!((kept - last).abs() < 1e-9, "kept {kept}, last epoch {last}");
}
