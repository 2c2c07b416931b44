//! A local Kubernetes cluster for tests, the demo and people.
//!
//! Two flavours behind one [`Cluster`]:
//!
//! - [`Flavor::Real`]: the real control plane ([`real::RealCluster`]), built from the pinned Go
//!   modules under `tools/`: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
//!   kwok with simulated Nodes. This is the authority: operator tests run here in CI.
//! - [`Flavor::Dev`]: devcluster, the embedded API server: starts in milliseconds, needs no Go.
//!
//! `KUBECREW_CLUSTER=real|dev` chooses ([`Flavor::from_env`]; devcluster when unset, so a
//! plain `cargo test` needs no Go build; `cargo xtask test` sets `real`).
//!
//! A test binary shares one cluster between its tests ([`shared`]); each test works in
//! namespaces of its own ([`Cluster::namespace`]).

pub mod certs;
pub mod kubeconfig;
pub mod process;
pub mod real;
mod shared;
mod test_env;
pub mod workdir;

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};

pub use real::{RealCluster, RealOptions};
pub use shared::shared;
pub use test_env::TestEnv;

/// How long the operator's writes must pause before a quiet window starts.
pub const SETTLE: Duration = Duration::from_secs(5);
/// How long writes may keep coming before [`Cluster::assert_quiet_for`] calls it a loop.
pub const SETTLE_DEADLINE: Duration = Duration::from_secs(90);

/// Why a cluster could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or socket operation failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Generating the cluster's certificates failed.
    #[error("generating certificates: {0}")]
    Certificate(#[from] rcgen::Error),
    /// The Go-built tools could not be built.
    #[error("building the control plane's tools: {0}")]
    Tools(String),
    /// A component could not be started.
    #[error("starting {name}: {detail}")]
    Start {
        /// The component.
        name: String,
        /// Why.
        detail: String,
    },
    /// A component exited while the cluster was starting or running.
    #[error("{name} exited ({status}); its log is {log}:\n{tail}")]
    Exited {
        /// The component.
        name: String,
        /// Its exit status.
        status: String,
        /// Its log file.
        log: String,
        /// The last lines of the log.
        tail: String,
    },
    /// Something the start waits for did not happen in time.
    #[error("timed out waiting for {what}; the components' logs end with:\n{logs}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The end of every component's log.
        logs: String,
    },
    /// A kubeconfig or client configuration could not be built.
    #[error("client configuration: {0}")]
    Kubeconfig(String),
    /// An API request failed.
    #[error("API request: {0}")]
    Api(String),
    /// devcluster failed.
    #[error("devcluster: {0}")]
    Dev(#[from] devcluster::Error),
    /// `KUBECREW_CLUSTER` holds something else than `real` or `dev`.
    #[error("KUBECREW_CLUSTER={0:?}: expected `real` or `dev`")]
    Flavor(String),
}

/// Which kind of cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// The real control plane built from Go modules.
    Real,
    /// devcluster, the embedded API server.
    Dev,
}

impl Flavor {
    /// Parses `real` or `dev`.
    pub fn parse(value: &str) -> Result<Self, Error> {
        match value.trim() {
            "real" => Ok(Flavor::Real),
            "dev" | "devcluster" => Ok(Flavor::Dev),
            other => Err(Error::Flavor(other.to_owned())),
        }
    }

    /// `KUBECREW_CLUSTER`, devcluster when unset or empty.
    pub fn from_env() -> Result<Self, Error> {
        match std::env::var("KUBECREW_CLUSTER") {
            Ok(v) if !v.trim().is_empty() => Flavor::parse(&v),
            _ => Ok(Flavor::Dev),
        }
    }

    /// The flavours a benchmark runs on, side by side in one run: `KUBECREW_BENCH_CLUSTERS`
    /// (comma-separated), devcluster then the real control plane when unset.
    pub fn for_benchmarks() -> Result<Vec<Self>, Error> {
        let wanted = std::env::var("KUBECREW_BENCH_CLUSTERS").unwrap_or_else(|_| "dev,real".into());
        wanted
            .split(',')
            .filter(|n| !n.trim().is_empty())
            .map(Flavor::parse)
            .collect()
    }

    /// `real` or `dev`.
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Real => "real",
            Flavor::Dev => "dev",
        }
    }
}

/// How to start a cluster of either flavour.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Where to keep the cluster's files; temporary (removed at the end) when `None`.
    pub dir: Option<PathBuf>,
    /// Also write the administrator's kubeconfig here.
    pub kubeconfig: Option<PathBuf>,
    /// devcluster only: its options (RBAC, audit log, controllers).
    pub dev: devcluster::Options,
    /// Real only: its options (nodes, timeout); `dir` above wins over its `dir`.
    pub real: RealOptions,
}

impl Options {
    /// An API server and its storage only, no controllers (no rollouts, no scheduling): what
    /// a benchmark of an operator's own work wants.
    pub fn api_server_only() -> Self {
        Options {
            dev: devcluster::Options {
                controllers: devcluster::controllers::ControllerOptions::none(),
                ..devcluster::Options::default()
            },
            real: RealOptions {
                controllers: false,
                ..RealOptions::default()
            },
            ..Options::default()
        }
    }
}

enum Inner {
    Real(Box<RealCluster>),
    Dev {
        cluster: devcluster::DevCluster,
        _dir: workdir::WorkDir,
    },
}

/// A running cluster of either flavour.
pub struct Cluster {
    inner: Inner,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("flavor", &self.flavor())
            .field("kubeconfig", &self.kubeconfig_path())
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Starts a cluster of `flavor` and waits until it is usable.
    pub async fn start(flavor: Flavor, options: Options) -> Result<Self, Error> {
        let cluster = match flavor {
            Flavor::Real => {
                let mut real = options.real.clone();
                if options.dir.is_some() {
                    real.dir = options.dir.clone();
                }
                Cluster {
                    inner: Inner::Real(Box::new(RealCluster::start(real).await?)),
                }
            }
            Flavor::Dev => {
                let dir = workdir::WorkDir::new(options.dir.clone())?;
                let mut dev = options.dev.clone();
                dev.kubeconfig = Some(dir.path().join("admin.kubeconfig"));
                // Like the real API server's: every request, for write counting and RBAC.
                if dev.audit_log.is_none() {
                    dev.audit_log = Some(dir.path().join("audit.log"));
                }
                let cluster = devcluster::DevCluster::start(dev).await?;
                Cluster {
                    inner: Inner::Dev { cluster, _dir: dir },
                }
            }
        };
        if let Some(path) = &options.kubeconfig {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::copy(cluster.kubeconfig_path(), path)?;
        }
        Ok(cluster)
    }

    /// Which flavour this is.
    pub fn flavor(&self) -> Flavor {
        match self.inner {
            Inner::Real(_) => Flavor::Real,
            Inner::Dev { .. } => Flavor::Dev,
        }
    }

    /// The API server's URL.
    pub fn url(&self) -> &str {
        match &self.inner {
            Inner::Real(c) => c.url(),
            Inner::Dev { cluster, .. } => cluster.url(),
        }
    }

    /// The administrator's kubeconfig.
    pub fn kubeconfig_path(&self) -> &Path {
        match &self.inner {
            Inner::Real(c) => c.kubeconfig_path(),
            Inner::Dev { cluster, .. } => cluster.kubeconfig_path(),
        }
    }

    /// The administrator's client configuration.
    pub fn config(&self) -> kube::Config {
        match &self.inner {
            Inner::Real(c) => c.config().clone(),
            Inner::Dev { cluster, .. } => {
                kube::Config::new(cluster.url().parse().expect("devcluster's URL is valid"))
            }
        }
    }

    /// A new administrator client, bound to the calling tokio runtime.
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config()).expect("the admin client configuration builds")
    }

    /// [`Cluster::client`] with `namespace` as its default namespace.
    pub fn client_in(&self, namespace: &str) -> kube::Client {
        let mut config = self.config();
        config.default_namespace = namespace.to_owned();
        kube::Client::try_from(config).expect("the admin client configuration builds")
    }

    /// Writes a copy of the administrator's kubeconfig to `path`, its context defaulting to
    /// `namespace` when given.
    pub fn write_kubeconfig(&self, path: &Path, namespace: Option<&str>) -> Result<(), Error> {
        let mut config = kube::config::Kubeconfig::read_from(self.kubeconfig_path())
            .map_err(|e| Error::Kubeconfig(e.to_string()))?;
        if let Some(namespace) = namespace {
            for context in config
                .contexts
                .iter_mut()
                .filter_map(|c| c.context.as_mut())
            {
                context.namespace = Some(namespace.to_owned());
            }
        }
        kubeconfig::write(path, &config)
    }

    /// A client that authenticates with a bearer `token` (a ServiceAccount token from
    /// TokenRequest), so RBAC applies to it.
    pub fn client_with_token(&self, token: &str) -> Result<kube::Client, Error> {
        let mut config = self.config();
        // AuthInfo's token is a secret type of kube's; its deserializer builds one without a
        // dependency on the secrecy crate here.
        config.auth_info = serde_json::from_value(serde_json::json!({ "token": token }))
            .map_err(|e| Error::Kubeconfig(e.to_string()))?;
        kube::Client::try_from(config).map_err(|e| Error::Kubeconfig(e.to_string()))
    }

    /// The `kubectl` that matches this cluster: the one built with the control plane for a
    /// real cluster, the one on `PATH` for devcluster.
    pub fn kubectl(&self) -> Result<PathBuf, Error> {
        match self.flavor() {
            Flavor::Real => testkit::gotools::binary(&testkit::gotools::KUBERNETES, "kubectl")
                .map_err(|e| Error::Tools(e.to_string())),
            Flavor::Dev => testkit::tools::kubectl().map_err(|e| Error::Tools(e.to_string())),
        }
    }

    /// [`Cluster::kubectl`] bound to the administrator's kubeconfig.
    pub fn kubectl_runner(&self) -> Result<testkit::kubectl::Kubectl, Error> {
        Ok(testkit::kubectl::Kubectl::with_program(
            self.kubectl()?,
            self.kubeconfig_path(),
        ))
    }

    /// The audit log (JSON lines, one per request): kube-apiserver's `audit.k8s.io/v1` events,
    /// or devcluster's entries. Read it with `testkit::rbac::AuditedRequest`.
    pub fn audit_log(&self) -> Option<PathBuf> {
        match &self.inner {
            Inner::Real(c) => Some(c.audit_log().to_owned()),
            Inner::Dev { .. } => {
                Some(self.kubeconfig_path().with_file_name("audit.log")).filter(|p| p.is_file())
            }
        }
    }

    /// Where the audit log ends now; [`Cluster::writes_since`] reads what comes after.
    pub fn audit_mark(&self) -> u64 {
        self.audit_log()
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len())
    }

    /// The write requests audited after `mark` that `select` picks, described.
    pub fn writes_since(
        &self,
        mark: u64,
        select: impl Fn(&testkit::rbac::AuditedRequest<'_>) -> bool,
    ) -> Vec<String> {
        let log = self
            .audit_log()
            .and_then(|p| std::fs::read(p).ok())
            .unwrap_or_default();
        let start = usize::try_from(mark).unwrap_or(usize::MAX).min(log.len());
        String::from_utf8_lossy(&log[start..])
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter_map(|entry| {
                let request = testkit::rbac::AuditedRequest::of(&entry)?;
                (request.is_write() && select(&request)).then(|| request.describe())
            })
            .collect()
    }

    /// Watches the API for `window` and fails if a write that `select` picks happened: once
    /// an operator's objects are reconciled and nothing changes, it must write nothing (a
    /// write loop against a real API server, which defaults every object, shows here).
    ///
    /// # Panics
    /// When there were such writes (listing them), or the cluster keeps no audit log.
    /// Writes by the control plane itself ([`is_control_plane`]) are not counted. The window
    /// starts once the selected writes have paused for [`SETTLE`], so a reconcile that the
    /// last status change started is not mistaken for a loop.
    pub async fn assert_quiet_for(
        &self,
        window: Duration,
        select: impl Fn(&testkit::rbac::AuditedRequest<'_>) -> bool,
    ) {
        assert!(
            self.audit_log().is_some(),
            "the {} cluster keeps no audit log",
            self.flavor().name()
        );
        // The platform's own controllers (an EndpointSlice catching up with pods that became
        // ready, node heartbeats) are not the operator's writes.
        let select = |r: &testkit::rbac::AuditedRequest<'_>| select(r) && !is_control_plane(r.user);
        let mark = self.settle(&select).await;
        // An observation window, not a wait for something to happen: nothing may happen.
        tokio::time::sleep(window).await;
        let writes = self.writes_since(mark, select);
        assert!(
            writes.is_empty(),
            "{} writes in {window:?} while nothing changed (a write loop?):\n{}",
            writes.len(),
            writes.join("\n")
        );
    }

    /// Waits until `select` picks no write for [`SETTLE`] (a reconcile that a last status
    /// change started may still be finishing) and returns the audit mark from then on.
    ///
    /// # Panics
    /// When writes keep coming for [`SETTLE_DEADLINE`]: that is a write loop.
    async fn settle(&self, select: &impl Fn(&testkit::rbac::AuditedRequest<'_>) -> bool) -> u64 {
        let deadline = tokio::time::Instant::now() + SETTLE_DEADLINE;
        let mut mark = self.audit_mark();
        let mut quiet_since = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let writes = self.writes_since(mark, select);
            if writes.is_empty() {
                if quiet_since.elapsed() >= SETTLE {
                    return mark;
                }
                continue;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "writes kept coming for {SETTLE_DEADLINE:?} (a write loop?), the last:\n{}",
                writes.join("\n")
            );
            mark = self.audit_mark();
            quiet_since = tokio::time::Instant::now();
        }
    }

    /// The real control plane, when this is one.
    pub fn real(&self) -> Option<&RealCluster> {
        match &self.inner {
            Inner::Real(c) => Some(c),
            Inner::Dev { .. } => None,
        }
    }

    /// devcluster, when this is one (for its test hooks: compaction, in-memory audit).
    pub fn dev(&self) -> Option<&devcluster::DevCluster> {
        match &self.inner {
            Inner::Real(_) => None,
            Inner::Dev { cluster, .. } => Some(cluster),
        }
    }

    /// A new namespace `<prefix>-<random>`, for one test's objects.
    pub async fn namespace(&self, prefix: &str) -> Result<String, Error> {
        let name = format!(
            "{prefix}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        );
        let namespace: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
                .map_err(|e| Error::Api(e.to_string()))?;
        Api::<Namespace>::all(self.client())
            .create(&PostParams::default(), &namespace)
            .await
            .map_err(|e| Error::Api(format!("creating namespace {name}: {e}")))?;
        Ok(name)
    }

    /// Applies a CustomResourceDefinition (server-side, so tests sharing a cluster may all
    /// install it) and waits until it is Established.
    pub async fn install_crd(&self, crd: &CustomResourceDefinition) -> Result<(), Error> {
        let api: Api<CustomResourceDefinition> = Api::all(self.client());
        let name = crd.metadata.name.clone().unwrap_or_default();
        let mut crd = crd.clone();
        crd.metadata.managed_fields = None;
        crd.metadata.resource_version = None;
        let patch = serde_json::to_value(&crd).map_err(|e| Error::Api(e.to_string()))?;
        let mut patch = patch;
        patch["apiVersion"] = "apiextensions.k8s.io/v1".into();
        patch["kind"] = "CustomResourceDefinition".into();
        api.patch(
            &name,
            &PatchParams::apply("kubecrew-tests").force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|e| Error::Api(format!("applying CRD {name}: {e}")))?;
        let established = kube::runtime::wait::await_condition(
            api,
            &name,
            kube::runtime::wait::conditions::is_crd_established(),
        );
        match tokio::time::timeout(Duration::from_secs(60), established).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Error::Api(format!("waiting for CRD {name}: {e}"))),
            Err(_) => Err(Error::Timeout {
                what: format!("CRD {name} to be Established"),
                logs: String::new(),
            }),
        }
    }

    /// Stops the cluster (also done on drop).
    pub async fn shutdown(self) {
        match self.inner {
            Inner::Real(mut c) => tokio::task::spawn_blocking(move || c.stop())
                .await
                .unwrap_or(()),
            Inner::Dev { cluster, _dir } => cluster.shutdown().await,
        }
    }
}

/// Whether `user` is one of the control plane's own components: kube-controller-manager's
/// controllers (kube-system ServiceAccounts), the scheduler, the API server, kubelets, kwok.
pub fn is_control_plane(user: &str) -> bool {
    user.starts_with("system:serviceaccount:kube-system:")
        || user.starts_with("system:node:")
        || user == real::KWOK_USER
        || matches!(
            user,
            "system:kube-controller-manager" | "system:kube-scheduler" | "system:apiserver"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_control_plane_is_told_from_operators() {
        assert!(is_control_plane(
            "system:serviceaccount:kube-system:endpointslice-controller"
        ));
        assert!(is_control_plane("system:kube-scheduler"));
        assert!(is_control_plane("kwok-controller"));
        assert!(!is_control_plane("kubecrew-admin"));
        assert!(!is_control_plane(
            "system:serviceaccount:kubecrew-system:nes-manager"
        ));
    }

    #[test]
    fn flavors_parse_and_refuse_anything_else() {
        assert_eq!(Flavor::parse("real").unwrap(), Flavor::Real);
        assert_eq!(Flavor::parse(" dev ").unwrap(), Flavor::Dev);
        assert_eq!(Flavor::parse("devcluster").unwrap(), Flavor::Dev);
        let err = Flavor::parse("kind").unwrap_err().to_string();
        assert!(err.contains("expected `real` or `dev`"), "{err}");
    }
}
