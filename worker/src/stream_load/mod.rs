//! Stream Load (StarRocks' synchronous import) on the worker's HTTP server:
//! `PUT /api/{namespace}/{table}/_stream_load` carries the data, the response says what loaded.
//!
//! One load is one `Load` object (its name the label, unique per namespace) and at most one
//! Delta commit carrying the label in `commitInfo`, planned and executed by the same load plan
//! and engine as Routine Load tasks. The steps, in order: check the caller's token, read the
//! headers, take the label (create the `Load`), read the body (nothing is read before the
//! label is taken, so `Expect: 100-continue` clients send nothing for a refused load), load the
//! rows, check `max_filter_ratio`, commit, record the outcome.

pub mod auth;
pub mod request;
mod table_cache;

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::Add;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, Client};
use routine_load_api::load::{LoadSpec, LoadState, LoadStatus, LoadType};
use routine_load_api::names::{LOAD_WORKER_ANNOTATION, WORKER_FIELD_MANAGER};
use routine_load_api::{Load, LoadPlan, Table};
use serde::Serialize;

use crate::delta_sink::{CommitRequest, DEFAULT_CHECKPOINT_INTERVAL, DeltaSink, SinkError};
use crate::engine::{BatchCounters, ErrorRow, LoadEngine, SourceMessage};
use crate::load_memory::{LoadMemory, Reservation, body_cost};
use crate::metrics::{Metrics, StreamLoadOutcome, StreamLoadRows};
use crate::task_runner::secret_map;
use request::{BodyLimits, StreamLoadRequest};
use table_cache::TableCache;

/// The Delta transaction identity Stream Load commits under (no Kafka partitions: a load's
/// commit carries only data and its label).
const SINK_IDENTITY: &str = "stream-load";
/// Largest error log kept per load.
const ERROR_LOG_MAX_BYTES: usize = 16 * 1024 * 1024;

/// What the Stream Load endpoint needs from the worker.
#[derive(Clone)]
pub struct StreamLoadContext {
    pub client: Client,
    pub pod_name: String,
    pub error_log_dir: PathBuf,
    pub error_log_base_url: String,
    /// How large a body may be, and how much of it is held at once.
    pub limits: BodyLimits,
    /// The worker's metrics: every answer is counted.
    pub metrics: Arc<Metrics>,
    /// The worker's load memory, shared with its Routine Load tasks.
    pub load_memory: Arc<LoadMemory>,
    /// Labels this worker is loading now: a `Load` left unfinished by this worker and not in
    /// here belongs to an earlier run of the worker that stopped mid-load.
    active: Arc<Mutex<HashSet<(String, String)>>>,
    /// The Delta tables loads have read, kept for the next load of each.
    tables: Arc<TableCache>,
}

impl StreamLoadContext {
    pub fn new(
        client: Client,
        pod_name: String,
        error_log_dir: PathBuf,
        error_log_base_url: String,
        limits: BodyLimits,
        metrics: Arc<Metrics>,
        load_memory: Arc<LoadMemory>,
    ) -> Self {
        Self {
            client,
            pod_name,
            error_log_dir,
            error_log_base_url,
            limits,
            metrics,
            load_memory,
            active: Arc::default(),
            tables: Arc::default(),
        }
    }
}

/// The Stream Load route, to merge into the worker's router.
pub fn router(ctx: StreamLoadContext) -> Router {
    Router::new()
        .route("/api/{db}/{table}/_stream_load", put(stream_load))
        .with_state(ctx)
}

/// The Stream Load route of the plain HTTP port of a worker that serves HTTPS: every load is
/// refused (403, before any data is read), naming its HTTPS URL.
pub fn https_only_router(https_url: String) -> Router {
    Router::new().route(
        "/api/{db}/{table}/_stream_load",
        put(move |Path((db, table)): Path<(String, String)>| {
            let url = https_url.clone();
            async move {
                json_response(
                    StatusCode::FORBIDDEN,
                    &fail(
                        "",
                        format!(
                            "this worker takes Stream Load over HTTPS only: {}/api/{db}/{table}/_stream_load",
                            url.trim_end_matches('/')
                        ),
                    ),
                )
            }
        }),
    )
}

/// StarRocks' Stream Load response.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct LoadResponse {
    pub txn_id: i64,
    pub label: String,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub existing_job_status: Option<&'static str>,
    pub message: String,
    pub number_total_rows: u64,
    pub number_loaded_rows: u64,
    pub number_filtered_rows: u64,
    pub number_unselected_rows: u64,
    pub load_bytes: u64,
    pub load_time_ms: u64,
    pub begin_txn_time_ms: u64,
    pub stream_load_plan_time_ms: u64,
    pub read_data_time_ms: u64,
    pub write_data_time_ms: u64,
    pub commit_and_publish_time_ms: u64,
    #[serde(rename = "ErrorURL", skip_serializing_if = "Option::is_none")]
    pub error_url: Option<String>,
}

pub const STATUS_SUCCESS: &str = "Success";
pub const STATUS_LABEL_EXISTS: &str = "Label Already Exists";
pub const STATUS_FAIL: &str = "Fail";

/// What to do with a label that already has a `Load`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExistingLabel {
    /// Answer "Label Already Exists" with this state.
    Exists(LoadState),
    /// The earlier load was cancelled: the label is free again (as in StarRocks).
    Reuse,
    /// The earlier load never finished and its loader is gone: whether its commit landed is
    /// read from the table.
    ResolveFromTable,
}

/// Decides about an existing `Load` of the label: `loader_gone` when the worker that took it
/// is this one and no longer runs it, or its timeout has passed.
pub fn decide_existing(state: LoadState, loader_gone: bool) -> ExistingLabel {
    match state {
        LoadState::Finished => ExistingLabel::Exists(LoadState::Finished),
        LoadState::Cancelled => ExistingLabel::Reuse,
        _ if loader_gone => ExistingLabel::ResolveFromTable,
        s => ExistingLabel::Exists(s),
    }
}

/// The worker that took a `Load`'s label: the one its status names, else the one that created it
/// (a worker that stopped before the load started left no status).
pub fn loader(load: &Load) -> Option<&str> {
    load.status
        .as_ref()
        .and_then(|s| s.worker.as_deref())
        .or_else(|| {
            load.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(LOAD_WORKER_ANNOTATION))
                .map(String::as_str)
        })
}

fn json_response(code: StatusCode, body: &LoadResponse) -> Response {
    let mut text = serde_json::to_string_pretty(body).unwrap_or_default();
    text.push('\n');
    (
        code,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        text,
    )
        .into_response()
}

fn fail(label: &str, message: impl Into<String>) -> LoadResponse {
    LoadResponse {
        txn_id: -1,
        label: label.to_string(),
        status: STATUS_FAIL,
        message: message.into(),
        ..Default::default()
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// A generated label for a load without one.
fn generated_label() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    format!(
        "stream-load-{nanos:x}-{:x}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The error log file of a load (a plain name under the error-log directory).
pub fn error_log_file(namespace: &str, label: &str) -> String {
    format!("error_log_{namespace}_load_{label}.log")
}

/// The label written into the Delta commit (`commitInfo.routineLoad.label`).
pub fn commit_label(namespace: &str, label: &str) -> String {
    format!("stream-load/{namespace}/{label}")
}

async fn stream_load(
    State(ctx): State<StreamLoadContext>,
    Path((ns, table)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let (code, response, authorized) = answer(&ctx, &ns, &table, &headers, body, started).await;
    // The path's names label the metrics only for a caller allowed to load there: anyone else
    // could make up any number of them.
    let (ns_label, table_label) = if authorized {
        (ns.as_str(), table.as_str())
    } else {
        ("", "")
    };
    ctx.metrics.count_stream_load(
        ns_label,
        table_label,
        StreamLoadOutcome::of(code.as_u16(), response.status),
        started.elapsed().as_secs_f64(),
        StreamLoadRows {
            bytes: response.load_bytes,
            loaded: response.number_loaded_rows,
            filtered: response.number_filtered_rows,
            unselected: response.number_unselected_rows,
        },
    );
    json_response(code, &response)
}

/// The answer to one Stream Load request: the HTTP code, StarRocks' JSON, and whether the caller
/// may load in the namespace.
async fn answer(
    ctx: &StreamLoadContext,
    ns: &str,
    table: &str,
    headers: &HeaderMap,
    body: Body,
    started: Instant,
) -> (StatusCode, LoadResponse, bool) {
    let token = match auth::bearer_token(headers) {
        Ok(t) => t,
        Err(e) => return auth_failure(&e),
    };
    if let Err(e) = auth::authorize(&ctx.client, token, ns).await {
        return auth_failure(&e);
    }
    let (code, response) = load_request(ctx, ns, table, headers, body, started).await;
    (code, response, true)
}

/// An authorized request: its headers read, its label taken, its data loaded.
async fn load_request(
    ctx: &StreamLoadContext,
    ns: &str,
    table: &str,
    headers: &HeaderMap,
    body: Body,
    started: Instant,
) -> (StatusCode, LoadResponse) {
    let req = match request::parse_headers(headers) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, fail("", e.to_string())),
    };
    let label = req.label.clone().unwrap_or_else(generated_label);
    if let Some(len) = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > ctx.limits.limit_for(req.format, false).0
    {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            fail(&label, ctx.limits.too_large(req.format, false)),
        );
    }
    let key = (ns.to_string(), label.clone());
    let response = {
        let run = LoadRun {
            ctx,
            ns,
            table,
            label: &label,
            req: &req,
            started,
        };
        run.run(body).await
    };
    if let Ok(mut a) = ctx.active.lock() {
        a.remove(&key);
    }
    (StatusCode::OK, response)
}

fn auth_failure(e: &auth::AuthError) -> (StatusCode, LoadResponse, bool) {
    let code = match e {
        auth::AuthError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        auth::AuthError::Forbidden(_) => StatusCode::FORBIDDEN,
        auth::AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    (code, fail("", e.to_string()), false)
}

/// One load, from taking its label to recording its outcome.
struct LoadRun<'a> {
    ctx: &'a StreamLoadContext,
    ns: &'a str,
    table: &'a str,
    label: &'a str,
    req: &'a StreamLoadRequest,
    started: Instant,
}

/// A load's outcome before it is recorded.
struct Outcome {
    response: LoadResponse,
    state: LoadState,
    delta_version: Option<i64>,
}

/// What a load has read of its body so far.
#[derive(Default)]
struct ReadRows {
    /// Body bytes received.
    bytes: u64,
    /// The row number the next row gets (1 for the body's first row, as its "offset").
    next_offset: i64,
    counters: BatchCounters,
    /// Error rows kept for the error log (at most about its size; the counters count all).
    errors: Vec<ErrorRow>,
    errors_bytes: usize,
    /// Data files written for an append table, committed together at the end.
    files: Vec<Add>,
    /// A keyed table's loaded rows, merged together at the end.
    batches: Vec<RecordBatch>,
    /// Time spent loading rows and writing them (the rest of the reading is waiting for data).
    writing: Duration,
    /// The load memory a keyed load's rows hold until their MERGE.
    held: Option<Reservation>,
}

impl ReadRows {
    fn keep_errors(&mut self, errors: Vec<ErrorRow>) {
        for e in errors {
            if self.errors_bytes > ERROR_LOG_MAX_BYTES {
                break;
            }
            self.errors_bytes += e.row.len() + e.reason.len() + 64;
            self.errors.push(e);
        }
    }
}

/// What a Stream Load does after receiving more of its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NextStep {
    /// Read on.
    Read,
    /// Load the complete rows received so far.
    LoadRows,
    /// A chunk's worth of body without the row delimiter: fail the load.
    RowTooLong,
    /// The worker's load memory is full and this load holds its body whole: fail the load.
    OutOfMemory,
}

/// Pure: the next step of reading a body. `streamed`: a CSV body, loaded chunk by chunk;
/// `keyed`: its rows are held until the MERGE all the same; `full_chunk`: a chunk's worth of
/// bytes waits; `within_memory`: the worker's load memory holds what the load holds;
/// `complete_rows`: what waits contains whole rows. A full worker makes a streamed append load
/// write its rows early (smaller files, as StarRocks flushes to disk at its memory limit).
fn next_step(
    streamed: bool,
    keyed: bool,
    full_chunk: bool,
    within_memory: bool,
    complete_rows: bool,
) -> NextStep {
    let held_whole = !streamed || keyed;
    // Rows are loaded at a chunk's size, or earlier when the worker is full.
    let load_now = full_chunk || !within_memory;
    if !within_memory && held_whole {
        NextStep::OutOfMemory
    } else if !streamed || !load_now {
        NextStep::Read
    } else if complete_rows {
        NextStep::LoadRows
    } else if full_chunk {
        NextStep::RowTooLong
    } else {
        NextStep::Read
    }
}

/// Why a load that holds its body whole failed when the worker's load memory was full.
fn memory_exceeded(memory: &LoadMemory, keyed: bool) -> String {
    let held = if keyed {
        "its rows (a keyed table's rows are held until their MERGE)"
    } else {
        "its body (a JSON body is held whole)"
    };
    format!(
        "memory limit exceeded: this worker's loads (Routine Load batches and Stream Loads) hold \
         {} bytes of its load memory limit of {} bytes (the chart's worker.loadMemoryLimitBytes \
         / loadMemoryLimitPercent), and this load holds {held}; nothing was committed: retry \
         later, on another worker, or with a smaller body",
        memory.used(),
        memory.limit()
    )
}

impl LoadRun<'_> {
    fn loads(&self) -> Api<Load> {
        Api::namespaced(self.ctx.client.clone(), self.ns)
    }

    async fn run(&self, body: Body) -> LoadResponse {
        let begin = Instant::now();
        match self.take_label().await {
            Ok(None) => {}
            Ok(Some(exists)) => return exists,
            Err(message) => return fail(self.label, message),
        }
        let begin_ms = ms(begin.elapsed());
        let mut outcome = self.load(body).await;
        outcome.response.begin_txn_time_ms = begin_ms;
        outcome.response.load_time_ms = ms(self.started.elapsed());
        if let Err(e) = self.record(&outcome).await {
            // The commit (if any) stands; the Load keeps its last state until resolved.
            tracing::warn!(label = self.label, error = %e, "recording the load's outcome");
            outcome.response.message = format!(
                "{}; recording the outcome in Load {}/{} failed: {e}",
                outcome.response.message, self.ns, self.label
            );
        }
        outcome.response
    }

    /// Creates the `Load` of the label; `Some(response)` when the label is taken.
    async fn take_label(&self) -> Result<Option<LoadResponse>, String> {
        let key = (self.ns.to_string(), self.label.to_string());
        if let Ok(mut a) = self.ctx.active.lock()
            && !a.insert(key)
        {
            return Ok(Some(self.exists(LoadState::Loading)));
        }
        let mut load = Load::new(
            self.label,
            LoadSpec {
                table: self.table.to_string(),
                load_type: LoadType::StreamLoad,
                timeout_seconds: Some(self.req.timeout_secs),
            },
        );
        load.metadata.annotations = Some(BTreeMap::from([(
            LOAD_WORKER_ANNOTATION.to_string(),
            self.ctx.pod_name.clone(),
        )]));
        for _ in 0..3 {
            match self.loads().create(&PostParams::default(), &load).await {
                Ok(_) => return Ok(None),
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(format!("creating Load {}/{}: {e}", self.ns, self.label)),
            }
            let existing = self
                .loads()
                .get(self.label)
                .await
                .map_err(|e| format!("reading Load {}/{}: {e}", self.ns, self.label))?;
            let status = existing.status.clone().unwrap_or_default();
            let timeout = existing
                .spec
                .timeout_seconds
                .unwrap_or(request::DEFAULT_TIMEOUT_SECS);
            let since = status
                .load_start_time
                .as_ref()
                .or(existing.metadata.creation_timestamp.as_ref())
                .map(|t| {
                    k8s_openapi::jiff::Timestamp::now()
                        .duration_since(t.0)
                        .as_secs()
                })
                .unwrap_or(0);
            // Not in `active` (checked above): a Load of this worker's is an earlier run's.
            let loader_gone =
                loader(&existing) == Some(&self.ctx.pod_name) || since > timeout as i64 + 60;
            match decide_existing(status.state, loader_gone) {
                ExistingLabel::Exists(state) => return Ok(Some(self.exists(state))),
                ExistingLabel::ResolveFromTable => {
                    if let Some(version) = self.landed_earlier(&status).await? {
                        let mut s = status.clone();
                        s.state = LoadState::Finished;
                        s.delta_version = Some(version);
                        s.message = Some(format!(
                            "committed in Delta version {version}; found in the table after its loader stopped"
                        ));
                        s.load_finish_time = Some(now());
                        self.patch_status(&s).await.map_err(|e| e.to_string())?;
                        return Ok(Some(self.exists(LoadState::Finished)));
                    }
                }
                ExistingLabel::Reuse => {}
            }
            // Free the label: delete exactly the Load read above, then create it again.
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: existing.metadata.uid.clone(),
                    resource_version: existing.metadata.resource_version.clone(),
                }),
                ..Default::default()
            };
            match self.loads().delete(self.label, &dp).await {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => return Err(format!("deleting Load {}/{}: {e}", self.ns, self.label)),
            }
        }
        Err(format!(
            "label {} in namespace {} changed while taking it; retry",
            self.label, self.ns
        ))
    }

    fn exists(&self, state: LoadState) -> LoadResponse {
        LoadResponse {
            txn_id: -1,
            label: self.label.to_string(),
            status: STATUS_LABEL_EXISTS,
            existing_job_status: Some(state.as_str()),
            message: format!(
                "Label [{}] has already been used in namespace {} (state {})",
                self.label,
                self.ns,
                state.as_str()
            ),
            ..Default::default()
        }
    }

    /// Whether an unfinished earlier load of the label committed: its label in a table version
    /// after the one it started at.
    async fn landed_earlier(&self, status: &LoadStatus) -> Result<Option<i64>, String> {
        let Some(since) = status.table_version else {
            // It never read the table, so it never committed.
            return Ok(None);
        };
        let table = self.table_spec().await?;
        let (mut sink, _) = self.open_sink(&table).await?;
        sink.landed(since, &commit_label(self.ns, self.label))
            .await
            .map_err(|e| format!("reading the Delta table's history: {e}"))
    }

    async fn table_spec(&self) -> Result<Table, String> {
        Api::<Table>::namespaced(self.ctx.client.clone(), self.ns)
            .get(self.table)
            .await
            .map_err(|e| match e {
                kube::Error::Api(a) if a.code == 404 => {
                    format!("no Table {} in namespace {}", self.table, self.ns)
                }
                e => format!("reading Table {}/{}: {e}", self.ns, self.table),
            })
    }

    /// A sink on the load's Delta table, and the key its snapshot is kept under for the next load.
    async fn open_sink(&self, table: &Table) -> Result<(DeltaSink, String), String> {
        let secret = match &table.spec.credentials_secret {
            Some(s) => secret_map(&self.ctx.client, self.ns, &s.name)
                .await
                .map_err(|e| format!("{e:#}"))?,
            None => BTreeMap::new(),
        };
        let options = routine_load_api::delta_table::storage_options(&table.spec.location, &secret);
        let key = table_cache::cache_key(
            table.metadata.uid.as_deref().unwrap_or_default(),
            &table.spec.location,
            &options,
        );
        let kept = self.ctx.tables.get(&key);
        let (_, delta) = routine_load_api::delta_table::create_or_adopt_from(
            &table.spec.location,
            &table.spec,
            options,
            kept,
        )
        .await
        .map_err(|e| {
            self.ctx.tables.forget(&key);
            format!("checking the Delta table: {e}")
        })?;
        DeltaSink::from_table(delta, SINK_IDENTITY, &[], 0)
            .map(|s| {
                let s = s
                    .with_checkpoint_interval(0)
                    .with_checkpoint_at_versions(DEFAULT_CHECKPOINT_INTERVAL);
                (s, key)
            })
            .map_err(|e| format!("opening the Delta table: {e}"))
    }

    async fn patch_status(&self, status: &LoadStatus) -> Result<(), kube::Error> {
        let patch = serde_json::json!({
            "apiVersion": "routineload.io/v1alpha1",
            "kind": "Load",
            "status": status,
        });
        self.loads()
            .patch_status(
                self.label,
                &PatchParams {
                    field_manager: Some(WORKER_FIELD_MANAGER.into()),
                    ..Default::default()
                },
                &Patch::Merge(patch),
            )
            .await
            .map(|_| ())
    }

    /// Plans, reads, loads and commits; never records anything in the `Load` but the start.
    async fn load(&self, body: Body) -> Outcome {
        let cancelled = |response: LoadResponse| Outcome {
            response,
            state: LoadState::Cancelled,
            delta_version: None,
        };
        let plan_started = Instant::now();
        let table = match self.table_spec().await {
            Ok(t) => t,
            Err(m) => return cancelled(fail(self.label, m)),
        };
        let plan = request::job_spec(self.req, self.table)
            .map_err(|e| format!("the load's settings: {e}"))
            .and_then(|spec| {
                LoadPlan::build(&spec, self.table, &table.spec)
                    .map_err(|e| format!("planning the load: {e}"))
            });
        let plan = match plan {
            Ok(p) => Arc::new(p),
            Err(m) => return cancelled(fail(self.label, m)),
        };
        let mut engine = LoadEngine::new(plan.clone());
        let (mut sink, kept_key) = match self.open_sink(&table).await {
            // partial_update and merge_condition: how a row changes its key's stored row.
            Ok((s, key)) => (s.with_update_rule(plan.update.clone()), key),
            Err(m) => return cancelled(fail(self.label, m)),
        };
        let table_version = sink.version();
        let plan_ms = ms(plan_started.elapsed());
        let loading = LoadStatus {
            state: LoadState::Loading,
            worker: Some(self.ctx.pod_name.clone()),
            table_version: Some(table_version),
            load_start_time: Some(now()),
            ..Default::default()
        };
        if let Err(e) = self.patch_status(&loading).await {
            return cancelled(fail(self.label, format!("recording the load's start: {e}")));
        }

        let read_started = Instant::now();
        let deadline = Duration::from_secs(self.req.timeout_secs);
        let keyed = sink.key_model().model.is_keyed();
        let mut read = ReadRows {
            next_offset: 1,
            ..Default::default()
        };
        if let Err(m) = self
            .read_body(body, &mut engine, &sink, keyed, &mut read)
            .await
        {
            sink.discard_files(&read.files).await;
            return cancelled(fail(self.label, m));
        }
        let c = read.counters;
        let mut response = LoadResponse {
            txn_id: -1,
            label: self.label.to_string(),
            status: STATUS_FAIL,
            number_total_rows: c.total_rows,
            number_loaded_rows: c.loaded_rows,
            number_filtered_rows: c.error_rows,
            number_unselected_rows: c.unselected_rows,
            load_bytes: read.bytes,
            stream_load_plan_time_ms: plan_ms,
            read_data_time_ms: ms(read_started.elapsed().saturating_sub(read.writing)),
            write_data_time_ms: ms(read.writing),
            ..Default::default()
        };
        if !read.errors.is_empty() {
            response.error_url = self.write_error_log(&read.errors);
        }
        if let Err(m) =
            request::check_filter_ratio(c.error_rows, c.loaded_rows, self.req.max_filter_ratio)
        {
            response.message = match &response.error_url {
                Some(url) => format!("{m}. See {url}"),
                None => m,
            };
            sink.discard_files(&read.files).await;
            return cancelled(response);
        }
        if self.started.elapsed() > deadline {
            response.message = format!(
                "timeout: the load took longer than {} s",
                self.req.timeout_secs
            );
            sink.discard_files(&read.files).await;
            return cancelled(response);
        }

        let commit_started = Instant::now();
        let mut info = serde_json::Map::new();
        info.insert("type".into(), "STREAM_LOAD".into());
        info.insert("namespace".into(), self.ns.into());
        info.insert("load".into(), self.label.into());
        info.insert("table".into(), self.table.into());
        info.insert("loadedRows".into(), c.loaded_rows.into());
        info.insert("filteredRows".into(), c.error_rows.into());
        info.insert("unselectedRows".into(), c.unselected_rows.into());
        let commit = CommitRequest {
            label: commit_label(self.ns, self.label),
            info,
            ..Default::default()
        };
        let result = if keyed {
            // A keyed table merges the load's rows in one MERGE, in the body's order.
            sink.commit_parts(read.batches.clone(), &commit).await
        } else {
            sink.commit_files(read.files.clone(), &commit).await
        };
        let version = match result {
            Ok(done) => Ok(done.version),
            Err(SinkError::Conflict(m)) => {
                sink.discard_files(&read.files).await;
                Err(format!("committing to the Delta table: {m}"))
            }
            Err(e) => match sink.landed(table_version, &commit.label).await {
                // The commit landed although the call failed.
                Ok(Some(v)) => Ok(v),
                Ok(None) => {
                    sink.discard_files(&read.files).await;
                    Err(format!("committing to the Delta table: {e}"))
                }
                // The files stay: the commit that may have landed references them.
                Err(e2) => Err(format!(
                    "committing to the Delta table: {e}; whether it landed is unknown ({e2}): retry with the same label"
                )),
            },
        };
        response.commit_and_publish_time_ms = ms(commit_started.elapsed());
        match version {
            Ok(v) => {
                self.ctx.tables.put(kept_key, sink.table().clone());
                response.txn_id = v;
                response.status = STATUS_SUCCESS;
                response.message = "OK".into();
                Outcome {
                    response,
                    state: LoadState::Finished,
                    delta_version: Some(v),
                }
            }
            Err(m) => {
                response.message = m;
                cancelled(response)
            }
        }
    }

    /// Reads the body: a CSV body chunk by chunk as it arrives (each chunk's complete rows
    /// loaded at once), a JSON body whole; `Err` says why the load stops (time out, broken or
    /// too large a body, a row without its delimiter, a failed chunk).
    async fn read_body(
        &self,
        body: Body,
        engine: &mut LoadEngine,
        sink: &DeltaSink,
        keyed: bool,
        read: &mut ReadRows,
    ) -> Result<(), String> {
        let deadline = Duration::from_secs(self.req.timeout_secs);
        let limits = &self.ctx.limits;
        let (limit, _) = limits.limit_for(self.req.format, keyed);
        let streamed = BodyLimits::streamed(self.req.format);
        let delimiter = &self.req.row_delimiter;
        let mut chunks = body.into_data_stream();
        let mut pending: Vec<u8> = Vec::new();
        // What the load holds, in the worker's load memory: the bytes not loaded yet, and for a
        // keyed table everything loaded so far too (its rows wait for the MERGE).
        let mut reservation = self.ctx.load_memory.reservation();
        loop {
            let remaining = deadline.saturating_sub(self.started.elapsed());
            let bytes = match tokio::time::timeout(remaining, chunks.next()).await {
                Err(_) => {
                    return Err(format!(
                        "timeout: the body did not arrive within {} s",
                        self.req.timeout_secs
                    ));
                }
                Ok(None) => break,
                Ok(Some(Ok(bytes))) => bytes,
                Ok(Some(Err(e))) => return Err(format!("reading the body: {e}")),
            };
            read.bytes += bytes.len() as u64;
            if read.bytes > limit {
                return Err(limits.too_large(self.req.format, keyed));
            }
            pending.extend_from_slice(&bytes);
            let held = |pending: usize, read: u64| if keyed { read as usize } else { pending };
            let within_memory = reservation.resize(body_cost(held(pending.len(), read.bytes)));
            let full_chunk = pending.len() >= limits.chunk_bytes;
            let end = if streamed && (full_chunk || !within_memory) {
                request::complete_rows_end(&pending, delimiter)
            } else {
                0
            };
            match next_step(streamed, keyed, full_chunk, within_memory, end > 0) {
                NextStep::Read => {}
                NextStep::LoadRows => {
                    self.load_rows(engine, sink, keyed, &pending[..end], read)
                        .await?;
                    pending.drain(..end);
                    reservation.resize(body_cost(held(pending.len(), read.bytes)));
                }
                NextStep::RowTooLong => return Err(limits.row_too_long(delimiter)),
                NextStep::OutOfMemory => {
                    return Err(memory_exceeded(&self.ctx.load_memory, keyed));
                }
            }
        }
        // The rest: a CSV body's last rows, a JSON body whole.
        self.load_rows(engine, sink, keyed, &pending, read).await?;
        if keyed {
            read.held = Some(reservation);
        }
        Ok(())
    }

    /// Loads the rows of `bytes` (whole rows of the body, in order) with the engine and adds
    /// them to what the load has read: written as data files of an append table, kept for the
    /// MERGE of a keyed one.
    async fn load_rows(
        &self,
        engine: &mut LoadEngine,
        sink: &DeltaSink,
        keyed: bool,
        bytes: &[u8],
        read: &mut ReadRows,
    ) -> Result<(), String> {
        let started = Instant::now();
        let rows = request::split_rows(bytes, self.req);
        let first = read.next_offset;
        let source: Vec<SourceMessage<'_>> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| SourceMessage {
                partition: 0,
                offset: first + i as i64,
                payload: r,
                ..Default::default()
            })
            .collect();
        read.next_offset += rows.len() as i64;
        let loaded = tokio::task::block_in_place(|| engine.load(&source))
            .map_err(|e| format!("loading the rows: {e}"))?;
        drop(source);
        read.counters.add(&loaded.counters);
        read.keep_errors(loaded.errors);
        if keyed {
            read.batches.push(loaded.batch);
        } else {
            let files = sink
                .write_files(loaded.batch)
                .await
                .map_err(|e| format!("writing the load's data files: {e}"))?;
            read.files.extend(files);
        }
        read.writing += started.elapsed();
        Ok(())
    }

    /// Writes the load's error rows (StarRocks' reasons) and returns their URL.
    fn write_error_log(&self, errors: &[ErrorRow]) -> Option<String> {
        let file = error_log_file(self.ns, self.label);
        let path = self.ctx.error_log_dir.join(&file);
        let written = (|| -> std::io::Result<()> {
            std::fs::create_dir_all(&self.ctx.error_log_dir)?;
            let mut w = std::io::BufWriter::new(std::fs::File::create(&path)?);
            let mut bytes = 0;
            for e in errors {
                let line = e.to_string();
                bytes += line.len() + 1;
                if bytes > ERROR_LOG_MAX_BYTES {
                    break;
                }
                writeln!(w, "{line}")?;
            }
            w.flush()
        })();
        match written {
            Ok(()) => Some(format!(
                "{}/api/_load_error_log?file={file}",
                self.ctx.error_log_base_url.trim_end_matches('/')
            )),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "writing a load's error log");
                None
            }
        }
    }

    /// Writes the outcome into the `Load`.
    async fn record(&self, o: &Outcome) -> Result<(), kube::Error> {
        let r = &o.response;
        let status = LoadStatus {
            state: o.state,
            total_rows: r.number_total_rows,
            loaded_rows: if o.state == LoadState::Finished {
                r.number_loaded_rows
            } else {
                0
            },
            filtered_rows: r.number_filtered_rows,
            unselected_rows: r.number_unselected_rows,
            load_bytes: r.load_bytes,
            delta_version: o.delta_version,
            message: Some(r.message.clone()),
            error_url: r.error_url.clone(),
            worker: Some(self.ctx.pod_name.clone()),
            table_version: None,
            load_start_time: None,
            load_finish_time: Some(now()),
        };
        self.patch_status(&status).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_a_body_goes_on_by_its_kind_its_chunk_and_the_memory() {
        use NextStep::*;
        // (streamed, keyed, full chunk, within memory, complete rows, step)
        let cases = [
            // A CSV body into an append table: rows written per chunk, earlier when full.
            (true, false, false, true, true, Read),
            (true, false, true, true, true, LoadRows),
            (true, false, true, true, false, RowTooLong),
            (true, false, false, false, true, LoadRows),
            (true, false, false, false, false, Read),
            (true, false, true, false, false, RowTooLong),
            // Into a keyed table: loaded per chunk, but held until the MERGE.
            (true, true, false, true, true, Read),
            (true, true, true, true, true, LoadRows),
            (true, true, true, true, false, RowTooLong),
            (true, true, true, false, true, OutOfMemory),
            (true, true, false, false, true, OutOfMemory),
            // A JSON body, held whole.
            (false, false, true, true, false, Read),
            (false, false, false, false, false, OutOfMemory),
            (false, true, false, false, false, OutOfMemory),
        ];
        for (streamed, keyed, full_chunk, within, complete, want) in cases {
            assert_eq!(
                next_step(streamed, keyed, full_chunk, within, complete),
                want,
                "streamed {streamed}, keyed {keyed}, full chunk {full_chunk}, within memory \
                 {within}, complete rows {complete}"
            );
        }
    }

    #[test]
    fn an_existing_label_is_decided_by_its_load_state() {
        use ExistingLabel::*;
        use LoadState::*;
        // (state, loader gone, decision)
        let cases = [
            (Finished, false, Exists(Finished)),
            (Finished, true, Exists(Finished)),
            (Cancelled, false, Reuse),
            (Loading, false, Exists(Loading)),
            (Prepare, false, Exists(Prepare)),
            (Loading, true, ResolveFromTable),
            (Prepare, true, ResolveFromTable),
        ];
        for (state, gone, want) in cases {
            assert_eq!(decide_existing(state, gone), want, "{state:?}, gone {gone}");
        }
    }

    #[test]
    fn the_loader_is_the_status_worker_else_the_creator() {
        let with = |creator: Option<&str>, status_worker: Option<&str>| {
            let mut l = Load::new(
                "l",
                LoadSpec {
                    table: "t".into(),
                    load_type: LoadType::StreamLoad,
                    timeout_seconds: None,
                },
            );
            l.metadata.annotations = creator
                .map(|c| BTreeMap::from([(LOAD_WORKER_ANNOTATION.to_string(), c.to_string())]));
            l.status = status_worker.map(|w| LoadStatus {
                worker: Some(w.into()),
                ..Default::default()
            });
            l
        };
        // (creator annotation, status worker, loader)
        let cases = [
            (None, None, None),
            (Some("w0"), None, Some("w0")),
            (None, Some("w1"), Some("w1")),
            (Some("w0"), Some("w1"), Some("w1")),
        ];
        for (creator, worker, want) in cases {
            assert_eq!(
                loader(&with(creator, worker)),
                want,
                "{creator:?}, {worker:?}"
            );
        }
    }

    #[test]
    fn the_response_has_starrocks_field_names() {
        let r = LoadResponse {
            label: "l".into(),
            status: STATUS_LABEL_EXISTS,
            existing_job_status: Some("FINISHED"),
            error_url: Some("http://x".into()),
            ..Default::default()
        };
        let v = serde_json::to_value(&r).unwrap();
        for key in [
            "TxnId",
            "Label",
            "Status",
            "ExistingJobStatus",
            "Message",
            "NumberTotalRows",
            "NumberLoadedRows",
            "NumberFilteredRows",
            "NumberUnselectedRows",
            "LoadBytes",
            "LoadTimeMs",
            "BeginTxnTimeMs",
            "StreamLoadPlanTimeMs",
            "ReadDataTimeMs",
            "WriteDataTimeMs",
            "CommitAndPublishTimeMs",
            "ErrorURL",
        ] {
            assert!(v.get(key).is_some(), "{key} missing in {v}");
        }
    }
}
