//! Delimited text files with a header row: reading into a [`RawTable`] and writing one out.
//!
//! Quoting is not supported: a field is everything between two delimiters. A row with a
//! different number of fields than the header (ragged, or cut off) is an error naming the file,
//! the line and the column.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::raw::{ColumnBuilder, RawTable};
use crate::DataError;

/// Reads one or more delimited files (same header) into a raw table.
pub fn read_csv_files(files: &[PathBuf], delimiter: u8) -> Result<RawTable, DataError> {
    if !delimiter.is_ascii() || delimiter == b'\n' || delimiter == b'\r' {
        return Err(DataError::Config(format!(
            "csv delimiter must be an ascii character other than a line break, got byte {delimiter}"
        )));
    }
    let delim = char::from(delimiter);
    let mut header: Option<Vec<String>> = None;
    let mut builders: Vec<ColumnBuilder> = Vec::new();
    let mut table = RawTable::default();
    for (fi, path) in files.iter().enumerate() {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let off = e.utf8_error().valid_up_to();
                let line = e.as_bytes()[..off].iter().filter(|&&b| b == b'\n').count() + 1;
                return Err(DataError::parse(name, line as u64, "line", "invalid utf-8"));
            }
        };
        let fi16 = u16::try_from(fi).map_err(|_| DataError::Config("too many csv files".into()))?;
        table.files.push(name.clone());
        let mut lines = text.split('\n').enumerate().peekable();
        let Some((_, head)) = lines.next() else {
            return Err(DataError::parse(name, 1, "header", "empty file"));
        };
        let head: Vec<String> = head
            .strip_suffix('\r')
            .unwrap_or(head)
            .split(delim)
            .map(str::to_string)
            .collect();
        if head.iter().any(String::is_empty) {
            return Err(DataError::parse(name, 1, "header", "empty column name"));
        }
        for (i, h) in head.iter().enumerate() {
            if head[..i].contains(h) {
                return Err(DataError::parse(name, 1, h, "duplicate column name"));
            }
        }
        match &header {
            None => {
                builders = head.iter().map(ColumnBuilder::new).collect();
                header = Some(head.clone());
            }
            Some(h) if *h != head => {
                return Err(DataError::parse(
                    name,
                    1,
                    "header",
                    format!("header differs from the first file's ({})", h.join(",")),
                ))
            }
            Some(_) => {}
        }
        let ncol = head.len();
        let mut vals: Vec<&str> = Vec::with_capacity(ncol);
        while let Some((i, line)) = lines.next() {
            let ln = i as u64 + 1;
            if line.is_empty() && lines.peek().is_none() {
                break; // final newline
            }
            let line = line.strip_suffix('\r').unwrap_or(line);
            vals.clear();
            vals.extend(line.split(delim));
            if vals.len() != ncol {
                let col = &head[vals.len().min(ncol) - usize::from(vals.len() >= ncol)];
                return Err(DataError::parse(
                    name,
                    ln,
                    col,
                    format!("expected {ncol} fields, found {}", vals.len()),
                ));
            }
            for (b, v) in builders.iter_mut().zip(&vals) {
                b.push(v);
            }
            table.row_file.push(fi16);
            table.row_line.push(
                u32::try_from(ln)
                    .map_err(|_| DataError::parse(&name, ln, "line", "too many lines"))?,
            );
        }
    }
    table.columns = builders.into_iter().map(ColumnBuilder::finish).collect();
    Ok(table)
}

/// Writes a raw table as a comma-separated file with a header row.
pub fn write_csv(table: &RawTable, path: &Path) -> Result<(), DataError> {
    write_csv_with(table, path, b',')
}

/// Writes a raw table as a delimited file with a header row. A value containing the delimiter
/// or a line break cannot be written and is an error.
pub fn write_csv_with(table: &RawTable, path: &Path, delimiter: u8) -> Result<(), DataError> {
    let d = char::from(delimiter);
    for c in &table.columns {
        for v in std::iter::once(&c.name).chain(&c.dict) {
            if v.contains(d) || v.contains('\n') || v.contains('\r') {
                return Err(DataError::Config(format!(
                    "{}: column `{}`: value `{v}` contains the delimiter or a line break",
                    path.display(),
                    c.name
                )));
            }
        }
    }
    let f = std::fs::File::create(path).map_err(|e| DataError::io(path, e))?;
    let mut w = std::io::BufWriter::new(f);
    let mut line = table.column_names().join(&d.to_string());
    line.push('\n');
    let io = |e| DataError::io(path, e);
    w.write_all(line.as_bytes()).map_err(io)?;
    for r in 0..table.n_rows() {
        line.clear();
        for (i, c) in table.columns.iter().enumerate() {
            if i > 0 {
                line.push(d);
            }
            line.push_str(c.get(r));
        }
        line.push('\n');
        w.write_all(line.as_bytes()).map_err(io)?;
    }
    w.flush().map_err(io)?;
    Ok(())
}
