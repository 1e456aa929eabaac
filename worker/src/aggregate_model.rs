//! Loads into Aggregate Key tables (StarRocks' Aggregate table): rows with the same key combine
//! into one, each value column with its aggregate function.
//!
//! | function | a batch's rows of one key | the stored row and the batch's row |
//! |---|---|---|
//! | SUM | the sum of the non-NULL values | their sum; a NULL side adds nothing |
//! | MAX / MIN | the largest / smallest non-NULL value | the larger / smaller; NULL loses |
//! | REPLACE | the last row's value (NULL included) | the batch's |
//! | REPLACE_IF_NOT_NULL | the last non-NULL value | the batch's unless NULL |
//!
//! "Last" is Kafka order: the engine keeps a batch's rows in message order and a task reads each
//! partition in offset order, so REPLACE keeps the newest value of a key as long as one key
//! always comes from one partition. SUM, MAX and MIN don't depend on order. A batch is first
//! reduced to one row per key ([`aggregate_by_key`]), then merged into the table on the keys
//! with [`combine`] for every value column, in the MERGE that also records the batch's offsets:
//! the batch is applied once, or not at all.
//!
//! A SUM is computed wider than its column (integers as DECIMAL(38,0), decimals with 38 digits)
//! and cast back exactly: a sum that no longer fits the column's type fails the batch, naming
//! the column, instead of wrapping around (a TINYINT counter past 127 is not made negative).

use std::collections::BTreeMap;
use std::sync::Arc;

use deltalake::arrow::array::UInt64Array;
use deltalake::arrow::compute::{CastOptions, cast_with_options};
use deltalake::arrow::datatypes::{DataType, Field};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::functions_aggregate::expr_fn::{max, min, sum};
use deltalake::datafusion::functions_aggregate::first_last::last_value_udaf;
use deltalake::datafusion::logical_expr::ExprFunctionExt;
// `ident`: an unqualified column, its name taken as it is (no parsing of dots or case).
use deltalake::datafusion::prelude::{Expr, SessionContext, cast, ident};
use routine_load_api::table_model::AggregateFunction;

use crate::key_model::with_column;

/// Column of the message order, added while a batch is aggregated.
const SEQ_COLUMN: &str = "__routine_load_seq";

/// One row per key of `batch`, each value column combined with its function (`aggregates`);
/// columns keep their types and the batch's order of columns.
pub async fn aggregate_by_key(
    batch: &RecordBatch,
    keys: &[String],
    aggregates: &BTreeMap<String, AggregateFunction>,
) -> Result<RecordBatch, DataFusionError> {
    let schema = batch.schema();
    let numbered = with_column(
        batch,
        Field::new(SEQ_COLUMN, DataType::UInt64, false),
        Arc::new(UInt64Array::from_iter_values(0..batch.num_rows() as u64)),
    )?;
    let order = || vec![ident(SEQ_COLUMN).sort(true, false)];
    let mut aggs = Vec::new();
    for f in schema.fields() {
        let name = f.name();
        if keys.contains(name) {
            continue;
        }
        let c = ident(name);
        let e = match aggregates
            .get(name)
            .copied()
            .unwrap_or(AggregateFunction::Replace)
        {
            AggregateFunction::Sum => sum(cast(c, sum_type(f.data_type()))),
            AggregateFunction::Max => max(c),
            AggregateFunction::Min => min(c),
            AggregateFunction::Replace => {
                last_value_udaf().call(vec![c]).order_by(order()).build()?
            }
            AggregateFunction::ReplaceIfNotNull => last_value_udaf()
                .call(vec![c.clone()])
                .order_by(order())
                .filter(c.is_not_null())
                .build()?,
        };
        aggs.push(e.alias(name));
    }
    let groups: Vec<Expr> = keys.iter().map(ident).collect();
    let out = SessionContext::new()
        .read_batch(numbered)?
        .aggregate(groups, aggs)?
        .collect()
        .await?;
    // Back to the batch's layout: its column order and types (SUM was computed wider; a sum
    // that doesn't fit the column's type is an error, never a wrapped value).
    let Some(first) = out.first() else {
        return Ok(RecordBatch::new_empty(schema));
    };
    let merged = deltalake::arrow::compute::concat_batches(&first.schema(), &out)?;
    if merged.num_rows() == 0 {
        return Ok(RecordBatch::new_empty(schema));
    }
    let exact = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    let mut columns = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        let c = merged.column_by_name(f.name()).ok_or_else(|| {
            DataFusionError::Internal(format!("column '{}' missing after aggregation", f.name()))
        })?;
        columns.push(if c.data_type() == f.data_type() {
            c.clone()
        } else {
            cast_with_options(c.as_ref(), f.data_type(), &exact).map_err(|e| {
                DataFusionError::Execution(format!(
                    "the aggregate of column '{}' does not fit its type {}: {e}",
                    f.name(),
                    f.data_type()
                ))
            })?
        });
    }
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// The type a SUM of a `column` type is computed in: wide enough that adding two values of the
/// column never overflows (integers, LARGEINT included, in DECIMAL(38,0); decimals in 38 digits
/// of the same scale); floats as they are.
pub fn sum_type(column: &DataType) -> DataType {
    const WIDEST: u8 = 38;
    match column {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            DataType::Decimal128(WIDEST, 0)
        }
        DataType::Decimal128(_, scale) => DataType::Decimal128(WIDEST, *scale),
        other => other.clone(),
    }
}

/// The value a MERGE writes for a column of type `column` with `function`, from the `stored`
/// row's value and the `incoming` (aggregated) row's. A SUM that doesn't fit `column` is an
/// error of the MERGE (an exact cast), never a wrapped or NULL value.
pub fn combine(
    function: AggregateFunction,
    column: &DataType,
    stored: Expr,
    incoming: Expr,
) -> Expr {
    use deltalake::datafusion::prelude::{coalesce, when};
    let either_null = |otherwise: Expr| {
        when(incoming.clone().is_null(), stored.clone())
            .when(stored.clone().is_null(), incoming.clone())
            .otherwise(otherwise)
            .expect("a CASE with WHEN arms")
    };
    match function {
        AggregateFunction::Sum => {
            let wide = sum_type(column);
            let total = cast(stored.clone(), wide.clone()) + cast(incoming.clone(), wide);
            either_null(cast(total, column.clone()))
        }
        AggregateFunction::Max => either_null(
            when(incoming.clone().gt(stored.clone()), incoming.clone())
                .otherwise(stored.clone())
                .expect("a CASE with a WHEN arm"),
        ),
        AggregateFunction::Min => either_null(
            when(incoming.clone().lt(stored.clone()), incoming.clone())
                .otherwise(stored.clone())
                .expect("a CASE with a WHEN arm"),
        ),
        AggregateFunction::Replace => incoming,
        AggregateFunction::ReplaceIfNotNull => coalesce(vec![incoming, stored]),
    }
}

#[cfg(test)]
mod tests {
    use deltalake::arrow::array::{Array, Int32Array, Int64Array, StringArray};
    use deltalake::arrow::datatypes::Schema;

    use super::*;

    /// Rows (key, value) of one value column with `function`, aggregated: (key, value) sorted.
    async fn aggregated(
        function: AggregateFunction,
        rows: &[(&str, Option<i32>)],
    ) -> Vec<(String, Option<i32>)> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Int32, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int32Array::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap();
        let out = aggregate_by_key(
            &batch,
            &["k".to_string()],
            &BTreeMap::from([("v".to_string(), function)]),
        )
        .await
        .unwrap();
        assert_eq!(
            out.schema(),
            schema,
            "{function:?}: the batch's layout and types"
        );
        let k = out
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let v = out.column(1).as_any().downcast_ref::<Int32Array>().unwrap();
        let mut got: Vec<(String, Option<i32>)> = (0..out.num_rows())
            .map(|i| (k.value(i).to_string(), v.is_valid(i).then(|| v.value(i))))
            .collect();
        got.sort();
        got
    }

    #[test]
    fn sums_are_computed_wider_than_their_column() {
        use DataType::*;
        for (column, wide) in [
            (Int8, Decimal128(38, 0)),
            (Int16, Decimal128(38, 0)),
            (Int32, Decimal128(38, 0)),
            (Int64, Decimal128(38, 0)),
            (Decimal128(38, 0), Decimal128(38, 0)),
            (Decimal128(10, 2), Decimal128(38, 2)),
            (Float32, Float32),
            (Float64, Float64),
        ] {
            assert_eq!(sum_type(&column), wide, "{column}");
        }
    }

    #[tokio::test]
    async fn rows_of_a_key_combine_with_the_columns_function() {
        use AggregateFunction::*;
        let rows: &[(&str, Option<i32>)] = &[
            ("a", Some(3)),
            ("b", None),
            ("a", None),
            ("a", Some(7)),
            ("c", Some(1)),
            ("a", Some(-2)),
            ("c", None),
        ];
        let s = |k: &str, v: Option<i32>| (k.to_string(), v);
        // (function, expected per key)
        let cases = [
            (Sum, vec![s("a", Some(8)), s("b", None), s("c", Some(1))]),
            (Max, vec![s("a", Some(7)), s("b", None), s("c", Some(1))]),
            (Min, vec![s("a", Some(-2)), s("b", None), s("c", Some(1))]),
            (Replace, vec![s("a", Some(-2)), s("b", None), s("c", None)]),
            (
                ReplaceIfNotNull,
                vec![s("a", Some(-2)), s("b", None), s("c", Some(1))],
            ),
        ];
        for (function, want) in cases {
            assert_eq!(aggregated(function, rows).await, want, "{function:?}");
        }
        assert!(aggregated(Sum, &[]).await.is_empty(), "an empty batch");
    }

    #[tokio::test]
    async fn a_sum_beyond_the_column_type_is_an_error() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Int32, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 1])),
                Arc::new(Int32Array::from(vec![i32::MAX, 1])),
            ],
        )
        .unwrap();
        let aggregates = BTreeMap::from([("v".to_string(), AggregateFunction::Sum)]);
        let e = aggregate_by_key(&batch, &["k".to_string()], &aggregates).await;
        assert!(e.is_err(), "{e:?}");
    }
}
