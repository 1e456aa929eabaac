//! StarRocks functions and Kafka record metadata in real jobs on the testbed (real operator,
//! real worker, real Kafka, Delta tables read back with the independent reader):
//! - a JSON job whose derived columns pull fields out of a nested payload with
//!   get_json_string / json_query / get_json_int, take date parts of a timestamp in it and add
//!   an INTERVAL to it, with a WHERE on a nested field;
//! - a CSV job that loads each record's key, timestamp, partition, offset and a header into
//!   columns (StarRocks' INCLUDE METADATA).

use std::time::Duration;

use routine_load_e2e::installation::{Installation, JOB, TABLE, wait_for};
use routine_load_e2e::kafka::Listener;
use routine_load_e2e::{testbed_or_skip, unique_name};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(120);

async fn create_table(inst: &Installation, name: &str, columns: Value) -> String {
    let dir = std::env::temp_dir().join(unique_name("functions-table"));
    let location = format!("file://{}", dir.display());
    inst.create(
        TABLE,
        json!({"metadata": {"name": name}, "spec": {"location": location, "columns": columns}}),
    )
    .await
    .expect("create Table");
    location
}

async fn wait_loaded(inst: &Installation, name: &str, loaded: i64, unselected: i64) -> Value {
    wait_for(&format!("job {name} loadedRows {loaded}"), WAIT, || async {
        let j = inst.get(JOB, name).await.map_err(|e| e.to_string())?;
        let s = &j["status"]["statistic"];
        if s["loadedRows"].as_i64() == Some(loaded)
            && s["unselectedRows"].as_i64().unwrap_or(0) == unselected
        {
            Ok(j)
        } else {
            Err(format!("status: {}", j["status"]))
        }
    })
    .await
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `YYYY-MM-DD HH:MM:SS` of a Unix time in UTC (the civil-from-days algorithm).
fn utc_datetime(seconds: i64) -> String {
    let (days, secs) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// A DATETIME as the reader prints it, with a space between date and time.
fn datetime(v: &Value) -> String {
    v.as_str().unwrap_or("NULL").replace('T', " ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_job_derives_columns_from_nested_payloads_with_starrocks_functions() {
    let Some(tb) = testbed_or_skip("JSON job with StarRocks functions on nested payloads") else {
        return;
    };
    let inst = Installation::start(tb, "e2e-functions", true)
        .await
        .expect("installation");
    let topic = unique_name("functions-json");
    inst.tb.create_topic(&topic, 1).await.expect("topic");
    let location = create_table(
        &inst,
        "events",
        json!([
            {"name": "id", "type": "BIGINT", "nullable": false},
            {"name": "user_name", "type": "VARCHAR(32)"},
            {"name": "city", "type": "VARCHAR(32)"},
            {"name": "tags", "type": "JSON"},
            {"name": "event_time", "type": "DATETIME"},
            {"name": "event_day", "type": "DATE"},
            {"name": "event_year", "type": "INT"},
            {"name": "event_hour", "type": "INT"},
            {"name": "due", "type": "DATETIME"},
            {"name": "week_day", "type": "INT"}
        ]),
    )
    .await;
    let ts = "get_json_string(payload, '$.event.ts')";
    inst.create(
        JOB,
        json!({
            "metadata": {"name": "nested"},
            "spec": {
                "table": "events",
                "format": "json",
                "desiredConcurrentNumber": 1,
                "kafka": {
                    "brokerList": inst.tb.var("KAFKA_BROKERS").unwrap(),
                    "topic": topic,
                    "defaultOffset": "OFFSET_BEGINNING"
                },
                "columns": [
                    "id",
                    "payload",
                    "user_name = upper(get_json_string(payload, \"$.user.name\"))",
                    "city = get_json_string(payload, '$.user.address.city')",
                    "tags = json_query(payload, '$.event.tags')",
                    format!("event_time = {ts}"),
                    format!("event_day = to_date({ts})"),
                    format!("event_year = year({ts})"),
                    format!("event_hour = hour({ts})"),
                    format!("due = date_add({ts}, INTERVAL 2 DAY)"),
                    format!("week_day = dayofweek({ts})")
                ],
                "where": "get_json_int(payload, '$.user.age') >= 18"
            }
        }),
    )
    .await
    .expect("create RoutineLoadJob");
    let messages = [
        json!({"id": 1, "payload": {"user": {"name": "alice", "age": 30, "address": {"city": "Paris"}},
               "event": {"ts": "2024-02-28 23:30:00", "tags": ["a", "b"]}}}),
        json!({"id": 2, "payload": {"user": {"name": "bob", "age": 12, "address": {"city": "Oslo"}},
               "event": {"ts": "2024-03-01 08:00:00", "tags": []}}}),
        json!({"id": 3, "payload": {"user": {"name": "carol", "age": 41},
               "event": {"ts": "2023-12-31 10:15:00", "tags": ["x"]}}}),
    ];
    let lines: Vec<String> = messages.iter().map(Value::to_string).collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    inst.tb
        .produce_lines(Listener::Plaintext, &topic, 0, &refs)
        .await
        .expect("produce");
    let worker = unique_name("w");
    let w = inst.spawn_worker(&worker, &[]).expect("worker");
    let j = wait_loaded(&inst, "nested", 2, 1).await;
    assert_eq!(j["status"]["statistic"]["errorRows"], 0, "{}", j["status"]);

    let snap = inst.tb.read_delta(&location, None).expect("read table");
    let rows = snap.sorted_rows(&["id"]);
    assert_eq!(
        rows.len(),
        2,
        "bob (12) is filtered by WHERE; worker log:\n{}",
        w.log()
    );
    let (alice, carol) = (&rows[0], &rows[1]);
    assert_eq!(alice["id"], 1);
    assert_eq!(alice["user_name"], "ALICE");
    assert_eq!(alice["city"], "Paris");
    assert_eq!(alice["tags"], r#"["a", "b"]"#);
    assert_eq!(datetime(&alice["event_time"]), "2024-02-28 23:30:00");
    assert_eq!(alice["event_day"], "2024-02-28");
    assert_eq!(alice["event_year"], 2024);
    assert_eq!(alice["event_hour"], 23);
    // 2024 is a leap year: two days after Feb 28th is March 1st.
    assert_eq!(datetime(&alice["due"]), "2024-03-01 23:30:00");
    assert_eq!(
        alice["week_day"], 4,
        "2024-02-28 is a Wednesday (Sunday = 1)"
    );
    assert_eq!(carol["id"], 3);
    assert_eq!(carol["city"], Value::Null, "no address: NULL");
    assert_eq!(carol["event_year"], 2023);
    assert_eq!(datetime(&carol["due"]), "2024-01-02 10:15:00");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_loads_kafka_key_timestamp_and_headers_into_columns() {
    let Some(tb) = testbed_or_skip("Kafka key, timestamp and headers as columns") else {
        return;
    };
    let inst = Installation::start(tb, "e2e-metadata", true)
        .await
        .expect("installation");
    let topic = unique_name("functions-meta");
    inst.tb.create_topic(&topic, 1).await.expect("topic");
    let location = create_table(
        &inst,
        "records",
        json!([
            {"name": "id", "type": "BIGINT", "nullable": false},
            {"name": "msg_key", "type": "VARCHAR(32)"},
            {"name": "ts_ms", "type": "BIGINT"},
            {"name": "produced_at", "type": "DATETIME"},
            {"name": "part", "type": "INT"},
            {"name": "off", "type": "BIGINT"},
            {"name": "producer", "type": "STRING"}
        ]),
    )
    .await;
    inst.create(
        JOB,
        json!({
            "metadata": {"name": "meta"},
            "spec": {
                "table": "records",
                "columnSeparator": ",",
                "desiredConcurrentNumber": 1,
                "kafka": {
                    "brokerList": inst.tb.var("KAFKA_BROKERS").unwrap(),
                    "topic": topic,
                    "defaultOffset": "OFFSET_BEGINNING"
                },
                "includeMetadata": {
                    "key": "msg_key", "timestampMs": "ts_ms", "partition": "part",
                    "offset": "off", "headers": "hdr"
                },
                "columns": [
                    "id",
                    "produced_at = from_unixtime(ts_ms / 1000)",
                    "producer = element_at(hdr, 'producer')"
                ]
            }
        }),
    )
    .await
    .expect("create RoutineLoadJob");
    let before = now_ms();
    let records = [
        (Some(0), Some("key-a"), "1"),
        (Some(0), None, "2"),
        (Some(0), Some("key-c"), "3"),
    ];
    let offsets = inst
        .tb
        .produce(Listener::Plaintext, &topic, records)
        .await
        .expect("produce");
    let after = now_ms();
    let w = inst.spawn_worker(&unique_name("w"), &[]).expect("worker");
    let j = wait_loaded(&inst, "meta", 3, 0).await;
    assert_eq!(j["status"]["statistic"]["errorRows"], 0, "{}", j["status"]);

    let snap = inst.tb.read_delta(&location, None).expect("read table");
    let rows = snap.sorted_rows(&["id"]);
    assert_eq!(rows.len(), 3, "worker log:\n{}", w.log());
    let keys: Vec<&Value> = rows.iter().map(|r| &r["msg_key"]).collect();
    assert_eq!(keys, [&json!("key-a"), &Value::Null, &json!("key-c")]);
    for (row, (_, offset)) in rows.iter().zip(&offsets) {
        assert_eq!(row["part"], 0);
        assert_eq!(row["off"], *offset);
        assert_eq!(
            row["producer"], "routine-load-e2e",
            "the e2e producer's header"
        );
        let ts = row["ts_ms"].as_i64().expect("a record timestamp");
        assert!(
            (before - 1000..=after + 1000).contains(&ts),
            "CreateTime {ts} not within [{before}, {after}]"
        );
        // The job's timezone is UTC: from_unixtime prints the UTC wall clock.
        let expected = utc_datetime(ts / 1000);
        assert_eq!(datetime(&row["produced_at"]), expected);
    }
}
