use super::*;
use routine_load_api::load_plan::LoadPlan;
use routine_load_api::reference::WIKIPEDIA_TABLE_YAML;
use routine_load_api::{RoutineLoadJob, TableSpec};

/// The reference's quick start statement, verbatim.
const REFERENCE: &str = routine_load_api::reference::WIKIPEDIA_CREATE_ROUTINE_LOAD;

fn run(sql: &str) -> Result<Converted, String> {
    convert(&parse(sql)?, &ConvertOptions::default())
}

fn typed(c: &Converted) -> RoutineLoadJob {
    serde_yaml::from_value(c.job.clone()).expect("typed job")
}

#[test]
fn reference_statement_parses() {
    let st = parse(REFERENCE).unwrap();
    assert_eq!(st.database, None);
    assert_eq!(st.job, "routine_load_wikipedia");
    assert_eq!(st.table, "routine_wiki_edit");
    assert_eq!(st.column_separator.as_deref(), Some(","));
    assert_eq!(
        st.columns,
        [
            "event_time",
            "channel",
            "user",
            "is_anonymous",
            "is_minor",
            "is_new",
            "is_robot",
            "is_unpatrolled",
            "delta",
            "added",
            "deleted"
        ]
    );
    assert_eq!(
        st.properties,
        [
            ("desired_concurrent_number".to_string(), "1".to_string()),
            ("max_error_number".to_string(), "1000".to_string())
        ]
    );
    assert_eq!(
        st.kafka,
        [
            (
                "kafka_broker_list".to_string(),
                "localhost:9092".to_string()
            ),
            ("kafka_topic".to_string(), "starrocks-load".to_string())
        ]
    );
}

#[test]
fn reference_statement_converts_to_the_readme_job() {
    let c = run(REFERENCE).unwrap();
    assert_eq!(c.name, "routine-load-wikipedia");
    assert_eq!(c.table, "routine-wiki-edit");
    assert!(c.secret.is_none());
    let job = typed(&c);
    assert_eq!(job.metadata.name.as_deref(), Some("routine-load-wikipedia"));
    assert_eq!(job.metadata.namespace, None);
    let readme: routine_load_api::RoutineLoadJobSpec = serde_yaml::from_str(
        r#"
table: routine-wiki-edit
columnSeparator: ","
columns: [event_time, channel, user, is_anonymous, is_minor, is_new, is_robot, is_unpatrolled, delta, added, deleted]
desiredConcurrentNumber: 1
maxErrorNumber: 1000
kafka:
  brokerList: localhost:9092
  topic: starrocks-load
"#,
    )
    .unwrap();
    assert_eq!(job.spec, readme, "the README's quick start job");
    let yaml = c.to_yaml("CREATE ROUTINE LOAD ...").unwrap();
    assert!(yaml.contains("kind: RoutineLoadJob"), "{yaml}");
    assert!(yaml.contains("columnSeparator: ','"), "{yaml}");
}

#[test]
fn reference_job_plans_against_the_reference_table() {
    let c = run(REFERENCE).unwrap();
    let yaml = c.to_yaml("x").unwrap();
    // What a user applies: every document of the output.
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let job: RoutineLoadJob = serde_yaml::from_value(docs.last().unwrap().clone()).unwrap();
    let table: TableSpec = serde_yaml::from_str(WIKIPEDIA_TABLE_YAML).unwrap();
    let plan = LoadPlan::build(&job.spec, &job.spec.table, &table).expect("plans");
    assert_eq!(plan.source_fields.len(), 11);
    assert_eq!(plan.csv.column_separator, b",");
    assert!(plan.strict_mode);
}

#[test]
fn database_names_the_namespace() {
    let c = run(&REFERENCE.replace(
        "LOAD routine_load_wikipedia",
        "LOAD load_test.routine_load_wikipedia",
    ))
    .unwrap();
    assert_eq!(c.namespace.as_deref(), Some("load-test"));
    assert_eq!(typed(&c).metadata.namespace.as_deref(), Some("load-test"));
    assert!(c.notes.iter().any(|w| w.contains("namespace 'load-test'")));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // Without a database, --namespace applies.
    let c = convert(
        &parse(REFERENCE).unwrap(),
        &ConvertOptions {
            namespace: Some("ns1".into()),
            include_secrets: false,
        },
    )
    .unwrap();
    assert_eq!(typed(&c).metadata.namespace.as_deref(), Some("ns1"));
}

/// Every property the API has, quoting styles, comments, case, escapes.
#[test]
fn every_property_maps() {
    let sql = r#"
-- a comment
create routine load `db_1`.`job_1` on `orders` /* block
comment */
COLUMNS TERMINATED BY '\x01',
ROWS TERMINATED BY "\n",
columns (k, `v`, tmp, `total` = cast(tmp as int) * 2, label = concat(v, "-x", 'it''s')),
where k > 10 and v != "skip", # trailing comment
PARTITION ("dt=2024-05-01", `dt=2024-05-02`)
PROPERTIES (
  "desired_concurrent_number" = "5",
  'max_batch_interval' = '20',
  "MAX_BATCH_ROWS" = "300000",
  "max_batch_size" = "209715200",
  "max_error_number" = "10",
  "max_filter_ratio" = "0.5",
  "strict_mode" = "FALSE",
  "timezone" = "Asia/Shanghai",
  "format" = "CSV",
  "enclose" = "\"",
  "escape" = "\\",
  "trim_space" = "true"
)
FROM KAFKA (
  "kafka_broker_list" = "b1:9092,b2:9092",
  "kafka_topic" = "orders",
  "kafka_partitions" = "0, 1,2",
  "kafka_offsets" = "OFFSET_BEGINNING,offset_end,42",
  "property.kafka_default_offsets" = "OFFSET_BEGINNING",
  "property.security.protocol" = "SASL_SSL",
  "property.sasl.mechanism" = "SCRAM-SHA-512",
  "property.sasl.username" = "loader",
  "property.sasl.password" = "hunter2",
  "property.ssl.ca.location" = "FILE:ca.pem",
  "Property.client.id" = "rl"
)"#;
    let c = run(sql).unwrap();
    let job = typed(&c);
    let s = &job.spec;
    assert_eq!(c.namespace.as_deref(), Some("db-1"));
    assert_eq!(job.metadata.name.as_deref(), Some("job-1"));
    assert_eq!(s.table, "orders");
    assert_eq!(s.column_separator.as_deref(), Some(r"\x01"));
    assert_eq!(s.row_delimiter.as_deref(), Some(r"\n"));
    assert_eq!(
        s.columns,
        [
            "k",
            "v",
            "tmp",
            "total = cast(tmp as int) * 2",
            "label = concat(v, '-x', 'it''s')"
        ]
    );
    assert_eq!(s.where_expr.as_deref(), Some("k > 10 and v != 'skip'"));
    assert_eq!(s.partitions, ["dt=2024-05-01", "dt=2024-05-02"]);
    assert_eq!(s.desired_concurrent_number, 5);
    assert_eq!(s.max_batch_interval, 20);
    assert_eq!(s.max_batch_rows, 300_000);
    assert_eq!(s.max_batch_size, 209_715_200);
    assert_eq!(s.max_error_number, 10);
    assert_eq!(s.max_filter_ratio, 0.5);
    assert!(!s.strict_mode);
    assert_eq!(s.timezone, "Asia/Shanghai");
    assert_eq!(s.format, routine_load_api::job::DataFormat::Csv);
    assert_eq!(s.enclose.as_deref(), Some("\""));
    assert_eq!(s.escape.as_deref(), Some("\\"));
    assert_eq!(s.trim_space, Some(true));
    let k = &s.kafka;
    assert_eq!(k.broker_list, "b1:9092,b2:9092");
    assert_eq!(k.topic, "orders");
    assert_eq!(k.partitions, [0, 1, 2]);
    use routine_load_api::job::KafkaOffset;
    assert_eq!(
        k.offsets,
        [
            KafkaOffset::Beginning,
            KafkaOffset::End,
            KafkaOffset::At(42)
        ]
    );
    assert_eq!(k.default_offset, Some(KafkaOffset::Beginning));
    let props: Vec<(&str, &str)> = k
        .properties
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(
        props,
        [
            ("client.id", "rl"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "loader"),
            ("security.protocol", "SASL_SSL"),
        ],
        "no secret in the spec"
    );
    assert_eq!(
        k.credentials_secret.as_ref().map(|s| s.name.as_str()),
        Some("job-1-kafka-credentials")
    );
    let secret = c.secret.clone().expect("secret stub");
    assert_eq!(secret["kind"], "Secret");
    assert_eq!(secret["metadata"]["namespace"], "db-1");
    assert_eq!(secret["stringData"]["sasl.password"], SECRET_PLACEHOLDER);
    assert_eq!(secret["stringData"]["ssl.ca.pem"], SECRET_PLACEHOLDER);
    let yaml = c.to_yaml("head").unwrap();
    assert!(!yaml.contains("hunter2"), "{yaml}");
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("sasl.password") && w.contains("job-1-kafka-credentials")),
        "{:?}",
        c.warnings
    );
    // --include-secrets copies the value into the Secret (never into the job).
    let c = convert(
        &parse(sql).unwrap(),
        &ConvertOptions {
            namespace: None,
            include_secrets: true,
        },
    )
    .unwrap();
    assert_eq!(c.secret.unwrap()["stringData"]["sasl.password"], "hunter2");
    assert!(!serde_yaml::to_string(&c.job).unwrap().contains("hunter2"));
}

#[test]
fn json_jobs_map_json_options() {
    let sql = r#"CREATE ROUTINE LOAD j ON t COLUMNS (a, b)
        PROPERTIES ("format" = "json", "jsonpaths" = "[\"$.a\", \"$.x.b\"]", "json_root" = "$.data",
                    "strip_outer_array" = "true")
        FROM KAFKA ("kafka_broker_list" = "b:9092", "kafka_topic" = "t");"#;
    let s = typed(&run(sql).unwrap()).spec;
    assert_eq!(s.format, routine_load_api::job::DataFormat::Json);
    assert_eq!(
        s.json_paths,
        Some(vec!["$.a".to_string(), "$.x.b".to_string()])
    );
    assert_eq!(s.json_root.as_deref(), Some("$.data"));
    assert_eq!(s.strip_outer_array, Some(true));
}

#[test]
fn separators_keep_their_escapes() {
    let cases = [
        (r#""\t""#, r"\t"),
        (r#"'\x01'"#, r"\x01"),
        (r#""|""#, "|"),
        (r#"'\''"#, "'"),
        (r#""""""#, "\""),
        (r#""\\""#, r"\\"),
    ];
    for (literal, want) in cases {
        let sql = format!(
            "CREATE ROUTINE LOAD j ON t COLUMNS TERMINATED BY {literal} FROM KAFKA (\"kafka_broker_list\"=\"b:1\", \"kafka_topic\"=\"t\")"
        );
        let s = typed(&run(&sql).unwrap()).spec;
        assert_eq!(s.column_separator.as_deref(), Some(want), "{literal}");
    }
}

#[test]
fn bad_statements_get_clear_errors() {
    let kafka = r#"FROM KAFKA ("kafka_broker_list" = "b:9092", "kafka_topic" = "t")"#;
    let cases: Vec<(String, &str)> = vec![
        (
            format!(r#"CREATE ROUTINE LOAD j ON t PROPERTIES ("bogus" = "1", "max_batch_rows" = "300000", "other" = "x") {kafka}"#),
            r#"unknown or unsupported properties "bogus", "other""#,
        ),
        (
            r#"CREATE ROUTINE LOAD j ON t PROPERTIES ("format" = "avro") FROM KAFKA ("kafka_broker_list" = "b", "kafka_topic" = "t", "confluent.schema.registry.url" = "x")"#.into(),
            r#""confluent.schema.registry.url" = "x": expected http://host:port"#,
        ),
        (
            format!(r#"CREATE ROUTINE LOAD j ON t PROPERTIES ("max_batch_interval" = "100") {kafka}"#),
            r#""max_batch_interval" = "100": must be 5 to 60"#,
        ),
        (
            format!(r#"CREATE ROUTINE LOAD j ON t PROPERTIES ("max_batch_rows" = "10") {kafka}"#),
            "must be 200000 to 100000000",
        ),
        (
            format!(r#"CREATE ROUTINE LOAD j ON t PROPERTIES ("format" = "protobuf") {kafka}"#),
            "only csv, json and avro",
        ),
        (
            format!(r#"CREATE ROUTINE LOAD j ON t PROPERTIES ("format" = "avro") {kafka}"#),
            "needs \"confluent.schema.registry.url\"",
        ),
        (
            format!(r#"CREATE ROUTINE LOAD j ON t PROPERTIES ("format" = "json", "avro_paths" = "[\"$.a\"]") {kafka}"#),
            "\"avro_paths\" applies only to \"format\" = \"avro\"",
        ),
        (
            r#"CREATE ROUTINE LOAD j ON t PROPERTIES ("format" = "avro", "jsonpaths" = "[\"$.a\"]", "avro_paths" = "[\"$.b\"]") FROM KAFKA ("kafka_broker_list" = "b", "kafka_topic" = "t", "confluent.schema.registry.url" = "http://r:8081")"#.into(),
            "\"jsonpaths\" and \"avro_paths\" are both given",
        ),
        (
            r#"CREATE ROUTINE LOAD j ON t COLUMNS TERMINATED BY "," PROPERTIES ("format" = "avro") FROM KAFKA ("kafka_broker_list" = "b", "kafka_topic" = "t", "confluent.schema.registry.url" = "http://r:8081")"#.into(),
            "applies only to format csv, not avro",
        ),
        (
            format!(r#"CREATE ROUTINE LOAD j ON t PROPERTIES ("strict_mode" = "yes") {kafka}"#),
            "expected true or false",
        ),
        (
            format!(r#"CREATE ROUTINE LOAD j ON t PROPERTIES ("jsonpaths" = "[\"$.a\"]") {kafka}"#),
            "applies only to \"format\" = \"json\"",
        ),
        (
            format!(r#"CREATE ROUTINE LOAD j ON t PARTITION (p1, p2) {kafka}"#),
            "'p1' is a StarRocks partition name",
        ),
        (
            format!(r#"CREATE ROUTINE LOAD j ON t TEMPORARY PARTITION (tp1) {kafka}"#),
            "no temporary partitions",
        ),
        (
            r#"CREATE ROUTINE LOAD j ON t FROM KAFKA ("kafka_topic" = "t")"#.into(),
            "\"kafka_broker_list\" is required",
        ),
        (
            r#"CREATE ROUTINE LOAD j ON t FROM KAFKA ("kafka_broker_list" = "b", "kafka_topic" = "t", "kafka_partitions" = "0,1", "kafka_offsets" = "0")"#.into(),
            "one offset per partition",
        ),
        (
            r#"CREATE ROUTINE LOAD j ON t FROM KAFKA ("kafka_broker_list" = "b", "kafka_topic" = "t", "kafka_partitions" = "0", "kafka_offsets" = "2024-01-01 25:00:00")"#.into(),
            "is not a number, OFFSET_BEGINNING, OFFSET_END or a time YYYY-MM-DD HH:MM:SS",
        ),
        (
            format!("CREATE ROUTINE LOAD j ON t COLUMNS (a, b {kafka}"),
            "expected ')' closing COLUMNS at the end",
        ),
        (
            format!("CREATE ROUTINE LOAD j ON t COLUMNS TERMINATED BY x {kafka}"),
            "expected a quoted column separator at line 1, column 50 ('x')",
        ),
        (
            format!("CREATE ROUTINE LOAD j t {kafka}"),
            "expected ON at line 1, column 23 ('t')",
        ),
        (
            format!("CREATE ROUTINE LOAD j ON t LIMIT 5 {kafka}"),
            "expected COLUMNS TERMINATED BY, ROWS TERMINATED BY",
        ),
        (
            "CREATE ROUTINE LOAD j ON t FROM PULSAR (\"a\" = \"b\")".into(),
            "expected KAFKA after FROM",
        ),
        (
            format!("CREATE ROUTINE LOAD j ON t {kafka} extra"),
            "expected the end of the statement",
        ),
        (
            "CREATE ROUTINE LOAD j ON t COLUMNS TERMINATED BY \"x".into(),
            "unterminated string",
        ),
        (
            format!(r#"CREATE ROUTINE LOAD j ON t PROPERTIES ("timezone" = "UTC", "TIMEZONE" = "UTC") {kafka}"#),
            "\"timezone\" is given twice",
        ),
        (
            format!(r#"CREATE ROUTINE LOAD j ON t PROPERTIES ("format" = "json") COLUMNS TERMINATED BY "," {kafka}"#),
            "expected FROM",
        ),
        (
            format!(r#"CREATE ROUTINE LOAD j ON t COLUMNS TERMINATED BY "," PROPERTIES ("format" = "json") {kafka}"#),
            "COLUMNS TERMINATED BY applies only to format csv",
        ),
        (
            format!("CREATE ROUTINE LOAD j.k.l ON t {kafka}"),
            "expected ON at line 1, column 24",
        ),
        (
            format!("CREATE ROUTINE LOAD `Bad Name!` ON t {kafka}"),
            "job name 'Bad Name!' can't be a Kubernetes name",
        ),
    ];
    for (sql, want) in cases {
        let err = run(&sql).expect_err(&sql);
        assert!(
            err.contains(want),
            "{sql}\n  error: {err}\n  wanted: {want}"
        );
    }
}

#[test]
fn harmless_properties_warn() {
    let sql = r#"CREATE ROUTINE LOAD j ON t PROPERTIES ("task_consume_second" = "3")
        FROM KAFKA ("kafka_broker_list" = "b:9092", "kafka_topic" = "t")"#;
    let c = run(sql).unwrap();
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("task_consume_second") && w.contains("ignored")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn table_check_plans_the_job() {
    let c = run(REFERENCE).unwrap();
    let table_object = format!(
        "apiVersion: routineload.io/v1alpha1\nkind: Table\nmetadata: {{name: routine-wiki-edit}}\nspec:\n{}",
        WIKIPEDIA_TABLE_YAML
            .lines()
            .map(|l| format!("  {l}\n"))
            .collect::<String>()
    );
    let cases: Vec<(String, Result<&str, &str>)> = vec![
        (
            WIKIPEDIA_TABLE_YAML.to_string(),
            Ok(
                "planned against Table 'routine-wiki-edit': 11 source field(s) per message, 11 column(s) written",
            ),
        ),
        (
            format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: x}}\n---\n{table_object}"),
            Ok("11 source field(s)"),
        ),
        (
            "location: file:///t\ncolumns: [{name: k, type: INT}, {name: delta, type: INT}]\n"
                .to_string(),
            Ok(
                "11 source field(s) per message, 2 column(s) written; 10 placeholder(s), not columns of the table, not loaded: event_time, channel,",
            ),
        ),
        (
            "location: file:///t\ncolumns: [{name: k, type: INT, nullable: false}]\n".to_string(),
            Err("the job can't load Table 'routine-wiki-edit': column 'k' is NOT NULL"),
        ),
        (
            table_object.replace("routine-wiki-edit", "other"),
            Err("no Table named 'routine-wiki-edit' (the job's table); it holds other"),
        ),
        (
            format!(
                "{table_object}---\n{}",
                table_object.replace("routine-wiki-edit", "other")
            ),
            Ok("11 source field(s)"),
        ),
        (
            format!(
                "{}---\n{}",
                table_object.replace("routine-wiki-edit", "a"),
                table_object.replace("routine-wiki-edit", "b")
            ),
            Err("no Table named 'routine-wiki-edit'"),
        ),
        ("columns: 5".to_string(), Err("not a Table spec")),
    ];
    for (yaml, want) in cases {
        let got = check_against_table(&c, &yaml);
        match (&got, want) {
            (Ok(g), Ok(w)) => assert!(g.contains(w), "{yaml}\n got {g}"),
            (Err(g), Err(w)) => assert!(g.contains(w), "{yaml}\n got {g}"),
            _ => panic!("{yaml}\n got {got:?}, wanted {want:?}"),
        }
    }
    // A derived column the table can't take.
    let bad =
        run(&REFERENCE.replace("added, deleted)", "added, tmp, deleted = nosuchcol + 1)")).unwrap();
    let err = check_against_table(&bad, WIKIPEDIA_TABLE_YAML).unwrap_err();
    assert!(err.contains("nosuchcol"), "{err}");
}

/// StarRocks' documentation example of loading Avro data (sensor_log), with its avro_paths.
const STARROCKS_AVRO_EXAMPLE: &str = r#"CREATE ROUTINE LOAD sensor.sensor_test_routine_load ON sensor_log
COLUMNS(id, name, checked, sensor_type, data_y)
PROPERTIES
(
  "format" = "avro",
  "avro_paths" = "[\"$.id\",\"$.name\",\"$.checked\",\"$.sensor_type\",\"$.sensor_data.data_y\"]"
)
FROM KAFKA
(
  "kafka_broker_list" = "192.168.0.1:9092",
  "confluent.schema.registry.url" = "http://172.26.1.2:8081",
  "kafka_topic" = "topic_0",
  "kafka_partitions" = "0,1,2,3,4,5",
  "property.kafka_default_offsets" = "OFFSET_BEGINNING"
);"#;

const SENSOR_LOG_TABLE: &str = r#"
location: s3://lake/sensor_log
columns:
  - {name: id, type: BIGINT, nullable: false}
  - {name: name, type: VARCHAR(26)}
  - {name: checked, type: BOOLEAN}
  - {name: sensor_type, type: VARCHAR(26)}
  - {name: data_y, type: DOUBLE}
"#;

#[test]
fn avro_jobs_map_the_registry_and_avro_paths_and_plan_against_their_table() {
    let c = run(STARROCKS_AVRO_EXAMPLE).unwrap();
    let s = typed(&c).spec;
    assert_eq!(s.format, routine_load_api::job::DataFormat::Avro);
    assert_eq!(
        s.avro_paths.as_deref(),
        Some(
            &[
                "$.id",
                "$.name",
                "$.checked",
                "$.sensor_type",
                "$.sensor_data.data_y"
            ]
            .map(String::from)[..]
        )
    );
    let registry = s.schema_registry.expect("schemaRegistry");
    assert_eq!(registry.url, "http://172.26.1.2:8081");
    assert_eq!(registry.credentials_secret, None);
    assert_eq!(c.registry_secret, None);
    assert_eq!(c.warnings, Vec::<String>::new());
    let table: TableSpec = serde_yaml::from_str(SENSOR_LOG_TABLE).unwrap();
    LoadPlan::build(&typed(&c).spec, "sensor_log", &table).expect("plans against sensor_log");
}

#[test]
fn registry_credentials_in_the_url_go_to_a_secret() {
    let sql = r#"CREATE ROUTINE LOAD j ON t PROPERTIES ("format" = "avro")
        FROM KAFKA ("kafka_broker_list" = "b:9092", "kafka_topic" = "t",
                    "confluent.schema.registry.url" = "https://loader:hunter2@registry:8081");"#;
    let c = run(sql).unwrap();
    let job_yaml = serde_yaml::to_string(&c.job).unwrap();
    assert!(
        !job_yaml.contains("hunter2") && !job_yaml.contains("loader"),
        "{job_yaml}"
    );
    let registry = typed(&c).spec.schema_registry.expect("schemaRegistry");
    assert_eq!(registry.url, "https://registry:8081");
    assert_eq!(
        registry.credentials_secret.map(|s| s.name).as_deref(),
        Some("j-schema-registry")
    );
    let secret = c.registry_secret.clone().expect("registry Secret stub");
    assert_eq!(secret["metadata"]["name"], "j-schema-registry");
    assert_eq!(secret["stringData"]["username"], SECRET_PLACEHOLDER);
    assert_eq!(secret["stringData"]["password"], SECRET_PLACEHOLDER);
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("j-schema-registry") && w.contains("REPLACE_ME")),
        "{:?}",
        c.warnings
    );
    assert!(c.to_yaml("head").unwrap().contains("j-schema-registry"));
    let c = convert(
        &parse(sql).unwrap(),
        &ConvertOptions {
            namespace: None,
            include_secrets: true,
        },
    )
    .unwrap();
    let secret = c.registry_secret.expect("registry Secret");
    assert_eq!(secret["stringData"]["username"], "loader");
    assert_eq!(secret["stringData"]["password"], "hunter2");
}

#[test]
fn a_registry_url_without_format_avro_is_ignored_with_a_warning() {
    let sql = r#"CREATE ROUTINE LOAD j ON t
        FROM KAFKA ("kafka_broker_list" = "b:9092", "kafka_topic" = "t",
                    "confluent.schema.registry.url" = "http://registry:8081");"#;
    let c = run(sql).unwrap();
    assert_eq!(typed(&c).spec.schema_registry, None);
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("confluent.schema.registry.url") && w.contains("ignored")),
        "{:?}",
        c.warnings
    );
}
