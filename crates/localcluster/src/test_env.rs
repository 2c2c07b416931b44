//! One test's share of its binary's cluster: a namespace of its own, clients and a kubeconfig
//! that default to it, and a directory for its files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;
use testkit::kubectl::Kubectl;

use crate::{Cluster, Options, shared};

/// A test's namespace on the shared cluster ([`shared`]).
#[derive(Debug)]
pub struct TestEnv {
    cluster: &'static Cluster,
    namespace: String,
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl TestEnv {
    /// The binary's shared cluster (started on first use) and a new namespace `<prefix>-<id>`.
    ///
    /// # Panics
    /// When the cluster cannot be started or the namespace not created: the test cannot run.
    pub async fn new(prefix: &str) -> Self {
        let cluster = shared(Options::default).await;
        let namespace = cluster
            .namespace(prefix)
            .await
            .unwrap_or_else(|e| panic!("creating the test's namespace: {e}"));
        let dir = cluster
            .kubeconfig_path()
            .parent()
            .unwrap_or(Path::new("."))
            .join("tests")
            .join(&namespace);
        let kubeconfig = dir.join("kubeconfig");
        cluster
            .write_kubeconfig(&kubeconfig, Some(&namespace))
            .unwrap_or_else(|e| panic!("writing the test's kubeconfig: {e}"));
        TestEnv {
            cluster,
            namespace,
            dir,
            kubeconfig,
        }
    }

    /// The shared cluster.
    pub fn cluster(&self) -> &'static Cluster {
        self.cluster
    }

    /// This test's namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// An administrator client whose default namespace is this test's.
    pub fn client(&self) -> kube::Client {
        self.cluster.client_in(&self.namespace)
    }

    /// `Api<K>` in this test's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client(), &self.namespace)
    }

    /// An administrator kubeconfig whose context defaults to this test's namespace.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// kubectl (the cluster's own) on [`TestEnv::kubeconfig_path`].
    pub fn kubectl(&self) -> Kubectl {
        let program = self
            .cluster
            .kubectl()
            .unwrap_or_else(|e| panic!("kubectl: {e}"));
        Kubectl::with_program(program, &self.kubeconfig)
    }

    /// A directory for this test's files (manifests, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Installs (applies) a CRD and waits until it is Established.
    pub async fn install_crd(&self, crd: &CustomResourceDefinition) {
        self.cluster
            .install_crd(crd)
            .await
            .unwrap_or_else(|e| panic!("installing a CRD: {e}"));
    }

    /// Watches the API for `window` and fails if anything wrote into this test's namespace
    /// (or anything else `also` selects): see [`Cluster::assert_quiet_for`].
    pub async fn assert_quiet_for(
        &self,
        window: Duration,
        also: impl Fn(&testkit::rbac::AuditedRequest<'_>) -> bool,
    ) {
        self.cluster
            .assert_quiet_for(window, |r| r.namespace == self.namespace || also(r))
            .await;
    }
}
