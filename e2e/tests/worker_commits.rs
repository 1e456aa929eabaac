//! What a worker counts and reports around commits, on the testbed with the real worker binary
//! (tasks created directly, no operator), real Kafka, MinIO behind a cuttable proxy, and tables
//! read back with the independent reader:
//! - a storage outage during commits leaves the counters equal to the rows in the table and the
//!   error log without duplicate lines;
//! - storage that stays away past the retry budget makes the task ask for a pause, with the error;
//! - a task's status is fenced by the task object's UID and epoch: a loop never writes into a
//!   re-created task or one that moved on.

use std::collections::BTreeSet;
use std::time::Duration;

use kube::api::Api;
use routine_load_api::{RoutineLoadTask, RoutineLoadTaskStatus};
use routine_load_e2e::installation::{Installation, JOB, TASK, wait_for};
use routine_load_e2e::kafka::Listener;
use routine_load_e2e::proxy::Proxy;
use routine_load_e2e::{Testbed, testbed_or_skip, unique_name};
use routine_load_worker::task_runner::{NotOurs, StatusReporter};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(120);

/// Row `id`: every tenth is bad (its id is not a number: an error row).
fn line(id: i64) -> String {
    if id % 10 == 0 {
        format!("x{id},bad")
    } else {
        format!("{id},v{id}")
    }
}

fn good(id: i64) -> bool {
    id % 10 != 0
}

async fn produce(tb: &Testbed, topic: &str, ids: std::ops::Range<i64>) {
    let lines: Vec<String> = ids.map(line).collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    tb.produce_lines(Listener::Plaintext, topic, 0, &refs)
        .await
        .expect("produce");
}

struct Job {
    location: String,
    task: String,
    worker: String,
}

/// An S3 table (through `proxy`), a job from the beginning of partition 0, and its one task on
/// a worker named in the result.
async fn s3_job(inst: &Installation, topic: &str, proxy: &Proxy) -> Job {
    // Storage retries short enough that an outage surfaces as a commit error within seconds.
    let location = inst
        .s3_table_through(
            "t",
            proxy,
            &[
                ("max_retries", "1"),
                ("retry_timeout", "2s"),
                ("timeout", "5s"),
            ],
        )
        .await
        .expect("S3 table");
    let job = inst
        .create(
            JOB,
            json!({
                "metadata": {"name": "j"},
                "spec": {
                    "table": "t",
                    "columnSeparator": ",",
                    "maxErrorNumber": 1000,
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
    let worker = unique_name("w");
    inst.create(
        TASK,
        json!({
            "metadata": {"name": "j-0", "labels": {"routineload.io/worker": worker, "routineload.io/job": "j"}},
            "spec": {"job": "j", "jobUid": job["metadata"]["uid"], "partitions": [0],
                     "worker": worker, "epoch": 1}
        }),
    )
    .await
    .expect("create task");
    Job {
        location,
        task: "j-0".into(),
        worker,
    }
}

async fn task_status(inst: &Installation, task: &str) -> Value {
    inst.get(TASK, task).await.expect("task")["status"].clone()
}

async fn wait_status(
    inst: &Installation,
    task: &str,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    wait_for(what, WAIT, || async {
        let st = task_status(inst, task).await;
        if ok(&st) {
            Ok(st)
        } else {
            Err(format!("task status: {st}"))
        }
    })
    .await
}

fn committed(st: &Value) -> Option<i64> {
    st["committedOffsets"]["0"].as_i64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_outage_during_commits_counts_every_row_once() {
    let Some(tb) = testbed_or_skip("storage outage during commits") else {
        return;
    };
    let inst = Installation::start(tb, "e2e-commits", false)
        .await
        .expect("installation");
    let s3 = inst
        .tb
        .var("S3_ENDPOINT")
        .unwrap()
        .trim_start_matches("http://")
        .to_string();
    let proxy = Proxy::start(&s3).await.expect("proxy");
    let topic = unique_name("commits");
    inst.tb.create_topic(&topic, 1).await.expect("topic");
    let job = s3_job(&inst, &topic, &proxy).await;
    let w = inst
        .spawn_worker(&job.worker, &[("ROUTINE_LOAD_MAX_BATCH_ROWS", "20")])
        .expect("worker");
    produce(&inst.tb, &topic, 0..100).await;
    wait_status(&inst, &job.task, "offset 100 committed", |s| {
        committed(s) == Some(100)
    })
    .await;

    // MinIO goes away for the worker while rows keep coming.
    proxy.cut().await;
    produce(&inst.tb, &topic, 100..200).await;
    let failed = wait_status(&inst, &job.task, "a commit failing on storage", |s| {
        s["message"]
            .as_str()
            .is_some_and(|m| m.contains("batch not committed"))
    })
    .await;
    assert!(proxy.refused() > 0, "the outage was felt: {failed}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.restore();
    let st = wait_status(&inst, &job.task, "offset 200 committed", |s| {
        committed(s) == Some(200) && s["loadedRows"].as_i64() == Some(180)
    })
    .await;

    let snap = inst.tb.read_delta(&job.location, None).expect("read table");
    let mut ids: Vec<i64> = snap.column("id").iter().filter_map(Value::as_i64).collect();
    ids.sort_unstable();
    let want: Vec<i64> = (0..200).filter(|i| good(*i)).collect();
    assert_eq!(ids, want, "every good row once; worker log:\n{}", w.log());
    assert_eq!(st["totalRows"], 200, "{st}");
    assert_eq!(st["errorRows"], 20, "{st}");
    assert!(st["abortedBatches"].as_i64() >= Some(1), "{st}");
    // The error log has each bad row once, though batches were read again.
    let url = st["errorLogUrl"]
        .as_str()
        .expect("error log url")
        .to_string();
    let out = std::process::Command::new("curl")
        .args(["-sf", &url])
        .output()
        .expect("curl");
    let body = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = body.lines().filter(|l| !l.trim().is_empty()).collect();
    let distinct: BTreeSet<&str> = lines.iter().copied().collect();
    assert_eq!(lines.len(), 20, "one line per error row:\n{body}");
    assert_eq!(distinct.len(), 20, "no duplicate lines:\n{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_gone_past_the_retry_budget_asks_for_a_pause() {
    let Some(tb) = testbed_or_skip("storage gone for good") else {
        return;
    };
    let inst = Installation::start(tb, "e2e-commits-gone", false)
        .await
        .expect("installation");
    let s3 = inst
        .tb
        .var("S3_ENDPOINT")
        .unwrap()
        .trim_start_matches("http://")
        .to_string();
    let proxy = Proxy::start(&s3).await.expect("proxy");
    let topic = unique_name("commits-gone");
    inst.tb.create_topic(&topic, 1).await.expect("topic");
    let job = s3_job(&inst, &topic, &proxy).await;
    let _w = inst
        .spawn_worker(&job.worker, &[("ROUTINE_LOAD_RETRY_LIMIT", "3")])
        .expect("worker");
    produce(&inst.tb, &topic, 1..11).await;
    wait_status(&inst, &job.task, "offset 10 committed", |s| {
        committed(s) == Some(10)
    })
    .await;
    proxy.cut().await;
    produce(&inst.tb, &topic, 11..20).await;
    let st = wait_status(&inst, &job.task, "a pause request", |s| {
        s["pauseRequest"].is_object()
    })
    .await;
    assert!(proxy.refused() > 0, "the outage was felt");
    assert_eq!(st["pauseRequest"]["reason"], "RepeatedFailure", "{st}");
    let m = st["pauseRequest"]["message"].as_str().unwrap_or_default();
    assert!(
        m.contains("failed 3 times in a row, the job is paused; last error:"),
        "{m}"
    );
    assert_eq!(committed(&st), Some(10), "nothing past the outage: {st}");
    assert_eq!(st["loadedRows"], 9, "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_status_is_fenced_by_uid_and_epoch() {
    let Some(tb) = testbed_or_skip("task status fence") else {
        return;
    };
    let inst = Installation::start(tb, "e2e-fence", false)
        .await
        .expect("installation");
    let body = json!({
        "metadata": {"name": "j-0"},
        "spec": {"job": "j", "jobUid": "u", "partitions": [0], "worker": "w", "epoch": 1}
    });
    let first = inst.create(TASK, body.clone()).await.expect("task");
    let uid = first["metadata"]["uid"].as_str().unwrap().to_string();
    let api: Api<RoutineLoadTask> = Api::namespaced(inst.client.clone(), &inst.ns);
    let reporter = StatusReporter::new(api.clone(), "j-0", &uid, 1);
    let mut status = RoutineLoadTaskStatus {
        epoch: 1,
        ..Default::default()
    };
    status.counters.loaded_rows = 42;
    assert_eq!(reporter.patch(&status).await, Ok(()));
    assert_eq!(task_status(&inst, "j-0").await["loadedRows"], 42);

    // The operator moved the task on (a new epoch): the old loop's report is refused.
    inst.merge_patch(TASK, "j-0", json!({"spec": {"epoch": 2}}))
        .await
        .expect("bump the epoch");
    status.counters.loaded_rows = 50;
    assert_eq!(reporter.patch(&status).await, Err(NotOurs));
    assert_eq!(task_status(&inst, "j-0").await["loadedRows"], 42);

    // The task is deleted and created again under the same name (a pause and resume): the old
    // loop's reports never reach the new object, whose counters start from nothing.
    inst.delete(TASK, "j-0").await.expect("delete");
    wait_for("the task gone", WAIT, || async {
        match api.get_opt("j-0").await {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    inst.create(TASK, body).await.expect("task again");
    let old_loop = StatusReporter::new(api.clone(), "j-0", &uid, 1);
    assert_eq!(old_loop.patch(&status).await, Err(NotOurs));
    assert_eq!(
        task_status(&inst, "j-0").await,
        Value::Null,
        "no status inherited"
    );
}
