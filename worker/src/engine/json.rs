//! Decodes one JSON message into rows of field texts: one object per message, or an array of
//! them with `stripOuterArray`; fields found by `jsonPaths` or by name, under `jsonRoot`.
//!
//! Three paths, fastest first, all giving the same texts:
//! 1. a scanner for objects of strings, numbers, booleans and nulls: strings without escapes and
//!    short integers are borrowed from the payload, nothing is allocated per field;
//! 2. a one-pass `serde_json` visitor for any top-level object (nested values, and every message
//!    the scanner does not accept, including invalid JSON, whose error it reports);
//! 3. the whole message as a `Value`, for jsonRoot, stripOuterArray and deeper jsonPaths.

use std::borrow::Cow;
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
pub enum RowFields<'a> {
    /// One text per source field, borrowed from the payload where it appears there as is; None
    /// is NULL (a JSON null or a missing field).
    Fields(Vec<Option<Cow<'a, [u8]>>>),
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
    /// and there is no jsonRoot or stripOuterArray: the members read. Such messages are decoded
    /// in one pass without building a `Value` tree.
    members: Option<Members>,
}

/// The top-level members some field reads.
struct Members {
    /// Each member's name and the fields it feeds, in field order.
    list: Vec<(Box<[u8]>, Vec<usize>)>,
    /// Member name -> its index in `list`.
    by_name: HashMap<String, usize>,
}

/// Up to this many members, the scanner finds a member name by comparing names, starting after
/// the last member found (messages mostly keep one order); above it, by hashing.
const LINEAR_LOOKUP_MAX: usize = 32;

impl Members {
    /// The index in `list` of member `key` (raw name, no escapes); `next` is where the search
    /// starts and becomes the slot after the member found.
    #[inline]
    fn find(&self, key: &[u8], next: &mut usize) -> Option<usize> {
        let n = self.list.len();
        if n <= LINEAR_LOOKUP_MAX {
            let start = (*next).min(n);
            let found = (start..n)
                .chain(0..start)
                .find(|&m| &*self.list[m].0 == key)?;
            *next = found + 1;
            return Some(found);
        }
        self.by_name.get(std::str::from_utf8(key).ok()?).copied()
    }
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
        let mut list: Vec<(Box<[u8]>, Vec<usize>)> = Vec::new();
        let mut by_name: HashMap<String, usize> = HashMap::new();
        for (i, path) in self.paths.iter().enumerate() {
            match path.steps() {
                [Step::Key(name)] => {
                    let m = *by_name.entry(name.clone()).or_insert_with(|| {
                        list.push((name.as_bytes().into(), Vec::new()));
                        list.len() - 1
                    });
                    list[m].1.push(i);
                }
                _ => return self,
            }
        }
        self.members = Some(Members { list, by_name });
        self
    }

    /// Decodes a message into `rows`. An Err is a message that is not JSON at all: one error
    /// row with the reason.
    pub fn decode<'a>(
        &self,
        payload: &'a [u8],
        rows: &mut Vec<RowFields<'a>>,
    ) -> Result<(), String> {
        let text = std::str::from_utf8(payload).map_err(|_| reason::INVALID_UTF8.to_string())?;
        if let Some(members) = &self.members {
            if let Some(row) = self.scan(members, payload) {
                rows.push(row);
                return Ok(());
            }
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

    /// The scanner's row for `payload`, None where it leaves the message to the serde path.
    #[cfg(test)]
    pub(super) fn scanned<'a>(&self, payload: &'a [u8]) -> Option<RowFields<'a>> {
        self.scan(self.members.as_ref()?, payload)
    }

    /// The scanner: a top-level object whose members are strings, numbers, booleans or nulls,
    /// read without `serde`. Strings without escapes and integers of up to 18 digits are
    /// borrowed from the payload; escaped strings and other numbers are decoded and printed by
    /// `serde_json` as the other paths do. None leaves the message to the serde path: a nested
    /// value, or anything that is not valid JSON (that path reports the error).
    fn scan<'a>(&self, members: &Members, p: &'a [u8]) -> Option<RowFields<'a>> {
        let mut fields: Vec<Option<Cow<'a, [u8]>>> = vec![None; self.kinds.len()];
        let mut next_member = 0;
        let mut i = skip_ws(p, 0);
        if p.get(i) != Some(&b'{') {
            return None;
        }
        i = skip_ws(p, i + 1);
        if p.get(i) == Some(&b'}') {
            i += 1;
        } else {
            loop {
                if p.get(i) != Some(&b'"') {
                    return None;
                }
                let (end, escaped) = string_end(p, i + 1)?;
                let member = if escaped {
                    let name: String = serde_json::from_slice(&p[i..=end]).ok()?;
                    members.find(name.as_bytes(), &mut next_member)
                } else {
                    members.find(&p[i + 1..end], &mut next_member)
                };
                i = skip_ws(p, end + 1);
                if p.get(i) != Some(&b':') {
                    return None;
                }
                i = skip_ws(p, i + 1);
                let (mut value, after) = scalar(p, i)?;
                i = skip_ws(p, after);
                if let Some(m) = member {
                    let targets = &members.list[m].1;
                    for (k, &f) in targets.iter().enumerate() {
                        let last = k + 1 == targets.len();
                        fields[f] = value.text(self.kinds[f], last);
                    }
                }
                match p.get(i) {
                    Some(b',') => i = skip_ws(p, i + 1),
                    Some(b'}') => {
                        i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        if skip_ws(p, i) != p.len() {
            return None;
        }
        Some(RowFields::Fields(fields))
    }

    /// The general path: the whole message as a `Value`, then jsonRoot, stripOuterArray and
    /// jsonPaths on it.
    pub(super) fn decode_document(
        &self,
        text: &str,
        rows: &mut Vec<RowFields<'_>>,
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

    fn row(&self, row: &Value) -> RowFields<'static> {
        let mut fields: Vec<Option<Cow<'static, [u8]>>> = Vec::with_capacity(self.paths.len());
        for (i, (path, kind)) in self.paths.iter().zip(&self.kinds).enumerate() {
            let text: Option<Vec<u8>> = match path.find(row) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.as_bytes().to_vec()),
                Some(Value::Number(n)) => Some(n.to_string().into_bytes()),
                Some(Value::Bool(b)) => Some(bool_text(*kind, *b).to_vec()),
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
            fields.push(text.map(Cow::Owned));
        }
        RowFields::Fields(fields)
    }
}

/// A member value as the scanner reads it.
enum Scalar<'a> {
    Null,
    Bool(bool),
    /// A string's text, or a number as `serde_json` prints it.
    Text(Cow<'a, [u8]>),
}

impl<'a> Scalar<'a> {
    /// The text for a field of `kind`; `last` moves the text out (the last field it feeds).
    #[inline]
    fn text(&mut self, kind: FieldKind, last: bool) -> Option<Cow<'a, [u8]>> {
        match self {
            Scalar::Null => None,
            Scalar::Bool(b) => Some(Cow::Borrowed(bool_text(kind, *b))),
            Scalar::Text(t) if last => Some(std::mem::take(t)),
            Scalar::Text(t) => Some(t.clone()),
        }
    }
}

/// JSON's whitespace.
#[inline]
fn skip_ws(p: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = p.get(i) {
        i += 1;
    }
    i
}

/// The string that starts after the quote at `start - 1`: the index of its closing quote and
/// whether it has escapes. None if it is not closed or holds a control character.
#[inline]
fn string_end(p: &[u8], start: usize) -> Option<(usize, bool)> {
    let mut i = start;
    let mut escaped = false;
    let end = loop {
        let at = i + memchr::memchr2(b'"', b'\\', p.get(i..)?)?;
        if p[at] == b'"' {
            break at;
        }
        escaped = true;
        i = at + 2;
    };
    if p[start..end].iter().any(|&b| b < 0x20) {
        return None;
    }
    Some((end, escaped))
}

/// The scalar value at `i` and the index after it; None for a nested value or invalid JSON.
#[inline]
fn scalar(p: &[u8], i: usize) -> Option<(Scalar<'_>, usize)> {
    match *p.get(i)? {
        b'"' => {
            let (end, escaped) = string_end(p, i + 1)?;
            let text = if escaped {
                let s: String = serde_json::from_slice(&p[i..=end]).ok()?;
                Cow::Owned(s.into_bytes())
            } else {
                Cow::Borrowed(&p[i + 1..end])
            };
            Some((Scalar::Text(text), end + 1))
        }
        b'-' | b'0'..=b'9' => {
            // The number's bytes: in valid JSON the character after a number is none of these.
            let len = p[i..]
                .iter()
                .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                .unwrap_or(p.len() - i);
            let raw = &p[i..i + len];
            let text = if plain_integer(raw) {
                Cow::Borrowed(raw)
            } else {
                match serde_json::from_slice::<Value>(raw).ok()? {
                    Value::Number(n) => Cow::Owned(n.to_string().into_bytes()),
                    _ => return None,
                }
            };
            Some((Scalar::Text(text), i + len))
        }
        b't' if p[i..].starts_with(b"true") => Some((Scalar::Bool(true), i + 4)),
        b'f' if p[i..].starts_with(b"false") => Some((Scalar::Bool(false), i + 5)),
        b'n' if p[i..].starts_with(b"null") => Some((Scalar::Null, i + 4)),
        _ => None,
    }
}

/// An integer `serde_json` prints back digit for digit: `0`, or up to 18 digits without a
/// leading zero, with an optional minus (`-0` is a float to `serde_json`).
#[inline]
fn plain_integer(raw: &[u8]) -> bool {
    let digits = raw.strip_prefix(b"-").unwrap_or(raw);
    match digits {
        [b'0'] => digits.len() == raw.len(),
        [b'1'..=b'9', rest @ ..] => rest.len() < 18 && rest.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// One pass over a top-level object, keeping only the members some field reads (`None`: the
/// message is not an object).
struct FlatRow<'a> {
    members: &'a Members,
    kinds: &'a [FieldKind],
}

impl<'de> DeserializeSeed<'de> for FlatRow<'_> {
    type Value = Option<RowFields<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FlatRow<'_> {
    type Value = Option<RowFields<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields: Vec<Option<Cow<'de, [u8]>>> = vec![None; self.kinds.len()];
        // Fields holding an array they can't take (a later duplicate member replaces it).
        let mut arrays: Vec<bool> = Vec::new();
        while let Some(member) = map.next_key_seed(MemberName(&self.members.by_name))? {
            let Some(m) = member else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let text = map.next_value_seed(FieldText)?;
            for &i in &self.members.list[m].1 {
                let mut refused = false;
                fields[i] = match &text {
                    FieldValue::Null => None,
                    FieldValue::Bool(b) => Some(Cow::Borrowed(bool_text(self.kinds[i], *b))),
                    FieldValue::Text(t) => Some(t.clone()),
                    FieldValue::Array(json) if self.kinds[i] == FieldKind::Json => {
                        Some(Cow::Owned(json.clone()))
                    }
                    FieldValue::Array(_) => {
                        refused = true;
                        None
                    }
                };
                if refused || !arrays.is_empty() {
                    arrays.resize(self.kinds.len(), false);
                    arrays[i] = refused;
                }
            }
        }
        // The first field (in field order) holding an array it can't take.
        let array_field = arrays.iter().position(|&a| a);
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

/// A member name, looked up without allocating: its index in `Members::list`, or None if no
/// field reads it.
struct MemberName<'a>(&'a HashMap<String, usize>);

impl<'de> DeserializeSeed<'de> for MemberName<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for MemberName<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.get(v).copied())
    }
}

/// A member's value as the general path would turn it into text.
enum FieldValue<'de> {
    Null,
    Bool(bool),
    /// Strings as they are (borrowed when unescaped), numbers as `serde_json` prints them,
    /// objects as JSON text.
    Text(Cow<'de, [u8]>),
    /// An array, as JSON text (only JSON columns take it).
    Array(Vec<u8>),
}

struct FieldText;

impl<'de> DeserializeSeed<'de> for FieldText {
    type Value = FieldValue<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FieldText {
    type Value = FieldValue<'de>;

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
        Ok(FieldValue::Text(Cow::Owned(v.to_string().into_bytes())))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(FieldValue::Text(Cow::Owned(v.to_string().into_bytes())))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        // Exactly what the general path prints for this number.
        Ok(FieldValue::Text(Cow::Owned(
            serde_json::Number::from_f64(v)
                .map(|n| n.to_string())
                .unwrap_or_default()
                .into_bytes(),
        )))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(FieldValue::Text(Cow::Borrowed(v.as_bytes())))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(FieldValue::Text(Cow::Owned(v.as_bytes().to_vec())))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let v = Value::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
        Ok(FieldValue::Array(v.to_string().into_bytes()))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let v = Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(FieldValue::Text(Cow::Owned(v.to_string().into_bytes())))
    }
}

/// How the general path prints a boolean for a field of this kind.
fn bool_text(kind: FieldKind, b: bool) -> &'static [u8] {
    match (kind, b) {
        (FieldKind::Number, true) => b"1",
        (FieldKind::Number, false) => b"0",
        (_, true) => b"true",
        (_, false) => b"false",
    }
}
