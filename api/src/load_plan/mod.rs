//! The load plan: a `RoutineLoadJob`'s COLUMNS, WHERE, PARTITION and format options resolved
//! against its `Table`. The operator builds it to validate a job; each worker builds it to run
//! one. Derived columns and WHERE compile to DataFusion physical expressions evaluated over Arrow
//! batches.

mod avro;
mod dialect;
#[cfg(test)]
mod function_tests;
mod functions;
mod json_functions;
mod json_path;
#[cfg(test)]
mod key_tests;
mod op_column;
mod string_functions;
mod time_functions;
mod udf;
mod update_rule;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono_tz::Tz;
use deltalake::arrow::compute::can_cast_types;
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::datafusion::common::DFSchema;
use deltalake::datafusion::logical_expr::simplify::SimplifyContext;
use deltalake::datafusion::optimizer::simplify_expressions::ExprSimplifier;
use deltalake::datafusion::physical_expr::PhysicalExpr;
use deltalake::datafusion::prelude::{SessionConfig, SessionContext};

pub use functions::mysql_format_to_chrono;
pub use json_path::{JsonPath, Step};
pub use update_rule::UpdateRule;

use crate::column_type::{ColumnType, SchemaRef};
use crate::job::{DEFAULT_COLUMN_SEPARATOR, DEFAULT_ROW_DELIMITER, DataFormat, RoutineLoadJobSpec};
use crate::table::TableSpec;
use crate::value::{self, ConvertError};

/// Why a job can't run against its table. Each message names the entry and says what to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("table column '{column}': {reason}")]
    BadColumnType { column: String, reason: String },
    #[error(
        "COLUMNS entry '{entry}' is neither a column name nor 'name = expression'; give one entry per source field"
    )]
    BadColumnsEntry { entry: String },
    #[error("column '{column}' appears more than once in COLUMNS")]
    DuplicateColumn { column: String },
    #[error("derived column '{column}' is not a column of table '{table}'")]
    UnknownTargetColumn { column: String, table: String },
    #[error(
        "expression of derived column '{column}' refers to unknown column '{unknown}'; known source columns: {known}"
    )]
    UnknownExpressionColumn {
        column: String,
        unknown: String,
        known: String,
    },
    #[error("bad expression for derived column '{column}' ({expr}): {reason}")]
    BadExpression {
        column: String,
        expr: String,
        reason: String,
    },
    #[error(
        "derived column '{column}' produces {produced}, which can't be converted to {column_type}"
    )]
    UnconvertibleType {
        column: String,
        produced: String,
        column_type: String,
    },
    #[error("WHERE refers to unknown column '{unknown}'; known columns: {known}")]
    WhereUnknownColumn { unknown: String, known: String },
    #[error("bad WHERE expression ({expr}): {reason}")]
    BadWhere { expr: String, reason: String },
    #[error(
        "column '{column}' is NOT NULL and has no default, but the job gives it no source: add it to COLUMNS"
    )]
    MissingRequiredColumn { column: String },
    #[error("default '{value}' of column '{column}' is not a valid {column_type}")]
    BadDefault {
        column: String,
        value: String,
        column_type: String,
    },
    #[error("unknown timezone '{0}': use an IANA name such as 'UTC' or 'Asia/Shanghai'")]
    BadTimezone(String),
    #[error("{option}: {reason}")]
    BadFormatOption {
        option: &'static str,
        reason: String,
    },
    #[error(
        "kafka.properties holds '{key}', a secret: move it to the Secret named by kafka.credentialsSecret"
    )]
    SecretInProperties { key: String },
    #[error("partition '{partition}': {reason}")]
    BadPartition { partition: String, reason: String },
    #[error("table's key model: {0}")]
    KeyModel(crate::table_model::KeyModelError),
    #[error(
        "COLUMNS names __op, but table '{table}' has model {model}: __op (upsert or delete) applies only to a Primary table; remove it from COLUMNS"
    )]
    OpOutsidePrimary {
        table: String,
        model: crate::table_model::TableModel,
    },
    #[error(
        "{option} applies only to a Primary table, but table '{table}' has model {model}: remove {option} from the job"
    )]
    UpdateOutsidePrimary {
        option: &'static str,
        table: String,
        model: crate::table_model::TableModel,
    },
    #[error(
        "partialUpdate: key column '{key}' is not loaded, so rows can't find their stored row: add it to COLUMNS"
    )]
    PartialUpdateWithoutKey { key: String },
    #[error(
        "partialUpdate: column '{column}' is NOT NULL without a default and the job does not load it, so a row with a new key could not be inserted: give it a default (e.g. default: \"0\") or add it to COLUMNS"
    )]
    PartialUpdateWithoutDefault { column: String },
    #[error("mergeCondition '{column}': {reason}")]
    BadMergeCondition { column: String, reason: String },
}

/// CSV decoding options.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvOptions {
    /// Column separator, 1 to 50 bytes.
    pub column_separator: Vec<u8>,
    /// Row delimiter tolerated at the end of a message.
    pub row_delimiter: Vec<u8>,
    /// Enclosing byte: separators inside an enclosed field are data.
    pub enclose: Option<u8>,
    /// Escape byte inside enclosed fields.
    pub escape: Option<u8>,
    /// Trim spaces around fields.
    pub trim_space: bool,
}

/// JSON decoding options.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonOptions {
    /// Path of the row (or array of rows) inside each message.
    pub root: Option<JsonPath>,
    /// A message is an array of rows.
    pub strip_outer_array: bool,
}

/// A field read from each message, in COLUMNS order.
#[derive(Debug, Clone)]
pub struct SourceField {
    /// Name expressions refer to it by.
    pub name: String,
    /// Type of the table column the field loads into; None for a placeholder, read as text.
    pub column_type: Option<ColumnType>,
    /// Whether the table column accepts NULL (placeholders always do).
    pub nullable: bool,
    /// Where the field is in a JSON row.
    pub json_path: JsonPath,
}

/// A Kafka record's metadata that a job reads as a column (StarRocks `INCLUDE METADATA`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataKind {
    Topic,
    Key,
    Partition,
    Offset,
    TimestampMs,
    Headers,
}

impl MetadataKind {
    /// The Arrow type of the column.
    pub fn arrow_type(self) -> DataType {
        match self {
            MetadataKind::Topic | MetadataKind::Key | MetadataKind::Headers => DataType::Utf8,
            MetadataKind::Partition => DataType::Int32,
            MetadataKind::Offset | MetadataKind::TimestampMs => DataType::Int64,
        }
    }

    /// StarRocks' name of the metadata key.
    pub fn starrocks_name(self) -> &'static str {
        match self {
            MetadataKind::Topic => "TOPIC",
            MetadataKind::Key => "KEY",
            MetadataKind::Partition => "PARTITION",
            MetadataKind::Offset => "OFFSET",
            MetadataKind::TimestampMs => "TIMESTAMP_MS",
            MetadataKind::Headers => "HEADERS",
        }
    }

    fn field(self, name: &str) -> Field {
        let field = Field::new(name, self.arrow_type(), true);
        if self == MetadataKind::Headers {
            field.with_metadata(
                [(
                    udf::JSON_EXTENSION.0.to_string(),
                    udf::JSON_EXTENSION.1.to_string(),
                )]
                .into(),
            )
        } else {
            field
        }
    }
}

/// A metadata column: what it holds and the name expressions use.
#[derive(Debug, Clone)]
pub struct MetadataColumn {
    pub kind: MetadataKind,
    pub name: String,
}

/// How a table column gets its value.
#[derive(Debug, Clone)]
pub enum ColumnSource {
    /// Straight from this source field (index into `LoadPlan::source_fields`).
    Field(usize),
    /// From an expression over the source fields.
    Derived {
        /// The SQL text, for messages.
        sql: String,
        /// The compiled expression, evaluated over a batch of `LoadPlan::source_schema`.
        expr: Arc<dyn PhysicalExpr>,
    },
    /// The column's default value, as text of its type.
    Default(String),
    /// NULL (nullable column with no source and no default).
    Null,
}

/// One table column and where its values come from.
#[derive(Debug, Clone)]
pub struct PlannedColumn {
    pub name: String,
    pub column_type: ColumnType,
    pub nullable: bool,
    pub source: ColumnSource,
}

/// A job resolved against its table, ready to validate or to run.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    pub format: DataFormat,
    pub csv: CsvOptions,
    pub json: JsonOptions,
    /// Fields read from each message, in order.
    pub source_fields: Vec<SourceField>,
    /// Kafka record metadata columns, after the source fields in `source_schema`.
    pub metadata: Vec<MetadataColumn>,
    /// Indexes (in `metadata`) of the metadata columns that follow the placeholders in
    /// `where_schema` (those that are not table columns).
    pub where_metadata: Vec<usize>,
    /// The topic, for the TOPIC metadata column.
    pub topic: String,
    /// Arrow schema of the typed source fields and the metadata columns; derived expressions
    /// evaluate over it.
    pub source_schema: SchemaRef,
    /// The table's columns in table order.
    pub columns: Vec<PlannedColumn>,
    /// Arrow schema of what is written: the table's columns in table order.
    pub table_schema: SchemaRef,
    /// WHERE, evaluated over a batch of `where_schema`.
    pub where_filter: Option<Arc<dyn PhysicalExpr>>,
    /// The table's columns followed by the placeholders.
    pub where_schema: SchemaRef,
    /// Strict mode: a non-null value that converts to NULL makes an error row.
    pub strict_mode: bool,
    /// Time zone of time-zone-sensitive functions.
    pub timezone: Tz,
    /// Indexes (in `columns`) of the table's partition columns.
    pub partition_columns: Vec<usize>,
    /// Partitions rows may go to, as `col=value/col2=value` paths; None allows any.
    pub allowed_partitions: Option<BTreeSet<String>>,
    /// The table's key model: how the written rows combine with the stored ones per key.
    pub key_model: crate::table_model::KeyModel,
    /// Index (in `columns`, after the table's columns) of the `__op` pseudo column: a NOT NULL
    /// TINYINT, 0 to upsert the row's key and 1 to delete it. None: every row upserts (keyed
    /// tables) or appends (Duplicate).
    pub op_column: Option<usize>,
    /// How a row whose key exists changes the stored row (Primary tables: partialUpdate,
    /// mergeCondition); plain (the whole row, unconditionally) otherwise.
    pub update: UpdateRule,
}

impl LoadPlan {
    /// Resolves `job` against the table `table_name` with spec `table`.
    pub fn build(
        job: &RoutineLoadJobSpec,
        table_name: &str,
        table: &TableSpec,
    ) -> Result<Self, PlanError> {
        let table_columns = table
            .columns
            .iter()
            .map(|c| {
                c.parsed_type()
                    .map(|t| (c, t))
                    .map_err(|e| PlanError::BadColumnType {
                        column: c.name.clone(),
                        reason: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let by_name: HashMap<&str, usize> = table_columns
            .iter()
            .enumerate()
            .map(|(i, (c, _))| (c.name.as_str(), i))
            .collect();

        if let Some(key) = job
            .kafka
            .properties
            .keys()
            .find(|k| crate::job::secret_property(k))
        {
            return Err(PlanError::SecretInProperties { key: key.clone() });
        }
        let timezone: Tz = job
            .timezone
            .parse()
            .map_err(|_| PlanError::BadTimezone(job.timezone.clone()))?;
        let csv = csv_options(job)?;
        // avroPaths are jsonPaths over the decoded Avro record.
        let (paths_option, paths) = match job.format {
            DataFormat::Avro => {
                avro::check_registry(job)?;
                ("avroPaths", &job.avro_paths)
            }
            _ => ("jsonPaths", &job.json_paths),
        };
        let json_paths = match paths {
            Some(paths) => Some(
                paths
                    .iter()
                    .map(|p| JsonPath::parse(p))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|reason| PlanError::BadFormatOption {
                        option: paths_option,
                        reason,
                    })?,
            ),
            None => None,
        };
        let json = JsonOptions {
            root: job
                .json_root
                .as_deref()
                .map(JsonPath::parse)
                .transpose()
                .map_err(|reason| PlanError::BadFormatOption {
                    option: "jsonRoot",
                    reason,
                })?,
            strip_outer_array: job.strip_outer_array.unwrap_or(false),
        };

        // COLUMNS: source fields in order, and derived columns.
        let entries: Vec<ColumnsEntry> = if job.columns.is_empty() {
            // Without COLUMNS, every table column is a source field except those that a
            // metadata column fills.
            let metadata_names = metadata_columns(job, &BTreeSet::new())?;
            table_columns
                .iter()
                .filter(|(c, _)| !metadata_names.iter().any(|m| m.name == c.name))
                .map(|(c, _)| ColumnsEntry::Field(c.name.clone()))
                .collect()
        } else {
            job.columns
                .iter()
                .map(|e| parse_columns_entry(e))
                .collect::<Result<_, _>>()?
        };
        let mut seen = BTreeSet::new();
        for entry in &entries {
            let name = entry.name();
            if !seen.insert(name.to_string()) {
                return Err(PlanError::DuplicateColumn {
                    column: name.to_string(),
                });
            }
        }
        let mut entries = entries;
        let op_source = op_column::take_op_entry(&mut entries);
        let key_model = crate::table_model::validate(table).map_err(PlanError::KeyModel)?;
        op_column::check_model(&key_model, op_source.as_ref(), table_name)?;
        let field_names: Vec<&str> = entries
            .iter()
            .filter_map(|e| match e {
                ColumnsEntry::Field(n) => Some(n.as_str()),
                ColumnsEntry::Derived { .. } => None,
            })
            .collect();
        if let Some(paths) = &json_paths
            && paths.len() != field_names.len()
        {
            return Err(PlanError::BadFormatOption {
                option: paths_option,
                reason: format!(
                    "{} paths for {} source fields ({}): give one path per field",
                    paths.len(),
                    field_names.len(),
                    field_names.join(", ")
                ),
            });
        }
        let source_fields: Vec<SourceField> = field_names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let target = by_name.get(name).map(|&c| &table_columns[c]);
                SourceField {
                    name: name.to_string(),
                    column_type: target.map(|(_, t)| *t),
                    nullable: target.is_none_or(|(c, _)| c.nullable),
                    json_path: json_paths
                        .as_ref()
                        .map_or_else(|| JsonPath::member(name), |p| p[i].clone()),
                }
            })
            .collect();
        let metadata = metadata_columns(job, &seen)?;
        for m in &metadata {
            // A metadata column named like a table column loads into it.
            if by_name.contains_key(m.name.as_str()) {
                entries.push(ColumnsEntry::Derived {
                    name: m.name.clone(),
                    sql: format!("`{}`", m.name),
                });
            }
        }
        let source_schema: SchemaRef = Arc::new(Schema::new(
            source_fields
                .iter()
                .map(|f| {
                    let field = Field::new(
                        &f.name,
                        f.column_type.map_or(DataType::Utf8, |t| t.arrow_type()),
                        true,
                    );
                    if f.column_type == Some(ColumnType::Json) {
                        field.with_metadata(
                            [(
                                udf::JSON_EXTENSION.0.to_string(),
                                udf::JSON_EXTENSION.1.to_string(),
                            )]
                            .into(),
                        )
                    } else {
                        field
                    }
                })
                .chain(metadata.iter().map(|m| m.kind.field(&m.name)))
                .collect::<Vec<_>>(),
        ));

        let session = expression_session(timezone);
        let mut derived: HashMap<String, ColumnSource> = HashMap::new();
        for entry in &entries {
            let ColumnsEntry::Derived { name, sql } = entry else {
                continue;
            };
            let Some(&target) = by_name.get(name.as_str()) else {
                return Err(PlanError::UnknownTargetColumn {
                    column: name.clone(),
                    table: table_name.to_string(),
                });
            };
            let target_type = table_columns[target].1;
            let expr = compile(&session, sql, &source_schema).map_err(|e| match e {
                CompileError::UnknownColumn(unknown) => PlanError::UnknownExpressionColumn {
                    column: name.clone(),
                    unknown,
                    known: names(&source_schema),
                },
                CompileError::Invalid(reason) => PlanError::BadExpression {
                    column: name.clone(),
                    expr: sql.clone(),
                    reason,
                },
            })?;
            let produced =
                expr.data_type(&source_schema)
                    .map_err(|e| PlanError::BadExpression {
                        column: name.clone(),
                        expr: sql.clone(),
                        reason: e.to_string(),
                    })?;
            if !converts_to(&produced, &target_type) {
                return Err(PlanError::UnconvertibleType {
                    column: name.clone(),
                    produced: produced.to_string(),
                    column_type: target_type.to_string(),
                });
            }
            derived.insert(
                name.clone(),
                ColumnSource::Derived {
                    sql: sql.clone(),
                    expr,
                },
            );
        }

        let field_index: HashMap<&str, usize> = source_fields
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.as_str(), i))
            .collect();
        // Checked before the defaults: a partial update that does not load a key is refused
        // for that reason, not for the key's missing value.
        let update = update_rule::check(
            &key_model,
            table_name,
            &table_columns
                .iter()
                .map(|(c, t)| update_rule::LoadedColumn {
                    name: &c.name,
                    column_type: *t,
                    loaded: field_index.contains_key(c.name.as_str())
                        || derived.contains_key(&c.name),
                })
                .collect::<Vec<_>>(),
            job.partial_update,
            job.merge_condition.as_deref(),
        )?;
        let mut columns = Vec::with_capacity(table_columns.len());
        for (column, column_type) in &table_columns {
            let source = if let Some(&i) = field_index.get(column.name.as_str()) {
                ColumnSource::Field(i)
            } else if let Some(d) = derived.remove(&column.name) {
                d
            } else if let Some(default) = &column.default {
                check_default(&column.name, default, column_type)?;
                ColumnSource::Default(default.clone())
            } else if column.nullable {
                ColumnSource::Null
            } else if job.partial_update {
                return Err(PlanError::PartialUpdateWithoutDefault {
                    column: column.name.clone(),
                });
            } else {
                return Err(PlanError::MissingRequiredColumn {
                    column: column.name.clone(),
                });
            };
            columns.push(PlannedColumn {
                name: column.name.clone(),
                column_type: *column_type,
                nullable: column.nullable,
                source,
            });
        }
        let op_column = match &op_source {
            Some(op) => {
                columns.push(op_column::planned(&session, op, &source_schema)?);
                Some(columns.len() - 1)
            }
            None => None,
        };
        let table_schema: SchemaRef = Arc::new(Schema::new(
            columns
                .iter()
                .map(|c| c.column_type.arrow_field(&c.name, c.nullable))
                .collect::<Vec<_>>(),
        ));

        let mut where_fields: Vec<Field> = columns
            .iter()
            .map(|c| Field::new(&c.name, c.column_type.arrow_type(), true))
            .collect();
        where_fields.extend(
            source_fields
                .iter()
                .filter(|f| f.column_type.is_none())
                // The `__op` source field is the decoded `__op` column in WHERE; its text stays
                // in the row (the engine passes every placeholder) under another name.
                .map(|f| {
                    let name = if f.name == crate::table_model::OP_COLUMN {
                        op_column::OP_SOURCE_TEXT
                    } else {
                        f.name.as_str()
                    };
                    Field::new(name, DataType::Utf8, true)
                }),
        );
        let where_metadata: Vec<usize> = metadata
            .iter()
            .enumerate()
            .filter(|(_, m)| !by_name.contains_key(m.name.as_str()))
            .map(|(i, _)| i)
            .collect();
        where_fields.extend(
            where_metadata
                .iter()
                .map(|&i| metadata[i].kind.field(&metadata[i].name)),
        );
        let where_schema: SchemaRef = Arc::new(Schema::new(where_fields));
        let where_filter = match job.where_expr.as_deref().map(str::trim) {
            Some(sql) if !sql.is_empty() => {
                let expr = compile(&session, sql, &where_schema).map_err(|e| match e {
                    CompileError::UnknownColumn(unknown) => PlanError::WhereUnknownColumn {
                        unknown,
                        known: names(&where_schema),
                    },
                    CompileError::Invalid(reason) => PlanError::BadWhere {
                        expr: sql.to_string(),
                        reason,
                    },
                })?;
                match expr.data_type(&where_schema) {
                    Ok(DataType::Boolean) => Some(expr),
                    Ok(other) => {
                        return Err(PlanError::BadWhere {
                            expr: sql.to_string(),
                            reason: format!("it produces {other}, not a boolean"),
                        });
                    }
                    Err(e) => {
                        return Err(PlanError::BadWhere {
                            expr: sql.to_string(),
                            reason: e.to_string(),
                        });
                    }
                }
            }
            _ => None,
        };

        let partition_columns = table
            .partition_columns
            .iter()
            .map(|p| {
                by_name
                    .get(p.as_str())
                    .copied()
                    .ok_or_else(|| PlanError::BadPartition {
                        partition: p.clone(),
                        reason: format!(
                            "partition column '{p}' is not a column of table '{table_name}'"
                        ),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let allowed_partitions = if job.partitions.is_empty() {
            None
        } else {
            Some(
                job.partitions
                    .iter()
                    .map(|p| normalize_partition(p, &table.partition_columns, table_name))
                    .collect::<Result<BTreeSet<_>, _>>()?,
            )
        };

        Ok(LoadPlan {
            format: job.format,
            csv,
            json,
            source_fields,
            metadata,
            where_metadata,
            topic: job.kafka.topic.clone(),
            source_schema,
            columns,
            table_schema,
            where_filter,
            where_schema,
            strict_mode: job.strict_mode,
            timezone,
            partition_columns,
            allowed_partitions,
            key_model,
            op_column,
            update,
        })
    }
}

/// The metadata columns a job asks for, checked against its COLUMNS names.
fn metadata_columns(
    job: &RoutineLoadJobSpec,
    columns: &BTreeSet<String>,
) -> Result<Vec<MetadataColumn>, PlanError> {
    let Some(m) = &job.include_metadata else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (kind, name) in [
        (MetadataKind::Topic, &m.topic),
        (MetadataKind::Key, &m.key),
        (MetadataKind::Partition, &m.partition),
        (MetadataKind::Offset, &m.offset),
        (MetadataKind::TimestampMs, &m.timestamp_ms),
        (MetadataKind::Headers, &m.headers),
    ] {
        let Some(name) = name else { continue };
        let bad = |reason: String| PlanError::BadFormatOption {
            option: "includeMetadata",
            reason,
        };
        let name = unquote_identifier(name).ok_or_else(|| {
            bad(format!(
                "{} AS '{name}': the name must be an identifier",
                kind.starrocks_name()
            ))
        })?;
        if columns.contains(&name) {
            return Err(bad(format!(
                "{} AS {name}: '{name}' is also a COLUMNS entry; give the metadata column its own name",
                kind.starrocks_name()
            )));
        }
        if out.iter().any(|c: &MetadataColumn| c.name == name) {
            return Err(bad(format!("'{name}' names two metadata columns")));
        }
        out.push(MetadataColumn { kind, name });
    }
    Ok(out)
}

enum ColumnsEntry {
    Field(String),
    Derived { name: String, sql: String },
}

impl ColumnsEntry {
    fn name(&self) -> &str {
        match self {
            ColumnsEntry::Field(n) | ColumnsEntry::Derived { name: n, .. } => n,
        }
    }
}

fn unquote_identifier(text: &str) -> Option<String> {
    let t = text.trim();
    let t = t
        .strip_prefix('`')
        .and_then(|s| s.strip_suffix('`'))
        .unwrap_or(t);
    let mut chars = t.chars();
    let first = chars.next()?;
    ((first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_'))
    .then(|| t.to_string())
}

fn parse_columns_entry(entry: &str) -> Result<ColumnsEntry, PlanError> {
    let bad = || PlanError::BadColumnsEntry {
        entry: entry.to_string(),
    };
    // `name = expr`: the first '=' that is not part of '==', '<=', '>=' or '!='.
    let bytes = entry.as_bytes();
    let assign = (0..bytes.len()).find(|&i| {
        bytes[i] == b'='
            && bytes.get(i + 1) != Some(&b'=')
            && (i == 0 || !matches!(bytes[i - 1], b'<' | b'>' | b'!' | b'='))
    });
    match assign {
        None => unquote_identifier(entry)
            .map(ColumnsEntry::Field)
            .ok_or_else(bad),
        Some(i) => {
            let name = unquote_identifier(&entry[..i]).ok_or_else(bad)?;
            let sql = entry[i + 1..].trim();
            if sql.is_empty() {
                return Err(PlanError::BadExpression {
                    column: name,
                    expr: String::new(),
                    reason: "the expression is empty".into(),
                });
            }
            Ok(ColumnsEntry::Derived {
                name,
                sql: sql.to_string(),
            })
        }
    }
}

fn csv_options(job: &RoutineLoadJobSpec) -> Result<CsvOptions, PlanError> {
    let column_separator = unescape(
        job.column_separator
            .as_deref()
            .unwrap_or(DEFAULT_COLUMN_SEPARATOR),
    );
    if column_separator.is_empty() || column_separator.len() > 50 {
        return Err(PlanError::BadFormatOption {
            option: "columnSeparator",
            reason: "must be 1 to 50 bytes".into(),
        });
    }
    let row_delimiter = unescape(
        job.row_delimiter
            .as_deref()
            .unwrap_or(DEFAULT_ROW_DELIMITER),
    );
    if row_delimiter.is_empty() || row_delimiter.len() > 50 {
        return Err(PlanError::BadFormatOption {
            option: "rowDelimiter",
            reason: "must be 1 to 50 bytes".into(),
        });
    }
    let single_byte =
        |option: &'static str, value: &Option<String>| -> Result<Option<u8>, PlanError> {
            match value.as_deref().map(unescape) {
                None => Ok(None),
                Some(b) if b.len() == 1 => Ok(Some(b[0])),
                Some(_) => Err(PlanError::BadFormatOption {
                    option,
                    reason: "must be a single one-byte character".into(),
                }),
            }
        };
    Ok(CsvOptions {
        column_separator,
        row_delimiter,
        enclose: single_byte("enclose", &job.enclose)?,
        escape: single_byte("escape", &job.escape)?,
        trim_space: job.trim_space.unwrap_or(false),
    })
}

/// Separators may be written as `\t`, `\n`, `\\` or `\x01` (StarRocks accepts hex `\x`).
fn unescape(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b't' => {
                    out.push(b'\t');
                    i += 2;
                    continue;
                }
                b'n' => {
                    out.push(b'\n');
                    i += 2;
                    continue;
                }
                b'r' => {
                    out.push(b'\r');
                    i += 2;
                    continue;
                }
                b'\\' => {
                    out.push(b'\\');
                    i += 2;
                    continue;
                }
                b'x' => {
                    if let Some(h) = text
                        .get(i + 2..i + 4)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                    {
                        out.push(h);
                        i += 4;
                        continue;
                    }
                }
                _ => {}
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

fn expression_session(tz: Tz) -> SessionContext {
    let mut config = SessionConfig::new();
    // Column names are case sensitive, as in the Table spec.
    config.options_mut().sql_parser.enable_ident_normalization = false;
    let session = SessionContext::new_with_config(config);
    for udf in functions::starrocks_functions(tz)
        .into_iter()
        .chain(time_functions::time_functions(tz))
        .chain(json_functions::json_functions())
        .chain(string_functions::string_functions())
    {
        session.register_udf(udf);
    }
    session
}

/// Why a COLUMNS or WHERE expression can't be planned whatever the table (a syntax error, a
/// BITMAP/HLL function, a StarRocks function this build lacks, an unknown function); None when
/// it may plan. For tools that see a statement without its table.
pub fn expression_problem(sql: &str) -> Option<String> {
    let session = expression_session(Tz::UTC);
    let state = session.state();
    let known = |name: &str| {
        state.scalar_functions().contains_key(name)
            || state.aggregate_functions().contains_key(name)
            || state.window_functions().contains_key(name)
    };
    dialect::to_datafusion_sql(sql, &known).err()
}

enum CompileError {
    UnknownColumn(String),
    Invalid(String),
}

fn compile(
    session: &SessionContext,
    sql: &str,
    schema: &SchemaRef,
) -> Result<Arc<dyn PhysicalExpr>, CompileError> {
    let df_schema = DFSchema::try_from(schema.as_ref().clone())
        .map_err(|e| CompileError::Invalid(e.to_string()))?;
    let state = session.state();
    let known = |name: &str| {
        state.scalar_functions().contains_key(name)
            || state.aggregate_functions().contains_key(name)
            || state.window_functions().contains_key(name)
    };
    let sql = dialect::to_datafusion_sql(sql, &known).map_err(CompileError::Invalid)?;
    let expr = session
        .parse_sql_expr(&sql, &df_schema)
        .map_err(|e| classify(e.to_string(), schema))?;
    let expr =
        starrocks_arithmetic(expr, &df_schema).map_err(|e| CompileError::Invalid(e.to_string()))?;
    for column in expr.column_refs() {
        if schema.field_with_name(&column.name).is_err() {
            return Err(CompileError::UnknownColumn(column.name.clone()));
        }
    }
    // Coerce and simplify first: some built-ins (ifnull, nvl, coalesce) only have a physical
    // form after simplification rewrites them to CASE.
    let df_schema = Arc::new(df_schema);
    let simplifier = ExprSimplifier::new(
        SimplifyContext::builder()
            .with_schema(Arc::clone(&df_schema))
            .build(),
    );
    let expr = simplifier
        .coerce(expr, &df_schema)
        .and_then(|e| simplifier.simplify(e))
        .map_err(|e| CompileError::Invalid(e.to_string()))?;
    session
        .create_physical_expr(expr, &df_schema)
        .map_err(|e| CompileError::Invalid(e.to_string()))
}

/// StarRocks arithmetic: `/` divides as DOUBLE (DECIMAL for decimals) and, like `%`, gives
/// NULL for a zero divisor instead of failing the batch; text operands are read as numbers.
fn starrocks_arithmetic(
    expr: deltalake::datafusion::logical_expr::Expr,
    schema: &DFSchema,
) -> deltalake::datafusion::common::Result<deltalake::datafusion::logical_expr::Expr> {
    use deltalake::datafusion::common::ScalarValue;
    use deltalake::datafusion::common::tree_node::{Transformed, TreeNode};
    use deltalake::datafusion::functions::core::expr_fn::nullif;
    use deltalake::datafusion::logical_expr::{
        BinaryExpr, Expr, ExprSchemable, Operator, cast, lit,
    };
    expr.transform_up(|e| {
        let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &e else {
            return Ok(Transformed::no(e));
        };
        if !matches!(op, Operator::Divide | Operator::Modulo) {
            return Ok(Transformed::no(e));
        }
        let (lt, rt) = (left.get_type(schema)?, right.get_type(schema)?);
        let decimal =
            |t: &DataType| matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..));
        let as_double = |x: &Expr, t: &DataType| {
            if t == &DataType::Float64 {
                x.clone()
            } else {
                cast(x.clone(), DataType::Float64)
            }
        };
        let (l, r, zero) = if decimal(&lt)
            || decimal(&rt)
            || (*op == Operator::Modulo && lt.is_integer() && rt.is_integer())
        {
            let zero = cast(lit(0i64), rt.clone());
            ((**left).clone(), (**right).clone(), zero)
        } else {
            (
                as_double(left, &lt),
                as_double(right, &rt),
                lit(ScalarValue::Float64(Some(0.0))),
            )
        };
        Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
            Box::new(l),
            *op,
            Box::new(nullif(r, zero)),
        ))))
    })
    .map(|t| t.data)
}

/// DataFusion reports unknown columns as schema errors; give them our clearer message.
fn classify(message: String, schema: &SchemaRef) -> CompileError {
    if let Some(rest) = message.split("No field named ").nth(1) {
        let name: String = rest
            .trim_start_matches(['"', '`'])
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && schema.field_with_name(&name).is_err() {
            return CompileError::UnknownColumn(name);
        }
    }
    CompileError::Invalid(message)
}

fn names(schema: &SchemaRef) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a derived value of type `produced` can load into a column of `target`: text is
/// parsed with the load rules, everything else goes through Arrow's cast.
fn converts_to(produced: &DataType, target: &ColumnType) -> bool {
    matches!(
        produced,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
    ) || can_cast_types(produced, &target.arrow_type())
}

fn check_default(column: &str, default: &str, column_type: &ColumnType) -> Result<(), PlanError> {
    let bad = || PlanError::BadDefault {
        column: column.to_string(),
        value: default.to_string(),
        column_type: column_type.to_string(),
    };
    parse_text(default.as_bytes(), column_type).map_err(|_| bad())
}

/// Checks that `text` is a valid value of `column_type` with the load rules.
pub fn parse_text(text: &[u8], column_type: &ColumnType) -> Result<(), ConvertError> {
    match column_type {
        ColumnType::Boolean => value::parse_bool(text).map(drop),
        ColumnType::TinyInt => value::parse_int(text, i8::MIN as i128, i8::MAX as i128).map(drop),
        ColumnType::SmallInt => {
            value::parse_int(text, i16::MIN as i128, i16::MAX as i128).map(drop)
        }
        ColumnType::Int => value::parse_int(text, i32::MIN as i128, i32::MAX as i128).map(drop),
        ColumnType::BigInt => value::parse_int(text, i64::MIN as i128, i64::MAX as i128).map(drop),
        ColumnType::LargeInt => value::parse_decimal(text, 38, 0).map(drop),
        ColumnType::Float | ColumnType::Double => value::parse_f64(text).map(drop),
        ColumnType::Decimal { precision, scale } => {
            value::parse_decimal(text, *precision, *scale).map(drop)
        }
        ColumnType::Date => value::parse_date(text).map(drop),
        ColumnType::DateTime => value::parse_datetime(text).map(drop),
        ColumnType::Json => serde_json::from_slice::<serde_json::Value>(text)
            .map(drop)
            .map_err(|_| ConvertError::Invalid),
        ColumnType::Char(_) | ColumnType::Varchar(_) | ColumnType::String => {
            match column_type.max_length() {
                Some(max) if text.len() > max as usize => Err(ConvertError::TooLong),
                _ => std::str::from_utf8(text)
                    .map(drop)
                    .map_err(|_| ConvertError::Invalid),
            }
        }
    }
}

/// Normalizes a target partition `col=value[/col2=value]` against the table's partition columns.
fn normalize_partition(
    partition: &str,
    partition_columns: &[String],
    table_name: &str,
) -> Result<String, PlanError> {
    let bad = |reason: String| PlanError::BadPartition {
        partition: partition.to_string(),
        reason,
    };
    if partition_columns.is_empty() {
        return Err(bad(format!("table '{table_name}' is not partitioned")));
    }
    let parts: Vec<(&str, &str)> = partition
        .split('/')
        .map(|kv| kv.split_once('=').map(|(k, v)| (k.trim(), v.trim())))
        .collect::<Option<_>>()
        .ok_or_else(|| bad("expected col=value, with '/' between columns".into()))?;
    let keys: Vec<&str> = parts.iter().map(|(k, _)| *k).collect();
    if keys
        != partition_columns
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    {
        return Err(bad(format!(
            "name the partition columns in table order: {}",
            partition_columns.join(", ")
        )));
    }
    Ok(partition_path(parts.iter().map(|(k, v)| (*k, Some(*v)))))
}

/// The partition path of a row, `col=value/col2=value`, NULL written as Hive's default partition.
pub fn partition_path<'a>(values: impl Iterator<Item = (&'a str, Option<&'a str>)>) -> String {
    values
        .map(|(k, v)| format!("{k}={}", v.unwrap_or("__HIVE_DEFAULT_PARTITION__")))
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests;
