//! Where a job starts and resumes, proven on the testbed with the real operator, real workers,
//! real Kafka and Delta tables read back with the independent reader:
//! - a fresh `OFFSET_END` job (StarRocks' default) pins its start in the table before it loads,
//!   so a worker killed before the first commit, a job edit and a task move lose nothing;
//! - an offset that retention (here Kafka's DeleteRecords) removed pauses the job with the range,
//!   loads nothing past the hole, and an edit of `kafka.offsets` resumes it from the log start;
//! - a start offset given as a time loads exactly the messages at or after it.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use routine_load_e2e::installation::{Installation, JOB, TABLE, TASK, wait_for};
use routine_load_e2e::kafka::Listener;
use routine_load_e2e::process::workspace_binary;
use routine_load_e2e::{Testbed, testbed_or_skip, unique_name};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(120);

/// A table `(id BIGINT, v STRING)` in a fresh directory; returns its location.
async fn create_table(inst: &Installation, name: &str) -> String {
    let dir = std::env::temp_dir().join(unique_name("offsets-table"));
    let location = format!("file://{}", dir.display());
    inst.create(
        TABLE,
        json!({
            "metadata": {"name": name},
            "spec": {
                "location": location,
                "columns": [
                    {"name": "id", "type": "BIGINT", "nullable": false},
                    {"name": "v", "type": "STRING"}
                ]
            }
        }),
    )
    .await
    .expect("create Table");
    location
}

/// A one-task CSV job on `topic` into `table`, with `extra` spec fields on top.
async fn create_job(inst: &Installation, name: &str, table: &str, topic: &str, extra: Value) {
    let mut spec = json!({
        "table": table,
        "columnSeparator": ",",
        "desiredConcurrentNumber": 1,
        "kafka": {"brokerList": inst.tb.var("KAFKA_BROKERS").unwrap(), "topic": topic}
    });
    merge(&mut spec, extra);
    inst.create(JOB, json!({"metadata": {"name": name}, "spec": spec}))
        .await
        .expect("create RoutineLoadJob");
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

/// Produces rows `id,v<id>` for `ids` to partition 0, in order.
async fn produce(tb: &Testbed, topic: &str, ids: std::ops::Range<i64>) {
    let lines: Vec<String> = ids.clone().map(|i| format!("{i},v{i}")).collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let offsets = tb
        .produce_lines(Listener::Plaintext, topic, 0, &refs)
        .await
        .expect("produce");
    assert_eq!(offsets.len(), lines.len());
}

/// The ids in the table (sorted, duplicates kept) and its transaction versions.
fn table_ids(tb: &Testbed, location: &str) -> (Vec<i64>, BTreeMap<String, i64>) {
    let snap = tb.read_delta(location, None).expect("read table");
    let mut ids: Vec<i64> = snap
        .column("id")
        .iter()
        .map(|v| v.as_i64().expect("id is a number"))
        .collect();
    ids.sort_unstable();
    (ids, snap.txns.clone())
}

fn offset_app(uid: &str) -> String {
    format!("routine-load-{uid}-0")
}

async fn job(inst: &Installation, name: &str) -> Value {
    inst.get(JOB, name).await.expect("get job")
}

/// The job's one task, once the operator assigned it to `worker`.
async fn task_on(inst: &Installation, job: &str, worker: &str) -> Value {
    wait_for(&format!("a task of {job} on {worker}"), WAIT, || async {
        let tasks = inst.tasks_of(job).await.map_err(|e| e.to_string())?;
        tasks
            .into_iter()
            .find(|t| t["spec"]["worker"] == worker)
            .ok_or_else(|| "no task on that worker yet".to_string())
    })
    .await
}

/// Waits until the job's status satisfies `ok`.
async fn wait_job(
    inst: &Installation,
    name: &str,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    wait_for(&format!("job {name} {what}"), WAIT, || async {
        let j = job(inst, name).await;
        if ok(&j["status"]) {
            Ok(j)
        } else {
            Err(format!("status: {}", j["status"]))
        }
    })
    .await
}

/// Waits until the job's progress for partition 0 is `offset`.
async fn wait_progress(inst: &Installation, name: &str, offset: i64) -> Value {
    wait_job(inst, name, &format!("progress {offset}"), |s| {
        s["progress"]["0"].as_i64() == Some(offset)
    })
    .await
}

/// Waits until the job's statistic counts `loaded` rows (counters follow commits).
async fn wait_loaded_rows(inst: &Installation, name: &str, loaded: i64) -> Value {
    wait_job(inst, name, &format!("loadedRows {loaded}"), |s| {
        s["statistic"]["loadedRows"].as_i64() == Some(loaded)
    })
    .await
}

fn range(ids: std::ops::Range<i64>) -> Vec<i64> {
    ids.collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_end_job_loses_nothing_when_its_worker_dies_before_the_first_commit() {
    let Some(tb) = testbed_or_skip("OFFSET_END job, worker killed before the first commit") else {
        return;
    };
    let inst = Installation::start(tb, "e2e-off-end", true)
        .await
        .expect("installation");
    let topic = unique_name("offsets-end");
    inst.tb.create_topic(&topic, 1).await.expect("topic");
    produce(&inst.tb, &topic, 0..5).await;
    let location = create_table(&inst, "t").await;
    // StarRocks' default start: no offsets, no defaultOffset.
    create_job(&inst, "j", "t", &topic, json!({})).await;
    let uid = job(&inst, "j").await["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();

    // A worker that never commits in this test's time: its batch stays open.
    let worker = unique_name("w");
    let mut w = inst
        .spawn_worker(&worker, &[("ROUTINE_LOAD_BATCH_INTERVAL_MS", "600000")])
        .expect("worker");
    task_on(&inst, "j", &worker).await;
    // The start (the end of the partition when the task started: 5) is in the table.
    wait_for("the start offset pinned in the table", WAIT, || async {
        let (ids, txns) = table_ids(&inst.tb, &location);
        match txns.get(&offset_app(&uid)) {
            Some(5) if ids.is_empty() => Ok(()),
            _ => Err(format!("txns {txns:?}, {} rows", ids.len())),
        }
    })
    .await;
    produce(&inst.tb, &topic, 5..15).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    w.kill().expect("kill -9 the worker");
    // The fault came before the first data commit: the table holds the pin only.
    let (ids, txns) = table_ids(&inst.tb, &location);
    assert!(ids.is_empty(), "nothing loaded before the kill: {ids:?}");
    assert_eq!(txns.get(&offset_app(&uid)), Some(&5), "{txns:?}");

    // The same pod comes back (a StatefulSet restart) and one more row arrives.
    let w = inst.spawn_worker(&worker, &[]).expect("worker again");
    produce(&inst.tb, &topic, 15..16).await;
    wait_progress(&inst, "j", 16).await;
    let (ids, _) = table_ids(&inst.tb, &location);
    assert_eq!(
        ids,
        range(5..16),
        "every row produced after the job was created, once; worker log:\n{}",
        w.log()
    );
    let j = wait_loaded_rows(&inst, "j", 11).await;
    assert_eq!(j["status"]["statistic"]["totalRows"], 11, "{}", j["status"]);
    assert_eq!(
        j["status"]["statistic"]["abortedTaskNum"], 0,
        "{}",
        j["status"]
    );
    assert_eq!(j["status"]["state"], "RUNNING");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_end_job_loses_nothing_across_an_edit_and_a_move_before_the_first_commit() {
    let Some(tb) = testbed_or_skip("OFFSET_END job, edit and move before the first commit") else {
        return;
    };
    let inst = Installation::start(tb, "e2e-off-move", true)
        .await
        .expect("installation");
    let topic = unique_name("offsets-move");
    inst.tb.create_topic(&topic, 1).await.expect("topic");
    produce(&inst.tb, &topic, 0..5).await;
    let location = create_table(&inst, "t").await;
    create_job(
        &inst,
        "j",
        "t",
        &topic,
        json!({"kafka": {"defaultOffset": "OFFSET_END"}}),
    )
    .await;
    let uid = job(&inst, "j").await["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let a = unique_name("wa");
    let mut wa = inst
        .spawn_worker(&a, &[("ROUTINE_LOAD_BATCH_INTERVAL_MS", "600000")])
        .expect("worker a");
    let task = task_on(&inst, "j", &a).await;
    let task_name = task["metadata"]["name"].as_str().unwrap().to_string();
    wait_for("the start offset pinned", WAIT, || async {
        let (_, txns) = table_ids(&inst.tb, &location);
        (txns.get(&offset_app(&uid)) == Some(&5))
            .then_some(())
            .ok_or(format!("{txns:?}"))
    })
    .await;
    produce(&inst.tb, &topic, 5..10).await;

    // An edit restarts the task loop on the new plan (before anything committed).
    inst.merge_patch(JOB, "j", json!({"spec": {"maxErrorNumber": 3}}))
        .await
        .expect("edit the job");
    wait_for("the task planned from the edited job", WAIT, || async {
        let t = inst
            .get(TASK, &task_name)
            .await
            .map_err(|e| e.to_string())?;
        (t["spec"]["jobGeneration"].as_i64() >= Some(2))
            .then_some(())
            .ok_or(format!("task spec {}", t["spec"]))
    })
    .await;
    produce(&inst.tb, &topic, 10..15).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (ids, _) = table_ids(&inst.tb, &location);
    assert!(ids.is_empty(), "nothing committed before the move: {ids:?}");

    // Worker a freezes (its Lease expires); the operator moves the task to worker b.
    wa.signal("STOP").expect("SIGSTOP worker a");
    let b = unique_name("wb");
    let wb = inst.spawn_worker(&b, &[]).expect("worker b");
    let moved = task_on(&inst, "j", &b).await;
    assert!(
        moved["spec"]["epoch"].as_i64() > task["spec"]["epoch"].as_i64(),
        "a move bumps the epoch: {} -> {}",
        task["spec"],
        moved["spec"]
    );
    produce(&inst.tb, &topic, 15..16).await;
    wait_progress(&inst, "j", 16).await;
    // Worker a wakes up with its stale batch: it must neither load it again nor report.
    wa.signal("CONT").expect("SIGCONT worker a");
    tokio::time::sleep(Duration::from_secs(5)).await;
    produce(&inst.tb, &topic, 16..20).await;
    wait_progress(&inst, "j", 20).await;
    let (ids, _) = table_ids(&inst.tb, &location);
    assert_eq!(
        ids,
        range(5..20),
        "every row produced after the job was created, once\nworker a:\n{}\nworker b:\n{}",
        wa.log(),
        wb.log()
    );
    let j = wait_loaded_rows(&inst, "j", 15).await;
    assert_eq!(j["status"]["state"], "RUNNING", "{}", j["status"]);
    let t = inst.get(TASK, &task_name).await.expect("task");
    assert_eq!(
        t["status"]["epoch"], moved["spec"]["epoch"],
        "{}",
        t["status"]
    );
    wa.kill().ok();
}

/// Kafka's DeleteRecords: removes every record of partition 0 before `before`.
async fn delete_records(tb: &Testbed, topic: &str, before: i64) {
    let admin: AdminClient<DefaultClientContext> = tb
        .kafka_config(Listener::Plaintext)
        .expect("kafka config")
        .create()
        .expect("admin client");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(before))
        .expect("partition");
    let out = admin
        .delete_records(&tpl, &AdminOptions::new())
        .await
        .expect("DeleteRecords");
    let low = out.find_partition(topic, 0).map(|e| e.offset());
    assert_eq!(low, Some(Offset::Offset(before)), "new log start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_offsets_pause_the_job_and_an_offsets_edit_resumes_it() {
    let Some(tb) = testbed_or_skip("offsets removed by retention") else {
        return;
    };
    let inst = Installation::start(tb, "e2e-off-gap", true)
        .await
        .expect("installation");
    let topic = unique_name("offsets-gap");
    inst.tb.create_topic(&topic, 1).await.expect("topic");
    let location = create_table(&inst, "t").await;
    create_job(
        &inst,
        "j",
        "t",
        &topic,
        json!({"kafka": {"partitions": [0], "offsets": ["OFFSET_BEGINNING"]}}),
    )
    .await;
    let worker = unique_name("w");
    let mut w = inst.spawn_worker(&worker, &[]).expect("worker");
    produce(&inst.tb, &topic, 0..50).await;
    wait_progress(&inst, "j", 50).await;
    w.stop(Duration::from_secs(30)).expect("stop the worker");

    // While the worker is down: 100 more rows, then retention takes offsets below 100.
    produce(&inst.tb, &topic, 50..150).await;
    delete_records(&inst.tb, &topic, 100).await;
    produce(&inst.tb, &topic, 150..160).await;
    assert_eq!(
        inst.tb.watermarks(&topic, 0).expect("watermarks"),
        (100, 160)
    );
    let mut w = inst.spawn_worker(&worker, &[]).expect("worker again");

    let paused = wait_for(
        "the job PAUSED for the out-of-range offset",
        WAIT,
        || async {
            let j = job(&inst, "j").await;
            let reason = j["status"]["conditions"][0]["reason"].clone();
            if j["status"]["state"] == "PAUSED" && reason == "OffsetOutOfRange" {
                Ok(j)
            } else {
                Err(format!("status: {}", j["status"]))
            }
        },
    )
    .await;
    let why = paused["status"]["reasonOfStateChanged"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        why.contains("partition 0: offset 50 is no longer in Kafka (it holds 100..160)")
            && why.contains("messages 50..99 were removed")
            && why.contains("spec.kafka.offsets: [\"100\"]"),
        "{why}"
    );
    let (ids, _) = table_ids(&inst.tb, &location);
    assert_eq!(ids, range(0..50), "nothing past the hole loaded");

    // The user looks at what moving the partition to the log start skips, then does it with
    // the plugin (StarRocks ALTER ROUTINE LOAD ... FROM KAFKA ("kafka_offsets" = "100")); the
    // edit lifts the pause.
    let plugin = |args: &[&str]| -> String {
        let out = std::process::Command::new(workspace_binary("kubectl-routineload").unwrap())
            .args(args)
            .args(["-n", &inst.ns, "--kubeconfig"])
            .arg(inst.tb.kubeconfig())
            .output()
            .expect("kubectl-routineload");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {text}");
        text
    };
    let preview = plugin(&["offsets", "j", "0=100"]);
    assert!(
        preview.contains("partition 0: 50 -> 100: skips offsets 50..99 (50 messages)"),
        "{preview}"
    );
    let (ids, _) = table_ids(&inst.tb, &location);
    assert_eq!(ids, range(0..50), "a preview changes nothing");
    plugin(&["offsets", "j", "0=100", "--apply"]);
    wait_progress(&inst, "j", 160).await;
    let (ids, _) = table_ids(&inst.tb, &location);
    let mut want = range(0..50);
    want.extend(100..160);
    assert_eq!(
        ids,
        want,
        "every retained row once; worker log:\n{}",
        w.log()
    );
    let events = inst.events_for("j").await.expect("events");
    assert!(
        events.iter().any(|(r, m)| r == "OffsetsApplied"
            && m.contains("partition 0 moved from offset 50 to 100")
            && m.contains("skips offsets 50..99")),
        "{events:?}"
    );
    // A restart resumes from the table: the edit is not applied twice.
    w.stop(Duration::from_secs(30)).expect("stop");
    let _w = inst.spawn_worker(&worker, &[]).expect("worker again");
    produce(&inst.tb, &topic, 160..165).await;
    wait_progress(&inst, "j", 165).await;
    let (ids, _) = table_ids(&inst.tb, &location);
    want.extend(160..165);
    assert_eq!(ids, want, "the applied edit is not applied again");
    let j = wait_loaded_rows(&inst, "j", 115).await;
    assert_eq!(j["status"]["state"], "RUNNING");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_time_loads_the_messages_at_or_after_it() {
    let Some(tb) = testbed_or_skip("start offsets by time") else {
        return;
    };
    let inst = Installation::start(tb, "e2e-off-time", true)
        .await
        .expect("installation");
    let topic = unique_name("offsets-time");
    inst.tb.create_topic(&topic, 1).await.expect("topic");
    // Message i has the timestamp 2026-11-20 09:00:00 UTC + i minutes.
    let base_ms = 1_795_165_200_000_i64;
    let producer = inst
        .tb
        .kafka_producer(Listener::Plaintext)
        .expect("producer");
    for i in 0..20i64 {
        let payload = format!("{i},v{i}");
        producer
            .send(
                FutureRecord::<(), str>::to(&topic)
                    .partition(0)
                    .payload(&payload)
                    .timestamp(base_ms + i * 60_000),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("produce");
    }
    let location = create_table(&inst, "t").await;
    // 17:10 in Shanghai (UTC+8) is 09:10 UTC: message 10 and later.
    create_job(
        &inst,
        "j",
        "t",
        &topic,
        json!({
            "timezone": "Asia/Shanghai",
            "kafka": {"partitions": [0], "offsets": ["2026-11-20 17:10:00"]}
        }),
    )
    .await;
    let _w = inst.spawn_worker(&unique_name("w"), &[]).expect("worker");
    wait_progress(&inst, "j", 20).await;
    let (ids, _) = table_ids(&inst.tb, &location);
    assert_eq!(ids, range(10..20));
}
