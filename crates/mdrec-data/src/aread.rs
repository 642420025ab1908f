//! The AREAD recipes: AliCCP (30 item-category domains) and Amazon Review 2018 (25 main-category
//! domains), read from the files the official AREAD code (`Chrissie-Law/AREAD-Multi-Domain-
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
//! is not done here.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use crate::prepare::{DatasetSource, SplitSpec};
use crate::raw::{ColumnBuilder, RawTable};
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

/// The declared schema of the AliCCP recipe (AREAD's categorical columns, label `click`).
pub const ALICCP_SCHEMA: &str = r#"
# AliCCP in AREAD's layout: domain = item category (feature 206), label = click.
group = "userid"

[domain]
column = "domain"

[[fields]]
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

[[fields]]
name = "domain"
kind = "categorical"
roles = ["domain", "item"]

[[fields]]
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

[[fields]]
name = "301"
kind = "categorical"
roles = ["context"]

[[tasks]]
name = "click"
column = "click"
rule = "binary"
"#;

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
pub enum AreadDataset {
    /// AliCCP, 30 item-category domains.
    Aliccp,
    /// Amazon Review 2018, 25 main-category domains.
    Amazon,
}

impl AreadDataset {
    /// The dataset of an AREAD [`DatasetSource`] (`None` for other sources).
    pub fn of_source(src: &DatasetSource) -> Option<Self> {
        match src {
            DatasetSource::Aliccp { .. } => Some(AreadDataset::Aliccp),
            DatasetSource::Amazon { .. } => Some(AreadDataset::Amazon),
            _ => None,
        }
    }

    /// `"aliccp"` or `"amazon"`.
    pub fn name(self) -> &'static str {
        match self {
            AreadDataset::Aliccp => "aliccp",
            AreadDataset::Amazon => "amazon",
        }
    }

    /// The embedded schema.
    pub fn schema(self) -> &'static str {
        match self {
            AreadDataset::Aliccp => ALICCP_SCHEMA,
            AreadDataset::Amazon => AMAZON_SCHEMA,
        }
    }

    /// The file name AREAD's `preprocess.py` writes.
    pub fn file_name(self) -> &'static str {
        match self {
            AreadDataset::Aliccp => ALICCP_FILE,
            AreadDataset::Amazon => AMAZON_FILE,
        }
    }

    /// How to obtain the file.
    pub fn hint(self) -> String {
        let raw = match self {
            AreadDataset::Aliccp => {
                "https://tianchi.aliyun.com/dataset/408 (ali_ccp_train/val/test.csv)"
            }
            AreadDataset::Amazon => {
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

    /// AREAD's split: AliCCP by `train_tag` (0 / 1 / 2), Amazon by `timestamp` quantiles
    /// 0.9 / 0.95.
    pub fn split(self) -> SplitSpec {
        match self {
            AreadDataset::Aliccp => SplitSpec::ByTime {
                column: "train_tag".into(),
                valid_from: 1,
                test_from: 2,
            },
            AreadDataset::Amazon => SplitSpec::TimeQuantiles {
                column: "timestamp".into(),
                valid_q: 0.9,
                test_q: 0.95,
            },
        }
    }
}

/// Splits one CSV line into fields; a field may be enclosed in double quotes (`""` inside is a
/// quote). `Err((field index, message))` on a stray or unterminated quote.
pub fn split_quoted(line: &str, delim: char) -> Result<Vec<Cow<'_, str>>, (usize, String)> {
    let mut out = Vec::new();
    let mut rest = line;
    loop {
        let idx = out.len();
        if let Some(body) = rest.strip_prefix('"') {
            let mut val = String::new();
            let mut chars = body.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                if c == '"' {
                    if body[i + 1..].starts_with('"') {
                        val.push('"');
                        chars.next();
                    } else {
                        end = Some(i + 1);
                        break;
                    }
                } else {
                    val.push(c);
                }
            }
            let Some(end) = end else {
                return Err((idx, "unterminated quoted field".into()));
            };
            out.push(Cow::Owned(val));
            let after = &body[end..];
            if after.is_empty() {
                return Ok(out);
            }
            match after.strip_prefix(delim) {
                Some(r) => rest = r,
                None => return Err((idx, "text after the closing quote of a field".into())),
            }
        } else {
            match rest.find(delim) {
                Some(i) => {
                    let f = &rest[..i];
                    if f.contains('"') {
                        return Err((idx, format!("stray quote in unquoted field `{f}`")));
                    }
                    out.push(Cow::Borrowed(f));
                    rest = &rest[i + delim.len_utf8()..];
                }
                None => {
                    if rest.contains('"') {
                        return Err((idx, format!("stray quote in unquoted field `{rest}`")));
                    }
                    out.push(Cow::Borrowed(rest));
                    return Ok(out);
                }
            }
        }
    }
}

/// Reads a pandas-style CSV (header row, comma-separated, optional double quotes) into a raw
/// table, letting `cell` rewrite or reject each value: `cell(column, value)` returns the value
/// to store or an error message.
fn read_pandas_csv(
    path: &Path,
    mut cell: impl FnMut(usize, &str) -> Result<Option<String>, String>,
    rename: impl Fn(&str) -> String,
) -> Result<RawTable, DataError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let off = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..off].iter().filter(|&&b| b == b'\n').count() + 1;
        DataError::parse(&name, line as u64, "line", "invalid utf-8")
    })?;
    let mut lines = text.split('\n').enumerate().peekable();
    let head = match lines.next() {
        Some((_, h)) if !h.trim().is_empty() => h.strip_suffix('\r').unwrap_or(h),
        _ => return Err(DataError::parse(&name, 1, "header", "empty file")),
    };
    let head: Vec<String> = split_quoted(head, ',')
        .map_err(|(i, m)| DataError::parse(&name, 1, format!("header column {}", i + 1), m))?
        .iter()
        .map(|h| rename(h))
        .collect();
    for (i, h) in head.iter().enumerate() {
        if h.is_empty() {
            return Err(DataError::parse(&name, 1, "header", "empty column name"));
        }
        if head[..i].contains(h) {
            return Err(DataError::parse(&name, 1, h, "duplicate column name"));
        }
    }
    let mut builders: Vec<ColumnBuilder> = head.iter().map(ColumnBuilder::new).collect();
    let mut row_line = Vec::new();
    while let Some((i, line)) = lines.next() {
        let ln = i as u64 + 1;
        if line.is_empty() && lines.peek().is_none() {
            break;
        }
        let line = line.strip_suffix('\r').unwrap_or(line);
        let vals = split_quoted(line, ',').map_err(|(c, m)| {
            let col = head.get(c).map_or("line", String::as_str);
            DataError::parse(&name, ln, col, m)
        })?;
        if vals.len() != head.len() {
            let c = vals.len().min(head.len()) - usize::from(vals.len() >= head.len());
            return Err(DataError::parse(
                &name,
                ln,
                &head[c],
                format!("expected {} fields, found {}", head.len(), vals.len()),
            ));
        }
        for (c, (b, v)) in builders.iter_mut().zip(&vals).enumerate() {
            match cell(c, v) {
                Ok(Some(s)) => b.push(&s),
                Ok(None) => b.push(v),
                Err(m) => return Err(DataError::parse(&name, ln, &head[c], m)),
            }
        }
        row_line.push(
            u32::try_from(ln).map_err(|_| DataError::parse(&name, ln, "line", "too many lines"))?,
        );
    }
    if row_line.is_empty() {
        return Err(DataError::parse(&name, 1, "header", "no data rows"));
    }
    Ok(RawTable {
        columns: builders.into_iter().map(ColumnBuilder::finish).collect(),
        files: vec![name],
        row_file: vec![0; row_line.len()],
        row_line,
    })
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
pub fn load(which: AreadDataset, path: &Path) -> Result<RawTable, DataError> {
    let file = path.display().to_string();
    match which {
        AreadDataset::Aliccp => {
            // AREAD renames the raw feature ids 101 / 205 / 206 to userid / itemid / domain
            let rename = |h: &str| match h {
                "101" => "userid".to_string(),
                "205" => "itemid".to_string(),
                "206" => "domain".to_string(),
                other => other.to_string(),
            };
            let t = read_pandas_csv(path, |_, _| Ok(None), rename)?;
            require_columns(
                &t,
                &file,
                &["userid", "itemid", "domain", "click", "train_tag"],
            )?;
            let tag = t.column("train_tag").expect("checked");
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
        AreadDataset::Amazon => {
            // the header alone, to know which columns to rewrite
            let mut head_line = String::new();
            std::io::BufRead::read_line(
                &mut std::io::BufReader::new(
                    std::fs::File::open(path).map_err(|e| DataError::io(path, e))?,
                ),
                &mut head_line,
            )
            .map_err(|e| DataError::io(path, e))?;
            let head_line = head_line.trim_end_matches(['\n', '\r']);
            let head: Vec<String> = split_quoted(head_line, ',')
                .map_err(|(i, m)| {
                    DataError::parse(&file, 1, format!("header column {}", i + 1), m)
                })?
                .iter()
                .map(|h| h.to_string())
                .collect();
            let dom = head.iter().position(|h| h == "domain");
            let seqs: Vec<usize> = AMAZON_SEQ_COLUMNS
                .iter()
                .filter_map(|s| head.iter().position(|h| h == s))
                .collect();
            let t = read_pandas_csv(
                path,
                |c, v| {
                    if Some(c) == dom {
                        return amazon_domain(v).map(Some);
                    }
                    if seqs.contains(&c) {
                        return parse_py_int_list(v, AMAZON_SEQ_LEN).map(Some);
                    }
                    Ok(None)
                },
                str::to_string,
            )?;
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
    fn quoted_fields_and_errors() {
        let f = split_quoted(r#"1,"[1, 2]",x,"a ""q"" b","""#, ',').unwrap();
        assert_eq!(f, vec!["1", "[1, 2]", "x", "a \"q\" b", ""]);
        assert_eq!(split_quoted("a,,b,", ',').unwrap(), vec!["a", "", "b", ""]);
        assert_eq!(split_quoted(r#"1,"[1, 2"#, ',').unwrap_err().0, 1);
        assert_eq!(split_quoted(r#"1,"a"b,2"#, ',').unwrap_err().0, 1);
        assert_eq!(split_quoted(r#"1,a"b,2"#, ',').unwrap_err().0, 1);
    }

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
