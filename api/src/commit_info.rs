//! The routine-load entry of a Delta commit's `commitInfo` (`commitInfo.routineLoad`): who
//! committed the batch (job, task, task UID, epoch, worker), its label and what it counted.
//!
//! Written by the workers with every batch commit; read back by a worker resuming a task (to
//! count the batches an earlier loop committed but did not report) and by the operator for a
//! task it let go without its worker's last word.

use deltalake::{DeltaTable, DeltaTableError};
use serde_json::Value;

use crate::task::TaskCounters;

/// Key of the routine-load entry in a commit's `commitInfo`.
pub const COMMIT_INFO_KEY: &str = "routineLoad";

/// The routine-load entry of a commit file (newline-delimited JSON actions), if it has one.
pub fn routine_load_info(commit: &[u8]) -> Option<Value> {
    commit.split(|b| *b == b'\n').find_map(|line| {
        let mut v = serde_json::from_slice::<Value>(line).ok()?;
        v.pointer_mut(&format!("/commitInfo/{COMMIT_INFO_KEY}"))
            .map(Value::take)
    })
}

/// The `counters` entry a batch commit records: its rows and bytes (read back by
/// [`batch_counters`]).
pub fn counters_entry(c: &TaskCounters) -> Value {
    serde_json::json!({
        "totalRows": c.total_rows,
        "loadedRows": c.loaded_rows,
        "errorRows": c.error_rows,
        "unselectedRows": c.unselected_rows,
        "receivedBytes": c.received_bytes,
    })
}

/// The counters a batch commit recorded: one committed batch with its rows and bytes. `None`
/// for a commit that carries no batch (offsets only, or not a routine-load commit).
pub fn batch_counters(info: &Value) -> Option<TaskCounters> {
    let c = info.get("counters")?;
    let n = |k: &str| c[k].as_i64().unwrap_or(0);
    Some(TaskCounters {
        received_bytes: n("receivedBytes"),
        total_rows: n("totalRows"),
        loaded_rows: n("loadedRows"),
        error_rows: n("errorRows"),
        unselected_rows: n("unselectedRows"),
        committed_batches: 1,
        aborted_batches: 0,
        execute_time_ms: 0,
    })
}

/// The task UID a commit's entry names.
pub fn task_uid(info: &Value) -> Option<&str> {
    info["taskUid"].as_str()
}

/// The routine-load entries of the table's commits `first..=last` (versions without a commit
/// file, or without an entry, are left out), oldest first.
pub async fn read_commits(
    table: &DeltaTable,
    first: i64,
    last: i64,
) -> Result<Vec<(i64, Value)>, DeltaTableError> {
    let log_store = table.log_store();
    let mut out = Vec::new();
    for version in first.max(0)..=last {
        let Some(bytes) = log_store.read_commit_entry(version as u64).await? else {
            continue;
        };
        if let Some(info) = routine_load_info(&bytes) {
            out.push((version, info));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_file_gives_its_entry_and_counters() {
        // (case, commit file, expected task uid, expected counters)
        let cases: Vec<(&str, String, Option<&str>, Option<TaskCounters>)> = vec![
            (
                "a batch commit",
                [
                    r#"{"add":{"path":"a.parquet"}}"#,
                    r#"{"commitInfo":{"operation":"WRITE","routineLoad":{"taskUid":"u1","label":"l","counters":{"totalRows":5,"loadedRows":3,"errorRows":1,"unselectedRows":1,"receivedBytes":70}}}}"#,
                ]
                .join("\n"),
                Some("u1"),
                Some(TaskCounters {
                    received_bytes: 70,
                    total_rows: 5,
                    loaded_rows: 3,
                    error_rows: 1,
                    unselected_rows: 1,
                    committed_batches: 1,
                    ..TaskCounters::default()
                }),
            ),
            (
                "an offsets-only commit",
                r#"{"commitInfo":{"routineLoad":{"taskUid":"u2"}}}"#.to_string(),
                Some("u2"),
                None,
            ),
        ];
        for (case, file, uid, counters) in cases {
            let info = routine_load_info(file.as_bytes()).expect(case);
            assert_eq!(task_uid(&info), uid, "{case}");
            assert_eq!(batch_counters(&info), counters, "{case}");
        }
        assert!(
            routine_load_info(br#"{"commitInfo":{"operation":"OPTIMIZE"}}"#).is_none(),
            "a commit of another writer has no entry"
        );
        // What a commit writes reads back as the one batch it counted.
        let batch = TaskCounters {
            received_bytes: 9,
            total_rows: 4,
            loaded_rows: 2,
            error_rows: 1,
            unselected_rows: 1,
            committed_batches: 1,
            ..TaskCounters::default()
        };
        let info = serde_json::json!({ "counters": counters_entry(&batch) });
        assert_eq!(batch_counters(&info), Some(batch));
    }
}
