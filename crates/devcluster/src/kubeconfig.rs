//! The kubeconfig file devcluster writes for kubectl, kube-rs and the Python client.

use std::path::Path;

/// Renders a kubeconfig whose current context points at `url` as an administrator.
pub fn render(url: &str) -> String {
    // A bearer token keeps every client's loader happy; devcluster authorizes everyone.
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
    token: devcluster-admin
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
