//! routine-load operator (StarRocks FE): runs the Table and RoutineLoadJob controllers while it
//! holds the leader Lease, and serves `/metrics` and `/healthz`.
//!
//! Settings (environment):
//! - `POD_NAME`: this replica's identity in the leader Lease (default: hostname, then a random id).
//! - `POD_NAMESPACE`: namespace of the leader Lease (default `default`).
//! - `ROUTINE_LOAD_LEADER_LEASE`: leader Lease name (default `routine-load-operator`).
//! - `ROUTINE_LOAD_LEASE_DURATION_SECONDS`: leader lease duration (default 15): how long a
//!   standby waits, after it last saw the lease change, before it takes over.
//! - `ROUTINE_LOAD_RENEW_DEADLINE_SECONDS`: how long the leader keeps writing without a
//!   successful renewal (default 2/3 of the lease duration; must be shorter than it).
//! - `ROUTINE_LOAD_HTTP_ADDR`: address of `/metrics` and `/healthz` (default `0.0.0.0:8080`).
//! - `ROUTINE_LOAD_MAX_TASKS_PER_JOB` (default 5), `ROUTINE_LOAD_MAX_TASKS_PER_WORKER` (default 16).
//! - `ROUTINE_LOAD_WORKER_LEASE_SECONDS`: worker lease duration when a Lease doesn't say (default 15).
//! - `ROUTINE_LOAD_WATCH_NAMESPACE`: reconcile only this namespace (default: all namespaces).
//! - `ROUTINE_LOAD_TRANSIENT_GRACE_SECONDS`: how long a failure that may be transient (Kafka
//!   metadata unreadable by the operator, every worker Lease expired at once, a Table's storage
//!   unreachable) is ridden out with tasks untouched before it pauses a job or fails a table
//!   (default 60).
//! - `ROUTINE_LOAD_OPERATOR_KAFKA_BROKERS`: `from=to,...`: broker addresses the operator dials
//!   instead of those in a job's `kafka.brokerList`, when it reaches Kafka by another route
//!   (another listener) than the workers (default: none).
//! - `ROUTINE_LOAD_LABEL_KEEP_MAX_SECONDS`: how long a `Load` that ended (FINISHED or CANCELLED)
//!   is kept, counted from its finish time, before it is deleted and its label can be used again
//!   (StarRocks `label_keep_max_second`; default 259200, 3 days).
//! - `RUST_LOG`: log filter (default `info,buoyant_kernel=off`).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::routing::get;
use kube::Client;
use kube::api::ListParams;
use kube::runtime::events::{Recorder, Reporter};
use routine_load_api::{RoutineLoadJob, RoutineLoadTask, Table};
use routine_load_operator::job_controller::{self, Config, Context};
use routine_load_operator::leader::{self, LeaderConfig, LeaderGate, Observed};
use routine_load_operator::metrics::Metrics;
use routine_load_operator::{label_sweeper, table_controller, task_sweeper};
use tokio::sync::watch;
use tracing::{error, info, warn};

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn env_num(key: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(key) {
        Ok(v) if !v.is_empty() => v
            .parse()
            .with_context(|| format!("{key}={v} is not a number")),
        _ => Ok(default),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    // kube (ring or aws-lc-rs) and deltalake (aws-lc-rs) share rustls: pick the provider first.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // delta-kernel logs ERROR for every probe of a not-yet-created table.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,buoyant_kernel=off")),
        )
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("routine-load-operator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn check_crds(client: &Client, config: &Config) -> anyhow::Result<()> {
    let lp = ListParams::default().limit(1);
    let missing = |kind: &str, e: kube::Error| match e {
        kube::Error::Api(s) if s.code == 404 => anyhow::anyhow!(
            "the {kind} CRD is not installed: install them with `kubectl apply --server-side -f crds/` (or `helm install routine-load charts/routine-load`)"
        ),
        e => anyhow::Error::new(e).context(format!("checking the {kind} CRD")),
    };
    config
        .api::<Table>(client)
        .list(&lp)
        .await
        .map_err(|e| missing("Table", e))?;
    config
        .api::<RoutineLoadJob>(client)
        .list(&lp)
        .await
        .map_err(|e| missing("RoutineLoadJob", e))?;
    config
        .api::<RoutineLoadTask>(client)
        .list(&lp)
        .await
        .map_err(|e| missing("RoutineLoadTask", e))?;
    Ok(())
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// `from=to,from=to` into a map.
fn parse_overrides(key: &str) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let mut out = std::collections::BTreeMap::new();
    for entry in env_or(key, "")
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let (from, to) = entry
            .split_once('=')
            .with_context(|| format!("{key}: entry '{entry}' is not from=to"))?;
        out.insert(from.trim().to_string(), to.trim().to_string());
    }
    Ok(out)
}

async fn run() -> anyhow::Result<()> {
    let identity = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| format!("routine-load-operator-{}", std::process::id()));
    let own_namespace = env_or("POD_NAMESPACE", "default");
    let mut leader_cfg = LeaderConfig::new(
        own_namespace.clone(),
        env_or("ROUTINE_LOAD_LEADER_LEASE", "routine-load-operator"),
        identity.clone(),
        Duration::from_secs(env_num("ROUTINE_LOAD_LEASE_DURATION_SECONDS", 15)?),
    );
    if std::env::var("ROUTINE_LOAD_RENEW_DEADLINE_SECONDS").is_ok_and(|v| !v.is_empty()) {
        leader_cfg.renew_deadline =
            Duration::from_secs(env_num("ROUTINE_LOAD_RENEW_DEADLINE_SECONDS", 10)?);
        leader_cfg.retry_period = leader_cfg.retry_period.min(leader_cfg.renew_deadline / 2);
        leader_cfg.call_timeout = leader_cfg.renew_deadline / 2;
    }
    leader_cfg
        .validate()
        .map_err(|e| anyhow::anyhow!("leader election settings: {e}"))?;
    let config = Config {
        max_tasks_per_job: env_num("ROUTINE_LOAD_MAX_TASKS_PER_JOB", 5)? as usize,
        max_tasks_per_worker: env_num("ROUTINE_LOAD_MAX_TASKS_PER_WORKER", 16)? as usize,
        default_lease_duration: Duration::from_secs(env_num(
            "ROUTINE_LOAD_WORKER_LEASE_SECONDS",
            15,
        )?),
        watch_namespace: std::env::var("ROUTINE_LOAD_WATCH_NAMESPACE")
            .ok()
            .filter(|v| !v.is_empty()),
        worker_namespace: env_or("ROUTINE_LOAD_WORKER_NAMESPACE", &own_namespace),
        transient_grace: Duration::from_secs(env_num("ROUTINE_LOAD_TRANSIENT_GRACE_SECONDS", 60)?),
        task_release_timeout: Duration::from_secs(env_num(
            "ROUTINE_LOAD_TASK_RELEASE_TIMEOUT_SECONDS",
            600,
        )?),
        kafka_bootstrap_overrides: parse_overrides("ROUTINE_LOAD_OPERATOR_KAFKA_BROKERS")?,
        ..Config::default()
    };
    let label_keep = Duration::from_secs(env_num(
        "ROUTINE_LOAD_LABEL_KEEP_MAX_SECONDS",
        label_sweeper::DEFAULT_LABEL_KEEP.as_secs(),
    )?);
    let addr = env_or("ROUTINE_LOAD_HTTP_ADDR", "0.0.0.0:8080");

    let client = Client::try_default()
        .await
        .context("connecting to Kubernetes (in-cluster config or KUBECONFIG)")?;
    check_crds(&client, &config).await?;

    let metrics = Arc::new(Metrics::new());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding the HTTP address {addr}"))?;
    info!(%addr, "serving /metrics and /healthz");
    let m = metrics.clone();
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(move || {
                let m = m.clone();
                async move { m.render() }
            }),
        );
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut http_stop = stop_rx;
    let http = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = http_stop.wait_for(|s| *s).await;
            })
            .await;
    });

    // Wait for leadership (or a signal).
    let signal = shutdown_signal();
    tokio::pin!(signal);
    info!(identity = %identity, lease = %leader_cfg.lease_name, namespace = %leader_cfg.namespace, "waiting for leadership");
    let gate = Arc::new(LeaderGate::default());
    let mut observed = Observed::default();
    loop {
        match leader::try_acquire(&client, &leader_cfg, &mut observed, &gate).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => warn!(error = %e, "leader election attempt failed"),
        }
        tokio::select! {
            _ = &mut signal => {
                let _ = stop_tx.send(true);
                let _ = http.await;
                return Ok(());
            }
            _ = tokio::time::sleep(leader_cfg.retry_period) => {}
        }
    }
    info!(identity = %identity, "became leader; starting controllers");

    let reporter = Reporter {
        controller: "routine-load-operator".into(),
        instance: Some(identity.clone()),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let ctx = Arc::new(Context::new(
        client.clone(),
        recorder,
        metrics.clone(),
        config,
        gate.clone(),
    ));
    // The controllers' shutdown triggers must be Sync: oneshot receivers are.
    let (stop_jobs, jobs_stopped) = tokio::sync::oneshot::channel::<()>();
    let (stop_tables, tables_stopped) = tokio::sync::oneshot::channel::<()>();
    let jobs = tokio::spawn(job_controller::run(ctx.clone(), async move {
        let _ = jobs_stopped.await;
    }));
    let tables = tokio::spawn(table_controller::run(ctx.clone(), async move {
        let _ = tables_stopped.await;
    }));
    let sweeper = tokio::spawn(task_sweeper::run(ctx.clone()));
    let labels = tokio::spawn(label_sweeper::run(ctx.clone(), label_keep));

    // Renew every retry period. The gate closes by itself renew_deadline after the start of
    // the last successful renewal (before any standby may take over): controllers stop writing
    // then even if this loop is stuck. Exit once leadership is lost.
    let lost = loop {
        tokio::select! {
            _ = &mut signal => break None,
            _ = tokio::time::sleep(leader_cfg.retry_period) => {}
        }
        match leader::try_acquire(&client, &leader_cfg, &mut observed, &gate).await {
            Ok(true) => {}
            Ok(false) => break Some("another replica holds the leader lease".to_string()),
            Err(e) => warn!(error = %e, "renewing the leader lease failed"),
        }
        if !gate.holds() {
            break Some(format!(
                "the leader lease was not renewed within the renew deadline {:?}",
                leader_cfg.renew_deadline
            ));
        }
    };
    if let Some(why) = lost {
        gate.close();
        error!("lost leadership ({why}); exiting so that only the new leader writes");
        std::process::exit(1);
    }
    info!("shutting down");
    sweeper.abort();
    labels.abort();
    let _ = stop_jobs.send(());
    let _ = stop_tables.send(());
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(20), async {
        let _ = jobs.await;
        let _ = tables.await;
    })
    .await;
    leader::release(&client, &leader_cfg, &gate).await;
    let _ = http.await;
    Ok(())
}
