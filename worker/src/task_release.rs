//! Releasing deleted tasks. The operator deletes a task (job paused, stopped, edited, moved
//! elsewhere) while its loop may still be committing a batch; the task's finalizer keeps the
//! object until this worker says no loop of it runs any more (`status.released`). Every batch
//! the loop committed is then in the task's counters, which the operator records in the job
//! before it lets the task go.
//!
//! A loop whose last status could not be written (the API server was unreachable for all of its
//! attempts) leaves that status here ([`UnwrittenStatuses`]); the release then writes it
//! together with `released`, in one patch, so the operator never records a release without the
//! batches the loop committed last.

use std::collections::HashMap;
use std::sync::Mutex;

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use routine_load_api::names::{TASK_FINALIZER, WORKER_FIELD_MANAGER};
use routine_load_api::{RoutineLoadTask, RoutineLoadTaskStatus};

/// Last statuses of ended loops that could not be written, by task UID.
#[derive(Debug, Default)]
pub struct UnwrittenStatuses(Mutex<HashMap<String, RoutineLoadTaskStatus>>);

impl UnwrittenStatuses {
    /// Keeps the last status of the loop of task `uid`.
    pub fn keep(&self, uid: &str, status: RoutineLoadTaskStatus) {
        self.lock().insert(uid.to_string(), status);
    }

    /// The kept status of task `uid`, removed. A new loop of the task takes it too (and drops
    /// it): it counts those batches again from the table's commits.
    pub fn take(&self, uid: &str) -> Option<RoutineLoadTaskStatus> {
        self.lock().remove(uid)
    }

    /// Puts back a status whose release did not land.
    fn restore(&self, uid: &str, status: RoutineLoadTaskStatus) {
        self.lock().entry(uid.to_string()).or_insert(status);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, RoutineLoadTaskStatus>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Pure: whether this worker should release `task` now: it is being deleted, it is (or was)
/// this worker's, the finalizer still waits for a release, none was written yet, and no loop of
/// it runs or is stopping here (`busy`).
pub fn should_release(task: &RoutineLoadTask, pod_name: &str, busy: bool) -> bool {
    task.metadata.deletion_timestamp.is_some()
        && task.spec.worker == pod_name
        && task.finalizers().iter().any(|f| f == TASK_FINALIZER)
        && !task.status.as_ref().is_some_and(|s| s.released)
        && !busy
}

/// The status patch that releases `task`, fenced on its UID (a task recreated under the same
/// name is not released by mistake). With the loop's `last` status (one that could not be
/// written before), the release writes that status, fenced on its epoch too.
pub fn release_patch(
    task: &RoutineLoadTask,
    last: Option<&RoutineLoadTaskStatus>,
) -> serde_json::Value {
    let uid = task.uid().unwrap_or_default();
    let fence = serde_json::json!({ "op": "test", "path": "/metadata/uid", "value": uid });
    if let Some(last) = last {
        let mut status = last.clone();
        status.released = true;
        return serde_json::json!([
            fence,
            { "op": "test", "path": "/spec/epoch", "value": last.epoch },
            { "op": "add", "path": "/status", "value": status },
        ]);
    }
    let set = if task.status.is_some() {
        serde_json::json!({ "op": "add", "path": "/status/released", "value": true })
    } else {
        serde_json::json!({ "op": "add", "path": "/status", "value": { "released": true } })
    };
    serde_json::json!([fence, set])
}

/// Writes the release, with the loop's last status if it could not be written before. A task
/// already gone (or replaced) needs none.
pub async fn release(
    api: &Api<RoutineLoadTask>,
    task: &RoutineLoadTask,
    unwritten: &UnwrittenStatuses,
) -> anyhow::Result<()> {
    let uid = task.uid().unwrap_or_default();
    let last = unwritten.take(&uid);
    let patch: json_patch::Patch = serde_json::from_value(release_patch(task, last.as_ref()))?;
    let params = PatchParams {
        field_manager: Some(WORKER_FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    match api
        .patch_status(&task.name_any(), &params, &Patch::Json::<()>(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 422 => Ok(()),
        Err(e) => {
            if let Some(last) = last {
                unwritten.restore(&uid, last);
            }
            Err(anyhow::Error::new(e)
                .context(format!("releasing deleted task {}", task.name_any())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use routine_load_api::RoutineLoadTaskSpec;
    use routine_load_api::task::RoutineLoadTaskStatus;

    fn task(worker: &str, deleted: bool, finalizer: bool, released: bool) -> RoutineLoadTask {
        let mut t = RoutineLoadTask::new(
            "j-0",
            RoutineLoadTaskSpec {
                job: "j".into(),
                job_uid: "job-uid".into(),
                partitions: vec![0],
                worker: worker.into(),
                epoch: 0,
                job_generation: 1,
            },
        );
        t.metadata.uid = Some("u0".into());
        if deleted {
            t.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        }
        if finalizer {
            t.metadata.finalizers = Some(vec![TASK_FINALIZER.into()]);
        }
        if released {
            t.status = Some(RoutineLoadTaskStatus {
                released: true,
                ..Default::default()
            });
        }
        t
    }

    #[test]
    fn releases_only_deleted_own_idle_unreleased_tasks() {
        // (case, task, busy, release)
        let cases = [
            ("deleted, idle", task("w0", true, true, false), false, true),
            (
                "loop still stopping",
                task("w0", true, true, false),
                true,
                false,
            ),
            ("not deleted", task("w0", false, true, false), false, false),
            (
                "another worker's",
                task("w1", true, true, false),
                false,
                false,
            ),
            (
                "no finalizer (older operator)",
                task("w0", true, false, false),
                false,
                false,
            ),
            (
                "already released",
                task("w0", true, true, true),
                false,
                false,
            ),
        ];
        for (case, t, busy, want) in cases {
            assert_eq!(should_release(&t, "w0", busy), want, "{case}");
        }
    }

    #[test]
    fn the_patch_is_fenced_on_the_uid() {
        let p = release_patch(&task("w0", true, true, false), None);
        assert_eq!(p[0]["path"], "/metadata/uid");
        assert_eq!(p[0]["value"], "u0");
        assert_eq!(p[1]["path"], "/status");
        let p = release_patch(&task("w0", true, true, true), None);
        assert_eq!(p[1]["path"], "/status/released");
    }

    #[test]
    fn a_last_status_not_written_goes_with_the_release() {
        let mut last = RoutineLoadTaskStatus {
            epoch: 3,
            ..Default::default()
        };
        last.counters.loaded_rows = 42;
        let unwritten = UnwrittenStatuses::default();
        unwritten.keep("u0", last.clone());
        let taken = unwritten.take("u0");
        assert!(unwritten.take("u0").is_none(), "taken once");
        let p = release_patch(&task("w0", true, true, false), taken.as_ref());
        assert_eq!(p[0]["path"], "/metadata/uid");
        assert_eq!(p[1]["path"], "/spec/epoch");
        assert_eq!(p[1]["value"], 3);
        assert_eq!(p[2]["path"], "/status");
        assert_eq!(p[2]["value"]["released"], true);
        assert_eq!(p[2]["value"]["loadedRows"], 42);
    }
}
