//! Builds one typed Arrow column from field texts with the StarRocks conversion rules.

use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder,
    Int8Builder, Int16Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use routine_load_api::ColumnType;
use routine_load_api::value::{self, ConvertError};

/// A column under construction. `append_text` appends nothing when it fails, so the caller
/// decides (strict mode) whether the row becomes an error row or the value NULL.
pub enum ColumnBuilder {
    Boolean(BooleanBuilder),
    TinyInt(Int8Builder),
    SmallInt(Int16Builder),
    Int(Int32Builder),
    BigInt(Int64Builder),
    Decimal {
        builder: Decimal128Builder,
        precision: u8,
        scale: u8,
    },
    Float(Float32Builder),
    Double(Float64Builder),
    Date(Date32Builder),
    DateTime(TimestampMicrosecondBuilder),
    Text {
        builder: StringBuilder,
        max_length: Option<u32>,
        json: bool,
    },
}

impl ColumnBuilder {
    /// A builder for `column_type`; None builds text (placeholders).
    pub fn new(column_type: Option<ColumnType>, capacity: usize) -> Self {
        Self::with_text_bytes(column_type, capacity, capacity * 16)
    }

    /// A builder for `capacity` values; a text column reserves `text_bytes` for its values
    /// (growing a text buffer copies what it holds, so a good guess saves a copy per doubling).
    pub fn with_text_bytes(
        column_type: Option<ColumnType>,
        capacity: usize,
        text_bytes: usize,
    ) -> Self {
        let Some(column_type) = column_type else {
            return ColumnBuilder::Text {
                builder: StringBuilder::with_capacity(capacity, text_bytes),
                max_length: None,
                json: false,
            };
        };
        match column_type {
            ColumnType::Boolean => ColumnBuilder::Boolean(BooleanBuilder::with_capacity(capacity)),
            ColumnType::TinyInt => ColumnBuilder::TinyInt(Int8Builder::with_capacity(capacity)),
            ColumnType::SmallInt => ColumnBuilder::SmallInt(Int16Builder::with_capacity(capacity)),
            ColumnType::Int => ColumnBuilder::Int(Int32Builder::with_capacity(capacity)),
            ColumnType::BigInt => ColumnBuilder::BigInt(Int64Builder::with_capacity(capacity)),
            ColumnType::LargeInt => Self::decimal(38, 0, capacity),
            ColumnType::Decimal { precision, scale } => Self::decimal(precision, scale, capacity),
            ColumnType::Float => ColumnBuilder::Float(Float32Builder::with_capacity(capacity)),
            ColumnType::Double => ColumnBuilder::Double(Float64Builder::with_capacity(capacity)),
            ColumnType::Date => ColumnBuilder::Date(Date32Builder::with_capacity(capacity)),
            ColumnType::DateTime => {
                ColumnBuilder::DateTime(TimestampMicrosecondBuilder::with_capacity(capacity))
            }
            ColumnType::Char(_)
            | ColumnType::Varchar(_)
            | ColumnType::String
            | ColumnType::Json => ColumnBuilder::Text {
                builder: StringBuilder::with_capacity(capacity, text_bytes),
                max_length: column_type.max_length(),
                json: column_type == ColumnType::Json,
            },
        }
    }

    fn decimal(precision: u8, scale: u8, capacity: usize) -> Self {
        ColumnBuilder::Decimal {
            builder: Decimal128Builder::with_capacity(capacity)
                .with_precision_and_scale(precision, scale as i8)
                .expect("precision and scale were checked when the type was parsed"),
            precision,
            scale,
        }
    }

    /// Parses `text` and appends the value; on error appends nothing.
    #[inline]
    pub fn append_text(&mut self, text: &[u8]) -> Result<(), ConvertError> {
        match self {
            ColumnBuilder::Boolean(b) => b.append_value(value::parse_bool(text)?),
            ColumnBuilder::TinyInt(b) => b.append_value(parse_int::<i8>(text)? as i8),
            ColumnBuilder::SmallInt(b) => b.append_value(parse_int::<i16>(text)? as i16),
            ColumnBuilder::Int(b) => b.append_value(parse_int::<i32>(text)? as i32),
            ColumnBuilder::BigInt(b) => b.append_value(parse_int::<i64>(text)? as i64),
            ColumnBuilder::Decimal {
                builder,
                precision,
                scale,
            } => builder.append_value(value::parse_decimal(text, *precision, *scale)?),
            ColumnBuilder::Float(b) => b.append_value(value::parse_f64(text)? as f32),
            ColumnBuilder::Double(b) => b.append_value(value::parse_f64(text)?),
            ColumnBuilder::Date(b) => b.append_value(value::parse_date(text)?),
            ColumnBuilder::DateTime(b) => b.append_value(value::parse_datetime(text)?),
            ColumnBuilder::Text {
                builder,
                max_length,
                json,
            } => builder.append_value(checked_text(text, *max_length, *json)?),
        }
        Ok(())
    }

    /// Appends one value per item of `texts`, a column at a time (the type is matched once, not
    /// per value). None appends NULL: a row that already failed. `\N` appends NULL, reported
    /// as [`Rejected::Null`] unless `nullable`; a text that does not convert appends NULL,
    /// reported as [`Rejected::Convert`]. `rejected` gets the item's index.
    pub fn append_texts<'a>(
        &mut self,
        texts: impl Iterator<Item = Option<&'a [u8]>>,
        nullable: bool,
        mut rejected: impl FnMut(usize, Rejected),
    ) {
        let r = &mut rejected;
        match self {
            ColumnBuilder::Boolean(b) => append_all(
                texts,
                nullable,
                value::parse_bool,
                |v| b.append_option(v),
                r,
            ),
            ColumnBuilder::TinyInt(b) => append_all(
                texts,
                nullable,
                |t| Ok(parse_int::<i8>(t)? as i8),
                |v| b.append_option(v),
                r,
            ),
            ColumnBuilder::SmallInt(b) => append_all(
                texts,
                nullable,
                |t| Ok(parse_int::<i16>(t)? as i16),
                |v| b.append_option(v),
                r,
            ),
            ColumnBuilder::Int(b) => append_all(
                texts,
                nullable,
                |t| Ok(parse_int::<i32>(t)? as i32),
                |v| b.append_option(v),
                r,
            ),
            ColumnBuilder::BigInt(b) => append_all(
                texts,
                nullable,
                |t| Ok(parse_int::<i64>(t)? as i64),
                |v| b.append_option(v),
                r,
            ),
            ColumnBuilder::Decimal {
                builder,
                precision,
                scale,
            } => {
                let (precision, scale) = (*precision, *scale);
                append_all(
                    texts,
                    nullable,
                    |t| value::parse_decimal(t, precision, scale),
                    |v| builder.append_option(v),
                    r,
                )
            }
            ColumnBuilder::Float(b) => append_all(
                texts,
                nullable,
                |t| Ok(value::parse_f64(t)? as f32),
                |v| b.append_option(v),
                r,
            ),
            ColumnBuilder::Double(b) => {
                append_all(texts, nullable, value::parse_f64, |v| b.append_option(v), r)
            }
            ColumnBuilder::Date(b) => append_all(
                texts,
                nullable,
                value::parse_date,
                |v| b.append_option(v),
                r,
            ),
            ColumnBuilder::DateTime(b) => append_all(
                texts,
                nullable,
                value::parse_datetime,
                |v| b.append_option(v),
                r,
            ),
            ColumnBuilder::Text {
                builder,
                max_length,
                json,
            } => {
                let (max_length, json) = (*max_length, *json);
                append_all(
                    texts,
                    nullable,
                    |t| checked_text(t, max_length, json),
                    |v| builder.append_option(v),
                    r,
                )
            }
        }
    }

    /// Appends NULL.
    #[inline]
    pub fn append_null(&mut self) {
        match self {
            ColumnBuilder::Boolean(b) => b.append_null(),
            ColumnBuilder::TinyInt(b) => b.append_null(),
            ColumnBuilder::SmallInt(b) => b.append_null(),
            ColumnBuilder::Int(b) => b.append_null(),
            ColumnBuilder::BigInt(b) => b.append_null(),
            ColumnBuilder::Decimal { builder, .. } => builder.append_null(),
            ColumnBuilder::Float(b) => b.append_null(),
            ColumnBuilder::Double(b) => b.append_null(),
            ColumnBuilder::Date(b) => b.append_null(),
            ColumnBuilder::DateTime(b) => b.append_null(),
            ColumnBuilder::Text { builder, .. } => builder.append_null(),
        }
    }

    /// The bytes of text values appended so far (0 for other types).
    pub fn text_bytes(&self) -> usize {
        match self {
            ColumnBuilder::Text { builder, .. } => builder.values_slice().len(),
            _ => 0,
        }
    }

    /// The finished column; the builder is empty afterwards and can be reused.
    pub fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Boolean(b) => Arc::new(b.finish()),
            ColumnBuilder::TinyInt(b) => Arc::new(b.finish()),
            ColumnBuilder::SmallInt(b) => Arc::new(b.finish()),
            ColumnBuilder::Int(b) => Arc::new(b.finish()),
            ColumnBuilder::BigInt(b) => Arc::new(b.finish()),
            ColumnBuilder::Decimal { builder, .. } => Arc::new(builder.finish()),
            ColumnBuilder::Float(b) => Arc::new(b.finish()),
            ColumnBuilder::Double(b) => Arc::new(b.finish()),
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
            ColumnBuilder::DateTime(b) => Arc::new(b.finish()),
            ColumnBuilder::Text { builder, .. } => Arc::new(builder.finish()),
        }
    }
}

/// What [`ColumnBuilder::append_texts`] found wrong with a value it appended NULL for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// `\N` in a column that is not nullable.
    Null,
    /// A text that does not convert to the column's type.
    Convert(ConvertError),
}

/// The loop of [`ColumnBuilder::append_texts`] for one builder type: `parse` and `append` are
/// that type's, so the loop is compiled once per type with both inlined.
#[inline(always)]
fn append_all<'a, T>(
    texts: impl Iterator<Item = Option<&'a [u8]>>,
    nullable: bool,
    mut parse: impl FnMut(&'a [u8]) -> Result<T, ConvertError>,
    mut append: impl FnMut(Option<T>),
    rejected: &mut impl FnMut(usize, Rejected),
) {
    for (k, text) in texts.enumerate() {
        match text {
            None => append(None),
            Some(b"\\N") => {
                append(None);
                if !nullable {
                    rejected(k, Rejected::Null);
                }
            }
            Some(text) => match parse(text) {
                Ok(v) => append(Some(v)),
                Err(err) => {
                    append(None);
                    rejected(k, Rejected::Convert(err));
                }
            },
        }
    }
}

/// A text value as a string column holds it: within the column's length, UTF-8, and for JSON
/// a JSON document.
#[inline]
fn checked_text(text: &[u8], max_length: Option<u32>, json: bool) -> Result<&str, ConvertError> {
    if let Some(max) = max_length
        && text.len() > max as usize
    {
        return Err(ConvertError::TooLong);
    }
    let s = std::str::from_utf8(text).map_err(|_| ConvertError::Invalid)?;
    if json && serde_json::from_str::<serde::de::IgnoredAny>(s).is_err() {
        return Err(ConvertError::Invalid);
    }
    Ok(s)
}

/// The integer types' ranges for [`value::parse_int`].
trait IntRange {
    const MIN: i128;
    const MAX: i128;
}
macro_rules! int_range {
    ($($t:ty),*) => {$(impl IntRange for $t {
        const MIN: i128 = <$t>::MIN as i128;
        const MAX: i128 = <$t>::MAX as i128;
    })*};
}
int_range!(i8, i16, i32, i64);

#[inline]
fn parse_int<T: IntRange>(text: &[u8]) -> Result<i128, ConvertError> {
    // Fast path for short plain digits, the common case: no i128 arithmetic.
    if !text.is_empty() && text.len() <= 18 && text.iter().all(u8::is_ascii_digit) {
        let mut v: i64 = 0;
        for &b in text {
            v = v * 10 + (b - b'0') as i64;
        }
        let v = v as i128;
        return if v > T::MAX {
            Err(ConvertError::TooLong)
        } else {
            Ok(v)
        };
    }
    value::parse_int(text, T::MIN, T::MAX)
}
