//! Running the operator and workers as local processes with a ServiceAccount's credentials.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{ServiceAccountCredentials, Testbed, unique_name};

/// A child process whose output goes to a log file; it is stopped (SIGTERM, then SIGKILL after
/// a grace period) when dropped, so a failing test leaves nothing running.
#[derive(Debug)]
pub struct LocalProcess {
    pub label: String,
    child: Option<Child>,
    log: PathBuf,
}

impl LocalProcess {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the process printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Still running (not exited)?
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Sends a signal (e.g. "TERM", "KILL", "STOP", "CONT") to the process.
    pub fn signal(&self, sig: &str) -> Result<()> {
        let pid = self.pid().context("process already reaped")?;
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()?;
        if !st.success() {
            bail!("kill -{sig} {pid} failed");
        }
        Ok(())
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit status.
    pub fn stop(&mut self, grace: Duration) -> Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("{} already stopped", self.label)
        };
        if let Ok(Some(st)) = child.try_wait() {
            return Ok(st);
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(st) = child.try_wait()? {
                return Ok(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.kill()?;
        Ok(child.wait()?)
    }

    /// SIGKILL at once (a crash).
    pub fn kill(&mut self) -> Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("{} already stopped", self.label)
        };
        let _ = child.kill();
        Ok(child.wait()?)
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let child = self.child.as_mut().context("process already reaped")?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = child.try_wait()? {
                self.child = None;
                return Ok(st);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} still running after {timeout:?}; log {}",
                    self.label,
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for LocalProcess {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop(Duration::from_secs(5));
        }
        // A failing test shows what its processes said last (CI keeps no testbed logs).
        if std::thread::panicking() {
            eprintln!(
                "---- last lines of {} ({}) ----\n{}",
                self.label,
                self.log.display(),
                log_tail(&self.log(), LOG_TAIL_LINES)
            );
        }
    }
}

/// How many log lines a failing test prints per process.
const LOG_TAIL_LINES: usize = 40;

/// Pure: the last `n` informative lines of a process log: ANSI colours removed, debug lines and
/// the Delta and object-store libraries' chatter left out.
pub fn log_tail(log: &str, n: usize) -> String {
    let lines: Vec<String> = log
        .lines()
        .map(strip_ansi)
        .filter(|l| {
            !l.contains(" DEBUG ")
                && !l.contains(" TRACE ")
                && !l.contains("buoyant_kernel")
                && !l.contains("deltalake_core")
        })
        .collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ ... final byte in @..~
            for d in chars.by_ref() {
                if ('@'..='~').contains(&d) && d != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A binary of this workspace, built by cargo into `$CARGO_TARGET_DIR/<profile>/` (profile from
/// `ROUTINE_LOAD_PROFILE`, default `debug`). Fails with the cargo command to run when missing.
pub fn workspace_binary(name: &str) -> Result<PathBuf> {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => PathBuf::from(t),
        None => crate::repo_root().join("target"),
    };
    let profile = std::env::var("ROUTINE_LOAD_PROFILE").unwrap_or_else(|_| "debug".into());
    let path = target.join(&profile).join(name);
    if !path.is_file() {
        bail!(
            "{} not built: run `cargo build{} --bin {name}` first",
            path.display(),
            if profile == "release" {
                " --release"
            } else {
                ""
            }
        );
    }
    Ok(path)
}

impl Testbed {
    /// Starts `program` with the testbed's environment (brokers, S3, ...) and
    /// `KUBECONFIG` = the ServiceAccount's token kubeconfig, plus `env` on top. Its output goes
    /// to `$ROUTINE_LOAD_TESTBED/logs/processes/<label>-*.log`.
    pub fn spawn_as<I, S>(
        &self,
        label: &str,
        sa: &ServiceAccountCredentials,
        program: &Path,
        args: I,
        env: &BTreeMap<String, String>,
    ) -> Result<LocalProcess>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut cmd = Command::new(program);
        cmd.args(args.into_iter().map(Into::into));
        for (k, v) in self.child_env() {
            cmd.env(k, v);
        }
        cmd.env("KUBECONFIG", &sa.kubeconfig);
        cmd.env("POD_NAMESPACE", &sa.namespace);
        cmd.env_remove("KUBERNETES_SERVICE_HOST");
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.spawn(label, cmd)
    }

    /// Starts a prepared command with its output in a log file under the state dir.
    pub fn spawn(&self, label: &str, mut cmd: Command) -> Result<LocalProcess> {
        let dir = PathBuf::from(self.var("ROUTINE_LOAD_TESTBED")?).join("logs/processes");
        std::fs::create_dir_all(&dir)?;
        let log = dir.join(format!("{}.log", unique_name(label)));
        let out = File::create(&log)?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {label}: {cmd:?}"))?;
        eprintln!(
            "started {label} (pid {}), log {}",
            child.id(),
            log.display()
        );
        Ok(LocalProcess {
            label: label.into(),
            child: Some(child),
            log,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tails_keep_the_last_informative_lines_without_colours() {
        let log = "\u{1b}[2m2026\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m a\n\
                   t DEBUG b\n\
                   t  INFO buoyant_kernel::scan c\n\
                   t  WARN d\n\
                   t ERROR e";
        assert_eq!(log_tail(log, 2), "t  WARN d\nt ERROR e");
        assert_eq!(log_tail(log, 10), "2026  INFO a\nt  WARN d\nt ERROR e");
    }
}
