//! A Confluent-compatible schema registry client: the writer schemas of `format: avro` jobs,
//! by id (`GET /schemas/ids/{id}`), with HTTP basic credentials from the job's Secret.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use routine_load_api::job::SchemaRegistry;

use crate::engine::{RegisteredSchema, SchemaSource};

/// The Avro library the engine decodes with, for tools and tests that write Avro messages.
pub use apache_avro as avro;

/// How long one registry request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Secret keys of the registry's basic credentials.
pub const USERNAME_KEY: &str = "username";
pub const PASSWORD_KEY: &str = "password";

pub struct RegistryClient {
    base: String,
    credentials: Option<(String, String)>,
    http: reqwest::Client,
    /// The runtime the requests run on: the engine asks from the task loop's thread (inside
    /// `block_in_place`) or from a decoding thread outside the runtime.
    runtime: tokio::runtime::Handle,
}

impl RegistryClient {
    /// A client for `registry`, its credentials read from its Secret in `namespace`.
    pub async fn connect(
        client: &kube::Client,
        namespace: &str,
        registry: &SchemaRegistry,
    ) -> Result<Self> {
        let credentials = match &registry.credentials_secret {
            None => None,
            Some(s) => {
                let keys = crate::task_runner::secret_map(client, namespace, &s.name).await?;
                match (keys.get(USERNAME_KEY), keys.get(PASSWORD_KEY)) {
                    (Some(u), Some(p)) => Some((u.clone(), p.clone())),
                    _ => bail!(
                        "Secret {namespace}/{} (schemaRegistry.credentialsSecret) needs the keys \
                         {USERNAME_KEY} and {PASSWORD_KEY}",
                        s.name
                    ),
                }
            }
        };
        Self::new(&registry.url, credentials)
    }

    /// A client for the registry at `url`; call it within a Tokio runtime, which its requests
    /// then run on.
    pub fn new(url: &str, credentials: Option<(String, String)>) -> Result<Self> {
        let runtime = tokio::runtime::Handle::try_current()
            .context("the schema registry client needs a Tokio runtime")?;
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("creating the schema registry HTTP client")?;
        Ok(Self {
            base: url.trim().trim_end_matches('/').to_string(),
            credentials,
            http,
            runtime,
        })
    }

    /// `GET /schemas/ids/{id}`.
    pub async fn fetch(&self, id: u32) -> Result<RegisteredSchema, String> {
        let url = format!("{}/schemas/ids/{id}", self.base);
        let mut request = self
            .http
            .get(&url)
            .header("Accept", "application/vnd.schemaregistry.v1+json");
        if let Some((user, password)) = &self.credentials {
            request = request.basic_auth(user, Some(password));
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| format!("GET {url}: reading the answer: {e}"))?;
        schema_answer(status.as_u16(), &body).map_err(|e| format!("GET {url}: {e}"))
    }
}

/// What a `GET /schemas/ids/{id}` answer says. Only the registry's "schema not found" (error
/// code 40403) is a missing schema; any other failure (a wrong URL, credentials, an outage) is
/// an error, so messages wait for the registry instead of becoming error rows.
pub fn schema_answer(status: u16, body: &str) -> Result<RegisteredSchema, String> {
    let json: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let error_code = json
        .as_ref()
        .and_then(|j| j.get("error_code"))
        .and_then(serde_json::Value::as_i64);
    match status {
        200 => {
            let json = json.ok_or_else(|| format!("200 with a body that is not JSON: {body}"))?;
            let schema = json
                .get("schema")
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| format!("200 without a schema string: {body}"))?;
            match json.get("schemaType").and_then(serde_json::Value::as_str) {
                None | Some("AVRO") => Ok(RegisteredSchema::Avro(schema.to_string())),
                Some(other) => Ok(RegisteredSchema::NotAvro(other.to_string())),
            }
        }
        404 if error_code == Some(40403) => Ok(RegisteredSchema::NotFound),
        401 | 403 => Err(format!(
            "{status}: the registry refused the credentials (schemaRegistry.credentialsSecret): {body}"
        )),
        _ => Err(format!("{status}: {body}")),
    }
}

impl SchemaSource for RegistryClient {
    /// Asks the registry from the engine's thread, blocking it: a runtime thread leaves the
    /// runtime for the call (`block_in_place`, as the task loop's decode already does).
    fn schema(&self, id: u32) -> Result<RegisteredSchema, String> {
        tokio::task::block_in_place(|| self.runtime.block_on(self.fetch(id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        let avro = r#"{"type":"record","name":"r","fields":[]}"#;
        let cases: Vec<(u16, String, Result<RegisteredSchema, &str>)> = vec![
            (
                200,
                serde_json::json!({ "schema": avro }).to_string(),
                Ok(RegisteredSchema::Avro(avro.to_string())),
            ),
            (
                200,
                serde_json::json!({"schema": avro, "schemaType": "AVRO", "references": []})
                    .to_string(),
                Ok(RegisteredSchema::Avro(avro.to_string())),
            ),
            (
                200,
                serde_json::json!({"schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF"})
                    .to_string(),
                Ok(RegisteredSchema::NotAvro("PROTOBUF".to_string())),
            ),
            (
                404,
                r#"{"error_code":40403,"message":"Schema not found"}"#.to_string(),
                Ok(RegisteredSchema::NotFound),
            ),
            // A 404 that is not the registry's "schema not found": a wrong base URL.
            (404, "<html>Not Found</html>".to_string(), Err("404")),
            (
                401,
                r#"{"error_code":401}"#.to_string(),
                Err("refused the credentials"),
            ),
            (500, "boom".to_string(), Err("500: boom")),
            (200, "not json".to_string(), Err("not JSON")),
            (200, "{}".to_string(), Err("without a schema")),
        ];
        for (status, body, want) in cases {
            let got = schema_answer(status, &body);
            match want {
                Ok(w) => assert_eq!(got, Ok(w), "{status} {body}"),
                Err(w) => {
                    let e = got.expect_err(&format!("{status} {body}"));
                    assert!(e.contains(w), "{status} {body}: {e}");
                }
            }
        }
    }
}
