//! The message engine: channels, who is subscribed to each, and handing each message to all of
//! them; and the [`Fanout`] a connection publishes through, to this hub or through a relay (the
//! Redis [`backplane`](crate::backplane)) to the hub of every task. The hub depends on no
//! connection, route or protocol; they, and the backplane, depend on it.
//!
//! A message is the publisher's JSON, validated once. For each protocol among its recipients the
//! hub builds the frame once ([`channel`]); every recipient's queue gets a clone of the same frame,
//! whose bytes are reference-counted, or a small frame for an idle recipient is copied straight
//! into the buffer its next write hands the kernel ([`outbox`](crate::outbox)). Each
//! subscriber has one bounded queue for all its channels. The hub never waits on a queue: a
//! subscriber whose queue is full is evicted on the spot and told so, so a slow client never slows
//! the publisher or anyone else, and the memory a client can pin is bounded by its queue. One lock
//! around the channels gives every subscriber of a channel the same order of messages. A frame for
//! a subscriber whose writer is idle is written by the publisher itself ([`outbox`](crate::outbox)),
//! after that lock is released. A `/wss` client's burst of messages is delivered under one hold of
//! that lock ([`Hub::publish_soon`]).
//!
//! A subscriber enters a channel in two steps, so that a relay can be told first: reserved (it
//! counts as interest in the channel but receives nothing yet), then live (its first frame, the
//! protocol's "subscribed", is queued under the same lock as the messages, so it comes first).
//!
//! A subscriber resuming from an offset gets what it missed, then live messages, with neither
//! overlap nor gap at the seam. Without a relay the hub keeps each channel's recent messages
//! ([`history`]) under that lock: a message is kept and delivered in one step, and a resume reads
//! history and goes live in one step. With a relay, history lives with it (in Redis, shared by
//! every task), and reading it takes a round trip: the resuming subscriber holds the live messages
//! that arrive meanwhile, and when the replay comes it gets the replay, then those held messages
//! the replay did not already hold (by offset), then live ones.

pub mod channel;
mod fanout;
mod history;
mod soon;

pub use channel::{ChannelName, Form};
pub use fanout::{Fanout, Interest, Publication, Relayed};
pub use history::{HistoryLimits, InvalidOffset, Offset, POSITION_TTL};
pub use soon::deliver_waiting;

/// What a channel's history held after an offset: every message that followed it, in order; or
/// `None` when some of that is gone.
pub type Missed = Option<Vec<(Offset, Box<str>)>>;

/// History kept outside this process (the relay's, in Redis).
pub trait HistorySource: Send + Sync + std::fmt::Debug {
    /// What followed `since` on `channel`. Called once the relay delivers the channel's live
    /// messages, so that everything after what it returns arrives live.
    fn missed<'a>(
        &'a self,
        channel: &'a ChannelName,
        since: Offset,
    ) -> std::pin::Pin<Box<dyn Future<Output = Missed> + Send + 'a>>;
}

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use crate::frame::Frame;
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;
use crate::outbox::{BatchScope, Evicted, Outbox, QueueLimits};
use channel::Frames;
use history::{History, Replay};

/// Bytes kept free for a resume's `subscribed` frame when checking that its replay fits: the
/// frame is built only once the answer is known, and a channel name is at most 128 bytes.
const FIRST_FRAME_ROOM: usize = 256;

/// Every channel with a subscriber in this process. One per process, shared by `Arc`.
#[derive(Debug)]
pub struct Hub {
    state: Mutex<State>,
    queue_limits: QueueLimits,
    metrics: Arc<Metrics>,
    /// Where a relay hears of channels gaining interest or losing their last subscriber; unset
    /// without one.
    interest: OnceLock<mpsc::UnboundedSender<Interest>>,
    /// The relay's history, when it keeps one (this process's own is off then).
    relay_history: OnceLock<Arc<dyn HistorySource>>,
}

#[derive(Debug)]
struct State {
    channels: HashMap<ChannelName, Channel>,
    history: History,
}

/// A channel's subscribers, by [`Subscriber::id`].
#[derive(Debug, Default)]
struct Channel {
    members: HashMap<usize, Member>,
}

#[derive(Debug)]
struct Member {
    outbox: Arc<Outbox>,
    form: Form,
    state: MemberState,
}

/// Whether a member receives the channel's messages yet.
#[derive(Debug)]
enum MemberState {
    /// Counted as interest; receives nothing.
    Reserved,
    /// Resuming from the relay's history: messages are held, with their offsets, until the
    /// replay is queued ahead of them. Boxed, like the next: every subscription has a state, and
    /// the rare large ones would make every other one larger.
    Holding(Box<Held>),
    /// Resumed from the relay's history, which it read on another connection than the one live
    /// messages come on: a message the replay held may still arrive live, and an own message
    /// delivered locally after a Redis failure may arrive after later ones. Receives every
    /// message, but none at or before the last offset it was given, in that epoch.
    Resumed(Box<Offset>),
    /// Receives every message.
    Live,
}

/// Messages held for a resuming member.
#[derive(Debug, Default)]
struct Held {
    frames: Vec<(Option<Offset>, Frame)>,
    /// More arrived than its queue could take: they were dropped, and the resume answers that
    /// messages were lost (a slow history read on a busy channel must not evict the client, which
    /// would come back for the same resume).
    overflowed: bool,
}

/// A connection's place in the hub: the outbox its frames arrive in, and the channels it holds.
/// Dropping it leaves every channel, so a connection cannot linger in the hub whatever way it
/// ends.
#[derive(Debug)]
pub struct Subscriber {
    /// Frames waiting to be written to this client, in publish order; evicted if it fills up.
    pub outbox: Arc<Outbox>,
    form: Form,
    hub: Arc<Hub>,
    channels: Vec<ChannelName>,
}

impl Hub {
    /// A hub without channels whose subscribers may each have up to `queue_limits` waiting, and
    /// which keeps each channel's recent messages within `history`.
    pub fn new(
        queue_limits: QueueLimits,
        history: HistoryLimits,
        metrics: Arc<Metrics>,
    ) -> Arc<Hub> {
        Arc::new(Hub {
            state: Mutex::new(State {
                channels: HashMap::new(),
                history: History::new(history),
            }),
            queue_limits,
            metrics,
            interest: OnceLock::new(),
            relay_history: OnceLock::new(),
        })
    }

    /// Reads history from the relay's `source` from now on. Set once, at start-up.
    pub fn read_history_from(&self, source: Arc<dyn HistorySource>) {
        self.relay_history
            .set(source)
            .expect("one relay history per hub, set at start-up");
    }

    /// Sends interest changes to a relay from now on. Set once, before any subscriber exists.
    pub fn relay_interest_to(&self, relay: mpsc::UnboundedSender<Interest>) {
        self.interest
            .set(relay)
            .expect("one relay per hub, set at start-up");
    }

    /// A subscriber speaking `form`, in no channel yet.
    pub fn subscriber(self: &Arc<Self>, form: Form) -> Subscriber {
        Subscriber {
            outbox: Arc::new(Outbox::new()),
            form,
            hub: Arc::clone(self),
            channels: Vec::new(),
        }
    }

    /// Keeps `data` (JSON as its publisher wrote it) in the channel's history and queues it for
    /// every live subscriber of `channel`; a subscriber whose outbox is full is evicted and leaves
    /// the channel. Returns the message's offset, when history keeps it.
    pub fn publish(&self, channel: &ChannelName, data: &str) -> Option<Offset> {
        // Ended after the lock: a broadcast to a thousand idle clients is a thousand system calls,
        // which must not hold up every other publisher.
        let _batch = BatchScope::enter();
        self.publish_under(&mut self.lock(), channel, data)
    }

    /// [`publish`](Self::publish), under the lock `state` is from.
    fn publish_under(
        &self,
        state: &mut State,
        channel: &ChannelName,
        data: &str,
    ) -> Option<Offset> {
        let offset = state.history.record(channel, data, Instant::now());
        self.deliver(state, channel, data, offset);
        offset
    }

    /// Queues a message a relay brought (with the offset its history gave it, if any) for every
    /// live subscriber of `channel`, as [`publish`](Self::publish) does.
    pub fn deliver_relayed(&self, channel: &ChannelName, data: &str, offset: Option<Offset>) {
        let _batch = BatchScope::enter();
        let mut state = self.lock();
        self.deliver(&mut state, channel, data, offset);
    }

    /// Pushes the message to every live subscriber of `channel`, under the lock that orders the
    /// channel's messages (frames for idle subscribers are written when the caller's batch scope
    /// ends, after the lock).
    fn deliver(
        &self,
        state: &mut State,
        channel: &ChannelName,
        data: &str,
        offset: Option<Offset>,
    ) {
        let Some(subscribers) = state.channels.get_mut(channel) else {
            return;
        };
        let mut frames = Frames::default();
        let before = subscribers.members.len();
        let limits = &self.queue_limits;
        subscribers
            .members
            .retain(|_, member| match &mut member.state {
                MemberState::Reserved => true,
                // Held messages count against the queue they are bound for.
                MemberState::Holding(held) => {
                    if held.overflowed {
                        // Lost already: the member goes live with the resume's answer.
                    } else if held.frames.len() < limits.frames {
                        let frame = frames.get(member.form, channel, data, offset);
                        held.frames.push((offset, frame.clone()));
                    } else {
                        held.frames = Vec::new();
                        held.overflowed = true;
                    }
                    true
                }
                MemberState::Resumed(last) => match offset {
                    Some(offset) if offset.not_after(**last) => true,
                    _ => {
                        if let Some(offset) = offset {
                            **last = offset;
                        }
                        let frame = frames.get(member.form, channel, data, offset);
                        member.outbox.push(frame, limits).is_ok()
                    }
                },
                MemberState::Live => {
                    let frame = frames.get(member.form, channel, data, offset);
                    member.outbox.push(frame, limits).is_ok()
                }
            });
        let evicted = before - subscribers.members.len();
        if evicted > 0 {
            self.metrics
                .messages_dropped("slow_consumer", evicted as u64);
            self.metrics.subscriptions.dec_by(evicted as i64);
            if subscribers.members.is_empty() {
                self.forget(state, channel);
            }
        }
    }

    /// Whether channels keep history, here or with the relay, so that a subscriber can resume.
    pub fn keeps_history(&self) -> bool {
        self.relay_history.get().is_some() || self.lock().history.enabled()
    }

    /// The channels with at least one subscriber, live or reserved.
    pub fn channel_names(&self) -> Vec<ChannelName> {
        self.lock().channels.keys().cloned().collect()
    }

    /// Whether `channel` has a subscriber, live or reserved.
    pub fn holds(&self, channel: &str) -> bool {
        self.lock().channels.contains_key(channel)
    }

    /// How many subscribers `channel` has, live or reserved.
    pub fn subscribers(&self, channel: &str) -> usize {
        self.lock()
            .channels
            .get(channel)
            .map_or(0, |c| c.members.len())
    }

    /// The hub's state, once the messages this thread let wait ([`Hub::publish_soon`]) are
    /// delivered: whatever the thread does next with the hub comes after them.
    fn lock(&self) -> MutexGuard<'_, State> {
        let mut state = self.lock_alone();
        self.deliver_waiting_under(&mut state, usize::MAX);
        state
    }

    /// The hub's state, with nothing delivered first.
    fn lock_alone(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves the map consistent (no partial updates).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes an empty channel and tells the relay, under the lock so that the relay hears of a
    /// channel's interest changes in the order they happened.
    fn forget(&self, state: &mut State, channel: &ChannelName) {
        state.channels.remove(channel);
        self.metrics.channels.dec();
        if let Some(relay) = self.interest.get() {
            // The relay outlives every subscriber; if it is gone the process is ending.
            let _ = relay.send(Interest::Released(channel.clone()));
        }
    }
}

impl Subscriber {
    /// The subscriber's key in its channels: its outbox's address, unique while it lives (and it
    /// leaves every channel before its outbox can be freed), so the subscriber carries no id of
    /// its own.
    fn id(&self) -> usize {
        Arc::as_ptr(&self.outbox) as usize
    }

    /// Whether this subscriber holds `channel`, live or reserved.
    pub fn holds(&self, channel: &str) -> bool {
        self.channels.iter().any(|held| held.as_str() == channel)
    }

    /// The channels this subscriber holds, live or reserved.
    pub fn channels(&self) -> &[ChannelName] {
        &self.channels
    }

    /// How many channels this subscriber holds.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Joins `channel` and waits until delivery has begun everywhere: with a relay, until the
    /// relay has subscribed (at once if it already is, or cannot be now). `first` is queued ahead
    /// of every message published on the channel from then on.
    ///
    /// Dropping the future before it completes leaves the channel reserved until the subscriber
    /// is dropped or leaves it.
    pub async fn join(
        &mut self,
        channel: ChannelName,
        first: Option<Frame>,
    ) -> Result<(), Evicted> {
        self.reserve(channel.clone());
        self.wait_for_relay(&channel).await;
        self.go_live(&channel, first)
    }

    /// Joins `channel` like [`join`](Self::join), resuming after `since`: what history holds after
    /// it is queued right behind the first frame, in order, then live messages, none twice and none
    /// missing at the seam. `first` is told whether the replay is whole (`true`, also when nothing
    /// was missed); when it is not (history no longer holds everything after `since`, or `since`
    /// is from an epoch that is gone, or the replay would not fit in the outbox), nothing is
    /// replayed. Returns what `first` was told.
    pub async fn resume(
        &mut self,
        channel: ChannelName,
        since: Offset,
        first: impl FnOnce(bool) -> Frame,
    ) -> Result<bool, Evicted> {
        self.reserve(channel.clone());
        self.wait_for_relay(&channel).await;
        let Some(source) = self.hub.relay_history.get().cloned() else {
            let mut state = self.hub.lock();
            let state = &mut *state;
            let replay = match state
                .history
                .replay(channel.as_str(), since, Instant::now())
            {
                Replay::Recovered(messages) => Some(messages),
                Replay::Lost => None,
            };
            let replay = replay.map(|messages| self.frames_of(&channel, messages));
            let member = self.member(&mut state.channels, &channel)?;
            member.state = MemberState::Live;
            return self.queue_resumed(first, replay, Vec::new());
        };
        {
            let mut state = self.hub.lock();
            self.member(&mut state.channels, &channel)?.state =
                MemberState::Holding(Box::default());
        }
        let missed = source.missed(&channel, since).await;
        let last_replayed = match &missed {
            Some(messages) => messages.last().map_or(since, |(offset, _)| *offset),
            None => since,
        };
        let replay = missed.map(|messages| {
            let borrowed = messages.iter().map(|(offset, data)| (*offset, &**data));
            self.frames_of(&channel, borrowed.collect())
        });
        let mut state = self.hub.lock();
        let member = self.member(&mut state.channels, &channel)?;
        let MemberState::Holding(held) = std::mem::replace(&mut member.state, MemberState::Live)
        else {
            unreachable!("only this subscriber changes its own state")
        };
        // Messages were dropped while the replay was read: it would leave a gap.
        let replay = replay.filter(|_| !held.overflowed);
        // Held messages the replay already holds (or the client saw) are left out; the last
        // offset queued guards against late copies.
        let mut last = last_replayed;
        let held = held
            .frames
            .into_iter()
            .filter(|(offset, _)| !offset.is_some_and(|offset| offset.not_after(last_replayed)))
            .map(|(offset, frame)| {
                last = offset.unwrap_or(last);
                frame
            })
            .collect();
        member.state = MemberState::Resumed(Box::new(last));
        self.queue_resumed(first, replay, held)
    }

    /// The frames of replayed messages.
    fn frames_of(&self, channel: &ChannelName, messages: Vec<(Offset, &str)>) -> Vec<Frame> {
        messages
            .into_iter()
            .map(|(offset, data)| channel::frame(self.form, channel, data, Some(offset)))
            .collect()
    }

    /// This subscriber's membership of `channel`; `Err` if it was evicted from it meanwhile.
    fn member<'a>(
        &self,
        channels: &'a mut HashMap<ChannelName, Channel>,
        channel: &ChannelName,
    ) -> Result<&'a mut Member, Evicted> {
        channels
            .get_mut(channel)
            .and_then(|c| c.members.get_mut(&self.id()))
            .ok_or(Evicted)
    }

    /// Queues `first`, the replay (if whole and it fits) and `held`, in that order, under the
    /// hub's lock (so that no message of the channel comes between). Returns whether the replay
    /// was queued.
    fn queue_resumed(
        &self,
        first: impl FnOnce(bool) -> Frame,
        replay: Option<Vec<Frame>>,
        held: Vec<Frame>,
    ) -> Result<bool, Evicted> {
        let limits = &self.hub.queue_limits;
        // All of it or none, beside what the outbox already holds (other channels' resumes among
        // it): a replay that overflows the outbox would evict the client, which would come back
        // for the same replay. Told it lost messages, it reloads instead; and if even the held
        // messages do not fit, they go too, as lost.
        let fits = |frames: &[&Frame]| {
            let bytes: usize = frames.iter().map(|frame| frame.payload().len()).sum();
            // One more frame, and room for it, for `first`.
            self.outbox
                .has_room(frames.len() + 1, bytes + FIRST_FRAME_ROOM, limits)
        };
        let replay = replay.filter(|replay| fits(&replay.iter().chain(&held).collect::<Vec<_>>()));
        let recovered = replay.is_some();
        let held = if recovered || fits(&held.iter().collect::<Vec<_>>()) {
            held
        } else {
            Vec::new()
        };
        self.outbox.push(&first(recovered), limits)?;
        for frame in replay.into_iter().flatten().chain(held) {
            self.outbox.push(&frame, limits)?;
        }
        Ok(recovered)
    }

    /// With a relay, waits until it delivers `channel`'s messages from every task (at once if it
    /// already does, or cannot now).
    async fn wait_for_relay(&self, channel: &ChannelName) {
        if let Some(relay) = self.hub.interest.get() {
            let (confirmed, confirmation) = oneshot::channel();
            if relay
                .send(Interest::Wanted(channel.clone(), confirmed))
                .is_ok()
            {
                // An error means the relay is gone, as it is only while the process ends.
                let _ = confirmation.await;
            }
        }
    }

    /// Joins `channel` at once, without waiting for a relay: for the `/wss` channel, which a relay
    /// holds for as long as it runs.
    pub fn join_now(&mut self, channel: ChannelName) {
        self.reserve(channel.clone());
        // Nothing is queued yet, so this cannot overflow.
        let _ = self.go_live(&channel, None);
    }

    fn reserve(&mut self, channel: ChannelName) {
        let mut state = self.hub.lock();
        // The subscriber keeps the hub's copy of the name: one allocation per channel, however
        // many subscribers it has.
        let (name, entry) = match state.channels.entry(channel) {
            Entry::Occupied(entry) => (entry.key().clone(), entry.into_mut()),
            Entry::Vacant(entry) => {
                self.hub.metrics.channels.inc();
                (entry.key().clone(), entry.insert(Channel::default()))
            }
        };
        entry.members.insert(
            self.id(),
            Member {
                outbox: Arc::clone(&self.outbox),
                form: self.form,
                state: MemberState::Reserved,
            },
        );
        drop(state);
        self.hub.metrics.subscriptions.inc();
        self.channels.push(name);
    }

    fn go_live(&self, channel: &ChannelName, first: Option<Frame>) -> Result<(), Evicted> {
        let mut state = self.hub.lock();
        let member = self.member(&mut state.channels, channel)?;
        member.state = MemberState::Live;
        match first {
            Some(frame) => self.outbox.push(&frame, &self.hub.queue_limits),
            None => Ok(()),
        }
    }

    /// Leaves `channel`; `last` is queued after every message of it already queued. Returns
    /// whether the subscriber held it.
    pub fn leave(&mut self, channel: &str, last: Option<Frame>) -> Result<bool, Evicted> {
        let Some(index) = self.channels.iter().position(|c| c.as_str() == channel) else {
            return Ok(false);
        };
        let channel = self.channels.swap_remove(index);
        let mut state = self.hub.lock();
        self.remove_from(&mut state, &channel);
        match last {
            Some(frame) => self
                .outbox
                .push(&frame, &self.hub.queue_limits)
                .map(|()| true),
            None => Ok(true),
        }
    }

    /// Queues a frame of the subscriber's own (a reply) behind what is already queued.
    pub fn send(&self, frame: Frame) -> Result<(), Evicted> {
        self.outbox.push(&frame, &self.hub.queue_limits)
    }

    fn remove_from(&self, state: &mut State, channel: &ChannelName) {
        let Some(subscribers) = state.channels.get_mut(channel) else {
            return;
        };
        if subscribers.members.remove(&self.id()).is_some() {
            self.hub.metrics.subscriptions.dec();
        }
        if subscribers.members.is_empty() {
            self.hub.forget(state, channel);
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        if self.channels.is_empty() {
            return;
        }
        let mut state = self.hub.lock();
        for channel in &self.channels {
            self.remove_from(&mut state, channel);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use futures_util::FutureExt;

    use super::*;

    fn hub(frames: usize) -> Arc<Hub> {
        let limits = QueueLimits {
            frames,
            bytes: 1 << 20,
        };
        Hub::new(limits, HistoryLimits::OFF, Arc::new(Metrics::new()))
    }

    fn name(name: &str) -> ChannelName {
        ChannelName::parse(name).unwrap()
    }

    async fn taken(subscriber: &Subscriber) -> VecDeque<Frame> {
        let mut batch = VecDeque::new();
        subscriber.outbox.take_all(&mut batch).await.unwrap();
        batch
    }

    #[tokio::test]
    async fn every_subscriber_gets_every_message_in_its_own_envelope() {
        let hub = hub(8);
        let mut old = hub.subscriber(Form::Wss);
        old.join_now(ChannelName::broadcast());
        let mut new = hub.subscriber(Form::V1);
        new.join(ChannelName::broadcast(), None).await.unwrap();
        hub.publish(&ChannelName::broadcast(), "1");
        hub.publish(&ChannelName::broadcast(), "[2]");
        assert_eq!(
            taken(&old).await,
            [
                Frame::text(r#"{"message":1}"#),
                Frame::text(r#"{"message":[2]}"#)
            ]
        );
        assert_eq!(
            taken(&new).await,
            [
                Frame::text(r#"{"type":"message","channel":"broadcast","data":1}"#),
                Frame::text(r#"{"type":"message","channel":"broadcast","data":[2]}"#)
            ]
        );
    }

    #[tokio::test]
    async fn a_message_reaches_only_its_channel() {
        let hub = hub(8);
        let mut a = hub.subscriber(Form::V1);
        a.join(name("a"), Some(Frame::text("joined a")))
            .await
            .unwrap();
        let mut b = hub.subscriber(Form::V1);
        b.join(name("b"), None).await.unwrap();
        hub.publish(&name("a"), "1");
        hub.publish(&name("nobody"), "1");
        assert_eq!(
            taken(&a).await.len(),
            2,
            "its first frame, then the message"
        );
        assert!(
            b.outbox
                .take_all(&mut VecDeque::new())
                .now_or_never()
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_full_outbox_evicts_only_that_subscriber() {
        let hub = hub(2);
        let mut slow = hub.subscriber(Form::Wss);
        slow.join_now(ChannelName::broadcast());
        let mut fast = hub.subscriber(Form::Wss);
        fast.join_now(ChannelName::broadcast());
        for n in 0..5 {
            hub.publish(&ChannelName::broadcast(), &n.to_string());
            taken(&fast).await;
        }
        slow.outbox.evicted().await;
        assert_eq!(
            hub.subscribers(channel::BROADCAST),
            1,
            "only the fast one remains"
        );
    }

    /// A relay's history that holds messages 1 to 3 of epoch 1.
    #[derive(Debug)]
    struct ThreeKept;

    impl HistorySource for ThreeKept {
        fn missed<'a>(
            &'a self,
            _channel: &'a ChannelName,
            since: Offset,
        ) -> std::pin::Pin<Box<dyn Future<Output = Missed> + Send + 'a>> {
            let kept = (since.position() + 1..=3)
                .map(|n| (Offset::new(1, n), n.to_string().into_boxed_str()))
                .collect();
            Box::pin(async move { Some(kept) })
        }
    }

    #[tokio::test]
    async fn a_message_the_replay_held_is_not_delivered_again_when_it_arrives_late() {
        let hub = hub(16);
        hub.read_history_from(Arc::new(ThreeKept));
        let mut resuming = hub.subscriber(Form::V1);
        let recovered = resuming
            .resume(name("a"), Offset::new(1, 1), |recovered| {
                Frame::text(format!("recovered {recovered}"))
            })
            .await
            .unwrap();
        assert!(recovered);
        // Message 3 was in the replay; its live copy comes after, on another connection, and a
        // message without an offset (from a task of the previous version) before it.
        hub.deliver_relayed(&name("a"), "\"old\"", None);
        hub.deliver_relayed(&name("a"), "3", Some(Offset::new(1, 3)));
        hub.deliver_relayed(&name("a"), "4", Some(Offset::new(1, 4)));
        hub.deliver_relayed(&name("a"), "5", Some(Offset::new(1, 5)));
        let data: Vec<String> = taken(&resuming)
            .await
            .iter()
            .map(|frame| String::from_utf8(frame.payload().to_vec()).unwrap())
            .collect();
        assert_eq!(data.len(), 6, "{data:?}");
        assert_eq!(data[0], "recovered true");
        let expected = ["2", "3", "\"old\"", "4", "5"];
        for (frame, n) in data[1..].iter().zip(expected) {
            assert!(frame.ends_with(&format!(r#""data":{n}}}"#)), "{data:?}");
        }
    }

    /// A relay's history whose read takes until the test lets it go.
    #[derive(Debug)]
    struct SlowHistory(Arc<tokio::sync::Notify>);

    impl HistorySource for SlowHistory {
        fn missed<'a>(
            &'a self,
            _channel: &'a ChannelName,
            _since: Offset,
        ) -> std::pin::Pin<Box<dyn Future<Output = Missed> + Send + 'a>> {
            Box::pin(async move {
                self.0.notified().await;
                Some(Vec::new())
            })
        }
    }

    #[tokio::test]
    async fn more_live_messages_than_a_queue_holds_during_a_slow_resume_are_lost_not_an_eviction() {
        let hub = hub(4);
        let read = Arc::new(tokio::sync::Notify::new());
        hub.read_history_from(Arc::new(SlowHistory(Arc::clone(&read))));
        let mut resuming = hub.subscriber(Form::V1);
        let resume = tokio::spawn(async move {
            let recovered = resuming
                .resume(name("a"), Offset::new(1, 1), |recovered| {
                    Frame::text(format!("recovered {recovered}"))
                })
                .await;
            (recovered, resuming)
        });
        while hub.subscribers("a") == 0 {
            tokio::task::yield_now().await;
        }
        for n in 2..10 {
            hub.deliver_relayed(&name("a"), &n.to_string(), Some(Offset::new(1, n)));
        }
        read.notify_one();
        let (recovered, resuming) = resume.await.unwrap();
        assert_eq!(recovered, Ok(false));
        hub.deliver_relayed(&name("a"), "10", Some(Offset::new(1, 10)));
        let frames = taken(&resuming).await;
        assert_eq!(frames.len(), 2, "{frames:?}");
        assert_eq!(frames[0].payload(), b"recovered false");
        assert!(frames[1].payload().ends_with(br#""data":10}"#));
    }

    #[tokio::test]
    async fn leaving_and_dropping_free_the_channel_and_tell_the_relay() {
        let hub = hub(8);
        let (relay, mut interest) = mpsc::unbounded_channel();
        hub.relay_interest_to(relay);
        let relay = tokio::spawn(async move {
            let mut released = Vec::new();
            while let Some(change) = interest.recv().await {
                match change {
                    Interest::Wanted(_, confirm) => drop(confirm.send(())),
                    Interest::Released(channel) => released.push(channel.to_string()),
                }
            }
            released
        });
        let mut member = hub.subscriber(Form::V1);
        member.join(name("a"), None).await.unwrap();
        member.join(name("b"), None).await.unwrap();
        assert_eq!(hub.channel_names().len(), 2);
        assert_eq!(member.leave("a", Some(Frame::text("left"))), Ok(true));
        assert_eq!(member.leave("a", None), Ok(false));
        assert!(!hub.holds("a") && hub.holds("b"));
        drop(member);
        assert!(hub.channel_names().is_empty());
        drop(hub);
        assert_eq!(relay.await.unwrap(), ["a", "b"]);
    }
}
