//! Data-parallel training under `mpirun` (the `mpi` feature): two ranks train what one process
//! trains on the same global batch, bit-identically from run to run; and, without the feature,
//! a launch of several processes is refused instead of training N unrelated copies.
//!
//! The tests need Open MPI's `mpirun` on PATH; where it is missing they say so and pass.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn mpirun() -> Option<&'static str> {
    let ok = Command::new("mpirun")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("skipped: mpirun not found (Debian: apt-get install openmpi-bin libopenmpi-dev)");
    }
    ok.then_some("mpirun")
}

/// `mdrec train` (MMoE, 2 epochs, seed 5, global batch 512) on the dataset of `dataset`'s
/// flags (`extra` adds flags).
fn train_on(dataset: &[&str], out: &Path, extra: &[&str]) -> Vec<String> {
    [
        "train", "--model", "mmoe", "--epochs", "2", "--seed", "5", "--quiet",
    ]
    .iter()
    .chain(dataset)
    .chain(&[
        "--set",
        "train.batch_size=512",
        "--out",
        out.to_str().unwrap(),
    ])
    .chain(extra)
    .map(|s| s.to_string())
    .collect()
}

/// `mdrec train` on a small synthetic dataset with global batch 512 (`extra` adds flags).
fn train_args(out: &Path, extra: &[&str]) -> Vec<String> {
    train_on(
        &[
            "--dataset",
            "synthetic",
            "--set",
            "dataset.synthetic_rows=6000",
        ],
        out,
        extra,
    )
}

fn run_ranks(mpirun: &str, ranks: usize, args: &[String], cwd: &Path) -> Output {
    Command::new(mpirun)
        .args(["--allow-run-as-root", "--oversubscribe", "-np"])
        .arg(ranks.to_string())
        .arg(env!("CARGO_BIN_EXE_mdrec"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run mpirun")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn commands_other_than_train_refuse_several_processes() {
    let Some(mpirun) = mpirun() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let o = run_ranks(mpirun, 2, &["models".to_string()], tmp.path());
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("only `mdrec train` runs across processes"),
        "{}",
        text(&o)
    );
}

#[cfg(not(feature = "mpi"))]
#[test]
fn several_processes_without_the_mpi_feature_are_refused() {
    let Some(mpirun) = mpirun() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let o = run_ranks(
        mpirun,
        2,
        &train_args(&tmp.path().join("run"), &[]),
        tmp.path(),
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("without the `mpi` feature"),
        "{}",
        text(&o)
    );
    assert!(!tmp.path().join("run").join("report.json").exists());
}

#[cfg(feature = "mpi")]
mod with_mpi {
    use super::*;

    use common::report;

    fn auc(r: &serde_json::Value) -> f64 {
        r["test"]["overall"]["auc_mean_cells"].as_f64().unwrap()
    }

    #[test]
    fn out_of_core_ranks_train_on_their_own_parts_like_replica_threads() {
        let Some(mpirun) = mpirun() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let (schema, csv) = common::synthetic_log(tmp.path(), 12_000);
        let sets = [
            format!("dataset.schema=\"{}\"", schema.display()),
            format!("dataset.files=[\"{}\"]", csv.display()),
            format!(
                "dataset.cache_dir=\"{}\"",
                tmp.path().join("cache").display()
            ),
            "dataset.out_of_core=true".into(),
            "dataset.split=\"random\"".into(),
        ];
        let mut dataset = vec!["--dataset", "csv"];
        for set in &sets {
            dataset.extend(["--set", set.as_str()]);
        }
        let args = |out: &Path, extra: &[&str]| train_on(&dataset, out, extra);
        let mut two = Vec::new();
        for k in 0..2 {
            let dir = tmp.path().join(format!("two{k}"));
            let o = run_ranks(mpirun, 2, &args(&dir, &[]), tmp.path());
            assert!(o.status.success(), "{}", text(&o));
            two.push(dir);
        }
        let weights = |d: &Path| std::fs::read(d.join("weights.safetensors")).unwrap();
        assert_eq!(
            weights(&two[0]),
            weights(&two[1]),
            "two runs on two ranks differ"
        );
        // one store, written by rank 0
        let stores = std::fs::read_dir(tmp.path().join("cache")).unwrap().count();
        assert_eq!(stores, 1);
        let threads = tmp.path().join("threads");
        let o = Command::new(env!("CARGO_BIN_EXE_mdrec"))
            .args(args(&threads, &["--set", "train.replicas=2"]))
            .current_dir(tmp.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(
            weights(&two[0]),
            weights(&threads),
            "2 replica threads and 2 ranks differ on an out-of-core store"
        );
        let a = auc(&report(&two[0]));
        assert!(a > 0.5, "better than chance: {a}");
    }

    #[test]
    fn two_ranks_train_what_one_process_trains_and_repeat_bit_for_bit() {
        let Some(mpirun) = mpirun() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let one = tmp.path().join("one");
        let o = Command::new(env!("CARGO_BIN_EXE_mdrec"))
            .args(train_args(&one, &[]))
            .current_dir(tmp.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let mut two = Vec::new();
        for k in 0..2 {
            let dir = tmp.path().join(format!("two{k}"));
            let o = run_ranks(mpirun, 2, &train_args(&dir, &[]), tmp.path());
            assert!(o.status.success(), "{}", text(&o));
            two.push(dir);
        }
        // Rank 0 alone writes: the run directory is complete and no rank left scratch behind.
        for f in [
            "report.json",
            "weights.safetensors",
            "metrics.jsonl",
            "config.resolved.json",
        ] {
            assert!(two[0].join(f).exists(), "{f}");
        }
        let (a1, a2) = (auc(&report(&one)), auc(&report(&two[0])));
        // Same global batch, same seed: only the order of floating-point sums differs (each
        // rank sums its share, then the shares are added), so the metrics agree closely.
        assert!((a1 - a2).abs() < 2e-3, "one process {a1}, two ranks {a2}");
        assert_eq!(
            std::fs::read(two[0].join("weights.safetensors")).unwrap(),
            std::fs::read(two[1].join("weights.safetensors")).unwrap(),
            "two runs on two ranks differ"
        );
        assert_eq!(report(&two[0])["test"], report(&two[1])["test"]);
        // Two replica threads of one process are the same scheme: the same bits as two ranks
        // (a sum of two shares is the same in either order).
        let threads = tmp.path().join("threads");
        let o = Command::new(env!("CARGO_BIN_EXE_mdrec"))
            .args(train_args(&threads, &["--set", "train.replicas=2"]))
            .current_dir(tmp.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(
            std::fs::read(two[0].join("weights.safetensors")).unwrap(),
            std::fs::read(threads.join("weights.safetensors")).unwrap(),
            "2 replica threads and 2 ranks differ"
        );
        // Replicas inside an MPI group are refused.
        let nested = tmp.path().join("nested");
        let o = run_ranks(
            mpirun,
            2,
            &train_args(&nested, &["--set", "train.replicas=2"]),
            tmp.path(),
        );
        assert!(!o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("one replica per process"), "{}", text(&o));
        // The ranks score shares of the test split and gather them: one process evaluating the
        // saved weights gets the same metrics.
        let o = Command::new(env!("CARGO_BIN_EXE_mdrec"))
            .args(["eval", "--run", two[0].to_str().unwrap()])
            .current_dir(tmp.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let e: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(two[0].join("eval.json")).unwrap())
                .unwrap();
        assert_eq!(e["cells"], report(&two[0])["test"]["cells"]);
    }

    #[test]
    fn stream_training_with_evicting_tables_follows_one_process_on_two_ranks() {
        let Some(mpirun) = mpirun() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let args = |out: &Path| -> Vec<String> {
            [
                "train",
                "--dataset",
                "synthetic-delayed",
                "--model",
                "mmoe",
                "--batch-size",
                "256",
                "--lr",
                "0.01",
                "--quiet",
                "--set",
                "dataset.delayed.n_rows=20000",
                "--set",
                "train.mode=\"stream\"",
                "--set",
                "train.stream.window_seconds=86400",
                "--set",
                "train.stream.tables.capacity_fraction=0.5",
                "--set",
                "train.stream.delayed.wait={ fixed = { seconds = 21600 } }",
                "--out",
                out.to_str().unwrap(),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        };
        let one = tmp.path().join("one");
        let o = Command::new(env!("CARGO_BIN_EXE_mdrec"))
            .args(args(&one))
            .current_dir(tmp.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let two = tmp.path().join("two");
        let mut replicated = args(&two);
        replicated.extend([
            "--set".into(),
            "train.embedding.sharding=\"replicated\"".into(),
        ]);
        let o = run_ranks(mpirun, 2, &replicated, tmp.path());
        assert!(o.status.success(), "{}", text(&o));
        // Sharded tables (the default): two ranks train what two replica threads train, and
        // save one joined table per field.
        let sharded = tmp.path().join("sharded");
        let o = run_ranks(mpirun, 2, &args(&sharded), tmp.path());
        assert!(o.status.success(), "{}", text(&o));
        let threads = tmp.path().join("threads");
        let mut on_threads = args(&threads);
        on_threads.extend(["--set".into(), "train.replicas=2".into()]);
        let o = Command::new(env!("CARGO_BIN_EXE_mdrec"))
            .args(&on_threads)
            .current_dir(tmp.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let weights = |d: &Path| std::fs::read(d.join("weights.safetensors")).unwrap();
        assert!(weights(&sharded) == weights(&threads), "ranks vs threads");
        assert_eq!(
            report(&sharded)["stream"]["tables"],
            report(&threads)["stream"]["tables"]
        );
        let (a, b) = (
            report(&one)["stream"].clone(),
            report(&two)["stream"].clone(),
        );
        assert_eq!(a["windows"], b["windows"]);
        let ps = report(&sharded)["stream"]["progressive_auc"]
            .as_f64()
            .unwrap();
        let pa = a["progressive_auc"].as_f64().unwrap();
        assert!((pa - ps).abs() < 0.01, "one process {pa}, sharded {ps}");
        // Replicated tables: every rank admits and evicts for the whole batch, so the tables'
        // histories are equal.
        for (ta, tb) in a["tables"]
            .as_array()
            .unwrap()
            .iter()
            .zip(b["tables"].as_array().unwrap())
        {
            for k in ["table", "live_rows", "admitted", "evicted"] {
                assert_eq!(ta[k], tb[k], "{k}");
            }
        }
        let (pa, pb) = (
            a["progressive_auc"].as_f64().unwrap(),
            b["progressive_auc"].as_f64().unwrap(),
        );
        assert!((pa - pb).abs() < 1e-3, "one process {pa}, two ranks {pb}");
    }

    /// The processes `pid` started (its direct children).
    fn children(pid: u32) -> Vec<u32> {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// Flags of the checkpointed runs: 40,000 rows, batch 256, a checkpoint every 20 steps.
    const CHECKPOINTED: [&str; 6] = [
        "--set",
        "dataset.synthetic_rows=40000",
        "--set",
        "train.batch_size=256",
        "--set",
        "train.checkpoint_every_steps=20",
    ];

    /// Starts a 2-rank checkpointed run in `run`, kills one rank once the first checkpoint
    /// is written, and checks that the whole job ended without a report.
    fn start_and_kill_a_rank(mpirun: &str, run: &Path, cwd: &Path, extra: &[&str]) {
        let flags: Vec<&str> = CHECKPOINTED.iter().chain(extra).copied().collect();
        let mut child = Command::new(mpirun)
            .args(["--allow-run-as-root", "--oversubscribe", "-np", "2"])
            .arg(env!("CARGO_BIN_EXE_mdrec"))
            .args(train_args(run, &flags))
            .current_dir(cwd)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until both ranks' files of the first checkpoint are there, then kill one rank.
        let t0 = std::time::Instant::now();
        let ckpts = run.join("checkpoints");
        let complete = || {
            std::fs::read_dir(&ckpts).map_or(0, |d| {
                d.filter_map(Result::ok)
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                    .count()
            }) >= 2
        };
        while !complete() {
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(120),
                "no checkpoint written"
            );
            assert!(child.try_wait().unwrap().is_none(), "the run ended early");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let ranks = children(child.id());
        assert_eq!(ranks.len(), 2, "ranks {ranks:?}");
        Command::new("kill")
            .args(["-9", &ranks[1].to_string()])
            .status()
            .unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(!o.status.success(), "the job survived a killed rank");
        assert!(!run.join("report.json").exists());
    }

    /// `--resume run` in one plain process (`ranks == 1`) or on `ranks` MPI ranks.
    fn resume_on(mpirun: &str, ranks: usize, run: &Path, cwd: &Path) -> Output {
        if ranks == 1 {
            Command::new(env!("CARGO_BIN_EXE_mdrec"))
                .args(resume_args(run))
                .current_dir(cwd)
                .output()
                .unwrap()
        } else {
            run_ranks(mpirun, ranks, &resume_args(run), cwd)
        }
    }

    fn resume_args(run: &Path) -> Vec<String> {
        ["train", "--quiet", "--resume", run.to_str().unwrap()]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn a_killed_rank_ends_the_job_and_the_run_resumes_bit_for_bit() {
        let Some(mpirun) = mpirun() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let whole = tmp.path().join("whole");
        let o = run_ranks(mpirun, 2, &train_args(&whole, &CHECKPOINTED), tmp.path());
        assert!(o.status.success(), "{}", text(&o));

        let run = tmp.path().join("run");
        start_and_kill_a_rank(mpirun, &run, tmp.path(), &[]);
        // Each rank wrote its own file of each checkpoint (its shard of the tables).
        let names: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names
                .iter()
                .any(|n| n.ends_with(".shard-1-of-2.safetensors")),
            "{names:?}"
        );
        let o = run_ranks(mpirun, 2, &resume_args(&run), tmp.path());
        assert!(o.status.success(), "{}", text(&o));
        for f in [
            "weights.safetensors",
            "weights.shard-0-of-2.safetensors",
            "weights.shard-1-of-2.safetensors",
        ] {
            assert_eq!(
                std::fs::read(run.join(f)).unwrap(),
                std::fs::read(whole.join(f)).unwrap(),
                "{f}: the resumed run differs from the uninterrupted one"
            );
        }
        assert_eq!(report(&run)["test"], report(&whole)["test"]);
    }

    #[test]
    fn a_sharded_checkpoint_resumes_on_another_number_of_processes() {
        let Some(mpirun) = mpirun() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let whole = tmp.path().join("whole");
        let o = run_ranks(mpirun, 2, &train_args(&whole, &CHECKPOINTED), tmp.path());
        assert!(o.status.success(), "{}", text(&o));
        let want = auc(&report(&whole));
        for ranks in [1, 3] {
            let run = tmp.path().join(format!("run{ranks}"));
            start_and_kill_a_rank(mpirun, &run, tmp.path(), &[]);
            let o = resume_on(mpirun, ranks, &run, tmp.path());
            assert!(o.status.success(), "{ranks} processes: {}", text(&o));
            // The shards were joined and dealt again: the run continued from its checkpoint
            // (only the order of floating-point sums differs from the uninterrupted run).
            let got = auc(&report(&run));
            assert!(
                (got - want).abs() < 2e-3,
                "resumed on {ranks}: {got}, uninterrupted on 2: {want}"
            );
        }
    }

    #[test]
    fn a_stream_run_with_sharded_tables_resumes_on_one_process_and_on_three() {
        let Some(mpirun) = mpirun() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let stream = [
            "--set",
            "train.mode=\"stream\"",
            "--set",
            "train.stream.window_rows=4000",
            "--set",
            "train.stream.tables.capacity_fraction=0.5",
        ];
        let whole = tmp.path().join("whole");
        let flags: Vec<&str> = CHECKPOINTED.iter().chain(&stream).copied().collect();
        let o = run_ranks(mpirun, 2, &train_args(&whole, &flags), tmp.path());
        assert!(o.status.success(), "{}", text(&o));
        let prog = |r: &serde_json::Value| r["stream"]["progressive_auc"].as_f64().unwrap();
        let want = prog(&report(&whole));
        for ranks in [1, 3] {
            let run = tmp.path().join(format!("stream{ranks}"));
            start_and_kill_a_rank(mpirun, &run, tmp.path(), &stream);
            let o = resume_on(mpirun, ranks, &run, tmp.path());
            assert!(o.status.success(), "{ranks} processes: {}", text(&o));
            // The dynamic shards were joined and dealt again (each rank takes the live rows
            // of its ids and its part of the capacity): the run goes on from its checkpoint
            // with the tables it had, under the new layout's admissions and evictions.
            let r = report(&run);
            let got = prog(&r);
            assert!(
                (got - want).abs() < 0.01,
                "resumed on {ranks}: {got}, uninterrupted on 2: {want}"
            );
            assert_eq!(r["stream"]["windows"], report(&whole)["stream"]["windows"]);
        }
    }

    #[test]
    fn sharded_tables_train_what_replicated_tables_train_bit_for_bit() {
        let Some(mpirun) = mpirun() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let (row, rep) = (tmp.path().join("row"), tmp.path().join("rep"));
        let o = run_ranks(mpirun, 2, &train_args(&row, &[]), tmp.path());
        assert!(o.status.success(), "{}", text(&o));
        assert!(
            text(&o).contains("sharded row-wise over 2 ranks"),
            "{}",
            text(&o)
        );
        let flags = ["--set", "train.embedding.sharding=\"replicated\""];
        let o = run_ranks(mpirun, 2, &train_args(&rep, &flags), tmp.path());
        assert!(o.status.success(), "{}", text(&o));
        assert!(!rep.join("weights.shard-0-of-2.safetensors").exists());
        assert_eq!(report(&row)["test"], report(&rep)["test"]);
        assert_eq!(report(&row)["params"], report(&rep)["params"]);
    }

    #[test]
    fn a_model_with_batch_statistics_and_dropout_trains_on_two_ranks_as_on_two_replica_threads() {
        let Some(mpirun) = mpirun() else { return };
        // The running statistics are averaged over the ranks the same way in both, and a rank
        // draws the dropout masks a replica thread of the same rank draws.
        ranks_train_what_replica_threads_train(
            mpirun,
            &[
                "--set",
                "model.mlp.norm=\"batch\"",
                "--set",
                "model.mlp.dropout=0.2",
            ],
        );
    }

    #[test]
    fn areads_hemp_schedule_trains_on_two_ranks_as_on_two_replica_threads() {
        let Some(mpirun) = mpirun() else { return };
        // Split warm-up, main and candidate steps; the gate memory combined over the ranks.
        ranks_train_what_replica_threads_train(
            mpirun,
            &[
                "--set",
                "model.name=\"aread\"",
                "--set",
                "model.hemp.reference_batch_size=512",
                "--set",
                "model.hemp.warm_up_interval=4",
                "--set",
                "model.hemp.regroup_interval=4",
                "--set",
                "model.hemp.update_steps=2",
                "--set",
                "model.hemp.candidates=2",
            ],
        );
    }

    /// Two ranks under `mpirun` and two replica threads of one process, trained with `extra`,
    /// save the same weights.
    fn ranks_train_what_replica_threads_train(mpirun: &str, extra: &[&str]) {
        let tmp = tempfile::tempdir().unwrap();
        let ranks = tmp.path().join("ranks");
        let o = run_ranks(mpirun, 2, &train_args(&ranks, extra), tmp.path());
        assert!(o.status.success(), "{}", text(&o));
        let threads = tmp.path().join("threads");
        let mut args = extra.to_vec();
        args.extend(["--set", "train.replicas=2"]);
        let o = Command::new(env!("CARGO_BIN_EXE_mdrec"))
            .args(train_args(&threads, &args))
            .current_dir(tmp.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        assert!(
            std::fs::read(ranks.join("weights.safetensors")).unwrap()
                == std::fs::read(threads.join("weights.safetensors")).unwrap(),
            "{extra:?}: 2 ranks and 2 replica threads differ"
        );
    }
}
