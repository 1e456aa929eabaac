//! The exactly-once checker and the result file.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{
    COUNTER_BOUND, FaultRecord, JobRun, Rig, SETTLE_BOUND, Sample, is_filtered, progress_of,
    state_of,
};

pub struct Report {
    pub markdown: String,
    pub failures: Vec<String>,
}

/// What was produced for a job, and what should therefore be in its table.
#[derive(Default)]
struct Expected {
    produced: usize,
    ids: BTreeSet<i64>,
    /// Good rows whose delivery failed: each may be in the table once, or not at all.
    maybe_ids: BTreeSet<i64>,
    bad: i64,
    maybe_bad: i64,
    unselected: i64,
    maybe_unselected: i64,
    deleted: usize,
    next: BTreeMap<i32, i64>,
}

fn expected(job: &JobRun) -> Expected {
    let log = job.topic.log.lock().unwrap();
    let mut e = Expected {
        produced: log.msgs.len(),
        next: log.next.clone(),
        ..Expected::default()
    };
    for m in &log.msgs {
        let deleted = m.offset.is_some_and(|o| {
            job.deleted
                .iter()
                .any(|(p, from, to)| *p == m.partition && (*from..*to).contains(&o))
        });
        if deleted {
            e.deleted += 1;
            continue;
        }
        let sure = m.offset.is_some();
        if m.bad {
            if sure { e.bad += 1 } else { e.maybe_bad += 1 }
        } else if job.def.filter && is_filtered(m.id) {
            if sure {
                e.unselected += 1
            } else {
                e.maybe_unselected += 1
            }
        } else if sure {
            e.ids.insert(m.id);
        } else {
            e.maybe_ids.insert(m.id);
        }
    }
    e
}

#[derive(Default)]
struct JobResult {
    rows: usize,
    duplicates: Vec<i64>,
    gaps: Vec<i64>,
    extra: Vec<i64>,
    wrong_values: usize,
    txn_mismatch: Vec<String>,
    statistic: Value,
    state: String,
    settled_after: Option<f64>,
    counters_ok: bool,
}

fn sample_ids(ids: &[i64]) -> String {
    let shown: Vec<String> = ids.iter().take(20).map(ToString::to_string).collect();
    if ids.len() > 20 {
        format!("{} ... ({} in all)", shown.join(","), ids.len())
    } else {
        shown.join(",")
    }
}

fn in_range(have: i64, lo: i64, slack: i64) -> bool {
    have >= lo && have <= lo + slack
}

fn counters_match(stat: &Value, rows: usize, e: &Expected) -> bool {
    let get = |k: &str| stat[k].as_i64().unwrap_or(-1);
    let loaded = get("loadedRows");
    let error = get("errorRows");
    let unselected = get("unselectedRows");
    let total = get("totalRows");
    loaded == rows as i64
        && in_range(error, e.bad, e.maybe_bad)
        && in_range(unselected, e.unselected, e.maybe_unselected)
        && total == loaded + error + unselected
}

/// The checkout's commit, and whether worker/, operator/ or api/ had local changes (or
/// `CHAOS_BUILD_NOTE`, saying where copied binaries came from).
fn git_head() -> String {
    let repo = routine_load_e2e::repo_root();
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    if let Ok(note) = std::env::var("CHAOS_BUILD_NOTE") {
        return note;
    }
    let head = run(&["rev-parse", "--short", "HEAD"]);
    let dirty = run(&["status", "--porcelain", "--", "worker", "operator", "api"]);
    if dirty.is_empty() {
        head
    } else {
        format!("{head} (local changes in worker/operator/api at the end of the run)")
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn recovery(f: &FaultRecord, samples: &[Sample]) -> Option<f64> {
    samples
        .iter()
        .filter(|s| s.t >= f.t_heal)
        .find(|s| {
            f.marks.iter().all(|(job, marks)| {
                let have = s.progress.get(job);
                marks
                    .iter()
                    .all(|(p, off)| have.and_then(|h| h.get(p)).is_some_and(|o| o >= off))
            })
        })
        .map(|s| s.t - f.t_inject)
}

pub async fn check(rig: &mut Rig, last_fault: f64, setup_failure: Option<String>) -> Report {
    let mut failures: Vec<String> = setup_failure.into_iter().collect();
    for f in &rig.faults {
        if let Some(why) = &f.failure {
            failures.push(format!("fault {} ({} {}): {why}", f.n, f.kind, f.target));
        }
    }
    let mut results: Vec<JobResult> = rig.jobs.iter().map(|_| JobResult::default()).collect();
    let exp: Vec<Expected> = rig.jobs.iter().map(expected).collect();

    // 1. Every job RUNNING with its progress at the end of every partition, within the bound.
    let t = Instant::now();
    let mut pending: BTreeSet<usize> = (0..rig.jobs.len()).collect();
    let mut last_status: BTreeMap<usize, Value> = BTreeMap::new();
    while !pending.is_empty() && t.elapsed() < SETTLE_BOUND {
        for j in pending.clone() {
            let Ok(v) = rig.inst.get(crate::JOB, rig.jobs[j].def.name).await else {
                continue;
            };
            let progress = progress_of(&v);
            let caught_up = exp[j]
                .next
                .iter()
                .all(|(p, n)| progress.get(p).is_some_and(|o| o >= n));
            if state_of(&v) == "RUNNING" && caught_up {
                results[j].settled_after = Some(rig.now() - last_fault);
                pending.remove(&j);
            }
            last_status.insert(j, v["status"].clone());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for j in &pending {
        failures.push(format!(
            "job {} stuck: not RUNNING at the end of its partitions {:?} {:?} after the last \
             fault; status: {}",
            rig.jobs[*j].def.name,
            exp[*j].next,
            SETTLE_BOUND,
            last_status.get(j).cloned().unwrap_or(Value::Null)
        ));
    }

    // 2. The tables, read with the independent reader.
    for (j, job) in rig.jobs.iter().enumerate() {
        let e = &exp[j];
        let r = &mut results[j];
        let tb = rig.inst.tb.clone();
        let location = job.location.clone();
        let snap = match tokio::task::spawn_blocking(move || tb.read_delta(&location, None)).await {
            Ok(Ok(s)) => s,
            other => {
                failures.push(format!(
                    "job {}: reading {} failed: {other:?}",
                    job.def.name, job.location
                ));
                continue;
            }
        };
        r.rows = snap.rows.len();
        let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
        for row in &snap.rows {
            let Some(id) = row.get("id").and_then(Value::as_i64) else {
                r.wrong_values += 1;
                continue;
            };
            *seen.entry(id).or_default() += 1;
            let v_ok = row.get("v").and_then(Value::as_str) == Some(format!("v{id}").as_str());
            let w_ok = !job.def.derived || row.get("w").and_then(Value::as_i64) == Some(id * 2);
            if !v_ok || !w_ok {
                r.wrong_values += 1;
            }
        }
        r.duplicates = seen
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(id, _)| *id)
            .collect();
        r.gaps = e
            .ids
            .iter()
            .filter(|id| !seen.contains_key(id))
            .copied()
            .collect();
        r.extra = seen
            .keys()
            .filter(|id| !e.ids.contains(id) && !e.maybe_ids.contains(id))
            .copied()
            .collect();
        for (p, next) in &e.next {
            let app = format!("routine-load-{}-{p}", job.uid);
            let have = snap.txns.get(&app).copied();
            let ok = have == Some(*next) || (!e.maybe_ids.is_empty() && have >= Some(*next));
            if !ok {
                r.txn_mismatch.push(format!(
                    "partition {p}: table records {have:?}, produced {next}"
                ));
            }
        }
        let name = job.def.name;
        if !r.duplicates.is_empty() {
            failures.push(format!(
                "job {name}: {} duplicate ids: {}",
                r.duplicates.len(),
                sample_ids(&r.duplicates)
            ));
        }
        if !r.gaps.is_empty() {
            failures.push(format!(
                "job {name}: {} gaps (produced, not loaded): {}",
                r.gaps.len(),
                sample_ids(&r.gaps)
            ));
        }
        if !r.extra.is_empty() {
            failures.push(format!(
                "job {name}: {} ids loaded that should not be (bad, filtered or removed): {}",
                r.extra.len(),
                sample_ids(&r.extra)
            ));
        }
        if r.wrong_values > 0 {
            failures.push(format!(
                "job {name}: {} rows with wrong values",
                r.wrong_values
            ));
        }
        if !r.txn_mismatch.is_empty() {
            failures.push(format!(
                "job {name}: committed offsets differ from the ends: {}",
                r.txn_mismatch.join("; ")
            ));
        }
    }

    // 3. status.statistic equals what the reader counts (counters may trail commits a little).
    let t = Instant::now();
    loop {
        let mut all = true;
        for (j, job) in rig.jobs.iter().enumerate() {
            if results[j].counters_ok {
                continue;
            }
            if let Ok(v) = rig.inst.get(crate::JOB, job.def.name).await {
                results[j].statistic = v["status"]["statistic"].clone();
                results[j].state = state_of(&v);
                results[j].counters_ok =
                    counters_match(&results[j].statistic, results[j].rows, &exp[j]);
            }
            all &= results[j].counters_ok;
        }
        if all || t.elapsed() > COUNTER_BOUND {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    for (j, job) in rig.jobs.iter().enumerate() {
        if !results[j].counters_ok {
            let e = &exp[j];
            failures.push(format!(
                "job {}: status.statistic {} != the reader's loadedRows {} errorRows {}{} \
                 unselectedRows {}{} (after {COUNTER_BOUND:?})",
                job.def.name,
                results[j].statistic,
                results[j].rows,
                e.bad,
                if e.maybe_bad > 0 {
                    format!("+{}?", e.maybe_bad)
                } else {
                    String::new()
                },
                e.unselected,
                if e.maybe_unselected > 0 {
                    format!("+{}?", e.maybe_unselected)
                } else {
                    String::new()
                },
            ));
        }
    }

    // 4. No process panicked.
    for (label, log) in &rig.logs {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("panicked")) {
            failures.push(format!("{label} panicked ({}): {line}", log.display()));
        }
    }

    // 5. Recovery times.
    let samples = rig.samples.lock().unwrap().clone();
    for f in rig.faults.iter_mut() {
        f.recovered = recovery(f, &samples);
    }

    let markdown = render(rig, &exp, &results, &failures);
    Report { markdown, failures }
}

fn render(rig: &Rig, exp: &[Expected], results: &[JobResult], failures: &[String]) -> String {
    let mut md = String::new();
    let cfg = &rig.cfg;
    let verdict = if failures.is_empty() { "PASS" } else { "FAIL" };
    let _ = writeln!(md, "# Chaos campaign, seed {}: {verdict}\n", cfg.seed);
    let _ = writeln!(
        md,
        "`SEED={} FAULTS={} DURATION={}` (`make chaos` / `cargo test --workspace --test chaos`) \
         at commit {}; worker `{}`, operator `{}`; run time {:.0} s (setup, {} faults, settle \
         and checks).\n",
        cfg.seed,
        cfg.faults,
        cfg.duration.as_secs(),
        git_head(),
        cfg.worker_bin.display(),
        cfg.operator_bin.display(),
        rig.now(),
        rig.faults.len()
    );
    let _ = writeln!(
        md,
        "Six jobs at once, each on its own topic (one on a private broker reached through a \
         cuttable proxy), 2 operator replicas (leader election), 4 \
         workers to start with (3..5 after scaling), each worker reaching the API server \
         through its own cuttable proxy and the S3 table through one; producers at a steady \
         {} msg/s in all; 1% bad rows (an id that is not a number); the WHERE job drops ids \
         ending in 3. Expected rows are computed from what the producers saw delivered, minus \
         bad rows, filtered rows and the offsets a DeleteRecords fault removed (as the job's \
         OffsetOutOfRange pause reason states them). Recovery = from the fault's injection \
         until every job's `status.progress` covers what was produced up to the fault's \
         heal (1 s samples).\n",
        rig.jobs.iter().map(|j| j.topic.rate).sum::<u32>()
    );
    let _ = writeln!(md, "## Verdict: {verdict}\n");
    if failures.is_empty() {
        let _ = writeln!(
            md,
            "0 duplicates, 0 gaps, 0 extra rows, committed offsets at the end of every \
             partition, status.statistic equal to the reader's counts, every job RUNNING after \
             the last fault, no process panicked.\n"
        );
    } else {
        for f in failures {
            let _ = writeln!(md, "- {f}");
        }
        md.push('\n');
    }
    let _ = writeln!(md, "## Jobs\n");
    let _ = writeln!(
        md,
        "| job | format | partitions | tasks | produced | expected rows | loaded rows | dup | gaps | extra | errorRows (want) | unselectedRows (want) | removed | totalRows | state | caught up after last fault |"
    );
    let _ = writeln!(
        md,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for (j, job) in rig.jobs.iter().enumerate() {
        let (e, r) = (&exp[j], &results[j]);
        let stat = |k: &str| {
            r.statistic[k]
                .as_i64()
                .map_or("?".to_string(), |v| v.to_string())
        };
        let mut kind = format!("{:?}", job.def.format).to_uppercase();
        if job.def.filter {
            kind += ", WHERE";
        }
        if job.def.derived {
            kind += ", derived w = id * 2";
        }
        if job.def.s3 {
            kind += ", s3://";
        }
        if job.def.routed {
            kind += ", proxied broker";
        }
        let _ = writeln!(
            md,
            "| {} | {kind} | {} -> {} | {} | {} | {}{} | {} | {} | {} | {} | {} ({}) | {} ({}) | {} | {} | {} | {} |",
            job.def.name,
            job.def.partitions,
            job.topic
                .partitions
                .load(std::sync::atomic::Ordering::SeqCst),
            job.def.concurrency,
            e.produced,
            e.ids.len(),
            if e.maybe_ids.is_empty() {
                String::new()
            } else {
                format!(" (+{} uncertain)", e.maybe_ids.len())
            },
            r.rows,
            r.duplicates.len(),
            r.gaps.len(),
            r.extra.len(),
            stat("errorRows"),
            e.bad,
            stat("unselectedRows"),
            e.unselected,
            e.deleted,
            stat("totalRows"),
            r.state,
            r.settled_after
                .map_or("never".to_string(), |s| format!("{s:.0} s")),
        );
    }
    let _ = writeln!(md, "\n## Recovery per fault kind (s, fault -> caught up)\n");
    let _ = writeln!(md, "| kind | faults | p50 | p99 | max | not recovered |");
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    let mut by_kind: BTreeMap<&str, (Vec<f64>, usize)> = BTreeMap::new();
    for f in &rig.faults {
        let e = by_kind.entry(f.kind).or_default();
        match f.recovered {
            Some(r) => e.0.push(r),
            None => e.1 += 1,
        }
    }
    let mut all: Vec<f64> = vec![];
    for (kind, (mut v, missing)) in by_kind {
        v.sort_by(f64::total_cmp);
        all.extend(&v);
        let _ = writeln!(
            md,
            "| {kind} | {} | {:.1} | {:.1} | {:.1} | {missing} |",
            v.len() + missing,
            percentile(&v, 0.5),
            percentile(&v, 0.99),
            v.last().copied().unwrap_or(f64::NAN)
        );
    }
    all.sort_by(f64::total_cmp);
    let _ = writeln!(
        md,
        "| **all** | {} | {:.1} | {:.1} | {:.1} | |",
        rig.faults.len(),
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        all.last().copied().unwrap_or(f64::NAN)
    );
    let _ = writeln!(md, "\n## Fault schedule\n");
    let _ = writeln!(
        md,
        "| # | at (s) | kind | target | held (s) | recovered (s) | what happened |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for f in &rig.faults {
        let _ = writeln!(
            md,
            "| {} | {:.1} | {} | {} | {:.1} | {} | {}{} |",
            f.n,
            f.t_inject,
            f.kind,
            f.target,
            f.t_heal - f.t_inject,
            f.recovered.map_or("-".to_string(), |r| format!("{r:.1}")),
            f.detail.replace('|', "/"),
            f.failure
                .as_deref()
                .map(|x| format!(" **FAILURE: {}**", x.replace('|', "/")))
                .unwrap_or_default()
        );
    }
    md
}
