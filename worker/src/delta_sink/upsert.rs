//! Commits into keyed tables (Primary, Unique, Aggregate): the batch, collapsed to its last row
//! per key ([`crate::key_model`]) or aggregated per key ([`crate::aggregate_model`]), is merged
//! on the key columns in one Delta MERGE that also carries the batch's transaction identifiers
//! (`txn` actions) and `commitInfo`, so the offsets move in the same version as the rows,
//! exactly as appends do.
//!
//! MERGE reads the table: a commit by another writer (another task of the job, another job)
//! between the read and the commit that touches the files it read is refused by delta-rs'
//! conflict checker. The merge is then run again on the new version, after checking on that
//! version that the table still records the offsets this batch resumed from (or already records
//! this batch, found by its label). A merge whose outcome is unknown is resolved by the caller
//! from the label, as for appends.

use deltalake::datafusion::common::Column;
use deltalake::datafusion::prelude::{Expr, SessionContext, lit};
use routine_load_api::table_model::{OP_COLUMN, OP_DELETE, OP_UPSERT, TableModel};

use super::*;
use crate::{aggregate_model, key_model};

/// Merges tried before a batch that keeps conflicting is given back to the task (which re-reads
/// the offsets and loads it again).
const MAX_MERGE_ATTEMPTS: usize = 8;

/// What a merge attempt does, from the offsets the table records when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum MergeStep {
    /// The table records where the batch resumed from: merge.
    Merge,
    /// The table records the batch's next offsets: a commit of this batch may have landed
    /// (confirmed by its label).
    AlreadyCommitted,
    /// Someone else moved the partitions: the batch is not ours to commit.
    Conflict(String),
}

/// Decides the next merge attempt from what the table records.
pub(super) fn merge_step(recorded: &Offsets, req: &CommitRequest) -> MergeStep {
    let Some(conflict) = resumed_elsewhere(recorded, req) else {
        return MergeStep::Merge;
    };
    let at = |p: &i32| recorded.get(p).copied().flatten();
    if !req.next.is_empty() && req.next.iter().all(|(p, next)| at(p) == Some(*next)) {
        return MergeStep::AlreadyCommitted;
    }
    MergeStep::Conflict(conflict)
}

/// `alias.name`, case kept.
fn qualified(alias: &str, name: &str) -> Expr {
    Expr::Column(Column::new(Some(alias), name))
}

impl DeltaSink {
    /// Commits a batch into a keyed table: collapse by key, then MERGE with the offsets.
    pub(super) async fn commit_keyed(
        &mut self,
        batch: Option<RecordBatch>,
        req: &CommitRequest,
    ) -> Result<Committed, SinkError> {
        let Some(batch) = batch.filter(|b| b.num_rows() > 0) else {
            return self
                .commit_append(Vec::new(), req, serde_json::Map::new())
                .await;
        };
        let keys = &self.key_model.keys;
        let source = if self.key_model.model == TableModel::Aggregate {
            aggregate_model::aggregate_by_key(&batch, keys, &self.key_model.aggregates)
                .await
                .map_err(|e| {
                    SinkError::Delta(DeltaTableError::Generic(format!(
                        "aggregating the batch by key {keys:?}: {e}"
                    )))
                })?
        } else {
            let rule = &self.update;
            key_model::collapse_by_key(
                &batch,
                keys,
                rule.merge_condition.as_deref(),
                !rule.is_plain(),
            )
            .map_err(|e| {
                SinkError::Delta(DeltaTableError::Generic(format!(
                    "collapsing the batch by key {keys:?}: {e}"
                )))
            })?
        };
        let since = self.version();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match merge_step(&self.offsets().await?, req) {
                MergeStep::Merge => {}
                MergeStep::AlreadyCommitted => {
                    if let Some(version) = self.landed(since, &req.label).await? {
                        return Ok(Committed {
                            version,
                            files: 0,
                            merges: attempt - 1,
                        });
                    }
                    return Err(SinkError::Conflict(format!(
                        "the table records this batch's next offsets {:?}, committed by another \
                         writer",
                        req.next
                    )));
                }
                MergeStep::Conflict(msg) => return Err(SinkError::Conflict(msg)),
            }
            match self.merge_once(source.clone(), &batch, req).await {
                Err(SinkError::Conflict(e)) if attempt < MAX_MERGE_ATTEMPTS => {
                    tracing::info!(attempt, error = %e, "merge conflicted with another commit; merging again on the new version");
                    self.table.update_state().await?;
                }
                done => {
                    return done.map(|c| Committed {
                        merges: attempt,
                        ..c
                    });
                }
            }
        }
    }

    /// One MERGE of `source` (collapsed, with `__op`) on the current snapshot.
    async fn merge_once(
        &mut self,
        source: RecordBatch,
        batch: &RecordBatch,
        req: &CommitRequest,
    ) -> Result<Committed, SinkError> {
        let before = self.version();
        let (upserts, deletes) = key_model::count_ops(&source);
        let keys = self.key_model.keys.clone();
        let batch_schema = batch.schema();
        let all: Vec<String> = batch_schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| n != OP_COLUMN)
            .collect();
        let values: Vec<&String> = all.iter().filter(|n| !keys.contains(n)).collect();
        // The value columns a matched row updates: those the job loads with a partial update.
        let updated: Vec<&String> = match &self.update.updated_columns {
            Some(loaded) => values
                .iter()
                .copied()
                .filter(|c| loaded.contains(c))
                .collect(),
            None => values.clone(),
        };
        let replaces = key_model::count_replaces(&source);
        let frame = SessionContext::new().read_batch(source).map_err(|e| {
            SinkError::Delta(DeltaTableError::Generic(format!(
                "reading the batch as a merge source: {e}"
            )))
        })?;
        let on = keys
            .iter()
            .map(|k| qualified("t", k).eq(qualified("s", k)))
            .reduce(Expr::and)
            .expect("keyed tables have keys");
        let mut info = serde_json::Map::new();
        info.insert(
            "merge".into(),
            serde_json::json!({"upserts": upserts, "deletes": deletes, "rows": batch.num_rows()}),
        );
        // A merge that changes nothing commits the offsets alone, with the same counts.
        let info_if_unchanged = info.clone();
        let mut merge = self
            .table
            .clone()
            .merge(frame, on)
            .with_source_alias("s")
            .with_target_alias("t")
            .with_writer_properties(writer_properties())
            .with_commit_properties(self.commit_properties(req, info));
        if deletes > 0 {
            merge = merge.when_matched_delete(|d| {
                d.predicate(qualified("s", OP_COLUMN).eq(lit(OP_DELETE)))
            })?;
        }
        if replaces > 0 && !values.is_empty() {
            // A row after a delete of its key in the batch: the stored row is gone by then, so
            // the row replaces it whole and unconditionally.
            merge = merge.when_matched_update(|u| {
                values.iter().fold(
                    u.predicate(qualified("s", key_model::REPLACES_COLUMN).eq(lit(true))),
                    |u, c| u.update(c.as_str(), qualified("s", c)),
                )
            })?;
        }
        if !updated.is_empty() {
            let aggregates = &self.key_model.aggregates;
            let aggregate = self.key_model.model == TableModel::Aggregate;
            let condition = self.update.merge_condition.as_deref().map(|c| {
                // Incoming >= stored, NULL lower than any value.
                let (incoming, stored) = (qualified("s", c), qualified("t", c));
                stored
                    .clone()
                    .is_null()
                    .or(incoming.clone().is_not_null().and(incoming.gt_eq(stored)))
            });
            merge = merge.when_matched_update(|u| {
                let u = match condition {
                    Some(condition) => u.predicate(condition),
                    None => u,
                };
                updated.iter().fold(u, |u, c| {
                    let incoming = qualified("s", c);
                    let value = match (aggregates.get(c.as_str()), batch_schema.field_with_name(c))
                    {
                        (Some(f), Ok(field)) if aggregate => aggregate_model::combine(
                            *f,
                            field.data_type(),
                            qualified("t", c),
                            incoming,
                        ),
                        _ => incoming,
                    };
                    u.update(c.as_str(), value)
                })
            })?;
        }
        merge = merge.when_not_matched_insert(|i| {
            let i = if deletes > 0 {
                i.predicate(qualified("s", OP_COLUMN).eq(lit(OP_UPSERT)))
            } else {
                i
            };
            all.iter()
                .fold(i, |i, c| i.set(c.as_str(), qualified("s", c)))
        })?;
        let (table, metrics) = merge.await.map_err(classify)?;
        let version = table.version().map_or(-1, |v| v as i64);
        self.table = table;
        if version == before {
            // Nothing to change (deletes of keys the table doesn't have): delta-rs made no
            // commit, and the offsets still need theirs.
            return self.commit_append(Vec::new(), req, info_if_unchanged).await;
        }
        self.after_commit(version).await;
        Ok(Committed {
            version,
            files: metrics.num_target_files_added,
            merges: 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Instant;

    use deltalake::arrow::array::{Int8Array, Int64Array, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use routine_load_api::UpdateRule;
    use routine_load_api::table::TableSpec;

    use super::*;

    fn temp_location(name: &str) -> (std::path::PathBuf, String) {
        let dir = std::env::temp_dir().join(format!(
            "rl-upsert-{name}-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let loc = format!("file://{}", dir.display());
        (dir, loc)
    }

    fn spec(location: &str, model: &str) -> TableSpec {
        serde_yaml::from_str(&format!(
            "location: {location}\nmodel: {model}\nkeys: [id]\ncolumns:\n  - {{name: id, type: BIGINT, nullable: false}}\n  - {{name: v, type: STRING}}\n"
        ))
        .unwrap()
    }

    /// A batch as the engine gives it for a Primary table with `__op`.
    fn batch(rows: &[(i64, &str, i8)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::Utf8, true),
            Field::new(OP_COLUMN, DataType::Int8, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(Int8Array::from_iter_values(rows.iter().map(|r| r.2))),
            ],
        )
        .unwrap()
    }

    /// The table's current data, read through DataFusion.
    async fn table_batches(sink: &DeltaSink) -> Vec<RecordBatch> {
        let ctx = SessionContext::new();
        sink.table.update_datafusion_session(&ctx.state()).unwrap();
        let provider = sink.table.table_provider().await.unwrap();
        ctx.read_table(provider).unwrap().collect().await.unwrap()
    }

    /// Column `name` of `b`, a BIGINT column.
    /// An integer column of any width, as i64.
    fn ints(b: &RecordBatch, name: &str) -> Vec<Option<i64>> {
        let c = b.column_by_name(name).unwrap();
        let c = deltalake::arrow::compute::cast(c, &DataType::Int64).unwrap();
        c.as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .iter()
            .collect()
    }

    /// Column `name` of `b`, a STRING column (DataFusion may read strings as views).
    fn strings(b: &RecordBatch, name: &str) -> Vec<Option<String>> {
        let c = deltalake::arrow::compute::cast(b.column_by_name(name).unwrap(), &DataType::Utf8)
            .unwrap();
        let c = c.as_any().downcast_ref::<StringArray>().unwrap();
        c.iter().map(|v| v.map(str::to_string)).collect()
    }

    /// The table's rows, sorted by id, read through DataFusion.
    async fn table_rows(sink: &DeltaSink) -> Vec<(i64, String)> {
        let mut out = Vec::new();
        for b in table_batches(sink).await {
            for (id, v) in ints(&b, "id").into_iter().zip(strings(&b, "v")) {
                out.push((id.unwrap(), v.unwrap_or_default()));
            }
        }
        out.sort();
        out
    }

    /// Creates the table of `spec` at `loc` and opens a sink on it for partition 0.
    async fn create_and_open(loc: &str, spec: &TableSpec) -> DeltaSink {
        delta_table::create_or_adopt(loc, spec, HashMap::new())
            .await
            .unwrap();
        DeltaSink::open(loc, HashMap::new(), "uid", &[0], 1)
            .await
            .unwrap()
    }

    fn request(p: i32, from: Option<i64>, to: i64, label: &str) -> CommitRequest {
        CommitRequest {
            resumed_from: BTreeMap::from([(p, from)]),
            next: BTreeMap::from([(p, to)]),
            label: label.into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn upserts_and_deletes_across_batches_with_the_offsets() {
        let (dir, loc) = temp_location("primary");
        let mut sink = create_and_open(&loc, &spec(&loc, "Primary")).await;
        assert!(sink.key_model().model.is_keyed());
        // Batch 1: inserts 1..=3, 2 updated in the same batch, 3 inserted and deleted.
        let c1 = sink
            .commit(
                Some(batch(&[
                    (1, "a", 0),
                    (2, "b", 0),
                    (2, "b2", 0),
                    (3, "c", 0),
                    (3, "c", 1),
                ])),
                &request(0, None, 5, "b1"),
            )
            .await
            .unwrap();
        assert_eq!(table_rows(&sink).await, [(1, "a".into()), (2, "b2".into())]);
        // Batch 2: update 1, delete 2, delete 9 (absent), insert 4.
        sink.commit(
            Some(batch(&[(1, "a2", 0), (2, "", 1), (9, "", 1), (4, "d", 0)])),
            &request(0, Some(5), 9, "b2"),
        )
        .await
        .unwrap();
        assert_eq!(table_rows(&sink).await, [(1, "a2".into()), (4, "d".into())]);
        // Batch 3: only a delete of an absent key: no rows change, the offsets still move.
        let c3 = sink
            .commit(Some(batch(&[(9, "", 1)])), &request(0, Some(9), 10, "b3"))
            .await
            .unwrap();
        assert_eq!(c3.version, c1.version + 2);
        assert_eq!(sink.refresh().await.unwrap()[&0].next, Some(10));
        // That offsets-only commit still records the batch's counts.
        let infos = sink.commit_infos_since(c3.version - 1, 1).await.unwrap();
        assert_eq!(
            infos[0].1["merge"],
            serde_json::json!({"upserts": 0, "deletes": 1, "rows": 1}),
            "{infos:?}"
        );
        assert_eq!(table_rows(&sink).await, [(1, "a2".into()), (4, "d".into())]);
        // A replay of batch 2 (resumed from 5) is refused: the table records 10.
        let err = sink
            .commit(
                Some(batch(&[(2, "x", 0)])),
                &request(0, Some(5), 9, "b2-again"),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, SinkError::Conflict(_)), "{err}");
        assert_eq!(
            sink.landed(c1.version - 1, "b2").await.unwrap(),
            Some(c1.version + 1)
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    /// An Aggregate table across batches: each batch aggregated per key, then combined with the
    /// stored row by each column's function; a replayed batch is refused, so nothing adds twice.
    #[tokio::test]
    async fn aggregate_tables_combine_batches_with_each_columns_function() {
        use deltalake::arrow::array::ArrayRef;
        let (dir, loc) = temp_location("aggregate");
        let spec: TableSpec = serde_yaml::from_str(&format!(
            "location: {loc}\nmodel: Aggregate\nkeys: [id]\ncolumns:\n  - {{name: id, type: BIGINT, nullable: false}}\n  - {{name: total, type: BIGINT, aggregate: SUM}}\n  - {{name: top, type: BIGINT, aggregate: MAX}}\n  - {{name: low, type: BIGINT, aggregate: MIN}}\n  - {{name: last, type: BIGINT, aggregate: REPLACE}}\n  - {{name: known, type: BIGINT, aggregate: REPLACE_IF_NOT_NULL}}\n"
        ))
        .unwrap();
        let mut sink = create_and_open(&loc, &spec).await;
        type Row = (
            i64,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
        );
        let batch = |rows: &[Row]| {
            let names = ["id", "total", "top", "low", "last", "known"];
            let schema = Arc::new(Schema::new(
                names
                    .iter()
                    .map(|n| Field::new(*n, DataType::Int64, *n != "id"))
                    .collect::<Vec<_>>(),
            ));
            let col = |f: &dyn Fn(&Row) -> Option<i64>| -> ArrayRef {
                Arc::new(Int64Array::from(rows.iter().map(f).collect::<Vec<_>>()))
            };
            RecordBatch::try_new(
                schema,
                vec![
                    col(&|r| Some(r.0)),
                    col(&|r| r.1),
                    col(&|r| r.2),
                    col(&|r| r.3),
                    col(&|r| r.4),
                    col(&|r| r.5),
                ],
            )
            .unwrap()
        };
        let rows = async |sink: &DeltaSink| {
            let mut out: Vec<Row> = Vec::new();
            for b in table_batches(sink).await {
                let [id, total, top, low, last, known] =
                    ["id", "total", "top", "low", "last", "known"].map(|n| ints(&b, n));
                for i in 0..b.num_rows() {
                    out.push((id[i].unwrap(), total[i], top[i], low[i], last[i], known[i]));
                }
            }
            out.sort();
            out
        };
        sink.commit(
            Some(batch(&[
                (1, Some(5), Some(5), Some(5), Some(5), Some(5)),
                (2, None, None, None, None, None),
                (1, Some(2), Some(9), Some(1), None, None),
            ])),
            &request(0, None, 3, "a1"),
        )
        .await
        .unwrap();
        assert_eq!(
            rows(&sink).await,
            [
                (1, Some(7), Some(9), Some(1), None, Some(5)),
                (2, None, None, None, None, None),
            ]
        );
        sink.commit(
            Some(batch(&[
                (1, Some(10), Some(3), Some(0), Some(4), None),
                (2, Some(1), Some(1), Some(1), Some(1), Some(1)),
                (3, Some(6), None, None, None, Some(6)),
            ])),
            &request(0, Some(3), 6, "a2"),
        )
        .await
        .unwrap();
        let want = [
            (1, Some(17), Some(9), Some(0), Some(4), Some(5)),
            (2, Some(1), Some(1), Some(1), Some(1), Some(1)),
            (3, Some(6), None, None, None, Some(6)),
        ];
        assert_eq!(rows(&sink).await, want);
        let err = sink
            .commit(
                Some(batch(&[(1, Some(10), None, None, None, None)])),
                &request(0, Some(3), 6, "a2-again"),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, SinkError::Conflict(_)), "{err}");
        assert_eq!(rows(&sink).await, want, "a replayed batch adds nothing");
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A SUM past its column's type fails the batch and leaves the table as it was, across
    /// batches (the MERGE) and within one (the batch's own aggregation), instead of wrapping.
    #[tokio::test]
    async fn aggregate_sums_that_overflow_their_column_fail_the_batch() {
        let (dir, loc) = temp_location("aggregate-overflow");
        let spec: TableSpec = serde_yaml::from_str(&format!(
            "location: {loc}\nmodel: Aggregate\nkeys: [id]\ncolumns:\n  - {{name: id, type: BIGINT, nullable: false}}\n  - {{name: small, type: TINYINT, aggregate: SUM}}\n  - {{name: big, type: BIGINT, aggregate: SUM}}\n"
        ))
        .unwrap();
        let mut sink = create_and_open(&loc, &spec).await;
        let batch = |rows: &[(i64, i8, i64)]| {
            let schema = Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new("small", DataType::Int8, true),
                Field::new("big", DataType::Int64, true),
            ]));
            RecordBatch::try_new(
                schema,
                vec![
                    Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                    Arc::new(Int8Array::from_iter_values(rows.iter().map(|r| r.1))),
                    Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
                ],
            )
            .unwrap()
        };
        let rows = async |sink: &DeltaSink| {
            let mut out = Vec::new();
            for b in table_batches(sink).await {
                let (id, small, big) = (ints(&b, "id"), ints(&b, "small"), ints(&b, "big"));
                for i in 0..b.num_rows() {
                    out.push((id[i].unwrap(), small[i], big[i]));
                }
            }
            out.sort();
            out
        };
        sink.commit(
            Some(batch(&[(1, 100, i64::MAX - 1)])),
            &request(0, None, 1, "o1"),
        )
        .await
        .unwrap();
        let want = [(1, Some(100), Some(i64::MAX - 1))];
        for (what, rows_in) in [
            ("TINYINT across batches", vec![(1, 100, 0)]),
            ("BIGINT across batches", vec![(1, 0, 2)]),
            ("BIGINT within the batch", vec![(2, 0, i64::MAX), (2, 0, 1)]),
        ] {
            let err = sink
                .commit(Some(batch(&rows_in)), &request(0, Some(1), 2, what))
                .await
                .expect_err(what);
            let message = err.to_string();
            assert!(
                message.contains("range") || message.contains("fit"),
                "{what}: {message}"
            );
            assert_eq!(rows(&sink).await, want, "{what}: the table is unchanged");
        }
        sink.commit(
            Some(batch(&[(1, 27, 1), (2, -128, i64::MIN)])),
            &request(0, Some(1), 2, "o2"),
        )
        .await
        .unwrap();
        assert_eq!(
            rows(&sink).await,
            [
                (1, Some(127), Some(i64::MAX)),
                (2, Some(-128), Some(i64::MIN))
            ],
            "sums up to the type's limits fit"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A Primary table with a version, a name and a score, as the engine gives batches of it.
    type Versioned = (i64, Option<i64>, Option<&'static str>, Option<i64>, i8);

    fn versioned_batch(rows: &[Versioned]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("version", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("score", DataType::Int64, true),
            Field::new(OP_COLUMN, DataType::Int8, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.3).collect::<Vec<_>>(),
                )),
                Arc::new(Int8Array::from_iter_values(rows.iter().map(|r| r.4))),
            ],
        )
        .unwrap()
    }

    type Stored = (i64, Option<i64>, Option<String>, Option<i64>);

    async fn versioned_rows(sink: &DeltaSink) -> Vec<Stored> {
        let mut out = Vec::new();
        for b in table_batches(sink).await {
            let (id, version, score) = (ints(&b, "id"), ints(&b, "version"), ints(&b, "score"));
            let name = strings(&b, "name");
            for i in 0..b.num_rows() {
                out.push((id[i].unwrap(), version[i], name[i].clone(), score[i]));
            }
        }
        out.sort();
        out
    }

    async fn versioned_sink(name: &str, rule: UpdateRule) -> (std::path::PathBuf, DeltaSink) {
        let (dir, loc) = temp_location(name);
        let spec: TableSpec = serde_yaml::from_str(&format!(
            "location: {loc}\nmodel: Primary\nkeys: [id]\ncolumns:\n  - {{name: id, type: BIGINT, nullable: false}}\n  - {{name: version, type: BIGINT}}\n  - {{name: name, type: STRING}}\n  - {{name: score, type: BIGINT}}\n"
        ))
        .unwrap();
        let sink = create_and_open(&loc, &spec).await.with_update_rule(rule);
        (dir, sink)
    }

    fn stored(id: i64, version: Option<i64>, name: Option<&str>, score: Option<i64>) -> Stored {
        (id, version, name.map(str::to_string), score)
    }

    /// partialUpdate: matched rows update only the loaded columns (here id, name; the engine
    /// fills version and score with NULL), new keys are inserted with NULL there; a row after a
    /// delete of its key is a new row; a replayed batch is refused.
    #[tokio::test]
    async fn partial_updates_leave_the_columns_not_loaded_across_batches() {
        let full = UpdateRule::default();
        let (dir, mut sink) = versioned_sink("partial", full).await;
        // Batch 1, whole rows (a sink without the rule, as a job without partialUpdate).
        sink.commit(
            Some(versioned_batch(&[
                (1, Some(1), Some("a"), Some(10), 0),
                (2, Some(1), Some("b"), Some(20), 0),
                (3, Some(1), Some("c"), Some(30), 0),
            ])),
            &request(0, None, 3, "p1"),
        )
        .await
        .unwrap();
        let mut sink = sink.with_update_rule(UpdateRule {
            updated_columns: Some(vec!["name".into()]),
            merge_condition: None,
        });
        // Batch 2, a partial update of name: 1 updated twice, 4 new, 3 deleted and loaded again.
        sink.commit(
            Some(versioned_batch(&[
                (1, None, Some("a2"), None, 0),
                (4, None, Some("d"), None, 0),
                (1, None, Some("a3"), None, 0),
                (3, None, None, None, 1),
                (3, None, Some("c2"), None, 0),
            ])),
            &request(0, Some(3), 8, "p2"),
        )
        .await
        .unwrap();
        let want = [
            stored(1, Some(1), Some("a3"), Some(10)),
            stored(2, Some(1), Some("b"), Some(20)),
            stored(3, None, Some("c2"), None),
            stored(4, None, Some("d"), None),
        ];
        assert_eq!(versioned_rows(&sink).await, want);
        // Batch 3 updates 2's name only.
        sink.commit(
            Some(versioned_batch(&[(2, None, Some("b2"), None, 0)])),
            &request(0, Some(8), 9, "p3"),
        )
        .await
        .unwrap();
        let want = [
            stored(1, Some(1), Some("a3"), Some(10)),
            stored(2, Some(1), Some("b2"), Some(20)),
            stored(3, None, Some("c2"), None),
            stored(4, None, Some("d"), None),
        ];
        assert_eq!(versioned_rows(&sink).await, want);
        let err = sink
            .commit(
                Some(versioned_batch(&[(1, None, Some("x"), None, 0)])),
                &request(0, Some(8), 9, "p3-again"),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, SinkError::Conflict(_)), "{err}");
        assert_eq!(
            versioned_rows(&sink).await,
            want,
            "a replay changes nothing"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    /// mergeCondition: a row whose version is older than the stored one is dropped, equal or
    /// newer replaces; deletes are unconditional; with a partial update too, only the loaded
    /// columns of the newer rows change; a replayed batch is refused.
    #[tokio::test]
    async fn merge_condition_keeps_the_newer_row_when_an_older_one_arrives_late() {
        let rule = UpdateRule {
            updated_columns: None,
            merge_condition: Some("version".into()),
        };
        let (dir, mut sink) = versioned_sink("condition", rule).await;
        sink.commit(
            Some(versioned_batch(&[
                (1, Some(5), Some("a5"), Some(1), 0),
                // In one batch the newest version wins, wherever it is.
                (2, Some(3), Some("b3"), Some(1), 0),
                (2, Some(1), Some("b1"), Some(1), 0),
                (3, None, Some("c-null"), Some(1), 0),
                (4, Some(1), Some("d1"), Some(1), 0),
            ])),
            &request(0, None, 5, "m1"),
        )
        .await
        .unwrap();
        assert_eq!(
            versioned_rows(&sink).await,
            [
                stored(1, Some(5), Some("a5"), Some(1)),
                stored(2, Some(3), Some("b3"), Some(1)),
                stored(3, None, Some("c-null"), Some(1)),
                stored(4, Some(1), Some("d1"), Some(1)),
            ]
        );
        sink.commit(
            Some(versioned_batch(&[
                // Older than stored: dropped. Equal: replaces. NULL stored: any value replaces.
                (1, Some(4), Some("a4-late"), Some(2), 0),
                (2, Some(3), Some("b3-again"), Some(2), 0),
                (3, Some(0), Some("c0"), Some(2), 0),
                // A delete is unconditional, and the row after it replaces whatever version.
                (4, Some(0), None, None, 1),
                (4, Some(0), Some("d0"), Some(2), 0),
                (5, Some(7), Some("e7"), Some(2), 0),
            ])),
            &request(0, Some(5), 11, "m2"),
        )
        .await
        .unwrap();
        let want = [
            stored(1, Some(5), Some("a5"), Some(1)),
            stored(2, Some(3), Some("b3-again"), Some(2)),
            stored(3, Some(0), Some("c0"), Some(2)),
            stored(4, Some(0), Some("d0"), Some(2)),
            stored(5, Some(7), Some("e7"), Some(2)),
        ];
        assert_eq!(versioned_rows(&sink).await, want);
        // Only late rows: nothing changes, the offsets still move.
        sink.commit(
            Some(versioned_batch(&[(1, Some(1), Some("a1"), Some(3), 0)])),
            &request(0, Some(11), 12, "m3"),
        )
        .await
        .unwrap();
        assert_eq!(versioned_rows(&sink).await, want);
        assert_eq!(sink.refresh().await.unwrap()[&0].next, Some(12));
        let err = sink
            .commit(
                Some(versioned_batch(&[(1, Some(9), Some("a9"), Some(3), 0)])),
                &request(0, Some(11), 12, "m3-again"),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, SinkError::Conflict(_)), "{err}");
        assert_eq!(
            versioned_rows(&sink).await,
            want,
            "a replay changes nothing"
        );
        // With a partial update of version and name: a newer row updates them, score stays.
        let mut sink = sink.with_update_rule(UpdateRule {
            updated_columns: Some(vec!["version".into(), "name".into()]),
            merge_condition: Some("version".into()),
        });
        sink.commit(
            Some(versioned_batch(&[
                (1, Some(6), Some("a6"), None, 0),
                (2, Some(2), Some("b2-late"), None, 0),
            ])),
            &request(0, Some(12), 14, "m4"),
        )
        .await
        .unwrap();
        let rows = versioned_rows(&sink).await;
        assert_eq!(rows[0], stored(1, Some(6), Some("a6"), Some(1)));
        assert_eq!(rows[1], stored(2, Some(3), Some("b3-again"), Some(2)));
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A Delta table keeps the model it was created with: a Table declaring another is refused.
    #[tokio::test]
    async fn a_table_of_another_model_is_not_adopted() {
        let (dir, loc) = temp_location("adopt");
        delta_table::create_or_adopt(&loc, &spec(&loc, "Primary"), HashMap::new())
            .await
            .unwrap();
        delta_table::create_or_adopt(&loc, &spec(&loc, "Primary"), HashMap::new())
            .await
            .expect("the same model is adopted");
        let err = delta_table::create_or_adopt(&loc, &spec(&loc, "Unique"), HashMap::new())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("model is Primary in the table, Unique in the spec"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Two tasks of one job (partitions 0 and 1) merging into one table from stale snapshots:
    /// each conflicting merge runs again on the new version; nothing is lost or doubled.
    #[tokio::test]
    async fn concurrent_merges_are_merged_again() {
        let (dir, loc) = temp_location("concurrent");
        let mut a = create_and_open(&loc, &spec(&loc, "Unique")).await;
        let mut b = DeltaSink::open(&loc, HashMap::new(), "uid", &[1], 1)
            .await
            .unwrap();
        let unique = |rows: &[(i64, &str)]| {
            let b = batch(&rows.iter().map(|(i, v)| (*i, *v, 0)).collect::<Vec<_>>());
            // Unique tables have no __op column.
            b.project(&[0, 1]).unwrap()
        };
        let mut from = (None, None);
        let mut remerged = 0;
        for round in 0..3i64 {
            let base = round * 10;
            // Both read the table, then both commit: b's snapshot is stale after a's commit.
            a.refresh().await.unwrap();
            b.refresh().await.unwrap();
            let ra = request(0, from.0, base + 2, &format!("a{round}"));
            let rb = request(1, from.1, base + 2, &format!("b{round}"));
            a.commit(
                Some(unique(&[(1, &format!("a{round}")), (100 + base, "a")])),
                &ra,
            )
            .await
            .unwrap();
            let committed = b
                .commit(
                    Some(unique(&[(2, &format!("b{round}")), (200 + base, "b")])),
                    &rb,
                )
                .await
                .unwrap();
            remerged += committed.merges - 1;
            from = (Some(base + 2), Some(base + 2));
        }
        assert!(
            remerged > 0,
            "b's merges never conflicted: the test proves nothing"
        );
        let records = a.refresh().await.unwrap();
        assert_eq!(records[&0].next, Some(22));
        assert_eq!(b.refresh().await.unwrap()[&1].next, Some(22));
        let rows = table_rows(&a).await;
        assert_eq!(
            rows,
            [
                (1, "a2".to_string()),
                (2, "b2".into()),
                (100, "a".into()),
                (110, "a".into()),
                (120, "a".into()),
                (200, "b".into()),
                (210, "b".into()),
                (220, "b".into()),
            ]
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    /// What a merge costs against an append of the same batch, printed (no timed assertion):
    /// `cargo test --workspace --lib merge_cost -- --nocapture`.
    #[tokio::test]
    async fn merge_cost_against_append() {
        const ROWS: i64 = 100_000;
        const BATCHES: i64 = 5;
        let (dir_a, loc_a) = temp_location("cost-append");
        let (dir_m, loc_m) = temp_location("cost-merge");
        let mut append = create_and_open(&loc_a, &spec(&loc_a, "Duplicate")).await;
        let mut merge = create_and_open(&loc_m, &spec(&loc_m, "Primary")).await;
        // Each batch: half updates of keys already in the table, half new keys.
        let make = |i: i64| {
            let rows: Vec<(i64, String, i8)> = (0..ROWS)
                .map(|r| {
                    let key = if r % 2 == 0 { r } else { i * ROWS + r };
                    (key, format!("value-{i}-{r}"), 0)
                })
                .collect();
            let refs: Vec<(i64, &str, i8)> =
                rows.iter().map(|(k, v, o)| (*k, v.as_str(), *o)).collect();
            batch(&refs)
        };
        let (mut t_append, mut t_merge) = (0.0, 0.0);
        for i in 0..BATCHES {
            let b = make(i);
            let from = if i == 0 { None } else { Some(i * ROWS) };
            let req = request(0, from, (i + 1) * ROWS, &format!("c{i}"));
            let started = Instant::now();
            append
                .commit(Some(b.project(&[0, 1]).unwrap()), &req)
                .await
                .unwrap();
            t_append += started.elapsed().as_secs_f64();
            let started = Instant::now();
            merge.commit(Some(b), &req).await.unwrap();
            t_merge += started.elapsed().as_secs_f64();
        }
        let merged = table_rows(&merge).await.len() as i64;
        let expected = ROWS / 2 + BATCHES * ROWS / 2;
        assert_eq!(merged, expected, "one row per key");
        println!(
            "merge cost: {BATCHES} batches of {ROWS} rows (half updates): append {:.0} ms/batch, \
             merge {:.0} ms/batch ({:.1}x), table of {merged} keys at the end",
            t_append * 1000.0 / BATCHES as f64,
            t_merge * 1000.0 / BATCHES as f64,
            t_merge / t_append
        );
        std::fs::remove_dir_all(&dir_a).ok();
        std::fs::remove_dir_all(&dir_m).ok();
    }

    fn req(resumed: &[(i32, Option<i64>)], next: &[(i32, i64)]) -> CommitRequest {
        CommitRequest {
            resumed_from: resumed.iter().copied().collect(),
            next: next.iter().copied().collect(),
            ..Default::default()
        }
    }

    #[test]
    fn merge_step_from_the_recorded_offsets() {
        let r = req(&[(0, Some(10)), (1, None)], &[(0, 20), (1, 5)]);
        type Case<'a> = (&'a [(i32, Option<i64>)], MergeStep);
        let cases: &[Case] = &[
            (&[(0, Some(10)), (1, None)], MergeStep::Merge),
            (&[(0, Some(20)), (1, Some(5))], MergeStep::AlreadyCommitted),
            (
                &[(0, Some(20)), (1, None)],
                MergeStep::Conflict(
                    "partition 0: the table records offset 20 but this batch resumed from 10"
                        .into(),
                ),
            ),
            (
                &[(0, Some(10)), (1, Some(3))],
                MergeStep::Conflict(
                    "partition 1: the table records offset 3 but this batch resumed from none"
                        .into(),
                ),
            ),
        ];
        for (recorded, want) in cases {
            let recorded: Offsets = recorded.iter().copied().collect();
            assert_eq!(merge_step(&recorded, &r), *want, "{recorded:?}");
        }
    }
}
