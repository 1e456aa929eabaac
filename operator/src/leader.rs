//! Leader election with a `coordination.k8s.io/v1` Lease, as client-go's `leaderelection` does
//! it: only the leader runs the controllers, and every write they make is gated on the lease
//! being held ([`LeaderGate`]).
//!
//! - A candidate judges another holder's lease by when *it* observed the lease record change
//!   (never by the remote `renewTime` against the local clock, so clock skew can't make a live
//!   leader look expired): it takes over only after seeing no change for `lease_duration`.
//! - The leader renews every `retry_period`; each API call has a timeout. If it could not renew
//!   for `renew_deadline` (shorter than `lease_duration`) since the start of its last successful
//!   renewal, it stops writing and exits, before any other replica may take over.
//! - Optimistic concurrency (resourceVersion) decides races between candidates.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

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
    /// How long a candidate waits, after it last saw the lease record change, before it takes
    /// the lease from another holder.
    pub lease_duration: Duration,
    /// How long the leader keeps writing after the start of its last successful renewal.
    /// Shorter than `lease_duration`: the difference is the margin against a takeover.
    pub renew_deadline: Duration,
    /// How often the leader renews, and a candidate retries.
    pub retry_period: Duration,
    /// Timeout of one API call.
    pub call_timeout: Duration,
}

impl LeaderConfig {
    /// Settings with client-go's proportions: renew deadline 2/3 of the lease duration, each
    /// call bounded by half the renew deadline.
    pub fn new(namespace: String, lease_name: String, identity: String, lease: Duration) -> Self {
        let renew_deadline = lease * 2 / 3;
        LeaderConfig {
            namespace,
            lease_name,
            identity,
            lease_duration: lease,
            renew_deadline,
            retry_period: Duration::from_secs(2).min(renew_deadline / 2),
            call_timeout: renew_deadline / 2,
        }
    }

    /// Refuses settings that leave no margin.
    pub fn validate(&self) -> Result<(), String> {
        if self.renew_deadline >= self.lease_duration {
            return Err(format!(
                "leader renew deadline {:?} must be shorter than the lease duration {:?}",
                self.renew_deadline, self.lease_duration
            ));
        }
        if self.retry_period >= self.renew_deadline || self.retry_period.is_zero() {
            return Err(format!(
                "leader retry period {:?} must be positive and shorter than the renew deadline {:?}",
                self.retry_period, self.renew_deadline
            ));
        }
        Ok(())
    }
}

/// Whether this replica may write now: true until `renew_deadline` after the start of its
/// last successful renewal. Shared with the controllers, which check it before every write.
#[derive(Debug)]
pub struct LeaderGate {
    base: Instant,
    /// Milliseconds after `base` until which the lease is held (`i64::MIN`: not held).
    held_until_ms: AtomicI64,
}

impl Default for LeaderGate {
    fn default() -> Self {
        LeaderGate {
            base: Instant::now(),
            held_until_ms: AtomicI64::new(i64::MIN),
        }
    }
}

impl LeaderGate {
    /// A gate that is always open (tests, tools without leader election).
    pub fn always_open() -> Arc<Self> {
        let g = LeaderGate::default();
        g.held_until_ms.store(i64::MAX, Ordering::SeqCst);
        Arc::new(g)
    }

    /// Signed milliseconds from `base` to `at`.
    fn ms(&self, at: Instant) -> i64 {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        match at.checked_duration_since(self.base) {
            Some(d) => ms(d),
            None => -ms(self.base.saturating_duration_since(at)),
        }
    }

    /// A renewal that started at `started` succeeded.
    pub fn renewed(&self, started: Instant, renew_deadline: Duration) {
        let until = self
            .ms(started)
            .saturating_add(i64::try_from(renew_deadline.as_millis()).unwrap_or(i64::MAX));
        self.held_until_ms.fetch_max(until, Ordering::SeqCst);
    }

    /// Stop writing at once (lease lost or released).
    pub fn close(&self) {
        self.held_until_ms.store(i64::MIN, Ordering::SeqCst);
    }

    /// Whether writes are allowed now.
    pub fn holds(&self) -> bool {
        self.ms(Instant::now()) < self.held_until_ms.load(Ordering::SeqCst)
    }
}

/// The lease record as this candidate last saw it, and when it saw it change.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    record: Option<String>,
    at: Option<Instant>,
}

impl Observed {
    /// Notes the record read at `now`; the observation time moves only when the record changed.
    pub fn observe(&mut self, spec: Option<&LeaseSpec>, now: Instant) {
        let record = serde_json::to_string(&spec).unwrap_or_default();
        if self.record.as_deref() != Some(record.as_str()) {
            self.record = Some(record);
            self.at = Some(now);
        }
    }
}

/// Pure: whether `me` may take or keep the lease, given when this candidate last saw its record
/// change. A lease held by another identity is free once unchanged for its duration (as this
/// candidate observed it; the remote `renewTime` is not compared with the local clock).
pub fn may_hold(
    spec: Option<&LeaseSpec>,
    me: &str,
    observed_at: Option<Instant>,
    now: Instant,
    default_duration: Duration,
) -> bool {
    let Some(spec) = spec else { return true };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() || holder == me {
        return true;
    }
    let duration = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map(Duration::from_secs)
        .unwrap_or(default_duration);
    observed_at.is_none_or(|at| now.saturating_duration_since(at) > duration)
}

/// The lease API errors that matter to a candidate.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("{op} lease {namespace}/{name}: {source}")]
    Api {
        op: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("{op} lease {namespace}/{name}: no answer within {timeout:?}")]
    Timeout {
        op: &'static str,
        namespace: String,
        name: String,
        timeout: Duration,
    },
}

async fn bounded<T>(
    cfg: &LeaderConfig,
    op: &'static str,
    call: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<Result<T, kube::Error>, LeaderError> {
    tokio::time::timeout(cfg.call_timeout, call)
        .await
        .map_err(|_| LeaderError::Timeout {
            op,
            namespace: cfg.namespace.clone(),
            name: cfg.lease_name.clone(),
            timeout: cfg.call_timeout,
        })
}

/// One attempt to take or renew the lease. `Ok(true)`: we hold it now (and `gate`, if given,
/// is held until `renew_deadline` after this attempt started).
pub async fn try_acquire(
    client: &Client,
    cfg: &LeaderConfig,
    observed: &mut Observed,
    gate: &LeaderGate,
) -> Result<bool, LeaderError> {
    let started = Instant::now();
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    let err = |op, source| LeaderError::Api {
        op,
        namespace: cfg.namespace.clone(),
        name: cfg.lease_name.clone(),
        source,
    };
    let now = Timestamp::now();
    let existing = bounded(cfg, "reading", api.get_opt(&cfg.lease_name))
        .await?
        .map_err(|e| err("reading", e))?;
    let duration = i32::try_from(cfg.lease_duration.as_secs()).unwrap_or(15);
    let won = match existing {
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
            match bounded(cfg, "creating", api.create(&PostParams::default(), &lease)).await? {
                Ok(_) => true,
                Err(kube::Error::Api(s)) if s.code == 409 => false,
                Err(e) => return Err(err("creating", e)),
            }
        }
        Some(mut lease) => {
            observed.observe(lease.spec.as_ref(), started);
            if !may_hold(
                lease.spec.as_ref(),
                &cfg.identity,
                observed.at,
                started,
                cfg.lease_duration,
            ) {
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
            let replaced = bounded(
                cfg,
                "renewing",
                api.replace(&cfg.lease_name, &PostParams::default(), &lease),
            )
            .await?;
            match replaced {
                Ok(l) => {
                    observed.observe(l.spec.as_ref(), Instant::now());
                    true
                }
                Err(kube::Error::Api(s)) if s.code == 409 => false,
                Err(e) => return Err(err("renewing", e)),
            }
        }
    };
    if won {
        gate.renewed(started, cfg.renew_deadline);
    }
    Ok(won)
}

/// Give the lease up (on graceful shutdown) so another replica takes over at once. Writes stop
/// first.
pub async fn release(client: &Client, cfg: &LeaderConfig, gate: &LeaderGate) {
    gate.close();
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    if let Ok(Ok(Some(mut lease))) = bounded(cfg, "reading", api.get_opt(&cfg.lease_name)).await
        && let Some(spec) = lease.spec.as_mut()
        && spec.holder_identity.as_deref() == Some(cfg.identity.as_str())
    {
        spec.holder_identity = None;
        spec.renew_time = None;
        let _ = bounded(
            cfg,
            "releasing",
            api.replace(&cfg.lease_name, &PostParams::default(), &lease),
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>, renewed_s: Option<i64>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_string),
            renew_time: renewed_s.map(|s| MicroTime(Timestamp::from_second(s).expect("valid"))),
            lease_duration_seconds: Some(15),
            ..Default::default()
        }
    }

    #[test]
    fn lease_is_taken_only_when_free_ours_or_unchanged_for_its_duration() {
        let now = Instant::now() + Duration::from_secs(100);
        let ago = |s: u64| Some(now - Duration::from_secs(s));
        // The remote renewTime is far in the past or future in some rows (clock skew): it
        // doesn't matter, only when this candidate saw the record change does.
        let cases = [
            ("no holder", spec(None, None), ago(0), true),
            ("empty holder", spec(Some(""), Some(0)), ago(0), true),
            ("ours", spec(Some("me"), Some(0)), ago(1), true),
            (
                "other, seen changing 1 s ago",
                spec(Some("other"), Some(0)),
                ago(1),
                false,
            ),
            (
                "other, remote clock 1 h ahead, seen 1 s ago",
                spec(Some("other"), Some(10_000_000)),
                ago(1),
                false,
            ),
            (
                "other, unchanged for 16 s",
                spec(Some("other"), Some(10_000_000)),
                ago(16),
                true,
            ),
            (
                "other, unchanged for 14 s",
                spec(Some("other"), Some(0)),
                ago(14),
                false,
            ),
            (
                "other, never observed",
                spec(Some("other"), None),
                None,
                true,
            ),
        ];
        for (name, spec, observed_at, expected) in cases {
            assert_eq!(
                may_hold(Some(&spec), "me", observed_at, now, Duration::from_secs(15)),
                expected,
                "{name}"
            );
        }
        assert!(may_hold(None, "me", None, now, Duration::from_secs(15)));
    }

    #[test]
    fn observation_time_moves_only_when_the_record_changes() {
        let t0 = Instant::now();
        let mut o = Observed::default();
        o.observe(Some(&spec(Some("other"), Some(1))), t0);
        o.observe(
            Some(&spec(Some("other"), Some(1))),
            t0 + Duration::from_secs(5),
        );
        assert_eq!(o.at, Some(t0));
        o.observe(
            Some(&spec(Some("other"), Some(2))),
            t0 + Duration::from_secs(6),
        );
        assert_eq!(o.at, Some(t0 + Duration::from_secs(6)));
    }

    #[test]
    fn the_gate_closes_renew_deadline_after_the_last_renewal_started() {
        let g = LeaderGate::default();
        assert!(!g.holds(), "never renewed");
        let started = Instant::now();
        g.renewed(started, Duration::from_secs(10));
        assert!(g.holds());
        // A renewal that started long ago holds only until its own deadline.
        let g = LeaderGate::default();
        g.renewed(
            Instant::now() - Duration::from_secs(11),
            Duration::from_secs(10),
        );
        assert!(!g.holds());
        g.renewed(Instant::now(), Duration::from_secs(10));
        assert!(g.holds());
        g.close();
        assert!(!g.holds());
    }

    #[test]
    fn settings_keep_a_margin() {
        let cfg = |lease: u64| {
            LeaderConfig::new(
                "ns".into(),
                "l".into(),
                "me".into(),
                Duration::from_secs(lease),
            )
        };
        for lease in [5, 15, 60] {
            let c = cfg(lease);
            assert!(c.validate().is_ok(), "{c:?}");
            assert!(c.renew_deadline < c.lease_duration, "{c:?}");
            assert!(c.call_timeout < c.renew_deadline, "{c:?}");
        }
        let mut c = cfg(15);
        c.renew_deadline = Duration::from_secs(15);
        assert!(c.validate().is_err());
    }
}
