//! Records to score: which raw columns a trained run reads from new data, the dataset rules
//! that derive the others (MovieLens' domain from `age`, its first genre from `genres`),
//! and writing a split's raw records out ([`export_split`], `mdrec data export`).
//!
//! A [`RecordFormat`] is fixed by the dataset and the fitted schema. For MovieLens-1M and -100K the
//! records are the joined columns a user has (`user_id, movie_id, gender, age, occupation, zip,
//! genres`, optionally `timestamp`); for every other dataset they are the source columns the
//! schema reads (each field's column and the domain column). [`RecordFormat::derive`] adds the
//! derived columns to a table of records, after which [`crate::Encoder::encode`] encodes it
//! exactly as training did.

use std::path::Path;

use crate::config::DatasetConfig;
use crate::fit::Encoder;
use crate::movielens::{age_domain, age_years_domain, first_genre};
use crate::raw::{ColumnBuilder, RawTable};
use crate::recipe::DatasetName;
use crate::schema::FieldKind;
use crate::split::split_rows;
use crate::DataError;

/// The columns `mdrec data export` writes for MovieLens-1M: the record columns and the rating
/// the labels come from.
const MOVIELENS_EXPORT: [&str; 9] = [
    "user_id",
    "movie_id",
    "gender",
    "age",
    "occupation",
    "zip",
    "genres",
    "timestamp",
    "rating",
];

crate::names::string_enum! {
    /// Which split `mdrec data export` writes.
    pub enum ExportSplit: "--split" {
        /// Training rows.
        Train = "train",
        /// Validation rows.
        Valid = "valid",
        /// Test rows.
        Test = "test",
    }
}

/// Writes the raw records of one split of the dataset `cfg` names to `path` (Parquet for a
/// `.parquet` name, Arrow IPC for `.arrow` / `.feather` / `.ipc`, else CSV), in split
/// order: for MovieLens-1M the record columns plus `timestamp` and `rating`, for every other
/// dataset its source columns. Returns the number of rows written.
pub fn export_split(
    cfg: &DatasetConfig,
    seed: u64,
    which: ExportSplit,
    path: &Path,
) -> Result<usize, DataError> {
    cfg.validate()?;
    let source = cfg.source(seed)?;
    let table = crate::recipe::load_table(&source)?;
    let splits = split_rows(&table, &cfg.split_spec(seed)?)?;
    let rows = &splits[match which {
        ExportSplit::Train => 0,
        ExportSplit::Valid => 1,
        ExportSplit::Test => 2,
    }];
    let names: Vec<&str> = if cfg.name.is_movielens() {
        MOVIELENS_EXPORT.to_vec()
    } else {
        table.column_names()
    };
    if crate::pq::is_parquet(path) {
        crate::pq::write_parquet_rows(&table, &names, rows, path)?;
    } else if crate::ipc::is_arrow(path) {
        crate::ipc::write_ipc_rows(&table, &names, rows, path)?;
    } else {
        crate::csv::write_csv_rows(&table, &names, rows, path)?;
    }
    Ok(rows.len())
}

/// The type of a record column, as clients send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// Any string (ids, categories, multi-hot lists).
    Text,
    /// An integer.
    Int,
    /// A number.
    Float,
}

/// One raw column of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordColumn {
    /// Column name.
    pub name: String,
    /// Value type.
    pub ty: ColumnType,
    /// May be absent (the run does not read it).
    pub optional: bool,
}

/// The raw columns a run scores and how the rest are derived from them.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordFormat {
    /// Columns in the order records list them.
    pub columns: Vec<RecordColumn>,
    movielens: Option<AgeRule>,
}

/// How a MovieLens record's `age` gives its domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AgeRule {
    /// MovieLens-1M: an age code (1, 18, 25, 35, 45, 50, 56).
    Code,
    /// MovieLens-100K: years.
    Years,
}

fn col(name: &str, ty: ColumnType, optional: bool) -> RecordColumn {
    RecordColumn {
        name: name.to_string(),
        ty,
        optional,
    }
}

impl RecordFormat {
    /// The record format of a run trained on `dataset` with the fitted `encoder`.
    pub fn new(dataset: DatasetName, encoder: &Encoder) -> Self {
        use ColumnType::{Float, Int, Text};
        if dataset.is_movielens() {
            // ML-1M codes its ages and occupations as integers; ML-100K has years and names
            let (rule, occupation) = if dataset == DatasetName::MovieLens1m {
                (AgeRule::Code, Int)
            } else {
                (AgeRule::Years, Text)
            };
            let mut columns = vec![
                col("user_id", Int, false),
                col("movie_id", Int, false),
                col("gender", Text, false),
                col("age", Int, false),
                col("occupation", occupation, false),
                col("zip", Text, false),
                col("genres", Text, false),
                col("timestamp", Int, true),
            ];
            // a run with `dataset.history` also reads the history lists, timed against the
            // record's `timestamp`, which it then needs
            for c in encoder.input_columns() {
                match columns.iter_mut().find(|x| x.name == c) {
                    Some(x) => x.optional = false,
                    None if crate::movielens::HISTORY_COLUMNS.contains(&c) => {
                        columns.push(col(c, Text, false))
                    }
                    None => {}
                }
            }
            return RecordFormat {
                columns,
                movielens: Some(rule),
            };
        }
        let spec = &encoder.schema().spec;
        let columns = encoder
            .input_columns()
            .into_iter()
            .map(|c| {
                let numeric = spec
                    .fields
                    .iter()
                    .any(|f| f.column() == c && f.kind == FieldKind::Numeric);
                col(c, if numeric { Float } else { Text }, false)
            })
            .collect();
        RecordFormat {
            columns,
            movielens: None,
        }
    }

    /// Checks that every required column is in `t` (naming the missing ones and the accepted
    /// columns) and adds the derived columns.
    pub fn derive(&self, t: &mut RawTable, origin: &str) -> Result<(), DataError> {
        let missing: Vec<&str> = self
            .columns
            .iter()
            .filter(|c| !c.optional && t.column(&c.name).is_none())
            .map(|c| c.name.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(DataError::Config(format!(
                "{origin}: missing column(s) {}; the records need: {}",
                missing.join(", "),
                self.column_list()
            )));
        }
        let Some(rule) = self.movielens else {
            return Ok(());
        };
        let n = t.n_rows();
        let (mut genre, mut domain) = (ColumnBuilder::new("genre"), ColumnBuilder::new("domain"));
        let genres = t.require("genres", origin, "records")?;
        let ages = t.require("age", origin, "records")?;
        for r in 0..n {
            let first = first_genre(genres.get(r))
                .ok_or_else(|| t.error_at(r, "genres", "empty genre list"))?;
            genre.push(first);
            let a = ages.get(r);
            let age = a.trim().parse::<u32>().ok();
            let d = match rule {
                AgeRule::Code => age.and_then(age_domain).ok_or_else(|| {
                    t.error_at(
                        r,
                        "age",
                        format!(
                            "unknown age code `{a}` (expected one of 1, 18, 25, 35, 45, 50, 56)"
                        ),
                    )
                })?,
                AgeRule::Years => age.map(age_years_domain).ok_or_else(|| {
                    t.error_at(r, "age", format!("expected an age in years, found `{a}`"))
                })?,
            };
            domain.push(&d.to_string());
        }
        for b in [genre, domain] {
            let c = b.finish();
            t.columns.retain(|x| x.name != c.name);
            t.columns.push(c);
        }
        Ok(())
    }

    /// `name (type)` for every column, optional ones marked, for error messages.
    pub fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| {
                let ty = match c.ty {
                    ColumnType::Text => "text",
                    ColumnType::Int => "int",
                    ColumnType::Float => "number",
                };
                let opt = if c.optional { ", optional" } else { "" };
                format!("{} ({ty}{opt})", c.name)
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(cols: &[(&str, &[&str])]) -> RawTable {
        let n = cols[0].1.len();
        RawTable {
            columns: cols
                .iter()
                .map(|(name, vals)| {
                    let mut b = ColumnBuilder::new(*name);
                    for v in *vals {
                        b.push(v);
                    }
                    b.finish()
                })
                .collect(),
            files: vec!["records.csv".into()],
            row_file: vec![0; n],
            row_line: (2..n as u32 + 2).collect(),
        }
    }

    fn movielens() -> RecordFormat {
        RecordFormat {
            columns: vec![
                col("genres", ColumnType::Text, false),
                col("age", ColumnType::Int, false),
            ],
            movielens: Some(AgeRule::Code),
        }
    }

    #[test]
    fn movielens_derives_the_age_domain_and_the_first_genre() {
        let mut t = table(&[
            ("genres", &["Comedy|Drama", "Action"]),
            ("age", &["18", "56"]),
        ]);
        movielens().derive(&mut t, "records.csv").unwrap();
        let g = t.column("genre").unwrap();
        let d = t.column("domain").unwrap();
        assert_eq!((g.get(0), g.get(1)), ("Comedy", "Action"));
        assert_eq!((d.get(0), d.get(1)), ("0", "2"));
    }

    #[test]
    fn a_bad_age_or_a_missing_column_is_named() {
        let mut t = table(&[("genres", &["Comedy", "Action"]), ("age", &["18", "17"])]);
        let e = movielens().derive(&mut t, "records.csv").unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("records.csv") && m.contains(":3") && m.contains("age"),
            "{m}"
        );
        let mut t = table(&[("genres", &["Comedy"])]);
        let m = movielens().derive(&mut t, "x.csv").unwrap_err().to_string();
        assert!(m.contains("missing column(s) age"), "{m}");
    }
}
