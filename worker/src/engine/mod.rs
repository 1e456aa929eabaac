//! The load engine: Kafka message payloads in, an Arrow batch typed to the table schema out,
//! plus error rows and counters (StarRocks: the BE's scan, convert, filter steps of a load).
//!
//! A batch goes through four steps:
//! 1. decode each message (CSV, JSON or Avro) into source fields and convert each field to its
//!    column's type; a field that fails makes an error row (or NULL without strict mode);
//! 2. evaluate derived columns (DataFusion physical expressions) and convert their results;
//! 3. apply WHERE: rows it rejects are unselected, not errors;
//! 4. check target partitions.

mod avro;
mod column_builder;
mod csv;
mod csv_columns;
pub mod error_row;
mod json;
mod parallel;

use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, new_null_array};
use deltalake::arrow::compute::kernels::cast::{CastOptions, cast_with_options};
use deltalake::arrow::compute::{filter, filter_record_batch};
use deltalake::arrow::datatypes::DataType;
use deltalake::arrow::error::ArrowError;
use deltalake::datafusion::physical_expr::PhysicalExpr;
use routine_load_api::ColumnType;
use routine_load_api::job::DataFormat;
use routine_load_api::load_plan::{ColumnSource, LoadPlan, MetadataKind, partition_path};
use routine_load_api::value::ConvertError;

pub use avro::{RegisteredSchema, SchemaSource};
use column_builder::ColumnBuilder;
use csv::CsvSplitter;
pub use error_row::{ErrorRow, reason};
use error_row::{conversion_reason, loggable};
use json::JsonDecoder;
pub use parallel::{LoadedParts, decoding_engines, load_in_parallel};

/// One Kafka message to load.
#[derive(Debug, Clone, Copy, Default)]
pub struct SourceMessage<'a> {
    pub partition: i32,
    pub offset: i64,
    pub payload: &'a [u8],
    /// The record key (for a KEY metadata column).
    pub key: Option<&'a [u8]>,
    /// The record timestamp, milliseconds since the Unix epoch (TIMESTAMP_MS).
    pub timestamp_ms: Option<i64>,
    /// The headers as a JSON object of text values (HEADERS); filled only when the plan has a
    /// HEADERS column.
    pub headers: Option<&'a str>,
}

/// The headers of a record as the JSON object a HEADERS column holds: each header's value as
/// text (lossy UTF-8), NULL for a header without a value; a repeated header keeps its last value.
pub fn headers_json<'h>(headers: impl Iterator<Item = (&'h str, Option<&'h [u8]>)>) -> String {
    let object: serde_json::Map<String, serde_json::Value> = headers
        .map(|(k, v)| {
            (
                k.to_string(),
                v.map_or(serde_json::Value::Null, |v| {
                    serde_json::Value::String(String::from_utf8_lossy(v).into_owned())
                }),
            )
        })
        .collect();
    serde_json::Value::Object(object).to_string()
}

/// The headers of a Kafka record as [`headers_json`], None when it has none.
pub fn record_headers<M: rdkafka::message::Message>(message: &M) -> Option<String> {
    use rdkafka::message::Headers;
    let headers = message.headers()?;
    Some(headers_json(headers.iter().map(|h| (h.key, h.value))))
}

/// The metadata column `kind` for the messages of `rows`.
fn metadata_array(
    kind: MetadataKind,
    topic: &str,
    messages: &[SourceMessage<'_>],
    rows: &[RowOrigin],
) -> ArrayRef {
    use deltalake::arrow::array::{Int32Array, Int64Array, StringArray};
    let message = |o: &RowOrigin| &messages[o.message as usize];
    match kind {
        MetadataKind::Topic => Arc::new(StringArray::from(vec![topic; rows.len()])),
        MetadataKind::Key => Arc::new(
            rows.iter()
                .map(|o| message(o).key.map(String::from_utf8_lossy))
                .collect::<StringArray>(),
        ),
        MetadataKind::Headers => Arc::new(
            rows.iter()
                .map(|o| message(o).headers)
                .collect::<StringArray>(),
        ),
        MetadataKind::Partition => Arc::new(
            rows.iter()
                .map(|o| Some(message(o).partition))
                .collect::<Int32Array>(),
        ),
        MetadataKind::Offset => Arc::new(
            rows.iter()
                .map(|o| Some(message(o).offset))
                .collect::<Int64Array>(),
        ),
        MetadataKind::TimestampMs => Arc::new(
            rows.iter()
                .map(|o| message(o).timestamp_ms)
                .collect::<Int64Array>(),
        ),
    }
}

/// Row counts of one batch (StarRocks' load statistics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchCounters {
    /// Rows received, including error and unselected rows.
    pub total_rows: u64,
    /// Rows in the output batch.
    pub loaded_rows: u64,
    /// Rows filtered for data quality.
    pub error_rows: u64,
    /// Rows rejected by WHERE.
    pub unselected_rows: u64,
    /// Payload bytes received.
    pub received_bytes: u64,
}

/// A committed batch as task counters: its rows and bytes, one committed batch.
impl From<BatchCounters> for routine_load_api::task::TaskCounters {
    fn from(c: BatchCounters) -> Self {
        Self {
            received_bytes: c.received_bytes as i64,
            total_rows: c.total_rows as i64,
            loaded_rows: c.loaded_rows as i64,
            error_rows: c.error_rows as i64,
            unselected_rows: c.unselected_rows as i64,
            committed_batches: 1,
            ..Self::default()
        }
    }
}

impl BatchCounters {
    /// Adds another batch's counts.
    pub fn add(&mut self, other: &BatchCounters) {
        self.total_rows += other.total_rows;
        self.loaded_rows += other.loaded_rows;
        self.error_rows += other.error_rows;
        self.unselected_rows += other.unselected_rows;
        self.received_bytes += other.received_bytes;
    }
}

/// The result of loading a set of messages.
#[derive(Debug)]
pub struct LoadedBatch {
    /// Rows to write, in the table's schema.
    pub batch: RecordBatch,
    /// Rows not loaded, with reasons.
    pub errors: Vec<ErrorRow>,
    pub counters: BatchCounters,
}

/// Why a whole batch failed (never a bad message: those are error rows).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("assembling the {step} batch: {source}")]
    Arrow {
        step: &'static str,
        source: ArrowError,
    },
    /// The registry could not be asked for a writer's schema: the batch is loaded again later.
    #[error("{0}")]
    SchemaRegistry(String),
}

/// Turns messages into typed batches for one load plan.
pub struct LoadEngine {
    plan: Arc<LoadPlan>,
    csv: CsvSplitter,
    json: JsonDecoder,
    avro: avro::AvroDecoder,
    /// Default values, parsed once, as one-row arrays by column index.
    defaults: Vec<Option<ArrayRef>>,
    /// Text bytes per row of each source field in the last batch (to size the next one's).
    text_bytes_per_row: Vec<usize>,
}

/// Where a row came from, to log it if it fails.
#[derive(Clone, Copy)]
struct RowOrigin {
    message: u32,
}

/// Rows found bad by a step, with the first reason of each.
struct RowErrors {
    bad: Vec<bool>,
    count: usize,
}

impl RowErrors {
    fn new(rows: usize) -> Self {
        Self {
            bad: vec![false; rows],
            count: 0,
        }
    }

    fn mark(&mut self, row: usize) -> bool {
        if self.bad[row] {
            return false;
        }
        self.bad[row] = true;
        self.count += 1;
        true
    }

    fn keep_mask(&self) -> BooleanArray {
        self.bad.iter().map(|b| Some(!b)).collect()
    }
}

impl LoadEngine {
    /// An engine for `plan`.
    pub fn new(plan: Arc<LoadPlan>) -> Self {
        let defaults = plan
            .columns
            .iter()
            .map(|c| match &c.source {
                ColumnSource::Default(text) => {
                    let mut b = ColumnBuilder::new(Some(c.column_type), 1);
                    // The plan checked the default converts.
                    b.append_text(text.as_bytes()).ok()?;
                    Some(b.finish())
                }
                _ => None,
            })
            .collect();
        Self {
            csv: CsvSplitter::new(&plan.csv),
            json: JsonDecoder::new(&plan),
            avro: avro::AvroDecoder::new(&plan),
            defaults,
            text_bytes_per_row: vec![16; plan.source_fields.len()],
            plan,
        }
    }

    /// Reads the writer schemas of `format: avro` messages from `source`.
    pub fn set_schema_source(&mut self, source: Arc<dyn SchemaSource>) {
        self.avro.set_source(source);
    }

    /// The plan this engine runs.
    pub fn plan(&self) -> &LoadPlan {
        &self.plan
    }

    /// Whether the plan reads record headers (so the caller fills `SourceMessage::headers`).
    pub fn wants_headers(&self) -> bool {
        self.plan
            .metadata
            .iter()
            .any(|m| m.kind == MetadataKind::Headers)
    }

    /// Whether the plan reads record timestamps (so the caller fills
    /// `SourceMessage::timestamp_ms`; reading one costs a call into librdkafka).
    pub fn wants_timestamps(&self) -> bool {
        self.plan
            .metadata
            .iter()
            .any(|m| m.kind == MetadataKind::TimestampMs)
    }

    /// Loads `messages` into one batch.
    pub fn load(&mut self, messages: &[SourceMessage<'_>]) -> Result<LoadedBatch, EngineError> {
        let plan = Arc::clone(&self.plan);
        let fields = &plan.source_fields;
        let rows_guess = messages.len();
        let mut builders: Vec<ColumnBuilder> = fields
            .iter()
            .zip(&self.text_bytes_per_row)
            .map(|(f, per_row)| {
                // An eighth more than the last batch's rows needed.
                let bytes = rows_guess * per_row + rows_guess * per_row / 8;
                ColumnBuilder::with_text_bytes(f.column_type, rows_guess, bytes)
            })
            .collect();
        let mut origins: Vec<RowOrigin> = Vec::with_capacity(messages.len());
        let mut errors: Vec<ErrorRow> = Vec::new();
        let mut bad_rows: Vec<bool> = Vec::with_capacity(messages.len());
        let mut counters = BatchCounters::default();

        // Step 1: decode and convert source fields.
        self.avro.start_batch();
        let mut json_rows: Vec<json::RowFields<'_>> = Vec::new();
        let per_message = match plan.format {
            DataFormat::Csv => {
                self.convert_csv(
                    messages,
                    &mut builders,
                    &mut errors,
                    &mut bad_rows,
                    &mut origins,
                );
                &[][..]
            }
            DataFormat::Avro | DataFormat::Json => messages,
        };
        counters.received_bytes = messages.iter().map(|m| m.payload.len() as u64).sum();
        for (m, message) in per_message.iter().enumerate() {
            match plan.format {
                DataFormat::Csv => unreachable!("CSV converts a chunk of messages at a time"),
                DataFormat::Avro => {
                    let decoded = self
                        .avro
                        .decode(message.payload)
                        .map_err(|e| EngineError::SchemaRegistry(e.0))?;
                    let failure = match decoded {
                        Ok(values) => {
                            self.convert_row(&mut builders, values.iter().map(|v| v.as_deref()))
                        }
                        Err(avro::Undecodable(why)) => Some(FieldFailure {
                            reason: why,
                            column: None,
                            value: None,
                            at: 0,
                        }),
                    };
                    self.finish_row(&mut builders, failure, message, &mut errors, &mut bad_rows);
                    origins.push(RowOrigin { message: m as u32 });
                }
                DataFormat::Json => match self.json.decode(message.payload, &mut json_rows) {
                    Err(why) => {
                        for b in builders.iter_mut() {
                            b.append_null();
                        }
                        errors.push(ErrorRow {
                            partition: message.partition,
                            offset: message.offset,
                            reason: why,
                            column: None,
                            value: None,
                            row: loggable(message.payload),
                        });
                        bad_rows.push(true);
                        origins.push(RowOrigin { message: m as u32 });
                    }
                    Ok(()) => {
                        for row in json_rows.drain(..) {
                            let failure = match row {
                                json::RowFields::Fields(values) => self.convert_row(
                                    &mut builders,
                                    values.iter().map(|v| v.as_deref()),
                                ),
                                json::RowFields::Invalid { reason, column } => Some(FieldFailure {
                                    reason: reason.to_string(),
                                    column: column.map(|c| fields[c].name.clone()),
                                    value: None,
                                    at: 0,
                                }),
                            };
                            self.finish_row(
                                &mut builders,
                                failure,
                                message,
                                &mut errors,
                                &mut bad_rows,
                            );
                            origins.push(RowOrigin { message: m as u32 });
                        }
                    }
                },
            }
        }
        counters.total_rows = bad_rows.len() as u64;
        if !bad_rows.is_empty() {
            for (per_row, b) in self.text_bytes_per_row.iter_mut().zip(&builders) {
                *per_row = b.text_bytes().div_ceil(bad_rows.len());
            }
        }
        let mut source_arrays: Vec<ArrayRef> = builders.iter_mut().map(|b| b.finish()).collect();
        let first_errors = errors.len();
        if first_errors > 0 {
            let keep: BooleanArray = bad_rows.iter().map(|b| Some(!b)).collect();
            source_arrays = source_arrays
                .iter()
                .map(|a| filter(a, &keep))
                .collect::<Result<_, _>>()
                .map_err(|source| EngineError::Arrow {
                    step: "source",
                    source,
                })?;
            origins = origins
                .iter()
                .zip(&bad_rows)
                .filter(|(_, bad)| !**bad)
                .map(|(o, _)| *o)
                .collect();
        }
        let rows = origins.len();
        let metadata_arrays: Vec<ArrayRef> = plan
            .metadata
            .iter()
            .map(|m| metadata_array(m.kind, &plan.topic, messages, &origins))
            .collect();
        source_arrays.extend(metadata_arrays.iter().cloned());
        let source_batch = RecordBatch::try_new(plan.source_schema.clone(), source_arrays)
            .map_err(|source| EngineError::Arrow {
                step: "source",
                source,
            })?;

        // Step 2: table columns, from fields, derived expressions, defaults or NULL.
        let mut step_errors = RowErrors::new(rows);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(plan.columns.len());
        for (c, column) in plan.columns.iter().enumerate() {
            let array = match &column.source {
                ColumnSource::Field(i) => source_batch.column(*i).clone(),
                ColumnSource::Default(_) => {
                    let one = self.defaults[c].as_ref().expect("default parsed at start");
                    repeat(one, rows)
                }
                ColumnSource::Null => new_null_array(&column.column_type.arrow_type(), rows),
                ColumnSource::Derived { expr, .. } => {
                    let produced = evaluate(expr, &source_batch, |row, why| {
                        if step_errors.mark(row) {
                            errors.push(self.error_for(
                                messages,
                                origins[row],
                                why,
                                Some(&column.name),
                                None,
                            ));
                        }
                    });
                    self.convert_derived(
                        &produced,
                        column.column_type,
                        column.nullable,
                        |row, why, value| {
                            if step_errors.mark(row) {
                                errors.push(self.error_for(
                                    messages,
                                    origins[row],
                                    why,
                                    Some(&column.name),
                                    value,
                                ));
                            }
                        },
                    )
                }
            };
            columns.push(array);
        }
        let mut table_batch = RecordBatch::try_new(plan.table_schema.clone(), columns.clone())
            .map_err(|source| EngineError::Arrow {
                step: "table",
                source,
            });
        // A NOT NULL column may hold NULLs here only in rows already marked bad, which the
        // filter below removes; build the batch after that filter in that case.
        let placeholders: Vec<ArrayRef> = plan
            .source_fields
            .iter()
            .enumerate()
            .filter(|(_, f)| f.column_type.is_none())
            .map(|(i, _)| source_batch.column(i).clone())
            .collect();
        let mut where_inputs = columns;
        where_inputs.extend(placeholders);
        where_inputs.extend(
            plan.where_metadata
                .iter()
                .map(|&i| metadata_arrays[i].clone()),
        );
        if step_errors.count > 0 {
            let keep = step_errors.keep_mask();
            where_inputs = where_inputs
                .iter()
                .map(|a| filter(a, &keep))
                .collect::<Result<_, _>>()
                .map_err(|source| EngineError::Arrow {
                    step: "derived",
                    source,
                })?;
            origins = origins
                .iter()
                .zip(&step_errors.bad)
                .filter(|(_, bad)| !**bad)
                .map(|(o, _)| *o)
                .collect();
            table_batch = RecordBatch::try_new(
                plan.table_schema.clone(),
                where_inputs[..plan.columns.len()].to_vec(),
            )
            .map_err(|source| EngineError::Arrow {
                step: "table",
                source,
            });
        }
        let mut table_batch = table_batch?;

        // Step 3: WHERE.
        if let Some(filter_expr) = &plan.where_filter {
            let where_batch = RecordBatch::try_new(plan.where_schema.clone(), where_inputs)
                .map_err(|source| EngineError::Arrow {
                    step: "where",
                    source,
                })?;
            let mut failed = RowErrors::new(where_batch.num_rows());
            let selected = evaluate(filter_expr, &where_batch, |row, why| {
                if failed.mark(row) {
                    errors.push(self.error_for(messages, origins[row], why, None, None));
                }
            });
            let selected = selected
                .as_any()
                .downcast_ref::<BooleanArray>()
                .cloned()
                .unwrap_or_else(|| BooleanArray::from(vec![false; where_batch.num_rows()]));
            // NULL or false: not selected; rows whose WHERE failed are errors, not unselected.
            let keep: BooleanArray = (0..selected.len())
                .map(|i| Some(!failed.bad[i] && selected.is_valid(i) && selected.value(i)))
                .collect();
            counters.unselected_rows = (selected.len() - failed.count - keep.true_count()) as u64;
            table_batch =
                filter_record_batch(&table_batch, &keep).map_err(|source| EngineError::Arrow {
                    step: "where",
                    source,
                })?;
            origins = origins
                .iter()
                .zip(keep.iter())
                .filter(|(_, k)| k == &Some(true))
                .map(|(o, _)| *o)
                .collect();
        }

        // Step 4: target partitions.
        if let Some(allowed) = &plan.allowed_partitions {
            let values: Vec<ArrayRef> = plan
                .partition_columns
                .iter()
                .map(|&c| deltalake::arrow::compute::cast(table_batch.column(c), &DataType::Utf8))
                .collect::<Result<_, _>>()
                .map_err(|source| EngineError::Arrow {
                    step: "partition",
                    source,
                })?;
            let mut outside = RowErrors::new(table_batch.num_rows());
            for (row, origin) in origins.iter().enumerate() {
                let path =
                    partition_path(plan.partition_columns.iter().zip(&values).map(|(&c, v)| {
                        let v = v
                            .as_any()
                            .downcast_ref::<deltalake::arrow::array::StringArray>()
                            .expect("cast to Utf8");
                        (
                            plan.columns[c].name.as_str(),
                            v.is_valid(row).then(|| v.value(row)),
                        )
                    }));
                if !allowed.contains(&path) && outside.mark(row) {
                    errors.push(self.error_for(
                        messages,
                        *origin,
                        reason::NO_PARTITION.to_string(),
                        None,
                        Some(path),
                    ));
                }
            }
            if outside.count > 0 {
                table_batch =
                    filter_record_batch(&table_batch, &outside.keep_mask()).map_err(|source| {
                        EngineError::Arrow {
                            step: "partition",
                            source,
                        }
                    })?;
            }
        }

        counters.error_rows = errors.len() as u64;
        counters.loaded_rows = table_batch.num_rows() as u64;
        Ok(LoadedBatch {
            batch: table_batch,
            errors,
            counters,
        })
    }

    /// Converts the fields of one row into the builders. On failure the failing field and the
    /// ones after it are not appended; `finish_row` pads them.
    #[inline]
    fn convert_row<'f>(
        &self,
        builders: &mut [ColumnBuilder],
        values: impl Iterator<Item = Option<&'f [u8]>>,
    ) -> Option<FieldFailure> {
        let fields = &self.plan.source_fields;
        for (i, value) in values.enumerate() {
            let builder = &mut builders[i];
            let text = match value {
                Some(b"\\N") | None => {
                    if fields[i].nullable {
                        builder.append_null();
                        continue;
                    }
                    return Some(self.null_failure(i));
                }
                Some(text) => text,
            };
            if let Err(err) = builder.append_text(text) {
                match self.conversion_failure(i, text, err) {
                    None => builder.append_null(),
                    failure => return failure,
                }
            }
        }
        None
    }

    /// The failure of source field `i`, not nullable, holding NULL.
    fn null_failure(&self, i: usize) -> FieldFailure {
        FieldFailure {
            reason: reason::NULL_IN_NOT_NULL.to_string(),
            column: Some(self.plan.source_fields[i].name.clone()),
            value: None,
            at: i,
        }
    }

    /// What `text` of source field `i`, which failed to convert with `err`, makes of its row:
    /// None loads the value as NULL.
    fn conversion_failure(&self, i: usize, text: &[u8], err: ConvertError) -> Option<FieldFailure> {
        let field = &self.plan.source_fields[i];
        let column_type = field.column_type.unwrap_or(ColumnType::String);
        // Without strict mode, a value that fails conversion loads as NULL where the column
        // allows it; text that is too long or not UTF-8 is always an error.
        if !self.plan.strict_mode && field.nullable && !is_text(&column_type) {
            return None;
        }
        let reason = if !self.plan.strict_mode
            && !field.nullable
            && err == ConvertError::Invalid
            && !is_text(&column_type)
        {
            reason::NULL_IN_NOT_NULL.to_string()
        } else {
            conversion_reason(err, &column_type, self.plan.format)
        };
        Some(FieldFailure {
            reason,
            column: Some(field.name.clone()),
            value: Some(loggable(text)),
            at: i,
        })
    }

    /// Pads the builders of a failed row with NULLs and records the error row.
    fn finish_row(
        &self,
        builders: &mut [ColumnBuilder],
        failure: Option<FieldFailure>,
        message: &SourceMessage<'_>,
        errors: &mut Vec<ErrorRow>,
        bad_rows: &mut Vec<bool>,
    ) {
        if let Some(failure) = &failure {
            for b in &mut builders[failure.at..] {
                b.append_null();
            }
        }
        record_row(failure, message, errors, bad_rows);
    }

    fn error_for(
        &self,
        messages: &[SourceMessage<'_>],
        origin: RowOrigin,
        reason: String,
        column: Option<&str>,
        value: Option<String>,
    ) -> ErrorRow {
        let message = &messages[origin.message as usize];
        ErrorRow {
            partition: message.partition,
            offset: message.offset,
            reason,
            column: column.map(str::to_string),
            value,
            row: loggable(message.payload),
        }
    }

    /// Converts a derived column's values to the column type. Text goes through the load rules;
    /// other types through Arrow's cast, where a non-null value that becomes NULL failed.
    fn convert_derived(
        &self,
        produced: &ArrayRef,
        column_type: ColumnType,
        nullable: bool,
        mut fail: impl FnMut(usize, String, Option<String>),
    ) -> ArrayRef {
        let target = column_type.arrow_type();
        let strict = self.plan.strict_mode;
        let text = match produced.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                deltalake::arrow::compute::cast(produced, &DataType::Utf8).ok()
            }
            _ => None,
        };
        if let Some(text) = text {
            let text = text
                .as_any()
                .downcast_ref::<deltalake::arrow::array::StringArray>()
                .expect("cast to Utf8");
            let mut builder = ColumnBuilder::new(Some(column_type), text.len());
            for row in 0..text.len() {
                if text.is_null(row) {
                    if !nullable {
                        fail(row, reason::NULL_IN_NOT_NULL.to_string(), None);
                    }
                    builder.append_null();
                    continue;
                }
                let value = text.value(row).as_bytes();
                if let Err(err) = builder.append_text(value) {
                    builder.append_null();
                    let always = is_text(&column_type);
                    if strict || always || !nullable {
                        fail(
                            row,
                            conversion_reason(err, &column_type, self.plan.format),
                            Some(loggable(value)),
                        );
                    }
                }
            }
            return builder.finish();
        }
        let options = CastOptions {
            safe: true,
            ..Default::default()
        };
        let cast = if produced.data_type() == &target {
            Ok(produced.clone())
        } else {
            cast_with_options(produced, &target, &options)
        };
        let cast = match cast {
            Ok(a) => a,
            Err(e) => {
                for row in 0..produced.len() {
                    fail(row, format!("cast to {column_type} failed: {e}"), None);
                }
                return new_null_array(&target, produced.len());
            }
        };
        for row in 0..cast.len() {
            let became_null = cast.is_null(row) && produced.is_valid(row);
            if became_null && (strict || !nullable) {
                let value =
                    deltalake::arrow::util::display::array_value_to_string(produced, row).ok();
                fail(
                    row,
                    conversion_reason(ConvertError::Invalid, &column_type, self.plan.format),
                    value,
                );
            } else if cast.is_null(row) && !nullable {
                fail(row, reason::NULL_IN_NOT_NULL.to_string(), None);
            }
        }
        cast
    }
}

/// CHAR, VARCHAR and STRING: their failures (too long, not UTF-8) can't become NULL.
/// Records whether a converted row failed, with its error row if it did.
fn record_row(
    failure: Option<FieldFailure>,
    message: &SourceMessage<'_>,
    errors: &mut Vec<ErrorRow>,
    bad_rows: &mut Vec<bool>,
) {
    match failure {
        None => bad_rows.push(false),
        Some(failure) => {
            errors.push(ErrorRow {
                partition: message.partition,
                offset: message.offset,
                reason: failure.reason,
                column: failure.column,
                value: failure.value,
                row: loggable(message.payload),
            });
            bad_rows.push(true);
        }
    }
}

fn is_text(column_type: &ColumnType) -> bool {
    column_type.is_string() && *column_type != ColumnType::Json
}

/// The failure of one field of a row.
struct FieldFailure {
    reason: String,
    column: Option<String>,
    value: Option<String>,
    /// Index of the first field not appended.
    at: usize,
}

impl FieldFailure {
    fn whole_row(reason: &str) -> Self {
        Self {
            reason: reason.to_string(),
            column: None,
            value: None,
            at: 0,
        }
    }
}

/// Evaluates `expr` over `batch`. If the batch fails as a whole (say a division by zero in one
/// row), evaluates row by row so only the failing rows become error rows.
fn evaluate(
    expr: &Arc<dyn PhysicalExpr>,
    batch: &RecordBatch,
    mut fail: impl FnMut(usize, String),
) -> ArrayRef {
    let rows = batch.num_rows();
    match expr.evaluate(batch).and_then(|v| v.into_array(rows)) {
        Ok(array) => array,
        Err(_) => {
            let data_type = expr.data_type(batch.schema_ref()).unwrap_or(DataType::Null);
            let mut pieces: Vec<ArrayRef> = Vec::with_capacity(rows);
            for row in 0..rows {
                let one = batch.slice(row, 1);
                match expr.evaluate(&one).and_then(|v| v.into_array(1)) {
                    Ok(a) => pieces.push(a),
                    Err(e) => {
                        fail(row, format!("expression failed: {e}"));
                        pieces.push(new_null_array(&data_type, 1));
                    }
                }
            }
            let refs: Vec<&dyn Array> = pieces.iter().map(|a| a.as_ref()).collect();
            deltalake::arrow::compute::concat(&refs)
                .unwrap_or_else(|_| new_null_array(&data_type, rows))
        }
    }
}

/// A column of `rows` copies of a one-row array.
fn repeat(one: &ArrayRef, rows: usize) -> ArrayRef {
    let indices = deltalake::arrow::array::UInt32Array::from(vec![0u32; rows]);
    deltalake::arrow::compute::take(one.as_ref(), &indices, None)
        .expect("taking row 0 of a one-row array")
}

#[cfg(test)]
mod tests;
