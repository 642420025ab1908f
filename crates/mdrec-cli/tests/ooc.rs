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

#[test]
fn stream_training_out_of_core_trains_what_it_trains_in_memory_also_as_replicas() {
    let tmp = tempfile::tempdir().unwrap();
    let (schema, csv) = synthetic_log(tmp.path(), 12_000);
    // a log arrives in time order: sort the generated one by its `timestamp` column
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let at = header.split(',').position(|h| h == "timestamp").unwrap();
    let mut rows: Vec<&str> = lines.collect();
    rows.sort_by_key(|l| l.split(',').nth(at).unwrap().parse::<i64>().unwrap());
    std::fs::write(&csv, format!("{header}\n{}\n", rows.join("\n"))).unwrap();
    let files = format!("dataset.files=[\"{}\"]", s(&csv));
    let schema_set = format!("dataset.schema=\"{}\"", s(&schema));
    let train_as = |out: &std::path::Path, out_of_core: bool, replicas: usize, sharding: &str| {
        let cache = format!("dataset.cache_dir=\"{}\"", s(&out.with_extension("cache")));
        let ooc = format!("dataset.out_of_core={out_of_core}");
        let replicas = format!("train.replicas={replicas}");
        let sharding = format!("train.embedding.sharding=\"{sharding}\"");
        #[rustfmt::skip]
        let args = [
            "train", "--dataset", "csv", "--model", "mmoe", "--quiet",
            "--set", &schema_set, "--set", &files, "--set", &cache, "--set", &ooc,
            "--set", "train.mode=\"stream\"", "--set", "train.stream.window_rows=3000",
            "--set", "train.stream.tables.capacity_fraction=0.5", "--set", "train.batch_size=256",
            "--set", &replicas, "--set", &sharding, "--out", s(out),
        ];
        ok(mdrec(&args))
    };
    let train = |out: &std::path::Path, out_of_core: bool, replicas: usize| {
        train_as(out, out_of_core, replicas, "row")
    };
    let (mem, ooc) = (tmp.path().join("mem"), tmp.path().join("ooc"));
    train(&mem, false, 1);
    train(&ooc, true, 1);
    assert!(std::fs::read_dir(ooc.with_extension("cache"))
        .unwrap()
        .any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".mdrec-store")));
    let weights = |d: &std::path::Path| std::fs::read(d.join("weights.safetensors")).unwrap();
    assert!(
        weights(&mem) == weights(&ooc),
        "the same weights, bit for bit"
    );
    let (a, b) = (report(&mem), report(&ooc));
    for key in ["progressive_auc", "tables", "tasks", "windows"] {
        assert_eq!(a["stream"][key], b["stream"][key], "{key}");
    }
    // Two replicas on the store with replicated tables: each admits and evicts for the whole
    // batch (the same decisions as one process) and trains its half.
    let two = tmp.path().join("two");
    train_as(&two, true, 2, "replicated");
    let c = report(&two);
    assert_eq!(c["stream"]["tables"], a["stream"]["tables"]);
    let auc = |r: &serde_json::Value| r["stream"]["progressive_auc"].as_f64().unwrap();
    let near_one_process = |r: &serde_json::Value| {
        let (x, y) = (auc(r), auc(&a));
        assert!((x - y).abs() < 0.01, "{x} vs one process {y}");
    };
    near_one_process(&c);
    // Sharded tables: each replica holds, admits and evicts the ids it owns within its part
    // of the capacity; the group's tables have one table's capacity and the run learns as
    // well. The saved weights are one joined table per field that `predict` reads.
    let sharded = tmp.path().join("sharded");
    train(&sharded, true, 2);
    let d = report(&sharded);
    let tables = |r: &serde_json::Value| r["stream"]["tables"].as_array().unwrap().clone();
    for (x, y) in tables(&d).iter().zip(tables(&a)) {
        let cap = |t: &serde_json::Value| t["capacity"].as_i64().unwrap();
        assert!((cap(x) - cap(&y)).abs() <= 1, "{x} vs {y}");
        assert!(x["live_rows"].as_i64().unwrap() <= cap(x) + 2, "{x}");
        assert!(x["admitted"].as_i64().unwrap() > 0, "{x}");
    }
    near_one_process(&d);
    let pred = tmp.path().join("pred.csv");
    #[rustfmt::skip]
    ok(mdrec(&[
        "predict", "--run", s(&sharded), "--input", s(&csv), "--out", s(&pred),
    ]));
    assert_eq!(
        std::fs::read_to_string(&pred).unwrap().lines().count(),
        12_001
    );
}
