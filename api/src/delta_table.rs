//! The Delta table behind a `Table`: storage options, create-or-adopt and open.
//!
//! Shared by the operator (which creates or adopts the table) and the workers (which open it to
//! read offsets and commit batches). Every location scheme goes through the same code:
//! `file://` directly, `s3://` through delta-rs' S3 log store (conditional PUT, no lock table).

use std::collections::{BTreeMap, HashMap};

use deltalake::arrow::datatypes::{DataType as ArrowType, TimeUnit};
use deltalake::kernel::{DataType as DeltaType, StructField, StructType};
use deltalake::{DeltaTable, DeltaTableError};
use url::Url;

use crate::table::TableSpec;

/// Why the Delta table can't be created, adopted or opened.
#[derive(Debug, thiserror::Error)]
pub enum DeltaTableSetupError {
    /// The location is not a URL delta-rs can use.
    #[error("invalid table location '{location}': {reason}")]
    Location { location: String, reason: String },
    /// A column's type doesn't parse or has no Delta type.
    #[error("column '{column}': {reason}")]
    Column { column: String, reason: String },
    /// An existing Delta table at the location has a different schema or partitioning.
    #[error("the Delta table at {location} differs from the Table spec: {differences}")]
    SchemaMismatch {
        location: String,
        differences: String,
    },
    /// delta-rs or the object store failed.
    #[error(transparent)]
    Delta(#[from] DeltaTableError),
}

/// Storage options for a location: the entries of the Table's credentials Secret (already
/// decoded), with conveniences for S3-compatible servers:
/// an `http://` `AWS_ENDPOINT_URL` implies `AWS_ALLOW_HTTP=true`, and a missing region defaults
/// to `us-east-1`. Keys are passed through unchanged otherwise (delta-rs/object_store names,
/// e.g. `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL`).
pub fn storage_options(
    location: &str,
    secret: &BTreeMap<String, String>,
) -> HashMap<String, String> {
    let mut opts: HashMap<String, String> =
        secret.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    if location.starts_with("s3://") || location.starts_with("s3a://") {
        let endpoint = opts
            .get("AWS_ENDPOINT_URL")
            .or_else(|| opts.get("AWS_ENDPOINT"))
            .cloned();
        if endpoint.is_some_and(|e| e.starts_with("http://")) {
            opts.entry("AWS_ALLOW_HTTP".into())
                .or_insert_with(|| "true".into());
        }
        if !opts.contains_key("AWS_REGION") && !opts.contains_key("AWS_DEFAULT_REGION") {
            opts.insert("AWS_REGION".into(), "us-east-1".into());
        }
    }
    opts
}

/// Parses a Table location into the URL delta-rs takes.
pub fn table_url(location: &str) -> Result<Url, DeltaTableSetupError> {
    deltalake::ensure_table_uri(location).map_err(|e| DeltaTableSetupError::Location {
        location: location.to_string(),
        reason: e.to_string(),
    })
}

/// The Delta schema a Table spec declares: one field per column, in order, with the Arrow type
/// the load engine produces (`ColumnType::arrow_type`).
pub fn delta_schema(spec: &TableSpec) -> Result<StructType, DeltaTableSetupError> {
    let mut fields = Vec::with_capacity(spec.columns.len());
    for c in &spec.columns {
        let ty = c.parsed_type().map_err(|e| DeltaTableSetupError::Column {
            column: c.name.clone(),
            reason: e.to_string(),
        })?;
        let delta_ty =
            delta_type(&ty.arrow_type()).ok_or_else(|| DeltaTableSetupError::Column {
                column: c.name.clone(),
                reason: format!("type {} has no Delta type", c.column_type),
            })?;
        fields.push(StructField::new(c.name.clone(), delta_ty, c.nullable));
    }
    StructType::try_new(fields).map_err(|e| DeltaTableSetupError::Column {
        column: String::new(),
        reason: e.to_string(),
    })
}

/// The Delta type storing an Arrow type the load engine produces.
fn delta_type(arrow: &ArrowType) -> Option<DeltaType> {
    Some(match arrow {
        ArrowType::Boolean => DeltaType::BOOLEAN,
        ArrowType::Int8 => DeltaType::BYTE,
        ArrowType::Int16 => DeltaType::SHORT,
        ArrowType::Int32 => DeltaType::INTEGER,
        ArrowType::Int64 => DeltaType::LONG,
        ArrowType::Float32 => DeltaType::FLOAT,
        ArrowType::Float64 => DeltaType::DOUBLE,
        ArrowType::Decimal128(p, s) => DeltaType::decimal(*p, u8::try_from(*s).ok()?).ok()?,
        ArrowType::Date32 => DeltaType::DATE,
        ArrowType::Timestamp(TimeUnit::Microsecond, None) => DeltaType::TIMESTAMP_NTZ,
        ArrowType::Utf8 => DeltaType::STRING,
        _ => return None,
    })
}

/// Opens the Delta table at `location` at its latest version.
pub async fn open(
    location: &str,
    storage_options: HashMap<String, String>,
) -> Result<DeltaTable, DeltaTableSetupError> {
    let url = table_url(location)?;
    Ok(deltalake::open_table_with_storage_options(url, storage_options).await?)
}

/// Creates the Delta table a Table spec declares, or adopts the one already at its location when
/// its schema (names, types, nullability, order) and partition columns match. Refuses a table
/// that differs, naming the differing columns. Returns the table's current version.
pub async fn create_or_adopt(
    location: &str,
    spec: &TableSpec,
    storage_options: HashMap<String, String>,
) -> Result<i64, DeltaTableSetupError> {
    let want = delta_schema(spec)?;
    let url = table_url(location)?;
    let mut table = deltalake::DeltaTableBuilder::from_url(url)?
        .with_storage_options(storage_options.clone())
        .build()?;
    match table.load().await {
        Ok(()) => {
            check_matches(location, &table, &want, &spec.partition_columns)?;
            Ok(table.version().map_or(0, |v| v as i64))
        }
        Err(DeltaTableError::NotATable(_)) => {
            let created = table
                .create()
                .with_columns(want.fields().cloned())
                .with_partition_columns(spec.partition_columns.clone())
                .with_save_mode(deltalake::protocol::SaveMode::ErrorIfExists)
                .await;
            match created {
                Ok(t) => Ok(t.version().map_or(0, |v| v as i64)),
                // Someone else created it between our load and our create: adopt it if it fits.
                Err(_) => {
                    let t = open(location, storage_options).await?;
                    check_matches(location, &t, &want, &spec.partition_columns)?;
                    Ok(t.version().map_or(0, |v| v as i64))
                }
            }
        }
        Err(e) => Err(e.into()),
    }
}

fn check_matches(
    location: &str,
    table: &DeltaTable,
    want: &StructType,
    partition_columns: &[String],
) -> Result<(), DeltaTableSetupError> {
    let snapshot = table.snapshot()?;
    let have = snapshot.schema();
    let mut diffs = Vec::new();
    for f in want.fields() {
        match have.field(f.name()) {
            None => diffs.push(format!("column '{}' is missing", f.name())),
            Some(h) if h.data_type() != f.data_type() => diffs.push(format!(
                "column '{}' has type {} in the table, {} in the spec",
                f.name(),
                h.data_type(),
                f.data_type()
            )),
            Some(h) if h.is_nullable() != f.is_nullable() => diffs.push(format!(
                "column '{}' is {} in the table, {} in the spec",
                f.name(),
                nullability(h.is_nullable()),
                nullability(f.is_nullable())
            )),
            Some(_) => {}
        }
    }
    for h in have.fields() {
        if want.field(h.name()).is_none() {
            diffs.push(format!("column '{}' is not in the spec", h.name()));
        }
    }
    let have_parts = snapshot.metadata().partition_columns().to_vec();
    if have_parts[..] != *partition_columns {
        diffs.push(format!(
            "partition columns are {have_parts:?} in the table, {partition_columns:?} in the spec"
        ));
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(DeltaTableSetupError::SchemaMismatch {
            location: location.to_string(),
            differences: diffs.join("; "),
        })
    }
}

fn nullability(nullable: bool) -> &'static str {
    if nullable { "nullable" } else { "NOT NULL" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{DeletionPolicy, TableColumn};

    fn col(name: &str, ty: &str) -> TableColumn {
        TableColumn {
            name: name.into(),
            column_type: ty.into(),
            nullable: true,
            default: None,
            comment: None,
        }
    }

    fn spec(location: &str, columns: Vec<TableColumn>) -> TableSpec {
        TableSpec {
            columns,
            partition_columns: vec![],
            location: location.into(),
            credentials_secret: None,
            deletion_policy: DeletionPolicy::Retain,
            comment: None,
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn create_adopt_and_refuse() {
        let dir = std::env::temp_dir().join(format!(
            "rl-delta-table-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let location = format!("file://{}", dir.display());
        let cols = vec![
            col("id", "BIGINT"),
            col("ts", "DATETIME"),
            col("big", "LARGEINT"),
            col("d", "DECIMAL(10,2)"),
            col("day", "DATE"),
            col("name", "VARCHAR(20)"),
        ];
        let s = spec(&location, cols.clone());
        let rt = rt();
        rt.block_on(async {
            let v = create_or_adopt(&location, &s, HashMap::new())
                .await
                .unwrap();
            assert_eq!(v, 0);
            // Adopting the same table is fine.
            let v = create_or_adopt(&location, &s, HashMap::new())
                .await
                .unwrap();
            assert_eq!(v, 0);
            let t = open(&location, HashMap::new()).await.unwrap();
            assert_eq!(t.version(), Some(0u64));
            // A different schema is refused, naming the columns.
            let mut other = cols.clone();
            other[0] = col("id", "INT");
            other.push(col("extra", "STRING"));
            let err = create_or_adopt(&location, &spec(&location, other), HashMap::new())
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains("column 'id'"), "{err}");
            assert!(err.contains("column 'extra' is missing"), "{err}");
        });
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn s3_options_allow_http_endpoints() {
        let mut secret = BTreeMap::new();
        secret.insert(
            "AWS_ENDPOINT_URL".to_string(),
            "http://127.0.0.1:9000".to_string(),
        );
        let o = storage_options("s3://b/t", &secret);
        assert_eq!(o.get("AWS_ALLOW_HTTP").map(String::as_str), Some("true"));
        assert_eq!(o.get("AWS_REGION").map(String::as_str), Some("us-east-1"));
        let o = storage_options("file:///tmp/t", &secret);
        assert!(!o.contains_key("AWS_ALLOW_HTTP"));
    }
}
