//! `loadgen broadcast`: C clients connect, S of them send, every client counts what it receives.
//!
//! Every client is a receiver with its own task. The first S are also senders, each with a second
//! task on the socket's writing half. At full speed a sender keeps at most `--window` of its
//! messages ahead of the slowest receiver, so the figure is the throughput the whole path sustains
//! with nothing lost, not how fast messages pile up in the server's queues (where our server
//! would rightly cut the slowest client off, and the references would grow without bound). At a fixed `--rate` each message is stamped with the moment it
//! was due rather than sent, so a stalled sender shows up as latency instead of hiding it.
//!
//! The service promises each client the messages of one sender in the order they were sent, so a
//! receiver keeps one number per sender, the next sequence number it expects: a jump is a loss, a
//! step back a duplicate (or a reordering, which breaks the same promise).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::cli::BroadcastArgs;
use crate::client::{self, Socket};
use crate::message::{self, Stamp};
use crate::report::{self, Errors, Latency, PhaseStart, PhaseUsage};

/// Latency samples a receiver collects before adding them to the shared histograms.
const SAMPLE_BATCH: usize = 512;
/// The longest a receiver keeps samples to itself, so the progress line stays current.
const SAMPLE_AGE: Duration = Duration::from_millis(100);
/// How often the main task checks whether everything has arrived.
const POLL: Duration = Duration::from_millis(20);

/// The outcome of a broadcast run.
#[derive(Debug, Serialize)]
pub struct BroadcastResult {
    scenario: &'static str,
    urls: Vec<String>,
    clients: u32,
    connected: u32,
    senders: u32,
    bytes: u32,
    rate_per_sender: f64,
    /// Messages the senders sent, all together.
    sent: u64,
    /// `sent` times the connected clients: every client gets every message, its own included.
    expected_deliveries: u64,
    /// Distinct messages received, over all clients.
    delivered: u64,
    lost: u64,
    duplicated: u64,
    /// Connections that failed to open, or closed or failed before the end.
    #[serde(flatten)]
    errors: Errors,
    /// From the first send to the last delivery.
    seconds: f64,
    deliveries_per_s: f64,
    latency: Latency,
    usage: PhaseUsage,
}

impl BroadcastResult {
    /// Whether the run saw no loss, duplicate or error.
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.errors.none()
    }
}

impl std::fmt::Display for BroadcastResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rate = if self.rate_per_sender > 0.0 {
            format!("{} msg/s each", self.rate_per_sender)
        } else {
            "full speed".into()
        };
        writeln!(
            f,
            "broadcast: {}/{} clients connected, {} senders, {} B messages, {rate}",
            self.connected, self.clients, self.senders, self.bytes
        )?;
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

/// What all tasks of a run share.
struct Shared {
    run_id: u32,
    senders: usize,
    start: Instant,
    latencies: Mutex<Latencies>,
    /// Per client: distinct deliveries so far. One writer each, so no cache line is fought over.
    delivered: Vec<PaddedCounter>,
    /// Per receiver and sender (`receiver * senders + sender`): the messages received from that
    /// sender so far; `u64::MAX` once the receiver is gone, so it holds no sender back.
    received_from: Vec<AtomicU64>,
    /// Per sender: woken as receivers catch up with it.
    caught_up: Vec<Notify>,
    /// Receivers wake a sender every this many of its messages, not for each one.
    wake_every: u64,
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

    /// How many of `sender`'s messages every remaining receiver has.
    fn acknowledged(&self, sender: usize) -> u64 {
        self.received_from
            .iter()
            .skip(sender)
            .step_by(self.senders)
            .map(|count| count.load(Ordering::Acquire))
            .min()
            .unwrap_or(u64::MAX)
    }

    fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }
}

/// What one receiver counted.
struct Tally {
    /// Per sender, the sequence number expected next.
    next: Vec<u64>,
    gaps: u64,
    duplicated: u64,
    last_delivery_us: u64,
}

/// Runs the scenario.
pub async fn run(args: &BroadcastArgs) -> Result<BroadcastResult, String> {
    let common = &args.common;
    let connections = client::connect_many(
        &common.urls,
        args.clients,
        common.connect_concurrency,
        common.connect_timeout,
    )
    .await;
    let errors = client::failures(&connections);
    let sockets: Vec<Socket> = connections.into_iter().filter_map(Result::ok).collect();
    if sockets.is_empty() {
        return Err(format!(
            "no client could connect to {}: {}",
            common.urls.join(", "),
            errors.first.unwrap_or_default()
        ));
    }
    let connected = sockets.len();
    let senders = (args.senders as usize).min(connected);

    let usage_start = PhaseStart::now(&common.server_pids)?;
    let (stop, stopped) = watch::channel(false);
    let mut receivers = Vec::with_capacity(connected);
    let mut sending = Vec::with_capacity(senders);
    let mut idle_sinks = Vec::with_capacity(connected - senders);
    let shared = Arc::new(Shared {
        run_id: rand::random(),
        senders,
        // Time zero is when the first message may go out, not when the first client connected.
        start: Instant::now(),
        latencies: Mutex::new(Latencies {
            total: report::latency_histogram(),
            interval: report::latency_histogram(),
        }),
        delivered: (0..connected).map(|_| PaddedCounter::default()).collect(),
        received_from: (0..connected * senders)
            .map(|_| AtomicU64::new(0))
            .collect(),
        caught_up: (0..senders).map(|_| Notify::new()).collect(),
        wake_every: (args.window / 4).max(1),
        errors: Mutex::new(errors),
        open: AtomicU64::new(connected as u64),
    });
    let plan = SendPlan::new(args, shared.start);
    for (index, socket) in sockets.into_iter().enumerate() {
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
    let expected = sent * connected as u64;
    wait_for_deliveries(&shared, &receivers, expected, args.settle).await;
    let usage = usage_start.end(&common.server_pids)?;

    let _ = stop.send(true);
    let (mut lost, mut duplicated, mut last_delivery_us) = (0, 0, 0);
    for task in receivers {
        let tally = task
            .await
            .map_err(|err| format!("receiver panicked: {err}"))?;
        lost += tally.gaps;
        lost += sent_by
            .iter()
            .zip(&tally.next)
            .map(|(sent, next)| sent.saturating_sub(*next))
            .sum::<u64>();
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
    Ok(BroadcastResult {
        scenario: "broadcast",
        urls: common.urls.clone(),
        clients: args.clients,
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
    bytes: usize,
    /// A full-speed sender that hears nothing back for this long gives up.
    patience: Duration,
}

impl SendPlan {
    fn new(args: &BroadcastArgs, start: Instant) -> SendPlan {
        SendPlan {
            messages: if args.duration.is_some() {
                u64::MAX
            } else {
                args.messages
            },
            deadline: args.duration.map(|duration| start + duration),
            interval: (args.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / args.rate)),
            window: args.window,
            bytes: args.bytes as usize,
            patience: args.settle,
        }
    }

    fn more(&self, sent: u64, due: Instant) -> bool {
        sent < self.messages && self.deadline.is_none_or(|deadline| due < deadline)
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
        Message::text(message::encode(
            Stamp {
                run: shared.run_id,
                sender: me as u32,
                seq,
                sent_us,
            },
            plan.bytes,
        ))
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
                while plan.more(sent, Instant::now()) {
                    let in_flight = sent - shared.acknowledged(me).min(sent);
                    if in_flight >= plan.window {
                        let caught_up = shared.caught_up[me].notified();
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

/// One receiver: counts, checks and times every broadcast until told to stop or disconnected.
async fn receive(
    mut stream: SplitStream<Socket>,
    me: usize,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Tally {
    let mut tally = Tally {
        next: vec![0; shared.senders],
        gaps: 0,
        duplicated: 0,
        last_delivery_us: 0,
    };
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
        let Some(stamp) = message::decode_broadcast(payload) else {
            continue;
        };
        let sender = stamp.sender as usize;
        if stamp.run != shared.run_id || sender >= shared.senders {
            continue;
        }
        let now_us = shared.now_us();
        let expected = &mut tally.next[sender];
        if stamp.seq < *expected {
            tally.duplicated += 1;
            continue;
        }
        tally.gaps += stamp.seq - *expected;
        *expected = stamp.seq + 1;
        tally.last_delivery_us = now_us;
        delivered.fetch_add(1, Ordering::Relaxed);
        samples.push(now_us.saturating_sub(stamp.sent_us));
        shared.received_from[me * shared.senders + sender].store(stamp.seq + 1, Ordering::Release);
        if (stamp.seq + 1) % shared.wake_every == 0 {
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
        shared.received_from[me * shared.senders + sender].store(u64::MAX, Ordering::Release);
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
