//! Statements from StarRocks' CREATE ROUTINE LOAD reference and its Routine Load guide that
//! use functions and INCLUDE METADATA: they convert, and plan against their tables.

use super::*;

fn converted(sql: &str) -> Converted {
    convert(&parse(sql).expect("parse"), &ConvertOptions::default()).expect("convert")
}

fn plans(sql: &str, table: &str) -> String {
    check_against_table(&converted(sql), table).expect("plan")
}

#[test]
fn reference_json_examples_with_functions_plan() {
    // The reference's JSON example: pay_dt derived with from_unixtime.
    let sql = r#"CREATE ROUTINE LOAD example_db.example_tbl2_ordertest2 ON example_tbl2
COLUMNS(commodity_id, customer_name, country, pay_time, price, pay_dt=from_unixtime(pay_time, '%Y%m%d'))
PROPERTIES ("desired_concurrent_number" = "5", "format" = "json",
  "jsonpaths" = "[\"$.commodity_id\",\"$.customer_name\",\"$.country\",\"$.pay_time\",\"$.price\"]")
FROM KAFKA ("kafka_broker_list" = "<kafka_broker1_ip>:<kafka_broker1_port>", "kafka_topic" = "ordertest2")"#;
    let table = r#"
location: file:///tmp/example_tbl2
columns:
  - {name: commodity_id, type: VARCHAR(26)}
  - {name: customer_name, type: VARCHAR(26)}
  - {name: country, type: VARCHAR(26)}
  - {name: pay_time, type: BIGINT}
  - {name: pay_dt, type: DATE}
  - {name: price, type: DOUBLE}
"#;
    plans(sql, table);

    // Nested payloads: StarRocks' JSON functions, date parts and INTERVAL arithmetic, with
    // MySQL's double-quoted strings.
    let sql = r#"CREATE ROUTINE LOAD db.nested ON events
COLUMNS (id, payload,
  user_name = get_json_string(payload, "$.user.name"),
  tags = json_query(payload, '$.tags'),
  event_year = year(get_json_string(payload, '$.ts')),
  due = date_add(get_json_string(payload, '$.ts'), INTERVAL 2 DAY),
  shard = murmur_hash3_32(get_json_string(payload, '$.user.name')) % 16)
WHERE get_json_int(payload, '$.user.age') >= 18
PROPERTIES ("format" = "json")
FROM KAFKA ("kafka_broker_list" = "b:9092", "kafka_topic" = "events")"#;
    let table = r#"
location: file:///tmp/events
columns:
  - {name: id, type: BIGINT}
  - {name: user_name, type: STRING}
  - {name: tags, type: JSON}
  - {name: event_year, type: INT}
  - {name: due, type: DATETIME}
  - {name: shard, type: INT}
"#;
    let c = converted(sql);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    check_against_table(&c, table).expect("plan");
}

#[test]
fn include_metadata_converts_to_include_metadata() {
    let sql = r#"CREATE ROUTINE LOAD db.job ON tbl
INCLUDE METADATA ( KEY AS msg_key, PARTITION AS msg_part, TIMESTAMP_MS AS msg_ts, HEADERS AS msg_hdr ),
COLUMNS ( id, name,
          event_time = from_unixtime(msg_ts / 1000),
          trace_id   = element_at(msg_hdr, 'trace-id') )
FROM KAFKA ("kafka_broker_list" = "b:9092", "kafka_topic" = "t")"#;
    let c = converted(sql);
    let job: routine_load_api::RoutineLoadJob = serde_yaml::from_value(c.job.clone()).unwrap();
    let m = job.spec.include_metadata.clone().expect("includeMetadata");
    assert_eq!(m.key.as_deref(), Some("msg_key"));
    assert_eq!(m.partition.as_deref(), Some("msg_part"));
    assert_eq!(m.timestamp_ms.as_deref(), Some("msg_ts"));
    assert_eq!(m.headers.as_deref(), Some("msg_hdr"));
    let table = r#"
location: file:///tmp/tbl
columns:
  - {name: id, type: BIGINT}
  - {name: name, type: STRING}
  - {name: event_time, type: DATETIME}
  - {name: trace_id, type: STRING}
  - {name: msg_part, type: INT}
"#;
    check_against_table(&c, table).expect("plan");

    let err = run_err(
        "CREATE ROUTINE LOAD j ON t INCLUDE METADATA (LEADER_EPOCH AS e) FROM KAFKA (\"kafka_broker_list\" = \"b\", \"kafka_topic\" = \"t\")",
    );
    assert!(
        err.contains("LEADER_EPOCH is not Kafka record metadata"),
        "{err}"
    );
    let err = run_err(
        "CREATE ROUTINE LOAD j ON t INCLUDE METADATA (KEY k) FROM KAFKA (\"kafka_broker_list\" = \"b\", \"kafka_topic\" = \"t\")",
    );
    assert!(err.contains("expected <KEY> AS <name>"), "{err}");
}

fn run_err(sql: &str) -> String {
    parse(sql)
        .and_then(|st| convert(&st, &ConvertOptions::default()))
        .map(|c| c.name)
        .expect_err("an error")
}

#[test]
fn functions_that_cannot_load_are_warned_about() {
    // The reference's bitmap example: Delta has no BITMAP column.
    let sql = r#"CREATE ROUTINE LOAD db.uv ON page_uv
COLUMNS (page_id, visit_date, visit_users_tmp, visit_users = to_bitmap(visit_users_tmp))
FROM KAFKA ("kafka_broker_list" = "b:9092", "kafka_topic" = "uv")"#;
    let c = converted(sql);
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("to_bitmap() makes a BITMAP") && w.contains("no such column type")),
        "{:?}",
        c.warnings
    );
    let sql = r#"CREATE ROUTINE LOAD db.h ON t
COLUMNS (a, b = xx_hash3_128(a))
FROM KAFKA ("kafka_broker_list" = "b:9092", "kafka_topic" = "t")"#;
    let c = converted(sql);
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("StarRocks function xx_hash3_128() is not supported")),
        "{:?}",
        c.warnings
    );
}
