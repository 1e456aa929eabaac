//! One task loop: consume the task's Kafka partitions from the offsets committed in the table,
//! turn messages into rows with the load engine, and commit each batch as one Delta version that
//! also carries the new offsets. Reports through the task's status subresource.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use routine_load_api::job::{ERROR_WINDOW_FACTOR, KafkaOffset};
use routine_load_api::{LoadPlan, RoutineLoadJob, RoutineLoadTask, RoutineLoadTaskStatus, Table};
use tokio::sync::watch;

use crate::delta_sink::{DeltaSink, Offsets, SinkError};
use crate::engine::{LoadEngine, SourceMessage};
use crate::load_memory::{LoadMemory, message_cost};
use crate::metrics::Metrics;

/// Minimum time between two status patches after commits.
const STATUS_INTERVAL: Duration = Duration::from_secs(2);
/// Minimum time between two high-watermark queries.
const LAG_INTERVAL: Duration = Duration::from_secs(5);
/// Status heartbeat while idle.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);

/// What a task loop needs from the worker.
#[derive(Clone)]
pub struct WorkerContext {
    pub client: Client,
    pub pod_name: String,
    /// Directory of the per-task error logs.
    pub error_log_dir: PathBuf,
    /// Base of the error log URLs, e.g. `http://10.0.0.5:8040`.
    pub error_log_base_url: String,
    pub metrics: Arc<Metrics>,
    /// Override of the job's maxBatchInterval (tests).
    pub batch_interval_override: Option<Duration>,
    /// Override of the job's maxBatchRows (tests: many small batches).
    pub batch_rows_override: Option<usize>,
    /// The worker-wide load memory budget shared by every task's batch.
    pub load_memory: Arc<LoadMemory>,
}

/// Identifies one assignment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub namespace: String,
    pub name: String,
    pub epoch: i64,
}

/// Reads a Secret's keys as strings.
pub async fn secret_map(client: &Client, ns: &str, name: &str) -> Result<BTreeMap<String, String>> {
    let s = Api::<Secret>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .with_context(|| format!("reading Secret {ns}/{name}"))?;
    let mut out = BTreeMap::new();
    for (k, v) in s.data.unwrap_or_default() {
        out.insert(k, String::from_utf8_lossy(&v.0).into_owned());
    }
    for (k, v) in s.string_data.unwrap_or_default() {
        out.insert(k, v);
    }
    Ok(out)
}

/// The name of a task's error log file (under the error-log directory).
pub fn error_log_file(a: &Assignment) -> String {
    format!("error_log_{}_{}.log", a.namespace, a.name)
}

/// Keeps librdkafka's last specific error with its reason text (say, why SASL authentication
/// failed): the errors `recv()` returns carry only a code, and the generic "all broker connections
/// are down" that follows would hide the cause.
#[derive(Default)]
struct KafkaErrors {
    last: std::sync::Mutex<Option<String>>,
}

impl KafkaErrors {
    fn last(&self) -> Option<String> {
        self.last.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn clear(&self) {
        if let Ok(mut l) = self.last.lock() {
            *l = None;
        }
    }
}

impl ClientContext for KafkaErrors {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "Kafka client error");
        if error.rdkafka_error_code() != Some(RDKafkaErrorCode::AllBrokersDown)
            && let Ok(mut l) = self.last.lock()
        {
            *l = Some(reason.to_string());
        }
    }
}

impl ConsumerContext for KafkaErrors {}

/// The task status message for a Kafka error, with the last specific reason librdkafka gave.
fn kafka_message(e: &KafkaError, detail: Option<String>) -> String {
    match detail {
        Some(d) if !e.to_string().contains(&d) => format!("Kafka: {e}; last error: {d}"),
        _ => format!("Kafka: {e}"),
    }
}

/// Everything a task loop needs, read and opened before the first batch.
struct Prepared {
    job: RoutineLoadJob,
    engine: LoadEngine,
    sink: DeltaSink,
    consumer: StreamConsumer<KafkaErrors>,
    partitions: Vec<i32>,
}

/// Reads the job and table, plans the load, checks the Delta table and creates the consumer.
async fn prepare(ctx: &WorkerContext, a: &Assignment, task: &RoutineLoadTask) -> Result<Prepared> {
    let job = Api::<RoutineLoadJob>::namespaced(ctx.client.clone(), &a.namespace)
        .get(&task.spec.job)
        .await
        .with_context(|| format!("reading job {}", task.spec.job))?;
    let table = Api::<Table>::namespaced(ctx.client.clone(), &a.namespace)
        .get(&job.spec.table)
        .await
        .with_context(|| format!("reading table {}", job.spec.table))?;
    let plan = LoadPlan::build(&job.spec, &job.spec.table, &table.spec)
        .map_err(|e| anyhow!("planning the load: {e}"))?;
    let engine = LoadEngine::new(Arc::new(plan));

    let storage_secret = match &table.spec.credentials_secret {
        Some(s) => secret_map(&ctx.client, &a.namespace, &s.name).await?,
        None => BTreeMap::new(),
    };
    let storage_options =
        routine_load_api::delta_table::storage_options(&table.spec.location, &storage_secret);
    // Adopt the table (checking its schema still matches the Table), creating it if missing.
    routine_load_api::delta_table::create_or_adopt(
        &table.spec.location,
        &table.spec,
        storage_options.clone(),
    )
    .await
    .context("checking the Delta table")?;
    let partitions = task.spec.partitions.clone();
    let sink = DeltaSink::open(
        &table.spec.location,
        storage_options,
        &task.spec.job_uid,
        &partitions,
        a.epoch,
    )
    .await
    .context("opening the Delta table")?;

    let kafka = &job.spec.kafka;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &kafka.broker_list)
        .set("group.id", format!("routine-load-{}", task.spec.job_uid))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        // librdkafka's prefetch queue is memory outside the load budget: keep it modest
        // (default 64 MiB per consumer); a job's kafka.properties may raise it.
        .set("queued.max.messages.kbytes", "16384")
        // librdkafka pauses fetching for fetch.queue.backoff.ms (default 1 s) whenever its queue
        // is full; a task drains the queue in far less, and then sat idle (measured with
        // `make bench`: CSV end to end 181k -> 402k rows/s). A job's kafka.properties may
        // override it.
        .set("fetch.queue.backoff.ms", "10");
    for (k, v) in &kafka.properties {
        config.set(k, v);
    }
    if let Some(s) = &kafka.credentials_secret {
        for (k, v) in secret_map(&ctx.client, &a.namespace, &s.name).await? {
            config.set(k, v);
        }
    }
    let consumer: StreamConsumer<KafkaErrors> = config
        .create_with_context(KafkaErrors::default())
        .context("creating the Kafka consumer")?;
    Ok(Prepared {
        job,
        engine,
        sink,
        consumer,
        partitions,
    })
}

/// Runs the task until `stop` turns true, the task goes away or its epoch moves on.
pub async fn run_task(
    ctx: WorkerContext,
    a: Assignment,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let tasks: Api<RoutineLoadTask> = Api::namespaced(ctx.client.clone(), &a.namespace);
    let task = tasks.get(&a.name).await.context("reading the task")?;
    if task.spec.epoch != a.epoch {
        bail!("task epoch is {}, not {}", task.spec.epoch, a.epoch);
    }
    let Prepared {
        job,
        mut engine,
        mut sink,
        consumer,
        partitions,
    } = match prepare(&ctx, &a, &task).await {
        Ok(p) => p,
        Err(e) => {
            // Say why in the task's status: the operator and `kubectl describe` show it.
            let mut status = task.status.clone().unwrap_or_default();
            status.epoch = a.epoch;
            status.message = Some(format!("cannot start on {}: {e:#}", ctx.pod_name));
            let _ = patch_status(&tasks, &a.name, &status).await;
            return Err(e);
        }
    };
    let kafka = &job.spec.kafka;

    let ns = a.namespace.clone();
    let job_name = job.metadata.name.clone().unwrap_or_default();
    let interval = ctx.batch_interval_override.unwrap_or(Duration::from_secs(
        job.spec.max_batch_interval.max(1) as u64,
    ));
    let max_rows = ctx
        .batch_rows_override
        .unwrap_or(job.spec.max_batch_rows.max(1) as usize);
    let max_bytes = job.spec.max_batch_size.max(1) as usize;
    let window_size = (ERROR_WINDOW_FACTOR * job.spec.max_batch_rows).max(1) as u64;

    let log_name = error_log_file(&a);
    let log_path = ctx.error_log_dir.join(&log_name);
    let log_url = format!(
        "{}/api/_load_error_log?file={}",
        ctx.error_log_base_url.trim_end_matches('/'),
        log_name
    );

    // Counters continue from what the task reported before (cumulative per task).
    let mut status = task.status.clone().unwrap_or_default();
    status.epoch = a.epoch;
    status.message = Some(format!("running on {}", ctx.pod_name));
    let mut window_rows = 0u64;
    let mut window_errors = 0u64;
    let mut first_window_error: Option<String> = None;
    let mut last_status = Instant::now() - HEARTBEAT_INTERVAL;
    let mut dirty = true;
    let mut lag = LagTracker {
        topic: kafka.topic.clone(),
        partitions: partitions.clone(),
        namespace: ns.clone(),
        job: job_name.clone(),
        last: None,
        highs: BTreeMap::new(),
    };

    'resume: loop {
        if *stop.borrow() {
            break;
        }
        let resumed = match sink.refresh().await {
            Ok(o) => o,
            Err(e) => {
                status.message = Some(format!("reading committed offsets: {e}"));
                let _ = patch_status(&tasks, &a.name, &status).await;
                if sleep_or_stop(&mut stop, Duration::from_secs(5)).await {
                    break;
                }
                continue;
            }
        };
        let mut tpl = TopicPartitionList::new();
        for &p in &partitions {
            let off = match resumed.get(&p).copied().flatten() {
                Some(o) => Offset::Offset(o),
                None => initial_offset(&job.spec.kafka, p),
            };
            tpl.add_partition_offset(&kafka.topic, p, off)?;
        }
        consumer.assign(&tpl).context("assigning partitions")?;
        // Next offset expected per partition: a message below it (e.g. prefetched before a
        // re-assign) is never loaded again.
        let mut position: BTreeMap<i32, i64> = resumed
            .iter()
            .filter_map(|(p, o)| o.map(|o| (*p, o)))
            .collect();
        // What the table holds is the truth; forget anything else a status said.
        for (p, o) in &resumed {
            match o {
                Some(o) => status.committed_offsets.insert(p.to_string(), *o),
                None => status.committed_offsets.remove(&p.to_string()),
            };
        }

        loop {
            // Collect one batch.
            let started = Instant::now();
            let deadline = tokio::time::Instant::now() + interval;
            // Messages stay in librdkafka's buffers until the batch is committed (no copy).
            let mut msgs: Vec<BorrowedMessage<'_>> = Vec::new();
            let mut bytes = 0usize;
            let mut stopped = false;
            // Held until the batch is committed or dropped.
            let mut reservation = ctx.load_memory.reservation();
            let mut memory_full = false;
            // One timer per batch (not one per message).
            let batch_timer = tokio::time::sleep_until(deadline);
            tokio::pin!(batch_timer);
            while msgs.len() < max_rows && bytes < max_bytes && !memory_full {
                tokio::select! {
                    biased;
                    _ = stop.changed() => { stopped = true; break; }
                    _ = &mut batch_timer => break,
                    r = consumer.recv() => match r {
                        Ok(m) => {
                            if position.get(&m.partition()).is_some_and(|next| m.offset() < *next) {
                                continue;
                            }
                            position.insert(m.partition(), m.offset() + 1);
                            consumer.context().clear();
                            let len = m.payload_len();
                            bytes += len;
                            // Past the worker's load memory limit: commit what we have.
                            memory_full = !reservation.grow(message_cost(len));
                            msgs.push(m);
                        }
                        Err(e) => {
                            tracing::warn!(task = %a.name, error = %e, "Kafka error");
                            status.message = Some(kafka_message(&e, consumer.context().last()));
                            dirty = true;
                            break;
                        }
                    },
                }
            }
            ctx.metrics
                .load_memory
                .with_label_values(&["used"])
                .set(ctx.load_memory.used() as i64);
            if memory_full {
                ctx.metrics
                    .memory_limited_batches
                    .with_label_values(&[&ns, &job_name])
                    .inc();
            }
            if stopped || *stop.borrow() {
                // Abandon the batch in flight: nothing was committed, the next owner resumes
                // from the table's offsets.
                break 'resume;
            }
            lag.update(&consumer, &mut status, &ctx.metrics);
            if msgs.is_empty() {
                if (dirty || last_status.elapsed() >= HEARTBEAT_INTERVAL)
                    && patch_status(&tasks, &a.name, &status).await.is_ok()
                {
                    dirty = false;
                    last_status = Instant::now();
                }
                continue;
            }

            let source: Vec<SourceMessage<'_>> = msgs
                .iter()
                .map(|m| SourceMessage {
                    partition: m.partition(),
                    offset: m.offset(),
                    payload: m.payload().unwrap_or(&[]),
                })
                .collect();
            let loaded = match engine.load(&source) {
                Ok(l) => l,
                Err(e) => {
                    status.counters.aborted_batches += 1;
                    status.message = Some(format!("batch aborted: {e}"));
                    let _ = patch_status(&tasks, &a.name, &status).await;
                    continue 'resume;
                }
            };
            let mut next: BTreeMap<i32, i64> = BTreeMap::new();
            for m in &source {
                let e = next.entry(m.partition).or_insert(m.offset + 1);
                *e = (*e).max(m.offset + 1);
            }
            let c = &loaded.counters;

            // Error window (StarRocks: maxErrorNumber per 10 x maxBatchRows rows).
            if window_rows >= window_size {
                window_rows = 0;
                window_errors = 0;
                first_window_error = None;
            }
            window_rows += c.total_rows;
            window_errors += c.error_rows;
            if first_window_error.is_none() {
                first_window_error = loaded.errors.first().map(|e| e.to_string());
            }
            let ratio_exceeded = c.total_rows > 0
                && job.spec.max_filter_ratio < 1.0
                && (window_errors as f64 / window_rows as f64) > job.spec.max_filter_ratio;
            if !loaded.errors.is_empty() {
                if let Err(e) = append_error_log(&log_path, &loaded.errors) {
                    tracing::warn!(error = %e, "writing the error log");
                }
                status.error_log_url = Some(log_url.clone());
            }
            let count_exceeded = window_errors > job.spec.max_error_number as u64;
            if count_exceeded || ratio_exceeded {
                let why = if count_exceeded {
                    format!(
                        "current error rows: {window_errors} is more than max error num: {}",
                        job.spec.max_error_number
                    )
                } else {
                    format!(
                        "error ratio {:.4} ({window_errors} of {window_rows} rows) is more than max filter ratio: {}",
                        window_errors as f64 / window_rows as f64,
                        job.spec.max_filter_ratio
                    )
                };
                let reason = format!(
                    "{why} in the last {window_rows} rows; first error: {}. See {log_url}",
                    first_window_error.clone().unwrap_or_default()
                );
                status.counters.aborted_batches += 1;
                status.error_window_exceeded = Some(reason.clone());
                status.message = Some(reason);
                ctx.metrics
                    .batches
                    .with_label_values(&[&ns, &job_name, "aborted"])
                    .inc();
                let _ = patch_status(&tasks, &a.name, &status).await;
                // Nothing more is loaded until the operator pauses the job (and removes the task).
                let _ = stop.wait_for(|s| *s).await;
                break 'resume;
            }

            let t0 = Instant::now();
            let batch = (loaded.batch.num_rows() > 0).then(|| loaded.batch.clone());
            match sink
                .commit(batch, &resumed_subset(&status, &next, &resumed), &next)
                .await
            {
                Ok(done) => {
                    let secs = t0.elapsed().as_secs_f64();
                    ctx.metrics
                        .commit_seconds
                        .with_label_values(&[&ns, &job_name])
                        .observe(secs);
                    ctx.metrics
                        .batches
                        .with_label_values(&[&ns, &job_name, "committed"])
                        .inc();
                    for (kind, n) in [
                        ("total", c.total_rows),
                        ("loaded", c.loaded_rows),
                        ("error", c.error_rows),
                        ("unselected", c.unselected_rows),
                    ] {
                        ctx.metrics
                            .rows
                            .with_label_values(&[&ns, &job_name, kind])
                            .inc_by(n);
                    }
                    ctx.metrics
                        .bytes
                        .with_label_values(&[&ns, &job_name])
                        .inc_by(c.received_bytes);
                    status.counters.received_bytes += c.received_bytes as i64;
                    status.counters.total_rows += c.total_rows as i64;
                    status.counters.loaded_rows += c.loaded_rows as i64;
                    status.counters.error_rows += c.error_rows as i64;
                    status.counters.unselected_rows += c.unselected_rows as i64;
                    status.counters.committed_batches += 1;
                    status.counters.execute_time_ms += started.elapsed().as_millis() as i64;
                    status.last_commit_version = Some(done.version);
                    status.last_commit_time = Some(Time(now()));
                    for (p, o) in &next {
                        status.committed_offsets.insert(p.to_string(), *o);
                    }
                    status.message = None;
                    lag.update(&consumer, &mut status, &ctx.metrics);
                    dirty = true;
                    if last_status.elapsed() >= STATUS_INTERVAL
                        && patch_status(&tasks, &a.name, &status).await.is_ok()
                    {
                        dirty = false;
                        last_status = Instant::now();
                    }
                }
                Err(e) => {
                    tracing::warn!(task = %a.name, error = %e, "batch not committed");
                    ctx.metrics
                        .batches
                        .with_label_values(&[&ns, &job_name, "aborted"])
                        .inc();
                    status.counters.aborted_batches += 1;
                    status.message = Some(format!("batch not committed: {e}"));
                    let _ = patch_status(&tasks, &a.name, &status).await;
                    if matches!(e, SinkError::Conflict(_)) {
                        // Someone else owns the partitions now, or we raced: re-read offsets.
                        continue 'resume;
                    }
                    if sleep_or_stop(&mut stop, Duration::from_secs(2)).await {
                        break 'resume;
                    }
                    continue 'resume;
                }
            }
        }
    }
    let _ = patch_status(&tasks, &a.name, &status).await;
    Ok(())
}

/// The offsets each partition of this batch resumed from: the offsets committed (in the sink's
/// snapshot) when the batch started. Kept in `status.committed_offsets` after the first commit.
fn resumed_subset(
    status: &RoutineLoadTaskStatus,
    next: &BTreeMap<i32, i64>,
    resumed: &Offsets,
) -> Offsets {
    next.keys()
        .map(|p| {
            let v = status
                .committed_offsets
                .get(&p.to_string())
                .copied()
                .or_else(|| resumed.get(p).copied().flatten());
            (*p, v)
        })
        .collect()
}

fn initial_offset(kafka: &routine_load_api::job::KafkaSource, partition: i32) -> Offset {
    let configured = kafka
        .partitions
        .iter()
        .position(|p| *p == partition)
        .and_then(|i| kafka.offsets.get(i))
        .or(kafka.default_offset.as_ref());
    match configured {
        Some(KafkaOffset::Beginning) => Offset::Beginning,
        Some(KafkaOffset::At(n)) => Offset::Offset(*n),
        Some(KafkaOffset::End) | None => Offset::End,
    }
}

/// Partition lag: high watermarks are queried at most every `LAG_INTERVAL`; the lag is
/// recomputed from the last known watermark whenever the committed offsets move.
struct LagTracker {
    topic: String,
    partitions: Vec<i32>,
    /// Metric labels.
    namespace: String,
    job: String,
    last: Option<Instant>,
    highs: BTreeMap<i32, i64>,
}

impl LagTracker {
    fn update(
        &mut self,
        consumer: &StreamConsumer<KafkaErrors>,
        status: &mut RoutineLoadTaskStatus,
        metrics: &Metrics,
    ) {
        if self.last.is_none_or(|l| l.elapsed() >= LAG_INTERVAL) {
            self.last = Some(Instant::now());
            for &p in &self.partitions {
                let w = tokio::task::block_in_place(|| {
                    consumer.fetch_watermarks(&self.topic, p, Duration::from_millis(500))
                });
                if let Ok((_, high)) = w
                    && high >= 0
                {
                    self.highs.insert(p, high);
                }
            }
        }
        for (p, high) in &self.highs {
            let committed = status
                .committed_offsets
                .get(&p.to_string())
                .copied()
                .unwrap_or(0);
            let lag = (high - committed).max(0);
            status.lag.insert(p.to_string(), lag);
            metrics
                .lag
                .with_label_values(&[&self.namespace, &self.job, &p.to_string()])
                .set(lag);
        }
    }
}

fn append_error_log(
    path: &std::path::Path,
    errors: &[crate::engine::ErrorRow],
) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut w = std::io::BufWriter::new(f);
    for e in errors {
        writeln!(w, "{e}")?;
    }
    w.flush()
}

fn now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}

async fn patch_status(
    tasks: &Api<RoutineLoadTask>,
    name: &str,
    status: &RoutineLoadTaskStatus,
) -> Result<()> {
    let mut status = status.clone();
    status.heartbeat_time = Some(Time(now()));
    let mut body = serde_json::json!({ "status": status });
    // A merge patch keeps fields it doesn't mention: clear a message that no longer applies.
    if status.message.is_none() {
        body["status"]["message"] = serde_json::Value::Null;
    }
    tasks
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
        .await
        .map(|_| ())
        .map_err(|e| {
            tracing::warn!(task = name, error = %e, "status patch failed");
            anyhow!("patching status: {e}")
        })
}

/// Sleeps, returning early (true) when `stop` turns true.
async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.wait_for(|s| *s) => true,
    }
}
