//! `kubectl routineload offsets JOB [PARTITION=OFFSET ...] [--apply]`: where each partition of
//! a job stands, what moving partitions to other offsets would skip or load again, and the
//! `spec.kafka` edit that does it (StarRocks `ALTER ROUTINE LOAD ... FROM KAFKA
//! ("kafka_partitions" = ..., "kafka_offsets" = ...)`). Pure functions; `main.rs` reads the job
//! and applies the edit.

use std::collections::BTreeMap;

use routine_load_api::RoutineLoadJob;
use routine_load_api::job::{KafkaOffset, KafkaSource};

/// One `PARTITION=OFFSET` argument.
pub fn parse_change(arg: &str) -> Result<(i32, KafkaOffset), String> {
    let (p, o) = arg.split_once('=').ok_or_else(|| {
        format!("'{arg}': expected PARTITION=OFFSET, e.g. 0=100, 1=OFFSET_BEGINNING or '2=2026-11-20 10:00:00'")
    })?;
    let partition: i32 = p
        .trim()
        .parse()
        .ok()
        .filter(|p| *p >= 0)
        .ok_or_else(|| format!("'{arg}': '{p}' is not a partition number"))?;
    let offset =
        KafkaOffset::try_from(o.trim().to_string()).map_err(|e| format!("'{arg}': {e}"))?;
    Ok((partition, offset))
}

/// Where a partition stands, from the job's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub partition: i32,
    /// The next offset to load (`status.progress`).
    pub next: Option<i64>,
    /// The end of the partition when the worker last measured it (progress + lag).
    pub end: Option<i64>,
}

/// The partitions of a job with where they stand.
pub fn standings(job: &RoutineLoadJob) -> Vec<Standing> {
    let status = job.status.clone().unwrap_or_default();
    let mut partitions: Vec<i32> = if job.spec.kafka.partitions.is_empty() {
        status.current_kafka_partitions.clone()
    } else {
        job.spec.kafka.partitions.clone()
    };
    for p in status.progress.keys().filter_map(|k| k.parse().ok()) {
        if !partitions.contains(&p) {
            partitions.push(p);
        }
    }
    partitions.sort_unstable();
    partitions
        .into_iter()
        .map(|p| {
            let next = status.progress.get(&p.to_string()).copied();
            let lag = status.lag.get(&p.to_string()).copied();
            Standing {
                partition: p,
                next,
                end: next.zip(lag).map(|(n, l)| n + l),
            }
        })
        .collect()
}

/// What moving one partition to `to` does, in words.
pub fn preview(s: &Standing, to: &KafkaOffset) -> String {
    let p = s.partition;
    let Some(next) = s.next else {
        return format!(
            "partition {p}: nothing loaded yet; it will start at {}",
            String::from(to.clone())
        );
    };
    let span = |from: i64, to: i64| -> String {
        let n = to - from;
        let word = if n == 1 { "message" } else { "messages" };
        format!("offsets {from}..{} ({n} {word})", to - 1)
    };
    let target = match to {
        KafkaOffset::At(n) => *n,
        KafkaOffset::End => match s.end {
            Some(e) => e,
            None => {
                return format!(
                    "partition {p}: {next} -> the end of the partition: skips everything from {next} on that is not loaded yet (the end is not known here)"
                );
            }
        },
        KafkaOffset::Beginning => {
            return format!(
                "partition {p}: {next} -> the oldest offset Kafka still holds: loads again what is retained before {next}"
            );
        }
        KafkaOffset::Time(t) => {
            return format!(
                "partition {p}: {next} -> the first message at or after {t} (resolved by the worker): skips or loads again what lies between"
            );
        }
    };
    let end_note = match s.end {
        Some(e) if target > e => {
            format!(" (past the end {e}: the job will pause, OffsetOutOfRange)")
        }
        _ => String::new(),
    };
    match target.cmp(&next) {
        std::cmp::Ordering::Greater => {
            format!(
                "partition {p}: {next} -> {target}: skips {}{end_note}",
                span(next, target)
            )
        }
        std::cmp::Ordering::Less => format!(
            "partition {p}: {next} -> {target}: loads {} again (they are in the table once already)",
            span(target, next)
        ),
        std::cmp::Ordering::Equal => format!("partition {p}: stays at {next}"),
    }
}

/// A `spec.kafka` edit: the partitions and their start entries, and what a user must read.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaEdit {
    pub partitions: Vec<i32>,
    pub offsets: Vec<KafkaOffset>,
    pub warnings: Vec<String>,
}

/// The `spec.kafka.partitions` and `offsets` after the changes: every partition the job loads
/// keeps an entry (the one it has, or its default start, which moves nothing), the changed
/// ones get theirs.
pub fn edited_kafka(
    kafka: &KafkaSource,
    loaded: &[i32],
    changes: &[(i32, KafkaOffset)],
) -> Result<KafkaEdit, String> {
    let mut warnings = Vec::new();
    let default = kafka.default_offset.clone().unwrap_or(KafkaOffset::End);
    let mut entries: BTreeMap<i32, KafkaOffset> = if kafka.partitions.is_empty() {
        if loaded.is_empty() {
            return Err(
                "the job lists no partitions and its status names none yet: wait until it has run"
                    .into(),
            );
        }
        warnings.push(format!(
            "the job loads all partitions of its topic; this lists them ({}) in spec.kafka.partitions, so partitions added to the topic later are no longer picked up",
            join(loaded)
        ));
        loaded.iter().map(|p| (*p, default.clone())).collect()
    } else {
        kafka
            .partitions
            .iter()
            .enumerate()
            .map(|(i, p)| (*p, kafka.offsets.get(i).cloned().unwrap_or(default.clone())))
            .collect()
    };
    for (p, o) in changes {
        match entries.get_mut(p) {
            Some(e) => *e = o.clone(),
            None => {
                let have: Vec<i32> = entries.keys().copied().collect();
                return Err(format!(
                    "partition {p} is not loaded by this job (it loads {})",
                    join(&have)
                ));
            }
        }
    }
    let (partitions, offsets) = entries.into_iter().unzip();
    Ok(KafkaEdit {
        partitions,
        offsets,
        warnings,
    })
}

fn join(ps: &[i32]) -> String {
    ps.iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset(s: &str) -> KafkaOffset {
        KafkaOffset::try_from(s.to_string()).unwrap()
    }

    #[test]
    fn changes_parse() {
        let cases = [
            ("0=100", Ok((0, KafkaOffset::At(100)))),
            ("3=OFFSET_BEGINNING", Ok((3, KafkaOffset::Beginning))),
            (
                "1=2026-11-20 10:00:00",
                Ok((1, offset("2026-11-20 10:00:00"))),
            ),
            ("0", Err("expected PARTITION=OFFSET")),
            ("x=1", Err("'x' is not a partition number")),
            ("0=later", Err("invalid Kafka offset")),
        ];
        for (arg, want) in cases {
            match (parse_change(arg), want) {
                (Ok(got), Ok(w)) => assert_eq!(got, w, "{arg}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{arg}: {e}"),
                (got, w) => panic!("{arg}: {got:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn previews_say_what_is_skipped_or_loaded_again() {
        let at = |next, end| Standing {
            partition: 0,
            next,
            end,
        };
        let cases = [
            (
                at(Some(50), Some(160)),
                "100",
                "partition 0: 50 -> 100: skips offsets 50..99 (50 messages)",
            ),
            (
                at(Some(50), Some(160)),
                "10",
                "partition 0: 50 -> 10: loads offsets 10..49 (40 messages) again",
            ),
            (
                at(Some(50), Some(160)),
                "OFFSET_END",
                "partition 0: 50 -> 160: skips offsets 50..159 (110 messages)",
            ),
            (
                at(Some(50), Some(160)),
                "200",
                "past the end 160: the job will pause, OffsetOutOfRange",
            ),
            (at(Some(50), None), "50", "partition 0: stays at 50"),
            (
                at(None, None),
                "OFFSET_BEGINNING",
                "nothing loaded yet; it will start at OFFSET_BEGINNING",
            ),
            (
                at(Some(50), Some(160)),
                "OFFSET_BEGINNING",
                "the oldest offset Kafka still holds",
            ),
            (
                at(Some(50), Some(51)),
                "51",
                "skips offsets 50..50 (1 message)",
            ),
        ];
        for (standing, to, want) in cases {
            let got = preview(&standing, &offset(to));
            assert!(got.contains(want), "{to}: {got}");
        }
    }

    #[test]
    fn edits_keep_every_partition_and_change_only_the_named_ones() {
        let kafka = |yaml: &str| -> KafkaSource { serde_yaml::from_str(yaml).unwrap() };
        type Case = (&'static str, KafkaSource, Vec<i32>, Vec<(i32, KafkaOffset)>);
        /// The partitions, the offsets' text and the number of warnings; or an error's text.
        type Want = Result<(Vec<i32>, Vec<&'static str>, usize), &'static str>;
        let cases: Vec<(Case, Want)> = vec![
            (
                (
                    "listed partitions",
                    kafka(
                        "{brokerList: b, topic: t, partitions: [0, 1], offsets: ['5', OFFSET_END]}",
                    ),
                    vec![0, 1],
                    vec![(1, KafkaOffset::At(100))],
                ),
                Ok((vec![0, 1], vec!["5", "100"], 0)),
            ),
            (
                (
                    "listed without offsets: the default start",
                    kafka(
                        "{brokerList: b, topic: t, partitions: [0, 1], defaultOffset: OFFSET_BEGINNING}",
                    ),
                    vec![0, 1],
                    vec![(0, KafkaOffset::At(7))],
                ),
                Ok((vec![0, 1], vec!["7", "OFFSET_BEGINNING"], 0)),
            ),
            (
                (
                    "all partitions: listed, with a warning",
                    kafka("{brokerList: b, topic: t}"),
                    vec![0, 1, 2],
                    vec![(2, KafkaOffset::At(9))],
                ),
                Ok((vec![0, 1, 2], vec!["OFFSET_END", "OFFSET_END", "9"], 1)),
            ),
            (
                (
                    "unknown partition",
                    kafka("{brokerList: b, topic: t, partitions: [0]}"),
                    vec![0],
                    vec![(4, KafkaOffset::At(1))],
                ),
                Err("partition 4 is not loaded by this job (it loads 0)"),
            ),
            (
                (
                    "nothing known yet",
                    kafka("{brokerList: b, topic: t}"),
                    vec![],
                    vec![(0, KafkaOffset::At(1))],
                ),
                Err("wait until it has run"),
            ),
        ];
        for ((name, k, loaded, changes), want) in cases {
            match (edited_kafka(&k, &loaded, &changes), want) {
                (Ok(edit), Ok((wps, wos, nwarn))) => {
                    assert_eq!(edit.partitions, wps, "{name}");
                    let os: Vec<String> = edit.offsets.into_iter().map(String::from).collect();
                    assert_eq!(os, wos, "{name}");
                    assert_eq!(edit.warnings.len(), nwarn, "{name}: {:?}", edit.warnings);
                }
                (Err(e), Err(w)) => assert!(e.contains(w), "{name}: {e}"),
                (got, w) => panic!("{name}: {got:?}, want {w:?}"),
            }
        }
    }
}
