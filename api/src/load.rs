//! The `Load` custom resource: one import job with a label (StarRocks: a load job shown by
//! `SHOW LOAD`). Its name is the label, unique in the namespace (StarRocks: in the database), so
//! a second import with the same label is refused as "Label Already Exists".

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The Stream Load headers the workers implement, with StarRocks' names (HTTP header names are
/// case-insensitive; these are lowercase). Any other load header is refused by name.
pub const STREAM_LOAD_HEADERS: &[&str] = &[
    "label",
    "column_separator",
    "row_delimiter",
    "columns",
    "where",
    "partitions",
    "max_filter_ratio",
    "strict_mode",
    "timezone",
    "format",
    "jsonpaths",
    "strip_outer_array",
    "json_root",
    "enclose",
    "escape",
    "trim_space",
    "timeout",
    "partial_update",
    "merge_condition",
];
/// StarRocks' default Stream Load `timeout`, seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 600;
/// The longest Stream Load `timeout`, seconds (StarRocks `max_stream_load_timeout_second`, 3
/// days). A load's data files are written before its commit; vacuum leaves files the table
/// does not reference alone for longer than this (`table_maintenance::ORPHAN_MIN_AGE`).
pub const MAX_TIMEOUT_SECS: u64 = 259_200;
/// The Stream Load headers that apply to JSON only.
pub const JSON_ONLY_HEADERS: &[&str] = &["jsonpaths", "json_root", "strip_outer_array"];
/// The Stream Load headers that apply to CSV only.
pub const CSV_ONLY_HEADERS: &[&str] = &[
    "column_separator",
    "row_delimiter",
    "enclose",
    "escape",
    "trim_space",
];

/// Whether `label` can name a `Load` (a DNS subdomain name, at most 128 characters as
/// StarRocks' labels).
pub fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 128
        && label
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && label.starts_with(|c: char| c.is_ascii_alphanumeric())
        && label.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// An import job identified by its label (the object's name). Created by the worker that takes
/// the import, before it reads any data; its status follows the import to FINISHED or
/// CANCELLED.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "routineload.io",
    version = "v1alpha1",
    kind = "Load",
    plural = "loads",
    shortname = "rlload",
    namespaced,
    status = "LoadStatus",
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.state"}"#,
    printcolumn = r#"{"name":"Table","type":"string","jsonPath":".spec.table"}"#,
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#,
    printcolumn = r#"{"name":"Loaded","type":"integer","jsonPath":".status.loadedRows"}"#,
    printcolumn = r#"{"name":"Filtered","type":"integer","jsonPath":".status.filteredRows"}"#,
    printcolumn = r#"{"name":"Unselected","type":"integer","jsonPath":".status.unselectedRows"}"#,
    printcolumn = r#"{"name":"Message","type":"string","priority":1,"jsonPath":".status.message"}"#,
    printcolumn = r#"{"name":"URL","type":"string","priority":1,"jsonPath":".status.errorUrl"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct LoadSpec {
    /// Name of the `Table` loaded into, in the load's namespace.
    pub table: String,
    /// How the data arrived (StarRocks SHOW LOAD `Type`).
    #[serde(rename = "type")]
    pub load_type: LoadType,
    /// Longest time the import may take, in seconds (StarRocks `timeout`); past it, an
    /// unfinished import is resolved from the table by the next import of its label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
}

/// How an import's data arrives.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum LoadType {
    /// The data is the body of an HTTP request (StarRocks Stream Load).
    #[default]
    #[serde(rename = "STREAM_LOAD")]
    StreamLoad,
}

/// State of an import (StarRocks SHOW LOAD `State`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum LoadState {
    /// The label is taken; no data read yet.
    #[default]
    Prepare,
    /// The data is being read, transformed and committed.
    Loading,
    /// The data was committed in one Delta version: final.
    Finished,
    /// Nothing was committed (bad request, too many error rows, failure): final.
    Cancelled,
}

impl LoadState {
    /// Whether the import has ended.
    pub fn is_final(self) -> bool {
        matches!(self, LoadState::Finished | LoadState::Cancelled)
    }

    /// StarRocks' spelling, as in SHOW LOAD and Stream Load's `ExistingJobStatus`.
    pub fn as_str(self) -> &'static str {
        match self {
            LoadState::Prepare => "PREPARE",
            LoadState::Loading => "LOADING",
            LoadState::Finished => "FINISHED",
            LoadState::Cancelled => "CANCELLED",
        }
    }
}

/// What is known about an import (StarRocks SHOW LOAD columns).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadStatus {
    #[serde(default)]
    pub state: LoadState,
    /// Rows read from the data.
    #[serde(default)]
    pub total_rows: u64,
    /// Rows committed to the table.
    #[serde(default)]
    pub loaded_rows: u64,
    /// Rows not loaded because of data quality (StarRocks `dpp.abnorm.ALL`).
    #[serde(default)]
    pub filtered_rows: u64,
    /// Rows left out by the WHERE condition.
    #[serde(default)]
    pub unselected_rows: u64,
    /// Bytes of data received.
    #[serde(default)]
    pub load_bytes: u64,
    /// The Delta version holding the rows, once FINISHED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_version: Option<i64>,
    /// Why the import was cancelled, or a note on a finished one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// URL of the rows not loaded, with their reasons (StarRocks `URL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_url: Option<String>,
    /// The table's Delta version when the import began; its commit, if any, is a later one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_version: Option<i64>,
    /// The worker that took the import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// When the data started arriving (StarRocks `LoadStartTime`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_start_time: Option<Time>,
    /// When the import ended (StarRocks `LoadFinishTime`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_finish_time: Option<Time>,
}
