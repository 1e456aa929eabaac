//! End-to-end benchmark of the load path against the local testbed (`make bench`).
//!
//! 1. Ceiling: a raw rdkafka consume loop (`BaseConsumer`, `assign`, no processing).
//! 2. End to end: one worker task (`task_runner::run_task`, in-process in a child process) from
//!    Kafka through decode, map, filter, cast and Parquet to a committed Delta version on a local
//!    directory, for the Wikipedia rows as CSV and JSON and for a 50-column schema; compared with
//!    the ceiling measured over the same topic in the same run.
//! 0. Parquet: encoding one batch with the writer settings worth comparing.
//! 3. Several tasks on one worker: a 4-partition topic loaded by one task and by two tasks in one
//!    process.
//! 4. Latency: produce-to-visible at half the measured CSV capacity, default and 1 s batch
//!    interval.
//! 5. Stream Load: one ~100 MB CSV body, then 200 small loads one after another (labels per
//!    second), through the worker's endpoint in a child process, with curl as the client.
//! 6. Upserts: a stream into a Primary Key table of 10M keys with 10% and with 90% updates,
//!    and the same stream appended to a Duplicate table of that size, one task each.
//! 7. Scale: the operator binary with N jobs x 3 tasks (fake workers) against the API server.
//!
//! Every measured phase runs alone in a child process (this executable re-run with `__child`),
//! which reports its own CPU time (`/proc/self/stat`) and peak RSS (`VmHWM`). Results go to
//! `bench/results/pipeline.{json,md}` (`BENCH_OUT` overrides the path without extension).
//!
//! Settings (environment): `BENCH_ROWS` (3000000), `BENCH_WIDE_ROWS` (1200000),
//! `BENCH_PHASES` (`parquet,throughput,scaling,latency,streamload,upserts,scale`),
//! `BENCH_LATENCY_SECS` (20), `BENCH_STREAM_LOAD_MB` (100), `BENCH_STREAM_LOAD_SMALL` (200),
//! `BENCH_UPSERT_KEYS` (10000000), `BENCH_UPSERT_ROWS` (1000000), `BENCH_SCALE_JOBS`
//! (200), `BENCH_SCALE_STEADY_SECS` (60). `ROUTINE_LOAD_E2E=0` or no testbed: prints SKIPPED.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kube::Client;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};
use routine_load_e2e::kafka::Listener;
use routine_load_e2e::{Testbed, e2e_enabled, unique_name};
use serde_json::{Value, json};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("__child") {
        let mode = args.get(2).cloned().unwrap_or_default();
        let params: Value = serde_json::from_str(args.get(3).map(String::as_str).unwrap_or("{}"))
            .expect("child parameters");
        let out = match mode.as_str() {
            "ceiling" => child_ceiling(&params),
            "load" => child_load(&params),
            "stream" => child_stream(&params),
            "stream-load-server" => child_stream_load_server(&params),
            other => Err(anyhow::anyhow!("unknown child mode {other}")),
        };
        match out {
            Ok(v) => println!("RESULT {v}"),
            Err(e) => {
                eprintln!("child {mode} failed: {e:#}");
                std::process::exit(1);
            }
        }
        return;
    }
    if !e2e_enabled() {
        eprintln!("SKIPPED pipeline bench: ROUTINE_LOAD_E2E=0 (it needs the local testbed)");
        return;
    }
    let tb = match Testbed::load() {
        Ok(tb) => tb,
        Err(e) => {
            eprintln!(
                "SKIPPED pipeline bench: the testbed is not up ({e:#}); start it with `make testbed-up`"
            );
            return;
        }
    };
    routine_load_e2e::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Err(e) = rt.block_on(orchestrate(tb)) {
        eprintln!("pipeline bench failed: {e:#}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------
// Data sets

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dataset {
    /// The reference's Wikipedia rows as CSV, the user name padded so rows average ~150 bytes.
    Csv,
    /// The same rows as JSON objects.
    Json,
    /// 50 columns (BIGINT, INT, DOUBLE, VARCHAR, DATETIME, DECIMAL, DATE), CSV.
    Wide,
}

use routine_load_e2e::wikipedia::COLUMN_NAMES as WIKI_COLUMNS;
const WIDE_TYPES: [&str; 7] = [
    "BIGINT",
    "INT",
    "DOUBLE",
    "VARCHAR(64)",
    "DATETIME",
    "DECIMAL(18,4)",
    "DATE",
];
const PAD: &str =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

impl Dataset {
    fn name(self) -> &'static str {
        match self {
            Dataset::Csv => "wikipedia_csv",
            Dataset::Json => "wikipedia_json",
            Dataset::Wide => "wide50_csv",
        }
    }

    fn wiki_fields(i: usize) -> [String; 11] {
        let channels = [
            "#en.wikipedia",
            "#ca.wikipedia",
            "#de.wikipedia",
            "#fr.wikipedia",
        ];
        [
            format!(
                "2015-09-12 {:02}:{:02}:{:02}",
                (i / 3600) % 24,
                (i / 60) % 60,
                i % 60
            ),
            channels[i % 4].to_string(),
            format!("Editor{i:08}_{}", &PAD[..60 + i % 29]),
            (i % 2).to_string(),
            if i.is_multiple_of(3) { "1" } else { "0" }.to_string(),
            "0".to_string(),
            if i.is_multiple_of(7) { "1" } else { "0" }.to_string(),
            "1".to_string(),
            ((i % 400) as i64 - 200).to_string(),
            (i % 300).to_string(),
            (i % 50).to_string(),
        ]
    }

    fn message(self, i: usize) -> String {
        match self {
            Dataset::Csv => Self::wiki_fields(i).join(","),
            Dataset::Json => {
                let f = Self::wiki_fields(i);
                let mut m = serde_json::Map::new();
                for (k, (name, v)) in WIKI_COLUMNS.iter().zip(f.iter()).enumerate() {
                    let v = if k < 3 {
                        Value::String(v.clone())
                    } else {
                        Value::Number(v.parse::<i64>().expect("int").into())
                    };
                    m.insert(name.to_string(), v);
                }
                Value::Object(m).to_string()
            }
            Dataset::Wide => (0..50)
                .map(|c| match c % 7 {
                    0 => ((i as i64) * 1000 + c as i64).to_string(),
                    1 => ((i + c) % 1_000_000).to_string(),
                    2 => format!("{:.3}", (i as f64) * 0.37 + c as f64),
                    3 => format!("v{c}-{}", &PAD[..(i + c) % 17 + 4]),
                    4 => format!(
                        "2015-09-12 {:02}:{:02}:{:02}",
                        (i / 3600) % 24,
                        (i / 60 + c) % 60,
                        i % 60
                    ),
                    5 => format!("{}.{:04}", i % 100_000, (i * 7 + c) % 10_000),
                    _ => format!("2015-{:02}-{:02}", c % 12 + 1, i % 28 + 1),
                })
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    fn table_columns(self) -> Value {
        match self {
            Dataset::Csv | Dataset::Json => routine_load_e2e::wikipedia::table_columns(),
            Dataset::Wide => Value::Array(
                (0..50)
                    .map(|c| json!({"name": format!("c{c:02}"), "type": WIDE_TYPES[c % 7]}))
                    .collect(),
            ),
        }
    }

    /// The job's format, mapping and filter (a WHERE every row passes, so the filter stage runs
    /// and every row is loaded).
    fn job_spec(self) -> Value {
        match self {
            Dataset::Csv => json!({
                "columnSeparator": ",",
                "columns": WIKI_COLUMNS,
                "where": "deleted >= 0",
            }),
            Dataset::Json => json!({"format": "json", "where": "deleted >= 0"}),
            // 200000 rows of ~560 bytes pass the default maxBatchSize (100 MiB): raise it so
            // batches close at maxBatchRows as in the other data sets.
            Dataset::Wide => json!({
                "columnSeparator": ",",
                "where": "c00 >= 0",
                "maxBatchSize": 1073741824u64,
            }),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Process measurements

/// User + system CPU seconds of this process (all threads), from `/proc/self/stat`.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // After the command: state is field 3, utime 14 and stime 15 (1-based, whole line).
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// A `/proc/<pid>/status` field in kB (VmHWM, VmRSS).
fn proc_status_kb(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':').map(str::trim))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Runs this executable as a child for one measured phase; returns its RESULT json.
fn run_child(mode: &str, params: &Value) -> Result<Value> {
    let exe = std::env::current_exe()?;
    // BENCH_PERF=<dir>: record the load children with `perf record -F 499 -g` into
    // <dir>/<job>.perf.data; BENCH_PERF_ARGS replaces `-F 499 -g` (e.g. `--call-graph=dwarf`
    // for callers through code built without frame pointers, or `-e page-faults -g`).
    let mut cmd = match std::env::var("BENCH_PERF") {
        Ok(dir) if mode == "load" => {
            let mut c = Command::new("perf");
            let args = std::env::var("BENCH_PERF_ARGS").unwrap_or_else(|_| "-F 499 -g".into());
            c.arg("record")
                .args(args.split_whitespace())
                .arg("-o")
                .arg(Path::new(&dir).join(format!(
                    "{}.perf.data",
                    params["job"].as_str().unwrap_or("load")
                )))
                .arg("--")
                .arg(&exe);
            c
        }
        _ => Command::new(&exe),
    };
    let out = cmd
        .arg("__child")
        .arg(mode)
        .arg(params.to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {} __child {mode}", exe.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("child {mode} failed ({}): {stdout}", out.status);
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .with_context(|| format!("child {mode} printed no result: {stdout}"))?;
    Ok(serde_json::from_str(line)?)
}

fn spawn_child(mode: &str, params: &Value) -> Result<std::process::Child> {
    Ok(Command::new(std::env::current_exe()?)
        .arg("__child")
        .arg(mode)
        .arg(params.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?)
}

fn child_result(child: std::process::Child) -> Result<Value> {
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("child failed ({}): {stdout}", out.status);
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .with_context(|| format!("child printed no result: {stdout}"))?;
    Ok(serde_json::from_str(line)?)
}

// ---------------------------------------------------------------------------------------------
// Children

/// The raw consume ceiling: BaseConsumer, assign at offset 0, count messages and bytes.
fn child_ceiling(p: &Value) -> Result<Value> {
    let tb = Testbed::load()?;
    let topic = p["topic"].as_str().context("topic")?;
    let n = p["rows"].as_u64().context("rows")?;
    let mut c = tb.kafka_config(Listener::Plaintext)?;
    c.set("group.id", unique_name("bench-ceiling"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false");
    // The worker's settings, so the ceiling reads Kafka the way a task does.
    for (k, v) in routine_load_worker::start_offsets::CONSUMER_DEFAULTS {
        c.set(k, v);
    }
    for (k, v) in consumer_props() {
        c.set(k, v);
    }
    let consumer: BaseConsumer = c.create()?;
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(0))?;
    consumer.assign(&tpl)?;
    let (mut count, mut bytes) = (0u64, 0u64);
    let mut first: Option<f64> = None;
    while count < n {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                if first.is_none() {
                    first = Some(t0.elapsed().as_secs_f64());
                }
                count += 1;
                bytes += m.payload_len() as u64;
            }
            Some(Err(e)) => bail!("consume: {e}"),
            None if t0.elapsed() > Duration::from_secs(300) => {
                bail!("only {count} of {n} messages in 300 s")
            }
            None => {}
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    Ok(json!({
        "messages": count, "bytes": bytes, "wall_s": wall, "first_message_s": first,
        "cpu_s": cpu, "peak_rss_kb": proc_status_kb("self", "VmHWM"),
    }))
}

/// `BENCH_CONSUMER_PROPS=k=v,k=v`: librdkafka consumer properties for every child (the load
/// child gets them through the job's `kafka.properties`, as a user would set them).
fn consumer_props() -> Vec<(String, String)> {
    std::env::var("BENCH_CONSUMER_PROPS")
        .unwrap_or_default()
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// An async consume loop: StreamConsumer, `timeout_at(recv())` per message, payload copied (a
/// wake-up per message, as the worker consumed before it polled a BaseConsumer); no decode, no
/// write.
fn child_stream(p: &Value) -> Result<Value> {
    use rdkafka::consumer::StreamConsumer;
    use rdkafka::message::Message as _;
    let tb = Testbed::load()?;
    let topic = p["topic"].as_str().context("topic")?.to_string();
    let n = p["rows"].as_u64().context("rows")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut c = tb.kafka_config(Listener::Plaintext)?;
        c.set("group.id", unique_name("bench-stream"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false");
        for (k, v) in routine_load_worker::start_offsets::CONSUMER_DEFAULTS {
            c.set(k, v);
        }
        for (k, v) in consumer_props() {
            c.set(k, v);
        }
        let consumer: StreamConsumer = c.create()?;
        let cpu0 = cpu_seconds();
        let t0 = Instant::now();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(0))?;
        consumer.assign(&tpl)?;
        let (mut count, mut bytes) = (0u64, 0u64);
        let mut batch: Vec<(i32, i64, Vec<u8>)> = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
        while count < n {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Err(_) => bail!("only {count} of {n} messages in 300 s"),
                Ok(Err(e)) => bail!("consume: {e}"),
                Ok(Ok(m)) => {
                    let payload = m.payload().unwrap_or(&[]).to_vec();
                    count += 1;
                    bytes += payload.len() as u64;
                    batch.push((m.partition(), m.offset(), payload));
                    if batch.len() >= 200_000 {
                        batch.clear();
                    }
                }
            }
        }
        let wall = t0.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu0;
        Ok(json!({
            "messages": count, "bytes": bytes, "wall_s": wall, "cpu_s": cpu,
            "peak_rss_kb": proc_status_kb("self", "VmHWM"),
        }))
    })
}

/// One worker task (the real task loop) until `rows` rows are committed.
fn child_load(p: &Value) -> Result<Value> {
    use routine_load_worker::load_memory;
    use routine_load_worker::metrics::Metrics;
    use routine_load_worker::task_runner::{Assignment, WorkerContext, run_task};
    routine_load_e2e::install_crypto_provider();
    // RUST_LOG=routine_load_worker=debug: the task loop's per-batch timings on stderr.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let ns = p["namespace"].as_str().context("namespace")?.to_string();
    let tasks: Vec<String> = p["tasks"]
        .as_array()
        .context("tasks")?
        .iter()
        .filter_map(|t| t.as_str().map(str::to_string))
        .collect();
    let job = p["job"].as_str().context("job")?.to_string();
    let n = p["rows"].as_u64().context("rows")?;
    let interval = p["interval_ms"].as_u64().map(Duration::from_millis);
    // As the worker binary does at start.
    routine_load_worker::keep_batch_memory();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let tb = Testbed::load()?;
        let client = tb.client().await?;
        let metrics = Arc::new(Metrics::new());
        let ctx = WorkerContext {
            heartbeat: None,
            client,
            pod_name: "bench-worker".into(),
            error_log_dir: std::env::temp_dir().join(unique_name("bench-errlog")),
            error_log_base_url: "http://127.0.0.1:0".into(),
            metrics: metrics.clone(),
            batch_interval_override: interval,
            batch_rows_override: None,
            // The worker's default budget (main.rs), without a pod memory limit.
            load_memory: load_memory::LoadMemory::new(load_memory::default_limit()),
            retry_limit: None,
            decode_threads: routine_load_worker::decode_threads(),
            unwritten: Default::default(),
        };
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let cpu0 = cpu_seconds();
        let t0 = Instant::now();
        // Every task's loop in this one process, as one worker runs the tasks it is given.
        let handles: Vec<_> = tasks
            .iter()
            .map(|task| {
                let a = Assignment {
                    namespace: ns.clone(),
                    name: task.clone(),
                    epoch: 1,
                };
                tokio::spawn(run_task(ctx.clone(), a, stop_rx.clone()))
            })
            .collect();
        let total = metrics.rows.with_label_values(&[&ns, &job, "total"]);
        let loaded = metrics.rows.with_label_values(&[&ns, &job, "loaded"]);
        let errors = metrics.rows.with_label_values(&[&ns, &job, "error"]);
        let batches = metrics.batches.with_label_values(&[&ns, &job, "committed"]);
        let commit_seconds = metrics.commit_seconds.with_label_values(&[&ns, &job]);
        let mut first_commit: Option<(f64, u64, f64)> = None;
        loop {
            // Rows are counted once their batch is committed.
            let rows = total.get();
            if first_commit.is_none() && rows > 0 {
                first_commit = Some((t0.elapsed().as_secs_f64(), rows, cpu_seconds() - cpu0));
            }
            if rows >= n {
                break;
            }
            if let Some(h) = handles.iter().position(|h| h.is_finished()) {
                let r = handles.into_iter().nth(h).context("task loop")?.await;
                bail!("a task loop ended early after {rows} rows: {r:?}");
            }
            if t0.elapsed() > Duration::from_secs(900) {
                bail!("only {rows} of {n} rows committed in 900 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let wall = t0.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu0;
        let hwm = proc_status_kb("self", "VmHWM");
        let _ = stop_tx.send(true);
        for handle in handles {
            let _ = tokio::time::timeout(Duration::from_secs(30), handle).await;
        }
        Ok(json!({
            "rows": total.get(), "loaded_rows": loaded.get(), "error_rows": errors.get(),
            "batches": batches.get(), "commit_s": commit_seconds.get_sample_sum(), "wall_s": wall, "cpu_s": cpu, "peak_rss_kb": hwm,
            "first_commit": first_commit.map(|(t, r, c)| json!({"at_s": t, "rows": r, "cpu_s": c})),
        }))
    })
}

/// The worker's Stream Load endpoint alone (its router and context, in this process) on
/// 127.0.0.1:`port` until the file `stop` appears; then reports its CPU seconds and peak RSS.
fn child_stream_load_server(p: &Value) -> Result<Value> {
    use routine_load_worker::load_memory;
    use routine_load_worker::metrics::Metrics;
    use routine_load_worker::stream_load::{StreamLoadContext, request::BodyLimits, router};
    routine_load_e2e::install_crypto_provider();
    let port = p["port"].as_u64().context("port")? as u16;
    let stop = PathBuf::from(p["stop"].as_str().context("stop")?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let tb = Testbed::load()?;
        let client = tb.client().await?;
        let ctx = StreamLoadContext::new(
            client,
            "bench-worker".into(),
            std::env::temp_dir().join(unique_name("bench-errlog")),
            format!("http://127.0.0.1:{port}"),
            BodyLimits::default(),
            Arc::new(Metrics::new()),
            load_memory::LoadMemory::new(load_memory::default_limit()),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let cpu0 = cpu_seconds();
        let server = tokio::spawn(async move { axum::serve(listener, router(ctx)).await });
        while !stop.exists() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server.abort();
        Ok(json!({"cpu_s": cpu_seconds() - cpu0, "peak_rss_kb": proc_status_kb("self", "VmHWM")}))
    })
}

// ---------------------------------------------------------------------------------------------
// Orchestration helpers

fn ar(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("routineload.io", "v1alpha1", kind),
        plural,
    )
}

struct Load {
    job: String,
    job_uid: String,
    tasks: Vec<String>,
    dir: PathBuf,
}

/// Table + RoutineLoadJob + one RoutineLoadTask (epoch 1, on the bench worker) per entry of
/// `tasks`, each with those partitions.
async fn create_load(
    tb: &Testbed,
    client: &Client,
    ns: &str,
    name: &str,
    ds: Dataset,
    topic: &str,
    tasks: &[&[i32]],
) -> Result<Load> {
    let dir = std::env::temp_dir().join(unique_name("bench-table"));
    std::fs::create_dir_all(&dir)?;
    let table =
        json!({"location": format!("file://{}", dir.display()), "columns": ds.table_columns()});
    create_load_of(
        tb,
        client,
        ns,
        name,
        (dir, table),
        ds.job_spec(),
        topic,
        tasks,
    )
    .await
}

/// [`create_load`] with the Table's directory and spec and the job's format fields given.
#[allow(clippy::too_many_arguments)]
async fn create_load_of(
    tb: &Testbed,
    client: &Client,
    ns: &str,
    name: &str,
    (dir, table_spec): (PathBuf, Value),
    job_spec: Value,
    topic: &str,
    tasks: &[&[i32]],
) -> Result<Load> {
    let partitions: Vec<i32> = tasks.iter().flat_map(|t| t.iter().copied()).collect();
    let pp = PostParams::default();
    let tables: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &ar("Table", "tables"));
    tables
        .create(
            &pp,
            &serde_json::from_value(json!({
                "apiVersion": "routineload.io/v1alpha1", "kind": "Table",
                "metadata": {"name": name},
                "spec": table_spec
            }))?,
        )
        .await
        .context("create Table")?;
    let mut spec = json!({
        "table": name,
        "desiredConcurrentNumber": tasks.len(),
        "maxErrorNumber": 1000,
        "kafka": {
            "brokerList": tb.var("KAFKA_BROKERS")?,
            "topic": topic,
            "partitions": partitions,
            "offsets": vec!["OFFSET_BEGINNING"; partitions.len()]
        }
    });
    let props: serde_json::Map<String, Value> = consumer_props()
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    if !props.is_empty() {
        spec["kafka"]["properties"] = Value::Object(props);
    }
    for (k, v) in job_spec.as_object().context("job spec")? {
        spec[k] = v.clone();
    }
    let jobs: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &ar("RoutineLoadJob", "routineloadjobs"));
    let job = jobs
        .create(
            &pp,
            &serde_json::from_value(json!({
                "apiVersion": "routineload.io/v1alpha1", "kind": "RoutineLoadJob",
                "metadata": {"name": name}, "spec": spec
            }))?,
        )
        .await
        .context("create RoutineLoadJob")?;
    let uid = job.metadata.uid.context("job uid")?;
    let task_api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &ar("RoutineLoadTask", "routineloadtasks"),
    );
    let mut names = Vec::new();
    for (i, parts) in tasks.iter().enumerate() {
        let task = format!("{name}-{i}");
        task_api
            .create(
                &pp,
                &serde_json::from_value(json!({
                    "apiVersion": "routineload.io/v1alpha1", "kind": "RoutineLoadTask",
                    "metadata": {"name": task, "labels": {"routineload.io/worker": "bench-worker"}},
                    "spec": {"job": name, "jobUid": uid, "partitions": parts, "worker": "bench-worker", "epoch": 1}
                }))?,
            )
            .await
            .context("create RoutineLoadTask")?;
        names.push(task);
    }
    Ok(Load {
        job: name.to_string(),
        job_uid: uid,
        tasks: names,
        dir,
    })
}

/// Counts delivery failures of a producer.
struct DeliveryCounter {
    failed: AtomicU64,
    delivered: AtomicU64,
}

impl ClientContext for DeliveryCounter {}
impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(_) => self.delivered.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

fn producer(tb: &Testbed, linger_ms: &str) -> Result<BaseProducer<DeliveryCounter>> {
    let mut c = tb.kafka_config(Listener::Plaintext)?;
    c.set("enable.idempotence", "true")
        .set("linger.ms", linger_ms)
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("message.timeout.ms", "120000");
    Ok(c.create_with_context(DeliveryCounter {
        failed: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
    })?)
}

fn send(
    p: &BaseProducer<DeliveryCounter>,
    topic: &str,
    partition: i32,
    payload: &[u8],
) -> Result<()> {
    let mut rec = BaseRecord::<(), [u8]>::to(topic)
        .payload(payload)
        .partition(partition);
    loop {
        match p.send(rec) {
            Ok(()) => return Ok(()),
            Err((e, r))
                if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
            {
                rec = r;
                p.poll(Duration::from_millis(5));
            }
            Err((e, _)) => bail!("produce: {e}"),
        }
    }
}

/// Produces `n` messages of a data set as fast as the broker takes them, message `i` to
/// partition `i % partitions`.
fn produce_dataset(
    tb: &Testbed,
    topic: &str,
    ds: Dataset,
    n: usize,
    partitions: i32,
) -> Result<Value> {
    produce_messages(tb, topic, n, partitions, |i| ds.message(i))
}

/// Produces `n` messages `message(i)`, message `i` to partition `i % partitions`.
fn produce_messages(
    tb: &Testbed,
    topic: &str,
    n: usize,
    partitions: i32,
    message: impl Fn(usize) -> String,
) -> Result<Value> {
    let p = producer(tb, "20")?;
    let t0 = Instant::now();
    let mut bytes = 0u64;
    for i in 0..n {
        let m = message(i);
        bytes += m.len() as u64;
        send(&p, topic, i as i32 % partitions, m.as_bytes())?;
        if i % 1000 == 0 {
            p.poll(Duration::ZERO);
        }
    }
    p.flush(Duration::from_secs(120))?;
    let secs = t0.elapsed().as_secs_f64();
    let ctx = p.context();
    if ctx.failed.load(Ordering::Relaxed) > 0 {
        bail!("{} deliveries failed", ctx.failed.load(Ordering::Relaxed));
    }
    let mut held = 0;
    for partition in 0..partitions {
        held += tb.watermarks(topic, partition)?.1;
    }
    if held != n as i64 {
        bail!("{topic} holds {held} messages, produced {n}");
    }
    Ok(
        json!({"messages": n, "bytes": bytes, "avg_message_bytes": bytes as f64 / n as f64, "produce_s": secs}),
    )
}

/// The transactions of a Delta log: each app id's latest version, read incrementally (only
/// commit files newer than the last scan).
struct TxnScan {
    seen: i64,
    latest: BTreeMap<String, i64>,
}

impl TxnScan {
    fn new() -> Self {
        Self {
            seen: -1,
            latest: BTreeMap::new(),
        }
    }

    /// Reads the commit files written since the last call.
    fn update(&mut self, dir: &Path) -> Result<()> {
        let log = dir.join("_delta_log");
        let Ok(rd) = std::fs::read_dir(&log) else {
            return Ok(());
        };
        let mut versions: Vec<i64> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let v = name.strip_suffix(".json")?;
                (v.len() == 20).then(|| v.parse::<i64>().ok())?
            })
            .filter(|v| *v > self.seen)
            .collect();
        versions.sort();
        for v in versions {
            let text = std::fs::read_to_string(log.join(format!("{v:020}.json")))?;
            for line in text.lines().filter(|l| l.contains("\"txn\"")) {
                let a: Value = serde_json::from_str(line)?;
                if let (Some(app), Some(t)) =
                    (a["txn"]["appId"].as_str(), a["txn"]["version"].as_i64())
                {
                    self.latest.insert(app.to_string(), t);
                }
            }
            self.seen = v;
        }
        Ok(())
    }

    /// The sum over `partitions` of the next offset the log records for the job: how many
    /// messages the table holds the offsets of (-1 for one partition with no offset yet).
    fn committed(&self, job_uid: &str, partitions: &[i32]) -> i64 {
        let offsets: Vec<Option<i64>> = partitions
            .iter()
            .map(|p| {
                let id = routine_load_api::names::transaction_app_id(job_uid, *p);
                self.latest.get(&id).copied()
            })
            .collect();
        match offsets.as_slice() {
            [one] => one.unwrap_or(-1),
            all => all.iter().map(|o| o.unwrap_or(0)).sum(),
        }
    }
}

fn kb_to_mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

// ---------------------------------------------------------------------------------------------
// Phases

async fn throughput(
    tb: &Testbed,
    client: &Client,
    ns: &str,
    ds: Dataset,
    n: usize,
) -> Result<Value> {
    let topic = unique_name(&format!("bench-{}", ds.name().replace('_', "-")));
    tb.create_topic(&topic, 1).await?;
    eprintln!("[{}] producing {n} messages to {topic}", ds.name());
    let produced = {
        let (tb, topic) = (tb.clone(), topic.clone());
        tokio::task::spawn_blocking(move || produce_dataset(&tb, &topic, ds, n, 1)).await??
    };
    eprintln!("[{}] produced: {produced}", ds.name());
    let bytes = produced["bytes"].as_f64().unwrap_or(0.0);

    // Twice: the first read right after producing can be slower; the faster run counts.
    let mut runs = Vec::new();
    for _ in 0..2 {
        let params = json!({"topic": topic, "rows": n});
        runs.push(tokio::task::spawn_blocking(move || run_child("ceiling", &params)).await??);
    }
    let ceiling = runs
        .iter()
        .min_by(|a, b| {
            a["wall_s"]
                .as_f64()
                .unwrap_or(f64::MAX)
                .total_cmp(&b["wall_s"].as_f64().unwrap_or(f64::MAX))
        })
        .cloned()
        .context("ceiling")?;
    let ceiling_runs_wall_s: Vec<Value> = runs.iter().map(|r| r["wall_s"].clone()).collect();
    let stream_params = json!({"topic": topic, "rows": n});
    let stream = tokio::task::spawn_blocking(move || run_child("stream", &stream_params)).await??;
    eprintln!("[{}] StreamConsumer recv() loop: {stream}", ds.name());
    eprintln!("[{}] ceiling: {ceiling}", ds.name());

    let load = create_load(
        tb,
        client,
        ns,
        &ds.name().replace('_', "-"),
        ds,
        &topic,
        &[&[0]],
    )
    .await?;
    let lp = json!({"namespace": ns, "tasks": load.tasks, "job": load.job, "rows": n});
    let e2e = tokio::task::spawn_blocking(move || run_child("load", &lp)).await??;
    eprintln!("[{}] end to end: {e2e}", ds.name());
    let mut scan = TxnScan::new();
    scan.update(&load.dir)?;
    let txn = scan.committed(&load.job_uid, &[0]);
    if txn != n as i64 || e2e["loaded_rows"].as_u64() != Some(n as u64) {
        bail!(
            "{}: the table's committed offset is {txn} and {} rows were loaded, expected {n}",
            ds.name(),
            e2e["loaded_rows"]
        );
    }
    let table_bytes = dir_size(&load.dir);
    let _ = std::fs::remove_dir_all(&load.dir);
    delete_topic(tb, &topic).await;

    let c_wall = ceiling["wall_s"].as_f64().unwrap_or(f64::NAN);
    let c_cpu = ceiling["cpu_s"].as_f64().unwrap_or(f64::NAN);
    let e_wall = e2e["wall_s"].as_f64().unwrap_or(f64::NAN);
    let e_cpu = e2e["cpu_s"].as_f64().unwrap_or(f64::NAN);
    let nf = n as f64;
    let steady = e2e["first_commit"]["at_s"].as_f64().map(|t| {
        let r = e2e["first_commit"]["rows"].as_f64().unwrap_or(0.0);
        (nf - r) / (e_wall - t)
    });
    let ceiling_mps = nf / c_wall;
    let e2e_rps = nf / e_wall;
    Ok(json!({
        "dataset": ds.name(),
        "topic": topic,
        "produced": produced,
        "ceiling": {
            "raw": ceiling,
            "runs_wall_s": ceiling_runs_wall_s,
            "messages_per_s": ceiling_mps,
            "mb_per_s": bytes / c_wall / 1e6,
            "messages_per_cpu_s": nf / c_cpu,
            "mb_per_cpu_s": bytes / c_cpu / 1e6,
        },
        "stream_consumer_loop": {
            "raw": stream,
            "messages_per_s": nf / stream["wall_s"].as_f64().unwrap_or(f64::NAN),
            "messages_per_cpu_s": nf / stream["cpu_s"].as_f64().unwrap_or(f64::NAN),
        },
        "end_to_end": {
            "raw": e2e,
            "job_spec": ds.job_spec(),
            "rows_per_s": e2e_rps,
            "rows_per_s_after_first_commit": steady,
            "mb_per_s": bytes / e_wall / 1e6,
            "cpu_s_per_million_rows": e_cpu / nf * 1e6,
            "rows_per_cpu_s": nf / e_cpu,
            "peak_rss_mib": kb_to_mib(e2e["peak_rss_kb"].as_u64().unwrap_or(0)),
            "table_bytes": table_bytes,
        },
        "ratio_to_ceiling": e2e_rps / ceiling_mps,
        "ratio_to_ceiling_per_cpu_s": (nf / e_cpu) / (nf / c_cpu),
    }))
}

/// splitmix64: a fixed pseudo-random number per message.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The key of message `i` of an upsert stream: with probability `updates` one of the `keys`
/// preloaded keys (spread uniformly over them), else a new key.
fn upsert_key(i: usize, keys: usize, updates: f64) -> u64 {
    let r = splitmix(i as u64);
    if (r % 10_000) as f64 / 10_000.0 < updates {
        (r >> 16) % keys as u64
    } else {
        (keys + i) as u64
    }
}

/// Message `i` of an upsert stream, `id,v,seq`.
fn upsert_message(i: usize, keys: usize, updates: f64) -> String {
    format!("{},v{i},{i}", upsert_key(i, keys, updates))
}

/// The rows of a Delta table's latest version from its log alone: the `numRecords` statistics
/// of the files added and not removed since (the log holds no checkpoint here).
fn live_rows(dir: &Path) -> Result<u64> {
    let log = dir.join("_delta_log");
    let mut commits: Vec<PathBuf> = std::fs::read_dir(&log)?
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    commits.sort();
    let mut live: BTreeMap<String, u64> = BTreeMap::new();
    for commit in commits {
        for line in std::fs::read_to_string(&commit)?.lines() {
            let a: Value = serde_json::from_str(line)?;
            if let Some(add) = a.get("add") {
                let stats: Value = serde_json::from_str(add["stats"].as_str().unwrap_or("{}"))?;
                let path = add["path"].as_str().unwrap_or_default().to_string();
                live.insert(path, stats["numRecords"].as_u64().context("numRecords")?);
            } else if let Some(remove) = a.get("remove") {
                live.remove(remove["path"].as_str().unwrap_or_default());
            }
        }
    }
    Ok(live.values().sum())
}

fn upsert_table_columns() -> Value {
    json!([
        {"name": "id", "type": "BIGINT", "nullable": false},
        {"name": "v", "type": "STRING"},
        {"name": "seq", "type": "BIGINT"}
    ])
}

/// Creates the Delta table of `table_spec` and appends `keys` rows (ids `0..keys`, one file and
/// one version per million), as the table stands before the stream.
async fn preload_keys(table_spec: &Value, keys: usize) -> Result<()> {
    use deltalake::arrow::array::{ArrayRef, Int64Array, StringArray};
    use deltalake::arrow::compute::cast;
    use deltalake::arrow::record_batch::RecordBatch;
    use deltalake::writer::{DeltaWriter, RecordBatchWriter};
    let spec: routine_load_api::table::TableSpec = serde_json::from_value(table_spec.clone())?;
    let options = std::collections::HashMap::new();
    routine_load_api::delta_table::create_or_adopt(&spec.location, &spec, options.clone())
        .await
        .context("creating the table")?;
    let mut table = routine_load_api::delta_table::open(&spec.location, options).await?;
    let mut writer = RecordBatchWriter::for_table(&table)?
        .with_writer_properties(routine_load_worker::delta_sink::writer_properties());
    let schema = writer.arrow_schema();
    const CHUNK: usize = 1_000_000;
    for start in (0..keys).step_by(CHUNK) {
        let end = (start + CHUNK).min(keys);
        let columns: [ArrayRef; 3] = [
            Arc::new((start as i64..end as i64).collect::<Int64Array>()),
            Arc::new(
                (start..end)
                    .map(|i| Some(format!("k{i}")))
                    .collect::<StringArray>(),
            ),
            Arc::new((start..end).map(|_| Some(-1i64)).collect::<Int64Array>()),
        ];
        let columns = columns
            .iter()
            .zip(schema.fields())
            .map(|(c, f)| cast(c, f.data_type()))
            .collect::<Result<Vec<_>, _>>()?;
        writer
            .write(RecordBatch::try_new(schema.clone(), columns)?)
            .await?;
        writer.flush_and_commit(&mut table).await?;
    }
    Ok(())
}

/// Primary Key upserts: a stream of `n` messages into a table already holding `keys` keys, with
/// 10% and with 90% of the messages updating a stored key (the rest inserting new ones), loaded
/// by one task; and the same stream appended to a Duplicate table of the same size, for the cost
/// of the merge.
async fn upserts(tb: &Testbed, client: &Client, ns: &str, keys: usize, n: usize) -> Result<Value> {
    let mut runs = Vec::new();
    for (name, model, updates) in [
        ("appends", "Duplicate", 0.1),
        ("upserts-10", "Primary", 0.1),
        ("upserts-90", "Primary", 0.9),
    ] {
        let topic = unique_name(&format!("bench-{name}"));
        tb.create_topic(&topic, 1).await?;
        let produced = {
            let (tb, topic) = (tb.clone(), topic.clone());
            tokio::task::spawn_blocking(move || {
                produce_messages(&tb, &topic, n, 1, |i| upsert_message(i, keys, updates))
            })
            .await??
        };
        let dir = std::env::temp_dir().join(unique_name("bench-upserts"));
        std::fs::create_dir_all(&dir)?;
        let mut table = json!({
            "location": format!("file://{}", dir.display()),
            "columns": upsert_table_columns(),
        });
        if model == "Primary" {
            table["model"] = json!("Primary");
            table["keys"] = json!(["id"]);
        }
        let t0 = Instant::now();
        preload_keys(&table, keys).await?;
        let preload_s = t0.elapsed().as_secs_f64();
        eprintln!("[upserts {name}] {keys} keys preloaded in {preload_s:.1}s; {produced}");
        let job = json!({"columnSeparator": ",", "columns": ["id", "v", "seq"]});
        let load = create_load_of(tb, client, ns, name, (dir, table), job, &topic, &[&[0]]).await?;
        let lp = json!({"namespace": ns, "tasks": load.tasks, "job": load.job, "rows": n});
        let e2e = tokio::task::spawn_blocking(move || run_child("load", &lp)).await??;
        eprintln!("[upserts {name}] {e2e}");
        let mut scan = TxnScan::new();
        scan.update(&load.dir)?;
        let txn = scan.committed(&load.job_uid, &[0]);
        if txn != n as i64 {
            bail!("{name}: the table's committed offset is {txn}, expected {n}");
        }
        // Appends add every message; upserts add the new keys only.
        let new_keys = (0..n)
            .filter(|i| upsert_key(*i, keys, updates) >= keys as u64)
            .count();
        let want_rows = keys + if model == "Primary" { new_keys } else { n };
        let rows = live_rows(&load.dir)?;
        if rows != want_rows as u64 {
            bail!("{name}: the table holds {rows} rows, expected {want_rows}");
        }
        let table_bytes = dir_size(&load.dir);
        let _ = std::fs::remove_dir_all(&load.dir);
        delete_topic(tb, &topic).await;
        let wall = e2e["wall_s"].as_f64().unwrap_or(f64::NAN);
        let cpu = e2e["cpu_s"].as_f64().unwrap_or(f64::NAN);
        runs.push(json!({
            "run": name,
            "model": model,
            "update_share": if model == "Primary" { json!(updates) } else { Value::Null },
            "stored_keys": keys,
            "messages": n,
            "table_rows_after": rows,
            "preload_s": preload_s,
            "rows_per_s": n as f64 / wall,
            "rows_per_cpu_s": n as f64 / cpu,
            "batches": e2e["batches"],
            "commit_s": e2e["commit_s"],
            "peak_rss_mib": kb_to_mib(e2e["peak_rss_kb"].as_u64().unwrap_or(0)),
            "table_bytes": table_bytes,
            "raw": e2e,
        }));
    }
    let appends = runs[0]["rows_per_s"].as_f64().unwrap_or(f64::NAN);
    for r in &mut runs {
        r["over_appends"] = json!(r["rows_per_s"].as_f64().unwrap_or(f64::NAN) / appends);
    }
    Ok(json!({"stored_keys": keys, "messages": n, "runs": runs}))
}

/// One Stream Load of `file` with curl, as the reference's examples do; the answer and the
/// wall time.
fn curl_stream_load(url: &str, token: &str, label: &str, file: &Path) -> Result<(Value, f64)> {
    let t0 = Instant::now();
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "600", "-u"])
        .arg(format!("bench:{token}"))
        .args(["-H", &format!("label:{label}"), "-H", "column_separator:,"])
        .args(["-H", &format!("columns: {}", WIKI_COLUMNS.join(","))])
        .args(["-H", "where: deleted >= 0", "-T"])
        .arg(file)
        .args(["-XPUT", url])
        .output()
        .context("running curl")?;
    let wall = t0.elapsed().as_secs_f64();
    let answer: Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "curl: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    if answer["Status"] != "Success" {
        bail!("Stream Load {label}: {answer}");
    }
    Ok((answer, wall))
}

/// The phases of one Stream Load in ms, from its answer and the client's wall time.
fn small_load_times(answer: &Value, wall_s: f64) -> Value {
    let ms = |k: &str| answer[k].as_f64().unwrap_or(0.0);
    json!({
        "client": wall_s * 1000.0,
        "load": ms("LoadTimeMs"),
        "label": ms("BeginTxnTimeMs"),
        "plan": ms("StreamLoadPlanTimeMs"),
        "read": ms("ReadDataTimeMs"),
        "write": ms("WriteDataTimeMs"),
        "commit": ms("CommitAndPublishTimeMs"),
    })
}

/// The median of every phase of [`small_load_times`] over `loads`.
fn median_times(loads: &[Value]) -> Value {
    let mut out = serde_json::Map::new();
    for k in ["client", "load", "label", "plan", "read", "write", "commit"] {
        let mut v: Vec<f64> = loads.iter().filter_map(|l| l[k].as_f64()).collect();
        v.sort_by(f64::total_cmp);
        out.insert(k.into(), json!(v.get(v.len() / 2).copied().unwrap_or(0.0)));
    }
    Value::Object(out)
}

/// Writes `rows` of the Wikipedia CSV data set (one per line) to `path`; returns the bytes.
fn write_wiki_csv(path: &Path, rows: usize) -> Result<u64> {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut bytes = 0;
    for i in 0..rows {
        let line = Dataset::Csv.message(i);
        bytes += line.len() as u64 + 1;
        writeln!(w, "{line}")?;
    }
    w.flush()?;
    Ok(bytes)
}

/// Stream Load through the worker's endpoint (in a child process): one CSV body of about
/// `big_mb` MB, then `small` loads of 100 rows one after another (labels per second), each
/// with its own label, into a Duplicate table of the Wikipedia rows on a local directory.
async fn stream_loads(
    tb: &Testbed,
    client: &Client,
    ns: &str,
    big_mb: usize,
    small: usize,
) -> Result<Value> {
    let dir = std::env::temp_dir().join(unique_name("bench-stream-load"));
    std::fs::create_dir_all(&dir)?;
    let table = "stream-load-bench";
    Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ar("Table", "tables"))
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "routineload.io/v1alpha1", "kind": "Table",
                "metadata": {"name": table},
                "spec": {"location": format!("file://{}", dir.display()), "columns": Dataset::Csv.table_columns()}
            }))?,
        )
        .await
        .context("create Table")?;
    let token = tb.loader_token(client, ns, "bench-loader", true).await?;
    let port = routine_load_e2e::installation::free_port()?;
    let stop = dir.join("stop");
    let server = spawn_child(
        "stream-load-server",
        &json!({"port": port, "stop": stop.display().to_string()}),
    )?;
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("the Stream Load server did not listen on {port} within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let url = format!("http://127.0.0.1:{port}/api/{ns}/{table}/_stream_load");

    let big_rows = big_mb * 1_000_000 / 150;
    let big = dir.join("big.csv");
    let big_bytes = write_wiki_csv(&big, big_rows)?;
    let (answer, big_wall) = {
        let (url, token, big) = (url.clone(), token.clone(), big.clone());
        tokio::task::spawn_blocking(move || curl_stream_load(&url, &token, "big-1", &big)).await??
    };
    if answer["NumberLoadedRows"].as_u64() != Some(big_rows as u64) {
        bail!(
            "the big load loaded {} of {big_rows} rows",
            answer["NumberLoadedRows"]
        );
    }
    eprintln!("[stream load] {big_bytes} bytes, {big_rows} rows in {big_wall:.2}s: {answer}");
    std::fs::remove_file(&big)?;

    let small_file = dir.join("small.csv");
    write_wiki_csv(&small_file, 100)?;
    let (small_wall, small_loads) = {
        let (url, token, small_file) = (url.clone(), token.clone(), small_file.clone());
        tokio::task::spawn_blocking(move || -> Result<(f64, Vec<Value>)> {
            let t0 = Instant::now();
            let mut loads = Vec::with_capacity(small);
            for i in 0..small {
                let (answer, wall) =
                    curl_stream_load(&url, &token, &format!("small-{i}"), &small_file)?;
                loads.push(small_load_times(&answer, wall));
            }
            Ok((t0.elapsed().as_secs_f64(), loads))
        })
        .await??
    };
    eprintln!("[stream load] {small} loads of 100 rows in {small_wall:.2}s");
    std::fs::write(&stop, b"")?;
    let usage = tokio::task::spawn_blocking(move || child_result(server)).await??;
    let mut scan = TxnScan::new();
    scan.update(&dir)?;
    let versions = scan.seen;
    let _ = std::fs::remove_dir_all(&dir);
    if versions < small as i64 + 1 {
        bail!(
            "the table has {versions} versions after {} loads",
            small + 1
        );
    }
    Ok(json!({
        "big": {
            "bytes": big_bytes,
            "rows": big_rows,
            "wall_s": big_wall,
            "rows_per_s": big_rows as f64 / big_wall,
            "mb_per_s": big_bytes as f64 / big_wall / 1e6,
            "answer": answer,
        },
        "small": {
            "loads": small,
            "rows_per_load": 100,
            "wall_s": small_wall,
            "loads_per_s": small as f64 / small_wall,
            // Medians (ms) over the first and the second half of the loads: where a small
            // load's time goes, and whether it grows with the table's versions.
            "first_half_ms": median_times(&small_loads[..small / 2]),
            "second_half_ms": median_times(&small_loads[small / 2..]),
        },
        "server": {
            "cpu_s": usage["cpu_s"],
            "peak_rss_mib": kb_to_mib(usage["peak_rss_kb"].as_u64().unwrap_or(0)),
        },
    }))
}

/// Several tasks on one worker: a 4-partition CSV topic loaded once by one task holding the four
/// partitions and once by two tasks of two partitions each, both in one process (one worker).
async fn scaling(tb: &Testbed, client: &Client, ns: &str, n: usize) -> Result<Value> {
    let ds = Dataset::Csv;
    let topic = unique_name("bench-scaling");
    tb.create_topic(&topic, 4).await?;
    eprintln!("[scaling] producing {n} messages to {topic} (4 partitions)");
    let produced = {
        let (tb, topic) = (tb.clone(), topic.clone());
        tokio::task::spawn_blocking(move || produce_dataset(&tb, &topic, ds, n, 4)).await??
    };
    let mut runs = Vec::new();
    let layouts: [(&str, &[&[i32]]); 2] = [
        ("one task, 4 partitions", &[&[0, 1, 2, 3]]),
        ("two tasks, 2 partitions each", &[&[0, 1], &[2, 3]]),
    ];
    for (i, (label, tasks)) in layouts.into_iter().enumerate() {
        let load = create_load(tb, client, ns, &format!("scaling-{i}"), ds, &topic, tasks).await?;
        let lp = json!({"namespace": ns, "tasks": load.tasks, "job": load.job, "rows": n});
        let r = tokio::task::spawn_blocking(move || run_child("load", &lp)).await??;
        eprintln!("[scaling] {label}: {r}");
        let mut scan = TxnScan::new();
        scan.update(&load.dir)?;
        let committed = scan.committed(&load.job_uid, &[0, 1, 2, 3]);
        if committed != n as i64 || r["loaded_rows"].as_u64() != Some(n as u64) {
            bail!(
                "scaling, {label}: the table's committed offsets add up to {committed} and {} rows were loaded, expected {n}",
                r["loaded_rows"]
            );
        }
        let _ = std::fs::remove_dir_all(&load.dir);
        let wall = r["wall_s"].as_f64().unwrap_or(f64::NAN);
        let cpu = r["cpu_s"].as_f64().unwrap_or(f64::NAN);
        runs.push(json!({
            "layout": label,
            "tasks": tasks.len(),
            "raw": r,
            "rows_per_s": n as f64 / wall,
            "rows_per_cpu_s": n as f64 / cpu,
            "cpu_cores_used": cpu / wall,
            "peak_rss_mib": kb_to_mib(r["peak_rss_kb"].as_u64().unwrap_or(0)),
        }));
    }
    delete_topic(tb, &topic).await;
    let one = runs[0]["rows_per_s"].as_f64().unwrap_or(f64::NAN);
    let two = runs[1]["rows_per_s"].as_f64().unwrap_or(f64::NAN);
    Ok(json!({
        "dataset": ds.name(),
        "topic": topic,
        "produced": produced,
        "runs": runs,
        "two_tasks_over_one": two / one,
    }))
}

/// Parquet encoding of one 200000-row batch of a data set (the engine's output for it) with the
/// writer settings worth comparing: milliseconds (best of 3) and bytes per setting.
fn parquet_settings(ds: Dataset, rows: usize) -> Result<Value> {
    use deltalake::parquet::arrow::ArrowWriter;
    use deltalake::parquet::basic::{Compression, ZstdLevel};
    use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
    use routine_load_api::{LoadPlan, RoutineLoadJobSpec, TableSpec};
    use routine_load_worker::engine::{LoadEngine, SourceMessage};

    let mut job = json!({"table": "t", "kafka": {"brokerList": "localhost:9092", "topic": "t"}});
    for (k, v) in ds.job_spec().as_object().context("job spec")? {
        job[k] = v.clone();
    }
    let job: RoutineLoadJobSpec = serde_json::from_value(job).context("job spec")?;
    let table: TableSpec = serde_json::from_value(
        json!({"location": "file:///tmp/parquet-settings", "columns": ds.table_columns()}),
    )
    .context("table spec")?;
    let plan = LoadPlan::build(&job, "t", &table).map_err(|e| anyhow::anyhow!("plan: {e}"))?;
    let mut engine = LoadEngine::new(Arc::new(plan));
    let payloads: Vec<String> = (0..rows).map(|i| ds.message(i)).collect();
    let messages: Vec<SourceMessage<'_>> = payloads
        .iter()
        .enumerate()
        .map(|(i, m)| SourceMessage {
            offset: i as i64,
            payload: m.as_bytes(),
            ..SourceMessage::default()
        })
        .collect();
    let batch = engine.load(&messages)?.batch;
    let base = || WriterProperties::builder().set_compression(Compression::SNAPPY);
    let settings: Vec<(&str, WriterProperties)> = vec![
        (
            "snappy, dictionary, page statistics (delta-rs default)",
            base().build(),
        ),
        (
            "snappy, no dictionary",
            base().set_dictionary_enabled(false).build(),
        ),
        (
            "snappy, chunk statistics only",
            base()
                .set_statistics_enabled(EnabledStatistics::Chunk)
                .build(),
        ),
        (
            "lz4_raw",
            base().set_compression(Compression::LZ4_RAW).build(),
        ),
        (
            "zstd level 1",
            base()
                .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
                .build(),
        ),
        (
            "uncompressed",
            base().set_compression(Compression::UNCOMPRESSED).build(),
        ),
        (
            "snappy, dictionary page limit 64 KiB",
            base().set_dictionary_page_size_limit(64 * 1024).build(),
        ),
        (
            "lz4_raw, no dictionary",
            base()
                .set_compression(Compression::LZ4_RAW)
                .set_dictionary_enabled(false)
                .build(),
        ),
        (
            "zstd level 1, no dictionary",
            base()
                .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
                .set_dictionary_enabled(false)
                .build(),
        ),
        (
            "uncompressed, no dictionary",
            base()
                .set_compression(Compression::UNCOMPRESSED)
                .set_dictionary_enabled(false)
                .build(),
        ),
    ];
    let mut out = Vec::new();
    for (label, props) in settings {
        let mut best = f64::MAX;
        let mut bytes = 0;
        for _ in 0..3 {
            let t0 = Instant::now();
            let mut w = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props.clone()))?;
            w.write(&batch)?;
            bytes = w.into_inner()?.len();
            best = best.min(t0.elapsed().as_secs_f64() * 1000.0);
        }
        out.push(json!({"setting": label, "ms": best, "bytes": bytes, "rows": batch.num_rows()}));
    }
    Ok(json!({"dataset": ds.name(), "rows": rows, "settings": out}))
}

fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_size(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

async fn delete_topic(tb: &Testbed, topic: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let Ok(c) = tb.kafka_config(Listener::Plaintext) else {
        return;
    };
    if let Ok(admin) = c.create::<AdminClient<DefaultClientContext>>() {
        let _ = admin.delete_topics(&[topic], &AdminOptions::new()).await;
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Produce-to-visible latency of CSV rows produced at `rate` per second for `secs` seconds.
async fn latency(
    tb: &Testbed,
    client: &Client,
    ns: &str,
    label: &str,
    rate: f64,
    secs: f64,
    interval_ms: Option<u64>,
) -> Result<Value> {
    let ds = Dataset::Csv;
    let topic = unique_name(&format!("bench-latency-{label}"));
    tb.create_topic(&topic, 1).await?;
    let load = create_load(
        tb,
        client,
        ns,
        &format!("latency-{label}"),
        ds,
        &topic,
        &[&[0]],
    )
    .await?;
    if !(rate.is_finite() && rate >= 1.0) {
        bail!("latency: no usable rate ({rate})");
    }
    // Rows sent in [2 s, secs) are measured; production goes on for one batch interval + 2 s
    // more so the measured rows are batched as in a steady stream.
    let interval_s = interval_ms.map(|m| m as f64 / 1000.0).unwrap_or(10.0);
    let total = (rate * (secs + interval_s + 2.0)) as usize;
    let mut params = json!({"namespace": ns, "tasks": load.tasks, "job": load.job, "rows": total});
    if let Some(ms) = interval_ms {
        params["interval_ms"] = json!(ms);
    }
    let child = spawn_child("load", &params)?;
    // Start producing once the worker has adopted (created) the table.
    let t_wait = Instant::now();
    while !load
        .dir
        .join("_delta_log/00000000000000000000.json")
        .exists()
    {
        if t_wait.elapsed() > Duration::from_secs(60) {
            bail!("the worker did not create the table in 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    eprintln!("[latency {label}] producing {total} rows at {rate:.0}/s");

    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let dir = load.dir.clone();
        let job_uid = load.job_uid.clone();
        let done = done.clone();
        std::thread::spawn(move || -> Result<Vec<(Instant, i64)>> {
            let mut scan = TxnScan::new();
            let mut txn = -1i64;
            let mut out = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(600);
            loop {
                let before = txn;
                scan.update(&dir)?;
                txn = scan.committed(&job_uid, &[0]);
                if txn > before {
                    out.push((Instant::now(), txn));
                }
                if txn >= total as i64 {
                    return Ok(out);
                }
                if done.load(Ordering::Relaxed) || Instant::now() > deadline {
                    bail!("rows visible up to offset {txn} of {total}");
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let (tb2, topic2) = (tb.clone(), topic.clone());
    let sent = tokio::task::spawn_blocking(move || -> Result<Vec<Instant>> {
        let p = producer(&tb2, "5")?;
        let mut times = Vec::with_capacity(total);
        let t0 = Instant::now();
        while times.len() < total {
            let due = ((t0.elapsed().as_secs_f64() * rate) as usize).min(total);
            while times.len() < due {
                let m = ds.message(times.len());
                send(&p, &topic2, 0, m.as_bytes())?;
                times.push(Instant::now());
            }
            p.poll(Duration::ZERO);
            std::thread::sleep(Duration::from_millis(1));
        }
        p.flush(Duration::from_secs(60))?;
        if p.context().failed.load(Ordering::Relaxed) > 0 {
            bail!("deliveries failed");
        }
        Ok(times)
    })
    .await??;
    let produce_secs = sent
        .last()
        .zip(sent.first())
        .map(|(l, f)| l.duration_since(*f).as_secs_f64())
        .unwrap_or(0.0);
    let visible = tokio::task::spawn_blocking(move || reader.join())
        .await?
        .map_err(|_| anyhow::anyhow!("reader panicked"))?;
    done.store(true, Ordering::Relaxed);
    let visible = visible?;
    let worker = tokio::task::spawn_blocking(move || child_result(child)).await??;
    let (_, high) = tb.watermarks(&topic, 0)?;
    if high != total as i64 {
        bail!("topic holds {high} messages, produced {total}");
    }
    // Latency per message (offset = index: one idempotent producer, one partition), skipping
    // the first 2 s of production (the worker's first fetch).
    let warmup = sent[0] + Duration::from_secs(2);
    let window_end = sent[0] + Duration::from_secs_f64(secs);
    let mut lat = Vec::with_capacity(total);
    let mut vi = 0;
    for (i, t) in sent.iter().enumerate() {
        while visible[vi].1 <= i as i64 {
            vi += 1;
        }
        if *t >= warmup && *t < window_end {
            lat.push(visible[vi].0.duration_since(*t).as_secs_f64());
        }
    }
    lat.sort_by(f64::total_cmp);
    let _ = std::fs::remove_dir_all(&load.dir);
    delete_topic(tb, &topic).await;
    Ok(json!({
        "measured_window_s": [2.0, secs],
        "label": label,
        "batch_interval_s": interval_s,
        "max_batch_rows": 200000,
        "target_rate_rows_per_s": rate,
        "achieved_rate_rows_per_s": total as f64 / produce_secs.max(1e-9),
        "rows": total,
        "measured_rows": lat.len(),
        "commits": visible.len(),
        "p50_s": percentile(&lat, 0.50),
        "p90_s": percentile(&lat, 0.90),
        "p99_s": percentile(&lat, 0.99),
        "max_s": lat.last().copied().unwrap_or(f64::NAN),
        "goal_p99_s": interval_s + 0.5,
        "worker": worker,
    }))
}

// ---------------------------------------------------------------------------------------------
// Report

fn cmd_out(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn lock_versions() -> BTreeMap<String, String> {
    let lock = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock"))
        .unwrap_or_default();
    let wanted = [
        "deltalake-core",
        "datafusion",
        "arrow",
        "parquet",
        "rdkafka",
        "rdkafka-sys",
        "kube",
        "tokio",
    ];
    let mut out = BTreeMap::new();
    let mut name: Option<String> = None;
    for line in lock.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"').to_string());
        } else if let Some(v) = line.strip_prefix("version = ")
            && let Some(n) = name.take()
            && wanted.contains(&n.as_str())
        {
            out.insert(n, v.trim_matches('"').to_string());
        }
    }
    out
}

async fn machine(tb: &Testbed, client: &Client) -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let (_, rdkafka_version) = rdkafka::util::get_rdkafka_version();
    let apiserver = client
        .apiserver_version()
        .await
        .map(|v| v.git_version)
        .unwrap_or_default();
    json!({
        "machine": {
            "cpu": model,
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "memory_mib": proc_meminfo_total_kb() / 1024,
            "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        },
        "versions": {
            "git_commit": cmd_out("git", &["rev-parse", "--short", "HEAD"]),
            "rustc": cmd_out("rustc", &["-V"]),
            "librdkafka": rdkafka_version,
            "kafka": tb.var("KAFKA_VERSION").unwrap_or(""),
            "kube_apiserver": apiserver,
            "crates": lock_versions(),
        },
    })
}

fn proc_meminfo_total_kb() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn f(v: &Value, digits: usize) -> String {
    match v.as_f64() {
        Some(x) if x.is_finite() => {
            if digits == 0 {
                let s = format!("{x:.0}");
                // thousands separators
                let (sign, d) = s.strip_prefix('-').map(|d| ("-", d)).unwrap_or(("", &s));
                let mut out = String::new();
                for (i, c) in d.chars().enumerate() {
                    if i > 0 && (d.len() - i) % 3 == 0 {
                        out.push(',');
                    }
                    out.push(c);
                }
                format!("{sign}{out}")
            } else {
                format!("{x:.digits$}")
            }
        }
        _ => "-".into(),
    }
}

fn markdown(r: &Value) -> String {
    let mut md = String::new();
    md.push_str("# Pipeline benchmark (`make bench`)\n\n");
    md.push_str(&format!(
        "Run {} on {} ({} cores, {} MiB), kernel {}; commit {}, {}, librdkafka {}, Kafka {}, kube-apiserver {}; crates {}.\n\n",
        r["started"].as_str().unwrap_or(""),
        r["machine"]["cpu"].as_str().unwrap_or(""),
        r["machine"]["cores"],
        r["machine"]["memory_mib"],
        r["machine"]["kernel"].as_str().unwrap_or(""),
        r["versions"]["git_commit"].as_str().unwrap_or(""),
        r["versions"]["rustc"].as_str().unwrap_or(""),
        r["versions"]["librdkafka"].as_str().unwrap_or(""),
        r["versions"]["kafka"].as_str().unwrap_or(""),
        r["versions"]["kube_apiserver"].as_str().unwrap_or(""),
        r["versions"]["crates"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| format!("{k} {}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(", "))
            .unwrap_or_default(),
    ));
    md.push_str("Commands:\n\n```sh\n");
    for c in r["commands"].as_array().into_iter().flatten() {
        md.push_str(c.as_str().unwrap_or(""));
        md.push('\n');
    }
    md.push_str("```\n\n");
    if let Some(rows) = r["throughput"].as_array() {
        md.push_str(
            "## Ceiling and end to end (one task, one partition, local Delta directory)\n\n",
        );
        md.push_str("| data set | msg bytes | rows | ceiling msg/s | ceiling MB/s | ceiling msg/CPU-s | StreamConsumer recv() loop msg/s | e2e rows/s | e2e rows/s after 1st commit | e2e MB/s | CPU s / M rows | rows/CPU-s | peak RSS MiB | e2e / ceiling | per CPU-s |\n");
        md.push_str(
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for t in rows {
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0}% | {:.0}% |\n",
                t["dataset"].as_str().unwrap_or(""),
                f(&t["produced"]["avg_message_bytes"], 0),
                f(&t["produced"]["messages"], 0),
                f(&t["ceiling"]["messages_per_s"], 0),
                f(&t["ceiling"]["mb_per_s"], 1),
                f(&t["ceiling"]["messages_per_cpu_s"], 0),
                f(&t["stream_consumer_loop"]["messages_per_s"], 0),
                f(&t["end_to_end"]["rows_per_s"], 0),
                f(&t["end_to_end"]["rows_per_s_after_first_commit"], 0),
                f(&t["end_to_end"]["mb_per_s"], 1),
                f(&t["end_to_end"]["cpu_s_per_million_rows"], 2),
                f(&t["end_to_end"]["rows_per_cpu_s"], 0),
                f(&t["end_to_end"]["peak_rss_mib"], 0),
                t["ratio_to_ceiling"].as_f64().unwrap_or(f64::NAN) * 100.0,
                t["ratio_to_ceiling_per_cpu_s"].as_f64().unwrap_or(f64::NAN) * 100.0,
            ));
        }
        md.push('\n');
    }
    if let Some(sets) = r["parquet"].as_array() {
        md.push_str("## Parquet writer settings (one 200000-row batch, encode time best of 3)\n\n");
        md.push_str("| data set | setting | encode ms | MB |\n|---|---|---:|---:|\n");
        for ds in sets {
            for st in ds["settings"].as_array().into_iter().flatten() {
                md.push_str(&format!(
                    "| {} | {} | {} | {} |\n",
                    ds["dataset"].as_str().unwrap_or(""),
                    st["setting"].as_str().unwrap_or(""),
                    f(&st["ms"], 0),
                    f(&json!(st["bytes"].as_f64().unwrap_or(0.0) / 1e6), 1),
                ));
            }
        }
        md.push('\n');
    }
    if let Some(runs) = r["scaling"]["runs"].as_array() {
        md.push_str(&format!(
            "## Several tasks on one worker (CSV, 4 partitions, one process): two tasks / one = {:.2}\n\n",
            r["scaling"]["two_tasks_over_one"].as_f64().unwrap_or(f64::NAN)
        ));
        md.push_str("| layout | rows/s | rows/CPU-s | CPU cores used | peak RSS MiB |\n");
        md.push_str("|---|---:|---:|---:|---:|\n");
        for run in runs {
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                run["layout"].as_str().unwrap_or(""),
                f(&run["rows_per_s"], 0),
                f(&run["rows_per_cpu_s"], 0),
                f(&run["cpu_cores_used"], 2),
                f(&run["peak_rss_mib"], 0),
            ));
        }
        md.push('\n');
    }
    if let Some(rows) = r["latency"].as_array() {
        md.push_str("## Produce-to-visible latency (CSV, half the measured CSV capacity)\n\n");
        md.push_str("| batch interval | target rows/s | achieved rows/s | commits | p50 s | p90 s | p99 s | max s | goal p99 s | worker peak RSS MiB |\n");
        md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for l in rows {
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                l["label"].as_str().unwrap_or(""),
                f(&l["target_rate_rows_per_s"], 0),
                f(&l["achieved_rate_rows_per_s"], 0),
                l["commits"],
                f(&l["p50_s"], 2),
                f(&l["p90_s"], 2),
                f(&l["p99_s"], 2),
                f(&l["max_s"], 2),
                f(&l["goal_p99_s"], 1),
                f(
                    &json!(kb_to_mib(l["worker"]["peak_rss_kb"].as_u64().unwrap_or(0))),
                    0
                ),
            ));
        }
        md.push('\n');
    }
    if r["stream_load"].is_object() {
        let s = &r["stream_load"];
        md.push_str(
            "## Stream Load (the worker's endpoint in one process, curl as the client)\n\n",
        );
        md.push_str("| load | rows | MB | wall s | rows/s | MB/s | loads/s |\n|---|---:|---:|---:|---:|---:|---:|\n");
        md.push_str(&format!(
            "| one CSV body | {} | {} | {} | {} | {} | - |\n",
            s["big"]["rows"],
            f(&json!(s["big"]["bytes"].as_f64().unwrap_or(0.0) / 1e6), 1),
            f(&s["big"]["wall_s"], 2),
            f(&s["big"]["rows_per_s"], 0),
            f(&s["big"]["mb_per_s"], 1),
        ));
        md.push_str(&format!(
            "| {} loads of 100 rows, one after another | {} | - | {} | - | - | {} |\n\n",
            s["small"]["loads"],
            s["small"]["loads"].as_u64().unwrap_or(0) * 100,
            f(&s["small"]["wall_s"], 2),
            f(&s["small"]["loads_per_s"], 1),
        ));
        md.push_str(&format!(
            "Server process: {} CPU s over both, peak RSS {} MiB. The big load's phases (ms): plan {}, read {}, write {}, commit {}.\n\n",
            f(&s["server"]["cpu_s"], 1),
            f(&s["server"]["peak_rss_mib"], 0),
            s["big"]["answer"]["StreamLoadPlanTimeMs"],
            s["big"]["answer"]["ReadDataTimeMs"],
            s["big"]["answer"]["WriteDataTimeMs"],
            s["big"]["answer"]["CommitAndPublishTimeMs"],
        ));
        md.push_str("A small load's median phases (ms): the client's wall time (curl, the token and RBAC checks, the label's `Load`, its status writes), the load's own `LoadTimeMs` (up to its outcome, before the outcome's status write), and its phases:\n\n");
        md.push_str("| loads | client | load | label (`Load` created) | plan (Table, Delta open) | read | write | commit |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for (half, key) in [
            ("first half", "first_half_ms"),
            ("second half", "second_half_ms"),
        ] {
            let t = &s["small"][key];
            md.push_str(&format!(
                "| {half} | {} | {} | {} | {} | {} | {} | {} |\n",
                f(&t["client"], 1),
                f(&t["load"], 1),
                f(&t["label"], 1),
                f(&t["plan"], 1),
                f(&t["read"], 1),
                f(&t["write"], 1),
                f(&t["commit"], 1),
            ));
        }
        md.push('\n');
    }
    if let Some(runs) = r["upserts"]["runs"].as_array() {
        md.push_str(&format!(
            "## Primary Key upserts (one task, {} messages into a table of {} keys)\n\n",
            r["upserts"]["messages"], r["upserts"]["stored_keys"]
        ));
        md.push_str("| run | model | updates | rows/s | rows/CPU-s | / appends | batches | commit s | peak RSS MiB |\n");
        md.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for u in runs {
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {:.2} | {} | {} | {} |\n",
                u["run"].as_str().unwrap_or(""),
                u["model"].as_str().unwrap_or(""),
                u["update_share"]
                    .as_f64()
                    .map_or("-".to_string(), |s| format!("{:.0}%", s * 100.0)),
                f(&u["rows_per_s"], 0),
                f(&u["rows_per_cpu_s"], 0),
                u["over_appends"].as_f64().unwrap_or(f64::NAN),
                u["batches"],
                f(&u["commit_s"], 1),
                f(&u["peak_rss_mib"], 0),
            ));
        }
        md.push('\n');
    }
    if r["scale"].is_object() {
        let s = &r["scale"];
        md.push_str("## Operator scale\n\n");
        md.push_str("| operator build | jobs x tasks | fake workers | time to all RUNNING s | reconciles | reconcile p50 s | reconcile p99 s | API req/s per job (steady) | API req/s per job (ramp) | operator RSS MiB | operator peak RSS MiB |\n");
        md.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        md.push_str(&format!(
            "| {} | {} x {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n\n",
            s["operator_binary_profile"].as_str().unwrap_or("-"),
            s["jobs"],
            s["tasks_per_job"],
            s["workers"],
            f(&s["all_running_s"], 1),
            s["reconciles"],
            s["reconcile_p50_s"].as_str().unwrap_or("-"),
            s["reconcile_p99_s"].as_str().unwrap_or("-"),
            f(&s["steady_requests_per_s_per_job"], 3),
            f(&s["ramp_requests_per_s_per_job"], 3),
            f(&s["operator_rss_mib"], 0),
            f(&s["operator_peak_rss_mib"], 0),
        ));
    }
    if let Some(notes) = r["notes"].as_array() {
        md.push_str("## Notes\n\n");
        for n in notes {
            md.push_str(&format!("- {}\n", n.as_str().unwrap_or("")));
        }
    }
    md
}

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn orchestrate(tb: Testbed) -> Result<()> {
    let client = tb.client().await?;
    tb.apply_crds()?;
    // Enough rows that the task runs for seconds, as a continuous load does: with 1M rows the
    // first batch (the table created, the start pinned, 200000 rows collected before anything
    // overlaps) was 40% of a one-second run.
    let rows = env_usize("BENCH_ROWS", 3_000_000);
    let wide_rows = env_usize("BENCH_WIDE_ROWS", 1_200_000);
    let phases = std::env::var("BENCH_PHASES")
        .unwrap_or_else(|_| "parquet,throughput,scaling,latency,streamload,upserts,scale".into());
    let started = cmd_out("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]);
    let mut report = machine(&tb, &client).await;
    report["started"] = json!(started);
    let exe = std::env::current_exe()?;
    report["commands"] = json!([
        "make bench   # = make bench-engine bench-pipeline",
        format!(
            "{}BENCH_ROWS={rows} BENCH_WIDE_ROWS={wide_rows} BENCH_PHASES={phases} cargo bench --workspace --bench pipeline",
            std::env::var("BENCH_CONSUMER_PROPS")
                .map(|p| format!("BENCH_CONSUMER_PROPS={p} "))
                .unwrap_or_default()
        ),
        format!(
            "{} __child ceiling '{{\"topic\":…,\"rows\":N}}'   # raw consume ceiling",
            exe.display()
        ),
        format!(
            "{} __child stream '{{\"topic\":…,\"rows\":N}}'   # an async StreamConsumer recv() loop",
            exe.display()
        ),
        format!(
            "{} __child load '{{\"namespace\":…,\"tasks\":[…],\"job\":…,\"rows\":N}}'   # worker task loops in one process (task_runner::run_task)",
            exe.display()
        ),
    ]);
    let ns = unique_name("bench");
    tb.ensure_namespace(&client, &ns).await?;

    let mut csv_capacity = None;
    if phases.contains("throughput") {
        let mut results = Vec::new();
        let only = std::env::var("BENCH_DATASETS").unwrap_or_default();
        for (ds, n) in [
            (Dataset::Csv, rows),
            (Dataset::Json, rows),
            (Dataset::Wide, wide_rows),
        ] {
            if !only.is_empty() && !only.split(',').any(|d| d == ds.name()) {
                continue;
            }
            let r = throughput(&tb, &client, &ns, ds, n).await?;
            if ds == Dataset::Csv {
                csv_capacity = r["end_to_end"]["rows_per_s_after_first_commit"]
                    .as_f64()
                    .filter(|c| {
                        c.is_finite()
                            && *c > 0.0
                            && r["end_to_end"]["raw"]["batches"].as_u64() > Some(1)
                    })
                    .or(r["end_to_end"]["rows_per_s"].as_f64());
            }
            results.push(r);
            report["throughput"] = Value::Array(results.clone());
            write_report(&report)?;
        }
    }
    if phases.contains("parquet") {
        let mut out = Vec::new();
        for ds in [Dataset::Csv, Dataset::Wide] {
            let r = tokio::task::spawn_blocking(move || parquet_settings(ds, 200_000)).await??;
            eprintln!("[parquet] {r}");
            out.push(r);
        }
        report["parquet"] = Value::Array(out);
        write_report(&report)?;
    }
    if phases.contains("scaling") {
        // A multiple of 2 tasks x 200000 rows (maxBatchRows), so every batch of both layouts
        // closes full instead of waiting out the batch interval at the end.
        let n = env_usize("BENCH_SCALING_ROWS", 1_200_000);
        report["scaling"] = scaling(&tb, &client, &ns, n).await?;
        write_report(&report)?;
    }
    if phases.contains("latency") {
        let capacity = match csv_capacity {
            Some(c) => c,
            None => std::env::var("BENCH_CAPACITY")
                .ok()
                .and_then(|v| v.parse().ok())
                .context("the latency phase needs the throughput phase or BENCH_CAPACITY")?,
        };
        let secs = env_usize("BENCH_LATENCY_SECS", 20) as f64;
        let rate = (capacity * 0.5).round();
        let mut out = Vec::new();
        for (label, interval) in [("default (10 s)", None), ("1 s", Some(1000))] {
            let key = if interval.is_some() { "1s" } else { "default" };
            let mut l = latency(&tb, &client, &ns, key, rate, secs, interval).await?;
            l["label"] = json!(label);
            eprintln!("[latency {key}] {l}");
            out.push(l);
            report["latency"] = Value::Array(out.clone());
            write_report(&report)?;
        }
    }
    if phases.contains("streamload") {
        let big_mb = env_usize("BENCH_STREAM_LOAD_MB", 100);
        let small = env_usize("BENCH_STREAM_LOAD_SMALL", 200);
        report["stream_load"] = stream_loads(&tb, &client, &ns, big_mb, small).await?;
        write_report(&report)?;
    }
    if phases.contains("upserts") {
        let keys = env_usize("BENCH_UPSERT_KEYS", 10_000_000);
        let n = env_usize("BENCH_UPSERT_ROWS", 1_000_000);
        report["upserts"] = upserts(&tb, &client, &ns, keys, n).await?;
        write_report(&report)?;
    }
    if phases.contains("scale") {
        let jobs = env_usize("BENCH_SCALE_JOBS", 200);
        let steady = env_usize("BENCH_SCALE_STEADY_SECS", 60);
        report["scale"] = scale::run(&tb, &client, jobs, steady as u64).await?;
        write_report(&report)?;
    }
    report["notes"] = json!(notes());
    write_report(&report)?;
    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .delete(&ns, &DeleteParams::default())
        .await;
    println!("{}", markdown(&report));
    Ok(())
}

fn notes() -> Vec<String> {
    vec![
        "Every measured phase runs alone in a child process; CPU seconds are the process's user+system time (/proc/self/stat) from the task start to the commit holding the last offset; peak RSS is VmHWM of that process.".into(),
        "e2e rows/s = rows / (task start -> committed Delta version holding the last offset), so it includes reading the Job/Table/Task, adopting the Delta table and the first fetch; 'after 1st commit' excludes the first batch.".into(),
        "Jobs use the defaults (maxBatchRows 200000, maxBatchInterval 10 s, strict mode) and a WHERE every row passes, so decode, map, filter and cast all run; status patches go to the real API server.".into(),
        "Ceiling = BaseConsumer.poll() loop over the same topic (assign at offset 0, payload length only), same librdkafka defaults as the worker; run twice, the faster run counts.".into(),
        "Latency = time from the producer's send() to the moment a reader polling _delta_log every 2 ms sees a committed version whose txn offset covers the row; rows sent between 2 s and BENCH_LATENCY_SECS are measured, and production goes on for one batch interval + 2 s after that so they are batched as in a steady stream.".into(),
        "Kafka (one broker), the API server, etcd and the benchmark share the same cores with the worker.".into(),
        "StreamConsumer loop = an async StreamConsumer with timeout_at(recv()) per message and the payload copied (how the worker consumed before it polled a BaseConsumer on the loop's blocking thread), no decode or write: what a wake-up per message costs next to the ceiling.".into(),
    ]
}

fn write_report(r: &Value) -> Result<()> {
    let base = std::env::var("BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/results/pipeline")
        });
    if let Some(d) = base.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(
        base.with_extension("json"),
        serde_json::to_string_pretty(r)? + "\n",
    )?;
    std::fs::write(base.with_extension("md"), markdown(r))?;
    Ok(())
}

mod scale {
    //! The operator binary against the API server with `jobs` jobs x 3 tasks and fake workers
    //! (Leases). The operator runs as its own ServiceAccount, matched by a FlowSchema of its own,
    //! so `apiserver_flowcontrol_dispatched_requests_total{flow_schema}` counts exactly its
    //! requests (watch starts included).

    use super::*;
    use kube::ResourceExt;
    use kube::api::{Patch, PatchParams};
    use routine_load_e2e::process::workspace_binary;
    use std::io::{Read, Write};

    fn dyn_api(
        client: &Client,
        ns: Option<&str>,
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
    ) -> Api<DynamicObject> {
        let ar =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        match ns {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        }
    }

    /// HTTP requests seen on the operator's connections to the API server, by method and
    /// resource ("PATCH routineloadjobs/status"; watch requests as WATCH: each is one
    /// long-running request).
    #[derive(Default)]
    pub struct RequestCounter {
        by_kind: std::sync::Mutex<BTreeMap<String, u64>>,
    }

    /// The resource of an API path: `leases`, `routineloadjobs/status`, ... (the segment after
    /// the namespace, or after the group version for a cluster-wide request, plus a
    /// subresource).
    fn resource_of(path: &str) -> String {
        let path = path.split('?').next().unwrap_or(path);
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        // api/v1/... or apis/<group>/<version>/...
        let rest = match segs.first() {
            Some(&"api") => &segs[segs.len().min(2)..],
            Some(&"apis") => &segs[segs.len().min(3)..],
            _ => return path.to_string(),
        };
        let rest = match rest {
            ["namespaces", _ns, tail @ ..] if !tail.is_empty() => tail,
            r => r,
        };
        match rest {
            [plural] | [plural, _] => plural.to_string(),
            [plural, _, sub, ..] => format!("{plural}/{sub}"),
            [] => "-".into(),
        }
    }

    impl RequestCounter {
        fn add(&self, line: &[u8]) {
            let line = String::from_utf8_lossy(line);
            let mut parts = line.split(' ');
            let method = parts.next().unwrap_or("?").to_string();
            let resource = resource_of(parts.next().unwrap_or(""));
            let kind = if line.contains("watch=true") || line.contains("watch=1") {
                format!("WATCH {resource}")
            } else {
                format!("{method} {resource}")
            };
            *self
                .by_kind
                .lock()
                .expect("counter")
                .entry(kind)
                .or_default() += 1;
        }

        pub fn snapshot(&self) -> BTreeMap<String, u64> {
            self.by_kind.lock().expect("counter").clone()
        }
    }

    fn total(m: &BTreeMap<String, u64>) -> f64 {
        m.values().sum::<u64>() as f64
    }

    fn diff(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
        b.iter()
            .map(|(k, v)| (k.clone(), v - a.get(k).copied().unwrap_or(0)))
            .collect()
    }

    /// `kubectl proxy` (plain HTTP on loopback, the admin's credentials) behind a TCP relay that
    /// counts HTTP/1.1 request lines from the client. Returns the relay's URL.
    async fn counting_proxy(
        tb: &Testbed,
        counter: Arc<RequestCounter>,
    ) -> Result<(String, std::process::Child)> {
        let proxy_port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = tb
            .kubectl()
            .args([
                "proxy",
                "--address=127.0.0.1",
                &format!("--port={proxy_port}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("kubectl proxy")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", proxy_port)).is_err() {
            if Instant::now() > deadline {
                bail!("kubectl proxy did not listen on {proxy_port}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let Ok(up) = tokio::net::TcpStream::connect(("127.0.0.1", proxy_port)).await
                    else {
                        return;
                    };
                    let (mut down_r, mut down_w) = down.into_split();
                    let (mut up_r, mut up_w) = up.into_split();
                    let back = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut up_r, &mut down_w).await;
                    });
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    const END: &[u8] = b" HTTP/1.1\r\n";
                    const METHODS: [&[u8]; 5] =
                        [b"GET /", b"POST /", b"PUT /", b"PATCH /", b"DELETE /"];
                    let mut carry: Vec<u8> = Vec::new();
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match down_r.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if up_w.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        let old = carry.len();
                        carry.extend_from_slice(&buf[..n]);
                        let mut i = 0;
                        while i + END.len() <= carry.len() {
                            if &carry[i..i + END.len()] == END && i + END.len() > old {
                                let head = &carry[..i];
                                let start = METHODS
                                    .iter()
                                    .filter_map(|m| head.windows(m.len()).rposition(|w| w == *m))
                                    .max();
                                if let Some(s) = start {
                                    counter.add(&carry[s..i]);
                                }
                            }
                            i += 1;
                        }
                        let keep = carry.len().saturating_sub(4096);
                        carry.drain(..keep);
                    }
                    let _ = up_w.shutdown().await;
                    back.abort();
                });
            }
        });
        Ok((url, child))
    }

    fn http_get(addr: &str, path: &str) -> Result<String> {
        let mut s = std::net::TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or(out))
    }

    /// (count, [(le, cumulative)]) of the reconcile histogram, all controllers together, and
    /// per controller.
    fn reconcile_histogram(metrics: &str) -> BTreeMap<String, Vec<(f64, f64)>> {
        let mut by: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
        for l in metrics.lines() {
            let Some(rest) =
                l.strip_prefix("routine_load_operator_reconcile_duration_seconds_bucket{")
            else {
                continue;
            };
            let Some((labels, value)) = rest.split_once("} ") else {
                continue;
            };
            let mut controller = String::new();
            let mut le = String::new();
            for kv in labels.split(',') {
                if let Some((k, v)) = kv.split_once('=') {
                    let v = v.trim_matches('"').to_string();
                    match k {
                        "controller" => controller = v,
                        "le" => le = v,
                        _ => {}
                    }
                }
            }
            let v: f64 = value.trim().parse().unwrap_or(0.0);
            *by.entry(controller)
                .or_default()
                .entry(le.clone())
                .or_default() += v;
            *by.entry("all".into()).or_default().entry(le).or_default() += v;
        }
        by.into_iter()
            .map(|(c, b)| {
                let mut v: Vec<(f64, f64)> = b
                    .into_iter()
                    .map(|(le, n)| {
                        (
                            if le == "+Inf" {
                                f64::INFINITY
                            } else {
                                le.parse().unwrap_or(f64::NAN)
                            },
                            n,
                        )
                    })
                    .collect();
                v.sort_by(|a, b| a.0.total_cmp(&b.0));
                (c, v)
            })
            .collect()
    }

    /// The bucket bound holding quantile `q`, as text ("<= 0.05").
    fn bucket_quantile(b: &[(f64, f64)], q: f64) -> String {
        let total = b.last().map(|x| x.1).unwrap_or(0.0);
        if total == 0.0 {
            return "-".into();
        }
        for (le, n) in b {
            if *n >= q * total {
                return if le.is_infinite() {
                    "> 10".into()
                } else {
                    format!("<= {le}")
                };
            }
        }
        "-".into()
    }

    pub async fn run(tb: &Testbed, client: &Client, jobs: usize, steady: u64) -> Result<Value> {
        let ns = unique_name("bench-scale");
        tb.ensure_namespace(client, &ns).await?;
        let pp = PostParams::default();
        let counter = Arc::new(RequestCounter::default());
        let (api_url, mut kubectl_proxy) = counting_proxy(tb, counter.clone()).await?;
        let kubeconfig = std::env::temp_dir().join(format!("{ns}.kubeconfig"));
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters: [{{name: relay, cluster: {{server: \"{api_url}\"}}}}]\nusers: [{{name: relay, user: {{}}}}]\ncontexts: [{{name: relay, context: {{cluster: relay, user: relay}}}}]\ncurrent-context: relay\n"
            ),
        )?;

        let topic = unique_name("bench-scale");
        tb.create_topic(&topic, 3).await?;
        let tasks_per_job = 3;
        let per_worker = 32;
        let workers = (jobs * tasks_per_job).div_ceil(per_worker) + 2;
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
            Api::namespaced(client.clone(), &ns);
        let renew = Arc::new(AtomicBool::new(true));
        let lease_body = |name: &str| {
            json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "labels": {"routineload.io/worker": name}},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": 30,
                         "renewTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(k8s_openapi::jiff::Timestamp::now())}
            })
        };
        let lpp = PatchParams::apply("bench-fake-worker").force();
        for w in 0..workers {
            let name = format!("worker-{w}");
            leases
                .patch(&name, &lpp, &Patch::Apply(lease_body(&name)))
                .await?;
        }
        {
            let (leases, renew, lpp) = (leases.clone(), renew.clone(), lpp.clone());
            tokio::spawn(async move {
                while renew.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    for w in 0..workers {
                        let name = format!("worker-{w}");
                        let _ = leases
                            .patch(&name, &lpp, &Patch::Apply(lease_body(&name)))
                            .await;
                    }
                }
            });
        }

        // BENCH_OPERATOR_BIN: another operator binary (say an older build, for a before/after).
        let chosen = std::env::var_os("BENCH_OPERATOR_BIN").map(PathBuf::from);
        let profile = if chosen.is_some() {
            "BENCH_OPERATOR_BIN"
        } else if workspace_binary_in("release", "routine-load-operator") {
            "release"
        } else {
            "debug"
        };
        let bin = if let Some(p) = chosen {
            p
        } else {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
            let p = target.join(profile).join("routine-load-operator");
            if p.is_file() {
                p
            } else {
                workspace_binary("routine-load-operator")?
            }
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = format!("127.0.0.1:{port}");
        let env: BTreeMap<String, String> = [
            ("POD_NAME", format!("operator-{ns}")),
            ("ROUTINE_LOAD_WATCH_NAMESPACE", ns.clone()),
            ("ROUTINE_LOAD_HTTP_ADDR", addr.clone()),
            ("ROUTINE_LOAD_MAX_TASKS_PER_WORKER", per_worker.to_string()),
            ("RUST_LOG", "warn".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let c0 = counter.snapshot();
        let mut cmd = Command::new(&bin);
        for (k, v) in tb.child_env() {
            cmd.env(k, v);
        }
        cmd.envs(&env)
            .env("KUBECONFIG", &kubeconfig)
            .env("POD_NAMESPACE", &ns);
        let mut operator = tb.spawn("bench-operator", cmd)?;
        let pid = operator.pid().context("operator pid")?.to_string();
        let t0 = Instant::now();

        let tables = dyn_api(
            client,
            Some(&ns),
            "routineload.io",
            "v1alpha1",
            "Table",
            "tables",
        );
        let jobs_api = dyn_api(
            client,
            Some(&ns),
            "routineload.io",
            "v1alpha1",
            "RoutineLoadJob",
            "routineloadjobs",
        );
        let tasks_api = dyn_api(
            client,
            Some(&ns),
            "routineload.io",
            "v1alpha1",
            "RoutineLoadTask",
            "routineloadtasks",
        );
        let base = std::env::temp_dir().join(unique_name("bench-scale-tables"));
        for j in 0..jobs {
            let name = format!("job-{j:03}");
            tables
                .create(&pp, &serde_json::from_value(json!({
                    "apiVersion": "routineload.io/v1alpha1", "kind": "Table",
                    "metadata": {"name": name},
                    "spec": {"location": format!("file://{}/{name}", base.display()),
                             "columns": [{"name": "k", "type": "INT"}, {"name": "v", "type": "STRING"}]}
                }))?)
                .await?;
            jobs_api
                .create(&pp, &serde_json::from_value(json!({
                    "apiVersion": "routineload.io/v1alpha1", "kind": "RoutineLoadJob",
                    "metadata": {"name": name},
                    "spec": {"table": name, "columnSeparator": ",", "desiredConcurrentNumber": tasks_per_job,
                             "kafka": {"brokerList": tb.var("KAFKA_BROKERS")?, "topic": topic}}
                }))?)
                .await?;
        }
        let created_s = t0.elapsed().as_secs_f64();
        eprintln!("[scale] created {jobs} tables and jobs in {created_s:.1} s");
        let lp = kube::api::ListParams::default();
        let all_running = loop {
            let js = jobs_api.list(&lp).await?;
            let running = js
                .items
                .iter()
                .filter(|j| j.data["status"]["state"] == "RUNNING")
                .count();
            let ntasks = tasks_api.list(&lp).await?.items.len();
            if running == jobs && ntasks == jobs * tasks_per_job {
                break t0.elapsed().as_secs_f64();
            }
            if t0.elapsed() > Duration::from_secs(600) || !operator.is_running() {
                bail!(
                    "after {:?}: {running} of {jobs} jobs RUNNING, {ntasks} tasks; operator log {}",
                    t0.elapsed(),
                    operator.log_path().display()
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        eprintln!(
            "[scale] all {jobs} jobs RUNNING with {} tasks after {all_running:.1} s",
            jobs * tasks_per_job
        );
        let c1 = counter.snapshot();
        tokio::time::sleep(Duration::from_secs(steady)).await;
        let c2 = counter.snapshot();
        let rss_kb = proc_status_kb(&pid, "VmRSS");
        let hwm_kb = proc_status_kb(&pid, "VmHWM");
        let metrics = http_get(&addr, "/metrics").unwrap_or_default();
        let hist = reconcile_histogram(&metrics);
        let reconciles: f64 = hist
            .get("all")
            .and_then(|b| b.last())
            .map(|x| x.1)
            .unwrap_or(0.0);
        let per_controller: serde_json::Map<String, Value> = hist
            .iter()
            .map(|(c, b)| {
                (
                    c.clone(),
                    json!({
                        "count": b.last().map(|x| x.1).unwrap_or(0.0),
                        "p50_s": bucket_quantile(b, 0.5),
                        "p99_s": bucket_quantile(b, 0.99),
                    }),
                )
            })
            .collect();
        let all = hist.get("all").cloned().unwrap_or_default();
        let _ = operator.stop(Duration::from_secs(10));
        renew.store(false, Ordering::Relaxed);
        // With the operator gone nothing removes the Tables' and tasks' finalizers: drop them,
        // or the namespace would stay Terminating.
        let unfinalize = json!({ "metadata": { "finalizers": null } });
        for api in [&tables, &tasks_api] {
            if let Ok(list) = api.list(&lp).await {
                for o in list.items {
                    let _ = api
                        .patch(
                            &o.name_any(),
                            &PatchParams::default(),
                            &Patch::Merge(&unfinalize),
                        )
                        .await;
                }
            }
        }
        let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
            .delete(&ns, &DeleteParams::default())
            .await;
        let _ = kubectl_proxy.kill();
        let _ = kubectl_proxy.wait();
        let _ = std::fs::remove_file(&kubeconfig);
        delete_topic(tb, &topic).await;
        let _ = std::fs::remove_dir_all(&base);
        Ok(json!({
            "jobs": jobs, "tasks_per_job": tasks_per_job, "workers": workers,
            "max_tasks_per_worker": per_worker,
            "operator_binary_profile": profile,
            "operator_binary": bin.display().to_string(),
            "create_objects_s": created_s,
            "all_running_s": all_running,
            "reconciles": reconciles,
            "reconcile_p50_s": bucket_quantile(&all, 0.5),
            "reconcile_p99_s": bucket_quantile(&all, 0.99),
            "reconcile_by_controller": per_controller,
            "api_counting": "operator -> counting TCP relay -> kubectl proxy -> API server; HTTP/1.1 request lines, watches counted once each",
            "requests_ramp": diff(&c0, &c1),
            "requests_steady": diff(&c1, &c2),
            "steady_window_s": steady,
            "ramp_requests_per_s_per_job": total(&diff(&c0, &c1)) / all_running / jobs as f64,
            "steady_requests_per_s_per_job": total(&diff(&c1, &c2)) / steady as f64 / jobs as f64,
            "operator_rss_mib": kb_to_mib(rss_kb),
            "operator_peak_rss_mib": kb_to_mib(hwm_kb),
        }))
    }

    fn workspace_binary_in(profile: &str, name: &str) -> bool {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
        target.join(profile).join(name).is_file()
    }
}
