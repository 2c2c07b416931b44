//! kubectl as xtask drives it (`deploy`, `undeploy`, the demo): the user's kubeconfig and
//! context (or the ones given), YAML on stdin, and a deadline on every call so nothing waits
//! forever.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::AsyncWriteExt;

/// Which cluster to talk to; `None` leaves it to kubectl (`KUBECONFIG`, current context).
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// `--kubeconfig`.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`.
    pub context: Option<String>,
    /// `--cache-dir` (discovery cache), for a cluster that is not the user's.
    pub cache_dir: Option<PathBuf>,
}

/// kubectl bound to a [`Target`].
#[derive(Debug, Clone)]
pub struct Kubectl {
    program: PathBuf,
    target: Target,
}

/// What one kubectl call printed.
#[derive(Debug)]
pub struct Output {
    /// Whether it exited 0.
    pub success: bool,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr, trimmed.
    pub stderr: String,
}

impl Kubectl {
    /// kubectl from PATH, for `target`.
    pub fn new(target: Target) -> anyhow::Result<Self> {
        Ok(Kubectl {
            program: testkit::tools::kubectl()?,
            target,
        })
    }

    /// The target's description for messages: its context or kubeconfig, else kubectl's default.
    pub fn describe_target(&self) -> String {
        match (&self.target.context, &self.target.kubeconfig) {
            (Some(c), _) => format!("context {c}"),
            (None, Some(k)) => format!("the cluster of {}", k.display()),
            (None, None) => "kubectl's current context".to_owned(),
        }
    }

    /// Runs kubectl with `args` and `stdin`; an error if it cannot start or outlives `limit`
    /// (it is killed then). A non-zero exit is in the [`Output`], for the caller to judge.
    pub async fn output(
        &self,
        args: &[&str],
        stdin: Option<&str>,
        limit: Duration,
    ) -> anyhow::Result<Output> {
        let mut cmd = tokio::process::Command::new(&self.program);
        if let Some(kubeconfig) = &self.target.kubeconfig {
            cmd.arg("--kubeconfig").arg(kubeconfig);
        }
        if let Some(context) = &self.target.context {
            cmd.arg("--context").arg(context);
        }
        if let Some(cache) = &self.target.cache_dir {
            cmd.arg("--cache-dir").arg(cache);
        }
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().context("starting kubectl")?;
        let input = stdin.map(str::to_owned);
        let mut pipe = child.stdin.take();
        let run = async move {
            if let (Some(mut pipe), Some(input)) = (pipe.take(), input) {
                pipe.write_all(input.as_bytes())
                    .await
                    .context("writing to kubectl")?;
                // Dropping the pipe closes it: kubectl reads to end of file.
            }
            child
                .wait_with_output()
                .await
                .context("waiting for kubectl")
        };
        let out = tokio::time::timeout(limit, run).await.with_context(|| {
            format!(
                "kubectl {} did not finish within {}s",
                args.join(" "),
                limit.as_secs()
            )
        })??;
        Ok(Output {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }

    /// Like [`Kubectl::output`], but a non-zero exit is an error with kubectl's message.
    pub async fn run(
        &self,
        args: &[&str],
        stdin: Option<&str>,
        limit: Duration,
    ) -> anyhow::Result<String> {
        let out = self.output(args, stdin, limit).await?;
        if !out.success {
            bail!(
                "kubectl {} failed on {}: {}",
                args.join(" "),
                self.describe_target(),
                out.stderr
            );
        }
        Ok(out.stdout)
    }
}
