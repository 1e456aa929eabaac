//! The `RoutineLoadJob` custom resource: StarRocks `CREATE ROUTINE LOAD` as a Kubernetes object.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::table::SecretReference;

/// Default column separator (StarRocks `COLUMNS TERMINATED BY`): a tab.
pub const DEFAULT_COLUMN_SEPARATOR: &str = "\t";
/// Default row delimiter (StarRocks `ROWS TERMINATED BY`): a line feed.
pub const DEFAULT_ROW_DELIMITER: &str = "\n";
/// The error window is this many times `maxBatchRows` (StarRocks: `10 x max_batch_rows`).
pub const ERROR_WINDOW_FACTOR: i64 = 10;

/// A continuous load of one Kafka topic into one `Table` (StarRocks: a routine load job).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "routineload.io",
    version = "v1alpha1",
    kind = "RoutineLoadJob",
    plural = "routineloadjobs",
    shortname = "rlj",
    shortname = "routineload",
    namespaced,
    status = "RoutineLoadJobStatus",
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.state"}"#,
    printcolumn = r#"{"name":"Table","type":"string","jsonPath":".spec.table"}"#,
    printcolumn = r#"{"name":"Topic","type":"string","jsonPath":".spec.kafka.topic"}"#,
    printcolumn = r#"{"name":"Tasks","type":"integer","jsonPath":".status.currentTaskNum"}"#,
    printcolumn = r#"{"name":"Loaded","type":"integer","jsonPath":".status.statistic.loadedRows"}"#,
    printcolumn = r#"{"name":"Errors","type":"integer","jsonPath":".status.statistic.errorRows"}"#,
    printcolumn = r#"{"name":"Lag","type":"integer","jsonPath":".status.totalLag"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("(has(self.format) && self.format == 'json') || (!has(self.jsonPaths) && !has(self.jsonRoot) && !has(self.stripOuterArray))").message("jsonPaths, jsonRoot and stripOuterArray apply only to format: json"))]
#[x_kube(validation = Rule::new("(has(self.format) && self.format == 'avro') || (!has(self.avroPaths) && !has(self.schemaRegistry))").message("avroPaths and schemaRegistry apply only to format: avro"))]
#[x_kube(validation = Rule::new("!has(self.format) || self.format != 'avro' || has(self.schemaRegistry)").message("format: avro needs schemaRegistry (the Confluent-compatible registry that holds the writers' schemas)"))]
#[x_kube(validation = Rule::new("!has(self.format) || self.format == 'csv' || (!has(self.columnSeparator) && !has(self.rowDelimiter) && !has(self.enclose) && !has(self.escape) && !has(self.trimSpace))").message("columnSeparator, rowDelimiter, enclose, escape and trimSpace apply only to format: csv"))]
#[x_kube(validation = Rule::new("!has(self.partialUpdate) || !self.partialUpdate || (has(self.columns) && size(self.columns) > 0)").message("partialUpdate needs columns: list the key columns and the columns the job updates"))]
#[serde(rename_all = "camelCase")]
pub struct RoutineLoadJobSpec {
    /// Name of the `Table` to load into, in the job's namespace (StarRocks: `ON table_name`).
    /// Immutable.
    #[schemars(length(min = 1))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("table is immutable: create a new job to load another table"))]
    pub table: String,

    /// Desired state: `Running` (default), `Paused` (StarRocks PAUSE ROUTINE LOAD: offsets and
    /// counters are kept) or `Stopped` (StarRocks STOP ROUTINE LOAD: final).
    #[serde(default)]
    pub state: DesiredState,

    /// Message format: `csv` (default), `json` or `avro`.
    #[serde(default)]
    pub format: DataFormat,

    /// CSV column separator, 1 to 50 bytes (StarRocks `COLUMNS TERMINATED BY`). Default: tab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 50))]
    pub column_separator: Option<String>,

    /// CSV row delimiter tolerated at the end of a message (StarRocks `ROWS TERMINATED BY`).
    /// Default: line feed. One message is one row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 50))]
    pub row_delimiter: Option<String>,

    /// CSV enclosing character (StarRocks `enclose`): a field wrapped in it may contain the
    /// column separator. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1))]
    pub enclose: Option<String>,

    /// CSV escape character (StarRocks `escape`): escapes the enclose character inside an
    /// enclosed field. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1))]
    pub escape: Option<String>,

    /// Trim spaces around CSV fields (StarRocks `trim_space`). Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trim_space: Option<bool>,

    /// Column mapping (StarRocks `COLUMNS (...)`), one entry per source field in order: a table
    /// column name, a placeholder name that absorbs a field without loading it, or a derived
    /// column `name = expr` (SQL, e.g. `col4 = col1 + col2`). Default: the table's columns in
    /// order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,

    /// Kafka record metadata as source columns (StarRocks `INCLUDE METADATA (KEY AS k, ...)`):
    /// each given name is a column that COLUMNS and WHERE expressions can use, or that loads
    /// into the table column of that name. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_metadata: Option<IncludeMetadata>,

    /// Row filter (StarRocks `WHERE`), a SQL boolean expression over table and derived columns.
    /// Filtered rows count as unselectedRows, not as errors. Default: none.
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub where_expr: Option<String>,

    /// Target table partitions (StarRocks `PARTITION (...)`), each a Delta partition path such as
    /// `dt=2024-05-01` (several columns: `dt=2024-05-01/region=eu`). A row whose partition is not
    /// listed is an error row. Default: any partition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<String>,

    /// Maximum number of concurrent tasks (StarRocks `desired_concurrent_number`). The job
    /// runs min(this, partitions, live workers, operator cap) tasks. Default: 3.
    #[serde(default = "default_concurrency")]
    #[schemars(range(min = 1))]
    pub desired_concurrent_number: i32,

    /// Longest time a task batches before committing, in seconds, 5 to 60
    /// (StarRocks `max_batch_interval`). Default: 10.
    #[serde(default = "default_batch_interval")]
    #[schemars(range(min = 5, max = 60))]
    pub max_batch_interval: i32,

    /// Most rows in one batch, 200000 to 100000000 (StarRocks `max_batch_rows`); also sets the
    /// error window of 10 x maxBatchRows rows. Default: 200000.
    #[serde(default = "default_batch_rows")]
    #[schemars(range(min = 200000, max = 100000000))]
    pub max_batch_rows: i64,

    /// Most bytes in one batch, 100 MiB to 1 GiB (StarRocks `max_batch_size`).
    /// Default: 104857600.
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 104857600, max = 1073741824))]
    pub max_batch_size: i64,

    /// Error rows allowed per error window (StarRocks `max_error_number`); past it the job goes
    /// PAUSED. Default: 0.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub max_error_number: i64,

    /// Largest ratio of error rows to total rows tolerated per window, 0 to 1
    /// (StarRocks `max_filter_ratio`). Default: 1 (only maxErrorNumber applies).
    #[serde(default = "default_filter_ratio")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_filter_ratio: f64,

    /// Strict mode (StarRocks `strict_mode`): a non-null source value that converts to NULL is an
    /// error row. Without it such a value loads as NULL where the column allows NULL.
    /// Default: true, as in the reference's property table.
    #[serde(default = "default_true")]
    pub strict_mode: bool,

    /// Partial update of a Primary table (StarRocks `partial_update`): a row whose key exists
    /// updates only the columns the job loads (those COLUMNS fills, directly or by an
    /// expression) and the other columns keep their stored values; a row whose key is new is
    /// inserted with the other columns at their default (NULL without one). The keys must be
    /// loaded, and a NOT NULL column that is not loaded needs a default. Default: false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial_update: bool,

    /// Conditional update of a Primary table (StarRocks `merge_condition`): a value column the
    /// job loads; a row whose key exists replaces (or, with partialUpdate, updates) the stored
    /// row only if its value in this column is greater than or equal to the stored one (NULL is
    /// lower than any value), so an older version of a row that arrives late does not overwrite
    /// a newer one. Deletes (`__op` = 1) are not conditional. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub merge_condition: Option<String>,

    /// Time zone for time-zone-sensitive functions such as from_unixtime and unix_timestamp
    /// (StarRocks `timezone`), an IANA name like `Asia/Shanghai`. Default: UTC.
    #[serde(default = "default_timezone")]
    pub timezone: String,

    /// JSON paths, one per COLUMNS entry that reads a field (StarRocks `jsonpaths`), e.g.
    /// `$.user.name`. Default: fields matched by column name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_paths: Option<Vec<String>>,

    /// JSON path of the object (or array, with stripOuterArray) to load in each message
    /// (StarRocks `json_root`). Default: the whole message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_root: Option<String>,

    /// A message is a JSON array whose elements are rows (StarRocks `strip_outer_array`).
    /// Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strip_outer_array: Option<bool>,

    /// Avro paths, one per COLUMNS entry that reads a field (StarRocks `avro_paths`), e.g.
    /// `$.user.name` or `$.items[0]`; a union is looked through to its branch. Default: fields
    /// matched by column name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avro_paths: Option<Vec<String>>,

    /// The Confluent-compatible schema registry that holds the schemas of `format: avro`
    /// messages (StarRocks `confluent.schema.registry.url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry: Option<SchemaRegistry>,

    /// The Kafka source (StarRocks `FROM KAFKA (...)`).
    pub kafka: KafkaSource,
}

/// A Confluent-compatible schema registry (Confluent Schema Registry, Karapace, Apicurio's
/// ccompat API, Redpanda): each Avro message names its writer's schema by id, read from here.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchemaRegistry {
    /// Base URL of the registry's REST API, `http://` or `https://`, e.g.
    /// `http://schema-registry:8081`. No credentials in it: they go in `credentialsSecret`.
    #[schemars(length(min = 1))]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^/@]+(/.*)?$')").message("schemaRegistry.url must be http://host[:port][/path] or https://..., without user:password@ (put credentials in credentialsSecret)"))]
    pub url: String,

    /// Secret with the registry's HTTP basic credentials: keys `username` and `password`
    /// (Confluent's `basic.auth.user.info`). Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<SecretReference>,
}

impl SchemaRegistry {
    /// Keys of `credentialsSecret`: the basic credentials' user name and password.
    pub const USERNAME_KEY: &'static str = "username";
    pub const PASSWORD_KEY: &'static str = "password";
}

/// librdkafka properties the worker always sets itself for exactly-once loading (offsets live
/// in the table, not in a consumer group): a job's `kafka.properties` can't change them.
pub const ENFORCED_CONSUMER_PROPERTIES: [&str; 4] = [
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
];

/// Where a job reads from (StarRocks `FROM KAFKA (...)` data source properties).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.offsets) || size(self.offsets) == 0 || (has(self.partitions) && size(self.offsets) == size(self.partitions))").message("offsets needs one entry per entry of partitions"))]
pub struct KafkaSource {
    /// Brokers as `host:port`, comma separated (StarRocks `kafka_broker_list`).
    #[schemars(length(min = 1))]
    pub broker_list: String,

    /// Topic to load (StarRocks `kafka_topic`). Immutable.
    #[schemars(length(min = 1, max = 249))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("kafka.topic is immutable: create a new job to load another topic"))]
    pub topic: String,

    /// Partitions to load (StarRocks `kafka_partitions`). Default: all partitions of the topic,
    /// including ones added later.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<i32>,

    /// Start offset of each entry of `partitions` (StarRocks `kafka_offsets`): a number,
    /// `OFFSET_BEGINNING`, `OFFSET_END`, or a time `YYYY-MM-DD HH:MM:SS` in the job's `timezone`
    /// (the first message at or after it). A partition's start is resolved once and recorded in
    /// the table before anything loads; restarts resume from the table. Editing an entry (of a
    /// paused or running job) moves that partition to the new start, recorded in the table the
    /// same way (StarRocks `ALTER ROUTINE LOAD ... FROM KAFKA ("kafka_offsets" = ...)`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offsets: Vec<KafkaOffset>,

    /// Start offset of partitions without an entry in `offsets` (StarRocks
    /// `property.kafka_default_offsets`): `OFFSET_BEGINNING`, `OFFSET_END` (default) or a time
    /// `YYYY-MM-DD HH:MM:SS` in the job's `timezone`. Applies only to partitions the table holds
    /// no offset for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_offset: Option<KafkaOffset>,

    /// librdkafka client properties (StarRocks `property.*`), e.g. `security.protocol: SSL`,
    /// `sasl.mechanism: SCRAM-SHA-512`, `client.id`. No secrets here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,

    /// Secret whose keys are added to the client properties: e.g. `sasl.username`,
    /// `sasl.password`, `ssl.key.password`, `ssl.ca.pem`, `ssl.certificate.pem`, `ssl.key.pem`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<SecretReference>,
}

/// A Kafka start offset: a number, `OFFSET_BEGINNING`, `OFFSET_END` or a time.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(try_from = "String", into = "String")]
pub enum KafkaOffset {
    /// The oldest offset still in the partition.
    Beginning,
    /// The offset after the newest message at the time the job starts.
    End,
    /// This exact offset.
    At(i64),
    /// The first message whose timestamp is at or after this local time (`YYYY-MM-DD
    /// HH:MM:SS`, in the job's `timezone`), or the end when there is none.
    Time(chrono::NaiveDateTime),
}

/// How a start time is written: StarRocks' `kafka_offsets` datetime form.
pub const KAFKA_OFFSET_TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

impl JsonSchema for KafkaOffset {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "KafkaOffset".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^(OFFSET_BEGINNING|OFFSET_END|[0-9]+|[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2})$",
        })
    }
}

/// Client properties that carry secrets: refused in `kafka.properties`, where anyone who can
/// read the job would see them. They belong in the Secret named by `credentialsSecret`.
pub fn secret_property(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("password")
        || key.contains("secret")
        || key.ends_with(".pem") && key.contains("key")
        || key == "sasl.oauthbearer.config"
        || key == "sasl.jaas.config"
}

impl TryFrom<String> for KafkaOffset {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        match value.trim() {
            "OFFSET_BEGINNING" => Ok(KafkaOffset::Beginning),
            "OFFSET_END" => Ok(KafkaOffset::End),
            t if t.contains('-') => chrono::NaiveDateTime::parse_from_str(t, KAFKA_OFFSET_TIME_FORMAT)
                .map(KafkaOffset::Time)
                .map_err(|e| format!("invalid Kafka offset time '{value}': {e}; expected YYYY-MM-DD HH:MM:SS")),
            n => n.parse::<i64>().ok().filter(|n| *n >= 0).map(KafkaOffset::At).ok_or_else(|| {
                format!("invalid Kafka offset '{value}': expected a number, OFFSET_BEGINNING, OFFSET_END or YYYY-MM-DD HH:MM:SS")
            }),
        }
    }
}

impl From<KafkaOffset> for String {
    fn from(value: KafkaOffset) -> Self {
        match value {
            KafkaOffset::Beginning => "OFFSET_BEGINNING".into(),
            KafkaOffset::End => "OFFSET_END".into(),
            KafkaOffset::At(n) => n.to_string(),
            KafkaOffset::Time(t) => t.format(KAFKA_OFFSET_TIME_FORMAT).to_string(),
        }
    }
}

/// Desired state of a job, set by the user (`kubectl routineload pause|resume|stop`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DesiredState {
    /// Load continuously (StarRocks RESUME ROUTINE LOAD).
    #[default]
    Running,
    /// Stop loading, keep offsets and counters (StarRocks PAUSE ROUTINE LOAD).
    Paused,
    /// Stop for good (StarRocks STOP ROUTINE LOAD). A stopped job can't be resumed.
    Stopped,
}

/// Names of the source columns that hold each Kafka record's metadata (StarRocks
/// `INCLUDE METADATA`). The names must not be COLUMNS entries.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IncludeMetadata {
    /// The topic (StarRocks `TOPIC AS name`), text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// The record key (StarRocks `KEY AS name`), text; NULL for a record without a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The partition (StarRocks `PARTITION AS name`), INT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// The offset (StarRocks `OFFSET AS name`), BIGINT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<String>,
    /// The record timestamp in milliseconds since the Unix epoch (StarRocks `TIMESTAMP_MS AS
    /// name`), BIGINT; NULL when the record has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_ms: Option<String>,
    /// The headers (StarRocks `HEADERS AS name`) as a JSON object of text values, read with
    /// `element_at(name, 'header')` or `get_json_string(name, '$.header')`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<String>,
}

/// Message format of a job.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DataFormat {
    /// One CSV row per message.
    #[default]
    Csv,
    /// One JSON object per message, or an array of them with stripOuterArray.
    Json,
    /// One Avro record per message in the Confluent wire format (a zero byte, the schema id as
    /// a 4-byte big-endian number, the binary datum); schemas come from `schemaRegistry`.
    Avro,
}

/// The state of a job as StarRocks names it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    /// Accepted; tasks are being planned and assigned.
    NeedSchedule,
    /// Tasks are loading.
    Running,
    /// Not loading; offsets and counters kept. Resumes through NEED_SCHEDULE.
    Paused,
    /// Stopped by the user; final.
    Stopped,
    /// Can never run as specified (for example its table was deleted); final.
    Cancelled,
}

impl JobState {
    /// The state as `SHOW ROUTINE LOAD` prints it.
    pub fn as_str(&self) -> &'static str {
        match self {
            JobState::NeedSchedule => "NEED_SCHEDULE",
            JobState::Running => "RUNNING",
            JobState::Paused => "PAUSED",
            JobState::Stopped => "STOPPED",
            JobState::Cancelled => "CANCELLED",
        }
    }

    /// Whether no transition leaves this state.
    pub fn is_final(&self) -> bool {
        matches!(self, JobState::Stopped | JobState::Cancelled)
    }
}

/// Cumulative load statistics of a job (StarRocks `Statistic`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobStatistic {
    /// Bytes of message payload received.
    #[serde(default)]
    pub received_bytes: i64,
    /// Rows that failed to load (error rows).
    #[serde(default)]
    pub error_rows: i64,
    /// Batches committed to the table.
    #[serde(default)]
    pub committed_task_num: i64,
    /// Rows loaded into the table.
    #[serde(default)]
    pub loaded_rows: i64,
    /// Rows loaded per second over the recent window.
    #[serde(default)]
    pub load_rows_rate: i64,
    /// Batches aborted (conflicts, failures).
    #[serde(default)]
    pub aborted_task_num: i64,
    /// Rows received, including error and unselected rows.
    #[serde(default)]
    pub total_rows: i64,
    /// Rows filtered out by WHERE.
    #[serde(default)]
    pub unselected_rows: i64,
    /// Bytes received per second over the recent window.
    #[serde(default)]
    pub received_bytes_rate: i64,
    /// Total task execution time in milliseconds.
    #[serde(default)]
    pub task_execute_time_ms: i64,
}

/// Observed state of a `RoutineLoadJob` (StarRocks `SHOW ROUTINE LOAD`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoutineLoadJobStatus {
    /// NEED_SCHEDULE, RUNNING, PAUSED, STOPPED or CANCELLED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<JobState>,

    /// Cumulative statistics.
    #[serde(default)]
    pub statistic: JobStatistic,

    /// Next offset to load per Kafka partition (StarRocks `Progress`), keyed by partition.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub progress: BTreeMap<String, i64>,

    /// Messages not yet loaded per Kafka partition (high watermark minus progress).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lag: BTreeMap<String, i64>,

    /// Sum of lag over all partitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_lag: Option<i64>,

    /// Why the job last changed state (StarRocks `ReasonOfStateChanged`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_of_state_changed: Option<String>,

    /// URLs of error logs with the rows that failed and why (StarRocks `ErrorLogUrls`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_log_urls: Vec<String>,

    /// Number of tasks currently assigned (StarRocks `CurrentTaskNum`).
    #[serde(default)]
    pub current_task_num: i32,

    /// Kafka partitions the job currently loads (StarRocks `currentKafkaPartitions`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub current_kafka_partitions: Vec<i32>,

    /// When the operator accepted the job (StarRocks `CreateTime`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_time: Option<Time>,

    /// When the job was last paused (StarRocks `PauseTime`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_time: Option<Time>,

    /// When the job stopped or was cancelled (StarRocks `EndTime`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Time>,

    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Standard conditions: `Ready` (the cause of the state), and `KafkaMetadataAvailable` /
    /// `WorkersAvailable`, whose `lastTransitionTime` is when a failure the job rides out
    /// began (the grace period counts from it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// Counters of tasks that ended and whose objects are gone, summed (part of `statistic`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_counters: Option<crate::task::TaskCounters>,

    /// Counters of tasks being removed, keyed by the task's UID: recorded before the task is
    /// deleted, so recording twice counts once; folded into `retiredCounters` once the task is
    /// gone.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub retired_tasks: BTreeMap<String, crate::task::TaskCounters>,

    /// Where the job-wide error window began (StarRocks: `maxErrorNumber` error rows per
    /// `10 x maxBatchRows` rows of the whole job, and `maxFilterRatio`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_window: Option<ErrorWindowStart>,

    /// Tasks let go without their worker's last word (its Lease expired, or the release timed
    /// out), keyed by the task's UID: a batch their loop committed but never reported is in
    /// the table, not in the task's counters. The operator counts those batches from the
    /// table's commits (each names its task UID) into `retiredCounters`, then drops the entry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unreported_tasks: BTreeMap<String, UnreportedTask>,
}

/// A task let go without its worker's last word, whose unreported commits are still counted.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnreportedTask {
    /// The task's name (for messages).
    pub task: String,
    /// The last table version whose commits are counted for the task (its last reported
    /// commit, then as far as the operator has read); `None`: the task reported no commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted_through: Option<i64>,
    /// When the operator stops looking (a loop cut off from the API server stops committing
    /// once its worker's Lease lapsed, well before).
    pub until: Time,
}

/// The job's cumulative counters when its current error window began. A window covers one job
/// generation: a spec edit, a resume or a completed window starts a new one.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorWindowStart {
    /// The job generation whose rows the window counts.
    pub generation: i64,
    /// `statistic.totalRows` when the window began.
    pub total_rows: i64,
    /// `statistic.errorRows` when the window began.
    pub error_rows: i64,
}

fn default_concurrency() -> i32 {
    3
}
fn default_batch_interval() -> i32 {
    10
}
fn default_batch_rows() -> i64 {
    200_000
}
fn default_batch_size() -> i64 {
    104_857_600
}
fn default_filter_ratio() -> f64 {
    1.0
}
fn default_true() -> bool {
    true
}
fn default_timezone() -> String {
    "UTC".to_string()
}
