//! End to end: `mdrec data pretrain` → a run that reads the vectors (dense inputs, similarity,
//! semantic IDs) → `mdrec predict` on exported records equals `mdrec eval`, and refuses vector
//! files that changed since training.

mod common;

use common::{assert_same_predictions, fails, mdrec, ok, s};

#[test]
fn pretrain_train_and_predict_with_pretrained_vectors() {
    let tmp = tempfile::tempdir().unwrap();
    let vec_dir = tmp.path().join("vectors");
    let synth = ["--set", "dataset.synthetic_rows=3000"];
    let mut a = vec![
        "data",
        "pretrain",
        "--dim",
        "4",
        "--format",
        "csv",
        "--out",
        s(&vec_dir),
    ];
    a.extend(synth);
    let o = ok(mdrec(&a));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        out.contains("user_id vectors") && out.contains("item_id vectors of dim 4"),
        "{out}"
    );
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        err.contains("validation and test rows are not read"),
        "{err}"
    );
    let (users, items) = (vec_dir.join("user_id.csv"), vec_dir.join("item_id.csv"));
    assert!(std::fs::read_to_string(&items)
        .unwrap()
        .starts_with("id,v0,v1,v2,v3\n"));

    let cfg = tmp.path().join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[dataset]
name = "synthetic"
synthetic_rows = 3000
[dataset.pretrained]
user_id = {{ path = {:?} }}
item_id = {{ path = {:?} }}
[dataset.similarity]
user = "user_id"
item = "item_id"
[dataset.semantic_id]
field = "item_id"
bits = 4
[train]
epochs = 1
[model]
name = "mmoe"
"#,
            s(&users),
            s(&items)
        ),
    )
    .unwrap();
    let run = tmp.path().join("run");
    ok(mdrec(&[
        "train",
        "--config",
        s(&cfg),
        "--quiet",
        "--out",
        s(&run),
    ]));
    let schema = std::fs::read_to_string(run.join("schema.json")).unwrap();
    assert!(schema.contains("\"sha256\"") && schema.contains("item_id.sid0.mnse2"));
    let csv = tmp.path().join("test.csv");
    let mut a = vec!["data", "export", "--split", "test", "--out", s(&csv)];
    a.extend(synth);
    ok(mdrec(&a));
    let (pred, evalp) = (tmp.path().join("pred.csv"), tmp.path().join("eval.csv"));
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
    // the vectors changed after training: scoring refuses them, naming the file
    let text = std::fs::read_to_string(&items).unwrap();
    std::fs::write(&items, text.replacen(",", ",1", 2)).unwrap();
    let e = fails(mdrec(&["predict", "--run", s(&run), "--input", s(&csv)]));
    assert!(e.contains("item_id.csv") && e.contains("SHA-256"), "{e}");
}
