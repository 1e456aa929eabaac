//! Prometheus metrics of the worker: rows, bytes, errors, batches, commit latency and lag per job
//! and partition.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The worker's metrics, registered in their own registry.
pub struct Metrics {
    registry: Registry,
    /// Rows by job and kind (total, loaded, error, unselected).
    pub rows: IntCounterVec,
    /// Payload bytes received by job.
    pub bytes: IntCounterVec,
    /// Batches by job and result (committed, aborted).
    pub batches: IntCounterVec,
    /// Delta commit latency by job, in seconds.
    pub commit_seconds: HistogramVec,
    /// High watermark minus committed offset, by job and partition.
    pub lag: IntGaugeVec,
    /// Tasks running on this worker.
    pub tasks: IntGaugeVec,
    /// Batches that ended early because the worker reached its load memory limit, by job.
    pub memory_limited_batches: IntCounterVec,
    /// Load memory reserved by the batches being collected, and the worker's limit.
    pub load_memory: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let rows = IntCounterVec::new(
            Opts::new("routine_load_worker_rows_total", "Rows processed, by kind"),
            &["namespace", "job", "kind"],
        )
        .expect("metric");
        let bytes = IntCounterVec::new(
            Opts::new(
                "routine_load_worker_received_bytes_total",
                "Kafka payload bytes received",
            ),
            &["namespace", "job"],
        )
        .expect("metric");
        let batches = IntCounterVec::new(
            Opts::new("routine_load_worker_batches_total", "Batches, by result"),
            &["namespace", "job", "result"],
        )
        .expect("metric");
        let commit_seconds = HistogramVec::new(
            HistogramOpts::new(
                "routine_load_worker_commit_seconds",
                "Time to write and commit one batch to Delta",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["namespace", "job"],
        )
        .expect("metric");
        let lag = IntGaugeVec::new(
            Opts::new(
                "routine_load_worker_lag",
                "High watermark minus committed offset",
            ),
            &["namespace", "job", "partition"],
        )
        .expect("metric");
        let tasks = IntGaugeVec::new(
            Opts::new("routine_load_worker_tasks", "Task loops running"),
            &["namespace"],
        )
        .expect("metric");
        let load_memory = IntGaugeVec::new(
            Opts::new(
                "routine_load_worker_load_memory_bytes",
                "Load memory reserved by batches being collected (kind=used) and the limit (kind=limit)",
            ),
            &["kind"],
        )
        .expect("metric");
        let memory_limited_batches = IntCounterVec::new(
            Opts::new(
                "routine_load_worker_memory_limited_batches_total",
                "Batches committed early because the worker reached its load memory limit",
            ),
            &["namespace", "job"],
        )
        .expect("metric");
        for c in [&rows, &bytes, &batches, &memory_limited_batches] {
            registry.register(Box::new(c.clone())).expect("register");
        }
        registry
            .register(Box::new(commit_seconds.clone()))
            .expect("register");
        for g in [&lag, &tasks, &load_memory] {
            registry.register(Box::new(g.clone())).expect("register");
        }
        Self {
            registry,
            rows,
            bytes,
            batches,
            commit_seconds,
            lag,
            tasks,
            memory_limited_batches,
            load_memory,
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("encode metrics");
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
