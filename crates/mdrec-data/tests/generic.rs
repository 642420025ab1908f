//! The generic path: vocabularies, transforms, splits, errors, determinism, cache, CSV.

use std::path::Path;

use mdrec_data::*;

/// A table from columns of values; rows come from "mem.csv" lines 2...
fn table(cols: &[(&str, Vec<&str>)]) -> RawTable {
    let n = cols[0].1.len();
    let columns = cols
        .iter()
        .map(|(name, vals)| {
            let mut b = ColumnBuilder::new(*name);
            for v in vals {
                b.push(v);
            }
            b.finish()
        })
        .collect();
    RawTable {
        columns,
        files: vec!["mem.csv".into()],
        row_file: vec![0; n],
        row_line: (2..n as u32 + 2).collect(),
    }
}

const SPEC: &str = r#"
group = "u"
[domain]
column = "d"
[[fields]]
name = "c"
kind = "categorical"
min_count = 2
[[fields]]
name = "u"
kind = "categorical"
[[fields]]
name = "tags"
kind = "multi_hot"
max_len = 2
[[fields]]
name = "x"
kind = "numeric"
transform = "min_max"
[[tasks]]
name = "y"
column = "y"
rule = "binary"
"#;

// 8 rows, sequential 0.75/0.125/0.125 -> train 0..6, valid 6, test 7
fn base() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("c", vec!["b", "a", "b", "c", "a", "b", "d", "a"]),
        ("u", vec!["10", "9", "2", "10", "9", "2", "77", "10"]),
        (
            "tags",
            vec!["p|q|r", "", "q", "p", "s|p", "q", "zz|p", "q|zz"],
        ),
        ("x", vec!["1", "3", "5", "1", "2", "4", "9", "-1"]),
        ("d", vec!["1", "0", "1", "0", "1", "0", "0", "1"]),
        ("y", vec!["1", "0", "0", "1", "1", "0", "1", "0"]),
    ]
}

fn split() -> SplitSpec {
    SplitSpec::Sequential {
        ratios: [0.75, 0.125, 0.125],
    }
}

fn run(cols: Vec<(&str, Vec<&str>)>, spec: &str) -> Result<Prepared, DataError> {
    let spec = SchemaSpec::from_toml_str(spec, "spec.toml")?;
    prepare_table(&spec, "spec.toml", &table(&cols), &split(), "mem")
}

#[test]
fn vocab_ids_pad_oov_min_count_and_fit_on_train_only() {
    let p = run(base(), SPEC).unwrap();
    // c: train counts a=2, b=3, c=1; min_count 2 keeps a, b -> 2, 3; c -> OOV; d (valid only) -> OOV
    assert_eq!(p.vocabs.tables["c"].values, ["a", "b"]);
    assert_eq!(p.train.cat[0], [3, 2, 3, 1, 2, 3]);
    assert_eq!(p.valid.cat[0], [OOV]);
    assert_eq!(p.test.cat[0], [2]);
    assert_eq!(p.schema.fields[0].vocab_size, 4);
    assert_eq!(p.schema.fields[0].n_oov_train, 1);
    // u: integers sort numerically: 2, 9, 10; 77 only in valid -> OOV
    assert_eq!(p.vocabs.tables["u"].values, ["2", "9", "10"]);
    assert_eq!(p.train.cat[1], [4, 3, 2, 4, 3, 2]);
    assert_eq!(p.valid.cat[1], [OOV]);
    assert_eq!(p.vocabs.tables["u"].id_of("9"), 3);
    assert_eq!(p.vocabs.tables["u"].value(4), Some("10"));
    assert_eq!(p.vocabs.tables["u"].value(PAD), None);
    // group keys are the raw integer ids (also for values unseen in train)
    assert_eq!(p.valid.group, [77]);
    // multi-hot: p q r s (zz unseen in train), max_len 2 truncates "p|q|r" to p, q
    assert_eq!(p.vocabs.tables["tags"].values, ["p", "q", "s"]);
    assert_eq!(p.train.multi[0].offsets, [0, 2, 2, 3, 4, 6, 7]);
    assert_eq!(p.train.multi[0].values, [2, 3, 3, 2, 4, 2, 3]);
    assert_eq!(p.valid.multi[0].values, [OOV, 2]);
    // domains: auto map from sorted train values
    assert_eq!(p.schema.domains, ["0", "1"]);
    assert_eq!(p.train.domain, [1, 0, 1, 0, 1, 0]);
    // schema order helpers
    assert_eq!(p.schema.multi_hot_fields()[0].name, "tags");
    assert_eq!(p.schema.n_domains(), 2);
    assert_eq!(p.schema.n_tasks(), 1);
    // same inputs -> same result
    let q = run(base(), SPEC).unwrap();
    assert_eq!(p.schema.to_json_pretty(), q.schema.to_json_pretty());
    assert_eq!(p.vocabs, q.vocabs);
}

#[test]
fn numeric_stats_fit_on_train_and_not_clipped() {
    let p = run(base(), SPEC).unwrap();
    let st = p.schema.fields[3].stats.unwrap();
    assert_eq!((st.min, st.max), (1.0, 5.0));
    assert!((st.mean - 16.0 / 6.0).abs() < 1e-12);
    assert_eq!(p.train.num[0], [0.0, 0.5, 1.0, 0.0, 0.25, 0.75]);
    assert_eq!(p.valid.num[0], [2.0]);
    assert_eq!(p.test.num[0], [-0.5]);
    let spec = SPEC.replace("min_max", "standard");
    let p = run(base(), &spec).unwrap();
    let st = p.schema.fields[3].stats.unwrap();
    assert!((p.train.num[0][2] as f64 - (5.0 - st.mean) / st.std).abs() < 1e-6);
    let spec = SPEC.replace("min_max", "log1p");
    let mut c = base();
    c[3].1[7] = "3";
    let p = run(c, &spec).unwrap();
    assert!((p.train.num[0][1] - 4f32.ln()).abs() < 1e-6);
    assert!((p.test.num[0][0] - 4f32.ln()).abs() < 1e-6);
}

#[test]
fn bad_values_are_errors_with_file_line_column() {
    let mut c = base();
    c[3].1[4] = "NaN";
    let e = run(c, SPEC).unwrap_err().to_string();
    assert_eq!(e, "mem.csv:6: field `x`: non-finite number `NaN`");
    let mut c = base();
    c[3].1[6] = "abc";
    let e = run(c, SPEC).unwrap_err().to_string();
    assert_eq!(e, "mem.csv:8: field `x`: not a number: `abc`");
    let mut c = base();
    c[5].1[7] = "2";
    let e = run(c, SPEC).unwrap_err().to_string();
    assert!(
        e.starts_with("mem.csv:9: field `y`:") && e.contains("0 or 1"),
        "{e}"
    );
    let mut c = base();
    c[2].1[2] = "p||q";
    let e = run(c, SPEC).unwrap_err().to_string();
    assert!(e.starts_with("mem.csv:4: field `tags`: empty value"), "{e}");
    // log1p of -1 (row 7, line 9)
    let e = run(base(), &SPEC.replace("min_max", "log1p"))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("mem.csv:9: field `x`:"), "{e}");
    // valid domain unseen in train
    let mut c = base();
    c[4].1[6] = "5";
    let e = run(c, SPEC).unwrap_err().to_string();
    assert!(
        e.starts_with("mem.csv:8: field `d`: domain value `5`"),
        "{e}"
    );
    // missing column
    let e = run(
        base(),
        &SPEC.replace("name = \"x\"", "name = \"x\"\ncolumn = \"xx\""),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("column `xx` not found") && e.contains("available columns"),
        "{e}"
    );
}

#[test]
fn empty_domain_and_single_class_are_errors() {
    let spec = SPEC.replace("column = \"d\"", "column = \"d\"\nmap = { \"0\" = 0, \"1\" = 1, \"2\" = 2 }\nnames = [\"a\", \"b\", \"empty\"]");
    let e = run(base(), &spec).unwrap_err().to_string();
    assert!(
        e.contains("domain `empty`") && e.contains("training split"),
        "{e}"
    );
    let mut c = base();
    c[5].1 = vec!["1", "1", "1", "1", "1", "1", "0", "0"];
    let e = run(c, SPEC).unwrap_err().to_string();
    assert!(e.contains("task `y`") && e.contains("single class"), "{e}");
}

#[test]
fn ratio_splits_sizes_disjoint_deterministic() {
    let d = generate(&SyntheticConfig::tiny());
    let n = d.table.n_rows();
    assert_eq!(n, 3000);
    let seq = split_rows(
        &d.table,
        &SplitSpec::Sequential {
            ratios: [0.8, 0.1, 0.1],
        },
    )
    .unwrap();
    assert_eq!(seq[0], (0..2400).collect::<Vec<u32>>());
    assert_eq!(seq[1], (2400..2700).collect::<Vec<u32>>());
    let rs = SplitSpec::Random {
        ratios: [0.8, 0.1, 0.1],
        seed: 5,
    };
    let a = split_rows(&d.table, &rs).unwrap();
    assert_eq!(a, split_rows(&d.table, &rs).unwrap());
    assert_ne!(
        a,
        split_rows(
            &d.table,
            &SplitSpec::Random {
                ratios: [0.8, 0.1, 0.1],
                seed: 6
            }
        )
        .unwrap()
    );
    assert_eq!([a[0].len(), a[1].len(), a[2].len()], [2400, 300, 300]);
    let mut all: Vec<u32> = a.concat();
    for s in &a {
        assert!(s.windows(2).all(|w| w[0] < w[1]));
    }
    all.sort_unstable();
    assert_eq!(all, (0..n as u32).collect::<Vec<_>>());
    // cumulative floor on the MovieLens size
    assert_eq!(
        mdrec_data::split::ratio_bounds(1_000_209, &[0.8, 0.1, 0.1]),
        (800_167, 900_188)
    );
    let bt = split_rows(
        &d.table,
        &SplitSpec::ByTime {
            column: "timestamp".into(),
            valid_from: 2000,
            test_from: 2500,
        },
    )
    .unwrap();
    assert_eq!([bt[0].len(), bt[1].len(), bt[2].len()], [2000, 500, 500]);
    assert!(split_rows(
        &d.table,
        &SplitSpec::Sequential {
            ratios: [0.8, 0.1, 0.2]
        }
    )
    .is_err());
}

fn syn_req(cache: Option<&Path>) -> PrepareRequest {
    PrepareRequest {
        source: DatasetSource::Synthetic(SyntheticConfig::tiny()),
        split: SplitSpec::Random {
            ratios: [0.8, 0.1, 0.1],
            seed: 3,
        },
        cache_dir: cache.map(Path::to_path_buf),
    }
}

#[test]
fn schema_json_byte_identical_and_batches() {
    let a = prepare(&syn_req(None)).unwrap();
    let b = prepare(&syn_req(None)).unwrap();
    assert_eq!(a.schema.to_json_pretty(), b.schema.to_json_pretty());
    assert_eq!(a.schema.hash, b.schema.hash);
    assert_eq!(a.schema.hash.len(), 16);
    assert_eq!(a.train, b.train);
    let mut batch = Batch::default();
    let order = epoch_order(a.train.len(), true, 9, 0);
    a.train.fill_batch(&order[..64], &mut batch);
    let nc = a.schema.categorical_fields().len();
    assert_eq!(batch.cat.len(), 64 * nc);
    assert_eq!(batch.labels.len(), 64 * a.schema.n_tasks());
    assert_eq!(batch.multi.len(), 1);
    let r = order[5] as usize;
    assert_eq!(batch.cat[5 * nc + 1], a.train.cat[1][r]);
    let j = &a.train.multi[0];
    let m = &batch.multi[0];
    assert_eq!(
        &m.values[m.offsets[5] as usize..m.offsets[6] as usize],
        &j.values[j.offsets[r] as usize..j.offsets[r + 1] as usize]
    );
    let other = a.schema.clone();
    let mut spec2 = other.spec.clone();
    spec2.fields[0].dim = Some(4);
    assert_ne!(
        Schema::new(spec2, other.fields, other.domains, other.tasks).hash,
        a.schema.hash
    );
}

#[test]
fn cache_hit_miss_and_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let a = prepare(&syn_req(Some(dir.path()))).unwrap();
    let ca = a.cache.clone().unwrap();
    assert!(!ca.hit);
    let b = prepare(&syn_req(Some(dir.path()))).unwrap();
    assert!(b.cache.as_ref().unwrap().hit);
    assert_eq!(
        (&a.schema, &a.vocabs, &a.train, &a.valid, &a.test, &a.source),
        (&b.schema, &b.vocabs, &b.train, &b.valid, &b.test, &b.source)
    );
    // a different split is a different key
    let mut r = syn_req(Some(dir.path()));
    r.split = SplitSpec::Random {
        ratios: [0.8, 0.1, 0.1],
        seed: 4,
    };
    assert!(!prepare(&r).unwrap().cache.unwrap().hit);
    // truncated -> detected and rebuilt
    let bytes = std::fs::read(&ca.path).unwrap();
    std::fs::write(&ca.path, &bytes[..bytes.len() - 100]).unwrap();
    let c = prepare(&syn_req(Some(dir.path()))).unwrap();
    let cc = c.cache.unwrap();
    assert!(!cc.hit);
    assert!(cc.rebuilt_reason.unwrap().contains("truncated"));
    assert_eq!(std::fs::read(&ca.path).unwrap(), bytes);
    // one flipped byte in the body -> checksum mismatch, rebuilt
    let mut bad = bytes.clone();
    let k = bad.len() / 2;
    bad[k] ^= 0x40;
    std::fs::write(&ca.path, &bad).unwrap();
    let c = prepare(&syn_req(Some(dir.path()))).unwrap();
    assert!(c
        .cache
        .unwrap()
        .rebuilt_reason
        .unwrap()
        .contains("checksum"));
    assert!(
        prepare(&syn_req(Some(dir.path())))
            .unwrap()
            .cache
            .unwrap()
            .hit
    );
}

#[test]
fn csv_roundtrip_equals_synthetic_and_cache_keys_follow_content() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SyntheticConfig::tiny();
    let d = generate(&cfg);
    let csv = dir.path().join("syn.csv");
    write_csv(&d.table, &csv).unwrap();
    let schema = dir.path().join("schema.toml");
    std::fs::write(&schema, synthetic_schema_toml(&cfg)).unwrap();
    let split = SplitSpec::Sequential {
        ratios: [0.8, 0.1, 0.1],
    };
    let cache = dir.path().join("cache");
    let creq = PrepareRequest {
        source: DatasetSource::Csv {
            schema: schema.clone(),
            files: vec![csv.clone()],
            delimiter: b',',
        },
        split: split.clone(),
        cache_dir: Some(cache.clone()),
    };
    let a = prepare(&creq).unwrap();
    let s = prepare(&PrepareRequest {
        source: DatasetSource::Synthetic(cfg.clone()),
        split,
        cache_dir: None,
    })
    .unwrap();
    assert_eq!(a.schema.to_json_pretty(), s.schema.to_json_pretty());
    assert_eq!((&a.train, &a.valid, &a.test), (&s.train, &s.valid, &s.test));
    assert!(prepare(&creq).unwrap().cache.unwrap().hit);
    // change one source byte -> miss
    let mut text = std::fs::read_to_string(&csv).unwrap();
    let pos = text.rfind(",1\n").or_else(|| text.rfind(",0\n")).unwrap();
    text.replace_range(
        pos + 1..pos + 2,
        if &text[pos + 1..pos + 2] == "1" {
            "0"
        } else {
            "1"
        },
    );
    std::fs::write(&csv, &text).unwrap();
    assert!(!prepare(&creq).unwrap().cache.unwrap().hit);
    // change the schema -> miss
    let t = synthetic_schema_toml(&cfg).replace("max_len = 4", "max_len = 3");
    std::fs::write(&schema, t).unwrap();
    assert!(!prepare(&creq).unwrap().cache.unwrap().hit);
    // ragged row -> error with file and line
    let mut lines: Vec<&str> = text.lines().collect();
    lines[4] = "1,2,3";
    std::fs::write(&csv, lines.join("\n")).unwrap();
    let e = prepare(&creq).unwrap_err().to_string();
    assert!(
        e.contains("syn.csv:5: field `") && e.contains("expected 10 fields, found 3"),
        "{e}"
    );
}

#[test]
fn parquet_and_arrow_files_prepare_exactly_as_their_csv() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SyntheticConfig::tiny();
    let d = generate(&cfg);
    let n = d.table.n_rows() as u32;
    let names = d.table.column_names();
    let (csv, a, b) = (
        dir.path().join("syn.csv"),
        dir.path().join("a.parquet"),
        dir.path().join("b.parquet"),
    );
    write_csv(&d.table, &csv).unwrap();
    // two Parquet files: the first 40 % of the rows, then the rest
    let cut = n * 2 / 5;
    write_parquet_rows(&d.table, &names, &(0..cut).collect::<Vec<_>>(), &a).unwrap();
    write_parquet_rows(&d.table, &names, &(cut..n).collect::<Vec<_>>(), &b).unwrap();
    let schema = dir.path().join("schema.toml");
    std::fs::write(&schema, synthetic_schema_toml(&cfg)).unwrap();
    let req = |files: Vec<std::path::PathBuf>| PrepareRequest {
        source: DatasetSource::Csv {
            schema: schema.clone(),
            files,
            delimiter: b',',
        },
        split: SplitSpec::Sequential {
            ratios: [0.8, 0.1, 0.1],
        },
        cache_dir: None,
    };
    let from_csv = prepare(&req(vec![csv.clone()])).unwrap();
    let from_pq = prepare(&req(vec![a.clone(), b.clone()])).unwrap();
    assert_eq!(
        from_csv.schema.to_json_pretty(),
        from_pq.schema.to_json_pretty()
    );
    assert_eq!(
        (&from_csv.train, &from_csv.valid, &from_csv.test),
        (&from_pq.train, &from_pq.valid, &from_pq.test)
    );
    // Arrow IPC, alone or after a Parquet file (same columns): the same data
    let (c, d2) = (dir.path().join("a.arrow"), dir.path().join("b.feather"));
    write_ipc_rows(&d.table, &names, &(0..cut).collect::<Vec<_>>(), &c).unwrap();
    write_ipc_rows(&d.table, &names, &(cut..n).collect::<Vec<_>>(), &d2).unwrap();
    for files in [vec![c.clone(), d2.clone()], vec![a.clone(), d2.clone()]] {
        let p = prepare(&req(files.clone())).unwrap();
        assert_eq!(
            (&from_csv.train, &from_csv.valid, &from_csv.test),
            (&p.train, &p.valid, &p.test),
            "{files:?}"
        );
    }
    let e = prepare(&req(vec![a, csv])).unwrap_err().to_string();
    assert!(e.contains("mixes CSV with Parquet or Arrow IPC"), "{e}");
}

#[test]
fn cache_keys_follow_the_data_code_fingerprint() {
    let cfg = SyntheticConfig::tiny();
    let spec = SchemaSpec::from_toml_str(&synthetic_schema_toml(&cfg), "schema.toml").unwrap();
    let split = SplitSpec::Sequential {
        ratios: [0.8, 0.1, 0.1],
    };
    let key = |code: &str| cache::cache_key_for_code(code, &spec, &split, "{}", &[]).unwrap();
    // The build fingerprints the crate's source: 16 hex digits, and the key uses it.
    assert_eq!(cache::CODE_HASH.len(), 16, "{}", cache::CODE_HASH);
    assert!(cache::CODE_HASH.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(
        cache::cache_key(&spec, &split, "{}", &[]).unwrap(),
        key(cache::CODE_HASH)
    );
    // Other data code -> another key, so its cache file is a miss, never reused.
    assert_ne!(key("0000000000000000"), key(cache::CODE_HASH));
    // The fingerprint is that of the source this test was built from ...
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let hex = |h: u64| format!("{h:016x}");
    assert_eq!(hex(fingerprint::source_fingerprint(root)), cache::CODE_HASH);
    // ... and any change to that source, one byte of a file or a new file, changes it and
    // with it the cache key.
    let copy = tempfile::tempdir().unwrap();
    let src = copy.path().join("src");
    copy_dir(&root.join("src"), &src);
    assert_eq!(
        hex(fingerprint::source_fingerprint(copy.path())),
        cache::CODE_HASH
    );
    let file = src.join("csv.rs");
    let mut text = std::fs::read(&file).unwrap();
    let last = text.len() - 1;
    text[last] ^= 1;
    std::fs::write(&file, &text).unwrap();
    let edited = hex(fingerprint::source_fingerprint(copy.path()));
    assert_ne!(edited, cache::CODE_HASH);
    assert_ne!(key(&edited), key(cache::CODE_HASH));
    text[last] ^= 1;
    std::fs::write(&file, &text).unwrap();
    std::fs::write(src.join("new.rs"), "").unwrap();
    assert_ne!(
        hex(fingerprint::source_fingerprint(copy.path())),
        cache::CODE_HASH
    );
}

mod fingerprint {
    include!("../fingerprint.rs");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dst = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dst);
        } else {
            std::fs::copy(&p, &dst).unwrap();
        }
    }
}

fn auc(scores: &[f64], labels: &[f32]) -> f64 {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut npos) = (0.0, 0.0);
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            if labels[k] > 0.5 {
                rank_sum += avg;
                npos += 1.0;
            }
        }
        i = j + 1;
    }
    let nneg = labels.len() as f64 - npos;
    (rank_sum - npos * (npos + 1.0) / 2.0) / (npos * nneg)
}

#[test]
fn bayes_auc_is_well_above_chance() {
    let cfg = SyntheticConfig::default();
    let d = generate(&cfg);
    let p = prepare(&PrepareRequest {
        source: DatasetSource::Synthetic(cfg.clone()),
        split: SplitSpec::Sequential {
            ratios: [0.8, 0.1, 0.1],
        },
        cache_dir: None,
    })
    .unwrap();
    let n = d.table.n_rows();
    let start = n - p.test.len();
    let rates = p.train.positive_rates();
    eprintln!(
        "synthetic default: train domain counts {:?}, positive rates {:?}",
        p.train.domain_counts(3),
        rates
    );
    assert!(rates[0] > rates[1] && rates[1] > 0.05);
    for t in 0..cfg.n_tasks {
        let a = auc(&d.true_prob[t][start..], &p.test.labels[t]);
        eprintln!(
            "synthetic default: bayes auc task {} = {a:.4}",
            p.schema.tasks[t]
        );
        assert!(a > 0.7, "{a}");
    }
    // like is a subset of click
    assert!(p.train.labels[1]
        .iter()
        .zip(&p.train.labels[0])
        .all(|(l, c)| *l <= *c));
    let dc = p.train.domain_counts(3);
    assert!(dc[0] > dc[1] && dc[1] > dc[2]);
}

#[test]
fn a_weight_column_is_read_per_split_and_bad_weights_name_their_row() {
    let spec = format!("weight = \"w\"\n{SPEC}");
    let mut c = base();
    c.push(("w", vec!["1", "0.5", "2", "0", "1.25", "3", "7", "1e-3"]));
    let p = run(c.clone(), &spec).unwrap();
    assert_eq!(p.train.weight, [1.0, 0.5, 2.0, 0.0, 1.25, 3.0]);
    assert_eq!(p.valid.weight, [7.0]);
    assert_eq!(p.test.weight, [1e-3]);
    // Without the key the column is not read and no weights are kept.
    assert!(run(c.clone(), SPEC).unwrap().train.weight.is_empty());
    for (bad, line) in [("-1", 3), ("NaN", 3), ("inf", 3), ("", 3), ("x", 3)] {
        let mut c = c.clone();
        c[6].1[1] = bad;
        let e = run(c, &spec).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("mem.csv:{line}: field `w`: sample weight must be")),
            "{bad}: {e}"
        );
    }
    let e = run(base(), &spec).unwrap_err().to_string();
    assert!(e.contains("column `w` not found"), "{e}");
}

// ---- sequence fields

const SEQ_SPEC: &str = r#"
time = "t"
[domain]
column = "d"
[[fields]]
name = "item"
kind = "categorical"
roles = ["item"]
[[fields]]
name = "hist"
kind = "sequence"
table = "item"
max_len = 3
time_column = "hist_t"
encoder = "tim"
roles = ["user"]
[[tasks]]
name = "y"
column = "y"
rule = "binary"
"#;

// 8 rows, lists oldest first; train 0..6, valid 6, test 7
fn seq_cols() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("item", vec!["a", "b", "c", "a", "b", "c", "a", "zz"]),
        (
            "hist",
            vec!["", "a", "a|b", "a|b|c", "c|a|b|c", "b", "c", "a|b"],
        ),
        (
            "hist_t",
            vec!["", "5", "5|6", "5|6|7", "1|5|6|7", "1", "1", "1|200"],
        ),
        (
            "t",
            vec!["10", "10", "10", "10", "1000000", "2", "3", "300"],
        ),
        ("d", vec!["0", "1", "0", "1", "0", "1", "0", "1"]),
        ("y", vec!["1", "0", "0", "1", "1", "0", "1", "0"]),
    ]
}

/// Column `name` of the fitted categorical fields, for row `r`.
fn cat_of(p: &Prepared, name: &str, r: usize) -> u32 {
    let cats = p.schema.categorical_fields();
    let j = cats.iter().position(|f| f.name == name).unwrap();
    p.train.cat[j][r]
}

#[test]
fn a_sequence_field_becomes_slots_most_recent_first_with_positions_and_intervals() {
    let p = run(seq_cols(), SEQ_SPEC).unwrap();
    let names: Vec<&str> = p
        .schema
        .categorical_fields()
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "item",
            "hist.0",
            "hist.1",
            "hist.2",
            "hist.pos.0",
            "hist.pos.1",
            "hist.pos.2",
            "hist.dt.0",
            "hist.dt.1",
            "hist.dt.2"
        ]
    );
    let v = &p.vocabs.tables["item"];
    let id = |x: &str| v.id_of(x);
    let slots = |r: usize, part: &str| -> Vec<u32> {
        (0..3)
            .map(|k| cat_of(&p, &format!("hist{part}.{k}"), r))
            .collect()
    };
    // row 3: a@5 b@6 c@7, target at 10 -> most recent first, intervals 3, 4, 5
    assert_eq!(slots(3, ""), [id("c"), id("b"), id("a")]);
    assert_eq!(slots(3, ".pos"), [2, 3, 4]);
    let b = |dt: i64| 2 + interval_bucket(dt);
    assert_eq!(slots(3, ".dt"), [b(3), b(4), b(5)]);
    assert_eq!((b(3), b(4), b(5)), (3, 4, 4)); // floor(log2): 1, 2, 2
                                               // row 4: four behaviours, max_len 3 keeps the three most recent (c@1 is dropped)
    assert_eq!(slots(4, ""), [id("c"), id("b"), id("a")]);
    // row 1: one behaviour, right padding
    assert_eq!(slots(1, ""), [id("a"), PAD, PAD]);
    assert_eq!(slots(1, ".pos"), [2, PAD, PAD]);
    assert_eq!(slots(1, ".dt"), [b(5), PAD, PAD]);
    // row 0: empty history
    assert_eq!(slots(0, ""), [PAD, PAD, PAD]);
    // the item table counts behaviours too, and the pos / dt tables have fixed sizes
    let f = |n: &str| p.schema.fields.iter().find(|f| f.name == n).unwrap();
    assert_eq!(f("hist.0").table, "item");
    assert_eq!(f("hist.pos.1").vocab_size, 5);
    assert_eq!(f("hist.dt.2").vocab_size, INTERVAL_BUCKETS as usize + 2);
    assert_eq!(
        f("hist.dt.2").seq,
        Some(SeqSlot {
            sequence: "hist".into(),
            part: SeqPart::Interval,
            slot: 2
        })
    );
    // left padding: [PAD, oldest, …, newest]; the positions still count from the newest
    let left = run(
        seq_cols(),
        &SEQ_SPEC.replace("encoder = \"tim\"", "encoder = \"tim\"\npadding = \"left\""),
    )
    .unwrap();
    let lslots = |r: usize, part: &str| -> Vec<u32> {
        (0..3)
            .map(|k| cat_of(&left, &format!("hist{part}.{k}"), r))
            .collect()
    };
    assert_eq!(lslots(1, ""), [PAD, PAD, id("a")]);
    assert_eq!(lslots(2, ""), [PAD, id("a"), id("b")]);
    assert_eq!(lslots(2, ".pos"), [PAD, 3, 2]);
    // mean / din: no position or interval slots
    let mean = run(
        seq_cols(),
        &SEQ_SPEC.replace("encoder = \"tim\"", "encoder = \"mean\""),
    )
    .unwrap();
    assert_eq!(mean.schema.categorical_fields().len(), 4);
}

#[test]
fn malformed_sequences_are_errors_naming_file_line_and_column() {
    let bad = |col: usize, row: usize, v: &'static str| {
        let mut c = seq_cols();
        c[col].1[row] = v;
        run(c, SEQ_SPEC).unwrap_err().to_string()
    };
    assert!(
        bad(1, 2, "a||b").starts_with("mem.csv:4: field `hist`: empty value"),
        "{}",
        bad(1, 2, "a||b")
    );
    let e = bad(2, 2, "5");
    assert_eq!(
        e,
        "mem.csv:4: field `hist_t`: sequence `hist`: 1 timestamps for 2 ids"
    );
    let e = bad(2, 3, "5|6.5|7");
    assert_eq!(
        e,
        "mem.csv:5: field `hist_t`: sequence `hist`: timestamp `6.5` is not an integer"
    );
    let e = bad(3, 6, "soon");
    assert_eq!(
        e,
        "mem.csv:8: field `t`: sequence `hist`: target time `soon` is not an integer"
    );
    // a behaviour at the target's own time is not history: an error, never a silent drop
    let e = bad(2, 1, "10");
    assert!(
        e.starts_with("mem.csv:3: field `hist_t`: sequence `hist`: a behaviour at time 10 is not before the target's time 10"),
        "{e}"
    );
    // schema checks
    for (from, to, want) in [
        ("max_len = 3\n", "", "needs max_len"),
        ("time_column = \"hist_t\"\n", "", "tim\" needs time_column"),
        (
            "table = \"item\"\n",
            "",
            "encoder `tim` attends to a target item",
        ),
        (
            "roles = [\"item\"]",
            "roles = [\"item\"]\npadding = \"left\"",
            "only valid for sequence fields",
        ),
    ] {
        let spec = SEQ_SPEC.replacen(from, to, 1);
        let e = SchemaSpec::from_toml_str(&spec, "s.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{from} -> {to}: {e}");
    }
}

#[test]
fn sequence_encoding_of_served_records_matches_training() {
    // the same encoder turns a record with the same lists into the same slots
    let p = run(seq_cols(), SEQ_SPEC).unwrap();
    let enc = Encoder::new(p.schema.clone(), p.vocabs.clone());
    assert!(enc.input_columns().contains(&"hist_t"));
    assert!(enc.input_columns().contains(&"t"));
    let t = table(&seq_cols());
    let again = enc.encode("mem", &t, &[3], Labels::Skip).unwrap();
    let j = p.schema.categorical_fields().len();
    for c in 0..j {
        assert_eq!(again.cat[c][0], p.train.cat[c][3]);
    }
}
