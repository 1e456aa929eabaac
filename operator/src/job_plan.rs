//! The job controller's decisions as one pure function: the controller dereferences (lists the
//! job's tasks, reads the table, Kafka metadata and worker Leases), [`plan`] decides, and the
//! controller applies the plan (records retired counters, deletes, applies tasks, patches the
//! status). Nothing here talks to a client, so every decision is unit tested from literals.
//!
//! What `plan` decides, in order:
//! 1. Kafka metadata: partitions read now, or the last known ones while a metadata failure is
//!    younger than the grace period ([`grace`]); past it, the failure blocks the job.
//! 2. The job's intent ([`job_state::decide`]): keep, halt (remove every task) or run.
//! 3. For a job that runs: if no worker is live while tasks exist (every Lease expired at once,
//!    which is a control-plane problem more often than every worker dying), the tasks are kept
//!    as they are until that too outlasts the grace period; otherwise the partitions are split
//!    over `min(desiredConcurrentNumber, partitions, live workers, cap)` tasks placed on live
//!    workers, bumping the epoch of a task that moves or whose partitions change.
//! 4. Counters of tasks that end are retired into the job status, keyed by task UID; a task
//!    let go without its worker's last status gets its unreported batches counted from the
//!    table's commits ([`unreported`]).
//!
//! The job-wide error window ([`error_window`]) is checked on the job's counters (retired and
//! live) before the intent: it pauses the job like a task's report of its own window would.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use routine_load_api::job::{
    DesiredState, ErrorWindowStart, JobState, RoutineLoadJobStatus, UnreportedTask,
};
use routine_load_api::names::TASK_FINALIZER;
use routine_load_api::task::TaskPauseReason;
use routine_load_api::{RoutineLoadTask, RoutineLoadTaskSpec};

use crate::error_window::{self, WindowLimits};
use crate::job_controller::{Config, PlannedTask, READY_CONDITION, plan_tasks};
use crate::job_scheduler;
use crate::job_state::{self, Blocker, Cause, Counters, Facts, Intent};
use crate::task_scheduler::{self, TaskPlacement, WorkerState};
use crate::unreported;

/// Condition type: whether the operator can read the topic's metadata from Kafka.
pub const KAFKA_CONDITION: &str = "KafkaMetadataAvailable";
/// Condition type: whether at least one worker's Lease is fresh.
pub const WORKERS_CONDITION: &str = "WorkersAvailable";

/// What the operator learnt from Kafka for this reconcile.
#[derive(Debug, Clone, PartialEq)]
pub enum KafkaRead {
    /// Not asked (the job is not meant to run, or its table or plan already blocks it).
    NotChecked,
    /// The partitions the job subscribes to.
    Partitions(Vec<i32>),
    /// Metadata could not be read, or does not have the subscribed partitions.
    Failed(String),
}

/// Everything `plan` decides from, gathered by the controller.
#[derive(Debug, Clone)]
pub struct PlanInputs {
    pub job_name: String,
    pub job_uid: String,
    pub generation: i64,
    pub desired: DesiredState,
    pub desired_concurrent_number: i32,
    /// `maxErrorNumber`, `maxBatchRows`, `maxFilterRatio`.
    pub limits: WindowLimits,
    /// The status as read (conditions carry the start of ongoing failures).
    pub status: RoutineLoadJobStatus,
    /// Counters recorded by an older operator in the job's annotation, used while the status
    /// has no `retiredCounters` yet.
    pub legacy_retired: Option<Counters>,
    /// The job's tasks (of this job UID).
    pub tasks: Vec<RoutineLoadTask>,
    /// The first table or plan problem, if any.
    pub table_blocker: Option<Blocker>,
    pub kafka: KafkaRead,
    /// Worker liveness as this operator observed it.
    pub workers: Vec<WorkerState>,
    /// Tasks of other jobs per worker.
    pub other_load: BTreeMap<String, usize>,
    /// The table's commits read for `status.unreportedTasks` this reconcile, if any.
    pub unreported_scan: Option<unreported::Scan>,
}

/// A task to create or update.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskApply {
    pub name: String,
    pub spec: RoutineLoadTaskSpec,
}

/// What the controller applies.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPlan {
    pub state: JobState,
    pub cause: Cause,
    pub reason: Option<String>,
    /// Tasks kept exactly as they are (by name).
    pub unchanged: Vec<String>,
    /// Tasks to create or update.
    pub apply: Vec<TaskApply>,
    /// Tasks to delete (by name), after `retired_tasks` is recorded.
    pub delete: Vec<String>,
    /// Tasks the plan wants but does not create or change yet: a task being deleted still
    /// holds one of their partitions (or their name), and its loop may still commit.
    pub held: Vec<String>,
    /// Tasks being deleted whose finalizer can go, after `retired_tasks` is recorded.
    pub release: Vec<TaskRelease>,
    /// `status.retiredCounters` / `status.retiredTasks` as they must be before any delete.
    pub retired_counters: Counters,
    pub retired_tasks: BTreeMap<String, Counters>,
    /// `status.unreportedTasks` after this plan (see [`unreported`]).
    pub unreported_tasks: BTreeMap<String, UnreportedTask>,
    /// What counting unreported batches did, for the log.
    pub unreported_notes: Vec<String>,
    /// The partitions to record as `currentKafkaPartitions`.
    pub partitions: Vec<i32>,
    /// Conditions besides `Ready` (Kafka metadata, workers).
    pub conditions: Vec<Condition>,
    /// `status.errorWindow` after this plan.
    pub error_window: ErrorWindowStart,
    /// Scheduling decisions, for metrics: "created", "moved", "resplit", "removed".
    pub decisions: Vec<&'static str>,
    /// Live workers seen (for messages and logs).
    pub live_workers: usize,
    /// A failure ridden out within its grace period, for the log.
    pub tolerated: Vec<String>,
}

/// A deleted task whose finalizer the operator removes, and why it may.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRelease {
    pub name: String,
    /// The task's resourceVersion as read: the finalizer goes only if nothing was written to
    /// the task since its counters were recorded.
    pub resource_version: Option<String>,
    /// The task's finalizers without [`TASK_FINALIZER`].
    pub finalizers_after: Vec<String>,
    pub why: ReleaseReason,
}

/// Why a deleted task's finalizer may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseReason {
    /// Its worker reported that no loop of it runs any more.
    Released,
    /// Its worker's Lease is not fresh (or there is none): nothing runs it.
    WorkerGone,
    /// Its worker neither released it nor went away within the release timeout.
    TimedOut,
}

impl ReleaseReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            ReleaseReason::Released => "released by its worker",
            ReleaseReason::WorkerGone => "its worker is gone",
            ReleaseReason::TimedOut => "its worker did not release it in time",
        }
    }
}

/// Pure: a task's finalizers without [`TASK_FINALIZER`]; `None` if it does not carry it.
pub fn without_task_finalizer(t: &RoutineLoadTask) -> Option<Vec<String>> {
    let all = t.finalizers();
    all.iter().any(|f| f == TASK_FINALIZER).then(|| {
        all.iter()
            .filter(|f| f.as_str() != TASK_FINALIZER)
            .cloned()
            .collect()
    })
}

/// Pure: the deleted tasks whose finalizer can go now.
pub fn release(
    terminating: &[RoutineLoadTask],
    workers: &[WorkerState],
    timeout: Duration,
    now: Timestamp,
) -> Vec<TaskRelease> {
    terminating
        .iter()
        .filter_map(|t| {
            let finalizers_after = without_task_finalizer(t)?;
            let released = t.status.as_ref().is_some_and(|s| s.released);
            let worker_live = workers.iter().any(|w| w.name == t.spec.worker && w.live);
            let since = t
                .metadata
                .deletion_timestamp
                .as_ref()
                .map(|d| d.0)
                .unwrap_or(now);
            let timed_out = since.checked_add(timeout).is_ok_and(|until| now >= until);
            let why = if released {
                ReleaseReason::Released
            } else if !worker_live {
                ReleaseReason::WorkerGone
            } else if timed_out {
                ReleaseReason::TimedOut
            } else {
                return None;
            };
            Some(TaskRelease {
                name: t.name_any(),
                resource_version: t.resource_version(),
                finalizers_after,
                why,
            })
        })
        .collect()
}

/// Pure: holds back the planned tasks that would start a loop on a partition (or under a name)
/// of a task still being deleted; the job waits as NEED_SCHEDULE if nothing else runs. A live
/// task held back from a change keeps running (and counting) as it is.
fn hold_successors(plan: &mut JobPlan, live: &[String], terminating: &[RoutineLoadTask]) {
    if terminating.is_empty() {
        return;
    }
    let blocked_by = |name: &str, partitions: &[i32]| {
        terminating.iter().find(|t| {
            t.name_any() == name || t.spec.partitions.iter().any(|p| partitions.contains(p))
        })
    };
    let mut waits = Vec::new();
    plan.apply
        .retain(|a| match blocked_by(&a.name, &a.spec.partitions) {
            Some(t) => {
                plan.held.push(a.name.clone());
                if live.contains(&a.name) {
                    plan.unchanged.push(a.name.clone());
                }
                waits.push(format!(
                    "task {} waits for task {} (partitions {:?}) to end on worker {}",
                    a.name,
                    t.name_any(),
                    t.spec.partitions,
                    t.spec.worker
                ));
                false
            }
            None => true,
        });
    let runs = matches!(plan.state, JobState::Running | JobState::NeedSchedule);
    if runs && plan.unchanged.is_empty() && plan.apply.is_empty() && !plan.held.is_empty() {
        plan.state = JobState::NeedSchedule;
        plan.cause = Cause::Scheduling;
        plan.reason = Some(waits.join("; "));
    }
}

impl JobPlan {
    /// Whether the plan records counters that the current status lacks.
    pub fn retires(&self, status: &RoutineLoadJobStatus) -> bool {
        self.retired_tasks
            .iter()
            .any(|(uid, c)| status.retired_tasks.get(uid) != Some(c))
            || self.unreported_tasks != status.unreported_tasks
    }
}

/// Where a failure stands against the grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grace {
    /// Failing since `since`; ridden out until `until`.
    Within { since: Timestamp, until: Timestamp },
    /// Failing since `since`, longer than the grace period.
    Past { since: Timestamp },
}

/// Pure: a failure of condition `type_` seen at `now`, against the grace period. It started at
/// the condition's `lastTransitionTime` if the condition is already False (so a new leader
/// continues the count), else now.
pub fn grace(previous: &[Condition], type_: &str, now: Timestamp, grace: Duration) -> Grace {
    let since = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == "False")
        .map(|c| c.last_transition_time.0)
        .unwrap_or(now);
    let until = since.checked_add(grace).unwrap_or(Timestamp::MAX);
    if now < until {
        Grace::Within { since, until }
    } else {
        Grace::Past { since }
    }
}

/// A condition, keeping its transition time while its status is unchanged.
pub fn condition(
    previous: &[Condition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: i64,
    now: Timestamp,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let last = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone());
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: Some(generation),
        last_transition_time: last.unwrap_or(Time(now)),
    }
}

/// A time to the second, for messages.
fn at(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// The partitions the job loaded last: the status', else its tasks'.
fn last_known_partitions(status: &RoutineLoadJobStatus, tasks: &[RoutineLoadTask]) -> Vec<i32> {
    if !status.current_kafka_partitions.is_empty() {
        return status.current_kafka_partitions.clone();
    }
    let set: BTreeSet<i32> = tasks
        .iter()
        .flat_map(|t| t.spec.partitions.iter().copied())
        .collect();
    set.into_iter().collect()
}

fn current_cause(status: &RoutineLoadJobStatus) -> Option<Cause> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == READY_CONDITION)
        .and_then(|c| Cause::parse(&c.reason))
}

fn task_uid(t: &RoutineLoadTask) -> String {
    t.uid().unwrap_or_else(|| t.name_any())
}

/// Pure: the job's plan at `now`.
///
/// Tasks being deleted (a `deletionTimestamp`, held by [`TASK_FINALIZER`]) are not the job's
/// tasks any more, but their loops may still commit: their latest counters are recorded under
/// their UID until they are gone, a new task on any of their partitions (or with their name)
/// waits until they are, and [`release`] says when their finalizer can go.
pub fn plan(inputs: &PlanInputs, cfg: &Config, now: Timestamp) -> JobPlan {
    let (live, terminating): (Vec<RoutineLoadTask>, Vec<RoutineLoadTask>) = inputs
        .tasks
        .iter()
        .cloned()
        .partition(|t| t.metadata.deletion_timestamp.is_none());
    let live_inputs = PlanInputs {
        tasks: live,
        ..inputs.clone()
    };
    let mut plan = plan_live(&live_inputs, cfg, now);
    let live_names: Vec<String> = live_inputs.tasks.iter().map(|t| t.name_any()).collect();
    hold_successors(&mut plan, &live_names, &terminating);
    let (retired_counters, retired_tasks) = retire(inputs, &plan.delete);
    plan.retired_counters = retired_counters;
    plan.retired_tasks = retired_tasks;
    plan.release = release(&terminating, &inputs.workers, cfg.task_release_timeout, now);
    count_unreported(&mut plan, inputs, &terminating, now);
    plan
}

/// Pure: tasks let go without their worker's word get an entry in `unreportedTasks`; the
/// batches found for those whose object is gone are added to the retired counters.
fn count_unreported(
    plan: &mut JobPlan,
    inputs: &PlanInputs,
    terminating: &[RoutineLoadTask],
    now: Timestamp,
) {
    let last_commit = |t: &RoutineLoadTask| t.status.as_ref().and_then(|s| s.last_commit_version);
    let existing: BTreeMap<String, Option<i64>> = inputs
        .tasks
        .iter()
        .map(|t| (task_uid(t), last_commit(t)))
        .collect();
    let let_go: Vec<unreported::LetGo> = plan
        .release
        .iter()
        .filter(|r| r.why != ReleaseReason::Released)
        .filter_map(|r| terminating.iter().find(|t| t.name_any() == r.name))
        .map(|t| unreported::LetGo {
            uid: task_uid(t),
            name: t.name_any(),
            last_commit_version: last_commit(t),
        })
        .collect();
    let entries = unreported::record(&inputs.status.unreported_tasks, &existing, &let_go, now);
    let settled = unreported::settle(
        &entries,
        |uid| !existing.contains_key(uid),
        inputs.unreported_scan.as_ref(),
        now,
    );
    plan.retired_counters.add(&settled.added);
    plan.unreported_tasks = settled.entries;
    plan.unreported_notes = settled.notes;
}

/// Pure: the plan for the job's live tasks.
fn plan_live(inputs: &PlanInputs, cfg: &Config, now: Timestamp) -> JobPlan {
    let status = &inputs.status;
    let tasks = &inputs.tasks;
    let generation = inputs.generation;
    let mut conditions = Vec::new();
    let mut tolerated = Vec::new();

    // 1. Kafka metadata, with the grace period.
    let mut partitions = last_known_partitions(status, tasks);
    let mut kafka_blocker = None;
    match &inputs.kafka {
        KafkaRead::NotChecked => {
            // Nothing learnt: an ongoing failure keeps its start.
            conditions.extend(
                status
                    .conditions
                    .iter()
                    .filter(|c| c.type_ == KAFKA_CONDITION)
                    .cloned(),
            );
        }
        KafkaRead::Partitions(p) => {
            partitions = p.clone();
            conditions.push(condition(
                &status.conditions,
                KAFKA_CONDITION,
                true,
                "MetadataRead",
                format!("topic metadata read: partitions {p:?}"),
                generation,
                now,
            ));
        }
        KafkaRead::Failed(msg) => {
            let verdict = grace(
                &status.conditions,
                KAFKA_CONDITION,
                now,
                cfg.transient_grace,
            );
            let message = match verdict {
                // A job that never read its partitions has nothing to keep running.
                _ if partitions.is_empty() => {
                    kafka_blocker = Some(Blocker {
                        cause: Cause::KafkaUnavailable,
                        message: msg.clone(),
                    });
                    msg.clone()
                }
                Grace::Within { since, until } => {
                    let m = format!(
                        "{msg} (failing since {}; tasks keep running on the last known \
                         partitions {partitions:?} until {})",
                        at(since),
                        at(until)
                    );
                    tolerated.push(m.clone());
                    m
                }
                Grace::Past { since } => {
                    let m = format!(
                        "{msg} (failing since {}, longer than the {}s grace period \
                         ROUTINE_LOAD_TRANSIENT_GRACE_SECONDS)",
                        at(since),
                        cfg.transient_grace.as_secs()
                    );
                    kafka_blocker = Some(Blocker {
                        cause: Cause::KafkaUnavailable,
                        message: m.clone(),
                    });
                    m
                }
            };
            conditions.push(condition(
                &status.conditions,
                KAFKA_CONDITION,
                false,
                "MetadataUnavailable",
                message,
                generation,
                now,
            ));
        }
    }

    // 2. Intent.
    let current_tasks: Vec<&RoutineLoadTask> = tasks.iter().collect();
    // What a task asks of its job stands only if the loop that asked ran this assignment
    // (epoch) of this job spec (generation): an edit may have fixed the cause.
    let of_epoch = |t: &RoutineLoadTask| {
        t.status
            .as_ref()
            .filter(|s| {
                s.epoch == t.spec.epoch
                    && s.job_generation.is_none_or(|g| g == t.spec.job_generation)
            })
            .cloned()
    };
    let error_window_exceeded = current_tasks.iter().find_map(|t| {
        of_epoch(t).and_then(|s| s.error_window_exceeded).map(|m| {
            format!(
                "task {} (partitions {:?}): {m}",
                t.name_any(),
                t.spec.partitions
            )
        })
    });
    let task_pause = current_tasks.iter().find_map(|t| {
        of_epoch(t).and_then(|s| s.pause_request).map(|r| Blocker {
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
    // The job-wide error window, over retired and live counters.
    let mut totals = status
        .retired_counters
        .or(inputs.legacy_retired)
        .unwrap_or_default();
    for c in status.retired_tasks.values() {
        totals.add(c);
    }
    for t in tasks
        .iter()
        .filter(|t| !status.retired_tasks.contains_key(&task_uid(t)))
    {
        if let Some(s) = &t.status {
            totals.add(&s.counters);
        }
    }
    let window = error_window::check(
        status.error_window,
        matches!(
            status.state,
            Some(JobState::Running | JobState::NeedSchedule)
        ),
        generation,
        totals.total_rows,
        totals.error_rows,
        inputs.limits,
    );
    let error_window_exceeded = error_window_exceeded.or(window.exceeded);
    let cause_now = current_cause(status);
    let facts = Facts {
        desired: inputs.desired,
        current: status.state,
        current_cause: cause_now,
        generation,
        observed_generation: status.observed_generation,
        blocker: inputs.table_blocker.clone().or(kafka_blocker),
        error_window_exceeded,
        task_pause,
    };
    let intent = job_state::decide(&facts);

    let live_workers = inputs.workers.iter().filter(|w| w.live).count();
    let mut decisions = Vec::new();
    let mut unchanged = Vec::new();
    let mut apply = Vec::new();
    let mut delete = Vec::new();
    let remove_all = |delete: &mut Vec<String>, decisions: &mut Vec<&'static str>| {
        for t in tasks {
            delete.push(t.name_any());
            decisions.push("removed");
        }
    };
    let (state, cause, reason) = match intent {
        Intent::Keep => {
            let state = status.state.unwrap_or(JobState::NeedSchedule);
            if state.is_final() {
                remove_all(&mut delete, &mut decisions);
            } else {
                unchanged.extend(tasks.iter().map(|t| t.name_any()));
            }
            (
                state,
                cause_now.unwrap_or(Cause::Scheduling),
                status.reason_of_state_changed.clone(),
            )
        }
        Intent::Halt {
            state,
            cause,
            reason,
        } => {
            remove_all(&mut delete, &mut decisions);
            (state, cause, Some(reason))
        }
        Intent::Run => {
            // 3. Workers.
            let mut keep_as_is = false;
            let mut workers_gone_reason = None;
            if live_workers == 0 {
                let verdict = grace(
                    &status.conditions,
                    WORKERS_CONDITION,
                    now,
                    cfg.transient_grace,
                );
                let leases = inputs.workers.len();
                let message = match verdict {
                    Grace::Within { since, until } if !tasks.is_empty() => {
                        keep_as_is = true;
                        let m = format!(
                            "none of the {leases} worker Lease(s) in namespace {} is fresh \
                             (since {}): every worker at once looks like a control-plane \
                             problem, so the {} task(s) stay where they are until {}",
                            cfg.worker_namespace,
                            at(since),
                            tasks.len(),
                            at(until)
                        );
                        tolerated.push(m.clone());
                        m
                    }
                    Grace::Within { since, .. } | Grace::Past { since } => {
                        let m = format!(
                            "no live worker: no fresh worker Lease in namespace {} since {}",
                            cfg.worker_namespace,
                            at(since)
                        );
                        workers_gone_reason = Some(m.clone());
                        m
                    }
                };
                conditions.push(condition(
                    &status.conditions,
                    WORKERS_CONDITION,
                    false,
                    "NoFreshLease",
                    message,
                    generation,
                    now,
                ));
            } else {
                conditions.push(condition(
                    &status.conditions,
                    WORKERS_CONDITION,
                    true,
                    "FreshLeases",
                    format!("{live_workers} live worker(s)"),
                    generation,
                    now,
                ));
            }
            let n_tasks = if keep_as_is {
                unchanged.extend(tasks.iter().map(|t| t.name_any()));
                tasks.len()
            } else {
                let planned = schedule(inputs, cfg, &partitions, &mut decisions);
                for t in tasks {
                    if !planned.iter().any(|p| p.name == t.name_any()) {
                        delete.push(t.name_any());
                        decisions.push("removed");
                    }
                }
                for p in &planned {
                    let spec = RoutineLoadTaskSpec {
                        job: inputs.job_name.clone(),
                        job_uid: inputs.job_uid.clone(),
                        partitions: p.partitions.clone(),
                        worker: p.worker.clone().unwrap_or_default(),
                        epoch: p.epoch,
                        job_generation: generation,
                    };
                    // A job spec edit reaches the task through jobGeneration.
                    match tasks.iter().find(|t| t.name_any() == p.name) {
                        Some(t) if t.spec == spec => unchanged.push(p.name.clone()),
                        _ => apply.push(TaskApply {
                            name: p.name.clone(),
                            spec,
                        }),
                    }
                }
                planned.len()
            };
            let (state, cause) = job_state::running_state(status.state, n_tasks);
            let reason = match cause {
                Cause::NoLiveWorker if live_workers == 0 => workers_gone_reason.or_else(|| {
                    Some(format!(
                        "no live worker: no fresh worker Lease in namespace {}",
                        cfg.worker_namespace
                    ))
                }),
                Cause::NoLiveWorker => Some(format!(
                    "no room on the {live_workers} live worker(s): each already runs \
                     ROUTINE_LOAD_MAX_TASKS_PER_WORKER={} tasks; add workers or raise the cap",
                    cfg.max_tasks_per_worker
                )),
                _ => None,
            };
            (state, cause, reason)
        }
    };

    // 4. Retired counters, keyed by task UID: recorded by `plan` over every task.
    JobPlan {
        state,
        cause,
        reason,
        unchanged,
        apply,
        delete,
        held: Vec::new(),
        release: Vec::new(),
        retired_counters: Counters::default(),
        retired_tasks: BTreeMap::new(),
        unreported_tasks: BTreeMap::new(),
        unreported_notes: Vec::new(),
        partitions,
        conditions,
        error_window: window.start,
        decisions,
        live_workers,
        tolerated,
    }
}

/// Pure: split, match to existing tasks, place on live workers and bump epochs.
fn schedule(
    inputs: &PlanInputs,
    cfg: &Config,
    partitions: &[i32],
    decisions: &mut Vec<&'static str>,
) -> Vec<PlannedTask> {
    let tasks = &inputs.tasks;
    let live = inputs.workers.iter().filter(|w| w.live).count();
    let n = job_scheduler::task_count(
        inputs.desired_concurrent_number,
        partitions.len(),
        live,
        cfg.max_tasks_per_job,
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
    let mut planned = plan_tasks(&inputs.job_name, &groups, &existing);
    let placements: Vec<TaskPlacement> = planned
        .iter()
        .map(|p| TaskPlacement {
            task: p.name.clone(),
            worker: p.worker.clone(),
        })
        .collect();
    let assignments = task_scheduler::assign(
        &placements,
        &inputs.workers,
        &inputs.other_load,
        cfg.max_tasks_per_worker,
    );
    for (p, a) in planned.iter_mut().zip(&assignments) {
        let existed = p.worker.is_some();
        if existed && a.moved && !p.new_epoch {
            p.epoch += 1;
            p.new_epoch = true;
            decisions.push("moved");
        } else if p.new_epoch {
            decisions.push("resplit");
        } else if !existed && a.worker.is_some() {
            decisions.push("created");
        }
        p.worker = a.worker.clone();
    }
    planned.retain(|p| p.worker.is_some());
    planned
}

/// Pure: the retired counters after this plan. A task being deleted, now or earlier (it is
/// still there while its loop may commit), gets its latest counters recorded under its UID
/// (recording again overwrites, never adds); an entry whose task is gone moves into the sum; an
/// entry whose task is kept after all is dropped (the task counts live).
fn retire(inputs: &PlanInputs, delete: &[String]) -> (Counters, BTreeMap<String, Counters>) {
    let status = &inputs.status;
    let retiring = |t: &RoutineLoadTask| {
        t.metadata.deletion_timestamp.is_some() || delete.contains(&t.name_any())
    };
    let mut base = status
        .retired_counters
        .or(inputs.legacy_retired)
        .unwrap_or_default();
    let mut entries = BTreeMap::new();
    for (uid, c) in &status.retired_tasks {
        match inputs.tasks.iter().find(|t| task_uid(t) == *uid) {
            None => base.add(c),
            Some(t) if retiring(t) => {
                entries.insert(uid.clone(), *c);
            }
            Some(_) => {}
        }
    }
    for t in inputs.tasks.iter().filter(|t| retiring(t)) {
        if let Some(s) = &t.status
            && s.counters != Counters::default()
        {
            entries.insert(task_uid(t), s.counters);
        }
    }
    (base, entries)
}

/// Pure: the counters the job statistic starts from (retired ones), and the tasks that count
/// live (those not retired).
pub fn counted<'a>(
    plan: &JobPlan,
    tasks: &'a [RoutineLoadTask],
) -> (Counters, Vec<&'a RoutineLoadTask>) {
    let mut base = plan.retired_counters;
    for c in plan.retired_tasks.values() {
        base.add(c);
    }
    let live = tasks
        .iter()
        .filter(|t| !plan.retired_tasks.contains_key(&task_uid(t)))
        .filter(|t| !plan.delete.contains(&t.name_any()))
        .collect();
    (base, live)
}

#[cfg(test)]
mod tests;
