//! The HTTP endpoints: `/ping`, `/healthz`, `/peers`, `/metrics`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::metrics::Metrics;
use crate::status::{PeerTable, PeerView};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// This instance's name, for `/ping` in JSON.
    pub instance: Arc<str>,
    /// When the server started, for the uptime.
    pub started: Instant,
    /// The targets' state, for `/peers`.
    pub table: Arc<PeerTable>,
    /// The metrics, for `/metrics`.
    pub metrics: Metrics,
}

/// The routes of the server.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/ping", get(ping))
        .route("/healthz", get(healthz))
        .route("/peers", get(peers))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// The JSON answer of `/ping`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Pong<'a> {
    pong: bool,
    instance: &'a str,
    uptime_seconds: u64,
}

/// `pong` as text, or `{"pong": true, "instance": ..., "uptimeSeconds": ...}` when the
/// client accepts JSON.
async fn ping(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok());
    if wants_json(accept) {
        Json(Pong {
            pong: true,
            instance: &state.instance,
            uptime_seconds: state.started.elapsed().as_secs(),
        })
        .into_response()
    } else {
        "pong".into_response()
    }
}

/// The process is up and serving.
async fn healthz() -> &'static str {
    "ok"
}

/// Every current target and the outcome of its last ping.
async fn peers(State(state): State<AppState>) -> Json<Vec<PeerView>> {
    Json(state.table.snapshot())
}

/// The Prometheus text exposition.
async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// Whether an `Accept` header asks for JSON: it lists `application/json` with a non-zero
/// quality. Anything else (no header, `*/*`, `text/plain`) gets text, the historical answer.
pub fn wants_json(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    accept.split(',').any(|range| {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim();
        let refused = parts.any(|param| {
            let Some((name, value)) = param.split_once('=') else {
                return false;
            };
            name.trim().eq_ignore_ascii_case("q")
                && value.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
        });
        media.eq_ignore_ascii_case("application/json") && !refused
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        assert!(!wants_json(None));
        assert!(!wants_json(Some("*/*")));
        assert!(!wants_json(Some("text/plain")));
        assert!(wants_json(Some("application/json")));
        assert!(wants_json(Some("Application/JSON")));
        assert!(wants_json(Some("text/html, application/json;q=0.9")));
        assert!(wants_json(Some("text/plain;q=0.5, application/json ; q=1")));
        assert!(!wants_json(Some("application/json;q=0")));
        assert!(!wants_json(Some("application/json;q=0.0, text/plain")));
        assert!(!wants_json(Some("application/jsonx")));
        assert!(!wants_json(Some("")));
    }
}
