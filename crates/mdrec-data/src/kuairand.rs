//! KuaiRand (Kuaishou short-video logs, Gao et al., CIKM 2022) read from the official release
//! (`KuaiRand-Pure.tar.gz` / `KuaiRand-1K.tar.gz` on zenodo, record 10439422; CC BY-SA 4.0).
//!
//! Each archive unpacks to `KuaiRand-<V>/data/` with plain comma-separated files, a header row,
//! pandas quoting (`"12,65"` for a list), UTF-8 (`<v>` is `pure` or `1k`):
//!
//! | file | read | used for |
//! |---|---|---|
//! | `log_standard_4_08_to_4_21_<v>.csv` | yes | interactions of the standard feed, weeks 1–2 |
//! | `log_standard_4_22_to_5_08_<v>.csv` | yes | interactions of the standard feed, weeks 3–4 |
//! | `log_random_4_22_to_5_08_<v>.csv` | yes | interactions with randomly exposed videos |
//! | `user_features_<v>.csv` | yes | user features, joined on `user_id` |
//! | `video_features_basic_<v>.csv` | yes | video features, joined on `video_id` |
//! | `video_features_statistic_<v>.csv` | no | daily averaged counters; neither protocol uses them |
//!
//! The log columns (official README): `user_id, video_id, date` (yyyymmdd), `hourmin` (HHMM),
//! `time_ms` (Unix milliseconds), the binary signals `is_click, is_like, is_follow, is_comment,
//! is_forward, is_hate, long_view`, the durations, `is_rand` and `tab` (the app page the
//! interaction happened on, 0..14). The loaded table keeps the ids, `date`, `hour` (`hourmin`
//! / 100), `time_ms`, `tab`, the seven signals and `log` (`standard` or `random`, from the file);
//! the user and video features are joined per distinct id (a user or video the feature file lacks
//! gets empty values; the first row of a duplicated id counts).
//!
//! Two protocols, one recipe each ([`KuaiRandVersion`]):
//!
//! * `kuairand-pure`, M3oE's: domains = the 3 tabs with the most interactions, tasks click
//!   (`is_click`) and long-view (`long_view`). M3oE reports 3 tab domains with 7.1 % / 89.2 % /
//!   3.7 % of 2,507,666 rows, which is about 96 % of the three Pure logs together; which tabs it
//!   kept is not published, so the 3 largest are taken, counted over the files read, ties to the
//!   lower tab \[INFERRED\].
//! * `kuairand-1k`, Crocodile's: domains = tabs 0, 1, 2, 4 and 6 (the paper's "five domains with
//!   top-5 data volumes", S0 / S1 / S2 / S4 / S6), task click (`is_click`).
//!
//! Both read the two standard logs and the random log [INFERRED: neither paper names the files].
//! Rows are ordered by `time_ms` (ties keep file order: standard weeks 1–2, standard weeks 3–4,
//! random), so the sequential `m3oe` 80 / 10 / 10 split is a split in time [INFERRED: M3oE states
//! only the 8:1:1 ratio, Crocodile no split]. The files are streamed record by record; memory is
//! the kept rows (one `u32` per column and row) plus one entry per distinct user and video.
//! Features whose values Crocodile folds into a default below 10 exposures are kept as they are
//! (`min_count` is the schema's business).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::names::string_enum;
use crate::raw::{ColumnBuilder, RawTable};
use crate::rawfiles::{for_each_row, int, join_side_file, sort_rows_by};
use crate::DataError;

string_enum! {
    /// Which KuaiRand release and protocol.
    pub enum KuaiRandVersion: "kuairand version" {
        /// KuaiRand-Pure with M3oE's protocol (3 tabs, click and long-view).
        Pure = "pure",
        /// KuaiRand-1K with Crocodile's protocol (tabs 0, 1, 2, 4, 6, click).
        OneK = "1k",
    }
}

/// The log columns the reader requires, in the order the loaded table keeps them (`hourmin`
/// becomes `hour`).
pub const KUAIRAND_LOG_COLUMNS: [&str; 13] = [
    "user_id",
    "video_id",
    "date",
    "hourmin",
    "time_ms",
    "tab",
    "is_click",
    "long_view",
    "is_like",
    "is_follow",
    "is_comment",
    "is_forward",
    "is_hate",
];

/// The user features joined on `user_id`.
pub const KUAIRAND_USER_COLUMNS: [&str; 26] = [
    "user_active_degree",
    "is_lowactive_period",
    "is_live_streamer",
    "is_video_author",
    "follow_user_num_range",
    "fans_user_num_range",
    "friend_user_num_range",
    "register_days_range",
    "onehot_feat0",
    "onehot_feat1",
    "onehot_feat2",
    "onehot_feat3",
    "onehot_feat4",
    "onehot_feat5",
    "onehot_feat6",
    "onehot_feat7",
    "onehot_feat8",
    "onehot_feat9",
    "onehot_feat10",
    "onehot_feat11",
    "onehot_feat12",
    "onehot_feat13",
    "onehot_feat14",
    "onehot_feat15",
    "onehot_feat16",
    "onehot_feat17",
];

/// The video features joined on `video_id` (`tag` is a comma-separated list).
pub const KUAIRAND_VIDEO_COLUMNS: [&str; 6] = [
    "author_id",
    "video_type",
    "upload_type",
    "visible_status",
    "music_type",
    "tag",
];

/// Crocodile's KuaiRand-1K domains.
pub const KUAIRAND_1K_TABS: [i64; 5] = [0, 1, 2, 4, 6];

/// Where the releases are published.
pub const KUAIRAND_URL: &str = "https://zenodo.org/records/10439422";

// The feature fields both KuaiRand schemas share.
macro_rules! kuairand_fields {
    () => {
        r#"
[[fields]]
name = "user_id"
kind = "categorical"
roles = ["prior", "user"]

[[fields]]
name = "video_id"
kind = "categorical"
roles = ["prior", "item"]

[[fields]]
name = "author_id"
kind = "categorical"
roles = ["author"]

[[fields]]
name = "tab"
kind = "categorical"
roles = ["domain"]

[[fields]]
name = "hour"
kind = "categorical"
roles = ["context"]

[[fields]]
name = "video_type"
kind = "categorical"
roles = ["item"]

[[fields]]
name = "upload_type"
kind = "categorical"
roles = ["item"]

[[fields]]
name = "visible_status"
kind = "categorical"
roles = ["item"]

[[fields]]
name = "music_type"
kind = "categorical"
roles = ["item"]

[[fields]]
name = "tag"
kind = "multi_hot"
sep = ","
max_len = 5
roles = ["item"]

[[fields]]
name = "user_active_degree"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "is_lowactive_period"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "is_live_streamer"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "is_video_author"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "follow_user_num_range"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "fans_user_num_range"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "friend_user_num_range"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "register_days_range"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "onehot_feat0"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "onehot_feat1"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "onehot_feat2"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "onehot_feat3"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "onehot_feat4"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "onehot_feat5"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "onehot_feat6"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "onehot_feat7"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "onehot_feat8"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "onehot_feat9"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "onehot_feat10"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "onehot_feat11"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "onehot_feat12"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "onehot_feat13"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "onehot_feat14"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "onehot_feat15"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "onehot_feat16"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "onehot_feat17"
kind = "categorical"
roles = ["user"]

[[tasks]]
name = "click"
column = "is_click"
rule = "binary"
"#
    };
}

/// The declared schema of `kuairand-pure` (M3oE): domains = the kept tabs in numeric order,
/// tasks click and long-view.
pub const KUAIRAND_PURE_SCHEMA: &str = concat!(
    r#"
# KuaiRand-Pure, M3oE protocol: the 3 largest tabs as domains, click and long-view.
group = "user_id"
time = "time_ms"

[domain]
column = "tab"
"#,
    kuairand_fields!(),
    r#"
[[tasks]]
name = "long_view"
column = "long_view"
rule = "binary"
"#
);

/// The declared schema of `kuairand-1k` (Crocodile): domains tabs 0, 1, 2, 4, 6, task click.
pub const KUAIRAND_1K_SCHEMA: &str = concat!(
    r#"
# KuaiRand-1K, Crocodile protocol: tabs 0, 1, 2, 4, 6 as domains, click.
group = "user_id"
time = "time_ms"

[domain]
column = "tab"
map = { "0" = 0, "1" = 1, "2" = 2, "4" = 3, "6" = 4 }
names = ["tab0", "tab1", "tab2", "tab4", "tab6"]
"#,
    kuairand_fields!()
);

/// The files of one release, in reading order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KuaiRandFiles {
    /// The two standard logs and the random log.
    pub logs: [PathBuf; 3],
    /// `user_features_<v>.csv`.
    pub users: PathBuf,
    /// `video_features_basic_<v>.csv`.
    pub videos: PathBuf,
}

impl KuaiRandFiles {
    /// All files, logs first (what the cache key hashes).
    pub fn all(&self) -> Vec<PathBuf> {
        let mut v = self.logs.to_vec();
        v.push(self.users.clone());
        v.push(self.videos.clone());
        v
    }
}

impl KuaiRandVersion {
    /// The recipe name: `kuairand-pure` or `kuairand-1k`.
    pub fn dataset(self) -> &'static str {
        match self {
            KuaiRandVersion::Pure => "kuairand-pure",
            KuaiRandVersion::OneK => "kuairand-1k",
        }
    }

    /// The release's folder name: `KuaiRand-Pure` or `KuaiRand-1K`.
    pub fn release(self) -> &'static str {
        match self {
            KuaiRandVersion::Pure => "KuaiRand-Pure",
            KuaiRandVersion::OneK => "KuaiRand-1K",
        }
    }

    /// The embedded schema.
    pub fn schema(self) -> &'static str {
        match self {
            KuaiRandVersion::Pure => KUAIRAND_PURE_SCHEMA,
            KuaiRandVersion::OneK => KUAIRAND_1K_SCHEMA,
        }
    }

    /// The protocol in words.
    pub fn protocol(self) -> &'static str {
        match self {
            KuaiRandVersion::Pure => "M3oE: the 3 largest tabs, click + long_view",
            KuaiRandVersion::OneK => "Crocodile: tabs 0, 1, 2, 4, 6, click",
        }
    }

    /// The file names of the release.
    pub fn file_names(self) -> [String; 5] {
        let v = self.name();
        [
            format!("log_standard_4_08_to_4_21_{v}.csv"),
            format!("log_standard_4_22_to_5_08_{v}.csv"),
            format!("log_random_4_22_to_5_08_{v}.csv"),
            format!("user_features_{v}.csv"),
            format!("video_features_basic_{v}.csv"),
        ]
    }

    /// How to obtain the release.
    pub fn hint(self) -> String {
        format!(
            "download {r}.tar.gz from {KUAIRAND_URL} (CC BY-SA 4.0), unpack it with \
             `tar -xzf {r}.tar.gz` and pass {r}/data (or {r}) with --data-dir",
            r = self.release()
        )
    }

    /// The release's files in `dir` (or in `dir/data`, the archive's layout); an error names the
    /// first missing one and how to obtain the data.
    pub fn files(self, dir: &Path) -> Result<KuaiRandFiles, DataError> {
        let names = self.file_names();
        let base = if !dir.join(&names[0]).is_file() && dir.join("data").join(&names[0]).is_file() {
            dir.join("data")
        } else {
            dir.to_path_buf()
        };
        let paths = names.clone().map(|n| base.join(n));
        for (p, n) in paths.iter().zip(&names) {
            if !p.is_file() {
                return Err(DataError::Missing {
                    path: p.clone(),
                    what: format!("{} file {n}", self.release()),
                    hint: self.hint(),
                });
            }
        }
        let [a, b, c, users, videos] = paths;
        Ok(KuaiRandFiles {
            logs: [a, b, c],
            users,
            videos,
        })
    }
}

/// Interactions per tab over the logs.
pub fn count_tabs(logs: &[PathBuf]) -> Result<BTreeMap<i64, u64>, DataError> {
    let mut counts = BTreeMap::new();
    for p in logs {
        let file = p.display().to_string();
        for_each_row(p, b',', &["tab"], |line, v| {
            *counts.entry(int(&file, line, "tab", v[0])?).or_insert(0) += 1;
            Ok(())
        })?;
    }
    Ok(counts)
}

/// The `k` tabs with the most interactions (ties to the lower tab), in numeric order.
pub fn largest_tabs(counts: &BTreeMap<i64, u64>, k: usize) -> Vec<i64> {
    let mut v: Vec<(i64, u64)> = counts.iter().map(|(&t, &n)| (t, n)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut tabs: Vec<i64> = v.into_iter().take(k).map(|(t, _)| t).collect();
    tabs.sort_unstable();
    tabs
}

/// The tabs a protocol keeps.
pub fn protocol_tabs(
    version: KuaiRandVersion,
    files: &KuaiRandFiles,
) -> Result<Vec<i64>, DataError> {
    match version {
        KuaiRandVersion::Pure => Ok(largest_tabs(&count_tabs(&files.logs)?, 3)),
        KuaiRandVersion::OneK => Ok(KUAIRAND_1K_TABS.to_vec()),
    }
}

/// Reads a release with its protocol (see the module docs): the logs' rows on the protocol's
/// tabs, ordered by `time_ms`, with the user and video features joined.
pub fn load(version: KuaiRandVersion, files: &KuaiRandFiles) -> Result<RawTable, DataError> {
    let tabs = protocol_tabs(version, files)?;
    let mut names: Vec<&str> = KUAIRAND_LOG_COLUMNS.to_vec();
    names[3] = "hour";
    let mut builders: Vec<ColumnBuilder> = names.iter().map(|n| ColumnBuilder::new(*n)).collect();
    let mut log_kind = ColumnBuilder::new("log");
    let mut table = RawTable::default();
    let mut times: Vec<i64> = Vec::new();
    for (fi, p) in files.logs.iter().enumerate() {
        let file = p.display().to_string();
        table.files.push(file.clone());
        let kind = if fi < 2 { "standard" } else { "random" };
        for_each_row(p, b',', &KUAIRAND_LOG_COLUMNS, |line, v| {
            if !tabs.contains(&int(&file, line, "tab", v[5])?) {
                return Ok(());
            }
            let hourmin = int(&file, line, "hourmin", v[3])?;
            if !(0..2400).contains(&hourmin) {
                return Err(DataError::parse(
                    &file,
                    line,
                    "hourmin",
                    format!("expected HHMM in 0..2359, found `{}`", v[3]),
                ));
            }
            int(&file, line, "date", v[2])?;
            times.push(int(&file, line, "time_ms", v[4])?);
            for (c, (b, x)) in builders.iter_mut().zip(v).enumerate() {
                if c == 3 {
                    b.push(&(hourmin / 100).to_string());
                } else {
                    b.push(x.trim());
                }
            }
            log_kind.push(kind);
            table.push_origin(fi as u16, line, &file)?;
            Ok(())
        })?;
    }
    if table.n_rows() == 0 {
        return Err(DataError::Config(format!(
            "{}: no interactions on tabs {tabs:?} in {}",
            version.dataset(),
            files.logs[0].display()
        )));
    }
    table.columns = builders.into_iter().map(ColumnBuilder::finish).collect();
    table.columns.push(log_kind.finish());
    sort_rows_by(&mut table, &times);
    drop(times);
    join_side_file(
        &mut table,
        "user_id",
        &files.users,
        b',',
        &KUAIRAND_USER_COLUMNS,
    )?;
    join_side_file(
        &mut table,
        "video_id",
        &files.videos,
        b',',
        &KUAIRAND_VIDEO_COLUMNS,
    )?;
    table.check_shape()?;
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_tabs_break_ties_to_the_lower_tab() {
        let c: BTreeMap<i64, u64> = [(0, 5), (1, 50), (2, 5), (4, 7), (9, 1)].into();
        assert_eq!(largest_tabs(&c, 3), vec![0, 1, 4]);
        assert_eq!(largest_tabs(&c, 10), vec![0, 1, 2, 4, 9]);
    }
}
