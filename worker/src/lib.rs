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
