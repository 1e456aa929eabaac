//! An independent Delta reader: `e2e/delta_reader.py`, run with the testbed's pyarrow venv.
//! It replays `_delta_log` itself (JSON commits and Parquet checkpoints) and reads the Parquet
//! files with pyarrow, so it shares no code with the delta-rs writer the worker uses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::Testbed;

/// What the reader saw in a table at one version.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeltaSnapshot {
    pub version: i64,
    /// One JSON object per row: dates, timestamps and decimals as strings, binary as hex.
    pub rows: Vec<Map<String, Value>>,
    /// `txn` actions: application id -> version (the committed Kafka offsets).
    pub txns: BTreeMap<String, i64>,
    pub schema: Vec<SchemaField>,
    pub partition_columns: Vec<String>,
    /// Paths of the live data files.
    pub files: Vec<String>,
    /// Operation of each commit since the checkpoint the reader started from.
    pub commits: Vec<CommitSummary>,
    pub protocol: Option<Value>,
    pub configuration: BTreeMap<String, Value>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct SchemaField {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: Value,
}

#[derive(Clone, Debug, Deserialize)]
pub struct CommitSummary {
    pub version: i64,
    pub operation: Option<String>,
}

impl DeltaSnapshot {
    /// The rows sorted by the JSON text of the given columns (for order-independent checks).
    pub fn sorted_rows(&self, by: &[&str]) -> Vec<Map<String, Value>> {
        let mut rows = self.rows.clone();
        rows.sort_by_key(|r| {
            by.iter()
                .map(|c| r.get(*c).map(ToString::to_string).unwrap_or_default())
                .collect::<Vec<_>>()
        });
        rows
    }

    /// One column of every row.
    pub fn column(&self, name: &str) -> Vec<Value> {
        self.rows
            .iter()
            .map(|r| r.get(name).cloned().unwrap_or(Value::Null))
            .collect()
    }
}

/// The reader script.
pub fn reader_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("delta_reader.py")
}

/// The Python with pyarrow: `DELTA_READER_PYTHON` (set in the testbed env file), else the
/// venv that `install-prereqs.sh` makes, else `python3`.
pub fn reader_python(tb: Option<&Testbed>) -> PathBuf {
    if let Some(p) = tb.and_then(|t| t.vars.get("DELTA_READER_PYTHON")) {
        return PathBuf::from(p);
    }
    if let Ok(p) = std::env::var("DELTA_READER_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let cache = std::env::var("ROUTINE_LOAD_CACHE")
        .unwrap_or_else(|_| format!("{home}/.cache/routine-load"));
    let venv = Path::new(&cache).join("venv-pyarrow/bin/python");
    if venv.is_file() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// Reads a Delta table (a local path, `file://` or `s3://` URL) at its latest version or at
/// `version`, with storage options (`AWS_ENDPOINT_URL`, keys, ... for S3).
pub fn read_table(
    python: &Path,
    table: &str,
    version: Option<i64>,
    storage_options: &[(String, String)],
) -> Result<DeltaSnapshot> {
    let mut cmd = Command::new(python);
    cmd.arg(reader_script()).arg(table);
    if let Some(v) = version {
        cmd.arg("--version").arg(v.to_string());
    }
    for (k, v) in storage_options {
        let key = match k.as_str() {
            "AWS_ENDPOINT_URL" => "endpoint",
            "AWS_ACCESS_KEY_ID" => "access_key_id",
            "AWS_SECRET_ACCESS_KEY" => "secret_access_key",
            "AWS_REGION" => "region",
            other => other,
        };
        cmd.arg("--storage-option").arg(format!("{key}={v}"));
    }
    let out = cmd.output().with_context(|| {
        format!(
            "running {} (is pyarrow installed? e2e/testbed/install-prereqs.sh)",
            python.display()
        )
    })?;
    if !out.status.success() {
        bail!(
            "delta_reader.py {table} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).context("parsing delta_reader.py output")
}

impl Testbed {
    /// Reads a Delta table with the independent reader; S3 tables use the testbed's credentials.
    pub fn read_delta(&self, table: &str, version: Option<i64>) -> Result<DeltaSnapshot> {
        let opts: Vec<(String, String)> =
            if table.starts_with("s3://") || table.starts_with("s3a://") {
                self.s3_storage_options()?.into_iter().collect()
            } else {
                vec![]
            };
        read_table(&reader_python(Some(self)), table, version, &opts)
    }
}
