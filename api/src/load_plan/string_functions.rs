//! StarRocks' string, URL and hash functions that DataFusion lacks or computes differently.
//! Positions count characters from 1; NULL arguments give NULL.

use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, Int32Array, Int64Array, ListBuilder, StringArray, StringBuilder,
};
use deltalake::arrow::datatypes::{DataType, Field};
use deltalake::datafusion::common::{DataFusionError, Result, plan_err};
use deltalake::datafusion::logical_expr::ScalarUDF;
use sha2::Digest;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::udf::{Call, Udf, each, exactly};

/// StarRocks' `HashUtil::MURMUR3_32_SEED`.
const MURMUR3_32_SEED: u32 = 104_729;
/// The seed of the first argument of StarRocks' `xx_hash3_64` (XXH3 64-bit, seed 0).
const XX_HASH3_64_SEED: u64 = 0;

/// MurmurHash3 x86 32-bit.
pub fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h = seed;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes(chunk.try_into().expect("4 bytes"));
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        let mut k = 0u32;
        for (i, b) in tail.iter().enumerate() {
            k ^= (*b as u32) << (8 * i);
        }
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

fn regex(pattern: &str) -> Result<regex::Regex> {
    regex::Regex::new(pattern)
        .map_err(|e| DataFusionError::Execution(format!("bad regular expression: {e}")))
}

/// Caches the compiled pattern while it stays the same from row to row.
struct Patterns(Option<(String, regex::Regex)>);

impl Patterns {
    fn get(&mut self, pattern: &str) -> Result<&regex::Regex> {
        if self.0.as_ref().is_none_or(|(p, _)| p != pattern) {
            self.0 = Some((pattern.to_string(), regex(pattern)?));
        }
        Ok(&self.0.as_ref().expect("set above").1)
    }
}

fn text_out(values: Vec<Option<String>>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}

fn list_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
}

fn lists(rows: Vec<Option<Vec<String>>>) -> ArrayRef {
    let mut builder = ListBuilder::new(StringBuilder::new());
    for row in rows {
        match row {
            Some(items) => {
                for item in items {
                    builder.values().append_value(item);
                }
                builder.append(true);
            }
            None => builder.append(false),
        }
    }
    Arc::new(builder.finish())
}

fn chars(s: &str) -> Vec<String> {
    s.chars().map(String::from).collect()
}

fn is_integer(t: &DataType) -> bool {
    t.is_integer()
}

/// `1234567.891` -> `1,234,567.89`.
fn money(text: &str) -> String {
    let (sign, digits) = match text.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, "00"));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped}.{frac}")
}

/// The query parameter `name` of `url`, decoded.
fn url_parameter(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The string, URL and hash functions.
pub fn string_functions() -> Vec<ScalarUDF> {
    vec![
        Udf::new(
            "regexp_extract",
            DataType::Utf8,
            exactly(
                "regexp_extract",
                "(text, pattern, group)",
                vec![vec![DataType::Utf8, DataType::Utf8, DataType::Int64]],
            ),
            |call| {
                let (s, p, g) = (call.text(0)?, call.text(1)?, call.int(2)?);
                let mut patterns = Patterns(None);
                let mut out = Vec::with_capacity(call.rows);
                for i in 0..call.rows {
                    if s.is_null(i) || p.is_null(i) || g.is_null(i) {
                        out.push(None);
                        continue;
                    }
                    let re = patterns.get(p.value(i))?;
                    let group = usize::try_from(g.value(i)).ok();
                    out.push(Some(
                        re.captures(s.value(i))
                            .and_then(|c| c.get(group?))
                            .map_or_else(String::new, |m| m.as_str().to_string()),
                    ));
                }
                Ok(text_out(out))
            },
        )
        .build(),
        Udf::new(
            "regexp_split",
            list_type(),
            exactly(
                "regexp_split",
                "(text, pattern[, max_split])",
                vec![
                    vec![DataType::Utf8, DataType::Utf8],
                    vec![DataType::Utf8, DataType::Utf8, DataType::Int64],
                ],
            ),
            |call| {
                let (s, p) = (call.text(0)?, call.text(1)?);
                let max = if call.args.len() > 2 {
                    Some(call.int(2)?)
                } else {
                    None
                };
                let mut patterns = Patterns(None);
                let mut out = Vec::with_capacity(call.rows);
                for i in 0..call.rows {
                    if s.is_null(i) || p.is_null(i) || max.as_ref().is_some_and(|m| m.is_null(i)) {
                        out.push(None);
                        continue;
                    }
                    let limit = max
                        .as_ref()
                        .map(|m| usize::try_from(m.value(i)).unwrap_or(0).max(1));
                    let text = s.value(i);
                    let parts: Vec<String> = if p.value(i).is_empty() {
                        let mut c = chars(text);
                        if let Some(l) = limit
                            && c.len() > l
                        {
                            let rest: String = c[l - 1..].concat();
                            c.truncate(l - 1);
                            c.push(rest);
                        }
                        c
                    } else {
                        let re = patterns.get(p.value(i))?;
                        match limit {
                            Some(l) => re.splitn(text, l).map(str::to_string).collect(),
                            None => re.split(text).map(str::to_string).collect(),
                        }
                    };
                    out.push(Some(parts));
                }
                Ok(lists(out))
            },
        )
        .build(),
        Udf::new(
            "split",
            list_type(),
            each("split", "(text, delimiter)", 2, 2, DataType::Utf8),
            |call| {
                let (s, d) = (call.text(0)?, call.text(1)?);
                let out = (0..call.rows)
                    .map(|i| {
                        if s.is_null(i) || d.is_null(i) {
                            return None;
                        }
                        let (text, delim) = (s.value(i), d.value(i));
                        Some(if delim.is_empty() {
                            chars(text)
                        } else {
                            text.split(delim).map(str::to_string).collect()
                        })
                    })
                    .collect();
                Ok(lists(out))
            },
        )
        .build(),
        Udf::new(
            "hex",
            DataType::Utf8,
            |types: &[DataType]| match types {
                [t] if is_integer(t) => Ok(vec![DataType::Int64]),
                [DataType::Binary | DataType::LargeBinary | DataType::BinaryView] => {
                    Ok(vec![DataType::Binary])
                }
                [_] => Ok(vec![DataType::Utf8]),
                _ => plan_err!("hex takes (BIGINT or text)"),
            },
            |call| {
                let array = &call.args[0];
                let out: Vec<Option<String>> = match array.data_type() {
                    DataType::Int64 => call
                        .int(0)?
                        .iter()
                        .map(|v| v.map(|v| format!("{:X}", v as u64)))
                        .collect(),
                    DataType::Binary => {
                        use deltalake::arrow::array::AsArray;
                        array
                            .as_binary::<i32>()
                            .iter()
                            .map(|v| v.map(hex_upper))
                            .collect()
                    }
                    _ => call
                        .text(0)?
                        .iter()
                        .map(|v| v.map(|s| hex_upper(s.as_bytes())))
                        .collect(),
                };
                Ok(text_out(out))
            },
        )
        .build(),
        Udf::new(
            "unhex",
            DataType::Utf8,
            each("unhex", "(text)", 1, 1, DataType::Utf8),
            |call| {
                Ok(text_out(
                    call.text(0)?
                        .iter()
                        .map(|v| {
                            let v = v?;
                            let bytes = v.as_bytes();
                            if bytes.is_empty()
                                || bytes.len() % 2 != 0
                                || !bytes.iter().all(u8::is_ascii_hexdigit)
                            {
                                return Some(String::new());
                            }
                            let decoded: Vec<u8> = bytes
                                .chunks(2)
                                .map(|p| {
                                    u8::from_str_radix(std::str::from_utf8(p).unwrap_or("00"), 16)
                                        .unwrap_or(0)
                                })
                                .collect();
                            Some(String::from_utf8_lossy(&decoded).into_owned())
                        })
                        .collect(),
                ))
            },
        )
        .build(),
        Udf::new(
            "instr",
            DataType::Int32,
            each("instr", "(text, substring)", 2, 2, DataType::Utf8),
            |call| {
                let (s, sub) = (call.text(0)?, call.text(1)?);
                let out: Int32Array = (0..call.rows)
                    .map(|i| {
                        (s.is_valid(i) && sub.is_valid(i))
                            .then(|| char_position(s.value(i), sub.value(i), 0))
                    })
                    .collect();
                Ok(Arc::new(out))
            },
        )
        .aliases(&["strpos"])
        .build(),
        Udf::new(
            "locate",
            DataType::Int32,
            exactly(
                "locate",
                "(substring, text[, start])",
                vec![
                    vec![DataType::Utf8, DataType::Utf8],
                    vec![DataType::Utf8, DataType::Utf8, DataType::Int64],
                ],
            ),
            |call| {
                let (sub, s) = (call.text(0)?, call.text(1)?);
                let start = if call.args.len() > 2 {
                    Some(call.int(2)?)
                } else {
                    None
                };
                let out: Int32Array = (0..call.rows)
                    .map(|i| {
                        if sub.is_null(i)
                            || s.is_null(i)
                            || start.as_ref().is_some_and(|p| p.is_null(i))
                        {
                            return None;
                        }
                        let from = start.as_ref().map_or(1, |p| p.value(i));
                        if from < 1 {
                            return Some(0);
                        }
                        Some(char_position(s.value(i), sub.value(i), (from - 1) as usize))
                    })
                    .collect();
                Ok(Arc::new(out))
            },
        )
        .build(),
        Udf::new(
            "space",
            DataType::Utf8,
            exactly("space", "(INT)", vec![vec![DataType::Int64]]),
            |call| {
                Ok(text_out(
                    call.int(0)?
                        .iter()
                        .map(|n| Some(" ".repeat(usize::try_from(n?).unwrap_or(0))))
                        .collect(),
                ))
            },
        )
        .build(),
        Udf::new(
            "append_trailing_char_if_absent",
            DataType::Utf8,
            each(
                "append_trailing_char_if_absent",
                "(text, one character)",
                2,
                2,
                DataType::Utf8,
            ),
            |call| {
                let (s, c) = (call.text(0)?, call.text(1)?);
                Ok(text_out(
                    (0..call.rows)
                        .map(|i| {
                            if s.is_null(i) || c.is_null(i) || c.value(i).chars().count() != 1 {
                                return None;
                            }
                            let (s, c) = (s.value(i), c.value(i));
                            Some(if s.is_empty() || s.ends_with(c) {
                                s.to_string()
                            } else {
                                format!("{s}{c}")
                            })
                        })
                        .collect(),
                ))
            },
        )
        .build(),
        Udf::new(
            "money_format",
            DataType::Utf8,
            |types: &[DataType]| match types {
                [t] if is_integer(t) => Ok(vec![DataType::Int64]),
                [DataType::Decimal128(p, s)] => Ok(vec![DataType::Decimal128(*p, *s)]),
                [_] => Ok(vec![DataType::Float64]),
                _ => plan_err!("money_format takes (number)"),
            },
            |call| {
                use deltalake::arrow::array::AsArray;
                use deltalake::arrow::datatypes::Float64Type;
                let array = &call.args[0];
                let out: Vec<Option<String>> = match array.data_type() {
                    DataType::Int64 => call
                        .int(0)?
                        .iter()
                        .map(|v| v.map(|v| money(&format!("{v}.00"))))
                        .collect(),
                    DataType::Decimal128(_, _) => {
                        let rounded =
                            deltalake::arrow::compute::cast(array, &DataType::Decimal128(38, 2))?;
                        call_text(&rounded)?
                            .into_iter()
                            .map(|v| v.map(|v| money(&v)))
                            .collect()
                    }
                    _ => array
                        .as_primitive::<Float64Type>()
                        .iter()
                        .map(|v| v.map(|v| money(&format!("{:.2}", round_half_away(v)))))
                        .collect(),
                };
                Ok(text_out(out))
            },
        )
        .build(),
        Udf::new(
            "url_extract_parameter",
            DataType::Utf8,
            each("url_extract_parameter", "(url, name)", 2, 2, DataType::Utf8),
            |call| {
                let (u, n) = (call.text(0)?, call.text(1)?);
                Ok(text_out(
                    (0..call.rows)
                        .map(|i| {
                            if u.is_null(i) || n.is_null(i) {
                                return None;
                            }
                            url_parameter(u.value(i), n.value(i))
                        })
                        .collect(),
                ))
            },
        )
        .build(),
        Udf::new(
            "url_extract_host",
            DataType::Utf8,
            each("url_extract_host", "(url)", 1, 1, DataType::Utf8),
            |call| {
                Ok(text_out(
                    call.text(0)?
                        .iter()
                        .map(|u| {
                            url::Url::parse(u?)
                                .ok()
                                .and_then(|u| u.host_str().map(str::to_string))
                        })
                        .collect(),
                ))
            },
        )
        .build(),
        Udf::new(
            "url_decode",
            DataType::Utf8,
            each("url_decode", "(text)", 1, 1, DataType::Utf8),
            |call| {
                Ok(text_out(
                    call.text(0)?
                        .iter()
                        .map(|u| {
                            Some(
                                url::form_urlencoded::parse(format!("x={}", u?).as_bytes())
                                    .next()
                                    .map(|(_, v)| v.into_owned())
                                    .unwrap_or_default(),
                            )
                        })
                        .collect(),
                ))
            },
        )
        .build(),
        Udf::new(
            "url_encode",
            DataType::Utf8,
            each("url_encode", "(text)", 1, 1, DataType::Utf8),
            |call| {
                Ok(text_out(
                    call.text(0)?
                        .iter()
                        .map(|u| {
                            Some(url::form_urlencoded::byte_serialize(u?.as_bytes()).collect())
                        })
                        .collect(),
                ))
            },
        )
        .build(),
        Udf::new(
            "murmur_hash3_32",
            DataType::Int32,
            each(
                "murmur_hash3_32",
                "(text, ...)",
                1,
                usize::MAX,
                DataType::Utf8,
            ),
            |call| {
                let args: Vec<StringArray> = (0..call.args.len())
                    .map(|i| call.text(i))
                    .collect::<Result<_>>()?;
                let out: Int32Array = (0..call.rows)
                    .map(|row| {
                        let mut seed = MURMUR3_32_SEED;
                        for a in &args {
                            if a.is_null(row) {
                                return None;
                            }
                            seed = murmur3_32(a.value(row).as_bytes(), seed);
                        }
                        Some(seed as i32)
                    })
                    .collect();
                Ok(Arc::new(out))
            },
        )
        .build(),
        Udf::new(
            "xx_hash3_64",
            DataType::Int64,
            each("xx_hash3_64", "(text, ...)", 1, usize::MAX, DataType::Utf8),
            |call| {
                let args: Vec<StringArray> = (0..call.args.len())
                    .map(|i| call.text(i))
                    .collect::<Result<_>>()?;
                let out: Int64Array = (0..call.rows)
                    .map(|row| {
                        // StarRocks chains the arguments: each one's hash seeds the next.
                        let mut seed = XX_HASH3_64_SEED;
                        for a in &args {
                            if a.is_null(row) {
                                return None;
                            }
                            seed = xxh3_64_with_seed(a.value(row).as_bytes(), seed);
                        }
                        Some(seed as i64)
                    })
                    .collect();
                Ok(Arc::new(out))
            },
        )
        .build(),
        Udf::new(
            "crc32",
            DataType::Int64,
            each("crc32", "(text)", 1, 1, DataType::Utf8),
            |call| {
                let out: Int64Array = call
                    .text(0)?
                    .iter()
                    .map(|v| v.map(|v| crc32fast::hash(v.as_bytes()) as i64))
                    .collect();
                Ok(Arc::new(out))
            },
        )
        .build(),
        Udf::new(
            "sha2",
            DataType::Utf8,
            exactly(
                "sha2",
                "(text, 224 | 256 | 384 | 512 | 0)",
                vec![vec![DataType::Utf8, DataType::Int64]],
            ),
            |call| {
                let (s, bits) = (call.text(0)?, call.int(1)?);
                Ok(text_out(
                    (0..call.rows)
                        .map(|i| {
                            if s.is_null(i) || bits.is_null(i) {
                                return None;
                            }
                            let data = s.value(i).as_bytes();
                            Some(match bits.value(i) {
                                224 => hex_lower(&sha2::Sha224::digest(data)),
                                0 | 256 => hex_lower(&sha2::Sha256::digest(data)),
                                384 => hex_lower(&sha2::Sha384::digest(data)),
                                512 => hex_lower(&sha2::Sha512::digest(data)),
                                _ => return None,
                            })
                        })
                        .collect(),
                ))
            },
        )
        .build(),
        Udf::new(
            "substring_index",
            DataType::Utf8,
            exactly(
                "substring_index",
                "(text, delimiter, count)",
                vec![vec![DataType::Utf8, DataType::Utf8, DataType::Int64]],
            ),
            |call| {
                let (s, d, n) = (call.text(0)?, call.text(1)?, call.int(2)?);
                Ok(text_out(
                    (0..call.rows)
                        .map(|i| {
                            if s.is_null(i) || d.is_null(i) || n.is_null(i) {
                                return None;
                            }
                            let (s, d, n) = (s.value(i), d.value(i), n.value(i));
                            if d.is_empty() || n == 0 {
                                return Some(String::new());
                            }
                            let parts: Vec<&str> = s.split(d).collect();
                            let k = n.unsigned_abs() as usize;
                            Some(if k >= parts.len() {
                                s.to_string()
                            } else if n > 0 {
                                parts[..k].join(d)
                            } else {
                                parts[parts.len() - k..].join(d)
                            })
                        })
                        .collect(),
                ))
            },
        )
        .build(),
        Udf::new(
            "find_in_set",
            DataType::Int32,
            each("find_in_set", "(text, list)", 2, 2, DataType::Utf8),
            |call| {
                let (s, l) = (call.text(0)?, call.text(1)?);
                let out: Int32Array = (0..call.rows)
                    .map(|i| {
                        if s.is_null(i) || l.is_null(i) {
                            return None;
                        }
                        Some(
                            l.value(i)
                                .split(',')
                                .position(|x| x == s.value(i))
                                .map_or(0, |p| p as i32 + 1),
                        )
                    })
                    .collect();
                Ok(Arc::new(out))
            },
        )
        .build(),
        Udf::new(
            "null_or_empty",
            DataType::Boolean,
            each("null_or_empty", "(text)", 1, 1, DataType::Utf8),
            |call| {
                let out: deltalake::arrow::array::BooleanArray = call
                    .text(0)?
                    .iter()
                    .map(|v| Some(v.is_none_or(str::is_empty)))
                    .collect();
                Ok(Arc::new(out))
            },
        )
        .build(),
    ]
}

fn call_text(array: &ArrayRef) -> Result<Vec<Option<String>>> {
    let call = Call {
        args: vec![Arc::clone(array)],
        fields: vec![],
        rows: array.len(),
    };
    Ok(call
        .text(0)?
        .iter()
        .map(|v| v.map(str::to_string))
        .collect())
}

fn round_half_away(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// 1-based character position of `sub` in `s` at or after character `from`; 0 when absent.
fn char_position(s: &str, sub: &str, from: usize) -> i32 {
    let start = match s.char_indices().nth(from) {
        Some((b, _)) => b,
        None if from == s.chars().count() => s.len(),
        None => return 0,
    };
    match s[start..].find(sub) {
        Some(b) => (s[..start + b].chars().count() + 1) as i32,
        None => 0,
    }
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
