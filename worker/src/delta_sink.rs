//! Exactly-once Delta commits for one task: the committed Kafka offsets live in the table as
//! Delta transaction identifiers (app id = `transaction_app_id(job_uid, partition)`, version =
//! next offset to load), and every batch is one Delta version carrying its data files and the
//! new offsets together.
//!
//! delta-rs rejects a commit that races another writer on the same app ids
//! (`ConcurrentTransaction`), but accepts one that repeats an already-recorded version when it is
//! built on a fresh snapshot. So [`DeltaSink::commit`] first checks, on the snapshot the commit is
//! built on, that every partition's recorded version is the offset the batch resumed from.

use std::collections::{BTreeMap, HashMap};

use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake::kernel::{Action, Transaction};
use deltalake::protocol::{DeltaOperation, OutputMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableError};
use routine_load_api::delta_table;
use routine_load_api::names::transaction_app_id;

/// Committed offsets per Kafka partition: the next offset to load, or `None` when the table has
/// no transaction identifier for the partition yet.
pub type Offsets = BTreeMap<i32, Option<i64>>;

/// Default number of commits between checkpoints.
pub const DEFAULT_CHECKPOINT_INTERVAL: u64 = 100;

/// Why a batch was not committed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Another writer advanced (or is advancing) one of our partitions: drop the batch and
    /// re-read the offsets.
    #[error("commit conflict: {0}")]
    Conflict(String),
    /// Any other failure (storage, Parquet, protocol). Whether the commit landed is unknown, so
    /// the caller must also re-read the offsets before loading again.
    #[error(transparent)]
    Delta(#[from] DeltaTableError),
    #[error(transparent)]
    Setup(#[from] delta_table::DeltaTableSetupError),
}

/// A committed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The Delta version holding the batch.
    pub version: i64,
    /// Number of data files written.
    pub files: usize,
}

/// The Delta side of one task.
pub struct DeltaSink {
    table: DeltaTable,
    job_uid: String,
    partitions: Vec<i32>,
    checkpoint_interval: u64,
    commits_since_checkpoint: u64,
    query_id: String,
    epoch: i64,
}

impl DeltaSink {
    /// Opens the table at `location` for the given job and partitions.
    pub async fn open(
        location: &str,
        storage_options: HashMap<String, String>,
        job_uid: &str,
        partitions: &[i32],
        epoch: i64,
    ) -> Result<Self, SinkError> {
        let table = delta_table::open(location, storage_options).await?;
        Ok(Self {
            table,
            job_uid: job_uid.to_string(),
            partitions: partitions.to_vec(),
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            commits_since_checkpoint: 0,
            query_id: format!("routine-load-{job_uid}"),
            epoch,
        })
    }

    /// Sets the number of commits between checkpoints (0 disables checkpoints).
    pub fn with_checkpoint_interval(mut self, commits: u64) -> Self {
        self.checkpoint_interval = commits;
        self
    }

    /// The table's current version in this sink's snapshot.
    pub fn version(&self) -> i64 {
        self.table.version().map_or(-1, |v| v as i64)
    }

    /// Loads the latest table version and returns the committed offsets in it.
    pub async fn refresh(&mut self) -> Result<Offsets, SinkError> {
        self.table.update_state().await?;
        self.offsets().await
    }

    /// The committed offsets in the sink's current snapshot (no I/O beyond the snapshot's
    /// transaction scan).
    pub async fn offsets(&self) -> Result<Offsets, SinkError> {
        let snapshot = self.table.snapshot()?;
        let log_store = self.table.log_store();
        let mut out = BTreeMap::new();
        for &p in &self.partitions {
            let v = snapshot
                .transaction_version(log_store.as_ref(), transaction_app_id(&self.job_uid, p))
                .await?;
            out.insert(p, v);
        }
        Ok(out)
    }

    /// Writes `batch` as Parquet and commits one Delta version carrying it and, per partition,
    /// the next offset to load. `resumed_from` is what [`refresh`](Self::refresh) returned when
    /// the batch started; `next` the offsets after the batch's last message per partition.
    ///
    /// The check that the snapshot still records `resumed_from` happens on the snapshot the
    /// commit is built on; a concurrent commit after that snapshot is refused by delta-rs'
    /// conflict checker. On any error the caller must drop the batch and call `refresh`.
    pub async fn commit(
        &mut self,
        batch: Option<RecordBatch>,
        resumed_from: &Offsets,
        next: &BTreeMap<i32, i64>,
    ) -> Result<Committed, SinkError> {
        let current = self.offsets().await?;
        for (p, want) in resumed_from {
            let have = current.get(p).copied().flatten();
            if have != *want {
                return Err(SinkError::Conflict(format!(
                    "partition {p}: the table records offset {} but this batch resumed from {}",
                    fmt_offset(have),
                    fmt_offset(*want)
                )));
            }
        }
        let mut actions = Vec::new();
        if let Some(batch) = batch.filter(|b| b.num_rows() > 0) {
            let mut writer = RecordBatchWriter::for_table(&self.table)?;
            writer.write(batch).await?;
            actions.extend(writer.flush().await?.into_iter().map(Action::Add));
        }
        let files = actions.len();
        let txns: Vec<Transaction> = next
            .iter()
            .map(|(p, o)| Transaction::new(transaction_app_id(&self.job_uid, *p), *o))
            .collect();
        let props = CommitProperties::default()
            .with_application_transactions(txns)
            .with_create_checkpoint(false);
        let operation = DeltaOperation::StreamingUpdate {
            output_mode: OutputMode::Append,
            query_id: self.query_id.clone(),
            epoch_id: self.epoch,
        };
        let result = CommitBuilder::from(props)
            .with_actions(actions)
            .build(
                Some(self.table.snapshot()?),
                self.table.log_store(),
                operation,
            )
            .await;
        let finalized = match result {
            Ok(f) => f,
            Err(DeltaTableError::Transaction { source }) => {
                return Err(match source {
                    e @ (TransactionError::CommitConflict(_)
                    | TransactionError::VersionAlreadyExists(_)
                    | TransactionError::MaxCommitAttempts(_)) => SinkError::Conflict(e.to_string()),
                    e => SinkError::Delta(DeltaTableError::Transaction { source: e }),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let version = finalized.version as i64;
        self.table.state = Some(finalized.snapshot);
        self.commits_since_checkpoint += 1;
        if self.checkpoint_interval > 0 && self.commits_since_checkpoint >= self.checkpoint_interval
        {
            self.commits_since_checkpoint = 0;
            // A failed checkpoint only makes reads slower; the commit stands.
            if let Err(e) = deltalake::checkpoints::create_checkpoint(&self.table, None).await {
                tracing::warn!(error = %e, version, "checkpoint failed");
            }
        }
        Ok(Committed { version, files })
    }
}

fn fmt_offset(o: Option<i64>) -> String {
    o.map_or_else(|| "none".to_string(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::array::{Int64Array, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use routine_load_api::table::{DeletionPolicy, TableColumn, TableSpec};

    use super::*;

    fn temp_location(name: &str) -> (std::path::PathBuf, String) {
        let dir = std::env::temp_dir().join(format!(
            "rl-sink-{name}-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let loc = format!("file://{}", dir.display());
        (dir, loc)
    }

    fn spec(location: &str) -> TableSpec {
        let col = |n: &str, t: &str| TableColumn {
            name: n.into(),
            column_type: t.into(),
            nullable: true,
            default: None,
            comment: None,
        };
        TableSpec {
            columns: vec![col("id", "BIGINT"), col("name", "STRING")],
            partition_columns: vec![],
            location: location.into(),
            credentials_secret: None,
            deletion_policy: DeletionPolicy::Retain,
            comment: None,
        }
    }

    fn batch(ids: std::ops::Range<i64>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        let names: Vec<String> = ids.clone().map(|i| format!("n{i}")).collect();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(ids)),
                Arc::new(StringArray::from_iter_values(names)),
            ],
        )
        .unwrap()
    }

    async fn row_count(sink: &DeltaSink) -> i64 {
        let snap = sink.table.snapshot().unwrap();
        let mut n = 0;
        for f in snap.log_data() {
            n += f.num_records().unwrap_or(0) as i64;
        }
        n
    }

    #[tokio::test]
    async fn offsets_round_trip_and_stale_writer_is_refused() {
        let (dir, loc) = temp_location("rt");
        delta_table::create_or_adopt(&loc, &spec(&loc), HashMap::new())
            .await
            .unwrap();
        let mut a = DeltaSink::open(&loc, HashMap::new(), "uid1", &[0, 1], 1)
            .await
            .unwrap()
            .with_checkpoint_interval(2);
        let start = a.refresh().await.unwrap();
        assert_eq!(start, BTreeMap::from([(0, None), (1, None)]));

        // First batch: partition 0 offsets 0..10, partition 1 0..5.
        let next = BTreeMap::from([(0, 10), (1, 5)]);
        let c = a.commit(Some(batch(0..15)), &start, &next).await.unwrap();
        assert_eq!(c.version, 1);
        let after = a.refresh().await.unwrap();
        assert_eq!(after, BTreeMap::from([(0, Some(10)), (1, Some(5))]));

        // A stale writer that read the offsets before the first commit is refused, even when it
        // builds on a fresh snapshot (the check delta-rs doesn't do).
        let mut stale = DeltaSink::open(&loc, HashMap::new(), "uid1", &[0, 1], 0)
            .await
            .unwrap();
        stale.refresh().await.unwrap();
        let err = stale
            .commit(Some(batch(0..15)), &start, &next)
            .await
            .unwrap_err();
        assert!(matches!(err, SinkError::Conflict(_)), "{err}");
        assert!(err.to_string().contains("resumed from none"), "{err}");

        // A stale writer whose snapshot predates a concurrent commit is refused by delta-rs.
        let mut b = DeltaSink::open(&loc, HashMap::new(), "uid1", &[0, 1], 2)
            .await
            .unwrap();
        let b_from = b.refresh().await.unwrap();
        let next2 = BTreeMap::from([(0, 20), (1, 5)]);
        a.commit(Some(batch(15..25)), &after, &next2).await.unwrap();
        let err = b
            .commit(Some(batch(15..25)), &b_from, &next2)
            .await
            .unwrap_err();
        assert!(matches!(err, SinkError::Conflict(_)), "{err}");

        // Another job's app ids are independent.
        let mut other = DeltaSink::open(&loc, HashMap::new(), "uid2", &[0], 1)
            .await
            .unwrap();
        let o = other.refresh().await.unwrap();
        assert_eq!(o, BTreeMap::from([(0, None)]));
        other
            .commit(None, &o, &BTreeMap::from([(0, 3)]))
            .await
            .unwrap();

        let mut check = DeltaSink::open(&loc, HashMap::new(), "uid1", &[0, 1], 9)
            .await
            .unwrap();
        assert_eq!(
            check.refresh().await.unwrap(),
            BTreeMap::from([(0, Some(20)), (1, Some(5))])
        );
        assert_eq!(row_count(&check).await, 25, "no duplicate rows");
        // Checkpoint interval 2: a checkpoint was written at the second commit.
        assert!(dir.join("_delta_log/_last_checkpoint").exists());
        std::fs::remove_dir_all(&dir).ok();
    }
}
