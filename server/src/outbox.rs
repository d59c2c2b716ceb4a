//! A connection's queue of frames to write: bounded in frames and in payload bytes, allocation-free
//! while empty (an idle connection costs a few dozen bytes here), and drained a whole batch at a
//! time, so the writer takes the lock once per batch and flushes once.
//!
//! Two ways in. [`Outbox::push`] never waits: a push into a full outbox marks it evicted, which is
//! how a slow client is cut off without slowing the sender (broadcasts). [`Outbox::push_when_room`]
//! waits for room instead, which is backpressure for a client that is both the producer and the
//! consumer of its queue (echo): it is simply not read from until it reads.
//!
//! The byte bound is what makes the memory a client can pin predictable: a count alone lets 1,024
//! queued 64 KiB frames hold 64 MiB for one client that never reads.
//!
//! Once the outbox serves a connection ([`Outbox::attach`]), a frame pushed while the writer waits
//! with nothing queued is written to the socket by whoever pushes it, as uWebSockets does, and only
//! what the socket does not take is queued for the writer. Waking the writer's task for every
//! frame instead cost a task switch per delivery, across threads that wake each other: at a steady
//! 50,000 deliveries/s, twice the server CPU of a server that writes where the message arrives.
//! Who may write to the socket is decided under the outbox's lock ([`Holder`]), so the bytes of two
//! frames never interleave and frames go out in the order they were pushed.
//!
//! The producer writes when it is done for now, not at every push: within a [`BatchScope`] (a
//! [`Batching`] task's poll, a publish) the frames it claims wait, those pushed behind them queue
//! up, and each client gets everything in one write when the scope ends. At full speed a
//! publisher handles many messages per wake-up, and a system call per message and client would
//! cost far more than the wake-ups saved (full-speed broadcast to 100 clients: 0.66 s of server
//! CPU written per scope, 3.96 s written at every push). A busy worker thread also keeps a frame
//! nothing was queued behind for a few polls, so that a client's messages from several publishers
//! share a write, and writes everything before it parks ([`before_park`]). What a thread pushes to
//! a client it claimed, while nothing is queued behind the claim, is copied into the claim
//! without the lock ([`Claim`]).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::task::AtomicWaker;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::frame::{Frame, MAX_SLICES};
use crate::metrics::Metrics;

/// The queue between whoever produces a connection's frames and its writer.
///
/// Every connection has one for its whole life, so it holds nothing it can do without: its limits
/// are the owner's (the hub's, or the connection's), and only an outbox built for backpressure has
/// the second notifier.
#[derive(Debug, Default)]
pub struct Outbox {
    state: Mutex<State>,
    /// Wakes the writer: frames arrived in an empty outbox, it was evicted, or a frame written
    /// directly is done with the socket. One waker, the writer's, kept here: a waiting writer
    /// holds no waiter node of its own in its task, which every connection has for its whole life.
    ready: AtomicWaker,
    /// Wakes a producer waiting in `push_when_room`: the writer took the queued frames.
    room: Option<Box<Notify>>,
    /// The connection's socket, once the outbox serves one: the reader and the writer use it
    /// from here, and producers write to it directly.
    attached: OnceLock<Attached>,
    /// Which thread's claim on the socket takes this thread's next frames without the lock, and
    /// where in that thread's list ([`claim_word`]); 0 when none does.
    open_claim: AtomicU64,
}

/// What an outbox serving a connection writes to, and counts in.
#[derive(Debug)]
struct Attached {
    socket: TcpStream,
    metrics: Arc<Metrics>,
    /// Data frames written to this connection, for its close log line.
    sent: AtomicU64,
}

/// How much one outbox may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Frames.
    pub frames: usize,
    /// Payload bytes, at most `u32::MAX`. An empty outbox takes one frame of any size, so nothing
    /// can be stuck.
    pub bytes: u32,
}

/// Who may write to the socket now. Exactly one at a time, so that no frame's bytes interleave
/// with another's.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Holder {
    /// The writer: it is writing a batch, or has not yet come to wait for one (the `/wss`
    /// greeting goes out before then).
    #[default]
    Writer,
    /// Nobody: the writer waits for frames with none in hand, so the next one pushed into the
    /// empty queue is written directly by its producer.
    Free,
    /// A producer is writing one frame directly. Frames pushed meanwhile are queued behind it;
    /// `awaited` when the close waits for the socket.
    Producer { awaited: bool },
    /// The close, for good: nothing is written directly any more.
    Closer,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Frame>,
    /// Payload bytes queued; a u32 beside `evicted` costs no space.
    bytes: u32,
    /// Pongs queued; a u16 in the same padding.
    pongs: u16,
    evicted: bool,
    holder: Holder,
    /// The queue's first frame is the rest of one a producer began writing: nothing may go out
    /// before it, and it was counted as sent when it began.
    front_begun: bool,
}

impl State {
    fn has_room_for(&self, limits: &QueueLimits, bytes: u32) -> bool {
        self.frames.is_empty()
            || (self.frames.len() < limits.frames
                && self.bytes.saturating_add(bytes) <= limits.bytes)
    }

    /// Queues `frame`. Returns whether the writer must be woken for it: it arrived in an empty
    /// queue, and no producer is writing (that one wakes the writer once done).
    fn append(&mut self, frame: Frame, bytes: u32) -> bool {
        let was_empty = self.frames.is_empty();
        self.frames.push_back(frame);
        self.bytes = self.bytes.saturating_add(bytes);
        was_empty && !matches!(self.holder, Holder::Producer { .. })
    }

    /// Counts the queue's payload bytes and pongs again, after frames were put back in front.
    fn recount(&mut self) {
        let begun = usize::from(self.front_begun);
        let (begun, unbegun) = (
            self.frames.iter().take(begun),
            self.frames.iter().skip(begun),
        );
        self.bytes = begun
            .map(|frame| u32::try_from(frame.wire().len()).unwrap_or(u32::MAX))
            .chain(unbegun.clone().map(payload_bytes))
            .fold(0, u32::saturating_add);
        self.pongs =
            u16::try_from(unbegun.filter(|frame| frame.is_pong()).count()).unwrap_or(u16::MAX);
    }

    /// Whether a frame pushed now may be written directly by its producer.
    fn free(&self) -> bool {
        self.holder == Holder::Free && self.frames.is_empty() && !self.evicted
    }
}

/// A frame's payload bytes, as counted against `QueueLimits::bytes` (a control frame's are at most
/// 125; a message is at most `MAX_MESSAGE_SIZE`, 64 MiB).
fn payload_bytes(frame: &Frame) -> u32 {
    u32::try_from(frame.payload().len()).unwrap_or(u32::MAX)
}

/// Pongs an outbox holds at most. A client that pings faster than it reads would otherwise grow
/// its queue of pongs for as long as the rate limit lets it ping; past this, the newest pong takes
/// the place of the last one queued, which RFC 6455 (5.5.3) allows: a pong may answer only the
/// most recent ping.
pub const MAX_QUEUED_CONTROL_FRAMES: u16 = 32;

/// Frames' worth of room an idle connection's queues keep, so that the next few frames need no
/// allocation.
pub const IDLE_ROOM: usize = 64;

/// The outbox was full once, so its client was let go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evicted;

/// Data frames and their payload bytes, as counted in `websocket_messages_delivered_total` and
/// `websocket_bytes_sent_total` once written (pings and pongs are not counted).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub frames: u64,
    pub bytes: u64,
}

impl Sent {
    fn of<'a>(frames: impl IntoIterator<Item = &'a Frame>) -> Sent {
        frames
            .into_iter()
            .filter(|frame| frame.is_data())
            .fold(Sent::default(), |sent, frame| Sent {
                frames: sent.frames + 1,
                bytes: sent.bytes + frame.payload().len() as u64,
            })
    }

    fn add(&mut self, other: Sent) {
        self.frames += other.frames;
        self.bytes += other.bytes;
    }

    /// Adds these to the process's counters.
    pub fn count_in(self, metrics: &Metrics) {
        if self.frames > 0 {
            metrics.messages_delivered.inc_by(self.frames);
            metrics.bytes_sent.inc_by(self.bytes);
        }
    }
}

thread_local! {
    /// Sockets claimed on this thread for direct writes, with the frames to write there.
    static CLAIMED: RefCell<Vec<Claim>> = const { RefCell::new(Vec::new()) };
    /// Buffers of claims written, for the next ones.
    static SPARE_BUFFERS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    /// Where [`try_write_gathered`] copies frames.
    static GATHER_BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// This thread's part of an [`Outbox::open_claim`].
    static THREAD_TOKEN: u64 = NEXT_THREAD_TOKEN.fetch_add(1, Ordering::Relaxed);
    /// When the oldest of them was claimed.
    static CLAIMED_SINCE: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Whether a [`BatchScope`] is open on this thread.
    static BATCHING: Cell<bool> = const { Cell::new(false) };
    /// Inner scopes (publishes) ended since this thread last wrote its claimed frames.
    static ENDED_INSIDE: Cell<usize> = const { Cell::new(0) };
    /// This thread writes its claimed frames before it parks ([`before_park`]), so a
    /// [`Batching`] poll may leave some for the next polls.
    static WRITES_AT_PARK: Cell<bool> = const { Cell::new(false) };
    /// [`Batching`] polls ended since this thread last wrote all its claimed frames.
    static POLLS_HELD: Cell<usize> = const { Cell::new(0) };
    /// Runs when this thread's outermost scope ends, before it writes.
    static BEFORE_SCOPE_ENDS: Cell<Option<fn()>> = const { Cell::new(None) };
}

/// Writes as much of `frames` as `socket` takes now: copied into one buffer when they are small,
/// which the kernel copies faster than as many slices of a `writev`; or the slices, when copying
/// them would cost more than it saves.
pub fn try_write_gathered<'a>(
    socket: &TcpStream,
    frames: impl Iterator<Item = &'a [u8]> + Clone,
) -> io::Result<usize> {
    let total: usize = frames.clone().take(MAX_SLICES).map(<[u8]>::len).sum();
    if total <= CLAIM_BUFFER {
        return GATHER_BUFFER.with_borrow_mut(|buffer| {
            buffer.clear();
            for frame in frames.take(MAX_SLICES) {
                buffer.extend_from_slice(frame);
            }
            socket.try_write(buffer)
        });
    }
    let mut slices = [IoSlice::new(&[]); MAX_SLICES];
    let mut count = 0;
    for (slice, frame) in slices.iter_mut().zip(frames) {
        *slice = IoSlice::new(frame);
        count += 1;
    }
    socket.try_write_vectored(&slices[..count])
}

/// Tokens of the threads that claimed sockets, from 1 (0 is no claim).
static NEXT_THREAD_TOKEN: AtomicU64 = AtomicU64::new(1);

/// A socket this thread claimed, and what it writes there when its scope ends.
///
/// While nothing is queued in the outbox behind the claim, this thread's next frames for the
/// client are copied here without taking the outbox's lock ([`Outbox::open_claim`]): a broadcast
/// pushes one frame per client per message, and the lock and the frame's reference count were
/// four atomic operations each, about a sixth of the server's CPU at full-speed broadcast. Copied
/// end to end, the frames also go to the kernel as one buffer, which it copies faster than many
/// small slices of a `writev` (full-speed broadcast of 128-byte messages to 100 clients, one worker
/// thread: 0.58 s of server CPU written as slices, 0.52 s copied into one buffer at write time,
/// 0.43 s copied here, the lock and the reference count left alone).
struct Claim {
    outbox: Arc<Outbox>,
    /// The claimed frame, when it is too large to copy; it goes first.
    large: Option<Frame>,
    /// Small frames, the claimed one and those this thread pushed behind it, end to end.
    copied: Vec<u8>,
    /// Frames in `copied`.
    copied_frames: usize,
    /// Payload bytes in `copied`, as counted against `QueueLimits::bytes`.
    copied_bytes: u32,
    /// What `copied` counts once written.
    copied_sent: Sent,
}

/// Frames copied into a claim are at most this long (larger ones keep their shared bytes, and the
/// queue), and a claim copies at most [`CLAIM_BUFFER`] bytes.
const COPIED_FRAME: usize = 1024;
const CLAIM_BUFFER: usize = 16 * 1024;

/// Buffers a thread keeps for its next claims.
const SPARE_BUFFERS_KEPT: usize = 1024;

/// Keeps a written claim's buffer for the thread's next claim.
fn recycle(mut buffer: Vec<u8>) {
    buffer.clear();
    SPARE_BUFFERS.with_borrow_mut(|spare| {
        if buffer.capacity() <= CLAIM_BUFFER && spare.len() < SPARE_BUFFERS_KEPT {
            spare.push(buffer);
        }
    });
}

/// The value of [`Outbox::open_claim`] for a claim of this thread at `slot` in its list.
fn claim_word(slot: usize) -> u64 {
    THREAD_TOKEN.with(|token| token << 32 | slot as u64)
}

impl Claim {
    fn new(outbox: &Arc<Outbox>, frame: &Frame) -> Claim {
        let mut claim = Claim {
            outbox: Arc::clone(outbox),
            large: None,
            copied: SPARE_BUFFERS.with_borrow_mut(Vec::pop).unwrap_or_default(),
            copied_frames: 0,
            copied_bytes: 0,
            copied_sent: Sent::default(),
        };
        if frame.wire().len() <= COPIED_FRAME {
            claim.copy(frame);
        } else {
            claim.large = Some(frame.clone());
        }
        claim
    }

    fn copy(&mut self, frame: &Frame) {
        self.copied.extend_from_slice(frame.wire());
        self.copied_frames += 1;
        self.copied_bytes = self.copied_bytes.saturating_add(payload_bytes(frame));
        self.copied_sent.add(Sent::of([frame]));
    }

    /// Copies `frame` if it is small and fits beside what this claim holds in `limits` (the
    /// frames behind the claimed one count as the queue); returns whether it did.
    fn take(&mut self, frame: &Frame, limits: &QueueLimits) -> bool {
        let len = frame.wire().len();
        let behind = self.copied_frames - usize::from(self.large.is_none());
        let fits = len <= COPIED_FRAME
            && self.copied.len() + len <= CLAIM_BUFFER
            && behind < limits.frames
            && self.copied_bytes.saturating_add(payload_bytes(frame)) <= limits.bytes;
        if fits {
            self.copy(frame);
        }
        fits
    }

    /// Whether it holds only the claimed frame.
    fn is_lone(&self) -> bool {
        self.copied_frames + usize::from(self.large.is_some()) == 1
    }
}

/// Publishes (inner scopes) a scope lets wait before it writes what they claimed. Frames pushed
/// behind a claimed one wait for it, so a publisher that reads a burst of thousands of messages in
/// one poll would otherwise hold every recipient's queue until the end of the burst; at 32, one
/// write still carries up to 32 of a recipient's messages. (A queue that fills behind a frame
/// its own thread claimed is written at once instead of evicted, whatever `CLIENT_QUEUE_SIZE` is.)
const PUBLISHES_PER_WRITE: usize = 32;

/// [`Batching`] polls for which a busy thread keeps a claimed frame that nothing was queued
/// behind, on a thread that writes everything before it parks. A client of a channel among many
/// gets each message from another publisher, whose task is polled in turn: written at the end of
/// the poll that claimed it, every message took a system call of its own (channels case, 10,000
/// clients in 1,000 channels: 506,000 `writev` for 500,000 deliveries). Frames with others queued
/// behind them are written at the end of every poll all the same, and a thread that runs out of
/// work writes everything, so an idle server adds no latency.
const POLLS_PER_WRITE: usize = 16;

/// How long a busy thread keeps a claimed frame at most.
const MAX_HOLD: Duration = Duration::from_millis(1);

/// Writes the frames this thread claimed, before it parks: the runtime's `on_thread_park` hook.
/// From its first call on, the thread's [`Batching`] polls may keep claimed frames for up to
/// [`POLLS_PER_WRITE`] polls or [`MAX_HOLD`], as it is sure to write them once it has nothing
/// else to do.
pub fn before_park() {
    WRITES_AT_PARK.set(true);
    write_claimed_frames(Keep::Nothing);
}

/// Whether a [`BatchScope`] is open on this thread.
pub fn in_batch_scope() -> bool {
    BATCHING.get()
}

/// Runs `hook` when this thread's outermost [`BatchScope`] ends, before it writes what was
/// claimed: for frames a producer let wait, to go out with the rest.
pub fn before_scope_ends(hook: fn()) {
    BEFORE_SCOPE_ENDS.set(Some(hook));
}

/// What a write of the claimed frames leaves for later.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keep {
    Nothing,
    /// Frames with nothing queued behind them yet.
    Lone,
}

/// While one lives, frames claimed for direct writes on this thread wait; when the outermost ends,
/// it writes them, each client's with whatever was queued behind it meanwhile, in one write
/// (and an inner one, a publish, writes them once [`PUBLISHES_PER_WRITE`] have ended). Outside any
/// scope a claimed frame is written at once.
///
/// A scope must not outlive the moment its thread may run other work (an await): a claimed frame
/// holds its client's socket, and frames pushed behind it wait until it is written.
#[must_use]
pub struct BatchScope {
    outermost: bool,
    /// Publishes an inner scope counts as (see [`PUBLISHES_PER_WRITE`]).
    publishes: usize,
    /// A [`Batching`] task's poll, which a busy thread may leave lone frames after.
    polling: bool,
}

impl BatchScope {
    /// Opens a scope on this thread.
    pub fn enter() -> BatchScope {
        BatchScope::enter_for(1)
    }

    /// Opens a scope on this thread for `publishes` publishes.
    pub fn enter_for(publishes: usize) -> BatchScope {
        BatchScope {
            outermost: !BATCHING.replace(true),
            publishes,
            polling: false,
        }
    }
}

impl Drop for BatchScope {
    fn drop(&mut self) {
        if !self.outermost {
            let ended = ENDED_INSIDE.get() + self.publishes;
            if ended < PUBLISHES_PER_WRITE {
                ENDED_INSIDE.set(ended);
                return;
            }
            write_claimed_frames(Keep::Lone);
            return;
        }
        if let Some(hook) = BEFORE_SCOPE_ENDS.take() {
            hook();
        }
        BATCHING.set(false);
        let held = POLLS_HELD.get() + 1;
        let keep = self.polling
            && WRITES_AT_PARK.get()
            && held < POLLS_PER_WRITE
            && CLAIMED_SINCE
                .get()
                .is_none_or(|since| since.elapsed() < MAX_HOLD);
        if keep {
            POLLS_HELD.set(held);
            write_claimed_frames(Keep::Lone);
        } else {
            write_claimed_frames(Keep::Nothing);
        }
    }
}

pin_project_lite::pin_project! {
    /// A task whose every poll is a [`BatchScope`]: what it delivers to a client in one wake-up
    /// (a burst of messages a publisher sent, a batch Redis brought) goes out together; on a busy
    /// thread that writes before it parks ([`before_park`]), a lone frame may wait a few polls
    /// for company.
    pub struct Batching<F> {
        #[pin]
        task: F,
    }
}

impl<F> Batching<F> {
    /// `task`, batching its direct writes per poll.
    pub fn new(task: F) -> Batching<F> {
        Batching { task }
    }
}

impl<F: Future> Future for Batching<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _scope = BatchScope {
            outermost: !BATCHING.replace(true),
            publishes: 1,
            polling: true,
        };
        self.project().task.poll(cx)
    }
}

/// Writes a frame claimed for a direct write: now outside a [`BatchScope`], when the scope ends
/// inside one.
fn claimed(outbox: &Arc<Outbox>, frame: &Frame) {
    let claim = Claim::new(outbox, frame);
    CLAIMED.with_borrow_mut(|claimed| {
        if claimed.is_empty() {
            CLAIMED_SINCE.set(Some(Instant::now()));
        }
        // Opened for this slot, unless a frame queued behind it since closed it.
        debug_assert!(
            [0, claim_word(claimed.len())].contains(&outbox.open_claim.load(Ordering::Relaxed)),
            "opened for this slot"
        );
        claimed.push(claim);
    });
    if !BATCHING.get() {
        write_claimed_frames(Keep::Nothing);
    }
}

/// Writes the frames claimed on this thread but what `keep` leaves, counting what went out in
/// each outbox's metrics.
fn write_claimed_frames(keep: Keep) {
    ENDED_INSIDE.set(0);
    if keep == Keep::Nothing {
        POLLS_HELD.set(0);
    }
    let Some(mut claimed) =
        CLAIMED.with_borrow_mut(|claimed| (!claimed.is_empty()).then(|| std::mem::take(claimed)))
    else {
        return;
    };
    let mut kept = Vec::new();
    // Every outbox of a process counts in the same metrics: added up, they touch the shared
    // counters once per scope rather than once per client.
    let mut counting: Option<(Arc<Metrics>, Sent)> = None;
    for (slot, claim) in claimed.drain(..).enumerate() {
        // Still open, nothing was queued behind it.
        if keep == Keep::Lone && claim.is_lone() && claim.outbox.move_open_claim(slot, kept.len()) {
            kept.push(claim);
            continue;
        }
        let outbox = Arc::clone(&claim.outbox);
        let sent = outbox.write_claimed(claim);
        let metrics = &outbox.attached().metrics;
        match &mut counting {
            Some((counted, total)) if Arc::ptr_eq(counted, metrics) => total.add(sent),
            _ => {
                if let Some((counted, total)) = counting.replace((Arc::clone(metrics), sent)) {
                    total.count_in(&counted);
                }
            }
        }
    }
    if let Some((counted, total)) = counting {
        total.count_in(&counted);
    }
    if kept.is_empty() {
        CLAIMED_SINCE.set(None);
        // The room stays with the thread for its next scope.
        CLAIMED.with_borrow_mut(|empty| {
            if empty.is_empty() {
                *empty = claimed;
            }
        });
    } else {
        // Nothing claims while frames are written: the list is still empty.
        CLAIMED.with_borrow_mut(|empty| *empty = kept);
    }
}

impl Outbox {
    /// An empty outbox for [`Outbox::push`], which evicts when full.
    pub fn new() -> Outbox {
        Outbox::default()
    }

    /// An empty outbox whose producer may also wait for room ([`Outbox::push_when_room`]).
    pub fn with_backpressure() -> Outbox {
        Outbox {
            room: Some(Box::new(Notify::new())),
            ..Outbox::new()
        }
    }

    /// Serves the connection on `socket` from now on, counting what is written to it in
    /// `metrics`; returns the socket, which the connection's reader and writer use from here.
    ///
    /// # Panics
    /// On an outbox that serves a connection already.
    pub fn attach(&self, socket: TcpStream, metrics: Arc<Metrics>) -> &TcpStream {
        let attached = Attached {
            socket,
            metrics,
            sent: AtomicU64::new(0),
        };
        self.attached
            .set(attached)
            .expect("an outbox serves one connection");
        &self.attached().socket
    }

    fn attached(&self) -> &Attached {
        self.attached
            .get()
            .expect("frames are written only to an attached outbox")
    }

    /// Data frames written to the connection.
    pub fn sent(&self) -> u64 {
        self.attached
            .get()
            .map_or(0, |attached| attached.sent.load(Ordering::Relaxed))
    }

    /// Counts what the writer wrote.
    pub fn wrote(&self, sent: Sent) {
        let attached = self.attached();
        attached.sent.fetch_add(sent.frames, Ordering::Relaxed);
        sent.count_in(&attached.metrics);
    }

    /// Whether `frames` more frames of `bytes` payload bytes in all fit beside what is queued.
    pub fn has_room(&self, frames: usize, bytes: usize, limits: &QueueLimits) -> bool {
        let state = self.lock();
        state.frames.len() + frames <= limits.frames
            && state.bytes as usize + bytes <= limits.bytes as usize
    }

    /// Writes `frame` to the socket if nothing is queued and the writer waits (at the end of the
    /// [`BatchScope`], if one is open), or queues it if it fits in `limits`. A full outbox is evicted instead, and stays so: `Err` from then on.
    ///
    /// Borrowed: most pushes copy a small frame into a claim, and the frame's shared reference
    /// count, touched twice per recipient, is then left alone.
    pub fn push(self: &Arc<Self>, frame: &Frame, limits: &QueueLimits) -> Result<(), Evicted> {
        if !self.add_to_open_claim(frame, limits) && self.queue_or_claim(frame, limits)? {
            claimed(self, frame);
        }
        Ok(())
    }

    /// Copies `frame` into this thread's claim on the socket, if it has one that nothing was
    /// queued behind (so it goes out in push order) and it takes the frame; returns whether it
    /// did.
    fn add_to_open_claim(self: &Arc<Self>, frame: &Frame, limits: &QueueLimits) -> bool {
        let word = self.open_claim.load(Ordering::Acquire);
        // Another thread's claim, or none: never this thread's token.
        if word >> 32 != THREAD_TOKEN.with(|token| *token) {
            return false;
        }
        CLAIMED.with_borrow_mut(
            |claimed| match claimed.get_mut((word & 0xffff_ffff) as usize) {
                Some(claim) if Arc::ptr_eq(&claim.outbox, self) => claim.take(frame, limits),
                _ => false,
            },
        )
    }

    /// Queues `frame` behind what is queued (see [`State::append`]), closing a claim open on the
    /// socket first: what its thread pushes from then on must queue behind this frame.
    fn queue(&self, state: &mut State, frame: Frame, bytes: u32) -> bool {
        self.close_claim(state);
        state.append(frame, bytes)
    }

    /// Closes the claim on the socket to lock-free additions, if one is open.
    fn close_claim(&self, state: &State) {
        // Looked at first: a store would take the cache line from the claiming thread's core at
        // every frame another thread queues behind its claim.
        if matches!(state.holder, Holder::Producer { .. })
            && self.open_claim.load(Ordering::Relaxed) != 0
        {
            self.open_claim.store(0, Ordering::Release);
        }
    }

    /// Moves this thread's open claim from `from` to `to` in its list; false if it was closed.
    fn move_open_claim(&self, from: usize, to: usize) -> bool {
        self.open_claim
            .compare_exchange(
                claim_word(from),
                claim_word(to),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// Queues `frame` as [`push`](Self::push) does, or claims the socket for it (true).
    fn queue_or_claim(
        self: &Arc<Self>,
        frame: &Frame,
        limits: &QueueLimits,
    ) -> Result<bool, Evicted> {
        let bytes = payload_bytes(frame);
        let mut state = self.lock();
        if state.evicted {
            return Err(Evicted);
        }
        if self.claim(&mut state) {
            return Ok(true);
        }
        if !state.has_room_for(limits, bytes) && matches!(state.holder, Holder::Producer { .. }) {
            drop(state);
            if self.write_claim_made_here() {
                // Full behind a frame this thread claimed and had not written yet: the client may
                // well keep up, it had just not been written to. Written now, and the queue with
                // it; only this client's, as the caller may hold the hub's lock.
                state = self.lock();
                if state.evicted {
                    return Err(Evicted);
                }
                if self.claim(&mut state) {
                    return Ok(true);
                }
            } else {
                // Full behind another thread's claim, which that thread writes once its publish
                // is done: the client has not been written to meanwhile, so its queue may hold up
                // to twice its limits until then.
                state = self.lock();
                let doubled = QueueLimits {
                    frames: limits.frames.saturating_mul(2),
                    bytes: limits.bytes.saturating_mul(2),
                };
                if matches!(state.holder, Holder::Producer { .. })
                    && state.has_room_for(&doubled, bytes)
                {
                    self.queue(&mut state, frame.clone(), bytes);
                    return Ok(false);
                }
            }
        }
        if !state.has_room_for(limits, bytes) {
            state.evicted = true;
            drop(state);
            self.ready.wake();
            return Err(Evicted);
        }
        let wake = self.queue(&mut state, frame.clone(), bytes);
        drop(state);
        if wake {
            self.ready.wake();
        }
        Ok(false)
    }

    /// Writes the frame of this outbox this thread claimed and has yet to write, if there is one;
    /// returns whether there was.
    fn write_claim_made_here(self: &Arc<Self>) -> bool {
        let mine = CLAIMED.with_borrow_mut(|claimed| {
            let index = claimed
                .iter()
                .position(|claim| Arc::ptr_eq(&claim.outbox, self))?;
            let last = claimed.len() - 1;
            if index != last {
                claimed[last].outbox.move_open_claim(last, index);
            }
            Some(claimed.swap_remove(index))
        });
        let Some(claim) = mine else {
            return false;
        };
        self.write_claimed(claim).count_in(&self.attached().metrics);
        true
    }

    /// Takes the socket for a frame about to be pushed, if it may be written directly now.
    fn claim(&self, state: &mut State) -> bool {
        let free = state.free() && self.attached.get().is_some();
        if free {
            state.holder = Holder::Producer { awaited: false };
            // Opened under the lock, so that a frame queued behind the claim after it closes it.
            // Its place: the end of this thread's list, where `claimed` puts it next.
            let slot = CLAIMED.with_borrow(Vec::len);
            self.open_claim.store(claim_word(slot), Ordering::Release);
        }
        free
    }

    /// Writes what this producer claimed the socket for, and the frames queued behind it
    /// meanwhile, as far as the socket takes them without waiting, and gives the socket back. The
    /// rest, if any, goes back in front of the queue, for the writer (which meets the socket's
    /// error, if that was why). Returns what to count: the frames that began.
    fn write_claimed(&self, claim: Claim) -> Sent {
        // Only this thread adds to its open claim, and it is here.
        self.open_claim.store(0, Ordering::Relaxed);
        let Claim {
            large,
            copied,
            copied_sent,
            ..
        } = claim;
        let socket = &self.attached().socket;
        let mut behind = {
            let mut state = self.lock();
            state.bytes = 0;
            state.pongs = 0;
            std::mem::take(&mut state.frames)
        };
        // Frames taken from the queue make room in it, as the writer's taking does.
        let took = !behind.is_empty();
        let claimed = large
            .iter()
            .map(Frame::wire)
            .chain((!copied.is_empty()).then_some(&copied[..]));
        let total: usize = claimed.clone().map(<[u8]>::len).sum::<usize>()
            + behind.iter().map(|frame| frame.wire().len()).sum::<usize>();
        let written = if behind.is_empty() && large.is_none() {
            socket.try_write(&copied)
        } else {
            try_write_gathered(socket, claimed.chain(behind.iter().map(Frame::wire)))
        }
        .unwrap_or(0);

        let mut sent = Sent::default();
        let mut begun = false;
        if written == total {
            sent = Sent::of(large.iter().chain(&behind));
            sent.add(copied_sent);
            behind.clear();
            recycle(copied);
        } else {
            // Rare (a client that does not keep up): the unwritten rest as frames again.
            let mut pending: VecDeque<Frame> = large
                .into_iter()
                .chain(Frame::split(copied.into()))
                .chain(behind.drain(..))
                .collect();
            let mut written = written;
            while written > 0
                && let Some(front) = pending.front_mut()
            {
                sent.add(Sent::of([&*front]));
                let len = front.wire().len();
                if written < len {
                    front.consume(written);
                    begun = true;
                    break;
                }
                written -= len;
                pending.pop_front();
            }
            behind = pending;
        }

        let mut state = self.lock();
        let awaited = state.holder == Holder::Producer { awaited: true };
        state.holder = Holder::Free;
        if !behind.is_empty() {
            // In order: the rest of what this producer wrote, then what was pushed meanwhile.
            behind.extend(state.frames.drain(..));
            state.frames = behind;
            state.front_begun = begun;
            state.recount();
        } else if state.frames.is_empty() && behind.capacity() <= IDLE_ROOM {
            // Its room stays with the connection.
            state.frames = behind;
        }
        let wake = awaited || !state.frames.is_empty();
        drop(state);
        if wake {
            self.ready.wake();
        }
        if took && let Some(room) = &self.room {
            room.notify_one();
        }
        if sent.frames > 0 {
            self.attached()
                .sent
                .fetch_add(sent.frames, Ordering::Relaxed);
        }
        sent
    }

    /// Writes or queues a control frame (a ping, a pong), which no data limit holds back. A pong
    /// queues behind what is queued (at [`MAX_QUEUED_CONTROL_FRAMES`] pongs queued, it replaces
    /// the last one instead); a ping goes ahead of it.
    pub fn push_control(self: &Arc<Self>, frame: Frame) -> Result<(), Evicted> {
        let mut state = self.lock();
        if state.evicted {
            return Err(Evicted);
        }
        if self.claim(&mut state) {
            drop(state);
            claimed(self, &frame);
            return Ok(());
        }
        if frame.is_pong() {
            if state.pongs >= MAX_QUEUED_CONTROL_FRAMES {
                // Not a frame that has begun: its first bytes are on the wire already.
                let begun = usize::from(state.front_begun);
                if let Some(last) = state
                    .frames
                    .iter_mut()
                    .skip(begun)
                    .rev()
                    .find(|queued| queued.is_pong())
                {
                    *last = frame;
                }
                return Ok(());
            }
            state.pongs += 1;
            let wake = self.queue(&mut state, frame, 0);
            drop(state);
            if wake {
                self.ready.wake();
            }
            return Ok(());
        }
        // A ping (the heartbeat's) goes first, behind only a frame that has begun: its pong
        // deadline runs from now, so a client that was slow for a moment is not judged on a
        // ping still queued behind a backlog.
        let was_empty = state.frames.is_empty();
        let first = usize::from(state.front_begun);
        self.close_claim(&state);
        state.frames.insert(first, frame);
        let wake = was_empty && !matches!(state.holder, Holder::Producer { .. });
        drop(state);
        if wake {
            self.ready.wake();
        }
        Ok(())
    }

    /// Writes or queues `frame` if it fits in `limits` now; hands it back if not.
    pub fn try_push(self: &Arc<Self>, frame: Frame, limits: &QueueLimits) -> Result<(), Frame> {
        let bytes = payload_bytes(&frame);
        let mut state = self.lock();
        if self.claim(&mut state) {
            drop(state);
            claimed(self, &frame);
            return Ok(());
        }
        if !state.has_room_for(limits, bytes) {
            return Err(frame);
        }
        let wake = self.queue(&mut state, frame, bytes);
        drop(state);
        if wake {
            self.ready.wake();
        }
        Ok(())
    }

    /// Queues `frame` once there is room for it in `limits`, however long that takes.
    ///
    /// # Panics
    /// On an outbox not made [`Outbox::with_backpressure`]: nothing would ever wake the wait.
    pub async fn push_when_room(self: &Arc<Self>, mut frame: Frame, limits: &QueueLimits) {
        let room = self
            .room
            .as_deref()
            .expect("push_when_room needs an outbox made with_backpressure");
        loop {
            frame = match self.try_push(frame, limits) {
                Ok(()) => return,
                Err(frame) => frame,
            };
            // `notify_one` keeps a permit when nobody waits, so a batch taken between the failed
            // push and this wait is not missed.
            room.notified().await;
        }
    }

    /// Waits until there are frames and moves all of them into `batch` (expected empty), in
    /// order; returns what to count once they are written. While it waits with nothing in hand,
    /// producers write to the socket directly.
    ///
    /// The outbox and its writer trade queues: the writer's emptied batch becomes the outbox's
    /// queue. So the room a burst grew stays with the connection while it is busy (regrowing it
    /// at every batch was about 8 % of the server's CPU at full-speed broadcast, in reallocations
    /// and the page faults of the memory they took), and both queues let it go as soon as there
    /// is nothing to take: an idle connection keeps at most [`IDLE_ROOM`] frames' worth.
    ///
    /// Only the connection's writer may wait here, in [`Outbox::evicted`] or in
    /// [`Outbox::reclaim`]: the outbox keeps one waker, and a second task waiting would take the
    /// writer's wake-ups.
    pub fn take_all<'a>(
        &'a self,
        batch: &'a mut VecDeque<Frame>,
    ) -> impl Future<Output = Result<Sent, Evicted>> + 'a {
        std::future::poll_fn(move |cx| self.poll_take_all(cx, batch))
    }

    fn poll_take_all(
        &self,
        cx: &mut Context<'_>,
        batch: &mut VecDeque<Frame>,
    ) -> Poll<Result<Sent, Evicted>> {
        // Swapped in, frames left in the batch would be queued again and sent twice.
        debug_assert!(batch.is_empty(), "take_all with frames still in the batch");
        // Registered before looking: a push after the look finds the outbox empty and wakes it.
        self.ready.register(cx.waker());
        let mut state = self.lock();
        if state.evicted {
            return Poll::Ready(Err(Evicted));
        }
        // A producer is writing: what is queued goes after its frame, and it wakes the writer
        // once done if anything is.
        if matches!(state.holder, Holder::Producer { .. }) {
            return Poll::Pending;
        }
        if !state.frames.is_empty() {
            std::mem::swap(&mut state.frames, batch);
            state.bytes = 0;
            state.pongs = 0;
            let begun = std::mem::take(&mut state.front_begun);
            if state.holder == Holder::Free {
                state.holder = Holder::Writer;
            }
            drop(state);
            if let Some(room) = &self.room {
                room.notify_one();
            }
            return Poll::Ready(Ok(Sent::of(batch.iter().skip(usize::from(begun)))));
        }
        if state.holder == Holder::Writer {
            state.holder = Holder::Free;
        }
        if state.frames.capacity() > IDLE_ROOM {
            state.frames = VecDeque::new();
        }
        drop(state);
        if batch.capacity() > IDLE_ROOM {
            *batch = VecDeque::new();
        }
        Poll::Pending
    }

    /// Takes the socket back from producers for good, for the close: waits until a frame being
    /// written directly is done, and moves the rest of one that began (which must go out before
    /// anything else) into `batch`, which is then empty.
    pub async fn reclaim(&self, batch: &mut VecDeque<Frame>) {
        std::future::poll_fn(|cx| {
            self.ready.register(cx.waker());
            let mut state = self.lock();
            if let Holder::Producer { awaited } = &mut state.holder {
                *awaited = true;
                return Poll::Pending;
            }
            state.holder = Holder::Closer;
            if std::mem::take(&mut state.front_begun) {
                debug_assert!(
                    batch.is_empty(),
                    "a frame began while the writer held a batch"
                );
                batch.extend(state.frames.pop_front());
            }
            Poll::Ready(())
        })
        .await
    }

    /// Completes once the outbox is evicted.
    pub async fn evicted(&self) {
        std::future::poll_fn(|cx| {
            self.ready.register(cx.waker());
            if self.lock().evicted {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use futures_util::FutureExt;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    /// An outbox serving the server's end of a loopback connection, and the client's end.
    async fn served() -> (Arc<Outbox>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let outbox = Arc::new(Outbox::new());
        outbox.attach(server, Arc::new(Metrics::new()));
        (outbox, client)
    }

    /// Polls the writer's wait once, as a writer with nothing in hand does; `None` if it waits.
    fn writer_takes(outbox: &Outbox, batch: &mut VecDeque<Frame>) -> Option<Sent> {
        outbox.take_all(batch).now_or_never().map(Result::unwrap)
    }

    const TWO_FRAMES: QueueLimits = QueueLimits {
        frames: 2,
        bytes: u32::MAX,
    };

    /// Text frames "0", "1", … up to `count`.
    fn numbered(count: usize) -> Vec<Frame> {
        (0..count).map(|n| Frame::text(n.to_string())).collect()
    }

    /// The wire bytes of `frames`, one after the other.
    fn wire(frames: &[&Frame]) -> Vec<u8> {
        frames
            .iter()
            .flat_map(|frame| frame.wire().to_vec())
            .collect()
    }

    /// Reads exactly `len` bytes from the client, or fails after a few seconds.
    async fn read(client: &mut TcpStream, len: usize) -> Vec<u8> {
        let mut bytes = vec![0; len];
        tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut bytes))
            .await
            .expect("the bytes arrive")
            .unwrap();
        bytes
    }

    /// Whether the client has nothing to read now.
    async fn nothing_arrived(client: &TcpStream) -> bool {
        tokio::time::sleep(Duration::from_millis(20)).await;
        matches!(client.try_read(&mut [0; 1]), Err(err) if err.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// Writes what the writer took, as the writer does.
    async fn write_as_the_writer(outbox: &Outbox, batch: &mut VecDeque<Frame>) {
        let socket = &outbox.attached().socket;
        for frame in batch {
            while !frame.wire().is_empty() {
                socket.writable().await.unwrap();
                match socket.try_write(frame.wire()) {
                    Ok(written) => frame.consume(written),
                    Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(err) => panic!("{err}"),
                }
            }
        }
    }

    fn delivered(outbox: &Outbox) -> u64 {
        outbox.attached().metrics.messages_delivered.get()
    }

    #[tokio::test]
    async fn a_frame_pushed_while_the_writer_waits_is_written_by_its_producer() {
        let (outbox, mut client) = served().await;
        let mut batch = VecDeque::new();
        assert_eq!(writer_takes(&outbox, &mut batch), None);
        let hello = Frame::text("hello");
        outbox.push(&hello, &ROOMY).unwrap();
        assert_eq!(read(&mut client, hello.wire().len()).await, hello.wire());
        assert_eq!(
            writer_takes(&outbox, &mut batch),
            None,
            "nothing for the writer"
        );
        assert_eq!((outbox.sent(), delivered(&outbox)), (1, 1));
    }

    #[tokio::test]
    async fn the_writer_has_the_socket_until_it_comes_back_empty_handed() {
        let (outbox, client) = served().await;
        outbox.push(&Frame::text("1"), &ROOMY).unwrap();
        let mut batch = VecDeque::new();
        writer_takes(&outbox, &mut batch).unwrap();
        // The writer holds a batch it has not written: a frame pushed now must wait behind it.
        outbox.push(&Frame::text("2"), &ROOMY).unwrap();
        assert!(nothing_arrived(&client).await);
        assert_eq!(batch, [Frame::text("1")]);
    }

    #[tokio::test]
    async fn in_a_scope_frames_pushed_behind_a_claimed_one_go_out_with_it_in_order() {
        let (outbox, mut client) = served().await;
        let mut batch = VecDeque::new();
        writer_takes(&outbox, &mut batch);
        let frames = [Frame::text("1"), Frame::binary([2]), Frame::pong(b"3")];
        let scope = BatchScope::enter();
        outbox.push(&frames[0], &ROOMY).unwrap();
        outbox.push(&frames[1], &ROOMY).unwrap();
        outbox.push_control(frames[2].clone()).unwrap();
        assert!(
            nothing_arrived(&client).await,
            "written when the scope ends"
        );
        assert_eq!(
            writer_takes(&outbox, &mut batch),
            None,
            "the writer may not take what waits behind a claimed frame"
        );
        drop(scope);
        let all = wire(&frames.iter().collect::<Vec<_>>());
        assert_eq!(read(&mut client, all.len()).await, all);
        assert_eq!(writer_takes(&outbox, &mut batch), None);
        assert_eq!(outbox.sent(), 2, "pongs are not counted");
    }

    #[tokio::test]
    async fn what_the_socket_does_not_take_goes_to_the_writer_and_is_counted_once() {
        let (outbox, mut client) = served().await;
        let mut batch = VecDeque::new();
        writer_takes(&outbox, &mut batch);
        // Far more than a loopback socket's buffers take while the client reads nothing.
        let large = Frame::binary(vec![7; 32 << 20]);
        let small = Frame::text("after");
        let limits = QueueLimits {
            frames: 4,
            bytes: u32::MAX,
        };
        outbox.push(&large, &limits).unwrap();
        outbox.push(&small, &limits).unwrap();
        let taken = writer_takes(&outbox, &mut batch).expect("the rest is the writer's");
        assert_eq!(
            taken.frames, 1,
            "only the frame that had not begun is still to count"
        );
        assert!(batch[0].wire().len() < large.wire().len());
        let expected = wire(&[&large, &small]);
        let reading =
            tokio::spawn(async move { read(&mut client, expected.len()).await == expected });
        write_as_the_writer(&outbox, &mut batch).await;
        outbox.wrote(taken);
        assert!(reading.await.unwrap(), "every byte once, in order");
        assert_eq!((outbox.sent(), delivered(&outbox)), (2, 2));
    }

    #[tokio::test]
    async fn the_close_waits_for_a_claimed_frame_and_nothing_is_written_directly_after() {
        let (outbox, mut client) = served().await;
        let mut batch = VecDeque::new();
        writer_takes(&outbox, &mut batch);
        let scope = BatchScope::enter();
        let first = Frame::text("before the close");
        outbox.push(&first, &ROOMY).unwrap();
        assert!(
            outbox.reclaim(&mut batch).now_or_never().is_none(),
            "a claimed frame is not written yet"
        );
        drop(scope);
        assert!(outbox.reclaim(&mut batch).now_or_never().is_some());
        assert_eq!(read(&mut client, first.wire().len()).await, first.wire());
        outbox
            .push(&Frame::text("queued for the close"), &ROOMY)
            .unwrap();
        assert!(nothing_arrived(&client).await);
    }

    #[tokio::test]
    async fn a_queue_full_behind_this_threads_claim_is_written_rather_than_evicted() {
        let (outbox, mut client) = served().await;
        writer_takes(&outbox, &mut VecDeque::new());
        let two = TWO_FRAMES;
        let frames = numbered(6);
        let scope = BatchScope::enter();
        for frame in &frames {
            outbox
                .push(frame, &two)
                .expect("the client reads: not evicted");
        }
        drop(scope);
        let all = wire(&frames.iter().collect::<Vec<_>>());
        assert_eq!(read(&mut client, all.len()).await, all);
    }

    #[tokio::test]
    async fn a_busy_thread_keeps_a_lone_frame_until_it_parks_and_writes_one_with_company_at_once() {
        let (lone, mut lone_client) = served().await;
        let (busy, mut busy_client) = served().await;
        for outbox in [&lone, &busy] {
            writer_takes(outbox, &mut VecDeque::new());
        }
        // This thread parked once through the hook: it will write before it parks again.
        before_park();
        let (first, second) = (Frame::text("1"), Frame::text("2"));
        Batching::new(async {
            lone.push(&first, &ROOMY).unwrap();
            busy.push(&first, &ROOMY).unwrap();
            busy.push(&second, &ROOMY).unwrap();
        })
        .await;
        let both = wire(&[&first, &second]);
        assert_eq!(read(&mut busy_client, both.len()).await, both);
        assert!(nothing_arrived(&lone_client).await, "kept for company");
        before_park();
        assert_eq!(
            read(&mut lone_client, first.wire().len()).await,
            first.wire()
        );
    }

    #[tokio::test]
    async fn a_ping_goes_ahead_of_a_backlog() {
        let (outbox, _client) = served().await;
        outbox.push(&Frame::text("1"), &ROOMY).unwrap();
        outbox.push_control(Frame::pong(b"p")).unwrap();
        outbox.push_control(Frame::ping()).unwrap();
        let mut batch = VecDeque::new();
        writer_takes(&outbox, &mut batch).unwrap();
        assert_eq!(batch, [Frame::ping(), Frame::text("1"), Frame::pong(b"p")]);
    }

    #[tokio::test]
    async fn a_queue_full_behind_another_threads_claim_holds_up_to_twice_its_limits() {
        let (outbox, mut client) = served().await;
        writer_takes(&outbox, &mut VecDeque::new());
        let two = TWO_FRAMES;
        let frames = numbered(5);
        // Another thread claims the socket and has not written yet when this one pushes.
        let (claimed, claim_made) = std::sync::mpsc::channel();
        let (write, written) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn({
            let (outbox, first) = (Arc::clone(&outbox), frames[0].clone());
            move || {
                let scope = BatchScope::enter();
                outbox.push(&first, &two).unwrap();
                claimed.send(()).unwrap();
                written.recv().unwrap();
                drop(scope);
            }
        });
        claim_made.recv().unwrap();
        for frame in &frames[1..] {
            outbox
                .push(frame, &two)
                .expect("not the client's fault yet");
        }
        assert_eq!(
            outbox.push(&Frame::text("5"), &two),
            Err(Evicted),
            "past twice the limits"
        );
        write.send(()).unwrap();
        other.join().unwrap();
        let all = wire(&frames.iter().collect::<Vec<_>>());
        assert_eq!(read(&mut client, all.len()).await, all);
    }

    #[tokio::test]
    async fn a_writer_left_waiting_behind_a_claim_is_woken_for_what_queued_behind_it() {
        let (outbox, mut client) = served().await;
        let writer = tokio::spawn({
            let outbox = Arc::clone(&outbox);
            async move {
                let mut batch = VecDeque::new();
                let taken = outbox.take_all(&mut batch).await.unwrap();
                (batch, taken)
            }
        });
        tokio::task::yield_now().await;
        // The socket takes only the beginning of the first frame (the client reads nothing yet):
        // its rest and the frame behind it are the writer's.
        let large = Frame::binary(vec![1; 32 << 20]);
        {
            let _scope = BatchScope::enter();
            outbox.push(&large, &ROOMY).unwrap();
            outbox.push(&Frame::text("next"), &ROOMY).unwrap();
        }
        let (batch, taken) = tokio::time::timeout(Duration::from_secs(5), writer)
            .await
            .expect("the writer is woken")
            .unwrap();
        assert_eq!(batch.len(), 2);
        assert_eq!(taken.frames, 1, "the first began, and was counted then");
        assert_eq!(read(&mut client, 2).await, large.wire()[..2]);
    }

    #[tokio::test]
    async fn a_frame_queued_behind_a_claim_goes_before_what_the_claiming_thread_pushes_next() {
        let (outbox, mut client) = served().await;
        writer_takes(&outbox, &mut VecDeque::new());
        let frames = numbered(4);
        let (pushed, other_pushed) = std::sync::mpsc::channel();
        let (go_on, next) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn({
            let (outbox, frames) = (Arc::clone(&outbox), frames.clone());
            move || {
                let scope = BatchScope::enter();
                // Claimed, then one copied into the claim without the lock.
                outbox.push(&frames[0], &ROOMY).unwrap();
                outbox.push(&frames[1], &ROOMY).unwrap();
                pushed.send(()).unwrap();
                next.recv().unwrap();
                // Pushed after this thread's "2": it must not overtake it.
                outbox.push(&frames[3], &ROOMY).unwrap();
                drop(scope);
            }
        });
        other_pushed.recv().unwrap();
        outbox.push(&frames[2], &ROOMY).unwrap();
        go_on.send(()).unwrap();
        other.join().unwrap();
        let all = wire(&frames.iter().collect::<Vec<_>>());
        assert_eq!(read(&mut client, all.len()).await, all);
        assert_eq!((outbox.sent(), delivered(&outbox)), (4, 4));
    }

    #[tokio::test]
    async fn past_what_a_claim_copies_frames_queue_behind_it_in_order() {
        let (outbox, mut client) = served().await;
        writer_takes(&outbox, &mut VecDeque::new());
        let many = QueueLimits {
            frames: 1 << 20,
            bytes: u32::MAX,
        };
        // Twice what one claim copies, in frames it would copy one by one, then one too large.
        let mut frames: Vec<Frame> = (0..2 * CLAIM_BUFFER / 128)
            .map(|n| Frame::binary(n.to_be_bytes().repeat(16)))
            .collect();
        frames.push(Frame::binary(vec![7; COPIED_FRAME + 1]));
        let scope = BatchScope::enter();
        for frame in &frames {
            outbox.push(frame, &many).unwrap();
        }
        drop(scope);
        // One write takes at most `MAX_SLICES` pieces: what is left is the writer's.
        let mut batch = VecDeque::new();
        if let Some(taken) = writer_takes(&outbox, &mut batch) {
            write_as_the_writer(&outbox, &mut batch).await;
            outbox.wrote(taken);
        }
        let all = wire(&frames.iter().collect::<Vec<_>>());
        assert_eq!(read(&mut client, all.len()).await, all);
        let count = frames.len() as u64;
        assert_eq!((outbox.sent(), delivered(&outbox)), (count, count));
    }

    #[tokio::test]
    async fn copied_frames_the_socket_does_not_take_go_to_the_writer_whole_and_counted_once() {
        let (outbox, mut client) = served().await;
        let mut batch = VecDeque::new();
        writer_takes(&outbox, &mut batch);
        let many = QueueLimits {
            frames: 1 << 20,
            bytes: u32::MAX,
        };
        // Scope after scope of small frames, copied into claims, until the client (reading
        // nothing) leaves some for the writer.
        let mut frames = Vec::new();
        let taken = loop {
            let scope = BatchScope::enter();
            for _ in 0..64 {
                let frame = Frame::binary(frames.len().to_be_bytes().repeat(16));
                outbox.push(&frame, &many).unwrap();
                frames.push(frame);
            }
            drop(scope);
            if let Some(taken) = writer_takes(&outbox, &mut batch) {
                break taken;
            }
            assert!(frames.len() < 1 << 20, "the socket takes everything");
        };
        assert!(batch.len() > 1, "the rest as frames again: {}", batch.len());
        assert!(
            batch.iter().skip(1).all(|frame| frames.contains(frame)),
            "whole frames behind the begun one"
        );
        let expected = wire(&frames.iter().collect::<Vec<_>>());
        let reading =
            tokio::spawn(async move { read(&mut client, expected.len()).await == expected });
        write_as_the_writer(&outbox, &mut batch).await;
        outbox.wrote(taken);
        assert!(reading.await.unwrap(), "every byte once, in order");
        let count = frames.len() as u64;
        assert_eq!((outbox.sent(), delivered(&outbox)), (count, count));
    }

    const ROOMY: QueueLimits = QueueLimits {
        frames: 4,
        bytes: 1 << 20,
    };
    const ONE_FRAME: QueueLimits = QueueLimits { frames: 1, ..ROOMY };
    const TEN_BYTES: QueueLimits = QueueLimits {
        frames: 100,
        bytes: 10,
    };

    #[tokio::test]
    async fn hands_over_everything_queued_in_order() {
        let outbox = Arc::new(Outbox::new());
        outbox.push(&Frame::text("1"), &ROOMY).unwrap();
        outbox.push(&Frame::text("2"), &ROOMY).unwrap();
        let mut batch = VecDeque::new();
        outbox.take_all(&mut batch).await.unwrap();
        assert_eq!(batch, [Frame::text("1"), Frame::text("2")]);
    }

    #[tokio::test]
    async fn a_push_into_a_full_outbox_evicts_it_for_good() {
        let outbox = Arc::new(Outbox::new());
        outbox.push(&Frame::text("1"), &ONE_FRAME).unwrap();
        assert_eq!(outbox.push(&Frame::text("2"), &ONE_FRAME), Err(Evicted));
        outbox.evicted().await;
        assert_eq!(outbox.take_all(&mut VecDeque::new()).await, Err(Evicted));
        assert_eq!(outbox.push(&Frame::text("3"), &ONE_FRAME), Err(Evicted));
    }

    #[tokio::test]
    async fn bytes_bound_the_queue_but_an_empty_one_takes_any_frame() {
        let outbox = Arc::new(Outbox::new());
        outbox
            .push(&Frame::text("x".repeat(25)), &TEN_BYTES)
            .unwrap();
        assert_eq!(outbox.push(&Frame::text("y"), &TEN_BYTES), Err(Evicted));

        let outbox = Arc::new(Outbox::new());
        outbox.push(&Frame::text("123456"), &TEN_BYTES).unwrap();
        outbox.push(&Frame::text("7890"), &TEN_BYTES).unwrap();
        assert!(outbox.try_push(Frame::text("!"), &TEN_BYTES).is_err());
        outbox.take_all(&mut VecDeque::new()).await.unwrap();
        assert!(outbox.try_push(Frame::text("!"), &TEN_BYTES).is_ok());
    }

    #[tokio::test]
    async fn control_frames_pass_data_limits_and_the_newest_replaces_the_last_past_theirs() {
        let outbox = Arc::new(Outbox::new());
        outbox.push(&Frame::text("1"), &ONE_FRAME).unwrap();
        let pong = |n: u16| Frame::pong(&n.to_be_bytes());
        for n in 0..MAX_QUEUED_CONTROL_FRAMES + 10 {
            outbox.push_control(pong(n)).unwrap();
        }
        let mut batch = VecDeque::new();
        outbox.take_all(&mut batch).await.unwrap();
        assert_eq!(batch.len(), 1 + usize::from(MAX_QUEUED_CONTROL_FRAMES));
        assert_eq!(batch[0], Frame::text("1"));
        assert_eq!(batch[batch.len() - 2], pong(MAX_QUEUED_CONTROL_FRAMES - 2));
        assert_eq!(
            batch[batch.len() - 1],
            pong(MAX_QUEUED_CONTROL_FRAMES + 9),
            "the newest last"
        );
        // Taken: room again.
        outbox.push_control(pong(1)).unwrap();
        batch.clear();
        outbox.take_all(&mut batch).await.unwrap();
        assert_eq!(batch, [pong(1)]);
    }

    #[tokio::test]
    async fn push_when_room_waits_for_the_writer() {
        let outbox = Arc::new(Outbox::with_backpressure());
        outbox.push(&Frame::text("1"), &ONE_FRAME).unwrap();
        let producer = tokio::spawn({
            let outbox = Arc::clone(&outbox);
            async move { outbox.push_when_room(Frame::text("2"), &ONE_FRAME).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!producer.is_finished(), "waits while the outbox is full");
        let mut batch = VecDeque::new();
        outbox.take_all(&mut batch).await.unwrap();
        assert_eq!(batch, [Frame::text("1")]);
        producer.await.unwrap();
        batch.clear();
        outbox.take_all(&mut batch).await.unwrap();
        assert_eq!(batch, [Frame::text("2")]);
    }

    #[test]
    fn the_room_a_burst_grew_stays_while_busy_and_goes_when_idle() {
        use futures_util::FutureExt;
        let limits = QueueLimits {
            frames: 10_000,
            bytes: u32::MAX,
        };
        let outbox = Arc::new(Outbox::new());
        let mut batch = VecDeque::new();
        let burst = |outbox: &Arc<Outbox>| {
            for _ in 0..1_000 {
                outbox.push(&Frame::text("x"), &limits).unwrap();
            }
        };
        burst(&outbox);
        assert!(outbox.take_all(&mut batch).now_or_never().unwrap().is_ok());
        batch.clear();
        // Busy: the next burst is queued before the writer comes back; the queues trade places
        // and keep their room.
        burst(&outbox);
        assert!(outbox.take_all(&mut batch).now_or_never().unwrap().is_ok());
        assert!(outbox.lock().frames.capacity() >= 1_000);
        batch.clear();
        assert!(batch.capacity() >= 1_000);
        // Idle: nothing to take, and both let their room go.
        assert!(outbox.take_all(&mut batch).now_or_never().is_none());
        assert_eq!(batch.capacity(), 0);
        assert_eq!(outbox.lock().frames.capacity(), 0);
    }

    #[tokio::test]
    async fn a_waiting_writer_wakes_for_the_first_frame() {
        let outbox = Arc::new(Outbox::new());
        let writer = tokio::spawn({
            let outbox = Arc::clone(&outbox);
            async move {
                let mut batch = VecDeque::new();
                outbox.take_all(&mut batch).await.map(|_| batch.len())
            }
        });
        tokio::task::yield_now().await;
        outbox.push(&Frame::text("1"), &ROOMY).unwrap();
        assert_eq!(writer.await.unwrap(), Ok(1));
    }
}
