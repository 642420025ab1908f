//! Delimited text files with a header row: reading into a [`RawTable`] and writing one out.
//!
//! Reading and writing use the `csv` crate: RFC 4180 quoting (a field in double quotes may hold
//! the delimiter, line breaks and `""` for a quote), `\n` or `\r\n` line ends, blank lines
//! skipped (as pandas' `read_csv` does). A row with a different number of fields than the header
//! (ragged, or cut off), invalid UTF-8 or a broken quote is an error naming the file, the line
//! (where the record starts, 1-based) and the column.

use std::path::{Path, PathBuf};

use crate::raw::{ColumnBuilder, RawTable};
use crate::DataError;

/// What a reader does with one cell: `Ok(None)` keeps the value, `Ok(Some(v))` stores `v`
/// instead, `Err(msg)` rejects it (reported with the file, line and column).
pub(crate) type CellResult = Result<Option<String>, String>;

/// Reads one or more delimited files (same header) into a raw table.
pub fn read_csv_files(files: &[PathBuf], delimiter: u8) -> Result<RawTable, DataError> {
    read_files(files, delimiter, &str::to_string, |_| {
        |_: usize, _: &str| Ok(None)
    })
}

/// Reads delimited files (same header after `rename`) into a raw table. `make_cell` sees the
/// (renamed) header once and returns the per-cell rewrite `cell(column index, value)`.
pub(crate) fn read_files<C>(
    files: &[PathBuf],
    delimiter: u8,
    rename: &dyn Fn(&str) -> String,
    make_cell: impl FnOnce(&[String]) -> C,
) -> Result<RawTable, DataError>
where
    C: FnMut(usize, &str) -> CellResult,
{
    if !delimiter.is_ascii() || delimiter == b'\n' || delimiter == b'\r' || delimiter == b'"' {
        return Err(DataError::Config(format!(
            "csv delimiter must be an ascii character other than a line break or a quote, got byte {delimiter}"
        )));
    }
    let mut header: Option<Vec<String>> = None;
    let mut builders: Vec<ColumnBuilder> = Vec::new();
    let mut cell: Option<C> = None;
    let mut make_cell = Some(make_cell);
    let mut table = RawTable::default();
    for (fi, path) in files.iter().enumerate() {
        let name = path.display().to_string();
        let fi16 = u16::try_from(fi).map_err(|_| DataError::Config("too many csv files".into()))?;
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        let mut rd = ::csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(false)
            .flexible(true)
            .from_reader(bytes.as_slice());
        let mut lines = Lines::default();
        let mut line_of = |rec: &::csv::ByteRecord| lines.start_of(&bytes, rec);
        let mut rec = ::csv::ByteRecord::new();
        let read = |rd: &mut ::csv::Reader<_>, rec: &mut ::csv::ByteRecord| {
            rd.read_byte_record(rec)
                .map_err(|e| csv_error(path, &name, e))
        };
        if !read(&mut rd, &mut rec)? {
            return Err(DataError::parse(&name, 1, "header", "empty file"));
        }
        let head_line = line_of(&rec);
        let head: Vec<String> = header_fields(&name, head_line, &rec)?
            .into_iter()
            .map(rename)
            .collect();
        for (i, h) in head.iter().enumerate() {
            if h.is_empty() {
                return Err(DataError::parse(
                    &name,
                    head_line,
                    format!("header column {}", i + 1),
                    "empty column name",
                ));
            }
            if head[..i].contains(h) {
                return Err(DataError::parse(
                    &name,
                    head_line,
                    h,
                    "duplicate column name",
                ));
            }
        }
        match &header {
            None => {
                builders = head.iter().map(ColumnBuilder::new).collect();
                cell = make_cell.take().map(|m| m(&head));
                header = Some(head.clone());
            }
            Some(h) if *h != head => {
                return Err(DataError::parse(
                    &name,
                    head_line,
                    "header",
                    format!("header differs from the first file's ({})", h.join(",")),
                ))
            }
            Some(_) => {}
        }
        let Some(cell) = cell.as_mut() else {
            return Err(DataError::Config("csv reader: no header".into()));
        };
        table.files.push(name.clone());
        let ncol = head.len();
        while read(&mut rd, &mut rec)? {
            let ln = line_of(&rec);
            if rec.len() != ncol {
                if let Some(i) = rec.iter().position(|f| f.contains(&b'\n')) {
                    return Err(DataError::parse(
                        &name,
                        ln,
                        &head[i.min(ncol - 1)],
                        format!(
                            "quoted field runs over a line break and the row has {} fields, not {ncol}: unterminated quote?",
                            rec.len()
                        ),
                    ));
                }
                let col = &head[rec.len().min(ncol) - usize::from(rec.len() >= ncol)];
                return Err(DataError::parse(
                    &name,
                    ln,
                    col,
                    format!("expected {ncol} fields, found {}", rec.len()),
                ));
            }
            for (c, (b, v)) in builders.iter_mut().zip(rec.iter()).enumerate() {
                let v = std::str::from_utf8(v)
                    .map_err(|_| DataError::parse(&name, ln, &head[c], "invalid utf-8"))?;
                match cell(c, v) {
                    Ok(None) => b.push(v),
                    Ok(Some(s)) => b.push(&s),
                    Err(m) => return Err(DataError::parse(&name, ln, &head[c], m)),
                }
            }
            table.push_origin(fi16, ln, &name)?;
        }
    }
    table.columns = builders.into_iter().map(ColumnBuilder::finish).collect();
    Ok(table)
}

/// Line numbers of records, counted from the bytes: the `csv` crate's own line count lags by
/// one after a `\r\n` line end (it counts the `\n` when it reads the next record).
#[derive(Default)]
struct Lines {
    /// Bytes counted so far.
    pos: usize,
    /// Line breaks in `bytes[..pos]`.
    breaks: u64,
}

impl Lines {
    /// The 1-based line `rec` starts on (records come in file order).
    fn start_of(&mut self, bytes: &[u8], rec: &::csv::ByteRecord) -> u64 {
        let mut start = rec
            .position()
            .map_or(self.pos, |p| {
                usize::try_from(p.byte()).unwrap_or(usize::MAX)
            })
            .clamp(self.pos, bytes.len());
        // a record never starts with a line end: skip the rest of the previous one and blank lines
        while start < bytes.len() && matches!(bytes[start], b'\r' | b'\n') {
            start += 1;
        }
        self.breaks += bytes[self.pos..start]
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64;
        self.pos = start;
        self.breaks + 1
    }
}

/// A `csv` crate error as a [`DataError`] naming the file and line.
pub(crate) fn csv_error(path: &Path, name: &str, e: ::csv::Error) -> DataError {
    let line = e.position().map_or(0, ::csv::Position::line);
    match e.into_kind() {
        ::csv::ErrorKind::Io(io) => DataError::io(path, io),
        other => DataError::parse(name, line, "line", format!("{other:?}")),
    }
}

/// The names of a header record (`line` of file `name`); a name that is not UTF-8 is an error
/// naming its column.
pub(crate) fn header_fields<'r>(
    name: &str,
    line: u64,
    rec: &'r ::csv::ByteRecord,
) -> Result<Vec<&'r str>, DataError> {
    rec.iter()
        .enumerate()
        .map(|(i, f)| {
            std::str::from_utf8(f).map_err(|_| {
                DataError::parse(
                    name,
                    line,
                    format!("header column {}", i + 1),
                    "invalid utf-8",
                )
            })
        })
        .collect()
}

/// Writes a raw table as a comma-separated file with a header row.
pub fn write_csv(table: &RawTable, path: &Path) -> Result<(), DataError> {
    write_csv_with(table, path, b',')
}

/// Writes a raw table as a delimited file with a header row and `\n` line ends; a value holding
/// the delimiter, a quote or a line break is quoted (RFC 4180), so [`read_csv_files`] reads back
/// exactly what was written.
pub fn write_csv_with(table: &RawTable, path: &Path, delimiter: u8) -> Result<(), DataError> {
    let rows: Vec<u32> = (0..table.n_rows() as u32).collect();
    write_rows(table, &table.column_names(), &rows, path, delimiter)
}

/// Writes `rows` of `table`, columns `names` (each must exist), comma-separated.
pub fn write_csv_rows(
    table: &RawTable,
    names: &[&str],
    rows: &[u32],
    path: &Path,
) -> Result<(), DataError> {
    write_rows(table, names, rows, path, b',')
}

fn write_rows(
    table: &RawTable,
    names: &[&str],
    rows: &[u32],
    path: &Path,
    delimiter: u8,
) -> Result<(), DataError> {
    let cols = names
        .iter()
        .map(|n| table.require(n, &path.display().to_string(), "export"))
        .collect::<Result<Vec<_>, _>>()?;
    let f = std::fs::File::create(path).map_err(|e| DataError::io(path, e))?;
    let mut w = ::csv::WriterBuilder::new()
        .delimiter(delimiter)
        .terminator(::csv::Terminator::Any(b'\n'))
        .from_writer(std::io::BufWriter::new(f));
    let err = |e: ::csv::Error| match e.into_kind() {
        ::csv::ErrorKind::Io(io) => DataError::io(path, io),
        other => DataError::Config(format!("{}: {other:?}", path.display())),
    };
    w.write_record(names).map_err(err)?;
    for &r in rows {
        w.write_record(cols.iter().map(|c| c.get(r as usize)))
            .map_err(err)?;
    }
    w.flush().map_err(|e| DataError::io(path, e))?;
    Ok(())
}

/// Line ends (`\r`, `\n`) of a byte stream, with their offsets, noted as the bytes are read:
/// the streaming counterpart of [`Lines`]. The `csv` reader reads ahead of the record it returns,
/// so the marks of bytes it has read but not yet returned wait in a queue (bounded by its
/// buffer).
struct LineEnds<R> {
    inner: R,
    /// Bytes read so far.
    pos: u64,
    /// Offsets and bytes of the line ends not yet passed by a record start.
    marks: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<(u64, u8)>>>,
}

impl<R: std::io::Read> std::io::Read for LineEnds<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut marks = self
            .marks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (i, &b) in buf[..n].iter().enumerate() {
            if b == b'\n' || b == b'\r' {
                marks.push_back((self.pos + i as u64, b));
            }
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// A comma-separated file read in chunks of at most `chunk_rows` records, so that any number
/// of rows is read in bounded memory. Errors name the file, the line (counted from the bytes,
/// as the whole-file reader does) and the column.
pub struct CsvChunks {
    rd: ::csv::Reader<LineEnds<std::io::BufReader<std::fs::File>>>,
    /// The line ends [`LineEnds`] noted, shared with the reader.
    marks: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<(u64, u8)>>>,
    /// Line breaks before the last record start.
    breaks: u64,
    path: PathBuf,
    name: String,
    header: Vec<String>,
    chunk_rows: usize,
    rec: ::csv::ByteRecord,
    rows_read: usize,
}

impl CsvChunks {
    /// Opens `path` and reads its header row.
    pub fn open(path: &Path, chunk_rows: usize) -> Result<Self, DataError> {
        let name = path.display().to_string();
        let f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
        let marks = std::sync::Arc::default();
        let mut rd = ::csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(LineEnds {
                inner: std::io::BufReader::new(f),
                pos: 0,
                marks: std::sync::Arc::clone(&marks),
            });
        let mut rec = ::csv::ByteRecord::new();
        if !rd
            .read_byte_record(&mut rec)
            .map_err(|e| csv_error(path, &name, e))?
        {
            return Err(DataError::parse(&name, 1, "header", "empty file"));
        }
        let mut header: Vec<String> = Vec::with_capacity(rec.len());
        for (i, h) in header_fields(&name, 1, &rec)?.into_iter().enumerate() {
            if h.is_empty() || header.iter().any(|x| x == h) {
                return Err(DataError::parse(
                    &name,
                    1,
                    format!("header column {}", i + 1),
                    format!("empty or duplicate column name `{h}`"),
                ));
            }
            header.push(h.to_string());
        }
        Ok(CsvChunks {
            rd,
            marks,
            breaks: 0,
            path: path.to_path_buf(),
            name,
            header,
            chunk_rows: chunk_rows.max(1),
            rec,
            rows_read: 0,
        })
    }

    /// The header row.
    pub fn header(&self) -> &[String] {
        &self.header
    }

    /// Records read so far.
    pub fn rows_read(&self) -> usize {
        self.rows_read
    }

    /// The 1-based line the record just read starts on: line breaks before its first byte,
    /// skipping the line ends the `csv` crate's position still points at (the `\n` of a `\r\n`
    /// and blank lines), which its own line count misses.
    fn line_of_record(&mut self) -> u64 {
        let start = self.rec.position().map_or(0, ::csv::Position::byte);
        let mut marks = self
            .marks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut at = start;
        while let Some(&(off, b)) = marks.front() {
            if off < start || off == at {
                at += u64::from(off == at);
                self.breaks += u64::from(b == b'\n');
                marks.pop_front();
            } else {
                break;
            }
        }
        self.breaks + 1
    }

    /// The next chunk (`None` at the end of the file).
    pub fn next_chunk(&mut self) -> Result<Option<RawTable>, DataError> {
        let ncol = self.header.len();
        let mut builders: Vec<ColumnBuilder> = self.header.iter().map(ColumnBuilder::new).collect();
        let mut table = RawTable {
            files: vec![self.name.clone()],
            ..RawTable::default()
        };
        while table.row_line.len() < self.chunk_rows {
            let more = self
                .rd
                .read_byte_record(&mut self.rec)
                .map_err(|e| csv_error(&self.path, &self.name, e))?;
            if !more {
                break;
            }
            let ln = self.line_of_record();
            if self.rec.len() != ncol {
                return Err(DataError::parse(
                    &self.name,
                    ln,
                    "line",
                    format!("expected {ncol} fields, found {}", self.rec.len()),
                ));
            }
            for (c, (b, v)) in builders.iter_mut().zip(self.rec.iter()).enumerate() {
                let v = std::str::from_utf8(v).map_err(|_| {
                    DataError::parse(&self.name, ln, &self.header[c], "invalid utf-8")
                })?;
                b.push(v);
            }
            table.push_origin(0, ln, &self.name)?;
        }
        if table.row_line.is_empty() {
            return Ok(None);
        }
        self.rows_read += table.row_line.len();
        table.columns = builders.into_iter().map(ColumnBuilder::finish).collect();
        Ok(Some(table))
    }
}
