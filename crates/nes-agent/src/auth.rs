//! Bearer-token authentication of write requests.
//!
//! The expected token lives in a file, normally a key of a mounted Kubernetes Secret. The kubelet
//! rotates such files in place (an atomic symlink swap), so the file is read again for every
//! write request instead of once at start: a rotated token takes effect on the next request
//! without restarting the agent. The file is tiny and writes are rare, so this costs nothing.
//!
//! The check fails closed: an unreadable or empty token file refuses every write, because
//! "no token configured" must never mean "anyone may write".
//!
//! Neither the expected token nor the presented credential ever appears in an error, a log line
//! or a `Debug` output.

use std::fmt;
use std::path::{Path, PathBuf};

use http::StatusCode;
use http::header::{AUTHORIZATION, HeaderMap};

/// Why a write request was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header (HTTP 401).
    #[error("the request has no Authorization header; send `Authorization: Bearer <token>`")]
    MissingCredentials,
    /// An `Authorization` header that is not a single well-formed bearer credential (HTTP 401).
    #[error("the Authorization header is not a bearer token: {0}")]
    MalformedCredentials(&'static str),
    /// A well-formed bearer token that is not the expected one (HTTP 403).
    #[error("the bearer token is not valid")]
    WrongToken,
    /// The token file cannot be read (HTTP 503): the agent refuses all writes until it can.
    #[error("the token file {} cannot be read: {source}", path.display())]
    TokenFileUnreadable {
        /// The token file.
        path: PathBuf,
        /// The I/O error (its message never holds file content).
        source: std::io::Error,
    },
    /// The token file holds nothing but whitespace (HTTP 503).
    #[error("the token file {} is empty", path.display())]
    TokenFileEmpty {
        /// The token file.
        path: PathBuf,
    },
}

impl AuthError {
    /// The HTTP status this refusal is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::MissingCredentials | AuthError::MalformedCredentials(_) => {
                StatusCode::UNAUTHORIZED
            }
            AuthError::WrongToken => StatusCode::FORBIDDEN,
            AuthError::TokenFileUnreadable { .. } | AuthError::TokenFileEmpty { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// The stable machine-readable code for the error body.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::MissingCredentials | AuthError::MalformedCredentials(_) => "unauthorized",
            AuthError::WrongToken => "forbidden",
            AuthError::TokenFileUnreadable { .. } | AuthError::TokenFileEmpty { .. } => {
                "unavailable"
            }
        }
    }

    /// Whether the answer must carry `WWW-Authenticate: Bearer` (RFC 6750: every 401 does).
    pub fn needs_challenge(&self) -> bool {
        self.status() == StatusCode::UNAUTHORIZED
    }
}

/// Checks bearer tokens against the token file at a path.
#[derive(Clone)]
pub struct TokenAuth {
    path: PathBuf,
}

impl fmt::Debug for TokenAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenAuth")
            .field("path", &self.path)
            .finish()
    }
}

impl TokenAuth {
    /// Authenticates against the token in the file at `path`. The file is not read here, so it
    /// may appear (or be fixed) after the agent starts.
    pub fn from_file(path: impl Into<PathBuf>) -> Self {
        TokenAuth { path: path.into() }
    }

    /// The token file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Admits the request if its `Authorization` header carries the token currently in the file.
    pub async fn authorize(&self, headers: &HeaderMap) -> Result<(), AuthError> {
        // Read the file first: if it is broken, the answer is 503 whatever the client sent, so
        // a client cannot tell a wrong token from a misconfigured agent by probing.
        let expected = self.read_token().await?;
        let presented = bearer_token(headers)?;
        if constant_time_eq(&expected, presented.as_bytes()) {
            Ok(())
        } else {
            Err(AuthError::WrongToken)
        }
    }

    async fn read_token(&self) -> Result<Vec<u8>, AuthError> {
        let content =
            tokio::fs::read(&self.path)
                .await
                .map_err(|source| AuthError::TokenFileUnreadable {
                    path: self.path.clone(),
                    source,
                })?;
        let token = content.trim_ascii();
        if token.is_empty() {
            return Err(AuthError::TokenFileEmpty {
                path: self.path.clone(),
            });
        }
        Ok(token.to_vec())
    }
}

/// The credential of the request's single `Authorization: Bearer <token>` header.
///
/// The scheme is case-insensitive (RFC 9110 §11.1); the token is RFC 6750's `b64token`, so it
/// holds no whitespace. Several `Authorization` headers are refused rather than picking one.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(AuthError::MissingCredentials)?;
    if values.next().is_some() {
        return Err(AuthError::MalformedCredentials(
            "more than one Authorization header",
        ));
    }
    let value = value.to_str().map_err(|_| {
        AuthError::MalformedCredentials("the header holds characters outside visible ASCII")
    })?;
    parse_bearer(value)
}

/// Parses an `Authorization` header value as `Bearer <token>`.
pub fn parse_bearer(value: &str) -> Result<&str, AuthError> {
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    let (scheme, token) = value
        .split_once([' ', '\t'])
        .ok_or(AuthError::MalformedCredentials("expected `Bearer <token>`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::MalformedCredentials("the scheme is not Bearer"));
    }
    let token = token.trim_start_matches([' ', '\t']);
    if token.is_empty() {
        return Err(AuthError::MalformedCredentials("the token is empty"));
    }
    if token.contains(|c: char| c.is_ascii_whitespace()) {
        return Err(AuthError::MalformedCredentials(
            "the token contains whitespace",
        ));
    }
    Ok(token)
}

/// Compares a secret with a presented value in time that depends only on the presented value's
/// length, so response timing reveals neither how many leading bytes matched nor the secret's
/// length. An empty secret matches nothing.
pub fn constant_time_eq(secret: &[u8], presented: &[u8]) -> bool {
    if secret.is_empty() {
        return false;
    }
    let mut diff = u8::from(secret.len() != presented.len());
    for (i, &byte) in presented.iter().enumerate() {
        // Wrapping around the secret keeps the loop the same for every presented byte whatever
        // the secret's length; a length mismatch is already recorded in `diff`.
        diff |= byte ^ secret[i % secret.len()];
    }
    // Keeps the optimizer from turning the loop into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn constant_time_eq_matches_only_equal_values() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3creT"));
        assert!(!constant_time_eq(b"s3cret", b"s3cre"));
        assert!(!constant_time_eq(b"s3cret", b"s3crets"));
        // A prefix repeated to the secret's length must not match through the wrap-around.
        assert!(!constant_time_eq(b"abab", b"ab"));
        assert!(!constant_time_eq(b"ab", b"abab"));
        assert!(!constant_time_eq(b"s3cret", b""));
        assert!(!constant_time_eq(b"", b""));
    }

    #[test]
    fn parse_bearer_accepts_any_scheme_case_and_extra_spaces() {
        assert_eq!(parse_bearer("Bearer abc.def").unwrap(), "abc.def");
        assert_eq!(parse_bearer("bearer abc").unwrap(), "abc");
        assert_eq!(parse_bearer("BEARER   abc  ").unwrap(), "abc");
    }

    #[test]
    fn parse_bearer_rejects_malformed_values() {
        for value in ["", "Bearer", "Bearer ", "Basic abc", "Bearer a b", "abc"] {
            let error = parse_bearer(value).unwrap_err();
            assert!(
                matches!(error, AuthError::MalformedCredentials(_)),
                "{value:?}: {error:?}"
            );
        }
    }

    #[test]
    fn bearer_token_needs_exactly_one_header() {
        assert!(matches!(
            bearer_token(&HeaderMap::new()),
            Err(AuthError::MissingCredentials)
        ));
        assert_eq!(bearer_token(&headers(&["Bearer t"])).unwrap(), "t");
        assert!(matches!(
            bearer_token(&headers(&["Bearer t", "Bearer t"])),
            Err(AuthError::MalformedCredentials(_))
        ));
    }

    #[test]
    fn statuses_and_challenge() {
        assert_eq!(AuthError::MissingCredentials.status(), 401);
        assert!(AuthError::MissingCredentials.needs_challenge());
        assert_eq!(AuthError::WrongToken.status(), 403);
        assert!(!AuthError::WrongToken.needs_challenge());
        let empty = AuthError::TokenFileEmpty { path: "/t".into() };
        assert_eq!(empty.status(), 503);
        assert_eq!(empty.to_string(), "the token file /t is empty");
    }

    #[tokio::test]
    async fn authorize_reads_the_file_per_request_and_fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let auth = TokenAuth::from_file(&path);
        let good = headers(&["Bearer first"]);

        let missing = auth.authorize(&good).await.unwrap_err();
        assert!(matches!(missing, AuthError::TokenFileUnreadable { .. }));
        assert!(missing.to_string().contains(&path.display().to_string()));

        std::fs::write(&path, " \n").unwrap();
        let empty = auth.authorize(&good).await.unwrap_err();
        assert!(matches!(empty, AuthError::TokenFileEmpty { .. }));

        std::fs::write(&path, "first\n").unwrap();
        auth.authorize(&good).await.unwrap();

        std::fs::write(&path, "second").unwrap();
        let wrong = auth.authorize(&good).await.unwrap_err();
        assert!(matches!(wrong, AuthError::WrongToken));
        assert!(!wrong.to_string().contains("first") && !wrong.to_string().contains("second"));
        auth.authorize(&headers(&["Bearer second"])).await.unwrap();
    }
}
