//! The agent's HTTP API.
//!
//! | Route | Auth | Answer |
//! | --- | --- | --- |
//! | `PUT /v1/config` | bearer token | 200 [`ApplyResponse`]; 400, 401, 403, 409, 413, 415, 422, 503 |
//! | `GET /v1/config` | none | 200 [`DesiredConfig`]; 404 before the first accepted config |
//! | `GET /v1/status` | none | 200 [`Status`] |
//! | `GET /v1/status/watch` | none | a stream of [`Status`]: SSE or NDJSON, see below |
//! | `GET /healthz` | none | 200 `ok`; 503 until the agent can answer |
//! | `GET /metrics` | none | 200 Prometheus text |
//!
//! # Error bodies
//!
//! Every error answer (4xx and 5xx, including unknown paths and wrong methods) has one shape,
//! [`ErrorBody`]: `{"errors": [ApiError, ...]}`. A rejected configuration has one element per
//! validation error, in field order; every other error has exactly one element. Clients can thus
//! decode any failure the same way. 401 answers also carry `WWW-Authenticate: Bearer`.
//!
//! # Watching the status
//!
//! `GET /v1/status/watch` sends the current status, then one per change. With
//! `Accept: text/event-stream` it is Server-Sent Events (`event: status`, `data: <JSON>`, a
//! keep-alive comment every 15 s); otherwise newline-delimited JSON (`application/x-ndjson`, one
//! status per line). A slow reader may skip intermediate statuses, never the latest.
//!
//! # Shutdown
//!
//! A watch stream ends when the agent drops its status sender, or when the server started by
//! [`serve`] begins its graceful shutdown: [`serve`] hands the router a cancellation token that it
//! cancels when its shutdown future completes, so open watches cannot hold the shutdown up. A
//! router served some other way ends its watches only when the agent drops the sender.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use futures::{Stream, StreamExt};
use nes_api::{ApiError, ApplyResponse, DesiredConfig, Status};
use serde::{Deserialize, Serialize};
use tokio_stream::wrappers::WatchStream;
use tokio_util::sync::CancellationToken;

use crate::agent::{Agent, ApplyError};
use crate::auth::{AuthError, TokenAuth};

/// The largest accepted `PUT /v1/config` body. Real configs are a few KiB; the limit only stops
/// a client from making the agent buffer unbounded input.
pub const MAX_CONFIG_BYTES: usize = 4 * 1024 * 1024;

/// How often an idle SSE stream sends a comment, so proxies and clients do not time it out.
const SSE_KEEP_ALIVE: Duration = Duration::from_secs(15);

const CONFIG_PATH: &str = "/v1/config";
const NDJSON: &str = "application/x-ndjson";
const EVENT_STREAM: &str = "text/event-stream";

/// The body of every error answer: one [`ApiError`] per problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The problems, at least one.
    pub errors: Vec<ApiError>,
}

/// State shared between the API and the rest of the agent (e.g. its metrics). Cheap to clone;
/// clones share the counters.
#[derive(Debug, Clone, Default)]
pub struct ApiState {
    watchers: Arc<AtomicUsize>,
}

impl ApiState {
    /// A state with no open watchers.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of open `GET /v1/status/watch` streams.
    pub fn watchers(&self) -> usize {
        self.watchers.load(Ordering::Relaxed)
    }

    fn track_watcher(&self) -> WatcherGuard {
        self.watchers.fetch_add(1, Ordering::Relaxed);
        WatcherGuard(Arc::clone(&self.watchers))
    }
}

/// Counts one open watch stream for as long as the stream (and so this guard) lives; hyper drops
/// the body when the client goes away, so disconnects are counted too.
struct WatcherGuard(Arc<AtomicUsize>);

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Cancelled by [`serve`] when graceful shutdown starts; ends open watch streams.
#[derive(Clone)]
struct WatchShutdown(CancellationToken);

struct App<A> {
    agent: Arc<A>,
    auth: TokenAuth,
    state: ApiState,
}

// Derived `Clone` would require `A: Clone`; only the `Arc` is cloned.
impl<A> Clone for App<A> {
    fn clone(&self) -> Self {
        App {
            agent: Arc::clone(&self.agent),
            auth: self.auth.clone(),
            state: self.state.clone(),
        }
    }
}

/// The API routes over `agent`, writes guarded by `auth`. Use [`router_with_state`] to observe
/// the number of open watchers.
pub fn router<A: Agent>(agent: Arc<A>, auth: TokenAuth) -> Router {
    router_with_state(agent, auth, ApiState::new())
}

/// The API routes over `agent`, writes guarded by `auth`, counting watchers in `state`.
pub fn router_with_state<A: Agent>(agent: Arc<A>, auth: TokenAuth, state: ApiState) -> Router {
    Router::new()
        .route(CONFIG_PATH, get(get_config::<A>).put(put_config::<A>))
        .route("/v1/status", get(get_status::<A>))
        .route("/v1/status/watch", get(watch_status::<A>))
        .route("/healthz", get(healthz::<A>))
        .route("/metrics", get(metrics::<A>))
        // After the routes: it applies to the routes present when it is called.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_CONFIG_BYTES))
        .with_state(App { agent, auth, state })
}

/// Serves `router` on `listener` until `shutdown` completes, then shuts down gracefully: stops
/// accepting, ends open watch streams, lets in-flight requests finish, and returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let draining = CancellationToken::new();
    let router = router.layer(Extension(WatchShutdown(draining.clone())));
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            draining.cancel();
        })
        .await
}

/// An error answer in the [`ErrorBody`] shape.
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    errors: Vec<ApiError>,
    challenge: bool,
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
            challenge: false,
        }
    }

    /// The code of the first error, for logs.
    fn code(&self) -> &str {
        self.errors.first().map_or("", |e| e.code.as_str())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                errors: self.errors,
            }),
        )
            .into_response();
        if self.challenge {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<AuthError> for Failure {
    fn from(error: AuthError) -> Self {
        let mut failure = Failure::new(error.status(), error.code(), error.to_string());
        failure.challenge = error.needs_challenge();
        failure
    }
}

impl From<ApplyError> for Failure {
    fn from(error: ApplyError) -> Self {
        match error {
            ApplyError::Invalid(errors) => Failure {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                errors: errors.iter().map(ApiError::from).collect(),
                challenge: false,
            },
            conflict @ ApplyError::Conflict { .. } => {
                Failure::new(StatusCode::CONFLICT, "conflict", conflict.to_string())
            }
            unavailable @ ApplyError::Unavailable(_) => Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                unavailable.to_string(),
            ),
        }
    }
}

async fn put_config<A: Agent>(State(app): State<App<A>>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let mut generation = None;
    let outcome = apply_config(&app, request, &mut generation).await;
    let (status, error) = match &outcome {
        Ok(_) => (StatusCode::OK, None),
        Err(failure) => (failure.status, Some(failure.code())),
    };
    tracing::info!(
        method = %method,
        path = %path,
        status = status.as_u16(),
        generation,
        error,
        "config write"
    );
    match outcome {
        Ok(response) => Json(response).into_response(),
        Err(failure) => failure.into_response(),
    }
}

/// Authenticates, decodes and applies one config write. `generation` is set as soon as the body
/// decodes, so the request is logged with it even when the agent refuses the config.
async fn apply_config<A: Agent>(
    app: &App<A>,
    request: Request,
    generation: &mut Option<u64>,
) -> Result<ApplyResponse, Failure> {
    // Before touching the body: an unauthenticated client must not make the agent buffer it.
    app.auth.authorize(request.headers()).await?;
    check_json_content_type(request.headers())?;
    let body = read_body(request).await?;
    let config = decode_config(&body)
        .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, "badRequest", e.to_string()))?;
    *generation = Some(config.generation);
    Ok(app.agent.apply(config).await?)
}

/// Refuses a body declared as something other than JSON; an absent Content-Type is accepted
/// because `curl -d @file` and similar tools often send none.
fn check_json_content_type(headers: &HeaderMap) -> Result<(), Failure> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    if value.to_str().is_ok_and(is_json_media_type) {
        return Ok(());
    }
    Err(Failure::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupportedMediaType",
        "the body must be JSON: send `Content-Type: application/json`",
    ))
}

/// Whether a Content-Type value is `application/json`, with any parameters (`charset=utf-8`).
fn is_json_media_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// Buffers the body up to [`MAX_CONFIG_BYTES`] (the router's [`DefaultBodyLimit`]).
async fn read_body(request: Request) -> Result<Bytes, Failure> {
    Bytes::from_request(request, &())
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Failure::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payloadTooLarge",
                    format!("the body exceeds {MAX_CONFIG_BYTES} bytes"),
                )
            } else {
                Failure::new(rejection.status(), "badRequest", rejection.body_text())
            }
        })
}

/// Decodes a `PUT /v1/config` body (answered 400 with the error's text when it fails). Serde's
/// message names the problem and its position (`unknown field `gw`, expected one of ... at line 1
/// column 52`), which is what a client needs to fix it. Public for the fuzz target of this
/// decoder (`fuzz/fuzz_targets/agent_config.rs`).
pub fn decode_config(body: &[u8]) -> Result<DesiredConfig, serde_json::Error> {
    serde_json::from_slice(body)
}

async fn get_config<A: Agent>(State(app): State<App<A>>) -> Response {
    match app.agent.config() {
        Some(config) => Json(config).into_response(),
        None => Failure::new(
            StatusCode::NOT_FOUND,
            "notFound",
            "no configuration has been applied yet",
        )
        .into_response(),
    }
}

async fn get_status<A: Agent>(State(app): State<App<A>>) -> Response {
    // Clone out of the borrow: holding a watch borrow across the response would block the
    // agent's next status publication.
    let status = Arc::clone(&app.agent.status().borrow());
    Json(&*status).into_response()
}

async fn watch_status<A: Agent>(
    State(app): State<App<A>>,
    headers: HeaderMap,
    shutdown: Option<Extension<WatchShutdown>>,
) -> Response {
    let shutdown = shutdown.map_or_else(CancellationToken::new, |Extension(s)| s.0);
    let guard = app.state.track_watcher();
    let statuses = WatchStream::new(app.agent.status())
        .take_until(shutdown.cancelled_owned())
        .map(move |status| {
            // The closure owns the guard, so the watcher stays counted until the stream drops.
            let _counted = &guard;
            status
        });
    if accepts_event_stream(&headers) {
        sse_response(statuses)
    } else {
        ndjson_response(statuses)
    }
}

/// Whether the client asked for Server-Sent Events.
fn accepts_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|range| {
            let essence = range.split(';').next().unwrap_or_default().trim();
            essence.eq_ignore_ascii_case(EVENT_STREAM)
        })
}

fn sse_response(statuses: impl Stream<Item = Arc<Status>> + Send + 'static) -> Response {
    let events = statuses.map(|status| Event::default().event("status").json_data(&*status));
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(SSE_KEEP_ALIVE))
        .into_response()
}

fn ndjson_response(statuses: impl Stream<Item = Arc<Status>> + Send + 'static) -> Response {
    let lines = statuses.map(|status| ndjson_line(&status));
    (
        [
            (header::CONTENT_TYPE, NDJSON),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(lines),
    )
        .into_response()
}

/// One status as one line: compact JSON escapes newlines inside strings, so the only newline is
/// the terminator.
fn ndjson_line(status: &Status) -> Result<Bytes, serde_json::Error> {
    let mut line = serde_json::to_vec(status)?;
    line.push(b'\n');
    Ok(Bytes::from(line))
}

async fn healthz<A: Agent>(State(app): State<App<A>>) -> Response {
    if app.agent.healthy() {
        "ok".into_response()
    } else {
        Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unhealthy",
            "the agent has not read the kernel state yet",
        )
        .into_response()
    }
}

async fn metrics<A: Agent>(State(app): State<App<A>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.agent.metrics_text(),
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
    use nes_api::{BootId, ValidationError};

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn json_media_type_ignores_case_and_parameters() {
        assert!(is_json_media_type("application/json"));
        assert!(is_json_media_type("Application/JSON; charset=utf-8"));
        assert!(!is_json_media_type("text/plain"));
        assert!(!is_json_media_type("application/jsonx"));
    }

    #[test]
    fn event_stream_is_chosen_from_any_accept_entry() {
        assert!(accepts_event_stream(&accept("text/event-stream")));
        assert!(accepts_event_stream(&accept(
            "application/json, Text/Event-Stream;q=0.9"
        )));
        assert!(!accepts_event_stream(&accept("application/x-ndjson")));
        assert!(!accepts_event_stream(&HeaderMap::new()));
    }

    #[test]
    fn apply_errors_map_to_statuses_and_codes() {
        let invalid = Failure::from(ApplyError::Invalid(vec![
            ValidationError::InvalidCidr {
                field: "addresses[0].cidr".into(),
                value: "x".into(),
            },
            ValidationError::NoNextHop {
                field: "routes[0]".into(),
            },
        ]));
        assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
        let codes: Vec<_> = invalid.errors.iter().map(|e| e.code.as_str()).collect();
        assert_eq!(codes, ["invalidCidr", "noNextHop"]);

        let conflict = Failure::from(ApplyError::Conflict(nes_api::GenerationError::NotNext {
            sent: 1,
            applied: 2,
            next: 3,
        }));
        assert_eq!(conflict.status, StatusCode::CONFLICT);
        assert_eq!(conflict.code(), "conflict");

        let unavailable = Failure::from(ApplyError::Unavailable("stopping".into()));
        assert_eq!(unavailable.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(unavailable.code(), "unavailable");
    }

    #[test]
    fn auth_failures_challenge_only_on_401() {
        let missing = Failure::from(AuthError::MissingCredentials).into_response();
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(missing.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let wrong = Failure::from(AuthError::WrongToken).into_response();
        assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
        assert!(wrong.headers().get(header::WWW_AUTHENTICATE).is_none());
    }

    #[test]
    fn ndjson_lines_are_single_lines() {
        let mut status = Status {
            boot_id: BootId::new("a\nb"),
            generation: None,
            links: vec![],
            addresses: vec![],
            routes: vec![],
            results: vec![],
        };
        status.generation = Some(3);
        let line = ndjson_line(&status).unwrap();
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        assert!(line.ends_with(b"\n"));
    }

    #[test]
    fn watchers_are_counted_while_guards_live() {
        let state = ApiState::new();
        let first = state.track_watcher();
        let second = state.clone().track_watcher();
        assert_eq!(state.watchers(), 2);
        drop(first);
        drop(second);
        assert_eq!(state.watchers(), 0);
    }
}
