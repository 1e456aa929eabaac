//! Decodes one JSON message into rows of field texts: one object per message, or an array of
//! them with `stripOuterArray`; fields found by `jsonPaths` or by name, under `jsonRoot`.

use std::collections::HashMap;
use std::fmt;

use routine_load_api::ColumnType;
use routine_load_api::load_plan::{JsonPath, LoadPlan, Step};
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::error_row::reason;

/// The fields of one decoded row, or why the row can't load.
#[derive(Debug, PartialEq)]
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
    /// When every field reads one top-level member (fields matched by name, or `$.name` paths)
    /// and there is no jsonRoot or stripOuterArray: member name -> the fields it feeds. Such
    /// messages are decoded in one pass without building a `Value` tree.
    members: Option<HashMap<String, Vec<usize>>>,
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
            members: None,
        }
        .with_member_index()
    }

    fn with_member_index(mut self) -> Self {
        if self.root.is_some() || self.strip_outer_array {
            return self;
        }
        let mut members: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, path) in self.paths.iter().enumerate() {
            match path.steps() {
                [Step::Key(name)] => members.entry(name.clone()).or_default().push(i),
                _ => return self,
            }
        }
        self.members = Some(members);
        self
    }

    /// Decodes a message into `rows`. An Err is a message that is not JSON at all: one error
    /// row with the reason.
    pub fn decode(&self, payload: &[u8], rows: &mut Vec<RowFields>) -> Result<(), String> {
        let text = std::str::from_utf8(payload).map_err(|_| reason::INVALID_UTF8.to_string())?;
        if let Some(members) = &self.members {
            let mut de = serde_json::Deserializer::from_str(text);
            let flat = FlatRow {
                members,
                kinds: &self.kinds,
            }
            .deserialize(&mut de)
            .and_then(|row| de.end().map(|()| row));
            match flat {
                Ok(Some(row)) => {
                    rows.push(row);
                    return Ok(());
                }
                // Not an object: the general path says what it is.
                Ok(None) => {}
                Err(e) => return Err(format!("{}: {e}", reason::INVALID_JSON)),
            }
        }
        self.decode_document(text, rows)
    }

    /// Whether plain objects are decoded in one pass (see `members`).
    #[cfg(test)]
    pub fn one_pass(&self) -> bool {
        self.members.is_some()
    }

    /// The general path: the whole message as a `Value`, then jsonRoot, stripOuterArray and
    /// jsonPaths on it.
    pub(super) fn decode_document(
        &self,
        text: &str,
        rows: &mut Vec<RowFields>,
    ) -> Result<(), String> {
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
                Some(Value::Bool(b)) => Some(bool_text(*kind, *b)),
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

/// One pass over a top-level object, keeping only the members some field reads (`None`: the
/// message is not an object).
struct FlatRow<'a> {
    members: &'a HashMap<String, Vec<usize>>,
    kinds: &'a [FieldKind],
}

impl<'de> DeserializeSeed<'de> for FlatRow<'_> {
    type Value = Option<RowFields>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FlatRow<'_> {
    type Value = Option<RowFields>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields: Vec<Option<Vec<u8>>> = vec![None; self.kinds.len()];
        // The first field (in field order) holding an array it can't take.
        let mut array_field: Option<usize> = None;
        while let Some(targets) = map.next_key_seed(MemberName(self.members))? {
            let Some(targets) = targets else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let text = map.next_value_seed(FieldText)?;
            for &i in targets {
                fields[i] = match &text {
                    FieldValue::Null => None,
                    FieldValue::Bool(b) => Some(bool_text(self.kinds[i], *b)),
                    FieldValue::Text(t) => Some(t.clone()),
                    FieldValue::Array(json) if self.kinds[i] == FieldKind::Json => {
                        Some(json.clone())
                    }
                    FieldValue::Array(_) => {
                        array_field = Some(array_field.map_or(i, |a| a.min(i)));
                        None
                    }
                };
            }
        }
        Ok(Some(match array_field {
            Some(i) => RowFields::Invalid {
                reason: reason::ARRAY_NOT_SUPPORTED,
                column: Some(i),
            },
            None => RowFields::Fields(fields),
        }))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// A member name, looked up without allocating: the fields it feeds, or None if no field reads it.
struct MemberName<'a>(&'a HashMap<String, Vec<usize>>);

impl<'de, 'a> DeserializeSeed<'de> for MemberName<'a> {
    type Value = Option<&'a Vec<usize>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, 'a> Visitor<'de> for MemberName<'a> {
    type Value = Option<&'a Vec<usize>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.get(v))
    }
}

/// A member's value as the general path would turn it into text.
enum FieldValue {
    Null,
    Bool(bool),
    /// Strings as they are, numbers as `serde_json` prints them, objects as JSON text.
    Text(Vec<u8>),
    /// An array, as JSON text (only JSON columns take it).
    Array(Vec<u8>),
}

struct FieldText;

impl<'de> DeserializeSeed<'de> for FieldText {
    type Value = FieldValue;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FieldText {
    type Value = FieldValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(FieldValue::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(FieldValue::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(FieldValue::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(FieldValue::Text(v.to_string().into_bytes()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(FieldValue::Text(v.to_string().into_bytes()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        // Exactly what the general path prints for this number.
        Ok(FieldValue::Text(
            serde_json::Number::from_f64(v)
                .map(|n| n.to_string())
                .unwrap_or_default()
                .into_bytes(),
        ))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(FieldValue::Text(v.as_bytes().to_vec()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let v = Value::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
        Ok(FieldValue::Array(v.to_string().into_bytes()))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let v = Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(FieldValue::Text(v.to_string().into_bytes()))
    }
}

/// How the general path prints a boolean for a field of this kind.
fn bool_text(kind: FieldKind, b: bool) -> Vec<u8> {
    match (kind, b) {
        (FieldKind::Number, true) => b"1".to_vec(),
        (FieldKind::Number, false) => b"0".to_vec(),
        (_, true) => b"true".to_vec(),
        (_, false) => b"false".to_vec(),
    }
}
