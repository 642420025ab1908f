//! The raw AliCCP recipes on a small release generated in the official layout: no header,
//! comma-separated `sample_skeleton_{train,test}.csv` (`sample_id,click,buy,md5,feature_num,
//! feature_list`) and `common_features_{train,test}.csv` (`md5,feature_num,feature_list`), feature
//! lists of `field\x02id\x03value` entries separated by `\x01`; one file gzipped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use mdrec_data::aliccp_raw::*;
use mdrec_data::*;

/// Scenario (feature 301) of skeleton row `i`, by `i % 10`: 3 × "1", 5 × "2", 1 × "3", 1 × "4".
const SCENARIOS: [&str; 10] = ["1", "1", "2", "2", "2", "3", "2", "1", "4", "2"];
const N_TRAIN: usize = 40;
const N_TEST: usize = 20;

/// One skeleton row of the fixture.
struct Row {
    click: bool,
    buy: bool,
    md5: usize,
    item: usize,
    category: usize,
    scenario: &'static str,
}

fn md5(k: usize) -> String {
    format!("{k:032x}")
}

/// The user id (feature 101) of the common-features line of md5 number `k`.
fn user(k: usize) -> usize {
    500 + k % 4
}

/// The skeleton rows of the train (`test = false`) or test file.
fn rows(test: bool) -> Vec<Row> {
    let n = if test { N_TEST } else { N_TRAIN };
    (0..n)
        .map(|i| {
            let g = if test { 100 + i } else { i };
            let click = g % 3 == 0;
            Row {
                click,
                buy: click && g % 2 == 0,
                md5: if test { 1000 + i % 5 } else { i % 7 },
                item: 300 + (g * 5) % 9,
                category: 20 + i % 4,
                scenario: SCENARIOS[i % 10],
            }
        })
        .collect()
}

fn entries(list: &[(&str, String)]) -> String {
    list.iter()
        .map(|(f, id)| format!("{f}\x02{id}\x031.0"))
        .collect::<Vec<_>>()
        .join("\x01")
}

fn skeleton_text(test: bool) -> String {
    let mut s = String::new();
    for (i, r) in rows(test).iter().enumerate() {
        let mut list = vec![
            ("205", r.item.to_string()),
            ("206", r.category.to_string()),
            ("207", (i % 5).to_string()),
            ("210", (i % 3).to_string()),
            ("210", "7".to_string()),
            ("216", (i % 2).to_string()),
            ("301", r.scenario.to_string()),
            ("508", (i % 6).to_string()),
        ];
        if i % 2 == 0 {
            list.push(("853", "9".to_string()));
        }
        let _ = writeln!(
            s,
            "{},{},{},{},{},{}",
            i + 1,
            u8::from(r.click),
            u8::from(r.buy),
            md5(r.md5),
            list.len(),
            entries(&list)
        );
    }
    s
}

fn common_text(test: bool) -> String {
    let keys: Vec<usize> = if test {
        (1000..1006).collect()
    } else {
        (0..10).collect()
    };
    let mut s = String::new();
    let mut line = |k: usize, u: usize| {
        let list = vec![
            ("101", u.to_string()),
            ("121", (k % 2).to_string()),
            ("122", (k % 3).to_string()),
            ("109_14", k.to_string()),
            ("109_14", (k + 1).to_string()),
            ("999", "1".to_string()),
        ];
        let _ = writeln!(s, "{},{},{}", md5(k), list.len(), entries(&list));
    };
    for &k in &keys {
        line(k, user(k));
    }
    line(keys[0], 9999); // a repeated md5: its first line counts
    s
}

/// Writes the release; `common_features_test` is gzipped.
fn write_release(dir: &Path) {
    std::fs::write(dir.join("sample_skeleton_train.csv"), skeleton_text(false)).unwrap();
    std::fs::write(dir.join("sample_skeleton_test.csv"), skeleton_text(true)).unwrap();
    std::fs::write(dir.join("common_features_train.csv"), common_text(false)).unwrap();
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(dir.join("common_features_test.csv.gz")).unwrap(),
        flate2::Compression::fast(),
    );
    gz.write_all(common_text(true).as_bytes()).unwrap();
    gz.finish().unwrap();
}

fn req(dir: &Path, protocol: AliccpProtocol) -> PrepareRequest {
    PrepareRequest {
        source: DatasetSource::AliccpRaw {
            dir: dir.to_path_buf(),
            protocol,
        },
        split: protocol.split(),
        cache_dir: None,
    }
}

fn column<'a>(t: &'a RawTable, name: &str) -> Vec<&'a str> {
    let c = t.column(name).unwrap();
    (0..t.n_rows()).map(|r| c.get(r)).collect()
}

#[test]
fn crocodile_protocol_three_scenarios_joined_and_split() {
    let tmp = tempfile::tempdir().unwrap();
    write_release(tmp.path());
    let p = prepare(&req(tmp.path(), AliccpProtocol::Crocodile)).unwrap();
    // scenario 4 skipped: train file 36 rows (valid: the last floor(3.6) = 3), test file 18
    assert_eq!((p.train.len(), p.valid.len(), p.test.len()), (33, 3, 18));
    assert_eq!(p.schema.domains, ["S1", "S2", "S3"]);
    assert_eq!(p.schema.tasks, ["click"]);
    // the last three kept train rows are i = 36, 37, 39: scenarios 2, 1, 2
    assert_eq!(p.train.domain_counts(3), [11, 18, 4]);
    assert_eq!(p.valid.domain_counts(3), [1, 2, 0]);
    assert_eq!(p.test.domain_counts(3), [6, 10, 2]);
    let clicks: usize = [false, true]
        .iter()
        .flat_map(|&t| rows(t))
        .filter(|r| r.scenario != "4" && r.click)
        .count();
    let got: f32 = [&p.train, &p.valid, &p.test]
        .iter()
        .map(|s| s.labels[0].iter().sum::<f32>())
        .sum();
    assert_eq!(got as usize, clicks);

    // the join: user fields by md5, first entry of a repeated field, absent field empty
    let files = aliccp_files(tmp.path()).unwrap();
    assert!(files.commons[1].to_string_lossy().ends_with(".csv.gz"));
    let t = load(AliccpProtocol::Crocodile, &files).unwrap();
    let kept: Vec<Row> = [false, true]
        .iter()
        .flat_map(|&t| rows(t))
        .filter(|r| r.scenario != "4")
        .collect();
    assert_eq!(t.n_rows(), kept.len());
    let want_user: Vec<String> = kept.iter().map(|r| user(r.md5).to_string()).collect();
    assert_eq!(column(&t, "userid"), want_user);
    let want_items: Vec<String> = kept.iter().map(|r| r.item.to_string()).collect();
    assert_eq!(column(&t, "itemid"), want_items);
    assert_eq!(column(&t, "109_14")[..3], ["0", "1", "2"]);
    assert_eq!(column(&t, "210")[..3], ["0", "1", "2"]);
    assert_eq!(column(&t, "853")[..2], ["9", ""]);
    assert_eq!(column(&t, "150_14")[0], "");
    let buys = kept.iter().filter(|r| r.buy).count();
    assert_eq!(
        column(&t, "buy").iter().filter(|&&b| b == "1").count(),
        buys
    );
    // origins: the skeleton file and line (row i of the file is line i + 1)
    assert_eq!(t.row_line[..3], [1, 2, 3]);
    assert!(t
        .file_of(t.n_rows() - 1)
        .ends_with("sample_skeleton_test.csv"));
}

#[test]
fn aread_protocol_filters_users_items_and_keeps_the_largest_categories() {
    let tmp = tempfile::tempdir().unwrap();
    write_release(tmp.path());
    let files = aliccp_files(tmp.path()).unwrap();
    let filter = AliccpAreadFilter {
        min_count: 7,
        min_domain_users: 2,
        min_domain_items: 3,
        n_domains: 2,
    };
    let t = load_with(AliccpProtocol::Aread, &files, &filter).unwrap();
    // the protocol computed independently over the generated rows
    let all: Vec<(bool, Row)> = [false, true]
        .iter()
        .flat_map(|&t| rows(t).into_iter().map(move |r| (t, r)))
        .collect();
    let mut nu: HashMap<usize, u64> = HashMap::new();
    let mut ni: HashMap<usize, u64> = HashMap::new();
    for (_, r) in &all {
        *nu.entry(user(r.md5)).or_default() += 1;
        *ni.entry(r.item).or_default() += 1;
    }
    let freq: Vec<&(bool, Row)> = all
        .iter()
        .filter(|(_, r)| nu[&user(r.md5)] >= 7 && ni[&r.item] >= 7)
        .collect();
    assert!(
        freq.len() < all.len(),
        "the frequency filter must drop rows"
    );
    let mut per_cat: BTreeMap<usize, (usize, BTreeSet<usize>, BTreeSet<usize>)> = BTreeMap::new();
    for (_, r) in &freq {
        let e = per_cat.entry(r.category).or_default();
        e.0 += 1;
        e.1.insert(user(r.md5));
        e.2.insert(r.item);
    }
    let mut cands: Vec<(usize, usize)> = per_cat
        .iter()
        .filter(|(_, e)| e.1.len() >= 2 && e.2.len() >= 3)
        .map(|(&c, e)| (c, e.0))
        .collect();
    cands.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let chosen: BTreeSet<String> = cands.iter().take(2).map(|c| c.0.to_string()).collect();
    assert_eq!(chosen.len(), 2);
    let kept: Vec<&&(bool, Row)> = freq
        .iter()
        .filter(|(_, r)| chosen.contains(&r.category.to_string()))
        .collect();
    assert_eq!(t.n_rows(), kept.len());
    let doms: BTreeSet<String> = column(&t, "domain").iter().map(|s| s.to_string()).collect();
    assert_eq!(doms, chosen);
    // AREAD's split column: test file 2, the last 10 % of the kept train rows 1
    let n_train = kept.iter().filter(|(test, _)| !test).count();
    let tags = column(&t, "train_tag");
    let count = |v: &str| tags.iter().filter(|&&x| x == v).count();
    let n_valid = n_train / 10;
    assert_eq!(
        (count("0"), count("1"), count("2")),
        (n_train - n_valid, n_valid, kept.len() - n_train)
    );
    // the whole recipe (AREAD's default filters) leaves nothing of so small a release
    let e = prepare(&req(tmp.path(), AliccpProtocol::Aread))
        .unwrap_err()
        .to_string();
    assert!(e.contains("aliccp-raw-aread: no rows left"), "{e}");
}

#[test]
fn missing_files_bad_lines_and_unjoined_md5s_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let e = prepare(&req(tmp.path(), AliccpProtocol::Crocodile))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("sample_skeleton_train.csv")
            && e.contains("missing Ali-CCP file")
            && e.contains("tianchi.aliyun.com/dataset/408"),
        "{e}"
    );
    write_release(tmp.path());
    std::fs::remove_file(tmp.path().join("common_features_test.csv.gz")).unwrap();
    let e = prepare(&req(tmp.path(), AliccpProtocol::Crocodile))
        .unwrap_err()
        .to_string();
    assert!(e.contains("common_features_test.csv: missing"), "{e}");

    let check = |skeleton: String, want: &str| {
        write_release(tmp.path());
        std::fs::write(tmp.path().join("sample_skeleton_train.csv"), skeleton).unwrap();
        let e = prepare(&req(tmp.path(), AliccpProtocol::Crocodile))
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "want {want}: {e}");
    };
    let good = skeleton_text(false);
    let mut lines: Vec<String> = good.lines().map(str::to_string).collect();
    // a label other than 0 / 1 on line 5
    let mut bad = lines.clone();
    bad[4] = bad[4].replacen(",0,", ",2,", 1); // row 5: click 0 -> 2
    check(
        bad.join("\n") + "\n",
        "sample_skeleton_train.csv:5: field `click`",
    );
    // an entry without its value separator on line 3
    let mut bad = lines.clone();
    bad[2] = bad[2].replacen("\x031.0", "", 1);
    check(
        bad.join("\n") + "\n",
        "sample_skeleton_train.csv:3: field `feature_list`: entry 1",
    );
    // too few fields on line 2
    let mut bad = lines.clone();
    bad[1] = "2,0,0".into();
    check(
        bad.join("\n") + "\n",
        "sample_skeleton_train.csv:2: field `line`: expected 6",
    );
    // a cut-off file: the last line ends inside its feature list
    let last = lines.pop().unwrap();
    lines.push(last[..last.len() - 20].to_string());
    check(
        lines.join("\n"),
        &format!("sample_skeleton_train.csv:{N_TRAIN}: field `feature_list`: feature_num is"),
    );
    // an md5 the common features lack (train skeleton lines use md5s 0..6)
    write_release(tmp.path());
    let common = common_text(false)
        .lines()
        .filter(|l| !l.starts_with(&md5(3)))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(tmp.path().join("common_features_train.csv"), common).unwrap();
    let e = prepare(&req(tmp.path(), AliccpProtocol::Crocodile))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("sample_skeleton_train.csv:4: field `md5`")
            && e.contains(&md5(3))
            && e.contains("common_features_train.csv"),
        "{e}"
    );
    // a cut-off gzip stream is a read error naming the file
    write_release(tmp.path());
    let gz = tmp.path().join("common_features_test.csv.gz");
    let bytes = std::fs::read(&gz).unwrap();
    std::fs::write(&gz, &bytes[..bytes.len() / 2]).unwrap();
    let e = prepare(&req(tmp.path(), AliccpProtocol::Crocodile))
        .unwrap_err()
        .to_string();
    assert!(e.contains("common_features_test.csv.gz:"), "{e}");
}
