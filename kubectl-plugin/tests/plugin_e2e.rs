//! `kubectl-routineload` against the real testbed: the reference's CREATE ROUTINE LOAD statement
//! is converted, applied next to the reference's Table, loads Wikipedia rows through the operator
//! and a worker (local processes), and the plugin's show / tasks / errors / pause / resume / stop
//! print what StarRocks users expect. One run goes through `kubectl routineload` (plugin
//! discovery on PATH).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::PostParams;
use routine_load_api::job::JobState;
use routine_load_api::reference::WIKIPEDIA_TABLE_YAML;
use routine_load_api::{RoutineLoadJob, Table, TableSpec};
use routine_load_e2e::kafka::Listener;
use routine_load_e2e::process::workspace_binary;
use routine_load_e2e::{LocalProcess, Testbed, testbed_or_skip, unique_name};

/// The reference's quick start statement, verbatim.
const REFERENCE: &str = routine_load_api::reference::WIKIPEDIA_CREATE_ROUTINE_LOAD;

const JOB: &str = "routine-load-wikipedia";

fn plugin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kubectl-routineload"))
}

/// Runs the plugin binary with the testbed's kubeconfig.
fn run(tb: &Testbed, args: &[&str], stdin: Option<&str>) -> Output {
    run_cmd(
        Command::new(plugin())
            .args(args)
            .env("KUBECONFIG", tb.kubeconfig()),
        stdin,
    )
}

fn run_cmd(cmd: &mut Command, stdin: Option<&str>) -> Output {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    {
        let mut input = child.stdin.take().expect("stdin");
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).expect("write stdin");
        }
    }
    let out = child.wait_with_output().expect("wait");
    eprintln!(
        "$ {cmd:?} ({:.1} s, {})\n{}{}",
        started.elapsed().as_secs_f64(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn spawn(tb: &Testbed, ns: &str, binary: &str, name: &str, env: &[(&str, String)]) -> LocalProcess {
    let mut cmd = Command::new(workspace_binary(binary).expect("binary built"));
    for (k, v) in tb.child_env() {
        cmd.env(k, v);
    }
    cmd.env("POD_NAME", name)
        .env("POD_NAMESPACE", ns)
        .env("ROUTINE_LOAD_WATCH_NAMESPACE", ns);
    for (k, v) in env {
        cmd.env(k, v);
    }
    tb.spawn(name, cmd).expect("spawn")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Wikipedia edits as the reference's COLUMNS read them; `bad` makes `delta` not a number.
fn wikipedia_rows(from: usize, to: usize, bad: &[usize]) -> Vec<String> {
    let channels = ["#en.wikipedia", "#ca.wikipedia", "#de.wikipedia"];
    (from..to)
        .map(|i| {
            let delta = if bad.contains(&i) {
                "not-a-number".to_string()
            } else {
                (i as i64 * 7 - 20).to_string()
            };
            format!(
                "2015-09-12 00:{:02}:{:02},{},User{i},{},0,0,{},0,{delta},{},0",
                i / 60,
                i % 60,
                channels[i % channels.len()],
                i % 2,
                (i % 3 == 0) as u8,
                i * 3
            )
        })
        .collect()
}

async fn produce(tb: &Testbed, topic: &str, lines: &[String]) {
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    tb.produce_lines(Listener::Plaintext, topic, 0, &refs)
        .await
        .expect("produce");
}

async fn wait_job<F: Fn(&RoutineLoadJob) -> bool>(
    jobs: &Api<RoutineLoadJob>,
    what: &str,
    check: F,
) -> RoutineLoadJob {
    wait_named(jobs, JOB, what, check).await
}

async fn wait_named<F: Fn(&RoutineLoadJob) -> bool>(
    jobs: &Api<RoutineLoadJob>,
    name: &str,
    what: &str,
    check: F,
) -> RoutineLoadJob {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let j = jobs.get(name).await.expect("get job");
        if check(&j) {
            return j;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}; status: {:?}", j.status);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn state(j: &RoutineLoadJob) -> Option<JobState> {
    j.status.as_ref().and_then(|s| s.state)
}

fn loaded(j: &RoutineLoadJob) -> i64 {
    j.status.as_ref().map_or(0, |s| s.statistic.loaded_rows)
}

#[tokio::test]
async fn plugin_shows_pauses_resumes_and_stops_a_converted_job() {
    let Some(tb) = testbed_or_skip("kubectl-routineload end to end") else {
        return;
    };
    let started = Instant::now();
    tb.apply_crds().expect("apply CRDs");
    let client = tb.client().await.expect("admin client");
    let ns = unique_name("e2e-plugin");
    tb.ensure_namespace(&client, &ns).await.expect("namespace");
    let topic = unique_name("wiki");
    tb.create_topic(&topic, 1).await.expect("topic");

    // convert: the reference statement, as a user pipes it in.
    // --table plans it against the reference's Table first, as the operator will.
    let table_file = std::env::temp_dir()
        .join(unique_name("plugin-table"))
        .with_extension("yaml");
    std::fs::write(&table_file, WIKIPEDIA_TABLE_YAML).expect("write table");
    let out = run(
        &tb,
        &[
            "convert",
            "-n",
            &ns,
            "--table",
            &table_file.display().to_string(),
        ],
        Some(REFERENCE),
    );
    let yaml = ok(&out);
    let notes = String::from_utf8_lossy(&out.stderr);
    assert!(
        notes.contains("note: planned against Table 'routine-wiki-edit': 11 source field(s) per message, 11 column(s) written\n"),
        "{notes}"
    );
    let _ = std::fs::remove_file(&table_file);
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&yaml)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML document"))
        .collect();
    assert_eq!(docs.len(), 1, "no Secret for the reference: {yaml}");
    let mut job = docs[0].clone();
    assert_eq!(job["kind"], "RoutineLoadJob");
    assert_eq!(job["metadata"]["name"], JOB);
    assert_eq!(job["metadata"]["namespace"], ns.as_str());
    assert_eq!(job["spec"]["table"], "routine-wiki-edit");
    assert_eq!(job["spec"]["kafka"]["brokerList"], "localhost:9092");
    assert_eq!(job["spec"]["kafka"]["topic"], "starrocks-load");
    // The reference names its own brokers and topic: point them at the testbed's, and read the
    // topic from the beginning (rows are produced before the job starts).
    let kafka = &mut job["spec"]["kafka"];
    kafka["brokerList"] = tb.var("KAFKA_BROKERS").expect("brokers").into();
    kafka["topic"] = topic.clone().into();
    kafka["defaultOffset"] = "OFFSET_BEGINNING".into();

    // The reference's Table, on a temporary directory.
    let dir = std::env::temp_dir().join(unique_name("plugin-table"));
    let mut table_spec: TableSpec = serde_yaml::from_str(WIKIPEDIA_TABLE_YAML).expect("table");
    table_spec.location = format!("file://{}", dir.display());
    let tables: Api<Table> = Api::namespaced(client.clone(), &ns);
    tables
        .create(
            &PostParams::default(),
            &Table::new("routine-wiki-edit", table_spec),
        )
        .await
        .expect("create table");

    // 20 rows, one of them an error row.
    produce(&tb, &topic, &wikipedia_rows(0, 20, &[7])).await;

    let _operator = spawn(
        &tb,
        &ns,
        "routine-load-operator",
        "plugin-operator",
        &[("ROUTINE_LOAD_HTTP_ADDR", "127.0.0.1:0".to_string())],
    );
    let port = free_port();
    let errlog = std::env::temp_dir().join(unique_name("plugin-errlog"));
    let _worker = spawn(
        &tb,
        &ns,
        "routine-load-worker",
        "worker-0",
        &[
            ("ROUTINE_LOAD_HTTP_ADDR", format!("127.0.0.1:{port}")),
            (
                "ROUTINE_LOAD_ADVERTISE_URL",
                format!("http://127.0.0.1:{port}"),
            ),
            ("ROUTINE_LOAD_ERROR_LOG_DIR", errlog.display().to_string()),
            ("ROUTINE_LOAD_BATCH_INTERVAL_MS", "1000".to_string()),
        ],
    );

    // The converted job goes through the API server's schema as is (kubectl apply).
    let job_file = std::env::temp_dir()
        .join(unique_name("plugin-job"))
        .with_extension("yaml");
    std::fs::write(&job_file, serde_yaml::to_string(&job).expect("yaml")).expect("write job");
    Testbed::run(tb.kubectl().args(["apply", "-f"]).arg(&job_file)).expect("kubectl apply job");

    let jobs: Api<RoutineLoadJob> = Api::namespaced(client.clone(), &ns);
    // The lag too: `tasks` below prints the task's (a status patch after the commit's).
    let j = wait_job(&jobs, "19 rows loaded, 1 error row, the lag", |j| {
        state(j) == Some(JobState::Running)
            && loaded(j) == 19
            && j.status
                .as_ref()
                .is_some_and(|s| s.statistic.error_rows == 1 && s.lag.get("0") == Some(&0))
    })
    .await;
    let uid = j.metadata.uid.clone().expect("uid");

    // show
    let out = ok(&run(&tb, &["show", JOB, "-n", &ns, "--utc"], None));
    for want in [
        "*************************** 1. row ***************************\n",
        &format!("                  Id: {uid}\n"),
        "                Name: routine-load-wikipedia\n",
        &format!("              DbName: {ns}\n"),
        "           TableName: routine-wiki-edit\n",
        "               State: RUNNING\n",
        "      DataSourceType: KAFKA\n",
        "      CurrentTaskNum: 1\n",
        r#""columnToColumnExpr":"event_time,channel,user,is_anonymous,is_minor,is_new,is_robot,is_unpatrolled,delta,added,deleted""#,
        r#""columnSeparator":"','""#,
        r#""desireTaskConcurrentNum":"1","maxErrorNum":"1000""#,
        &format!(
            r#"DataSourceProperties: {{"topic":"{topic}","currentKafkaPartitions":"0","brokerList":""#
        ),
        r#"    CustomProperties: {"kafka_default_offsets":"OFFSET_BEGINNING"}"#,
        r#""errorRows":1,"#,
        r#""loadedRows":19,"#,
        r#""totalRows":20,"#,
        "            Progress: {\"0\":\"20\"}\n",
        "        ErrorLogUrls: http://127.0.0.1:",
        "1 row in set (",
    ] {
        assert!(out.contains(want), "show: wanted {want:?} in:\n{out}");
    }

    // show without a job: every job of the namespace.
    let out = ok(&run(&tb, &["show", "-n", &ns], None));
    assert!(
        out.contains("Name: routine-load-wikipedia") && out.contains("1 row in set"),
        "{out}"
    );

    // tasks
    // (--kubeconfig instead of KUBECONFIG, as kubectl users pass it)
    let out = ok(&run_cmd(
        Command::new(plugin())
            .args(["tasks", JOB, "-n", &ns, "--kubeconfig"])
            .arg(tb.kubeconfig())
            .env_remove("KUBECONFIG"),
        None,
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[1].starts_with("| TaskId "), "{out}");
    assert!(lines[1].contains("| TxnId | TxnStatus | JobId "), "{out}");
    assert!(lines[3].contains("| COMMITTED |"), "{out}");
    assert!(lines[3].contains(&format!("| {uid} |")), "{out}");
    assert!(lines[3].contains("| worker-0 | {\"0\":20} "), "{out}");
    // The label of the task's last batch, as its Delta version's commitInfo has it.
    assert!(
        lines[3].contains("| epoch 0; label routine-load-wikipedia-"),
        "{out}"
    );
    assert!(lines[3].contains("-batch-1; lag {\"0\":0} |"), "{out}");
    assert!(out.contains("1 row in set ("), "{out}");

    // errors: the worker serves the error log of the bad row.
    let out = ok(&run(&tb, &["errors", JOB, "-n", &ns, "--tail", "5"], None));
    assert!(out.contains("==> http://127.0.0.1:"), "{out}");
    assert!(out.contains("not-a-number"), "{out}");
    assert!(out.contains("Partition: 0, offset: 7"), "{out}");

    // Plugin discovery: `kubectl routineload ...` with the binary on PATH (a directory holding
    // only the plugin: cargo's target dir has a `kubectl-routineload.d` that kubectl warns about).
    let bin_dir = std::env::temp_dir().join(unique_name("plugin-path"));
    std::fs::create_dir_all(&bin_dir).expect("plugin dir");
    std::os::unix::fs::symlink(plugin(), bin_dir.join("kubectl-routineload")).expect("symlink");
    let path = std::env::join_paths(
        std::iter::once(bin_dir.clone()).chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )),
    )
    .expect("PATH");
    let out = ok(&run_cmd(
        tb.kubectl()
            .args(["routineload", "show", JOB, "-n", &ns])
            .env("PATH", &path),
        None,
    ));
    assert!(out.contains("               State: RUNNING\n"), "{out}");
    let list = ok(&run_cmd(
        tb.kubectl().args(["plugin", "list"]).env("PATH", &bin_dir),
        None,
    ));
    assert!(
        list.contains(&bin_dir.join("kubectl-routineload").display().to_string()),
        "{list}"
    );

    // pause: PAUSED, with the user's reason; spec.state written by our field manager.
    let out = ok(&run(&tb, &["pause", JOB, "-n", &ns], None));
    assert!(
        out.contains(&format!("PAUSE ROUTINE LOAD FOR {ns}.{JOB}\n")),
        "{out}"
    );
    assert!(out.contains("State: PAUSED\n"), "{out}");
    let j = jobs.get(JOB).await.expect("get job");
    assert_eq!(j.spec.state, routine_load_api::job::DesiredState::Paused);
    let managers: Vec<String> = j
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.iter().any(|m| m == "kubectl-routineload"),
        "{managers:?}"
    );
    let out = ok(&run(&tb, &["show", JOB, "-n", &ns], None));
    assert!(out.contains("               State: PAUSED\n"), "{out}");
    assert!(
        !out.contains("           PauseTime: N/A"),
        "a pause time: {out}"
    );

    // resume: RUNNING again, and it loads what comes next from where it paused.
    let out = ok(&run(&tb, &["resume", JOB, "-n", &ns], None));
    assert!(out.contains("State: RUNNING\n"), "{out}");
    produce(&tb, &topic, &wikipedia_rows(20, 25, &[])).await;
    wait_job(&jobs, "24 rows loaded after resume", |j| loaded(j) == 24).await;

    // stop: refused without confirmation, then STOPPED with --yes; final afterwards.
    let out = run(&tb, &["stop", JOB, "-n", &ns], Some("not-the-name\n"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Type the job name") && err.contains("not confirmed"),
        "{err}"
    );
    assert_eq!(
        jobs.get(JOB).await.expect("get").spec.state,
        routine_load_api::job::DesiredState::Running
    );
    let out = ok(&run(&tb, &["stop", JOB, "-n", &ns, "--yes"], None));
    assert!(
        out.contains(&format!("STOP ROUTINE LOAD FOR {ns}.{JOB}\n")),
        "{out}"
    );
    assert!(out.contains("State: STOPPED\n"), "{out}");
    let out = run(&tb, &["resume", JOB, "-n", &ns], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("STOPPED, which is final"), "{err}");
    // As SHOW ROUTINE LOAD, the list hides stopped jobs unless --all.
    let out = ok(&run(&tb, &["show", "-n", &ns], None));
    assert!(out.starts_with("Empty set"), "{out}");
    let out = ok(&run(&tb, &["show", "--all", "-n", &ns], None));
    assert!(out.contains("               State: STOPPED\n"), "{out}");
    assert!(
        !out.contains("             EndTime: N/A"),
        "an end time: {out}"
    );

    // A job the operator paused for its error rows: `resume` passes spec.state through Paused
    // (the operator resumes such a job on a spec change) and reports the new pause at once.
    let topic2 = unique_name("wiki-strict");
    tb.create_topic(&topic2, 1).await.expect("topic");
    produce(&tb, &topic2, &wikipedia_rows(0, 5, &[2])).await;
    let statement = format!(
        r#"CREATE ROUTINE LOAD wiki_strict ON routine_wiki_edit
COLUMNS TERMINATED BY ",",
COLUMNS (event_time, channel, user, is_anonymous, is_minor, is_new, is_robot, is_unpatrolled, delta, added, deleted)
PROPERTIES ("desired_concurrent_number" = "1", "max_error_number" = "0")
FROM KAFKA ("kafka_broker_list" = "{}", "kafka_topic" = "{topic2}",
            "property.kafka_default_offsets" = "OFFSET_BEGINNING")"#,
        tb.var("KAFKA_BROKERS").expect("brokers")
    );
    let yaml = ok(&run(&tb, &["convert", "-n", &ns], Some(&statement)));
    ok(&run_cmd(
        tb.kubectl().args(["apply", "-f", "-"]),
        Some(&yaml),
    ));
    let strict = "wiki-strict";
    let paused = wait_named(&jobs, strict, "wiki-strict paused by its error row", |j| {
        state(j) == Some(JobState::Paused)
            && j.status
                .as_ref()
                .and_then(|s| s.reason_of_state_changed.as_deref())
                .is_some_and(|r| r.contains("max error num"))
    })
    .await;
    let generation = paused.metadata.generation.expect("generation");
    let out = run(&tb, &["resume", strict, "-n", &ns], None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("RESUME ROUTINE LOAD FOR {ns}.{strict}\n")),
        "{stdout}"
    );
    if !out.status.success() {
        // Paused again by the same error row before the command saw it RUNNING.
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("is PAUSED, not RUNNING") && err.contains("max error num"),
            "{err}"
        );
        assert!(stdout.contains("State: PAUSED\n"), "{stdout}");
    } else {
        assert!(stdout.contains("State: RUNNING\n"), "{stdout}");
    }
    let j = wait_named(
        &jobs,
        strict,
        "wiki-strict resumed, then paused again",
        |j| {
            state(j) == Some(JobState::Paused)
                && j.status
                    .as_ref()
                    .and_then(|s| s.observed_generation)
                    .is_some_and(|o| o >= generation + 2)
        },
    )
    .await;
    assert_eq!(j.spec.state, routine_load_api::job::DesiredState::Running);
    let out = ok(&run(&tb, &["show", strict, "-n", &ns], None));
    assert!(
        out.contains("current error rows: 1 is more than max error num: 0"),
        "{out}"
    );
    // Its tasks are gone and the batch was not committed: the error log is found through the
    // reason's URL.
    let out = ok(&run(&tb, &["errors", strict, "-n", &ns], None));
    assert!(
        out.contains("Value: 'not-a-number'. Partition: 0, offset: 2."),
        "{out}"
    );

    let _ = std::fs::remove_file(&job_file);
    let _ = std::fs::remove_dir_all(&bin_dir);
    eprintln!("plugin e2e took {:.1} s", started.elapsed().as_secs_f64());
}
