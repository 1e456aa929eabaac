//! StarRocks' date and time functions. DATETIME is a wall-clock time without a time zone (an
//! Arrow timestamp in microseconds without zone), DATE is days since 1970-01-01; a text argument
//! is read with the load's DATETIME rules. Only the functions that read the clock
//! (`now`, `curdate`, `curtime`, `unix_timestamp`, `from_unixtime`) use the job's `timezone`;
//! `convert_tz` names its zones. Invalid or NULL input gives NULL, as in StarRocks.

use std::sync::Arc;

use chrono::{
    DateTime, Datelike, Duration, FixedOffset, Months, NaiveDate, NaiveDateTime, NaiveTime, Offset,
    TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;
use deltalake::arrow::array::{
    ArrayRef, Date32Array, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use deltalake::arrow::datatypes::{DataType, TimeUnit};
use deltalake::datafusion::common::{Result, exec_err, plan_err};
use deltalake::datafusion::logical_expr::ScalarUDF;

use super::functions::datetime_micros;
use super::udf::{Call, Udf, datetime_then, exactly};

const DATETIME: DataType = DataType::Timestamp(TimeUnit::Microsecond, None);
const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;
/// `to_days('0001-01-01')`: MySQL counts from year 0, which has 366 days.
const TO_DAYS_FROM_CE: i64 = 365;

fn naive(micros: i64) -> Option<NaiveDateTime> {
    crate::value::micros_to_naive(micros)
}

fn micros(dt: NaiveDateTime) -> Option<i64> {
    // StarRocks' DATETIME range.
    (0..=9999)
        .contains(&dt.year())
        .then(|| dt.and_utc().timestamp_micros())
}

fn days(d: NaiveDate) -> i32 {
    d.num_days_from_ce() - UNIX_EPOCH_DAYS_FROM_CE
}

/// Argument `i` as wall-clock times.
fn datetimes(call: &Call, i: usize) -> Result<Vec<Option<NaiveDateTime>>> {
    let array = datetime_micros(&call.args[i])?;
    Ok(array.iter().map(|v| v.and_then(naive)).collect())
}

fn int_list(call: &Call, i: usize) -> Result<Vec<Option<i64>>> {
    Ok(call.int(i)?.iter().collect())
}

fn text_list(call: &Call, i: usize) -> Result<Vec<Option<String>>> {
    Ok(call
        .text(i)?
        .iter()
        .map(|v| v.map(str::to_string))
        .collect())
}

/// `name(date)` returning INT.
fn part(name: &'static str, f: fn(NaiveDateTime) -> i64) -> ScalarUDF {
    Udf::new(
        name,
        DataType::Int32,
        datetime_then(name, "(date or datetime)", vec![vec![]]),
        move |call| {
            let out: Int32Array = datetimes(call, 0)?
                .into_iter()
                .map(|d| d.map(|d| f(d) as i32))
                .collect();
            Ok(Arc::new(out))
        },
    )
    .build()
}

fn quarter(d: NaiveDateTime) -> i64 {
    (d.month() as i64 - 1) / 3 + 1
}

/// MySQL's `calc_daynr`: days since year 0 (`to_days`).
fn daynr(d: NaiveDate) -> i64 {
    d.num_days_from_ce() as i64 + TO_DAYS_FROM_CE
}

fn days_in_year(year: i32) -> i64 {
    if NaiveDate::from_ymd_opt(year, 2, 29).is_some() {
        366
    } else {
        365
    }
}

/// MySQL's `week(date, mode)` (`calc_week` with `week_mode`).
pub fn mysql_week(d: NaiveDate, mode: i64) -> i64 {
    const MONDAY_FIRST: i64 = 1;
    const WEEK_YEAR: i64 = 2;
    const FIRST_WEEKDAY: i64 = 4;
    let mut behaviour = mode & 7;
    if behaviour & MONDAY_FIRST == 0 {
        behaviour ^= FIRST_WEEKDAY;
    }
    let monday_first = behaviour & MONDAY_FIRST != 0;
    let mut week_year = behaviour & WEEK_YEAR != 0;
    let first_weekday = behaviour & FIRST_WEEKDAY != 0;
    let calc_weekday = |daynr: i64, sunday_first: bool| (daynr + 5 + sunday_first as i64) % 7;

    let day = daynr(d);
    let mut first = daynr(NaiveDate::from_ymd_opt(d.year(), 1, 1).expect("January 1st"));
    let mut weekday = calc_weekday(first, !monday_first);
    let mut year = d.year();
    if d.month() == 1 && (d.day() as i64) <= 7 - weekday {
        if !week_year && ((first_weekday && weekday != 0) || (!first_weekday && weekday >= 4)) {
            return 0;
        }
        week_year = true;
        year -= 1;
        let in_year = days_in_year(year);
        first -= in_year;
        weekday = (weekday + 53 * 7 - in_year) % 7;
    }
    let elapsed = if (first_weekday && weekday != 0) || (!first_weekday && weekday >= 4) {
        day - (first + (7 - weekday))
    } else {
        day - (first - weekday)
    };
    if week_year && elapsed >= 52 * 7 {
        weekday = (weekday + days_in_year(year)) % 7;
        if (!first_weekday && weekday < 4) || (first_weekday && weekday == 0) {
            return 1;
        }
    }
    elapsed / 7 + 1
}

/// The unit of a `*_add`, `*_sub` or `*_diff` function.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Unit {
    Year,
    Quarter,
    Month,
    Week,
    Day,
    Hour,
    Minute,
    Second,
    Millisecond,
    Microsecond,
}

impl Unit {
    pub const ALL: [(Unit, &'static str); 10] = [
        (Unit::Year, "year"),
        (Unit::Quarter, "quarter"),
        (Unit::Month, "month"),
        (Unit::Week, "week"),
        (Unit::Day, "day"),
        (Unit::Hour, "hour"),
        (Unit::Minute, "minute"),
        (Unit::Second, "second"),
        (Unit::Millisecond, "millisecond"),
        (Unit::Microsecond, "microsecond"),
    ];

    /// A unit named in SQL (`DAY`, `days`, `'day'`).
    pub fn parse(name: &str) -> Option<Unit> {
        let n = name.trim().trim_matches(['\'', '"']).to_ascii_lowercase();
        let n = n.strip_suffix('s').unwrap_or(&n);
        Unit::ALL.iter().find(|(_, s)| *s == n).map(|(u, _)| *u)
    }

    pub fn name(self) -> &'static str {
        Unit::ALL
            .iter()
            .find(|(u, _)| *u == self)
            .map(|(_, s)| *s)
            .expect("every unit is listed")
    }
}

/// `dt` plus `n` units; None when the result is not a valid DATETIME.
pub fn add_units(dt: NaiveDateTime, unit: Unit, n: i64) -> Option<NaiveDateTime> {
    let months = |m: i64| -> Option<NaiveDateTime> {
        if m >= 0 {
            dt.checked_add_months(Months::new(u32::try_from(m).ok()?))
        } else {
            dt.checked_sub_months(Months::new(u32::try_from(-m).ok()?))
        }
    };
    let out = match unit {
        Unit::Year => months(n.checked_mul(12)?)?,
        Unit::Quarter => months(n.checked_mul(3)?)?,
        Unit::Month => months(n)?,
        Unit::Week => dt.checked_add_signed(Duration::try_weeks(n)?)?,
        Unit::Day => dt.checked_add_signed(Duration::try_days(n)?)?,
        Unit::Hour => dt.checked_add_signed(Duration::try_hours(n)?)?,
        Unit::Minute => dt.checked_add_signed(Duration::try_minutes(n)?)?,
        Unit::Second => dt.checked_add_signed(Duration::try_seconds(n)?)?,
        Unit::Millisecond => dt.checked_add_signed(Duration::try_milliseconds(n)?)?,
        Unit::Microsecond => dt.checked_add_signed(Duration::microseconds(n))?,
    };
    (0..=9999).contains(&out.year()).then_some(out)
}

/// Whole units from `b` to `a` (`a - b`), truncated toward zero.
pub fn diff_units(a: NaiveDateTime, b: NaiveDateTime, unit: Unit) -> i64 {
    let months = || {
        let mut m = (a.year() as i64 - b.year() as i64) * 12 + a.month() as i64 - b.month() as i64;
        // The rest of the later value (day and time) must reach the earlier one's.
        let rest = |d: NaiveDateTime| (d.day(), d.time());
        if m > 0 && rest(a) < rest(b) {
            m -= 1;
        } else if m < 0 && rest(a) > rest(b) {
            m += 1;
        }
        m
    };
    let micros = (a - b).num_microseconds().unwrap_or(i64::MAX);
    match unit {
        Unit::Year => months() / 12,
        Unit::Quarter => months() / 3,
        Unit::Month => months(),
        Unit::Week => micros / (7 * 86_400_000_000),
        Unit::Day => micros / 86_400_000_000,
        Unit::Hour => micros / 3_600_000_000,
        Unit::Minute => micros / 60_000_000,
        Unit::Second => micros / 1_000_000,
        Unit::Millisecond => micros / 1_000,
        Unit::Microsecond => micros,
    }
}

/// `<unit>s_add(date, n)` or `<unit>s_sub(date, n)`.
fn add_function(name: &'static str, unit: Unit, sign: i64, aliases: &[&str]) -> ScalarUDF {
    Udf::new(
        name,
        DATETIME,
        datetime_then(name, "(date or datetime, INT)", vec![vec![DataType::Int64]]),
        move |call| {
            let n = int_list(call, 1)?;
            let out: TimestampMicrosecondArray = datetimes(call, 0)?
                .into_iter()
                .zip(n)
                .map(|(d, n)| add_units(d?, unit, n?.checked_mul(sign)?).and_then(micros))
                .collect();
            Ok(Arc::new(out))
        },
    )
    .aliases(aliases)
    .build()
}

/// `<unit>s_diff(a, b)`: whole units of `a - b`.
fn diff_function(name: &'static str, unit: Unit) -> ScalarUDF {
    Udf::new(name, DataType::Int64, two_datetimes(name), move |call| {
        let b = datetimes(call, 1)?;
        let out: Int64Array = datetimes(call, 0)?
            .into_iter()
            .zip(b)
            .map(|(a, b)| Some(diff_units(a?, b?, unit)))
            .collect();
        Ok(Arc::new(out))
    })
    .build()
}

fn two_datetimes(
    name: &'static str,
) -> impl Fn(&[DataType]) -> Result<Vec<DataType>> + Send + Sync + 'static {
    move |types: &[DataType]| {
        if types.len() != 2 {
            return plan_err!("{name} takes (datetime, datetime)");
        }
        let first = datetime_then(name, "(datetime, datetime)", vec![vec![]]);
        Ok(vec![
            first(&types[..1])?.remove(0),
            first(&types[1..])?.remove(0),
        ])
    }
}

/// A time zone as StarRocks names it: an IANA name or a `+08:00` offset.
#[derive(Debug, Clone, Copy)]
pub enum Zone {
    Named(Tz),
    Fixed(FixedOffset),
}

impl Zone {
    pub fn parse(text: &str) -> Option<Zone> {
        let t = text.trim();
        if let Ok(tz) = t.parse::<Tz>() {
            return Some(Zone::Named(tz));
        }
        let (sign, rest) = match t.as_bytes().first()? {
            b'+' => (1, &t[1..]),
            b'-' => (-1, &t[1..]),
            _ => return None,
        };
        let (h, m) = rest.split_once(':')?;
        let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
        if !(0..=14).contains(&h) || !(0..60).contains(&m) {
            return None;
        }
        FixedOffset::east_opt(sign * (h * 3600 + m * 60)).map(Zone::Fixed)
    }

    /// The instant of a wall-clock time in this zone (the earlier one when it is ambiguous).
    fn instant(self, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        match self {
            Zone::Named(tz) => tz
                .from_local_datetime(&local)
                .earliest()
                .map(|d| d.with_timezone(&Utc)),
            Zone::Fixed(off) => off
                .from_local_datetime(&local)
                .earliest()
                .map(|d| d.with_timezone(&Utc)),
        }
    }

    fn wall_clock(self, instant: DateTime<Utc>) -> NaiveDateTime {
        match self {
            Zone::Named(tz) => instant.with_timezone(&tz).naive_local(),
            Zone::Fixed(off) => instant.with_timezone(&off).naive_local(),
        }
    }
}

/// The current wall-clock time in `tz`.
fn local_now(tz: Tz) -> NaiveDateTime {
    let now = Utc::now();
    now.with_timezone(&tz.offset_from_utc_datetime(&now.naive_utc()).fix())
        .naive_local()
}

fn clock(
    name: &'static str,
    aliases: &[&str],
    returns: DataType,
    tz: Tz,
    value: fn(NaiveDateTime, usize) -> ArrayRef,
) -> ScalarUDF {
    Udf::new(
        name,
        returns,
        exactly(name, "no arguments", vec![vec![]]),
        move |call| Ok(value(local_now(tz), call.rows)),
    )
    .aliases(aliases)
    .volatile()
    .identity(tz.name())
    .build()
}

fn timestamps(now: NaiveDateTime, rows: usize) -> ArrayRef {
    // Seconds precision, as StarRocks' now().
    let m = now
        .with_nanosecond(0)
        .unwrap_or(now)
        .and_utc()
        .timestamp_micros();
    Arc::new(TimestampMicrosecondArray::from(vec![m; rows]))
}

fn time_text(t: i64) -> String {
    let sign = if t < 0 { "-" } else { "" };
    let s = t.unsigned_abs();
    format!("{sign}{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn unit_arg(text: Option<&str>) -> Result<Option<Unit>> {
    match text {
        None => Ok(None),
        Some(t) => match Unit::parse(t) {
            Some(u) => Ok(Some(u)),
            None => exec_err!("unknown time unit '{t}'"),
        },
    }
}

/// The date and time functions for a job running in `tz`.
pub fn time_functions(tz: Tz) -> Vec<ScalarUDF> {
    let mut out = vec![
        part("year", |d| d.year() as i64),
        part("quarter", quarter),
        part("dayofyear", |d| d.ordinal() as i64),
        part("weekofyear", |d| d.iso_week().week() as i64),
        part("hour", |d| d.hour() as i64),
        part("minute", |d| d.minute() as i64),
        part("second", |d| d.second() as i64),
        part("dayofweek_iso", |d| d.weekday().number_from_monday() as i64),
        part("weekday", |d| d.weekday().num_days_from_monday() as i64),
    ];
    out.push(
        Udf::new(
            "month",
            DataType::Int32,
            datetime_then("month", "(date or datetime)", vec![vec![]]),
            |call| {
                let out: Int32Array = datetimes(call, 0)?
                    .into_iter()
                    .map(|d| d.map(|d| d.month() as i32))
                    .collect();
                Ok(Arc::new(out))
            },
        )
        .build(),
    );
    out.push(
        Udf::new(
            "day",
            DataType::Int32,
            datetime_then("day", "(date or datetime)", vec![vec![]]),
            |call| {
                let out: Int32Array = datetimes(call, 0)?
                    .into_iter()
                    .map(|d| d.map(|d| d.day() as i32))
                    .collect();
                Ok(Arc::new(out))
            },
        )
        .aliases(&["dayofmonth"])
        .build(),
    );
    out.push(
        Udf::new(
            "dayofweek",
            DataType::Int32,
            datetime_then("dayofweek", "(date or datetime)", vec![vec![]]),
            |call| {
                let out: Int32Array = datetimes(call, 0)?
                    .into_iter()
                    .map(|d| d.map(|d| d.weekday().number_from_sunday() as i32))
                    .collect();
                Ok(Arc::new(out))
            },
        )
        .build(),
    );
    out.push(
        Udf::new(
            "week",
            DataType::Int32,
            datetime_then(
                "week",
                "(date[, mode])",
                vec![vec![], vec![DataType::Int64]],
            ),
            |call| {
                let modes = if call.args.len() > 1 {
                    int_list(call, 1)?
                } else {
                    vec![Some(0); call.rows]
                };
                let out: Int32Array = datetimes(call, 0)?
                    .into_iter()
                    .zip(modes)
                    .map(|(d, m)| Some(mysql_week(d?.date(), m?) as i32))
                    .collect();
                Ok(Arc::new(out))
            },
        )
        .build(),
    );
    for (name, f) in [("dayname", "%A" as &str), ("monthname", "%B")] {
        out.push(
            Udf::new(
                name,
                DataType::Utf8,
                datetime_then(name, "(date or datetime)", vec![vec![]]),
                move |call| {
                    let out: StringArray = datetimes(call, 0)?
                        .into_iter()
                        .map(|d| d.map(|d| d.format(f).to_string()))
                        .collect();
                    Ok(Arc::new(out))
                },
            )
            .build(),
        );
    }
    out.push(
        Udf::new(
            "to_days",
            DataType::Int32,
            datetime_then("to_days", "(date)", vec![vec![]]),
            |call| {
                let out: Int32Array = datetimes(call, 0)?
                    .into_iter()
                    .map(|d| d.map(|d| daynr(d.date()) as i32))
                    .collect();
                Ok(Arc::new(out))
            },
        )
        .build(),
    );
    out.push(
        Udf::new(
            "from_days",
            DataType::Date32,
            exactly("from_days", "(INT)", vec![vec![DataType::Int64]]),
            |call| {
                let out: Date32Array = int_list(call, 0)?
                    .into_iter()
                    .map(|n| {
                        let ce = i32::try_from(n? - TO_DAYS_FROM_CE).ok()?;
                        NaiveDate::from_num_days_from_ce_opt(ce)
                            .filter(|d| (0..=9999).contains(&d.year()))
                            .map(days)
                    })
                    .collect();
                Ok(Arc::new(out))
            },
        )
        .build(),
    );
    out.push(
        Udf::new(
            "makedate",
            DataType::Date32,
            exactly(
                "makedate",
                "(INT year, INT day of year)",
                vec![vec![DataType::Int64, DataType::Int64]],
            ),
            |call| {
                let doy = int_list(call, 1)?;
                let out: Date32Array = int_list(call, 0)?
                    .into_iter()
                    .zip(doy)
                    .map(|(y, d)| {
                        let y = i32::try_from(y?).ok().filter(|y| (0..=9999).contains(y))?;
                        NaiveDate::from_yo_opt(y, u32::try_from(d?).ok()?).map(days)
                    })
                    .collect();
                Ok(Arc::new(out))
            },
        )
        .build(),
    );
    out.push(
        Udf::new(
            "last_day",
            DataType::Date32,
            datetime_then(
                "last_day",
                "(date[, 'month' | 'quarter' | 'year'])",
                vec![vec![], vec![DataType::Utf8]],
            ),
            |call| {
                let units = if call.args.len() > 1 {
                    text_list(call, 1)?
                } else {
                    vec![Some("month".to_string()); call.rows]
                };
                let mut out = Vec::with_capacity(call.rows);
                for (d, unit) in datetimes(call, 0)?.into_iter().zip(units) {
                    let (Some(d), Some(unit)) = (d, unit) else {
                        out.push(None);
                        continue;
                    };
                    let months_to_end = match unit.to_ascii_lowercase().as_str() {
                        "month" => 1,
                        "quarter" => 3 - (d.month0() % 3) as i32,
                        "year" => 12 - d.month0() as i32,
                        other => {
                            return exec_err!(
                                "last_day: unit '{other}' is not month, quarter or year"
                            );
                        }
                    };
                    let first = d.date().with_day(1).expect("day 1");
                    out.push(
                        first
                            .checked_add_months(Months::new(months_to_end as u32))
                            .and_then(|n| n.pred_opt())
                            .map(days),
                    );
                }
                Ok(Arc::new(Date32Array::from(out)))
            },
        )
        .build(),
    );
    for (name, aliases, returns) in [
        ("timestamp", &[] as &[&str], DATETIME),
        ("date", &["to_date"], DataType::Date32),
    ] {
        let is_date = returns == DataType::Date32;
        out.push(
            Udf::new(
                name,
                returns,
                datetime_then(name, "(date or datetime)", vec![vec![]]),
                move |call| {
                    let values = datetimes(call, 0)?;
                    Ok(if is_date {
                        Arc::new(
                            values
                                .into_iter()
                                .map(|d| d.map(|d| days(d.date())))
                                .collect::<Date32Array>(),
                        )
                    } else {
                        Arc::new(
                            values
                                .into_iter()
                                .map(|d| d.and_then(micros))
                                .collect::<TimestampMicrosecondArray>(),
                        )
                    })
                },
            )
            .aliases(aliases)
            .build(),
        );
    }
    // years_add .. microseconds_add, their _sub, and date_add / date_sub with a day count (an
    // INTERVAL is rewritten to the unit's function before planning).
    for (unit, unit_name) in Unit::ALL {
        let add: &'static str = Box::leak(format!("{unit_name}s_add").into_boxed_str());
        let sub: &'static str = Box::leak(format!("{unit_name}s_sub").into_boxed_str());
        let diff: &'static str = Box::leak(format!("{unit_name}s_diff").into_boxed_str());
        let add_aliases: &[&str] = if unit == Unit::Month {
            &["add_months"]
        } else {
            &[]
        };
        out.push(add_function(add, unit, 1, add_aliases));
        out.push(add_function(sub, unit, -1, &[]));
        if unit != Unit::Microsecond {
            out.push(diff_function(diff, unit));
        }
    }
    out.push(add_function("date_add", Unit::Day, 1, &["adddate"]));
    out.push(add_function("date_sub", Unit::Day, -1, &["subdate"]));
    out.push(
        Udf::new(
            "datediff",
            DataType::Int32,
            two_datetimes("datediff"),
            |call| {
                let b = datetimes(call, 1)?;
                let out: Int32Array = datetimes(call, 0)?
                    .into_iter()
                    .zip(b)
                    .map(|(a, b)| Some((a?.date() - b?.date()).num_days() as i32))
                    .collect();
                Ok(Arc::new(out))
            },
        )
        .build(),
    );
    out.push(
        Udf::new(
            "date_diff",
            DataType::Int64,
            |types: &[DataType]| {
                if types.len() != 3 {
                    return plan_err!("date_diff takes (unit, datetime, datetime)");
                }
                let mut out = vec![DataType::Utf8];
                out.extend(two_datetimes("date_diff")(&types[1..])?);
                Ok(out)
            },
            |call| {
                let units = text_list(call, 0)?;
                let a = datetimes(call, 1)?;
                let b = datetimes(call, 2)?;
                let mut out = Vec::with_capacity(call.rows);
                for ((u, a), b) in units.into_iter().zip(a).zip(b) {
                    let unit = unit_arg(u.as_deref())?;
                    out.push(match (unit, a, b) {
                        (Some(u), Some(a), Some(b)) => Some(diff_units(a, b, u)),
                        _ => None,
                    });
                }
                Ok(Arc::new(Int64Array::from(out)))
            },
        )
        .build(),
    );
    out.push(
        Udf::new(
            "timediff",
            DataType::Utf8,
            two_datetimes("timediff"),
            |call| {
                let b = datetimes(call, 1)?;
                let out: StringArray = datetimes(call, 0)?
                    .into_iter()
                    .zip(b)
                    .map(|(a, b)| Some(time_text((a? - b?).num_seconds())))
                    .collect();
                Ok(Arc::new(out))
            },
        )
        .build(),
    );
    out.push(
        Udf::new(
            "convert_tz",
            DATETIME,
            datetime_then(
                "convert_tz",
                "(datetime, from_tz, to_tz)",
                vec![vec![DataType::Utf8, DataType::Utf8]],
            ),
            |call| {
                let from = text_list(call, 1)?;
                let to = text_list(call, 2)?;
                let out: TimestampMicrosecondArray = datetimes(call, 0)?
                    .into_iter()
                    .zip(from)
                    .zip(to)
                    .map(|((d, from), to)| {
                        let from = Zone::parse(&from?)?;
                        let to = Zone::parse(&to?)?;
                        micros(to.wall_clock(from.instant(d?)?))
                    })
                    .collect();
                Ok(Arc::new(out))
            },
        )
        .build(),
    );
    out.push(clock(
        "now",
        &["current_timestamp", "localtime", "localtimestamp"],
        DATETIME,
        tz,
        timestamps,
    ));
    out.push(clock(
        "curdate",
        &["current_date"],
        DataType::Date32,
        tz,
        |now, rows| Arc::new(Date32Array::from(vec![days(now.date()); rows])),
    ));
    out.push(clock(
        "curtime",
        &["current_time"],
        DataType::Utf8,
        tz,
        |now, rows| {
            let t = now.time();
            let text = NaiveTime::from_hms_opt(t.hour(), t.minute(), t.second())
                .unwrap_or(t)
                .format("%H:%M:%S")
                .to_string();
            Arc::new(StringArray::from(vec![text; rows]))
        },
    ));
    out.push(clock("utc_timestamp", &[], DATETIME, Tz::UTC, timestamps));
    out
}
