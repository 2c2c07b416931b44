//! A stand-in API server for unit tests of the I/O edges (the reviewer, the router): a
//! `kube::Client` whose requests are answered in-process. It knows one pod, `team/x-0` with uid
//! `uid-1`, and one valid token, [`GOOD_TOKEN`], bound to it for audience [`AUDIENCE`]; every
//! other token is refused and every other object is absent.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use k8s_openapi::api::authentication::v1::TokenReview;
use serde_json::json;

use crate::auth::{POD_NAME_EXTRA, POD_UID_EXTRA};

/// The one token the fake accepts.
pub const GOOD_TOKEN: &str = "good";
/// The audience of [`GOOD_TOKEN`].
pub const AUDIENCE: &str = "nes-cliserver";

/// The fake API server and the number of TokenReviews it answered.
pub struct FakeApi {
    /// A client of it.
    pub client: kube::Client,
    reviews: Arc<AtomicUsize>,
}

impl FakeApi {
    /// A new fake with no reviews made.
    pub fn start() -> Self {
        let reviews = Arc::new(AtomicUsize::new(0));
        let counter = reviews.clone();
        let service = tower::service_fn(move |request: Request<kube::client::Body>| {
            let counter = counter.clone();
            async move { Ok::<_, Infallible>(answer(request, &counter).await) }
        });
        FakeApi {
            client: kube::Client::new(service, "default"),
            reviews,
        }
    }

    /// TokenReviews answered so far.
    pub fn reviews(&self) -> usize {
        self.reviews.load(Ordering::SeqCst)
    }
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<kube::client::Body> {
    let mut response = Response::new(kube::client::Body::from(serde_json::to_vec(body).unwrap()));
    *response.status_mut() = status;
    response
}

async fn answer(
    request: Request<kube::client::Body>,
    reviews: &AtomicUsize,
) -> Response<kube::client::Body> {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    match (method, path.as_str()) {
        (Method::POST, "/apis/authentication.k8s.io/v1/tokenreviews") => {
            reviews.fetch_add(1, Ordering::SeqCst);
            let body = request.into_body().collect().await.unwrap().to_bytes();
            let mut review: TokenReview = serde_json::from_slice(&body).unwrap();
            let status = if review.spec.token.as_deref() == Some(GOOD_TOKEN) {
                json!({
                    "authenticated": true,
                    "audiences": [AUDIENCE],
                    "user": {"username": "system:serviceaccount:team:app", "extra": {
                        POD_NAME_EXTRA: ["x-0"], POD_UID_EXTRA: ["uid-1"]}}
                })
            } else {
                json!({"authenticated": false, "error": "invalid bearer token"})
            };
            review.status = Some(serde_json::from_value(status).unwrap());
            json_response(StatusCode::CREATED, &serde_json::to_value(&review).unwrap())
        }
        (Method::GET, "/api/v1/namespaces/team/pods/x-0") => json_response(
            StatusCode::OK,
            &json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "x-0", "namespace": "team", "uid": "uid-1"}}),
        ),
        _ => json_response(
            StatusCode::NOT_FOUND,
            &json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                "reason": "NotFound", "code": 404, "message": "not found"}),
        ),
    }
}
