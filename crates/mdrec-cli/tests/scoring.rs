//! End-to-end tests of scoring new records: `mdrec data export` → `mdrec predict` equals
//! `mdrec eval --predictions` (synthetic data and a generated MovieLens-1M folder), and the
//! errors of bad records and incomplete run directories.

use std::path::Path;
use std::process::{Command, Output};

fn mdrec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mdrec"))
        .args(args)
        .output()
        .expect("run mdrec")
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o
}

fn fails(o: Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A MovieLens-1M folder in the official layout: 60 users over all seven age codes, 40
/// movies, 1,800 ratings drawn from a fixed linear congruential sequence.
pub fn movielens_fixture(dir: &Path) {
    let ages = [1, 18, 25, 35, 45, 50, 56];
    let genres = [
        "Comedy",
        "Drama|Romance",
        "Action|Thriller",
        "Horror",
        "Animation|Children's",
    ];
    let mut users = String::new();
    for u in 1..=60 {
        let g = if u % 2 == 0 { "F" } else { "M" };
        users += &format!(
            "{u}::{g}::{}::{}::{:05}\n",
            ages[u % 7],
            u % 21,
            10000 + u * 7
        );
    }
    let mut movies = String::new();
    for m in 1..=40 {
        movies += &format!("{m}::Movie {m} (1999)::{}\n", genres[m % 5]);
    }
    let mut ratings = String::new();
    let mut x: u64 = 12345;
    for i in 0..1800u64 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let u = 1 + (x >> 33) % 60;
        let m = 1 + (x >> 17) % 40;
        let r = 1 + (x >> 45) % 5;
        ratings += &format!("{u}::{m}::{r}::{}\n", 970000000 + i);
    }
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("users.dat"), users).unwrap();
    std::fs::write(dir.join("movies.dat"), movies).unwrap();
    std::fs::write(dir.join("ratings.dat"), ratings).unwrap();
}

/// Parses a predictions CSV into (header, rows).
fn predictions(path: &Path) -> (String, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().to_string();
    let rows = lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    (header, rows)
}

fn assert_same_predictions(a: &Path, b: &Path) {
    let (ha, ra) = predictions(a);
    let (hb, rb) = predictions(b);
    assert_eq!(ha, hb);
    assert_eq!(ra.len(), rb.len());
    assert!(!ra.is_empty());
    for (x, y) in ra.iter().zip(&rb) {
        assert_eq!(x[..2], y[..2], "row and domain");
        for (p, q) in x[2..].iter().zip(&y[2..]) {
            let (p, q): (f64, f64) = (p.parse().unwrap(), q.parse().unwrap());
            assert!((0.0..=1.0).contains(&p));
            assert!((p - q).abs() <= 1e-6, "{x:?} vs {y:?}");
        }
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn predict_on_exported_synthetic_records_equals_eval() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, csv) = (tmp.path().join("run"), tmp.path().join("test.csv"));
    let synth = ["--set", "dataset.synthetic_rows=3000"];
    let mut a = vec![
        "train",
        "--model",
        "mmoe",
        "--epochs",
        "1",
        "--quiet",
        "--out",
        s(&run),
    ];
    a.extend(synth);
    ok(mdrec(&a));
    assert!(run.join("vocabs.json").is_file());
    let mut a = vec!["data", "export", "--split", "test", "--out", s(&csv)];
    a.extend(synth);
    ok(mdrec(&a));
    let (pred, evalp) = (tmp.path().join("pred.csv"), tmp.path().join("eval.csv"));
    // small chunks: the streaming path joins several chunks
    ok(mdrec(&[
        "predict",
        "--run",
        s(&run),
        "--input",
        s(&csv),
        "--out",
        s(&pred),
        "--chunk-rows",
        "97",
    ]));
    ok(mdrec(&[
        "eval",
        "--run",
        s(&run),
        "--predictions",
        s(&evalp),
    ]));
    assert_same_predictions(&pred, &evalp);
    assert_eq!(predictions(&pred).0, "row,domain,click,like");
}

#[test]
fn predict_on_exported_movielens_records_equals_eval_for_an_isolated_setting_too() {
    let tmp = tempfile::tempdir().unwrap();
    let ml = tmp.path().join("ml-1m");
    movielens_fixture(&ml);
    let csv = tmp.path().join("test.csv");
    ok(mdrec(&[
        "data",
        "export",
        "--dataset",
        "ml-1m",
        "--data-dir",
        s(&ml),
        "--out",
        s(&csv),
    ]));
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(
        text.starts_with("user_id,movie_id,gender,age,occupation,zip,genres,timestamp,rating\n")
    );
    assert_eq!(text.lines().count(), 1 + 180, "10 % of 1,800 ratings");
    // mmoe: one model; mlp: one model per (domain, task) cell
    for model in ["mmoe", "mlp"] {
        let run = tmp.path().join(model);
        ok(mdrec(&[
            "train",
            "--dataset",
            "ml-1m",
            "--data-dir",
            s(&ml),
            "--model",
            model,
            "--epochs",
            "1",
            "--quiet",
            "--out",
            s(&run),
        ]));
        let (pred, evalp) = (tmp.path().join("p.csv"), tmp.path().join("e.csv"));
        ok(mdrec(&[
            "predict",
            "--run",
            s(&run),
            "--input",
            s(&csv),
            "--out",
            s(&pred),
        ]));
        ok(mdrec(&[
            "eval",
            "--run",
            s(&run),
            "--predictions",
            s(&evalp),
        ]));
        assert_same_predictions(&pred, &evalp);
    }
}

#[test]
fn bad_records_and_incomplete_runs_are_named_and_leave_no_output() {
    let tmp = tempfile::tempdir().unwrap();
    let ml = tmp.path().join("ml-1m");
    movielens_fixture(&ml);
    let run = tmp.path().join("run");
    ok(mdrec(&[
        "train",
        "--dataset",
        "ml-1m",
        "--data-dir",
        s(&ml),
        "--epochs",
        "1",
        "--quiet",
        "--out",
        s(&run),
    ]));
    let input = tmp.path().join("in.csv");
    let out = tmp.path().join("out.csv");
    let predict = |body: &str| {
        std::fs::write(&input, body).unwrap();
        fails(mdrec(&[
            "predict",
            "--run",
            s(&run),
            "--input",
            s(&input),
            "--out",
            s(&out),
        ]))
    };
    let head = "user_id,movie_id,gender,age,occupation,zip,genres\n";
    // an unknown age code on line 3
    let e = predict(&format!(
        "{head}1,1,F,18,3,11111,Comedy\n1,1,F,17,3,11111,Comedy\n"
    ));
    assert!(
        e.contains("in.csv:3: field `age`") && e.contains("unknown age code `17`"),
        "{e}"
    );
    assert!(!out.exists() && !tmp.path().join("out.csv.partial").exists());
    // missing columns are listed with what the records need
    let e = predict("user_id,movie_id\n1,1\n");
    assert!(
        e.contains("missing column(s) gender, age, occupation, zip, genres"),
        "{e}"
    );
    assert!(e.contains("timestamp (int, optional)"), "{e}");
    // a ragged row
    let e = predict(&format!("{head}1,1,F,18\n"));
    assert!(
        e.contains("in.csv:2") && e.contains("expected 7 fields, found 4"),
        "{e}"
    );
    // nothing to score
    let e = predict(head);
    assert!(e.contains("no records"), "{e}");
    // unknown ids are OOV, not errors
    std::fs::write(
        &input,
        format!("{head}999999,999999,X,18,99,00000,Western\n"),
    )
    .unwrap();
    ok(mdrec(&[
        "predict",
        "--run",
        s(&run),
        "--input",
        s(&input),
        "--out",
        s(&out),
    ]));
    assert_eq!(predictions(&out).1.len(), 1);
    // Parquet is refused with a way out
    let e = fails(mdrec(&[
        "predict",
        "--run",
        s(&run),
        "--input",
        "x.parquet",
    ]));
    assert!(e.contains("Parquet input is not supported yet"), "{e}");
    // a run without vocabularies or with a corrupt schema
    std::fs::remove_file(run.join("vocabs.json")).unwrap();
    let e = fails(mdrec(&["predict", "--run", s(&run), "--input", s(&input)]));
    assert!(
        e.contains("vocabs.json") && e.contains("train the run again"),
        "{e}"
    );
    std::fs::write(run.join("schema.json"), "{\"spec\": 1").unwrap();
    let e = fails(mdrec(&["predict", "--run", s(&run), "--input", s(&input)]));
    assert!(e.contains("schema.json") && e.contains("corrupt"), "{e}");
}
