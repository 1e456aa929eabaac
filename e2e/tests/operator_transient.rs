//! A transient fault is not fatal: the operator and a real worker as processes, the operator
//! reaching Kafka through a proxy the test cuts ([`RoutedBroker`]) while the worker reaches it
//! directly. A cut longer than a reconcile but shorter than the grace period leaves the job
//! RUNNING, its tasks (UIDs, epochs, workers) untouched, and loading goes on, even when the
//! operator leader dies during the cut (the new leader continues the failure's count).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use kube::core::GroupVersionKind;
use routine_load_e2e::process::workspace_binary;
use routine_load_e2e::routed_broker::RoutedBroker;
use routine_load_e2e::{LocalProcess, Testbed, testbed_or_skip, unique_name};
use serde_json::{Value, json};

/// Grace period the operator runs with; the cut stays well inside it.
const GRACE_S: u64 = 90;
/// How long the operator's route to Kafka stays cut: several 5 s reconciles.
const CUT: Duration = Duration::from_secs(25);

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

/// The job's status. The testbed's API server is shared with tests that disturb it: a failed
/// read is retried for a while.
async fn status(jobs: &Api<DynamicObject>) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match jobs.get("cut").await {
            Ok(j) => return serde_json::to_value(j).expect("json")["status"].clone(),
            Err(e) if Instant::now() < deadline => {
                eprintln!("reading the job failed, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("reading the job: {e}"),
        }
    }
}

fn condition<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// (name, uid, epoch, worker) of every task of the job, sorted.
async fn task_identities(client: &Client, ns: &str) -> Vec<(String, String, i64, String)> {
    let tasks = api(client, ns, "RoutineLoadTask", "routineloadtasks");
    let lp = ListParams::default().labels("routineload.io/job=cut");
    let deadline = Instant::now() + Duration::from_secs(30);
    let list = loop {
        match tasks.list(&lp).await {
            Ok(l) => break l,
            Err(e) if Instant::now() < deadline => {
                eprintln!("listing tasks failed, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("listing tasks: {e}"),
        }
    };
    let mut out: Vec<_> = list
        .items
        .into_iter()
        .map(|t| {
            (
                t.metadata.name.clone().unwrap_or_default(),
                t.metadata.uid.clone().unwrap_or_default(),
                t.data["spec"]["epoch"].as_i64().unwrap_or(-1),
                t.data["spec"]["worker"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    out.sort();
    out
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
        .filter(|h| !h.is_empty())
}

async fn produce(broker: &RoutedBroker, topic: &str, from: i64, to: i64) -> i64 {
    let mut n = 0;
    for p in 0..2 {
        let lines: Vec<String> = (from..to)
            .map(|i| format!("{},row-{p}-{i}", i64::from(p) * 100_000 + i))
            .collect();
        broker
            .produce_lines(topic, p, &lines)
            .await
            .expect("produce");
        n += lines.len() as i64;
    }
    n
}

async fn wait_status(
    jobs: &Api<DynamicObject>,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let s = status(jobs).await;
        if ok(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; status: {s}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_rides_out_a_cut_to_kafka_without_touching_tasks() {
    let Some(tb) = testbed_or_skip("operator rides out a cut to Kafka") else {
        return;
    };
    tb.apply_crds().expect("apply CRDs");
    let client = tb.client().await.expect("admin client");
    let ns = unique_name("e2e-cut");
    tb.ensure_namespace(&client, &ns).await.expect("namespace");
    let broker = RoutedBroker::start(&tb).await.expect("routed broker");
    let topic = unique_name("cut");
    broker.create_topic(&topic, 2).await.expect("topic");
    let mut produced = produce(&broker, &topic, 0, 20).await;

    // The operator dials the job's brokers through the proxy; the worker dials them directly.
    // Two replicas: the leader is killed during the cut, and the new one must continue the
    // failure's count from the job status.
    let operator_env = [
        (
            "ROUTINE_LOAD_OPERATOR_KAFKA_BROKERS",
            format!("{}={}", broker.brokers(), broker.routed_brokers()),
        ),
        ("ROUTINE_LOAD_TRANSIENT_GRACE_SECONDS", GRACE_S.to_string()),
        ("ROUTINE_LOAD_LEASE_DURATION_SECONDS", "6".to_string()),
    ];
    let mut operators: BTreeMap<String, LocalProcess> = ["op-1", "op-2"]
        .into_iter()
        .map(|id| {
            let p = spawn(&tb, &ns, "routine-load-operator", id, &operator_env);
            (id.to_string(), p)
        })
        .collect();
    let errlog = std::env::temp_dir().join(unique_name("cut-errlog"));
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

    let dir = std::env::temp_dir().join(unique_name("cut-table"));
    let tables = api(&client, &ns, "Table", "tables");
    let table: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "routineload.io/v1alpha1", "kind": "Table", "metadata": { "name": "cut" },
        "spec": { "columns": [ { "name": "k", "type": "INT" }, { "name": "v", "type": "STRING" } ],
                  "location": format!("file://{}", dir.display()) },
    }))
    .expect("table");
    tables
        .create(&PostParams::default(), &table)
        .await
        .expect("create table");
    let jobs = api(&client, &ns, "RoutineLoadJob", "routineloadjobs");
    let job: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "routineload.io/v1alpha1", "kind": "RoutineLoadJob", "metadata": { "name": "cut" },
        "spec": {
            "table": "cut", "columnSeparator": ",", "columns": ["k", "v"],
            "desiredConcurrentNumber": 2,
            "kafka": { "brokerList": broker.brokers(), "topic": topic,
                       "defaultOffset": "OFFSET_BEGINNING" },
        },
    }))
    .expect("job");
    jobs.create(&PostParams::default(), &job)
        .await
        .expect("create job");

    let loaded = |rows: i64| {
        move |s: &Value| s["state"] == "RUNNING" && s["statistic"]["loadedRows"] == rows
    };
    wait_status(
        &jobs,
        "the first rows loaded",
        Duration::from_secs(120),
        loaded(produced),
    )
    .await;
    let before = task_identities(&client, &ns).await;
    assert!(!before.is_empty(), "no tasks");
    eprintln!("tasks before the cut: {before:?}");
    let s = status(&jobs).await;
    assert_eq!(
        condition(&s, "KafkaMetadataAvailable").map(|c| c["status"].clone()),
        Some(json!("True")),
        "{s}"
    );

    // Cut the operator's route. First prove the fault happened: the operator logged the failed
    // metadata read and recorded it in the job's condition, and the proxy refused it.
    broker.proxy.cut().await;
    let cut_at = Instant::now();
    let s = wait_status(
        &jobs,
        "the metadata failure recorded",
        Duration::from_secs(30),
        |s| condition(s, "KafkaMetadataAvailable").is_some_and(|c| c["status"] == "False"),
    )
    .await;
    let c = condition(&s, "KafkaMetadataAvailable")
        .expect("condition")
        .clone();
    eprintln!("after {:?} of cut: {c}", cut_at.elapsed());
    let msg = c["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("cannot read metadata") && msg.contains("tasks keep running"),
        "{msg}"
    );
    let first = leader_of(&client, &ns).await.expect("a leader");
    let log = operators[&first].log();
    assert!(
        log.contains("reading Kafka metadata failed"),
        "the leader's log lacks the failure: {log}"
    );
    assert!(broker.proxy.refused() > 0, "the proxy refused nothing");

    let since = c["lastTransitionTime"].clone();

    // The leader dies during the cut: the other replica takes over and counts the failure from
    // the time recorded in the job status, not from when it started looking.
    operators
        .get_mut(&first)
        .expect("leader")
        .kill()
        .expect("kill the leader");
    let next = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match leader_of(&client, &ns).await {
                Some(l) if l != first => break l,
                l => assert!(Instant::now() < deadline, "no new leader: {l:?}"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    eprintln!(
        "{next} took over from {first} after {:?} of cut",
        cut_at.elapsed()
    );

    // While cut: more rows arrive and load; the job stays RUNNING with the same tasks.
    produced += produce(&broker, &topic, 20, 40).await;
    while cut_at.elapsed() < CUT {
        let s = status(&jobs).await;
        assert_eq!(s["state"], "RUNNING", "{s}");
        assert_eq!(
            task_identities(&client, &ns).await,
            before,
            "tasks changed during the cut"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let s = wait_status(
        &jobs,
        "rows produced during the cut loaded",
        Duration::from_secs(30),
        loaded(produced),
    )
    .await;
    assert!(
        cut_at.elapsed() < Duration::from_secs(GRACE_S),
        "the test outlasted the grace period"
    );
    let c = condition(&s, "KafkaMetadataAvailable").expect("condition");
    assert_eq!(c["status"], "False", "still cut: {s}");
    assert_eq!(
        c["lastTransitionTime"], since,
        "the new leader restarted the failure's count: {c}"
    );
    assert!(
        operators[&next]
            .log()
            .contains("reading Kafka metadata failed"),
        "the new leader never saw the failure"
    );
    assert_eq!(task_identities(&client, &ns).await, before);
    eprintln!("cut held {:?}: {s}", cut_at.elapsed());

    // Restored: the condition clears; still the same tasks.
    broker.proxy.restore();
    wait_status(&jobs, "metadata read again", Duration::from_secs(60), |s| {
        condition(s, "KafkaMetadataAvailable").is_some_and(|c| c["status"] == "True")
    })
    .await;
    assert_eq!(task_identities(&client, &ns).await, before);
    let s = status(&jobs).await;
    assert_eq!(s["state"], "RUNNING", "{s}");
    let op = operators.get_mut(&next).expect("new leader");
    assert!(op.is_running(), "operator exited: {}", op.log());
}
