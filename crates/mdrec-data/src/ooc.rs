//! The out-of-core path (`dataset.out_of_core = true`): prepares your files (CSV, Parquet,
//! Arrow IPC) when their encoded columns do not fit in memory, and opens the result as mapped
//! column files.
//!
//! Two passes over the files, chunk by chunk ([`CHUNK_ROWS`] rows, never the whole table):
//!
//! 1. each row's split is decided on its own (below); the training rows' distinct values of
//!    every fitted column are counted ([`crate::fit::StreamedCounts`]), and the schema is fitted
//!    on those counts — the same vocabularies, numeric statistics and bucket boundaries as the
//!    in-memory path would fit on the same training rows;
//! 2. every chunk is encoded with the fitted [`Encoder`] and its columns are appended to one
//!    file per column and split, while the training split's checks (every domain present, both
//!    classes of every task) and OOV counts are summed.
//!
//! The store is the folder `<cache_dir>/<key>.mdrec-store` (the key as for the in-memory cache,
//! [`crate::cache::cache_key`], over the schema, split, source and the files' bytes), written
//! under a temporary name and renamed into place when complete:
//!
//! ```text
//! meta.json                       format version, schema, vocabularies, source, rows per split
//! {train,valid,test}.domain       u32 per row            .group    u64 per row
//! {split}.cat{i}  u32             {split}.num{i}  f32    {split}.label{i}  f32
//! {split}.time    i64 (or empty)  {split}.label_time{i} i64 (or empty)  {split}.weight f32 (or empty)
//! {split}.multi{i}.offsets  u32, rows + 1 (from 0)     {split}.multi{i}.values  u32 ids
//! ```
//!
//! Opening maps every file and views it as a column ([`Col`]): nothing is read until a batch
//! needs it, and the kernel keeps only the pages in use. A file whose length is not its rows
//! times its value size (or zero for an absent optional column) makes the store invalid: it is
//! reported and rebuilt, never trusted. Values are not checksummed on open (that would read
//! every byte); the rename makes a store either complete or absent.
//!
//! Splits, decided row by row: `random` puts global row `i` (counted over the files in order)
//! in train, valid or test by a uniform draw from `Rng::new(seed' + i)` against the ratios
//! (`seed'` derived from the split seed), so the split sizes follow the ratios in expectation
//! rather than exactly; `time` compares the row's time column with the bounds, as in memory.
//! `sequential` needs the number of rows before the first is placed: a pass 0 counts them,
//! then global row `i` goes by `i` against the cumulative-floor bounds, as in memory. The
//! stream split (stream training: every row in train, ordered by time, ties in file order)
//! takes the rows in file order and checks that it is time order, naming the first row that
//! is not: logs arrive in time order, and an external sort would cost more passes than the
//! whole preparation. The time-quantile split is refused (its bounds need every row's time).
//!
//! Multi-hot columns (multi-hot fields, MNSE codes) are stored jagged: offsets (32-bit, so at
//! most 2^32 - 1 ids per column and split, else a named error) and values. Limits: pre-trained
//! vector features and string group keys (encoded per chunk, their ranks would differ between
//! chunks) are refused with a message; the in-memory path handles them. Comma-delimited CSV
//! only. Numeric fields keep their distinct training values (exact quantiles), so a numeric
//! column with hundreds of millions of distinct values costs memory in pass 1.

use std::cell::Cell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytemuck::Pod;
use serde::{Deserialize, Serialize};

use crate::col::{Col, JaggedCol};
use crate::fit::{fit_streamed, Encoder, Labels, StreamedCounts, TrainSummary, Vocabs};
use crate::pq::RecordChunks;
use crate::prepared::{CacheInfo, Prepared};
use crate::raw::RawTable;
use crate::recipe::Resolved;
use crate::rng::Rng;
use crate::schema::Schema;
use crate::split::SplitSpec;
use crate::store::EncodedData;
use crate::DataError;

/// Rows per chunk read from the files.
pub const CHUNK_ROWS: usize = 1 << 16;
/// Layout version of a store folder.
pub const STORE_VERSION: u32 = 1;
const SPLITS: [&str; 3] = ["train", "valid", "test"];

#[derive(Serialize, Deserialize)]
struct Meta {
    version: u32,
    source: String,
    schema: Schema,
    vocabs: Vocabs,
    rows: [usize; 3],
    /// Columns of each kind: categorical, numeric, labels.
    n_cat: usize,
    n_num: usize,
    n_labels: usize,
    /// Multi-hot columns (an offsets and a values file each).
    #[serde(default)]
    n_multi: usize,
}

/// Prepares the resolved source `r` out of core under `cache_dir` (or opens its store).
pub(crate) fn prepare(
    r: &Resolved,
    split: &SplitSpec,
    cache_dir: Option<&Path>,
    delimiter: u8,
) -> Result<Prepared, DataError> {
    let cache_dir = cache_dir.ok_or_else(|| {
        DataError::Config(
            "dataset.out_of_core: the store is written to the cache folder; set dataset.cache_dir"
                .into(),
        )
    })?;
    check_supported(r, split, delimiter)?;
    let key = crate::cache::cache_key(
        &r.spec,
        split,
        &format!("{{\"out_of_core\":{}}}", r.config_json),
        &r.files,
    )?;
    let dir = cache_dir.join(format!("{}.mdrec-store", crate::schema::hex(&key)));
    let mut rebuilt_reason = None;
    if dir.exists() {
        match open(&dir) {
            Ok(mut p) => {
                p.cache = Some(CacheInfo {
                    path: dir,
                    hit: true,
                    rebuilt_reason: None,
                });
                return Ok(p);
            }
            Err(e) => {
                eprintln!(
                    "warning: {}: {e}; removing the store and rebuilding",
                    dir.display()
                );
                std::fs::remove_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
                rebuilt_reason = Some(e.to_string());
            }
        }
    }
    std::fs::create_dir_all(cache_dir).map_err(|e| DataError::io(cache_dir, e))?;
    let tmp = cache_dir.join(format!(
        "{}.mdrec-store.tmp-{}",
        crate::schema::hex(&key),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| DataError::io(&tmp, e))?;
    let built = build(r, split, &tmp);
    if let Err(e) = built {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if let Err(e) = std::fs::rename(&tmp, &dir) {
        // another process finished the same store first: use theirs
        let _ = std::fs::remove_dir_all(&tmp);
        if !dir.exists() {
            return Err(DataError::io(&dir, e));
        }
    }
    let mut p = open(&dir)?;
    p.cache = Some(CacheInfo {
        path: dir,
        hit: false,
        rebuilt_reason,
    });
    Ok(p)
}

fn check_supported(r: &Resolved, split: &SplitSpec, delimiter: u8) -> Result<(), DataError> {
    let refuse = |what: String| {
        DataError::Config(format!(
            "dataset.out_of_core: {what}; prepare this dataset in memory (out_of_core = false)"
        ))
    };
    if let SplitSpec::TimeQuantiles { .. } = split {
        return Err(refuse(
            "the time-quantile split needs the quantiles of every row's time first".into(),
        ));
    }
    let csv = r.files.iter().any(|f| !crate::pq::is_columnar(f));
    if csv && delimiter != b',' {
        return Err(refuse(format!(
            "CSV files are read comma-delimited, the config says `{}`",
            delimiter as char
        )));
    }
    if r.files.is_empty() {
        return Err(DataError::Config(
            "dataset.out_of_core: no data files given".into(),
        ));
    }
    Ok(())
}

/// How a row's split is decided out of core: from the row alone (a seeded draw, or its time
/// against bounds) or from its global position (sequential: the bounds come from a pass that
/// counts the rows first, [`row_split`]); for stream training every row is a training row and
/// the files must already be in time order.
enum RowSplit<'a> {
    Random {
        ratios: [f64; 3],
        seed: u64,
    },
    Time {
        column: &'a str,
        a: f64,
        b: f64,
    },
    Position {
        a: u64,
        b: u64,
    },
    /// Stream training: every row in train, in file order, which must be time order; `last`
    /// holds the global row after the last one checked and that row's time (a pass starts
    /// again at row 0).
    InOrder {
        column: &'a str,
        last: Cell<(u64, i64)>,
    },
}

/// The [`RowSplit`] of `split` over `files`: for a sequential split the rows are counted
/// first (one pass over the files), so the bounds equal the in-memory ones.
fn row_split<'a>(split: &'a SplitSpec, files: &[PathBuf]) -> Result<RowSplit<'a>, DataError> {
    Ok(match split {
        SplitSpec::Random { ratios, seed } => {
            crate::split::check_ratios(ratios)?;
            RowSplit::Random {
                ratios: *ratios,
                seed: *seed,
            }
        }
        SplitSpec::ByTime {
            column,
            valid_from,
            test_from,
        } => {
            crate::split::check_time_bounds(*valid_from, *test_from)?;
            RowSplit::Time {
                column,
                a: *valid_from as f64,
                b: *test_from as f64,
            }
        }
        SplitSpec::Sequential { ratios } => {
            crate::split::check_ratios(ratios)?;
            let n = for_each_chunk(files, "pass 0 (count the rows)", |_, _| Ok(()))?;
            let (a, b) = crate::split::ratio_bounds(n as usize, ratios);
            RowSplit::Position {
                a: a as u64,
                b: b as u64,
            }
        }
        SplitSpec::Stream { column } => RowSplit::InOrder {
            column,
            last: Cell::new((0, i64::MIN)),
        },
        SplitSpec::TimeQuantiles { .. } => {
            return Err(DataError::Config(
                "dataset.out_of_core: unsupported split".into(),
            ))
        }
    })
}

/// Splits of the rows of a chunk whose first row is global row `first`.
fn split_chunk(split: &RowSplit, t: &RawTable, first: u64) -> Result<[Vec<u32>; 3], DataError> {
    let mut out: [Vec<u32>; 3] = Default::default();
    match *split {
        RowSplit::Random { ratios, seed } => {
            let base = Rng::for_stream(seed, "split/rows").next_u64();
            for r in 0..t.n_rows() {
                let u = Rng::new(base.wrapping_add(first + r as u64)).next_f64();
                let s = if u < ratios[0] {
                    0
                } else if u < ratios[0] + ratios[1] {
                    1
                } else {
                    2
                };
                out[s].push(r as u32);
            }
        }
        RowSplit::Time { column, a, b } => {
            let (col, times) = crate::split::int_times(t, column, "time split")?;
            out = crate::split::cut_by_time(&col.codes, &times, a, b);
        }
        RowSplit::Position { a, b } => {
            for r in 0..t.n_rows() {
                let i = first + r as u64;
                out[usize::from(i >= a) + usize::from(i >= b)].push(r as u32);
            }
        }
        RowSplit::InOrder { column, ref last } => {
            let (col, times) = crate::split::int_times(t, column, "stream order")?;
            let (next, mut prev) = last.get();
            if first == 0 || first != next {
                prev = i64::MIN; // a new pass
            }
            for (r, &c) in col.codes.iter().enumerate() {
                let x = times[c as usize];
                if x < prev {
                    return Err(t.error_at(
                        r,
                        column,
                        format!(
                            "time {x} is earlier than the previous row's {prev}: out of core, stream training reads the rows in file order, so the files must be sorted by `{column}` (ties may stay in any order); sort them, or prepare in memory (out_of_core = false), which sorts"
                        ),
                    ));
                }
                prev = x;
            }
            last.set((first + t.n_rows() as u64, prev));
            out[0] = (0..t.n_rows() as u32).collect();
        }
    }
    Ok(out)
}

/// Calls `f(chunk, first global row)` for every chunk of the files, in order, printing
/// progress. A second thread reads and parses the next chunks while `f` works on this one (at
/// most two chunks wait), so both cores are busy.
fn for_each_chunk(
    files: &[PathBuf],
    pass: &str,
    mut f: impl FnMut(&RawTable, u64) -> Result<(), DataError>,
) -> Result<u64, DataError> {
    let t0 = Instant::now();
    let mut rows = 0u64;
    let mut last = Instant::now();
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<RawTable, DataError>>(2);
        scope.spawn(move || {
            for file in files {
                let mut chunks = match RecordChunks::open(file, CHUNK_ROWS) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                loop {
                    match chunks.next_chunk() {
                        Ok(Some(chunk)) => {
                            if tx.send(Ok(chunk)).is_err() {
                                return; // the consumer stopped on an error
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                }
            }
        });
        for chunk in rx {
            let chunk = chunk?;
            f(&chunk, rows)?;
            rows += chunk.n_rows() as u64;
            if last.elapsed().as_secs_f64() > 10.0 {
                last = Instant::now();
                let s = t0.elapsed().as_secs_f64();
                eprintln!(
                    "out-of-core {pass}: {rows} rows in {s:.0} s ({:.0} rows/s)",
                    rows as f64 / s
                );
            }
        }
        Ok::<(), DataError>(())
    })?;
    let s = t0.elapsed().as_secs_f64();
    eprintln!(
        "out-of-core {pass}: done, {rows} rows in {s:.1} s ({:.0} rows/s)",
        rows as f64 / s.max(1e-9)
    );
    Ok(rows)
}

fn build(r: &Resolved, split: &SplitSpec, dir: &Path) -> Result<(), DataError> {
    let origin = r.origin.as_str();
    let split = &row_split(split, &r.files)?;
    // ---- pass 1: counts of the training rows' values, then the fit
    let mut counts = StreamedCounts::new(&r.spec);
    let group = r.spec.group.as_deref().map(|g| {
        r.spec
            .fields
            .iter()
            .find(|f| f.name == g)
            .map_or(g, |f| f.column())
            .to_string()
    });
    for_each_chunk(&r.files, "pass 1/2 (fit)", |t, first| {
        if let Some(g) = &group {
            if let Some(col) = t.column(g) {
                if let Some((c, v)) = col
                    .dict
                    .iter()
                    .enumerate()
                    .find(|(_, v)| v.parse::<u64>().is_err())
                {
                    let row = col.first_row_with(c as u32).unwrap_or_default();
                    return Err(t.error_at(
                        row,
                        g,
                        format!("group key `{v}` is not a non-negative integer; out of core, group keys must be integers"),
                    ));
                }
            }
        }
        let [train, _, _] = split_chunk(split, t, first)?;
        counts.add(origin, t, &train)
    })?;
    let (schema, vocabs) = fit_streamed(&r.spec, origin, &counts)?;
    drop(counts);
    let enc = Encoder::new(schema, vocabs);
    let n_domains = enc.schema().n_domains();

    // ---- pass 2: encode and append
    let mut writers: Vec<SplitWriter> = SPLITS.iter().map(|s| SplitWriter::new(dir, s)).collect();
    let mut summary = TrainSummary::default();
    let mut shape = None;
    for_each_chunk(&r.files, "pass 2/2 (encode)", |t, first| {
        let rows = split_chunk(split, t, first)?;
        for (s, rows) in rows.iter().enumerate() {
            let d = enc.encode(origin, t, rows, Labels::Read)?;
            if s == 0 {
                summary.add(&d, n_domains);
            }
            shape.get_or_insert((d.cat.len(), d.num.len(), d.labels.len(), d.multi.len()));
            writers[s].append(&d)?;
        }
        Ok(())
    })?;
    let mut rows = [0usize; 3];
    for (s, w) in writers.into_iter().enumerate() {
        rows[s] = w.finish()?;
    }
    if rows[0] == 0 {
        return Err(DataError::Config("the training split is empty".into()));
    }
    let schema = summary.finish(enc.schema().clone())?;
    let (n_cat, n_num, n_labels, n_multi) = shape.unwrap_or_default();
    let meta = Meta {
        version: STORE_VERSION,
        source: format!("{} (out of core)", r.description),
        schema,
        vocabs: enc.vocabs().clone(),
        rows,
        n_cat,
        n_num,
        n_labels,
        n_multi,
    };
    let path = dir.join("meta.json");
    let json = serde_json::to_vec(&meta).map_err(|e| DataError::Config(e.to_string()))?;
    std::fs::write(&path, json).map_err(|e| DataError::io(&path, e))
}

type ColumnFile = (PathBuf, std::io::BufWriter<std::fs::File>);

/// The column files of one split, appended chunk by chunk.
struct SplitWriter {
    dir: PathBuf,
    split: &'static str,
    files: Vec<ColumnFile>,
    /// Per multi-hot column: its offsets and values files, and the ids written so far (each
    /// chunk's offsets are rebased onto them).
    multi: Vec<(ColumnFile, ColumnFile, u64)>,
    /// Offsets of the chunk being appended, rebased.
    offsets: Vec<u32>,
    rows: usize,
}

impl SplitWriter {
    fn new(dir: &Path, split: &'static str) -> Self {
        SplitWriter {
            dir: dir.to_path_buf(),
            split,
            files: Vec::new(),
            multi: Vec::new(),
            offsets: Vec::new(),
            rows: 0,
        }
    }

    fn create(&self, name: &str) -> Result<ColumnFile, DataError> {
        let path = self.dir.join(format!("{}.{name}", self.split));
        let f = std::fs::File::create(&path).map_err(|e| DataError::io(&path, e))?;
        Ok((path, std::io::BufWriter::with_capacity(1 << 20, f)))
    }

    fn append(&mut self, d: &EncodedData) -> Result<(), DataError> {
        let cols = columns(d);
        if self.files.is_empty() {
            for (name, _) in &cols {
                let file = self.create(name)?;
                self.files.push(file);
            }
            for i in 0..d.multi.len() {
                let mut offsets = self.create(&format!("multi{i}.offsets"))?;
                write(&mut offsets, bytemuck::bytes_of(&0u32))?;
                let values = self.create(&format!("multi{i}.values"))?;
                self.multi.push((offsets, values, 0));
            }
        }
        for (file, (_, bytes)) in self.files.iter_mut().zip(cols) {
            write(file, bytes)?;
        }
        for (i, (j, (offsets, values, written))) in d.multi.iter().zip(&mut self.multi).enumerate()
        {
            let base = *written;
            *written += j.values.len() as u64;
            if *written > u64::from(u32::MAX) {
                return Err(DataError::Config(format!(
                    "dataset.out_of_core: multi-hot column {i} of the {} split holds more than {} ids (32-bit offsets)",
                    self.split,
                    u32::MAX
                )));
            }
            self.offsets.clear();
            self.offsets
                .extend(j.offsets[1..].iter().map(|&o| (base + u64::from(o)) as u32));
            write(offsets, bytemuck::cast_slice(&self.offsets))?;
            write(values, bytemuck::cast_slice(&j.values[..]))?;
        }
        self.rows += d.len();
        Ok(())
    }

    fn finish(self) -> Result<usize, DataError> {
        let multi = self.multi.into_iter().flat_map(|(o, v, _)| [o, v]);
        for (path, w) in self.files.into_iter().chain(multi) {
            let f = w
                .into_inner()
                .map_err(|e| DataError::io(&path, e.into_error()))?;
            f.sync_all().map_err(|e| DataError::io(&path, e))?;
        }
        Ok(self.rows)
    }
}

fn write((path, w): &mut ColumnFile, bytes: &[u8]) -> Result<(), DataError> {
    w.write_all(bytes).map_err(|e| DataError::io(&*path, e))
}

/// The columns of `d` as (file name suffix, bytes), in one fixed order (multi-hot columns
/// apart: their offsets are rebased, [`SplitWriter::append`]).
fn columns(d: &EncodedData) -> Vec<(String, &[u8])> {
    let mut out: Vec<(String, &[u8])> = vec![
        ("domain".into(), bytemuck::cast_slice(&d.domain[..])),
        ("group".into(), bytemuck::cast_slice(&d.group[..])),
        ("time".into(), bytemuck::cast_slice(&d.time[..])),
        ("weight".into(), bytemuck::cast_slice(&d.weight[..])),
    ];
    out.extend(numbered("cat", &d.cat));
    out.extend(numbered("num", &d.num));
    out.extend(numbered("label", &d.labels));
    out.extend(numbered("label_time", &d.label_time));
    out
}

/// `(prefix{i}, bytes of column i)` for each column of `cols`.
fn numbered<'a, T: Pod>(
    prefix: &'a str,
    cols: &'a [Col<T>],
) -> impl Iterator<Item = (String, &'a [u8])> + 'a {
    cols.iter()
        .enumerate()
        .map(move |(i, c)| (format!("{prefix}{i}"), bytemuck::cast_slice(&c[..])))
}

/// Opens a store folder written by `prepare`: every column a view of its mapped file.
pub fn open(dir: &Path) -> Result<Prepared, DataError> {
    let bad = |msg: String| DataError::Cache {
        path: dir.to_path_buf(),
        msg,
    };
    let path = dir.join("meta.json");
    let bytes = std::fs::read(&path).map_err(|e| bad(format!("meta.json: {e}")))?;
    let meta: Meta = serde_json::from_slice(&bytes).map_err(|e| bad(format!("meta.json: {e}")))?;
    if meta.version != STORE_VERSION {
        return Err(bad(format!(
            "store layout version {} (this build reads {STORE_VERSION})",
            meta.version
        )));
    }
    let mut splits = Vec::with_capacity(3);
    for (s, name) in SPLITS.iter().enumerate() {
        let n = meta.rows[s];
        splits.push(EncodedData {
            n_rows: n,
            cat: (0..meta.n_cat)
                .map(|i| map_col(dir, name, &format!("cat{i}"), n, false))
                .collect::<Result<_, _>>()?,
            multi: (0..meta.n_multi)
                .map(|i| map_jagged(dir, name, i, n))
                .collect::<Result<_, _>>()?,
            num: (0..meta.n_num)
                .map(|i| map_col(dir, name, &format!("num{i}"), n, false))
                .collect::<Result<_, _>>()?,
            domain: map_col(dir, name, "domain", n, false)?,
            labels: (0..meta.n_labels)
                .map(|i| map_col(dir, name, &format!("label{i}"), n, false))
                .collect::<Result<_, _>>()?,
            group: map_col(dir, name, "group", n, false)?,
            time: map_col(dir, name, "time", n, true)?,
            label_time: (0..meta.n_labels)
                .map(|i| map_col(dir, name, &format!("label_time{i}"), n, true))
                .collect::<Result<_, _>>()?,
            weight: map_col(dir, name, "weight", n, true)?,
        });
    }
    let [train, valid, test]: [EncodedData; 3] =
        splits.try_into().map_err(|_| bad("three splits".into()))?;
    Ok(Prepared {
        schema: meta.schema,
        vocabs: meta.vocabs,
        train,
        valid,
        test,
        source: meta.source,
        cache: None,
    })
}

/// Maps the multi-hot column `i` of `split` (`n` rows): `n + 1` offsets, then as many values
/// as the last offset says.
fn map_jagged(dir: &Path, split: &str, i: usize, n: usize) -> Result<JaggedCol, DataError> {
    let offsets: Col<u32> = map_col(dir, split, &format!("multi{i}.offsets"), n + 1, false)?;
    let total = offsets[n] as usize;
    let values = map_col(dir, split, &format!("multi{i}.values"), total, false)?;
    Ok(JaggedCol { offsets, values })
}

/// Maps `{split}.{name}` of `dir` as a column of `n` values (`optional`: or of none).
fn map_col<T: Pod>(
    dir: &Path,
    split: &str,
    name: &str,
    n: usize,
    optional: bool,
) -> Result<Col<T>, DataError> {
    let path = dir.join(format!("{split}.{name}"));
    let bad = |msg: String| DataError::Cache {
        path: path.clone(),
        msg,
    };
    let f = std::fs::File::open(&path).map_err(|e| bad(format!("cannot open: {e}")))?;
    let len = f
        .metadata()
        .map_err(|e| bad(format!("cannot stat: {e}")))?
        .len();
    let want = (n * std::mem::size_of::<T>()) as u64;
    if len == 0 && (optional || n == 0) {
        return Ok(Col::default());
    }
    if len != want {
        return Err(bad(format!(
            "{len} bytes, expected {want} ({n} values of {} bytes): truncated or foreign",
            std::mem::size_of::<T>()
        )));
    }
    #[allow(unsafe_code)]
    // SAFETY: the store's files are written once, before the folder is renamed into place, and
    // never modified afterwards; a process that truncated one under us would be a bug outside
    // this program's control (as with any memory-mapped file).
    let map = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| bad(format!("cannot map: {e}")))?;
    // The kernel's read-around on a page fault reads `read_ahead_kb` (often megabytes) about
    // the faulting page: right for the sequential passes over valid and test, a many-fold
    // over-read for the training split's block-wise random reads, whose windows are read in
    // ahead explicitly instead ([`EncodedData::prefetch`]). Advice only: a failure changes
    // nothing but speed.
    let _ = map.advise(if split == "train" {
        memmap2::Advice::Random
    } else {
        memmap2::Advice::Sequential
    });
    Col::mapped(Arc::new(map), 0, n).ok_or_else(|| bad("misaligned mapping".into()))
}
