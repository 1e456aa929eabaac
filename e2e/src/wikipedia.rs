//! The reference's Wikipedia edit rows (`routine_wiki_edit`: event_time, channel, user,
//! is_anonymous, is_minor, is_new, is_robot, is_unpatrolled, delta, added, deleted) as CSV
//! messages of about 80-100 bytes, shared by the tests, the demo and the benchmarks.

/// The CSV message for row `i`. Every 100th row (`i % 100 == 99`) is bad: its `delta` (INT)
/// holds text, so 1% of the messages become error rows. `user` carries `i`, so a reader can check
/// that every offset was loaded exactly once.
pub fn row(i: usize) -> String {
    const CHANNELS: [&str; 4] = [
        "#en.wikipedia",
        "#ca.wikipedia",
        "#de.wikipedia",
        "#fr.wikipedia",
    ];
    let time = format!(
        "2015-09-12 {:02}:{:02}:{:02}",
        (i / 3600) % 24,
        (i / 60) % 60,
        i % 60
    );
    let delta = if is_good(i) {
        ((i % 400) as i64 - 200).to_string()
    } else {
        "not-a-number".to_string()
    };
    format!(
        "{time},{},User{i},{},{},0,{},1,{delta},{},{}",
        CHANNELS[i % 4],
        i % 2,
        i.is_multiple_of(3) as u8,
        i.is_multiple_of(7) as u8,
        i % 300,
        i % 50
    )
}

/// The column names of `routine_wiki_edit`, in table (and CSV field) order.
pub const COLUMN_NAMES: [&str; 11] = [
    "event_time",
    "channel",
    "user",
    "is_anonymous",
    "is_minor",
    "is_new",
    "is_robot",
    "is_unpatrolled",
    "delta",
    "added",
    "deleted",
];

/// The columns of the reference's `routine_wiki_edit` table, as `Table.spec.columns` JSON.
pub fn table_columns() -> serde_json::Value {
    serde_json::json!([
        {"name": "event_time", "type": "DATETIME", "nullable": false},
        {"name": "channel", "type": "VARCHAR(32)"},
        {"name": "user", "type": "VARCHAR(128)"},
        {"name": "is_anonymous", "type": "TINYINT"},
        {"name": "is_minor", "type": "TINYINT"},
        {"name": "is_new", "type": "TINYINT"},
        {"name": "is_robot", "type": "TINYINT"},
        {"name": "is_unpatrolled", "type": "TINYINT"},
        {"name": "delta", "type": "INT"},
        {"name": "added", "type": "INT"},
        {"name": "deleted", "type": "INT"}
    ])
}

/// Whether row `i` is a good row (loads) rather than an error row.
pub fn is_good(i: usize) -> bool {
    i % 100 != 99
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_in_a_hundred_is_bad() {
        assert_eq!((0..1000).filter(|i| !is_good(*i)).count(), 10);
        assert!(row(99).contains("not-a-number"));
        assert_eq!(row(1).split(',').count(), 11);
        assert_eq!(
            row(4000),
            "2015-09-12 01:06:40,#en.wikipedia,User4000,0,0,0,0,1,-200,100,0"
        );
    }
}
