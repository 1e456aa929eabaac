//! Decodes Avro messages in the Confluent wire format into rows of field texts.
//!
//! A message is a zero byte, the writer's schema id (4 bytes, big-endian) and the record as an
//! Avro binary datum. The schema comes from a Confluent-compatible registry by id, once per id
//! (ids are immutable); every message is decoded with its own writer's schema, so messages of
//! several schema versions load side by side: a field is found by its path (`avroPaths`, or
//! the column name), and a field an older version lacks is NULL.
//!
//! A path is followed on the decoded value itself (no JSON tree per record). Values become the
//! texts the load rules convert: unions are looked through to their branch,
//! enums are their symbol, decimals their digits at the schema's scale, dates `YYYY-MM-DD`,
//! timestamps `YYYY-MM-DD HH:MM:SS.ffffff` (UTC instants in the job's time zone, local ones as
//! they are), records, maps and arrays JSON text.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use apache_avro::Schema;
use apache_avro::schema::{Name, ResolvedSchema};
use apache_avro::types::Value as Avro;
use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta};
use chrono_tz::Tz;
use routine_load_api::ColumnType;
use routine_load_api::load_plan::{JsonPath, LoadPlan, Step};
use serde_json::{Map, Value as Json};

/// What a registry answers for a schema id.
#[derive(Debug, Clone, PartialEq)]
pub enum RegisteredSchema {
    /// The schema's text (an Avro schema in JSON) and the texts of the schemas it references
    /// (Confluent schema references: named types it imports), transitively.
    Avro {
        schema: String,
        references: Vec<String>,
    },
    /// The registry holds this id as another kind of schema (PROTOBUF, JSON).
    NotAvro(String),
    /// A schema it references is not in the registry (which one).
    MissingReference(String),
    /// No schema has this id.
    NotFound,
}

/// Where writer schemas come from: a Confluent-compatible registry (see
/// `crate::schema_registry`), or a fixed set in tests.
pub trait SchemaSource: Send + Sync {
    /// The schema registered as `id`. Err is a failure to ask (network, registry errors): the
    /// batch is not loaded, to be tried again, so no message is lost to a registry outage.
    fn schema(&self, id: u32) -> Result<RegisteredSchema, String>;
}

/// A writer schema, parsed, with the schemas it references and every named type (to follow
/// references while rendering).
struct WriterSchema {
    schema: Schema,
    schemata: Vec<Schema>,
    names: HashMap<Name, Schema>,
}

/// How a value becomes text for one source field.
#[derive(Clone, Copy, PartialEq)]
enum FieldKind {
    /// Numeric columns take booleans as 1/0.
    Number,
    /// Every other column takes booleans as true/false.
    Other,
}

/// One text per source field, in source field order; None is NULL.
pub type FieldTexts = Vec<Option<Vec<u8>>>;

/// Why a message can't load: an error row.
#[derive(Debug, PartialEq)]
pub struct Undecodable(pub String);

/// Why a batch can't load now (not a bad message): the registry could not be asked.
#[derive(Debug, PartialEq)]
pub struct RegistryUnavailable(pub String);

/// Clones (the engines of one task's decoding threads) share the source and the schemas.
#[derive(Clone)]
pub struct AvroDecoder {
    paths: Vec<JsonPath>,
    kinds: Vec<FieldKind>,
    timezone: Tz,
    source: Option<Arc<dyn SchemaSource>>,
    schemas: Arc<Mutex<HashMap<u32, Arc<WriterSchema>>>>,
    /// Ids found missing (or not Avro) in this batch: asked once per batch, not per message;
    /// a later batch asks again.
    missing: HashMap<u32, String>,
}

impl AvroDecoder {
    pub fn new(plan: &LoadPlan) -> Self {
        Self {
            paths: plan
                .source_fields
                .iter()
                .map(|f| f.json_path.clone())
                .collect(),
            kinds: plan
                .source_fields
                .iter()
                .map(|f| match f.column_type {
                    Some(
                        ColumnType::TinyInt
                        | ColumnType::SmallInt
                        | ColumnType::Int
                        | ColumnType::BigInt
                        | ColumnType::LargeInt
                        | ColumnType::Float
                        | ColumnType::Double
                        | ColumnType::Decimal { .. },
                    ) => FieldKind::Number,
                    _ => FieldKind::Other,
                })
                .collect(),
            timezone: plan.timezone,
            source: None,
            schemas: Arc::default(),
            missing: HashMap::new(),
        }
    }

    /// Reads writer schemas from `source`.
    pub fn set_source(&mut self, source: Arc<dyn SchemaSource>) {
        self.source = Some(source);
    }

    /// Forgets the schemas found missing: called at the start of each batch.
    pub fn start_batch(&mut self) {
        self.missing.clear();
    }

    /// The field texts of one message, in source field order (None is NULL).
    pub fn decode(
        &mut self,
        payload: &[u8],
    ) -> Result<Result<FieldTexts, Undecodable>, RegistryUnavailable> {
        let (id, datum) = match wire_format(payload) {
            Ok(framed) => framed,
            Err(why) => return Ok(Err(Undecodable(why))),
        };
        let writer = match self.writer_schema(id)? {
            Ok(w) => w,
            Err(why) => return Ok(Err(Undecodable(why))),
        };
        let mut rest = datum;
        let schemata: Vec<&Schema> = writer.schemata.iter().collect();
        #[allow(deprecated)] // GenericDatumReader's builder is the same call, spelled longer.
        let value = match apache_avro::from_avro_datum_schemata(
            &writer.schema,
            schemata,
            &mut rest,
            None,
        ) {
            Ok(v) => v,
            Err(e) => {
                return Ok(Err(Undecodable(format!(
                    "avro datum does not decode with schema id {id}: {e}"
                ))));
            }
        };
        if !rest.is_empty() {
            return Ok(Err(Undecodable(format!(
                "avro datum has {} bytes after the record of schema id {id}",
                rest.len()
            ))));
        }
        let names = &writer.names;
        Ok(Ok(self
            .paths
            .iter()
            .zip(&self.kinds)
            .map(|(path, kind)| {
                let (v, schema) = find(&value, &writer.schema, names, path.steps())?;
                field_text(&to_json(v, schema, names, self.timezone), *kind)
            })
            .collect()))
    }

    /// The parsed writer schema of `id`, asking the source the first time.
    fn writer_schema(
        &mut self,
        id: u32,
    ) -> Result<Result<Arc<WriterSchema>, String>, RegistryUnavailable> {
        let cached = self.schemas.lock().expect("schema cache").get(&id).cloned();
        if let Some(w) = cached {
            return Ok(Ok(w));
        }
        if let Some(why) = self.missing.get(&id) {
            return Ok(Err(why.clone()));
        }
        let source = self.source.as_ref().ok_or_else(|| {
            RegistryUnavailable("no schema registry is configured for format avro".to_string())
        })?;
        let answer = source.schema(id).map_err(|e| {
            RegistryUnavailable(format!(
                "reading schema id {id} from the schema registry: {e}"
            ))
        })?;
        let parsed = match answer {
            RegisteredSchema::Avro { schema, references } => {
                parse_writer_schema(&schema, &references)
                    .map_err(|e| format!("schema id {id} is not a valid Avro schema: {e}"))
            }
            RegisteredSchema::MissingReference(which) => Err(format!(
                "schema id {id} references {which}, which is not in the schema registry"
            )),
            RegisteredSchema::NotAvro(kind) => {
                Err(format!("schema id {id} is a {kind} schema, not Avro"))
            }
            RegisteredSchema::NotFound => {
                Err(format!("schema id {id} not found in the schema registry"))
            }
        };
        match parsed {
            Ok(w) => {
                let w = Arc::new(w);
                self.schemas
                    .lock()
                    .expect("schema cache")
                    .insert(id, Arc::clone(&w));
                Ok(Ok(w))
            }
            Err(why) => {
                self.missing.insert(id, why.clone());
                Ok(Err(why))
            }
        }
    }
}

/// The schema id and the datum of a Confluent wire format message.
fn wire_format(payload: &[u8]) -> Result<(u32, &[u8]), String> {
    match payload {
        [0, a, b, c, d, datum @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), datum)),
        [] => Err("empty message: no Confluent wire format header".to_string()),
        [magic, ..] if *magic != 0 => Err(format!(
            "not in the Confluent wire format: first byte 0x{magic:02x}, expected 0x00"
        )),
        _ => Err(format!(
            "message of {} bytes is shorter than the Confluent wire format header (5 bytes)",
            payload.len()
        )),
    }
}

fn parse_writer_schema(
    text: &str,
    references: &[String],
) -> Result<WriterSchema, apache_avro::Error> {
    let (schema, schemata) = if references.is_empty() {
        (Schema::parse_str(text)?, Vec::new())
    } else {
        Schema::parse_str_with_list(text, references)?
    };
    // Named types resolve in order: the referenced schemas first.
    let names = ResolvedSchema::try_from(schemata.iter().chain([&schema]).collect::<Vec<_>>())?
        .get_names()
        .iter()
        .map(|(n, s)| (n.clone(), (*s).clone()))
        .collect();
    Ok(WriterSchema {
        schema,
        schemata,
        names,
    })
}

/// The schema a named reference stands for (or `schema` itself).
fn resolved<'s>(mut schema: &'s Schema, names: &'s HashMap<Name, Schema>) -> &'s Schema {
    // Bounded: a reference never names itself, but a malformed set of names must not loop.
    for _ in 0..=names.len() {
        match schema {
            Schema::Ref { name } => match names.get(name) {
                Some(s) => schema = s,
                None => break,
            },
            _ => break,
        }
    }
    schema
}

/// The value at `path` in `value` (of `schema`) and its schema, looking through unions and
/// named references; None when the path does not exist in this record (a field its schema
/// version lacks, a map key or array element that is not there).
fn find<'v>(
    mut value: &'v Avro,
    mut schema: &'v Schema,
    names: &'v HashMap<Name, Schema>,
    path: &[Step],
) -> Option<(&'v Avro, &'v Schema)> {
    for step in path {
        schema = resolved(schema, names);
        if let (Avro::Union(branch, v), Schema::Union(u)) = (value, schema) {
            value = v;
            schema = resolved(u.variants().get(*branch as usize)?, names);
        }
        match (step, value, schema) {
            (Step::Key(k), Avro::Record(fields), Schema::Record(r)) => {
                let i = *r.lookup.get(k)?;
                value = &fields.get(i)?.1;
                schema = &r.fields.get(i)?.schema;
            }
            (Step::Key(k), Avro::Map(entries), Schema::Map(m)) => {
                value = entries.get(k)?;
                schema = &m.types;
            }
            (Step::Index(n), Avro::Array(items), Schema::Array(a)) => {
                value = items.get(*n)?;
                schema = &a.items;
            }
            _ => return None,
        }
    }
    Some((value, schema))
}

/// The text a field of `kind` loads from `value`; None for NULL.
fn field_text(value: &Json, kind: FieldKind) -> Option<Vec<u8>> {
    match value {
        Json::Null => None,
        Json::String(s) => Some(s.as_bytes().to_vec()),
        Json::Number(n) => Some(n.to_string().into_bytes()),
        Json::Bool(b) => Some(
            match (kind, b) {
                (FieldKind::Number, true) => "1",
                (FieldKind::Number, false) => "0",
                (FieldKind::Other, true) => "true",
                (FieldKind::Other, false) => "false",
            }
            .as_bytes()
            .to_vec(),
        ),
        v @ (Json::Array(_) | Json::Object(_)) => Some(v.to_string().into_bytes()),
    }
}

const DATETIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.6f";

/// An Avro value as JSON, with the logical types rendered as the load rules read them.
fn to_json(value: &Avro, schema: &Schema, names: &HashMap<Name, Schema>, tz: Tz) -> Json {
    // Follow named references (a type used again by name).
    let schema = resolved(schema, names);
    let text = |s: String| Json::String(s);
    let instant = |secs: i64, nanos: u32| {
        DateTime::from_timestamp(secs, nanos).map_or(Json::Null, |t| {
            text(t.with_timezone(&tz).format(DATETIME_FORMAT).to_string())
        })
    };
    let local = |secs: i64, nanos: u32| {
        DateTime::from_timestamp(secs, nanos).map_or(Json::Null, |t| {
            text(t.naive_utc().format(DATETIME_FORMAT).to_string())
        })
    };
    match value {
        Avro::Null => Json::Null,
        Avro::Boolean(b) => Json::Bool(*b),
        Avro::Int(i) => Json::from(*i),
        Avro::Long(i) => Json::from(*i),
        Avro::Float(f) => float(f64::from(*f), f.to_string()),
        Avro::Double(f) => float(*f, f.to_string()),
        Avro::Bytes(b) | Avro::Fixed(_, b) => text(String::from_utf8_lossy(b).into_owned()),
        Avro::String(s) => text(s.clone()),
        Avro::Enum(_, symbol) => text(symbol.clone()),
        Avro::Union(branch, v) => match schema {
            Schema::Union(u) => match u.variants().get(*branch as usize) {
                Some(s) => to_json(v, s, names, tz),
                None => to_json(v, &Schema::Null, names, tz),
            },
            _ => to_json(v, schema, names, tz),
        },
        Avro::Array(items) => {
            let item_schema = match schema {
                Schema::Array(a) => a.items.as_ref(),
                _ => &Schema::Null,
            };
            Json::Array(
                items
                    .iter()
                    .map(|v| to_json(v, item_schema, names, tz))
                    .collect(),
            )
        }
        Avro::Map(entries) => {
            let value_schema = match schema {
                Schema::Map(m) => m.types.as_ref(),
                _ => &Schema::Null,
            };
            let mut sorted: Vec<_> = entries.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            Json::Object(
                sorted
                    .into_iter()
                    .map(|(k, v)| (k.clone(), to_json(v, value_schema, names, tz)))
                    .collect::<Map<_, _>>(),
            )
        }
        Avro::Record(fields) => {
            let field_schemas: Vec<&Schema> = match schema {
                Schema::Record(r) => r.fields.iter().map(|f| &f.schema).collect(),
                _ => Vec::new(),
            };
            Json::Object(
                fields
                    .iter()
                    .enumerate()
                    .map(|(i, (k, v))| {
                        let s = field_schemas.get(i).copied().unwrap_or(&Schema::Null);
                        (k.clone(), to_json(v, s, names, tz))
                    })
                    .collect::<Map<_, _>>(),
            )
        }
        Avro::Date(days) => NaiveDate::from_ymd_opt(1970, 1, 1)
            .and_then(|epoch| epoch.checked_add_signed(TimeDelta::days(i64::from(*days))))
            .map_or(Json::Null, |d| text(d.format("%Y-%m-%d").to_string())),
        Avro::Decimal(d) => {
            let scale = match schema {
                Schema::Decimal(d) => d.scale,
                _ => 0,
            };
            match Vec::<u8>::try_from(d) {
                Ok(bytes) => text(decimal_text(&bytes, scale)),
                Err(_) => Json::Null,
            }
        }
        Avro::BigDecimal(d) => text(d.to_string()),
        Avro::TimeMillis(ms) => time_of_day(i64::from(*ms) * 1_000),
        Avro::TimeMicros(us) => time_of_day(*us),
        Avro::TimestampMillis(ms) => instant(
            ms.div_euclid(1_000),
            (ms.rem_euclid(1_000) * 1_000_000) as u32,
        ),
        Avro::TimestampMicros(us) => instant(
            us.div_euclid(1_000_000),
            (us.rem_euclid(1_000_000) * 1_000) as u32,
        ),
        Avro::TimestampNanos(ns) => instant(
            ns.div_euclid(1_000_000_000),
            ns.rem_euclid(1_000_000_000) as u32,
        ),
        Avro::LocalTimestampMillis(ms) => local(
            ms.div_euclid(1_000),
            (ms.rem_euclid(1_000) * 1_000_000) as u32,
        ),
        Avro::LocalTimestampMicros(us) => local(
            us.div_euclid(1_000_000),
            (us.rem_euclid(1_000_000) * 1_000) as u32,
        ),
        Avro::LocalTimestampNanos(ns) => local(
            ns.div_euclid(1_000_000_000),
            ns.rem_euclid(1_000_000_000) as u32,
        ),
        Avro::Duration(d) => serde_json::json!({
            "months": u32::from(d.months()),
            "days": u32::from(d.days()),
            "millis": u32::from(d.millis()),
        }),
        Avro::Uuid(u) => text(u.to_string()),
    }
}

/// A float as a JSON number; NaN and the infinities (which JSON has no number for) as text.
fn float(f: f64, shown: String) -> Json {
    serde_json::Number::from_f64(f).map_or(Json::String(shown), Json::Number)
}

/// A time of day `HH:MM:SS.ffffff` from microseconds after midnight.
fn time_of_day(micros: i64) -> Json {
    let secs = micros.div_euclid(1_000_000);
    let nanos = (micros.rem_euclid(1_000_000) * 1_000) as u32;
    u32::try_from(secs)
        .ok()
        .and_then(|s| NaiveTime::from_num_seconds_from_midnight_opt(s, nanos))
        .map_or(Json::Null, |t| {
            Json::String(t.format("%H:%M:%S%.6f").to_string())
        })
}

/// The digits of an Avro decimal: its unscaled value (big-endian two's complement) at `scale`.
/// Values of up to 16 bytes (DECIMAL(38)) go through i128; longer ones are converted digit by
/// digit, so a value too large for its column reaches the column's conversion and becomes an
/// error row there ("The length of decimal value is overflow"), never a silent NULL.
fn decimal_text(bytes: &[u8], scale: usize) -> String {
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let digits = if bytes.len() <= 16 {
        let mut full = if negative { [0xff; 16] } else { [0; 16] };
        full[16 - bytes.len()..].copy_from_slice(bytes);
        i128::from_be_bytes(full).unsigned_abs().to_string()
    } else {
        magnitude_digits(bytes, negative)
    };
    let sign = if negative { "-" } else { "" };
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let digits = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = digits.split_at(digits.len() - scale);
    format!("{sign}{int}.{frac}")
}

/// The decimal digits of the magnitude of a big-endian two's complement integer of any length.
fn magnitude_digits(bytes: &[u8], negative: bool) -> String {
    // The magnitude in base 256: the bytes as they are, or negated (inverted, plus one).
    let mut magnitude: Vec<u8> = if negative {
        let mut m: Vec<u8> = bytes.iter().map(|b| !b).collect();
        for b in m.iter_mut().rev() {
            let (v, carry) = b.overflowing_add(1);
            *b = v;
            if !carry {
                break;
            }
        }
        m
    } else {
        bytes.to_vec()
    };
    let mut digits = Vec::new();
    while magnitude.iter().any(|b| *b != 0) {
        // Divide by 10 in place; the remainder is the next digit.
        let mut remainder = 0u32;
        for b in magnitude.iter_mut() {
            let v = (remainder << 8) | u32::from(*b);
            *b = (v / 10) as u8;
            remainder = v % 10;
        }
        digits.push(b'0' + remainder as u8);
    }
    if digits.is_empty() {
        digits.push(b'0');
    }
    digits.reverse();
    String::from_utf8(digits).expect("ASCII digits")
}

#[cfg(test)]
mod tests;
