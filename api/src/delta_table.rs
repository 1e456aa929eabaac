//! The Delta table behind a `Table`: storage options, create-or-adopt and open.
//!
//! Shared by the operator (which creates or adopts the table) and the workers (which open it to
//! read offsets and commit batches). Every location scheme goes through the same code:
//! `file://` directly, `s3://` through delta-rs' S3 log store (conditional PUT, no lock table).
//!
//! The protocol a table is created with is decided here ([`required_features`],
//! [`lowest_protocol`]), not left to delta-rs: delta-rs 1.1 creates a table with a
//! `timestamp_ntz` column as reader 3 / writer 7 listing only `timestampNtz`, while a writer-7
//! table with NOT NULL columns must also list `invariants` (Spark refuses it otherwise, with
//! `DELTA_FEATURES_PROTOCOL_METADATA_MISMATCH`). A table created that way by an older
//! routine-load is repaired on adopt by a protocol-only commit ([`repaired_protocol`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use deltalake::arrow::datatypes::{DataType as ArrowType, TimeUnit};
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::kernel::{
    Action, DataType as DeltaType, Protocol, StructField, StructType, TableFeatures,
};
use deltalake::protocol::DeltaOperation;
use deltalake::{DeltaTable, DeltaTableError};
use serde_json::{Value, json};
use url::Url;

use crate::table::TableSpec;
use crate::table_model::{self, KeyModel, KeyModelError};

/// Why the Delta table can't be created, adopted or opened.
#[derive(Debug, thiserror::Error)]
pub enum DeltaTableSetupError {
    /// The location is not a URL delta-rs can use.
    #[error("invalid table location '{location}': {reason}")]
    Location { location: String, reason: String },
    /// A column's type doesn't parse or has no Delta type.
    #[error("column '{column}': {reason}")]
    Column { column: String, reason: String },
    /// The spec's model, keys or aggregate functions are invalid.
    #[error("{0}")]
    KeyModel(#[from] KeyModelError),
    /// An existing Delta table at the location has a different schema or partitioning.
    #[error("the Delta table at {location} differs from the Table spec: {differences}")]
    SchemaMismatch {
        location: String,
        differences: String,
    },
    /// delta-rs or the object store failed.
    #[error(transparent)]
    Delta(#[from] DeltaTableError),
}

/// Storage options for a location: the entries of the Table's credentials Secret (already
/// decoded), with conveniences for S3-compatible servers:
/// an `http://` `AWS_ENDPOINT_URL` implies `AWS_ALLOW_HTTP=true`, and a missing region defaults
/// to `us-east-1`. Keys are passed through unchanged otherwise (delta-rs/object_store names,
/// e.g. `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL`).
pub fn storage_options(
    location: &str,
    secret: &BTreeMap<String, String>,
) -> HashMap<String, String> {
    let mut opts: HashMap<String, String> =
        secret.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    if location.starts_with("s3://") || location.starts_with("s3a://") {
        let endpoint = opts
            .get("AWS_ENDPOINT_URL")
            .or_else(|| opts.get("AWS_ENDPOINT"))
            .cloned();
        if endpoint.is_some_and(|e| e.starts_with("http://")) {
            opts.entry("AWS_ALLOW_HTTP".into())
                .or_insert_with(|| "true".into());
        }
        if !opts.contains_key("AWS_REGION") && !opts.contains_key("AWS_DEFAULT_REGION") {
            opts.insert("AWS_REGION".into(), "us-east-1".into());
        }
    }
    opts
}

/// Parses a Table location into the URL delta-rs takes.
pub fn table_url(location: &str) -> Result<Url, DeltaTableSetupError> {
    deltalake::ensure_table_uri(location).map_err(|e| DeltaTableSetupError::Location {
        location: location.to_string(),
        reason: e.to_string(),
    })
}

/// The Delta schema a Table spec declares: one field per column, in order, with the Arrow type
/// the load engine produces (`ColumnType::arrow_type`).
pub fn delta_schema(spec: &TableSpec) -> Result<StructType, DeltaTableSetupError> {
    let mut fields = Vec::with_capacity(spec.columns.len());
    for c in &spec.columns {
        let ty = c.parsed_type().map_err(|e| DeltaTableSetupError::Column {
            column: c.name.clone(),
            reason: e.to_string(),
        })?;
        let delta_ty =
            delta_type(&ty.arrow_type()).ok_or_else(|| DeltaTableSetupError::Column {
                column: c.name.clone(),
                reason: format!("type {} has no Delta type", c.column_type),
            })?;
        fields.push(StructField::new(c.name.clone(), delta_ty, c.nullable));
    }
    StructType::try_new(fields).map_err(|e| DeltaTableSetupError::Column {
        column: String::new(),
        reason: e.to_string(),
    })
}

/// The Delta type storing an Arrow type the load engine produces.
fn delta_type(arrow: &ArrowType) -> Option<DeltaType> {
    Some(match arrow {
        ArrowType::Boolean => DeltaType::BOOLEAN,
        ArrowType::Int8 => DeltaType::BYTE,
        ArrowType::Int16 => DeltaType::SHORT,
        ArrowType::Int32 => DeltaType::INTEGER,
        ArrowType::Int64 => DeltaType::LONG,
        ArrowType::Float32 => DeltaType::FLOAT,
        ArrowType::Float64 => DeltaType::DOUBLE,
        ArrowType::Decimal128(p, s) => DeltaType::decimal(*p, u8::try_from(*s).ok()?).ok()?,
        ArrowType::Date32 => DeltaType::DATE,
        ArrowType::Timestamp(TimeUnit::Microsecond, None) => DeltaType::TIMESTAMP_NTZ,
        ArrowType::Utf8 => DeltaType::STRING,
        _ => return None,
    })
}

/// Opens the Delta table at `location` at its latest version.
pub async fn open(
    location: &str,
    storage_options: HashMap<String, String>,
) -> Result<DeltaTable, DeltaTableSetupError> {
    let url = table_url(location)?;
    Ok(deltalake::open_table_with_storage_options(url, storage_options).await?)
}

/// Creates the Delta table a Table spec declares, or adopts the one already at its location when
/// its schema (names, types, nullability, order) and partition columns match. Refuses a table
/// that differs, naming the differing columns. Returns the table's current version.
///
/// Same as [`create_or_adopt_table`] without the report of what it did.
pub async fn create_or_adopt(
    location: &str,
    spec: &TableSpec,
    storage_options: HashMap<String, String>,
) -> Result<i64, DeltaTableSetupError> {
    Ok(create_or_adopt_table(location, spec, storage_options)
        .await?
        .version)
}

/// What [`create_or_adopt_table`] did to the Delta table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableSetup {
    /// The table's version after the call.
    pub version: i64,
    /// This call created the table (else it adopted an existing one).
    pub created: bool,
    /// The adopted table's protocol lacked features its schema or properties need (a table
    /// created by an older routine-load) and this call committed a protocol-only version adding
    /// them.
    pub protocol_repair: Option<ProtocolRepair>,
}

/// A protocol-only commit that added the table features a table needed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolRepair {
    /// The protocol before the repair.
    pub from: TableProtocol,
    /// The protocol committed.
    pub to: TableProtocol,
    /// The features that were missing, sorted.
    pub added: Vec<String>,
    /// The Delta version of the protocol-only commit.
    pub version: i64,
}

impl ProtocolRepair {
    /// One line for an Event or a log: what was added, from which protocol to which, and why.
    pub fn message(&self) -> String {
        format!(
            "repaired the Delta protocol in version {}: added table feature(s) {} that the \
             schema needs ({} -> {}), so every Delta reader accepts the table",
            self.version,
            self.added.join(", "),
            self.from,
            self.to
        )
    }
}

/// Creates the Delta table a Table spec declares, with the lowest protocol that lists every
/// feature its schema needs ([`lowest_protocol`]), or adopts the one already at its location
/// when its schema (names, types, nullability, order) and partition columns match, repairing its
/// protocol with a protocol-only commit when it lacks a feature the schema needs
/// ([`repaired_protocol`]). Refuses a table that differs, naming the differing columns.
pub async fn create_or_adopt_table(
    location: &str,
    spec: &TableSpec,
    storage_options: HashMap<String, String>,
) -> Result<TableSetup, DeltaTableSetupError> {
    Ok(create_or_adopt_loaded(location, spec, storage_options)
        .await?
        .0)
}

/// [`create_or_adopt_table`], and the table as loaded at the version the setup left, so a
/// writer that goes on to commit doesn't read the log a second time.
pub async fn create_or_adopt_loaded(
    location: &str,
    spec: &TableSpec,
    storage_options: HashMap<String, String>,
) -> Result<(TableSetup, DeltaTable), DeltaTableSetupError> {
    create_or_adopt_from(location, spec, storage_options, None).await
}

/// [`create_or_adopt_loaded`] from `kept`, a snapshot of the table at `location` this process
/// loaded earlier with the same options: brought up to date with the versions committed since
/// (no read of the log from its last checkpoint), then checked as an adopted table is. A kept
/// snapshot that can't be brought up to date is dropped and the table read afresh.
pub async fn create_or_adopt_from(
    location: &str,
    spec: &TableSpec,
    storage_options: HashMap<String, String>,
    kept: Option<DeltaTable>,
) -> Result<(TableSetup, DeltaTable), DeltaTableSetupError> {
    let want = delta_schema(spec)?;
    let model = table_model::validate(spec)?;
    let adopt_table = |table: DeltaTable| {
        adopt(
            location,
            table,
            &want,
            &spec.partition_columns,
            &model,
            storage_options.clone(),
        )
    };
    if let Some(mut table) = kept
        && table.load().await.is_ok()
    {
        return adopt_table(table).await;
    }
    let url = table_url(location)?;
    let mut table = deltalake::DeltaTableBuilder::from_url(url)?
        .with_storage_options(storage_options.clone())
        .build()?;
    match table.load().await {
        Ok(()) => adopt_table(table).await,
        Err(DeltaTableError::NotATable(_)) => {
            let schema_json = serde_json::to_value(&want).map_err(DeltaTableError::from)?;
            let protocol = lowest_protocol(&required_features(&schema_json, &HashMap::new()));
            let created = table
                .create()
                .with_columns(want.fields().cloned())
                .with_partition_columns(spec.partition_columns.clone())
                .with_configuration(model.configuration().into_iter().map(|(k, v)| (k, Some(v))))
                // The model's entries are routine-load's, not Delta table properties.
                .with_raise_if_key_not_exists(false)
                .with_actions(vec![Action::Protocol(protocol.to_kernel()?)])
                .with_save_mode(deltalake::protocol::SaveMode::ErrorIfExists)
                .await;
            match created {
                Ok(t) => Ok((
                    TableSetup {
                        version: t.version().map_or(0, |v| v as i64),
                        created: true,
                        protocol_repair: None,
                    },
                    t,
                )),
                // Someone else created it between our load and our create: adopt it if it fits.
                Err(_) => adopt_table(open(location, storage_options.clone()).await?).await,
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Adopts a loaded table: checks its schema, then repairs its protocol when it lacks features.
/// Returns the table loaded at the version the adoption left.
async fn adopt(
    location: &str,
    mut table: DeltaTable,
    want: &StructType,
    partition_columns: &[String],
    model: &KeyModel,
    storage_options: HashMap<String, String>,
) -> Result<(TableSetup, DeltaTable), DeltaTableSetupError> {
    check_matches(location, &table, want, partition_columns, model)?;
    let version = table.version().map_or(0, |v| v as i64);
    let (have, required) = protocol_and_needs(&table)?;
    let Some(to) = repaired_protocol(&have, &required) else {
        let setup = TableSetup {
            version,
            created: false,
            protocol_repair: None,
        };
        return Ok((setup, table));
    };
    let added: Vec<String> = missing_features(&have, &required).into_iter().collect();
    let operation = DeltaOperation::AddFeature {
        name: added
            .iter()
            .filter_map(|f| serde_json::from_value::<TableFeatures>(json!(f)).ok())
            .collect(),
    };
    let committed = CommitBuilder::default()
        .with_actions(vec![Action::Protocol(to.to_kernel()?)])
        .build(Some(table.snapshot()?), table.log_store(), operation)
        .await;
    match committed {
        Ok(c) => {
            let setup = TableSetup {
                version: c.version() as i64,
                created: false,
                protocol_repair: Some(ProtocolRepair {
                    from: have,
                    to,
                    added,
                    version: c.version() as i64,
                }),
            };
            // The snapshot predates the repair: load the versions since.
            table.load().await?;
            Ok((setup, table))
        }
        Err(e) => {
            // Another process (the operator and a worker both adopt) may have repaired it first.
            let t = open(location, storage_options).await?;
            let (have, required) = protocol_and_needs(&t)?;
            if repaired_protocol(&have, &required).is_some() {
                return Err(e.into());
            }
            let setup = TableSetup {
                version: t.version().map_or(0, |v| v as i64),
                created: false,
                protocol_repair: None,
            };
            Ok((setup, t))
        }
    }
}

/// A loaded table's protocol and the features its schema and properties need.
fn protocol_and_needs(
    table: &DeltaTable,
) -> Result<(TableProtocol, BTreeSet<String>), DeltaTableSetupError> {
    let snapshot = table.snapshot()?;
    let protocol = serde_json::to_value(snapshot.protocol()).map_err(DeltaTableError::from)?;
    let metadata = serde_json::to_value(snapshot.metadata()).map_err(DeltaTableError::from)?;
    let schema: Value = metadata["schemaString"]
        .as_str()
        .map(serde_json::from_str)
        .transpose()
        .map_err(DeltaTableError::from)?
        .unwrap_or(Value::Null);
    let configuration: HashMap<String, String> = metadata["configuration"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect();
    Ok((
        TableProtocol::from_json(&protocol),
        required_features(&schema, &configuration),
    ))
}

// ---------------------------------------------------------------------------------------------
// The protocol decision (pure functions over the Delta protocol's JSON forms).

/// A Delta `protocol` action: the reader and writer versions and, from reader version 3 and
/// writer version 7 on, the table features listed by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableProtocol {
    pub min_reader_version: i32,
    pub min_writer_version: i32,
    /// Listed only when `min_reader_version` >= 3.
    pub reader_features: BTreeSet<String>,
    /// Listed only when `min_writer_version` >= 7.
    pub writer_features: BTreeSet<String>,
}

/// Legacy writer versions: each feature is implied by this writer version and above.
const LEGACY_WRITER_FEATURES: &[(&str, i32)] = &[
    ("appendOnly", 2),
    ("invariants", 2),
    ("checkConstraints", 3),
    ("changeDataFeed", 4),
    ("generatedColumns", 4),
    ("columnMapping", 5),
    ("identityColumns", 6),
];

/// Reader-writer features: readers must support them too (listed in `readerFeatures`).
const READER_WRITER_FEATURES: &[&str] = &[
    "columnMapping",
    "deletionVectors",
    "timestampNtz",
    "typeWidening",
    "typeWidening-preview",
    "v2Checkpoint",
    "vacuumProtocolCheck",
    "variantType",
    "variantType-preview",
];

fn is_reader_writer(feature: &str) -> bool {
    READER_WRITER_FEATURES.contains(&feature)
}

impl TableProtocol {
    /// Reads a `protocol` action (`minReaderVersion`, `minWriterVersion`, `readerFeatures`,
    /// `writerFeatures`).
    pub fn from_json(v: &Value) -> Self {
        let version = |k: &str| v[k].as_i64().unwrap_or(1) as i32;
        let features = |k: &str| -> BTreeSet<String> {
            v[k].as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        };
        TableProtocol {
            min_reader_version: version("minReaderVersion"),
            min_writer_version: version("minWriterVersion"),
            reader_features: features("readerFeatures"),
            writer_features: features("writerFeatures"),
        }
    }

    /// The `protocol` action; feature lists only where the versions have them.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "minReaderVersion": self.min_reader_version,
            "minWriterVersion": self.min_writer_version,
        });
        if self.min_reader_version >= 3 {
            v["readerFeatures"] = json!(self.reader_features);
        }
        if self.min_writer_version >= 7 {
            v["writerFeatures"] = json!(self.writer_features);
        }
        v
    }

    fn to_kernel(&self) -> Result<Protocol, DeltaTableSetupError> {
        Ok(serde_json::from_value(self.to_json()).map_err(DeltaTableError::from)?)
    }

    /// The features writers of this protocol support: the listed ones from writer version 7,
    /// else the ones the legacy writer version implies.
    pub fn supported_writer_features(&self) -> BTreeSet<String> {
        if self.min_writer_version >= 7 {
            return self.writer_features.clone();
        }
        LEGACY_WRITER_FEATURES
            .iter()
            .filter(|(_, v)| *v <= self.min_writer_version)
            .map(|(f, _)| f.to_string())
            .collect()
    }

    /// The features readers of this protocol support: the listed ones from reader version 3,
    /// `columnMapping` at reader version 2.
    pub fn supported_reader_features(&self) -> BTreeSet<String> {
        match self.min_reader_version {
            v if v >= 3 => self.reader_features.clone(),
            2 => BTreeSet::from(["columnMapping".to_string()]),
            _ => BTreeSet::new(),
        }
    }
}

impl fmt::Display for TableProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.min_reader_version, self.min_writer_version)?;
        let list = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(",");
        if self.min_reader_version >= 3 {
            write!(f, " reader [{}]", list(&self.reader_features))?;
        }
        if self.min_writer_version >= 7 {
            write!(f, " writer [{}]", list(&self.writer_features))?;
        }
        Ok(())
    }
}

/// The table features a table with this schema (the Delta schema JSON: `{"type": "struct",
/// "fields": [...]}`) and these table properties needs, by the Delta protocol's rules:
/// a NOT NULL field or a `delta.invariants` field needs `invariants`; `timestamp_ntz` needs
/// `timestampNtz`; `variant` needs `variantType`; generated and identity columns need
/// `generatedColumns` / `identityColumns`; `delta.appendOnly`, `delta.constraints.*`,
/// `delta.enableChangeDataFeed`, `delta.columnMapping.mode`, `delta.enableDeletionVectors`,
/// `delta.enableRowTracking`, `delta.checkpointPolicy=v2`, `delta.enableTypeWidening` and
/// `delta.feature.<name>` need theirs.
pub fn required_features(
    schema: &Value,
    configuration: &HashMap<String, String>,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    schema_features(schema, &mut out);
    let on = |k: &str| {
        configuration
            .get(k)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    };
    let mut add = |f: &str| {
        out.insert(f.to_string());
    };
    if on("delta.appendOnly") {
        add("appendOnly");
    }
    if configuration
        .keys()
        .any(|k| k.starts_with("delta.constraints."))
    {
        add("checkConstraints");
    }
    if on("delta.enableChangeDataFeed") {
        add("changeDataFeed");
    }
    if configuration
        .get("delta.columnMapping.mode")
        .is_some_and(|m| !m.eq_ignore_ascii_case("none"))
    {
        add("columnMapping");
    }
    if on("delta.enableDeletionVectors") {
        add("deletionVectors");
    }
    if on("delta.enableRowTracking") {
        add("rowTracking");
        add("domainMetadata");
    }
    if configuration
        .get("delta.checkpointPolicy")
        .is_some_and(|p| p.eq_ignore_ascii_case("v2"))
    {
        add("v2Checkpoint");
    }
    if on("delta.enableTypeWidening") {
        add("typeWidening");
    }
    for (k, v) in configuration {
        if let Some(name) = k.strip_prefix("delta.feature.")
            && (v.eq_ignore_ascii_case("supported") || v.eq_ignore_ascii_case("enabled"))
        {
            add(name);
        }
    }
    out
}

/// Walks a Delta schema type (struct, array, map or primitive) for the features it needs.
fn schema_features(ty: &Value, out: &mut BTreeSet<String>) {
    match ty {
        Value::String(t) if t == "timestamp_ntz" => {
            out.insert("timestampNtz".into());
        }
        Value::String(t) if t == "variant" => {
            out.insert("variantType".into());
        }
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("struct") => {
                for field in o
                    .get("fields")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if field.get("nullable") == Some(&Value::Bool(false)) {
                        out.insert("invariants".into());
                    }
                    if let Some(meta) = field.get("metadata").and_then(Value::as_object) {
                        if meta.contains_key("delta.invariants") {
                            out.insert("invariants".into());
                        }
                        if meta.contains_key("delta.generationExpression") {
                            out.insert("generatedColumns".into());
                        }
                        if meta.keys().any(|k| k.starts_with("delta.identity.")) {
                            out.insert("identityColumns".into());
                        }
                    }
                    if let Some(t) = field.get("type") {
                        schema_features(t, out);
                    }
                }
            }
            Some("array") => {
                if let Some(t) = o.get("elementType") {
                    schema_features(t, out);
                }
            }
            Some("map") => {
                for k in ["keyType", "valueType"] {
                    if let Some(t) = o.get(k) {
                        schema_features(t, out);
                    }
                }
            }
            _ => {}
        },
        _ => {}
    }
}

/// The lowest protocol that supports these features: a legacy protocol (reader 1 or 2, writer 2
/// to 6, never below 1/2, delta-rs' default) when every feature has a legacy writer version,
/// else writer 7 listing every feature (the legacy ones too: a writer-7 table supports only what
/// it lists) plus the two that writer 2 implies, `appendOnly` and `invariants` (what Spark lists
/// for a table created with the same schema, and what delta-rs adds on create), and, when any of
/// them is a reader-writer feature, reader 3 listing those.
pub fn lowest_protocol(features: &BTreeSet<String>) -> TableProtocol {
    let legacy = |f: &str| {
        LEGACY_WRITER_FEATURES
            .iter()
            .find(|(name, _)| *name == f)
            .map(|(_, v)| *v)
    };
    if features.iter().all(|f| legacy(f).is_some()) {
        return TableProtocol {
            min_reader_version: if features.contains("columnMapping") {
                2
            } else {
                1
            },
            min_writer_version: features.iter().filter_map(|f| legacy(f)).fold(2, i32::max),
            ..Default::default()
        };
    }
    let reader: BTreeSet<String> = features
        .iter()
        .filter(|f| is_reader_writer(f))
        .cloned()
        .collect();
    let mut writer = features.clone();
    writer.extend(["appendOnly".to_string(), "invariants".to_string()]);
    TableProtocol {
        min_reader_version: if reader.is_empty() { 1 } else { 3 },
        min_writer_version: 7,
        reader_features: reader,
        writer_features: writer,
    }
}

/// The required features this protocol does not support (a reader-writer feature must be
/// supported on both sides).
pub fn missing_features(have: &TableProtocol, required: &BTreeSet<String>) -> BTreeSet<String> {
    let writer = have.supported_writer_features();
    let reader = have.supported_reader_features();
    required
        .iter()
        .filter(|f| !writer.contains(*f) || (is_reader_writer(f) && !reader.contains(*f)))
        .cloned()
        .collect()
}

/// The protocol to commit so a table with protocol `have` supports the `required` features, or
/// `None` when it already does. The result keeps every feature `have` supports (named, when it
/// moves to writer 7 or reader 3) and never lowers a version; unknown listed features are kept.
pub fn repaired_protocol(
    have: &TableProtocol,
    required: &BTreeSet<String>,
) -> Option<TableProtocol> {
    let missing = missing_features(have, required);
    if missing.is_empty() {
        return None;
    }
    let mut all = have.supported_writer_features();
    all.extend(have.supported_reader_features());
    all.extend(missing);
    let lowest = lowest_protocol(&all);
    let min_reader_version = have.min_reader_version.max(lowest.min_reader_version);
    let min_writer_version = have.min_writer_version.max(lowest.min_writer_version);
    let mut reader_features = BTreeSet::new();
    if min_reader_version >= 3 {
        reader_features = have.supported_reader_features();
        reader_features.extend(all.iter().filter(|f| is_reader_writer(f)).cloned());
    }
    let writer_features = if min_writer_version >= 7 {
        all.union(&reader_features).cloned().collect()
    } else {
        BTreeSet::new()
    };
    Some(TableProtocol {
        min_reader_version,
        min_writer_version,
        reader_features,
        writer_features,
    })
}

fn check_matches(
    location: &str,
    table: &DeltaTable,
    want: &StructType,
    partition_columns: &[String],
    model: &KeyModel,
) -> Result<(), DeltaTableSetupError> {
    let snapshot = table.snapshot()?;
    let have = snapshot.schema();
    let mut diffs = Vec::new();
    for f in want.fields() {
        match have.field(f.name()) {
            None => diffs.push(format!("column '{}' is missing", f.name())),
            Some(h) if h.data_type() != f.data_type() => diffs.push(format!(
                "column '{}' has type {} in the table, {} in the spec",
                f.name(),
                h.data_type(),
                f.data_type()
            )),
            Some(h) if h.is_nullable() != f.is_nullable() => diffs.push(format!(
                "column '{}' is {} in the table, {} in the spec",
                f.name(),
                nullability(h.is_nullable()),
                nullability(f.is_nullable())
            )),
            Some(_) => {}
        }
    }
    for h in have.fields() {
        if want.field(h.name()).is_none() {
            diffs.push(format!("column '{}' is not in the spec", h.name()));
        }
    }
    let have_parts = snapshot.metadata().partition_columns().to_vec();
    if have_parts[..] != *partition_columns {
        diffs.push(format!(
            "partition columns are {have_parts:?} in the table, {partition_columns:?} in the spec"
        ));
    }
    match recorded_model(table) {
        Ok(have) => diffs.extend(have.differences(model)),
        Err(e) => diffs.push(e),
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(DeltaTableSetupError::SchemaMismatch {
            location: location.to_string(),
            differences: diffs.join("; "),
        })
    }
}

/// The key model a Delta table's configuration records (Duplicate without keys when none).
pub fn recorded_model(table: &DeltaTable) -> Result<KeyModel, String> {
    let snapshot = table.snapshot().map_err(|e| e.to_string())?;
    let metadata = serde_json::to_value(snapshot.metadata()).map_err(|e| e.to_string())?;
    let configuration: HashMap<String, String> = metadata["configuration"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect();
    KeyModel::from_configuration(&configuration)
        .map_err(|e| format!("the table's configuration records an invalid key model: {e}"))
}

fn nullability(nullable: bool) -> &'static str {
    if nullable { "nullable" } else { "NOT NULL" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{DeletionPolicy, TableColumn};

    fn col(name: &str, ty: &str) -> TableColumn {
        TableColumn {
            name: name.into(),
            column_type: ty.into(),
            nullable: true,
            default: None,
            comment: None,
            aggregate: None,
        }
    }

    fn spec(location: &str, columns: Vec<TableColumn>) -> TableSpec {
        TableSpec {
            columns,
            partition_columns: vec![],
            location: location.into(),
            credentials_secret: None,
            deletion_policy: DeletionPolicy::Retain,
            comment: None,
            model: Default::default(),
            keys: vec![],
            maintenance: Default::default(),
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn create_adopt_and_refuse() {
        let dir = std::env::temp_dir().join(format!(
            "rl-delta-table-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let location = format!("file://{}", dir.display());
        let cols = vec![
            col("id", "BIGINT"),
            col("ts", "DATETIME"),
            col("big", "LARGEINT"),
            col("d", "DECIMAL(10,2)"),
            col("day", "DATE"),
            col("name", "VARCHAR(20)"),
        ];
        let s = spec(&location, cols.clone());
        let rt = rt();
        rt.block_on(async {
            let v = create_or_adopt(&location, &s, HashMap::new())
                .await
                .unwrap();
            assert_eq!(v, 0);
            // Adopting the same table is fine.
            let v = create_or_adopt(&location, &s, HashMap::new())
                .await
                .unwrap();
            assert_eq!(v, 0);
            let t = open(&location, HashMap::new()).await.unwrap();
            assert_eq!(t.version(), Some(0u64));
            // A different schema is refused, naming the columns.
            let mut other = cols.clone();
            other[0] = col("id", "INT");
            other.push(col("extra", "STRING"));
            let err = create_or_adopt(&location, &spec(&location, other), HashMap::new())
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains("column 'id'"), "{err}");
            assert!(err.contains("column 'extra' is missing"), "{err}");
        });
        std::fs::remove_dir_all(&dir).ok();
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn proto(r: i32, w: i32, reader: &[&str], writer: &[&str]) -> TableProtocol {
        TableProtocol {
            min_reader_version: r,
            min_writer_version: w,
            reader_features: set(reader),
            writer_features: set(writer),
        }
    }

    fn field(name: &str, ty: Value, nullable: bool) -> Value {
        json!({"name": name, "type": ty, "nullable": nullable, "metadata": {}})
    }

    fn schema(fields: Vec<Value>) -> Value {
        json!({"type": "struct", "fields": fields})
    }

    #[test]
    fn required_features_and_lowest_protocol() {
        let conf = |kv: &[(&str, &str)]| -> HashMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let ntz = || field("ts", json!("timestamp_ntz"), true);
        let not_null = || field("k", json!("integer"), false);
        let nullable = || field("v", json!("string"), true);
        /// (case, schema, table properties, features needed, lowest protocol)
        type Case<'a> = (
            &'a str,
            Value,
            HashMap<String, String>,
            &'a [&'a str],
            TableProtocol,
        );
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            ("nullable columns only", schema(vec![nullable()]), conf(&[]), &[], proto(1, 2, &[], &[])),
            ("NOT NULL, no timestamp_ntz", schema(vec![not_null(), nullable()]), conf(&[]),
             &["invariants"], proto(1, 2, &[], &[])),
            ("timestamp_ntz, nullable", schema(vec![ntz(), nullable()]), conf(&[]),
             &["timestampNtz"], proto(3, 7, &["timestampNtz"], &["appendOnly", "invariants", "timestampNtz"])),
            // The quick start's table: DATETIME NOT NULL.
            ("timestamp_ntz and NOT NULL", schema(vec![field("event_time", json!("timestamp_ntz"), false), nullable()]),
             conf(&[]), &["invariants", "timestampNtz"],
             proto(3, 7, &["timestampNtz"], &["appendOnly", "invariants", "timestampNtz"])),
            ("NOT NULL inside a struct", schema(vec![field("s", schema(vec![not_null()]), true)]), conf(&[]),
             &["invariants"], proto(1, 2, &[], &[])),
            ("timestamp_ntz in an array", schema(vec![field("a", json!({"type": "array", "elementType": "timestamp_ntz", "containsNull": true}), true)]),
             conf(&[]), &["timestampNtz"], proto(3, 7, &["timestampNtz"], &["appendOnly", "invariants", "timestampNtz"])),
            ("timestamp_ntz as a map value", schema(vec![field("m", json!({"type": "map", "keyType": "string", "valueType": "timestamp_ntz", "valueContainsNull": true}), true)]),
             conf(&[]), &["timestampNtz"], proto(3, 7, &["timestampNtz"], &["appendOnly", "invariants", "timestampNtz"])),
            ("appendOnly property with timestamp_ntz", schema(vec![ntz()]), conf(&[("delta.appendOnly", "true")]),
             &["appendOnly", "timestampNtz"], proto(3, 7, &["timestampNtz"], &["appendOnly", "invariants", "timestampNtz"])),
            ("appendOnly=false needs nothing", schema(vec![nullable()]), conf(&[("delta.appendOnly", "false")]),
             &[], proto(1, 2, &[], &[])),
            ("check constraint", schema(vec![nullable()]), conf(&[("delta.constraints.positive", "k > 0")]),
             &["checkConstraints"], proto(1, 3, &[], &[])),
            ("change data feed", schema(vec![not_null()]), conf(&[("delta.enableChangeDataFeed", "true")]),
             &["changeDataFeed", "invariants"], proto(1, 4, &[], &[])),
            ("column mapping", schema(vec![nullable()]), conf(&[("delta.columnMapping.mode", "name")]),
             &["columnMapping"], proto(2, 5, &[], &[])),
            ("column mapping and timestamp_ntz", schema(vec![ntz()]), conf(&[("delta.columnMapping.mode", "id")]),
             &["columnMapping", "timestampNtz"],
             proto(3, 7, &["columnMapping", "timestampNtz"], &["appendOnly", "columnMapping", "invariants", "timestampNtz"])),
            ("deletion vectors", schema(vec![not_null()]), conf(&[("delta.enableDeletionVectors", "true")]),
             &["deletionVectors", "invariants"], proto(3, 7, &["deletionVectors"], &["appendOnly", "deletionVectors", "invariants"])),
            ("row tracking is writer-only", schema(vec![nullable()]), conf(&[("delta.enableRowTracking", "true")]),
             &["domainMetadata", "rowTracking"], proto(1, 7, &[], &["appendOnly", "domainMetadata", "invariants", "rowTracking"])),
            ("delta.feature.<name>=supported", schema(vec![nullable()]), conf(&[("delta.feature.invariants", "supported")]),
             &["invariants"], proto(1, 2, &[], &[])),
            ("generated column", schema(vec![json!({"name": "g", "type": "long", "nullable": true, "metadata": {"delta.generationExpression": "1"}})]),
             conf(&[]), &["generatedColumns"], proto(1, 4, &[], &[])),
        ];
        for (name, schema, conf, features, protocol) in cases {
            let got = required_features(&schema, &conf);
            assert_eq!(got, set(features), "{name}: features");
            assert_eq!(lowest_protocol(&got), protocol, "{name}: protocol");
            assert!(
                missing_features(&protocol, &got).is_empty(),
                "{name}: the lowest protocol supports what it was made for"
            );
            // Every protocol decided here is one delta-kernel accepts, unchanged.
            let kernel = protocol
                .to_kernel()
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                TableProtocol::from_json(&serde_json::to_value(&kernel).unwrap()),
                protocol,
                "{name}: kernel round trip"
            );
        }
    }

    #[test]
    fn repaired_protocol_adds_only_what_is_missing() {
        let ntz_not_null = set(&["invariants", "timestampNtz"]);
        #[rustfmt::skip]
        let cases: Vec<(&str, TableProtocol, BTreeSet<String>, Option<TableProtocol>)> = vec![
            // What routine-load (delta-rs 1.1's default) created for the quick start's table.
            ("older routine-load: 3/7 without invariants", proto(3, 7, &["timestampNtz"], &["timestampNtz"]),
             ntz_not_null.clone(), Some(proto(3, 7, &["timestampNtz"], &["invariants", "timestampNtz"]))),
            ("already right", proto(3, 7, &["timestampNtz"], &["invariants", "timestampNtz"]),
             ntz_not_null.clone(), None),
            // What Spark creates for the same schema: appendOnly and invariants named too.
            ("Spark's protocol", proto(3, 7, &["timestampNtz"], &["appendOnly", "invariants", "timestampNtz"]),
             ntz_not_null.clone(), None),
            ("legacy 1/2 with NOT NULL", proto(1, 2, &[], &[]), set(&["invariants"]), None),
            ("legacy 1/1 with NOT NULL", proto(1, 1, &[], &[]), set(&["invariants"]),
             Some(proto(1, 2, &[], &[]))),
            ("legacy 1/4 covers invariants", proto(1, 4, &[], &[]), set(&["invariants"]), None),
            // A legacy table moving to table features names what its old versions implied.
            ("legacy 1/2 needing timestampNtz", proto(1, 2, &[], &[]), ntz_not_null.clone(),
             Some(proto(3, 7, &["timestampNtz"], &["appendOnly", "invariants", "timestampNtz"]))),
            ("writer features kept, reader raised", proto(1, 7, &[], &["domainMetadata", "invariants"]),
             set(&["invariants", "timestampNtz"]),
             Some(proto(3, 7, &["timestampNtz"], &["domainMetadata", "invariants", "timestampNtz"]))),
            ("unknown features kept", proto(3, 7, &["timestampNtz", "someReaderFeature"], &["timestampNtz", "someReaderFeature", "someWriterFeature"]),
             ntz_not_null.clone(),
             Some(proto(3, 7, &["someReaderFeature", "timestampNtz"], &["invariants", "someReaderFeature", "someWriterFeature", "timestampNtz"]))),
            ("reader side missing", proto(1, 7, &[], &["timestampNtz"]), set(&["timestampNtz"]),
             Some(proto(3, 7, &["timestampNtz"], &["timestampNtz"]))),
            ("nothing needed", proto(1, 2, &[], &[]), set(&[]), None),
        ];
        for (name, have, required, want) in cases {
            let got = repaired_protocol(&have, &required);
            assert_eq!(got, want, "{name}");
            if let Some(p) = got {
                assert!(
                    missing_features(&p, &required).is_empty(),
                    "{name}: still missing"
                );
                assert!(
                    have.supported_writer_features()
                        .is_subset(&p.supported_writer_features()),
                    "{name}: a writer feature was dropped"
                );
                p.to_kernel().unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
    }

    #[test]
    fn protocol_json_round_trip() {
        let p = proto(3, 7, &["timestampNtz"], &["invariants", "timestampNtz"]);
        let v = p.to_json();
        assert_eq!(
            v,
            json!({"minReaderVersion": 3, "minWriterVersion": 7,
                   "readerFeatures": ["timestampNtz"], "writerFeatures": ["invariants", "timestampNtz"]})
        );
        assert_eq!(TableProtocol::from_json(&v), p);
        assert_eq!(
            proto(1, 2, &[], &[]).to_json(),
            json!({"minReaderVersion": 1, "minWriterVersion": 2})
        );
        assert_eq!(
            p.to_string(),
            "3/7 reader [timestampNtz] writer [invariants,timestampNtz]"
        );
    }

    /// A kept snapshot is brought up to the versions committed since by another writer, and
    /// still checked against the spec.
    #[test]
    fn a_kept_snapshot_is_brought_up_to_date_and_checked() {
        let cols = vec![col("id", "BIGINT"), col("name", "VARCHAR(20)")];
        rt().block_on(async {
            let (dir, location) = temp_location("kept");
            let s = spec(&location, cols.clone());
            let (_, kept) = create_or_adopt_loaded(&location, &s, HashMap::new())
                .await
                .unwrap();
            assert_eq!(kept.version(), Some(0));
            // Another writer commits version 1 (a property-only commit is enough).
            let other = open(&location, HashMap::new()).await.unwrap();
            CommitBuilder::default()
                .with_actions(vec![])
                .build(
                    Some(other.snapshot().unwrap()),
                    other.log_store(),
                    DeltaOperation::SetTableProperties {
                        properties: HashMap::from([("k".to_string(), "v".to_string())]),
                    },
                )
                .await
                .unwrap();
            let (setup, table) = create_or_adopt_from(&location, &s, HashMap::new(), Some(kept))
                .await
                .unwrap();
            assert_eq!((setup.version, table.version()), (1, Some(1)));
            let mut other_cols = cols.clone();
            other_cols[0] = col("id", "INT");
            let err = create_or_adopt_from(
                &location,
                &spec(&location, other_cols),
                HashMap::new(),
                Some(table),
            )
            .await
            .unwrap_err()
            .to_string();
            assert!(err.contains("column 'id'"), "{err}");
            std::fs::remove_dir_all(&dir).ok();
        });
    }

    fn temp_location(tag: &str) -> (std::path::PathBuf, String) {
        let dir = std::env::temp_dir().join(format!(
            "rl-delta-{tag}-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let location = format!("file://{}", dir.display());
        (dir, location)
    }

    async fn protocol_of(location: &str) -> TableProtocol {
        let t = open(location, HashMap::new()).await.unwrap();
        TableProtocol::from_json(&serde_json::to_value(t.snapshot().unwrap().protocol()).unwrap())
    }

    /// The quick start's shape (DATETIME NOT NULL): created with `invariants`; a table created
    /// the way an older routine-load did (delta-rs' own protocol) is repaired once on adopt.
    #[test]
    fn created_with_invariants_and_older_tables_repaired_on_adopt() {
        let mut ts = col("event_time", "DATETIME");
        ts.nullable = false;
        let cols = vec![ts, col("channel", "VARCHAR(32)"), col("delta", "INT")];
        let rt = rt();
        rt.block_on(async {
            let (dir, location) = temp_location("protocol-new");
            let s = spec(&location, cols.clone());
            let setup = create_or_adopt_table(&location, &s, HashMap::new())
                .await
                .unwrap();
            assert_eq!(
                (setup.version, setup.created, setup.protocol_repair),
                (0, true, None)
            );
            let created = proto(
                3,
                7,
                &["timestampNtz"],
                &["appendOnly", "invariants", "timestampNtz"],
            );
            assert_eq!(protocol_of(&location).await, created);
            std::fs::remove_dir_all(&dir).ok();
            let want = proto(3, 7, &["timestampNtz"], &["invariants", "timestampNtz"]);

            // An older routine-load: delta-rs picks the protocol (3/7, timestampNtz only).
            let (dir, location) = temp_location("protocol-old");
            let s = spec(&location, cols.clone());
            let mut t = deltalake::DeltaTableBuilder::from_url(table_url(&location).unwrap())
                .unwrap()
                .build()
                .unwrap();
            t = t
                .create()
                .with_columns(delta_schema(&s).unwrap().fields().cloned())
                .await
                .unwrap();
            assert_eq!(t.version(), Some(0));
            let old = proto(3, 7, &["timestampNtz"], &["timestampNtz"]);
            assert_eq!(protocol_of(&location).await, old);

            let setup = create_or_adopt_table(&location, &s, HashMap::new())
                .await
                .unwrap();
            assert!(!setup.created);
            let repair = setup.protocol_repair.expect("repaired");
            assert_eq!(setup.version, 1);
            assert_eq!(
                (
                    repair.from.clone(),
                    repair.to.clone(),
                    repair.added.clone(),
                    repair.version
                ),
                (old, want.clone(), vec!["invariants".to_string()], 1)
            );
            assert!(
                repair.message().contains("invariants"),
                "{}",
                repair.message()
            );
            assert_eq!(protocol_of(&location).await, want);
            // The commit holds the protocol action only.
            let log =
                std::fs::read_to_string(dir.join("_delta_log/00000000000000000001.json")).unwrap();
            let actions: Vec<Value> = log
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            let kinds: BTreeSet<String> = actions
                .iter()
                .flat_map(|a| a.as_object().unwrap().keys().cloned())
                .collect();
            assert_eq!(kinds, set(&["commitInfo", "protocol"]), "{log}");
            // Once repaired, adopting again changes nothing.
            let setup = create_or_adopt_table(&location, &s, HashMap::new())
                .await
                .unwrap();
            assert_eq!(
                (setup.version, setup.created, setup.protocol_repair),
                (1, false, None)
            );
            assert_eq!(
                create_or_adopt(&location, &s, HashMap::new())
                    .await
                    .unwrap(),
                1
            );
            std::fs::remove_dir_all(&dir).ok();
        });
    }

    #[test]
    fn s3_options_allow_http_endpoints() {
        let mut secret = BTreeMap::new();
        secret.insert(
            "AWS_ENDPOINT_URL".to_string(),
            "http://127.0.0.1:9000".to_string(),
        );
        let o = storage_options("s3://b/t", &secret);
        assert_eq!(o.get("AWS_ALLOW_HTTP").map(String::as_str), Some("true"));
        assert_eq!(o.get("AWS_REGION").map(String::as_str), Some("us-east-1"));
        let o = storage_options("file:///tmp/t", &secret);
        assert!(!o.contains_key("AWS_ALLOW_HTTP"));
    }
}
