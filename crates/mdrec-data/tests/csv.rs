//! Delimited files as pandas writes them: RFC 4180 quoting (delimiters, quotes and line breaks
//! inside quoted fields), CRLF line ends, and the `csv` dataset end to end through its config.

use std::path::{Path, PathBuf};

use mdrec_data::*;

const TITLES: [&str; 4] = [
    "Bug's Life, A (1998)",
    "The \"Best\" Movie, Part 2",
    "Plain Title",
    "Two\nLines, quoted",
];

/// A field as pandas' `to_csv` quotes it (minimal quoting, `""` for a quote).
fn quote(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

/// `n` rows of `user_id,title,domain,click` with CRLF line ends; returns the text and the line
/// each data row starts on.
fn pandas_csv(n: usize) -> (String, Vec<u64>) {
    let mut s = String::from("user_id,title,domain,click\r\n");
    let mut line = 2u64;
    let mut starts = Vec::new();
    for i in 0..n {
        let title = TITLES[i % TITLES.len()];
        let click = (i * 7 + i / 3) % 2;
        starts.push(line);
        s.push_str(&format!(
            "{},{},{},{}\r\n",
            i % 13,
            quote(title),
            i % 2,
            click
        ));
        line += 1 + title.matches('\n').count() as u64;
    }
    (s, starts)
}

const SCHEMA: &str = r#"
group = "user_id"
[domain]
column = "domain"
[[fields]]
name = "user_id"
kind = "categorical"
[[fields]]
name = "title"
kind = "categorical"
[[tasks]]
name = "click"
column = "click"
rule = "binary"
"#;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn quoted_commas_escaped_quotes_line_breaks_and_crlf_are_read_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (text, starts) = pandas_csv(40);
    let f = write(dir.path(), "movies.csv", &text);
    let t = read_csv_files(std::slice::from_ref(&f), b',').unwrap();
    assert_eq!(t.column_names(), ["user_id", "title", "domain", "click"]);
    assert_eq!(t.n_rows(), 40);
    let title = t.column("title").unwrap();
    for (r, want) in TITLES.iter().cycle().take(40).enumerate() {
        assert_eq!(title.get(r), *want, "row {r}");
        assert_eq!(
            t.column("click").unwrap().get(r).len(),
            1,
            "no CR left in row {r}"
        );
    }
    // each row knows the line it starts on, also after a quoted line break
    assert_eq!(
        t.row_line.iter().map(|&l| u64::from(l)).collect::<Vec<_>>(),
        starts
    );

    // a ragged row names the file, its line and the column
    let mut bad = text.clone();
    bad.push_str("1,\"Heat, (1995)\",0\r\n");
    let f2 = write(dir.path(), "ragged.csv", &bad);
    let e = read_csv_files(&[f2], b',').unwrap_err().to_string();
    let line = starts[39] + 2; // the last row spans two lines
    assert!(
        e.contains(&format!("ragged.csv:{line}: field `click`"))
            && e.contains("expected 4 fields, found 3"),
        "{e}"
    );
    // invalid UTF-8 names the line and the column
    let mut bytes = b"a,b\r\n1,2\r\n3,\xff\r\n".to_vec();
    bytes.extend_from_slice(b"5,6\r\n");
    let f3 = dir.path().join("latin1.csv");
    std::fs::write(&f3, bytes).unwrap();
    let e = read_csv_files(&[f3], b',').unwrap_err().to_string();
    assert!(e.contains("latin1.csv:3: field `b`: invalid utf-8"), "{e}");
}

/// Rows and errors of a second file carry that file's name and its own line numbers (counted
/// from its first line, across quoted line breaks and CRLF ends).
#[test]
fn a_second_file_and_invalid_utf8_get_their_own_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.csv", "x,y\r\n1,2\r\n3,4\r\n5,6\r\n");
    let b = write(dir.path(), "b.csv", "x,y\r\n7,\"two\r\nlines\"\r\n8,9\r\n");
    let t = read_csv_files(&[a.clone(), b.clone()], b',').unwrap();
    assert_eq!(t.row_file, [0, 0, 0, 1, 1]);
    assert_eq!(t.row_line, [2, 3, 4, 2, 4]);
    let name = |p: &Path| p.display().to_string();
    assert_eq!(t.files, [name(&a), name(&b)]);

    for (file, bytes, want) in BAD_CRLF_FILES {
        let p = dir.path().join(file);
        std::fs::write(&p, bytes).unwrap();
        let e = read_csv_files(&[a.clone(), p.clone()], b',')
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "whole file: {e}");
        assert!(!e.contains("a.csv"), "{e}");
    }
}

/// Files with CRLF line ends and an error on a known line: `(file name, bytes, expected message)`.
const BAD_CRLF_FILES: &[(&str, &[u8], &str)] = &[
    // invalid UTF-8 on line 4, after a quoted CRLF line break
    (
        "utf8.csv",
        b"x,y\r\n7,\"two\r\nlines\"\r\n8,\xe9t\xe9\r\n",
        "utf8.csv:4: field `y`: invalid utf-8",
    ),
    // invalid UTF-8 in the first column, line 3
    (
        "utf8x.csv",
        b"x,y\r\n7,8\r\n\xff,9\r\n",
        "utf8x.csv:3: field `x`: invalid utf-8",
    ),
    // a ragged row on line 5, after a blank line
    (
        "ragged.csv",
        b"x,y\r\n7,8\r\n9,10\r\n\r\n11\r\n",
        "ragged.csv:5:",
    ),
];

/// The chunked reader (`mdrec predict` on CSV) names the same lines as the whole-file reader
/// (the `csv` crate's own line count lags by one after a CRLF line end).
#[test]
fn the_chunked_reader_names_the_lines_the_whole_file_reader_names() {
    let dir = tempfile::tempdir().unwrap();
    for (file, bytes, want) in BAD_CRLF_FILES {
        let p = dir.path().join(file);
        std::fs::write(&p, bytes).unwrap();
        let mut chunks = CsvChunks::open(&p, 1).unwrap();
        let e = loop {
            match chunks.next_chunk() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("{file}: no error"),
                Err(e) => break e.to_string(),
            }
        };
        assert!(e.contains(want), "chunks: {e}");
    }
    let b = write(dir.path(), "b.csv", "x,y\r\n7,\"two\r\nlines\"\r\n8,9\r\n");
    let mut chunks = CsvChunks::open(&b, 1).unwrap();
    let mut lines = Vec::new();
    while let Some(t) = chunks.next_chunk().unwrap() {
        lines.extend(t.row_line);
    }
    assert_eq!(lines, [2, 4]);
}

#[test]
fn written_values_with_delimiters_and_quotes_read_back_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let (text, _) = pandas_csv(12);
    let f = write(dir.path(), "in.csv", &text);
    let t = read_csv_files(&[f], b',').unwrap();
    let out = dir.path().join("out.csv");
    write_csv(&t, &out).unwrap();
    let back = read_csv_files(std::slice::from_ref(&out), b',').unwrap();
    assert_eq!(back.columns, t.columns);
    // semicolons as the delimiter: commas need no quotes, semicolons do
    let semi = dir.path().join("semi.csv");
    write_csv_with(&t, &semi, b';').unwrap();
    let back = read_csv_files(&[semi], b';').unwrap();
    assert_eq!(back.columns, t.columns);
}

#[test]
fn a_pandas_csv_with_quoted_fields_prepares_through_the_csv_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let (text, _) = pandas_csv(200);
    let data = write(dir.path(), "ratings.csv", &text);
    let schema = write(dir.path(), "schema.toml", SCHEMA);
    let cfg: DatasetConfig = toml::from_str(&format!(
        "name = \"csv\"\nschema = {:?}\nfiles = [{:?}]\nsplit = \"random\"\ncache_dir = {:?}\n",
        schema,
        data,
        dir.path().join("cache")
    ))
    .unwrap();
    let p = prepare(&cfg.request(3).unwrap()).unwrap();
    assert_eq!((p.train.len(), p.valid.len(), p.test.len()), (160, 20, 20));
    assert_eq!(p.schema.domains, ["0", "1"]);
    let title = &p.vocabs.tables["title"];
    for t in TITLES {
        assert!(
            title.values.iter().any(|v| v == t),
            "{t:?} missing from {:?}",
            title.values
        );
    }
    assert!(
        prepare(&cfg.request(3).unwrap())
            .unwrap()
            .cache
            .unwrap()
            .hit
    );
}
