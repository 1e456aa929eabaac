//! The testbed's control plane: the real Kubernetes version on /version, RBAC, and
//! ServiceAccount tokens from the TokenRequest API used as a process's credentials.

use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, PostParams};
use routine_load_e2e::{Testbed, testbed_or_skip, unique_name};

#[tokio::test]
async fn apiserver_reports_the_real_kubernetes_version() {
    let Some(tb) = testbed_or_skip("apiserver /version") else {
        return;
    };
    let want = tb.var("K8S_VERSION").unwrap().to_string();
    let client = tb.client().await.expect("admin client");
    let info = client.apiserver_version().await.expect("/version");
    assert_eq!(info.git_version, want);
    let minor = want.trim_start_matches('v').split('.').nth(1).unwrap();
    assert_eq!(info.major, "1");
    assert_eq!(info.minor, minor);
    assert_eq!(info.git_tree_state, "clean");

    // The same through kubectl, server and client side.
    let raw = Testbed::run(tb.kubectl().args(["get", "--raw", "/version"]))
        .expect("kubectl get --raw /version");
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(v["gitVersion"], want.as_str());
    let kv = Testbed::run(tb.kubectl().args(["version", "-o", "json"])).expect("kubectl version");
    let kv: serde_json::Value = serde_json::from_str(&kv).unwrap();
    assert_eq!(kv["clientVersion"]["gitVersion"], want.as_str());
    assert_eq!(kv["serverVersion"]["gitVersion"], want.as_str());
}

#[test]
fn helm_reports_its_version() {
    let Some(tb) = testbed_or_skip("helm version") else {
        return;
    };
    let out = Testbed::run(tb.helm().args(["version", "--template", "{{.Version}}"]))
        .expect("helm version");
    let want = tb.var("HELM_VERSION").unwrap();
    assert_eq!(out.trim(), want);
}

/// `kubectl create token` and the TokenRequest API give a ServiceAccount a token; a client
/// built from a kubeconfig with that token is that ServiceAccount, and RBAC applies to it.
#[tokio::test]
async fn service_account_token_request_and_rbac() {
    let Some(tb) = testbed_or_skip("TokenRequest and RBAC") else {
        return;
    };
    let admin = tb.client().await.expect("admin client");
    let ns = unique_name("e2e-sa");
    tb.ensure_service_account(&admin, &ns, "routine-load-operator")
        .await
        .expect("serviceaccount");

    let jwt =
        Testbed::run(
            tb.kubectl()
                .args(["create", "token", "routine-load-operator", "-n", &ns]),
        )
        .expect("kubectl create token");
    assert_eq!(jwt.trim().split('.').count(), 3, "a JWT: {jwt}");

    let sa = tb
        .service_account(&ns, "routine-load-operator")
        .await
        .expect("TokenRequest");
    let review: SelfSubjectReview = Api::all(sa.client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .expect("SelfSubjectReview");
    let user = review.status.and_then(|s| s.user_info).expect("user info");
    assert_eq!(user.username.as_deref(), Some(sa.username().as_str()));
    assert!(
        user.groups
            .unwrap_or_default()
            .iter()
            .any(|g| g == "system:serviceaccounts")
    );

    // No Role yet: forbidden.
    let cms: Api<ConfigMap> = Api::namespaced(sa.client.clone(), &ns);
    match cms.list(&Default::default()).await {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => panic!("a ServiceAccount without a Role must get 403, got {other:?}"),
    }

    // Grant list on configmaps in its namespace: allowed.
    let role: Role = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "read-configmaps"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
    }))
    .unwrap();
    Api::<Role>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &role)
        .await
        .expect("role");
    let binding: RoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "read-configmaps"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-configmaps"},
        "subjects": [{"kind": "ServiceAccount", "name": "routine-load-operator", "namespace": ns}],
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("rolebinding");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match cms.list(&Default::default()).await {
            Ok(list) => {
                // kube-root-ca.crt is published into every namespace by the controller manager.
                assert!(
                    list.items
                        .iter()
                        .any(|c| c.metadata.name.as_deref() == Some("kube-root-ca.crt"))
                );
                break;
            }
            Err(e) if Instant::now() < deadline => {
                eprintln!("waiting for RBAC: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("still refused after the RoleBinding: {e}"),
        }
    }
    // Still nothing beyond the Role.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(sa.client.clone(), &ns);
    assert!(
        matches!(secrets.list(&Default::default()).await, Err(kube::Error::Api(s)) if s.code == 403)
    );

    // A local process started with the ServiceAccount's kubeconfig acts as the ServiceAccount.
    let kubectl = tb.bin_dir().join("kubectl");
    let mut p = tb
        .spawn_as(
            "kubectl-whoami",
            &sa,
            &kubectl,
            [
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username}",
            ],
            &Default::default(),
        )
        .expect("spawn");
    let st = p.wait_exit(Duration::from_secs(30)).expect("exit");
    assert!(st.success(), "kubectl auth whoami failed: {}", p.log());
    assert_eq!(p.log().trim(), sa.username());

    let _ = Testbed::run(
        tb.kubectl()
            .args(["delete", "namespace", &ns, "--wait=false"]),
    );
}
