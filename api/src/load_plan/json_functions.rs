//! StarRocks' JSON functions. A JSON value is its text (a JSON column is text in Delta); the
//! functions that return JSON mark their result so that `json_object` and `json_array` embed it.
//! Paths are StarRocks': `$`, `.key`, `."dotted.key"`, `[n]`, `['key']` and `[*]`; `$` may be
//! left out (`'a'` is `$.a`). Malformed JSON or a path that matches nothing gives NULL.

use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, StringArray,
};
use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::common::{Result, ScalarValue};
use deltalake::datafusion::logical_expr::ScalarUDF;
use serde_json::Value;

use super::udf::{Call, Udf, exactly};

/// One step of a function's JSON path.
#[derive(Debug, Clone, PartialEq)]
enum PathStep {
    Key(String),
    Index(usize),
    AnyIndex,
}

/// Parses a StarRocks JSON path; None when it is malformed.
fn parse_path(text: &str) -> Option<Vec<PathStep>> {
    let t = text.trim();
    let mut rest = match t.strip_prefix('$') {
        Some(r) => r.to_string(),
        None if t.is_empty() => String::new(),
        None if t.starts_with('[') => t.to_string(),
        None => format!(".{t}"),
    };
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            if let Some(quoted) = after.strip_prefix('"') {
                let end = quoted.find('"')?;
                steps.push(PathStep::Key(quoted[..end].to_string()));
                rest = quoted[end + 1..].to_string();
            } else {
                let end = after.find(['.', '[']).unwrap_or(after.len());
                let key = &after[..end];
                if key.is_empty() {
                    return None;
                }
                steps.push(if key == "*" {
                    PathStep::AnyIndex
                } else {
                    PathStep::Key(key.to_string())
                });
                rest = after[end..].to_string();
            }
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']')?;
            let inner = after[..end].trim();
            let quoted = inner
                .strip_prefix('\'')
                .and_then(|s| s.strip_suffix('\''))
                .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')));
            steps.push(match quoted {
                Some(key) => PathStep::Key(key.to_string()),
                None if inner == "*" => PathStep::AnyIndex,
                None => PathStep::Index(inner.parse().ok()?),
            });
            rest = after[end + 1..].to_string();
        } else {
            return None;
        }
    }
    Some(steps)
}

/// Follows `steps` in `value`. A wildcard (and, with `spread`, a member step over an array of
/// objects, as `get_json_string` does) collects every match into an array.
fn find(value: &Value, steps: &[PathStep], spread: bool) -> Option<Value> {
    let mut current: Vec<&Value> = vec![value];
    let mut many = false;
    for step in steps {
        let mut next = Vec::new();
        for v in current {
            match (step, v) {
                (PathStep::Key(k), Value::Object(m)) => next.extend(m.get(k)),
                (PathStep::Key(k), Value::Array(items)) if spread => {
                    many = true;
                    next.extend(items.iter().filter_map(|i| i.as_object()?.get(k)));
                }
                (PathStep::Index(i), Value::Array(items)) => next.extend(items.get(*i)),
                (PathStep::AnyIndex, Value::Array(items)) => {
                    many = true;
                    next.extend(items.iter());
                }
                (PathStep::AnyIndex, Value::Object(m)) => {
                    many = true;
                    next.extend(m.values());
                }
                _ => {}
            }
        }
        current = next;
    }
    if many {
        (!current.is_empty()).then(|| Value::Array(current.into_iter().cloned().collect()))
    } else {
        current.first().map(|v| (*v).clone())
    }
}

/// JSON text the way StarRocks prints its JSON type: `{"a": 1, "b": [1, 2]}`.
pub fn starrocks_json_text(value: &Value) -> String {
    let mut out = String::new();
    write_json(value, &mut out);
    out
}

fn write_json(value: &Value, out: &mut String) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_json(item, out);
            }
            out.push(']');
        }
        Value::Object(members) => {
            out.push('{');
            for (i, (k, v)) in members.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push_str(": ");
                write_json(v, out);
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn parse(text: Option<&str>) -> Option<Value> {
    serde_json::from_str(text?).ok()
}

/// `(json, path)` pairs of a call, row by row: the value the path finds.
fn lookups(call: &Call, spread: bool) -> Result<Vec<Option<Value>>> {
    let docs = call.text(0)?;
    let paths = if call.args.len() > 1 {
        Some(call.text(1)?)
    } else {
        None
    };
    let mut cached: Option<(String, Option<Vec<PathStep>>)> = None;
    Ok((0..docs.len())
        .map(|i| {
            let doc = parse(docs.is_valid(i).then(|| docs.value(i)))?;
            let Some(paths) = &paths else {
                return Some(doc);
            };
            if paths.is_null(i) {
                return None;
            }
            let path = paths.value(i);
            if cached.as_ref().is_none_or(|(p, _)| p != path) {
                cached = Some((path.to_string(), parse_path(path)));
            }
            let steps = cached.as_ref().and_then(|(_, s)| s.as_ref())?;
            find(&doc, steps, spread)
        })
        .collect())
}

fn doc_and_path(name: &'static str) -> impl Fn(&[DataType]) -> Result<Vec<DataType>> {
    exactly(
        name,
        "(json, path)",
        vec![vec![DataType::Utf8, DataType::Utf8]],
    )
}

fn doc_optional_path(name: &'static str) -> impl Fn(&[DataType]) -> Result<Vec<DataType>> {
    exactly(
        name,
        "(json[, path])",
        vec![vec![DataType::Utf8], vec![DataType::Utf8, DataType::Utf8]],
    )
}

/// A SQL value of argument `i`, row `row`, as a JSON value.
fn to_json(call: &Call, i: usize, row: usize) -> Result<Value> {
    let array = &call.args[i];
    if array.is_null(row) {
        return Ok(Value::Null);
    }
    Ok(match ScalarValue::try_from_array(array, row)? {
        ScalarValue::Boolean(Some(b)) => Value::Bool(b),
        ScalarValue::Int8(Some(v)) => v.into(),
        ScalarValue::Int16(Some(v)) => v.into(),
        ScalarValue::Int32(Some(v)) => v.into(),
        ScalarValue::Int64(Some(v)) => v.into(),
        ScalarValue::UInt8(Some(v)) => v.into(),
        ScalarValue::UInt16(Some(v)) => v.into(),
        ScalarValue::UInt32(Some(v)) => v.into(),
        ScalarValue::UInt64(Some(v)) => v.into(),
        ScalarValue::Float32(Some(v)) => {
            serde_json::Number::from_f64(v as f64).map_or(Value::Null, Value::Number)
        }
        ScalarValue::Float64(Some(v)) => {
            serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
        }
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => {
            if call.is_json(i) {
                serde_json::from_str(&s).unwrap_or(Value::String(s))
            } else {
                Value::String(s)
            }
        }
        other @ (ScalarValue::Decimal128(..) | ScalarValue::Decimal256(..)) => {
            serde_json::from_str(&other.to_string()).unwrap_or(Value::Null)
        }
        other => Value::String(other.to_string()),
    })
}

/// The JSON functions.
pub fn json_functions() -> Vec<ScalarUDF> {
    let text_out =
        |values: Vec<Option<String>>| -> ArrayRef { Arc::new(StringArray::from(values)) };
    vec![
        Udf::new(
            "get_json_string",
            DataType::Utf8,
            doc_and_path("get_json_string"),
            move |call| {
                Ok(text_out(
                    lookups(call, true)?
                        .into_iter()
                        .map(|v| match v? {
                            Value::String(s) => Some(s),
                            Value::Null => None,
                            other => Some(other.to_string()),
                        })
                        .collect(),
                ))
            },
        )
        .aliases(&["get_json_object"])
        .build(),
        Udf::new(
            "get_json_int",
            DataType::Int64,
            doc_and_path("get_json_int"),
            |call| {
                let out: Int64Array = lookups(call, true)?
                    .into_iter()
                    .map(|v| v?.as_i64())
                    .collect();
                Ok(Arc::new(out))
            },
        )
        .build(),
        Udf::new(
            "get_json_double",
            DataType::Float64,
            doc_and_path("get_json_double"),
            |call| {
                let out: Float64Array = lookups(call, true)?
                    .into_iter()
                    .map(|v| v?.as_f64())
                    .collect();
                Ok(Arc::new(out))
            },
        )
        .build(),
        Udf::new(
            "get_json_bool",
            DataType::Boolean,
            doc_and_path("get_json_bool"),
            |call| {
                let out: BooleanArray = lookups(call, true)?
                    .into_iter()
                    .map(|v| match v? {
                        Value::Bool(b) => Some(b),
                        Value::Number(n) => n.as_f64().map(|f| f != 0.0),
                        _ => None,
                    })
                    .collect();
                Ok(Arc::new(out))
            },
        )
        .build(),
        Udf::new(
            "json_query",
            DataType::Utf8,
            doc_and_path("json_query"),
            move |call| {
                Ok(text_out(
                    lookups(call, false)?
                        .into_iter()
                        .map(|v| v.map(|v| starrocks_json_text(&v)))
                        .collect(),
                ))
            },
        )
        .json()
        .build(),
        Udf::new(
            "json_exists",
            DataType::Boolean,
            doc_and_path("json_exists"),
            |call| {
                let docs = call.text(0)?;
                let out: BooleanArray = lookups(call, false)?
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| (docs.is_valid(i)).then_some(v.is_some()))
                    .collect();
                Ok(Arc::new(out))
            },
        )
        .build(),
        Udf::new(
            "json_length",
            DataType::Int32,
            doc_optional_path("json_length"),
            |call| {
                let docs = call.text(0)?;
                let out: Int32Array = lookups(call, false)?
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| {
                        if docs.is_null(i) {
                            return None;
                        }
                        Some(match v {
                            None => 0,
                            Some(Value::Array(a)) => a.len() as i32,
                            Some(Value::Object(m)) => m.len() as i32,
                            Some(_) => 1,
                        })
                    })
                    .collect();
                Ok(Arc::new(out))
            },
        )
        .build(),
        Udf::new(
            "json_keys",
            DataType::Utf8,
            doc_optional_path("json_keys"),
            move |call| {
                Ok(text_out(
                    lookups(call, false)?
                        .into_iter()
                        .map(|v| match v? {
                            Value::Object(m) => Some(starrocks_json_text(&Value::Array(
                                m.keys().map(|k| Value::String(k.clone())).collect(),
                            ))),
                            _ => None,
                        })
                        .collect(),
                ))
            },
        )
        .json()
        .build(),
        Udf::new(
            "parse_json",
            DataType::Utf8,
            exactly("parse_json", "(text)", vec![vec![DataType::Utf8]]),
            move |call| {
                Ok(text_out(
                    lookups(call, false)?
                        .into_iter()
                        .map(|v| v.map(|v| starrocks_json_text(&v)))
                        .collect(),
                ))
            },
        )
        .json()
        .build(),
        Udf::new(
            "element_at",
            DataType::Utf8,
            |types: &[DataType]| match types {
                [DataType::List(_), _] => Ok(vec![
                    DataType::List(Arc::new(
                        deltalake::arrow::datatypes::Field::new_list_field(DataType::Utf8, true),
                    )),
                    DataType::Int64,
                ]),
                [_, _] => Ok(vec![DataType::Utf8, DataType::Utf8]),
                _ => deltalake::datafusion::common::plan_err!(
                    "element_at takes (headers or JSON object, key) or (array, 1-based index)"
                ),
            },
            move |call| {
                use deltalake::arrow::array::AsArray;
                if let DataType::List(_) = call.args[0].data_type() {
                    let lists = call.args[0].as_list::<i32>();
                    let index = call.int(1)?;
                    return Ok(text_out(
                        (0..call.rows)
                            .map(|i| {
                                if lists.is_null(i) || index.is_null(i) {
                                    return None;
                                }
                                let items = lists.value(i);
                                let items = items.as_string::<i32>();
                                let n = usize::try_from(index.value(i)).ok()?.checked_sub(1)?;
                                (n < items.len() && items.is_valid(n))
                                    .then(|| items.value(n).to_string())
                            })
                            .collect(),
                    ));
                }
                let docs = call.text(0)?;
                let keys = call.text(1)?;
                Ok(text_out(
                    (0..call.rows)
                        .map(|i| {
                            if keys.is_null(i) {
                                return None;
                            }
                            match parse(docs.is_valid(i).then(|| docs.value(i)))?
                                .get(keys.value(i))?
                            {
                                Value::String(s) => Some(s.clone()),
                                Value::Null => None,
                                other => Some(other.to_string()),
                            }
                        })
                        .collect(),
                ))
            },
        )
        .build(),
        Udf::new(
            "json_unquote",
            DataType::Utf8,
            exactly("json_unquote", "(json)", vec![vec![DataType::Utf8]]),
            move |call| {
                let text = call.text(0)?;
                Ok(text_out(
                    text.iter()
                        .map(|t| {
                            let t = t?;
                            Some(match serde_json::from_str::<Value>(t) {
                                Ok(Value::String(s)) => s,
                                _ => t.to_string(),
                            })
                        })
                        .collect(),
                ))
            },
        )
        .build(),
        Udf::new(
            "json_string",
            DataType::Utf8,
            exactly("json_string", "(json)", vec![vec![DataType::Utf8]]),
            move |call| {
                Ok(text_out(
                    lookups(call, false)?
                        .into_iter()
                        .map(|v| v.map(|v| v.to_string()))
                        .collect(),
                ))
            },
        )
        .build(),
        Udf::new(
            "json_object",
            DataType::Utf8,
            |types: &[DataType]| {
                let mut out = types.to_vec();
                for (i, t) in out.iter_mut().enumerate() {
                    if i % 2 == 0 {
                        *t = DataType::Utf8;
                    }
                }
                Ok(out)
            },
            move |call| {
                let keys: Vec<StringArray> = (0..call.args.len())
                    .step_by(2)
                    .map(|i| call.text(i))
                    .collect::<Result<_>>()?;
                let mut out = Vec::with_capacity(call.rows);
                for row in 0..call.rows {
                    let mut members = serde_json::Map::new();
                    let mut null_key = false;
                    for (k, keys) in keys.iter().enumerate() {
                        if keys.is_null(row) {
                            null_key = true;
                            break;
                        }
                        let value = if 2 * k + 1 < call.args.len() {
                            to_json(call, 2 * k + 1, row)?
                        } else {
                            Value::Null
                        };
                        members.insert(keys.value(row).to_string(), value);
                    }
                    out.push((!null_key).then(|| starrocks_json_text(&Value::Object(members))));
                }
                Ok(text_out(out))
            },
        )
        .json()
        .build(),
        Udf::new(
            "json_array",
            DataType::Utf8,
            |types: &[DataType]| Ok(types.to_vec()),
            move |call| {
                let mut out = Vec::with_capacity(call.rows);
                for row in 0..call.rows {
                    let items = (0..call.args.len())
                        .map(|i| to_json(call, i, row))
                        .collect::<Result<Vec<_>>>()?;
                    out.push(Some(starrocks_json_text(&Value::Array(items))));
                }
                Ok(text_out(out))
            },
        )
        .json()
        .build(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_the_starrocks_way() {
        assert_eq!(
            parse_path("$.\"my.key\"[1]"),
            Some(vec![PathStep::Key("my.key".into()), PathStep::Index(1)])
        );
        assert_eq!(parse_path("a"), Some(vec![PathStep::Key("a".into())]));
        assert_eq!(parse_path("$"), Some(vec![]));
        assert_eq!(parse_path("$.a[x]"), None);
    }
}
