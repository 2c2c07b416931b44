//! kubectl against devcluster, the way a user would drive it; failures are errors with
//! kubectl's own message (never panics), and "not found" is a value, not an error.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::kubectl::{Output, Target};

/// How long one kubectl invocation may take.
const TIMEOUT: Duration = Duration::from_secs(60);

/// kubectl bound to the demo's kubeconfig.
#[derive(Debug, Clone)]
pub struct Kubectl {
    inner: crate::kubectl::Kubectl,
}

impl Kubectl {
    /// kubectl (from PATH) for the cluster of `kubeconfig`, with a discovery cache beside it.
    pub fn new(kubeconfig: &Path) -> anyhow::Result<Self> {
        Ok(Kubectl {
            inner: crate::kubectl::Kubectl::new(Target {
                kubeconfig: Some(kubeconfig.to_owned()),
                context: None,
                cache_dir: Some(kubeconfig.with_extension("kubectl-cache")),
            })?,
        })
    }

    /// Runs kubectl with `args`; returns stdout, or an error with the command and stderr.
    pub async fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        self.inner.run(args, None, TIMEOUT).await
    }

    /// `kubectl get <what> -o json`, or `None` when the object does not exist (yet).
    pub async fn get(&self, args: &[&str]) -> anyhow::Result<Option<Value>> {
        let mut full = vec!["get"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["-o", "json"]);
        let out: Output = self.inner.output(&full, None, TIMEOUT).await?;
        if !out.success {
            if out.stderr.contains("NotFound") || out.stderr.contains("not found") {
                return Ok(None);
            }
            bail!("kubectl {} failed: {}", full.join(" "), out.stderr);
        }
        let value = serde_json::from_str(&out.stdout)
            .with_context(|| format!("kubectl {} printed no JSON", full.join(" ")))?;
        Ok(Some(value))
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
