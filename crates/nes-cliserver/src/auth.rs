//! Who is calling: the bearer token is reviewed by the API server (TokenReview) and must be a
//! service account token for this server's audience, bound to exactly the pod named in the path.
//!
//! The decision is pure ([`authenticated`], [`decide`], [`check_pod_uid`]). [`Reviewer`] makes
//! the TokenReview calls and keeps their answers for a short time, keyed by the token's SHA-256:
//! accepted tokens for [`DEFAULT_CACHE_TTL`], refused ones for [`DEFAULT_NEGATIVE_CACHE_TTL`], so
//! an application calling in a loop costs one review per TTL, and so does a client repeating a
//! bad token. A review the caches cannot answer first takes one of the source address's
//! failure allowances ([`crate::throttle`]), given back when the token is accepted: a source
//! sending token after invalid token is answered 429 without reviews once its budget is spent.
//! The token itself is never stored, logged or echoed.

use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};

use crate::cache::{TokenKey, TtlCache};
use crate::metrics::{CacheResult, Metrics};
use crate::throttle::Throttle;

/// The `extra` key of a pod-bound token naming the pod.
pub const POD_NAME_EXTRA: &str = "authentication.kubernetes.io/pod-name";
/// The `extra` key of a pod-bound token holding the pod's uid.
pub const POD_UID_EXTRA: &str = "authentication.kubernetes.io/pod-uid";

/// How long a successful review is reused. Short, because a token can be revoked (its pod
/// deleted) and the cache would honour it until the entry expires.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(10);

/// How long a refused token is answered 401 without a review. Short: nothing legitimate
/// presents a refused token twice, and a token can only become valid by the clocks agreeing
/// (a token used the instant it was issued by another API server).
pub const DEFAULT_NEGATIVE_CACHE_TTL: Duration = Duration::from_secs(5);

/// Failed authentications a source may cause per minute (and in a burst) by default.
pub const DEFAULT_FAILURES_PER_MINUTE: u32 = 30;

/// At most this many cached reviews of each kind; beyond, expired entries are dropped, then all.
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
    /// The audiences the API server found the token valid for, of those the review asked for
    /// (`status.audiences`).
    pub audiences: Vec<String>,
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
            audiences: status.audiences.unwrap_or_default(),
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

/// Whether `review` accepts its token for this server: the API server authenticated it and,
/// when the server has an `audience`, confirmed that audience in `status.audiences`. (A
/// TokenReview that sets `spec.audiences` must check the answer's: an authenticator that
/// ignores audiences answers "authenticated" with none, for any audience.) Refusals are 401.
pub fn authenticated(review: &Review, audience: Option<&str>) -> Result<(), Denied> {
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
    if let Some(audience) = audience
        && !review.audiences.iter().any(|a| a == audience)
    {
        return Err(Denied::Unauthenticated(format!(
            "the bearer token is not valid for audience {audience:?} (the API server did not confirm it)"
        )));
    }
    Ok(())
}

/// Decides whether `review` lets its token act on pod `namespace/pod`: it must be
/// [`authenticated`] for `audience`, a service account of that namespace, and bound to that pod.
/// The messages name the path's pod, never what the token holds.
pub fn decide(
    review: &Review,
    audience: Option<&str>,
    namespace: &str,
    pod: &str,
) -> Result<Caller, Denied> {
    authenticated(review, audience)?;
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

/// Why [`Reviewer::authenticate`] did not accept a token.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The token is refused (now or, from the negative cache, a moment ago): 401.
    #[error("{0}")]
    Denied(Denied),
    /// The source has used up its failed authentications: 429, try again after the duration.
    #[error("too many failed authentications; retry in {0:?}")]
    Throttled(Duration),
    /// The TokenReview call failed: 503.
    #[error("the TokenReview call failed: {0}")]
    Unavailable(#[source] kube::Error),
}

/// How a [`Reviewer`] reviews.
#[derive(Debug, Clone)]
pub struct ReviewSettings {
    /// The audience tokens must carry; the API server's own audiences when `None`.
    pub audience: Option<String>,
    /// How long an accepted token's review is reused (zero: never).
    pub ttl: Duration,
    /// How long a refused token is answered without a review (zero: never).
    pub negative_ttl: Duration,
    /// Failed authentications per source and minute (zero: no limit).
    pub failures_per_minute: u32,
}

impl Default for ReviewSettings {
    fn default() -> Self {
        ReviewSettings {
            audience: None,
            ttl: DEFAULT_CACHE_TTL,
            negative_ttl: DEFAULT_NEGATIVE_CACHE_TTL,
            failures_per_minute: DEFAULT_FAILURES_PER_MINUTE,
        }
    }
}

/// Reviews tokens with the API server, with the caches and the per-source limit above.
pub struct Reviewer {
    api: Api<TokenReview>,
    audience: Option<String>,
    accepted: Mutex<TtlCache<Review>>,
    refused: Mutex<TtlCache<Denied>>,
    throttle: Mutex<Throttle>,
    metrics: Metrics,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Reviewer {
    /// A reviewer over `client`'s API server.
    pub fn new(client: kube::Client, settings: ReviewSettings, metrics: Metrics) -> Self {
        Reviewer {
            api: Api::all(client),
            audience: settings.audience,
            accepted: Mutex::new(TtlCache::new(settings.ttl, MAX_CACHED)),
            refused: Mutex::new(TtlCache::new(settings.negative_ttl, MAX_CACHED)),
            throttle: Mutex::new(Throttle::new(settings.failures_per_minute)),
            metrics,
        }
    }

    /// The audience tokens must carry.
    pub fn audience(&self) -> Option<&str> {
        self.audience.as_deref()
    }

    /// The review of `token`, sent from `source`, if the token is [`authenticated`].
    pub async fn authenticate(&self, token: &str, source: IpAddr) -> Result<Review, ReviewError> {
        let key: TokenKey = Sha256::digest(token.as_bytes()).into();
        let now = Instant::now();
        if let Some(review) = lock(&self.accepted).get(&key, now) {
            self.metrics.review_cache(CacheResult::Hit);
            return Ok(review);
        }
        if let Some(denied) = lock(&self.refused).get(&key, now) {
            self.metrics.review_cache(CacheResult::NegativeHit);
            return Err(ReviewError::Denied(denied));
        }
        if let Err(wait) = lock(&self.throttle).take(source, now) {
            self.metrics.auth_throttled();
            return Err(ReviewError::Throttled(wait));
        }
        self.metrics.review_cache(CacheResult::Miss);
        let answer = self.review(token).await;
        let now = Instant::now();
        let review = match answer {
            Ok(review) => review,
            Err(error) => {
                lock(&self.throttle).give_back(source, now);
                return Err(ReviewError::Unavailable(error));
            }
        };
        match authenticated(&review, self.audience()) {
            Ok(()) => {
                lock(&self.throttle).give_back(source, now);
                lock(&self.accepted).insert(key, review.clone(), now);
                Ok(review)
            }
            Err(denied) => {
                lock(&self.refused).insert(key, denied.clone(), now);
                Err(ReviewError::Denied(denied))
            }
        }
    }

    /// What the API server says about `token`.
    async fn review(&self, token: &str) -> Result<Review, kube::Error> {
        let request = TokenReview {
            metadata: Default::default(),
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: self.audience.clone().map(|a| vec![a]),
            },
            status: None,
        };
        let started = Instant::now();
        let answer = self.api.create(&PostParams::default(), &request).await;
        self.metrics.observe_review(started.elapsed());
        Ok(Review::from(answer?.status.unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUDIENCE: Option<&str> = Some("nes-cliserver");

    fn bound(namespace: &str, pod: &str) -> Review {
        Review {
            authenticated: true,
            username: Some(format!("system:serviceaccount:{namespace}:app")),
            pod_name: Some(pod.into()),
            pod_uid: Some("uid-1".into()),
            error: None,
            audiences: vec!["nes-cliserver".into()],
        }
    }

    #[test]
    fn the_pod_bound_token_of_the_path_pod_is_allowed() {
        assert_eq!(
            decide(&bound("team", "x-0"), AUDIENCE, "team", "x-0"),
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
            decide(&review, AUDIENCE, "team", "x-0"),
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
            match decide(&review, AUDIENCE, "team", "x-0") {
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
    fn the_audience_must_be_confirmed_by_the_api_server() {
        let review = bound("team", "x-0");
        assert_eq!(authenticated(&review, AUDIENCE), Ok(()));
        // Authenticated, but for other audiences or none confirmed (an authenticator that
        // ignores spec.audiences): 401.
        for audiences in [vec![], vec!["https://kubernetes.default.svc".to_owned()]] {
            let review = Review {
                audiences,
                ..bound("team", "x-0")
            };
            match decide(&review, AUDIENCE, "team", "x-0") {
                Err(Denied::Unauthenticated(message)) => {
                    assert!(message.contains(r#"audience "nes-cliserver""#), "{message}")
                }
                other => panic!("expected 401, got {other:?}"),
            }
        }
        // Without an audience of its own the server takes the API server's default audiences,
        // which a review reports as none.
        let review = Review {
            audiences: vec![],
            ..bound("team", "x-0")
        };
        assert!(decide(&review, None, "team", "x-0").is_ok());
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
            },
            "audiences": ["nes-cliserver"]
        }))
        .unwrap();
        assert_eq!(Review::from(status), bound("team", "x-0"));
    }

    mod reviewer {
        use crate::fake_api::{AUDIENCE as FAKE_AUDIENCE, FakeApi, GOOD_TOKEN};

        use super::super::*;

        fn reviewer(api: &FakeApi, failures_per_minute: u32) -> Reviewer {
            Reviewer::new(
                api.client.clone(),
                ReviewSettings {
                    audience: Some(FAKE_AUDIENCE.into()),
                    failures_per_minute,
                    ..ReviewSettings::default()
                },
                Metrics::new(),
            )
        }

        const SOURCE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
        const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

        #[tokio::test]
        async fn accepted_and_refused_tokens_are_both_reviewed_once() {
            let api = FakeApi::start();
            let reviewer = reviewer(&api, 30);
            for _ in 0..3 {
                let review = reviewer.authenticate(GOOD_TOKEN, SOURCE).await.unwrap();
                assert_eq!(review.pod_name.as_deref(), Some("x-0"));
            }
            for _ in 0..3 {
                match reviewer.authenticate("bad", SOURCE).await {
                    Err(ReviewError::Denied(Denied::Unauthenticated(message))) => {
                        assert!(message.contains("invalid bearer token"), "{message}")
                    }
                    other => panic!("expected 401, got {other:?}"),
                }
            }
            assert_eq!(api.reviews(), 2, "one review per token");
        }

        #[tokio::test]
        async fn a_source_that_keeps_failing_is_throttled_without_reviews() {
            let api = FakeApi::start();
            let reviewer = reviewer(&api, 3);
            // The valid token first: accepted tokens cost the source nothing.
            reviewer.authenticate(GOOD_TOKEN, SOURCE).await.unwrap();
            for token in ["bad-1", "bad-2", "bad-3"] {
                assert!(matches!(
                    reviewer.authenticate(token, SOURCE).await,
                    Err(ReviewError::Denied(_))
                ));
            }
            match reviewer.authenticate("bad-4", SOURCE).await {
                Err(ReviewError::Throttled(wait)) => {
                    assert!(wait > Duration::ZERO && wait <= Duration::from_secs(20))
                }
                other => panic!("expected 429, got {other:?}"),
            }
            assert_eq!(api.reviews(), 4, "no review for bad-4");
            // What the caches answer is still answered: the cached valid token passes, a
            // cached refusal stays a 401.
            assert!(reviewer.authenticate(GOOD_TOKEN, SOURCE).await.is_ok());
            assert!(matches!(
                reviewer.authenticate("bad-1", SOURCE).await,
                Err(ReviewError::Denied(_))
            ));
            // Another source is not affected.
            assert!(matches!(
                reviewer.authenticate("bad-5", OTHER).await,
                Err(ReviewError::Denied(_))
            ));
            assert_eq!(api.reviews(), 5);
        }
    }
}
