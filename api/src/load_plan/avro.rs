//! Planning checks of `format: avro`: the schema registry a job names.

use super::PlanError;
use crate::job::RoutineLoadJobSpec;

/// Checks that an Avro job names a registry by a plain `http(s)://host[:port][/path]` URL.
/// Credentials in the URL (StarRocks accepts `https://user:password@host`) are refused: anyone
/// who can read the job would see them; they belong in `schemaRegistry.credentialsSecret`.
pub fn check_registry(job: &RoutineLoadJobSpec) -> Result<(), PlanError> {
    let bad = |reason: String| PlanError::BadFormatOption {
        option: "schemaRegistry",
        reason,
    };
    let registry = job
        .schema_registry
        .as_ref()
        .ok_or_else(|| bad("format: avro needs schemaRegistry.url".to_string()))?;
    let url = registry.url.trim();
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| bad(format!("url '{url}' must start with http:// or https://")))?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.contains('@') {
        return Err(bad(
            "the url holds user:password@: move the credentials to the Secret named by \
             schemaRegistry.credentialsSecret (keys username and password)"
                .to_string(),
        ));
    }
    if host.is_empty() {
        return Err(bad(format!("url '{url}' has no host")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(registry: Option<&str>) -> RoutineLoadJobSpec {
        let mut spec = serde_json::json!({
            "table": "t", "format": "avro",
            "kafka": {"brokerList": "b:9092", "topic": "t"}
        });
        if let Some(url) = registry {
            spec["schemaRegistry"] = serde_json::json!({"url": url});
        }
        serde_json::from_value(spec).unwrap()
    }

    #[test]
    fn registry_urls() {
        let cases: &[(Option<&str>, Option<&str>)] = &[
            (Some("http://registry:8081"), None),
            (Some("https://registry.example.com/apis/ccompat/v7"), None),
            (Some("http://127.0.0.1:8081/"), None),
            (None, Some("needs schemaRegistry.url")),
            (Some("registry:8081"), Some("must start with http://")),
            (Some("ftp://registry"), Some("must start with http://")),
            (
                Some("https://user:secret@registry"),
                Some("move the credentials"),
            ),
            (Some("http:///path"), Some("has no host")),
        ];
        for (url, want) in cases {
            let got = check_registry(&job(*url));
            match want {
                None => assert_eq!(got, Ok(()), "{url:?}"),
                Some(w) => {
                    let e = got
                        .expect_err(&format!("{url:?} must be refused"))
                        .to_string();
                    assert!(
                        e.contains(w) && e.starts_with("schemaRegistry: "),
                        "{url:?}: {e}"
                    );
                }
            }
        }
    }
}
