//! What this worker knows about its own heartbeat Lease. The operator takes a worker's tasks
//! away (and lets its deleted tasks go) once it has seen no renewal for the Lease's duration. A
//! worker that could not renew for a good part of that time (stopped, cut off from the API
//! server, starved) may already have lost its tasks without having seen it yet: before it
//! commits, it reads its task again. A batch committed by a task the operator already let go
//! would be in the table but in no counter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The Lease duration the worker announces.
pub const LEASE_DURATION: Duration = Duration::from_secs(20);
/// How often it renews.
pub const RENEW_PERIOD: Duration = Duration::from_secs(5);
/// A renewal older than this and the worker re-reads its task before a commit: half the Lease,
/// well before the operator could count the Lease as expired.
pub const TRUST: Duration = Duration::from_secs(10);

/// Renewals of this worker's Lease, shared by the renewal loop and the task loops.
#[derive(Debug)]
pub struct Heartbeat {
    origin: Instant,
    /// Milliseconds since `origin` of the last successful renewal.
    last_renewed_ms: AtomicU64,
    /// Times a renewal came more than `TRUST` after the previous one.
    lapses: AtomicU64,
}

/// A point in the heartbeat's history, taken when a batch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    lapses: u64,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self::new()
    }
}

impl Heartbeat {
    /// Counts as renewed now (the worker starts with a fresh Lease write right after).
    pub fn new() -> Self {
        Heartbeat {
            origin: Instant::now(),
            last_renewed_ms: AtomicU64::new(0),
            lapses: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// A renewal succeeded.
    pub fn renewed(&self) {
        let now = self.now_ms();
        let previous = self.last_renewed_ms.swap(now, Ordering::SeqCst);
        if now.saturating_sub(previous) > TRUST.as_millis() as u64 {
            self.lapses.fetch_add(1, Ordering::SeqCst);
        }
    }

    pub fn mark(&self) -> Mark {
        Mark {
            lapses: self.lapses.load(Ordering::SeqCst),
        }
    }

    /// Whether the Lease was fresh all the time since `mark`.
    pub fn held_since(&self, mark: Mark) -> bool {
        held(
            self.now_ms(),
            self.last_renewed_ms.load(Ordering::SeqCst),
            self.lapses.load(Ordering::SeqCst),
            mark.lapses,
            TRUST.as_millis() as u64,
        )
    }
}

/// Pure: the Lease was held since a mark if no renewal gap longer than `trust_ms` happened
/// since (`lapses` unchanged) and the last renewal is not older than that either.
pub fn held(now_ms: u64, last_ms: u64, lapses: u64, lapses_at_mark: u64, trust_ms: u64) -> bool {
    lapses == lapses_at_mark && now_ms.saturating_sub(last_ms) <= trust_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_is_held_only_without_a_gap_since_the_mark() {
        // (case, now, last renewal, lapses now, lapses at mark, held)
        let cases = [
            ("renewed 3 s ago", 60_000, 57_000, 0, 0, true),
            (
                "renewed exactly at the trust limit",
                60_000,
                50_000,
                0,
                0,
                true,
            ),
            (
                "no renewal for 11 s (stopped, cut off)",
                60_000,
                49_000,
                0,
                0,
                false,
            ),
            (
                "renewed just now after a gap since the mark",
                60_000,
                60_000,
                1,
                0,
                false,
            ),
            ("a gap before the mark only", 60_000, 59_000, 1, 1, true),
        ];
        for (case, now, last, lapses, at_mark, want) in cases {
            assert_eq!(held(now, last, lapses, at_mark, 10_000), want, "{case}");
        }
    }

    #[test]
    fn a_late_renewal_counts_as_a_lapse() {
        let mut h = Heartbeat::new();
        let m = h.mark();
        h.renewed();
        assert!(h.held_since(m));
        h.last_renewed_ms.store(0, Ordering::SeqCst);
        h.origin = Instant::now() - Duration::from_secs(30);
        h.renewed();
        assert!(!h.held_since(m), "a renewal 30 s after the previous one");
        assert!(h.held_since(h.mark()));
    }
}
