//! An independent Delta reader: `e2e/delta_reader.py`, run with the testbed's pyarrow venv.
//! It replays `_delta_log` itself (JSON commits and Parquet checkpoints) and reads the Parquet
//! files with pyarrow, so it shares no code with the delta-rs writer the worker uses.
//!
//! And a second one, Spark (`e2e/spark_reader.py`: pyspark + delta-spark, the JVM Delta
//! implementation): [`spark_read_tables`] reads several tables in one Spark session, and
//! [`check_readers_agree`] / [`Testbed::check_with_both_readers`] compare it with the first.

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
    /// sha256 of the sorted canonical JSON rows (the same function `e2e/spark_reader.py` prints).
    pub checksum: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct SchemaField {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: Value,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitSummary {
    pub version: i64,
    pub operation: Option<String>,
    /// `commitInfo.timestamp`: when the writer committed (ms since the epoch).
    #[serde(default)]
    pub timestamp: Option<i64>,
    /// `commitInfo.routineLoad`: the job, task, task UID, epoch, worker, label and counters a
    /// worker records with each batch.
    #[serde(default)]
    pub routine_load: Option<Value>,
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
    crate::e2e_dir().join("delta_reader.py")
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

// ---------------------------------------------------------------------------------------------
// Spark: the second independent reader.

/// What Spark (`e2e/spark_reader.py`: pyspark + delta-spark, the JVM Delta implementation) read
/// from one table, or why it could not.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SparkRead {
    pub table: String,
    /// Spark's error (e.g. `DELTA_FEATURES_PROTOCOL_METADATA_MISMATCH`) when it refused the table.
    pub error: Option<String>,
    pub version: Option<i64>,
    pub count: Option<usize>,
    /// sha256 of the sorted canonical JSON rows; the same function as `DeltaSnapshot::checksum`.
    pub checksum: Option<String>,
    /// Only when asked for (`rows: true`).
    pub rows: Option<Vec<Map<String, Value>>>,
    #[serde(default)]
    pub schema: Vec<Value>,
    #[serde(default)]
    pub partition_columns: Vec<String>,
    /// `minReaderVersion`, `minWriterVersion` and `tableFeatures` as `DESCRIBE DETAIL` shows them.
    pub protocol: Option<Value>,
}

/// The Spark reader script.
pub fn spark_reader_script() -> PathBuf {
    crate::e2e_dir().join("spark_reader.py")
}

/// Where the Spark reader's pieces are: the Python with pyspark, the Delta jars and the s3a jars.
#[derive(Clone, Debug)]
pub struct SparkPaths {
    pub python: PathBuf,
    pub delta_jars: PathBuf,
    pub s3a_jars: PathBuf,
}

/// `SPARK_READER_PYTHON`, `SPARK_DELTA_JARS` and `SPARK_S3A_JARS` from the testbed env file or
/// the environment, else the paths `e2e/testbed/lib.sh` defines (where `install-spark.sh` puts
/// them).
pub fn spark_paths(tb: Option<&Testbed>) -> Result<SparkPaths> {
    let get = |k: &str| {
        tb.and_then(|t| t.vars.get(k).cloned())
            .or_else(|| std::env::var(k).ok())
    };
    if let (Some(py), Some(delta), Some(s3a)) = (
        get("SPARK_READER_PYTHON"),
        get("SPARK_DELTA_JARS"),
        get("SPARK_S3A_JARS"),
    ) {
        return Ok(SparkPaths {
            python: py.into(),
            delta_jars: delta.into(),
            s3a_jars: s3a.into(),
        });
    }
    let lib = crate::e2e_dir().join("testbed/lib.sh");
    let out = Command::new("bash")
        .arg("-c")
        .arg(r#"source "$1" && printf '%s\n' "$SPARK_VENV_DIR/bin/python" "$SPARK_IVY_DIR/jars" "$SPARK_S3A_DIR/jars""#)
        .arg("bash")
        .arg(&lib)
        .output()
        .context("bash e2e/testbed/lib.sh")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    match lines[..] {
        [py, delta, s3a] => Ok(SparkPaths {
            python: py.into(),
            delta_jars: delta.into(),
            s3a_jars: s3a.into(),
        }),
        _ => bail!("e2e/testbed/lib.sh gave no Spark paths: {text}"),
    }
}

/// The Spark reader command: `spark_reader.py <command>` with its environment.
fn spark_command(tb: Option<&Testbed>, command: &str) -> Result<Command> {
    let p = spark_paths(tb)?;
    if !p.python.is_file() {
        bail!(
            "{} is missing: run e2e/testbed/install-spark.sh (make testbed-prereqs)",
            p.python.display()
        );
    }
    let mut cmd = Command::new(&p.python);
    cmd.arg(spark_reader_script())
        .arg(command)
        .env("SPARK_DELTA_JARS", &p.delta_jars)
        .env("SPARK_S3A_JARS", &p.s3a_jars)
        .env("PYSPARK_PYTHON", &p.python);
    Ok(cmd)
}

/// Reads tables with Spark, all in one Spark session (one JVM start, several seconds), with
/// storage options for S3 tables. One entry per table, in order; a table Spark refuses has
/// `error` set (the others are still read).
pub fn spark_read_tables(
    tb: Option<&Testbed>,
    tables: &[&str],
    rows: bool,
    storage_options: &[(String, String)],
) -> Result<Vec<SparkRead>> {
    let mut cmd = spark_command(tb, "read")?;
    cmd.args(tables);
    if rows {
        cmd.arg("--rows");
    }
    for (k, v) in storage_options {
        cmd.arg("--storage-option").arg(format!("{k}={v}"));
    }
    let out = cmd.output().context("running spark_reader.py")?;
    let reads: Vec<SparkRead> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("parsing spark_reader.py output")?;
    if reads.len() != tables.len() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
        bail!(
            "spark_reader.py printed {} of {} tables ({}): {}",
            reads.len(),
            tables.len(),
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    Ok(reads)
}

/// Runs Spark SQL statements (one session), e.g. `CREATE TABLE delta.`/path` (...) USING delta`.
pub fn spark_sql(tb: Option<&Testbed>, statements: &[&str]) -> Result<()> {
    let out = spark_command(tb, "sql")?
        .args(statements)
        .output()
        .context("running spark_reader.py")?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
        bail!(
            "spark_reader.py sql failed ({}): {}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    Ok(())
}

/// Checks that Spark read what the pyarrow reader read: no error, the same version, row count
/// and checksum. On a checksum mismatch with rows, names the first row one reader lacks.
pub fn check_readers_agree(pyarrow: &DeltaSnapshot, spark: &SparkRead) -> Result<()> {
    if let Some(e) = &spark.error {
        bail!("Spark refused {}: {e}", spark.table);
    }
    let mut problems = Vec::new();
    if spark.version != Some(pyarrow.version) {
        problems.push(format!(
            "version: Spark {:?}, pyarrow {}",
            spark.version, pyarrow.version
        ));
    }
    if spark.count != Some(pyarrow.rows.len()) {
        problems.push(format!(
            "rows: Spark {:?}, pyarrow {}",
            spark.count,
            pyarrow.rows.len()
        ));
    }
    if spark.checksum.as_deref() != Some(pyarrow.checksum.as_str()) {
        problems.push(format!(
            "checksum: Spark {:?}, pyarrow {}",
            spark.checksum, pyarrow.checksum
        ));
        if let Some(rows) = &spark.rows {
            let text = |r: &Map<String, Value>| Value::Object(r.clone()).to_string();
            let ours: std::collections::BTreeSet<String> = pyarrow.rows.iter().map(text).collect();
            let theirs: std::collections::BTreeSet<String> = rows.iter().map(text).collect();
            if let Some(r) = ours.difference(&theirs).next() {
                problems.push(format!("pyarrow has, Spark lacks: {r}"));
            }
            if let Some(r) = theirs.difference(&ours).next() {
                problems.push(format!("Spark has, pyarrow lacks: {r}"));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!(
            "Spark and pyarrow disagree on {}: {}",
            spark.table,
            problems.join("; ")
        )
    }
}

impl Testbed {
    /// Reads tables with Spark in one session; S3 tables use the testbed's credentials.
    pub fn read_with_spark(&self, tables: &[&str], rows: bool) -> Result<Vec<SparkRead>> {
        let opts: Vec<(String, String)> = if tables
            .iter()
            .any(|t| t.starts_with("s3://") || t.starts_with("s3a://"))
        {
            self.s3_storage_options()?.into_iter().collect()
        } else {
            vec![]
        };
        spark_read_tables(Some(self), tables, rows, &opts)
    }

    /// Reads each table with both independent readers (pyarrow per table, Spark once for all)
    /// and checks they agree (version, count, checksum). Returns the pyarrow snapshots and Spark's
    /// reads, in order. With `rows`, Spark's rows come back too (and a mismatch names a row).
    pub fn check_with_both_readers(
        &self,
        tables: &[&str],
        rows: bool,
    ) -> Result<Vec<(DeltaSnapshot, SparkRead)>> {
        let spark = self.read_with_spark(tables, rows)?;
        let mut out = Vec::new();
        let mut errors = Vec::new();
        for (t, s) in tables.iter().zip(spark) {
            let p = self.read_delta(t, None)?;
            if let Err(e) = check_readers_agree(&p, &s) {
                errors.push(format!("{e:#}"));
            }
            out.push((p, s));
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            bail!("{}", errors.join("\n"))
        }
    }
}
