//! Prometheus metrics of one server, in the Prometheus text exposition format (0.0.4).
//!
//! Uses the `prometheus` crate (default features off, so no protobuf): its labelled `*Vec`
//! metrics and `TextEncoder` give exactly the classic text format with little code. Each
//! [`Server`](crate::Server) owns its own [`prometheus::Registry`] (not the process-global one),
//! so several servers in one process (tests) do not collide.

use prometheus::{
    exponential_buckets, Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The metric families a server records.
pub struct Metrics {
    registry: Registry,
    /// `mdrec_requests_total{model,version,status}`: infer requests by HTTP status.
    pub requests: IntCounterVec,
    /// `mdrec_request_duration_seconds{model}`: infer request time from arrival to response.
    pub request_duration: HistogramVec,
    /// `mdrec_queue_seconds{model}`: time a request waited in its version's queue.
    pub queue: HistogramVec,
    /// `mdrec_batch_rows{model}`: rows per `score` call.
    pub batch_rows: HistogramVec,
    /// `mdrec_rows_scored_total{model,version}`: rows answered successfully.
    pub rows_scored: IntCounterVec,
    /// `mdrec_loaded_versions{model}`: versions held in memory.
    pub loaded_versions: IntGaugeVec,
    /// `mdrec_served_version{model}`: the version unversioned requests go to (0: none).
    pub served_version: IntGaugeVec,
    /// `mdrec_load_failures_total{model}`: version directories that failed to load.
    pub load_failures: IntCounterVec,
}

fn histogram(name: &str, help: &str, buckets: Vec<f64>, labels: &[&str]) -> HistogramVec {
    HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .unwrap_or_else(|e| panic!("static metric definition `{name}` is invalid: {e}"))
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("static metric definition `{name}` is invalid: {e}"))
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("static metric definition `{name}` is invalid: {e}"))
}

fn seconds_buckets() -> Vec<f64> {
    // 50 us .. ~1.6 s.
    exponential_buckets(0.00005, 2.0, 16).unwrap_or_default()
}

impl Metrics {
    /// Creates the metric families in a fresh registry.
    pub fn new() -> Metrics {
        let m = Metrics {
            registry: Registry::new(),
            requests: counter(
                "mdrec_requests_total",
                "Infer requests by model, version and HTTP status.",
                &["model", "version", "status"],
            ),
            request_duration: histogram(
                "mdrec_request_duration_seconds",
                "Infer request time from arrival to response.",
                seconds_buckets(),
                &["model"],
            ),
            queue: histogram(
                "mdrec_queue_seconds",
                "Time an infer request waited in its version's queue before scoring.",
                seconds_buckets(),
                &["model"],
            ),
            batch_rows: histogram(
                "mdrec_batch_rows",
                "Rows per score call (merged batches).",
                exponential_buckets(1.0, 2.0, 14).unwrap_or_default(),
                &["model"],
            ),
            rows_scored: counter(
                "mdrec_rows_scored_total",
                "Rows scored and answered.",
                &["model", "version"],
            ),
            loaded_versions: gauge(
                "mdrec_loaded_versions",
                "Model versions held in memory.",
                &["model"],
            ),
            served_version: gauge(
                "mdrec_served_version",
                "Version that unversioned requests go to (0 when none is loaded).",
                &["model"],
            ),
            load_failures: counter(
                "mdrec_load_failures_total",
                "Version directories that failed to load.",
                &["model"],
            ),
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.requests.clone()),
            Box::new(m.request_duration.clone()),
            Box::new(m.queue.clone()),
            Box::new(m.batch_rows.clone()),
            Box::new(m.rows_scored.clone()),
            Box::new(m.loaded_versions.clone()),
            Box::new(m.served_version.clone()),
            Box::new(m.load_failures.clone()),
        ];
        for c in collectors {
            // Names are distinct and the registry is fresh, so this cannot fail.
            let _ = m.registry.register(c);
        }
        m
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = Metrics::new();
        m.requests.with_label_values(&["m", "1", "200"]).inc();
        m.batch_rows.with_label_values(&["m"]).observe(3.0);
        let text = m.render();
        assert!(text.contains("mdrec_requests_total{model=\"m\",status=\"200\",version=\"1\"} 1"));
        assert!(text.contains("mdrec_batch_rows_count{model=\"m\"} 1"));
    }
}
