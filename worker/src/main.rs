//! The routine-load worker (StarRocks BE): runs the `RoutineLoadTask`s assigned to its pod.
//!
//! Configuration (environment):
//! - `POD_NAME` (required): the worker's name; tasks labelled `routineload.io/worker=<POD_NAME>`
//!   (and whose `spec.worker` is that name) are run here, and the heartbeat Lease has this name.
//! - `POD_NAMESPACE`: namespace of the heartbeat Lease (default `default`); the operator looks
//!   for worker Leases in its `ROUTINE_LOAD_WORKER_NAMESPACE`.
//! - `ROUTINE_LOAD_WATCH_NAMESPACE`: namespace of the tasks to run; unset = all namespaces.
//! - `ROUTINE_LOAD_LOAD_MEMORY_LIMIT_BYTES` (default 100 GB) and
//!   `ROUTINE_LOAD_LOAD_MEMORY_LIMIT_PERCENT` (default 30) of the pod's memory
//!   (`ROUTINE_LOAD_POD_MEMORY_LIMIT_BYTES`, else the cgroup limit, else the machine's): the
//!   smaller is the worker-wide budget of the batches being collected (StarRocks
//!   `load_process_max_memory_limit_bytes/percent`); a batch that would pass it commits early.
//! - `ROUTINE_LOAD_HTTP_ADDR`: address of `/metrics`, `/healthz`, `/readyz` and
//!   `/api/_load_error_log` (default `0.0.0.0:8040`).
//! - `PUT /api/{namespace}/{table}/_stream_load` on the same address: Stream Load (the body
//!   is loaded into the `Table` as one Delta commit); `ROUTINE_LOAD_STREAM_LOAD_MAX_BODY_BYTES`
//!   is the largest body (default 10 GiB, StarRocks `streaming_load_max_mb`; a CSV body is
//!   loaded and written `ROUTINE_LOAD_STREAM_LOAD_CHUNK_BYTES` at a time, default 64 MiB),
//!   `ROUTINE_LOAD_STREAM_LOAD_MAX_JSON_BODY_BYTES` the largest JSON body (default 100 MiB,
//!   held whole; StarRocks `streaming_load_max_batch_size_mb`),
//!   `ROUTINE_LOAD_STREAM_LOAD_MAX_KEYED_BODY_BYTES` the largest body into a keyed table
//!   (default 1 GiB: its rows are held until the load's one MERGE).
//! - `ROUTINE_LOAD_ADVERTISE_URL`: base URL of this worker's HTTP server in error log URLs and
//!   in its heartbeat Lease (annotation `routineload.io/url`, where `kubectl routineload load` finds it)
//!   (default `http://$POD_IP:<port>`, or the pod name).
//! - `ROUTINE_LOAD_TLS_CERT_FILE` and `ROUTINE_LOAD_TLS_KEY_FILE` (PEM, read again when they
//!   change): the same routes are also served over HTTPS on `ROUTINE_LOAD_HTTPS_ADDR` (default
//!   `0.0.0.0:8443`), and the plain port refuses Stream Load (tokens stay off the network in
//!   the clear); the Lease then advertises `ROUTINE_LOAD_HTTPS_ADVERTISE_URL` (default
//!   `https://$POD_IP:<https port>`).
//! - `ROUTINE_LOAD_ERROR_LOG_DIR`: directory of the error logs (default `/tmp/routine-load/error_log`).
//!   A task's log rotates at 16 MiB (one older half kept, so an HTTP answer is at most that);
//!   logs not written for `ROUTINE_LOAD_ERROR_LOG_RETENTION_HOURS` (default 72) are removed.
//! - `ROUTINE_LOAD_RETRY_LIMIT`: storage failures in a row (commits, table reads) before a task
//!   asks for its job to be paused (default 10).
//! - `ROUTINE_LOAD_BATCH_INTERVAL_MS`: override of the jobs' maxBatchInterval (tests, demos).
//! - `ROUTINE_LOAD_MAX_BATCH_ROWS`: override of the jobs' maxBatchRows (tests, demos).
//! - `KUBECONFIG` or the in-cluster service account: the API server.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::get;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, ResourceExt};
use routine_load_api::RoutineLoadTask;
use routine_load_api::names::{WORKER_FIELD_MANAGER, WORKER_LABEL, WORKER_URL_ANNOTATION};
use routine_load_worker::heartbeat::{self, Heartbeat};
use routine_load_worker::load_memory::{self, LoadMemory};
use routine_load_worker::metrics::Metrics;
use routine_load_worker::stream_load::request::BodyLimits;
use routine_load_worker::task_release;
use routine_load_worker::task_runner::{Assignment, WorkerContext, run_task};
use tokio::sync::watch;
use tokio::task::JoinHandle;

struct Running {
    epoch: i64,
    job_generation: i64,
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

fn main() -> Result<()> {
    routine_load_worker::keep_batch_memory();
    // Before any TLS client exists: kube (ring) and deltalake (aws-lc-rs) both bring a rustls
    // provider, and with two and no default `kube::Client` panics.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            // delta-kernel logs every snapshot build at INFO, and librdkafka's request timeouts
            // while a fetch is held back are routine: keep the default log for our own events.
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                "info,buoyant_kernel=warn,deltalake_core=warn,librdkafka=warn".into()
            }),
        )
        .init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> Result<()> {
    let pod_name = std::env::var("POD_NAME").context("POD_NAME must be set")?;
    let lease_ns = std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into());
    let namespace = std::env::var("ROUTINE_LOAD_WATCH_NAMESPACE")
        .ok()
        .filter(|s| !s.is_empty());
    let load_memory_limit = load_memory::resolve_limit(
        env_u64(
            "ROUTINE_LOAD_LOAD_MEMORY_LIMIT_BYTES",
            load_memory::DEFAULT_LIMIT_BYTES,
        )?,
        env_u64(
            "ROUTINE_LOAD_LOAD_MEMORY_LIMIT_PERCENT",
            load_memory::DEFAULT_LIMIT_PERCENT,
        )?,
        load_memory::pod_memory(),
    );
    let http_addr =
        std::env::var("ROUTINE_LOAD_HTTP_ADDR").unwrap_or_else(|_| "0.0.0.0:8040".into());
    let port = http_addr.rsplit(':').next().unwrap_or("8040").to_string();
    let host = std::env::var("POD_IP").unwrap_or_else(|_| pod_name.clone());
    let advertise = std::env::var("ROUTINE_LOAD_ADVERTISE_URL")
        .unwrap_or_else(|_| format!("http://{host}:{port}"));
    let tls = tls_files()?;
    let https_addr =
        std::env::var("ROUTINE_LOAD_HTTPS_ADDR").unwrap_or_else(|_| "0.0.0.0:8443".into());
    // Where Stream Load clients are sent (the heartbeat Lease's URL): HTTPS when it is served.
    let stream_load_url = if tls.is_some() {
        let https_port = https_addr.rsplit(':').next().unwrap_or("8443");
        std::env::var("ROUTINE_LOAD_HTTPS_ADVERTISE_URL")
            .unwrap_or_else(|_| format!("https://{host}:{https_port}"))
    } else {
        advertise.clone()
    };
    let error_log_dir = PathBuf::from(
        std::env::var("ROUTINE_LOAD_ERROR_LOG_DIR")
            .unwrap_or_else(|_| "/tmp/routine-load/error_log".into()),
    );
    std::fs::create_dir_all(&error_log_dir)
        .with_context(|| format!("creating {}", error_log_dir.display()))?;
    let batch_interval_override = std::env::var("ROUTINE_LOAD_BATCH_INTERVAL_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_millis);

    let client = Client::try_default()
        .await
        .context("connecting to the API server")?;
    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));

    let listener = tokio::net::TcpListener::bind(&http_addr)
        .await
        .with_context(|| format!("binding {http_addr}"))?;
    tracing::info!(%http_addr, pod = %pod_name, load_memory_limit, "worker starting");
    metrics
        .load_memory
        .with_label_values(&["limit"])
        .set(load_memory_limit as i64);
    // One budget for the batches of Routine Load tasks and the bodies of Stream Loads.
    let load_memory = LoadMemory::new(load_memory_limit);
    let stream_load = routine_load_worker::stream_load::StreamLoadContext::new(
        client.clone(),
        pod_name.clone(),
        error_log_dir.clone(),
        advertise.clone(),
        stream_load_limits()?,
        metrics.clone(),
        load_memory.clone(),
    );
    let routes = router(metrics.clone(), ready.clone(), error_log_dir.clone());
    let stream_load = routine_load_worker::stream_load::router(stream_load);
    let app = match tls {
        Some(tls) => {
            let https = tokio::net::TcpListener::bind(&https_addr)
                .await
                .with_context(|| format!("binding {https_addr} (HTTPS)"))?;
            tracing::info!(%https_addr, url = %stream_load_url, "serving HTTPS");
            tokio::spawn(routine_load_worker::tls::serve(
                https,
                tls,
                routes.clone().merge(stream_load),
            ));
            // Tokens are not to cross the network in the clear: plain HTTP refuses Stream Load.
            routes.merge(routine_load_worker::stream_load::https_only_router(
                stream_load_url.clone(),
            ))
        }
        None => routes.merge(stream_load),
    };
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });

    let heartbeat = Arc::new(Heartbeat::new());
    tokio::spawn(renew_lease(
        client.clone(),
        lease_ns,
        pod_name.clone(),
        stream_load_url,
        heartbeat.clone(),
    ));
    let retention = Duration::from_secs(
        3600 * std::env::var("ROUTINE_LOAD_ERROR_LOG_RETENTION_HOURS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(72),
    );
    tokio::spawn(sweep_error_logs(error_log_dir.clone(), retention));

    let ctx = WorkerContext {
        heartbeat: Some(heartbeat.clone()),
        client: client.clone(),
        pod_name: pod_name.clone(),
        error_log_dir,
        error_log_base_url: advertise,
        metrics: metrics.clone(),
        batch_interval_override,
        batch_rows_override: std::env::var("ROUTINE_LOAD_MAX_BATCH_ROWS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| *n > 0),
        load_memory,
        retry_limit: std::env::var("ROUTINE_LOAD_RETRY_LIMIT")
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|n| *n > 0),
        decode_threads: routine_load_worker::decode_threads(),
        unwritten: Default::default(),
    };

    let api: Api<RoutineLoadTask> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (store, writer) = reflector::store();
    let cfg = watcher::Config::default().labels(&format!("{WORKER_LABEL}={pod_name}"));
    let mut events = Box::pin(
        reflector(writer, watcher(api, cfg))
            .default_backoff()
            .touched_objects(),
    );
    let mut running: HashMap<(String, String), Running> = HashMap::new();
    let mut stopping: HashMap<(String, String), JoinHandle<()>> = HashMap::new();
    let mut released: HashSet<String> = HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            ev = events.next() => match ev {
                Some(Ok(_)) => {}
                Some(Err(e)) => { tracing::warn!(error = %e, "task watch"); continue; }
                None => break,
            },
            _ = tick.tick() => {}
            _ = sigterm.recv() => { tracing::info!("SIGTERM: stopping task loops"); break; }
            _ = tokio::signal::ctrl_c() => { tracing::info!("interrupt: stopping task loops"); break; }
        }
        // Ready once the watcher has listed the tasks (without blocking the event loop).
        if !ready.load(Ordering::Relaxed)
            && matches!(
                tokio::time::timeout(Duration::ZERO, store.wait_until_ready()).await,
                Ok(Ok(()))
            )
        {
            ready.store(true, Ordering::Relaxed);
        } else if !ready.load(Ordering::Relaxed) {
            continue;
        }
        // Desired assignments: tasks for this pod, not being deleted, with their epoch and the
        // job generation they were planned for (an edited job restarts its loops on the new plan).
        let mut desired: HashMap<(String, String), (i64, i64)> = HashMap::new();
        for t in store.state() {
            if t.spec.worker == pod_name && t.metadata.deletion_timestamp.is_none() {
                desired.insert(
                    (t.namespace().unwrap_or_default(), t.name_any()),
                    (t.spec.epoch, t.spec.job_generation),
                );
            }
        }
        let ended: Vec<(String, String)> = running
            .iter()
            .filter(|(key, r)| {
                desired.get(*key) != Some(&(r.epoch, r.job_generation)) || r.handle.is_finished()
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in ended {
            if let Some(r) = running.remove(&key) {
                let _ = r.stop.send(true);
                tracing::info!(task = %key.1, epoch = r.epoch, "stopping task loop");
                stopping.insert(key, r.handle);
            }
        }
        // A loop that was told to stop may still be finishing a commit: its successor for the
        // same task starts only after it ended, so the two never report over each other.
        stopping.retain(|_, h| !h.is_finished());
        // A deleted task with no loop left here is released: the operator records its counters
        // and lets it go.
        for t in store.state() {
            let key = (t.namespace().unwrap_or_default(), t.name_any());
            let busy = running.contains_key(&key) || stopping.contains_key(&key);
            let uid = t.uid().unwrap_or_default();
            if task_release::should_release(&t, &pod_name, busy) && released.insert(uid.clone()) {
                let api: Api<RoutineLoadTask> = Api::namespaced(client.clone(), &key.0);
                match task_release::release(&api, &t, &ctx.unwritten).await {
                    Ok(()) => {
                        tracing::info!(namespace = %key.0, task = %key.1, "released deleted task")
                    }
                    Err(e) => {
                        tracing::warn!(task = %key.1, error = format!("{e:#}"), "release");
                        released.remove(&uid);
                    }
                }
            }
        }
        for (key, (epoch, job_generation)) in desired {
            if running.contains_key(&key) || stopping.contains_key(&key) {
                continue;
            }
            tracing::info!(namespace = %key.0, task = %key.1, epoch, job_generation, "starting task loop");
            let (tx, rx) = watch::channel(false);
            let a = Assignment {
                namespace: key.0.clone(),
                name: key.1.clone(),
                epoch,
            };
            let ctx = ctx.clone();
            let gauge = metrics.tasks.with_label_values(&[&key.0]);
            let handle = tokio::spawn(async move {
                gauge.inc();
                if let Err(e) = run_task(ctx, a.clone(), rx).await {
                    tracing::warn!(task = %a.name, error = format!("{e:#}"), "task loop ended");
                    // Back off before the next reconcile restarts it.
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                gauge.dec();
            });
            running.insert(
                key,
                Running {
                    epoch,
                    job_generation,
                    stop: tx,
                    handle,
                },
            );
        }
    }

    // Shutdown: stop every loop (the batch in flight is abandoned or already committed).
    ready.store(false, Ordering::Relaxed);
    for r in running.values() {
        let _ = r.stop.send(true);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
    for handle in running
        .into_values()
        .map(|r| r.handle)
        .chain(stopping.into_values())
    {
        let _ = tokio::time::timeout_at(deadline, handle).await;
    }
    tracing::info!("worker stopped");
    Ok(())
}

/// The HTTPS certificate and key (`ROUTINE_LOAD_TLS_CERT_FILE`, `ROUTINE_LOAD_TLS_KEY_FILE`):
/// both or neither.
fn tls_files() -> Result<Option<Arc<routine_load_worker::tls::TlsFiles>>> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (
        var("ROUTINE_LOAD_TLS_CERT_FILE"),
        var("ROUTINE_LOAD_TLS_KEY_FILE"),
    ) {
        (Some(cert), Some(key)) => Ok(Some(Arc::new(routine_load_worker::tls::TlsFiles::load(
            cert.into(),
            key.into(),
        )?))),
        (None, None) => Ok(None),
        _ => anyhow::bail!(
            "set both ROUTINE_LOAD_TLS_CERT_FILE and ROUTINE_LOAD_TLS_KEY_FILE (HTTPS), or neither"
        ),
    }
}

/// A whole number from the environment, `default` when unset or empty.
fn env_u64(key: &str, default: u64) -> Result<u64> {
    match std::env::var(key) {
        Ok(v) if !v.is_empty() => v
            .parse()
            .with_context(|| format!("{key}={v} is not a whole number")),
        _ => Ok(default),
    }
}

/// The Stream Load body limits from the environment, StarRocks' defaults otherwise.
fn stream_load_limits() -> Result<BodyLimits> {
    let default = BodyLimits::default();
    Ok(BodyLimits {
        max_body_bytes: env_u64(
            "ROUTINE_LOAD_STREAM_LOAD_MAX_BODY_BYTES",
            default.max_body_bytes,
        )?,
        max_json_body_bytes: env_u64(
            "ROUTINE_LOAD_STREAM_LOAD_MAX_JSON_BODY_BYTES",
            default.max_json_body_bytes,
        )?,
        max_keyed_body_bytes: env_u64(
            "ROUTINE_LOAD_STREAM_LOAD_MAX_KEYED_BODY_BYTES",
            default.max_keyed_body_bytes,
        )?,
        chunk_bytes: env_u64(
            "ROUTINE_LOAD_STREAM_LOAD_CHUNK_BYTES",
            default.chunk_bytes as u64,
        )?
        .max(1) as usize,
    })
}

fn router(metrics: Arc<Metrics>, ready: Arc<AtomicBool>, log_dir: PathBuf) -> Router {
    Router::new()
        .route("/metrics", get(move || async move { metrics.render() }))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || async move {
                if ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ok")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                }
            }),
        )
        .route(
            "/api/_load_error_log",
            get(move |uri: Uri| {
                let dir = log_dir.clone();
                async move { error_log(&dir, &uri).await }
            }),
        )
}

/// Serves one error log file; only plain file names inside the error-log directory.
async fn error_log(dir: &std::path::Path, uri: &Uri) -> axum::response::Response {
    let file = uri
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("file="))
        .unwrap_or("");
    if !safe_file_name(file) {
        return (StatusCode::BAD_REQUEST, "invalid file name\n").into_response();
    }
    match tokio::fs::read(dir.join(file)).await {
        Ok(body) => (StatusCode::OK, body).into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "no such error log\n").into_response(),
    }
}

/// Removes error logs (and their rotated halves) not written to for `retention`, every hour.
async fn sweep_error_logs(dir: PathBuf, retention: Duration) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let now = std::time::SystemTime::now();
        for e in entries.flatten() {
            let modified = e.metadata().and_then(|m| m.modified());
            if let Ok(modified) = modified
                && error_log_expired(modified, now, retention)
                && e.file_name().to_string_lossy().starts_with("error_log_")
            {
                match std::fs::remove_file(e.path()) {
                    Ok(()) => {
                        tracing::info!(file = %e.path().display(), "removed an expired error log")
                    }
                    Err(err) => {
                        tracing::warn!(file = %e.path().display(), error = %err, "removing an expired error log")
                    }
                }
            }
        }
    }
}

/// Whether an error log last written at `modified` is past its retention.
fn error_log_expired(
    modified: std::time::SystemTime,
    now: std::time::SystemTime,
    retention: Duration,
) -> bool {
    now.duration_since(modified)
        .is_ok_and(|age| age > retention)
}

fn safe_file_name(f: &str) -> bool {
    !f.is_empty()
        && f.len() <= 255
        && !f.starts_with('.')
        && f.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

async fn renew_lease(
    client: Client,
    ns: String,
    name: String,
    url: String,
    heartbeat: Arc<Heartbeat>,
) {
    let api: Api<Lease> = Api::namespaced(client, &ns);
    let pp = PatchParams::apply(WORKER_FIELD_MANAGER).force();
    let mut tick = tokio::time::interval(heartbeat::RENEW_PERIOD);
    loop {
        tick.tick().await;
        let lease = Lease {
            metadata: kube::api::ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                // `kubectl get leases -l routineload.io/worker` lists the worker heartbeats.
                labels: Some([(WORKER_LABEL.to_string(), name.clone())].into()),
                // `kubectl routineload load` finds a live worker's Stream Load address here.
                annotations: Some([(WORKER_URL_ANNOTATION.to_string(), url.clone())].into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(name.clone()),
                lease_duration_seconds: Some(heartbeat::LEASE_DURATION.as_secs() as i32),
                renew_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
                ..Default::default()
            }),
        };
        let mut v = serde_json::to_value(&lease).unwrap_or_default();
        v["apiVersion"] = "coordination.k8s.io/v1".into();
        v["kind"] = "Lease".into();
        match api.patch(&name, &pp, &Patch::Apply(&v)).await {
            Ok(_) => heartbeat.renewed(),
            Err(e) => tracing::warn!(error = %e, "renewing the heartbeat Lease"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::{error_log_expired, safe_file_name};

    #[test]
    fn error_logs_expire_after_their_retention() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let day = Duration::from_secs(86_400);
        let cases = [
            (now - 4 * day, 3 * day, true),
            (now - 2 * day, 3 * day, false),
            (now, 3 * day, false),
            (now + day, 3 * day, false),
        ];
        for (modified, retention, expired) in cases {
            assert_eq!(error_log_expired(modified, now, retention), expired);
        }
    }

    #[test]
    fn error_log_names_are_path_traversal_safe() {
        assert!(safe_file_name("error_log_ns_task-1.log"));
        for bad in [
            "",
            "../etc/passwd",
            "a/b",
            "..",
            ".hidden",
            "a%2Fb",
            "/etc/passwd",
        ] {
            assert!(!safe_file_name(bad), "{bad}");
        }
    }
}
