//! MovieLens-100K: the recipe's parsing errors on a generated folder, and the real counts
//! (100,000 ratings, 943 users, 1,682 movies) when the real data is at `MDREC_ML100K_DIR`
//! (`mdrec data fetch movielens-100k` prints such a folder); without it that test skips with
//! a note.

use std::path::{Path, PathBuf};

use mdrec_data::movielens::load_movielens_100k;
use mdrec_data::{DatasetName, MovieLensOrder};

fn write(dir: &Path, users: &str, items: &str, data: &str) {
    std::fs::write(dir.join("u.user"), users).unwrap();
    std::fs::write(dir.join("u.item"), items).unwrap();
    std::fs::write(dir.join("u.data"), data).unwrap();
}

fn item(id: u32, flags: &[usize]) -> String {
    let mut f = [0u8; 19];
    for &i in flags {
        f[i] = 1;
    }
    let f: Vec<String> = f.iter().map(|x| x.to_string()).collect();
    format!(
        "{id}|Movie {id}|01-Jan-1995||http://x/{id}|{}\n",
        f.join("|")
    )
}

#[test]
fn ages_in_years_give_the_three_age_domains_and_flags_the_genres() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "1|24|M|writer|11111\n2|25|F|student|22222\n3|34|M|none|33333\n4|35|F|other|44444\n",
        &(item(10, &[5, 8]) + &item(20, &[0])),
        "1\t10\t5\t100\n2\t20\t3\t101\n3\t10\t4\t102\n4\t20\t1\t103\n",
    );
    let t = load_movielens_100k(tmp.path(), MovieLensOrder::Ratings).unwrap();
    assert_eq!(t.n_rows(), 4);
    let col = |name: &str| -> Vec<String> {
        let c = t.column(name).unwrap();
        (0..4).map(|r| c.get(r).to_string()).collect()
    };
    assert_eq!(col("domain"), ["0", "1", "1", "2"]);
    assert_eq!(col("age"), ["24", "25", "34", "35"]);
    assert_eq!(col("occupation"), ["writer", "student", "none", "other"]);
    assert_eq!(
        col("genres"),
        ["Comedy|Drama", "unknown", "Comedy|Drama", "unknown"]
    );
    assert_eq!(col("genre"), ["Comedy", "unknown", "Comedy", "unknown"]);
    assert_eq!(col("rating"), ["5", "3", "4", "1"]);
}

#[test]
fn malformed_files_name_the_file_line_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let users = "1|24|M|writer|11111\n";
    let items = item(10, &[5]);
    let no_flag = item(10, &[]);
    for (u, i, d, want) in [
        (
            "1|x|M|writer|1\n",
            items.as_str(),
            "1\t10\t5\t1\n",
            ("u.user", ":1", "age"),
        ),
        (
            users,
            "10|T|||u|1|0\n",
            "1\t10\t5\t1\n",
            ("u.item", ":1", "expected 24"),
        ),
        (
            users,
            no_flag.as_str(),
            "1\t10\t5\t1\n",
            ("u.item", ":1", "no genre flag"),
        ),
        (
            users,
            items.as_str(),
            "1\t10\t5\t1\n1\t11\t4\t2\n",
            ("u.data", ":2", "not in u.item"),
        ),
        (
            users,
            items.as_str(),
            "1\t10\t6\t1\n",
            ("u.data", ":1", "rating"),
        ),
        (
            users,
            items.as_str(),
            "1 10 5 1\n",
            ("u.data", ":1", "tab-separated"),
        ),
    ] {
        write(tmp.path(), u, i, d);
        let e = load_movielens_100k(tmp.path(), MovieLensOrder::Merged)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(want.0) && e.contains(want.1) && e.contains(want.2),
            "{want:?}: {e}"
        );
    }
    std::fs::remove_file(tmp.path().join("u.item")).unwrap();
    let e = load_movielens_100k(tmp.path(), MovieLensOrder::Merged)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("u.item") && e.contains("mdrec data fetch movielens-100k"),
        "{e}"
    );
    assert!(DatasetName::MovieLens100k
        .recipe()
        .obtain
        .contains("ml-100k.zip"));
}

fn real_dir() -> Option<PathBuf> {
    match std::env::var_os("MDREC_ML100K_DIR").map(PathBuf::from) {
        Some(d) if d.join("u.data").is_file() => Some(d),
        other => {
            eprintln!(
                "note: MovieLens-100K not found ({}); skipping the real-data counts (set \
                 MDREC_ML100K_DIR to the folder `mdrec data fetch movielens-100k` prints)",
                other
                    .map(|d| d.display().to_string())
                    .unwrap_or_else(|| "MDREC_ML100K_DIR is not set".into())
            );
            None
        }
    }
}

#[test]
fn ml100k_real_counts() {
    let Some(dir) = real_dir() else { return };
    let t = load_movielens_100k(&dir, MovieLensOrder::Merged).unwrap();
    assert_eq!(t.n_rows(), 100_000);
    let distinct = |name: &str| t.column(name).unwrap().dict.len();
    assert_eq!(distinct("user_id"), 943);
    assert_eq!(distinct("movie_id"), 1_682);
    // every movie of u.item is rated in ML-100K; the three age domains are all present
    assert_eq!(distinct("domain"), 3);
}
