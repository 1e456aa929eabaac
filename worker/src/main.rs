//! Worker entry point. Task execution against Kafka and Delta is tracked in the worker issue; this
//! binary currently exposes the engine through the library only.

fn main() {
    eprintln!(
        "routine-load-worker: the task runner is not built yet; the load engine is in the library"
    );
    std::process::exit(2);
}
