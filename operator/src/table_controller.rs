//! The Table controller: creates (or adopts) the Delta table a `Table` declares, reports its
//! phase and Delta version, and guards deletion with a finalizer that honours `deletionPolicy`
//! and refuses while jobs still load into the table.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use routine_load_api::delta_table::{self, DeltaTableSetupError};
use routine_load_api::names::{OPERATOR_FIELD_MANAGER, TABLE_FINALIZER};
use routine_load_api::table::{COMPACT_ANNOTATION, DeletionPolicy, MaintenanceStatus, TablePhase};
use routine_load_api::table_maintenance::{self, Due};
use routine_load_api::{RoutineLoadJob, RoutineLoadTask, Table, TableStatus};
use serde_json::json;
use tracing::{info, warn};

use crate::job_controller::Context;
use crate::job_plan::{self, Grace};

/// The table's condition saying whether its Delta table is usable.
pub const READY_CONDITION: &str = "Ready";
/// The table's condition saying whether the last probe of its storage succeeded; while False,
/// its `lastTransitionTime` is when the failure began (the grace period counts from it).
pub const STORAGE_CONDITION: &str = "StorageAvailable";

/// One variant per step that can fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("table has no namespace")]
    NoNamespace,
    #[error("reading credentials secret '{secret}': {source}")]
    GetSecret {
        secret: String,
        #[source]
        source: kube::Error,
    },
    #[error("listing jobs: {0}")]
    ListJobs(#[source] kube::Error),
    #[error("listing the tasks of the table's jobs: {0}")]
    ListTasks(#[source] kube::Error),
    #[error("table is still loaded by {0:?}: stop or delete its jobs first")]
    InUse(Vec<String>),
    #[error("deleting the Delta table files: {0}")]
    DeleteData(String),
    #[error("patching table status: {0}")]
    PatchStatus(#[source] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error("not writing: the leader lease is not held (renewal overdue)")]
    NotLeader,
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::NoNamespace => "no_namespace",
            Error::GetSecret { .. } => "get_secret",
            Error::ListJobs(_) => "list_jobs",
            Error::ListTasks(_) => "list_tasks",
            Error::InUse(_) => "in_use",
            Error::DeleteData(_) => "delete_data",
            Error::PatchStatus(_) => "patch_status",
            Error::Finalizer(_) => "finalizer",
            Error::NotLeader => "not_leader",
        }
    }
}

/// Run the controller until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    // Decoded through DeserializeGuard: a Table that does not decode is reported, not a stalled
    // watch.
    let tables: Api<DeserializeGuard<Table>> = ctx.config.api(&ctx.client);
    Controller::new(tables, watcher::Config::default())
        // Creating or adopting a Delta table is CPU and storage work: a few at a time.
        .with_config(kube::runtime::controller::Config::default().concurrency(4))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                warn!(error = %e, "table reconcile failed");
            }
        })
        .await;
}

fn error_policy(table: Arc<DeserializeGuard<Table>>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconcile_errors
        .with_label_values(&["table", error.metric_label()])
        .inc();
    warn!(table = %table.name_any(), error = %error, "table reconcile failed; retrying");
    Action::requeue(Duration::from_secs(10))
}

async fn reconcile(
    guarded: Arc<DeserializeGuard<Table>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let started = Instant::now();
    ctx.metrics.reconciles.with_label_values(&["table"]).inc();
    let table = match &guarded.0 {
        Ok(t) => Arc::new(t.clone()),
        Err(invalid) => {
            ctx.metrics
                .reconcile_errors
                .with_label_values(&["table", "invalid_object"])
                .inc();
            warn!(table = %guarded.name_any(), error = %invalid.error, "table does not decode; not reconciled");
            return Ok(Action::await_change());
        }
    };
    let ns = table.namespace().ok_or(Error::NoNamespace)?;
    // The finalizer helper writes (adds or removes the finalizer): only while the lease is held.
    if !ctx.gate.holds() {
        return Err(Error::NotLeader);
    }
    let api: Api<Table> = Api::namespaced(ctx.client.clone(), &ns);
    let (c, n) = (ctx.clone(), ns.clone());
    let result = finalizer(&api, TABLE_FINALIZER, table, |event| async move {
        match event {
            Finalizer::Apply(t) => apply(&t, &c, &n).await,
            Finalizer::Cleanup(t) => cleanup(&t, &c, &n).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    });
    ctx.metrics
        .reconcile_duration
        .with_label_values(&["table"])
        .observe(started.elapsed().as_secs_f64());
    result
}

/// The entries of a Table's credentials Secret (`Ok(Err(message))`: the Secret is missing).
pub async fn credentials(
    table: &Table,
    client: &kube::Client,
    ns: &str,
) -> Result<Result<BTreeMap<String, String>, String>, Error> {
    let Some(secret) = &table.spec.credentials_secret else {
        return Ok(Ok(BTreeMap::new()));
    };
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let found = api
        .get_opt(&secret.name)
        .await
        .map_err(|source| Error::GetSecret {
            secret: secret.name.clone(),
            source,
        })?;
    Ok(match found {
        None => Err(format!(
            "credentials secret '{}' not found in namespace '{ns}'",
            secret.name
        )),
        Some(s) => Ok(s
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
            .chain(s.string_data.unwrap_or_default())
            .collect()),
    })
}

async fn apply(table: &Table, ctx: &Context, ns: &str) -> Result<Action, Error> {
    let secret = match credentials(table, &ctx.client, ns).await? {
        Ok(s) => s,
        Err(msg) => {
            set_status(
                table,
                ctx,
                ns,
                TablePhase::Failed,
                None,
                "SecretNotFound",
                &msg,
                None,
                None,
            )
            .await?;
            return Ok(Action::requeue(Duration::from_secs(30)));
        }
    };
    let location = &table.spec.location;
    let opts = delta_table::storage_options(location, &secret);
    let opts_for_maintenance = opts.clone();
    match delta_table::create_or_adopt_table(location, &table.spec, opts).await {
        Ok(setup) => {
            let version = setup.version;
            if let Some(repair) = &setup.protocol_repair {
                info!(table = %table.name_any(), "{}", repair.message());
                if ctx.gate.holds() {
                    let event = Event {
                        type_: EventType::Normal,
                        reason: "ProtocolRepaired".into(),
                        note: Some(repair.message()),
                        action: "RepairProtocol".into(),
                        secondary: None,
                    };
                    if let Err(e) = ctx.recorder.publish(&event, &table.object_ref(&())).await {
                        warn!(table = %table.name_any(), error = %e, "failed to publish event");
                    }
                }
            }
            let maintenance = maintain(table, ctx, opts_for_maintenance).await;
            let version = maintenance
                .as_ref()
                .and_then(|m| m.compacted_version)
                .map_or(version, |v| v.max(version));
            set_status(
                table,
                ctx,
                ns,
                TablePhase::Ready,
                Some(version),
                "DeltaTableReady",
                &format!("Delta table at {location} is at version {version}"),
                Some((true, format!("{location} answered"))),
                maintenance,
            )
            .await?;
            Ok(Action::requeue(Duration::from_secs(30)))
        }
        // A spec that can never work waits for the spec to change.
        Err(
            e @ (DeltaTableSetupError::SchemaMismatch { .. }
            | DeltaTableSetupError::Location { .. }
            | DeltaTableSetupError::Column { .. }
            | DeltaTableSetupError::KeyModel(_)),
        ) => {
            let reason = match e {
                DeltaTableSetupError::SchemaMismatch { .. } => "SchemaMismatch",
                _ => "InvalidSpec",
            };
            set_status(
                table,
                ctx,
                ns,
                TablePhase::Failed,
                None,
                reason,
                &e.to_string(),
                None,
                None,
            )
            .await?;
            Ok(Action::await_change())
        }
        // Storage errors may be transient: a Ready table stays Ready (its jobs keep loading)
        // until the failure outlasts the grace period; retry meanwhile.
        Err(e) => {
            let previous = table.status.clone().unwrap_or_default();
            let probe = storage_verdict(
                &previous,
                &e.to_string(),
                Timestamp::now(),
                ctx.config.transient_grace,
            );
            let (phase, reason, message, storage) = match probe {
                StorageVerdict::RideOut {
                    ready_reason,
                    ready_message,
                    message,
                } => {
                    warn!(table = %table.name_any(), "riding out a failure within the grace period: {message}");
                    (TablePhase::Ready, ready_reason, ready_message, message)
                }
                StorageVerdict::Fail { message } => (
                    TablePhase::Pending,
                    "StorageUnavailable".to_string(),
                    message.clone(),
                    message,
                ),
            };
            set_status(
                table,
                ctx,
                ns,
                phase,
                None,
                &reason,
                &message,
                Some((false, storage)),
                None,
            )
            .await?;
            Ok(Action::requeue(Duration::from_secs(15)))
        }
    }
}

async fn cleanup(table: &Table, ctx: &Context, ns: &str) -> Result<Action, Error> {
    let jobs: Vec<RoutineLoadJob> = Api::<RoutineLoadJob>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map_err(Error::ListJobs)?
        .items;
    let tasks: Vec<RoutineLoadTask> = Api::<RoutineLoadTask>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map_err(Error::ListTasks)?
        .items;
    let loading = still_loading(&table.name_any(), &jobs, &tasks);
    if !loading.is_empty() {
        let msg = format!(
            "deletion refused: {loading:?} still load into this table; stop or delete the jobs \
             first (a deleted task goes once its worker's loop ended)"
        );
        set_status(
            table,
            ctx,
            ns,
            TablePhase::Deleting,
            table.status.as_ref().and_then(|s| s.delta_version),
            "InUse",
            &msg,
            None,
            None,
        )
        .await?;
        return Err(Error::InUse(loading));
    }
    if table.spec.deletion_policy == DeletionPolicy::Delete {
        if !ctx.gate.holds() {
            return Err(Error::NotLeader);
        }
        delete_data(table, ctx, ns).await?;
        info!(table = %table.name_any(), location = %table.spec.location, "deleted the Delta table's files");
    }
    Ok(Action::await_change())
}

/// Pure: what still loads into table `name`: its jobs that are not final ("job j"), and tasks of
/// its jobs that still exist ("task j-0"), including deleted ones whose loop may be committing.
fn still_loading(name: &str, jobs: &[RoutineLoadJob], tasks: &[RoutineLoadTask]) -> Vec<String> {
    let mine: Vec<&RoutineLoadJob> = jobs.iter().filter(|j| j.spec.table == name).collect();
    let mut out: Vec<String> = mine
        .iter()
        .filter(|j| {
            !j.status
                .as_ref()
                .and_then(|s| s.state)
                .is_some_and(|s| s.is_final())
        })
        .map(|j| format!("job {}", j.name_any()))
        .collect();
    out.extend(
        tasks
            .iter()
            .filter(|t| {
                mine.iter()
                    .any(|j| j.uid().as_deref() == Some(t.spec.job_uid.as_str()))
            })
            .map(|t| format!("task {}", t.name_any())),
    );
    out
}

async fn delete_data(table: &Table, ctx: &Context, ns: &str) -> Result<(), Error> {
    use deltalake::ObjectStore;
    let secret = credentials(table, &ctx.client, ns)
        .await?
        .map_err(Error::DeleteData)?;
    let location = &table.spec.location;
    let opts = delta_table::storage_options(location, &secret);
    let t = match delta_table::open(location, opts).await {
        Ok(t) => t,
        // Nothing there (never created, or already deleted).
        Err(DeltaTableSetupError::Delta(deltalake::DeltaTableError::NotATable(_))) => return Ok(()),
        Err(e) => return Err(Error::DeleteData(e.to_string())),
    };
    let store = t.object_store();
    let files: Vec<_> = store
        .list(None)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::DeleteData(e.to_string()))?;
    let locations = futures::stream::iter(files.into_iter().map(|f| Ok(f.location))).boxed();
    for r in store.delete_stream(locations).collect::<Vec<_>>().await {
        r.map_err(|e| Error::DeleteData(e.to_string()))?;
    }
    // A local object store leaves the emptied directories behind.
    if let Some(path) = location.strip_prefix("file://") {
        match tokio::fs::remove_dir_all(path).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::DeleteData(format!("removing {path}: {e}"))),
        }
    }
    Ok(())
}

/// What a failed storage probe does to a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageVerdict {
    /// The table stays Ready with this Ready condition; `message` goes in StorageAvailable.
    RideOut {
        ready_reason: String,
        ready_message: String,
        message: String,
    },
    /// The table becomes Pending (StorageUnavailable) with this message.
    Fail { message: String },
}

/// Pure: a storage probe failed with `error` at `now`. A table that was Ready stays Ready while
/// the failure is younger than `grace` (counted from the StorageAvailable condition's
/// transition, so a new leader continues the count); a table that was not Ready has no jobs
/// loading to protect.
pub fn storage_verdict(
    previous: &TableStatus,
    error: &str,
    now: Timestamp,
    grace: Duration,
) -> StorageVerdict {
    let ready = previous
        .conditions
        .iter()
        .find(|c| c.type_ == READY_CONDITION && c.status == "True");
    let secs = |t: Timestamp| Timestamp::from_second(t.as_second()).unwrap_or(t);
    match (previous.phase, ready) {
        (Some(TablePhase::Ready), Some(r)) => {
            match job_plan::grace(&previous.conditions, STORAGE_CONDITION, now, grace) {
                Grace::Within { since, until } => StorageVerdict::RideOut {
                    ready_reason: r.reason.clone(),
                    ready_message: r.message.clone(),
                    message: format!(
                        "storage probe failing since {}: {error}; the table stays Ready until {}",
                        secs(since),
                        secs(until)
                    ),
                },
                Grace::Past { since } => StorageVerdict::Fail {
                    message: format!(
                        "storage unreachable since {}, longer than the {}s grace period \
                         ROUTINE_LOAD_TRANSIENT_GRACE_SECONDS: {error}",
                        secs(since),
                        grace.as_secs()
                    ),
                },
            }
        }
        _ => StorageVerdict::Fail {
            message: error.to_string(),
        },
    }
}

/// Compacts and vacuums the table when its schedule or the `routineload.io/compact`
/// annotation says so (leader only); `None`: nothing was due. A failure is recorded (and the
/// schedule waits an interval; a request is tried again at the next reconcile).
async fn maintain(
    table: &Table,
    ctx: &Context,
    opts: std::collections::HashMap<String, String>,
) -> Option<MaintenanceStatus> {
    let now = Timestamp::now();
    let decide = |t: &Table| {
        let previous = t.status.as_ref().and_then(|s| s.maintenance.clone());
        let since = t.metadata.creation_timestamp.as_ref().map_or(now, |c| c.0);
        let request = t.annotations().get(COMPACT_ANNOTATION).map(String::as_str);
        let due =
            table_maintenance::due(&t.spec.maintenance, previous.as_ref(), request, since, now);
        (due, previous)
    };
    if matches!(decide(table).0, Due::No) || !ctx.gate.holds() {
        return None;
    }
    // Decided again on the Table as the API server has it: the reconcile after this
    // controller's own status write may see a cached object without it.
    let api: Api<Table> =
        Api::namespaced(ctx.client.clone(), &table.namespace().unwrap_or_default());
    let fresh = match api.get(&table.name_any()).await {
        Ok(t) => t,
        Err(e) => {
            warn!(table = %table.name_any(), error = %e, "reading the table before a compaction");
            return None;
        }
    };
    let (due, previous) = decide(&fresh);
    let request = match due {
        Due::No => return None,
        Due::Scheduled => previous.as_ref().and_then(|p| p.compact_request.clone()),
        Due::Requested(r) => Some(r),
    };
    let spec = &fresh.spec.maintenance;
    let started = Instant::now();
    let location = &table.spec.location;
    let result = match delta_table::open(location, opts).await {
        Ok(t) => table_maintenance::compact_and_vacuum(
            t,
            spec.target_file_size_mb,
            table_maintenance::vacuum_retention(spec),
        )
        .await
        .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let name = table.name_any();
    let (event_type, reason, note, status) = match result {
        Ok(c) => {
            let note = format!(
                "compacted {} files into {} ({}), vacuumed {} files, in {:.1}s",
                c.files_removed,
                c.files_added,
                c.version.map_or_else(
                    || "nothing to compact".to_string(),
                    |v| format!("version {v}")
                ),
                c.files_vacuumed,
                started.elapsed().as_secs_f64()
            );
            info!(table = %name, "{note}");
            let status = MaintenanceStatus {
                last_compaction_time: Some(Time(now)),
                files_removed: c.files_removed,
                files_added: c.files_added,
                compacted_version: c.version,
                files_vacuumed: c.files_vacuumed,
                compact_request: request,
                message: None,
            };
            (EventType::Normal, "Compacted", note, status)
        }
        Err(e) => {
            let note = format!("compaction of {location} failed (tried again later): {e}");
            warn!(table = %name, "{note}");
            let status = MaintenanceStatus {
                last_compaction_time: Some(Time(now)),
                message: Some(note.clone()),
                ..previous.unwrap_or_default()
            };
            (EventType::Warning, "CompactionFailed", note, status)
        }
    };
    let event = Event {
        type_: event_type,
        reason: reason.into(),
        note: Some(note),
        action: "Compact".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &table.object_ref(&())).await {
        warn!(table = %name, error = %e, "failed to publish event");
    }
    Some(status)
}

#[allow(clippy::too_many_arguments)]
async fn set_status(
    table: &Table,
    ctx: &Context,
    ns: &str,
    phase: TablePhase,
    version: Option<i64>,
    reason: &str,
    message: &str,
    storage: Option<(bool, String)>,
    maintenance: Option<MaintenanceStatus>,
) -> Result<(), Error> {
    let previous = table.status.clone().unwrap_or_default();
    let status_word = if phase == TablePhase::Ready {
        "True"
    } else {
        "False"
    };
    let now = Timestamp::now();
    let last = previous
        .conditions
        .iter()
        .find(|c| c.type_ == READY_CONDITION && c.status == status_word && c.reason == reason)
        .map(|c| c.last_transition_time.clone());
    let mut conditions = vec![Condition {
        type_: READY_CONDITION.into(),
        status: status_word.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: table.metadata.generation,
        last_transition_time: last.clone().unwrap_or(Time(now)),
    }];
    match storage {
        Some((ok, msg)) => conditions.push(job_plan::condition(
            &previous.conditions,
            STORAGE_CONDITION,
            ok,
            if ok { "ProbeSucceeded" } else { "ProbeFailed" },
            msg,
            table.metadata.generation.unwrap_or(0),
            now,
        )),
        // Not probed: an ongoing failure keeps its start.
        None => conditions.extend(
            previous
                .conditions
                .iter()
                .filter(|c| c.type_ == STORAGE_CONDITION)
                .cloned(),
        ),
    }
    let status = TableStatus {
        phase: Some(phase),
        delta_version: version.or(previous.delta_version),
        observed_generation: table.metadata.generation,
        conditions,
        maintenance: maintenance.or_else(|| previous.maintenance.clone()),
    };
    if status == previous {
        return Ok(());
    }
    if !ctx.gate.holds() {
        return Err(Error::NotLeader);
    }
    let api: Api<Table> = Api::namespaced(ctx.client.clone(), ns);
    let body = json!({
        "apiVersion": "routineload.io/v1alpha1",
        "kind": "Table",
        "metadata": { "name": table.name_any() },
        "status": status,
    });
    api.patch_status(
        &table.name_any(),
        &PatchParams::apply(OPERATOR_FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(Error::PatchStatus)?;
    if previous.phase != Some(phase) || last.is_none() {
        let event = Event {
            type_: if phase == TablePhase::Ready {
                EventType::Normal
            } else {
                EventType::Warning
            },
            reason: reason.into(),
            note: Some(message.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &table.object_ref(&())).await {
            warn!(table = %table.name_any(), error = %e, "failed to publish event");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(type_: &str, status: &str, reason: &str, at_s: i64) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: format!("{reason} message"),
            observed_generation: Some(1),
            last_transition_time: Time(Timestamp::from_second(at_s).expect("valid")),
        }
    }

    #[test]
    fn a_ready_table_rides_out_storage_failures_within_the_grace_period() {
        let grace = Duration::from_secs(60);
        let ready = cond(READY_CONDITION, "True", "DeltaTableReady", 0);
        let failing_since_1000 = cond(STORAGE_CONDITION, "False", "ProbeFailed", 1_000);
        let status = |phase, conditions: Vec<Condition>| TableStatus {
            phase: Some(phase),
            delta_version: Some(3),
            observed_generation: Some(1),
            conditions,
            maintenance: None,
        };
        // name, previous status, now (s), Ok(ride-out message part) / Err(failure message part)
        type Case = (
            &'static str,
            TableStatus,
            i64,
            Result<&'static str, &'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                "first failure of a Ready table",
                status(TablePhase::Ready, vec![ready.clone()]),
                1_000,
                Ok("failing since 1970-01-01T00:16:40Z"),
            ),
            (
                "failing for 59 s",
                status(
                    TablePhase::Ready,
                    vec![ready.clone(), failing_since_1000.clone()],
                ),
                1_059,
                Ok("stays Ready until 1970-01-01T00:17:40Z"),
            ),
            (
                "failing for 60 s: Pending, saying since when",
                status(TablePhase::Ready, vec![ready.clone(), failing_since_1000]),
                1_060,
                Err("storage unreachable since 1970-01-01T00:16:40Z, longer than the 60s"),
            ),
            (
                "an earlier success does not count as a failure start",
                status(
                    TablePhase::Ready,
                    vec![
                        ready.clone(),
                        cond(STORAGE_CONDITION, "True", "ProbeSucceeded", 0),
                    ],
                ),
                5_000,
                Ok("failing since 1970-01-01T01:23:20Z"),
            ),
            (
                "a table never Ready has nothing to protect",
                status(TablePhase::Pending, vec![]),
                1_000,
                Err("timeout"),
            ),
        ];
        for (name, previous, now_s, expected) in cases {
            let now = Timestamp::from_second(now_s).expect("valid");
            match (expected, storage_verdict(&previous, "timeout", now, grace)) {
                (
                    Ok(text),
                    StorageVerdict::RideOut {
                        ready_reason,
                        message,
                        ..
                    },
                ) => {
                    assert_eq!(ready_reason, "DeltaTableReady", "{name}");
                    assert!(message.contains(text), "{name}: {message}");
                }
                (Err(text), StorageVerdict::Fail { message }) => {
                    assert!(message.contains(text), "{name}: {message}")
                }
                (_, got) => panic!("{name}: {got:?}"),
            }
        }
    }

    #[test]
    fn a_table_is_in_use_until_its_jobs_are_final_and_their_tasks_gone() {
        use routine_load_api::RoutineLoadTaskSpec;
        use routine_load_api::job::{JobState, RoutineLoadJobStatus};
        let job = |name: &str, table: &str, state: Option<JobState>| {
            let mut j: RoutineLoadJob = serde_json::from_value(serde_json::json!({
                "apiVersion": "routineload.io/v1alpha1",
                "kind": "RoutineLoadJob",
                "metadata": {"name": name, "uid": format!("uid-{name}")},
                "spec": {"table": table, "kafka": {"brokerList": "k:9092", "topic": "t"}}
            }))
            .expect("job");
            j.status = Some(RoutineLoadJobStatus {
                state,
                ..Default::default()
            });
            j
        };
        let task = |name: &str, job: &str| {
            RoutineLoadTask::new(
                name,
                RoutineLoadTaskSpec {
                    job: job.into(),
                    job_uid: format!("uid-{job}"),
                    partitions: vec![0],
                    worker: "w0".into(),
                    epoch: 0,
                    job_generation: 1,
                },
            )
        };
        // (case, jobs, tasks, still loading)
        type Case = (
            &'static str,
            Vec<RoutineLoadJob>,
            Vec<RoutineLoadTask>,
            Vec<&'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                "a running job",
                vec![job("a", "t", Some(JobState::Running))],
                vec![task("a-0", "a")],
                vec!["job a", "task a-0"],
            ),
            (
                "stopped, its task still ending",
                vec![job("a", "t", Some(JobState::Stopped))],
                vec![task("a-0", "a")],
                vec!["task a-0"],
            ),
            (
                "stopped, tasks gone",
                vec![job("a", "t", Some(JobState::Stopped))],
                vec![],
                vec![],
            ),
            (
                "another table's job and task",
                vec![job("b", "other", Some(JobState::Running))],
                vec![task("b-0", "b")],
                vec![],
            ),
        ];
        for (case, jobs, tasks, want) in cases {
            assert_eq!(still_loading("t", &jobs, &tasks), want, "{case}");
        }
    }
}
