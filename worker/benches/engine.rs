//! Load engine throughput on the reference's Wikipedia rows (CSV, JSON and Avro) and the
//! end-to-end bench's 50-column CSV rows, one core.
//!
//! `make bench-engine` runs it; criterion reports rows/s as "elem/s".

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use routine_load_api::load_plan::LoadPlan;
use routine_load_api::reference::WIKIPEDIA_TABLE_YAML as TABLE;
use routine_load_api::{RoutineLoadJobSpec, TableSpec};
use routine_load_worker::engine::{LoadEngine, RegisteredSchema, SchemaSource, SourceMessage};
use routine_load_worker::schema_registry::avro::{self, Schema, types::Value as Avro};

const ROWS: usize = 100_000;

fn engine(job: &str) -> LoadEngine {
    let table: TableSpec = serde_yaml::from_str(TABLE).expect("table");
    let job: RoutineLoadJobSpec = serde_yaml::from_str(&format!(
        "table: routine_wiki_edit\nkafka: {{brokerList: 'localhost:9092', topic: starrocks-load}}\n{job}"
    ))
    .expect("job");
    LoadEngine::new(Arc::new(
        LoadPlan::build(&job, "routine_wiki_edit", &table).expect("plan"),
    ))
}

fn wikipedia_rows() -> Vec<(String, String)> {
    let channels = [
        "#en.wikipedia",
        "#ca.wikipedia",
        "#de.wikipedia",
        "#fr.wikipedia",
    ];
    (0..ROWS)
        .map(|i| {
            let time = format!("2015-09-12 {:02}:{:02}:{:02}", (i / 3600) % 24, (i / 60) % 60, i % 60);
            let channel = channels[i % channels.len()];
            let user = format!("User{}", i % 5000);
            let flags = [(i % 2), (i % 3 == 0) as usize, 0, (i % 7 == 0) as usize, 1];
            let (delta, added, deleted) = ((i % 400) as i64 - 200, i % 300, i % 50);
            let csv = format!(
                "{time},{channel},{user},{},{},{},{},{},{delta},{added},{deleted}",
                flags[0], flags[1], flags[2], flags[3], flags[4]
            );
            let json = format!(
                r#"{{"event_time":"{time}","channel":"{channel}","user":"{user}","is_anonymous":{},"is_minor":{},"is_new":{},"is_robot":{},"is_unpatrolled":{},"delta":{delta},"added":{added},"deleted":{deleted}}}"#,
                flags[0], flags[1], flags[2], flags[3], flags[4]
            );
            (csv, json)
        })
        .collect()
}

const WIDE_TYPES: [&str; 7] = [
    "BIGINT",
    "INT",
    "DOUBLE",
    "VARCHAR(64)",
    "DATETIME",
    "DECIMAL(18,4)",
    "DATE",
];

/// An engine for the 50-column table (`c00`..`c49`), CSV, with the end-to-end bench's WHERE.
fn wide_engine() -> LoadEngine {
    let columns: String = (0..50)
        .map(|c| format!("  - {{name: c{c:02}, type: '{}'}}\n", WIDE_TYPES[c % 7]))
        .collect();
    let table: TableSpec = serde_yaml::from_str(&format!(
        "location: 'file:///tmp/wide50'\ncolumns:\n{columns}"
    ))
    .expect("table");
    let job: RoutineLoadJobSpec = serde_yaml::from_str(
        "table: wide\nkafka: {brokerList: 'localhost:9092', topic: wide}\ncolumnSeparator: ','\nwhere: c00 >= 0",
    )
    .expect("job");
    LoadEngine::new(Arc::new(
        LoadPlan::build(&job, "wide", &table).expect("plan"),
    ))
}

/// Row `i` of the end-to-end pipeline bench's 50-column data set.
fn wide_row(i: usize) -> String {
    const PAD: &str =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..50)
        .map(|c| match c % 7 {
            0 => ((i as i64) * 1000 + c as i64).to_string(),
            1 => ((i + c) % 1_000_000).to_string(),
            2 => format!("{:.3}", (i as f64) * 0.37 + c as f64),
            3 => format!("v{c}-{}", &PAD[..(i + c) % 17 + 4]),
            4 => format!(
                "2015-09-12 {:02}:{:02}:{:02}",
                (i / 3600) % 24,
                (i / 60 + c) % 60,
                i % 60
            ),
            5 => format!("{}.{:04}", i % 100_000, (i * 7 + c) % 10_000),
            _ => format!("2015-{:02}-{:02}", c % 12 + 1, i % 28 + 1),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Row `i` of the end-to-end pipeline bench's JSON data set.
fn padded_json_row(i: usize) -> String {
    const PAD: &str =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let channels = [
        "#en.wikipedia",
        "#ca.wikipedia",
        "#de.wikipedia",
        "#fr.wikipedia",
    ];
    let time = format!(
        "2015-09-12 {:02}:{:02}:{:02}",
        (i / 3600) % 24,
        (i / 60) % 60,
        i % 60
    );
    let user = format!("Editor{i:08}_{}", &PAD[..60 + i % 29]);
    format!(
        r#"{{"added":{},"channel":"{}","deleted":{},"delta":{},"event_time":"{time}","is_anonymous":{},"is_minor":{},"is_new":0,"is_robot":{},"is_unpatrolled":1,"user":"{user}"}}"#,
        i % 300,
        channels[i % 4],
        i % 50,
        (i % 400) as i64 - 200,
        i % 2,
        i.is_multiple_of(3) as u8,
        i.is_multiple_of(7) as u8,
    )
}

/// The Wikipedia rows' Avro schema (the registry's schema id 1).
const WIKIPEDIA_AVRO: &str = r#"{"type": "record", "name": "edit", "fields": [
    {"name": "event_time", "type": "string"}, {"name": "channel", "type": "string"},
    {"name": "user", "type": "string"}, {"name": "is_anonymous", "type": "int"},
    {"name": "is_minor", "type": "int"}, {"name": "is_new", "type": "int"},
    {"name": "is_robot", "type": "int"}, {"name": "is_unpatrolled", "type": "int"},
    {"name": "delta", "type": "long"}, {"name": "added", "type": "long"},
    {"name": "deleted", "type": "long"}]}"#;

/// A registry that holds WIKIPEDIA_AVRO as id 1.
struct OneSchema;

impl SchemaSource for OneSchema {
    fn schema(&self, id: u32) -> Result<RegisteredSchema, String> {
        Ok(match id {
            1 => RegisteredSchema::Avro {
                schema: WIKIPEDIA_AVRO.to_string(),
                references: Vec::new(),
            },
            _ => RegisteredSchema::NotFound,
        })
    }
}

/// A JSON row of `wikipedia_rows` as an Avro message in the Confluent wire format.
fn avro_row(schema: &Schema, json: &str) -> Vec<u8> {
    let row: serde_json::Value = serde_json::from_str(json).expect("json row");
    let field = |name: &str| {
        let v = &row[name];
        let value = match v.as_str() {
            Some(s) => Avro::String(s.to_string()),
            None if matches!(name, "delta" | "added" | "deleted") => {
                Avro::Long(v.as_i64().expect("number"))
            }
            None => Avro::Int(v.as_i64().expect("number") as i32),
        };
        (name.to_string(), value)
    };
    let names = [
        "event_time",
        "channel",
        "user",
        "is_anonymous",
        "is_minor",
        "is_new",
        "is_robot",
        "is_unpatrolled",
        "delta",
        "added",
        "deleted",
    ];
    let mut out = vec![0, 0, 0, 0, 1];
    #[allow(deprecated)]
    out.extend(
        avro::to_avro_datum(schema, Avro::Record(names.map(field).to_vec())).expect("encode"),
    );
    out
}

fn bench(c: &mut Criterion) {
    let rows = wikipedia_rows();
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sample_size(20);

    let csv: Vec<SourceMessage<'_>> = rows
        .iter()
        .enumerate()
        .map(|(i, (csv, _))| SourceMessage {
            partition: 0,
            offset: i as i64,
            payload: csv.as_bytes(),
            ..Default::default()
        })
        .collect();
    let mut csv_engine = engine("columnSeparator: ','");
    group.bench_function("wikipedia_csv", |b| {
        b.iter(|| csv_engine.load(&csv).expect("load").counters.loaded_rows)
    });

    let mut derived_engine = engine(
        "columnSeparator: ','\ncolumns: [event_time, channel, user, is_anonymous, is_minor, is_new, is_robot, is_unpatrolled, raw_delta, added, deleted, 'delta = cast(raw_delta as int) * 2']\nwhere: added > 10",
    );
    group.bench_function("wikipedia_csv_derived_where", |b| {
        b.iter(|| {
            derived_engine
                .load(&csv)
                .expect("load")
                .counters
                .loaded_rows
        })
    });

    let json: Vec<SourceMessage<'_>> = rows
        .iter()
        .enumerate()
        .map(|(i, (_, json))| SourceMessage {
            partition: 0,
            offset: i as i64,
            payload: json.as_bytes(),
            ..Default::default()
        })
        .collect();
    let mut json_engine = engine("format: json");
    group.bench_function("wikipedia_json", |b| {
        b.iter(|| json_engine.load(&json).expect("load").counters.loaded_rows)
    });

    // The end-to-end bench's JSON rows: members in name order (as `serde_json` writes a map),
    // the user padded so messages average ~270 bytes.
    let padded: Vec<String> = (0..ROWS).map(padded_json_row).collect();
    let padded: Vec<SourceMessage<'_>> = padded
        .iter()
        .enumerate()
        .map(|(i, json)| SourceMessage {
            partition: 0,
            offset: i as i64,
            payload: json.as_bytes(),
            ..Default::default()
        })
        .collect();
    group.bench_function("wikipedia_json_padded", |b| {
        b.iter(|| {
            json_engine
                .load(&padded)
                .expect("load")
                .counters
                .loaded_rows
        })
    });

    // The end-to-end bench's 50-column rows (BIGINT, INT, DOUBLE, VARCHAR(64), DATETIME,
    // DECIMAL(18,4), DATE in turn, ~614 bytes): where the typed conversion costs most.
    let wide: Vec<String> = (0..ROWS).map(wide_row).collect();
    let wide: Vec<SourceMessage<'_>> = wide
        .iter()
        .enumerate()
        .map(|(i, csv)| SourceMessage {
            partition: 0,
            offset: i as i64,
            payload: csv.as_bytes(),
            ..Default::default()
        })
        .collect();
    let mut wide_engine = wide_engine();
    group.bench_function("wide50_csv", |b| {
        b.iter(|| {
            let out = wide_engine.load(&wide).expect("load");
            assert_eq!(out.counters.error_rows, 0);
            out.counters.loaded_rows
        })
    });

    let schema = Schema::parse_str(WIKIPEDIA_AVRO).expect("schema");
    let avro_rows: Vec<Vec<u8>> = rows
        .iter()
        .map(|(_, json)| avro_row(&schema, json))
        .collect();
    let avro_messages: Vec<SourceMessage<'_>> = avro_rows
        .iter()
        .enumerate()
        .map(|(i, payload)| SourceMessage {
            partition: 0,
            offset: i as i64,
            payload,
            ..Default::default()
        })
        .collect();
    let mut avro_engine = engine("format: avro\nschemaRegistry: {url: 'http://registry:8081'}");
    avro_engine.set_schema_source(Arc::new(OneSchema));
    group.bench_function("wikipedia_avro", |b| {
        b.iter(|| {
            let out = avro_engine.load(&avro_messages).expect("load");
            assert_eq!(out.counters.error_rows, 0);
            out.counters.loaded_rows
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
