//! Text to typed value conversion with StarRocks' load rules, shared by the plan (to check column
//! defaults) and the worker's load engine (for every field of every row).
//!
//! Each parser takes the field's bytes and returns the value or the StarRocks error class it
//! belongs to; the engine turns the class into the reason text and applies strict mode.

use chrono::NaiveDateTime;

/// Why a field did not convert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvertError {
    /// Not a value of the type ("convert csv string to INT failed"). Strict mode makes the row an
    /// error row; otherwise the value loads as NULL.
    Invalid,
    /// An integer outside the type's range, or a string longer than the column
    /// ("the length of input is too long than schema").
    TooLong,
    /// More fractional digits than the DECIMAL scale.
    FracTooLong,
    /// More integer digits than DECIMAL precision minus scale.
    IntTooLong,
    /// More digits than any DECIMAL holds.
    DecimalOverflow,
}

fn trim(text: &[u8]) -> &[u8] {
    text.trim_ascii()
}

/// BOOLEAN: `true`/`false` in any case, or a number (0 is false, anything else true), as
/// StarRocks casts strings to BOOLEAN.
pub fn parse_bool(text: &[u8]) -> Result<bool, ConvertError> {
    let t = trim(text);
    if t.eq_ignore_ascii_case(b"true") {
        return Ok(true);
    }
    if t.eq_ignore_ascii_case(b"false") {
        return Ok(false);
    }
    match parse_f64(t) {
        Ok(v) => Ok(v != 0.0),
        Err(_) => Err(ConvertError::Invalid),
    }
}

/// An integer that fits in `min..=max`. Out of range is [`ConvertError::TooLong`].
pub fn parse_int(text: &[u8], min: i128, max: i128) -> Result<i128, ConvertError> {
    let t = trim(text);
    let (negative, digits) = match t.first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() {
        return Err(ConvertError::Invalid);
    }
    let mut value: i128 = 0;
    let mut overflow = false;
    for &b in digits {
        if !b.is_ascii_digit() {
            return Err(ConvertError::Invalid);
        }
        if !overflow {
            match value
                .checked_mul(10)
                .and_then(|v| v.checked_add((b - b'0') as i128))
            {
                Some(v) => value = v,
                None => overflow = true,
            }
        }
    }
    if overflow {
        return Err(ConvertError::TooLong);
    }
    let value = if negative { -value } else { value };
    if value < min || value > max {
        return Err(ConvertError::TooLong);
    }
    Ok(value)
}

/// A finite floating point number (`1.1`, `.356`, `1e3`).
pub fn parse_f64(text: &[u8]) -> Result<f64, ConvertError> {
    let t = trim(text);
    if let Some(v) = plain_decimal_f64(t) {
        return Ok(v);
    }
    // Only plain decimal notation: Rust's parser also accepts "inf" and "nan", StarRocks does not.
    if t.is_empty()
        || !t
            .iter()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
    {
        return Err(ConvertError::Invalid);
    }
    let s = std::str::from_utf8(t).map_err(|_| ConvertError::Invalid)?;
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or(ConvertError::Invalid)
}

/// The common case of [`parse_f64`] without the general parser: an optional sign, digits and at
/// most one `.`, whose digits as an integer `m` are at most 2^53 and with at most 22 of them
/// after the point (`f`). Then `m` and `10^f` are exact doubles and one IEEE division, which
/// rounds correctly, gives the correctly rounded value, the one the general parser gives
/// (Clinger's fast path). None: not of this form, the general parser decides.
#[inline]
fn plain_decimal_f64(t: &[u8]) -> Option<f64> {
    const POWERS_OF_TEN: [f64; 23] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
        1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ];
    let (negative, body) = match t.first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut mantissa: u64 = 0;
    let mut digits = 0usize;
    let mut after_point: Option<usize> = None;
    for &b in body {
        match b {
            b'0'..=b'9' => {
                // 19 digits always fit in a u64.
                if digits == 19 {
                    return None;
                }
                mantissa = mantissa * 10 + (b - b'0') as u64;
                digits += 1;
                if let Some(f) = after_point.as_mut() {
                    *f += 1;
                }
            }
            b'.' if after_point.is_none() => after_point = Some(0),
            _ => return None,
        }
    }
    let fraction_digits = after_point.unwrap_or(0);
    if digits == 0 || mantissa > 1 << 53 || fraction_digits >= POWERS_OF_TEN.len() {
        return None;
    }
    let v = mantissa as f64 / POWERS_OF_TEN[fraction_digits];
    Some(if negative { -v } else { v })
}

/// A DECIMAL(precision, scale) as its unscaled i128 value.
pub fn parse_decimal(text: &[u8], precision: u8, scale: u8) -> Result<i128, ConvertError> {
    let t = trim(text);
    let (negative, body) = match t.first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (int_part, frac_part) = match body.iter().position(|b| *b == b'.') {
        Some(dot) => (&body[..dot], &body[dot + 1..]),
        None => (body, &body[..0]),
    };
    if (int_part.is_empty() && frac_part.is_empty())
        || !int_part.iter().all(u8::is_ascii_digit)
        || !frac_part.iter().all(u8::is_ascii_digit)
    {
        return Err(ConvertError::Invalid);
    }
    let int_digits = {
        let first_nonzero = int_part.iter().position(|b| *b != b'0');
        first_nonzero.map_or(&int_part[..0], |p| &int_part[p..])
    };
    let frac_digits = {
        let last_nonzero = frac_part.iter().rposition(|b| *b != b'0');
        last_nonzero.map_or(&frac_part[..0], |p| &frac_part[..=p])
    };
    if int_digits.len() + frac_digits.len() > crate::column_type::MAX_DECIMAL_PRECISION as usize {
        return Err(ConvertError::DecimalOverflow);
    }
    if frac_digits.len() > scale as usize {
        return Err(ConvertError::FracTooLong);
    }
    if int_digits.len() > (precision - scale) as usize {
        return Err(ConvertError::IntTooLong);
    }
    let digit = |i: usize| frac_digits.get(i).map_or(0, |b| b - b'0');
    let value: i128 = if int_digits.len() + scale as usize <= 18 {
        // Up to 18 digits fit in a u64: no 128-bit multiplications (the common case).
        let mut v: u64 = 0;
        for &b in int_digits {
            v = v * 10 + (b - b'0') as u64;
        }
        for i in 0..scale as usize {
            v = v * 10 + digit(i) as u64;
        }
        v as i128
    } else {
        let mut v: i128 = 0;
        for &b in int_digits {
            v = v * 10 + (b - b'0') as i128;
        }
        for i in 0..scale as usize {
            v = v * 10 + digit(i) as i128;
        }
        v
    };
    Ok(if negative { -value } else { value })
}

fn digits<const N: usize>(t: &[u8], at: usize) -> Option<u32> {
    let s = t.get(at..at + N)?;
    let mut v = 0u32;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (b - b'0') as u32;
    }
    Some(v)
}

/// The date part of a DATE or DATETIME text: `2017-10-03`, `2017/10/03` or `20171003`, as days
/// since 1970-01-01, and the number of bytes it used.
fn parse_date_prefix(t: &[u8]) -> Option<(i32, usize)> {
    let year = digits::<4>(t, 0)? as i32;
    // The common `YYYY-MM-DD` at fixed positions first; the general form reads it the same way.
    if t.get(4) == Some(&b'-')
        && t.get(7) == Some(&b'-')
        && let (Some(month), Some(day)) = (digits::<2>(t, 5), digits::<2>(t, 8))
    {
        return Some((days_since_epoch(year, month, day)?, 10));
    }
    let (month, day, used) = match t.get(4) {
        Some(b'-') | Some(b'/') => {
            let sep = t[4];
            // Month and day may have one or two digits (2017-1-3).
            let (month, after_month) = one_or_two_digits(t, 5)?;
            if t.get(after_month) != Some(&sep) {
                return None;
            }
            let (day, used) = one_or_two_digits(t, after_month + 1)?;
            (month, day, used)
        }
        Some(b) if b.is_ascii_digit() => (digits::<2>(t, 4)?, digits::<2>(t, 6)?, 8),
        _ => return None,
    };
    Some((days_since_epoch(year, month, day)?, used))
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (years 0-9999 as four
/// digits give them), None for a month or day that does not exist. Plain arithmetic (H. Hinnant's
/// days-from-civil): the loader converts a date per value, and a calendar type per value cost
/// more than the rest of the parse.
fn days_since_epoch(year: i32, month: u32, day: u32) -> Option<i32> {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day == 0 || day > month_days {
        return None;
    }
    // Years start in March, so a leap day is the last day of its year.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y.rem_euclid(400) as u32;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    Some(era * 146_097 + day_of_era as i32 - 719_468)
}

fn one_or_two_digits(t: &[u8], at: usize) -> Option<(u32, usize)> {
    let first = *t.get(at)?;
    if !first.is_ascii_digit() {
        return None;
    }
    match t.get(at + 1) {
        Some(b) if b.is_ascii_digit() => {
            Some(((first - b'0') as u32 * 10 + (b - b'0') as u32, at + 2))
        }
        _ => Some(((first - b'0') as u32, at + 1)),
    }
}

/// DATE as days since 1970-01-01. A DATETIME text with a midnight time is accepted too.
pub fn parse_date(text: &[u8]) -> Result<i32, ConvertError> {
    let t = trim(text);
    let (date, used) = parse_date_prefix(t).ok_or(ConvertError::Invalid)?;
    if used != t.len() {
        // StarRocks accepts a DATETIME for a DATE column and drops the time.
        parse_datetime(t)?;
    }
    Ok(date)
}

/// DATETIME as microseconds since 1970-01-01 00:00:00 (a wall-clock time, no time zone):
/// `2017-06-13 12:34:03`, with `T` for the space, optional `.ffffff`, or a date alone.
pub fn parse_datetime(text: &[u8]) -> Result<i64, ConvertError> {
    let t = trim(text);
    let (date, used) = parse_date_prefix(t).ok_or(ConvertError::Invalid)?;
    let mut micros_of_day: i64 = 0;
    if used < t.len() {
        let rest = &t[used..];
        if !matches!(rest[0], b' ' | b'T') {
            return Err(ConvertError::Invalid);
        }
        let time = &rest[1..];
        let hour = digits::<2>(time, 0).ok_or(ConvertError::Invalid)?;
        let (minute, second, mut end) = match (time.get(2), time.get(5)) {
            (Some(b':'), Some(b':')) => (
                digits::<2>(time, 3).ok_or(ConvertError::Invalid)?,
                digits::<2>(time, 6).ok_or(ConvertError::Invalid)?,
                8,
            ),
            (Some(b':'), None) => (digits::<2>(time, 3).ok_or(ConvertError::Invalid)?, 0, 5),
            (None, _) => (0, 0, 2),
            _ => return Err(ConvertError::Invalid),
        };
        if hour > 23 || minute > 59 || second > 59 {
            return Err(ConvertError::Invalid);
        }
        let mut micros = 0i64;
        if time.get(end) == Some(&b'.') {
            let frac = &time[end + 1..];
            if frac.is_empty() || frac.len() > 9 || !frac.iter().all(u8::is_ascii_digit) {
                return Err(ConvertError::Invalid);
            }
            for i in 0..6 {
                micros = micros * 10 + frac.get(i).map_or(0, |b| (b - b'0') as i64);
            }
            end = time.len();
        }
        if end != time.len() {
            return Err(ConvertError::Invalid);
        }
        micros_of_day =
            ((hour as i64 * 60 + minute as i64) * 60 + second as i64) * 1_000_000 + micros;
    }
    Ok(date as i64 * 86_400_000_000 + micros_of_day)
}

/// A DATETIME wall-clock value as a chrono value (for functions that format it).
pub fn micros_to_naive(micros: i64) -> Option<NaiveDateTime> {
    chrono::DateTime::from_timestamp_micros(micros).map(|d| d.naive_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_since_epoch_agree_with_the_calendar_for_every_date_and_refuse_the_others() {
        use chrono::NaiveDate;
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        for year in 0..=9999 {
            for month in 0..=13 {
                for day in 0..=32 {
                    let want = NaiveDate::from_ymd_opt(year, month, day)
                        .map(|d| (d - epoch).num_days() as i32);
                    assert_eq!(
                        days_since_epoch(year, month, day),
                        want,
                        "{year}-{month}-{day}"
                    );
                }
            }
        }
    }

    #[test]
    fn integers_respect_their_range() {
        assert_eq!(parse_int(b" 42 ", -128, 127), Ok(42));
        assert_eq!(parse_int(b"-128", -128, 127), Ok(-128));
        assert_eq!(parse_int(b"128", -128, 127), Err(ConvertError::TooLong));
        assert_eq!(parse_int(b"12a", -128, 127), Err(ConvertError::Invalid));
        assert_eq!(parse_int(b"", -128, 127), Err(ConvertError::Invalid));
        assert_eq!(
            parse_int(
                b"999999999999999999999999999999999999999999",
                i128::MIN,
                i128::MAX
            ),
            Err(ConvertError::TooLong)
        );
    }

    #[test]
    fn decimals_follow_precision_and_scale() {
        assert_eq!(parse_decimal(b"123.45", 5, 2), Ok(12345));
        assert_eq!(parse_decimal(b"-0.5", 5, 2), Ok(-50));
        assert_eq!(parse_decimal(b".356", 5, 3), Ok(356));
        assert_eq!(parse_decimal(b"1.230", 5, 2), Ok(123));
        assert_eq!(
            parse_decimal(b"1.234", 5, 2),
            Err(ConvertError::FracTooLong)
        );
        assert_eq!(
            parse_decimal(b"1234.5", 5, 2),
            Err(ConvertError::IntTooLong)
        );
        assert_eq!(
            parse_decimal(b"1234567890123456789012345678901234567890", 38, 0),
            Err(ConvertError::DecimalOverflow)
        );
        assert_eq!(parse_decimal(b"1.2.3", 5, 2), Err(ConvertError::Invalid));
    }

    #[test]
    fn decimals_of_up_to_and_more_than_eighteen_digits_agree() {
        // (text, precision, scale, unscaled): 18 digits take the u64 path, 19 and more the i128 one.
        let cases: &[(&str, u8, u8, i128)] = &[
            ("999999999999999999", 18, 0, 999_999_999_999_999_999),
            ("9999999999999999999", 19, 0, 9_999_999_999_999_999_999),
            ("-99999999.9999999999", 18, 10, -999_999_999_999_999_999),
            ("99999999.99999999999", 19, 11, 9_999_999_999_999_999_999),
            ("12345678.9", 38, 10, 123_456_789_000_000_000),
            ("123456789.9", 38, 10, 1_234_567_899_000_000_000),
            (
                "-99999999999999999999999999999999999999",
                38,
                0,
                -99_999_999_999_999_999_999_999_999_999_999_999_999,
            ),
            ("0.000000000000000001", 38, 18, 1),
        ];
        for &(text, precision, scale, want) in cases {
            assert_eq!(
                parse_decimal(text.as_bytes(), precision, scale),
                Ok(want),
                "{text} as DECIMAL({precision}, {scale})"
            );
        }
    }

    #[test]
    fn dates_and_datetimes() {
        assert_eq!(parse_date(b"1970-01-02"), Ok(1));
        assert_eq!(parse_date(b"19700102"), Ok(1));
        assert_eq!(parse_date(b"1970/1/2"), Ok(1));
        assert_eq!(parse_date(b"1970-01-02 00:00:00"), Ok(1));
        assert_eq!(parse_date(b"1970-02-30"), Err(ConvertError::Invalid));
        // The fixed `YYYY-MM-DD` form and the general one read the same dates.
        for (text, days) in [
            ("2015-09-12", Ok(16_690)),
            ("2015-9-12", Ok(16_690)),
            ("2015-09-1", Ok(16_679)),
            ("2015-09-1x", Err(ConvertError::Invalid)),
            ("2015-13-01", Err(ConvertError::Invalid)),
            ("2015-0a-01", Err(ConvertError::Invalid)),
            ("2015-09-12x", Err(ConvertError::Invalid)),
            ("2016-02-29", Ok(16_860)),
        ] {
            assert_eq!(parse_date(text.as_bytes()), days, "{text}");
        }
        assert_eq!(parse_datetime(b"1970-01-01 00:00:01"), Ok(1_000_000));
        assert_eq!(parse_datetime(b"1970-01-01T00:01:00.5"), Ok(60_500_000));
        assert_eq!(parse_datetime(b"1970-01-02"), Ok(86_400_000_000));
        assert_eq!(
            parse_datetime(b"2015-09-12 25:00:00"),
            Err(ConvertError::Invalid)
        );
        assert_eq!(parse_datetime(b"yesterday"), Err(ConvertError::Invalid));
    }

    #[test]
    fn booleans_and_floats() {
        assert_eq!(parse_bool(b"TRUE"), Ok(true));
        assert_eq!(parse_bool(b"0"), Ok(false));
        assert_eq!(parse_bool(b"yes"), Err(ConvertError::Invalid));
        assert_eq!(parse_f64(b".356"), Ok(0.356));
        assert_eq!(parse_f64(b"nan"), Err(ConvertError::Invalid));
    }

    #[test]
    fn floats_on_the_fast_path_and_off_it() {
        let cases: [(&str, Result<f64, ConvertError>); 18] = [
            ("1.5", Ok(1.5)),
            (" -2.25 ", Ok(-2.25)),
            ("+7", Ok(7.0)),
            ("7.", Ok(7.0)),
            (".5", Ok(0.5)),
            ("-0.0", Ok(-0.0)),
            ("0.1", Ok(0.1)),
            ("9007199254740993", Ok(9007199254740992.0)),
            ("123456789012345678901234", Ok(1.2345678901234568e23)),
            ("0.00000000000000000000000123", Ok(1.23e-24)),
            ("1e3", Ok(1000.0)),
            ("1.5E-3", Ok(0.0015)),
            (".", Err(ConvertError::Invalid)),
            ("-", Err(ConvertError::Invalid)),
            ("1.2.3", Err(ConvertError::Invalid)),
            ("1,5", Err(ConvertError::Invalid)),
            ("inf", Err(ConvertError::Invalid)),
            ("1e400", Err(ConvertError::Invalid)),
        ];
        for (text, want) in cases {
            let got = parse_f64(text.as_bytes());
            assert_eq!(got, want, "{text:?}");
            if let (Ok(g), Ok(w)) = (got, want) {
                assert_eq!(g.is_sign_negative(), w.is_sign_negative(), "{text:?}");
            }
        }
    }

    #[test]
    fn the_fast_float_path_gives_what_the_general_parser_gives() {
        // A fixed pseudo-random sequence of plain decimals around the fast path's limits: up
        // to 20 digits, the point anywhere (or nowhere), with and without a sign.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..200_000 {
            let len = (next() % 20 + 1) as usize;
            let mut text: String = (0..len)
                .map(|_| char::from(b'0' + (next() % 10) as u8))
                .collect();
            let point = (next() % (len as u64 + 2)) as usize;
            if point <= len {
                text.insert(point, '.');
            }
            if next() % 3 == 0 {
                text.insert(0, '-');
            }
            let general: f64 = text.parse().unwrap();
            let fast = plain_decimal_f64(text.as_bytes());
            if let Some(fast) = fast {
                assert_eq!(fast.to_bits(), general.to_bits(), "{text}");
            }
            assert_eq!(parse_f64(text.as_bytes()), Ok(general), "{text}");
        }
    }
}
