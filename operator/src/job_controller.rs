//! The RoutineLoadJob controller (StarRocks FE): validates a job against its table and Kafka,
//! drives its state machine, schedules its tasks on live workers and folds task statuses into the
//! job status.
//!
//! A reconcile is dereference -> plan -> apply: the controller gathers the job's inputs
//! ("client": the API server and Kafka), [`job_plan::plan`] decides everything from them (pure,
//! unit tested there and in `job_state`, `job_scheduler` and `task_scheduler`), and the
//! controller applies the plan.
//!
//! Inputs come from [`caches`](crate::caches): reflectors of the tasks (by the job label), of
//! the worker Leases (by the worker label) and of the Tables. A change to a task reconciles its
//! job (the tasks' reflector is the controller's owned stream), a change to a Table the jobs
//! loading into it; the resync only catches what no object says (a Lease that stops being
//! renewed, new Kafka partitions). A plan that writes tasks is made again on a fresh read first.
//! The status is written only when something users see changes; the load rates alone are
//! refreshed at most every [`RATE_REFRESH`].

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use routine_load_api::job::{DesiredState, JobState, RoutineLoadJobStatus};
use routine_load_api::names::{
    JOB_LABEL, OPERATOR_FIELD_MANAGER, TASK_FINALIZER, WORKER_FIELD_MANAGER, WORKER_LABEL,
};
use routine_load_api::table::TablePhase;
use routine_load_api::{LoadPlan, RoutineLoadJob, RoutineLoadTask, RoutineLoadTaskSpec, Table};
use routine_load_api::{commit_info, delta_table};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::caches::{Caches, Expectations, GuardedLease, GuardedTable, GuardedTask};
use crate::error_window::WindowLimits;
use crate::job_plan::{self, KafkaRead, PlanInputs, ReleaseReason, TaskRelease};
use crate::job_state::{self, Blocker, Cause, Counters, Sample, TaskReport};
use crate::kafka_metadata::MetadataClients;
use crate::leader::LeaderGate;
use crate::metrics::Metrics;
use crate::task_scheduler::WorkerState;
use crate::unreported;

/// Annotation on the job where older operators kept the counters of removed tasks; read only
/// until the status has `retiredCounters`.
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
    /// How long a failure that may be transient (Kafka metadata, every worker Lease, the
    /// table's storage) is ridden out, tasks untouched, before it changes a job or a table.
    pub transient_grace: Duration,
    /// How long a deleted task waits for its live worker to release it before the operator
    /// lets it go anyway.
    pub task_release_timeout: Duration,
    /// Broker addresses the operator dials instead of those in a job's `kafka.brokerList`
    /// (`from -> to`), when it reaches Kafka by another route than the workers.
    pub kafka_bootstrap_overrides: BTreeMap<String, String>,
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
            transient_grace: Duration::from_secs(60),
            task_release_timeout: Duration::from_secs(600),
            kafka_bootstrap_overrides: BTreeMap::new(),
        }
    }
}

/// At most this many job reconciles at once: a burst (a thousand jobs created, a restart) queues
/// instead of flooding the API server with requests, so the leader Lease renewal still gets
/// through.
pub const JOB_RECONCILE_CONCURRENCY: u16 = 16;

/// How often the load rates alone (`loadRowsRate`, `receivedBytesRate`) are rewritten; any
/// other change of the status is written at once, with fresh rates.
pub const RATE_REFRESH: Duration = Duration::from_secs(30);

/// Per-job memory that need not survive a restart: rate samples, the transient backoff, the
/// task writes the cache has not shown yet, and when the rates were last written.
#[derive(Default)]
struct JobMemory {
    samples: VecDeque<Sample>,
    attempts: u32,
    expected: Expectations,
    rates_written_ms: Option<i64>,
    /// When the table was last read for unreported tasks.
    unreported_read_ms: Option<i64>,
}

/// Shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub config: Config,
    /// Open while this replica holds the leader lease; checked before every write.
    pub gate: Arc<LeaderGate>,
    memory: Mutex<HashMap<String, JobMemory>>,
    /// Kafka clients for topic metadata, reused across reconciles.
    kafka_metadata: Arc<MetadataClients>,
    /// When this operator saw each worker Lease record change (client-go's observed time).
    lease_observations: Mutex<HashMap<String, LeaseObservation>>,
    /// The origin of the monotonic milliseconds in `lease_observations`.
    started: Instant,
    /// The job controller's reflectors, once it runs.
    caches: OnceLock<Caches>,
}

impl Context {
    pub fn new(
        client: Client,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        config: Config,
        gate: Arc<LeaderGate>,
    ) -> Self {
        Context {
            client,
            recorder,
            metrics,
            config,
            gate,
            memory: Mutex::new(HashMap::new()),
            kafka_metadata: Arc::new(MetadataClients::default()),
            lease_observations: Mutex::new(HashMap::new()),
            started: Instant::now(),
            caches: OnceLock::new(),
        }
    }

    /// Refuses a write once the leader lease may no longer be ours.
    /// Milliseconds since this operator started (a monotonic clock).
    /// The job controller's reflectors, once it runs.
    pub fn caches(&self) -> Option<&Caches> {
        self.caches.get()
    }

    fn now_ms(&self) -> i64 {
        i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    pub fn gate_check(&self) -> Result<(), Error> {
        if self.gate.holds() {
            Ok(())
        } else {
            Err(Error::NotLeader)
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
    #[error("reading Kafka credentials secret '{secret}': {source}")]
    GetSecret {
        secret: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "the operator's caches of {} have not listed after {CACHE_WAIT_SECONDS} s: its list/watch \
         requests fail (check the operator's log, its ClusterRole and the API server)",
        .0.join(", ")
    )]
    CachesNotReady(Vec<&'static str>),
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
    #[error("removing the finalizer of deleted task '{task}': {source}")]
    ReleaseTask {
        task: String,
        #[source]
        source: kube::Error,
    },
    #[error("recording retired counters on the job: {0}")]
    PatchCounters(#[source] kube::Error),
    #[error("patching job status: {0}")]
    PatchStatus(#[source] kube::Error),
    #[error("not writing: the leader lease is not held (renewal overdue)")]
    NotLeader,
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::NoNamespace => "no_namespace",
            Error::ListTasks(_) => "list_tasks",
            Error::GetSecret { .. } => "get_secret",
            Error::CachesNotReady(_) => "caches_not_ready",
            Error::ApplyTask { .. } => "apply_task",
            Error::DeleteTask { .. } => "delete_task",
            Error::ReleaseTask { .. } => "release_task",
            Error::PatchCounters(_) => "patch_counters",
            Error::PatchStatus(_) => "patch_status",
            Error::NotLeader => "not_leader",
        }
    }
}

/// How long a reconcile waits for the caches' first list before it fails saying which.
const CACHE_WAIT_SECONDS: u64 = 30;

/// Run the controller until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let jobs: Api<DeserializeGuard<RoutineLoadJob>> = ctx.config.api(&ctx.client);
    let (task_store, task_writer) = reflector::store::<GuardedTask>();
    let (lease_store, lease_writer) = reflector::store::<GuardedLease>();
    let (table_store, table_writer) = reflector::store::<GuardedTable>();
    let _ = ctx.caches.set(Caches {
        tasks: task_store,
        leases: lease_store,
        tables: table_store,
    });
    let tasks = reflector::reflector(
        task_writer,
        watcher(
            ctx.config.api::<GuardedTask>(&ctx.client),
            watcher::Config::default().labels(JOB_LABEL),
        ),
    )
    .default_backoff()
    .touched_objects();
    let tables = reflector::reflector(
        table_writer,
        watcher(
            ctx.config.api::<GuardedTable>(&ctx.client),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .touched_objects();
    // Worker Leases: noted as they change (the time this operator saw each record change is
    // what liveness is judged by); the resync looks at them.
    let leases = {
        let api: Api<GuardedLease> =
            Api::namespaced(ctx.client.clone(), &ctx.config.worker_namespace);
        let stream = reflector::reflector(
            lease_writer,
            watcher(api, watcher::Config::default().labels(WORKER_LABEL)),
        )
        .default_backoff();
        let ctx = ctx.clone();
        tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(e) => note_lease_event(&ctx, e),
                    Err(e) => warn!(error = %e, "watching worker Leases"),
                }
            }
        })
    };
    let controller = Controller::new(jobs, watcher::Config::default())
        .with_config(controller::Config::default().concurrency(JOB_RECONCILE_CONCURRENCY));
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
        // A task that changes reconciles its job (the owner reference).
        .owns_stream(tasks)
        // A Table that appears, becomes ready, changes or is deleted re-plans the jobs that
        // load into it.
        .watches_stream(tables, move |table: GuardedTable| {
            let ns = table.namespace();
            let name = table.name_any();
            store
                .state()
                .into_iter()
                .filter(|j| j.namespace() == ns && j.0.as_ref().is_ok_and(|j| j.spec.table == name))
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
    leases.abort();
}

/// Notes a worker Lease watch event: when this operator saw each Lease record change.
fn note_lease_event(ctx: &Context, event: watcher::Event<GuardedLease>) {
    let now_ms = ctx.now_ms();
    let mut seen = ctx
        .lease_observations
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    match event {
        watcher::Event::Apply(l) | watcher::Event::InitApply(l) => {
            if let Ok(l) = &l.0 {
                observe_lease(&mut seen, l, now_ms);
            }
        }
        watcher::Event::Delete(l) => {
            seen.remove(&l.name_any());
        }
        watcher::Event::InitDone => {
            if let Some(c) = ctx.caches.get() {
                let listed: std::collections::HashSet<String> =
                    c.leases.state().iter().map(|l| l.name_any()).collect();
                seen.retain(|k, _| listed.contains(k));
            }
        }
        watcher::Event::Init => {}
    }
}

fn error_policy(
    job: Arc<DeserializeGuard<RoutineLoadJob>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    ctx.metrics
        .reconcile_errors
        .with_label_values(&["job", error.metric_label()])
        .inc();
    warn!(job = %job.name_any(), error = %error, "job reconcile failed; retrying");
    Action::requeue(Duration::from_secs(10))
}

async fn reconcile(
    job: Arc<DeserializeGuard<RoutineLoadJob>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let started = Instant::now();
    ctx.metrics.reconciles.with_label_values(&["job"]).inc();
    let result = match &job.0 {
        Ok(j) => reconcile_job(j, &ctx).await,
        Err(invalid) => {
            // Not decodable (say a field of the wrong type written past the schema): say so
            // on the object, and go on with the other jobs.
            ctx.metrics
                .reconcile_errors
                .with_label_values(&["job", "invalid_object"])
                .inc();
            warn!(job = %job.name_any(), error = %invalid.error, "job does not decode; not reconciled");
            publish_invalid_event(&ctx, &job, &invalid.error).await;
            Ok(Action::await_change())
        }
    };
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
    let caches = ctx.caches.get().ok_or_else(|| {
        Error::CachesNotReady(vec!["RoutineLoadTasks", "worker Leases", "Tables"])
    })?;
    if tokio::time::timeout(Duration::from_secs(CACHE_WAIT_SECONDS), caches.ready())
        .await
        .ok()
        != Some(true)
    {
        return Err(Error::CachesNotReady(caches.not_ready()));
    }

    // Dereference (caches, Kafka): the job's tasks, its table and plan, Kafka metadata and
    // workers. An API error here fails the reconcile before anything is decided: the tasks keep
    // running.
    let (cached, invalid) = caches.job_tasks(&ns, &name, &uid);
    for t in &invalid {
        warn!(job = %name, namespace = %ns, "a task of the job does not decode: {t}");
    }
    let caught_up = {
        let mut memory = ctx.memory.lock().unwrap_or_else(|e| e.into_inner());
        memory
            .entry(uid.clone())
            .or_default()
            .expected
            .met_by(&cached, ctx.now_ms())
    };
    let fresh = !caught_up;
    let tasks = if caught_up {
        cached
    } else {
        // The cache has not shown this controller's last task writes yet: read them.
        debug!(job = %name, namespace = %ns, "task cache behind this operator's writes; listing");
        list_tasks(&task_api, &name, &uid).await?
    };
    let final_state = status.state.is_some_and(|s| s.is_final());
    let should_run = job.spec.state == DesiredState::Running && !final_state;
    // The table is looked at for every job that may still run: a Table being deleted cancels
    // even a paused job.
    let table_blocker = if final_state {
        None
    } else {
        check_table_and_plan(job, caches, &ns)
            .filter(|b| should_run || b.cause == Cause::TableDeleted)
    };
    let checks = should_run && table_blocker.is_none();
    let kafka = if checks {
        kafka_partitions(job, ctx, &ns).await?
    } else {
        KafkaRead::NotChecked
    };
    if let KafkaRead::Failed(e) = &kafka {
        warn!(job = %name, namespace = %ns, error = %e, "reading Kafka metadata failed");
    }
    // Worker liveness also decides whether a deleted task's worker may still commit for it.
    let deleting = tasks
        .iter()
        .any(|t| t.metadata.deletion_timestamp.is_some());
    let (workers, other_load) = if checks || deleting {
        live_workers(ctx, caches, &uid)
    } else {
        (Vec::new(), BTreeMap::new())
    };
    let unreported_scan = read_unreported(ctx, job, caches, &ns, &status, &tasks).await;
    let mut inputs = PlanInputs {
        job_name: name.clone(),
        job_uid: uid.clone(),
        generation: job.metadata.generation.unwrap_or(0),
        desired: job.spec.state,
        desired_concurrent_number: job.spec.desired_concurrent_number,
        limits: WindowLimits {
            max_error_number: job.spec.max_error_number,
            max_batch_rows: job.spec.max_batch_rows,
            max_filter_ratio: job.spec.max_filter_ratio,
        },
        status: status.clone(),
        legacy_retired: legacy_retired_counters(job),
        tasks,
        table_blocker,
        kafka,
        workers,
        other_load,
        unreported_scan,
    };

    // Plan (pure). A plan that writes tasks is made again on the tasks as the API server has
    // them, unless they were just read from it.
    let now = Timestamp::now();
    let mut plan = job_plan::plan(&inputs, &ctx.config, now);
    if !fresh && (!plan.apply.is_empty() || !plan.delete.is_empty()) {
        let current = list_tasks(&task_api, &name, &uid).await?;
        if !crate::caches::same_versions(&current, &inputs.tasks) {
            debug!(job = %name, namespace = %ns, "task cache stale; planning on a fresh read");
            inputs.tasks = current;
            plan = job_plan::plan(&inputs, &ctx.config, now);
        }
    }
    let tasks = inputs.tasks.clone();
    for t in &plan.tolerated {
        warn!(job = %name, namespace = %ns, "riding out a failure within the grace period: {t}");
    }

    // Apply (client): retired counters first, on the current object, then deletes and applies.
    let mut resource_version = job.resource_version();
    if (!plan.delete.is_empty() || !plan.release.is_empty()) && plan.retires(&status) {
        let mut recorded = status.clone();
        recorded.retired_counters = Some(plan.retired_counters);
        recorded.retired_tasks = plan.retired_tasks.clone();
        recorded.unreported_tasks = plan.unreported_tasks.clone();
        ctx.gate_check()?;
        match patch_status(job, &ns, client, &recorded, resource_version.as_deref()).await {
            Ok(j) => resource_version = j.resource_version(),
            Err(e) if is_conflict(&e) => return Ok(stale_object(&name)),
            Err(e) => return Err(Error::PatchCounters(e)),
        }
    }
    for t in &plan.delete {
        ctx.gate_check()?;
        delete_task(&task_api, t).await?;
    }
    for r in &plan.release {
        ctx.gate_check()?;
        release_task(ctx, job, &task_api, r).await?;
    }
    for d in &plan.decisions {
        ctx.metrics
            .scheduling_decisions
            .with_label_values(&[d])
            .inc();
    }
    let mut live_tasks: Vec<RoutineLoadTask> = tasks
        .iter()
        .filter(|t| plan.unchanged.contains(&t.name_any()))
        .cloned()
        .collect();
    for a in &plan.apply {
        ctx.gate_check()?;
        live_tasks.push(apply_task(&task_api, job, &a.name, &a.spec).await?);
    }
    let applied = &live_tasks[live_tasks.len() - plan.apply.len()..];
    note_task_writes(ctx, &uid, &tasks, &plan.delete, applied);

    // Error logs of every current task, including those removed (a job paused by its error
    // window must still point at the rows that paused it).
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

    // Fold task statuses (pure) and write the status (client).
    let (state, cause, reason) = (plan.state, plan.cause, plan.reason.clone());
    let (base, counted) = job_plan::counted(&plan, &live_tasks);
    let folded = {
        let mut memory = ctx.memory.lock().unwrap_or_else(|e| e.into_inner());
        let m = memory.entry(uid.clone()).or_default();
        let reports: Vec<TaskReport> = counted
            .iter()
            .map(|t| TaskReport {
                epoch: t.spec.epoch,
                status: t.status.clone(),
            })
            .collect();
        let mut f = job_state::fold(
            &base,
            &reports,
            &status.progress,
            &known_error_log_urls,
            &mut m.samples,
            now.as_millisecond(),
        );
        f.current_task_num = i32::try_from(live_tasks.len()).unwrap_or(i32::MAX);
        f
    };
    let current_cause = status
        .conditions
        .iter()
        .find(|c| c.type_ == READY_CONDITION)
        .and_then(|c| Cause::parse(&c.reason));
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
        current_kafka_partitions: if plan.partitions.is_empty() {
            status.current_kafka_partitions.clone()
        } else {
            plan.partitions.clone()
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
        retired_counters: Some(plan.retired_counters),
        retired_tasks: plan.retired_tasks.clone(),
        error_window: Some(plan.error_window),
        unreported_tasks: plan.unreported_tasks.clone(),
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
    new_status
        .conditions
        .extend(plan.conditions.iter().cloned());
    let now_ms = ctx.now_ms();
    let write = {
        let mut memory = ctx.memory.lock().unwrap_or_else(|e| e.into_inner());
        let m = memory.entry(uid.clone()).or_default();
        let rates_written = *m.rates_written_ms.get_or_insert(now_ms);
        job_state::status_to_write(
            &status,
            &new_status,
            rates_written,
            now_ms,
            RATE_REFRESH.as_millis() as i64,
        )
    };
    if let Some(new_status) = write {
        ctx.gate_check()?;
        match patch_status(job, &ns, client, &new_status, resource_version.as_deref()).await {
            Ok(_) => {
                for n in &plan.unreported_notes {
                    info!(job = %name, namespace = %ns, "{n}");
                }
            }
            Err(e) if is_conflict(&e) => return Ok(stale_object(&name)),
            Err(e) => return Err(Error::PatchStatus(e)),
        }
        let mut memory = ctx.memory.lock().unwrap_or_else(|e| e.into_inner());
        memory.entry(uid.clone()).or_default().rates_written_ms = Some(now_ms);
    }
    ctx.metrics.set_job_state(&uid, Some(state));
    // A failure that starts being ridden out is worth an Event of its own.
    for c in plan.conditions.iter().filter(|c| c.status == "False") {
        let was_failing = status
            .conditions
            .iter()
            .any(|p| p.type_ == c.type_ && p.status == "False");
        if !was_failing {
            publish_condition_event(ctx, job, c).await;
        }
    }
    if changed {
        publish_state_event(ctx, job, status.state, state, cause, reason.as_deref()).await;
        info!(job = %name, namespace = %ns, from = ?status.state.map(|s| s.as_str()), to = state.as_str(), reason = cause.as_str(), "job state changed");
    }

    // Requeue policy.
    let mut memory = ctx.memory.lock().unwrap_or_else(|e| e.into_inner());
    let m = memory.entry(uid.clone()).or_default();
    // A deleted task waits for its worker's release, a held one for that task.
    if tasks
        .iter()
        .any(|t| t.metadata.deletion_timestamp.is_some())
        || !plan.held.is_empty()
    {
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
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

/// Remembers this reconcile's task writes: later reconciles read the job's tasks from the API
/// server until the cache shows them.
fn note_task_writes(
    ctx: &Context,
    job_uid: &str,
    before: &[RoutineLoadTask],
    deleted: &[String],
    applied: &[RoutineLoadTask],
) {
    if deleted.is_empty() && applied.is_empty() {
        return;
    }
    let now_ms = ctx.now_ms();
    let mut memory = ctx.memory.lock().unwrap_or_else(|e| e.into_inner());
    let expected = &mut memory.entry(job_uid.to_string()).or_default().expected;
    for t in before.iter().filter(|t| deleted.contains(&t.name_any())) {
        expected.deleted(t, now_ms);
    }
    for t in applied {
        expected.wrote(t, now_ms);
    }
}

/// Reads the job's tasks from the API server (not the cache).
async fn list_tasks(
    api: &Api<RoutineLoadTask>,
    job: &str,
    job_uid: &str,
) -> Result<Vec<RoutineLoadTask>, Error> {
    let mut tasks: Vec<RoutineLoadTask> = api
        .list(&ListParams::default().labels(&format!("{JOB_LABEL}={job}")))
        .await
        .map_err(Error::ListTasks)?
        .items
        .into_iter()
        .filter(|t| t.spec.job_uid == job_uid)
        .collect();
    tasks.sort_by_key(|t| t.name_any());
    Ok(tasks)
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// The job changed since it was read (a spec edit, or the cache lagging our own write): nothing
/// was decided on stale data; look again shortly.
fn stale_object(name: &str) -> Action {
    debug!(job = %name, "job changed since it was read; reconciling again");
    Action::requeue(Duration::from_secs(1))
}

fn folded_lag_missing(s: &RoutineLoadJobStatus) -> bool {
    s.total_lag.is_none()
}

/// Dereference (cache) + validate: the table exists, is ready, and the plan builds.
/// Reads the table's commits for the job's unreported tasks whose objects are gone (at most
/// every [`unreported::SCAN_PERIOD`]); `None` when there is nothing to read now or the table
/// can't be read (the next reconcile tries again).
async fn read_unreported(
    ctx: &Context,
    job: &RoutineLoadJob,
    caches: &Caches,
    ns: &str,
    status: &RoutineLoadJobStatus,
    tasks: &[RoutineLoadTask],
) -> Option<unreported::Scan> {
    let uids: BTreeSet<String> = tasks.iter().filter_map(|t| t.uid()).collect();
    let gone = |uid: &str| !uids.contains(uid);
    if !status.unreported_tasks.keys().any(|u| gone(u)) {
        return None;
    }
    let now_ms = ctx.now_ms();
    {
        let mut memory = ctx.memory.lock().unwrap_or_else(|e| e.into_inner());
        let m = memory.entry(job.uid().unwrap_or_default()).or_default();
        if m.unreported_read_ms
            .is_some_and(|at| now_ms - at < unreported::SCAN_PERIOD.as_millis() as i64)
        {
            return None;
        }
        m.unreported_read_ms = Some(now_ms);
    }
    let read = async {
        let table = match caches.table(ns, &job.spec.table) {
            Some(Ok(t)) => t,
            Some(Err(e)) => anyhow::bail!("table '{}' can't be read: {e}", job.spec.table),
            None => anyhow::bail!("table '{}' not found", job.spec.table),
        };
        let secret = crate::table_controller::credentials(&table, &ctx.client, ns)
            .await?
            .map_err(anyhow::Error::msg)?;
        let location = &table.spec.location;
        let delta =
            delta_table::open(location, delta_table::storage_options(location, &secret)).await?;
        let latest = delta.version().map_or(-1, |v| v as i64);
        let Some((first, through)) = unreported::scan_range(&status.unreported_tasks, gone, latest)
        else {
            return Ok(unreported::Scan {
                first: latest + 1,
                through: latest,
                commits: Vec::new(),
            });
        };
        let commits = commit_info::read_commits(&delta, first, through)
            .await?
            .into_iter()
            .map(|(version, info)| unreported::ScannedCommit {
                version,
                task_uid: commit_info::task_uid(&info).unwrap_or_default().to_string(),
                counters: commit_info::batch_counters(&info),
            })
            .collect();
        anyhow::Ok(unreported::Scan {
            first,
            through,
            commits,
        })
    };
    match read.await {
        Ok(scan) => Some(scan),
        Err(e) => {
            warn!(job = %job.name_any(), namespace = %ns, error = format!("{e:#}"), "reading the table's commits for tasks let go without their last status");
            None
        }
    }
}

fn check_table_and_plan(job: &RoutineLoadJob, caches: &Caches, ns: &str) -> Option<Blocker> {
    table_blocker(job, caches.table(ns, &job.spec.table), ns)
}

/// Pure: what keeps the job from loading into its table (as the cache has it), if anything. A
/// Table being deleted can't come back (a deletion can't be called off): the job is cancelled.
pub fn table_blocker(
    job: &RoutineLoadJob,
    table: Option<Result<Table, String>>,
    ns: &str,
) -> Option<Blocker> {
    let table_name = &job.spec.table;
    let table = match table {
        None => {
            return Some(Blocker {
                cause: Cause::TableNotFound,
                message: format!(
                    "table '{table_name}' not found in namespace '{ns}': create the Table before the job"
                ),
            });
        }
        Some(Err(e)) => {
            return Some(Blocker {
                cause: Cause::TableNotReady,
                message: format!("table '{table_name}' can't be read: {e}"),
            });
        }
        Some(Ok(t)) => t,
    };
    if let Some(at) = &table.metadata.deletion_timestamp {
        return Some(Blocker {
            cause: Cause::TableDeleted,
            message: format!(
                "table '{table_name}' was deleted (at {}): the job can never load into it again; \
                 create a new job for a new table",
                at.0
            ),
        });
    }
    let phase = table.status.as_ref().and_then(|s| s.phase);
    if phase != Some(TablePhase::Ready) {
        let detail = table
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.status != "True"))
            .map(|c| format!(": {}", c.message))
            .unwrap_or_default();
        return Some(Blocker {
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
        });
    }
    LoadPlan::build(&job.spec, table_name, &table.spec)
        .err()
        .map(|e| Blocker {
            cause: Cause::InvalidPlan,
            message: format!("invalid load plan for table '{table_name}': {e}"),
        })
}

/// Pure: the broker list the operator dials for a job's `brokerList`: each address that has an
/// override is replaced by it.
pub fn operator_brokers(broker_list: &str, overrides: &BTreeMap<String, String>) -> String {
    broker_list
        .split(',')
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(|b| overrides.get(b).map(String::as_str).unwrap_or(b))
        .collect::<Vec<_>>()
        .join(",")
}

/// Dereference (client): the subscribed partitions from Kafka metadata, or why they can't be
/// read (a Kafka answer, not an API server error: the plan weighs it against the grace period).
async fn kafka_partitions(
    job: &RoutineLoadJob,
    ctx: &Context,
    ns: &str,
) -> Result<KafkaRead, Error> {
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
                return Ok(KafkaRead::Failed(format!(
                    "Kafka credentials secret '{}' not found in namespace '{ns}'",
                    secret.name
                )));
            }
        }
    }
    let brokers = operator_brokers(&kafka.broker_list, &ctx.config.kafka_bootstrap_overrides);
    let via = if brokers == operator_brokers(&kafka.broker_list, &BTreeMap::new()) {
        String::new()
    } else {
        format!(" (dialled as '{brokers}')")
    };
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
            return Ok(KafkaRead::Failed(format!(
                "cannot read metadata of topic '{}' from brokers '{}'{via}: {e}",
                kafka.topic, kafka.broker_list
            )));
        }
    };
    if kafka.partitions.is_empty() {
        return Ok(KafkaRead::Partitions(available));
    }
    let missing: Vec<i32> = kafka
        .partitions
        .iter()
        .copied()
        .filter(|p| !available.contains(p))
        .collect();
    if !missing.is_empty() {
        return Ok(KafkaRead::Failed(format!(
            "topic '{}' has no partition {missing:?} (it has {} partitions)",
            kafka.topic,
            available.len()
        )));
    }
    let mut p = kafka.partitions.clone();
    p.sort_unstable();
    p.dedup();
    Ok(KafkaRead::Partitions(p))
}

/// Dereference (caches): live workers (Leases in the worker namespace, judged by when this
/// operator saw them change) and the load other jobs, in any watched namespace, put on them.
fn live_workers(
    ctx: &Context,
    caches: &Caches,
    job_uid: &str,
) -> (Vec<WorkerState>, BTreeMap<String, usize>) {
    let leases = caches.leases();
    let workers = {
        let seen = ctx
            .lease_observations
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        worker_states(
            &leases,
            &seen,
            ctx.now_ms(),
            ctx.config.default_lease_duration,
        )
    };
    (workers, caches.other_load(job_uid))
}

/// A worker Lease record as this operator last saw it, and when (monotonic milliseconds) it
/// saw that record first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseObservation {
    pub record: String,
    pub at_ms: i64,
}

/// Pure: notes the worker Lease records listed at `now_ms`; a record's time moves only when it
/// changed. Leases no longer listed are forgotten.
pub fn observe_leases(seen: &mut HashMap<String, LeaseObservation>, leases: &[Lease], now_ms: i64) {
    let mut listed = std::collections::HashSet::new();
    for l in leases {
        observe_lease(seen, l, now_ms);
        listed.insert(l.name_any());
    }
    seen.retain(|k, _| listed.contains(k));
}

/// Pure: notes one worker Lease record seen at `now_ms` (a watch event); its time moves only
/// when the record changed.
pub fn observe_lease(seen: &mut HashMap<String, LeaseObservation>, l: &Lease, now_ms: i64) {
    if !is_worker_lease(l) {
        return;
    }
    let key = l.name_any();
    let record = serde_json::to_string(&l.spec).unwrap_or_default();
    match seen.get(&key) {
        Some(o) if o.record == record => {}
        _ => {
            seen.insert(
                key,
                LeaseObservation {
                    record,
                    at_ms: now_ms,
                },
            );
        }
    }
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
/// label's value (falling back to the holder identity, then the Lease name). A worker is live if
/// its Lease has been renewed at all and this operator saw its record change within the lease
/// duration (as client-go's leader election judges a lease: the remote `renewTime` is never
/// compared with the local clock).
pub fn worker_states(
    leases: &[Lease],
    seen: &HashMap<String, LeaseObservation>,
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
            let renewed = spec.is_some_and(|s| s.renew_time.is_some() || s.acquire_time.is_some());
            let fresh = seen
                .get(&l.name_any())
                .is_some_and(|o| now_ms - o.at_ms <= duration_ms);
            WorkerState {
                name,
                live: renewed && fresh,
            }
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
            "finalizers": [TASK_FINALIZER],
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

/// Removes a deleted task's finalizer once its counters are recorded: only if the task is still
/// at the version the plan read (a status written since then is recorded first, next time).
async fn release_task(
    ctx: &Context,
    job: &RoutineLoadJob,
    api: &Api<RoutineLoadTask>,
    r: &TaskRelease,
) -> Result<(), Error> {
    let removed = remove_task_finalizer(
        api,
        &r.name,
        r.resource_version.as_deref(),
        &r.finalizers_after,
    )
    .await
    .map_err(|source| Error::ReleaseTask {
        task: r.name.clone(),
        source,
    })?;
    if !removed {
        return Ok(());
    }
    info!(job = %job.name_any(), task = %r.name, why = r.why.as_str(), "released a deleted task");
    if r.why == ReleaseReason::TimedOut {
        publish_release_warning(ctx, job, r).await;
    }
    Ok(())
}

/// Sets a task's finalizers to `rest` (its own without [`TASK_FINALIZER`]) if the task is still
/// at `resource_version`. `Ok(false)`: it changed since (or is gone), nothing was removed.
pub async fn remove_task_finalizer(
    api: &Api<RoutineLoadTask>,
    name: &str,
    resource_version: Option<&str>,
    rest: &[String],
) -> Result<bool, kube::Error> {
    let patch = json!({
        "metadata": { "resourceVersion": resource_version, "finalizers": rest }
    });
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if is_conflict(&e) => Ok(false),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
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

/// Counters an older operator kept in the job's annotation (before `status.retiredCounters`).
fn legacy_retired_counters(job: &RoutineLoadJob) -> Option<Counters> {
    job.annotations()
        .get(RETIRED_COUNTERS_ANNOTATION)
        .and_then(|v| serde_json::from_str(v).ok())
}

/// Writes the whole status, on the object at `resource_version` when given (a precondition:
/// the API server answers 409 if the job changed since).
async fn patch_status(
    job: &RoutineLoadJob,
    ns: &str,
    client: &Client,
    status: &RoutineLoadJobStatus,
    resource_version: Option<&str>,
) -> Result<RoutineLoadJob, kube::Error> {
    let api: Api<RoutineLoadJob> = Api::namespaced(client.clone(), ns);
    let mut metadata = json!({ "name": job.name_any() });
    if let Some(rv) = resource_version {
        metadata["resourceVersion"] = rv.into();
    }
    let body = json!({
        "apiVersion": "routineload.io/v1alpha1",
        "kind": "RoutineLoadJob",
        "metadata": metadata,
        "status": status,
    });
    api.patch_status(
        &job.name_any(),
        &PatchParams::apply(OPERATOR_FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
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

/// A Warning Event when a failure starts being ridden out (its condition turned False).
/// A Warning Event: a deleted task was let go although its worker, still live, never said its
/// loop ended (batches it commits later are in the table but not in the job's counters).
async fn publish_release_warning(ctx: &Context, job: &RoutineLoadJob, r: &TaskRelease) {
    let event = Event {
        type_: EventType::Warning,
        reason: "TaskReleaseTimedOut".into(),
        note: Some(format!(
            "task {} was deleted {}s ago and its worker has not released it: let go; a batch \
             its loop still commits would be loaded but not counted",
            r.name,
            ctx.config.task_release_timeout.as_secs()
        )),
        action: "Release".into(),
        secondary: None,
    };
    if ctx.gate.holds()
        && let Err(e) = ctx.recorder.publish(&event, &job.object_ref(&())).await
    {
        warn!(job = %job.name_any(), error = %e, "failed to publish event");
    }
}

async fn publish_condition_event(ctx: &Context, job: &RoutineLoadJob, c: &Condition) {
    let event = Event {
        type_: EventType::Warning,
        reason: c.reason.clone(),
        note: Some(
            format!("{}: {}", c.type_, c.message)
                .chars()
                .take(1000)
                .collect(),
        ),
        action: "Observe".into(),
        secondary: None,
    };
    if ctx.gate.holds()
        && let Err(e) = ctx.recorder.publish(&event, &job.object_ref(&())).await
    {
        warn!(job = %job.name_any(), error = %e, "failed to publish event");
    }
}

/// A Warning Event on a job that does not decode.
async fn publish_invalid_event(ctx: &Context, job: &DeserializeGuard<RoutineLoadJob>, error: &str) {
    let event = Event {
        type_: EventType::Warning,
        reason: "InvalidObject".into(),
        note: Some(
            format!("the operator can't read this job: {error}")
                .chars()
                .take(1000)
                .collect(),
        ),
        action: "Decode".into(),
        secondary: None,
    };
    if ctx.gate.holds()
        && let Err(e) = ctx.recorder.publish(&event, &job.object_ref(&())).await
    {
        warn!(job = %job.name_any(), error = %e, "failed to publish event");
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
            | Cause::TableDeleted
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
    if ctx.gate.holds()
        && let Err(e) = ctx.recorder.publish(&event, &job.object_ref(&())).await
    {
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
    fn workers_are_live_while_this_operator_sees_their_lease_change() {
        // Remote renewTimes (ms) at the first list (t = 0) and at the second (t = 16 s). Clocks of
        // other machines don't matter: worker-f's clock is an hour behind, worker-g's ahead.
        let hour = 3_600_000;
        let first = vec![
            lease("worker-a", Some("worker-a"), Some(1_000), None),
            lease("lease-b", Some("worker-b"), Some(1_000), None),
            lease("worker-c", Some(""), Some(1_000), Some(30)),
            lease("worker-d", Some("worker-d"), None, None),
            lease("worker-f", Some("worker-f"), Some(1_000 - hour), None),
            lease("worker-g", Some("worker-g"), Some(1_000 + hour), None),
            // Not a worker's: the operator's leader Lease.
            lease("routine-load-operator", None, Some(1_000), None),
        ];
        let second = vec![
            lease("worker-a", Some("worker-a"), Some(17_000), None),
            lease("lease-b", Some("worker-b"), Some(1_000), None),
            lease("worker-c", Some(""), Some(1_000), Some(30)),
            lease("worker-d", Some("worker-d"), None, None),
            lease("worker-f", Some("worker-f"), Some(17_000 - hour), None),
            lease("worker-g", Some("worker-g"), Some(1_000 + hour), None),
            lease("routine-load-operator", None, Some(1_000), None),
        ];
        // A worker that applies its Lease with the worker field manager, unlabelled.
        let mut e = lease("worker-e", None, Some(17_000), None);
        e.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
            manager: Some(WORKER_FIELD_MANAGER.into()),
            ..Default::default()
        }]);
        let second = [second, vec![e]].concat();
        let mut seen = HashMap::new();
        let live = |leases: &[Lease], seen: &mut HashMap<String, LeaseObservation>, now| {
            observe_leases(seen, leases, now);
            worker_states(leases, seen, now, Duration::from_secs(15))
                .into_iter()
                .map(|w| (w.name, w.live))
                .collect::<Vec<(String, bool)>>()
        };
        let s = |v: &[(&str, bool)]| -> Vec<(String, bool)> {
            v.iter().map(|(n, l)| (n.to_string(), *l)).collect()
        };
        // First sight: every renewed Lease counts as fresh (as a new leader's first look).
        assert_eq!(
            live(&first, &mut seen, 0),
            s(&[
                ("worker-a", true),
                ("worker-b", true),
                ("worker-c", true),
                ("worker-d", false),
                ("worker-f", true),
                ("worker-g", true),
            ])
        );
        // 16 s later: only Leases that changed since, or whose duration is longer, are fresh.
        assert_eq!(
            live(&second, &mut seen, 16_000),
            s(&[
                ("worker-a", true),
                ("worker-b", false),
                ("worker-c", true),
                ("worker-d", false),
                ("worker-e", true),
                ("worker-f", true),
                ("worker-g", false),
            ])
        );
        // A Lease that disappears is forgotten.
        observe_leases(&mut seen, &second[..1], 17_000);
        assert_eq!(seen.keys().collect::<Vec<_>>(), vec!["worker-a"]);
    }

    #[test]
    fn operator_brokers_replace_overridden_addresses() {
        let overrides: BTreeMap<String, String> =
            [("k1:9092".to_string(), "proxy:1".to_string())].into();
        let cases = [
            ("k1:9092", "proxy:1"),
            ("k1:9092, k2:9092", "proxy:1,k2:9092"),
            ("k2:9092", "k2:9092"),
        ];
        for (list, expected) in cases {
            assert_eq!(operator_brokers(list, &overrides), expected, "{list}");
        }
        assert_eq!(operator_brokers("a:1,b:2", &BTreeMap::new()), "a:1,b:2");
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

    #[test]
    fn table_blockers_from_the_cached_table() {
        use routine_load_api::table::TableStatus;
        let job: RoutineLoadJob = serde_yaml::from_str(
            "apiVersion: routineload.io/v1alpha1
kind: RoutineLoadJob
metadata: {name: j, namespace: ns}
spec:
  table: orders
  columnSeparator: ','
  kafka: {brokerList: 'k:9092', topic: t}
",
        )
        .expect("job");
        let table = |extra: &str| -> Table {
            serde_yaml::from_str(&format!(
                "apiVersion: routineload.io/v1alpha1
kind: Table
metadata: {{name: orders, namespace: ns{extra}}}
spec:
  location: file:///tmp/orders
  columns: [{{name: k, type: INT}}, {{name: v, type: STRING}}]
"
            ))
            .expect("table")
        };
        let ready = |mut t: Table| {
            t.status = Some(TableStatus {
                phase: Some(TablePhase::Ready),
                ..Default::default()
            });
            t
        };
        // (case, the cached table, expected cause or None, text the message must hold)
        type Case = (
            &'static str,
            Option<Result<Table, String>>,
            Option<Cause>,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            ("ready table", Some(Ok(ready(table("")))), None, ""),
            (
                "no table",
                None,
                Some(Cause::TableNotFound),
                "table 'orders' not found in namespace 'ns'",
            ),
            (
                "table being deleted: cancelled",
                Some(Ok(ready(table(
                    ", deletionTimestamp: '2026-12-01T10:00:00Z', finalizers: [routineload.io/table]",
                )))),
                Some(Cause::TableDeleted),
                "table 'orders' was deleted (at 2026-12-01T10:00:00Z)",
            ),
            (
                "table not ready yet",
                Some(Ok(table(""))),
                Some(Cause::TablePending),
                "is not ready (phase unknown)",
            ),
            (
                "table that does not decode",
                Some(Err("missing field `location`".into())),
                Some(Cause::TableNotReady),
                "table 'orders' can't be read: missing field `location`",
            ),
        ];
        for (case, cached, cause, text) in cases {
            let b = table_blocker(&job, cached, "ns");
            assert_eq!(b.as_ref().map(|b| b.cause), cause, "{case}: {b:?}");
            if let Some(b) = b {
                assert!(b.message.contains(text), "{case}: {}", b.message);
            }
        }
    }
}
