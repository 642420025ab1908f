//! `mdrec train` end to end on the recipes that read official raw layouts, with small releases
//! generated in that layout (the data crate's tests check the readers themselves).

use std::fmt::Write;
use std::path::Path;
use std::process::{Command, Output};

fn mdrec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mdrec"))
        .args(args)
        .output()
        .expect("run mdrec")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `mdrec train` of MMoE for one epoch on `data` with `dataset_args` into `run`; the run's
/// fitted schema (`schema.json`).
fn train_mmoe(dataset_args: &[&str], data: &Path, run: &Path, batch: usize) -> serde_json::Value {
    let batch = format!("train.batch_size={batch}");
    let mut args = vec!["train"];
    args.extend_from_slice(dataset_args);
    args.extend([
        "--data-dir",
        data.to_str().unwrap(),
        "--model",
        "mmoe",
        "--epochs",
        "1",
        "--quiet",
        "--set",
        &batch,
        "--out",
        run.to_str().unwrap(),
    ]);
    let o = mdrec(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_str(&std::fs::read_to_string(run.join("schema.json")).unwrap()).unwrap()
}

/// A KuaiRand-Pure release: three logs of 200 rows on tabs 0, 1, 2, 4 (tab 2 the smallest),
/// 30 users, 40 videos, with their feature files.
fn write_kuairand_pure(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let logs = [
        "log_standard_4_08_to_4_21_pure.csv",
        "log_standard_4_22_to_5_08_pure.csv",
        "log_random_4_22_to_5_08_pure.csv",
    ];
    for (f, name) in logs.iter().enumerate() {
        let mut s = String::from("user_id,video_id,date,hourmin,time_ms,is_click,is_like,is_follow,is_comment,is_forward,is_hate,long_view,play_time_ms,duration_ms,profile_stay_time,comment_stay_time,is_profile_enter,is_rand,tab\n");
        for i in 0..200usize {
            let g = f * 200 + i;
            let tab = [1, 1, 1, 0, 4, 1, 0, 2, 1, 1][i % 10];
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},0,0,0,0,0,{},5000,12000,0,0,0,{},{tab}",
                g % 30,
                (g * 7) % 40,
                20220408 + f,
                (i % 24) * 100,
                1_649_376_000_000u64 + g as u64 * 1000,
                u8::from((g * 13) % 5 < 2),
                u8::from((g * 11) % 7 < 2),
                u8::from(f == 2),
            );
        }
        std::fs::write(dir.join(name), s).unwrap();
    }
    let mut s = String::from("user_id,user_active_degree,is_lowactive_period,is_live_streamer,is_video_author,follow_user_num,follow_user_num_range,fans_user_num,fans_user_num_range,friend_user_num,friend_user_num_range,register_days,register_days_range");
    for k in 0..18 {
        let _ = write!(s, ",onehot_feat{k}");
    }
    s.push('\n');
    for u in 0..30 {
        let _ = write!(
            s,
            "{u},full_active,0,0,{},5,\"(0,10]\",312,\"[100,1k)\",0,0,3624,730+",
            u % 2
        );
        for k in 0..18 {
            let _ = write!(s, ",{}", (u + k) % 4);
        }
        s.push('\n');
    }
    std::fs::write(dir.join("user_features_pure.csv"), s).unwrap();
    let mut s = String::from("video_id,author_id,video_type,upload_dt,upload_type,visible_status,video_duration,server_width,server_height,music_id,music_type,tag\n");
    for v in 0..40 {
        let _ = writeln!(
            s,
            "{v},{},NORMAL,2020-07-08,ShortImport,1,17200.0,720,1280,989206467,4,\"{},{}\"",
            v % 9,
            v % 5,
            10 + v % 3
        );
    }
    std::fs::write(dir.join("video_features_basic_pure.csv"), s).unwrap();
}

#[test]
fn train_runs_on_a_kuairand_pure_release() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("KuaiRand-Pure").join("data");
    write_kuairand_pure(&data);
    let run = tmp.path().join("run");
    let schema = train_mmoe(&["--dataset", "kuairand-pure"], &data, &run, 64);
    // tabs 1 (360 rows) and 0 (120) kept; tabs 2 and 4 tie at 60 and the lower tab wins
    assert_eq!(schema["domains"], serde_json::json!(["0", "1", "2"]));
    assert_eq!(schema["tasks"], serde_json::json!(["click", "long_view"]));
    assert!(run.join("report.json").is_file());

    let o = mdrec(&[
        "train",
        "--dataset",
        "kuairand-1k",
        "--data-dir",
        data.to_str().unwrap(),
        "--epochs",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("log_standard_4_08_to_4_21_1k.csv")
            && e.contains("KuaiRand-1K.tar.gz")
            && e.contains("zenodo"),
        "{e}"
    );
}

#[test]
fn data_list_shows_the_raw_layout_recipes() {
    let o = mdrec(&["data", "list"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s = String::from_utf8_lossy(&o.stdout);
    for want in [
        "| kuairand-pure |",
        "M3oE protocol",
        "| kuairand-1k |",
        "Crocodile protocol: tabs 0, 1, 2, 4, 6",
        "zenodo.org/records/10439422",
        "| aliexpress |  | official |",
        "tianchi.aliyun.com/dataset/74690",
        "| aliccp-raw-crocodile |  | official |",
        "Crocodile protocol: scenarios 1, 2, 3",
        "| aliccp-raw-aread |  | aread |",
        "tianchi.aliyun.com/dataset/408",
        "| amazon-raw |  | aread |",
        "nijianmo.github.io/amazon",
    ] {
        assert!(s.contains(want), "{want}\n{s}");
    }
}

#[test]
fn aliexpress_refuses_the_movielens_split_and_names_a_missing_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let o = mdrec(&[
        "train",
        "--dataset",
        "aliexpress",
        "--data-dir",
        dir,
        "--split",
        "m3oe",
        "--epochs",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("split = \"official\""),
        "{}",
        stderr(&o)
    );
    // Without --split: its own `official` protocol, which reads the files.
    let o = mdrec(&[
        "train",
        "--dataset",
        "aliexpress",
        "--data-dir",
        dir,
        "--epochs",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("AliExpress_ES/train.csv") && e.contains("tianchi.aliyun.com/dataset/74690"),
        "{e}"
    );
}

/// An Ali-CCP release in the official layout (no header; `\x01`, `\x02`, `\x03` inside the
/// feature lists): 90 train and 30 test skeleton rows over scenarios 1, 2, 3, ten md5s each.
fn write_aliccp(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (part, n) in [("train", 90usize), ("test", 30)] {
        let mut s = String::new();
        for i in 0..n {
            let g = if part == "test" { 1000 + i } else { i };
            let list = [
                ("205", g * 7 % 23),
                ("206", g % 5),
                ("207", g % 3),
                ("301", 1 + g % 3),
                ("508", g % 4),
            ]
            .iter()
            .map(|(f, v)| format!("{f}\x02{v}\x031.0"))
            .collect::<Vec<_>>()
            .join("\x01");
            let click = u8::from((g * 13) % 5 < 2);
            let _ = writeln!(s, "{},{click},0,{part}{},5,{list}", i + 1, i % 10);
        }
        std::fs::write(dir.join(format!("sample_skeleton_{part}.csv")), s).unwrap();
        let mut s = String::new();
        for k in 0..10 {
            let _ = writeln!(
                s,
                "{part}{k},3,101\x02{}\x031.0\x01121\x02{}\x031.0\x01122\x02{}\x031.0",
                k % 6,
                k % 2,
                k % 3
            );
        }
        std::fs::write(dir.join(format!("common_features_{part}.csv")), s).unwrap();
    }
}

#[test]
fn train_runs_on_an_aliccp_release_with_crocodiles_protocol() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("aliccp");
    write_aliccp(&data);
    let run = tmp.path().join("run");
    let schema = train_mmoe(
        &["--dataset", "aliccp-raw-crocodile", "--split", "official"],
        &data,
        &run,
        32,
    );
    assert_eq!(schema["domains"], serde_json::json!(["S1", "S2", "S3"]));
    assert_eq!(schema["tasks"], serde_json::json!(["click"]));
    assert!(run.join("report.json").is_file());
}

#[test]
fn raw_aliccp_and_amazon_name_a_missing_file_and_the_download_page() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    for (dataset, want) in [
        ("aliccp-raw-aread", "sample_skeleton_train.csv"),
        ("amazon-raw", "<Category>.json.gz"),
    ] {
        let o = mdrec(&[
            "train",
            "--dataset",
            dataset,
            "--data-dir",
            dir,
            "--epochs",
            "1",
        ]);
        // (no --split: their own `aread` protocol)
        assert_eq!(o.status.code(), Some(2), "{dataset}");
        let e = stderr(&o);
        let page = if dataset == "amazon-raw" {
            "nijianmo.github.io/amazon"
        } else {
            "tianchi.aliyun.com/dataset/408"
        };
        assert!(e.contains(want) && e.contains(page), "{dataset}: {e}");
    }
}
