//! The routine-load worker (StarRocks BE): runs the load tasks the operator assigns to it.

pub mod aggregate_model;
pub mod delta_sink;
pub mod engine;
pub mod error_window;
pub mod heartbeat;
pub mod key_model;
pub mod load_memory;
pub mod metrics;
pub mod retry;
pub mod schema_registry;
pub mod start_offsets;
pub mod stream_load;
pub mod task_release;
pub mod task_runner;
pub mod tls;

/// Keeps the memory of freed batches in the heap for the next batch instead of returning it to
/// the system: glibc serves allocations above its mmap threshold (dynamic, at most 32 MiB) with
/// fresh mappings and trims the heap top past its trim threshold, so every batch's column
/// buffers were faulted in page by page again (page faults were 10-14% of a task's CPU). With
/// the thresholds at 64 MiB and 256 MiB, `make bench` measured CSV end to end 1.16-1.17M rows/s
/// against 1.09-1.10M, and 50 columns 3.2 CPU-s per million rows against 3.4-3.6. What the
/// worker holds stays bounded by its batches (two per task) and the load memory limit. Called at
/// the worker's start, before any task runs; without glibc it does nothing.
pub fn keep_batch_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before any task runs.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

/// Threads that decode one batch of a task: `ROUTINE_LOAD_DECODE_THREADS` when set (at least
/// 1), else the CPUs this process may use (its cgroup's CPU limit included), at most 4.
pub fn decode_threads() -> usize {
    decode_threads_from(
        std::env::var("ROUTINE_LOAD_DECODE_THREADS").ok().as_deref(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    )
}

fn decode_threads_from(setting: Option<&str>, cpus: usize) -> usize {
    match setting.and_then(|v| v.trim().parse::<usize>().ok()) {
        Some(n) => n.max(1),
        None => cpus.clamp(1, 4),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn decode_threads_follow_the_setting_else_the_cpus_up_to_four() {
        for (setting, cpus, threads) in [
            (None, 1, 1),
            (None, 2, 2),
            (None, 16, 4),
            (Some("3"), 2, 3),
            (Some("0"), 2, 1),
            (Some(" 1 "), 8, 1),
            (Some("many"), 2, 2),
        ] {
            assert_eq!(
                super::decode_threads_from(setting, cpus),
                threads,
                "{setting:?} {cpus}"
            );
        }
    }
}
