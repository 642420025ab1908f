//! End-to-end tests of `mdrec serve` with trained runs: served probabilities equal `mdrec
//! predict` on the same records, request errors, a hot reload under load with none failing, a
//! corrupt version refused, and graceful shutdown on SIGTERM. Servers listen on ephemeral
//! loopback ports and are killed when a test ends; every request has a timeout.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    export_movielens_test, mdrec, movielens_fixture, ok, predictions, s, train_movielens,
};

/// A `mdrec serve` child process on `127.0.0.1:<ephemeral>`, killed on drop.
struct Served {
    child: Child,
    addr: String,
    log: Arc<Mutex<String>>,
}

impl Served {
    fn start(args: &[&str]) -> Served {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mdrec"))
            .arg("serve")
            .args(args)
            .args(["--addr", "127.0.0.1:0"])
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start mdrec serve");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("serving on http://").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                }
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("server did not start: {}", log.lock().unwrap()));
        Served { child, addr, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The log once it holds every string of `want` (the server may answer a request before
    /// the reader thread has its log line), or as it is after 30 s.
    fn log_with(&self, want: &[&str]) -> String {
        let until = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.log();
            if want.iter().all(|w| log.contains(w)) || std::time::Instant::now() > until {
                return log;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// One HTTP/1.1 request (`Connection: close`); returns the status and the body.
    fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut c = TcpStream::connect(&self.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(
            c,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        let status = out
            .split_whitespace()
            .nth(1)
            .and_then(|x| x.parse().ok())
            .unwrap_or(0);
        let body = out.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
        (status, body)
    }

    fn json(&self, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
        let (st, b) = self.http(method, path, body);
        (
            st,
            serde_json::from_str(&b).unwrap_or(serde_json::Value::String(b)),
        )
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An infer request with the first `n` records of an exported CSV, typed by the metadata.
fn request(served: &Served, model: &str, csv: &Path, n: usize) -> String {
    let (st, meta) = served.json("GET", &format!("/v2/models/{model}"), "");
    assert_eq!(st, 200, "{meta}");
    let text = std::fs::read_to_string(csv).unwrap();
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<Vec<&str>> = lines.take(n).map(|l| l.split(',').collect()).collect();
    let mut inputs = Vec::new();
    for input in meta["inputs"].as_array().unwrap() {
        let name = input["name"].as_str().unwrap();
        let Some(c) = head.iter().position(|h| *h == name) else {
            continue;
        };
        let ty = input["datatype"].as_str().unwrap();
        let data: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| match ty {
                "INT64" => r[c].parse::<i64>().unwrap().into(),
                "FP32" => r[c].parse::<f64>().unwrap().into(),
                _ => r[c].into(),
            })
            .collect();
        inputs.push(
            serde_json::json!({"name": name, "shape": [rows.len()], "datatype": ty, "data": data}),
        );
    }
    serde_json::json!({"id": "t", "inputs": inputs}).to_string()
}

/// The first `n` rows of a predictions file, task-major.
fn expected(pred: &Path, n: usize) -> Vec<Vec<f64>> {
    let (head, rows) = predictions(pred);
    let tasks = head.split(',').count() - 2;
    (0..tasks)
        .map(|t| {
            rows.iter()
                .take(n)
                .map(|r| r[2 + t].parse().unwrap())
                .collect()
        })
        .collect()
}

fn assert_outputs(resp: &serde_json::Value, want: &[Vec<f64>]) {
    let outs = resp["outputs"]
        .as_array()
        .unwrap_or_else(|| panic!("{resp}"));
    assert_eq!(outs.len(), want.len());
    for (o, w) in outs.iter().zip(want) {
        let got: Vec<f64> = o["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(got.len(), w.len());
        for (a, b) in got.iter().zip(w) {
            assert!((a - b).abs() <= 1e-6, "{} {a} vs {b}", o["name"]);
        }
    }
}

/// The output names of a model's metadata.
fn output_names(meta: &serde_json::Value) -> Vec<&str> {
    meta["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect()
}

/// An mmoe run `ranker` on the MovieLens fixture under `dir`, its exported test records and
/// their `mdrec predict` file; with `uncertainty`, fitted by `mdrec uncertainty` and predicted
/// with `--variance --thompson 3`.
fn ranker(dir: &Path, uncertainty: bool) -> (PathBuf, PathBuf, PathBuf) {
    let ml = dir.join("ml-1m");
    movielens_fixture(&ml);
    let run = dir.join("ranker");
    train_movielens(&ml, "mmoe", "1", &run);
    let csv = dir.join("test.csv");
    export_movielens_test(&ml, &csv);
    let pred = dir.join("pred.csv");
    let mut a = vec![
        "predict",
        "--run",
        s(&run),
        "--input",
        s(&csv),
        "--out",
        s(&pred),
    ];
    if uncertainty {
        ok(mdrec(&["uncertainty", "--run", s(&run)]));
        a.extend(["--variance", "--thompson", "3"]);
    }
    ok(mdrec(&a));
    (run, csv, pred)
}

#[test]
fn served_probabilities_equal_predict_and_bad_requests_get_json_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, csv, pred) = ranker(tmp.path(), false);

    let sv = Served::start(&["--run", s(&run), "--max-body-bytes", "200000"]);
    assert_eq!(sv.http("GET", "/v2/health/live", "").0, 200);
    assert_eq!(sv.http("GET", "/v2/health/ready", "").0, 200);
    let (_, meta) = sv.json("GET", "/v2/models/ranker", "");
    assert_eq!(meta["platform"], "mdrec-mmoe");
    assert_eq!(output_names(&meta), ["click", "like"]);

    // served = predict, for 1 and for 50 rows
    for n in [1, 50] {
        let (st, resp) = sv.json(
            "POST",
            "/v2/models/ranker/infer",
            &request(&sv, "ranker", &csv, n),
        );
        assert_eq!(st, 200, "{resp}");
        assert_eq!(resp["model_version"], "1");
        assert_outputs(&resp, &expected(&pred, n));
    }

    // errors: status and message
    let body = request(&sv, "ranker", &csv, 2);
    let (st, e) = sv.json("POST", "/v2/models/nope/infer", &body);
    assert_eq!(st, 404, "{e}");
    assert!(e["error"].as_str().unwrap().contains("ranker"), "{e}");
    let (st, e) = sv.json("POST", "/v2/models/ranker/versions/7/infer", &body);
    assert_eq!(st, 404, "{e}");
    let (st, e) = sv.json("POST", "/v2/models/ranker/infer", &fix_age(&body));
    assert_eq!(st, 400, "{e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("unknown age code `17`"),
        "{e}"
    );
    let (st, e) = sv.json(
        "POST",
        "/v2/models/ranker/infer",
        r#"{"inputs": [{"name": "user", "shape": [1], "datatype": "INT64", "data": [1]}]}"#,
    );
    assert_eq!(st, 400);
    assert!(e["error"].as_str().unwrap().contains("user_id"), "{e}");
    let (st, _) = sv.json("POST", "/v2/models/ranker/infer", "{not json");
    assert_eq!(st, 400);
    let big = format!("{{\"inputs\": [], \"pad\": \"{}\"}}", "x".repeat(300_000));
    assert_eq!(sv.http("POST", "/v2/models/ranker/infer", &big).0, 413);
    let (st, m) = sv.http("GET", "/metrics", "");
    assert_eq!(st, 200);
    assert!(
        m.contains("mdrec_requests_total{model=\"ranker\",status=\"200\",version=\"1\"} 2"),
        "{m}"
    );
}

#[test]
fn a_run_with_fitted_uncertainty_serves_variances_and_thompson_samples_equal_to_predict() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, csv, pred) = ranker(tmp.path(), true);
    let sv = Served::start(&["--run", s(&run), "--thompson", "3"]);
    let (_, meta) = sv.json("GET", "/v2/models/ranker", "");
    assert_eq!(
        output_names(&meta),
        [
            "click",
            "like",
            "click_var",
            "like_var",
            "click_ts",
            "like_ts"
        ]
    );
    let body = request(&sv, "ranker", &csv, 20);
    let (st, first) = sv.json("POST", "/v2/models/ranker/infer", &body);
    assert_eq!(st, 200, "{first}");
    let want = expected(&pred, 20);
    assert_eq!(want.len(), 6);
    assert!(want[2].iter().all(|&v| v > 0.0));
    assert_outputs(&first, &want);
    // The same rows again are rows 20..40 of the version's stream: the same probabilities and
    // variances, fresh samples.
    let (st, again) = sv.json("POST", "/v2/models/ranker/infer", &body);
    assert_eq!(st, 200, "{again}");
    let data = |r: &serde_json::Value, k: usize| r["outputs"][k]["data"].clone();
    for k in 0..4 {
        assert_eq!(data(&again, k), data(&first, k));
    }
    assert_ne!(data(&again, 4), data(&first, 4));
    // A served sample is σ(μ + σ z): within 8 standard deviations of the mean.
    for (k, ts) in data(&again, 4).as_array().unwrap().iter().enumerate() {
        let (p, var) = (want[0][k], want[2][k]);
        let (mu, f) = (
            (p / (1.0 - p)).ln(),
            ts.as_f64().unwrap() / (1.0 - ts.as_f64().unwrap()),
        );
        assert!((f.ln() - mu).abs() <= 8.0 * var.sqrt() + 1e-4, "row {k}");
    }
}

#[test]
fn thompson_samples_need_a_fitted_uncertainty() {
    let tmp = tempfile::tempdir().unwrap();
    let ml = tmp.path().join("ml-1m");
    movielens_fixture(&ml);
    let run = tmp.path().join("plain");
    train_movielens(&ml, "mmoe", "1", &run);
    let mut child = Command::new(env!("CARGO_BIN_EXE_mdrec"))
        .args(["serve", "--run", s(&run), "--thompson", "1"])
        .args(["--addr", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("mdrec serve --thompson started without a fitted uncertainty");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success());
    assert!(err.contains("mdrec uncertainty --run"), "{err}");
}

/// The request with the first row's age code replaced by 17 (not an ML-1M age code).
fn fix_age(body: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(body).unwrap();
    for i in v["inputs"].as_array_mut().unwrap() {
        if i["name"] == "age" {
            i["data"][0] = 17.into();
        }
    }
    v.to_string()
}

#[test]
fn a_new_version_is_swapped_in_under_load_and_a_corrupt_one_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ml = tmp.path().join("ml-1m");
    movielens_fixture(&ml);
    let (v1, v2) = (tmp.path().join("v1"), tmp.path().join("v2"));
    train_movielens(&ml, "mmoe", "1", &v1);
    train_movielens(&ml, "mmoe", "2", &v2);
    let csv = tmp.path().join("test.csv");
    export_movielens_test(&ml, &csv);
    let pred2 = tmp.path().join("pred2.csv");
    ok(mdrec(&[
        "predict",
        "--run",
        s(&v2),
        "--input",
        s(&csv),
        "--out",
        s(&pred2),
    ]));
    let repo = tmp.path().join("repo");
    let copy = |from: &Path, to: &Path| {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    };
    copy(&v1, &repo.join("ranker/1"));

    let sv = Arc::new(Served::start(&[
        "--model-repo",
        s(&repo),
        "--poll-ms",
        "100",
    ]));
    let body = Arc::new(request(&sv, "ranker", &csv, 20));
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (sv, body, stop) = (sv.clone(), body.clone(), stop.clone());
            let (sent, failed) = (sent.clone(), failed.clone());
            std::thread::spawn(move || {
                // bounded: stops on the flag or after 5,000 requests
                for _ in 0..5000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let (st, b) = sv.http("POST", "/v2/models/ranker/infer", &body);
                    sent.fetch_add(1, Ordering::Relaxed);
                    if st != 200 {
                        failed.fetch_add(1, Ordering::Relaxed);
                        eprintln!("failed: {st} {b}");
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // version 2 appears atomically (written under another name, then renamed)
    copy(&v2, &repo.join("ranker/.2.partial"));
    std::fs::rename(repo.join("ranker/.2.partial"), repo.join("ranker/2")).unwrap();
    let t0 = Instant::now();
    loop {
        let (_, meta) = sv.json("GET", "/v2/models/ranker", "");
        if meta["parameters"]["version"] == "2" {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no swap: {}",
            sv.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for h in load {
        h.join().unwrap();
    }
    assert!(sent.load(Ordering::Relaxed) > 0);
    assert_eq!(failed.load(Ordering::Relaxed), 0, "{}", sv.log());
    let (st, resp) = sv.json("POST", "/v2/models/ranker/infer", &body);
    assert_eq!(st, 200);
    assert_eq!(resp["model_version"], "2");
    assert_outputs(&resp, &expected(&pred2, 20));

    // a corrupt version 3 (truncated weights) is refused; version 2 keeps serving
    copy(&v2, &repo.join("ranker/.3.partial"));
    let w = repo.join("ranker/.3.partial/weights.safetensors");
    let bytes = std::fs::read(&w).unwrap();
    std::fs::write(&w, &bytes[..bytes.len() / 2]).unwrap();
    std::fs::rename(repo.join("ranker/.3.partial"), repo.join("ranker/3")).unwrap();
    let (st, e) = sv.json("POST", "/v2/repository/models/ranker/load", "");
    assert_eq!(st, 500, "{e}");
    let msg = e["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains("ranker/3") && msg.contains("weights.safetensors"),
        "{e}"
    );
    let log = sv.log_with(&["cannot load", "ranker/3"]);
    assert!(
        log.contains("cannot load") && log.contains("ranker/3"),
        "{log}"
    );
    let (st, resp) = sv.json("POST", "/v2/models/ranker/infer", &body);
    assert_eq!(st, 200);
    assert_eq!(resp["model_version"], "2");
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let ml = tmp.path().join("ml-1m");
    movielens_fixture(&ml);
    let run = tmp.path().join("ranker");
    train_movielens(&ml, "mmoe", "1", &run);
    let mut sv = Served::start(&["--run", s(&run)]);
    assert_eq!(sv.http("GET", "/v2/health/ready", "").0, 200);
    let pid = sv.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = sv.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "still running: {}",
            sv.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}: {}", sv.log());
    assert!(TcpStream::connect(&sv.addr).is_err());
}

/// Train while serving: stream training publishes each window's model to the repository, and
/// a running server swaps to the newest version without a restart; it then serves exactly
/// what `mdrec predict` gives with the finished run.
#[test]
fn stream_training_publishes_versions_that_a_running_server_picks_up() {
    let tmp = tempfile::tempdir().unwrap();
    let ml = tmp.path().join("ml-1m");
    movielens_fixture(&ml);
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(repo.join("ranker")).unwrap();
    let sv = Served::start(&["--model-repo", s(&repo), "--poll-ms", "100"]);
    let run = tmp.path().join("run");
    ok(mdrec(&[
        "train",
        "--dataset",
        "ml-1m",
        "--data-dir",
        s(&ml),
        "--model",
        "mmoe",
        "--quiet",
        "--set",
        "train.mode=\"stream\"",
        "--set",
        "train.stream.window_rows=600",
        "--set",
        &format!("train.stream.publish_to=\"{}\"", s(&repo.join("ranker"))),
        "--out",
        s(&run),
    ]));
    for v in ["1", "2", "3"] {
        assert!(repo
            .join("ranker")
            .join(v)
            .join("weights.safetensors")
            .exists());
    }
    let t0 = Instant::now();
    loop {
        let (_, meta) = sv.json("GET", "/v2/models/ranker", "");
        if meta["parameters"]["version"] == "3" {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "version 3 not served: {}",
            sv.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let csv = tmp.path().join("test.csv");
    export_movielens_test(&ml, &csv);
    let pred = tmp.path().join("pred.csv");
    ok(mdrec(&[
        "predict",
        "--run",
        s(&run),
        "--input",
        s(&csv),
        "--out",
        s(&pred),
    ]));
    let body = request(&sv, "ranker", &csv, 20);
    let (st, resp) = sv.json("POST", "/v2/models/ranker/infer", &body);
    assert_eq!(st, 200, "{resp}");
    assert_eq!(resp["model_version"], "3");
    assert_outputs(&resp, &expected(&pred, 20));
}
