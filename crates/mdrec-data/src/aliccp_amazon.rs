//! AliCCP (30 item-category domains) and Amazon Review 2018 (25 main-category domains), read from the files the official AREAD code (`Chrissie-Law/AREAD-Multi-Domain-
//! Recommendation`) trains on.
//!
//! That code preprocesses the raw dumps once (`preprocess.py`: frequency filters, domain sampling,
//! label derivation, behaviour sequences) into one CSV per dataset under `dataset/<name>/`, and
//! `run.py::read_split_data` then reads that CSV and splits it. This module owns reading that CSV:
//!
//! | dataset | file in `--data-dir` | domain | label | split |
//! |---|---|---|---|---|
//! | `aliccp` | [`ALICCP_FILE`] | column `domain` (feature 206, item category, renamed) | `click` | column `train_tag` (0 train, 1 valid, 2 test) |
//! | `amazon` | [`AMAZON_FILE`] | column `domain` (item main category: code 0..24 or name, [`AMAZON_DOMAINS`]) | `label` (rating > user mean) | `timestamp` quantiles 0.9 / 0.95 |
//!
//! AliCCP: the raw column names `101`, `205`, `206` are accepted for `userid`, `itemid`, `domain`
//! (the renaming AREAD applies). Features are AREAD's categorical columns (`run.py`); the dense
//! `D*` columns are not used, as in AREAD. Domains are the values seen in the training split,
//! in numeric order.
//!
//! Amazon: features `itemid, weekday, domain, sales_chart, sales_rank, brand, price` and the
//! behaviour sequences `user_pos_6month_seq`, `user_neg_6month_seq` (Python list literals such as
//! `"[12, 7, 3]"`, pandas-quoted; the last 5 items are kept, AREAD's `seq_maxlen`; they share the
//! `itemid` vocabulary). `userid` is only the gAUC group, as AREAD does not embed it.
//!
//! The files are pandas `to_csv` output: comma-separated, a header row, fields optionally in
//! double quotes (`""` inside quotes is a quote). Malformed input is a [`DataError`] naming the
//! file, the line and the field. Producing the files from the raw dumps (AREAD's `preprocess.py`)
//! is not done here; [`crate::aliccp_raw`] and [`crate::amazon_raw`] read the raw releases with
//! AREAD's protocol themselves (recipes `aliccp-raw-aread`, `amazon-raw`).

use std::path::{Path, PathBuf};

use crate::csv::read_files;
use crate::raw::RawTable;
use crate::split::SplitSpec;
use crate::DataError;

/// AREAD's preprocessed AliCCP file (`preprocess.py`, thresh 15, 30 domains, `interval_random`).
pub const ALICCP_FILE: &str = "thresh15_ndomain30_modeinterval_random.csv";
/// AREAD's preprocessed Amazon file (`preprocess.py`, 12-month window).
pub const AMAZON_FILE: &str = "prepare2train_filter_12month.csv";

/// The 25 Amazon main categories in AREAD's encoding order (`domain2encoder_dict`): the name of
/// domain `i` is `AMAZON_DOMAINS[i]`.
pub const AMAZON_DOMAINS: [&str; 25] = [
    "Appliances",
    "Arts, Crafts & Sewing",
    "Automotive",
    "Books",
    "CDs & Vinyl",
    "Cell Phones & Accessories",
    "Clothing, Shoes & Jewelry",
    "Collectibles & Fine Art",
    "Electronics",
    "Gift Cards",
    "Grocery & Gourmet Food",
    "Home & Business Services",
    "Home & Kitchen",
    "Industrial & Scientific",
    "Kindle Store",
    "Magazine Subscriptions",
    "Movies & TV",
    "Musical Instruments",
    "Office Products",
    "Patio, Lawn & Garden",
    "Pet Supplies",
    "Sports & Outdoors",
    "Tools & Home Improvement",
    "Toys & Games",
    "Video Games",
];

/// Items kept from the end of each Amazon behaviour sequence (AREAD's `seq_maxlen`).
pub const AMAZON_SEQ_LEN: usize = 5;

/// The Amazon behaviour-sequence columns (Python list literals).
pub const AMAZON_SEQ_COLUMNS: [&str; 2] = ["user_pos_6month_seq", "user_neg_6month_seq"];

// The AliCCP fields both AliCCP schemas share (AREAD's `aliccp` and the raw-file recipes), in
// two runs: the user fields and the item id, then the other item and context fields.
macro_rules! aliccp_user_item_fields {
    () => {
        r#"[[fields]]
name = "userid"
kind = "categorical"
roles = ["prior", "user"]

[[fields]]
name = "121"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "122"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "124"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "125"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "126"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "127"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "128"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "129"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "itemid"
kind = "categorical"
roles = ["prior", "item"]

"#
    };
}
macro_rules! aliccp_context_fields {
    () => {
        r#"[[fields]]
name = "207"
kind = "categorical"
roles = ["item"]

[[fields]]
name = "210"
kind = "categorical"
roles = ["item"]

[[fields]]
name = "216"
kind = "categorical"
roles = ["item"]

[[fields]]
name = "508"
kind = "categorical"
roles = ["context"]

[[fields]]
name = "509"
kind = "categorical"
roles = ["context"]

[[fields]]
name = "702"
kind = "categorical"
roles = ["context"]

[[fields]]
name = "853"
kind = "categorical"
roles = ["context"]

[[fields]]
name = "109_14"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "110_14"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "127_14"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "150_14"
kind = "categorical"
roles = ["user"]

"#
    };
}
pub(crate) use {aliccp_context_fields, aliccp_user_item_fields};

/// The declared schema of the AliCCP recipe (AREAD's categorical columns, label `click`).
pub const ALICCP_SCHEMA: &str = concat!(
    r#"
# AliCCP in AREAD's layout: domain = item category (feature 206), label = click.
group = "userid"

[domain]
column = "domain"

"#,
    aliccp_user_item_fields!(),
    r#"[[fields]]
name = "domain"
kind = "categorical"
roles = ["domain", "item"]

"#,
    aliccp_context_fields!(),
    r#"[[fields]]
name = "301"
kind = "categorical"
roles = ["context"]

[[tasks]]
name = "click"
column = "click"
rule = "binary"
"#
);

/// The declared schema of the Amazon recipe (AREAD's features, label `label`).
pub const AMAZON_SCHEMA: &str = r#"
# Amazon Review 2018 in AREAD's layout: 25 main-category domains, label = rating > user mean.
group = "userid"

[domain]
column = "domain"
map = { "0" = 0, "1" = 1, "2" = 2, "3" = 3, "4" = 4, "5" = 5, "6" = 6, "7" = 7, "8" = 8, "9" = 9, "10" = 10, "11" = 11, "12" = 12, "13" = 13, "14" = 14, "15" = 15, "16" = 16, "17" = 17, "18" = 18, "19" = 19, "20" = 20, "21" = 21, "22" = 22, "23" = 23, "24" = 24 }
names = ["Appliances", "Arts, Crafts & Sewing", "Automotive", "Books", "CDs & Vinyl", "Cell Phones & Accessories", "Clothing, Shoes & Jewelry", "Collectibles & Fine Art", "Electronics", "Gift Cards", "Grocery & Gourmet Food", "Home & Business Services", "Home & Kitchen", "Industrial & Scientific", "Kindle Store", "Magazine Subscriptions", "Movies & TV", "Musical Instruments", "Office Products", "Patio, Lawn & Garden", "Pet Supplies", "Sports & Outdoors", "Tools & Home Improvement", "Toys & Games", "Video Games"]

[[fields]]
name = "itemid"
kind = "categorical"
roles = ["prior", "item"]

[[fields]]
name = "weekday"
kind = "categorical"
roles = ["context"]

[[fields]]
name = "domain"
kind = "categorical"
roles = ["domain", "item"]

[[fields]]
name = "sales_chart"
kind = "categorical"
roles = ["item"]

[[fields]]
name = "sales_rank"
kind = "categorical"
roles = ["item"]

[[fields]]
name = "brand"
kind = "categorical"
roles = ["item"]

[[fields]]
name = "price"
kind = "categorical"
roles = ["item"]

[[fields]]
name = "user_pos_6month_seq"
kind = "multi_hot"
table = "itemid"
max_len = 5
roles = ["user"]

[[fields]]
name = "user_neg_6month_seq"
kind = "multi_hot"
table = "itemid"
max_len = 5
roles = ["user"]

[[tasks]]
name = "label"
column = "label"
rule = "binary"
"#;

/// Which AREAD dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AliccpAmazon {
    /// AliCCP, 30 item-category domains.
    Aliccp,
    /// Amazon Review 2018, 25 main-category domains.
    Amazon,
}

impl AliccpAmazon {
    /// `"aliccp"` or `"amazon"`.
    pub fn name(self) -> &'static str {
        match self {
            AliccpAmazon::Aliccp => "aliccp",
            AliccpAmazon::Amazon => "amazon",
        }
    }

    /// The embedded schema.
    pub fn schema(self) -> &'static str {
        match self {
            AliccpAmazon::Aliccp => ALICCP_SCHEMA,
            AliccpAmazon::Amazon => AMAZON_SCHEMA,
        }
    }

    /// The file name AREAD's `preprocess.py` writes.
    pub fn file_name(self) -> &'static str {
        match self {
            AliccpAmazon::Aliccp => ALICCP_FILE,
            AliccpAmazon::Amazon => AMAZON_FILE,
        }
    }

    /// How to obtain the file.
    pub fn hint(self) -> String {
        let raw = match self {
            AliccpAmazon::Aliccp => {
                "https://tianchi.aliyun.com/dataset/408 (ali_ccp_train/val/test.csv)"
            }
            AliccpAmazon::Amazon => {
                "https://nijianmo.github.io/amazon/index.html (all_csv_files.csv, All_Amazon_Meta.json)"
            }
        };
        format!(
            "download the raw data from {raw}, run the official AREAD preprocess.py \
             (github.com/Chrissie-Law/AREAD-Multi-Domain-Recommendation, dataset `{}`) and pass the \
             folder holding {} with --data-dir",
            self.name(),
            self.file_name()
        )
    }

    /// The preprocessed file in `dir`; an error names what is missing and how to obtain it.
    pub fn file(self, dir: &Path) -> Result<PathBuf, DataError> {
        let f = dir.join(self.file_name());
        if !f.is_file() {
            return Err(DataError::Missing {
                path: f,
                what: format!("{} file of the AREAD layout", self.name()),
                hint: self.hint(),
            });
        }
        Ok(f)
    }

    /// AREAD's split in words.
    pub fn split_summary(self) -> &'static str {
        match self {
            AliccpAmazon::Aliccp => "the train_tag column: 0 train, 1 valid, 2 test",
            AliccpAmazon::Amazon => "timestamp quantiles 0.9 / 0.95",
        }
    }

    /// AREAD's split: AliCCP by `train_tag` (0 / 1 / 2), Amazon by `timestamp` quantiles
    /// 0.9 / 0.95.
    pub fn split(self) -> SplitSpec {
        match self {
            AliccpAmazon::Aliccp => SplitSpec::ByTime {
                column: "train_tag".into(),
                valid_from: 1,
                test_from: 2,
            },
            AliccpAmazon::Amazon => SplitSpec::TimeQuantiles {
                column: "timestamp".into(),
                valid_q: 0.9,
                test_q: 0.95,
            },
        }
    }
}

/// Reads a pandas-style CSV (header row, comma-separated, optional double quotes) into a raw
/// table; `make_cell` sees the renamed header and returns the per-cell rewrite (see
/// [`crate::csv`]). A file without data rows is an error.
fn read_pandas_csv<C>(
    path: &Path,
    rename: &dyn Fn(&str) -> String,
    make_cell: impl FnOnce(&[String]) -> C,
) -> Result<RawTable, DataError>
where
    C: FnMut(usize, &str) -> crate::csv::CellResult,
{
    let t = read_files(&[path.to_path_buf()], b',', rename, make_cell)?;
    if t.n_rows() == 0 {
        let name = path.display().to_string();
        return Err(DataError::parse(name, 1, "header", "no data rows"));
    }
    Ok(t)
}

/// A Python list literal of integers (`"[1, 2, 3]"`, `"[]"`) as `"1|2|3"`, keeping the last
/// `keep` items.
pub fn parse_py_int_list(v: &str, keep: usize) -> Result<String, String> {
    let inner = v
        .trim()
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .ok_or_else(|| format!("expected a list such as `[1, 2]`, found `{v}`"))?;
    if inner.trim().is_empty() {
        return Ok(String::new());
    }
    let items: Vec<&str> = inner.split(',').map(str::trim).collect();
    for it in &items {
        if it.parse::<i64>().is_err() {
            return Err(format!("list item `{it}` is not an integer in `{v}`"));
        }
    }
    let from = items.len().saturating_sub(keep);
    Ok(items[from..].join("|"))
}

fn require_columns(t: &RawTable, file: &str, cols: &[&str]) -> Result<(), DataError> {
    for c in cols {
        if t.column(c).is_none() {
            return Err(DataError::parse(
                file,
                1,
                *c,
                format!(
                    "column missing from the header; found: {}",
                    t.column_names().join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// Reads an AREAD preprocessed file into a raw table (see the module docs for the checks).
pub fn load(which: AliccpAmazon, path: &Path) -> Result<RawTable, DataError> {
    let file = path.display().to_string();
    match which {
        AliccpAmazon::Aliccp => {
            // AREAD renames the raw feature ids 101 / 205 / 206 to userid / itemid / domain
            let rename = |h: &str| match h {
                "101" => "userid".to_string(),
                "205" => "itemid".to_string(),
                "206" => "domain".to_string(),
                other => other.to_string(),
            };
            let t = read_pandas_csv(path, &rename, |_| |_: usize, _: &str| Ok(None))?;
            require_columns(
                &t,
                &file,
                &["userid", "itemid", "domain", "click", "train_tag"],
            )?;
            let Some(tag) = t.column("train_tag") else {
                return Err(DataError::parse(&file, 1, "train_tag", "column missing"));
            };
            for (c, v) in tag.dict.iter().enumerate() {
                if !matches!(v.as_str(), "0" | "1" | "2") {
                    let r = tag.first_row_with(c as u32).unwrap_or(0);
                    return Err(t.error_at(
                        r,
                        "train_tag",
                        format!("train_tag must be 0 (train), 1 (valid) or 2 (test), found `{v}`"),
                    ));
                }
            }
            Ok(t)
        }
        AliccpAmazon::Amazon => {
            let t = read_pandas_csv(path, &str::to_string, |head| {
                let dom = head.iter().position(|h| h == "domain");
                let seqs: Vec<usize> = AMAZON_SEQ_COLUMNS
                    .iter()
                    .filter_map(|s| head.iter().position(|h| h == s))
                    .collect();
                move |c: usize, v: &str| {
                    if Some(c) == dom {
                        return amazon_domain(v).map(Some);
                    }
                    if seqs.contains(&c) {
                        return parse_py_int_list(v, AMAZON_SEQ_LEN).map(Some);
                    }
                    Ok(None)
                }
            })?;
            let mut need = vec!["userid", "itemid", "domain", "label", "timestamp"];
            need.extend(AMAZON_SEQ_COLUMNS);
            require_columns(&t, &file, &need)?;
            Ok(t)
        }
    }
}

/// An Amazon domain value (AREAD code `0..24` or main-category name) as its code.
fn amazon_domain(v: &str) -> Result<String, String> {
    if let Ok(c) = v.trim().parse::<f64>() {
        // pandas may write an int column with missing values as floats ("3.0")
        if c.fract() == 0.0 && (0.0..25.0).contains(&c) {
            return Ok((c as u32).to_string());
        }
        return Err(format!("domain code `{v}` is outside 0..24"));
    }
    AMAZON_DOMAINS
        .iter()
        .position(|d| *d == v)
        .map(|i| i.to_string())
        .ok_or_else(|| {
            format!(
                "unknown domain `{v}`; expected a code 0..24 or one of AREAD's 25 main categories ({})",
                AMAZON_DOMAINS.join("; ")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_lists_keep_the_last_items() {
        assert_eq!(parse_py_int_list("[]", 5).unwrap(), "");
        assert_eq!(parse_py_int_list("[7]", 5).unwrap(), "7");
        assert_eq!(
            parse_py_int_list("[1, 2, 3, 4, 5, 6, 7]", 5).unwrap(),
            "3|4|5|6|7"
        );
        assert!(parse_py_int_list("1, 2", 5)
            .unwrap_err()
            .contains("expected a list"));
        assert!(parse_py_int_list("[1, x]", 5).unwrap_err().contains("`x`"));
    }

    #[test]
    fn amazon_domains_by_code_or_name() {
        assert_eq!(amazon_domain("3").unwrap(), "3");
        assert_eq!(amazon_domain("24.0").unwrap(), "24");
        assert_eq!(amazon_domain("Books").unwrap(), "3");
        assert_eq!(amazon_domain("Video Games").unwrap(), "24");
        assert!(amazon_domain("25").unwrap_err().contains("outside"));
        assert!(amazon_domain("Toys")
            .unwrap_err()
            .contains("unknown domain"));
    }
}
