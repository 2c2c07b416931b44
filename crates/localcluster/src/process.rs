//! The control plane's processes: each one's output goes to a log file, and none outlives the
//! process that started it.
//!
//! Children are started with `PR_SET_PDEATHSIG`, so the kernel kills them when their parent
//! goes, even after a SIGKILL or an abort that runs no destructor. The kernel means the parent
//! *thread*, so every child is forked from one launcher thread that lives as long as the
//! process: a test's runtime thread or tokio's blocking pool can come and go without taking the
//! cluster with them.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::Error;

type Request = (Command, mpsc::Sender<std::io::Result<Child>>);

fn launcher() -> &'static Mutex<mpsc::Sender<Request>> {
    static LAUNCHER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    LAUNCHER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("localcluster-launcher".into())
            .spawn(move || {
                // Never returns while the process lives: it is the parent of every child.
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
                loop {
                    std::thread::park();
                }
            })
            .expect("the launcher thread starts");
        Mutex::new(tx)
    })
}

fn spawn_from_launcher(mut command: Command) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
    let (tx, rx) = mpsc::channel();
    launcher()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((command, tx))
        .map_err(|_| std::io::Error::other("the launcher thread is gone"))?;
    rx.recv()
        .map_err(|_| std::io::Error::other("the launcher thread is gone"))?
}

/// One running program of the control plane.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `program args` with its standard output and error in `log`.
    pub fn start(name: &str, program: &Path, args: &[String], log: PathBuf) -> Result<Self, Error> {
        let file = File::create(&log)?;
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        let child = spawn_from_launcher(command).map_err(|e| Error::Start {
            name: name.to_owned(),
            detail: format!("{}: {e}", program.display()),
        })?;
        Ok(Process {
            name: name.to_owned(),
            child,
            log,
        })
    }

    /// The component's name (`etcd`, `kube-apiserver`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// An error if the process has exited, with the end of its log.
    pub fn check_running(&mut self) -> Result<(), Error> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => Err(Error::Exited {
                name: self.name.clone(),
                status: status.to_string(),
                log: self.log.display().to_string(),
                tail: log_tail(&self.log, 20),
            }),
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; waits for the exit.
    pub fn stop(&mut self, grace: Duration) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// The last `lines` lines of a log file.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(lines).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// A free TCP port on 127.0.0.1 (bound, then released for the child to bind).
pub fn free_port() -> Result<u16, Error> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}
