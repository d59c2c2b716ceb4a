//! Raw HTTP/1.1 over TCP. The abuse checks write request bytes no well-behaved client would (and
//! requests a client library would refuse to send), then read whatever comes back, nothing
//! included, so every read here has a deadline.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The most of a reply kept: a status line and headers, never a body worth reading.
const MAX_REPLY: usize = 64 * 1024;

/// The most of a metrics page read.
const MAX_PAGE: usize = 4 * 1024 * 1024;

/// How a reply ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// A whole response head arrived (the blank line after the headers).
    Head,
    /// Bytes that do not start like an HTTP/1 response, such as an HTTP/2 frame.
    NotHttp1,
    /// The server closed the connection.
    Closed,
    /// The connection failed, typically reset by the server.
    Failed(String),
    /// Nothing more before the deadline.
    TimedOut,
}

/// What the server sent back.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The bytes received, up to the end of the head.
    pub bytes: Vec<u8>,
    pub end: End,
}

impl Reply {
    /// The status code of an HTTP/1.x status line.
    pub fn status(&self) -> Option<u16> {
        let line = self.bytes.strip_prefix(b"HTTP/1.")?;
        let code = line.get(2..5)?;
        std::str::from_utf8(code).ok()?.parse().ok()
    }

    /// The value of header `name` (case-insensitive), if the head has it.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = String::from_utf8_lossy(&self.bytes);
        head.split("\r\n").skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }

    /// Whether the bytes are an HTTP/2 SETTINGS frame: a 9-byte frame header of type 4 on
    /// stream 0, which is what an HTTP/2 server sends first.
    pub fn is_http2_settings(&self) -> bool {
        self.bytes.len() >= 9 && self.bytes[3] == 0x04 && self.bytes[5..9] == [0, 0, 0, 0]
    }

    /// The status, or what happened instead, in a few words.
    pub fn describe(&self) -> String {
        if let Some(status) = self.status() {
            return status.to_string();
        }
        if self.is_http2_settings() {
            return "an HTTP/2 SETTINGS frame".into();
        }
        if !self.bytes.is_empty() {
            let shown: String = String::from_utf8_lossy(&self.bytes)
                .chars()
                .take(40)
                .collect();
            return format!("not an HTTP/1 answer: {shown:?}");
        }
        match &self.end {
            End::Closed => "closed without an answer".into(),
            End::Failed(err) => format!("no answer, connection failed: {err}"),
            End::TimedOut => "no answer before the deadline".into(),
            End::Head | End::NotHttp1 => "no answer".into(),
        }
    }
}

/// Connects to `addr` within `timeout`.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, String> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(err)) => Err(format!("connecting to {addr} failed: {err}")),
        Err(_) => Err(format!("connecting to {addr} timed out")),
    }
}

/// Sends `request` on a fresh connection and reads the reply head, all within `timeout`.
pub async fn exchange(
    addr: SocketAddr,
    request: &[u8],
    timeout: Duration,
) -> Result<Reply, String> {
    let deadline = Instant::now() + timeout;
    let mut stream = connect(addr, timeout).await?;
    // A server that closes early may refuse part of the request; the reply says how it ended.
    let _ = tokio::time::timeout_at(deadline, stream.write_all(request)).await;
    Ok(read_reply(&mut stream, deadline).await)
}

/// Reads until a response head is complete, the bytes cannot be HTTP/1, the connection ends, or
/// `deadline`.
pub async fn read_reply(stream: &mut (impl AsyncRead + Unpin), deadline: Instant) -> Reply {
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 4096];
    let end = loop {
        let read = match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => break End::TimedOut,
            Ok(Err(err)) => break End::Failed(err.to_string()),
            Ok(Ok(0)) => break End::Closed,
            Ok(Ok(read)) => read,
        };
        bytes.extend_from_slice(&buffer[..read]);
        if let Some(at) = find(&bytes, b"\r\n\r\n") {
            bytes.truncate(at + 4);
            break End::Head;
        }
        let prefix = bytes.len().min(5);
        if bytes[..prefix] != b"HTTP/"[..prefix] {
            break End::NotHttp1;
        }
        if bytes.len() >= MAX_REPLY {
            break End::Head;
        }
    };
    Reply { bytes, end }
}

/// Reads and discards until the connection ends (true) or `deadline` (false).
pub async fn closed_by(stream: &mut (impl AsyncRead + Unpin), deadline: Instant) -> bool {
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// `GET /health` as a client that does nothing wrong.
pub fn health_request(addr: SocketAddr) -> Vec<u8> {
    format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").into_bytes()
}

/// Whether `GET /health` answers 200 within `timeout`; the error says what happened instead.
pub async fn health(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let reply = exchange(addr, &health_request(addr), timeout).await?;
    match reply.status() {
        Some(200) => Ok(()),
        _ => Err(format!("GET /health: {}", reply.describe())),
    }
}

/// `websocket_messages_dropped_total` by reason, from the metrics page at `admin`.
pub async fn dropped_messages(
    admin: SocketAddr,
    timeout: Duration,
) -> Result<BTreeMap<String, u64>, String> {
    let page = tokio::time::timeout(timeout, async {
        let mut stream = connect(admin, timeout).await?;
        let request =
            format!("GET /metrics HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|err| format!("GET /metrics: {err}"))?;
        let mut page = Vec::new();
        (&mut stream)
            .take(MAX_PAGE as u64)
            .read_to_end(&mut page)
            .await
            .map_err(|err| format!("GET /metrics: {err}"))?;
        Ok::<_, String>(page)
    })
    .await
    .map_err(|_| "GET /metrics timed out".to_string())??;
    let page = String::from_utf8_lossy(&page);
    if !page.starts_with("HTTP/1.1 200") {
        let status = page.lines().next().unwrap_or("no answer");
        return Err(format!("GET /metrics: {status}"));
    }
    Ok(parse_dropped(&page))
}

/// The `websocket_messages_dropped_total{reason="…"} N` lines of a metrics page.
fn parse_dropped(page: &str) -> BTreeMap<String, u64> {
    page.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("websocket_messages_dropped_total{")?;
            let (labels, value) = rest.split_once("} ")?;
            let reason = labels
                .split(',')
                .find_map(|label| label.strip_prefix("reason=\""))?
                .trim_end_matches('"');
            let value = value.split_whitespace().next()?.parse::<f64>().ok()?;
            Some((reason.to_owned(), value as u64))
        })
        .collect()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(bytes: &[u8], end: End) -> Reply {
        Reply {
            bytes: bytes.to_vec(),
            end,
        }
    }

    #[test]
    fn status_and_headers_of_a_head() {
        let head = reply(
            b"HTTP/1.1 426 Upgrade Required\r\nsec-websocket-version: 13\r\n\r\n",
            End::Head,
        );
        assert_eq!(head.status(), Some(426));
        assert_eq!(head.header("Sec-WebSocket-Version").as_deref(), Some("13"));
        assert_eq!(head.header("Upgrade"), None);
        assert_eq!(head.describe(), "426");
    }

    #[test]
    fn an_http2_settings_frame_is_recognised() {
        // Length 18, type 4 (SETTINGS), no flags, stream 0.
        let frame = reply(&[0, 0, 18, 4, 0, 0, 0, 0, 0, 0, 3], End::NotHttp1);
        assert!(frame.is_http2_settings());
        assert_eq!(frame.status(), None);
        assert_eq!(frame.describe(), "an HTTP/2 SETTINGS frame");
        assert!(!reply(b"HTTP/1.1 400 Bad Request\r\n\r\n", End::Head).is_http2_settings());
    }

    #[test]
    fn nothing_says_how_it_ended() {
        assert_eq!(
            reply(b"", End::Closed).describe(),
            "closed without an answer"
        );
        assert_eq!(
            reply(b"", End::TimedOut).describe(),
            "no answer before the deadline"
        );
    }

    #[test]
    fn dropped_counters_by_reason() {
        let page = "# HELP websocket_messages_dropped Messages dropped.\n\
                    # TYPE websocket_messages_dropped counter\n\
                    websocket_messages_dropped_total{reason=\"rate_limited\"} 1234\n\
                    websocket_messages_dropped_total{reason=\"too_deep\"} 1\n\
                    websocket_messages_received_total 99\n";
        let dropped = parse_dropped(page);
        assert_eq!(dropped.get("rate_limited"), Some(&1234));
        assert_eq!(dropped.get("too_deep"), Some(&1));
        assert_eq!(dropped.len(), 2);
    }
}
