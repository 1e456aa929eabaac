//! The `Table` custom resource: a Delta Lake table that routine load jobs write into.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::column_type::{COLUMN_TYPE_PATTERN, ColumnType, ColumnTypeError};
use crate::table_model::{AggregateFunction, MAX_KEYS, TableModel};

/// Most columns a Table may declare (the CRD's bound).
pub const MAX_COLUMNS: usize = 1000;
/// Most partition columns a Table may declare (the CRD's bound).
pub const MAX_PARTITION_COLUMNS: usize = 8;

/// A Delta Lake table that routine load jobs load into (StarRocks: the destination table).
///
/// The namespace plays the StarRocks database; the object name is the table name.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "routineload.io",
    version = "v1alpha1",
    kind = "Table",
    plural = "tables",
    shortname = "rltable",
    namespaced,
    status = "TableStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Version","type":"integer","jsonPath":".status.deltaVersion"}"#,
    printcolumn = r#"{"name":"Location","type":"string","jsonPath":".spec.location"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("!has(self.partitionColumns) || self.partitionColumns.all(p, self.columns.exists(c, c.name == p))").message("every partitionColumns entry must name a column of the table"))]
#[x_kube(validation = Rule::new("self.model == 'Duplicate' || (has(self.keys) && size(self.keys) > 0)").message("model Primary, Unique and Aggregate need keys: list the key columns in keys"))]
#[x_kube(validation = Rule::new("!has(self.keys) || self.keys.all(k, self.columns.exists(c, c.name == k))").message("every keys entry must name a column of the table"))]
#[x_kube(validation = Rule::new("self.model == 'Duplicate' || !has(self.keys) || self.keys.all(k, self.columns.exists(c, c.name == k && has(c.nullable) && !c.nullable))").message("key columns must be NOT NULL (nullable: false)"))]
#[x_kube(validation = Rule::new("self.model == oldSelf.model").message("model is immutable"))]
#[x_kube(validation = Rule::new("(has(self.keys) ? self.keys : []) == (has(oldSelf.keys) ? oldSelf.keys : [])").message("keys are immutable"))]
#[serde(rename_all = "camelCase")]
pub struct TableSpec {
    /// Columns of the table, in order. Loads map source fields to these by name.
    #[schemars(length(min = 1, max = MAX_COLUMNS))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub columns: Vec<TableColumn>,

    /// Columns whose values partition the Delta table (Hive-style directories, identity
    /// partitioning). Each must name a column. Default: not partitioned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_PARTITION_COLUMNS))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("partitionColumns is immutable"))]
    pub partition_columns: Vec<String>,

    /// Where the Delta table lives: `file:///path` (a volume the workers share) or
    /// `s3://bucket/prefix` (S3 or an S3-compatible store). Immutable.
    #[schemars(regex(pattern = r"^(file|s3|s3a)://.+"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("location is immutable"))]
    pub location: String,

    /// Secret whose keys are object-store options for `location` (for S3: `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, ...).
    /// Default: none (the pod's environment or workload identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<SecretReference>,

    /// What deleting the Table object does to the data: `Retain` (default) keeps the Delta
    /// table, `Delete` removes its files.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// Free-form description (StarRocks: table COMMENT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,

    /// How rows with the same `keys` combine (StarRocks: the data model). `Duplicate` (default)
    /// appends every row; `Primary` keeps one row per key, replaced by each new row and deleted
    /// by a row whose `__op` is `1`/`delete`; `Unique` keeps the last row per key; `Aggregate`
    /// combines value columns with their `aggregate` function. Recorded in the Delta table's
    /// configuration (`routineload.model`). Immutable.
    #[serde(default)]
    pub model: TableModel,

    /// Key columns (StarRocks: PRIMARY KEY / UNIQUE KEY / AGGREGATE KEY / DUPLICATE KEY columns),
    /// in order. Required unless `model` is Duplicate; each must name a NOT NULL column of a
    /// type that compares exactly (no FLOAT, DOUBLE or JSON; no DECIMAL for Primary). Recorded
    /// in the Delta table's configuration (`routineload.keys`). Immutable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_KEYS))]
    pub keys: Vec<String>,

    /// Storage upkeep the operator does on the Delta table: compaction of small files (every
    /// batch commit writes new files, and merges into keyed tables rewrite files), then vacuum
    /// of the files no version within the retention needs.
    #[serde(default, skip_serializing_if = "TableMaintenance::is_default")]
    pub maintenance: TableMaintenance,
}

/// Compaction and vacuum of a `Table`'s Delta files.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TableMaintenance {
    /// Minutes between compactions, which rewrite files smaller than `targetFileSizeMB` into
    /// files of about that size (a Delta OPTIMIZE: same rows, same versions' offsets; readers
    /// see no change of data). 0: never on a schedule (the `routineload.io/compact` annotation
    /// still asks for one). Default: 60.
    #[serde(default = "default_compact_interval_minutes")]
    #[schemars(range(min = 0, max = 10080))]
    pub compact_interval_minutes: u32,

    /// The size compaction aims at, in MiB. Default: 128.
    #[serde(default = "default_target_file_size_mb")]
    #[schemars(range(min = 1, max = 4096))]
    pub target_file_size_mb: u32,

    /// After each compaction, files that left the table (replaced by compaction or merges, or
    /// removed by deletes) longer ago than this many hours are deleted (a Delta VACUUM): reading
    /// a version older than the retention (time travel) no longer works, and a reader still
    /// scanning such a version fails. 0: never vacuum. Default: 168 (7 days, Delta's default).
    #[serde(default = "default_vacuum_retention_hours")]
    #[schemars(range(min = 0, max = 87600))]
    pub vacuum_retention_hours: u32,
}

impl TableMaintenance {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Default for TableMaintenance {
    fn default() -> Self {
        Self {
            compact_interval_minutes: default_compact_interval_minutes(),
            target_file_size_mb: default_target_file_size_mb(),
            vacuum_retention_hours: default_vacuum_retention_hours(),
        }
    }
}

fn default_compact_interval_minutes() -> u32 {
    60
}
fn default_target_file_size_mb() -> u32 {
    128
}
fn default_vacuum_retention_hours() -> u32 {
    168
}

/// Annotation on a `Table` asking for a compaction (and vacuum) now: any new value (for example
/// a timestamp) asks once; the operator records the value it acted on in
/// `status.maintenance.compactRequest`.
pub const COMPACT_ANNOTATION: &str = "routineload.io/compact";

/// One column of a `Table`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TableColumn {
    /// Column name, as loads and readers refer to it.
    #[schemars(
        length(min = 1, max = 255),
        regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$")
    )]
    pub name: String,

    /// StarRocks type: BOOLEAN, TINYINT, SMALLINT, INT, BIGINT, LARGEINT, FLOAT, DOUBLE,
    /// DECIMAL(p,s), DATE, DATETIME, CHAR(n), VARCHAR(n), STRING or JSON.
    #[serde(rename = "type")]
    #[schemars(regex(pattern = COLUMN_TYPE_PATTERN))]
    pub column_type: String,

    /// Whether the column accepts NULL. Default: true.
    #[serde(default = "default_true")]
    pub nullable: bool,

    /// Value loaded when a job gives the column no source (StarRocks: DEFAULT). Written as the
    /// text the column's type parses, e.g. `"0"` or `"2024-01-01"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,

    /// Free-form description (StarRocks: column COMMENT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,

    /// How an Aggregate table combines this value column for rows with the same key: SUM, MAX,
    /// MIN, REPLACE or REPLACE_IF_NOT_NULL. Required on every value column of an Aggregate table,
    /// refused elsewhere. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<AggregateFunction>,
}

impl TableColumn {
    /// The parsed StarRocks type of this column.
    pub fn parsed_type(&self) -> Result<ColumnType, ColumnTypeError> {
        self.column_type.parse()
    }
}

/// A reference to a Secret in the object's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretReference {
    /// Name of the Secret, in the same namespace.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// What deleting a `Table` does to its data.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Keep the Delta table's files (default).
    #[default]
    Retain,
    /// Remove the Delta table's files.
    Delete,
}

/// Observed state of a `Table`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TableStatus {
    /// Pending, Ready, Failed or Deleting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<TablePhase>,

    /// Latest Delta version the operator has seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_version: Option<i64>,

    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Standard conditions (`Ready`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// The last compaction and vacuum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<MaintenanceStatus>,
}

/// What the operator's last compaction and vacuum of a table did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceStatus {
    /// When the last compaction ended (or was last tried, see `message`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_compaction_time: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// Files the last compaction replaced, and the files it wrote.
    #[serde(default)]
    pub files_removed: u64,
    #[serde(default)]
    pub files_added: u64,
    /// The Delta version the last compaction committed (none: nothing to compact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compacted_version: Option<i64>,
    /// Files the last vacuum deleted.
    #[serde(default)]
    pub files_vacuumed: u64,
    /// The `routineload.io/compact` annotation value the last compaction answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compact_request: Option<String>,
    /// Why the last attempt failed, if it did (it is tried again at the next reconcile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Lifecycle phase of a `Table`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum TablePhase {
    /// The operator has not created or adopted the Delta table yet.
    Pending,
    /// The Delta table exists with the declared schema.
    Ready,
    /// The Delta table can't be created or adopted; see the Ready condition.
    Failed,
    /// The Table is being deleted.
    Deleting,
}

fn default_true() -> bool {
    true
}
