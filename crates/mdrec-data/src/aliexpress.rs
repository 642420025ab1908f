//! AliExpress (search logs of five AliExpress countries with click and purchase labels; Li et
//! al., "Improving Multi-Scenario Learning to Rank in E-commerce by Exploiting Task
//! Relationships in the Label Space", CIKM 2020), read from the official release: Tianchi
//! dataset 74690, one folder per country.
//!
//! Layout: `AliExpress_<CC>/train.csv` and `AliExpress_<CC>/test.csv` for `CC` in NL, ES, FR, US,
//! RU; comma-separated, a header row, no quoting needed (all values are numbers):
//! `search_id, categorical_1 .. categorical_16, numerical_1 .. numerical_63, click, conversion`.
//! The categorical columns are anonymised integer codes, the numerical ones real values.
//!
//! Protocol (the common multi-domain multi-task benchmark built on it): the country is the
//! domain (five domains, in alphabetical order ES, FR, NL, RU, US), the tasks are click (`click`)
//! and purchase (`conversion`), the release's own train / test files are the train / test splits
//! (split `official`). The release has no validation file; the last 10 % of each country's
//! `train.csv` rows is held out as validation \[INFERRED\]. The column `part` records this (0 train,
//! 1 valid, 2 test) and `country` the folder. gAUC groups by `search_id` (there is no user id).
//! A `.csv.gz` file next to a missing `.csv` is read through gzip.
//!
//! Memory: the rows are held in memory, one `u32` per column per row plus each column's distinct
//! values (the 63 numerical columns have many); the full release (five countries, about
//! 100 million rows, 82 columns) needs tens of GB, so train on a machine that has it.

use std::path::{Path, PathBuf};

use crate::raw::{ColumnBuilder, RawTable};
use crate::rawfiles::for_each_row;
use crate::split::SplitSpec;
use crate::DataError;

/// The five countries (domains), in domain order.
pub const ALIEXPRESS_COUNTRIES: [&str; 5] = ["ES", "FR", "NL", "RU", "US"];

/// Where the release is published.
pub const ALIEXPRESS_URL: &str = "https://tianchi.aliyun.com/dataset/74690";

/// Share of each country's `train.csv` held out (its last rows) as validation.
pub const ALIEXPRESS_VALID_SHARE: f64 = 0.1;

/// How to obtain the release.
pub fn aliexpress_hint() -> String {
    format!(
        "download the five AliExpress_<CC> folders (NL, ES, FR, US, RU; each train.csv and \
         test.csv) from {ALIEXPRESS_URL} (free Tianchi account; the Tianchi dataset terms apply) \
         and pass the folder holding them with --data-dir"
    )
}

/// The columns of a country file, in the official order.
pub fn aliexpress_columns() -> Vec<String> {
    let mut v = vec!["search_id".to_string()];
    v.extend((1..=16).map(|i| format!("categorical_{i}")));
    v.extend((1..=63).map(|i| format!("numerical_{i}")));
    v.push("click".into());
    v.push("conversion".into());
    v
}

/// The declared schema (built from the column list).
pub fn aliexpress_schema() -> String {
    let mut s = String::from(
        "# AliExpress: 5 country domains, click and purchase.\ngroup = \"search_id\"\n\n\
         [domain]\ncolumn = \"country\"\n",
    );
    let map: Vec<String> = ALIEXPRESS_COUNTRIES
        .iter()
        .enumerate()
        .map(|(i, c)| format!("\"{c}\" = {i}"))
        .collect();
    s.push_str(&format!("map = {{ {} }}\n", map.join(", ")));
    s.push_str("\n[[fields]]\nname = \"country\"\nkind = \"categorical\"\nroles = [\"domain\"]\n");
    for i in 1..=16 {
        s.push_str(&format!(
            "\n[[fields]]\nname = \"categorical_{i}\"\nkind = \"categorical\"\n"
        ));
    }
    for i in 1..=63 {
        s.push_str(&format!(
            "\n[[fields]]\nname = \"numerical_{i}\"\nkind = \"numeric\"\n"
        ));
    }
    s.push_str(
        "\n[[tasks]]\nname = \"click\"\ncolumn = \"click\"\nrule = \"binary\"\n\
         \n[[tasks]]\nname = \"purchase\"\ncolumn = \"conversion\"\nrule = \"binary\"\n",
    );
    s
}

/// The official split: `part` 0 train, 1 valid, 2 test.
pub fn aliexpress_split() -> SplitSpec {
    SplitSpec::ByTime {
        column: "part".into(),
        valid_from: 1,
        test_from: 2,
    }
}

/// The ten files in `dir` (per country in domain order: train, test); a `.csv.gz` stands in for a
/// missing `.csv`. An error names the first missing file and how to obtain the data.
pub fn aliexpress_files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut out = Vec::with_capacity(10);
    for c in ALIEXPRESS_COUNTRIES {
        for f in ["train.csv", "test.csv"] {
            let p = dir.join(format!("AliExpress_{c}")).join(f);
            let gz = p.with_extension("csv.gz");
            if p.is_file() {
                out.push(p);
            } else if gz.is_file() {
                out.push(gz);
            } else {
                return Err(DataError::Missing {
                    path: p,
                    what: format!("AliExpress file AliExpress_{c}/{f}"),
                    hint: aliexpress_hint(),
                });
            }
        }
    }
    Ok(out)
}

/// Reads the release (see the module docs) from the files [`aliexpress_files`] returns.
pub fn load(files: &[PathBuf]) -> Result<RawTable, DataError> {
    let cols = aliexpress_columns();
    let need: Vec<&str> = cols.iter().map(String::as_str).collect();
    let mut builders: Vec<ColumnBuilder> = cols.iter().map(ColumnBuilder::new).collect();
    let mut country = ColumnBuilder::new("country");
    let mut part = ColumnBuilder::new("part");
    let mut table = RawTable::default();
    for (fi, p) in files.iter().enumerate() {
        let file = p.display().to_string();
        let c = ALIEXPRESS_COUNTRIES[(fi / 2).min(4)];
        let is_test = fi % 2 == 1;
        table.files.push(file.clone());
        let start = table.n_rows();
        for_each_row(p, b',', &need, |line, v| {
            for (b, x) in builders.iter_mut().zip(v) {
                b.push(x.trim());
            }
            country.push(c);
            if is_test {
                part.push("2");
            }
            table.push_origin(fi as u16, line, &file)?;
            Ok(())
        })?;
        let n = table.n_rows() - start;
        if n == 0 {
            return Err(DataError::parse(&file, 1, "header", "no data rows"));
        }
        if !is_test {
            let n_valid = (n as f64 * ALIEXPRESS_VALID_SHARE).floor() as usize;
            for i in 0..n {
                part.push(if i < n - n_valid { "0" } else { "1" });
            }
        }
    }
    table.columns = builders.into_iter().map(ColumnBuilder::finish).collect();
    table.columns.push(country.finish());
    table.columns.push(part.finish());
    table.check_shape()?;
    Ok(table)
}
