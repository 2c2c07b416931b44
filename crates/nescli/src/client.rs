//! Calls to nes-cliserver, and what their failures mean for the exit code.

use std::fmt;
use std::time::Duration;

use futures::{Stream, StreamExt};
use nes_api::ApiError;
use nes_api::cli::{ErrorBody, pod_path};
use reqwest::{Method, StatusCode};

/// The longest status line accepted from a watch.
const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// Why a command failed; [`Failure::exit_code`] is the process's exit code.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Bad flags, input files or environment: 2.
    #[error("{0}")]
    Usage(String),
    /// The server refused the request: 1.
    #[error("the server answered {status}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// Its messages.
        errors: Vec<ApiError>,
    },
    /// The token is missing, unreadable or refused (401, 403): 3.
    #[error("not allowed ({status})")]
    Auth {
        /// The HTTP status (0 when the token could not be read).
        status: u16,
        /// Its messages.
        errors: Vec<ApiError>,
    },
    /// The server cannot be reached or its answer is broken: 3.
    #[error("cannot reach nes-cliserver: {0}")]
    Unreachable(String),
}

impl Failure {
    /// 1 for refused requests, 2 for usage errors, 3 for connection and auth problems.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Api { .. } => 1,
            Failure::Usage(_) => 2,
            Failure::Auth { .. } | Failure::Unreachable(_) => 3,
        }
    }

    /// The lines to print on stderr: one per server message, with its field.
    pub fn lines(&self) -> Vec<String> {
        match self {
            Failure::Api { errors, .. } | Failure::Auth { errors, .. } if !errors.is_empty() => {
                errors.iter().map(error_line).collect()
            }
            other => vec![format!("error: {other}")],
        }
    }
}

/// `error: FIELD: MESSAGE [code]`, without repeating a field the message starts with.
pub fn error_line(error: &ApiError) -> String {
    match &error.field {
        Some(field) if !error.message.starts_with(field.as_str()) => {
            format!("error: {field}: {} [{}]", error.message, error.code)
        }
        _ => format!("error: {} [{}]", error.message, error.code),
    }
}

/// A client of the server acting for one pod.
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    timeout: Duration,
}

// Hand-written so the token never reaches output through `{:?}`.
impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl Client {
    /// A client of `server` for pod `namespace/pod`.
    pub fn new(
        server: &str,
        namespace: &str,
        pod: &str,
        token: String,
        timeout: Duration,
    ) -> Result<Self, Failure> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Failure::Unreachable(e.to_string()))?;
        Ok(Client {
            http,
            base: format!(
                "{}{}",
                server.trim_end_matches('/'),
                pod_path(namespace, pod)
            ),
            token,
            timeout,
        })
    }

    fn request(&self, method: Method, route: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}/{route}", self.base))
            .bearer_auth(&self.token)
    }

    /// Sends a request and returns the body of a success answer as text (empty for 204).
    pub async fn call(
        &self,
        method: Method,
        route: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<String, Failure> {
        let mut request = self.request(method, route).timeout(self.timeout);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(unreachable)?;
        let response = check(response).await?;
        response.text().await.map_err(unreachable)
    }

    /// The lines of `status/watch`, each one status as JSON text.
    pub async fn watch(
        &self,
    ) -> Result<impl Stream<Item = Result<String, Failure>> + use<>, Failure> {
        let response = self
            .request(Method::GET, "status/watch")
            .send()
            .await
            .map_err(unreachable)?;
        let response = check(response).await?;
        let chunks = response.bytes_stream();
        Ok(futures::stream::unfold(
            (chunks, Vec::<u8>::new(), false),
            |(mut chunks, mut buffer, done)| async move {
                if done {
                    return None;
                }
                loop {
                    if let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = buffer.drain(..=end).collect();
                        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                        return Some((Ok(text), (chunks, buffer, false)));
                    }
                    if buffer.len() > MAX_LINE_BYTES {
                        let error = Failure::Unreachable("a status line is too long".into());
                        return Some((Err(error), (chunks, buffer, true)));
                    }
                    match chunks.next().await {
                        Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                        Some(Err(e)) => return Some((Err(unreachable(e)), (chunks, buffer, true))),
                        None => return None,
                    }
                }
            },
        ))
    }
}

fn unreachable(error: reqwest::Error) -> Failure {
    // reqwest's Display omits the cause ("error sending request"); the chain says why.
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    Failure::Unreachable(message)
}

/// Turns an error answer into a [`Failure`] with the server's messages.
async fn check(response: reqwest::Response) -> Result<reqwest::Response, Failure> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let text = response.text().await.unwrap_or_default();
    let errors = match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => body.errors,
        Err(_) => vec![ApiError {
            code: "unknown".into(),
            message: format!(
                "HTTP {status}: {}",
                text.chars().take(300).collect::<String>()
            ),
            field: None,
        }],
    };
    let code = status.as_u16();
    Err(
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            Failure::Auth {
                status: code,
                errors,
            }
        } else {
            Failure::Api {
                status: code,
                errors,
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(field: Option<&str>, message: &str) -> ApiError {
        ApiError {
            code: "invalidCidr".into(),
            message: message.into(),
            field: field.map(str::to_owned),
        }
    }

    #[test]
    fn exit_codes() {
        let api = Failure::Api {
            status: 422,
            errors: vec![],
        };
        let auth = Failure::Auth {
            status: 403,
            errors: vec![],
        };
        assert_eq!(api.exit_code(), 1);
        assert_eq!(Failure::Usage("x".into()).exit_code(), 2);
        assert_eq!(auth.exit_code(), 3);
        assert_eq!(Failure::Unreachable("x".into()).exit_code(), 3);
    }

    #[test]
    fn error_lines_name_the_field_once() {
        let failure = Failure::Api {
            status: 422,
            errors: vec![
                api_error(Some("add.addresses[0].cidr"), "add.addresses[0].cidr: bad"),
                api_error(Some("callback.url"), "must be http"),
                api_error(None, "plain"),
            ],
        };
        assert_eq!(
            failure.lines(),
            [
                "error: add.addresses[0].cidr: bad [invalidCidr]",
                "error: callback.url: must be http [invalidCidr]",
                "error: plain [invalidCidr]",
            ]
        );
        assert_eq!(
            Failure::Unreachable("refused".into()).lines(),
            ["error: cannot reach nes-cliserver: refused"]
        );
    }
}
