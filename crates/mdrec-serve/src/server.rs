//! The HTTP front: Open Inference Protocol (KServe v2) routes over axum, the [`Server`] handle
//! (start, bound address, graceful shutdown, signals) and the repository poller.
//!
//! Every handler answers JSON (`{"error": "..."}` on failure) and never panics on client
//! input. An infer request is parsed and validated on the async runtime (cheap), queued on the
//! addressed version's [`Batcher`](crate::batcher::Batcher) and awaited with the per-request
//! deadline; the scoring itself happens on the batcher's threads.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{json, Value};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::api::{Loader, ModelSource, ServeConfig};
use crate::batcher::{BatchLimits, Job, JobError};
use crate::metrics::Metrics;
use crate::registry::{Model, Registry, Version};
use crate::request::{parse_infer, write_response};

struct AppState {
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    cfg: ServeConfig,
    shutting_down: AtomicBool,
}

type St = State<Arc<AppState>>;

/// A running server: bound address, graceful shutdown handle.
pub struct Server {
    addr: SocketAddr,
    state: Arc<AppState>,
    stop: watch::Sender<bool>,
    serve_task: JoinHandle<std::io::Result<()>>,
    poll_task: Option<JoinHandle<()>>,
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn reply(status: StatusCode, v: Value) -> Response {
    json_response(status, serde_json::to_vec(&v).unwrap_or_default())
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    reply(status, json!({ "error": msg.into() }))
}

fn list(names: impl IntoIterator<Item = String>) -> String {
    let v: Vec<String> = names.into_iter().map(|n| format!("`{n}`")).collect();
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

/// A failed lookup: the response and the labels to count it under.
struct Miss {
    status: StatusCode,
    msg: String,
    model_label: String,
}

impl Miss {
    fn resp(&self) -> Response {
        error(self.status, self.msg.clone())
    }
}

impl AppState {
    fn find_model(&self, name: &str) -> Result<Arc<Model>, Miss> {
        self.registry.model(name).ok_or_else(|| Miss {
            status: StatusCode::NOT_FOUND,
            msg: format!(
                "unknown model `{name}`; known models: {}",
                list(self.registry.names())
            ),
            model_label: "_unknown".to_string(),
        })
    }

    /// The addressed version: `version` when given (must be loaded), else the served one.
    fn find_version(&self, name: &str, version: Option<&str>) -> Result<Arc<Version>, Miss> {
        let model = self.find_model(name)?;
        let state = model.state.load();
        let miss = |status, msg: String| Miss {
            status,
            msg,
            model_label: name.to_string(),
        };
        match version {
            None => state.served.clone().ok_or_else(|| {
                miss(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("model `{name}` is not ready: no version is loaded"),
                )
            }),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .and_then(|n| state.loaded.get(&n).cloned())
                .ok_or_else(|| {
                    miss(
                        StatusCode::NOT_FOUND,
                        format!(
                            "model `{name}` has no version `{v}`; loaded versions: {}",
                            list(state.loaded.keys().map(u64::to_string))
                        ),
                    )
                }),
        }
    }
}

async fn live() -> Response {
    reply(StatusCode::OK, json!({ "live": true }))
}

async fn server_meta() -> Response {
    reply(
        StatusCode::OK,
        json!({ "name": "mdrec-serve", "version": env!("CARGO_PKG_VERSION"), "extensions": [] }),
    )
}

async fn ready(State(st): St) -> Response {
    if st.shutting_down.load(Ordering::SeqCst) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        );
    }
    let models = st.registry.models();
    let not_ready: Vec<String> = models
        .iter()
        .filter(|m| m.state.load().served.is_none())
        .map(|m| m.name.clone())
        .collect();
    if models.is_empty() {
        error(StatusCode::SERVICE_UNAVAILABLE, "no models are configured")
    } else if !not_ready.is_empty() {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("models not ready: {}", list(not_ready)),
        )
    } else {
        reply(StatusCode::OK, json!({ "ready": true }))
    }
}

fn metadata(st: &AppState, name: &str, version: Option<&str>) -> Response {
    let v = match st.find_version(name, version) {
        Ok(v) => v,
        Err(m) => return m.resp(),
    };
    let versions: Vec<String> = st
        .registry
        .model(name)
        .map(|m| m.state.load().loaded.keys().map(u64::to_string).collect())
        .unwrap_or_default();
    let meta = v.meta();
    reply(
        StatusCode::OK,
        json!({
            "name": name,
            "versions": versions,
            "platform": meta.platform,
            "inputs": meta.inputs.iter().map(|i| json!({
                "name": i.name, "datatype": i.datatype.as_str(), "shape": [-1],
                "parameters": { "optional": i.optional },
            })).collect::<Vec<_>>(),
            "outputs": meta.outputs.iter().map(|o| json!({
                "name": o, "datatype": "FP32", "shape": [-1],
            })).collect::<Vec<_>>(),
            "parameters": { "domains": meta.domains, "version": v.number.to_string() },
        }),
    )
}

async fn model_meta(State(st): St, Path(name): Path<String>) -> Response {
    metadata(&st, &name, None)
}

async fn version_meta(State(st): St, Path((name, v)): Path<(String, String)>) -> Response {
    metadata(&st, &name, Some(&v))
}

fn model_ready(st: &AppState, name: &str, version: Option<&str>) -> Response {
    match st.find_version(name, version) {
        Ok(v) => reply(
            StatusCode::OK,
            json!({ "name": name, "version": v.number.to_string(), "ready": true }),
        ),
        Err(m) => m.resp(),
    }
}

async fn model_ready_h(State(st): St, Path(name): Path<String>) -> Response {
    model_ready(&st, &name, None)
}

async fn version_ready_h(State(st): St, Path((name, v)): Path<(String, String)>) -> Response {
    model_ready(&st, &name, Some(&v))
}

async fn infer_h(
    State(st): St,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    infer(&st, &name, None, &headers, body).await
}

async fn version_infer_h(
    State(st): St,
    Path((name, v)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    infer(&st, &name, Some(&v), &headers, body).await
}

async fn infer(
    st: &AppState,
    name: &str,
    version: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let start = Instant::now();
    let (resp, model_label, version_label) =
        infer_inner(st, name, version, headers, body, start).await;
    st.metrics
        .requests
        .with_label_values(&[&model_label, &version_label, resp.status().as_str()])
        .inc();
    st.metrics
        .request_duration
        .with_label_values(&[&model_label])
        .observe(start.elapsed().as_secs_f64());
    resp
}

async fn infer_inner(
    st: &AppState,
    name: &str,
    version: Option<&str>,
    headers: &HeaderMap,
    body: Body,
    start: Instant,
) -> (Response, String, String) {
    let deadline = start + Duration::from_millis(st.cfg.request_timeout_ms);
    if st.shutting_down.load(Ordering::SeqCst) {
        return (
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is shutting down",
            ),
            name.to_string(),
            String::new(),
        );
    }
    let ver = match st.find_version(name, version) {
        Ok(v) => v,
        Err(m) => return (m.resp(), m.model_label, String::new()),
    };
    let labels = |r: Response| (r, name.to_string(), ver.number.to_string());
    let limit = st.cfg.max_body_bytes;
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return labels(too_large());
    }
    let read = tokio::time::timeout_at(deadline.into(), Limited::new(body, limit).collect());
    let bytes = match read.await {
        Err(_) => {
            return labels(error(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within the deadline of {} ms",
                    st.cfg.request_timeout_ms
                ),
            ))
        }
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => return labels(too_large()),
        Ok(Err(e)) => {
            return labels(error(
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {e}"),
            ))
        }
    };
    let mut req = match parse_infer(&bytes, ver.meta()) {
        Ok(r) => r,
        Err(e) => return labels(error(StatusCode::BAD_REQUEST, e.0)),
    };
    let n_rows = req.batch.n_rows;
    let (tx, rx) = oneshot::channel();
    let job = Job {
        batch: std::mem::take(&mut req.batch),
        enqueued: Instant::now(),
        deadline,
        reply: tx,
    };
    if ver.batcher.submit(job).is_err() {
        return labels(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the model version's scoring threads have stopped",
        ));
    }
    let timeout = || {
        error(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "the request deadline of {} ms passed before the batch was scored",
                st.cfg.request_timeout_ms
            ),
        )
    };
    let result = match tokio::time::timeout_at(deadline.into(), rx).await {
        Err(_) => return labels(timeout()),
        Ok(Err(_)) => {
            return labels(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the model version's scoring threads stopped before answering",
            ))
        }
        Ok(Ok(r)) => r,
    };
    match result {
        Ok(scores) => {
            req.batch.n_rows = n_rows;
            let body = write_response(name, ver.number, ver.meta(), &req, &scores);
            labels(json_response(StatusCode::OK, body))
        }
        Err(JobError::Client(m)) => labels(error(StatusCode::BAD_REQUEST, m)),
        Err(JobError::Internal(m)) => labels(error(StatusCode::INTERNAL_SERVER_ERROR, m)),
        Err(JobError::Timeout) => labels(timeout()),
    }
}

async fn load_h(State(st): St, Path(name): Path<String>) -> Response {
    if st.registry.repo.is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "models are served from run directories; the load endpoint needs a model repository",
        );
    }
    let reg = st.registry.clone();
    let result = tokio::task::spawn_blocking(move || {
        let Some(model) = reg.repository_model(&name) else {
            return Err((
                StatusCode::NOT_FOUND,
                format!(
                    "unknown model `{name}`: no such folder in the repository; known models: {}",
                    list(reg.names())
                ),
            ));
        };
        reg.rescan_and_promote(&model, true)
            .map(|v| (name, v))
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e))
    })
    .await;
    match result {
        Ok(Ok((name, v))) => reply(
            StatusCode::OK,
            json!({ "name": name, "version": v.to_string() }),
        ),
        Ok(Err((status, msg))) => error(status, msg),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the load task failed: {e}"),
        ),
    }
}

async fn metrics_h(State(st): St) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(),
    )
        .into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint")
}

async fn not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this endpoint",
    )
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v2", get(server_meta))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{name}", get(model_meta))
        .route("/v2/models/{name}/ready", get(model_ready_h))
        .route("/v2/models/{name}/infer", post(infer_h))
        .route("/v2/models/{name}/versions/{version}", get(version_meta))
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(version_ready_h),
        )
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(version_infer_h),
        )
        .route("/v2/repository/models/{name}/load", post(load_h))
        .route("/metrics", get(metrics_h))
        .fallback(not_found)
        .method_not_allowed_fallback(not_allowed)
        .with_state(state)
}

impl Server {
    /// Binds `cfg.addr` (port 0 allowed), loads the models, starts serving and the repository
    /// poller, and returns once requests can be answered.
    ///
    /// `Runs`: every run directory must load (else `Err`). `Repository`: the folder must be
    /// readable; models whose versions all fail to load are logged and stay not ready (503)
    /// until a rescan loads one.
    pub async fn start(
        cfg: ServeConfig,
        source: ModelSource,
        loader: Arc<dyn Loader>,
    ) -> Result<Server, String> {
        let listener = tokio::net::TcpListener::bind(cfg.addr)
            .await
            .map_err(|e| format!("cannot bind {}: {e}", cfg.addr))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("cannot read the bound address: {e}"))?;
        let metrics = Arc::new(Metrics::new());
        let limits = BatchLimits {
            max_rows: cfg.max_batch_rows.max(1),
            max_delay: Duration::from_micros(cfg.max_delay_us),
            workers: cfg.workers.max(1),
        };
        let repo = match &source {
            ModelSource::Repository(dir) => Some(dir.clone()),
            ModelSource::Runs(_) => None,
        };
        let registry = Arc::new(Registry::new(repo, loader, limits, metrics.clone()));
        let reg = registry.clone();
        tokio::task::spawn_blocking(move || match source {
            ModelSource::Runs(runs) => {
                for (name, dir) in runs {
                    reg.add_run(&name, &dir)?;
                }
                Ok(())
            }
            ModelSource::Repository(_) => reg.scan_repository(true),
        })
        .await
        .map_err(|e| format!("model loading failed: {e}"))??;

        let state = Arc::new(AppState {
            registry: registry.clone(),
            metrics,
            cfg: cfg.clone(),
            shutting_down: AtomicBool::new(false),
        });
        let (stop, stop_rx) = watch::channel(false);
        let mut rx = stop_rx.clone();
        let serve =
            axum::serve(listener, router(state.clone())).with_graceful_shutdown(async move {
                let _ = rx.wait_for(|s| *s).await;
            });
        let serve_task = tokio::spawn(async move { serve.await });
        let poll_task = (registry.repo.is_some() && cfg.poll_interval_ms > 0).then(|| {
            let mut rx = stop_rx;
            let every = Duration::from_millis(cfg.poll_interval_ms);
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = rx.wait_for(|s| *s) => return,
                        _ = tokio::time::sleep(every) => {}
                    }
                    let reg = registry.clone();
                    let _ = tokio::task::spawn_blocking(move || reg.scan_repository(false)).await;
                }
            })
        });
        Ok(Server {
            addr,
            state,
            stop,
            serve_task,
            poll_task,
        })
    }

    /// The bound address (the real port when `cfg.addr` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections, answers requests already received (new requests on open
    /// connections get 503), waits for them, stops the poller and returns. Scoring threads exit
    /// once their queues are empty.
    pub async fn shutdown(self) {
        self.state.shutting_down.store(true, Ordering::SeqCst);
        let _ = self.stop.send(true);
        if let Err(e) = self
            .serve_task
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            eprintln!("mdrec-serve: server stopped with an error: {e}");
        }
        if let Some(p) = self.poll_task {
            let _ = p.await;
        }
    }

    /// Runs until SIGTERM or ctrl-c, then shuts down gracefully.
    pub async fn wait_for_signal(self) {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            _ = term => {}
        }
        eprintln!("mdrec-serve: shutting down");
        self.shutdown().await;
    }
}
