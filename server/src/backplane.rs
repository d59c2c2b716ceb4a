//! Broadcast across tasks: with `REDIS_URL` set, every valid message is published once to a Redis
//! channel and every task fans out what the channel delivers to its own clients, so a client on
//! task A sees what a client on task B sent. Without it, the local hub is the whole broadcast.
//!
//! Redis is an optional accelerator, never a dependency of serving: while it is unreachable each
//! task keeps broadcasting to its own clients (messages then do not cross tasks), `/health` stays
//! 200, and two background loops reconnect with capped backoff.
//!
//! Exactly once, sender included: a task's own messages normally reach its clients only through
//! the channel. When they cannot (publish failed, or this task's subscription is down), the
//! publisher delivers them locally and remembers up to which sequence number it did, and the
//! subscriber skips its own messages at or below that number, so a subscription that comes back
//! does not deliver them twice. Each message on the channel carries the publishing process's
//! random origin id and a sequence number ahead of the envelope for that purpose.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use redis::aio::{MultiplexedConnection, PubSubSink};
use redis::{AsyncConnectionConfig, Client};
use tokio::sync::mpsc;
use tokio::time::sleep;
use tokio_tungstenite::tungstenite::Message;
use tracing::{info, warn};

use crate::hub::{Fanout, Hub, payload};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// First wait before reconnecting; doubled on each failure up to `RECONNECT_CAP`.
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
const RECONNECT_CAP: Duration = Duration::from_secs(10);
/// A Redis call that takes longer than this counts as a failed connection.
const REDIS_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the subscription is pinged, so a silently dead connection is noticed.
const KEEPALIVE: Duration = Duration::from_secs(5);
/// Messages waiting to be published; a full queue makes senders wait (backpressure on the sender).
const PUBLISH_QUEUE: usize = 4096;
/// Most messages sent to Redis in one pipelined round trip.
const PUBLISH_BATCH: usize = 256;
/// Origin id (16 bytes) and sequence number (8 bytes) ahead of each envelope on the channel.
const HEADER: usize = 24;

/// State the publisher and subscriber loops share.
#[derive(Debug)]
struct Shared {
    client: Client,
    channel: String,
    origin: [u8; 16],
    hub: Arc<Hub>,
    subscribed: AtomicBool,
    published: AtomicBool,
    /// Highest own sequence number already delivered to local clients by the publisher.
    delivered_locally_through: AtomicU64,
    metrics: BackplaneMetrics,
}

#[derive(Debug, Clone)]
struct BackplaneMetrics {
    up: Gauge,
    connection_failures: Counter,
    local_only: Counter,
}

/// Starts the publisher and subscriber loops, which connect in the background, and returns the
/// queue they publish from: the hub's [`Fanout::Relay`].
///
/// Installs ring as rustls' process-wide crypto provider first: rustls picks one by itself only
/// when exactly one is compiled in. Ring is the workspace's only one (deny.toml bans aws-lc-rs),
/// and naming it here keeps every `rediss://` connection working if a dependency ever brings
/// another.
pub fn start(
    client: Client,
    channel: String,
    hub: Arc<Hub>,
    metrics: &Metrics,
    shutdown: Shutdown,
) -> Fanout {
    // Err only if a provider is already installed, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let shared = Arc::new(Shared {
        client,
        channel,
        origin: rand::random(),
        hub,
        subscribed: AtomicBool::new(false),
        published: AtomicBool::new(false),
        delivered_locally_through: AtomicU64::new(0),
        metrics: BackplaneMetrics {
            up: metrics.backplane_up.clone(),
            connection_failures: metrics.backplane_connection_failures.clone(),
            local_only: metrics.backplane_local_only.clone(),
        },
    });
    let (queue, inbox) = mpsc::channel(PUBLISH_QUEUE);
    tokio::spawn(publish_loop(Arc::clone(&shared), inbox));
    tokio::spawn(subscribe_loop(shared, shutdown));
    Fanout::Relay(queue)
}

/// Parses `REDIS_URL`. The error names the setting but never repeats the URL, which may hold the
/// auth token.
pub fn redis_client(url: &str) -> Result<Client, String> {
    Client::open(url).map_err(|err| {
        format!(
            "REDIS_URL (--redis-url) is not a usable redis:// or rediss:// URL ({:?})",
            err.kind()
        )
    })
}

impl Shared {
    fn set_state(&self, flag: &AtomicBool, up: bool, side: &'static str) {
        if flag.swap(up, Ordering::SeqCst) != up {
            if up {
                info!(side, channel = %self.channel, "backplane connected");
            } else {
                self.metrics.connection_failures.inc();
                warn!(
                    side,
                    "backplane connection lost; broadcasting to this task's clients only until it is back"
                );
            }
        }
        let both = self.subscribed.load(Ordering::SeqCst) && self.published.load(Ordering::SeqCst);
        self.metrics.up.set(i64::from(both));
    }

    /// Hands frames whose trip through Redis failed, or would not come back, to local clients.
    fn deliver_locally(&self, batch: &[(u64, Message)]) {
        for (_, frame) in batch {
            self.hub.broadcast(frame.clone());
        }
        if let Some((last, _)) = batch.last() {
            self.delivered_locally_through
                .fetch_max(*last, Ordering::SeqCst);
            self.metrics.local_only.inc_by(batch.len() as u64);
        }
    }

    fn connection_config() -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
    }
}

type Connecting = Pin<Box<dyn Future<Output = redis::RedisResult<MultiplexedConnection>> + Send>>;

/// Publishes queued envelopes in pipelined batches, in queue order, and falls back to local
/// delivery whenever Redis cannot carry them. Reconnects in the background so that the queue keeps
/// moving while Redis is away.
async fn publish_loop(shared: Arc<Shared>, mut inbox: mpsc::Receiver<Message>) {
    let mut connection: Option<MultiplexedConnection> = None;
    let mut connecting: Option<Connecting> = Some(connect(&shared, Duration::ZERO));
    let mut backoff = RECONNECT_FIRST;
    let mut sequence = 0u64;
    loop {
        tokio::select! {
            attempt = async { connecting.as_mut().expect("guarded").await }, if connecting.is_some() => {
                connecting = None;
                match attempt {
                    Ok(ready) => {
                        connection = Some(ready);
                        backoff = RECONNECT_FIRST;
                        shared.set_state(&shared.published, true, "publisher");
                    }
                    Err(err) => {
                        shared.metrics.connection_failures.inc();
                        warn!(side = "publisher", error = ?err.kind(), retry_in = ?backoff, "cannot reach Redis");
                        connecting = Some(connect(&shared, backoff));
                        backoff = (backoff * 2).min(RECONNECT_CAP);
                    }
                }
            }
            first = inbox.recv() => {
                let Some(first) = first else { return };
                let mut batch = Vec::with_capacity(PUBLISH_BATCH);
                let mut next = Some(first);
                while let Some(frame) = next {
                    sequence += 1;
                    batch.push((sequence, frame));
                    next = if batch.len() < PUBLISH_BATCH { inbox.try_recv().ok() } else { None };
                }
                let Some(redis) = connection.as_mut() else {
                    shared.deliver_locally(&batch);
                    continue;
                };
                let mut published = publish(&shared, redis, &batch).await.is_ok();
                if !published {
                    // The connection may just be stale (Redis restarted while this task was quiet):
                    // one fresh connection, at once, before giving up on the batch.
                    connection = connect(&shared, Duration::ZERO).await.ok();
                    if let Some(fresh) = connection.as_mut() {
                        published = publish(&shared, fresh, &batch).await.is_ok();
                    }
                }
                if published {
                    // Redis has pushed them to every subscriber; ours only if it is subscribed.
                    if !shared.subscribed.load(Ordering::SeqCst) {
                        shared.deliver_locally(&batch);
                    }
                } else {
                    connection = None;
                    shared.set_state(&shared.published, false, "publisher");
                    shared.deliver_locally(&batch);
                    connecting = Some(connect(&shared, backoff));
                }
            }
        }
    }
}

fn connect(shared: &Arc<Shared>, after: Duration) -> Connecting {
    let client = shared.client.clone();
    Box::pin(async move {
        sleep(after).await;
        client
            .get_multiplexed_async_connection_with_config(&Shared::connection_config())
            .await
    })
}

async fn publish(
    shared: &Shared,
    redis: &mut MultiplexedConnection,
    batch: &[(u64, Message)],
) -> redis::RedisResult<()> {
    let mut pipeline = redis::pipe();
    for (sequence, frame) in batch {
        let envelope = payload(frame);
        let mut on_channel = Vec::with_capacity(HEADER + envelope.len());
        on_channel.extend_from_slice(&shared.origin);
        on_channel.extend_from_slice(&sequence.to_be_bytes());
        on_channel.extend_from_slice(envelope);
        pipeline
            .cmd("PUBLISH")
            .arg(&shared.channel)
            .arg(on_channel)
            .ignore();
    }
    pipeline.query_async::<()>(redis).await
}

/// Keeps a subscription to the channel and fans out everything it delivers to local clients.
async fn subscribe_loop(shared: Arc<Shared>, mut shutdown: Shutdown) {
    let mut backoff = RECONNECT_FIRST;
    loop {
        let attempt = async {
            let mut pubsub = shared.client.get_async_pubsub().await?;
            pubsub.subscribe(&shared.channel).await?;
            redis::RedisResult::Ok(pubsub.split())
        };
        let attempt = tokio::select! {
            attempt = tokio::time::timeout(REDIS_TIMEOUT, attempt) => attempt,
            _ = shutdown.terminating() => return,
        };
        match attempt {
            Ok(Ok((sink, mut stream))) => {
                backoff = RECONNECT_FIRST;
                shared.set_state(&shared.subscribed, true, "subscriber");
                tokio::select! {
                    _ = async {
                        while let Some(message) = stream.next().await {
                            fan_out(&shared, message.get_payload_bytes());
                        }
                    } => {}
                    _ = keepalive(sink) => {}
                    _ = shutdown.terminating() => return,
                }
                shared.set_state(&shared.subscribed, false, "subscriber");
                continue;
            }
            Ok(Err(err)) => {
                shared.metrics.connection_failures.inc();
                warn!(side = "subscriber", error = ?err.kind(), retry_in = ?backoff, "cannot subscribe");
            }
            Err(_) => {
                shared.metrics.connection_failures.inc();
                warn!(side = "subscriber", retry_in = ?backoff, "Redis did not answer");
            }
        }
        tokio::select! {
            _ = sleep(backoff) => {}
            _ = shutdown.terminating() => return,
        }
        backoff = (backoff * 2).min(RECONNECT_CAP);
    }
}

/// Returns when a ping on the subscription fails or goes unanswered.
///
/// Any reply but an error counts as alive, whatever its shape: on a subscribed (RESP2 pub/sub)
/// connection Redis answers PING with the array `["pong", ""]`, not the usual `PONG` string, so
/// asking for a string would fail on every healthy answer and renew the subscription every
/// `KEEPALIVE`, losing what other tasks publish in the meantime. Reading the reply as `()` accepts
/// either form and still rejects an error reply.
async fn keepalive(mut sink: PubSubSink) {
    loop {
        sleep(KEEPALIVE).await;
        match tokio::time::timeout(REDIS_TIMEOUT, sink.ping::<()>()).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
    }
}

/// Delivers one channel message to local clients, unless it is this task's own and the publisher
/// already delivered it. Messages that are not ours in a form we understand are ignored.
fn fan_out(shared: &Shared, payload: &[u8]) {
    let Some((header, envelope)) = payload.split_at_checked(HEADER) else {
        return;
    };
    let (origin, sequence) = header.split_at(16);
    if origin == shared.origin {
        let sequence = u64::from_be_bytes(sequence.try_into().expect("8 bytes"));
        if sequence <= shared.delivered_locally_through.load(Ordering::SeqCst) {
            return;
        }
    }
    if let Ok(text) = std::str::from_utf8(envelope) {
        shared.hub.broadcast(Message::text(text));
    }
}
