//! A private single-node Kafka (KRaft) with a SASL_PLAINTEXT listener, for tests of SASL PLAIN
//! and SCRAM authentication.
//!
//! The shared testbed broker has PLAINTEXT and SSL listeners only and must not be restarted, so
//! a test that needs SASL starts its own broker from the same cached Kafka install
//! (`e2e/testbed/fetch-kafka.sh` puts it in `~/.cache/routine-load/kafka-<version>/libs`), on
//! free loopback ports, with its data in a temporary directory. It is stopped and its directory
//! removed when the [`SaslBroker`] is dropped.
//!
//! Listeners:
//! - `SASL_PLAINTEXT` ([`SaslBroker::sasl_brokers`]): mechanisms PLAIN (users from the
//!   listener's JAAS config, `user_<name>="<password>"`) and SCRAM-SHA-256 (credentials written
//!   into the metadata log at format time, `kafka-storage format --add-scram`);
//! - `PLAINTEXT` ([`SaslBroker::plaintext_brokers`]): inter-broker traffic and the harness
//!   (topic creation, producing), so test setup does not depend on what is under test;
//! - `CONTROLLER`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::{LocalProcess, Testbed, unique_name};

/// A user name and password.
#[derive(Clone, Debug)]
pub struct SaslUser {
    pub name: String,
    pub password: String,
}

impl SaslUser {
    pub fn new(name: &str, password: &str) -> Self {
        Self {
            name: name.into(),
            password: password.into(),
        }
    }
}

/// A running private broker; stopped (SIGTERM, then SIGKILL) and its directory removed on drop.
#[derive(Debug)]
pub struct SaslBroker {
    /// Config, data and logs of this broker.
    pub dir: PathBuf,
    plaintext_port: u16,
    sasl_port: u16,
    process: Option<LocalProcess>,
}

/// The cached Kafka install the testbed runs (`$ROUTINE_LOAD_CACHE/kafka-$KAFKA_VERSION`).
pub fn kafka_install(tb: &Testbed) -> Result<PathBuf> {
    let version = tb.var("KAFKA_VERSION").unwrap_or("4.3.1");
    let cache = match std::env::var("ROUTINE_LOAD_CACHE") {
        Ok(c) if !c.is_empty() => PathBuf::from(c),
        _ => {
            let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
            Path::new(&home).join(".cache/routine-load")
        }
    };
    let dir = cache.join(format!("kafka-{version}"));
    let jar = dir.join(format!("libs/kafka_2.13-{version}.jar"));
    if !jar.is_file() {
        bail!(
            "no Kafka {version} install at {} (run e2e/testbed/fetch-kafka.sh)",
            dir.display()
        );
    }
    Ok(dir)
}

/// A free TCP port on 127.0.0.1 (held while `hold` lives, so several picks differ).
fn free_port(hold: &mut Vec<std::net::TcpListener>) -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    let port = l.local_addr()?.port();
    hold.push(l);
    Ok(port)
}

/// A random KRaft cluster id: 16 bytes, URL-safe base64 without padding (Kafka's `Uuid`).
pub(crate) fn cluster_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut bytes = Vec::with_capacity(16);
    for i in 0..2u64 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        bytes.extend_from_slice(&h.finish().to_le_bytes());
    }
    bytes[0] |= 0x40; // never the reserved all-zero ids
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A JAAS string value, quoted.
fn jaas_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl SaslBroker {
    /// Formats and starts a broker whose SASL_PLAINTEXT listener accepts `plain_users` over
    /// PLAIN and `scram_users` over SCRAM-SHA-256, and waits until it serves metadata.
    pub async fn start(
        tb: &Testbed,
        plain_users: &[SaslUser],
        scram_users: &[SaslUser],
    ) -> Result<Self> {
        let install = kafka_install(tb)?;
        let dir = std::env::temp_dir().join(unique_name("sasl-kafka"));
        std::fs::create_dir_all(dir.join("logs"))?;
        let mut hold = Vec::new();
        let plaintext_port = free_port(&mut hold)?;
        let sasl_port = free_port(&mut hold)?;
        let controller_port = free_port(&mut hold)?;

        let mut plain_jaas =
            String::from("org.apache.kafka.common.security.plain.PlainLoginModule required");
        for u in plain_users {
            write!(plain_jaas, " user_{}={}", u.name, jaas_quote(&u.password))?;
        }
        plain_jaas.push(';');
        let data = dir.join("data");
        let props = format!(
            "# A private SASL broker of routine-load-e2e (sasl_broker.rs).
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{plaintext_port},SASL_PLAINTEXT://127.0.0.1:{sasl_port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{plaintext_port},SASL_PLAINTEXT://127.0.0.1:{sasl_port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs={data}
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256
listener.name.sasl_plaintext.plain.sasl.jaas.config={plain_jaas}
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
",
            data = data.display()
        );
        let server_properties = dir.join("server.properties");
        std::fs::write(&server_properties, props)?;
        let log4j = dir.join("log4j2.properties");
        std::fs::write(
            &log4j,
            "status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
",
        )?;
        let java = |heap: &[&str]| {
            let mut c = Command::new("java");
            c.args(heap)
                .args([
                    "-XX:+UseSerialGC",
                    "-XX:TieredStopAtLevel=1",
                    "-Djava.awt.headless=true",
                ])
                .arg(format!("-Dlog4j2.configurationFile={}", log4j.display()))
                .arg(format!("-Dkafka.logs.dir={}", dir.join("logs").display()))
                .arg("-cp")
                .arg(format!("{}/libs/*", install.display()));
            c
        };

        // Format, with the SCRAM credentials in the bootstrap metadata.
        let mut format = java(&["-Xmx256m"]);
        format
            .args([
                "kafka.tools.StorageTool",
                "format",
                // `=`: an id may start with '-', which would read as an option.
                &format!("--cluster-id={}", cluster_id()),
                "-c",
            ])
            .arg(&server_properties);
        for u in scram_users {
            format.arg("--add-scram").arg(format!(
                "SCRAM-SHA-256=[name={},password={}]",
                u.name, u.password
            ));
        }
        Testbed::run(&mut format).context("formatting the SASL broker's storage")?;

        drop(hold);
        let mut cmd = java(&["-Xms128m", "-Xmx512m"]);
        cmd.arg("kafka.Kafka").arg(&server_properties);
        let process = tb.spawn("sasl-kafka", cmd)?;
        let mut broker = SaslBroker {
            dir,
            plaintext_port,
            sasl_port,
            process: Some(process),
        };
        broker.wait_ready(Duration::from_secs(90)).await?;
        Ok(broker)
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let t0 = Instant::now();
        let server_log = self.dir.join("logs/server.log");
        loop {
            let started = std::fs::read_to_string(&server_log)
                .map(|l| l.contains("Kafka Server started"))
                .unwrap_or(false);
            if started {
                let consumer: BaseConsumer = self.plaintext_config().create()?;
                if consumer
                    .fetch_metadata(None, Duration::from_secs(5))
                    .is_ok_and(|md| !md.brokers().is_empty())
                {
                    return Ok(());
                }
            }
            let running = self.process.as_mut().is_some_and(|p| p.is_running());
            if !running || t0.elapsed() > timeout {
                bail!(
                    "the SASL broker did not start within {timeout:?} (running: {running}); server log:\n{}\nstdout:\n{}",
                    tail(
                        &std::fs::read_to_string(&server_log).unwrap_or_default(),
                        40
                    ),
                    tail(&self.log(), 40),
                );
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// `127.0.0.1:<port>` of the PLAINTEXT listener (harness use).
    pub fn plaintext_brokers(&self) -> String {
        format!("127.0.0.1:{}", self.plaintext_port)
    }

    /// `127.0.0.1:<port>` of the SASL_PLAINTEXT listener.
    pub fn sasl_brokers(&self) -> String {
        format!("127.0.0.1:{}", self.sasl_port)
    }

    /// A librdkafka config for the PLAINTEXT listener.
    pub fn plaintext_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.plaintext_brokers());
        c
    }

    /// A librdkafka config for the SASL listener with `mechanism` (`PLAIN`, `SCRAM-SHA-256`).
    pub fn sasl_config(&self, mechanism: &str, user: &SaslUser) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.sasl_brokers())
            .set("security.protocol", "SASL_PLAINTEXT")
            .set("sasl.mechanism", mechanism)
            .set("sasl.username", &user.name)
            .set("sasl.password", &user.password);
        c
    }

    /// Creates a topic over PLAINTEXT and waits until its metadata shows all partitions.
    pub async fn create_topic(&self, topic: &str, partitions: i32) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> =
            self.plaintext_config().create().context("admin client")?;
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        for r in admin.create_topics([&new], &opts).await? {
            if let Err((t, code)) = r {
                bail!("creating topic {t}: {code}");
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let md = admin
                .inner()
                .fetch_metadata(Some(topic), Duration::from_secs(5))?;
            if md.topics().iter().any(|t| {
                t.name() == topic
                    && t.error().is_none()
                    && t.partitions().len() == partitions as usize
                    && t.partitions().iter().all(|p| p.leader() >= 0)
            }) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("topic {topic} not ready after 30s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Produces UTF-8 lines to one partition with `config` (PLAINTEXT or SASL), waiting for each
    /// delivery; returns their offsets.
    pub async fn produce_lines(
        &self,
        mut config: ClientConfig,
        topic: &str,
        partition: i32,
        lines: &[&str],
    ) -> Result<Vec<i64>> {
        config
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "30000");
        let producer: FutureProducer = config.create().context("producer")?;
        let mut out = Vec::with_capacity(lines.len());
        for l in lines {
            let delivery = producer
                .send(
                    FutureRecord::<(), str>::to(topic)
                        .payload(*l)
                        .partition(partition),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| e)
                .with_context(|| format!("producing to {topic}"))?;
            out.push(delivery.offset);
        }
        producer.flush(Duration::from_secs(30))?;
        Ok(out)
    }

    /// The broker's stdout and stderr so far.
    pub fn log(&self) -> String {
        self.process
            .as_ref()
            .map(LocalProcess::log)
            .unwrap_or_default()
    }

    /// The broker's `server.log` so far.
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("logs/server.log")).unwrap_or_default()
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Drop for SaslBroker {
    fn drop(&mut self) {
        if let Some(mut p) = self.process.take() {
            let _ = p.stop(Duration::from_secs(10));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_are_22_url_safe_base64_chars() {
        let a = cluster_id();
        assert_eq!(a.len(), 22, "{a}");
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{a}"
        );
        assert_ne!(a, cluster_id());
    }

    #[test]
    fn jaas_values_are_quoted() {
        assert_eq!(jaas_quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
