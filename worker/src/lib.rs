//! The routine-load worker (StarRocks BE): runs the load tasks the operator assigns to it.

pub mod engine;
