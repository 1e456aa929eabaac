//! Error rows: rows filtered for data quality, kept with their source text and a reason in
//! StarRocks' words, as the error log shows them.

use std::fmt;

use routine_load_api::ColumnType;
use routine_load_api::job::DataFormat;
use routine_load_api::value::ConvertError;

/// StarRocks' reasons, word for word where StarRocks has one.
pub mod reason {
    pub const TOO_LONG: &str = "the length of input is too long than schema";
    pub const FEWER_COLUMNS: &str = "actual column number is less than schema column number";
    pub const MORE_COLUMNS: &str = "actual column number is more than schema column number";
    pub const FRAC_TOO_LONG: &str = "The frac part length longer than schema scale";
    pub const INT_TOO_LONG: &str = "The int part length longer than schema precision";
    pub const DECIMAL_OVERFLOW: &str = "The length of decimal value is overflow";
    pub const NO_PARTITION: &str = "There is no corresponding partition for this key";
    pub const INVALID_UTF8: &str = "invalid UTF-8 in the input";
    pub const ARRAY_NOT_SUPPORTED: &str = "the Array type is not supported";
    pub const NULL_IN_NOT_NULL: &str = "NULL value in non-nullable column";
    pub const INVALID_JSON: &str = "invalid JSON";
}

/// The reason text for a conversion failure of a value into `column_type`.
pub fn conversion_reason(
    err: ConvertError,
    column_type: &ColumnType,
    format: DataFormat,
) -> String {
    match err {
        ConvertError::TooLong => reason::TOO_LONG.to_string(),
        ConvertError::FracTooLong => reason::FRAC_TOO_LONG.to_string(),
        ConvertError::IntTooLong => reason::INT_TOO_LONG.to_string(),
        ConvertError::DecimalOverflow => reason::DECIMAL_OVERFLOW.to_string(),
        ConvertError::Invalid if column_type.is_string() && *column_type != ColumnType::Json => {
            reason::INVALID_UTF8.to_string()
        }
        ConvertError::Invalid => {
            let source = match format {
                DataFormat::Csv => "csv string",
                DataFormat::Json => "json value",
                DataFormat::Avro => "avro value",
            };
            format!(
                "convert {source} to {} failed",
                column_type.starrocks_name()
            )
        }
    }
}

/// A row that was not loaded, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorRow {
    /// Kafka partition of the message.
    pub partition: i32,
    /// Kafka offset of the message.
    pub offset: i64,
    /// Why, in StarRocks' words.
    pub reason: String,
    /// The column that failed, when one did.
    pub column: Option<String>,
    /// The field's text, when one field failed.
    pub value: Option<String>,
    /// The row as received (lossy UTF-8, cut at [`MAX_LOGGED_ROW_BYTES`]).
    pub row: String,
}

/// Longest source text kept per error row.
pub const MAX_LOGGED_ROW_BYTES: usize = 4096;

/// The text of a payload for the error log: lossy UTF-8, cut to a bounded length.
pub fn loggable(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(MAX_LOGGED_ROW_BYTES)];
    let mut text = String::from_utf8_lossy(cut).into_owned();
    if cut.len() < bytes.len() {
        text.push_str("...");
    }
    text
}

impl fmt::Display for ErrorRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error: {}.", self.reason)?;
        if let Some(column) = &self.column {
            write!(f, " Column: {column}.")?;
        }
        if let Some(value) = &self.value {
            write!(f, " Value: '{value}'.")?;
        }
        write!(
            f,
            " Partition: {}, offset: {}. Row: {}",
            self.partition, self.offset, self.row
        )
    }
}
