//! The `[dataset]` config section: typed values, accepted-value errors, validation that names
//! the key without reading files, and the recipe table's defaults (also for aliases).

use mdrec_data::*;

fn parse(toml_text: &str) -> Result<DatasetConfig, String> {
    toml::from_str(toml_text).map_err(|e| e.to_string())
}

fn invalid(toml_text: &str) -> String {
    let c = parse(toml_text).unwrap_or_else(|e| panic!("{toml_text}: {e}"));
    c.validate()
        .err()
        .unwrap_or_else(|| panic!("{toml_text}: expected an error"))
        .to_string()
}

#[test]
fn serialized_form_is_unchanged() {
    // Resolved (what a run directory records), the split is spelled out; unset, it is null and
    // means the dataset's own protocol.
    let v = serde_json::to_value(DatasetConfig::default().resolved()).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "name": "synthetic", "data_dir": null, "split": "m3oe", "domain": null,
            "row_order": null, "ratios": [0.8, 0.1, 0.1], "time_column": null,
            "valid_from": null, "test_from": null, "schema": null, "files": [],
            "cache_dir": null, "synthetic_rows": null, "synthetic_domains": null,
            "synthetic_domain_skew": null
        })
    );
    let c = parse("name = \"movielens-1m\"\ndomain = \"genre\"\nrow_order = \"ratings\"\nsplit = \"random\"\n")
        .unwrap();
    let v = serde_json::to_value(&c).unwrap();
    assert_eq!(v["name"], "movielens-1m");
    assert_eq!(v["domain"], "genre");
    assert_eq!(v["row_order"], "ratings");
    assert_eq!(v["split"], "random");
    let back: DatasetConfig = serde_json::from_value(v).unwrap();
    assert_eq!(back, c);
}

#[test]
fn unknown_values_list_the_accepted_ones() {
    let e = parse("split = \"rnd\"").unwrap_err();
    assert!(
        e.contains(
            "dataset.split: unknown value \"rnd\"; expected one of: m3oe, sequential, random, time, aread"
        ),
        "{e}"
    );
    let e = parse("name = \"movielens\"").unwrap_err();
    assert!(
        e.contains("dataset.name: unknown value \"movielens\"; expected one of: movielens-1m (alias ml-1m), synthetic, csv, aliccp, amazon"),
        "{e}"
    );
    let e = parse("name = \"movielens-1m\"\ndomain = \"genres\"").unwrap_err();
    assert!(
        e.contains("dataset.domain") && e.contains("age, genre"),
        "{e}"
    );
    let e = parse("name = \"movielens-1m\"\nrow_order = \"pandas2\"").unwrap_err();
    assert!(
        e.contains("dataset.row_order") && e.contains("merged, ratings"),
        "{e}"
    );
    let e = parse("nam = \"csv\"").unwrap_err();
    assert!(e.contains("unknown field `nam`"), "{e}");
}

#[test]
fn alias_gets_the_same_defaults_as_the_name() {
    let dir = "data_dir = \"/nonexistent-ml\"\n";
    let a = parse(&format!("name = \"ml-1m\"\n{dir}")).unwrap();
    let b = parse(&format!("name = \"movielens-1m\"\n{dir}")).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.name, DatasetName::MovieLens1m);
    a.validate().unwrap(); // no file is read
    let r = a.resolved();
    assert_eq!(r.domain, Some(MovieLensDomain::Age));
    assert_eq!(r.row_order, Some(MovieLensOrder::Merged));
    assert_eq!(
        a.cache_dir(),
        Some(std::path::PathBuf::from("/nonexistent-ml/.mdrec-cache"))
    );
    assert_eq!(
        a.source(1).unwrap(),
        DatasetSource::MovieLens1m {
            dir: "/nonexistent-ml".into(),
            domain: MovieLensDomain::Age,
            row_order: MovieLensOrder::Merged,
            history: 0,
            history_encoder: Default::default(),
        }
    );
    // other datasets keep their options unset; the split is spelled out
    assert_eq!(
        DatasetConfig::default().resolved(),
        DatasetConfig {
            split: Some(SplitName::M3oe),
            ..DatasetConfig::default()
        }
    );
    assert_eq!(
        serde_json::to_value(DatasetConfig::default()).unwrap()["split"],
        serde_json::Value::Null
    );
}

#[test]
fn validation_names_the_key() {
    let ml = "name = \"movielens-1m\"\ndata_dir = \"/x\"\n";
    for (cfg, want) in [
        (
            "domain = \"genre\"",
            "dataset.domain applies to movielens-1m only, not to `synthetic`",
        ),
        (
            "row_order = \"ratings\"",
            "dataset.row_order applies to movielens-1m only",
        ),
        (
            "name = \"amazon\"\ndata_dir = \"/x\"\nsplit = \"aread\"\nsynthetic_domain_skew = 1.0",
            "dataset.synthetic_domain_skew applies to synthetic only",
        ),
        (
            "synthetic_domain_skew = -1.0",
            "domain_skew must be finite and non-negative",
        ),
        (
            "synthetic_rows = 0",
            "dataset.synthetic_rows must be in 1..2^31, got 0",
        ),
        (
            "synthetic_domains = 0",
            "dataset.synthetic_domains must be in 1..=1024",
        ),
        (
            "synthetic_domain_skew = nan",
            "dataset.synthetic_domain_skew must be finite",
        ),
        (
            "name = \"movielens-1m\"",
            "dataset.data_dir: dataset movielens-1m needs --data-dir DIR",
        ),
        ("name = \"amazon\"\nsplit = \"aread\"", "preprocess.py"),
        (
            "split = \"time\"",
            "needs dataset.time_column, dataset.valid_from and dataset.test_from",
        ),
        (
            "time_column = \"t\"",
            "dataset.time_column applies to split = \"time\" only",
        ),
        (
            "split = \"time\"\ntime_column = \"t\"\nvalid_from = 5\ntest_from = 2",
            "dataset.valid_from (5) is after dataset.test_from (2)",
        ),
        (
            "ratios = [0.8, 0.1, 0.2]",
            "dataset.ratios: split ratios must be non-negative and sum to 1",
        ),
        ("ratios = [0.8, nan, 0.2]", "dataset.ratios"),
        (
            "name = \"csv\"",
            "dataset.schema: dataset csv needs dataset.schema",
        ),
        (
            "name = \"csv\"\nschema = \"s.toml\"",
            "dataset.files: dataset csv needs dataset.files",
        ),
        ("files = [\"a.csv\"]", "dataset.files applies to csv only"),
        (
            "split = \"aread\"",
            "`aread` is the protocol of datasets aliccp, aliccp-raw-aread, amazon and amazon-raw, not of `synthetic`",
        ),
        (&format!("{ml}split = \"aread\""), "not of `movielens-1m`"),
    ] {
        let e = invalid(cfg);
        assert!(e.contains(want), "{cfg}: {e}");
    }
    let e = invalid("name = \"aliccp\"\ndata_dir = \"/x\"\nsplit = \"m3oe\"");
    assert!(
        e.contains("dataset.split") && e.contains("split = \"aread\"") && e.contains("train_tag"),
        "{e}"
    );
    // Unset, the split is the dataset's own protocol.
    for (name, split) in [
        ("aliccp", SplitName::Aread),
        ("amazon", SplitName::Aread),
        ("aliexpress", SplitName::Official),
        ("movielens-1m", SplitName::M3oe),
    ] {
        let c = parse(&format!("name = \"{name}\"\ndata_dir = \"/x\"")).unwrap();
        c.validate().unwrap();
        assert_eq!(
            (c.split(), c.resolved().split),
            (split, Some(split)),
            "{name}"
        );
    }
}

#[test]
fn splits_follow_the_table() {
    let c = parse("name = \"amazon\"\ndata_dir = \"/x\"\nsplit = \"aread\"").unwrap();
    c.validate().unwrap();
    assert_eq!(
        c.split_spec(1).unwrap(),
        SplitSpec::TimeQuantiles {
            column: "timestamp".into(),
            valid_q: 0.9,
            test_q: 0.95
        }
    );
    let c = parse("name = \"aliccp\"\ndata_dir = \"/x\"\nsplit = \"aread\"").unwrap();
    assert_eq!(
        c.split_spec(1).unwrap(),
        SplitSpec::ByTime {
            column: "train_tag".into(),
            valid_from: 1,
            test_from: 2
        }
    );
    let c = parse("name = \"aliccp\"\ndata_dir = \"/x\"\nsplit = \"random\"").unwrap();
    assert!(matches!(
        c.split_spec(1).unwrap(),
        SplitSpec::Random { seed: 1, .. }
    ));
    assert_eq!(
        DatasetConfig::default().split_spec(4).unwrap(),
        SplitSpec::Sequential {
            ratios: [0.8, 0.1, 0.1]
        }
    );
    for r in &RECIPES {
        assert!(r.splits.contains(&r.default_split));
    }
}
