//! The Delta tables this worker's Stream Loads have loaded, kept between loads: the next load of
//! a table brings the kept snapshot up to date with the versions committed since (often none or
//! one) instead of reading the log again from its last checkpoint, which is most of a small
//! load's time once a table has many versions. Every load still checks the table against its
//! `Table` spec on the updated snapshot, and commits through Delta's conflict checks: a kept
//! snapshot only saves reading, it never decides what is in the table.

use std::collections::HashMap;
use std::sync::Mutex;

use deltalake::DeltaTable;

/// At most this many tables are kept (one snapshot each); a new one beyond it replaces one.
const MAX_TABLES: usize = 64;

/// What identifies a kept table: the `Table` object (its UID: a `Table` deleted and made again
/// starts afresh), its location and the storage options (credentials that changed open the table
/// again with the new ones).
pub fn cache_key(table_uid: &str, location: &str, options: &HashMap<String, String>) -> String {
    let mut key = format!("{table_uid}\n{location}");
    let mut options: Vec<_> = options.iter().collect();
    options.sort();
    for (k, v) in options {
        key.push('\n');
        key.push_str(k);
        key.push('=');
        key.push_str(v);
    }
    key
}

/// Pure: whether a table at version `offered` replaces the kept one at `kept` (the newest
/// snapshot is kept; two loads of one table may finish in either order).
fn replaces(kept: Option<i64>, offered: i64) -> bool {
    kept.is_none_or(|k| offered > k)
}

#[derive(Default)]
pub struct TableCache {
    tables: Mutex<HashMap<String, DeltaTable>>,
}

impl TableCache {
    /// A copy of the kept table (snapshots share their data: cheap), to bring up to date.
    pub fn get(&self, key: &str) -> Option<DeltaTable> {
        self.tables.lock().ok()?.get(key).cloned()
    }

    /// Keeps `table` under `key` unless a newer snapshot of it is kept already.
    pub fn put(&self, key: String, table: DeltaTable) {
        let Some(version) = table.version() else {
            return;
        };
        let Ok(mut tables) = self.tables.lock() else {
            return;
        };
        let kept = tables.get(&key).and_then(|t| t.version()).map(|v| v as i64);
        if !replaces(kept, version as i64) {
            return;
        }
        if kept.is_none()
            && tables.len() >= MAX_TABLES
            && let Some(any) = tables.keys().next().cloned()
        {
            tables.remove(&any);
        }
        tables.insert(key, table);
    }

    /// Forgets the table under `key` (its snapshot could not be brought up to date).
    pub fn forget(&self, key: &str) {
        if let Ok(mut tables) = self.tables.lock() {
            tables.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_table_object_location_and_credentials() {
        let options = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let base = cache_key(
            "uid-1",
            "s3://b/t",
            &options(&[("AWS_ACCESS_KEY_ID", "a"), ("AWS_REGION", "r")]),
        );
        let cases = [
            (
                "the same",
                cache_key(
                    "uid-1",
                    "s3://b/t",
                    &options(&[("AWS_REGION", "r"), ("AWS_ACCESS_KEY_ID", "a")]),
                ),
                true,
            ),
            (
                "a Table made again",
                cache_key(
                    "uid-2",
                    "s3://b/t",
                    &options(&[("AWS_ACCESS_KEY_ID", "a"), ("AWS_REGION", "r")]),
                ),
                false,
            ),
            (
                "another location",
                cache_key(
                    "uid-1",
                    "s3://b/u",
                    &options(&[("AWS_ACCESS_KEY_ID", "a"), ("AWS_REGION", "r")]),
                ),
                false,
            ),
            (
                "rotated credentials",
                cache_key(
                    "uid-1",
                    "s3://b/t",
                    &options(&[("AWS_ACCESS_KEY_ID", "b"), ("AWS_REGION", "r")]),
                ),
                false,
            ),
            (
                "no credentials",
                cache_key("uid-1", "s3://b/t", &options(&[])),
                false,
            ),
        ];
        for (what, key, same) in cases {
            assert_eq!(key == base, same, "{what}");
        }
    }

    #[test]
    fn the_newest_snapshot_is_kept() {
        // (kept version, offered version, replaces)
        for (kept, offered, want) in [
            (None, 0, true),
            (Some(3), 4, true),
            (Some(4), 4, false),
            (Some(5), 4, false),
        ] {
            assert_eq!(
                replaces(kept, offered),
                want,
                "kept {kept:?}, offered {offered}"
            );
        }
    }
}
