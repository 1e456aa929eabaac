//! Decodes one JSON message into rows of field texts: one object per message, or an array of
//! them with `stripOuterArray`; fields found by `jsonPaths` or by name, under `jsonRoot`.

use routine_load_api::ColumnType;
use routine_load_api::load_plan::{JsonPath, LoadPlan};
use serde_json::Value;

use super::error_row::reason;

/// The fields of one decoded row, or why the row can't load.
pub enum RowFields {
    /// One text per source field; None is NULL (a JSON null or a missing field).
    Fields(Vec<Option<Vec<u8>>>),
    /// The row is an error row.
    Invalid {
        reason: &'static str,
        column: Option<usize>,
    },
}

/// How a JSON value becomes text for one source field.
#[derive(Clone, Copy, PartialEq)]
enum FieldKind {
    /// JSON columns keep nested values as JSON text.
    Json,
    /// Text columns and placeholders take strings as they are, other values as JSON text.
    Text,
    /// Numbers take true/false as 1/0.
    Number,
    /// BOOLEAN, DATE, DATETIME.
    Other,
}

pub struct JsonDecoder {
    paths: Vec<JsonPath>,
    kinds: Vec<FieldKind>,
    root: Option<JsonPath>,
    strip_outer_array: bool,
}

impl JsonDecoder {
    pub fn new(plan: &LoadPlan) -> Self {
        Self {
            paths: plan
                .source_fields
                .iter()
                .map(|f| f.json_path.clone())
                .collect(),
            kinds: plan
                .source_fields
                .iter()
                .map(|f| match f.column_type {
                    Some(ColumnType::Json) => FieldKind::Json,
                    None => FieldKind::Text,
                    Some(t) if t.is_string() => FieldKind::Text,
                    Some(
                        ColumnType::TinyInt
                        | ColumnType::SmallInt
                        | ColumnType::Int
                        | ColumnType::BigInt
                        | ColumnType::LargeInt
                        | ColumnType::Float
                        | ColumnType::Double
                        | ColumnType::Decimal { .. },
                    ) => FieldKind::Number,
                    Some(_) => FieldKind::Other,
                })
                .collect(),
            root: plan.json.root.clone(),
            strip_outer_array: plan.json.strip_outer_array,
        }
    }

    /// Decodes a message into `rows`. An Err is a message that is not JSON at all: one error
    /// row with the reason.
    pub fn decode(&self, payload: &[u8], rows: &mut Vec<RowFields>) -> Result<(), String> {
        let text = std::str::from_utf8(payload).map_err(|_| reason::INVALID_UTF8.to_string())?;
        let document: Value =
            serde_json::from_str(text).map_err(|e| format!("{}: {e}", reason::INVALID_JSON))?;
        let root = match &self.root {
            Some(path) => match path.find(&document) {
                Some(v) => v,
                None => return Err(format!("JSON root {path} not found in the message")),
            },
            None => &document,
        };
        match (root, self.strip_outer_array) {
            (Value::Array(items), true) => {
                for item in items {
                    rows.push(self.row(item));
                }
            }
            (_, true) => {
                return Err(
                    "stripOuterArray is set but the message is not a JSON array".to_string()
                );
            }
            (Value::Array(_), false) => {
                return Err(
                    "the message is a JSON array: set stripOuterArray to load its elements as rows"
                        .to_string(),
                );
            }
            (row, false) => rows.push(self.row(row)),
        }
        Ok(())
    }

    fn row(&self, row: &Value) -> RowFields {
        let mut fields = Vec::with_capacity(self.paths.len());
        for (i, (path, kind)) in self.paths.iter().zip(&self.kinds).enumerate() {
            let text = match path.find(row) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.as_bytes().to_vec()),
                Some(Value::Number(n)) => Some(n.to_string().into_bytes()),
                Some(Value::Bool(b)) => Some(match (kind, b) {
                    (FieldKind::Number, true) => b"1".to_vec(),
                    (FieldKind::Number, false) => b"0".to_vec(),
                    (_, true) => b"true".to_vec(),
                    (_, false) => b"false".to_vec(),
                }),
                Some(v @ Value::Array(_)) => {
                    if *kind != FieldKind::Json {
                        return RowFields::Invalid {
                            reason: reason::ARRAY_NOT_SUPPORTED,
                            column: Some(i),
                        };
                    }
                    Some(v.to_string().into_bytes())
                }
                Some(v @ Value::Object(_)) => Some(v.to_string().into_bytes()),
            };
            fields.push(text);
        }
        RowFields::Fields(fields)
    }
}
