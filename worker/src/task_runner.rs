//! One task loop: consume the task's Kafka partitions from the offsets committed in the table,
//! turn messages into rows with the load engine, and commit each batch as one Delta version that
//! also carries the new offsets. Reports through the task's status subresource.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use routine_load_api::commit_info;
use routine_load_api::job::{KAFKA_OFFSET_TIME_FORMAT, KafkaOffset};
use routine_load_api::names::WORKER_FIELD_MANAGER;
use routine_load_api::task::{TaskPauseReason, TaskPauseRequest};
use routine_load_api::{LoadPlan, RoutineLoadJob, RoutineLoadTask, RoutineLoadTaskStatus, Table};
use tokio::sync::watch;

use crate::delta_sink::{CommitRequest, Committed, DeltaSink, SinkError};
use crate::engine::{BatchCounters, ErrorRow, LoadEngine, LoadedParts, SourceMessage};
use crate::error_window::ErrorWindow;
use crate::heartbeat::{Heartbeat, Mark};
use crate::load_memory::{LoadMemory, Reservation, message_cost};
use crate::metrics::Metrics;
use crate::retry::{FailureKind, Failures, Verdict};
use crate::start_offsets::{
    self, Continuity, OutOfRange, StartDecision, Watermarks, check_hole, check_in_range,
    configured_start, decide_start,
};
use crate::task_release::UnwrittenStatuses;

/// Minimum time between two status patches after commits.
const STATUS_INTERVAL: Duration = Duration::from_secs(2);
/// Minimum time between two high-watermark queries.
const LAG_INTERVAL: Duration = Duration::from_secs(5);
/// How many recent table versions a resuming loop reads to count batches an earlier loop of
/// its task committed without reporting them.
const ADOPT_MAX_VERSIONS: i64 = 200;
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
    /// Identical failures in a row (storage, commits) before a task asks for its job to be
    /// paused; `None`: the default per kind of failure.
    pub retry_limit: Option<u32>,
    /// This worker's Lease renewals: a loop re-reads its task before a commit when the Lease
    /// may have lapsed since its batch began. `None`: no Lease (benchmarks driving one loop).
    pub heartbeat: Option<Arc<Heartbeat>>,
    /// Threads that decode one batch (each takes a contiguous run of its messages).
    pub decode_threads: usize,
    /// Last statuses of ended loops that could not be written; the release writes them.
    pub unwritten: Arc<crate::task_release::UnwrittenStatuses>,
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
/// failed): the errors `poll()` returns carry only a code, and the generic "all broker connections
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
    consumer: BaseConsumer<KafkaErrors>,
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
    let update = plan.update.clone();
    let mut engine = LoadEngine::new(Arc::new(plan));
    if let Some(registry) = &job.spec.schema_registry {
        let client =
            crate::schema_registry::RegistryClient::connect(&ctx.client, &a.namespace, registry)
                .await?;
        engine.set_schema_source(Arc::new(client));
    }

    let storage_secret = match &table.spec.credentials_secret {
        Some(s) => secret_map(&ctx.client, &a.namespace, &s.name).await?,
        None => BTreeMap::new(),
    };
    let storage_options =
        routine_load_api::delta_table::storage_options(&table.spec.location, &storage_secret);
    // Adopt the table (checking its schema still matches the Table), creating it if missing.
    let (_, delta) = routine_load_api::delta_table::create_or_adopt_loaded(
        &table.spec.location,
        &table.spec,
        storage_options,
    )
    .await
    .context("checking the Delta table")?;
    let sink = DeltaSink::from_table(delta, &task.spec.job_uid, &task.spec.partitions, a.epoch)
        .context("opening the Delta table")?
        .with_update_rule(update);

    let kafka = &job.spec.kafka;
    let credentials = match &kafka.credentials_secret {
        Some(s) => secret_map(&ctx.client, &a.namespace, &s.name).await?,
        None => BTreeMap::new(),
    };
    let mut config = ClientConfig::new();
    let group = format!("routine-load-{}", task.spec.job_uid);
    for (k, v) in start_offsets::consumer_properties(kafka, &credentials, &group) {
        config.set(k, v);
    }
    let consumer: BaseConsumer<KafkaErrors> = config
        .create_with_context(KafkaErrors::default())
        .context("creating the Kafka consumer")?;
    Ok(Prepared {
        job,
        engine,
        sink,
        consumer,
    })
}

/// Why a task loop ended.
enum Exit {
    /// Stop was requested (the task moved, was deleted, or the worker shuts down).
    Stopped,
    /// The task object is no longer this loop's (deleted, re-created, or moved to a new epoch):
    /// its status is not ours to write.
    Fenced,
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
    let reporter = StatusReporter::new(
        tasks.clone(),
        &a.name,
        task.metadata.uid.as_deref().unwrap_or_default(),
        a.epoch,
    );
    // A last status an earlier loop of this task could not write is superseded: this loop
    // counts those batches from the table's commits.
    ctx.unwritten
        .take(task.metadata.uid.as_deref().unwrap_or_default());
    let mut status = task.status.clone().unwrap_or_default();
    if status.epoch != a.epoch || status.job_generation != Some(task.spec.job_generation) {
        // A new assignment or job spec: what an older one asked for no longer applies.
        status.pause_request = None;
        status.error_window_exceeded = None;
    }
    status.epoch = a.epoch;
    status.job_generation = Some(task.spec.job_generation);
    let prepared = match prepare(&ctx, &a, &task).await {
        Ok(p) => p,
        Err(e) => {
            // Say why in the task's status: the operator and `kubectl describe` show it.
            status.message = Some(format!("cannot start on {}: {e:#}", ctx.pod_name));
            let _ = reporter.patch(&status).await;
            return Err(e);
        }
    };
    let Prepared {
        job,
        engine,
        sink,
        consumer,
    } = prepared;
    let mut task_loop = TaskLoop::new(ctx, a, task, (job, engine, sink), reporter, status);
    let exit = task_loop.run(&consumer, &mut stop).await;
    task_loop.finish(exit).await;
    Ok(())
}

/// Writes a task's status, fenced: the patch applies only while the task object is the one
/// this loop was started for (same UID) and still at this loop's epoch, so a loop that missed
/// a move or a delete never writes into its successor.
pub struct StatusReporter {
    api: Api<RoutineLoadTask>,
    name: String,
    uid: String,
    epoch: i64,
}

/// A status patch was refused because the task is no longer this loop's.
#[derive(Debug, PartialEq, Eq)]
pub struct NotOurs;

impl StatusReporter {
    /// Reports for the task object `name` with this UID, at this epoch.
    pub fn new(api: Api<RoutineLoadTask>, name: &str, uid: &str, epoch: i64) -> Self {
        Self {
            api,
            name: name.to_string(),
            uid: uid.to_string(),
            epoch,
        }
    }

    /// The JSON patch: the fence's tests, then the whole status.
    fn body(&self, status: &RoutineLoadTaskStatus) -> serde_json::Value {
        let mut status = status.clone();
        status.heartbeat_time = Some(Time(now()));
        serde_json::json!([
            { "op": "test", "path": "/metadata/uid", "value": self.uid },
            { "op": "test", "path": "/spec/epoch", "value": self.epoch },
            { "op": "add", "path": "/status", "value": status },
        ])
    }

    /// Patches the status. `Err(NotOurs)` when the fence refused it; other failures (the API
    /// server unreachable) are logged and retried by the next patch.
    pub async fn patch(&self, status: &RoutineLoadTaskStatus) -> Result<(), NotOurs> {
        match self.attempt(status).await {
            Ok(()) | Err(PatchFailure::Failed) => Ok(()),
            Err(PatchFailure::NotOurs) => Err(NotOurs),
        }
    }

    /// Patches a loop's last status, retrying a failed write for a while: a deleted task is
    /// released only after this, and the operator records the counters it carries. A status
    /// that could not be written is kept in `unwritten` for the release to write.
    pub async fn patch_last(&self, status: &RoutineLoadTaskStatus, unwritten: &UnwrittenStatuses) {
        for attempt in 1..=LAST_STATUS_ATTEMPTS {
            match self.attempt(status).await {
                Ok(()) | Err(PatchFailure::NotOurs) => return,
                Err(PatchFailure::Failed) if attempt < LAST_STATUS_ATTEMPTS => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(PatchFailure::Failed) => {
                    tracing::warn!(
                        task = %self.name,
                        "the last status of the loop could not be written: kept for the task's \
                         release (or its next loop, which counts those batches from the table)"
                    );
                    unwritten.keep(&self.uid, status.clone());
                }
            }
        }
    }

    async fn attempt(&self, status: &RoutineLoadTaskStatus) -> Result<(), PatchFailure> {
        let patch: json_patch::Patch = match serde_json::from_value(self.body(status)) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(task = %self.name, error = %e, "building the status patch");
                return Err(PatchFailure::Failed);
            }
        };
        let params = PatchParams {
            field_manager: Some(WORKER_FIELD_MANAGER.to_string()),
            ..PatchParams::default()
        };
        match self
            .api
            .patch_status(&self.name, &params, &Patch::Json::<()>(patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!(task = %self.name, error = %e, "status patch failed");
                // Tell a refused fence from an unreachable API server by reading the task.
                match self.api.get_opt(&self.name).await {
                    Ok(Some(t))
                        if t.metadata.uid.as_deref() == Some(self.uid.as_str())
                            && t.spec.epoch == self.epoch =>
                    {
                        Err(PatchFailure::Failed)
                    }
                    Ok(_) => Err(PatchFailure::NotOurs),
                    Err(_) => Err(PatchFailure::Failed),
                }
            }
        }
    }
}

/// How many times a loop's last status write is tried.
const LAST_STATUS_ATTEMPTS: u32 = 10;

/// Why a status patch did not land.
enum PatchFailure {
    /// The fence refused it: the task is no longer this loop's.
    NotOurs,
    /// The API server did not take it (unreachable, overloaded).
    Failed,
}

/// How a batch ended.
enum BatchEnd {
    /// Not committed; the loop resumes from the table's offsets (after `backoff`).
    Retry { backoff: Duration },
    /// The loop waits for the operator to pause the job.
    Paused,
}

/// One task loop: resume from the table, collect a batch, load and commit it, report.
struct TaskLoop {
    ctx: WorkerContext,
    a: Assignment,
    job: RoutineLoadJob,
    job_name: String,
    task: RoutineLoadTask,
    /// One engine per decoding thread (the first decodes on the loop's own thread).
    engines: Vec<LoadEngine>,
    /// Shared with the commit of the batch in flight (which holds it while it commits).
    sink: Arc<tokio::sync::Mutex<DeltaSink>>,
    partitions: Vec<i32>,
    topic: String,
    reporter: StatusReporter,
    recorder: Recorder,
    status: RoutineLoadTaskStatus,
    window: ErrorWindow,
    failures: Failures,
    lag: LagTracker,
    interval: Duration,
    max_rows: usize,
    max_bytes: usize,
    log_path: PathBuf,
    log_url: String,
    /// Next offset expected per partition.
    position: BTreeMap<i32, i64>,
    /// Batches started by this loop (part of each batch's label).
    attempts: u64,
    /// This loop's part of each label.
    tag: String,
    /// Resumes in a row that failed on Kafka (for the backoff).
    kafka_down: u32,
    /// The last table version a resume read for uncounted commits (none: -1).
    scanned_through: i64,
    last_status: Instant,
    dirty: bool,
    /// The batch committing while the next one is collected.
    inflight: Option<InFlight>,
}

impl TaskLoop {
    fn new(
        ctx: WorkerContext,
        a: Assignment,
        task: RoutineLoadTask,
        (job, engine, sink): (RoutineLoadJob, LoadEngine, DeltaSink),
        reporter: StatusReporter,
        mut status: RoutineLoadTaskStatus,
    ) -> Self {
        let job_name = job.metadata.name.clone().unwrap_or_default();
        let partitions = task.spec.partitions.clone();
        let topic = job.spec.kafka.topic.clone();
        let keep = |k: &String| partitions.iter().any(|p| p.to_string() == *k);
        status.lag.retain(|k, _| keep(k));
        status.committed_offsets.retain(|k, _| keep(k));
        status.message = Some(format!("running on {}", ctx.pod_name));
        let interval = ctx.batch_interval_override.unwrap_or(Duration::from_secs(
            job.spec.max_batch_interval.max(1) as u64,
        ));
        let max_rows = ctx
            .batch_rows_override
            .unwrap_or(job.spec.max_batch_rows.max(1) as usize);
        let max_bytes = job.spec.max_batch_size.max(1) as usize;
        let window = ErrorWindow::new(
            job.spec.max_batch_rows,
            job.spec.max_error_number,
            job.spec.max_filter_ratio,
        );
        let log_name = error_log_file(&a);
        let log_path = ctx.error_log_dir.join(&log_name);
        let log_url = format!(
            "{}/api/_load_error_log?file={}",
            ctx.error_log_base_url.trim_end_matches('/'),
            log_name
        );
        let recorder = Recorder::new(
            ctx.client.clone(),
            Reporter {
                controller: WORKER_FIELD_MANAGER.into(),
                instance: Some(ctx.pod_name.clone()),
            },
        );
        let retry_limit = ctx.retry_limit;
        let decode_threads = ctx.decode_threads;
        let lag = LagTracker {
            topic: topic.clone(),
            partitions: partitions.clone(),
            namespace: a.namespace.clone(),
            job: job_name.clone(),
            last: None,
            highs: BTreeMap::new(),
        };
        Self {
            ctx,
            a,
            job_name,
            task,
            engines: crate::engine::decoding_engines(engine, decode_threads),
            sink: Arc::new(tokio::sync::Mutex::new(sink)),
            partitions,
            topic,
            reporter,
            recorder,
            status,
            window,
            failures: Failures::new(retry_limit),
            lag,
            interval,
            max_rows,
            max_bytes,
            log_path,
            log_url,
            position: BTreeMap::new(),
            attempts: 0,
            tag: loop_tag(),
            kafka_down: 0,
            scanned_through: -1,
            last_status: Instant::now() - HEARTBEAT_INTERVAL,
            dirty: true,
            inflight: None,
            job,
        }
    }

    async fn run(
        &mut self,
        consumer: &BaseConsumer<KafkaErrors>,
        stop: &mut watch::Receiver<bool>,
    ) -> Exit {
        'resume: loop {
            if *stop.borrow() {
                return Exit::Stopped;
            }
            match self.resume(consumer).await {
                Ok(Resumed::Ready) => {
                    self.kafka_down = 0;
                    // Say where loading starts (the pinned offsets) at once.
                    if self.report(true).await.is_err() {
                        return Exit::Fenced;
                    }
                }
                Ok(Resumed::OutOfRange(gaps)) => {
                    return self.pause_for_gaps(&gaps, stop).await;
                }
                Err(ResumeError::Kafka(e)) => {
                    self.kafka_down += 1;
                    let backoff = crate::retry::backoff(self.kafka_down);
                    self.status.message =
                        Some(format!("{e:#} (retrying in {}s)", backoff.as_secs()));
                    if self.report(true).await.is_err() {
                        return Exit::Fenced;
                    }
                    if sleep_or_stop(stop, backoff).await {
                        return Exit::Stopped;
                    }
                    continue 'resume;
                }
                Err(ResumeError::Table(e)) => {
                    let message = format!("resuming from the table: {e:#}");
                    match self.fail(FailureKind::Storage, message).await {
                        Ok(backoff) => {
                            if sleep_or_stop(stop, backoff).await {
                                return Exit::Stopped;
                            }
                            continue 'resume;
                        }
                        Err(exit) => return exit,
                    }
                }
            }
            // Batch N commits on a blocking thread while batch N+1 is collected here; commits
            // stay in order (one at a time), and every way out of this loop first settles the
            // batch in flight, so what it committed is counted and the sink is back.
            let mut gathering = self.gathering();
            loop {
                let step =
                    tokio::task::block_in_place(|| self.collect(consumer, stop, &mut gathering));
                let flow = match step {
                    Step::Settle => {
                        tracing::debug!(
                            task = %self.a.name,
                            collected = gathering.msgs.len(),
                            "the batch in flight committed while the next was collected"
                        );
                        match self.settle(consumer).await {
                            Ok(None) => continue,
                            Ok(Some(end)) => Flow::End(end),
                            Err(NotOurs) => return Exit::Fenced,
                        }
                    }
                    Step::Stopped => Flow::Stop,
                    Step::OutOfRange(gaps) => Flow::Gaps(gaps),
                    Step::Reassign => Flow::End(BatchEnd::Retry {
                        backoff: Duration::from_secs(1),
                    }),
                    Step::Closed => {
                        let closed = std::mem::replace(&mut gathering, self.gathering());
                        match self.close(consumer, closed).await {
                            Ok(None) => continue,
                            Ok(Some(end)) => Flow::End(end),
                            Err(NotOurs) => return Exit::Fenced,
                        }
                    }
                };
                // Leaving the batch loop: the batch being collected is abandoned (nothing of
                // it is committed; the next loop resumes from the table's offsets), the one in
                // flight finishes first.
                drop(gathering);
                let settled = match self.settle(consumer).await {
                    Ok(s) => s,
                    Err(NotOurs) => return Exit::Fenced,
                };
                let flow = match (flow, settled) {
                    (Flow::Stop, _) => return Exit::Stopped,
                    // The batch in flight failed: that failure decides (its retry resumes
                    // from the table, which also drops whatever came after it).
                    (_, Some(end)) => Flow::End(end),
                    (flow, None) => flow,
                };
                match flow {
                    Flow::Gaps(gaps) => return self.pause_for_gaps(&gaps, stop).await,
                    Flow::End(BatchEnd::Retry { backoff }) => {
                        if sleep_or_stop(stop, backoff).await {
                            return Exit::Stopped;
                        }
                        continue 'resume;
                    }
                    Flow::End(BatchEnd::Paused) => {
                        // Nothing more is loaded until the operator pauses the job (and
                        // removes the task).
                        let _ = stop.wait_for(|s| *s).await;
                        return Exit::Stopped;
                    }
                    Flow::Stop => return Exit::Stopped,
                }
            }
        }
    }

    /// Reads the table, pins or moves partition starts as the configuration says, checks that
    /// Kafka still holds every offset to load, and assigns the partitions at those offsets.
    async fn resume(
        &mut self,
        consumer: &BaseConsumer<KafkaErrors>,
    ) -> Result<Resumed, ResumeError> {
        let records = self
            .sink
            .lock()
            .await
            .refresh()
            .await
            .context("reading the table's offsets")
            .map_err(ResumeError::Table)?;
        self.adopt_uncounted_commits().await;
        let mut pins = CommitRequest {
            label: self.label("start"),
            info: self.commit_info(None),
            ..CommitRequest::default()
        };
        let mut moves = Vec::new();
        let mut offsets = BTreeMap::new();
        let mut gaps = Vec::new();
        for &p in &self.partitions {
            let record = records.get(&p).copied().unwrap_or_default();
            let configured = configured_start(&self.job.spec.kafka, p);
            let w = self
                .watermarks(consumer, p)
                .await
                .map_err(ResumeError::Kafka)?;
            let offset = match decide_start(&record, &configured) {
                StartDecision::Resume(o) => {
                    if configured.explicit && record.start.is_none() {
                        pins.starts.insert(p, configured.fingerprint());
                    }
                    o
                }
                StartDecision::Pin(start) => {
                    let o = self
                        .resolve(consumer, p, &start, w)
                        .map_err(ResumeError::Kafka)?;
                    pins.resumed_from.insert(p, None);
                    pins.next.insert(p, o);
                    pins.starts.insert(p, configured.fingerprint());
                    o
                }
                StartDecision::Move { from, to } => {
                    let o = self
                        .resolve(consumer, p, &to, w)
                        .map_err(ResumeError::Kafka)?;
                    pins.resumed_from.insert(p, Some(from));
                    pins.next.insert(p, o);
                    pins.starts.insert(p, configured.fingerprint());
                    moves.push((p, from, o, to));
                    o
                }
            };
            if let Err(gap) = check_in_range(&self.topic, p, offset, w) {
                gaps.push(gap);
            }
            offsets.insert(p, offset);
        }
        if !gaps.is_empty() {
            return Ok(Resumed::OutOfRange(gaps));
        }
        if !pins.next.is_empty() || !pins.starts.is_empty() {
            // Durable before anything loads: a restart resumes from here, never re-resolves.
            for (p, o) in &offsets {
                pins.resumed_from.entry(*p).or_insert(Some(*o));
            }
            pins.resumed_from
                .retain(|p, _| pins.next.contains_key(p) || pins.starts.contains_key(p));
            for p in pins.starts.keys() {
                pins.next.entry(*p).or_insert(offsets[p]);
            }
            self.commit_blocking(None, &pins)
                .await
                .context("recording the start offsets in the table")
                .map_err(ResumeError::Table)?;
            tracing::info!(task = %self.a.name, offsets = ?pins.next, "start offsets recorded");
            for (p, from, to, configured) in moves {
                self.publish_move(p, from, to, &configured).await;
            }
        }
        let mut tpl = TopicPartitionList::new();
        for (p, o) in &offsets {
            tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*o))
                .context("building the assignment")
                .map_err(ResumeError::Kafka)?;
        }
        consumer
            .assign(&tpl)
            .context("assigning partitions")
            .map_err(ResumeError::Kafka)?;
        self.position = offsets.clone();
        // What the table holds is the truth; forget anything else a status said.
        for (p, o) in &offsets {
            self.status.committed_offsets.insert(p.to_string(), *o);
        }
        Ok(Resumed::Ready)
    }

    /// A partition's watermarks, from the broker (blocking call, off the async threads).
    async fn watermarks(&self, consumer: &BaseConsumer<KafkaErrors>, p: i32) -> Result<Watermarks> {
        let r = tokio::task::block_in_place(|| {
            consumer.fetch_watermarks(&self.topic, p, Duration::from_secs(10))
        });
        match r {
            Ok((low, high)) => Ok(Watermarks { low, high }),
            Err(e) => {
                // librdkafka hands the reason of a failure (say, a refused SASL authentication)
                // to the consumer's queue: poll it briefly so the message can name it. A message
                // it returns is dropped; the partitions are assigned again from the table.
                let _ = tokio::task::block_in_place(|| consumer.poll(Duration::from_millis(500)));
                bail!(
                    "{} (reading the offsets of {} partition {p})",
                    kafka_message(&e, consumer.context().last()),
                    self.topic
                )
            }
        }
    }

    /// A configured start as an offset.
    fn resolve(
        &self,
        consumer: &BaseConsumer<KafkaErrors>,
        p: i32,
        start: &KafkaOffset,
        w: Watermarks,
    ) -> Result<i64> {
        let for_time = match start {
            KafkaOffset::Time(t) => Some(self.offset_for_time(consumer, p, t)?),
            _ => None,
        };
        Ok(start_offsets::resolve(start, w, for_time.flatten()))
    }

    /// The first offset at or after a local time in the job's time zone (`None`: none yet).
    fn offset_for_time(
        &self,
        consumer: &BaseConsumer<KafkaErrors>,
        p: i32,
        t: &chrono::NaiveDateTime,
    ) -> Result<Option<i64>> {
        let tz: chrono_tz::Tz = self
            .job
            .spec
            .timezone
            .parse()
            .map_err(|e| anyhow!("time zone '{}': {e}", self.job.spec.timezone))?;
        let ms = t
            .and_local_timezone(tz)
            .earliest()
            .ok_or_else(|| {
                anyhow!(
                    "{} does not exist in {}",
                    t.format(KAFKA_OFFSET_TIME_FORMAT),
                    self.job.spec.timezone
                )
            })?
            .timestamp_millis();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, p, Offset::Offset(ms))?;
        let found = tokio::task::block_in_place(|| {
            consumer.offsets_for_times(tpl, Duration::from_secs(10))
        })
        .with_context(|| {
            format!(
                "looking up the offset of {} partition {p} at {t}",
                self.topic
            )
        })?;
        Ok(
            match found.find_partition(&self.topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => Some(o),
                _ => None,
            },
        )
    }

    /// A new batch, beginning where the previous one ended.
    fn gathering<'c>(&self) -> Gathering<'c> {
        Gathering {
            msgs: Vec::new(),
            bytes: 0,
            from: self.position.clone(),
            deadline: Instant::now() + self.interval,
            began: Instant::now(),
            reservation: self.ctx.load_memory.reservation(),
            memory_full: false,
            mark: self.ctx.heartbeat.as_ref().map(|h| h.mark()),
        }
    }

    /// Collects messages into `g` until the batch closes (rows, bytes, load memory or the
    /// interval), the batch in flight has finished (to be settled, then collecting goes on), or
    /// the loop is stopped. Blocking: it runs off the async threads and polls librdkafka's queue
    /// directly, so a message costs no thread wake-up. Messages stay in librdkafka's buffers
    /// until the batch is decoded.
    fn collect<'c>(
        &mut self,
        consumer: &'c BaseConsumer<KafkaErrors>,
        stop: &watch::Receiver<bool>,
        g: &mut Gathering<'c>,
    ) -> Step {
        let mut cleared = false;
        loop {
            if g.is_full(self.max_rows, self.max_bytes) {
                return self.closed(g);
            }
            if *stop.borrow() {
                return Step::Stopped;
            }
            if self
                .inflight
                .as_ref()
                .is_some_and(|f| f.commit.is_finished())
            {
                return Step::Settle;
            }
            let now = Instant::now();
            if now >= g.deadline {
                return self.closed(g);
            }
            // Wait for the first message, then take what is queued without waiting.
            let mut wait = (g.deadline - now).min(POLL_WAIT);
            for _ in 0..POLL_BURST {
                let Some(r) = consumer.poll(wait) else {
                    break;
                };
                wait = Duration::ZERO;
                match r {
                    Ok(m) => {
                        if !cleared {
                            consumer.context().clear();
                            cleared = true;
                        }
                        if let Err(step) = self.accept(consumer, g, m) {
                            return step;
                        }
                        if g.is_full(self.max_rows, self.max_bytes) {
                            break;
                        }
                    }
                    Err(e) => return self.kafka_error(consumer, g, e),
                }
            }
        }
    }

    /// Adds one message to the batch, checking that it follows the partition's last offset.
    fn accept<'c>(
        &mut self,
        consumer: &'c BaseConsumer<KafkaErrors>,
        g: &mut Gathering<'c>,
        m: BorrowedMessage<'c>,
    ) -> Result<(), Step> {
        let p = m.partition();
        let expected = self.position.get(&p).copied();
        match expected.map(|e| start_offsets::continuity(e, m.offset())) {
            Some(Continuity::Behind) => return Ok(()),
            Some(Continuity::Ahead) => {
                let e = expected.unwrap_or_default();
                match consumer.fetch_watermarks(&self.topic, p, Duration::from_secs(10)) {
                    Ok((low, high)) => {
                        if let Err(gap) = check_hole(&self.topic, p, e, Watermarks { low, high }) {
                            return Err(Step::OutOfRange(vec![gap]));
                        }
                    }
                    Err(err) => {
                        // Can't tell a hole from a loss: load nothing past it. The batch is
                        // dropped and the partitions assigned again from the table's offsets,
                        // which checks the range once more.
                        tracing::warn!(partition = p, error = %err, "checking a hole in the offsets");
                        self.status.message = Some(format!(
                            "partition {p}: offset {} follows {e}; checking the log start failed: {}",
                            m.offset(),
                            kafka_message(&err, consumer.context().last())
                        ));
                        self.dirty = true;
                        return Err(Step::Reassign);
                    }
                }
            }
            _ => {}
        }
        self.position.insert(p, m.offset() + 1);
        let len = m.payload_len();
        g.bytes += len;
        // Past the worker's load memory limit: commit what we have.
        g.memory_full = !g.reservation.grow(message_cost(len));
        g.msgs.push(m);
        Ok(())
    }

    /// A Kafka error while collecting.
    fn kafka_error(
        &mut self,
        consumer: &BaseConsumer<KafkaErrors>,
        g: &Gathering<'_>,
        e: KafkaError,
    ) -> Step {
        if e.rdkafka_error_code() == Some(RDKafkaErrorCode::AutoOffsetReset) {
            // librdkafka found an offset out of range: say which, with the range.
            let mut gaps = Vec::new();
            for (&p, &o) in &self.position {
                if let Ok((low, high)) =
                    consumer.fetch_watermarks(&self.topic, p, Duration::from_secs(10))
                    && let Err(gap) = check_in_range(&self.topic, p, o, Watermarks { low, high })
                {
                    gaps.push(gap);
                }
            }
            if !gaps.is_empty() {
                return Step::OutOfRange(gaps);
            }
            // librdkafka stopped fetching a partition: assign again from the table, which
            // checks the range once more.
            tracing::warn!(task = %self.a.name, error = %e, "offset reset refused; assigning again");
            self.status.message = Some(kafka_message(&e, consumer.context().last()));
            self.dirty = true;
            return Step::Reassign;
        }
        tracing::warn!(task = %self.a.name, error = %e, "Kafka error");
        self.status.message = Some(kafka_message(&e, consumer.context().last()));
        self.dirty = true;
        // The batch closes with what it has.
        self.closed(g)
    }

    /// The batch closes: the memory metrics say how full it got.
    fn closed(&self, g: &Gathering<'_>) -> Step {
        self.ctx
            .metrics
            .load_memory
            .with_label_values(&["used"])
            .set(self.ctx.load_memory.used() as i64);
        if g.memory_full {
            self.ctx
                .metrics
                .memory_limited_batches
                .with_label_values(&[&self.a.namespace, &self.job_name])
                .inc();
        }
        Step::Closed
    }
}

/// How long one poll waits for a message before the loop checks stop, the interval and the
/// batch in flight again.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// Messages taken from librdkafka's queue between two of those checks.
const POLL_BURST: usize = 4096;

/// A batch being collected.
struct Gathering<'c> {
    msgs: Vec<BorrowedMessage<'c>>,
    bytes: usize,
    /// Where each partition stood when the batch began: what its commit resumes from.
    from: BTreeMap<i32, i64>,
    deadline: Instant,
    /// When the batch began collecting.
    began: Instant,
    reservation: Reservation,
    memory_full: bool,
    /// The heartbeat when the batch began.
    mark: Option<Mark>,
}

impl Gathering<'_> {
    fn is_full(&self, max_rows: usize, max_bytes: usize) -> bool {
        self.msgs.len() >= max_rows || self.bytes >= max_bytes || self.memory_full
    }
}

/// Where collecting stopped.
enum Step {
    /// The batch is complete.
    Closed,
    /// The batch in flight has finished: settle it, then go on collecting.
    Settle,
    /// Stop was requested.
    Stopped,
    /// Messages were removed before they loaded: nothing of the batch is loaded.
    OutOfRange(Vec<OutOfRange>),
    /// The consumer must be assigned again from the table (the batch is dropped).
    Reassign,
}

/// What the batch loop does next when it leaves.
enum Flow {
    Stop,
    Gaps(Vec<OutOfRange>),
    End(BatchEnd),
}

/// A collected batch, decoded.
struct Decoded {
    loaded: LoadedParts,
    resumed_from: BTreeMap<i32, Option<i64>>,
    next: BTreeMap<i32, i64>,
    reservation: Reservation,
    started: Instant,
    mark: Option<Mark>,
}

/// A batch committing on a blocking thread.
struct InFlight {
    /// The sink comes back with the outcome (the version, or why not) and the commit's time.
    commit: tokio::task::JoinHandle<(Result<i64, String>, Duration)>,
    /// The batch's error rows and counters (its rows went to the commit).
    errors: Vec<ErrorRow>,
    counters: BatchCounters,
    next: BTreeMap<i32, i64>,
    label: String,
    first_error: Option<String>,
    started: Instant,
    /// Held until the batch is settled: it counts against the load memory limit meanwhile.
    _reservation: Reservation,
}

/// What resuming found.
enum Resumed {
    Ready,
    /// Kafka no longer (or not yet) holds these offsets.
    OutOfRange(Vec<OutOfRange>),
}

/// Why resuming failed: Kafka unreachable is retried for as long as it lasts (the operator
/// reports the job's brokers), the table's offsets unreadable counts toward the retry budget.
enum ResumeError {
    Kafka(anyhow::Error),
    Table(anyhow::Error),
}

impl TaskLoop {
    /// A closed batch: decodes it (off the async threads), settles the batch in flight before
    /// it, then checks the error window and starts its commit.
    async fn close(
        &mut self,
        consumer: &BaseConsumer<KafkaErrors>,
        g: Gathering<'_>,
    ) -> Result<Option<BatchEnd>, NotOurs> {
        self.lag
            .update(consumer, &mut self.status, &self.ctx.metrics);
        if g.msgs.is_empty() {
            self.report(false).await?;
            return Ok(None);
        }
        // Decode, cast and filter are CPU work: off the async threads, so the Lease heartbeat
        // and the other tasks' I/O never wait on them.
        let (messages, collected) = (g.msgs.len(), g.began.elapsed());
        let decode_began = Instant::now();
        let decoded = tokio::task::block_in_place(|| self.decode(g));
        tracing::debug!(
            task = %self.a.name,
            messages,
            collect_ms = collected.as_millis() as u64,
            decode_ms = decode_began.elapsed().as_millis() as u64,
            "batch decoded"
        );
        if let Some(end) = self.settle(consumer).await? {
            return Ok(Some(end));
        }
        match decoded {
            Ok(d) => self.start_commit(d).await,
            Err(e) => {
                self.count_aborted();
                let message = format!("batch aborted: {e}");
                self.retry_or_pause(FailureKind::Engine, message)
                    .await
                    .map(Some)
            }
        }
    }

    /// Turns the batch's messages into rows; the messages go back to librdkafka.
    fn decode(&mut self, g: Gathering<'_>) -> Result<Decoded, crate::engine::EngineError> {
        let started = Instant::now();
        let Gathering {
            msgs,
            from,
            reservation,
            mark,
            ..
        } = g;
        let headers: Vec<Option<String>> = if self.engines[0].wants_headers() {
            msgs.iter().map(crate::engine::record_headers).collect()
        } else {
            Vec::new()
        };
        let with_timestamps = self.engines[0].wants_timestamps();
        let source: Vec<SourceMessage<'_>> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| SourceMessage {
                partition: m.partition(),
                offset: m.offset(),
                payload: m.payload().unwrap_or(&[]),
                key: m.key(),
                timestamp_ms: if with_timestamps {
                    m.timestamp().to_millis()
                } else {
                    None
                },
                headers: headers.get(i).and_then(|h| h.as_deref()),
            })
            .collect();
        // A zero-length record (a Kafka tombstone, e.g. the one Debezium sends after a delete)
        // carries no row: it is skipped, as StarRocks skips it, and its offset still moves on.
        let with_payload: Vec<SourceMessage<'_>>;
        let rows: &[SourceMessage<'_>] = if source.iter().any(|m| m.payload.is_empty()) {
            with_payload = source
                .iter()
                .filter(|m| !m.payload.is_empty())
                .copied()
                .collect();
            &with_payload
        } else {
            &source
        };
        let loaded = crate::engine::load_in_parallel(&mut self.engines, rows)?;
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for m in &source {
            let e = next.entry(m.partition).or_insert(m.offset + 1);
            *e = (*e).max(m.offset + 1);
        }
        let resumed_from = next.keys().map(|p| (*p, from.get(p).copied())).collect();
        Ok(Decoded {
            loaded,
            resumed_from,
            next,
            reservation,
            started,
            mark,
        })
    }

    /// Checks the error window and starts the batch's commit on a blocking thread (Parquet
    /// encoding is CPU work); the loop goes on collecting the next batch meanwhile.
    async fn start_commit(&mut self, d: Decoded) -> Result<Option<BatchEnd>, NotOurs> {
        let c = d.loaded.counters;
        let first_error = d.loaded.errors.first().map(|e| e.to_string());
        if let Err(exceeded) = self
            .window
            .check(c.total_rows, c.error_rows, first_error.as_deref())
        {
            // The rows that passed the limit are logged so the reason can point at them; the
            // batch is not committed and the job pauses.
            self.log_errors(&d.loaded.errors);
            let reason = format!("{}. See {}", exceeded.reason, self.log_url);
            self.count_aborted();
            self.status.error_window_exceeded = Some(reason.clone());
            self.status.message = Some(reason);
            self.report(true).await?;
            return Ok(Some(BatchEnd::Paused));
        }

        self.attempts += 1;
        let req = CommitRequest {
            resumed_from: d.resumed_from,
            next: d.next.clone(),
            starts: BTreeMap::new(),
            label: self.label(&format!("batch-{}", self.attempts)),
            info: self.commit_info(Some(&c)),
        };
        if let Some(end) = self.check_still_ours(d.mark).await? {
            return Ok(Some(end));
        }
        let LoadedParts {
            parts,
            errors,
            counters,
        } = d.loaded;
        let label = req.label.clone();
        let sink = Arc::clone(&self.sink);
        let task = self.a.name.clone();
        let commit = tokio::task::spawn_blocking(move || {
            tokio::runtime::Handle::current().block_on(async move {
                let mut sink = sink.lock().await;
                let t0 = Instant::now();
                let outcome = commit_or_find(&mut sink, parts, &req, &task).await;
                (outcome, t0.elapsed())
            })
        });
        self.inflight = Some(InFlight {
            commit,
            errors,
            counters,
            next: d.next,
            label,
            first_error,
            started: d.started,
            _reservation: d.reservation,
        });
        Ok(None)
    }

    /// Waits for the batch in flight (if any) and counts it once it is in the table. A commit
    /// that failed ends this run of batches: the loop resumes from the table after a backoff
    /// (dropping whatever was collected after it), or pauses.
    async fn settle(
        &mut self,
        consumer: &BaseConsumer<KafkaErrors>,
    ) -> Result<Option<BatchEnd>, NotOurs> {
        let Some(f) = self.inflight.take() else {
            return Ok(None);
        };
        let waiting = Instant::now();
        let (outcome, took) = match f.commit.await {
            Ok(r) => r,
            Err(e) => (
                Err(format!("the commit did not finish: {e}")),
                Duration::ZERO,
            ),
        };
        tracing::debug!(
            task = %self.a.name,
            commit_ms = took.as_millis() as u64,
            waited_ms = waiting.elapsed().as_millis() as u64,
            "batch settled"
        );
        let version = match outcome {
            Ok(v) => v,
            Err(message) => {
                // A conflict (someone else advanced our partitions, or we raced) or a storage
                // failure: re-read the offsets after a backoff; the same failure again and
                // again pauses the job.
                tracing::warn!(task = %self.a.name, error = %message, "batch not committed");
                self.count_aborted();
                return self
                    .retry_or_pause(FailureKind::Storage, message)
                    .await
                    .map(Some);
            }
        };

        // In the table: now, and only now, the batch counts.
        let c = f.counters;
        self.failures.clear();
        self.window
            .commit(c.total_rows, c.error_rows, f.first_error.as_deref());
        self.log_errors(&f.errors);
        let m = &self.ctx.metrics;
        let (ns, job) = (self.a.namespace.as_str(), self.job_name.as_str());
        m.commit_seconds
            .with_label_values(&[ns, job])
            .observe(took.as_secs_f64());
        m.batches.with_label_values(&[ns, job, "committed"]).inc();
        for (kind, n) in [
            ("total", c.total_rows),
            ("loaded", c.loaded_rows),
            ("error", c.error_rows),
            ("unselected", c.unselected_rows),
        ] {
            m.rows.with_label_values(&[ns, job, kind]).inc_by(n);
        }
        m.bytes
            .with_label_values(&[ns, job])
            .inc_by(c.received_bytes);
        let s = &mut self.status;
        s.counters.add(&c.into());
        s.counters.execute_time_ms += f.started.elapsed().as_millis() as i64;
        s.last_commit_version = Some(version);
        s.last_commit_time = Some(Time(now()));
        s.last_commit_label = Some(f.label);
        for (p, o) in &f.next {
            s.committed_offsets.insert(p.to_string(), *o);
        }
        s.message = None;
        self.lag
            .update(consumer, &mut self.status, &self.ctx.metrics);
        self.dirty = true;
        self.report(false).await?;
        Ok(None)
    }

    /// Counts the batches an earlier loop of this very task object committed but could not
    /// report (it was moved on, or stopped, between its commit and its status patch): they are
    /// the table's versions after the status' last commit that carry this task's UID.
    async fn adopt_uncounted_commits(&mut self) {
        // Versions up to `scanned_through` were read by an earlier resume of this loop.
        let since = self
            .status
            .last_commit_version
            .unwrap_or(-1)
            .max(self.scanned_through);
        let uid = self.task.metadata.uid.clone().unwrap_or_default();
        let infos = match self
            .sink
            .lock()
            .await
            .commit_infos_since(since, ADOPT_MAX_VERSIONS)
            .await
        {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(task = %self.a.name, error = %e, "reading recent commits");
                return;
            }
        };
        self.scanned_through = self.sink.lock().await.version();
        for (version, info) in infos {
            if commit_info::task_uid(&info) != Some(uid.as_str()) {
                continue;
            }
            let Some(c) = commit_info::batch_counters(&info) else {
                continue;
            };
            let s = &mut self.status;
            s.counters.add(&c);
            s.last_commit_version = Some(version);
            s.last_commit_label = info["label"].as_str().map(str::to_string);
            self.dirty = true;
            tracing::info!(task = %self.a.name, version, label = %info["label"], "counted a batch an earlier loop committed but did not report");
        }
    }

    fn count_aborted(&mut self) {
        self.status.counters.aborted_batches += 1;
        self.ctx
            .metrics
            .batches
            .with_label_values(&[&self.a.namespace, &self.job_name, "aborted"])
            .inc();
    }

    /// Backs off after a failure, or asks for the job to be paused once the same failure has
    /// used up its budget.
    async fn retry_or_pause(
        &mut self,
        kind: FailureKind,
        message: String,
    ) -> Result<BatchEnd, NotOurs> {
        match self.failures.record(kind, &message) {
            Verdict::RetryAfter(backoff) => {
                self.status.message = Some(format!(
                    "{message} (attempt {}, retrying in {}s)",
                    self.failures.count(),
                    backoff.as_secs()
                ));
                self.report(true).await?;
                Ok(BatchEnd::Retry { backoff })
            }
            Verdict::Pause(reason) => {
                self.request_pause(TaskPauseReason::RepeatedFailure, reason)
                    .await?;
                Ok(BatchEnd::Paused)
            }
        }
    }

    /// Before a commit: if this worker's Lease may have lapsed since the batch began (the worker
    /// was stopped, starved or cut off from the API server), the operator may have given the
    /// task to another worker or let it go, and a batch committed now would be counted nowhere.
    /// Then the task is read again: still ours, the commit goes ahead; moved or deleted, the loop
    /// ends without committing; unreadable, the batch is dropped and loaded again later.
    async fn check_still_ours(&mut self, mark: Option<Mark>) -> Result<Option<BatchEnd>, NotOurs> {
        let (Some(h), Some(mark)) = (self.ctx.heartbeat.as_ref(), mark) else {
            return Ok(None);
        };
        if h.held_since(mark) {
            return Ok(None);
        }
        let api: Api<RoutineLoadTask> = Api::namespaced(self.ctx.client.clone(), &self.a.namespace);
        match api.get_opt(&self.a.name).await {
            Ok(Some(t))
                if t.metadata.uid == self.task.metadata.uid
                    && t.spec.epoch == self.a.epoch
                    && t.metadata.deletion_timestamp.is_none() =>
            {
                tracing::info!(task = %self.a.name, "the Lease lapsed during the batch; the task is still ours");
                Ok(None)
            }
            Ok(_) => {
                tracing::warn!(task = %self.a.name, epoch = self.a.epoch, "the Lease lapsed during the batch and the task was moved or deleted: not committing it");
                Err(NotOurs)
            }
            Err(e) => {
                tracing::warn!(task = %self.a.name, error = %e, "the Lease lapsed during the batch and the task can't be read: not committing it yet");
                self.status.message = Some(format!(
                    "this worker's Lease lapsed and the task can't be read from the API server ({e}); the batch is loaded again once it can"
                ));
                self.dirty = true;
                Ok(Some(BatchEnd::Retry {
                    backoff: Duration::from_secs(2),
                }))
            }
        }
    }

    /// A failure outside a batch: the backoff to wait, or the loop's end after a pause request.
    async fn fail(&mut self, kind: FailureKind, message: String) -> Result<Duration, Exit> {
        match self.retry_or_pause(kind, message).await {
            Ok(BatchEnd::Retry { backoff }) => Ok(backoff),
            Ok(_) => Err(Exit::Stopped),
            Err(NotOurs) => Err(Exit::Fenced),
        }
    }

    async fn request_pause(
        &mut self,
        reason: TaskPauseReason,
        message: String,
    ) -> Result<(), NotOurs> {
        tracing::warn!(task = %self.a.name, reason = reason.as_str(), %message, "asking for the job to be paused");
        self.status.message = Some(message.clone());
        self.status.pause_request = Some(TaskPauseRequest { reason, message });
        self.report(true).await
    }

    /// Offsets out of range: nothing past them loads; the job pauses with the range.
    async fn pause_for_gaps(
        &mut self,
        gaps: &[OutOfRange],
        stop: &mut watch::Receiver<bool>,
    ) -> Exit {
        let message = gaps
            .iter()
            .map(|g| g.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        if self
            .request_pause(TaskPauseReason::OffsetOutOfRange, message)
            .await
            .is_err()
        {
            return Exit::Fenced;
        }
        let _ = stop.wait_for(|s| *s).await;
        Exit::Stopped
    }

    /// Writes the status: at once when `now`, else when something changed and the last write
    /// is `STATUS_INTERVAL` old, or as a heartbeat.
    async fn report(&mut self, now: bool) -> Result<(), NotOurs> {
        let due = now
            || (self.dirty && self.last_status.elapsed() >= STATUS_INTERVAL)
            || self.last_status.elapsed() >= HEARTBEAT_INTERVAL;
        if !due {
            return Ok(());
        }
        self.reporter.patch(&self.status).await?;
        self.dirty = false;
        self.last_status = Instant::now();
        Ok(())
    }

    /// Commits on the sink. Parquet encoding is CPU work: it runs off the async threads.
    async fn commit_blocking(
        &mut self,
        batch: Option<deltalake::arrow::record_batch::RecordBatch>,
        req: &CommitRequest,
    ) -> Result<Committed, SinkError> {
        let mut sink = self.sink.lock().await;
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(sink.commit(batch, req))
        })
    }

    /// A label unique to one commit attempt of this loop (StarRocks: each task's load has a
    /// label), recorded in the commit's `commitInfo`.
    fn label(&self, what: &str) -> String {
        format!(
            "{}-{}-e{}-{}-{what}",
            self.job_name,
            self.task.metadata.uid.as_deref().unwrap_or_default(),
            self.a.epoch,
            self.tag,
        )
    }

    /// `commitInfo.routineLoad`: who committed and what the batch counted.
    fn commit_info(
        &self,
        c: Option<&crate::engine::BatchCounters>,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut info = serde_json::Map::new();
        info.insert("job".into(), self.job_name.clone().into());
        info.insert("namespace".into(), self.a.namespace.clone().into());
        info.insert("task".into(), self.a.name.clone().into());
        info.insert(
            "taskUid".into(),
            self.task.metadata.uid.clone().unwrap_or_default().into(),
        );
        info.insert("epoch".into(), self.a.epoch.into());
        info.insert("worker".into(), self.ctx.pod_name.clone().into());
        if let Some(c) = c {
            info.insert("counters".into(), commit_info::counters_entry(&(*c).into()));
        }
        info
    }

    /// An Event on the job: a partition moved to an edited `kafka.offsets` entry.
    async fn publish_move(&self, p: i32, from: i64, to: i64, configured: &KafkaOffset) {
        let what = match to.cmp(&from) {
            std::cmp::Ordering::Greater => format!("skips offsets {from}..{}", to - 1),
            std::cmp::Ordering::Less => format!("loads offsets {to}..{} again", from - 1),
            std::cmp::Ordering::Equal => "changes nothing".to_string(),
        };
        let note = format!(
            "partition {p} moved from offset {from} to {to} (kafka.offsets entry {}): this {what}",
            String::from(configured.clone())
        );
        tracing::info!(task = %self.a.name, %note, "offsets applied");
        let event = Event {
            type_: EventType::Normal,
            reason: "OffsetsApplied".into(),
            note: Some(note),
            action: "ApplyOffsets".into(),
            secondary: None,
        };
        if let Err(e) = self
            .recorder
            .publish(&event, &self.job.object_ref(&()))
            .await
        {
            tracing::warn!(error = %e, "publishing the OffsetsApplied event");
        }
    }

    fn log_errors(&mut self, errors: &[ErrorRow]) {
        if errors.is_empty() {
            return;
        }
        if let Err(e) = append_error_log(&self.log_path, errors) {
            tracing::warn!(error = %e, "writing the error log");
        }
        self.status.error_log_url = Some(self.log_url.clone());
    }

    /// The last status, and the metrics of partitions this loop no longer reports.
    async fn finish(&mut self, exit: Exit) {
        // A loop fenced while a batch was committing lets that commit end (counted by nobody
        // here: the task is no longer this loop's) before it goes.
        if let Some(f) = self.inflight.take() {
            let _ = f.commit.await;
        }
        match exit {
            Exit::Stopped => {
                self.reporter
                    .patch_last(&self.status, &self.ctx.unwritten)
                    .await
            }
            Exit::Fenced => tracing::info!(
                task = %self.a.name,
                epoch = self.a.epoch,
                "the task was re-created or moved: this loop stops without writing its status"
            ),
        }
        for p in &self.partitions {
            let _ = self.ctx.metrics.lag.remove_label_values(&[
                &self.a.namespace,
                &self.job_name,
                &p.to_string(),
            ]);
        }
    }
}

/// Commits a batch; after an error whose outcome is unknown (the commit file may have been
/// written before a storage timeout) the table says whether this very batch landed. The
/// version, or why the batch is not in the table.
async fn commit_or_find(
    sink: &mut DeltaSink,
    parts: Vec<deltalake::arrow::record_batch::RecordBatch>,
    req: &CommitRequest,
    task: &str,
) -> Result<i64, String> {
    let since = sink.version();
    match sink.commit_parts(parts, req).await {
        Ok(done) => Ok(done.version),
        Err(e @ SinkError::Conflict(_)) => Err(format!("batch not committed: {e}")),
        Err(e) => {
            tracing::warn!(task, error = %e, "commit outcome unknown: reading the table");
            match sink.landed(since, &req.label).await {
                Ok(Some(v)) => Ok(v),
                Ok(None) => Err(format!("batch not committed: {e}")),
                Err(e2) => Err(format!(
                    "batch not committed: {e}; reading the table after it: {e2}"
                )),
            }
        }
    }
}

/// Tells loops apart in labels: a restart of the same task and epoch (on this worker or after
/// the worker restarted) gets a new tag.
fn loop_tag() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{:x}.{}",
        now().as_millisecond(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
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
        consumer: &BaseConsumer<KafkaErrors>,
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

/// Largest size of a task's error log before it is rotated (one older file is kept).
const ERROR_LOG_MAX_BYTES: u64 = 16 * 1024 * 1024;

fn append_error_log(path: &Path, errors: &[crate::engine::ErrorRow]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if std::fs::metadata(path).is_ok_and(|m| m.len() >= ERROR_LOG_MAX_BYTES) {
        let mut old = path.as_os_str().to_owned();
        old.push(".1");
        std::fs::rename(path, old)?;
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

/// Sleeps, returning early (true) when `stop` turns true.
async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.wait_for(|s| *s) => true,
    }
}
