//! Stream Load against the testbed with the real worker binary: the reference's `curl` loads
//! (CSV, JSON) into the Wikipedia table, read back with the independent reader; the same label
//! twice loads once ("Label Already Exists" with the first load's state); a load past
//! `max_filter_ratio` fails, commits nothing and its ErrorURL lists the rows with StarRocks'
//! reasons; no token => 401, a token without the RBAC => 403, nothing loaded.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Api;
use kube::api::PostParams;
use routine_load_e2e::installation::{Installation, TABLE, free_port, wait_for};
use routine_load_e2e::wikipedia::{COLUMN_NAMES, is_good, row, table_columns};
use routine_load_e2e::{testbed_or_skip, unique_name};
use serde_json::{Value, json};

const LOAD: (&str, &str) = ("Load", "loads");

/// A ServiceAccount's token; with `may_load`, a Role that lets it create loads in `ns`.
async fn service_account_token(inst: &Installation, name: &str, may_load: bool) -> String {
    let pp = PostParams::default();
    let sas: Api<ServiceAccount> = Api::namespaced(inst.client.clone(), &inst.ns);
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    sas.create(&pp, &sa).await.expect("create ServiceAccount");
    if may_load {
        let role: Role = serde_json::from_value(json!({
            "metadata": {"name": name},
            "rules": [{"apiGroups": ["routineload.io"], "resources": ["loads"], "verbs": ["create"]}]
        }))
        .unwrap();
        Api::<Role>::namespaced(inst.client.clone(), &inst.ns)
            .create(&pp, &role)
            .await
            .expect("create Role");
        let binding: RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": inst.ns}]
        }))
        .unwrap();
        Api::<RoleBinding>::namespaced(inst.client.clone(), &inst.ns)
            .create(&pp, &binding)
            .await
            .expect("create RoleBinding");
    }
    let req: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 3600}}))
            .unwrap();
    let issued = sas
        .create_token_request(name, &pp, &req)
        .await
        .expect("TokenRequest");
    serde_json::to_value(issued).unwrap()["status"]["token"]
        .as_str()
        .expect("a token")
        .to_string()
}

/// `curl` as in the reference's examples; returns the HTTP code and the body.
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "120", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("running curl");
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("curl's status line");
    (code.trim().parse().expect("HTTP code"), body.to_string())
}

fn json_of(code: u16, body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("HTTP {code}, not JSON ({e}): {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_load_labels_filter_ratio_and_auth() {
    let Some(tb) = testbed_or_skip("stream_load_labels_filter_ratio_and_auth") else {
        return;
    };
    let inst = Installation::start(tb, "e2e-stream-load", false)
        .await
        .expect("installation");
    let dir = std::env::temp_dir().join(unique_name("stream-load-table"));
    std::fs::create_dir_all(&dir).unwrap();
    let location = format!("file://{}", dir.display());
    inst.create(
        TABLE,
        json!({
            "apiVersion": "routineload.io/v1alpha1", "kind": "Table",
            "metadata": {"name": "routine-wiki-edit"},
            "spec": {"location": location, "columns": table_columns()}
        }),
    )
    .await
    .expect("create Table");
    let port = free_port().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let _worker = inst
        .spawn_worker(
            &unique_name("worker"),
            &[
                ("ROUTINE_LOAD_HTTP_ADDR", &format!("127.0.0.1:{port}")),
                ("ROUTINE_LOAD_ADVERTISE_URL", &base),
                ("ROUTINE_LOAD_STREAM_LOAD_MAX_BODY_BYTES", "50000"),
            ],
        )
        .expect("worker");
    let loader = service_account_token(&inst, "loader", true).await;
    let stranger = service_account_token(&inst, "stranger", false).await;
    wait_for(
        "the worker's HTTP server",
        Duration::from_secs(90),
        || async {
            let out = Command::new("curl")
                .args(["-sf", &format!("{base}/healthz")])
                .output()
                .map_err(|e| e.to_string())?;
            out.status
                .success()
                .then_some(())
                .ok_or_else(|| "not up".to_string())
        },
    )
    .await;

    let url = format!("{base}/api/{}/routine-wiki-edit/_stream_load", inst.ns);
    let user = format!("loader:{loader}");
    let columns = format!("columns: {}", COLUMN_NAMES.join(","));
    let good: Vec<usize> = (0..300).filter(|i| is_good(*i)).collect();
    let write = |name: &str, rows: &[usize]| {
        let path = dir.join(name);
        let text: String = rows.iter().map(|i| row(*i) + "\n").collect();
        std::fs::write(&path, text).unwrap();
        path
    };
    let good_file = write("good.csv", &good);
    let load = |label: &str, file: &Path, extra: &[&str]| {
        let label = format!("label:{label}");
        let file = file.display().to_string();
        let mut args = vec![
            "--location-trusted",
            "-u",
            &user,
            "-H",
            &label,
            "-H",
            "column_separator:,",
            "-H",
            &columns,
            "-T",
            &file,
            "-XPUT",
        ];
        for e in extra {
            args.extend(["-H", e]);
        }
        args.push(&url);
        let (code, body) = curl(&args);
        (code, json_of(code, &body))
    };

    // A CSV load: every row once, in one Delta version.
    let (code, first) = load("wiki-1", &good_file, &[]);
    assert_eq!(
        (code, first["Status"].as_str()),
        (200, Some("Success")),
        "{first}"
    );
    assert_eq!(first["Label"], "wiki-1");
    assert_eq!(first["NumberLoadedRows"], good.len(), "{first}");
    assert_eq!(first["NumberFilteredRows"], 0, "{first}");
    let version = first["TxnId"].as_i64().expect("TxnId");
    let snapshot = inst.tb.read_delta(&location, None).expect("read the table");
    assert_eq!(snapshot.version, version);
    let mut users: Vec<String> = snapshot
        .column("user")
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect();
    users.sort();
    let mut want: Vec<String> = good.iter().map(|i| format!("User{i}")).collect();
    want.sort();
    assert_eq!(users, want, "the table holds every row of the load once");

    // The same label again: refused with the first load's state, nothing loaded twice.
    let (code, again) = load("wiki-1", &good_file, &[]);
    assert_eq!(code, 200);
    assert_eq!(again["Status"], "Label Already Exists", "{again}");
    assert_eq!(again["ExistingJobStatus"], "FINISHED", "{again}");
    let loaded = inst.get(LOAD, "wiki-1").await.expect("the Load");
    assert_eq!(loaded["status"]["state"], "FINISHED", "{loaded}");
    assert_eq!(loaded["status"]["loadedRows"], good.len(), "{loaded}");

    // The reference's JSON load: an array of objects whose keys are the column names.
    let objects: Vec<Value> = (600..610)
        .map(|i| {
            let fields = row(i);
            let mut o = serde_json::Map::new();
            for (name, v) in COLUMN_NAMES.iter().zip(fields.split(',')) {
                let value = v.parse::<i64>().map_or_else(|_| json!(v), |n| json!(n));
                o.insert(name.to_string(), value);
            }
            Value::Object(o)
        })
        .collect();
    let json_file = dir.join("rows.json");
    std::fs::write(&json_file, serde_json::to_vec(&objects).unwrap()).unwrap();
    let (code, body) = curl(&[
        "--location-trusted",
        "-u",
        &user,
        "-H",
        "label:wiki-json",
        "-H",
        "format: json",
        "-H",
        "strip_outer_array: true",
        "-T",
        &json_file.display().to_string(),
        "-XPUT",
        &url,
    ]);
    let json_load = json_of(code, &body);
    assert_eq!(json_load["Status"], "Success", "{json_load}");
    assert_eq!(json_load["NumberLoadedRows"], 10, "{json_load}");

    // Past max_filter_ratio (with strict mode: Stream Load's default loads a bad INT as NULL): Fail, nothing committed, the error log names the bad rows.
    let mixed = write("mixed.csv", &(300..500).collect::<Vec<_>>());
    let (code, failed) = load(
        "wiki-2",
        &mixed,
        &["max_filter_ratio:0.001", "strict_mode:true"],
    );
    assert_eq!(
        (code, failed["Status"].as_str()),
        (200, Some("Fail")),
        "{failed}"
    );
    assert_eq!(failed["NumberFilteredRows"], 2, "{failed}");
    let error_url = failed["ErrorURL"].as_str().expect("ErrorURL").to_string();
    let (code, log) = curl(&[&error_url]);
    assert_eq!(code, 200, "{log}");
    assert_eq!(log.lines().count(), 2, "{log}");
    assert!(log.contains("not-a-number"), "{log}");
    let cancelled = inst.get(LOAD, "wiki-2").await.expect("the Load");
    assert_eq!(cancelled["status"]["state"], "CANCELLED", "{cancelled}");

    // A ratio that tolerates the bad rows: the cancelled label is free again.
    let (code, tolerated) = load(
        "wiki-2",
        &mixed,
        &["max_filter_ratio:0.1", "strict_mode:true"],
    );
    assert_eq!(
        (code, tolerated["Status"].as_str()),
        (200, Some("Success")),
        "{tolerated}"
    );
    assert_eq!(tolerated["NumberLoadedRows"], 198, "{tolerated}");

    // No credentials, and a token without the RBAC: refused before anything is read.
    let (code, body) = curl(&[
        "-H",
        "label:wiki-3",
        "-T",
        &good_file.display().to_string(),
        "-XPUT",
        &url,
    ]);
    assert_eq!(code, 401, "{body}");
    let stranger_user = format!("stranger:{stranger}");
    let (code, body) = curl(&[
        "-u",
        &stranger_user,
        "-H",
        "label:wiki-3",
        "-T",
        &good_file.display().to_string(),
        "-XPUT",
        &url,
    ]);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("create") && body.contains("loads"), "{body}");
    // An unknown header is refused by name.
    let (code, body) = load("wiki-3", &good_file, &["colums:a"]);
    assert_eq!(code, 400, "{body}");
    assert!(
        inst.get(LOAD, "wiki-3").await.is_err(),
        "no Load for refused requests"
    );

    // A body past the worker's limit: refused from its length, or cut off when chunked.
    let big = write("big.csv", &(0..1000).collect::<Vec<_>>());
    let (code, body) = load("wiki-big", &big, &[]);
    assert_eq!(code, 413, "{body}");
    let (code, cut) = load("wiki-big", &big, &["Transfer-Encoding: chunked"]);
    assert_eq!((code, cut["Status"].as_str()), (200, Some("Fail")), "{cut}");
    assert!(
        cut["Message"]
            .as_str()
            .unwrap_or_default()
            .contains("larger than"),
        "{cut}"
    );

    let snapshot = inst.tb.read_delta(&location, None).expect("read the table");
    assert_eq!(Some(snapshot.version), tolerated["TxnId"].as_i64());
    assert_eq!(
        snapshot.rows.len(),
        good.len() + 10 + 198,
        "three loads, each once"
    );
    let json_users = snapshot
        .column("user")
        .into_iter()
        .filter(|u| (600..610).any(|i| u.as_str() == Some(&format!("User{i}"))))
        .count();
    assert_eq!(json_users, 10, "the JSON rows");
}
