//! Produce/consume round trips through the testbed's Apache Kafka broker with rdkafka, over the
//! PLAINTEXT listener and over the SSL listener (verified against the testbed CA).

use std::time::Duration;

use routine_load_e2e::kafka::Listener;
use routine_load_e2e::{testbed_or_skip, unique_name};

async fn round_trip(listener: Listener) {
    let Some(tb) = testbed_or_skip(&format!("kafka round trip over {listener:?}")) else {
        return;
    };
    let topic = unique_name(&format!("e2e-{listener:?}").to_lowercase());
    tb.create_topic(&topic, 2).await.expect("create topic");

    let lines: Vec<String> = (0..50)
        .map(|i| format!("{i},name-{i},{}", i * 10))
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let offsets = tb
        .produce_lines(listener, &topic, 1, &refs)
        .await
        .expect("produce");
    assert_eq!(
        offsets,
        (0..50).collect::<Vec<i64>>(),
        "offsets of one partition are dense from 0"
    );

    // Keyed records through the partitioner, too.
    let keyed = tb
        .produce(
            listener,
            &topic,
            (0..10).map(|i| (None, Some(format!("k{i}")), format!("v{i}"))),
        )
        .await
        .expect("produce keyed");
    assert_eq!(keyed.len(), 10);

    // Read back from the middle of the partition with an explicit offset, then all of it.
    let tail = tb
        .consume(listener, &topic, 1, 45, 5, Duration::from_secs(30))
        .expect("consume tail");
    assert_eq!(
        tail.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![45, 46, 47, 48, 49]
    );
    assert_eq!(tail[0].payload_str(), "45,name-45,450");

    let keyed_in_p1 = keyed.iter().filter(|(p, _)| *p == 1).count();
    let all = tb
        .consume(
            listener,
            &topic,
            1,
            0,
            50 + keyed_in_p1,
            Duration::from_secs(30),
        )
        .expect("consume all");
    let got: Vec<&str> = all.iter().take(50).map(|r| r.payload_str()).collect();
    assert_eq!(got, refs);
    let (low, high) = tb.watermarks(&topic, 1).expect("watermarks");
    assert_eq!((low, high), (0, 50 + keyed_in_p1 as i64));
}

#[tokio::test]
async fn kafka_round_trip_plaintext() {
    round_trip(Listener::Plaintext).await;
}

#[tokio::test]
async fn kafka_round_trip_ssl() {
    round_trip(Listener::Ssl).await;
}

/// The SSL listener really is TLS with a certificate that only the testbed CA vouches for: a
/// client that trusts another CA can't connect.
#[tokio::test]
async fn kafka_ssl_rejects_an_untrusted_certificate() {
    let Some(tb) = testbed_or_skip("kafka ssl rejects untrusted certificate") else {
        return;
    };
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let dir = std::env::temp_dir().join(unique_name("other-ca"));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    let st = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=other",
        ])
        .arg("-keyout")
        .arg(dir.join("ca.key"))
        .arg("-out")
        .arg(&ca)
        .output()
        .expect("openssl");
    assert!(st.status.success());
    let mut c = tb.kafka_config(Listener::Ssl).unwrap();
    c.set("ssl.ca.location", ca.to_str().unwrap());
    let consumer: BaseConsumer = c.create().unwrap();
    let md = consumer.fetch_metadata(None, Duration::from_secs(5));
    assert!(
        md.is_err(),
        "metadata over SSL with an untrusted CA must fail, got {:?}",
        md.map(|m| m.orig_broker_name().to_string())
    );
    let _ = std::fs::remove_dir_all(dir);
}
