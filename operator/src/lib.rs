//! The routine-load operator (StarRocks FE): plans jobs into tasks and places tasks on workers.

pub mod caches;
pub mod error_window;
pub mod job_controller;
pub mod job_plan;
pub mod job_scheduler;
pub mod job_state;
pub mod kafka_metadata;
pub mod label_sweeper;
pub mod leader;
pub mod metrics;
pub mod table_controller;
pub mod task_scheduler;
pub mod task_sweeper;
pub mod unreported;
