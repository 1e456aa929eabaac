//! Prometheus metrics of the worker: rows, bytes, errors, batches, commit latency and lag per job
//! and partition; Stream Loads, their rows, bytes and latency per table and outcome.

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
    /// Stream Loads answered, by table and outcome ([`StreamLoadOutcome`]).
    pub stream_loads: IntCounterVec,
    /// Rows of Stream Loads by table and kind (loaded: committed; filtered, unselected).
    pub stream_load_rows: IntCounterVec,
    /// Body bytes of Stream Loads read, by table.
    pub stream_load_bytes: IntCounterVec,
    /// Time from a Stream Load's request to its answer, by table and outcome, in seconds.
    pub stream_load_seconds: HistogramVec,
}

/// How a Stream Load ended, as the `status` label of the Stream Load metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamLoadOutcome {
    /// Committed (`Status: Success`).
    Success,
    /// Read but not committed (`Status: Fail`: too many filtered rows, a timeout, a failure).
    Fail,
    /// The label was taken (`Status: Label Already Exists`).
    LabelAlreadyExists,
    /// Refused before the label was taken: no or a bad token, bad headers, a body too large.
    Refused,
}

impl StreamLoadOutcome {
    /// The outcome of an answer: its HTTP code and its `Status`.
    pub fn of(http_code: u16, status: &str) -> Self {
        match (http_code, status) {
            (200, "Success") => Self::Success,
            (200, "Label Already Exists") => Self::LabelAlreadyExists,
            (200, _) => Self::Fail,
            _ => Self::Refused,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Fail => "fail",
            Self::LabelAlreadyExists => "label_already_exists",
            Self::Refused => "refused",
        }
    }
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
        let stream_loads = IntCounterVec::new(
            Opts::new(
                "routine_load_worker_stream_loads_total",
                "Stream Loads answered, by outcome (success, fail, label_already_exists, refused)",
            ),
            &["namespace", "table", "status"],
        )
        .expect("metric");
        let stream_load_rows = IntCounterVec::new(
            Opts::new(
                "routine_load_worker_stream_load_rows_total",
                "Rows of Stream Loads, by kind (loaded: committed; filtered; unselected)",
            ),
            &["namespace", "table", "kind"],
        )
        .expect("metric");
        let stream_load_bytes = IntCounterVec::new(
            Opts::new(
                "routine_load_worker_stream_load_bytes_total",
                "Body bytes of Stream Loads read",
            ),
            &["namespace", "table"],
        )
        .expect("metric");
        let stream_load_seconds = HistogramVec::new(
            HistogramOpts::new(
                "routine_load_worker_stream_load_seconds",
                "Time from a Stream Load's request to its answer",
            )
            .buckets(vec![
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
            &["namespace", "table", "status"],
        )
        .expect("metric");
        for c in [
            &rows,
            &bytes,
            &batches,
            &memory_limited_batches,
            &stream_loads,
            &stream_load_rows,
            &stream_load_bytes,
        ] {
            registry.register(Box::new(c.clone())).expect("register");
        }
        for h in [&commit_seconds, &stream_load_seconds] {
            registry.register(Box::new(h.clone())).expect("register");
        }
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
            stream_loads,
            stream_load_rows,
            stream_load_bytes,
            stream_load_seconds,
        }
    }

    /// Counts one answered Stream Load: its outcome, latency, body bytes and rows (loaded rows
    /// only when it committed).
    pub fn count_stream_load(
        &self,
        namespace: &str,
        table: &str,
        outcome: StreamLoadOutcome,
        seconds: f64,
        rows: StreamLoadRows,
    ) {
        let status = outcome.as_str();
        self.stream_loads
            .with_label_values(&[namespace, table, status])
            .inc();
        self.stream_load_seconds
            .with_label_values(&[namespace, table, status])
            .observe(seconds);
        self.stream_load_bytes
            .with_label_values(&[namespace, table])
            .inc_by(rows.bytes);
        let loaded = if outcome == StreamLoadOutcome::Success {
            rows.loaded
        } else {
            0
        };
        for (kind, n) in [
            ("loaded", loaded),
            ("filtered", rows.filtered),
            ("unselected", rows.unselected),
        ] {
            self.stream_load_rows
                .with_label_values(&[namespace, table, kind])
                .inc_by(n);
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

/// What one Stream Load read, for [`Metrics::count_stream_load`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamLoadRows {
    pub bytes: u64,
    pub loaded: u64,
    pub filtered: u64,
    pub unselected: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_load_outcomes_come_from_the_code_and_status() {
        use StreamLoadOutcome::*;
        // (HTTP code, Status, outcome)
        let cases = [
            (200, "Success", Success),
            (200, "Fail", Fail),
            (200, "Label Already Exists", LabelAlreadyExists),
            (401, "Fail", Refused),
            (403, "Fail", Refused),
            (400, "Fail", Refused),
            (413, "Fail", Refused),
            (503, "Fail", Refused),
        ];
        for (code, status, want) in cases {
            assert_eq!(StreamLoadOutcome::of(code, status), want, "{code} {status}");
        }
    }

    #[test]
    fn a_stream_load_counts_loaded_rows_only_when_it_committed() {
        let m = Metrics::new();
        let rows = StreamLoadRows {
            bytes: 100,
            loaded: 8,
            filtered: 2,
            unselected: 1,
        };
        m.count_stream_load("ns", "t", StreamLoadOutcome::Fail, 0.2, rows);
        m.count_stream_load("ns", "t", StreamLoadOutcome::Success, 0.3, rows);
        let text = m.render();
        for line in [
            r#"routine_load_worker_stream_loads_total{namespace="ns",status="fail",table="t"} 1"#,
            r#"routine_load_worker_stream_loads_total{namespace="ns",status="success",table="t"} 1"#,
            r#"routine_load_worker_stream_load_rows_total{kind="loaded",namespace="ns",table="t"} 8"#,
            r#"routine_load_worker_stream_load_rows_total{kind="filtered",namespace="ns",table="t"} 4"#,
            r#"routine_load_worker_stream_load_bytes_total{namespace="ns",table="t"} 200"#,
            r#"routine_load_worker_stream_load_seconds_count{namespace="ns",status="success",table="t"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing in:\n{text}");
        }
    }
}
