//! Ali-CCP (Alibaba Click and Conversion Prediction; Ma et al., "Entire Space Multi-Task Model",
//! SIGIR 2018) read from the official release: Tianchi dataset 408, the archives
//! `sample_train.tar.gz` and `sample_test.tar.gz`.
//!
//! Layout (each archive unpacks to two files; no header row, comma-separated, plain text; a
//! `.csv.gz` stands in for a missing `.csv`):
//!
//! | file | one line |
//! |---|---|
//! | `sample_skeleton_{train,test}.csv` | `sample_id,click,buy,md5,feature_num,feature_list` |
//! | `common_features_{train,test}.csv` | `md5,feature_num,feature_list` |
//!
//! A `feature_list` holds `feature_num` entries separated by `\x01`; an entry is
//! `field_id\x02feature_id\x03value`. A skeleton line joins the common-features line with the same
//! `md5` (of the same split). The common features hold the user side: fields 101 (user id),
//! 121, 122, 124..129 (profile), 109_14, 110_14, 127_14, 150_14 (14-day behaviour); the skeleton
//! the item and context side: 205 (item id), 206 (category), 207 (shop), 210 (intention node),
//! 216 (brand), 301 (scenario), 508, 509, 702, 853 (combinations). Each field becomes one
//! categorical column holding its first feature id (the values are dropped, as is every
//! further entry of a multi-valued field \[INFERRED\]); a field absent from a sample is the empty
//! value. 101 is renamed `userid`, 205 `itemid`; `click` and `buy` are kept (0 / 1).
//!
//! Two protocols, one recipe each ([`AliccpProtocol`]):
//!
//! * `aliccp-raw-crocodile`, Crocodile's (Lin et al., 2024, section 5.1; the Scenario-Wise-Rec
//!   loader maps `{1: 0, 2: 1, 3: 2}[feature 301]`): domain = scenario 301 (values 1, 2, 3 →
//!   domains S1, S2, S3; a row with another value is skipped), task click, all rows of both
//!   skeleton files (Crocodile's table: 85,316,519 rows, 32M / 52M / 0.6M). Split `official`:
//!   the test file is test data, the last 10 % of the train file's rows validation [INFERRED: no
//!   paper names a validation rule], column `part` (0 / 1 / 2).
//! * `aliccp-raw-aread`, AREAD's (Luo et al., AAAI 2025; model spec §4.14.6): 206 is renamed
//!   `domain`; rows of users and of items with fewer than 15 rows are dropped (counted once over
//!   both files, not iterated \[INFERRED\]); of the categories with at least 75 distinct users and
//!   75 distinct items left, the 30 with the most rows are the domains (AREAD's code samples 30
//!   over size intervals, "interval_random", whose draw cannot be reproduced without its random
//!   state [INFERRED: the largest instead]); task click; the schema of the `aliccp` recipe
//!   (AREAD's columns). Split `aread` by the column `train_tag`: the test file 2, the last 10 % of
//!   the kept train rows 1, the rest 0 [INFERRED, as above]. AREAD's table: 4,454,814 rows, 30
//!   domains, the largest 60.51 %. The dense `D*` columns AREAD discretizes are not built.
//!
//! Memory: the skeleton files are streamed; the kept rows are held (one `u32` per column per row,
//! 26 columns: about 9 GB for all 85M rows of the Crocodile protocol), and while a common-features
//! file is streamed only the md5s that kept skeleton rows use are looked up and held (one `u32`
//! per user column per md5). A skeleton md5 its common-features file lacks is an error naming the
//! skeleton line (a mismatched pair of files, e.g. train skeleton with test common features).
//! Malformed lines (field count, `feature_num` against the entries, an entry without its
//! separators, a label other than 0 / 1) are errors naming the file, line and field; a cut-off
//! last line fails the `feature_num` check, a cut-off gzip stream is a read error on the file.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::aliccp_amazon::{aliccp_context_fields, aliccp_user_item_fields};
use crate::names::string_enum;
use crate::raw::{ColumnBuilder, RawTable};
use crate::rawfiles::{for_each_line, retain_rows};
use crate::split::SplitSpec;
use crate::DataError;

string_enum! {
    /// Which paper's protocol the raw AliCCP files are read with.
    pub enum AliccpProtocol: "aliccp protocol" {
        /// Crocodile: 3 scenario domains (feature 301), click, official split.
        Crocodile = "crocodile",
        /// AREAD: 30 item-category domains (feature 206), click, frequency filters.
        Aread = "aread",
    }
}

/// Where the release is published.
pub const ALICCP_URL: &str = "https://tianchi.aliyun.com/dataset/408";

/// The user-side fields (in the common features), as loaded-table columns.
pub const ALICCP_USER_FIELDS: [&str; 13] = [
    "101", "121", "122", "124", "125", "126", "127", "128", "129", "109_14", "110_14", "127_14",
    "150_14",
];

/// The item and context fields (in the skeleton).
pub const ALICCP_ITEM_FIELDS: [&str; 10] = [
    "205", "206", "207", "210", "216", "301", "508", "509", "702", "853",
];

/// Share of the train file's kept rows (its last ones) held out as validation.
pub const ALICCP_VALID_SHARE: f64 = 0.1;

/// AREAD's filters on the raw files (see the module docs); [`Default`] is the paper's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AliccpAreadFilter {
    /// Rows a user and an item need (over both files).
    pub min_count: u64,
    /// Distinct users a category needs to be a domain candidate.
    pub min_domain_users: usize,
    /// Distinct items a category needs to be a domain candidate.
    pub min_domain_items: usize,
    /// Domains kept (the candidates with the most rows).
    pub n_domains: usize,
}

impl Default for AliccpAreadFilter {
    fn default() -> Self {
        AliccpAreadFilter {
            min_count: 15,
            min_domain_users: 75,
            min_domain_items: 75,
            n_domains: 30,
        }
    }
}

/// The declared schema of `aliccp-raw-crocodile`: scenario domains S1..S3, task click (the fields
/// of the `aliccp` schema, with the category 206 an ordinary item field and the scenario 301 the
/// domain).
pub const ALICCP_CROCODILE_SCHEMA: &str = concat!(
    r#"
# Ali-CCP raw files, Crocodile protocol: domain = scenario (feature 301), label = click.
group = "userid"

[domain]
column = "301"
map = { "1" = 0, "2" = 1, "3" = 2 }
names = ["S1", "S2", "S3"]

"#,
    aliccp_user_item_fields!(),
    r#"[[fields]]
name = "206"
kind = "categorical"
roles = ["item"]

"#,
    aliccp_context_fields!(),
    r#"[[fields]]
name = "301"
kind = "categorical"
roles = ["domain"]

[[tasks]]
name = "click"
column = "click"
rule = "binary"
"#
);

/// The four files of the release, in reading order: (skeleton, common features) for train,
/// then for test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliccpFiles {
    /// `sample_skeleton_train.csv`, `sample_skeleton_test.csv`.
    pub skeletons: [PathBuf; 2],
    /// `common_features_train.csv`, `common_features_test.csv`.
    pub commons: [PathBuf; 2],
}

impl AliccpFiles {
    /// All four files (what the cache key hashes).
    pub fn all(&self) -> Vec<PathBuf> {
        let mut v = self.skeletons.to_vec();
        v.extend(self.commons.iter().cloned());
        v
    }
}

/// How to obtain the release.
pub fn aliccp_hint() -> String {
    format!(
        "download sample_train.tar.gz and sample_test.tar.gz from {ALICCP_URL} (free Tianchi \
         account; the Tianchi dataset terms apply), unpack them with `tar -xzf` and pass the \
         folder holding sample_skeleton_{{train,test}}.csv and common_features_{{train,test}}.csv \
         with --data-dir"
    )
}

/// The four files in `dir` (a `.csv.gz` stands in for a missing `.csv`); an error names the first
/// missing one and how to obtain the release.
pub fn aliccp_files(dir: &Path) -> Result<AliccpFiles, DataError> {
    let find = |name: String| -> Result<PathBuf, DataError> {
        let p = dir.join(&name);
        let gz = dir.join(format!("{name}.gz"));
        if p.is_file() {
            Ok(p)
        } else if gz.is_file() {
            Ok(gz)
        } else {
            Err(DataError::Missing {
                path: p,
                what: format!("Ali-CCP file {name}"),
                hint: aliccp_hint(),
            })
        }
    };
    let mut skeletons = Vec::new();
    let mut commons = Vec::new();
    for part in ["train", "test"] {
        skeletons.push(find(format!("sample_skeleton_{part}.csv"))?);
        commons.push(find(format!("common_features_{part}.csv"))?);
    }
    let [a, b]: [PathBuf; 2] = skeletons.try_into().unwrap_or_default();
    let [c, d]: [PathBuf; 2] = commons.try_into().unwrap_or_default();
    Ok(AliccpFiles {
        skeletons: [a, b],
        commons: [c, d],
    })
}

impl AliccpProtocol {
    /// The recipe name.
    pub fn dataset(self) -> &'static str {
        match self {
            AliccpProtocol::Crocodile => "aliccp-raw-crocodile",
            AliccpProtocol::Aread => "aliccp-raw-aread",
        }
    }

    /// The embedded schema.
    pub fn schema(self) -> &'static str {
        match self {
            AliccpProtocol::Crocodile => ALICCP_CROCODILE_SCHEMA,
            AliccpProtocol::Aread => crate::aliccp_amazon::ALICCP_SCHEMA,
        }
    }

    /// The protocol in words.
    pub fn protocol(self) -> &'static str {
        match self {
            AliccpProtocol::Crocodile => "Crocodile: scenarios 1, 2, 3 (feature 301), click",
            AliccpProtocol::Aread => {
                "AREAD: the 30 largest item categories (feature 206) after frequency filters, click"
            }
        }
    }

    /// The column holding the split (0 train, 1 valid, 2 test).
    pub fn split_column(self) -> &'static str {
        match self {
            AliccpProtocol::Crocodile => "part",
            AliccpProtocol::Aread => "train_tag",
        }
    }

    /// The protocol's split.
    pub fn split(self) -> SplitSpec {
        SplitSpec::ByTime {
            column: self.split_column().into(),
            valid_from: 1,
            test_from: 2,
        }
    }
}

/// The column name of a field in the loaded table.
fn column_name(protocol: AliccpProtocol, field: &str) -> &str {
    match (field, protocol) {
        ("101", _) => "userid",
        ("205", _) => "itemid",
        ("206", AliccpProtocol::Aread) => "domain",
        (f, _) => f,
    }
}

/// Splits a feature list into `(field, feature_id)` pairs, checking `feature_num`.
fn entries<'a>(
    file: &str,
    line: u64,
    num: &str,
    list: &'a str,
) -> Result<Vec<(&'a str, &'a str)>, DataError> {
    let n: usize = num.trim().parse().map_err(|_| {
        DataError::parse(
            file,
            line,
            "feature_num",
            format!("expected a count, found `{num}`"),
        )
    })?;
    let mut out = Vec::with_capacity(n);
    if !list.is_empty() {
        for (i, e) in list.split('\x01').enumerate() {
            let parsed = e
                .split_once('\x02')
                .and_then(|(f, rest)| rest.split_once('\x03').map(|(id, _)| (f, id)));
            match parsed {
                Some(p) => out.push(p),
                None => {
                    return Err(DataError::parse(
                        file,
                        line,
                        "feature_list",
                        format!(
                            "entry {} is not field\\x02feature_id\\x03value: `{}`",
                            i + 1,
                            e.escape_default()
                        ),
                    ))
                }
            }
        }
    }
    if out.len() != n {
        return Err(DataError::parse(
            file,
            line,
            "feature_list",
            format!(
                "feature_num is {n} but the list holds {} entries (a cut-off line?)",
                out.len()
            ),
        ));
    }
    Ok(out)
}

/// A 0 / 1 label.
fn label<'a>(file: &str, line: u64, field: &str, v: &'a str) -> Result<&'a str, DataError> {
    match v {
        "0" | "1" => Ok(v),
        _ => Err(DataError::parse(
            file,
            line,
            field,
            format!("expected 0 or 1, found `{v}`"),
        )),
    }
}

/// Reads the release with `protocol` and AREAD's default filters (see the module docs).
pub fn load(protocol: AliccpProtocol, files: &AliccpFiles) -> Result<RawTable, DataError> {
    load_with(protocol, files, &AliccpAreadFilter::default())
}

/// [`load`] with AREAD's filters given (`filter` is ignored by the Crocodile protocol).
pub fn load_with(
    protocol: AliccpProtocol,
    files: &AliccpFiles,
    filter: &AliccpAreadFilter,
) -> Result<RawTable, DataError> {
    let item_pos: HashMap<&str, usize> = ALICCP_ITEM_FIELDS
        .iter()
        .enumerate()
        .map(|(i, f)| (*f, i))
        .collect();
    let user_pos: HashMap<&str, usize> = ALICCP_USER_FIELDS
        .iter()
        .enumerate()
        .map(|(i, f)| (*f, i))
        .collect();
    let col = |f: &str| ColumnBuilder::new(column_name(protocol, f));
    let mut items: Vec<ColumnBuilder> = ALICCP_ITEM_FIELDS.iter().map(|f| col(f)).collect();
    let mut users: Vec<ColumnBuilder> = ALICCP_USER_FIELDS.iter().map(|f| col(f)).collect();
    let mut click = ColumnBuilder::new("click");
    let mut buy = ColumnBuilder::new("buy");
    let mut table = RawTable::default();
    let scenario = item_pos["301"];
    for (fi, (skel, common)) in files.skeletons.iter().zip(&files.commons).enumerate() {
        let file = skel.display().to_string();
        table.files.push(file.clone());
        // md5 -> index among this pair's md5s; per row, that index
        let mut md5s: HashMap<String, u32> = HashMap::new();
        let mut row_md5: Vec<u32> = Vec::new();
        for_each_line(skel, |line, text| {
            let parts: Vec<&str> = text.splitn(6, ',').collect();
            if parts.len() != 6 {
                return Err(DataError::parse(
                    &file,
                    line,
                    "line",
                    format!(
                        "expected 6 comma-separated fields (sample_id, click, buy, md5, \
                         feature_num, feature_list), found {}",
                        parts.len()
                    ),
                ));
            }
            let mut vals = [""; ALICCP_ITEM_FIELDS.len()];
            for (f, id) in entries(&file, line, parts[4], parts[5])? {
                if let Some(&i) = item_pos.get(f) {
                    if vals[i].is_empty() {
                        vals[i] = id;
                    }
                }
            }
            if protocol == AliccpProtocol::Crocodile && !matches!(vals[scenario], "1" | "2" | "3") {
                return Ok(());
            }
            let c = label(&file, line, "click", parts[1])?;
            let b = label(&file, line, "buy", parts[2])?;
            for (builder, v) in items.iter_mut().zip(&vals) {
                builder.push(v);
            }
            click.push(c);
            buy.push(b);
            let next = md5s.len() as u32;
            row_md5.push(*md5s.entry(parts[3].to_string()).or_insert(next));
            table.push_origin(fi as u16, line, &file)
        })?;
        // the user fields of the md5s this pair's rows use
        let cfile = common.display().to_string();
        let mut by_md5: Vec<Option<Vec<u32>>> = vec![None; md5s.len()];
        for_each_line(common, |line, text| {
            let parts: Vec<&str> = text.splitn(3, ',').collect();
            if parts.len() != 3 {
                return Err(DataError::parse(
                    &cfile,
                    line,
                    "line",
                    format!(
                        "expected 3 comma-separated fields (md5, feature_num, feature_list), found {}",
                        parts.len()
                    ),
                ));
            }
            let list = entries(&cfile, line, parts[1], parts[2])?;
            let Some(&k) = md5s.get(parts[0]) else {
                return Ok(());
            };
            if by_md5[k as usize].is_some() {
                return Ok(()); // the first line of an md5 counts
            }
            let mut uvals = [""; ALICCP_USER_FIELDS.len()];
            for (f, id) in list {
                if let Some(&i) = user_pos.get(f) {
                    if uvals[i].is_empty() {
                        uvals[i] = id;
                    }
                }
            }
            by_md5[k as usize] = Some(
                users
                    .iter_mut()
                    .zip(&uvals)
                    .map(|(u, v)| u.intern(v))
                    .collect(),
            );
            Ok(())
        })?;
        let start = table.n_rows() - row_md5.len();
        for (r, &k) in row_md5.iter().enumerate() {
            let Some(codes) = &by_md5[k as usize] else {
                let md5 = md5s
                    .iter()
                    .find(|(_, &v)| v == k)
                    .map_or("", |(m, _)| m.as_str());
                return Err(table.error_at(
                    start + r,
                    "md5",
                    format!(
                        "md5 `{md5}` is not in {cfile} (the skeleton and common-features files \
                         must be of the same split)"
                    ),
                ));
            };
            for (u, &c) in users.iter_mut().zip(codes) {
                u.push_code(c);
            }
        }
    }
    table.columns = users.into_iter().map(ColumnBuilder::finish).collect();
    table
        .columns
        .extend(items.into_iter().map(ColumnBuilder::finish));
    table.columns.push(click.finish());
    table.columns.push(buy.finish());
    if protocol == AliccpProtocol::Aread {
        aread_filter(&mut table, filter)?;
    }
    if table.n_rows() == 0 {
        return Err(DataError::Config(format!(
            "{}: no rows left in {} ({})",
            protocol.dataset(),
            files.skeletons[0].display(),
            protocol.protocol()
        )));
    }
    // the split: test file 2, the last rows of the train file 1, the rest 0
    let n_train = table.row_file.iter().filter(|&&f| f == 0).count();
    let n_valid = (n_train as f64 * ALICCP_VALID_SHARE).floor() as usize;
    let mut part = ColumnBuilder::new(protocol.split_column());
    let mut seen = 0usize;
    for &f in &table.row_file {
        if f == 0 {
            part.push(if seen < n_train - n_valid { "0" } else { "1" });
            seen += 1;
        } else {
            part.push("2");
        }
    }
    table.columns.push(part.finish());
    table.check_shape()?;
    Ok(table)
}

/// AREAD's user / item frequency filter and domain choice (see the module docs).
fn aread_filter(table: &mut RawTable, filter: &AliccpAreadFilter) -> Result<(), DataError> {
    let codes = |name: &str| -> Result<Vec<u32>, DataError> {
        Ok(table
            .require(name, "aliccp-raw-aread", "filter")?
            .codes
            .clone())
    };
    let (user, item, dom) = (codes("userid")?, codes("itemid")?, codes("domain")?);
    let count = |c: &[u32]| {
        let mut n: HashMap<u32, u64> = HashMap::new();
        for &x in c {
            *n.entry(x).or_insert(0) += 1;
        }
        n
    };
    let (nu, ni) = (count(&user), count(&item));
    let mut keep: Vec<bool> = (0..user.len())
        .map(|r| nu[&user[r]] >= filter.min_count && ni[&item[r]] >= filter.min_count)
        .collect();
    // per category: rows, distinct users, distinct items
    let mut stats: HashMap<u32, (u64, HashSet<u32>, HashSet<u32>)> = HashMap::new();
    for r in (0..keep.len()).filter(|&r| keep[r]) {
        let s = stats.entry(dom[r]).or_default();
        s.0 += 1;
        s.1.insert(user[r]);
        s.2.insert(item[r]);
    }
    let values = &table
        .column("domain")
        .map(|c| c.dict.clone())
        .unwrap_or_default();
    let mut cands: Vec<(u32, u64)> = stats
        .iter()
        .filter(|(_, s)| {
            s.1.len() >= filter.min_domain_users && s.2.len() >= filter.min_domain_items
        })
        .map(|(&d, s)| (d, s.0))
        .collect();
    // most rows first; ties to the lower category id
    cands.sort_by(|a, b| {
        b.1.cmp(&a.1).then_with(|| {
            let (x, y) = (&values[a.0 as usize], &values[b.0 as usize]);
            let num = |s: &str| s.parse::<i64>().unwrap_or(i64::MAX);
            num(x).cmp(&num(y)).then_with(|| x.cmp(y))
        })
    });
    let chosen: HashSet<u32> = cands
        .iter()
        .take(filter.n_domains)
        .map(|&(d, _)| d)
        .collect();
    for (k, d) in keep.iter_mut().zip(&dom) {
        *k = *k && chosen.contains(d);
    }
    retain_rows(table, &keep);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_lists_split_into_fields_and_check_their_count() {
        let l = "101\x0212\x031.0\x01205\x027\x030.5";
        assert_eq!(
            entries("f", 3, "2", l).unwrap(),
            vec![("101", "12"), ("205", "7")]
        );
        let e = entries("f", 3, "3", l).unwrap_err().to_string();
        assert!(
            e.starts_with("f:3: field `feature_list`") && e.contains("cut-off"),
            "{e}"
        );
        let e = entries("f", 4, "1", "101\x0212").unwrap_err().to_string();
        assert!(e.contains("f:4:") && e.contains("entry 1"), "{e}");
        assert!(entries("f", 5, "0", "").unwrap().is_empty());
    }
}
