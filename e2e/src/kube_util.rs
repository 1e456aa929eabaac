//! Kubernetes clients for the testbed: the admin's, and a ServiceAccount's from a TokenRequest.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::{Testbed, install_crypto_provider, unique_name};

/// Builds a client from a kubeconfig file, the way a process started with `KUBECONFIG` would.
pub async fn client_from_kubeconfig(path: &Path) -> Result<Client> {
    install_crypto_provider();
    let kubeconfig = Kubeconfig::read_from(path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("kubeconfig {}", path.display()))?;
    Client::try_from(config).context("building kube client")
}

/// A ServiceAccount's identity: a bound token from the TokenRequest API, a kubeconfig file that
/// uses it, and a client built from that file.
#[derive(Clone)]
pub struct ServiceAccountCredentials {
    pub namespace: String,
    pub name: String,
    pub token: String,
    pub kubeconfig: PathBuf,
    pub client: Client,
}

impl std::fmt::Debug for ServiceAccountCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountCredentials")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("kubeconfig", &self.kubeconfig)
            .finish_non_exhaustive()
    }
}

impl ServiceAccountCredentials {
    /// `system:serviceaccount:<namespace>:<name>`, the user name RBAC sees.
    pub fn username(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }
}

impl Testbed {
    /// The admin client (client certificate in group system:masters).
    pub async fn client(&self) -> Result<Client> {
        client_from_kubeconfig(&self.kubeconfig()).await
    }

    /// The API server URL and its CA certificate (PEM, base64) from the admin kubeconfig.
    pub fn cluster_endpoint(&self) -> Result<(String, String)> {
        let kc = Kubeconfig::read_from(self.kubeconfig())?;
        let cluster = kc
            .clusters
            .first()
            .and_then(|c| c.cluster.as_ref())
            .context("admin kubeconfig has no cluster")?;
        let server = cluster
            .server
            .clone()
            .context("admin kubeconfig has no server")?;
        let ca = cluster
            .certificate_authority_data
            .clone()
            .context("admin kubeconfig has no certificate-authority-data")?;
        Ok((server, ca))
    }

    /// Creates the namespace if it is missing.
    pub async fn ensure_namespace(&self, client: &Client, name: &str) -> Result<()> {
        let api: Api<Namespace> = Api::all(client.clone());
        if api.get_opt(name).await?.is_none() {
            let ns = Namespace {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    ..Default::default()
                },
                ..Default::default()
            };
            match api.create(&PostParams::default(), &ns).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e).context(format!("creating namespace {name}")),
            }
        }
        Ok(())
    }

    /// Creates the ServiceAccount if it is missing (RBAC for it is the caller's: the chart's
    /// manifests, or a test's Role/RoleBinding).
    pub async fn ensure_service_account(
        &self,
        client: &Client,
        namespace: &str,
        name: &str,
    ) -> Result<()> {
        self.ensure_namespace(client, namespace).await?;
        let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
        if api.get_opt(name).await?.is_none() {
            let sa = ServiceAccount {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    ..Default::default()
                },
                ..Default::default()
            };
            match api.create(&PostParams::default(), &sa).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => {
                    return Err(e).context(format!("creating serviceaccount {namespace}/{name}"));
                }
            }
        }
        Ok(())
    }

    /// A Stream Load client's token: the ServiceAccount `name` in `ns` (created), with
    /// `may_load` a Role and RoleBinding granting `create` on `loads` there (what the workers
    /// check), and its token for an hour.
    pub async fn loader_token(
        &self,
        client: &Client,
        ns: &str,
        name: &str,
        may_load: bool,
    ) -> Result<String> {
        use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
        self.ensure_service_account(client, ns, name).await?;
        if may_load {
            let pp = PostParams::default();
            let role: Role = serde_json::from_value(serde_json::json!({
                "metadata": {"name": name},
                "rules": [{"apiGroups": ["routineload.io"], "resources": ["loads"], "verbs": ["create"]}]
            }))?;
            Api::<Role>::namespaced(client.clone(), ns)
                .create(&pp, &role)
                .await
                .context("creating the loader's Role")?;
            let binding: RoleBinding = serde_json::from_value(serde_json::json!({
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]
            }))?;
            Api::<RoleBinding>::namespaced(client.clone(), ns)
                .create(&pp, &binding)
                .await
                .context("creating the loader's RoleBinding")?;
        }
        self.request_token(ns, name, Duration::from_secs(3600))
            .await
    }

    /// A token for an existing ServiceAccount from the TokenRequest API (what
    /// `kubectl create token` does), valid for `ttl` (the API server's minimum is 10 minutes).
    pub async fn request_token(
        &self,
        namespace: &str,
        name: &str,
        ttl: Duration,
    ) -> Result<String> {
        let admin = self.client().await?;
        let api: Api<ServiceAccount> = Api::namespaced(admin, namespace);
        let req = TokenRequest {
            metadata: ObjectMeta::default(),
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(ttl.as_secs().max(600) as i64),
                ..Default::default()
            }),
            status: None,
        };
        let resp = api
            .create_token_request(name, &PostParams::default(), &req)
            .await
            .with_context(|| format!("TokenRequest for serviceaccount {namespace}/{name}"))?;
        let token = resp.status.and_then(|s| s.token).unwrap_or_default();
        if token.is_empty() {
            bail!("TokenRequest for {namespace}/{name} returned no token");
        }
        Ok(token)
    }

    /// Writes a kubeconfig that authenticates with `token`; returns its path (in the testbed's
    /// state dir, so `testbed.sh down` removes it).
    pub fn write_token_kubeconfig(
        &self,
        label: &str,
        namespace: &str,
        token: &str,
    ) -> Result<PathBuf> {
        let (server, ca) = self.cluster_endpoint()?;
        let dir = PathBuf::from(self.var("ROUTINE_LOAD_TESTBED")?).join("credentials");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}.kubeconfig", unique_name(label)));
        let yaml = serde_yaml::to_string(&serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "testbed", "cluster": {"server": server, "certificate-authority-data": ca}}],
            "users": [{"name": label, "user": {"token": token}}],
            "contexts": [{"name": label, "context": {"cluster": "testbed", "user": label, "namespace": namespace}}],
            "current-context": label,
        }))?;
        std::fs::write(&path, yaml)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(path)
    }

    /// Credentials of an existing ServiceAccount: a TokenRequest token (1 hour), a kubeconfig
    /// file with it and a client built from that file.
    pub async fn service_account(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<ServiceAccountCredentials> {
        let token = self
            .request_token(namespace, name, Duration::from_secs(3600))
            .await?;
        let kubeconfig =
            self.write_token_kubeconfig(&format!("sa-{namespace}-{name}"), namespace, &token)?;
        let client = client_from_kubeconfig(&kubeconfig).await?;
        Ok(ServiceAccountCredentials {
            namespace: namespace.into(),
            name: name.into(),
            token,
            kubeconfig,
            client,
        })
    }
}

/// The repository's generated CRD YAML directory (`crds/`; `ROUTINE_LOAD_CRDS_DIR` overrides).
pub fn crds_dir() -> PathBuf {
    match std::env::var_os("ROUTINE_LOAD_CRDS_DIR") {
        Some(d) => PathBuf::from(d),
        None => crate::repo_root().join("crds"),
    }
}

/// Every CustomResourceDefinition document in `crds/`, parsed.
pub fn load_crds() -> Result<Vec<serde_json::Value>> {
    use serde::Deserialize;
    let dir = crds_dir();
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    entries.sort();
    for path in entries {
        let text = std::fs::read_to_string(&path)?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = serde_json::Value::deserialize(doc)
                .with_context(|| format!("parsing {}", path.display()))?;
            if v.get("kind").and_then(|k| k.as_str()) == Some("CustomResourceDefinition") {
                out.push(v);
            }
        }
    }
    Ok(out)
}

impl Testbed {
    /// `kubectl apply --server-side` of a file or directory, then waits until every CRD in it
    /// is Established. Server-side apply: big CRD schemas overflow the client-side
    /// last-applied annotation.
    pub fn apply_server_side(&self, path: &Path) -> Result<String> {
        Testbed::run(
            self.kubectl()
                .args([
                    "apply",
                    "--server-side",
                    "--force-conflicts",
                    "--field-manager",
                    "routine-load-e2e",
                    "-f",
                ])
                .arg(path),
        )
    }

    /// Applies `crds/` and waits until its CRDs are Established.
    pub fn apply_crds(&self) -> Result<()> {
        let crds = load_crds()?;
        if crds.is_empty() {
            bail!(
                "no CustomResourceDefinition in {} (run the CRD generator)",
                crds_dir().display()
            );
        }
        self.apply_server_side(&crds_dir())?;
        for crd in &crds {
            let name = crd["metadata"]["name"]
                .as_str()
                .context("CRD without a name")?;
            Testbed::run(
                self.kubectl()
                    .args(["wait", "--for", "condition=Established", "--timeout", "60s"])
                    .arg(format!("crd/{name}")),
            )?;
        }
        Ok(())
    }
}
