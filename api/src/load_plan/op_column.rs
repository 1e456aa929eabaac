//! The `__op` pseudo column of a load into a Primary Key table (StarRocks: `__op` in COLUMNS):
//! a source field named `__op` or an expression `__op = ...` says per row whether it upserts
//! (`0` or `upsert`) or deletes (`1` or `delete`) its key.
//!
//! The plan appends `__op` to the written columns as a NOT NULL TINYINT derived from the
//! source, so a row whose operation is neither value becomes an error row like any other value
//! that doesn't convert, and the batch the worker merges carries one decoded operation per row.

use std::sync::Arc;

use deltalake::datafusion::prelude::SessionContext;

use super::{
    ColumnSource, ColumnsEntry, CompileError, PlanError, PlannedColumn, compile, converts_to, names,
};
use crate::column_type::{ColumnType, SchemaRef};
use crate::table_model::{KeyModel, OP_COLUMN, TableModel};

/// The name WHERE sees the text of an `__op` source field under (`__op` itself is the decoded
/// operation there, as in the table's rows).
pub(super) const OP_SOURCE_TEXT: &str = "__op_text";

/// Where a job's `__op` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum OpSource {
    /// A source field named `__op`.
    Field,
    /// `__op = <sql>` in COLUMNS.
    Expression(String),
}

/// Takes the `__op` entry out of COLUMNS: an expression is not a table column, so it leaves the
/// entries; a source field stays (it is read from each message as text).
pub(super) fn take_op_entry(entries: &mut Vec<ColumnsEntry>) -> Option<OpSource> {
    let at = entries.iter().position(|e| e.name() == OP_COLUMN)?;
    match &entries[at] {
        ColumnsEntry::Field(_) => Some(OpSource::Field),
        ColumnsEntry::Derived { .. } => match entries.remove(at) {
            ColumnsEntry::Derived { sql, .. } => Some(OpSource::Expression(sql)),
            ColumnsEntry::Field(_) => None,
        },
    }
}

/// Whether a job can load into a table of this model: `__op` only into a Primary Key table.
pub(super) fn check_model(
    model: &KeyModel,
    op: Option<&OpSource>,
    table_name: &str,
) -> Result<(), PlanError> {
    if op.is_some() && model.model != TableModel::Primary {
        return Err(PlanError::OpOutsidePrimary {
            table: table_name.to_string(),
            model: model.model,
        });
    }
    Ok(())
}

/// The SQL decoding an operation: `0`/`upsert` is 0, `1`/`delete` is 1 (any case, spaces
/// trimmed), anything else NULL (which the NOT NULL `__op` column turns into an error row).
pub(super) fn op_sql(source: &OpSource) -> String {
    let inner = match source {
        OpSource::Field => format!("`{OP_COLUMN}`"),
        OpSource::Expression(sql) => format!("({sql})"),
    };
    format!(
        "CASE lower(trim(CAST({inner} AS VARCHAR))) \
         WHEN '0' THEN 0 WHEN 'upsert' THEN 0 WHEN '1' THEN 1 WHEN 'delete' THEN 1 END"
    )
}

/// The planned `__op` column: NOT NULL TINYINT, appended after the table's columns.
pub(super) fn planned(
    session: &SessionContext,
    source: &OpSource,
    source_schema: &SchemaRef,
) -> Result<PlannedColumn, PlanError> {
    let shown = match source {
        OpSource::Field => OP_COLUMN.to_string(),
        OpSource::Expression(sql) => sql.clone(),
    };
    let sql = op_sql(source);
    let expr = compile(session, &sql, source_schema).map_err(|e| match e {
        CompileError::UnknownColumn(unknown) => PlanError::UnknownExpressionColumn {
            column: OP_COLUMN.to_string(),
            unknown,
            known: names(source_schema),
        },
        CompileError::Invalid(reason) => PlanError::BadExpression {
            column: OP_COLUMN.to_string(),
            expr: shown.clone(),
            reason,
        },
    })?;
    let produced = expr
        .data_type(source_schema)
        .map_err(|e| PlanError::BadExpression {
            column: OP_COLUMN.to_string(),
            expr: shown.clone(),
            reason: e.to_string(),
        })?;
    if !converts_to(&produced, &ColumnType::TinyInt) {
        return Err(PlanError::UnconvertibleType {
            column: OP_COLUMN.to_string(),
            produced: produced.to_string(),
            column_type: ColumnType::TinyInt.to_string(),
        });
    }
    Ok(PlannedColumn {
        name: OP_COLUMN.to_string(),
        column_type: ColumnType::TinyInt,
        nullable: false,
        source: ColumnSource::Derived {
            sql,
            expr: Arc::clone(&expr),
        },
    })
}
