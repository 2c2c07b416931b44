//! HTTP framing: an axum service that turns requests into [`ApiRequest`]s and replies into
//! responses, plus the listener lifecycle.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use futures::StreamExt;
use http::{HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use tokio::net::TcpListener;
use tokio_stream::wrappers::ReceiverStream;

use crate::api::{ApiRequest, ApiServer, Credentials, Reply};
use crate::error::ApiError;

/// Largest request body accepted (etcd's object limit is 1.5 MiB; leave room for YAML).
const MAX_BODY: usize = 3 * 1024 * 1024;

fn header_str(req: &Request, name: header::HeaderName) -> String {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The identity headers of a request.
fn credentials(headers: &http::HeaderMap) -> Credentials {
    let one = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    Credentials {
        authorization: one(header::AUTHORIZATION.as_str()),
        impersonate_user: one("impersonate-user"),
        impersonate_uid: one("impersonate-uid"),
        impersonate_groups: headers
            .get_all("impersonate-group")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect(),
    }
}

async fn handle(State(server): State<Arc<ApiServer>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let accept = header_str(&req, header::ACCEPT);
    let content_type = header_str(&req, header::CONTENT_TYPE);
    let user_agent = header_str(&req, header::USER_AGENT);
    let credentials = credentials(req.headers());
    let body = match http_body_util::Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return reply(Reply::from(ApiError::custom(
                413,
                "RequestEntityTooLarge",
                "the request body is too large",
            )));
        }
    };
    tracing::debug!(%method, %path, query = query.as_deref().unwrap_or(""), "request");
    let api_req = ApiRequest {
        method,
        path,
        query,
        accept,
        content_type,
        user_agent,
        body,
        credentials,
    };
    reply(server.handle(api_req).await)
}

fn json_response(code: StatusCode, body: Body) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn reply(r: Reply) -> Response {
    match r {
        Reply::Json(code, v) => {
            json_response(code, Body::from(serde_json::to_vec(&v).unwrap_or_default()))
        }
        Reply::Bytes(code, b) => json_response(code, Body::from(b)),
        Reply::Stream(rx) => {
            let stream = ReceiverStream::new(rx).map(Ok::<_, std::convert::Infallible>);
            let mut resp = json_response(StatusCode::OK, Body::from_stream(stream));
            resp.headers_mut().insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
            resp
        }
        Reply::Empty(code) => {
            let mut resp = Response::new(Body::empty());
            *resp.status_mut() = code;
            resp
        }
    }
}

/// The axum router serving the whole API.
pub fn router(server: Arc<ApiServer>) -> Router {
    Router::new().fallback(handle).with_state(server)
}

/// Binds a listener on 127.0.0.1 (port 0 picks a free one).
pub async fn bind(port: u16) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}
