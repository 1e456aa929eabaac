//! The RoutineLoadJob controller (StarRocks FE): validates a job against its table and Kafka,
//! drives its state machine, schedules its tasks on live workers and folds task statuses into the
//! job status.
//!
//! Steps are marked "client" (talks to the API server or Kafka) or "pure" (no client; unit tested
//! in `job_state`, `job_scheduler` and `task_scheduler`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use routine_load_api::job::{DesiredState, JobState, RoutineLoadJobStatus};
use routine_load_api::names::{
    JOB_LABEL, OPERATOR_FIELD_MANAGER, WORKER_FIELD_MANAGER, WORKER_LABEL,
};
use routine_load_api::table::TablePhase;
use routine_load_api::task::TaskPauseReason;
use routine_load_api::{LoadPlan, RoutineLoadJob, RoutineLoadTask, RoutineLoadTaskSpec, Table};
use serde_json::json;
use tracing::{info, warn};

use crate::job_scheduler;
use crate::job_state::{self, Blocker, Cause, Counters, Facts, Intent, Sample, TaskReport};
use crate::kafka_metadata::MetadataClients;
use crate::metrics::Metrics;
use crate::task_scheduler::{self, TaskPlacement, WorkerState};

/// Annotation on the job holding the counters of task epochs that ended (tasks removed or moved),
/// so the statistic survives pause/resume and reassignment.
pub const RETIRED_COUNTERS_ANNOTATION: &str = "routineload.io/retired-counters";
/// The job's condition that carries the cause of its state.
pub const READY_CONDITION: &str = "Ready";

/// Operator settings that shape scheduling.
#[derive(Debug, Clone)]
pub struct Config {
    /// At most this many tasks per job (StarRocks `max_routine_load_task_concurrent_num`).
    pub max_tasks_per_job: usize,
    /// At most this many tasks per worker (StarRocks `max_routine_load_task_num_per_be`).
    pub max_tasks_per_worker: usize,
    /// A worker Lease without `leaseDurationSeconds` counts as fresh for this long.
    pub default_lease_duration: Duration,
    /// How often a running job is reconciled to fold task statuses and detect dead workers.
    pub resync: Duration,
    /// Timeout of one Kafka metadata request.
    pub kafka_timeout: Duration,
    /// Watch only this namespace (a namespaced install); `None`: all namespaces.
    pub watch_namespace: Option<String>,
    /// The namespace of the workers' heartbeat Leases (where the worker pods run).
    pub worker_namespace: String,
}

impl Config {
    /// An API for `K` over the watched namespace(s).
    pub fn api<K>(&self, client: &Client) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match &self.watch_namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_tasks_per_job: 5,
            max_tasks_per_worker: 16,
            default_lease_duration: Duration::from_secs(15),
            resync: Duration::from_secs(5),
            kafka_timeout: Duration::from_secs(5),
            watch_namespace: None,
            worker_namespace: "default".into(),
        }
    }
}

/// Per-job memory that need not survive a restart: rate samples and the transient backoff.
#[derive(Default)]
struct JobMemory {
    samples: VecDeque<Sample>,
    attempts: u32,
}

/// Shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub config: Config,
    memory: Mutex<HashMap<String, JobMemory>>,
    /// Kafka clients for topic metadata, reused across reconciles.
    kafka_metadata: Arc<MetadataClients>,
}

impl Context {
    pub fn new(client: Client, recorder: Recorder, metrics: Arc<Metrics>, config: Config) -> Self {
        Context {
            client,
            recorder,
            metrics,
            config,
            memory: Mutex::new(HashMap::new()),
            kafka_metadata: Arc::new(MetadataClients::default()),
        }
    }
}

/// One variant per step that can fail; mapped to a metric label and to the requeue policy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("job has no namespace")]
    NoNamespace,
    #[error("listing the job's tasks: {0}")]
    ListTasks(#[source] kube::Error),
    #[error("reading table '{table}': {source}")]
    GetTable {
        table: String,
        #[source]
        source: kube::Error,
    },
    #[error("reading Kafka credentials secret '{secret}': {source}")]
    GetSecret {
        secret: String,
        #[source]
        source: kube::Error,
    },
    #[error("listing worker leases: {0}")]
    ListLeases(#[source] kube::Error),
    #[error("applying task '{task}': {source}")]
    ApplyTask {
        task: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting task '{task}': {source}")]
    DeleteTask {
        task: String,
        #[source]
        source: kube::Error,
    },
    #[error("recording retired counters on the job: {0}")]
    PatchCounters(#[source] kube::Error),
    #[error("patching job status: {0}")]
    PatchStatus(#[source] kube::Error),
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::NoNamespace => "no_namespace",
            Error::ListTasks(_) => "list_tasks",
            Error::GetTable { .. } => "get_table",
            Error::GetSecret { .. } => "get_secret",
            Error::ListLeases(_) => "list_leases",
            Error::ApplyTask { .. } => "apply_task",
            Error::DeleteTask { .. } => "delete_task",
            Error::PatchCounters(_) => "patch_counters",
            Error::PatchStatus(_) => "patch_status",
        }
    }
}

/// Run the controller until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let jobs: Api<RoutineLoadJob> = ctx.config.api(&ctx.client);
    let tables: Api<Table> = ctx.config.api(&ctx.client);
    let controller = Controller::new(jobs, watcher::Config::default());
    let store = controller.store();
    // Deleted jobs are not reconciled again: forget them from time to time.
    let pruner = {
        let (store, ctx) = (store.clone(), ctx.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(30)).await;
                let uids: std::collections::HashSet<String> =
                    store.state().iter().filter_map(|j| j.uid()).collect();
                ctx.metrics.retain_jobs(&uids);
                ctx.memory
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|uid, _| uids.contains(uid));
            }
        })
    };
    controller
        // A Table that appears, becomes ready or changes re-plans the jobs that load into it.
        .watches(tables, watcher::Config::default(), move |table: Table| {
            let ns = table.namespace();
            let name = table.name_any();
            store
                .state()
                .into_iter()
                .filter(|j| j.namespace() == ns && j.spec.table == name)
                .map(|j| ObjectRef::from_obj(&*j))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                warn!(error = %e, "job reconcile failed");
            }
        })
        .await;
    pruner.abort();
}

fn error_policy(job: Arc<RoutineLoadJob>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconcile_errors
        .with_label_values(&["job", error.metric_label()])
        .inc();
    warn!(job = %job.name_any(), error = %error, "job reconcile failed; retrying");
    Action::requeue(Duration::from_secs(10))
}

async fn reconcile(job: Arc<RoutineLoadJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    ctx.metrics.reconciles.with_label_values(&["job"]).inc();
    let result = reconcile_job(&job, &ctx).await;
    ctx.metrics
        .reconcile_duration
        .with_label_values(&["job"])
        .observe(started.elapsed().as_secs_f64());
    result
}

async fn reconcile_job(job: &RoutineLoadJob, ctx: &Context) -> Result<Action, Error> {
    let ns = job.namespace().ok_or(Error::NoNamespace)?;
    let name = job.name_any();
    let uid = job.uid().unwrap_or_default();
    if job.meta().deletion_timestamp.is_some() {
        // Tasks are owned by the job: the garbage collector removes them.
        ctx.metrics.set_job_state(&uid, None);
        return Ok(Action::await_change());
    }
    let client = &ctx.client;
    let task_api: Api<RoutineLoadTask> = Api::namespaced(client.clone(), &ns);
    let status = job.status.clone().unwrap_or_default();
    let current_cause = status
        .conditions
        .iter()
        .find(|c| c.type_ == READY_CONDITION)
        .and_then(|c| Cause::parse(&c.reason));

    // Dereference (client): the job's tasks.
    let tasks: Vec<RoutineLoadTask> = task_api
        .list(&ListParams::default().labels(&format!("{JOB_LABEL}={name}")))
        .await
        .map_err(Error::ListTasks)?
        .items
        .into_iter()
        .filter(|t| t.spec.job_uid == uid)
        .collect();

    // Dereference (client): table, plan, Kafka. Only a job that should run is checked.
    let final_state = status.state.is_some_and(|s| s.is_final());
    let mut partitions: Vec<i32> = Vec::new();
    let blocker = if job.spec.state == DesiredState::Running && !final_state {
        match check_table_and_plan(job, ctx, &ns).await? {
            Some(b) => Some(b),
            None => match kafka_partitions(job, ctx, &ns).await? {
                Ok(p) => {
                    partitions = p;
                    None
                }
                Err(b) => Some(b),
            },
        }
    } else {
        None
    };
    let error_window_exceeded = tasks.iter().find_map(|t| {
        t.status
            .as_ref()
            .filter(|s| s.epoch == t.spec.epoch)
            .and_then(|s| s.error_window_exceeded.clone())
            .map(|m| {
                format!(
                    "task {} (partitions {:?}): {m}",
                    t.name_any(),
                    t.spec.partitions
                )
            })
    });

    let task_pause = tasks.iter().find_map(|t| {
        t.status
            .as_ref()
            .filter(|s| s.epoch == t.spec.epoch)
            .and_then(|s| s.pause_request.clone())
            .map(|r| Blocker {
                cause: match r.reason {
                    TaskPauseReason::OffsetOutOfRange => Cause::OffsetOutOfRange,
                    TaskPauseReason::RepeatedFailure => Cause::RepeatedFailure,
                },
                message: format!(
                    "task {} (partitions {:?}): {}",
                    t.name_any(),
                    t.spec.partitions,
                    r.message
                ),
            })
    });

    // Decide (pure).
    let facts = Facts {
        desired: job.spec.state,
        current: status.state,
        current_cause,
        generation: job.metadata.generation.unwrap_or(0),
        observed_generation: status.observed_generation,
        blocker,
        error_window_exceeded,
        task_pause,
    };
    let intent = job_state::decide(&facts);
    // Error logs of every current task, including those about to be removed (a job paused by
    // its error window must still point at the rows that paused it).
    let mut known_error_log_urls = status.error_log_urls.clone();
    for u in tasks.iter().filter_map(|t| {
        t.status
            .as_ref()
            .filter(|s| s.epoch == t.spec.epoch)
            .and_then(|s| s.error_log_url.clone())
    }) {
        if !known_error_log_urls.contains(&u) {
            known_error_log_urls.push(u);
        }
    }

    let mut base = retired_counters(job);
    let (state, cause, reason, live_tasks) = match intent {
        Intent::Keep => {
            let state = status.state.unwrap_or(JobState::NeedSchedule);
            let live = if state.is_final() {
                remove_tasks(ctx, job, &task_api, &tasks, &mut base).await?;
                Vec::new()
            } else {
                tasks
            };
            (
                state,
                current_cause.unwrap_or(Cause::Scheduling),
                status.reason_of_state_changed.clone(),
                live,
            )
        }
        Intent::Halt {
            state,
            cause,
            reason,
        } => {
            remove_tasks(ctx, job, &task_api, &tasks, &mut base).await?;
            (state, cause, Some(reason), Vec::new())
        }
        Intent::Run => {
            let (live, live_workers) = schedule(
                ctx,
                job,
                &ns,
                &uid,
                &task_api,
                &tasks,
                &partitions,
                &mut base,
            )
            .await?;
            let (state, cause) = job_state::running_state(status.state, live.len());
            let reason = match cause {
                Cause::NoLiveWorker if live_workers == 0 => Some(format!(
                    "no live worker: no fresh worker Lease in namespace {}",
                    ctx.config.worker_namespace
                )),
                Cause::NoLiveWorker => Some(format!(
                    "no room on the {live_workers} live worker(s): each already runs \
                     ROUTINE_LOAD_MAX_TASKS_PER_WORKER={} tasks; add workers or raise the cap",
                    ctx.config.max_tasks_per_worker
                )),
                _ => None,
            };
            (state, cause, reason, live)
        }
    };

    // Fold task statuses (pure) and write the status (client).
    let now = Timestamp::now();
    let folded = {
        let mut memory = ctx.memory.lock().unwrap_or_else(|e| e.into_inner());
        let m = memory.entry(uid.clone()).or_default();
        let reports: Vec<TaskReport> = live_tasks
            .iter()
            .map(|t| TaskReport {
                epoch: t.spec.epoch,
                status: t.status.clone(),
            })
            .collect();
        job_state::fold(
            &base,
            &reports,
            &status.progress,
            &known_error_log_urls,
            &mut m.samples,
            now.as_millisecond(),
        )
    };
    let changed = status.state != Some(state) || current_cause != Some(cause);
    let mut new_status = RoutineLoadJobStatus {
        state: Some(state),
        statistic: folded.statistic,
        progress: folded.progress,
        lag: folded.lag,
        total_lag: folded.total_lag,
        reason_of_state_changed: reason.clone(),
        error_log_urls: folded.error_log_urls,
        current_task_num: folded.current_task_num,
        current_kafka_partitions: if partitions.is_empty() {
            status.current_kafka_partitions.clone()
        } else {
            partitions.clone()
        },
        create_time: status
            .create_time
            .clone()
            .or_else(|| job.metadata.creation_timestamp.clone())
            .or(Some(Time(now))),
        pause_time: status.pause_time.clone(),
        end_time: status.end_time.clone(),
        observed_generation: job.metadata.generation,
        conditions: Vec::new(),
    };
    if changed && state == JobState::Paused {
        new_status.pause_time = Some(Time(now));
    }
    if changed && state.is_final() {
        new_status.end_time = Some(Time(now));
    }
    if state == JobState::Running && folded_lag_missing(&new_status) {
        new_status.total_lag = status.total_lag;
    }
    new_status.conditions = vec![ready_condition(
        &status.conditions,
        state,
        cause,
        reason.as_deref(),
        job.metadata.generation,
        now,
    )];
    if new_status != status {
        patch_status(job, &ns, client, &new_status).await?;
    }
    ctx.metrics.set_job_state(&uid, Some(state));
    if changed {
        publish_state_event(ctx, job, status.state, state, cause, reason.as_deref()).await;
        info!(job = %name, namespace = %ns, from = ?status.state.map(|s| s.as_str()), to = state.as_str(), reason = cause.as_str(), "job state changed");
    }

    // Requeue policy.
    let mut memory = ctx.memory.lock().unwrap_or_else(|e| e.into_inner());
    let m = memory.entry(uid.clone()).or_default();
    Ok(match state {
        JobState::Running | JobState::NeedSchedule => {
            m.attempts = 0;
            Action::requeue(ctx.config.resync)
        }
        JobState::Paused if cause.is_transient() => {
            let secs = job_state::backoff_secs(m.attempts);
            m.attempts = m.attempts.saturating_add(1);
            Action::requeue(Duration::from_secs(secs))
        }
        // A missing table or a bad plan waits for the job or its table to change.
        _ => {
            m.attempts = 0;
            if state.is_final() {
                m.samples.clear();
            }
            Action::await_change()
        }
    })
}

fn folded_lag_missing(s: &RoutineLoadJobStatus) -> bool {
    s.total_lag.is_none()
}

/// Dereference (client) + validate (pure): the table exists, is ready, and the plan builds.
async fn check_table_and_plan(
    job: &RoutineLoadJob,
    ctx: &Context,
    ns: &str,
) -> Result<Option<Blocker>, Error> {
    let tables: Api<Table> = Api::namespaced(ctx.client.clone(), ns);
    let table_name = &job.spec.table;
    let table = tables
        .get_opt(table_name)
        .await
        .map_err(|source| Error::GetTable {
            table: table_name.clone(),
            source,
        })?;
    let Some(table) = table else {
        return Ok(Some(Blocker {
            cause: Cause::TableNotFound,
            message: format!(
                "table '{table_name}' not found in namespace '{ns}': create the Table before the job"
            ),
        }));
    };
    let phase = table.status.as_ref().and_then(|s| s.phase);
    if phase != Some(TablePhase::Ready) {
        let detail = table
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.status != "True"))
            .map(|c| format!(": {}", c.message))
            .unwrap_or_default();
        return Ok(Some(Blocker {
            cause: if phase == Some(TablePhase::Failed) {
                Cause::TableNotReady
            } else {
                Cause::TablePending
            },
            message: format!(
                "table '{table_name}' is not ready (phase {}){detail}",
                phase
                    .map(|p| format!("{p:?}"))
                    .unwrap_or_else(|| "unknown".into())
            ),
        }));
    }
    Ok(LoadPlan::build(&job.spec, table_name, &table.spec)
        .err()
        .map(|e| Blocker {
            cause: Cause::InvalidPlan,
            message: format!("invalid load plan for table '{table_name}': {e}"),
        }))
}

/// Dereference (client): the subscribed partitions from Kafka metadata.
async fn kafka_partitions(
    job: &RoutineLoadJob,
    ctx: &Context,
    ns: &str,
) -> Result<Result<Vec<i32>, Blocker>, Error> {
    let kafka = &job.spec.kafka;
    let mut props = kafka.properties.clone();
    if let Some(secret) = &kafka.credentials_secret {
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
        match secrets
            .get_opt(&secret.name)
            .await
            .map_err(|source| Error::GetSecret {
                secret: secret.name.clone(),
                source,
            })? {
            Some(s) => {
                for (k, v) in s.data.unwrap_or_default() {
                    props.insert(k, String::from_utf8_lossy(&v.0).into_owned());
                }
            }
            None => {
                return Ok(Err(Blocker {
                    cause: Cause::KafkaUnavailable,
                    message: format!(
                        "Kafka credentials secret '{}' not found in namespace '{ns}'",
                        secret.name
                    ),
                }));
            }
        }
    }
    let brokers = kafka.broker_list.clone();
    let topic = kafka.topic.clone();
    let timeout = ctx.config.kafka_timeout;
    let clients = ctx.kafka_metadata.clone();
    let fetched =
        tokio::task::spawn_blocking(move || clients.partitions(&brokers, &topic, &props, timeout))
            .await
            .unwrap_or_else(|e| Err(format!("metadata task failed: {e}")));
    let available = match fetched {
        Ok(p) => p,
        Err(e) => {
            return Ok(Err(Blocker {
                cause: Cause::KafkaUnavailable,
                message: format!(
                    "cannot read metadata of topic '{}' from brokers '{}': {e}",
                    kafka.topic, kafka.broker_list
                ),
            }));
        }
    };
    if kafka.partitions.is_empty() {
        return Ok(Ok(available));
    }
    let missing: Vec<i32> = kafka
        .partitions
        .iter()
        .copied()
        .filter(|p| !available.contains(p))
        .collect();
    if !missing.is_empty() {
        return Ok(Err(Blocker {
            cause: Cause::KafkaUnavailable,
            message: format!(
                "topic '{}' has no partition {missing:?} (it has {} partitions)",
                kafka.topic,
                available.len()
            ),
        }));
    }
    let mut p = kafka.partitions.clone();
    p.sort_unstable();
    p.dedup();
    Ok(Ok(p))
}

/// Dereference (client): live workers (Leases in the worker namespace) and the load other jobs,
/// in any watched namespace, put on them.
async fn live_workers(
    ctx: &Context,
    job_uid: &str,
) -> Result<(Vec<WorkerState>, BTreeMap<String, usize>), Error> {
    let leases: Api<Lease> = Api::namespaced(ctx.client.clone(), &ctx.config.worker_namespace);
    let list = leases
        .list(&ListParams::default())
        .await
        .map_err(Error::ListLeases)?;
    let now_ms = Timestamp::now().as_millisecond();
    let workers = worker_states(&list.items, now_ms, ctx.config.default_lease_duration);
    let tasks: Api<RoutineLoadTask> = ctx.config.api(&ctx.client);
    let all = tasks
        .list(&ListParams::default().labels(JOB_LABEL))
        .await
        .map_err(Error::ListTasks)?;
    let mut load = BTreeMap::new();
    for t in all.items.iter().filter(|t| t.spec.job_uid != job_uid) {
        *load.entry(t.spec.worker.clone()).or_insert(0) += 1;
    }
    Ok((workers, load))
}

/// Pure: whether a Lease is a worker's heartbeat: labelled with the worker label, or written by
/// the workers' field manager (the worker applies its Lease named after its pod).
pub fn is_worker_lease(l: &Lease) -> bool {
    l.labels().contains_key(WORKER_LABEL)
        || l.managed_fields()
            .iter()
            .any(|m| m.manager.as_deref() == Some(WORKER_FIELD_MANAGER))
}

/// Pure: worker liveness from worker Leases (`is_worker_lease`). The worker's name is the worker
/// label's value (falling back to the holder identity, then the Lease name); a Lease is fresh if
/// renewed within its duration.
pub fn worker_states(
    leases: &[Lease],
    now_ms: i64,
    default_duration: Duration,
) -> Vec<WorkerState> {
    let mut out: Vec<WorkerState> = leases
        .iter()
        .filter(|l| is_worker_lease(l))
        .map(|l| {
            let name = l
                .labels()
                .get(WORKER_LABEL)
                .filter(|v| !v.is_empty())
                .cloned()
                .or_else(|| l.spec.as_ref().and_then(|s| s.holder_identity.clone()))
                .unwrap_or_else(|| l.name_any());
            let spec = l.spec.as_ref();
            let duration_ms = spec
                .and_then(|s| s.lease_duration_seconds)
                .map(|s| i64::from(s) * 1000)
                .unwrap_or(default_duration.as_millis() as i64);
            let renewed = spec
                .and_then(|s| s.renew_time.as_ref().or(s.acquire_time.as_ref()))
                .map(|t| t.0.as_millisecond());
            let live = renewed.is_some_and(|r| now_ms - r <= duration_ms);
            WorkerState { name, live }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// One task as the plan wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedTask {
    pub name: String,
    pub partitions: Vec<i32>,
    pub worker: Option<String>,
    pub epoch: i64,
    /// Whether the task gets a new epoch (its partitions changed).
    pub new_epoch: bool,
}

/// Pure: match the new partition groups to the existing tasks (most shared partitions first),
/// naming new tasks `<job>-<n>`.
pub fn plan_tasks(
    job: &str,
    groups: &[Vec<i32>],
    existing: &[(String, Vec<i32>, String, i64)],
) -> Vec<PlannedTask> {
    let mut used = vec![false; existing.len()];
    let mut out = Vec::new();
    let mut next_index = 0usize;
    for g in groups {
        let best = existing
            .iter()
            .enumerate()
            .filter(|(i, _)| !used[*i])
            .map(|(i, (_, p, _, _))| (i, p.iter().filter(|x| g.contains(x)).count()))
            .filter(|(_, shared)| *shared > 0)
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)));
        match best {
            Some((i, _)) => {
                used[i] = true;
                let (name, parts, worker, epoch) = &existing[i];
                let same = parts == g;
                out.push(PlannedTask {
                    name: name.clone(),
                    partitions: g.clone(),
                    worker: Some(worker.clone()),
                    epoch: if same { *epoch } else { epoch + 1 },
                    new_epoch: !same,
                });
            }
            None => {
                let name = loop {
                    let candidate = format!("{job}-{next_index}");
                    next_index += 1;
                    if !existing.iter().any(|(n, ..)| *n == candidate)
                        && !out.iter().any(|p: &PlannedTask| p.name == candidate)
                    {
                        break candidate;
                    }
                };
                out.push(PlannedTask {
                    name,
                    partitions: g.clone(),
                    worker: None,
                    epoch: 0,
                    new_epoch: false,
                });
            }
        }
    }
    out
}

/// Schedule (client around pure steps): split partitions into tasks, place them on live workers,
/// and apply the result. Returns the tasks that now exist and how many workers are live.
#[allow(clippy::too_many_arguments)]
async fn schedule(
    ctx: &Context,
    job: &RoutineLoadJob,
    ns: &str,
    uid: &str,
    task_api: &Api<RoutineLoadTask>,
    tasks: &[RoutineLoadTask],
    partitions: &[i32],
    base: &mut Counters,
) -> Result<(Vec<RoutineLoadTask>, usize), Error> {
    let (workers, other_load) = live_workers(ctx, uid).await?;
    let live = workers.iter().filter(|w| w.live).count();
    let n = job_scheduler::task_count(
        job.spec.desired_concurrent_number,
        partitions.len(),
        live,
        ctx.config.max_tasks_per_job,
    );
    let current: Vec<Vec<i32>> = tasks.iter().map(|t| t.spec.partitions.clone()).collect();
    let groups = job_scheduler::split_partitions(partitions, n, &current);
    let existing: Vec<(String, Vec<i32>, String, i64)> = tasks
        .iter()
        .map(|t| {
            (
                t.name_any(),
                t.spec.partitions.clone(),
                t.spec.worker.clone(),
                t.spec.epoch,
            )
        })
        .collect();
    let mut planned = plan_tasks(&job.name_any(), &groups, &existing);
    let placements: Vec<TaskPlacement> = planned
        .iter()
        .map(|p| TaskPlacement {
            task: p.name.clone(),
            worker: p.worker.clone(),
        })
        .collect();
    let assignments = task_scheduler::assign(
        &placements,
        &workers,
        &other_load,
        ctx.config.max_tasks_per_worker,
    );
    for (p, a) in planned.iter_mut().zip(&assignments) {
        let existed = p.worker.is_some();
        if existed && a.moved && !p.new_epoch {
            p.epoch += 1;
            p.new_epoch = true;
            ctx.metrics
                .scheduling_decisions
                .with_label_values(&["moved"])
                .inc();
        } else if p.new_epoch {
            ctx.metrics
                .scheduling_decisions
                .with_label_values(&["resplit"])
                .inc();
        } else if !existed && a.worker.is_some() {
            ctx.metrics
                .scheduling_decisions
                .with_label_values(&["created"])
                .inc();
        }
        p.worker = a.worker.clone();
    }
    // Tasks that will no longer exist: retire their counters first. (A moved or re-split task
    // keeps its counters: the worker taking it over continues them.)
    let keep: Vec<&PlannedTask> = planned.iter().filter(|p| p.worker.is_some()).collect();
    let mut retire = Counters::default();
    let mut to_delete = Vec::new();
    for t in tasks {
        let planned_task = keep.iter().find(|p| p.name == t.name_any());
        let ends = match planned_task {
            None => {
                to_delete.push(t);
                true
            }
            Some(_) => false,
        };
        if ends && let Some(s) = t.status.as_ref() {
            retire.add(&s.counters);
        }
    }
    if retire != Counters::default() {
        base.add(&retire);
        patch_retired_counters(job, ns, &ctx.client, base).await?;
    }
    for t in to_delete {
        ctx.metrics
            .scheduling_decisions
            .with_label_values(&["removed"])
            .inc();
        delete_task(task_api, &t.name_any()).await?;
    }
    let mut result = Vec::new();
    for p in keep {
        let spec = RoutineLoadTaskSpec {
            job: job.name_any(),
            job_uid: uid.to_string(),
            partitions: p.partitions.clone(),
            worker: p.worker.clone().unwrap_or_default(),
            epoch: p.epoch,
            job_generation: job.metadata.generation.unwrap_or(0),
        };
        let existing = tasks.iter().find(|t| t.name_any() == p.name);
        // A job spec edit reaches the task through jobGeneration (the worker reloads the plan).
        let unchanged = existing.is_some_and(|t| t.spec == spec);
        if unchanged {
            result.push(existing.cloned().expect("checked above"));
            continue;
        }
        let applied = apply_task(task_api, job, &p.name, &spec).await?;
        result.push(applied);
    }
    Ok((result, live))
}

async fn apply_task(
    api: &Api<RoutineLoadTask>,
    job: &RoutineLoadJob,
    name: &str,
    spec: &RoutineLoadTaskSpec,
) -> Result<RoutineLoadTask, Error> {
    let owner = job.controller_owner_ref(&());
    let body = json!({
        "apiVersion": "routineload.io/v1alpha1",
        "kind": "RoutineLoadTask",
        "metadata": {
            "name": name,
            "labels": { JOB_LABEL: job.name_any(), WORKER_LABEL: spec.worker },
            "ownerReferences": owner.into_iter().collect::<Vec<_>>(),
        },
        "spec": spec,
    });
    api.patch(
        name,
        &PatchParams::apply(OPERATOR_FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|source| Error::ApplyTask {
        task: name.to_string(),
        source,
    })
}

async fn delete_task(api: &Api<RoutineLoadTask>, name: &str) -> Result<(), Error> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(Error::DeleteTask {
            task: name.to_string(),
            source,
        }),
    }
}

/// Remove every task of a job that stops running, keeping its counters.
async fn remove_tasks(
    ctx: &Context,
    job: &RoutineLoadJob,
    api: &Api<RoutineLoadTask>,
    tasks: &[RoutineLoadTask],
    base: &mut Counters,
) -> Result<(), Error> {
    if tasks.is_empty() {
        return Ok(());
    }
    let mut retire = Counters::default();
    for t in tasks {
        if let Some(s) = t.status.as_ref() {
            retire.add(&s.counters);
        }
    }
    if retire != Counters::default() {
        base.add(&retire);
        let ns = job.namespace().unwrap_or_default();
        patch_retired_counters(job, &ns, &ctx.client, base).await?;
    }
    for t in tasks {
        ctx.metrics
            .scheduling_decisions
            .with_label_values(&["removed"])
            .inc();
        delete_task(api, &t.name_any()).await?;
    }
    Ok(())
}

fn retired_counters(job: &RoutineLoadJob) -> Counters {
    job.annotations()
        .get(RETIRED_COUNTERS_ANNOTATION)
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default()
}

async fn patch_retired_counters(
    job: &RoutineLoadJob,
    ns: &str,
    client: &Client,
    base: &Counters,
) -> Result<(), Error> {
    let api: Api<RoutineLoadJob> = Api::namespaced(client.clone(), ns);
    let value = serde_json::to_string(base).unwrap_or_default();
    let body = json!({
        "apiVersion": "routineload.io/v1alpha1",
        "kind": "RoutineLoadJob",
        "metadata": { "name": job.name_any(), "annotations": { RETIRED_COUNTERS_ANNOTATION: value } },
    });
    api.patch(
        &job.name_any(),
        &PatchParams::apply(OPERATOR_FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(Error::PatchCounters)?;
    Ok(())
}

async fn patch_status(
    job: &RoutineLoadJob,
    ns: &str,
    client: &Client,
    status: &RoutineLoadJobStatus,
) -> Result<(), Error> {
    let api: Api<RoutineLoadJob> = Api::namespaced(client.clone(), ns);
    let body = json!({
        "apiVersion": "routineload.io/v1alpha1",
        "kind": "RoutineLoadJob",
        "metadata": { "name": job.name_any() },
        "status": status,
    });
    api.patch_status(
        &job.name_any(),
        &PatchParams::apply(OPERATOR_FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(Error::PatchStatus)?;
    Ok(())
}

/// Pure: the `Ready` condition for a state, keeping the transition time when nothing changed.
pub fn ready_condition(
    previous: &[Condition],
    state: JobState,
    cause: Cause,
    reason: Option<&str>,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if state == JobState::Running {
        "True"
    } else {
        "False"
    };
    let message = reason
        .map(str::to_string)
        .unwrap_or_else(|| format!("job is {}", state.as_str()));
    let last = previous
        .iter()
        .find(|c| c.type_ == READY_CONDITION && c.status == status && c.reason == cause.as_str())
        .map(|c| c.last_transition_time.clone());
    Condition {
        type_: READY_CONDITION.into(),
        status: status.into(),
        reason: cause.as_str().into(),
        message,
        observed_generation: generation,
        last_transition_time: last.unwrap_or(Time(now)),
    }
}

async fn publish_state_event(
    ctx: &Context,
    job: &RoutineLoadJob,
    from: Option<JobState>,
    to: JobState,
    cause: Cause,
    reason: Option<&str>,
) {
    let warning = matches!(
        cause,
        Cause::ErrorWindowExceeded
            | Cause::OffsetOutOfRange
            | Cause::RepeatedFailure
            | Cause::TableNotFound
            | Cause::TableNotReady
            | Cause::InvalidPlan
            | Cause::KafkaUnavailable
            | Cause::NoLiveWorker
    );
    // The action is part of the key kube's Recorder groups repeated events by: a distinct action
    // per kind of transition keeps a resume from being folded into the first schedule's event.
    let action = match (from, to) {
        (_, JobState::Stopped) => "Stop",
        (_, JobState::Cancelled) => "Cancel",
        (_, JobState::Paused) => "Pause",
        (Some(JobState::Paused), JobState::NeedSchedule) => "Resume",
        (_, JobState::NeedSchedule) => "Schedule",
        (_, JobState::Running) => "Run",
    };
    let from = from.map(|s| s.as_str()).unwrap_or("NEW");
    let note = match reason {
        Some(r) => format!("{from} -> {}: {r}", to.as_str()),
        None => format!("{from} -> {}", to.as_str()),
    };
    let event = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: cause.as_str().into(),
        note: Some(note.chars().take(1000).collect()),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &job.object_ref(&())).await {
        warn!(job = %job.name_any(), error = %e, "failed to publish event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, MicroTime};

    fn lease(
        name: &str,
        worker: Option<&str>,
        renewed_ms: Option<i64>,
        duration: Option<i32>,
    ) -> Lease {
        let mut l = Lease::default();
        l.metadata.name = Some(name.into());
        if let Some(w) = worker {
            l.metadata.labels = Some([(WORKER_LABEL.to_string(), w.to_string())].into());
        }
        l.spec = Some(LeaseSpec {
            renew_time: renewed_ms
                .map(|ms| MicroTime(Timestamp::from_millisecond(ms).expect("valid"))),
            lease_duration_seconds: duration,
            ..Default::default()
        });
        l
    }

    #[test]
    fn workers_are_live_while_their_lease_is_fresh() {
        let now = 100_000;
        let leases = vec![
            lease("worker-a", Some("worker-a"), Some(now - 1_000), None),
            lease("lease-b", Some("worker-b"), Some(now - 16_000), None),
            lease("worker-c", Some(""), Some(now - 16_000), Some(30)),
            lease("worker-d", Some("worker-d"), None, None),
            // Not a worker's: the operator's leader Lease.
            lease("routine-load-operator", None, Some(now), None),
        ];
        // A worker that applies its Lease with the worker field manager, unlabelled.
        let mut e = lease("worker-e", None, Some(now), None);
        e.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
            manager: Some(WORKER_FIELD_MANAGER.into()),
            ..Default::default()
        }]);
        let leases = [leases, vec![e]].concat();
        let got: Vec<(String, bool)> = worker_states(&leases, now, Duration::from_secs(15))
            .into_iter()
            .map(|w| (w.name, w.live))
            .collect();
        assert_eq!(
            got,
            vec![
                ("worker-a".into(), true),
                ("worker-b".into(), false),
                ("worker-c".into(), true),
                ("worker-d".into(), false),
                ("worker-e".into(), true),
            ]
        );
    }

    #[test]
    fn plan_keeps_task_names_and_bumps_epoch_when_partitions_change() {
        let existing = vec![
            ("j-0".to_string(), vec![0, 1], "w1".to_string(), 3),
            ("j-1".to_string(), vec![2, 3], "w2".to_string(), 0),
        ];
        // A new partition 4 joins j-0's group; j-1 keeps its epoch.
        let plan = plan_tasks("j", &[vec![0, 1, 4], vec![2, 3]], &existing);
        assert_eq!(plan[0].name, "j-0");
        assert_eq!((plan[0].epoch, plan[0].new_epoch), (4, true));
        assert_eq!(plan[1].name, "j-1");
        assert_eq!((plan[1].epoch, plan[1].new_epoch), (0, false));
        // Concurrency up: a third task gets a fresh name.
        let plan = plan_tasks("j", &[vec![0], vec![2, 3], vec![1]], &existing);
        let names: Vec<&str> = plan.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, vec!["j-0", "j-1", "j-2"]);
        assert_eq!(plan[2].worker, None);
        assert_eq!(plan[2].epoch, 0);
    }

    #[test]
    fn ready_condition_keeps_transition_time_while_unchanged() {
        let t0 = Timestamp::from_second(1_000).expect("valid");
        let t1 = Timestamp::from_second(2_000).expect("valid");
        let c = ready_condition(&[], JobState::Running, Cause::Running, None, Some(1), t0);
        assert_eq!(c.status, "True");
        let again = ready_condition(
            std::slice::from_ref(&c),
            JobState::Running,
            Cause::Running,
            None,
            Some(2),
            t1,
        );
        assert_eq!(again.last_transition_time, Time(t0));
        let paused = ready_condition(
            &[c],
            JobState::Paused,
            Cause::UserPaused,
            Some("paused by user"),
            Some(2),
            t1,
        );
        assert_eq!(
            (paused.status.as_str(), paused.message.as_str()),
            ("False", "paused by user")
        );
        assert_eq!(paused.last_transition_time, Time(t1));
    }
}
