use super::*;
use crate::convert::doc_examples;
use routine_load_api::TableSpec;
use serde_yaml::Value;

fn opts(location: &str) -> TableOptions {
    TableOptions {
        namespace: None,
        location: Some(location.to_string()),
    }
}

fn run(sql: &str, location: &str) -> Result<ConvertedTable, String> {
    convert(&parse(sql)?, &opts(location))
}

fn spec(yaml: &str) -> TableSpec {
    serde_yaml::from_str(yaml).expect("spec YAML")
}

/// Every converted Table passes the api crate's checks (key model, Delta schema).
fn valid(c: &ConvertedTable) {
    routine_load_api::table_model::validate(&c.table.spec).expect("key model");
    routine_load_api::delta_table::delta_schema(&c.table.spec).expect("Delta schema");
}

/// Each statement is refused with an error holding its text.
fn refused(cases: &[(&str, &str)]) {
    for (sql, want) in cases {
        let e = run(sql, "file:///t").unwrap_err();
        assert!(e.contains(want), "{sql}: {e}");
    }
}

fn said(c: &ConvertedTable) -> String {
    [c.warnings.clone(), c.notes.clone()].concat().join("\n")
}

/// A StarRocks documentation example: the statement, the Table spec it converts to, and
/// pieces of the warnings and notes the conversion gives.
struct Example {
    source: &'static str,
    sql: &'static str,
    spec: &'static str,
    says: &'static [&'static str],
}

fn examples() -> Vec<Example> {
    vec![
        Example {
            source: "Duplicate Key table, create a table",
            sql: r#"CREATE TABLE IF NOT EXISTS detail (
    event_time DATETIME NOT NULL COMMENT "datetime of event",
    event_type INT NOT NULL COMMENT "type of event",
    user_id INT COMMENT "id of user",
    device_code INT COMMENT "device code",
    channel INT COMMENT ""
)
DUPLICATE KEY(event_time, event_type)
DISTRIBUTED BY HASH(user_id) BUCKETS 8;"#,
            spec: r#"
location: s3://bucket/t
keys: [event_time, event_type]
columns:
  - {name: event_time, type: DATETIME, nullable: false, comment: datetime of event}
  - {name: event_type, type: INT, nullable: false, comment: type of event}
  - {name: user_id, type: INT, comment: id of user}
  - {name: device_code, type: INT, comment: device code}
  - {name: channel, type: INT}
"#,
            says: &[
                "IF NOT EXISTS: kubectl apply creates the Table",
                "DISTRIBUTED BY HASH(user_id) BUCKETS 8 is ignored",
            ],
        },
        Example {
            // The page elides partitions with a "..." line; the statement keeps it.
            source: "Primary Key table, example 1 (orders, RANGE partitions)",
            sql: r#"create table orders (
    dt date NOT NULL,
    order_id bigint NOT NULL,
    user_id int NOT NULL,
    merchant_id int NOT NULL,
    good_id int NOT NULL,
    good_name string NOT NULL,
    price int NOT NULL,
    cnt int NOT NULL,
    revenue int NOT NULL,
    state tinyint NOT NULL
) PRIMARY KEY (dt, order_id)
PARTITION BY RANGE(`dt`) (
    PARTITION p20210820 VALUES [('2021-08-20'), ('2021-08-21')),
    PARTITION p20210821 VALUES [('2021-08-21'), ('2021-08-22')),
    ...
    PARTITION p20210929 VALUES [('2021-09-29'), ('2021-09-30')),
    PARTITION p20210930 VALUES [('2021-09-30'), ('2021-10-01'))
) DISTRIBUTED BY HASH(order_id)
PROPERTIES("replication_num" = "3",
"enable_persistent_index" = "true");"#,
            spec: r#"
location: s3://bucket/t
model: Primary
keys: [dt, order_id]
partitionColumns: [dt]
columns:
  - {name: dt, type: DATE, nullable: false}
  - {name: order_id, type: BIGINT, nullable: false}
  - {name: user_id, type: INT, nullable: false}
  - {name: merchant_id, type: INT, nullable: false}
  - {name: good_id, type: INT, nullable: false}
  - {name: good_name, type: STRING, nullable: false}
  - {name: price, type: INT, nullable: false}
  - {name: cnt, type: INT, nullable: false}
  - {name: revenue, type: INT, nullable: false}
  - {name: state, type: TINYINT, nullable: false}
"#,
            says: &[
                "PARTITION BY RANGE (dt): its 4 range partition(s) become one Delta partition per day",
                "DISTRIBUTED BY HASH(order_id) is ignored",
                "PROPERTIES \"replication_num\" = \"3\" is ignored: the object store keeps the copies",
                "PROPERTIES \"enable_persistent_index\" = \"true\" is ignored: the primary key index is StarRocks' own",
            ],
        },
        Example {
            // The page's "...." line of further columns is left out.
            source: "Primary Key table, example 2 (users, sort key)",
            sql: r#"create table users (
    user_id bigint NOT NULL,
    name string NOT NULL,
    email string NULL,
    address string NULL,
    age tinyint NULL,
    sex tinyint NULL,
    last_active datetime,
    property0 tinyint NOT NULL,
    property1 tinyint NOT NULL,
    property2 tinyint NOT NULL,
    property3 tinyint NOT NULL
) PRIMARY KEY (user_id)
DISTRIBUTED BY HASH(user_id)
ORDER BY(`address`,`last_active`)
PROPERTIES("replication_num" = "3",
"enable_persistent_index" = "true");"#,
            spec: r#"
location: s3://bucket/t
model: Primary
keys: [user_id]
columns:
  - {name: user_id, type: BIGINT, nullable: false}
  - {name: name, type: STRING, nullable: false}
  - {name: email, type: STRING}
  - {name: address, type: STRING}
  - {name: age, type: TINYINT}
  - {name: sex, type: TINYINT}
  - {name: last_active, type: DATETIME}
  - {name: property0, type: TINYINT, nullable: false}
  - {name: property1, type: TINYINT, nullable: false}
  - {name: property2, type: TINYINT, nullable: false}
  - {name: property3, type: TINYINT, nullable: false}
"#,
            says: &[
                "ORDER BY (address, last_active) is ignored",
                "DISTRIBUTED BY HASH(user_id) is ignored",
            ],
        },
        Example {
            source: "Unique Key table, create a table",
            sql: r#"CREATE TABLE IF NOT EXISTS orders (
    create_time DATE NOT NULL COMMENT "create time of an order",
    order_id BIGINT NOT NULL COMMENT "id of an order",
    order_state INT COMMENT "state of an order",
    total_price BIGINT COMMENT "price of an order"
)
UNIQUE KEY(create_time, order_id)
DISTRIBUTED BY HASH(order_id);"#,
            spec: r#"
location: s3://bucket/t
model: Unique
keys: [create_time, order_id]
columns:
  - {name: create_time, type: DATE, nullable: false, comment: create time of an order}
  - {name: order_id, type: BIGINT, nullable: false, comment: id of an order}
  - {name: order_state, type: INT, comment: state of an order}
  - {name: total_price, type: BIGINT, comment: price of an order}
"#,
            says: &["DISTRIBUTED BY HASH(order_id) is ignored"],
        },
        Example {
            source: "Aggregate table, create a table",
            sql: r#"CREATE TABLE aggregate_tbl (
    site_id LARGEINT NOT NULL COMMENT "id of site",
    date DATE NOT NULL COMMENT "time of event",
    city_code VARCHAR(20) COMMENT "city_code of user",
    pv BIGINT SUM DEFAULT "0" COMMENT "total page views"
)
AGGREGATE KEY(site_id, date, city_code)
DISTRIBUTED BY HASH(site_id);"#,
            spec: r#"
location: s3://bucket/t
model: Aggregate
keys: [site_id, date, city_code]
columns:
  - {name: site_id, type: LARGEINT, nullable: false, comment: id of site}
  - {name: date, type: DATE, nullable: false, comment: time of event}
  - {name: city_code, type: VARCHAR(20), nullable: false, comment: city_code of user}
  - {name: pv, type: BIGINT, aggregate: SUM, default: "0", comment: total page views}
"#,
            says: &[
                "key column 'city_code' is nullable in the statement: made NOT NULL, as key columns of Aggregate Tables are",
                "DISTRIBUTED BY HASH(site_id) is ignored",
            ],
        },
        Example {
            source: "Data distribution, Range+Hash distribution (expression partitioning by day)",
            sql: r#"CREATE TABLE site_access4 (
      event_day DATE,
      site_id INT DEFAULT '10',
      city_code VARCHAR(100),
      user_name VARCHAR(32) DEFAULT '',
      pv BIGINT SUM DEFAULT '0'
  )
  AGGREGATE KEY(event_day, site_id, city_code, user_name)
  -- Use expression partitioning as the partitioning method and configure a time function expression.
  -- You can also use range partitioning.
  PARTITION BY date_trunc('day', event_day)
  -- Use hash bucketing as the bucketing method and must specify the bucketing key.
  DISTRIBUTED BY HASH(event_day, site_id);"#,
            spec: r#"
location: s3://bucket/t
model: Aggregate
keys: [event_day, site_id, city_code, user_name]
partitionColumns: [event_day]
columns:
  - {name: event_day, type: DATE, nullable: false}
  - {name: site_id, type: INT, nullable: false, default: "10"}
  - {name: city_code, type: VARCHAR(100), nullable: false}
  - {name: user_name, type: VARCHAR(32), nullable: false, default: ""}
  - {name: pv, type: BIGINT, aggregate: SUM, default: "0"}
"#,
            says: &[
                "PARTITION BY date_trunc('day', event_day): one partition per day of the DATE column event_day",
                "key column 'event_day' is nullable",
                "key column 'user_name' is nullable",
                "DISTRIBUTED BY HASH(event_day, site_id) is ignored",
            ],
        },
        Example {
            source: "List partitioning, example 1",
            sql: r#"CREATE TABLE t_recharge_detail1 (
    id bigint,
    user_id bigint,
    recharge_money decimal(32,2), 
    city varchar(20) not null,
    dt varchar(20) not null
)
DUPLICATE KEY(id)
PARTITION BY LIST (city) (
   PARTITION pLos_Angeles VALUES IN ("Los Angeles"),
   PARTITION pSan_Francisco VALUES IN ("San Francisco")
)
DISTRIBUTED BY HASH(`id`);"#,
            spec: r#"
location: s3://bucket/t
keys: [id]
partitionColumns: [city]
columns:
  - {name: id, type: BIGINT}
  - {name: user_id, type: BIGINT}
  - {name: recharge_money, type: "DECIMAL(32,2)"}
  - {name: city, type: VARCHAR(20), nullable: false}
  - {name: dt, type: VARCHAR(20), nullable: false}
"#,
            says: &[
                "table 't_recharge_detail1' is Table 't-recharge-detail1'",
                "PARTITION BY LIST (city): its 2 partition definition(s) are dropped: the Delta table has one partition per distinct value",
                "DISTRIBUTED BY HASH(`id`) is ignored",
            ],
        },
        Example {
            source: "Expression partitioning, partition columns",
            sql: r#"CREATE TABLE t_recharge_detail1 (
    id bigint,
    user_id bigint,
    recharge_money decimal(32,2), 
    city varchar(20) not null,
    dt varchar(20) not null
)
DUPLICATE KEY(id)
PARTITION BY (dt,city)
DISTRIBUTED BY HASH(`id`);"#,
            spec: r#"
location: s3://bucket/t
keys: [id]
partitionColumns: [dt, city]
columns:
  - {name: id, type: BIGINT}
  - {name: user_id, type: BIGINT}
  - {name: recharge_money, type: "DECIMAL(32,2)"}
  - {name: city, type: VARCHAR(20), nullable: false}
  - {name: dt, type: VARCHAR(20), nullable: false}
"#,
            says: &["DISTRIBUTED BY HASH(`id`) is ignored"],
        },
        Example {
            source: "Data distribution, List+Random distribution (no bucketing clause)",
            sql: r#"CREATE TABLE t_recharge_detail1 (
      id bigint,
      user_id bigint,
      recharge_money decimal(32,2), 
      city varchar(20) not null,
      dt date not null
  )
  DUPLICATE KEY(id)
  -- Use expression partitioning as the partitioning method and specify the partition column.
  -- You can also use list partitioning.
  PARTITION BY (city);"#,
            spec: r#"
location: s3://bucket/t
keys: [id]
partitionColumns: [city]
columns:
  - {name: id, type: BIGINT}
  - {name: user_id, type: BIGINT}
  - {name: recharge_money, type: "DECIMAL(32,2)"}
  - {name: city, type: VARCHAR(20), nullable: false}
  - {name: dt, type: DATE, nullable: false}
"#,
            says: &[],
        },
        Example {
            source: "Aggregate table, generic aggregate states: the Duplicate source table t1",
            sql: r#"CREATE TABLE t1 (
  id BIGINT NOT NULL,
  province VARCHAR(64),
  age SMALLINT,
  dt VARCHAR(10) NOT NULL 
)
DUPLICATE KEY(id)
PARTITION BY (dt)
DISTRIBUTED BY HASH(id) BUCKETS 4;"#,
            spec: r#"
location: s3://bucket/t
keys: [id]
partitionColumns: [dt]
columns:
  - {name: id, type: BIGINT, nullable: false}
  - {name: province, type: VARCHAR(64)}
  - {name: age, type: SMALLINT}
  - {name: dt, type: VARCHAR(10), nullable: false}
"#,
            says: &["DISTRIBUTED BY HASH(id) BUCKETS 4 is ignored"],
        },
    ]
}

#[test]
fn starrocks_documentation_tables_convert() {
    let mut failures = Vec::new();
    for ex in examples() {
        let c = match run(ex.sql, "s3://bucket/t") {
            Ok(c) => c,
            Err(e) => {
                failures.push(format!("{}: refused: {e}", ex.source));
                continue;
            }
        };
        valid(&c);
        if c.table.spec != spec(ex.spec) {
            failures.push(format!(
                "{}: got\n{}",
                ex.source,
                serde_yaml::to_string(&c.table.spec).unwrap()
            ));
        }
        // None of the statements names a database.
        assert_eq!(c.table.metadata.namespace, None, "{}", ex.source);
        let said = said(&c);
        for want in ex.says {
            if !said.contains(want) {
                failures.push(format!(
                    "{}: no message with '{want}' in:\n{said}",
                    ex.source
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The CREATE TABLE statements of the Routine Load pages whose Tables the job examples are
/// planned against convert to exactly those Tables.
#[test]
fn routine_load_pages_tables_convert_to_the_tables_their_jobs_plan_against() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "CREATE ROUTINE LOAD reference, CSV: example_tbl1",
            r#"CREATE TABLE example_db.example_tbl1 ( 
    `order_id` bigint NOT NULL COMMENT "Order ID",
    `pay_dt` date NOT NULL COMMENT "Payment date", 
    `customer_name` varchar(26) NULL COMMENT "Customer name", 
    `nationality` varchar(26) NULL COMMENT "Nationality", 
    `gender` varchar(26) NULL COMMENT "Gender", 
    `price` double NULL COMMENT "Price") 
DUPLICATE KEY (order_id,pay_dt) 
DISTRIBUTED BY HASH(`order_id`); "#,
            "file:///tmp/example_tbl1",
            doc_examples::EXAMPLE_TBL1,
        ),
        (
            "CREATE ROUTINE LOAD reference, column mapping: example_tbl2",
            r#"CREATE TABLE example_db.example_tbl2 ( 
    `order_id` bigint NOT NULL COMMENT "Order ID",
    `pay_dt` date NOT NULL COMMENT "Payment date", 
    `customer_name` varchar(26) NULL COMMENT "Customer name", 
    `nationality` varchar(26) NULL COMMENT "Nationality", 
    `price` double NULL COMMENT "Price"
) 
DUPLICATE KEY (order_id,pay_dt) 
DISTRIBUTED BY HASH(order_id); "#,
            "file:///tmp/example_tbl2",
            doc_examples::EXAMPLE_TBL2_CSV,
        ),
        (
            "CREATE ROUTINE LOAD reference, JSON: example_tbl3 (Aggregate, bigint(20), NULL keys)",
            r#"CREATE TABLE example_db.example_tbl3 ( 
    commodity_id varchar(26) NULL, 
    customer_name varchar(26) NULL, 
    country varchar(26) NULL, 
    pay_time bigint(20) NULL, 
    price double SUM NULL COMMENT "Price") 
AGGREGATE KEY(commodity_id,customer_name,country,pay_time)
DISTRIBUTED BY HASH(commodity_id); "#,
            "file:///tmp/example_tbl3",
            doc_examples::EXAMPLE_TBL3,
        ),
        (
            "Loading into Primary Key tables (Routine Load): table1",
            r#"CREATE TABLE `table1`
   (
       `id` int(11) NOT NULL COMMENT "user ID",
       `name` varchar(65533) NOT NULL COMMENT "user name",
       `score` int(11) NOT NULL COMMENT "user score"
   )
   ENGINE=OLAP
   PRIMARY KEY(`id`)
   DISTRIBUTED BY HASH(`id`);"#,
            "file:///tmp/table1",
            doc_examples::PK_TABLE,
        ),
    ];
    for (source, sql, location, table) in cases {
        let c = run(sql, location).unwrap_or_else(|e| panic!("{source}: {e}"));
        valid(&c);
        assert_eq!(
            c.table.spec,
            spec(table),
            "{source}: got\n{}",
            serde_yaml::to_string(&c.table.spec).unwrap()
        );
    }
    // example_tbl3's key columns are NULL there and NOT NULL here; bigint(20) is BIGINT.
    let c = run(cases[2].1, cases[2].2).unwrap();
    let said = said(&c);
    for want in [
        "key column 'commodity_id' is NULL in the statement: made NOT NULL, as key columns of Aggregate Tables are",
        "key column 'pay_time' is NULL",
        "column 'pay_time': the display width of bigint(20) is dropped",
        "database 'example_db' is namespace 'example-db'",
    ] {
        assert!(said.contains(want), "no '{want}' in:\n{said}");
    }
    assert_eq!(c.table.metadata.namespace.as_deref(), Some("example-db"));
    assert_eq!(c.name, "example-tbl3");
}

/// A converted Table is what `--table` checks a job against.
#[test]
fn a_converted_table_plans_its_job() {
    let statements = split_statements(TABLE_AND_JOB).unwrap();
    let st = parse(&statements[0]).unwrap();
    let table = convert(&st, &opts("s3://bucket/example_tbl1")).unwrap();
    let yaml = table.to_yaml(&head(&st)).unwrap();
    let job = super::super::convert(
        &super::super::parse(&statements[1]).unwrap(),
        &super::super::ConvertOptions::default(),
    )
    .unwrap();
    let summary = super::super::check_against_table(&job, &yaml).unwrap();
    assert!(summary.contains("6 column(s) written"), "{summary}");
}

#[test]
fn every_type_maps() {
    let cases: &[(&str, &str, bool)] = &[
        ("BOOLEAN", "BOOLEAN", false),
        ("bool", "BOOLEAN", false),
        ("TINYINT", "TINYINT", false),
        ("tinyint(4)", "TINYINT", true),
        ("SMALLINT", "SMALLINT", false),
        ("smallint(6)", "SMALLINT", true),
        ("INT", "INT", false),
        ("INTEGER", "INT", false),
        ("int(11)", "INT", true),
        ("BIGINT", "BIGINT", false),
        ("bigint(20)", "BIGINT", true),
        ("LARGEINT", "LARGEINT", false),
        ("largeint(40)", "LARGEINT", true),
        ("FLOAT", "FLOAT", false),
        ("DOUBLE", "DOUBLE", false),
        ("DECIMAL(10, 2)", "DECIMAL(10,2)", false),
        ("decimal", "DECIMAL(10,0)", false),
        ("DECIMAL(18)", "DECIMAL(18,0)", false),
        ("DECIMALV2(27,9)", "DECIMAL(27,9)", false),
        ("DECIMAL32(9,2)", "DECIMAL(9,2)", false),
        ("DECIMAL64(18,4)", "DECIMAL(18,4)", false),
        ("DECIMAL128(38,10)", "DECIMAL(38,10)", false),
        ("DATE", "DATE", false),
        ("DATETIME", "DATETIME", false),
        ("CHAR(10)", "CHAR(10)", false),
        ("char", "CHAR(1)", true),
        ("VARCHAR(26)", "VARCHAR(26)", false),
        ("varchar(65533)", "VARCHAR(65533)", false),
        ("VARCHAR(1048576)", "VARCHAR(1048576)", false),
        ("varchar", "VARCHAR(1)", true),
        ("STRING", "STRING", false),
        ("JSON", "JSON", false),
    ];
    for (text, want, noted) in cases {
        let (ty, note) = map_type("c", text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(ty.to_string(), *want, "{text}");
        assert_eq!(note.is_some(), *noted, "{text}: {note:?}");
    }
    // All of them in one table: the Table validates and has a Delta schema.
    let columns: Vec<String> = cases
        .iter()
        .enumerate()
        .map(|(i, (text, _, _))| format!("c{i} {text} NOT NULL"))
        .collect();
    let sql = format!("CREATE TABLE all_types ({})", columns.join(",\n"));
    let c = run(&sql, "file:///tmp/all_types").unwrap();
    valid(&c);
    let types: Vec<&str> = c
        .table
        .spec
        .columns
        .iter()
        .map(|c| c.column_type.as_str())
        .collect();
    let want: Vec<&str> = cases.iter().map(|(_, w, _)| *w).collect();
    assert_eq!(types, want);
}

#[test]
fn unmappable_types_are_errors_naming_the_column() {
    let cases: &[(&str, &str)] = &[
        ("HLL", "column 'c' has type HLL: Delta has no HLL type"),
        (
            "BITMAP",
            "column 'c' has type BITMAP: Delta has no BITMAP type",
        ),
        ("PERCENTILE", "Delta has no PERCENTILE type"),
        (
            "ARRAY<INT>",
            "has type ARRAY<INT>: a Table's columns have no nested types: use JSON",
        ),
        (
            "MAP<INT, STRING>",
            "has type MAP<INT, STRING>: a Table's columns have no nested types",
        ),
        ("STRUCT<a INT, b STRING>", "no nested types"),
        ("ARRAY<ARRAY<INT>>", "no nested types"),
        ("VARBINARY", "no binary type: use STRING"),
        ("BINARY(16)", "no binary type"),
        ("TIME", "no TIME type"),
        (
            "TEXT",
            "column 'c' has type TEXT, which has no Table equivalent",
        ),
        (
            "DECIMAL256(50,2)",
            "has type DECIMAL256(50,2), which has no Table equivalent",
        ),
        (
            "DECIMAL(40,2)",
            "column 'c': invalid column type 'DECIMAL(40,2)': DECIMAL precision must be between 1 and 38",
        ),
        (
            "VARCHAR(2000000)",
            "VARCHAR length must be between 1 and 1048576",
        ),
        ("CHAR(300)", "CHAR length must be between 1 and 255"),
        (
            "ds_hll_count_distinct(varchar)",
            "has type ds_hll_count_distinct(varchar), which has no Table equivalent",
        ),
    ];
    for (text, want) in cases {
        let e = map_type("c", text).unwrap_err();
        assert!(e.contains(want), "{text}: {e}");
        // And in a statement, with the column list around it (whose commas inside the type,
        // as in MAP<INT, STRING>, don't end the column).
        let sql = format!("CREATE TABLE t (k INT NOT NULL, c {text}) DUPLICATE KEY(k)");
        let e = run(&sql, "file:///t").unwrap_err();
        assert!(e.contains("column 'c'") && e.contains(want), "{text}: {e}");
    }
    // Every unmappable column is named at once.
    let e = run(
        "CREATE TABLE t (a HLL HLL_UNION, b ARRAY<INT>, c INT) DUPLICATE KEY(c)",
        "file:///t",
    )
    .unwrap_err();
    assert!(e.contains("column 'a'") && e.contains("column 'b'"), "{e}");
}

#[test]
fn hll_and_bitmap_aggregates_are_errors() {
    // StarRocks' Aggregate table page: BITMAP_UNION / HLL_UNION value columns.
    let cases: &[(&str, &str)] = &[
        (
            "CREATE TABLE uv (dt DATE NOT NULL, page VARCHAR(100) NOT NULL, visit_users BITMAP BITMAP_UNION NOT NULL) AGGREGATE KEY(dt, page) DISTRIBUTED BY HASH(dt)",
            "column 'visit_users' has type BITMAP: Delta has no BITMAP type",
        ),
        (
            "CREATE TABLE uv (dt DATE NOT NULL, page VARCHAR(100) NOT NULL, uv HLL HLL_UNION) AGGREGATE KEY(dt, page)",
            "column 'uv' has type HLL: Delta has no HLL type",
        ),
        (
            "CREATE TABLE uv (dt DATE NOT NULL, user_id BIGINT BITMAP_UNION) AGGREGATE KEY(dt)",
            "column 'user_id' aggregates with BITMAP_UNION: Delta has no BITMAP type",
        ),
        (
            "CREATE TABLE uv (dt DATE NOT NULL, user_id BIGINT HLL_UNION) AGGREGATE KEY(dt)",
            "column 'user_id' aggregates with HLL_UNION: Delta has no HLL type",
        ),
        (
            "CREATE TABLE uv (dt DATE NOT NULL, v BIGINT PERCENTILE_UNION) AGGREGATE KEY(dt)",
            "aggregates with PERCENTILE_UNION: Delta has no PERCENTILE type",
        ),
    ];
    refused(cases);
}

#[test]
fn aggregate_functions_map_and_the_key_defaults_to_the_other_columns() {
    let c = run(
        "CREATE TABLE m (k INT NOT NULL, s BIGINT SUM, mx INT MAX, mn INT MIN, r VARCHAR(10) REPLACE, rn STRING REPLACE_IF_NOT_NULL) AGGREGATE KEY(k)",
        "file:///t",
    )
    .unwrap();
    valid(&c);
    let aggs: Vec<Option<&str>> = c
        .table
        .spec
        .columns
        .iter()
        .map(|c| c.aggregate.map(|a| a.name()))
        .collect();
    assert_eq!(
        aggs,
        [
            None,
            Some("SUM"),
            Some("MAX"),
            Some("MIN"),
            Some("REPLACE"),
            Some("REPLACE_IF_NOT_NULL")
        ]
    );
    // Without AGGREGATE KEY the key is every column without a function, as in StarRocks.
    let c = run(
        "CREATE TABLE m (k1 INT NOT NULL, k2 DATE NOT NULL, pv BIGINT SUM DEFAULT \"0\")",
        "file:///t",
    )
    .unwrap();
    assert_eq!(c.table.spec.model, TableModel::Aggregate);
    assert_eq!(c.table.spec.keys, ["k1", "k2"]);
    assert!(said(&c).contains("an Aggregate table whose keys are the other columns (k1, k2)"));
}

#[test]
fn statements_the_table_model_refuses_say_what_to_fix() {
    let cases: &[(&str, &str)] = &[
        (
            "CREATE TABLE t (k INT NOT NULL, v BIGINT) AGGREGATE KEY(k)",
            "value column 'v' of an Aggregate table has no aggregate",
        ),
        (
            "CREATE TABLE t (k INT NOT NULL, v BIGINT SUM) PRIMARY KEY(k)",
            "column 'v' has aggregate SUM, but only value columns of an Aggregate table take one",
        ),
        (
            "CREATE TABLE t (k DOUBLE NOT NULL, v INT) PRIMARY KEY(k)",
            "key column 'k' has type DOUBLE, which can't be a key of a Primary table",
        ),
        (
            "CREATE TABLE t (k INT NOT NULL, s STRING SUM) AGGREGATE KEY(k)",
            "column 's' has type STRING, which SUM can't aggregate",
        ),
        (
            "CREATE TABLE t (k INT NOT NULL) PRIMARY KEY(nope)",
            "key 'nope' is not a column of the table",
        ),
        (
            "CREATE TABLE t (k INT NOT NULL, __op INT) PRIMARY KEY(k)",
            "column '__op' is reserved",
        ),
        (
            "CREATE TABLE t (k INT NOT NULL, v INT DEFAULT \"abc\")",
            "column 'v': DEFAULT \"abc\" is not a valid INT",
        ),
        (
            "CREATE TABLE t (k TINYINT DEFAULT \"300\")",
            "DEFAULT \"300\" is not a valid TINYINT",
        ),
        (
            "CREATE TABLE t (k INT, K INT)",
            "column 'K' is defined twice",
        ),
        (
            "CREATE TABLE t (`my-col` INT)",
            "column 'my-col': a Table's column names are letters, digits and '_'",
        ),
        (
            "CREATE TABLE t (k INT) PARTITION BY (nope)",
            "PARTITION BY names 'nope', which is not a column",
        ),
        (
            "CREATE TABLE t (a INT, b INT, c INT, d INT, e INT, f INT, g INT, h INT, i INT) PARTITION BY (a, b, c, d, e, f, g, h, i)",
            "PARTITION BY has 9 columns: a Table has at most 8 partition columns",
        ),
    ];
    refused(cases);
}

#[test]
fn statements_that_do_not_convert_say_why() {
    let cases: &[(&str, &str)] = &[
        (
            "CREATE EXTERNAL TABLE ext (k INT) ENGINE=mysql PROPERTIES (\"host\" = \"h\")",
            "CREATE EXTERNAL TABLE ext: an external table's data stays in another system",
        ),
        (
            "CREATE TABLE ext (k INT) ENGINE=elasticsearch",
            "ENGINE = elasticsearch: an external table's data stays in another system",
        ),
        (
            "CREATE TABLE t2 LIKE t1",
            "CREATE TABLE t2 LIKE ...: the statement does not hold the other table's columns",
        ),
        (
            "CREATE TABLE t2 AS SELECT * FROM t1",
            "CREATE TABLE t2 ... AS SELECT: the columns come from a query",
        ),
        (
            "CREATE TABLE t2 PRIMARY KEY (k) AS SELECT * FROM t1",
            "expected '('",
        ),
        ("CREATE TABLE t ()", "the column list is empty"),
        (
            "CREATE TABLE t (k INT",
            "expected ')' closing the column list",
        ),
        (
            "CREATE TABLE t (k INT FROB)",
            "column 'k': expected an aggregate function, NULL, NOT NULL, DEFAULT, AUTO_INCREMENT, AS, COMMENT or ',' in the column definition at line 1, column 23 ('FROB')",
        ),
        (
            "CREATE TABLE t (k INT) DUPLICATE KEY(k) DUPLICATE KEY(k)",
            "the key (DUPLICATE/PRIMARY/UNIQUE/AGGREGATE KEY) is given twice",
        ),
        (
            "CREATE TABLE t (k INT NOT NULL) PRIMARY KEY (k,)",
            "expected an entry of PRIMARY KEY after ','",
        ),
        (
            "CREATE TABLE t (k INT) DISTRIBUTED BY HASH(k) BUCKETS x",
            "expected a number of buckets after BUCKETS",
        ),
        (
            "CREATE TABLE t (k INT) FROBNICATE",
            "expected ENGINE, DUPLICATE/PRIMARY/UNIQUE/AGGREGATE KEY, COMMENT, PARTITION BY",
        ),
        (
            "CREATE TABLE t (k INT); SELECT 1",
            "expected the end of the statement",
        ),
    ];
    refused(cases);
    let columns: Vec<String> = (0..33).map(|i| format!("k{i}")).collect();
    let sql = format!(
        "CREATE TABLE t ({}) UNIQUE KEY ({})",
        columns
            .iter()
            .map(|c| format!("{c} INT NOT NULL"))
            .collect::<Vec<_>>()
            .join(", "),
        columns.join(", ")
    );
    let e = run(&sql, "file:///t").unwrap_err();
    assert!(
        e.contains("UNIQUE KEY lists 33 columns; a Table has at most 32 keys"),
        "{e}"
    );
}

#[test]
fn if_not_exists_database_and_names() {
    let st = parse(
        "CREATE TABLE IF NOT EXISTS `Sales_DB`.`Order_Items` (id INT NOT NULL) DUPLICATE KEY(id)",
    )
    .unwrap();
    assert!(st.if_not_exists);
    assert_eq!(st.database.as_deref(), Some("Sales_DB"));
    assert_eq!(head(&st), "CREATE TABLE IF NOT EXISTS Sales_DB.Order_Items");
    let c = convert(&st, &opts("s3://b/p")).unwrap();
    assert_eq!(c.name, "order-items");
    assert_eq!(c.table.metadata.namespace.as_deref(), Some("sales-db"));
    assert_eq!(c.table.metadata.name.as_deref(), Some("order-items"));
    let said = said(&c);
    assert!(
        said.contains("table 'Order_Items' is Table 'order-items'"),
        "{said}"
    );
    assert!(
        said.contains("database 'Sales_DB' is namespace 'sales-db'"),
        "{said}"
    );
    assert!(said.contains("IF NOT EXISTS"), "{said}");
    // Without a database the -n namespace is used; a database beats it.
    let o = TableOptions {
        namespace: Some("ns".into()),
        location: Some("file:///t".into()),
    };
    let c = convert(&parse("CREATE TABLE t (a INT)").unwrap(), &o).unwrap();
    assert_eq!(c.table.metadata.namespace.as_deref(), Some("ns"));
    let c = convert(&parse("CREATE TABLE db.t (a INT)").unwrap(), &o).unwrap();
    assert_eq!(c.table.metadata.namespace.as_deref(), Some("db"));
    // A name that can't be a Kubernetes name.
    let e = run("CREATE TABLE `bad name` (a INT)", "file:///t").unwrap_err();
    assert!(
        e.contains("table name 'bad name' can't be a Kubernetes name"),
        "{e}"
    );
}

#[test]
fn partition_by_maps_columns_and_warns_for_the_rest() {
    type Case<'a> = (&'a str, &'a [&'a str], &'a str);
    let cols = "(id BIGINT NOT NULL, dt DATE NOT NULL, ts DATETIME NOT NULL, city VARCHAR(20) NOT NULL, n INT NOT NULL)";
    let cases: &[Case] = &[
        ("PARTITION BY (dt, city)", &["dt", "city"], ""),
        ("PARTITION BY dt, city", &["dt", "city"], ""),
        ("PARTITION BY city", &["city"], ""),
        (
            "PARTITION BY date_trunc('day', dt)",
            &["dt"],
            "one partition per day of the DATE column dt",
        ),
        (
            "PARTITION BY date_trunc('day', ts)",
            &[],
            "PARTITION BY date_trunc('day', ts) is not carried over: a Delta table partitions by column values, not expressions",
        ),
        (
            "PARTITION BY date_trunc('month', dt)",
            &[],
            "PARTITION BY date_trunc('month', dt) is not carried over",
        ),
        (
            "PARTITION BY time_slice(ts, INTERVAL 7 day)",
            &[],
            "PARTITION BY time_slice(ts, INTERVAL 7 day) is not carried over",
        ),
        (
            "PARTITION BY city, date_trunc('hour', ts)",
            &["city"],
            "date_trunc('hour', ts) is not carried over",
        ),
        (
            "PARTITION BY RANGE (dt) (START (\"2021-01-01\") END (\"2021-02-01\") EVERY (INTERVAL 1 DAY))",
            &["dt"],
            "PARTITION BY RANGE (dt): its 1 range partition(s) become one Delta partition per day",
        ),
        (
            "PARTITION BY RANGE (dt) (PARTITION p1 VALUES LESS THAN (\"2021-02-01\"), PARTITION p2 VALUES LESS THAN (\"2021-03-01\"))",
            &["dt"],
            "its 2 range partition(s)",
        ),
        (
            "PARTITION BY RANGE (n) (PARTITION p1 VALUES LESS THAN (\"100\"))",
            &[],
            "PARTITION BY RANGE (n) is not carried over: a Delta table partitions by column values, not ranges",
        ),
        (
            "PARTITION BY RANGE (ts) ()",
            &[],
            "PARTITION BY RANGE (ts) is not carried over",
        ),
        (
            "PARTITION BY LIST (city, dt) (PARTITION p1 VALUES IN ((\"a\", \"2024-01-01\")))",
            &["city", "dt"],
            "PARTITION BY LIST (city, dt): its 1 partition definition(s) are dropped: the Delta table has one partition per distinct value combination",
        ),
    ];
    for (clause, want, says) in cases {
        let sql =
            format!("CREATE TABLE t {cols} DUPLICATE KEY(id) {clause} DISTRIBUTED BY HASH(id)");
        let c = run(&sql, "file:///t").unwrap_or_else(|e| panic!("{clause}: {e}"));
        valid(&c);
        assert_eq!(c.table.spec.partition_columns, *want, "{clause}");
        assert!(said(&c).contains(says), "{clause}: {}", said(&c));
    }
}

#[test]
fn ignored_clauses_and_properties_each_get_a_warning() {
    let c = run(
        r#"CREATE TABLE example_db.t (
    k1 DATE NOT NULL,
    k2 INT NOT NULL,
    v INT REPLACE,
    INDEX idx_k2 (k2) USING BITMAP COMMENT 'k2 index'
) ENGINE = OLAP
AGGREGATE KEY(k1, k2)
COMMENT "the table's comment"
DISTRIBUTED BY RANDOM BUCKETS 4
ROLLUP (r1 (k1, v))
PROPERTIES (
    "replication_num" = "1",
    "dynamic_partition.enable" = "true",
    "bloom_filter_columns" = "k2",
    "storage_medium" = "SSD",
    "colocate_with" = "g1",
    "compression" = "ZSTD",
    "in_memory" = "false"
)
BROKER PROPERTIES ("username" = "u")"#,
        "file:///t",
    )
    .unwrap();
    valid(&c);
    assert_eq!(c.table.spec.comment.as_deref(), Some("the table's comment"));
    let want = [
        "INDEX idx_k2 (k2) USING BITMAP COMMENT 'k2 index' is ignored: Delta tables have no indexes",
        "DISTRIBUTED BY RANDOM BUCKETS 4 is ignored: bucketing is StarRocks' storage",
        "ROLLUP (r1 (k1, v)) is ignored: a Table has no rollups",
        "PROPERTIES \"replication_num\" = \"1\" is ignored: the object store keeps the copies",
        "PROPERTIES \"dynamic_partition.enable\" = \"true\" is ignored: a Delta table's partitions appear as rows arrive",
        "PROPERTIES \"bloom_filter_columns\" = \"k2\" is ignored: Delta has no bloom filter indexes",
        "PROPERTIES \"storage_medium\" = \"SSD\" is ignored: the Table's location decides",
        "PROPERTIES \"colocate_with\" = \"g1\" is ignored",
        "PROPERTIES \"compression\" = \"ZSTD\" is ignored: the Delta writer chooses",
        "PROPERTIES \"in_memory\" = \"false\" is ignored: a StarRocks storage setting with no Delta equivalent",
        "BROKER PROPERTIES \"username\" = \"u\" is ignored",
    ];
    for w in want {
        assert!(
            c.warnings.iter().any(|x| x.contains(w)),
            "no '{w}' in:\n{}",
            c.warnings.join("\n")
        );
    }
    // One warning per ignored item, and nothing else.
    assert_eq!(c.warnings.len(), want.len(), "{}", c.warnings.join("\n"));
}

#[test]
fn column_attributes_default_comment_auto_increment_generated() {
    let c = run(
        r#"CREATE TABLE t (
    id BIGINT NOT NULL AUTO_INCREMENT COMMENT "row id",
    n INT NULL DEFAULT "-1",
    m INT DEFAULT -2,
    s VARCHAR(10) DEFAULT 'x' COMMENT 'with ''quotes''',
    d DATE DEFAULT "2024-01-01",
    dt DATETIME DEFAULT CURRENT_TIMESTAMP,
    u VARCHAR(36) DEFAULT (uuid()),
    z INT DEFAULT NULL,
    j JSON,
    total BIGINT AS n + m COMMENT "sum"
) PRIMARY KEY (id)"#,
        "file:///t",
    )
    .unwrap();
    valid(&c);
    let col = |name: &str| {
        c.table
            .spec
            .columns
            .iter()
            .find(|c| c.name == name)
            .unwrap()
    };
    assert_eq!(col("id").comment.as_deref(), Some("row id"));
    assert!(!col("id").nullable);
    assert_eq!(col("n").default.as_deref(), Some("-1"));
    assert!(col("n").nullable);
    assert_eq!(col("m").default.as_deref(), Some("-2"));
    assert_eq!(col("s").default.as_deref(), Some("x"));
    assert_eq!(col("s").comment.as_deref(), Some("with 'quotes'"));
    assert_eq!(col("d").default.as_deref(), Some("2024-01-01"));
    assert_eq!(col("dt").default, None);
    assert_eq!(col("u").default, None);
    assert_eq!(col("z").default, None);
    assert_eq!(col("total").column_type, "BIGINT");
    let said = said(&c);
    for want in [
        "column 'id' is AUTO_INCREMENT: a Table has no generated values",
        "column 'dt': DEFAULT CURRENT_TIMESTAMP is dropped: a Table's default is a constant",
        "column 'u': DEFAULT (uuid()) is dropped",
        "column 'total' is generated (AS n + m): a Table's columns are all loaded; a job computes it with COLUMNS (..., total = n + m)",
    ] {
        assert!(said.contains(want), "no '{want}' in:\n{said}");
    }
}

#[test]
fn location_comes_from_the_option_or_is_a_placeholder() {
    let sql = "CREATE TABLE t (a INT)";
    let c = run(sql, "S3://bucket/prefix/t").unwrap();
    assert_eq!(c.table.spec.location, "s3://bucket/prefix/t");
    assert!(!said(&c).contains("REPLACE_ME"));
    for bad in ["bucket/t", "http://x/t", "s3://", "gs://b/t"] {
        let e = run(sql, bad).unwrap_err();
        assert!(
            e.contains(&format!("--location {bad}: expected s3://")),
            "{bad}: {e}"
        );
    }
    let c = convert(&parse(sql).unwrap(), &TableOptions::default()).unwrap();
    assert_eq!(c.table.spec.location, LOCATION_PLACEHOLDER);
    assert!(c.warnings.iter().any(|w| w.contains(
        "spec.location is REPLACE_ME: a CREATE TABLE names no storage; replace it with s3://bucket/prefix or file:///path (or convert with --location)"
    )));
    let yaml = c.to_yaml(&head(&parse(sql).unwrap())).unwrap();
    assert!(
        yaml.contains("# spec.location: replace REPLACE_ME"),
        "{yaml}"
    );
}

#[test]
fn yaml_is_a_table_object() {
    let st = parse("CREATE TABLE db.t (k INT NOT NULL COMMENT \"key\", v STRING) PRIMARY KEY (k)")
        .unwrap();
    let c = convert(&st, &opts("file:///data/t")).unwrap();
    let yaml = c.to_yaml(&head(&st)).unwrap();
    assert!(
        yaml.starts_with("# Converted by kubectl-routineload from: CREATE TABLE db.t\n---\n"),
        "{yaml}"
    );
    let docs: Vec<&str> = yaml.split("---\n").collect();
    assert_eq!(docs.len(), 2, "{yaml}");
    let v: Value = serde_yaml::from_str(docs[1]).unwrap();
    assert_eq!(v["apiVersion"].as_str(), Some("routineload.io/v1alpha1"));
    assert_eq!(v["kind"].as_str(), Some("Table"));
    assert_eq!(v["metadata"]["name"].as_str(), Some("t"));
    assert_eq!(v["metadata"]["namespace"].as_str(), Some("db"));
    assert!(v.get("status").is_none(), "{yaml}");
    let table: Table = serde_yaml::from_str(docs[1]).unwrap();
    assert_eq!(table.spec.model, TableModel::Primary);
    assert_eq!(table.spec.keys, ["k"]);
}

#[test]
fn statement_kinds_and_splitting() {
    let cases: &[(&str, Result<StatementKind, &str>)] = &[
        ("CREATE TABLE t (a INT)", Ok(StatementKind::Table)),
        (
            "-- c\n/* x */ create table t (a INT)",
            Ok(StatementKind::Table),
        ),
        ("CREATE EXTERNAL TABLE t (a INT)", Ok(StatementKind::Table)),
        ("CREATE TEMPORARY TABLE t (a INT)", Ok(StatementKind::Table)),
        (
            "CREATE ROUTINE LOAD j ON t FROM KAFKA (...)",
            Ok(StatementKind::RoutineLoad),
        ),
        (
            "SELECT 1",
            Err(
                "expected CREATE TABLE, CREATE ROUTINE LOAD, CREATE DATABASE or USE at line 1, column 1 ('SELECT')",
            ),
        ),
        (
            "CREATE VIEW v AS SELECT 1",
            Err(
                "expected TABLE, ROUTINE LOAD or DATABASE after CREATE at line 1, column 8 ('VIEW')",
            ),
        ),
        (
            "",
            Err(
                "expected CREATE TABLE, CREATE ROUTINE LOAD, CREATE DATABASE or USE at the end of the statement",
            ),
        ),
        (
            "USE mydatabase;",
            Ok(StatementKind::Use("mydatabase".into())),
        ),
        (
            "CREATE DATABASE IF NOT EXISTS mydatabase;",
            Ok(StatementKind::CreateDatabase("mydatabase".into())),
        ),
        (
            "create database db PROPERTIES (\"storage_volume\" = \"s3_volume\")",
            Ok(StatementKind::CreateDatabase("db".into())),
        ),
        (
            "USE a b",
            Err("expected the end of the statement at line 1, column 7 ('b')"),
        ),
    ];
    for (sql, want) in cases {
        match (statement_kind(sql), want) {
            (Ok(k), Ok(w)) => assert_eq!(k, w.clone(), "{sql}"),
            (Err(e), Err(w)) => assert!(e.contains(w), "{sql}: {e}"),
            (got, _) => panic!("{sql}: {got:?}"),
        }
    }
    let src = "-- tables\nCREATE TABLE a (x INT) COMMENT 'a;b';\n\nCREATE ROUTINE LOAD j ON a FROM KAFKA (\"k\" = \";\");\n-- end\n";
    let parts = split_statements(src).unwrap();
    // Each statement keeps its line and column: what precedes it is blank.
    assert_eq!(parts[1].lines().count(), 4);
    assert!(parts[1].starts_with("         \n"), "{:?}", parts[1]);
    let parts: Vec<&str> = parts.iter().map(|p| p.trim_start()).collect();
    assert_eq!(
        parts,
        [
            "CREATE TABLE a (x INT) COMMENT 'a;b';",
            "CREATE ROUTINE LOAD j ON a FROM KAFKA (\"k\" = \";\");"
        ]
    );
    assert_eq!(
        split_statements("CREATE TABLE a (x INT)").unwrap(),
        ["CREATE TABLE a (x INT)"]
    );
    assert!(split_statements("-- only a comment\n").unwrap().is_empty());
}

#[test]
fn temporary_table_warns_and_order_by_alone_is_the_duplicate_sort_key() {
    let c = run(
        "CREATE TEMPORARY TABLE t (a INT, b INT) ORDER BY (b, a)",
        "file:///t",
    )
    .unwrap();
    assert_eq!(c.table.spec.model, TableModel::Duplicate);
    assert_eq!(c.table.spec.keys, ["b", "a"]);
    let said = said(&c);
    assert!(
        said.contains("TEMPORARY: a Table is not bound to a session"),
        "{said}"
    );
    assert!(
        said.contains("ORDER BY (b, a) is the Duplicate table's sort key: recorded in keys"),
        "{said}"
    );
}

/// The Routine Load reference's CSV example: its table and its job in one file.
const TABLE_AND_JOB: &str = r#"-- example_tbl1 and the job loading it
CREATE TABLE example_db.example_tbl1 (
    `order_id` bigint NOT NULL COMMENT "Order ID",
    `pay_dt` date NOT NULL COMMENT "Payment date",
    `customer_name` varchar(26) NULL COMMENT "Customer name",
    `nationality` varchar(26) NULL COMMENT "Nationality",
    `gender` varchar(26) NULL COMMENT "Gender",
    `price` double NULL COMMENT "Price")
DUPLICATE KEY (order_id,pay_dt)
DISTRIBUTED BY HASH(`order_id`);

CREATE ROUTINE LOAD example_db.example_tbl1_ordertest1 ON example_tbl1
COLUMNS TERMINATED BY ",",
COLUMNS (order_id, pay_dt, customer_name, nationality, gender, price)
FROM KAFKA
(
    "kafka_broker_list" ="<kafka_broker1_ip>:<kafka_broker1_port>,<kafka_broker2_ip>:<kafka_broker2_port>",
    "kafka_topic" = "ordertest1"
);
"#;

#[test]
fn an_input_with_a_table_and_its_job_converts_both_and_plans_the_job() {
    let out = convert_input(
        TABLE_AND_JOB,
        &InputOptions {
            location: Some("s3://lake/example_tbl1".into()),
            ..InputOptions::default()
        },
    )
    .unwrap();
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&out.yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(kinds, ["Table", "RoutineLoadJob"], "{}", out.yaml);
    assert_eq!(
        docs[0]["spec"]["location"].as_str(),
        Some("s3://lake/example_tbl1")
    );
    assert_eq!(docs[1]["spec"]["table"].as_str(), Some("example-tbl1"));
    let messages = out.messages.join("\n");
    for want in [
        "note: CREATE ROUTINE LOAD example_db.example_tbl1_ordertest1 ON example_tbl1: planned against Table 'example-tbl1': 6 source field(s) per message, 6 column(s) written",
        "warning: CREATE TABLE example_db.example_tbl1: DISTRIBUTED BY HASH(`order_id`) is ignored",
    ] {
        assert!(messages.contains(want), "no '{want}' in:\n{messages}");
    }
    // A job that does not fit the Table the input creates is refused.
    let bad = TABLE_AND_JOB.replace(
        "pay_dt, customer_name, nationality, gender, price)",
        "customer_name, nationality, gender, price)",
    );
    let e = convert_input(&bad, &InputOptions::default()).unwrap_err();
    assert!(
        e.starts_with("the input: the job can't load Table 'example-tbl1'"),
        "{e}"
    );
}

#[test]
fn use_and_create_database_set_and_name_the_namespace() {
    // Loading into Primary Key tables: the page creates the database and switches to it first.
    let sql = r#"CREATE DATABASE IF NOT EXISTS mydatabase;
USE mydatabase;
CREATE TABLE `table1`
(
    `id` int(11) NOT NULL COMMENT "user ID",
    `name` varchar(65533) NULL COMMENT "user name",
    `score` int(11) NOT NULL COMMENT "user score"
)
ENGINE=OLAP
PRIMARY KEY(`id`)
DISTRIBUTED BY HASH(`id`);"#;
    let out = convert_input(
        sql,
        &InputOptions {
            namespace: Some("other".into()),
            location: Some("file:///data/table1".into()),
            ..InputOptions::default()
        },
    )
    .unwrap();
    let table: Table = serde_yaml::from_str(out.yaml.split("---\n").nth(1).unwrap()).unwrap();
    assert_eq!(table.metadata.namespace.as_deref(), Some("mydatabase"));
    assert_eq!(table.spec.model, TableModel::Primary);
    let messages = out.messages.join("\n");
    for want in [
        "note: CREATE DATABASE mydatabase is skipped: a database is a namespace; 'mydatabase' must exist (kubectl create namespace mydatabase)",
        "note: USE mydatabase: the statements after it that name no database are in namespace 'mydatabase'",
        "note: column 'id': the display width of int(11) is dropped",
    ] {
        assert!(messages.contains(want), "no '{want}' in:\n{messages}");
    }
}

#[test]
fn input_options_that_do_not_apply_are_refused() {
    let table = "CREATE TABLE t (a INT);";
    let job = "CREATE ROUTINE LOAD j ON t FROM KAFKA (\"kafka_broker_list\" = \"b:9092\", \"kafka_topic\" = \"t\");";
    let cases: Vec<(String, InputOptions, &str)> = vec![
        (
            table.to_string(),
            InputOptions {
                table_file: Some(("t.yaml".into(), String::new())),
                ..InputOptions::default()
            },
            "--table applies to CREATE ROUTINE LOAD, and the input holds only CREATE TABLE",
        ),
        (
            table.to_string(),
            InputOptions {
                include_secrets: true,
                ..InputOptions::default()
            },
            "--include-secrets applies to CREATE ROUTINE LOAD",
        ),
        (
            format!("{table}\n{}", table.replace(" t ", " u ")),
            InputOptions {
                location: Some("s3://b/t".into()),
                ..InputOptions::default()
            },
            "--location is one table's storage, and the input holds 2 CREATE TABLE statements: convert them one at a time",
        ),
        (
            job.to_string(),
            InputOptions {
                location: Some("s3://b/t".into()),
                ..InputOptions::default()
            },
            "--location is one table's storage, and the input holds 0 CREATE TABLE statements",
        ),
        (
            "-- nothing\n".to_string(),
            InputOptions::default(),
            "the input holds no CREATE TABLE or CREATE ROUTINE LOAD statement",
        ),
        (
            "USE db;".to_string(),
            InputOptions::default(),
            "the input holds no CREATE TABLE or CREATE ROUTINE LOAD statement",
        ),
        (
            format!("{table}\nDROP TABLE t;"),
            InputOptions::default(),
            "expected CREATE TABLE, CREATE ROUTINE LOAD, CREATE DATABASE or USE at line 2, column 1 ('DROP')",
        ),
    ];
    for (sql, opts, want) in cases {
        let e = convert_input(&sql, &opts).unwrap_err();
        assert!(e.contains(want), "{sql}: {e}");
    }
}

#[test]
fn a_single_job_converts_as_before() {
    let job = "CREATE ROUTINE LOAD db.j ON t FROM KAFKA (\"kafka_broker_list\" = \"b:9092\", \"kafka_topic\" = \"t\");";
    let out = convert_input(job, &InputOptions::default()).unwrap();
    let st = super::super::parse(job).unwrap();
    let c = super::super::convert(&st, &super::super::ConvertOptions::default()).unwrap();
    assert_eq!(out.yaml, c.to_yaml(&super::super::head(&st)).unwrap());
    // One statement: messages without the statement's head; no plan without a table.
    assert!(
        out.messages
            .iter()
            .all(|m| !m.contains("CREATE ROUTINE LOAD")),
        "{:?}",
        out.messages
    );
    assert!(
        out.messages.iter().all(|m| !m.contains("planned")),
        "{:?}",
        out.messages
    );
    // With --table, planned against it.
    let out = convert_input(
        job,
        &InputOptions {
            table_file: Some((
                "t.yaml".into(),
                "location: file:///t\ncolumns: [{name: a, type: INT}]\n".into(),
            )),
            ..InputOptions::default()
        },
    )
    .unwrap();
    assert!(
        out.messages
            .iter()
            .any(|m| m.starts_with("note: planned against Table 't'")),
        "{:?}",
        out.messages
    );
}

#[test]
fn key_and_partition_names_take_the_columns_spelling() {
    let c = run(
        "CREATE TABLE t (Order_ID BIGINT NOT NULL, Dt DATE NOT NULL, v INT) PRIMARY KEY (order_id, DT) PARTITION BY (dt)",
        "file:///t",
    )
    .unwrap();
    valid(&c);
    assert_eq!(c.table.spec.keys, ["Order_ID", "Dt"]);
    assert_eq!(c.table.spec.partition_columns, ["Dt"]);
}
