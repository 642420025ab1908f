//! A closed-loop load generator for the infer endpoint: `concurrency` workers, each on its own
//! HTTP/1.1 keep-alive connection (a raw hyper client connection, no pool), send the same request
//! back to back until `requests` have been sent in total or `max_seconds` passed, and the report
//! gives throughput and nearest-rank latency percentiles.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{header, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

/// Load generator settings.
#[derive(Clone, Debug)]
pub struct LoadgenConfig {
    /// Server address.
    pub addr: SocketAddr,
    /// Model name; requests go to `/v2/models/{model}/infer`.
    pub model: String,
    /// Workers, one connection each.
    pub concurrency: usize,
    /// Requests to send in total (all workers together).
    pub requests: usize,
    /// Time limit; requests still unanswered at the limit are abandoned and not counted.
    pub max_seconds: f64,
    /// One JSON infer request, sent as is every time.
    pub body: Vec<u8>,
}

/// What a load generator run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadgenReport {
    /// Requests completed (answered with any status, or failed on the transport).
    pub requests: usize,
    /// Requests answered with a status other than 200, or failed on the transport.
    pub errors: usize,
    /// Wall time of the run.
    pub seconds: f64,
    /// Latency percentiles (nearest rank) and maximum over the answered requests, in ms.
    pub p50_ms: f64,
    /// 90th percentile latency, ms.
    pub p90_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Slowest answered request, ms.
    pub max_ms: f64,
    /// `requests / seconds`.
    pub requests_per_s: f64,
    /// Rows in the request body (the largest leading `shape` dimension of its inputs; 0 when the
    /// body is not an infer request).
    pub rows_per_request: usize,
    /// Rows of successful requests per second.
    pub rows_per_s: f64,
}

impl LoadgenReport {
    /// The markdown table header matching [`LoadgenReport::markdown_row`] (two lines).
    pub fn markdown_header() -> &'static str {
        "| run | requests | errors | seconds | req/s | rows/req | rows/s | p50 ms | p90 ms | p99 ms | max ms |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    }

    /// One markdown table row labelled `label`.
    pub fn markdown_row(&self, label: &str) -> String {
        format!(
            "| {label} | {} | {} | {:.2} | {:.1} | {} | {:.0} | {:.3} | {:.3} | {:.3} | {:.3} |",
            self.requests,
            self.errors,
            self.seconds,
            self.requests_per_s,
            self.rows_per_request,
            self.rows_per_s,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.max_ms
        )
    }
}

/// The nearest-rank `p`-th percentile of sorted `v` (0 when empty).
pub fn nearest_rank(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn rows_in(body: &[u8]) -> usize {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return 0;
    };
    v.get("inputs")
        .and_then(|i| i.as_array())
        .map(|inputs| {
            inputs
                .iter()
                .filter_map(|i| i.get("shape")?.get(0)?.as_u64())
                .max()
                .unwrap_or(0) as usize
        })
        .unwrap_or(0)
}

type Sender = SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Sender, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake with {addr} failed: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn send(
    sender: &mut Sender,
    host: &str,
    path: &str,
    body: &Bytes,
) -> Result<StatusCode, String> {
    sender.ready().await.map_err(|e| e.to_string())?;
    let req = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::HOST, host)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(body.clone()))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    // Read the whole body so the connection can be reused.
    resp.into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(status)
}

#[derive(Default)]
struct WorkerResult {
    done: usize,
    errors: usize,
    latencies_ms: Vec<f64>,
}

/// Runs the load generator; `Err` when the settings are unusable or the server cannot be reached
/// at the start.
pub async fn loadgen(cfg: LoadgenConfig) -> Result<LoadgenReport, String> {
    if cfg.concurrency == 0 {
        return Err("concurrency must be at least 1".to_string());
    }
    if !(cfg.max_seconds.is_finite() && cfg.max_seconds > 0.0) {
        return Err(format!(
            "max_seconds must be positive, got {}",
            cfg.max_seconds
        ));
    }
    // Fail early when nothing listens.
    drop(connect(cfg.addr).await?);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(cfg.max_seconds.min(1e9));
    let issued = Arc::new(AtomicUsize::new(0));
    let body = Bytes::from(cfg.body.clone());
    let path = Arc::new(format!("/v2/models/{}/infer", cfg.model));
    let host = Arc::new(cfg.addr.to_string());
    let mut tasks = Vec::with_capacity(cfg.concurrency);
    for _ in 0..cfg.concurrency {
        let (issued, body, path, host) = (issued.clone(), body.clone(), path.clone(), host.clone());
        let (addr, requests) = (cfg.addr, cfg.requests);
        tasks.push(tokio::spawn(async move {
            let mut r = WorkerResult::default();
            let mut sender: Option<Sender> = None;
            while Instant::now() < deadline && issued.fetch_add(1, Ordering::SeqCst) < requests {
                let t0 = Instant::now();
                let attempt = async {
                    let s = match sender.as_mut() {
                        Some(s) => s,
                        None => sender.insert(connect(addr).await?),
                    };
                    send(s, &host, &path, &body).await
                };
                match tokio::time::timeout_at(deadline.into(), attempt).await {
                    Err(_) => break, // abandoned at the time limit
                    Ok(Ok(status)) => {
                        r.done += 1;
                        r.latencies_ms.push(t0.elapsed().as_secs_f64() * 1e3);
                        if status != StatusCode::OK {
                            r.errors += 1;
                        }
                    }
                    Ok(Err(_)) => {
                        r.done += 1;
                        r.errors += 1;
                        sender = None;
                    }
                }
            }
            r
        }));
    }
    let mut all = WorkerResult::default();
    for t in tasks {
        let r = t
            .await
            .map_err(|e| format!("a load generator worker failed: {e}"))?;
        all.done += r.done;
        all.errors += r.errors;
        all.latencies_ms.extend(r.latencies_ms);
    }
    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    all.latencies_ms.sort_by(f64::total_cmp);
    let rows_per_request = rows_in(&cfg.body);
    Ok(LoadgenReport {
        requests: all.done,
        errors: all.errors,
        seconds,
        p50_ms: nearest_rank(&all.latencies_ms, 50.0),
        p90_ms: nearest_rank(&all.latencies_ms, 90.0),
        p99_ms: nearest_rank(&all.latencies_ms, 99.0),
        max_ms: all.latencies_ms.last().copied().unwrap_or(0.0),
        requests_per_s: all.done as f64 / seconds,
        rows_per_request,
        rows_per_s: ((all.done - all.errors) * rows_per_request) as f64 / seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(nearest_rank(&v, 50.0), 5.0);
        assert_eq!(nearest_rank(&v, 90.0), 9.0);
        assert_eq!(nearest_rank(&v, 99.0), 10.0);
        assert_eq!(nearest_rank(&v, 0.0), 1.0);
        assert_eq!(nearest_rank(&[], 50.0), 0.0);
    }

    #[test]
    fn rows_and_markdown() {
        let body = br#"{"inputs":[{"name":"a","shape":[1]},{"name":"b","shape":[7]}]}"#;
        assert_eq!(rows_in(body), 7);
        assert_eq!(rows_in(b"nope"), 0);
        let header_cols = LoadgenReport::markdown_header()
            .lines()
            .next()
            .unwrap()
            .matches('|')
            .count();
        let r = LoadgenReport {
            requests: 1,
            errors: 0,
            seconds: 1.0,
            p50_ms: 1.0,
            p90_ms: 1.0,
            p99_ms: 1.0,
            max_ms: 1.0,
            requests_per_s: 1.0,
            rows_per_request: 7,
            rows_per_s: 7.0,
        };
        assert_eq!(r.markdown_row("x").matches('|').count(), header_cols);
    }
}
