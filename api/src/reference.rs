//! The reference's Wikipedia quick start (`CREATE ROUTINE LOAD routine_load_wikipedia ON
//! routine_wiki_edit`), shared by tests and benchmarks.

/// The `routine_wiki_edit` table as a `Table` spec (YAML); `location` is a placeholder.
pub const WIKIPEDIA_TABLE_YAML: &str = r#"
location: file:///tmp/routine_wiki_edit
columns:
  - {name: event_time, type: DATETIME, nullable: false}
  - {name: channel, type: VARCHAR(32)}
  - {name: user, type: VARCHAR(128)}
  - {name: is_anonymous, type: TINYINT}
  - {name: is_minor, type: TINYINT}
  - {name: is_new, type: TINYINT}
  - {name: is_robot, type: TINYINT}
  - {name: is_unpatrolled, type: TINYINT}
  - {name: delta, type: INT}
  - {name: added, type: INT}
  - {name: deleted, type: INT}
"#;

/// The reference's quick start statement, verbatim (`kubectl routineload convert` must convert
/// it; the plugin's unit and end-to-end tests both use it).
pub const WIKIPEDIA_CREATE_ROUTINE_LOAD: &str = r#"CREATE ROUTINE LOAD routine_load_wikipedia ON routine_wiki_edit
COLUMNS TERMINATED BY ",",
COLUMNS (event_time, channel, user, is_anonymous, is_minor, is_new, is_robot, is_unpatrolled, delta, added, deleted)
PROPERTIES
(
    "desired_concurrent_number"="1",
    "max_error_number"="1000"
)
FROM KAFKA
(
    "kafka_broker_list"= "localhost:9092",
    "kafka_topic" = "starrocks-load"
);"#;
