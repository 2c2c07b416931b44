//! Service account tokens as pure functions: JWT-shaped strings signed with HMAC-SHA256, their
//! claims (upstream's `kubernetes.io` private claims), and signature and time checks.
//!
//! Upstream signs with the service account issuer's RSA or ECDSA key (RS256/ES256), so anyone
//! holding the public key can verify a token. devcluster signs with HS256 under a random key
//! made per server and never published: only the TokenReview of the server that issued a token
//! can verify it, which is all the clients of a test cluster need. The object checks (service
//! account and bound object still exist with the same uid) need the store and live in
//! `api::auth`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The `iss` claim of every token devcluster issues (also the default audience, as upstream
/// defaults `--api-audiences` to the issuer).
pub const ISSUER: &str = "https://devcluster.local";

/// SHA-256 block size in bytes, the HMAC key block.
const BLOCK: usize = 64;

/// HMAC-SHA256 (RFC 2104): `H((K ^ opad) || H((K ^ ipad) || m))`, keys longer than a block
/// hashed first. Written out because the workspace pins `sha2` but not `hmac`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// Equality whose time does not depend on where the inputs differ, so a caller probing
/// signatures learns nothing from response times.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A name and uid, as the `kubernetes.io` claim records the service account and bound object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
}

/// The object a token is bound to; the token is valid only while it exists with that uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    /// A Pod in the service account's namespace.
    Pod(Ref),
    /// A Secret in the service account's namespace.
    Secret(Ref),
}

/// The claims of a service account token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// `aud`.
    pub audiences: Vec<String>,
    /// `iat` and `nbf` (seconds since the epoch).
    pub issued_at: i64,
    /// `exp` (seconds since the epoch).
    pub expires_at: i64,
    /// `jti`, the credential id.
    pub jti: String,
    /// `kubernetes.io.namespace`.
    pub namespace: String,
    /// `kubernetes.io.serviceaccount`.
    pub service_account: Ref,
    /// `kubernetes.io.pod` or `kubernetes.io.secret`.
    pub bound: Option<Bound>,
}

impl Claims {
    /// `system:serviceaccount:NS:NAME`, the `sub` claim and the authenticated user name.
    pub fn subject(&self) -> String {
        format!(
            "system:serviceaccount:{}:{}",
            self.namespace, self.service_account.name
        )
    }

    /// The JSON claim set, shaped as upstream's (`pkg/serviceaccount/claims.go`).
    pub fn to_json(&self) -> Value {
        let mut k8s = json!({
            "namespace": self.namespace,
            "serviceaccount": {"name": self.service_account.name, "uid": self.service_account.uid},
        });
        match &self.bound {
            Some(Bound::Pod(r)) => k8s["pod"] = json!({"name": r.name, "uid": r.uid}),
            Some(Bound::Secret(r)) => k8s["secret"] = json!({"name": r.name, "uid": r.uid}),
            None => {}
        }
        json!({
            "iss": ISSUER,
            "sub": self.subject(),
            "aud": self.audiences,
            "exp": self.expires_at,
            "iat": self.issued_at,
            "nbf": self.issued_at,
            "jti": self.jti,
            "kubernetes.io": k8s,
        })
    }

    /// Reads a claim set written by [`Claims::to_json`]; `None` if a claim is missing or of the
    /// wrong type (a signed token always has them, so this only rejects foreign tokens).
    pub fn from_json(v: &Value) -> Option<Self> {
        if v.get("iss")?.as_str()? != ISSUER {
            return None;
        }
        let k8s = v.get("kubernetes.io")?;
        let reference = |v: &Value| -> Option<Ref> {
            Some(Ref {
                name: v.get("name")?.as_str()?.to_owned(),
                uid: v.get("uid")?.as_str()?.to_owned(),
            })
        };
        let bound = match (k8s.get("pod"), k8s.get("secret")) {
            (Some(p), _) => Some(Bound::Pod(reference(p)?)),
            (None, Some(s)) => Some(Bound::Secret(reference(s)?)),
            (None, None) => None,
        };
        // `aud` may be a single string in JWTs generally; accept both forms.
        let audiences = match v.get("aud")? {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => items
                .iter()
                .map(|a| a.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()?,
            _ => return None,
        };
        Some(Claims {
            audiences,
            issued_at: v.get("iat")?.as_i64()?,
            expires_at: v.get("exp")?.as_i64()?,
            jti: v.get("jti")?.as_str()?.to_owned(),
            namespace: k8s.get("namespace")?.as_str()?.to_owned(),
            service_account: reference(k8s.get("serviceaccount")?)?,
            bound,
        })
    }
}

/// Why a token does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts of JSON with the expected header and claims.
    #[error("token is malformed: {0}")]
    Malformed(&'static str),
    /// The signature does not match: tampered, or issued by another server.
    #[error("token signature is invalid (tampered, or not issued by this devcluster)")]
    BadSignature,
    /// `exp` has passed.
    #[error("service account token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("service account token is not valid yet")]
    NotYetValid,
}

fn header() -> Value {
    json!({"alg": "HS256", "typ": "JWT"})
}

/// Encodes and signs `claims`: `base64url(header).base64url(claims).base64url(signature)`.
pub fn sign(key: &[u8], claims: &Claims) -> String {
    let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let signing_input = format!("{}.{}", part(&header()), part(&claims.to_json()));
    let signature = hmac_sha256(key, signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Checks the signature, then the times against `now` (seconds since the epoch), and returns
/// the claims. Whether the service account and bound object still exist is the caller's part.
pub fn verify(key: &[u8], token: &str, now: i64) -> Result<Claims, TokenError> {
    let mut parts = token.trim().split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("not three dot-separated parts"));
    };
    let signature = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| TokenError::Malformed("signature is not base64url"))?;
    // The signature is checked before anything in the token is interpreted.
    let expected = hmac_sha256(key, format!("{h}.{c}").as_bytes());
    if !constant_time_eq(&signature, &expected) {
        return Err(TokenError::BadSignature);
    }
    let decode = |p: &str| -> Result<Value, TokenError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(p)
            .map_err(|_| TokenError::Malformed("part is not base64url"))?;
        serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed("part is not JSON"))
    };
    if decode(h)? != header() {
        return Err(TokenError::Malformed("unexpected header"));
    }
    let claims =
        Claims::from_json(&decode(c)?).ok_or(TokenError::Malformed("missing or invalid claims"))?;
    if now >= claims.expires_at {
        return Err(TokenError::Expired);
    }
    if now < claims.issued_at {
        return Err(TokenError::NotYetValid);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            audiences: vec!["nes".into()],
            issued_at: 1_000,
            expires_at: 4_600,
            jti: "j-1".into(),
            namespace: "default".into(),
            service_account: Ref {
                name: "default".into(),
                uid: "sa-uid".into(),
            },
            bound: Some(Bound::Pod(Ref {
                name: "p0".into(),
                uid: "pod-uid".into(),
            })),
        }
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2 (short key) and 6 (key longer than a block).
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn signed_tokens_verify_and_carry_upstream_claims() {
        let token = sign(b"key", &claims());
        assert_eq!(token.split('.').count(), 3);
        assert_eq!(verify(b"key", &token, 2_000), Ok(claims()));
        let payload = token.split('.').nth(1).unwrap();
        let json: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(json["sub"], "system:serviceaccount:default:default");
        assert_eq!(json["iss"], ISSUER);
        assert_eq!(json["aud"], json!(["nes"]));
        assert_eq!(json["nbf"], 1_000);
        assert_eq!(json["kubernetes.io"]["pod"]["uid"], "pod-uid");
        assert_eq!(json["kubernetes.io"]["serviceaccount"]["name"], "default");
        let unbound = Claims {
            bound: None,
            ..claims()
        };
        assert_eq!(verify(b"key", &sign(b"key", &unbound), 2_000), Ok(unbound));
    }

    #[test]
    fn expiry_and_not_before_are_enforced() {
        let token = sign(b"key", &claims());
        assert_eq!(verify(b"key", &token, 4_600), Err(TokenError::Expired));
        assert_eq!(verify(b"key", &token, 999), Err(TokenError::NotYetValid));
    }

    #[test]
    fn tampering_and_other_keys_are_detected() {
        let token = sign(b"key", &claims());
        assert_eq!(
            verify(b"other", &token, 2_000),
            Err(TokenError::BadSignature)
        );
        // Re-encode the claims with another pod: the signature no longer matches.
        let mut forged = claims();
        forged.bound = Some(Bound::Pod(Ref {
            name: "p1".into(),
            uid: "x".into(),
        }));
        let forged_payload = sign(b"attacker", &forged);
        let parts: Vec<&str> = token.split('.').collect();
        let forged_parts: Vec<&str> = forged_payload.split('.').collect();
        let tampered = format!("{}.{}.{}", parts[0], forged_parts[1], parts[2]);
        assert_eq!(
            verify(b"key", &tampered, 2_000),
            Err(TokenError::BadSignature)
        );
        assert!(matches!(
            verify(b"key", "a.b", 2_000),
            Err(TokenError::Malformed(_))
        ));
        assert!(matches!(
            verify(b"key", "", 2_000),
            Err(TokenError::Malformed(_))
        ));
    }
}
