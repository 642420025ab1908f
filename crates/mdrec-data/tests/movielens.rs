//! MovieLens-1M recipe: a tiny fixture (always) and the real data (when present).

use std::path::{Path, PathBuf};
use std::time::Instant;

use mdrec_data::*;

const USERS: &str =
    "1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::15::55117\n4::F::45::7::02460\n";
const RATINGS: &str = "1::20::5::100\n2::10::3::101\n1::10::4::102\n3::30::1::103\n2::20::4::104\n4::10::5::105\n3::20::2::106\n4::30::4::107\n1::30::5::108\n2::30::2::109\n3::10::5::110\n4::20::3::111\n";

fn movies() -> Vec<u8> {
    let mut m = b"10::Toy Story (1995)::Animation|Children's|Comedy\n20::Caf".to_vec();
    m.push(0xE9); // latin-1 e-acute: not valid utf-8
    m.extend_from_slice(
        b" Story: Part 2 (1996)::Drama\r\n30::Heat (1995)::Action|Crime|Thriller\n",
    );
    m
}

fn fixture(dir: &Path) {
    std::fs::write(dir.join("users.dat"), USERS).unwrap();
    std::fs::write(dir.join("movies.dat"), movies()).unwrap();
    std::fs::write(dir.join("ratings.dat"), RATINGS).unwrap();
}

fn req(dir: &Path) -> PrepareRequest {
    PrepareRequest {
        source: DatasetSource::MovieLens1m {
            dir: dir.to_path_buf(),
            domain: MovieLensDomain::Age,
            row_order: MovieLensOrder::Merged,
            history: 0,
            history_encoder: Default::default(),
        },
        split: SplitSpec::Sequential {
            ratios: [0.8, 0.1, 0.1],
        },
        cache_dir: None,
    }
}

#[test]
fn fixture_order_labels_domains() {
    let tmp = tempfile::tempdir().unwrap();
    fixture(tmp.path());
    let t = load_movielens_1m(tmp.path(), MovieLensOrder::Merged).unwrap();
    assert_eq!(t.row_line, vec![1, 3, 9, 5, 2, 10, 7, 11, 4, 12, 6, 8]);
    let col = |n: &str| -> Vec<&str> {
        let c = t.column(n).unwrap();
        (0..t.n_rows()).map(|r| c.get(r)).collect()
    };
    assert_eq!(
        col("movie_id"),
        ["20", "10", "30", "20", "10", "30", "20", "10", "30", "20", "10", "30"]
    );
    assert_eq!(
        col("user_id"),
        ["1", "1", "1", "2", "2", "2", "3", "3", "3", "4", "4", "4"]
    );
    assert_eq!(
        col("domain"),
        ["0", "0", "0", "2", "2", "2", "1", "1", "1", "2", "2", "2"]
    );
    assert_eq!(col("genre")[0], "Drama");
    assert_eq!(col("genre")[4], "Animation");
    assert_eq!(col("zip")[9], "02460");

    let p = prepare(&req(tmp.path())).unwrap();
    assert_eq!((p.train.len(), p.valid.len(), p.test.len()), (9, 1, 2));
    assert_eq!(p.schema.domains, ["age_lt25", "age_25", "age_ge35"]);
    assert_eq!(p.schema.tasks, ["click", "like"]);
    // ratings in merged order (movie-grouped, then user-grouped): 5 4 5 | 4 3 2 | 2 5 1 | 3 5 4
    let click = [1., 1., 1., 1., 0., 0., 0., 1., 0.];
    let like = [1., 0., 1., 0., 0., 0., 0., 1., 0.];
    assert_eq!(p.train.labels[0], click);
    assert_eq!(p.train.labels[1], like);
    assert_eq!(p.test.labels[0], [1., 1.]);
    assert_eq!(p.test.labels[1], [1., 0.]);
    assert_eq!(p.train.domain, [0, 0, 0, 2, 2, 2, 1, 1, 1]);
    assert_eq!(p.train.group, [1, 1, 1, 2, 2, 2, 3, 3, 3]);
    // movie_id vocabulary fitted on train: 10 -> 2, 20 -> 3, 30 -> 4 (numeric order)
    let names: Vec<&str> = p
        .schema
        .categorical_fields()
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "user_id",
            "movie_id",
            "gender",
            "occupation",
            "zip",
            "genre",
            "domain_indicator"
        ]
    );
    assert_eq!(p.train.cat[1], [3, 2, 4, 3, 2, 4, 3, 2, 4]);
    assert_eq!(p.schema.fields[1].vocab_size, 5);
    // domain_indicator: values "0","1","2" -> 2,3,4
    assert_eq!(p.train.cat[6], [2, 2, 2, 4, 4, 4, 3, 3, 3]);
    // age min-max over train (1..56): user 1 (age 1) -> 0, user 2 (56) -> 1
    assert_eq!(p.train.num[0][0], 0.0);
    assert_eq!(p.train.num[0][3], 1.0);
    assert_eq!(p.schema.numeric_fields()[0].name, "age");
}

#[test]
fn ratings_row_order_keeps_file_order_and_its_own_cache() {
    let tmp = tempfile::tempdir().unwrap();
    fixture(tmp.path());
    let t = load_movielens_1m(tmp.path(), MovieLensOrder::Ratings).unwrap();
    assert_eq!(t.row_line, (1..=12).collect::<Vec<u32>>());
    let users: Vec<&str> = {
        let c = t.column("user_id").unwrap();
        (0..t.n_rows()).map(|r| c.get(r)).collect()
    };
    assert_eq!(users[..4], ["1", "2", "1", "3"]);
    assert_eq!(
        "ratings".parse::<MovieLensOrder>().unwrap(),
        MovieLensOrder::Ratings
    );
    let e = "pandas2".parse::<MovieLensOrder>().unwrap_err().to_string();
    assert!(e.contains("merged, ratings"), "{e}");

    // the order is part of the cache key: both orders cached side by side, each its own split
    let cache = tmp.path().join("cache");
    let mut r = req(tmp.path());
    r.cache_dir = Some(cache.clone());
    let merged = prepare(&r).unwrap();
    if let DatasetSource::MovieLens1m { row_order, .. } = &mut r.source {
        *row_order = MovieLensOrder::Ratings;
    }
    let ratings = prepare(&r).unwrap();
    assert!(!ratings.cache.as_ref().unwrap().hit);
    assert_ne!(merged.train.labels, ratings.train.labels);
    // last two ratings.dat lines (user 3 movie 10: 5; user 4 movie 20: 3) are the test rows
    assert_eq!(ratings.test.labels[0], [1., 0.]);
    assert!(
        ratings.source.contains("ratings row order"),
        "{}",
        ratings.source
    );
    assert!(prepare(&r).unwrap().cache.unwrap().hit);
}

fn err_with(file: &str, content: &[u8]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    fixture(tmp.path());
    std::fs::write(tmp.path().join(file), content).unwrap();
    prepare(&req(tmp.path())).unwrap_err().to_string()
}

#[test]
fn fixture_errors_name_file_line_field() {
    let bad = RATINGS.replace("2::20::4::104", "2::20::x::104");
    let e = err_with("ratings.dat", bad.as_bytes());
    assert!(e.contains("ratings.dat:5: field `rating`"), "{e}");
    let bad = RATINGS.replace("2::20::4::104", "2::20::4");
    let e = err_with("ratings.dat", bad.as_bytes());
    assert!(
        e.contains("ratings.dat:5: field `timestamp`") && e.contains("expected 4"),
        "{e}"
    );
    let bad = RATINGS.replace("2::20::4::104", "9::20::4::104");
    let e = err_with("ratings.dat", bad.as_bytes());
    assert!(
        e.contains("ratings.dat:5: field `user_id`") && e.contains("not in users.dat"),
        "{e}"
    );
    let bad = USERS.replace("3::M::25", "3::M::26");
    let e = err_with("users.dat", bad.as_bytes());
    assert!(
        e.contains("users.dat:3: field `age`") && e.contains("unknown age code 26"),
        "{e}"
    );
    let bad = RATINGS.replace("2::20::4::104", "2::20::7::104");
    let e = err_with("ratings.dat", bad.as_bytes());
    assert!(e.contains("ratings.dat:5: field `rating`"), "{e}");
    assert!(!e.ends_with('.'), "{e}");
}

#[test]
fn missing_folder_or_file_explains_how_to_get_the_data() {
    let tmp = tempfile::tempdir().unwrap();
    let e = prepare(&req(&tmp.path().join("nope")))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("nope") && e.contains("grouplens.org/datasets/movielens/1m"),
        "{e}"
    );
    fixture(tmp.path());
    std::fs::remove_file(tmp.path().join("movies.dat")).unwrap();
    let e = prepare(&req(tmp.path())).unwrap_err().to_string();
    assert!(e.contains("movies.dat") && e.contains("ml-1m.zip"), "{e}");
}

/// The real MovieLens-1M folder, from `MDREC_ML1M_DIR`. Without it a plain `cargo test` skips
/// the exact-protocol tests with a note; CI sets `MDREC_REQUIRE_DATA=1` and then a missing
/// variable fails them. A variable naming a folder without the data always fails.
fn real_dir() -> Option<PathBuf> {
    let required = std::env::var("MDREC_REQUIRE_DATA").is_ok_and(|v| v == "1");
    match std::env::var_os("MDREC_ML1M_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            for f in ["ratings.dat", "users.dat", "movies.dat"] {
                assert!(
                    d.join(f).is_file(),
                    "MDREC_ML1M_DIR={} has no {f}: point it at the ml-1m folder",
                    d.display()
                );
            }
            Some(d)
        }
        None if required => panic!(
            "MDREC_REQUIRE_DATA=1 but MDREC_ML1M_DIR is not set: the MovieLens-1M protocol tests \
             need the data (.ci/run fetches it)"
        ),
        None => {
            eprintln!(
                "note: MDREC_ML1M_DIR is not set; skipping the MovieLens-1M protocol test \
                 (CI requires it)"
            );
            None
        }
    }
}

#[test]
fn ml1m_real_counts_and_a_cache_round_trip() {
    let Some(dir) = real_dir() else { return };
    let t0 = Instant::now();
    let p = prepare(&req(&dir)).unwrap();
    let parse_s = t0.elapsed().as_secs_f64();
    assert_eq!(
        (p.train.len(), p.valid.len(), p.test.len()),
        (800_167, 100_021, 100_021)
    );
    let mut dc = vec![0usize; 3];
    for s in [&p.train, &p.valid, &p.test] {
        for (a, b) in dc.iter_mut().zip(s.domain_counts(3)) {
            *a += b;
        }
    }
    assert_eq!(dc, [210_747, 395_556, 393_906]);
    // The M3oE order puts only unseen users in valid and test (1,567 test users).
    let train_users: std::collections::BTreeSet<u64> = p.train.group.iter().copied().collect();
    let test_users: std::collections::BTreeSet<u64> = p.test.group.iter().copied().collect();
    assert_eq!(test_users.len(), 1_567);
    assert_eq!(test_users.intersection(&train_users).count(), 0);
    // Golden values from pandas itself: `pd.merge(pd.merge(ratings, movies), users)` cut 80/10/10
    // gives 1,567 test users with pandas 1.5.3 (above) and 598 with pandas 3.1.1 (ratings order).
    let mut r = req(&dir);
    if let DatasetSource::MovieLens1m { row_order, .. } = &mut r.source {
        *row_order = MovieLensOrder::Ratings;
    }
    let q = prepare(&r).unwrap();
    let users_of =
        |s: &EncodedData| -> std::collections::BTreeSet<u64> { s.group.iter().copied().collect() };
    assert_eq!(users_of(&q.test).len(), 598);
    assert_eq!(
        users_of(&q.test).intersection(&users_of(&q.train)).count(),
        0
    );
    let users = p
        .schema
        .fields
        .iter()
        .find(|f| f.name == "user_id")
        .unwrap();
    assert!(users.vocab_size <= 6_042);
    eprintln!(
        "ml-1m: train domain counts {:?}, positive rates train {:?} test {:?}",
        p.train.domain_counts(3),
        p.train.positive_rates(),
        p.test.positive_rates()
    );
    for f in &p.schema.fields {
        eprintln!(
            "  field {} vocab {} oov_train {}",
            f.name, f.vocab_size, f.n_oov_train
        );
    }

    let cache = tempfile::tempdir().unwrap();
    let mut r = req(&dir);
    r.cache_dir = Some(cache.path().to_path_buf());
    let t1 = Instant::now();
    let a = prepare(&r).unwrap();
    let miss_s = t1.elapsed().as_secs_f64();
    assert!(!a.cache.as_ref().unwrap().hit);
    let t2 = Instant::now();
    let b = prepare(&r).unwrap();
    let hit_s = t2.elapsed().as_secs_f64();
    assert!(b.cache.as_ref().unwrap().hit);
    assert_eq!(
        (&a.schema, &a.vocabs, &a.train, &a.valid, &a.test),
        (&b.schema, &b.vocabs, &b.train, &b.valid, &b.test)
    );
    assert_eq!(p.schema.to_json_pretty(), b.schema.to_json_pretty());
    let size = std::fs::metadata(&b.cache.as_ref().unwrap().path)
        .unwrap()
        .len();
    eprintln!(
        "TIMING ml-1m: parse+fit+encode {parse_s:.3}s, cache miss (parse + write) {miss_s:.3}s, cache hit (hash sources + load) {hit_s:.3}s, cache file {:.1} MiB",
        size as f64 / 1048576.0
    );
}

/// A generated ml-1m folder: 10 users, 20 movies whose first genres cover all 18 genres, every
/// user rates every movie (so every genre is in the training split).
fn genre_fixture(dir: &Path) {
    let ages = [1, 18, 25, 35, 45, 50, 56];
    let users: String = (1..=10)
        .map(|u| {
            format!(
                "{u}::{}::{}::{}::{:05}\n",
                ["F", "M"][u % 2],
                ages[u % 7],
                u % 21,
                u
            )
        })
        .collect();
    let movies: String = (0..20)
        .map(|m| {
            let g = ML1M_GENRES[m % 18];
            format!("{}::Movie {m} (1999)::{g}|Drama\n", 100 + m)
        })
        .collect();
    let mut ratings = String::new();
    for u in 1..=10 {
        for m in 0..20 {
            let r = (u * 7 + m * 3) % 5 + 1;
            ratings.push_str(&format!("{u}::{}::{r}::{}\n", 100 + m, 1000 + u * 20 + m));
        }
    }
    std::fs::write(dir.join("users.dat"), users).unwrap();
    std::fs::write(dir.join("movies.dat"), movies).unwrap();
    std::fs::write(dir.join("ratings.dat"), ratings).unwrap();
}

fn genre_req(dir: &Path) -> PrepareRequest {
    PrepareRequest {
        source: DatasetSource::MovieLens1m {
            dir: dir.to_path_buf(),
            domain: MovieLensDomain::Genre,
            row_order: MovieLensOrder::Merged,
            history: 0,
            history_encoder: Default::default(),
        },
        split: SplitSpec::Sequential {
            ratios: [0.8, 0.1, 0.1],
        },
        cache_dir: None,
    }
}

#[test]
fn genre_domains_are_first_genres_and_key_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    genre_fixture(tmp.path());
    let p = prepare(&genre_req(tmp.path())).unwrap();
    assert_eq!(p.schema.domains, ML1M_GENRES);
    assert_eq!((p.train.len(), p.valid.len(), p.test.len()), (160, 20, 20));
    // domain of a row = index of its movie's first genre; movie 100 + m has genre m % 18
    let t = load_movielens_1m(tmp.path(), MovieLensOrder::Merged).unwrap();
    let movie = t.column("movie_id").unwrap();
    let all: Vec<u32> = [&p.train, &p.valid, &p.test]
        .iter()
        .flat_map(|s| s.domain.iter().copied())
        .collect();
    for (r, &d) in all.iter().enumerate() {
        let m: usize = movie.get(r).parse().unwrap();
        assert_eq!(d as usize, (m - 100) % 18, "row {r}");
    }
    assert!(p.train.domain_counts(18).iter().all(|&c| c > 0));
    // the genre is the domain indicator; no separate genre field, age is still a feature
    let names: Vec<&str> = p.schema.fields.iter().map(|f| f.name.as_str()).collect();
    assert!(names.contains(&"domain_indicator") && names.contains(&"age"));
    assert!(!names.contains(&"genre"));
    // same labels as the age recipe
    let age = prepare(&req(tmp.path())).unwrap();
    assert_eq!(age.train.labels, p.train.labels);
    assert_eq!(age.schema.domains, ["age_lt25", "age_25", "age_ge35"]);

    // the cache key includes the domain definition
    let cache = tempfile::tempdir().unwrap();
    let mut rg = genre_req(tmp.path());
    rg.cache_dir = Some(cache.path().to_path_buf());
    let mut ra = req(tmp.path());
    ra.cache_dir = Some(cache.path().to_path_buf());
    let g = prepare(&rg).unwrap();
    let a = prepare(&ra).unwrap();
    let (gc, ac) = (g.cache.unwrap(), a.cache.unwrap());
    assert!(!gc.hit && !ac.hit);
    assert_ne!(gc.path, ac.path);
    let g2 = prepare(&rg).unwrap();
    assert!(g2.cache.as_ref().unwrap().hit);
    assert_eq!(g2.schema.domains, ML1M_GENRES);
    assert_eq!(
        "genre".parse::<MovieLensDomain>().unwrap(),
        MovieLensDomain::Genre
    );
    assert!("genres"
        .parse::<MovieLensDomain>()
        .unwrap_err()
        .to_string()
        .contains("age, genre"));
}

#[test]
fn genre_domains_reject_an_unknown_genre_with_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    genre_fixture(tmp.path());
    let m = std::fs::read_to_string(tmp.path().join("movies.dat")).unwrap();
    std::fs::write(
        tmp.path().join("movies.dat"),
        m.replace("Movie 3 (1999)::Children's", "Movie 3 (1999)::Kids"),
    )
    .unwrap();
    let e = prepare(&genre_req(tmp.path())).unwrap_err().to_string();
    // user 1 rates movie 103 on line 4 of ratings.dat
    assert!(
        e.contains("ratings.dat:4: field `genre`") && e.contains("`Kids`"),
        "{e}"
    );
    // the age recipe does not care about genre names
    prepare(&req(tmp.path())).unwrap();
}

#[test]
fn ml1m_real_genre_domain_counts() {
    let Some(dir) = real_dir() else { return };
    let p = prepare(&genre_req(&dir)).unwrap();
    assert_eq!(p.schema.domains, ML1M_GENRES);
    let mut dc = vec![0usize; 18];
    for s in [&p.train, &p.valid, &p.test] {
        for (a, b) in dc.iter_mut().zip(s.domain_counts(18)) {
            *a += b;
        }
    }
    // rows per first genre, all splits (computed once from ratings.dat + movies.dat)
    assert_eq!(
        dc,
        [
            257_457, 43_630, 36_936, 21_491, 276_923, 37_849, 6_817, 208_627, 790, 9_343, 44_170,
            7_112, 10_237, 2_832, 11_464, 17_851, 991, 5_689
        ]
    );
    assert_eq!(dc.iter().sum::<usize>(), 1_000_209);
    let small = dc.iter().filter(|&&c| c * 50 < 1_000_209).count();
    eprintln!(
        "ml-1m genre domains: {small} of 18 under 2 % of rows; train counts {:?}",
        p.train.domain_counts(18)
    );
}

// ---- behaviour history (`dataset.history`)

/// Ratings with ties in time: user 1 rates 20 and 10 at 100, 30 at 105, 40 at 105, 50 at 200.
const TIED: &str = "1::20::5::100\n2::10::3::101\n1::10::4::100\n1::30::1::105\n1::40::2::105\n1::50::4::200\n2::20::4::104\n";
const TIED_MOVIES: &str = "10::A (1995)::Drama\n20::B (1995)::Comedy|Drama\n30::C (1995)::Action\n40::D (1995)::Horror\n50::E (1995)::Drama\n";

/// `(user, movie) -> (history, history_genre, history_time, timestamp)` of a table.
fn histories(t: &RawTable) -> std::collections::BTreeMap<(String, String), [String; 4]> {
    let col = |n: &str| t.column(n).unwrap();
    (0..t.n_rows())
        .map(|r| {
            let get = |n: &str| col(n).get(r).to_string();
            (
                (get("user_id"), get("movie_id")),
                [
                    get("history"),
                    get("history_genre"),
                    get("history_time"),
                    get("timestamp"),
                ],
            )
        })
        .collect()
}

/// Every history entry is strictly earlier than its rating, and the lists are aligned.
fn assert_no_leak(t: &RawTable, n: usize) -> usize {
    let (h, ht, ts) = (
        t.column("history").unwrap(),
        t.column("history_time").unwrap(),
        t.column("timestamp").unwrap(),
    );
    let mut entries = 0;
    for r in 0..t.n_rows() {
        let now: u64 = ts.get(r).parse().unwrap();
        let ids: Vec<&str> = h.get(r).split('|').filter(|x| !x.is_empty()).collect();
        let times: Vec<u64> = ht
            .get(r)
            .split('|')
            .filter(|x| !x.is_empty())
            .map(|x| x.parse().unwrap())
            .collect();
        assert_eq!(ids.len(), times.len(), "row {r}");
        assert!(ids.len() <= n, "row {r}");
        assert!(
            times.windows(2).all(|w| w[0] <= w[1]),
            "row {r}: oldest first"
        );
        assert!(
            times.iter().all(|&x| x < now),
            "row {r}: history {times:?} not strictly before {now}"
        );
        entries += ids.len();
    }
    entries
}

#[test]
fn history_is_strictly_earlier_ties_broken_by_movie_id_and_independent_of_row_order() {
    let tmp = tempfile::tempdir().unwrap();
    fixture(tmp.path());
    std::fs::write(tmp.path().join("ratings.dat"), TIED).unwrap();
    std::fs::write(tmp.path().join("movies.dat"), TIED_MOVIES).unwrap();
    let mut merged = load_movielens_1m(tmp.path(), MovieLensOrder::Merged).unwrap();
    add_history(&mut merged, 2).unwrap();
    let h = histories(&merged);
    let at = |u: &str, m: &str| h[&(u.to_string(), m.to_string())].clone();
    // 20 and 10 share second 100: neither is the other's history
    assert_eq!(at("1", "20")[0], "");
    assert_eq!(at("1", "10")[0], "");
    // 30 and 40 at 105: both see 10 and 20 (10 older: same time, smaller id), not each other
    assert_eq!(at("1", "30")[..3], ["10|20", "Drama|Comedy", "100|100"]);
    assert_eq!(at("1", "40")[0], "10|20");
    // 50 at 200: the two most recent of four, ordered (time, movie id)
    assert_eq!(at("1", "50")[..3], ["30|40", "Action|Horror", "105|105"]);
    assert_eq!(at("2", "20")[..3], ["10", "Drama", "101"]);
    assert_eq!(assert_no_leak(&merged, 2), 7);
    // the same lists whatever the row order
    let mut ratings = load_movielens_1m(tmp.path(), MovieLensOrder::Ratings).unwrap();
    add_history(&mut ratings, 2).unwrap();
    assert_ne!(merged.row_line, ratings.row_line);
    assert_eq!(histories(&ratings), h);
}

#[test]
fn history_option_adds_sequence_fields_and_enters_the_cache_key() {
    let tmp = tempfile::tempdir().unwrap();
    fixture(tmp.path());
    let cache = tmp.path().join("cache");
    let mut r = req(tmp.path());
    r.cache_dir = Some(cache.clone());
    let plain = prepare(&r).unwrap();
    if let DatasetSource::MovieLens1m {
        history,
        history_encoder,
        ..
    } = &mut r.source
    {
        *history = 2;
        *history_encoder = SeqEncoder::Tim;
    }
    let with = prepare(&r).unwrap();
    assert!(!with.cache.as_ref().unwrap().hit, "history changes the key");
    assert!(prepare(&r).unwrap().cache.unwrap().hit);
    // the same rows and labels; the schema gains the history slots
    assert_eq!(with.train.labels, plain.train.labels);
    let names: Vec<&str> = with.schema.fields.iter().map(|f| f.name.as_str()).collect();
    for n in [
        "history.0",
        "history.1",
        "history.pos.0",
        "history.dt.1",
        "history_genre.0",
    ] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
    let f = |n: &str| with.schema.fields.iter().find(|f| f.name == n).unwrap();
    assert_eq!(f("history.0").table, "movie_id");
    assert_eq!(f("history_genre.1").table, "genre");
    // history 0 is the plain recipe, bit for bit
    if let DatasetSource::MovieLens1m { history, .. } = &mut r.source {
        *history = 0;
    }
    let again = prepare(&r).unwrap();
    assert_eq!(again.schema, plain.schema);
    assert_eq!(again.train, plain.train);
    // config checks
    let cfg = |s: &str| -> Result<(), String> {
        let c: DatasetConfig = toml::from_str(s).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())
    };
    let e = cfg("name = \"synthetic\"\nhistory = 3").unwrap_err();
    assert!(
        e.contains("dataset.history applies to movielens-1m only"),
        "{e}"
    );
    let e =
        cfg("name = \"movielens-1m\"\ndata_dir = \"x\"\nhistory_encoder = \"tim\"").unwrap_err();
    assert!(e.contains("needs dataset.history"), "{e}");
}

#[test]
fn ml1m_real_history_never_leaks() {
    let Some(dir) = real_dir() else { return };
    let mut t = load_movielens_1m(&dir, MovieLensOrder::Merged).unwrap();
    add_history(&mut t, 20).unwrap();
    let entries = assert_no_leak(&t, 20);
    // most ratings have a full history; none is longer than asked
    assert!(entries > 15 * t.n_rows(), "{entries} history entries");
}
