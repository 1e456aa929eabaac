//! Prometheus metrics of the operator, served on `/metrics`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};
use routine_load_api::job::JobState;

/// All operator metrics, registered in one registry.
pub struct Metrics {
    pub registry: Registry,
    /// `routine_load_operator_reconciles_total{controller}`
    pub reconciles: IntCounterVec,
    /// `routine_load_operator_reconcile_errors_total{controller,error}`
    pub reconcile_errors: IntCounterVec,
    /// `routine_load_operator_reconcile_duration_seconds{controller}`
    pub reconcile_duration: HistogramVec,
    /// `routine_load_operator_jobs{state}`: jobs by status state.
    pub jobs: IntGaugeVec,
    /// `routine_load_operator_scheduling_decisions_total{decision}`: tasks created, moved,
    /// re-split and removed.
    pub scheduling_decisions: IntCounterVec,
    job_states: Mutex<BTreeMap<String, JobState>>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(
                "routine_load_operator_reconciles_total",
                "Reconciles run, by controller.",
            ),
            &["controller"],
        )
        .expect("valid metric");
        let reconcile_errors = IntCounterVec::new(
            Opts::new(
                "routine_load_operator_reconcile_errors_total",
                "Reconciles that failed, by controller and failing step.",
            ),
            &["controller", "error"],
        )
        .expect("valid metric");
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new(
                "routine_load_operator_reconcile_duration_seconds",
                "Time spent in one reconcile, by controller.",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["controller"],
        )
        .expect("valid metric");
        let jobs = IntGaugeVec::new(
            Opts::new("routine_load_operator_jobs", "Routine load jobs by state."),
            &["state"],
        )
        .expect("valid metric");
        let scheduling_decisions = IntCounterVec::new(
            Opts::new(
                "routine_load_operator_scheduling_decisions_total",
                "Task scheduling decisions: created, moved, resplit, removed.",
            ),
            &["decision"],
        )
        .expect("valid metric");
        for c in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(reconcile_errors.clone()),
            Box::new(reconcile_duration.clone()),
            Box::new(jobs.clone()),
            Box::new(scheduling_decisions.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        for s in ALL_STATES {
            jobs.with_label_values(&[s.as_str()]).set(0);
        }
        Metrics {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            jobs,
            scheduling_decisions,
            job_states: Mutex::new(BTreeMap::new()),
        }
    }

    /// Record a job's state (`None`: the job is gone) and refresh the jobs-by-state gauge.
    pub fn set_job_state(&self, uid: &str, state: Option<JobState>) {
        let mut states = self.job_states.lock().unwrap_or_else(|e| e.into_inner());
        match state {
            Some(s) => states.insert(uid.to_string(), s),
            None => states.remove(uid),
        };
        for s in ALL_STATES {
            let n = states.values().filter(|v| **v == s).count();
            self.jobs
                .with_label_values(&[s.as_str()])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Forget jobs that no longer exist (deleted jobs are never reconciled again).
    pub fn retain_jobs(&self, uids: &std::collections::HashSet<String>) {
        let states: Vec<(String, JobState)> = {
            let mut states = self.job_states.lock().unwrap_or_else(|e| e.into_inner());
            states.retain(|uid, _| uids.contains(uid));
            states.iter().map(|(u, s)| (u.clone(), *s)).collect()
        };
        if let Some((uid, state)) = states.first() {
            self.set_job_state(uid, Some(*state));
        } else {
            for s in ALL_STATES {
                self.jobs.with_label_values(&[s.as_str()]).set(0);
            }
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding to a Vec cannot fail");
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

const ALL_STATES: [JobState; 5] = [
    JobState::NeedSchedule,
    JobState::Running,
    JobState::Paused,
    JobState::Stopped,
    JobState::Cancelled,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_by_state_counts_each_job_once() {
        let m = Metrics::new();
        m.set_job_state("a", Some(JobState::Running));
        m.set_job_state("b", Some(JobState::Running));
        m.set_job_state("a", Some(JobState::Paused));
        let text = m.render();
        assert!(
            text.contains("routine_load_operator_jobs{state=\"RUNNING\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("routine_load_operator_jobs{state=\"PAUSED\"} 1"),
            "{text}"
        );
        m.set_job_state("b", None);
        assert!(
            m.render()
                .contains("routine_load_operator_jobs{state=\"RUNNING\"} 0")
        );
    }
}
