//! PROPERTIES and FROM KAFKA properties: numeric bounds taken from the CRD, start offsets
//! given as times, and a warning for every property convert ignores.

use super::*;
use routine_load_api::RoutineLoadJob;
use routine_load_api::job::KafkaOffset;

const KAFKA: &str = r#"FROM KAFKA ("kafka_broker_list" = "b:9092", "kafka_topic" = "t")"#;

fn run(sql: &str) -> Result<Converted, String> {
    convert(&parse(sql)?, &ConvertOptions::default())
}

fn spec_json(c: &Converted) -> serde_json::Value {
    let job: RoutineLoadJob = serde_yaml::from_value(c.job.clone()).expect("typed job");
    serde_json::to_value(&job.spec).expect("json")
}

/// Each numeric property is checked against the bounds the CRD gives its spec field: the
/// bounds themselves pass and land in the spec, one step outside is refused naming them.
#[test]
fn numeric_properties_take_the_crds_bounds() {
    // The bounds the API declares, to show the CRD carries them (convert reads the CRD).
    let declared: &[(&str, f64, Option<f64>)] = &[
        ("desiredConcurrentNumber", 1.0, None),
        ("maxBatchInterval", 5.0, Some(60.0)),
        ("maxBatchRows", 200_000.0, Some(100_000_000.0)),
        ("maxBatchSize", 104_857_600.0, Some(1_073_741_824.0)),
        ("maxErrorNumber", 0.0, None),
        ("maxFilterRatio", 0.0, Some(1.0)),
    ];
    assert_eq!(declared.len(), NUMERIC_PROPERTIES.len());
    for &(property, field) in NUMERIC_PROPERTIES {
        let &(_, min, max) = declared
            .iter()
            .find(|(f, _, _)| *f == field)
            .unwrap_or_else(|| panic!("{field} not declared here"));
        let (crd_min, crd_max) = crd_bounds(field);
        assert_eq!(crd_min, min, "{field}: the CRD's minimum");
        if let Some(max) = max {
            assert_eq!(crd_max, max, "{field}: the CRD's maximum");
        }
        let ratio = field == "maxFilterRatio";
        let show = |x: f64| {
            if ratio {
                x.to_string()
            } else {
                (x as i64).to_string()
            }
        };
        let step = if ratio { 0.01 } else { 1.0 };
        let sql = |v: &str| {
            format!(r#"CREATE ROUTINE LOAD j ON t PROPERTIES ("{property}" = "{v}") {KAFKA}"#)
        };
        // The bounds pass (an integer field without a maximum: its type's largest value).
        for edge in [crd_min, crd_max] {
            let c = run(&sql(&show(edge))).unwrap_or_else(|e| panic!("{property} = {edge}: {e}"));
            assert_eq!(
                spec_json(&c)[field].as_f64(),
                Some(edge),
                "{property} = {edge}"
            );
        }
        // One step outside is refused, naming the bound.
        let below = run(&sql(&show(crd_min - step))).expect_err(property);
        assert!(below.contains(&format!("\"{property}\"")), "{below}");
        assert!(below.contains(&show(crd_min)), "{property}: {below}");
        if let Some(max) = max {
            let above = run(&sql(&show(max + step))).expect_err(property);
            assert!(
                above.contains(&format!("must be {} to {}", show(min), show(max)))
                    || above.contains(&format!("from {} to {}", show(min), show(max))),
                "{property}: {above}"
            );
        }
    }
    let err = run(&format!(
        r#"CREATE ROUTINE LOAD j ON t PROPERTIES ("max_batch_rows" = "lots") {KAFKA}"#
    ))
    .unwrap_err();
    assert!(err.contains("expected an integer"), "{err}");
}

/// StarRocks' datetime form of a start offset ("2024-01-01 00:00:00", in the job's time zone)
/// is the job's start-by-time offset, for the default and per partition.
#[test]
fn offsets_given_as_times_start_at_that_time() {
    let at = |s: &str| {
        KafkaOffset::Time(
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").expect("time"),
        )
    };
    type Case = (
        &'static str,
        Result<(Vec<KafkaOffset>, Option<KafkaOffset>), &'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            r#""property.kafka_default_offsets" = "2024-01-01 00:00:00""#,
            Ok((vec![], Some(at("2024-01-01 00:00:00")))),
        ),
        (
            r#""kafka_partitions" = "0,1", "kafka_offsets" = "2024-01-01 00:00:00, 2024-06-30 23:59:59""#,
            Ok((
                vec![at("2024-01-01 00:00:00"), at("2024-06-30 23:59:59")],
                None,
            )),
        ),
        (
            r#""kafka_partitions" = "0,1,2", "kafka_offsets" = "OFFSET_BEGINNING,2021-05-22 11:00:00,42", "property.kafka_default_offsets" = "OFFSET_END""#,
            Ok((
                vec![
                    KafkaOffset::Beginning,
                    at("2021-05-22 11:00:00"),
                    KafkaOffset::At(42),
                ],
                Some(KafkaOffset::End),
            )),
        ),
        (
            r#""property.kafka_default_offsets" = "2024-02-30 00:00:00""#,
            Err(
                "offset \"2024-02-30 00:00:00\" is not a number, OFFSET_BEGINNING, OFFSET_END or a time YYYY-MM-DD HH:MM:SS",
            ),
        ),
        (
            r#""property.kafka_default_offsets" = "2024-01-01""#,
            Err("offset \"2024-01-01\" is not a number"),
        ),
        (
            r#""property.kafka_default_offsets" = "2024-01-01T00:00:00""#,
            Err("offset \"2024-01-01T00:00:00\" is not a number"),
        ),
    ];
    for (props, want) in cases {
        let sql = format!(
            r#"CREATE ROUTINE LOAD j ON t PROPERTIES ("timezone" = "Asia/Shanghai") FROM KAFKA ("kafka_broker_list" = "b:9092", "kafka_topic" = "t", {props})"#
        );
        match (run(&sql), want) {
            (Ok(c), Ok((offsets, default))) => {
                let job: RoutineLoadJob = serde_yaml::from_value(c.job.clone()).unwrap();
                assert_eq!(job.spec.kafka.offsets, offsets, "{props}");
                assert_eq!(job.spec.kafka.default_offset, default, "{props}");
                assert_eq!(job.spec.timezone, "Asia/Shanghai");
                // The YAML keeps StarRocks' form.
                let yaml = c.to_yaml("head").unwrap();
                for o in offsets.iter().chain(&default) {
                    if let KafkaOffset::Time(t) = o {
                        let text = t.format("%Y-%m-%d %H:%M:%S").to_string();
                        assert!(yaml.contains(&text), "{yaml}");
                    }
                }
            }
            (Err(e), Err(w)) => assert!(e.contains(w), "{props}: {e}"),
            (got, want) => panic!("{props}: got {:?}, wanted {want:?}", got.map(|c| c.job)),
        }
    }
}

/// Every property convert accepts without carrying it into the job gets a warning that names
/// it; none disappears silently.
#[test]
fn every_ignored_property_is_named_in_a_warning() {
    let mut cases: Vec<(String, String)> = Vec::new();
    for p in IGNORED_PROPERTIES {
        cases.push((
            format!(r#"CREATE ROUTINE LOAD j ON t PROPERTIES ("{p}" = "3") {KAFKA}"#),
            format!("\"{p}\""),
        ));
    }
    for p in ENFORCED_CONSUMER_PROPERTIES {
        cases.push((
            format!(
                r#"CREATE ROUTINE LOAD j ON t FROM KAFKA ("kafka_broker_list" = "b:9092", "kafka_topic" = "t", "property.{p}" = "x")"#
            ),
            format!("\"property.{p}\""),
        ));
    }
    cases.push((
        format!(
            r#"CREATE ROUTINE LOAD j ON t PROPERTIES ("partial_update_mode" = "column") {KAFKA}"#
        ),
        "\"partial_update_mode\"".into(),
    ));
    cases.push((
        r#"CREATE ROUTINE LOAD j ON t FROM KAFKA ("kafka_broker_list" = "b:9092", "kafka_topic" = "t", "confluent.schema.registry.url" = "http://r:8081")"#.into(),
        "\"confluent.schema.registry.url\"".into(),
    ));
    for (sql, name) in cases {
        let c = run(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let named: Vec<&String> = c
            .warnings
            .iter()
            .filter(|w| w.contains(&name) && w.contains("ignored"))
            .collect();
        assert_eq!(named.len(), 1, "{sql}: {:?}", c.warnings);
        // Nothing of it reaches the job.
        let spec = spec_json(&c);
        let props = &spec["kafka"]["properties"];
        let bare = name.trim_matches('"').trim_start_matches("property.");
        assert!(props.get(bare).is_none(), "{sql}: {spec}");
    }
    // All at once: one warning each.
    let sql = format!(
        r#"CREATE ROUTINE LOAD j ON t PROPERTIES ({}) FROM KAFKA ("kafka_broker_list" = "b:9092", "kafka_topic" = "t", {})"#,
        IGNORED_PROPERTIES
            .iter()
            .map(|p| format!("\"{p}\" = \"1\""))
            .collect::<Vec<_>>()
            .join(", "),
        ENFORCED_CONSUMER_PROPERTIES
            .iter()
            .map(|p| format!("\"property.{p}\" = \"x\""))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let c = run(&sql).unwrap();
    assert_eq!(
        c.warnings.len(),
        IGNORED_PROPERTIES.len() + ENFORCED_CONSUMER_PROPERTIES.len(),
        "{:?}",
        c.warnings
    );
}

/// partial_update and merge_condition map to partialUpdate and mergeCondition; a bad boolean is
/// refused.
#[test]
fn partial_update_and_merge_condition_map_to_the_job() {
    // The PROPERTIES, then the job's partialUpdate and mergeCondition.
    let cases: &[(&str, bool, Option<&str>)] = &[
        (r#""partial_update" = "true""#, true, None),
        (r#""partial_update" = "FALSE""#, false, None),
        (r#""merge_condition" = "version""#, false, Some("version")),
        (
            r#""partial_update" = "true", "partial_update_mode" = "row", "merge_condition" = "ts""#,
            true,
            Some("ts"),
        ),
    ];
    for (props, partial, condition) in cases {
        let sql = format!(r#"CREATE ROUTINE LOAD j ON t PROPERTIES ({props}) {KAFKA}"#);
        let c = run(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let spec = spec_json(&c);
        let job: RoutineLoadJob = serde_yaml::from_value(c.job.clone()).unwrap();
        assert_eq!(
            spec["partialUpdate"].as_bool().unwrap_or(false),
            *partial,
            "{sql}: {spec}"
        );
        assert_eq!(job.spec.partial_update, *partial, "{sql}");
        assert_eq!(job.spec.merge_condition.as_deref(), *condition, "{sql}");
        let mode_warned = c
            .warnings
            .iter()
            .any(|w| w.contains("\"partial_update_mode\"") && w.contains("ignored"));
        assert_eq!(
            mode_warned,
            props.contains("partial_update_mode"),
            "{sql}: {:?}",
            c.warnings
        );
    }
    let err = run(&format!(
        r#"CREATE ROUTINE LOAD j ON t PROPERTIES ("partial_update" = "yes") {KAFKA}"#
    ))
    .unwrap_err();
    assert!(
        err.contains("property \"partial_update\" = \"yes\": expected true or false"),
        "{err}"
    );
}

/// Kafka client properties written among PROPERTIES are read as FROM KAFKA's, with a warning;
/// given in both places they are refused.
#[test]
fn kafka_properties_among_properties_move_to_from_kafka() {
    let c = run(&format!(
        r#"CREATE ROUTINE LOAD j ON t PROPERTIES ("property.security.protocol" = "ssl", "property.kafka_default_offsets" = "OFFSET_BEGINNING", "property.sasl.password" = "pw") {KAFKA}"#
    ))
    .unwrap();
    let job: RoutineLoadJob = serde_yaml::from_value(c.job.clone()).unwrap();
    assert_eq!(
        job.spec
            .kafka
            .properties
            .get("security.protocol")
            .map(String::as_str),
        Some("ssl")
    );
    assert_eq!(job.spec.kafka.default_offset, Some(KafkaOffset::Beginning));
    assert!(!job.spec.kafka.properties.contains_key("sasl.password"));
    assert!(c.secret.is_some());
    assert_eq!(
        c.warnings
            .iter()
            .filter(|w| w.contains("is a Kafka client property: read as if given in FROM KAFKA"))
            .count(),
        3,
        "{:?}",
        c.warnings
    );
    let err = run(
        r#"CREATE ROUTINE LOAD j ON t PROPERTIES ("property.client.id" = "a") FROM KAFKA ("kafka_broker_list" = "b", "kafka_topic" = "t", "property.client.id" = "b")"#,
    )
    .unwrap_err();
    assert!(
        err.contains("\"property.client.id\" is given both in PROPERTIES and in FROM KAFKA"),
        "{err}"
    );
}

/// An Avro job's paths given as "jsonpaths" (as StarRocks' reference writes them) are its
/// avroPaths; INCLUDE METADATA without AS names the column like the key; a comma before the
/// closing parenthesis of PROPERTIES is accepted.
#[test]
fn documentation_spellings_are_accepted() {
    let c = run(
        r#"CREATE ROUTINE LOAD j ON t PROPERTIES ("format" = "avro", "jsonpaths" = "[\"$.id\", \"$.data.y\"]",)
           FROM KAFKA ("kafka_broker_list" = "b", "kafka_topic" = "t", "confluent.schema.registry.url" = "http://r:8081",)"#,
    )
    .unwrap();
    let job: RoutineLoadJob = serde_yaml::from_value(c.job.clone()).unwrap();
    assert_eq!(
        job.spec.avro_paths,
        Some(vec!["$.id".to_string(), "$.data.y".to_string()])
    );
    assert_eq!(job.spec.json_paths, None);
    let c = run(&format!(
        "CREATE ROUTINE LOAD j ON t INCLUDE METADATA (TOPIC, KEY AS k) COLUMNS (a) PROPERTIES (\"format\" = \"json\") {KAFKA}"
    ))
    .unwrap();
    let job: RoutineLoadJob = serde_yaml::from_value(c.job.clone()).unwrap();
    let m = job.spec.include_metadata.expect("includeMetadata");
    assert_eq!(m.topic.as_deref(), Some("TOPIC"));
    assert_eq!(m.key.as_deref(), Some("k"));
    // COLUMNS keeps refusing an empty entry.
    let err = run(&format!("CREATE ROUTINE LOAD j ON t COLUMNS (a, ) {KAFKA}")).unwrap_err();
    assert!(err.contains("an entry of COLUMNS after ','"), "{err}");
}
