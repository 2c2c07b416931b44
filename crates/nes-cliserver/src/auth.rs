//! Who is calling: the bearer token is reviewed by the API server (TokenReview) and must be a
//! service account token bound to exactly the pod named in the path.
//!
//! The decision is pure ([`decide`], [`check_pod_uid`]); [`Reviewer`] does the TokenReview
//! call and keeps successful reviews for a short time ([`DEFAULT_CACHE_TTL`]) keyed by the
//! token's SHA-256, so an application calling in a loop costs one review per TTL, not one per
//! request. The token itself is never stored, logged or echoed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};

use crate::metrics::Metrics;

/// The `extra` key of a pod-bound token naming the pod.
pub const POD_NAME_EXTRA: &str = "authentication.kubernetes.io/pod-name";
/// The `extra` key of a pod-bound token holding the pod's uid.
pub const POD_UID_EXTRA: &str = "authentication.kubernetes.io/pod-uid";

/// How long a successful review is reused. Short, because a token can be revoked (its pod
/// deleted) and the cache would honour it until the entry expires.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(10);

/// At most this many cached reviews; beyond, expired entries are dropped, then all.
const MAX_CACHED: usize = 4096;

/// What a TokenReview said about a token, reduced to what the decision needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Review {
    /// Whether the API server accepted the token.
    pub authenticated: bool,
    /// `system:serviceaccount:{namespace}:{name}` for service account tokens.
    pub username: Option<String>,
    /// The pod the token is bound to.
    pub pod_name: Option<String>,
    /// That pod's uid.
    pub pod_uid: Option<String>,
    /// The API server's reason for refusing the token (never contains the token).
    pub error: Option<String>,
}

impl From<TokenReviewStatus> for Review {
    fn from(status: TokenReviewStatus) -> Self {
        let user = status.user.unwrap_or_default();
        let extra = user.extra.unwrap_or_default();
        let first = |key: &str| extra.get(key).and_then(|values| values.first().cloned());
        Review {
            authenticated: status.authenticated == Some(true),
            username: user.username,
            pod_name: first(POD_NAME_EXTRA),
            pod_uid: first(POD_UID_EXTRA),
            error: status.error,
        }
    }
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No token, or one the API server does not accept: 401.
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid token that is not bound to the pod in the path: 403.
    #[error("{0}")]
    Forbidden(String),
}

/// The authenticated caller: the pod of the path, with the uid its token is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The uid of the pod the token is bound to.
    pub pod_uid: String,
}

/// Decides whether `review` lets its token act on pod `namespace/pod`: it must be
/// authenticated, a service account of that namespace, and bound to that pod. The messages
/// name the path's pod, never what the token holds.
pub fn decide(review: &Review, namespace: &str, pod: &str) -> Result<Caller, Denied> {
    if !review.authenticated {
        let reason = review
            .error
            .as_deref()
            .filter(|e| !e.is_empty())
            .map_or_else(String::new, |e| format!(": {e}"));
        return Err(Denied::Unauthenticated(format!(
            "the bearer token is not valid{reason}"
        )));
    }
    let forbidden = |why: &str| {
        Err(Denied::Forbidden(format!(
            "the token may not act on pod {namespace}/{pod}: {why}"
        )))
    };
    let token_namespace = review
        .username
        .as_deref()
        .and_then(|u| u.strip_prefix("system:serviceaccount:"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(ns, _)| ns);
    match token_namespace {
        None => return forbidden("it is not a service account token"),
        Some(ns) if ns != namespace => {
            return forbidden("its service account is of another namespace");
        }
        Some(_) => {}
    }
    match (&review.pod_name, &review.pod_uid) {
        (Some(name), Some(uid)) if name == pod => Ok(Caller {
            pod_uid: uid.clone(),
        }),
        (Some(_), Some(_)) => forbidden("it is bound to another pod"),
        _ => forbidden("it is not bound to a pod (mount a projected token bound to the pod)"),
    }
}

/// Checks that the live pod is the instance the token was issued for: a token of a deleted pod
/// must not act on its successor of the same name (a StatefulSet re-creates `x-0`).
pub fn check_pod_uid(caller: &Caller, live_uid: Option<&str>) -> Result<(), Denied> {
    if live_uid == Some(caller.pod_uid.as_str()) {
        Ok(())
    } else {
        Err(Denied::Forbidden(
            "the token is bound to an earlier instance of this pod".into(),
        ))
    }
}

/// The bearer token of an `Authorization` header value, if it is one.
pub fn bearer_token(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Reviews tokens with the API server, caching successful reviews.
pub struct Reviewer {
    api: Api<TokenReview>,
    audiences: Option<Vec<String>>,
    ttl: Duration,
    cache: Mutex<HashMap<[u8; 32], (Review, Instant)>>,
    metrics: Metrics,
}

impl Reviewer {
    /// A reviewer asking for `audience` (the API server's default audiences when `None`),
    /// reusing successful reviews for `ttl` (no caching when zero).
    pub fn new(
        client: kube::Client,
        audience: Option<String>,
        ttl: Duration,
        metrics: Metrics,
    ) -> Self {
        Reviewer {
            api: Api::all(client),
            audiences: audience.map(|a| vec![a]),
            ttl,
            cache: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// What the API server says about `token`.
    pub async fn review(&self, token: &str) -> Result<Review, kube::Error> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(review) = self.cached(&key) {
            self.metrics.review_cache(true);
            return Ok(review);
        }
        self.metrics.review_cache(false);
        let request = TokenReview {
            metadata: Default::default(),
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: self.audiences.clone(),
            },
            status: None,
        };
        let started = Instant::now();
        let answer = self.api.create(&PostParams::default(), &request).await;
        self.metrics.observe_review(started.elapsed());
        let review = Review::from(answer?.status.unwrap_or_default());
        if review.authenticated && !self.ttl.is_zero() {
            self.remember(key, review.clone());
        }
        Ok(review)
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Review> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let (review, at) = cache.get(key)?;
        (at.elapsed() < self.ttl).then(|| review.clone())
    }

    fn remember(&self, key: [u8; 32], review: Review) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, (_, at)| at.elapsed() < self.ttl);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(key, (review, Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(namespace: &str, pod: &str) -> Review {
        Review {
            authenticated: true,
            username: Some(format!("system:serviceaccount:{namespace}:app")),
            pod_name: Some(pod.into()),
            pod_uid: Some("uid-1".into()),
            error: None,
        }
    }

    #[test]
    fn the_pod_bound_token_of_the_path_pod_is_allowed() {
        assert_eq!(
            decide(&bound("team", "x-0"), "team", "x-0"),
            Ok(Caller {
                pod_uid: "uid-1".into()
            })
        );
    }

    #[test]
    fn invalid_tokens_are_401_with_the_servers_reason() {
        let review = Review {
            error: Some("token has expired".into()),
            ..Review::default()
        };
        assert_eq!(
            decide(&review, "team", "x-0"),
            Err(Denied::Unauthenticated(
                "the bearer token is not valid: token has expired".into()
            ))
        );
    }

    #[test]
    fn other_pods_namespaces_and_unbound_tokens_are_403() {
        let cases = [
            (bound("team", "x-1"), "bound to another pod"),
            (bound("other", "x-0"), "another namespace"),
            (
                Review {
                    pod_name: None,
                    pod_uid: None,
                    ..bound("team", "x-0")
                },
                "not bound to a pod",
            ),
            (
                Review {
                    username: Some("alice".into()),
                    ..bound("team", "x-0")
                },
                "not a service account token",
            ),
        ];
        for (review, why) in cases {
            match decide(&review, "team", "x-0") {
                Err(Denied::Forbidden(message)) => {
                    assert!(message.contains(why), "{message}");
                    assert!(message.contains("team/x-0"), "{message}");
                    assert!(!message.contains("x-1"), "never what the token holds");
                }
                other => panic!("expected 403 for {review:?}, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_token_of_an_earlier_pod_instance_is_403() {
        let caller = Caller {
            pod_uid: "uid-1".into(),
        };
        assert_eq!(check_pod_uid(&caller, Some("uid-1")), Ok(()));
        assert!(matches!(
            check_pod_uid(&caller, Some("uid-2")),
            Err(Denied::Forbidden(_))
        ));
        assert!(check_pod_uid(&caller, None).is_err());
    }

    #[test]
    fn bearer_tokens_are_taken_from_the_header() {
        assert_eq!(bearer_token(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer_token(Some("Basic abc")), None);
        assert_eq!(bearer_token(Some("Bearer ")), None);
        assert_eq!(bearer_token(None), None);
    }

    #[test]
    fn review_status_is_reduced_to_the_pod_binding() {
        let status: TokenReviewStatus = serde_json::from_value(serde_json::json!({
            "authenticated": true,
            "user": {
                "username": "system:serviceaccount:team:app",
                "extra": {
                    POD_NAME_EXTRA: ["x-0"],
                    POD_UID_EXTRA: ["uid-1"]
                }
            }
        }))
        .unwrap();
        assert_eq!(Review::from(status), bound("team", "x-0"));
    }
}
