//! Where each partition of a task starts, and the checks that nothing between the table's offset
//! and Kafka's log goes missing. Pure decisions; the task loop asks Kafka and the table.
//!
//! A partition's start is resolved once (its `kafka.offsets` entry, else `defaultOffset`, else
//! `OFFSET_END`) and recorded in the table, with a fingerprint of the configured entry, before
//! any message of it loads. From then on every restart, move or edit resumes from the table; only
//! an edited `kafka.offsets` entry (a different fingerprint) moves the partition.

use std::collections::BTreeMap;
use std::fmt;

use routine_load_api::job::{KafkaOffset, KafkaSource};
use routine_load_api::names::start_fingerprint;

use crate::delta_sink::PartitionRecord;

/// The start a job configures for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredStart {
    pub offset: KafkaOffset,
    /// Given by a `kafka.offsets` entry (which moves the partition when edited), not by
    /// `defaultOffset` (which applies only to partitions without an offset).
    pub explicit: bool,
}

impl ConfiguredStart {
    pub fn fingerprint(&self) -> i64 {
        start_fingerprint(&String::from(self.offset.clone()))
    }
}

/// The configured start of `partition`.
pub fn configured_start(kafka: &KafkaSource, partition: i32) -> ConfiguredStart {
    let explicit = kafka
        .partitions
        .iter()
        .position(|p| *p == partition)
        .and_then(|i| kafka.offsets.get(i));
    match explicit {
        Some(o) => ConfiguredStart {
            offset: o.clone(),
            explicit: true,
        },
        None => ConfiguredStart {
            offset: kafka.default_offset.clone().unwrap_or(KafkaOffset::End),
            explicit: false,
        },
    }
}

/// What to do with a partition before loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartDecision {
    /// Resume from the table's offset.
    Resume(i64),
    /// The table has no offset: resolve the configured start and record it first.
    Pin(KafkaOffset),
    /// The `kafka.offsets` entry was edited after the table's offset was recorded: move to it.
    Move { from: i64, to: KafkaOffset },
}

/// Decides a partition's start from what the table records and what the job configures.
///
/// A table offset without a fingerprint (written before fingerprints were recorded) is taken
/// as matching the configuration; the next commit records the fingerprint.
pub fn decide_start(record: &PartitionRecord, configured: &ConfiguredStart) -> StartDecision {
    match record.next {
        None => StartDecision::Pin(configured.offset.clone()),
        Some(from)
            if configured.explicit
                && record.start.is_some_and(|f| f != configured.fingerprint()) =>
        {
            StartDecision::Move {
                from,
                to: configured.offset.clone(),
            }
        }
        Some(from) => StartDecision::Resume(from),
    }
}

/// The offsets Kafka holds for a partition: `low` is the first retained offset, `high` the next
/// offset to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    pub low: i64,
    pub high: i64,
}

/// Turns a configured start into an offset. `for_time` is Kafka's answer to `offsets_for_times`
/// for a time start (`None`: no message at or after that time, so the end).
pub fn resolve(start: &KafkaOffset, w: Watermarks, for_time: Option<i64>) -> i64 {
    match start {
        KafkaOffset::Beginning => w.low,
        KafkaOffset::End => w.high,
        KafkaOffset::At(n) => *n,
        KafkaOffset::Time(_) => for_time.unwrap_or(w.high),
    }
}

/// An offset the task can't load from without skipping data (or loading from nowhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfRange {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub watermarks: Watermarks,
}

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let OutOfRange {
            topic,
            partition: p,
            offset,
            watermarks: Watermarks { low, high },
        } = self;
        if offset < low {
            write!(
                f,
                "topic {topic} partition {p}: offset {offset} is no longer in Kafka (it holds \
                 {low}..{high}): messages {offset}..{} were removed (retention or DeleteRecords) \
                 before they loaded. Nothing was skipped. To load what is left, set the \
                 partition's start to {low} (spec.kafka.partitions: [{p}] with \
                 spec.kafka.offsets: [\"{low}\"], or OFFSET_BEGINNING) and resume",
                low - 1
            )
        } else {
            write!(
                f,
                "topic {topic} partition {p}: offset {offset} is past the end of the partition \
                 ({low}..{high}; was the topic recreated?). Nothing was loaded from it. Set the \
                 partition's start (spec.kafka.partitions: [{p}] with spec.kafka.offsets: \
                 [\"{low}\"] or OFFSET_END) and resume"
            )
        }
    }
}

/// Checks that loading can start at `offset`: Kafka must still hold it (or it is the end).
pub fn check_in_range(
    topic: &str,
    partition: i32,
    offset: i64,
    w: Watermarks,
) -> Result<(), OutOfRange> {
    if offset < w.low || offset > w.high {
        Err(OutOfRange {
            topic: topic.to_string(),
            partition,
            offset,
            watermarks: w,
        })
    } else {
        Ok(())
    }
}

/// What a message's offset says about the messages before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Continuity {
    /// The next offset expected.
    InOrder,
    /// Below the expected offset: a message already loaded (prefetched before a re-assign).
    Behind,
    /// Past the expected offset: to be checked against the log start, since compaction and
    /// transaction markers leave holes too.
    Ahead,
}

pub fn continuity(expected: i64, got: i64) -> Continuity {
    match got.cmp(&expected) {
        std::cmp::Ordering::Equal => Continuity::InOrder,
        std::cmp::Ordering::Less => Continuity::Behind,
        std::cmp::Ordering::Greater => Continuity::Ahead,
    }
}

/// A hole between the expected offset and a later message is explained while the expected
/// offset is still at or above the log start (compacted records, transaction markers); below it,
/// messages were deleted before they loaded.
pub fn check_hole(
    topic: &str,
    partition: i32,
    expected: i64,
    w: Watermarks,
) -> Result<(), OutOfRange> {
    if expected < w.low {
        Err(OutOfRange {
            topic: topic.to_string(),
            partition,
            offset: expected,
            watermarks: w,
        })
    } else {
        Ok(())
    }
}

/// Client properties the task sets itself after the job's: what exactly-once needs.
pub fn enforced_consumer_properties(group_id: &str) -> Vec<(&'static str, String)> {
    let [group, auto_commit, offset_store, offset_reset] =
        routine_load_api::job::ENFORCED_CONSUMER_PROPERTIES;
    vec![
        (group, group_id.to_string()),
        (auto_commit, "false".into()),
        (offset_store, "false".into()),
        // Never move silently: an offset out of range is an error the task reports, with the
        // range, and the job pauses (librdkafka's default `latest` jumps to the end).
        (offset_reset, "error".into()),
    ]
}

/// The consumer's client properties: the task's defaults, then the job's `kafka.properties`
/// and the credentials Secret, then what exactly-once needs (which a job can't change).
/// librdkafka settings the worker changes from librdkafka's defaults (a job's
/// `kafka.properties` may override them):
/// - `queued.max.messages.kbytes`: the prefetch queue is memory outside the load budget, so it
///   stays modest (librdkafka's default is 64 MiB per consumer);
/// - `fetch.queue.backoff.ms`: librdkafka pauses fetching this long (default 1 s) whenever its
///   queue is full; a task drains the queue in far less, and then sat idle (measured with
///   `make bench`: CSV end to end 181k -> 402k rows/s).
pub const CONSUMER_DEFAULTS: [(&str, &str); 2] = [
    ("queued.max.messages.kbytes", "16384"),
    ("fetch.queue.backoff.ms", "10"),
];

pub fn consumer_properties(
    kafka: &KafkaSource,
    credentials: &BTreeMap<String, String>,
    group_id: &str,
) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    out.insert("bootstrap.servers".into(), kafka.broker_list.clone());
    out.insert("enable.partition.eof".into(), "false".into());
    for (k, v) in CONSUMER_DEFAULTS {
        out.insert(k.into(), v.into());
    }
    for (k, v) in kafka.properties.iter().chain(credentials) {
        out.insert(k.clone(), v.clone());
    }
    for (k, v) in enforced_consumer_properties(group_id) {
        out.insert(k.to_string(), v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kafka(yaml: &str) -> KafkaSource {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn rec(next: Option<i64>, start: Option<&str>) -> PartitionRecord {
        PartitionRecord {
            next,
            start: start.map(start_fingerprint),
        }
    }

    #[test]
    fn configured_start_per_partition() {
        let k = kafka(
            "{brokerList: b, topic: t, partitions: [0, 2], offsets: ['5', OFFSET_BEGINNING], \
             defaultOffset: '2026-11-20 10:00:00'}",
        );
        let time = KafkaOffset::try_from("2026-11-20 10:00:00".to_string()).unwrap();
        let cases = [
            (0, KafkaOffset::At(5), true),
            (2, KafkaOffset::Beginning, true),
            (1, time.clone(), false),
        ];
        for (p, offset, explicit) in cases {
            assert_eq!(
                configured_start(&k, p),
                ConfiguredStart { offset, explicit },
                "partition {p}"
            );
        }
        let none = kafka("{brokerList: b, topic: t}");
        assert_eq!(configured_start(&none, 3).offset, KafkaOffset::End);
    }

    #[test]
    fn start_decisions() {
        let explicit = |o: &str| ConfiguredStart {
            offset: KafkaOffset::try_from(o.to_string()).unwrap(),
            explicit: true,
        };
        let default = |o: &str| ConfiguredStart {
            explicit: false,
            ..explicit(o)
        };
        let cases = [
            (
                "fresh OFFSET_END is pinned",
                rec(None, None),
                default("OFFSET_END"),
                StartDecision::Pin(KafkaOffset::End),
            ),
            (
                "fresh explicit offset is pinned",
                rec(None, None),
                explicit("42"),
                StartDecision::Pin(KafkaOffset::At(42)),
            ),
            (
                "restart resumes from the table",
                rec(Some(60), Some("OFFSET_END")),
                default("OFFSET_END"),
                StartDecision::Resume(60),
            ),
            (
                "same explicit entry resumes",
                rec(Some(60), Some("42")),
                explicit("42"),
                StartDecision::Resume(60),
            ),
            (
                "edited explicit entry moves",
                rec(Some(60), Some("42")),
                explicit("100"),
                StartDecision::Move {
                    from: 60,
                    to: KafkaOffset::At(100),
                },
            ),
            (
                "edited to OFFSET_BEGINNING moves",
                rec(Some(60), Some("42")),
                explicit("OFFSET_BEGINNING"),
                StartDecision::Move {
                    from: 60,
                    to: KafkaOffset::Beginning,
                },
            ),
            (
                "an edited defaultOffset does not move a started partition",
                rec(Some(60), Some("OFFSET_END")),
                default("OFFSET_BEGINNING"),
                StartDecision::Resume(60),
            ),
            (
                "an offset from before fingerprints is adopted",
                rec(Some(60), None),
                explicit("100"),
                StartDecision::Resume(60),
            ),
        ];
        for (name, record, configured, want) in cases {
            assert_eq!(decide_start(&record, &configured), want, "{name}");
        }
    }

    #[test]
    fn resolving_and_range_checks() {
        let w = Watermarks {
            low: 100,
            high: 160,
        };
        let time = KafkaOffset::try_from("2026-11-20 10:00:00".to_string()).unwrap();
        assert_eq!(resolve(&KafkaOffset::Beginning, w, None), 100);
        assert_eq!(resolve(&KafkaOffset::End, w, None), 160);
        assert_eq!(resolve(&KafkaOffset::At(7), w, None), 7);
        assert_eq!(resolve(&time, w, Some(120)), 120);
        assert_eq!(
            resolve(&time, w, None),
            160,
            "no message after the time: the end"
        );

        let cases = [
            (99, false),
            (100, true),
            (130, true),
            (160, true),
            (161, false),
        ];
        for (offset, ok) in cases {
            assert_eq!(
                check_in_range("t", 0, offset, w).is_ok(),
                ok,
                "offset {offset}"
            );
        }
        let below = check_in_range("t", 0, 50, w).unwrap_err().to_string();
        assert!(
            below.contains("offset 50 is no longer in Kafka (it holds 100..160)"),
            "{below}"
        );
        assert!(below.contains("messages 50..99 were removed"), "{below}");
        assert!(below.contains("spec.kafka.offsets: [\"100\"]"), "{below}");
        let above = check_in_range("t", 3, 500, w).unwrap_err().to_string();
        assert!(
            above.contains("partition 3: offset 500 is past the end"),
            "{above}"
        );
    }

    #[test]
    fn holes_are_checked_against_the_log_start() {
        assert_eq!(continuity(10, 10), Continuity::InOrder);
        assert_eq!(continuity(10, 9), Continuity::Behind);
        assert_eq!(continuity(10, 12), Continuity::Ahead);
        let w = Watermarks { low: 5, high: 20 };
        assert!(check_hole("t", 0, 10, w).is_ok(), "compaction or markers");
        let w = Watermarks { low: 11, high: 20 };
        assert!(check_hole("t", 0, 10, w).is_err(), "deleted before loading");
    }

    #[test]
    fn exactly_once_properties_win_over_the_job() {
        let k = kafka(
            "{brokerList: 'b:9092', topic: t, properties: {auto.offset.reset: earliest, \
             enable.auto.commit: 'true', client.id: mine, fetch.queue.backoff.ms: '50'}}",
        );
        let creds = BTreeMap::from([("sasl.password".to_string(), "pw".to_string())]);
        let p = consumer_properties(&k, &creds, "routine-load-uid");
        let get = |k: &str| p.get(k).map(String::as_str);
        assert_eq!(get("auto.offset.reset"), Some("error"));
        assert_eq!(get("enable.auto.commit"), Some("false"));
        assert_eq!(get("group.id"), Some("routine-load-uid"));
        assert_eq!(get("client.id"), Some("mine"));
        assert_eq!(get("fetch.queue.backoff.ms"), Some("50"));
        assert_eq!(get("sasl.password"), Some("pw"));
        assert_eq!(get("bootstrap.servers"), Some("b:9092"));
    }
}
