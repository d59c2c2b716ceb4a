//! Slowloris: sockets that send a request head one byte at a time and never finish it. Each holds
//! a server connection for as long as the server lets it, at almost no cost to the attacker, so a
//! server without a deadline for the whole head (HEADER_READ_TIMEOUT) can be made to hold every
//! socket it can. Meanwhile `/health` is polled on fresh connections: a load balancer that sees it
//! fail takes the task out of service, which is the attack succeeding by other means.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Check, Figures as AnyFigures, Server, Spread, http, show_tally, tally};
use crate::cli::AbuseCheck;

/// How often `/health` is polled while the sockets are held.
const HEALTH_EVERY: Duration = Duration::from_millis(200);
/// What every `/health` poll must beat.
const HEALTH_LIMIT: Duration = Duration::from_secs(1);
/// How long a poll may take before it counts as unanswered.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the sockets wait past the target before the check stops waiting for the server.
const GRACE: Duration = Duration::from_secs(1);
/// Time limit for one socket to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How many sockets, how slow, and how soon they must be closed.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub sockets: u32,
    pub interval: Duration,
    pub target: Duration,
}

/// What the slowloris check measured.
#[derive(Debug, Serialize)]
pub struct Figures {
    sockets: u32,
    connected: u32,
    closed_by_server: u32,
    /// From each socket's connect to the server's close.
    closed_after_s: Option<Spread>,
    /// What the server sent before closing, by status ("none" for nothing).
    answers: BTreeMap<String, u32>,
    connect_errors: u32,
    first_connect_error: Option<String>,
    health_polls: u32,
    /// Polls that did not answer 200 within the limit.
    health_failures: u32,
    first_health_failure: Option<String>,
    slowest_health_ms: f64,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "  sockets: {} of {} connected, {} closed by the server, {} still open",
            self.connected,
            self.sockets,
            self.closed_by_server,
            self.connected - self.closed_by_server
        )?;
        if let Some(spread) = self.closed_after_s {
            writeln!(f, "  closed after connecting: {spread}")?;
        }
        writeln!(
            f,
            "  answers before the close: {}",
            show_tally(&self.answers)
        )?;
        if let Some(err) = &self.first_connect_error {
            writeln!(
                f,
                "  connect errors: {} (first: {err})",
                self.connect_errors
            )?;
        }
        writeln!(
            f,
            "  /health: {} polls, {} failed or slow, slowest {:.1} ms",
            self.health_polls, self.health_failures, self.slowest_health_ms
        )?;
        if let Some(failure) = &self.first_health_failure {
            writeln!(f, "  first /health failure: {failure}")?;
        }
        Ok(())
    }
}

/// How one socket ended.
enum End {
    ConnectFailed(String),
    /// Closed by the server this long after connecting, having answered this.
    Closed(Duration, Option<u16>),
    StillOpen,
}

/// Runs the check.
pub async fn run(server: &Server, plan: Plan) -> Check {
    let (stop, stopped) = watch::channel(false);
    let poller = tokio::spawn(poll_health(server.addr, stopped));
    let sockets: Vec<_> = (0..plan.sockets)
        .map(|_| {
            // Spread over one interval, so the bytes do not all arrive together.
            let phase = plan.interval.mul_f64(rand::random::<f64>());
            tokio::spawn(slow_socket(server.addr, plan, phase))
        })
        .collect();
    let mut ends = Vec::with_capacity(sockets.len());
    for socket in sockets {
        ends.push(socket.await.unwrap_or(End::StillOpen));
    }
    let _ = stop.send(true);
    let health = poller.await.unwrap_or_default();

    let mut closed_after = Vec::new();
    let mut answers = Vec::new();
    let (mut connect_errors, mut first_connect_error) = (0, None);
    let mut late = 0;
    for end in &ends {
        match end {
            End::ConnectFailed(err) => {
                connect_errors += 1;
                first_connect_error.get_or_insert_with(|| err.clone());
            }
            End::Closed(after, status) => {
                closed_after.push(after.as_secs_f64());
                answers.push(status.map_or_else(|| "none".to_string(), |s| s.to_string()));
                if *after > plan.target {
                    late += 1;
                }
            }
            End::StillOpen => {}
        }
    }
    let connected = plan.sockets - connect_errors;
    let closed = closed_after.len() as u32;
    let figures = Figures {
        sockets: plan.sockets,
        connected,
        closed_by_server: closed,
        closed_after_s: Spread::of(closed_after),
        answers: tally(answers.iter().map(String::as_str)),
        connect_errors,
        first_connect_error,
        health_polls: health.polls,
        health_failures: health.failures,
        first_health_failure: health.first_failure.clone(),
        slowest_health_ms: health.slowest.as_secs_f64() * 1000.0,
    };

    let mut misses = Vec::new();
    if connected > closed {
        misses.push(format!(
            "{} of {connected} sockets still open {:?} after connecting",
            connected - closed,
            plan.target
        ));
    }
    if late > 0 {
        misses.push(format!(
            "{late} sockets closed only after {:?}",
            plan.target
        ));
    }
    if connect_errors > 0 {
        misses.push(format!("{connect_errors} sockets could not connect"));
    }
    if health.failures > 0 {
        misses.push(format!(
            "{} of {} /health polls did not answer 200 within {:?}",
            health.failures, health.polls, HEALTH_LIMIT
        ));
    }
    let target = format!(
        "all {} sockets (a byte every {:?}, the head never finished) closed by the server within \
         {:?}; GET /health 200 in under {:?} on every poll",
        plan.sockets, plan.interval, plan.target, HEALTH_LIMIT
    );
    Check::new(
        AbuseCheck::Slowloris,
        target,
        AnyFigures::Slowloris(figures),
        misses,
    )
}

/// The byte a slowloris socket sends at position `index`: a plausible request line and header,
/// then a header value that never ends.
fn head_byte(index: usize) -> u8 {
    const START: &[u8] = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
    START.get(index).copied().unwrap_or(b'a')
}

async fn slow_socket(addr: SocketAddr, plan: Plan, phase: Duration) -> End {
    let mut stream = match http::connect(addr, CONNECT_TIMEOUT).await {
        Ok(stream) => stream,
        Err(err) => return End::ConnectFailed(err),
    };
    let opened = Instant::now();
    let give_up = opened + plan.target + GRACE;
    let mut next_byte = opened + phase;
    let mut sent = 0;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    let status = |answer: &[u8]| {
        http::Reply {
            bytes: answer.to_vec(),
            end: http::End::Closed,
        }
        .status()
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(give_up) => return End::StillOpen,
            _ = tokio::time::sleep_until(next_byte) => {
                if stream.write_all(&[head_byte(sent)]).await.is_err() {
                    return End::Closed(opened.elapsed(), status(&answer));
                }
                sent += 1;
                next_byte += plan.interval;
            }
            read = stream.read(&mut buffer) => match read {
                Ok(0) | Err(_) => return End::Closed(opened.elapsed(), status(&answer)),
                Ok(read) => {
                    if answer.len() < 1024 {
                        answer.extend_from_slice(&buffer[..read]);
                    }
                }
            },
        }
    }
}

/// What the `/health` poller saw.
#[derive(Debug, Default)]
struct Health {
    polls: u32,
    failures: u32,
    first_failure: Option<String>,
    slowest: Duration,
}

/// Polls `/health` on a fresh connection every [`HEALTH_EVERY`] until told to stop.
async fn poll_health(addr: SocketAddr, mut stop: watch::Receiver<bool>) -> Health {
    let mut health = Health::default();
    let request = http::health_request(addr);
    loop {
        let started = Instant::now();
        let outcome = http::exchange(addr, &request, HEALTH_TIMEOUT).await;
        let took = started.elapsed();
        health.polls += 1;
        health.slowest = health.slowest.max(took);
        let failure = match outcome {
            Ok(reply) if reply.status() == Some(200) && took < HEALTH_LIMIT => None,
            Ok(reply) if reply.status() == Some(200) => Some(format!("200 after {took:?}")),
            Ok(reply) => Some(format!("{} after {took:?}", reply.describe())),
            Err(err) => Some(err),
        };
        if let Some(failure) = failure {
            health.failures += 1;
            health.first_failure.get_or_insert(failure);
        }
        tokio::select! {
            _ = stop.changed() => return health,
            _ = tokio::time::sleep_until(started + HEALTH_EVERY) => {}
        }
    }
}
