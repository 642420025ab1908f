//! The AliExpress recipe on a small release generated in the official layout: one
//! `AliExpress_<CC>` folder per country with `train.csv` and `test.csv` (comma-separated, header
//! `search_id, categorical_1..16, numerical_1..63, click, conversion`), one file gzipped.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use mdrec_data::aliexpress::*;
use mdrec_data::*;

/// (country, train rows, test rows)
const SIZES: [(&str, usize, usize); 5] = [
    ("ES", 33, 10),
    ("FR", 21, 10),
    ("NL", 40, 20),
    ("RU", 12, 10),
    ("US", 50, 10),
];

fn file_text(seed: usize, n: usize) -> String {
    let mut s = aliexpress_columns().join(",");
    s.push('\n');
    for r in 0..n {
        let g = seed * 1000 + r;
        let _ = write!(s, "{}", g / 3);
        for k in 0..16 {
            let _ = write!(s, ",{}", (g + k) % 5);
        }
        for k in 0..63 {
            let _ = write!(s, ",{}", ((g * 7 + k) % 10) as f64 / 10.0);
        }
        let click = g.is_multiple_of(3);
        let _ = writeln!(
            s,
            ",{},{}",
            u8::from(click),
            u8::from(click && g.is_multiple_of(6))
        );
    }
    s
}

/// Writes the release; US's test file is gzipped.
fn write_release(dir: &Path) {
    for (i, (c, train, test)) in SIZES.iter().enumerate() {
        let d = dir.join(format!("AliExpress_{c}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("train.csv"), file_text(2 * i, *train)).unwrap();
        let t = file_text(2 * i + 1, *test);
        if *c == "US" {
            let mut gz = flate2::write::GzEncoder::new(
                std::fs::File::create(d.join("test.csv.gz")).unwrap(),
                flate2::Compression::fast(),
            );
            gz.write_all(t.as_bytes()).unwrap();
            gz.finish().unwrap();
        } else {
            std::fs::write(d.join("test.csv"), t).unwrap();
        }
    }
}

fn req(dir: &Path) -> PrepareRequest {
    PrepareRequest {
        source: DatasetSource::AliExpress {
            dir: dir.to_path_buf(),
        },
        split: aliexpress_split(),
        cache_dir: None,
    }
}

#[test]
fn five_countries_two_tasks_and_the_official_split() {
    let tmp = tempfile::tempdir().unwrap();
    write_release(tmp.path());
    let p = prepare(&req(tmp.path())).unwrap();
    // valid: the last floor(10 %) of each train file: 3 + 2 + 4 + 1 + 5
    assert_eq!((p.train.len(), p.valid.len(), p.test.len()), (141, 15, 60));
    assert_eq!(p.schema.domains, ["ES", "FR", "NL", "RU", "US"]);
    assert_eq!(p.schema.tasks, ["click", "purchase"]);
    assert_eq!(p.train.domain_counts(5), [30, 19, 36, 11, 45]);
    assert_eq!(p.valid.domain_counts(5), [3, 2, 4, 1, 5]);
    assert_eq!(p.test.domain_counts(5), [10, 10, 20, 10, 10]);
    assert_eq!(p.schema.categorical_fields().len(), 17);
    assert_eq!(p.schema.numeric_fields().len(), 63);
    let (mut clicks, mut buys) = (0usize, 0usize);
    for (i, (_, train, test)) in SIZES.iter().enumerate() {
        for (seed, n) in [(2 * i, *train), (2 * i + 1, *test)] {
            for r in 0..n {
                let g = seed * 1000 + r;
                clicks += usize::from(g.is_multiple_of(3));
                buys += usize::from(g.is_multiple_of(6));
            }
        }
    }
    let sum = |t: usize| -> usize {
        [&p.train, &p.valid, &p.test]
            .iter()
            .map(|s| s.labels[t].iter().sum::<f32>() as usize)
            .sum()
    };
    assert_eq!((sum(0), sum(1)), (clicks, buys));
    // the test split is the test files, in country order: US's gzipped rows come last
    assert_eq!(p.test.labels[0][50], 1.0); // US test row 0: g = 9000
    assert_eq!(p.test.labels[0][51], 0.0);
}

#[test]
fn missing_files_and_bad_rows_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let e = prepare(&req(tmp.path())).unwrap_err().to_string();
    assert!(
        e.contains("AliExpress_ES/train.csv")
            && e.contains("missing AliExpress file")
            && e.contains("tianchi.aliyun.com/dataset/74690"),
        "{e}"
    );
    write_release(tmp.path());
    std::fs::remove_file(tmp.path().join("AliExpress_RU").join("test.csv")).unwrap();
    let e = prepare(&req(tmp.path())).unwrap_err().to_string();
    assert!(e.contains("AliExpress_RU/test.csv"), "{e}");
    write_release(tmp.path());
    let f = tmp.path().join("AliExpress_FR").join("train.csv");
    let good = std::fs::read_to_string(&f).unwrap();
    let mut lines: Vec<String> = good.lines().map(str::to_string).collect();
    lines[4] = lines[4].rsplit_once(',').unwrap().0.to_string() + ",7";
    std::fs::write(&f, lines.join("\n") + "\n").unwrap();
    let e = prepare(&req(tmp.path())).unwrap_err().to_string();
    assert!(
        e.contains("AliExpress_FR/train.csv:5: field `conversion`"),
        "{e}"
    );
    std::fs::write(&f, good.replace(",click,", ",clk,")).unwrap();
    let e = prepare(&req(tmp.path())).unwrap_err().to_string();
    assert!(
        e.contains("AliExpress_FR/train.csv:1: field `click`") && e.contains("missing"),
        "{e}"
    );
    let cfg = DatasetConfig {
        name: DatasetName::AliExpress,
        data_dir: Some(tmp.path().to_path_buf()),
        split: Some(SplitName::M3oe),
        ..DatasetConfig::default()
    };
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("split = \"official\""), "{e}");
}
