//! `SHOW ROUTINE LOAD` and `SHOW ROUTINE LOAD TASK` output from the Kubernetes objects.

use std::collections::BTreeMap;

use chrono::{DateTime, Local, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use routine_load_api::job::{DEFAULT_COLUMN_SEPARATOR, DataFormat, JobState};
use routine_load_api::{RoutineLoadJob, RoutineLoadTask};

/// How times are printed: StarRocks prints the FE's local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    Local,
    Utc,
}

impl Clock {
    /// `2020-05-16 16:00:48`, or `N/A` as StarRocks prints a missing time.
    pub fn format(self, t: Option<&Time>) -> String {
        let Some(t) = t else {
            return "N/A".into();
        };
        let Some(utc) =
            DateTime::<Utc>::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().max(0) as u32)
        else {
            return "N/A".into();
        };
        match self {
            Clock::Utc => utc.format("%Y-%m-%d %H:%M:%S").to_string(),
            Clock::Local => utc
                .with_timezone(&Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string(),
        }
    }
}

/// A JSON object with the keys in the given order (StarRocks prints its properties that way).
fn ordered_json(entries: &[(&str, serde_json::Value)]) -> String {
    let body: Vec<String> = entries
        .iter()
        .map(|(k, v)| format!("{}:{}", serde_json::Value::from(*k), v))
        .collect();
    format!("{{{}}}", body.join(","))
}

fn s(v: impl ToString) -> serde_json::Value {
    serde_json::Value::String(v.to_string())
}

/// The job's state as SHOW ROUTINE LOAD prints it (a job the operator has not seen yet is
/// NEED_SCHEDULE, as a freshly created StarRocks job).
pub fn state_of(job: &RoutineLoadJob) -> JobState {
    job.status
        .as_ref()
        .and_then(|s| s.state)
        .unwrap_or(JobState::NeedSchedule)
}

/// `JobProperties`: every job property as a string, as StarRocks prints them.
pub fn job_properties(job: &RoutineLoadJob) -> String {
    let spec = &job.spec;
    let status = job.status.clone().unwrap_or_default();
    let format = match spec.format {
        DataFormat::Csv => "csv",
        DataFormat::Json => "json",
        DataFormat::Avro => "avro",
    };
    let separator = spec
        .column_separator
        .as_deref()
        .unwrap_or(DEFAULT_COLUMN_SEPARATOR);
    let or_star = |v: String| if v.is_empty() { "*".to_string() } else { v };
    let mut entries = vec![
        ("partitions", s(or_star(spec.partitions.join(",")))),
        ("columnToColumnExpr", s(spec.columns.join(","))),
        ("maxBatchIntervalS", s(spec.max_batch_interval)),
        (
            "whereExpr",
            s(spec.where_expr.clone().unwrap_or_else(|| "*".into())),
        ),
        ("dataFormat", s(format)),
        ("timezone", s(&spec.timezone)),
        ("format", s(format)),
        ("columnSeparator", s(format!("'{separator}'"))),
        (
            "jsonPaths",
            s(spec
                .json_paths
                .as_ref()
                .map(|p| serde_json::to_string(p).unwrap_or_default())
                .unwrap_or_default()),
        ),
        ("maxBatchSizeBytes", s(spec.max_batch_size)),
        ("currentTaskConcurrentNum", s(status.current_task_num)),
        ("strictMode", s(spec.strict_mode)),
        ("jsonRoot", s(spec.json_root.clone().unwrap_or_default())),
        (
            "stripOuterArray",
            s(spec.strip_outer_array.unwrap_or(false)),
        ),
        ("desireTaskConcurrentNum", s(spec.desired_concurrent_number)),
        ("maxErrorNum", s(spec.max_error_number)),
        ("maxFilterRatio", s(format!("{:?}", spec.max_filter_ratio))),
        ("maxBatchRows", s(spec.max_batch_rows)),
    ];
    if let Some(d) = &spec.row_delimiter {
        entries.push(("rowDelimiter", s(format!("'{d}'"))));
    }
    for (k, v) in [("enclose", &spec.enclose), ("escape", &spec.escape)] {
        if let Some(v) = v {
            entries.push((k, s(v)));
        }
    }
    if let Some(t) = spec.trim_space {
        entries.push(("trimSpace", s(t)));
    }
    ordered_json(&entries)
}

/// `DataSourceProperties`: topic, the partitions loaded now, brokers.
pub fn data_source_properties(job: &RoutineLoadJob) -> String {
    let status = job.status.clone().unwrap_or_default();
    let partitions = if status.current_kafka_partitions.is_empty() {
        &job.spec.kafka.partitions
    } else {
        &status.current_kafka_partitions
    };
    let partitions: Vec<String> = partitions.iter().map(i32::to_string).collect();
    ordered_json(&[
        ("topic", s(&job.spec.kafka.topic)),
        ("currentKafkaPartitions", s(partitions.join(","))),
        ("brokerList", s(&job.spec.kafka.broker_list)),
    ])
}

/// `CustomProperties`: the Kafka client properties (`property.*`), the default offset and the
/// credentials Secret's name (never its content).
pub fn custom_properties(job: &RoutineLoadJob) -> String {
    let k = &job.spec.kafka;
    let mut entries: Vec<(&str, serde_json::Value)> = k
        .properties
        .iter()
        .map(|(k, v)| (k.as_str(), s(v)))
        .collect();
    if let Some(d) = &k.default_offset {
        entries.push(("kafka_default_offsets", s(String::from(d.clone()))));
    }
    if let Some(sec) = &k.credentials_secret {
        entries.push(("credentialsSecret", s(&sec.name)));
    }
    ordered_json(&entries)
}

/// `Statistic`, numbers as StarRocks prints them.
pub fn statistic(job: &RoutineLoadJob) -> String {
    let st = job.status.clone().unwrap_or_default().statistic;
    let n = |v: i64| serde_json::Value::from(v);
    ordered_json(&[
        ("receivedBytes", n(st.received_bytes)),
        ("errorRows", n(st.error_rows)),
        ("committedTaskNum", n(st.committed_task_num)),
        ("loadedRows", n(st.loaded_rows)),
        ("loadRowsRate", n(st.load_rows_rate)),
        ("abortedTaskNum", n(st.aborted_task_num)),
        ("totalRows", n(st.total_rows)),
        ("unselectedRows", n(st.unselected_rows)),
        ("receivedBytesRate", n(st.received_bytes_rate)),
        ("taskExecuteTimeMs", n(st.task_execute_time_ms)),
    ])
}

/// Partition -> value, partitions in numeric order, values as strings (StarRocks `Progress`).
fn by_partition(map: &BTreeMap<String, i64>, quoted: bool) -> String {
    let mut entries: Vec<(&String, &i64)> = map.iter().collect();
    entries.sort_by_key(|(p, _)| (p.parse::<i64>().unwrap_or(i64::MAX), p.to_string()));
    let entries: Vec<(&str, serde_json::Value)> = entries
        .into_iter()
        .map(|(p, v)| {
            (
                p.as_str(),
                if quoted {
                    s(v)
                } else {
                    serde_json::Value::from(*v)
                },
            )
        })
        .collect();
    ordered_json(&entries)
}

/// The field names of one `SHOW ROUTINE LOAD FOR job\G` row, right-aligned like the MySQL
/// client's vertical output.
pub fn show_job(job: &RoutineLoadJob, row: usize, clock: Clock) -> String {
    let status = job.status.clone().unwrap_or_default();
    let mut fields: Vec<(&str, String)> = vec![
        ("Id", job.metadata.uid.clone().unwrap_or_default()),
        ("Name", job.metadata.name.clone().unwrap_or_default()),
        (
            "CreateTime",
            clock.format(
                status
                    .create_time
                    .as_ref()
                    .or(job.metadata.creation_timestamp.as_ref()),
            ),
        ),
        ("PauseTime", clock.format(status.pause_time.as_ref())),
        ("EndTime", clock.format(status.end_time.as_ref())),
        ("DbName", job.metadata.namespace.clone().unwrap_or_default()),
        ("TableName", job.spec.table.clone()),
        ("State", state_of(job).as_str().to_string()),
        ("DataSourceType", "KAFKA".into()),
        ("CurrentTaskNum", status.current_task_num.to_string()),
        ("JobProperties", job_properties(job)),
        ("DataSourceProperties", data_source_properties(job)),
        ("CustomProperties", custom_properties(job)),
        ("Statistic", statistic(job)),
        ("Progress", by_partition(&status.progress, true)),
        (
            "ReasonOfStateChanged",
            status.reason_of_state_changed.clone().unwrap_or_default(),
        ),
        ("ErrorLogUrls", status.error_log_urls.join(", ")),
        ("OtherMsg", other_msg(job)),
    ];
    if !status.lag.is_empty() {
        // The newest offset per partition: what was loaded plus what is left.
        let latest: BTreeMap<String, i64> = status
            .lag
            .iter()
            .filter_map(|(p, lag)| status.progress.get(p).map(|o| (p.clone(), o + lag)))
            .collect();
        if !latest.is_empty() {
            fields.push(("LatestSourcePosition", by_partition(&latest, true)));
        }
        fields.push(("Lag", by_partition(&status.lag, false)));
    }
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = format!("*************************** {row}. row ***************************\n");
    for (k, v) in fields {
        let line = format!("{k:>width$}: {v}");
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `OtherMsg`: what the job's conditions say when they are not True, and the generation the
/// status lags behind.
fn other_msg(job: &RoutineLoadJob) -> String {
    let Some(status) = &job.status else {
        return "the operator has not reported on this job yet".into();
    };
    let mut msgs: Vec<String> = status
        .conditions
        .iter()
        .filter(|c| c.status != "True" && !c.message.is_empty())
        .filter(|c| Some(&c.message) != status.reason_of_state_changed.as_ref())
        .map(|c| format!("{}: {}", c.type_, c.message))
        .collect();
    if let (Some(g), Some(o)) = (job.metadata.generation, status.observed_generation)
        && o < g
    {
        msgs.push(format!(
            "spec generation {g} not yet observed by the operator (status is for {o})"
        ));
    }
    msgs.join("; ")
}

/// Every job as `SHOW [ALL] ROUTINE LOAD\G` prints them, with the MySQL client's footer.
pub fn show_jobs(jobs: &[RoutineLoadJob], clock: Clock, secs: f64) -> String {
    if jobs.is_empty() {
        return format!("Empty set ({secs:.2} sec)\n");
    }
    let mut out = String::new();
    for (i, job) in jobs.iter().enumerate() {
        out.push_str(&show_job(job, i + 1, clock));
    }
    out.push_str(&format!(
        "{} row{} in set ({secs:.2} sec)\n",
        jobs.len(),
        if jobs.len() == 1 { "" } else { "s" }
    ));
    out
}

/// A MySQL client table.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let rule = {
        let parts: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
        format!("+{}+\n", parts.join("+"))
    };
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!(" {c}{} ", " ".repeat(w - c.chars().count())))
            .collect();
        format!("|{}|\n", parts.join("|"))
    };
    let mut out = rule.clone();
    out.push_str(&line(header.to_vec()));
    out.push_str(&rule);
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out.push_str(&rule);
    out
}

/// The columns of `SHOW ROUTINE LOAD TASK`.
pub const TASK_COLUMNS: [&str; 11] = [
    "TaskId",
    "TxnId",
    "TxnStatus",
    "JobId",
    "CreateTime",
    "LastScheduledTime",
    "ExecuteStartTime",
    "Timeout",
    "BeId",
    "DataSourceProperties",
    "Message",
];

/// One `SHOW ROUTINE LOAD TASK` row per task:
/// - TaskId: the task object's name; JobId: the job's UID;
/// - TxnId: the Delta version of the task's last commit (-1 before the first);
/// - TxnStatus: COMMITTED after a commit, PREPARE while the worker runs the current epoch
///   without a commit yet, UNKNOWN before the worker picked the assignment up;
/// - CreateTime: when the task was created; LastScheduledTime: the worker's last heartbeat on
///   it; ExecuteStartTime: when its last batch committed;
/// - Timeout: the job's maxBatchInterval in seconds; BeId: the worker pod;
/// - DataSourceProperties: next offset per partition as committed in the table;
/// - Message: epoch, the last committed batch's label, lag, the worker's message.
pub fn task_rows(
    job: Option<&RoutineLoadJob>,
    tasks: &[RoutineLoadTask],
    clock: Clock,
) -> Vec<Vec<String>> {
    let mut tasks: Vec<&RoutineLoadTask> = tasks.iter().collect();
    tasks.sort_by_key(|t| t.spec.partitions.first().copied().unwrap_or(i32::MAX));
    tasks
        .into_iter()
        .map(|t| {
            let status = t.status.clone().unwrap_or_default();
            let current = t.status.is_some() && status.epoch == t.spec.epoch;
            let txn_status = if status.last_commit_version.is_some() {
                "COMMITTED"
            } else if current {
                "PREPARE"
            } else {
                "UNKNOWN"
            };
            let mut offsets: BTreeMap<String, i64> = status.committed_offsets.clone();
            for p in &t.spec.partitions {
                offsets.entry(p.to_string()).or_insert(-1);
            }
            let mut msg = vec![format!("epoch {}", t.spec.epoch)];
            if !current && t.status.is_some() {
                msg.push(format!("worker reported epoch {}", status.epoch));
            }
            if let Some(label) = &status.last_commit_label {
                msg.push(format!("label {label}"));
            }
            if !status.lag.is_empty() {
                msg.push(format!("lag {}", by_partition(&status.lag, false)));
            }
            if let Some(m) = &status.error_window_exceeded {
                msg.push(m.clone());
            }
            if let Some(m) = &status.message {
                msg.push(m.clone());
            }
            vec![
                t.metadata.name.clone().unwrap_or_default(),
                status
                    .last_commit_version
                    .map_or("-1".to_string(), |v| v.to_string()),
                txn_status.to_string(),
                t.spec.job_uid.clone(),
                clock.format(t.metadata.creation_timestamp.as_ref()),
                clock.format(status.heartbeat_time.as_ref()),
                clock.format(status.last_commit_time.as_ref()),
                job.map_or("N/A".to_string(), |j| j.spec.max_batch_interval.to_string()),
                t.spec.worker.clone(),
                by_partition(&offsets, false),
                msg.join("; "),
            ]
        })
        .collect()
}

/// `SHOW ROUTINE LOAD TASK WHERE JobName = "job"` with the MySQL client's footer.
pub fn show_tasks(
    job: Option<&RoutineLoadJob>,
    tasks: &[RoutineLoadTask],
    clock: Clock,
    secs: f64,
) -> String {
    if tasks.is_empty() {
        return format!("Empty set ({secs:.2} sec)\n");
    }
    let rows = task_rows(job, tasks, clock);
    format!(
        "{}{} row{} in set ({secs:.2} sec)\n",
        table(&TASK_COLUMNS, &rows),
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    )
}

#[cfg(test)]
mod tests;
