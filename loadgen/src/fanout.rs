//! The engine of `loadgen broadcast` and `loadgen channels`: connected clients receive, the first S
//! of them also send, and every receiver counts what it gets.
//!
//! Every client is a receiver with its own task, listening to one room: `/wss`'s one room, or one
//! `/v1/ws` channel. The first S clients are also senders, each with a second task on the socket's
//! writing half. Sender `s` puts its message `n` in room `(s + n) % rooms` (round robin, starting
//! at a different room for each sender), so every room gets its share, the same in every run, and
//! each receiver knows exactly which messages it must get. At full speed a sender keeps at most
//! `--window` of its messages ahead of the oldest one some receiver still lacks, so the figure is
//! the throughput the whole path sustains with nothing lost, not how fast messages pile up in the
//! server's queues (where our server would rightly cut the slowest client off, and the references
//! would grow without bound). At a fixed `--rate` each message is stamped with the moment it was due
//! rather than sent, so a stalled sender shows up as latency instead of hiding it.
//!
//! The service promises each client the messages of one sender in the order they were sent, so a
//! receiver keeps one number per sender, the next sequence number it expects in its room: a jump
//! is a loss, a step back a duplicate (or a reordering, which breaks the same promise), and a
//! message of another room a misrouting (an error).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::cli::SendArgs;
use crate::client::Socket;
use crate::message::{self, Stamp};
use crate::report::{self, Errors, Latency, PhaseStart, PhaseUsage};

/// Latency samples a receiver collects before adding them to the shared histograms.
const SAMPLE_BATCH: usize = 512;
/// The longest a receiver keeps samples to itself, so the progress line stays current.
const SAMPLE_AGE: Duration = Duration::from_millis(100);
/// How often the main task checks whether everything has arrived.
const POLL: Duration = Duration::from_millis(20);

/// Where messages go.
pub enum Rooms {
    /// `/wss`: one room every client is in; a message goes out as it is and arrives as
    /// `{"message":…}`.
    Broadcast,
    /// `/v1/ws`: these channels; a message is published on one of them and arrives as its `data`.
    Channels(Vec<String>),
}

impl Rooms {
    fn count(&self) -> u64 {
        match self {
            Rooms::Broadcast => 1,
            Rooms::Channels(names) => names.len() as u64,
        }
    }

    fn name(&self, room: usize) -> &str {
        match self {
            Rooms::Broadcast => "broadcast",
            Rooms::Channels(names) => &names[room],
        }
    }

    fn encode(&self, room: usize, stamp: Stamp, bytes: usize) -> Message {
        Message::text(match self {
            Rooms::Broadcast => message::encode(stamp, bytes),
            Rooms::Channels(names) => message::publish(&names[room], stamp, bytes),
        })
    }

    /// The stamp of one of the load generator's messages, and whether it arrived in `room`.
    fn decode(&self, frame: &[u8], room: usize) -> Option<(Stamp, bool)> {
        match self {
            Rooms::Broadcast => Some((message::decode_broadcast(frame)?, true)),
            Rooms::Channels(names) => {
                let (channel, stamp) = message::decode_channel_message(frame)?;
                Some((stamp, channel == names[room].as_bytes()))
            }
        }
    }
}

/// What a run measured.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub connected: u32,
    pub senders: u32,
    pub bytes: u32,
    pub rate_per_sender: f64,
    /// Messages the senders sent, all together.
    pub sent: u64,
    /// What every receiver should get: every message of its room, its own included.
    pub expected_deliveries: u64,
    /// Distinct messages received, over all clients.
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// Connections that failed to open, or closed or failed before the end, and misrouted
    /// messages.
    #[serde(flatten)]
    pub errors: Errors,
    /// From the first send to the last delivery.
    pub seconds: f64,
    pub deliveries_per_s: f64,
    pub latency: Latency,
    pub usage: PhaseUsage,
}

impl Outcome {
    /// Whether the run saw no loss, duplicate or error.
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.errors.none()
    }

    /// "10 senders, 128 B messages, full speed".
    pub fn sending(&self) -> String {
        let rate = if self.rate_per_sender > 0.0 {
            format!("{} msg/s each", self.rate_per_sender)
        } else {
            "full speed".into()
        };
        format!(
            "{} senders, {} B messages, {rate}",
            self.senders, self.bytes
        )
    }
}

/// The lines under a scenario's first line.
impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "  sent {}, delivered {} of {} in {:.2} s: {:.0} deliveries/s",
            self.sent,
            self.delivered,
            self.expected_deliveries,
            self.seconds,
            self.deliveries_per_s
        )?;
        writeln!(f, "  latency {}", self.latency)?;
        writeln!(
            f,
            "  lost {}, duplicated {}, {}",
            self.lost, self.duplicated, self.errors
        )?;
        writeln!(f, "  {}", self.usage)
    }
}

/// The messages of `sender` that a receiver in `room` of `rooms` must get come at sequence numbers
/// `first(…)`, then every `rooms` after it.
fn first(rooms: u64, room: u64, sender: usize) -> u64 {
    (room + rooms - sender as u64 % rooms) % rooms
}

/// The room of `sender`'s message `seq`.
fn room_of(rooms: u64, sender: usize, seq: u64) -> u64 {
    (sender as u64 % rooms + seq % rooms) % rooms
}

/// How many of the first `sent` messages of `sender` went to `room`.
fn sent_to(rooms: u64, room: u64, sender: usize, sent: u64) -> u64 {
    sent.saturating_sub(first(rooms, room, sender))
        .div_ceil(rooms)
}

/// One receiver's accounting of the messages of its room.
#[derive(Debug)]
struct Tally {
    rooms: u64,
    room: u64,
    /// Per sender, the sequence number expected next.
    next: Vec<u64>,
    /// Messages skipped over: a later one of the same sender arrived first.
    gaps: u64,
    duplicated: u64,
    last_delivery_us: u64,
}

#[derive(Debug, PartialEq, Eq)]
enum Receipt {
    /// A message not seen before; the sender's expected sequence number moved from `before` to
    /// `after`.
    New { before: u64, after: u64 },
    /// Seen before, or older than one seen.
    Duplicate,
    /// Not a message of this receiver's room.
    Misrouted,
}

impl Tally {
    fn new(rooms: u64, room: u64, senders: usize) -> Tally {
        Tally {
            rooms,
            room,
            next: (0..senders)
                .map(|sender| first(rooms, room, sender))
                .collect(),
            gaps: 0,
            duplicated: 0,
            last_delivery_us: 0,
        }
    }

    fn receive(&mut self, sender: usize, seq: u64) -> Receipt {
        if room_of(self.rooms, sender, seq) != self.room {
            return Receipt::Misrouted;
        }
        let next = &mut self.next[sender];
        if seq < *next {
            self.duplicated += 1;
            return Receipt::Duplicate;
        }
        self.gaps += (seq - *next) / self.rooms;
        let before = *next;
        *next = seq + self.rooms;
        Receipt::New {
            before,
            after: *next,
        }
    }

    /// Whether the move of `sender`'s expected number from `before` to `after` passed its message
    /// `seq` (which a sender may be waiting for).
    fn passed(&self, sender: usize, seq: u64, before: u64, after: u64) -> bool {
        (before..after).contains(&seq) && room_of(self.rooms, sender, seq) == self.room
    }

    /// The messages of this room that never arrived, given how many each sender sent.
    fn lost(&self, sent_by: &[u64]) -> u64 {
        let missing_at_the_end: u64 = sent_by
            .iter()
            .zip(&self.next)
            .enumerate()
            .map(|(sender, (&sent, &next))| {
                let passed = (next - first(self.rooms, self.room, sender)) / self.rooms;
                sent_to(self.rooms, self.room, sender, sent).saturating_sub(passed)
            })
            .sum();
        self.gaps + missing_at_the_end
    }
}

/// What every receiver should get, given the receivers' rooms and what each sender sent.
fn expected_deliveries(rooms: u64, room_of_receiver: &[usize], sent_by: &[u64]) -> u64 {
    room_of_receiver
        .iter()
        .map(|&room| {
            sent_by
                .iter()
                .enumerate()
                .map(|(sender, &sent)| sent_to(rooms, room as u64, sender, sent))
                .sum::<u64>()
        })
        .sum()
}

/// What all tasks of a run share.
struct Shared {
    run_id: u32,
    senders: usize,
    rooms: Rooms,
    /// Per receiver: its room.
    room_of: Vec<usize>,
    /// Per room: its receivers.
    members: Vec<Vec<usize>>,
    start: Instant,
    latencies: Mutex<Latencies>,
    /// Per client: distinct deliveries so far. One writer each, so no cache line is fought over.
    delivered: Vec<PaddedCounter>,
    /// Per receiver and sender (`receiver * senders + sender`): the sender's sequence number the
    /// receiver expects next; `u64::MAX` once the receiver is gone, so it holds no sender back.
    expects: Vec<AtomicU64>,
    /// Per sender: the message whose arrival it waits for, `u64::MAX` for none yet.
    waiting_for: Vec<AtomicU64>,
    /// Per sender: woken as receivers pass the message it waits for.
    caught_up: Vec<Notify>,
    errors: Mutex<Errors>,
    open: AtomicU64,
}

#[derive(Default)]
#[repr(align(64))]
struct PaddedCounter(AtomicU64);

struct Latencies {
    total: Histogram<u64>,
    /// Since the last progress line.
    interval: Histogram<u64>,
}

impl Shared {
    fn error(&self, what: String) {
        self.errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add(|| what);
    }

    fn record(&self, samples: &mut Vec<u64>) {
        let mut latencies = self
            .latencies
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for &micros in samples.iter() {
            latencies.total.saturating_record(micros);
            latencies.interval.saturating_record(micros);
        }
        samples.clear();
    }

    fn delivered(&self) -> u64 {
        self.delivered
            .iter()
            .map(|counter| counter.0.load(Ordering::Relaxed))
            .sum()
    }

    fn room_of_message(&self, sender: usize, seq: u64) -> usize {
        room_of(self.rooms.count(), sender, seq) as usize
    }

    /// The lowest sequence number of `sender` that a receiver in `room` still expects: every
    /// message of the room below it reached all of them.
    fn expected_in(&self, room: usize, sender: usize) -> u64 {
        // SeqCst, against the receivers' stores: see `Receiver::deliver`.
        self.members[room]
            .iter()
            .map(|&receiver| self.expects[receiver * self.senders + sender].load(Ordering::SeqCst))
            .min()
            .unwrap_or(u64::MAX)
    }

    fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }
}

/// Runs senders and receivers on `clients`, each a socket and the room it listens to (for
/// `Rooms::Channels`, an index into the names; already subscribed). `errors` are the connections
/// that failed to open; the server's usage is read from `server_pids`.
pub async fn run(
    clients: Vec<(Socket, usize)>,
    errors: Errors,
    rooms: Rooms,
    args: &SendArgs,
    server_pids: &[u32],
) -> Result<Outcome, String> {
    let connected = clients.len();
    let senders = (args.senders as usize).min(connected);
    let room_count = rooms.count();
    let room_of: Vec<usize> = clients.iter().map(|(_, room)| *room).collect();
    let mut members = vec![Vec::new(); room_count as usize];
    for (receiver, &room) in room_of.iter().enumerate() {
        members[room].push(receiver);
    }

    let usage_start = PhaseStart::now(server_pids)?;
    let (stop, stopped) = watch::channel(false);
    let mut receivers = Vec::with_capacity(connected);
    let mut sending = Vec::with_capacity(senders);
    let mut idle_sinks = Vec::with_capacity(connected - senders);
    let shared = Arc::new(Shared {
        run_id: rand::random(),
        senders,
        expects: room_of
            .iter()
            .flat_map(|&room| {
                (0..senders)
                    .map(move |sender| AtomicU64::new(first(room_count, room as u64, sender)))
            })
            .collect(),
        rooms,
        room_of,
        members,
        // Time zero is when the first message may go out, not when the first client connected.
        start: Instant::now(),
        latencies: Mutex::new(Latencies {
            total: report::latency_histogram(),
            interval: report::latency_histogram(),
        }),
        delivered: (0..connected).map(|_| PaddedCounter::default()).collect(),
        waiting_for: (0..senders).map(|_| AtomicU64::new(u64::MAX)).collect(),
        caught_up: (0..senders).map(|_| Notify::new()).collect(),
        errors: Mutex::new(errors),
        open: AtomicU64::new(connected as u64),
    });
    let plan = SendPlan::new(args, shared.start);
    for (index, (socket, _)) in clients.into_iter().enumerate() {
        let (sink, stream) = socket.split();
        receivers.push(tokio::spawn(receive(
            stream,
            index,
            Arc::clone(&shared),
            stopped.clone(),
        )));
        if index < senders {
            sending.push(tokio::spawn(send(sink, index, plan, Arc::clone(&shared))));
        } else {
            idle_sinks.push(sink);
        }
    }
    let progress = args
        .progress
        .then(|| tokio::spawn(print_progress(Arc::clone(&shared), connected)));

    let mut sent_by = Vec::with_capacity(senders);
    let mut sinks = idle_sinks;
    for task in sending {
        let (sink, sent) = task
            .await
            .map_err(|err| format!("sender panicked: {err}"))?;
        sent_by.push(sent);
        sinks.push(sink);
    }
    let sent: u64 = sent_by.iter().sum();
    let expected = expected_deliveries(room_count, &shared.room_of, &sent_by);
    wait_for_deliveries(&shared, &receivers, expected, args.settle).await;
    let usage = usage_start.end(server_pids)?;

    let _ = stop.send(true);
    let (mut lost, mut duplicated, mut last_delivery_us) = (0, 0, 0);
    for task in receivers {
        let tally = task
            .await
            .map_err(|err| format!("receiver panicked: {err}"))?;
        lost += tally.lost(&sent_by);
        duplicated += tally.duplicated;
        last_delivery_us = last_delivery_us.max(tally.last_delivery_us);
    }
    if let Some(progress) = progress {
        progress.abort();
    }
    close_all(sinks).await;

    let delivered = shared.delivered();
    let seconds = last_delivery_us as f64 / 1e6;
    let latency = Latency::from_micros(
        &shared
            .latencies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total,
    );
    let errors = std::mem::take(&mut *shared.errors.lock().unwrap_or_else(PoisonError::into_inner));
    Ok(Outcome {
        connected: connected as u32,
        senders: senders as u32,
        bytes: args.bytes,
        rate_per_sender: args.rate,
        sent,
        expected_deliveries: expected,
        delivered,
        lost,
        duplicated,
        errors,
        seconds,
        deliveries_per_s: if seconds > 0.0 {
            delivered as f64 / seconds
        } else {
            0.0
        },
        latency,
        usage,
    })
}

/// Returns once every expected delivery arrived, every receiver ended, or nothing new arrived for
/// `settle` after the senders were done.
async fn wait_for_deliveries(
    shared: &Shared,
    receivers: &[tokio::task::JoinHandle<Tally>],
    expected: u64,
    settle: Duration,
) {
    let mut last = shared.delivered();
    let mut last_change = Instant::now();
    loop {
        if last >= expected || receivers.iter().all(|task| task.is_finished()) {
            return;
        }
        tokio::time::sleep(POLL).await;
        let now = shared.delivered();
        if now != last {
            last = now;
            last_change = Instant::now();
        } else if last_change.elapsed() >= settle {
            return;
        }
    }
}

/// How every sender sends.
#[derive(Debug, Clone, Copy)]
struct SendPlan {
    messages: u64,
    deadline: Option<Instant>,
    /// Between two messages of one sender; `None` at full speed.
    interval: Option<Duration>,
    window: u64,
    /// A full-speed sender with a full window waits until this many messages more may go, not
    /// for each one.
    batch: u64,
    bytes: usize,
    /// A full-speed sender that hears nothing back for this long gives up.
    patience: Duration,
}

impl SendPlan {
    fn new(args: &SendArgs, start: Instant) -> SendPlan {
        SendPlan {
            messages: if args.duration.is_some() {
                u64::MAX
            } else {
                args.messages
            },
            deadline: args.duration.map(|duration| start + duration),
            interval: (args.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / args.rate)),
            window: args.window,
            batch: (args.window / 4).max(1),
            bytes: args.bytes as usize,
            patience: args.settle,
        }
    }

    fn more(&self, sent: u64, due: Instant) -> bool {
        sent < self.messages && self.deadline.is_none_or(|deadline| due < deadline)
    }
}

/// What a full-speed sender knows of where its messages arrived.
struct Delivered {
    /// Every message of the sender below this one reached every receiver of its room.
    below: u64,
    /// Per room: the lowest sequence number its receivers expected when last looked at; the
    /// room's messages below it need no second look.
    known: Vec<u64>,
}

impl Delivered {
    /// Moves `below` up as far as the receivers allow, to `sent` at most; whether it moved.
    fn advance(&mut self, shared: &Shared, me: usize, sent: u64) -> bool {
        let start = self.below;
        while self.below < sent {
            let room = shared.room_of_message(me, self.below);
            if self.known[room] <= self.below {
                self.known[room] = shared.expected_in(room, me);
                if self.known[room] <= self.below {
                    break;
                }
            }
            self.below += 1;
        }
        self.below > start
    }
}

/// One sender: returns its writing half (to close it at the end) and how many messages it sent.
async fn send(
    mut sink: SplitSink<Socket, Message>,
    me: usize,
    plan: SendPlan,
    shared: Arc<Shared>,
) -> (SplitSink<Socket, Message>, u64) {
    let stamp = |seq: u64, sent_us: u64| {
        let stamp = Stamp {
            run: shared.run_id,
            sender: me as u32,
            seq,
            sent_us,
        };
        shared
            .rooms
            .encode(shared.room_of_message(me, seq), stamp, plan.bytes)
    };
    let mut sent = 0;
    let outcome: Result<(), String> = async {
        match plan.interval {
            Some(interval) => {
                // Spread the senders over one interval so they do not all send at once.
                let first =
                    shared.start + interval.mul_f64(me as f64 / shared.senders.max(1) as f64);
                loop {
                    let due = first + interval.mul_f64(sent as f64);
                    if !plan.more(sent, due) {
                        return Ok(());
                    }
                    tokio::time::sleep_until(due.into()).await;
                    let due_us = due.duration_since(shared.start).as_micros() as u64;
                    sink.send(stamp(sent, due_us))
                        .await
                        .map_err(|err| format!("send: {err}"))?;
                    sent += 1;
                }
            }
            None => {
                let rooms = shared.rooms.count();
                let mut delivered = Delivered {
                    below: 0,
                    known: vec![0; rooms as usize],
                };
                while plan.more(sent, Instant::now()) {
                    delivered.advance(&shared, me, sent);
                    let in_flight = sent - delivered.below;
                    if in_flight >= plan.window {
                        // Wait for room for a batch: for the last message before that point in
                        // the room of the oldest one still missing, whose arrival everywhere
                        // also means that of the room's earlier ones.
                        let goal = (sent + plan.batch).saturating_sub(plan.window);
                        let oldest = delivered.below;
                        let awaited = oldest + (goal - 1 - oldest) / rooms * rooms;
                        let caught_up = shared.caught_up[me].notified();
                        shared.waiting_for[me].store(awaited, Ordering::SeqCst);
                        // Receivers that passed it before they could see it awaited notified no
                        // one; a second look finds them.
                        if delivered.advance(&shared, me, sent) {
                            continue;
                        }
                        if tokio::time::timeout(plan.patience, caught_up)
                            .await
                            .is_err()
                        {
                            return Err(format!(
                                "sender {me}: the receivers took none of its messages for {:?}",
                                plan.patience
                            ));
                        }
                        continue;
                    }
                    let room = (plan.window - in_flight).min(plan.messages - sent);
                    for _ in 0..room {
                        sink.feed(stamp(sent, shared.now_us()))
                            .await
                            .map_err(|err| format!("send: {err}"))?;
                        sent += 1;
                    }
                    sink.flush().await.map_err(|err| format!("send: {err}"))?;
                }
                Ok(())
            }
        }
    }
    .await;
    if let Err(err) = outcome {
        shared.error(err);
    }
    (sink, sent)
}

/// One receiver: counts, checks and times every message of its room until told to stop or
/// disconnected.
async fn receive(
    mut stream: SplitStream<Socket>,
    me: usize,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Tally {
    let room = shared.room_of[me];
    let mut tally = Tally::new(shared.rooms.count(), room as u64, shared.senders);
    let mut samples = Vec::with_capacity(SAMPLE_BATCH);
    let mut last_record = Instant::now();
    let delivered = &shared.delivered[me].0;
    loop {
        let frame = tokio::select! {
            biased;
            _ = stop.changed() => break,
            frame = stream.next() => frame,
        };
        let payload = match &frame {
            Some(Ok(Message::Text(text))) => text.as_bytes(),
            Some(Ok(Message::Binary(bytes))) => bytes,
            Some(Ok(Message::Close(close))) => {
                shared.error(format!("client {me}: closed by the server: {close:?}"));
                break;
            }
            Some(Ok(_)) => continue,
            Some(Err(err)) => {
                shared.error(format!("client {me}: {err}"));
                break;
            }
            None => {
                shared.error(format!("client {me}: connection ended"));
                break;
            }
        };
        let Some((stamp, in_room)) = shared.rooms.decode(payload, room) else {
            continue;
        };
        let sender = stamp.sender as usize;
        if stamp.run != shared.run_id || sender >= shared.senders {
            continue;
        }
        let receipt = if in_room {
            tally.receive(sender, stamp.seq)
        } else {
            Receipt::Misrouted
        };
        let (before, after) = match receipt {
            Receipt::New { before, after } => (before, after),
            Receipt::Duplicate => continue,
            Receipt::Misrouted => {
                shared.error(format!(
                    "client {me}, in {}, got message {} of sender {sender}, which went to {}",
                    shared.rooms.name(room),
                    stamp.seq,
                    shared.rooms.name(shared.room_of_message(sender, stamp.seq)),
                ));
                continue;
            }
        };
        let now_us = shared.now_us();
        tally.last_delivery_us = now_us;
        delivered.fetch_add(1, Ordering::Relaxed);
        samples.push(now_us.saturating_sub(stamp.sent_us));
        // The store, then the load of what the sender awaits; the sender stores that, then loads
        // these (both SeqCst): one of the two sees the other, so a waiting sender is never missed.
        shared.expects[me * shared.senders + sender].store(after, Ordering::SeqCst);
        let awaited = shared.waiting_for[sender].load(Ordering::SeqCst);
        if tally.passed(sender, awaited, before, after) {
            shared.caught_up[sender].notify_one();
        }
        if samples.len() >= SAMPLE_BATCH || last_record.elapsed() >= SAMPLE_AGE {
            shared.record(&mut samples);
            last_record = Instant::now();
        }
    }
    shared.record(&mut samples);
    shared.open.fetch_sub(1, Ordering::Relaxed);
    for sender in 0..shared.senders {
        shared.expects[me * shared.senders + sender].store(u64::MAX, Ordering::SeqCst);
        shared.caught_up[sender].notify_one();
    }
    tally
}

/// The live line of `--progress`, once a second on stderr.
async fn print_progress(shared: Arc<Shared>, clients: usize) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.tick().await;
    let mut before = shared.delivered();
    loop {
        ticks.tick().await;
        let delivered = shared.delivered();
        let p99 = {
            let mut latencies = shared
                .latencies
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let p99 = Latency::from_micros(&latencies.interval).p99_ms;
            latencies.interval.reset();
            p99
        };
        let errors = shared
            .errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .count;
        eprintln!(
            "[{:>5.0}s] connections {}/{clients}  deliveries/s {}  p99 {p99:.1} ms  errors {errors}",
            shared.start.elapsed().as_secs_f64(),
            shared.open.load(Ordering::Relaxed),
            delivered - before,
        );
        before = delivered;
    }
}

/// Closes every connection politely, without waiting long for slow ones.
async fn close_all(sinks: Vec<SplitSink<Socket, Message>>) {
    let closing = sinks.into_iter().map(|mut sink| async move {
        let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
    });
    futures_util::future::join_all(closing).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `tally` every message of `sent_by` that belongs to its room, except those `skip`
    /// rejects, in each sender's order.
    fn feed(tally: &mut Tally, sent_by: &[u64], skip: impl Fn(usize, u64) -> bool) {
        for (sender, &sent) in sent_by.iter().enumerate() {
            for seq in 0..sent {
                if room_of(tally.rooms, sender, seq) == tally.room && !skip(sender, seq) {
                    assert!(matches!(tally.receive(sender, seq), Receipt::New { .. }));
                }
            }
        }
    }

    #[test]
    fn round_robin_gives_each_room_its_share_from_a_different_start_per_sender() {
        // Three rooms; sender 0 begins in room 0, sender 1 in room 1.
        let rooms: Vec<u64> = (0..7).map(|seq| room_of(3, 1, seq)).collect();
        assert_eq!(rooms, [1, 2, 0, 1, 2, 0, 1]);
        // Of sender 1's 7 messages (0..7), room 1 got 0, 3 and 6; room 2 got 1 and 4.
        assert_eq!(sent_to(3, 1, 1, 7), 3);
        assert_eq!(sent_to(3, 2, 1, 7), 2);
        assert_eq!(sent_to(3, 0, 1, 7), 2);
        assert_eq!(sent_to(3, 0, 1, 0), 0);
        // One room: every message.
        assert_eq!(sent_to(1, 0, 5, 42), 42);
    }

    #[test]
    fn expected_deliveries_count_each_rooms_receivers() {
        // Rooms 0 and 1 with two receivers, room 2 with one; senders sent 10 and 7.
        let receivers = [0, 1, 2, 0, 1];
        // Sender 0: rooms 0, 1, 2 get 4, 3, 3; sender 1 (from room 1): 2, 3, 2.
        let expected = 2 * (4 + 2) + 2 * (3 + 3) + (3 + 2);
        assert_eq!(expected_deliveries(3, &receivers, &[10, 7]), expected);
        assert_eq!(expected_deliveries(1, &[0; 4], &[10, 7]), 4 * 17);
    }

    #[test]
    fn a_receiver_that_got_its_rooms_messages_lost_nothing() {
        let sent_by = [100, 37];
        for room in 0..10 {
            let mut tally = Tally::new(10, room, 2);
            feed(&mut tally, &sent_by, |_, _| false);
            assert_eq!(
                (tally.lost(&sent_by), tally.duplicated),
                (0, 0),
                "room {room}"
            );
        }
    }

    #[test]
    fn a_missing_message_is_lost_in_the_middle_or_at_the_end() {
        let sent_by = [100, 37];
        // Room 3 gets sender 0's 3, 13, …, 93 and sender 1's 2, 12, 22, 32.
        let mut tally = Tally::new(10, 3, 2);
        feed(&mut tally, &sent_by, |sender, seq| (sender, seq) == (0, 43));
        assert_eq!(tally.lost(&sent_by), 1);
        let mut tally = Tally::new(10, 3, 2);
        feed(&mut tally, &sent_by, |sender, seq| (sender, seq) == (1, 32));
        assert_eq!(tally.lost(&sent_by), 1);
        let mut tally = Tally::new(10, 3, 2);
        feed(&mut tally, &sent_by, |sender, seq| sender == 1 && seq < 20);
        assert_eq!(tally.lost(&sent_by), 2);
        // Nothing at all: every message of the room is lost.
        let tally = Tally::new(10, 3, 2);
        assert_eq!(tally.lost(&sent_by), 10 + 4);
        // One room, as broadcast: a gap and a missing tail.
        let mut tally = Tally::new(1, 0, 1);
        feed(&mut tally, &[10], |_, seq| seq == 4 || seq >= 8);
        assert_eq!(tally.lost(&[10]), 3);
    }

    #[test]
    fn repeats_reorderings_and_other_rooms_messages_are_caught() {
        let mut tally = Tally::new(10, 3, 2);
        assert_eq!(
            tally.receive(0, 3),
            Receipt::New {
                before: 3,
                after: 13
            }
        );
        assert_eq!(tally.receive(0, 3), Receipt::Duplicate);
        assert_eq!(
            tally.receive(0, 23),
            Receipt::New {
                before: 13,
                after: 33
            }
        );
        // 13 comes after 23: out of order, counted as a duplicate (and 13 as lost).
        assert_eq!(tally.receive(0, 13), Receipt::Duplicate);
        assert_eq!(tally.duplicated, 2);
        assert_eq!(tally.lost(&[24, 0]), 1);
        // Sender 0's message 4 went to room 4, sender 1's 3 to room 4 too.
        assert_eq!(tally.receive(0, 4), Receipt::Misrouted);
        assert_eq!(tally.receive(1, 3), Receipt::Misrouted);
        assert_eq!(
            tally.receive(1, 2),
            Receipt::New {
                before: 2,
                after: 12
            }
        );
    }

    #[test]
    fn a_receiver_wakes_a_sender_only_for_a_message_of_its_room() {
        let tally = Tally::new(10, 3, 2);
        // Sender 0's expected number moved from 3 to 33: it passed 3, 13 and 23, all of room 3.
        assert!(tally.passed(0, 13, 3, 33));
        assert!(tally.passed(0, 3, 3, 33));
        assert!(!tally.passed(0, 33, 3, 33));
        // 14 lies between, but is room 4's.
        assert!(!tally.passed(0, 14, 3, 33));
        assert!(!tally.passed(0, u64::MAX, 3, 33));
    }
}
