//! End-to-end tests of the server over loopback HTTP with a fake scorer and loader: health,
//! metadata, infer (broadcast, output subsets), every client error status, dynamic batching,
//! hot reload under load, refused corrupt versions, metrics, deadlines and graceful shutdown.
//!
//! The fake model reads `model.txt` from a version directory: a number `tag` (its `like`
//! probability is `tag / 100`, so responses show which version scored them) or the word
//! `corrupt` (the load fails). Its `click` probability is a hash of the row's strings, so any
//! response can be checked row by row against scoring that request alone. A `user_id` of `bad`
//! makes `score` fail naming that row; `slow` makes it sleep.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use mdrec_serve::{
    loadgen, Datatype, InputSpec, Loader, LoadgenConfig, ModelMeta, ModelSource, RawBatch, Scorer,
    Scores, ServeConfig, Server,
};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Fake model

#[derive(Default)]
struct Record {
    /// Rows of every `score` call.
    batches: Mutex<Vec<usize>>,
    /// Load attempts per directory.
    loads: Mutex<HashMap<PathBuf, usize>>,
}

struct FakeScorer {
    meta: ModelMeta,
    tag: u32,
    record: Arc<Record>,
}

fn fake_meta() -> ModelMeta {
    let spec = |name: &str, datatype, optional| InputSpec {
        name: name.to_string(),
        datatype,
        optional,
    };
    ModelMeta {
        inputs: vec![
            spec("user_id", Datatype::Bytes, false),
            spec("item_id", Datatype::Int64, false),
            spec("domain", Datatype::Bytes, false),
            spec("price", Datatype::Fp32, true),
        ],
        outputs: vec!["click".into(), "like".into()],
        domains: vec!["books".into(), "movies".into()],
        platform: "fake-mmoe".into(),
    }
}

/// The fake's click probability of one row (FNV-1a of its strings).
fn click_of(user: &str, item: &str, domain: &str, price: &str) -> f32 {
    let mut h: u64 = 0xcbf29ce484222325;
    for s in [user, item, domain, price] {
        for b in s.bytes().chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    (h % 1000) as f32 / 1000.0
}

impl Scorer for FakeScorer {
    fn meta(&self) -> &ModelMeta {
        &self.meta
    }

    fn score(&self, batch: &RawBatch) -> Result<Scores, String> {
        self.record.batches.lock().unwrap().push(batch.n_rows);
        let col = |i: usize| batch.columns[i].as_ref();
        let (users, items, domains) = match (col(0), col(1), col(2)) {
            (Some(u), Some(i), Some(d)) => (u, i, d),
            _ => return Err("a required column is missing".into()),
        };
        let mut click = Vec::with_capacity(batch.n_rows);
        for r in 0..batch.n_rows {
            if users[r] == "bad" {
                return Err(format!("row {r}, `user_id`: value `bad` is not allowed"));
            }
            if users[r] == "slow" {
                std::thread::sleep(Duration::from_millis(600));
            }
            if !self.meta.domains.contains(&domains[r]) {
                return Err(format!(
                    "row {r}, `domain`: value `{}` was not seen in training",
                    domains[r]
                ));
            }
            let price = col(3).map_or("-", |p| p[r].as_str());
            click.push(click_of(&users[r], &items[r], &domains[r], price));
        }
        let like = vec![self.tag as f32 / 100.0; batch.n_rows];
        Ok(Scores {
            tasks: vec![click, like],
        })
    }
}

struct FakeLoader {
    record: Arc<Record>,
}

impl Loader for FakeLoader {
    fn load(&self, dir: &Path) -> Result<Arc<dyn Scorer>, String> {
        *self
            .record
            .loads
            .lock()
            .unwrap()
            .entry(dir.to_path_buf())
            .or_default() += 1;
        let text = std::fs::read_to_string(dir.join("model.txt"))
            .map_err(|e| format!("cannot read model.txt: {e}"))?;
        if text.contains("corrupt") {
            return Err("model.txt is corrupt".into());
        }
        let tag = text
            .trim()
            .parse()
            .map_err(|e| format!("bad model.txt: {e}"))?;
        Ok(Arc::new(FakeScorer {
            meta: fake_meta(),
            tag,
            record: self.record.clone(),
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

const GUARD: Duration = Duration::from_secs(20);

fn cfg() -> ServeConfig {
    ServeConfig {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        max_delay_us: 200,
        poll_interval_ms: 0,
        request_timeout_ms: 10_000,
        ..ServeConfig::default()
    }
}

/// Writes version `tag` content into `dir` atomically (temp folder, then rename).
fn write_version(dir: &Path, version: u64, content: &str) {
    let tmp = dir.join(format!(".tmp-{version}"));
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join("model.txt"), content).unwrap();
    std::fs::rename(&tmp, dir.join(version.to_string())).unwrap();
}

struct Fixture {
    server: Server,
    addr: SocketAddr,
    record: Arc<Record>,
    _dir: tempfile::TempDir,
    root: PathBuf,
}

/// A server with model `m` from a run directory tagged 1.
async fn run_server(cfg: ServeConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("model.txt"), "1").unwrap();
    let record = Arc::new(Record::default());
    let loader = Arc::new(FakeLoader {
        record: record.clone(),
    });
    let server = Server::start(cfg, ModelSource::Runs(vec![("m".into(), run)]), loader)
        .await
        .unwrap();
    let addr = server.local_addr();
    Fixture {
        server,
        addr,
        record,
        root: dir.path().to_path_buf(),
        _dir: dir,
    }
}

/// A server over a repository whose model `m` has the given versions.
async fn repo_server(cfg: ServeConfig, versions: &[(u64, &str)]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m");
    std::fs::create_dir_all(&m).unwrap();
    for (v, content) in versions {
        write_version(&m, *v, content);
    }
    // Ignored: a file and a non-integer folder.
    std::fs::write(m.join("README"), "not a version").unwrap();
    std::fs::create_dir_all(m.join("latest")).unwrap();
    let record = Arc::new(Record::default());
    let loader = Arc::new(FakeLoader {
        record: record.clone(),
    });
    let server = Server::start(
        cfg,
        ModelSource::Repository(dir.path().to_path_buf()),
        loader,
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    Fixture {
        server,
        addr,
        record,
        root: dir.path().to_path_buf(),
        _dir: dir,
    }
}

async fn shutdown(server: Server) {
    tokio::time::timeout(GUARD, server.shutdown())
        .await
        .expect("shutdown timed out");
}

/// One request on a fresh connection: (status, JSON body or the body as a JSON string).
async fn call(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let fut = async {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.to_string())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::copy_from_slice(body)))
            .unwrap();
        let resp = sender.send_request(req).await.expect("send");
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, v)
    };
    tokio::time::timeout(GUARD, fut)
        .await
        .expect("request timed out")
}

async fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    call(addr, "GET", path, b"").await
}

async fn post(addr: SocketAddr, path: &str, body: &Value) -> (u16, Value) {
    call(addr, "POST", path, &serde_json::to_vec(body).unwrap()).await
}

fn infer_body(users: &[&str], items: &[i64], domains: &[&str]) -> Value {
    json!({
        "id": "req",
        "inputs": [
            {"name": "user_id", "shape": [users.len()], "datatype": "BYTES", "data": users},
            {"name": "item_id", "shape": [items.len()], "datatype": "INT64", "data": items},
            {"name": "domain", "shape": [domains.len()], "datatype": "BYTES", "data": domains},
        ]
    })
}

fn error_of(v: &Value) -> &str {
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {v}"))
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// The `click` output a request with these rows must get (broadcast already applied).
fn expected_click(users: &[&str], items: &[i64], domains: &[&str]) -> Vec<f32> {
    (0..users.len())
        .map(|r| click_of(users[r], &items[r].to_string(), domains[r], "-"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_ready_and_metadata() {
    let f = run_server(cfg()).await;
    assert_eq!(get(f.addr, "/v2/health/live").await.0, 200);
    assert_eq!(get(f.addr, "/v2/health/ready").await.0, 200);
    let (s, meta) = get(f.addr, "/v2/models/m").await;
    assert_eq!(s, 200);
    assert_eq!(meta["name"], "m");
    assert_eq!(meta["versions"], json!(["1"]));
    assert_eq!(meta["platform"], "fake-mmoe");
    assert_eq!(
        meta["inputs"][1],
        json!({"name": "item_id", "datatype": "INT64", "shape": [-1], "parameters": {"optional": false}})
    );
    assert_eq!(meta["inputs"][3]["parameters"]["optional"], true);
    assert_eq!(
        meta["outputs"],
        json!([
            {"name": "click", "datatype": "FP32", "shape": [-1]},
            {"name": "like", "datatype": "FP32", "shape": [-1]},
        ])
    );
    assert_eq!(
        meta["parameters"],
        json!({"domains": ["books", "movies"], "version": "1"})
    );
    let (s, vmeta) = get(f.addr, "/v2/models/m/versions/1").await;
    assert_eq!((s, vmeta), (200, meta));
    assert_eq!(get(f.addr, "/v2/models/m/ready").await.0, 200);
    assert_eq!(get(f.addr, "/v2/models/m/versions/1/ready").await.0, 200);
    shutdown(f.server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn infer_broadcasts_and_answers_an_output_subset_in_order() {
    let f = run_server(cfg()).await;
    let body = json!({
        "id": "abc",
        "inputs": [
            {"name": "user_id", "shape": [1], "datatype": "BYTES", "data": ["u1"]},
            {"name": "item_id", "shape": [3], "datatype": "INT64", "data": [10, 11, 12]},
            {"name": "domain", "shape": [1, 1], "datatype": "BYTES", "data": [["books"]]},
        ],
        "outputs": [{"name": "like"}, {"name": "click"}],
    });
    for path in ["/v2/models/m/infer", "/v2/models/m/versions/1/infer"] {
        let (s, resp) = post(f.addr, path, &body).await;
        assert_eq!(s, 200, "{resp}");
        assert_eq!(resp["model_name"], "m");
        assert_eq!(resp["model_version"], "1");
        assert_eq!(resp["id"], "abc");
        let outs = resp["outputs"].as_array().unwrap();
        assert_eq!(outs.len(), 2);
        assert_eq!(outs[0]["name"], "like");
        assert_eq!(outs[0]["shape"], json!([3]));
        assert_eq!(outs[0]["datatype"], "FP32");
        assert_eq!(floats(&outs[0]["data"]), vec![0.01; 3]);
        assert_eq!(outs[1]["name"], "click");
        assert_eq!(
            floats(&outs[1]["data"]),
            expected_click(&["u1"; 3], &[10, 11, 12], &["books"; 3])
        );
    }
    // Optional input present: it reaches the scorer; default outputs are all tasks in order.
    let mut body = infer_body(&["u"], &[1], &["movies"]);
    body["inputs"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "price", "shape": [1], "datatype": "FP32", "data": [0.5]}));
    let (s, resp) = post(f.addr, "/v2/models/m/infer", &body).await;
    assert_eq!(s, 200, "{resp}");
    assert_eq!(resp["outputs"][0]["name"], "click");
    assert_eq!(resp["outputs"][1]["name"], "like");
    assert_eq!(
        floats(&resp["outputs"][0]["data"]),
        vec![click_of("u", "1", "movies", "0.5")]
    );
    shutdown(f.server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_errors_are_400_with_a_message() {
    let f = run_server(cfg()).await;
    let ok = infer_body(&["u"], &[1], &["books"]);
    let with_input = |i: usize, input: Value| {
        let mut b = ok.clone();
        b["inputs"][i] = input;
        b
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "malformed infer request JSON"),
        (
            serde_json::to_vec(&json!({"inputs": []})).unwrap(),
            "empty request: no inputs",
        ),
        (
            serde_json::to_vec(&with_input(
                0,
                json!({"name": "user", "shape": [1], "datatype": "BYTES", "data": ["u"]}),
            ))
            .unwrap(),
            "unknown input `user`; accepted inputs: `user_id`, `item_id`, `domain`, `price`",
        ),
        (
            serde_json::to_vec(&with_input(
                1,
                json!({"name": "item_id", "shape": [1], "datatype": "FP32", "data": [1.0]}),
            ))
            .unwrap(),
            "input `item_id`: expected datatype INT64, got \"FP32\"",
        ),
        (
            serde_json::to_vec(&with_input(
                1,
                json!({"name": "item_id", "shape": [2], "datatype": "INT64", "data": [1, 2, 3]}),
            ))
            .unwrap(),
            "input `item_id`: shape [2] holds 2 values but data has 3",
        ),
        (
            serde_json::to_vec(&infer_body(&["a", "b"], &[1, 2, 3], &["books"])).unwrap(),
            "inconsistent shapes: input `user_id` has 2 rows but the request has 3",
        ),
        (
            serde_json::to_vec(&infer_body(&[], &[], &[])).unwrap(),
            "empty request: every input has 0 rows",
        ),
        (
            serde_json::to_vec(&{
                let mut b = ok.clone();
                b["inputs"].as_array_mut().unwrap().push(
                    json!({"name": "price", "shape": [1], "datatype": "FP32", "data": [1e39]}),
                );
                b
            })
            .unwrap(),
            "input `price`: data[0] = 1e+39 is not a finite FP32 value",
        ),
        (
            serde_json::to_vec(&{
                let mut b = ok.clone();
                b["outputs"] = json!([{"name": "buy"}]);
                b
            })
            .unwrap(),
            "unknown output `buy`; accepted outputs: `click`, `like`",
        ),
        (
            serde_json::to_vec(&json!({"inputs": [
                {"name": "user_id", "shape": [1], "datatype": "BYTES", "data": ["u"]}]}))
            .unwrap(),
            "missing required input `item_id`",
        ),
        (
            serde_json::to_vec(&infer_body(&["a", "b", "bad"], &[1], &["books"])).unwrap(),
            "row 2, `user_id`: value `bad` is not allowed",
        ),
        (
            serde_json::to_vec(&infer_body(&["a", "b"], &[1], &["books", "toys"])).unwrap(),
            "row 1, `domain`: value `toys` was not seen in training",
        ),
    ];
    for (body, want) in cases {
        let (s, resp) = call(f.addr, "POST", "/v2/models/m/infer", &body).await;
        assert_eq!(s, 400, "{want}: {resp}");
        assert!(
            error_of(&resp).starts_with(want),
            "want `{want}`, got `{}`",
            error_of(&resp)
        );
    }
    shutdown(f.server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_models_versions_and_endpoints_are_404() {
    let f = run_server(cfg()).await;
    let body = infer_body(&["u"], &[1], &["books"]);
    let (s, r) = post(f.addr, "/v2/models/nope/infer", &body).await;
    assert_eq!(
        (s, error_of(&r)),
        (404, "unknown model `nope`; known models: `m`")
    );
    let (s, r) = get(f.addr, "/v2/models/nope").await;
    assert_eq!(
        (s, error_of(&r)),
        (404, "unknown model `nope`; known models: `m`")
    );
    let (s, r) = post(f.addr, "/v2/models/m/versions/7/infer", &body).await;
    assert_eq!(
        (s, error_of(&r)),
        (404, "model `m` has no version `7`; loaded versions: `1`")
    );
    let (s, r) = get(f.addr, "/v2/models/m/versions/x/ready").await;
    assert_eq!(
        (s, error_of(&r)),
        (404, "model `m` has no version `x`; loaded versions: `1`")
    );
    let (s, r) = get(f.addr, "/v3/whatever").await;
    assert_eq!((s, error_of(&r)), (404, "no such endpoint"));
    let (s, _) = get(f.addr, "/v2/models/m/infer").await;
    assert_eq!(s, 405);
    shutdown(f.server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_bodies_are_413() {
    let f = run_server(ServeConfig {
        max_body_bytes: 1024,
        ..cfg()
    })
    .await;
    let mut body = serde_json::to_vec(&infer_body(&["u"], &[1], &["books"])).unwrap();
    body.extend(std::iter::repeat_n(b' ', 4096));
    let (s, r) = call(f.addr, "POST", "/v2/models/m/infer", &body).await;
    assert_eq!(
        (s, error_of(&r)),
        (413, "request body is larger than the limit of 1024 bytes")
    );
    // Under the limit it is fine.
    body.truncate(1000);
    assert_eq!(
        call(f.addr, "POST", "/v2/models/m/infer", &body).await.0,
        200
    );
    shutdown(f.server).await;
}

/// 32 concurrent requests of different sizes; answers checked row by row.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_are_merged_and_split_back() {
    let f = run_server(ServeConfig {
        max_delay_us: 300_000,
        max_batch_rows: 10_000,
        ..cfg()
    })
    .await;
    let mut tasks = Vec::new();
    for i in 0..32i64 {
        let addr = f.addr;
        tasks.push(tokio::spawn(async move {
            let n = 1 + (i % 3) as usize;
            let users: Vec<String> = (0..n).map(|r| format!("u{i}-{r}")).collect();
            let users: Vec<&str> = users.iter().map(String::as_str).collect();
            let items: Vec<i64> = (0..n as i64).map(|r| i * 100 + r).collect();
            let domains = vec!["movies"; n];
            let (s, resp) = post(
                addr,
                "/v2/models/m/infer",
                &infer_body(&users, &items, &domains),
            )
            .await;
            assert_eq!(s, 200, "{resp}");
            assert_eq!(
                floats(&resp["outputs"][0]["data"]),
                expected_click(&users, &items, &domains)
            );
            assert_eq!(floats(&resp["outputs"][1]["data"]), vec![0.01; n]);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let batches = f.record.batches.lock().unwrap().clone();
    assert_eq!(
        batches.iter().sum::<usize>(),
        (0..32).map(|i| 1 + i % 3).sum::<usize>()
    );
    assert!(
        batches.iter().any(|&b| b > 3),
        "no batch merged requests: {batches:?}"
    );
    shutdown(f.server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bad_row_fails_only_its_own_request_in_a_merged_batch() {
    let f = run_server(ServeConfig {
        max_delay_us: 300_000,
        max_batch_rows: 10_000,
        ..cfg()
    })
    .await;
    let mut tasks = Vec::new();
    for i in 0..16i64 {
        let addr = f.addr;
        tasks.push(tokio::spawn(async move {
            let users = if i == 5 { ["a", "bad"] } else { ["a", "b"] };
            let (s, resp) = post(
                addr,
                "/v2/models/m/infer",
                &infer_body(&users, &[i, i + 1], &["books"]),
            )
            .await;
            if i == 5 {
                assert_eq!(
                    (s, error_of(&resp)),
                    (400, "row 1, `user_id`: value `bad` is not allowed")
                );
            } else {
                assert_eq!(s, 200, "{resp}");
                assert_eq!(
                    floats(&resp["outputs"][0]["data"]),
                    expected_click(&users, &[i, i + 1], &["books"; 2])
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let batches = f.record.batches.lock().unwrap().clone();
    assert!(
        batches.iter().any(|&b| b > 2),
        "nothing merged: {batches:?}"
    );
    shutdown(f.server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hot_reload_under_load_then_a_corrupt_version_is_refused() {
    let f = repo_server(
        ServeConfig {
            poll_interval_ms: 50,
            workers: 2,
            ..cfg()
        },
        &[(1, "1")],
    )
    .await;
    let m = f.root.join("m");
    let (s, meta) = get(f.addr, "/v2/models/m").await;
    assert_eq!((s, &meta["parameters"]["version"]), (200, &json!("1")));
    let body = infer_body(&["u", "v"], &[1, 2], &["books", "movies"]);
    let load = tokio::spawn(loadgen(LoadgenConfig {
        addr: f.addr,
        model: "m".into(),
        concurrency: 4,
        requests: 1_000_000,
        max_seconds: 2.5,
        body: serde_json::to_vec(&body).unwrap(),
    }));
    tokio::time::sleep(Duration::from_millis(300)).await;
    write_version(&m, 2, "2");
    let start = Instant::now();
    loop {
        let (_, meta) = get(f.addr, "/v2/models/m").await;
        if meta["parameters"]["version"] == "2" {
            assert_eq!(meta["versions"], json!(["1", "2"]));
            break;
        }
        assert!(start.elapsed() < GUARD, "version 2 never got served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, resp) = post(f.addr, "/v2/models/m/infer", &body).await;
    assert_eq!((s, &resp["model_version"]), (200, &json!("2")));
    assert_eq!(floats(&resp["outputs"][1]["data"]), vec![0.02; 2]);
    let report = tokio::time::timeout(GUARD, load)
        .await
        .expect("loadgen hung")
        .unwrap()
        .unwrap();
    assert!(report.requests > 0);
    assert_eq!(report.errors, 0, "{report:?}");
    assert_eq!(report.rows_per_request, 2);

    // A corrupt version 3: refused once, not retried while unchanged, version 2 keeps serving.
    write_version(&m, 3, "corrupt");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let v3 = m.join("3");
    assert_eq!(f.record.loads.lock().unwrap().get(&v3), Some(&1));
    let (s, resp) = post(f.addr, "/v2/models/m/infer", &body).await;
    assert_eq!((s, &resp["model_version"]), (200, &json!("2")));
    let (s, r) = call(f.addr, "POST", "/v2/repository/models/m/load", b"").await;
    assert_eq!(s, 500);
    let msg = error_of(&r);
    assert!(
        msg.starts_with("model `m` version 3 failed to load from")
            && msg.ends_with("model.txt is corrupt; version 2 keeps serving"),
        "{msg}"
    );
    assert_eq!(f.record.loads.lock().unwrap().get(&v3), Some(&2));
    assert_eq!(get(f.addr, "/v2/health/ready").await.0, 200);
    let (_, meta) = get(f.addr, "/v2/models/m").await;
    assert_eq!(meta["parameters"]["version"], "2");
    // The previous version stays addressable.
    let (s, resp) = post(f.addr, "/v2/models/m/versions/1/infer", &body).await;
    assert_eq!((s, &resp["model_version"]), (200, &json!("1")));
    assert_eq!(floats(&resp["outputs"][1]["data"]), vec![0.01; 2]);
    let (_, metrics) = call(f.addr, "GET", "/metrics", b"").await;
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(
        metrics.contains("mdrec_load_failures_total{model=\"m\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mdrec_served_version{model=\"m\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mdrec_loaded_versions{model=\"m\"} 2"),
        "{metrics}"
    );
    shutdown(f.server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn load_endpoint_and_not_ready_models() {
    // The only version is corrupt: the server starts but is not ready.
    let f = repo_server(cfg(), &[(1, "corrupt")]).await;
    let body = infer_body(&["u"], &[1], &["books"]);
    let (s, r) = get(f.addr, "/v2/health/ready").await;
    assert_eq!((s, error_of(&r)), (503, "models not ready: `m`"));
    let (s, r) = get(f.addr, "/v2/models/m/ready").await;
    assert_eq!(
        (s, error_of(&r)),
        (503, "model `m` is not ready: no version is loaded")
    );
    assert_eq!(post(f.addr, "/v2/models/m/infer", &body).await.0, 503);
    // Polling is off: a new version is picked up by the load endpoint.
    write_version(&f.root.join("m"), 4, "4");
    let (s, r) = call(f.addr, "POST", "/v2/repository/models/m/load", b"").await;
    assert_eq!((s, r), (200, json!({"name": "m", "version": "4"})));
    assert_eq!(get(f.addr, "/v2/health/ready").await.0, 200);
    let (s, resp) = post(f.addr, "/v2/models/m/infer", &body).await;
    assert_eq!((s, &resp["model_version"]), (200, &json!("4")));
    // A new model folder can be loaded by name; an unknown one is 404.
    let n = f.root.join("n");
    std::fs::create_dir_all(&n).unwrap();
    write_version(&n, 1, "7");
    let (s, r) = call(f.addr, "POST", "/v2/repository/models/n/load", b"").await;
    assert_eq!((s, r), (200, json!({"name": "n", "version": "1"})));
    // A folder added after start that cannot load yet does not make the server not ready.
    let q = f.root.join("q");
    std::fs::create_dir_all(&q).unwrap();
    write_version(&q, 1, "corrupt");
    let (s, r) = call(f.addr, "POST", "/v2/repository/models/q/load", b"").await;
    assert_eq!(s, 500);
    assert!(
        error_of(&r).starts_with("model `q` version 1 failed to load"),
        "{r}"
    );
    assert_eq!(get(f.addr, "/v2/health/ready").await.0, 200);
    assert_eq!(get(f.addr, "/v2/models/q").await.0, 404);
    let (s, r) = call(f.addr, "POST", "/v2/repository/models/zz/load", b"").await;
    assert_eq!(s, 404);
    assert!(error_of(&r).starts_with("unknown model `zz`"), "{r}");
    shutdown(f.server).await;

    // Run directories cannot be reloaded.
    let f = run_server(cfg()).await;
    let (s, r) = call(f.addr, "POST", "/v2/repository/models/m/load", b"").await;
    assert_eq!(s, 400);
    assert!(error_of(&r).contains("needs a model repository"), "{r}");
    shutdown(f.server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_directory_that_fails_to_load_fails_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.txt"), "corrupt").unwrap();
    let loader = Arc::new(FakeLoader {
        record: Arc::default(),
    });
    let err = Server::start(
        cfg(),
        ModelSource::Runs(vec![("m".into(), dir.path().to_path_buf())]),
        loader,
    )
    .await
    .err()
    .expect("start must fail");
    assert!(
        err.starts_with("model `m`: cannot load run directory")
            && err.ends_with("model.txt is corrupt"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_count_requests() {
    let f = run_server(cfg()).await;
    let ok = infer_body(&["u", "v"], &[1, 2], &["books"]);
    assert_eq!(post(f.addr, "/v2/models/m/infer", &ok).await.0, 200);
    let bad = infer_body(&["bad"], &[1], &["books"]);
    assert_eq!(post(f.addr, "/v2/models/m/infer", &bad).await.0, 400);
    assert_eq!(post(f.addr, "/v2/models/zz/infer", &ok).await.0, 404);
    let (s, text) = get(f.addr, "/metrics").await;
    assert_eq!(s, 200);
    let text = text.as_str().unwrap();
    for line in [
        "mdrec_requests_total{model=\"m\",status=\"200\",version=\"1\"} 1",
        "mdrec_requests_total{model=\"m\",status=\"400\",version=\"1\"} 1",
        "mdrec_requests_total{model=\"_unknown\",status=\"404\",version=\"\"} 1",
        "mdrec_rows_scored_total{model=\"m\",version=\"1\"} 2",
        "mdrec_request_duration_seconds_count{model=\"m\"} 2",
        "mdrec_queue_seconds_count{model=\"m\"} 2",
        "mdrec_batch_rows_count{model=\"m\"} 2",
        "mdrec_loaded_versions{model=\"m\"} 1",
        "mdrec_served_version{model=\"m\"} 1",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
    shutdown(f.server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_past_its_deadline_is_504() {
    let f = run_server(ServeConfig {
        request_timeout_ms: 150,
        ..cfg()
    })
    .await;
    let (s, r) = post(
        f.addr,
        "/v2/models/m/infer",
        &infer_body(&["slow"], &[1], &["books"]),
    )
    .await;
    assert_eq!(
        (s, error_of(&r)),
        (
            504,
            "the request deadline of 150 ms passed before the batch was scored"
        )
    );
    shutdown(f.server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let f = run_server(cfg()).await;
    let addr = f.addr;
    let in_flight = tokio::spawn(async move {
        post(
            addr,
            "/v2/models/m/infer",
            &infer_body(&["slow"], &[1], &["books"]),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    shutdown(f.server).await;
    let (s, resp) = in_flight.await.unwrap();
    assert_eq!(s, 200, "{resp}");
    assert_eq!(floats(&resp["outputs"][1]["data"]), vec![0.01]);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}
