//! The worker process against the testbed: the reference's Wikipedia CSV rows (1% bad) loaded
//! exactly once into a Delta table, checked with the independent reader; then kill -9 of the
//! worker mid-load, restarted each time: no duplicate, no gap.
//!
//! The Table, Job and Task objects are created directly (no operator); the worker binary is
//! `$CARGO_TARGET_DIR/debug/routine-load-worker`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
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

use routine_load_e2e::wikipedia::{is_good as good, row};

struct Setup {
    tb: Testbed,
    client: kube::Client,
    ns: String,
    topic: String,
    location: String,
    job_uid: String,
    task: String,
    worker: String,
}

/// A namespace with the Wikipedia table, a job (`maxErrorNumber` = `max_errors`) and its one task
/// (partition 0, from the beginning), and `messages` rows produced.
async fn setup(name: &str, messages: usize, max_errors: i64) -> Option<Setup> {
    let tb = testbed_or_skip(name)?;
    let client = client_from_kubeconfig(&tb.kubeconfig())
        .await
        .expect("client");
    tb.apply_crds().expect("apply CRDs");
    let ns = unique_name("e2e-worker");
    tb.ensure_namespace(&client, &ns).await.expect("namespace");
    let topic = unique_name("worker-wiki");
    tb.create_topic(&topic, 1).await.expect("topic");
    let lines: Vec<String> = (0..messages).map(row).collect();
    produce_fast(&tb, &topic, &lines).await;
    let dir = std::env::temp_dir().join(unique_name("worker-table"));
    std::fs::create_dir_all(&dir).unwrap();
    let location = format!("file://{}", dir.display());
    let worker = unique_name("worker");

    let pp = PostParams::default();
    let tables: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &ar("Table", "tables"));
    let table: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "routineload.io/v1alpha1", "kind": "Table",
        "metadata": {"name": "routine-wiki-edit"},
        "spec": {
            "location": location,
            "columns": routine_load_e2e::wikipedia::table_columns()
        }
    }))
    .unwrap();
    tables.create(&pp, &table).await.expect("create Table");

    let jobs: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &ar("RoutineLoadJob", "routineloadjobs"),
    );
    let job: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "routineload.io/v1alpha1", "kind": "RoutineLoadJob",
        "metadata": {"name": "routine-load-wikipedia"},
        "spec": {
            "table": "routine-wiki-edit",
            "columnSeparator": ",",
            "columns": ["event_time", "channel", "user", "is_anonymous", "is_minor", "is_new",
                        "is_robot", "is_unpatrolled", "delta", "added", "deleted"],
            "desiredConcurrentNumber": 1,
            "maxErrorNumber": max_errors,
            "kafka": {
                "brokerList": tb.var("KAFKA_BROKERS").unwrap(),
                "topic": topic,
                "partitions": [0],
                "offsets": ["OFFSET_BEGINNING"]
            }
        }
    }))
    .unwrap();
    let job = jobs.create(&pp, &job).await.expect("create RoutineLoadJob");
    let job_uid = job.metadata.uid.clone().expect("job uid");

    let tasks: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &ar("RoutineLoadTask", "routineloadtasks"),
    );
    let task_name = "routine-load-wikipedia-0".to_string();
    let task: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "routineload.io/v1alpha1", "kind": "RoutineLoadTask",
        "metadata": {"name": task_name, "labels": {"routineload.io/worker": worker}},
        "spec": {"job": "routine-load-wikipedia", "jobUid": job_uid, "partitions": [0],
                 "worker": worker, "epoch": 1}
    }))
    .unwrap();
    tasks
        .create(&pp, &task)
        .await
        .expect("create RoutineLoadTask");
    Some(Setup {
        tb,
        client,
        ns,
        topic,
        location,
        job_uid,
        task: task_name,
        worker,
    })
}

/// Produces lines to partition 0 in order, many in flight at once (the harness' `produce`
/// waits for each delivery, about 200 messages/s).
async fn produce_fast(tb: &Testbed, topic: &str, lines: &[String]) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let mut c = tb.kafka_config(Listener::Plaintext).expect("kafka config");
    c.set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("message.timeout.ms", "60000");
    let producer: FutureProducer = c.create().expect("producer");
    for chunk in lines.chunks(5_000) {
        let sends = chunk.iter().map(|l| {
            producer.send(
                FutureRecord::<(), str>::to(topic)
                    .payload(l.as_str())
                    .partition(0),
                Duration::from_secs(60),
            )
        });
        for r in futures::future::join_all(sends).await {
            r.map_err(|(e, _)| e).expect("deliver");
        }
    }
    let (_, high) = tb.watermarks(topic, 0).expect("watermarks");
    assert_eq!(high, lines.len() as i64, "all messages produced, in order");
}

fn spawn_worker(
    s: &Setup,
    http_port: u16,
    batch_rows: Option<usize>,
    extra: &[(&str, &str)],
) -> LocalProcess {
    let bin = workspace_binary("routine-load-worker").expect("worker binary");
    let mut cmd = Command::new(bin);
    for (k, v) in s.tb.child_env() {
        cmd.env(k, v);
    }
    let logs = std::env::temp_dir().join(format!("{}-errlog", s.worker));
    cmd.env("KUBECONFIG", s.tb.kubeconfig())
        .env("POD_NAME", &s.worker)
        .env("POD_NAMESPACE", &s.ns)
        .env("ROUTINE_LOAD_WATCH_NAMESPACE", &s.ns)
        .env("ROUTINE_LOAD_HTTP_ADDR", format!("127.0.0.1:{http_port}"))
        .env("ROUTINE_LOAD_ERROR_LOG_DIR", logs)
        .env(
            "ROUTINE_LOAD_ADVERTISE_URL",
            format!("http://127.0.0.1:{http_port}"),
        )
        .env("ROUTINE_LOAD_BATCH_INTERVAL_MS", "1000")
        .env("RUST_LOG", "info,buoyant_kernel=warn,deltalake_core=warn");
    if let Some(n) = batch_rows {
        cmd.env("ROUTINE_LOAD_MAX_BATCH_ROWS", n.to_string());
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    s.tb.spawn(&s.worker, cmd).expect("spawn worker")
}

async fn task_status(s: &Setup) -> Value {
    let tasks: Api<DynamicObject> = Api::namespaced_with(
        s.client.clone(),
        &s.ns,
        &ar("RoutineLoadTask", "routineloadtasks"),
    );
    let t = tasks.get(&s.task).await.expect("get task");
    t.data.get("status").cloned().unwrap_or(Value::Null)
}

/// Waits until the task reports `offset` committed for partition 0, or fails with the status
/// and the worker log.
async fn wait_committed(s: &Setup, w: &mut LocalProcess, offset: i64, timeout: Duration) -> Value {
    let t0 = Instant::now();
    loop {
        let st = task_status(s).await;
        if st["committedOffsets"]["0"].as_i64() == Some(offset) {
            return st;
        }
        if t0.elapsed() > timeout || !w.is_running() {
            panic!(
                "task did not commit offset {offset} within {timeout:?} (worker running: {}); status: {st}\nworker log:\n{}",
                w.is_running(),
                w.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn check_table(s: &Setup, messages: usize) {
    let snap = s.tb.read_delta(&s.location, None).expect("read table");
    let app = format!("routine-load-{}-0", s.job_uid);
    assert_eq!(
        snap.txns.get(&app).copied(),
        Some(messages as i64),
        "txn of partition 0"
    );
    let users = snap.column("user");
    let mut seen = BTreeSet::new();
    for u in &users {
        let u = u.as_str().expect("user is a string");
        assert!(seen.insert(u.to_string()), "duplicate row {u}");
    }
    let expected: BTreeSet<String> = (0..messages)
        .filter(|i| good(*i))
        .map(|i| format!("User{i}"))
        .collect();
    let missing: Vec<_> = expected.difference(&seen).take(5).collect();
    let extra: Vec<_> = seen.difference(&expected).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, unexpected {extra:?}"
    );
    // Typed values of one row.
    let rows = snap.sorted_rows(&["user"]);
    let r = rows
        .iter()
        .find(|r| r["user"] == "User4000")
        .expect("row of message 4000");
    let mut expect = BTreeMap::new();
    expect.insert("channel", json!("#en.wikipedia"));
    expect.insert("is_anonymous", json!(0));
    expect.insert("is_minor", json!(0));
    expect.insert("delta", json!(4000 % 400 - 200));
    expect.insert("added", json!(4000 % 300));
    expect.insert("deleted", json!(0));
    for (k, v) in expect {
        assert_eq!(r[k], v, "column {k} of message 4000: {r:?}");
    }
    let ts = r["event_time"].as_str().unwrap_or_default();
    assert!(
        ts.starts_with("2015-09-12") && ts.contains("01:06:40"),
        "event_time {ts}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_loads_wikipedia_csv_exactly_once() {
    // The reference's quick start size: 100,000 messages, 1% of them bad.
    const N: usize = 100_000;
    let Some(s) = setup("worker wikipedia csv", N, 1000).await else {
        return;
    };
    let t0 = Instant::now();
    let mut w = spawn_worker(&s, 18041, None, &[]);
    let st = wait_committed(&s, &mut w, N as i64, Duration::from_secs(240)).await;
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "loaded {N} messages in {secs:.1}s (incl. startup): {:.0} rows/s",
        N as f64 / secs
    );
    let bad = (0..N).filter(|i| !good(*i)).count() as i64;
    // Counters come with the commit's status patch (rate-limited, but the last one lands).
    let t1 = Instant::now();
    let mut st = st;
    while st["loadedRows"].as_i64() != Some(N as i64 - bad)
        && t1.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
        st = task_status(&s).await;
    }
    assert_eq!(st["totalRows"].as_i64(), Some(N as i64), "{st}");
    assert_eq!(st["loadedRows"].as_i64(), Some(N as i64 - bad), "{st}");
    assert_eq!(st["errorRows"].as_i64(), Some(bad), "{st}");
    assert_eq!(
        st["abortedBatches"].as_i64(),
        Some(0),
        "a clean load aborts nothing: {st}"
    );
    assert!(st["errorLogUrl"].as_str().is_some(), "{st}");
    // The task names its last batch by the label its Delta version carries.
    let version = st["lastCommitVersion"].as_i64().expect("lastCommitVersion");
    let commit = std::fs::read_to_string(format!(
        "{}/_delta_log/{version:020}.json",
        s.location.trim_start_matches("file://")
    ))
    .expect("read the last commit");
    let label = commit
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|a| {
            a["commitInfo"]["routineLoad"]["label"]
                .as_str()
                .map(str::to_string)
        })
        .expect("the commit's label");
    assert_eq!(st["lastCommitLabel"].as_str(), Some(label.as_str()), "{st}");
    assert!(label.contains("-batch-"), "{label}");
    // The error log is served and names the reason.
    let url = st["errorLogUrl"].as_str().unwrap().to_string();
    let out = Command::new("curl")
        .args(["-sf", &url])
        .output()
        .expect("curl");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(body.contains("not-a-number"), "error log at {url}: {body}");
    // Metrics and health over HTTP.
    let get = |path: &str| {
        let out = Command::new("curl")
            .args(["-sf", &format!("http://127.0.0.1:18041{path}")])
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let metrics = get("/metrics");
    assert!(
        metrics.contains("routine_load_worker_rows_total")
            && metrics.contains("routine_load_worker_commit_seconds_bucket")
            && metrics.contains("routine_load_worker_lag"),
        "{metrics}"
    );
    assert_eq!(get("/healthz"), "ok");
    assert_eq!(get("/readyz"), "ok");
    assert_eq!(
        get("/api/_load_error_log?file=../../etc/passwd"),
        "",
        "traversal refused"
    );
    check_table(&s, N);
    // The reference's quick start table (DATETIME NOT NULL) read by Spark too: same version, row
    // count and checksum as the pyarrow reader.
    let t0 = Instant::now();
    let both =
        s.tb.check_with_both_readers(&[s.location.as_str()], false)
            .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!(
        "Spark read {:?} rows in {:?}; protocol {:?}",
        both[0].1.count,
        t0.elapsed(),
        both[0].1.protocol
    );
    let _ = w.stop(Duration::from_secs(20));
    let _ = &s.topic;
}

/// The pipelined task loop: batch N commits on its own thread while batch N+1 is collected.
/// With a topic produced in advance and 20 small batches, the worker's log first proves that
/// commits finished while the next batch was being collected; then the Delta log proves that
/// every batch committed once and in offset order, the table holds each row once, and the
/// task's counters count each batch once (sums of what the commits recorded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_batches_commit_in_order_and_count_once() {
    const N: usize = 60_000;
    const BATCH: usize = 3_000;
    let Some(s) = setup("pipelined batches", N, 10_000).await else {
        return;
    };
    let mut w = spawn_worker(
        &s,
        18046,
        Some(BATCH),
        &[(
            "RUST_LOG",
            "info,routine_load_worker::task_runner=debug,buoyant_kernel=warn,deltalake_core=warn",
        )],
    );
    let mut st = wait_committed(&s, &mut w, N as i64, Duration::from_secs(240)).await;
    let bad = (0..N).filter(|i| !good(*i)).count() as i64;
    let t1 = Instant::now();
    while st["loadedRows"].as_i64() != Some(N as i64 - bad)
        && t1.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
        st = task_status(&s).await;
    }
    let overlapped = w
        .log()
        .matches("the batch in flight committed while the next was collected")
        .count();
    assert!(
        overlapped > 0,
        "no commit finished while the next batch was collected: the load did not pipeline"
    );

    // The batches in the Delta log, in version order: offsets strictly increasing from 0 to N,
    // each batch's rows recorded once.
    let app = format!("routine-load-{}-0", s.job_uid);
    let log_dir = format!("{}/_delta_log", s.location.trim_start_matches("file://"));
    let mut versions: Vec<_> = std::fs::read_dir(&log_dir)
        .expect("read _delta_log")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".json")?.parse::<u64>().ok()
        })
        .collect();
    versions.sort();
    let (mut batches, mut last_offset, mut loaded, mut total) = (0i64, 0i64, 0i64, 0i64);
    for v in versions {
        let commit = std::fs::read_to_string(format!("{log_dir}/{v:020}.json")).expect("commit");
        let actions: Vec<Value> = commit
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let Some(info) = actions
            .iter()
            .find_map(|a| a["commitInfo"]["routineLoad"].as_object())
        else {
            continue;
        };
        if !info["label"]
            .as_str()
            .is_some_and(|l| l.contains("-batch-"))
        {
            continue;
        }
        let next = actions
            .iter()
            .find(|a| a["txn"]["appId"] == app.as_str())
            .and_then(|a| a["txn"]["version"].as_i64())
            .unwrap_or_else(|| panic!("version {v}: a batch commit without the txn of {app}"));
        assert!(
            next > last_offset,
            "version {v} records offset {next} after {last_offset}: batches out of order"
        );
        last_offset = next;
        batches += 1;
        loaded += info["counters"]["loadedRows"].as_i64().expect("loadedRows");
        total += info["counters"]["totalRows"].as_i64().expect("totalRows");
    }
    assert_eq!(
        last_offset, N as i64,
        "the last batch ends at the topic's end"
    );
    assert!(
        batches >= (N / BATCH) as i64,
        "{batches} batch commits for {N} messages in batches of {BATCH}"
    );
    assert_eq!(total, N as i64, "rows the batch commits recorded");
    assert_eq!(
        loaded,
        N as i64 - bad,
        "loaded rows the batch commits recorded"
    );
    assert_eq!(st["committedBatches"].as_i64(), Some(batches), "{st}");
    assert_eq!(st["totalRows"].as_i64(), Some(N as i64), "{st}");
    assert_eq!(st["loadedRows"].as_i64(), Some(N as i64 - bad), "{st}");
    assert_eq!(st["errorRows"].as_i64(), Some(bad), "{st}");
    assert_eq!(
        st["abortedBatches"].as_i64(),
        Some(0),
        "a clean load aborts nothing: {st}"
    );
    check_table(&s, N);
    eprintln!("{batches} batches, {overlapped} committed while the next was collected");
    let _ = w.stop(Duration::from_secs(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_kill_9_restarts_exactly_once() {
    const N: usize = 1_000_000;
    const KILLS: usize = 25;
    // Small batches: many commits, so at least 20 kills land mid-load however fast it runs.
    const BATCH_ROWS: usize = 10_000;
    let Some(s) = setup(
        "worker kill -9",
        N,
        // 1% of 1,000,000 rows are bad: 10,000 error rows within one error window
        // (10 x maxBatchRows = 2,000,000 rows) must not pause the job.
        20_000,
    )
    .await
    else {
        return;
    };
    // Commits so far: the JSON commit files in the log (cheap, no reader run).
    let log_dir =
        std::path::PathBuf::from(s.location.trim_start_matches("file://")).join("_delta_log");
    let snapshot_version = |_: &Setup| -> i64 {
        std::fs::read_dir(&log_dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                    .count() as i64
            })
            .unwrap_or(0)
    };
    let mut w = spawn_worker(&s, 18042, Some(BATCH_ROWS), &[]);
    let mut kills = 0;
    for k in 0..KILLS {
        // Wait for progress (a new commit), then kill at a varying point of the next batch.
        let v0 = snapshot_version(&s);
        let t0 = Instant::now();
        let mut done = false;
        while snapshot_version(&s) <= v0 {
            if task_status(&s).await["committedOffsets"]["0"].as_i64() == Some(N as i64) {
                done = true;
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "no commit after kill {k}:\n{}",
                w.log()
            );
            // Polled often: the worker commits a 10,000-row batch every few tens of ms, and
            // every ms between its commit and the kill is rows it loads in this round.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(13 * (k as u64 % 7) + 5)).await;
        w.kill().expect("kill -9");
        kills += 1;
        w = spawn_worker(&s, 18042, Some(BATCH_ROWS), &[]);
    }
    eprintln!("killed the worker {kills} times mid-load");
    assert!(
        kills >= 20,
        "the load finished after {kills} kills, fewer than 20; make it longer"
    );
    wait_committed(&s, &mut w, N as i64, Duration::from_secs(300)).await;
    check_table(&s, N);
    let _ = w.stop(Duration::from_secs(20));
}

/// Two worker processes run the same task at once (as when a task moves and the old owner has
/// not noticed yet): their commits race on the same transaction ids, one side's batch is refused
/// each time, and nothing is loaded twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_two_owners_no_duplicate() {
    const N: usize = 50_000;
    let Some(s) = setup("worker two owners", N, 1000).await else {
        return;
    };
    const MORE: usize = 3_000;
    let mut a = spawn_worker(&s, 18043, Some(1_000), &[]);
    let mut b = spawn_worker(&s, 18044, Some(1_000), &[]);
    // Messages keep arriving while both run, so a refused owner that backed off comes back to a
    // partition with work left and races again.
    for chunk in (N..N + MORE).collect::<Vec<_>>().chunks(100) {
        let lines: Vec<String> = chunk.iter().map(|i| row(*i)).collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        s.tb.produce_lines(Listener::Plaintext, &s.topic, 0, &refs)
            .await
            .expect("produce");
    }
    let st = wait_committed(&s, &mut a, (N + MORE) as i64, Duration::from_secs(240)).await;
    eprintln!("two owners: status {st}");
    // Both owners really ran and raced: each tried to commit batches (committed or refused), and
    // commits were refused. (A refused owner backs off, so the other may load most batches.)
    let batches = |port: u16, result: &str| -> f64 {
        let out = Command::new("curl")
            .args(["-sf", &format!("http://127.0.0.1:{port}/metrics")])
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| {
                l.starts_with("routine_load_worker_batches_total")
                    && l.contains(&format!("result=\"{result}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let (a_ok, b_ok) = (batches(18043, "committed"), batches(18044, "committed"));
    let (a_refused, b_refused) = (batches(18043, "aborted"), batches(18044, "aborted"));
    eprintln!(
        "two owners: a committed {a_ok}, refused {a_refused}; b committed {b_ok}, refused {b_refused}"
    );
    assert!(
        a_ok + a_refused > 0.0 && b_ok + b_refused > 0.0,
        "both owners tried to commit: a {a_ok}+{a_refused}, b {b_ok}+{b_refused}"
    );
    assert!(
        a_refused + b_refused > 0.0,
        "the owners' commits conflicted at least once"
    );
    check_table(&s, N + MORE);
    let _ = a.stop(Duration::from_secs(20));
    let _ = b.stop(Duration::from_secs(20));
}

/// A worker whose load memory limit is far below what a batch would hold commits early, many
/// times, and still loads every offset exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_commits_early_at_its_load_memory_limit() {
    const N: usize = 20_000;
    // The rows are about 63 bytes, so a message reserves about 2 x 63 + 48 = 174 bytes and the
    // 20,000 rows about 3.5 MB: a 256 KiB limit ends a batch every ~1,500 rows (13 batches).
    const LIMIT: &str = "262144";
    let Some(s) = setup("worker load memory limit", N, 1000).await else {
        return;
    };
    let mut w = spawn_worker(
        &s,
        18045,
        None,
        &[("ROUTINE_LOAD_LOAD_MEMORY_LIMIT_BYTES", LIMIT)],
    );
    let st = wait_committed(&s, &mut w, N as i64, Duration::from_secs(240)).await;
    let metrics = Command::new("curl")
        .args(["-sf", "http://127.0.0.1:18045/metrics"])
        .output()
        .expect("curl");
    let metrics = String::from_utf8_lossy(&metrics.stdout).into_owned();
    let metric = |name: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(
        metric("routine_load_worker_load_memory_bytes{kind=\"limit\"}"),
        262144.0,
        "{metrics}"
    );
    let limited = metric("routine_load_worker_memory_limited_batches_total");
    let committed = st["committedBatches"].as_i64().unwrap_or(0);
    eprintln!("memory limit: {committed} batches committed, {limited} ended by the limit");
    assert!(
        limited >= 10.0 && committed >= 11,
        "batches should end at the memory limit: {limited} limited, status {st}"
    );
    check_table(&s, N);
    let _ = w.stop(Duration::from_secs(20));
}
