//! Backoff for failures that repeat, and the budget after which a task asks for its job to be
//! paused instead of retrying forever.

use std::time::Duration;

/// What failed, for counting repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The load engine refused a batch: the same messages fail the same way again.
    Engine,
    /// The table: a commit refused or lost (storage unreachable, a protocol error, a conflict
    /// that keeps coming back), or its offsets unreadable.
    Storage,
}

impl FailureKind {
    /// Failures of this kind in a row, with no commit between, before the job is paused. An
    /// engine error is deterministic; storage gets minutes of backoff to come back.
    pub fn budget(&self) -> u32 {
        match self {
            FailureKind::Engine => 3,
            FailureKind::Storage => 10,
        }
    }
}

/// The outcome of recording a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Retry after this long.
    RetryAfter(Duration),
    /// Out of budget: pause the job with this message.
    Pause(String),
}

/// Consecutive failures of one kind in one task loop. The messages of one outage differ in
/// their details (timings, the step that failed), so failures count by kind.
#[derive(Debug, Default)]
pub struct Failures {
    last: Option<FailureKind>,
    count: u32,
    /// Replaces the budget of storage failures (`ROUTINE_LOAD_RETRY_LIMIT`).
    limit: Option<u32>,
}

/// 1 s, 2 s, 4 s ... capped at 30 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(5)).min(Duration::from_secs(30))
}

impl Failures {
    /// `limit` replaces the budget of storage failures (at least 1).
    pub fn new(limit: Option<u32>) -> Self {
        Self {
            limit: limit.map(|l| l.max(1)),
            ..Self::default()
        }
    }

    fn budget(&self, kind: FailureKind) -> u32 {
        match (kind, self.limit) {
            (FailureKind::Storage, Some(l)) => l,
            _ => kind.budget(),
        }
    }

    /// Records a failure; `message` says what failed this time.
    pub fn record(&mut self, kind: FailureKind, message: &str) -> Verdict {
        self.count = if self.last == Some(kind) {
            self.count + 1
        } else {
            1
        };
        self.last = Some(kind);
        if self.count >= self.budget(kind) {
            Verdict::Pause(format!(
                "failed {} times in a row, the job is paused; last error: {message}",
                self.count
            ))
        } else {
            Verdict::RetryAfter(backoff(self.count))
        }
    }

    /// A batch committed: the next failure starts a new count.
    pub fn clear(&mut self) {
        self.last = None;
        self.count = 0;
    }

    pub fn count(&self) -> u32 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_in_a_row_pause_after_the_budget() {
        use FailureKind::*;
        let secs = |s| Verdict::RetryAfter(Duration::from_secs(s));
        // (kind, message, expected verdict: None = pause)
        let cases: Vec<(FailureKind, &str, Option<Verdict>)> = vec![
            (Engine, "bad", Some(secs(1))),
            (Engine, "bad", Some(secs(2))),
            (Engine, "bad", None),
            (Storage, "put failed in 102ms", Some(secs(1))),
            (Storage, "list failed in 97ms", Some(secs(2))),
            (Storage, "put failed in 3ms", Some(secs(4))),
            (Engine, "bad", Some(secs(1))),
        ];
        let mut f = Failures::default();
        for (i, (kind, msg, want)) in cases.into_iter().enumerate() {
            let got = f.record(kind, msg);
            match want {
                Some(w) => assert_eq!(got, w, "step {i}"),
                None => assert!(
                    matches!(&got, Verdict::Pause(m) if m.contains("3 times in a row") && m.ends_with("bad")),
                    "step {i}: {got:?}"
                ),
            }
        }
        f.clear();
        assert_eq!(
            f.record(Engine, "bad"),
            secs(1),
            "a commit resets the count"
        );

        let mut limited = Failures::new(Some(2));
        assert_eq!(limited.record(Storage, "s3 down"), secs(1));
        assert!(matches!(
            limited.record(Storage, "list failed"),
            Verdict::Pause(_)
        ));
    }

    #[test]
    fn backoff_is_capped() {
        let cases = [(1, 1), (2, 2), (3, 4), (6, 30), (7, 30), (100, 30)];
        for (attempt, s) in cases {
            assert_eq!(
                backoff(attempt),
                Duration::from_secs(s),
                "attempt {attempt}"
            );
        }
    }
}
