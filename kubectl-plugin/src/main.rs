//! `kubectl routineload`: StarRocks Routine Load statements (SHOW ROUTINE LOAD, SHOW ROUTINE
//! LOAD TASK, PAUSE / RESUME / STOP ROUTINE LOAD, CREATE ROUTINE LOAD, CREATE TABLE) for
//! routine-load jobs and their tables, and Stream Load of files (`load`).
//!
//! Installed as `kubectl-routineload` anywhere on PATH, kubectl finds it as a plugin.

mod cli;
mod convert;
mod http;
mod load;
mod offsets;
mod show;

use std::io::{BufRead, IsTerminal, Read, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kube::api::{ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use routine_load_api::job::{DesiredState, JobState};
use routine_load_api::names::JOB_LABEL;
use routine_load_api::{RoutineLoadJob, RoutineLoadTask};
use serde_json::json;

use cli::{Cli, Command};
use show::Clock;

/// Field manager of the plugin's writes.
pub const FIELD_MANAGER: &str = "kubectl-routineload";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cli = match cli::parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Command::Load(args) = &cli.command {
        let code = runtime.block_on(load_cmd(&cli, args)).unwrap_or_else(|e| {
            eprintln!("error: {e:#}");
            1
        });
        std::process::exit(code);
    }
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    let clock = if cli.utc { Clock::Utc } else { Clock::Local };
    match &cli.command {
        Command::Help { topic } => {
            match topic.as_deref() {
                None => print!("{}", cli::USAGE),
                Some(t) => match cli::command_help(t) {
                    Some(h) => print!("{h}"),
                    None => bail!("no help for '{t}': not a command"),
                },
            }
            Ok(())
        }
        Command::Version => {
            println!("kubectl-routineload {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Convert {
            file,
            include_secrets,
            table,
            location,
        } => convert_cmd(
            file.as_deref(),
            cli.namespace.clone(),
            *include_secrets,
            table.as_deref(),
            location.as_deref(),
        ),
        cmd => {
            let (client, ns) = connect(&cli).await?;
            let jobs: Api<RoutineLoadJob> = Api::namespaced(client.clone(), &ns);
            match cmd {
                Command::Show { job: Some(job), .. } => {
                    let started = Instant::now();
                    let j = get_job(&jobs, job, &ns)
                        .await
                        .context("SHOW ROUTINE LOAD")?;
                    print!(
                        "{}",
                        show::show_jobs(&[j], clock, started.elapsed().as_secs_f64())
                    );
                    Ok(())
                }
                Command::Show { job: None, all } => {
                    let started = Instant::now();
                    let list = jobs.list(&ListParams::default()).await.with_context(|| {
                        format!("SHOW ROUTINE LOAD: listing RoutineLoadJobs in namespace {ns}")
                    })?;
                    let mut items = list.items;
                    items.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
                    let total = items.len();
                    if !all {
                        items.retain(|j| !show::state_of(j).is_final());
                    }
                    print!(
                        "{}",
                        show::show_jobs(&items, clock, started.elapsed().as_secs_f64())
                    );
                    if items.len() < total {
                        eprintln!(
                            "({} STOPPED or CANCELLED job(s) not shown: use --all, as SHOW ALL ROUTINE LOAD)",
                            total - items.len()
                        );
                    }
                    Ok(())
                }
                Command::Tasks { job } => {
                    let started = Instant::now();
                    let j = get_job(&jobs, job, &ns)
                        .await
                        .context("SHOW ROUTINE LOAD TASK")?;
                    let tasks = tasks_of(&client, &ns, &j).await?;
                    print!(
                        "{}",
                        show::show_tasks(Some(&j), &tasks, clock, started.elapsed().as_secs_f64())
                    );
                    Ok(())
                }
                Command::Pause { job } => {
                    set_state(&cli, &jobs, &ns, job, DesiredState::Paused, true).await
                }
                Command::Resume { job } => {
                    set_state(&cli, &jobs, &ns, job, DesiredState::Running, true).await
                }
                Command::Stop { job, yes } => {
                    set_state(&cli, &jobs, &ns, job, DesiredState::Stopped, *yes).await
                }
                Command::Errors { job, tail } => errors_cmd(&client, &jobs, &ns, job, *tail).await,
                Command::Offsets {
                    job,
                    changes,
                    apply,
                } => offsets_cmd(&jobs, &ns, job, changes, *apply).await,
                Command::Help { .. }
                | Command::Version
                | Command::Convert { .. }
                | Command::Load(_) => {
                    unreachable!()
                }
            }
        }
    }
}

/// The client configuration from KUBECONFIG / in-cluster config (`--kubeconfig`, `--context`).
async fn kube_config(cli: &Cli) -> Result<Config> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    if cli.kubeconfig.is_none() && cli.context.is_none() {
        return Config::infer().await.context(
            "reading the cluster configuration (KUBECONFIG, ~/.kube/config or the in-cluster service account)",
        );
    }
    let kubeconfig = match &cli.kubeconfig {
        Some(path) => {
            Kubeconfig::read_from(path).with_context(|| format!("reading kubeconfig {path}"))?
        }
        None => Kubeconfig::read().context("reading KUBECONFIG or ~/.kube/config")?,
    };
    let options = KubeConfigOptions {
        context: cli.context.clone(),
        ..Default::default()
    };
    Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .context("loading the kubeconfig context")
}

/// `load`: Stream Load of a file through a worker; returns the exit status.
async fn load_cmd(cli: &Cli, args: &cli::LoadArgs) -> Result<i32> {
    let (label, generated) = match &args.label {
        Some(l) => (l.clone(), false),
        None => {
            let entropy = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos() as u64)
                .unwrap_or(0)
                ^ (u64::from(std::process::id()) << 16);
            (load::generated_label(chrono::Utc::now(), entropy), true)
        }
    };
    let headers = load::request_headers(args, &label).map_err(|e| anyhow::anyhow!("load: {e}"))?;
    // The cluster is needed for the namespace, the token and the worker, unless all are given.
    let needs_cluster = cli.namespace.is_none()
        || args.url.is_none()
        || (args.token.is_none() && args.token_file.is_none());
    let config = if needs_cluster {
        Some(kube_config(cli).await.context("load")?)
    } else {
        None
    };
    let ns = cli.namespace.clone().unwrap_or_else(|| {
        config
            .as_ref()
            .map_or_else(|| "default".to_string(), |c| c.default_namespace.clone())
    });
    let auth_info = match (&config, &args.token, &args.token_file) {
        (Some(c), None, None) => Some(serde_json::to_value(&c.auth_info)?),
        _ => None,
    };
    let token =
        load::token_from(args, auth_info.as_ref()).map_err(|e| anyhow::anyhow!("load: {e}"))?;
    // `--url`, else every live worker, the label's first: one that can't be reached at all got
    // nothing of the load, and the next one is tried.
    let bases = match &args.url {
        Some(u) => vec![u.clone()],
        None => {
            let config = config.clone().context("load: no cluster configuration")?;
            let client = Client::try_from(config).context("load: connecting to the cluster")?;
            worker_urls(&client, args.worker_namespace.as_deref(), &label).await?
        }
    };
    if generated {
        eprintln!(
            "label: {label} (if the outcome is unknown, run again with --label {label}: it loads at most once)"
        );
    }
    let timeout = Duration::from_secs(load::timeout_of(&headers));
    let mut tried = 0;
    let (status, answer) = loop {
        let base = &bases[tried];
        tried += 1;
        let url =
            load::load_url(base, &ns, &args.table).map_err(|e| anyhow::anyhow!("load: {e}"))?;
        let tls = if url.starts_with("https://") {
            Some(load::tls_connector(args.cacert.as_deref()).context("load")?)
        } else {
            None
        };
        let body = load_body(args).await?;
        match load::send(&url, tls.as_ref(), &token, &headers, body, timeout).await {
            Ok(answer) => break answer,
            Err(e) if e.downcast_ref::<load::Unreachable>().is_some() && tried < bases.len() => {
                eprintln!("load: {e:#}; trying the next live worker, {}", bases[tried]);
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("load: PUT {url} (label {label}: whether it loaded is unknown; run again with --label {label})")
                });
            }
        }
    };
    let text = String::from_utf8_lossy(&answer);
    print!("{text}");
    if !text.ends_with('\n') {
        println!();
    }
    let json: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
    let (code, note) = load::verdict(status, &json, args.ok_if_exists);
    if let Some(n) = note {
        eprintln!("error: {n}");
    }
    Ok(code)
}

/// The body of a load: the file given (opened for each worker tried), else stdin.
async fn load_body(args: &cli::LoadArgs) -> Result<load::Body> {
    let Some(path) = &args.file else {
        return Ok(load::Body::Stdin);
    };
    let f = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("load: opening {path}"))?;
    let len = f
        .metadata()
        .await
        .with_context(|| format!("load: reading the size of {path}"))?
        .len();
    Ok(load::Body::File(f, len))
}

/// The advertised URLs of the live workers from their heartbeat Leases, in the order a load
/// under `label` tries them.
async fn worker_urls(client: &Client, namespace: Option<&str>, label: &str) -> Result<Vec<String>> {
    use k8s_openapi::api::coordination::v1::Lease;
    use routine_load_api::names::{WORKER_LABEL, WORKER_URL_ANNOTATION};
    let api: Api<Lease> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let leases = api
        .list(&ListParams::default().labels(WORKER_LABEL))
        .await
        .with_context(|| {
            format!(
                "load: listing the workers' heartbeat Leases ({}); without the permission, give the worker with --url",
                namespace.map_or_else(|| "all namespaces".to_string(), |n| format!("namespace {n}"))
            )
        })?;
    let now = k8s_openapi::jiff::Timestamp::now();
    let leases: Vec<load::WorkerLease> = leases
        .items
        .iter()
        .map(|l| load::WorkerLease {
            name: l.metadata.name.clone().unwrap_or_default(),
            url: l
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(WORKER_URL_ANNOTATION))
                .cloned(),
            renewed_ago: l
                .spec
                .as_ref()
                .and_then(|s| s.renew_time.as_ref())
                .map(|t| now.duration_since(t.0).as_secs()),
            duration_secs: l
                .spec
                .as_ref()
                .and_then(|s| s.lease_duration_seconds)
                .map_or(20, i64::from),
        })
        .collect();
    load::choose_workers(&leases, label).map_err(|e| anyhow::anyhow!("load: {e}"))
}

/// The client from KUBECONFIG / in-cluster config, and the namespace: `-n`, else the context's.
async fn connect(cli: &Cli) -> Result<(Client, String)> {
    let client = Client::try_from(kube_config(cli).await?).context("connecting to the cluster")?;
    let ns = cli
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    Ok((client, ns))
}

async fn get_job(jobs: &Api<RoutineLoadJob>, name: &str, ns: &str) -> Result<RoutineLoadJob> {
    match jobs.get_opt(name).await {
        Ok(Some(j)) => Ok(j),
        Ok(None) => bail!("routine load job '{name}' not found in namespace '{ns}'"),
        Err(e) => Err(e).with_context(|| format!("getting RoutineLoadJob {ns}/{name}")),
    }
}

async fn tasks_of(client: &Client, ns: &str, job: &RoutineLoadJob) -> Result<Vec<RoutineLoadTask>> {
    let name = job.metadata.name.clone().unwrap_or_default();
    let api: Api<RoutineLoadTask> = Api::namespaced(client.clone(), ns);
    let list = api
        .list(&ListParams::default().labels(&format!("{JOB_LABEL}={name}")))
        .await
        .with_context(|| format!("listing the RoutineLoadTasks of {ns}/{name}"))?;
    // The label selects; the spec (and the job's UID) decides.
    Ok(list
        .items
        .into_iter()
        .filter(|t| t.spec.job == name && Some(&t.spec.job_uid) == job.metadata.uid.as_ref())
        .collect())
}

fn desired_name(d: DesiredState) -> &'static str {
    match d {
        DesiredState::Running => "Running",
        DesiredState::Paused => "Paused",
        DesiredState::Stopped => "Stopped",
    }
}

async fn patch_state(
    jobs: &Api<RoutineLoadJob>,
    name: &str,
    state: DesiredState,
) -> Result<RoutineLoadJob> {
    let pp = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let body = json!({ "spec": { "state": desired_name(state) } });
    jobs.patch(name, &pp, &Patch::Merge(&body))
        .await
        .with_context(|| format!("setting spec.state of {name} to {}", desired_name(state)))
}

/// PAUSE / RESUME / STOP ROUTINE LOAD.
async fn set_state(
    cli: &Cli,
    jobs: &Api<RoutineLoadJob>,
    ns: &str,
    name: &str,
    desired: DesiredState,
    confirmed: bool,
) -> Result<()> {
    let verb = match desired {
        DesiredState::Running => "RESUME",
        DesiredState::Paused => "PAUSE",
        DesiredState::Stopped => "STOP",
    };
    let statement = format!("{verb} ROUTINE LOAD FOR {ns}.{name}");
    let job = get_job(jobs, name, ns).await.context(statement.clone())?;
    let current = show::state_of(&job);
    if current.is_final() {
        if desired == DesiredState::Stopped {
            println!("{statement}\nState: {}", current.as_str());
            return Ok(());
        }
        bail!(
            "{statement}: the job is {}, which is final: it can't be {}; create a new job (its offsets start over unless kafka.offsets says otherwise)",
            current.as_str(),
            if desired == DesiredState::Paused {
                "paused"
            } else {
                "resumed"
            }
        );
    }
    if !confirmed && !confirm_stop(name)? {
        bail!("{statement}: not confirmed, nothing changed (type the job name, or pass --yes)");
    }
    let target = match desired {
        DesiredState::Running => JobState::Running,
        DesiredState::Paused => JobState::Paused,
        DesiredState::Stopped => JobState::Stopped,
    };
    let patched = if desired == DesiredState::Running
        && job.spec.state == DesiredState::Running
        && current == JobState::Paused
    {
        // Paused by the operator (error rows, a missing table...) with spec.state still
        // Running: the operator resumes on a spec change, so pass through Paused.
        patch_state(jobs, name, DesiredState::Paused)
            .await
            .context(statement.clone())?;
        patch_state(jobs, name, DesiredState::Running)
            .await
            .context(statement.clone())?
    } else {
        patch_state(jobs, name, desired)
            .await
            .context(statement.clone())?
    };
    println!("{statement}");
    let generation = patched.metadata.generation.unwrap_or(0);
    if !cli.wait {
        println!("spec.state: {}", desired_name(desired));
        return Ok(());
    }
    let deadline = Instant::now() + cli.timeout;
    let mut last = patched;
    loop {
        let status = last.status.clone().unwrap_or_default();
        let observed = status.observed_generation.is_some_and(|o| o >= generation);
        let state = show::state_of(&last);
        let reason = status.reason_of_state_changed.clone().unwrap_or_default();
        // Once the operator has seen the new spec, a resumed job that is PAUSED was paused
        // again (error rows past maxErrorNumber, a missing table...): say why at once.
        let paused_again = desired == DesiredState::Running && state == JobState::Paused;
        if observed && (state == target || state.is_final() || paused_again) {
            println!("State: {}", state.as_str());
            if !reason.is_empty() {
                println!("ReasonOfStateChanged: {reason}");
            }
            if state != target {
                bail!(
                    "{statement}: the job is {}, not {}{}",
                    state.as_str(),
                    target.as_str(),
                    if reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {reason}")
                    }
                );
            }
            return Ok(());
        }
        if Instant::now() >= deadline {
            if observed && desired == DesiredState::Running && state == JobState::NeedSchedule {
                // As in StarRocks, a resumed job waits in NEED_SCHEDULE for a worker.
                println!("State: {}", state.as_str());
                if !reason.is_empty() {
                    println!("ReasonOfStateChanged: {reason}");
                }
                return Ok(());
            }
            bail!(
                "{statement}: spec.state is {}, but the operator has not reported {} within {:?} (state: {}{}); is the operator running?",
                desired_name(desired),
                target.as_str(),
                cli.timeout,
                state.as_str(),
                if reason.is_empty() {
                    String::new()
                } else {
                    format!(", reason: {reason}")
                }
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        last = get_job(jobs, name, ns).await.context(statement.clone())?;
    }
}

/// Asks for the job name on the terminal (stdin); true if it was typed.
fn confirm_stop(name: &str) -> Result<bool> {
    let mut err = std::io::stderr();
    write!(
        err,
        "STOPPED is final: the job can't be resumed afterwards.\nType the job name ({name}) to stop it: "
    )?;
    err.flush()?;
    // Read from stdin even when it is not a terminal: `echo job | ... stop job` confirms.
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the confirmation")?;
    Ok(line.trim() == name)
}

/// Prints the error logs of the job and its tasks.
async fn errors_cmd(
    client: &Client,
    jobs: &Api<RoutineLoadJob>,
    ns: &str,
    name: &str,
    tail: Option<usize>,
) -> Result<()> {
    let job = get_job(jobs, name, ns).await.context("errors")?;
    let tasks = tasks_of(client, ns, &job).await.context("errors")?;
    let status = job.status.clone().unwrap_or_default();
    let mut urls: Vec<String> = status.error_log_urls.clone();
    let from_tasks = tasks
        .iter()
        .filter_map(|t| t.status.as_ref().and_then(|s| s.error_log_url.clone()));
    // A job paused for its error rows names the log in its reason, after its tasks are gone.
    let from_reason = status
        .reason_of_state_changed
        .iter()
        .chain(status.conditions.iter().map(|c| &c.message))
        .flat_map(|text| http::urls_in(text))
        .filter(|u| u.contains("_load_error_log"));
    for u in from_tasks.chain(from_reason) {
        if !urls.contains(&u) {
            urls.push(u);
        }
    }
    if urls.is_empty() {
        println!(
            "No error logs for routine load job {ns}.{name}: errorRows is {} and no task reported an error log URL.",
            status.statistic.error_rows
        );
        return Ok(());
    }
    let mut failed = 0;
    for url in &urls {
        println!("==> {url} <==");
        match http::get(url, Duration::from_secs(10)).await {
            Ok(body) => {
                let text = String::from_utf8_lossy(&body);
                let text = match tail {
                    Some(n) => http::tail(&text, n),
                    None => &text,
                };
                print!("{text}");
                if !text.is_empty() && !text.ends_with('\n') {
                    println!();
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: fetching the error log: {e:#}");
            }
        }
    }
    if failed == urls.len() {
        bail!(
            "errors: none of the {} error log(s) could be fetched",
            urls.len()
        );
    }
    Ok(())
}

/// CREATE ROUTINE LOAD -> RoutineLoadJob YAML, CREATE TABLE -> Table YAML, for each statement
/// of the input (`convert::create_table::convert_input`).
fn convert_cmd(
    file: Option<&str>,
    namespace: Option<String>,
    include_secrets: bool,
    table: Option<&str>,
    location: Option<&str>,
) -> Result<()> {
    let mut sql = String::new();
    match file {
        Some(path) => {
            sql =
                std::fs::read_to_string(path).with_context(|| format!("convert: reading {path}"))?
        }
        None => {
            if std::io::stdin().is_terminal() {
                eprintln!(
                    "reading CREATE TABLE / CREATE ROUTINE LOAD statements from stdin (end with Ctrl-D)"
                );
            }
            std::io::stdin()
                .read_to_string(&mut sql)
                .context("convert: reading stdin")?;
        }
    }
    let table_file = match table {
        Some(path) => Some((
            path.to_string(),
            std::fs::read_to_string(path)
                .with_context(|| format!("convert: reading the table {path}"))?,
        )),
        None => None,
    };
    let converted = convert::create_table::convert_input(
        &sql,
        &convert::create_table::InputOptions {
            namespace,
            include_secrets,
            location: location.map(str::to_string),
            table_file,
        },
    )
    .map_err(|e| anyhow::anyhow!("convert: {e}"))?;
    for m in &converted.messages {
        eprintln!("{m}");
    }
    print!("{}", converted.yaml);
    Ok(())
}

/// `offsets JOB [P=OFFSET ...] [--apply]`.
async fn offsets_cmd(
    jobs: &Api<RoutineLoadJob>,
    ns: &str,
    name: &str,
    changes: &[String],
    apply: bool,
) -> Result<()> {
    let job = get_job(jobs, name, ns).await?;
    let standings = offsets::standings(&job);
    let changes: Vec<_> = changes
        .iter()
        .map(|c| offsets::parse_change(c))
        .collect::<Result<_, _>>()
        .map_err(anyhow::Error::msg)?;
    if changes.is_empty() {
        println!("PARTITION  NEXT  END  LAG");
        for s in &standings {
            let show = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
            let lag = s.next.zip(s.end).map(|(n, e)| e - n);
            println!(
                "{}  {}  {}  {}",
                s.partition,
                show(s.next),
                show(s.end),
                show(lag)
            );
        }
        return Ok(());
    }
    for (p, to) in &changes {
        let s = standings
            .iter()
            .find(|s| s.partition == *p)
            .copied()
            .unwrap_or(offsets::Standing {
                partition: *p,
                next: None,
                end: None,
            });
        println!("{}", offsets::preview(&s, to));
    }
    let loaded: Vec<i32> = standings.iter().map(|s| s.partition).collect();
    let edit =
        offsets::edited_kafka(&job.spec.kafka, &loaded, &changes).map_err(anyhow::Error::msg)?;
    for w in &edit.warnings {
        println!("warning: {w}");
    }
    let patch =
        json!({ "spec": { "kafka": { "partitions": edit.partitions, "offsets": edit.offsets } } });
    if !apply {
        println!(
            "to apply: kubectl routineload offsets {name} {} --apply\n(patch: {patch})",
            changes
                .iter()
                .map(|(p, o)| format!("'{p}={}'", String::from(o.clone())))
                .collect::<Vec<_>>()
                .join(" ")
        );
        return Ok(());
    }
    let pp = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    jobs.patch(name, &pp, &Patch::Merge(&patch))
        .await
        .with_context(|| format!("patching spec.kafka of RoutineLoadJob {ns}/{name}"))?;
    println!(
        "applied: the worker records the new starts in the table (see the job's OffsetsApplied Events)"
    );
    Ok(())
}
