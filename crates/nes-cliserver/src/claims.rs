//! When a token stops being the caller's: read from the claims of a token the API server has
//! just accepted (TokenReview checked its signature, so its payload is the API server's word;
//! nothing here verifies anything, and an unreviewed token must never be read this way).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// The token's end: its `exp`, or the `kubernetes.io` `warnafter` when that is earlier. An API
/// server that extends the lifetime of kubelet-requested tokens (to a year) puts the real one
/// in `warnafter`, after which the kubelet has already mounted a fresh token in the pod. `None`
/// when the token is not a JWT or names no expiry.
pub fn token_end(token: &str) -> Option<SystemTime> {
    let mut parts = token.split('.');
    let (_header, payload) = (parts.next()?, parts.next()?);
    parts.next()?; // a signature
    let payload = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Value = serde_json::from_slice(&payload).ok()?;
    let at = |value: &Value| {
        value
            .as_u64()
            .map(|seconds| UNIX_EPOCH + Duration::from_secs(seconds))
    };
    let exp = at(&claims["exp"]);
    let warn_after = at(&claims["kubernetes.io"]["warnafter"]);
    match (exp, warn_after) {
        (Some(exp), Some(warn)) => Some(exp.min(warn)),
        (one, other) => one.or(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(claims: &Value) -> String {
        let part = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
        format!(
            "{}.{}.c2lnbmF0dXJl",
            part(&serde_json::json!({"alg": "ES256"})),
            part(claims)
        )
    }

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn the_end_is_the_expiry() {
        let claims = serde_json::json!({
            "aud": ["nes-cliserver"], "exp": 1_900_000_000u64, "iat": 1_899_996_400u64,
            "kubernetes.io": {"namespace": "team", "pod": {"name": "x-0", "uid": "u"}}
        });
        assert_eq!(token_end(&token(&claims)), Some(at(1_900_000_000)));
    }

    #[test]
    fn an_earlier_warnafter_ends_an_extended_token() {
        let claims = serde_json::json!({
            "exp": 1_931_536_000u64,
            "kubernetes.io": {"warnafter": 1_900_003_607u64}
        });
        assert_eq!(token_end(&token(&claims)), Some(at(1_900_003_607)));
    }

    #[test]
    fn tokens_without_a_readable_expiry_have_none() {
        for text in [
            "not-a-token",
            "a.b",
            "a.!!!.c",
            &token(&serde_json::json!({"sub": "x"})),
            &token(&serde_json::json!({"exp": "soon"})),
            &token(&serde_json::json!([1, 2])),
        ] {
            assert_eq!(token_end(text), None, "{text}");
        }
    }
}
