//! Webhook mode's HTTPS server: `POST /mutate` answers Pod CREATE AdmissionReviews with the
//! sidecar as a JSONPatch (decided by [`crate::admission`]), `GET /healthz` says it serves.
//!
//! [`bind`] then [`Bound::serve`]: binding first lets the caller learn the address (port 0 in
//! tests) before it registers the webhook. [`start`] does all of webhook mode's serving side in
//! one call: certificates, server and the configuration sync.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::Api;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use prometheus::{IntCounterVec, Opts, Registry};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::admission::{self, Decision, FailurePolicy, Plan};
use crate::inject::SidecarSettings;
use crate::pod_security;
use crate::tls::{self, TlsMaterial};
use crate::webhook_config::{self, ConfigSettings, Endpoint};

/// The path the API server POSTs AdmissionReviews to.
pub const MUTATE_PATH: &str = "/mutate";
/// The StatefulSet lookup must finish well inside the configuration's 5 s timeout, so a slow
/// API server gives the failure-policy answer instead of a timed-out call.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);
/// A client that opens a connection and never completes the handshake is dropped after this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the webhook could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Binding the listener failed.
    #[error("binding the webhook listener on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The TLS material could not be made or loaded.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The webhook's metrics could not be registered (a name already taken).
    #[error("registering the webhook metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Admission outcomes, for `/metrics`.
#[derive(Clone)]
pub struct AdmissionMetrics {
    admissions: IntCounterVec,
}

impl AdmissionMetrics {
    /// `nes_admissions_total{result}` registered in `registry`; `result` is `injected`,
    /// `skipped`, `refused` (name clash), `error` (could not decide) or `bad-request`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let admissions = IntCounterVec::new(
            Opts::new(
                "nes_admissions_total",
                "Pod admission reviews answered, by result",
            ),
            &["result"],
        )?;
        registry.register(Box::new(admissions.clone()))?;
        Ok(AdmissionMetrics { admissions })
    }

    fn count(&self, result: &str) {
        self.admissions.with_label_values(&[result]).inc();
    }
}

/// What the handler needs.
pub struct WebhookState {
    /// To look up StatefulSets.
    pub client: kube::Client,
    /// The sidecar to inject.
    pub sidecar: SidecarSettings,
    /// The one namespace injected when the controller watches only one (checked here too, as
    /// the exclusions are).
    pub namespace: Option<String>,
    /// Namespaces never injected (checked here too, in case the configuration's namespace
    /// selector cannot be used: namespaces without the `kubernetes.io/metadata.name` label).
    pub excluded_namespaces: BTreeSet<String>,
    /// What to answer when the decision cannot be made.
    pub failure_policy: FailurePolicy,
    /// Outcome counters.
    pub metrics: AdmissionMetrics,
}

/// The webhook's routes.
pub fn router(state: Arc<WebhookState>) -> Router {
    Router::new()
        .route(MUTATE_PATH, post(mutate))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

fn bad_request(state: &WebhookState, message: String) -> Response {
    state.metrics.count("bad-request");
    tracing::warn!(%message, "bad admission request");
    (StatusCode::BAD_REQUEST, message).into_response()
}

/// `POST /mutate`. A body that is not an AdmissionReview with a request is a 400 with a
/// readable message (the API server then applies the failure policy).
async fn mutate(State(state): State<Arc<WebhookState>>, body: Bytes) -> Response {
    let review: AdmissionReview<Pod> = match serde_json::from_slice(&body) {
        Ok(review) => review,
        Err(e) => return bad_request(&state, format!("malformed AdmissionReview: {e}")),
    };
    let request: AdmissionRequest<Pod> = match review.try_into() {
        Ok(request) => request,
        Err(_) => {
            return bad_request(
                &state,
                "malformed AdmissionReview: it has no request".to_owned(),
            );
        }
    };
    let response = match admission::plan(
        &request,
        state.namespace.as_deref(),
        &state.excluded_namespaces,
    ) {
        Plan::Skip(skip) => {
            state.metrics.count("skipped");
            tracing::debug!(pod = %request.name, reason = skip.as_str(), "pod admitted unchanged");
            admission::respond(&request, Decision::Skip(skip))
        }
        Plan::LookUp { namespace, name } => {
            let api: Api<StatefulSet> = Api::namespaced(state.client.clone(), &namespace);
            match tokio::time::timeout(LOOKUP_TIMEOUT, api.get_opt(&name)).await {
                Ok(Ok(owner)) => {
                    let response =
                        answer_decided(&state, &request, owner.as_ref(), &namespace, &name);
                    warn_about_pod_security(&state, response, &namespace).await
                }
                Ok(Err(e)) => answer_error(
                    &state,
                    &request,
                    &format!("looking up StatefulSet {namespace}/{name}: {e}"),
                ),
                Err(_) => answer_error(
                    &state,
                    &request,
                    &format!(
                        "looking up StatefulSet {namespace}/{name}: no answer within {LOOKUP_TIMEOUT:?}"
                    ),
                ),
            }
        }
    };
    axum::Json(admission::review_json(response)).into_response()
}

/// `response` with a warning when it injects the sidecar into a namespace whose Pod Security
/// level refuses it (the pod is then refused by Pod Security admission, after us). A namespace
/// that cannot be read in time adds nothing: the warning is advice, not the decision.
async fn warn_about_pod_security(
    state: &WebhookState,
    mut response: AdmissionResponse,
    namespace: &str,
) -> AdmissionResponse {
    if response.patch.is_none() {
        return response;
    }
    let api: Api<Namespace> = Api::all(state.client.clone());
    let Ok(Ok(ns)) = tokio::time::timeout(LOOKUP_TIMEOUT, api.get_opt(namespace)).await else {
        return response;
    };
    let labels = ns.as_ref().and_then(|n| n.metadata.labels.as_ref());
    if let Some(level) = pod_security::forbidding_level(labels) {
        response
            .warnings
            .get_or_insert_with(Vec::new)
            .push(pod_security::warning(namespace, level));
    }
    response
}

/// The answer once the owner is known; logs and counts the outcome.
fn answer_decided(
    state: &WebhookState,
    request: &AdmissionRequest<Pod>,
    owner: Option<&StatefulSet>,
    namespace: &str,
    statefulset: &str,
) -> AdmissionResponse {
    // `plan` only asks for a lookup when there is an object.
    let Some(pod) = request.object.as_ref() else {
        return admission::respond(request, Decision::Skip(admission::Skip::NoObject));
    };
    let decision = admission::decide(pod, owner, &state.sidecar);
    // A StatefulSet's pods have names; `generateName` is there for other creators.
    let pod_name = pod
        .metadata
        .name
        .as_deref()
        .or(pod.metadata.generate_name.as_deref())
        .unwrap_or("");
    match &decision {
        Decision::Inject(_) => {
            state.metrics.count("injected");
            tracing::info!(
                namespace,
                pod = pod_name,
                statefulset,
                "injecting the nes-agent sidecar"
            );
        }
        Decision::Skip(skip) => {
            state.metrics.count("skipped");
            tracing::debug!(
                namespace,
                pod = pod_name,
                statefulset,
                reason = skip.as_str(),
                "pod admitted unchanged"
            );
        }
        Decision::Refused(refused) => {
            state.metrics.count("refused");
            tracing::warn!(namespace, pod = pod_name, statefulset, reason = %refused, "sidecar not injected");
        }
    }
    admission::respond(request, decision)
}

fn answer_error(
    state: &WebhookState,
    request: &AdmissionRequest<Pod>,
    error: &str,
) -> AdmissionResponse {
    state.metrics.count("error");
    tracing::error!(%error, policy = state.failure_policy.as_str(), "cannot decide on a pod");
    admission::respond_error(request, error, state.failure_policy)
}

/// A bound, not yet serving, HTTPS listener.
pub struct Bound {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    local_addr: SocketAddr,
}

/// Binds `addr` (port 0 picks a free port) for HTTPS with `tls`.
pub async fn bind(addr: SocketAddr, tls: &TlsMaterial) -> Result<Bound, Error> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| Error::Bind { addr, source })?;
    Ok(Bound {
        listener,
        acceptor: TlsAcceptor::from(tls.server_config.clone()),
        local_addr,
    })
}

impl Bound {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves `router` until `shutdown`; each connection is handled in its own task.
    pub async fn serve(self, router: Router, shutdown: CancellationToken) {
        tracing::info!(addr = %self.local_addr, "webhook serving HTTPS");
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = self.listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "accepting a webhook connection failed");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    }
                }
            };
            let acceptor = self.acceptor.clone();
            let router = router.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let tls =
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                let service = hyper_util::service::TowerToHyperService::new(router);
                let builder = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                let connection =
                    builder.serve_connection(hyper_util::rt::TokioIo::new(tls), service);
                tokio::select! {
                    served = connection => {
                        if let Err(e) = served {
                            tracing::debug!(%peer, error = %e, "webhook connection ended with an error");
                        }
                    }
                    () = shutdown.cancelled() => {}
                }
            });
        }
    }
}

/// Where the certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// Generate a CA and a serving certificate for these names (see
    /// [`tls::subject_alt_names`]).
    Generate(Vec<String>),
    /// Use these PEM files.
    Files {
        /// The serving certificate chain.
        cert: PathBuf,
        /// Its private key.
        key: PathBuf,
        /// The CA to publish as `caBundle`.
        ca: PathBuf,
    },
}

/// Everything webhook mode serves with.
pub struct Options {
    /// Where to listen (port 0 picks one).
    pub listen: SocketAddr,
    /// The certificate.
    pub tls: TlsSource,
    /// Where the API server calls: a Service, or a URL. `None` means
    /// `https://<bound address>/mutate` (tests).
    pub endpoint: Option<Endpoint>,
    /// The name of the `MutatingWebhookConfiguration` (cluster-wide, so one per installation;
    /// [`webhook_config::CONFIGURATION_NAME`] by default).
    pub configuration_name: String,
    /// The one namespace whose pods are injected, when the controller watches only one; the
    /// configuration then sends only that namespace's pods.
    pub namespace: Option<String>,
    /// The configuration's and the handler's failure policy.
    pub failure_policy: FailurePolicy,
    /// Namespaces never injected (the controller's own included).
    pub excluded_namespaces: BTreeSet<String>,
    /// The sidecar.
    pub sidecar: SidecarSettings,
}

/// A running webhook.
pub struct Started {
    /// The address it listens on.
    pub local_addr: SocketAddr,
    /// The CA published as `caBundle` (PEM).
    pub ca_pem: String,
    /// The server task.
    pub server: tokio::task::JoinHandle<()>,
    /// The configuration sync task.
    pub config_sync: tokio::task::JoinHandle<()>,
}

/// Starts webhook mode's serving side: TLS material, the HTTPS server, and the configuration
/// sync, all stopping at `runtime.shutdown`. Metrics go to the runtime's registry.
pub async fn start(runtime: &operator_core::Runtime, options: Options) -> Result<Started, Error> {
    let material = match &options.tls {
        TlsSource::Generate(names) => tls::generate(names)?,
        TlsSource::Files { cert, key, ca } => tls::from_files(cert, key, ca)?,
    };
    let bound = bind(options.listen, &material).await?;
    let local_addr = bound.local_addr();
    let endpoint = options
        .endpoint
        .unwrap_or_else(|| Endpoint::Url(format!("https://{local_addr}{MUTATE_PATH}")));
    let state = Arc::new(WebhookState {
        client: runtime.client.clone(),
        sidecar: options.sidecar,
        namespace: options.namespace.clone(),
        excluded_namespaces: options.excluded_namespaces.clone(),
        failure_policy: options.failure_policy,
        metrics: AdmissionMetrics::new(runtime.metrics.registry())?,
    });
    let server = tokio::spawn(bound.serve(router(state), runtime.shutdown.clone()));
    let desired = webhook_config::desired(&ConfigSettings {
        name: options.configuration_name,
        namespace: options.namespace,
        endpoint,
        failure_policy: options.failure_policy,
        excluded_namespaces: options.excluded_namespaces,
        ca_pem: material.ca_pem.clone(),
    });
    let config_sync = tokio::spawn(webhook_config::sync(
        runtime.client.clone(),
        desired,
        runtime.shutdown.clone(),
    ));
    Ok(Started {
        local_addr,
        ca_pem: material.ca_pem,
        server,
        config_sync,
    })
}
