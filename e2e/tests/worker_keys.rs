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
//!   REPLACE_IF_NOT_NULL), each key's row equal to the aggregate of its events;
//! - two jobs, each from its own topic, merge into one Primary table at the same time, and the
//!   table holds the last state of every key;
//! - a partial-update job (`partialUpdate`) changes only the columns it loads of the rows another
//!   job loaded whole, and a conditional-update job (`mergeCondition`) keeps each key's newest
//!   version when older versions arrive later, across a SIGKILL.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use routine_load_e2e::delta::DeltaSnapshot;
use routine_load_e2e::installation::{Installation, JOB, TABLE, TASK};
use routine_load_e2e::kafka::Listener;
use routine_load_e2e::process::LocalProcess;
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

/// A deterministic pseudo-random sequence (xorshift64) from `seed`.
fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

/// A deterministic CDC stream: a key not present is inserted, a present one updated (3 in 4)
/// or deleted (1 in 4).
fn events() -> Vec<Event> {
    let mut next = xorshift(0x2545_F491_4F6C_DD1D);
    let mut present = std::collections::BTreeSet::new();
    (0..EVENTS)
        .map(|seq| {
            let id = next() % KEYS;
            let kind = if !present.contains(&id) {
                present.insert(id);
                "INSERT"
            } else if next().is_multiple_of(4) {
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

/// Rows merged over all the table's commits (each merge records its batch's rows).
fn merged_rows(snap: &DeltaSnapshot) -> u64 {
    snap.commits
        .iter()
        .filter_map(|c| c.routine_load.as_ref()?["merge"]["rows"].as_u64())
        .sum()
}

/// A new directory for a table, and its location.
fn table_dir(prefix: &str) -> (std::path::PathBuf, String) {
    let dir = std::env::temp_dir().join(unique_name(prefix));
    std::fs::create_dir_all(&dir).unwrap();
    let location = format!("file://{}", dir.display());
    (dir, location)
}

/// A CSV job `name` into `table` reading all partitions of `topic` from the beginning, with
/// the fields of `extra` (columns, partialUpdate, ...) in its spec.
fn csv_job(
    inst: &Installation,
    name: &str,
    table: &str,
    topic: &str,
    extra: serde_json::Value,
) -> serde_json::Value {
    let mut spec = json!({
        "table": table,
        "columnSeparator": ",",
        "kafka": {
            "brokerList": inst.tb.var("KAFKA_BROKERS").unwrap(),
            "topic": topic,
            "partitions": [0, 1, 2],
            "offsets": ["OFFSET_BEGINNING", "OFFSET_BEGINNING", "OFFSET_BEGINNING"]
        }
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    json!({"metadata": {"name": name}, "spec": spec})
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
    let (dir, location) = table_dir("keys-table");
    inst.create(TABLE, accounts_table(&location))
        .await
        .expect("create Table");
    let job = inst
        .create(
            JOB,
            csv_job(&inst, "cdc", "accounts", &topic, cdc_columns()),
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
    assert_eq!(
        merged_rows(&snap),
        EVENTS as u64,
        "rows merged over all commits"
    );
    let deletes = events.iter().filter(|e| e.kind == "DELETE").count();
    eprintln!(
        "{EVENTS} events ({deletes} deletes) on {KEYS} keys -> {} rows, {} commits, in {:.1}s",
        have.len(),
        snap.commits.len(),
        started.elapsed().as_secs_f64()
    );
}

/// Two jobs merging into one Primary table at the same time, each from its own topic (3
/// partitions, 3 tasks, on its own worker): the even keys' change events go to one, the odd
/// keys' to the other, so every key's events pass through one job in order. Their merges race
/// (proved: the jobs' commits interleave in the Delta log and the workers merged again after
/// conflicts), and the table holds exactly the last state of every key, each message merged
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_jobs_merge_into_one_primary_table_at_the_same_time() {
    let Some(tb) = testbed_or_skip("two jobs, one primary table") else {
        return;
    };
    let inst = Installation::start(tb, "e2e-keys-jobs", false)
        .await
        .expect("installation");
    let (_dir, location) = table_dir("jobs-table");
    inst.create(TABLE, accounts_table(&location))
        .await
        .expect("create Table");
    let events = events();
    let mut workers = Vec::new();
    let mut jobs = Vec::new();
    for (job, parity) in [("cdc-even", 0), ("cdc-odd", 1)] {
        let topic = unique_name(job);
        inst.tb
            .create_topic(&topic, PARTITIONS)
            .await
            .expect("topic");
        let created = inst
            .create(JOB, csv_job(&inst, job, "accounts", &topic, cdc_columns()))
            .await
            .expect("create job");
        let job_uid = created["metadata"]["uid"].as_str().unwrap().to_string();
        let lines: Vec<(i32, String)> = events
            .iter()
            .filter(|e| e.id % 2 == parity)
            .map(|e| (partition_of(e.id), e.line()))
            .collect();
        produce_lines(&inst.tb, &topic, &lines).await;
        let worker = create_tasks(&inst, job, &job_uid).await;
        workers.push(worker);
        jobs.push((job_uid, partition_ends(&inst, &topic)));
    }
    // Both backlogs are in Kafka: the two workers start together.
    let env = [("ROUTINE_LOAD_MAX_BATCH_ROWS", BATCH_ROWS)];
    let mut running: Vec<LocalProcess> = workers
        .iter()
        .map(|w| inst.spawn_worker(w, &env).expect("worker"))
        .collect();
    for ((job_uid, ends), w) in jobs.iter().zip(running.iter_mut()) {
        wait_until_recorded(&inst, w, &location, job_uid, ends).await;
    }
    let conflicts: usize = running
        .iter()
        .map(|w| {
            w.log()
                .matches("merge conflicted with another commit")
                .count()
        })
        .sum();
    for w in &mut running {
        let _ = w.stop(Duration::from_secs(20));
    }

    let snap = inst.tb.read_delta(&location, None).expect("read table");
    let writers: Vec<String> = snap
        .commits
        .iter()
        .filter_map(|c| Some(c.routine_load.as_ref()?["job"].as_str()?.to_string()))
        .collect();
    let switches = writers.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(
        switches >= 2 && conflicts > 0,
        "the jobs' merges did not race (commits by job {writers:?}, {conflicts} merges again after a conflict): the test proves nothing"
    );
    let mut have: BTreeMap<u64, usize> = BTreeMap::new();
    for r in &snap.rows {
        let id = r["id"].as_u64().expect("id");
        let seq = r["seq"].as_u64().expect("seq") as usize;
        assert_eq!(r["v"], json!(format!("v{seq}")), "row {r:?}");
        assert!(have.insert(id, seq).is_none(), "key {id} twice");
    }
    assert_eq!(
        have,
        final_state(&events),
        "the table holds the last state of every key"
    );
    assert_eq!(
        merged_rows(&snap),
        EVENTS as u64,
        "rows merged over all commits"
    );
    eprintln!(
        "two jobs, {EVENTS} events -> {} rows in {} commits; {switches} switches between the jobs' commits, {conflicts} merges again after a conflict",
        have.len(),
        snap.commits.len()
    );
}

/// Metric events for an Aggregate table: `id,n,price,seq,note` with `note` NULL (`\N`) in
/// one event of three.
fn metric_lines() -> Vec<(u64, String)> {
    let mut next = xorshift(0x9E37_79B9_7F4A_7C15);
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
    let (dir, location) = table_dir("agg-table");
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
            csv_job(
                &inst,
                "rollup",
                "metrics",
                &topic,
                json!({"columns": ["id", "n", "price", "last_seq", "note",
                                   "total = cast(n as bigint)", "hi = cast(price as bigint)",
                                   "lo = cast(price as bigint)"]}),
            ),
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
    assert_eq!(
        merged_rows(&snap),
        EVENTS as u64,
        "rows merged over all commits"
    );
    eprintln!(
        "{EVENTS} metric events on {} keys rolled up in {} commits",
        have.len(),
        snap.commits.len()
    );
}

/// Tasks for `job` (one per partition) on a new worker, `lines` produced, then the worker runs
/// until the table records the end of every partition, and is stopped.
async fn load_to_the_end(
    inst: &Installation,
    job: &str,
    job_uid: &str,
    topic: &str,
    location: &str,
    lines: &[(i32, String)],
) {
    let worker = create_tasks(inst, job, job_uid).await;
    produce_lines(&inst.tb, topic, lines).await;
    let mut w = inst
        .spawn_worker(&worker, &[("ROUTINE_LOAD_MAX_BATCH_ROWS", BATCH_ROWS)])
        .expect("worker");
    let ends = partition_ends(inst, topic);
    wait_until_recorded(inst, &mut w, location, job_uid, &ends).await;
    let _ = w.stop(Duration::from_secs(20));
}

/// One task per partition for `job`, all on one new worker; returns the worker's name.
async fn create_tasks(inst: &Installation, job: &str, job_uid: &str) -> String {
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
    worker
}

/// The end offset of every partition of `topic`.
fn partition_ends(inst: &Installation, topic: &str) -> BTreeMap<i32, i64> {
    (0..PARTITIONS)
        .map(|p| (p, inst.tb.watermarks(topic, p).expect("watermarks").1))
        .collect()
}

/// Waits until the table at `location` records `ends` for the job, the worker `w` running.
async fn wait_until_recorded(
    inst: &Installation,
    w: &mut LocalProcess,
    location: &str,
    job_uid: &str,
    ends: &BTreeMap<i32, i64>,
) {
    let log_dir = std::path::Path::new(location.trim_start_matches("file://")).join("_delta_log");
    let t0 = Instant::now();
    loop {
        // The worker creates the table when its first task starts.
        let have = if log_dir.exists() {
            recorded(&inst.tb, location, job_uid)
        } else {
            BTreeMap::new()
        };
        if have == *ends {
            break;
        }
        assert!(
            t0.elapsed() < WAIT && w.is_running(),
            "not loaded within {WAIT:?}: recorded {have:?}, ends {ends:?}; worker log:\n{}",
            w.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A Primary table of players loaded whole by one job, then by a job with `partialUpdate`
/// that loads only `id, name`: the names change, version and score of the existing rows stay as
/// the first job loaded them, and keys only the second job loads are inserted with NULL there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_update_job_leaves_the_columns_it_does_not_load() {
    const OLD_KEYS: u64 = 300;
    const NEW_KEYS: u64 = 100;
    const RENAMES: usize = 1_500;
    let Some(tb) = testbed_or_skip("partial update") else {
        return;
    };
    let started = Instant::now();
    let inst = Installation::start(tb, "e2e-partial", false)
        .await
        .expect("installation");
    let (_, location) = table_dir("partial-table");
    inst.create(TABLE, players_table("players", &location))
        .await
        .expect("create Table");
    let mut uids = Vec::new();
    for (name, extra) in [
        (
            "whole",
            json!({"columns": ["id", "version", "name", "score"]}),
        ),
        (
            "names",
            json!({"columns": ["id", "name"], "partialUpdate": true}),
        ),
    ] {
        let topic = unique_name(&format!("partial-{name}"));
        inst.tb
            .create_topic(&topic, PARTITIONS)
            .await
            .expect("topic");
        let job = inst
            .create(JOB, csv_job(&inst, name, "players", &topic, extra.clone()))
            .await
            .expect("create job");
        for k in extra.as_object().unwrap().keys() {
            assert_eq!(
                job["spec"][k],
                extra[k],
                "the API server dropped {k}: the CRD applied from {} lacks it (make crds)",
                routine_load_e2e::kube_util::crds_dir().display()
            );
        }
        uids.push((
            name,
            topic,
            job["metadata"]["uid"].as_str().unwrap().to_string(),
        ));
    }
    let whole: Vec<(i32, String)> = (0..OLD_KEYS)
        .map(|id| (partition_of(id), format!("{id},7,first{id},{}", id * 10)))
        .collect();
    let mut next = xorshift(0x2545_F491_4F6C_DD1D);
    let renames: Vec<(u64, String)> = (0..RENAMES)
        .map(|seq| {
            let id = next() % (OLD_KEYS + NEW_KEYS);
            (id, format!("{id},name{seq}"))
        })
        .collect();
    let (name, topic, uid) = &uids[0];
    load_to_the_end(&inst, name, uid, topic, &location, &whole).await;
    let (name, topic, uid) = &uids[1];
    let lines: Vec<(i32, String)> = renames
        .iter()
        .map(|(id, l)| (partition_of(*id), l.clone()))
        .collect();
    load_to_the_end(&inst, name, uid, topic, &location, &lines).await;

    // Expected, from the two streams alone: (version, name, score) per key.
    type Player = (Option<i64>, String, Option<i64>);
    let mut want: BTreeMap<u64, Player> = (0..OLD_KEYS)
        .map(|id| (id, (Some(7), format!("first{id}"), Some(id as i64 * 10))))
        .collect();
    for (id, line) in &renames {
        let name = line.split(',').nth(1).unwrap().to_string();
        want.entry(*id).or_insert((None, String::new(), None)).1 = name;
    }
    let snap = inst.tb.read_delta(&location, None).expect("read table");
    let mut have: BTreeMap<u64, Player> = BTreeMap::new();
    for r in &snap.rows {
        let row = (
            r["version"].as_i64(),
            r["name"].as_str().expect("name").to_string(),
            r["score"].as_i64(),
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
    let untouched = (0..OLD_KEYS)
        .filter(|id| !renames.iter().any(|(r, _)| r == id))
        .count();
    eprintln!(
        "{OLD_KEYS} whole rows, then {RENAMES} partial updates ({} new keys, {untouched} rows not renamed) in {:.1}s",
        want.len() as u64 - OLD_KEYS,
        started.elapsed().as_secs_f64()
    );
}

/// The CDC job's columns: `id,type,v,seq`, `__op` deleting when `type` is DELETE.
fn cdc_columns() -> serde_json::Value {
    json!({"columns": ["id", "type", "v", "seq", "__op = if(type = 'DELETE', 1, 0)"]})
}

/// The accounts table of the CDC streams (a Primary table: id, v, seq).
fn accounts_table(location: &str) -> serde_json::Value {
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
    })
}

/// The players table (a Primary table: id, version, name, score).
fn players_table(name: &str, location: &str) -> serde_json::Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "location": location,
            "model": "Primary",
            "keys": ["id"],
            "columns": [
                {"name": "id", "type": "BIGINT", "nullable": false},
                {"name": "version", "type": "BIGINT"},
                {"name": "name", "type": "STRING"},
                {"name": "score", "type": "BIGINT"}
            ]
        }
    })
}

/// A job with `mergeCondition: version` on a stream where each key's versions arrive out of
/// order (3 partitions, 3 tasks, a SIGKILL mid-stream): each key keeps the row of its largest
/// version (the later one among equal versions), computed here from the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_condition_job_keeps_the_newest_version_across_kill_9() {
    const MESSAGES: usize = 4_000;
    let Some(tb) = testbed_or_skip("merge condition") else {
        return;
    };
    let started = Instant::now();
    let inst = Installation::start(tb, "e2e-condition", false)
        .await
        .expect("installation");
    let topic = unique_name("keys-condition");
    inst.tb
        .create_topic(&topic, PARTITIONS)
        .await
        .expect("topic");
    let (dir, location) = table_dir("condition-table");
    inst.create(TABLE, players_table("versions", &location))
        .await
        .expect("create Table");
    let job = inst
        .create(
            JOB,
            csv_job(
                &inst,
                "newest",
                "versions",
                &topic,
                json!({"columns": ["id", "version", "name", "score"], "mergeCondition": "version"}),
            ),
        )
        .await
        .expect("create job");
    assert_eq!(
        job["spec"]["mergeCondition"],
        json!("version"),
        "the API server dropped mergeCondition: the CRD applied from {} lacks it (make crds)",
        routine_load_e2e::kube_util::crds_dir().display()
    );
    let job_uid = job["metadata"]["uid"].as_str().unwrap().to_string();
    // Versions drawn at random per message: most messages of a key arrive after a newer one.
    let mut next = xorshift(0x9E37_79B9_7F4A_7C15);
    let events: Vec<(u64, u64, usize)> = (0..MESSAGES)
        .map(|seq| (next() % KEYS, next() % 40, seq))
        .collect();
    let lines: Vec<(i32, String)> = events
        .iter()
        .map(|(id, v, seq)| (partition_of(*id), format!("{id},{v},n{seq},{seq}")))
        .collect();
    let (first, second) = lines.split_at(MESSAGES / 2);
    load_across_a_kill(&inst, "newest", &job_uid, &topic, &dir, first, second).await;

    // Each key's (version, seq): rows applied in stream order, a row taking effect when its
    // version is >= the stored one.
    let mut want: BTreeMap<u64, (u64, usize)> = BTreeMap::new();
    let mut late = 0;
    for (id, v, seq) in &events {
        match want.get(id) {
            Some((stored, _)) if v < stored => late += 1,
            _ => {
                want.insert(*id, (*v, *seq));
            }
        }
    }
    let snap = inst.tb.read_delta(&location, None).expect("read table");
    let mut have: BTreeMap<u64, (u64, usize)> = BTreeMap::new();
    for r in &snap.rows {
        let seq = r["score"].as_u64().expect("score") as usize;
        assert_eq!(r["name"], json!(format!("n{seq}")), "row {r:?}");
        let row = (r["version"].as_u64().expect("version"), seq);
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
        "{} keys in the table, {} expected; (key, (version, seq) wanted, in the table) {wrong:?}",
        have.len(),
        want.len()
    );
    assert!(
        late > MESSAGES / 4,
        "only {late} late rows: the test proves little"
    );
    assert_eq!(
        merged_rows(&snap),
        MESSAGES as u64,
        "rows merged over all commits"
    );
    eprintln!(
        "{MESSAGES} messages ({late} older than their key's stored version) on {} keys in {:.1}s",
        have.len(),
        started.elapsed().as_secs_f64()
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
    let worker = create_tasks(inst, job, job_uid).await;
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
    let ends = partition_ends(inst, topic);
    assert_eq!(
        ends.values().sum::<i64>(),
        (first.len() + second.len()) as i64,
        "all produced"
    );
    wait_until_recorded(inst, &mut w, &location, job_uid, &ends).await;
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
    // A partial update names the columns it loads (CEL).
    let job = |columns: serde_json::Value| {
        json!({"metadata": {"name": "partial"}, "spec": {
            "table": "pk", "partialUpdate": true, "columns": columns,
            "kafka": {"brokerList": "b:9092", "topic": "t"}}})
    };
    let err = inst
        .create(JOB, job(json!([])))
        .await
        .expect_err("partialUpdate without columns");
    assert!(
        format!("{err:#}").contains("partialUpdate needs columns"),
        "{err:#}"
    );
    inst.create(JOB, job(json!(["id", "v"])))
        .await
        .expect("partialUpdate with columns");
}
