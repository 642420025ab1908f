//! `mdrec train` in stream mode from the command line: the run directory, the stream chart,
//! scoring new records with the dynamic tables, and `mdrec eval` refusing a stream run.

mod common;

use common::{export_movielens_test, fails, mdrec, movielens_fixture, ok, predictions, s};

#[test]
fn stream_mode_trains_charts_predicts_and_cannot_be_re_evaluated() {
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
        "--model",
        "m3oe",
        "--quiet",
        "--set",
        "train.mode=\"stream\"",
        "--set",
        "train.stream.window_rows=400",
        "--set",
        "train.stream.tables.capacity_fraction=0.5",
        "--out",
        s(&run),
    ]));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["split"], "stream");
    assert_eq!(
        report["stream"]["windows"], 5,
        "1,800 ratings in windows of 400"
    );
    assert_eq!(report["rows"][0], 1800);
    let lines = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 5);
    let svg = std::fs::read_to_string(run.join("curve.svg")).unwrap();
    assert!(svg.contains("progressive AUC") && svg.contains("live rows"));

    let csv = tmp.path().join("records.csv");
    export_movielens_test(&ml, &csv);
    let out = tmp.path().join("pred.csv");
    ok(mdrec(&[
        "predict",
        "--run",
        s(&run),
        "--input",
        s(&csv),
        "--out",
        s(&out),
    ]));
    let (header, rows) = predictions(&out);
    assert_eq!(header, "row,domain,click,like");
    assert_eq!(
        rows.len(),
        std::fs::read_to_string(&csv).unwrap().lines().count() - 1
    );

    let err = fails(mdrec(&["eval", "--run", s(&run)]));
    assert!(err.contains("stream run"), "{err}");
}
