//! Raw tables: the common shape every source produces before schema fitting.
//!
//! A [`RawTable`] is column-major and interned: each [`RawColumn`] holds its distinct string
//! values once (`dict`) and one `u32` code per row. Fitting and encoding then work per distinct
//! value instead of per row, which keeps 1M-row datasets fast. Every row remembers where it came
//! from (file and 1-based line) so that errors found later still name the source line.

use std::collections::HashMap;

use crate::DataError;

/// One interned column.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawColumn {
    /// Column name.
    pub name: String,
    /// Distinct values, in first-seen order.
    pub dict: Vec<String>,
    /// Per row, an index into `dict`.
    pub codes: Vec<u32>,
}

impl RawColumn {
    /// The string value of row `r`.
    pub fn get(&self, r: usize) -> &str {
        &self.dict[self.codes[r] as usize]
    }
    /// The first row whose value has dict code `code` (for error messages).
    pub fn first_row_with(&self, code: u32) -> Option<usize> {
        self.codes.iter().position(|&c| c == code)
    }
    /// The first row among `rows` whose value has dict code `code`.
    pub fn first_row_in(&self, rows: &[u32], code: u32) -> Option<usize> {
        rows.iter()
            .map(|&r| r as usize)
            .find(|&r| self.codes[r] == code)
    }
}

/// Builds an interned column value by value.
#[derive(Debug, Default)]
pub struct ColumnBuilder {
    col: RawColumn,
    index: HashMap<String, u32>,
}

impl ColumnBuilder {
    /// An empty column.
    pub fn new(name: impl Into<String>) -> Self {
        ColumnBuilder {
            col: RawColumn {
                name: name.into(),
                ..Default::default()
            },
            index: HashMap::new(),
        }
    }
    /// Appends one value.
    pub fn push(&mut self, v: &str) {
        let code = self.intern(v);
        self.col.codes.push(code);
    }
    /// The code of `v`, added to the distinct values if new (no row is appended).
    pub fn intern(&mut self, v: &str) -> u32 {
        match self.index.get(v) {
            Some(&c) => c,
            None => {
                let c = self.col.dict.len() as u32;
                self.col.dict.push(v.to_string());
                self.index.insert(v.to_string(), c);
                c
            }
        }
    }
    /// The code of `v` if it has been seen.
    pub fn code_of(&self, v: &str) -> Option<u32> {
        self.index.get(v).copied()
    }
    /// Appends a row holding the value of code `code` (from [`Self::intern`]).
    pub fn push_code(&mut self, code: u32) {
        self.col.codes.push(code);
    }
    /// The distinct value of code `code`.
    pub fn value(&self, code: u32) -> &str {
        &self.col.dict[code as usize]
    }
    /// The number of distinct values.
    pub fn n_values(&self) -> usize {
        self.col.dict.len()
    }
    /// The finished column.
    pub fn finish(self) -> RawColumn {
        self.col
    }
}

/// A raw table: interned string columns plus the origin of each row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawTable {
    /// Columns (all of length `n_rows`).
    pub columns: Vec<RawColumn>,
    /// Source files referenced by `row_file`.
    pub files: Vec<String>,
    /// Per row, an index into `files`.
    pub row_file: Vec<u16>,
    /// Per row, the 1-based line in its file.
    pub row_line: Vec<u32>,
}

impl RawTable {
    /// Record where the row just appended came from: file index `file`, 1-based `line` of the
    /// file `name` (an error names it when the line does not fit the table's `u32`).
    pub(crate) fn push_origin(
        &mut self,
        file: u16,
        line: u64,
        name: &str,
    ) -> Result<(), DataError> {
        let l = u32::try_from(line)
            .map_err(|_| DataError::parse(name, line, "line", "too many lines"))?;
        self.row_file.push(file);
        self.row_line.push(l);
        Ok(())
    }
    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.row_line.len()
    }
    /// Column names.
    pub fn column_names(&self) -> Vec<&str> {
        self.columns.iter().map(|c| c.name.as_str()).collect()
    }
    /// The column called `name`.
    pub fn column(&self, name: &str) -> Option<&RawColumn> {
        self.columns.iter().find(|c| c.name == name)
    }
    /// The column called `name`, or a schema error naming `origin`, the column and the columns
    /// available.
    pub fn require(&self, name: &str, origin: &str, what: &str) -> Result<&RawColumn, DataError> {
        self.column(name).ok_or_else(|| {
            DataError::schema(
                origin,
                format!(
                    "{what}: column `{name}` not found; available columns: {}",
                    self.column_names().join(", ")
                ),
            )
        })
    }
    /// File name of row `r`.
    pub fn file_of(&self, r: usize) -> &str {
        &self.files[self.row_file[r] as usize]
    }
    /// A parse error located at row `r`.
    pub fn error_at(&self, r: usize, field: &str, msg: impl Into<String>) -> DataError {
        DataError::parse(self.file_of(r), u64::from(self.row_line[r]), field, msg)
    }
    /// Checks that all columns have one code per row.
    pub fn check_shape(&self) -> Result<(), DataError> {
        let n = self.n_rows();
        if self.row_file.len() != n {
            return Err(DataError::Config(
                "raw table: row_file and row_line differ in length".into(),
            ));
        }
        for c in &self.columns {
            if c.codes.len() != n {
                return Err(DataError::Config(format!(
                    "raw table: column `{}` has {} rows, expected {n}",
                    c.name,
                    c.codes.len()
                )));
            }
        }
        Ok(())
    }
}

/// Sorts distinct raw values: numerically when all parse as integers (ties by string), else by
/// string.
pub fn sort_values(values: &mut [String]) {
    let ints: Option<Vec<i128>> = values.iter().map(|v| v.parse::<i128>().ok()).collect();
    if ints.is_some() {
        values.sort_by(|a, b| {
            let x: i128 = a.parse().unwrap_or_default();
            let y: i128 = b.parse().unwrap_or_default();
            x.cmp(&y).then_with(|| a.cmp(b))
        });
    } else {
        values.sort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_and_sorting() {
        let mut b = ColumnBuilder::new("x");
        for v in ["b", "a", "b", "c"] {
            b.push(v);
        }
        let c = b.finish();
        assert_eq!(c.dict, vec!["b", "a", "c"]);
        assert_eq!(c.codes, vec![0, 1, 0, 2]);
        assert_eq!(c.get(3), "c");
        let mut v: Vec<String> = ["10", "9", "-1", "100"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        sort_values(&mut v);
        assert_eq!(v, vec!["-1", "9", "10", "100"]);
        let mut v: Vec<String> = ["10", "9", "x"].iter().map(|s| s.to_string()).collect();
        sort_values(&mut v);
        assert_eq!(v, vec!["10", "9", "x"]);
    }
}
