//! Flood: one `/wss` client sends small messages as fast as it can among listeners and a polite
//! client that sends one message a second. Every broadcast message costs the server one write per
//! listener, so an unlimited flooder multiplies its bandwidth by the audience and pushes every
//! listener's queue over its limit, which disconnects clients that did nothing wrong. The server
//! must drop what the flooder sends over its rate limit (and close it with 1008 once it has been
//! over for long enough) while the listeners stay connected and get every polite message.
//!
//! What the flooder got accepted is measured where it matters, at the listeners: the flooder's
//! messages the busiest listener received, over the flood's duration. A token bucket lets through
//! at most its burst plus its rate times the duration.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::{CONNECT_TIMEOUT, Check, Figures as AnyFigures, Server, show_tally};
use crate::cli::AbuseCheck;
use crate::client::{self, Socket};

/// Messages the flooder hands to its socket between flushes.
const FLOOD_BATCH: usize = 64;
/// The polite client's pace.
const POLITE_EVERY: Duration = Duration::from_secs(1);
/// After the flood, how long the listeners have to receive the last polite message.
const SETTLE: Duration = Duration::from_secs(5);
/// How often the settle loop looks.
const POLL: Duration = Duration::from_millis(50);
/// Listener connections opened at once.
const CONNECT_CONCURRENCY: u32 = 100;
/// The share of listeners that must stay connected, in percent.
const LISTENERS_KEPT_PERCENT: u32 = 99;

/// How many listeners, for how long, and the limits the server is expected to enforce.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub listeners: u32,
    pub duration: Duration,
    pub max_messages_per_second: u32,
    pub message_burst: u32,
    pub over_limit_close: Duration,
}

impl Plan {
    /// The most flooder messages a second the server may let through over the whole flood.
    fn accepted_limit(&self) -> Option<f64> {
        (self.max_messages_per_second > 0).then(|| {
            f64::from(self.max_messages_per_second)
                + f64::from(self.message_burst) / self.duration.as_secs_f64()
        })
    }

    /// Whether the flood outlasts the time the server lets a client stay over its limit.
    fn expects_close(&self) -> bool {
        self.max_messages_per_second > 0 && self.duration > self.over_limit_close
    }
}

/// What the flood check measured.
#[derive(Debug, Serialize)]
pub struct Figures {
    listeners: u32,
    connected: u32,
    open_at_end: u32,
    /// Listener connections that ended, by close code ("no close frame" when none came).
    listener_closes: BTreeMap<String, u32>,
    first_connect_error: Option<String>,
    flood_seconds: f64,
    flooder_sent: u64,
    /// How long the flooder could send: the whole flood, or until the server closed it.
    flooder_sending_s: f64,
    /// The flooder's messages the busiest listener received.
    flooder_delivered: u64,
    flooder_accepted_per_s: f64,
    /// The most the limits allow: rate plus burst over the duration (absent without a limit).
    flooder_accepted_limit_per_s: Option<f64>,
    /// How the flooder's connection ended, in words.
    flooder_end: String,
    flooder_close_code: Option<u16>,
    flooder_closed_after_s: Option<f64>,
    polite_sent: u64,
    /// Polite messages missing, summed over the listeners still open.
    polite_lost: u64,
    /// Listeners still open that missed at least one.
    listeners_missing_polite: u32,
    polite_end: Option<String>,
    /// `websocket_messages_dropped_total{reason="rate_limited"}` over the check (with --admin).
    dropped_rate_limited: Option<u64>,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "  listeners: {} of {} connected, {} open at the end; closed: {}",
            self.connected,
            self.listeners,
            self.open_at_end,
            show_tally(&self.listener_closes)
        )?;
        if let Some(err) = &self.first_connect_error {
            writeln!(f, "  first connect error: {err}")?;
        }
        let limit = self.flooder_accepted_limit_per_s.map_or_else(
            || "no limit set".into(),
            |limit| format!("limit {limit:.0}"),
        );
        writeln!(
            f,
            "  flooder: sent {} in {:.1} s; the busiest listener got {} of them: {:.1} msg/s \
             accepted over the {:.0} s flood ({limit})",
            self.flooder_sent,
            self.flooder_sending_s,
            self.flooder_delivered,
            self.flooder_accepted_per_s,
            self.flood_seconds
        )?;
        writeln!(f, "  flooder ended: {}", self.flooder_end)?;
        writeln!(
            f,
            "  polite sender: sent {}, lost {} ({} open listeners missed some){}",
            self.polite_sent,
            self.polite_lost,
            self.listeners_missing_polite,
            self.polite_end
                .as_ref()
                .map_or_else(String::new, |end| format!(", ended: {end}"))
        )?;
        if let Some(dropped) = self.dropped_rate_limited {
            writeln!(
                f,
                "  server counted {dropped} messages dropped as rate_limited"
            )?;
        }
        Ok(())
    }
}

/// What one listener counted.
struct Listener {
    flood: u64,
    /// Per polite sequence number, whether it arrived.
    polite: Vec<bool>,
    /// How the connection ended, if it did: the close code, or a description.
    ended: Option<String>,
}

/// What listeners share with the main task while the flood runs.
struct Progress {
    /// Per listener: polite messages received.
    polite: Vec<AtomicU64>,
    /// Per listener: whether its connection ended.
    ended: Vec<AtomicBool>,
}

/// Runs the check.
pub async fn run(server: &Server, plan: Plan) -> Check {
    let dropped_before = server.dropped("rate_limited").await;
    let connections = client::connect_many(
        &[server.url("/wss")],
        plan.listeners,
        CONNECT_CONCURRENCY,
        CONNECT_TIMEOUT,
    )
    .await;
    let connect_errors = client::failures(&connections);
    let sockets: Vec<Socket> = connections.into_iter().filter_map(Result::ok).collect();
    let connected = sockets.len() as u32;
    let flooder = client::connect(&server.url("/wss"), CONNECT_TIMEOUT).await;
    let polite = client::connect(&server.url("/wss"), CONNECT_TIMEOUT).await;
    let (flooder, polite) = match (flooder, polite) {
        (Ok(flooder), Ok(polite)) => (flooder, polite),
        (Err(err), _) | (_, Err(err)) => {
            return Check::new(
                AbuseCheck::Flood,
                "the flooder and the polite sender connect".into(),
                AnyFigures::NotRun {},
                vec![format!("not run: {err}")],
            );
        }
    };

    let polite_expected = polite_count(plan.duration);
    let progress = Arc::new(Progress {
        polite: (0..connected).map(|_| AtomicU64::new(0)).collect(),
        ended: (0..connected).map(|_| AtomicBool::new(false)).collect(),
    });
    let (stop, stopped) = watch::channel(false);
    let mut sinks = Vec::with_capacity(sockets.len());
    let listeners: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(index, socket)| {
            let (sink, stream) = socket.split();
            sinks.push(sink);
            tokio::spawn(listen(
                stream,
                index,
                server.run,
                polite_expected,
                Arc::clone(&progress),
                stopped.clone(),
            ))
        })
        .collect();

    let start = Instant::now();
    let deadline = start + plan.duration;
    let flooding = tokio::spawn(flood(flooder, server.run, start, deadline));
    let polite_task = tokio::spawn(send_politely(polite, server.run, start, deadline));
    let flooder = flooding.await.unwrap_or_else(|err| Flooder {
        sent: 0,
        sending: Duration::ZERO,
        end: format!("flooder task failed: {err}"),
        close_code: None,
        closed_after: None,
    });
    let polite = polite_task.await.unwrap_or_else(|err| Polite {
        sent: 0,
        end: Some(format!("polite task failed: {err}")),
        sink: None,
    });
    let flood_seconds = plan.duration.as_secs_f64();

    // The last polite message was sent just before the deadline; give it time to arrive.
    let settle_until = Instant::now() + SETTLE;
    while Instant::now() < settle_until {
        let all_there = (0..connected as usize).all(|index| {
            progress.ended[index].load(Ordering::Relaxed)
                || progress.polite[index].load(Ordering::Relaxed) >= polite.sent
        });
        if all_there {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let _ = stop.send(true);
    let mut tallies = Vec::with_capacity(listeners.len());
    for listener in listeners {
        if let Ok(tally) = listener.await {
            tallies.push(tally);
        }
    }
    close_all(sinks, polite.sink).await;
    let dropped_after = server.dropped("rate_limited").await;

    let open: Vec<&Listener> = tallies.iter().filter(|t| t.ended.is_none()).collect();
    let open_at_end = open.len() as u32;
    let mut closes = BTreeMap::new();
    for ended in tallies.iter().filter_map(|t| t.ended.as_deref()) {
        *closes.entry(ended.to_owned()).or_insert(0) += 1;
    }
    let missing = |tally: &Listener| {
        tally.polite[..(polite.sent as usize).min(tally.polite.len())]
            .iter()
            .filter(|got| !**got)
            .count() as u64
    };
    let polite_lost: u64 = open.iter().map(|tally| missing(tally)).sum();
    let listeners_missing_polite = open.iter().filter(|tally| missing(tally) > 0).count() as u32;
    let flooder_delivered = tallies.iter().map(|t| t.flood).max().unwrap_or(0);
    let accepted = flooder_delivered as f64 / flood_seconds;
    let figures = Figures {
        listeners: plan.listeners,
        connected,
        open_at_end,
        listener_closes: closes,
        first_connect_error: connect_errors.first.clone(),
        flood_seconds,
        flooder_sent: flooder.sent,
        flooder_sending_s: flooder.sending.as_secs_f64(),
        flooder_delivered,
        flooder_accepted_per_s: accepted,
        flooder_accepted_limit_per_s: plan.accepted_limit(),
        flooder_end: flooder.end.clone(),
        flooder_close_code: flooder.close_code,
        flooder_closed_after_s: flooder.closed_after.map(|after| after.as_secs_f64()),
        polite_sent: polite.sent,
        polite_lost,
        listeners_missing_polite,
        polite_end: polite.end.clone(),
        dropped_rate_limited: dropped_before
            .zip(dropped_after)
            .map(|(before, after)| after.saturating_sub(before)),
    };

    let mut misses = Vec::new();
    if open_at_end * 100 < plan.listeners * LISTENERS_KEPT_PERCENT {
        misses.push(format!(
            "only {open_at_end} of {} listeners still open at the end (at least \
             {LISTENERS_KEPT_PERCENT} % must be)",
            plan.listeners
        ));
    }
    if polite_lost > 0 {
        misses.push(format!(
            "{polite_lost} polite messages lost across {listeners_missing_polite} open listeners"
        ));
    }
    if let Some(end) = &polite.end {
        misses.push(format!("the polite sender's connection ended: {end}"));
    }
    if polite.sent == 0 {
        misses.push("the polite sender sent nothing".into());
    }
    if let Some(limit) = plan.accepted_limit()
        && accepted > limit
    {
        misses.push(format!(
            "the flooder got {accepted:.1} msg/s through, over {limit:.1} ({} + {}/{:.0} s)",
            plan.max_messages_per_second, plan.message_burst, flood_seconds
        ));
    }
    if plan.expects_close() && flooder.close_code != Some(1008) {
        misses.push(format!(
            "the flooder was not closed with 1008 within {flood_seconds:.0} s (ended: {})",
            flooder.end
        ));
    }

    let mut target = format!(
        "with one flooder among {} listeners for {flood_seconds:.0} s: at least \
         {LISTENERS_KEPT_PERCENT} % of listeners open at the end, no polite message lost",
        plan.listeners
    );
    if let Some(limit) = plan.accepted_limit() {
        target.push_str(&format!(
            ", the flooder's accepted rate at most {limit:.0} msg/s"
        ));
    }
    if plan.expects_close() {
        target.push_str(", the flooder closed with 1008");
    }
    Check::new(
        AbuseCheck::Flood,
        target,
        AnyFigures::Flood(figures),
        misses,
    )
}

/// Polite messages sent in `duration`: one at the start and one each [`POLITE_EVERY`] after.
fn polite_count(duration: Duration) -> u64 {
    (duration.as_secs_f64() / POLITE_EVERY.as_secs_f64()).ceil() as u64
}

fn flood_message(run: u32) -> String {
    format!(r#"{{"flood":{run}}}"#)
}

fn polite_message(run: u32, seq: u64) -> String {
    format!(r#"{{"polite":{run},"seq":{seq}}}"#)
}

/// The polite sequence number of a broadcast of [`polite_message`] from run `run`.
fn polite_seq(frame: &[u8], run: u32) -> Option<u64> {
    let prefix = format!(r#"{{"message":{{"polite":{run},"seq":"#);
    let rest = frame.strip_prefix(prefix.as_bytes())?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// One listener: reads everything at its own pace until told to stop or disconnected.
async fn listen(
    mut stream: SplitStream<Socket>,
    index: usize,
    run: u32,
    polite_expected: u64,
    progress: Arc<Progress>,
    mut stop: watch::Receiver<bool>,
) -> Listener {
    let flood = format!(r#"{{"message":{}}}"#, flood_message(run));
    let mut tally = Listener {
        flood: 0,
        polite: vec![false; polite_expected as usize],
        ended: None,
    };
    loop {
        let frame = tokio::select! {
            biased;
            _ = stop.changed() => break,
            frame = stream.next() => frame,
        };
        match frame {
            Some(Ok(Message::Text(text))) => {
                let bytes = text.as_bytes();
                if bytes == flood.as_bytes() {
                    tally.flood += 1;
                } else if let Some(seq) = polite_seq(bytes, run)
                    && let Some(got) = tally.polite.get_mut(seq as usize)
                    && !*got
                {
                    *got = true;
                    progress.polite[index].fetch_add(1, Ordering::Relaxed);
                }
            }
            Some(Ok(Message::Close(close))) => {
                tally.ended = Some(close.map_or_else(
                    || "close without a code".to_string(),
                    |close| u16::from(close.code).to_string(),
                ));
                break;
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => {
                tally.ended = Some("no close frame".into());
                break;
            }
        }
    }
    progress.ended[index].store(tally.ended.is_some(), Ordering::Relaxed);
    tally
}

/// How the flooder did.
struct Flooder {
    sent: u64,
    sending: Duration,
    end: String,
    close_code: Option<u16>,
    closed_after: Option<Duration>,
}

/// Sends as fast as the connection takes it until `deadline` or the server closes it. Its own
/// broadcasts are read and thrown away, so that it is never cut off for reading too slowly, and so
/// that the server's close frame is seen.
async fn flood(socket: Socket, run: u32, start: Instant, deadline: Instant) -> Flooder {
    let (mut sink, mut stream) = socket.split();
    let reader = tokio::spawn(async move {
        let end = loop {
            match stream.next().await {
                Some(Ok(Message::Close(close))) => {
                    let code = close.map(|close| u16::from(close.code));
                    break match code {
                        Some(code) => (code.into(), format!("closed by the server with {code}")),
                        None => (None, "closed by the server without a code".into()),
                    };
                }
                Some(Ok(_)) => continue,
                Some(Err(err)) => break (None, format!("connection failed: {err}")),
                None => break (None, "connection ended without a close frame".into()),
            }
        };
        (end.0, start.elapsed(), end.1)
    });
    let message = Message::text(flood_message(run));
    let mut sent = 0;
    let send_failed = tokio::time::timeout_at(deadline, async {
        loop {
            for _ in 0..FLOOD_BATCH {
                if sink.feed(message.clone()).await.is_err() {
                    return;
                }
                sent += 1;
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    })
    .await
    .is_ok();
    let sending = start.elapsed().min(deadline - start);
    // A failed send means the connection is over and the reader has, or is about to have, the
    // reason. Otherwise the reader is done only if the server closed before the deadline; our own
    // close below must not count as the server's.
    let mut reader = reader;
    let outcome = if send_failed || reader.is_finished() {
        let outcome = tokio::time::timeout(Duration::from_secs(2), &mut reader).await;
        reader.abort();
        outcome.ok().and_then(Result::ok)
    } else {
        reader.abort();
        let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
        None
    };
    match outcome {
        Some((close_code, after, end)) => Flooder {
            sent,
            sending,
            end: format!("{end} after {:.1} s", after.as_secs_f64()),
            close_code,
            closed_after: Some(after),
        },
        None => Flooder {
            sent,
            sending,
            end: if send_failed {
                "sending failed, and no close frame came".into()
            } else {
                "still open at the end of the flood".into()
            },
            close_code: None,
            closed_after: None,
        },
    }
}

/// How the polite client did; its writing half, to close at the end.
struct Polite {
    sent: u64,
    /// How its connection ended, if it did before the end.
    end: Option<String>,
    sink: Option<SplitSink<Socket, Message>>,
}

/// One message each [`POLITE_EVERY`] from `start` until `deadline`, reading everything that
/// arrives meanwhile.
async fn send_politely(socket: Socket, run: u32, start: Instant, deadline: Instant) -> Polite {
    let (mut sink, mut stream) = socket.split();
    let (ended_tx, mut ended) = watch::channel(None::<String>);
    let reader = tokio::spawn(async move {
        loop {
            match tokio::time::timeout_at(deadline + SETTLE, stream.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Close(close)))) => {
                    let code = close.map_or_else(
                        || "without a code".to_string(),
                        |close| u16::from(close.code).to_string(),
                    );
                    let _ = ended_tx.send(Some(format!("closed by the server: {code}")));
                    return;
                }
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(err))) => {
                    let _ = ended_tx.send(Some(format!("connection failed: {err}")));
                    return;
                }
                Ok(None) => {
                    let _ = ended_tx.send(Some("connection ended".into()));
                    return;
                }
            }
        }
    });
    let mut sent = 0;
    let mut due = start;
    while due < deadline {
        tokio::select! {
            _ = ended.changed() => break,
            _ = tokio::time::sleep_until(due) => {}
        }
        // A server that stops reading from a polite client is a failure the misses report, not
        // a reason to wait past the flood.
        let sending = sink.send(Message::text(polite_message(run, sent)));
        if !matches!(tokio::time::timeout_at(deadline, sending).await, Ok(Ok(()))) {
            break;
        }
        sent += 1;
        due += POLITE_EVERY;
    }
    let end = ended.borrow().clone();
    reader.abort();
    Polite {
        sent,
        end,
        sink: Some(sink),
    }
}

/// Closes the listeners and the polite client, without waiting long for any.
async fn close_all(
    listeners: Vec<SplitSink<Socket, Message>>,
    polite: Option<SplitSink<Socket, Message>>,
) {
    let closing = listeners
        .into_iter()
        .chain(polite)
        .map(|mut sink| async move {
            let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
        });
    futures_util::future::join_all(closing).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_rate_plus_burst_over_the_duration() {
        let plan = Plan {
            listeners: 1,
            duration: Duration::from_secs(10),
            max_messages_per_second: 100,
            message_burst: 200,
            over_limit_close: Duration::from_secs(5),
        };
        assert_eq!(plan.accepted_limit(), Some(120.0));
        assert!(plan.expects_close());
        let unlimited = Plan {
            max_messages_per_second: 0,
            ..plan
        };
        assert_eq!(unlimited.accepted_limit(), None);
        assert!(!unlimited.expects_close());
        let short = Plan {
            duration: Duration::from_secs(3),
            ..plan
        };
        assert!(!short.expects_close());
    }

    #[test]
    fn polite_broadcasts_give_their_sequence_number() {
        let frame = format!(r#"{{"message":{}}}"#, polite_message(42, 7));
        assert_eq!(polite_seq(frame.as_bytes(), 42), Some(7));
        assert_eq!(polite_seq(frame.as_bytes(), 43), None);
        let flood = format!(r#"{{"message":{}}}"#, flood_message(42));
        assert_eq!(polite_seq(flood.as_bytes(), 42), None);
        assert_eq!(polite_count(Duration::from_secs(10)), 10);
        assert_eq!(polite_count(Duration::from_millis(7500)), 8);
    }
}
