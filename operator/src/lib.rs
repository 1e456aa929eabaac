//! The routine-load operator (StarRocks FE): plans jobs into tasks and places tasks on workers.

pub mod job_scheduler;
pub mod task_scheduler;
