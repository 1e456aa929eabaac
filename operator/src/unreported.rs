//! Counting the batches of tasks let go without their worker's last word.
//!
//! A deleted task's finalizer normally goes once its worker released it, with the loop's final
//! status (every batch it committed counted). When the worker's Lease expired, or the release
//! timed out, the operator lets the task go on the last status it saw; the loop may have
//! committed batches after that status (its status patches failed: the API server was cut off,
//! the worker frozen). Those batches are in the table, each commit naming its task UID and
//! what it counted, so the operator reads them back from the table and adds them to the job's
//! retired counters:
//!
//! 1. [`record`]: a task let go that way gets an entry (`status.unreportedTasks`), counted
//!    through its last reported commit version, in the same status write as its retired
//!    counters and before its finalizer goes. While the task object still exists its status
//!    may still grow (the entry follows its `lastCommitVersion`); nothing is read yet.
//! 2. [`scan_range`] and the controller's read: once the task object is gone, the table's
//!    commits after the entry's version are read (every [`SCAN_PERIOD`], while entries wait).
//! 3. [`settle`]: the commits of the entry's task UID are added, the entry moves on to the last
//!    version read, and goes after [`WINDOW`]: a loop cut off from the API server stops
//!    committing once its worker's Lease lapsed (it re-reads its task before committing), long
//!    before.
//!
//! Every commit is counted once: versions up to `countedThrough` are either in the task's last
//! status (recorded in `retiredTasks`) or added already, and the status write that adds them
//! moves `countedThrough` in the same patch, conditional on the job's resourceVersion.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use routine_load_api::job::UnreportedTask;
use routine_load_api::task::TaskCounters;

/// How long after a task was let go its commits are still looked for.
pub const WINDOW: Duration = Duration::from_secs(600);
/// How often the table is read while entries wait.
pub const SCAN_PERIOD: Duration = Duration::from_secs(10);
/// How many versions back a task that reported no commit is looked for.
pub const LOOKBACK_VERSIONS: i64 = 200;
/// Most versions one read covers (the next read goes on from there).
pub const MAX_SCAN_VERSIONS: i64 = 1000;
/// After this much past its window, an entry goes even if the table could not be read (the
/// table is gone or unreachable): its batches stay uncounted, and the operator says so.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(3600);

/// A routine-load commit of the table, as counting needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScannedCommit {
    pub version: i64,
    pub task_uid: String,
    /// What the batch counted; `None` for a commit without a batch (offsets only).
    pub counters: Option<TaskCounters>,
}

/// What one read of the table saw: its routine-load commits in `first..=through`.
#[derive(Debug, Clone, PartialEq)]
pub struct Scan {
    pub first: i64,
    pub through: i64,
    pub commits: Vec<ScannedCommit>,
}

/// A task let go without its worker's word: UID, name, last reported commit version.
#[derive(Debug, Clone, PartialEq)]
pub struct LetGo {
    pub uid: String,
    pub name: String,
    pub last_commit_version: Option<i64>,
}

/// The outcome of [`settle`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settled {
    /// Counters of the unreported batches found, to add to the retired counters.
    pub added: TaskCounters,
    pub entries: BTreeMap<String, UnreportedTask>,
    /// What happened, for the log: batches counted, entries given up.
    pub notes: Vec<String>,
}

/// Pure: the entries after this plan's releases. `existing` maps the UID of every task object
/// still there to its last reported commit version; `let_go` are the releases without the
/// worker's word.
pub fn record(
    entries: &BTreeMap<String, UnreportedTask>,
    existing: &BTreeMap<String, Option<i64>>,
    let_go: &[LetGo],
    now: Timestamp,
) -> BTreeMap<String, UnreportedTask> {
    let mut out = entries.clone();
    for (uid, e) in out.iter_mut() {
        // Still there: its status may still grow, and its retired entry follows it.
        if let Some(v) = existing.get(uid) {
            e.counted_through = *v;
        }
    }
    let until = now
        .checked_add(SignedDuration::try_from(WINDOW).unwrap_or(SignedDuration::ZERO))
        .unwrap_or(now);
    for t in let_go {
        out.entry(t.uid.clone()).or_insert_with(|| UnreportedTask {
            task: t.name.clone(),
            counted_through: t.last_commit_version,
            until: Time(until),
        });
    }
    out
}

/// Pure: the versions to read for the entries whose task is gone (`gone`), given the table's
/// latest version; `None`: nothing to read.
pub fn scan_range(
    entries: &BTreeMap<String, UnreportedTask>,
    gone: impl Fn(&str) -> bool,
    latest: i64,
) -> Option<(i64, i64)> {
    let first = entries
        .iter()
        .filter(|(uid, _)| gone(uid))
        .map(|(_, e)| match e.counted_through {
            Some(v) => v + 1,
            None => latest - LOOKBACK_VERSIONS + 1,
        })
        .min()?
        .max(0);
    (first <= latest).then(|| (first, latest.min(first + MAX_SCAN_VERSIONS - 1)))
}

/// Pure: counts the commits `scan` found for the entries whose task is gone, moves them on to
/// the last version read, and drops the entries past their window that were read this time
/// (or past [`GIVE_UP_AFTER`] without a read).
pub fn settle(
    entries: &BTreeMap<String, UnreportedTask>,
    gone: impl Fn(&str) -> bool,
    scan: Option<&Scan>,
    now: Timestamp,
) -> Settled {
    let mut s = Settled::default();
    for (uid, e) in entries {
        let mut e = e.clone();
        let mut read = false;
        if gone(uid)
            && let Some(scan) = scan
        {
            let from = e.counted_through.map_or(i64::MIN, |v| v + 1);
            // A read that starts after the entry's next version would skip commits: wait.
            if from >= scan.first || e.counted_through.is_none() {
                for c in scan.commits.iter().filter(|c| {
                    c.task_uid == *uid && c.version >= from && c.version <= scan.through
                }) {
                    if let Some(counters) = &c.counters {
                        s.added.add(counters);
                        s.notes.push(format!(
                            "task {} (let go without its worker's last status): counted the \
                             batch of version {} ({} rows loaded) from the table",
                            e.task, c.version, counters.loaded_rows
                        ));
                    }
                }
                e.counted_through = Some(scan.through.max(e.counted_through.unwrap_or(-1)));
                read = true;
            }
        }
        let past = |d: Duration| {
            SignedDuration::try_from(d)
                .ok()
                .and_then(|d| e.until.0.checked_add(d).ok())
                .is_some_and(|t| now >= t)
        };
        if gone(uid) && ((read && past(Duration::ZERO)) || past(GIVE_UP_AFTER)) {
            if !read {
                s.notes.push(format!(
                    "task {}: its table could not be read for an hour past the window; batches \
                     its loop committed after version {:?} without reporting stay uncounted",
                    e.task, e.counted_through
                ));
            }
            continue;
        }
        s.entries.insert(uid.clone(), e);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn entry(through: Option<i64>, until_s: i64) -> UnreportedTask {
        UnreportedTask {
            task: "j-0".into(),
            counted_through: through,
            until: Time(at(until_s)),
        }
    }

    fn rows(n: i64) -> TaskCounters {
        TaskCounters {
            total_rows: n,
            loaded_rows: n,
            received_bytes: 10 * n,
            committed_batches: 1,
            ..TaskCounters::default()
        }
    }

    fn commit(version: i64, uid: &str, loaded: Option<i64>) -> ScannedCommit {
        ScannedCommit {
            version,
            task_uid: uid.into(),
            counters: loaded.map(rows),
        }
    }

    #[test]
    fn record_adds_let_go_tasks_and_follows_existing_ones() {
        let now = at(0);
        let window = WINDOW.as_secs() as i64;
        // (case, entries, existing (uid, last commit), let go (uid, last commit), expected)
        type Case<'a> = (
            &'a str,
            Vec<(&'a str, UnreportedTask)>,
            Vec<(&'a str, Option<i64>)>,
            Vec<(&'a str, Option<i64>)>,
            Vec<(&'a str, UnreportedTask)>,
        );
        let cases: Vec<Case> = vec![
            (
                "a task let go gets an entry from its last reported commit",
                vec![],
                vec![("u1", Some(7))],
                vec![("u1", Some(7))],
                vec![("u1", entry(Some(7), window))],
            ),
            (
                "one that reported no commit is looked for back from the latest",
                vec![],
                vec![("u1", None)],
                vec![("u1", None)],
                vec![("u1", entry(None, window))],
            ),
            (
                "let go again (its finalizer removal conflicted): the entry stays as it was",
                vec![("u1", entry(Some(7), 30))],
                vec![("u1", Some(7))],
                vec![("u1", Some(7))],
                vec![("u1", entry(Some(7), 30))],
            ),
            (
                "its worker reported more before it went: the entry follows the status",
                vec![("u1", entry(Some(7), 30))],
                vec![("u1", Some(9))],
                vec![],
                vec![("u1", entry(Some(9), 30))],
            ),
            (
                "a task gone keeps its entry as read",
                vec![("u1", entry(Some(12), 30))],
                vec![],
                vec![],
                vec![("u1", entry(Some(12), 30))],
            ),
        ];
        for (case, entries, existing, let_go, want) in cases {
            let entries = entries.into_iter().map(|(u, e)| (u.into(), e)).collect();
            let existing = existing.into_iter().map(|(u, v)| (u.into(), v)).collect();
            let let_go: Vec<LetGo> = let_go
                .into_iter()
                .map(|(u, v)| LetGo {
                    uid: u.into(),
                    name: "j-0".into(),
                    last_commit_version: v,
                })
                .collect();
            let want: BTreeMap<String, UnreportedTask> =
                want.into_iter().map(|(u, e)| (u.into(), e)).collect();
            assert_eq!(record(&entries, &existing, &let_go, now), want, "{case}");
        }
    }

    #[test]
    fn scan_range_starts_after_the_earliest_counted_version_of_a_gone_task() {
        // (case, entries (uid, counted through), gone uids, latest, expected)
        type Case<'a> = (
            &'a str,
            Vec<(&'a str, Option<i64>)>,
            Vec<&'a str>,
            i64,
            Option<(i64, i64)>,
        );
        let cases: Vec<Case> = vec![
            ("no entry", vec![], vec![], 10, None),
            (
                "its task still there",
                vec![("u1", Some(3))],
                vec![],
                10,
                None,
            ),
            (
                "after the entry's version",
                vec![("u1", Some(3))],
                vec!["u1"],
                10,
                Some((4, 10)),
            ),
            (
                "the earliest of several",
                vec![("u1", Some(8)), ("u2", Some(5))],
                vec!["u1", "u2"],
                10,
                Some((6, 10)),
            ),
            ("nothing new", vec![("u1", Some(10))], vec!["u1"], 10, None),
            (
                "no commit reported: the last versions",
                vec![("u1", None)],
                vec!["u1"],
                500,
                Some((301, 500)),
            ),
            (
                "no commit reported, a young table",
                vec![("u1", None)],
                vec!["u1"],
                5,
                Some((0, 5)),
            ),
            (
                "a long way behind: one read at most",
                vec![("u1", Some(0))],
                vec!["u1"],
                5000,
                Some((1, MAX_SCAN_VERSIONS)),
            ),
        ];
        for (case, entries, gone, latest, want) in cases {
            let entries = entries
                .into_iter()
                .map(|(u, v)| (u.to_string(), entry(v, 0)))
                .collect();
            let got = scan_range(&entries, |u| gone.contains(&u), latest);
            assert_eq!(got, want, "{case}");
        }
    }

    #[test]
    fn settle_counts_each_unreported_commit_once() {
        let scan = Scan {
            first: 4,
            through: 10,
            commits: vec![
                commit(4, "u1", Some(5)),
                commit(5, "u2", Some(100)),
                commit(6, "u1", None),
                commit(7, "u1", Some(3)),
            ],
        };
        // (case, entries (uid, entry), gone, scan, now, expected added rows, expected entries)
        type Case<'a> = (
            &'a str,
            Vec<(&'a str, UnreportedTask)>,
            Vec<&'a str>,
            Option<&'a Scan>,
            i64,
            i64,
            Vec<(&'a str, UnreportedTask)>,
        );
        let cases: Vec<Case> = vec![
            (
                "the task's batches after its last status, not another task's",
                vec![("u1", entry(Some(3), 600))],
                vec!["u1"],
                Some(&scan),
                0,
                8,
                vec![("u1", entry(Some(10), 600))],
            ),
            (
                "read already through 5: only the later ones",
                vec![("u1", entry(Some(5), 600))],
                vec!["u1"],
                Some(&scan),
                0,
                3,
                vec![("u1", entry(Some(10), 600))],
            ),
            (
                "its task is still there: nothing counted",
                vec![("u1", entry(Some(3), 600))],
                vec![],
                Some(&scan),
                0,
                0,
                vec![("u1", entry(Some(3), 600))],
            ),
            (
                "no read this time: as it was",
                vec![("u1", entry(Some(3), 600))],
                vec!["u1"],
                None,
                0,
                0,
                vec![("u1", entry(Some(3), 600))],
            ),
            (
                "a read that starts past its next version does not count it",
                vec![("u1", entry(Some(1), 600))],
                vec!["u1"],
                Some(&scan),
                0,
                0,
                vec![("u1", entry(Some(1), 600))],
            ),
            (
                "no commit reported: all of its commits read",
                vec![("u1", entry(None, 600))],
                vec!["u1"],
                Some(&scan),
                0,
                8,
                vec![("u1", entry(Some(10), 600))],
            ),
            (
                "past its window and read a last time: counted, then dropped",
                vec![("u1", entry(Some(3), 600))],
                vec!["u1"],
                Some(&scan),
                601,
                8,
                vec![],
            ),
            (
                "past its window, not read: kept for another try",
                vec![("u1", entry(Some(3), 600))],
                vec!["u1"],
                None,
                601,
                0,
                vec![("u1", entry(Some(3), 600))],
            ),
            (
                "an hour past its window, never read: given up",
                vec![("u1", entry(Some(3), 600))],
                vec!["u1"],
                None,
                600 + 3600,
                0,
                vec![],
            ),
        ];
        for (case, entries, gone, scan, now_s, want_rows, want) in cases {
            let entries = entries.into_iter().map(|(u, e)| (u.into(), e)).collect();
            let got = settle(&entries, |u| gone.contains(&u), scan, at(now_s));
            assert_eq!(got.added.loaded_rows, want_rows, "{case}: rows");
            assert_eq!(got.added.total_rows, want_rows, "{case}: total rows");
            let batches = if want_rows == 0 {
                0
            } else if want_rows == 3 {
                1
            } else {
                2
            };
            assert_eq!(got.added.committed_batches, batches, "{case}: batches");
            let want: BTreeMap<String, UnreportedTask> =
                want.into_iter().map(|(u, e)| (u.into(), e)).collect();
            assert_eq!(got.entries, want, "{case}: entries");
        }
    }
}
