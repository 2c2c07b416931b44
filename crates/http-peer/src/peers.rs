//! The peers file format: the `hostports` key of the peering ConfigMap, mounted as a file.
//!
//! One target per line, `host,port`. Blank lines and `#` comments (whole-line or trailing) are
//! ignored, whitespace around the host and the port is trimmed. `host` is a DNS name
//! (RFC 1123), an IPv4 address or an IPv6 address (bare or in brackets).
//!
//! [`parse`] is a pure function that never fails as a whole: it returns the usable targets and
//! one [`LineError`] per bad line, so the server can skip a bad line and keep the rest, and the
//! operator can report the exact line in a condition.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// The most targets one file may list. Lines past it are reported and skipped, so the
/// server's per-target state and metric series stay bounded whatever the ConfigMap holds.
pub const MAX_TARGETS: usize = 1024;

/// How many characters of a bad line an error quotes, so one huge line does not make a huge
/// log line or condition message.
const QUOTE_MAX_CHARS: usize = 80;

/// One peer to ping: `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    /// DNS name or IP address, as written (IPv6 without brackets).
    pub host: String,
    /// TCP port, 1-65535.
    pub port: u16,
}

impl Target {
    /// Creates a target.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Target {
            host: host.into(),
            port,
        }
    }

    /// The URL of the target's `/ping` endpoint.
    pub fn ping_url(&self) -> String {
        format!("http://{self}/ping")
    }
}

/// `host:port`, with IPv6 addresses in brackets (`[::1]:8080`); also the metric label.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// What is wrong with one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineErrorKind {
    /// No comma between host and port.
    #[error("missing comma (expected host,port)")]
    MissingComma,
    /// Nothing before the comma.
    #[error("host is empty")]
    EmptyHost,
    /// The host is neither a DNS name nor an IP address.
    #[error("host {0:?} is not a valid DNS name or IP address")]
    BadHost(String),
    /// The port is not a number in 1-65535.
    #[error("port {0:?} is not a number 1-65535")]
    BadPort(String),
    /// The same target was listed on an earlier line.
    #[error("duplicate of line {0}")]
    Duplicate(usize),
    /// More than [`MAX_TARGETS`] targets are listed.
    #[error("more than {MAX_TARGETS} targets")]
    TooMany,
}

/// A bad line: its number (from 1), its content (trimmed, shortened) and what is wrong.
///
/// Displays as `line 3: "foo,x": port "x" is not a number 1-65535`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {content:?}: {kind}")]
pub struct LineError {
    /// Line number, counting from 1.
    pub line: usize,
    /// The line as written, trimmed and cut to 80 characters.
    pub content: String,
    /// What is wrong with it.
    pub kind: LineErrorKind,
}

/// The result of parsing a peers file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// The valid targets, in file order, without duplicates.
    pub targets: Vec<Target>,
    /// One error per bad line, in file order.
    pub errors: Vec<LineError>,
}

/// Parses a peers file. Never fails as a whole: bad lines become [`LineError`]s and are left
/// out of the targets.
pub fn parse(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    // Line of first appearance per target, for duplicate reports; bounded by MAX_TARGETS.
    let mut seen: std::collections::HashMap<Target, usize> = std::collections::HashMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        // `#` never occurs in a host or a port, so everything after it is a comment.
        let content = raw.split_once('#').map_or(raw, |(before, _)| before).trim();
        if content.is_empty() {
            continue;
        }
        let result = parse_line(content).and_then(|target| {
            if let Some(first) = seen.get(&target) {
                Err(LineErrorKind::Duplicate(*first))
            } else if parsed.targets.len() >= MAX_TARGETS {
                Err(LineErrorKind::TooMany)
            } else {
                Ok(target)
            }
        });
        match result {
            Ok(target) => {
                seen.insert(target.clone(), line);
                parsed.targets.push(target);
            }
            Err(kind) => parsed.errors.push(LineError {
                line,
                content: shorten(raw.trim()),
                kind,
            }),
        }
    }
    parsed
}

/// Parses one non-empty, comment-free, trimmed line.
fn parse_line(content: &str) -> Result<Target, LineErrorKind> {
    let (host, port) = content.split_once(',').ok_or(LineErrorKind::MissingComma)?;
    let (host, port) = (host.trim(), port.trim());
    if host.is_empty() {
        return Err(LineErrorKind::EmptyHost);
    }
    let port = parse_port(port).ok_or_else(|| LineErrorKind::BadPort(shorten(port)))?;
    let host = normalize_host(host).ok_or_else(|| LineErrorKind::BadHost(shorten(host)))?;
    Ok(Target { host, port })
}

/// A port 1-65535, digits only (no sign, no spaces inside).
fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok().filter(|port| *port != 0)
}

/// The host as it will be stored: IP addresses as written (IPv6 without brackets), DNS names
/// as written. `None` when it is neither.
fn normalize_host(host: &str) -> Option<String> {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().ok().map(|_| inner.to_owned());
    }
    if host.parse::<IpAddr>().is_ok() || is_dns_name(host) {
        return Some(host.to_owned());
    }
    None
}

/// RFC 1123 host name: dot-separated labels of letters, digits and hyphens, each 1-63
/// characters, not starting or ending with a hyphen; 253 characters at most; one trailing
/// dot (a fully qualified name) allowed.
fn is_dns_name(host: &str) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

/// Cuts text to [`QUOTE_MAX_CHARS`] characters (on a character boundary), marking the cut.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(QUOTE_MAX_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        parse(text).errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn parses_targets_skipping_blank_lines_and_comments() {
        let parsed = parse(
            "# peers\n\n  peer-0.peers.ns.svc.cluster.local , 8080  \n10.0.0.7,80 # a pod\r\n\t\n::1,9000\n[fe80::1],1\n",
        );
        assert_eq!(
            parsed.targets,
            vec![
                Target::new("peer-0.peers.ns.svc.cluster.local", 8080),
                Target::new("10.0.0.7", 80),
                Target::new("::1", 9000),
                Target::new("fe80::1", 1),
            ]
        );
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    }

    #[test]
    fn empty_input_is_no_targets_and_no_errors() {
        assert_eq!(parse(""), Parsed::default());
        assert_eq!(parse("\n# only a comment\n   \n"), Parsed::default());
    }

    #[test]
    fn bad_lines_are_reported_with_number_and_content_and_skipped() {
        let parsed = parse("a,1\nfoo,x\nb,2\n");
        assert_eq!(
            parsed.targets,
            vec![Target::new("a", 1), Target::new("b", 2)]
        );
        assert_eq!(
            parsed.errors,
            vec![LineError {
                line: 2,
                content: "foo,x".into(),
                kind: LineErrorKind::BadPort("x".into()),
            }]
        );
        assert_eq!(
            parsed.errors[0].to_string(),
            r#"line 2: "foo,x": port "x" is not a number 1-65535"#
        );
    }

    #[test]
    fn every_kind_of_bad_line() {
        assert_eq!(
            errors("foo\n,80\nfoo,0\nfoo,65536\nfoo,-1\nfoo,\nfoo,8 0\nfoo,80,90\n"),
            vec![
                r#"line 1: "foo": missing comma (expected host,port)"#,
                r#"line 2: ",80": host is empty"#,
                r#"line 3: "foo,0": port "0" is not a number 1-65535"#,
                r#"line 4: "foo,65536": port "65536" is not a number 1-65535"#,
                r#"line 5: "foo,-1": port "-1" is not a number 1-65535"#,
                r#"line 6: "foo,": port "" is not a number 1-65535"#,
                r#"line 7: "foo,8 0": port "8 0" is not a number 1-65535"#,
                r#"line 8: "foo,80,90": port "80,90" is not a number 1-65535"#,
            ]
        );
        assert_eq!(
            errors("foo_bar,80\n-a,80\na..b,80\n[10.0.0.1],80\nhttp://a,80\na b,80\n"),
            vec![
                r#"line 1: "foo_bar,80": host "foo_bar" is not a valid DNS name or IP address"#,
                r#"line 2: "-a,80": host "-a" is not a valid DNS name or IP address"#,
                r#"line 3: "a..b,80": host "a..b" is not a valid DNS name or IP address"#,
                r#"line 4: "[10.0.0.1],80": host "[10.0.0.1]" is not a valid DNS name or IP address"#,
                r#"line 5: "http://a,80": host "http://a" is not a valid DNS name or IP address"#,
                r#"line 6: "a b,80": host "a b" is not a valid DNS name or IP address"#,
            ]
        );
    }

    #[test]
    fn duplicates_are_reported_against_the_first_line() {
        let parsed = parse("a,1\nb,2\n a , 1\n");
        assert_eq!(
            parsed.targets,
            vec![Target::new("a", 1), Target::new("b", 2)]
        );
        assert_eq!(
            parsed.errors[0].to_string(),
            r#"line 3: "a , 1": duplicate of line 1"#
        );
    }

    #[test]
    fn targets_past_the_limit_are_reported() {
        let text: String = (1..=MAX_TARGETS + 2)
            .map(|port| format!("h,{port}\n"))
            .collect();
        let parsed = parse(&text);
        assert_eq!(parsed.targets.len(), MAX_TARGETS);
        assert_eq!(parsed.errors.len(), 2);
        assert_eq!(parsed.errors[0].line, MAX_TARGETS + 1);
        assert_eq!(parsed.errors[0].kind, LineErrorKind::TooMany);
    }

    #[test]
    fn long_and_non_ascii_lines_are_quoted_shortened_without_panicking() {
        let long = format!("{},80", "é".repeat(200));
        let parsed = parse(&long);
        assert!(parsed.targets.is_empty());
        let error = &parsed.errors[0];
        assert_eq!(error.content.chars().count(), QUOTE_MAX_CHARS + 3);
        assert!(error.content.ends_with("..."));
    }

    #[test]
    fn dns_names() {
        assert!(is_dns_name("a"));
        assert!(is_dns_name("peer-0.peers"));
        assert!(is_dns_name("example.com."));
        assert!(is_dns_name(&format!("{}.b", "a".repeat(63))));
        assert!(!is_dns_name(&format!("{}.b", "a".repeat(64))));
        assert!(is_dns_name(&"a.".repeat(127)));
        assert!(!is_dns_name(&"a.".repeat(128)));
        assert!(!is_dns_name("a-"));
        assert!(!is_dns_name("."));
        assert!(!is_dns_name(""));
    }

    #[test]
    fn display_and_url_bracket_ipv6() {
        assert_eq!(Target::new("a", 80).to_string(), "a:80");
        assert_eq!(Target::new("::1", 80).to_string(), "[::1]:80");
        assert_eq!(Target::new("::1", 80).ping_url(), "http://[::1]:80/ping");
    }
}
