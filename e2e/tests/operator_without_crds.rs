//! The operator started against a cluster without the CRDs says how to install them and exits
//! (no crash loop of panics). The cluster is real: a second kube-apiserver on the testbed's etcd
//! and certificates, under its own etcd prefix, so it has no CRDs while the testbed keeps its own.

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use routine_load_e2e::process::workspace_binary;
use routine_load_e2e::{testbed_or_skip, unique_name};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[test]
fn operator_without_crds_says_how_to_install_them() {
    let Some(tb) = testbed_or_skip("operator without CRDs") else {
        return;
    };
    let state = std::path::PathBuf::from(tb.var("ROUTINE_LOAD_TESTBED").expect("state dir"));
    let pki = state.join("pki");
    let port = free_port();
    let etcd = tb
        .var("ETCD_SERVERS")
        .map(str::to_string)
        // Testbeds started before ETCD_SERVERS was recorded use the default port.
        .unwrap_or_else(|_| "http://127.0.0.1:12379".into());
    let cert_dir = std::env::temp_dir().join(unique_name("bare-apiserver"));
    let mut cmd = Command::new(tb.bin_dir().join("kube-apiserver"));
    cmd.args(["--etcd-servers", &etcd])
        .args(["--etcd-prefix", &format!("/{}", unique_name("bare"))])
        .args([
            "--bind-address",
            "127.0.0.1",
            "--advertise-address",
            "127.0.0.1",
        ])
        .args(["--secure-port", &port.to_string()])
        .arg("--cert-dir")
        .arg(&cert_dir)
        .arg("--tls-cert-file")
        .arg(pki.join("apiserver.crt"))
        .arg("--tls-private-key-file")
        .arg(pki.join("apiserver.key"))
        .arg("--client-ca-file")
        .arg(pki.join("ca.crt"))
        .args(["--authorization-mode", "RBAC", "--anonymous-auth=false"])
        .args([
            "--service-account-issuer",
            "https://kubernetes.default.svc.cluster.local",
        ])
        .arg("--service-account-key-file")
        .arg(pki.join("sa.pub"))
        .arg("--service-account-signing-key-file")
        .arg(pki.join("sa.key"))
        .args(["--service-cluster-ip-range", "10.97.0.0/16"])
        .args(["--enable-priority-and-fairness=false", "--profiling=false"]);
    let mut apiserver = tb
        .spawn("bare-apiserver", cmd)
        .expect("start kube-apiserver");

    // The testbed's admin kubeconfig, pointed at the bare API server.
    let kubeconfig = std::env::temp_dir().join(format!("{}.kubeconfig", unique_name("bare")));
    let text = std::fs::read_to_string(tb.kubeconfig()).expect("admin kubeconfig");
    let server = tb.var("KUBE_SERVER").expect("KUBE_SERVER");
    std::fs::write(
        &kubeconfig,
        text.replace(server, &format!("https://127.0.0.1:{port}")),
    )
    .expect("write kubeconfig");
    let t0 = Instant::now();
    loop {
        let ready = Command::new(tb.bin_dir().join("kubectl"))
            .env("KUBECONFIG", &kubeconfig)
            .args(["get", "--raw", "/readyz"])
            .output()
            .is_ok_and(|o| o.stdout == b"ok");
        if ready {
            break;
        }
        assert!(
            apiserver.is_running() && t0.elapsed() < Duration::from_secs(90),
            "the bare kube-apiserver did not become ready:\n{}",
            apiserver.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let out = Command::new(workspace_binary("routine-load-operator").expect("operator binary"))
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("POD_NAMESPACE", "default")
        .env("ROUTINE_LOAD_HTTP_ADDR", "127.0.0.1:0")
        .output()
        .expect("run the operator");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the Table CRD is not installed")
            && stderr.contains("kubectl apply --server-side -f crds/"),
        "the message says what is missing and how to install it: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let _ = apiserver.stop(Duration::from_secs(10));
    let _ = std::fs::remove_file(&kubeconfig);
    let _ = std::fs::remove_dir_all(&cert_dir);
}
