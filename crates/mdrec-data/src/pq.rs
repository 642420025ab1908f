//! Parquet files of records: read in chunks of rows as raw tables ([`ParquetChunks`]), written
//! from a raw table ([`write_parquet_rows`]). Values become the strings the rest of the data
//! path reads (integers and floats in Rust's `Display` form, null as the empty string), so a
//! Parquet file and the CSV of the same records encode alike. Errors name the file, the record
//! (1-based, counted over the whole file) and the column.
//!
//! Also the pieces every columnar format shares (Parquet here, Arrow IPC in `crate::ipc`): the
//! [`Columnar`] reader trait, [`read_columnar_files`] and [`RecordChunks`] (any record file by
//! extension).

use std::path::Path;
use std::sync::Arc;

use parquet::basic::{ConvertedType, Repetition, Type as PhysicalType};
use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::FileReader;
use parquet::file::serialized_reader::SerializedFileReader;
use parquet::file::writer::SerializedFileWriter;
use parquet::record::reader::RowIter;
use parquet::record::Field;
use parquet::schema::types::Type;

use crate::raw::{ColumnBuilder, RawTable};
use crate::DataError;

/// A Parquet file read `chunk_rows` records at a time (each row group is decoded as it is
/// reached, so memory is bounded by a row group and a chunk).
pub struct ParquetChunks {
    rows: RowIter<'static>,
    name: String,
    header: Vec<String>,
    chunk_rows: usize,
    rows_read: usize,
}

fn pq_error(path: &Path, e: parquet::errors::ParquetError) -> DataError {
    DataError::Config(format!(
        "{}: not a readable Parquet file: {e}",
        path.display()
    ))
}

/// A value as the string the data path reads.
fn cell(f: &Field) -> Result<String, String> {
    Ok(match f {
        Field::Null => String::new(),
        Field::Bool(x) => x.to_string(),
        Field::Byte(x) => x.to_string(),
        Field::Short(x) => x.to_string(),
        Field::Int(x) => x.to_string(),
        Field::Long(x) => x.to_string(),
        Field::UByte(x) => x.to_string(),
        Field::UShort(x) => x.to_string(),
        Field::UInt(x) => x.to_string(),
        Field::ULong(x) => x.to_string(),
        Field::Float(x) => x.to_string(),
        Field::Double(x) => x.to_string(),
        Field::Str(s) => s.clone(),
        Field::Bytes(b) => std::str::from_utf8(b.data())
            .map_err(|_| "binary value is not utf-8 text".to_string())?
            .to_string(),
        other => {
            return Err(format!(
                "unsupported Parquet value `{other}`: records hold integers, floats or strings"
            ))
        }
    })
}

/// A columnar record file read in chunks (Parquet, Arrow IPC).
pub trait Columnar {
    /// Column names.
    fn header(&self) -> &[String];

    /// Appends up to `max_rows` records to `builders` (one per column) and to `table`'s row
    /// origins (file index `file`); returns how many were read.
    fn read_into(
        &mut self,
        builders: &mut [ColumnBuilder],
        table: &mut RawTable,
        file: u16,
        max_rows: usize,
    ) -> Result<usize, DataError>;
}

/// The next chunk of up to `chunk_rows` records of `c`, the file `name`, as a raw table
/// (`None` at the end).
pub(crate) fn next_chunk_of(
    c: &mut dyn Columnar,
    name: &str,
    chunk_rows: usize,
) -> Result<Option<RawTable>, DataError> {
    let mut builders: Vec<ColumnBuilder> = c.header().iter().map(ColumnBuilder::new).collect();
    let mut table = RawTable {
        files: vec![name.to_string()],
        ..RawTable::default()
    };
    if c.read_into(&mut builders, &mut table, 0, chunk_rows)? == 0 {
        return Ok(None);
    }
    table.columns = builders.into_iter().map(ColumnBuilder::finish).collect();
    Ok(Some(table))
}

impl ParquetChunks {
    /// Opens `path` and reads its schema.
    pub fn open(path: &Path, chunk_rows: usize) -> Result<Self, DataError> {
        let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
        let reader = SerializedFileReader::new(file).map_err(|e| pq_error(path, e))?;
        let header: Vec<String> = reader
            .metadata()
            .file_metadata()
            .schema()
            .get_fields()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        Ok(ParquetChunks {
            rows: reader.into_iter(),
            name: path.display().to_string(),
            header,
            chunk_rows: chunk_rows.max(1),
            rows_read: 0,
        })
    }

    /// Column names.
    pub fn header(&self) -> &[String] {
        &self.header
    }

    /// The next chunk (`None` at the end of the file).
    pub fn next_chunk(&mut self) -> Result<Option<RawTable>, DataError> {
        let (name, n) = (self.name.clone(), self.chunk_rows);
        next_chunk_of(self, &name, n)
    }
}

impl Columnar for ParquetChunks {
    fn header(&self) -> &[String] {
        &self.header
    }

    fn read_into(
        &mut self,
        builders: &mut [ColumnBuilder],
        table: &mut RawTable,
        file: u16,
        max_rows: usize,
    ) -> Result<usize, DataError> {
        let mut read = 0;
        while read < max_rows {
            let Some(row) = self.rows.next() else { break };
            let record = self.rows_read + 1;
            let row =
                row.map_err(|e| DataError::Config(format!("{}: record {record}: {e}", self.name)))?;
            let mut n = 0;
            for ((name, field), b) in row.get_column_iter().zip(builders.iter_mut()) {
                let v = cell(field)
                    .map_err(|m| DataError::parse(&self.name, record as u64, name, m))?;
                b.push(&v);
                n += 1;
            }
            if n != self.header.len() {
                return Err(DataError::parse(
                    &self.name,
                    record as u64,
                    "record",
                    format!("{n} values for {} columns", self.header.len()),
                ));
            }
            table.row_file.push(file);
            table.row_line.push(u32::try_from(record).map_err(|_| {
                DataError::parse(&self.name, record as u64, "record", "too many records")
            })?);
            self.rows_read += 1;
            read += 1;
        }
        Ok(read)
    }
}

/// Opens a columnar record file by extension (Arrow IPC for `crate::ipc::is_arrow`, else
/// Parquet).
fn open_columnar(path: &Path, chunk_rows: usize) -> Result<Box<dyn Columnar>, DataError> {
    Ok(if crate::ipc::is_arrow(path) {
        Box::new(crate::ipc::IpcChunks::open(path, chunk_rows)?)
    } else {
        Box::new(ParquetChunks::open(path, chunk_rows)?)
    })
}

/// True when `path` names a columnar record file (Parquet or Arrow IPC).
pub fn is_columnar(path: &Path) -> bool {
    is_parquet(path) || crate::ipc::is_arrow(path)
}

/// Reads one or more columnar files (Parquet and/or Arrow IPC, same columns) into one raw
/// table, a row group or record batch at a time; the `[dataset] name = "csv"` source reads its
/// `files` this way when they are not CSV.
pub fn read_columnar_files(files: &[std::path::PathBuf]) -> Result<RawTable, DataError> {
    let mut header: Option<Vec<String>> = None;
    let mut builders: Vec<ColumnBuilder> = Vec::new();
    let mut table = RawTable::default();
    for (fi, path) in files.iter().enumerate() {
        let fi16 =
            u16::try_from(fi).map_err(|_| DataError::Config("too many data files".into()))?;
        let mut chunks = open_columnar(path, 65_536)?;
        match &header {
            None => {
                builders = chunks.header().iter().map(ColumnBuilder::new).collect();
                header = Some(chunks.header().to_vec());
            }
            Some(h) if h.as_slice() != chunks.header() => {
                return Err(DataError::Config(format!(
                    "{}: columns {} differ from the first file's ({})",
                    path.display(),
                    chunks.header().join(","),
                    h.join(",")
                )))
            }
            Some(_) => {}
        }
        table.files.push(path.display().to_string());
        chunks.read_into(&mut builders, &mut table, fi16, usize::MAX)?;
    }
    table.columns = builders.into_iter().map(ColumnBuilder::finish).collect();
    Ok(table)
}

/// Writes `rows` of `table`, columns `names`, as a Parquet file of UTF-8 string columns (one
/// row group).
pub fn write_parquet_rows(
    table: &RawTable,
    names: &[&str],
    rows: &[u32],
    path: &Path,
) -> Result<(), DataError> {
    let origin = path.display().to_string();
    let cols = names
        .iter()
        .map(|n| table.require(n, &origin, "export"))
        .collect::<Result<Vec<_>, _>>()?;
    let err = |e: parquet::errors::ParquetError| {
        DataError::Config(format!("{}: writing Parquet: {e}", path.display()))
    };
    let fields = names
        .iter()
        .map(|n| {
            Type::primitive_type_builder(n, PhysicalType::BYTE_ARRAY)
                .with_repetition(Repetition::REQUIRED)
                .with_converted_type(ConvertedType::UTF8)
                .build()
                .map(Arc::new)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    let schema = Type::group_type_builder("records")
        .with_fields(fields)
        .build()
        .map_err(err)?;
    let file = std::fs::File::create(path).map_err(|e| DataError::io(path, e))?;
    let props = Arc::new(WriterProperties::builder().build());
    let mut w = SerializedFileWriter::new(file, Arc::new(schema), props).map_err(err)?;
    let mut rg = w.next_row_group().map_err(err)?;
    let mut values: Vec<ByteArray> = Vec::with_capacity(rows.len());
    for col in &cols {
        let Some(mut cw) = rg.next_column().map_err(err)? else {
            break;
        };
        values.clear();
        values.extend(rows.iter().map(|&r| ByteArray::from(col.get(r as usize))));
        cw.typed::<ByteArrayType>()
            .write_batch(&values, None, None)
            .map_err(err)?;
        cw.close().map_err(err)?;
    }
    rg.close().map_err(err)?;
    w.close().map_err(err)?;
    Ok(())
}

/// Records of a CSV, Parquet or Arrow IPC file (by extension), read in chunks.
pub enum RecordChunks {
    /// A CSV file.
    Csv(crate::csv::CsvChunks),
    /// A Parquet file.
    Parquet(ParquetChunks),
    /// An Arrow IPC file or stream.
    Arrow(crate::ipc::IpcChunks),
}

/// True when `path` names a Parquet file (`.parquet` or `.pq`).
pub fn is_parquet(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet") || e.eq_ignore_ascii_case("pq"))
}

impl RecordChunks {
    /// Opens a CSV (with a header row), Parquet or Arrow IPC file.
    pub fn open(path: &Path, chunk_rows: usize) -> Result<Self, DataError> {
        Ok(if is_parquet(path) {
            RecordChunks::Parquet(ParquetChunks::open(path, chunk_rows)?)
        } else if crate::ipc::is_arrow(path) {
            RecordChunks::Arrow(crate::ipc::IpcChunks::open(path, chunk_rows)?)
        } else {
            RecordChunks::Csv(crate::csv::CsvChunks::open(path, chunk_rows)?)
        })
    }

    /// The next chunk (`None` at the end).
    pub fn next_chunk(&mut self) -> Result<Option<RawTable>, DataError> {
        match self {
            RecordChunks::Csv(c) => c.next_chunk(),
            RecordChunks::Parquet(p) => p.next_chunk(),
            RecordChunks::Arrow(a) => a.next_chunk(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RawTable {
        let mut a = ColumnBuilder::new("user_id");
        let mut b = ColumnBuilder::new("genres");
        for (x, y) in [("1", "Comedy|Drama"), ("22", "Horror, Gothic"), ("333", "")] {
            a.push(x);
            b.push(y);
        }
        RawTable {
            columns: vec![a.finish(), b.finish()],
            files: vec!["t".into()],
            row_file: vec![0; 3],
            row_line: vec![2, 3, 4],
        }
    }

    #[test]
    fn written_records_read_back_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.parquet");
        write_parquet_rows(&table(), &["genres", "user_id"], &[2, 0, 1], &p).unwrap();
        let mut c = RecordChunks::open(&p, 2).unwrap();
        let first = c.next_chunk().unwrap().unwrap();
        let second = c.next_chunk().unwrap().unwrap();
        assert!(c.next_chunk().unwrap().is_none());
        assert_eq!(first.column_names(), ["genres", "user_id"]);
        let ids = first.column("user_id").unwrap();
        assert_eq!((ids.get(0), ids.get(1)), ("333", "1"));
        assert_eq!(first.column("genres").unwrap().get(0), "");
        assert_eq!(second.column("genres").unwrap().get(0), "Horror, Gothic");
        assert_eq!(second.row_line, [3]);
    }

    #[test]
    fn a_file_that_is_not_parquet_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.parquet");
        std::fs::write(&p, "user_id\n1\n").unwrap();
        let e = ParquetChunks::open(&p, 10).err().unwrap().to_string();
        assert!(
            e.contains("r.parquet") && e.contains("not a readable Parquet file"),
            "{e}"
        );
    }
}
