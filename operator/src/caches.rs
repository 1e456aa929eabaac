//! The job controller's caches: reflectors of the tasks (by the job label), of the worker Leases
//! (by the worker label, in the worker namespace) and of the Tables, so a reconcile reads its
//! inputs from memory instead of listing every task and Lease of the cluster.
//!
//! Every watch decodes through [`DeserializeGuard`]: an object that does not decode is kept as
//! an [`InvalidObject`](kube::core::error_boundary::InvalidObject) (its metadata only) instead of
//! failing the whole list, so one bad object can't stall a controller.
//!
//! A cache can lag the API server. What keeps decisions right with it:
//! - [`Expectations`]: after the controller writes a task it expects the cache to show that
//!   write (the task at least at the resourceVersion the write returned, a deleted task gone or
//!   terminating). Until the cache does, the reconcile reads the job's tasks from the API server
//!   instead: a just-created task missing from the cache is neither created twice nor moved
//!   under the same epoch, and counters never go back to an older task status.
//! - Any reconcile whose plan writes tasks re-reads them from the API server first and plans
//!   again on that (the controller's step), so task writes and retired counters are decided on
//!   the current objects as before the caches.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::coordination::v1::Lease;
use kube::ResourceExt;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{ObjectRef, Store};
use routine_load_api::names::JOB_LABEL;
use routine_load_api::{RoutineLoadTask, Table};

/// Guarded task objects as the reflector keeps them.
pub type GuardedTask = DeserializeGuard<RoutineLoadTask>;
/// Guarded worker Leases.
pub type GuardedLease = DeserializeGuard<Lease>;
/// Guarded Tables.
pub type GuardedTable = DeserializeGuard<Table>;

/// Readers of the job controller's reflectors.
#[derive(Clone)]
pub struct Caches {
    pub tasks: Store<GuardedTask>,
    pub leases: Store<GuardedLease>,
    pub tables: Store<GuardedTable>,
}

impl Caches {
    /// Waits until every reflector has listed once (a reconcile before that would see no
    /// table, no task and no worker).
    pub async fn ready(&self) -> bool {
        self.tasks.wait_until_ready().await.is_ok()
            && self.leases.wait_until_ready().await.is_ok()
            && self.tables.wait_until_ready().await.is_ok()
    }

    /// The caches that have not listed yet, by what they hold (for the error that says so).
    pub fn not_ready(&self) -> Vec<&'static str> {
        use futures::FutureExt;
        let mut out = Vec::new();
        if self
            .tasks
            .wait_until_ready()
            .now_or_never()
            .is_none_or(|r| r.is_err())
        {
            out.push("RoutineLoadTasks");
        }
        if self
            .leases
            .wait_until_ready()
            .now_or_never()
            .is_none_or(|r| r.is_err())
        {
            out.push("worker Leases");
        }
        if self
            .tables
            .wait_until_ready()
            .now_or_never()
            .is_none_or(|r| r.is_err())
        {
            out.push("Tables");
        }
        out
    }

    /// The tasks of job `name` (UID `uid`) in namespace `ns`, and the names of those that don't
    /// decode.
    pub fn job_tasks(
        &self,
        ns: &str,
        name: &str,
        uid: &str,
    ) -> (Vec<RoutineLoadTask>, Vec<String>) {
        let mut tasks = Vec::new();
        let mut invalid = Vec::new();
        for t in self.tasks.state() {
            if t.namespace().as_deref() != Some(ns)
                || t.labels().get(JOB_LABEL).map(String::as_str) != Some(name)
            {
                continue;
            }
            match &t.0 {
                Ok(task) if task.spec.job_uid == uid => tasks.push(task.clone()),
                Ok(_) => {}
                Err(e) => invalid.push(format!("{}: {}", t.name_any(), e.error)),
            }
        }
        tasks.sort_by_key(|t| t.name_any());
        (tasks, invalid)
    }

    /// Tasks per worker of every job but `job_uid`.
    pub fn other_load(&self, job_uid: &str) -> BTreeMap<String, usize> {
        let mut load = BTreeMap::new();
        for t in self.tasks.state() {
            if let Ok(task) = &t.0
                && task.spec.job_uid != job_uid
            {
                *load.entry(task.spec.worker.clone()).or_insert(0) += 1;
            }
        }
        load
    }

    /// The decodable worker Leases.
    pub fn leases(&self) -> Vec<Lease> {
        self.leases
            .state()
            .iter()
            .filter_map(|l| l.0.as_ref().ok().cloned())
            .collect()
    }

    /// Table `name` in `ns`: `None` if absent, `Some(Err(why))` if it does not decode.
    pub fn table(&self, ns: &str, name: &str) -> Option<Result<Table, String>> {
        self.tables
            .get(&ObjectRef::new(name).within(ns))
            .map(|t| t.0.clone().map_err(|e| e.error))
    }
}

/// What the controller expects the cache to show after one of its writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// The task exists at this resourceVersion or a later one.
    AtLeast(String),
    /// The task of this UID is gone or terminating.
    Gone(String),
}

/// The controller's writes to one job's tasks that its cache has not shown yet, by task name,
/// and when (monotonic milliseconds) the last one was made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expectations {
    pub tasks: BTreeMap<String, Expected>,
    pub written_ms: i64,
}

/// How long an expectation waits for the cache before it is dropped (someone else deleted the
/// task before the cache showed this controller's write, so the cache never will): the cache
/// is trusted again, and a plan that writes still reads first.
pub const EXPECTATION_TTL_MS: i64 = 30_000;

/// Pure: `a` is at least `b` as resourceVersions go. An etcd-backed API server writes them as
/// increasing decimal revisions; anything else counts as not comparable (not caught up), so the
/// caller reads from the API server.
fn rv_at_least(a: Option<&str>, b: &str) -> bool {
    match (a.and_then(|a| a.parse::<u64>().ok()), b.parse::<u64>().ok()) {
        (Some(a), Some(b)) => a >= b,
        _ => false,
    }
}

impl Expectations {
    /// Notes a task write at `now_ms`: created or updated (the returned object).
    pub fn wrote(&mut self, task: &RoutineLoadTask, now_ms: i64) {
        if let Some(rv) = task.resource_version() {
            self.tasks.insert(task.name_any(), Expected::AtLeast(rv));
            self.written_ms = now_ms;
        }
    }

    /// Notes a task delete at `now_ms`.
    pub fn deleted(&mut self, task: &RoutineLoadTask, now_ms: i64) {
        self.tasks.insert(
            task.name_any(),
            Expected::Gone(task.uid().unwrap_or_default()),
        );
        self.written_ms = now_ms;
    }

    /// Pure: drops the expectations the cached tasks meet (all of them once older than
    /// [`EXPECTATION_TTL_MS`]); true if none is left (the cache has caught up with every write
    /// of this controller to the job's tasks).
    pub fn met_by(&mut self, cached: &[RoutineLoadTask], now_ms: i64) -> bool {
        if now_ms - self.written_ms > EXPECTATION_TTL_MS {
            self.tasks.clear();
        }
        let by_name: HashMap<String, &RoutineLoadTask> =
            cached.iter().map(|t| (t.name_any(), t)).collect();
        self.tasks.retain(|name, e| {
            let t = by_name.get(name);
            let met = match e {
                Expected::AtLeast(rv) => {
                    t.is_some_and(|t| rv_at_least(t.resource_version().as_deref(), rv))
                }
                Expected::Gone(uid) => t.is_none_or(|t| {
                    t.uid().as_deref() != Some(uid.as_str())
                        || t.metadata.deletion_timestamp.is_some()
                }),
            };
            !met
        });
        self.tasks.is_empty()
    }
}

/// Pure: whether two reads of a job's tasks are the same objects at the same versions.
pub fn same_versions(a: &[RoutineLoadTask], b: &[RoutineLoadTask]) -> bool {
    let key = |ts: &[RoutineLoadTask]| {
        let mut v: Vec<(String, Option<String>, Option<String>)> = ts
            .iter()
            .map(|t| (t.name_any(), t.uid(), t.resource_version()))
            .collect();
        v.sort();
        v
    };
    key(a) == key(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use routine_load_api::RoutineLoadTaskSpec;

    fn task(name: &str, uid: &str, rv: &str, terminating: bool) -> RoutineLoadTask {
        let spec = RoutineLoadTaskSpec {
            job: "j".into(),
            job_uid: "job-uid".into(),
            partitions: vec![0],
            worker: "w0".into(),
            epoch: 0,
            job_generation: 1,
        };
        let mut t = RoutineLoadTask::new(name, spec);
        t.metadata.uid = Some(uid.into());
        t.metadata.resource_version = Some(rv.into());
        if terminating {
            t.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        }
        t
    }

    #[test]
    fn expectations_hold_until_the_cache_shows_the_write() {
        // (case, expectations, cached tasks, met, expectations left)
        let at_least = |rv: &str| Expected::AtLeast(rv.into());
        let gone = |uid: &str| Expected::Gone(uid.into());
        type Case = (
            &'static str,
            Vec<(&'static str, Expected)>,
            Vec<RoutineLoadTask>,
            bool,
            Vec<&'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                "nothing written",
                vec![],
                vec![task("j-0", "u0", "5", false)],
                true,
                vec![],
            ),
            (
                "a created task not in the cache yet",
                vec![("j-2", at_least("120"))],
                vec![task("j-0", "u0", "100", false)],
                false,
                vec!["j-2"],
            ),
            (
                "created task cached at the written version",
                vec![("j-2", at_least("120"))],
                vec![task("j-2", "u2", "120", false)],
                true,
                vec![],
            ),
            (
                "cached at a later version (a worker wrote its status since)",
                vec![("j-2", at_least("120"))],
                vec![task("j-2", "u2", "131", false)],
                true,
                vec![],
            ),
            (
                "cached at an older version (the move not seen yet)",
                vec![("j-0", at_least("120"))],
                vec![task("j-0", "u0", "99", false)],
                false,
                vec!["j-0"],
            ),
            (
                "a version that is not a number is never taken as caught up",
                vec![("j-0", at_least("abc"))],
                vec![task("j-0", "u0", "abc", false)],
                false,
                vec!["j-0"],
            ),
            (
                "deleted task still cached",
                vec![("j-1", gone("u1"))],
                vec![task("j-1", "u1", "50", false)],
                false,
                vec!["j-1"],
            ),
            (
                "deleted task cached as terminating (a finalizer holds it)",
                vec![("j-1", gone("u1"))],
                vec![task("j-1", "u1", "51", true)],
                true,
                vec![],
            ),
            (
                "deleted task gone, or replaced by a new object of that name",
                vec![("j-1", gone("u1")), ("j-3", gone("u3"))],
                vec![task("j-3", "u3-new", "60", false)],
                true,
                vec![],
            ),
            (
                "one met, one not",
                vec![("j-0", at_least("10")), ("j-1", gone("u1"))],
                vec![
                    task("j-0", "u0", "10", false),
                    task("j-1", "u1", "9", false),
                ],
                false,
                vec!["j-1"],
            ),
        ];
        for (case, expected, cached, met, left) in cases {
            let mut e = Expectations {
                tasks: expected
                    .into_iter()
                    .map(|(n, x)| (n.to_string(), x))
                    .collect(),
                written_ms: 1_000,
            };
            assert_eq!(e.met_by(&cached, 2_000), met, "{case}");
            assert_eq!(
                e.tasks.keys().map(String::as_str).collect::<Vec<_>>(),
                left,
                "{case}"
            );
        }
    }

    #[test]
    fn expectations_the_cache_never_meets_expire() {
        let mut e = Expectations::default();
        e.wrote(&task("j-2", "u2", "120", false), 1_000);
        // Someone deleted j-2 before the cache showed it: not met ...
        assert!(!e.met_by(&[], 1_000 + EXPECTATION_TTL_MS));
        // ... until the expectation is older than the TTL.
        assert!(e.met_by(&[], 1_001 + EXPECTATION_TTL_MS));
        assert!(e.tasks.is_empty());
    }

    #[test]
    fn writes_and_deletes_become_expectations() {
        let mut e = Expectations::default();
        e.wrote(&task("j-0", "u0", "7", false), 10);
        e.deleted(&task("j-1", "u1", "8", false), 20);
        assert_eq!(e.written_ms, 20);
        assert_eq!(
            e.tasks,
            [
                ("j-0".to_string(), Expected::AtLeast("7".into())),
                ("j-1".to_string(), Expected::Gone("u1".into())),
            ]
            .into()
        );
    }

    #[test]
    fn same_versions_compares_names_uids_and_versions() {
        let a = vec![task("j-0", "u0", "1", false), task("j-1", "u1", "2", false)];
        let b = vec![task("j-1", "u1", "2", false), task("j-0", "u0", "1", false)];
        assert!(same_versions(&a, &b));
        assert!(!same_versions(&a, &[task("j-0", "u0", "1", false)]));
        assert!(!same_versions(
            &a,
            &[task("j-0", "u0", "1", false), task("j-1", "u1", "3", false)]
        ));
    }
}
