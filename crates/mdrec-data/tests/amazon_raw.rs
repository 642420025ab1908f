//! The `amazon-raw` recipe on a small release generated in the official layout: per-category
//! review files `<Category>.json.gz` and metadata files `meta_<Category>.json.gz`, gzipped JSON
//! lines with the official keys.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use mdrec_data::amazon_raw::*;
use mdrec_data::*;

const DAY: i64 = 86_400;
/// 2017-09-01 00:00 UTC, inside the window.
const BASE: i64 = 1_504_224_000;
const USERS: usize = 4;
const ITEMS_PER_DOMAIN: usize = 3;

fn asin(d: usize, j: usize) -> String {
    format!("I{d:02}{j}")
}

/// The item reviewed at position `p` (0..75): domains interleave in time, so that every domain
/// has training rows.
fn asin_at(p: usize) -> String {
    asin(p % 25, p / 25)
}

/// The rating of user `u` for the item at position `p`.
fn rating(u: usize, p: usize) -> u32 {
    1 + ((u * 7 + p * 3) % 5) as u32
}

/// The time of user `u`'s review at position `p`: 4 days apart, users on consecutive days.
fn time(u: usize, p: usize) -> i64 {
    BASE + (p as i64 * 4 + u as i64) * DAY
}

fn review(u: &str, a: &str, r: u32, t: i64) -> String {
    format!(
        "{{\"overall\": {r}.0, \"verified\": true, \"reviewTime\": \"x\", \"reviewerID\": \"{u}\", \
         \"asin\": \"{a}\", \"reviewerName\": \"N\", \"reviewText\": \"ok, \\\"fine\\\"\", \
         \"summary\": \"s\", \"unixReviewTime\": {t}}}\n"
    )
}

fn gz(path: &Path, text: &str) {
    let mut w = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::fast(),
    );
    w.write_all(text.as_bytes()).unwrap();
    w.finish().unwrap();
}

/// Two categories' files: `Appliances` holds the reviews of domains 0..12, `Books` the rest, plus
/// rows the preprocessing drops: one outside the window, one of an item of another main category,
/// one of an item without metadata and five that the 3-core removes in three rounds.
fn write_release(dir: &Path) {
    let (mut a, mut b) = (String::new(), String::new());
    for p in 0..25 * ITEMS_PER_DOMAIN {
        for u in 0..USERS {
            let line = review(&format!("U{u}"), &asin_at(p), rating(u, p), time(u, p));
            if p % 25 < 13 {
                a.push_str(&line)
            } else {
                b.push_str(&line)
            }
        }
    }
    a.push_str(&review("U0", &asin(0, 0), 5, 1_451_606_400)); // 2016-01-01
    a.push_str(&review("U0", "X1", 5, BASE));
    b.push_str(&review("U1", "N1", 5, BASE));
    // U9 has 3 reviews, but Z1's other reviewers have one each: Z1 falls, then U9
    b.push_str(&review("U9", "Z1", 4, BASE));
    b.push_str(&review("U9", &asin(0, 0), 4, BASE));
    b.push_str(&review("U9", &asin(0, 1), 4, BASE));
    b.push_str(&review("U10", "Z1", 4, BASE));
    b.push_str(&review("U11", "Z1", 4, BASE));
    gz(&dir.join("Appliances.json.gz"), &a);
    gz(&dir.join("Books.json.gz"), &b);
    let (mut ma, mut mb) = (String::new(), String::new());
    for (d, name) in AMAZON_DOMAINS.iter().enumerate() {
        for j in 0..ITEMS_PER_DOMAIN {
            let rank = match j {
                0 => format!("\"rank\": \"{} in Books (\", ", 1000 + d),
                1 => "\"rank\": [\">#3 in Toys & Games (See Top 100)\"], ".to_string(),
                _ => String::new(),
            };
            let line = format!(
                "{{\"category\": [], \"title\": \"t\", \"brand\": \"Brand{}\", {rank}\"main_cat\": \"{}\", \"price\": \"${}.99\", \"asin\": \"{}\"}}\n",
                d % 4,
                name,
                d,
                asin(d, j)
            );
            if d < 13 {
                ma.push_str(&line)
            } else {
                mb.push_str(&line)
            }
        }
    }
    ma.push_str(&format!(
        "{{\"brand\": \"Other\", \"main_cat\": \"Appliances\", \"asin\": \"{}\"}}\n",
        asin(0, 0)
    )); // a repeated asin: its first line counts
    ma.push_str("{\"main_cat\": \"All Beauty\", \"asin\": \"X1\"}\n");
    mb.push_str("{\"main_cat\": \"Books\", \"asin\": \"Z1\"}\n");
    gz(&dir.join("meta_Appliances.json.gz"), &ma);
    gz(&dir.join("meta_Books.json.gz"), &mb);
}

fn req(dir: &Path) -> PrepareRequest {
    PrepareRequest {
        source: DatasetSource::AmazonRaw {
            dir: dir.to_path_buf(),
        },
        split: AliccpAmazon::Amazon.split(),
        cache_dir: None,
    }
}

#[test]
fn aread_preprocessing_of_the_per_category_files() {
    let tmp = tempfile::tempdir().unwrap();
    write_release(tmp.path());
    let files = amazon_raw_files(tmp.path()).unwrap();
    assert_eq!(files.reviews.len(), 2);
    let (t, stats) = load_with_stats(&files).unwrap();
    let n = 25 * ITEMS_PER_DOMAIN * USERS;
    assert_eq!(
        stats,
        AmazonRawStats {
            reviews: n as u64 + 8,
            in_window: n as u64 + 7,
            no_meta: 1,
            other_category: 1,
            below_core: 5,
            kept: n as u64,
        }
    );
    assert_eq!(t.n_rows(), n);
    let col = |name: &str| -> Vec<String> {
        let c = t.column(name).unwrap();
        (0..t.n_rows()).map(|r| c.get(r).to_string()).collect()
    };
    // labels: rating above the user's mean over the kept reviews
    let items = 25 * ITEMS_PER_DOMAIN;
    let mean = |u: usize| (0..items).map(|k| rating(u, k) as f64).sum::<f64>() / items as f64;
    let mut want_pos = 0;
    for u in 0..USERS {
        want_pos += (0..items)
            .filter(|&k| rating(u, k) as f64 > mean(u))
            .count();
    }
    assert_eq!(col("label").iter().filter(|l| *l == "1").count(), want_pos);
    // rows in time order: the first row is U0's review of item 0 on BASE
    let (user, item, ts) = (col("userid"), col("itemid"), col("timestamp"));
    assert_eq!((user[0].as_str(), item[0].as_str()), ("U0", "I000"));
    assert!(ts
        .windows(2)
        .all(|w| w[0].parse::<i64>().unwrap() <= w[1].parse::<i64>().unwrap()));
    // item features of I000 (the first metadata line counts): 2017-09-01 was a Friday
    assert_eq!(col("weekday")[0], "4");
    assert_eq!(col("domain")[0], "0");
    assert_eq!(col("brand")[0], "Brand0");
    assert_eq!(col("sales_chart")[0], "Books");
    assert_eq!(col("sales_rank")[0], "9"); // floor(log2 1000)
    assert_eq!(col("price")[0], "0"); // floor(log2(1 + 0.99))
                                      // sequences of U0's review at position 50 (200 days after BASE): positions 5..49 lie within
                                      // 183 days
    let r = (0..n)
        .find(|&r| user[r] == "U0" && item[r] == asin_at(50))
        .unwrap();
    let label = |k: usize| rating(0, k) as f64 > mean(0);
    let last5 = |want: bool| -> String {
        let ks: Vec<usize> = (5..50).filter(|&k| label(k) == want).collect();
        ks[ks.len() - 5..]
            .iter()
            .map(|&k| asin_at(k))
            .collect::<Vec<_>>()
            .join("|")
    };
    assert_eq!(col("user_pos_6month_seq")[r], last5(true));
    assert_eq!(col("user_neg_6month_seq")[r], last5(false));
    assert_eq!(col("user_pos_6month_seq")[0], "");

    // the recipe: 25 domains, AREAD's time-quantile split
    let p = prepare(&req(tmp.path())).unwrap();
    assert_eq!(p.schema.domains.len(), 25);
    assert_eq!(p.schema.domains[3], "Books");
    let times: Vec<f64> = ts.iter().map(|t| t.parse().unwrap()).collect();
    let (q9, q95) = (
        quantile(&times, 0.9).unwrap(),
        quantile(&times, 0.95).unwrap(),
    );
    let n_train = times.iter().filter(|&&t| t < q9).count();
    let n_valid = times.iter().filter(|&&t| t >= q9 && t < q95).count();
    assert_eq!(
        (p.train.len(), p.valid.len(), p.test.len()),
        (n_train, n_valid, n - n_train - n_valid)
    );
    assert!(n_train < n && n_valid > 0);
    assert_eq!(p.train.domain_counts(25)[0], 12);
}

#[test]
fn missing_files_and_bad_lines_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let e = prepare(&req(tmp.path())).unwrap_err().to_string();
    assert!(
        e.contains("<Category>.json.gz")
            && e.contains("missing Amazon Review 2018 review file")
            && e.contains("nijianmo.github.io/amazon"),
        "{e}"
    );
    write_release(tmp.path());
    std::fs::remove_file(tmp.path().join("meta_Books.json.gz")).unwrap();
    let e = prepare(&req(tmp.path())).unwrap_err().to_string();
    assert!(
        e.contains("meta_Books.json.gz: missing Amazon Review 2018 metadata of Books.json.gz"),
        "{e}"
    );
    // a line without a required key (line 3 of Books)
    write_release(tmp.path());
    let mut s = String::new();
    let _ = write!(s, "{}", review("U0", "I130", 5, BASE));
    let _ = write!(s, "{}", review("U1", "I130", 5, BASE));
    s.push_str("{\"overall\": 4.0, \"reviewerID\": \"U2\", \"unixReviewTime\": 1504224000}\n");
    gz(&tmp.path().join("Books.json.gz"), &s);
    let e = prepare(&req(tmp.path())).unwrap_err().to_string();
    assert!(
        e.contains("Books.json.gz:3: field `asin`: missing field `asin`"),
        "{e}"
    );
    // a cut-off last line (uncompressed files are read too)
    std::fs::remove_file(tmp.path().join("Books.json.gz")).unwrap();
    let cut = review("U0", "I130", 5, BASE);
    std::fs::write(
        tmp.path().join("Books.json"),
        format!("{cut}{}", &cut[..40]),
    )
    .unwrap();
    let e = prepare(&req(tmp.path())).unwrap_err().to_string();
    assert!(e.contains("Books.json:2: field `json`: EOF"), "{e}");
    // a cut-off gzip stream is a read error naming the file
    std::fs::remove_file(tmp.path().join("Books.json")).unwrap();
    write_release(tmp.path());
    let p = tmp.path().join("Appliances.json.gz");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = prepare(&req(tmp.path())).unwrap_err().to_string();
    assert!(e.contains("Appliances.json.gz:"), "{e}");
}
