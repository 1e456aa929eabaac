//! Every `CREATE ROUTINE LOAD` example of StarRocks' documentation (the CREATE ROUTINE LOAD
//! reference, the Routine Load guide, the Routine Load quick start, the JSON loading page, the
//! page on transforming data at loading, the page on loading into Primary Key tables, the
//! AutoMQ and Pulsar loading pages) and of the E-MapReduce Routine Load reference, each with
//! the table it loads as a `Table` written from the page's CREATE TABLE, and what `convert` and
//! the load plan make of it: it converts and plans against its table, or it is refused with
//! the reason.
//!
//! The statements are the pages' text. Where a page's CREATE TABLE needs translating, the
//! `Table` says how: StarRocks' nullable key columns are NOT NULL here (a Table's keys must
//! be), `long` (not a StarRocks type) is BIGINT, the MySQL table of the Canal example is its
//! StarRocks equivalent.

use super::*;

/// What an example comes to.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// Converts, and the job plans against the table.
    Plans,
    /// Refused by parse, convert or the plan, with an error containing this text.
    Refused(&'static str),
}

struct Example {
    /// Where it comes from: page and section.
    source: &'static str,
    sql: &'static str,
    /// The table's spec (YAML).
    table: &'static str,
    outcome: Outcome,
    /// Pieces of the warnings and notes the conversion must give.
    says: &'static [&'static str],
}

// --- Tables, from the pages' CREATE TABLE statements.

/// CREATE ROUTINE LOAD reference, "Load CSV-formatted data": example_tbl1.
pub(super) const EXAMPLE_TBL1: &str = r#"
location: file:///tmp/example_tbl1
keys: [order_id, pay_dt]
columns:
  - {name: order_id, type: BIGINT, nullable: false, comment: Order ID}
  - {name: pay_dt, type: DATE, nullable: false, comment: Payment date}
  - {name: customer_name, type: VARCHAR(26), comment: Customer name}
  - {name: nationality, type: VARCHAR(26), comment: Nationality}
  - {name: gender, type: VARCHAR(26), comment: Gender}
  - {name: price, type: DOUBLE, comment: Price}
"#;

/// CREATE ROUTINE LOAD reference, "Configure column mapping": example_tbl2 (no gender); the
/// Routine Load guide's example_tbl1 is the same table.
pub(super) const EXAMPLE_TBL2_CSV: &str = r#"
location: file:///tmp/example_tbl2
keys: [order_id, pay_dt]
columns:
  - {name: order_id, type: BIGINT, nullable: false, comment: Order ID}
  - {name: pay_dt, type: DATE, nullable: false, comment: Payment date}
  - {name: customer_name, type: VARCHAR(26), comment: Customer name}
  - {name: nationality, type: VARCHAR(26), comment: Nationality}
  - {name: price, type: DOUBLE, comment: Price}
"#;

/// CREATE ROUTINE LOAD reference, JSON: example_tbl3, an Aggregate table.
pub(super) const EXAMPLE_TBL3: &str = r#"
location: file:///tmp/example_tbl3
model: Aggregate
keys: [commodity_id, customer_name, country, pay_time]
columns:
  - {name: commodity_id, type: VARCHAR(26), nullable: false}
  - {name: customer_name, type: VARCHAR(26), nullable: false}
  - {name: country, type: VARCHAR(26), nullable: false}
  - {name: pay_time, type: BIGINT, nullable: false}
  - {name: price, type: DOUBLE, aggregate: SUM, comment: Price}
"#;

/// CREATE ROUTINE LOAD reference's example_tbl4 and the Routine Load guide's example_tbl2:
/// example_tbl3 with the derived pay_dt.
const EXAMPLE_TBL4: &str = r#"
location: file:///tmp/example_tbl4
model: Aggregate
keys: [commodity_id, customer_name, country, pay_time, pay_dt]
columns:
  - {name: commodity_id, type: VARCHAR(26), nullable: false}
  - {name: customer_name, type: VARCHAR(26), nullable: false}
  - {name: country, type: VARCHAR(26), nullable: false}
  - {name: pay_time, type: BIGINT, nullable: false}
  - {name: pay_dt, type: DATE, nullable: false}
  - {name: price, type: DOUBLE, aggregate: SUM}
"#;

/// CREATE ROUTINE LOAD reference, CASE expression: tbl_expr_test.
const TBL_EXPR_TEST: &str = r#"
location: file:///tmp/tbl_expr_test
columns:
  - {name: col1, type: STRING}
  - {name: col2, type: STRING}
"#;

/// CREATE ROUTINE LOAD reference's sensor_log1 and the Routine Load guide's sensor_log.
const SENSOR_LOG1: &str = r#"
location: file:///tmp/sensor_log1
keys: [id]
columns:
  - {name: id, type: BIGINT, nullable: false, comment: sensor id}
  - {name: name, type: VARCHAR(26), nullable: false, comment: sensor name}
  - {name: checked, type: BOOLEAN, nullable: false, comment: checked}
  - {name: data, type: DOUBLE, comment: sensor data}
  - {name: sensor_type, type: VARCHAR(26), nullable: false, comment: sensor type}
"#;

/// CREATE ROUTINE LOAD reference's sensor_log2 and sensor_log3 (data_y `long`: BIGINT).
const SENSOR_LOG2: &str = r#"
location: file:///tmp/sensor_log2
keys: [id]
columns:
  - {name: id, type: BIGINT, nullable: false, comment: sensor id}
  - {name: name, type: VARCHAR(26), nullable: false, comment: sensor name}
  - {name: checked, type: BOOLEAN, nullable: false, comment: checked}
  - {name: sensor_type, type: VARCHAR(26), nullable: false, comment: sensor type}
  - {name: data_y, type: BIGINT, comment: sensor data}
"#;

/// Routine Load guide, "Access source message metadata": orders_with_meta.
const ORDERS_WITH_META: &str = r#"
location: file:///tmp/orders_with_meta
columns:
  - {name: order_id, type: BIGINT}
  - {name: src_topic, type: VARCHAR(256)}
  - {name: src_partition, type: INT}
  - {name: src_offset, type: BIGINT}
  - {name: msg_time, type: DATETIME}
  - {name: trace_id, type: VARCHAR(128)}
"#;

/// JSON loading page, Canal: query_record (the page gives the MySQL table).
const QUERY_RECORD: &str = r#"
location: file:///tmp/query_record
model: Primary
keys: [query_id]
columns:
  - {name: query_id, type: VARCHAR(64), nullable: false}
  - {name: conn_id, type: INT}
  - {name: fe_host, type: VARCHAR(32)}
  - {name: user, type: VARCHAR(32)}
  - {name: start_time, type: DATETIME, nullable: false}
  - {name: end_time, type: DATETIME}
  - {name: time_used, type: DOUBLE}
  - {name: state, type: VARCHAR(16), nullable: false}
  - {name: error_message, type: STRING}
  - {name: sql, type: STRING, nullable: false}
  - {name: database, type: VARCHAR(128), nullable: false}
  - {name: profile, type: STRING}
  - {name: plan, type: STRING}
"#;

/// Quick start "Routine Load with shared-data storage": site_clicks.
const SITE_CLICKS: &str = r#"
location: file:///tmp/site_clicks
columns:
  - {name: uid, type: BIGINT, nullable: false, comment: uid}
  - {name: site, type: STRING, nullable: false, comment: site url}
  - {name: vtime, type: BIGINT, nullable: false, comment: vtime}
"#;

/// Loading from AutoMQ Kafka: users.
const USERS: &str = r#"
location: file:///tmp/users
model: Primary
keys: [id]
columns:
  - {name: id, type: BIGINT, nullable: false}
  - {name: name, type: STRING, nullable: false}
  - {name: timestamp, type: STRING}
  - {name: status, type: STRING}
"#;

/// Transform data at loading: table1.
const ETL_TABLE1: &str = r#"
location: file:///tmp/etl_table1
columns:
  - {name: event_date, type: DATE, comment: event date}
  - {name: event_type, type: TINYINT, comment: event type}
  - {name: user_id, type: BIGINT, comment: user ID}
"#;

/// Transform data at loading: table2.
const ETL_TABLE2: &str = r#"
location: file:///tmp/etl_table2
columns:
  - {name: date, type: DATE, comment: date}
  - {name: year, type: INT, comment: year}
  - {name: month, type: TINYINT, comment: month}
  - {name: day, type: TINYINT, comment: day}
"#;

/// Loading into Primary Key tables: table1 to table4 (id, name, score).
pub(super) const PK_TABLE: &str = r#"
location: file:///tmp/table1
model: Primary
keys: [id]
columns:
  - {name: id, type: INT, nullable: false, comment: user ID}
  - {name: name, type: VARCHAR(65533), nullable: false, comment: user name}
  - {name: score, type: INT, nullable: false, comment: user score}
"#;

/// Loading into Primary Key tables: table5 (id, version, score).
const PK_TABLE5: &str = r#"
location: file:///tmp/table5
model: Primary
keys: [id]
columns:
  - {name: id, type: INT, nullable: false, comment: user ID}
  - {name: version, type: INT, nullable: false, comment: version}
  - {name: score, type: INT, nullable: false, comment: user score}
"#;

fn examples() -> Vec<Example> {
    use Outcome::*;
    vec![
        Example {
            source: "E-MapReduce Routine Load reference, quick start",
            sql: routine_load_api::reference::WIKIPEDIA_CREATE_ROUTINE_LOAD,
            table: routine_load_api::reference::WIKIPEDIA_TABLE_YAML,
            outcome: Plans,
            says: &[],
        },
        Example {
            source: "CREATE ROUTINE LOAD reference, CSV: consume from specified offsets for specified partitions",
            sql: r#"CREATE ROUTINE LOAD example_db.example_tbl1_ordertest1 ON example_tbl1
COLUMNS TERMINATED BY ",",
COLUMNS (order_id, pay_dt, customer_name, nationality, gender, price)
FROM KAFKA
(
    "kafka_broker_list" ="<kafka_broker1_ip>:<kafka_broker1_port>,<kafka_broker2_ip>:<kafka_broker2_port>",
    "kafka_topic" = "ordertest1",
    "kafka_partitions" ="0,1,2,3,4", -- partitions to be consumed
    "kafka_offsets" = "1000, OFFSET_BEGINNING, OFFSET_END, 2000" -- corresponding initial offsets
);"#,
            table: EXAMPLE_TBL1,
            // Five partitions, four offsets: StarRocks refuses this too.
            outcome: Refused(
                "\"kafka_offsets\" has 4 entries but \"kafka_partitions\" has 5: give one offset per partition",
            ),
            says: &[],
        },
        Example {
            source: "CREATE ROUTINE LOAD reference, CSV: increase task parallelism",
            sql: r#"CREATE ROUTINE LOAD example_db.example_tbl1_ordertest1 ON example_tbl1
COLUMNS TERMINATED BY ",",
COLUMNS (order_id, pay_dt, customer_name, nationality, gender, price)
PROPERTIES
(
"desired_concurrent_number" = "5" -- set the value of desired_concurrent_number to 5
)
FROM KAFKA
(
    "kafka_broker_list" ="<kafka_broker1_ip>:<kafka_broker1_port>,<kafka_broker2_ip>:<kafka_broker2_port>",
    "kafka_topic" = "ordertest1"
);"#,
            table: EXAMPLE_TBL1,
            outcome: Plans,
            says: &[],
        },
        Example {
            source: "CREATE ROUTINE LOAD reference, CSV: configure column mapping",
            sql: r#"CREATE ROUTINE LOAD example_db.example_tbl2_ordertest1 ON example_tbl2
COLUMNS TERMINATED BY ",",
COLUMNS (order_id, pay_dt, customer_name, nationality, temp_gender, price)
FROM KAFKA
(
    "kafka_broker_list" ="<kafka_broker1_ip>:<kafka_broker1_port>,<kafka_broker2_ip>:<kafka_broker2_port>",
    "kafka_topic" = "ordertest1"
);"#,
            table: EXAMPLE_TBL2_CSV,
            outcome: Plans,
            says: &[],
        },
        Example {
            source: "CREATE ROUTINE LOAD reference, CSV: set filter conditions",
            sql: r#"CREATE ROUTINE LOAD example_db.example_tbl2_ordertest1 ON example_tbl2
COLUMNS TERMINATED BY ",",
COLUMNS (order_id, pay_dt, customer_name, nationality, gender, price),
WHERE price > 100 -- set the filter condition
FROM KAFKA
(
    "kafka_broker_list" ="<kafka_broker1_ip>:<kafka_broker1_port>,<kafka_broker2_ip>:<kafka_broker2_port>",
    "kafka_topic" = "ordertest1"
);"#,
            // example_tbl2 has no gender: the field is a placeholder.
            table: EXAMPLE_TBL2_CSV,
            outcome: Plans,
            says: &[],
        },
        Example {
            source: "CREATE ROUTINE LOAD reference, CSV: enable strict mode",
            sql: r#"CREATE ROUTINE LOAD example_db.example_tbl1_ordertest1 ON example_tbl1
COLUMNS TERMINATED BY ",",
COLUMNS (order_id, pay_dt, customer_name, nationality, gender, price)
PROPERTIES
(
"strict_mode" = "true" -- enable the strict mode
)
FROM KAFKA
(
    "kafka_broker_list" ="<kafka_broker1_ip>:<kafka_broker1_port>,<kafka_broker2_ip>:<kafka_broker2_port>",
    "kafka_topic" = "ordertest1"
);"#,
            table: EXAMPLE_TBL1,
            outcome: Plans,
            says: &[],
        },
        Example {
            source: "CREATE ROUTINE LOAD reference, CSV: set error tolerance",
            sql: r#"CREATE ROUTINE LOAD example_db.example_tbl1_ordertest1 ON example_tbl1
COLUMNS TERMINATED BY ",",
COLUMNS (order_id, pay_dt, customer_name, nationality, gender, price)
PROPERTIES
(
"max_batch_rows" = "100000",-- The value of max_batch_rows multiplied by 10 equals the error detection window.
"max_error_number" = "100" -- The maximum number of error data rows allowed within an error detection window.
)
FROM KAFKA
(
    "kafka_broker_list" ="<kafka_broker1_ip>:<kafka_broker1_port>,<kafka_broker2_ip>:<kafka_broker2_port>",
    "kafka_topic" = "ordertest1"
);"#,
            table: EXAMPLE_TBL1,
            // Below the CRD's minimum, which is StarRocks' own (max_batch_rows >= 200000).
            outcome: Refused(
                "property \"max_batch_rows\" = \"100000\": must be 200000 to 100000000",
            ),
            says: &[],
        },
        Example {
            source: "CREATE ROUTINE LOAD reference, CSV: SSL security protocol",
            sql: r#"CREATE ROUTINE LOAD example_db.example_tbl1_ordertest1 ON example_tbl1
COLUMNS TERMINATED BY ",",
COLUMNS (order_id, pay_dt, customer_name, nationality, gender, price)
PROPERTIES
(
-- Specify the security protocol as SSL.
"property.security.protocol" = "ssl",
-- The location of the CA certificate.
"property.ssl.ca.location" = "FILE:ca-cert",
-- If authentication is enabled for Kafka clients, you need to configure the following properties:
-- The location of the Kafka client's public key.
"property.ssl.certificate.location" = "FILE:client.pem",
-- The location of the Kafka client's private key.
"property.ssl.key.location" = "FILE:client.key",
-- The password to the Kafka client's private key.
"property.ssl.key.password" = "abcdefg"
)
FROM KAFKA
(
    "kafka_broker_list" ="<kafka_broker1_ip>:<kafka_broker1_port>,<kafka_broker2_ip>:<kafka_broker2_port>",
    "kafka_topic" = "ordertest1"
);"#,
            table: EXAMPLE_TBL1,
            outcome: Plans,
            says: &[
                "\"property.security.protocol\" is a Kafka client property: read as if given in FROM KAFKA",
                "PEM text of 'ca-cert' under key 'ssl.ca.pem'",
                "PEM text of 'client.pem' under key 'ssl.certificate.pem'",
                "PEM text of 'client.key' under key 'ssl.key.pem'",
                "ssl.key.password",
            ],
        },
        Example {
            source: "CREATE ROUTINE LOAD reference, CSV: trim_space, enclose and escape",
            sql: r#"CREATE ROUTINE LOAD example_db.example_tbl1_test_csv ON example_tbl1
COLUMNS TERMINATED BY ",",
COLUMNS (order_id, pay_dt, customer_name, nationality, gender, price)
PROPERTIES
(
    "trim_space"="true",
    "enclose"="\"",
    "escape"="\\",
)
FROM KAFKA
(
    "kafka_broker_list" ="<kafka_broker1_ip>:<kafka_broker1_port>,<kafka_broker2_ip>:<kafka_broker2_port>",
    "kafka_topic"="test_csv",
    "property.kafka_default_offsets"="OFFSET_BEGINNING"
);"#,
            table: EXAMPLE_TBL1,
            outcome: Plans,
            says: &[],
        },
        Example {
            source: "CREATE ROUTINE LOAD reference, JSON: table column names consistent with JSON keys",
            sql: r#"CREATE ROUTINE LOAD example_db.example_tbl3_ordertest2 ON example_tbl3
PROPERTIES
(
    "format" = "json"
 )
FROM KAFKA
(
    "kafka_broker_list" = "<kafka_broker1_ip>:<kafka_broker1_port>,<kafka_broker2_ip>:<kafka_broker2_port>",
    "kafka_topic" = "ordertest2"
);"#,
            table: EXAMPLE_TBL3,
            outcome: Plans,
            says: &[],
        },
        Example {
            source: "CREATE ROUTINE LOAD reference, JSON: derived columns generated by expressions",
            sql: r#"CREATE ROUTINE LOAD example_db.example_tbl4_ordertest2 ON example_tbl4
COLUMNS(commodity_id, customer_name, country, pay_time, pay_dt=from_unixtime(pay_time, '%Y%m%d'), price)
PROPERTIES
(
    "format" = "json",
    "jsonpaths" = "[\"$.commodity_id\",\"$.customer_name\",\"$.country\",\"$.pay_time\",\"$.price\"]"
 )
FROM KAFKA
(
    "kafka_broker_list" = "<kafka_broker1_ip>:<kafka_broker1_port>,<kafka_broker2_ip>:<kafka_broker2_port>",
    "kafka_topic" = "ordertest2"
);"#,
            table: EXAMPLE_TBL4,
            outcome: Plans,
            says: &[],
        },
        Example {
            source: "CREATE ROUTINE LOAD reference, JSON: derived column generated by a CASE expression",
            sql: r#"CREATE ROUTINE LOAD rl_expr_test ON tbl_expr_test
COLUMNS (
      key1,
      key2,
      col1 = key1,
      col2 = CASE WHEN key1 = "1" THEN "key1=1" 
                  WHEN key1 = "12" THEN "key1=12"
                  ELSE "nothing" END) 
PROPERTIES ("format" = "json")
FROM KAFKA
(
    "kafka_broker_list" = "<kafka_broker1_ip>:<kafka_broker1_port>,<kafka_broker2_ip>:<kafka_broker2_port>",
    "kafka_topic" = "topic-expr-test"
);"#,
            table: TBL_EXPR_TEST,
            outcome: Plans,
            says: &[],
        },
        Example {
            source: "CREATE ROUTINE LOAD reference, JSON: the root element to load",
            sql: r#"CREATE ROUTINE LOAD example_db.example_tbl3_ordertest3 ON example_tbl3
PROPERTIES
(
    "format" = "json",
    "json_root" = "$.RECORDS",
    "strip_outer_array" = "true"
 )
FROM KAFKA
(
    "kafka_broker_list" = "<kafka_broker1_ip>:<kafka_broker1_port>,<kafka_broker2_ip>:<kafka_broker2_port>",
    "kafka_topic" = "ordertest2"
);"#,
            table: EXAMPLE_TBL3,
            outcome: Plans,
            says: &[],
        },
        Example {
            source: "CREATE ROUTINE LOAD reference, Avro: simple schema",
            sql: r#"CREATE ROUTINE LOAD sensor.sensor_log_load_job1 ON sensor_log1  
PROPERTIES  
(  
  "format" = "avro"  
)  
FROM KAFKA  
(  
  "kafka_broker_list" = "<kafka_broker1_ip>:<kafka_broker1_port>,<kafka_broker2_ip>:<kafka_broker2_port>,...",
  "confluent.schema.registry.url" = "http://172.xx.xxx.xxx:8081",  
  "kafka_topic"= "topic_1",  
  "kafka_partitions" = "0,1,2,3,4,5",  
  "property.kafka_default_offsets" = "OFFSET_BEGINNING"  
);"#,
            table: SENSOR_LOG1,
            outcome: Plans,
            says: &[],
        },
        Example {
            source: "CREATE ROUTINE LOAD reference, Avro: nested record field",
            sql: r#"CREATE ROUTINE LOAD sensor.sensor_log_load_job2 ON sensor_log2  
PROPERTIES  
(  
  "format" = "avro",
  "jsonpaths" = "[\"$.id\",\"$.name\",\"$.checked\",\"$.sensor_type\",\"$.data.data_y\"]"
)  
FROM KAFKA  
(  
  "kafka_broker_list" = "<kafka_broker1_ip>:<kafka_broker1_port>,<kafka_broker2_ip>:<kafka_broker2_port>,...",
  "confluent.schema.registry.url" = "http://172.xx.xxx.xxx:8081",  
  "kafka_topic" = "topic_1",  
  "kafka_partitions" = "0,1,2,3,4,5",  
  "property.kafka_default_offsets" = "OFFSET_BEGINNING"  
);"#,
            table: SENSOR_LOG2,
            outcome: Plans,
            says: &["\"jsonpaths\" of an Avro job is its avroPaths"],
        },
        Example {
            source: "CREATE ROUTINE LOAD reference, Avro: union field",
            sql: r#"CREATE ROUTINE LOAD sensor.sensor_log_load_job3 ON sensor_log3  
PROPERTIES  
(  
  "format" = "avro",
  "jsonpaths" = "[\"$.id\",\"$.name\",\"$.checked\",\"$.sensor_type\",\"$.data.data_y\"]"
)  
FROM KAFKA  
(  
  "kafka_broker_list" = "<kafka_broker1_ip>:<kafka_broker1_port>,<kafka_broker2_ip>:<kafka_broker2_port>,...",
  "confluent.schema.registry.url" = "http://172.xx.xxx.xxx:8081",  
  "kafka_topic" = "topic_1",  
  "kafka_partitions" = "0,1,2,3,4,5",  
  "property.kafka_default_offsets" = "OFFSET_BEGINNING"  
);"#,
            table: SENSOR_LOG2,
            outcome: Plans,
            says: &["\"jsonpaths\" of an Avro job is its avroPaths"],
        },
        Example {
            source: "Routine Load guide, load CSV-format data",
            sql: r#"CREATE ROUTINE LOAD example_db.example_tbl1_ordertest1 ON example_tbl1
COLUMNS TERMINATED BY ",",
COLUMNS (order_id, pay_dt, customer_name, nationality, temp_gender, price)
PROPERTIES
(
    "desired_concurrent_number" = "5"
)
FROM KAFKA
(
    "kafka_broker_list" = "<kafka_broker1_ip>:<kafka_broker1_port>,<kafka_broker2_ip>:<kafka_broker2_port>",
    "kafka_topic" = "ordertest1",
    "kafka_partitions" = "0,1,2,3,4",
    "property.kafka_default_offsets" = "OFFSET_BEGINNING"
);"#,
            table: EXAMPLE_TBL2_CSV,
            outcome: Plans,
            says: &[],
        },
        Example {
            source: "Routine Load guide, load JSON-format data",
            sql: r#"CREATE ROUTINE LOAD example_db.example_tbl2_ordertest2 ON example_tbl2
COLUMNS(commodity_id, customer_name, country, pay_time, price, pay_dt=from_unixtime(pay_time, '%Y%m%d'))
PROPERTIES
(
    "desired_concurrent_number" = "5",
    "format" = "json",
    "jsonpaths" = "[\"$.commodity_id\",\"$.customer_name\",\"$.country\",\"$.pay_time\",\"$.price\"]"
 )
FROM KAFKA
(
    "kafka_broker_list" ="<kafka_broker1_ip>:<kafka_broker1_port>,<kafka_broker2_ip>:<kafka_broker2_port>",
    "kafka_topic" = "ordertest2",
    "kafka_partitions" ="0,1,2,3,4",
    "property.kafka_default_offsets" = "OFFSET_BEGINNING"
);"#,
            table: EXAMPLE_TBL4,
            outcome: Plans,
            says: &[],
        },
        Example {
            source: "Routine Load guide, load Avro-format data",
            sql: r#"CREATE ROUTINE LOAD example_db.sensor_log_load_job ON sensor_log  
PROPERTIES  
(  
    "format" = "avro"  
)  
FROM KAFKA  
(  
    "kafka_broker_list" = "<kafka_broker1_ip>:<kafka_broker1_port>,<kafka_broker2_ip>:<kafka_broker2_port>,...",
    "confluent.schema.registry.url" = "http://172.xx.xxx.xxx:8081",  
    "kafka_topic" = "topic_0",  
    "kafka_partitions" = "0,1,2,3,4,5",  
    "property.kafka_default_offsets" = "OFFSET_BEGINNING"  
);"#,
            table: SENSOR_LOG1,
            outcome: Plans,
            says: &[],
        },
        Example {
            source: "Routine Load guide, access source message metadata",
            sql: r#"CREATE ROUTINE LOAD example_db.orders_with_meta_job ON orders_with_meta
INCLUDE METADATA
(
    TOPIC        AS m_topic,
    PARTITION    AS m_partition,
    OFFSET       AS m_offset,
    TIMESTAMP_MS AS m_timestamp,
    HEADERS      AS m_headers
),
COLUMNS
(
    order_id,
    src_topic     = m_topic,
    src_partition = m_partition,
    src_offset    = m_offset,
    msg_time      = from_unixtime(m_timestamp / 1000),
    trace_id      = element_at(m_headers, 'trace-id')
)
PROPERTIES
(
    "format" = "json",
    "jsonpaths" = "[\"$.order_id\"]"
)
FROM KAFKA
(
    "kafka_broker_list" = "<kafka_broker1_ip>:<kafka_broker1_port>,...",
    "kafka_topic" = "topic_orders",
    "property.kafka_default_offsets" = "OFFSET_BEGINNING"
);"#,
            table: ORDERS_WITH_META,
            outcome: Plans,
            says: &[],
        },
        Example {
            source: "Quick start, Routine Load with shared-data storage",
            sql: r#"CREATE ROUTINE LOAD quickstart.clicks ON site_clicks
PROPERTIES
(
    "format" = "JSON",
    "jsonpaths" ="[\"$.uid\",\"$.site\",\"$.vtime\"]"
)
FROM KAFKA
(     
    "kafka_broker_list" = "redpanda:29092",
    "kafka_topic" = "test2",
    "kafka_partitions" = "0",
    "kafka_offsets" = "OFFSET_BEGINNING"
);"#,
            table: SITE_CLICKS,
            outcome: Plans,
            says: &[],
        },
        Example {
            source: "Loading from AutoMQ Kafka",
            sql: r#"CREATE ROUTINE LOAD automq_example_load ON users
COLUMNS(id, name, timestamp, status)
PROPERTIES
(
  "desired_concurrent_number" = "5",
  "format" = "json",
  "jsonpaths" = "[\"$.id\",\"$.name\",\"$.timestamp\",\"$.status\"]"
)
FROM KAFKA
(
  "kafka_broker_list" = "10.0.96.4:9092",
  "kafka_topic" = "example_topic",
  "kafka_partitions" = "0",
  "property.kafka_default_offsets" = "OFFSET_BEGINNING"
);"#,
            table: USERS,
            outcome: Plans,
            says: &[],
        },
        Example {
            source: "Loading from Apache Pulsar",
            sql: r#"CREATE ROUTINE LOAD load_test.routine_wiki_edit_1 ON routine_wiki_edit
COLUMNS TERMINATED BY ",",
ROWS TERMINATED BY "\n",
COLUMNS (order_id, pay_dt, customer_name, nationality, temp_gender, price)
WHERE event_time > "2022-01-01 00:00:00",
PROPERTIES
(
    "desired_concurrent_number" = "1",
    "max_batch_interval" = "15000",
    "max_error_number" = "1000"
)
FROM PULSAR
(
    "pulsar_service_url" = "pulsar://localhost:6650",
    "pulsar_topic" = "persistent://tenant/namespace/topic-name",
    "pulsar_subscription" = "load-test",
    "pulsar_partitions" = "load-partition-0,load-partition-1",
    "pulsar_initial_positions" = "POSITION_EARLIEST,POSITION_LATEST",
    "property.auth.token" = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUJzdWIiOiJqaXV0aWFuY2hlbiJ9.lulGngOC72vE70OW54zcbyw7XdKSOxET94WT_hIqD5Y"
);"#,
            // The page gives no table; the statement is refused before one matters.
            table: routine_load_api::reference::WIKIPEDIA_TABLE_YAML,
            outcome: Refused("expected KAFKA after FROM (only Kafka data sources exist)"),
            says: &[],
        },
        Example {
            source: "JSON loading page, Canal binlogs from MySQL",
            sql: r#"create routine load manual.query_job on query_record   
columns (query_id,conn_id,fe_host,user,start_time,end_time,time_used,state,error_message,`sql`,`database`,profile,plan)  
PROPERTIES (  
    "format"="json",  
    "json_root"="$.data",
    "desired_concurrent_number"="1",  
    "strip_outer_array" ="true",    
    "max_error_number"="1000" 
) 
FROM KAFKA (     
    "kafka_broker_list"= "172.26.92.141:9092",     
    "kafka_topic" = "databasename.query_record" 
);"#,
            table: QUERY_RECORD,
            outcome: Plans,
            says: &[],
        },
        Example {
            source: "Transform data at loading, skip columns",
            sql: r#"CREATE ROUTINE LOAD test_db.table101 ON table1
    COLUMNS TERMINATED BY ",",
    COLUMNS(user_id, user_gender, event_date, event_type)
FROM KAFKA
(
    "kafka_broker_list" = "<kafka_broker_host>:<kafka_broker_port>",
    "kafka_topic" = "topic1",
    "property.kafka_default_offsets" = "OFFSET_BEGINNING"
);"#,
            table: ETL_TABLE1,
            outcome: Plans,
            says: &[],
        },
        Example {
            source: "Transform data at loading, filter rows",
            sql: r#"CREATE ROUTINE LOAD test_db.table102 ON table1
COLUMNS TERMINATED BY ",",
COLUMNS (user_id, user_gender, event_date, event_type)
WHERE event_type = 1
FROM KAFKA
(
    "kafka_broker_list" = "<kafka_broker_host>:<kafka_broker_port>",
    "kafka_topic" = "topic1",
    "property.kafka_default_offsets" = "OFFSET_BEGINNING"
);"#,
            table: ETL_TABLE1,
            outcome: Plans,
            says: &[],
        },
        Example {
            source: "Transform data at loading, generate new columns",
            sql: r#"CREATE ROUTINE LOAD test_db.table201 ON table2
    COLUMNS TERMINATED BY ",",
    COLUMNS(date,year=year(date),month=month(date),day=day(date))
FROM KAFKA
(
    "kafka_broker_list" = "<kafka_broker_host>:<kafka_broker_port>",
    "kafka_topic" = "topic2",
    "property.kafka_default_offsets" = "OFFSET_BEGINNING"
);"#,
            table: ETL_TABLE2,
            outcome: Plans,
            says: &[],
        },
        Example {
            source: "Loading into Primary Key tables, UPSERT without __op",
            sql: r#"CREATE ROUTINE LOAD test_db.table1 ON table1
    COLUMNS TERMINATED BY ",",
    COLUMNS (id, name, score)
    PROPERTIES
    (
        "desired_concurrent_number" = "3",
        "max_batch_interval" = "20",
        "max_batch_rows"= "250000",
        "max_error_number" = "1000"
    )
    FROM KAFKA
    (
        "kafka_broker_list" ="<kafka_broker_host>:<kafka_broker_port>",
        "kafka_topic" = "test1",
        "property.kafka_default_offsets" ="OFFSET_BEGINNING"
    );"#,
            table: PK_TABLE,
            outcome: Plans,
            says: &[],
        },
        Example {
            source: "Loading into Primary Key tables, UPSERT with __op",
            sql: r#"CREATE ROUTINE LOAD test_db.table1 ON table1
    COLUMNS TERMINATED BY ",",
    COLUMNS (id, name, score, __op ='upsert')
    PROPERTIES
    (
        "desired_concurrent_number" = "3",
        "max_batch_interval" = "20",
        "max_batch_rows"= "250000",
        "max_error_number" = "1000"
    )
    FROM KAFKA
    (
        "kafka_broker_list" ="<kafka_broker_host>:<kafka_broker_port>",
        "kafka_topic" = "test1",
        "property.kafka_default_offsets" ="OFFSET_BEGINNING"
    );"#,
            table: PK_TABLE,
            outcome: Plans,
            says: &[],
        },
        Example {
            source: "Loading into Primary Key tables, DELETE",
            sql: r#"CREATE ROUTINE LOAD test_db.table2 ON table2
  COLUMNS(id, name, score, __op = 'delete')
  PROPERTIES
  (
      "desired_concurrent_number" = "3",
      "max_batch_interval" = "20",
      "max_batch_rows"= "250000",
      "max_error_number" = "1000"
  )
  FROM KAFKA
  (
      "kafka_broker_list" ="<kafka_broker_host>:<kafka_broker_port>",
      "kafka_topic" = "test2",
      "property.kafka_default_offsets" ="OFFSET_BEGINNING"
  );"#,
            table: PK_TABLE,
            outcome: Plans,
            says: &[],
        },
        Example {
            source: "Loading into Primary Key tables, UPSERT and DELETE",
            sql: r#"CREATE ROUTINE LOAD test_db.table3 ON table3
  COLUMNS(id, name, score, temp, __op = temp)
  PROPERTIES
  (
      "desired_concurrent_number" = "3",
      "max_batch_interval" = "20",
      "max_batch_rows"= "250000",
      "max_error_number" = "1000"
  )
  FROM KAFKA
  (
      "kafka_broker_list" = "<kafka_broker_host>:<kafka_broker_port>",
      "kafka_topic" = "test3",
      "property.kafka_default_offsets" = "OFFSET_BEGINNING"
  );"#,
            table: PK_TABLE,
            outcome: Plans,
            says: &[],
        },
        Example {
            source: "Loading into Primary Key tables, partial updates",
            sql: r#"CREATE ROUTINE LOAD test_db.table4 on table4
  COLUMNS (id, name),
  COLUMNS TERMINATED BY ','
  PROPERTIES
  (
      "partial_update" = "true"
  )
  FROM KAFKA
  (
      "kafka_broker_list" ="<kafka_broker_host>:<kafka_broker_port>",
      "kafka_topic" = "test4",
      "property.kafka_default_offsets" ="OFFSET_BEGINNING"
  );"#,
            table: PK_TABLE,
            // score is NOT NULL without a default in the example's table, and StarRocks fills
            // 0 into the new keys' rows; here the plan asks for that default to be declared.
            outcome: Refused(
                "partialUpdate: column 'score' is NOT NULL without a default and the job does not load it",
            ),
            says: &[],
        },
        Example {
            source: "Loading into Primary Key tables, conditional updates",
            sql: r#"CREATE ROUTINE LOAD test_db.table5 on table5
  COLUMNS (id, version, score),
  COLUMNS TERMINATED BY ','
  PROPERTIES
  (
      "merge_condition" = "version"
  )
  FROM KAFKA
  (
      "kafka_broker_list" ="<kafka_broker_host>:<kafka_broker_port>",
      "kafka_topic" = "topic5",
      "property.kafka_default_offsets" ="OFFSET_BEGINNING"
  );"#,
            table: PK_TABLE5,
            outcome: Plans,
            says: &[],
        },
    ]
}

/// What an example came to: Ok(plan summary and messages) or Err(the refusal).
fn outcome_of(ex: &Example) -> Result<(String, String), String> {
    let c = convert(&parse(ex.sql)?, &ConvertOptions::default())?;
    let summary = check_against_table(&c, ex.table)?;
    Ok((summary, [c.warnings, c.notes].concat().join("\n")))
}

#[test]
fn starrocks_documentation_examples_convert_and_plan_or_say_why_not() {
    let mut failures = Vec::new();
    let (mut plans, mut refused) = (0, 0);
    for ex in examples() {
        let got = outcome_of(&ex);
        let line = match &got {
            Ok((summary, _)) => format!("plans: {summary}"),
            Err(e) => format!("refused: {e}"),
        };
        eprintln!("{}\n    {line}", ex.source);
        match (ex.outcome, &got) {
            (Outcome::Plans, Ok((_, said))) => {
                plans += 1;
                for want in ex.says {
                    if !said.contains(want) {
                        failures.push(format!(
                            "{}: no message with '{want}' in:\n{said}",
                            ex.source
                        ));
                    }
                }
            }
            (Outcome::Refused(want), Err(e)) if e.contains(want) => refused += 1,
            (want, _) => failures.push(format!("{}: wanted {want:?}, got {line}", ex.source)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("{plans} examples plan, {refused} are refused");
    assert_eq!(plans + refused, examples().len());
}
