//! A Stream Load request as StarRocks defines it: the HTTP headers read into load settings, the
//! job spec the load engine plans from, the body split into rows, and the filter-ratio verdict.
//! Pure functions, no I/O.

use axum::http::HeaderMap;
use routine_load_api::RoutineLoadJobSpec;
use routine_load_api::job::DataFormat;
use routine_load_api::load::{CSV_ONLY_HEADERS, JSON_ONLY_HEADERS};
use serde_json::{Map, Value, json};

/// How much of a body a load takes and holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// The largest body (StarRocks `streaming_load_max_mb`, 10 GiB). A CSV body is streamed: it
    /// is read, loaded and written as data files `chunk_bytes` at a time, and never held whole.
    pub max_body_bytes: u64,
    /// The largest JSON body (StarRocks `streaming_load_max_batch_size_mb`, 100 MiB): a JSON
    /// body can be one document (`strip_outer_array`), so it is held whole until it is loaded.
    pub max_json_body_bytes: u64,
    /// The largest body of a load into a keyed table (1 GiB): its rows are held (as Arrow, not
    /// as the body) until the load's one MERGE.
    pub max_keyed_body_bytes: u64,
    /// How much of a CSV body is read before its complete rows are loaded (and written); also
    /// the longest row a CSV body may have.
    pub chunk_bytes: usize,
}

impl Default for BodyLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 10 * 1024 * 1024 * 1024,
            max_json_body_bytes: 100 * 1024 * 1024,
            max_keyed_body_bytes: 1024 * 1024 * 1024,
            chunk_bytes: 64 * 1024 * 1024,
        }
    }
}

impl BodyLimits {
    /// The largest body of a load in `format` (into a keyed table or not), and the setting
    /// that makes it so.
    pub fn limit_for(&self, format: DataFormat, keyed: bool) -> (u64, &'static str) {
        let mut limit = (
            self.max_body_bytes,
            "ROUTINE_LOAD_STREAM_LOAD_MAX_BODY_BYTES, StarRocks streaming_load_max_mb",
        );
        if format != DataFormat::Csv && self.max_json_body_bytes < limit.0 {
            limit = (
                self.max_json_body_bytes,
                "ROUTINE_LOAD_STREAM_LOAD_MAX_JSON_BODY_BYTES: a JSON body is held whole; StarRocks streaming_load_max_batch_size_mb",
            );
        }
        if keyed && self.max_keyed_body_bytes < limit.0 {
            limit = (
                self.max_keyed_body_bytes,
                "ROUTINE_LOAD_STREAM_LOAD_MAX_KEYED_BODY_BYTES: a load into a keyed table holds its rows until its MERGE",
            );
        }
        limit
    }

    /// Why a body is refused for its size, naming the setting to change.
    pub fn too_large(&self, format: DataFormat, keyed: bool) -> String {
        let (max, setting) = self.limit_for(format, keyed);
        format!(
            "the body is larger than this worker's limit of {max} bytes for this {} load ({setting})",
            format_name(format)
        )
    }

    /// Why a CSV body is refused for a row longer than a chunk.
    pub fn row_too_long(&self, delimiter: &[u8]) -> String {
        format!(
            "no row delimiter {:?} in {} bytes of the body: a row is at most that long (ROUTINE_LOAD_STREAM_LOAD_CHUNK_BYTES); check row_delimiter",
            String::from_utf8_lossy(delimiter),
            self.chunk_bytes
        )
    }

    /// Whether a body of `format` is loaded chunk by chunk as it arrives (CSV: its rows end at
    /// the row delimiter) rather than whole.
    pub fn streamed(format: DataFormat) -> bool {
        format == DataFormat::Csv
    }
}

fn format_name(format: DataFormat) -> &'static str {
    match format {
        DataFormat::Csv => "CSV",
        DataFormat::Json => "JSON",
        DataFormat::Avro => "Avro",
    }
}

/// Where the complete rows of a body's unread part end: just after its last row delimiter, 0
/// when it holds none. What follows is the start of a row whose end has not arrived. The
/// delimiters are found from the start, as [`split_rows`] finds them, so a delimiter that can
/// overlap itself (`||` in `a|||b`) ends the same rows whatever the cut.
pub fn complete_rows_end(pending: &[u8], delimiter: &[u8]) -> usize {
    memchr::memmem::find_iter(pending, delimiter)
        .last()
        .map_or(0, |i| i + delimiter.len())
}
pub use routine_load_api::load::{DEFAULT_TIMEOUT_SECS, MAX_TIMEOUT_SECS};

/// The Stream Load headers this endpoint implements, with StarRocks' names.
pub const LOAD_HEADERS: &[&str] = routine_load_api::load::STREAM_LOAD_HEADERS;

/// Plain HTTP headers a client or a proxy sends with any request.
const HTTP_HEADERS: &[&str] = &[
    "host",
    "user-agent",
    "accept",
    "accept-encoding",
    "authorization",
    "connection",
    "content-length",
    "content-type",
    "expect",
    "transfer-encoding",
    "x-request-id",
];

/// The load settings of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamLoadRequest {
    /// The label given, or `None` (the worker generates one).
    pub label: Option<String>,
    pub max_filter_ratio: f64,
    pub format: DataFormat,
    pub row_delimiter: Vec<u8>,
    pub strip_outer_array: bool,
    pub timeout_secs: u64,
    /// The settings the load engine plans from, as `RoutineLoadJobSpec` fields.
    pub spec_fields: Map<String, Value>,
}

/// Why a request's headers were refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HeaderError {
    #[error("unknown header '{0}': Stream Load takes {headers}", headers = LOAD_HEADERS.join(", "))]
    Unknown(String),
    #[error("header '{name}': {reason}")]
    Invalid { name: &'static str, reason: String },
}

fn invalid(name: &'static str, reason: impl Into<String>) -> HeaderError {
    HeaderError::Invalid {
        name,
        reason: reason.into(),
    }
}

/// StarRocks' `\x01`-style escapes in separators: `\xHH` is the byte HH; `\t`, `\n`, `\r` too.
fn unescape_separator(name: &'static str, s: &str) -> Result<String, HeaderError> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        if let Some(hex) = tail.strip_prefix('x').or_else(|| tail.strip_prefix('X')) {
            let h = hex
                .get(..2)
                .ok_or_else(|| invalid(name, format!("bad escape in '{s}'")))?;
            let b = u8::from_str_radix(h, 16)
                .map_err(|_| invalid(name, format!("bad escape \\x{h} in '{s}'")))?;
            out.push(b as char);
            rest = &hex[2..];
        } else {
            match tail.chars().next() {
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('\\') => out.push('\\'),
                _ => return Err(invalid(name, format!("bad escape in '{s}'"))),
            }
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    if out.is_empty() || out.len() > 50 {
        return Err(invalid(name, "must be 1 to 50 bytes"));
    }
    Ok(out)
}

fn parse_bool(name: &'static str, v: &str) -> Result<bool, HeaderError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(name, format!("'{v}' is not true or false"))),
    }
}

/// Splits a comma-separated list at top-level commas (not inside parentheses or quotes), as
/// StarRocks' `columns` header is written: `a, b, c = a + b, d = concat(a, ',', b)`.
pub fn split_top_level(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut depth, mut quote, mut cur) = (0i32, None::<char>, String::new());
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"' | '`') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => depth -= 1,
            (None, ',') if depth == 0 => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

pub use routine_load_api::load::valid_label;

/// Reads the Stream Load headers. Header names are case-insensitive (HTTP); an unknown one is
/// refused by name so a misspelt setting never loads with defaults.
pub fn parse_headers(headers: &HeaderMap) -> Result<StreamLoadRequest, HeaderError> {
    let mut req = StreamLoadRequest {
        label: None,
        max_filter_ratio: 0.0,
        format: DataFormat::Csv,
        row_delimiter: b"\n".to_vec(),
        strip_outer_array: false,
        timeout_secs: DEFAULT_TIMEOUT_SECS,
        spec_fields: Map::new(),
    };
    // StarRocks' Stream Load default: strict mode off.
    req.spec_fields.insert("strictMode".into(), false.into());
    let mut given = Vec::new();
    for (name, value) in headers {
        let name = name.as_str();
        if HTTP_HEADERS.contains(&name) || name.starts_with("x-forwarded-") {
            continue;
        }
        let Some(&known) = LOAD_HEADERS.iter().find(|h| **h == name) else {
            return Err(HeaderError::Unknown(name.to_string()));
        };
        let v = value
            .to_str()
            .map_err(|_| invalid(known, "not valid text"))?;
        given.push(known);
        let f = &mut req.spec_fields;
        match known {
            "label" => {
                if !valid_label(v) {
                    return Err(invalid(
                        "label",
                        format!(
                            "'{v}' is not a valid label: 1 to 128 lowercase letters, digits, '-' or '.', starting and ending with a letter or digit"
                        ),
                    ));
                }
                req.label = Some(v.to_string());
            }
            "column_separator" => {
                f.insert(
                    "columnSeparator".into(),
                    unescape_separator(known, v)?.into(),
                );
            }
            "row_delimiter" => {
                let d = unescape_separator(known, v)?;
                req.row_delimiter = d.clone().into_bytes();
                f.insert("rowDelimiter".into(), d.into());
            }
            "columns" => {
                f.insert("columns".into(), json!(split_top_level(v)));
            }
            "where" => {
                f.insert("where".into(), v.into());
            }
            "partitions" => {
                let p: Vec<String> = v
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                f.insert("partitions".into(), json!(p));
            }
            "max_filter_ratio" => {
                let r: f64 = v
                    .trim()
                    .parse()
                    .ok()
                    .filter(|r: &f64| (0.0..=1.0).contains(r))
                    .ok_or_else(|| invalid(known, format!("'{v}' is not a number from 0 to 1")))?;
                req.max_filter_ratio = r;
            }
            "strict_mode" => {
                f.insert("strictMode".into(), parse_bool(known, v)?.into());
            }
            "timezone" => {
                f.insert("timezone".into(), v.trim().into());
            }
            "format" => {
                req.format = match v.trim().to_ascii_lowercase().as_str() {
                    "csv" => DataFormat::Csv,
                    "json" => DataFormat::Json,
                    _ => return Err(invalid(known, format!("'{v}' is not csv or json"))),
                };
            }
            "jsonpaths" => {
                let paths: Vec<String> = serde_json::from_str(v).map_err(|e| {
                    invalid(known, format!("'{v}' is not a JSON array of paths: {e}"))
                })?;
                f.insert("jsonPaths".into(), json!(paths));
            }
            "strip_outer_array" => {
                req.strip_outer_array = parse_bool(known, v)?;
                f.insert("stripOuterArray".into(), req.strip_outer_array.into());
            }
            "json_root" => {
                f.insert("jsonRoot".into(), v.into());
            }
            "enclose" => {
                f.insert("enclose".into(), v.into());
            }
            "escape" => {
                f.insert("escape".into(), v.into());
            }
            "trim_space" => {
                f.insert("trimSpace".into(), parse_bool(known, v)?.into());
            }
            "partial_update" => {
                f.insert("partialUpdate".into(), parse_bool(known, v)?.into());
            }
            "merge_condition" => {
                f.insert("mergeCondition".into(), v.trim().into());
            }
            "timeout" => {
                req.timeout_secs = v
                    .trim()
                    .parse()
                    .ok()
                    .filter(|t| (1..=MAX_TIMEOUT_SECS).contains(t))
                    .ok_or_else(|| {
                        invalid(
                            known,
                            format!(
                                "'{v}' is not a number of seconds from 1 to {MAX_TIMEOUT_SECS} (StarRocks max_stream_load_timeout_second)"
                            ),
                        )
                    })?;
            }
            _ => unreachable!("every LOAD_HEADERS entry is handled"),
        }
    }
    // The header parser above only yields csv or json.
    let (wrong, applies_to) = match req.format {
        DataFormat::Csv => (JSON_ONLY_HEADERS, "json"),
        DataFormat::Json | DataFormat::Avro => (CSV_ONLY_HEADERS, "csv"),
    };
    if let Some(&h) = given.iter().find(|h| wrong.contains(h)) {
        return Err(invalid(h, format!("applies only to format: {applies_to}")));
    }
    let format = serde_json::to_value(req.format).unwrap_or_else(|_| "csv".into());
    req.spec_fields.insert("format".into(), format);
    Ok(req)
}

/// The job spec the load engine plans a Stream Load into `table` from: the request's settings,
/// no error window (the load's verdict is its filter ratio) and a source that is no Kafka topic.
pub fn job_spec(req: &StreamLoadRequest, table: &str) -> Result<RoutineLoadJobSpec, String> {
    let mut spec = req.spec_fields.clone();
    spec.insert("table".into(), table.into());
    spec.insert("maxFilterRatio".into(), json!(1.0));
    spec.insert(
        "kafka".into(),
        json!({"brokerList": "stream-load", "topic": "stream-load"}),
    );
    serde_json::from_value(Value::Object(spec)).map_err(|e| e.to_string())
}

/// The body's rows: CSV rows at the row delimiter; JSON as one document with
/// `strip_outer_array` (or when the body is an array or a single object spread over lines),
/// else one object per line. Empty rows are skipped.
pub fn split_rows<'a>(body: &'a [u8], req: &StreamLoadRequest) -> Vec<&'a [u8]> {
    let delimiter: &[u8] = match req.format {
        DataFormat::Csv => &req.row_delimiter,
        // Stream Load takes no Avro: a body is one row.
        DataFormat::Avro => return vec![body],
        DataFormat::Json => {
            let trimmed = body.trim_ascii();
            let one_line = !trimmed.contains(&b'\n');
            if req.strip_outer_array
                || trimmed.starts_with(b"[")
                || one_line
                || serde_json::from_slice::<serde::de::IgnoredAny>(trimmed).is_ok()
            {
                return if trimmed.is_empty() {
                    Vec::new()
                } else {
                    vec![trimmed]
                };
            }
            b"\n"
        }
    };
    let mut rows = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (row, next) = match memchr::memmem::find(rest, delimiter) {
            Some(i) => (&rest[..i], &rest[i + delimiter.len()..]),
            None => (rest, &rest[rest.len()..]),
        };
        let row = if delimiter == b"\n" {
            row.strip_suffix(b"\r").unwrap_or(row)
        } else {
            row
        };
        if !row.is_empty() {
            rows.push(row);
        }
        rest = next;
    }
    rows
}

/// StarRocks' filter ratio: rows filtered for data quality over those rows plus the loaded
/// ones (rows left out by WHERE count in neither).
pub fn filter_ratio(filtered: u64, loaded: u64) -> f64 {
    if filtered == 0 {
        0.0
    } else {
        filtered as f64 / (filtered + loaded) as f64
    }
}

/// Whether a load with these counters may commit, and if not why (StarRocks' message).
pub fn check_filter_ratio(filtered: u64, loaded: u64, max: f64) -> Result<(), String> {
    let ratio = filter_ratio(filtered, loaded);
    if ratio > max {
        Err(format!(
            "too many filtered rows: {filtered} of {} rows ({ratio:.4}) did not load, more than max_filter_ratio {max}",
            filtered + loaded
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderName, HeaderValue};

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn headers_read_as_starrocks_defines_them() {
        let req = parse_headers(&headers(&[
            ("label", "load-1"),
            ("column_separator", "\\x01"),
            ("columns", "a, b, c = concat(a, ',', b)"),
            ("where", "a > 1"),
            ("max_filter_ratio", "0.2"),
            ("strict_mode", "true"),
            ("timeout", "30"),
            ("Authorization", "Bearer x"),
            ("Expect", "100-continue"),
        ]))
        .unwrap();
        assert_eq!(req.label.as_deref(), Some("load-1"));
        assert_eq!(req.max_filter_ratio, 0.2);
        assert_eq!(req.timeout_secs, 30);
        let spec = job_spec(&req, "t").unwrap();
        assert_eq!(spec.column_separator.as_deref(), Some("\u{1}"));
        assert_eq!(spec.columns, ["a", "b", "c = concat(a, ',', b)"]);
        assert_eq!(spec.where_expr.as_deref(), Some("a > 1"));
        assert!(spec.strict_mode);
        assert_eq!(spec.table, "t");
        assert!(!spec.partial_update);
        assert_eq!(spec.merge_condition, None);
    }

    #[test]
    fn partial_and_conditional_updates_read_as_job_fields() {
        let req = parse_headers(&headers(&[
            ("columns", "id, score"),
            ("partial_update", "true"),
            ("merge_condition", " version "),
        ]))
        .unwrap();
        let spec = job_spec(&req, "t").unwrap();
        assert!(spec.partial_update);
        assert_eq!(spec.merge_condition.as_deref(), Some("version"));
        let err = parse_headers(&headers(&[("partial_update", "row")]))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("header 'partial_update'"), "{err}");
    }

    #[test]
    fn stream_load_defaults_are_starrocks_ones() {
        let req = parse_headers(&HeaderMap::new()).unwrap();
        assert_eq!(req.max_filter_ratio, 0.0);
        assert_eq!(req.format, DataFormat::Csv);
        let spec = job_spec(&req, "t").unwrap();
        assert!(
            !spec.strict_mode,
            "Stream Load's strict_mode defaults to false"
        );
        assert_eq!(spec.timezone, "UTC");
    }

    #[test]
    fn bad_headers_are_refused_by_name() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("colums", "a")], "unknown header 'colums'"),
            (&[("max_filter_ratio", "2")], "header 'max_filter_ratio'"),
            (&[("strict_mode", "yes")], "header 'strict_mode'"),
            (&[("format", "parquet")], "header 'format'"),
            (&[("label", "Has_Upper")], "header 'label'"),
            (
                &[("jsonpaths", "[\"$.a\"]")],
                "header 'jsonpaths': applies only to format: json",
            ),
            (
                &[("format", "json"), ("column_separator", ",")],
                "header 'column_separator': applies only to format: csv",
            ),
            (&[("timeout", "0")], "header 'timeout'"),
            (&[("timeout", "259201")], "header 'timeout'"),
        ];
        for (h, want) in cases {
            let err = parse_headers(&headers(h)).unwrap_err().to_string();
            assert!(err.starts_with(want), "{h:?}: {err}");
        }
    }

    #[test]
    fn columns_split_at_top_level_commas_only() {
        assert_eq!(
            split_top_level("a,b , c = if(a > 1, 'x,y', \"z\"), d"),
            ["a", "b", "c = if(a > 1, 'x,y', \"z\")", "d"]
        );
    }

    #[test]
    fn bodies_split_into_rows() {
        let csv = parse_headers(&HeaderMap::new()).unwrap();
        assert_eq!(
            split_rows(b"1\ta\n2\tb\r\n\n3\tc", &csv),
            [&b"1\ta"[..], b"2\tb", b"3\tc"]
        );
        let custom = parse_headers(&headers(&[("row_delimiter", "||")])).unwrap();
        assert_eq!(split_rows(b"1,a||2,b||", &custom), [&b"1,a"[..], b"2,b"]);
        let json = parse_headers(&headers(&[("format", "json")])).unwrap();
        assert_eq!(
            split_rows(b"{\"a\":1}\n{\"a\":2}\n", &json),
            [&b"{\"a\":1}"[..], b"{\"a\":2}"]
        );
        assert_eq!(
            split_rows(b"{\n\"a\": 1\n}\n", &json),
            [&b"{\n\"a\": 1\n}"[..]]
        );
        assert_eq!(split_rows(b" [{\"a\":1},\n{\"a\":2}] ", &json).len(), 1);
        assert!(split_rows(b"", &json).is_empty());
    }

    #[test]
    fn a_streamed_body_is_cut_after_its_last_complete_row() {
        // (unread bytes, delimiter, end of the complete rows)
        let cases: &[(&[u8], &[u8], usize)] = &[
            (b"", b"\n", 0),
            (b"1,a", b"\n", 0),
            (b"1,a\n", b"\n", 4),
            (b"1,a\n2,b", b"\n", 4),
            (b"1,a\n2,b\n3", b"\n", 8),
            (b"1,a||2,b|", b"||", 5),
            (b"1,a||2,b||", b"||", 10),
            (b"a|||", b"||", 3),
        ];
        for (pending, delimiter, want) in cases {
            assert_eq!(
                complete_rows_end(pending, delimiter),
                *want,
                "{:?} at {:?}",
                String::from_utf8_lossy(pending),
                String::from_utf8_lossy(delimiter)
            );
        }
        // Cutting a body anywhere and splitting the parts gives the rows of the whole body.
        let newline = parse_headers(&HeaderMap::new()).unwrap();
        let pipes = parse_headers(&headers(&[("row_delimiter", "||")])).unwrap();
        let bodies: [(&[u8], &StreamLoadRequest); 2] = [
            (b"1,a\n2,b\r\n\n3,c\n4,d", &newline),
            (b"a|||b||c||||d|", &pipes),
        ];
        for (body, req) in bodies {
            let whole = split_rows(body, req);
            for cut in 0..=body.len() {
                let (mut rows, mut pending) = (Vec::new(), body[..cut].to_vec());
                let end = complete_rows_end(&pending, &req.row_delimiter);
                rows.extend(split_rows(&pending[..end], req).iter().map(|r| r.to_vec()));
                pending.drain(..end);
                pending.extend_from_slice(&body[cut..]);
                rows.extend(split_rows(&pending, req).iter().map(|r| r.to_vec()));
                assert_eq!(
                    rows,
                    whole,
                    "{:?} cut at {cut}",
                    String::from_utf8_lossy(body)
                );
            }
        }
    }

    #[test]
    fn bodies_are_limited_by_format_and_model() {
        let limits = BodyLimits {
            max_body_bytes: 1000,
            max_json_body_bytes: 100,
            max_keyed_body_bytes: 500,
            chunk_bytes: 10,
        };
        // (format, keyed, limit, the setting named)
        let cases = [
            (DataFormat::Csv, false, 1000, "MAX_BODY_BYTES"),
            (DataFormat::Csv, true, 500, "MAX_KEYED_BODY_BYTES"),
            (DataFormat::Json, false, 100, "MAX_JSON_BODY_BYTES"),
            (DataFormat::Json, true, 100, "MAX_JSON_BODY_BYTES"),
        ];
        for (format, keyed, max, setting) in cases {
            let (got, named) = limits.limit_for(format, keyed);
            assert_eq!(got, max, "{format:?} keyed {keyed}");
            assert!(named.contains(setting), "{format:?} keyed {keyed}: {named}");
            assert!(
                limits
                    .too_large(format, keyed)
                    .contains(&format!("limit of {max} bytes")),
                "{format:?} keyed {keyed}"
            );
        }
        let small = BodyLimits {
            max_body_bytes: 50,
            ..limits
        };
        assert_eq!(small.limit_for(DataFormat::Json, true).0, 50);
    }

    #[test]
    fn the_filter_ratio_decides_as_starrocks() {
        // (filtered, loaded, max_filter_ratio, may commit)
        let cases = [
            (0, 10, 0.0, true),
            (1, 9, 0.0, false),
            (1, 9, 0.1, true),
            (2, 8, 0.1, false),
            (5, 0, 1.0, true),
            (0, 0, 0.0, true),
        ];
        for (filtered, loaded, max, ok) in cases {
            assert_eq!(
                check_filter_ratio(filtered, loaded, max).is_ok(),
                ok,
                "{filtered} filtered, {loaded} loaded, max {max}"
            );
        }
    }
}
