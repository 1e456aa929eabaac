//! Leader election with a `coordination.k8s.io/v1` Lease: only the leader runs the controllers
//! (and so only the leader writes). Optimistic concurrency (resourceVersion) decides races.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};

/// Leader election settings.
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    pub namespace: String,
    pub lease_name: String,
    pub identity: String,
    pub lease_duration: Duration,
    /// How often the leader renews, and a candidate retries.
    pub retry_period: Duration,
}

/// Pure: whether `me` may take or keep the lease at `now_ms`.
pub fn may_hold(spec: Option<&LeaseSpec>, me: &str, now_ms: i64) -> bool {
    let Some(spec) = spec else { return true };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() || holder == me {
        return true;
    }
    let duration_ms = i64::from(spec.lease_duration_seconds.unwrap_or(15)) * 1000;
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0.as_millisecond());
    renewed.is_none_or(|r| now_ms - r > duration_ms)
}

/// The lease API errors that matter to a candidate.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("reading or writing lease {namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// One attempt to take or renew the lease. `Ok(true)`: we hold it now.
pub async fn try_acquire(client: &Client, cfg: &LeaderConfig) -> Result<bool, LeaderError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    let err = |source| LeaderError::Api {
        namespace: cfg.namespace.clone(),
        name: cfg.lease_name.clone(),
        source,
    };
    let now = Timestamp::now();
    let existing = api.get_opt(&cfg.lease_name).await.map_err(err)?;
    let duration = i32::try_from(cfg.lease_duration.as_secs()).unwrap_or(15);
    match existing {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.lease_name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(cfg.identity.clone()),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(err(e)),
            }
        }
        Some(mut lease) => {
            if !may_hold(lease.spec.as_ref(), &cfg.identity, now.as_millisecond()) {
                return Ok(false);
            }
            let spec = lease.spec.get_or_insert_with(Default::default);
            if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
                spec.holder_identity = Some(cfg.identity.clone());
                spec.acquire_time = Some(MicroTime(now));
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            spec.renew_time = Some(MicroTime(now));
            spec.lease_duration_seconds = Some(duration);
            // replace carries the resourceVersion we read: a concurrent writer makes this a 409.
            match api
                .replace(&cfg.lease_name, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(err(e)),
            }
        }
    }
}

/// Give the lease up (on graceful shutdown) so another replica takes over at once.
pub async fn release(client: &Client, cfg: &LeaderConfig) {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    if let Ok(Some(mut lease)) = api.get_opt(&cfg.lease_name).await
        && let Some(spec) = lease.spec.as_mut()
        && spec.holder_identity.as_deref() == Some(cfg.identity.as_str())
    {
        spec.holder_identity = None;
        spec.renew_time = None;
        let _ = api
            .replace(&cfg.lease_name, &PostParams::default(), &lease)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>, renewed_ms: Option<i64>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_string),
            renew_time: renewed_ms
                .map(|ms| MicroTime(Timestamp::from_millisecond(ms).expect("valid"))),
            lease_duration_seconds: Some(15),
            ..Default::default()
        }
    }

    #[test]
    fn lease_is_taken_only_when_free_ours_or_expired() {
        let now = 100_000;
        let cases = [
            (None, None, true),
            (Some(""), Some(now), true),
            (Some("me"), Some(now - 1000), true),
            (Some("other"), Some(now - 1000), false),
            (Some("other"), Some(now - 16_000), true),
            (Some("other"), None, true),
        ];
        for (holder, renewed, expected) in cases {
            assert_eq!(
                may_hold(Some(&spec(holder, renewed)), "me", now),
                expected,
                "{holder:?} {renewed:?}"
            );
        }
        assert!(may_hold(None, "me", now));
    }
}
