//! A cluster's directory, and the guarantee that nothing of a cluster outlives the process.
//!
//! - Dropping a [`WorkDir`] removes it (unless the caller chose the directory).
//! - A cluster shared by a whole test binary lives in a `static` and is never dropped, so an
//!   `atexit` handler kills its registered processes and removes its directories when the
//!   process exits normally (the test harness's end, failed tests included).
//! - A process killed outright runs neither: its children die by `PR_SET_PDEATHSIG`
//!   ([`crate::process`]), and the next start removes directories whose owner is gone.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::Error;

/// The prefix of every temporary cluster directory: `<tmp>/kubecrew-cluster-<pid>-<id>`.
const PREFIX: &str = "kubecrew-cluster-";

/// What the exit handler cleans: temporary directories and child processes.
struct Registry {
    dirs: Vec<PathBuf>,
    pids: Vec<u32>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    dirs: Vec::new(),
    pids: Vec::new(),
});

extern "C" fn clean_at_exit() {
    // try_lock: never block the exit on a thread that held the lock when exit began.
    let Ok(registry) = REGISTRY.try_lock() else {
        return;
    };
    for pid in &registry.pids {
        let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
    }
    for pid in &registry.pids {
        let _ = nix::sys::wait::waitpid(Pid::from_raw(*pid as i32), None);
    }
    for dir in &registry.dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn install_exit_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers a plain extern "C" function; it runs once at exit.
        unsafe {
            nix::libc::atexit(clean_at_exit);
        }
    });
}

/// A cluster's directory.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    temporary: bool,
}

impl WorkDir {
    /// `chosen`, created if missing and kept at the end; or a new temporary directory, removed
    /// at the end. Either way, leftovers of earlier processes that died are removed first.
    pub fn new(chosen: Option<PathBuf>) -> Result<Self, Error> {
        install_exit_handler();
        sweep_stale(&std::env::temp_dir());
        let (path, temporary) = match chosen {
            Some(path) => (path, false),
            None => (
                std::env::temp_dir().join(format!(
                    "{PREFIX}{}-{}",
                    std::process::id(),
                    &uuid::Uuid::new_v4().simple().to_string()[..8]
                )),
                true,
            ),
        };
        std::fs::create_dir_all(&path)?;
        if temporary {
            lock().dirs.push(path.clone());
        }
        Ok(WorkDir { path, temporary })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Kills `pid` at exit if it still runs then.
    pub fn register_pid(&self, pid: u32) {
        lock().pids.push(pid);
    }
}

fn lock() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.path);
            lock().dirs.retain(|d| d != &self.path);
        }
    }
}

/// The pid in a directory name `kubecrew-cluster-<pid>-<id>`.
fn owner(name: &str) -> Option<i32> {
    name.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
}

/// Removes cluster directories whose owning process no longer exists.
fn sweep_stale(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = owner(&name.to_string_lossy()) else {
            continue;
        };
        let gone = matches!(
            kill(Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        );
        if gone {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_read_from_directory_names() {
        assert_eq!(owner("kubecrew-cluster-1234-abcd1234"), Some(1234));
        assert_eq!(owner("kubecrew-cluster-x-abcd"), None);
        assert_eq!(owner("devcluster-1-2"), None);
    }

    #[test]
    fn directories_of_dead_processes_are_swept_and_live_ones_kept() {
        let tmp = tempfile::tempdir().unwrap();
        // pid_max is at most 2^22 on Linux: this pid cannot exist.
        let dead = tmp.path().join(format!("{PREFIX}99999999-aaaa"));
        let alive = tmp
            .path()
            .join(format!("{PREFIX}{}-bbbb", std::process::id()));
        std::fs::create_dir_all(&dead).unwrap();
        std::fs::create_dir_all(&alive).unwrap();
        sweep_stale(tmp.path());
        assert!(!dead.exists());
        assert!(alive.exists());
    }

    #[test]
    fn a_temporary_directory_is_removed_on_drop_and_a_chosen_one_kept() {
        let dir = WorkDir::new(None).unwrap();
        let path = dir.path().to_owned();
        assert!(path.is_dir());
        drop(dir);
        assert!(!path.exists());

        let chosen = tempfile::tempdir().unwrap();
        let dir = WorkDir::new(Some(chosen.path().join("c"))).unwrap();
        let path = dir.path().to_owned();
        drop(dir);
        assert!(path.is_dir());
    }
}
