//! Plans of loads into keyed tables: the `__op` pseudo column and the model checks.

use super::*;
use crate::table_model::{OP_COLUMN, TableModel};

const PRIMARY: &str = r#"
location: file:///tmp/t
model: Primary
keys: [id]
columns:
  - {name: id, type: BIGINT, nullable: false}
  - {name: name, type: VARCHAR(20)}
"#;

fn plan(table_yaml: &str, job_extra: &str) -> Result<LoadPlan, PlanError> {
    let table: TableSpec = serde_yaml::from_str(table_yaml).unwrap();
    let job: RoutineLoadJobSpec = serde_yaml::from_str(&format!(
        "table: t\nkafka: {{brokerList: \"localhost:9092\", topic: t}}\n{job_extra}"
    ))
    .unwrap();
    LoadPlan::build(&job, "t", &table)
}

#[test]
fn op_column_is_planned_after_the_table_columns() {
    let cases: &[(&str, Option<&str>)] = &[
        // No __op: every row upserts.
        ("columns: [id, name]", None),
        // A source field named __op.
        ("columns: [id, name, __op]", Some("`__op`")),
        // An expression over other fields (a placeholder here).
        (
            "columns: [id, name, type, \"__op = if(type = 'DELETE', 1, 0)\"]",
            Some("(if(type = 'DELETE', 1, 0))"),
        ),
    ];
    for (columns, want) in cases {
        let p = plan(PRIMARY, columns).unwrap_or_else(|e| panic!("{columns}: {e}"));
        assert_eq!(p.key_model.model, TableModel::Primary);
        let names: Vec<&str> = p
            .table_schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        match want {
            None => {
                assert_eq!(p.op_column, None, "{columns}");
                assert_eq!(names, ["id", "name"]);
            }
            Some(inner) => {
                assert_eq!(p.op_column, Some(2), "{columns}");
                assert_eq!(names, ["id", "name", OP_COLUMN]);
                let op = &p.columns[2];
                assert!(!op.nullable);
                assert_eq!(op.column_type, ColumnType::TinyInt);
                let ColumnSource::Derived { sql, .. } = &op.source else {
                    panic!("{columns}: __op is not derived");
                };
                assert!(sql.contains(inner), "{columns}: {sql}");
            }
        }
    }
}

#[test]
fn op_and_models_refused_with_what_to_fix() {
    let duplicate = "location: file:///tmp/t\ncolumns:\n  - {name: id, type: BIGINT}\n";
    let unique = PRIMARY.replace("model: Primary", "model: Unique");
    let aggregate = "location: file:///tmp/t\nmodel: Aggregate\nkeys: [id]\ncolumns:\n  - {name: id, type: BIGINT, nullable: false}\n  - {name: n, type: BIGINT, aggregate: SUM}\n";
    let nullable_key = PRIMARY.replace("nullable: false", "nullable: true");
    let cases: &[(&str, &str, &str)] = &[
        (
            duplicate,
            "columns: [id, __op]",
            "COLUMNS names __op, but table 't' has model Duplicate: __op (upsert or delete) applies only to a Primary table",
        ),
        (
            &unique,
            "columns: [id, name, \"__op = 1\"]",
            "has model Unique",
        ),
        (aggregate, "columns: [id, n, __op]", "has model Aggregate"),
        (
            &nullable_key,
            "columns: [id, name]",
            "key column 'id' is nullable",
        ),
        (
            PRIMARY,
            "columns: [id, name, \"__op = nosuch + 1\"]",
            "unknown column 'nosuch'",
        ),
    ];
    for (table, columns, msg) in cases {
        let e = plan(table, columns).unwrap_err().to_string();
        assert!(e.contains(msg), "{columns}: {e}");
    }
    // Unique and Duplicate tables plan without __op.
    assert_eq!(
        plan(&unique, "columns: [id, name]").unwrap().op_column,
        None
    );
    assert_eq!(
        plan(duplicate, "").unwrap().key_model.model,
        TableModel::Duplicate
    );
}
