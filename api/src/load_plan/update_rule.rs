//! How a row of a load into a Primary Key table combines with the stored row of its key:
//! StarRocks' partial updates (`partial_update`) and conditional updates (`merge_condition`).
//!
//! - Partial update: a row whose key exists updates only the columns the job loads (a COLUMNS
//!   field or expression fills them); the other columns keep their stored values. A row whose
//!   key is new is inserted with the other columns at their default, NULL without one. Whether a
//!   key exists is only known when the batch is merged, so a NOT NULL column without a default
//!   that the job does not load could not be inserted: such a job is refused when it is planned
//!   (give the column a default or load it) rather than failing rows later.
//! - Conditional update: a row whose key exists replaces (or partially updates) the stored row
//!   only if its value in the condition column is greater than or equal to the stored one; NULL
//!   is lower than every value. A row whose key is new is inserted. Deletes are not conditional.
//!
//! Both apply only to Primary tables and may be combined (StarRocks allows it from v3.1.3).

use crate::column_type::ColumnType;
use crate::table_model::{KeyModel, TableModel};

use super::PlanError;

/// What a row whose key exists does to the stored row (Primary tables).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateRule {
    /// The value columns it updates, in table order; None: all of them (the whole row).
    pub updated_columns: Option<Vec<String>>,
    /// The column whose incoming value must be >= the stored one for the row to take effect.
    pub merge_condition: Option<String>,
}

impl UpdateRule {
    /// Whether rows replace the stored row whole and unconditionally (the default).
    pub fn is_plain(&self) -> bool {
        self.updated_columns.is_none() && self.merge_condition.is_none()
    }
}

/// A table column as the update rule sees it.
#[derive(Debug, Clone)]
pub(super) struct LoadedColumn<'a> {
    pub name: &'a str,
    pub column_type: ColumnType,
    /// A COLUMNS field or expression fills it (not a default or NULL).
    pub loaded: bool,
}

/// Checks `partialUpdate` and `mergeCondition` against the table's model and the job's columns.
pub(super) fn check(
    model: &KeyModel,
    table_name: &str,
    columns: &[LoadedColumn<'_>],
    partial_update: bool,
    merge_condition: Option<&str>,
) -> Result<UpdateRule, PlanError> {
    let outside = |option: &'static str| PlanError::UpdateOutsidePrimary {
        option,
        table: table_name.to_string(),
        model: model.model,
    };
    if model.model != TableModel::Primary {
        if partial_update {
            return Err(outside("partialUpdate"));
        }
        if merge_condition.is_some() {
            return Err(outside("mergeCondition"));
        }
        return Ok(UpdateRule::default());
    }
    let is_key = |name: &str| model.keys.iter().any(|k| k == name);
    let loaded = |name: &str| columns.iter().any(|c| c.name == name && c.loaded);
    let updated_columns = if partial_update {
        if let Some(key) = model.keys.iter().find(|k| !loaded(k)) {
            return Err(PlanError::PartialUpdateWithoutKey { key: key.clone() });
        }
        Some(
            columns
                .iter()
                .filter(|c| c.loaded && !is_key(c.name))
                .map(|c| c.name.to_string())
                .collect(),
        )
    } else {
        None
    };
    let merge_condition = match merge_condition.map(str::trim) {
        None => None,
        Some(name) => {
            let bad = |reason: String| PlanError::BadMergeCondition {
                column: name.to_string(),
                reason,
            };
            let Some(column) = columns.iter().find(|c| c.name == name) else {
                let values: Vec<&str> = columns
                    .iter()
                    .filter(|c| !is_key(c.name))
                    .map(|c| c.name)
                    .collect();
                return Err(bad(format!(
                    "not a column of table '{table_name}'; name one of its value columns: {}",
                    values.join(", ")
                )));
            };
            if is_key(name) {
                return Err(bad(
                    "a key column: rows of one key all hold the same key, so name a value column (a version or update time)".into(),
                ));
            }
            if !column.loaded {
                return Err(bad(
                    "the job does not load it, so every row would compare its default: add it to COLUMNS".into(),
                ));
            }
            if column.column_type == ColumnType::Json {
                return Err(bad(format!(
                    "type {} has no order to compare: name a number, date, time or text column",
                    column.column_type
                )));
            }
            Some(name.to_string())
        }
    };
    Ok(UpdateRule {
        updated_columns,
        merge_condition,
    })
}
