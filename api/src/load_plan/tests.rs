use super::*;
use crate::job::RoutineLoadJobSpec;
use crate::table::TableSpec;

use crate::reference::WIKIPEDIA_TABLE_YAML as WIKIPEDIA_TABLE;

fn table(yaml: &str) -> TableSpec {
    serde_yaml::from_str(yaml).expect("table yaml")
}

fn job(yaml: &str) -> RoutineLoadJobSpec {
    serde_yaml::from_str(yaml).expect("job yaml")
}

const ARITH_TABLE: &str = r#"
location: file:///tmp/t
columns:
  - {name: col1, type: INT}
  - {name: col2, type: INT}
  - {name: col3, type: VARCHAR(10)}
  - {name: col4, type: BIGINT}
"#;

#[test]
fn wikipedia_quick_start_plans() {
    let spec = job(r#"
table: routine_wiki_edit
columnSeparator: ","
columns: [event_time, channel, user, is_anonymous, is_minor, is_new, is_robot, is_unpatrolled, delta, added, deleted]
desiredConcurrentNumber: 1
maxErrorNumber: 1000
kafka: {brokerList: "localhost:9092", topic: starrocks-load}
"#);
    let plan = LoadPlan::build(&spec, "routine_wiki_edit", &table(WIKIPEDIA_TABLE)).unwrap();
    assert_eq!(plan.source_fields.len(), 11);
    assert_eq!(plan.csv.column_separator, b",");
    assert!(plan.source_fields.iter().all(|f| f.column_type.is_some()));
    assert_eq!(plan.table_schema.fields().len(), 11);
    assert!(
        plan.strict_mode,
        "strict mode is on by default, as in the reference"
    );
    assert_eq!(spec.max_batch_interval, 10);
    assert_eq!(spec.max_batch_rows, 200_000);
}

#[test]
fn placeholder_and_derived_columns() {
    let spec = job(r#"
table: t
columns: [col2, col1, temp, col3, "col4 = col1 + col2"]
where: col4 > 10
kafka: {brokerList: "b:9092", topic: t}
"#);
    let plan = LoadPlan::build(&spec, "t", &table(ARITH_TABLE)).unwrap();
    let names: Vec<_> = plan.source_fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["col2", "col1", "temp", "col3"]);
    assert_eq!(
        plan.source_fields[2].column_type, None,
        "temp is a placeholder"
    );
    assert!(matches!(plan.columns[0].source, ColumnSource::Field(1)));
    assert!(matches!(
        plan.columns[3].source,
        ColumnSource::Derived { .. }
    ));
    assert!(plan.where_filter.is_some());
}

#[test]
fn refuses_jobs_that_cannot_run_with_precise_messages() {
    let cases: &[(&str, &str)] = &[
        (
            "columns: [col1, col1]",
            "column 'col1' appears more than once in COLUMNS",
        ),
        (
            "columns: [col1, \"colx = col1 + 1\"]",
            "derived column 'colx' is not a column of table 't'",
        ),
        (
            "columns: [col1, \"col4 = col1 + nope\"]",
            "refers to unknown column 'nope'",
        ),
        (
            "columns: [col1, \"col4 = col1 +\"]",
            "bad expression for derived column 'col4'",
        ),
        (
            "columns: [col1, \"col4 = no_such_function(col1)\"]",
            "bad expression for derived column 'col4'",
        ),
        (
            "where: missing > 1",
            "WHERE refers to unknown column 'missing'",
        ),
        ("where: col1 + 1", "not a boolean"),
        (
            "columns: [\"a, b\"]",
            "is neither a column name nor 'name = expression'",
        ),
        ("timezone: Mars/Olympus", "unknown timezone 'Mars/Olympus'"),
        (
            "columnSeparator: \"\"",
            "columnSeparator: must be 1 to 50 bytes",
        ),
        (
            "partitions: [\"dt=2024-01-01\"]",
            "table 't' is not partitioned",
        ),
        (
            "kafka: {brokerList: b, topic: t, properties: {sasl.password: hunter2}}",
            "kafka.properties holds 'sasl.password', a secret",
        ),
    ];
    for (extra, message) in cases {
        let kafka = if extra.starts_with("kafka:") {
            ""
        } else {
            "kafka: {brokerList: b, topic: t}\n"
        };
        let spec = job(&format!("table: t\n{kafka}{extra}\n"));
        let err = LoadPlan::build(&spec, "t", &table(ARITH_TABLE))
            .expect_err(extra)
            .to_string();
        assert!(
            err.contains(message),
            "{extra}: got '{err}', want '{message}'"
        );
    }
}

#[test]
fn not_null_column_needs_a_source_or_default() {
    let t = table(
        r#"
location: file:///tmp/t
columns:
  - {name: id, type: INT}
  - {name: required, type: INT, nullable: false}
  - {name: defaulted, type: INT, nullable: false, default: "7"}
  - {name: bad_default, type: DATE, default: "not a date"}
"#,
    );
    let err = LoadPlan::build(
        &job("table: t\ncolumns: [id]\nkafka: {brokerList: b, topic: t}"),
        "t",
        &t,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "column 'required' is NOT NULL and has no default, but the job gives it no source: add it to COLUMNS"
    );
    let err = LoadPlan::build(
        &job("table: t\ncolumns: [id, required]\nkafka: {brokerList: b, topic: t}"),
        "t",
        &t,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "default 'not a date' of column 'bad_default' is not a valid DATE"
    );
}

#[test]
fn derived_type_that_cannot_convert_is_refused() {
    let t = table(
        r#"
location: file:///tmp/t
columns:
  - {name: d, type: DATE}
  - {name: b, type: BOOLEAN}
"#,
    );
    let err = LoadPlan::build(
        &job("table: t\ncolumns: [b, \"d = b\"]\nkafka: {brokerList: b, topic: t}"),
        "t",
        &t,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("derived column 'd' produces Boolean, which can't be converted to DATE"),
        "{err}"
    );
}

#[test]
fn json_paths_must_match_source_fields() {
    let spec = job(
        "table: t\nformat: json\ncolumns: [col1, col2]\njsonPaths: [\"$.a\"]\nkafka: {brokerList: b, topic: t}",
    );
    let err = LoadPlan::build(&spec, "t", &table(ARITH_TABLE)).unwrap_err();
    assert!(
        err.to_string().contains("1 paths for 2 source fields"),
        "{err}"
    );
}

#[test]
fn target_partitions_are_checked_against_partition_columns() {
    let t = table(
        r#"
location: file:///tmp/t
partitionColumns: [dt]
columns:
  - {name: id, type: INT}
  - {name: dt, type: DATE}
"#,
    );
    let ok = job(
        "table: t\npartitions: [\"dt=2024-01-01\", \"dt = 2024-01-02\"]\nkafka: {brokerList: b, topic: t}",
    );
    let plan = LoadPlan::build(&ok, "t", &t).unwrap();
    let allowed: Vec<_> = plan.allowed_partitions.unwrap().into_iter().collect();
    assert_eq!(allowed, ["dt=2024-01-01", "dt=2024-01-02"]);
    let bad = job("table: t\npartitions: [\"id=1\"]\nkafka: {brokerList: b, topic: t}");
    let err = LoadPlan::build(&bad, "t", &t).unwrap_err();
    assert!(
        err.to_string()
            .contains("name the partition columns in table order: dt"),
        "{err}"
    );
}

#[test]
fn separators_accept_escapes() {
    assert_eq!(unescape("\\t"), b"\t");
    assert_eq!(unescape("\\x01"), [1u8]);
    assert_eq!(unescape("||"), b"||");
}

#[test]
fn kafka_metadata_columns_plan() {
    let spec = job(r#"
table: t
columns: [col1, "col3 = concat(k, '@', ts)"]
includeMetadata: {key: k, timestampMs: ts, offset: col4}
where: k is not null
kafka: {brokerList: "b:9092", topic: t}
"#);
    let plan = LoadPlan::build(&spec, "t", &table(ARITH_TABLE)).unwrap();
    let names: Vec<_> = plan
        .metadata
        .iter()
        .map(|m| (m.kind, m.name.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            (MetadataKind::Key, "k"),
            (MetadataKind::Offset, "col4"),
            (MetadataKind::TimestampMs, "ts")
        ]
    );
    // col4 is a table column: it loads from the OFFSET metadata column.
    assert!(matches!(
        plan.columns[3].source,
        ColumnSource::Derived { .. }
    ));
    assert_eq!(
        plan.where_metadata.len(),
        2,
        "k and ts are WHERE inputs too"
    );

    let clash = job(r#"
table: t
columns: [col1, k]
includeMetadata: {key: k}
kafka: {brokerList: "b:9092", topic: t}
"#);
    let err = LoadPlan::build(&clash, "t", &table(ARITH_TABLE)).unwrap_err();
    assert!(
        err.to_string()
            .contains("KEY AS k: 'k' is also a COLUMNS entry"),
        "{err}"
    );
}
