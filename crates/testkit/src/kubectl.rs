//! The real `kubectl`, run asynchronously against a kubeconfig, so tests whose API server runs
//! on the same tokio runtime (devcluster in-process) do not block it while kubectl waits.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::tools::{self, ToolError};

/// How long one kubectl invocation may take before the test fails.
const TIMEOUT: Duration = Duration::from_secs(120);

/// kubectl bound to one cluster's kubeconfig, with its own discovery cache.
#[derive(Debug, Clone)]
pub struct Kubectl {
    program: PathBuf,
    kubeconfig: PathBuf,
    cache: PathBuf,
}

/// What one kubectl run printed and how it ended.
#[derive(Debug, Clone)]
pub struct Output {
    /// Whether kubectl exited with status 0.
    pub success: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Kubectl {
    /// kubectl for the cluster of `kubeconfig`; the discovery cache lives beside it.
    pub fn new(kubeconfig: &Path) -> Result<Self, ToolError> {
        Ok(Kubectl::with_program(tools::kubectl()?, kubeconfig))
    }

    /// The kubectl binary `program` (e.g. the one built with the real control plane) for the
    /// cluster of `kubeconfig`.
    pub fn with_program(program: PathBuf, kubeconfig: &Path) -> Self {
        Kubectl {
            program,
            kubeconfig: kubeconfig.to_owned(),
            cache: kubeconfig.with_extension("kubectl-cache"),
        }
    }

    /// Runs kubectl with `args` and returns what it printed, whether it failed or not.
    ///
    /// # Panics
    /// If kubectl cannot be started or runs longer than two minutes.
    pub async fn output(&self, args: &[&str]) -> Output {
        let run = tokio::process::Command::new(&self.program)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args)
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(TIMEOUT, run)
            .await
            .unwrap_or_else(|_| panic!("kubectl {} ran over {TIMEOUT:?}", args.join(" ")))
            .expect("kubectl starts");
        Output {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs kubectl with `args` and returns its standard output.
    ///
    /// # Panics
    /// If kubectl fails (with its standard error in the message).
    pub async fn run(&self, args: &[&str]) -> String {
        let out = self.output(args).await;
        assert!(
            out.success,
            "kubectl {} failed: {}",
            args.join(" "),
            out.stderr
        );
        out.stdout
    }
}
