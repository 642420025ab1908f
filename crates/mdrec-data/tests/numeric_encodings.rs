//! Numeric encodings (§3.2 of Pan et al., KDD 2024): scalar, equal-frequency buckets, MNSE.

use std::collections::BTreeMap;

use mdrec_data::fit::bucket_boundaries;
use mdrec_data::*;

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

fn spec(encoding: &str) -> String {
    format!(
        r#"
[domain]
column = "d"
[[fields]]
name = "c"
kind = "categorical"
[[fields]]
name = "age"
kind = "numeric"
transform = "min_max"
{encoding}
[[tasks]]
name = "y"
column = "y"
rule = "binary"
"#
    )
}

// 8 rows; sequential 0.75/0.125/0.125 -> train 0..6, valid 6, test 7
fn cols(last_age: &'static str) -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("c", vec!["a", "b", "a", "b", "a", "b", "a", "b"]),
        (
            "age",
            vec!["51", "1", "18", "25", "25", "56", "7", last_age],
        ),
        ("d", vec!["0", "1", "0", "1", "0", "1", "0", "1"]),
        ("y", vec!["1", "0", "0", "1", "1", "0", "1", "0"]),
    ]
}

fn run(encoding: &str, last_age: &'static str) -> Result<Prepared, DataError> {
    let s = SchemaSpec::from_toml_str(&spec(encoding), "spec.toml")?;
    prepare_table(
        &s,
        "spec.toml",
        &table(&cols(last_age)),
        &SplitSpec::Sequential {
            ratios: [0.75, 0.125, 0.125],
        },
        "mem",
    )
}

#[test]
fn mnse_digits_of_the_papers_worked_example() {
    // §3.2: 51 -> binary {6_1, 5_1, 4_0, 3_0, 2_1, 1_1}, ternary {6_0, 5_0, 4_1, 3_2, 2_2, 1_0}
    // (position_digit, most significant first); mnse_digits lists position 1 first.
    assert_eq!(mnse_digits(51, 2, 6), vec![1, 1, 0, 0, 1, 1]);
    assert_eq!(mnse_digits(51, 3, 6), vec![0, 2, 2, 1, 0, 0]);
    assert_eq!(mnse_digits(51, 10, 2), vec![1, 5]);
    assert_eq!(mnse_width(51, 2), 6);
    assert_eq!(mnse_width(51, 3), 4);
    assert_eq!(mnse_width(0, 3), 1);
    // saturation: 100 does not fit 6 binary digits
    assert_eq!(mnse_digits(100, 2, 6), vec![1; 6]);
}

#[test]
fn mnse_ids_are_one_embedding_per_base_position_digit() {
    let code = NumericCode::Digits {
        bases: vec![(2, 6), (3, 6)],
    };
    assert_eq!(code.vocab_size(), 2 + 12 + 18);
    let ids = code.ids(51.0).unwrap();
    // base 2 at offset 2: position k (0-based from the least significant) digit d -> 2 + 2k + d
    let want2: Vec<u32> = [1, 1, 0, 0, 1, 1]
        .iter()
        .enumerate()
        .map(|(k, d)| 2 + 2 * k as u32 + d)
        .collect();
    // base 3 after the 12 binary codes: 14 + 3k + d
    let want3: Vec<u32> = [0, 2, 2, 1, 0, 0]
        .iter()
        .enumerate()
        .map(|(k, d)| 14 + 3 * k as u32 + d)
        .collect();
    assert_eq!(ids, [want2, want3].concat());
    // 51.9 codes as 51; a negative value is an error
    assert_eq!(code.ids(51.9).unwrap(), ids);
    assert!(code.ids(-1.0).unwrap_err().contains("non-negative"));
}

#[test]
fn mnse_concat_gives_one_multi_hot_field_per_base() {
    let p = run(
        r#"encoding = { kind = "mnse", bases = [2, 3], width = 6 }"#,
        "51",
    )
    .unwrap();
    let names: Vec<&str> = p.schema.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["c", "age.mnse2", "age.mnse3"]);
    let f2 = &p.schema.fields[1];
    assert_eq!(f2.kind, FieldKind::MultiHot);
    assert_eq!(f2.vocab_size, 2 + 12);
    assert_eq!(p.schema.fields[2].vocab_size, 2 + 18);
    assert!(p.schema.numeric_fields().is_empty());
    // the test row holds 51: the binary and ternary codes of the worked example
    let j = &p.test.multi[0];
    assert_eq!(
        &j.values[j.offsets[0] as usize..j.offsets[1] as usize],
        &[3, 5, 6, 8, 11, 13]
    );
    let j = &p.test.multi[1];
    assert_eq!(
        &j.values[j.offsets[0] as usize..j.offsets[1] as usize],
        &[2, 7, 10, 12, 14, 17]
    );
    assert!(p.test.num.is_empty());
}

#[test]
fn mnse_sum_pools_every_base_in_one_field_and_default_width_fits_train_max() {
    let p = run(r#"encoding = { kind = "mnse", pool = "sum" }"#, "51").unwrap();
    let f = &p.schema.fields[1];
    assert_eq!(f.name, "age.mnse");
    // train max 56: 6 binary, 4 ternary, 2 decimal digits
    assert_eq!(
        f.code,
        Some(NumericCode::Digits {
            bases: vec![(2, 6), (3, 4), (10, 2)]
        })
    );
    assert_eq!(f.vocab_size, 2 + 12 + 12 + 20);
    let j = &p.test.multi[0];
    assert_eq!(j.offsets[1] - j.offsets[0], 12);
}

#[test]
fn buckets_are_equal_frequency_and_ties_stay_together() {
    // 10 rows over values 1..=10: 5 buckets of two
    let v: Vec<(f64, u64)> = (1..=10).map(|x| (x as f64, 1)).collect();
    assert_eq!(bucket_boundaries(&v, 5), vec![3.0, 5.0, 7.0, 9.0]);
    // a value's bucket is where its first row falls: 2 starts at 10 % (bucket 0, with 1) and
    // holds 80 % of the rows alone, so 5 buckets asked give 2
    let v = [(1.0, 1), (2.0, 8), (3.0, 1)];
    assert_eq!(bucket_boundaries(&v, 5), vec![3.0]);
    let code = NumericCode::Bucket {
        boundaries: vec![2.0, 3.0],
    };
    assert_eq!(code.ids(0.5).unwrap(), vec![2]);
    assert_eq!(code.ids(2.0).unwrap(), vec![3]);
    assert_eq!(code.ids(99.0).unwrap(), vec![4]);
    assert_eq!(code.vocab_size(), 5);
}

#[test]
fn bucket_encoding_makes_a_categorical_field() {
    // train ages 51, 1, 18, 25, 25, 56 in 3 buckets: [1, 18], [25, 25], [51, 56]
    let p = run(r#"encoding = { kind = "bucket", buckets = 3 }"#, "30").unwrap();
    let f = &p.schema.fields[1];
    assert_eq!((f.name.as_str(), f.kind), ("age", FieldKind::Categorical));
    assert_eq!(
        f.code,
        Some(NumericCode::Bucket {
            boundaries: vec![25.0, 51.0]
        })
    );
    assert_eq!(p.train.cat[1], vec![4, 2, 2, 3, 3, 4]);
    assert_eq!(p.test.cat[1], vec![3]); // 30 -> the middle bucket
    assert_eq!(p.schema.categorical_fields().len(), 2);
}

#[test]
fn scalar_is_the_default_and_explicit_scalar_changes_nothing() {
    let a = run("", "51").unwrap();
    let b = run(r#"encoding = { kind = "scalar" }"#, "51").unwrap();
    assert_eq!(a.train.num, b.train.num);
    assert_eq!(a.schema.fields.len(), 2);
    assert_eq!(a.schema.fields[1].kind, FieldKind::Numeric);
}

#[test]
fn negative_values_under_mnse_name_file_line_and_column() {
    let e = run(r#"encoding = { kind = "mnse" }"#, "-3")
        .unwrap_err()
        .to_string();
    assert!(e.contains("mem.csv:9") && e.contains("age"), "{e}");
    assert!(e.contains("non-negative"), "{e}");
}

#[test]
fn bad_encodings_are_rejected_naming_the_field() {
    for (enc, want) in [
        (r#"encoding = { kind = "bucket", buckets = 1 }"#, "buckets"),
        (r#"encoding = { kind = "mnse", bases = [1, 2] }"#, "base 1"),
        (r#"encoding = { kind = "mnse", bases = [2, 2] }"#, "repeats"),
        (r#"encoding = { kind = "mnse", bases = [] }"#, "empty"),
        (r#"encoding = { kind = "mnse", width = 0 }"#, "width"),
        (r#"encoding = { kind = "mnse", digits = 3 }"#, "digits"),
        (r#"encoding = { kind = "binary" }"#, "binary"),
    ] {
        let e = SchemaSpec::from_toml_str(&spec(enc), "s.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{enc}: {e}");
        assert!(e.starts_with("s.toml"), "{e}");
    }
    let cat = spec("").replace(
        "kind = \"categorical\"",
        "kind = \"categorical\"\nencoding = { kind = \"mnse\" }",
    );
    let e = SchemaSpec::from_toml_str(&cat, "s.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("only valid for numeric"), "{e}");
}

#[test]
fn dataset_encodings_override_the_schema_by_field_name() {
    let s = SchemaSpec::from_toml_str(&spec(""), "spec.toml").unwrap();
    let mut enc = BTreeMap::new();
    enc.insert("age".to_string(), NumericEncoding::Bucket { buckets: 4 });
    let out = apply_encodings(&s, "spec.toml", &enc).unwrap();
    assert_eq!(
        out.fields[1].encoding,
        Some(NumericEncoding::Bucket { buckets: 4 })
    );
    enc.insert("c".to_string(), NumericEncoding::Scalar);
    let e = apply_encodings(&s, "spec.toml", &enc)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("dataset.encodings.c") && e.contains("numeric fields: age"),
        "{e}"
    );
}
