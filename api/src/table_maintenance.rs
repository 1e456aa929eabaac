//! Compaction and vacuum of a `Table`'s Delta files, run by the operator.
//!
//! Every batch commit writes new files, and a merge into a keyed table rewrites the files its
//! keys touch, so a table loaded every few seconds gathers many small files: readers open all of
//! them. Compaction (Delta OPTIMIZE) rewrites the small files into files of about the target
//! size in one commit marked `dataChange: false`: the rows, the table's schema and the
//! transaction identifiers that record the jobs' Kafka offsets stay as they were, so loading
//! goes on where it was, and streaming readers skip the commit. A compaction that races a
//! merge which rewrote one of its files is refused by Delta's conflict check and tried again
//! later; the merge, likewise, runs again on the new version.
//!
//! Vacuum then deletes the files that left the table longer ago than the retention: time travel
//! to versions before it no longer works, and a reader still scanning such a version fails. It
//! also deletes data files the table never referenced (written for a commit that never came)
//! once they are older than the retention and [`ORPHAN_MIN_AGE_HOURS`].

use std::num::NonZeroU64;

use deltalake::operations::vacuum::VacuumMode;
use deltalake::{DeltaTable, DeltaTableError};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::table::{MaintenanceStatus, TableMaintenance};

/// Whether a compaction runs now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// Not now.
    No,
    /// The schedule says so.
    Scheduled,
    /// The `routineload.io/compact` annotation asks, with this value.
    Requested(String),
}

/// Pure: whether a compaction is due at `now`. `request` is the annotation's value, `since` when
/// the schedule counts from if the table was never compacted (its creation).
pub fn due(
    spec: &TableMaintenance,
    status: Option<&MaintenanceStatus>,
    request: Option<&str>,
    since: Timestamp,
    now: Timestamp,
) -> Due {
    if let Some(r) = request
        && status.and_then(|s| s.compact_request.as_deref()) != Some(r)
    {
        return Due::Requested(r.to_string());
    }
    if spec.compact_interval_minutes == 0 {
        return Due::No;
    }
    let last = status
        .and_then(|s| s.last_compaction_time.as_ref())
        .map_or(since, |t| t.0);
    let interval = SignedDuration::from_mins(i64::from(spec.compact_interval_minutes));
    let next = last.checked_add(interval).unwrap_or(now);
    if now >= next { Due::Scheduled } else { Due::No }
}

/// What one compaction and vacuum did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compacted {
    pub files_removed: u64,
    pub files_added: u64,
    /// The version compaction committed; `None`: there was nothing to compact.
    pub version: Option<i64>,
    pub files_vacuumed: u64,
}

/// Compacts `table` towards `target_file_size_mb` files, then vacuums files that left it more
/// than `vacuum_retention` ago (`None`: no vacuum). One file is rewritten at a time, to bound
/// the memory it takes.
pub async fn compact_and_vacuum(
    table: DeltaTable,
    target_file_size_mb: u32,
    vacuum_retention: Option<chrono::Duration>,
) -> Result<Compacted, DeltaTableError> {
    let before = table.version();
    let target = NonZeroU64::new(u64::from(target_file_size_mb.max(1)) * 1024 * 1024)
        .unwrap_or(NonZeroU64::MIN);
    let (table, metrics) = table
        .optimize()
        .with_target_size(target)
        .with_max_concurrent_tasks(1)
        .await?;
    let mut out = Compacted {
        files_removed: metrics.num_files_removed,
        files_added: metrics.num_files_added,
        version: (table.version() != before).then(|| table.version().map_or(-1, |v| v as i64)),
        files_vacuumed: 0,
    };
    if let Some(retention) = vacuum_retention {
        let mut table = table;
        for (mode, older_than) in vacuum_passes(retention) {
            let (t, vacuumed) = table
                .vacuum()
                .with_mode(mode)
                .with_retention_period(older_than)
                .with_enforce_retention_duration(false)
                .await?;
            table = t;
            out.files_vacuumed += vacuumed.files_deleted.len() as u64;
        }
    }
    Ok(out)
}

/// How old a data file the table never referenced is before vacuum deletes it, in hours: such
/// files are written before a commit that never came (a Stream Load that failed or was cut off,
/// a batch whose commit failed), and also by a Stream Load still running, which may take up to
/// its longest timeout (3 days, StarRocks `max_stream_load_timeout_second`): a day more.
pub const ORPHAN_MIN_AGE_HOURS: i64 = 96;

/// The vacuum passes for a retention: files removed from the table longer ago than the
/// retention (Delta's lite vacuum), and files the table never referenced once older than both
/// the retention and [`ORPHAN_MIN_AGE_HOURS`] (a full vacuum, which does the first too).
pub fn vacuum_passes(retention: chrono::Duration) -> Vec<(VacuumMode, chrono::Duration)> {
    let floor = chrono::Duration::hours(ORPHAN_MIN_AGE_HOURS);
    if retention >= floor {
        vec![(VacuumMode::Full, retention)]
    } else {
        vec![(VacuumMode::Lite, retention), (VacuumMode::Full, floor)]
    }
}

/// The vacuum retention a spec asks for (`None`: no vacuum).
pub fn vacuum_retention(spec: &TableMaintenance) -> Option<chrono::Duration> {
    (spec.vacuum_retention_hours > 0)
        .then(|| chrono::Duration::hours(i64::from(spec.vacuum_retention_hours)))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use deltalake::arrow::array::Int64Array;
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use deltalake::arrow::record_batch::RecordBatch;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::delta_table;
    use crate::table::TableSpec;

    fn at(minutes: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + minutes * 60).unwrap()
    }

    #[test]
    fn files_never_referenced_are_kept_longer_than_a_load_may_run() {
        let h = chrono::Duration::hours;
        // (retention, passes)
        let cases = [
            (
                h(1),
                vec![(VacuumMode::Lite, h(1)), (VacuumMode::Full, h(96))],
            ),
            (
                h(95),
                vec![(VacuumMode::Lite, h(95)), (VacuumMode::Full, h(96))],
            ),
            (h(96), vec![(VacuumMode::Full, h(96))]),
            (h(168), vec![(VacuumMode::Full, h(168))]),
        ];
        for (retention, want) in cases {
            assert_eq!(vacuum_passes(retention), want, "{retention}");
        }
        let longest_load = chrono::Duration::seconds(crate::load::MAX_TIMEOUT_SECS as i64);
        assert!(h(ORPHAN_MIN_AGE_HOURS) > longest_load);
    }

    #[test]
    fn a_compaction_is_due_on_schedule_or_on_request() {
        let every = |m: u32| TableMaintenance {
            compact_interval_minutes: m,
            ..TableMaintenance::default()
        };
        let done = |minute: i64, request: Option<&str>| MaintenanceStatus {
            last_compaction_time: Some(Time(at(minute))),
            compact_request: request.map(str::to_string),
            ..MaintenanceStatus::default()
        };
        // (case, spec, status, annotation, now (minutes), expected)
        type Case<'a> = (
            &'a str,
            TableMaintenance,
            Option<MaintenanceStatus>,
            Option<&'a str>,
            i64,
            Due,
        );
        let cases: Vec<Case> = vec![
            (
                "never compacted: counted from creation",
                every(60),
                None,
                None,
                30,
                Due::No,
            ),
            (
                "never compacted, an interval after creation",
                every(60),
                None,
                None,
                60,
                Due::Scheduled,
            ),
            (
                "an interval after the last",
                every(60),
                Some(done(100, None)),
                None,
                160,
                Due::Scheduled,
            ),
            (
                "within the interval",
                every(60),
                Some(done(100, None)),
                None,
                130,
                Due::No,
            ),
            (
                "no schedule",
                every(0),
                Some(done(100, None)),
                None,
                10_000,
                Due::No,
            ),
            (
                "a request, though not due",
                every(60),
                Some(done(100, None)),
                Some("now-1"),
                101,
                Due::Requested("now-1".into()),
            ),
            (
                "a request answered already",
                every(0),
                Some(done(100, Some("now-1"))),
                Some("now-1"),
                101,
                Due::No,
            ),
            (
                "a new request",
                every(0),
                Some(done(100, Some("now-1"))),
                Some("now-2"),
                101,
                Due::Requested("now-2".into()),
            ),
        ];
        for (case, spec, status, request, now, want) in cases {
            assert_eq!(
                due(&spec, status.as_ref(), request, at(0), at(now)),
                want,
                "{case}"
            );
        }
    }

    /// Many small appends compacted into one file: the same rows, the offsets' transaction
    /// identifiers kept; vacuum then deletes the replaced files, and a data file the table never
    /// referenced once it is old enough.
    #[tokio::test]
    async fn compaction_keeps_rows_and_offsets_and_vacuum_deletes_the_replaced_files() {
        let dir = std::env::temp_dir().join(format!(
            "rl-compact-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let loc = format!("file://{}", dir.display());
        let spec: TableSpec = serde_yaml::from_str(&format!(
            "location: {loc}\ncolumns:\n  - {{name: id, type: BIGINT}}\n"
        ))
        .unwrap();
        delta_table::create_or_adopt(&loc, &spec, HashMap::new())
            .await
            .unwrap();
        let mut table = delta_table::open(&loc, HashMap::new()).await.unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        for i in 0..5i64 {
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int64Array::from(vec![i * 10, i * 10 + 1]))],
            )
            .unwrap();
            let txn = deltalake::kernel::Transaction::new("routine-load-job-0", i + 1);
            table = table
                .write(vec![batch])
                .with_commit_properties(
                    deltalake::kernel::transaction::CommitProperties::default()
                        .with_application_transactions(vec![txn]),
                )
                .await
                .unwrap();
        }
        let files = |t: &DeltaTable| t.get_file_uris().unwrap().count();
        assert_eq!(files(&table), 5);
        let parquet_on_disk = || {
            std::fs::read_dir(&dir)
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .ends_with(".parquet")
                })
                .count()
        };
        assert_eq!(parquet_on_disk(), 5);
        // Files the table never referenced (a load's files whose commit never came): one
        // written 5 days ago, one just now (a load that may still commit it).
        let a_file = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| Some(e.ok()?.path()))
            .find(|p| p.extension().is_some_and(|x| x == "parquet"))
            .unwrap();
        let (old_orphan, new_orphan) = (
            dir.join("orphan-old.parquet"),
            dir.join("orphan-new.parquet"),
        );
        for orphan in [&old_orphan, &new_orphan] {
            std::fs::copy(&a_file, orphan).unwrap();
        }
        std::fs::File::options()
            .write(true)
            .open(&old_orphan)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(5 * 86400))
            .unwrap();

        let done = compact_and_vacuum(table, 128, Some(chrono::Duration::zero()))
            .await
            .unwrap();
        assert_eq!((done.files_removed, done.files_added), (5, 1), "{done:?}");
        assert_eq!(done.files_vacuumed, 6, "{done:?}");
        assert!(
            !old_orphan.exists(),
            "a file never referenced for 5 days is gone"
        );
        assert!(
            new_orphan.exists(),
            "a file a running load may still commit is kept"
        );
        std::fs::remove_file(&new_orphan).unwrap();
        assert_eq!(parquet_on_disk(), 1, "the replaced files are gone");
        let table = delta_table::open(&loc, HashMap::new()).await.unwrap();
        assert_eq!(files(&table), 1);
        // Versions 1-5 the appends, 6 the compaction (vacuum records its start and end after).
        assert_eq!(done.version, Some(6), "{done:?}");
        assert!(table.version().unwrap() as i64 >= 6);
        let txn = table
            .snapshot()
            .unwrap()
            .transaction_version(table.log_store().as_ref(), "routine-load-job-0")
            .await
            .unwrap();
        assert_eq!(txn, Some(5), "the offsets' transaction identifier is kept");
        let ctx = deltalake::datafusion::prelude::SessionContext::new();
        table.update_datafusion_session(&ctx.state()).unwrap();
        let provider = table.table_provider().await.unwrap();
        let rows: usize = ctx
            .read_table(provider)
            .unwrap()
            .collect()
            .await
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum();
        assert_eq!(rows, 10, "the same rows");
        // Nothing left to compact: no commit.
        let again = compact_and_vacuum(table, 128, None).await.unwrap();
        assert_eq!(again.version, None, "{again:?}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
