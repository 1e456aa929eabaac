//! TaskScheduler decisions (StarRocks FE): which live worker runs each task. Pure functions; the
//! controller applies their results.

use std::collections::BTreeMap;

/// A worker as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerState {
    /// Pod name.
    pub name: String,
    /// Whether its Lease was renewed within the lease duration.
    pub live: bool,
}

/// A task to place, with the worker it runs on now (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskPlacement {
    /// Task name.
    pub task: String,
    /// Worker currently assigned.
    pub worker: Option<String>,
}

/// Where a task goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub task: String,
    /// The worker, or None when every live worker is at its cap.
    pub worker: Option<String>,
    /// Whether the task changed worker: its epoch must be incremented so the old worker stops.
    pub moved: bool,
}

/// Places tasks on live workers: a task stays on its worker while that worker is live and under
/// `cap_per_worker`; every other task goes to the least-loaded live worker (ties by name), counting
/// the tasks of other jobs in `other_load`.
pub fn assign(
    tasks: &[TaskPlacement],
    workers: &[WorkerState],
    other_load: &BTreeMap<String, usize>,
    cap_per_worker: usize,
) -> Vec<Assignment> {
    let mut load: BTreeMap<&str, usize> = workers
        .iter()
        .filter(|w| w.live)
        .map(|w| {
            (
                w.name.as_str(),
                other_load.get(&w.name).copied().unwrap_or(0),
            )
        })
        .collect();

    let mut result: Vec<Option<Assignment>> = vec![None; tasks.len()];
    // First keep tasks where they are, in task order, while their worker has room.
    for (i, t) in tasks.iter().enumerate() {
        let Some(current) = t.worker.as_deref() else {
            continue;
        };
        if let Some(n) = load.get_mut(current)
            && *n < cap_per_worker
        {
            *n += 1;
            result[i] = Some(Assignment {
                task: t.task.clone(),
                worker: Some(current.to_string()),
                moved: false,
            });
        }
    }
    // Then place the rest on the least-loaded live worker.
    for (i, t) in tasks.iter().enumerate() {
        if result[i].is_some() {
            continue;
        }
        let target = load
            .iter()
            .filter(|(_, n)| **n < cap_per_worker)
            .min_by(|a, b| a.1.cmp(b.1).then(a.0.cmp(b.0)))
            .map(|(w, _)| w.to_string());
        if let Some(w) = &target {
            *load.get_mut(w.as_str()).expect("chosen from load") += 1;
        }
        result[i] = Some(Assignment {
            task: t.task.clone(),
            moved: target.is_some() && target != t.worker,
            worker: target,
        });
    }
    result
        .into_iter()
        .map(|a| a.expect("every task placed"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workers(spec: &[(&str, bool)]) -> Vec<WorkerState> {
        spec.iter()
            .map(|(n, live)| WorkerState {
                name: n.to_string(),
                live: *live,
            })
            .collect()
    }

    fn tasks(spec: &[(&str, Option<&str>)]) -> Vec<TaskPlacement> {
        spec.iter()
            .map(|(t, w)| TaskPlacement {
                task: t.to_string(),
                worker: w.map(str::to_string),
            })
            .collect()
    }

    fn placed(a: &[Assignment]) -> Vec<(&str, Option<&str>, bool)> {
        a.iter()
            .map(|a| (a.task.as_str(), a.worker.as_deref(), a.moved))
            .collect()
    }

    #[test]
    fn table_of_placements() {
        struct Case {
            name: &'static str,
            tasks: &'static [(&'static str, Option<&'static str>)],
            workers: &'static [(&'static str, bool)],
            other: &'static [(&'static str, usize)],
            cap: usize,
            expected: &'static [(&'static str, Option<&'static str>, bool)],
        }
        let cases = [
            Case {
                name: "new tasks spread over workers",
                tasks: &[("t0", None), ("t1", None), ("t2", None)],
                workers: &[("w0", true), ("w1", true)],
                other: &[],
                cap: 10,
                expected: &[
                    ("t0", Some("w0"), true),
                    ("t1", Some("w1"), true),
                    ("t2", Some("w0"), true),
                ],
            },
            Case {
                name: "tasks stay on live workers",
                tasks: &[("t0", Some("w1")), ("t1", Some("w1"))],
                workers: &[("w0", true), ("w1", true)],
                other: &[],
                cap: 10,
                expected: &[("t0", Some("w1"), false), ("t1", Some("w1"), false)],
            },
            Case {
                name: "a dead worker's task moves to the least loaded live one",
                tasks: &[("t0", Some("w0")), ("t1", Some("w1"))],
                workers: &[("w0", false), ("w1", true), ("w2", true)],
                other: &[],
                cap: 10,
                expected: &[("t0", Some("w2"), true), ("t1", Some("w1"), false)],
            },
            Case {
                name: "a vanished worker counts as dead",
                tasks: &[("t0", Some("gone"))],
                workers: &[("w0", true)],
                other: &[],
                cap: 10,
                expected: &[("t0", Some("w0"), true)],
            },
            Case {
                name: "other jobs' load counts",
                tasks: &[("t0", None)],
                workers: &[("w0", true), ("w1", true)],
                other: &[("w0", 3), ("w1", 1)],
                cap: 10,
                expected: &[("t0", Some("w1"), true)],
            },
            Case {
                name: "the per-worker cap leaves tasks unplaced",
                tasks: &[("t0", None), ("t1", None)],
                workers: &[("w0", true)],
                other: &[],
                cap: 1,
                expected: &[("t0", Some("w0"), true), ("t1", None, false)],
            },
            Case {
                name: "an over-cap worker sheds a task",
                tasks: &[("t0", Some("w0")), ("t1", Some("w0"))],
                workers: &[("w0", true), ("w1", true)],
                other: &[],
                cap: 1,
                expected: &[("t0", Some("w0"), false), ("t1", Some("w1"), true)],
            },
            Case {
                name: "no live worker",
                tasks: &[("t0", Some("w0"))],
                workers: &[("w0", false)],
                other: &[],
                cap: 10,
                expected: &[("t0", None, false)],
            },
        ];
        for case in cases {
            let other: BTreeMap<String, usize> = case
                .other
                .iter()
                .map(|(w, n)| (w.to_string(), *n))
                .collect();
            let got = assign(&tasks(case.tasks), &workers(case.workers), &other, case.cap);
            assert_eq!(placed(&got), case.expected, "{}", case.name);
        }
    }
}
