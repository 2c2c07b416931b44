//! External tools the tests use, installed on demand into `<workspace>/target/tools`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tool could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// A command failed.
    #[error("{what} failed: {detail}")]
    Command {
        /// What was being done.
        what: String,
        /// Its output or error.
        detail: String,
    },
    /// File system trouble.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// The Python packages the tests use, pinned: the Kubernetes client, and librdkafka's
/// Python binding as a Kafka client nobody here wrote.
pub const PYTHON_PACKAGES: &[&str] = &[
    "kubernetes==37.0.2",
    "confluent-kafka==2.16.1",
    // `cargo xtask validate`: the deploy manifests against the Kubernetes schemas.
    "kubernetes-validate==1.37.0",
];

/// The Kafka-compatible broker the tests run, pinned.
pub const TANSU_VERSION: &str = "0.6.0";

/// cargo-fuzz, pinned: `cargo xtask fuzz` builds and runs the fuzz targets of `fuzz/` with it.
pub const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `<workspace>/target/tools` (or `KUBECREW_TOOLS_DIR`).
pub fn tools_dir() -> PathBuf {
    std::env::var_os("KUBECREW_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target").join("tools"))
}

fn run(what: &str, cmd: &mut Command) -> Result<(), ToolError> {
    let out = cmd.output().map_err(|e| ToolError::Command {
        what: what.to_owned(),
        detail: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(ToolError::Command {
            what: what.to_owned(),
            detail: format!(
                "{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    Ok(())
}

/// How often a long build says that it is still running.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Prints `tools: <line>` straight to the standard error's file descriptor: libtest captures
/// `eprintln!` in tests, and a silent wait of many minutes looks like a hang.
pub(crate) fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "tools: {line}");
}

/// Runs a long build of `what` with its output in `<tools>/logs/<log>.log`: says what it builds
/// and where the log is, then the elapsed time every 30 s; a failure names the log and shows
/// its end.
pub(crate) fn run_with_progress(what: &str, log: &str, cmd: &mut Command) -> Result<(), ToolError> {
    let logs = tools_dir().join("logs");
    std::fs::create_dir_all(&logs)?;
    let log_path = logs.join(format!("{log}.log"));
    let file = File::create(&log_path)?;
    say(&format!(
        "building {what} (log: {}); a first build takes minutes",
        log_path.display()
    ));
    let start = std::time::Instant::now();
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()?;
    let mut next_report = PROGRESS_EVERY;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() >= next_report {
            say(&format!(
                "still building {what}: {}s",
                start.elapsed().as_secs()
            ));
            next_report += PROGRESS_EVERY;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    if !status.success() {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        return Err(ToolError::Command {
            what: format!("building {what}"),
            detail: format!(
                "{status}; full log: {}\n{}",
                log_path.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ),
        });
    }
    say(&format!("built {what} in {}s", start.elapsed().as_secs()));
    Ok(())
}

/// Holds an exclusive lock on `<tools>/<name>.lock` while installing.
pub(crate) fn locked<T>(
    name: &str,
    f: impl FnOnce() -> Result<T, ToolError>,
) -> Result<T, ToolError> {
    let dir = tools_dir();
    std::fs::create_dir_all(&dir)?;
    let lock = File::create(dir.join(format!("{name}.lock")))?;
    lock.lock()?;
    let result = f();
    lock.unlock()?;
    result
}

/// A Python interpreter in a virtualenv with [`PYTHON_PACKAGES`] installed.
pub fn python() -> Result<PathBuf, ToolError> {
    locked("pyenv", || {
        let venv = tools_dir().join("pyenv");
        let python = venv.join("bin").join("python");
        let stamp = venv.join("installed.txt");
        let wanted = PYTHON_PACKAGES.join("\n");
        if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
            return Ok(python);
        }
        run(
            "python3 -m venv",
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
        )?;
        run(
            "pip install",
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .args(PYTHON_PACKAGES),
        )?;
        std::fs::write(&stamp, wanted)?;
        Ok(python)
    })
}

/// The `tansu` broker binary, built with `cargo install` into the tools directory once (CI
/// caches the tools directory, so it is built once per cache).
pub fn tansu() -> Result<PathBuf, ToolError> {
    locked("tansu", || {
        let root = tools_dir().join(format!("tansu-{TANSU_VERSION}"));
        let binary = root.join("bin").join("tansu");
        if binary.is_file() {
            return Ok(binary);
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        run_with_progress(
            &format!("tansu {TANSU_VERSION} (cargo install)"),
            "tansu",
            Command::new(cargo)
                .args(["install", "tansu", "--locked", "--features", "dynostore"])
                .args(["--version", TANSU_VERSION])
                .arg("--root")
                .arg(&root)
                // Build in cargo's temporary directory, not the caller's target directory.
                .env_remove("CARGO_TARGET_DIR"),
        )?;
        Ok(binary)
    })
}

/// `cargo-fuzz` [`CARGO_FUZZ_VERSION`], installed once with `cargo install` into
/// `<tools>/cargo-fuzz-<version>` (about a minute on 2 cores), like [`tansu`].
pub fn cargo_fuzz() -> Result<PathBuf, ToolError> {
    locked("cargo-fuzz", || {
        let root = tools_dir().join(format!("cargo-fuzz-{CARGO_FUZZ_VERSION}"));
        let binary = root.join("bin").join("cargo-fuzz");
        if binary.is_file() {
            return Ok(binary);
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        run_with_progress(
            &format!("cargo-fuzz {CARGO_FUZZ_VERSION} (cargo install)"),
            "cargo-fuzz",
            Command::new(cargo)
                .args(["install", "cargo-fuzz", "--locked"])
                .args(["--version", CARGO_FUZZ_VERSION])
                .arg("--root")
                .arg(&root)
                // Build in cargo's temporary directory, not the caller's target directory.
                .env_remove("CARGO_TARGET_DIR"),
        )?;
        Ok(binary)
    })
}

/// The C++ compiler the `cc` crate will use (`CXX`, else `c++` on PATH), which libfuzzer-sys
/// needs to build libFuzzer for `cargo xtask fuzz`. Installed with apt-get (`g++`) when missing
/// and running as root (CI); otherwise an error saying how to install it.
pub fn cxx() -> Result<PathBuf, ToolError> {
    let find = || {
        if let Some(cxx) = std::env::var_os("CXX").filter(|v| !v.is_empty()) {
            return Some(PathBuf::from(cxx));
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|p| p.join("c++"))
            .find(|p| p.is_file())
    };
    if let Some(cxx) = find() {
        return Ok(cxx);
    }
    say("no C++ compiler (c++) found: installing g++ with apt-get");
    for args in [
        &["install", "-y", "-q", "g++"][..],
        // A stale package index is the usual cause of a failure on a fresh machine.
        &["update", "-q"][..],
        &["install", "-y", "-q", "g++"][..],
    ] {
        if find().is_some() {
            break;
        }
        let _ = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
    }
    find().ok_or_else(|| ToolError::Command {
        what: "installing a C++ compiler".into(),
        detail: "`c++` is not installed and apt-get could not install g++; install g++ or clang, or set CXX".into(),
    })
}

/// iproute2's `ip`, which the nes-agent tests use to build network namespaces and as the
/// independent witness of the kernel's state. Installed with apt-get when missing and running
/// as root (CI); otherwise an error saying how to install it.
pub fn iproute2() -> Result<PathBuf, ToolError> {
    let find = || {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .map(|p| p.join("ip"))
            .find(|p| p.is_file())
    };
    if let Some(ip) = find() {
        return Ok(ip);
    }
    let installed = Command::new("apt-get")
        .args(["install", "-y", "-q", "iproute2"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        // A stale package index is the usual cause on a fresh machine.
        let _ = Command::new("apt-get").args(["update", "-q"]).status();
        let _ = Command::new("apt-get")
            .args(["install", "-y", "-q", "iproute2"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
    }
    find().ok_or_else(|| ToolError::Command {
        what: "installing iproute2".into(),
        detail: "`ip` is not installed and apt-get could not install it; install iproute2".into(),
    })
}

/// `kubectl` from PATH; every kubecrew machine has it (the project does not install it).
pub fn kubectl() -> Result<PathBuf, ToolError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|p| p.join("kubectl"))
        .find(|p| p.is_file())
        .ok_or_else(|| ToolError::Command {
            what: "finding kubectl".into(),
            detail: "kubectl is not on PATH; install kubectl 1.32+".into(),
        })
}
