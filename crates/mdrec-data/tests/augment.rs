//! Popularity-based counterfactual augmentation: train-only inputs, the copy rules, the count
//! and the sampling weights.

use mdrec_data::*;

fn fails<T>(r: Result<T, DataError>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

/// A synthetic dataset with 25 long-tailed domains (sequential 80/10/10 split).
fn synthetic() -> Prepared {
    let cfg = SyntheticConfig {
        n_rows: 10_000,
        n_domains: 25,
        n_items: 2_000,
        ..SyntheticConfig::default()
    };
    prepare(&PrepareRequest {
        source: DatasetSource::Synthetic(cfg),
        split: SplitSpec::Sequential {
            ratios: [0.8, 0.1, 0.1],
        },
        cache_dir: None,
    })
    .unwrap()
}

fn cfg() -> AugmentConfig {
    AugmentConfig::amazon()
}

#[test]
fn count_is_floor_ratio_n_and_rows_follow_the_rules() {
    let p = synthetic();
    let a = augment(&p, &cfg(), 7).unwrap();
    let n = p.train.len();
    assert_eq!(a.n_scope, n);
    assert_eq!(a.aug_len, (0.1 * n as f64).floor() as usize);
    assert_eq!(a.data.len(), a.aug_len);
    assert_eq!(a.source_rows.len(), a.aug_len);
    assert!(!a.small_domains.is_empty() && !a.large_domains.is_empty());

    // item popularity on train, by hand
    let cats = p.schema.categorical_fields();
    let item = cats.iter().position(|f| f.name == "item_id").unwrap();
    let dfield = cats
        .iter()
        .position(|f| f.name == "domain_indicator")
        .unwrap();
    let mut cnt = std::collections::HashMap::<u32, u64>::new();
    for &i in &p.train.cat[item] {
        *cnt.entry(i).or_default() += 1;
    }
    let counts = p.train.domain_counts(p.schema.n_domains());
    let thr = (0.02 * n as f64).floor();
    for (k, &src) in a.source_rows.iter().enumerate() {
        let src = src as usize;
        let (from, to) = (p.train.domain[src], a.data.domain[k]);
        assert_eq!(p.train.labels[0][src], 1.0, "copied from a positive");
        assert_eq!(a.data.labels[0][k], 1.0);
        assert!(cnt[&p.train.cat[item][src]] <= 4, "cold item");
        assert!(
            counts[from as usize] as f64 > 1.5 * thr,
            "from a large domain"
        );
        assert!(counts[to as usize] as f64 <= thr, "into a small domain");
        // every other feature is copied; the domain indicator follows the new domain
        for (c, col) in a.data.cat.iter().enumerate() {
            if c == dfield {
                let raw = p.vocabs.tables["domain_indicator"]
                    .value(col[k])
                    .unwrap()
                    .to_string();
                assert_eq!(p.vocabs.domain_map[&raw], to);
            } else {
                assert_eq!(col[k], p.train.cat[c][src]);
            }
        }
        assert_eq!(a.data.num[0][k], p.train.num[0][src]);
        assert_eq!(a.data.labels[1][k], p.train.labels[1][src]);
        assert_eq!(a.data.group[k], p.train.group[src]);
        let m = &a.data.multi[0];
        let s = &p.train.multi[0];
        assert_eq!(
            m.values[m.offsets[k] as usize..m.offsets[k + 1] as usize],
            s.values[s.offsets[src] as usize..s.offsets[src + 1] as usize]
        );
    }
    // batches like any split
    let mut b = Batch::default();
    a.data.fill_batch(&[0, 1], &mut b);
    assert_eq!(b.domain, a.data.domain[..2]);

    // deterministic from the seed
    assert_eq!(augment(&p, &cfg(), 7).unwrap(), a);
    assert_ne!(augment(&p, &cfg(), 8).unwrap().source_rows, a.source_rows);
    let half = AugmentConfig {
        ratio: 0.05,
        ..cfg()
    };
    assert_eq!(
        augment(&p, &half, 7).unwrap().data.len(),
        (0.05 * n as f64).floor() as usize
    );
}

/// Overwrites every value of a split (items, labels, domains, all features).
fn scramble(d: &mut EncodedData) {
    for c in &mut d.cat {
        for v in c.iter_mut() {
            *v = 2 + (*v + 5) % 7;
        }
    }
    for l in &mut d.labels {
        for v in l.iter_mut() {
            *v = 1.0 - *v;
        }
    }
    for v in &mut d.domain {
        *v = (*v + 3) % 25;
    }
    for c in &mut d.num {
        for v in c.iter_mut() {
            *v += 1.0;
        }
    }
}

#[test]
fn never_reads_valid_or_test_but_does_read_train() {
    let p = synthetic();
    let a = augment(&p, &cfg(), 3).unwrap();
    let mut q = p.clone();
    scramble(&mut q.valid);
    scramble(&mut q.test);
    assert_eq!(augment(&q, &cfg(), 3).unwrap(), a);
    // the official leakage option does read them
    let leak = AugmentConfig {
        popularity_scope: PopularityScope::AllSplits,
        ..cfg()
    };
    let la = augment(&p, &leak, 3).unwrap();
    assert_eq!(la.n_scope, p.train.len() + p.valid.len() + p.test.len());
    assert!(la.data.len() <= la.aug_len);
    assert!(la.pool.iter().any(|&(s, _)| s > 0));
    assert!(la.source_rows.iter().all(|&r| (r as usize) < p.train.len()));
    assert_ne!(augment(&q, &leak, 3).unwrap(), la);
    // changing one training row changes the output: drop the first pool row's label
    let mut t = p.clone();
    let (_, r0) = a.pool[0];
    t.train.labels[0][r0 as usize] = 0.0;
    let b = augment(&t, &cfg(), 3).unwrap();
    assert_ne!(b, a);
    assert!(!b.pool.contains(&(0, r0)));
}

/// A hand-made dataset: domains A (40 rows) and B (30 rows) are large, s1 (5) and s2 (10)
/// small, `m` (15) medium; items: `hot` (many rows), `c1` (2 rows, 1 positive, in A),
/// `c2` (3 rows, 2 positive, in B), `c3` (1 positive row, in A), `c4` (1 positive row, in s1).
fn hand() -> Prepared {
    let mut rows: Vec<(&str, &str, &str)> = Vec::new(); // (domain, item, y)
    rows.extend([("A", "c1", "1"), ("A", "c1", "0"), ("A", "c3", "1")]);
    rows.extend([("B", "c2", "1"), ("B", "c2", "1"), ("B", "c2", "0")]);
    rows.push(("s1", "c4", "1"));
    for (d, n) in [("A", 37), ("B", 27), ("s1", 4), ("s2", 10), ("m", 15)] {
        for k in 0..n {
            rows.push((d, "hot", if k % 2 == 0 { "1" } else { "0" }));
        }
    }
    assert_eq!(rows.len(), 100);
    let mut cols: Vec<ColumnBuilder> = ["d", "item", "y", "tag"]
        .iter()
        .map(|n| ColumnBuilder::new(*n))
        .collect();
    for (d, i, y) in &rows {
        for (b, v) in cols.iter_mut().zip([d, i, y, &"0"]) {
            b.push(v);
        }
    }
    // valid / test rows: the cold items again, which must not count
    for (d, i, y, tag) in [
        ("s2", "c1", "1", "1"),
        ("A", "c3", "1", "2"),
        ("B", "c1", "1", "2"),
    ] {
        for (b, v) in cols.iter_mut().zip([d, i, y, tag]) {
            b.push(v);
        }
    }
    let table = RawTable {
        columns: cols.into_iter().map(ColumnBuilder::finish).collect(),
        files: vec!["hand".into()],
        row_file: vec![0; 103],
        row_line: (1..=103).collect(),
    };
    let spec = SchemaSpec::from_toml_str(
        r#"
[domain]
column = "d"
[[fields]]
name = "item"
kind = "categorical"
roles = ["prior", "item"]
[[fields]]
name = "dom"
column = "d"
kind = "categorical"
roles = ["domain"]
[[tasks]]
name = "y"
column = "y"
rule = "binary"
"#,
        "hand.toml",
    )
    .unwrap();
    let split = SplitSpec::ByTime {
        column: "tag".into(),
        valid_from: 1,
        test_from: 2,
    };
    prepare_table(&spec, "hand.toml", &table, &split, "hand").unwrap()
}

#[test]
fn sampling_weights_follow_inverse_popularity_on_a_hand_case() {
    let p = hand();
    assert_eq!(p.schema.domains, ["A", "B", "m", "s1", "s2"]);
    let cfg = AugmentConfig {
        ratio: 200.0,
        small_share: 0.1,
        ..AugmentConfig::amazon()
    };
    let a = augment(&p, &cfg, 11).unwrap();
    // thr = 10: small = s1 (5), s2 (10); large = > 15: A (40), B (30); m (15) is neither
    assert_eq!(a.small_domains, [3, 4]);
    assert_eq!(a.large_domains, [0, 1]);
    assert_eq!(a.n_cold_items, 4); // c1..c4 (count <= 4); hot is not cold
                                   // pool: positives of cold items in large domains = rows 0 (c1), 2 (c3), 3, 4 (c2); not c4
    let pool_rows: Vec<u32> = a
        .pool
        .iter()
        .map(|&(s, r)| {
            assert_eq!(s, 0);
            r
        })
        .collect();
    assert_eq!(pool_rows, [0, 2, 3, 4]);
    // popularity (pos + 1) / (cnt + 2): c1 2/4, c3 2/3, c2 3/5 (train only)
    let w = [4.0 / 2.0, 3.0 / 2.0, 5.0 / 3.0, 5.0 / 3.0];
    let s: f64 = w.iter().sum();
    for (got, want) in a.pool_probs.iter().zip(w.iter().map(|x| x / s)) {
        assert!((got - want).abs() < 1e-12, "{:?}", a.pool_probs);
    }
    // the draws follow those weights (20,000 draws)
    assert_eq!(a.data.len(), 20_000);
    let mut freq = [0usize; 4];
    for &r in &a.source_rows {
        freq[pool_rows.iter().position(|&x| x == r).unwrap()] += 1;
    }
    for (f, want) in freq.iter().zip(w.iter().map(|x| x / s)) {
        let got = *f as f64 / 20_000.0;
        assert!((got - want).abs() < 0.015, "{freq:?}");
    }
    // domain weights: each = (15 + 20000) / 2; w = each - n; exp(w / q0.3(w))
    let each: f64 = (15.0 + 20_000.0) / 2.0;
    let (w1, w2) = (each - 5.0, each - 10.0);
    let q = w2 + 0.3 * (w1 - w2);
    let (e1, e2) = ((w1 / q).exp(), (w2 / q).exp());
    assert!((a.domain_probs[0] - e1 / (e1 + e2)).abs() < 1e-12);
    let to_s1 = a.data.domain.iter().filter(|&&d| d == 3).count() as f64 / 20_000.0;
    assert!((to_s1 - a.domain_probs[0]).abs() < 0.015, "{to_s1}");
    // the domain field follows: value "s1" / "s2"
    for k in 0..100 {
        let v = p.vocabs.tables["dom"].value(a.data.cat[1][k]).unwrap();
        assert_eq!(p.vocabs.domain_map[v], a.data.domain[k]);
    }

    // AliCCP's popularity rule with threshold 0.55: c1 (2/4) and hot (49/95: 48 positives of
    // 93) are cold, c2 (3/5), c3, c4 (2/3) are not; large = more than 10 rows: A, B, m
    let ali = AugmentConfig {
        ratio: 1.0,
        cold: ColdRule::PopularityBelow(0.55),
        small_share: 0.1,
        ..AugmentConfig::aliccp()
    };
    let b = augment(&p, &ali, 11).unwrap();
    assert_eq!(b.n_cold_items, 2);
    assert_eq!(b.large_domains, [0, 1, 2]);
    // row 0 (c1) and the hot positives of A (19), B (14) and m (8)
    assert_eq!(b.pool.len(), 1 + 19 + 14 + 8);
    assert!(b.pool.contains(&(0, 0)) && !b.pool.contains(&(0, 3)));
    assert_eq!(b.data.len(), 100);
}

#[test]
fn configuration_errors_are_clear() {
    let p = hand();
    let mut c = AugmentConfig::amazon();
    c.ratio = -1.0;
    assert!(fails(augment(&p, &c, 1)).contains("ratio"));
    let c = AugmentConfig {
        item_field: Some("nope".into()),
        ..AugmentConfig::amazon()
    };
    let e = fails(augment(&p, &c, 1));
    assert!(e.contains("`nope`") && e.contains("item, dom"), "{e}");
    let c = AugmentConfig {
        task: Some("click".into()),
        ..AugmentConfig::amazon()
    };
    assert!(fails(augment(&p, &c, 1)).contains("unknown task `click`"));
    // 2 % of 100 rows: no domain has at most 2 rows
    let e = fails(augment(&p, &AugmentConfig::amazon(), 1));
    assert!(e.contains("no small domain"), "{e}");
    let c = AugmentConfig {
        small_share: 0.1,
        cold: ColdRule::MaxCount(0),
        ..AugmentConfig::amazon()
    };
    assert!(fails(augment(&p, &c, 1)).contains("pool is empty"));
    assert!(fails(AugmentConfig::preset("kuai")).contains("amazon, aliccp"));
    assert_eq!(
        AugmentConfig::preset("aliccp").unwrap(),
        AugmentConfig::aliccp()
    );
    // TOML form
    let c: AugmentConfig = toml::from_str(
        "ratio = 0.2\ncold = { popularity_below = 0.05 }\npopularity_scope = \"all_splits\"\n",
    )
    .unwrap();
    assert_eq!(c.cold, ColdRule::PopularityBelow(0.05));
    assert_eq!(c.popularity_scope, PopularityScope::AllSplits);
    assert_eq!(c.small_share, 0.02);
    assert!(toml::from_str::<AugmentConfig>("ratioo = 1\n").is_err());
}
