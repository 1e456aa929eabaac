//! Exactly-once Delta commits for one task: the committed Kafka offsets live in the table as
//! Delta transaction identifiers (app id = `transaction_app_id(job_uid, partition)`, version =
//! next offset to load), and every batch is one Delta version carrying its data files and the
//! new offsets together.
//!
//! delta-rs rejects a commit that races another writer on the same app ids
//! (`ConcurrentTransaction`), but accepts one that repeats an already-recorded version when it is
//! built on a fresh snapshot. So [`DeltaSink::commit`] first checks, on the snapshot the commit is
//! built on, that every partition's recorded version is the offset the batch resumed from.
//!
//! A keyed table (Primary, Unique: the model its Delta configuration records) takes each batch
//! as one MERGE on its keys instead of an append ([`upsert`]), with the same transaction
//! identifiers in the same commit.

mod upsert;

use std::collections::{BTreeMap, HashMap};

use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake::kernel::{Action, Add, Transaction};
use deltalake::protocol::{DeltaOperation, OutputMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableError};
use routine_load_api::delta_table;
use routine_load_api::names::{start_app_id, transaction_app_id};
use routine_load_api::table_model::KeyModel;

/// Committed offsets per Kafka partition: the next offset to load, or `None` when the table has
/// no transaction identifier for the partition yet.
pub type Offsets = BTreeMap<i32, Option<i64>>;

/// What the table records for one partition of the job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionRecord {
    /// The next offset to load, `None` before the partition's start is pinned.
    pub next: Option<i64>,
    /// Fingerprint of the configured start (`kafka.offsets` entry) the offset last came from.
    pub start: Option<i64>,
}

/// What the table records per partition.
pub type TableRecords = BTreeMap<i32, PartitionRecord>;

/// The next offsets of a set of records.
pub fn next_offsets(records: &TableRecords) -> Offsets {
    records.iter().map(|(p, r)| (*p, r.next)).collect()
}

pub use routine_load_api::commit_info::COMMIT_INFO_KEY;
use routine_load_api::commit_info::routine_load_info;

/// What one commit carries besides data: the offsets to record and the batch's identity.
#[derive(Debug, Clone, Default)]
pub struct CommitRequest {
    /// Per partition, the offset the batch resumed from (checked against the snapshot).
    pub resumed_from: Offsets,
    /// Per partition, the next offset to load after this commit.
    pub next: BTreeMap<i32, i64>,
    /// Per partition, the configured-start fingerprint to record (pins and moves).
    pub starts: BTreeMap<i32, i64>,
    /// The batch's label, unique per attempt: how an unknown outcome is resolved.
    pub label: String,
    /// Written into `commitInfo.routineLoad` with the label (job, task, counters).
    pub info: serde_json::Map<String, serde_json::Value>,
}

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
    /// MERGE runs it took (keyed tables; more than one when it conflicted with other writers);
    /// 0 for an append.
    pub merges: usize,
}

/// The Delta side of one task.
pub struct DeltaSink {
    table: DeltaTable,
    job_uid: String,
    partitions: Vec<i32>,
    checkpoint_interval: u64,
    commits_since_checkpoint: u64,
    /// Checkpoint after versions that are multiples of this (0: not by version).
    checkpoint_versions: u64,
    query_id: String,
    epoch: i64,
    /// The model the table's configuration records: appends for Duplicate, merges otherwise.
    key_model: KeyModel,
    /// How a row changes the stored row of its key (the job's partialUpdate and mergeCondition).
    update: routine_load_api::UpdateRule,
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
        Self::from_table(table, job_uid, partitions, epoch)
    }

    /// A sink on a table already loaded (by [`delta_table::create_or_adopt_loaded`]), for the
    /// given job and partitions.
    pub fn from_table(
        table: DeltaTable,
        job_uid: &str,
        partitions: &[i32],
        epoch: i64,
    ) -> Result<Self, SinkError> {
        let key_model = delta_table::recorded_model(&table).map_err(|e| {
            SinkError::Delta(DeltaTableError::Generic(format!(
                "reading the table's key model: {e}"
            )))
        })?;
        Ok(Self {
            table,
            job_uid: job_uid.to_string(),
            partitions: partitions.to_vec(),
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            commits_since_checkpoint: 0,
            checkpoint_versions: 0,
            query_id: format!("routine-load-{job_uid}"),
            epoch,
            key_model,
            update: Default::default(),
        })
    }

    /// Sets how a row changes the stored row of its key (the plan's [`UpdateRule`]; Primary
    /// tables only, which the plan checks).
    ///
    /// [`UpdateRule`]: routine_load_api::UpdateRule
    pub fn with_update_rule(mut self, update: routine_load_api::UpdateRule) -> Self {
        if !update.is_plain() {
            tracing::info!(
                updated_columns = ?update.updated_columns,
                merge_condition = ?update.merge_condition,
                "rows whose key exists update the stored row by the job's rule"
            );
        }
        self.update = update;
        self
    }

    /// Sets the number of commits between checkpoints (0 disables checkpoints).
    pub fn with_checkpoint_interval(mut self, commits: u64) -> Self {
        self.checkpoint_interval = commits;
        self
    }

    /// Writes a checkpoint after committing a version that is a multiple of `every` (0: never),
    /// for writers that open a sink per commit (a Stream Load), whose commit count restarts each
    /// time: without checkpoints every open replays more of the log.
    pub fn with_checkpoint_at_versions(mut self, every: u64) -> Self {
        self.checkpoint_versions = every;
        self
    }

    /// The Delta table at this sink's snapshot.
    pub fn table(&self) -> &DeltaTable {
        &self.table
    }

    /// The table's current version in this sink's snapshot.
    pub fn version(&self) -> i64 {
        self.table.version().map_or(-1, |v| v as i64)
    }

    /// Loads the latest table version and returns what it records for the partitions.
    pub async fn refresh(&mut self) -> Result<TableRecords, SinkError> {
        self.table.update_state().await?;
        self.records().await
    }

    /// What the sink's current snapshot records per partition (no I/O beyond the snapshot's
    /// transaction scan).
    pub async fn records(&self) -> Result<TableRecords, SinkError> {
        let snapshot = self.table.snapshot()?;
        let log_store = self.table.log_store();
        let mut out = BTreeMap::new();
        for &p in &self.partitions {
            let next = snapshot
                .transaction_version(log_store.as_ref(), transaction_app_id(&self.job_uid, p))
                .await?;
            let start = snapshot
                .transaction_version(log_store.as_ref(), start_app_id(&self.job_uid, p))
                .await?;
            out.insert(p, PartitionRecord { next, start });
        }
        Ok(out)
    }

    /// The committed offsets in the sink's current snapshot.
    pub async fn offsets(&self) -> Result<Offsets, SinkError> {
        Ok(next_offsets(&self.records().await?))
    }

    /// The `commitInfo.routineLoad` entries of the versions after `since` in the current
    /// snapshot, at most the last `max` of them, oldest first.
    pub async fn commit_infos_since(
        &self,
        since: i64,
        max: i64,
    ) -> Result<Vec<(i64, serde_json::Value)>, SinkError> {
        let latest = self.version();
        let first = (since + 1).max(latest - max + 1);
        Ok(routine_load_api::commit_info::read_commits(&self.table, first, latest).await?)
    }

    /// After a commit whose outcome is unknown (an error after the commit file may have been
    /// written): reads the table again and tells whether a version after `since` carries
    /// `label`, i.e. whether that very commit landed.
    pub async fn landed(&mut self, since: i64, label: &str) -> Result<Option<i64>, SinkError> {
        self.table.update_state().await?;
        let latest = self.version();
        let log_store = self.table.log_store();
        for version in (since + 1)..=latest {
            let Some(bytes) = log_store.read_commit_entry(version as u64).await? else {
                continue;
            };
            if commit_has_label(&bytes, label) {
                return Ok(Some(version));
            }
        }
        Ok(None)
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
        req: &CommitRequest,
    ) -> Result<Committed, SinkError> {
        self.commit_parts(batch.into_iter().collect(), req).await
    }

    /// [`commit`](Self::commit) for a batch in parts (in row order, one schema): an append
    /// table writes them one after another into the same data file, so they are never joined
    /// into one batch (a copy of every value); a keyed table joins them for its MERGE.
    pub async fn commit_parts(
        &mut self,
        parts: Vec<RecordBatch>,
        req: &CommitRequest,
    ) -> Result<Committed, SinkError> {
        if self.key_model.model.is_keyed() {
            let batch = join_parts(&parts)?;
            return self.commit_keyed(batch, req).await;
        }
        self.commit_append(parts, req, serde_json::Map::new()).await
    }

    /// The model the table records.
    pub fn key_model(&self) -> &KeyModel {
        &self.key_model
    }

    /// [`commit`](Self::commit) as an append: the batch's rows are added as they are.
    /// `extra` goes into `commitInfo.routineLoad` beside the request's info.
    async fn commit_append(
        &mut self,
        parts: Vec<RecordBatch>,
        req: &CommitRequest,
        extra: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Committed, SinkError> {
        if let Some(conflict) = resumed_elsewhere(&self.offsets().await?, req) {
            return Err(SinkError::Conflict(conflict));
        }
        let files = self.write_parts(parts).await?;
        self.commit_written(files, req, extra).await
    }

    /// Writes `batch` as data files of the table without committing them (nothing for an empty
    /// batch). [`commit_files`](Self::commit_files) commits them in one version; files never
    /// committed are not part of the table and VACUUM deletes them.
    pub async fn write_files(&self, batch: RecordBatch) -> Result<Vec<Add>, SinkError> {
        self.write_parts(vec![batch]).await
    }

    /// [`write_files`](Self::write_files) for a batch in parts, written in order into the same
    /// files.
    async fn write_parts(&self, parts: Vec<RecordBatch>) -> Result<Vec<Add>, SinkError> {
        if parts.iter().all(|p| p.num_rows() == 0) {
            return Ok(Vec::new());
        }
        let mut writer =
            RecordBatchWriter::for_table(&self.table)?.with_writer_properties(writer_properties());
        for part in parts.into_iter().filter(|p| p.num_rows() > 0) {
            writer.write(part).await?;
        }
        Ok(writer.flush().await?)
    }

    /// Deletes data files written by [`write_files`](Self::write_files) that will not be
    /// committed. Best effort: vacuum deletes what is left once it is old enough.
    pub async fn discard_files(&self, files: &[Add]) {
        use deltalake::logstore::object_store::ObjectStoreExt;
        let store = self.table.object_store();
        for file in files {
            let deleted = match deltalake::Path::from_url_path(&file.path) {
                Ok(path) => store.delete(&path).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = deleted {
                tracing::warn!(path = %file.path, error = %e, "deleting a data file that will not be committed");
            }
        }
    }

    /// Commits files written by [`write_files`](Self::write_files) as one appended version,
    /// with the request's transactions and info, as [`commit`](Self::commit) does for one
    /// batch. A keyed table takes no written files (its batches merge on the keys).
    pub async fn commit_files(
        &mut self,
        files: Vec<Add>,
        req: &CommitRequest,
    ) -> Result<Committed, SinkError> {
        if self.key_model.model.is_keyed() {
            return Err(SinkError::Delta(DeltaTableError::Generic(
                "a keyed table merges its batches: commit them, not written files".into(),
            )));
        }
        if let Some(conflict) = resumed_elsewhere(&self.offsets().await?, req) {
            return Err(SinkError::Conflict(conflict));
        }
        self.commit_written(files, req, serde_json::Map::new())
            .await
    }

    /// Commits written files as one appended version.
    async fn commit_written(
        &mut self,
        files: Vec<Add>,
        req: &CommitRequest,
        extra: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Committed, SinkError> {
        let actions: Vec<Action> = files.into_iter().map(Action::Add).collect();
        let files = actions.len();
        let props = self.commit_properties(req, extra);
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
        let finalized = result.map_err(classify)?;
        let version = finalized.version as i64;
        self.table.state = Some(finalized.snapshot);
        self.after_commit(version).await;
        Ok(Committed {
            version,
            files,
            merges: 0,
        })
    }

    /// What every commit carries: the partitions' next offsets and start fingerprints as
    /// transaction identifiers, and `commitInfo.routineLoad` (the request's info, the label and
    /// `extra`).
    fn commit_properties(
        &self,
        req: &CommitRequest,
        extra: serde_json::Map<String, serde_json::Value>,
    ) -> CommitProperties {
        let txns: Vec<Transaction> = req
            .next
            .iter()
            .map(|(p, o)| Transaction::new(transaction_app_id(&self.job_uid, *p), *o))
            .chain(
                req.starts
                    .iter()
                    .map(|(p, f)| Transaction::new(start_app_id(&self.job_uid, *p), *f)),
            )
            .collect();
        let mut info = req.info.clone();
        info.insert("label".into(), req.label.clone().into());
        info.extend(extra);
        CommitProperties::default()
            .with_application_transactions(txns)
            .with_metadata([(COMMIT_INFO_KEY.to_string(), serde_json::Value::Object(info))])
            .with_create_checkpoint(false)
    }

    /// Counts a commit and writes a checkpoint every `checkpoint_interval` commits.
    async fn after_commit(&mut self, version: i64) {
        self.commits_since_checkpoint += 1;
        let by_count = self.checkpoint_interval > 0
            && self.commits_since_checkpoint >= self.checkpoint_interval;
        let by_version = self.checkpoint_versions > 0
            && version > 0
            && (version as u64).is_multiple_of(self.checkpoint_versions);
        if by_count || by_version {
            self.commits_since_checkpoint = 0;
            // A failed checkpoint only makes reads slower; the commit stands.
            if let Err(e) = deltalake::checkpoints::create_checkpoint(&self.table, None).await {
                tracing::warn!(error = %e, version, "checkpoint failed");
            }
        }
    }
}

/// The parts of a batch as one (None for no rows): a keyed table's MERGE reads one batch.
fn join_parts(parts: &[RecordBatch]) -> Result<Option<RecordBatch>, SinkError> {
    let parts: Vec<&RecordBatch> = parts.iter().filter(|p| p.num_rows() > 0).collect();
    match parts.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some((*one).clone())),
        [first, ..] => {
            deltalake::arrow::compute::concat_batches(&first.schema(), parts.iter().copied())
                .map(Some)
                .map_err(|e| {
                    SinkError::Delta(DeltaTableError::Generic(format!(
                        "joining the parts of a batch for its MERGE: {e}"
                    )))
                })
        }
    }
}

/// A commit error: a race with another writer (the commit did not land) or anything else (it
/// may have).
fn classify(e: DeltaTableError) -> SinkError {
    match e {
        DeltaTableError::Transaction { source } => match source {
            e @ (TransactionError::CommitConflict(_)
            | TransactionError::VersionAlreadyExists(_)
            | TransactionError::MaxCommitAttempts(_)) => SinkError::Conflict(e.to_string()),
            e => SinkError::Delta(DeltaTableError::Transaction { source: e }),
        },
        e => e.into(),
    }
}

/// How data files are written: ZSTD level 1 without dictionary encoding. Measured on one
/// 200000-row batch (`BENCH_PHASES=parquet cargo bench --workspace --bench pipeline`), against
/// delta-rs' default (Snappy with dictionaries): the reference's Wikipedia rows encode in 32 ms
/// instead of 56 ms into 1.3 MB instead of 3.3 MB, a 50-column table in 184 ms instead of 309 ms
/// into 16 MB instead of 41 MB. Dictionaries cost most where columns have many distinct values
/// (the encoder builds one, then falls back to plain), and ZSTD makes up for them in size where
/// values repeat. Spark, pyarrow, Trino and DuckDB all read ZSTD.
pub fn writer_properties() -> deltalake::parquet::file::properties::WriterProperties {
    use deltalake::parquet::basic::{Compression, ZstdLevel};
    deltalake::parquet::file::properties::WriterProperties::builder()
        .set_created_by(format!("routine-load {}", env!("CARGO_PKG_VERSION")))
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()))
        .set_dictionary_enabled(false)
        .build()
}

/// Why the table's offsets say this batch is not the next one: the first partition whose
/// recorded offset is not where the batch resumed from. None: the batch follows the table.
fn resumed_elsewhere(recorded: &Offsets, req: &CommitRequest) -> Option<String> {
    req.resumed_from.iter().find_map(|(p, want)| {
        let have = recorded.get(p).copied().flatten();
        (have != *want).then(|| {
            format!(
                "partition {p}: the table records offset {} but this batch resumed from {}",
                fmt_offset(have),
                fmt_offset(*want)
            )
        })
    })
}

/// Whether a commit file's `commitInfo` carries this routine-load label.
fn commit_has_label(commit: &[u8], label: &str) -> bool {
    routine_load_info(commit).is_some_and(|i| i["label"].as_str() == Some(label))
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
            aggregate: None,
        };
        TableSpec {
            columns: vec![col("id", "BIGINT"), col("name", "STRING")],
            partition_columns: vec![],
            location: location.into(),
            credentials_secret: None,
            deletion_policy: DeletionPolicy::Retain,
            comment: None,
            model: Default::default(),
            keys: vec![],
            maintenance: Default::default(),
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

    fn req(resumed_from: &Offsets, next: &[(i32, i64)], label: &str) -> CommitRequest {
        CommitRequest {
            resumed_from: resumed_from.clone(),
            next: next.iter().copied().collect(),
            starts: BTreeMap::new(),
            label: label.into(),
            info: serde_json::Map::new(),
        }
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
        let start = next_offsets(&a.refresh().await.unwrap());
        assert_eq!(start, BTreeMap::from([(0, None), (1, None)]));

        // First batch: partition 0 offsets 0..10, partition 1 0..5.
        let next = [(0, 10), (1, 5)];
        let c = a
            .commit(Some(batch(0..15)), &req(&start, &next, "b1"))
            .await
            .unwrap();
        assert_eq!(c.version, 1);
        let after = next_offsets(&a.refresh().await.unwrap());
        assert_eq!(after, BTreeMap::from([(0, Some(10)), (1, Some(5))]));

        // A stale writer that read the offsets before the first commit is refused, even when it
        // builds on a fresh snapshot (the check delta-rs doesn't do).
        let mut stale = DeltaSink::open(&loc, HashMap::new(), "uid1", &[0, 1], 0)
            .await
            .unwrap();
        stale.refresh().await.unwrap();
        let err = stale
            .commit(Some(batch(0..15)), &req(&start, &next, "b1-stale"))
            .await
            .unwrap_err();
        assert!(matches!(err, SinkError::Conflict(_)), "{err}");
        assert!(err.to_string().contains("resumed from none"), "{err}");

        // A stale writer whose snapshot predates a concurrent commit is refused by delta-rs.
        let mut b = DeltaSink::open(&loc, HashMap::new(), "uid1", &[0, 1], 2)
            .await
            .unwrap();
        let b_from = next_offsets(&b.refresh().await.unwrap());
        let next2 = [(0, 20), (1, 5)];
        a.commit(Some(batch(15..25)), &req(&after, &next2, "b2"))
            .await
            .unwrap();
        let err = b
            .commit(Some(batch(15..25)), &req(&b_from, &next2, "b2-stale"))
            .await
            .unwrap_err();
        assert!(matches!(err, SinkError::Conflict(_)), "{err}");

        // Another job's app ids are independent.
        let mut other = DeltaSink::open(&loc, HashMap::new(), "uid2", &[0], 1)
            .await
            .unwrap();
        let o = next_offsets(&other.refresh().await.unwrap());
        assert_eq!(o, BTreeMap::from([(0, None)]));
        other.commit(None, &req(&o, &[(0, 3)], "o1")).await.unwrap();

        let mut check = DeltaSink::open(&loc, HashMap::new(), "uid1", &[0, 1], 9)
            .await
            .unwrap();
        assert_eq!(
            next_offsets(&check.refresh().await.unwrap()),
            BTreeMap::from([(0, Some(20)), (1, Some(5))])
        );
        assert_eq!(row_count(&check).await, 25, "no duplicate rows");
        // Checkpoint interval 2: a checkpoint was written at the second commit.
        assert!(dir.join("_delta_log/_last_checkpoint").exists());
        std::fs::remove_dir_all(&dir).ok();
    }

    /// The production path: a task commits batch after batch on the snapshot each commit
    /// returned, without re-reading the table; pins record the start fingerprint; a label tells
    /// whether a commit landed.
    #[tokio::test]
    async fn a_sink_per_commit_checkpoints_at_multiples_of_its_versions() {
        let (dir, loc) = temp_location("ckpt");
        delta_table::create_or_adopt(&loc, &spec(&loc), HashMap::new())
            .await
            .unwrap();
        // One sink per commit, as Stream Load opens them: the commit count never reaches 100.
        for i in 0..5i64 {
            let mut sink = DeltaSink::open(&loc, HashMap::new(), "stream-load", &[], 0)
                .await
                .unwrap()
                .with_checkpoint_interval(0)
                .with_checkpoint_at_versions(2);
            let files = sink.write_files(batch(i * 10..i * 10 + 10)).await.unwrap();
            let done = sink
                .commit_files(files, &req(&BTreeMap::new(), &[], &format!("l{i}")))
                .await
                .unwrap();
            assert_eq!(done.version, i + 1);
        }
        let mut checkpoints: Vec<String> = std::fs::read_dir(dir.join("_delta_log"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".checkpoint.parquet"))
            .collect();
        checkpoints.sort();
        assert_eq!(
            checkpoints,
            [
                "00000000000000000002.checkpoint.parquet",
                "00000000000000000004.checkpoint.parquet"
            ]
        );
    }

    #[tokio::test]
    async fn a_batch_in_parts_is_one_data_file_with_the_rows_in_order() {
        use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let (dir, loc) = temp_location("parts");
        delta_table::create_or_adopt(&loc, &spec(&loc), HashMap::new())
            .await
            .unwrap();
        let mut sink = DeltaSink::open(&loc, HashMap::new(), "uid", &[0], 1)
            .await
            .unwrap();
        let start = next_offsets(&sink.refresh().await.unwrap());
        let parts = vec![batch(0..5), batch(5..5), batch(5..12), batch(12..20)];
        let done = sink
            .commit_parts(parts, &req(&start, &[(0, 20)], "parts"))
            .await
            .unwrap();
        assert_eq!(done.files, 1, "the parts go into one data file");
        let snap = sink.table.snapshot().unwrap();
        let file: String = snap
            .log_data()
            .into_iter()
            .next()
            .expect("one file")
            .path()
            .into_owned();
        let data = std::fs::File::open(dir.join(file)).unwrap();
        let mut ids = Vec::new();
        for b in ParquetRecordBatchReaderBuilder::try_new(data)
            .unwrap()
            .build()
            .unwrap()
        {
            let b = b.unwrap();
            let c = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            ids.extend(c.values().iter().copied());
        }
        assert_eq!(ids, (0..20).collect::<Vec<i64>>());
        // No rows at all: a commit of the offsets alone.
        let empty = sink
            .commit_parts(
                vec![batch(20..20)],
                &req(&BTreeMap::from([(0, Some(20))]), &[(0, 30)], "empty"),
            )
            .await
            .unwrap();
        assert_eq!(empty.files, 0);
        assert_eq!(row_count(&sink).await, 20);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn commits_in_a_row_on_the_post_commit_snapshot() {
        let (dir, loc) = temp_location("row");
        delta_table::create_or_adopt(&loc, &spec(&loc), HashMap::new())
            .await
            .unwrap();
        let mut sink = DeltaSink::open(&loc, HashMap::new(), "uid", &[0], 1)
            .await
            .unwrap();
        let records = sink.refresh().await.unwrap();
        assert_eq!(records[&0], PartitionRecord::default());
        // Pin: no data, the start offset and its fingerprint.
        let mut pin = req(&next_offsets(&records), &[(0, 100)], "pin");
        pin.starts.insert(0, 7);
        let v0 = sink.commit(None, &pin).await.unwrap().version;
        let mut from = 100;
        for i in 0..5 {
            let to = from + 10;
            let c = sink
                .commit(
                    Some(batch(from..to)),
                    &req(
                        &BTreeMap::from([(0, Some(from))]),
                        &[(0, to)],
                        &format!("b{i}"),
                    ),
                )
                .await
                .unwrap();
            assert_eq!(c.version, v0 + 1 + i);
            from = to;
        }
        let records = sink.refresh().await.unwrap();
        assert_eq!(
            records[&0],
            PartitionRecord {
                next: Some(150),
                start: Some(7)
            }
        );
        assert_eq!(row_count(&sink).await, 50);
        assert_eq!(sink.landed(v0, "b3").await.unwrap(), Some(v0 + 4));
        assert_eq!(sink.landed(v0 + 4, "b3").await.unwrap(), None);
        assert_eq!(sink.landed(v0, "never").await.unwrap(), None);
        std::fs::remove_dir_all(&dir).ok();
    }
}
