//! The lean baseline of `make bench`: the `/wss` broadcast contract written by hand directly on
//! tokio and tokio-tungstenite, with no framework (no warp, no hyper).
//!
//! It shows what a careful hand-written server achieves on the same machine, so that our
//! framework-based server is held to it: the same wire contract (greeting, `{"message":<json>}`
//! broadcast to every client, invalid JSON dropped), the same modest per-connection buffers, one
//! serialization per broadcast shared by every recipient, and drain-then-flush writes. It leaves
//! out everything that is not on the hot path: no `/echo`, `/health` or demo page, no heartbeat,
//! no connection limit, no slow-consumer eviction, no drain, no metrics, no logging.
//!
//! Configuration: `HOST` (default `127.0.0.1`) and `PORT` (default `8080`).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::value::RawValue;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::{WebSocketStream, accept_hdr_async_with_config};

/// The first frame every `/wss` client gets.
const GREETING: &str = r#"{"connection":"ok"}"#;

/// Pending connections the kernel may queue, enough for a reconnect storm.
const LISTEN_BACKLOG: u32 = 4096;

/// Largest message (and frame) a client may send.
const MAX_MESSAGE: usize = 64 * 1024;

/// Every connected client's queue, by connection id. Broadcasting holds the lock while queueing,
/// so every client sees the broadcasts in the same order.
type Registry = Arc<Mutex<HashMap<u64, UnboundedSender<Message>>>>;

/// The writing half of a connection.
type Sink = SplitSink<WebSocketStream<TcpStream>, Message>;

#[tokio::main]
async fn main() -> ExitCode {
    let addr = match address() {
        Ok(addr) => addr,
        Err(err) => {
            eprintln!("lean-reference: {err}");
            return ExitCode::from(2);
        }
    };
    let listener = match bind(addr) {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("lean-reference: cannot listen on {addr}: {err}");
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(bound) => println!("listening on {bound}"),
        Err(err) => {
            eprintln!("lean-reference: {err}");
            return ExitCode::FAILURE;
        }
    }

    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(terminate) => terminate,
        Err(err) => {
            eprintln!("lean-reference: cannot watch SIGTERM: {err}");
            return ExitCode::FAILURE;
        }
    };
    tokio::select! {
        _ = accept_loop(listener) => {}
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    ExitCode::SUCCESS
}

/// The address to listen on, from `HOST` and `PORT`; the error names the bad variable.
fn address() -> Result<SocketAddr, String> {
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    let ip: IpAddr = host
        .parse()
        .map_err(|_| format!("HOST must be an IP address, not {host:?}"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("PORT must be a port number (0-65535), not {port:?}"))?;
    Ok(SocketAddr::new(ip, port))
}

/// Binds a listener with a backlog of `LISTEN_BACKLOG`.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Accepts connections forever, one task each.
async fn accept_loop(listener: TcpListener) {
    let registry = Registry::default();
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(16 * 1024)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let mut next_id = 0u64;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                next_id += 1;
                tokio::spawn(serve(stream, next_id, Arc::clone(&registry), config));
            }
            Err(err) => {
                // Typically out of file descriptors: say so, and give connections time to close.
                eprintln!("lean-reference: accept failed: {err}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// Serves one TCP connection: the handshake on `/wss`, then its reader here and its writer in a
/// task of its own, until the client closes or the connection fails.
async fn serve(stream: TcpStream, id: u64, registry: Registry, config: WebSocketConfig) {
    // Broadcast frames are small and latency matters: do not let Nagle hold them back.
    let _ = stream.set_nodelay(true);
    let Ok(socket) = accept_hdr_async_with_config(stream, only_wss, Some(config)).await else {
        return;
    };
    let (sink, mut stream) = socket.split();
    let (queue, outbox) = mpsc::unbounded_channel();
    // Greeting queued before joining, so it is the first frame and every later broadcast follows.
    let _ = queue.send(Message::text(GREETING));
    lock(&registry).insert(id, queue);
    let writer = tokio::spawn(write_loop(sink, outbox));

    while let Some(Ok(message)) = stream.next().await {
        let payload: &[u8] = match &message {
            Message::Text(text) => text.as_bytes(),
            Message::Binary(bytes) => bytes,
            Message::Close(_) => break,
            // Pings are answered by tungstenite; pongs and raw frames need nothing.
            _ => continue,
        };
        if let Some(frame) = envelope(payload) {
            for client in lock(&registry).values() {
                let _ = client.send(frame.clone());
            }
        }
    }

    // Dropping the queue ends the writer once it has written what is left.
    lock(&registry).remove(&id);
    let _ = writer.await;
}

/// The handshake callback: only `/wss` is upgraded, anything else gets 404.
#[expect(
    clippy::result_large_err,
    reason = "tungstenite's handshake Callback fixes this signature"
)]
fn only_wss(request: &Request, response: Response) -> Result<Response, ErrorResponse> {
    if request.uri().path() == "/wss" {
        Ok(response)
    } else {
        let mut not_found = ErrorResponse::new(None);
        *not_found.status_mut() = StatusCode::NOT_FOUND;
        Err(not_found)
    }
}

/// Wraps one JSON value as the client wrote it into `{"message":<json>}`, built once: the frame's
/// bytes are reference counted, so every recipient's clone shares them. `None` for anything that
/// is not one JSON value in UTF-8.
fn envelope(payload: &[u8]) -> Option<Message> {
    let text = std::str::from_utf8(payload).ok()?;
    let json = serde_json::from_str::<&RawValue>(text).ok()?.get();
    let mut framed = String::with_capacity(json.len() + 12);
    framed.push_str(r#"{"message":"#);
    framed.push_str(json);
    framed.push('}');
    Some(Message::Text(Utf8Bytes::from(framed)))
}

/// Writes a connection's queue: waits for one frame, feeds it and everything already queued,
/// then flushes once (one write per batch, not per frame). Ends when the queue is dropped or the
/// connection fails, closing the socket politely if it can.
async fn write_loop(mut sink: Sink, mut outbox: UnboundedReceiver<Message>) {
    while let Some(first) = outbox.recv().await {
        if sink.feed(first).await.is_err() {
            return;
        }
        while let Ok(next) = outbox.try_recv() {
            if sink.feed(next).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
    let _ = sink.close().await;
}

/// Locks the registry; a panic elsewhere does not stop the broadcast.
fn lock(registry: &Registry) -> std::sync::MutexGuard<'_, HashMap<u64, UnboundedSender<Message>>> {
    registry
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
