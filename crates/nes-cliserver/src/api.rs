//! The HTTP API: routes, authentication of every `/v1` request, and the Kubernetes I/O.
//!
//! | Route | Answer |
//! | --- | --- |
//! | `POST {pod}/configuration` | 200 [`ConfigurationResponse`]; 400, 401, 403, 409, 413, 422 |
//! | `GET {pod}/configuration` | 200 [`ConfigurationResponse`]; 404 when none |
//! | `DELETE {pod}/configuration` | 204; 404 when none |
//! | `GET {pod}/status` | 200 [`StatusResponse`]; 404 when no configuration |
//! | `GET {pod}/status/watch` | NDJSON stream of [`StatusResponse`], first line = current; 429 |
//! | `PUT {pod}/subscription` | 200 [`SubscriptionResponse`]; 400, 401, 403, 413, 422 |
//! | `GET {pod}/subscription` | 200 [`SubscriptionResponse`]; 404 when none |
//! | `DELETE {pod}/subscription` | 204; 404 when none |
//! | `GET /healthz` | 200 `ok` |
//! | `GET /metrics` | Prometheus text |
//!
//! `{pod}` is `/v1/namespaces/{namespace}/pods/{pod}`. Every error answer is an [`ErrorBody`].
//!
//! Every `/v1` request is authorized ([`crate::auth`]) before its body is read, so a caller
//! without a valid token for the pod cannot make the server buffer anything; any of them may be
//! answered 429 when its source address has failed authentication too often. A status watch
//! takes one of the pod's few watch places ([`crate::watches`]) and ends when the caller's
//! token does.
//!
//! [`ConfigurationResponse`]: nes_api::cli::ConfigurationResponse
//! [`StatusResponse`]: nes_api::cli::StatusResponse
//! [`SubscriptionResponse`]: nes_api::cli::SubscriptionResponse

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use futures::StreamExt;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use nes_api::cli::{ErrorBody, SubscriptionRequest};
use nes_api::crd::{NetworkCare, NetworkConfiguration};
use nes_api::{ApiError, ConfigureRequest};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::auth::{self, Denied, ReviewError, ReviewSettings, Reviewer};
use crate::metrics::Metrics;
use crate::watches::{self, Watches};
use crate::{claims, configure, owner, status, subscription};

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
    watches: Watches,
    max_watch: Duration,
    metrics: Metrics,
}

/// How the server authenticates and limits its callers.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The audience tokens must carry (`spec.audiences` of the TokenReview, confirmed in its
    /// `status.audiences`); the API server's default audiences when `None`.
    pub audience: Option<String>,
    /// How long a successful TokenReview is reused.
    pub review_cache_ttl: Duration,
    /// How long a refused token is answered 401 without a TokenReview.
    pub negative_review_cache_ttl: Duration,
    /// Failed authentications per source address and minute before 429 (zero: no limit).
    pub auth_failures_per_minute: u32,
    /// Status watches a pod may hold open at once.
    pub max_watches_per_pod: usize,
    /// The longest a status watch stays open, even with a token that lives longer.
    pub max_watch: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            audience: None,
            review_cache_ttl: auth::DEFAULT_CACHE_TTL,
            negative_review_cache_ttl: auth::DEFAULT_NEGATIVE_CACHE_TTL,
            auth_failures_per_minute: auth::DEFAULT_FAILURES_PER_MINUTE,
            max_watches_per_pod: watches::DEFAULT_MAX_PER_POD,
            max_watch: watches::DEFAULT_MAX_LIFETIME,
        }
    }
}

impl AppState {
    /// The state over `client` with fresh metrics.
    pub fn new(client: kube::Client, settings: Settings) -> Self {
        let metrics = Metrics::new();
        let reviewer = Reviewer::new(
            client.clone(),
            ReviewSettings {
                audience: settings.audience,
                ttl: settings.review_cache_ttl,
                negative_ttl: settings.negative_review_cache_ttl,
                failures_per_minute: settings.auth_failures_per_minute,
            },
            metrics.clone(),
        );
        AppState {
            client,
            reviewer: Arc::new(reviewer),
            watches: Watches::new(settings.max_watches_per_pod, metrics.watches()),
            max_watch: settings.max_watch,
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
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` completes, then shuts down gracefully: stops
/// accepting, ends open watch streams, lets in-flight requests finish, and returns. Each
/// request knows its peer's address (the source of the failed-authentication limit).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let draining = CancellationToken::new();
    let app = router(state).layer(Extension(Draining(draining.clone())));
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
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
    retry_after: Option<Duration>,
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
            retry_after: None,
        }
    }

    fn invalid(errors: Vec<ApiError>) -> Self {
        Failure {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            errors,
            retry_after: None,
        }
    }

    fn not_found(what: &str) -> Self {
        Failure::new(StatusCode::NOT_FOUND, "notFound", what)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let unauthorized = self.status == StatusCode::UNAUTHORIZED;
        let retry_after = self.retry_after;
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
        if let Some(wait) = retry_after {
            // Whole seconds, rounded up so a client that waits that long is let in.
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
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

/// The address requests without a known peer (a router served without connection info, as in
/// unit tests) are counted under by the failed-authentication limit.
const UNKNOWN_SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// What a request presents for authentication: its bearer token (if it sent one) and its
/// source address. Extracting it reads headers only, never the body.
pub struct Credentials {
    token: Option<String>,
    source: IpAddr,
}

impl<S: Send + Sync> FromRequestParts<S> for Credentials {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let source = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(UNKNOWN_SOURCE, |ConnectInfo(peer)| peer.ip().to_canonical());
        Ok(Credentials {
            token: auth::bearer_token(header).map(str::to_owned),
            source,
        })
    }
}

/// An authorized caller: its live pod, and when its token ends.
struct Authorized {
    pod: Pod,
    token_end: Option<SystemTime>,
}

/// Authenticates the caller as pod `namespace/pod`: the live pod and when its token ends.
async fn authorize(
    state: &AppState,
    credentials: &Credentials,
    namespace: &str,
    pod: &str,
) -> Result<Authorized, Failure> {
    let token = credentials.token.as_deref().ok_or_else(|| {
        Failure::from(Denied::Unauthenticated(
            "missing bearer token: send `Authorization: Bearer <pod-bound token>`".into(),
        ))
    })?;
    let review = match state.reviewer.authenticate(token, credentials.source).await {
        Ok(review) => review,
        Err(ReviewError::Denied(denied)) => return Err(denied.into()),
        Err(ReviewError::Throttled(wait)) => {
            tracing::warn!(source = %credentials.source, "too many failed authentications");
            return Err(Failure {
                retry_after: Some(wait),
                ..Failure::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "tooManyFailures",
                    "too many failed authentications from this address; retry later",
                )
            });
        }
        Err(ReviewError::Unavailable(error)) => {
            tracing::warn!(%error, "TokenReview failed");
            return Err(Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "cannot verify the token now: the TokenReview call failed",
            ));
        }
    };
    let caller = auth::decide(&review, state.reviewer.audience(), namespace, pod)?;
    let live = Api::<Pod>::namespaced(state.client.clone(), namespace)
        .get_opt(pod)
        .await?;
    let live = live.ok_or_else(|| {
        Failure::from(Denied::Forbidden(format!(
            "pod {namespace}/{pod} no longer exists"
        )))
    })?;
    auth::check_pod_uid(&caller, live.metadata.uid.as_deref())?;
    Ok(Authorized {
        pod: live,
        // The API server has just accepted the token, so its claims are its word.
        token_end: claims::token_end(token),
    })
}

/// Reads a JSON body of at most [`MAX_BODY_BYTES`] and decodes it: 413 when it is larger,
/// 400 when it cannot be read or decoded. Called only once the caller is authorized.
async fn read_json<T: DeserializeOwned>(body: Body) -> Result<T, Failure> {
    let bytes = Limited::new(body, MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|error| {
            if error.downcast_ref::<LengthLimitError>().is_some() {
                Failure::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payloadTooLarge",
                    format!("the body exceeds {MAX_BODY_BYTES} bytes"),
                )
            } else {
                Failure::new(
                    StatusCode::BAD_REQUEST,
                    "badRequest",
                    format!("reading the body failed: {error}"),
                )
            }
        })?
        .to_bytes();
    decode_json(&bytes)
        .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, "badRequest", e.to_string()))
}

/// Decodes a JSON request body (`ConfigureRequest`, `SubscriptionRequest`); a failure is answered
/// 400 with serde's message, which names the problem and its position. Public for the fuzz
/// targets of these decoders (`fuzz/fuzz_targets/cliserver_*.rs`).
pub fn decode_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(body)
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
    credentials: Credentials,
    body: Body,
) -> Result<Response, Failure> {
    let live = authorize(&state, &credentials, &namespace, &pod).await?.pod;
    let request: ConfigureRequest = read_json(body).await?;
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
    credentials: Credentials,
) -> Result<Response, Failure> {
    authorize(&state, &credentials, &namespace, &pod).await?;
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
    credentials: Credentials,
) -> Result<Response, Failure> {
    authorize(&state, &credentials, &namespace, &pod).await?;
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
    credentials: Credentials,
) -> Result<Response, Failure> {
    authorize(&state, &credentials, &namespace, &pod).await?;
    let cr = configurations(&state, &namespace)
        .get_opt(&pod)
        .await?
        .ok_or_else(|| no_configuration(&namespace, &pod))?;
    Ok(Json(status::response(&namespace, &cr)).into_response())
}

async fn watch_status(
    State(state): State<AppState>,
    Path((namespace, pod)): PodPath,
    credentials: Credentials,
    draining: Option<Extension<Draining>>,
) -> Result<Response, Failure> {
    let authorized = authorize(&state, &credentials, &namespace, &pod).await?;
    // Held by the stream: dropped when it ends or the client goes away.
    let slot = state.watches.open(&namespace, &pod).map_err(|open| {
        Failure::new(
            StatusCode::TOO_MANY_REQUESTS,
            "tooManyWatches",
            format!(
                "pod {namespace}/{pod} has {open} status watches open, the most allowed; close one first"
            ),
        )
    })?;
    let api = configurations(&state, &namespace);
    // A 404 up front, rather than an empty stream, when there is nothing to watch.
    if api.get_opt(&pod).await?.is_none() {
        return Err(no_configuration(&namespace, &pod));
    }
    let lifetime = watches::lifetime(SystemTime::now(), authorized.token_end, state.max_watch);
    tracing::debug!(namespace, pod, ?lifetime, "status watch opened");
    let draining = draining.map_or_else(CancellationToken::new, |Extension(d)| d.0);
    let lines = status::watch(api, namespace, &pod)
        .take_until(draining.cancelled_owned())
        // The caller's token ends (or the longest watch is over): it reconnects with its
        // current token, which is reviewed again.
        .take_until(tokio::time::sleep(lifetime))
        .map(move |answer| {
            let _held = &slot;
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
    credentials: Credentials,
    body: Body,
) -> Result<Response, Failure> {
    let live = authorize(&state, &credentials, &namespace, &pod).await?.pod;
    let request: SubscriptionRequest = read_json(body).await?;
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
    credentials: Credentials,
) -> Result<Response, Failure> {
    authorize(&state, &credentials, &namespace, &pod).await?;
    let care = cares(&state, &namespace)
        .get_opt(&pod)
        .await?
        .ok_or_else(|| no_subscription(&namespace, &pod))?;
    Ok(Json(subscription::response(&namespace, &care)).into_response())
}

async fn delete_subscription(
    State(state): State<AppState>,
    Path((namespace, pod)): PodPath,
    credentials: Credentials,
) -> Result<Response, Failure> {
    authorize(&state, &credentials, &namespace, &pod).await?;
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
    use crate::fake_api::{AUDIENCE, FakeApi, GOOD_TOKEN};
    use axum::http::HeaderMap;
    use tower::ServiceExt;

    const X0: &str = "/v1/namespaces/team/pods/x-0";

    fn app(api: &FakeApi) -> Router {
        router(AppState::new(
            api.client.clone(),
            Settings {
                audience: Some(AUDIENCE.into()),
                auth_failures_per_minute: 2,
                ..Settings::default()
            },
        ))
    }

    /// A request whose body never ends: reading it would hang the handler.
    fn endless(method: Method, path: &str, token: Option<&str>) -> Request {
        let body = Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>());
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        builder.body(body).unwrap()
    }

    async fn answer(app: &Router, request: Request) -> (StatusCode, HeaderMap, ErrorBody) {
        // A deadline, not a pause: the answer must not wait for the endless body.
        let response = tokio::time::timeout(Duration::from_secs(30), app.clone().oneshot(request))
            .await
            .expect("answered without reading the body")
            .unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            serde_json::from_slice(&body).unwrap(),
        )
    }

    #[tokio::test]
    async fn callers_are_refused_before_their_body_is_read() {
        let api = FakeApi::start();
        let app = app(&api);
        let configuration = format!("{X0}/configuration");
        let subscription = "/v1/namespaces/team/pods/x-1/subscription";
        let (status, headers, _) = answer(&app, endless(Method::POST, &configuration, None)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
        let (status, _, _) =
            answer(&app, endless(Method::POST, &configuration, Some("forged"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // A valid token of x-0 on x-1's path.
        let (status, _, _) =
            answer(&app, endless(Method::PUT, subscription, Some(GOOD_TOKEN))).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn a_source_that_keeps_failing_gets_429_with_the_wait() {
        let api = FakeApi::start();
        let app = app(&api);
        let status_path = format!("{X0}/status");
        for token in ["bad-1", "bad-2"] {
            let (status, _, _) =
                answer(&app, endless(Method::GET, &status_path, Some(token))).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
        let (status, headers, body) =
            answer(&app, endless(Method::GET, &status_path, Some("bad-3"))).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(body.errors[0].code, "tooManyFailures");
        let wait: u64 = headers[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=30).contains(&wait), "{wait}");
        assert_eq!(api.reviews(), 2, "the throttled request cost no review");
    }

    #[tokio::test]
    async fn an_authorized_body_is_read_up_to_the_limit() {
        let api = FakeApi::start();
        let app = app(&api);
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("{X0}/configuration"))
            .header(header::AUTHORIZATION, format!("Bearer {GOOD_TOKEN}"))
            .body(Body::from(vec![b' '; MAX_BODY_BYTES + 1]))
            .unwrap();
        let (status, _, body) = answer(&app, request).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body.errors[0].code, "payloadTooLarge");
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("{X0}/configuration"))
            .header(header::AUTHORIZATION, format!("Bearer {GOOD_TOKEN}"))
            .body(Body::from(r#"{"add": {}, "delete": []}"#))
            .unwrap();
        let (status, _, body) = answer(&app, request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.errors[0].message.contains("unknown field `delete`"));
    }

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
        let throttled = Failure {
            retry_after: Some(Duration::from_millis(2500)),
            ..Failure::new(StatusCode::TOO_MANY_REQUESTS, "tooManyFailures", "wait")
        }
        .into_response();
        assert_eq!(throttled.headers()[header::RETRY_AFTER], "3", "rounded up");
    }
}
