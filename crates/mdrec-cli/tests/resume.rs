//! Exact resume after `kill -9`: a real `mdrec train` child is killed at a seeded random moment
//! after its first checkpoint, `mdrec train --resume` finishes it, and the weights and the
//! report's metrics equal those of a run that was never interrupted, bit for bit; a truncated
//! newest checkpoint is skipped for the previous one, with a message.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{fails, mdrec, ok, s};

fn args<'a>(extra: &[&'a str], out: &'a str) -> Vec<&'a str> {
    let mut a = vec![
        "train",
        "--dataset",
        "synthetic",
        "--batch-size",
        "256",
        "--quiet",
        "--set",
        "dataset.synthetic_rows=40000",
        "--set",
        "train.checkpoint_every_steps=25",
        "--out",
        out,
    ];
    a.extend_from_slice(extra);
    a
}

fn checkpoints(run: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(run.join("checkpoints"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "safetensors"));
    v.sort();
    v
}

/// Starts the run, kills it with SIGKILL `delay_ms` after its first checkpoint appears; returns
/// false when the run finished first.
fn kill_after_first_checkpoint(extra: &[&str], out: &Path, delay_ms: u64) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mdrec"))
        .args(args(extra, s(out)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while checkpoints(out).is_empty() {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        assert!(t0.elapsed() < Duration::from_secs(300), "no checkpoint");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(delay_ms));
    let finished = child.try_wait().unwrap().is_some();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    !finished && !out.join("report.json").exists()
}

fn report(run: &Path) -> serde_json::Value {
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    serde_json::json!({
        "test": r["test"], "valid": r["valid"], "best_epoch": r["best_epoch"],
        "epochs_run": r["epochs_run"], "model_report": r["model_report"], "stream": r["stream"]["progressive_auc"],
    })
}

fn assert_same_run(a: &Path, b: &Path, what: &str) {
    assert!(
        std::fs::read(a.join("weights.safetensors")).unwrap()
            == std::fs::read(b.join("weights.safetensors")).unwrap(),
        "{what}: weights differ"
    );
    assert_eq!(report(a), report(b), "{what}: report metrics differ");
    assert!(
        checkpoints(b).is_empty(),
        "{what}: a finished run keeps no checkpoints"
    );
}

#[test]
fn killed_runs_resume_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    // deepfm: dropout + BatchNorm; m3oe: bi-level outer step and keep = best; mmoe as a stream
    let cases: [(&str, &[&str]); 3] = [
        (
            "deepfm",
            &["--model", "deepfm", "--epochs", "3", "--patience", "5"],
        ),
        (
            "m3oe",
            &["--model", "m3oe", "--epochs", "3", "--patience", "5"],
        ),
        (
            "mmoe-stream",
            &[
                "--model",
                "mmoe",
                "--set",
                "train.mode=\"stream\"",
                "--set",
                "train.stream.window_rows=2000",
                "--set",
                "train.stream.tables.capacity_fraction=0.5",
            ],
        ),
    ];
    // seeded "random" kill delays (ms after the first checkpoint)
    let mut x: u64 = 0x5EED;
    for (name, extra) in cases {
        let reference = tmp.path().join(format!("{name}-ref"));
        ok(mdrec(&args(extra, s(&reference))));
        let victim = tmp.path().join(format!("{name}-killed"));
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = (x >> 33) % 400;
        if !kill_after_first_checkpoint(extra, &victim, delay) {
            // finished before the kill: retry killing at once
            std::fs::remove_dir_all(&victim).unwrap();
            assert!(
                kill_after_first_checkpoint(extra, &victim, 0),
                "{name}: too fast to kill"
            );
        }
        ok(mdrec(&["train", "--resume", s(&victim)]));
        assert_same_run(&reference, &victim, name);
    }
}

#[test]
fn a_corrupt_newest_checkpoint_falls_back_to_the_previous_one() {
    let tmp = tempfile::tempdir().unwrap();
    let extra = ["--model", "mmoe", "--epochs", "2"];
    let reference = tmp.path().join("ref");
    ok(mdrec(&args(&extra, s(&reference))));
    let victim = tmp.path().join("killed");
    let mut delay = 300;
    loop {
        assert!(
            kill_after_first_checkpoint(&extra, &victim, delay),
            "finished before the kill"
        );
        if checkpoints(&victim).len() >= 2 {
            break;
        }
        std::fs::remove_dir_all(&victim).unwrap();
        delay += 300;
    }
    let newest = checkpoints(&victim).pop().unwrap();
    let bytes = std::fs::read(&newest).unwrap();
    std::fs::write(&newest, &bytes[..bytes.len() / 2]).unwrap();
    let out = ok(mdrec(&["train", "--resume", s(&victim)]));
    let log = String::from_utf8_lossy(&out.stderr);
    let name = newest.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        log.contains(&name) && log.contains("unusable"),
        "no message about {name}: {log}"
    );
    assert_same_run(&reference, &victim, "fallback");
}

#[test]
fn resume_refuses_new_settings_and_runs_without_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let err = fails(mdrec(&[
        "train",
        "--resume",
        s(tmp.path()),
        "--set",
        "train.lr=0.1",
    ]));
    assert!(err.contains("--resume") && err.contains("--set"), "{err}");
    let run = tmp.path().join("done");
    ok(mdrec(&[
        "train",
        "--dataset",
        "synthetic",
        "--epochs",
        "1",
        "--quiet",
        "--set",
        "dataset.synthetic_rows=2000",
        "--out",
        s(&run),
    ]));
    let err = fails(mdrec(&["train", "--resume", s(&run)]));
    assert!(
        err.contains("no usable checkpoint") && err.contains("finished"),
        "{err}"
    );
    let err = fails(mdrec(&[
        "train",
        "--dataset",
        "synthetic",
        "--quiet",
        "--set",
        "train.setting=\"isolated\"",
        "--set",
        "train.checkpoint_every_steps=10",
        "--set",
        "dataset.synthetic_rows=2000",
        "--out",
        s(&tmp.path().join("iso")),
    ]));
    assert!(err.contains("checkpoint"), "{err}");
}
