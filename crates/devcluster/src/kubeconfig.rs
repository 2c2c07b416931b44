//! The kubeconfig file devcluster writes for kubectl, kube-rs and the Python client.

use std::path::Path;

/// The token of the kubeconfig's user: the server takes it (like no token at all) for the
/// administrator, `system:admin` in `system:masters`.
pub const ADMIN_TOKEN: &str = "devcluster-admin";

/// Renders a kubeconfig whose current context points at `url` as an administrator.
pub fn render(url: &str) -> String {
    // A bearer token keeps every client's loader happy; the server knows it as the admin's.
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: devcluster
  cluster:
    server: {url}
contexts:
- name: devcluster
  context:
    cluster: devcluster
    user: devcluster-admin
    namespace: default
current-context: devcluster
users:
- name: devcluster-admin
  user:
    token: {ADMIN_TOKEN}
preferences: {{}}
"
    )
}

/// Writes the kubeconfig to `path`, creating parent directories.
pub fn write(path: &Path, url: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, render(url))
}
