//! A batch for a keyed table (Primary or Unique), reduced to one row per key before it is
//! merged into the Delta table.
//!
//! The engine keeps the rows of a batch in message order, and a task reads each Kafka partition
//! in offset order, so within a batch the rows of one partition are in Kafka order. The last row
//! of a key wins: an upsert replaces what the earlier rows did, a delete as the last operation
//! deletes the key (and a delete followed by an upsert is that upsert). Across batches the
//! table's MERGE applies the same rule, so the table ends with the last row per key in Kafka
//! order, as long as one key always comes from one partition (what CDC topics keyed by the
//! primary key give). Rows of one key from several partitions have no order between them.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef, Int8Array, UInt32Array};
use deltalake::arrow::compute::take;
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::arrow::error::ArrowError;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::arrow::row::{RowConverter, SortField};
use routine_load_api::table_model::{OP_COLUMN, OP_DELETE, OP_UPSERT};

/// What a row does to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Insert the row, or replace the stored row with its key.
    Upsert,
    /// Delete the stored row with its key (nothing when there is none).
    Delete,
}

impl Op {
    /// The operation an `__op` value stands for (the plan decodes `upsert`/`delete` to 0/1).
    pub fn from_code(code: i8) -> Option<Op> {
        match code {
            OP_UPSERT => Some(Op::Upsert),
            OP_DELETE => Some(Op::Delete),
            _ => None,
        }
    }
}

/// The indexes of the last occurrence of every key, in ascending order.
pub fn last_index_per_key<K: Eq + std::hash::Hash>(keys: impl IntoIterator<Item = K>) -> Vec<u32> {
    let mut last: HashMap<K, u32> = HashMap::new();
    for (i, key) in keys.into_iter().enumerate() {
        last.insert(key, i as u32);
    }
    let mut out: Vec<u32> = last.into_values().collect();
    out.sort_unstable();
    out
}

/// One row per key of `batch`: the last one, with the `__op` column (all upserts when the batch
/// has none). `keys` name columns of the batch.
pub fn collapse_by_key(batch: &RecordBatch, keys: &[String]) -> Result<RecordBatch, ArrowError> {
    let batch = with_op_column(batch)?;
    let key_columns: Vec<ArrayRef> = keys
        .iter()
        .map(|k| {
            batch.column_by_name(k).cloned().ok_or_else(|| {
                ArrowError::SchemaError(format!("key column '{k}' is not in the batch"))
            })
        })
        .collect::<Result<_, _>>()?;
    let converter = RowConverter::new(
        key_columns
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect(),
    )?;
    let rows = converter.convert_columns(&key_columns)?;
    let survivors = last_index_per_key(rows.iter());
    if survivors.len() == batch.num_rows() {
        return Ok(batch);
    }
    let indices = UInt32Array::from(survivors);
    let columns = batch
        .columns()
        .iter()
        .map(|c| take(c.as_ref(), &indices, None))
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(batch.schema(), columns)
}

/// The batch with an `__op` column: its own, or one of upserts appended.
fn with_op_column(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    if batch.column_by_name(OP_COLUMN).is_some() {
        return Ok(batch.clone());
    }
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(OP_COLUMN, DataType::Int8, false));
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(Int8Array::from(vec![OP_UPSERT; batch.num_rows()])));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// How many rows of a collapsed batch upsert and how many delete.
pub fn count_ops(batch: &RecordBatch) -> (usize, usize) {
    let Some(op) = batch
        .column_by_name(OP_COLUMN)
        .and_then(|c| c.as_any().downcast_ref::<Int8Array>())
    else {
        return (batch.num_rows(), 0);
    };
    let deletes = (0..op.len())
        .filter(|&i| op.is_valid(i) && Op::from_code(op.value(i)) == Some(Op::Delete))
        .count();
    (batch.num_rows() - deletes, deletes)
}

#[cfg(test)]
mod tests {
    use deltalake::arrow::array::{Int64Array, StringArray};

    use super::*;

    #[test]
    fn the_last_row_of_each_key_survives() {
        let cases: &[(&[&str], &[u32])] = &[
            (&[], &[]),
            (&["a"], &[0]),
            (&["a", "b", "c"], &[0, 1, 2]),
            (&["a", "a", "a"], &[2]),
            (&["a", "b", "a", "c", "b"], &[2, 3, 4]),
            (&["x", "y", "y", "x"], &[2, 3]),
        ];
        for (keys, want) in cases {
            assert_eq!(last_index_per_key(keys.iter()), *want, "{keys:?}");
        }
    }

    /// `__op` through the real plan and engine: a source field with any of StarRocks' spellings,
    /// or an expression; anything else is an error row naming `__op`.
    #[test]
    fn op_decoded_by_the_engine() {
        use routine_load_api::{LoadPlan, RoutineLoadJobSpec, TableSpec};

        use crate::engine::{LoadEngine, SourceMessage};

        let table: TableSpec = serde_yaml::from_str(
            "location: file:///t\nmodel: Primary\nkeys: [id]\ncolumns:\n  - {name: id, type: BIGINT, nullable: false}\n",
        )
        .unwrap();
        /// (COLUMNS, CSV rows, the op each row decodes to; None: an error row)
        type Case<'a> = (&'a str, &'a [&'a str], &'a [Option<i8>]);
        let cases: &[Case] = &[
            (
                "[id, __op]",
                &[
                    "1,0",
                    "2,1",
                    "3,upsert",
                    "4,DELETE",
                    "5, Delete ",
                    "6,2",
                    "7,x",
                ],
                &[Some(0), Some(1), Some(0), Some(1), Some(1), None, None],
            ),
            (
                "[id, type, \"__op = if(type = 'D', 1, 0)\"]",
                &["1,I", "2,D", "3,U"],
                &[Some(0), Some(1), Some(0)],
            ),
        ];
        for (columns, lines, want) in cases {
            let job: RoutineLoadJobSpec = serde_yaml::from_str(&format!(
                "table: t\ncolumnSeparator: \",\"\ncolumns: {columns}\nkafka: {{brokerList: b, topic: t}}\n"
            ))
            .unwrap();
            let plan = LoadPlan::build(&job, "t", &table).unwrap();
            let mut engine = LoadEngine::new(Arc::new(plan));
            let messages: Vec<SourceMessage> = lines
                .iter()
                .enumerate()
                .map(|(i, l)| SourceMessage {
                    offset: i as i64,
                    payload: l.as_bytes(),
                    ..Default::default()
                })
                .collect();
            let loaded = engine.load(&messages).unwrap();
            let ops = loaded
                .batch
                .column_by_name(OP_COLUMN)
                .unwrap()
                .as_any()
                .downcast_ref::<Int8Array>()
                .unwrap()
                .clone();
            let mut got: Vec<Option<i8>> = vec![None; lines.len()];
            let ids = loaded
                .batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            for r in 0..loaded.batch.num_rows() {
                got[ids.value(r) as usize - 1] = Some(ops.value(r));
            }
            assert_eq!(got, *want, "{columns}");
            for e in &loaded.errors {
                assert_eq!(e.column.as_deref(), Some(OP_COLUMN), "{e:?}");
            }
            assert_eq!(
                loaded.errors.len(),
                want.iter().filter(|w| w.is_none()).count(),
                "{columns}"
            );
        }
        // WHERE sees the decoded __op (and the source text as __op_text) next to the other
        // placeholders, in the engine's order.
        let job: RoutineLoadJobSpec = serde_yaml::from_str(
            "table: t\ncolumnSeparator: \",\"\ncolumns: [id, __op, note]\nwhere: \"__op = 0 and note <> 'skip' and __op_text <> '0'\"\nkafka: {brokerList: b, topic: t}\n",
        )
        .unwrap();
        let plan = LoadPlan::build(&job, "t", &table).unwrap();
        let mut engine = LoadEngine::new(Arc::new(plan));
        let lines = ["1,upsert,a", "2,delete,b", "3,upsert,skip", "4,0,c"];
        let messages: Vec<SourceMessage> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| SourceMessage {
                offset: i as i64,
                payload: l.as_bytes(),
                ..Default::default()
            })
            .collect();
        let loaded = engine.load(&messages).unwrap();
        let ids = loaded
            .batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(ids.values().to_vec(), [1], "{:?}", loaded.errors);
    }

    #[test]
    fn op_codes() {
        let cases = [
            (0, Some(Op::Upsert)),
            (1, Some(Op::Delete)),
            (2, None),
            (-1, None),
        ];
        for (code, want) in cases {
            assert_eq!(Op::from_code(code), want, "{code}");
        }
    }

    fn batch(ids: &[i64], names: &[&str], values: &[&str], ops: Option<&[i8]>) -> RecordBatch {
        let mut fields = vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, false),
            Field::new("v", DataType::Utf8, true),
        ];
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(StringArray::from(names.to_vec())),
            Arc::new(StringArray::from(values.to_vec())),
        ];
        if let Some(ops) = ops {
            fields.push(Field::new(OP_COLUMN, DataType::Int8, false));
            columns.push(Arc::new(Int8Array::from(ops.to_vec())));
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
    }

    fn rows(b: &RecordBatch) -> Vec<(i64, String, String, i8)> {
        let id = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        let name = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        let v = b.column(2).as_any().downcast_ref::<StringArray>().unwrap();
        let op = b
            .column_by_name(OP_COLUMN)
            .unwrap()
            .as_any()
            .downcast_ref::<Int8Array>()
            .unwrap();
        (0..b.num_rows())
            .map(|i| {
                (
                    id.value(i),
                    name.value(i).to_string(),
                    v.value(i).to_string(),
                    op.value(i),
                )
            })
            .collect()
    }

    #[test]
    fn collapse_keeps_the_last_operation_per_composite_key() {
        let keys = vec!["id".to_string(), "name".to_string()];
        type Case<'a> = (
            &'a [i64],
            &'a [&'a str],
            &'a [&'a str],
            Option<&'a [i8]>,
            &'a [(i64, &'a str, &'a str, i8)],
        );
        let cases: &[Case] = &[
            // Upserts only, no __op column: the last value wins, an __op of upserts is added.
            (
                &[1, 2, 1],
                &["a", "a", "a"],
                &["v1", "v2", "v3"],
                None,
                &[(2, "a", "v2", 0), (1, "a", "v3", 0)],
            ),
            // The key is (id, name): (1, a) and (1, b) are different keys.
            (
                &[1, 1],
                &["a", "b"],
                &["x", "y"],
                Some(&[0, 0]),
                &[(1, "a", "x", 0), (1, "b", "y", 0)],
            ),
            // Insert, update, delete: the delete is what remains.
            (
                &[7, 7, 7],
                &["k", "k", "k"],
                &["i", "u", "d"],
                Some(&[0, 0, 1]),
                &[(7, "k", "d", 1)],
            ),
            // Delete then insert again: the insert remains.
            (
                &[7, 7, 8],
                &["k", "k", "k"],
                &["d", "again", "other"],
                Some(&[1, 0, 1]),
                &[(7, "k", "again", 0), (8, "k", "other", 1)],
            ),
        ];
        for (ids, names, values, ops, want) in cases {
            let got = collapse_by_key(&batch(ids, names, values, *ops), &keys).unwrap();
            let want: Vec<(i64, String, String, i8)> = want
                .iter()
                .map(|(i, n, v, o)| (*i, n.to_string(), v.to_string(), *o))
                .collect();
            assert_eq!(rows(&got), want, "{ids:?} {values:?}");
        }
        let collapsed = collapse_by_key(
            &batch(
                &[1, 1, 2],
                &["a", "a", "a"],
                &["x", "y", "z"],
                Some(&[0, 1, 0]),
            ),
            &keys,
        )
        .unwrap();
        assert_eq!(count_ops(&collapsed), (1, 1));
        let err =
            collapse_by_key(&batch(&[1], &["a"], &["x"], None), &["nope".to_string()]).unwrap_err();
        assert!(err.to_string().contains("key column 'nope'"), "{err}");
    }
}
