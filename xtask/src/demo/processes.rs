//! The processes the demo starts: each in its own process group (so a terminal's Ctrl-C
//! reaches the demo, which then stops them in order, rather than every process at once), with
//! stdout and stderr in a log file, and all of them stopped by [`Processes::shutdown`] or, on
//! any other way out, killed when the registry is dropped.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// How long a process may take to exit after SIGTERM before it gets SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// One started process.
struct Running {
    name: String,
    pid: u32,
    log: PathBuf,
    child: Child,
}

/// The registry of started processes.
pub struct Processes {
    logs: PathBuf,
    running: Vec<Running>,
    /// Every pid ever started, for the final check that none is left.
    started: Vec<(String, u32)>,
}

/// A process that exited while the demo still needed it.
#[derive(Debug)]
pub struct Exited {
    /// Its name.
    pub name: String,
    /// How it ended.
    pub status: ExitStatus,
    /// Its log file.
    pub log: PathBuf,
}

impl Processes {
    /// A registry whose processes log to `<logs>/<name>.log`.
    pub fn new(logs: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(logs).with_context(|| format!("creating {}", logs.display()))?;
        Ok(Processes {
            logs: logs.to_owned(),
            running: Vec::new(),
            started: Vec::new(),
        })
    }

    /// The log file of the process `name`.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.logs.join(format!("{name}.log"))
    }

    /// Starts `cmd` as `name` in a new process group, stdout and stderr to its log file.
    /// Returns the log file.
    pub fn spawn(&mut self, name: &str, mut cmd: Command) -> anyhow::Result<PathBuf> {
        let log = self.log_path(name);
        let file = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let pid = child
            .id()
            .with_context(|| format!("{name} exited before it could be tracked"))?;
        self.started.push((name.to_owned(), pid));
        self.running.push(Running {
            name: name.to_owned(),
            pid,
            log: log.clone(),
            child,
        });
        Ok(log)
    }

    /// The first process that has exited, if any (the demo needs every one it started).
    pub fn exited(&mut self) -> Option<Exited> {
        self.running
            .iter_mut()
            .find_map(|r| match r.child.try_wait() {
                Ok(Some(status)) => Some(Exited {
                    name: r.name.clone(),
                    status,
                    log: r.log.clone(),
                }),
                _ => None,
            })
    }

    /// How many processes are running.
    pub fn len(&self) -> usize {
        self.running.len()
    }

    /// Stops every process, the last started first: SIGTERM to its group, SIGKILL after
    /// [`GRACE`], then SIGKILL to whatever is left in the group. Returns the names of the
    /// processes that had to be killed.
    pub async fn shutdown(&mut self) -> Vec<String> {
        let mut killed = Vec::new();
        while let Some(mut r) = self.running.pop() {
            signal_group(r.pid, Signal::SIGTERM);
            if tokio::time::timeout(GRACE, r.child.wait()).await.is_err() {
                signal_group(r.pid, Signal::SIGKILL);
                let _ = r.child.wait().await;
                killed.push(r.name.clone());
            }
            // Anything the process started and left behind in its group.
            signal_group(r.pid, Signal::SIGKILL);
        }
        killed
    }

    /// The processes (by name and pid) of which anything is still running: the process itself
    /// or a member of its group. Empty after [`Processes::shutdown`] unless something escaped.
    pub fn leftovers(&self) -> Vec<String> {
        self.started
            .iter()
            .filter(|(_, pid)| alive(*pid))
            .map(|(name, pid)| format!("{name} (pid {pid})"))
            .collect()
    }

    /// [`Processes::leftovers`] once they are gone or `timeout` has passed (a SIGKILLed
    /// process takes a moment to end).
    pub async fn leftovers_after(&self, timeout: Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = self.leftovers();
            if left.is_empty() || tokio::time::Instant::now() > deadline {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Processes {
    /// Errors, panics and interrupted futures end here: kill every group outright.
    fn drop(&mut self) {
        for r in &mut self.running {
            signal_group(r.pid, Signal::SIGKILL);
            let _ = r.child.start_kill();
        }
    }
}

fn pid_of(pid: u32) -> Option<Pid> {
    i32::try_from(pid).ok().map(Pid::from_raw)
}

/// Sends `signal` to the process group led by `pid`; a group that is gone already is fine.
fn signal_group(pid: u32, signal: Signal) {
    if let Some(pid) = pid_of(pid) {
        let _ = killpg(pid, signal);
    }
}

/// Whether the process `pid` or any member of its group is still running. Zombies do not
/// count: a grandchild killed with its group is reparented to PID 1, which may be slow (or,
/// in some containers, never) to reap it, but it no longer runs.
fn alive(pid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        // No procfs: fall back to signal 0 (which also counts zombies).
        return pid_of(pid).is_some_and(|p| {
            !matches!(kill(p, None), Err(Errno::ESRCH))
                || !matches!(killpg(p, None), Err(Errno::ESRCH))
        });
    };
    entries.filter_map(|e| e.ok()).any(|e| {
        let Some(other) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            return false;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        match stat_state(&stat) {
            Some((state, group)) => state != 'Z' && (other == pid || group == pid),
            None => false,
        }
    })
}

/// The state and process group of a `/proc/<pid>/stat` line (`pid (comm) state ppid pgrp
/// ...`; the command name may hold spaces and parentheses, so parsing starts after the last
/// `)`).
fn stat_state(stat: &str) -> Option<(char, u32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let group = fields.next()?.parse().ok()?;
    Some((state, group))
}

/// The last `n` lines of a log file, for error messages (empty if it cannot be read).
pub fn tail(log: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script);
        cmd
    }

    fn temp_logs(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("xtask-demo-{name}-{}", std::process::id()))
    }

    #[tokio::test]
    async fn shutdown_stops_processes_and_what_they_started() {
        let logs = temp_logs("shutdown");
        let mut procs = Processes::new(&logs).expect("log dir");
        // A child that starts a grandchild and ignores SIGTERM: only the group kill ends both.
        procs
            .spawn(
                "stubborn",
                sh("trap '' TERM; sleep 300 & echo started; wait"),
            )
            .expect("spawned");
        procs.spawn("plain", sh("exec sleep 300")).expect("spawned");
        assert_eq!(procs.len(), 2);
        // The trap must be in place before the SIGTERM comes.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tail(&procs.log_path("stubborn"), 1) != "started" {
            assert!(tokio::time::Instant::now() < deadline, "never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(procs.leftovers().len(), 2);
        let killed = procs.shutdown().await;
        assert_eq!(killed, vec!["stubborn".to_owned()]);
        let left = procs.leftovers_after(Duration::from_secs(5)).await;
        assert!(left.is_empty(), "{left:?}");
        std::fs::remove_dir_all(&logs).ok();
    }

    #[tokio::test]
    async fn dropping_the_registry_kills_everything() {
        let logs = temp_logs("drop");
        let mut procs = Processes::new(&logs).expect("log dir");
        procs
            .spawn("child", sh("sleep 300 & wait"))
            .expect("spawned");
        let (_, pid) = procs.started[0].clone();
        drop(procs);
        // The kill is sent synchronously by drop; the zombie leader is reaped by tokio, so
        // wait (bounded) for the group to disappear rather than assuming it already has.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while alive(pid) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "process group {pid} still alive after drop"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        std::fs::remove_dir_all(&logs).ok();
    }

    #[test]
    fn stat_lines_give_state_and_group() {
        assert_eq!(
            stat_state("42 (sleep) S 1 40 40 0 -1 4194560"),
            Some(('S', 40))
        );
        assert_eq!(
            stat_state("43 (a (weird) name) Z 1 43 43 0"),
            Some(('Z', 43))
        );
        assert_eq!(stat_state("garbage"), None);
        assert_eq!(stat_state(""), None);
    }

    #[tokio::test]
    async fn an_exited_process_is_reported_with_its_log() {
        let logs = temp_logs("exited");
        let mut procs = Processes::new(&logs).expect("log dir");
        procs
            .spawn("short", sh("echo bye; exit 3"))
            .expect("spawned");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let exited = loop {
            if let Some(e) = procs.exited() {
                break e;
            }
            assert!(tokio::time::Instant::now() < deadline, "never exited");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(exited.name, "short");
        assert_eq!(exited.status.code(), Some(3));
        assert_eq!(tail(&exited.log, 5), "bye");
        procs.shutdown().await;
        std::fs::remove_dir_all(&logs).ok();
    }
}
