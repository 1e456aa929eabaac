//! A batch a task's loop commits after the operator deleted the task (the job was paused, stopped
//! or edited while the batch was in flight) is counted: the task's finalizer keeps it until its
//! worker released it, and the operator records the task's last counters in the job first.
//! On the testbed with the real operator and worker binaries, MinIO behind a proxy that holds the
//! commit in flight, and the table read back with the independent reader.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use routine_load_e2e::installation::{Installation, JOB, wait_for};
use routine_load_e2e::kafka::Listener;
use routine_load_e2e::proxy::Proxy;
use routine_load_e2e::{Testbed, testbed_or_skip, unique_name};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(120);

async fn produce(tb: &Testbed, topic: &str, ids: std::ops::Range<i64>) {
    let lines: Vec<String> = ids.map(|i| format!("{i},v{i}")).collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    tb.produce_lines(Listener::Plaintext, topic, 0, &refs)
        .await
        .expect("produce");
}

async fn job(inst: &Installation) -> Value {
    inst.get(JOB, "j").await.expect("get job")
}

async fn wait_job(inst: &Installation, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    wait_for(&format!("job j {what}"), WAIT, || async {
        let j = job(inst).await;
        if ok(&j) {
            Ok(j)
        } else {
            Err(format!("status: {}", j["status"]))
        }
    })
    .await
}

fn loaded(j: &Value) -> i64 {
    j["status"]["statistic"]["loadedRows"]
        .as_i64()
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_committed_after_its_task_was_deleted_is_counted() {
    let Some(tb) = testbed_or_skip("late batches of deleted tasks") else {
        return;
    };
    let inst = Installation::start(tb, "e2e-release", true)
        .await
        .expect("installation");
    let s3 = inst.tb.var("S3_ENDPOINT").unwrap();
    let proxy = Proxy::start(s3.trim_start_matches("http://"))
        .await
        .expect("proxy");
    // Storage through the proxy, with timeouts longer than the stall below.
    let location = inst
        .s3_table_through("t", &proxy, &[("timeout", "60s")])
        .await
        .expect("S3 table");
    let topic = unique_name("release");
    inst.tb.create_topic(&topic, 1).await.expect("topic");
    inst.create(
        JOB,
        json!({
            "metadata": {"name": "j"},
            "spec": {
                "table": "t",
                "columnSeparator": ",",
                "desiredConcurrentNumber": 1,
                "kafka": {
                    "brokerList": inst.tb.var("KAFKA_BROKERS").unwrap(),
                    "topic": topic,
                    "partitions": [0],
                    "offsets": ["OFFSET_BEGINNING"]
                }
            }
        }),
    )
    .await
    .expect("create job");
    let mut worker = inst.spawn_worker(&unique_name("w"), &[]).expect("worker");
    produce(&inst.tb, &topic, 0..100).await;
    wait_job(&inst, "loadedRows 100", |j| loaded(j) == 100).await;

    // A batch in flight: its commit hangs on the stalled storage.
    proxy.stall();
    produce(&inst.tb, &topic, 100..150).await;
    wait_for("a commit held in flight", WAIT, || async {
        if proxy.held() > 0 {
            Ok(())
        } else {
            Err("nothing sent to storage yet".to_string())
        }
    })
    .await;

    // The operator's storage probe goes through the same proxy: give the worker's batch (1 s
    // interval) time to reach its commit too, so the pause below finds it committing, not
    // collecting (a loop stopped while collecting abandons its batch: nothing would land late).
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Pause the job while it hangs: the operator deletes the task.
    inst.merge_patch(JOB, "j", json!({"spec": {"state": "Paused"}}))
        .await
        .expect("pause");
    let deleted_at = wait_for("the task deleted", WAIT, || async {
        let tasks = inst.tasks_of("j").await.map_err(|e| e.to_string())?;
        match tasks.as_slice() {
            [t] if t["metadata"]["deletionTimestamp"].is_string() => Ok(t.clone()),
            [] => Err("the task is gone while its batch is still in flight".to_string()),
            _ => Err(format!("tasks: {tasks:?}")),
        }
    })
    .await;
    let deleted_ms = deleted_at["metadata"]["deletionTimestamp"]
        .as_str()
        .and_then(|s| s.parse::<Timestamp>().ok())
        .expect("deletionTimestamp")
        .as_millisecond();
    let task_uid = deleted_at["metadata"]["uid"].as_str().unwrap().to_string();
    wait_job(&inst, "PAUSED", |j| j["status"]["state"] == "PAUSED").await;
    assert!(proxy.held() > 0);

    // The commit goes through after the delete; the task goes once its worker released it.
    proxy.resume();
    wait_for("the deleted task gone", WAIT, || async {
        let tasks = inst.tasks_of("j").await.map_err(|e| e.to_string())?;
        if tasks.is_empty() {
            Ok(())
        } else {
            Err(format!("tasks: {tasks:?}"))
        }
    })
    .await;
    let snap = inst.tb.read_delta(&location, None).expect("read table");
    // The fault happened: a batch of the deleted task landed after its deletion.
    let late: Vec<i64> = snap
        .commits
        .iter()
        .filter(|c| {
            c.routine_load
                .as_ref()
                .is_some_and(|r| r["taskUid"] == task_uid.as_str())
                && c.timestamp.is_some_and(|t| t > deleted_ms)
        })
        .map(|c| c.version)
        .collect();
    assert!(
        !late.is_empty(),
        "no batch landed after the task's deletion: {:?}; worker log:\n{}",
        snap.commits,
        worker.log()
    );
    // The batch in flight holds some of rows 100..150 (how many the loop had collected).
    let rows = snap.rows.len() as i64;
    assert!((101..=150).contains(&rows), "{rows} rows");
    let j = wait_job(&inst, "statistic equal to the table", |j| loaded(j) == rows).await;
    assert_eq!(
        j["status"]["statistic"]["totalRows"], rows,
        "{}",
        j["status"]
    );

    // Resumed, the job's new task starts from the table and counts on from there.
    inst.merge_patch(JOB, "j", json!({"spec": {"state": "Running"}}))
        .await
        .expect("resume");
    produce(&inst.tb, &topic, 150..160).await;
    let j = wait_job(&inst, "loadedRows 160", |j| loaded(j) == 160).await;
    assert_eq!(j["status"]["state"], "RUNNING");
    let snap = inst.tb.read_delta(&location, None).expect("read table");
    let mut ids: Vec<i64> = snap
        .column("id")
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..160).collect::<Vec<_>>(), "every row once");
    assert_eq!(j["status"]["statistic"]["abortedTaskNum"], 0);
    worker
        .stop(Duration::from_secs(30))
        .expect("stop the worker");
}
