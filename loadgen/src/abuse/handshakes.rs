//! Bad handshakes: upgrade requests that break RFC 6455 section 4.2.1, written byte for byte since
//! no WebSocket client library sends them. A server that accepts a malformed key or an HTTP/1.0
//! upgrade is lenient in ways a proxy in front of it may not be, and a server that answers an
//! HTTP/2 preface in HTTP/2 on a port meant for HTTP/1.1 exposes a second protocol nobody tests.
//! A well-formed upgrade runs first, as a control: without it, a server that refused everything
//! would pass.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use super::{Check, Figures as AnyFigures, Server, http};
use crate::cli::AbuseCheck;

/// How long each case may take to be answered.
const TIMEOUT: Duration = Duration::from_secs(5);
/// A valid key: the base64 of 16 bytes (the example of RFC 6455, section 1.3).
const GOOD_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// What a case expects.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Status(u16),
    /// 426 and `Sec-WebSocket-Version: 13`, naming the version the server speaks.
    UpgradeRequired,
    /// Anything but HTTP/2: an HTTP/1.1 error status, or a close.
    NotHttp2,
}

impl Expect {
    fn describe(self) -> String {
        match self {
            Expect::Status(status) => status.to_string(),
            Expect::UpgradeRequired => "426 with Sec-WebSocket-Version: 13".into(),
            Expect::NotHttp2 => "an HTTP/1.1 4xx/5xx or a close, not HTTP/2".into(),
        }
    }

    fn met_by(self, reply: &http::Reply) -> bool {
        match self {
            Expect::Status(status) => reply.status() == Some(status),
            Expect::UpgradeRequired => {
                reply.status() == Some(426)
                    && reply.header("Sec-WebSocket-Version").as_deref() == Some("13")
            }
            Expect::NotHttp2 => match reply.status() {
                Some(status) => (400..600).contains(&status),
                None => {
                    reply.bytes.is_empty()
                        && matches!(reply.end, http::End::Closed | http::End::Failed(_))
                }
            },
        }
    }
}

/// One case's outcome.
#[derive(Debug, Serialize)]
pub struct Case {
    case: &'static str,
    expected: String,
    got: String,
    passed: bool,
}

/// What the handshakes check measured.
#[derive(Debug, Serialize)]
pub struct Figures {
    cases: Vec<Case>,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for case in &self.cases {
            writeln!(
                f,
                "  {}: expected {}, got {}{}",
                case.case,
                case.expected,
                case.got,
                if case.passed { "" } else { "  <- MISSED" }
            )?;
        }
        Ok(())
    }
}

/// An upgrade request to `/wss`, with the parts a case changes.
fn upgrade(version: &str, host: Option<SocketAddr>, key: &str, ws_version: &str) -> Vec<u8> {
    let host = host.map_or_else(String::new, |host| format!("Host: {host}\r\n"));
    format!(
        "GET /wss HTTP/{version}\r\n{host}Upgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {ws_version}\r\n\r\n"
    )
    .into_bytes()
}

/// The cases: a name, the request bytes, and what must come back.
fn cases(addr: SocketAddr) -> Vec<(&'static str, Vec<u8>, Expect)> {
    let host = Some(addr);
    vec![
        (
            "valid upgrade (control)",
            upgrade("1.1", host, GOOD_KEY, "13"),
            Expect::Status(101),
        ),
        (
            "Sec-WebSocket-Key: abc",
            upgrade("1.1", host, "abc", "13"),
            Expect::Status(400),
        ),
        (
            "Sec-WebSocket-Key of 11 bytes in valid base64",
            upgrade("1.1", host, "bm90IHNpeHRlZW4=", "13"),
            Expect::Status(400),
        ),
        (
            "HTTP/1.0 upgrade",
            upgrade("1.0", host, GOOD_KEY, "13"),
            Expect::Status(400),
        ),
        (
            "upgrade without Host",
            upgrade("1.1", None, GOOD_KEY, "13"),
            Expect::Status(400),
        ),
        (
            "Sec-WebSocket-Version: 8",
            upgrade("1.1", host, GOOD_KEY, "8"),
            Expect::UpgradeRequired,
        ),
        (
            "HTTP/2 prior-knowledge preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            Expect::NotHttp2,
        ),
    ]
}

/// Runs the check.
pub async fn run(server: &Server) -> Check {
    let mut results = Vec::new();
    for (case, request, expect) in cases(server.addr) {
        let (got, passed) = match http::exchange(server.addr, &request, TIMEOUT).await {
            Ok(reply) => (describe(&reply, expect), expect.met_by(&reply)),
            Err(err) => (err, false),
        };
        results.push(Case {
            case,
            expected: expect.describe(),
            got,
            passed,
        });
    }
    let missed: Vec<&str> = results
        .iter()
        .filter(|case| !case.passed)
        .map(|case| case.case)
        .collect();
    let misses = if missed.is_empty() {
        Vec::new()
    } else {
        vec![format!(
            "{} of {} cases answered otherwise: {}",
            missed.len(),
            results.len(),
            missed.join("; ")
        )]
    };
    let target = format!(
        "{} handshake cases each answered as RFC 6455 4.2.1 says",
        results.len()
    );
    Check::new(
        AbuseCheck::Handshakes,
        target,
        AnyFigures::Handshakes(Figures { cases: results }),
        misses,
    )
}

/// The reply in a few words, with the header that a 426 must carry.
fn describe(reply: &http::Reply, expect: Expect) -> String {
    let status = reply.describe();
    match (expect, reply.status()) {
        (Expect::UpgradeRequired, Some(_)) => match reply.header("Sec-WebSocket-Version") {
            Some(version) => format!("{status} with Sec-WebSocket-Version: {version}"),
            None => format!("{status} without Sec-WebSocket-Version"),
        },
        _ => status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(bytes: &[u8], end: http::End) -> http::Reply {
        http::Reply {
            bytes: bytes.to_vec(),
            end,
        }
    }

    #[test]
    fn a_426_must_name_version_13() {
        let with = reply(
            b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n\r\n",
            http::End::Head,
        );
        let without = reply(b"HTTP/1.1 426 Upgrade Required\r\n\r\n", http::End::Head);
        assert!(Expect::UpgradeRequired.met_by(&with));
        assert!(!Expect::UpgradeRequired.met_by(&without));
        assert_eq!(
            describe(&without, Expect::UpgradeRequired),
            "426 without Sec-WebSocket-Version"
        );
    }

    #[test]
    fn an_http2_preface_may_be_refused_or_closed_but_not_answered_in_http2() {
        let refused = reply(b"HTTP/1.1 400 Bad Request\r\n\r\n", http::End::Head);
        let closed = reply(b"", http::End::Closed);
        let settings = reply(&[0, 0, 18, 4, 0, 0, 0, 0, 0], http::End::NotHttp1);
        let silent = reply(b"", http::End::TimedOut);
        assert!(Expect::NotHttp2.met_by(&refused));
        assert!(Expect::NotHttp2.met_by(&closed));
        assert!(!Expect::NotHttp2.met_by(&settings));
        assert!(!Expect::NotHttp2.met_by(&silent));
    }

    #[test]
    fn requests_differ_only_where_the_case_says() {
        let addr = "127.0.0.1:1".parse().unwrap();
        let cases = cases(addr);
        let control = String::from_utf8(cases[0].1.clone()).unwrap();
        assert!(control.starts_with("GET /wss HTTP/1.1\r\nHost: 127.0.0.1:1\r\n"));
        assert!(control.ends_with("Sec-WebSocket-Version: 13\r\n\r\n"));
        let no_host = String::from_utf8(cases[4].1.clone()).unwrap();
        assert!(!no_host.contains("Host:"));
    }
}
