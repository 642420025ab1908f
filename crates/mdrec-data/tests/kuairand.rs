//! The KuaiRand recipes on small releases generated in the official layout: the five files of
//! `KuaiRand-<V>/data/` with the official headers (README column order), pandas quoting for
//! values holding a comma (`"(0,10]"`, `"12,65"`), `\n` line ends, no compression.

use std::fmt::Write;
use std::path::Path;

use mdrec_data::kuairand::*;
use mdrec_data::*;

const LOG_HEADER: &str = "user_id,video_id,date,hourmin,time_ms,is_click,is_like,is_follow,is_comment,is_forward,is_hate,long_view,play_time_ms,duration_ms,profile_stay_time,comment_stay_time,is_profile_enter,is_rand,tab";

/// Tab of the `i`-th row of a log: per 40 rows, tab 1 ×18, 0 ×8, 4 ×5, 2 ×4, 6 ×3, 3 ×1, 9 ×1.
fn tab_of(i: usize) -> u32 {
    match i % 40 {
        0..=17 => 1,
        18..=25 => 0,
        26..=30 => 4,
        31..=34 => 2,
        35..=37 => 6,
        38 => 3,
        _ => 9,
    }
}

/// One generated log row: (user, video, tab, click, long_view, time_ms).
struct Row {
    user: usize,
    video: usize,
    tab: u32,
    click: bool,
    long_view: bool,
    time: u64,
}

/// The rows of log file `f` (0, 1: standard; 2: random). Standard weeks 1-2: 80 rows, weeks
/// 3-4: 80 rows, random: 40 rows whose times fall between the second standard log's.
fn rows(f: usize) -> Vec<Row> {
    let n = if f == 2 { 40 } else { 80 };
    (0..n)
        .map(|i| {
            let g = f * 1000 + i;
            Row {
                user: g % 20,
                video: (g * 7) % 30,
                tab: tab_of(i),
                click: g.is_multiple_of(3),
                long_view: g.is_multiple_of(4),
                time: match f {
                    0 => 1_649_376_000_000 + i as u64 * 1000,
                    1 => 1_650_585_600_000 + i as u64 * 1000,
                    _ => 1_650_585_600_500 + i as u64 * 2000,
                },
            }
        })
        .collect()
}

/// Writes a release into `dir` (`v` = `pure` or `1k`). User 19 and video 29 are missing from
/// the feature files.
fn write_release(dir: &Path, v: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let names = [
        format!("log_standard_4_08_to_4_21_{v}.csv"),
        format!("log_standard_4_22_to_5_08_{v}.csv"),
        format!("log_random_4_22_to_5_08_{v}.csv"),
    ];
    for (f, name) in names.iter().enumerate() {
        let mut s = format!("{LOG_HEADER}\n");
        for r in rows(f) {
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},0,0,0,0,0,{},5000,12000,0,0,0,{},{}",
                r.user,
                r.video,
                20220408 + f * 14,
                (r.time / 60_000 % 24) * 100 + r.time / 1000 % 60,
                r.time,
                u8::from(r.click),
                u8::from(r.long_view),
                u8::from(f == 2),
                r.tab
            );
        }
        std::fs::write(dir.join(name), s).unwrap();
    }
    let mut s = String::from("user_id,user_active_degree,is_lowactive_period,is_live_streamer,is_video_author,follow_user_num,follow_user_num_range,fans_user_num,fans_user_num_range,friend_user_num,friend_user_num_range,register_days,register_days_range");
    for k in 0..18 {
        let _ = write!(s, ",onehot_feat{k}");
    }
    s.push('\n');
    let degrees = ["high_active", "full_active", "middle_active", "UNKNOWN"];
    for u in 0..19 {
        let _ = write!(
            s,
            "{u},{},0,0,{},5,\"(0,10]\",312,\"[100,1k)\",0,0,3624,730+",
            degrees[u % 4],
            u % 2
        );
        for k in 0..18 {
            let _ = write!(s, ",{}", (u + k) % 3);
        }
        s.push('\n');
    }
    std::fs::write(dir.join(format!("user_features_{v}.csv")), s).unwrap();
    let mut s = String::from("video_id,author_id,video_type,upload_dt,upload_type,visible_status,video_duration,server_width,server_height,music_id,music_type,tag\n");
    for vid in 0..29usize {
        let tag = match vid % 3 {
            0 => "\"12,65\"".to_string(),
            1 => (vid % 5).to_string(),
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "{vid},{},{},2020-07-08,ShortImport,1,17200.0,720,1280,989206467,4,{tag}",
            vid % 6,
            if vid.is_multiple_of(4) {
                "AD"
            } else {
                "NORMAL"
            }
        );
    }
    std::fs::write(dir.join(format!("video_features_basic_{v}.csv")), s).unwrap();
}

fn req(src: DatasetSource) -> PrepareRequest {
    PrepareRequest {
        source: src,
        split: SplitSpec::Sequential {
            ratios: [0.8, 0.1, 0.1],
        },
        cache_dir: None,
    }
}

fn all_rows() -> Vec<Row> {
    (0..3).flat_map(rows).collect()
}

#[test]
fn pure_keeps_the_three_largest_tabs_with_click_and_long_view() {
    let tmp = tempfile::tempdir().unwrap();
    // the archive's layout: --data-dir may name KuaiRand-Pure or KuaiRand-Pure/data
    let root = tmp.path().join("KuaiRand-Pure");
    write_release(&root.join("data"), "pure");
    let src = DatasetSource::KuaiRand {
        dir: root.clone(),
        version: KuaiRandVersion::Pure,
    };
    let files = KuaiRandVersion::Pure.files(&root).unwrap();
    let counts = count_tabs(&files.logs).unwrap();
    assert_eq!(counts[&1], 90);
    assert_eq!(largest_tabs(&counts, 3), vec![0, 1, 4]);

    let p = prepare(&req(src)).unwrap();
    // 200 rows, tab 1 (90) + 0 (40) + 4 (25) kept
    let n = p.train.len() + p.valid.len() + p.test.len();
    assert_eq!(n, 155);
    assert_eq!((p.train.len(), p.valid.len(), p.test.len()), (124, 15, 16));
    assert_eq!(p.schema.domains, ["0", "1", "4"]);
    assert_eq!(p.schema.tasks, ["click", "long_view"]);
    let kept: Vec<Row> = all_rows()
        .into_iter()
        .filter(|r| [0, 1, 4].contains(&r.tab))
        .collect();
    let mut per_domain = vec![0usize; 3];
    for s in [&p.train, &p.valid, &p.test] {
        for (d, c) in s.domain_counts(3).iter().enumerate() {
            per_domain[d] += c;
        }
    }
    assert_eq!(per_domain, [40, 90, 25]);
    let pos = |t: usize| -> f32 {
        [&p.train, &p.valid, &p.test]
            .iter()
            .map(|s| s.labels[t].iter().sum::<f32>())
            .sum()
    };
    assert_eq!(pos(0) as usize, kept.iter().filter(|r| r.click).count());
    assert_eq!(pos(1) as usize, kept.iter().filter(|r| r.long_view).count());
    // ordered by time_ms: all of the first standard log first, then the later logs interleaved
    let mut times: Vec<i64> = Vec::new();
    for s in [&p.train, &p.valid, &p.test] {
        times.extend(&s.time);
    }
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    let first_std = kept.iter().filter(|r| r.time < 1_650_000_000_000).count();
    assert_eq!(
        times[first_std - 1],
        1_649_376_000_000 + 1000 * last_kept_index(0) as i64
    );
    assert_eq!(times[first_std], 1_650_585_600_000);
    assert_eq!(times[first_std + 1], 1_650_585_600_500); // the random log's first row
    assert_eq!(p.schema.fields.len(), 36);
    let tag = p.schema.fields.iter().find(|f| f.name == "tag").unwrap();
    // tags 12, 65 and 1..4 (0 is `12,65`'s video residue) plus PAD / OOV
    assert!(tag.vocab_size >= 5, "{}", tag.vocab_size);
}

/// The index (within file `f`) of the last row on a Pure tab.
fn last_kept_index(f: usize) -> usize {
    rows(f)
        .iter()
        .rposition(|r| [0, 1, 4].contains(&r.tab))
        .unwrap()
}

#[test]
fn one_k_keeps_crocodiles_five_tabs_with_click() {
    let tmp = tempfile::tempdir().unwrap();
    write_release(tmp.path(), "1k");
    let src = DatasetSource::KuaiRand {
        dir: tmp.path().to_path_buf(),
        version: KuaiRandVersion::OneK,
    };
    let p = prepare(&req(src.clone())).unwrap();
    // 200 rows minus tab 3 (5) and tab 9 (5)
    assert_eq!((p.train.len(), p.valid.len(), p.test.len()), (152, 19, 19));
    assert_eq!(p.schema.domains, ["tab0", "tab1", "tab2", "tab4", "tab6"]);
    assert_eq!(p.schema.tasks, ["click"]);
    let mut per_domain = vec![0usize; 5];
    for s in [&p.train, &p.valid, &p.test] {
        for (d, c) in s.domain_counts(5).iter().enumerate() {
            per_domain[d] += c;
        }
    }
    assert_eq!(per_domain, [40, 90, 20, 25, 15]);
    let kept: Vec<Row> = all_rows()
        .into_iter()
        .filter(|r| KUAIRAND_1K_TABS.contains(&i64::from(r.tab)))
        .collect();
    let pos: f32 = [&p.train, &p.valid, &p.test]
        .iter()
        .map(|s| s.labels[0].iter().sum::<f32>())
        .sum();
    assert_eq!(pos as usize, kept.iter().filter(|r| r.click).count());

    // the raw table: joined features, the missing user / video get empty values
    let t = mdrec_data::kuairand::load(
        KuaiRandVersion::OneK,
        &KuaiRandVersion::OneK.files(tmp.path()).unwrap(),
    )
    .unwrap();
    assert_eq!(t.n_rows(), 190);
    let user = t.column("user_id").unwrap();
    let range = t.column("follow_user_num_range").unwrap();
    let tag = t.column("tag").unwrap();
    let video = t.column("video_id").unwrap();
    for r in 0..t.n_rows() {
        let want = if user.get(r) == "19" { "" } else { "(0,10]" };
        assert_eq!(range.get(r), want, "row {r}");
        let v: usize = video.get(r).parse().unwrap();
        let want = match (v, v % 3) {
            (29, _) => "".to_string(),
            (_, 0) => "12,65".to_string(),
            (_, 1) => (v % 5).to_string(),
            _ => String::new(),
        };
        assert_eq!(tag.get(r), want, "row {r}");
    }
    let log = t.column("log").unwrap();
    assert_eq!(
        (0..t.n_rows()).filter(|&r| log.get(r) == "random").count(),
        38
    );

    // the time split on `date` works on the same table
    let mut r = req(src);
    r.split = SplitSpec::ByTime {
        column: "date".into(),
        valid_from: 20220422,
        test_from: 20220436,
    };
    let p = prepare(&r).unwrap();
    assert_eq!((p.train.len(), p.valid.len(), p.test.len()), (76, 76, 38));
}

fn fails(r: Result<Prepared, DataError>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn missing_files_and_bad_rows_name_the_file_and_how_to_get_the_data() {
    let tmp = tempfile::tempdir().unwrap();
    let src = DatasetSource::KuaiRand {
        dir: tmp.path().to_path_buf(),
        version: KuaiRandVersion::Pure,
    };
    let e = fails(prepare(&req(src.clone())));
    assert!(
        e.contains("log_standard_4_08_to_4_21_pure.csv")
            && e.contains("missing KuaiRand-Pure file")
            && e.contains("zenodo.org/records/10439422")
            && e.contains("KuaiRand-Pure.tar.gz")
            && e.contains("CC BY-SA 4.0"),
        "{e}"
    );
    write_release(tmp.path(), "pure");
    let videos = tmp.path().join("video_features_basic_pure.csv");
    std::fs::remove_file(&videos).unwrap();
    let e = fails(prepare(&req(src.clone())));
    assert!(
        e.contains("video_features_basic_pure.csv") && e.contains("missing"),
        "{e}"
    );
    write_release(tmp.path(), "pure");

    let log = tmp.path().join("log_standard_4_22_to_5_08_pure.csv");
    let good = std::fs::read_to_string(&log).unwrap();
    let mut lines: Vec<String> = good.lines().map(str::to_string).collect();
    // line 6 = data row 5: a tab that is not a number
    lines[5] = lines[5].rsplit_once(',').unwrap().0.to_string() + ",main";
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let e = fails(prepare(&req(src.clone())));
    assert!(
        e.contains("log_standard_4_22_to_5_08_pure.csv:6: field `tab`"),
        "{e}"
    );
    // a cut-off row
    lines[5] = "1,2,3".into();
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let e = fails(prepare(&req(src.clone())));
    assert!(e.contains(":6:") && e.contains("expected 19 fields"), "{e}");
    // a label that is not 0 / 1
    let mut lines: Vec<String> = good.lines().map(str::to_string).collect();
    let fields: Vec<&str> = lines[1].split(',').collect();
    let mut f: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
    f[5] = "2".into(); // is_click
    f[18] = "1".into(); // a kept tab
    lines[1] = f.join(",");
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let e = fails(prepare(&req(src.clone())));
    assert!(
        e.contains("log_standard_4_22_to_5_08_pure.csv:2: field `is_click`"),
        "{e}"
    );
    // a renamed column
    std::fs::write(&log, good.replace(",tab\n", ",page\n")).unwrap();
    let e = fails(prepare(&req(src)));
    assert!(
        e.contains(":1: field `tab`") && e.contains("missing from the header"),
        "{e}"
    );
}
