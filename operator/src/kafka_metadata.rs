//! Kafka metadata for the JobScheduler: the partitions of a job's topic. One librdkafka client
//! per distinct (brokers, client properties) is kept and reused, because creating a client starts
//! its threads and connections: with hundreds of jobs resynced every few seconds, a client per
//! reconcile made each reconcile slow. A client whose request fails is dropped, so the next
//! attempt connects afresh (brokers moved, credentials changed); idle clients are closed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};

/// A client unused for this long is closed.
const IDLE: Duration = Duration::from_secs(600);

#[derive(Default)]
pub struct MetadataClients {
    clients: Mutex<HashMap<String, (Arc<BaseConsumer>, Instant)>>,
}

impl MetadataClients {
    /// The sorted partition ids of `topic`, or why they can't be read. Blocking: call it from
    /// `spawn_blocking`.
    pub fn partitions(
        &self,
        brokers: &str,
        topic: &str,
        props: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<Vec<i32>, String> {
        let key = client_key(brokers, props);
        let client = self.client(&key, brokers, props)?;
        let result = partitions_of(&client, topic, timeout);
        if result.is_err() {
            self.lock().remove(&key);
        }
        result
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Arc<BaseConsumer>, Instant)>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn client(
        &self,
        key: &str,
        brokers: &str,
        props: &BTreeMap<String, String>,
    ) -> Result<Arc<BaseConsumer>, String> {
        let now = Instant::now();
        let mut clients = self.lock();
        clients.retain(|_, (_, used)| now.duration_since(*used) < IDLE);
        if let Some((c, used)) = clients.get_mut(key) {
            *used = now;
            return Ok(c.clone());
        }
        let mut cfg = rdkafka::ClientConfig::new();
        for (k, v) in props {
            cfg.set(k, v);
        }
        cfg.set("bootstrap.servers", brokers);
        cfg.set("allow.auto.create.topics", "false");
        let c: Arc<BaseConsumer> = Arc::new(
            cfg.create()
                .map_err(|e| format!("invalid Kafka client properties: {e}"))?,
        );
        clients.insert(key.to_string(), (c.clone(), now));
        Ok(c)
    }

    /// Clients open now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Pure: the cache key of a client configuration (brokers and every property, in order).
fn client_key(brokers: &str, props: &BTreeMap<String, String>) -> String {
    let mut key = brokers.to_string();
    for (k, v) in props {
        key.push('\n');
        key.push_str(k);
        key.push('=');
        key.push_str(v);
    }
    key
}

fn partitions_of(
    client: &BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, String> {
    let md = client
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| e.to_string())?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| "topic not in metadata".to_string())?;
    if let Some(err) = t.error() {
        return Err(rdkafka::error::RDKafkaErrorCode::from(err).to_string());
    }
    let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    if ids.is_empty() {
        return Err("topic has no partitions".into());
    }
    ids.sort_unstable();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_shared_per_configuration_and_dropped_after_a_failure() {
        let clients = MetadataClients::default();
        let props = BTreeMap::from([("client.id".to_string(), "a".to_string())]);
        // Nothing listens on port 9: the request fails, and the failed client is not kept.
        let r = clients.partitions("127.0.0.1:9", "t", &props, Duration::from_millis(200));
        assert!(r.is_err());
        assert!(clients.is_empty(), "a failed client is dropped");
        // The key separates configurations.
        assert_ne!(
            client_key("b:1", &props),
            client_key("b:1", &BTreeMap::new())
        );
        assert_ne!(client_key("b:1", &props), client_key("b:2", &props));
    }

    #[test]
    fn invalid_properties_are_reported() {
        let clients = MetadataClients::default();
        let props = BTreeMap::from([("no.such.property".to_string(), "x".to_string())]);
        let e = clients
            .partitions("127.0.0.1:9", "t", &props, Duration::from_millis(200))
            .unwrap_err();
        assert!(e.starts_with("invalid Kafka client properties"), "{e}");
    }
}
