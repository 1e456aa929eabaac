//! `routine-load-produce`: creates a topic (if missing) and produces messages to it, for the demo
//! and for trying jobs by hand.
//!
//! ```text
//! routine-load-produce --brokers HOST:PORT --topic T [--partitions N] --wikipedia ROWS [--from I]
//! routine-load-produce --brokers HOST:PORT --topic T [--partitions N] --stdin
//! ```
//! `--wikipedia` produces the reference's Wikipedia edit rows as CSV (1% bad rows, see
//! `routine_load_e2e::wikipedia`), round-robin over the partitions; `--stdin` produces one
//! message per input line. `--recreate` deletes the topic first (the demo starts from an empty
//! topic each time).

use std::io::BufRead;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

const USAGE: &str = "usage: routine-load-produce --brokers HOST:PORT --topic T [--partitions N] \
                     [--recreate] (--wikipedia ROWS [--from I] | --stdin)";

struct Args {
    brokers: String,
    topic: String,
    partitions: i32,
    wikipedia: Option<usize>,
    from: usize,
    recreate: bool,
}

fn parse_args() -> Result<Args> {
    let mut args = std::env::args().skip(1);
    let (mut brokers, mut topic, mut partitions) = (None, None, 1);
    let (mut wikipedia, mut from, mut stdin, mut recreate) = (None, 0, false, false);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "--brokers" => brokers = Some(value("--brokers")?),
            "--topic" => topic = Some(value("--topic")?),
            "--partitions" => partitions = value("--partitions")?.parse()?,
            "--wikipedia" => wikipedia = Some(value("--wikipedia")?.parse()?),
            "--from" => from = value("--from")?.parse()?,
            "--stdin" => stdin = true,
            "--recreate" => recreate = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    if wikipedia.is_some() == stdin {
        bail!("give exactly one of --wikipedia ROWS or --stdin\n{USAGE}");
    }
    Ok(Args {
        brokers: brokers.context("--brokers is required")?,
        topic: topic.context("--topic is required")?,
        partitions,
        wikipedia,
        from,
        recreate,
    })
}

async fn ensure_topic(brokers: &str, topic: &str, partitions: i32, recreate: bool) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("creating the Kafka admin client")?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    if recreate {
        for r in admin
            .delete_topics(&[topic], &opts)
            .await
            .with_context(|| format!("deleting topic {topic}"))?
        {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((t, e)) => bail!("deleting topic {t}: {e}"),
            }
        }
    }
    // A deleted topic disappears asynchronously: retry while it is still there.
    for _ in 0..60 {
        let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let results = admin
            .create_topics(&[new_topic], &opts)
            .await
            .with_context(|| format!("creating topic {topic}"))?;
        match results.into_iter().next() {
            Some(Ok(_)) | None => return Ok(()),
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) if !recreate => return Ok(()),
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => {
                tokio::time::sleep(Duration::from_millis(500)).await
            }
            Some(Err((t, e))) => bail!("creating topic {t}: {e}"),
        }
    }
    bail!("topic {topic} was still being deleted after 30 s")
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    ensure_topic(&args.brokers, &args.topic, args.partitions, args.recreate).await?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("message.timeout.ms", "60000")
        .create()
        .context("creating the Kafka producer")?;
    let lines: Vec<String> = match args.wikipedia {
        Some(n) => (args.from..args.from + n)
            .map(routine_load_e2e::wikipedia::row)
            .collect(),
        None => std::io::stdin()
            .lock()
            .lines()
            .collect::<std::io::Result<_>>()
            .context("reading stdin")?,
    };
    let partitions = args.partitions.max(1) as usize;
    for (c, chunk) in lines.chunks(5_000).enumerate() {
        // Enqueue a chunk (many in flight), then wait for its deliveries.
        let mut pending = Vec::with_capacity(chunk.len());
        for (i, l) in chunk.iter().enumerate() {
            let mut record = FutureRecord::<(), str>::to(&args.topic)
                .payload(l.as_str())
                .partition(((c * 5_000 + i) % partitions) as i32);
            loop {
                match producer.send_result(record) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err((e, _)) => bail!("producing to {}: {e}", args.topic),
                }
            }
        }
        for delivery in pending {
            delivery
                .await
                .context("the producer went away")?
                .map_err(|(e, _)| e)
                .with_context(|| format!("producing to {}", args.topic))?;
        }
    }
    println!(
        "produced {} messages to {} ({partitions} partitions)",
        lines.len(),
        args.topic
    );
    Ok(())
}
