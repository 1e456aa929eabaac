//! Lets go of deleted tasks whose job is gone. A task's finalizer waits for the job controller
//! to record the task's counters in its job; when the job itself was deleted (its tasks are
//! garbage collected after it) there is nothing to record into and no job reconcile to do it,
//! so this sweep removes the finalizer. It reads the job controller's task cache.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::Api;
use routine_load_api::{RoutineLoadJob, RoutineLoadTask};
use tracing::{info, warn};

use crate::job_controller::{Context, remove_task_finalizer};
use crate::job_plan::without_task_finalizer;

/// How often the sweep runs.
pub const SWEEP_PERIOD: Duration = Duration::from_secs(15);

/// Pure: whether a task is a deleted task of a job that no longer exists. `job_uid` is the UID of
/// the job now under the task's job name (`None`: no such job).
pub fn orphaned(task: &RoutineLoadTask, job_uid: Option<&str>) -> bool {
    task.metadata.deletion_timestamp.is_some()
        && without_task_finalizer(task).is_some()
        && job_uid != Some(task.spec.job_uid.as_str())
}

/// Runs the sweep while this replica leads.
pub async fn run(ctx: Arc<Context>) {
    loop {
        tokio::time::sleep(SWEEP_PERIOD).await;
        if !ctx.gate.holds() {
            continue;
        }
        if let Err(e) = sweep(&ctx).await {
            warn!(
                error = format!("{e:#}"),
                "sweeping deleted tasks of deleted jobs"
            );
        }
    }
}

/// One sweep over the job controller's task cache: a job is read only for a deleted task.
async fn sweep(ctx: &Context) -> anyhow::Result<()> {
    let Some(caches) = ctx.caches() else {
        return Ok(());
    };
    let deleted: Vec<RoutineLoadTask> = caches
        .tasks
        .state()
        .iter()
        .filter_map(|t| t.0.as_ref().ok())
        .filter(|t| t.metadata.deletion_timestamp.is_some())
        .cloned()
        .collect();
    let mut job_uids: BTreeMap<(String, String), Option<String>> = BTreeMap::new();
    for t in &deleted {
        let ns = t.namespace().unwrap_or_default();
        let key = (ns.clone(), t.spec.job.clone());
        if !job_uids.contains_key(&key) {
            let jobs: Api<RoutineLoadJob> = Api::namespaced(ctx.client.clone(), &ns);
            let uid = jobs.get_opt(&t.spec.job).await?.and_then(|j| j.uid());
            job_uids.insert(key.clone(), uid);
        }
        if !orphaned(t, job_uids[&key].as_deref()) || !ctx.gate.holds() {
            continue;
        }
        let rest = without_task_finalizer(t).unwrap_or_default();
        let api: Api<RoutineLoadTask> = Api::namespaced(ctx.client.clone(), &ns);
        match remove_task_finalizer(&api, &t.name_any(), t.resource_version().as_deref(), &rest)
            .await
        {
            Ok(true) => {
                info!(namespace = %ns, task = %t.name_any(), job = %t.spec.job, "released a deleted task of a deleted job")
            }
            Ok(false) => {}
            Err(e) => {
                warn!(namespace = %ns, task = %t.name_any(), error = %e, "releasing a deleted task of a deleted job")
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use routine_load_api::RoutineLoadTaskSpec;
    use routine_load_api::names::TASK_FINALIZER;

    fn task(deleted: bool, finalizer: bool) -> RoutineLoadTask {
        let mut t = RoutineLoadTask::new(
            "j-0",
            RoutineLoadTaskSpec {
                job: "j".into(),
                job_uid: "job-uid".into(),
                partitions: vec![0],
                worker: "w0".into(),
                epoch: 0,
                job_generation: 1,
            },
        );
        if deleted {
            t.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        }
        if finalizer {
            t.metadata.finalizers = Some(vec![TASK_FINALIZER.into()]);
        }
        t
    }

    #[test]
    fn only_deleted_tasks_of_missing_or_recreated_jobs_are_orphans() {
        // (case, task, job uid now, orphaned)
        let cases = [
            ("job deleted", task(true, true), None, true),
            (
                "job recreated under the name",
                task(true, true),
                Some("other"),
                true,
            ),
            ("job still there", task(true, true), Some("job-uid"), false),
            ("task not deleted", task(false, true), None, false),
            ("no finalizer", task(true, false), None, false),
        ];
        for (case, t, uid, want) in cases {
            assert_eq!(orphaned(&t, uid), want, "{case}");
        }
    }
}
