//! Restarting one component of the shared testbed (kube-apiserver, Kafka, MinIO) in place.
//!
//! `testbed.sh up` is not a way to restart one component: on a testbed that is not healthy it
//! stops everything it recorded and removes the state directory before starting afresh. So the
//! campaign restarts a component itself, the way `testbed.sh` started it: it reads the recorded
//! PID (`pids/<name>.pid`, checked against `pids/<name>.cmd` like `testbed.sh`'s `alive`), takes
//! the process's exact command line, environment and working directory from `/proc`, stops it,
//! starts the same command again in a process group of its own (so it outlives the test) with
//! its output appended to the same log, records the new PID, and waits until
//! `testbed.sh status` reports every component healthy again.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

struct Recorded {
    pid: u32,
    argv: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    cwd: PathBuf,
}

fn split_nul(bytes: Vec<u8>) -> Vec<OsString> {
    bytes
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| OsString::from_vec(s.to_vec()))
        .collect()
}

fn recorded(state: &Path, name: &str) -> Result<Recorded> {
    let pids = state.join("pids");
    let pid: u32 = std::fs::read_to_string(pids.join(format!("{name}.pid")))
        .with_context(|| format!("no recorded PID for {name}"))?
        .trim()
        .parse()
        .context("PID file")?;
    let expect = std::fs::read_to_string(pids.join(format!("{name}.cmd"))).unwrap_or_default();
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let cmdline = std::fs::read(proc.join("cmdline"))
        .with_context(|| format!("{name} (pid {pid}) is not running"))?;
    let argv = split_nul(cmdline.clone());
    let joined = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    if !expect.trim().is_empty() && !joined.contains(expect.trim()) {
        bail!("pid {pid} is not {name} (cmdline {joined:?}, expected {expect:?})");
    }
    let env = split_nul(std::fs::read(proc.join("environ")).context("environ")?)
        .into_iter()
        .filter_map(|kv| {
            let kv = kv.into_vec();
            let eq = kv.iter().position(|b| *b == b'=')?;
            Some((
                OsString::from_vec(kv[..eq].to_vec()),
                OsString::from_vec(kv[eq + 1..].to_vec()),
            ))
        })
        .collect();
    let cwd = std::fs::read_link(proc.join("cwd")).context("cwd")?;
    Ok(Recorded {
        pid,
        argv,
        env,
        cwd,
    })
}

fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie is gone for our purposes.
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn kill(sig: &str, pid: u32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// Every testbed component healthy (`testbed.sh status`)?
pub fn all_healthy(script: &Path) -> bool {
    Command::new("bash")
        .arg(script)
        .arg("status")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Stops the component `name` with `signal` (SIGKILL after `grace`), starts it again with the
/// same command line and environment, and waits until the whole testbed is healthy. Returns a
/// line saying what happened.
pub fn restart(
    script: &Path,
    state: &Path,
    name: &str,
    signal: &str,
    grace: Duration,
    down_for: Duration,
) -> Result<String> {
    let t0 = Instant::now();
    let rec = recorded(state, name)?;
    kill(signal, rec.pid);
    let deadline = Instant::now() + grace;
    while running(rec.pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if running(rec.pid) {
        kill("KILL", rec.pid);
        while running(rec.pid) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let stopped = t0.elapsed();
    std::thread::sleep(down_for);
    let log = if name == "kafka" {
        state.join("kafka/logs/stdout.log")
    } else {
        state.join(format!("logs/{name}.log"))
    };
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("opening {}", log.display()))?;
    let err = out.try_clone()?;
    let mut cmd = Command::new(&rec.argv[0]);
    cmd.args(&rec.argv[1..])
        .env_clear()
        .envs(rec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&rec.cwd)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    // A freshly stopped listener can take a moment to free its port: retry the start a few
    // times when the new process exits at once.
    let mut child = None;
    for _ in 0..5 {
        let mut c = cmd
            .spawn()
            .with_context(|| format!("starting {name} again"))?;
        std::thread::sleep(Duration::from_secs(2));
        if matches!(c.try_wait(), Ok(None)) {
            child = Some(c);
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let child = child.with_context(|| format!("{name} exits at once after a restart"))?;
    let new_pid = child.id();
    // The child is left running (and reaped by init once this test process exits).
    std::mem::forget(child);
    let pid_file = state.join("pids").join(format!("{name}.pid"));
    let tmp = pid_file.with_extension("pid.tmp");
    std::fs::write(&tmp, format!("{new_pid}\n"))?;
    std::fs::rename(&tmp, &pid_file)?;
    let deadline = Instant::now() + Duration::from_secs(180);
    while !all_healthy(script) {
        if Instant::now() > deadline {
            bail!("the testbed is not healthy 180 s after restarting {name}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(format!(
        "pid {} -> {new_pid} (SIG{signal}, stopped in {:.1}s, healthy after {:.1}s)",
        rec.pid,
        stopped.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    ))
}
