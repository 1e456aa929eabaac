//! The routine-load worker (StarRocks BE): runs the load tasks the operator assigns to it.

pub mod delta_sink;
pub mod engine;
pub mod error_window;
pub mod heartbeat;
pub mod load_memory;
pub mod metrics;
pub mod retry;
pub mod start_offsets;
pub mod stream_load;
pub mod task_release;
pub mod task_runner;

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
