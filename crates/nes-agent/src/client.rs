//! The Rust client of the agent's HTTP API ([`crate::api`]).

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use nes_api::{ApiError, ApplyResponse, DesiredConfig, Status};
use reqwest::{RequestBuilder, Response, StatusCode, header};
use serde::de::DeserializeOwned;

use crate::api::ErrorBody;

/// The default timeout of every call except [`AgentClient::watch`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest watch line accepted. A status is a few KiB; the cap keeps a broken or hostile
/// server from growing the line buffer without bound.
pub const MAX_WATCH_LINE_BYTES: usize = 16 * 1024 * 1024;

/// How much of an error body that is not an [`ErrorBody`] is kept.
const MAX_ERROR_TEXT: usize = 512;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The request could not be sent or its answer not received (connection, timeout, ...).
    #[error("request to the agent failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The agent answered with an error status. `errors` is the decoded [`ErrorBody`]; when the
    /// body had another shape (e.g. from a proxy) it holds one error with code `unknown` and the
    /// start of the body as message.
    #[error("the agent answered {status}: {}", summarize(.errors))]
    Api {
        /// The HTTP status code.
        status: u16,
        /// The errors from the body.
        errors: Vec<ApiError>,
    },
    /// A success answer that is not the expected JSON.
    #[error("cannot decode the agent's answer: {0}")]
    Decode(#[from] serde_json::Error),
    /// A watch line longer than [`MAX_WATCH_LINE_BYTES`].
    #[error("a watch line exceeds {MAX_WATCH_LINE_BYTES} bytes")]
    LineTooLong,
}

fn summarize(errors: &[ApiError]) -> String {
    errors
        .iter()
        .map(|e| e.message.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

/// A client of one agent.
#[derive(Clone)]
pub struct AgentClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    timeout: Duration,
}

// Hand-written so the token never reaches a log through `{:?}`.
impl fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentClient")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl AgentClient {
    /// A client of the agent at `base` (e.g. `http://10.0.0.5:7470`), sending `token` as bearer
    /// token on writes, with its own connection pool.
    pub fn new(base: impl Into<String>, token: Option<String>) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder().build()?;
        Ok(Self::with_client(http, base, token))
    }

    /// Like [`AgentClient::new`] over an existing `reqwest::Client`, to share its pool. A
    /// timeout configured on that client applies to watches too, so leave it unset there.
    pub fn with_client(
        http: reqwest::Client,
        base: impl Into<String>,
        token: Option<String>,
    ) -> Self {
        let base = base.into().trim_end_matches('/').to_owned();
        AgentClient {
            http,
            base,
            token,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Sets the timeout of every call except [`AgentClient::watch`] (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends `config`; the agent answers after one apply pass over it.
    pub async fn apply(&self, config: &DesiredConfig) -> Result<ApplyResponse, ClientError> {
        let mut request = self
            .request(reqwest::Method::PUT, "/v1/config")
            .json(config);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        decode(checked(request.send().await?).await?).await
    }

    /// The agent's desired configuration, `None` before the first accepted one.
    pub async fn config(&self) -> Result<Option<DesiredConfig>, ClientError> {
        let response = self
            .request(reqwest::Method::GET, "/v1/config")
            .send()
            .await?;
        match checked(response).await {
            Ok(response) => decode(response).await.map(Some),
            Err(ClientError::Api {
                status: 404,
                errors,
            }) if errors.first().is_some_and(|e| e.code == "notFound") => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The agent's current status.
    pub async fn status(&self) -> Result<Status, ClientError> {
        let request = self.request(reqwest::Method::GET, "/v1/status");
        decode(checked(request.send().await?).await?).await
    }

    /// Whether the agent reports itself healthy (`/healthz` 200, not 503).
    pub async fn healthy(&self) -> Result<bool, ClientError> {
        let response = self
            .request(reqwest::Method::GET, "/healthz")
            .send()
            .await?;
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            return Ok(false);
        }
        checked(response).await.map(|_| true)
    }

    /// The agent's status now and after every change. The stream has no timeout; it ends when
    /// the agent shuts down, and yields an error (then ends) if the connection breaks.
    pub async fn watch(
        &self,
    ) -> Result<impl Stream<Item = Result<Status, ClientError>> + Send + 'static, ClientError> {
        let response = self
            .http
            .get(self.url("/v1/status/watch"))
            .header(header::ACCEPT, "application/x-ndjson")
            .send()
            .await?;
        let response = checked(response).await?;
        Ok(ndjson_stream(response.bytes_stream()))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn request(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, self.url(path))
            .timeout(self.timeout)
    }
}

/// Passes a success answer through and turns an error answer into [`ClientError::Api`].
async fn checked(response: Response) -> Result<Response, ClientError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.bytes().await?;
    Err(ClientError::Api {
        status: status.as_u16(),
        errors: error_list(&body),
    })
}

/// The errors of an error body: the [`ErrorBody`] if it is one, else a short excerpt.
fn error_list(body: &[u8]) -> Vec<ApiError> {
    if let Ok(decoded) = serde_json::from_slice::<ErrorBody>(body) {
        return decoded.errors;
    }
    let text = String::from_utf8_lossy(body);
    let excerpt: String = text.trim().chars().take(MAX_ERROR_TEXT).collect();
    vec![ApiError {
        code: "unknown".to_owned(),
        message: excerpt,
        field: None,
    }]
}

async fn decode<T: DeserializeOwned>(response: Response) -> Result<T, ClientError> {
    let body = response.bytes().await?;
    Ok(serde_json::from_slice(&body)?)
}

/// Splits a byte stream into lines; a line may arrive in any number of chunks.
#[derive(Debug, Default)]
struct LineBuffer {
    partial: BytesMut,
}

impl LineBuffer {
    /// Appends `chunk` and returns the lines it completed, without their `\n`.
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<Bytes>, ClientError> {
        self.partial.extend_from_slice(chunk);
        let mut lines = Vec::new();
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line = self.partial.split_to(end).freeze();
            self.partial.advance(1);
            lines.push(line);
        }
        if self.partial.len() > MAX_WATCH_LINE_BYTES {
            return Err(ClientError::LineTooLong);
        }
        Ok(lines)
    }

    /// What is left when the stream ends: a last line without `\n`, if any.
    fn finish(&mut self) -> Option<Bytes> {
        let rest = self.partial.split().freeze();
        (!rest.trim_ascii().is_empty()).then_some(rest)
    }
}

/// Decodes one line; blank lines (keep-alives) are skipped.
fn decode_line(line: &[u8]) -> Option<Result<Status, ClientError>> {
    let line = line.trim_ascii();
    if line.is_empty() {
        return None;
    }
    Some(serde_json::from_slice(line).map_err(ClientError::from))
}

struct Lines<S> {
    chunks: S,
    buffer: LineBuffer,
    ready: VecDeque<Result<Status, ClientError>>,
    done: bool,
}

/// Turns an NDJSON byte stream into statuses. After the first error the stream ends, since
/// what follows a broken connection or line cannot be trusted.
fn ndjson_stream<S>(chunks: S) -> impl Stream<Item = Result<Status, ClientError>> + Send + 'static
where
    S: Stream<Item = Result<Bytes, reqwest::Error>> + Send + Unpin + 'static,
{
    let state = Lines {
        chunks,
        buffer: LineBuffer::default(),
        ready: VecDeque::new(),
        done: false,
    };
    futures::stream::unfold(state, |mut state| async move {
        let item = next_status(&mut state).await?;
        if item.is_err() {
            state.done = true;
            state.ready.clear();
        }
        Some((item, state))
    })
}

async fn next_status<S>(state: &mut Lines<S>) -> Option<Result<Status, ClientError>>
where
    S: Stream<Item = Result<Bytes, reqwest::Error>> + Unpin,
{
    loop {
        if let Some(item) = state.ready.pop_front() {
            return Some(item);
        }
        if state.done {
            return None;
        }
        match state.chunks.next().await {
            Some(Ok(chunk)) => match state.buffer.push(&chunk) {
                Ok(lines) => state
                    .ready
                    .extend(lines.iter().filter_map(|l| decode_line(l))),
                Err(error) => return Some(Err(error)),
            },
            Some(Err(error)) => return Some(Err(error.into())),
            None => {
                state.done = true;
                let rest = state.buffer.finish();
                state.ready.extend(rest.and_then(|l| decode_line(&l)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nes_api::BootId;

    fn status(generation: u64) -> Status {
        Status {
            boot_id: BootId::from_u128(1),
            generation: Some(generation),
            links: vec![],
            addresses: vec![],
            routes: vec![],
            results: vec![],
        }
    }

    #[test]
    fn line_buffer_joins_lines_split_across_chunks() {
        let mut buffer = LineBuffer::default();
        assert!(buffer.push(b"{\"a\":").unwrap().is_empty());
        let lines = buffer.push(b"1}\n{\"b\"").unwrap();
        assert_eq!(lines, vec![Bytes::from_static(b"{\"a\":1}")]);
        let lines = buffer.push(b":2}\n\n{\"c\":3}\n").unwrap();
        assert_eq!(
            lines,
            vec![
                Bytes::from_static(b"{\"b\":2}"),
                Bytes::new(),
                Bytes::from_static(b"{\"c\":3}")
            ]
        );
        assert_eq!(buffer.finish(), None);
        buffer.push(b"tail").unwrap();
        assert_eq!(buffer.finish(), Some(Bytes::from_static(b"tail")));
    }

    #[test]
    fn line_buffer_caps_line_length() {
        let mut buffer = LineBuffer::default();
        let chunk = vec![b'x'; MAX_WATCH_LINE_BYTES + 1];
        assert!(matches!(buffer.push(&chunk), Err(ClientError::LineTooLong)));
    }

    #[tokio::test]
    async fn ndjson_stream_decodes_lines_in_any_chunking() {
        let text = format!(
            "{}\n\n{}\n",
            serde_json::to_string(&status(1)).unwrap(),
            serde_json::to_string(&status(2)).unwrap()
        );
        // One byte per chunk is the worst case for reassembly.
        let chunks: Vec<Result<Bytes, reqwest::Error>> = text
            .bytes()
            .map(|b| Ok(Bytes::copy_from_slice(&[b])))
            .collect();
        let statuses: Vec<_> = ndjson_stream(futures::stream::iter(chunks))
            .map(|s| s.unwrap().generation)
            .collect()
            .await;
        assert_eq!(statuses, vec![Some(1), Some(2)]);
    }

    #[tokio::test]
    async fn ndjson_stream_ends_after_a_bad_line() {
        let chunks: Vec<Result<Bytes, reqwest::Error>> =
            vec![Ok(Bytes::from_static(b"not json\n{}\n"))];
        let items: Vec<_> = ndjson_stream(futures::stream::iter(chunks)).collect().await;
        assert_eq!(items.len(), 1);
        assert!(matches!(items[0], Err(ClientError::Decode(_))));
    }

    #[test]
    fn error_list_decodes_the_error_body_or_keeps_an_excerpt() {
        let body = br#"{"errors":[{"code":"conflict","message":"late"}]}"#;
        assert_eq!(error_list(body)[0].code, "conflict");
        let long = "x".repeat(2 * MAX_ERROR_TEXT);
        let errors = error_list(format!("  {long}\n").as_bytes());
        assert_eq!(errors[0].code, "unknown");
        assert_eq!(errors[0].message.len(), MAX_ERROR_TEXT);
    }

    #[test]
    fn debug_redacts_the_token() {
        let client =
            AgentClient::with_client(reqwest::Client::new(), "http://h:1/", Some("s3cret".into()));
        let debug = format!("{client:?}");
        assert!(
            !debug.contains("s3cret") && debug.contains("http://h:1\""),
            "{debug}"
        );
    }
}
