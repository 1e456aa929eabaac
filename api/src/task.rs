//! The `RoutineLoadTask` custom resource: one task of a job, assigned by the operator to a worker.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A task of a `RoutineLoadJob`: a set of Kafka partitions loaded by one worker. Created, moved
/// and deleted by the operator (StarRocks: the TaskScheduler's routine load task); owned by its
/// job.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "routineload.io",
    version = "v1alpha1",
    kind = "RoutineLoadTask",
    plural = "routineloadtasks",
    shortname = "rltask",
    namespaced,
    status = "RoutineLoadTaskStatus",
    printcolumn = r#"{"name":"Job","type":"string","jsonPath":".spec.job"}"#,
    printcolumn = r#"{"name":"Worker","type":"string","jsonPath":".spec.worker"}"#,
    printcolumn = r#"{"name":"Epoch","type":"integer","jsonPath":".spec.epoch"}"#,
    printcolumn = r#"{"name":"Loaded","type":"integer","jsonPath":".status.loadedRows"}"#,
    printcolumn = r#"{"name":"Errors","type":"integer","jsonPath":".status.errorRows"}"#,
    printcolumn = r#"{"name":"Last Commit","type":"date","jsonPath":".status.lastCommitTime"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RoutineLoadTaskSpec {
    /// Name of the owning `RoutineLoadJob`.
    pub job: String,

    /// UID of the owning job; the Delta transaction app ids derive from it.
    pub job_uid: String,

    /// Kafka partitions this task loads.
    #[schemars(length(min = 1))]
    pub partitions: Vec<i32>,

    /// Name of the worker pod that runs the task.
    pub worker: String,

    /// Incremented every time the task is reassigned; a worker holding an older epoch stops.
    #[schemars(range(min = 0))]
    pub epoch: i64,

    /// The job generation this task was planned from.
    #[serde(default)]
    pub job_generation: i64,
}

/// What a worker reports about a task (StarRocks: the task's result reported to the FE).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoutineLoadTaskStatus {
    /// Epoch of the assignment this status was written under.
    #[serde(default)]
    pub epoch: i64,

    /// The job generation (`spec.jobGeneration`) the loop that wrote this status ran with: a
    /// pause request or error-window verdict of an older generation does not stand against a
    /// job its edit may have fixed. Unset from workers that predate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_generation: Option<i64>,

    /// Next offset to load per Kafka partition, as committed in the table.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub committed_offsets: BTreeMap<String, i64>,

    /// High watermark minus committed offset per partition, when last measured.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lag: BTreeMap<String, i64>,

    /// Cumulative load counters of the task, across epochs.
    #[serde(flatten)]
    pub counters: TaskCounters,

    /// Delta version of the last commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_commit_version: Option<i64>,

    /// When the last batch committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_commit_time: Option<Time>,

    /// The label of the last committed batch (StarRocks: each task's load has a label), also in
    /// that Delta version's `commitInfo.routineLoad.label`: job, task UID, epoch, loop and batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_commit_label: Option<String>,

    /// When the worker last wrote this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_time: Option<Time>,

    /// URL of the task's error log (StarRocks `ErrorLogUrls` entry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_log_url: Option<String>,

    /// Set when the error rows in the current window passed maxErrorNumber or maxFilterRatio:
    /// the reason, in StarRocks' words, naming the rows and the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_window_exceeded: Option<String>,

    /// Set when the task can't go on until a user acts (an offset out of range, the same
    /// failure again and again): the operator pauses the job with this reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_request: Option<TaskPauseRequest>,

    /// Last error or state message from the worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,

    /// Set by the worker on a task being deleted once no loop of it runs any more: nothing
    /// further is committed or counted for it, so the operator records its counters in the job
    /// and removes the task's finalizer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub released: bool,
}

/// A task's request that its job be paused.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskPauseRequest {
    /// Why, as a condition reason.
    pub reason: TaskPauseReason,
    /// What happened and how to continue, in words a user acts on.
    pub message: String,
}

/// Why a task asks for its job to be paused.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum TaskPauseReason {
    /// The offset to resume from is no longer (or not yet) in the partition: retention or
    /// DeleteRecords removed it, or the topic was recreated. Loading on would skip data.
    OffsetOutOfRange,
    /// The same failure repeated past the worker's retry budget (for example an engine error
    /// on one batch, or a table that refuses every commit).
    RepeatedFailure,
}

impl TaskPauseReason {
    /// The reason string, as the job's `Ready` condition carries it.
    pub fn as_str(&self) -> &'static str {
        match self {
            TaskPauseReason::OffsetOutOfRange => "OffsetOutOfRange",
            TaskPauseReason::RepeatedFailure => "RepeatedFailure",
        }
    }
}

/// Cumulative counters a worker reports for a task (StarRocks: a task's load statistics). The
/// operator sums them into the job's statistic, and keeps the counters of removed tasks.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskCounters {
    /// Bytes of message payload received.
    #[serde(default)]
    pub received_bytes: i64,
    /// Rows received, including error and unselected rows.
    #[serde(default)]
    pub total_rows: i64,
    /// Rows loaded.
    #[serde(default)]
    pub loaded_rows: i64,
    /// Error rows.
    #[serde(default)]
    pub error_rows: i64,
    /// Rows filtered out by WHERE.
    #[serde(default)]
    pub unselected_rows: i64,
    /// Batches committed.
    #[serde(default)]
    pub committed_batches: i64,
    /// Batches aborted.
    #[serde(default)]
    pub aborted_batches: i64,
    /// Time spent executing batches, in milliseconds.
    #[serde(default)]
    pub execute_time_ms: i64,
}

impl TaskCounters {
    /// Adds another task's counters.
    pub fn add(&mut self, other: &TaskCounters) {
        self.received_bytes += other.received_bytes;
        self.total_rows += other.total_rows;
        self.loaded_rows += other.loaded_rows;
        self.error_rows += other.error_rows;
        self.unselected_rows += other.unselected_rows;
        self.committed_batches += other.committed_batches;
        self.aborted_batches += other.aborted_batches;
        self.execute_time_ms += other.execute_time_ms;
    }
}
