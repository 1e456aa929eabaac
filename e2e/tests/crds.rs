//! The generated CRDs (`crds/`) on a real API server: they apply, `kubectl explain` prints their
//! field docs, the schema's bounds are enforced by the API server with a message naming the
//! field, and `kubectl get` shows the printer columns.

use std::process::Command;

use anyhow::{Result, bail};
use routine_load_e2e::kube_util::load_crds;
use routine_load_e2e::{Testbed, testbed_or_skip, unique_name};
use serde_json::{Map, Value, json};

const GROUP: &str = "routineload.io";
const VERSION: &str = "v1alpha1";

fn crd_of(kind: &str) -> Value {
    let crds = load_crds().expect("reading crds/");
    crds.into_iter()
        .find(|c| c["spec"]["names"]["kind"] == kind && c["spec"]["group"] == GROUP)
        .unwrap_or_else(|| panic!("crds/ has no CRD for {kind}.{GROUP}"))
}

fn served_version(crd: &Value) -> &Value {
    crd["spec"]["versions"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["name"] == VERSION))
        .unwrap_or_else(|| panic!("CRD {} has no version {VERSION}", crd["metadata"]["name"]))
}

fn spec_schema(crd: &Value) -> &Value {
    &served_version(crd)["schema"]["openAPIV3Schema"]["properties"]["spec"]
}

/// Values for required fields whose schema alone can't tell a valid value (patterns, meaning).
fn known_value(path: &str) -> Option<Value> {
    Some(match path {
        "spec.table" => json!("orders"),
        "spec.kafka.brokerList" => json!("127.0.0.1:19092"),
        "spec.kafka.topic" => json!("orders"),
        _ => return None,
    })
}

/// The smallest value a schema accepts: only required properties, bounds respected.
fn minimal(schema: &Value, path: &str) -> Value {
    if let Some(v) = known_value(path) {
        return v;
    }
    if let Some(d) = schema.get("default") {
        return d.clone();
    }
    if let Some(e) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return e.clone();
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            let mut m = Map::new();
            let props = schema.get("properties").cloned().unwrap_or(json!({}));
            for r in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let r = r.as_str().unwrap();
                m.insert(r.into(), minimal(&props[r], &format!("{path}.{r}")));
            }
            Value::Object(m)
        }
        Some("array") => {
            let n = schema.get("minItems").and_then(Value::as_u64).unwrap_or(0);
            Value::Array(
                (0..n)
                    .map(|i| minimal(&schema["items"], &format!("{path}[{i}]")))
                    .collect(),
            )
        }
        Some("integer") => json!(
            schema
                .get("minimum")
                .and_then(Value::as_i64)
                .unwrap_or(1)
                .max(1)
        ),
        Some("number") => json!(schema.get("minimum").and_then(Value::as_f64).unwrap_or(0.0)),
        Some("boolean") => json!(false),
        _ => {
            let n = schema
                .get("minLength")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .max(1) as usize;
            json!("x".repeat(n))
        }
    }
}

fn minimal_job(name: &str, namespace: &str) -> Value {
    let crd = crd_of("RoutineLoadJob");
    let spec = minimal(spec_schema(&crd), "spec");
    json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": "RoutineLoadJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    })
}

/// `kubectl apply -f -` of one object; Ok(stdout) or Err(stderr).
fn kubectl_apply(tb: &Testbed, obj: &Value, dry_run: bool) -> Result<String, String> {
    use std::io::Write;
    let mut cmd = tb.kubectl();
    cmd.args(["apply", "-f", "-"]);
    if dry_run {
        cmd.arg("--dry-run=server");
    }
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(obj.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn setup(test: &str) -> Option<(Testbed, String)> {
    let tb = testbed_or_skip(test)?;
    tb.apply_crds().expect("kubectl apply crds/");
    let ns = unique_name("e2e-crd");
    Testbed::run(tb.kubectl().args(["create", "namespace", &ns])).expect("namespace");
    Some((tb, ns))
}

fn cleanup(tb: &Testbed, ns: &str) {
    let _ = Testbed::run(
        tb.kubectl()
            .args(["delete", "namespace", ns, "--wait=false"]),
    );
}

fn run(cmd: &mut Command) -> Result<String> {
    Testbed::run(cmd)
}

/// Runs a kubectl command until it succeeds (a new CRD's OpenAPI reaches `kubectl explain`
/// a moment after it is Established), for up to 30 s.
fn run_retrying(mut make: impl FnMut() -> Command) -> Result<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match Testbed::run(&mut make()) {
            Ok(out) => return Ok(out),
            Err(e) if std::time::Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(500)),
        }
    }
}

#[test]
fn crds_apply_and_kubectl_explain_prints_field_docs() {
    let Some((tb, ns)) = setup("crds apply + kubectl explain") else {
        return;
    };
    let crd = crd_of("RoutineLoadJob");
    let out = run_retrying(|| {
        let mut c = tb.kubectl();
        c.args(["explain", "routineloadjob.spec"]);
        c
    })
    .expect("kubectl explain");
    assert!(
        out.contains(&format!("GROUP:      {GROUP}")) || out.contains(GROUP),
        "explain names the group:\n{out}"
    );
    let props = spec_schema(&crd)["properties"]
        .as_object()
        .expect("spec properties");
    for field in [
        "table",
        "kafka",
        "desiredConcurrentNumber",
        "maxBatchInterval",
    ] {
        assert!(
            props.contains_key(field),
            "spec.{field} missing from the CRD"
        );
        assert!(
            out.contains(field),
            "kubectl explain lists spec.{field}:\n{out}"
        );
    }
    // The field docs come from the Rust doc comments: the first words of one appear.
    let doc = props["desiredConcurrentNumber"]["description"]
        .as_str()
        .expect("a description");
    let words: Vec<&str> = doc.split_whitespace().take(4).collect();
    assert!(
        out.contains(&words.join(" ")),
        "explain shows the description {doc:?}:\n{out}"
    );

    let field = run(tb
        .kubectl()
        .args(["explain", "routineloadjob.spec.maxBatchInterval"]))
    .expect("explain field");
    assert!(
        field.contains("FIELD:") && field.contains("maxBatchInterval"),
        "{field}"
    );
    // Every kind in crds/ is served.
    for crd in load_crds().unwrap() {
        let kind = crd["spec"]["names"]["kind"]
            .as_str()
            .unwrap()
            .to_lowercase();
        run_retrying(|| {
            let mut c = tb.kubectl();
            c.args(["explain", &kind]);
            c
        })
        .unwrap_or_else(|e| panic!("explain {kind}: {e}"));
    }
    cleanup(&tb, &ns);
}

#[test]
fn schema_bounds_are_enforced_by_the_api_server() {
    let Some((tb, ns)) = setup("crd schema bounds") else {
        return;
    };
    let job = minimal_job("bounds", &ns);
    kubectl_apply(&tb, &job, true)
        .unwrap_or_else(|e| panic!("a minimal valid job must be accepted: {e}\n{job:#}"));

    let cases: &[(&str, Value)] = &[
        ("desiredConcurrentNumber", json!(0)),
        ("desiredConcurrentNumber", json!(-3)),
        ("maxBatchInterval", json!(4)),
        ("maxBatchInterval", json!(61)),
    ];
    for (field, bad) in cases {
        let mut j = job.clone();
        j["spec"][*field] = bad.clone();
        match kubectl_apply(&tb, &j, true) {
            Ok(out) => panic!("spec.{field}={bad} was accepted: {out}"),
            Err(msg) => {
                assert!(
                    msg.contains(&format!("spec.{field}")),
                    "the refusal names spec.{field}: {msg}"
                );
                assert!(
                    msg.contains("Invalid value") || msg.contains("should be"),
                    "{msg}"
                );
            }
        }
    }
    for (field, good) in [
        ("desiredConcurrentNumber", json!(1)),
        ("maxBatchInterval", json!(5)),
        ("maxBatchInterval", json!(60)),
    ] {
        let mut j = job.clone();
        j["spec"][field] = good.clone();
        kubectl_apply(&tb, &j, true)
            .unwrap_or_else(|e| panic!("spec.{field}={good} must be accepted: {e}"));
    }
    // An unknown field is refused too (structural schema, strict field validation).
    let mut j = job.clone();
    j["spec"]["maxBatchIntervall"] = json!(10);
    let err = kubectl_apply(&tb, &j, true).expect_err("an unknown field is refused");
    assert!(err.contains("maxBatchIntervall"), "{err}");
    cleanup(&tb, &ns);
}

#[test]
fn kubectl_get_shows_the_printer_columns() {
    let Some((tb, ns)) = setup("crd printer columns") else {
        return;
    };
    let job = minimal_job("columns", &ns);
    kubectl_apply(&tb, &job, false).unwrap_or_else(|e| panic!("creating a job: {e}\n{job:#}"));

    let out = run(tb.kubectl().args(["get", "routineloadjobs", "-n", &ns])).expect("kubectl get");
    let header: Vec<&str> = out
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let crd = crd_of("RoutineLoadJob");
    let declared: Vec<String> = served_version(&crd)["additionalPrinterColumns"]
        .as_array()
        .expect("additionalPrinterColumns")
        .iter()
        .filter(|c| c.get("priority").and_then(Value::as_i64).unwrap_or(0) == 0)
        .map(|c| c["name"].as_str().unwrap().to_uppercase())
        .collect();
    let mut want = vec!["NAME".to_string()];
    want.extend(declared);
    assert_eq!(header, want, "kubectl get header:\n{out}");
    for col in [
        "STATE", "TABLE", "TOPIC", "TASKS", "LOADED", "ERRORS", "LAG", "AGE",
    ] {
        assert!(header.contains(&col), "column {col} in {header:?}");
    }
    let row = out.lines().nth(1).expect("a row");
    assert!(row.starts_with("columns"), "{out}");
    let table = job["spec"]["table"].as_str().unwrap();
    let topic = job["spec"]["kafka"]["topic"].as_str().unwrap();
    assert!(
        row.contains(table) && row.contains(topic),
        "TABLE and TOPIC filled in:\n{out}"
    );
    // The short names work.
    for short in crd["spec"]["names"]["shortNames"]
        .as_array()
        .into_iter()
        .flatten()
    {
        run(tb
            .kubectl()
            .args(["get", short.as_str().unwrap(), "-n", &ns]))
        .expect("short name");
    }
    cleanup(&tb, &ns);
}

/// Not a testbed test: the generator's minimal job is well formed.
#[test]
fn minimal_job_has_required_fields() -> Result<()> {
    if load_crds()?
        .iter()
        .all(|c| c["spec"]["names"]["kind"] != "RoutineLoadJob")
    {
        bail!("crds/ has no RoutineLoadJob CRD yet");
    }
    let j = minimal_job("x", "y");
    assert!(j["spec"].is_object());
    Ok(())
}
