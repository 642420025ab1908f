//! Streaming helpers for the readers of official raw layouts ([`crate::kuairand`],
//! [`crate::aliexpress`], [`crate::aliccp_raw`], [`crate::amazon_raw`]): a delimited file read
//! record by record in bounded memory (the `csv` crate over a buffered reader, optionally through
//! gzip), a text file read line by line, a key join that adds the columns of a side file (user or
//! item features) to a [`RawTable`] per distinct key value, and row reordering and filtering.
//!
//! Errors name the file, the 1-based line (as the `csv` crate counts lines) and the column.

use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::raw::{RawColumn, RawTable};
use crate::DataError;

/// Opens `path` for reading, through a gzip decoder when the name ends in `.gz`.
pub(crate) fn open(path: &Path) -> Result<Box<dyn Read>, DataError> {
    let f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let r = BufReader::with_capacity(1 << 20, f);
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(r)))
    } else {
        Ok(Box::new(r))
    }
}

/// Reads a delimited file with a header row record by record. `need` names the columns the
/// caller reads (an error lists the header when one is missing); `row(line, values)` gets their
/// values in `need` order. Rows with another number of fields than the header, invalid UTF-8 or
/// a broken quote are errors naming the file and line. Returns the number of records.
pub(crate) fn for_each_row(
    path: &Path,
    delimiter: u8,
    need: &[&str],
    mut row: impl FnMut(u64, &[&str]) -> Result<(), DataError>,
) -> Result<u64, DataError> {
    let name = path.display().to_string();
    let mut rd = ::csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(open(path)?);
    let mut rec = ::csv::ByteRecord::new();
    let read = |rd: &mut ::csv::Reader<Box<dyn Read>>, rec: &mut ::csv::ByteRecord| {
        rd.read_byte_record(rec)
            .map_err(|e| crate::csv::csv_error(path, &name, e))
    };
    if !read(&mut rd, &mut rec)? {
        return Err(DataError::parse(&name, 1, "header", "empty file"));
    }
    // a UTF-8 byte-order mark before the first name is not part of it
    let header: Vec<String> = crate::csv::header_fields(&name, 1, &rec)?
        .into_iter()
        .map(|h| h.trim_start_matches('\u{feff}').trim().to_string())
        .collect();
    let mut idx = Vec::with_capacity(need.len());
    for n in need {
        match header.iter().position(|h| h == n) {
            Some(i) => idx.push(i),
            None => {
                return Err(DataError::parse(
                    &name,
                    1,
                    *n,
                    format!(
                        "column missing from the header; found: {}",
                        header.join(", ")
                    ),
                ))
            }
        }
    }
    let ncol = header.len();
    let mut n = 0u64;
    loop {
        if !read(&mut rd, &mut rec)? {
            break;
        }
        let line = rec.position().map_or(0, ::csv::Position::line);
        if rec.len() != ncol {
            return Err(DataError::parse(
                &name,
                line,
                "line",
                format!("expected {ncol} fields, found {}", rec.len()),
            ));
        }
        let mut vals: Vec<&str> = Vec::with_capacity(need.len());
        for (&i, n) in idx.iter().zip(need) {
            let v = std::str::from_utf8(&rec[i])
                .map_err(|_| DataError::parse(&name, line, *n, "invalid utf-8"))?;
            vals.push(v);
        }
        row(line, &vals)?;
        n += 1;
    }
    Ok(n)
}

/// Reads a text file line by line (through gzip when the name ends in `.gz`) for the layouts
/// that are not delimited files with a header (AliCCP's skeleton, JSON lines). `line(no, text)`
/// gets each non-empty line without its `\n` / `\r\n` and its 1-based number. A line that is not
/// UTF-8 is an error naming the file and line; a read error (a cut-off gzip stream) names the
/// file. Returns the number of lines passed to `line`.
pub(crate) fn for_each_line(
    path: &Path,
    mut line: impl FnMut(u64, &str) -> Result<(), DataError>,
) -> Result<u64, DataError> {
    use std::io::BufRead;
    let name = path.display().to_string();
    let mut rd = BufReader::with_capacity(1 << 20, open(path)?);
    let mut buf = Vec::new();
    let (mut no, mut n) = (0u64, 0u64);
    loop {
        buf.clear();
        let got = rd
            .read_until(b'\n', &mut buf)
            .map_err(|e| DataError::io(path, e))?;
        if got == 0 {
            break;
        }
        no += 1;
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        if buf.is_empty() {
            continue;
        }
        let text = std::str::from_utf8(&buf)
            .map_err(|_| DataError::parse(&name, no, "line", "invalid utf-8"))?;
        line(no, text)?;
        n += 1;
    }
    Ok(n)
}

/// Keeps the rows of `table` whose `keep` flag is set (in order).
pub(crate) fn retain_rows(table: &mut RawTable, keep: &[bool]) {
    fn pick<T: Copy>(v: &[T], keep: &[bool]) -> Vec<T> {
        v.iter()
            .zip(keep)
            .filter(|(_, &k)| k)
            .map(|(&x, _)| x)
            .collect()
    }
    for c in &mut table.columns {
        c.codes = pick(&c.codes, keep);
    }
    table.row_line = pick(&table.row_line, keep);
    table.row_file = pick(&table.row_file, keep);
}

/// Parses an integer field, or an error naming the file, line and field.
pub(crate) fn int(file: &str, line: u64, field: &str, v: &str) -> Result<i64, DataError> {
    v.trim().parse::<i64>().map_err(|_| {
        DataError::parse(
            file,
            line,
            field,
            format!("expected an integer, found `{v}`"),
        )
    })
}

/// Adds the columns `cols` of the delimited side file `path` to `table`, joined on the column
/// `key` (same name in both). Work and memory are per distinct key value of `table`: the side
/// file is streamed, rows whose key the table does not hold are skipped, and each added column
/// keeps one `u32` per distinct key. A key the side file lacks gets `""` (an empty value:
/// its own vocabulary entry, an empty multi-hot list); when the side file lists a key twice,
/// the first row counts. Returns the number of the table's distinct keys the file lacks.
pub(crate) fn join_side_file(
    table: &mut RawTable,
    key: &str,
    path: &Path,
    delimiter: u8,
    cols: &[&str],
) -> Result<usize, DataError> {
    let file = path.display().to_string();
    let key_col = table.require(key, &file, "join")?.clone();
    let index: HashMap<&str, u32> = key_col
        .dict
        .iter()
        .enumerate()
        .map(|(i, v)| (v.as_str(), i as u32))
        .collect();
    let n_keys = key_col.dict.len();
    // per added column: interned values and, per key code, the value code (MAX = absent)
    let mut dicts: Vec<(Vec<String>, HashMap<String, u32>)> = vec![Default::default(); cols.len()];
    let mut by_key: Vec<Vec<u32>> = vec![vec![u32::MAX; n_keys]; cols.len()];
    let mut need = vec![key];
    need.extend_from_slice(cols);
    for_each_row(path, delimiter, &need, |_, v| {
        let Some(&k) = index.get(v[0]) else {
            return Ok(());
        };
        let k = k as usize;
        if by_key[0].get(k).is_some_and(|&c| c != u32::MAX) || (cols.is_empty()) {
            return Ok(()); // the first row of a key counts
        }
        for (c, x) in v[1..].iter().enumerate() {
            let (values, idx) = &mut dicts[c];
            let code = match idx.get(*x) {
                Some(&code) => code,
                None => {
                    let code = values.len() as u32;
                    values.push((*x).to_string());
                    idx.insert((*x).to_string(), code);
                    code
                }
            };
            by_key[c][k] = code;
        }
        Ok(())
    })?;
    let missing = by_key
        .first()
        .map_or(0, |b| b.iter().filter(|&&c| c == u32::MAX).count());
    for ((name, (mut values, idx)), mut codes) in cols.iter().zip(dicts).zip(by_key) {
        if missing > 0 {
            let empty = match idx.get("") {
                Some(&c) => c,
                None => {
                    values.push(String::new());
                    values.len() as u32 - 1
                }
            };
            for c in &mut codes {
                if *c == u32::MAX {
                    *c = empty;
                }
            }
        }
        table.columns.push(RawColumn {
            name: (*name).to_string(),
            dict: values,
            codes: key_col.codes.iter().map(|&k| codes[k as usize]).collect(),
        });
    }
    Ok(missing)
}

/// Reorders the rows of `table` by `keys` (one per row; ties keep the current order).
pub(crate) fn sort_rows_by(table: &mut RawTable, keys: &[i64]) {
    let mut perm: Vec<u32> = (0..table.n_rows() as u32).collect();
    perm.sort_by_key(|&r| keys[r as usize]); // stable
    for c in &mut table.columns {
        c.codes = perm.iter().map(|&r| c.codes[r as usize]).collect();
    }
    table.row_file = perm.iter().map(|&r| table.row_file[r as usize]).collect();
    table.row_line = perm.iter().map(|&r| table.row_line[r as usize]).collect();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::ColumnBuilder;
    use std::io::Write;

    #[test]
    fn join_adds_side_columns_per_key_and_marks_missing_keys_empty() {
        let tmp = tempfile::tempdir().unwrap();
        let side = tmp.path().join("side.csv");
        std::fs::write(
            &side,
            "id,color,size\nb,red,1\na,blue,2\nb,green,3\nz,x,9\n",
        )
        .unwrap();
        let mut b = ColumnBuilder::new("id");
        for v in ["a", "b", "a", "c"] {
            b.push(v);
        }
        let mut t = RawTable {
            columns: vec![b.finish()],
            files: vec!["log".into()],
            row_file: vec![0; 4],
            row_line: vec![2, 3, 4, 5],
        };
        let missing = join_side_file(&mut t, "id", &side, b',', &["color", "size"]).unwrap();
        assert_eq!(missing, 1);
        let color = t.column("color").unwrap();
        let got: Vec<&str> = (0..4).map(|r| color.get(r)).collect();
        assert_eq!(got, vec!["blue", "red", "blue", ""]);
        t.check_shape().unwrap();
        sort_rows_by(&mut t, &[3, 1, 2, 1]);
        let id = t.column("id").unwrap();
        let got: Vec<&str> = (0..4).map(|r| id.get(r)).collect();
        assert_eq!(got, vec!["b", "c", "a", "a"]);
        assert_eq!(t.row_line, vec![3, 5, 4, 2]);
    }

    #[test]
    fn rows_stream_through_gzip_and_errors_name_file_line_and_column() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("x.csv.gz");
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&p).unwrap(),
            flate2::Compression::fast(),
        );
        gz.write_all(b"a,b\n1,2\n3,4\n").unwrap();
        gz.finish().unwrap();
        let mut seen = Vec::new();
        let n = for_each_row(&p, b',', &["b"], |l, v| {
            seen.push((l, v[0].to_string()));
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 2);
        assert_eq!(seen, vec![(2, "2".to_string()), (3, "4".to_string())]);
        let e = for_each_row(&p, b',', &["c"], |_, _| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("x.csv.gz:1: field `c`") && e.contains("found: a, b"),
            "{e}"
        );
        let q = tmp.path().join("y.csv");
        std::fs::write(&q, "a,b\n1,2\n3\n").unwrap();
        let e = for_each_row(&q, b',', &["a"], |_, _| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("y.csv:3:") && e.contains("expected 2 fields"),
            "{e}"
        );
    }
}
