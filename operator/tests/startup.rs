//! The operator binary refuses to start without a cluster and says why (no crash, no panic).
//! Also makes `cargo test --workspace` build the binary the e2e tests spawn.

use std::process::Command;

#[test]
fn without_a_cluster_it_exits_with_a_clear_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_routine-load-operator"))
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env("ROUTINE_LOAD_HTTP_ADDR", "127.0.0.1:0")
        .output()
        .expect("run the operator");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("connecting to Kubernetes"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
