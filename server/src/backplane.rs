//! Messages across tasks: with `REDIS_URL` set, every valid message is published once to the
//! Redis channel of its channel, and every task delivers what its subscriptions bring to its own
//! clients, so a client on task A sees what a client on task B published.
//!
//! A task subscribes in Redis only to the channels its clients hold (on the first local
//! subscriber; it unsubscribes after the last), so its Redis traffic follows its own clients'
//! channels, not the whole system's; plus `broadcast` for as long as it runs, as before channels
//! existed. `broadcast` keeps its Redis channel (`REDIS_CHANNEL`) and its format (the `/wss`
//! envelope), so tasks of the previous version and this one carry each other's `/wss` messages
//! during a rolling deploy; channel `c` travels on `<REDIS_CHANNEL_PREFIX>:c` as its data.
//! A client's `subscribed` waits until Redis has confirmed the subscription, so that what another
//! task publishes after it reaches the client.
//!
//! Redis is an optional accelerator, never a dependency of serving: while it is unreachable each
//! task keeps delivering its own clients' messages to its own clients (messages then do not cross
//! tasks), subscribes answer at once, `/health` stays 200, and two background loops reconnect
//! with capped backoff and subscribe again to every channel held.
//!
//! Exactly once, sender included: a task's own messages normally reach its clients through Redis
//! like everyone's, so every task's clients see one channel's messages in the order Redis ran the
//! publishes. When Redis cannot carry them back (the publish failed, or this task's subscription
//! to the channel was not live on both sides of the publish), the publisher delivers them locally.
//! Each message on Redis carries the publishing process's random origin id and a sequence number
//! ahead of its body, and per channel one lock decides, for each own message, which of the two
//! ways delivers it, whichever comes first: neither can deliver it after the other did. A foreign
//! message is delivered once per origin and sequence number too, so a batch sent again after a
//! Redis timeout (Redis may have run the first copy) is not delivered twice on other tasks.
//!
//! History (with `HISTORY_SIZE` above 0) lives in Redis, so that every task hands out the same
//! offsets and a client can resume on any task: per channel a stream of its last messages and a
//! hash of its epoch and last position, both expiring `HISTORY_TTL` after the last publish. One
//! Lua script appends to the stream and publishes, so the stream's order is the order in which
//! every task receives the channel's messages; a message then travels with its offset
//! (`#<offset> ` between the header and the data). For `broadcast`, the script also publishes the
//! previous version's message on `REDIS_CHANNEL`, which tasks of that version read; tasks of this
//! one read the copy with the offset on `<prefix>#broadcast` and drop the other by its sequence
//! number (they still deliver, without an offset, what the previous version publishes).
//!
//! Sharded pub/sub (`SSUBSCRIBE`) is not used: the deployment's Valkey is one shard (cluster mode
//! off), where it spreads nothing, and redis-rs offers it only through its cluster client.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::{AsyncConnectionConfig, Client};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep, timeout};
use tracing::{info, warn};

use crate::hub::channel::{wss_data, wss_envelope};
use crate::hub::{
    ChannelName, Fanout, HistoryLimits, HistorySource, Hub, Interest, Missed, Offset, POSITION_TTL,
    Publication, Relayed,
};
use crate::metrics::Metrics;
use crate::outbox::Batching;
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
/// Origin id (16 bytes) and sequence number (8 bytes) ahead of each message's body on Redis.
const HEADER: usize = 24;

/// Appends a message to its channel's history and publishes it, with its offset, in one step.
/// KEYS: the stream, the hash of the epoch, the last position and what each origin last
/// published. ARGV: the Redis channel, the header, the data, an epoch for a history that has
/// none, messages kept (at least), milliseconds they are kept, the origin (hex) and sequence
/// number, milliseconds the epoch and position are kept ([`POSITION_TTL`]: a quiet channel keeps
/// its epoch between messages), and for `broadcast` the previous version's channel and message.
/// Returns the offset.
///
/// A batch sent again after a timeout (Redis may have run the first copy) is recognised by its
/// origin and sequence number: it is neither kept nor published twice. The offset of the last
/// message an origin published is kept, to answer its copy; an earlier one's is not (`false`).
const PUBLISH_WITH_HISTORY: &str = r#"
local epoch = redis.call('HGET', KEYS[2], 'epoch')
local from = 'o' .. ARGV[7]
local sequence = tonumber(ARGV[8])
if epoch then
  local seen = redis.call('HGET', KEYS[2], from)
  if seen then
    local seen_sequence, seen_position = string.match(seen, '^(%d+):(%d+)$')
    if tonumber(seen_sequence) == sequence then
      return epoch .. '-' .. seen_position
    elseif tonumber(seen_sequence) > sequence then
      return false
    end
  end
else
  epoch = ARGV[4]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'epoch', epoch)
end
local position = redis.call('HINCRBY', KEYS[2], 'last', 1)
redis.call('HSET', KEYS[2], from, ARGV[8] .. ':' .. position)
local now = redis.call('TIME')
local ms = now[1] * 1000 + math.floor(now[2] / 1000)
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[5], '0-' .. position, 't', ms, 'd', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[9])
local offset = epoch .. '-' .. position
redis.call('PUBLISH', ARGV[1], ARGV[2] .. '#' .. offset .. ' ' .. ARGV[3])
if ARGV[10] then
  redis.call('PUBLISH', ARGV[10], ARGV[11])
end
return offset
"#;

/// Where channels live in Redis.
#[derive(Debug, Clone)]
pub struct ChannelNames {
    /// The Redis channel of `broadcast` (`REDIS_CHANNEL`).
    pub broadcast: String,
    /// The prefix of every other channel's Redis channel (`REDIS_CHANNEL_PREFIX`).
    pub prefix: String,
}

impl ChannelNames {
    fn redis(&self, channel: &ChannelName) -> String {
        if channel.is_broadcast() {
            self.broadcast.clone()
        } else {
            format!("{}:{channel}", self.prefix)
        }
    }

    /// Where `broadcast`'s messages travel with their offsets. `#` is in no channel name, so no
    /// channel's Redis channel (`<prefix>:<name>`) can be this one.
    fn broadcast_with_offsets(&self) -> String {
        format!("{}#broadcast", self.prefix)
    }

    /// Where messages of `channel` that carry offsets are published.
    fn redis_with_offsets(&self, channel: &ChannelName) -> String {
        if channel.is_broadcast() {
            self.broadcast_with_offsets()
        } else {
            self.redis(channel)
        }
    }

    /// The Redis channels `channel` is heard on.
    fn subscriptions(&self, channel: &ChannelName, history: bool) -> Vec<String> {
        let mut names = vec![self.redis(channel)];
        if history && channel.is_broadcast() {
            names.push(self.broadcast_with_offsets());
        }
        names
    }

    /// The keys of `channel`'s history: its stream, and its epoch and last position. The name in
    /// braces is the key's hash tag, so both keys of a channel sit on one cluster shard, where the
    /// script that writes them both can run.
    fn history_keys(&self, channel: &ChannelName) -> [String; 2] {
        [
            format!("{}#history{{{channel}}}", self.prefix),
            format!("{}#meta{{{channel}}}", self.prefix),
        ]
    }

    fn channel(&self, redis: &str) -> Option<ChannelName> {
        if redis == self.broadcast || redis == self.broadcast_with_offsets() {
            return Some(ChannelName::broadcast());
        }
        let name = redis.strip_prefix(&self.prefix)?.strip_prefix(':')?;
        ChannelName::parse(name).ok().filter(|c| !c.is_broadcast())
    }
}

/// State the publisher and subscriber loops share.
#[derive(Debug)]
struct Shared {
    client: Client,
    names: ChannelNames,
    origin: [u8; 16],
    hub: Arc<Hub>,
    subscribed: AtomicBool,
    published: AtomicBool,
    /// Channels Redis has confirmed on the current subscription.
    live: Mutex<HashSet<ChannelName>>,
    /// Per channel local clients hold, how far own messages went each way.
    own: Mutex<HashMap<ChannelName, OwnMarks>>,
    metrics: BackplaneMetrics,
    /// How much history Redis keeps; none with `HistoryLimits::OFF`.
    history: HistoryLimits,
    /// The connection history is read on, made on first need and again after a failure.
    reader: Mutex<Option<MultiplexedConnection>>,
}

/// The highest own sequence numbers of one channel delivered to local clients by the publisher,
/// and from Redis. Sequence numbers grow, and one channel's own messages reach Redis, and come
/// back from it, in that order, so a number at or below either mark has been delivered.
#[derive(Debug, Default, Clone, Copy)]
struct OwnMarks {
    local_through: u64,
    echoed_through: u64,
}

/// Foreign origins whose last sequence number is remembered; past it the memory starts afresh
/// (tasks are replaced over days, each with a new origin), at the cost of at most one duplicate
/// per origin if a retried batch arrives in that instant.
const MAX_ORIGINS: usize = 4096;

/// Channels per SUBSCRIBE or UNSUBSCRIBE command, so that each command fits in `REDIS_TIMEOUT`
/// however many channels a task holds.
const CHANNELS_PER_COMMAND: usize = 1000;

/// Interest changes followed in one go: one SUBSCRIBE and one UNSUBSCRIBE for all of them.
const INTEREST_BATCH: usize = 4096;

#[derive(Debug, Clone)]
struct BackplaneMetrics {
    up: Gauge,
    connection_failures: Counter,
    local_only: Counter,
}

/// Starts the publisher and subscriber loops, which connect in the background, tells the hub to
/// report interest in channels to the subscriber, and returns the queue the publisher takes
/// messages from: the hub's [`Fanout::Relay`]. `rediss://` needs a rustls crypto provider
/// installed first ([`run`](crate::run) installs ring).
pub fn start(
    client: Client,
    names: ChannelNames,
    hub: Arc<Hub>,
    history: HistoryLimits,
    metrics: &Metrics,
    shutdown: Shutdown,
) -> Fanout {
    let (interest, interests) = mpsc::unbounded_channel();
    hub.relay_interest_to(interest);
    let shared = Arc::new(Shared::new(
        client,
        names,
        Arc::clone(&hub),
        history,
        metrics,
    ));
    if history.size > 0 {
        hub.read_history_from(Arc::clone(&shared) as Arc<dyn HistorySource>);
    }
    let (queue, inbox) = mpsc::channel(PUBLISH_QUEUE);
    // Batching: what one wake-up brings (a batch from Redis, or messages delivered locally while
    // Redis is away) goes to each idle recipient in one system call.
    tokio::spawn(Batching::new(publish_loop(Arc::clone(&shared), inbox)));
    tokio::spawn(Batching::new(subscribe_loop(shared, interests, shutdown)));
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

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its map consistent, so a poisoned lock is still usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// The state of a backplane not connected yet, with a fresh random origin.
    fn new(
        client: Client,
        names: ChannelNames,
        hub: Arc<Hub>,
        history: HistoryLimits,
        metrics: &Metrics,
    ) -> Shared {
        Shared {
            client,
            names,
            origin: rand::random(),
            hub,
            subscribed: AtomicBool::new(false),
            published: AtomicBool::new(false),
            live: Mutex::default(),
            own: Mutex::default(),
            metrics: BackplaneMetrics {
                up: metrics.backplane_up.clone(),
                connection_failures: metrics.backplane_connection_failures.clone(),
                local_only: metrics.backplane_local_only.clone(),
            },
            history,
            reader: Mutex::default(),
        }
    }

    fn set_state(&self, flag: &AtomicBool, up: bool, side: &'static str) {
        if flag.swap(up, Ordering::SeqCst) != up {
            if up {
                info!(side, broadcast = %self.names.broadcast, "backplane connected");
            } else {
                self.metrics.connection_failures.inc();
                warn!(
                    side,
                    "backplane connection lost; delivering to this task's clients only until it is back"
                );
            }
        }
        let both = self.subscribed.load(Ordering::SeqCst) && self.published.load(Ordering::SeqCst);
        self.metrics.up.set(i64::from(both));
    }

    fn is_live(&self, channel: &ChannelName) -> bool {
        lock(&self.live).contains(channel)
    }

    /// Delivers own messages whose trip through Redis failed, or may not come back, to local
    /// clients, each unless Redis already brought it back. `failed`: Redis did not carry them
    /// (what `websocket_backplane_local_only_total` counts).
    fn deliver_locally<'a>(
        &self,
        batch: impl Iterator<Item = (&'a (u64, Publication), Option<Offset>)>,
        failed: bool,
    ) {
        let mut own = lock(&self.own);
        let mut count = 0;
        for ((sequence, publication), offset) in batch {
            // No local subscriber, nothing to deliver: a subscriber joining now is subscribed in
            // Redis after this publish ran, so its echo will not come either.
            if !self.hub.holds(publication.channel.as_str()) {
                continue;
            }
            let marks = own.entry(publication.channel.clone()).or_default();
            if *sequence <= marks.echoed_through {
                continue;
            }
            marks.local_through = *sequence;
            self.hub
                .deliver_relayed(&publication.channel, &publication.data, offset);
            count += 1;
        }
        if failed {
            self.metrics.local_only.inc_by(count);
        }
    }

    /// Whether an own message Redis brought back is still to be delivered (the publisher has not
    /// delivered it locally); marks it as delivered if so. The caller delivers it while `own` is
    /// held, so that the publisher cannot deliver it in between.
    fn take_echo(
        own: &mut HashMap<ChannelName, OwnMarks>,
        channel: &ChannelName,
        sequence: u64,
    ) -> bool {
        let marks = own.entry(channel.clone()).or_default();
        // At or below `echoed_through`: the second copy of a `broadcast` message (the previous
        // version's form, after the one with the offset).
        if sequence <= marks.local_through || sequence <= marks.echoed_through {
            return false;
        }
        marks.echoed_through = sequence;
        true
    }

    fn connection_config() -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
    }

    /// A message as it travels on Redis: origin, sequence number, then the body (the `/wss`
    /// envelope on `broadcast`, as the previous version sent it; the data on any other channel).
    fn encode(&self, sequence: u64, publication: &Publication) -> Vec<u8> {
        let envelope;
        let body = if publication.channel.is_broadcast() {
            envelope = wss_envelope(&publication.data);
            &envelope
        } else {
            &*publication.data
        };
        let mut encoded = Vec::with_capacity(HEADER + body.len());
        encoded.extend_from_slice(&self.header(sequence));
        encoded.extend_from_slice(body.as_bytes());
        encoded
    }

    /// Origin and sequence number, ahead of every message on Redis.
    fn header(&self, sequence: u64) -> [u8; HEADER] {
        let mut header = [0; HEADER];
        header[..16].copy_from_slice(&self.origin);
        header[16..].copy_from_slice(&sequence.to_be_bytes());
        header
    }
}

/// A connection to publish on, with the history script loaded on it (when history is on).
struct Publisher {
    connection: MultiplexedConnection,
    script: Option<String>,
}

type Connecting = Pin<Box<dyn Future<Output = redis::RedisResult<Publisher>> + Send>>;

/// Publishes queued messages in pipelined batches, in queue order, and falls back to local
/// delivery whenever Redis cannot carry them. Reconnects in the background so that the queue keeps
/// moving while Redis is away.
async fn publish_loop(shared: Arc<Shared>, mut inbox: mpsc::Receiver<Relayed>) {
    let mut connection: Option<Publisher> = None;
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
                let mut answers = Vec::with_capacity(PUBLISH_BATCH);
                let mut next = Some(first);
                while let Some(Relayed { publication, answer }) = next {
                    sequence += 1;
                    batch.push((sequence, publication));
                    answers.push(answer);
                    next = if batch.len() < PUBLISH_BATCH { inbox.try_recv().ok() } else { None };
                }
                let no_offsets = || std::iter::repeat(None);
                let Some(redis) = connection.as_mut() else {
                    shared.deliver_locally(batch.iter().zip(no_offsets()), true);
                    answer(answers, no_offsets());
                    continue;
                };
                // A channel's messages come back from Redis only if its subscription was live
                // before the publish reached Redis and still is after: checked on both sides.
                let live_before: Vec<bool> =
                    batch.iter().map(|(_, p)| shared.is_live(&p.channel)).collect();
                let mut published = publish(&shared, redis, &batch).await;
                if published.is_err() {
                    // The connection may just be stale (Redis restarted while this task was quiet,
                    // or failed over to a replica without the script): one fresh connection, at
                    // once, before giving up on the batch.
                    connection = connect(&shared, Duration::ZERO).await.ok();
                    if let Some(fresh) = connection.as_mut() {
                        published = publish(&shared, fresh, &batch).await;
                    }
                }
                if let Ok(offsets) = published {
                    let subscriber_down = !shared.subscribed.load(Ordering::SeqCst);
                    answer(answers, offsets.iter().copied());
                    shared.deliver_locally(
                        batch
                            .iter()
                            .zip(offsets)
                            .zip(live_before)
                            .filter(|(((_, p), _), before)| !(*before && shared.is_live(&p.channel)))
                            .map(|(message, _)| message),
                        subscriber_down,
                    );
                } else {
                    connection = None;
                    shared.set_state(&shared.published, false, "publisher");
                    shared.deliver_locally(batch.iter().zip(no_offsets()), true);
                    answer(answers, no_offsets());
                    connecting = Some(connect(&shared, backoff));
                }
            }
        }
    }
}

/// Tells each publisher that asked the offset its message got.
fn answer(
    answers: Vec<Option<oneshot::Sender<Option<Offset>>>>,
    offsets: impl Iterator<Item = Option<Offset>>,
) {
    for (answer, offset) in answers.into_iter().zip(offsets) {
        if let Some(answer) = answer {
            // A publisher that stopped waiting (its client went away) needs no answer.
            let _ = answer.send(offset);
        }
    }
}

fn connect(shared: &Arc<Shared>, after: Duration) -> Connecting {
    let client = shared.client.clone();
    let history = shared.history.size > 0;
    Box::pin(async move {
        sleep(after).await;
        let mut connection = client
            .get_multiplexed_async_connection_with_config(&Shared::connection_config())
            .await?;
        let script = if history {
            let sha: String = redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(PUBLISH_WITH_HISTORY)
                .query_async(&mut connection)
                .await?;
            Some(sha)
        } else {
            None
        };
        Ok(Publisher { connection, script })
    })
}

/// Publishes a batch in one pipelined round trip; returns each message's offset (none without
/// history).
async fn publish(
    shared: &Shared,
    redis: &mut Publisher,
    batch: &[(u64, Publication)],
) -> redis::RedisResult<Vec<Option<Offset>>> {
    let mut pipeline = redis::pipe();
    let Some(script) = &redis.script else {
        for (sequence, publication) in batch {
            pipeline
                .cmd("PUBLISH")
                .arg(shared.names.redis(&publication.channel))
                .arg(shared.encode(*sequence, publication))
                .ignore();
        }
        pipeline.query_async::<()>(&mut redis.connection).await?;
        return Ok(vec![None; batch.len()]);
    };
    let ttl_ms = shared.history.ttl.as_millis().max(1) as u64;
    let origin: String = shared
        .origin
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    for (sequence, publication) in batch {
        let channel = &publication.channel;
        let [stream, meta] = shared.names.history_keys(channel);
        let command = pipeline
            .cmd("EVALSHA")
            .arg(script)
            .arg(2)
            .arg(stream)
            .arg(meta)
            .arg(shared.names.redis_with_offsets(channel))
            .arg(&shared.header(*sequence)[..])
            .arg(&*publication.data)
            .arg(format!("{:016x}", rand::random::<u64>()))
            .arg(shared.history.size)
            .arg(ttl_ms)
            .arg(&origin)
            .arg(*sequence)
            .arg(POSITION_TTL.as_millis() as u64);
        if channel.is_broadcast() {
            command
                .arg(&shared.names.broadcast)
                .arg(shared.encode(*sequence, publication));
        }
    }
    let offsets: Vec<Option<String>> = pipeline.query_async(&mut redis.connection).await?;
    // An offset the script returned is always well formed; one that is not is not handed out.
    Ok(offsets
        .iter()
        .map(|offset| offset.as_deref().and_then(|o| Offset::parse(o).ok()))
        .collect())
}

/// Keeps a subscription to every channel local clients hold (and `broadcast`), follows the hub's
/// interest changes, and hands everything Redis delivers to local clients.
async fn subscribe_loop(
    shared: Arc<Shared>,
    mut interests: mpsc::UnboundedReceiver<Interest>,
    mut shutdown: Shutdown,
) {
    let mut backoff = RECONNECT_FIRST;
    loop {
        let attempt = async {
            let (mut sink, stream) = timeout(REDIS_TIMEOUT, shared.client.get_async_pubsub())
                .await
                .map_err(|_| None)?
                .map_err(Some)?
                .split();
            // `broadcast` for as long as the task runs; every other channel while it is held.
            let mut channels = shared.hub.channel_names();
            channels.push(ChannelName::broadcast());
            channels.sort();
            channels.dedup();
            subscribe(shared.as_ref(), &mut sink, &channels, Change::Subscribe)
                .await
                .map_err(|()| None)?;
            Ok::<_, Option<redis::RedisError>>((sink, stream, channels))
        };
        let attempt = tokio::select! {
            attempt = attempt => attempt,
            _ = shutdown.terminating() => return,
        };
        match attempt {
            Ok((sink, stream, channels)) => {
                backoff = RECONNECT_FIRST;
                lock(&shared.live).extend(channels);
                shared.set_state(&shared.subscribed, true, "subscriber");
                let ended = tokio::select! {
                    () = follow(&shared, sink, stream, &mut interests) => false,
                    _ = shutdown.terminating() => true,
                };
                lock(&shared.live).clear();
                if ended {
                    return;
                }
                shared.set_state(&shared.subscribed, false, "subscriber");
                continue;
            }
            Err(Some(err)) => {
                shared.metrics.connection_failures.inc();
                warn!(side = "subscriber", error = ?err.kind(), retry_in = ?backoff, "cannot subscribe");
            }
            Err(None) => {
                shared.metrics.connection_failures.inc();
                warn!(side = "subscriber", retry_in = ?backoff, "Redis did not answer");
            }
        }
        // While Redis is away, subscribers go live at once: their own task's messages reach them,
        // and every channel held is subscribed again on reconnecting.
        let waited = async {
            let wait = sleep(backoff);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    () = &mut wait => return true,
                    interest = interests.recv() => match interest {
                        Some(Interest::Wanted(_, confirm)) => drop(confirm.send(())),
                        Some(Interest::Released(_)) => {}
                        None => return false,
                    },
                }
            }
        };
        tokio::select! {
            go_on = waited => if !go_on { return },
            _ = shutdown.terminating() => return,
        }
        backoff = (backoff * 2).min(RECONNECT_CAP);
    }
}

/// Subscribes to `channels` in Redis (or unsubscribes, with `Change::Unsubscribe`),
/// `CHANNELS_PER_COMMAND` at a time, each command within `REDIS_TIMEOUT`.
async fn subscribe(
    shared: &Shared,
    sink: &mut PubSubSink,
    channels: &[ChannelName],
    change: Change,
) -> Result<(), ()> {
    for chunk in channels.chunks(CHANNELS_PER_COMMAND) {
        let history = shared.history.size > 0;
        let redis: Vec<String> = chunk
            .iter()
            .flat_map(|c| shared.names.subscriptions(c, history))
            .collect();
        let done = match change {
            Change::Subscribe => timeout(REDIS_TIMEOUT, sink.subscribe(&redis)).await,
            Change::Unsubscribe => timeout(REDIS_TIMEOUT, sink.unsubscribe(&redis)).await,
        };
        if !matches!(done, Ok(Ok(()))) {
            return Err(());
        }
    }
    Ok(())
}

/// Which way [`subscribe`] changes the subscriptions.
#[derive(Clone, Copy)]
enum Change {
    Subscribe,
    Unsubscribe,
}

/// Serves one subscription connection until it fails: delivers what it brings, subscribes and
/// unsubscribes as the hub's interest changes, and pings it every `KEEPALIVE`.
async fn follow(
    shared: &Shared,
    mut sink: PubSubSink,
    mut stream: PubSubStream,
    interests: &mut mpsc::UnboundedReceiver<Interest>,
) {
    let mut keepalive =
        tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
    let mut foreign = ForeignSequences::default();
    loop {
        tokio::select! {
            message = stream.next() => match message {
                Some(message) => fan_out(shared, &mut foreign, message.get_channel_name(), message.get_payload_bytes()),
                None => return,
            },
            _ = keepalive.tick() => {
                // Any reply but an error counts as alive, whatever its shape: on a subscribed
                // (RESP2 pub/sub) connection Redis answers PING with the array `["pong", ""]`, not
                // the usual `PONG` string, so asking for a string would fail on every healthy
                // answer and renew the subscription every `KEEPALIVE`, losing what other tasks
                // publish in the meantime. Reading the reply as `()` accepts either form and still
                // rejects an error reply.
                if !matches!(timeout(REDIS_TIMEOUT, sink.ping::<()>()).await, Ok(Ok(()))) {
                    return;
                }
                // Marks of channels no local client holds any more are not needed.
                lock(&shared.own).retain(|channel, _| shared.hub.holds(channel.as_str()));
            }
            interest = interests.recv() => {
                let Some(first) = interest else { return };
                let mut batch = vec![first];
                while batch.len() < INTEREST_BATCH {
                    match interests.try_recv() {
                        Ok(interest) => batch.push(interest),
                        Err(_) => break,
                    }
                }
                if follow_interest(shared, &mut sink, batch).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Brings the Redis subscriptions of the channels a batch of interest changes names to what the
/// hub holds now (the hub is the truth; the order of the changes no longer matters), then answers
/// every waiting subscriber. `Err` when Redis did not confirm in time: the connection is replaced,
/// and the new one subscribes to every channel held.
async fn follow_interest(
    shared: &Shared,
    sink: &mut PubSubSink,
    batch: Vec<Interest>,
) -> Result<(), ()> {
    let mut named: Vec<&ChannelName> = batch
        .iter()
        .map(|interest| match interest {
            Interest::Wanted(channel, _) | Interest::Released(channel) => channel,
        })
        .collect();
    named.sort();
    named.dedup();
    let (mut wanted, mut released) = (Vec::new(), Vec::new());
    {
        let live = lock(&shared.live);
        for channel in named {
            let held = channel.is_broadcast() || shared.hub.holds(channel.as_str());
            match (held, live.contains(channel)) {
                (true, false) => wanted.push(channel.clone()),
                (false, true) => released.push(channel.clone()),
                _ => {}
            }
        }
    }
    let mut result = subscribe(shared, sink, &wanted, Change::Subscribe).await;
    if result.is_ok() {
        lock(&shared.live).extend(wanted);
        {
            let mut live = lock(&shared.live);
            for channel in &released {
                live.remove(channel);
            }
        }
        result = subscribe(shared, sink, &released, Change::Unsubscribe).await;
    }
    // Answered either way: on failure the subscribers go live with local delivery, and the
    // channels are subscribed again with the rest on reconnecting.
    for interest in batch {
        if let Interest::Wanted(_, confirm) = interest {
            let _ = confirm.send(());
        }
    }
    result
}

/// The last sequence number delivered per foreign origin.
#[derive(Default)]
struct ForeignSequences(HashMap<[u8; 16], u64>);

impl ForeignSequences {
    /// Whether a foreign message is new (and remembers it): a publisher's sequence numbers only
    /// grow, and Redis delivers one publisher's messages in order, so one at or below the last is
    /// a copy sent again after a timeout.
    fn is_new(&mut self, origin: [u8; 16], sequence: u64) -> bool {
        if self.0.len() >= MAX_ORIGINS && !self.0.contains_key(&origin) {
            self.0.clear();
        }
        let last = self.0.entry(origin).or_default();
        if sequence <= *last {
            return false;
        }
        *last = sequence;
        true
    }
}

/// Delivers one Redis message to local clients, once: an own message unless the publisher
/// already delivered it, a foreign one unless it is a copy. Messages that are not ours in a form
/// we understand are ignored.
fn fan_out(shared: &Shared, foreign: &mut ForeignSequences, redis_channel: &str, payload: &[u8]) {
    let Some(channel) = shared.names.channel(redis_channel) else {
        return;
    };
    let Some((header, body)) = payload.split_at_checked(HEADER) else {
        return;
    };
    let Ok(body) = std::str::from_utf8(body) else {
        return;
    };
    let Some((data, offset)) = decode(&channel, body) else {
        return;
    };
    let (origin, sequence) = header.split_at(16);
    let origin: [u8; 16] = origin.try_into().expect("16 bytes");
    let sequence = u64::from_be_bytes(sequence.try_into().expect("8 bytes"));
    if origin == shared.origin {
        let mut own = lock(&shared.own);
        if Shared::take_echo(&mut own, &channel, sequence) {
            shared.hub.deliver_relayed(&channel, data, offset);
        }
    } else if foreign.is_new(origin, sequence) {
        shared.hub.deliver_relayed(&channel, data, offset);
    }
}

/// A message's data and offset from its body on Redis: `#<offset> <data>` from the history
/// script; else the data, in the `/wss` envelope on `broadcast` (as the previous version sends
/// it). JSON never starts with `#`, so the two cannot be confused.
fn decode<'a>(channel: &ChannelName, body: &'a str) -> Option<(&'a str, Option<Offset>)> {
    if let Some(with_offset) = body.strip_prefix('#') {
        let (offset, data) = with_offset.split_once(' ')?;
        return Some((data, Some(Offset::parse(offset).ok()?)));
    }
    let data = if channel.is_broadcast() {
        wss_data(body)?
    } else {
        body
    };
    Some((data, None))
}

impl HistorySource for Shared {
    fn missed<'a>(
        &'a self,
        channel: &'a ChannelName,
        since: Offset,
    ) -> Pin<Box<dyn Future<Output = Missed> + Send + 'a>> {
        Box::pin(async move {
            match timeout(REDIS_TIMEOUT, self.read_history(channel, since)).await {
                Ok(Ok(missed)) => missed,
                failed => {
                    // Told it may have lost messages, the client reloads: nothing is lost silently.
                    warn!(channel = %channel, failed = ?failed.map(|_| ()), "cannot read history; resuming as lost");
                    *lock(&self.reader) = None;
                    None
                }
            }
        })
    }
}

impl Shared {
    /// Reads the history of `channel` after `since`, in one transaction with its epoch and last
    /// position: every message after it if the stream holds them all, none of them expired.
    async fn read_history(
        &self,
        channel: &ChannelName,
        since: Offset,
    ) -> redis::RedisResult<Missed> {
        let held = lock(&self.reader).clone();
        let mut connection = match held {
            Some(connection) => connection,
            None => {
                let fresh = self
                    .client
                    .get_multiplexed_async_connection_with_config(&Shared::connection_config())
                    .await?;
                *lock(&self.reader) = Some(fresh.clone());
                fresh
            }
        };
        let [stream, meta] = self.names.history_keys(channel);
        let (state, entries): ((Option<String>, Option<u64>), redis::Value) = redis::pipe()
            .atomic()
            .cmd("HMGET")
            .arg(&meta)
            .arg("epoch")
            .arg("last")
            .cmd("XRANGE")
            .arg(&stream)
            .arg(format!("(0-{}", since.position()))
            .arg("+")
            .query_async(&mut connection)
            .await?;
        let (Some(epoch), Some(last)) = state else {
            return Ok(None);
        };
        if u64::from_str_radix(&epoch, 16).ok() != Some(since.epoch()) || since.position() > last {
            return Ok(None);
        }
        // The client saw the channel's last message: nothing missed, whatever has expired since.
        if since.position() == last {
            return Ok(Some(Vec::new()));
        }
        let entries = parse_entries(since.epoch(), entries);
        let Some(entries) = entries else {
            return Ok(None);
        };
        // Whole: the first one follows `since` at once, and the oldest is within the time to live
        // (the others are younger).
        let expected = (since.position() < last).then_some(since.position() + 1);
        let oldest = entries
            .first()
            .map(|(offset, at_ms, _)| (offset.position(), *at_ms));
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as u64);
        let ttl_ms = self.history.ttl.as_millis() as u64;
        let whole = match (expected, oldest) {
            (None, None) => true,
            (Some(next), Some((first, at_ms))) => {
                first == next && now_ms.saturating_sub(at_ms) < ttl_ms
            }
            _ => false,
        };
        Ok(whole.then(|| {
            entries
                .into_iter()
                .map(|(offset, _, data)| (offset, data))
                .collect()
        }))
    }
}

/// The entries of an XRANGE reply as (offset, publish time in ms, data); `None` if the reply is
/// not in the form the history script writes.
fn parse_entries(epoch: u64, reply: redis::Value) -> Option<Vec<(Offset, u64, Box<str>)>> {
    use redis::Value;
    let Value::Array(entries) = reply else {
        return None;
    };
    let text = |value: &Value| match value {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok().map(str::to_owned),
        Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    };
    entries
        .iter()
        .map(|entry| {
            let Value::Array(parts) = entry else {
                return None;
            };
            let [id, Value::Array(fields)] = parts.as_slice() else {
                return None;
            };
            let position = text(id)?.strip_prefix("0-")?.parse().ok()?;
            let (mut at_ms, mut data) = (None, None);
            for pair in fields.chunks(2) {
                match (text(&pair[0])?.as_str(), pair.get(1)) {
                    ("t", Some(value)) => at_ms = text(value)?.parse().ok(),
                    ("d", Some(value)) => data = text(value).map(String::into_boxed_str),
                    _ => {}
                }
            }
            Some((Offset::new(epoch, position), at_ms?, data?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::frame::Frame;
    use crate::hub::{Form, HistoryLimits};
    use crate::outbox::QueueLimits;

    /// A backplane's shared state around a hub with one `/v1/ws` subscriber of channel `c`; no
    /// Redis is contacted.
    fn shared_with_subscriber() -> (Arc<Shared>, crate::hub::Subscriber) {
        let metrics = Metrics::new();
        let limits = QueueLimits {
            frames: 64,
            bytes: 1 << 20,
        };
        let hub = Hub::new(limits, HistoryLimits::OFF, Arc::new(Metrics::new()));
        let mut subscriber = hub.subscriber(Form::V1);
        subscriber.join_now(ChannelName::parse("c").unwrap());
        let names = ChannelNames {
            broadcast: "websocket:broadcast".into(),
            prefix: "websocket".into(),
        };
        let client = Client::open("redis://127.0.0.1:1").unwrap();
        let mut shared = Shared::new(client, names, hub, HistoryLimits::OFF, &metrics);
        shared.origin = [7; 16];
        shared.subscribed = AtomicBool::new(true);
        shared.published = AtomicBool::new(true);
        let shared = Arc::new(shared);
        (shared, subscriber)
    }

    /// A message as it travels on Redis from `origin`.
    fn on_redis(origin: [u8; 16], sequence: u64, data: &str) -> Vec<u8> {
        let mut payload = origin.to_vec();
        payload.extend_from_slice(&sequence.to_be_bytes());
        payload.extend_from_slice(data.as_bytes());
        payload
    }

    async fn received(subscriber: &crate::hub::Subscriber) -> Vec<Frame> {
        let mut batch = VecDeque::new();
        let waited = tokio::time::timeout(
            Duration::from_millis(50),
            subscriber.outbox.take_all(&mut batch),
        )
        .await;
        if waited.is_ok() {
            batch.into()
        } else {
            Vec::new()
        }
    }

    #[tokio::test]
    async fn an_own_message_is_delivered_once_whichever_way_comes_first() {
        let channel = ChannelName::parse("c").unwrap();
        let publication = |data: &str| Publication {
            channel: channel.clone(),
            data: data.into(),
        };
        // The publisher first, then Redis hands the same message back.
        let (shared, subscriber) = shared_with_subscriber();
        let mut foreign = ForeignSequences::default();
        shared.deliver_locally([(1, publication("1"))].iter().zip([None]), false);
        fan_out(
            &shared,
            &mut foreign,
            "websocket:c",
            &on_redis([7; 16], 1, "1"),
        );
        assert_eq!(received(&subscriber).await.len(), 1);
        // Redis first, then the publisher decides to deliver locally.
        fan_out(
            &shared,
            &mut foreign,
            "websocket:c",
            &on_redis([7; 16], 2, "2"),
        );
        shared.deliver_locally([(2, publication("2"))].iter().zip([None]), false);
        assert_eq!(received(&subscriber).await.len(), 1);
        // Healthy Redis: nothing counts as local only.
        assert_eq!(shared.metrics.local_only.get(), 0);
    }

    #[tokio::test]
    async fn a_foreign_message_sent_again_is_delivered_once() {
        let (shared, subscriber) = shared_with_subscriber();
        let mut foreign = ForeignSequences::default();
        for sequence in [1, 2, 1, 2, 3] {
            let payload = on_redis([9; 16], sequence, &sequence.to_string());
            fan_out(&shared, &mut foreign, "websocket:c", &payload);
        }
        assert_eq!(received(&subscriber).await.len(), 3);
    }

    #[test]
    fn own_marks_are_kept_only_for_channels_held_here() {
        let (shared, _subscriber) = shared_with_subscriber();
        let elsewhere = Publication {
            channel: ChannelName::parse("nobody-here").unwrap(),
            data: "1".into(),
        };
        shared.deliver_locally([(1, elsewhere)].iter().zip([None]), true);
        assert!(
            lock(&shared.own).is_empty(),
            "no mark for a channel no client holds"
        );
        assert_eq!(shared.metrics.local_only.get(), 0, "nothing was delivered");
    }

    #[test]
    fn channels_map_to_redis_and_back() {
        let names = ChannelNames {
            broadcast: "websocket:broadcast".into(),
            prefix: "app".into(),
        };
        let room = ChannelName::parse("room:1").unwrap();
        assert_eq!(names.redis(&room), "app:room:1");
        assert_eq!(
            names.redis(&ChannelName::broadcast()),
            "websocket:broadcast"
        );
        assert_eq!(names.channel("app:room:1"), Some(room.clone()));
        assert_eq!(
            names.channel("websocket:broadcast"),
            Some(ChannelName::broadcast())
        );
        assert_eq!(
            names.channel("app:broadcast"),
            None,
            "broadcast has its own"
        );
        assert_eq!(names.channel("other:room"), None);
        assert_eq!(names.channel("app:bad name"), None);
        // With history, broadcast is heard on its own channel and on the one with offsets.
        let broadcast = ChannelName::broadcast();
        assert_eq!(
            names.subscriptions(&broadcast, true),
            ["websocket:broadcast", "app#broadcast"]
        );
        assert_eq!(
            names.subscriptions(&broadcast, false),
            ["websocket:broadcast"]
        );
        assert_eq!(names.subscriptions(&room, true), ["app:room:1"]);
        assert_eq!(names.channel("app#broadcast"), Some(broadcast));
        assert_eq!(
            names.history_keys(&room),
            ["app#history{room:1}", "app#meta{room:1}"]
        );
    }

    #[test]
    fn bodies_carry_an_offset_or_the_data_alone() {
        let room = ChannelName::parse("room").unwrap();
        let offset = Offset::parse("00000000000000ff-7").unwrap();
        assert_eq!(
            decode(&room, "#00000000000000ff-7 {\"a\":1}"),
            Some(("{\"a\":1}", Some(offset)))
        );
        assert_eq!(decode(&room, "[1]"), Some(("[1]", None)));
        let broadcast = ChannelName::broadcast();
        assert_eq!(
            decode(&broadcast, r#"{"message":[1]}"#),
            Some(("[1]", None))
        );
        assert_eq!(
            decode(&broadcast, "#00000000000000ff-7 [1]"),
            Some(("[1]", Some(offset)))
        );
        assert_eq!(decode(&room, "#nonsense [1]"), None);
        assert_eq!(decode(&room, "#00000000000000ff-7"), None);
    }
}
