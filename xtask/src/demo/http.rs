//! A minimal HTTP/1.0 GET for the local endpoints the demo checks (operators' `/readyz`,
//! peer servers' `/ping` and `/peers`): one request per connection, read to the end, so no
//! HTTP client library is pulled into xtask for four plain GETs on 127.0.0.1.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Answers are small; anything bigger is cut here.
const MAX_BYTES: u64 = 1024 * 1024;

/// `GET path` on `addr` with the `Accept` header; the status code and body, or `None` when
/// nothing accepts connections there (yet).
pub async fn get(
    addr: SocketAddr,
    path: &str,
    accept: &str,
) -> anyhow::Result<Option<(u16, String)>> {
    let exchange = async {
        let mut stream = match TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("connecting to {addr}")),
        };
        let request = format!(
            "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.take(MAX_BYTES).read_to_end(&mut raw).await?;
        parse_response(&raw).map(Some)
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .with_context(|| format!("GET http://{addr}{path} took over {TIMEOUT:?}"))?
        .with_context(|| format!("GET http://{addr}{path}"))
}

/// Splits a raw HTTP/1.x response into its status code and body (no chunked encoding: an
/// HTTP/1.0 request is never answered with it).
pub fn parse_response(raw: &[u8]) -> anyhow::Result<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("incomplete HTTP response ({} bytes)", raw.len());
    };
    let status_line = head.lines().next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or_default();
    let code = parts.next().and_then(|c| c.parse::<u16>().ok());
    match code {
        Some(code) if version.starts_with("HTTP/1.") => Ok((code, body.to_owned())),
        _ => bail!("not an HTTP status line: {status_line:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_splits_into_status_and_body() {
        let raw = b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\npong";
        assert_eq!(parse_response(raw).unwrap(), (200, "pong".to_owned()));
        let raw = b"HTTP/1.1 503 Service Unavailable\r\n\r\n";
        assert_eq!(parse_response(raw).unwrap(), (503, String::new()));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse_response(b"").is_err());
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 abc\r\n\r\n").is_err());
    }
}
