//! A private single-node Kafka (KRaft) reachable two ways: directly (the workers, the harness)
//! and through a [`Proxy`] the test can cut (the operator), so a test can take the operator's
//! path to Kafka away while the workers keep loading.
//!
//! A proxy in front of the shared broker is not enough: a Kafka client bootstraps through it,
//! then connects to the addresses the broker advertises, bypassing the proxy. This broker has a
//! second listener, `ROUTED`, that advertises the proxy's address, so every connection a client
//! of that listener makes goes through the proxy.
//!
//! Listeners: `PLAINTEXT` ([`RoutedBroker::brokers`]; inter-broker traffic too), `ROUTED`
//! ([`RoutedBroker::routed_brokers`], the proxy's address) and `CONTROLLER`. It is stopped and
//! its directory removed when dropped.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::proxy::Proxy;
use crate::sasl_broker::{cluster_id, kafka_install};
use crate::{LocalProcess, Testbed, unique_name};

/// A running private broker with a cuttable route.
pub struct RoutedBroker {
    pub dir: PathBuf,
    plaintext_port: u16,
    /// Forwards the advertised `ROUTED` address to the broker's `ROUTED` listener.
    pub proxy: Proxy,
    process: Option<LocalProcess>,
}

fn free_port() -> Result<(std::net::TcpListener, u16)> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    let port = l.local_addr()?.port();
    Ok((l, port))
}

impl RoutedBroker {
    /// Formats and starts the broker and its proxy, and waits until both routes serve metadata.
    pub async fn start(tb: &Testbed) -> Result<Self> {
        let install = kafka_install(tb)?;
        let dir = std::env::temp_dir().join(unique_name("routed-kafka"));
        std::fs::create_dir_all(dir.join("logs"))?;
        let (h1, plaintext_port) = free_port()?;
        let (h2, routed_port) = free_port()?;
        let (h3, controller_port) = free_port()?;
        let proxy = Proxy::start(&format!("127.0.0.1:{routed_port}")).await?;
        let data = dir.join("data");
        let props = format!(
            "# A private broker of routine-load-e2e (routed_broker.rs).
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{plaintext_port},ROUTED://127.0.0.1:{routed_port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{plaintext_port},ROUTED://{proxy}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,ROUTED:PLAINTEXT,CONTROLLER:PLAINTEXT
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
",
            proxy = proxy.addr(),
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
        let mut format = java(&["-Xmx256m"]);
        format
            .args([
                "kafka.tools.StorageTool",
                "format",
                &format!("--cluster-id={}", cluster_id()),
                "-c",
            ])
            .arg(&server_properties);
        Testbed::run(&mut format).context("formatting the routed broker's storage")?;
        drop((h1, h2, h3));
        let mut cmd = java(&["-Xms128m", "-Xmx512m"]);
        cmd.arg("kafka.Kafka").arg(&server_properties);
        let process = tb.spawn("routed-kafka", cmd)?;
        let mut broker = RoutedBroker {
            dir,
            plaintext_port,
            proxy,
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
                let direct: BaseConsumer = self.config().create()?;
                let routed: BaseConsumer = self.routed_config().create()?;
                let serves = |c: &BaseConsumer| {
                    c.fetch_metadata(None, Duration::from_secs(5))
                        .is_ok_and(|md| !md.brokers().is_empty())
                };
                if serves(&direct) && serves(&routed) {
                    return Ok(());
                }
            }
            let running = self.process.as_mut().is_some_and(|p| p.is_running());
            if !running || t0.elapsed() > timeout {
                let log = std::fs::read_to_string(&server_log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                bail!(
                    "the routed broker did not start within {timeout:?} (running: {running}); \
                     server log (last lines, newest first):\n{}",
                    tail.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// `127.0.0.1:<port>` of the direct listener (workers, harness).
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.plaintext_port)
    }

    /// The proxy's address, which the `ROUTED` listener advertises.
    pub fn routed_brokers(&self) -> String {
        self.proxy.addr()
    }

    /// A librdkafka config for the direct listener.
    pub fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.brokers());
        c
    }

    /// A librdkafka config for the routed listener (through the proxy).
    pub fn routed_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.routed_brokers());
        c
    }

    /// Creates a topic and waits until its metadata shows all partitions with leaders.
    pub async fn create_topic(&self, topic: &str, partitions: i32) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> =
            self.config().create().context("admin client")?;
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

    /// Produces UTF-8 lines to one partition over the direct listener, waiting for each
    /// delivery.
    pub async fn produce_lines(&self, topic: &str, partition: i32, lines: &[String]) -> Result<()> {
        let mut config = self.config();
        config
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "30000");
        let producer: FutureProducer = config.create().context("producer")?;
        for l in lines {
            producer
                .send(
                    FutureRecord::<(), str>::to(topic)
                        .payload(l.as_str())
                        .partition(partition),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| e)
                .with_context(|| format!("producing to {topic}"))?;
        }
        producer.flush(Duration::from_secs(30))?;
        Ok(())
    }
}

impl Drop for RoutedBroker {
    fn drop(&mut self) {
        if let Some(mut p) = self.process.take() {
            let _ = p.stop(Duration::from_secs(10));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
