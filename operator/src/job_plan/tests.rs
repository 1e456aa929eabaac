//! Table-driven tests of `plan`: each case is a job's inputs (status, tasks, Kafka, workers) and
//! what the plan must do with them.

use super::*;
use routine_load_api::task::RoutineLoadTaskStatus;

const NOW_S: i64 = 1_000_000;

fn now() -> Timestamp {
    Timestamp::from_second(NOW_S).expect("valid")
}

fn ago(s: i64) -> Time {
    Time(Timestamp::from_second(NOW_S - s).expect("valid"))
}

fn cfg() -> Config {
    Config {
        transient_grace: Duration::from_secs(60),
        max_tasks_per_job: 5,
        max_tasks_per_worker: 16,
        worker_namespace: "rl".into(),
        ..Config::default()
    }
}

fn counters(loaded: i64) -> Counters {
    Counters {
        loaded_rows: loaded,
        total_rows: loaded,
        committed_batches: 1,
        ..Default::default()
    }
}

/// A task `j-<i>` with UID `u<i>` on `worker`, with `loaded` rows counted.
fn task(i: usize, partitions: &[i32], worker: &str, epoch: i64, loaded: i64) -> RoutineLoadTask {
    let mut t = RoutineLoadTask::new(
        &format!("j-{i}"),
        RoutineLoadTaskSpec {
            job: "j".into(),
            job_uid: "job-uid".into(),
            partitions: partitions.to_vec(),
            worker: worker.into(),
            epoch,
            job_generation: 1,
        },
    );
    t.metadata.uid = Some(format!("u{i}"));
    t.status = Some(RoutineLoadTaskStatus {
        epoch,
        counters: counters(loaded),
        ..Default::default()
    });
    t
}

fn two_tasks() -> Vec<RoutineLoadTask> {
    vec![task(0, &[0, 1], "w0", 0, 10), task(1, &[2, 3], "w1", 0, 20)]
}

fn workers(spec: &[(&str, bool)]) -> Vec<WorkerState> {
    spec.iter()
        .map(|(n, live)| WorkerState {
            name: n.to_string(),
            live: *live,
        })
        .collect()
}

fn cond(type_: &str, status: &str, reason: &str, since: Time) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: String::new(),
        observed_generation: Some(1),
        last_transition_time: since,
    }
}

fn running_status(extra: Vec<Condition>) -> RoutineLoadJobStatus {
    let mut conditions = vec![cond(READY_CONDITION, "True", "Running", ago(3600))];
    conditions.extend(extra);
    RoutineLoadJobStatus {
        state: Some(JobState::Running),
        current_kafka_partitions: vec![0, 1, 2, 3],
        observed_generation: Some(1),
        conditions,
        retired_counters: Some(Counters::default()),
        ..Default::default()
    }
}

/// A running job with two tasks on two live workers (of three), Kafka answering.
fn inputs() -> PlanInputs {
    PlanInputs {
        job_name: "j".into(),
        job_uid: "job-uid".into(),
        generation: 1,
        desired: DesiredState::Running,
        desired_concurrent_number: 2,
        limits: WindowLimits {
            max_error_number: 5,
            max_batch_rows: 200_000,
            max_filter_ratio: 1.0,
        },
        status: running_status(vec![]),
        legacy_retired: None,
        tasks: two_tasks(),
        table_blocker: None,
        kafka: KafkaRead::Partitions(vec![0, 1, 2, 3]),
        workers: workers(&[("w0", true), ("w1", true), ("w2", true)]),
        other_load: BTreeMap::new(),
        unreported_scan: None,
    }
}

/// What a case expects.
struct Expect {
    state: JobState,
    cause: Cause,
    unchanged: &'static [&'static str],
    delete: &'static [&'static str],
    /// (task, worker, epoch, partitions)
    apply: &'static [(&'static str, &'static str, i64, &'static [i32])],
    /// Texts the reason must contain.
    reason: &'static [&'static str],
    /// Condition (type, status) pairs the plan must carry.
    conditions: &'static [(&'static str, &'static str)],
    /// Whether a failure is being ridden out.
    tolerated: bool,
}

const RUN_UNCHANGED: Expect = Expect {
    state: JobState::Running,
    cause: Cause::Running,
    unchanged: &["j-0", "j-1"],
    delete: &[],
    apply: &[],
    reason: &[],
    conditions: &[(KAFKA_CONDITION, "True"), (WORKERS_CONDITION, "True")],
    tolerated: false,
};

#[test]
fn plan_decisions() {
    let cases: Vec<(&str, PlanInputs, Expect)> = vec![
        ("steady: nothing to do", inputs(), RUN_UNCHANGED),
        (
            "Kafka metadata timeout: tasks keep running on the last known partitions",
            PlanInputs {
                kafka: KafkaRead::Failed("metadata timed out".into()),
                ..inputs()
            },
            Expect {
                conditions: &[(KAFKA_CONDITION, "False"), (WORKERS_CONDITION, "True")],
                tolerated: true,
                ..RUN_UNCHANGED
            },
        ),
        (
            "Kafka failing for 59 s (start recorded by a previous leader): still ridden out",
            PlanInputs {
                kafka: KafkaRead::Failed("metadata timed out".into()),
                status: running_status(vec![cond(
                    KAFKA_CONDITION,
                    "False",
                    "MetadataUnavailable",
                    ago(59),
                )]),
                ..inputs()
            },
            Expect {
                conditions: &[(KAFKA_CONDITION, "False"), (WORKERS_CONDITION, "True")],
                tolerated: true,
                ..RUN_UNCHANGED
            },
        ),
        (
            "Kafka failing past the grace period: paused, saying which failure and since when",
            PlanInputs {
                kafka: KafkaRead::Failed("metadata timed out".into()),
                status: running_status(vec![cond(
                    KAFKA_CONDITION,
                    "False",
                    "MetadataUnavailable",
                    ago(60),
                )]),
                ..inputs()
            },
            Expect {
                state: JobState::Paused,
                cause: Cause::KafkaUnavailable,
                unchanged: &[],
                delete: &["j-0", "j-1"],
                apply: &[],
                reason: &[
                    "metadata timed out",
                    "failing since 1970-01-12T13:45:40Z",
                    "60s grace period",
                ],
                conditions: &[(KAFKA_CONDITION, "False")],
                tolerated: false,
            },
        ),
        (
            "an old True condition is not a failure start",
            PlanInputs {
                kafka: KafkaRead::Failed("metadata timed out".into()),
                status: running_status(vec![cond(
                    KAFKA_CONDITION,
                    "True",
                    "MetadataRead",
                    ago(3600),
                )]),
                ..inputs()
            },
            Expect {
                conditions: &[(KAFKA_CONDITION, "False"), (WORKERS_CONDITION, "True")],
                tolerated: true,
                ..RUN_UNCHANGED
            },
        ),
        (
            "a new job whose metadata fails has nothing to keep running: paused at once",
            PlanInputs {
                kafka: KafkaRead::Failed("metadata timed out".into()),
                status: RoutineLoadJobStatus::default(),
                tasks: vec![],
                ..inputs()
            },
            Expect {
                state: JobState::Paused,
                cause: Cause::KafkaUnavailable,
                unchanged: &[],
                delete: &[],
                apply: &[],
                reason: &["metadata timed out"],
                conditions: &[(KAFKA_CONDITION, "False")],
                tolerated: false,
            },
        ),
        (
            "resumed while Kafka fails: tasks start on the last known partitions",
            PlanInputs {
                kafka: KafkaRead::Failed("metadata timed out".into()),
                status: RoutineLoadJobStatus {
                    state: Some(JobState::Paused),
                    conditions: vec![cond(READY_CONDITION, "False", "UserPaused", ago(600))],
                    ..running_status(vec![])
                },
                tasks: vec![],
                ..inputs()
            },
            Expect {
                state: JobState::NeedSchedule,
                cause: Cause::Scheduling,
                unchanged: &[],
                delete: &[],
                apply: &[("j-0", "w0", 0, &[0, 1]), ("j-1", "w1", 0, &[2, 3])],
                reason: &[],
                conditions: &[(KAFKA_CONDITION, "False"), (WORKERS_CONDITION, "True")],
                tolerated: true,
            },
        ),
        (
            "every worker Lease expired at once: a control-plane problem, tasks stay",
            PlanInputs {
                workers: workers(&[("w0", false), ("w1", false), ("w2", false)]),
                ..inputs()
            },
            Expect {
                conditions: &[(KAFKA_CONDITION, "True"), (WORKERS_CONDITION, "False")],
                tolerated: true,
                ..RUN_UNCHANGED
            },
        ),
        (
            "no live worker past the grace period: tasks removed, saying since when",
            PlanInputs {
                workers: workers(&[("w0", false), ("w1", false)]),
                status: running_status(vec![cond(
                    WORKERS_CONDITION,
                    "False",
                    "NoFreshLease",
                    ago(61),
                )]),
                ..inputs()
            },
            Expect {
                state: JobState::NeedSchedule,
                cause: Cause::NoLiveWorker,
                unchanged: &[],
                delete: &["j-0", "j-1"],
                apply: &[],
                reason: &["no live worker", "since 1970-01-12T13:45:39Z"],
                conditions: &[(KAFKA_CONDITION, "True"), (WORKERS_CONDITION, "False")],
                tolerated: false,
            },
        ),
        (
            "no worker and no task: nothing to keep, NoLiveWorker at once",
            PlanInputs {
                workers: vec![],
                tasks: vec![],
                status: RoutineLoadJobStatus::default(),
                ..inputs()
            },
            Expect {
                state: JobState::NeedSchedule,
                cause: Cause::NoLiveWorker,
                unchanged: &[],
                delete: &[],
                apply: &[],
                reason: &["no fresh worker Lease in namespace rl"],
                conditions: &[(KAFKA_CONDITION, "True"), (WORKERS_CONDITION, "False")],
                tolerated: false,
            },
        ),
        (
            "one worker dead: its task moves to the idle live worker with epoch + 1",
            PlanInputs {
                workers: workers(&[("w0", false), ("w1", true), ("w2", true)]),
                ..inputs()
            },
            Expect {
                unchanged: &["j-1"],
                apply: &[("j-0", "w2", 1, &[0, 1])],
                ..RUN_UNCHANGED
            },
        ),
        (
            "a partition added to the topic joins a task, with epoch + 1",
            PlanInputs {
                kafka: KafkaRead::Partitions(vec![0, 1, 2, 3, 4]),
                ..inputs()
            },
            Expect {
                unchanged: &["j-1"],
                apply: &[("j-0", "w0", 1, &[0, 1, 4])],
                ..RUN_UNCHANGED
            },
        ),
        (
            "a spec edit reaches the tasks through jobGeneration, same epoch",
            PlanInputs {
                generation: 2,
                ..inputs()
            },
            Expect {
                unchanged: &[],
                apply: &[("j-0", "w0", 0, &[0, 1]), ("j-1", "w1", 0, &[2, 3])],
                ..RUN_UNCHANGED
            },
        ),
        (
            "user pause removes every task",
            PlanInputs {
                desired: DesiredState::Paused,
                kafka: KafkaRead::NotChecked,
                workers: vec![],
                ..inputs()
            },
            Expect {
                state: JobState::Paused,
                cause: Cause::UserPaused,
                unchanged: &[],
                delete: &["j-0", "j-1"],
                apply: &[],
                reason: &["paused by user"],
                conditions: &[],
                tolerated: false,
            },
        ),
        (
            "a missing table pauses at once (not transient)",
            PlanInputs {
                table_blocker: Some(Blocker {
                    cause: Cause::TableNotFound,
                    message: "table 't' not found".into(),
                }),
                kafka: KafkaRead::NotChecked,
                workers: vec![],
                ..inputs()
            },
            Expect {
                state: JobState::Paused,
                cause: Cause::TableNotFound,
                unchanged: &[],
                delete: &["j-0", "j-1"],
                apply: &[],
                reason: &["table 't' not found"],
                conditions: &[],
                tolerated: false,
            },
        ),
        (
            "a deleted table cancels the job and removes its tasks",
            PlanInputs {
                table_blocker: Some(Blocker {
                    cause: Cause::TableDeleted,
                    message: "table 't' was deleted".into(),
                }),
                kafka: KafkaRead::NotChecked,
                workers: vec![],
                ..inputs()
            },
            Expect {
                state: JobState::Cancelled,
                cause: Cause::TableDeleted,
                unchanged: &[],
                delete: &["j-0", "j-1"],
                apply: &[],
                reason: &["table 't' was deleted"],
                conditions: &[],
                tolerated: false,
            },
        ),
        (
            "a deleted table cancels a paused job too",
            PlanInputs {
                table_blocker: Some(Blocker {
                    cause: Cause::TableDeleted,
                    message: "table 't' was deleted".into(),
                }),
                desired: DesiredState::Paused,
                status: RoutineLoadJobStatus {
                    state: Some(JobState::Paused),
                    conditions: vec![cond(READY_CONDITION, "False", "UserPaused", ago(600))],
                    ..running_status(vec![])
                },
                tasks: vec![],
                kafka: KafkaRead::NotChecked,
                workers: vec![],
                ..inputs()
            },
            Expect {
                state: JobState::Cancelled,
                cause: Cause::TableDeleted,
                unchanged: &[],
                delete: &[],
                apply: &[],
                reason: &["table 't' was deleted"],
                conditions: &[],
                tolerated: false,
            },
        ),
    ];
    for (name, inputs, e) in cases {
        let p = plan(&inputs, &cfg(), now());
        assert_eq!((p.state, p.cause), (e.state, e.cause), "{name}: {p:#?}");
        assert_eq!(p.unchanged, e.unchanged, "{name}: unchanged");
        assert_eq!(p.delete, e.delete, "{name}: delete");
        let applied: Vec<(&str, &str, i64, &[i32])> = p
            .apply
            .iter()
            .map(|a| {
                (
                    a.name.as_str(),
                    a.spec.worker.as_str(),
                    a.spec.epoch,
                    a.spec.partitions.as_slice(),
                )
            })
            .collect();
        assert_eq!(applied, e.apply, "{name}: apply");
        let reason = p.reason.clone().unwrap_or_default();
        for r in e.reason {
            assert!(reason.contains(r), "{name}: reason {reason:?} lacks {r:?}");
        }
        let conditions: Vec<(&str, &str)> = p
            .conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str()))
            .collect();
        assert_eq!(conditions, e.conditions, "{name}: conditions");
        assert_eq!(
            !p.tolerated.is_empty(),
            e.tolerated,
            "{name}: {:?}",
            p.tolerated
        );
        // While a failure is ridden out the job keeps its partitions.
        if e.tolerated {
            assert_eq!(p.partitions, vec![0, 1, 2, 3], "{name}");
        }
    }
}

#[test]
fn a_failure_start_survives_in_the_condition_and_only_moves_on_recovery() {
    let failing = PlanInputs {
        kafka: KafkaRead::Failed("timeout".into()),
        ..inputs()
    };
    let first = plan(&failing, &cfg(), now());
    let started = first
        .conditions
        .iter()
        .find(|c| c.type_ == KAFKA_CONDITION)
        .expect("condition")
        .clone();
    assert_eq!(started.last_transition_time, Time(now()));
    // 30 s later (maybe another leader, reading the written status): same start.
    let later = Timestamp::from_second(NOW_S + 30).expect("valid");
    let mut status = running_status(vec![]);
    status.conditions.push(started.clone());
    let second = plan(
        &PlanInputs {
            status: status.clone(),
            ..failing.clone()
        },
        &cfg(),
        later,
    );
    let c = second
        .conditions
        .iter()
        .find(|c| c.type_ == KAFKA_CONDITION)
        .expect("condition");
    assert_eq!(c.last_transition_time, Time(now()));
    assert!(
        c.message.contains("until 1970-01-12T13:47:40Z"),
        "{}",
        c.message
    );
    // Kafka answers: True, from now on.
    let ok = plan(&PlanInputs { status, ..inputs() }, &cfg(), later);
    let c = ok
        .conditions
        .iter()
        .find(|c| c.type_ == KAFKA_CONDITION)
        .expect("condition");
    assert_eq!(
        (c.status.as_str(), c.last_transition_time.clone()),
        ("True", Time(later))
    );
}

#[test]
fn retired_counters_are_keyed_by_task_uid_and_count_once() {
    let paused = |status: RoutineLoadJobStatus, tasks: Vec<RoutineLoadTask>| PlanInputs {
        desired: DesiredState::Paused,
        kafka: KafkaRead::NotChecked,
        workers: vec![],
        status,
        tasks,
        ..inputs()
    };
    let loaded = |p: &JobPlan, tasks: &[RoutineLoadTask]| {
        let (mut base, live) = counted(p, tasks);
        for t in live {
            base.add(&t.status.as_ref().expect("status").counters);
        }
        base.loaded_rows
    };
    // name, status retired sum, status retired entries, legacy annotation, tasks,
    // expected (retired sum, entries by uid, loaded rows counted in total)
    type Case = (
        &'static str,
        i64,
        Vec<(&'static str, i64)>,
        Option<i64>,
        Vec<RoutineLoadTask>,
        (i64, Vec<(&'static str, i64)>, i64),
    );
    let cases: Vec<Case> = vec![
        (
            "pausing retires each task under its UID",
            100,
            vec![],
            None,
            two_tasks(),
            (100, vec![("u0", 10), ("u1", 20)], 130),
        ),
        (
            "recorded before, delete not done yet: recording again counts once",
            100,
            vec![("u0", 10), ("u1", 20)],
            None,
            two_tasks(),
            (100, vec![("u0", 10), ("u1", 20)], 130),
        ),
        (
            "the task loaded more before it stopped: its entry is overwritten, not added",
            100,
            vec![("u0", 5)],
            None,
            two_tasks(),
            (100, vec![("u0", 10), ("u1", 20)], 130),
        ),
        (
            "tasks gone: their entries move into the sum",
            100,
            vec![("u0", 10), ("u1", 20)],
            None,
            vec![],
            (130, vec![], 130),
        ),
        (
            "an older operator's annotation seeds the sum",
            0,
            vec![],
            Some(7),
            vec![],
            (7, vec![], 7),
        ),
    ];
    for (name, sum, entries, legacy, tasks, (want_sum, want_entries, want_total)) in cases {
        let status = RoutineLoadJobStatus {
            state: Some(JobState::Running),
            retired_counters: legacy.is_none().then(|| counters(sum)),
            retired_tasks: entries
                .iter()
                .map(|(u, n)| (u.to_string(), counters(*n)))
                .collect(),
            ..running_status(vec![])
        };
        let i = PlanInputs {
            legacy_retired: legacy.map(counters),
            ..paused(status, tasks.clone())
        };
        let p = plan(&i, &cfg(), now());
        assert_eq!(p.retired_counters.loaded_rows, want_sum, "{name}");
        let got: Vec<(&str, i64)> = p
            .retired_tasks
            .iter()
            .map(|(u, c)| (u.as_str(), c.loaded_rows))
            .collect();
        assert_eq!(got, want_entries, "{name}");
        assert_eq!(loaded(&p, &tasks), want_total, "{name}");
    }

    // A task recorded as retired that the plan keeps after all (a resume raced the delete)
    // counts live again, once.
    let status = RoutineLoadJobStatus {
        retired_counters: Some(counters(100)),
        retired_tasks: [("u0".to_string(), counters(10))].into(),
        ..running_status(vec![])
    };
    let i = PlanInputs { status, ..inputs() };
    let p = plan(&i, &cfg(), now());
    assert!(p.retired_tasks.is_empty(), "{:?}", p.retired_tasks);
    assert_eq!(loaded(&p, &i.tasks), 130);
}

/// Three tasks, each with `errors` error rows in 1000 rows.
fn three_tasks_with_errors(errors: i64) -> Vec<RoutineLoadTask> {
    (0..3)
        .map(|i| {
            let mut t = task(i, &[i as i32], &format!("w{i}"), 0, 1_000 - errors);
            if let Some(s) = t.status.as_mut() {
                s.counters.total_rows = 1_000;
                s.counters.error_rows = errors;
            }
            t
        })
        .collect()
}

#[test]
fn the_error_window_is_the_jobs_not_one_tasks() {
    let three = |errors: i64, status: RoutineLoadJobStatus, generation: i64| PlanInputs {
        tasks: three_tasks_with_errors(errors),
        desired_concurrent_number: 3,
        kafka: KafkaRead::Partitions(vec![0, 1, 2]),
        status: RoutineLoadJobStatus {
            current_kafka_partitions: vec![0, 1, 2],
            ..status
        },
        generation,
        ..inputs()
    };
    let window_at = |generation, total_rows, error_rows| {
        Some(ErrorWindowStart {
            generation,
            total_rows,
            error_rows,
        })
    };
    // name, inputs, expected state and cause, error rows in the reason (if paused)
    let cases: Vec<(&str, PlanInputs, JobState, Cause, Option<&str>)> = vec![
        (
            "3 tasks x 3 error rows, maxErrorNumber 5: the job pauses (9 > 5)",
            three(
                3,
                RoutineLoadJobStatus {
                    error_window: window_at(1, 0, 0),
                    ..running_status(vec![])
                },
                1,
            ),
            JobState::Paused,
            Cause::ErrorWindowExceeded,
            Some("9 error rows in 3000 rows"),
        ),
        (
            "3 tasks x 1 error row: runs",
            three(
                1,
                RoutineLoadJobStatus {
                    error_window: window_at(1, 0, 0),
                    ..running_status(vec![])
                },
                1,
            ),
            JobState::Running,
            Cause::Running,
            None,
        ),
        (
            "errors of removed tasks count too (retired, 4 + 3 x 1 > 5)",
            three(
                1,
                RoutineLoadJobStatus {
                    error_window: window_at(1, 0, 0),
                    retired_counters: Some(Counters {
                        total_rows: 100,
                        error_rows: 4,
                        ..Default::default()
                    }),
                    ..running_status(vec![])
                },
                1,
            ),
            JobState::Paused,
            Cause::ErrorWindowExceeded,
            Some("7 error rows in 3100 rows"),
        ),
        (
            "after a spec edit the older generation's rows don't count",
            three(
                3,
                RoutineLoadJobStatus {
                    error_window: window_at(1, 0, 0),
                    ..running_status(vec![])
                },
                2,
            ),
            JobState::Running,
            Cause::Running,
            None,
        ),
    ];
    for (name, i, state, cause, reason) in cases {
        let p = plan(&i, &cfg(), now());
        assert_eq!((p.state, p.cause), (state, cause), "{name}: {:?}", p.reason);
        if let Some(r) = reason {
            let got = p.reason.clone().unwrap_or_default();
            assert!(got.contains(r), "{name}: {got}");
            assert_eq!(p.delete, vec!["j-0", "j-1", "j-2"], "{name}");
        } else {
            assert!(p.delete.is_empty(), "{name}: {:?}", p.delete);
        }
    }
}

/// A task being deleted (held by the task finalizer), with `loaded` rows and whether its worker
/// released it, deleted `ago_s` seconds before now.
fn deleted_task(
    i: usize,
    partitions: &[i32],
    worker: &str,
    loaded: i64,
    released: bool,
    ago_s: i64,
) -> RoutineLoadTask {
    let mut t = task(i, partitions, worker, 0, loaded);
    t.metadata.deletion_timestamp = Some(ago(ago_s));
    t.metadata.finalizers = Some(vec![TASK_FINALIZER.into(), "other/keep".into()]);
    t.metadata.resource_version = Some(format!("rv{i}"));
    if let Some(s) = t.status.as_mut() {
        s.released = released;
    }
    t
}

#[test]
fn deleted_tasks_count_until_released_and_hold_their_successors() {
    // (case, desired, job state, tasks, live workers,
    //  expected: state, released (task, why), held, applied, retired entries (uid, loaded))
    type Case = (
        &'static str,
        DesiredState,
        JobState,
        Vec<RoutineLoadTask>,
        &'static [&'static str],
        (
            JobState,
            Vec<(&'static str, ReleaseReason)>,
            &'static [&'static str],
            &'static [&'static str],
            Vec<(&'static str, i64)>,
        ),
    );
    let cases: Vec<Case> = vec![
        (
            "paused, the loop still committing: its latest counters are recorded, not released",
            DesiredState::Paused,
            JobState::Paused,
            vec![deleted_task(0, &[0, 1], "w0", 15, false, 5)],
            &["w0", "w1"],
            (JobState::Paused, vec![], &[], &[], vec![("u0", 15)]),
        ),
        (
            "the worker released it: the finalizer goes, with its final counters recorded",
            DesiredState::Paused,
            JobState::Paused,
            vec![deleted_task(0, &[0, 1], "w0", 17, true, 5)],
            &["w0", "w1"],
            (
                JobState::Paused,
                vec![("j-0", ReleaseReason::Released)],
                &[],
                &[],
                vec![("u0", 17)],
            ),
        ),
        (
            "its worker is gone: nothing runs it, the finalizer goes",
            DesiredState::Paused,
            JobState::Paused,
            vec![deleted_task(0, &[0, 1], "w9", 15, false, 5)],
            &["w0", "w1"],
            (
                JobState::Paused,
                vec![("j-0", ReleaseReason::WorkerGone)],
                &[],
                &[],
                vec![("u0", 15)],
            ),
        ),
        (
            "a live worker that never releases it: let go after the timeout",
            DesiredState::Paused,
            JobState::Paused,
            vec![deleted_task(0, &[0, 1], "w0", 15, false, 601)],
            &["w0", "w1"],
            (
                JobState::Paused,
                vec![("j-0", ReleaseReason::TimedOut)],
                &[],
                &[],
                vec![("u0", 15)],
            ),
        ),
        (
            "resumed while the old loops end: the new tasks on their partitions wait",
            DesiredState::Running,
            JobState::Paused,
            vec![
                deleted_task(0, &[0, 1], "w0", 10, false, 1),
                deleted_task(1, &[2, 3], "w1", 20, false, 1),
            ],
            &["w0", "w1"],
            (
                JobState::NeedSchedule,
                vec![],
                &["j-0", "j-1"],
                &[],
                vec![("u0", 10), ("u1", 20)],
            ),
        ),
        (
            "one old loop released: its successor starts, the other still waits",
            DesiredState::Running,
            JobState::NeedSchedule,
            vec![deleted_task(1, &[2, 3], "w1", 20, false, 1)],
            &["w0", "w1"],
            (
                JobState::Running,
                vec![],
                &["j-1"],
                &["j-0"],
                vec![("u1", 20)],
            ),
        ),
    ];
    for (
        case,
        desired,
        state,
        tasks,
        live,
        (want_state, want_release, want_held, want_apply, want_entries),
    ) in cases
    {
        let mut status = running_status(vec![]);
        status.state = Some(state);
        if state == JobState::Paused {
            status.conditions = vec![cond(READY_CONDITION, "False", "UserPaused", ago(10))];
        }
        let inputs = PlanInputs {
            desired,
            status,
            tasks,
            workers: live
                .iter()
                .map(|n| WorkerState {
                    name: n.to_string(),
                    live: true,
                })
                .collect(),
            ..inputs()
        };
        let p = plan(&inputs, &cfg(), now());
        assert_eq!(p.state, want_state, "{case}: state ({:?})", p.reason);
        let released: Vec<(&str, ReleaseReason)> =
            p.release.iter().map(|r| (r.name.as_str(), r.why)).collect();
        assert_eq!(released, want_release, "{case}: released");
        for r in &p.release {
            assert_eq!(r.finalizers_after, vec!["other/keep".to_string()], "{case}");
            assert!(
                r.resource_version.is_some(),
                "{case}: released at the version read"
            );
        }
        assert_eq!(p.held, want_held, "{case}: held");
        let applied: Vec<&str> = p.apply.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(applied, want_apply, "{case}: applied");
        let entries: Vec<(&str, i64)> = p
            .retired_tasks
            .iter()
            .map(|(u, c)| (u.as_str(), c.loaded_rows))
            .collect();
        assert_eq!(entries, want_entries, "{case}: retired entries");
        assert!(
            p.delete.is_empty(),
            "{case}: a deleted task is not deleted again"
        );
        let (_, live_counted) = counted(&p, &inputs.tasks);
        assert!(
            live_counted
                .iter()
                .all(|t| t.metadata.deletion_timestamp.is_none()),
            "{case}: a deleted task does not count live"
        );
    }
}

#[test]
fn batches_of_a_task_let_go_without_its_last_status_are_counted_once_from_the_table() {
    use crate::unreported::{Scan, ScannedCommit};
    // The job statistic's loaded rows as a reconcile would fold them (retired and live).
    let loaded = |p: &JobPlan, tasks: &[RoutineLoadTask]| {
        let (base, live) = counted(p, tasks);
        base.loaded_rows
            + live
                .iter()
                .filter_map(|t| t.status.as_ref())
                .map(|s| s.counters.loaded_rows)
                .sum::<i64>()
    };
    let scan = |first: i64, through: i64| Scan {
        first,
        through,
        commits: vec![
            ScannedCommit {
                version: 8,
                task_uid: "u5".into(),
                counters: Some(counters(4)),
            },
            ScannedCommit {
                version: 9,
                task_uid: "u0".into(),
                counters: Some(counters(100)),
            },
        ],
    };
    let mut gone = deleted_task(5, &[0, 1], "w9", 30, false, 5);
    gone.status.as_mut().expect("status").last_commit_version = Some(7);
    let mut status = running_status(vec![]);
    status.state = Some(JobState::Paused);
    status.conditions = vec![cond(READY_CONDITION, "False", "UserPaused", ago(10))];
    let base = PlanInputs {
        desired: DesiredState::Paused,
        workers: workers(&[("w0", true)]),
        ..inputs()
    };

    // 1. Its worker is gone: let go on its last status (30 rows, through version 7), with an
    // entry recorded in the same status write.
    let inputs1 = PlanInputs {
        status: status.clone(),
        tasks: vec![gone.clone()],
        unreported_scan: Some(scan(0, 9)),
        ..base.clone()
    };
    let p1 = plan(&inputs1, &cfg(), now());
    assert_eq!(p1.release.len(), 1);
    assert_eq!(p1.release[0].why, ReleaseReason::WorkerGone);
    assert!(
        p1.retires(&status),
        "the entry is written before the finalizer goes"
    );
    let e = &p1.unreported_tasks["u5"];
    assert_eq!((e.task.as_str(), e.counted_through), ("j-5", Some(7)));
    assert_eq!(
        loaded(&p1, &inputs1.tasks),
        30,
        "nothing read while the task object is still there"
    );

    // 2. The task object is gone: its batch at version 8 is counted, another task's is not.
    let mut recorded = status.clone();
    recorded.retired_counters = Some(p1.retired_counters);
    recorded.retired_tasks = p1.retired_tasks.clone();
    recorded.unreported_tasks = p1.unreported_tasks.clone();
    let inputs2 = PlanInputs {
        status: recorded.clone(),
        tasks: vec![],
        unreported_scan: Some(scan(8, 9)),
        ..base.clone()
    };
    let p2 = plan(&inputs2, &cfg(), now());
    assert_eq!(
        loaded(&p2, &[]),
        34,
        "its last status and the unreported batch"
    );
    assert_eq!(p2.unreported_tasks["u5"].counted_through, Some(9));

    // 3. The same commits read again (a status write that conflicted, then a read from the
    // older entry would start at 8; from the written one, at 10): counted once.
    let mut recorded2 = recorded.clone();
    recorded2.retired_counters = Some(p2.retired_counters);
    recorded2.retired_tasks = p2.retired_tasks.clone();
    recorded2.unreported_tasks = p2.unreported_tasks.clone();
    let inputs3 = PlanInputs {
        status: recorded2,
        tasks: vec![],
        unreported_scan: Some(scan(8, 9)),
        ..base.clone()
    };
    assert_eq!(loaded(&plan(&inputs3, &cfg(), now()), &[]), 34);

    // A task its worker released carries every batch in its status: no entry.
    let mut released = gone.clone();
    released.status.as_mut().expect("status").released = true;
    let p = plan(
        &PlanInputs {
            status,
            tasks: vec![released],
            ..base
        },
        &cfg(),
        now(),
    );
    assert_eq!(p.release[0].why, ReleaseReason::Released);
    assert!(p.unreported_tasks.is_empty());
}

#[test]
fn a_task_pause_request_stands_only_for_its_assignment_and_job_spec() {
    use routine_load_api::task::{TaskPauseReason, TaskPauseRequest};
    // (case, status epoch, status job generation, task spec job generation, paused)
    let cases = [
        ("this assignment, this spec", 0, Some(2), 2, true),
        ("a worker that predates jobGeneration", 0, None, 2, true),
        ("an older assignment (epoch)", 1, Some(2), 2, false),
        (
            "written under the job spec before the edit (the edit may have fixed it)",
            0,
            Some(1),
            2,
            false,
        ),
    ];
    for (case, status_epoch, status_generation, spec_generation, paused) in cases {
        let mut t = task(0, &[0, 1, 2, 3], "w0", 0, 10);
        t.spec.job_generation = spec_generation;
        let s = t.status.as_mut().expect("status");
        s.epoch = status_epoch;
        s.job_generation = status_generation;
        s.pause_request = Some(TaskPauseRequest {
            reason: TaskPauseReason::OffsetOutOfRange,
            message: "offset 50 is no longer in Kafka".into(),
        });
        let mut status = running_status(vec![]);
        status.state = Some(JobState::NeedSchedule);
        status.observed_generation = Some(2);
        let inputs = PlanInputs {
            generation: 2,
            desired_concurrent_number: 1,
            status,
            tasks: vec![t],
            ..inputs()
        };
        let p = plan(&inputs, &cfg(), now());
        assert_eq!(
            p.state == JobState::Paused,
            paused,
            "{case}: {:?} {:?}",
            p.state,
            p.reason
        );
        if paused {
            assert_eq!(p.cause, Cause::OffsetOutOfRange, "{case}");
            assert!(
                p.reason.as_deref().is_some_and(|r| r.contains("offset 50")),
                "{case}"
            );
        }
    }
}
