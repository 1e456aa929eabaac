use std::sync::Arc;

use deltalake::arrow::array::{Array, AsArray};
use deltalake::arrow::datatypes::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type,
    Int64Type, TimestampMicrosecondType,
};
use deltalake::arrow::util::display::array_value_to_string;
use routine_load_api::load_plan::LoadPlan;
use routine_load_api::reference::WIKIPEDIA_TABLE_YAML as WIKIPEDIA_TABLE;
use routine_load_api::{RoutineLoadJobSpec, TableSpec};

use super::*;

fn engine(table_yaml: &str, job_yaml: &str) -> LoadEngine {
    let table: TableSpec = serde_yaml::from_str(table_yaml).expect("table yaml");
    let job: RoutineLoadJobSpec = serde_yaml::from_str(&format!(
        "table: t\nkafka: {{brokerList: 'b:9092', topic: t}}\n{job_yaml}"
    ))
    .expect("job yaml");
    LoadEngine::new(Arc::new(LoadPlan::build(&job, "t", &table).expect("plan")))
}

fn load(engine: &mut LoadEngine, payloads: &[&str]) -> LoadedBatch {
    let messages: Vec<SourceMessage<'_>> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| SourceMessage {
            partition: 0,
            offset: i as i64,
            payload: p.as_bytes(),
            ..Default::default()
        })
        .collect();
    engine.load(&messages).expect("load")
}

/// Every loaded value of column `c` as text ("NULL" for null).
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

const WIKIPEDIA_JOB: &str = r#"
columnSeparator: ","
columns: [event_time, channel, user, is_anonymous, is_minor, is_new, is_robot, is_unpatrolled, delta, added, deleted]
desiredConcurrentNumber: 1
maxErrorNumber: 1000
"#;

#[test]
fn wikipedia_quick_start_rows_load_typed() {
    let mut e = engine(WIKIPEDIA_TABLE, WIKIPEDIA_JOB);
    let payloads = [
        "2015-09-12 00:47:00,#en.wikipedia,GELongstreet,0,0,0,0,0,36,36,0",
        "2015-09-12 00:47:05,#ca.wikipedia,PereBot,0,1,0,1,0,17,17,0\n",
        "2015-09-12 00:48:00,#en.wikipedia,Bad,0,0,0,0,0,not-a-number,1,0",
    ];
    let out = load(&mut e, &payloads);
    assert_eq!(out.counters.total_rows, 3);
    assert_eq!(out.counters.loaded_rows, 2);
    assert_eq!(out.counters.error_rows, 1);
    assert_eq!(
        out.counters.received_bytes as usize,
        payloads.iter().map(|p| p.len()).sum::<usize>()
    );
    assert_eq!(
        column(&out, "event_time"),
        ["2015-09-12T00:47:00", "2015-09-12T00:47:05"]
    );
    assert_eq!(column(&out, "channel"), ["#en.wikipedia", "#ca.wikipedia"]);
    assert_eq!(column(&out, "user"), ["GELongstreet", "PereBot"]);
    let minor = out
        .batch
        .column_by_name("is_minor")
        .unwrap()
        .as_primitive::<Int8Type>();
    assert_eq!(minor.values().to_vec(), [0, 1]);
    let delta = out
        .batch
        .column_by_name("delta")
        .unwrap()
        .as_primitive::<Int32Type>();
    assert_eq!(delta.values().to_vec(), [36, 17]);
    let error = &out.errors[0];
    assert_eq!(error.reason, "convert csv string to INT failed");
    assert_eq!(error.column.as_deref(), Some("delta"));
    assert_eq!(error.value.as_deref(), Some("not-a-number"));
    assert_eq!(error.offset, 2);
    assert!(error.row.contains("Bad"), "{}", error.row);
}

/// One row per case: (column type, field text, strict result, non-strict result), where a result
/// is `Ok(loaded value)` or `Err(reason)`.
#[test]
fn every_column_type_in_strict_and_non_strict_mode() {
    type Case = (
        &'static str,
        &'static str,
        Result<&'static str, &'static str>,
        Result<&'static str, &'static str>,
    );
    let cases: &[Case] = &[
        ("BOOLEAN", "true", Ok("true"), Ok("true")),
        ("BOOLEAN", "0", Ok("false"), Ok("false")),
        (
            "BOOLEAN",
            "maybe",
            Err("convert csv string to BOOLEAN failed"),
            Ok("NULL"),
        ),
        ("TINYINT", "-128", Ok("-128"), Ok("-128")),
        (
            "TINYINT",
            "128",
            Err("the length of input is too long than schema"),
            Ok("NULL"),
        ),
        (
            "TINYINT",
            "x",
            Err("convert csv string to TINYINT failed"),
            Ok("NULL"),
        ),
        ("SMALLINT", "32767", Ok("32767"), Ok("32767")),
        (
            "SMALLINT",
            "40000",
            Err("the length of input is too long than schema"),
            Ok("NULL"),
        ),
        ("INT", "-2147483648", Ok("-2147483648"), Ok("-2147483648")),
        (
            "INT",
            "abc",
            Err("convert csv string to INT failed"),
            Ok("NULL"),
        ),
        (
            "INT",
            "2147483648",
            Err("the length of input is too long than schema"),
            Ok("NULL"),
        ),
        (
            "BIGINT",
            "9223372036854775807",
            Ok("9223372036854775807"),
            Ok("9223372036854775807"),
        ),
        (
            "BIGINT",
            "1.5",
            Err("convert csv string to BIGINT failed"),
            Ok("NULL"),
        ),
        (
            "LARGEINT",
            "170141183460469231731687303715884105",
            Ok("170141183460469231731687303715884105"),
            Ok("170141183460469231731687303715884105"),
        ),
        ("FLOAT", "1.5", Ok("1.5"), Ok("1.5")),
        (
            "FLOAT",
            "1.5x",
            Err("convert csv string to FLOAT failed"),
            Ok("NULL"),
        ),
        ("DOUBLE", ".356", Ok("0.356"), Ok("0.356")),
        (
            "DOUBLE",
            "nan",
            Err("convert csv string to DOUBLE failed"),
            Ok("NULL"),
        ),
        ("DECIMAL(5,2)", "123.45", Ok("123.45"), Ok("123.45")),
        (
            "DECIMAL(5,2)",
            "1.234",
            Err("The frac part length longer than schema scale"),
            Ok("NULL"),
        ),
        (
            "DECIMAL(5,2)",
            "1234.5",
            Err("The int part length longer than schema precision"),
            Ok("NULL"),
        ),
        (
            "DECIMAL(38,2)",
            "123456789012345678901234567890123456789",
            Err("The length of decimal value is overflow"),
            Ok("NULL"),
        ),
        (
            "DECIMAL(5,2)",
            "12a",
            Err("convert csv string to DECIMAL128 failed"),
            Ok("NULL"),
        ),
        ("DATE", "2017-10-03", Ok("2017-10-03"), Ok("2017-10-03")),
        (
            "DATE",
            "2017-13-03",
            Err("convert csv string to DATE failed"),
            Ok("NULL"),
        ),
        (
            "DATETIME",
            "2017-06-13 12:34:03",
            Ok("2017-06-13T12:34:03"),
            Ok("2017-06-13T12:34:03"),
        ),
        (
            "DATETIME",
            "13/06/2017",
            Err("convert csv string to DATETIME failed"),
            Ok("NULL"),
        ),
        ("CHAR(3)", "abc", Ok("abc"), Ok("abc")),
        (
            "CHAR(3)",
            "abcd",
            Err("the length of input is too long than schema"),
            Err("the length of input is too long than schema"),
        ),
        (
            "VARCHAR(5)",
            "héllo",
            Err("the length of input is too long than schema"),
            Err("the length of input is too long than schema"),
        ),
        ("VARCHAR(6)", "héllo", Ok("héllo"), Ok("héllo")),
        ("STRING", "anything", Ok("anything"), Ok("anything")),
        ("JSON", r#"{"a":1}"#, Ok(r#"{"a":1}"#), Ok(r#"{"a":1}"#)),
        (
            "JSON",
            "{not json",
            Err("convert csv string to JSON failed"),
            Ok("NULL"),
        ),
        ("INT", "\\N", Ok("NULL"), Ok("NULL")),
    ];
    for strict in [true, false] {
        for (column_type, text, strict_result, lenient_result) in cases {
            let table = format!(
                "location: file:///tmp/t\ncolumns:\n  - {{name: id, type: INT}}\n  - {{name: v, type: '{column_type}'}}\n"
            );
            let mut e = engine(
                &table,
                &format!("columnSeparator: '|'\nstrictMode: {strict}"),
            );
            let out = load(&mut e, &[&format!("1|{text}")]);
            let expected = if strict {
                strict_result
            } else {
                lenient_result
            };
            let context = format!("{column_type} '{text}' strict={strict}");
            match expected {
                Ok(value) => {
                    assert!(
                        out.errors.is_empty(),
                        "{context}: unexpected {:?}",
                        out.errors
                    );
                    assert_eq!(column(&out, "v"), [*value], "{context}");
                }
                Err(reason) => {
                    assert_eq!(out.counters.loaded_rows, 0, "{context}");
                    assert_eq!(out.errors.len(), 1, "{context}");
                    assert_eq!(out.errors[0].reason, *reason, "{context}");
                    assert_eq!(out.errors[0].column.as_deref(), Some("v"), "{context}");
                }
            }
        }
    }
}

#[test]
fn typed_values_have_the_storage_types() {
    let table = r#"
location: file:///tmp/t
columns:
  - {name: t8, type: TINYINT}
  - {name: t16, type: SMALLINT}
  - {name: t64, type: BIGINT}
  - {name: f, type: FLOAT}
  - {name: d, type: DOUBLE}
  - {name: dec, type: 'DECIMAL(6,3)'}
  - {name: day, type: DATE}
  - {name: ts, type: DATETIME}
"#;
    let mut e = engine(table, "columnSeparator: ','");
    let out = load(
        &mut e,
        &["1,2,3,1.5,2.5,-12.345,1970-01-11,1970-01-01 00:00:01.25"],
    );
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let b = &out.batch;
    assert_eq!(b.column(0).as_primitive::<Int8Type>().value(0), 1);
    assert_eq!(b.column(1).as_primitive::<Int16Type>().value(0), 2);
    assert_eq!(b.column(2).as_primitive::<Int64Type>().value(0), 3);
    assert_eq!(b.column(3).as_primitive::<Float32Type>().value(0), 1.5);
    assert_eq!(b.column(4).as_primitive::<Float64Type>().value(0), 2.5);
    assert_eq!(
        b.column(5).as_primitive::<Decimal128Type>().value(0),
        -12345
    );
    assert_eq!(b.column(6).as_primitive::<Date32Type>().value(0), 10);
    assert_eq!(
        b.column(7)
            .as_primitive::<TimestampMicrosecondType>()
            .value(0),
        1_250_000
    );
}

#[test]
fn column_count_mismatches_are_error_rows() {
    let mut e = engine(WIKIPEDIA_TABLE, WIKIPEDIA_JOB);
    let out = load(
        &mut e,
        &[
            "2015-09-12 00:47:00,#en.wikipedia,only-three",
            "2015-09-12 00:47:00,#en.wikipedia,u,0,0,0,0,0,1,1,0,extra",
        ],
    );
    let reasons: Vec<_> = out.errors.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "actual column number is less than schema column number",
            "actual column number is more than schema column number"
        ]
    );
    assert_eq!(out.counters.loaded_rows, 0);
    assert_eq!(out.counters.total_rows, 2);
}

#[test]
fn null_marker_and_not_null_columns() {
    let mut e = engine(WIKIPEDIA_TABLE, WIKIPEDIA_JOB);
    let out = load(
        &mut e,
        &[
            "2015-09-12 00:47:00,\\N,u,0,0,0,0,0,1,1,0",
            "\\N,#en,u,0,0,0,0,0,1,1,0",
        ],
    );
    assert_eq!(column(&out, "channel"), ["NULL"]);
    assert_eq!(out.errors.len(), 1);
    assert_eq!(out.errors[0].reason, "NULL value in non-nullable column");
    assert_eq!(out.errors[0].column.as_deref(), Some("event_time"));
}

/// CSV converts a chunk of rows a column at a time; a failing field must still fail its row from
/// that field on, whatever column and whatever chunk it is in. Seven kinds of rows over 700 rows
/// (three chunks), each with the outcome row-by-row conversion gives.
#[test]
fn csv_failures_are_the_first_failing_field_of_their_row_across_chunks() {
    const TABLE: &str = r#"
location: 'file:///tmp/t'
columns:
  - {name: id, type: BIGINT, nullable: false}
  - {name: name, type: VARCHAR(5)}
  - {name: n, type: INT}
  - {name: d, type: DATE, nullable: false}
"#;
    let mut e = engine(TABLE, "columnSeparator: ','\nstrictMode: false");
    // (row, Ok(n as loaded) or Err((reason, column)))
    let kind = |i: usize| -> (String, Result<&str, (&str, Option<&str>)>) {
        match i % 7 {
            0 => (format!("{i},ab,{i},2015-09-12"), Ok("good")),
            1 => (format!("{i},ab,{i}"), Err((reason::FEWER_COLUMNS, None))),
            // Two bad fields: the first one names the failure.
            2 => (
                format!("{i},abcdefg,{i},nope"),
                Err((reason::TOO_LONG, Some("name"))),
            ),
            3 => (format!("{i},ab,x{i},2015-09-12"), Ok("NULL")),
            4 => (
                format!("\\N,abcdefg,{i},2015-09-12"),
                Err((reason::NULL_IN_NOT_NULL, Some("id"))),
            ),
            5 => (
                format!("{i},ab,{i},2015-13-01"),
                Err((reason::NULL_IN_NOT_NULL, Some("d"))),
            ),
            _ => (format!("{i},ab,99999999999,2015-09-12"), Ok("NULL")),
        }
    };
    let rows: Vec<_> = (0..700).map(kind).collect();
    let payloads: Vec<&str> = rows.iter().map(|(row, _)| row.as_str()).collect();
    let out = load(&mut e, &payloads);

    let loaded: Vec<usize> = (0..700).filter(|&i| rows[i].1.is_ok()).collect();
    assert_eq!(out.counters.total_rows, 700);
    assert_eq!(out.counters.loaded_rows as usize, loaded.len());
    let ids: Vec<String> = loaded.iter().map(|i| i.to_string()).collect();
    assert_eq!(column(&out, "id"), ids);
    let n: Vec<String> = loaded
        .iter()
        .map(|&i| match rows[i].1 {
            Ok("good") => i.to_string(),
            _ => "NULL".to_string(),
        })
        .collect();
    assert_eq!(column(&out, "n"), n);
    assert!(column(&out, "name").iter().all(|v| v == "ab"));
    let errors: Vec<(i64, &str, Option<&str>)> = out
        .errors
        .iter()
        .map(|e| (e.offset, e.reason.as_str(), e.column.as_deref()))
        .collect();
    let expected: Vec<(i64, &str, Option<&str>)> = (0..700)
        .filter_map(|i| rows[i].1.err().map(|(why, col)| (i as i64, why, col)))
        .collect();
    assert_eq!(errors, expected);
}

#[test]
fn invalid_utf8_is_an_error_row() {
    let mut e = engine(WIKIPEDIA_TABLE, WIKIPEDIA_JOB);
    let bad = b"2015-09-12 00:47:00,#en,\xff\xfe,0,0,0,0,0,1,1,0";
    let messages = [SourceMessage {
        partition: 3,
        offset: 42,
        payload: bad,
        ..Default::default()
    }];
    let out = e.load(&messages).unwrap();
    assert_eq!(out.errors.len(), 1);
    assert_eq!(out.errors[0].reason, "invalid UTF-8 in the input");
    assert_eq!((out.errors[0].partition, out.errors[0].offset), (3, 42));
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
fn placeholder_absorbs_a_source_field() {
    let mut e = engine(
        ARITH_TABLE,
        "columnSeparator: ','\ncolumns: [col2, col1, temp, col3]",
    );
    let out = load(&mut e, &["2,1,ignored,c"]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(column(&out, "col1"), ["1"]);
    assert_eq!(column(&out, "col2"), ["2"]);
    assert_eq!(column(&out, "col3"), ["c"]);
    assert_eq!(column(&out, "col4"), ["NULL"]);
    assert_eq!(out.batch.num_columns(), 4, "the placeholder is not loaded");
}

#[test]
fn derived_column_with_where_on_it() {
    let mut e = engine(
        ARITH_TABLE,
        "columnSeparator: ','\ncolumns: [col2, col1, temp, col3, 'col4 = col1 + col2']\nwhere: col4 > 10",
    );
    let out = load(&mut e, &["2,1,x,a", "20,5,x,b", "7,4,x,c", "bad,1,x,d"]);
    assert_eq!(column(&out, "col4"), ["25", "11"]);
    assert_eq!(column(&out, "col3"), ["b", "c"]);
    assert_eq!(out.counters.unselected_rows, 1, "2+1 is not > 10");
    assert_eq!(out.counters.error_rows, 1);
    assert_eq!(out.counters.total_rows, 4);
    assert_eq!(out.counters.loaded_rows, 2);
    assert_eq!(out.errors[0].reason, "convert csv string to INT failed");
}

#[test]
fn starrocks_functions_in_columns_and_where() {
    let table = r#"
location: file:///tmp/t
columns:
  - {name: id, type: INT}
  - {name: day, type: DATE}
  - {name: ts, type: DATETIME}
  - {name: label, type: VARCHAR(64)}
  - {name: epoch, type: BIGINT}
  - {name: kind, type: VARCHAR(16)}
"#;
    let job = r#"
columnSeparator: ','
timezone: Asia/Shanghai
columns:
  - id
  - raw_day
  - raw_epoch
  - name
  - "day = str_to_date(raw_day, '%d/%m/%Y')"
  - "ts = from_unixtime(cast(raw_epoch as bigint))"
  - "label = concat(date_format(str_to_date(raw_day, '%d/%m/%Y'), '%Y%m'), '-', ifnull(name, 'anon'))"
  - "epoch = unix_timestamp(from_unixtime(cast(raw_epoch as bigint)))"
  - "kind = if(id % 2 = 0, 'even', 'odd')"
where: "name like 'a%' or name is null or id in (7, 8)"
"#;
    let mut e = engine(table, job);
    let out = load(
        &mut e,
        &[
            "1,03/10/2017,0,alice",
            "2,04/10/2017,3600,\\N",
            "3,05/10/2017,0,bob",
            "8,06/10/2017,0,bob",
        ],
    );
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(column(&out, "id"), ["1", "2", "8"]);
    assert_eq!(
        column(&out, "day"),
        ["2017-10-03", "2017-10-04", "2017-10-06"]
    );
    // from_unixtime renders in the job's time zone (UTC+8).
    assert_eq!(
        column(&out, "ts"),
        [
            "1970-01-01T08:00:00",
            "1970-01-01T09:00:00",
            "1970-01-01T08:00:00"
        ]
    );
    assert_eq!(
        column(&out, "label"),
        ["201710-alice", "201710-anon", "201710-bob"]
    );
    assert_eq!(column(&out, "epoch"), ["0", "3600", "0"]);
    assert_eq!(column(&out, "kind"), ["odd", "even", "even"]);
    assert_eq!(out.counters.unselected_rows, 1);
}

#[test]
fn derived_values_follow_strict_mode() {
    let table = "location: file:///tmp/t\ncolumns:\n  - {name: raw, type: STRING}\n  - {name: day, type: DATE}\n";
    // The expression yields text, which converts to DATE with the load rules.
    let job = "columnSeparator: ','\ncolumns: [raw, \"day = concat(raw, '')\"]";
    let mut strict = engine(table, &format!("{job}\nstrictMode: true"));
    let out = load(&mut strict, &["2024-01-05", "garbage"]);
    assert_eq!(column(&out, "day"), ["2024-01-05"]);
    assert_eq!(out.errors.len(), 1);
    assert_eq!(out.errors[0].column.as_deref(), Some("day"));
    assert_eq!(out.errors[0].value.as_deref(), Some("garbage"));
    assert_eq!(out.errors[0].reason, "convert csv string to DATE failed");
    let mut lenient = engine(table, &format!("{job}\nstrictMode: false"));
    let out = load(&mut lenient, &["2024-01-05", "garbage"]);
    assert!(out.errors.is_empty());
    assert_eq!(column(&out, "day"), ["2024-01-05", "NULL"]);
}

#[test]
fn functions_returning_null_are_not_strict_mode_errors() {
    // As in StarRocks, strict mode does not apply to values generated by functions.
    let table = "location: file:///tmp/t\ncolumns:\n  - {name: raw, type: STRING}\n  - {name: day, type: DATE}\n";
    let job = "columnSeparator: ','\nstrictMode: true\ncolumns: [raw, \"day = str_to_date(raw, '%Y%m%d')\"]";
    let mut e = engine(table, job);
    let out = load(&mut e, &["20240105", "garbage"]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(column(&out, "day"), ["2024-01-05", "NULL"]);
}

#[test]
fn expression_failure_in_one_row_only_fails_that_row() {
    let mut e = engine(
        ARITH_TABLE,
        "columnSeparator: ','\ncolumns: [col1, tmp, 'col4 = col1 * 2 / cast(tmp as bigint)']",
    );
    // 'x' is not a number: that row fails; a zero divisor is NULL, as in StarRocks.
    let out = load(&mut e, &["6,3", "1,x", "8,0"]);
    assert_eq!(column(&out, "col4"), ["4", "NULL"]);
    assert_eq!(out.errors.len(), 1);
    assert_eq!(out.errors[0].offset, 1);
    assert!(
        out.errors[0].reason.contains("expression failed"),
        "{}",
        out.errors[0].reason
    );
}

#[test]
fn rows_outside_the_target_partitions_are_error_rows() {
    let table = r#"
location: file:///tmp/t
partitionColumns: [dt]
columns:
  - {name: id, type: INT}
  - {name: dt, type: DATE}
"#;
    let mut e = engine(table, "columnSeparator: ','\npartitions: ['dt=2024-01-01']");
    let out = load(&mut e, &["1,2024-01-01", "2,2024-01-02"]);
    assert_eq!(column(&out, "id"), ["1"]);
    assert_eq!(out.errors.len(), 1);
    assert_eq!(
        out.errors[0].reason,
        "There is no corresponding partition for this key"
    );
    assert_eq!(out.errors[0].value.as_deref(), Some("dt=2024-01-02"));
}

#[test]
fn defaults_fill_unmapped_columns() {
    let table = r#"
location: file:///tmp/t
columns:
  - {name: id, type: INT}
  - {name: source, type: VARCHAR(8), nullable: false, default: kafka}
"#;
    let mut e = engine(table, "columns: [id]");
    let out = load(&mut e, &["1", "2"]);
    assert_eq!(column(&out, "source"), ["kafka", "kafka"]);
}

const JSON_TABLE: &str = r#"
location: file:///tmp/t
columns:
  - {name: id, type: BIGINT}
  - {name: name, type: VARCHAR(16)}
  - {name: score, type: 'DECIMAL(5,1)'}
  - {name: active, type: BOOLEAN}
  - {name: attrs, type: JSON}
"#;

#[test]
fn json_objects_by_field_name() {
    let mut e = engine(JSON_TABLE, "format: json");
    let out = load(
        &mut e,
        &[
            r#"{"id": 1, "name": "a", "score": 9.5, "active": true, "attrs": {"k": [1,2]}}"#,
            r#"{"id": 2, "name": "b"}"#,
            r#"{"id": "x", "name": "c"}"#,
            r#"{"id": 4, "name": ["not", "scalar"]}"#,
            r#"not json"#,
            r#"[{"id": 5}]"#,
        ],
    );
    assert_eq!(column(&out, "id"), ["1", "2"]);
    assert_eq!(column(&out, "score"), ["9.5", "NULL"]);
    assert_eq!(column(&out, "active"), ["true", "NULL"]);
    assert_eq!(column(&out, "attrs"), [r#"{"k":[1,2]}"#, "NULL"]);
    let reasons: Vec<_> = out.errors.iter().map(|e| e.reason.clone()).collect();
    assert_eq!(reasons[0], "convert json value to BIGINT failed");
    assert_eq!(reasons[1], "the Array type is not supported");
    assert!(reasons[2].starts_with("invalid JSON"), "{}", reasons[2]);
    assert!(reasons[3].contains("set stripOuterArray"), "{}", reasons[3]);
    assert_eq!(out.counters.total_rows, 6);
}

#[test]
fn json_paths_root_and_outer_array() {
    let job = r#"
format: json
columns: [id, name, score]
jsonPaths: ["$.key.id", "$.who.name", "$.metrics[0]"]
jsonRoot: "$.data"
stripOuterArray: true
"#;
    let mut e = engine(JSON_TABLE, job);
    let out = load(
        &mut e,
        &[
            r#"{"data": [{"key": {"id": 1}, "who": {"name": "x"}, "metrics": [1.5, 2]}, {"key": {"id": 2}, "who": {}, "metrics": []}]}"#,
            r#"{"other": []}"#,
            r#"{"data": {"key": {"id": 3}}}"#,
        ],
    );
    assert_eq!(column(&out, "id"), ["1", "2"]);
    assert_eq!(column(&out, "name"), ["x", "NULL"]);
    assert_eq!(column(&out, "score"), ["1.5", "NULL"]);
    assert_eq!(out.errors.len(), 2);
    assert_eq!(
        out.errors[0].reason,
        "JSON root $.data not found in the message"
    );
    assert_eq!(
        out.errors[1].reason,
        "stripOuterArray is set but the message is not a JSON array"
    );
    assert_eq!(out.counters.total_rows, 4);
}

#[test]
fn json_invalid_utf8_is_an_error_row() {
    let mut e = engine(JSON_TABLE, "format: json");
    let messages = [SourceMessage {
        partition: 0,
        offset: 0,
        payload: b"{\"name\": \"\xff\"}",
        ..Default::default()
    }];
    let out = e.load(&messages).unwrap();
    assert_eq!(out.errors[0].reason, "invalid UTF-8 in the input");
}

#[test]
fn error_row_display_names_reason_column_and_row() {
    let mut e = engine(WIKIPEDIA_TABLE, WIKIPEDIA_JOB);
    let out = load(&mut e, &["2015-09-12 00:47:00,#en,u,0,0,0,0,0,x,1,0"]);
    assert_eq!(
        out.errors[0].to_string(),
        "Error: convert csv string to INT failed. Column: delta. Value: 'x'. Partition: 0, offset: 0. \
         Row: 2015-09-12 00:47:00,#en,u,0,0,0,0,0,x,1,0"
    );
}

/// The one-pass decoder for plain objects gives exactly what the general (`Value` tree) path
/// gives, message by message: fields, NULLs, error rows and error texts.
#[test]
fn json_one_pass_decoder_matches_the_general_path() {
    let table: TableSpec = serde_yaml::from_str(
        r#"
location: file:///tmp/t
columns:
  - {name: id, type: BIGINT}
  - {name: name, type: VARCHAR(16)}
  - {name: score, type: DOUBLE}
  - {name: active, type: BOOLEAN}
  - {name: flag, type: TINYINT}
  - {name: attrs, type: JSON}
  - {name: note, type: STRING}
"#,
    )
    .expect("table");
    let messages = [
        r#"{"id": 1, "name": "a", "score": 9.5, "active": true, "flag": true, "attrs": {"k": [1,2]}, "note": "x"}"#,
        r#"{"id": -7, "name": "caf\u00e9 \"q\"", "score": 1e3, "active": false, "flag": false, "attrs": [1, {"a": null}], "note": ["no"]}"#,
        r#"{"id": 18446744073709551615, "score": -0.0, "attrs": "text", "note": {"n": 1}}"#,
        r#"{"id": 123456789012345678901234, "score": 2.5e-8, "extra": {"deep": [1, [2, {"x": 3}]]}}"#,
        r#"{"id": null, "name": null, "attrs": null}"#,
        r#"{"id": 1, "id": 2, "n\u0061me": "escaped key"}"#,
        r#"{}"#,
        r#"  {"id": 3}  "#,
        r#"{"note": [1, 2], "id": [3]}"#,
        r#"[{"id": 1}]"#,
        r#"42"#,
        r#""just a string""#,
        r#"null"#,
        r#"{"id": 1} trailing"#,
        r#"{"id": 1"#,
        r#"{"id": tru}"#,
        r#""#,
    ];
    for job in [
        "format: json",
        "format: json\njsonPaths: ['$.id', '$.name', '$.score', '$.active', '$.flag', '$.attrs', '$.note']",
        "format: json\ncolumns: [id, name, score, active, flag, attrs, note, extra]",
    ] {
        let spec: RoutineLoadJobSpec = serde_yaml::from_str(&format!(
            "table: t\nkafka: {{brokerList: 'b:9092', topic: t}}\n{job}"
        ))
        .expect("job");
        let plan = LoadPlan::build(&spec, "t", &table).expect("plan");
        let decoder = super::json::JsonDecoder::new(&plan);
        assert!(decoder.one_pass(), "{job} takes the one-pass path");
        for m in messages {
            let (mut fast, mut general) = (Vec::new(), Vec::new());
            let a = decoder.decode(m.as_bytes(), &mut fast);
            let b = decoder.decode_document(m, &mut general);
            assert_eq!(a, b, "result for {m} ({job})");
            assert_eq!(fast, general, "rows for {m} ({job})");
        }
    }
    // Nested paths, jsonRoot and stripOuterArray take the general path.
    for job in [
        "format: json\njsonRoot: '$.data'",
        "format: json\nstripOuterArray: true",
    ] {
        let spec: RoutineLoadJobSpec = serde_yaml::from_str(&format!(
            "table: t\nkafka: {{brokerList: 'b:9092', topic: t}}\n{job}"
        ))
        .expect("job");
        let plan = LoadPlan::build(&spec, "t", &table).expect("plan");
        assert!(!super::json::JsonDecoder::new(&plan).one_pass(), "{job}");
    }
}

/// The scanner (objects of scalars read straight from the payload) and the serde paths behind
/// it give what the general path gives, edge by edge; `scanned` says which path a message takes.
#[test]
fn json_scanner_edges_match_the_general_path() {
    let table: TableSpec = serde_yaml::from_str(
        r#"
location: file:///tmp/t
columns:
  - {name: id, type: BIGINT}
  - {name: name, type: VARCHAR(64)}
  - {name: score, type: DOUBLE}
  - {name: active, type: BOOLEAN}
  - {name: flag, type: TINYINT}
  - {name: attrs, type: JSON}
  - {name: note, type: STRING}
"#,
    )
    .expect("table");
    // (message, whether the scanner takes it)
    let cases: &[(&str, bool)] = &[
        // Strings: plain, escaped, unicode escapes, a surrogate pair, raw non-ASCII.
        (r#"{"name": "plain", "note": "x"}"#, true),
        (r#"{"name": "caf\u00e9 \"q\" \\ \/ \b\f\n\r\t"}"#, true),
        (r#"{"name": "\ud83d\ude00", "note": "\u0000"}"#, true),
        (r#"{"name": "é ünï ☃", "note": ""}"#, true),
        (r#"{"n\u0061me": "escaped member name"}"#, true),
        // A lone surrogate and a raw control character are not JSON strings.
        (r#"{"name": "\ud800"}"#, false),
        ("{\"name\": \"tab\there\"}", false),
        (r#"{"name": "\x"}"#, false),
        // Numbers: integers as written; floats, exponents, -0 and integers past 18 digits as
        // serde_json prints them.
        (
            r#"{"id": 0, "score": -7, "note": 123456789012345678}"#,
            true,
        ),
        (
            r#"{"id": -123456789012345678, "note": 1234567890123456789}"#,
            true,
        ),
        (
            r#"{"id": 18446744073709551615, "note": 18446744073709551616}"#,
            true,
        ),
        (
            r#"{"id": -9223372036854775808, "note": -9223372036854775809}"#,
            true,
        ),
        (r#"{"id": -0, "score": 1.5, "note": -0.0}"#, true),
        (r#"{"score": 1e3, "note": 2.5E-8, "name": 1E+2}"#, true),
        (r#"{"note": 123456789012345678901234, "name": 0.1}"#, true),
        (r#"{"id": 01}"#, false),
        (r#"{"id": 1.}"#, false),
        (r#"{"id": -}"#, false),
        (r#"{"id": 1e400}"#, false),
        // Booleans into BOOLEAN, numeric and text columns; nulls.
        (
            r#"{"active": true, "flag": true, "note": true, "score": false}"#,
            true,
        ),
        (
            r#"{"active": false, "flag": false, "name": false, "attrs": true}"#,
            true,
        ),
        (r#"{"id": null, "name": null, "active": null}"#, true),
        // Nested values go to the serde path: JSON columns keep them as JSON text, text
        // columns take objects as JSON text, arrays fail other columns.
        (
            r#"{"attrs": {"b": [1, 2.50], "a": null}, "note": {"n": 1}}"#,
            false,
        ),
        (r#"{"attrs": [1, {"a": "x"}], "id": 1}"#, false),
        (r#"{"note": ["no"], "id": [3]}"#, false),
        (r#"{"extra": {"deep": [1, [2]]}, "id": 4}"#, false),
        // Duplicate members: the last one counts, also over an array.
        (r#"{"id": 1, "id": 2, "name": "a", "name": null}"#, true),
        (r#"{"note": [1], "note": "x"}"#, false),
        (r#"{"note": "x", "note": [1]}"#, false),
        // Members nobody reads, whitespace, an empty object.
        (r#"{"extra": "\u00e9", "other": -1.5e-3, "id": 5}"#, true),
        ("\r\n\t {\"id\" :\t1 ,\n\"name\" : \"w\" } \n", true),
        (r#"{}"#, true),
        // Invalid JSON: the serde path reports it.
        (r#"{"id": 1,}"#, false),
        (r#"{"id": tru}"#, false),
        (r#"{"id": 1 "name": "a"}"#, false),
        (r#"{"id": 1} x"#, false),
        (r#"{"id": 1"#, false),
        (r#"{"id" 1}"#, false),
        (r#"{id: 1}"#, false),
        ("{\"id\": 1}\u{a0}", false),
        // Not objects.
        (r#"42"#, false),
        (r#""just a string""#, false),
        (r#"null"#, false),
        (r#"[{"id": 1}]"#, false),
        (r#""#, false),
    ];
    for job in [
        "format: json",
        "format: json\njsonPaths: ['$.id', '$.name', '$.score', '$.active', '$.flag', '$.attrs', '$.note']",
        "format: json\ncolumns: [id, name, score, active, flag, attrs, note, extra]",
    ] {
        let spec: RoutineLoadJobSpec = serde_yaml::from_str(&format!(
            "table: t\nkafka: {{brokerList: 'b:9092', topic: t}}\n{job}"
        ))
        .expect("job");
        let plan = LoadPlan::build(&spec, "t", &table).expect("plan");
        let decoder = super::json::JsonDecoder::new(&plan);
        for &(m, scanned) in cases {
            let (mut fast, mut general) = (Vec::new(), Vec::new());
            let a = decoder.decode(m.as_bytes(), &mut fast);
            let b = decoder.decode_document(m, &mut general);
            assert_eq!(a, b, "result for {m} ({job})");
            assert_eq!(fast, general, "rows for {m} ({job})");
            let scan = decoder.scanned(m.as_bytes());
            assert_eq!(scan.is_some(), scanned, "scanner takes {m} ({job})");
            if let Some(row) = scan {
                assert_eq!(vec![row], general, "scanner row for {m} ({job})");
            }
        }
    }
}

/// Above `LINEAR_LOOKUP_MAX` members the scanner finds names by hashing; in any member order it
/// gives what the general path gives.
#[test]
fn json_scanner_with_many_members_matches_the_general_path() {
    let columns: String = (0..40)
        .map(|c| format!("  - {{name: c{c:02}, type: BIGINT}}\n"))
        .collect();
    let table: TableSpec =
        serde_yaml::from_str(&format!("location: file:///tmp/t\ncolumns:\n{columns}"))
            .expect("table");
    let spec: RoutineLoadJobSpec =
        serde_yaml::from_str("table: t\nkafka: {brokerList: 'b:9092', topic: t}\nformat: json")
            .expect("job");
    let plan = LoadPlan::build(&spec, "t", &table).expect("plan");
    let decoder = super::json::JsonDecoder::new(&plan);
    let member = |c: usize| format!(r#""c{c:02}": {}"#, c * 10);
    let messages = [
        (0..40).map(member).collect::<Vec<_>>(),
        (0..40).rev().map(member).collect(),
        (0..40).step_by(3).chain([5, 5]).map(member).collect(),
        vec![
            r#""other": 1"#.to_string(),
            member(39),
            r#""c1": 2"#.to_string(),
        ],
    ];
    for m in messages {
        let m = format!("{{{}}}", m.join(", "));
        let scan = decoder.scanned(m.as_bytes()).expect("scanned");
        let mut general = Vec::new();
        decoder.decode_document(&m, &mut general).expect("valid");
        assert_eq!(vec![scan], general, "{m}");
    }
}

/// Values as they load through the scanner: numbers printed as `serde_json` prints them, booleans
/// as 1/0 in numeric columns, strings unescaped.
#[test]
fn json_scanned_values_load_as_before() {
    let table = r#"
location: file:///tmp/t
columns:
  - {name: id, type: BIGINT}
  - {name: flag, type: TINYINT}
  - {name: score, type: DOUBLE}
  - {name: note, type: STRING}
"#;
    let mut e = engine(table, "format: json");
    let out = load(
        &mut e,
        &[
            r#"{"id": -7, "flag": true, "score": 1e3, "note": "caf\u00e9 \"q\""}"#,
            r#"{"id": 0, "flag": false, "score": -0, "note": -0}"#,
            r#"{"id": 9223372036854775807, "score": 2.5e-8, "note": 1E+2}"#,
            r#"{"note": 18446744073709551616}"#,
            r#"{"note": 123456789012345678901234}"#,
            r#"{"note": true, "flag": 1}"#,
            r#"{"note": 1.50}"#,
        ],
    );
    assert_eq!(out.errors, []);
    assert_eq!(
        column(&out, "id"),
        [
            "-7",
            "0",
            "9223372036854775807",
            "NULL",
            "NULL",
            "NULL",
            "NULL"
        ]
    );
    assert_eq!(
        column(&out, "flag"),
        ["1", "0", "NULL", "NULL", "NULL", "1", "NULL"]
    );
    assert_eq!(
        column(&out, "note"),
        [
            "café \"q\"",
            "-0.0",
            "100.0",
            "1.8446744073709552e+19",
            "1.2345678901234567e+23",
            "true",
            "1.5"
        ]
    );
    assert_eq!(
        column(&out, "score"),
        ["1000.0", "-0.0", "2.5e-8", "NULL", "NULL", "NULL", "NULL"]
    );
}

#[test]
fn kafka_metadata_loads_into_columns_and_expressions() {
    // StarRocks: INCLUDE METADATA (KEY AS k, TIMESTAMP_MS AS ts, PARTITION AS p, OFFSET AS o,
    // TOPIC AS t, HEADERS AS h), with `k` and `o` table columns and the others used by
    // expressions.
    let table = r#"
location: file:///tmp/t
columns:
  - {name: id, type: INT}
  - {name: k, type: VARCHAR(20)}
  - {name: o, type: BIGINT}
  - {name: event_time, type: DATETIME}
  - {name: origin, type: STRING}
  - {name: trace, type: STRING}
"#;
    let job = r#"
format: json
includeMetadata: {key: k, timestampMs: ts, partition: p, offset: o, topic: tp, headers: h}
columns: [id, "event_time = from_unixtime(ts / 1000)", "origin = concat(tp, '/', p)", "trace = element_at(h, 'trace-id')"]
where: p = 3 and o >= 0
"#;
    let mut e = engine(table, job);
    let headers = headers_json([("trace-id", Some(&b"abc"[..])), ("empty", None)].into_iter());
    let messages = [
        SourceMessage {
            partition: 3,
            offset: 41,
            payload: br#"{"id": 1}"#,
            key: Some(b"user-1"),
            timestamp_ms: Some(1_700_000_000_000),
            headers: Some(&headers),
        },
        SourceMessage {
            partition: 3,
            offset: 42,
            payload: br#"{"id": 2}"#,
            key: None,
            timestamp_ms: None,
            headers: None,
        },
    ];
    let out = e.load(&messages).expect("load");
    assert_eq!(column(&out, "id"), ["1", "2"]);
    assert_eq!(column(&out, "k"), ["user-1", "NULL"]);
    assert_eq!(column(&out, "o"), ["41", "42"]);
    assert_eq!(column(&out, "event_time"), ["2023-11-14T22:13:20", "NULL"]);
    assert_eq!(column(&out, "origin"), ["t/3", "t/3"]);
    assert_eq!(column(&out, "trace"), ["abc", "NULL"]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
}

#[test]
fn decoding_on_several_threads_gives_what_one_engine_gives() {
    // Good rows, error rows of each step (conversion, derived column, WHERE-unselected) and
    // JSON arrays (several rows per message) spread over the runs of three threads.
    /// (table, job, the payload of message i)
    type Case = (&'static str, &'static str, fn(usize) -> String);
    let cases: [Case; 2] = [
        (
            WIKIPEDIA_TABLE,
            "columnSeparator: \",\"\ncolumns: [event_time, channel, user, is_anonymous, is_minor, is_new, is_robot, is_unpatrolled, delta, added, deleted]\nwhere: \"added > 2\"\nmaxErrorNumber: 100000\n",
            |i| match i % 7 {
                0 => format!("2015-09-12 00:47:00,#en,u{i},0,0,0,0,0,x{i},3,0"),
                1 => format!("2015-09-12 00:47:00,#en,u{i},0,0,0,0,0,{i},1,0"),
                2 => "too,few".to_string(),
                _ => format!(
                    "2015-09-12 00:47:{:02},#ca,u{i},0,1,0,1,0,{i},{i},0",
                    i % 60
                ),
            },
        ),
        (
            WIKIPEDIA_TABLE,
            "format: json\nstripOuterArray: true\nmaxErrorNumber: 100000\n",
            |i| match i % 5 {
                0 => "{not json".to_string(),
                1 => format!(
                    r#"[{{"event_time":"2015-09-12 00:47:00","channel":"a","user":"u{i}","delta":{i}}},{{"event_time":"2015-09-12 00:47:01","channel":"b","user":"v{i}","delta":"bad"}}]"#
                ),
                _ => format!(
                    r#"{{"event_time":"2015-09-12 00:47:00","channel":"c","user":"w{i}","added":{i}}}"#
                ),
            },
        ),
    ];
    for (table, job, payload) in cases {
        let payloads: Vec<String> = (0..50_000).map(payload).collect();
        let messages: Vec<SourceMessage<'_>> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| SourceMessage {
                partition: (i % 3) as i32,
                offset: i as i64,
                payload: p.as_bytes(),
                ..Default::default()
            })
            .collect();
        let one = engine(table, job).load(&messages).expect("one engine");
        let mut engines = decoding_engines(engine(table, job), 3);
        let three = load_in_parallel(&mut engines, &messages).expect("three engines");
        assert!(
            one.counters.error_rows > 0 && one.counters.loaded_rows > 0,
            "{job}"
        );
        assert_eq!(three.counters, one.counters, "{job}");
        assert_eq!(
            three.parts.len(),
            3,
            "{job}: one part per engine, not joined"
        );
        assert_eq!(three.num_rows(), one.batch.num_rows(), "{job}");
        let joined = deltalake::arrow::compute::concat_batches(&one.batch.schema(), &three.parts)
            .expect("the parts share the table's schema");
        assert_eq!(joined, one.batch, "{job}");
        let text = |errors: &[ErrorRow]| errors.iter().map(|e| e.to_string()).collect::<Vec<_>>();
        assert_eq!(text(&three.errors), text(&one.errors), "{job}");
    }
}
