//! Test harness for the local testbed (`e2e/testbed/testbed.sh up`, or `make testbed-up`).
//!
//! The testbed runs a real kube-apiserver with etcd and kube-controller-manager, Apache Kafka
//! (KRaft, PLAINTEXT and SSL listeners) and MinIO (S3) on loopback, and writes an env file. This
//! crate reads that file and gives tests:
//! - [`Testbed::client`]: an admin [`kube::Client`];
//! - [`Testbed::service_account`]: a ServiceAccount's credentials from the TokenRequest API, as a
//!   kubeconfig file and a client, and [`Testbed::spawn_as`] to run the operator or a worker as a
//!   local process with them (so the chart's RBAC is what it runs with);
//! - [`kafka`]: client configs for both listeners, topic creation, a producer and a consumer;
//! - [`s3`]: storage options and the `object_store` the worker uses (through deltalake);
//! - [`delta`]: an independent Delta reader (`e2e/delta_reader.py`, pyarrow) that shares no code
//!   with the writer.
//!
//! Every test that needs the testbed starts with
//! `let Some(tb) = routine_load_e2e::testbed_or_skip("why") else { return };`:
//! with `ROUTINE_LOAD_E2E=0` it prints a visible skip line and the test returns; otherwise a
//! testbed that is not up is a test failure with a message saying how to start it
//! (`ROUTINE_LOAD_E2E_AUTOSTART=1` makes the harness run `testbed.sh up` itself).

pub mod delta;
pub mod installation;
pub mod kafka;
pub mod kube_util;
pub mod process;
pub mod proxy;
pub mod routed_broker;
pub mod s3;
pub mod sasl_broker;
pub mod wikipedia;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

use anyhow::{Context, Result, bail};

pub use kube_util::ServiceAccountCredentials;
pub use process::LocalProcess;

/// The checkout the tests run in. Found from the working directory (cargo runs a test in its
/// package's directory), not from where this crate was compiled: several checkouts sharing one
/// target directory share this crate's build, and each must read its own scripts and CRDs.
/// Falls back to the directory this crate was compiled in.
pub fn repo_root() -> PathBuf {
    if let Ok(mut dir) = std::env::current_dir() {
        loop {
            if dir.join("e2e/testbed/testbed.sh").is_file() {
                return dir;
            }
            if !dir.pop() {
                break;
            }
        }
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// This crate's directory in the checkout the tests run in (see [`repo_root`]).
pub fn e2e_dir() -> PathBuf {
    repo_root().join("e2e")
}

/// The testbed's scripts.
pub fn testbed_script() -> PathBuf {
    e2e_dir().join("testbed/testbed.sh")
}

/// Installs aws-lc-rs as the process-wide rustls provider, once. kube's and deltalake's TLS
/// stacks otherwise leave rustls with two providers and no default, and `kube::Client` panics.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

/// True unless `ROUTINE_LOAD_E2E=0` (or `false`/`no`/`off`).
pub fn e2e_enabled() -> bool {
    !matches!(
        std::env::var("ROUTINE_LOAD_E2E")
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
            .as_str(),
        "0" | "false" | "no" | "off"
    )
}

/// The testbed for a test, or `None` after printing a visible skip line when `ROUTINE_LOAD_E2E=0`.
/// Panics with instructions when the testbed is expected but not up.
pub fn testbed_or_skip(test: &str) -> Option<Testbed> {
    if !e2e_enabled() {
        // Written to the process's stderr directly, past libtest's output capture, so the skip
        // shows in a normal `cargo test` run.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr().lock(),
            "SKIPPED {test}: ROUTINE_LOAD_E2E=0 (this test needs the local testbed)"
        );
        return None;
    }
    match Testbed::load_or_start() {
        Ok(tb) => Some(tb),
        Err(e) => panic!(
            "{test}: the testbed is not up: {e:#}\n\
             Start it with `make testbed-up` (or `e2e/testbed/testbed.sh up`), \
             or set ROUTINE_LOAD_E2E_AUTOSTART=1 to let the tests start it, \
             or ROUTINE_LOAD_E2E=0 to skip the testbed tests."
        ),
    }
}

/// The running testbed, as described by its env file.
#[derive(Clone, Debug)]
pub struct Testbed {
    pub env_file: PathBuf,
    pub vars: BTreeMap<String, String>,
}

impl Testbed {
    /// Where `testbed.sh up` writes its env file:
    /// `$ROUTINE_LOAD_TESTBED_ENV`, else `${ROUTINE_LOAD_TESTBED:-$HOME/.cache/routine-load/testbed}/testbed.env`.
    pub fn env_file_path() -> PathBuf {
        if let Ok(p) = std::env::var("ROUTINE_LOAD_TESTBED_ENV") {
            return PathBuf::from(p);
        }
        let state = match std::env::var("ROUTINE_LOAD_TESTBED") {
            Ok(s) if !s.is_empty() => PathBuf::from(s),
            _ => {
                let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
                Path::new(&home).join(".cache/routine-load/testbed")
            }
        };
        state.join("testbed.env")
    }

    /// Reads the env file of a testbed that is up.
    pub fn load() -> Result<Self> {
        let env_file = Self::env_file_path();
        let text = std::fs::read_to_string(&env_file)
            .with_context(|| format!("no testbed env file at {}", env_file.display()))?;
        let vars = parse_env(&text);
        for key in ["KUBECONFIG", "KAFKA_BROKERS", "S3_ENDPOINT"] {
            if !vars.contains_key(key) {
                bail!("{} has no {key}", env_file.display());
            }
        }
        Ok(Testbed { env_file, vars })
    }

    /// [`Testbed::load`]; when that fails and `ROUTINE_LOAD_E2E_AUTOSTART=1`, runs
    /// `testbed.sh up` first (it takes a lock, so concurrent test binaries are safe).
    pub fn load_or_start() -> Result<Self> {
        match Self::load() {
            Ok(tb) => Ok(tb),
            Err(e) if std::env::var("ROUTINE_LOAD_E2E_AUTOSTART").as_deref() == Ok("1") => {
                eprintln!(
                    "testbed not up ({e:#}): running {} up",
                    testbed_script().display()
                );
                // With the schema registry the Avro tests use, as `make testbed-up` starts it.
                let registry = std::env::var("ROUTINE_LOAD_SCHEMA_REGISTRY")
                    .unwrap_or_else(|_| "1".to_string());
                let status = Command::new("bash")
                    .arg(testbed_script())
                    .arg("up")
                    .env("ROUTINE_LOAD_SCHEMA_REGISTRY", registry)
                    .status()
                    .context("running testbed.sh up")?;
                if !status.success() {
                    bail!("testbed.sh up failed: {status}");
                }
                Self::load()
            }
            Err(e) => Err(e),
        }
    }

    /// A variable from the env file.
    pub fn var(&self, key: &str) -> Result<&str> {
        self.vars
            .get(key)
            .map(String::as_str)
            .with_context(|| format!("{} has no {key}", self.env_file.display()))
    }

    pub fn kubeconfig(&self) -> PathBuf {
        PathBuf::from(&self.vars["KUBECONFIG"])
    }

    /// The directory with kubectl, helm, etcdctl, ... of the testbed.
    pub fn bin_dir(&self) -> PathBuf {
        PathBuf::from(self.var("TESTBED_BIN").unwrap_or("/nonexistent"))
    }

    /// `kubectl` with the admin kubeconfig.
    pub fn kubectl(&self) -> Command {
        let mut c = Command::new(self.bin_dir().join("kubectl"));
        c.env("KUBECONFIG", self.kubeconfig());
        c
    }

    /// `helm` with the admin kubeconfig.
    pub fn helm(&self) -> Command {
        let mut c = Command::new(self.bin_dir().join("helm"));
        c.env("KUBECONFIG", self.kubeconfig());
        c
    }

    /// Runs a command to completion: Ok(stdout) on success, else an error with its output.
    pub fn run(cmd: &mut Command) -> Result<String> {
        let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "{cmd:?} failed ({}):\n{}{}",
                out.status,
                stdout,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(stdout)
    }

    /// All env-file variables, for a child process (KUBECONFIG, KAFKA_*, S3_*, AWS_*...).
    pub fn child_env(&self) -> impl Iterator<Item = (&String, &String)> {
        self.vars.iter()
    }
}

/// Parses `KEY=value` / `export KEY=value` lines; `#` comments; optional single/double quotes.
pub fn parse_env(text: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            vars.insert(k.trim().to_string(), v.to_string());
        }
    }
    vars
}

/// A name unique to this test run, for topics, tables, namespaces: `prefix-<pid>-<nanos>`,
/// lower case and DNS-label safe.
pub fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_env_file() {
        let v = parse_env("# c\nexport A=1\nB='two words'\n C=\"x=y\" \n\nbad\n");
        assert_eq!(v["A"], "1");
        assert_eq!(v["B"], "two words");
        assert_eq!(v["C"], "x=y");
        assert_eq!(v.len(), 3);
    }

    #[test]
    fn unique_names_are_dns_labels() {
        let n = unique_name("topic");
        assert!(n.starts_with("topic-"));
        assert!(
            n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }
}
