//! routine-load on the testbed as local processes: a namespace, the operator (optional) and
//! workers started from the workspace's binaries with the admin kubeconfig, and small helpers to
//! create and read the custom resources as JSON.

use std::future::Future;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{Event as CoreEvent, Secret};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use serde_json::{Value, json};

use crate::process::{LocalProcess, workspace_binary};
use crate::proxy::Proxy;
use crate::{Testbed, unique_name};

/// A routine-load kind: (kind, plural).
pub const TABLE: (&str, &str) = ("Table", "tables");
pub const JOB: (&str, &str) = ("RoutineLoadJob", "routineloadjobs");
pub const TASK: (&str, &str) = ("RoutineLoadTask", "routineloadtasks");

pub struct Installation {
    pub tb: Testbed,
    pub client: Client,
    pub ns: String,
    pub operator: Option<LocalProcess>,
}

impl Installation {
    /// A fresh namespace with the CRDs applied and, when `with_operator`, an operator watching it.
    pub async fn start(tb: Testbed, label: &str, with_operator: bool) -> Result<Installation> {
        tb.apply_crds()?;
        let client = tb.client().await?;
        let ns = unique_name(label);
        tb.ensure_namespace(&client, &ns).await?;
        let mut me = Installation {
            tb,
            client,
            ns,
            operator: None,
        };
        if with_operator {
            let op = me.spawn_operator(&format!("operator-{}", me.ns), &[])?;
            me.operator = Some(op);
        }
        Ok(me)
    }

    /// A Table `name` of `(id BIGINT NOT NULL, v STRING)` on a fresh s3:// location reached
    /// through `proxy`, with its credentials Secret `name` (the testbed's keys and `options`, for
    /// example storage timeouts); returns the location.
    pub async fn s3_table_through(
        &self,
        name: &str,
        proxy: &Proxy,
        options: &[(&str, &str)],
    ) -> Result<String> {
        let var = |k: &str| {
            self.tb
                .var(k)
                .with_context(|| format!("testbed variable {k}"))
        };
        let mut data = serde_json::Map::new();
        data.insert(
            "AWS_ENDPOINT_URL".into(),
            format!("http://{}", proxy.addr()).into(),
        );
        for k in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"] {
            data.insert(k.into(), var(k)?.into());
        }
        for (k, v) in options {
            data.insert((*k).into(), (*v).into());
        }
        let secret: Secret =
            serde_json::from_value(json!({"metadata": {"name": name}, "stringData": data}))?;
        Api::<Secret>::namespaced(self.client.clone(), &self.ns)
            .create(&PostParams::default(), &secret)
            .await
            .with_context(|| format!("creating Secret {name}"))?;
        let location = format!("s3://{}/{}", var("S3_BUCKET")?, unique_name(name));
        self.create(
            TABLE,
            json!({
                "metadata": {"name": name},
                "spec": {
                    "location": location,
                    "credentialsSecret": {"name": name},
                    "columns": [
                        {"name": "id", "type": "BIGINT", "nullable": false},
                        {"name": "v", "type": "STRING"}
                    ]
                }
            }),
        )
        .await?;
        Ok(location)
    }

    fn command(&self, binary: &str, pod: &str) -> Result<Command> {
        let mut cmd = Command::new(workspace_binary(binary)?);
        for (k, v) in self.tb.child_env() {
            cmd.env(k, v);
        }
        cmd.env("KUBECONFIG", self.tb.kubeconfig())
            .env("POD_NAME", pod)
            .env("POD_NAMESPACE", &self.ns)
            .env("ROUTINE_LOAD_WATCH_NAMESPACE", &self.ns)
            .env("ROUTINE_LOAD_HTTP_ADDR", "127.0.0.1:0");
        Ok(cmd)
    }

    /// Starts an operator replica named `pod`, with `env` on top.
    pub fn spawn_operator(&self, pod: &str, env: &[(&str, &str)]) -> Result<LocalProcess> {
        let mut cmd = self.command("routine-load-operator", pod)?;
        cmd.env("RUST_LOG", "info,routine_load_operator=debug");
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.tb.spawn(pod, cmd)
    }

    /// Starts a worker named `pod` (its Lease and tasks go by that name; start it again under
    /// the same name to restart it), with its error-log HTTP endpoint on a free port and a 1 s
    /// batch interval unless `env` says otherwise.
    pub fn spawn_worker(&self, pod: &str, env: &[(&str, &str)]) -> Result<LocalProcess> {
        let mut cmd = self.command("routine-load-worker", pod)?;
        let port = free_port()?;
        cmd.env("ROUTINE_LOAD_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env(
                "ROUTINE_LOAD_ADVERTISE_URL",
                format!("http://127.0.0.1:{port}"),
            )
            .env(
                "ROUTINE_LOAD_ERROR_LOG_DIR",
                std::env::temp_dir().join(format!("{}-{pod}-errlog", self.ns)),
            )
            .env("ROUTINE_LOAD_BATCH_INTERVAL_MS", "1000")
            .env("RUST_LOG", "info,buoyant_kernel=warn,deltalake_core=warn");
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.tb.spawn(pod, cmd)
    }

    pub fn api(&self, (kind, plural): (&str, &str)) -> Api<DynamicObject> {
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("routineload.io", "v1alpha1", kind),
            plural,
        );
        Api::namespaced_with(self.client.clone(), &self.ns, &ar)
    }

    /// Creates an object of `kind` from `{metadata, spec}`.
    pub async fn create(&self, kind: (&str, &str), object: Value) -> Result<Value> {
        let mut object = object;
        object["apiVersion"] = "routineload.io/v1alpha1".into();
        object["kind"] = kind.0.into();
        let o: DynamicObject = serde_json::from_value(object)?;
        let created = self
            .api(kind)
            .create(&PostParams::default(), &o)
            .await
            .with_context(|| format!("creating a {}", kind.0))?;
        Ok(serde_json::to_value(created)?)
    }

    pub async fn get(&self, kind: (&str, &str), name: &str) -> Result<Value> {
        let o = self
            .api(kind)
            .get(name)
            .await
            .with_context(|| format!("reading {} {name}", kind.0))?;
        Ok(serde_json::to_value(o)?)
    }

    pub async fn delete(&self, kind: (&str, &str), name: &str) -> Result<()> {
        self.api(kind)
            .delete(name, &Default::default())
            .await
            .with_context(|| format!("deleting {} {name}", kind.0))?;
        Ok(())
    }

    /// A JSON merge patch of an object (a user's `kubectl patch --type merge`).
    pub async fn merge_patch(&self, kind: (&str, &str), name: &str, patch: Value) -> Result<()> {
        self.api(kind)
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .with_context(|| format!("patching {} {name}", kind.0))?;
        Ok(())
    }

    /// The tasks of a job.
    pub async fn tasks_of(&self, job: &str) -> Result<Vec<Value>> {
        let list = self
            .api(TASK)
            .list(&ListParams::default().labels(&format!("routineload.io/job={job}")))
            .await
            .context("listing tasks")?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|t| serde_json::to_value(t).ok())
            .collect())
    }

    /// (reason, message) of the Events about the object named `name`.
    pub async fn events_for(&self, name: &str) -> Result<Vec<(String, String)>> {
        let events: Api<CoreEvent> = Api::namespaced(self.client.clone(), &self.ns);
        Ok(events
            .list(&ListParams::default())
            .await
            .context("listing events")?
            .items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(name))
            .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
            .collect())
    }
}

/// A free loopback port.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// Polls `check` every 500 ms until it returns `Ok`, or panics after `timeout` with the last
/// `Err` (which says what was seen).
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, String>>,
{
    let t0 = Instant::now();
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) if t0.elapsed() > timeout => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}
