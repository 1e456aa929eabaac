//! Stream Load against the testbed with the real worker binary: the reference's `curl` loads
//! (CSV, JSON) into the Wikipedia table, read back with the independent reader; the same label
//! twice loads once ("Label Already Exists" with the first load's state); a load past
//! `max_filter_ratio` fails, commits nothing and its ErrorURL lists the rows with StarRocks'
//! reasons; no token => 401, a token without the RBAC => 403, nothing loaded. Labels that ended
//! expire after the operator's keep time and load again; a worker killed mid-load and a retry
//! with the same label load the rows once. Into a Primary table, `partial_update`,
//! `merge_condition` and `__op` change stored rows as StarRocks defines; `/metrics` counts the
//! loads by outcome.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams};
use routine_load_e2e::installation::{Installation, TABLE, free_port, wait_for};
use routine_load_e2e::process::LocalProcess;
use routine_load_e2e::proxy::Proxy;
use routine_load_e2e::wikipedia::{COLUMN_NAMES, is_good, row, table_columns};
use routine_load_e2e::{testbed_or_skip, unique_name};
use serde_json::{Value, json};

const LOAD: (&str, &str) = ("Load", "loads");

/// A ServiceAccount's token; with `may_load`, a Role that lets it create loads in `ns`.
async fn service_account_token(inst: &Installation, name: &str, may_load: bool) -> String {
    inst.tb
        .loader_token(&inst.client, &inst.ns, name, may_load)
        .await
        .expect("a loader's token")
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

/// A Wikipedia `Table` on a local directory and a worker serving Stream Load on a known port
/// (so that a worker started again under the same name answers at the same URL).
struct Setup {
    inst: Installation,
    dir: PathBuf,
    location: String,
    worker_pod: String,
    port: u16,
    url: String,
    user: String,
    columns: String,
}

impl Setup {
    /// The namespace, the Table and a ServiceAccount `loader` allowed to load; `None` without a
    /// testbed.
    async fn start(test: &str) -> Option<Setup> {
        let tb = testbed_or_skip(test)?;
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
        let loader = service_account_token(&inst, "loader", true).await;
        let url = format!(
            "http://127.0.0.1:{port}/api/{}/routine-wiki-edit/_stream_load",
            inst.ns
        );
        Some(Setup {
            inst,
            dir,
            location,
            worker_pod: unique_name("worker"),
            port,
            url,
            user: format!("loader:{loader}"),
            columns: format!("columns: {}", COLUMN_NAMES.join(",")),
        })
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the worker (again: the same pod name and port), with `env` on top, and waits for
    /// its HTTP server.
    async fn spawn_worker(&self, env: &[(&str, &str)]) -> LocalProcess {
        let addr = format!("127.0.0.1:{}", self.port);
        let base = self.base();
        let mut all = vec![
            ("ROUTINE_LOAD_HTTP_ADDR", addr.as_str()),
            ("ROUTINE_LOAD_ADVERTISE_URL", base.as_str()),
        ];
        all.extend_from_slice(env);
        let worker = self
            .inst
            .spawn_worker(&self.worker_pod, &all)
            .expect("worker");
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
        worker
    }

    /// Waits until the worker's heartbeat Lease advertises `url` (annotation
    /// `routineload.io/url`, where the plugin finds it).
    async fn wait_for_lease_url(&self, url: &str) {
        let inst = &self.inst;
        wait_for(
            &format!("the worker's Lease with its URL {url}"),
            Duration::from_secs(30),
            || async {
                let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
                    Api::namespaced(inst.client.clone(), &inst.ns);
                let lease = leases
                    .get(&self.worker_pod)
                    .await
                    .map_err(|e| e.to_string())?;
                let advertised = lease
                    .metadata
                    .annotations
                    .unwrap_or_default()
                    .get("routineload.io/url")
                    .cloned();
                (advertised.as_deref() == Some(url))
                    .then_some(())
                    .ok_or_else(|| format!("annotation: {advertised:?}"))
            },
        )
        .await;
    }

    /// A CSV file of the Wikipedia rows `rows`.
    fn write(&self, name: &str, rows: &[usize]) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, csv(rows)).unwrap();
        path
    }

    /// A JSON file of the Wikipedia rows `rows`: an array of objects whose keys are the column
    /// names, as in the reference's JSON load.
    fn write_json(&self, name: &str, rows: &[usize]) -> PathBuf {
        let objects: Vec<Value> = rows
            .iter()
            .map(|i| {
                let fields = row(*i);
                let mut o = serde_json::Map::new();
                for (name, v) in COLUMN_NAMES.iter().zip(fields.split(',')) {
                    let value = v.parse::<i64>().map_or_else(|_| json!(v), |n| json!(n));
                    o.insert(name.to_string(), value);
                }
                Value::Object(o)
            })
            .collect();
        let path = self.dir.join(name);
        std::fs::write(&path, serde_json::to_vec(&objects).unwrap()).unwrap();
        path
    }

    /// The reference's `curl` JSON load of `file` (an array of objects) under `label`.
    fn load_json(&self, label: &str, file: &Path) -> Value {
        let (code, body) = self.put(label, file, &["format: json", "strip_outer_array: true"]);
        json_of(code, &body)
    }

    /// The reference's `curl` CSV load of `file` under `label`, with the headers `extra`.
    fn load(&self, label: &str, file: &Path, extra: &[&str]) -> (u16, Value) {
        let mut headers = vec!["column_separator:,", self.columns.as_str()];
        headers.extend_from_slice(extra);
        let (code, body) = self.put(label, file, &headers);
        (code, json_of(code, &body))
    }

    /// `curl` PUTs `file` under `label` with the loader's credentials and `headers`.
    fn put(&self, label: &str, file: &Path, headers: &[&str]) -> (u16, String) {
        let label = format!("label:{label}");
        let file = file.display().to_string();
        let mut args = vec!["--location-trusted", "-u", &self.user, "-H", &label];
        for h in headers {
            args.extend(["-H", h]);
        }
        args.extend(["-T", &file, "-XPUT", &self.url]);
        curl(&args)
    }

    /// The `user` column of the table's latest version, sorted, and that version.
    fn users(&self) -> (i64, Vec<String>) {
        let snapshot = self
            .inst
            .tb
            .read_delta(&self.location, None)
            .expect("read the table");
        let mut users: Vec<String> = snapshot
            .column("user")
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect();
        users.sort();
        (snapshot.version, users)
    }
}

fn csv(rows: &[usize]) -> String {
    rows.iter().map(|i| row(*i) + "\n").collect()
}

/// The users of the rows `rows`, `times` times each, sorted.
fn users_of(rows: &[usize], times: usize) -> Vec<String> {
    let mut want: Vec<String> = rows
        .iter()
        .flat_map(|i| std::iter::repeat_n(format!("User{i}"), times))
        .collect();
    want.sort();
    want
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_load_labels_filter_ratio_and_auth() {
    let Some(setup) = Setup::start("stream_load_labels_filter_ratio_and_auth").await else {
        return;
    };
    // A CSV body is loaded 4 KiB at a time here: a load is several data files in one commit.
    let _worker = setup
        .spawn_worker(&[
            ("ROUTINE_LOAD_STREAM_LOAD_MAX_BODY_BYTES", "50000"),
            ("ROUTINE_LOAD_STREAM_LOAD_CHUNK_BYTES", "4096"),
        ])
        .await;
    let Setup {
        inst,
        location,
        url,
        ..
    } = &setup;
    let stranger = service_account_token(inst, "stranger", false).await;
    let good: Vec<usize> = (0..300).filter(|i| is_good(*i)).collect();
    let write = |name: &str, rows: &[usize]| setup.write(name, rows);
    let good_file = write("good.csv", &good);
    let load = |label: &str, file: &Path, extra: &[&str]| setup.load(label, file, extra);

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
    let (table_version, users) = setup.users();
    assert_eq!(table_version, version);
    assert_eq!(
        users,
        users_of(&good, 1),
        "the table holds every row of the load once"
    );
    let files = inst
        .tb
        .read_delta(location, None)
        .expect("read the table")
        .files;
    assert!(
        files.len() > 1,
        "a {} byte body loaded in 4 KiB chunks is several data files: {files:?}",
        std::fs::metadata(&good_file).unwrap().len()
    );

    // The same label again: refused with the first load's state, nothing loaded twice.
    let (code, again) = load("wiki-1", &good_file, &[]);
    assert_eq!(code, 200);
    assert_eq!(again["Status"], "Label Already Exists", "{again}");
    assert_eq!(again["ExistingJobStatus"], "FINISHED", "{again}");
    let loaded = inst.get(LOAD, "wiki-1").await.expect("the Load");
    assert_eq!(loaded["status"]["state"], "FINISHED", "{loaded}");
    assert_eq!(loaded["status"]["loadedRows"], good.len(), "{loaded}");

    // The reference's JSON load: an array of objects whose keys are the column names.
    let json_file = setup.write_json("rows.json", &(600..610).collect::<Vec<_>>());
    let json_load = setup.load_json("wiki-json", &json_file);
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
        url,
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
        url,
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

    // A body past the worker's limit: refused from its length, or cut off when chunked (after
    // some of it was loaded and written as data files: none is committed).
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

    let snapshot = inst.tb.read_delta(location, None).expect("read the table");
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
    // The data files the cut-off load had written are gone: the directory holds the table's.
    let parquet: Vec<String> = std::fs::read_dir(&setup.dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".parquet"))
        .collect();
    assert_eq!(
        parquet.len(),
        snapshot.files.len(),
        "data files on disk {parquet:?}, in the table {:?}",
        snapshot.files
    );
}

/// Stream Loads count in the worker's load memory (StarRocks' `load_process_max_memory_limit_*`,
/// one budget with its Routine Load tasks): with a 256 KiB limit, a 2 MB CSV body still loads
/// whole, its rows written in many data files instead of one 64 MiB chunk (one commit); a JSON
/// body of megabytes, which is held whole, fails with the limit named and commits nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_loads_stay_within_the_load_memory_limit() {
    let Some(setup) = Setup::start("stream_loads_stay_within_the_load_memory_limit").await else {
        return;
    };
    let _worker = setup
        .spawn_worker(&[("ROUTINE_LOAD_LOAD_MEMORY_LIMIT_BYTES", "262144")])
        .await;
    let rows: Vec<usize> = (0..24_000).filter(|i| is_good(*i)).collect();
    let csv_file = setup.write("big.csv", &rows);
    let csv_bytes = std::fs::metadata(&csv_file).unwrap().len();
    assert!(csv_bytes > 1_500_000, "{csv_bytes} bytes");

    let (code, loaded) = setup.load("within-memory", &csv_file, &[]);
    assert_eq!(
        (code, loaded["Status"].as_str()),
        (200, Some("Success")),
        "{loaded}"
    );
    let (version, users) = setup.users();
    assert_eq!(Some(version), loaded["TxnId"].as_i64(), "{loaded}");
    assert_eq!(users, users_of(&rows, 1), "every row once");
    let files = setup
        .inst
        .tb
        .read_delta(&setup.location, None)
        .expect("read the table")
        .files;
    assert!(
        files.len() >= 4,
        "a {csv_bytes} byte body under a 256 KiB memory limit is written in many files before \
         its one commit, not as one chunk: {} files",
        files.len()
    );

    let json_file = setup.write_json("big.json", &rows[..12_000]);
    let json_bytes = std::fs::metadata(&json_file).unwrap().len();
    let refused = setup.load_json("past-memory", &json_file);
    assert_eq!(refused["Status"], "Fail", "{refused}");
    let message = refused["Message"].as_str().unwrap_or_default();
    assert!(
        message.contains("memory limit exceeded") && message.contains("262144"),
        "a {json_bytes} byte JSON body: {refused}"
    );
    let cancelled = setup.inst.get(LOAD, "past-memory").await.expect("the Load");
    assert_eq!(cancelled["status"]["state"], "CANCELLED", "{cancelled}");
    let (after, users) = setup.users();
    assert_eq!(after, version, "nothing committed");
    assert_eq!(users, users_of(&rows, 1));
}

/// `kubectl routineload load` (the plugin binary) through a real worker: found by its heartbeat
/// Lease, or given with `--url`; the token given with `--token`, or the kubeconfig user's. A CSV
/// file loads once and reads back; the same label again exits 3 ("Label Already Exists", nothing
/// loaded twice; 0 with `--ok-if-exists`); stdin without a label loads under a printed label; a
/// file past `--max-filter-ratio` exits 1 with the ErrorURL, which lists the bad rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_loads_a_file_once_per_label() {
    let Some(setup) = Setup::start("the_plugin_loads_a_file_once_per_label").await else {
        return;
    };
    let _worker = setup.spawn_worker(&[]).await;
    let inst = &setup.inst;
    let token = setup
        .user
        .split_once(':')
        .expect("loader:TOKEN")
        .1
        .to_string();
    let admin_kubeconfig = inst.tb.kubeconfig().display().to_string();
    // A kubeconfig whose user is the loader ServiceAccount's token (JSON is YAML).
    let mut kubeconfig: Value =
        serde_yaml::from_str(&std::fs::read_to_string(&admin_kubeconfig).unwrap()).unwrap();
    for user in kubeconfig["users"].as_array_mut().expect("users") {
        user["user"] = json!({"token": token});
    }
    let loader_kubeconfig = setup.dir.join("loader-kubeconfig");
    std::fs::write(&loader_kubeconfig, serde_json::to_vec(&kubeconfig).unwrap()).unwrap();
    let loader_kubeconfig = loader_kubeconfig.display().to_string();
    // The worker's Lease advertises its URL.
    setup.wait_for_lease_url(&setup.base()).await;
    // A worker gone before its Lease expired, which the first load's label picks first (by
    // the name it sorts under): the plugin goes on to the live one.
    let first_of_two =
        (routine_load_api::names::start_fingerprint("plugin-1") as usize).is_multiple_of(2);
    let gone = if first_of_two {
        "a-gone-worker"
    } else {
        "zz-gone-worker"
    };
    assert_eq!(gone < setup.worker_pod.as_str(), first_of_two);
    let closed_port = free_port().unwrap();
    Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(inst.client.clone(), &inst.ns)
        .patch(
            gone,
            &PatchParams::apply("e2e-gone-worker").force(),
            &Patch::Apply(json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": gone,
                    "labels": {routine_load_api::names::WORKER_LABEL: gone},
                    "annotations": {
                        routine_load_api::names::WORKER_URL_ANNOTATION:
                            format!("http://127.0.0.1:{closed_port}"),
                    },
                },
                "spec": {
                    "holderIdentity": gone,
                    "leaseDurationSeconds": 3600,
                    "renewTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
                        Timestamp::now()
                    ),
                },
            })),
        )
        .await
        .expect("the gone worker's Lease");

    let columns = COLUMN_NAMES.join(",");
    let plugin = |args: &[&str], stdin: Option<&Path>| -> (i32, Value, String) {
        let mut cmd = Command::new(
            routine_load_e2e::process::workspace_binary("kubectl-routineload").unwrap(),
        );
        cmd.args(["load", "--table", "routine-wiki-edit", "-n", &inst.ns])
            .args(["--column-separator", ",", "--columns", &columns])
            .args(args);
        if let Some(f) = stdin {
            cmd.stdin(std::fs::File::open(f).unwrap());
        }
        let out = cmd.output().expect("kubectl-routineload");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let answer = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {stdout}\n{stderr}"));
        (out.status.code().unwrap_or(-1), answer, stderr)
    };
    let good: Vec<usize> = (0..200).filter(|i| is_good(*i)).collect();
    let good_file = setup.write("good.csv", &good);
    let good_path = good_file.display().to_string();

    // The worker from its Lease, the admin's kubeconfig with the loader's token.
    let (code, first, err) = plugin(
        &[
            &good_path,
            "--label",
            "plugin-1",
            "--kubeconfig",
            &admin_kubeconfig,
            "--worker-namespace",
            &inst.ns,
            "--token",
            &token,
        ],
        None,
    );
    assert_eq!(
        (code, first["Status"].as_str()),
        (0, Some("Success")),
        "{first} {err}"
    );
    assert_eq!(first["NumberLoadedRows"], good.len(), "{first}");
    assert!(
        err.contains(&format!("127.0.0.1:{closed_port}"))
            && err.contains("trying the next live worker"),
        "the gone worker was tried first: {err}"
    );
    let (version, users) = setup.users();
    assert_eq!(Some(version), first["TxnId"].as_i64());
    assert_eq!(users, users_of(&good, 1), "every row of the file once");

    // The same label again, the worker by --url and the token from the kubeconfig: refused
    // with the first load's state, exit 3; nothing loaded twice.
    let by_url = ["--kubeconfig", &loader_kubeconfig, "--url", &setup.base()];
    let (code, again, err) = plugin(
        &[&[good_path.as_str(), "--label", "plugin-1"], &by_url[..]].concat(),
        None,
    );
    assert_eq!(code, 3, "{again} {err}");
    assert_eq!(again["Status"], "Label Already Exists", "{again}");
    assert_eq!(again["ExistingJobStatus"], "FINISHED", "{again}");
    assert!(err.contains("nothing was loaded this time"), "{err}");
    let (code, _, err) = plugin(
        &[
            &[good_path.as_str(), "--label", "plugin-1", "--ok-if-exists"],
            &by_url[..],
        ]
        .concat(),
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(setup.users(), (version, users_of(&good, 1)), "loaded once");

    // stdin without a label: a generated label, printed, names the Load.
    let more: Vec<usize> = (200..260).filter(|i| is_good(*i)).collect();
    let more_file = setup.write("more.csv", &more);
    let (code, piped, err) = plugin(&[&["-"], &by_url[..]].concat(), Some(&more_file));
    assert_eq!(
        (code, piped["Status"].as_str()),
        (0, Some("Success")),
        "{piped} {err}"
    );
    let label = piped["Label"].as_str().expect("Label").to_string();
    assert!(
        label.starts_with("load-") && err.contains(&format!("--label {label}")),
        "{err}"
    );
    let load = inst
        .get(LOAD, &label)
        .await
        .expect("the generated label's Load");
    assert_eq!(load["status"]["loadedRows"], more.len(), "{load}");

    // Past --max-filter-ratio: exit 1, nothing committed, the ErrorURL lists the bad rows.
    let mixed = setup.write("mixed.csv", &(300..500).collect::<Vec<_>>());
    let (code, failed, err) = plugin(
        &[
            &[
                mixed.display().to_string().as_str(),
                "--label",
                "plugin-2",
                "--max-filter-ratio",
                "0.001",
                "--strict-mode",
            ],
            &by_url[..],
        ]
        .concat(),
        None,
    );
    assert_eq!(
        (code, failed["Status"].as_str()),
        (1, Some("Fail")),
        "{failed} {err}"
    );
    let error_url = failed["ErrorURL"].as_str().expect("ErrorURL").to_string();
    assert!(err.contains(&error_url), "{err}");
    let (code, log) = curl(&[&error_url]);
    assert_eq!(code, 200, "{log}");
    assert_eq!(log.lines().count(), 2, "{log}");
    let mut want = good.clone();
    want.extend(&more);
    assert_eq!(
        setup.users().1,
        users_of(&want, 1),
        "the failed load committed nothing"
    );

    // A flag the workers don't take is refused before anything is sent.
    let out =
        Command::new(routine_load_e2e::process::workspace_binary("kubectl-routineload").unwrap())
            .args([
                "load",
                "--table",
                "routine-wiki-edit",
                "-n",
                &inst.ns,
                &good_path,
            ])
            .args(["-H", "colums: a", "--url", &setup.base(), "--token", &token])
            .output()
            .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no Stream Load header 'colums'"));
}

/// Label expiry (StarRocks `label_keep_max_second`) with an operator keeping ended Loads 6 s:
/// a FINISHED and a CANCELLED Load disappear after their keep time and not before, a LOADING
/// Load stays, and the freed label loads its data again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_labels_expire_and_load_again() {
    const KEEP_SECS: u64 = 6;
    let Some(setup) = Setup::start("ended_labels_expire_and_load_again").await else {
        return;
    };
    let inst = &setup.inst;
    let _worker = setup.spawn_worker(&[]).await;
    let keep = KEEP_SECS.to_string();
    let _operator = inst
        .spawn_operator(
            &format!("operator-{}", inst.ns),
            &[("ROUTINE_LOAD_LABEL_KEEP_MAX_SECONDS", &keep)],
        )
        .expect("operator");
    let rows: Vec<usize> = (0..200).filter(|i| is_good(*i)).collect();
    let file = setup.write("rows.csv", &rows);
    // A Load still LOADING (its loader is elsewhere): never expires.
    inst.create(
        LOAD,
        json!({"metadata": {"name": "in-flight"}, "spec": {"table": "routine-wiki-edit", "type": "STREAM_LOAD"}}),
    )
    .await
    .expect("create the LOADING Load");
    inst.api(LOAD)
        .patch_status(
            "in-flight",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"state": "LOADING", "worker": "elsewhere"}})),
        )
        .await
        .expect("mark the Load LOADING");

    let (code, first) = setup.load("expiring", &file, &[]);
    assert_eq!(
        (code, first["Status"].as_str()),
        (200, Some("Success")),
        "{first}"
    );
    let finished_at = Instant::now();
    // When each Load ended, as the operator reads it (whole seconds, never later than the end).
    let ended = |label: &'static str| async move {
        let l = inst.get(LOAD, label).await.expect("the Load");
        let t = l["status"]["loadFinishTime"]
            .as_str()
            .expect("loadFinishTime");
        t.parse::<Timestamp>().expect("an RFC 3339 time")
    };
    let finished_end = ended("expiring").await;
    let mixed = setup.write("mixed.csv", &(0..200).collect::<Vec<_>>());
    let (_, failed) = setup.load("failing", &mixed, &["strict_mode:true"]);
    assert_eq!(failed["Status"], "Fail", "{failed}");
    let failed_end = ended("failing").await;
    // Within the keep time the label is taken.
    let (_, again) = setup.load("expiring", &file, &[]);
    assert!(
        finished_at.elapsed() < Duration::from_secs(KEEP_SECS),
        "the retry came after the keep time; the check below means nothing"
    );
    assert_eq!(again["Status"], "Label Already Exists", "{again}");
    assert_eq!(again["ExistingJobStatus"], "FINISHED", "{again}");

    let gone = |label: &'static str| async move {
        match inst.api(LOAD).get_opt(label).await {
            Ok(None) => Ok(()),
            Ok(Some(l)) => Err(format!("still there: {}", serde_json::to_value(l).unwrap())),
            Err(e) => Err(format!("reading Load {label}: {e}")),
        }
    };
    wait_for(
        "the FINISHED Load to expire",
        Duration::from_secs(60),
        || gone("expiring"),
    )
    .await;
    let finished_kept = Timestamp::now().duration_since(finished_end);
    wait_for(
        "the CANCELLED Load to expire",
        Duration::from_secs(60),
        || gone("failing"),
    )
    .await;
    let failed_kept = Timestamp::now().duration_since(failed_end);
    eprintln!(
        "FINISHED Load gone {:.1} s after its loadFinishTime, CANCELLED {:.1} s (keep {KEEP_SECS} s)",
        finished_kept.as_secs_f64(),
        failed_kept.as_secs_f64()
    );
    for (what, kept) in [("FINISHED", finished_kept), ("CANCELLED", failed_kept)] {
        assert!(
            kept.as_secs_f64() > KEEP_SECS as f64,
            "the {what} Load went {kept:?} after its loadFinishTime, before its keep time"
        );
    }
    let in_flight = inst
        .get(LOAD, "in-flight")
        .await
        .expect("the LOADING Load is kept");
    assert_eq!(in_flight["status"]["state"], "LOADING", "{in_flight}");

    // The freed label loads again: a new Delta version, every row twice in the table.
    let (code, reused) = setup.load("expiring", &file, &[]);
    assert_eq!(
        (code, reused["Status"].as_str()),
        (200, Some("Success")),
        "{reused}"
    );
    assert!(
        reused["TxnId"].as_i64() > first["TxnId"].as_i64(),
        "{first} then {reused}"
    );
    let (version, users) = setup.users();
    assert_eq!(Some(version), reused["TxnId"].as_i64());
    assert_eq!(users, users_of(&rows, 2), "the label's rows, loaded twice");
    let load = inst.get(LOAD, "expiring").await.expect("the new Load");
    assert_eq!(load["status"]["state"], "FINISHED", "{load}");
}

/// A worker killed (SIGKILL) while a load's body is arriving, started again under its name, and
/// the load retried with the same label: the rows are in the table once, the retry is Success
/// and the Load FINISHED. Then a load whose worker died after its commit but before recording
/// it (its Load left LOADING): the retry answers Label Already Exists / FINISHED from the table
/// and loads nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_the_worker_died_mid_load_loads_once() {
    let Some(setup) = Setup::start("a_retry_after_the_worker_died_mid_load_loads_once").await
    else {
        return;
    };
    let inst = &setup.inst;
    let mut worker = setup.spawn_worker(&[]).await;
    let rows: Vec<usize> = (0..2000).filter(|i| is_good(*i)).collect();
    let file = setup.write("rows.csv", &rows);
    let text = csv(&rows);
    let (head, tail) = text.split_at(text.len() / 2);

    // The body comes through a pipe: half of it, then nothing until the worker is dead.
    let mut client = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "120",
            "--location-trusted",
            "-u",
            &setup.user,
            "-H",
            "label:killed",
            "-H",
            "column_separator:,",
            "-H",
            &setup.columns,
            "-T",
            "-",
            "-XPUT",
            &setup.url,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running curl");
    let mut body = client.stdin.take().expect("curl's stdin");
    body.write_all(head.as_bytes()).expect("the first half");
    body.flush().unwrap();
    let loading = wait_for(
        "the Load to be LOADING",
        Duration::from_secs(30),
        || async {
            let l = inst.get(LOAD, "killed").await.map_err(|e| e.to_string())?;
            (l["status"]["state"] == "LOADING")
                .then_some(l.clone())
                .ok_or_else(|| l.to_string())
        },
    )
    .await;
    assert_eq!(loading["status"]["worker"], setup.worker_pod, "{loading}");
    let (version_before, users) = setup.users();
    assert!(users.is_empty(), "nothing committed before the kill");
    let pid = worker.pid().expect("the worker's pid");
    let status = worker.kill().expect("SIGKILL the worker");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "the worker (pid {pid}) died of SIGKILL: {status:?}"
    );
    let _ = body.write_all(tail.as_bytes());
    drop(body);
    let out = client.wait_with_output().expect("curl's end");
    assert!(
        !out.status.success() || !String::from_utf8_lossy(&out.stdout).contains("Success"),
        "the interrupted load did not answer: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    eprintln!(
        "killed worker pid {pid} mid-load; curl said: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let after = inst.get(LOAD, "killed").await.expect("the Load");
    assert_eq!(
        after["status"]["state"], "LOADING",
        "the Load was unfinished when its worker died: {after}"
    );
    assert_eq!(setup.users(), (version_before, vec![]), "nothing committed");

    // The worker again, under the same name; the load again, with the same label.
    let _worker = setup.spawn_worker(&[]).await;
    let (code, retry) = setup.load("killed", &file, &[]);
    assert_eq!(
        (code, retry["Status"].as_str()),
        (200, Some("Success")),
        "{retry}"
    );
    assert_eq!(retry["NumberLoadedRows"], rows.len(), "{retry}");
    let (version, users) = setup.users();
    assert_eq!(Some(version), retry["TxnId"].as_i64());
    assert_eq!(users, users_of(&rows, 1), "every row once");
    let load = inst.get(LOAD, "killed").await.expect("the Load");
    assert_eq!(load["status"]["state"], "FINISHED", "{load}");
    assert_eq!(load["status"]["loadedRows"], rows.len(), "{load}");
    assert_eq!(load["status"]["deltaVersion"], version, "{load}");
    let (_, again) = setup.load("killed", &file, &[]);
    assert_eq!(again["Status"], "Label Already Exists", "{again}");
    assert_eq!(again["ExistingJobStatus"], "FINISHED", "{again}");

    // A commit whose outcome was never recorded: the Load as a worker dying right after the
    // commit leaves it (LOADING, this worker, the table version it started at).
    let more: Vec<usize> = (5000..5100).collect();
    let more_file = setup.write("more.csv", &more);
    let (_, committed) = setup.load("committed", &more_file, &[]);
    assert_eq!(committed["Status"], "Success", "{committed}");
    inst.api(LOAD)
        .patch_status(
            "committed",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "state": "LOADING", "loadedRows": 0, "deltaVersion": null,
                "loadFinishTime": null, "tableVersion": version,
                "worker": setup.worker_pod,
            }})),
        )
        .await
        .expect("mark the Load unfinished");
    let (_, retry) = setup.load("committed", &more_file, &[]);
    assert_eq!(retry["Status"], "Label Already Exists", "{retry}");
    assert_eq!(retry["ExistingJobStatus"], "FINISHED", "{retry}");
    let load = inst.get(LOAD, "committed").await.expect("the Load");
    assert_eq!(load["status"]["state"], "FINISHED", "{load}");
    assert_eq!(load["status"]["deltaVersion"], committed["TxnId"], "{load}");
    let (_, users) = setup.users();
    let mut want = users_of(&rows, 1);
    want.extend(users_of(&more, 1));
    want.sort();
    assert_eq!(users, want, "the committed load's rows once");
}

/// A worker killed after it took the label but before it read the body (its Load created, the
/// table's storage held by a stalled proxy, so the Load has no status yet), started again under
/// its name, and the load retried with the same label: the retry is Success and the rows are in
/// the table once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_the_worker_died_before_the_body_loads_once() {
    let Some(setup) =
        Setup::start("a_retry_after_the_worker_died_before_the_body_loads_once").await
    else {
        return;
    };
    let inst = &setup.inst;
    let s3 = inst.tb.var("S3_ENDPOINT").expect("S3_ENDPOINT").to_string();
    let proxy = Proxy::start(s3.trim_start_matches("http://"))
        .await
        .expect("proxy");
    let location = inst
        .s3_table_through("ids", &proxy, &[("timeout", "60s")])
        .await
        .expect("S3 table");
    let mut worker = setup.spawn_worker(&[]).await;
    let url = setup.url.replace("/routine-wiki-edit/", "/ids/");
    let ids: Vec<i64> = (0..100).collect();
    let file = setup.dir.join("ids.csv");
    let text: String = ids.iter().map(|i| format!("{i},v{i}\n")).collect();
    std::fs::write(&file, text).unwrap();
    let file = file.display().to_string();
    let args = [
        "--location-trusted",
        "-u",
        &setup.user,
        "-H",
        "label:held",
        "-H",
        "column_separator:,",
        "-H",
        "columns: id,v",
        "-T",
        &file,
        "-XPUT",
        &url,
    ];

    proxy.stall();
    let client = Command::new("curl")
        .args(["-sS", "--max-time", "120"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running curl");
    wait_for(
        "the worker's first storage request, held by the proxy",
        Duration::from_secs(30),
        || async {
            (proxy.held() > 0)
                .then_some(())
                .ok_or_else(|| "nothing held yet".to_string())
        },
    )
    .await;
    let held = inst.get(LOAD, "held").await.expect("the Load");
    assert!(
        held["status"].is_null() || held["status"]["state"] == "PREPARE",
        "the load had not started reading its body: {held}"
    );
    let pid = worker.pid().expect("the worker's pid");
    let status = worker.kill().expect("SIGKILL the worker");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "the worker (pid {pid}) died of SIGKILL: {status:?}"
    );
    let out = client.wait_with_output().expect("curl's end");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("Success"),
        "the interrupted load did not answer: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    proxy.resume();
    let after = inst.get(LOAD, "held").await.expect("the Load");
    assert!(
        after["status"].is_null() || after["status"]["state"] == "PREPARE",
        "the Load was unfinished when its worker died: {after}"
    );
    eprintln!("killed worker pid {pid} with its Load at PREPARE: {after}");

    let _worker = setup.spawn_worker(&[]).await;
    let (code, body) = curl(&args);
    let retry = json_of(code, &body);
    assert_eq!(
        (code, retry["Status"].as_str()),
        (200, Some("Success")),
        "{retry}"
    );
    assert_eq!(retry["NumberLoadedRows"], ids.len(), "{retry}");
    let snapshot = inst.tb.read_delta(&location, None).expect("read the table");
    assert_eq!(Some(snapshot.version), retry["TxnId"].as_i64());
    let mut got: Vec<i64> = snapshot
        .column("id")
        .iter()
        .map(|v| v.as_i64().expect("an id"))
        .collect();
    got.sort();
    assert_eq!(got, ids, "every row once");
    let load = inst.get(LOAD, "held").await.expect("the Load");
    assert_eq!(load["status"]["state"], "FINISHED", "{load}");
}

/// Stream Load into a Primary table with StarRocks' update headers, read back after each load:
/// whole rows upsert (the last row of a key in a load wins); `partial_update` changes only the
/// listed columns of stored keys; `merge_condition: version` ignores a row older than the stored
/// one and applies a newer one; `__op` deletes. The worker's `/metrics` counts the loads by
/// outcome and their rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_loads_upsert_partially_and_conditionally_into_a_primary_table() {
    let Some(setup) =
        Setup::start("stream_loads_upsert_partially_and_conditionally_into_a_primary_table").await
    else {
        return;
    };
    let _worker = setup.spawn_worker(&[]).await;
    let inst = &setup.inst;
    let location = format!("file://{}", setup.dir.join("players").display());
    inst.create(
        TABLE,
        json!({
            "apiVersion": "routineload.io/v1alpha1", "kind": "Table",
            "metadata": {"name": "players"},
            "spec": {
                "location": location,
                "model": "Primary",
                "keys": ["id"],
                "columns": [
                    {"name": "id", "type": "BIGINT", "nullable": false},
                    {"name": "version", "type": "BIGINT"},
                    {"name": "name", "type": "STRING"},
                    {"name": "score", "type": "BIGINT"}
                ]
            }
        }),
    )
    .await
    .expect("create Table");
    let url = setup.url.replace("/routine-wiki-edit/", "/players/");
    let load = |label: &str, rows: &str, headers: &[&str]| {
        let file = setup.dir.join(format!("{label}.csv"));
        std::fs::write(&file, rows).unwrap();
        let file = file.display().to_string();
        let label = format!("label:{label}");
        let mut args = vec![
            "--location-trusted",
            "-u",
            &setup.user,
            "-H",
            &label,
            "-H",
            "column_separator:,",
        ];
        for h in headers {
            args.extend(["-H", h]);
        }
        args.extend(["-T", &file, "-XPUT", &url]);
        let (code, body) = curl(&args);
        let answer = json_of(code, &body);
        assert_eq!(
            (code, answer["Status"].as_str()),
            (200, Some("Success")),
            "{answer}"
        );
        answer
    };
    // id -> (version, name, score), from the independent reader.
    let players = || {
        let snapshot = inst.tb.read_delta(&location, None).expect("read the table");
        snapshot
            .sorted_rows(&["id"])
            .into_iter()
            .map(|r| {
                let id = r["id"].as_i64().expect("an id");
                (
                    id,
                    (r["version"].clone(), r["name"].clone(), r["score"].clone()),
                )
            })
            .collect::<Vec<_>>()
    };
    let row =
        |id: i64, version: Value, name: Value, score: i64| (id, (version, name, json!(score)));

    let first = load(
        "players-1",
        "1,1,ann,10\n2,1,bob,20\n3,1,cid,30\n1,2,ann,11\n",
        &["columns: id,version,name,score"],
    );
    assert_eq!(first["NumberLoadedRows"], 4, "{first}");
    assert_eq!(
        players(),
        [
            row(1, json!(2), json!("ann"), 11),
            row(2, json!(1), json!("bob"), 20),
            row(3, json!(1), json!("cid"), 30),
        ],
        "one row per key, the load's last for key 1"
    );

    load(
        "players-2",
        "2,25\n4,40\n",
        &["columns: id,score", "partial_update: true"],
    );
    assert_eq!(
        players(),
        [
            row(1, json!(2), json!("ann"), 11),
            row(2, json!(1), json!("bob"), 25),
            row(3, json!(1), json!("cid"), 30),
            row(4, Value::Null, Value::Null, 40),
        ],
        "partial_update changes the score only; a new key gets NULL elsewhere"
    );

    load(
        "players-3",
        "1,1,old,0\n3,5,cyd,35\n",
        &["columns: id,version,name,score", "merge_condition: version"],
    );
    load("players-4", "2,1\n", &["columns: id,__op"]);
    assert_eq!(
        players(),
        [
            row(1, json!(2), json!("ann"), 11),
            row(3, json!(5), json!("cyd"), 35),
            row(4, Value::Null, Value::Null, 40),
        ],
        "the older version 1 of key 1 is ignored, version 5 of key 3 applied, key 2 deleted"
    );

    // A repeated label and a load without credentials are counted by outcome too (the latter
    // without the path's names: a caller not allowed to load there could make up any).
    let (code, again) = curl(&[
        "-u",
        &setup.user,
        "-H",
        "label:players-1",
        "-T",
        &setup.dir.join("players-1.csv").display().to_string(),
        "-XPUT",
        &url,
    ]);
    assert_eq!(json_of(code, &again)["Status"], "Label Already Exists");
    let (code, _) = curl(&["-H", "label:players-5", "-XPUT", "-d", "1,1", &url]);
    assert_eq!(code, 401);
    let (code, metrics) = curl(&[&format!("{}/metrics", setup.base())]);
    assert_eq!(code, 200);
    let ns = &inst.ns;
    for line in [
        format!(
            r#"routine_load_worker_stream_loads_total{{namespace="{ns}",status="success",table="players"}} 4"#
        ),
        format!(
            r#"routine_load_worker_stream_loads_total{{namespace="{ns}",status="label_already_exists",table="players"}} 1"#
        ),
        // Refused before the token was checked: the path's names are not labels.
        r#"routine_load_worker_stream_loads_total{namespace="",status="refused",table=""} 1"#
            .to_string(),
        format!(
            r#"routine_load_worker_stream_load_rows_total{{kind="loaded",namespace="{ns}",table="players"}} 9"#
        ),
        format!(
            r#"routine_load_worker_stream_load_seconds_count{{namespace="{ns}",status="success",table="players"}} 4"#
        ),
    ] {
        assert!(
            metrics.contains(&line),
            "{line} missing in /metrics:\n{metrics}"
        );
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it (openssl), in `dir`: (ca.crt,
/// tls.crt, tls.key).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("running openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=routine-load-e2e-ca",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "tls.key",
        "-out",
        "tls.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "tls.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "tls.crt",
        "-days",
        "1",
        "-extfile",
        "san.ext",
    ]);
    (dir.join("ca.crt"), dir.join("tls.crt"), dir.join("tls.key"))
}

/// curl with `args` to `url` fails to verify the server's certificate (curl's exit status 60).
fn assert_certificate_refused(args: &[String], url: &str, what: &str) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl");
    assert_eq!(
        out.status.code(),
        Some(60),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A worker with a certificate serves Stream Load over HTTPS: the reference's `curl` with
/// `--cacert` loads, a client that does not trust the CA gets no connection, plain HTTP answers
/// 403 naming the HTTPS URL (nothing read), the heartbeat Lease advertises the HTTPS URL, and
/// `kubectl routineload load --cacert` loads through it, found from the Lease; a renewed
/// certificate written over the files is served without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_load_over_https() {
    let Some(setup) = Setup::start("stream_load_over_https").await else {
        return;
    };
    let (ca, cert, key) = certificates(&setup.dir);
    let https_port = free_port().unwrap();
    let https_base = format!("https://127.0.0.1:{https_port}");
    let https_addr = format!("127.0.0.1:{https_port}");
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let _worker = setup
        .spawn_worker(&[
            ("ROUTINE_LOAD_TLS_CERT_FILE", cert.as_str()),
            ("ROUTINE_LOAD_TLS_KEY_FILE", key.as_str()),
            ("ROUTINE_LOAD_HTTPS_ADDR", https_addr.as_str()),
            ("ROUTINE_LOAD_HTTPS_ADVERTISE_URL", https_base.as_str()),
        ])
        .await;
    let inst = &setup.inst;
    let ca = ca.display().to_string();
    let https_url = setup.url.replace(&setup.base(), &https_base);
    let good: Vec<usize> = (0..100).filter(|i| is_good(*i)).collect();
    let file = setup.write("good.csv", &good).display().to_string();
    let load_args = |label: &'static str| {
        vec![
            "--location-trusted".to_string(),
            "-u".into(),
            setup.user.clone(),
            "-H".into(),
            format!("label:{label}"),
            "-H".into(),
            "column_separator:,".into(),
            "-H".into(),
            setup.columns.clone(),
            "-T".into(),
            file.clone(),
            "-XPUT".into(),
        ]
    };

    // Plain HTTP: refused before the body, naming the HTTPS URL.
    let mut args = load_args("tls-plain");
    args.push(setup.url.clone());
    let (code, body) = curl(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 403, "{body}");
    assert!(body.contains(&https_url), "{body}");
    assert!(inst.get(LOAD, "tls-plain").await.is_err(), "no Load taken");

    // A client that does not trust the worker's CA: no TLS connection (curl exit 60).
    assert_certificate_refused(
        &load_args("tls-untrusted"),
        &https_url,
        "the certificate is checked",
    );

    // The reference's curl with the CA: loaded, read back.
    let mut args = load_args("tls-curl");
    args.extend(["--cacert".to_string(), ca.clone(), https_url.clone()]);
    let (code, body) = curl(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let answer = json_of(code, &body);
    assert_eq!(
        (code, answer["Status"].as_str()),
        (200, Some("Success")),
        "{answer}"
    );
    assert_eq!(setup.users().1, users_of(&good, 1));

    // The plugin, the worker found from its Lease (which advertises the HTTPS URL).
    setup.wait_for_lease_url(&https_base).await;
    let token = setup.user.split_once(':').expect("loader:TOKEN").1;
    let columns = COLUMN_NAMES.join(",");
    let kubeconfig = inst.tb.kubeconfig().display().to_string();
    let out =
        Command::new(routine_load_e2e::process::workspace_binary("kubectl-routineload").unwrap())
            .args([
                "load",
                "--table",
                "routine-wiki-edit",
                "-n",
                &inst.ns,
                &file,
            ])
            .args([
                "--label",
                "tls-plugin",
                "--column-separator",
                ",",
                "--columns",
                &columns,
            ])
            .args([
                "--cacert",
                &ca,
                "--token",
                token,
                "--kubeconfig",
                &kubeconfig,
            ])
            .args(["--worker-namespace", &inst.ns])
            .output()
            .expect("kubectl-routineload");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("\"Success\""), "{stdout}");
    assert_eq!(setup.users().1, users_of(&good, 2), "two loads, each once");

    // A renewed certificate (another CA) written over the files: taken without a restart.
    let renewed = setup.dir.join("renewed");
    std::fs::create_dir_all(&renewed).unwrap();
    let (new_ca, new_cert, new_key) = certificates(&renewed);
    std::fs::copy(&new_key, &key).unwrap();
    std::fs::copy(&new_cert, &cert).unwrap();
    let new_ca = new_ca.display().to_string();
    let mut args = load_args("tls-renewed");
    args.extend(["--cacert".to_string(), new_ca, https_url.clone()]);
    let (code, body) = curl(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let answer = json_of(code, &body);
    assert_eq!(
        answer["Status"], "Success",
        "the renewed certificate serves: {answer}"
    );
    let mut old_ca = load_args("tls-old-ca");
    old_ca.extend(["--cacert".to_string(), ca.clone()]);
    assert_certificate_refused(
        &old_ca,
        &https_url,
        "the old certificate is no longer served",
    );
    assert_eq!(
        setup.users().1,
        users_of(&good, 3),
        "three loads, each once"
    );
}
