//! The worker binary refuses to start without its identity, with a clear message. (Having an
//! integration test here also makes `cargo test --workspace` build the binary the e2e tests run.)

use std::process::Command;

#[test]
fn worker_binary_requires_pod_name() {
    let out = Command::new(env!("CARGO_BIN_EXE_routine-load-worker"))
        .env_remove("POD_NAME")
        .output()
        .expect("run the worker binary");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("POD_NAME must be set"), "{stderr}");
}
