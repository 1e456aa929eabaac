//! StarRocks expression syntax, rewritten into what DataFusion plans. The text is parsed with
//! the MySQL dialect (StarRocks' own), the tree is rewritten, and printed back:
//!
//! - `"text"` is a string (MySQL), not an identifier; identifiers are quoted with backticks;
//! - `date_add(d, INTERVAL n DAY)`, `date_sub`, `adddate`, `subdate`, `d + INTERVAL n DAY` and
//!   `d - INTERVAL ...` become `days_add(d, n)` / `days_sub(d, n)` (any unit, any expression
//!   for `n`); `timestampadd(DAY, n, d)` and `timestampdiff(DAY, a, b)` likewise;
//! - `json -> 'path'` is `json_query(json, 'path')`, `json ->> 'path'` is `get_json_string`;
//! - `a DIV b` is integer division, `mod(a, b)` is `a % b`, `log(x)` is `ln(x)`, and StarRocks'
//!   other names for DataFusion functions (`ucase`, `ceiling`, `truncate`, ...) are mapped;
//! - functions that need BITMAP or HLL columns, StarRocks functions this build lacks, and
//!   unknown names are refused with a message that says which.

use std::ops::ControlFlow;

use deltalake::datafusion::sql::sqlparser::ast::{
    BinaryOperator, DataType as SqlType, ExactNumberInfo, Expr, FunctionArg, FunctionArgExpr,
    FunctionArguments, TimezoneInfo, Value, ValueWithSpan, visit_expressions_mut,
};
use deltalake::datafusion::sql::sqlparser::dialect::MySqlDialect;
use deltalake::datafusion::sql::sqlparser::parser::Parser;
use deltalake::datafusion::sql::sqlparser::tokenizer::Token;

use super::time_functions::Unit;

/// StarRocks functions whose values are BITMAP, HLL or PERCENTILE, which Delta has no column
/// type for.
const SKETCH_FUNCTIONS: &[&str] = &[
    "to_bitmap",
    "bitmap_hash",
    "bitmap_hash64",
    "bitmap_empty",
    "bitmap_from_string",
    "bitmap_from_binary",
    "base64_to_bitmap",
    "array_to_bitmap",
    "bitmap_and",
    "bitmap_or",
    "bitmap_xor",
    "bitmap_not",
    "bitmap_andnot",
    "bitmap_remove",
    "bitmap_union",
    "bitmap_agg",
    "bitmap_count",
    "bitmap_contains",
    "bitmap_has_any",
    "bitmap_to_string",
    "bitmap_to_array",
    "bitmap_to_base64",
    "bitmap_max",
    "bitmap_min",
    "sub_bitmap",
    "bitmap_subset_in_range",
    "bitmap_subset_limit",
    "hll_hash",
    "hll_empty",
    "hll_cardinality",
    "hll_union",
    "hll_union_agg",
    "hll_raw_agg",
    "hll_serialize",
    "hll_deserialize",
    "percentile_hash",
    "percentile_empty",
];

/// StarRocks scalar functions that this build does not provide (yet).
const STARROCKS_UNSUPPORTED: &[&str] = &[
    "xx_hash3_128",
    "md5sum",
    "md5sum_numeric",
    "sm3",
    "aes_encrypt",
    "aes_decrypt",
    "fpe_encrypt",
    "fpe_decrypt",
    "blake3",
    "from_base64",
    "to_base64",
    "base64_decode_binary",
    "base64_decode_string",
    "hex_decode_binary",
    "hex_decode_string",
    "inet_aton",
    "ngram_search",
    "str_to_map",
    "tokenize",
    "format_bytes",
    "time_slice",
    "date_slice",
    "time_format",
    "time_to_sec",
    "sec_to_time",
    "jodatime_format",
    "str_to_jodatime",
    "to_tera_date",
    "to_tera_timestamp",
    "to_iso8601",
    "from_iso8601_date",
    "yearweek",
    "week_iso",
    "next_day",
    "previous_day",
    "from_unixtime_ms",
    "unixtime_to_datetime",
    "to_datetime",
    "to_datetime_ntz",
    "current_timezone",
    "utc_time",
    "json_each",
    "json_contains",
    "json_remove",
    "json_set",
    "json_pretty",
    "json_update",
    "is_json_scalar",
    "get_json_scalar",
    "to_json",
    "array_agg",
    "map_from_arrays",
    "str2date",
    "parse_url",
    "conv",
    "bin",
    "strcmp",
    "field",
    "format",
    "compress",
    "uncompress",
    "search",
];

/// DataFusion's name for a StarRocks function that differs only in name.
fn renamed(name: &str) -> Option<&'static str> {
    Some(match name {
        "ucase" => "upper",
        "lcase" => "lower",
        "strleft" => "left",
        "strright" => "right",
        "ceiling" | "dceil" => "ceil",
        "dfloor" => "floor",
        "dround" => "round",
        "truncate" => "trunc",
        "rand" => "random",
        "sign" => "signum",
        "lower_utf8" => "lower",
        "upper_utf8" => "upper",
        _ => return None,
    })
}

/// Parses StarRocks expression text with the MySQL dialect, rewrites it and prints the text
/// DataFusion plans. `known` says whether DataFusion (with the registered functions) has a
/// function of that name.
pub fn to_datafusion_sql(sql: &str, known: &dyn Fn(&str) -> bool) -> Result<String, String> {
    let mut expr = parse(sql)?;
    let flow = visit_expressions_mut(&mut expr, |e| match rewrite(e, known) {
        Ok(()) => ControlFlow::Continue(()),
        Err(message) => ControlFlow::Break(message),
    });
    if let ControlFlow::Break(message) = flow {
        return Err(message);
    }
    Ok(expr.to_string())
}

fn parse(sql: &str) -> Result<Expr, String> {
    let dialect = MySqlDialect {};
    let mut parser = Parser::new(&dialect)
        .try_with_sql(sql)
        .map_err(|e| e.to_string())?;
    let expr = parser.parse_expr().map_err(|e| e.to_string())?;
    let next = parser.peek_token();
    if next.token != Token::EOF {
        return Err(format!("unexpected '{}' after the expression", next.token));
    }
    Ok(expr)
}

fn reparse(sql: String) -> Result<Expr, String> {
    parse(&sql).map_err(|e| format!("internal rewrite of '{sql}' failed: {e}"))
}

fn function_args(args: &FunctionArguments) -> Option<Vec<&Expr>> {
    match args {
        FunctionArguments::None => Some(Vec::new()),
        FunctionArguments::List(list) => list
            .args
            .iter()
            .map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                _ => None,
            })
            .collect(),
        FunctionArguments::Subquery(_) => None,
    }
}

/// The unit function (`days_add`) and the count of an INTERVAL.
fn interval_parts(e: &Expr) -> Option<Result<(Unit, String), String>> {
    let Expr::Interval(interval) = e else {
        return None;
    };
    let Some(field) = &interval.leading_field else {
        return Some(Err(format!(
            "INTERVAL {} needs a unit (YEAR, QUARTER, MONTH, WEEK, DAY, HOUR, MINUTE, SECOND, MILLISECOND or MICROSECOND)",
            interval.value
        )));
    };
    let name = field.to_string();
    Some(match Unit::parse(&name) {
        Some(u) => Ok((u, interval.value.to_string())),
        None => Err(format!(
            "INTERVAL unit {name} is not supported: use YEAR, QUARTER, MONTH, WEEK, DAY, HOUR, MINUTE, SECOND, MILLISECOND or MICROSECOND"
        )),
    })
}

fn unit_call(unit: Unit, op: &str, date: &str, count: &str) -> String {
    format!("{}s_{op}({date}, {count})", unit.name())
}

fn rewrite(e: &mut Expr, known: &dyn Fn(&str) -> bool) -> Result<(), String> {
    match e {
        Expr::Value(ValueWithSpan {
            value: v @ Value::DoubleQuotedString(_),
            ..
        }) => {
            if let Value::DoubleQuotedString(s) = v {
                *v = Value::SingleQuotedString(std::mem::take(s));
            }
        }
        Expr::Cast { data_type, .. } => {
            if let Some(t) = datafusion_type(data_type) {
                *data_type = t;
            }
        }
        Expr::BinaryOp { left, op, right } => {
            let rewritten = match op {
                BinaryOperator::Arrow => Some(format!("json_query({left}, {right})")),
                BinaryOperator::LongArrow => Some(format!("get_json_string({left}, {right})")),
                BinaryOperator::MyIntegerDivide => {
                    Some(format!("CAST(trunc(({left}) / ({right})) AS BIGINT)"))
                }
                BinaryOperator::Plus | BinaryOperator::Minus => {
                    let sub = matches!(op, BinaryOperator::Minus);
                    match (interval_parts(right), interval_parts(left)) {
                        (Some(parts), _) => {
                            let (unit, count) = parts?;
                            Some(unit_call(
                                unit,
                                if sub { "sub" } else { "add" },
                                &left.to_string(),
                                &count,
                            ))
                        }
                        (None, Some(parts)) if !sub => {
                            let (unit, count) = parts?;
                            Some(unit_call(unit, "add", &right.to_string(), &count))
                        }
                        _ => None,
                    }
                }
                _ => None,
            };
            if let Some(sql) = rewritten {
                *e = reparse(sql)?;
            }
        }
        Expr::Function(f) => {
            let name = f.name.to_string().to_ascii_lowercase();
            if SKETCH_FUNCTIONS.contains(&name.as_str()) {
                return Err(format!(
                    "{name}() makes a BITMAP, HLL or PERCENTILE value; Delta tables have no such column type, so it can't be loaded: load the source value (for example the id as BIGINT) and build the sketch in the engine that reads the table"
                ));
            }
            let Some(args) = function_args(&f.args) else {
                return Ok(());
            };
            let text: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            let rewritten = match (name.as_str(), args.as_slice()) {
                ("date_add" | "adddate" | "date_sub" | "subdate", [date, interval])
                    if matches!(interval, Expr::Interval(_)) =>
                {
                    let (unit, count) = interval_parts(interval).expect("an interval")?;
                    let op = if name.contains("add") { "add" } else { "sub" };
                    Some(unit_call(unit, op, &date.to_string(), &count))
                }
                ("timestampadd" | "timestampdiff", [unit, a, b]) => {
                    let unit_text = unit.to_string();
                    let Some(unit) = Unit::parse(&unit_text) else {
                        return Err(format!("{name}: unknown unit {unit_text}"));
                    };
                    Some(if name == "timestampadd" {
                        unit_call(unit, "add", &b.to_string(), &a.to_string())
                    } else {
                        format!("{}s_diff({b}, {a})", unit.name())
                    })
                }
                ("log", [x]) => Some(format!("ln({x})")),
                ("mod" | "fmod", [a, b]) => Some(format!("(({a}) % ({b}))")),
                ("pmod", [a, b]) => Some(format!("(((({a}) % ({b})) + ({b})) % ({b}))")),
                ("square", [x]) => Some(format!("(({x}) * ({x}))")),
                ("positive", [x]) => Some(format!("({x})")),
                ("negative", [x]) => Some(format!("(-({x}))")),
                ("e", []) => Some("exp(1)".to_string()),
                _ => renamed(&name).map(|new| format!("{new}({})", text.join(", "))),
            };
            match rewritten {
                Some(sql) => *e = reparse(sql)?,
                None => check_known(&name, known)?,
            }
        }
        _ => {}
    }
    Ok(())
}

/// DataFusion's name for a StarRocks type in CAST.
fn datafusion_type(t: &SqlType) -> Option<SqlType> {
    match t {
        SqlType::Datetime(_) => Some(SqlType::Timestamp(None, TimezoneInfo::None)),
        SqlType::JSON | SqlType::String(_) => Some(SqlType::Text),
        SqlType::Custom(name, _) if name.to_string().eq_ignore_ascii_case("largeint") => {
            Some(SqlType::Decimal(ExactNumberInfo::PrecisionAndScale(38, 0)))
        }
        _ => None,
    }
}

fn check_known(name: &str, known: &dyn Fn(&str) -> bool) -> Result<(), String> {
    if known(name) {
        return Ok(());
    }
    if STARROCKS_UNSUPPORTED.contains(&name) {
        return Err(format!(
            "StarRocks function {name}() is not supported in COLUMNS and WHERE expressions of this load (see the README's list of functions)"
        ));
    }
    Err(format!(
        "unknown function {name}(): it is neither a StarRocks function this load supports nor a DataFusion built-in"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        to_datafusion_sql(sql, &|_| true).unwrap()
    }

    #[test]
    fn starrocks_syntax_becomes_datafusion_syntax() {
        let cases = [
            ("date_add(dt, INTERVAL 2 DAY)", "days_add(dt, 2)"),
            ("date_sub(dt, INTERVAL n MONTH)", "months_sub(dt, n)"),
            ("adddate(dt, INTERVAL -1 QUARTER)", "quarters_add(dt, -1)"),
            ("dt + INTERVAL 3 HOUR", "hours_add(dt, 3)"),
            ("dt - INTERVAL '1' SECOND", "seconds_sub(dt, '1')"),
            ("date_add(dt, 1)", "date_add(dt, 1)"),
            ("timestampadd(MINUTE, 5, dt)", "minutes_add(dt, 5)"),
            ("timestampdiff(DAY, a, b)", "days_diff(b, a)"),
            ("get_json_string(j, \"$.k1\")", "get_json_string(j, '$.k1')"),
            ("j -> '$.a'", "json_query(j, '$.a')"),
            ("j->'a'->'b'", "json_query(json_query(j, 'a'), 'b')"),
            ("a DIV b", "CAST(trunc((a) / (b)) AS BIGINT)"),
            ("mod(a, 3)", "((a) % (3))"),
            ("ucase(`user`)", "upper(`user`)"),
            ("log(x)", "ln(x)"),
        ];
        for (sql, expected) in cases {
            assert_eq!(rewritten(sql), expected, "{sql}");
        }
    }

    #[test]
    fn refuses_sketches_and_unknown_functions_by_name() {
        let known = |n: &str| n == "abs";
        let err = to_datafusion_sql("to_bitmap(user_id)", &known).unwrap_err();
        assert!(err.contains("to_bitmap() makes a BITMAP"), "{err}");
        assert!(
            err.contains("Delta tables have no such column type"),
            "{err}"
        );
        let err = to_datafusion_sql("hll_hash(user_id)", &known).unwrap_err();
        assert!(err.contains("hll_hash()"), "{err}");
        let err = to_datafusion_sql("abs(xx_hash3_128(a))", &known).unwrap_err();
        assert!(
            err.contains("StarRocks function xx_hash3_128() is not supported"),
            "{err}"
        );
        let err = to_datafusion_sql("no_such_function(a)", &known).unwrap_err();
        assert!(err.contains("unknown function no_such_function()"), "{err}");
        let err = to_datafusion_sql("date_add(d, INTERVAL 1 FORTNIGHT)", &known).unwrap_err();
        assert!(!err.is_empty());
    }
}
