//! The job state machine (StarRocks FE semantics) and the folding of task statuses into the job
//! status. Pure functions: the job controller gathers the facts, these decide.

use std::collections::{BTreeMap, VecDeque};

use routine_load_api::job::{DesiredState, JobState, JobStatistic, RoutineLoadJobStatus};
use routine_load_api::task::RoutineLoadTaskStatus;

/// Why a job is paused (or not running). Recorded as the `reason` of the job's `Ready` condition,
/// so the next reconcile knows whether the pause clears by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// `spec.state: Paused`. Cleared by setting `spec.state: Running` again.
    UserPaused,
    /// `spec.state: Stopped`. Final.
    UserStopped,
    /// A task's error rows passed `maxErrorNumber` in its window. Cleared like a StarRocks
    /// `RESUME ROUTINE LOAD`: by pausing and resuming, or by editing the job spec.
    ErrorWindowExceeded,
    /// A task's resume offset is out of the partition's range: loading on would skip data.
    /// Cleared by an edit of the job (new `kafka.offsets`) or by pausing and resuming.
    OffsetOutOfRange,
    /// A task failed the same way past its retry budget. Cleared like ErrorWindowExceeded.
    RepeatedFailure,
    /// The job's table does not exist.
    TableNotFound,
    /// The table exists but failed (its Delta table can't be created or adopted).
    TableNotReady,
    /// The table is being deleted: the job can never load into it again. CANCELLED, final.
    TableDeleted,
    /// The table is still being set up: the job waits in NEED_SCHEDULE, not paused.
    TablePending,
    /// The load plan does not validate against the table (bad column mapping or expression).
    InvalidPlan,
    /// Kafka metadata could not be read (brokers unreachable, topic missing).
    KafkaUnavailable,
    /// Scheduling, no blocker.
    Scheduling,
    /// No live worker to run a task.
    NoLiveWorker,
    /// Running.
    Running,
}

impl Cause {
    /// The condition reason string (CamelCase, as Kubernetes conditions want).
    pub fn as_str(&self) -> &'static str {
        match self {
            Cause::UserPaused => "UserPaused",
            Cause::UserStopped => "UserStopped",
            Cause::ErrorWindowExceeded => "ErrorWindowExceeded",
            Cause::OffsetOutOfRange => "OffsetOutOfRange",
            Cause::RepeatedFailure => "RepeatedFailure",
            Cause::TableNotFound => "TableNotFound",
            Cause::TableNotReady => "TableNotReady",
            Cause::TableDeleted => "TableDeleted",
            Cause::TablePending => "TablePending",
            Cause::InvalidPlan => "InvalidPlan",
            Cause::KafkaUnavailable => "KafkaUnavailable",
            Cause::Scheduling => "Scheduling",
            Cause::NoLiveWorker => "NoLiveWorker",
            Cause::Running => "Running",
        }
    }

    pub fn parse(s: &str) -> Option<Cause> {
        [
            Cause::UserPaused,
            Cause::UserStopped,
            Cause::ErrorWindowExceeded,
            Cause::OffsetOutOfRange,
            Cause::RepeatedFailure,
            Cause::TableNotFound,
            Cause::TableNotReady,
            Cause::TableDeleted,
            Cause::TablePending,
            Cause::InvalidPlan,
            Cause::KafkaUnavailable,
            Cause::Scheduling,
            Cause::NoLiveWorker,
            Cause::Running,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }

    /// A pause the operator lifts by itself once the fact that caused it is gone.
    pub fn clears_by_itself(&self) -> bool {
        matches!(
            self,
            Cause::TableNotFound
                | Cause::TableNotReady
                | Cause::TablePending
                | Cause::InvalidPlan
                | Cause::KafkaUnavailable
        )
    }

    /// A pause that holds until the user edits the job or resumes it (StarRocks: RESUME
    /// ROUTINE LOAD after fixing the cause).
    pub fn needs_resume(&self) -> bool {
        matches!(
            self,
            Cause::ErrorWindowExceeded | Cause::OffsetOutOfRange | Cause::RepeatedFailure
        )
    }

    /// A transient failure: retried with capped exponential backoff.
    pub fn is_transient(&self) -> bool {
        matches!(self, Cause::KafkaUnavailable | Cause::TableNotReady)
    }
}

/// Something that keeps a job from running, with the message users see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocker {
    pub cause: Cause,
    pub message: String,
}

/// What the controller knows about a job at one reconcile.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub desired: DesiredState,
    pub current: Option<JobState>,
    /// The cause recorded with the current state (the `Ready` condition's reason).
    pub current_cause: Option<Cause>,
    /// `metadata.generation` now, and the one the status was written for.
    pub generation: i64,
    pub observed_generation: Option<i64>,
    /// First blocker found (table, plan, Kafka), if any.
    pub blocker: Option<Blocker>,
    /// A task reported that its error window was exceeded: the message names the rows and why.
    pub error_window_exceeded: Option<String>,
    /// A task asked for the job to be paused (offset out of range, repeated failure).
    pub task_pause: Option<Blocker>,
}

/// What the job should do: the controller schedules tasks only for `Run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// Keep the current state and tasks (final states).
    Keep,
    /// Remove the tasks and enter this state.
    Halt {
        state: JobState,
        cause: Cause,
        reason: String,
    },
    /// Keep or create tasks; the state follows from how many tasks run (`running_state`).
    Run,
}

/// Decide what the job should do, before scheduling.
pub fn decide(f: &Facts) -> Intent {
    if f.current.is_some_and(|s| s.is_final()) {
        // STOPPED and CANCELLED are final: editing the job changes nothing.
        return Intent::Keep;
    }
    // A job whose table is being deleted can never run again, paused or not (StarRocks cancels
    // the routine loads of a dropped table).
    if let Some(b) = f
        .blocker
        .as_ref()
        .filter(|b| b.cause == Cause::TableDeleted)
        && f.desired != DesiredState::Stopped
    {
        return Intent::Halt {
            state: JobState::Cancelled,
            cause: b.cause,
            reason: b.message.clone(),
        };
    }
    match f.desired {
        DesiredState::Stopped => {
            return Intent::Halt {
                state: JobState::Stopped,
                cause: Cause::UserStopped,
                reason: "stopped by user (spec.state: Stopped)".into(),
            };
        }
        DesiredState::Paused => {
            return Intent::Halt {
                state: JobState::Paused,
                cause: Cause::UserPaused,
                reason: "paused by user (spec.state: Paused)".into(),
            };
        }
        DesiredState::Running => {}
    }
    if f.current == Some(JobState::Paused) && f.current_cause.is_some_and(|c| c.needs_resume()) {
        let spec_edited = f.observed_generation.is_some_and(|o| o < f.generation);
        if !spec_edited {
            return Intent::Keep;
        }
    }
    if let Some(b) = &f.blocker {
        // A table still being created is not a failure: wait for it unpaused.
        let state = if b.cause == Cause::TablePending {
            JobState::NeedSchedule
        } else {
            JobState::Paused
        };
        return Intent::Halt {
            state,
            cause: b.cause,
            reason: b.message.clone(),
        };
    }
    let running = matches!(f.current, Some(JobState::Running | JobState::NeedSchedule));
    if running && let Some(msg) = &f.error_window_exceeded {
        return Intent::Halt {
            state: JobState::Paused,
            cause: Cause::ErrorWindowExceeded,
            reason: msg.clone(),
        };
    }
    if running && let Some(b) = &f.task_pause {
        return Intent::Halt {
            state: JobState::Paused,
            cause: b.cause,
            reason: b.message.clone(),
        };
    }
    Intent::Run
}

/// The state of a job that should run, once its tasks are scheduled. As in StarRocks a new or
/// resumed job passes through NEED_SCHEDULE before it is RUNNING.
pub fn running_state(current: Option<JobState>, tasks: usize) -> (JobState, Cause) {
    match current {
        Some(JobState::NeedSchedule) if tasks > 0 => (JobState::Running, Cause::Running),
        Some(JobState::Running) if tasks > 0 => (JobState::Running, Cause::Running),
        _ if tasks == 0 => (JobState::NeedSchedule, Cause::NoLiveWorker),
        _ => (JobState::NeedSchedule, Cause::Scheduling),
    }
}

/// Counters a task reports; summed into the job statistic.
pub type Counters = routine_load_api::task::TaskCounters;

/// A task as the fold sees it. Workers keep a task's counters cumulative across epochs (a worker
/// taking a task over continues from its status), so every task status counts once; only removed
/// tasks are moved into the base counters.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskReport {
    pub epoch: i64,
    pub status: Option<RoutineLoadTaskStatus>,
}

impl TaskReport {
    fn current(&self) -> Option<&RoutineLoadTaskStatus> {
        self.status.as_ref()
    }
}

/// Sample of cumulative counters, for rates over a recent window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at_ms: i64,
    pub loaded_rows: i64,
    pub received_bytes: i64,
}

/// How far back rates look.
pub const RATE_WINDOW_MS: i64 = 60_000;
/// How many error log URLs the status keeps (newest last).
pub const MAX_ERROR_LOG_URLS: usize = 5;

/// The folded part of a job status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Folded {
    pub statistic: JobStatistic,
    pub progress: BTreeMap<String, i64>,
    pub lag: BTreeMap<String, i64>,
    pub total_lag: Option<i64>,
    pub error_log_urls: Vec<String>,
    pub current_task_num: i32,
}

/// Fold task statuses into the job status. `base` holds the counters of removed or moved task
/// epochs; `previous_*` keep progress and error logs of partitions and tasks no longer running;
/// `samples` is the recent history of (time, loaded rows, received bytes), oldest first, and gets
/// this fold's sample appended and old ones dropped.
pub fn fold(
    base: &Counters,
    tasks: &[TaskReport],
    previous_progress: &BTreeMap<String, i64>,
    previous_error_log_urls: &[String],
    samples: &mut VecDeque<Sample>,
    now_ms: i64,
) -> Folded {
    let mut sum = *base;
    let mut progress = previous_progress.clone();
    let mut lag = BTreeMap::new();
    let mut urls: Vec<String> = previous_error_log_urls.to_vec();
    for t in tasks {
        let Some(s) = t.current() else { continue };
        sum.add(&s.counters);
        for (p, o) in &s.committed_offsets {
            let e = progress.entry(p.clone()).or_insert(*o);
            *e = (*e).max(*o);
        }
        for (p, l) in &s.lag {
            lag.insert(p.clone(), *l);
        }
        if let Some(u) = &s.error_log_url
            && !urls.contains(u)
        {
            urls.push(u.clone());
        }
    }
    if urls.len() > MAX_ERROR_LOG_URLS {
        urls.drain(..urls.len() - MAX_ERROR_LOG_URLS);
    }
    samples.push_back(Sample {
        at_ms: now_ms,
        loaded_rows: sum.loaded_rows,
        received_bytes: sum.received_bytes,
    });
    while samples.len() > 1
        && samples
            .front()
            .is_some_and(|s| now_ms - s.at_ms > RATE_WINDOW_MS)
    {
        samples.pop_front();
    }
    let (load_rows_rate, received_bytes_rate) = rates(samples);
    let total_lag = (!lag.is_empty()).then(|| lag.values().sum());
    Folded {
        statistic: JobStatistic {
            received_bytes: sum.received_bytes,
            error_rows: sum.error_rows,
            committed_task_num: sum.committed_batches,
            loaded_rows: sum.loaded_rows,
            load_rows_rate,
            aborted_task_num: sum.aborted_batches,
            total_rows: sum.total_rows,
            unselected_rows: sum.unselected_rows,
            received_bytes_rate,
            task_execute_time_ms: sum.execute_time_ms,
        },
        progress,
        lag,
        total_lag,
        error_log_urls: urls,
        current_task_num: i32::try_from(tasks.len()).unwrap_or(i32::MAX),
    }
}

/// Rows per second and bytes per second between the oldest and newest sample.
pub fn rates(samples: &VecDeque<Sample>) -> (i64, i64) {
    let (Some(first), Some(last)) = (samples.front(), samples.back()) else {
        return (0, 0);
    };
    let ms = last.at_ms - first.at_ms;
    if ms <= 0 {
        return (0, 0);
    }
    let per_s = |d: i64| (d.max(0) as i128 * 1000 / ms as i128) as i64;
    (
        per_s(last.loaded_rows - first.loaded_rows),
        per_s(last.received_bytes - first.received_bytes),
    )
}

/// Pure: the status to write, if any. Everything users see is written when it changes, except
/// the load rates (`loadRowsRate`, `receivedBytesRate`, which move with every look): a status
/// that differs from the current one only in them waits until `refresh_ms` has passed since the
/// rates were last written (`rates_written_ms`).
pub fn status_to_write(
    current: &RoutineLoadJobStatus,
    proposed: &RoutineLoadJobStatus,
    rates_written_ms: i64,
    now_ms: i64,
    refresh_ms: i64,
) -> Option<RoutineLoadJobStatus> {
    if proposed == current {
        return None;
    }
    let mut old_rates = proposed.clone();
    old_rates.statistic.load_rows_rate = current.statistic.load_rows_rate;
    old_rates.statistic.received_bytes_rate = current.statistic.received_bytes_rate;
    if old_rates == *current && now_ms - rates_written_ms < refresh_ms {
        return None;
    }
    Some(proposed.clone())
}

/// Capped exponential backoff for transient pauses: 5 s, 10 s, 20 s ... up to 5 minutes.
pub fn backoff_secs(attempt: u32) -> u64 {
    5u64.saturating_mul(1u64 << attempt.min(6)).min(300)
}

#[cfg(test)]
mod tests {
    use super::*;
    use DesiredState as D;
    use JobState as S;

    fn facts(desired: D, current: Option<S>, cause: Option<Cause>) -> Facts {
        Facts {
            desired,
            current,
            current_cause: cause,
            generation: 1,
            observed_generation: Some(1),
            blocker: None,
            error_window_exceeded: None,
            task_pause: None,
        }
    }

    fn halt(state: S, cause: Cause) -> (Option<S>, Option<Cause>) {
        (Some(state), Some(cause))
    }

    fn shape(i: &Intent) -> (Option<S>, Option<Cause>) {
        match i {
            Intent::Keep => (None, None),
            Intent::Run => (Some(S::Running), None),
            Intent::Halt { state, cause, .. } => (Some(*state), Some(*cause)),
        }
    }

    #[test]
    fn decisions_follow_starrocks() {
        let table_missing = Blocker {
            cause: Cause::TableNotFound,
            message: "table 'orders' not found".into(),
        };
        let run = (Some(S::Running), None);
        let keep = (None, None);
        let table_deleted = Blocker {
            cause: Cause::TableDeleted,
            message: "table 'orders' was deleted".into(),
        };
        let deleted = |desired, current, cause| Facts {
            blocker: Some(table_deleted.clone()),
            ..facts(desired, current, cause)
        };
        type Shape = (Option<S>, Option<Cause>);
        let cases: Vec<(&str, Facts, Shape)> = vec![
            ("new job runs", facts(D::Running, None, None), run),
            (
                "table deleted: a running job is cancelled",
                deleted(D::Running, Some(S::Running), Some(Cause::Running)),
                halt(S::Cancelled, Cause::TableDeleted),
            ),
            (
                "table deleted: a paused job is cancelled too",
                deleted(D::Paused, Some(S::Paused), Some(Cause::UserPaused)),
                halt(S::Cancelled, Cause::TableDeleted),
            ),
            (
                "table deleted: a job paused by its errors is cancelled",
                deleted(
                    D::Running,
                    Some(S::Paused),
                    Some(Cause::ErrorWindowExceeded),
                ),
                halt(S::Cancelled, Cause::TableDeleted),
            ),
            (
                "table deleted: a new job is cancelled",
                deleted(D::Running, None, None),
                halt(S::Cancelled, Cause::TableDeleted),
            ),
            (
                "table deleted: stopping still stops",
                deleted(D::Stopped, Some(S::Running), Some(Cause::Running)),
                halt(S::Stopped, Cause::UserStopped),
            ),
            (
                "table deleted: a stopped job stays stopped",
                deleted(D::Running, Some(S::Stopped), Some(Cause::UserStopped)),
                keep,
            ),
            (
                "new paused job",
                facts(D::Paused, None, None),
                halt(S::Paused, Cause::UserPaused),
            ),
            (
                "pause",
                facts(D::Paused, Some(S::Running), None),
                halt(S::Paused, Cause::UserPaused),
            ),
            (
                "stop running",
                facts(D::Stopped, Some(S::Running), None),
                halt(S::Stopped, Cause::UserStopped),
            ),
            (
                "stop paused",
                facts(D::Stopped, Some(S::Paused), Some(Cause::UserPaused)),
                halt(S::Stopped, Cause::UserStopped),
            ),
            (
                "resume",
                facts(D::Running, Some(S::Paused), Some(Cause::UserPaused)),
                run,
            ),
            (
                "stopped is final",
                facts(D::Running, Some(S::Stopped), Some(Cause::UserStopped)),
                keep,
            ),
            (
                "stopped stays on pause",
                facts(D::Paused, Some(S::Stopped), Some(Cause::UserStopped)),
                keep,
            ),
            (
                "cancelled is final",
                facts(D::Running, Some(S::Cancelled), None),
                keep,
            ),
            (
                "unknown table pauses",
                Facts {
                    blocker: Some(table_missing.clone()),
                    ..facts(D::Running, None, None)
                },
                halt(S::Paused, Cause::TableNotFound),
            ),
            (
                "still missing stays paused",
                Facts {
                    blocker: Some(table_missing),
                    ..facts(D::Running, Some(S::Paused), Some(Cause::TableNotFound))
                },
                halt(S::Paused, Cause::TableNotFound),
            ),
            (
                "table back resumes",
                facts(D::Running, Some(S::Paused), Some(Cause::TableNotFound)),
                run,
            ),
            (
                "table being created waits unpaused",
                Facts {
                    blocker: Some(Blocker {
                        cause: Cause::TablePending,
                        message: "pending".into(),
                    }),
                    ..facts(D::Running, None, None)
                },
                halt(S::NeedSchedule, Cause::TablePending),
            ),
            (
                "error window pauses",
                Facts {
                    error_window_exceeded: Some("too many".into()),
                    ..facts(D::Running, Some(S::Running), None)
                },
                halt(S::Paused, Cause::ErrorWindowExceeded),
            ),
            (
                "error pause waits",
                facts(
                    D::Running,
                    Some(S::Paused),
                    Some(Cause::ErrorWindowExceeded),
                ),
                keep,
            ),
            (
                "error pause lifted by spec edit",
                Facts {
                    generation: 2,
                    ..facts(
                        D::Running,
                        Some(S::Paused),
                        Some(Cause::ErrorWindowExceeded),
                    )
                },
                run,
            ),
            (
                "offset out of range pauses",
                Facts {
                    task_pause: Some(Blocker {
                        cause: Cause::OffsetOutOfRange,
                        message: "partition 0: offset 50 is out of range 100..160".into(),
                    }),
                    ..facts(D::Running, Some(S::Running), None)
                },
                halt(S::Paused, Cause::OffsetOutOfRange),
            ),
            (
                "out-of-range pause waits for the user",
                facts(D::Running, Some(S::Paused), Some(Cause::OffsetOutOfRange)),
                keep,
            ),
            (
                "out-of-range pause lifted by an offsets edit",
                Facts {
                    generation: 2,
                    ..facts(D::Running, Some(S::Paused), Some(Cause::OffsetOutOfRange))
                },
                run,
            ),
            (
                "repeated failure pauses",
                Facts {
                    task_pause: Some(Blocker {
                        cause: Cause::RepeatedFailure,
                        message: "engine failed 5 times".into(),
                    }),
                    ..facts(D::Running, Some(S::NeedSchedule), None)
                },
                halt(S::Paused, Cause::RepeatedFailure),
            ),
            (
                "repeated-failure pause waits",
                facts(D::Running, Some(S::Paused), Some(Cause::RepeatedFailure)),
                keep,
            ),
            (
                "user pause wins over blocker",
                Facts {
                    blocker: Some(Blocker {
                        cause: Cause::KafkaUnavailable,
                        message: "x".into(),
                    }),
                    ..facts(D::Paused, Some(S::Running), None)
                },
                halt(S::Paused, Cause::UserPaused),
            ),
        ];
        for (name, f, expected) in cases {
            assert_eq!(shape(&decide(&f)), expected, "{name}");
        }
    }

    #[test]
    fn running_state_passes_through_need_schedule() {
        let cases = [
            (None, 2, S::NeedSchedule, Cause::Scheduling),
            (Some(S::Paused), 2, S::NeedSchedule, Cause::Scheduling),
            (Some(S::NeedSchedule), 2, S::Running, Cause::Running),
            (
                Some(S::NeedSchedule),
                0,
                S::NeedSchedule,
                Cause::NoLiveWorker,
            ),
            (Some(S::Running), 1, S::Running, Cause::Running),
            (Some(S::Running), 0, S::NeedSchedule, Cause::NoLiveWorker),
        ];
        for (current, tasks, state, cause) in cases {
            assert_eq!(
                running_state(current, tasks),
                (state, cause),
                "{current:?} {tasks}"
            );
        }
    }

    fn status(
        epoch: i64,
        loaded: i64,
        offsets: &[(&str, i64)],
        lag: &[(&str, i64)],
    ) -> RoutineLoadTaskStatus {
        RoutineLoadTaskStatus {
            epoch,
            counters: Counters {
                loaded_rows: loaded,
                total_rows: loaded + 1,
                error_rows: 1,
                received_bytes: loaded * 10,
                committed_batches: 1,
                ..Default::default()
            },
            committed_offsets: offsets.iter().map(|(p, o)| (p.to_string(), *o)).collect(),
            lag: lag.iter().map(|(p, l)| (p.to_string(), *l)).collect(),
            error_log_url: Some(format!("http://w/{epoch}")),
            ..Default::default()
        }
    }

    #[test]
    fn fold_sums_task_counters_and_keeps_base_and_progress() {
        let base = Counters {
            loaded_rows: 100,
            ..Default::default()
        };
        let tasks = vec![
            TaskReport {
                epoch: 0,
                status: Some(status(0, 10, &[("0", 5)], &[("0", 2)])),
            },
            TaskReport {
                epoch: 1,
                status: Some(status(1, 20, &[("1", 7)], &[("1", 3)])),
            },
            // Status still from the previous epoch (the new worker has not reported yet): counts.
            TaskReport {
                epoch: 2,
                status: Some(status(1, 1000, &[("2", 1)], &[])),
            },
            TaskReport {
                epoch: 0,
                status: None,
            },
        ];
        let prev: BTreeMap<String, i64> = [("0".to_string(), 9), ("3".to_string(), 4)].into();
        let mut samples = VecDeque::new();
        let f = fold(&base, &tasks, &prev, &[], &mut samples, 1_000);
        assert_eq!(f.statistic.loaded_rows, 1130);
        assert_eq!(f.statistic.total_rows, 1033);
        assert_eq!(f.statistic.error_rows, 3);
        assert_eq!(f.statistic.committed_task_num, 3);
        assert_eq!(
            f.progress,
            [
                ("0".into(), 9),
                ("1".into(), 7),
                ("2".into(), 1),
                ("3".into(), 4)
            ]
            .into()
        );
        assert_eq!(f.lag, [("0".into(), 2), ("1".into(), 3)].into());
        assert_eq!(f.total_lag, Some(5));
        assert_eq!(f.current_task_num, 4);
        assert_eq!(f.error_log_urls, vec!["http://w/0", "http://w/1"]);
        assert_eq!(f.statistic.load_rows_rate, 0, "one sample has no rate");
    }

    #[test]
    fn rates_use_the_recent_window() {
        let mut samples = VecDeque::new();
        let t = |loaded| TaskReport {
            epoch: 0,
            status: Some(status(0, loaded, &[], &[])),
        };
        fold(
            &Counters::default(),
            &[t(0)],
            &BTreeMap::new(),
            &[],
            &mut samples,
            0,
        );
        let f = fold(
            &Counters::default(),
            &[t(100)],
            &BTreeMap::new(),
            &[],
            &mut samples,
            10_000,
        );
        assert_eq!(f.statistic.load_rows_rate, 10);
        assert_eq!(f.statistic.received_bytes_rate, 100);
        // 70 s later the first samples fall out of the 60 s window.
        let f = fold(
            &Counters::default(),
            &[t(100)],
            &BTreeMap::new(),
            &[],
            &mut samples,
            80_000,
        );
        assert_eq!(samples.len(), 1);
        assert_eq!(f.statistic.load_rows_rate, 0);
    }

    #[test]
    fn error_log_urls_are_capped() {
        let prev: Vec<String> = (0..5).map(|i| format!("u{i}")).collect();
        let tasks = vec![TaskReport {
            epoch: 7,
            status: Some(status(7, 0, &[], &[])),
        }];
        let f = fold(
            &Counters::default(),
            &tasks,
            &BTreeMap::new(),
            &prev,
            &mut VecDeque::new(),
            0,
        );
        assert_eq!(f.error_log_urls.len(), MAX_ERROR_LOG_URLS);
        assert_eq!(
            f.error_log_urls.last().map(String::as_str),
            Some("http://w/7")
        );
    }

    #[test]
    fn status_is_written_when_users_see_a_change_and_rates_on_a_coarser_clock() {
        let current = RoutineLoadJobStatus {
            state: Some(JobState::Running),
            statistic: JobStatistic {
                loaded_rows: 100,
                load_rows_rate: 10,
                received_bytes_rate: 1000,
                ..Default::default()
            },
            ..Default::default()
        };
        let with = |f: &dyn Fn(&mut RoutineLoadJobStatus)| {
            let mut s = current.clone();
            f(&mut s);
            s
        };
        let rates = with(&|s| {
            s.statistic.load_rows_rate = 7;
            s.statistic.received_bytes_rate = 700;
        });
        let rows = with(&|s| {
            s.statistic.loaded_rows = 120;
            s.statistic.load_rows_rate = 7;
        });
        let paused = with(&|s| s.state = Some(JobState::Paused));
        // (case, proposed, ms since the rates were written, written?)
        let cases = [
            ("nothing changed", current.clone(), 60_000, false),
            (
                "only the rates moved, 5 s after",
                rates.clone(),
                5_000,
                false,
            ),
            (
                "only the rates moved, 29.9 s after",
                rates.clone(),
                29_900,
                false,
            ),
            (
                "only the rates moved, 30 s after",
                rates.clone(),
                30_000,
                true,
            ),
            (
                "loaded rows changed (rates with them)",
                rows.clone(),
                1_000,
                true,
            ),
            ("state changed", paused.clone(), 0, true),
        ];
        for (case, proposed, since, written) in cases {
            let out = status_to_write(&current, &proposed, 1_000_000, 1_000_000 + since, 30_000);
            assert_eq!(out.is_some(), written, "{case}");
            if let Some(o) = out {
                assert_eq!(o, proposed, "{case}: writes the whole proposed status");
            }
        }
    }

    #[test]
    fn backoff_is_capped() {
        let got: Vec<u64> = (0..10).map(backoff_secs).collect();
        assert_eq!(got, vec![5, 10, 20, 40, 80, 160, 300, 300, 300, 300]);
    }
}
