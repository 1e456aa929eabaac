//! StarRocks functions that COLUMNS and WHERE expressions use and DataFusion lacks or names
//! differently, registered as vectorized DataFusion UDFs: `str_to_date`, `from_unixtime`,
//! `unix_timestamp`, `date_format` and `if`. The time-zone-sensitive ones use the job's
//! `timezone`.

use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, StringArray, TimestampMicrosecondArray,
};
use deltalake::arrow::compute::kernels::zip::zip;
use deltalake::arrow::compute::{cast, is_not_null};
use deltalake::arrow::datatypes::{DataType, TimeUnit};
use deltalake::datafusion::common::{DataFusionError, Result, exec_err, plan_err};
use deltalake::datafusion::logical_expr::type_coercion::binary::comparison_coercion;
use deltalake::datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The UDFs for a job running in `tz`.
pub fn starrocks_functions(tz: Tz) -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::from(StrToDate::new()),
        ScalarUDF::from(FromUnixtime::new(tz)),
        ScalarUDF::from(UnixTimestamp::new(tz)),
        ScalarUDF::from(DateFormat::new()),
        ScalarUDF::from(If::new()),
    ]
}

/// StarRocks' default DATETIME text format.
const DEFAULT_DATETIME_FORMAT: &str = "%Y-%m-%d %H:%i:%s";

/// Translates a MySQL/StarRocks date format (`%Y-%m-%d %H:%i:%s`) into chrono's.
pub fn mysql_format_to_chrono(format: &str) -> String {
    let mut out = String::with_capacity(format.len() + 8);
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(spec) = chars.next() else {
            out.push_str("%%");
            break;
        };
        out.push_str(match spec {
            'Y' => "%Y",
            'y' => "%y",
            'm' => "%m",
            'c' => "%-m",
            'd' => "%d",
            'e' => "%-d",
            'H' => "%H",
            'k' => "%-H",
            'h' | 'I' => "%I",
            'l' => "%-I",
            'i' => "%M",
            's' | 'S' => "%S",
            'f' => "%6f",
            'p' => "%p",
            'M' => "%B",
            'b' => "%b",
            'W' => "%A",
            'a' => "%a",
            'j' => "%j",
            'T' => "%H:%M:%S",
            'r' => "%I:%M:%S %p",
            '%' => "%%",
            other => {
                out.push(other);
                continue;
            }
        });
    }
    out
}

pub(super) fn parse_with_format(text: &str, chrono_format: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(text, chrono_format)
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(text, chrono_format)
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
}

/// Arguments as arrays of `number_rows` rows.
fn arrays(args: &ScalarFunctionArgs) -> Result<Vec<ArrayRef>> {
    args.args
        .iter()
        .map(|a| a.to_array(args.number_rows))
        .collect()
}

fn utf8(array: &ArrayRef) -> Result<ArrayRef> {
    Ok(cast(array, &DataType::Utf8)?)
}

/// A wall-clock DATETIME from a timestamp, date or text argument.
pub(super) fn datetime_micros(array: &ArrayRef) -> Result<TimestampMicrosecondArray> {
    match array.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let text = cast(array, &DataType::Utf8)?;
            Ok(text
                .as_string::<i32>()
                .iter()
                .map(|v| v.and_then(|s| crate::value::parse_datetime(s.as_bytes()).ok()))
                .collect())
        }
        _ => {
            let cast_to = cast(array, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
            Ok(cast_to.as_primitive().clone())
        }
    }
}

macro_rules! udf_boilerplate {
    ($name:literal) => {
        fn name(&self) -> &str {
            $name
        }
        fn signature(&self) -> &Signature {
            &self.signature
        }
    };
}

/// `str_to_date(text, format)`: parses text with a MySQL format into a DATETIME; NULL when it
/// does not match.
#[derive(Debug, PartialEq, Eq, Hash)]
struct StrToDate {
    signature: Signature,
}

impl StrToDate {
    fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for StrToDate {
    udf_boilerplate!("str_to_date");

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 2 {
            return plan_err!("str_to_date takes (text, format)");
        }
        Ok(vec![DataType::Utf8, DataType::Utf8])
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Timestamp(TimeUnit::Microsecond, None))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = arrays(&args)?;
        let text = utf8(&arrays[0])?;
        let format = utf8(&arrays[1])?;
        let (text, format) = (text.as_string::<i32>(), format.as_string::<i32>());
        let mut cached: Option<(String, String)> = None;
        let out: TimestampMicrosecondArray = (0..text.len())
            .map(|i| {
                if text.is_null(i) || format.is_null(i) {
                    return None;
                }
                let fmt = format.value(i);
                if cached.as_ref().is_none_or(|(m, _)| m != fmt) {
                    cached = Some((fmt.to_string(), mysql_format_to_chrono(fmt)));
                }
                let chrono_fmt = &cached.as_ref().expect("set above").1;
                parse_with_format(text.value(i), chrono_fmt).map(|d| d.and_utc().timestamp_micros())
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// `from_unixtime(seconds[, format])`: the DATETIME text of a Unix time in the job's time zone.
#[derive(Debug, PartialEq, Eq, Hash)]
struct FromUnixtime {
    signature: Signature,
    tz: Tz,
}

impl FromUnixtime {
    fn new(tz: Tz) -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
            tz,
        }
    }
}

impl ScalarUDFImpl for FromUnixtime {
    udf_boilerplate!("from_unixtime");

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types.len() {
            1 => Ok(vec![DataType::Int64]),
            2 => Ok(vec![DataType::Int64, DataType::Utf8]),
            _ => plan_err!("from_unixtime takes (seconds[, format])"),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = arrays(&args)?;
        let seconds = cast(&arrays[0], &DataType::Int64)?;
        let seconds = seconds.as_primitive::<deltalake::arrow::datatypes::Int64Type>();
        let format = match arrays.get(1) {
            Some(f) => Some(utf8(f)?),
            None => None,
        };
        let default_format = mysql_format_to_chrono(DEFAULT_DATETIME_FORMAT);
        let out: StringArray = (0..seconds.len())
            .map(|i| {
                if seconds.is_null(i) {
                    return None;
                }
                let fmt = match &format {
                    Some(f) if f.is_null(i) => return None,
                    Some(f) => mysql_format_to_chrono(f.as_string::<i32>().value(i)),
                    None => default_format.clone(),
                };
                let instant = self.tz.timestamp_opt(seconds.value(i), 0).single()?;
                Some(instant.format(&fmt).to_string())
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// `unix_timestamp(datetime)`: seconds since the Unix epoch of a DATETIME (or its text) read as
/// wall-clock time in the job's time zone.
#[derive(Debug, PartialEq, Eq, Hash)]
struct UnixTimestamp {
    signature: Signature,
    tz: Tz,
}

impl UnixTimestamp {
    fn new(tz: Tz) -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
            tz,
        }
    }
}

impl ScalarUDFImpl for UnixTimestamp {
    udf_boilerplate!("unix_timestamp");

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [t] => Ok(vec![t.clone()]),
            _ => plan_err!("unix_timestamp takes (datetime)"),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = arrays(&args)?;
        let micros = datetime_micros(&arrays[0])?;
        let out: Int64Array = micros
            .iter()
            .map(|v| {
                let naive = crate::value::micros_to_naive(v?)?;
                self.tz
                    .from_local_datetime(&naive)
                    .earliest()
                    .map(|d| d.timestamp())
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// `date_format(datetime, format)`: a DATETIME (or DATE, or its text) formatted with a MySQL
/// format.
#[derive(Debug, PartialEq, Eq, Hash)]
struct DateFormat {
    signature: Signature,
}

impl DateFormat {
    fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for DateFormat {
    udf_boilerplate!("date_format");

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [t, _] => Ok(vec![t.clone(), DataType::Utf8]),
            _ => plan_err!("date_format takes (datetime, format)"),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = arrays(&args)?;
        let micros = datetime_micros(&arrays[0])?;
        let format = utf8(&arrays[1])?;
        let format = format.as_string::<i32>();
        let out: StringArray = (0..micros.len())
            .map(|i| {
                if micros.is_null(i) || format.is_null(i) {
                    return None;
                }
                let naive = crate::value::micros_to_naive(micros.value(i))?;
                Some(
                    naive
                        .format(&mysql_format_to_chrono(format.value(i)))
                        .to_string(),
                )
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// `if(condition, then, else)`: `then` where the condition is true, `else` where it is false or
/// NULL.
#[derive(Debug, PartialEq, Eq, Hash)]
struct If {
    signature: Signature,
}

impl If {
    fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for If {
    udf_boilerplate!("if");

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let [_, then, otherwise] = arg_types else {
            return plan_err!("if takes (condition, then, else)");
        };
        let common = comparison_coercion(then, otherwise).ok_or_else(|| {
            DataFusionError::Plan(format!(
                "if: the then ({then}) and else ({otherwise}) values have no common type"
            ))
        })?;
        Ok(vec![DataType::Boolean, common.clone(), common])
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[1].clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = arrays(&args)?;
        let Some(condition) = arrays[0].as_boolean_opt() else {
            return exec_err!("if: the condition must be a boolean");
        };
        // NULL conditions take the else branch.
        let mask: BooleanArray =
            deltalake::arrow::compute::and(condition, &is_not_null(condition)?)?;
        let mask = BooleanArray::new(mask.values().clone(), None);
        Ok(ColumnarValue::Array(zip(&mask, &arrays[1], &arrays[2])?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_formats_translate() {
        assert_eq!(
            mysql_format_to_chrono("%Y-%m-%d %H:%i:%s"),
            "%Y-%m-%d %H:%M:%S"
        );
        assert_eq!(mysql_format_to_chrono("%d/%c/%y %T"), "%d/%-m/%y %H:%M:%S");
    }
}
