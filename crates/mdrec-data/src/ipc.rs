//! Arrow IPC files of records: the file format (Feather v2, `.arrow`, `.feather`, `.ipc`, what
//! `pyarrow.feather.write_feather` and `DataFrame.to_feather` write, lz4-compressed by default)
//! and the stream format (`.arrows`), read in chunks of rows as raw tables ([`IpcChunks`]) and
//! written from a raw table ([`write_ipc_rows`]).
//!
//! Values become the strings the rest of the data path reads, exactly as for Parquet
//! (`crate::pq`): integers and floats in Rust's `Display` form, booleans as `true`/`false`,
//! null as the empty string, dictionary-encoded strings (pandas categoricals) as their value.
//! Other types (dates, lists, structs, ...) are an error naming the file and column. Errors
//! name the file, the record (1-based over the whole file) and the column.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_ipc::reader::{FileReader, StreamReader};
use arrow_ipc::writer::FileWriter;
use arrow_schema::{ArrowError, DataType, Field, Schema};

use crate::pq::Columnar;
use crate::raw::{ColumnBuilder, RawTable};
use crate::DataError;

/// True when `path` names an Arrow IPC file: `.arrow`, `.feather`, `.ipc` (file format) or
/// `.arrows` (stream format).
pub fn is_arrow(path: &Path) -> bool {
    path.extension().is_some_and(|e| {
        ["arrow", "feather", "ipc", "arrows"]
            .iter()
            .any(|x| e.eq_ignore_ascii_case(x))
    })
}

fn is_stream(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("arrows"))
}

fn ipc_error(path: &Path, e: ArrowError) -> DataError {
    DataError::Config(format!(
        "{}: not a readable Arrow IPC {}: {e}",
        path.display(),
        if is_stream(path) {
            "stream (.arrows)"
        } else {
            "file (.arrow / .feather)"
        }
    ))
}

type Batches = Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send>;

/// An Arrow IPC file read `chunk_rows` records at a time (one record batch is decoded at a
/// time, so memory is bounded by a batch and a chunk).
pub struct IpcChunks {
    batches: Batches,
    /// The batch being read and the next row of it.
    current: Option<(RecordBatch, usize)>,
    name: String,
    header: Vec<String>,
    chunk_rows: usize,
    rows_read: usize,
}

impl IpcChunks {
    /// Opens `path` (the stream format for `.arrows`, else the file format) and reads its
    /// schema; a column of a type records cannot hold is refused here, by name.
    pub fn open(path: &Path, chunk_rows: usize) -> Result<Self, DataError> {
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        let (schema, batches): (Arc<Schema>, Batches) = if is_stream(path) {
            let r = StreamReader::try_new(BufReader::new(file), None)
                .map_err(|e| ipc_error(path, e))?;
            (r.schema(), Box::new(r))
        } else {
            let r =
                FileReader::try_new(BufReader::new(file), None).map_err(|e| ipc_error(path, e))?;
            (r.schema(), Box::new(r))
        };
        for f in schema.fields() {
            if !supported(f.data_type()) {
                return Err(DataError::Config(format!(
                    "{}: column `{}` has Arrow type {}; records hold integers, floats, booleans or strings (cast it before writing the file)",
                    path.display(),
                    f.name(),
                    f.data_type()
                )));
            }
        }
        Ok(IpcChunks {
            batches,
            current: None,
            name: path.display().to_string(),
            header: schema.fields().iter().map(|f| f.name().clone()).collect(),
            chunk_rows: chunk_rows.max(1),
            rows_read: 0,
        })
    }

    /// The next chunk (`None` at the end of the file).
    pub fn next_chunk(&mut self) -> Result<Option<RawTable>, DataError> {
        let (name, n) = (self.name.clone(), self.chunk_rows);
        crate::pq::next_chunk_of(self, &name, n)
    }
}

fn supported(t: &DataType) -> bool {
    use DataType::*;
    match t {
        Null | Boolean | Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64
        | Float32 | Float64 | Utf8 | LargeUtf8 | Utf8View | Binary | LargeBinary => true,
        Dictionary(_, v) => matches!(**v, Utf8 | LargeUtf8),
        _ => false,
    }
}

/// Pushes rows `from..from + n` of `col` to `b` as strings; `record` is the 1-based record
/// number of row `from` in the file (for errors).
fn push_column(
    col: &ArrayRef,
    from: usize,
    n: usize,
    b: &mut ColumnBuilder,
    file: &str,
    column: &str,
    record: usize,
) -> Result<(), DataError> {
    macro_rules! each {
        ($arr:expr, $fmt:expr) => {{
            let a = $arr;
            for i in from..from + n {
                if a.is_null(i) {
                    b.push("");
                } else {
                    b.push(&$fmt(a.value(i)));
                }
            }
        }};
    }
    fn text(v: &[u8], file: &str, column: &str, record: usize) -> Result<String, DataError> {
        std::str::from_utf8(v).map(str::to_string).map_err(|_| {
            DataError::parse(
                file,
                record as u64,
                column,
                "binary value is not utf-8 text",
            )
        })
    }
    match col.data_type() {
        DataType::Null => (0..n).for_each(|_| b.push("")),
        DataType::Boolean => each!(col.as_boolean(), |v: bool| v.to_string()),
        DataType::Int8 => each!(col.as_primitive::<Int8Type>(), |v: i8| v.to_string()),
        DataType::Int16 => each!(col.as_primitive::<Int16Type>(), |v: i16| v.to_string()),
        DataType::Int32 => each!(col.as_primitive::<Int32Type>(), |v: i32| v.to_string()),
        DataType::Int64 => each!(col.as_primitive::<Int64Type>(), |v: i64| v.to_string()),
        DataType::UInt8 => each!(col.as_primitive::<UInt8Type>(), |v: u8| v.to_string()),
        DataType::UInt16 => each!(col.as_primitive::<UInt16Type>(), |v: u16| v.to_string()),
        DataType::UInt32 => each!(col.as_primitive::<UInt32Type>(), |v: u32| v.to_string()),
        DataType::UInt64 => each!(col.as_primitive::<UInt64Type>(), |v: u64| v.to_string()),
        DataType::Float32 => each!(col.as_primitive::<Float32Type>(), |v: f32| v.to_string()),
        DataType::Float64 => each!(col.as_primitive::<Float64Type>(), |v: f64| v.to_string()),
        DataType::Utf8 => each!(col.as_string::<i32>(), |v: &str| v.to_string()),
        DataType::LargeUtf8 => each!(col.as_string::<i64>(), |v: &str| v.to_string()),
        DataType::Utf8View => each!(col.as_string_view(), |v: &str| v.to_string()),
        DataType::Binary | DataType::LargeBinary => {
            for i in from..from + n {
                if col.is_null(i) {
                    b.push("");
                    continue;
                }
                let v = match col.data_type() {
                    DataType::Binary => col.as_binary::<i32>().value(i),
                    _ => col.as_binary::<i64>().value(i),
                };
                b.push(&text(v, file, column, record + i - from)?);
            }
        }
        DataType::Dictionary(_, _) => {
            let d = col.as_any_dictionary();
            let keys = d.normalized_keys();
            let values = d.values();
            for (i, &k) in keys.iter().enumerate().skip(from).take(n) {
                if col.is_null(i) {
                    b.push("");
                    continue;
                }
                let v = match values.data_type() {
                    DataType::Utf8 => values.as_string::<i32>().value(k),
                    _ => values.as_string::<i64>().value(k),
                };
                b.push(v);
            }
        }
        other => {
            return Err(DataError::Config(format!(
                "{file}: column `{column}` has Arrow type {other}, which records cannot hold"
            )))
        }
    }
    Ok(())
}

impl Columnar for IpcChunks {
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
            let (batch, at) = match self.current.take() {
                Some((b, at)) if at < b.num_rows() => (b, at),
                _ => match self.batches.next() {
                    None => break,
                    Some(b) => {
                        let b = b.map_err(|e| {
                            DataError::Config(format!(
                                "{}: record batch after record {}: {e}",
                                self.name, self.rows_read
                            ))
                        })?;
                        (b, 0)
                    }
                },
            };
            let n = (batch.num_rows() - at).min(max_rows - read);
            let record = self.rows_read + 1;
            for ((col, name), b) in batch
                .columns()
                .iter()
                .zip(&self.header)
                .zip(builders.iter_mut())
            {
                push_column(col, at, n, b, &self.name, name, record)?;
            }
            for k in 0..n {
                let r = record + k;
                table.row_file.push(file);
                table.row_line.push(u32::try_from(r).map_err(|_| {
                    DataError::parse(&self.name, r as u64, "record", "too many records")
                })?);
            }
            self.rows_read += n;
            read += n;
            self.current = Some((batch, at + n));
        }
        Ok(read)
    }
}

/// Writes `rows` of `table`, columns `names`, as an Arrow IPC file of UTF-8 string columns
/// (one record batch; uncompressed).
pub fn write_ipc_rows(
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
    let err =
        |e: ArrowError| DataError::Config(format!("{}: writing Arrow IPC: {e}", path.display()));
    let schema = Arc::new(Schema::new(
        names
            .iter()
            .map(|n| Field::new(*n, DataType::Utf8, false))
            .collect::<Vec<_>>(),
    ));
    let arrays: Vec<ArrayRef> = cols
        .iter()
        .map(|c| {
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|&r| c.get(r as usize)),
            )) as ArrayRef
        })
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), arrays).map_err(err)?;
    let file = File::create(path).map_err(|e| DataError::io(path, e))?;
    let mut w = FileWriter::try_new(std::io::BufWriter::new(file), &schema).map_err(err)?;
    w.write(&batch).map_err(err)?;
    w.finish().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{
        BooleanArray, DictionaryArray, Float64Array, Int32Array, Int64Array, ListArray,
    };
    use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};

    /// Typed columns as pandas/pyarrow write them: ints, floats with a null, strings, a
    /// categorical (dictionary), booleans.
    fn typed() -> RecordBatch {
        let cat: DictionaryArray<arrow_array::types::Int32Type> =
            vec!["tv", "tv", "shop", "tv", "shop"].into_iter().collect();
        RecordBatch::try_from_iter([
            (
                "user",
                Arc::new(Int64Array::from(vec![5, 6, 7, 8, 9])) as ArrayRef,
            ),
            (
                "score",
                Arc::new(Float64Array::from(vec![
                    Some(0.25),
                    None,
                    Some(1.0),
                    Some(-2.5),
                    Some(3.0),
                ])),
            ),
            (
                "tags",
                Arc::new(StringArray::from(vec!["a|b", "", "c", "a", "b|c"])),
            ),
            ("scene", Arc::new(cat)),
            (
                "click",
                Arc::new(BooleanArray::from(vec![true, false, false, true, true])),
            ),
        ])
        .unwrap()
    }

    fn column(t: &RawTable, name: &str) -> Vec<String> {
        let c = t.column(name).unwrap();
        (0..t.n_rows()).map(|r| c.get(r).to_string()).collect()
    }

    fn read_all(path: &Path, chunk: usize) -> (Vec<RawTable>, Vec<String>) {
        let mut c = IpcChunks::open(path, chunk).unwrap();
        let header = c.header.clone();
        let mut v = Vec::new();
        while let Some(t) = c.next_chunk().unwrap() {
            v.push(t);
        }
        (v, header)
    }

    #[test]
    fn typed_columns_read_as_the_strings_csv_would_hold_in_both_formats() {
        let dir = tempfile::tempdir().unwrap();
        let b = typed();
        let file = dir.path().join("r.feather");
        let mut w = FileWriter::try_new(File::create(&file).unwrap(), &b.schema()).unwrap();
        // two record batches: chunks cross the batch boundary
        w.write(&b.slice(0, 3)).unwrap();
        w.write(&b.slice(3, 2)).unwrap();
        w.finish().unwrap();
        let stream = dir.path().join("r.arrows");
        let mut w = StreamWriter::try_new(File::create(&stream).unwrap(), &b.schema()).unwrap();
        w.write(&b).unwrap();
        w.finish().unwrap();
        for path in [&file, &stream] {
            let (chunks, header) = read_all(path, 2);
            assert_eq!(header, ["user", "score", "tags", "scene", "click"]);
            assert_eq!(
                chunks.iter().map(RawTable::n_rows).collect::<Vec<_>>(),
                [2, 2, 1]
            );
            let t = &chunks[1];
            assert_eq!(column(t, "user"), ["7", "8"]);
            assert_eq!(column(t, "scene"), ["shop", "tv"]);
            assert_eq!(t.row_line, [3, 4], "records are numbered over the file");
            let t = &chunks[0];
            assert_eq!(column(t, "score"), ["0.25", ""]);
            assert_eq!(column(t, "tags"), ["a|b", ""]);
            assert_eq!(column(t, "click"), ["true", "false"]);
        }
    }

    #[test]
    fn an_lz4_compressed_file_reads_like_an_uncompressed_one() {
        let dir = tempfile::tempdir().unwrap();
        let b = typed();
        let path = dir.path().join("c.arrow");
        let opts = IpcWriteOptions::default()
            .try_with_compression(Some(arrow_ipc::CompressionType::LZ4_FRAME))
            .unwrap();
        let mut w =
            FileWriter::try_new_with_options(File::create(&path).unwrap(), &b.schema(), opts)
                .unwrap();
        w.write(&b).unwrap();
        w.finish().unwrap();
        let (chunks, _) = read_all(&path, 10);
        assert_eq!(column(&chunks[0], "user"), ["5", "6", "7", "8", "9"]);
    }

    #[test]
    fn unsupported_columns_and_other_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let lists =
            ListArray::from_iter_primitive::<arrow_array::types::Int32Type, _, _>(vec![Some(
                vec![Some(1), Some(2)],
            )]);
        let b = RecordBatch::try_from_iter([
            ("id", Arc::new(Int32Array::from(vec![1])) as ArrayRef),
            ("history", Arc::new(lists) as ArrayRef),
        ])
        .unwrap();
        let path = dir.path().join("l.arrow");
        let mut w = FileWriter::try_new(File::create(&path).unwrap(), &b.schema()).unwrap();
        w.write(&b).unwrap();
        w.finish().unwrap();
        let e = IpcChunks::open(&path, 10).err().unwrap().to_string();
        assert!(
            e.contains("l.arrow") && e.contains("column `history`"),
            "{e}"
        );
        let fake = dir.path().join("x.arrow");
        std::fs::write(&fake, "user,click\n1,0\n").unwrap();
        let e = IpcChunks::open(&fake, 10).err().unwrap().to_string();
        assert!(
            e.contains("x.arrow") && e.contains("not a readable Arrow IPC file"),
            "{e}"
        );
    }

    #[test]
    fn written_rows_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = ColumnBuilder::new("a");
        let mut c = ColumnBuilder::new("b");
        for (x, y) in [("1", "x"), ("2", "y,z"), ("3", "")] {
            b.push(x);
            c.push(y);
        }
        let t = RawTable {
            columns: vec![b.finish(), c.finish()],
            ..RawTable::default()
        };
        let path = dir.path().join("w.ipc");
        write_ipc_rows(&t, &["b", "a"], &[2, 0], &path).unwrap();
        let (chunks, header) = read_all(&path, 100);
        assert_eq!(header, ["b", "a"]);
        assert_eq!(column(&chunks[0], "a"), ["3", "1"]);
        assert_eq!(column(&chunks[0], "b"), ["", "x"]);
    }
}
