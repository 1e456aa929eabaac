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
//!
//! With a merge condition (StarRocks `merge_condition`), rows still apply one after another: an
//! upsert replaces the key's row only if its condition value is >= the current one (NULL lowest),
//! a delete is unconditional. The surviving row of a key is then the upsert with the largest
//! condition value (the later one among equals) after the last delete. A row that follows a
//! delete of its key in the batch replaces the stored row whole and unconditionally (the stored
//! row is gone by then); [`REPLACES_COLUMN`] marks it for the merge. Partial updates use the same
//! mark: such a row is a new row, its columns not loaded take their defaults.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef, BooleanArray, Int8Array, UInt32Array};
use deltalake::arrow::compute::take;
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::arrow::error::ArrowError;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::arrow::row::{RowConverter, Rows, SortField};
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

/// Column of a collapsed batch (with a merge condition or a partial update): the row follows a
/// delete of its key in the batch, so it replaces the stored row whole and unconditionally.
pub const REPLACES_COLUMN: &str = "__routine_load_replaces";

/// The row of a key that survives a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Survivor {
    /// Index of the row in the batch.
    pub row: u32,
    /// An earlier row of the batch deleted the key: this upsert replaces the stored row whole
    /// and unconditionally.
    pub replaces: bool,
}

/// The surviving row of every key when the rows apply one after another, in ascending row
/// order: a delete is unconditional; an upsert replaces the key's current row when
/// `at_least(upsert, current)` (the merge condition; always true without one).
pub fn survivors<K: Eq + std::hash::Hash>(
    keys: impl IntoIterator<Item = K>,
    ops: &[Op],
    at_least: impl Fn(u32, u32) -> bool,
) -> Vec<Survivor> {
    let mut current: HashMap<K, Survivor> = HashMap::new();
    for (i, key) in keys.into_iter().enumerate() {
        let row = i as u32;
        let op = ops.get(i).copied().unwrap_or(Op::Upsert);
        let next = match (op, current.get(&key)) {
            (Op::Delete, _) | (Op::Upsert, None) => Survivor {
                row,
                replaces: false,
            },
            (Op::Upsert, Some(held)) if ops.get(held.row as usize) == Some(&Op::Delete) => {
                Survivor {
                    row,
                    replaces: true,
                }
            }
            (Op::Upsert, Some(held)) if at_least(row, held.row) => Survivor {
                row,
                replaces: held.replaces,
            },
            (Op::Upsert, Some(held)) => *held,
        };
        current.insert(key, next);
    }
    let mut out: Vec<Survivor> = current.into_values().collect();
    out.sort_unstable_by_key(|s| s.row);
    out
}

/// One row per key of `batch` with the `__op` column (all upserts when the batch has none):
/// the last one, or with `condition` (a column of the batch) the one [`survivors`] picks. With
/// `marked`, the batch also gets [`REPLACES_COLUMN`]. `keys` name columns of the batch.
pub fn collapse_by_key(
    batch: &RecordBatch,
    keys: &[String],
    condition: Option<&str>,
    marked: bool,
) -> Result<RecordBatch, ArrowError> {
    let batch = with_op_column(batch)?;
    let column = |name: &str, what: &str| {
        batch.column_by_name(name).cloned().ok_or_else(|| {
            ArrowError::SchemaError(format!("{what} column '{name}' is not in the batch"))
        })
    };
    let key_columns: Vec<ArrayRef> = keys
        .iter()
        .map(|k| column(k, "key"))
        .collect::<Result<_, _>>()?;
    let rows = row_format(&key_columns)?;
    let op = column(OP_COLUMN, "operation")?;
    let op = op
        .as_any()
        .downcast_ref::<Int8Array>()
        .ok_or_else(|| ArrowError::SchemaError(format!("column '{OP_COLUMN}' is not TINYINT")))?;
    let ops: Vec<Op> = (0..op.len())
        .map(|i| {
            if is_delete(op, i) {
                Op::Delete
            } else {
                Op::Upsert
            }
        })
        .collect();
    // The row format orders values as the column sorts ascending, NULL first (lowest).
    let condition = condition
        .map(|name| row_format(&[column(name, "merge condition")?]))
        .transpose()?;
    let survivors = survivors(rows.iter(), &ops, |a, b| {
        condition
            .as_ref()
            .is_none_or(|values| values.row(a as usize) >= values.row(b as usize))
    });
    if !marked && survivors.len() == batch.num_rows() {
        // Every key once: the survivors are all the rows, in order.
        return Ok(batch);
    }
    let indices = UInt32Array::from_iter_values(survivors.iter().map(|s| s.row));
    let columns = batch
        .columns()
        .iter()
        .map(|c| take(c.as_ref(), &indices, None))
        .collect::<Result<Vec<_>, _>>()?;
    let collapsed = RecordBatch::try_new(batch.schema(), columns)?;
    if !marked {
        return Ok(collapsed);
    }
    with_column(
        &collapsed,
        Field::new(REPLACES_COLUMN, DataType::Boolean, false),
        Arc::new(BooleanArray::from_iter(
            survivors.iter().map(|s| Some(s.replaces)),
        )),
    )
}

/// How many rows of a collapsed batch replace the stored row whole ([`REPLACES_COLUMN`]).
pub fn count_replaces(batch: &RecordBatch) -> usize {
    batch
        .column_by_name(REPLACES_COLUMN)
        .and_then(|c| c.as_any().downcast_ref::<BooleanArray>())
        .map_or(0, |b| b.true_count())
}

/// The batch with an `__op` column: its own, or one of upserts appended.
fn with_op_column(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    if batch.column_by_name(OP_COLUMN).is_some() {
        return Ok(batch.clone());
    }
    with_column(
        batch,
        Field::new(OP_COLUMN, DataType::Int8, false),
        Arc::new(Int8Array::from(vec![OP_UPSERT; batch.num_rows()])),
    )
}

/// `batch` with `column` appended as `field`.
pub(crate) fn with_column(
    batch: &RecordBatch,
    field: Field,
    column: ArrayRef,
) -> Result<RecordBatch, ArrowError> {
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(field);
    let mut columns = batch.columns().to_vec();
    columns.push(column);
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// `columns` in the row format, comparable row against row.
fn row_format(columns: &[ArrayRef]) -> Result<Rows, ArrowError> {
    let converter = RowConverter::new(
        columns
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect(),
    )?;
    converter.convert_columns(columns)
}

/// Whether row `i` of an `__op` column deletes its key (anything else upserts).
fn is_delete(op: &Int8Array, i: usize) -> bool {
    op.is_valid(i) && Op::from_code(op.value(i)) == Some(Op::Delete)
}

/// How many rows of a collapsed batch upsert and how many delete.
pub fn count_ops(batch: &RecordBatch) -> (usize, usize) {
    let Some(op) = batch
        .column_by_name(OP_COLUMN)
        .and_then(|c| c.as_any().downcast_ref::<Int8Array>())
    else {
        return (batch.num_rows(), 0);
    };
    let deletes = (0..op.len()).filter(|&i| is_delete(op, i)).count();
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
            let rows: Vec<u32> = survivors(keys.iter(), &[], |_, _| true)
                .iter()
                .map(|s| s.row)
                .collect();
            assert_eq!(rows, *want, "{keys:?}");
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

    /// Rows applied one after another with a merge condition: (key, op, condition value) per
    /// row; the surviving (row, replaces) per key.
    #[test]
    fn survivors_with_a_merge_condition_equal_rows_applied_one_by_one() {
        const U: Op = Op::Upsert;
        const D: Op = Op::Delete;
        type Case<'a> = (&'a [(&'a str, Op, Option<i64>)], &'a [(u32, bool)]);
        let cases: &[Case] = &[
            (&[], &[]),
            // The largest condition value wins, wherever it is.
            (
                &[("a", U, Some(3)), ("a", U, Some(1)), ("a", U, Some(2))],
                &[(0, false)],
            ),
            (
                &[("a", U, Some(1)), ("a", U, Some(3)), ("a", U, Some(2))],
                &[(1, false)],
            ),
            // Ties: the later row.
            (&[("a", U, Some(2)), ("a", U, Some(2))], &[(1, false)]),
            // NULL is lower than any value; two NULLs tie.
            (&[("a", U, Some(0)), ("a", U, None)], &[(0, false)]),
            (&[("a", U, None), ("a", U, Some(-5))], &[(1, false)]),
            (&[("a", U, None), ("a", U, None)], &[(1, false)]),
            // Keys are independent.
            (
                &[
                    ("a", U, Some(5)),
                    ("b", U, Some(1)),
                    ("a", U, Some(4)),
                    ("b", U, Some(2)),
                ],
                &[(0, false), (3, false)],
            ),
            // A delete is unconditional, whatever the condition values before it.
            (&[("a", U, Some(9)), ("a", D, Some(1))], &[(1, false)]),
            // After a delete, the next upsert replaces unconditionally, and later upserts still
            // compare with it.
            (
                &[
                    ("a", U, Some(9)),
                    ("a", D, None),
                    ("a", U, Some(1)),
                    ("a", U, Some(0)),
                ],
                &[(2, true)],
            ),
            (
                &[("a", D, None), ("a", U, Some(1)), ("a", U, Some(4))],
                &[(2, true)],
            ),
            // A delete after the replacement: the delete.
            (
                &[("a", D, None), ("a", U, Some(1)), ("a", D, None)],
                &[(2, false)],
            ),
        ];
        for (rows, want) in cases {
            let ops: Vec<Op> = rows.iter().map(|r| r.1).collect();
            let got = survivors(rows.iter().map(|r| r.0), &ops, |a, b| {
                rows[a as usize].2 >= rows[b as usize].2
            });
            let got: Vec<(u32, bool)> = got.iter().map(|s| (s.row, s.replaces)).collect();
            assert_eq!(got, *want, "{rows:?}");
        }
    }

    /// The collapse with the condition column of a real batch (a string column: text order),
    /// and the mark of rows that replace.
    #[test]
    fn collapse_with_a_merge_condition_keeps_the_newest_row() {
        let keys = vec!["id".to_string()];
        // Key 1: the largest value, the later of two equal ones (name b). Key 2: a delete, then
        // the row after it, which replaces.
        let b = batch(
            &[1, 1, 1, 1, 1, 2, 2, 2],
            &["a", "a", "a", "b", "a", "a", "a", "a"],
            &[
                "2024-02", "2024-01", "2024-03", "2024-03", "2024-00", "9", "0", "1",
            ],
            Some(&[0, 0, 0, 0, 0, 0, 1, 0]),
        );
        let got = collapse_by_key(&b, &keys, Some("v"), true).unwrap();
        assert_eq!(
            rows(&got),
            [
                (1, "b".to_string(), "2024-03".to_string(), 0),
                (2, "a".to_string(), "1".to_string(), 0)
            ]
        );
        assert_eq!(count_replaces(&got), 1);
        let marks = got
            .column_by_name(REPLACES_COLUMN)
            .unwrap()
            .as_any()
            .downcast_ref::<BooleanArray>()
            .unwrap();
        assert_eq!(marks.iter().collect::<Vec<_>>(), [Some(false), Some(true)]);
        // Without a condition: the last rows; unmarked batches have no mark column.
        let got = collapse_by_key(&b, &keys, None, false).unwrap();
        assert_eq!(rows(&got)[0].2, "2024-00");
        assert!(got.column_by_name(REPLACES_COLUMN).is_none());
        let err = collapse_by_key(&b, &keys, Some("nope"), true).unwrap_err();
        assert!(
            err.to_string().contains("merge condition column 'nope'"),
            "{err}"
        );
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
            let got =
                collapse_by_key(&batch(ids, names, values, *ops), &keys, None, false).unwrap();
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
            None,
            false,
        )
        .unwrap();
        assert_eq!(count_ops(&collapsed), (1, 1));
        let err = collapse_by_key(
            &batch(&[1], &["a"], &["x"], None),
            &["nope".to_string()],
            None,
            false,
        )
        .unwrap_err();
        assert!(err.to_string().contains("key column 'nope'"), "{err}");
    }
}
