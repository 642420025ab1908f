//! Training out of core (`dataset.out_of_core = true`) from the CLI: deterministic, evaluated
//! and scored like any run.

mod common;

use common::{mdrec, ok, report, s, synthetic_log};

#[test]
fn a_run_on_an_out_of_core_store_is_deterministic_and_evaluates_and_scores() {
    let tmp = tempfile::tempdir().unwrap();
    let (schema, csv) = synthetic_log(tmp.path(), 20_000);
    let files = format!("dataset.files=[\"{}\"]", s(&csv));
    let schema_set = format!("dataset.schema=\"{}\"", s(&schema));
    let cache = format!("dataset.cache_dir=\"{}\"", s(&tmp.path().join("cache")));
    let train = |out: &std::path::Path| {
        ok(mdrec(&[
            "train",
            "--dataset",
            "csv",
            "--model",
            "mmoe",
            "--epochs",
            "2",
            "--quiet",
            "--set",
            &schema_set,
            "--set",
            &files,
            "--set",
            &cache,
            "--set",
            "dataset.out_of_core=true",
            "--set",
            "dataset.split=\"random\"",
            "--set",
            "train.batch_size=512",
            "--out",
            s(out),
        ]))
    };
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let first = train(&a);
    let msg = String::from_utf8_lossy(&first.stderr);
    assert!(!msg.contains("panicked"), "{msg}");
    train(&b);
    let (ra, rb) = (report(&a), report(&b));
    assert_eq!(ra["test"], rb["test"], "the same config gives the same run");
    let auc = ra["test"]["overall"]["auc_mean_cells"].as_f64().unwrap();
    assert!(auc > 0.6, "learns something: {auc}");
    // eval reopens the store and gives the report's numbers; predict scores the raw file
    let ev = tmp.path().join("eval.csv");
    ok(mdrec(&["eval", "--run", s(&a), "--predictions", s(&ev)]));
    let pred = tmp.path().join("pred.csv");
    ok(mdrec(&[
        "predict",
        "--run",
        s(&a),
        "--input",
        s(&csv),
        "--out",
        s(&pred),
    ]));
    let lines = std::fs::read_to_string(&pred).unwrap().lines().count();
    assert_eq!(lines, 20_001);
}
