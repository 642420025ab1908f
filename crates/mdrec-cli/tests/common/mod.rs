//! Helpers shared by the end-to-end tests: running the binary, reading a run's report, a
//! generated MovieLens-1M folder in the official layout and a generated interaction log.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

pub fn mdrec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mdrec"))
        .args(args)
        .output()
        .expect("run mdrec")
}

pub fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o
}

pub fn fails(o: Output) -> String {
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

/// The path as a `&str` argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Parses a predictions CSV into (header, rows).
pub fn predictions(path: &Path) -> (String, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().to_string();
    let rows = lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    (header, rows)
}

/// Two predictions files (`mdrec predict`, `mdrec eval --predictions`) hold the same rows,
/// domains and probabilities (to 1e-6).
pub fn assert_same_predictions(a: &Path, b: &Path) {
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

/// Trains `model` for one epoch on the MovieLens-1M folder `ml` into `out`.
pub fn train_movielens(ml: &Path, model: &str, seed: &str, out: &Path) {
    ok(mdrec(&[
        "train",
        "--dataset",
        "ml-1m",
        "--data-dir",
        s(ml),
        "--model",
        model,
        "--seed",
        seed,
        "--epochs",
        "1",
        "--quiet",
        "--out",
        s(out),
    ]));
}

/// Exports the test split of the MovieLens-1M folder `ml` to the CSV `out`.
pub fn export_movielens_test(ml: &Path, out: &Path) {
    ok(mdrec(&[
        "data",
        "export",
        "--dataset",
        "ml-1m",
        "--data-dir",
        s(ml),
        "--out",
        s(out),
    ]));
}

/// A run directory's `report.json`.
pub fn report(dir: &Path) -> serde_json::Value {
    let p = dir.join("report.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

/// `rows` synthetic rows as `log.csv` in `dir` with their schema as `schema.toml`, without the
/// multi-hot `tags` field (which the out-of-core path refuses); returns (schema, csv).
pub fn synthetic_log(dir: &Path, rows: usize) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = mdrec_data::generate(&mdrec_data::SyntheticConfig {
        n_rows: rows,
        ..Default::default()
    });
    let schema = dir.join("schema.toml");
    let toml = data.schema_toml.replace(
        "\n[[fields]]\nname = \"tags\"\nkind = \"multi_hot\"\nmax_len = 4\nroles = [\"item\"]\n",
        "",
    );
    assert!(!toml.contains("multi_hot"));
    std::fs::write(&schema, toml).unwrap();
    let csv = dir.join("log.csv");
    mdrec_data::write_csv(&data.table, &csv).unwrap();
    (schema, csv)
}
