//! devcluster: an in-process Kubernetes API server with real semantics, for tests and the demo.
//!
//! ```no_run
//! # async fn demo() -> Result<(), devcluster::Error> {
//! let cluster = devcluster::DevCluster::start(Default::default()).await?;
//! let client = cluster.client(); // a kube::Client talking HTTP to it
//! // ... run an operator against `client`, or kubectl with cluster.kubeconfig_path() ...
//! cluster.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! What "real semantics" covers is listed in `docs/devcluster.md`; the module layout follows the
//! server's own: [`store`] (revisions, history, compaction), [`api`] (verbs), [`apply`]
//! (server-side apply), [`patch`], [`crd`], [`discovery`], [`admission`], [`server`] (HTTP).

pub mod admission;
pub mod api;
pub mod apply;
pub mod audit;
pub mod builtin;
pub mod configdata;
pub mod controllers;
pub mod conversion;
pub mod crd;
pub mod defaults;
pub mod discovery;
pub mod error;
pub mod gofmt;
pub mod kubeconfig;
pub mod objects;
pub mod patch;
pub mod protobuf;
pub mod rbac;
pub mod request_info;
pub mod resources;
pub mod route;
pub mod schema;
pub mod selector;
pub mod server;
pub mod store;
pub mod table;
pub mod token;
pub mod validation;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use api::{ApiConfig, ApiServer};
pub use audit::{Audit, AuditEntry, Permission};
pub use rbac::Authorization;
pub use store::StoreConfig;

/// Failures starting a cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listener or kubeconfig file could not be set up.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The kube client could not be built.
    #[error("kube client: {0}")]
    Client(String),
    /// A request to the cluster failed.
    #[error("API request: {0}")]
    Api(#[from] kube::Error),
    /// A CRD did not become Established in time.
    #[error("CRD {0} did not become Established")]
    NotEstablished(String),
}

/// How to start a cluster.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Where to write the kubeconfig; a temporary file when `None`.
    pub kubeconfig: Option<PathBuf>,
    /// Storage settings (history kept for watches, snapshot lifetime for paging).
    pub store: StoreConfig,
    /// Which of the controller-manager's controllers run (all by default).
    pub controllers: controllers::ControllerOptions,
    /// The authorizer: everyone may do anything (default), or RBAC for every user but the
    /// administrator (see `docs/devcluster.md`, Authentication, authorization and audit).
    pub authorization: Authorization,
    /// A file every request's audit entry is appended to as a JSON line, besides the in-memory
    /// trail of [`DevCluster::audit`].
    pub audit_log: Option<PathBuf>,
}

/// A running cluster. Dropping it stops the server (prefer [`DevCluster::shutdown`]).
pub struct DevCluster {
    url: String,
    kubeconfig: PathBuf,
    api: Arc<ApiServer>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    controllers: tokio_util::sync::CancellationToken,
    controller_tasks: Vec<JoinHandle<()>>,
    _tempdir: Option<TempDir>,
}

/// A directory removed on drop (kubeconfig of a test cluster).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl DevCluster {
    /// Starts a cluster and waits until it serves.
    pub async fn start(options: Options) -> Result<Self, Error> {
        let api = ApiServer::new(ApiConfig {
            store: options.store.clone(),
            authorization: options.authorization,
            audit_capacity: 0,
        });
        if let Some(path) = &options.audit_log {
            api.audit.log_to(path)?;
        }
        let (listener, addr) = server::bind(options.port).await?;
        let url = format!("http://{addr}");
        let (kubeconfig, tempdir) = match options.kubeconfig {
            Some(path) => (path, None),
            None => {
                let dir = std::env::temp_dir().join(format!(
                    "devcluster-{}-{}",
                    std::process::id(),
                    uuid::Uuid::new_v4().simple()
                ));
                (dir.join("kubeconfig"), Some(TempDir(dir)))
            }
        };
        kubeconfig::write(&kubeconfig, &url)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let router = server::router(api.clone());
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "devcluster server stopped with an error");
            }
        });
        let mut cluster = DevCluster {
            url,
            kubeconfig,
            api,
            stop: Some(stop),
            task: Some(task),
            controllers: tokio_util::sync::CancellationToken::new(),
            controller_tasks: Vec::new(),
            _tempdir: tempdir,
        };
        // Controllers are API clients like any other, talking HTTP to this server.
        cluster.controller_tasks = controllers::start(
            cluster.client(),
            &options.controllers,
            cluster.controllers.clone(),
        );
        Ok(cluster)
    }

    /// The base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Creates a CustomResourceDefinition and waits until it is Established (served), as every
    /// operator test does before it starts.
    pub async fn install_crd(
        &self,
        crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    ) -> Result<(), Error> {
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
        let api: kube::Api<CustomResourceDefinition> = kube::Api::all(self.client());
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.create(&kube::api::PostParams::default(), crd).await?;
        let established = kube::runtime::wait::await_condition(
            api,
            &name,
            kube::runtime::wait::conditions::is_crd_established(),
        );
        match tokio::time::timeout(std::time::Duration::from_secs(30), established).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(Error::NotEstablished(name)),
        }
    }

    /// The kubeconfig file pointing at this cluster.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// A new kube client for this cluster (real HTTP, like any other client).
    pub fn client(&self) -> kube::Client {
        let url = self.url.parse().expect("the server URL is valid");
        let config = kube::Config::new(url);
        kube::Client::try_from(config).expect("a plain HTTP client always builds")
    }

    /// The server state, for test hooks ([`ApiServer::store`] compaction and the like).
    pub fn api(&self) -> &Arc<ApiServer> {
        &self.api
    }

    /// The audit trail: every request's user, attributes and status code, e.g.
    /// `cluster.audit().used("system:serviceaccount:ns:sa")` for what one service account used.
    pub fn audit(&self) -> &Audit {
        &self.api.audit
    }

    /// A kube client authenticating with `token` (a service account token from TokenRequest),
    /// so RBAC applies to it.
    pub fn client_with_token(&self, token: &str) -> Result<kube::Client, Error> {
        let url = self
            .url
            .parse()
            .map_err(|e| Error::Client(format!("the server URL: {e}")))?;
        let mut config = kube::Config::new(url);
        // AuthInfo's token is a secret type of kube's; its deserializer builds one without a
        // dependency on the secrecy crate here.
        config.auth_info = serde_json::from_value(serde_json::json!({ "token": token }))
            .map_err(|e| Error::Client(format!("auth info: {e}")))?;
        kube::Client::try_from(config).map_err(|e| Error::Client(e.to_string()))
    }

    /// Forgets history as an etcd compaction does: watches from before now get 410 Gone.
    pub fn compact(&self) {
        self.api.store.compact();
    }

    /// Stops serving and waits for the server task to end.
    pub async fn shutdown(mut self) {
        self.controllers.cancel();
        for task in self.controller_tasks.drain(..) {
            task.abort();
            let _ = task.await;
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            // Open watch streams would hold a graceful shutdown forever: end them.
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        self.controllers.cancel();
        for task in self.controller_tasks.drain(..) {
            task.abort();
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
