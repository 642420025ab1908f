//! Exact resume after `kill -9`: a real `mdrec train` child is killed at a seeded random moment
//! after a checkpoint, `mdrec train --resume` finishes it, and the weights, the report's metrics
//! and `metrics.jsonl` (timing aside) equal those of a run that was never interrupted, bit for
//! bit; a truncated newest checkpoint is skipped for the previous one, with a message; a fresh
//! run never resumes from an earlier run's checkpoints.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{fails, mdrec, ok, s};

/// Training steps per epoch of [`args`]: 40,000 synthetic rows, 80 % train, batches of 256.
const STEPS_PER_EPOCH: u64 = 125;

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

fn checkpoints(run: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(run.join("checkpoints"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "safetensors"));
    v.sort();
    v
}

/// The global step of a checkpoint file name `ckpt-<step>.safetensors`.
fn step_of(name: &str) -> u64 {
    let digits: String = name
        .rsplit("ckpt-")
        .next()
        .unwrap()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no step in {name}"))
}

fn steps(run: &Path) -> Vec<u64> {
    checkpoints(run)
        .iter()
        .map(|p| step_of(&p.file_name().unwrap().to_string_lossy()))
        .collect()
}

/// Starts the run and kills it with SIGKILL `delay_ms` after its checkpoints satisfy `ready`;
/// returns false when the run finished first.
fn kill_when(extra: &[&str], out: &Path, ready: impl Fn(&[u64]) -> bool, delay_ms: u64) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mdrec"))
        .args(args(extra, s(out)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !ready(&steps(out)) {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        assert!(t0.elapsed() < Duration::from_secs(300), "no checkpoint");
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(delay_ms));
    let finished = child.try_wait().unwrap().is_some();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    !finished && !out.join("report.json").exists()
}

/// `mdrec train --resume RUN`, which must succeed; returns the step of the checkpoint it
/// resumed from and its stderr.
fn resume(run: &Path) -> (u64, String) {
    let o = ok(mdrec(&["train", "--resume", s(run)]));
    let log = String::from_utf8_lossy(&o.stderr).into_owned();
    let line = log
        .lines()
        .find(|l| l.contains("resuming from"))
        .unwrap_or_else(|| panic!("no `resuming from` line: {log}"));
    (step_of(line), log)
}

fn report(run: &Path) -> serde_json::Value {
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    serde_json::json!({
        "test": r["test"], "valid": r["valid"], "best_epoch": r["best_epoch"],
        "epochs_run": r["epochs_run"], "model_report": r["model_report"], "stream": r["stream"]["progressive_auc"],
    })
}

/// `metrics.jsonl` without its timing fields (`*_seconds`).
fn metrics(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut()
                .unwrap()
                .retain(|k, _| !k.ends_with("_seconds"));
            v
        })
        .collect()
}

fn assert_same_run(a: &Path, b: &Path, what: &str) {
    assert!(
        std::fs::read(a.join("weights.safetensors")).unwrap()
            == std::fs::read(b.join("weights.safetensors")).unwrap(),
        "{what}: weights differ"
    );
    assert_eq!(report(a), report(b), "{what}: report metrics differ");
    assert_eq!(metrics(a), metrics(b), "{what}: metrics.jsonl differs");
    assert!(
        checkpoints(b).is_empty(),
        "{what}: a finished run keeps no checkpoints"
    );
}

/// A seeded linear congruential sequence: the kill points.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn killed_runs_resume_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    // deepfm: dropout + BatchNorm; m3oe bilevel: the outer Adam step of every epoch; both keep
    // the best epoch (the first on this data), so a kill after epoch 1 resumes with a best
    // snapshot, an outer optimizer with state and `metrics.jsonl` lines to keep; mmoe as a
    // stream with bounded tables, in one process and as two replica threads (each holds,
    // admits and evicts the ids it owns and writes its shard, sketch and admission stream
    // into every checkpoint); deepfm as two replica threads (each writes its shard of the
    // tables into every checkpoint; BatchNorm statistics are averaged before each one; each
    // thread draws its own dropout masks).
    let cases: [(&str, &[&str], bool); 5] = [
        (
            "deepfm",
            &["--model", "deepfm", "--epochs", "3", "--patience", "5"],
            true,
        ),
        (
            "m3oe",
            &[
                "--model",
                "m3oe",
                "--epochs",
                "3",
                "--patience",
                "5",
                "--set",
                "model.automl=\"bilevel\"",
            ],
            true,
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
            false,
        ),
        (
            "mmoe-stream-replicas",
            &[
                "--model",
                "mmoe",
                "--set",
                "train.mode=\"stream\"",
                "--set",
                "train.stream.window_rows=2000",
                "--set",
                "train.stream.tables.capacity_fraction=0.5",
                "--set",
                "train.stream.tables.admission=\"min_count\"",
                "--set",
                "train.replicas=2",
            ],
            false,
        ),
        (
            "deepfm-replicas",
            &[
                "--model",
                "deepfm",
                "--epochs",
                "3",
                "--patience",
                "5",
                "--set",
                "train.replicas=2",
            ],
            true,
        ),
    ];
    let mut rng = Lcg(0x5EED);
    for (name, extra, after_epoch_1) in cases {
        let reference = tmp.path().join(format!("{name}-ref"));
        ok(mdrec(&args(extra, s(&reference))));
        // seeded kill point: once a checkpoint at or after `min_step` exists (epoch 2 or 3 of
        // the epoch runs, anywhere in the stream), then a seeded delay
        let min_step = if after_epoch_1 {
            STEPS_PER_EPOCH + 5 + rng.below(STEPS_PER_EPOCH)
        } else {
            1
        };
        let delay = rng.below(if after_epoch_1 { 100 } else { 400 });
        let victim = tmp.path().join(format!("{name}-killed"));
        // Replicas write one file per replica and step; replica 1 cannot be a checkpoint
        // behind replica 0 (every step waits for both), so two files at or after `min_step`
        // mean a complete step there.
        let files = if name.ends_with("replicas") { 2 } else { 1 };
        let ready = |s: &[u64]| s.iter().filter(|&&x| x >= min_step).count() >= files;
        if !kill_when(extra, &victim, ready, delay) {
            // finished before the kill: retry killing at once
            std::fs::remove_dir_all(&victim).unwrap();
            assert!(
                kill_when(extra, &victim, ready, 0),
                "{name}: too fast to kill"
            );
        }
        if after_epoch_1 {
            assert!(
                !metrics(&victim).is_empty(),
                "{name}: killed before epoch 1 ended"
            );
        }
        let (from, _) = resume(&victim);
        assert!(
            from >= min_step,
            "{name}: resumed from step {from}, before {min_step}"
        );
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
    assert!(
        kill_when(&extra, &victim, |s| s.len() >= 2, 0),
        "finished before the kill"
    );
    let all = checkpoints(&victim);
    let (newest, previous) = (&all[all.len() - 1], &all[all.len() - 2]);
    let bytes = std::fs::read(newest).unwrap();
    std::fs::write(newest, &bytes[..bytes.len() / 2]).unwrap();
    let (from, log) = resume(&victim);
    let name = newest.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        log.contains(&name) && log.contains("unusable"),
        "no message about {name}: {log}"
    );
    assert_eq!(
        from,
        step_of(&previous.file_name().unwrap().to_string_lossy()),
        "{log}"
    );
    assert_same_run(&reference, &victim, "fallback");
}

#[test]
fn a_fresh_run_never_resumes_from_an_earlier_runs_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let extra = ["--model", "mmoe", "--epochs", "2"];
    let reference = tmp.path().join("ref");
    ok(mdrec(&args(&extra, s(&reference))));
    // an earlier run (another learning rate) killed in the same folder, its checkpoint ahead
    // of anything the new run writes before it is killed
    let victim = tmp.path().join("run");
    let other = ["--model", "mmoe", "--epochs", "2", "--lr", "0.003"];
    assert!(kill_when(&other, &victim, |s| !s.is_empty(), 0));
    let stale = victim.join("checkpoints/ckpt-999999999999.safetensors");
    let mut earlier = checkpoints(&victim);
    std::fs::rename(earlier.pop().unwrap(), &stale).unwrap();
    for p in earlier {
        std::fs::remove_file(p).unwrap();
    }
    assert!(kill_when(
        &extra,
        &victim,
        |s| s.iter().any(|&x| x < 999_999_999_999),
        0
    ));
    assert!(
        !stale.exists(),
        "the earlier run's checkpoint is still there"
    );
    let (from, _) = resume(&victim);
    assert!(from < 999_999_999_999);
    assert_same_run(&reference, &victim, "fresh start");
}

#[test]
fn resume_refuses_new_settings_other_data_and_runs_without_checkpoints() {
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
    // the data changed under the run (here through its saved config): refused, naming the
    // saved schema
    let cfg = run.join("config.resolved.json");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let edited = text.replace("\"synthetic_rows\": 2000", "\"synthetic_rows\": 3000");
    assert_ne!(text, edited);
    std::fs::write(&cfg, edited).unwrap();
    let err = fails(mdrec(&["train", "--resume", s(&run)]));
    assert!(
        err.contains("schema.json") && err.contains("different schema"),
        "{err}"
    );
    let err = fails(mdrec(&[
        "train",
        "--resume",
        s(&tmp.path().join("nothing")),
    ]));
    assert!(err.contains("config.resolved.json"), "{err}");
    // settings that train several models, and AREAD's HEMP schedule, are refused by name
    for (set, what) in [
        ("train.setting=\"isolated\"", "Isolated"),
        ("train.setting=\"mtl\"", "Mtl"),
        ("model.name=\"aread\"", "HEMP"),
    ] {
        let err = fails(mdrec(&[
            "train",
            "--dataset",
            "synthetic",
            "--quiet",
            "--set",
            set,
            "--set",
            "train.checkpoint_every_steps=10",
            "--set",
            "dataset.synthetic_rows=2000",
            "--out",
            s(&tmp.path().join("refused")),
        ]));
        assert!(
            err.contains("checkpoint_every_steps") && err.contains(what),
            "{set}: {err}"
        );
    }
}
