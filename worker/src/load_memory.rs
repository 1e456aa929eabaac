//! The worker-wide load memory limit (StarRocks BE `load_process_max_memory_limit_bytes` and
//! `load_process_max_memory_limit_percent`): every task reserves memory for the messages of the
//! batch it is collecting, and a task that cannot reserve more ends its batch and commits early
//! instead of growing. A Stream Load reserves what it holds of its body: a CSV body loaded in
//! chunks writes its rows early when the worker is full, a body held whole (JSON, or any body
//! into a keyed table, until its MERGE) fails the load instead of growing. The limit is the
//! smaller of a byte count and a percentage of the pod's memory, so many tasks with big backlogs
//! and many loads on one worker stay within the pod.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// StarRocks' default for `load_process_max_memory_limit_bytes` (100 GB).
pub const DEFAULT_LIMIT_BYTES: u64 = 107_374_182_400;
/// StarRocks' default for `load_process_max_memory_limit_percent`.
pub const DEFAULT_LIMIT_PERCENT: u64 = 30;
/// Bytes reserved per message besides its payload: the message's own bookkeeping.
const PER_MESSAGE_OVERHEAD: u64 = 48;
/// A batch holds each payload twice at its peak: the raw message, and its decoded Arrow values
/// (plus the Parquet encoder's buffers, which are smaller than either).
const PAYLOAD_FACTOR: u64 = 2;

/// The memory a batch reserves for one message of `payload_len` bytes.
pub fn message_cost(payload_len: usize) -> u64 {
    PAYLOAD_FACTOR * payload_len as u64 + PER_MESSAGE_OVERHEAD
}

/// The memory a Stream Load reserves for `held` bytes of its body: the bytes and their decoded
/// Arrow values, as for a batch's messages.
pub fn body_cost(held: usize) -> u64 {
    PAYLOAD_FACTOR * held as u64
}

/// Pure: the limit from the two settings and the pod's memory: the smaller wins; without a known
/// pod memory only the byte limit applies.
pub fn resolve_limit(limit_bytes: u64, limit_percent: u64, pod_memory: Option<u64>) -> u64 {
    match pod_memory {
        Some(m) => limit_bytes.min(m / 100 * limit_percent.min(100)),
        None => limit_bytes,
    }
    .max(1)
}

/// The limit with StarRocks' defaults for this pod (what a worker gets without settings).
pub fn default_limit() -> u64 {
    resolve_limit(DEFAULT_LIMIT_BYTES, DEFAULT_LIMIT_PERCENT, pod_memory())
}

/// The pod's memory: `ROUTINE_LOAD_POD_MEMORY_LIMIT_BYTES` (the chart sets it from the container's
/// `limits.memory`), else the cgroup's limit (v2 `memory.max`, v1 `memory.limit_in_bytes`), else
/// the machine's memory.
pub fn pod_memory() -> Option<u64> {
    let parse = |s: &str| s.trim().parse::<u64>().ok().filter(|v| *v > 0);
    if let Some(v) = std::env::var("ROUTINE_LOAD_POD_MEMORY_LIMIT_BYTES")
        .ok()
        .and_then(|v| parse(&v))
    {
        return Some(v);
    }
    for f in [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ] {
        // "max" (v2) or a huge number (v1) mean no limit.
        if let Some(v) = std::fs::read_to_string(f).ok().and_then(|s| parse(&s))
            && v < (1 << 60)
        {
            return Some(v);
        }
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim();
    parse(kb).map(|k| k * 1024)
}

/// The shared budget of one worker.
#[derive(Debug)]
pub struct LoadMemory {
    limit: u64,
    used: AtomicU64,
}

impl LoadMemory {
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(LoadMemory {
            limit,
            used: AtomicU64::new(0),
        })
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes reserved by all batches being collected now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// An empty reservation that grows with `Reservation::grow`.
    pub fn reservation(self: &Arc<Self>) -> Reservation {
        Reservation {
            memory: self.clone(),
            bytes: 0,
        }
    }
}

/// Memory held by one batch; released when dropped (after the commit, or when the batch is
/// abandoned).
#[derive(Debug)]
pub struct Reservation {
    memory: Arc<LoadMemory>,
    bytes: u64,
}

impl Reservation {
    /// Adds `n` bytes. Returns false when that took the worker past its limit: the caller keeps
    /// what it already holds (the message is in hand) but must end its batch now. An empty
    /// reservation always succeeds, so every task makes progress whatever the others hold.
    pub fn grow(&mut self, n: u64) -> bool {
        let before = self.memory.used.fetch_add(n, Ordering::Relaxed);
        self.bytes += n;
        self.bytes == n || before + n <= self.memory.limit
    }

    /// Holds `n` bytes instead of what it holds now. Shrinking always succeeds; growing answers
    /// as [`Reservation::grow`] (the bytes are held either way).
    pub fn resize(&mut self, n: u64) -> bool {
        if n <= self.bytes {
            self.memory
                .used
                .fetch_sub(self.bytes - n, Ordering::Relaxed);
            self.bytes = n;
            return true;
        }
        self.grow(n - self.bytes)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.memory.used.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smaller_limit_wins() {
        let gib = 1u64 << 30;
        // (bytes, percent, pod memory, expected)
        let cases = [
            (DEFAULT_LIMIT_BYTES, 30, Some(4 * gib), 4 * gib / 100 * 30),
            (gib / 2, 30, Some(4 * gib), gib / 2),
            (DEFAULT_LIMIT_BYTES, 30, None, DEFAULT_LIMIT_BYTES),
            (DEFAULT_LIMIT_BYTES, 250, Some(gib), gib / 100 * 100),
            (DEFAULT_LIMIT_BYTES, 0, Some(gib), 1),
        ];
        for (bytes, pct, pod, want) in cases {
            assert_eq!(
                resolve_limit(bytes, pct, pod),
                want,
                "{bytes} {pct}% of {pod:?}"
            );
        }
    }

    #[test]
    fn batches_end_when_the_worker_is_full_and_release_on_drop() {
        let m = LoadMemory::new(1_000);
        let mut a = m.reservation();
        assert!(a.grow(600));
        let mut b = m.reservation();
        // B's first message always fits (progress), even past the limit.
        assert!(b.grow(600), "first reservation of a batch is granted");
        assert_eq!(m.used(), 1_200);
        // Any further growth past the limit tells the batch to commit.
        assert!(!a.grow(10));
        assert!(!b.grow(10));
        drop(a);
        assert_eq!(m.used(), 610);
        let mut c = m.reservation();
        assert!(c.grow(300), "fits again after A committed");
        assert!(!c.grow(200), "1110 > 1000");
        drop(b);
        drop(c);
        assert_eq!(m.used(), 0);
    }

    #[test]
    fn a_reservation_resizes_both_ways() {
        let m = LoadMemory::new(1_000);
        let mut other = m.reservation();
        assert!(other.grow(500));
        let mut load = m.reservation();
        // (new size, granted, worker total after)
        let steps = [
            (800, true, 1_300), // a reservation's first bytes are always granted
            (900, false, 1_400),
            (400, true, 900),
            (500, true, 1_000),
            (0, true, 500),
            (600, true, 1_100), // empty again: granted
        ];
        for (n, granted, total) in steps {
            assert_eq!(load.resize(n), granted, "resize to {n}");
            assert_eq!((load.bytes(), m.used()), (n, total), "after resize to {n}");
        }
        drop(load);
        assert_eq!(m.used(), 500);
    }

    #[test]
    fn message_cost_counts_payload_twice_plus_overhead() {
        assert_eq!(message_cost(0), PER_MESSAGE_OVERHEAD);
        assert_eq!(message_cost(150), 300 + PER_MESSAGE_OVERHEAD);
    }
}
