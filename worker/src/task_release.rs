//! Releasing deleted tasks. The operator deletes a task (job paused, stopped, edited, moved
//! elsewhere) while its loop may still be committing a batch; the task's finalizer keeps the
//! object until this worker says no loop of it runs any more (`status.released`). Every batch
//! the loop committed is then in the task's counters, which the operator records in the job
//! before it lets the task go.

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use routine_load_api::RoutineLoadTask;
use routine_load_api::names::{TASK_FINALIZER, WORKER_FIELD_MANAGER};

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
/// name is not released by mistake).
pub fn release_patch(task: &RoutineLoadTask) -> serde_json::Value {
    let uid = task.uid().unwrap_or_default();
    let set = if task.status.is_some() {
        serde_json::json!({ "op": "add", "path": "/status/released", "value": true })
    } else {
        serde_json::json!({ "op": "add", "path": "/status", "value": { "released": true } })
    };
    serde_json::json!([{ "op": "test", "path": "/metadata/uid", "value": uid }, set])
}

/// Writes the release. A task already gone (or replaced) needs none.
pub async fn release(api: &Api<RoutineLoadTask>, task: &RoutineLoadTask) -> anyhow::Result<()> {
    let patch: json_patch::Patch = serde_json::from_value(release_patch(task))?;
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
        let p = release_patch(&task("w0", true, true, false));
        assert_eq!(p[0]["path"], "/metadata/uid");
        assert_eq!(p[0]["value"], "u0");
        assert_eq!(p[1]["path"], "/status");
        let p = release_patch(&task("w0", true, true, true));
        assert_eq!(p[1]["path"], "/status/released");
    }
}
