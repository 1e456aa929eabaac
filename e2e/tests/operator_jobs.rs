//! The operator (FE) as a process against the testbed's real API server and Kafka, with fake
//! workers (Leases this test renews): job states, tasks, pause/resume/stop, bad jobs, and a task
//! moving off a worker whose Lease expired.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Event as CoreEvent;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use routine_load_api::RoutineLoadTask;
use routine_load_e2e::process::workspace_binary;
use routine_load_e2e::{LocalProcess, Testbed, testbed_or_skip, unique_name};
use routine_load_worker::task_release;
use serde_json::{Value, json};

const WORKER_LABEL: &str = "routineload.io/worker";
const JOB_LABEL: &str = "routineload.io/job";

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("routineload.io", "v1alpha1", kind),
        plural,
    )
}

fn api(client: &Client, ns: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &resource(kind, plural))
}

struct Env {
    tb: Testbed,
    client: Client,
    ns: String,
    _operator: Option<LocalProcess>,
    metrics_addr: String,
}

async fn setup(label: &str) -> Option<Env> {
    let tb = testbed_or_skip(label)?;
    tb.apply_crds().expect("apply CRDs");
    let client = tb.client().await.expect("admin client");
    let ns = unique_name("e2e-op");
    tb.ensure_namespace(&client, &ns).await.expect("namespace");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        l.local_addr().expect("addr").port()
    };
    let metrics_addr = format!("127.0.0.1:{port}");
    let bin = workspace_binary("routine-load-operator").expect("operator binary");
    let mut cmd = Command::new(bin);
    for (k, v) in tb.child_env() {
        cmd.env(k, v);
    }
    cmd.env("POD_NAME", format!("operator-{ns}"))
        .env("POD_NAMESPACE", &ns)
        .env("ROUTINE_LOAD_WATCH_NAMESPACE", &ns)
        .env("ROUTINE_LOAD_HTTP_ADDR", &metrics_addr)
        .env("RUST_LOG", "info,routine_load_operator=debug");
    let operator = tb.spawn("operator", cmd).expect("start operator");
    Some(Env {
        tb,
        client,
        ns,
        _operator: Some(operator),
        metrics_addr,
    })
}

/// Fake workers: Leases labelled with the worker label, renewed every second while `alive`.
struct FakeWorker {
    alive: Arc<AtomicBool>,
}

async fn fake_worker(client: &Client, ns: &str, name: &str) -> FakeWorker {
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    let alive = Arc::new(AtomicBool::new(true));
    let body = |now: k8s_openapi::jiff::Timestamp| {
        json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": { "name": name, "labels": { WORKER_LABEL: name } },
            "spec": {
                "holderIdentity": name,
                "leaseDurationSeconds": 6,
                "renewTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(now),
            }
        })
    };
    let pp = PatchParams::apply("e2e-fake-worker").force();
    leases
        .patch(
            name,
            &pp,
            &Patch::Apply(body(k8s_openapi::jiff::Timestamp::now())),
        )
        .await
        .expect("create worker lease");
    let flag = alive.clone();
    let name = name.to_string();
    let tasks: Api<RoutineLoadTask> = Api::namespaced(client.clone(), ns);
    tokio::spawn(async move {
        while flag.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if !flag.load(Ordering::SeqCst) {
                break;
            }
            // Like a worker whose loop of a deleted task ended: release it, with the worker's
            // own decision and patch (the operator then records its counters and removes its
            // finalizer).
            let mine = ListParams::default().labels(&format!("{WORKER_LABEL}={name}"));
            if let Ok(list) = tasks.list(&mine).await {
                for t in list
                    .items
                    .iter()
                    .filter(|t| task_release::should_release(t, &name, false))
                {
                    let _ = task_release::release(&tasks, t, &Default::default()).await;
                }
            }
            let now = k8s_openapi::jiff::Timestamp::now();
            let b = json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": { "name": name, "labels": { WORKER_LABEL: name } },
                "spec": { "holderIdentity": name, "leaseDurationSeconds": 6,
                          "renewTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(now) }
            });
            let _ = leases.patch(&name, &pp, &Patch::Apply(b)).await;
        }
    });
    FakeWorker { alive }
}

async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(v) => return v,
            Err(e) => e,
        };
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn get(api: &Api<DynamicObject>, name: &str) -> Value {
    let o = api.get(name).await.expect("get object");
    serde_json::to_value(o).expect("json")
}

async fn wait_state(
    jobs: &Api<DynamicObject>,
    name: &str,
    state: &str,
    timeout: Duration,
) -> Value {
    wait_for(&format!("job {name} in state {state}"), timeout, || async {
        let j = get(jobs, name).await;
        if j["status"]["state"] == state {
            Ok(j)
        } else {
            Err(format!("status: {}", j["status"]))
        }
    })
    .await
}

async fn tasks_of(client: &Client, ns: &str, job: &str) -> Vec<Value> {
    let tasks = api(client, ns, "RoutineLoadTask", "routineloadtasks");
    let list = tasks
        .list(&ListParams::default().labels(&format!("{JOB_LABEL}={job}")))
        .await
        .expect("list tasks");
    list.items
        .into_iter()
        .map(|t| serde_json::to_value(t).expect("json"))
        .collect()
}

/// The Events about object `name`. kube's Recorder writes events.k8s.io/v1; core/v1 sees them
/// too, with `reason`, `message` and the reporting instance.
async fn events_about(client: &Client, ns: &str, name: &str) -> Vec<CoreEvent> {
    let events: Api<CoreEvent> = Api::namespaced(client.clone(), ns);
    events
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .collect()
}

async fn events_for(client: &Client, ns: &str, name: &str) -> Vec<(String, String)> {
    events_about(client, ns, name)
        .await
        .into_iter()
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect()
}

async fn create_table(env: &Env, name: &str) {
    let dir = std::env::temp_dir().join(unique_name("op-table"));
    let tables = api(&env.client, &env.ns, "Table", "tables");
    let body: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "routineload.io/v1alpha1",
        "kind": "Table",
        "metadata": { "name": name },
        "spec": {
            "columns": [
                { "name": "k", "type": "INT" },
                { "name": "v", "type": "STRING" },
            ],
            "location": format!("file://{}", dir.display()),
        }
    }))
    .expect("table object");
    tables
        .create(&PostParams::default(), &body)
        .await
        .expect("create table");
}

async fn create_job(env: &Env, name: &str, table: &str, topic: &str, brokers: &str, extra: Value) {
    let jobs = api(&env.client, &env.ns, "RoutineLoadJob", "routineloadjobs");
    let mut spec = json!({
        "table": table,
        "columnSeparator": ",",
        "desiredConcurrentNumber": 2,
        "kafka": { "brokerList": brokers, "topic": topic },
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    let body: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "routineload.io/v1alpha1",
        "kind": "RoutineLoadJob",
        "metadata": { "name": name },
        "spec": spec,
    }))
    .expect("job object");
    jobs.create(&PostParams::default(), &body)
        .await
        .expect("create job");
}

async fn set_desired(env: &Env, job: &str, state: &str) {
    let jobs = api(&env.client, &env.ns, "RoutineLoadJob", "routineloadjobs");
    jobs.patch(
        job,
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "state": state } })),
    )
    .await
    .expect("patch spec.state");
}

fn task_summary(tasks: &[Value]) -> String {
    tasks
        .iter()
        .map(|t| {
            format!(
                "{}: partitions {} worker {} epoch {}",
                t["metadata"]["name"],
                t["spec"]["partitions"],
                t["spec"]["worker"],
                t["spec"]["epoch"]
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test]
async fn operator_schedules_pauses_resumes_stops_and_moves_tasks() {
    let Some(env) = setup("operator job lifecycle").await else {
        return;
    };
    let topic = unique_name("op-topic");
    env.tb.create_topic(&topic, 4).await.expect("topic");
    let brokers = env.tb.var("KAFKA_BROKERS").expect("brokers").to_string();
    let mut fakes = BTreeMap::new();
    for w in ["worker-a", "worker-b", "worker-c"] {
        fakes.insert(w, fake_worker(&env.client, &env.ns, w).await);
    }

    create_table(&env, "events").await;
    let tables = api(&env.client, &env.ns, "Table", "tables");
    wait_for("table Ready", Duration::from_secs(60), || async {
        let t = get(&tables, "events").await;
        if t["status"]["phase"] == "Ready" {
            Ok(())
        } else {
            Err(format!("{}", t["status"]))
        }
    })
    .await;

    create_job(&env, "load-events", "events", &topic, &brokers, json!({})).await;
    let jobs = api(&env.client, &env.ns, "RoutineLoadJob", "routineloadjobs");
    let job = wait_state(&jobs, "load-events", "RUNNING", Duration::from_secs(60)).await;
    assert!(job["status"]["createTime"].is_string(), "{}", job["status"]);
    assert_eq!(job["status"]["currentTaskNum"], 2, "{}", job["status"]);
    assert_eq!(
        job["status"]["observedGeneration"],
        job["metadata"]["generation"]
    );
    let events = events_for(&env.client, &env.ns, "load-events").await;
    assert!(
        events
            .iter()
            .any(|(_, m)| m.contains("NEED_SCHEDULE -> RUNNING")),
        "no NEED_SCHEDULE -> RUNNING event: {events:?}"
    );

    // Two tasks (desiredConcurrentNumber 2 < 3 workers < 4 partitions) covering 0..3 once, on two
    // different workers.
    let tasks = tasks_of(&env.client, &env.ns, "load-events").await;
    assert_eq!(tasks.len(), 2, "{}", task_summary(&tasks));
    let mut all: Vec<i64> = tasks
        .iter()
        .flat_map(|t| {
            t["spec"]["partitions"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|p| p.as_i64())
        .collect();
    all.sort();
    assert_eq!(all, vec![0, 1, 2, 3], "{}", task_summary(&tasks));
    let workers: BTreeSet<String> = tasks
        .iter()
        .map(|t| t["spec"]["worker"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(workers.len(), 2, "{}", task_summary(&tasks));
    for t in &tasks {
        assert_eq!(t["metadata"]["labels"][WORKER_LABEL], t["spec"]["worker"]);
        assert_eq!(t["metadata"]["ownerReferences"][0]["name"], "load-events");
        assert_eq!(t["spec"]["epoch"], 0);
    }

    // Pause: PAUSED, pauseTime set, tasks removed.
    set_desired(&env, "load-events", "Paused").await;
    let job = wait_state(&jobs, "load-events", "PAUSED", Duration::from_secs(30)).await;
    assert!(job["status"]["pauseTime"].is_string(), "{}", job["status"]);
    assert!(
        job["status"]["reasonOfStateChanged"]
            .as_str()
            .unwrap_or_default()
            .contains("paused by user"),
        "{}",
        job["status"]
    );
    wait_for(
        "tasks removed on pause",
        Duration::from_secs(15),
        || async {
            let t = tasks_of(&env.client, &env.ns, "load-events").await;
            if t.is_empty() {
                Ok(())
            } else {
                Err(task_summary(&t))
            }
        },
    )
    .await;

    // Resume: through NEED_SCHEDULE back to RUNNING.
    set_desired(&env, "load-events", "Running").await;
    wait_state(&jobs, "load-events", "RUNNING", Duration::from_secs(60)).await;
    let events = events_for(&env.client, &env.ns, "load-events").await;
    assert!(
        events
            .iter()
            .any(|(_, m)| m.contains("PAUSED -> NEED_SCHEDULE")),
        "no resume event: {events:?}"
    );

    // Worker a stops renewing its lease: its task moves to the idle worker with epoch + 1.
    let tasks = wait_for(
        "two tasks after resume",
        Duration::from_secs(30),
        || async {
            let t = tasks_of(&env.client, &env.ns, "load-events").await;
            if t.len() == 2 {
                Ok(t)
            } else {
                Err(task_summary(&t))
            }
        },
    )
    .await;
    let victim = tasks[0].clone();
    let dead = victim["spec"]["worker"]
        .as_str()
        .expect("worker")
        .to_string();
    let name = victim["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_string();
    let epoch = victim["spec"]["epoch"].as_i64().expect("epoch");
    fakes[dead.as_str()].alive.store(false, Ordering::SeqCst);
    let started = Instant::now();
    let moved = wait_for(
        &format!("task {name} moved off {dead}"),
        Duration::from_secs(30),
        || async {
            let t = tasks_of(&env.client, &env.ns, "load-events").await;
            match t.iter().find(|t| t["metadata"]["name"] == name.as_str()) {
                Some(t) if t["spec"]["worker"] != dead.as_str() => Ok(t.clone()),
                _ => Err(task_summary(&t)),
            }
        },
    )
    .await;
    eprintln!(
        "task {name} moved off {dead} in {:?}: {moved}",
        started.elapsed()
    );
    assert_eq!(moved["spec"]["epoch"].as_i64(), Some(epoch + 1), "{moved}");
    assert_eq!(
        moved["metadata"]["labels"][WORKER_LABEL],
        moved["spec"]["worker"]
    );
    let tasks = tasks_of(&env.client, &env.ns, "load-events").await;
    assert_eq!(tasks.len(), 2, "{}", task_summary(&tasks));
    assert!(
        tasks.iter().all(|t| t["spec"]["worker"] != dead.as_str()),
        "{}",
        task_summary(&tasks)
    );

    // Stop: STOPPED with endTime, tasks removed; final, so Running again changes nothing.
    set_desired(&env, "load-events", "Stopped").await;
    let job = wait_state(&jobs, "load-events", "STOPPED", Duration::from_secs(30)).await;
    assert!(job["status"]["endTime"].is_string(), "{}", job["status"]);
    wait_for("tasks removed on stop", Duration::from_secs(15), || async {
        let t = tasks_of(&env.client, &env.ns, "load-events").await;
        if t.is_empty() {
            Ok(())
        } else {
            Err(task_summary(&t))
        }
    })
    .await;
    set_desired(&env, "load-events", "Running").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let job = get(&jobs, "load-events").await;
    assert_eq!(job["status"]["state"], "STOPPED", "{}", job["status"]);
    assert!(
        tasks_of(&env.client, &env.ns, "load-events")
            .await
            .is_empty()
    );

    // Metrics and health.
    let metrics = http_get(&env.metrics_addr, "/metrics").await;
    assert!(
        metrics.contains("routine_load_operator_jobs{state=\"STOPPED\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("routine_load_operator_reconciles_total"),
        "{metrics}"
    );
    assert_eq!(http_get(&env.metrics_addr, "/healthz").await.trim(), "ok");
}

async fn http_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to operator HTTP");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.expect("read");
    buf.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or(buf)
}

#[tokio::test]
async fn operator_explains_jobs_that_cannot_run() {
    let Some(env) = setup("operator bad jobs").await else {
        return;
    };
    let topic = unique_name("op-bad");
    env.tb.create_topic(&topic, 1).await.expect("topic");
    let brokers = env.tb.var("KAFKA_BROKERS").expect("brokers").to_string();
    let _w = fake_worker(&env.client, &env.ns, "worker-a").await;
    create_table(&env, "good").await;
    let tables = api(&env.client, &env.ns, "Table", "tables");
    wait_for("table Ready", Duration::from_secs(60), || async {
        let t = get(&tables, "good").await;
        if t["status"]["phase"] == "Ready" {
            Ok(())
        } else {
            Err(format!("{}", t["status"]))
        }
    })
    .await;

    create_job(&env, "no-table", "missing", &topic, &brokers, json!({})).await;
    create_job(
        &env,
        "bad-where",
        "good",
        &topic,
        &brokers,
        json!({ "where": "nosuch > 1" }),
    )
    .await;
    create_job(&env, "no-broker", "good", &topic, "127.0.0.1:1", json!({})).await;

    let jobs = api(&env.client, &env.ns, "RoutineLoadJob", "routineloadjobs");
    let cases = [
        ("no-table", "TableNotFound", "table 'missing' not found"),
        ("bad-where", "InvalidPlan", "unknown column 'nosuch'"),
        ("no-broker", "KafkaUnavailable", "127.0.0.1:1"),
    ];
    for (job, reason, words) in cases {
        let j = wait_state(&jobs, job, "PAUSED", Duration::from_secs(60)).await;
        let why = j["status"]["reasonOfStateChanged"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            why.contains(words),
            "{job}: reason {why:?} should say {words:?}"
        );
        let cond = &j["status"]["conditions"][0];
        assert_eq!(cond["type"], "Ready", "{job}: {cond}");
        assert_eq!(cond["status"], "False", "{job}: {cond}");
        assert_eq!(cond["reason"], reason, "{job}: {cond}");
        let events = wait_for(&format!("{job} event"), Duration::from_secs(15), || async {
            let ev = events_for(&env.client, &env.ns, job).await;
            if ev.iter().any(|(r, m)| r == reason && m.contains(words)) {
                Ok(ev)
            } else {
                Err(format!("{ev:?}"))
            }
        })
        .await;
        assert!(!events.is_empty());
    }

    // No crash loop: the operator still runs, and a table that appears lets the job run.
    create_table(&env, "missing").await;
    wait_state(&jobs, "no-table", "RUNNING", Duration::from_secs(60)).await;
    let tasks = tasks_of(&env.client, &env.ns, "no-table").await;
    let parts: BTreeMap<String, Value> = tasks
        .iter()
        .map(|t| {
            (
                t["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                t["spec"]["partitions"].clone(),
            )
        })
        .collect();
    assert_eq!(tasks.len(), 1, "{parts:?}");
}

/// Writes a task's status the way a worker does (status subresource, worker field manager).
async fn report(client: &Client, ns: &str, task: &str, status: Value) {
    let tasks = api(client, ns, "RoutineLoadTask", "routineloadtasks");
    let body = json!({
        "apiVersion": "routineload.io/v1alpha1",
        "kind": "RoutineLoadTask",
        "metadata": { "name": task },
        "status": status,
    });
    tasks
        .patch_status(
            task,
            &PatchParams::apply("routine-load-worker").force(),
            &Patch::Apply(body),
        )
        .await
        .expect("write task status");
}

#[tokio::test]
async fn operator_folds_task_status_and_pauses_on_error_window() {
    let Some(env) = setup("operator status folding").await else {
        return;
    };
    let topic = unique_name("op-fold");
    env.tb.create_topic(&topic, 2).await.expect("topic");
    let brokers = env.tb.var("KAFKA_BROKERS").expect("brokers").to_string();
    let _w = fake_worker(&env.client, &env.ns, "worker-a").await;
    create_table(&env, "t").await;
    // maxErrorNumber 5: the job's own window tolerates the reported error row, so the pause
    // below is the task's report of its window.
    create_job(
        &env,
        "fold",
        "t",
        &topic,
        &brokers,
        json!({ "desiredConcurrentNumber": 1, "maxErrorNumber": 5 }),
    )
    .await;
    let jobs = api(&env.client, &env.ns, "RoutineLoadJob", "routineloadjobs");
    wait_state(&jobs, "fold", "RUNNING", Duration::from_secs(60)).await;
    let tasks = tasks_of(&env.client, &env.ns, "fold").await;
    assert_eq!(tasks.len(), 1, "{}", task_summary(&tasks));
    let task = tasks[0]["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_string();
    let epoch = tasks[0]["spec"]["epoch"].as_i64().expect("epoch");

    report(
        &env.client,
        &env.ns,
        &task,
        json!({
            "epoch": epoch, "loadedRows": 10, "totalRows": 12, "errorRows": 1, "unselectedRows": 1,
            "receivedBytes": 120, "committedBatches": 2,
            "committedOffsets": { "0": 6, "1": 6 }, "lag": { "0": 3, "1": 4 },
            "errorLogUrl": "http://worker-a:8080/error_log/x",
        }),
    )
    .await;
    let job = wait_for("folded statistic", Duration::from_secs(20), || async {
        let j = get(&jobs, "fold").await;
        if j["status"]["statistic"]["loadedRows"] == 10 {
            Ok(j)
        } else {
            Err(format!("{}", j["status"]))
        }
    })
    .await;
    let s = &job["status"];
    assert_eq!(s["statistic"]["totalRows"], 12, "{s}");
    assert_eq!(s["statistic"]["errorRows"], 1, "{s}");
    assert_eq!(s["statistic"]["unselectedRows"], 1, "{s}");
    assert_eq!(s["statistic"]["receivedBytes"], 120, "{s}");
    assert_eq!(s["statistic"]["committedTaskNum"], 2, "{s}");
    assert_eq!(s["progress"], json!({ "0": 6, "1": 6 }), "{s}");
    assert_eq!(s["lag"], json!({ "0": 3, "1": 4 }), "{s}");
    assert_eq!(s["totalLag"], 7, "{s}");
    assert_eq!(
        s["errorLogUrls"],
        json!(["http://worker-a:8080/error_log/x"]),
        "{s}"
    );
    assert_eq!(s["currentTaskNum"], 1, "{s}");
    assert_eq!(s["currentKafkaPartitions"], json!([0, 1]), "{s}");

    // The worker reports its error window exceeded: the job pauses with that reason, the task is
    // removed, and counters and progress stay.
    report(
        &env.client,
        &env.ns,
        &task,
        json!({
            "epoch": epoch, "loadedRows": 10, "totalRows": 12, "errorRows": 1, "unselectedRows": 1,
            "receivedBytes": 120, "committedBatches": 2,
            "committedOffsets": { "0": 6, "1": 6 }, "lag": { "0": 3, "1": 4 },
            "errorWindowExceeded": "error rows 1 > maxErrorNumber 0: convert csv string to INT failed",
        }),
    )
    .await;
    let job = wait_state(&jobs, "fold", "PAUSED", Duration::from_secs(20)).await;
    let s = &job["status"];
    assert!(
        s["reasonOfStateChanged"]
            .as_str()
            .unwrap_or_default()
            .contains("convert csv string to INT failed"),
        "{s}"
    );
    assert_eq!(s["conditions"][0]["reason"], "ErrorWindowExceeded", "{s}");
    assert_eq!(s["statistic"]["loadedRows"], 10, "{s}");
    assert_eq!(s["progress"], json!({ "0": 6, "1": 6 }), "{s}");
    wait_for("task removed", Duration::from_secs(15), || async {
        let t = tasks_of(&env.client, &env.ns, "fold").await;
        if t.is_empty() {
            Ok(())
        } else {
            Err(task_summary(&t))
        }
    })
    .await;
    // Stays paused (a StarRocks job paused for errors needs a RESUME) ...
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(get(&jobs, "fold").await["status"]["state"], "PAUSED");
    // ... which is Paused then Running; the counters carry over into the new tasks' sums.
    set_desired(&env, "fold", "Paused").await;
    wait_for("user pause recorded", Duration::from_secs(20), || async {
        let j = get(&jobs, "fold").await;
        if j["status"]["conditions"][0]["reason"] == "UserPaused" {
            Ok(())
        } else {
            Err(format!("{}", j["status"]))
        }
    })
    .await;
    set_desired(&env, "fold", "Running").await;
    wait_state(&jobs, "fold", "RUNNING", Duration::from_secs(60)).await;
    let tasks = tasks_of(&env.client, &env.ns, "fold").await;
    assert_eq!(tasks.len(), 1, "{}", task_summary(&tasks));
    let task = tasks[0]["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_string();
    let epoch = tasks[0]["spec"]["epoch"].as_i64().expect("epoch");
    report(
        &env.client,
        &env.ns,
        &task,
        json!({ "epoch": epoch, "loadedRows": 5, "committedOffsets": { "0": 9 } }),
    )
    .await;
    let job = wait_for(
        "statistic keeps removed tasks' counters",
        Duration::from_secs(20),
        || async {
            let j = get(&jobs, "fold").await;
            if j["status"]["statistic"]["loadedRows"] == 15 {
                Ok(j)
            } else {
                Err(format!("{}", j["status"]))
            }
        },
    )
    .await;
    assert_eq!(
        job["status"]["progress"],
        json!({ "0": 9, "1": 6 }),
        "{}",
        job["status"]
    );
}

#[tokio::test]
async fn operator_table_deletion_cancels_its_jobs_and_honours_policy() {
    let Some(env) = setup("operator table deletion").await else {
        return;
    };
    let topic = unique_name("op-del");
    env.tb.create_topic(&topic, 1).await.expect("topic");
    let brokers = env.tb.var("KAFKA_BROKERS").expect("brokers").to_string();
    let _w = fake_worker(&env.client, &env.ns, "worker-a").await;
    create_table(&env, "doomed").await;
    let tables = api(&env.client, &env.ns, "Table", "tables");
    let t = wait_for("table Ready", Duration::from_secs(60), || async {
        let t = get(&tables, "doomed").await;
        if t["status"]["phase"] == "Ready" {
            Ok(t)
        } else {
            Err(format!("{}", t["status"]))
        }
    })
    .await;
    assert_eq!(t["status"]["deltaVersion"], 0, "{}", t["status"]);
    assert_eq!(t["metadata"]["finalizers"], json!(["routineload.io/table"]));
    let location = t["spec"]["location"]
        .as_str()
        .expect("location")
        .to_string();
    let dir = std::path::PathBuf::from(location.trim_start_matches("file://"));
    assert!(
        dir.join("_delta_log").is_dir(),
        "no Delta log in {}",
        dir.display()
    );
    tables
        .patch(
            "doomed",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "deletionPolicy": "Delete" } })),
        )
        .await
        .expect("set deletionPolicy");

    create_job(&env, "loader", "doomed", &topic, &brokers, json!({})).await;
    let jobs = api(&env.client, &env.ns, "RoutineLoadJob", "routineloadjobs");
    wait_state(&jobs, "loader", "RUNNING", Duration::from_secs(60)).await;

    // Deleting the table a job loads into cancels the job (a deletion can't be called off, so
    // the job can never run again): CANCELLED with the reason, its tasks removed; then the
    // finalizer lets the table go, and with deletionPolicy Delete its files too.
    assert_eq!(tasks_of(&env.client, &env.ns, "loader").await.len(), 1);
    tables
        .delete("doomed", &Default::default())
        .await
        .expect("delete table");
    let j = wait_state(&jobs, "loader", "CANCELLED", Duration::from_secs(30)).await;
    let reason = j["status"]["reasonOfStateChanged"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains("table 'doomed' was deleted"),
        "{}",
        j["status"]
    );
    assert_eq!(j["status"]["conditions"][0]["reason"], "TableDeleted");
    assert!(j["status"]["endTime"].is_string(), "{}", j["status"]);
    wait_for("tasks removed", Duration::from_secs(30), || async {
        let t = tasks_of(&env.client, &env.ns, "loader").await;
        if t.is_empty() {
            Ok(())
        } else {
            Err(task_summary(&t))
        }
    })
    .await;
    wait_for("table deleted", Duration::from_secs(30), || async {
        match tables.get_opt("doomed").await {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(
        !dir.join("_delta_log").exists(),
        "Delta log left in {}",
        dir.display()
    );
    let events = events_for(&env.client, &env.ns, "loader").await;
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "TableDeleted" && m.contains("CANCELLED")),
        "{events:?}"
    );
    // Final: a resume changes nothing.
    set_desired(&env, "loader", "Running").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(get(&jobs, "loader").await["status"]["state"], "CANCELLED");
    assert!(tasks_of(&env.client, &env.ns, "loader").await.is_empty());
}

fn spawn_operator(tb: &Testbed, ns: &str, identity: &str, extra: &[(&str, &str)]) -> LocalProcess {
    let bin = workspace_binary("routine-load-operator").expect("operator binary");
    let mut cmd = Command::new(bin);
    for (k, v) in tb.child_env() {
        cmd.env(k, v);
    }
    cmd.env("POD_NAME", identity)
        .env("POD_NAMESPACE", ns)
        .env("ROUTINE_LOAD_WATCH_NAMESPACE", ns)
        .env("ROUTINE_LOAD_HTTP_ADDR", "127.0.0.1:0");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    tb.spawn(identity, cmd).expect("start operator")
}

async fn leader_of(client: &Client, ns: &str) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    leases
        .get_opt("routine-load-operator")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

#[tokio::test]
async fn operator_leader_failover() {
    let Some(tb) = testbed_or_skip("operator leader failover") else {
        return;
    };
    tb.apply_crds().expect("apply CRDs");
    let client = tb.client().await.expect("admin client");
    let ns = unique_name("e2e-op-ha");
    tb.ensure_namespace(&client, &ns).await.expect("namespace");
    let lease = [("ROUTINE_LOAD_LEASE_DURATION_SECONDS", "5")];
    let mut ops: BTreeMap<String, LocalProcess> = ["op-1", "op-2", "op-3"]
        .into_iter()
        .map(|id| (id.to_string(), spawn_operator(&tb, &ns, id, &lease)))
        .collect();
    let first = wait_for("a leader", Duration::from_secs(30), || async {
        leader_of(&client, &ns)
            .await
            .filter(|l| !l.is_empty())
            .ok_or_else(|| "no leader".to_string())
    })
    .await;

    let env = Env {
        tb: tb.clone(),
        client: client.clone(),
        ns: ns.clone(),
        _operator: None,
        metrics_addr: String::new(),
    };
    let topic = unique_name("op-ha");
    tb.create_topic(&topic, 1).await.expect("topic");
    let brokers = tb.var("KAFKA_BROKERS").expect("brokers").to_string();
    let _w = fake_worker(&client, &ns, "worker-a").await;
    create_table(&env, "ha").await;
    create_job(&env, "ha-job", "ha", &topic, &brokers, json!({})).await;
    let jobs = api(&client, &ns, "RoutineLoadJob", "routineloadjobs");
    wait_state(&jobs, "ha-job", "RUNNING", Duration::from_secs(60)).await;
    // Only the leader writes: one task, owned by one field manager.
    assert_eq!(tasks_of(&client, &ns, "ha-job").await.len(), 1);

    // Kill the leader (no release): another replica takes over once the lease expires and keeps
    // reconciling (a pause is applied).
    ops.get_mut(&first)
        .expect("leader")
        .kill()
        .expect("kill leader");
    let started = Instant::now();
    let next = wait_for("a new leader", Duration::from_secs(30), || async {
        match leader_of(&client, &ns).await {
            Some(l) if !l.is_empty() && l != first => Ok(l),
            l => Err(format!("{l:?}")),
        }
    })
    .await;
    eprintln!(
        "{next} took over from killed {first} in {:?}",
        started.elapsed()
    );
    set_desired(&env, "ha-job", "Paused").await;
    wait_state(&jobs, "ha-job", "PAUSED", Duration::from_secs(30)).await;

    // SIGTERM on the new leader: it exits cleanly and releases the lease, so the last replica
    // leads well before the lease would have expired.
    let status = ops
        .get_mut(&next)
        .expect("new leader")
        .stop(Duration::from_secs(20))
        .expect("stop");
    assert!(status.success(), "graceful shutdown exit status {status}");
    let started = Instant::now();
    wait_for(
        "the last replica leads",
        Duration::from_secs(15),
        || async {
            match leader_of(&client, &ns).await {
                Some(l) if !l.is_empty() && l != first && l != next => Ok(()),
                l => Err(format!("{l:?}")),
            }
        },
    )
    .await;
    eprintln!(
        "last replica took over after graceful stop in {:?}",
        started.elapsed()
    );
    set_desired(&env, "ha-job", "Running").await;
    wait_state(&jobs, "ha-job", "RUNNING", Duration::from_secs(60)).await;
}

#[tokio::test]
async fn operator_picks_up_added_partitions_and_refuses_mismatched_tables() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
    use rdkafka::client::DefaultClientContext;
    let Some(env) = setup("operator added partitions").await else {
        return;
    };
    let topic = unique_name("op-grow");
    env.tb.create_topic(&topic, 2).await.expect("topic");
    let brokers = env.tb.var("KAFKA_BROKERS").expect("brokers").to_string();
    let _w = fake_worker(&env.client, &env.ns, "worker-a").await;
    create_table(&env, "grow").await;
    create_job(
        &env,
        "grow",
        "grow",
        &topic,
        &brokers,
        json!({ "desiredConcurrentNumber": 1 }),
    )
    .await;
    let jobs = api(&env.client, &env.ns, "RoutineLoadJob", "routineloadjobs");
    wait_state(&jobs, "grow", "RUNNING", Duration::from_secs(60)).await;
    let tasks = tasks_of(&env.client, &env.ns, "grow").await;
    assert_eq!(tasks.len(), 1, "{}", task_summary(&tasks));
    assert_eq!(tasks[0]["spec"]["partitions"], json!([0, 1]));
    let epoch = tasks[0]["spec"]["epoch"].as_i64().expect("epoch");

    let admin: AdminClient<DefaultClientContext> = env
        .tb
        .kafka_config(routine_load_e2e::kafka::Listener::Plaintext)
        .expect("kafka config")
        .create()
        .expect("admin client");
    let results = admin
        .create_partitions(&[NewPartitions::new(&topic, 3)], &AdminOptions::new())
        .await
        .expect("CreatePartitions");
    for r in results {
        r.expect("partitions added");
    }
    let task = wait_for(
        "the new partition in the task",
        Duration::from_secs(30),
        || async {
            let t = tasks_of(&env.client, &env.ns, "grow").await;
            match t.first() {
                Some(t) if t["spec"]["partitions"] == json!([0, 1, 2]) => Ok(t.clone()),
                _ => Err(task_summary(&t)),
            }
        },
    )
    .await;
    assert_eq!(task["spec"]["epoch"].as_i64(), Some(epoch + 1), "{task}");
    // The status follows the task write (a reconcile on a job object older than its last status
    // write is refused and retried), so wait for it.
    wait_for(
        "the new partition in the job status",
        Duration::from_secs(15),
        || async {
            let j = get(&jobs, "grow").await;
            if j["status"]["currentKafkaPartitions"] == json!([0, 1, 2]) {
                Ok(())
            } else {
                Err(format!("{}", j["status"]))
            }
        },
    )
    .await;

    // A second Table at the same location with another schema is refused, naming the columns.
    let tables = api(&env.client, &env.ns, "Table", "tables");
    let location = get(&tables, "grow").await["spec"]["location"].clone();
    let c = table_fails(
        &tables,
        "other",
        json!({
            "columns": [ { "name": "k", "type": "BIGINT" }, { "name": "w", "type": "STRING" } ],
            "location": location,
        }),
    )
    .await;
    assert_eq!(c["reason"], "SchemaMismatch", "{c}");
    let msg = c["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("'k'") && msg.contains("'w'") && msg.contains("'v'"),
        "{msg}"
    );

    // A Primary table keyed on a DECIMAL column passes the API server's schema but can't be
    // created: Failed / InvalidSpec, naming the key, its type and what to use instead.
    let dir = std::env::temp_dir().join(unique_name("decimal-key"));
    let c = table_fails(
        &tables,
        "decimal-key",
        json!({
            "model": "Primary",
            "keys": ["price"],
            "columns": [ { "name": "price", "type": "DECIMAL(10,2)", "nullable": false },
                         { "name": "v", "type": "STRING" } ],
            "location": format!("file://{}", dir.display()),
        }),
    )
    .await;
    assert_eq!(c["reason"], "InvalidSpec", "{c}");
    let msg = c["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("key column 'price' has type DECIMAL(10,2)") && msg.contains("Primary"),
        "{msg}"
    );
    assert!(
        !dir.join("_delta_log").exists(),
        "no Delta table was created"
    );
}

/// Creates the Table `name` with `spec` and waits for the operator to put it in phase Failed:
/// its Ready condition.
async fn table_fails(tables: &Api<DynamicObject>, name: &str, spec: Value) -> Value {
    let body: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "routineload.io/v1alpha1",
        "kind": "Table",
        "metadata": { "name": name },
        "spec": spec,
    }))
    .expect("table object");
    tables
        .create(&PostParams::default(), &body)
        .await
        .expect("create table");
    let t = wait_for(
        &format!("table {name} Failed"),
        Duration::from_secs(30),
        || async {
            let t = get(tables, name).await;
            if t["status"]["phase"] == "Failed" {
                Ok(t)
            } else {
                Err(format!("{}", t["status"]))
            }
        },
    )
    .await;
    t["status"]["conditions"][0].clone()
}

/// A TCP proxy to `target` on `listener`, forwarding every connection until the test ends.
fn tcp_proxy(listener: tokio::net::TcpListener, target: String) {
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
}

#[tokio::test]
async fn operator_resumes_a_job_when_its_brokers_come_back() {
    let Some(env) = setup("operator broker outage").await else {
        return;
    };
    let topic = unique_name("op-outage");
    env.tb.create_topic(&topic, 1).await.expect("topic");
    let brokers = env.tb.var("KAFKA_BROKERS").expect("brokers").to_string();
    let _w = fake_worker(&env.client, &env.ns, "worker-a").await;
    create_table(&env, "t").await;
    let tables = api(&env.client, &env.ns, "Table", "tables");
    wait_for("table Ready", Duration::from_secs(60), || async {
        let t = get(&tables, "t").await;
        if t["status"]["phase"] == "Ready" {
            Ok(())
        } else {
            Err(format!("{}", t["status"]))
        }
    })
    .await;
    // The job's broker list is a port nothing listens on yet.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        l.local_addr().expect("addr").port()
    };
    let proxy_addr = format!("127.0.0.1:{port}");
    create_job(&env, "outage", "t", &topic, &proxy_addr, json!({})).await;
    let jobs = api(&env.client, &env.ns, "RoutineLoadJob", "routineloadjobs");
    let job = wait_state(&jobs, "outage", "PAUSED", Duration::from_secs(60)).await;
    assert_eq!(
        job["status"]["conditions"][0]["reason"], "KafkaUnavailable",
        "{}",
        job["status"]
    );

    // The brokers come back (a proxy to the real broker on that port): the job resumes by itself,
    // through NEED_SCHEDULE, with an Event for the pause and the resume.
    let listener = tokio::net::TcpListener::bind(&proxy_addr)
        .await
        .expect("bind proxy");
    tcp_proxy(listener, brokers);
    let started = Instant::now();
    wait_state(&jobs, "outage", "RUNNING", Duration::from_secs(90)).await;
    eprintln!(
        "resumed {:?} after the brokers came back",
        started.elapsed()
    );
    let events = events_for(&env.client, &env.ns, "outage").await;
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "KafkaUnavailable" && m.contains("-> PAUSED")),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|(_, m)| m.contains("PAUSED -> NEED_SCHEDULE")),
        "{events:?}"
    );
}

#[tokio::test]
async fn operator_pauses_on_the_jobs_error_window_not_one_tasks() {
    let Some(env) = setup("operator job-wide error window").await else {
        return;
    };
    let topic = unique_name("op-window");
    env.tb.create_topic(&topic, 3).await.expect("topic");
    let brokers = env.tb.var("KAFKA_BROKERS").expect("brokers").to_string();
    let mut fakes = Vec::new();
    for w in ["worker-a", "worker-b", "worker-c"] {
        fakes.push(fake_worker(&env.client, &env.ns, w).await);
    }
    create_table(&env, "t").await;
    create_job(
        &env,
        "window",
        "t",
        &topic,
        &brokers,
        json!({ "desiredConcurrentNumber": 3, "maxErrorNumber": 5 }),
    )
    .await;
    let jobs = api(&env.client, &env.ns, "RoutineLoadJob", "routineloadjobs");
    wait_state(&jobs, "window", "RUNNING", Duration::from_secs(60)).await;
    let tasks = wait_for("three tasks", Duration::from_secs(30), || async {
        let t = tasks_of(&env.client, &env.ns, "window").await;
        if t.len() == 3 {
            Ok(t)
        } else {
            Err(task_summary(&t))
        }
    })
    .await;
    // Each task: 3 error rows in 100, within maxErrorNumber 5 for any one task; the job has 9.
    for (i, t) in tasks.iter().enumerate() {
        let name = t["metadata"]["name"].as_str().expect("name").to_string();
        let epoch = t["spec"]["epoch"].as_i64().expect("epoch");
        report(
            &env.client,
            &env.ns,
            &name,
            json!({ "epoch": epoch, "loadedRows": 97, "totalRows": 100, "errorRows": 3,
                    "committedBatches": 1, "committedOffsets": { i.to_string(): 100 } }),
        )
        .await;
    }
    let job = wait_state(&jobs, "window", "PAUSED", Duration::from_secs(30)).await;
    let s = &job["status"];
    assert_eq!(s["conditions"][0]["reason"], "ErrorWindowExceeded", "{s}");
    let reason = s["reasonOfStateChanged"].as_str().unwrap_or_default();
    assert!(
        reason.contains("error rows in") && reason.contains("maxErrorNumber 5"),
        "{reason}"
    );
    assert!(s["statistic"]["errorRows"].as_i64() >= Some(6), "{s}");
    wait_for("tasks removed", Duration::from_secs(15), || async {
        let t = tasks_of(&env.client, &env.ns, "window").await;
        if t.is_empty() {
            Ok(())
        } else {
            Err(task_summary(&t))
        }
    })
    .await;
    // The counters of the removed tasks stay in the job status (keyed by task UID until the
    // tasks are gone, then summed).
    let job = get(&jobs, "window").await;
    let st = &job["status"];
    let retired = st["retiredCounters"]["errorRows"].as_i64().unwrap_or(0)
        + st["retiredTasks"]
            .as_object()
            .map(|m| m.values().filter_map(|c| c["errorRows"].as_i64()).sum())
            .unwrap_or(0);
    assert_eq!(Some(retired), st["statistic"]["errorRows"].as_i64(), "{st}");
    assert!(retired >= 6, "{st}");
    drop(fakes);
}

#[tokio::test]
async fn operator_frozen_leader_writes_nothing_after_a_takeover() {
    let Some(tb) = testbed_or_skip("operator frozen leader") else {
        return;
    };
    tb.apply_crds().expect("apply CRDs");
    let client = tb.client().await.expect("admin client");
    let ns = unique_name("e2e-op-frozen");
    tb.ensure_namespace(&client, &ns).await.expect("namespace");
    let lease = [("ROUTINE_LOAD_LEASE_DURATION_SECONDS", "6")];
    let mut ops: BTreeMap<String, LocalProcess> = ["op-a", "op-b"]
        .into_iter()
        .map(|id| (id.to_string(), spawn_operator(&tb, &ns, id, &lease)))
        .collect();
    let first = wait_for("a leader", Duration::from_secs(30), || async {
        leader_of(&client, &ns)
            .await
            .filter(|l| !l.is_empty())
            .ok_or_else(|| "no leader".to_string())
    })
    .await;
    let env = Env {
        tb: tb.clone(),
        client: client.clone(),
        ns: ns.clone(),
        _operator: None,
        metrics_addr: String::new(),
    };
    let topic = unique_name("op-frozen");
    tb.create_topic(&topic, 1).await.expect("topic");
    let brokers = tb.var("KAFKA_BROKERS").expect("brokers").to_string();
    let _w = fake_worker(&client, &ns, "worker-a").await;
    create_table(&env, "frozen").await;
    create_job(&env, "frozen", "frozen", &topic, &brokers, json!({})).await;
    let jobs = api(&client, &ns, "RoutineLoadJob", "routineloadjobs");
    wait_state(&jobs, "frozen", "RUNNING", Duration::from_secs(60)).await;
    assert_eq!(tasks_of(&client, &ns, "frozen").await.len(), 1);

    // Freeze the leader (SIGSTOP) past its lease: the other replica takes over and pauses the
    // job (its task deleted), while the frozen one still believes the job RUNNING with a task.
    let frozen_pid = ops[&first].pid().expect("leader pid");
    ops[&first].signal("STOP").expect("SIGSTOP");
    // The stop takes effect asynchronously (the process may still be running for a moment).
    let t_stop = Instant::now();
    while process_state(frozen_pid) != Some('T') && t_stop.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        process_state(frozen_pid),
        Some('T'),
        "the leader {first} is not stopped"
    );
    let next = wait_for("a new leader", Duration::from_secs(30), || async {
        match leader_of(&client, &ns).await {
            Some(l) if !l.is_empty() && l != first => Ok(l),
            l => Err(format!("{l:?}")),
        }
    })
    .await;
    set_desired(&env, "frozen", "Paused").await;
    wait_state(&jobs, "frozen", "PAUSED", Duration::from_secs(30)).await;
    wait_for("task removed", Duration::from_secs(15), || async {
        let t = tasks_of(&client, &ns, "frozen").await;
        if t.is_empty() {
            Ok(())
        } else {
            Err(task_summary(&t))
        }
    })
    .await;
    let before = get(&jobs, "frozen").await;
    // The fault happened: the leader stayed frozen through the takeover and the pause, and the
    // pause is the new leader's write (its Event names it).
    assert_eq!(
        process_state(frozen_pid),
        Some('T'),
        "the leader {first} woke up before the takeover"
    );
    let reporters = event_reporters(&client, &ns, "frozen").await;
    assert!(
        reporters.contains(&("UserPaused".to_string(), next.clone())),
        "{reporters:?}"
    );

    // Thaw it: its lease is long gone, so it must write nothing (no task recreated, no status
    // written back, no Event) and exit.
    ops[&first].signal("CONT").expect("SIGCONT");
    let thawed = Instant::now();
    while thawed.elapsed() < Duration::from_secs(10) {
        assert!(
            tasks_of(&client, &ns, "frozen").await.is_empty(),
            "a task reappeared after the frozen leader {first} woke up"
        );
        let j = get(&jobs, "frozen").await;
        assert_eq!(j["status"]["state"], "PAUSED", "{}", j["status"]);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let old = ops.get_mut(&first).expect("old leader");
    let status = old
        .wait_exit(Duration::from_secs(20))
        .expect("old leader exits");
    assert!(!status.success(), "{status}");
    let log = old.log();
    assert!(log.contains("lost leadership"), "{log}");
    let after = get(&jobs, "frozen").await;
    assert_eq!(
        before["metadata"]["resourceVersion"], after["metadata"]["resourceVersion"],
        "the job changed after {next} paused it: {}",
        after["status"]
    );
    let reporters_after = event_reporters(&client, &ns, "frozen").await;
    assert_eq!(
        reporters_after.iter().filter(|(_, r)| *r == first).count(),
        reporters.iter().filter(|(_, r)| *r == first).count(),
        "the thawed leader {first} published an Event: {reporters_after:?}"
    );
    assert_eq!(
        leader_of(&client, &ns).await.as_deref(),
        Some(next.as_str())
    );
}

/// The state letter of a process (`/proc/<pid>/stat`): `T` while stopped by a signal.
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ...: comm may hold spaces, so read after the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// (reason, reporting instance) of the Events about object `name`.
async fn event_reporters(client: &Client, ns: &str, name: &str) -> Vec<(String, String)> {
    events_about(client, ns, name)
        .await
        .into_iter()
        .map(|e| {
            (
                e.reason.unwrap_or_default(),
                e.reporting_instance.unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn operator_keeps_tasks_when_every_worker_lease_expires_at_once() {
    let Some(env) = setup("operator mass lease expiry").await else {
        return;
    };
    let topic = unique_name("op-mass");
    env.tb.create_topic(&topic, 2).await.expect("topic");
    let brokers = env.tb.var("KAFKA_BROKERS").expect("brokers").to_string();
    let a = fake_worker(&env.client, &env.ns, "worker-a").await;
    let b = fake_worker(&env.client, &env.ns, "worker-b").await;
    create_table(&env, "t").await;
    create_job(&env, "mass", "t", &topic, &brokers, json!({})).await;
    let jobs = api(&env.client, &env.ns, "RoutineLoadJob", "routineloadjobs");
    wait_state(&jobs, "mass", "RUNNING", Duration::from_secs(60)).await;
    let identities = |tasks: &[Value]| {
        let mut v: Vec<String> = tasks
            .iter()
            .map(|t| {
                format!(
                    "{} {} {} {}",
                    t["metadata"]["name"],
                    t["metadata"]["uid"],
                    t["spec"]["worker"],
                    t["spec"]["epoch"]
                )
            })
            .collect();
        v.sort();
        v
    };
    let before = wait_for("two tasks", Duration::from_secs(30), || async {
        let t = tasks_of(&env.client, &env.ns, "mass").await;
        if t.len() == 2 {
            Ok(identities(&t))
        } else {
            Err(task_summary(&t))
        }
    })
    .await;

    // Both Leases (6 s) stop changing at once, as when the control plane stalls: past the
    // lease, within the grace period (60 s), the job keeps its tasks as they are.
    a.alive.store(false, Ordering::SeqCst);
    b.alive.store(false, Ordering::SeqCst);
    let stopped = Instant::now();
    let job = wait_for(
        "every worker Lease seen expired",
        Duration::from_secs(40),
        || async {
            let j = get(&jobs, "mass").await;
            let failing = j["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "WorkersAvailable" && c["status"] == "False");
            if failing {
                Ok(j)
            } else {
                Err(format!("{}", j["status"]))
            }
        },
    )
    .await;
    eprintln!(
        "expiry seen after {:?}: {}",
        stopped.elapsed(),
        job["status"]["conditions"]
    );
    while stopped.elapsed() < Duration::from_secs(30) {
        let j = get(&jobs, "mass").await;
        assert_eq!(j["status"]["state"], "RUNNING", "{}", j["status"]);
        assert_eq!(j["status"]["currentTaskNum"], 2, "{}", j["status"]);
        let t = tasks_of(&env.client, &env.ns, "mass").await;
        assert_eq!(
            identities(&t),
            before,
            "tasks changed while every Lease was expired"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // The workers renew again: the condition clears, the tasks never moved.
    let _a = fake_worker(&env.client, &env.ns, "worker-a").await;
    let _b = fake_worker(&env.client, &env.ns, "worker-b").await;
    wait_for("workers live again", Duration::from_secs(30), || async {
        let j = get(&jobs, "mass").await;
        let ok = j["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "WorkersAvailable" && c["status"] == "True");
        if ok {
            Ok(())
        } else {
            Err(format!("{}", j["status"]))
        }
    })
    .await;
    let t = tasks_of(&env.client, &env.ns, "mass").await;
    assert_eq!(identities(&t), before);
}
