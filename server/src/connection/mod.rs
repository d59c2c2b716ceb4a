//! One WebSocket connection, from upgrade to close.
//!
//! Reading and writing run side by side in the connection's task, on the TCP socket its outbox
//! holds ([`socket`]): the [`reader`] takes each frame the client sends from [`incoming`], holds
//! each message to the connection's rate limits and hands it to its route's
//! [`protocol`](crate::protocol), which says what it means (a broadcast, an echo); the [`writer`]
//! drains what the connection's queue holds in batches (everything queued, in as few system
//! calls as the socket takes; a frame pushed while it waits with nothing queued is written by its
//! producer, see [`outbox`](crate::outbox)), keeps the heartbeat, and watches for the three things
//! that end a connection from the server's side: the drain, eviction as a slow consumer, and a
//! silent peer. Whichever side
//! finishes first decides the [`CloseReason`], which picks the close code, the metric label and
//! the log line ([`close`]).

mod close;
mod incoming;
mod reader;
mod socket;
mod writer;

use close::Unsent;
pub use close::{CLOSE_HANDSHAKE_TIMEOUT, CloseReason};

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hyper::upgrade::{OnUpgrade, Parts};
use hyper_util::rt::TokioIo;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{error, info};

use crate::auth::{Authenticator, Grant};
use crate::frame::Frame;
use crate::http_socket::HttpSocket;
use crate::hub::{self, ChannelName, Fanout, Form, Hub};
use crate::limits::RateLimits;
use crate::metrics::Metrics;
use crate::outbox::{Outbox, QueueLimits, Sent};
use crate::protocol::v1::Session;
use crate::protocol::{Route, wss};
use crate::shutdown::Shutdown;
use close::close;
use incoming::Incoming;
pub use incoming::SizeLimits;
use reader::{Handler, Reader};
use writer::{Departure, HeartbeatTimer, Writer};

/// Heartbeat timing.
#[derive(Debug, Clone, Copy)]
pub struct Heartbeat {
    /// Time between pings.
    pub ping_interval: Duration,
    /// Time a client has to answer a ping, or to take bytes the server is writing.
    pub pong_timeout: Duration,
}

/// Everything a connection needs from the rest of the server: one, shared by all of them.
#[derive(Debug)]
pub struct Context {
    /// This process's channels and their subscribers.
    pub hub: Arc<Hub>,
    /// Where messages are published: the local hub, or Redis to every task's hub.
    pub fanout: Fanout,
    /// How many channels one `/v1/ws` connection may hold at once.
    pub max_channels: usize,
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
    /// The time over which the drain spreads the closes of `/v1/ws` connections (`DRAIN_SPREAD`).
    pub drain_spread: Duration,
    /// The largest frame and message a client may send.
    pub size_limits: SizeLimits,
    /// Sign-in, when configured (a `/v1/ws` refresh checks its token with it).
    pub auth: Option<Arc<Authenticator>>,
}

/// Per-connection figures for the close log line, shared by the reader and the writer.
///
/// Moments are milliseconds on a process-wide clock: 8 bytes each instead of an `Instant`'s 16,
/// in every connection's task for its whole life.
#[derive(Debug)]
pub(crate) struct Activity {
    opened_ms: u64,
    last_heard_ms: AtomicU64,
    pub(crate) received: AtomicU64,
}

/// Milliseconds since the process's first connection.
fn clock_ms(moment: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    moment.saturating_duration_since(epoch).as_millis() as u64
}

impl Activity {
    fn new() -> Self {
        let now = clock_ms(Instant::now());
        Activity {
            opened_ms: now,
            last_heard_ms: AtomicU64::new(now),
            received: AtomicU64::new(0),
        }
    }

    pub(crate) fn heard(&self) {
        self.last_heard_ms
            .store(clock_ms(Instant::now()), Ordering::Relaxed);
    }

    pub(crate) fn heard_since(&self, moment: Instant) -> bool {
        self.last_heard_ms.load(Ordering::Relaxed) >= clock_ms(moment)
    }

    /// How long the connection has been open.
    fn age_ms(&self) -> u64 {
        clock_ms(Instant::now()).saturating_sub(self.opened_ms)
    }
}

/// Where a connection's frames come from, by route; dropping it leaves the hub. Subscribers are
/// boxed: an idle connection's task holds its place for life, and the task is allocated in
/// 128-byte steps, so a place the size of a pointer keeps the `/wss` task a step smaller.
enum Place {
    /// `/wss`: subscribed to `broadcast` for the connection's whole life.
    Broadcast(Box<WssPlace>),
    /// `/v1/ws`: the channels the client asks for.
    Channels(Box<Session>),
    /// `/echo`: an outbox of its own, with backpressure.
    Echo(Box<EchoPlace>),
}

/// An `/echo` connection's outbox, and its token (with sign-in), which ends it when it expires.
pub(crate) struct EchoPlace {
    outbox: Arc<Outbox>,
    grant: Option<Box<Grant>>,
}

/// A `/wss` connection's subscription, and what its token allows (with sign-in).
struct WssPlace {
    subscriber: hub::Subscriber,
    grant: Option<Box<Grant>>,
}

impl Context {
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
        client: Box<str>,
        permit: OwnedSemaphorePermit,
        grant: Option<Box<Grant>>,
    ) -> impl Future<Output = ()> + Send + 'static {
        async move {
            let Ok(upgraded) = upgrade.await else {
                return;
            };
            // In a block: what only the start needs keeps no room in the task for the
            // connection's life.
            let (stream, switching, early, id) = {
                // Every connection is served on a plain TCP socket (serve.rs): TLS ends at the
                // load balancer.
                let Ok(Parts { io, read_buf, .. }) = upgraded.downcast::<TokioIo<HttpSocket>>()
                else {
                    error!("an upgraded connection is not a TCP socket");
                    return;
                };
                let (stream, switching) = io.into_inner().into_parts();
                // Bytes the client sent right behind its upgrade request, read with the request:
                // the reader starts with them. Copied out (there are none, nearly always), so that
                // the HTTP server's 8 KiB read buffer is let go.
                let early = read_buf.to_vec();
                // The opened-connections count doubles as a process-unique connection id.
                let id = self.metrics.connections_opened.inc() + 1;
                self.metrics.connections.inc();
                let subject = grant.as_ref().and_then(|grant| grant.subject.as_deref());
                info!(conn = id, client = %client, route = route.label(), sub = subject, "connection opened");
                (stream, switching, early, id)
            };

            let activity = Activity::new();
            // `/wss` clients join `broadcast` before the greeting, so that everything published
            // after the greeting reaches them; `/v1/ws` clients join channels as they ask;
            // `/echo` clients have an outbox of their own.
            let mut place = match route {
                Route::Broadcast => {
                    let mut subscriber = self.hub.subscriber(Form::Wss);
                    subscriber.join_now(ChannelName::broadcast());
                    Place::Broadcast(Box::new(WssPlace { subscriber, grant }))
                }
                Route::Channels => Place::Channels(Box::new(Session::new(
                    self.hub.subscriber(Form::V1),
                    self.max_channels,
                    grant.map(|grant| *grant),
                ))),
                Route::Echo => Place::Echo(Box::new(EchoPlace {
                    outbox: Arc::new(Outbox::with_backpressure()),
                    grant,
                })),
            };
            let outbox = match &place {
                Place::Broadcast(wss) => Arc::clone(&wss.subscriber.outbox),
                Place::Channels(session) => Arc::clone(&session.subscriber().outbox),
                Place::Echo(echo) => Arc::clone(&echo.outbox),
            };
            // The outbox holds the socket from now on: producers write to it directly while the
            // writer waits with nothing queued.
            let socket = outbox.attach(stream, Arc::clone(&self.metrics));
            let mut incoming = Incoming::new(socket, early, self.size_limits, &self.rate_limits);
            let mut shutdown = self.shutdown.clone();
            let mut writer = Writer {
                socket,
                batch: VecDeque::new(),
                outbox: &outbox,
                heartbeat: HeartbeatTimer::new(&self.heartbeat),
                // `/v1/ws` clients are told to reconnect, and when, one by one; the `/wss` wire
                // contract is 1001 as the drain starts.
                departure: match route {
                    Route::Channels => Departure::Spread,
                    Route::Broadcast | Route::Echo => Departure::AtOnce,
                },
                activity: &activity,
                context: &self,
            };
            // A temporary of the condition: gone once written, not kept for the connection's life.
            let reason = if socket::write_all(socket, &first_write(switching, route))
                .await
                .is_err()
            {
                CloseReason::Abnormal
            } else {
                // Built in place: a named local would keep its own slot in the task beside the
                // copy `run` holds.
                let handler = match &mut place {
                    Place::Broadcast(wss) => Handler::Broadcast(wss.grant.as_deref()),
                    Place::Channels(session) => Handler::Channels(session),
                    Place::Echo(echo) => Handler::Echo(echo),
                };
                let (reason, interrupted) = tokio::select! {
                    reason = Reader {
                        context: &self,
                        activity: &activity,
                        handler,
                        replies: &outbox,
                    }.run(&mut incoming) => (reason, Sent::default()),
                    ended = writer.run(&mut shutdown) => ended,
                };
                // What the client published in this poll is delivered before its close, so that it
                // gets its own messages too, as every other subscriber does.
                hub::deliver_waiting();
                // Boxed: only a closing connection needs this state.
                Box::pin(close(
                    Unsent {
                        socket,
                        batch: writer.batch,
                        interrupted,
                        outbox: &outbox,
                    },
                    incoming,
                    reason,
                    shutdown,
                ))
                .await;
                reason
            };

            self.metrics.connections.dec();
            self.metrics.connection_closed(reason.label());
            info!(
                conn = id,
                client = %client,
                route = route.label(),
                reason = reason.label(),
                duration_ms = activity.age_ms(),
                received = activity.received.load(Ordering::Relaxed),
                sent = outbox.sent(),
                "connection closed"
            );
            drop(permit);
        }
    }
}

/// What a connection writes first: the 101 hyper left for it (see
/// [`http_socket`](crate::http_socket)), with the `/wss` greeting, in one segment.
fn first_write(switching: Vec<u8>, route: Route) -> Vec<u8> {
    let mut first = switching;
    if route == Route::Broadcast {
        first.extend_from_slice(Frame::text(wss::GREETING).wire());
    }
    first
}
