//! A table's key model (StarRocks' data models): how rows with the same key combine.
//!
//! `Duplicate` appends every row (today's behaviour and the default). `Primary` keeps one row per
//! key: a row whose key exists replaces it, and a row whose `__op` says delete removes it.
//! `Unique` keeps the last row per key (an upsert without deletes). `Aggregate` combines the value
//! columns of rows with the same key with each column's aggregate function.
//!
//! The model is validated here ([`validate`], pure, table-tested) and recorded in the Delta
//! table's configuration ([`KeyModel::configuration`]) when the table is created, so a reader
//! (or a worker opening the table) knows it without the `Table` object.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::column_type::ColumnType;
use crate::table::TableSpec;

/// The pseudo column a job's COLUMNS names to say whether a row upserts (`0` or `upsert`) or
/// deletes (`1` or `delete`) its key in a Primary Key table (StarRocks: `__op`).
pub const OP_COLUMN: &str = "__op";

/// `__op` value: the row inserts or replaces its key.
pub const OP_UPSERT: i8 = 0;
/// `__op` value: the row deletes its key.
pub const OP_DELETE: i8 = 1;

/// Delta table configuration key recording the model.
pub const MODEL_PROPERTY: &str = "routineload.model";
/// Delta table configuration key recording the key columns, comma-separated, in spec order.
pub const KEYS_PROPERTY: &str = "routineload.keys";
/// Delta table configuration key recording the aggregate functions, `column:FUNCTION` pairs
/// separated by commas (Aggregate tables only).
pub const AGGREGATES_PROPERTY: &str = "routineload.aggregates";

/// Most key columns a table may declare.
pub const MAX_KEYS: usize = 32;

/// How rows with the same key combine (StarRocks: the table's data model).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum TableModel {
    /// Every row is appended; `keys` (optional) only documents a sort key (StarRocks: DUPLICATE
    /// KEY). The default.
    #[default]
    Duplicate,
    /// One row per key: a row replaces the stored row with its key, or deletes it when its
    /// `__op` is `1`/`delete` (StarRocks: PRIMARY KEY).
    Primary,
    /// One row per key: the last row loaded for a key replaces the stored one (StarRocks: UNIQUE
    /// KEY).
    Unique,
    /// One row per key: each value column combines with its `aggregate` function (StarRocks:
    /// AGGREGATE KEY).
    Aggregate,
}

impl TableModel {
    /// Whether the table keeps one row per key.
    pub fn is_keyed(self) -> bool {
        self != TableModel::Duplicate
    }
}

impl fmt::Display for TableModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TableModel::Duplicate => "Duplicate",
            TableModel::Primary => "Primary",
            TableModel::Unique => "Unique",
            TableModel::Aggregate => "Aggregate",
        })
    }
}

impl std::str::FromStr for TableModel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "Duplicate" => TableModel::Duplicate,
            "Primary" => TableModel::Primary,
            "Unique" => TableModel::Unique,
            "Aggregate" => TableModel::Aggregate,
            other => {
                return Err(format!(
                    "unknown table model '{other}': use Duplicate, Primary, Unique or Aggregate"
                ));
            }
        })
    }
}

/// How an Aggregate table combines a value column of rows with the same key.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum AggregateFunction {
    /// The sum of the values.
    #[serde(rename = "SUM")]
    Sum,
    /// The largest value.
    #[serde(rename = "MAX")]
    Max,
    /// The smallest value.
    #[serde(rename = "MIN")]
    Min,
    /// The last value loaded.
    #[serde(rename = "REPLACE")]
    Replace,
    /// The last non-NULL value loaded.
    #[serde(rename = "REPLACE_IF_NOT_NULL")]
    ReplaceIfNotNull,
}

impl AggregateFunction {
    /// StarRocks' name.
    pub fn name(self) -> &'static str {
        match self {
            AggregateFunction::Sum => "SUM",
            AggregateFunction::Max => "MAX",
            AggregateFunction::Min => "MIN",
            AggregateFunction::Replace => "REPLACE",
            AggregateFunction::ReplaceIfNotNull => "REPLACE_IF_NOT_NULL",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "SUM" => AggregateFunction::Sum,
            "MAX" => AggregateFunction::Max,
            "MIN" => AggregateFunction::Min,
            "REPLACE" => AggregateFunction::Replace,
            "REPLACE_IF_NOT_NULL" => AggregateFunction::ReplaceIfNotNull,
            _ => return None,
        })
    }

    /// Whether the function applies to values of this type.
    fn accepts(self, ty: &ColumnType) -> bool {
        match self {
            AggregateFunction::Sum => matches!(
                ty,
                ColumnType::TinyInt
                    | ColumnType::SmallInt
                    | ColumnType::Int
                    | ColumnType::BigInt
                    | ColumnType::LargeInt
                    | ColumnType::Float
                    | ColumnType::Double
                    | ColumnType::Decimal { .. }
            ),
            AggregateFunction::Max | AggregateFunction::Min => !matches!(ty, ColumnType::Json),
            AggregateFunction::Replace | AggregateFunction::ReplaceIfNotNull => true,
        }
    }
}

/// A validated key model: what a load into the table must do per key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyModel {
    pub model: TableModel,
    /// Key columns in spec order (may be empty only for Duplicate).
    pub keys: Vec<String>,
    /// Aggregate value columns and their functions (Aggregate only).
    pub aggregates: BTreeMap<String, AggregateFunction>,
}

/// Why a Table's key model is invalid; each message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyModelError {
    #[error("model {model} needs keys: list the key columns in keys")]
    NoKeys { model: TableModel },
    #[error("keys lists {count} columns; at most {MAX_KEYS} are allowed")]
    TooManyKeys { count: usize },
    #[error("key '{key}' is not a column of the table")]
    UnknownKey { key: String },
    #[error("key '{key}' is listed more than once in keys")]
    DuplicateKey { key: String },
    #[error("key column '{key}' is nullable: key columns must be NOT NULL (set nullable: false)")]
    NullableKey { key: String },
    #[error(
        "key column '{key}' has type {column_type}, which can't be a key of a {model} table: use an integer, BOOLEAN, DATE, DATETIME, CHAR, VARCHAR or STRING{decimal}"
    )]
    KeyType {
        key: String,
        column_type: String,
        model: TableModel,
        decimal: &'static str,
    },
    #[error(
        "column '{column}' has aggregate {function}, but only value columns of an Aggregate table take one (this table is {model})"
    )]
    AggregateOutsideAggregateModel {
        column: String,
        function: &'static str,
        model: TableModel,
    },
    #[error("key column '{column}' has aggregate {function}: key columns take none")]
    AggregateOnKey {
        column: String,
        function: &'static str,
    },
    #[error(
        "value column '{column}' of an Aggregate table has no aggregate: give it one of SUM, MAX, MIN, REPLACE, REPLACE_IF_NOT_NULL"
    )]
    MissingAggregate { column: String },
    #[error("column '{column}' has type {column_type}, which {function} can't aggregate")]
    AggregateType {
        column: String,
        column_type: String,
        function: &'static str,
    },
    #[error(
        "column '{OP_COLUMN}' is reserved for the load operation (upsert or delete): rename it"
    )]
    ReservedColumn,
    #[error("column '{column}': {reason}")]
    BadColumnType { column: String, reason: String },
}

/// Checks a Table's model, keys and aggregate functions against its columns.
pub fn validate(spec: &TableSpec) -> Result<KeyModel, KeyModelError> {
    let model = spec.model;
    if spec.columns.iter().any(|c| c.name == OP_COLUMN) {
        return Err(KeyModelError::ReservedColumn);
    }
    if model.is_keyed() && spec.keys.is_empty() {
        return Err(KeyModelError::NoKeys { model });
    }
    if spec.keys.len() > MAX_KEYS {
        return Err(KeyModelError::TooManyKeys {
            count: spec.keys.len(),
        });
    }
    for (i, key) in spec.keys.iter().enumerate() {
        if spec.keys[..i].contains(key) {
            return Err(KeyModelError::DuplicateKey { key: key.clone() });
        }
        let Some(column) = spec.columns.iter().find(|c| &c.name == key) else {
            return Err(KeyModelError::UnknownKey { key: key.clone() });
        };
        let ty = column
            .parsed_type()
            .map_err(|e| KeyModelError::BadColumnType {
                column: key.clone(),
                reason: e.to_string(),
            })?;
        if !key_type_allowed(model, &ty) {
            return Err(KeyModelError::KeyType {
                key: key.clone(),
                column_type: column.column_type.clone(),
                model,
                decimal: if model == TableModel::Primary {
                    ""
                } else {
                    " or DECIMAL"
                },
            });
        }
        if model.is_keyed() && column.nullable {
            return Err(KeyModelError::NullableKey { key: key.clone() });
        }
    }
    let mut aggregates = BTreeMap::new();
    for column in &spec.columns {
        let is_key = spec.keys.contains(&column.name);
        match (column.aggregate, model, is_key) {
            (Some(f), TableModel::Aggregate, true) => {
                return Err(KeyModelError::AggregateOnKey {
                    column: column.name.clone(),
                    function: f.name(),
                });
            }
            (Some(f), TableModel::Aggregate, false) => {
                let ty = column
                    .parsed_type()
                    .map_err(|e| KeyModelError::BadColumnType {
                        column: column.name.clone(),
                        reason: e.to_string(),
                    })?;
                if !f.accepts(&ty) {
                    return Err(KeyModelError::AggregateType {
                        column: column.name.clone(),
                        column_type: column.column_type.clone(),
                        function: f.name(),
                    });
                }
                aggregates.insert(column.name.clone(), f);
            }
            (Some(f), _, _) => {
                return Err(KeyModelError::AggregateOutsideAggregateModel {
                    column: column.name.clone(),
                    function: f.name(),
                    model,
                });
            }
            (None, TableModel::Aggregate, false) => {
                return Err(KeyModelError::MissingAggregate {
                    column: column.name.clone(),
                });
            }
            (None, _, _) => {}
        }
    }
    Ok(KeyModel {
        model,
        keys: spec.keys.clone(),
        aggregates,
    })
}

/// Whether a column of this type can be a key of a table of this model. Floating-point values
/// don't compare exactly and JSON has no order; StarRocks' Primary Key tables don't take DECIMAL
/// keys either.
fn key_type_allowed(model: TableModel, ty: &ColumnType) -> bool {
    match ty {
        ColumnType::Float | ColumnType::Double | ColumnType::Json => false,
        ColumnType::Decimal { .. } => model != TableModel::Primary,
        _ => true,
    }
}

impl KeyModel {
    /// The Delta table configuration entries recording this model (none for a Duplicate table
    /// without keys, so tables created before key models existed read back as what they are).
    pub fn configuration(&self) -> Vec<(String, String)> {
        if self.model == TableModel::Duplicate && self.keys.is_empty() {
            return Vec::new();
        }
        let mut out = vec![
            (MODEL_PROPERTY.to_string(), self.model.to_string()),
            (KEYS_PROPERTY.to_string(), self.keys.join(",")),
        ];
        if !self.aggregates.is_empty() {
            let pairs: Vec<String> = self
                .aggregates
                .iter()
                .map(|(c, f)| format!("{c}:{}", f.name()))
                .collect();
            out.push((AGGREGATES_PROPERTY.to_string(), pairs.join(",")));
        }
        out
    }

    /// Reads the model a Delta table's configuration records (Duplicate without keys when it
    /// records none).
    pub fn from_configuration(configuration: &HashMap<String, String>) -> Result<Self, String> {
        let model = match configuration.get(MODEL_PROPERTY) {
            Some(m) => m.parse()?,
            None => TableModel::Duplicate,
        };
        let keys = configuration
            .get(KEYS_PROPERTY)
            .map(|k| {
                k.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let mut aggregates = BTreeMap::new();
        for pair in configuration
            .get(AGGREGATES_PROPERTY)
            .map(|a| a.split(',').filter(|s| !s.is_empty()).collect::<Vec<_>>())
            .unwrap_or_default()
        {
            let (column, function) = pair.split_once(':').ok_or_else(|| {
                format!("{AGGREGATES_PROPERTY} entry '{pair}' is not column:FUNCTION")
            })?;
            let function = AggregateFunction::parse(function).ok_or_else(|| {
                format!("{AGGREGATES_PROPERTY} entry '{pair}' names an unknown function")
            })?;
            aggregates.insert(column.to_string(), function);
        }
        Ok(KeyModel {
            model,
            keys,
            aggregates,
        })
    }

    /// What differs between the model a Delta table records and the one a spec declares, for a
    /// schema mismatch message; empty when they agree (the keys of two Duplicate models are not
    /// compared).
    pub fn differences(&self, spec: &KeyModel) -> Vec<String> {
        let mut out = Vec::new();
        if self.model != spec.model {
            out.push(format!(
                "model is {} in the table, {} in the spec",
                self.model, spec.model
            ));
        }
        // A Duplicate table's keys only document a sort key: they don't change what is stored.
        let both_duplicate =
            self.model == TableModel::Duplicate && spec.model == TableModel::Duplicate;
        if self.keys != spec.keys && !both_duplicate {
            out.push(format!(
                "keys are {:?} in the table, {:?} in the spec",
                self.keys, spec.keys
            ));
        }
        if self.aggregates != spec.aggregates {
            out.push(format!(
                "aggregates are {:?} in the table, {:?} in the spec",
                self.aggregates, spec.aggregates
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> TableSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    const COLUMNS: &str = r#"
location: file:///t
columns:
  - {name: id, type: BIGINT, nullable: false}
  - {name: name, type: VARCHAR(20), nullable: false}
  - {name: opt, type: INT}
  - {name: score, type: DOUBLE, nullable: false}
  - {name: price, type: "DECIMAL(10,2)", nullable: false}
  - {name: doc, type: JSON, nullable: false}
"#;

    fn with(extra: &str) -> TableSpec {
        spec(&format!("{COLUMNS}{extra}"))
    }

    #[test]
    fn validation_accepts_and_refuses_with_what_to_fix() {
        type Case<'a> = (&'a str, Result<(TableModel, &'a [&'a str]), &'a str>);
        let cases: &[Case] = &[
            ("", Ok((TableModel::Duplicate, &[]))),
            ("keys: [id]", Ok((TableModel::Duplicate, &["id"]))),
            (
                "model: Primary\nkeys: [id, name]",
                Ok((TableModel::Primary, &["id", "name"])),
            ),
            (
                "model: Unique\nkeys: [id]",
                Ok((TableModel::Unique, &["id"])),
            ),
            (
                "model: Unique\nkeys: [price]",
                Ok((TableModel::Unique, &["price"])),
            ),
            (
                "model: Primary",
                Err("model Primary needs keys: list the key columns in keys"),
            ),
            ("model: Unique\nkeys: []", Err("model Unique needs keys")),
            (
                "model: Primary\nkeys: [nope]",
                Err("key 'nope' is not a column of the table"),
            ),
            (
                "model: Primary\nkeys: [id, id]",
                Err("key 'id' is listed more than once"),
            ),
            (
                "model: Primary\nkeys: [opt]",
                Err(
                    "key column 'opt' is nullable: key columns must be NOT NULL (set nullable: false)",
                ),
            ),
            (
                "model: Primary\nkeys: [score]",
                Err("key column 'score' has type DOUBLE, which can't be a key of a Primary table"),
            ),
            (
                "model: Primary\nkeys: [doc]",
                Err("key column 'doc' has type JSON"),
            ),
            (
                "model: Primary\nkeys: [price]",
                Err("has type DECIMAL(10,2), which can't be a key of a Primary table"),
            ),
            (
                "keys: [score]",
                Err(
                    "key column 'score' has type DOUBLE, which can't be a key of a Duplicate table",
                ),
            ),
        ];
        for (extra, want) in cases {
            let got = validate(&with(extra));
            match (want, got) {
                (Ok((model, keys)), Ok(m)) => {
                    assert_eq!(
                        (m.model, m.keys.clone()),
                        (*model, keys.iter().map(|k| k.to_string()).collect()),
                        "{extra}"
                    );
                }
                (Err(msg), Err(e)) => assert!(e.to_string().contains(msg), "{extra}: {e}"),
                (want, got) => panic!("{extra}: want {want:?}, got {got:?}"),
            }
        }
        let primary_decimal = validate(&with("model: Primary\nkeys: [price]")).unwrap_err();
        assert!(
            primary_decimal
                .to_string()
                .ends_with("CHAR, VARCHAR or STRING"),
            "{primary_decimal}"
        );
    }

    #[test]
    fn aggregate_functions_only_on_aggregate_value_columns() {
        let agg = |cols: &str, extra: &str| {
            validate(&spec(&format!(
                "location: file:///t\ncolumns:\n{cols}{extra}"
            )))
        };
        let ok = agg(
            "  - {name: k, type: INT, nullable: false}\n  - {name: n, type: BIGINT, aggregate: SUM}\n  - {name: last, type: STRING, aggregate: REPLACE_IF_NOT_NULL}\n",
            "model: Aggregate\nkeys: [k]",
        )
        .unwrap();
        assert_eq!(
            ok.aggregates,
            BTreeMap::from([
                ("last".to_string(), AggregateFunction::ReplaceIfNotNull),
                ("n".to_string(), AggregateFunction::Sum)
            ])
        );
        let refused: &[(&str, &str, &str)] = &[
            (
                "  - {name: k, type: INT, nullable: false}\n  - {name: n, type: BIGINT}\n",
                "model: Aggregate\nkeys: [k]",
                "value column 'n' of an Aggregate table has no aggregate",
            ),
            (
                "  - {name: k, type: INT, nullable: false, aggregate: MAX}\n  - {name: n, type: BIGINT, aggregate: SUM}\n",
                "model: Aggregate\nkeys: [k]",
                "key column 'k' has aggregate MAX: key columns take none",
            ),
            (
                "  - {name: k, type: INT, nullable: false}\n  - {name: n, type: BIGINT, aggregate: SUM}\n",
                "model: Primary\nkeys: [k]",
                "column 'n' has aggregate SUM, but only value columns of an Aggregate table take one (this table is Primary)",
            ),
            (
                "  - {name: k, type: INT, nullable: false}\n  - {name: s, type: STRING, aggregate: SUM}\n",
                "model: Aggregate\nkeys: [k]",
                "column 's' has type STRING, which SUM can't aggregate",
            ),
            (
                "  - {name: k, type: INT, nullable: false}\n  - {name: __op, type: INT}\n",
                "model: Primary\nkeys: [k]",
                "column '__op' is reserved",
            ),
        ];
        for (cols, extra, msg) in refused {
            let e = agg(cols, extra).unwrap_err().to_string();
            assert!(e.contains(msg), "{cols}{extra}: {e}");
        }
    }

    #[test]
    fn configuration_round_trip() {
        let cases = [
            KeyModel::default(),
            KeyModel {
                model: TableModel::Primary,
                keys: vec!["a".into(), "b".into()],
                aggregates: BTreeMap::new(),
            },
            KeyModel {
                model: TableModel::Aggregate,
                keys: vec!["k".into()],
                aggregates: BTreeMap::from([
                    ("n".to_string(), AggregateFunction::Sum),
                    ("m".to_string(), AggregateFunction::Max),
                ]),
            },
        ];
        for m in cases {
            let conf: HashMap<String, String> = m.configuration().into_iter().collect();
            assert_eq!(KeyModel::from_configuration(&conf).unwrap(), m);
        }
        assert!(KeyModel::default().configuration().is_empty());
        let recorded = KeyModel::from_configuration(&HashMap::new()).unwrap();
        let spec = KeyModel {
            model: TableModel::Primary,
            keys: vec!["id".into()],
            aggregates: BTreeMap::new(),
        };
        let documented = KeyModel {
            keys: vec!["id".into()],
            ..KeyModel::default()
        };
        assert!(recorded.differences(&documented).is_empty());
        assert_eq!(
            recorded.differences(&spec),
            [
                "model is Duplicate in the table, Primary in the spec",
                "keys are [] in the table, [\"id\"] in the spec"
            ]
        );
    }
}
