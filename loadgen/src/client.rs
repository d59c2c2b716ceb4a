//! Opening client connections the same way in every scenario: ws:// or wss://, small buffers (the
//! load generator holds as many sockets as the server), Nagle off, and the greeting read (on
//! `/wss`) or the subscription confirmed (on `/v1/ws`) before a connection counts as open.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::report::Errors;

/// An open client connection.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Bytes each client reads per call. tungstenite's default (128 KiB, allocated per connection)
/// would cost more than a gigabyte at 10,000 connections; frames larger than this still arrive.
const READ_BUFFER: usize = 8 * 1024;

/// Why a connection could not be opened.
#[derive(Debug)]
pub enum ConnectError {
    /// TCP, TLS, or the HTTP upgrade failed.
    Handshake(tungstenite::Error),
    /// The connection opened, but the first frame was not a text frame (or never came).
    NoGreeting(String),
    /// The connection opened, but its subscribe was not answered with `subscribed`.
    NotSubscribed(String),
    /// Nothing within the time limit.
    TimedOut,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Handshake(err) => write!(f, "connecting failed: {err}"),
            ConnectError::NoGreeting(what) => write!(f, "connected, but no greeting: {what}"),
            ConnectError::NotSubscribed(what) => write!(f, "connected, but not subscribed: {what}"),
            ConnectError::TimedOut => write!(f, "connecting timed out"),
        }
    }
}

/// Connects to `url` and waits for the greeting, the first frame of the service's `/wss`.
pub async fn connect(url: &str, timeout: Duration) -> Result<Socket, ConnectError> {
    connect_from(url, None, timeout).await
}

/// [`connect`] from the local address `source` (the system's choice if `None`).
pub async fn connect_from(
    url: &str,
    source: Option<IpAddr>,
    timeout: Duration,
) -> Result<Socket, ConnectError> {
    tokio::time::timeout(timeout, async {
        let mut socket = handshake(url, source).await?;
        match socket.next().await {
            Some(Ok(Message::Text(_))) => Ok(socket),
            Some(Ok(other)) => Err(ConnectError::NoGreeting(format!("{other:?}"))),
            Some(Err(err)) => Err(ConnectError::NoGreeting(err.to_string())),
            None => Err(ConnectError::NoGreeting("connection closed".into())),
        }
    })
    .await
    .unwrap_or(Err(ConnectError::TimedOut))
}

/// Connects to `url` without waiting for a greeting (`/echo` sends none).
pub async fn open(url: &str, timeout: Duration) -> Result<Socket, ConnectError> {
    tokio::time::timeout(timeout, handshake(url, None))
        .await
        .unwrap_or(Err(ConnectError::TimedOut))
}

/// Connects to a `/v1/ws` `url`, subscribes to `channel` and waits for `subscribed`, the moment
/// from which the server delivers everything published there.
pub async fn subscribe(
    url: &str,
    channel: &str,
    timeout: Duration,
) -> Result<Socket, ConnectError> {
    tokio::time::timeout(timeout, async {
        let mut socket = handshake(url, None).await?;
        let not_subscribed = ConnectError::NotSubscribed;
        let request = format!(r#"{{"type":"subscribe","channel":"{channel}"}}"#);
        socket
            .send(Message::text(request))
            .await
            .map_err(|err| not_subscribed(err.to_string()))?;
        let expected = format!(r#"{{"type":"subscribed","channel":"{channel}"}}"#);
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) if text.as_str() == expected => return Ok(socket),
                // Nothing else comes before `subscribed` from a /v1/ws endpoint: an error reply, or
                // /wss's greeting (the wrong URL), says why.
                Some(Ok(Message::Text(text))) => {
                    return Err(not_subscribed(format!(
                        "got {text} (is this a /v1/ws URL?)"
                    )));
                }
                Some(Ok(Message::Close(close))) => {
                    return Err(not_subscribed(format!("closed by the server: {close:?}")));
                }
                Some(Ok(_)) => continue,
                Some(Err(err)) => return Err(not_subscribed(err.to_string())),
                None => return Err(not_subscribed("connection closed".into())),
            }
        }
    })
    .await
    .unwrap_or(Err(ConnectError::TimedOut))
}

async fn handshake(url: &str, source: Option<IpAddr>) -> Result<Socket, ConnectError> {
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let Some(source) = source else {
        let (socket, _) =
            tokio_tungstenite::connect_async_tls_with_config(url, Some(config), true, None)
                .await
                .map_err(ConnectError::Handshake)?;
        return Ok(socket);
    };
    let request = url.into_client_request().map_err(ConnectError::Handshake)?;
    let stream = tcp_from(&request, source)
        .await
        .map_err(|err| ConnectError::Handshake(tungstenite::Error::Io(err)))?;
    let (socket, _) =
        tokio_tungstenite::client_async_tls_with_config(request, stream, Some(config), None)
            .await
            .map_err(ConnectError::Handshake)?;
    Ok(socket)
}

/// A TCP connection to the request's host from `source`, Nagle off (as `connect_async` does).
async fn tcp_from(
    request: &tungstenite::handshake::client::Request,
    source: IpAddr,
) -> std::io::Result<TcpStream> {
    let uri = request.uri();
    let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("wss") {
            443
        } else {
            80
        });
    let target = tokio::net::lookup_host((host, port))
        .await?
        .find(|addr| addr.is_ipv4() == source.is_ipv4())
        .ok_or_else(|| {
            std::io::Error::other(format!("{host} has no address of {source}'s family"))
        })?;
    let socket = if source.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = socket.connect(target).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Opens `count` connections, `concurrency` at a time, spreading them over `urls` in turn.
/// Returns them in order (connection `i` went to `urls[i % urls.len()]`), failures included.
pub async fn connect_many(
    urls: &[String],
    count: u32,
    concurrency: u32,
    timeout: Duration,
) -> Vec<Result<Socket, ConnectError>> {
    connect_many_from(urls, &[], count, concurrency, timeout).await
}

/// [`connect_many`] from the local addresses `sources` in turn (the system's choice if empty).
pub async fn connect_many_from(
    urls: &[String],
    sources: &[IpAddr],
    count: u32,
    concurrency: u32,
    timeout: Duration,
) -> Vec<Result<Socket, ConnectError>> {
    open_many(count, concurrency, |i| {
        let source = (!sources.is_empty()).then(|| sources[i % sources.len()]);
        connect_from(&urls[i % urls.len()], source, timeout)
    })
    .await
}

/// Runs `open(i)` for every `i` below `count`, `concurrency` at a time; the results in order.
pub async fn open_many<T, F, Fut>(
    count: u32,
    concurrency: u32,
    open: F,
) -> Vec<Result<T, ConnectError>>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<T, ConnectError>>,
{
    futures_util::stream::iter(0..count as usize)
        .map(open)
        .buffered(concurrency as usize)
        .collect()
        .await
}

/// The connections among `results` that failed to open.
pub fn failures<T>(results: &[Result<T, ConnectError>]) -> Errors {
    let mut errors = Errors::default();
    for err in results.iter().filter_map(|result| result.as_ref().err()) {
        errors.add(|| err.to_string());
    }
    errors
}
