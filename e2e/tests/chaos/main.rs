//! The chaos campaign (`make chaos`): the whole system under a seeded schedule of faults while
//! data flows, then a proof from the tables alone that every message that should load loaded
//! exactly once.
//!
//! - Six jobs at once on their own topics (CSV and JSON; 1, 3 and 8 partitions;
//!   desiredConcurrentNumber 1..4; a WHERE; a derived column; 1% bad rows; one `s3://` table on
//!   the testbed MinIO reached through a cuttable proxy; one topic on a private broker whose
//!   advertised listener is a cuttable proxy), producers at a steady rate throughout,
//!   two operator replicas (leader election) and four workers, each worker reaching the API
//!   server through a proxy of its own.
//! - Faults drawn from `SEED` (a splitmix64 PRNG): every kind once in a seeded order, then
//!   weighted draws, `FAULTS` in all, spread over `DURATION` seconds. Each is logged with its
//!   injection and heal time.
//! - The checker ([`check`]): after the last fault the producers stop and every job must be
//!   RUNNING with its progress at the end of every partition within a bound; then each table is
//!   read with the independent reader and compared with what was produced (0 duplicates,
//!   0 gaps, nothing extra, the committed offsets at the ends), `status.statistic` must equal
//!   what the reader counts, and no process log may contain `panicked`.
//! - The result goes to `bench/results/chaos-<seed>.md`; any failure fails the test.
//!
//! Knobs: `SEED` (default 20261201), `FAULTS` (17: each of the 17 kinds once in a seeded order;
//! more add weighted draws, `make chaos` runs 100), `DURATION` (seconds of the fault phase, default 10 per fault; a fault that lasts longer
//! than its slot pushes the next one back), `CHAOS_WORKER_BIN` / `CHAOS_OPERATOR_BIN` (binaries to run instead of
//! the workspace's, e.g. a deliberately broken worker), `CHAOS_KINDS` (a comma-separated subset
//! of fault kinds).

mod check;
mod components;
mod rng;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, PostParams};
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use routine_load_e2e::installation::{Installation, JOB, TABLE, free_port};
use routine_load_e2e::kafka::Listener;
use routine_load_e2e::process::workspace_binary;
use routine_load_e2e::proxy::Proxy;
use routine_load_e2e::routed_broker::RoutedBroker;
use routine_load_e2e::{LocalProcess, Testbed, testbed_or_skip, testbed_script, unique_name};
use serde_json::{Value, json};

use rng::Rng;

/// How long after the last fault every job must be RUNNING and caught up.
const SETTLE_BOUND: Duration = Duration::from_secs(240);
/// How long after that the counters may take to equal the reader's counts.
const COUNTER_BOUND: Duration = Duration::from_secs(90);
const WORKER_LEASE: Duration = Duration::from_secs(20);
const OPERATOR_LEASE: Duration = Duration::from_secs(15);
const BATCH_INTERVAL_MS: &str = "2000";
const MAX_ERRORS: [i64; 2] = [100_000, 100_001];
/// Two spellings of one predicate: an edit restarts the task loops without changing which rows
/// load, so the expected set stays exact.
const WHERES: [&str; 2] = ["id % 10 <> 3", "NOT (id % 10 = 3)"];
const MAX_PARTITIONS: i32 = 12;

fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

pub struct Config {
    pub seed: u64,
    pub faults: usize,
    pub duration: Duration,
    pub worker_bin: PathBuf,
    pub operator_bin: PathBuf,
    pub kinds: Vec<&'static str>,
}

impl Config {
    fn from_env() -> Config {
        let seed = env_u64("SEED", 20_261_201);
        let faults = env_u64("FAULTS", 17) as usize;
        let duration = Duration::from_secs(env_u64("DURATION", 10 * faults as u64));
        let worker_bin = match std::env::var_os("CHAOS_WORKER_BIN") {
            Some(p) => PathBuf::from(p),
            None => workspace_binary("routine-load-worker").expect("worker binary"),
        };
        let operator_bin = match std::env::var_os("CHAOS_OPERATOR_BIN") {
            Some(p) => PathBuf::from(p),
            None => workspace_binary("routine-load-operator").expect("operator binary"),
        };
        let kinds = match std::env::var("CHAOS_KINDS") {
            Ok(list) if !list.trim().is_empty() => {
                let wanted: Vec<String> = list.split(',').map(|s| s.trim().to_string()).collect();
                KINDS
                    .iter()
                    .map(|(k, _)| *k)
                    .filter(|k| wanted.iter().any(|w| w == k))
                    .collect()
            }
            _ => KINDS.iter().map(|(k, _)| *k).collect(),
        };
        Config {
            seed,
            faults,
            duration,
            worker_bin,
            operator_bin,
            kinds,
        }
    }
}

/// Fault kinds and their weights after the first round.
pub const KINDS: &[(&str, u64)] = &[
    ("kill-worker", 3),
    ("kill-leader", 2),
    ("kill-follower", 1),
    ("stop-leader", 1),
    ("stop-worker", 1),
    ("restart-kafka", 1),
    ("restart-minio", 1),
    ("restart-apiserver", 1),
    ("cut-s3", 2),
    ("cut-api", 1),
    ("cut-kafka", 2),
    ("add-partitions", 1),
    ("edit-where", 2),
    ("edit-max-error", 2),
    ("pause-resume", 2),
    ("scale-workers", 2),
    ("delete-records", 1),
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    Csv,
    Json,
}

/// One produced message, as the producer saw its delivery.
#[derive(Clone, Debug)]
pub struct Msg {
    pub id: i64,
    pub partition: i32,
    /// None: the delivery failed, so the message may or may not be in Kafka.
    pub offset: Option<i64>,
    pub bad: bool,
}

#[derive(Default)]
pub struct TopicLog {
    pub msgs: Vec<Msg>,
    /// Per partition: the offset after the last delivered message.
    pub next: BTreeMap<i32, i64>,
}

pub struct Topic {
    pub name: String,
    pub format: Format,
    pub partitions: AtomicI32,
    pub rate: u32,
    pub log: Mutex<TopicLog>,
    producer: FutureProducer,
}

/// 1% bad rows: an id that is not a number, which the NOT NULL BIGINT column rejects.
pub fn is_bad(id: i64) -> bool {
    id % 100 == 37
}

/// Rows the WHERE job filters out (never bad ones: 37 % 10 = 7).
pub fn is_filtered(id: i64) -> bool {
    id % 10 == 3
}

fn payload(format: Format, id: i64) -> String {
    match (format, is_bad(id)) {
        (Format::Csv, false) => format!("{id},v{id}"),
        (Format::Csv, true) => format!("x{id},bad"),
        (Format::Json, false) => format!(r#"{{"id":{id},"v":"v{id}"}}"#),
        (Format::Json, true) => format!(r#"{{"id":"x{id}","v":"bad"}}"#),
    }
}

async fn produce_loop(topic: Arc<Topic>, stop: Arc<AtomicBool>) {
    let per_tick = (topic.rate / 10).max(1) as i64;
    let mut next_id = 0i64;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::SeqCst) {
        tick.tick().await;
        let parts = topic.partitions.load(Ordering::SeqCst) as i64;
        let batch: Vec<(i64, i32, String)> = (next_id..next_id + per_tick)
            .map(|id| (id, (id % parts) as i32, payload(topic.format, id)))
            .collect();
        next_id += per_tick;
        let sends = batch.iter().map(|(_, p, body)| {
            topic.producer.send(
                FutureRecord::<(), str>::to(&topic.name)
                    .partition(*p)
                    .payload(body.as_str()),
                Duration::from_secs(120),
            )
        });
        let results = futures::future::join_all(sends).await;
        let mut log = topic.log.lock().unwrap();
        for ((id, p, _), r) in batch.iter().zip(results) {
            let offset = match r {
                Ok(d) => {
                    let n = log.next.entry(d.partition).or_insert(0);
                    *n = (*n).max(d.offset + 1);
                    Some(d.offset)
                }
                Err(_) => None,
            };
            log.msgs.push(Msg {
                id: *id,
                partition: *p,
                offset,
                bad: is_bad(*id),
            });
        }
    }
}

pub struct JobDef {
    pub name: &'static str,
    pub format: Format,
    pub partitions: i32,
    pub concurrency: i32,
    pub rate: u32,
    pub filter: bool,
    pub derived: bool,
    pub s3: bool,
    /// `kafka.partitions` given: the DeleteRecords target (its start can be moved by an edit).
    pub explicit: bool,
    /// On a private broker whose advertised listener is a cuttable proxy (the `cut-kafka` fault).
    pub routed: bool,
}

pub const JOBS: &[JobDef] = &[
    JobDef {
        name: "csv-1p",
        format: Format::Csv,
        partitions: 1,
        concurrency: 1,
        rate: 30,
        filter: false,
        derived: false,
        s3: false,
        explicit: true,
        routed: false,
    },
    JobDef {
        name: "csv-3p-where",
        format: Format::Csv,
        partitions: 3,
        concurrency: 2,
        rate: 40,
        filter: true,
        derived: false,
        s3: false,
        explicit: false,
        routed: false,
    },
    JobDef {
        name: "json-8p",
        format: Format::Json,
        partitions: 8,
        concurrency: 4,
        rate: 50,
        filter: false,
        derived: false,
        s3: false,
        explicit: false,
        routed: false,
    },
    JobDef {
        name: "csv-8p-derived",
        format: Format::Csv,
        partitions: 8,
        concurrency: 3,
        rate: 50,
        filter: false,
        derived: true,
        s3: false,
        explicit: false,
        routed: false,
    },
    JobDef {
        name: "json-3p-s3",
        format: Format::Json,
        partitions: 3,
        concurrency: 2,
        rate: 30,
        filter: false,
        derived: false,
        s3: true,
        explicit: false,
        routed: false,
    },
    JobDef {
        name: "csv-3p-routed",
        format: Format::Csv,
        partitions: 3,
        concurrency: 1,
        rate: 20,
        filter: false,
        derived: false,
        s3: false,
        explicit: false,
        routed: true,
    },
];

pub struct JobRun {
    pub def: &'static JobDef,
    pub topic: Arc<Topic>,
    pub location: String,
    pub uid: String,
    /// (partition, from, to): offsets `from..to` removed by DeleteRecords before they loaded.
    pub deleted: Vec<(i32, i64, i64)>,
    pub where_idx: usize,
    pub max_err_idx: usize,
}

struct Worker {
    name: String,
    process: Option<LocalProcess>,
    api: Proxy,
    kubeconfig: PathBuf,
}

struct Operator {
    name: String,
    process: Option<LocalProcess>,
}

/// One injected fault.
#[derive(Clone, Debug)]
pub struct FaultRecord {
    pub n: usize,
    pub kind: &'static str,
    pub target: String,
    pub t_inject: f64,
    pub t_heal: f64,
    pub detail: String,
    /// The producers' next offsets (job -> partition -> offset) when the fault healed.
    pub marks: BTreeMap<String, BTreeMap<i32, i64>>,
    /// Seconds from the injection until every job's progress covered `marks`.
    pub recovered: Option<f64>,
    /// What the fault's own checks saw go wrong (a failure of the campaign).
    pub failure: Option<String>,
}

/// A sample of every job's progress (status.progress) and state.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub t: f64,
    pub progress: BTreeMap<String, BTreeMap<i32, i64>>,
    pub states: BTreeMap<String, String>,
}

pub fn progress_of(job: &Value) -> BTreeMap<i32, i64> {
    let mut out = BTreeMap::new();
    if let Some(m) = job["status"]["progress"].as_object() {
        for (k, v) in m {
            let off = v
                .as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()));
            if let (Ok(p), Some(o)) = (k.parse::<i32>(), off) {
                out.insert(p, o);
            }
        }
    }
    out
}

pub fn state_of(job: &Value) -> String {
    job["status"]["state"].as_str().unwrap_or("").to_string()
}

pub fn has_condition_reason(job: &Value, reason: &str) -> bool {
    job["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["reason"] == reason))
}

pub struct Rig {
    pub inst: Installation,
    pub cfg: Config,
    pub t0: Instant,
    pub jobs: Vec<JobRun>,
    workers: Vec<Worker>,
    operators: Vec<Operator>,
    s3_proxy: Proxy,
    routed: Option<RoutedBroker>,
    pub logs: Vec<(String, PathBuf)>,
    pub faults: Vec<FaultRecord>,
    pub samples: Arc<Mutex<Vec<Sample>>>,
    next_worker: usize,
    state_dir: PathBuf,
}

impl Rig {
    pub fn now(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    fn say(&self, line: &str) {
        eprintln!("[chaos {:7.1}s] {line}", self.now());
    }

    /// Retries an API (or any) operation for up to 120 s: the API server may be restarting.
    async fn retry<T, F, Fut>(&self, what: &str, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let t = Instant::now();
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) if t.elapsed() > Duration::from_secs(120) => {
                    return Err(e.context(what.to_string()));
                }
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    }

    async fn patch_job(&self, name: &str, patch: Value) -> Result<()> {
        self.retry(&format!("patching job {name}"), || {
            self.inst.merge_patch(JOB, name, patch.clone())
        })
        .await
    }

    /// Polls the job until `ok` holds, for up to `bound`; Err with the last status otherwise.
    async fn wait_job(
        &self,
        name: &str,
        bound: Duration,
        ok: impl Fn(&Value) -> bool,
    ) -> std::result::Result<Value, String> {
        let t = Instant::now();
        let mut last = Value::Null;
        while t.elapsed() < bound {
            if let Ok(j) = self.inst.get(JOB, name).await {
                if ok(&j) {
                    return Ok(j);
                }
                last = j["status"].clone();
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(format!("after {bound:?}: {last}"))
    }

    fn spawn_worker_process(&mut self, idx: usize) -> Result<()> {
        let w = &self.workers[idx];
        let tb = &self.inst.tb;
        let mut cmd = Command::new(&self.cfg.worker_bin);
        for (k, v) in tb.child_env() {
            cmd.env(k, v);
        }
        let port = free_port()?;
        cmd.env("KUBECONFIG", &w.kubeconfig)
            .env("POD_NAME", &w.name)
            .env("POD_NAMESPACE", &self.inst.ns)
            .env("ROUTINE_LOAD_WATCH_NAMESPACE", &self.inst.ns)
            .env("ROUTINE_LOAD_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env(
                "ROUTINE_LOAD_ADVERTISE_URL",
                format!("http://127.0.0.1:{port}"),
            )
            .env(
                "ROUTINE_LOAD_ERROR_LOG_DIR",
                std::env::temp_dir().join(format!("{}-{}-errlog", self.inst.ns, w.name)),
            )
            .env("ROUTINE_LOAD_BATCH_INTERVAL_MS", BATCH_INTERVAL_MS)
            .env("RUST_LOG", "info,buoyant_kernel=warn,deltalake_core=warn");
        let p = tb.spawn(&w.name, cmd)?;
        self.logs.push((w.name.clone(), p.log_path().to_path_buf()));
        self.workers[idx].process = Some(p);
        Ok(())
    }

    async fn add_worker(&mut self) -> Result<usize> {
        let name = format!("w{}", self.next_worker);
        self.next_worker += 1;
        let server = self.inst.tb.var("KUBE_SERVER")?.to_string();
        let target = server.trim_start_matches("https://").to_string();
        let api = Proxy::start(&target).await?;
        let text = std::fs::read_to_string(self.inst.tb.kubeconfig())?;
        let kubeconfig = std::env::temp_dir().join(format!("{}-{name}-kubeconfig", self.inst.ns));
        std::fs::write(&kubeconfig, text.replace(&target, &api.addr()))?;
        self.workers.push(Worker {
            name,
            process: None,
            api,
            kubeconfig,
        });
        let idx = self.workers.len() - 1;
        self.spawn_worker_process(idx)?;
        Ok(idx)
    }

    fn spawn_operator_process(&mut self, idx: usize) -> Result<()> {
        let name = self.operators[idx].name.clone();
        let tb = &self.inst.tb;
        let mut cmd = Command::new(&self.cfg.operator_bin);
        for (k, v) in tb.child_env() {
            cmd.env(k, v);
        }
        cmd.env("KUBECONFIG", tb.kubeconfig())
            .env("POD_NAME", &name)
            .env("POD_NAMESPACE", &self.inst.ns)
            .env("ROUTINE_LOAD_WATCH_NAMESPACE", &self.inst.ns)
            .env("ROUTINE_LOAD_HTTP_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "info,routine_load_operator=debug");
        let p = tb.spawn(&name, cmd)?;
        self.logs.push((name, p.log_path().to_path_buf()));
        self.operators[idx].process = Some(p);
        Ok(())
    }

    fn live_workers(&self) -> Vec<usize> {
        (0..self.workers.len())
            .filter(|i| self.workers[*i].process.is_some())
            .collect()
    }

    async fn leader(&self) -> Result<String> {
        let leases: Api<Lease> = Api::namespaced(self.inst.client.clone(), &self.inst.ns);
        self.retry("reading the operator Lease", || async {
            let l = leases.get("routine-load-operator").await?;
            l.spec
                .and_then(|s| s.holder_identity)
                .filter(|h| !h.is_empty())
                .context("no holder")
        })
        .await
    }

    fn marks(&self) -> BTreeMap<String, BTreeMap<i32, i64>> {
        self.jobs
            .iter()
            .map(|j| {
                (
                    j.def.name.to_string(),
                    j.topic.log.lock().unwrap().next.clone(),
                )
            })
            .collect()
    }

    /// The topic's partition count from a fresh metadata request.
    async fn partition_count(&self, topic: &str) -> Result<i32> {
        let config = self.inst.tb.kafka_config(Listener::Plaintext)?;
        let topic = topic.to_string();
        tokio::task::spawn_blocking(move || -> Result<i32> {
            use rdkafka::consumer::{BaseConsumer, Consumer};
            let c: BaseConsumer = config.create()?;
            let md = c.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
            let t = md.topics().first().context("no topic metadata")?;
            Ok(t.partitions().len() as i32)
        })
        .await?
    }

    async fn restart_component(&self, name: &str, signal: &str) -> Result<String> {
        let script = testbed_script();
        let state = self.state_dir.clone();
        let name_owned = name.to_string();
        let signal = signal.to_string();
        let line = tokio::task::spawn_blocking(move || {
            components::restart(
                &script,
                &state,
                &name_owned,
                &signal,
                Duration::from_secs(30),
                Duration::from_secs(2),
            )
        })
        .await??;
        if name == "kafka" {
            // `testbed.sh status` counts Kafka healthy once its ports listen; wait for metadata.
            let topic = self.jobs[0].topic.name.clone();
            let tb = self.inst.tb.clone();
            self.retry("Kafka metadata after its restart", || {
                let (tb, topic) = (tb.clone(), topic.clone());
                async move { tokio::task::spawn_blocking(move || tb.watermarks(&topic, 0)).await? }
            })
            .await?;
        }
        Ok(line)
    }

    /// Injects one fault of `kind` and heals it; returns its record.
    async fn inject(&mut self, n: usize, kind: &'static str, rng: &mut Rng) -> FaultRecord {
        let mut rec = FaultRecord {
            n,
            kind,
            target: String::new(),
            t_inject: self.now(),
            t_heal: 0.0,
            detail: String::new(),
            marks: BTreeMap::new(),
            recovered: None,
            failure: None,
        };
        if let Err(e) = self.inject_inner(&mut rec, rng).await {
            rec.failure = Some(format!("{e:#}"));
        }
        rec.t_heal = self.now();
        rec.marks = self.marks();
        self.say(&format!(
            "fault {n} {kind} {} healed after {:.1}s: {}{}",
            rec.target,
            rec.t_heal - rec.t_inject,
            rec.detail,
            rec.failure
                .as_deref()
                .map(|f| format!(" FAILURE: {f}"))
                .unwrap_or_default()
        ));
        rec
    }

    async fn inject_inner(&mut self, rec: &mut FaultRecord, rng: &mut Rng) -> Result<()> {
        let sleep = |s: u64| tokio::time::sleep(Duration::from_secs(s));
        match rec.kind {
            "kill-worker" => {
                let live = self.live_workers();
                let i = *rng.pick(&live);
                rec.target = self.workers[i].name.clone();
                rec.t_inject = self.now();
                self.workers[i].process.take().unwrap().kill()?;
                let down = rng.range(2, 8);
                sleep(down).await;
                self.spawn_worker_process(i)?;
                rec.detail = format!("kill -9, restarted after {down}s");
            }
            "stop-worker" => {
                let live = self.live_workers();
                let i = *rng.pick(&live);
                rec.target = self.workers[i].name.clone();
                let hold = WORKER_LEASE.as_secs() + rng.range(3, 8);
                rec.t_inject = self.now();
                self.workers[i].process.as_ref().unwrap().signal("STOP")?;
                sleep(hold).await;
                self.workers[i].process.as_ref().unwrap().signal("CONT")?;
                rec.detail = format!("SIGSTOP for {hold}s (lease 20s), then SIGCONT");
            }
            "kill-leader" | "kill-follower" | "stop-leader" => {
                let leader = self.leader().await?;
                let want_leader = rec.kind != "kill-follower";
                let i = self
                    .operators
                    .iter()
                    .position(|o| (o.name == leader) == want_leader)
                    .context("no such operator replica")?;
                rec.target = self.operators[i].name.clone();
                rec.t_inject = self.now();
                if rec.kind == "stop-leader" {
                    let hold = OPERATOR_LEASE.as_secs() + rng.range(3, 8);
                    self.operators[i].process.as_ref().unwrap().signal("STOP")?;
                    sleep(hold).await;
                    self.operators[i].process.as_ref().unwrap().signal("CONT")?;
                    rec.detail = format!("SIGSTOP the leader for {hold}s (lease 15s), SIGCONT");
                } else {
                    self.operators[i].process.take().unwrap().kill()?;
                    let down = rng.range(2, 6);
                    sleep(down).await;
                    self.spawn_operator_process(i)?;
                    rec.detail = format!("kill -9, restarted after {down}s");
                }
                let now_leader = self.leader().await.unwrap_or_default();
                rec.detail += &format!("; leader before {leader}, after {now_leader}");
            }
            "restart-kafka" => {
                rec.target = "kafka".into();
                rec.detail = self.restart_component("kafka", "TERM").await?;
            }
            "restart-minio" => {
                rec.target = "minio".into();
                rec.detail = self.restart_component("minio", "KILL").await?;
            }
            "restart-apiserver" => {
                rec.target = "kube-apiserver".into();
                rec.detail = self.restart_component("kube-apiserver", "KILL").await?;
            }
            "cut-s3" => {
                rec.target = "json-3p-s3 table (every worker, the operator)".into();
                let hold = rng.range(6, 16);
                self.s3_proxy.cut().await;
                sleep(hold).await;
                self.s3_proxy.restore();
                rec.detail = format!(
                    "S3 path cut for {hold}s ({} connections refused so far)",
                    self.s3_proxy.refused()
                );
            }
            "cut-kafka" => {
                let rb = self.routed.as_ref().context("no routed broker")?;
                rec.target = "csv-3p-routed's broker (every worker, the operator)".into();
                let hold = rng.range(8, 25);
                rb.proxy.cut().await;
                sleep(hold).await;
                rb.proxy.restore();
                rec.detail = format!(
                    "Kafka path cut for {hold}s ({} connections refused so far)",
                    rb.proxy.refused()
                );
            }
            "cut-api" => {
                let live = self.live_workers();
                let i = *rng.pick(&live);
                rec.target = self.workers[i].name.clone();
                let hold = WORKER_LEASE.as_secs() + rng.range(2, 8);
                self.workers[i].api.cut().await;
                sleep(hold).await;
                self.workers[i].api.restore();
                rec.detail = format!(
                    "API server path cut for {hold}s ({} refused)",
                    self.workers[i].api.refused()
                );
            }
            "add-partitions" => {
                let j = self
                    .jobs
                    .iter()
                    .position(|j| {
                        !j.def.explicit
                            && !j.def.routed
                            && j.topic.partitions.load(Ordering::SeqCst) < MAX_PARTITIONS
                            && j.def.format == Format::Json
                    })
                    .or_else(|| {
                        self.jobs.iter().position(|j| {
                            !j.def.explicit
                                && !j.def.routed
                                && j.topic.partitions.load(Ordering::SeqCst) < MAX_PARTITIONS
                        })
                    })
                    .context("every topic at the partition cap")?;
                let topic = self.jobs[j].topic.clone();
                rec.target = self.jobs[j].def.name.into();
                // The broker's count, not ours: an earlier attempt may have added some.
                let from = self.partition_count(&topic.name).await?;
                let to = (from + rng.range(1, 2) as i32).min(MAX_PARTITIONS);
                if to > from {
                    let admin: AdminClient<DefaultClientContext> =
                        self.inst.tb.kafka_config(Listener::Plaintext)?.create()?;
                    let out = admin
                        .create_partitions(
                            &[NewPartitions::new(&topic.name, to as usize)],
                            &AdminOptions::new(),
                        )
                        .await?;
                    for r in out {
                        r.map_err(|(t, e)| anyhow::anyhow!("CreatePartitions {t}: {e}"))?;
                    }
                }
                let name = topic.name.clone();
                self.retry("the new partitions in the metadata", || async {
                    let n = self.partition_count(&name).await?;
                    if n >= to {
                        Ok(())
                    } else {
                        bail!("{n} partitions")
                    }
                })
                .await?;
                // The producer refreshes its metadata every 2 s: give it three rounds before it
                // writes to the new partitions.
                tokio::time::sleep(Duration::from_secs(6)).await;
                topic.partitions.store(to, Ordering::SeqCst);
                rec.detail = format!("{from} -> {to} partitions");
            }
            "edit-where" => {
                let j = self
                    .jobs
                    .iter()
                    .position(|j| j.def.filter)
                    .context("no WHERE job")?;
                let idx = 1 - self.jobs[j].where_idx;
                rec.target = self.jobs[j].def.name.into();
                self.patch_job(
                    self.jobs[j].def.name,
                    json!({"spec": {"where": WHERES[idx]}}),
                )
                .await?;
                self.jobs[j].where_idx = idx;
                rec.detail = format!("where: {}", WHERES[idx]);
            }
            "edit-max-error" => {
                let j = rng.next_u64() as usize % self.jobs.len();
                let idx = 1 - self.jobs[j].max_err_idx;
                rec.target = self.jobs[j].def.name.into();
                self.patch_job(
                    self.jobs[j].def.name,
                    json!({"spec": {"maxErrorNumber": MAX_ERRORS[idx]}}),
                )
                .await?;
                self.jobs[j].max_err_idx = idx;
                rec.detail = format!("maxErrorNumber: {}", MAX_ERRORS[idx]);
            }
            "pause-resume" => {
                let j = rng.next_u64() as usize % self.jobs.len();
                let name = self.jobs[j].def.name;
                rec.target = name.into();
                self.patch_job(name, json!({"spec": {"state": "Paused"}}))
                    .await?;
                let paused = self
                    .wait_job(name, Duration::from_secs(60), |j| state_of(j) == "PAUSED")
                    .await;
                let hold = rng.range(2, 6);
                sleep(hold).await;
                self.patch_job(name, json!({"spec": {"state": "Running"}}))
                    .await?;
                match paused {
                    Ok(_) => rec.detail = format!("PAUSED, resumed after {hold}s"),
                    Err(e) => bail!("the job did not go PAUSED: {e}"),
                }
            }
            "scale-workers" => {
                let live = self.live_workers();
                let up = live.len() <= 3 || (live.len() < 5 && rng.next_u64().is_multiple_of(2));
                if up {
                    // A worker that was scaled down comes back, else a new one.
                    let i = match (0..self.workers.len())
                        .find(|i| self.workers[*i].process.is_none())
                    {
                        Some(i) => {
                            self.spawn_worker_process(i)?;
                            i
                        }
                        None => self.add_worker().await?,
                    };
                    rec.target = self.workers[i].name.clone();
                    rec.detail = format!("scaled up to {} workers", live.len() + 1);
                } else {
                    let i = *rng.pick(&live);
                    rec.target = self.workers[i].name.clone();
                    let st = self.workers[i]
                        .process
                        .take()
                        .unwrap()
                        .stop(Duration::from_secs(30))?;
                    rec.detail = format!("scaled down to {} workers ({st})", live.len() - 1);
                }
            }
            "delete-records" => self.delete_records(rec).await?,
            other => bail!("unknown fault kind {other}"),
        }
        Ok(())
    }

    /// Pauses the 1-partition job, lets a backlog build, removes the first part of it with
    /// DeleteRecords and resumes: the job must PAUSE with OffsetOutOfRange, naming exactly the
    /// removed range; an edit of kafka.offsets to the log start resumes it.
    async fn delete_records(&mut self, rec: &mut FaultRecord) -> Result<()> {
        let j = self
            .jobs
            .iter()
            .position(|j| j.def.explicit)
            .context("no job with explicit partitions")?;
        let name = self.jobs[j].def.name;
        rec.target = name.into();
        let topic = self.jobs[j].topic.clone();
        let location = self.jobs[j].location.clone();
        let uid = self.jobs[j].uid.clone();
        self.patch_job(name, json!({"spec": {"state": "Paused"}}))
            .await?;
        self.wait_job(name, Duration::from_secs(60), |j| state_of(j) == "PAUSED")
            .await
            .map_err(|e| anyhow::anyhow!("the job did not go PAUSED: {e}"))?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let tb = self.inst.tb.clone();
        let committed = tokio::task::spawn_blocking(move || tb.read_delta(&location, None))
            .await??
            .txns
            .get(&format!("routine-load-{uid}-0"))
            .copied()
            .unwrap_or(0);
        let cut = committed + 20;
        let t = Instant::now();
        while topic.log.lock().unwrap().next.get(&0).copied().unwrap_or(0) < cut + 20 {
            if t.elapsed() > Duration::from_secs(60) {
                bail!("no backlog past offset {cut} after 60 s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let admin: AdminClient<DefaultClientContext> =
            self.inst.tb.kafka_config(Listener::Plaintext)?.create()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic.name, 0, Offset::Offset(cut))?;
        admin
            .delete_records(&tpl, &AdminOptions::new())
            .await
            .context("DeleteRecords")?;
        self.patch_job(name, json!({"spec": {"state": "Running"}}))
            .await?;
        let paused = self
            .wait_job(name, Duration::from_secs(120), |j| {
                state_of(j) == "PAUSED" && has_condition_reason(j, "OffsetOutOfRange")
            })
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "removed offsets {committed}..{} did not pause the job with OffsetOutOfRange: {e}",
                    cut - 1
                )
            })?;
        let why = paused["status"]["reasonOfStateChanged"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let stated = parse_out_of_range(&why);
        // Whatever happens next, the checker excludes what the job says was removed (and
        // reports a mismatch with what the campaign removed as a failure).
        let (from, low) = stated.unwrap_or((committed, cut));
        self.jobs[j].deleted.push((0, from, low));
        self.patch_job(
            name,
            json!({"spec": {"kafka": {"partitions": [0], "offsets": [low.to_string()]}}}),
        )
        .await?;
        rec.detail = format!(
            "committed {committed}, DeleteRecords before {cut}; PAUSED: {}",
            why.chars().take(160).collect::<String>()
        );
        match stated {
            Some((f, l)) if f == committed && l == cut => Ok(()),
            Some((f, l)) => bail!(
                "the pause reason says offsets {f}..{} were removed; the campaign removed {committed}..{}",
                l - 1,
                cut - 1
            ),
            None => bail!("the pause reason names no removed range: {why}"),
        }
    }
}

/// (offset, log start) from "... offset A is no longer in Kafka (it holds L..H) ...".
fn parse_out_of_range(why: &str) -> Option<(i64, i64)> {
    let rest = why.split("offset ").nth(1)?;
    let (a, rest) = rest.split_once(" is no longer in Kafka (it holds ")?;
    let (l, _) = rest.split_once("..")?;
    Some((a.trim().parse().ok()?, l.trim().parse().ok()?))
}

/// The seeded schedule: every enabled kind once in a seeded order, then weighted draws.
pub fn schedule(cfg: &Config, rng: &mut Rng) -> Vec<&'static str> {
    let mut first: Vec<&'static str> = cfg.kinds.clone();
    rng.shuffle(&mut first);
    let weights: Vec<u64> = cfg
        .kinds
        .iter()
        .map(|k| KINDS.iter().find(|(n, _)| n == k).map_or(1, |(_, w)| *w))
        .collect();
    let mut out: Vec<&'static str> = first.into_iter().take(cfg.faults).collect();
    while out.len() < cfg.faults {
        out.push(cfg.kinds[rng.weighted(&weights)]);
    }
    out
}

async fn setup(tb: Testbed, cfg: Config) -> Result<Rig> {
    let inst = Installation::start(tb, "chaos", false).await?;
    let state_dir = PathBuf::from(inst.tb.var("ROUTINE_LOAD_TESTBED")?);
    let s3_target = inst
        .tb
        .var("S3_ENDPOINT")?
        .trim_start_matches("http://")
        .to_string();
    let s3_proxy = Proxy::start(&s3_target).await?;
    let mut rig = Rig {
        inst,
        cfg,
        t0: Instant::now(),
        jobs: vec![],
        workers: vec![],
        operators: vec![],
        s3_proxy,
        routed: None,
        logs: vec![],
        faults: vec![],
        samples: Arc::default(),
        next_worker: 0,
        state_dir,
    };
    let tb = rig.inst.tb.clone();
    // The S3 table's Secret points at the proxy, so a cut takes S3 away from everyone.
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "s3"},
        "stringData": {
            "AWS_ENDPOINT_URL": format!("http://{}", rig.s3_proxy.addr()),
            "AWS_ACCESS_KEY_ID": tb.var("AWS_ACCESS_KEY_ID")?,
            "AWS_SECRET_ACCESS_KEY": tb.var("AWS_SECRET_ACCESS_KEY")?,
            "AWS_REGION": tb.var("AWS_REGION")?,
            "max_retries": "1",
            "retry_timeout": "2s",
            "timeout": "5s"
        }
    }))?;
    Api::<Secret>::namespaced(rig.inst.client.clone(), &rig.inst.ns)
        .create(&PostParams::default(), &secret)
        .await
        .context("creating the S3 Secret")?;
    if JOBS.iter().any(|j| j.routed) {
        rig.routed = Some(RoutedBroker::start(&tb).await?);
    }
    for def in JOBS {
        let topic_name = unique_name(&format!("chaos-{}", def.name));
        let (brokers, mut pc) = match (&rig.routed, def.routed) {
            (Some(rb), true) => {
                rb.create_topic(&topic_name, def.partitions).await?;
                (rb.routed_brokers(), rb.config())
            }
            _ => {
                tb.create_topic(&topic_name, def.partitions).await?;
                (
                    tb.var("KAFKA_BROKERS")?.to_string(),
                    tb.kafka_config(Listener::Plaintext)?,
                )
            }
        };
        pc.set("enable.idempotence", "true")
            .set("message.timeout.ms", "180000")
            .set("linger.ms", "5")
            .set("topic.metadata.refresh.interval.ms", "2000");
        let producer: FutureProducer = pc.create()?;
        let topic = Arc::new(Topic {
            name: topic_name.clone(),
            format: def.format,
            partitions: AtomicI32::new(def.partitions),
            rate: def.rate,
            log: Mutex::default(),
            producer,
        });
        let location = if def.s3 {
            tb.s3_url(&unique_name(&format!("chaos/{}", def.name)))?
                .to_string()
        } else {
            format!(
                "file://{}",
                std::env::temp_dir()
                    .join(unique_name(&format!("chaos-{}", def.name)))
                    .display()
            )
        };
        let mut columns = vec![
            json!({"name": "id", "type": "BIGINT", "nullable": false}),
            json!({"name": "v", "type": "STRING"}),
        ];
        if def.derived {
            columns.push(json!({"name": "w", "type": "BIGINT"}));
        }
        let mut table = json!({"location": location, "columns": columns});
        if def.s3 {
            table["credentialsSecret"] = json!({"name": "s3"});
        }
        rig.inst
            .create(
                TABLE,
                json!({"metadata": {"name": def.name}, "spec": table}),
            )
            .await?;
        let mut kafka = json!({
            "brokerList": brokers,
            "topic": topic_name,
            "defaultOffset": "OFFSET_BEGINNING"
        });
        if def.explicit {
            kafka["partitions"] = json!((0..def.partitions).collect::<Vec<_>>());
            kafka["offsets"] = json!(vec!["OFFSET_BEGINNING"; def.partitions as usize]);
        }
        let mut spec = json!({
            "table": def.name,
            "desiredConcurrentNumber": def.concurrency,
            "maxErrorNumber": MAX_ERRORS[0],
            "kafka": kafka
        });
        match def.format {
            Format::Csv => spec["columnSeparator"] = ",".into(),
            Format::Json => spec["format"] = "json".into(),
        }
        if def.derived {
            spec["columns"] = json!(["id", "v", "w = id * 2"]);
        }
        if def.filter {
            spec["where"] = WHERES[0].into();
        }
        let created = rig
            .inst
            .create(JOB, json!({"metadata": {"name": def.name}, "spec": spec}))
            .await?;
        rig.jobs.push(JobRun {
            def,
            topic,
            location,
            uid: created["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            deleted: vec![],
            where_idx: 0,
            max_err_idx: 0,
        });
    }
    for name in ["operator-a", "operator-b"] {
        rig.operators.push(Operator {
            name: name.into(),
            process: None,
        });
        let i = rig.operators.len() - 1;
        rig.spawn_operator_process(i)?;
    }
    for _ in 0..4 {
        rig.add_worker().await?;
    }
    Ok(rig)
}

fn spawn_sampler(rig: &Rig, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    let api = rig.inst.api(JOB);
    let samples = rig.samples.clone();
    let t0 = rig.t0;
    tokio::spawn(async move {
        while !stop.load(Ordering::SeqCst) {
            if let Ok(list) = api.list(&ListParams::default()).await {
                let mut s = Sample {
                    t: t0.elapsed().as_secs_f64(),
                    ..Sample::default()
                };
                for o in list.items {
                    let Ok(v) = serde_json::to_value(&o) else {
                        continue;
                    };
                    let name = v["metadata"]["name"].as_str().unwrap_or("").to_string();
                    s.progress.insert(name.clone(), progress_of(&v));
                    s.states.insert(name, state_of(&v));
                }
                samples.lock().unwrap().push(s);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

fn results_dir() -> PathBuf {
    routine_load_e2e::repo_root().join("bench/results")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_campaign_loads_every_message_exactly_once() {
    let Some(tb) = testbed_or_skip("the chaos campaign") else {
        return;
    };
    let cfg = Config::from_env();
    let mut rng = Rng::new(cfg.seed);
    let plan = schedule(&cfg, &mut rng);
    eprintln!(
        "chaos: seed {} faults {} duration {:?} worker {}\nschedule: {plan:?}",
        cfg.seed,
        cfg.faults,
        cfg.duration,
        cfg.worker_bin.display()
    );
    let mut rig = setup(tb, cfg).await.expect("setting up the campaign");
    let stop_producers = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = rig
        .jobs
        .iter()
        .map(|j| tokio::spawn(produce_loop(j.topic.clone(), stop_producers.clone())))
        .collect();
    let stop_sampler = Arc::new(AtomicBool::new(false));
    let sampler = spawn_sampler(&rig, stop_sampler.clone());

    // Warm-up: every job RUNNING and loading before the first fault.
    let mut setup_failure = None;
    for j in 0..rig.jobs.len() {
        let name = rig.jobs[j].def.name;
        if let Err(e) = rig
            .wait_job(name, Duration::from_secs(180), |v| {
                state_of(v) == "RUNNING" && progress_of(v).values().any(|o| *o > 0)
            })
            .await
        {
            setup_failure = Some(format!("job {name} never started loading: {e}"));
        }
    }
    rig.say("every job RUNNING and loading: faults start");

    let fault_phase = Instant::now();
    let slot = rig.cfg.duration.as_secs_f64() / plan.len().max(1) as f64;
    if setup_failure.is_none() {
        for (n, kind) in plan.iter().enumerate() {
            let jitter = rng.range(0, (slot / 3.0) as u64 * 1000) as f64 / 1000.0;
            let at = slot * n as f64 + jitter;
            let now = fault_phase.elapsed().as_secs_f64();
            let wait = (at - now).max(2.0);
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
            let rec = rig.inject(n + 1, kind, &mut rng).await;
            rig.faults.push(rec);
        }
    }
    let last_fault = rig.now();
    rig.say("last fault healed: settling");

    // Settle: a few seconds more of data, then the producers stop.
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop_producers.store(true, Ordering::SeqCst);
    for p in producers {
        let _ = p.await;
    }
    let report = check::check(&mut rig, last_fault, setup_failure).await;
    stop_sampler.store(true, Ordering::SeqCst);
    let _ = sampler.await;
    let path = results_dir().join(format!("chaos-{}.md", rig.cfg.seed));
    std::fs::write(&path, &report.markdown).expect("writing the result file");
    eprintln!("{}", report.markdown);
    eprintln!("result written to {}", path.display());
    // Leave the testbed as we found it: every component up.
    assert!(
        components::all_healthy(&testbed_script()),
        "the testbed is not healthy after the campaign"
    );
    assert!(
        report.failures.is_empty(),
        "the chaos campaign failed (seed {}):\n{}",
        rig.cfg.seed,
        report.failures.join("\n")
    );
}
