//! One WebSocket connection, from upgrade to close.
//!
//! Reading and writing run side by side in the connection's task: the reader turns client frames
//! into broadcasts (or echoes), the writer drains the connection's queue in batches (everything
//! queued, then one flush), keeps the heartbeat, and watches for the three things that end a
//! connection from the server's side: the drain, eviction as a slow consumer, and a silent peer.
//! Whichever side finishes first decides the `CloseReason`, which picks the close code, the
//! metric label and the log line.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use serde_json::value::RawValue;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Sleep, sleep};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::{debug, info};

use crate::backplane::Fanout;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::shutdown::Shutdown;

/// The first frame on `/wss`, as the replaced server sent it.
pub const GREETING: &str = r#"{"connection":"ok"}"#;

/// How long a close handshake the server starts (other than on drain) may take before the socket
/// is simply dropped: a peer that misbehaved gets no more patience than that.
const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Frames' worth of batch buffer a connection keeps between batches.
const KEEP_BATCH_CAPACITY: usize = 64;

/// An upgraded WebSocket connection.
pub type WebSocket = WebSocketStream<TokioIo<Upgraded>>;

/// What a connection does with the messages its client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/wss`: greet, then broadcast every JSON message to every client as `{"message": …}`.
    Broadcast,
    /// `/echo`: send every data frame back unchanged (conformance runs and latency probes).
    Echo,
}

impl Route {
    fn label(self) -> &'static str {
        match self {
            Route::Broadcast => "wss",
            Route::Echo => "echo",
        }
    }
}

/// Why a connection ended. Also the `reason` label of `websocket_connections_closed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client started the close handshake.
    ClientClosed,
    /// The TCP connection ended or failed without a close handshake.
    ConnectionLost,
    /// The client fell a whole queue behind, or did not accept bytes for the pong timeout.
    SlowConsumer,
    /// The client answered nothing for the pong timeout after a ping.
    PingTimeout,
    /// A frame or message over the configured limit.
    MessageTooBig,
    /// A frame that breaks RFC 6455.
    ProtocolError,
    /// A text frame that is not UTF-8.
    InvalidUtf8,
    /// The process is draining.
    ServerShutdown,
}

impl CloseReason {
    /// The metric label and log field.
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "client_closed",
            CloseReason::ConnectionLost => "connection_lost",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::PingTimeout => "ping_timeout",
            CloseReason::MessageTooBig => "message_too_big",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::InvalidUtf8 => "invalid_utf8",
            CloseReason::ServerShutdown => "server_shutdown",
        }
    }

    /// The close code the server sends, if it starts the close handshake (RFC 6455, 7.4.1).
    fn close_code(self) -> Option<u16> {
        match self {
            CloseReason::ServerShutdown => Some(1001),
            CloseReason::ProtocolError => Some(1002),
            CloseReason::InvalidUtf8 => Some(1007),
            CloseReason::MessageTooBig => Some(1009),
            CloseReason::SlowConsumer => Some(1013),
            CloseReason::ClientClosed | CloseReason::ConnectionLost | CloseReason::PingTimeout => {
                None
            }
        }
    }

    fn from_read_error(err: &tungstenite::Error) -> CloseReason {
        match err {
            tungstenite::Error::Capacity(_) => CloseReason::MessageTooBig,
            tungstenite::Error::Protocol(_) => CloseReason::ProtocolError,
            tungstenite::Error::Utf8(_) => CloseReason::InvalidUtf8,
            _ => CloseReason::ConnectionLost,
        }
    }
}

/// Heartbeat timing.
#[derive(Debug, Clone, Copy)]
pub struct Heartbeat {
    /// Time between pings.
    pub ping_interval: Duration,
    /// Time a client has to answer a ping, or to take bytes the server is writing.
    pub pong_timeout: Duration,
}

/// Everything a connection needs from the rest of the server; one, shared by all of them.
#[derive(Debug)]
pub struct Connection {
    /// The local broadcast hub `/wss` clients join.
    pub hub: Arc<Hub>,
    /// Where `/wss` messages are broadcast: the local hub, or Redis to every task's hub.
    pub fanout: Fanout,
    /// Process-wide counters.
    pub metrics: Arc<Metrics>,
    /// Heartbeat timing.
    pub heartbeat: Heartbeat,
    /// Outbox capacity of an `/echo` connection (`/wss` outboxes belong to the hub).
    pub queue_size: usize,
    /// The drain signal.
    pub shutdown: Shutdown,
    /// Limits and buffer sizes of every WebSocket.
    pub websocket: WebSocketConfig,
}

/// Per-connection figures for the close log line, shared by the reader and the writer.
#[derive(Debug)]
struct Activity {
    opened: Instant,
    last_heard_ms: AtomicU64,
    received: AtomicU64,
    sent: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            opened: Instant::now(),
            last_heard_ms: AtomicU64::new(0),
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
        }
    }

    fn heard(&self) {
        let elapsed = self.opened.elapsed().as_millis() as u64;
        self.last_heard_ms.store(elapsed, Ordering::Relaxed);
    }

    fn heard_since(&self, moment: Instant) -> bool {
        let moment_ms = moment.duration_since(self.opened).as_millis() as u64;
        self.last_heard_ms.load(Ordering::Relaxed) >= moment_ms
    }
}

impl Connection {
    /// The task of an accepted upgrade: completes it, serves the WebSocket until it closes, and
    /// holds `permit` until then. `client` is the address to log.
    ///
    /// The task is allocated at the size of its largest state for as long as the connection lasts,
    /// which makes it most of an idle connection's memory. So the whole life is one future that
    /// holds nothing large across an await, the states only some moments need (writing a batch,
    /// the close handshake, a Redis publish) are boxed, and it is an async block rather than an
    /// async fn, which would keep a second copy of every argument it uses after an await.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn keeps a second copy of its arguments"
    )]
    pub fn serve(
        self: Arc<Self>,
        upgrade: OnUpgrade,
        route: Route,
        client: String,
        permit: OwnedSemaphorePermit,
    ) -> impl Future<Output = ()> + Send + 'static {
        async move {
            let Ok(upgraded) = upgrade.await else {
                return;
            };
            let socket = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(self.websocket),
            )
            .await;
            let (sink, mut stream) = socket.split();
            // The opened-connections count doubles as a process-unique connection id.
            let id = self.metrics.connections_opened.inc() + 1;
            self.metrics.connections.inc();
            info!(conn = id, client = %client, route = route.label(), "connection opened");

            let activity = Activity::new();
            // `/wss` clients join before the greeting, so that everything broadcast after the
            // greeting reaches them; `/echo` clients have an outbox of their own.
            let membership = (route == Route::Broadcast).then(|| self.hub.join());
            let outbox = match &membership {
                Some(membership) => Arc::clone(&membership.outbox),
                None => Arc::new(Outbox::new(self.queue_size)),
            };
            let inbound = match route {
                Route::Broadcast => Inbound::Broadcast(&self.fanout),
                Route::Echo => Inbound::Echo(&outbox),
            };
            let mut writer = Writer {
                sink,
                shutdown: self.shutdown.clone(),
                outbox: &outbox,
                heartbeat: HeartbeatTimer::new(&self.heartbeat),
                activity: &activity,
                metrics: &self.metrics,
            };
            let reason = if route == Route::Broadcast
                && writer.sink.send(Message::text(GREETING)).await.is_err()
            {
                CloseReason::ConnectionLost
            } else {
                let reason = tokio::select! {
                    reason = read_frames(&mut stream, inbound, &self.metrics, &activity) => reason,
                    reason = writer.run() => reason,
                };
                // Boxed: only a closing connection needs this state.
                Box::pin(close(writer.sink, stream, reason, writer.shutdown)).await;
                reason
            };

            self.metrics.connections.dec();
            self.metrics.connection_closed(reason.label());
            info!(
                conn = id,
                client = %client,
                route = route.label(),
                reason = reason.label(),
                duration_ms = activity.opened.elapsed().as_millis() as u64,
                received = activity.received.load(Ordering::Relaxed),
                sent = activity.sent.load(Ordering::Relaxed),
                "connection closed"
            );
            drop(permit);
        }
    }
}

/// Where the reader sends a client's data frames.
enum Inbound<'a> {
    Broadcast(&'a Fanout),
    /// Back to the same client, through its own outbox.
    Echo(&'a Outbox),
}

/// What the reader does after a client's frame.
enum Next<'a> {
    /// Reads on.
    Read,
    /// Broadcasts this envelope, then reads on.
    Broadcast(&'a Fanout, Message),
    /// Stops: the connection is over.
    Stop(CloseReason),
}

async fn read_frames(
    stream: &mut SplitStream<WebSocket>,
    inbound: Inbound<'_>,
    metrics: &Metrics,
    activity: &Activity,
) -> CloseReason {
    loop {
        let Some(frame) = stream.next().await else {
            return CloseReason::ConnectionLost;
        };
        activity.heard();
        // Decided by a plain function, so that a broadcast that waits holds only the envelope.
        let (fanout, envelope) = match receive(frame, &inbound, metrics, activity) {
            Next::Read => continue,
            Next::Broadcast(fanout, envelope) => (fanout, envelope),
            Next::Stop(reason) => return reason,
        };
        fanout.broadcast(envelope).await;
    }
}

fn receive<'a>(
    frame: Result<Message, tungstenite::Error>,
    inbound: &Inbound<'a>,
    metrics: &Metrics,
    activity: &Activity,
) -> Next<'a> {
    let message = match frame {
        Ok(message) => message,
        Err(err) => {
            debug!(error = %err, "read failed");
            return Next::Stop(CloseReason::from_read_error(&err));
        }
    };
    if message.is_close() {
        return Next::Stop(CloseReason::ClientClosed);
    }
    // Pings are answered by the WebSocket layer; pongs only count as signs of life.
    if !(message.is_text() || message.is_binary()) {
        return Next::Read;
    }
    activity.received.fetch_add(1, Ordering::Relaxed);
    metrics.messages_received.inc();
    metrics
        .bytes_received
        .inc_by(payload(&message).len() as u64);
    match *inbound {
        Inbound::Broadcast(fanout) => match envelope(payload(&message)) {
            Some(frame) => {
                metrics.messages_broadcast.inc();
                Next::Broadcast(fanout, frame)
            }
            None => {
                metrics.messages_dropped("invalid_json", 1);
                Next::Read
            }
        },
        Inbound::Echo(outbox) => match outbox.push(message) {
            Ok(()) => Next::Read,
            Err(_) => Next::Stop(CloseReason::SlowConsumer),
        },
    }
}

/// The payload of a data frame (empty for control frames).
pub fn payload(message: &Message) -> &[u8] {
    match message {
        Message::Text(text) => text.as_bytes(),
        Message::Binary(bytes) => bytes,
        _ => &[],
    }
}

/// Wraps a client's JSON in the broadcast envelope `{"message":<json>}`, serialized once.
///
/// Text and binary frames are treated alike, as the replaced Node server did (it parsed whatever
/// bytes arrived). The JSON is validated, then forwarded as the client wrote it rather than
/// re-encoded: the value is the same, the sender's key order is kept, and no tree is built.
/// Returns `None` for anything that is not one JSON value in UTF-8.
pub fn envelope(payload: &[u8]) -> Option<Message> {
    let text = std::str::from_utf8(payload).ok()?;
    let value: &RawValue = serde_json::from_str(text).ok()?;
    let json = value.get();
    let mut framed = String::with_capacity(json.len() + 12);
    framed.push_str(r#"{"message":"#);
    framed.push_str(json);
    framed.push('}');
    Some(Message::text(framed))
}

/// The writing half and the events that can interrupt it.
struct Writer<'a> {
    sink: SplitSink<WebSocket, Message>,
    shutdown: Shutdown,
    outbox: &'a Outbox,
    heartbeat: HeartbeatTimer<'a>,
    activity: &'a Activity,
    metrics: &'a Metrics,
}

impl Writer<'_> {
    async fn run(&mut self) -> CloseReason {
        let mut batch = VecDeque::new();
        loop {
            tokio::select! {
                biased;
                _ = self.shutdown.draining() => return CloseReason::ServerShutdown,
                _ = self.heartbeat.timer.as_mut() => match self.heartbeat.beat(self.activity) {
                    Beat::Dead => return CloseReason::PingTimeout,
                    Beat::Alive => continue,
                    Beat::Ping => batch.push_back(Message::Ping(bytes::Bytes::new())),
                },
                taken = self.outbox.take_all(&mut batch) => {
                    if taken.is_err() {
                        return CloseReason::SlowConsumer;
                    }
                }
            }
            // Boxed: a batch in flight needs far more state than an idle connection, and every
            // connection's task is allocated at its largest state's size.
            if let Err(reason) = Box::pin(self.write(&mut batch)).await {
                return reason;
            }
            // A burst may have grown the batch; an idle connection should not keep that memory.
            if batch.capacity() > KEEP_BATCH_CAPACITY {
                batch = VecDeque::new();
            }
        }
    }

    /// Writes the whole batch, then flushes once; gives up as soon as the drain starts, the client
    /// is evicted, or the client stays silent past the pong timeout while the write is stuck.
    async fn write(&mut self, batch: &mut VecDeque<Message>) -> Result<(), CloseReason> {
        let written = write_batch(&mut self.sink, batch);
        tokio::pin!(written);
        loop {
            tokio::select! {
                biased;
                written = &mut written => {
                    let (frames, bytes) = written.map_err(|_| CloseReason::ConnectionLost)?;
                    self.activity.sent.fetch_add(frames, Ordering::Relaxed);
                    self.metrics.messages_delivered.inc_by(frames);
                    self.metrics.bytes_sent.inc_by(bytes);
                    return Ok(());
                }
                _ = self.shutdown.draining() => return Err(CloseReason::ServerShutdown),
                _ = self.outbox.evicted() => return Err(CloseReason::SlowConsumer),
                // No ping can go out while the socket is stuck; the timer still runs, so a client that
                // neither reads nor says anything for the pong timeout is let go.
                _ = self.heartbeat.timer.as_mut() => {
                    if let Beat::Dead = self.heartbeat.beat(self.activity) {
                        return Err(CloseReason::SlowConsumer);
                    }
                }
            }
        }
    }
}

/// Feeds every frame of `batch` (emptying it), then flushes once. Returns the data frames and
/// payload bytes written (pings are not counted).
async fn write_batch(
    sink: &mut SplitSink<WebSocket, Message>,
    batch: &mut VecDeque<Message>,
) -> Result<(u64, u64), tungstenite::Error> {
    let mut frames = 0;
    let mut bytes = 0;
    while let Some(frame) = batch.pop_front() {
        if frame.is_text() || frame.is_binary() {
            frames += 1;
            bytes += payload(&frame).len() as u64;
        }
        sink.feed(frame).await?;
    }
    sink.flush().await?;
    Ok((frames, bytes))
}

/// What the heartbeat timer decided when it fired.
enum Beat {
    /// Send a ping now.
    Ping,
    /// The client answered in time; nothing to send yet.
    Alive,
    /// No sign of life since the last ping, for the whole pong timeout.
    Dead,
}

/// One timer for both the next ping and the pong deadline, so an idle connection holds one timer.
struct HeartbeatTimer<'a> {
    settings: &'a Heartbeat,
    timer: std::pin::Pin<Box<Sleep>>,
    ping_sent: Option<Instant>,
}

impl<'a> HeartbeatTimer<'a> {
    fn new(settings: &'a Heartbeat) -> Self {
        HeartbeatTimer {
            settings,
            timer: Box::pin(sleep(settings.ping_interval)),
            ping_sent: None,
        }
    }

    /// Called when the timer fires; re-arms it.
    fn beat(&mut self, activity: &Activity) -> Beat {
        let now = tokio::time::Instant::now();
        match self.ping_sent {
            Some(sent) if !activity.heard_since(sent) => Beat::Dead,
            Some(sent) => {
                self.ping_sent = None;
                let next_ping = tokio::time::Instant::from_std(sent) + self.settings.ping_interval;
                self.timer.as_mut().reset(next_ping.max(now));
                Beat::Alive
            }
            None => {
                self.ping_sent = Some(now.into_std());
                self.timer.as_mut().reset(now + self.settings.pong_timeout);
                Beat::Ping
            }
        }
    }
}

/// Ends the connection politely where that makes sense: the server's close frame and the client's
/// reply for server-side reasons, the reply to the client's close frame, or nothing for a peer
/// that is gone or silent. During a drain the wait lasts until the drain ends; otherwise up to
/// `CLOSE_HANDSHAKE_TIMEOUT`.
async fn close(
    mut sink: SplitSink<WebSocket, Message>,
    mut stream: SplitStream<WebSocket>,
    reason: CloseReason,
    mut shutdown: Shutdown,
) {
    let handshake = async {
        match reason.close_code() {
            // After our close frame, wait for the client's (the stream ends after it).
            Some(code) if sink.send(close_frame(code, reason.label())).await.is_ok() => {
                while let Some(Ok(_)) = stream.next().await {}
            }
            // Sends the reply the WebSocket layer queued when the client's close frame arrived.
            None if reason == CloseReason::ClientClosed => {
                let _ = sink.close().await;
            }
            _ => {}
        }
    };
    tokio::select! {
        _ = handshake => {}
        _ = shutdown.terminating() => {}
        _ = sleep(CLOSE_HANDSHAKE_TIMEOUT), if reason != CloseReason::ServerShutdown => {}
    }
}

fn close_frame(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code: code.into(),
        reason: reason.into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(message: Message) -> String {
        message.into_text().unwrap().to_string()
    }

    #[test]
    fn envelope_wraps_json_as_written() {
        assert_eq!(
            text(envelope(br#" {"b":1,"a":[true]} "#).unwrap()),
            r#"{"message":{"b":1,"a":[true]}}"#
        );
        assert_eq!(text(envelope(b"42").unwrap()), r#"{"message":42}"#);
        assert_eq!(text(envelope(br#""hi""#).unwrap()), r#"{"message":"hi"}"#);
    }

    #[test]
    fn envelope_refuses_what_is_not_one_json_value() {
        for payload in [
            &b"hello"[..],
            b"{",
            b"1 2",
            b"",
            b"\xff\xfe",
            br#"{"a":1}x"#,
        ] {
            assert!(envelope(payload).is_none(), "{payload:?}");
        }
    }

    #[test]
    fn every_server_side_reason_has_a_close_code() {
        assert_eq!(CloseReason::ServerShutdown.close_code(), Some(1001));
        assert_eq!(CloseReason::MessageTooBig.close_code(), Some(1009));
        assert_eq!(CloseReason::SlowConsumer.close_code(), Some(1013));
        assert_eq!(CloseReason::PingTimeout.close_code(), None);
    }
}
