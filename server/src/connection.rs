//! One WebSocket connection, from upgrade to close.
//!
//! Reading and writing run side by side in the connection's task: the reader holds each client
//! message to the connection's rate limits and turns it into a broadcast (or an echo), the writer drains the connection's queue in batches (everything
//! queued, then one flush), keeps the heartbeat, and watches for the three things that end a
//! connection from the server's side: the drain, eviction as a slow consumer, and a silent peer.
//! Whichever side finishes first decides the `CloseReason`, which picks the close code, the
//! metric label and the log line.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::Either;
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
use crate::limits::{self, FrameMetered, OverRateLimit, RateLimiter, RateLimits, Verdict};
use crate::metrics::Metrics;
use crate::outbox::{Outbox, QueueLimits};
use crate::shutdown::Shutdown;

/// The first frame on `/wss`, as the replaced server sent it.
pub const GREETING: &str = r#"{"connection":"ok"}"#;

/// How long a close handshake the server starts (other than on drain) may take before the socket
/// is simply dropped: a peer that misbehaved gets no more patience than that.
const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a client closed for flooding keeps its socket after the server's close frame, unread:
/// time for the frame (and what was queued before it) to reach the client, while TCP flow control
/// holds the flood back at no cost to the server. Reading on for the close reply would mean parsing
/// the flood; dropping at once would reset the connection and discard the close frame unsent.
const FLOODER_LINGER: Duration = Duration::from_secs(1);

/// Frames' worth of batch buffer a connection keeps between batches.
const KEEP_BATCH_CAPACITY: usize = 64;

/// An upgraded WebSocket connection.
pub type WebSocket = WebSocketStream<FrameMetered<TokioIo<Upgraded>>>;

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
    /// The TCP connection ended or failed without a close handshake (RFC 6455's 1006).
    Abnormal,
    /// The client fell a whole queue behind, or did not accept bytes for the pong timeout.
    SlowConsumer,
    /// The client answered nothing for the pong timeout after a ping.
    PongTimeout,
    /// A frame or message over the configured limit.
    MessageTooBig,
    /// The client stayed over its message or byte rate limit for `limits::OVER_LIMIT_GRACE`.
    RateLimited,
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
            CloseReason::Abnormal => "abnormal",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::PongTimeout => "pong_timeout",
            CloseReason::MessageTooBig => "message_too_big",
            CloseReason::RateLimited => "rate_limited",
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
            CloseReason::RateLimited => Some(1008),
            CloseReason::MessageTooBig => Some(1009),
            CloseReason::SlowConsumer => Some(1013),
            CloseReason::ClientClosed | CloseReason::Abnormal | CloseReason::PongTimeout => None,
        }
    }

    /// The close frame's reason text: what the client did, in words a developer reading a
    /// browser's close event understands.
    fn close_text(self) -> &'static str {
        match self {
            CloseReason::RateLimited => "rate limit exceeded for 5 s",
            CloseReason::MessageTooBig => "message too big",
            CloseReason::SlowConsumer => "too slow reading messages",
            CloseReason::ServerShutdown => "server shutting down",
            CloseReason::ProtocolError => "protocol error",
            CloseReason::InvalidUtf8 => "invalid UTF-8",
            other => other.label(),
        }
    }

    fn from_read_error(err: &tungstenite::Error) -> CloseReason {
        use tungstenite::error::ProtocolError::ResetWithoutClosingHandshake;
        match err {
            tungstenite::Error::Capacity(_) => CloseReason::MessageTooBig,
            // What tungstenite reports when the TCP stream ends with no close frame.
            tungstenite::Error::Protocol(ResetWithoutClosingHandshake) => CloseReason::Abnormal,
            tungstenite::Error::Protocol(_) => CloseReason::ProtocolError,
            tungstenite::Error::Utf8(_) => CloseReason::InvalidUtf8,
            tungstenite::Error::Io(err) if OverRateLimit::is(err) => CloseReason::RateLimited,
            _ => CloseReason::Abnormal,
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
    /// What a client may send.
    pub rate_limits: RateLimits,
    /// Outbox limits of an `/echo` connection (`/wss` outboxes belong to the hub).
    pub queue_limits: QueueLimits,
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
                FrameMetered::new(TokioIo::new(upgraded), self.rate_limits),
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
                None => Arc::new(Outbox::with_backpressure()),
            };
            let mut writer = Writer {
                sink,
                shutdown: self.shutdown.clone(),
                outbox: &outbox,
                heartbeat: HeartbeatTimer::new(&self.heartbeat),
                ping_owed: false,
                activity: &activity,
                metrics: &self.metrics,
            };
            let reason = if route == Route::Broadcast
                && writer.sink.send(Message::text(GREETING)).await.is_err()
            {
                CloseReason::Abnormal
            } else {
                // Built in place: a named local would keep its own slot in the task beside the
                // copy `run` holds.
                let reason = tokio::select! {
                    reason = Reader {
                        connection: &self,
                        activity: &activity,
                        echo: (route == Route::Echo).then_some(&*outbox),
                    }.run(&mut stream) => reason,
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
#[derive(Clone, Copy)]
enum Inbound<'a> {
    Broadcast(&'a Fanout),
    /// Back to the same client, through its own outbox and within these limits.
    Echo(&'a Outbox, &'a QueueLimits),
}

impl<'a> Inbound<'a> {
    /// Hands `message` over at once where it can; the future completes once it is taken, and
    /// holds only what waiting needs: a broadcast waits only for a full Redis publish queue, an
    /// echo for room in its own outbox (backpressure on a client that does not read).
    fn deliver(self, message: Message) -> impl Future<Output = ()> + Send + 'a {
        match self {
            Inbound::Broadcast(fanout) => Either::Left(fanout.broadcast(message)),
            Inbound::Echo(outbox, limits) => {
                // Boxed: only a client that does not read its echoes ever waits here.
                let waiting = outbox
                    .try_push(message, limits)
                    .err()
                    .map(|message| Box::pin(outbox.push_when_room(message, limits)));
                Either::Right(async move {
                    if let Some(waiting) = waiting {
                        waiting.await;
                    }
                })
            }
        }
    }
}

/// What the reader does after a client's frame.
enum Next<'a> {
    /// Reads on.
    Read,
    /// Hands this message (a broadcast envelope, or an echo) over, then reads on.
    Deliver(Inbound<'a>, Message),
    /// Stops: the connection is over.
    Stop(CloseReason),
}

/// The reading half's context: where messages go and what limits them.
struct Reader<'a> {
    connection: &'a Connection,
    activity: &'a Activity,
    /// The connection's own outbox on `/echo`; `None` on `/wss`, which broadcasts.
    echo: Option<&'a Outbox>,
}

impl<'a> Reader<'a> {
    async fn run(self, stream: &mut SplitStream<WebSocket>) -> CloseReason {
        let mut limiter = RateLimiter::new(&self.connection.rate_limits);
        loop {
            let Some(frame) = stream.next().await else {
                return CloseReason::Abnormal;
            };
            self.activity.heard();
            // Decided by a plain function, and the wait outside the match, so that a reader
            // waiting holds only what it waits with: every connection's task is allocated at
            // its largest state's size.
            let (inbound, message) = match self.receive(frame, &mut limiter) {
                Next::Read => continue,
                Next::Deliver(inbound, message) => (inbound, message),
                Next::Stop(reason) => return reason,
            };
            inbound.deliver(message).await;
        }
    }

    fn receive(
        &self,
        frame: Result<Message, tungstenite::Error>,
        limiter: &mut RateLimiter,
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
        // Pings are answered by the WebSocket layer; pongs only count as signs of life. Both,
        // like every frame, counted toward the rate limit as they arrived (`FrameMetered`).
        if !(message.is_text() || message.is_binary()) {
            return Next::Read;
        }
        let metrics = &*self.connection.metrics;
        let size = payload(&message).len();
        self.activity.received.fetch_add(1, Ordering::Relaxed);
        metrics.messages_received.inc();
        metrics.bytes_received.inc_by(size as u64);
        match limiter.admit(&self.connection.rate_limits, size) {
            Verdict::Accept => {}
            Verdict::Drop => {
                metrics.messages_dropped("rate_limited", 1);
                return Next::Read;
            }
            Verdict::Close => {
                metrics.messages_dropped("rate_limited", 1);
                return Next::Stop(CloseReason::RateLimited);
            }
        }
        let inbound = match self.echo {
            Some(outbox) => Inbound::Echo(outbox, &self.connection.queue_limits),
            None => Inbound::Broadcast(&self.connection.fanout),
        };
        match inbound {
            Inbound::Broadcast(fanout) => match envelope(payload(&message)) {
                Ok(envelope) => {
                    metrics.messages_broadcast.inc();
                    Next::Deliver(Inbound::Broadcast(fanout), envelope)
                }
                Err(refused) => {
                    metrics.messages_dropped(refused.label(), 1);
                    Next::Read
                }
            },
            echo @ Inbound::Echo(..) => Next::Deliver(echo, message),
        }
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

/// Why a client's message is not broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not one JSON value in UTF-8.
    InvalidJson,
    /// Nested deeper than `limits::MAX_JSON_DEPTH`.
    TooDeep,
}

impl Refused {
    /// The `reason` label of `websocket_messages_dropped_total`.
    pub fn label(self) -> &'static str {
        match self {
            Refused::InvalidJson => "invalid_json",
            Refused::TooDeep => "too_deep",
        }
    }
}

/// Wraps a client's JSON in the broadcast envelope `{"message":<json>}`, serialized once.
///
/// Text and binary frames are treated alike, as the replaced Node server did (it parsed whatever
/// bytes arrived). The JSON is validated, then forwarded as the client wrote it rather than
/// re-encoded: the value is the same, the sender's key order is kept, and no tree is built.
pub fn envelope(payload: &[u8]) -> Result<Message, Refused> {
    let text = std::str::from_utf8(payload).map_err(|_| Refused::InvalidJson)?;
    // serde_json's recursion limit does not apply to a RawValue, which it skips over without
    // recursing, so depth is checked on its own.
    let value: &RawValue = serde_json::from_str(text).map_err(|_| Refused::InvalidJson)?;
    let json = value.get();
    if limits::json_deeper_than(json, limits::MAX_JSON_DEPTH) {
        return Err(Refused::TooDeep);
    }
    let mut framed = String::with_capacity(json.len() + 12);
    framed.push_str(r#"{"message":"#);
    framed.push_str(json);
    framed.push('}');
    Ok(Message::text(framed))
}

/// The writing half and the events that can interrupt it.
struct Writer<'a> {
    sink: SplitSink<WebSocket, Message>,
    shutdown: Shutdown,
    outbox: &'a Outbox,
    heartbeat: HeartbeatTimer<'a>,
    /// A ping fell due while a batch was stuck: it goes out first thing after, its pong deadline
    /// already running, so that a client that was slow for a moment is not judged on a ping it
    /// never got.
    ping_owed: bool,
    activity: &'a Activity,
    metrics: &'a Metrics,
}

impl Writer<'_> {
    async fn run(&mut self) -> CloseReason {
        let mut batch = VecDeque::new();
        loop {
            if std::mem::take(&mut self.ping_owed) {
                batch.push_back(Message::Ping(bytes::Bytes::new()));
            } else {
                tokio::select! {
                biased;
                _ = self.shutdown.draining() => return CloseReason::ServerShutdown,
                _ = self.heartbeat.timer.as_mut() => match self.heartbeat.beat(self.activity) {
                    Beat::Dead => return CloseReason::PongTimeout,
                    Beat::Alive => continue,
                    Beat::Ping => batch.push_back(Message::Ping(bytes::Bytes::new())),
                },
                taken = self.outbox.take_all(&mut batch) => {
                    if taken.is_err() {
                        return CloseReason::SlowConsumer;
                    }
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
                    let (frames, bytes) = written.map_err(|_| CloseReason::Abnormal)?;
                    self.activity.sent.fetch_add(frames, Ordering::Relaxed);
                    self.metrics.messages_delivered.inc_by(frames);
                    self.metrics.bytes_sent.inc_by(bytes);
                    return Ok(());
                }
                _ = self.shutdown.draining() => return Err(CloseReason::ServerShutdown),
                _ = self.outbox.evicted() => return Err(CloseReason::SlowConsumer),
                // No ping can go out while the socket is stuck; the timer still runs, so a client that
                // neither reads nor says anything for the pong timeout is let go.
                _ = self.heartbeat.timer.as_mut() => match self.heartbeat.beat(self.activity) {
                    Beat::Dead => return Err(CloseReason::SlowConsumer),
                    Beat::Ping => self.ping_owed = true,
                    Beat::Alive => {}
                },
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
            // After our close frame, wait for the client's (the stream ends after it); a flooder
            // is not read from again.
            Some(code)
                if sink
                    .send(close_frame(code, reason.close_text()))
                    .await
                    .is_ok() =>
            {
                if reason == CloseReason::RateLimited {
                    sleep(FLOODER_LINGER).await;
                } else {
                    while let Some(Ok(_)) = stream.next().await {}
                }
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
            assert_eq!(envelope(payload), Err(Refused::InvalidJson), "{payload:?}");
        }
    }

    #[test]
    fn envelope_refuses_json_nested_too_deep() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(envelope(deep.as_bytes()), Err(Refused::TooDeep));
        let fine = format!("{}{}", "{\"a\":[".repeat(64), "]}".repeat(64));
        assert!(envelope(fine.as_bytes()).is_ok());
    }

    #[test]
    fn every_server_side_reason_has_a_close_code() {
        assert_eq!(CloseReason::ServerShutdown.close_code(), Some(1001));
        assert_eq!(CloseReason::MessageTooBig.close_code(), Some(1009));
        assert_eq!(CloseReason::SlowConsumer.close_code(), Some(1013));
        assert_eq!(CloseReason::RateLimited.close_code(), Some(1008));
        assert_eq!(CloseReason::PongTimeout.close_code(), None);
    }
}
