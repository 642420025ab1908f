//! The AREAD recipes (AliCCP, Amazon) on small generated files in AREAD's layout.

use std::fmt::Write;

use mdrec_data::*;

const ALI_FEATS: [&str; 20] = [
    "121", "122", "124", "125", "126", "127", "128", "129", "207", "210", "216", "508", "509",
    "702", "853", "109_14", "110_14", "127_14", "150_14", "301",
];

/// An AliCCP file: 300 rows, 5 domains (feature 206 values 11..15), train_tag 0 for rows
/// 0..240, 1 for 240..270, 2 after. `raw_names`: the header uses 101 / 205 / 206.
fn aliccp_text(raw_names: bool) -> String {
    let (u, i, d) = if raw_names {
        ("101", "205", "206")
    } else {
        ("userid", "itemid", "domain")
    };
    let mut s = format!(
        "click,purchase,{u},{i},{d},{},D109_14,train_tag\n",
        ALI_FEATS.join(",")
    );
    for r in 0..300usize {
        let tag = if r < 240 {
            0
        } else if r < 270 {
            1
        } else {
            2
        };
        let feats: Vec<String> = (0..ALI_FEATS.len())
            .map(|k| ((r + k) % 4).to_string())
            .collect();
        let _ = writeln!(
            s,
            "{},0,{},{},{},{},0.25,{tag}",
            usize::from(r % 3 == 0),
            r % 17,
            r % 23,
            11 + r % 5,
            feats.join(",")
        );
    }
    s
}

fn fails(r: Result<Prepared, DataError>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn req(src: DatasetSource, split: SplitSpec) -> PrepareRequest {
    PrepareRequest {
        source: src,
        split,
        cache_dir: None,
    }
}

#[test]
fn aliccp_fixture_domains_labels_and_tag_split() {
    for raw in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(ALICCP_FILE), aliccp_text(raw)).unwrap();
        let src = DatasetSource::Aliccp {
            dir: tmp.path().to_path_buf(),
        };
        let p = prepare(&req(src, AliccpAmazon::Aliccp.split())).unwrap();
        assert_eq!((p.train.len(), p.valid.len(), p.test.len()), (240, 30, 30));
        assert_eq!(p.schema.domains, ["11", "12", "13", "14", "15"]);
        assert_eq!(p.schema.tasks, ["click"]);
        assert_eq!(p.train.domain_counts(5), [48; 5]);
        assert_eq!(p.valid.domain[0], 0); // row 240: 206 = 11
        assert_eq!(p.train.labels[0][..4], [1.0, 0.0, 0.0, 1.0]);
        assert_eq!(p.test.labels[0][0], 1.0); // row 270
        assert_eq!(p.schema.fields.len(), 23);
        assert_eq!(p.train.group[..3], [0, 1, 2]);
    }
}

#[test]
fn aliccp_errors_name_file_line_field() {
    let tmp = tempfile::tempdir().unwrap();
    let src = DatasetSource::Aliccp {
        dir: tmp.path().to_path_buf(),
    };
    let split = AliccpAmazon::Aliccp.split();
    let e = fails(prepare(&req(src.clone(), split.clone())));
    assert!(
        e.contains(ALICCP_FILE) && e.contains("preprocess.py") && e.contains("tianchi"),
        "{e}"
    );
    let f = tmp.path().join(ALICCP_FILE);
    let good = aliccp_text(false);
    let lines: Vec<&str> = good.lines().collect();
    let with_line = |n: usize, l: &str| {
        let mut v = lines.clone();
        v[n - 1] = l;
        v.join("\n") + "\n"
    };
    // line 10 = data row 8
    let bad = lines[9].replacen(",0.25,0", ",0.25,3", 1);
    std::fs::write(&f, with_line(10, &bad)).unwrap();
    let e = fails(prepare(&req(src.clone(), split.clone())));
    assert!(
        e.contains(&format!("{ALICCP_FILE}:10: field `train_tag`")),
        "{e}"
    );
    let bad = lines[9].rsplit_once(',').unwrap().0.to_string();
    std::fs::write(&f, with_line(10, &bad)).unwrap();
    let e = fails(prepare(&req(src.clone(), split.clone())));
    assert!(
        e.contains(":10: field `train_tag`") && e.contains("expected 27 fields"),
        "{e}"
    );
    let bad = lines[9].replacen("0,0,", "2,0,", 1);
    std::fs::write(&f, with_line(10, &bad)).unwrap();
    let e = fails(prepare(&req(src.clone(), split.clone())));
    assert!(e.contains(":10: field `click`"), "{e}");
    std::fs::write(&f, good.replace(",train_tag\n", ",tag\n")).unwrap();
    let e = fails(prepare(&req(src.clone(), split.clone())));
    assert!(
        e.contains(":1: field `train_tag`") && e.contains("missing"),
        "{e}"
    );
    std::fs::write(&f, "").unwrap();
    let e = fails(prepare(&req(src, split)));
    assert!(e.contains(":1: field `header`"), "{e}");
}

/// An Amazon file: 500 rows, domain i % 25 (every 7th row written as the category name, quoted
/// when it contains a comma), distinct timestamps 1000 + i, list-literal behaviour sequences.
fn amazon_text() -> String {
    let mut s = String::from("userid,itemid,weekday,domain,sales_chart,sales_rank,brand,price,user_pos_1month_seq,user_neg_1month_seq,user_pos_6month_seq,user_neg_6month_seq,label,timestamp\n");
    for r in 0..500usize {
        let d = r % 25;
        let dom = if r % 7 == 0 {
            let n = AMAZON_DOMAINS[d];
            if n.contains(',') {
                format!("\"{n}\"")
            } else {
                n.to_string()
            }
        } else {
            d.to_string()
        };
        let pos: Vec<String> = (0..r % 8).map(|k| ((r + k) % 30).to_string()).collect();
        let pos = if pos.len() > 1 {
            format!("\"[{}]\"", pos.join(", "))
        } else {
            format!("[{}]", pos.join(", "))
        };
        let _ = writeln!(
            s,
            "{},{},{},{dom},{},{},{},{},[],[],{pos},[{}],{},{}",
            r % 40,
            r % 30,
            r % 7,
            r % 3,
            r % 11,
            r % 5,
            r % 9,
            (r + 1) % 30,
            usize::from(r % 4 == 1),
            1000 + r
        );
    }
    s
}

#[test]
fn amazon_fixture_domains_sequences_and_quantile_split() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join(AMAZON_FILE), amazon_text()).unwrap();
    let src = DatasetSource::Amazon {
        dir: tmp.path().to_path_buf(),
    };
    let p = prepare(&req(src, AliccpAmazon::Amazon.split())).unwrap();
    // q0.9 = 1000 + 0.9 * 499 = 1449.1, q0.95 = 1474.05: train t <= 1449, valid 1450..=1474
    assert_eq!((p.train.len(), p.valid.len(), p.test.len()), (450, 25, 25));
    assert_eq!(p.schema.domains, AMAZON_DOMAINS);
    assert_eq!(p.schema.tasks, ["label"]);
    for (r, &d) in p.train.domain.iter().enumerate() {
        assert_eq!(d as usize, r % 25);
    }
    assert_eq!(p.train.domain_counts(25), [18; 25]);
    // the positive sequence of row 7 is items 7..=13 -> the last 5: 9..=13; the sequence shares
    // the itemid vocabulary (item k -> id k + 2, items 0..29 all in train)
    let pos = p.schema.multi_hot_fields()[0];
    assert_eq!(pos.name, "user_pos_6month_seq");
    assert_eq!(pos.table, "itemid");
    let j = &p.train.multi[0];
    let (a, b) = (j.offsets[7] as usize, j.offsets[8] as usize);
    assert_eq!(j.values[a..b], [11, 12, 13, 14, 15]);
    let (a, b) = (j.offsets[0] as usize, j.offsets[1] as usize);
    assert_eq!(b - a, 0); // "[]"
    assert_eq!(p.train.cat[0][7], 7 + 2);
    // the group is userid, which is not a feature (as in AREAD)
    assert!(p.schema.fields.iter().all(|f| f.name != "userid"));
    assert_eq!(p.train.group[41], 1);
}

#[test]
fn amazon_errors_name_file_line_field() {
    let tmp = tempfile::tempdir().unwrap();
    let src = DatasetSource::Amazon {
        dir: tmp.path().to_path_buf(),
    };
    let split = AliccpAmazon::Amazon.split();
    let f = tmp.path().join(AMAZON_FILE);
    let good = amazon_text();
    let lines: Vec<&str> = good.lines().collect();
    let with_line = |n: usize, l: &str| {
        let mut v: Vec<String> = lines.iter().map(|x| x.to_string()).collect();
        v[n - 1] = l.to_string();
        v.join("\n") + "\n"
    };
    // line 3 = row 1, no quoted field: userid 1, domain 1, sequences [], [], [1], [2]
    let set = |k: usize, v: &str| {
        let mut f: Vec<&str> = lines[2].split(',').collect();
        f[k] = v;
        f.join(",")
    };
    let cases = [
        (set(3, "Toys"), "field `domain`", "unknown domain `Toys`"),
        (set(3, "25"), "field `domain`", "outside 0..24"),
        (
            set(10, "[1; 2]"),
            "field `user_pos_6month_seq`",
            "not an integer",
        ),
        (
            set(11, "7"),
            "field `user_neg_6month_seq`",
            "expected a list",
        ),
        (
            set(8, "\"[1"),
            "field `user_pos_1month_seq`",
            "unterminated",
        ),
        (set(13, "10x1"), "field `timestamp`", "not an integer time"),
        (set(12, "2"), "field `label`", ""),
    ];
    for (bad, field, msg) in cases {
        std::fs::write(&f, with_line(3, &bad)).unwrap();
        let e = fails(prepare(&req(src.clone(), split.clone())));
        assert!(
            e.contains(&format!("{AMAZON_FILE}:3: {field}")) && e.contains(msg),
            "{bad}\n{e}"
        );
    }
    std::fs::write(&f, good.replace("user_neg_6month_seq,", "seq,")).unwrap();
    let e = fails(prepare(&req(src, split)));
    assert!(
        e.contains(":1: field `user_neg_6month_seq`") && e.contains("missing"),
        "{e}"
    );
}

#[test]
fn quantile_is_linear_like_pandas() {
    assert_eq!(quantile(&[4.0, 1.0, 3.0, 2.0], 0.9), Some(3.7));
    assert_eq!(quantile(&[5.0], 0.3), Some(5.0));
    assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.5), Some(3.0));
    // ties at the cut go to the later split (`t < q` is train)
    let mut b = ColumnBuilder::new("t");
    for v in ["1", "2", "2", "2", "2", "2", "2", "2", "2", "9"] {
        b.push(v);
    }
    let t = RawTable {
        columns: vec![b.finish()],
        files: vec!["x".into()],
        row_file: vec![0; 10],
        row_line: (1..=10).collect(),
    };
    let s = split_rows(
        &t,
        &SplitSpec::TimeQuantiles {
            column: "t".into(),
            valid_q: 0.1,
            test_q: 0.9,
        },
    )
    .unwrap();
    // q0.1 = 1.9, q0.9 = 2.0 + 0.1 * 7 = 2.7
    assert_eq!(s, [vec![0], (1..9).collect::<Vec<u32>>(), vec![9]]);
    let e = split_rows(
        &t,
        &SplitSpec::TimeQuantiles {
            column: "t".into(),
            valid_q: 0.9,
            test_q: 0.5,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("valid_q <= test_q"), "{e}");
}
