//! kubeconfig files for the control plane's clients, written from kube's own `Kubeconfig` type.

use std::path::Path;

use kube::config::{
    AuthInfo, Cluster as KubeconfigCluster, Context, Kubeconfig, NamedAuthInfo, NamedCluster,
    NamedContext,
};

use crate::Error;
use crate::certs::CertFiles;

/// The name of the cluster, user and context in every kubeconfig this crate writes.
pub const CONTEXT: &str = "kubecrew-local";

/// A kubeconfig for `server`, trusting `ca`, authenticating with the client certificate
/// `client` (files, not inline data: the keys stay in their 0600 files).
pub fn client_certificate(server: &str, ca: &Path, client: &CertFiles) -> Kubeconfig {
    Kubeconfig {
        clusters: vec![NamedCluster {
            name: CONTEXT.into(),
            cluster: Some(KubeconfigCluster {
                server: Some(server.into()),
                certificate_authority: Some(ca.display().to_string()),
                ..Default::default()
            }),
            ..Default::default()
        }],
        auth_infos: vec![NamedAuthInfo {
            name: CONTEXT.into(),
            auth_info: Some(AuthInfo {
                client_certificate: Some(client.cert.display().to_string()),
                client_key: Some(client.key.display().to_string()),
                ..Default::default()
            }),
            ..Default::default()
        }],
        contexts: vec![NamedContext {
            name: CONTEXT.into(),
            context: Some(Context {
                cluster: CONTEXT.into(),
                user: Some(CONTEXT.into()),
                ..Default::default()
            }),
            ..Default::default()
        }],
        current_context: Some(CONTEXT.into()),
        api_version: Some("v1".into()),
        kind: Some("Config".into()),
        ..Default::default()
    }
}

/// Writes `config` to `path` (JSON, which every kubeconfig reader takes), owner-only.
pub fn write(path: &Path, config: &Kubeconfig) -> Result<(), Error> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let text =
        serde_json::to_string_pretty(config).map_err(|e| Error::Kubeconfig(e.to_string()))?;
    crate::certs::write_private(path, &text)
}
