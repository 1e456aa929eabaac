use super::*;

/// The reference's quick start job with the status of its example output.
const WIKIPEDIA_JOB: &str = r#"
apiVersion: routineload.io/v1alpha1
kind: RoutineLoadJob
metadata:
  name: routine-load-wikipedia
  namespace: load-test
  uid: 7c6e-14093
  generation: 1
  creationTimestamp: "2020-05-16T16:00:47Z"
spec:
  table: routine-wiki-edit
  columnSeparator: ","
  columns: [event_time, channel, user, is_anonymous, is_minor, is_new, is_robot, is_unpatrolled, delta, added, deleted]
  desiredConcurrentNumber: 1
  maxErrorNumber: 1000
  kafka: {brokerList: "localhost:9092", topic: starrocks-load}
status:
  state: RUNNING
  currentTaskNum: 1
  currentKafkaPartitions: [0]
  createTime: "2020-05-16T16:00:48Z"
  observedGeneration: 1
  statistic: {receivedBytes: 150821770, errorRows: 122, committedTaskNum: 12, loadedRows: 2399878,
    loadRowsRate: 199000, abortedTaskNum: 1, totalRows: 2400000, unselectedRows: 0,
    receivedBytesRate: 12523000, taskExecuteTimeMs: 12043}
  progress: {"0": 13634667}
  lag: {"0": 5}
  totalLag: 5
  errorLogUrls: ["http://w0:8040/api/_load_error_log?file=error_log_a.log", "http://w1:8040/api/_load_error_log?file=error_log_b.log"]
"#;

fn job(yaml: &str) -> RoutineLoadJob {
    serde_yaml::from_str(yaml).expect("job yaml")
}

#[test]
fn show_prints_the_reference_shape() {
    let out = show_job(&job(WIKIPEDIA_JOB), 1, Clock::Utc);
    let want = r#"*************************** 1. row ***************************
                  Id: 7c6e-14093
                Name: routine-load-wikipedia
          CreateTime: 2020-05-16 16:00:48
           PauseTime: N/A
             EndTime: N/A
              DbName: load-test
           TableName: routine-wiki-edit
               State: RUNNING
      DataSourceType: KAFKA
      CurrentTaskNum: 1
       JobProperties: {"partitions":"*","columnToColumnExpr":"event_time,channel,user,is_anonymous,is_minor,is_new,is_robot,is_unpatrolled,delta,added,deleted","maxBatchIntervalS":"10","whereExpr":"*","dataFormat":"csv","timezone":"UTC","format":"csv","columnSeparator":"','","jsonPaths":"","maxBatchSizeBytes":"104857600","currentTaskConcurrentNum":"1","strictMode":"true","jsonRoot":"","stripOuterArray":"false","desireTaskConcurrentNum":"1","maxErrorNum":"1000","maxFilterRatio":"1.0","maxBatchRows":"200000"}
DataSourceProperties: {"topic":"starrocks-load","currentKafkaPartitions":"0","brokerList":"localhost:9092"}
    CustomProperties: {}
           Statistic: {"receivedBytes":150821770,"errorRows":122,"committedTaskNum":12,"loadedRows":2399878,"loadRowsRate":199000,"abortedTaskNum":1,"totalRows":2400000,"unselectedRows":0,"receivedBytesRate":12523000,"taskExecuteTimeMs":12043}
            Progress: {"0":"13634667"}
ReasonOfStateChanged:
        ErrorLogUrls: http://w0:8040/api/_load_error_log?file=error_log_a.log, http://w1:8040/api/_load_error_log?file=error_log_b.log
            OtherMsg:
LatestSourcePosition: {"0":"13634672"}
                 Lag: {"0":5}
"#;
    assert_eq!(out, want, "got:\n{out}");
}

#[test]
fn show_fields_follow_the_spec() {
    let base = job(WIKIPEDIA_JOB);
    type Edit = fn(&mut RoutineLoadJob);
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "WHERE and PARTITION",
            |j| {
                j.spec.where_expr = Some("delta > 0".into());
                j.spec.partitions = vec!["dt=2024-05-01".into(), "dt=2024-05-02".into()];
            },
            r#""partitions":"dt=2024-05-01,dt=2024-05-02","#,
        ),
        (
            "WHERE",
            |j| j.spec.where_expr = Some("delta > 0".into()),
            r#""whereExpr":"delta > 0""#,
        ),
        (
            "json options",
            |j| {
                j.spec.format = DataFormat::Json;
                j.spec.column_separator = None;
                j.spec.json_paths = Some(vec!["$.a".into(), "$.b".into()]);
                j.spec.json_root = Some("$.data".into());
                j.spec.strip_outer_array = Some(true);
            },
            r#""format":"json","columnSeparator":"'\t'","jsonPaths":"[\"$.a\",\"$.b\"]","maxBatchSizeBytes":"104857600","currentTaskConcurrentNum":"1","strictMode":"true","jsonRoot":"$.data","stripOuterArray":"true""#,
        ),
        (
            "kafka properties, default offset and credentials",
            |j| {
                j.spec
                    .kafka
                    .properties
                    .insert("security.protocol".into(), "SSL".into());
                j.spec.kafka.default_offset = Some(routine_load_api::job::KafkaOffset::Beginning);
                j.spec.kafka.credentials_secret =
                    Some(routine_load_api::table::SecretReference { name: "kc".into() });
            },
            r#"    CustomProperties: {"security.protocol":"SSL","kafka_default_offsets":"OFFSET_BEGINNING","credentialsSecret":"kc"}"#,
        ),
        (
            "paused with a reason",
            |j| {
                let s = j.status.as_mut().unwrap();
                s.state = Some(JobState::Paused);
                s.pause_time = Some(Time("2020-05-16T17:00:00Z".parse().unwrap()));
                s.reason_of_state_changed = Some("paused by user (spec.state: Paused)".into());
            },
            "           PauseTime: 2020-05-16 17:00:00\n             EndTime: N/A\n              DbName: load-test\n           TableName: routine-wiki-edit\n               State: PAUSED\n",
        ),
        (
            "reason",
            |j| {
                j.status.as_mut().unwrap().reason_of_state_changed =
                    Some("paused by user (spec.state: Paused)".into());
            },
            "ReasonOfStateChanged: paused by user (spec.state: Paused)\n",
        ),
        (
            "no status yet",
            |j| j.status = None,
            "               State: NEED_SCHEDULE\n",
        ),
        (
            "no status: CreateTime from the object",
            |j| j.status = None,
            "          CreateTime: 2020-05-16 16:00:47\n",
        ),
        (
            "no status: OtherMsg says so",
            |j| j.status = None,
            "            OtherMsg: the operator has not reported on this job yet\n",
        ),
        (
            "a spec edit not observed yet",
            |j| j.metadata.generation = Some(2),
            "OtherMsg: spec generation 2 not yet observed by the operator (status is for 1)\n",
        ),
        (
            "partitions sort numerically",
            |j| {
                let s = j.status.as_mut().unwrap();
                s.progress = [("10".to_string(), 1), ("2".to_string(), 2)].into();
                s.lag.clear();
            },
            "            Progress: {\"2\":\"2\",\"10\":\"1\"}\n",
        ),
    ];
    for (name, edit, want) in cases {
        let mut j = base.clone();
        edit(&mut j);
        let out = show_job(&j, 1, Clock::Utc);
        assert!(out.contains(want), "{name}: wanted {want}\ngot:\n{out}");
    }
    // Without lag, neither LatestSourcePosition nor Lag is printed.
    let mut j = base.clone();
    j.status.as_mut().unwrap().lag.clear();
    let out = show_job(&j, 1, Clock::Utc);
    assert!(
        !out.contains("Lag") && !out.contains("LatestSourcePosition"),
        "{out}"
    );
}

#[test]
fn show_jobs_numbers_rows_and_counts() {
    let j = job(WIKIPEDIA_JOB);
    let out = show_jobs(&[j.clone(), j], Clock::Utc, 0.0123);
    assert!(out.contains("*************************** 1. row ***************************\n"));
    assert!(out.contains("*************************** 2. row ***************************\n"));
    assert!(out.ends_with("2 rows in set (0.01 sec)\n"), "{out}");
    assert_eq!(show_jobs(&[], Clock::Utc, 0.0), "Empty set (0.00 sec)\n");
}

const TASK: &str = r#"
apiVersion: routineload.io/v1alpha1
kind: RoutineLoadTask
metadata:
  name: routine-load-wikipedia-0
  namespace: load-test
  creationTimestamp: "2020-05-16T16:00:49Z"
spec: {job: routine-load-wikipedia, jobUid: 7c6e-14093, partitions: [0, 1], worker: worker-0, epoch: 3}
status:
  epoch: 3
  committedOffsets: {"0": 25, "1": 30}
  lag: {"0": 0, "1": 2}
  lastCommitVersion: 7
  lastCommitTime: "2020-05-16T16:01:00Z"
  heartbeatTime: "2020-05-16T16:01:02Z"
  loadedRows: 55
"#;

fn task(yaml: &str) -> RoutineLoadTask {
    serde_yaml::from_str(yaml).expect("task yaml")
}

#[test]
fn task_rows_follow_show_routine_load_task() {
    let j = job(WIKIPEDIA_JOB);
    type Edit = fn(&mut RoutineLoadTask);
    let cases: Vec<(&str, Edit, [&str; 11])> = vec![
        (
            "committed",
            |_| {},
            [
                "routine-load-wikipedia-0",
                "7",
                "COMMITTED",
                "7c6e-14093",
                "2020-05-16 16:00:49",
                "2020-05-16 16:01:02",
                "2020-05-16 16:01:00",
                "10",
                "worker-0",
                r#"{"0":25,"1":30}"#,
                r#"epoch 3; lag {"0":0,"1":2}"#,
            ],
        ),
        (
            "committed, with the batch's label",
            |t| {
                t.status.as_mut().unwrap().last_commit_label =
                    Some("wikipedia-7c6e-e3-19a.0-batch-4".into());
            },
            [
                "routine-load-wikipedia-0",
                "7",
                "COMMITTED",
                "7c6e-14093",
                "2020-05-16 16:00:49",
                "2020-05-16 16:01:02",
                "2020-05-16 16:01:00",
                "10",
                "worker-0",
                r#"{"0":25,"1":30}"#,
                r#"epoch 3; label wikipedia-7c6e-e3-19a.0-batch-4; lag {"0":0,"1":2}"#,
            ],
        ),
        (
            "not picked up yet",
            |t| t.status = None,
            [
                "routine-load-wikipedia-0",
                "-1",
                "UNKNOWN",
                "7c6e-14093",
                "2020-05-16 16:00:49",
                "N/A",
                "N/A",
                "10",
                "worker-0",
                r#"{"0":-1,"1":-1}"#,
                "epoch 3",
            ],
        ),
        (
            "reassigned, new worker not reporting yet",
            |t| {
                t.spec.epoch = 4;
                t.spec.worker = "worker-1".into();
                let s = t.status.as_mut().unwrap();
                s.last_commit_version = None;
                s.lag.clear();
                s.message = Some("consuming".into());
            },
            [
                "routine-load-wikipedia-0",
                "-1",
                "UNKNOWN",
                "7c6e-14093",
                "2020-05-16 16:00:49",
                "2020-05-16 16:01:02",
                "2020-05-16 16:01:00",
                "10",
                "worker-1",
                r#"{"0":25,"1":30}"#,
                "epoch 4; worker reported epoch 3; consuming",
            ],
        ),
        (
            "running, no commit yet, error window",
            |t| {
                let s = t.status.as_mut().unwrap();
                s.last_commit_version = None;
                s.lag.clear();
                s.error_window_exceeded = Some("too many error rows".into());
            },
            [
                "routine-load-wikipedia-0",
                "-1",
                "PREPARE",
                "7c6e-14093",
                "2020-05-16 16:00:49",
                "2020-05-16 16:01:02",
                "2020-05-16 16:01:00",
                "10",
                "worker-0",
                r#"{"0":25,"1":30}"#,
                "epoch 3; too many error rows",
            ],
        ),
    ];
    for (name, edit, want) in cases {
        let mut t = task(TASK);
        edit(&mut t);
        let rows = task_rows(Some(&j), &[t], Clock::Utc);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0], want, "{name}");
    }
}

#[test]
fn task_table_renders_like_the_mysql_client() {
    let j = job(WIKIPEDIA_JOB);
    let mut t2 = task(TASK);
    t2.metadata.name = Some("routine-load-wikipedia-1".into());
    t2.spec.partitions = vec![2];
    t2.status = None;
    // Sorted by first partition whatever the list order.
    let out = show_tasks(Some(&j), &[t2, task(TASK)], Clock::Utc, 0.0);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("+--------------------------+"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("| TaskId                   | TxnId | TxnStatus | JobId      |"),
        "{out}"
    );
    assert!(
        lines[3].starts_with("| routine-load-wikipedia-0 | 7     | COMMITTED |"),
        "{out}"
    );
    assert!(
        lines[4].starts_with("| routine-load-wikipedia-1 | -1    | UNKNOWN   |"),
        "{out}"
    );
    assert_eq!(lines[5], lines[0]);
    assert_eq!(lines[6], "2 rows in set (0.00 sec)");
    let widths: Vec<usize> = lines[..6].iter().map(|l| l.chars().count()).collect();
    assert!(widths.iter().all(|w| *w == widths[0]), "aligned: {out}");
    assert_eq!(
        show_tasks(Some(&j), &[], Clock::Utc, 0.0),
        "Empty set (0.00 sec)\n"
    );
}
