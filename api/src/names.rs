//! Names shared by the operator and the workers: field managers, labels, finalizers.

/// API group of every resource.
pub const GROUP: &str = "routineload.io";
/// Field manager of the operator's server-side applies.
pub const OPERATOR_FIELD_MANAGER: &str = "routine-load-operator";
/// Field manager of the workers' status patches.
pub const WORKER_FIELD_MANAGER: &str = "routine-load-worker";
/// Label on a task naming the worker pod that runs it.
pub const WORKER_LABEL: &str = "routineload.io/worker";
/// Annotation on a `Load` naming the worker pod that created it: its status names the worker only
/// once the load has started, and a worker that stopped before then is known by this.
pub const LOAD_WORKER_ANNOTATION: &str = "routineload.io/worker";
/// Annotation on a worker's heartbeat Lease: the base URL of its HTTP server
/// (`ROUTINE_LOAD_ADVERTISE_URL`), where `kubectl routineload load` sends Stream Loads.
pub const WORKER_URL_ANNOTATION: &str = "routineload.io/url";
/// Label on a task naming its job.
pub const JOB_LABEL: &str = "routineload.io/job";
/// Finalizer the operator puts on tables.
pub const TABLE_FINALIZER: &str = "routineload.io/table";
/// Finalizer the operator puts on tasks: a deleted task stays until its worker released it
/// (`status.released`: its loop ended, so every batch it committed is in its counters), or its
/// worker is gone, and the operator recorded its counters in the job.
pub const TASK_FINALIZER: &str = "routineload.io/task-loop";

/// The Delta transaction app id under which a job's offset for one Kafka partition is stored.
///
/// Derived from the job's UID so a job recreated under the same name starts fresh, and from the
/// partition so partitions commit independently.
pub fn transaction_app_id(job_uid: &str, partition: i32) -> String {
    format!("routine-load-{job_uid}-{partition}")
}

/// The Delta transaction app id recording which configured start (`kafka.offsets` entry) a
/// partition's offset last came from, as [`start_fingerprint`]: a restart with the same
/// configuration resumes from the table, an edited entry moves the partition.
pub fn start_app_id(job_uid: &str, partition: i32) -> String {
    format!("routine-load-{job_uid}-{partition}-start")
}

/// A stable, non-negative fingerprint of a configured start offset's text (FNV-1a, 63 bits).
pub fn start_fingerprint(configured: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in configured.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h >> 1) as i64
}
