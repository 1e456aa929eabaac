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
use routine_load_e2e::process::workspace_binary;
use routine_load_e2e::{LocalProcess, Testbed, testbed_or_skip, unique_name};
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
    _operator: LocalProcess,
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
        _operator: operator,
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
    tokio::spawn(async move {
        while flag.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if !flag.load(Ordering::SeqCst) {
                break;
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

async fn events_for(client: &Client, ns: &str, name: &str) -> Vec<(String, String)> {
    // kube's Recorder writes events.k8s.io/v1; core/v1 sees them too, with `reason` and `message`.
    let events: Api<CoreEvent> = Api::namespaced(client.clone(), ns);
    events
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
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
    let w_a = fake_worker(&env.client, &env.ns, "worker-a").await;
    let _w_b = fake_worker(&env.client, &env.ns, "worker-b").await;
    let _w_c = fake_worker(&env.client, &env.ns, "worker-c").await;

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
    let on_a = tasks
        .iter()
        .find(|t| t["spec"]["worker"] == "worker-a")
        .cloned();
    w_a.alive.store(false, Ordering::SeqCst);
    let started = Instant::now();
    if let Some(on_a) = on_a {
        let name = on_a["metadata"]["name"].as_str().expect("name").to_string();
        let epoch = on_a["spec"]["epoch"].as_i64().expect("epoch");
        let moved = wait_for(
            "task moved off worker-a",
            Duration::from_secs(30),
            || async {
                let t = tasks_of(&env.client, &env.ns, "load-events").await;
                match t.iter().find(|t| t["metadata"]["name"] == name.as_str()) {
                    Some(t) if t["spec"]["worker"] != "worker-a" => Ok(t.clone()),
                    _ => Err(task_summary(&t)),
                }
            },
        )
        .await;
        assert_eq!(moved["spec"]["epoch"].as_i64(), Some(epoch + 1), "{moved}");
        assert!(started.elapsed() < Duration::from_secs(30));
    }
    let tasks = tasks_of(&env.client, &env.ns, "load-events").await;
    assert!(
        tasks.iter().all(|t| t["spec"]["worker"] != "worker-a"),
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
