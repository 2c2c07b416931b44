//! The HTTP API: routes, authentication of every `/v1` request, and the Kubernetes I/O.
//!
//! | Route | Answer |
//! | --- | --- |
//! | `POST {pod}/configuration` | 200 [`ConfigurationResponse`]; 400, 401, 403, 409, 422 |
//! | `GET {pod}/configuration` | 200 [`ConfigurationResponse`]; 404 when none |
//! | `DELETE {pod}/configuration` | 204; 404 when none |
//! | `GET {pod}/status` | 200 [`StatusResponse`]; 404 when no configuration |
//! | `GET {pod}/status/watch` | NDJSON stream of [`StatusResponse`], first line = current |
//! | `PUT {pod}/subscription` | 200 [`SubscriptionResponse`]; 400, 401, 403, 422 |
//! | `GET {pod}/subscription` | 200 [`SubscriptionResponse`]; 404 when none |
//! | `DELETE {pod}/subscription` | 204; 404 when none |
//! | `GET /healthz` | 200 `ok` |
//! | `GET /metrics` | Prometheus text |
//!
//! `{pod}` is `/v1/namespaces/{namespace}/pods/{pod}`. Every error answer is an [`ErrorBody`].
//!
//! [`ConfigurationResponse`]: nes_api::cli::ConfigurationResponse
//! [`StatusResponse`]: nes_api::cli::StatusResponse
//! [`SubscriptionResponse`]: nes_api::cli::SubscriptionResponse

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use nes_api::cli::{ErrorBody, SubscriptionRequest};
use nes_api::crd::{NetworkCare, NetworkConfiguration};
use nes_api::{ApiError, ConfigureRequest};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::auth::{self, Denied, Reviewer};
use crate::metrics::Metrics;
use crate::{configure, owner, status, subscription};

/// The field manager of every write.
pub const FIELD_MANAGER: &str = "nes-cliserver";

/// The largest accepted request body; real requests are a few KiB.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How often a write that lost an optimistic-concurrency race is retried before 409.
const WRITE_ATTEMPTS: usize = 5;

/// The route templates (also the `route` label of the request metric and the OpenAPI paths).
pub mod routes {
    /// A pod's configuration.
    pub const CONFIGURATION: &str = "/v1/namespaces/{namespace}/pods/{pod}/configuration";
    /// A pod's configuration status.
    pub const STATUS: &str = "/v1/namespaces/{namespace}/pods/{pod}/status";
    /// The stream of a pod's configuration status.
    pub const STATUS_WATCH: &str = "/v1/namespaces/{namespace}/pods/{pod}/status/watch";
    /// A pod's subscription.
    pub const SUBSCRIPTION: &str = "/v1/namespaces/{namespace}/pods/{pod}/subscription";
    /// Liveness.
    pub const HEALTHZ: &str = "/healthz";
    /// Prometheus metrics.
    pub const METRICS: &str = "/metrics";
}

const NDJSON: &str = "application/x-ndjson";

/// What the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    client: kube::Client,
    reviewer: Arc<Reviewer>,
    metrics: Metrics,
}

/// How the server authenticates.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The audience tokens must carry (`spec.audiences` of the TokenReview); the API server's
    /// default audiences when `None`.
    pub audience: Option<String>,
    /// How long a successful TokenReview is reused.
    pub review_cache_ttl: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            audience: None,
            review_cache_ttl: auth::DEFAULT_CACHE_TTL,
        }
    }
}

impl AppState {
    /// The state over `client` with fresh metrics.
    pub fn new(client: kube::Client, settings: Settings) -> Self {
        let metrics = Metrics::new();
        let reviewer = Reviewer::new(
            client.clone(),
            settings.audience,
            settings.review_cache_ttl,
            metrics.clone(),
        );
        AppState {
            client,
            reviewer: Arc::new(reviewer),
            metrics,
        }
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// Cancelled by [`serve`] when graceful shutdown starts; ends open watch streams.
#[derive(Clone)]
struct Draining(CancellationToken);

/// The API routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            routes::CONFIGURATION,
            get(get_configuration)
                .post(post_configuration)
                .delete(delete_configuration),
        )
        .route(routes::STATUS, get(get_status))
        .route(routes::STATUS_WATCH, get(watch_status))
        .route(
            routes::SUBSCRIPTION,
            get(get_subscription)
                .put(put_subscription)
                .delete(delete_subscription),
        )
        .route(routes::HEALTHZ, get(|| async { "ok" }))
        .route(routes::METRICS, get(metrics))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` completes, then shuts down gracefully: stops
/// accepting, ends open watch streams, lets in-flight requests finish, and returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let draining = CancellationToken::new();
    let app = router(state).layer(Extension(Draining(draining.clone())));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            draining.cancel();
        })
        .await
}

/// Counts every answer by route template and status code.
async fn count(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().clone();
    let response = next.run(request).await;
    let code = response.status().as_u16();
    state.metrics.request(&route, code);
    tracing::debug!(%method, route, code, "request");
    response
}

/// An error answer in the [`ErrorBody`] shape.
#[derive(Debug)]
pub struct Failure {
    status: StatusCode,
    errors: Vec<ApiError>,
}

impl Failure {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Failure {
            status,
            errors: vec![ApiError {
                code: code.to_owned(),
                message: message.into(),
                field: None,
            }],
        }
    }

    fn invalid(errors: Vec<ApiError>) -> Self {
        Failure {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            errors,
        }
    }

    fn not_found(what: &str) -> Self {
        Failure::new(StatusCode::NOT_FOUND, "notFound", what)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let unauthorized = self.status == StatusCode::UNAUTHORIZED;
        let mut response = (
            self.status,
            Json(ErrorBody {
                errors: self.errors,
            }),
        )
            .into_response();
        if unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<Denied> for Failure {
    fn from(denied: Denied) -> Self {
        match denied {
            Denied::Unauthenticated(message) => {
                Failure::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
            }
            Denied::Forbidden(message) => Failure::new(StatusCode::FORBIDDEN, "forbidden", message),
        }
    }
}

impl From<kube::Error> for Failure {
    fn from(error: kube::Error) -> Self {
        tracing::warn!(%error, "Kubernetes API call failed");
        match error {
            kube::Error::Api(status) if status.code == 409 => Failure::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("concurrent change: {}", status.message),
            ),
            kube::Error::Api(status) if status.code == 403 => Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "serverForbidden",
                format!(
                    "nes-cliserver is not allowed to do this (check its RBAC): {}",
                    status.message
                ),
            ),
            other => Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("the Kubernetes API call failed: {other}"),
            ),
        }
    }
}

/// Authenticates the caller as pod `namespace/pod` and returns the live pod.
async fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    namespace: &str,
    pod: &str,
) -> Result<Pod, Failure> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let token = auth::bearer_token(header).ok_or_else(|| {
        Failure::from(Denied::Unauthenticated(
            "missing bearer token: send `Authorization: Bearer <pod-bound token>`".into(),
        ))
    })?;
    let review = state.reviewer.review(token).await.map_err(|error| {
        tracing::warn!(%error, "TokenReview failed");
        Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "cannot verify the token now: the TokenReview call failed",
        )
    })?;
    let caller = auth::decide(&review, namespace, pod)?;
    let live = Api::<Pod>::namespaced(state.client.clone(), namespace)
        .get_opt(pod)
        .await?;
    let live = live.ok_or_else(|| {
        Failure::from(Denied::Forbidden(format!(
            "pod {namespace}/{pod} no longer exists"
        )))
    })?;
    auth::check_pod_uid(&caller, live.metadata.uid.as_deref())?;
    Ok(live)
}

/// Decodes a JSON body; serde's message names the problem and its position.
fn decode<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, Failure> {
    let body = body.map_err(|rejection| {
        let code = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "payloadTooLarge"
        } else {
            "badRequest"
        };
        Failure::new(rejection.status(), code, rejection.body_text())
    })?;
    serde_json::from_slice(&body)
        .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, "badRequest", e.to_string()))
}

fn post_params() -> PostParams {
    PostParams {
        dry_run: false,
        field_manager: Some(FIELD_MANAGER.to_owned()),
    }
}

fn configurations(state: &AppState, namespace: &str) -> Api<NetworkConfiguration> {
    Api::namespaced(state.client.clone(), namespace)
}

fn cares(state: &AppState, namespace: &str) -> Api<NetworkCare> {
    Api::namespaced(state.client.clone(), namespace)
}

fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == 409)
}

type PodPath = Path<(String, String)>;

async fn post_configuration(
    State(state): State<AppState>,
    Path((namespace, pod)): PodPath,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Failure> {
    let live = authorize(&state, &headers, &namespace, &pod).await?;
    let request: ConfigureRequest = decode(body)?;
    let owner = owner::configuration_owner(&live).map_err(|message| {
        Failure::new(StatusCode::UNPROCESSABLE_ENTITY, "noStatefulSet", message)
    })?;
    let api = configurations(&state, &namespace);
    for _ in 0..WRITE_ATTEMPTS {
        let current = api.get_opt(&pod).await?;
        let spec =
            configure::next_spec(&pod, current.as_ref(), &request).map_err(Failure::invalid)?;
        let written = match current {
            Some(cr) if cr.spec == spec => Ok(cr),
            Some(mut cr) => {
                cr.spec = spec;
                api.replace(&pod, &post_params(), &cr).await
            }
            None => {
                let mut cr = NetworkConfiguration::new(&pod, spec);
                cr.metadata.namespace = Some(namespace.clone());
                cr.metadata.owner_references = Some(vec![owner.clone()]);
                api.create(&post_params(), &cr).await
            }
        };
        match written {
            Ok(cr) => {
                tracing::info!(
                    namespace,
                    pod,
                    generation = cr.metadata.generation,
                    "configuration written"
                );
                return Ok(Json(configure::response(&namespace, &cr)).into_response());
            }
            // Someone else wrote in between (another container of the pod): merge again.
            Err(error) if is_conflict(&error) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(Failure::new(
        StatusCode::CONFLICT,
        "conflict",
        format!("the configuration kept changing; gave up after {WRITE_ATTEMPTS} attempts"),
    ))
}

async fn get_configuration(
    State(state): State<AppState>,
    Path((namespace, pod)): PodPath,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    authorize(&state, &headers, &namespace, &pod).await?;
    let cr = configurations(&state, &namespace)
        .get_opt(&pod)
        .await?
        .ok_or_else(|| no_configuration(&namespace, &pod))?;
    Ok(Json(configure::response(&namespace, &cr)).into_response())
}

fn no_configuration(namespace: &str, pod: &str) -> Failure {
    Failure::not_found(&format!(
        "pod {namespace}/{pod} has no network configuration"
    ))
}

fn no_subscription(namespace: &str, pod: &str) -> Failure {
    Failure::not_found(&format!("pod {namespace}/{pod} has no subscription"))
}

async fn delete_configuration(
    State(state): State<AppState>,
    Path((namespace, pod)): PodPath,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    authorize(&state, &headers, &namespace, &pod).await?;
    match configurations(&state, &namespace)
        .delete(&pod, &DeleteParams::default())
        .await
    {
        Ok(_) => {
            tracing::info!(namespace, pod, "configuration deleted");
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Err(no_configuration(&namespace, &pod)),
        Err(error) => Err(error.into()),
    }
}

async fn get_status(
    State(state): State<AppState>,
    Path((namespace, pod)): PodPath,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    authorize(&state, &headers, &namespace, &pod).await?;
    let cr = configurations(&state, &namespace)
        .get_opt(&pod)
        .await?
        .ok_or_else(|| no_configuration(&namespace, &pod))?;
    Ok(Json(status::response(&namespace, &cr)).into_response())
}

async fn watch_status(
    State(state): State<AppState>,
    Path((namespace, pod)): PodPath,
    headers: HeaderMap,
    draining: Option<Extension<Draining>>,
) -> Result<Response, Failure> {
    authorize(&state, &headers, &namespace, &pod).await?;
    let api = configurations(&state, &namespace);
    // A 404 up front, rather than an empty stream, when there is nothing to watch.
    if api.get_opt(&pod).await?.is_none() {
        return Err(no_configuration(&namespace, &pod));
    }
    let draining = draining.map_or_else(CancellationToken::new, |Extension(d)| d.0);
    let lines = status::watch(api, namespace, &pod)
        .take_until(draining.cancelled_owned())
        .map(|answer| {
            let mut line = serde_json::to_vec(&answer)?;
            line.push(b'\n');
            Ok::<_, serde_json::Error>(Bytes::from(line))
        });
    Ok((
        [
            (header::CONTENT_TYPE, NDJSON),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(lines),
    )
        .into_response())
}

async fn put_subscription(
    State(state): State<AppState>,
    Path((namespace, pod)): PodPath,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Failure> {
    let live = authorize(&state, &headers, &namespace, &pod).await?;
    let request: SubscriptionRequest = decode(body)?;
    let spec = subscription::spec(&pod, &request).map_err(Failure::invalid)?;
    let replicaset = match owner::replicaset_to_read(&live) {
        Some(name) => {
            Api::<ReplicaSet>::namespaced(state.client.clone(), &namespace)
                .get_opt(&name)
                .await?
        }
        None => None,
    };
    let owner = owner::subscription_owner(&live, replicaset.as_ref());
    let api = cares(&state, &namespace);
    for _ in 0..WRITE_ATTEMPTS {
        let written = match api.get_opt(&pod).await? {
            Some(mut care) => {
                care.spec = spec.clone();
                care.metadata.owner_references = Some(vec![owner.clone()]);
                api.replace(&pod, &post_params(), &care).await
            }
            None => {
                let mut care = NetworkCare::new(&pod, spec.clone());
                care.metadata.namespace = Some(namespace.clone());
                care.metadata.owner_references = Some(vec![owner.clone()]);
                api.create(&post_params(), &care).await
            }
        };
        match written {
            Ok(care) => {
                tracing::info!(namespace, pod, owner = %owner.name, "subscription written");
                return Ok(Json(subscription::response(&namespace, &care)).into_response());
            }
            Err(error) if is_conflict(&error) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(Failure::new(
        StatusCode::CONFLICT,
        "conflict",
        format!("the subscription kept changing; gave up after {WRITE_ATTEMPTS} attempts"),
    ))
}

async fn get_subscription(
    State(state): State<AppState>,
    Path((namespace, pod)): PodPath,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    authorize(&state, &headers, &namespace, &pod).await?;
    let care = cares(&state, &namespace)
        .get_opt(&pod)
        .await?
        .ok_or_else(|| no_subscription(&namespace, &pod))?;
    Ok(Json(subscription::response(&namespace, &care)).into_response())
}

async fn delete_subscription(
    State(state): State<AppState>,
    Path((namespace, pod)): PodPath,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    authorize(&state, &headers, &namespace, &pod).await?;
    match cares(&state, &namespace)
        .delete(&pod, &DeleteParams::default())
        .await
    {
        Ok(_) => {
            tracing::info!(namespace, pod, "subscription deleted");
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Err(no_subscription(&namespace, &pod)),
        Err(error) => Err(error.into()),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.text(),
    )
        .into_response()
}

async fn not_found(method: Method, uri: Uri) -> Failure {
    Failure::new(
        StatusCode::NOT_FOUND,
        "noRoute",
        format!("no route for {method} {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> Failure {
    Failure::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "methodNotAllowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_map_to_statuses_and_challenge_on_401() {
        let unauthenticated = Failure::from(Denied::Unauthenticated("no".into())).into_response();
        assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            unauthenticated.headers()[header::WWW_AUTHENTICATE],
            "Bearer"
        );
        let forbidden = Failure::from(Denied::Forbidden("no".into())).into_response();
        assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
        assert!(forbidden.headers().get(header::WWW_AUTHENTICATE).is_none());
    }
}
