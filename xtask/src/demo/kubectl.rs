//! kubectl against devcluster, the way a user would drive it; failures are errors with
//! kubectl's own message (never panics), and "not found" is a value, not an error.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

/// How long one kubectl invocation may take.
const TIMEOUT: Duration = Duration::from_secs(60);

/// kubectl bound to the demo's kubeconfig.
#[derive(Debug, Clone)]
pub struct Kubectl {
    program: PathBuf,
    kubeconfig: PathBuf,
    cache: PathBuf,
}

impl Kubectl {
    /// kubectl (from PATH) for the cluster of `kubeconfig`, with a discovery cache beside it.
    pub fn new(kubeconfig: &Path) -> anyhow::Result<Self> {
        Ok(Kubectl {
            program: testkit::tools::kubectl()?,
            kubeconfig: kubeconfig.to_owned(),
            cache: kubeconfig.with_extension("kubectl-cache"),
        })
    }

    /// Runs kubectl with `args`; returns stdout, or an error with the command and stderr.
    pub async fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.output(args).await?;
        if !out.status.success() {
            bail!(
                "kubectl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `kubectl get <what> -o json`, or `None` when the object does not exist (yet).
    pub async fn get(&self, args: &[&str]) -> anyhow::Result<Option<Value>> {
        let mut full = vec!["get"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["-o", "json"]);
        let out = self.output(&full).await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            if stderr.contains("NotFound") || stderr.contains("not found") {
                return Ok(None);
            }
            bail!("kubectl {} failed: {}", full.join(" "), stderr.trim());
        }
        let value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("kubectl {} printed no JSON", full.join(" ")))?;
        Ok(Some(value))
    }

    async fn output(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        let run = tokio::process::Command::new(&self.program)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args)
            .kill_on_drop(true)
            .output();
        tokio::time::timeout(TIMEOUT, run)
            .await
            .with_context(|| format!("kubectl {} ran over {TIMEOUT:?}", args.join(" ")))?
            .context("starting kubectl")
    }
}

/// The string at a JSON pointer (`/status/notified/edgeNodeId`), if it is one.
pub fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

/// The `status` of the condition `type_` in `.status.conditions`.
pub fn condition<'a>(value: &'a Value, type_: &str) -> Option<&'a str> {
    value
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
        .and_then(|c| c.get("status").and_then(Value::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conditions_are_found_by_type() {
        let obj = json!({"status": {"conditions": [
            {"type": "Reconciling", "status": "False"},
            {"type": "Ready", "status": "True"}
        ]}});
        assert_eq!(condition(&obj, "Ready"), Some("True"));
        assert_eq!(condition(&obj, "Stalled"), None);
        assert_eq!(condition(&json!({}), "Ready"), None);
        assert_eq!(text(&obj, "/status/conditions/1/type"), Some("Ready"));
    }
}
