//! End-to-end tests of `mdrec uncertainty` (the last-layer Laplace approximation) and the
//! exploration columns of `mdrec predict --variance/--thompson`.

mod common;

use common::{fails, mdrec, movielens_fixture, ok, predictions, s, train_movielens};

const SYNTH: [&str; 2] = ["--set", "dataset.synthetic_rows=3000"];

fn train(model: &str, run: &std::path::Path) {
    let mut a = vec![
        "train",
        "--model",
        model,
        "--epochs",
        "1",
        "--quiet",
        "--out",
        s(run),
    ];
    a.extend(SYNTH);
    ok(mdrec(&a));
}

/// `mdrec predict` of `csv` with `run` into `out`, with `extra` options.
fn predict_cmd(
    run: &std::path::Path,
    csv: &std::path::Path,
    out: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    let mut a = vec![
        "predict",
        "--run",
        s(run),
        "--input",
        s(csv),
        "--out",
        s(out),
    ];
    a.extend(extra);
    mdrec(&a)
}

fn predict(run: &std::path::Path, csv: &std::path::Path, out: &std::path::Path, extra: &[&str]) {
    ok(predict_cmd(run, csv, out, extra));
}

#[test]
fn variance_and_thompson_columns_come_from_the_fitted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, csv) = (tmp.path().join("run"), tmp.path().join("test.csv"));
    train("mmoe", &run);
    let mut a = vec!["data", "export", "--split", "test", "--out", s(&csv)];
    a.extend(SYNTH);
    ok(mdrec(&a));
    let out = tmp.path().join("pred.csv");

    // without the fitted file: an error naming the file and the command that creates it
    let err = fails(predict_cmd(&run, &csv, &out, &["--variance"]));
    assert!(err.contains("uncertainty.safetensors"), "{err}");
    assert!(err.contains("mdrec uncertainty --run"), "{err}");
    assert!(!out.exists(), "no partial output");

    let err = fails(mdrec(&[
        "uncertainty",
        "--run",
        s(&run),
        "--prior-precision",
        "0",
    ]));
    assert!(err.contains("prior-precision"), "{err}");

    ok(mdrec(&["uncertainty", "--run", s(&run)]));
    assert!(run.join("uncertainty.safetensors").is_file());

    let plain = tmp.path().join("plain.csv");
    predict(&run, &csv, &plain, &[]);
    predict(
        &run,
        &csv,
        &out,
        &["--variance", "--thompson", "5", "--chunk-rows", "97"],
    );
    let (header, rows) = predictions(&out);
    assert_eq!(
        header,
        "row,domain,click,like,click_var,like_var,click_ts,like_ts"
    );
    let (_, plain_rows) = predictions(&plain);
    assert_eq!(rows.len(), plain_rows.len());
    let mut differs = 0;
    for (r, p) in rows.iter().zip(&plain_rows) {
        assert_eq!(r[..4], p[..4], "the probabilities do not change");
        for x in &r[4..6] {
            let v: f64 = x.parse().unwrap();
            assert!(v.is_finite() && v > 0.0, "variance {v}");
        }
        for k in 6..8 {
            let t: f64 = r[k].parse().unwrap();
            assert!((0.0..=1.0).contains(&t), "sample {t}");
            differs += usize::from(r[k] != r[k - 4]);
        }
    }
    assert!(differs > rows.len(), "samples differ from the means");

    // deterministic for a seed whatever the chunking; another seed draws other samples
    let again = tmp.path().join("again.csv");
    predict(
        &run,
        &csv,
        &again,
        &["--variance", "--thompson", "5", "--chunk-rows", "1000"],
    );
    assert_eq!(predictions(&again).1, rows);
    let other = tmp.path().join("other.csv");
    predict(&run, &csv, &other, &["--thompson", "6"]);
    let (h6, r6) = predictions(&other);
    assert_eq!(h6, "row,domain,click,like,click_ts,like_ts");
    assert!(r6.iter().zip(&rows).any(|(a, b)| a[4] != b[6]));
}

#[test]
fn a_model_without_heads_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    train("star", &run);
    let err = fails(mdrec(&["uncertainty", "--run", s(&run)]));
    assert!(
        err.contains(
            "model star: uncertainty needs a model whose outputs come from blocks::heads::Heads"
        ),
        "{err}"
    );
    assert!(!run.join("uncertainty.safetensors").exists());
}

#[test]
fn replay_is_seeded_and_needs_the_fitted_file() {
    let tmp = tempfile::tempdir().unwrap();
    let ml = tmp.path().join("ml-1m");
    movielens_fixture(&ml);
    let run = tmp.path().join("run");
    train_movielens(&ml, "mmoe", "1", &run);
    let replay = |extra: &[&str]| {
        let mut a = vec![
            "replay",
            "--run",
            s(&run),
            "--rounds",
            "5",
            "--users",
            "10",
            "--k",
            "2",
        ];
        a.extend(extra);
        mdrec(&a)
    };
    let err = fails(replay(&[]));
    assert!(err.contains("uncertainty.safetensors"), "{err}");
    ok(mdrec(&["uncertainty", "--run", s(&run)]));
    let out = String::from_utf8(ok(replay(&["--seed", "4"])).stdout).unwrap();
    for policy in ["| greedy | 100 |", "| thompson | 100 |", "| random | 100 |"] {
        assert!(out.contains(policy), "{out}");
    }
    let again = String::from_utf8(ok(replay(&["--seed", "4"])).stdout).unwrap();
    assert_eq!(out, again);
    let err = fails(replay(&["--task", "nope"]));
    assert!(
        err.contains("--task nope") && err.contains("click"),
        "{err}"
    );
    let err = fails(replay(&["--item-field", "nope"]));
    assert!(err.contains("movie_id"), "{err}");
}
