//! The Helm chart (`charts/routine-load`) and the install bundle (`manifests/install.yaml`):
//! - the chart's CRDs are byte-for-byte the generated `crds/`, and the bundle is what
//!   `make manifests` renders now (drift fails with the command to run);
//! - `helm lint --strict` is clean with the default values and with every toggle on;
//! - the rendered RBAC never uses `*`, and the pods are non-root, read-only, capability-free;
//! - `helm install` into a fresh namespace of the real API server, then the operator and a worker
//!   run as local processes with tokens of the chart's ServiceAccounts and the environment of the
//!   chart's Deployment/StatefulSet: a Wikipedia CSV job goes RUNNING and loads every row, the
//!   probes' paths answer, and nothing in the logs was forbidden;
//! - `helm uninstall` leaves no object of the release behind, and keeps the CRDs.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use routine_load_e2e::kafka::Listener;
use routine_load_e2e::process::workspace_binary;
use routine_load_e2e::{LocalProcess, Testbed, testbed_or_skip, unique_name};
use serde::Deserialize;
use serde_json::{Value, json};

fn repo_root() -> PathBuf {
    routine_load_e2e::repo_root()
        .canonicalize()
        .expect("repository root")
}

fn chart_dir() -> PathBuf {
    repo_root().join("charts/routine-load")
}

/// `helm` of the testbed, run from the repository root (no cluster needed for lint/template).
fn helm(tb: &Testbed) -> Command {
    let mut c = tb.helm();
    c.current_dir(repo_root());
    c
}

/// Every document of a multi-document YAML stream, as JSON values (empty documents dropped).
fn yaml_docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).expect("valid YAML document"))
        .filter(|v| !v.is_null())
        .collect()
}

/// `helm template` of the chart with `--set` values.
fn render(tb: &Testbed, release: &str, ns: &str, sets: &[&str]) -> Vec<Value> {
    let mut cmd = helm(tb);
    cmd.args([
        "template",
        release,
        "charts/routine-load",
        "--namespace",
        ns,
    ]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    yaml_docs(&Testbed::run(&mut cmd).expect("helm template"))
}

fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or_default()
}

/// The chart carries copies of the generated CRDs; they must not drift (no testbed needed).
#[test]
fn chart_crds_equal_generated_crds() {
    let read = |dir: &Path| -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("yaml"))
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&p).expect("read CRD"))
            })
            .collect()
    };
    let generated = read(&repo_root().join("crds"));
    let chart = read(&chart_dir().join("crds"));
    assert!(!generated.is_empty(), "crds/ is empty");
    assert_eq!(
        generated.keys().collect::<Vec<_>>(),
        chart.keys().collect::<Vec<_>>(),
        "charts/routine-load/crds/ and crds/ hold different files: run `make manifests`"
    );
    for (name, bytes) in &generated {
        assert!(
            chart[name] == *bytes,
            "charts/routine-load/crds/{name} differs from crds/{name}: run `make manifests`"
        );
    }
}

#[test]
fn chart_lints_cleanly() {
    let Some(tb) = testbed_or_skip("helm lint of the chart") else {
        return;
    };
    for sets in [
        &[][..],
        &[
            "metrics.serviceMonitor.enabled=true",
            "dashboards.enabled=true",
            "watchNamespaces[0]=team-a",
            "tableVolume.enabled=true",
            "tableVolume.volume.persistentVolumeClaim.claimName=delta-tables",
            "worker.errorLog.persistence.enabled=true",
            "worker.loadMemoryLimitPercent=80",
        ][..],
    ] {
        let mut cmd = helm(&tb);
        cmd.args(["lint", "--strict", "charts/routine-load"]);
        for s in sets {
            cmd.args(["--set", s]);
        }
        let out = Testbed::run(&mut cmd).unwrap_or_else(|e| panic!("helm lint {sets:?}: {e:#}"));
        assert!(
            !out.contains("[WARNING]") && !out.contains("[ERROR]"),
            "helm lint {sets:?}:\n{out}"
        );
    }
}

/// `manifests/install.yaml` is exactly what `make manifests` renders from the chart now.
#[test]
fn install_bundle_has_no_drift() {
    let Some(tb) = testbed_or_skip("install bundle drift") else {
        return;
    };
    let out = std::env::temp_dir().join(format!("{}.yaml", unique_name("install")));
    let script = repo_root().join("e2e/testbed/render-manifests.sh");
    Testbed::run(
        Command::new("bash")
            .arg(&script)
            .arg(&out)
            .env("HELM", tb.bin_dir().join("helm")),
    )
    .expect("render-manifests.sh");
    let fresh = std::fs::read(&out).expect("rendered bundle");
    let _ = std::fs::remove_file(&out);
    let checked_in = std::fs::read(repo_root().join("manifests/install.yaml"))
        .expect("manifests/install.yaml is missing: run `make manifests`");
    assert!(
        fresh == checked_in,
        "manifests/install.yaml is stale (the chart or crds/ changed): run `make manifests` and commit the result"
    );
    // The bundle installs everything the chart does, in its own namespace.
    let docs = yaml_docs(&String::from_utf8_lossy(&checked_in));
    for k in [
        "Namespace",
        "CustomResourceDefinition",
        "Deployment",
        "StatefulSet",
        "ClusterRole",
    ] {
        assert!(docs.iter().any(|d| kind(d) == k), "install.yaml has no {k}");
    }
}

/// The README's `kubectl apply --server-side -f manifests/install.yaml`, checked by the real API
/// server (a server-side dry run: schemas, RBAC objects and CRDs are validated, nothing is
/// persisted, so the test can't collide with a release of the same name).
#[test]
fn install_bundle_is_accepted_by_the_api_server() {
    let Some(tb) = testbed_or_skip("install bundle dry run") else {
        return;
    };
    // A dry run creates nothing, so the bundle's namespaced objects need their namespace to
    // exist already (it may: `make demo` installs into it). Creating it changes nothing else.
    let _ = Testbed::run(tb.kubectl().args(["create", "namespace", "routine-load"]));
    let out = Testbed::run(
        tb.kubectl()
            .args([
                "apply",
                "--server-side",
                "--dry-run=server",
                "--force-conflicts",
                "-f",
            ])
            .arg(repo_root().join("manifests/install.yaml")),
    )
    .expect("kubectl apply --server-side --dry-run=server -f manifests/install.yaml");
    for object in [
        "namespace/routine-load",
        "deployment.apps/routine-load-operator",
        "statefulset.apps/routine-load-worker",
        "clusterrole.rbac.authorization.k8s.io/routine-load-operator",
    ] {
        assert!(out.contains(object), "{object} not applied:\n{out}");
    }
}

/// Least privilege and pod hardening, for the cluster-wide and the namespaced install.
#[test]
fn rendered_rbac_and_pods_are_least_privilege() {
    let Some(tb) = testbed_or_skip("chart RBAC and pod security") else {
        return;
    };
    let cluster_wide = render(&tb, "routine-load", "routine-load", &[]);
    let namespaced = render(
        &tb,
        "routine-load",
        "routine-load",
        &["watchNamespaces[0]=team-a"],
    );
    for (mode, docs) in [("cluster-wide", &cluster_wide), ("namespaced", &namespaced)] {
        let roles: Vec<&Value> = docs
            .iter()
            .filter(|d| matches!(kind(d), "Role" | "ClusterRole"))
            .collect();
        assert!(!roles.is_empty(), "{mode}: no Role/ClusterRole rendered");
        for role in roles {
            let name = &role["metadata"]["name"];
            for rule in role["rules"].as_array().expect("rules") {
                for field in ["apiGroups", "resources", "verbs", "resourceNames"] {
                    for v in rule[field].as_array().into_iter().flatten() {
                        let v = v.as_str().unwrap_or_default();
                        assert!(
                            !v.contains('*'),
                            "{mode}: {} {name} has '*' in {field}: {rule}",
                            kind(role)
                        );
                    }
                }
            }
        }
        let count = |k: &str| docs.iter().filter(|d| kind(d) == k).count();
        // Stream Load checks a loading client's token: TokenReview and SubjectAccessReview are
        // cluster-scoped, so even a namespaced install has this one ClusterRole, with only them.
        let auth: Vec<&Value> = docs
            .iter()
            .filter(|d| {
                kind(d) == "ClusterRole"
                    && d["metadata"]["name"]
                        .as_str()
                        .is_some_and(|n| n.ends_with("-worker-auth"))
            })
            .collect();
        assert_eq!(
            auth.len(),
            1,
            "{mode}: the worker's token-review ClusterRole"
        );
        for rule in auth[0]["rules"].as_array().expect("rules") {
            assert_eq!(rule["verbs"], json!(["create"]), "{mode}: {rule}");
            assert!(
                matches!(
                    rule["resources"].to_string().as_str(),
                    r#"["tokenreviews"]"# | r#"["subjectaccessreviews"]"#
                ),
                "{mode}: {rule}"
            );
        }
        if mode == "namespaced" {
            assert_eq!(
                count("ClusterRole"),
                1,
                "namespaced install has ClusterRoles besides the token-review one"
            );
            assert!(
                docs.iter().any(|d| kind(d) == "Role"
                    && d["metadata"]["namespace"] == "team-a"
                    && d["rules"].to_string().contains("routineloadjobs")),
                "no Role in the watched namespace"
            );
        } else {
            assert_eq!(
                count("ClusterRole"),
                3,
                "operator, worker and worker token-review ClusterRoles"
            );
        }
    }
    for d in &cluster_wide {
        if !matches!(kind(d), "Deployment" | "StatefulSet") {
            continue;
        }
        let name = d["metadata"]["name"].as_str().unwrap_or_default();
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
            "{name}"
        );
        assert_eq!(
            d["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"], "true",
            "{name}"
        );
        for c in pod["containers"].as_array().expect("containers") {
            let sc = &c["securityContext"];
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
            assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{name}");
            assert!(c["livenessProbe"]["httpGet"]["path"].is_string(), "{name}");
            assert!(c["readinessProbe"]["httpGet"]["path"].is_string(), "{name}");
            let mounts = c["volumeMounts"].to_string();
            assert!(mounts.contains("\"/tmp\""), "{name}: /tmp is not writable");
        }
    }
    // The StatefulSet's pods get stable DNS names from the headless Service.
    let sts = cluster_wide
        .iter()
        .find(|d| kind(d) == "StatefulSet")
        .expect("worker StatefulSet");
    let svc = cluster_wide
        .iter()
        .find(|d| kind(d) == "Service" && d["metadata"]["name"] == sts["spec"]["serviceName"])
        .expect("the StatefulSet's headless Service");
    assert_eq!(svc["spec"]["clusterIP"], "None");
    // Stream Load clients reach a ready worker through the ClusterIP Service on 8040.
    let stream_load = cluster_wide
        .iter()
        .find(|d| kind(d) == "Service" && d["metadata"]["name"] == sts["metadata"]["name"])
        .expect("the workers' Stream Load Service");
    assert_eq!(stream_load["spec"]["type"], "ClusterIP", "{stream_load}");
    assert!(
        stream_load["spec"]["clusterIP"].is_null()
            && stream_load["spec"]["publishNotReadyAddresses"].is_null(),
        "ready workers only: {stream_load}"
    );
    assert_eq!(
        stream_load["spec"]["ports"],
        json!([{"name": "http", "port": 8040, "targetPort": "http", "protocol": "TCP"}]),
        "{stream_load}"
    );
    let pod_labels = &sts["spec"]["template"]["metadata"]["labels"];
    for (k, v) in stream_load["spec"]["selector"]
        .as_object()
        .expect("a selector")
    {
        assert_eq!(
            &pod_labels[k], v,
            "the Service selects the worker pods: {k}"
        );
    }
    let worker = &sts["spec"]["template"]["spec"]["containers"][0];
    assert!(
        worker["ports"]
            .as_array()
            .expect("worker ports")
            .iter()
            .any(|p| p["name"] == "http" && p["containerPort"] == 8040),
        "the worker container's port http is 8040: {}",
        worker["ports"]
    );
    let op_svc = cluster_wide
        .iter()
        .find(|d| kind(d) == "Service" && d["metadata"]["name"] == "routine-load-operator")
        .expect("the operator's Service");
    assert_ne!(
        op_svc["spec"]["selector"], stream_load["spec"]["selector"],
        "the Stream Load Service selects workers, not operators"
    );
}

// ----------------------------------------------------------------------------------------------
// helm install, the binaries as the chart's ServiceAccounts, helm uninstall

fn api(client: &Client, ns: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("routineload.io", "v1alpha1", kind);
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

fn kubectl_json(tb: &Testbed, args: &[&str]) -> Value {
    let out = Testbed::run(tb.kubectl().args(args).args(["-o", "json"]))
        .unwrap_or_else(|e| panic!("kubectl {args:?}: {e:#}"));
    serde_json::from_str(&out).expect("kubectl JSON")
}

/// Bytes of a Kubernetes quantity (`2Gi`, `512Mi`, `1G`, `1000`).
fn quantity_bytes(q: &str) -> Option<u64> {
    let units: [(&str, u64); 8] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    for (suffix, mult) in units {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<u64>().ok().map(|n| n * mult);
        }
    }
    q.parse().ok()
}

/// The container's environment as the kubelet would give it to a pod named `pod` in `ns`:
/// fieldRefs and resourceFieldRefs resolved, `$(VAR)` references expanded.
fn container_env(container: &Value, pod: &str, ns: &str) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for e in container["env"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().expect("env name").to_string();
        let value = if let Some(v) = e["value"].as_str() {
            let mut v = v.to_string();
            for (k, val) in &env {
                v = v.replace(&format!("$({k})"), val);
            }
            v
        } else if let Some(path) = e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            match path {
                "metadata.name" => pod.to_string(),
                "metadata.namespace" => ns.to_string(),
                "status.podIP" => "127.0.0.1".to_string(),
                other => panic!("unexpected fieldRef {other}"),
            }
        } else if let Some(res) = e["valueFrom"]["resourceFieldRef"]["resource"].as_str() {
            let (section, what) = res.split_once('.').expect("resource name");
            let q = container["resources"][section][what]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: the container has no {res}"));
            quantity_bytes(q)
                .unwrap_or_else(|| panic!("{name}: quantity {q}"))
                .to_string()
        } else if e.get("valueFrom").is_none() {
            // `value: ""`: the API server drops empty values.
            String::new()
        } else {
            panic!("unsupported env source: {e}");
        };
        env.insert(name, value);
    }
    env
}

/// `worker.tls.secretName`: the worker mounts the Secret, gets the certificate, key and HTTPS
/// address and its HTTPS URL under the headless Service, exposes port `https`, and the Stream
/// Load Service forwards it; without it none of that is rendered.
#[test]
fn worker_tls_renders_the_https_port_secret_and_urls() {
    let Some(tb) = testbed_or_skip("chart worker TLS") else {
        return;
    };
    let worker_parts = |docs: &[Value]| {
        let sts = docs
            .iter()
            .find(|d| kind(d) == "StatefulSet")
            .expect("the worker StatefulSet")
            .clone();
        let service = docs
            .iter()
            .find(|d| kind(d) == "Service" && d["metadata"]["name"] == "routine-load-worker")
            .expect("the Stream Load Service")
            .clone();
        (sts, service)
    };
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["name"].as_str().map(str::to_string))
            .collect()
    };

    let (sts, service) = worker_parts(&render(&tb, "routine-load", "rl", &[]));
    let pod = &sts["spec"]["template"]["spec"];
    let env = container_env(&pod["containers"][0], "routine-load-worker-0", "rl");
    assert!(!env.contains_key("ROUTINE_LOAD_TLS_CERT_FILE"), "{env:?}");
    assert_eq!(names(&service["spec"]["ports"]), ["http"]);
    assert!(!names(&pod["volumes"]).contains(&"tls".to_string()));

    let (sts, service) = worker_parts(&render(
        &tb,
        "routine-load",
        "rl",
        &["worker.tls.secretName=worker-tls"],
    ));
    let pod = &sts["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let env = container_env(container, "routine-load-worker-0", "rl");
    for (k, v) in [
        (
            "ROUTINE_LOAD_TLS_CERT_FILE",
            "/etc/routine-load/tls/tls.crt",
        ),
        ("ROUTINE_LOAD_TLS_KEY_FILE", "/etc/routine-load/tls/tls.key"),
        ("ROUTINE_LOAD_HTTPS_ADDR", "0.0.0.0:8443"),
        (
            "ROUTINE_LOAD_HTTPS_ADVERTISE_URL",
            "https://routine-load-worker-0.routine-load-worker-headless.rl.svc.cluster.local:8443",
        ),
    ] {
        assert_eq!(env.get(k).map(String::as_str), Some(v), "{k}: {env:?}");
    }
    assert_eq!(names(&container["ports"]), ["http", "https"]);
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "tls")
        .expect("the tls volume");
    assert_eq!(volume["secret"]["secretName"], "worker-tls");
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "tls")
        .expect("the tls mount");
    assert_eq!(mount["mountPath"], "/etc/routine-load/tls");
    assert_eq!(mount["readOnly"], true);
    let https = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "https")
        .expect("the Service's https port");
    assert_eq!(
        (&https["port"], &https["targetPort"]),
        (&json!(8443), &json!("https"))
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `GET path` on 127.0.0.1:port: the status code, or None while nothing listens.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_whitespace().nth(1)?.parse().ok()
}

async fn wait_http_ok(port: u16, path: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if http_status(port, path) == Some(200) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: GET {path} on port {port} is not 200 after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A "403" that is an HTTP status, not part of a number or a timestamp.
fn mentions_403(log: &str) -> bool {
    let b = log.as_bytes();
    log.match_indices("403").any(|(i, _)| {
        let before = i.checked_sub(1).map(|j| b[j]);
        let after = b.get(i + 3).copied();
        let numeric = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'.');
        !numeric(before) && !numeric(after) && before != Some(b':') && before != Some(b'-')
    })
}

fn assert_not_forbidden(p: &LocalProcess) {
    let log = p.log();
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("forbidden") || l.contains("Forbidden") || mentions_403(l))
        .collect();
    assert!(
        refused.is_empty(),
        "{} was refused by the API server (RBAC); log {}:\n{}",
        p.label,
        p.log_path().display(),
        refused.join("\n")
    );
}

/// The reference's Wikipedia row `i` (CSV, 11 columns); `user` carries `i`.
fn wiki_row(i: usize) -> String {
    let channels = ["#en.wikipedia", "#ca.wikipedia", "#de.wikipedia"];
    format!(
        "2015-09-12 00:{:02}:{:02},{},User{i},{},{},0,{},1,{},{},{}",
        (i / 60) % 60,
        i % 60,
        channels[i % 3],
        i % 2,
        u8::from(i.is_multiple_of(3)),
        u8::from(i.is_multiple_of(7)),
        (i % 400) as i64 - 200,
        i % 300,
        i % 50
    )
}

/// `kubectl auth can-i` as user `sa`; `resource` may name a subresource (`jobs/status`).
fn can_i(tb: &Testbed, sa: &str, ns: &str, verb: &str, resource: &str) -> bool {
    let mut cmd = tb.kubectl();
    cmd.args(["auth", "can-i", verb, "-n", ns, "--as", sa]);
    match resource.split_once('/') {
        Some((res, sub)) => cmd.arg(res).arg(format!("--subresource={sub}")),
        None => cmd.arg(resource),
    };
    let out = cmd.output().expect("kubectl auth can-i");
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

/// Whether the binaries keep worker Leases apart from the jobs: the operator reads
/// ROUTINE_LOAD_WORKER_NAMESPACE and the worker ROUTINE_LOAD_WATCH_NAMESPACE (the chart sets
/// both; older binaries ignore them and need jobs, tasks and Leases in one namespace).
fn binaries_split_namespaces() -> bool {
    let has = |file: &str, var: &str| {
        std::fs::read_to_string(repo_root().join(file)).is_ok_and(|src| src.contains(var))
    };
    has("operator/src/main.rs", "\"ROUTINE_LOAD_WORKER_NAMESPACE\"")
        && has("worker/src/main.rs", "\"ROUTINE_LOAD_WATCH_NAMESPACE\"")
}

/// Uninstalls the release and deletes its namespace when the test fails half way.
struct Release<'a> {
    tb: &'a Testbed,
    name: String,
    jobs_ns: String,
    armed: bool,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        if self.armed {
            let ns = &self.name;
            let _ = helm(self.tb)
                .args(["uninstall", &self.name, "--namespace", ns])
                .output();
            for n in [ns, &self.jobs_ns] {
                let _ = self
                    .tb
                    .kubectl()
                    .args(["delete", "namespace", n, "--wait=false"])
                    .output();
            }
        }
    }
}

#[tokio::test]
async fn chart_installs_runs_a_job_and_uninstalls_cleanly() {
    let Some(tb) = testbed_or_skip("helm install + operator + worker with the chart's RBAC") else {
        return;
    };
    let started = Instant::now();
    let operator_bin = workspace_binary("routine-load-operator").expect("operator built");
    let worker_bin = workspace_binary("routine-load-worker").expect("worker built");
    let client = tb.client().await.expect("admin client");
    // The newest schema (helm skips CRDs that exist, and other tests may have applied older ones).
    tb.apply_crds().expect("apply CRDs");

    // A release name that contains the chart name: every object is "<release>-...", and the
    // cluster-scoped ClusterRoles/Bindings are unique to this run.
    let release = unique_name("routine-load");
    let ns = release.clone();
    tb.ensure_namespace(&client, &ns).await.expect("namespace");
    // Where the Tables and jobs live: a namespace of their own, as users install it (the Leases
    // stay in the release namespace), when the binaries read ROUTINE_LOAD_WORKER_NAMESPACE
    // (operator) and ROUTINE_LOAD_WATCH_NAMESPACE (worker); before that, the release namespace.
    let jobs_ns = if binaries_split_namespaces() {
        format!("{release}-jobs")
    } else {
        ns.clone()
    };
    tb.ensure_namespace(&client, &jobs_ns)
        .await
        .expect("jobs namespace");
    eprintln!("release {release}: jobs in namespace {jobs_ns}, Leases in {ns}");
    // No pods: on a testbed with a node they would run beside the local processes and take the
    // leader Lease (chart_runs_real_pods_that_load_exactly_once covers the pods).
    let installed = Testbed::run(helm(&tb).args([
        "install",
        &release,
        "charts/routine-load",
        "--namespace",
        &ns,
        "--set",
        "operator.replicas=0",
        "--set",
        "worker.replicas=0",
        "--set",
        "dashboards.enabled=true",
    ]));
    let mut guard = Release {
        tb: &tb,
        name: release.clone(),
        jobs_ns: jobs_ns.clone(),
        armed: true,
    };
    if let Err(e) = installed {
        panic!("helm install: {e:#}");
    }
    let selector = format!("app.kubernetes.io/instance={release}");

    // The chart's objects, as the API server holds them.
    let deploy = kubectl_json(
        &tb,
        &[
            "get",
            "deployment",
            &format!("{release}-operator"),
            "-n",
            &ns,
        ],
    );
    let sts = kubectl_json(
        &tb,
        &[
            "get",
            "statefulset",
            &format!("{release}-worker"),
            "-n",
            &ns,
        ],
    );
    let op_container = &deploy["spec"]["template"]["spec"]["containers"][0];
    let wk_container = &sts["spec"]["template"]["spec"]["containers"][0];
    let op_sa = deploy["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .expect("operator serviceAccountName")
        .to_string();
    let wk_sa = sts["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .expect("worker serviceAccountName")
        .to_string();

    // Least privilege as the API server sees it.
    let as_op = format!("system:serviceaccount:{ns}:{op_sa}");
    let as_wk = format!("system:serviceaccount:{ns}:{wk_sa}");
    let mut checks = vec![
        (
            &as_op,
            &jobs_ns,
            "create",
            "routineloadtasks.routineload.io",
            true,
        ),
        (
            &as_op,
            &jobs_ns,
            "patch",
            "routineloadjobs.routineload.io/status",
            true,
        ),
        (&as_op, &jobs_ns, "get", "secrets", true),
        (&as_op, &jobs_ns, "list", "secrets", false),
        (
            &as_op,
            &jobs_ns,
            "delete",
            "routineloadjobs.routineload.io",
            false,
        ),
        (&as_op, &ns, "list", "leases.coordination.k8s.io", true),
        (&as_op, &ns, "delete", "leases.coordination.k8s.io", false),
        // Label expiry: the operator lists Loads and deletes expired ones, nothing else.
        (&as_op, &jobs_ns, "list", "loads.routineload.io", true),
        (&as_op, &jobs_ns, "delete", "loads.routineload.io", true),
        (&as_op, &jobs_ns, "create", "loads.routineload.io", false),
        (
            &as_op,
            &jobs_ns,
            "patch",
            "loads.routineload.io/status",
            false,
        ),
        (
            &as_wk,
            &jobs_ns,
            "watch",
            "routineloadtasks.routineload.io",
            true,
        ),
        (
            &as_wk,
            &jobs_ns,
            "patch",
            "routineloadtasks.routineload.io/status",
            true,
        ),
        (
            &as_wk,
            &jobs_ns,
            "create",
            "routineloadtasks.routineload.io",
            false,
        ),
        (
            &as_wk,
            &jobs_ns,
            "patch",
            "routineloadjobs.routineload.io",
            false,
        ),
        (&as_wk, &jobs_ns, "list", "secrets", false),
        (&as_wk, &ns, "create", "leases.coordination.k8s.io", true),
        (&as_wk, &ns, "create", "pods", false),
    ];
    if jobs_ns != ns {
        // Leases only in the release namespace.
        checks.push((
            &as_wk,
            &jobs_ns,
            "create",
            "leases.coordination.k8s.io",
            false,
        ));
        checks.push((
            &as_op,
            &jobs_ns,
            "list",
            "leases.coordination.k8s.io",
            false,
        ));
    }
    for (who, in_ns, verb, res, want) in checks {
        assert_eq!(
            can_i(&tb, who, in_ns, verb, res),
            want,
            "{who} can {verb} {res} in {in_ns}: expected {want}"
        );
    }

    // The operator and one worker as the chart would run them: the chart's env (pod name,
    // namespaces, leader Lease name, memory limit, advertise URL...) with tokens of its
    // ServiceAccounts; only the HTTP address (ports), the error-log directory (no volume here),
    // the batch interval (speed) and the watched namespace (the testbed is shared) are local.
    let op_creds = tb.service_account(&ns, &op_sa).await.expect("operator SA");
    let wk_creds = tb.service_account(&ns, &wk_sa).await.expect("worker SA");
    let op_pod = format!("{release}-operator-local");
    let wk_pod = format!("{release}-worker-0");
    let (op_port, wk_port) = (free_port(), free_port());
    let errlog = std::env::temp_dir().join(unique_name("chart-errlog"));

    let mut op_env = container_env(op_container, &op_pod, &ns);
    assert_eq!(
        op_env.get("ROUTINE_LOAD_LEADER_LEASE").map(String::as_str),
        Some(format!("{release}-operator").as_str()),
        "the leader Lease the operator's Role allows"
    );
    op_env.insert(
        "ROUTINE_LOAD_HTTP_ADDR".into(),
        format!("127.0.0.1:{op_port}"),
    );
    op_env.insert("ROUTINE_LOAD_WATCH_NAMESPACE".into(), jobs_ns.clone());
    let mut wk_env = container_env(wk_container, &wk_pod, &ns);
    assert_eq!(
        wk_env.get("ROUTINE_LOAD_ADVERTISE_URL").map(String::as_str),
        Some(
            format!("http://{wk_pod}.{release}-worker-headless.{ns}.svc.cluster.local:8040")
                .as_str()
        ),
    );
    assert_eq!(
        wk_env
            .get("ROUTINE_LOAD_POD_MEMORY_LIMIT_BYTES")
            .map(String::as_str),
        Some("2147483648")
    );
    wk_env.insert(
        "ROUTINE_LOAD_HTTP_ADDR".into(),
        format!("127.0.0.1:{wk_port}"),
    );
    wk_env.insert("ROUTINE_LOAD_WATCH_NAMESPACE".into(), jobs_ns.clone());
    wk_env.insert(
        "ROUTINE_LOAD_ERROR_LOG_DIR".into(),
        errlog.display().to_string(),
    );
    wk_env.insert("ROUTINE_LOAD_BATCH_INTERVAL_MS".into(), "1000".into());

    let mut operator = tb
        .spawn_as(
            "chart-operator",
            &op_creds,
            &operator_bin,
            Vec::<String>::new(),
            &op_env,
        )
        .expect("spawn operator");
    let mut worker = tb
        .spawn_as(
            "chart-worker",
            &wk_creds,
            &worker_bin,
            Vec::<String>::new(),
            &wk_env,
        )
        .expect("spawn worker");

    // The probes' paths, from the chart, answer on the processes.
    let path = |c: &Value, probe: &str| {
        c[probe]["httpGet"]["path"]
            .as_str()
            .unwrap_or_else(|| panic!("{probe} path"))
            .to_string()
    };
    for probe in ["livenessProbe", "readinessProbe"] {
        wait_http_ok(op_port, &path(op_container, probe), "operator").await;
        wait_http_ok(wk_port, &path(wk_container, probe), "worker").await;
    }

    // The reference's Wikipedia table and job.
    let topic = unique_name("chart-wiki");
    tb.create_topic(&topic, 2).await.expect("topic");
    let mut produced = 0usize;
    for p in 0..2 {
        let lines: Vec<String> = (0..40).map(|i| wiki_row(p * 1000 + i)).collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        tb.produce_lines(Listener::Plaintext, &topic, p as i32, &refs)
            .await
            .expect("produce");
        produced += refs.len();
    }
    let dir = std::env::temp_dir().join(unique_name("chart-wiki-table"));
    let location = format!("file://{}", dir.display());
    let col = |name: &str, ty: &str| json!({ "name": name, "type": ty });
    let table: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "routineload.io/v1alpha1", "kind": "Table",
        "metadata": { "name": "routine-wiki-edit" },
        "spec": { "location": location, "columns": [
            { "name": "event_time", "type": "DATETIME", "nullable": false },
            col("channel", "VARCHAR(32)"), col("user", "VARCHAR(128)"),
            col("is_anonymous", "TINYINT"), col("is_minor", "TINYINT"), col("is_new", "TINYINT"),
            col("is_robot", "TINYINT"), col("is_unpatrolled", "TINYINT"),
            col("delta", "INT"), col("added", "INT"), col("deleted", "INT"),
        ] },
    }))
    .expect("table");
    api(&client, &jobs_ns, "Table", "tables")
        .create(&PostParams::default(), &table)
        .await
        .expect("create table");
    let jobs = api(&client, &jobs_ns, "RoutineLoadJob", "routineloadjobs");
    let job: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "routineload.io/v1alpha1", "kind": "RoutineLoadJob",
        "metadata": { "name": "routine-load-wikipedia" },
        "spec": {
            "table": "routine-wiki-edit", "columnSeparator": ",",
            "columns": ["event_time", "channel", "user", "is_anonymous", "is_minor", "is_new",
                        "is_robot", "is_unpatrolled", "delta", "added", "deleted"],
            "desiredConcurrentNumber": 1, "maxErrorNumber": 1000,
            "kafka": { "brokerList": tb.var("KAFKA_BROKERS").expect("brokers"), "topic": topic,
                       "defaultOffset": "OFFSET_BEGINNING" },
        },
    }))
    .expect("job");
    jobs.create(&PostParams::default(), &job)
        .await
        .expect("create job");

    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        let s = serde_json::to_value(jobs.get("routine-load-wikipedia").await.expect("get job"))
            .expect("json")["status"]
            .clone();
        if s["state"] == "RUNNING" && s["statistic"]["loadedRows"] == produced as i64 {
            break s;
        }
        if Instant::now() > deadline || !operator.is_running() || !worker.is_running() {
            panic!(
                "the job did not load {produced} rows (operator running: {}, worker running: {}); status: {s}\nlogs: {} {}",
                operator.is_running(),
                worker.is_running(),
                operator.log_path().display(),
                worker.log_path().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!("job status: {status}");
    assert_eq!(status["statistic"]["errorRows"], 0, "{status}");
    let snapshot = tb
        .read_delta(&location, None)
        .expect("read the Delta table");
    assert_eq!(snapshot.rows.len(), produced, "rows in the Delta table");

    // The worker's heartbeat Lease is in the release namespace, named after its pod.
    kubectl_json(&tb, &["get", "lease", &wk_pod, "-n", &ns]);

    // Stop the processes before the RBAC goes away, then check what they were refused.
    let _ = operator.stop(Duration::from_secs(10));
    let _ = worker.stop(Duration::from_secs(30));
    assert_not_forbidden(&operator);
    assert_not_forbidden(&worker);
    // Leave nothing for a finalizer to wait on: the Table's finalizer needs the operator.
    let _ = jobs
        .delete("routine-load-wikipedia", &Default::default())
        .await;
    let _ = tb
        .kubectl()
        .args([
            "patch",
            "table",
            "routine-wiki-edit",
            "-n",
            &jobs_ns,
            "--type=merge",
        ])
        .args(["-p", r#"{"metadata":{"finalizers":null}}"#])
        .output();
    let _ = tb
        .kubectl()
        .args([
            "delete",
            "table",
            "routine-wiki-edit",
            "-n",
            &jobs_ns,
            "--wait=false",
        ])
        .output();

    // helm uninstall: nothing of the release remains; the CRDs do (helm never deletes crds/).
    Testbed::run(helm(&tb).args(["uninstall", &release, "--namespace", &ns])).expect("uninstall");
    guard.armed = false;
    let namespaced = "serviceaccounts,roles.rbac.authorization.k8s.io,rolebindings.rbac.authorization.k8s.io,services,deployments.apps,statefulsets.apps,configmaps,poddisruptionbudgets.policy";
    let cluster =
        "clusterroles.rbac.authorization.k8s.io,clusterrolebindings.rbac.authorization.k8s.io";
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = Testbed::run(
            tb.kubectl()
                .args(["get", namespaced, "-n", &ns, "-l", &selector, "-o", "name"]),
        )
        .expect("kubectl get")
            + &Testbed::run(
                tb.kubectl()
                    .args(["get", cluster, "-l", &selector, "-o", "name"]),
            )
            .expect("kubectl get");
        if left.trim().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after helm uninstall, objects of release {release} remain:\n{left}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for crd in [
        "tables.routineload.io",
        "routineloadjobs.routineload.io",
        "routineloadtasks.routineload.io",
    ] {
        kubectl_json(&tb, &["get", "crd", crd]);
    }
    for n in [&ns, &jobs_ns] {
        let _ = tb
            .kubectl()
            .args(["delete", "namespace", n, "--wait=false"])
            .output();
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&errlog);
    eprintln!(
        "chart install/run/uninstall took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// The testbed builds the images from docker/Dockerfile's runtime stages (dockerfile_image.py,
/// which refuses instructions it can't reproduce); what they say must fit the chart: the user the
/// pods run as, the ports the probes use, an entrypoint that is the copied binary.
#[test]
fn dockerfile_images_fit_the_chart() {
    let values: Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart_dir().join("values.yaml")).expect("values.yaml"),
    )
    .expect("values.yaml parses");
    for (target, component) in [("operator", "operator"), ("worker", "worker")] {
        let out = Command::new("python3")
            .arg(repo_root().join("e2e/testbed/dockerfile_image.py"))
            .arg(repo_root().join("docker/Dockerfile"))
            .arg(target)
            .output()
            .expect("python3 e2e/testbed/dockerfile_image.py");
        assert!(
            out.status.success(),
            "dockerfile_image.py {target}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let image: Value = serde_json::from_slice(&out.stdout).expect("image JSON");
        let uid = values["podSecurityContext"]["runAsUser"]
            .as_u64()
            .expect("runAsUser");
        let gid = values["podSecurityContext"]["runAsGroup"]
            .as_u64()
            .expect("runAsGroup");
        assert_eq!(image["user"], format!("{uid}:{gid}"), "{target}: USER");
        let port = values[component]["httpPort"].as_u64().expect("httpPort");
        assert_eq!(
            image["expose"],
            json!([port.to_string()]),
            "{target}: EXPOSE"
        );
        let copied = image["copies"][0][1].as_str().expect("COPY destination");
        assert_eq!(image["entrypoint"], json!([copied]), "{target}: ENTRYPOINT");
        assert!(
            copied.ends_with(&format!("routine-load-{target}")),
            "{target}: copies {copied}"
        );
    }
}

#[test]
fn quantities_and_403s() {
    assert_eq!(quantity_bytes("2Gi"), Some(2 << 30));
    assert_eq!(quantity_bytes("512Mi"), Some(512 << 20));
    assert_eq!(quantity_bytes("1000"), Some(1000));
    assert_eq!(wiki_row(7).split(',').count(), 11, "{}", wiki_row(7));
    assert!(mentions_403("status: 403 Forbidden"));
    assert!(mentions_403("code: 403,"));
    assert!(!mentions_403("2026-11-22T02:31:26.403123Z offset 14031"));
}

// ----------------------------------------------------------------------------------------------
// helm install with real pods: the testbed's node (on unless ROUTINE_LOAD_NODE=0) runs the chart's
// Deployment and StatefulSet from images built out of docker/Dockerfile's targets.

/// The testbed, when it has a node; otherwise `None` after a visible skip line.
fn node_or_skip(test: &str) -> Option<Testbed> {
    let tb = testbed_or_skip(test)?;
    if tb.var("ROUTINE_LOAD_NODE").ok() == Some("1") {
        return Some(tb);
    }
    let _ = writeln!(
        std::io::stderr().lock(),
        "SKIPPED {test}: the testbed has no node (it starts one as root unless ROUTINE_LOAD_NODE=0; restart it: e2e/testbed/testbed.sh down; e2e/testbed/testbed.sh up)"
    );
    None
}

/// A Wikipedia row whose INT column `delta` holds text: a data-quality error row.
fn bad_wiki_row(i: usize) -> String {
    let mut cols: Vec<String> = wiki_row(i).split(',').map(str::to_string).collect();
    cols[8] = format!("not-a-number-{i}");
    cols.join(",")
}

/// Pods of one component of the release, as `kubectl get pods -o json` items.
fn component_pods(tb: &Testbed, ns: &str, release: &str, component: &str) -> Vec<Value> {
    let selector =
        format!("app.kubernetes.io/instance={release},app.kubernetes.io/component={component}");
    kubectl_json(tb, &["get", "pods", "-n", ns, "-l", &selector])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn pod_ready(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn uid(pod: &Value) -> String {
    pod["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Until `count` pods of the component are Ready and none of them is in `gone` (uids of pods that
/// must have been replaced); their uids by pod name.
async fn wait_ready_pods(
    tb: &Testbed,
    ns: &str,
    release: &str,
    component: &str,
    count: usize,
    gone: &[String],
) -> BTreeMap<String, String> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let pods = component_pods(tb, ns, release, component);
        let ready: BTreeMap<String, String> = pods
            .iter()
            .filter(|p| pod_ready(p) && !gone.contains(&uid(p)))
            .map(|p| (p["metadata"]["name"].as_str().unwrap().to_string(), uid(p)))
            .collect();
        if ready.len() == count && pods.len() == count {
            return ready;
        }
        if Instant::now() > deadline {
            let events = tb
                .kubectl()
                .args(["get", "events", "-n", ns, "--sort-by=.lastTimestamp"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            panic!(
                "{component}: {count} Ready pods expected (replacing {gone:?}), have {ready:?}; pods:\n{}\nevents:\n{events}",
                serde_json::to_string_pretty(&pods).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// memory.limit_in_bytes of a pod's cgroup (v1 memory hierarchy, cgroupfs driver, under the
/// node's cgroup root), found by the pod's uid.
fn pod_memory_limit(node_cgroup: &str, pod_uid: &str) -> Option<u64> {
    let kubepods = Path::new("/sys/fs/cgroup/memory")
        .join(node_cgroup)
        .join("kubepods");
    let want = format!("pod{pod_uid}");
    let mut dirs = vec![kubepods];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).ok()?.flatten() {
            let p = e.path();
            if !p.is_dir() {
                continue;
            }
            if e.file_name().to_string_lossy() == want {
                let text = std::fs::read_to_string(p.join("memory.limit_in_bytes")).ok()?;
                return text.trim().parse().ok();
            }
            if !e.file_name().to_string_lossy().starts_with("pod") {
                dirs.push(p);
            }
        }
    }
    None
}

/// `GET url` (http://host:port/path) from the host: status code and body.
fn http_get(url: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = std::net::TcpStream::connect(authority)
        .unwrap_or_else(|e| panic!("connecting to {authority} for {url}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf)
        .unwrap_or_else(|e| panic!("reading {url}: {e}"));
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (code, body.to_string())
}

/// Logs of every current pod of the release that mention a refusal by the API server.
fn forbidden_in_pod_logs(tb: &Testbed, ns: &str, release: &str) -> Vec<String> {
    let mut refused = vec![];
    for component in ["operator", "worker"] {
        for pod in component_pods(tb, ns, release, component) {
            let name = pod["metadata"]["name"].as_str().unwrap_or_default();
            let log = tb
                .kubectl()
                .args(["logs", "-n", ns, name])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            refused.extend(
                log.lines()
                    .filter(|l| {
                        l.contains("forbidden") || l.contains("Forbidden") || mentions_403(l)
                    })
                    .map(|l| format!("{name}: {l}")),
            );
        }
    }
    refused
}

/// Produces `rows` rows (every 50th bad) per partition starting at row `from` of each partition;
/// adds the good rows' users to `want` and returns how many rows were bad.
async fn produce_wiki(
    tb: &Testbed,
    topic: &str,
    from: usize,
    rows: usize,
    want: &mut std::collections::BTreeSet<String>,
) -> usize {
    let mut bad = 0;
    for p in 0..2usize {
        let lines: Vec<String> = (from..from + rows)
            .map(|i| {
                let i = p * 100_000 + i;
                if i % 50 == 49 {
                    bad += 1;
                    bad_wiki_row(i)
                } else {
                    want.insert(format!("User{i}"));
                    wiki_row(i)
                }
            })
            .collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        tb.produce_lines(Listener::Plaintext, topic, p as i32, &refs)
            .await
            .expect("produce");
    }
    bad
}

/// Until the job is RUNNING with `loaded` rows and `errors` error rows; its status.
async fn wait_job_loaded(tb: &Testbed, ns: &str, job: &str, loaded: usize, errors: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let s = kubectl_json(tb, &["get", "routineloadjob", job, "-n", ns])["status"].clone();
        if s["state"] == "RUNNING"
            && s["statistic"]["loadedRows"] == loaded as i64
            && s["statistic"]["errorRows"] == errors as i64
        {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "job {job}: expected RUNNING with {loaded} loaded and {errors} error rows; status: {s}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The table read by the independent reader holds exactly the users in `want`, each once.
fn assert_exactly_once(
    tb: &Testbed,
    location: &str,
    want: &std::collections::BTreeSet<String>,
    when: &str,
) {
    let snap = tb.read_delta(location, None).expect("read the Delta table");
    let users: Vec<String> = snap
        .rows
        .iter()
        .map(|r| r["user"].as_str().unwrap_or_default().to_string())
        .collect();
    let distinct: std::collections::BTreeSet<String> = users.iter().cloned().collect();
    assert_eq!(
        users.len() - distinct.len(),
        0,
        "{when}: {} duplicate rows in the table",
        users.len() - distinct.len()
    );
    let missing: Vec<&String> = want.difference(&distinct).take(5).collect();
    let extra: Vec<&String> = distinct.difference(want).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{when}: table has {} rows, want {}; missing e.g. {missing:?}, unexpected e.g. {extra:?}",
        distinct.len(),
        want.len()
    );
}

#[tokio::test]
async fn chart_runs_real_pods_that_load_exactly_once() {
    let Some(tb) = node_or_skip("helm install with real pods on the testbed's node") else {
        return;
    };
    let started = Instant::now();
    tb.apply_crds().expect("apply CRDs");
    // The images the chart names, from docker/Dockerfile and the binaries this build made.
    let mut images = Command::new("bash");
    images
        .arg(repo_root().join("e2e/testbed/images.sh"))
        .arg("build")
        .arg(tb.var("CONTAINERD_ADDRESS").expect("containerd address"))
        .envs(tb.child_env());
    Testbed::run(&mut images).expect("images.sh build");

    let release = unique_name("routine-load");
    let ns = release.clone();
    let jobs_ns = format!("{release}-jobs");
    let client = tb.client().await.expect("admin client");
    for n in [&ns, &jobs_ns] {
        tb.ensure_namespace(&client, n).await.expect("namespace");
    }
    // file:// tables on a hostPath (one node), writable by the pods' uid.
    let tables = std::env::temp_dir().join(unique_name("pods-tables"));
    std::fs::create_dir_all(&tables).expect("tables dir");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tables, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let base_sets: Vec<(&str, String)> = vec![
        ("--set", format!("watchNamespaces[0]={jobs_ns}")),
        ("--set", "worker.advertiseAddress=podIP".to_string()),
        ("--set", "worker.resources.requests.cpu=100m".to_string()),
        (
            "--set",
            "worker.resources.requests.memory=256Mi".to_string(),
        ),
        (
            "--set-json",
            r#"worker.extraEnv=[{"name":"ROUTINE_LOAD_BATCH_INTERVAL_MS","value":"1000"}]"#
                .to_string(),
        ),
        ("--set", "tableVolume.enabled=true".to_string()),
        (
            "--set",
            format!("tableVolume.volume.hostPath.path={}", tables.display()),
        ),
        (
            "--set",
            "tableVolume.volume.hostPath.type=Directory".to_string(),
        ),
    ];
    let mut install = helm(&tb);
    install.args([
        "install",
        &release,
        "charts/routine-load",
        "--namespace",
        &ns,
    ]);
    for (flag, value) in &base_sets {
        install.arg(flag).arg(value);
    }
    let installed = Testbed::run(&mut install);
    let mut guard = Release {
        tb: &tb,
        name: release.clone(),
        jobs_ns: jobs_ns.clone(),
        armed: true,
    };
    if let Err(e) = installed {
        panic!("helm install: {e:#}");
    }

    // Probes go Ready: 2 operators (one leader) and 2 workers, as the chart's defaults say.
    let operators = wait_ready_pods(&tb, &ns, &release, "operator", 2, &[]).await;
    let workers = wait_ready_pods(&tb, &ns, &release, "worker", 2, &[]).await;
    eprintln!(
        "Ready: operators {operators:?}, workers {workers:?} ({:.0} s)",
        started.elapsed().as_secs_f64()
    );
    let worker0 = format!("{release}-worker-0");
    assert!(
        workers.contains_key(&worker0),
        "StatefulSet names: {workers:?}"
    );
    // The kubelet enforces the chart's worker memory limit (2Gi) on the pod's cgroup.
    let cgroup = tb.var("NODE_CGROUP").expect("NODE_CGROUP in testbed.env");
    assert_eq!(
        pod_memory_limit(cgroup, &workers[&worker0]),
        Some(2 << 30),
        "memory limit of {worker0}'s cgroup under /sys/fs/cgroup/memory/{cgroup}/kubepods"
    );

    // The reference's Wikipedia table and job; the pods reach Kafka on the node's pod listener.
    let topic = unique_name("pods-wiki");
    tb.create_topic(&topic, 2).await.expect("topic");
    let mut want = std::collections::BTreeSet::new();
    let mut bad = produce_wiki(&tb, &topic, 0, 200, &mut want).await;
    let location = "file:///data/wiki".to_string();
    let host_location = format!("file://{}/wiki", tables.display());
    let col = |name: &str, ty: &str| json!({ "name": name, "type": ty });
    let table: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "routineload.io/v1alpha1", "kind": "Table",
        "metadata": { "name": "routine-wiki-edit" },
        "spec": { "location": location, "columns": [
            { "name": "event_time", "type": "DATETIME", "nullable": false },
            col("channel", "VARCHAR(32)"), col("user", "VARCHAR(128)"),
            col("is_anonymous", "TINYINT"), col("is_minor", "TINYINT"), col("is_new", "TINYINT"),
            col("is_robot", "TINYINT"), col("is_unpatrolled", "TINYINT"),
            col("delta", "INT"), col("added", "INT"), col("deleted", "INT"),
        ] },
    }))
    .expect("table");
    api(&client, &jobs_ns, "Table", "tables")
        .create(&PostParams::default(), &table)
        .await
        .expect("create table");
    let job_name = "routine-load-wikipedia";
    let job: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "routineload.io/v1alpha1", "kind": "RoutineLoadJob",
        "metadata": { "name": job_name },
        "spec": {
            "table": "routine-wiki-edit", "columnSeparator": ",",
            "columns": ["event_time", "channel", "user", "is_anonymous", "is_minor", "is_new",
                        "is_robot", "is_unpatrolled", "delta", "added", "deleted"],
            "desiredConcurrentNumber": 2, "maxErrorNumber": 100000,
            "kafka": { "brokerList": tb.var("KAFKA_POD_BROKERS").expect("pod brokers"),
                       "topic": topic, "defaultOffset": "OFFSET_BEGINNING" },
        },
    }))
    .expect("job");
    api(&client, &jobs_ns, "RoutineLoadJob", "routineloadjobs")
        .create(&PostParams::default(), &job)
        .await
        .expect("create job");
    let status = wait_job_loaded(&tb, &jobs_ns, job_name, want.len(), bad).await;
    assert_exactly_once(&tb, &host_location, &want, "first load");
    eprintln!(
        "loaded {} rows, {bad} error rows ({:.0} s)",
        want.len(),
        started.elapsed().as_secs_f64()
    );

    // The error-log URL in the status points at a worker pod and returns the rejected rows.
    let urls: Vec<String> = status["errorLogUrls"]
        .as_array()
        .expect("status.errorLogUrls")
        .iter()
        .filter_map(|u| u.as_str().map(str::to_string))
        .collect();
    assert!(!urls.is_empty(), "no error-log URL in {status}");
    let (code, body) = http_get(&urls[0]);
    assert_eq!(code, 200, "GET {}: {body}", urls[0]);
    assert!(
        body.contains("not-a-number-"),
        "GET {}: no rejected row in:\n{body}",
        urls[0]
    );

    // kubectl delete pod of a worker while rows arrive: the StatefulSet recreates it under the
    // same name, and the table loses and duplicates nothing. It runs a task of the job first (the
    // deletion hits a loading worker).
    let tasks = kubectl_json(&tb, &["get", "routineloadtasks", "-n", &jobs_ns])["items"].clone();
    let on_worker0 = tasks
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["spec"]["worker"] == worker0.as_str())
        .count();
    assert!(on_worker0 > 0, "no task runs on {worker0}: {tasks}");
    let old_worker = workers[&worker0].clone();
    Testbed::run(
        tb.kubectl()
            .args(["delete", "pod", &worker0, "-n", &ns, "--wait=false"]),
    )
    .expect("delete worker pod");
    bad += produce_wiki(&tb, &topic, 200, 200, &mut want).await;
    let workers = wait_ready_pods(&tb, &ns, &release, "worker", 2, &[old_worker]).await;
    assert!(
        workers.contains_key(&worker0),
        "worker-0 was not recreated: {workers:?}"
    );
    wait_job_loaded(&tb, &jobs_ns, job_name, want.len(), bad).await;
    assert_exactly_once(&tb, &host_location, &want, "after deleting a worker pod");
    eprintln!(
        "worker pod replaced, {} rows ({:.0} s)",
        want.len(),
        started.elapsed().as_secs_f64()
    );

    // kubectl delete pod of the leading operator: the standby takes the lease.
    let lease = format!("{release}-operator");
    let holder = kubectl_json(&tb, &["get", "lease", &lease, "-n", &ns])["spec"]["holderIdentity"]
        .as_str()
        .expect("leader lease holder")
        .to_string();
    assert!(
        operators.contains_key(&holder),
        "lease holder {holder} is not one of {operators:?}"
    );
    Testbed::run(
        tb.kubectl()
            .args(["delete", "pod", &holder, "-n", &ns, "--wait=false"]),
    )
    .expect("delete leader pod");
    bad += produce_wiki(&tb, &topic, 400, 200, &mut want).await;
    let operators = wait_ready_pods(
        &tb,
        &ns,
        &release,
        "operator",
        2,
        &[operators[&holder].clone()],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let new_holder = loop {
        let h = kubectl_json(&tb, &["get", "lease", &lease, "-n", &ns])["spec"]["holderIdentity"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if h != holder && operators.contains_key(&h) {
            break h;
        }
        assert!(
            Instant::now() < deadline,
            "the lease stays with {h} after deleting {holder}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    wait_job_loaded(&tb, &jobs_ns, job_name, want.len(), bad).await;
    assert_exactly_once(
        &tb,
        &host_location,
        &want,
        "after deleting the leading operator",
    );
    eprintln!(
        "leader {holder} -> {new_holder}, {} rows ({:.0} s)",
        want.len(),
        started.elapsed().as_secs_f64()
    );

    // helm upgrade with a changed value rolls every pod; the job keeps loading.
    let before: Vec<String> = ["operator", "worker"]
        .iter()
        .flat_map(|c| component_pods(&tb, &ns, &release, c))
        .map(|p| uid(&p))
        .collect();
    let mut upgrade = helm(&tb);
    upgrade.args([
        "upgrade",
        &release,
        "charts/routine-load",
        "--namespace",
        &ns,
    ]);
    for (flag, value) in &base_sets {
        upgrade.arg(flag).arg(value);
    }
    upgrade.args(["--set", "operator.logLevel=debug\\,buoyant_kernel=off"]);
    upgrade.args(["--set", "worker.logLevel=info\\,routine_load_worker=debug"]);
    Testbed::run(&mut upgrade).expect("helm upgrade");
    bad += produce_wiki(&tb, &topic, 600, 200, &mut want).await;
    wait_ready_pods(&tb, &ns, &release, "operator", 2, &before).await;
    wait_ready_pods(&tb, &ns, &release, "worker", 2, &before).await;
    wait_job_loaded(&tb, &jobs_ns, job_name, want.len(), bad).await;
    assert_exactly_once(&tb, &host_location, &want, "after helm upgrade");
    eprintln!(
        "helm upgrade rolled all pods, {} rows ({:.0} s)",
        want.len(),
        started.elapsed().as_secs_f64()
    );
    let refused = forbidden_in_pod_logs(&tb, &ns, &release);
    assert!(
        refused.is_empty(),
        "the API server refused the pods:\n{}",
        refused.join("\n")
    );

    // helm uninstall: the pods go; the CRDs, the Table object and the table's data stay.
    Testbed::run(helm(&tb).args(["uninstall", &release, "--namespace", &ns, "--wait"]))
        .expect("helm uninstall");
    guard.armed = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !(component_pods(&tb, &ns, &release, "operator").is_empty()
        && component_pods(&tb, &ns, &release, "worker").is_empty())
    {
        assert!(
            Instant::now() < deadline,
            "pods of {release} remain after helm uninstall"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for crd in [
        "tables.routineload.io",
        "routineloadjobs.routineload.io",
        "routineloadtasks.routineload.io",
    ] {
        kubectl_json(&tb, &["get", "crd", crd]);
    }
    kubectl_json(&tb, &["get", "table", "routine-wiki-edit", "-n", &jobs_ns]);
    assert_exactly_once(&tb, &host_location, &want, "after helm uninstall");

    // Clean up: no operator runs to clear the finalizers any more.
    let _ = tb
        .kubectl()
        .args([
            "delete",
            "routineloadjob",
            job_name,
            "-n",
            &jobs_ns,
            "--wait=false",
        ])
        .output();
    for kind in ["routineloadtasks", "tables"] {
        let names = tb
            .kubectl()
            .args(["get", kind, "-n", &jobs_ns, "-o", "name"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for n in names.lines() {
            let _ = tb
                .kubectl()
                .args([
                    "patch",
                    n,
                    "-n",
                    &jobs_ns,
                    "--type=merge",
                    "-p",
                    r#"{"metadata":{"finalizers":null}}"#,
                ])
                .output();
        }
    }
    for n in [&ns, &jobs_ns] {
        let _ = tb
            .kubectl()
            .args(["delete", "namespace", n, "--wait=false"])
            .output();
    }
    let _ = std::fs::remove_dir_all(&tables);
    eprintln!(
        "real pods: install, load, pod deletions, upgrade, uninstall in {:.0} s",
        started.elapsed().as_secs_f64()
    );
}
