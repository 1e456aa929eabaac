//! `format: avro` against the testbed's real Confluent-compatible schema registry (Apicurio's
//! ccompat API, started by `testbed.sh up` with ROUTINE_LOAD_SCHEMA_REGISTRY=1, which
//! `make testbed-up` sets): records written in the Confluent wire format under a registered
//! schema, the schema evolved mid-stream (a new version adds a field, a later one imports a record
//! from another subject by a schema reference), a message that is not
//! Avro and one naming an unknown schema id become error rows, and the table is read back with
//! the independent reader.

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use routine_load_e2e::installation::{Installation, JOB, TABLE, wait_for};
use routine_load_e2e::kafka::Listener;
use routine_load_e2e::{testbed_or_skip, unique_name};
use routine_load_worker::schema_registry::avro::types::Value as Avro;
use routine_load_worker::schema_registry::avro::{self, Schema};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);

/// `POST {registry}/subjects/{subject}/versions`: registers `schema`, which imports named types
/// from `references` (name, subject, version), and returns its id.
fn register(registry: &str, subject: &str, schema: &str, references: Value) -> u32 {
    let body = json!({ "schema": schema, "references": references }).to_string();
    let out = Command::new("curl")
        .args([
            "-sS",
            "--fail-with-body",
            "--max-time",
            "10",
            "-H",
            "Content-Type: application/vnd.schemaregistry.v1+json",
            "--data",
            &body,
            &format!("{registry}/subjects/{subject}/versions"),
        ])
        .output()
        .expect("curl");
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "registering {subject}: {answer}");
    let v: Value = serde_json::from_str(&answer).expect("registry answer");
    v["id"].as_u64().expect("schema id") as u32
}

/// `value` in the Confluent wire format: 0, the schema id (big-endian), the Avro datum.
fn framed(id: u32, schema: &str, value: Avro) -> Vec<u8> {
    let schema = Schema::parse_str(schema).expect("schema");
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    #[allow(deprecated)]
    out.extend(avro::to_avro_datum(&schema, value).expect("encode"));
    out
}

const V1: &str = r#"{"type": "record", "name": "order", "namespace": "shop", "fields": [
  {"name": "id", "type": "long"},
  {"name": "customer", "type": {"type": "record", "name": "customer", "fields": [
    {"name": "name", "type": "string"},
    {"name": "tier", "type": ["null", {"type": "enum", "name": "tier", "symbols": ["GOLD", "SILVER"]}], "default": null}]}},
  {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
  {"name": "day", "type": {"type": "int", "logicalType": "date"}},
  {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
  {"name": "tags", "type": {"type": "array", "items": "string"}}
]}"#;

/// V1 and a nullable `coupon`: a BACKWARD-compatible next version.
const V2: &str = r#"{"type": "record", "name": "order", "namespace": "shop", "fields": [
  {"name": "id", "type": "long"},
  {"name": "customer", "type": {"type": "record", "name": "customer", "fields": [
    {"name": "name", "type": "string"},
    {"name": "tier", "type": ["null", {"type": "enum", "name": "tier", "symbols": ["GOLD", "SILVER"]}], "default": null}]}},
  {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
  {"name": "day", "type": {"type": "int", "logicalType": "date"}},
  {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
  {"name": "tags", "type": {"type": "array", "items": "string"}},
  {"name": "coupon", "type": ["null", "string"], "default": null}
]}"#;

/// The customer record, as a subject of its own.
const CUSTOMER: &str = r#"{"type": "record", "name": "customer", "namespace": "shop", "fields": [
  {"name": "name", "type": "string"},
  {"name": "tier", "type": ["null", {"type": "enum", "name": "tier", "symbols": ["GOLD", "SILVER"]}], "default": null}]}"#;

/// V2 with the customer record imported by name from CUSTOMER's subject.
const V3_REFERENCING: &str = r#"{"type": "record", "name": "order", "namespace": "shop", "fields": [
  {"name": "id", "type": "long"},
  {"name": "customer", "type": "shop.customer"},
  {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
  {"name": "day", "type": {"type": "int", "logicalType": "date"}},
  {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
  {"name": "tags", "type": {"type": "array", "items": "string"}},
  {"name": "coupon", "type": ["null", "string"], "default": null}
]}"#;

/// Order `id`: customer c<id>, tier GOLD for odd ids (NULL for even), amount id * 10.25,
/// 2024-05-01, 2024-05-01 02:00:<id> UTC, and with `coupon` (V2) that field.
fn order(id: i64, coupon: Option<Option<&str>>) -> Avro {
    let null = || Box::new(Avro::Null);
    let tier = if id % 2 == 1 {
        Avro::Union(1, Box::new(Avro::Enum(0, "GOLD".into())))
    } else {
        Avro::Union(0, null())
    };
    let mut fields = vec![
        ("id".to_string(), Avro::Long(id)),
        (
            "customer".to_string(),
            Avro::Record(vec![
                ("name".to_string(), Avro::String(format!("c{id}"))),
                ("tier".to_string(), tier),
            ]),
        ),
        (
            "amount".to_string(),
            Avro::Decimal(((id * 1025) as i32).to_be_bytes().to_vec().into()),
        ),
        ("day".to_string(), Avro::Date(19_844)),
        (
            "at".to_string(),
            Avro::TimestampMillis(1_714_528_800_000 + id * 1_000),
        ),
        (
            "tags".to_string(),
            Avro::Array(vec![Avro::String(format!("t{id}"))]),
        ),
    ];
    if let Some(coupon) = coupon {
        let v = match coupon {
            None => Avro::Union(0, null()),
            Some(c) => Avro::Union(1, Box::new(Avro::String(c.into()))),
        };
        fields.push(("coupon".to_string(), v));
    }
    Avro::Record(fields)
}

async fn wait_counted(inst: &Installation, job: &str, loaded: i64, errors: i64) -> Value {
    wait_for(
        &format!("job {job}: {loaded} loaded, {errors} error rows"),
        WAIT,
        || async {
            let j = inst.get(JOB, job).await.map_err(|e| e.to_string())?;
            let s = &j["status"]["statistic"];
            if s["loadedRows"].as_i64() == Some(loaded) && s["errorRows"].as_i64() == Some(errors) {
                Ok(j)
            } else {
                Err(format!("status: {}", j["status"]))
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_job_loads_records_across_a_schema_change_from_the_registry() {
    let Some(tb) = testbed_or_skip("Avro job with a schema registry") else {
        return;
    };
    let Ok(registry) = tb.var("SCHEMA_REGISTRY_URL").map(str::to_string) else {
        panic!(
            "the testbed has no schema registry: start it with ROUTINE_LOAD_SCHEMA_REGISTRY=1 \
             e2e/testbed/testbed.sh up (make testbed-up does)"
        );
    };
    let inst = Installation::start(tb, "e2e-avro", true)
        .await
        .expect("installation");
    let topic = unique_name("avro-orders");
    inst.tb.create_topic(&topic, 1).await.expect("topic");
    let subject = format!("{topic}-value");
    let v1 = register(&registry, &subject, V1, json!([]));

    let dir = std::env::temp_dir().join(unique_name("avro-table"));
    let location = format!("file://{}", dir.display());
    inst.create(
        TABLE,
        json!({"metadata": {"name": "orders"}, "spec": {"location": location, "columns": [
            {"name": "id", "type": "BIGINT", "nullable": false},
            {"name": "customer", "type": "VARCHAR(16)"},
            {"name": "tier", "type": "VARCHAR(8)"},
            {"name": "amount", "type": "DECIMAL(10,2)"},
            {"name": "day", "type": "DATE"},
            {"name": "at", "type": "DATETIME"},
            {"name": "tags", "type": "STRING"},
            {"name": "coupon", "type": "VARCHAR(16)"},
            {"name": "label", "type": "VARCHAR(32)"}
        ]}}),
    )
    .await
    .expect("create Table");
    // The registry answers without authentication; the Secret's credentials are sent anyway,
    // which shows the worker reads them.
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "registry-credentials"},
        "stringData": {"username": "loader", "password": "not-checked"}
    }))
    .unwrap();
    Api::<Secret>::namespaced(inst.client.clone(), &inst.ns)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create Secret");
    inst.create(
        JOB,
        json!({"metadata": {"name": "orders-avro"}, "spec": {
            "table": "orders",
            "format": "avro",
            "schemaRegistry": {"url": registry, "credentialsSecret": {"name": "registry-credentials"}},
            "timezone": "Asia/Shanghai",
            "columns": ["id", "customer", "tier", "amount", "day", "at", "tags", "coupon",
                        "label = concat(customer, '/', ifnull(tier, '-'))"],
            "avroPaths": ["$.id", "$.customer.name", "$.customer.tier", "$.amount", "$.day",
                          "$.at", "$.tags", "$.coupon"],
            "maxErrorNumber": 10,
            "desiredConcurrentNumber": 1,
            "kafka": {
                "brokerList": inst.tb.var("KAFKA_BROKERS").unwrap(),
                "topic": topic,
                "defaultOffset": "OFFSET_BEGINNING"
            }
        }}),
    )
    .await
    .expect("create RoutineLoadJob");

    let produce = |payloads: Vec<Vec<u8>>| {
        let tb = inst.tb.clone();
        let topic = topic.clone();
        async move {
            tb.produce(
                Listener::Plaintext,
                &topic,
                payloads.into_iter().map(|p| (Some(0), None::<&[u8]>, p)),
            )
            .await
            .expect("produce")
        }
    };
    // Version 1, a message that is no Avro, and one naming a schema id the registry lacks.
    let mut unknown_id = framed(v1, V1, order(99, None));
    unknown_id[1..5].copy_from_slice(&987_654_321u32.to_be_bytes());
    produce(vec![
        framed(v1, V1, order(1, None)),
        framed(v1, V1, order(2, None)),
        br#"{"id": 3}"#.to_vec(),
        unknown_id,
    ])
    .await;
    let worker = unique_name("w");
    let w = inst.spawn_worker(&worker, &[]).expect("worker");
    wait_counted(&inst, "orders-avro", 2, 2).await;

    // The producer moves on to version 2 mid-stream.
    let v2 = register(&registry, &subject, V2, json!([]));
    assert_ne!(v1, v2, "a new schema version has a new id");
    produce(vec![
        framed(v2, V2, order(4, Some(Some("SPRING")))),
        framed(v2, V2, order(5, Some(None))),
        framed(v1, V1, order(6, None)),
    ])
    .await;
    wait_counted(&inst, "orders-avro", 5, 2).await;

    // Version 3 imports the customer record from a subject of its own (a schema reference):
    // the same bytes as version 2, a schema the worker assembles from two registry entries.
    let customer_subject = format!("{topic}-customer");
    register(&registry, &customer_subject, CUSTOMER, json!([]));
    let v3 = register(
        &registry,
        &subject,
        V3_REFERENCING,
        json!([{"name": "shop.customer", "subject": customer_subject, "version": 1}]),
    );
    produce(vec![framed(v3, V2, order(7, Some(Some("AUTUMN"))))]).await;
    let j = wait_counted(&inst, "orders-avro", 6, 2).await;
    assert_eq!(j["status"]["statistic"]["totalRows"], 8, "{}", j["status"]);

    let snap = inst.tb.read_delta(&location, None).expect("read table");
    let rows = snap.sorted_rows(&["id"]);
    let got: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!([
                r["id"],
                r["customer"],
                r["tier"],
                r["amount"],
                r["day"],
                r["at"],
                r["tags"],
                r["coupon"],
                r["label"]
            ])
        })
        .collect();
    let want = vec![
        json!([
            1,
            "c1",
            "GOLD",
            "10.25",
            "2024-05-01",
            "2024-05-01T10:00:01",
            r#"["t1"]"#,
            null,
            "c1/GOLD"
        ]),
        json!([
            2,
            "c2",
            null,
            "20.50",
            "2024-05-01",
            "2024-05-01T10:00:02",
            r#"["t2"]"#,
            null,
            "c2/-"
        ]),
        json!([
            4,
            "c4",
            null,
            "41.00",
            "2024-05-01",
            "2024-05-01T10:00:04",
            r#"["t4"]"#,
            "SPRING",
            "c4/-"
        ]),
        json!([
            5,
            "c5",
            "GOLD",
            "51.25",
            "2024-05-01",
            "2024-05-01T10:00:05",
            r#"["t5"]"#,
            null,
            "c5/GOLD"
        ]),
        json!([
            6,
            "c6",
            null,
            "61.50",
            "2024-05-01",
            "2024-05-01T10:00:06",
            r#"["t6"]"#,
            null,
            "c6/-"
        ]),
        json!([
            7,
            "c7",
            "GOLD",
            "71.75",
            "2024-05-01",
            "2024-05-01T10:00:07",
            r#"["t7"]"#,
            "AUTUMN",
            "c7/GOLD"
        ]),
    ];
    assert_eq!(got, want, "worker log:\n{}", w.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_specs_the_api_server_refuses_say_why() {
    let Some(tb) = testbed_or_skip("Avro job specs refused by the CRD's rules") else {
        return;
    };
    let inst = Installation::start(tb, "e2e-avro-cel", false)
        .await
        .expect("installation");
    let kafka = json!({"brokerList": "b:9092", "topic": "t"});
    let registry = json!({"url": "http://registry:8081"});
    let cases = [
        (
            json!({"format": "avro"}),
            "format: avro needs schemaRegistry",
        ),
        (
            json!({"format": "json", "schemaRegistry": registry}),
            "avroPaths and schemaRegistry apply only to format: avro",
        ),
        (
            json!({"avroPaths": ["$.a"]}),
            "avroPaths and schemaRegistry apply only to format: avro",
        ),
        (
            json!({"format": "avro", "schemaRegistry": {"url": "https://u:pw@registry:8081"}}),
            "without user:password@",
        ),
        (
            json!({"format": "avro", "schemaRegistry": {"url": "registry:8081"}}),
            "schemaRegistry.url must be http://host",
        ),
        (
            json!({"format": "avro", "schemaRegistry": registry, "jsonPaths": ["$.a"]}),
            "jsonPaths, jsonRoot and stripOuterArray apply only to format: json",
        ),
        (
            json!({"format": "avro", "schemaRegistry": registry, "columnSeparator": ","}),
            "apply only to format: csv",
        ),
    ];
    for (i, (fields, want)) in cases.into_iter().enumerate() {
        let mut spec = json!({"table": "t", "kafka": kafka});
        spec.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        let err = inst
            .create(
                JOB,
                json!({"metadata": {"name": format!("refused-{i}")}, "spec": spec.clone()}),
            )
            .await
            .expect_err(&format!("{spec} must be refused"));
        let text = format!("{err:#}");
        assert!(text.contains(want), "{spec}: want '{want}', got: {text}");
    }
    // The same fields with a registry are accepted.
    inst.create(
        JOB,
        json!({"metadata": {"name": "accepted"}, "spec": {
            "table": "t", "kafka": kafka, "format": "avro", "avroPaths": ["$.a"],
            "schemaRegistry": {"url": "https://registry:8081/apis/ccompat/v7",
                               "credentialsSecret": {"name": "s"}}
        }}),
    )
    .await
    .expect("a valid Avro job");
}
