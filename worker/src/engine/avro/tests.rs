//! The Avro path of the engine: messages encoded by apache-avro's writer in the Confluent wire
//! format, schemas from a fixed source, loaded through a real load plan.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use apache_avro::types::Value as Avro;
use deltalake::arrow::array::Array;
use deltalake::arrow::util::display::array_value_to_string;
use routine_load_api::{RoutineLoadJobSpec, TableSpec};

use super::*;
use crate::engine::{LoadEngine, LoadedBatch, SourceMessage};

/// Schemas by id; `unavailable` makes every question fail (a registry outage).
#[derive(Default)]
struct FixedSchemas {
    schemas: HashMap<u32, RegisteredSchema>,
    unavailable: bool,
    asked: AtomicUsize,
}

impl SchemaSource for FixedSchemas {
    fn schema(&self, id: u32) -> Result<RegisteredSchema, String> {
        self.asked.fetch_add(1, Ordering::Relaxed);
        if self.unavailable {
            return Err("connection refused".to_string());
        }
        Ok(self
            .schemas
            .get(&id)
            .cloned()
            .unwrap_or(RegisteredSchema::NotFound))
    }
}

const V1: &str = r#"{"type": "record", "name": "order", "namespace": "shop", "fields": [
    {"name": "id", "type": "long"},
    {"name": "customer", "type": {"type": "record", "name": "customer", "fields": [
        {"name": "name", "type": "string"},
        {"name": "tier", "type": ["null", {"type": "enum", "name": "tier", "symbols": ["GOLD", "SILVER"]}], "default": null}
    ]}},
    {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
    {"name": "day", "type": {"type": "int", "logicalType": "date"}},
    {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "attrs", "type": {"type": "map", "values": "long"}},
    {"name": "paid", "type": "boolean"},
    {"name": "ratio", "type": "double"}
]}"#;

/// V1 plus a nullable field: a later version of the same subject.
const V2: &str = r#"{"type": "record", "name": "order", "namespace": "shop", "fields": [
    {"name": "id", "type": "long"},
    {"name": "customer", "type": {"type": "record", "name": "customer", "fields": [
        {"name": "name", "type": "string"},
        {"name": "tier", "type": ["null", {"type": "enum", "name": "tier", "symbols": ["GOLD", "SILVER"]}], "default": null}
    ]}},
    {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
    {"name": "day", "type": {"type": "int", "logicalType": "date"}},
    {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "attrs", "type": {"type": "map", "values": "long"}},
    {"name": "paid", "type": "boolean"},
    {"name": "ratio", "type": "double"},
    {"name": "coupon", "type": ["null", "string"], "default": null}
]}"#;

const TABLE: &str = r#"
location: file:///tmp/t
columns:
  - {name: id, type: BIGINT, nullable: false}
  - {name: customer, type: VARCHAR(32)}
  - {name: tier, type: VARCHAR(8)}
  - {name: amount, type: "DECIMAL(10,2)"}
  - {name: day, type: DATE}
  - {name: at, type: DATETIME}
  - {name: tags, type: STRING}
  - {name: attrs, type: JSON}
  - {name: paid, type: TINYINT}
  - {name: ratio, type: DOUBLE}
  - {name: coupon, type: VARCHAR(16)}
"#;

const JOB: &str = r#"
format: avro
schemaRegistry: {url: "http://registry:8081"}
timezone: Asia/Shanghai
columns: [id, customer, tier, amount, day, at, tags, attrs, paid, ratio, coupon]
avroPaths: ["$.id", "$.customer.name", "$.customer.tier", "$.amount", "$.day", "$.at", "$.tags", "$.attrs", "$.paid", "$.ratio", "$.coupon"]
"#;

fn engine(job_yaml: &str, source: Arc<FixedSchemas>) -> LoadEngine {
    let table: TableSpec = serde_yaml::from_str(TABLE).expect("table yaml");
    let job: RoutineLoadJobSpec = serde_yaml::from_str(&format!(
        "table: t\nkafka: {{brokerList: 'b:9092', topic: t}}\n{job_yaml}"
    ))
    .expect("job yaml");
    let plan = routine_load_api::load_plan::LoadPlan::build(&job, "t", &table).expect("plan");
    let mut e = LoadEngine::new(Arc::new(plan));
    e.set_schema_source(source);
    e
}

fn source(versions: &[(u32, &str)]) -> Arc<FixedSchemas> {
    Arc::new(FixedSchemas {
        schemas: versions
            .iter()
            .map(|(id, s)| {
                (
                    *id,
                    RegisteredSchema::Avro {
                        schema: s.to_string(),
                        references: Vec::new(),
                    },
                )
            })
            .collect(),
        ..Default::default()
    })
}

/// `value` encoded with `schema` in the Confluent wire format under `id`.
fn framed(id: u32, schema: &str, value: Avro) -> Vec<u8> {
    let schema = Schema::parse_str(schema).expect("schema");
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    #[allow(deprecated)]
    out.extend(apache_avro::to_avro_datum(&schema, value).expect("encode"));
    out
}

fn order(id: i64, tier: Option<u32>, coupon: Option<Option<&str>>) -> Avro {
    let tier = match tier {
        None => Avro::Union(0, Box::new(Avro::Null)),
        Some(i) => Avro::Union(
            1,
            Box::new(Avro::Enum(i, ["GOLD", "SILVER"][i as usize].to_string())),
        ),
    };
    let mut fields = vec![
        ("id".to_string(), Avro::Long(id)),
        (
            "customer".to_string(),
            Avro::Record(vec![
                ("name".to_string(), Avro::String(format!("c{id}"))),
                ("tier".to_string(), tier),
            ]),
        ),
        // -12.34 and 1234.56 as unscaled two's complement.
        (
            "amount".to_string(),
            Avro::Decimal(if id % 2 == 0 {
                (-1234i32).to_be_bytes().to_vec().into()
            } else {
                123456i32.to_be_bytes().to_vec().into()
            }),
        ),
        ("day".to_string(), Avro::Date(19_844)), // 2024-05-01
        // 2024-05-01 02:00:00.250 UTC: 10:00:00.250 in Asia/Shanghai.
        ("at".to_string(), Avro::TimestampMillis(1_714_528_800_250)),
        (
            "tags".to_string(),
            Avro::Array(vec![Avro::String("a".into()), Avro::String("b".into())]),
        ),
        (
            "attrs".to_string(),
            Avro::Map([("x".to_string(), Avro::Long(1))].into()),
        ),
        ("paid".to_string(), Avro::Boolean(id % 2 == 1)),
        ("ratio".to_string(), Avro::Double(0.5)),
    ];
    if let Some(coupon) = coupon {
        fields.push((
            "coupon".to_string(),
            match coupon {
                None => Avro::Union(0, Box::new(Avro::Null)),
                Some(c) => Avro::Union(1, Box::new(Avro::String(c.to_string()))),
            },
        ));
    }
    Avro::Record(fields)
}

fn load(engine: &mut LoadEngine, payloads: &[Vec<u8>]) -> Result<LoadedBatch, EngineError> {
    let messages: Vec<SourceMessage<'_>> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| SourceMessage {
            partition: 0,
            offset: i as i64,
            payload: p,
            ..Default::default()
        })
        .collect();
    engine.load(&messages)
}

fn column(batch: &LoadedBatch, c: &str) -> Vec<String> {
    let array = batch.batch.column_by_name(c).expect("column");
    (0..array.len())
        .map(|i| {
            if array.is_null(i) {
                "NULL".to_string()
            } else {
                array_value_to_string(array, i).unwrap()
            }
        })
        .collect()
}

use super::super::EngineError;

#[test]
fn records_of_two_schema_versions_load_side_by_side() {
    let schemas = source(&[(1, V1), (2, V2)]);
    let mut e = engine(JOB, Arc::clone(&schemas));
    let payloads = [
        framed(1, V1, order(1, Some(0), None)),
        framed(2, V2, order(2, None, Some(Some("SPRING")))),
        framed(2, V2, order(3, Some(1), Some(None))),
        framed(1, V1, order(4, None, None)),
    ];
    let out = load(&mut e, &payloads).expect("load");
    assert_eq!(out.errors, vec![], "no error rows");
    assert_eq!(out.counters.loaded_rows, 4);
    let want: &[(&str, [&str; 4])] = &[
        ("id", ["1", "2", "3", "4"]),
        ("customer", ["c1", "c2", "c3", "c4"]),
        ("tier", ["GOLD", "NULL", "SILVER", "NULL"]),
        ("amount", ["1234.56", "-12.34", "1234.56", "-12.34"]),
        ("day", ["2024-05-01"; 4]),
        ("at", ["2024-05-01T10:00:00.250"; 4]),
        ("tags", [r#"["a","b"]"#; 4]),
        ("attrs", [r#"{"x":1}"#; 4]),
        ("paid", ["1", "0", "1", "0"]),
        ("ratio", ["0.5"; 4]),
        // V1 has no coupon: NULL.
        ("coupon", ["NULL", "SPRING", "NULL", "NULL"]),
    ];
    for (c, values) in want {
        assert_eq!(column(&out, c), values, "column {c}");
    }
    // Each id asked once.
    assert_eq!(schemas.asked.load(Ordering::Relaxed), 2);
    load(&mut e, &payloads).expect("load again");
    assert_eq!(schemas.asked.load(Ordering::Relaxed), 2, "schemas cached");
}

#[test]
fn fields_by_column_name_without_avro_paths() {
    let job = r#"
format: avro
schemaRegistry: {url: "http://registry:8081"}
columns: [id, amount, day, paid, ratio, customer = 'x']
"#;
    let mut e = engine(job, source(&[(7, V1)]));
    let out = load(&mut e, &[framed(7, V1, order(5, None, None))]).expect("load");
    assert_eq!(out.errors, vec![]);
    assert_eq!(column(&out, "id"), ["5"]);
    assert_eq!(column(&out, "amount"), ["1234.56"]);
    assert_eq!(column(&out, "customer"), ["x"]);
}

#[test]
fn undecodable_messages_are_error_rows_with_their_reason() {
    let mut e = engine(JOB, source(&[(1, V1)]));
    let good = framed(1, V1, order(1, None, None));
    let mut trailing = good.clone();
    trailing.push(0);
    let mut wrong_schema = framed(1, V1, order(2, None, None));
    wrong_schema[4] = 9; // schema id 9
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{\"id\": 1}".to_vec(), "first byte 0x7b, expected 0x00"),
        (
            vec![0, 0, 0],
            "shorter than the Confluent wire format header",
        ),
        (vec![], "empty message"),
        (wrong_schema, "schema id 9 not found in the schema registry"),
        (
            good[..good.len() - 3].to_vec(),
            "does not decode with schema id 1",
        ),
        (trailing, "1 bytes after the record of schema id 1"),
    ];
    let mut payloads = vec![good.clone()];
    payloads.extend(cases.iter().map(|(p, _)| p.clone()));
    let out = load(&mut e, &payloads).expect("load");
    assert_eq!(out.counters.loaded_rows, 1);
    assert_eq!(out.counters.error_rows, cases.len() as u64);
    for ((_, want), got) in cases.iter().zip(&out.errors) {
        assert!(got.reason.contains(want), "want {want}, got {got:?}");
        assert_eq!(got.column, None);
    }
}

#[test]
fn a_value_that_does_not_convert_names_its_column() {
    let mut e = engine(JOB, source(&[(1, V1)]));
    let mut o = order(1, None, None);
    if let Avro::Record(fields) = &mut o {
        fields[1].1 = Avro::Record(vec![
            ("name".to_string(), Avro::String("x".repeat(40))),
            ("tier".to_string(), Avro::Union(0, Box::new(Avro::Null))),
        ]);
    }
    let out = load(&mut e, &[framed(1, V1, o)]).expect("load");
    assert_eq!(out.counters.error_rows, 1);
    assert_eq!(out.errors[0].column.as_deref(), Some("customer"));
}

#[test]
fn schemas_that_are_not_avro_are_error_rows() {
    let schemas = Arc::new(FixedSchemas {
        schemas: [
            (3, RegisteredSchema::NotAvro("PROTOBUF".to_string())),
            (
                4,
                RegisteredSchema::Avro {
                    schema: "{\"type\": \"nope\"}".to_string(),
                    references: Vec::new(),
                },
            ),
        ]
        .into(),
        ..Default::default()
    });
    let mut e = engine(JOB, Arc::clone(&schemas));
    let mut p3 = framed(1, V1, order(1, None, None));
    p3[4] = 3;
    let mut p4 = p3.clone();
    p4[4] = 4;
    let out = load(&mut e, &[p3.clone(), p4, p3]).expect("load");
    let reasons: Vec<&str> = out.errors.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(reasons.len(), 3);
    assert!(reasons[0].contains("schema id 3 is a PROTOBUF schema, not Avro"));
    assert!(reasons[1].contains("schema id 4 is not a valid Avro schema"));
    assert_eq!(reasons[2], reasons[0]);
    // Asked once per batch for each unusable id.
    assert_eq!(schemas.asked.load(Ordering::Relaxed), 2);
}

#[test]
fn a_registry_outage_fails_the_batch_instead_of_making_error_rows() {
    let schemas = Arc::new(FixedSchemas {
        unavailable: true,
        ..Default::default()
    });
    let mut e = engine(JOB, schemas);
    let err = load(&mut e, &[framed(1, V1, order(1, None, None))]).expect_err("batch fails");
    let text = err.to_string();
    assert!(
        text.contains("reading schema id 1 from the schema registry: connection refused"),
        "{text}"
    );
}

#[test]
fn logical_types_render_as_the_load_rules_read_them() {
    let tz: Tz = "Asia/Shanghai".parse().unwrap();
    let names = HashMap::new();
    let decimal = |scale: usize| {
        Schema::parse_str(&format!(
            r#"{{"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": {scale}}}"#
        ))
        .unwrap()
    };
    let cases: Vec<(Avro, Schema, Json)> = vec![
        (Avro::Date(0), Schema::Date, "1970-01-01".into()),
        (Avro::Date(-1), Schema::Date, "1969-12-31".into()),
        (
            Avro::TimestampMicros(1_714_528_800_000_001),
            Schema::TimestampMicros,
            "2024-05-01 10:00:00.000001".into(),
        ),
        (
            Avro::LocalTimestampMillis(1_714_528_800_000),
            Schema::LocalTimestampMillis,
            "2024-05-01 02:00:00.000000".into(),
        ),
        (
            Avro::TimeMillis(3_723_004),
            Schema::TimeMillis,
            "01:02:03.004000".into(),
        ),
        (Avro::Decimal(vec![0x01].into()), decimal(3), "0.001".into()),
        (Avro::Decimal(vec![0xff].into()), decimal(2), "-0.01".into()),
        (
            Avro::Decimal(vec![0x30, 0x39].into()),
            decimal(0),
            "12345".into(),
        ),
        // Longer than i128: digit by digit (a column too narrow makes it an error row).
        (
            Avro::Decimal(vec![0x7f; 17].into()),
            decimal(0),
            "43385334562092358133808765634594698395519".into(),
        ),
        (
            Avro::Decimal([&[0x80][..], &[0; 16]].concat().into()),
            decimal(2),
            "-435561429658801233233119497512663310663.68".into(),
        ),
        (
            Avro::Decimal(vec![0xff; 17].into()),
            decimal(0),
            "-1".into(),
        ),
        (Avro::Float(f32::NAN), Schema::Float, "NaN".into()),
        (Avro::Bytes(b"raw".to_vec()), Schema::Bytes, "raw".into()),
        (
            Avro::Uuid("67e55044-10b1-426f-9247-bb680e5fe0c8".parse().unwrap()),
            Schema::Uuid(apache_avro::schema::UuidSchema::String),
            "67e55044-10b1-426f-9247-bb680e5fe0c8".into(),
        ),
    ];
    for (value, schema, want) in cases {
        assert_eq!(to_json(&value, &schema, &names, tz), want, "{value:?}");
    }
}

/// The customer record of V1, registered as a subject of its own.
const CUSTOMER: &str = r#"{"type": "record", "name": "customer", "namespace": "shop", "fields": [
    {"name": "name", "type": "string"},
    {"name": "tier", "type": ["null", {"type": "enum", "name": "tier", "symbols": ["GOLD", "SILVER"]}], "default": null}
]}"#;

/// V1 with the customer record imported by name (a Confluent schema reference).
const V1_REFERENCING: &str = r#"{"type": "record", "name": "order", "namespace": "shop", "fields": [
    {"name": "id", "type": "long"},
    {"name": "customer", "type": "shop.customer"},
    {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
    {"name": "day", "type": {"type": "int", "logicalType": "date"}},
    {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "attrs", "type": {"type": "map", "values": "long"}},
    {"name": "paid", "type": "boolean"},
    {"name": "ratio", "type": "double"}
]}"#;

#[test]
fn schemas_with_references_decode_with_the_referenced_types() {
    let schemas = Arc::new(FixedSchemas {
        schemas: [
            (
                8,
                RegisteredSchema::Avro {
                    schema: V1_REFERENCING.to_string(),
                    references: vec![CUSTOMER.to_string()],
                },
            ),
            (
                9,
                RegisteredSchema::MissingReference("subject customer version 3".to_string()),
            ),
        ]
        .into(),
        ..Default::default()
    });
    let mut e = engine(JOB, schemas);
    // Same bytes as V1: a reference changes the schema's text, not the encoding.
    let payloads = [
        framed(8, V1, order(1, Some(1), None)),
        framed(9, V1, order(2, None, None)),
    ];
    let out = load(&mut e, &payloads).expect("load");
    assert_eq!(column(&out, "customer"), ["c1"], "{:?}", out.errors);
    assert_eq!(column(&out, "tier"), ["SILVER"]);
    assert_eq!(column(&out, "amount"), ["1234.56"]);
    assert_eq!(out.errors.len(), 1);
    assert!(
        out.errors[0].reason.contains(
            "schema id 9 references subject customer version 3, which is not in the schema registry"
        ),
        "{:?}",
        out.errors
    );
}

#[test]
fn paths_reach_array_elements_and_map_values() {
    let job = r#"
format: avro
schemaRegistry: {url: "http://registry:8081"}
columns: [id, customer, tier, ratio]
avroPaths: ["$.id", "$.tags[1]", "$.tags[5]", "$.attrs.x"]
"#;
    let mut e = engine(job, source(&[(1, V1)]));
    let out = load(&mut e, &[framed(1, V1, order(1, None, None))]).expect("load");
    assert_eq!(out.errors, vec![]);
    assert_eq!(column(&out, "customer"), ["b"]);
    assert_eq!(column(&out, "tier"), ["NULL"], "no element 5: NULL");
    assert_eq!(column(&out, "ratio"), ["1.0"]);
}
