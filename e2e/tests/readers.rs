//! What routine-load loads, read by two independent Delta readers: the project's pyarrow replay
//! of `_delta_log` (`e2e/delta_reader.py`) and Spark 4 with delta-spark (`e2e/spark_reader.py`,
//! the JVM Delta implementation). Both must see the same rows (count and checksum), and Spark
//! must accept every table's protocol.
//!
//! One worker loads one topic into four table shapes, then 100+ more single-row commits so every
//! table has a checkpoint:
//! - `nullable`: every column type, all nullable (NULLs in every column), partitioned by a DATE
//!   and a VARCHAR column (non-ASCII and NULL partition values);
//! - `not-null`: every column type, all NOT NULL (rows with a NULL are error rows);
//! - `older`: the `not-null` shape, created beforehand the way an older routine-load created it
//!   (delta-rs' own protocol: reader 3 / writer 7 with `timestampNtz` only, no `invariants`),
//!   which the worker repairs when it adopts the table;
//! - `unadopted`: the same older table, never adopted: Spark must refuse it, which shows the
//!   Spark check sees the protocol bug it guards against.
//!
//! All four are read in one Spark session (the JVM start costs seconds).
//!
//! Then the other direction: a table that Spark created, with the same schema, is adopted.
//!
//! As in `worker_sources.rs`, the Table, Job and Task objects are created directly (no operator).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use routine_load_e2e::delta::check_readers_agree;
use routine_load_e2e::kafka::Listener;
use routine_load_e2e::kube_util::client_from_kubeconfig;
use routine_load_e2e::process::{LocalProcess, workspace_binary};
use routine_load_e2e::{Testbed, testbed_or_skip, unique_name};
use serde_json::{Value, json};

fn ar(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("routineload.io", "v1alpha1", kind),
        plural,
    )
}

/// Every column type the Table accepts, in CSV field order.
const TYPES: [(&str, &str); 15] = [
    ("b", "BOOLEAN"),
    ("t", "TINYINT"),
    ("s", "SMALLINT"),
    ("i", "INT"),
    ("l", "BIGINT"),
    ("big", "LARGEINT"),
    ("f", "FLOAT"),
    ("d", "DOUBLE"),
    ("dec", "DECIMAL(10,2)"),
    ("day", "DATE"),
    ("ts", "DATETIME"),
    ("c", "CHAR(4)"),
    ("vc", "VARCHAR(20)"),
    ("str", "STRING"),
    ("j", "JSON"),
];

fn columns(nullable: bool) -> Value {
    Value::Array(
        TYPES
            .iter()
            .map(|(name, ty)| json!({"name": name, "type": ty, "nullable": nullable}))
            .collect(),
    )
}

/// Row `i` as a `|`-separated CSV message. Rows `i < 20` with `i % 5 == 0` hold `\N` (NULL) in
/// every column but `i` and `day`: NULLs in the nullable table, error rows in the NOT NULL ones.
fn row(i: usize) -> String {
    if i < 20 && i.is_multiple_of(5) {
        let mut f = vec!["\\N"; TYPES.len()];
        let key = i.to_string();
        f[3] = &key;
        let day = format!("2024-05-0{}", 1 + i % 3);
        f[9] = &day;
        return f.join("|");
    }
    let big = if i.is_multiple_of(2) {
        format!("{}", 10u128.pow(37) + i as u128)
    } else {
        format!("-{}", "9".repeat(38))
    };
    [
        (if i.is_multiple_of(2) { "true" } else { "false" }).to_string(),
        ((i % 256) as i64 - 128).to_string(),
        (i as i64 * 7 - 1000).to_string(),
        i.to_string(),
        (i as i64 * 1_000_000_000_000).to_string(),
        big,
        format!("{}.1", i),
        format!("{}", i as f64 / 3.0),
        format!("{}.{:02}", i as i64 - 50, i % 100),
        format!("2024-05-0{}", 1 + i % 3),
        format!(
            "2015-09-12 {:02}:{:02}:{:02}.{:06}",
            i % 24,
            i % 60,
            (i * 7) % 60,
            i * 1001
        ),
        format!("c{}", i % 100),
        format!("wiki-é{}", i % 2),
        format!("line {i} with \"quotes\", commas and ünïcode"),
        format!(r#"{{"k":{i},"a":[1,2],"s":"x"}}"#),
    ]
    .join("|")
}

struct Env {
    tb: Testbed,
    client: kube::Client,
    ns: String,
}

impl Env {
    async fn new(test: &str) -> Option<Env> {
        let tb = testbed_or_skip(test)?;
        let client = client_from_kubeconfig(&tb.kubeconfig())
            .await
            .expect("client");
        tb.apply_crds().expect("apply CRDs");
        let ns = unique_name("e2e-readers");
        tb.ensure_namespace(&client, &ns).await.expect("namespace");
        Some(Env { tb, client, ns })
    }

    async fn create(&self, kind: &str, plural: &str, object: Value) -> DynamicObject {
        let obj: DynamicObject = serde_json::from_value(object).unwrap();
        Api::namespaced_with(self.client.clone(), &self.ns, &ar(kind, plural))
            .create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("create {kind}: {e}"))
    }

    /// A Table, a job loading `topic` into it and the job's task on `worker`; returns the job UID.
    async fn table_and_job(
        &self,
        name: &str,
        location: &str,
        table: Value,
        topic: &str,
        worker: &str,
    ) -> String {
        let mut spec = table;
        spec["location"] = json!(location);
        self.create(
            "Table",
            "tables",
            json!({"apiVersion": "routineload.io/v1alpha1", "kind": "Table",
                   "metadata": {"name": name}, "spec": spec}),
        )
        .await;
        let job = self
            .create(
                "RoutineLoadJob",
                "routineloadjobs",
                json!({"apiVersion": "routineload.io/v1alpha1", "kind": "RoutineLoadJob",
                       "metadata": {"name": name},
                       "spec": {
                           "table": name, "columnSeparator": "|",
                           "columns": TYPES.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
                           "desiredConcurrentNumber": 1, "maxErrorNumber": 100000,
                           "kafka": {"brokerList": self.tb.var("KAFKA_BROKERS").unwrap(),
                                     "topic": topic, "partitions": [0],
                                     "offsets": ["OFFSET_BEGINNING"]}}}),
            )
            .await;
        let uid = job.metadata.uid.clone().expect("job uid");
        self.create(
            "RoutineLoadTask",
            "routineloadtasks",
            json!({"apiVersion": "routineload.io/v1alpha1", "kind": "RoutineLoadTask",
                   "metadata": {"name": format!("{name}-0"), "labels": {"routineload.io/worker": worker}},
                   "spec": {"job": name, "jobUid": uid, "partitions": [0], "worker": worker, "epoch": 1}}),
        )
        .await;
        uid
    }

    fn spawn_worker(&self, name: &str, batch_interval_ms: u64) -> LocalProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut cmd = Command::new(workspace_binary("routine-load-worker").expect("worker binary"));
        for (k, v) in self.tb.child_env() {
            cmd.env(k, v);
        }
        cmd.env("KUBECONFIG", self.tb.kubeconfig())
            .env("POD_NAME", name)
            .env("POD_NAMESPACE", &self.ns)
            .env("ROUTINE_LOAD_WATCH_NAMESPACE", &self.ns)
            .env("ROUTINE_LOAD_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env(
                "ROUTINE_LOAD_ERROR_LOG_DIR",
                std::env::temp_dir().join(format!("{name}-errlog")),
            )
            .env(
                "ROUTINE_LOAD_BATCH_INTERVAL_MS",
                batch_interval_ms.to_string(),
            )
            .env("RUST_LOG", "info,buoyant_kernel=warn,deltalake_core=warn");
        self.tb.spawn(name, cmd).expect("spawn worker")
    }
}

fn local_table(prefix: &str) -> (PathBuf, String) {
    let dir = std::env::temp_dir().join(unique_name(prefix));
    std::fs::create_dir_all(&dir).unwrap();
    let location = format!("file://{}", dir.display());
    (dir, location)
}

/// The newest commit in a local table's `_delta_log`: (version, its `txn` versions).
fn latest_commit(dir: &Path) -> Option<(u64, Vec<i64>)> {
    let log = dir.join("_delta_log");
    let version = std::fs::read_dir(&log)
        .ok()?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".json")?;
            (stem.len() == 20)
                .then(|| stem.parse::<u64>().ok())
                .flatten()
        })
        .max()?;
    let text = std::fs::read_to_string(log.join(format!("{version:020}.json"))).ok()?;
    let txns = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|a| a["txn"]["version"].as_i64())
        .collect();
    Some((version, txns))
}

/// Waits until the newest commit of every table records `offset` (the next offset to load).
fn wait_committed(dirs: &[&Path], offset: i64, worker: &mut LocalProcess) {
    let t0 = Instant::now();
    loop {
        let done = dirs
            .iter()
            .all(|d| latest_commit(d).is_some_and(|(_, txns)| txns.contains(&offset)));
        if done {
            return;
        }
        if t0.elapsed() > Duration::from_secs(60) || !worker.is_running() {
            let state: Vec<_> = dirs.iter().map(|d| latest_commit(d)).collect();
            panic!(
                "offset {offset} not committed in every table within 60 s: {state:?}\nworker log:\n{}",
                worker.log()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The Delta table an older routine-load created for a Table: the same schema, delta-rs' own
/// protocol choice (for `timestamp_ntz`: reader 3 / writer 7 listing only `timestampNtz`).
async fn create_like_an_older_routine_load(location: &str, table: &Value) {
    let spec: routine_load_api::table::TableSpec = serde_json::from_value(json!({
        "columns": table["columns"], "location": location
    }))
    .expect("TableSpec");
    let schema = routine_load_api::delta_table::delta_schema(&spec).expect("schema");
    let t = deltalake::DeltaTableBuilder::from_url(url::Url::parse(location).unwrap())
        .unwrap()
        .build()
        .unwrap()
        .create()
        .with_columns(schema.fields().cloned())
        .await
        .expect("create the older table");
    let protocol = serde_json::to_value(t.snapshot().unwrap().protocol()).unwrap();
    assert_eq!(
        protocol,
        json!({"minReaderVersion": 3, "minWriterVersion": 7,
               "readerFeatures": ["timestampNtz"], "writerFeatures": ["timestampNtz"]}),
        "delta-rs' own protocol (what older routine-load tables have)"
    );
}

fn features(read: &routine_load_e2e::delta::SparkRead) -> BTreeSet<String> {
    read.protocol.as_ref().expect("protocol")["tableFeatures"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn every_column_type_and_table_shape_reads_the_same_in_spark_and_pyarrow() {
    let Some(env) = Env::new("Spark and pyarrow read every table shape").await else {
        return;
    };
    let topic = unique_name("readers");
    env.tb.create_topic(&topic, 1).await.expect("topic");
    let worker = unique_name("worker");

    let nullable_spec = json!({"columns": columns(true), "partitionColumns": ["day", "vc"]});
    let not_null_spec = json!({"columns": columns(false)});
    let (nullable_dir, nullable) = local_table("readers-nullable");
    let (not_null_dir, not_null) = local_table("readers-not-null");
    let (older_dir, older) = local_table("readers-older");
    let (_unadopted_dir, unadopted) = local_table("readers-unadopted");
    create_like_an_older_routine_load(&older, &not_null_spec).await;
    create_like_an_older_routine_load(&unadopted, &not_null_spec).await;

    env.table_and_job("nullable", &nullable, nullable_spec, &topic, &worker)
        .await;
    env.table_and_job(
        "not-null",
        &not_null,
        not_null_spec.clone(),
        &topic,
        &worker,
    )
    .await;
    env.table_and_job("older", &older, not_null_spec, &topic, &worker)
        .await;

    // 20 rows in one batch, then single-row batches until every table has a checkpoint (the
    // worker writes one every 100 commits).
    let first: Vec<String> = (0..20).map(row).collect();
    let refs: Vec<&str> = first.iter().map(String::as_str).collect();
    env.tb
        .produce_lines(Listener::Plaintext, &topic, 0, &refs)
        .await
        .expect("produce");
    let mut w = env.spawn_worker(&worker, 100);
    let dirs = [
        nullable_dir.as_path(),
        not_null_dir.as_path(),
        older_dir.as_path(),
    ];
    wait_committed(&dirs, 20, &mut w);
    let t0 = Instant::now();
    let total = 125;
    for i in 20..total {
        let line = row(i);
        env.tb
            .produce_lines(Listener::Plaintext, &topic, 0, &[line.as_str()])
            .await
            .expect("produce");
        wait_committed(&dirs, i as i64 + 1, &mut w);
    }
    eprintln!(
        "{} single-row commits per table in {:?}",
        total - 20,
        t0.elapsed()
    );
    for d in dirs {
        let checkpoints: Vec<String> = std::fs::read_dir(d.join("_delta_log"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.contains(".checkpoint"))
            .collect();
        assert!(
            !checkpoints.is_empty(),
            "no checkpoint in {} after {} commits",
            d.display(),
            total - 20
        );
    }

    // One Spark session for all four tables.
    let t0 = Instant::now();
    let tables = [
        nullable.as_str(),
        not_null.as_str(),
        older.as_str(),
        unadopted.as_str(),
    ];
    let spark = env.tb.read_with_spark(&tables, true).expect("Spark");
    eprintln!("Spark read {} tables in {:?}", tables.len(), t0.elapsed());

    let unadopted_read = &spark[3];
    let refused = unadopted_read.error.as_deref().unwrap_or_default();
    assert!(
        refused.contains("DELTA_FEATURES_PROTOCOL_METADATA_MISMATCH")
            && refused.contains("invariants"),
        "Spark should refuse a writer-7 table with NOT NULL columns that lacks `invariants`: {unadopted_read:?}"
    );

    let bad_rows = (0..20).filter(|i| i % 5 == 0).count();
    for (read, rows) in spark[..3]
        .iter()
        .zip([total, total - bad_rows, total - bad_rows])
    {
        let pyarrow = env.tb.read_delta(&read.table, None).expect("pyarrow");
        check_readers_agree(&pyarrow, read).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(pyarrow.rows.len(), rows, "{}", read.table);
        // The pyarrow reader started from the checkpoint (it lists commits after it only).
        assert!(
            pyarrow.commits.len() < 100,
            "{}: read {} commits, not from a checkpoint",
            read.table,
            pyarrow.commits.len()
        );
        let f = features(read);
        assert!(
            f.contains("invariants") && f.contains("timestampNtz"),
            "{}: Spark sees table features {f:?}",
            read.table
        );
    }
    assert_eq!(spark[0].partition_columns, vec!["day", "vc"]);

    // The values as Spark returns them, for one full row and one row of NULLs.
    let by_key = |read: &routine_load_e2e::delta::SparkRead, k: i64| {
        read.rows
            .as_ref()
            .unwrap()
            .iter()
            .find(|r| r["i"] == json!(k))
            .cloned()
            .unwrap_or_else(|| panic!("{}: no row i={k}", read.table))
    };
    let r = Value::Object(by_key(&spark[0], 42));
    assert_eq!(
        r,
        json!({"b": true, "t": -86, "s": -706, "i": 42, "l": 42_000_000_000_000i64,
               "big": "10000000000000000000000000000000000042", "f": 42.099998474121094,
               "d": 14.0, "dec": "-8.42", "day": "2024-05-01",
               "ts": "2015-09-12T18:42:54.042042", "c": "c42", "vc": "wiki-é0",
               "str": "line 42 with \"quotes\", commas and ünïcode",
               "j": "{\"k\":42,\"a\":[1,2],\"s\":\"x\"}"}),
        "row 42 as Spark reads it"
    );
    let nulls = Value::Object(by_key(&spark[0], 5));
    for (name, _) in TYPES {
        if name != "i" && name != "day" {
            assert_eq!(nulls[name], Value::Null, "column {name} of row 5");
        }
    }

    // The worker repaired the older table with a protocol-only commit at version 1.
    let log = std::fs::read_to_string(older_dir.join("_delta_log/00000000000000000001.json"))
        .expect("commit 1 of the older table");
    assert!(
        log.contains("\"protocol\"") && log.contains("invariants") && !log.contains("\"add\""),
        "commit 1 of the older table: {log}"
    );
}

/// A table Spark created (same schema as a Table, NOT NULL and DATETIME columns, a row Spark
/// inserted) is adopted: the worker loads into it, a Spark append between two routine-load
/// commits neither breaks the job nor loses its offsets, and both readers agree at the end.
#[tokio::test]
async fn a_table_spark_created_is_adopted_and_survives_a_spark_append() {
    let Some(env) = Env::new("a table Spark created is adopted").await else {
        return;
    };
    let topic = unique_name("spark-made");
    env.tb.create_topic(&topic, 1).await.expect("topic");
    let worker = unique_name("worker");
    let (dir, location) = local_table("readers-spark-made");
    let path = dir.display().to_string();
    let ddl: Vec<String> = TYPES
        .iter()
        .map(|(name, ty)| {
            let spark_type = match *ty {
                "LARGEINT" => "DECIMAL(38,0)",
                "DATETIME" => "TIMESTAMP_NTZ",
                "CHAR(4)" | "VARCHAR(20)" | "JSON" => "STRING",
                other => other,
            };
            format!("`{name}` {spark_type} NOT NULL")
        })
        .collect();
    let values = |i: usize| {
        format!(
            "(true, 1, 2, {i}, 4, 5, 1.5, 2.5, 3.25, DATE'2024-05-01', \
             TIMESTAMP_NTZ'2015-09-12 01:02:03', 'c', 'vc', 'spark row {i}', '{{}}')"
        )
    };
    let t0 = Instant::now();
    routine_load_e2e::delta::spark_sql(
        Some(&env.tb),
        &[
            &format!(
                "CREATE TABLE delta.`{path}` ({}) USING delta",
                ddl.join(", ")
            ),
            &format!("INSERT INTO delta.`{path}` VALUES {}", values(1000)),
        ],
    )
    .expect("Spark creates the table");
    eprintln!("Spark created the table in {:?}", t0.elapsed());

    let uid = env
        .table_and_job(
            "spark-made",
            &location,
            json!({"columns": columns(false)}),
            &topic,
            &worker,
        )
        .await;
    let first: Vec<String> = (20..30).map(row).collect();
    let refs: Vec<&str> = first.iter().map(String::as_str).collect();
    env.tb
        .produce_lines(Listener::Plaintext, &topic, 0, &refs)
        .await
        .expect("produce");
    let mut w = env.spawn_worker(&worker, 300);
    wait_committed(&[dir.as_path()], 10, &mut w);

    // Spark appends between two routine-load commits.
    routine_load_e2e::delta::spark_sql(
        Some(&env.tb),
        &[&format!(
            "INSERT INTO delta.`{path}` VALUES {}",
            values(1001)
        )],
    )
    .expect("Spark appends");
    let more: Vec<String> = (30..40).map(row).collect();
    let refs: Vec<&str> = more.iter().map(String::as_str).collect();
    env.tb
        .produce_lines(Listener::Plaintext, &topic, 0, &refs)
        .await
        .expect("produce");
    wait_committed(&[dir.as_path()], 20, &mut w);

    let both = env
        .tb
        .check_with_both_readers(&[location.as_str()], true)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let (pyarrow, _) = &both[0];
    let mut keys: Vec<i64> = pyarrow
        .column("i")
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    keys.sort();
    let mut want: Vec<i64> = (20..40).collect();
    want.extend([1000, 1001]);
    assert_eq!(keys, want, "every Kafka row once, and both Spark rows");
    assert_eq!(
        pyarrow.txns.get(&format!("routine-load-{uid}-0")).copied(),
        Some(20),
        "the job's offset survived the Spark append"
    );
}
