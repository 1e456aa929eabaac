//! Kafka helpers over the testbed broker: client configs for the PLAINTEXT and SSL listeners,
//! topic creation, a producer and an explicit-offset consumer.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::Testbed;

/// Which listener of the testbed broker to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    Plaintext,
    /// TLS, verified against the testbed CA (`KAFKA_SSL_CA`).
    Ssl,
}

/// A record as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
}

impl Record {
    pub fn payload_str(&self) -> &str {
        self.payload
            .as_deref()
            .map(|p| std::str::from_utf8(p).unwrap_or("<binary>"))
            .unwrap_or("")
    }
}

impl Testbed {
    /// The broker list for a listener (`KAFKA_BROKERS` / `KAFKA_SSL_BROKERS`).
    pub fn kafka_brokers(&self, listener: Listener) -> Result<String> {
        Ok(match listener {
            Listener::Plaintext => self.var("KAFKA_BROKERS")?.to_string(),
            Listener::Ssl => self.var("KAFKA_SSL_BROKERS")?.to_string(),
        })
    }

    /// A librdkafka config with the brokers and, for SSL, `security.protocol=ssl` and
    /// `ssl.ca.location` = the testbed CA (hostname verification stays on).
    pub fn kafka_config(&self, listener: Listener) -> Result<ClientConfig> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.kafka_brokers(listener)?);
        if listener == Listener::Ssl {
            c.set("security.protocol", "ssl");
            c.set("ssl.ca.location", self.var("KAFKA_SSL_CA")?);
        }
        Ok(c)
    }

    /// Creates a topic (idempotent) and waits until its metadata shows all partitions.
    pub async fn create_topic(&self, topic: &str, partitions: i32) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = self
            .kafka_config(Listener::Plaintext)?
            .create()
            .context("kafka admin client")?;
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = admin
            .create_topics([&new], &opts)
            .await
            .context("CreateTopics")?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, code)) => bail!("creating topic {t}: {code}"),
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let md = admin
                .inner()
                .fetch_metadata(Some(topic), Duration::from_secs(5))
                .context("metadata")?;
            let ok = md.topics().iter().any(|t| {
                t.name() == topic
                    && t.error().is_none()
                    && t.partitions().len() == partitions as usize
            });
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("topic {topic} not visible with {partitions} partitions after 30s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// An idempotent producer (acks=all) on a listener.
    pub fn kafka_producer(&self, listener: Listener) -> Result<FutureProducer> {
        let mut c = self.kafka_config(listener)?;
        c.set("enable.idempotence", "true");
        c.set("message.timeout.ms", "30000");
        c.set("linger.ms", "5");
        c.create().context("kafka producer")
    }

    /// Produces records (partition, key, payload) in order, waits for every delivery and returns
    /// their (partition, offset).
    pub async fn produce<K, P>(
        &self,
        listener: Listener,
        topic: &str,
        records: impl IntoIterator<Item = (Option<i32>, Option<K>, P)>,
    ) -> Result<Vec<(i32, i64)>>
    where
        K: AsRef<[u8]>,
        P: AsRef<[u8]>,
    {
        let producer = self.kafka_producer(listener)?;
        let mut out = Vec::new();
        for (partition, key, payload) in records {
            let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
                .payload(payload.as_ref())
                .headers(OwnedHeaders::new().insert(Header {
                    key: "producer",
                    value: Some("routine-load-e2e"),
                }));
            if let Some(p) = partition {
                rec = rec.partition(p);
            }
            if let Some(k) = key.as_ref() {
                rec = rec.key(k.as_ref());
            }
            let d = producer.send(rec, Duration::from_secs(30)).await;
            let d = d
                .map_err(|(e, _)| e)
                .with_context(|| format!("producing to {topic}"))?;
            out.push((d.partition, d.offset));
        }
        producer.flush(Duration::from_secs(30)).context("flush")?;
        Ok(out)
    }

    /// Produces UTF-8 lines to one partition; returns their offsets.
    pub async fn produce_lines(
        &self,
        listener: Listener,
        topic: &str,
        partition: i32,
        lines: &[&str],
    ) -> Result<Vec<i64>> {
        let recs = lines
            .iter()
            .map(|l| (Some(partition), None::<&[u8]>, l.as_bytes()));
        Ok(self
            .produce(listener, topic, recs)
            .await?
            .into_iter()
            .map(|(_, o)| o)
            .collect())
    }

    /// Reads `count` records of one partition starting at `from`, without a consumer group
    /// commit. The offset is explicit: after an assign with invalid offsets, a stale offset fetch
    /// can overwrite a later explicit assign (librdkafka issue 5345).
    pub fn consume(
        &self,
        listener: Listener,
        topic: &str,
        partition: i32,
        from: i64,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<Record>> {
        let mut c = self.kafka_config(listener)?;
        c.set("group.id", crate::unique_name("e2e-reader"));
        c.set("enable.auto.commit", "false");
        c.set("enable.auto.offset.store", "false");
        c.set("auto.offset.reset", "error");
        let consumer: BaseConsumer = c.create().context("kafka consumer")?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(from))?;
        consumer.assign(&tpl)?;
        let deadline = Instant::now() + timeout;
        let mut out = Vec::with_capacity(count);
        while out.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "read {} of {count} records from {topic}[{partition}] in {timeout:?}",
                    out.len()
                );
            }
            match consumer.poll(left.min(Duration::from_millis(500))) {
                None => continue,
                Some(Err(e)) => bail!("consuming {topic}[{partition}]: {e}"),
                Some(Ok(m)) => out.push(Record {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec),
                }),
            }
        }
        Ok(out)
    }

    /// (low, high) watermarks of a partition.
    pub fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64)> {
        let consumer: BaseConsumer = self.kafka_config(Listener::Plaintext)?.create()?;
        Ok(consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?)
    }
}
