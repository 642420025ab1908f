//! End-to-end tests of the `mdrec` binary: train → report → eval, determinism, and the errors a
//! user meets first.

use std::path::Path;
use std::process::{Command, Output};

/// Runs the binary in a fresh temporary working directory, removed afterwards: a command
/// that writes to its default place (`runs/…`, a cache) writes nothing outside it.
fn mdrec(args: &[&str]) -> Output {
    mdrec_env(args, &[])
}

/// [`mdrec`] with extra environment variables.
fn mdrec_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let cwd = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_mdrec"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(cwd.path())
        .output()
        .expect("run mdrec")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn train_synthetic(out: &Path, model: &str, seed: &str) -> Output {
    mdrec(&[
        "train",
        "--dataset",
        "synthetic",
        "--model",
        model,
        "--epochs",
        "2",
        "--seed",
        seed,
        "--quiet",
        "--set",
        "dataset.synthetic_rows=4000",
        "--set",
        "train.batch_size=256",
        "--out",
        out.to_str().unwrap(),
    ])
}

fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

#[test]
fn train_writes_the_run_directory_and_eval_reproduces_the_test_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let o = train_synthetic(&run, "mmoe", "3");
    assert!(o.status.success(), "{}", stderr(&o));
    for f in [
        "config.resolved.json",
        "schema.json",
        "weights.safetensors",
        "metrics.jsonl",
        "report.json",
        "report.md",
    ] {
        assert!(run.join(f).is_file(), "missing {f}");
    }
    let r = report(&run);
    assert_eq!(r["model"], "mmoe");
    assert_eq!(r["dataset"], "synthetic");
    assert_eq!(r["seed"], 3);
    assert!(r["epochs_run"].as_u64().unwrap() >= 1);
    let cells = r["test"]["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 6, "3 domains × 2 tasks");
    for c in cells {
        for k in ["domain", "task", "auc", "logloss", "n"] {
            assert!(!c[k].is_null(), "cell field {k} missing in {c}");
        }
    }
    for k in ["auc_mean_cells", "auc_task_pooled_mean", "logloss"] {
        assert!(r["test"]["overall"][k].as_f64().is_some(), "overall.{k}");
    }
    assert!(r["timing"]["train_samples_per_s"].as_f64().unwrap() > 0.0);
    assert!(r["timing"]["train_seconds"].as_f64().is_some());
    assert!(
        r["test"]["overall"]["auc_mean_cells"].as_f64().unwrap() > 0.55,
        "the synthetic signal is learnable"
    );
    let lines = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(
        lines.lines().count() as u64,
        r["epochs_run"].as_u64().unwrap()
    );

    let o = mdrec(&["eval", "--run", run.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let e: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("eval.json")).unwrap()).unwrap();
    assert_eq!(
        e["cells"], r["test"]["cells"],
        "saved weights must reproduce the test metrics exactly"
    );

    // A truncated checkpoint is reported, not trusted.
    let w = run.join("weights.safetensors");
    let bytes = std::fs::read(&w).unwrap();
    std::fs::write(&w, &bytes[..bytes.len() / 2]).unwrap();
    let o = mdrec(&["eval", "--run", run.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("weights.safetensors") && stderr(&o).contains("truncated"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn same_seed_gives_the_same_report() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    assert!(train_synthetic(&a, "shared_bottom", "9").status.success());
    assert!(train_synthetic(&b, "shared_bottom", "9").status.success());
    assert_eq!(report(&a)["test"], report(&b)["test"]);
    let same = std::fs::read(a.join("weights.safetensors")).unwrap()
        == std::fs::read(b.join("weights.safetensors")).unwrap();
    assert!(same, "checkpoints of two identical runs differ");
}

#[test]
fn isolated_mlp_trains_one_model_per_cell() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("mlp");
    let o = train_synthetic(&run, "mlp", "1");
    assert!(o.status.success(), "{}", stderr(&o));
    let r = report(&run);
    assert_eq!(r["setting"], "isolated");
    assert_eq!(r["best_epoch"].as_object().unwrap().len(), 6);
    let o = mdrec(&["eval", "--run", run.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let e: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("eval.json")).unwrap()).unwrap();
    assert_eq!(e["cells"], r["test"]["cells"]);
}

/// `mdrec models` lists every registered model with its setting and paper, and the README's
/// model table names exactly the same models.
#[test]
fn models_lists_the_zoo_with_papers() {
    let o = mdrec(&["models"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = String::from_utf8_lossy(&o.stdout);
    let rows: Vec<Vec<&str>> = s
        .lines()
        .skip(2)
        .map(|l| l.trim_matches('|').split(" | ").map(str::trim).collect())
        .collect();
    let listed: std::collections::BTreeSet<&str> = rows.iter().map(|r| r[0]).collect();
    let registered: std::collections::BTreeSet<&str> =
        mdrec_models::MODELS.iter().map(|m| m.name()).collect();
    assert_eq!(listed, registered, "{s}");
    assert_eq!(rows.len(), registered.len(), "a model listed twice: {s}");
    for (r, m) in rows.iter().zip(mdrec_models::MODELS) {
        assert_eq!(r.len(), 3, "{r:?}");
        assert_eq!(r[2], m.paper(), "{r:?}");
        assert!(r[1] != "?" && !r[1].is_empty() && !r[2].is_empty(), "{r:?}");
    }
    // The README's table: first column, names in backticks (several per row allowed).
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let table = readme
        .split("| model | setting | paper |")
        .nth(1)
        .expect("README model table");
    let documented: std::collections::BTreeSet<&str> = table
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .flat_map(|l| l.split('|').nth(1).unwrap().split(','))
        .map(|n| n.trim().trim_matches('`'))
        .collect();
    assert_eq!(documented, registered, "README model table vs the registry");
}

#[test]
fn missing_data_folder_says_how_to_get_the_data() {
    let o = mdrec(&[
        "train",
        "--dataset",
        "movielens-1m",
        "--data-dir",
        "/nonexistent/ml-1m",
        "--epochs",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("/nonexistent/ml-1m") && e.contains("ml-1m.zip") && e.contains("grouplens"),
        "{e}"
    );
}

#[test]
fn data_list_prints_the_dataset_table() {
    let o = mdrec(&["data", "list"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s = String::from_utf8_lossy(&o.stdout);
    for want in [
        "| movielens-1m | ml-1m | m3oe |",
        "| aliccp |  | aread |",
        "grouplens.org",
        "preprocess.py",
        "| csv |",
        "| synthetic |",
    ] {
        assert!(s.contains(want), "{want}\n{s}");
    }
    let o = mdrec(&["train", "--help"]);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        s.contains("movielens-1m (alias ml-1m), synthetic, csv, aliccp, amazon"),
        "{s}"
    );
}

#[test]
fn invalid_dataset_values_exit_2_naming_the_key_before_reading_data() {
    for (args, want) in [
        (
            vec!["--split", "rnd"],
            "dataset.split: unknown value \"rnd\"; expected one of: m3oe, sequential, random, time, aread",
        ),
        (
            vec!["--dataset", "ml1m"],
            "expected one of: movielens-1m (alias ml-1m), synthetic, csv, aliccp, amazon",
        ),
        (vec!["--set", "dataset.split=\"rnd\""], "dataset.split: unknown value"),
        (vec!["--set", "dataset.domain=\"genre\""], "dataset.domain applies to movielens-1m only"),
        (
            vec!["--dataset", "ml-1m", "--data-dir", "/nonexistent/ml", "--set", "dataset.row_order=\"pandas\""],
            "dataset.row_order: unknown value \"pandas\"; expected one of: merged, ratings",
        ),
        (vec!["--set", "dataset.ratios=[0.5, 0.5, 0.5]"], "dataset.ratios"),
        (
            vec!["--dataset", "aliccp", "--data-dir", "/nonexistent/a", "--split", "m3oe"],
            "split = \"aread\"",
        ),
    ] {
        let mut a = vec!["train", "--epochs", "1"];
        a.extend(&args);
        let o = mdrec(&a);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert!(e.contains(want), "{args:?}: {e}");
        assert!(!e.contains("data: "), "{args:?} read data: {e}");
    }
    // Without --split a dataset takes its own protocol: AliCCP's `aread` split passes the
    // check and the reader asks for its files (the raw recipes: tests/raw_datasets.rs).
    let o = mdrec(&[
        "train",
        "--dataset",
        "aliccp",
        "--data-dir",
        "/nonexistent/a",
    ]);
    let e = stderr(&o);
    assert!(
        !e.contains("dataset.split") && e.contains("missing aliccp file"),
        "aliccp: {e}"
    );
}

/// Every invalid training or model value stops the run before data is read: the data folder
/// below does not exist, so an error that got as far as reading would name it instead.
#[test]
fn invalid_training_values_exit_2_naming_the_key_before_reading_data() {
    for (args, want) in [
        (vec!["--lr", "nan"], "train.lr"),
        (vec!["--lr=-0.1"], "train.lr"),
        (vec!["--batch-size", "0"], "train.batch_size"),
        (vec!["--epochs", "0"], "train.epochs"),
        (vec!["--set", "train.weight_decay=-1"], "train.weight_decay"),
        (
            vec!["--set", "train.embedding.lr=inf"],
            "train.embedding.lr",
        ),
        (
            vec!["--set", "train.keep=\"first\""],
            "train.keep: unknown value \"first\"; expected one of: best, last",
        ),
        (
            vec!["--set", "train.automl_batch_source=\"test\""],
            "expected one of: valid, train",
        ),
        (vec!["--set", "train.batching=\"cells\""], "train.batching"),
        (vec!["--set", "train.monitor=\"aucc\""], "train.monitor"),
        (vec!["--set", "train.device=\"tpu\""], "train.device"),
        (vec!["--set", "model.num_experts=0"], "mmoe"),
        (vec!["--set", "model.heads.tower_dims=\"wide\""], "heads"),
    ] {
        let mut a = vec![
            "train",
            "--dataset",
            "movielens-1m",
            "--data-dir",
            "/nonexistent/ml-1m",
        ];
        a.extend(&args);
        let o = mdrec(&a);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert!(e.contains(want), "{args:?}: {e}");
        assert!(!e.contains("/nonexistent/ml-1m"), "{args:?} read data: {e}");
    }
}

#[test]
fn pandas_csv_with_quoted_fields_and_crlf_trains_through_the_csv_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let schema = tmp.path().join("schema.toml");
    std::fs::write(
        &schema,
        "group = \"user\"\n[[fields]]\nname = \"user\"\nkind = \"categorical\"\n\
         [[fields]]\nname = \"title\"\nkind = \"categorical\"\n[domain]\ncolumn = \"scene\"\n\
         [[tasks]]\nname = \"click\"\ncolumn = \"click\"\nrule = \"binary\"\n",
    )
    .unwrap();
    // as pandas' to_csv writes it on Windows: minimal quoting, "" for a quote, CRLF
    let titles = [
        "\"Bug's Life, A (1998)\"",
        "\"The \"\"Best\"\" Movie, Part 2\"",
        "Heat (1995)",
    ];
    let mut text = String::from("user,title,scene,click\r\n");
    for i in 0..300 {
        text.push_str(&format!(
            "u{},{},{},{}\r\n",
            i % 11,
            titles[i % 3],
            if i % 2 == 0 { "feed" } else { "search" },
            u8::from((i * 7 + i / 5) % 3 == 0)
        ));
    }
    let data = tmp.path().join("logs.csv");
    std::fs::write(&data, text).unwrap();
    let cfg = tmp.path().join("exp.toml");
    std::fs::write(
        &cfg,
        format!(
            "[dataset]\nname = \"csv\"\nschema = {:?}\nfiles = [{:?}]\nsplit = \"random\"\ncache_dir = {:?}\n",
            schema,
            data,
            tmp.path().join("cache")
        ),
    )
    .unwrap();
    let out = tmp.path().join("run");
    let o = mdrec(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--model",
        "mlp",
        "--epochs",
        "1",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r = report(&out);
    assert_eq!(r["dataset"], "csv");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("schema.json")).unwrap()).unwrap();
    let title = schema["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "title")
        .unwrap();
    // three distinct titles + PAD + OOV: the quoted commas did not split the field
    assert_eq!(title["vocab_size"], 5, "{title}");
}

#[test]
fn unknown_config_key_and_unknown_model_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("exp.toml");
    std::fs::write(&cfg, "[train]\nepochs = 1\nlearning_rate = 0.1\n").unwrap();
    let o = mdrec(&["train", "--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("exp.toml") && e.contains("learning_rate") && e.contains("`lr`"),
        "{e}"
    );

    let o = mdrec(&["train", "--model", "mmoee", "--epochs", "1"]);
    let e = stderr(&o);
    assert!(
        o.status.code() == Some(2) && e.contains("mmoee") && e.contains("shared_bottom"),
        "{e}"
    );

    let o = mdrec(&[
        "train",
        "--model",
        "mmoe",
        "--set",
        "model.num_expert=3",
        "--epochs",
        "1",
    ]);
    let e = stderr(&o);
    assert!(
        o.status.code() == Some(2) && e.contains("num_expert") && e.contains("num_experts"),
        "{e}"
    );
}

#[test]
fn malformed_csv_row_names_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let schema = tmp.path().join("schema.toml");
    std::fs::write(
        &schema,
        r#"
group = "user"
[[fields]]
name = "user"
kind = "categorical"
[[fields]]
name = "price"
kind = "numeric"
transform = "log1p"
[domain]
column = "scene"
[[tasks]]
name = "click"
column = "click"
rule = "binary"
"#,
    )
    .unwrap();
    let data = tmp.path().join("logs.csv");
    let mut text = String::from("user,price,scene,click\n");
    for i in 0..40 {
        text.push_str(&format!(
            "u{},{}.5,{},{}\n",
            i % 7,
            i,
            if i % 2 == 0 { "feed" } else { "search" },
            i % 3 == 0
        ));
    }
    text = text.replace("true", "1").replace("false", "0");
    text.push_str("u3,abc,feed,1\n");
    std::fs::write(&data, text).unwrap();
    let cfg = tmp.path().join("exp.toml");
    std::fs::write(
        &cfg,
        format!(
            "[dataset]\nname = \"csv\"\nschema = {:?}\nfiles = [{:?}]\ncache_dir = {:?}\n",
            schema,
            data,
            tmp.path().join("cache")
        ),
    )
    .unwrap();
    let o = mdrec(&["train", "--config", cfg.to_str().unwrap(), "--epochs", "1"]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("logs.csv:42") && e.contains("price"), "{e}");
}

#[test]
fn mtl_and_mdl_settings_train_one_model_per_domain_or_task() {
    let tmp = tempfile::tempdir().unwrap();
    for (setting, parts) in [("mtl", 3usize), ("mdl", 2)] {
        let run = tmp.path().join(setting);
        let o = mdrec(&[
            "train",
            "--dataset",
            "synthetic",
            "--model",
            "shared_bottom",
            "--epochs",
            "1",
            "--quiet",
            "--set",
            "dataset.synthetic_rows=3000",
            "--set",
            &format!("train.setting=\"{setting}\""),
            "--out",
            run.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let r = report(&run);
        assert_eq!(r["setting"], setting);
        assert_eq!(
            r["best_epoch"].as_object().unwrap().len(),
            parts,
            "{setting}"
        );
        assert_eq!(r["test"]["cells"].as_array().unwrap().len(), 6);
        let o = mdrec(&["eval", "--run", run.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        let e: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("eval.json")).unwrap()).unwrap();
        assert_eq!(
            e["cells"], r["test"]["cells"],
            "{setting}: eval must reproduce the report"
        );
    }
}

#[test]
fn bench_resumes_after_an_interruption_with_the_same_table() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("bench.toml");
    std::fs::write(
        &spec,
        r#"
name = "tiny"
seeds = [1, 2]
compare = "mmoe"
base = "SB-MTL"
[dataset]
name = "synthetic"
synthetic_rows = 2000
[train]
epochs = 1
batch_size = 256
[[runs]]
model = { name = "mmoe" }
[[runs]]
label = "SB-MTL"
model = { name = "shared_bottom" }
train = { setting = "mtl" }
reference = { auc_mean_cells = 0.71 }
"#,
    )
    .unwrap();
    let out = tmp.path().join("out");
    let args = [
        "bench",
        "--spec",
        spec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ];
    let o = mdrec(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("trained 4 runs, 0 already complete"),
        "{}",
        stderr(&o)
    );
    let table = std::fs::read_to_string(out.join("table.md")).unwrap();
    assert!(
        table.contains("| mmoe | 2 |")
            && table.contains("SB-MTL (paper)")
            && table.contains("RelaImpr"),
        "{table}"
    );
    // The base section tests every other run against SB-MTL over the two seeds.
    let vs = table
        .split("Against the base (SB-MTL)")
        .nth(1)
        .expect("base section");
    let mmoe_row = vs
        .lines()
        .find(|l| l.starts_with("| mmoe |"))
        .expect("mmoe row");
    assert!(
        mmoe_row.contains(" (0.") || mmoe_row.contains(" (1.000)"),
        "{mmoe_row}"
    );
    assert!(
        !vs.lines().any(|l| l.starts_with("| SB-MTL |")),
        "the base is not tested against itself"
    );
    let csv = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "header + 4 runs");
    assert!(std::fs::read_to_string(out.join("environment.md"))
        .unwrap()
        .contains("git commit"));

    // Two runs at a time train the same models: same weights, same table.
    let out2 = tmp.path().join("out2");
    let mut jobs = args.to_vec();
    jobs[4] = out2.to_str().unwrap();
    jobs.extend(["--jobs", "2"]);
    let o = mdrec(&jobs);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("2 at a time"), "{}", stderr(&o));
    for run in ["mmoe/s1", "mmoe/s2", "SB-MTL/s1", "SB-MTL/s2"] {
        let files = |dir: &std::path::Path| -> Vec<Vec<u8>> {
            let mut names: Vec<_> = std::fs::read_dir(dir.join(run))
                .unwrap()
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
                .collect();
            names.sort();
            names.iter().map(|p| std::fs::read(p).unwrap()).collect()
        };
        let (a, b) = (files(&out), files(&out2));
        assert!(
            !a.is_empty() && a == b,
            "{run}: --jobs 2 trained other weights"
        );
    }
    assert_eq!(
        std::fs::read_to_string(out2.join("table.md")).unwrap(),
        table
    );

    // "Interrupt": one run is missing. Re-running trains only that one and gives the same table.
    std::fs::remove_dir_all(out.join("SB-MTL").join("s2")).unwrap();
    let o = mdrec(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("trained 1 runs, 3 already complete"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read_to_string(out.join("table.md")).unwrap(),
        table
    );

    // `--plan` trains nothing and lists what is left.
    std::fs::remove_dir_all(out.join("mmoe").join("s2")).unwrap();
    let mut plan = args.to_vec();
    plan.push("--plan");
    let o = mdrec(&plan);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("4 runs, 3 complete") && stdout.contains("to train: mmoe seed 2"),
        "{stdout}"
    );
    assert!(
        !out.join("mmoe").join("s2").exists(),
        "--plan trained nothing"
    );
    let o = mdrec(&args);
    assert!(o.status.success(), "{}", stderr(&o));

    // After an edit that changes what a completed run would be, the bench refuses to tabulate
    // the stale run: it names the run and the key, and trains nothing.
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(&spec, text.replace("batch_size = 256", "batch_size = 128")).unwrap();
    let o = mdrec(&args);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("train.batch_size = 256") && e.contains("128") && e.contains("s1"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("table.md")).unwrap(),
        table,
        "nothing retrained"
    );

    // A spec with an unknown key is refused with the key named.
    std::fs::write(&spec, "name = \"x\"\nseeds = [1]\nmodels = []\n[dataset]\nname = \"synthetic\"\n[[runs]]\nmodel = { name = \"mmoe\" }\n").unwrap();
    let o = mdrec(&args);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("models"), "{}", stderr(&o));
}

/// A CSV dataset built to over-fit: the training rows' clicks follow a rule of the item, the
/// validation rows' the opposite rule, so every epoch that learns the rule makes the
/// validation log-loss worse (whatever the seed): the last epoch is never the best one.
fn overfitting_csv(dir: &Path) -> std::path::PathBuf {
    let schema = dir.join("schema.toml");
    std::fs::write(
        &schema,
        "group = \"user\"\n[[fields]]\nname = \"user\"\nkind = \"categorical\"\n\
         [[fields]]\nname = \"item\"\nkind = \"categorical\"\n[domain]\ncolumn = \"scene\"\n\
         [[tasks]]\nname = \"click\"\ncolumn = \"click\"\nrule = \"binary\"\n",
    )
    .unwrap();
    let n = 2000;
    let mut text = String::from("user,item,scene,click\n");
    for i in 0..n {
        let item = (i * 7) % 23;
        let rule = (item % 3 == 0) ^ (i % 2 == 0);
        // sequential split 80 / 10 / 10: rows from 1600 on are validation and test
        let click = if i < n * 8 / 10 { rule } else { !rule };
        text.push_str(&format!(
            "u{},i{item},{},{}\n",
            i % 31,
            if i % 2 == 0 { "feed" } else { "search" },
            u8::from(click)
        ));
    }
    let data = dir.join("clicks.csv");
    std::fs::write(&data, text).unwrap();
    csv_config(dir, &schema, &data, "sequential")
}

/// `dir/exp.toml`: a `csv` dataset of one file with `schema` and `split`.
fn csv_config(dir: &Path, schema: &Path, data: &Path, split: &str) -> std::path::PathBuf {
    let cfg = dir.join("exp.toml");
    std::fs::write(
        &cfg,
        format!(
            "[dataset]\nname = \"csv\"\nschema = {schema:?}\nfiles = [{data:?}]\nsplit = \"{split}\"\n"
        ),
    )
    .unwrap();
    cfg
}

/// `train.keep = "last"` tests the weights training ended with (the official M3oE protocol),
/// `best` those of the best validation epoch; an unknown value is a config error.
#[test]
fn keep_last_tests_the_final_weights_and_keep_best_the_best_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = overfitting_csv(tmp.path());
    let run = |name: &str, keep: &str| {
        let out = tmp.path().join(name);
        let keep = format!("train.keep=\"{keep}\"");
        let o = mdrec(&[
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--model",
            "mmoe",
            "--epochs",
            "4",
            "--seed",
            "3",
            "--quiet",
            "--set",
            "train.batch_size=128",
            "--set",
            "train.lr=0.02",
            "--set",
            "train.patience=10",
            "--set",
            "train.monitor=\"logloss\"",
            "--set",
            &keep,
            "--out",
            out.to_str().unwrap(),
        ]);
        (o, out)
    };
    let valid_per_epoch = |dir: &Path| -> Vec<f64> {
        std::fs::read_to_string(dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|v| v["valid_logloss"].as_f64().unwrap())
            .collect()
    };
    let (o, last) = run("last", "last");
    assert!(o.status.success(), "{}", stderr(&o));
    let r = report(&last);
    let v = valid_per_epoch(&last);
    assert_eq!(v.len(), 4);
    // the construction over-fits: the last epoch is not the best, so `best` and `last` differ
    assert!(v[3] > v.iter().cloned().fold(f64::MAX, f64::min), "{v:?}");
    assert_eq!(r["best_epoch"]["all"], 4);
    let kept = r["valid"]["overall"]["logloss"].as_f64().unwrap();
    assert!((kept - v[3]).abs() < 1e-9, "kept {kept} vs epochs {v:?}");
    let (o, best) = run("best", "best");
    assert!(o.status.success(), "{}", stderr(&o));
    let r = report(&best);
    let v = valid_per_epoch(&best);
    let (arg, min) = v
        .iter()
        .enumerate()
        .fold((0, f64::MAX), |a, (i, &x)| if x < a.1 { (i, x) } else { a });
    assert_ne!(arg, 3, "{v:?}");
    assert_eq!(r["best_epoch"]["all"], arg as u64 + 1, "{v:?}");
    let kept = r["valid"]["overall"]["logloss"].as_f64().unwrap();
    assert!((kept - min).abs() < 1e-9, "kept {kept} vs epochs {v:?}");
    let (o, _) = run("bad", "first");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("train.keep"), "{}", stderr(&o));
}

/// The docs say a run does not depend on the number of threads: training with 1 and 2 rayon
/// threads (burn's CPU kernels and gemm run on rayon's pool) gives byte-identical weights and
/// the same report.
#[test]
fn training_does_not_depend_on_the_thread_count() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |threads: &str| {
        let out = tmp.path().join(format!("t{threads}"));
        let o = mdrec_env(
            &[
                "train",
                "--dataset",
                "synthetic",
                "--model",
                "mmoe",
                "--epochs",
                "1",
                "--seed",
                "5",
                "--quiet",
                "--set",
                "dataset.synthetic_rows=6000",
                "--set",
                "train.batch_size=1024",
                "--set",
                "model.expert_dims=[256, 128]",
                "--out",
                out.to_str().unwrap(),
            ],
            &[("RAYON_NUM_THREADS", threads)],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let r = report(&out);
        (std::fs::read(out.join("weights.safetensors")).unwrap(), r)
    };
    let (w1, r1) = run("1");
    let (w2, r2) = run("2");
    assert!(w1 == w2, "1 and 2 threads trained different weights");
    assert_eq!(r1["test"], r2["test"]);
    assert_eq!(r1["valid"], r2["valid"]);
}

#[test]
fn misspelt_monitor_is_a_config_error() {
    let tmp = tempfile::tempdir().unwrap();
    let o = mdrec(&[
        "train",
        "--dataset",
        "synthetic",
        "--epochs",
        "1",
        "--quiet",
        "--set",
        "dataset.synthetic_rows=2000",
        "--set",
        "train.monitor=\"auc_mean_cell\"",
        "--out",
        tmp.path().join("r").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("auc_mean_cell") && e.contains("auc_mean_cells"),
        "{e}"
    );
}

#[test]
fn analyze_writes_ia_spectra_di_and_entanglement_for_multi_embedding_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let me = tmp.path().join("stem");
    train_small(&me, "stem", &[]);
    let out = tmp.path().join("analysis");
    let o = mdrec(&[
        "analyze",
        "--run",
        me.to_str().unwrap(),
        "--rows",
        "500",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ia = std::fs::read_to_string(out.join("ia.csv")).unwrap();
    // STEM with two tasks: the shared table plus one table per task, for user and item ids.
    for t in [
        "user_id,user_id,",
        "user_id,user_id@u0,",
        "item_id,item_id@u1,",
    ] {
        assert!(ia.contains(t), "ia.csv lacks {t}:\n{ia}");
    }
    for f in [
        "spectrum_user_id.svg",
        "ia_frequency.svg",
        "di.svg",
        "utilisation_stem.svg",
        "summary.json",
    ] {
        let s = std::fs::read_to_string(out.join(f)).unwrap();
        assert!(!s.is_empty(), "{f} is empty");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let ia_all: Vec<f64> = summary["ia"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["group"] == "all")
        .map(|r| r["ia"].as_f64().unwrap())
        .collect();
    // IA lies between 1 (one direction) and the embedding width.
    assert!(
        ia_all.iter().all(|&v| (1.0..=16.0 + 1e-9).contains(&v)),
        "{ia_all:?}"
    );

    // A run trained with a per-domain setting is refused with a reason.
    let iso = tmp.path().join("mlp");
    assert!(train_synthetic(&iso, "mlp", "1").status.success());
    let o = mdrec(&[
        "analyze",
        "--run",
        iso.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("one-model run"), "{}", stderr(&o));
}

/// `mdrec train` of a small synthetic `model` run with a random split and extra `--set`s.
fn train_small(out: &Path, model: &str, sets: &[&str]) {
    let mut args = vec![
        "train",
        "--dataset",
        "synthetic",
        "--model",
        model,
        "--epochs",
        "1",
        "--quiet",
        "--set",
        "dataset.synthetic_rows=3000",
        "--set",
        "train.batch_size=256",
        "--set",
        "dataset.split=random",
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    args.extend(["--out", out.to_str().unwrap()]);
    let o = mdrec(&args);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// `run,…` rows of a CSV file written by analyze, split on commas.
fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

#[test]
fn analyze_measures_every_field_mutual_information_and_cross_run_entanglement() {
    let tmp = tempfile::tempdir().unwrap();
    let (mtl, refs) = (tmp.path().join("mmoe"), tmp.path().join("mdl"));
    train_small(&mtl, "mmoe", &[]);
    train_small(&refs, "mmoe", &["train.setting=\"mdl\""]);
    let out = tmp.path().join("analysis");
    let (ref_a, ref_b) = (
        format!("{}#click", refs.display()),
        format!("{}#like", refs.display()),
    );
    let o = mdrec(&[
        "analyze",
        "--run",
        mtl.to_str().unwrap(),
        "--rows",
        "600",
        "--mi-positions",
        "3",
        "--entangle-ref",
        &ref_a,
        "--entangle-ref",
        &ref_b,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    // IA and spectra of every field, not only user and item.
    let ia = csv_rows(&out.join("ia.csv"));
    for f in ["user_group", "item_cat", "tags", "domain_indicator"] {
        let row = ia
            .iter()
            .find(|r| r[1] == f && r[3] == "all")
            .unwrap_or_else(|| panic!("ia.csv lacks {f}: {ia:?}"));
        let v: f64 = row[5].parse().unwrap();
        assert!((1.0..=16.0 + 1e-9).contains(&v), "{row:?}");
        assert!(out.join(format!("spectrum_{f}.svg")).is_file());
    }
    // IA after each of MMoE's four experts' first layer, for every field; a field with n ids
    // spans at most n directions.
    let proj = csv_rows(&out.join("ia_projected.csv"));
    let experts: std::collections::BTreeSet<&str> = proj.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(
        experts.into_iter().collect::<Vec<_>>(),
        ["experts.0", "experts.1", "experts.2", "experts.3"]
    );
    for r in &proj {
        let (rows, v): (f64, f64) = (r[4].parse().unwrap(), r[5].parse().unwrap());
        assert!(v >= 1.0 - 1e-9 && v <= rows.min(128.0) + 1e-6, "{r:?}");
    }
    assert!(proj.iter().any(|r| r[2] == "item_cat"));
    assert!(out.join("ia_projected_mmoe.svg").is_file());

    // Mutual information: every field × task × (all + 3 domains); the domain indicator says
    // nothing within one domain.
    let mi = csv_rows(&out.join("mi.csv"));
    assert_eq!(mi.len(), 6 * 2 * 4, "{mi:?}");
    for r in mi
        .iter()
        .filter(|r| r[1] == "domain_indicator" && r[3] != "all")
    {
        assert_eq!(r[6].parse::<f64>().unwrap(), 0.0, "{r:?}");
    }
    let nmi_max = mi
        .iter()
        .map(|r| r[8].parse::<f64>().unwrap())
        .fold(0.0, f64::max);
    assert!(nmi_max > 0.0 && nmi_max <= 1.0, "{nmi_max}");
    assert!(out.join("mi_mmoe.svg").is_file());
    let beh = csv_rows(&out.join("mi_behaviour.csv"));
    let positions: std::collections::BTreeSet<&str> = beh.iter().map(|r| r[4].as_str()).collect();
    assert_eq!(positions.into_iter().collect::<Vec<_>>(), ["1", "2", "3"]);
    assert!(out.join("mi_position_mmoe.svg").is_file());

    // Cross-run entanglement: the conflict pairs sit in the bottom 40 % of reference A's
    // distances and the top 40 % of B's; the MMoE run is measured too.
    let ent = csv_rows(&out.join("entangle_refs.csv"));
    let rank = |run: &str| -> f64 {
        ent.iter()
            .find(|r| r[0] == run)
            .unwrap_or_else(|| panic!("no {run} in {ent:?}"))[3]
            .parse()
            .unwrap()
    };
    assert!(rank("mdl#click") <= 0.4, "{}", rank("mdl#click"));
    assert!(rank("mdl#like") > 0.6, "{}", rank("mdl#like"));
    let r = rank("mmoe");
    assert!((0.0..=1.0).contains(&r));
    let conflicts: usize = ent
        .iter()
        .filter(|r| r[0] == "mmoe")
        .map(|r| r[7].parse::<usize>().unwrap())
        .sum();
    assert!(conflicts > 0, "{ent:?}");
    assert!(out.join("entangle_refs_mmoe.svg").is_file());

    // A multi-model reference must name its part; a wrong part is named with the choices.
    for (arg, want) in [
        (refs.display().to_string(), "pick one"),
        (format!("{}#ctr", refs.display()), "no model `ctr`"),
    ] {
        let o = mdrec(&[
            "analyze",
            "--run",
            mtl.to_str().unwrap(),
            "--entangle-ref",
            &arg,
            "--entangle-ref",
            &ref_b,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(
            stderr(&o).contains(want) && stderr(&o).contains("click"),
            "{}",
            stderr(&o)
        );
    }
    // One reference alone, or a category field that does not exist: an error that says so.
    let mtl_s = mtl.to_str().unwrap();
    let out_s = out.to_str().unwrap();
    for (args, want) in [
        (
            vec![
                "analyze",
                "--run",
                mtl_s,
                "--entangle-ref",
                &ref_a,
                "--out",
                out_s,
            ],
            "exactly twice",
        ),
        (
            vec![
                "analyze",
                "--run",
                mtl_s,
                "--category-field",
                "genres",
                "--out",
                out_s,
            ],
            "no embedded field `genres` (--category-field)",
        ),
        (
            vec![
                "analyze",
                "--run",
                mtl_s,
                "--mi-positions",
                "0",
                "--out",
                out_s,
            ],
            "mi_positions must be ≥ 1",
        ),
    ] {
        let o = mdrec(&args);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(want), "{want}: {}", stderr(&o));
    }
}

#[test]
fn speed_zoo_writes_one_row_per_model_and_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("speed.md");
    let o = mdrec(&[
        "speed",
        "--workload",
        "zoo",
        "--dataset",
        "synthetic",
        "--models",
        "mmoe,stem",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&out).unwrap();
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("| ")).collect();
    // Header, the engine workload, then one row per requested model in order.
    assert_eq!(rows.len(), 4, "{text}");
    assert!(rows[1].starts_with("| engine (MMoE"));
    assert!(
        rows[2].starts_with("| mmoe on synthetic") && rows[3].starts_with("| stem on synthetic")
    );
    assert!(text.contains("git commit:") && text.contains("threads:"));
    // The binary counts heap allocations: every timed row reports a count and a volume per
    // training step (a training step allocates, so neither is zero).
    assert!(rows[0].contains("allocations / step"), "{text}");
    for r in &rows[1..] {
        let cells: Vec<&str> = r.split('|').map(str::trim).collect();
        let n: f64 = cells[8]
            .parse()
            .unwrap_or_else(|_| panic!("allocations in {r}"));
        let mib: f64 = cells[9].parse().unwrap_or_else(|_| panic!("MiB in {r}"));
        assert!(n >= 1.0 && mib > 0.0, "{r}");
    }
    // An unknown model is refused before anything is timed.
    let o = mdrec(&[
        "speed",
        "--workload",
        "zoo",
        "--dataset",
        "synthetic",
        "--models",
        "nope",
    ]);
    assert!(!o.status.success() && stderr(&o).contains("unknown model `nope`"));
}

#[test]
fn speed_domains_reports_relative_epoch_time_per_domain_count() {
    let o = mdrec(&[
        "speed",
        "--workload",
        "domains",
        "--models",
        "mmoe",
        "--domains",
        "2,5",
        "--steps",
        "1",
        "--warmup",
        "0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("| mmoe | 2 |") && text.contains("| mmoe | 5 |"),
        "{text}"
    );
    // | model | domains | train samples/s | time relative to the first count |: the relative
    // time of a count is the first count's rate over its own.
    let row = |d: &str| -> (f64, f64) {
        let l = text
            .lines()
            .find(|l| l.starts_with(&format!("| mmoe | {d} |")))
            .unwrap_or_else(|| panic!("no row for {d} domains: {text}"));
        let c: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
        let rate: f64 = c[2].parse().unwrap();
        let rel: f64 = c[3].trim_end_matches('×').parse().unwrap();
        (rate, rel)
    };
    let ((r2, rel2), (r5, rel5)) = (row("2"), row("5"));
    assert!(r2 > 0.0 && r5 > 0.0, "{text}");
    assert_eq!(rel2, 1.0, "{text}");
    // rates are printed rounded to 1 sample/s, ratios to 0.01
    let want = r2 / r5;
    let slack = 0.005 + want * (0.5 / r2 + 0.5 / r5) + 1e-9;
    assert!(
        (rel5 - want).abs() <= slack,
        "5 domains: {rel5}× vs {r2}/{r5} = {want}: {text}"
    );
    // The two counts really ran on datasets with those numbers of domains.
    assert!(
        text.contains("2 domains") && text.contains("5 domains"),
        "{text}"
    );
    let o = mdrec(&["speed", "--workload", "domains", "--domains", "0"]);
    assert!(!o.status.success() && stderr(&o).contains("--domains"));
}

#[test]
fn analyze_draws_aread_mask_overlap_per_block() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("aread");
    let mut args = vec![
        "train",
        "--dataset",
        "synthetic",
        "--model",
        "aread",
        "--epochs",
        "1",
        "--quiet",
    ];
    let sets = [
        "dataset.synthetic_rows=3000",
        "dataset.synthetic_domains=4",
        "model.mmoe_experts=2",
        "model.expert_dims=[8]",
        "model.levels=[2, 4]",
        "model.level_dims=[[8], [4]]",
        "model.hemp.warm_up_interval=4",
        "model.hemp.regroup_interval=6",
        "model.hemp.reference_batch_size=128",
        "model.hemp.update_steps=2",
        "model.hemp.eval_batches=1",
        "model.hemp.candidates=2",
        "train.batch_size=128",
        "train.max_steps_per_epoch=8",
    ];
    for s in &sets {
        args.extend(["--set", s]);
    }
    args.extend(["--out", run.to_str().unwrap()]);
    let o = mdrec(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = tmp.path().join("analysis");
    let o = mdrec(&[
        "analyze",
        "--run",
        run.to_str().unwrap(),
        "--rows",
        "300",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = std::fs::read_to_string(out.join("mask_overlap.csv")).unwrap();
    // Blocks: input edges, levels 1→2, outputs; 4 × 4 domain pairs each; a domain with itself is 1.
    let blocks: std::collections::BTreeSet<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap())
        .collect();
    assert!(!blocks.is_empty());
    assert_eq!(csv.lines().count() - 1, blocks.len() * 16, "{csv}");
    assert!(csv.lines().any(|l| l.contains(",d2,d2,1")), "{csv}");
    let svgs = std::fs::read_dir(&out)
        .unwrap()
        .filter(|e| {
            let n = e.as_ref().unwrap().file_name().into_string().unwrap();
            n.starts_with("mask_overlap_") && n.ends_with(".svg")
        })
        .count();
    assert_eq!(svgs, blocks.len());
}

#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    // `mdrec models | head -0`: the reader is gone before mdrec writes. The pipe is the stdin
    // of a process that has already exited, so no process holds its read end and mdrec's very
    // first write fails with a broken pipe, whatever the timing.
    let mut reader = Command::new("true")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run true");
    let write_end = reader.stdin.take().unwrap();
    assert!(reader.wait().unwrap().success());
    let o = Command::new(env!("CARGO_BIN_EXE_mdrec"))
        .arg("models")
        .stdout(write_end)
        .output()
        .expect("run mdrec");
    assert!(o.status.success(), "{:?}: {}", o.status, stderr(&o));
    assert!(stderr(&o).is_empty(), "not quiet: {}", stderr(&o));
}

/// A CSV dataset with a TIM behaviour sequence: `mdrec train` reads it, `mdrec predict` scores
/// records with the same lists, and `mdrec analyze` reports the learned temporal embeddings
/// once per table (not once per slot).
#[test]
fn a_tim_sequence_trains_predicts_and_analyzes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let schema = dir.join("schema.toml");
    std::fs::write(
        &schema,
        r#"
time = "ts"
group = "user"
[domain]
column = "scene"
[[fields]]
name = "user"
kind = "categorical"
roles = ["user"]
[[fields]]
name = "item"
kind = "categorical"
roles = ["item"]
[[fields]]
name = "hist"
kind = "sequence"
table = "item"
max_len = 4
time_column = "hist_ts"
encoder = "tim"
roles = ["user"]
[[tasks]]
name = "click"
column = "click"
rule = "binary"
"#,
    )
    .unwrap();
    // click when the item is in the history: TIM can learn it
    let mut text = String::from("user,item,scene,ts,hist,hist_ts,click\n");
    let mut recs = text.clone();
    for i in 0..1200u64 {
        let item = (i * 7) % 13;
        let len = i % 5;
        let hist: Vec<String> = (0..len).map(|k| ((i + 3 * k) % 13).to_string()).collect();
        let times: Vec<String> = (0..len)
            .map(|k| (1000 + i - 40 * (len - k)).to_string())
            .collect();
        let click = hist.contains(&item.to_string());
        let line = format!(
            "u{},{item},{},{},{},{},{}\n",
            i % 17,
            if i % 2 == 0 { "feed" } else { "search" },
            1000 + i,
            hist.join("|"),
            times.join("|"),
            u8::from(click)
        );
        if i < 3 {
            recs.push_str(&line);
        }
        text.push_str(&line);
    }
    let data = dir.join("seq.csv");
    std::fs::write(&data, text).unwrap();
    let cfg = csv_config(dir, &schema, &data, "random");
    let run = dir.join("run");
    let o = mdrec(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--model",
        "mmoe",
        "--epochs",
        "2",
        "--quiet",
        "--set",
        "train.batch_size=128",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let recs_path = dir.join("recs.csv");
    std::fs::write(&recs_path, recs).unwrap();
    let o = mdrec(&[
        "predict",
        "--run",
        run.to_str().unwrap(),
        "--input",
        recs_path.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 4);
    let out = dir.join("analysis");
    let o = mdrec(&[
        "analyze",
        "--run",
        run.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--rows",
        "200",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = csv_rows(&out.join("tim_temporal.csv"));
    let kinds = |k: &str| rows.iter().filter(|r| r[1] == "hist" && r[2] == k).count();
    assert_eq!(kinds("position"), 4, "{rows:?}");
    assert!(kinds("interval") >= 2, "{rows:?}");
    assert!(rows.iter().all(|r| r[5].parse::<f64>().unwrap() > 0.0));
    let svg = std::fs::read_dir(&out).unwrap().any(|e| {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        n.starts_with("tim_temporal_") && n.ends_with(".svg")
    });
    assert!(svg, "no tim_temporal_<run>.svg");
    // one IA row per table of the sequence, at its first slot
    let ia = csv_rows(&out.join("ia.csv"));
    let fields: Vec<&str> = ia.iter().map(|r| r[1].as_str()).collect();
    assert!(
        fields.contains(&"hist.0") && fields.contains(&"hist.dt.0"),
        "{fields:?}"
    );
    assert!(!fields.contains(&"hist.1"), "{fields:?}");
}

/// The domains of a run's test report.
fn test_domains(run: &Path) -> std::collections::BTreeSet<String> {
    report(run)["test"]["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["domain"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn precluster_groups_a_runs_domains_into_a_domain_map_that_trains() {
    let tmp = tempfile::tempdir().unwrap();
    let dcn = tmp.path().join("dcn");
    let o = train_synthetic(&dcn, "dcn", "3");
    assert!(o.status.success(), "{}", stderr(&o));
    let n_domains = test_domains(&dcn).len();
    assert!(n_domains >= 3, "{n_domains}");
    let run = dcn.to_str().unwrap();
    let o = mdrec(&["precluster", "--run", run, "--clusters", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        out.lines().filter(|l| l.starts_with("| ")).count(),
        n_domains + 1
    );
    let p: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dcn.join("precluster.json")).unwrap())
            .unwrap();
    let clusters: std::collections::BTreeSet<u64> = p["cluster"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .collect();
    assert_eq!(clusters, [0, 1].into(), "two non-empty clusters");
    let d = &p["distance"];
    assert_eq!(d[0][0].as_f64(), Some(0.0));
    assert_eq!(d[0][1], d[1][0], "symmetric");
    // the same run gives the same clusters
    let again = mdrec(&["precluster", "--run", run, "--clusters", "2", "--out", run]);
    assert!(again.status.success());
    assert_eq!(again.stdout, o.stdout);
    // the map trains a model on the clusters as its domains
    let toml = dcn.join("precluster.toml");
    let mmoe = tmp.path().join("mmoe");
    #[rustfmt::skip]
    let o = mdrec(&[
        "train", "--config", toml.to_str().unwrap(), "--dataset", "synthetic", "--model", "mmoe",
        "--epochs", "1", "--quiet", "--set", "dataset.synthetic_rows=4000",
        "--out", mmoe.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let domains = test_domains(&mmoe);
    assert_eq!(domains.len(), 2, "{domains:?}");
    // more clusters than domains: a named error
    let e = mdrec(&["precluster", "--run", run, "--clusters", "99"]);
    assert!(!e.status.success());
    assert!(stderr(&e).contains("--clusters"), "{}", stderr(&e));
}
