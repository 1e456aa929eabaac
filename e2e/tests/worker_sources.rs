//! The worker process against the testbed, one source or storage feature per test: JSON with
//! jsonPaths/jsonRoot, Debezium change events (with tombstones) into a Primary Key table, JSON
//! with stripOuterArray (bad messages become counted error rows with their
//! reason in the error log), an SSL broker, an `s3://` table with credentials from a Secret, and
//! SASL PLAIN and SCRAM-SHA-256 with credentials from a Secret (on a private broker, see
//! `routine_load_e2e::sasl_broker`), including what a wrong password looks like.
//!
//! As in `worker_load.rs`, the Table, Job and Task objects are created directly (no operator);
//! the worker binary is `$CARGO_TARGET_DIR/debug/routine-load-worker`, and every table is read
//! back with the independent reader (`e2e/delta_reader.py`).

use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use routine_load_e2e::delta::DeltaSnapshot;
use routine_load_e2e::kafka::Listener;
use routine_load_e2e::kube_util::client_from_kubeconfig;
use routine_load_e2e::process::{LocalProcess, workspace_binary};
use routine_load_e2e::sasl_broker::{SaslBroker, SaslUser};
use routine_load_e2e::{Testbed, testbed_or_skip, unique_name};
use serde_json::{Map, Value, json};

fn ar(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("routineload.io", "v1alpha1", kind),
        plural,
    )
}

/// A test namespace on the testbed.
struct Ns {
    tb: Testbed,
    client: kube::Client,
    ns: String,
}

/// A job and the one task (partition 0) the test assigned to a worker.
struct Task {
    job_uid: String,
    name: String,
    location: String,
}

/// A running worker process and its pod name.
struct Worker {
    process: LocalProcess,
    name: String,
}

async fn namespace(test: &str) -> Option<Ns> {
    let tb = testbed_or_skip(test)?;
    let client = client_from_kubeconfig(&tb.kubeconfig())
        .await
        .expect("client");
    tb.apply_crds().expect("apply CRDs");
    let ns = unique_name("e2e-sources");
    tb.ensure_namespace(&client, &ns).await.expect("namespace");
    Some(Ns { tb, client, ns })
}

/// A local table directory as a `file://` location.
fn local_location(prefix: &str) -> String {
    let dir = std::env::temp_dir().join(unique_name(prefix));
    std::fs::create_dir_all(&dir).unwrap();
    format!("file://{}", dir.display())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn http_get(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "10", url])
        .output()
        .expect("curl");
    assert!(out.status.success(), "GET {url}: {}", out.status);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Ns {
    fn api(&self, kind: &str, plural: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.ns, &ar(kind, plural))
    }

    async fn create(&self, kind: &str, plural: &str, object: Value) -> DynamicObject {
        let obj: DynamicObject = serde_json::from_value(object).unwrap();
        self.api(kind, plural)
            .create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("create {kind}: {e}"))
    }

    /// A Secret holding `data` (as stringData).
    async fn secret(&self, name: &str, data: &[(&str, &str)]) {
        let string_data: Map<String, Value> = data
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let s: Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name},
            "type": "Opaque",
            "stringData": string_data
        }))
        .unwrap();
        Api::<Secret>::namespaced(self.client.clone(), &self.ns)
            .create(&PostParams::default(), &s)
            .await
            .expect("create Secret");
    }

    /// A Table named `name`: `spec` gives columns (and optionally credentialsSecret).
    async fn table(&self, name: &str, location: &str, mut spec: Value) {
        spec["location"] = json!(location);
        self.create(
            "Table",
            "tables",
            json!({
                "apiVersion": "routineload.io/v1alpha1", "kind": "Table",
                "metadata": {"name": name},
                "spec": spec
            }),
        )
        .await;
    }

    /// A RoutineLoadJob `job` with `spec` and its task for partition 0 on `worker`.
    async fn job_and_task(&self, job: &str, location: &str, spec: Value, worker: &str) -> Task {
        let created = self
            .create(
                "RoutineLoadJob",
                "routineloadjobs",
                json!({
                    "apiVersion": "routineload.io/v1alpha1", "kind": "RoutineLoadJob",
                    "metadata": {"name": job},
                    "spec": spec
                }),
            )
            .await;
        let job_uid = created.metadata.uid.clone().expect("job uid");
        let name = format!("{job}-0");
        self.create(
            "RoutineLoadTask",
            "routineloadtasks",
            json!({
                "apiVersion": "routineload.io/v1alpha1", "kind": "RoutineLoadTask",
                "metadata": {"name": name, "labels": {"routineload.io/worker": worker}},
                "spec": {"job": job, "jobUid": job_uid, "partitions": [0],
                         "worker": worker, "epoch": 1}
            }),
        )
        .await;
        Task {
            job_uid,
            name,
            location: location.to_string(),
        }
    }

    /// Starts a worker process for this namespace. `without_env` lists prefixes of variables the
    /// worker must not inherit (e.g. the AWS keys, so a table's credentials can only come from
    /// its Secret).
    fn spawn_worker(&self, without_env: &[&str]) -> Worker {
        let name = unique_name("worker");
        let port = free_port();
        let bin = workspace_binary("routine-load-worker").expect("worker binary");
        let mut cmd = Command::new(bin);
        for (k, v) in self.tb.child_env() {
            if !without_env.iter().any(|w| k.starts_with(w)) {
                cmd.env(k, v);
            }
        }
        // Also what the test process itself inherited (a sourced testbed env file).
        for (k, _) in std::env::vars() {
            if without_env.iter().any(|w| k.starts_with(w)) {
                cmd.env_remove(k);
            }
        }
        let logs = std::env::temp_dir().join(format!("{name}-errlog"));
        cmd.env("KUBECONFIG", self.tb.kubeconfig())
            .env("POD_NAME", &name)
            .env("POD_NAMESPACE", &self.ns)
            .env("ROUTINE_LOAD_WATCH_NAMESPACE", &self.ns)
            .env("ROUTINE_LOAD_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("ROUTINE_LOAD_ERROR_LOG_DIR", logs)
            .env(
                "ROUTINE_LOAD_ADVERTISE_URL",
                format!("http://127.0.0.1:{port}"),
            )
            .env("ROUTINE_LOAD_BATCH_INTERVAL_MS", "1000")
            .env("RUST_LOG", "info,buoyant_kernel=warn,deltalake_core=warn");
        let process = self.tb.spawn(&name, cmd).expect("spawn worker");
        Worker { process, name }
    }

    async fn task_status(&self, task: &Task) -> Value {
        let t = self
            .api("RoutineLoadTask", "routineloadtasks")
            .get(&task.name)
            .await
            .expect("get task");
        t.data.get("status").cloned().unwrap_or(Value::Null)
    }

    /// Waits until the task status satisfies `done`, or fails with the status and worker log.
    async fn wait_status(
        &self,
        task: &Task,
        w: &mut Worker,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let t0 = Instant::now();
        loop {
            let st = self.task_status(task).await;
            if done(&st) {
                return st;
            }
            let running = w.process.is_running();
            if t0.elapsed() > timeout || !running {
                panic!(
                    "task {}: {what} not reached within {timeout:?} (worker running: {running}); status: {st}\nworker log:\n{}",
                    task.name,
                    w.process.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Waits until the task committed `offset` for partition 0 and reports `loaded` loaded rows
    /// (counters come with a rate-limited status patch, so they may trail the offsets).
    async fn wait_loaded(&self, task: &Task, w: &mut Worker, offset: i64, loaded: i64) -> Value {
        self.wait_status(
            task,
            w,
            &format!("offset {offset} committed with {loaded} loaded rows"),
            Duration::from_secs(60),
            |st| {
                st["committedOffsets"]["0"].as_i64() == Some(offset)
                    && st["loadedRows"].as_i64() == Some(loaded)
            },
        )
        .await
    }

    /// The table as the independent reader sees it, with the task's partition-0 transaction at
    /// `offset`.
    fn read_table(&self, task: &Task, offset: i64) -> DeltaSnapshot {
        let snap = self
            .tb
            .read_delta(&task.location, None)
            .expect("read table");
        let app = format!("routine-load-{}-0", task.job_uid);
        assert_eq!(
            snap.txns.get(&app).copied(),
            Some(offset),
            "txn of partition 0 in {}",
            task.location
        );
        snap
    }
}

/// The rows sorted by `id`, each as a JSON object of the given columns.
fn rows(snap: &DeltaSnapshot, columns: &[&str]) -> Vec<Value> {
    let mut rows = snap.rows.clone();
    rows.sort_by_key(|r| r.get("id").and_then(Value::as_i64).unwrap_or(i64::MIN));
    rows.into_iter()
        .map(|r| {
            Value::Object(
                columns
                    .iter()
                    .map(|c| (c.to_string(), r.get(*c).cloned().unwrap_or(Value::Null)))
                    .collect(),
            )
        })
        .collect()
}

fn assert_counters(st: &Value, total: i64, loaded: i64, errors: i64) {
    assert_eq!(st["totalRows"].as_i64(), Some(total), "totalRows: {st}");
    assert_eq!(st["loadedRows"].as_i64(), Some(loaded), "loadedRows: {st}");
    assert_eq!(st["errorRows"].as_i64(), Some(errors), "errorRows: {st}");
    assert_eq!(
        st["unselectedRows"].as_i64().unwrap_or(0),
        0,
        "unselectedRows: {st}"
    );
}

/// A small CSV table and its rows, for the transport tests (SSL, S3, SASL).
const EVENTS_COLUMNS: &str = r#"[
    {"name": "id", "type": "BIGINT", "nullable": false},
    {"name": "name", "type": "VARCHAR(32)"},
    {"name": "amount", "type": "DECIMAL(10,2)"},
    {"name": "day", "type": "DATE"}
]"#;

fn event_line(i: usize) -> String {
    format!(
        "{i},event-{i},{}.{:02},2024-03-{:02}",
        i * 3,
        i % 100,
        i % 28 + 1
    )
}

fn expected_event(i: usize) -> Value {
    json!({
        "id": i,
        "name": format!("event-{i}"),
        "amount": format!("{}.{:02}", i * 3, i % 100),
        "day": format!("2024-03-{:02}", i % 28 + 1),
    })
}

fn events_spec(brokers: &str, topic: &str) -> Value {
    json!({
        "table": "events",
        "columnSeparator": ",",
        "desiredConcurrentNumber": 1,
        "kafka": {
            "brokerList": brokers,
            "topic": topic,
            "partitions": [0],
            "offsets": ["OFFSET_BEGINNING"]
        }
    })
}

fn check_events(snap: &DeltaSnapshot, n: usize) {
    let got = rows(snap, &["id", "name", "amount", "day"]);
    let want: Vec<Value> = (0..n).map(expected_event).collect();
    assert_eq!(got, want, "rows of {n} events");
}

// ------------------------------------------------------------------------------------------------
// JSON

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_root_and_paths_pick_nested_fields_and_a_derived_column_loads() {
    let Some(env) = namespace("worker json jsonRoot + jsonPaths").await else {
        return;
    };
    let topic = unique_name("json-orders");
    env.tb.create_topic(&topic, 1).await.expect("topic");
    let messages = [
        r#"{"shop": "berlin", "order": {"id": 101, "customer": {"name": "alice", "tier": "gold"}, "line": {"qty": 3, "price": "12.50"}, "at": "2024-05-01 10:00:00"}}"#,
        r#"{"shop": "paris", "order": {"id": 102, "customer": {"name": "bob"}, "line": {"qty": 1, "price": 99.99}, "at": "2024-05-01 10:05:30"}, "extra": [1, 2]}"#,
        // No customer: NULL in a nullable column, not an error.
        r#"{"shop": "rome", "order": {"id": 103, "line": {"qty": 2, "price": 0.5}, "at": "2024-05-02 00:00:00"}}"#,
        // No $.order: an error row.
        r#"{"shop": "oslo", "refund": {"id": 104}}"#,
    ];
    env.tb
        .produce_lines(Listener::Plaintext, &topic, 0, &messages)
        .await
        .expect("produce");
    let location = local_location("json-orders");
    env.table(
        "orders",
        &location,
        json!({"columns": [
            {"name": "id", "type": "BIGINT", "nullable": false},
            {"name": "customer", "type": "VARCHAR(32)"},
            {"name": "qty", "type": "INT"},
            {"name": "price", "type": "DECIMAL(10,2)"},
            {"name": "ordered_at", "type": "DATETIME"},
            {"name": "amount", "type": "DECIMAL(12,2)"}
        ]}),
    )
    .await;
    let mut w = env.spawn_worker(&[]);
    let task = env
        .job_and_task(
            "orders-json",
            &location,
            json!({
                "table": "orders",
                "format": "json",
                "jsonRoot": "$.order",
                "jsonPaths": ["$.id", "$.customer.name", "$.line.qty", "$.line.price", "$.at"],
                "columns": ["id", "customer", "qty", "price", "ordered_at", "amount = price * qty"],
                "maxErrorNumber": 5,
                "kafka": {
                    "brokerList": env.tb.var("KAFKA_BROKERS").unwrap(),
                    "topic": topic,
                    "partitions": [0],
                    "offsets": ["OFFSET_BEGINNING"]
                }
            }),
            &w.name,
        )
        .await;
    let st = env.wait_loaded(&task, &mut w, 4, 3).await;
    assert_counters(&st, 4, 3, 1);

    let snap = env.read_table(&task, 4);
    assert_eq!(
        rows(
            &snap,
            &["id", "customer", "qty", "price", "ordered_at", "amount"]
        ),
        vec![
            json!({"id": 101, "customer": "alice", "qty": 3, "price": "12.50",
                   "ordered_at": "2024-05-01T10:00:00", "amount": "37.50"}),
            json!({"id": 102, "customer": "bob", "qty": 1, "price": "99.99",
                   "ordered_at": "2024-05-01T10:05:30", "amount": "99.99"}),
            json!({"id": 103, "customer": null, "qty": 2, "price": "0.50",
                   "ordered_at": "2024-05-02T00:00:00", "amount": "1.00"}),
        ]
    );
    let url = st["errorLogUrl"].as_str().expect("errorLogUrl").to_string();
    let log = http_get(&url);
    assert!(
        log.contains("JSON root $.order not found") && log.contains("refund"),
        "error log at {url}: {log}"
    );
    assert_eq!(log.lines().count(), 1, "one error row: {log}");
}

/// A Debezium change event as Kafka Connect's JsonConverter writes it with schemas on
/// (`{"schema": ..., "payload": {"before", "after", "source", "op", "ts_ms"}}`), decimals in
/// `decimal.handling.mode=string`. `row` is `(id, name, balance)`.
fn debezium_event(
    op: &str,
    before: Option<(i64, &str, &str)>,
    after: Option<(i64, &str, &str)>,
) -> String {
    let row = |r: Option<(i64, &str, &str)>| {
        r.map_or(
            Value::Null,
            |(id, name, balance)| json!({"id": id, "name": name, "balance": balance}),
        )
    };
    let fields = json!([
        {"type": "int64", "optional": false, "field": "id"},
        {"type": "string", "optional": true, "field": "name"},
        {"type": "string", "optional": true, "field": "balance"}
    ]);
    json!({
        "schema": {"type": "struct", "name": "shop.public.accounts.Envelope", "optional": false,
                   "fields": [
                       {"type": "struct", "fields": fields, "optional": true, "field": "before"},
                       {"type": "struct", "fields": fields, "optional": true, "field": "after"},
                       {"type": "struct", "optional": false, "field": "source", "fields": []},
                       {"type": "string", "optional": false, "field": "op"},
                       {"type": "int64", "optional": true, "field": "ts_ms"}
                   ]},
        "payload": {
            "before": row(before),
            "after": row(after),
            "source": {"version": "2.7.0.Final", "connector": "postgresql", "name": "shop",
                       "db": "shop", "schema": "public", "table": "accounts",
                       "snapshot": if op == "r" { "true" } else { "false" }},
            "op": op,
            "ts_ms": 1_733_000_000_000i64
        }
    })
    .to_string()
}

/// A Debezium stream (snapshot reads, inserts, updates, deletes each followed by its tombstone,
/// a key inserted again after its delete) into a Primary Key table through `jsonRoot` and
/// `jsonPaths`, the key taken from `after` or, for a delete, from `before`, and `__op` from
/// `op`: the table holds each key's last state; the tombstones (null values) are skipped, not
/// error rows, and their offsets are committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debezium_change_events_leave_the_last_state_of_each_key() {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let Some(env) = namespace("worker Debezium envelope").await else {
        return;
    };
    let topic = unique_name("dbz-accounts");
    env.tb.create_topic(&topic, 1).await.expect("topic");
    // (key, event); `None` is the tombstone Debezium sends after a delete.
    let events: Vec<(i64, Option<String>)> = vec![
        (
            1,
            Some(debezium_event("r", None, Some((1, "alice", "10.00")))),
        ),
        (2, Some(debezium_event("r", None, Some((2, "bob", "5.00"))))),
        (
            3,
            Some(debezium_event("c", None, Some((3, "carol", "7.25")))),
        ),
        (
            1,
            Some(debezium_event(
                "u",
                Some((1, "alice", "10.00")),
                Some((1, "alice", "12.50")),
            )),
        ),
        (2, Some(debezium_event("d", Some((2, "bob", "5.00")), None))),
        (2, None),
        (
            4,
            Some(debezium_event("c", None, Some((4, "dave", "1.00")))),
        ),
        (
            3,
            Some(debezium_event(
                "u",
                Some((3, "carol", "7.25")),
                Some((3, "carol", "8.00")),
            )),
        ),
        (
            4,
            Some(debezium_event("d", Some((4, "dave", "1.00")), None)),
        ),
        (4, None),
        (2, Some(debezium_event("c", None, Some((2, "bob", "6.00"))))),
    ];
    let producer: FutureProducer = env
        .tb
        .kafka_config(Listener::Plaintext)
        .expect("kafka config")
        .create()
        .expect("producer");
    for (id, event) in &events {
        let key = json!({"id": id}).to_string();
        let mut rec = FutureRecord::<str, str>::to(&topic).key(&key).partition(0);
        if let Some(e) = event {
            rec = rec.payload(e);
        }
        producer
            .send(rec, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)
            .expect("deliver");
    }
    let location = local_location("dbz-accounts");
    env.table(
        "accounts",
        &location,
        json!({
            "model": "Primary",
            "keys": ["id"],
            "columns": [
                {"name": "id", "type": "BIGINT", "nullable": false},
                {"name": "name", "type": "VARCHAR(32)"},
                {"name": "balance", "type": "DECIMAL(10,2)"}
            ]
        }),
    )
    .await;
    let mut w = env.spawn_worker(&[]);
    let task = env
        .job_and_task(
            "accounts-cdc",
            &location,
            json!({
                "table": "accounts",
                "format": "json",
                "jsonRoot": "$.payload",
                "jsonPaths": ["$.op", "$.before.id", "$.after.id", "$.after.name", "$.after.balance"],
                "columns": ["op", "before_id", "after_id", "name", "balance",
                            "id = cast(coalesce(after_id, before_id) as bigint)",
                            "__op = if(op = 'd', 1, 0)"],
                "kafka": {
                    "brokerList": env.tb.var("KAFKA_BROKERS").unwrap(),
                    "topic": topic,
                    "partitions": [0],
                    "offsets": ["OFFSET_BEGINNING"]
                }
            }),
            &w.name,
        )
        .await;
    let changes = events.iter().filter(|(_, e)| e.is_some()).count() as i64;
    let st = env
        .wait_loaded(&task, &mut w, events.len() as i64, changes)
        .await;
    assert_counters(&st, changes, changes, 0);
    let snap = env.read_table(&task, events.len() as i64);
    assert_eq!(
        rows(&snap, &["id", "name", "balance"]),
        vec![
            json!({"id": 1, "name": "alice", "balance": "12.50"}),
            json!({"id": 2, "name": "bob", "balance": "6.00"}),
            json!({"id": 3, "name": "carol", "balance": "8.00"}),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strip_outer_array_loads_each_element_and_bad_messages_become_error_rows() {
    let Some(env) = namespace("worker json stripOuterArray").await else {
        return;
    };
    let topic = unique_name("json-readings");
    env.tb.create_topic(&topic, 1).await.expect("topic");
    let messages = [
        // Three rows; the third has no "ok" (NULL).
        r#"[{"id": 1, "city": "Oslo", "temp": -3, "at": "2024-01-01 00:00:00", "ok": true},
            {"id": 2, "city": "Rome", "temp": 14, "at": "2024-01-01 01:00:00", "ok": false},
            {"id": 3, "city": "Lima", "temp": 22, "at": "2024-01-01 02:00:00"}]"#,
        // Not JSON: one error row.
        r#"[{"id": 4, "city": "Kyiv", "temp": "#,
        // Strict mode: "warm" is no INT (error row); "31" is.
        r#"[{"id": 5, "city": "Pune", "temp": "warm", "at": "2024-01-01 03:00:00", "ok": true},
            {"id": 6, "city": "Baku", "temp": "31", "at": "2024-01-01 04:00:00", "ok": true}]"#,
        // Not an array while stripOuterArray is set: one error row.
        r#"{"id": 7, "city": "Nuuk", "temp": -20, "at": "2024-01-01 05:00:00", "ok": true}"#,
        // A JSON null is NULL, not an error, even in strict mode.
        r#"[{"id": 8, "city": "Cusco", "temp": null, "at": "2024-01-01 06:00:00", "ok": true}]"#,
    ];
    env.tb
        .produce_lines(Listener::Plaintext, &topic, 0, &messages)
        .await
        .expect("produce");
    let location = local_location("json-readings");
    env.table(
        "readings",
        &location,
        json!({"columns": [
            {"name": "id", "type": "BIGINT", "nullable": false},
            {"name": "city", "type": "VARCHAR(16)"},
            {"name": "temp", "type": "INT"},
            {"name": "at", "type": "DATETIME"},
            {"name": "ok", "type": "BOOLEAN"}
        ]}),
    )
    .await;
    let mut w = env.spawn_worker(&[]);
    let task = env
        .job_and_task(
            "readings-json",
            &location,
            json!({
                "table": "readings",
                "format": "json",
                "stripOuterArray": true,
                "strictMode": true,
                "maxErrorNumber": 10,
                "kafka": {
                    "brokerList": env.tb.var("KAFKA_BROKERS").unwrap(),
                    "topic": topic,
                    "partitions": [0],
                    "offsets": ["OFFSET_BEGINNING"]
                }
            }),
            &w.name,
        )
        .await;
    let st = env.wait_loaded(&task, &mut w, 5, 5).await;
    // 3 + 1 + 2 + 1 + 1 rows received; ids 4, 5 and 7 are errors.
    assert_counters(&st, 8, 5, 3);
    assert!(st["receivedBytes"].as_i64().unwrap_or(0) > 0, "{st}");

    let snap = env.read_table(&task, 5);
    assert_eq!(
        rows(&snap, &["id", "city", "temp", "at", "ok"]),
        vec![
            json!({"id": 1, "city": "Oslo", "temp": -3, "at": "2024-01-01T00:00:00", "ok": true}),
            json!({"id": 2, "city": "Rome", "temp": 14, "at": "2024-01-01T01:00:00", "ok": false}),
            json!({"id": 3, "city": "Lima", "temp": 22, "at": "2024-01-01T02:00:00", "ok": null}),
            json!({"id": 6, "city": "Baku", "temp": 31, "at": "2024-01-01T04:00:00", "ok": true}),
            json!({"id": 8, "city": "Cusco", "temp": null, "at": "2024-01-01T06:00:00", "ok": true}),
        ]
    );

    let url = st["errorLogUrl"].as_str().expect("errorLogUrl").to_string();
    let log = http_get(&url);
    // One entry per error row, each starting with "Error: " (a row keeps its own line breaks:
    // the second message is pretty-printed over two lines).
    let lines: Vec<&str> = log.lines().filter(|l| l.starts_with("Error: ")).collect();
    assert_eq!(lines.len(), 3, "three error rows: {log}");
    let line_of = |needle: &str| {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no error row with {needle:?} in {log}"))
            .to_string()
    };
    let invalid = line_of("Kyiv");
    assert!(
        invalid.contains("invalid JSON") && invalid.contains("offset: 1"),
        "{invalid}"
    );
    let warm = line_of("warm");
    assert!(
        warm.contains("convert json value to INT failed")
            && warm.contains("Column: temp")
            && warm.contains("offset: 2"),
        "{warm}"
    );
    let not_array = line_of("Nuuk");
    assert!(
        not_array.contains("stripOuterArray is set but the message is not a JSON array")
            && not_array.contains("offset: 3"),
        "{not_array}"
    );
}

// ------------------------------------------------------------------------------------------------
// SSL broker

/// Two jobs read the same topic over the SSL listener (server certificate verified, hostname
/// included): one with `ssl.ca.location` in `kafka.properties`, one with the CA certificate as
/// `ssl.ca.pem` in its credentials Secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_broker_loads_rows_with_the_ca_from_kafka_properties_or_from_a_secret() {
    const N: usize = 40;
    let Some(env) = namespace("worker SSL broker").await else {
        return;
    };
    let topic = unique_name("ssl-events");
    env.tb.create_topic(&topic, 1).await.expect("topic");
    let lines: Vec<String> = (0..N).map(event_line).collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    env.tb
        .produce_lines(Listener::Ssl, &topic, 0, &refs)
        .await
        .expect("produce over SSL");
    let ca_path = env.tb.var("KAFKA_SSL_CA").unwrap().to_string();
    let ca_pem = std::fs::read_to_string(&ca_path).expect("testbed CA");
    env.secret("kafka-tls", &[("ssl.ca.pem", &ca_pem)]).await;

    let mut w = env.spawn_worker(&[]);
    let mut tasks = Vec::new();
    for (table, kafka) in [
        (
            "events-ca-location",
            json!({"properties": {"security.protocol": "SSL", "ssl.ca.location": ca_path}}),
        ),
        (
            "events-ca-secret",
            json!({"properties": {"security.protocol": "SSL"},
                   "credentialsSecret": {"name": "kafka-tls"}}),
        ),
    ] {
        let location = local_location(table);
        env.table(
            table,
            &location,
            json!({"columns": serde_json::from_str::<Value>(EVENTS_COLUMNS).unwrap()}),
        )
        .await;
        let mut spec = events_spec(&env.tb.kafka_brokers(Listener::Ssl).unwrap(), &topic);
        spec["table"] = json!(table);
        for (k, v) in kafka.as_object().unwrap() {
            spec["kafka"][k] = v.clone();
        }
        tasks.push(
            env.job_and_task(&format!("{table}-job"), &location, spec, &w.name)
                .await,
        );
    }
    for task in &tasks {
        let st = env.wait_loaded(task, &mut w, N as i64, N as i64).await;
        assert_counters(&st, N as i64, N as i64, 0);
        check_events(&env.read_table(task, N as i64), N);
    }
}

// ------------------------------------------------------------------------------------------------
// S3 table

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_table_with_credentials_from_a_secret_loads_rows() {
    const N: usize = 30;
    let Some(env) = namespace("worker s3:// table").await else {
        return;
    };
    let topic = unique_name("s3-events");
    env.tb.create_topic(&topic, 1).await.expect("topic");
    let lines: Vec<String> = (0..N).map(event_line).collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    env.tb
        .produce_lines(Listener::Plaintext, &topic, 0, &refs)
        .await
        .expect("produce");
    let location = env
        .tb
        .s3_url(&unique_name("e2e-worker-sources/events"))
        .unwrap()
        .to_string();
    // The Table's storage options, as a user would put them in a Secret.
    env.secret(
        "events-s3",
        &[
            ("AWS_ENDPOINT_URL", env.tb.var("S3_ENDPOINT").unwrap()),
            (
                "AWS_ACCESS_KEY_ID",
                env.tb.var("AWS_ACCESS_KEY_ID").unwrap(),
            ),
            (
                "AWS_SECRET_ACCESS_KEY",
                env.tb.var("AWS_SECRET_ACCESS_KEY").unwrap(),
            ),
            ("AWS_REGION", env.tb.var("AWS_REGION").unwrap()),
            ("AWS_ALLOW_HTTP", "true"),
        ],
    )
    .await;
    env.table(
        "events",
        &location,
        json!({
            "columns": serde_json::from_str::<Value>(EVENTS_COLUMNS).unwrap(),
            "credentialsSecret": {"name": "events-s3"}
        }),
    )
    .await;
    // The worker gets no AWS or S3 variables: the Secret is the only source of credentials.
    let mut w = env.spawn_worker(&["AWS_", "S3_"]);
    let task = env
        .job_and_task(
            "events-s3",
            &location,
            events_spec(env.tb.var("KAFKA_BROKERS").unwrap(), &topic),
            &w.name,
        )
        .await;
    let st = env.wait_loaded(&task, &mut w, N as i64, N as i64).await;
    assert_counters(&st, N as i64, N as i64, 0);
    let snap = env.read_table(&task, N as i64);
    check_events(&snap, N);
    assert!(
        !snap.files.is_empty() && snap.files.iter().all(|f| f.ends_with(".parquet")),
        "data files in S3: {:?}",
        snap.files
    );
    // Spark reads the same rows through s3a from the same MinIO.
    env.tb
        .check_with_both_readers(&[location.as_str()], true)
        .unwrap_or_else(|e| panic!("{e:#}"));
}

// ------------------------------------------------------------------------------------------------
// SASL (a private broker: the shared one has no SASL listener)

fn sasl_spec(
    broker: &SaslBroker,
    topic: &str,
    table: &str,
    mechanism: &str,
    secret: &str,
) -> Value {
    let mut spec = events_spec(&broker.sasl_brokers(), topic);
    spec["table"] = json!(table);
    spec["kafka"]["properties"] = json!({
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": mechanism,
    });
    spec["kafka"]["credentialsSecret"] = json!({"name": secret});
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_plain_and_scram_sha_256_with_credentials_from_a_secret_load_rows() {
    const N: usize = 25;
    let Some(env) = namespace("worker SASL PLAIN and SCRAM").await else {
        return;
    };
    // Different users per mechanism: each job can only authenticate the way it is configured.
    let plain = SaslUser::new("plainloader", "plain-pass-1");
    let scram = SaslUser::new("scramloader", "scram-pass-2");
    let broker = SaslBroker::start(
        &env.tb,
        std::slice::from_ref(&plain),
        std::slice::from_ref(&scram),
    )
    .await
    .expect("SASL broker");
    let topic = unique_name("sasl-events");
    broker.create_topic(&topic, 1).await.expect("topic");
    let lines: Vec<String> = (0..N).map(event_line).collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    // Produced over SCRAM: the broker's SASL listener works with a plain librdkafka client.
    broker
        .produce_lines(
            broker.sasl_config("SCRAM-SHA-256", &scram),
            &topic,
            0,
            &refs,
        )
        .await
        .expect("produce over SASL SCRAM-SHA-256");

    let mut w = env.spawn_worker(&[]);
    let mut tasks = Vec::new();
    for (mechanism, user, table) in [
        ("PLAIN", &plain, "events-plain"),
        ("SCRAM-SHA-256", &scram, "events-scram"),
    ] {
        let location = local_location(table);
        env.table(
            table,
            &location,
            json!({"columns": serde_json::from_str::<Value>(EVENTS_COLUMNS).unwrap()}),
        )
        .await;
        let secret = format!("{table}-kafka");
        env.secret(
            &secret,
            &[
                ("sasl.username", user.name.as_str()),
                ("sasl.password", user.password.as_str()),
            ],
        )
        .await;
        let spec = sasl_spec(&broker, &topic, table, mechanism, &secret);
        // No secret in the job's spec.
        let text = spec.to_string();
        assert!(!text.contains(&user.password), "{text}");
        tasks.push(
            env.job_and_task(&format!("{table}-job"), &location, spec, &w.name)
                .await,
        );
    }
    for task in &tasks {
        let st = env.wait_loaded(task, &mut w, N as i64, N as i64).await;
        assert_counters(&st, N as i64, N as i64, 0);
        assert!(st.get("message").is_none_or(Value::is_null), "{st}");
        check_events(&env.read_table(task, N as i64), N);
    }
    for user in [&plain, &scram] {
        assert!(
            !w.process.log().contains(&user.password),
            "the worker log shows a password"
        );
    }
}

/// A job whose credentials Secret holds a wrong SCRAM password, on a private broker with data
/// in its topic, and a worker running its task.
struct WrongPassword {
    env: Ns,
    broker: SaslBroker,
    worker: Worker,
    task: Task,
    wrong: &'static str,
}

async fn wrong_password(test: &str) -> Option<WrongPassword> {
    let env = namespace(test).await?;
    let scram = SaslUser::new("scramloader", "the-right-one");
    let broker = SaslBroker::start(&env.tb, &[], std::slice::from_ref(&scram))
        .await
        .expect("SASL broker");
    let topic = unique_name("sasl-denied");
    broker.create_topic(&topic, 1).await.expect("topic");
    let lines: Vec<String> = (0..5).map(event_line).collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    broker
        .produce_lines(broker.plaintext_config(), &topic, 0, &refs)
        .await
        .expect("produce");
    let location = local_location("sasl-denied");
    env.table(
        "events",
        &location,
        json!({"columns": serde_json::from_str::<Value>(EVENTS_COLUMNS).unwrap()}),
    )
    .await;
    let wrong = "not-the-password";
    env.secret(
        "events-kafka",
        &[("sasl.username", &scram.name), ("sasl.password", wrong)],
    )
    .await;
    let worker = env.spawn_worker(&[]);
    let task = env
        .job_and_task(
            "events-denied",
            &location,
            sasl_spec(&broker, &topic, "events", "SCRAM-SHA-256", "events-kafka"),
            &worker.name,
        )
        .await;
    Some(WrongPassword {
        env,
        broker,
        worker,
        task,
        wrong,
    })
}

/// What a wrong password does today: the task reports a Kafka error in its status, loads
/// nothing and commits no offset, the worker keeps running (librdkafka retries), the worker log
/// names the SASL failure, and the password shows nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_wrong_password_reports_a_kafka_error_loads_nothing_and_the_worker_keeps_running() {
    let Some(WrongPassword {
        env,
        broker,
        worker: mut w,
        task,
        wrong,
    }) = wrong_password("worker SASL wrong password").await
    else {
        return;
    };
    let st = env
        .wait_status(
            &task,
            &mut w,
            "a Kafka error message",
            Duration::from_secs(60),
            |st| {
                st["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("Kafka:"))
            },
        )
        .await;
    eprintln!("task message with a wrong password: {}", st["message"]);
    // Nothing loaded, the worker keeps running (it retries), the table has no offsets.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let st = env.task_status(&task).await;
    assert!(
        w.process.is_running(),
        "worker exited:\n{}",
        w.process.log()
    );
    assert!(
        st["committedOffsets"]["0"].is_null()
            && st["loadedRows"].as_i64().unwrap_or(0) == 0
            && st["totalRows"].as_i64().unwrap_or(0) == 0,
        "{st}"
    );
    assert!(
        !st.to_string().contains(wrong),
        "the status shows the password: {st}"
    );
    if let Ok(snap) = env.tb.read_delta(&task.location, None) {
        assert!(snap.rows.is_empty() && snap.txns.is_empty(), "{snap:?}");
    }
    let log = w.process.log();
    assert!(
        log.contains("SASL authentication error")
            && log.contains("invalid credentials with SASL mechanism SCRAM-SHA-256"),
        "the worker log names the failure:\n{log}"
    );
    assert!(!log.contains(wrong), "the worker log shows the password");
    assert!(
        broker.server_log().contains("Failed authentication"),
        "the broker saw the failed login"
    );
}

/// What a user needs from `kubectl get rltask -o yaml` with a wrong password: a status message
/// that says authentication failed, not only that the brokers are down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_wrong_password_is_named_in_task_status() {
    // Keep the broker alive: fields left to `..` would be dropped (and the broker stopped) here.
    let Some(WrongPassword {
        env,
        broker: _broker,
        worker: mut w,
        task,
        ..
    }) = wrong_password("worker SASL wrong password in status").await
    else {
        return;
    };
    env.wait_status(
        &task,
        &mut w,
        "a Kafka error message",
        Duration::from_secs(60),
        |st| {
            st["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Kafka:"))
        },
    )
    .await;
    // Steady state: every sample over 10 s names the authentication failure.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let st = env.task_status(&task).await;
        let m = st["message"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(m.contains("authentication"), "task message: {st}");
    }
}

// ------------------------------------------------------------------------------------------------
// Credentials that don't work: the task must say why

/// A job whose credentials Secret does not exist: the task's status names the missing Secret
/// (the worker can't load; the user reads why with `kubectl get rltask -o yaml`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_kafka_credentials_secret_is_named_in_task_status() {
    let Some(env) = namespace("worker missing Kafka credentials Secret").await else {
        return;
    };
    let topic = unique_name("no-secret");
    env.tb.create_topic(&topic, 1).await.expect("topic");
    let location = local_location("no-secret");
    env.table(
        "events",
        &location,
        json!({"columns": serde_json::from_str::<Value>(EVENTS_COLUMNS).unwrap()}),
    )
    .await;
    let mut spec = events_spec(env.tb.var("KAFKA_BROKERS").unwrap(), &topic);
    spec["kafka"]["credentialsSecret"] = json!({"name": "kafka-credentials-not-created"});
    let mut w = env.spawn_worker(&[]);
    let task = env
        .job_and_task("events-no-secret", &location, spec, &w.name)
        .await;
    let st = env
        .wait_status(
            &task,
            &mut w,
            "a message naming the missing Secret",
            Duration::from_secs(30),
            |st| {
                st["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("kafka-credentials-not-created"))
            },
        )
        .await;
    assert!(st["committedOffsets"]["0"].is_null(), "{st}");
    assert!(
        w.process.is_running(),
        "worker exited:\n{}",
        w.process.log()
    );
}

/// An s3:// table whose Secret holds a wrong secret key: nothing loads and the task's status
/// says that the table can't be opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_s3_key_in_the_table_secret_is_reported_in_task_status() {
    let Some(env) = namespace("worker wrong S3 key").await else {
        return;
    };
    let topic = unique_name("s3-denied");
    env.tb.create_topic(&topic, 1).await.expect("topic");
    env.tb
        .produce_lines(Listener::Plaintext, &topic, 0, &[&event_line(1)])
        .await
        .expect("produce");
    let location = env
        .tb
        .s3_url(&unique_name("e2e-worker-sources/denied"))
        .unwrap()
        .to_string();
    env.secret(
        "events-s3",
        &[
            ("AWS_ENDPOINT_URL", env.tb.var("S3_ENDPOINT").unwrap()),
            (
                "AWS_ACCESS_KEY_ID",
                env.tb.var("AWS_ACCESS_KEY_ID").unwrap(),
            ),
            ("AWS_SECRET_ACCESS_KEY", "not-the-secret-key"),
        ],
    )
    .await;
    env.table(
        "events",
        &location,
        json!({
            "columns": serde_json::from_str::<Value>(EVENTS_COLUMNS).unwrap(),
            "credentialsSecret": {"name": "events-s3"}
        }),
    )
    .await;
    let mut w = env.spawn_worker(&["AWS_", "S3_"]);
    let task = env
        .job_and_task(
            "events-s3-denied",
            &location,
            events_spec(env.tb.var("KAFKA_BROKERS").unwrap(), &topic),
            &w.name,
        )
        .await;
    let st = env
        .wait_status(
            &task,
            &mut w,
            "a message about the Delta table",
            Duration::from_secs(45),
            |st| {
                st["message"]
                    .as_str()
                    .is_some_and(|m| !m.starts_with("running on"))
            },
        )
        .await;
    eprintln!("task message with a wrong S3 key: {}", st["message"]);
    assert!(st["committedOffsets"]["0"].is_null(), "{st}");
    assert!(
        !st.to_string().contains("not-the-secret-key"),
        "the status shows the key: {st}"
    );
}
