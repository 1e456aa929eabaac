//! StarRocks column types as written in a `Table` spec, and their Arrow/Delta storage types.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use deltalake::arrow::datatypes::{DataType, TimeUnit};

/// Largest DECIMAL precision StarRocks (DECIMAL128) and Delta both accept.
pub const MAX_DECIMAL_PRECISION: u8 = 38;
/// Largest length StarRocks accepts for VARCHAR(n).
pub const MAX_VARCHAR_LENGTH: u32 = 1_048_576;
/// Largest length StarRocks accepts for CHAR(n).
pub const MAX_CHAR_LENGTH: u32 = 255;
/// Length StarRocks gives STRING (a VARCHAR of the largest length).
pub const STRING_LENGTH: u32 = MAX_VARCHAR_LENGTH;

/// A StarRocks column type.
///
/// Storage in Delta: integers map to byte/short/integer/long, LARGEINT to decimal(38,0) (Delta
/// has no 128-bit integer; values beyond 38 digits are refused), DATETIME to `timestamp_ntz`
/// (a wall-clock time, like StarRocks DATETIME), CHAR/VARCHAR/STRING/JSON to string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnType {
    Boolean,
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    LargeInt,
    Float,
    Double,
    Decimal { precision: u8, scale: u8 },
    Date,
    DateTime,
    Char(u32),
    Varchar(u32),
    String,
    Json,
}

/// Why a type string is not a StarRocks column type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid column type '{input}': {reason}")]
pub struct ColumnTypeError {
    pub input: String,
    pub reason: String,
}

impl ColumnType {
    /// The Arrow type the load engine produces for this column and the Delta writer stores.
    pub fn arrow_type(&self) -> DataType {
        match self {
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::TinyInt => DataType::Int8,
            ColumnType::SmallInt => DataType::Int16,
            ColumnType::Int => DataType::Int32,
            ColumnType::BigInt => DataType::Int64,
            ColumnType::LargeInt => DataType::Decimal128(MAX_DECIMAL_PRECISION, 0),
            ColumnType::Float => DataType::Float32,
            ColumnType::Double => DataType::Float64,
            ColumnType::Decimal { precision, scale } => {
                DataType::Decimal128(*precision, *scale as i8)
            }
            ColumnType::Date => DataType::Date32,
            ColumnType::DateTime => DataType::Timestamp(TimeUnit::Microsecond, None),
            ColumnType::Char(_)
            | ColumnType::Varchar(_)
            | ColumnType::String
            | ColumnType::Json => DataType::Utf8,
        }
    }

    /// The name StarRocks uses in conversion error messages ("convert csv string to INT failed").
    pub fn starrocks_name(&self) -> &'static str {
        match self {
            ColumnType::Boolean => "BOOLEAN",
            ColumnType::TinyInt => "TINYINT",
            ColumnType::SmallInt => "SMALLINT",
            ColumnType::Int => "INT",
            ColumnType::BigInt => "BIGINT",
            ColumnType::LargeInt => "LARGEINT",
            ColumnType::Float => "FLOAT",
            ColumnType::Double => "DOUBLE",
            ColumnType::Decimal { .. } => "DECIMAL128",
            ColumnType::Date => "DATE",
            ColumnType::DateTime => "DATETIME",
            ColumnType::Char(_) => "CHAR",
            ColumnType::Varchar(_) => "VARCHAR",
            ColumnType::String => "VARCHAR",
            ColumnType::Json => "JSON",
        }
    }

    /// Maximum byte length of a string column, if the type is a string type.
    pub fn max_length(&self) -> Option<u32> {
        match self {
            ColumnType::Char(n) | ColumnType::Varchar(n) => Some(*n),
            ColumnType::String => Some(STRING_LENGTH),
            _ => None,
        }
    }

    /// Whether the type stores text.
    pub fn is_string(&self) -> bool {
        matches!(
            self,
            ColumnType::Char(_) | ColumnType::Varchar(_) | ColumnType::String | ColumnType::Json
        )
    }

    /// The arrow field for a table column of this type.
    pub fn arrow_field(&self, name: &str, nullable: bool) -> deltalake::arrow::datatypes::Field {
        deltalake::arrow::datatypes::Field::new(name, self.arrow_type(), nullable)
    }
}

/// An Arrow schema reference, as the engine and the writer share it.
pub type SchemaRef = Arc<deltalake::arrow::datatypes::Schema>;

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnType::Decimal { precision, scale } => write!(f, "DECIMAL({precision},{scale})"),
            ColumnType::Char(n) => write!(f, "CHAR({n})"),
            ColumnType::Varchar(n) => write!(f, "VARCHAR({n})"),
            ColumnType::String => f.write_str("STRING"),
            other => f.write_str(other.starrocks_name()),
        }
    }
}

impl FromStr for ColumnType {
    type Err = ColumnTypeError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| ColumnTypeError {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let compact: String = input.chars().filter(|c| !c.is_whitespace()).collect();
        let upper = compact.to_ascii_uppercase();
        let (name, args) = match upper.find('(') {
            Some(open) => {
                let Some(inner) = upper[open + 1..].strip_suffix(')') else {
                    return Err(err("missing closing parenthesis"));
                };
                let args = inner
                    .split(',')
                    .map(|a| {
                        a.parse::<u32>()
                            .map_err(|_| err("arguments must be numbers"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                (&upper[..open], args)
            }
            None => (upper.as_str(), Vec::new()),
        };
        let no_args = |t: ColumnType| {
            if args.is_empty() {
                Ok(t)
            } else {
                Err(err("this type takes no arguments"))
            }
        };
        match name {
            "BOOLEAN" | "BOOL" => no_args(ColumnType::Boolean),
            "TINYINT" => no_args(ColumnType::TinyInt),
            "SMALLINT" => no_args(ColumnType::SmallInt),
            "INT" | "INTEGER" => no_args(ColumnType::Int),
            "BIGINT" => no_args(ColumnType::BigInt),
            "LARGEINT" => no_args(ColumnType::LargeInt),
            "FLOAT" => no_args(ColumnType::Float),
            "DOUBLE" => no_args(ColumnType::Double),
            "DATE" => no_args(ColumnType::Date),
            "DATETIME" => no_args(ColumnType::DateTime),
            "STRING" => no_args(ColumnType::String),
            "JSON" => no_args(ColumnType::Json),
            "DECIMAL" | "DECIMALV2" | "DECIMAL32" | "DECIMAL64" | "DECIMAL128" => {
                let (precision, scale) = match args.as_slice() {
                    [] => (10, 0),
                    [p] => (*p, 0),
                    [p, s] => (*p, *s),
                    _ => return Err(err("DECIMAL takes (precision, scale)")),
                };
                if !(1..=MAX_DECIMAL_PRECISION as u32).contains(&precision) {
                    return Err(err("DECIMAL precision must be between 1 and 38"));
                }
                if scale > precision {
                    return Err(err("DECIMAL scale must not exceed its precision"));
                }
                Ok(ColumnType::Decimal {
                    precision: precision as u8,
                    scale: scale as u8,
                })
            }
            "CHAR" => match args.as_slice() {
                [] => Ok(ColumnType::Char(1)),
                [n] if (1..=MAX_CHAR_LENGTH).contains(n) => Ok(ColumnType::Char(*n)),
                [_] => Err(err("CHAR length must be between 1 and 255")),
                _ => Err(err("CHAR takes one length")),
            },
            "VARCHAR" => match args.as_slice() {
                [] => Ok(ColumnType::Varchar(1)),
                [n] if (1..=MAX_VARCHAR_LENGTH).contains(n) => Ok(ColumnType::Varchar(*n)),
                [_] => Err(err("VARCHAR length must be between 1 and 1048576")),
                _ => Err(err("VARCHAR takes one length")),
            },
            _ => Err(err(
                "expected one of BOOLEAN, TINYINT, SMALLINT, INT, BIGINT, LARGEINT, FLOAT, DOUBLE, \
                 DECIMAL(p,s), DATE, DATETIME, CHAR(n), VARCHAR(n), STRING, JSON",
            )),
        }
    }
}

/// The pattern the CRD schema uses to refuse unknown type names at apply time.
pub const COLUMN_TYPE_PATTERN: &str = r"^(?i)\s*(BOOLEAN|BOOL|TINYINT|SMALLINT|INT|INTEGER|BIGINT|LARGEINT|FLOAT|DOUBLE|DATE|DATETIME|STRING|JSON|(DECIMAL|DECIMALV2|DECIMAL32|DECIMAL64|DECIMAL128)(\s*\(\s*\d+\s*(,\s*\d+\s*)?\))?|(CHAR|VARCHAR)(\s*\(\s*\d+\s*\))?)\s*$";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_starrocks_type() {
        let cases = [
            ("BOOLEAN", ColumnType::Boolean, DataType::Boolean),
            ("tinyint", ColumnType::TinyInt, DataType::Int8),
            ("SMALLINT", ColumnType::SmallInt, DataType::Int16),
            ("INT", ColumnType::Int, DataType::Int32),
            ("BIGINT", ColumnType::BigInt, DataType::Int64),
            (
                "LARGEINT",
                ColumnType::LargeInt,
                DataType::Decimal128(38, 0),
            ),
            ("FLOAT", ColumnType::Float, DataType::Float32),
            ("DOUBLE", ColumnType::Double, DataType::Float64),
            (
                "DECIMAL(10, 2)",
                ColumnType::Decimal {
                    precision: 10,
                    scale: 2,
                },
                DataType::Decimal128(10, 2),
            ),
            ("DATE", ColumnType::Date, DataType::Date32),
            (
                "DATETIME",
                ColumnType::DateTime,
                DataType::Timestamp(TimeUnit::Microsecond, None),
            ),
            ("CHAR(3)", ColumnType::Char(3), DataType::Utf8),
            ("varchar(255)", ColumnType::Varchar(255), DataType::Utf8),
            ("STRING", ColumnType::String, DataType::Utf8),
            ("JSON", ColumnType::Json, DataType::Utf8),
        ];
        for (text, expected, arrow) in cases {
            let parsed: ColumnType = text.parse().unwrap();
            assert_eq!(parsed, expected, "{text}");
            assert_eq!(parsed.arrow_type(), arrow, "{text}");
            assert_eq!(
                parsed.to_string().parse::<ColumnType>().unwrap(),
                parsed,
                "display round trip of {text}"
            );
        }
    }

    #[test]
    fn refuses_bad_types_with_the_reason() {
        let cases = [
            ("TEXT", "expected one of"),
            ("DECIMAL(40,2)", "precision must be between 1 and 38"),
            ("DECIMAL(5,6)", "scale must not exceed"),
            ("VARCHAR(0)", "VARCHAR length"),
            ("CHAR(256)", "CHAR length"),
            ("INT(3)", "takes no arguments"),
            ("DECIMAL(10,2", "missing closing parenthesis"),
        ];
        for (text, reason) in cases {
            let err = text.parse::<ColumnType>().unwrap_err();
            assert!(err.to_string().contains(reason), "{text}: {err}");
        }
    }
}
