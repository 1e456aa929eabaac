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
pub const USERNAME_KEY: &str = routine_load_api::job::SchemaRegistry::USERNAME_KEY;
pub const PASSWORD_KEY: &str = routine_load_api::job::SchemaRegistry::PASSWORD_KEY;

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

    /// `GET /schemas/ids/{id}`, then the schemas it references
    /// (`GET /subjects/{subject}/versions/{version}`, transitively).
    pub async fn fetch(&self, id: u32) -> Result<RegisteredSchema, String> {
        let Some(root) = self.get(&format!("/schemas/ids/{id}")).await? else {
            return Ok(RegisteredSchema::NotFound);
        };
        if let Some(kind) = root.other_type {
            return Ok(RegisteredSchema::NotAvro(kind));
        }
        let mut references = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut queue: std::collections::VecDeque<Reference> = root.references.into();
        while let Some(r) = queue.pop_front() {
            if !seen.insert(r.clone()) {
                continue;
            }
            if seen.len() > MAX_REFERENCES {
                return Err(format!(
                    "schema id {id} references more than {MAX_REFERENCES} schemas"
                ));
            }
            let path = format!("/subjects/{}/versions/{}", r.subject, r.version);
            match self.get(&path).await? {
                None => {
                    return Ok(RegisteredSchema::MissingReference(format!(
                        "subject {} version {}",
                        r.subject, r.version
                    )));
                }
                Some(s) => {
                    queue.extend(s.references);
                    references.push(s.schema);
                }
            }
        }
        // Found breadth first from the root: reversed, a schema's references come before it,
        // the order in which named types resolve.
        references.reverse();
        Ok(RegisteredSchema::Avro {
            schema: root.schema,
            references,
        })
    }

    /// One GET of the registry API; None when the registry says it has no such schema.
    async fn get(&self, path: &str) -> Result<Option<Registered>, String> {
        let url = format!("{}{path}", self.base);
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

/// Most schemas one schema may reference, transitively.
const MAX_REFERENCES: usize = 100;

/// A schema as the registry answers it.
#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    pub schema: String,
    /// The schema's type when it is not Avro (PROTOBUF, JSON).
    pub other_type: Option<String>,
    /// The schemas it imports named types from.
    pub references: Vec<Reference>,
}

/// A schema reference: a version of another subject.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    pub subject: String,
    pub version: i64,
}

/// What a schema answer (`GET /schemas/ids/{id}`, `GET /subjects/{s}/versions/{v}`) says.
/// Only the registry's own "not found" error codes (40401 subject, 40402 version, 40403
/// schema) mean a missing schema; any other failure (a wrong URL, credentials, an outage) is an
/// error, so messages wait for the registry instead of becoming error rows.
pub fn schema_answer(status: u16, body: &str) -> Result<Option<Registered>, String> {
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
            let other_type = json
                .get("schemaType")
                .and_then(serde_json::Value::as_str)
                .filter(|t| *t != "AVRO")
                .map(str::to_string);
            let references = json
                .get("references")
                .and_then(serde_json::Value::as_array)
                .map(|refs| {
                    refs.iter()
                        .map(|r| {
                            let subject = r.get("subject").and_then(serde_json::Value::as_str);
                            let version = r.get("version").and_then(serde_json::Value::as_i64);
                            match (subject, version) {
                                (Some(subject), Some(version)) => Ok(Reference {
                                    subject: subject.to_string(),
                                    version,
                                }),
                                _ => Err(format!("a reference without subject and version: {r}")),
                            }
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?
                .unwrap_or_default();
            Ok(Some(Registered {
                schema: schema.to_string(),
                other_type,
                references,
            }))
        }
        404 if matches!(error_code, Some(40401..=40403)) => Ok(None),
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

    /// An answer's status and body, and what it says (or a piece of the error).
    type Case = (u16, String, Result<Option<Registered>, &'static str>);

    #[test]
    fn answers() {
        let avro = r#"{"type":"record","name":"r","fields":[]}"#;
        let registered = |other_type: Option<&str>, references: Vec<Reference>| Registered {
            schema: avro.to_string(),
            other_type: other_type.map(str::to_string),
            references,
        };
        let cases: Vec<Case> = vec![
            (
                200,
                serde_json::json!({ "schema": avro }).to_string(),
                Ok(Some(registered(None, vec![]))),
            ),
            (
                200,
                serde_json::json!({"schema": avro, "schemaType": "AVRO", "references": []})
                    .to_string(),
                Ok(Some(registered(None, vec![]))),
            ),
            (
                200,
                serde_json::json!({"schema": avro, "references": [
                    {"name": "shop.customer", "subject": "customer", "version": 2}]})
                .to_string(),
                Ok(Some(registered(
                    None,
                    vec![Reference {
                        subject: "customer".to_string(),
                        version: 2,
                    }],
                ))),
            ),
            (
                200,
                serde_json::json!({"schema": avro, "schemaType": "PROTOBUF"}).to_string(),
                Ok(Some(registered(Some("PROTOBUF"), vec![]))),
            ),
            (
                200,
                serde_json::json!({"schema": avro, "references": [{"name": "x"}]}).to_string(),
                Err("a reference without subject and version"),
            ),
            (
                404,
                r#"{"error_code":40403,"message":"Schema not found"}"#.to_string(),
                Ok(None),
            ),
            (
                404,
                r#"{"error_code":40402,"message":"Version not found"}"#.to_string(),
                Ok(None),
            ),
            // A 404 that is not the registry's "not found": a wrong base URL.
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
