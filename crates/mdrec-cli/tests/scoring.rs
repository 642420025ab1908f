//! End-to-end tests of scoring new records: `mdrec data export` → `mdrec predict` equals
//! `mdrec eval --predictions` (synthetic data and a generated MovieLens-1M folder), and the
//! errors of bad records and incomplete run directories.

mod common;

use common::{
    assert_same_predictions, export_movielens_test, fails, mdrec, movielens_fixture, ok,
    predictions, s, train_movielens,
};

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
    // the same records as Parquet and as Arrow IPC score the same
    for (ext, chunk_rows) in [("parquet", "500"), ("arrow", "333")] {
        let input = tmp.path().join(format!("test.{ext}"));
        let out = tmp.path().join(format!("{ext}.csv"));
        let mut a = vec!["data", "export", "--split", "test", "--out", s(&input)];
        a.extend(synth);
        ok(mdrec(&a));
        ok(mdrec(&[
            "predict",
            "--run",
            s(&run),
            "--input",
            s(&input),
            "--out",
            s(&out),
            "--chunk-rows",
            chunk_rows,
        ]));
        assert_same_predictions(&out, &evalp);
    }
}

#[test]
fn predict_on_exported_movielens_records_equals_eval_for_an_isolated_setting_too() {
    let tmp = tempfile::tempdir().unwrap();
    let ml = tmp.path().join("ml-1m");
    movielens_fixture(&ml);
    let csv = tmp.path().join("test.csv");
    export_movielens_test(&ml, &csv);
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(
        text.starts_with("user_id,movie_id,gender,age,occupation,zip,genres,timestamp,rating\n")
    );
    assert_eq!(text.lines().count(), 1 + 180, "10 % of 1,800 ratings");
    // mmoe: one model; mlp: one model per (domain, task) cell
    for model in ["mmoe", "mlp"] {
        let run = tmp.path().join(model);
        train_movielens(&ml, model, "1", &run);
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
    train_movielens(&ml, "mmoe", "1", &run);
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
    // a file named .parquet that is not Parquet
    let fake = tmp.path().join("x.parquet");
    std::fs::write(&fake, head).unwrap();
    let e = fails(mdrec(&["predict", "--run", s(&run), "--input", s(&fake)]));
    assert!(
        e.contains("x.parquet") && e.contains("not a readable Parquet file"),
        "{e}"
    );
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
