//! The MovieLens-1M recipe (the M3oE benchmark protocol).
//!
//! Reads the official `ml-1m` files (`::`-separated, latin-1), joins users and movies onto
//! ratings and emits a [`RawTable`] in the "merged order" of the M3oE `ml-1m.csv`: the order two
//! successive pandas inner merges give — first grouped by movie (movies in order of first
//! appearance in `ratings.dat`, `ratings.dat` order within a movie), then that sequence grouped by
//! user (users in order of first appearance in it, the movie-grouped order within a user). The
//! sequential 80/10/10 split then has only unseen users in valid and test.
//! Columns: user_id, movie_id, rating, timestamp, gender, age, occupation, zip, genres (the
//! movie's `|`-separated list), genre (its first genre) and domain (from the age code: {1, 18} -> 0, {25} -> 1,
//! {35, 45, 50, 56} -> 2). The features, tasks (click = rating > 3, like = rating > 4) and the
//! domain mapping are declared in an embedded schema and go through the generic path.
//!
//! Two domain definitions ([`MovieLensDomain`]): `age` (the M3oE protocol, three age domains,
//! [`MOVIELENS_1M_SCHEMA`]) and `genre` (the movie's first genre, the 18 genres of the ml-1m
//! README in their order, long-tailed: 27.7 % Comedy down to 0.08 % Fantasy;
//! [`MOVIELENS_1M_GENRE_SCHEMA`]). The loaded table is the same for both; only the schema differs.
//!
//! MovieLens-100K ([`load_movielens_100k`], [`MOVIELENS_100K_SCHEMA`]) is the same protocol on
//! the `ml-100k` files: `u.data` (tab-separated ratings), `u.user` (`|`-separated, age in
//! years, occupation as a name) and `u.item` (`|`-separated, 19 genre flags). It gives the same
//! columns; the domain comes from the age in years (under 25, 25–34, 35 or older: the groups of
//! the ML-1M age codes).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::names::string_enum;
use crate::raw::{ColumnBuilder, RawColumn, RawTable};
use crate::DataError;

/// How to obtain MovieLens-1M.
pub const ML1M_HINT: &str = "run `mdrec data fetch movielens-1m` (downloads ml-1m.zip from https://grouplens.org/datasets/movielens/1m/ into the cache; `mdrec train` does it when --data-dir is not given), or download and unzip ml-1m.zip yourself and pass the folder with --data-dir";

/// How to obtain MovieLens-100K.
pub const ML100K_HINT: &str = "run `mdrec data fetch movielens-100k` (downloads ml-100k.zip from https://grouplens.org/datasets/movielens/100k/ into the cache; `mdrec train` does it when --data-dir is not given), or download and unzip ml-100k.zip yourself and pass the folder with --data-dir";

/// The 19 genres of the ml-100k README (`u.genre`), in the order of `u.item`'s genre flags.
pub const ML100K_GENRES: [&str; 19] = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
];

// The fields and tasks both MovieLens-1M schemas share (one place for both).
macro_rules! ml1m_user_fields {
    () => {
        r#"[[fields]]
name = "user_id"
kind = "categorical"
roles = ["prior", "user"]

[[fields]]
name = "movie_id"
kind = "categorical"
roles = ["prior", "item"]

[[fields]]
name = "gender"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "occupation"
kind = "categorical"
roles = ["user"]

[[fields]]
name = "zip"
kind = "categorical"
roles = ["user"]
"#
    };
}
macro_rules! ml1m_age_and_tasks {
    () => {
        r#"[[fields]]
name = "age"
kind = "numeric"
transform = "min_max"
roles = ["user"]

[[tasks]]
name = "click"
column = "rating"
rule = { gt = 3 }

[[tasks]]
name = "like"
column = "rating"
rule = { gt = 4 }
"#
    };
}

/// The age-domain schema shared by MovieLens-1M and -100K (after its comment line).
macro_rules! ml_age_domain_schema {
    ($comment:literal) => {
        concat!(
            "\n",
            $comment,
            r#"
group = "user_id"
time = "timestamp"

[domain]
column = "domain"
map = { "0" = 0, "1" = 1, "2" = 2 }
names = ["age_lt25", "age_25", "age_ge35"]

"#,
            ml1m_user_fields!(),
            r#"
[[fields]]
name = "genre"
kind = "categorical"
roles = ["item"]

[[fields]]
name = "domain_indicator"
column = "domain"
kind = "categorical"
roles = ["domain"]

"#,
            ml1m_age_and_tasks!()
        )
    };
}

/// The declared schema of the MovieLens-1M recipe.
pub const MOVIELENS_1M_SCHEMA: &str = ml_age_domain_schema!(
    "# MovieLens-1M, M3oE protocol: three age domains, click = rating > 3, like = rating > 4."
);

/// The 18 genres of the ml-1m README, in its order; the domain names (and indices) of
/// [`MovieLensDomain::Genre`].
pub const ML1M_GENRES: [&str; 18] = [
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
];

/// The declared schema of the MovieLens-1M recipe with genre domains: the domain is the movie's
/// first genre (18 domains named after the genres); the `genre` item field becomes the domain
/// indicator; everything else is as in [`MOVIELENS_1M_SCHEMA`].
pub const MOVIELENS_1M_GENRE_SCHEMA: &str = concat!(
    r#"
# MovieLens-1M with 18 genre domains (the movie's first genre), click = rating > 3, like = rating > 4.
group = "user_id"
time = "timestamp"

[domain]
column = "genre"
map = { "Action" = 0, "Adventure" = 1, "Animation" = 2, "Children's" = 3, "Comedy" = 4, "Crime" = 5, "Documentary" = 6, "Drama" = 7, "Fantasy" = 8, "Film-Noir" = 9, "Horror" = 10, "Musical" = 11, "Mystery" = 12, "Romance" = 13, "Sci-Fi" = 14, "Thriller" = 15, "War" = 16, "Western" = 17 }
names = ["Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"]

"#,
    ml1m_user_fields!(),
    r#"
[[fields]]
name = "domain_indicator"
column = "genre"
kind = "categorical"
roles = ["domain", "item"]

"#,
    ml1m_age_and_tasks!()
);

/// The declared schema of the MovieLens-100K recipe: the MovieLens-1M protocol on ML-100K's
/// columns. Three age domains (under 25, 25–34 and 35 or older: the age groups of the ML-1M
/// codes, here from `age` in years), click = rating > 3, like = rating > 4; the same fields.
pub const MOVIELENS_100K_SCHEMA: &str = ml_age_domain_schema!(
    "# MovieLens-100K, the M3oE protocol of MovieLens-1M: three age domains, click = rating > 3, like = rating > 4."
);

string_enum! {
    /// Which domains the MovieLens-1M recipe defines (`dataset.domain`).
    #[derive(Default)]
    pub enum MovieLensDomain: "dataset.domain" {
        /// Three age domains (the M3oE protocol): {1, 18}, {25}, {35, 45, 50, 56}.
        #[default]
        Age = "age",
        /// 18 domains: the movie's first genre.
        Genre = "genre",
    }
}

impl MovieLensDomain {
    /// The embedded schema of this domain definition.
    pub fn schema(self) -> &'static str {
        match self {
            MovieLensDomain::Age => MOVIELENS_1M_SCHEMA,
            MovieLensDomain::Genre => MOVIELENS_1M_GENRE_SCHEMA,
        }
    }
}

string_enum! {
    /// Row order of the loaded table, what the sequential `m3oe` split cuts
    /// (`dataset.row_order`).
    #[derive(Default)]
    pub enum MovieLensOrder: "dataset.row_order" {
        /// Two successive pandas (< 2.2) inner merges: grouped by movie, then by user (the order
        /// an `ml-1m.csv` made with older pandas has). The default: the official M3oE run's
        /// published numbers come from this order (a PyTorch re-run of the official model gives
        /// 71.60 mean-cell test AUC on it, the official run 71.70, and 72.54 on `Ratings`).
        #[default]
        Merged = "merged",
        /// `ratings.dat` order, users by id: what the M3oE script's merges give with pandas >= 2.2.
        Ratings = "ratings",
    }
}

/// A movie's first genre in its `|`-separated list (the `genre` column and the genre-domain
/// rule); `None` for an empty list.
pub fn first_genre(genres: &str) -> Option<&str> {
    genres.split('|').next().filter(|g| !g.is_empty())
}

/// Domain index of an ML-1M age code.
pub fn age_domain(age: u32) -> Option<u32> {
    match age {
        1 | 18 => Some(0),
        25 => Some(1),
        35 | 45 | 50 | 56 => Some(2),
        _ => None,
    }
}

/// Domain index of an age in years (MovieLens-100K): the age groups of the ML-1M codes, under
/// 25 -> 0, 25–34 -> 1, 35 or older -> 2.
pub fn age_years_domain(age: u32) -> u32 {
    match age {
        0..=24 => 0,
        25..=34 => 1,
        _ => 2,
    }
}

/// The file names of a MovieLens folder: ratings, users, movies.
fn file_names(ml100k: bool) -> [&'static str; 3] {
    if ml100k {
        ["u.data", "u.user", "u.item"]
    } else {
        ["ratings.dat", "users.dat", "movies.dat"]
    }
}

fn check_files(
    dir: &Path,
    names: [&'static str; 3],
    what: &str,
    hint: &str,
) -> Result<[PathBuf; 3], DataError> {
    if !dir.is_dir() {
        return Err(DataError::Missing {
            path: dir.to_path_buf(),
            what: format!("{what} folder"),
            hint: hint.into(),
        });
    }
    let files = names.map(|f| dir.join(f));
    for (f, name) in files.iter().zip(names) {
        if !f.is_file() {
            return Err(DataError::Missing {
                path: f.clone(),
                what: name.into(),
                hint: hint.into(),
            });
        }
    }
    Ok(files)
}

/// `ratings.dat`, `users.dat`, `movies.dat` in `dir`; an error names the missing one and how to
/// obtain the data.
pub fn movielens_files(dir: &Path) -> Result<[PathBuf; 3], DataError> {
    check_files(dir, file_names(false), "movielens-1m", ML1M_HINT)
}

/// `u.data`, `u.user`, `u.item` in `dir` (the unzipped `ml-100k` folder); an error names the
/// missing one and how to obtain the data.
pub fn movielens_100k_files(dir: &Path) -> Result<[PathBuf; 3], DataError> {
    check_files(dir, file_names(true), "movielens-100k", ML100K_HINT)
}

/// Lines of a file as (1-based line, bytes without `\r\n`); the empty tail after a final
/// newline is skipped, other empty lines are returned (and rejected by the callers).
fn lines(bytes: &[u8]) -> impl Iterator<Item = (u64, &[u8])> {
    let n = bytes.len();
    bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .scan(0usize, move |pos, (i, l)| {
            let start = *pos;
            *pos += l.len() + 1;
            Some((i, l, start))
        })
        .filter(move |(_, l, start)| !(l.is_empty() && *start >= n))
        .map(|(i, l, _)| (i as u64 + 1, l.strip_suffix(b"\r").unwrap_or(l)))
}

/// Splits a line on `sep` (`::` in ML-1M, `\t` or `|` in ML-100K).
fn fields<'l>(line: &'l [u8], sep: &[u8]) -> Vec<&'l [u8]> {
    let mut out = Vec::with_capacity(5);
    let mut start = 0;
    let mut i = 0;
    while i + sep.len() <= line.len() {
        if &line[i..i + sep.len()] == sep {
            out.push(&line[start..i]);
            i += sep.len();
            start = i;
        } else {
            i += 1;
        }
    }
    out.push(&line[start..]);
    out
}

fn latin1(b: &[u8]) -> String {
    b.iter().map(|&c| char::from(c)).collect()
}

struct Ctx<'a> {
    file: &'a str,
    /// The field separator and how messages name it.
    sep: &'static [u8],
    sep_name: &'static str,
}

impl Ctx<'_> {
    fn err(&self, line: u64, field: &str, msg: impl Into<String>) -> DataError {
        DataError::parse(self.file, line, field, msg)
    }
    fn split<'l>(
        &self,
        line_no: u64,
        line: &'l [u8],
        names: &[&str],
    ) -> Result<Vec<&'l [u8]>, DataError> {
        let f = fields(line, self.sep);
        if f.len() != names.len() {
            return Err(self.count_err(line_no, names, f.len()));
        }
        Ok(f)
    }
    fn count_err(&self, line_no: u64, names: &[&str], found: usize) -> DataError {
        let field = names
            .get(found.min(names.len() - 1))
            .copied()
            .unwrap_or("line");
        self.err(
            line_no,
            field,
            format!(
                "expected {} {}-separated fields ({}), found {found}",
                names.len(),
                self.sep_name,
                names.join(", "),
            ),
        )
    }
    fn uint(&self, line: u64, field: &str, b: &[u8]) -> Result<u64, DataError> {
        std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| {
                self.err(
                    line,
                    field,
                    format!("expected a non-negative integer, found `{}`", latin1(b)),
                )
            })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|e| DataError::io(path, e))
}

struct User {
    gender: String,
    /// The age as the file writes it (an ML-1M age code, or years in ML-100K).
    age: String,
    domain: u32,
    occupation: String,
    zip: String,
}

/// The users, movies and ratings of a MovieLens folder, before the join.
struct Parsed {
    users: Vec<User>,
    user_idx: HashMap<u64, u32>,
    /// movie id -> (first genre, `|`-separated genres)
    movies: HashMap<u64, (String, String)>,
    /// The users and movies file names, for messages.
    names: [&'static str; 2],
}

/// Names of the history columns [`add_history`] adds: the ids, the first genres and the
/// timestamps of the previous ratings, each a `|`-separated list, oldest first.
pub const HISTORY_COLUMNS: [&str; 3] = ["history", "history_genre", "history_time"];

/// Adds the behaviour history of every rating (`dataset.history = n`) as three list columns
/// ([`HISTORY_COLUMNS`]), computed from the table's own `user_id`, `movie_id`, `genre` and
/// `timestamp` columns, so a served request can carry the same lists.
///
/// A rating's history is the user's ratings with a timestamp strictly smaller than its own (a
/// rating at the same second is not history, whichever comes first in the file), ordered by
/// (timestamp, movie id) ascending, of which the last `n` are kept: the `n` most recent, ties
/// in time broken by the smaller movie id being older. The order does not depend on the row
/// order of the table. Only ids, genres and times enter the lists, never ratings.
pub fn add_history(t: &mut RawTable, n: usize) -> Result<(), DataError> {
    let origin = "<movielens history>";
    let user = t.require("user_id", origin, "history")?;
    let movie = t.require("movie_id", origin, "history")?;
    let genre = t.require("genre", origin, "history")?;
    let time = t.require("timestamp", origin, "history")?;
    let ints = |c: &RawColumn, what: &str| -> Result<Vec<u64>, DataError> {
        c.dict
            .iter()
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    DataError::schema(origin, format!("{what} `{v}` is not an integer"))
                })
            })
            .collect()
    };
    let (mid, ts) = (ints(movie, "movie_id")?, ints(time, "timestamp")?);
    let rows = t.n_rows();
    let key = |r: usize| (ts[time.codes[r] as usize], mid[movie.codes[r] as usize]);
    // rows of each user (by user code), sorted by (timestamp, movie id, row)
    let mut by_user: Vec<Vec<u32>> = vec![Vec::new(); user.dict.len()];
    for r in 0..rows {
        by_user[user.codes[r] as usize].push(r as u32);
    }
    let mut cols = HISTORY_COLUMNS.map(ColumnBuilder::new);
    let mut codes: [Vec<u32>; 3] = std::array::from_fn(|_| vec![0; rows]);
    let mut buf = [String::new(), String::new(), String::new()];
    for list in &mut by_user {
        list.sort_by_key(|&r| (key(r as usize), r));
        let mut start = 0; // first index of the current timestamp
        for i in 0..list.len() {
            let r = list[i] as usize;
            if key(list[start] as usize).0 != key(r).0 {
                start = i;
            }
            let hist = &list[start.saturating_sub(n)..start];
            for b in &mut buf {
                b.clear();
            }
            for (j, &h) in hist.iter().enumerate() {
                let h = h as usize;
                let sep = if j > 0 { "|" } else { "" };
                let vals = [movie.get(h), genre.get(h), time.get(h)];
                for (b, v) in buf.iter_mut().zip(vals) {
                    b.push_str(sep);
                    b.push_str(v);
                }
            }
            for k in 0..3 {
                codes[k][r] = cols[k].intern(&buf[k]);
            }
        }
    }
    for (mut c, cs) in cols.into_iter().zip(codes) {
        for code in cs {
            c.push_code(code);
        }
        t.columns.push(c.finish());
    }
    Ok(())
}

/// The sequence fields of the history columns ([`add_history`]) for a MovieLens schema: the
/// movie ids (sharing `movie_id`'s table) and the first genres (sharing the table of
/// `genre_table`), `n` slots each, timed by `history_time` against the rating's `timestamp`,
/// encoded by `encoder`.
pub fn history_fields_toml(n: usize, genre_table: &str, encoder: crate::SeqEncoder) -> String {
    let enc = match encoder {
        crate::SeqEncoder::Mean => "mean",
        crate::SeqEncoder::Din => "din",
        crate::SeqEncoder::Tim => "tim",
    };
    let mut s = String::new();
    for (name, table) in [("history", "movie_id"), ("history_genre", genre_table)] {
        s.push_str(&format!(
            "\n[[fields]]\nname = \"{name}\"\nkind = \"sequence\"\ntable = \"{table}\"\nmax_len = {n}\ntime_column = \"history_time\"\nencoder = \"{enc}\"\nroles = [\"user\"]\n"
        ));
    }
    s
}

/// A column from per-row integer values, interned in first-seen order.
fn int_column(name: &str, values: impl Iterator<Item = u64>) -> RawColumn {
    let mut index: HashMap<u64, u32> = HashMap::new();
    let mut col = RawColumn {
        name: name.into(),
        ..Default::default()
    };
    for v in values {
        let next = col.dict.len() as u32;
        let c = *index.entry(v).or_insert(next);
        if c == next {
            col.dict.push(v.to_string());
        }
        col.codes.push(c);
    }
    col
}

/// A column from a per-entity string attribute, interned in first-seen order of the entities.
fn attr_column(name: &str, attr: &[&str], entity_of_row: &[u32]) -> RawColumn {
    let mut index: HashMap<&str, u32> = HashMap::new();
    let mut dict = Vec::new();
    let code_of: Vec<u32> = attr
        .iter()
        .map(|a| {
            *index.entry(a).or_insert_with(|| {
                dict.push(a.to_string());
                dict.len() as u32 - 1
            })
        })
        .collect();
    RawColumn {
        name: name.into(),
        dict,
        codes: entity_of_row.iter().map(|&e| code_of[e as usize]).collect(),
    }
}

/// A pandas (< 2.2) inner merge's row order: `order` (row indices) stably grouped by `key[row]`,
/// the groups in order of the key's first appearance in `order`.
fn group_by_first_appearance(order: Vec<u32>, key: &[u32]) -> Vec<u32> {
    let mut rank: HashMap<u32, u32> = HashMap::new();
    let keys: Vec<u32> = order
        .iter()
        .map(|&i| {
            let next = rank.len() as u32;
            *rank.entry(key[i as usize]).or_insert(next)
        })
        .collect();
    let mut start = vec![0usize; rank.len() + 1];
    for &k in &keys {
        start[k as usize + 1] += 1;
    }
    for i in 1..start.len() {
        start[i] += start[i - 1];
    }
    let mut out = vec![0u32; order.len()];
    for (pos, &k) in keys.iter().enumerate() {
        out[start[k as usize]] = order[pos];
        start[k as usize] += 1;
    }
    out
}

/// Reads the ML-1M folder into a raw table in the given row order.
fn ml1m_users_and_movies(upath: &Path, mpath: &Path) -> Result<Parsed, DataError> {
    // users.dat
    let ufile = upath.display().to_string();
    let cx = Ctx {
        file: &ufile,
        sep: b"::",
        sep_name: "`::`",
    };
    let ubytes = read(upath)?;
    let mut users: Vec<User> = Vec::new();
    let mut user_idx: HashMap<u64, u32> = HashMap::new();
    for (ln, line) in lines(&ubytes) {
        let f = cx.split(ln, line, &["user_id", "gender", "age", "occupation", "zip"])?;
        let id = cx.uint(ln, "user_id", f[0])?;
        let age = cx.uint(ln, "age", f[2])?;
        let (age, domain) = u32::try_from(age)
            .ok()
            .and_then(|a| Some((a, age_domain(a)?)))
            .ok_or_else(|| {
                cx.err(
                    ln,
                    "age",
                    format!("unknown age code {age} (expected one of 1, 18, 25, 35, 45, 50, 56)"),
                )
            })?;
        let occ = cx.uint(ln, "occupation", f[3])?;
        if f[1].is_empty() {
            return Err(cx.err(ln, "gender", "empty value"));
        }
        if user_idx.insert(id, users.len() as u32).is_some() {
            return Err(cx.err(ln, "user_id", format!("duplicate user {id}")));
        }
        users.push(User {
            gender: latin1(f[1]),
            age: age.to_string(),
            domain,
            occupation: occ.to_string(),
            zip: latin1(f[4]),
        });
    }

    // movies.dat: MovieID::Title::Genres (the title may contain ':')
    let mfile = mpath.display().to_string();
    let cx = Ctx { file: &mfile, ..cx };
    let mbytes = read(mpath)?;
    let mut movies: HashMap<u64, (String, String)> = HashMap::new();
    for (ln, line) in lines(&mbytes) {
        let f = fields(line, cx.sep);
        if f.len() < 3 {
            return Err(cx.count_err(ln, &["movie_id", "title", "genres"], f.len()));
        }
        let id = cx.uint(ln, "movie_id", f[0])?;
        let genres = latin1(f[f.len() - 1]);
        let Some(first) = first_genre(&genres) else {
            return Err(cx.err(ln, "genres", "empty genre list"));
        };
        let first = first.to_string();
        if movies.insert(id, (first, genres)).is_some() {
            return Err(cx.err(ln, "movie_id", format!("duplicate movie {id}")));
        }
    }
    Ok(Parsed {
        users,
        user_idx,
        movies,
        names: ["users.dat", "movies.dat"],
    })
}

fn ml100k_users_and_movies(upath: &Path, mpath: &Path) -> Result<Parsed, DataError> {
    // u.user: user id | age | gender | occupation | zip code
    let ufile = upath.display().to_string();
    let cx = Ctx {
        file: &ufile,
        sep: b"|",
        sep_name: "`|`",
    };
    let ubytes = read(upath)?;
    let mut users: Vec<User> = Vec::new();
    let mut user_idx: HashMap<u64, u32> = HashMap::new();
    for (ln, line) in lines(&ubytes) {
        let f = cx.split(ln, line, &["user_id", "age", "gender", "occupation", "zip"])?;
        let id = cx.uint(ln, "user_id", f[0])?;
        let age = cx.uint(ln, "age", f[1])?;
        let age = u32::try_from(age)
            .ok()
            .filter(|a| (1..=150).contains(a))
            .ok_or_else(|| cx.err(ln, "age", format!("age {age} is outside 1..150 years")))?;
        for (i, name) in [(2, "gender"), (3, "occupation")] {
            if f[i].is_empty() {
                return Err(cx.err(ln, name, "empty value"));
            }
        }
        if user_idx.insert(id, users.len() as u32).is_some() {
            return Err(cx.err(ln, "user_id", format!("duplicate user {id}")));
        }
        users.push(User {
            gender: latin1(f[2]),
            age: age.to_string(),
            domain: age_years_domain(age),
            occupation: latin1(f[3]),
            zip: latin1(f[4]),
        });
    }

    // u.item: movie id | title | release date | video release date | IMDb URL | 19 genre flags
    let mfile = mpath.display().to_string();
    let cx = Ctx { file: &mfile, ..cx };
    let mbytes = read(mpath)?;
    let mut movies: HashMap<u64, (String, String)> = HashMap::new();
    let n_genres = ML100K_GENRES.len();
    for (ln, line) in lines(&mbytes) {
        let f = fields(line, cx.sep);
        if f.len() != 5 + n_genres {
            let mut names = vec![
                "movie_id",
                "title",
                "release_date",
                "video_release_date",
                "url",
            ];
            names.extend(ML100K_GENRES);
            return Err(cx.count_err(ln, &names, f.len()));
        }
        let id = cx.uint(ln, "movie_id", f[0])?;
        let mut genres: Vec<&str> = Vec::new();
        for (flag, genre) in f[5..].iter().zip(ML100K_GENRES) {
            match *flag {
                b"1" => genres.push(genre),
                b"0" => {}
                other => {
                    return Err(cx.err(
                        ln,
                        genre,
                        format!("expected a genre flag 0 or 1, found `{}`", latin1(other)),
                    ))
                }
            }
        }
        let Some(&first) = genres.first() else {
            return Err(cx.err(ln, "genres", "no genre flag is set"));
        };
        if movies
            .insert(id, (first.to_string(), genres.join("|")))
            .is_some()
        {
            return Err(cx.err(ln, "movie_id", format!("duplicate movie {id}")));
        }
    }
    Ok(Parsed {
        users,
        user_idx,
        movies,
        names: ["u.user", "u.item"],
    })
}

/// Reads the ML-1M folder into a raw table in the given row order.
pub fn load_movielens_1m(dir: &Path, row_order: MovieLensOrder) -> Result<RawTable, DataError> {
    let [rpath, upath, mpath] = movielens_files(dir)?;
    let parsed = ml1m_users_and_movies(&upath, &mpath)?;
    join_ratings(&rpath, b"::", "`::`", parsed, row_order)
}

/// Reads the ML-100K folder (`u.data`, `u.user`, `u.item`) into a raw table with the columns
/// of the MovieLens-1M recipe (`age` in years, `occupation` as a name, the genres from the
/// genre flags in `u.genre` order), in the given row order.
pub fn load_movielens_100k(dir: &Path, row_order: MovieLensOrder) -> Result<RawTable, DataError> {
    let [rpath, upath, mpath] = movielens_100k_files(dir)?;
    let parsed = ml100k_users_and_movies(&upath, &mpath)?;
    join_ratings(&rpath, b"\t", "tab", parsed, row_order)
}

/// Reads the ratings file and joins users and movies onto it.
fn join_ratings(
    rpath: &Path,
    sep: &'static [u8],
    sep_name: &'static str,
    parsed: Parsed,
    row_order: MovieLensOrder,
) -> Result<RawTable, DataError> {
    let Parsed {
        users,
        user_idx,
        movies,
        names: [ufile, mfile],
    } = parsed;
    let rfile = rpath.display().to_string();
    let cx = Ctx {
        file: &rfile,
        sep,
        sep_name,
    };
    let rbytes = read(rpath)?;
    let cap = rbytes.len() / 20;
    let (mut ru, mut rm, mut rr, mut rt, mut rl) = (
        Vec::with_capacity(cap),
        Vec::with_capacity(cap),
        Vec::with_capacity(cap),
        Vec::with_capacity(cap),
        Vec::with_capacity(cap),
    );
    let mut movie_rank: HashMap<u64, u32> = HashMap::new();
    let mut rank_movie: Vec<u64> = Vec::new();
    let mut row_rank: Vec<u32> = Vec::with_capacity(cap);
    for (ln, line) in lines(&rbytes) {
        let f = cx.split(ln, line, &["user_id", "movie_id", "rating", "timestamp"])?;
        let u = cx.uint(ln, "user_id", f[0])?;
        let m = cx.uint(ln, "movie_id", f[1])?;
        let r = cx.uint(ln, "rating", f[2])?;
        if !(1..=5).contains(&r) {
            return Err(cx.err(ln, "rating", format!("rating {r} is outside 1..5")));
        }
        let t = cx.uint(ln, "timestamp", f[3])?;
        let Some(&ui) = user_idx.get(&u) else {
            return Err(cx.err(ln, "user_id", format!("user {u} is not in {ufile}")));
        };
        if !movies.contains_key(&m) {
            return Err(cx.err(ln, "movie_id", format!("movie {m} is not in {mfile}")));
        }
        let rank = *movie_rank.entry(m).or_insert_with(|| {
            rank_movie.push(m);
            rank_movie.len() as u32 - 1
        });
        let ln32 = u32::try_from(ln).map_err(|_| cx.err(ln, "line", "too many lines"))?;
        ru.push(ui);
        rm.push(m);
        rr.push(r);
        rt.push(t);
        rl.push(ln32);
        row_rank.push(rank);
    }
    if ru.is_empty() {
        return Err(cx.err(1, "ratings", "no ratings"));
    }

    let order = match row_order {
        // first merge (with movies.dat) groups by movie, the second (with users.dat) groups
        // that sequence by user
        MovieLensOrder::Merged => {
            let by_movie = group_by_first_appearance((0..ru.len() as u32).collect(), &row_rank);
            group_by_first_appearance(by_movie, &ru)
        }
        MovieLensOrder::Ratings => (0..ru.len() as u32).collect(),
    };

    let user_of: Vec<u32> = order.iter().map(|&i| ru[i as usize]).collect();
    let user_ids: Vec<u64> = {
        let mut ids = vec![0u64; users.len()];
        for (id, &i) in &user_idx {
            ids[i as usize] = *id;
        }
        ids
    };
    let genders: Vec<&str> = users.iter().map(|u| u.gender.as_str()).collect();
    let ages: Vec<&str> = users.iter().map(|u| u.age.as_str()).collect();
    let occs: Vec<&str> = users.iter().map(|u| u.occupation.as_str()).collect();
    let zips: Vec<&str> = users.iter().map(|u| u.zip.as_str()).collect();
    let doms: Vec<String> = users.iter().map(|u| u.domain.to_string()).collect();
    let doms: Vec<&str> = doms.iter().map(String::as_str).collect();
    let movie_of: Vec<u32> = order.iter().map(|&i| movie_rank[&rm[i as usize]]).collect();
    let genres: Vec<&str> = rank_movie.iter().map(|m| movies[m].0.as_str()).collect();
    let all_genres: Vec<&str> = rank_movie.iter().map(|m| movies[m].1.as_str()).collect();

    let columns = vec![
        int_column("user_id", user_of.iter().map(|&u| user_ids[u as usize])),
        int_column("movie_id", order.iter().map(|&i| rm[i as usize])),
        int_column("rating", order.iter().map(|&i| rr[i as usize])),
        int_column("timestamp", order.iter().map(|&i| rt[i as usize])),
        attr_column("gender", &genders, &user_of),
        attr_column("age", &ages, &user_of),
        attr_column("occupation", &occs, &user_of),
        attr_column("zip", &zips, &user_of),
        attr_column("genre", &genres, &movie_of),
        attr_column("genres", &all_genres, &movie_of),
        attr_column("domain", &doms, &user_of),
    ];
    Ok(RawTable {
        columns,
        files: vec![rfile],
        row_file: vec![0; order.len()],
        row_line: order.iter().map(|&i| rl[i as usize]).collect(),
    })
}
