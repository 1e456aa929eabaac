//! The whole system as processes: the operator and a real worker against the testbed's API
//! server and Kafka. A job goes NEED_SCHEDULE -> RUNNING, the worker loads what was produced, and
//! the job status (loadedRows, progress, lag) matches it; the Delta table holds every row once,
//! as both independent readers (pyarrow and Spark) see it, also after a compaction asked for
//! with the `routineload.io/compact` annotation.

use std::process::Command;
use std::time::{Duration, Instant};

use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use routine_load_e2e::kafka::Listener;
use routine_load_e2e::process::workspace_binary;
use routine_load_e2e::{LocalProcess, Testbed, testbed_or_skip, unique_name};
use serde_json::{Value, json};

fn api(client: &Client, ns: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("routineload.io", "v1alpha1", kind);
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

fn spawn(
    tb: &Testbed,
    ns: &str,
    binary: &str,
    name: &str,
    extra: &[(&str, String)],
) -> LocalProcess {
    let mut cmd = Command::new(workspace_binary(binary).expect("binary built"));
    for (k, v) in tb.child_env() {
        cmd.env(k, v);
    }
    cmd.env("POD_NAME", name)
        .env("POD_NAMESPACE", ns)
        .env("ROUTINE_LOAD_WATCH_NAMESPACE", ns)
        .env("ROUTINE_LOAD_HTTP_ADDR", "127.0.0.1:0");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    tb.spawn(name, cmd).expect("spawn")
}

async fn get(api: &Api<DynamicObject>, name: &str) -> Value {
    serde_json::to_value(api.get(name).await.expect("get")).expect("json")
}

/// Waits (up to 120 s) until the status of `job` satisfies `done`, and returns it.
async fn wait_status(
    jobs: &Api<DynamicObject>,
    job: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = get(jobs, job).await["status"].clone();
        if done(&s) {
            return s;
        }
        if Instant::now() > deadline {
            panic!("job {job}: {what} not within 120 s; status: {s}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until the job "quick" is RUNNING with `rows` loaded and no lag.
async fn wait_loaded(jobs: &Api<DynamicObject>, rows: i64) -> Value {
    wait_status(jobs, "quick", &format!("{rows} rows loaded"), |s| {
        s["state"] == "RUNNING" && s["statistic"]["loadedRows"] == rows && s["totalLag"] == 0
    })
    .await
}

async fn produce(tb: &Testbed, topic: &str, from: i64, to: i64) -> i64 {
    let mut n = 0;
    for p in 0..2 {
        let lines: Vec<String> = (from..to)
            .map(|i| format!("{},row-{p}-{i}", i64::from(p) * 1000 + i))
            .collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        tb.produce_lines(Listener::Plaintext, topic, p, &refs)
            .await
            .expect("produce");
        n += refs.len() as i64;
    }
    n
}

fn assert_exactly_once(tb: &Testbed, location: &str, rows: i64) {
    let snapshot = tb.read_delta(location, None).expect("read Delta table");
    assert_eq!(snapshot.rows.len() as i64, rows, "rows in the Delta table");
    let mut keys: Vec<i64> = snapshot
        .column("k")
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len() as i64, rows, "every row exactly once");
}

#[tokio::test]
async fn operator_and_worker_load_a_topic_end_to_end() {
    let Some(tb) = testbed_or_skip("operator + worker quick start") else {
        return;
    };
    tb.apply_crds().expect("apply CRDs");
    let client = tb.client().await.expect("admin client");
    let ns = unique_name("e2e-quick");
    tb.ensure_namespace(&client, &ns).await.expect("namespace");
    let topic = unique_name("quick");
    tb.create_topic(&topic, 2).await.expect("topic");
    let mut produced = produce(&tb, &topic, 0, 25).await;

    let _operator = spawn(
        &tb,
        &ns,
        "routine-load-operator",
        "operator",
        &[("ROUTINE_LOAD_WATCH_NAMESPACE", ns.clone())],
    );
    let errlog = std::env::temp_dir().join(unique_name("quick-errlog"));
    let mut workers: Vec<LocalProcess> = ["worker-0", "worker-1"]
        .into_iter()
        .map(|w| {
            let env = [
                ("ROUTINE_LOAD_BATCH_INTERVAL_MS", "1000".to_string()),
                ("ROUTINE_LOAD_ERROR_LOG_DIR", errlog.display().to_string()),
            ];
            spawn(&tb, &ns, "routine-load-worker", w, &env)
        })
        .collect();

    let dir = std::env::temp_dir().join(unique_name("quick-table"));
    let location = format!("file://{}", dir.display());
    let tables = api(&client, &ns, "Table", "tables");
    let table: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "routineload.io/v1alpha1", "kind": "Table", "metadata": { "name": "quick" },
        // `loaded_at` has no source in the job: every row gets its default. A NOT NULL DATETIME
        // is the shape (writer 7 with timestampNtz and invariants) Spark checks most strictly.
        "spec": { "columns": [ { "name": "k", "type": "INT", "nullable": false },
                               { "name": "v", "type": "STRING" },
                               { "name": "loaded_at", "type": "DATETIME", "nullable": false,
                                 "default": "2024-05-01 12:00:00" } ],
                  "location": location },
    }))
    .expect("table");
    tables
        .create(&PostParams::default(), &table)
        .await
        .expect("create table");
    let jobs = api(&client, &ns, "RoutineLoadJob", "routineloadjobs");
    let job: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "routineload.io/v1alpha1", "kind": "RoutineLoadJob", "metadata": { "name": "quick" },
        "spec": {
            "table": "quick", "columnSeparator": ",", "columns": ["k", "v"],
            "desiredConcurrentNumber": 2,
            "kafka": { "brokerList": tb.var("KAFKA_BROKERS").expect("brokers"), "topic": topic,
                       "defaultOffset": "OFFSET_BEGINNING" },
        },
    }))
    .expect("job");
    jobs.create(&PostParams::default(), &job)
        .await
        .expect("create job");

    let status = wait_loaded(&jobs, produced).await;
    eprintln!("job status: {status}");
    assert_eq!(status["statistic"]["errorRows"], 0, "{status}");
    assert_eq!(status["currentTaskNum"], 2, "{status}");
    // Progress is the next offset to consume per partition (the Delta transaction version).
    assert_eq!(status["progress"], json!({ "0": 25, "1": 25 }), "{status}");
    assert_exactly_once(&tb, &location, produced);

    // Kill worker-0 (no goodbye): its task moves to worker-1, which loads what is produced next;
    // the table holds every row exactly once.
    workers[0].kill().expect("kill worker-0");
    produced += produce(&tb, &topic, 25, 50).await;
    let status = wait_loaded(&jobs, produced).await;
    eprintln!("job status after worker-0 died: {status}");
    assert_eq!(status["progress"], json!({ "0": 50, "1": 50 }), "{status}");
    assert_exactly_once(&tb, &location, produced);

    // Edit the running job (a WHERE): the workers restart their loops on the new plan, so rows
    // produced afterwards are filtered; nothing already loaded changes.
    jobs.patch(
        "quick",
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "where": "k % 2 = 0" } })),
    )
    .await
    .expect("edit the job");
    // Wait until the task carries the new generation, then produce.
    let generation = get(&jobs, "quick").await["metadata"]["generation"].clone();
    let tasks = api(&client, &ns, "RoutineLoadTask", "routineloadtasks");
    let t0 = Instant::now();
    while !tasks
        .list(&Default::default())
        .await
        .expect("tasks")
        .items
        .iter()
        .all(|t| t.data["spec"]["jobGeneration"] == generation)
    {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "tasks never got generation {generation}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    produce(&tb, &topic, 50, 60).await;
    // 20 messages: keys 50..60 and 1050..1060, half of them odd.
    let status = wait_status(&jobs, "quick", "the edited job consuming", |s| {
        s["statistic"]["totalRows"] == produced + 20 && s["totalLag"] == 0
    })
    .await;
    assert_eq!(status["statistic"]["unselectedRows"], 10, "{status}");
    assert_eq!(status["statistic"]["loadedRows"], produced + 10, "{status}");
    assert_exactly_once(&tb, &location, produced + 10);

    // Compaction on request (the annotation): the batches' small files become fewer, larger
    // ones; the rows and the offsets' transactions stay; loading goes on after it.
    let before = tb.read_delta(&location, None).expect("read table");
    tables
        .patch(
            "quick",
            &PatchParams::default(),
            &Patch::Merge(
                json!({ "metadata": { "annotations": { "routineload.io/compact": "1" } } }),
            ),
        )
        .await
        .expect("annotate the table");
    let deadline = Instant::now() + Duration::from_secs(90);
    let maintenance = loop {
        let m = get(&tables, "quick").await["status"]["maintenance"].clone();
        if m["compactRequest"] == "1" {
            break m;
        }
        assert!(Instant::now() < deadline, "no compaction: {m}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!("compaction: {maintenance}");
    let after = tb.read_delta(&location, None).expect("read table");
    assert!(
        before.files.len() > 2 && after.files.len() < before.files.len(),
        "files before {}, after {}: {maintenance}",
        before.files.len(),
        after.files.len()
    );
    assert_eq!(
        maintenance["filesRemoved"].as_u64(),
        Some(before.files.len() as u64),
        "{maintenance}"
    );
    assert_eq!(
        maintenance["filesVacuumed"], 0,
        "removed just now: kept for the retention"
    );
    assert_eq!(
        after.txns, before.txns,
        "the offsets' transactions are kept"
    );
    assert_exactly_once(&tb, &location, produced + 10);
    produce(&tb, &topic, 60, 70).await;
    let status = wait_status(&jobs, "quick", "loads after the compaction", |s| {
        s["statistic"]["totalRows"] == produced + 40 && s["totalLag"] == 0
    })
    .await;
    assert_eq!(status["statistic"]["loadedRows"], produced + 20, "{status}");
    assert_exactly_once(&tb, &location, produced + 20);

    // Spark (pyspark + delta-spark) reads the same table: same version, rows and checksum.
    let both = tb
        .check_with_both_readers(&[location.as_str()], true)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let (pyarrow, spark) = &both[0];
    assert_eq!(spark.count, Some(produced as usize + 20));
    assert!(
        pyarrow
            .column("loaded_at")
            .iter()
            .all(|t| t == "2024-05-01T12:00:00"),
        "the default of loaded_at"
    );
}

/// StarRocks' page on loading into Primary Key tables: its CREATE TABLE statements and its
/// Routine Load statements for "UPSERT and DELETE" (`__op = temp`) and for conditional updates
/// (`merge_condition`), only the brokers and the topic changed.
const PK_PAGE_TABLE3: &str = r#"CREATE TABLE `table3`
(
    `id` int(11) NOT NULL COMMENT "user ID",
    `name` varchar(65533) NOT NULL COMMENT "user name",
    `score` int(11) NOT NULL COMMENT "user score"
)
ENGINE=OLAP
PRIMARY KEY(`id`)
DISTRIBUTED BY HASH(`id`);"#;
const PK_PAGE_JOB3: &str = r#"CREATE ROUTINE LOAD table3 ON table3
COLUMNS(id, name, score, temp, __op = temp)
PROPERTIES
(
    "desired_concurrent_number" = "3",
    "max_batch_interval" = "20",
    "max_batch_rows"= "250000",
    "max_error_number" = "1000"
)
FROM KAFKA
(
    "kafka_broker_list" = "<kafka_broker_host>:<kafka_broker_port>",
    "kafka_topic" = "test3",
    "property.kafka_default_offsets" = "OFFSET_BEGINNING"
);"#;
const PK_PAGE_TABLE5: &str = r#"CREATE TABLE `table5`
(
    `id` int(11) NOT NULL COMMENT "user ID",
    `version` int NOT NULL COMMENT "version",
    `score` int(11) NOT NULL COMMENT "user score"
)
ENGINE=OLAP
PRIMARY KEY(`id`) DISTRIBUTED BY HASH(`id`);"#;
const PK_PAGE_JOB5: &str = r#"CREATE ROUTINE LOAD table5 on table5
COLUMNS (id, version, score),
COLUMNS TERMINATED BY ','
PROPERTIES
(
    "merge_condition" = "version"
)
FROM KAFKA
(
    "kafka_broker_list" ="<kafka_broker_host>:<kafka_broker_port>",
    "kafka_topic" = "topic5",
    "property.kafka_default_offsets" ="OFFSET_BEGINNING"
);"#;

/// `kubectl routineload convert` of `sql` (from stdin) with `args`: the YAML documents.
fn convert(sql: &str, args: &[&str]) -> Vec<Value> {
    use std::io::Write;
    let mut child = Command::new(workspace_binary("kubectl-routineload").expect("plugin built"))
        .arg("convert")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run kubectl-routineload");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(sql.as_bytes())
        .expect("write the statement");
    let out = child.wait_with_output().expect("convert");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "convert {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_yaml::Deserializer::from_str(&stdout)
        .map(|d| serde::Deserialize::deserialize(d).expect("a YAML document"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// Creates a converted object (`kubectl apply` of convert's output).
async fn apply(client: &Client, ns: &str, mut doc: Value) {
    let kind = doc["kind"].as_str().expect("kind").to_string();
    let plural = match kind.as_str() {
        "Table" => "tables",
        "RoutineLoadJob" => "routineloadjobs",
        other => panic!("convert wrote a {other}"),
    };
    doc["metadata"]["namespace"] = json!(ns);
    let obj: DynamicObject = serde_json::from_value(doc).expect("object");
    api(client, ns, &kind, plural)
        .create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("create {kind}: {e}"));
}

#[tokio::test]
async fn starrocks_primary_key_page_examples_convert_and_run() {
    let Some(tb) = testbed_or_skip("StarRocks Primary Key page examples") else {
        return;
    };
    tb.apply_crds().expect("apply CRDs");
    let client = tb.client().await.expect("admin client");
    let ns = unique_name("e2e-pk-page");
    tb.ensure_namespace(&client, &ns).await.expect("namespace");
    let brokers = tb.var("KAFKA_BROKERS").expect("brokers");
    let mut jobs = Vec::new();
    for (table_sql, job_sql, topic) in [
        (PK_PAGE_TABLE3, PK_PAGE_JOB3, "test3"),
        (PK_PAGE_TABLE5, PK_PAGE_JOB5, "topic5"),
    ] {
        let dir = std::env::temp_dir().join(unique_name("pk-page"));
        let location = format!("file://{}", dir.display());
        let tables = convert(table_sql, &["-n", &ns, "--location", &location]);
        assert_eq!(tables.len(), 1, "{tables:?}");
        assert_eq!(tables[0]["spec"]["model"], "Primary", "{:?}", tables[0]);
        let name = tables[0]["metadata"]["name"].as_str().unwrap().to_string();
        apply(&client, &ns, tables[0].clone()).await;
        let real_topic = unique_name(topic);
        tb.create_topic(&real_topic, 1).await.expect("topic");
        let sql = job_sql
            .replace("<kafka_broker_host>:<kafka_broker_port>", brokers)
            .replace(&format!("\"{topic}\""), &format!("\"{real_topic}\""));
        let docs = convert(&sql, &["-n", &ns]);
        let job = docs
            .into_iter()
            .find(|d| d["kind"] == "RoutineLoadJob")
            .expect("a job");
        apply(&client, &ns, job.clone()).await;
        jobs.push((
            job["metadata"]["name"].as_str().unwrap().to_string(),
            name,
            location,
            real_topic,
        ));
    }
    let _operator = spawn(&tb, &ns, "routine-load-operator", "operator", &[]);
    let errlog = std::env::temp_dir().join(unique_name("pk-page-errlog"));
    let _worker = spawn(
        &tb,
        &ns,
        "routine-load-worker",
        "worker-0",
        &[
            ("ROUTINE_LOAD_BATCH_INTERVAL_MS", "1000".to_string()),
            ("ROUTINE_LOAD_ERROR_LOG_DIR", errlog.display().to_string()),
        ],
    );
    let job_api = api(&client, &ns, "RoutineLoadJob", "routineloadjobs");
    let wait = |job: String, loaded: i64| {
        let job_api = job_api.clone();
        async move {
            wait_status(&job_api, &job, &format!("{loaded} rows loaded"), |s| {
                s["statistic"]["loadedRows"] == loaded && s["totalLag"] == 0
            })
            .await
        }
    };
    let rows = |location: &str, columns: &[&str]| -> Vec<Vec<Value>> {
        let snap = tb.read_delta(location, None).expect("read table");
        let mut out: Vec<Vec<Value>> = snap
            .rows
            .iter()
            .map(|r| columns.iter().map(|c| r[*c].clone()).collect())
            .collect();
        out.sort_by_key(|r| r[0].as_i64());
        out
    };
    let produce = |topic: String, lines: Vec<&'static str>| {
        let tb = tb.clone();
        async move {
            tb.produce_lines(Listener::Plaintext, &topic, 0, &lines)
                .await
                .expect("produce");
        }
    };

    // UPSERT and DELETE: `temp` 0 upserts, 1 deletes. The statement names no separator: tabs,
    // StarRocks' default.
    let (job3, _, location3, topic3) = jobs[0].clone();
    produce(
        topic3.clone(),
        vec!["1\tJack\t100\t0", "2\tBob\t90\t0", "3\tLily\t80\t0"],
    )
    .await;
    wait(job3.clone(), 3).await;
    produce(
        topic3,
        vec!["2\tBob\t95\t0", "3\tLily\t80\t1", "4\tTom\t70\t0"],
    )
    .await;
    wait(job3, 6).await;
    assert_eq!(
        rows(&location3, &["id", "name", "score"]),
        vec![
            vec![json!(1), json!("Jack"), json!(100)],
            vec![json!(2), json!("Bob"), json!(95)],
            vec![json!(4), json!("Tom"), json!(70)],
        ]
    );
    // Conditional updates: a row replaces the stored one only with a version at least as high.
    let (job5, _, location5, topic5) = jobs[1].clone();
    produce(topic5.clone(), vec!["1,10,100", "2,20,100"]).await;
    wait(job5.clone(), 2).await;
    produce(topic5, vec!["1,11,101", "2,19,101"]).await;
    wait(job5, 4).await;
    assert_eq!(
        rows(&location5, &["id", "version", "score"]),
        vec![
            vec![json!(1), json!(11), json!(101)],
            vec![json!(2), json!(20), json!(100)],
        ]
    );
}
