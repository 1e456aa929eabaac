//! Command line of `kubectl routineload` (parsed by hand: a handful of flags).

use std::time::Duration;

/// One invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Cli {
    /// `-n/--namespace`; default: the kubeconfig context's namespace.
    pub namespace: Option<String>,
    /// `--kubeconfig`: a kubeconfig file instead of KUBECONFIG / ~/.kube/config.
    pub kubeconfig: Option<String>,
    /// `--context`: a kubeconfig context instead of the current one.
    pub context: Option<String>,
    /// Print times in UTC instead of local time.
    pub utc: bool,
    /// pause/resume/stop: wait for the operator to report the new state.
    pub wait: bool,
    /// How long pause/resume/stop wait.
    pub timeout: Duration,
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Show {
        job: Option<String>,
        all: bool,
    },
    Tasks {
        job: String,
    },
    Pause {
        job: String,
    },
    Resume {
        job: String,
    },
    Stop {
        job: String,
        yes: bool,
    },
    Errors {
        job: String,
        tail: Option<usize>,
    },
    Offsets {
        job: String,
        /// `PARTITION=OFFSET` arguments.
        changes: Vec<String>,
        apply: bool,
    },
    Convert {
        file: Option<String>,
        include_secrets: bool,
        table: Option<String>,
        /// `--location URI`: the storage of the Table a CREATE TABLE converts to.
        location: Option<String>,
    },
    /// `load --table T FILE|-`: Stream Load of a file.
    Load(LoadArgs),
    Help {
        topic: Option<String>,
    },
    Version,
}

/// `load`: what to send where.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadArgs {
    /// The `Table` to load into.
    pub table: String,
    /// The file to send; `None` reads stdin (`-`).
    pub file: Option<String>,
    /// `--label`; without it the plugin generates one and prints it.
    pub label: Option<String>,
    /// Stream Load headers from the flags (`--columns` -> `columns`), in command-line order.
    pub settings: Vec<(String, String)>,
    /// `-H 'name: value'` as given.
    pub headers: Vec<String>,
    /// `--url http(s)://host:port`: the worker to send to, instead of a live worker's Lease.
    pub url: Option<String>,
    /// `--cacert FILE`: the CA certificates (PEM) to trust for an https:// worker, instead of
    /// the system's.
    pub cacert: Option<String>,
    /// `--token`: the bearer token, instead of the kubeconfig user's.
    pub token: Option<String>,
    /// `--token-file`: a file holding the bearer token.
    pub token_file: Option<String>,
    /// `--worker-namespace`: where the workers' heartbeat Leases are (default: all namespaces).
    pub worker_namespace: Option<String>,
    /// `--ok-if-exists`: a label already FINISHED exits 0.
    pub ok_if_exists: bool,
}

/// The `load` flags that are Stream Load headers: (flag, header, takes a value). A flag without
/// a value sets its header to `true` (`--strict-mode=false` sets `false`).
pub const LOAD_FLAG_HEADERS: &[(&str, &str, bool)] = &[
    ("--columns", "columns", true),
    ("--column-separator", "column_separator", true),
    ("--row-delimiter", "row_delimiter", true),
    ("--format", "format", true),
    ("--jsonpaths", "jsonpaths", true),
    ("--json-root", "json_root", true),
    ("--strip-outer-array", "strip_outer_array", false),
    ("--where", "where", true),
    ("--partitions", "partitions", true),
    ("--max-filter-ratio", "max_filter_ratio", true),
    ("--strict-mode", "strict_mode", false),
    ("--timezone", "timezone", true),
    ("--enclose", "enclose", true),
    ("--escape", "escape", true),
    ("--trim-space", "trim_space", false),
    ("--partial-update", "partial_update", false),
    ("--merge-condition", "merge_condition", true),
];

pub const USAGE: &str = "\
kubectl routineload: StarRocks Routine Load statements for routine-load jobs

Usage: kubectl routineload COMMAND [ARGS] [-n NAMESPACE]

Commands:
  show [JOB] [--all]        SHOW ROUTINE LOAD FOR job\\G (all jobs without JOB)
  tasks JOB                 SHOW ROUTINE LOAD TASK WHERE JobName = \"job\"
  pause JOB                 PAUSE ROUTINE LOAD FOR job (spec.state: Paused)
  resume JOB                RESUME ROUTINE LOAD FOR job (spec.state: Running)
  stop JOB [--yes]          STOP ROUTINE LOAD FOR job (spec.state: Stopped, final)
  errors JOB [--tail N]     print the job's error logs (status.errorLogUrls)
  offsets JOB [P=OFFSET ...] [--apply]
                            where each partition stands; what moving partitions would skip or
                            load again; --apply edits spec.kafka (ALTER ROUTINE LOAD ... FROM KAFKA)
  convert [FILE|-]          CREATE ROUTINE LOAD -> RoutineLoadJob YAML, CREATE TABLE -> Table YAML
  load --table T FILE|-     Stream Load: sends the file to a worker, prints StarRocks' JSON answer
  help [COMMAND]            this help, or a command's

Options:
  -n, --namespace NS        namespace (StarRocks database); default: the kubeconfig context's
      --kubeconfig FILE     kubeconfig file (default: KUBECONFIG, ~/.kube/config, in-cluster)
      --context NAME        kubeconfig context (default: the current context)
      --utc                 print times in UTC (default: local time, as the StarRocks FE does)
  -h, --help                help
      --version             version

The cluster comes from KUBECONFIG (or ~/.kube/config), or the in-cluster service account.
";

/// Help of one command.
pub fn command_help(topic: &str) -> Option<&'static str> {
    Some(match topic {
        "show" => {
            "\
Usage: kubectl routineload show [JOB] [--all] [-n NS] [--utc]

SHOW ROUTINE LOAD FOR JOB\\G: the job's state, properties, statistic, progress, lag and error
log URLs, in the StarRocks layout. Without JOB, every job of the namespace; as in StarRocks,
STOPPED and CANCELLED jobs are listed only with --all.
"
        }
        "tasks" => {
            "\
Usage: kubectl routineload tasks JOB [-n NS] [--utc]

SHOW ROUTINE LOAD TASK WHERE JobName = \"JOB\": one row per RoutineLoadTask of the job.
  TaskId             the task object            TxnId      Delta version of its last commit
  TxnStatus          COMMITTED, PREPARE (running, nothing committed yet) or UNKNOWN (not
                     picked up by its worker yet)
  JobId              the job's UID              CreateTime when the task was created
  LastScheduledTime  the worker's last report   ExecuteStartTime  its last commit
  Timeout            maxBatchInterval (s)       BeId       the worker pod
  DataSourceProperties  next offset per Kafka partition, as committed in the table
  Message            assignment epoch, lag and the worker's message
"
        }
        "pause" => {
            "\
Usage: kubectl routineload pause JOB [-n NS] [--no-wait] [--timeout SECS]

PAUSE ROUTINE LOAD FOR JOB: sets spec.state to Paused (field manager kubectl-routineload).
Offsets and counters are kept; `resume` continues where the job stopped. Waits (default 60 s)
until the operator reports PAUSED.
"
        }
        "resume" => {
            "\
Usage: kubectl routineload resume JOB [-n NS] [--no-wait] [--timeout SECS]

RESUME ROUTINE LOAD FOR JOB: sets spec.state to Running. The job goes through NEED_SCHEDULE
to RUNNING. A job the operator paused (error rows past maxErrorNumber) is resumed too. Waits
(default 60 s) until the operator reports RUNNING (or NEED_SCHEDULE without live workers).
"
        }
        "stop" => {
            "\
Usage: kubectl routineload stop JOB [--yes] [-n NS] [--no-wait] [--timeout SECS]

STOP ROUTINE LOAD FOR JOB: sets spec.state to Stopped. STOPPED is final: the job can't be
resumed. Asks you to type the job name unless --yes (-y) is given.
"
        }
        "errors" => {
            "\
Usage: kubectl routineload errors JOB [--tail N] [-n NS]

Fetches the error logs listed in the job's status.errorLogUrls and its tasks' errorLogUrl
(served by the workers over HTTP) and prints them; --tail N prints the last N lines of each.
A worker address that is not reachable from here needs `kubectl port-forward`.
"
        }
        "offsets" => {
            "\
Usage: kubectl routineload offsets JOB [PARTITION=OFFSET ...] [--apply] [-n NS]

Without PARTITION=OFFSET: each partition's next offset to load and the end of the partition (as
the workers last measured it). With them (OFFSET: a number, OFFSET_BEGINNING, OFFSET_END or
'YYYY-MM-DD HH:MM:SS' in the job's timezone): what moving each partition there would skip or
load again, and the spec.kafka edit that does it. --apply makes the edit (StarRocks ALTER
ROUTINE LOAD ... FROM KAFKA (\"kafka_partitions\" = ..., \"kafka_offsets\" = ...)): the worker
records the new start in the table, and a job paused with OffsetOutOfRange resumes.
"
        }
        "convert" => {
            "\
Usage: kubectl routineload convert [FILE|-] [-n NS] [--include-secrets] [--table TABLE.yaml]
                                   [--location URI]

Reads StarRocks statements (from FILE, or stdin): each CREATE ROUTINE LOAD becomes a
RoutineLoadJob, each CREATE TABLE a Table, printed as YAML in the input's order. The database
becomes the namespace (else the last USE db, else -n); CREATE DATABASE is skipped. Names
become Kubernetes names (`_` -> `-`). Unknown properties are errors. Notes and warnings go to
stderr.

CREATE ROUTINE LOAD: the job references the Table named after the statement's table. Kafka
secrets (property.sasl.password, ...) never go into the job: they go to a Secret stub (values
REPLACE_ME unless --include-secrets) referenced by spec.kafka.credentialsSecret. --table checks
the job against a Table (its YAML, as applied) with the load plan the operator uses: COLUMNS,
derived expressions, WHERE and types must fit. A job whose table the input creates too is
checked against that Table.

CREATE TABLE: DUPLICATE / PRIMARY / UNIQUE / AGGREGATE KEY become model and keys (SUM, MAX,
MIN, REPLACE, REPLACE_IF_NOT_NULL per column); types, NOT NULL, DEFAULT and COMMENT carry over;
PARTITION BY columns (and date_trunc('day', a DATE column)) become partitionColumns. HLL,
BITMAP, ARRAY, MAP, STRUCT and binary columns are errors (Delta tables have no such column
type here). DISTRIBUTED BY, ORDER BY of keyed tables, indexes, rollups, RANGE partitions of
non-DATE columns, expression partitions and PROPERTIES (replication_num, ...) are dropped,
each named in a warning. --location URI (s3://bucket/prefix or file:///path) is the Table's
spec.location; without it the YAML says REPLACE_ME, which the API server refuses.

  kubectl routineload convert job.sql | kubectl apply -f -
  kubectl routineload convert table.sql --location s3://lake/db/orders | kubectl apply -f -
"
        }
        "load" => {
            "\
Usage: kubectl routineload load --table TABLE [-n NS] FILE|- [--label LABEL]
         [--columns \"a,b,c=expr\"] [--column-separator S] [--row-delimiter S]
         [--format csv|json] [--jsonpaths '[\"$.a\"]'] [--json-root '$.data'] [--strip-outer-array]
         [--where EXPR] [--partitions P1,P2] [--max-filter-ratio R] [--strict-mode]
         [--timezone TZ] [--enclose C] [--escape C] [--trim-space] [--timeout SECS]
         [--partial-update] [--merge-condition COLUMN]
         [-H 'name: value' ...] [--url http(s)://HOST:PORT [--cacert FILE]]
         [--token TOKEN | --token-file FILE]
         [--worker-namespace NS] [--ok-if-exists]

Stream Load (StarRocks' synchronous import) of FILE (or stdin with -) into the Table TABLE of
the namespace: PUT http://WORKER/api/NS/TABLE/_stream_load with the file streamed as the body
(never read into memory; `Expect: 100-continue`, so a refused load sends no data). The flags are
StarRocks' headers (--columns is `columns`, --max-filter-ratio `max_filter_ratio`, --timeout
`timeout`, ...; every header has its flag); -H sends one as curl's -H does. Prints the worker's
JSON answer.

Label: --label, else a generated one, printed to stderr before the load starts. A label loads
once: if the outcome is unknown (the connection broke), run the same command again with
--label LABEL: a load that finished answers `Label Already Exists` with its state
(ExistingJobStatus) and loads nothing again; a cancelled one loads again.

Exit status: 0 Success; 1 Fail (the answer's Message, ErrorURL lists the filtered rows), a
refused request or no answer; 3 Label Already Exists (0 with --ok-if-exists when that load is
FINISHED).

Worker: --url http://HOST:PORT (or https://), else the URL a live worker advertises in its
heartbeat Lease (annotation routineload.io/url, the worker's ROUTINE_LOAD_ADVERTISE_URL, or its
HTTPS URL when the chart enables TLS: with the chart the pod IP, reachable from inside the
cluster network), chosen by the label so a retry goes to the same worker. From outside the
cluster: `kubectl port-forward -n RELEASE_NS svc/FULLNAME-worker 8040` and --url
http://127.0.0.1:8040. Leases are listed in all namespaces unless --worker-namespace (the
release namespace) is given. An https:// worker's certificate is checked against --cacert FILE
(PEM), else the system's CA certificates, and must name the URL's host.

Credentials: `Authorization: Bearer` with --token, --token-file, else the kubeconfig user's
`token`, `tokenFile` or exec plugin (the token of the ExecCredential it prints; run without a
terminal), or the in-cluster service account's. Users that authenticate with a client
certificate or an auth-provider need --token (for instance
`--token $(kubectl create token loader -n NS)`). The token's holder needs `create` on `loads`.

  kubectl routineload load --table routine-wiki-edit -n load-test wiki.csv --label wiki-1 \\
      --column-separator , --columns event_time,channel,user,is_anonymous,is_minor,is_new,is_robot,is_unpatrolled,delta,added,deleted
"
        }
        "help" => USAGE,
        _ => return None,
    })
}

fn value(args: &[String], i: &mut usize, flag: &str) -> Result<String, String> {
    *i += 1;
    args.get(*i)
        .cloned()
        .ok_or_else(|| format!("option {flag} needs a value"))
}

/// Parses the arguments (without the program name).
pub fn parse(args: &[String]) -> Result<Cli, String> {
    let mut cli = Cli {
        namespace: None,
        kubeconfig: None,
        context: None,
        utc: false,
        wait: true,
        timeout: Duration::from_secs(60),
        command: Command::Version,
    };
    let mut positional: Vec<String> = Vec::new();
    let (mut all, mut yes, mut include_secrets, mut help, mut version, mut apply) =
        (false, false, false, false, false, false);
    let mut tail = None;
    let mut table: Option<String> = None;
    let mut location: Option<String> = None;
    let mut load = LoadArgs::default();
    // `load`-only flags given, to refuse them for other commands.
    let mut load_flags: Vec<String> = Vec::new();
    let mut load_timeout: Option<u64> = None;
    let mut only_positional = false;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].clone();
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let take = |i: &mut usize| match &inline {
            Some(v) => Ok(v.clone()),
            None => value(args, i, &flag),
        };
        if only_positional || a == "-" || !a.starts_with('-') {
            positional.push(a);
        } else if a == "--" {
            only_positional = true;
        } else if flag == "--kubeconfig" {
            cli.kubeconfig = Some(take(&mut i)?);
        } else if flag == "--context" {
            cli.context = Some(take(&mut i)?);
        } else if flag == "-n" || flag == "--namespace" {
            cli.namespace = Some(take(&mut i)?);
        } else if let Some(ns) = a.strip_prefix("-n") {
            cli.namespace = Some(ns.to_string());
        } else if flag == "--utc" {
            cli.utc = true;
        } else if flag == "--all" {
            all = true;
        } else if flag == "--yes" || flag == "-y" {
            yes = true;
        } else if flag == "--apply" {
            apply = true;
        } else if flag == "--include-secrets" {
            include_secrets = true;
        } else if flag == "--table" {
            table = Some(take(&mut i)?);
        } else if flag == "--location" {
            location = Some(take(&mut i)?);
        } else if let Some((_, header, takes_value)) =
            LOAD_FLAG_HEADERS.iter().find(|(f, _, _)| *f == flag)
        {
            let v = if *takes_value {
                take(&mut i)?
            } else {
                inline.clone().unwrap_or_else(|| "true".into())
            };
            load.settings.push((header.to_string(), v));
            load_flags.push(flag.clone());
        } else if flag == "--label" {
            load.label = Some(take(&mut i)?);
            load_flags.push(flag.clone());
        } else if flag == "-H" || flag == "--header" {
            load.headers.push(take(&mut i)?);
            load_flags.push(flag.clone());
        } else if flag == "--url" {
            load.url = Some(take(&mut i)?);
            load_flags.push(flag.clone());
        } else if flag == "--cacert" {
            load.cacert = Some(take(&mut i)?);
            load_flags.push(flag.clone());
        } else if flag == "--token" {
            load.token = Some(take(&mut i)?);
            load_flags.push(flag.clone());
        } else if flag == "--token-file" {
            load.token_file = Some(take(&mut i)?);
            load_flags.push(flag.clone());
        } else if flag == "--worker-namespace" {
            load.worker_namespace = Some(take(&mut i)?);
            load_flags.push(flag.clone());
        } else if flag == "--ok-if-exists" {
            load.ok_if_exists = true;
            load_flags.push(flag.clone());
        } else if flag == "--no-wait" {
            cli.wait = false;
        } else if flag == "--timeout" {
            let v = take(&mut i)?;
            let secs: u64 = v
                .trim_end_matches('s')
                .parse()
                .map_err(|_| format!("--timeout {v}: expected seconds"))?;
            cli.timeout = Duration::from_secs(secs);
            load_timeout = Some(secs);
        } else if flag == "--tail" {
            let v = take(&mut i)?;
            tail = Some(
                v.parse()
                    .map_err(|_| format!("--tail {v}: expected a number of lines"))?,
            );
        } else if flag == "-h" || flag == "--help" {
            help = true;
        } else if flag == "--version" {
            version = true;
        } else {
            return Err(format!(
                "unknown option '{a}' (see kubectl routineload --help)"
            ));
        }
        i += 1;
    }
    let mut pos = positional.into_iter();
    let cmd = pos.next();
    if help {
        cli.command = Command::Help { topic: cmd };
        return Ok(cli);
    }
    if version {
        cli.command = Command::Version;
        return Ok(cli);
    }
    let Some(cmd) = cmd else {
        cli.command = Command::Help { topic: None };
        return Ok(cli);
    };
    let rest: Vec<String> = pos.collect();
    let job = |rest: &[String]| -> Result<String, String> {
        match rest {
            [job] => Ok(job.clone()),
            [] => Err(format!(
                "{cmd}: which job? usage: kubectl routineload {cmd} JOB"
            )),
            _ => Err(format!("{cmd}: one job at a time, got {}", rest.join(" "))),
        }
    };
    let allowed = |ok: &[(&str, bool)]| -> Result<(), String> {
        for (flag, set) in [
            ("--all", all),
            ("--yes", yes),
            ("--include-secrets", include_secrets),
            ("--tail", tail.is_some()),
            ("--table", table.is_some()),
            ("--location", location.is_some()),
            ("--apply", apply),
        ] {
            if set && !ok.iter().any(|(f, _)| *f == flag) {
                return Err(format!("{cmd}: option {flag} does not apply"));
            }
        }
        if cmd != "load"
            && let Some(flag) = load_flags.first()
        {
            return Err(format!(
                "{cmd}: option {flag} does not apply (it is a `load` option)"
            ));
        }
        Ok(())
    };
    cli.command = match cmd.as_str() {
        "show" => {
            allowed(&[("--all", true)])?;
            if rest.len() > 1 {
                return Err(format!("show: one job at a time, got {}", rest.join(" ")));
            }
            Command::Show {
                job: rest.first().cloned(),
                all,
            }
        }
        "tasks" | "task" => {
            allowed(&[])?;
            Command::Tasks { job: job(&rest)? }
        }
        "pause" => {
            allowed(&[])?;
            Command::Pause { job: job(&rest)? }
        }
        "resume" => {
            allowed(&[])?;
            Command::Resume { job: job(&rest)? }
        }
        "stop" => {
            allowed(&[("--yes", true)])?;
            Command::Stop {
                job: job(&rest)?,
                yes,
            }
        }
        "errors" => {
            allowed(&[("--tail", true)])?;
            Command::Errors {
                job: job(&rest)?,
                tail,
            }
        }
        "offsets" => {
            allowed(&[("--apply", true)])?;
            let Some((job, changes)) = rest.split_first() else {
                return Err("offsets: which job? usage: kubectl routineload offsets JOB [PARTITION=OFFSET ...] [--apply]".into());
            };
            if apply && changes.is_empty() {
                return Err("offsets: --apply needs at least one PARTITION=OFFSET".into());
            }
            Command::Offsets {
                job: job.clone(),
                changes: changes.to_vec(),
                apply,
            }
        }
        "convert" => {
            allowed(&[
                ("--include-secrets", true),
                ("--table", true),
                ("--location", true),
            ])?;
            if rest.len() > 1 {
                return Err("convert: one statement file at a time".into());
            }
            Command::Convert {
                file: rest.first().cloned().filter(|f| f != "-"),
                include_secrets,
                table: table.clone(),
                location: location.clone(),
            }
        }
        "load" => {
            allowed(&[("--table", true)])?;
            let Some(table) = table.clone() else {
                return Err("load: which table? usage: kubectl routineload load --table TABLE FILE|- (see kubectl routineload help load)".into());
            };
            let file = match rest.as_slice() {
                [f] => f.clone(),
                [] => {
                    return Err("load: which file? give FILE, or - to read stdin".into());
                }
                _ => {
                    return Err(format!(
                        "load: one file at a time, got {} (concatenate them, or load each with its own --label)",
                        rest.join(" ")
                    ));
                }
            };
            if let Some(secs) = load_timeout {
                if secs == 0 {
                    return Err("load: --timeout 0: the load's timeout is at least 1 s".into());
                }
                load.settings.push(("timeout".into(), secs.to_string()));
            }
            Command::Load(LoadArgs {
                table,
                file: Some(file).filter(|f| f != "-"),
                ..load.clone()
            })
        }
        "help" => Command::Help {
            topic: rest.first().cloned(),
        },
        other => {
            return Err(format!(
                "unknown command '{other}': expected show, tasks, pause, resume, stop, errors, offsets, convert or load (see kubectl routineload --help)"
            ));
        }
    };
    Ok(cli)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &str) -> Result<Cli, String> {
        let v: Vec<String> = args.split_whitespace().map(String::from).collect();
        parse(&v)
    }

    #[test]
    fn commands_and_flags_parse() {
        let cases: Vec<(&str, Command, Option<&str>)> = vec![
            (
                "show",
                Command::Show {
                    job: None,
                    all: false,
                },
                None,
            ),
            (
                "show --all -n ns",
                Command::Show {
                    job: None,
                    all: true,
                },
                Some("ns"),
            ),
            (
                "-n ns show j",
                Command::Show {
                    job: Some("j".into()),
                    all: false,
                },
                Some("ns"),
            ),
            (
                "show j --namespace=x",
                Command::Show {
                    job: Some("j".into()),
                    all: false,
                },
                Some("x"),
            ),
            (
                "tasks j -nfoo",
                Command::Tasks { job: "j".into() },
                Some("foo"),
            ),
            ("pause j", Command::Pause { job: "j".into() }, None),
            ("resume j", Command::Resume { job: "j".into() }, None),
            (
                "stop j",
                Command::Stop {
                    job: "j".into(),
                    yes: false,
                },
                None,
            ),
            (
                "stop --yes j",
                Command::Stop {
                    job: "j".into(),
                    yes: true,
                },
                None,
            ),
            (
                "stop j -y",
                Command::Stop {
                    job: "j".into(),
                    yes: true,
                },
                None,
            ),
            (
                "errors j",
                Command::Errors {
                    job: "j".into(),
                    tail: None,
                },
                None,
            ),
            (
                "errors j --tail 5",
                Command::Errors {
                    job: "j".into(),
                    tail: Some(5),
                },
                None,
            ),
            (
                "convert",
                Command::Convert {
                    file: None,
                    include_secrets: false,
                    table: None,
                    location: None,
                },
                None,
            ),
            (
                "convert -",
                Command::Convert {
                    file: None,
                    include_secrets: false,
                    table: None,
                    location: None,
                },
                None,
            ),
            (
                "convert a.sql --include-secrets",
                Command::Convert {
                    file: Some("a.sql".into()),
                    include_secrets: true,
                    table: None,
                    location: None,
                },
                None,
            ),
            (
                "convert table.sql --location s3://lake/db/t -n db",
                Command::Convert {
                    file: Some("table.sql".into()),
                    include_secrets: false,
                    table: None,
                    location: Some("s3://lake/db/t".into()),
                },
                Some("db"),
            ),
            (
                "convert both.sql --location=file:///data/t --table t.yaml",
                Command::Convert {
                    file: Some("both.sql".into()),
                    include_secrets: false,
                    table: Some("t.yaml".into()),
                    location: Some("file:///data/t".into()),
                },
                None,
            ),
            ("", Command::Help { topic: None }, None),
            ("--help", Command::Help { topic: None }, None),
            (
                "stop --help",
                Command::Help {
                    topic: Some("stop".into()),
                },
                None,
            ),
            (
                "help convert",
                Command::Help {
                    topic: Some("convert".into()),
                },
                None,
            ),
            ("--version", Command::Version, None),
        ];
        for (args, want, ns) in cases {
            let cli = p(args).unwrap_or_else(|e| panic!("{args}: {e}"));
            assert_eq!(cli.command, want, "{args}");
            assert_eq!(cli.namespace.as_deref(), ns, "{args}");
        }
        let cli = p("show j --kubeconfig /k --context=c1").unwrap();
        assert_eq!(cli.kubeconfig.as_deref(), Some("/k"));
        assert_eq!(cli.context.as_deref(), Some("c1"));
        let cli = p("pause j --no-wait --timeout 5").unwrap();
        assert!(!cli.wait);
        assert_eq!(cli.timeout, Duration::from_secs(5));
        assert!(p("show --utc").unwrap().utc);
    }

    #[test]
    fn bad_command_lines_say_what_is_wrong() {
        let cases = [
            ("frobnicate", "unknown command 'frobnicate'"),
            ("show --bogus", "unknown option '--bogus'"),
            ("pause", "pause: which job?"),
            ("pause a b", "pause: one job at a time"),
            ("show a b", "show: one job at a time"),
            ("pause j --yes", "pause: option --yes does not apply"),
            ("errors j --tail x", "--tail x: expected a number"),
            ("show -n", "option -n needs a value"),
            ("tasks j --all", "tasks: option --all does not apply"),
            (
                "show j --table t.yaml",
                "show: option --table does not apply",
            ),
            (
                "pause j --location s3://b/t",
                "pause: option --location does not apply",
            ),
            ("convert --location", "option --location needs a value"),
        ];
        for (args, want) in cases {
            let err = p(args).expect_err(args);
            assert!(err.contains(want), "{args}: {err}");
        }
    }

    fn pv(args: &[&str]) -> Result<Cli, String> {
        let v: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        parse(&v)
    }

    fn settings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn load_command_lines_parse() {
        let cases: Vec<(Vec<&str>, LoadArgs, Option<&str>)> = vec![
            (
                vec!["load", "--table", "t", "a.csv"],
                LoadArgs {
                    table: "t".into(),
                    file: Some("a.csv".into()),
                    ..Default::default()
                },
                None,
            ),
            (
                vec!["load", "-", "--table=t", "-n", "db", "--label", "l1"],
                LoadArgs {
                    table: "t".into(),
                    file: None,
                    label: Some("l1".into()),
                    ..Default::default()
                },
                Some("db"),
            ),
            (
                vec![
                    "load",
                    "--table",
                    "t",
                    "a.csv",
                    "--columns",
                    "a, b, c = a + b",
                    "--column-separator",
                    ",",
                    "--where",
                    "a > 1",
                    "--max-filter-ratio",
                    "0.1",
                    "--strict-mode",
                    "--timezone",
                    "Asia/Shanghai",
                    "--timeout",
                    "30",
                ],
                LoadArgs {
                    table: "t".into(),
                    file: Some("a.csv".into()),
                    settings: settings(&[
                        ("columns", "a, b, c = a + b"),
                        ("column_separator", ","),
                        ("where", "a > 1"),
                        ("max_filter_ratio", "0.1"),
                        ("strict_mode", "true"),
                        ("timezone", "Asia/Shanghai"),
                        ("timeout", "30"),
                    ]),
                    ..Default::default()
                },
                None,
            ),
            (
                vec![
                    "load",
                    "--table",
                    "t",
                    "a.json",
                    "--format",
                    "json",
                    "--jsonpaths",
                    "[\"$.a\"]",
                    "--json-root=$.data",
                    "--strip-outer-array",
                    "--strict-mode=false",
                    "-H",
                    "enclose: \"",
                ],
                LoadArgs {
                    table: "t".into(),
                    file: Some("a.json".into()),
                    settings: settings(&[
                        ("format", "json"),
                        ("jsonpaths", "[\"$.a\"]"),
                        ("json_root", "$.data"),
                        ("strip_outer_array", "true"),
                        ("strict_mode", "false"),
                    ]),
                    headers: vec!["enclose: \"".into()],
                    ..Default::default()
                },
                None,
            ),
            (
                vec![
                    "load",
                    "--table",
                    "t",
                    "a.csv",
                    "--url",
                    "http://127.0.0.1:8040",
                    "--token",
                    "T",
                    "--ok-if-exists",
                    "--worker-namespace",
                    "routine-load",
                ],
                LoadArgs {
                    table: "t".into(),
                    file: Some("a.csv".into()),
                    url: Some("http://127.0.0.1:8040".into()),
                    token: Some("T".into()),
                    worker_namespace: Some("routine-load".into()),
                    ok_if_exists: true,
                    ..Default::default()
                },
                None,
            ),
            (
                vec!["load", "--table", "t", "a.csv", "--token-file", "/t"],
                LoadArgs {
                    table: "t".into(),
                    file: Some("a.csv".into()),
                    token_file: Some("/t".into()),
                    ..Default::default()
                },
                None,
            ),
        ];
        for (args, want, ns) in cases {
            let cli = pv(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert_eq!(cli.command, Command::Load(want), "{args:?}");
            assert_eq!(cli.namespace.as_deref(), ns, "{args:?}");
        }
    }

    #[test]
    fn bad_load_command_lines_say_what_is_wrong() {
        let cases: Vec<(Vec<&str>, &str)> = vec![
            (vec!["load", "a.csv"], "load: which table?"),
            (
                vec!["load", "--table", "t"],
                "load: which file? give FILE, or -",
            ),
            (
                vec!["load", "--table", "t", "a", "b"],
                "load: one file at a time",
            ),
            (
                vec!["load", "--table", "t", "a", "--colums", "x"],
                "unknown option '--colums'",
            ),
            (
                vec!["load", "--table", "t", "a", "--timeout", "0"],
                "at least 1 s",
            ),
            (
                vec!["load", "--table", "t", "a", "--all"],
                "load: option --all does not apply",
            ),
            (
                vec!["load", "--table", "t", "a", "--label"],
                "option --label needs a value",
            ),
            (
                vec!["show", "--label", "l"],
                "show: option --label does not apply (it is a `load` option)",
            ),
            (
                vec!["errors", "j", "-H", "a: b"],
                "errors: option -H does not apply",
            ),
            (
                vec!["convert", "--columns", "a"],
                "convert: option --columns does not apply",
            ),
        ];
        for (args, want) in cases {
            let err = pv(&args).expect_err(&format!("{args:?}"));
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }

    #[test]
    fn every_command_has_help() {
        for c in [
            "show", "tasks", "pause", "resume", "stop", "errors", "convert", "load", "help",
        ] {
            assert!(command_help(c).is_some_and(|h| h.contains("Usage")), "{c}");
        }
    }
}
