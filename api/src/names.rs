//! Names shared by the operator and the workers: field managers, labels, finalizers.

/// API group of every resource.
pub const GROUP: &str = "routineload.io";
/// Field manager of the operator's server-side applies.
pub const OPERATOR_FIELD_MANAGER: &str = "routine-load-operator";
/// Field manager of the workers' status patches.
pub const WORKER_FIELD_MANAGER: &str = "routine-load-worker";
/// Label on a task naming the worker pod that runs it.
pub const WORKER_LABEL: &str = "routineload.io/worker";
/// Label on a task naming its job.
pub const JOB_LABEL: &str = "routineload.io/job";
/// Finalizer the operator puts on tables.
pub const TABLE_FINALIZER: &str = "routineload.io/table";

/// The Delta transaction app id under which a job's offset for one Kafka partition is stored.
///
/// Derived from the job's UID so a job recreated under the same name starts fresh, and from the
/// partition so partitions commit independently.
pub fn transaction_app_id(job_uid: &str, partition: i32) -> String {
    format!("routine-load-{job_uid}-{partition}")
}
