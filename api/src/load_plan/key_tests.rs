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

const VERSIONED: &str = r#"
location: file:///tmp/t
model: Primary
keys: [id]
columns:
  - {name: id, type: BIGINT, nullable: false}
  - {name: version, type: BIGINT}
  - {name: name, type: VARCHAR(20)}
  - {name: score, type: INT, nullable: false, default: "0"}
  - {name: doc, type: JSON}
"#;

/// partialUpdate and mergeCondition resolved to the columns a matched row updates and the
/// condition column.
#[test]
fn update_rules_planned_from_partial_update_and_merge_condition() {
    type Case<'a> = (&'a str, Option<&'a [&'a str]>, Option<&'a str>);
    let cases: &[Case] = &[
        ("columns: [id, name]", None, None),
        (
            "columns: [id, name]\npartialUpdate: true",
            Some(&["name"]),
            None,
        ),
        // A derived column is loaded; the keys are not among the updated columns.
        (
            "columns: [id, n, \"name = upper(n)\", version]\npartialUpdate: true",
            Some(&["version", "name"]),
            None,
        ),
        (
            "columns: [id, version, name]\nmergeCondition: version",
            None,
            Some("version"),
        ),
        (
            "columns: [id, version, score, __op]\npartialUpdate: true\nmergeCondition: version",
            Some(&["version", "score"]),
            Some("version"),
        ),
    ];
    for (job, updated, condition) in cases {
        let p = plan(VERSIONED, job).unwrap_or_else(|e| panic!("{job}: {e}"));
        let want = UpdateRule {
            updated_columns: updated.map(|u| u.iter().map(|c| c.to_string()).collect()),
            merge_condition: condition.map(str::to_string),
        };
        assert_eq!(p.update, want, "{job}");
        assert_eq!(
            p.update.is_plain(),
            updated.is_none() && condition.is_none()
        );
    }
}

#[test]
fn update_rules_refused_with_what_to_fix() {
    let duplicate = "location: file:///tmp/t\ncolumns:\n  - {name: id, type: BIGINT}\n  - {name: version, type: BIGINT}\n";
    let unique = VERSIONED.replace("model: Primary", "model: Unique");
    let aggregate = "location: file:///tmp/t\nmodel: Aggregate\nkeys: [id]\ncolumns:\n  - {name: id, type: BIGINT, nullable: false}\n  - {name: version, type: BIGINT, aggregate: MAX}\n";
    let required = VERSIONED.replace("default: \"0\"", "");
    let cases: &[(&str, &str, &str)] = &[
        (
            duplicate,
            "columns: [id, version]\npartialUpdate: true",
            "partialUpdate applies only to a Primary table, but table 't' has model Duplicate: remove partialUpdate from the job",
        ),
        (
            &unique,
            "columns: [id, version]\npartialUpdate: true",
            "has model Unique",
        ),
        (
            aggregate,
            "columns: [id, version]\nmergeCondition: version",
            "mergeCondition applies only to a Primary table, but table 't' has model Aggregate",
        ),
        (
            &unique,
            "columns: [id, version]\nmergeCondition: version",
            "mergeCondition applies only to a Primary table, but table 't' has model Unique",
        ),
        (
            VERSIONED,
            "columns: [version, name]\npartialUpdate: true",
            "partialUpdate: key column 'id' is not loaded, so rows can't find their stored row: add it to COLUMNS",
        ),
        (
            VERSIONED,
            "columns: [id, name]\nmergeCondition: nosuch",
            "mergeCondition 'nosuch': not a column of table 't'; name one of its value columns: version, name, score, doc",
        ),
        (
            VERSIONED,
            "columns: [id, name]\nmergeCondition: id",
            "mergeCondition 'id': a key column",
        ),
        (
            VERSIONED,
            "columns: [id, name]\nmergeCondition: version",
            "mergeCondition 'version': the job does not load it",
        ),
        (
            VERSIONED,
            "columns: [id, doc]\nmergeCondition: doc",
            "mergeCondition 'doc': type JSON has no order to compare",
        ),
        // A NOT NULL column without a default that a partial update does not load: a new key
        // could not be inserted, so the job is refused when planned.
        (
            &required,
            "columns: [id, name]\npartialUpdate: true",
            "partialUpdate: column 'score' is NOT NULL without a default and the job does not load it, so a row with a new key could not be inserted: give it a default",
        ),
    ];
    for (table, job, msg) in cases {
        let e = plan(table, job)
            .err()
            .unwrap_or_else(|| panic!("{job}: planned, but should be refused with '{msg}'"))
            .to_string();
        assert!(e.contains(msg), "{job}: {e}");
    }
}
