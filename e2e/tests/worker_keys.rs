//! A Primary Key table loaded from a change-data-capture stream, on the testbed with the real
//! worker binary (tasks created directly, no operator) and real Kafka, read back with the
//! independent reader:
//! - inserts, updates and deletes (several per key, across batches) on 3 partitions, keys hashed
//!   to partitions, loaded by 3 tasks of one job in one worker (their merges into the one table
//!   race and are merged again), leave exactly the last state of every key, computed here from
//!   what was produced;
//! - the worker is killed with SIGKILL mid-stream and started again: every message is merged
//!   exactly once (the merges' row counts in the Delta log add up to the messages produced, and
//!   the offsets recorded are the partitions' ends);
//! - an Aggregate Key table rolls a metric stream up the same way (SUM, MAX, MIN, REPLACE,
//!   REPLACE_IF_NOT_NULL), each key's row equal to the aggregate of its events.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use routine_load_e2e::installation::{Installation, JOB, TABLE, TASK};
use routine_load_e2e::kafka::Listener;
use routine_load_e2e::{Testbed, testbed_or_skip, unique_name};
use serde_json::json;

const PARTITIONS: i32 = 3;
const KEYS: u64 = 400;
const EVENTS: usize = 6_000;
/// Small batches: many merges per partition, so the kill lands mid-stream.
const BATCH_ROWS: &str = "200";
const WAIT: Duration = Duration::from_secs(120);

/// One change event as produced: `id,type,v,seq`.
#[derive(Clone, Debug)]
struct Event {
    id: u64,
    kind: &'static str,
    seq: usize,
}

impl Event {
    fn line(&self) -> String {
        format!("{},{},v{},{}", self.id, self.kind, self.seq, self.seq)
    }
}

/// The partition of a key, as a producer hashing its message key would pick it.
fn partition_of(id: u64) -> i32 {
    (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 61) as i32 % PARTITIONS
}

/// A deterministic CDC stream: a key not present is inserted, a present one updated (3 in 4)
/// or deleted (1 in 4).
fn events() -> Vec<Event> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut present = std::collections::BTreeSet::new();
    (0..EVENTS)
        .map(|seq| {
            let id = next() % KEYS;
            let kind = if !present.contains(&id) {
                present.insert(id);
                "INSERT"
            } else if next() % 4 == 0 {
                present.remove(&id);
                "DELETE"
            } else {
                "UPDATE"
            };
            Event { id, kind, seq }
        })
        .collect()
}

/// The last state of every key after `events`, computed from the stream alone: id -> seq.
fn final_state(events: &[Event]) -> BTreeMap<u64, usize> {
    let mut out = BTreeMap::new();
    for e in events {
        if e.kind == "DELETE" {
            out.remove(&e.id);
        } else {
            out.insert(e.id, e.seq);
        }
    }
    out
}

/// Produces `(partition, payload)` messages, in order per partition.
async fn produce_lines(tb: &Testbed, topic: &str, lines: &[(i32, String)]) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let mut c = tb.kafka_config(Listener::Plaintext).expect("kafka config");
    c.set("enable.idempotence", "true")
        .set("linger.ms", "10")
        .set("message.timeout.ms", "60000");
    let producer: FutureProducer = c.create().expect("producer");
    // Idempotence keeps each partition's order with many sends in flight.
    let sends = lines.iter().map(|(p, l)| {
        producer.send(
            FutureRecord::<(), str>::to(topic).payload(l).partition(*p),
            Duration::from_secs(60),
        )
    });
    for r in futures::future::join_all(sends).await {
        r.map_err(|(e, _)| e).expect("deliver");
    }
}

/// What the Delta log records for the job: the next offset per partition.
fn recorded(tb: &Testbed, location: &str, job_uid: &str) -> BTreeMap<i32, i64> {
    let snap = tb.read_delta(location, None).expect("read table");
    (0..PARTITIONS)
        .filter_map(|p| {
            let app = format!("routine-load-{job_uid}-{p}");
            snap.txns.get(&app).map(|o| (p, *o))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdc_stream_into_a_primary_key_table_survives_kill_9() {
    let Some(tb) = testbed_or_skip("primary key CDC") else {
        return;
    };
    let started = Instant::now();
    let inst = Installation::start(tb, "e2e-keys", false)
        .await
        .expect("installation");
    let topic = unique_name("keys-cdc");
    inst.tb
        .create_topic(&topic, PARTITIONS)
        .await
        .expect("topic");
    let dir = std::env::temp_dir().join(unique_name("keys-table"));
    std::fs::create_dir_all(&dir).unwrap();
    let location = format!("file://{}", dir.display());
    inst.create(
        TABLE,
        json!({
            "metadata": {"name": "accounts"},
            "spec": {
                "location": location,
                "model": "Primary",
                "keys": ["id"],
                "columns": [
                    {"name": "id", "type": "BIGINT", "nullable": false},
                    {"name": "v", "type": "STRING"},
                    {"name": "seq", "type": "BIGINT"}
                ]
            }
        }),
    )
    .await
    .expect("create Table");
    let job = inst
        .create(
            JOB,
            json!({
                "metadata": {"name": "cdc"},
                "spec": {
                    "table": "accounts",
                    "columnSeparator": ",",
                    "columns": ["id", "type", "v", "seq", "__op = if(type = 'DELETE', 1, 0)"],
                    "kafka": {
                        "brokerList": inst.tb.var("KAFKA_BROKERS").unwrap(),
                        "topic": topic,
                        "partitions": [0, 1, 2],
                        "offsets": ["OFFSET_BEGINNING", "OFFSET_BEGINNING", "OFFSET_BEGINNING"]
                    }
                }
            }),
        )
        .await
        .expect("create job");
    let job_uid = job["metadata"]["uid"].as_str().unwrap().to_string();
    let events = events();
    let (first, second) = events.split_at(EVENTS / 2);
    let lines = |events: &[Event]| -> Vec<(i32, String)> {
        events
            .iter()
            .map(|e| (partition_of(e.id), e.line()))
            .collect()
    };
    load_across_a_kill(
        &inst,
        "cdc",
        &job_uid,
        &topic,
        &dir,
        &lines(first),
        &lines(second),
    )
    .await;

    let snap = inst.tb.read_delta(&location, None).expect("read table");
    assert_eq!(
        snap.configuration.get("routineload.model"),
        Some(&json!("Primary")),
        "the model is in the table's configuration"
    );
    // Exactly the last state per key: no deleted key back, no update lost, one row per key.
    let mut have: BTreeMap<u64, usize> = BTreeMap::new();
    for r in &snap.rows {
        let id = r["id"].as_u64().expect("id");
        let seq = r["seq"].as_u64().expect("seq") as usize;
        assert_eq!(r["v"], json!(format!("v{seq}")), "row {r:?}");
        assert!(have.insert(id, seq).is_none(), "key {id} twice");
    }
    let want = final_state(&events);
    let wrong: Vec<_> = want
        .iter()
        .filter(|(k, v)| have.get(k) != Some(v))
        .take(5)
        .collect();
    let extra: Vec<_> = have
        .keys()
        .filter(|k| !want.contains_key(k))
        .take(5)
        .collect();
    assert!(
        wrong.is_empty() && extra.is_empty() && have.len() == want.len(),
        "{} keys in the table, {} expected; wrong or missing {wrong:?}, deleted but present {extra:?}",
        have.len(),
        want.len()
    );
    // Every message merged exactly once, across the kill.
    let merged: u64 = snap
        .commits
        .iter()
        .filter_map(|c| c.routine_load.as_ref()?["merge"]["rows"].as_u64())
        .sum();
    assert_eq!(merged, EVENTS as u64, "rows merged over all commits");
    let deletes = events.iter().filter(|e| e.kind == "DELETE").count();
    eprintln!(
        "{EVENTS} events ({deletes} deletes) on {KEYS} keys -> {} rows, {} commits, in {:.1}s",
        have.len(),
        snap.commits.len(),
        started.elapsed().as_secs_f64()
    );
}

/// Metric events for an Aggregate table: `id,n,price,seq,note` with `note` NULL (`\N`) in
/// one event of three.
fn metric_lines() -> Vec<(u64, String)> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..EVENTS)
        .map(|seq| {
            let id = next() % KEYS;
            let n = next() % 100;
            let price = (next() % 10_000) as i64 - 5_000;
            let note = if seq % 3 == 0 {
                "\\N".to_string()
            } else {
                format!("n{seq}")
            };
            (id, format!("{id},{n},{price},{seq},{note}"))
        })
        .collect()
}

/// An Aggregate Key table rolls up a metric stream (SUM, MAX, MIN, REPLACE, REPLACE_IF_NOT_NULL)
/// across batches, 3 partitions and 3 tasks, and a SIGKILL mid-stream: every key's row equals
/// the aggregate of its events computed here, so no batch was applied twice or lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_roll_up_in_an_aggregate_table_exactly_once_across_kill_9() {
    let Some(tb) = testbed_or_skip("aggregate key rollup") else {
        return;
    };
    let inst = Installation::start(tb, "e2e-agg", false)
        .await
        .expect("installation");
    let topic = unique_name("keys-agg");
    inst.tb
        .create_topic(&topic, PARTITIONS)
        .await
        .expect("topic");
    let dir = std::env::temp_dir().join(unique_name("agg-table"));
    std::fs::create_dir_all(&dir).unwrap();
    let location = format!("file://{}", dir.display());
    inst.create(
        TABLE,
        json!({
            "metadata": {"name": "metrics"},
            "spec": {
                "location": location,
                "model": "Aggregate",
                "keys": ["id"],
                "columns": [
                    {"name": "id", "type": "BIGINT", "nullable": false},
                    {"name": "total", "type": "BIGINT", "aggregate": "SUM"},
                    {"name": "hi", "type": "BIGINT", "aggregate": "MAX"},
                    {"name": "lo", "type": "BIGINT", "aggregate": "MIN"},
                    {"name": "last_seq", "type": "BIGINT", "aggregate": "REPLACE"},
                    {"name": "note", "type": "STRING", "aggregate": "REPLACE_IF_NOT_NULL"}
                ]
            }
        }),
    )
    .await
    .expect("create Table");
    let job = inst
        .create(
            JOB,
            json!({
                "metadata": {"name": "rollup"},
                "spec": {
                    "table": "metrics",
                    "columnSeparator": ",",
                    "columns": ["id", "n", "price", "last_seq", "note",
                                "total = cast(n as bigint)", "hi = cast(price as bigint)",
                                "lo = cast(price as bigint)"],
                    "kafka": {
                        "brokerList": inst.tb.var("KAFKA_BROKERS").unwrap(),
                        "topic": topic,
                        "partitions": [0, 1, 2],
                        "offsets": ["OFFSET_BEGINNING", "OFFSET_BEGINNING", "OFFSET_BEGINNING"]
                    }
                }
            }),
        )
        .await
        .expect("create job");
    let job_uid = job["metadata"]["uid"].as_str().unwrap().to_string();
    let events = metric_lines();
    let lines: Vec<(i32, String)> = events
        .iter()
        .map(|(id, l)| (partition_of(*id), l.clone()))
        .collect();
    let (first, second) = lines.split_at(EVENTS / 2);
    load_across_a_kill(&inst, "rollup", &job_uid, &topic, &dir, first, second).await;

    // The aggregates computed from the stream: (total, hi, lo, last seq, last non-NULL note).
    type Rollup = (i64, i64, i64, i64, Option<String>);
    let mut want: BTreeMap<u64, Rollup> = BTreeMap::new();
    for (id, line) in &events {
        let f: Vec<&str> = line.split(',').collect();
        let (n, price, seq): (i64, i64, i64) = (
            f[1].parse().unwrap(),
            f[2].parse().unwrap(),
            f[3].parse().unwrap(),
        );
        let note = (f[4] != "\\N").then(|| f[4].to_string());
        let e = want.entry(*id).or_insert((0, i64::MIN, i64::MAX, 0, None));
        e.0 += n;
        e.1 = e.1.max(price);
        e.2 = e.2.min(price);
        e.3 = seq;
        if note.is_some() {
            e.4 = note;
        }
    }
    let snap = inst.tb.read_delta(&location, None).expect("read table");
    let mut have: BTreeMap<u64, Rollup> = BTreeMap::new();
    for r in &snap.rows {
        let i = |k: &str| r[k].as_i64().unwrap_or_else(|| panic!("{k} in {r:?}"));
        let row = (
            i("total"),
            i("hi"),
            i("lo"),
            i("last_seq"),
            r["note"].as_str().map(str::to_string),
        );
        assert!(
            have.insert(r["id"].as_u64().expect("id"), row).is_none(),
            "key twice: {r:?}"
        );
    }
    let wrong: Vec<_> = want
        .iter()
        .filter(|(k, v)| have.get(k) != Some(v))
        .map(|(k, v)| (k, v, have.get(k)))
        .take(5)
        .collect();
    assert!(
        wrong.is_empty() && have.len() == want.len(),
        "{} keys in the table, {} expected; (key, want, have) {wrong:?}",
        have.len(),
        want.len()
    );
    let merged: u64 = snap
        .commits
        .iter()
        .filter_map(|c| c.routine_load.as_ref()?["merge"]["rows"].as_u64())
        .sum();
    assert_eq!(merged, EVENTS as u64, "rows merged over all commits");
    eprintln!(
        "{EVENTS} metric events on {} keys rolled up in {} commits",
        have.len(),
        snap.commits.len()
    );
}

/// One task per partition for `job` on one worker, started on the `first` messages and killed
/// with SIGKILL while its merges are under way (after some offsets were recorded, before all
/// of them), then started again once `second` is produced too; returns once the table records
/// the end of every partition, with the worker stopped.
async fn load_across_a_kill(
    inst: &Installation,
    job: &str,
    job_uid: &str,
    topic: &str,
    dir: &std::path::Path,
    first: &[(i32, String)],
    second: &[(i32, String)],
) {
    let location = format!("file://{}", dir.display());
    let worker = unique_name("w");
    for p in 0..PARTITIONS {
        inst.create(
            TASK,
            json!({
                "metadata": {"name": format!("{job}-{p}"),
                             "labels": {"routineload.io/worker": worker, "routineload.io/job": job}},
                "spec": {"job": job, "jobUid": job_uid, "partitions": [p],
                         "worker": worker, "epoch": 1}
            }),
        )
        .await
        .expect("create task");
    }
    produce_lines(&inst.tb, topic, first).await;
    let env = [("ROUTINE_LOAD_MAX_BATCH_ROWS", BATCH_ROWS)];
    let mut w = inst.spawn_worker(&worker, &env).expect("worker");

    // Kill -9 once the merges are under way and before the first half is all in.
    let log_dir = dir.join("_delta_log");
    let commits = || {
        std::fs::read_dir(&log_dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                    .count()
            })
            .unwrap_or(0)
    };
    let t0 = Instant::now();
    while commits() < 8 {
        assert!(
            t0.elapsed() < WAIT && w.is_running(),
            "no merges within {WAIT:?}:\n{}",
            w.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = w.kill().expect("kill -9");
    assert_eq!(status.signal(), Some(9), "the worker died of SIGKILL");
    let at_kill: i64 = recorded(&inst.tb, &location, job_uid).values().sum();
    assert!(
        at_kill > 0,
        "the kill came before any merge recorded offsets: the restart would not resume mid-stream"
    );
    assert!(
        at_kill < first.len() as i64,
        "the worker had loaded all {} messages of the first half before the kill (offsets {at_kill}): \
         make the batches smaller",
        first.len()
    );
    eprintln!(
        "killed the worker with SIGKILL after {} commits, {at_kill} of {} messages recorded",
        commits(),
        first.len()
    );

    produce_lines(&inst.tb, topic, second).await;
    let mut w = inst.spawn_worker(&worker, &env).expect("worker again");
    let ends: BTreeMap<i32, i64> = (0..PARTITIONS)
        .map(|p| (p, inst.tb.watermarks(topic, p).expect("watermarks").1))
        .collect();
    assert_eq!(
        ends.values().sum::<i64>(),
        (first.len() + second.len()) as i64,
        "all produced"
    );
    let t0 = Instant::now();
    loop {
        let have = recorded(&inst.tb, &location, job_uid);
        if have == ends {
            break;
        }
        assert!(
            t0.elapsed() < WAIT && w.is_running(),
            "not loaded within {WAIT:?}: recorded {have:?}, ends {ends:?}; worker log:\n{}",
            w.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = w.stop(Duration::from_secs(20));
}

/// The API server refuses key models that can't work, with the CRD's messages, and keeps the
/// model and keys of a Table as they were created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_refuses_invalid_and_changed_key_models() {
    let Some(tb) = testbed_or_skip("key model validation") else {
        return;
    };
    let inst = Installation::start(tb, "e2e-keys-cel", false)
        .await
        .expect("installation");
    let table = |name: &str, extra: serde_json::Value, id_nullable: bool| {
        let mut spec = json!({
            "location": "file:///tmp/never-created",
            "columns": [
                {"name": "id", "type": "BIGINT", "nullable": id_nullable},
                {"name": "v", "type": "STRING"}
            ]
        });
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        json!({"metadata": {"name": name}, "spec": spec})
    };
    let refused: &[(&str, serde_json::Value, bool, &str)] = &[
        (
            "no-keys",
            json!({"model": "Primary"}),
            false,
            "model Primary, Unique and Aggregate need keys",
        ),
        (
            "unknown-key",
            json!({"model": "Unique", "keys": ["nope"]}),
            false,
            "every keys entry must name a column of the table",
        ),
        (
            "nullable-key",
            json!({"model": "Primary", "keys": ["id"]}),
            true,
            "key columns must be NOT NULL (nullable: false)",
        ),
    ];
    for (name, extra, nullable, msg) in refused {
        let err = inst
            .create(TABLE, table(name, extra.clone(), *nullable))
            .await
            .expect_err(name);
        assert!(format!("{err:#}").contains(msg), "{name}: {err:#}");
    }
    inst.create(
        TABLE,
        table("pk", json!({"model": "Primary", "keys": ["id"]}), false),
    )
    .await
    .expect("a valid Primary table");
    for (patch, msg) in [
        (json!({"spec": {"model": "Unique"}}), "model is immutable"),
        (json!({"spec": {"keys": ["id", "v"]}}), "keys are immutable"),
    ] {
        let err = inst
            .merge_patch(TABLE, "pk", patch.clone())
            .await
            .expect_err("patch refused");
        assert!(format!("{err:#}").contains(msg), "{patch}: {err:#}");
    }
    // A Duplicate table (the default) needs no keys and records nothing more.
    let dup = inst
        .create(TABLE, table("dup", json!({}), true))
        .await
        .expect("a Duplicate table");
    assert_eq!(dup["spec"]["model"], "Duplicate", "defaulted: {dup}");
}
