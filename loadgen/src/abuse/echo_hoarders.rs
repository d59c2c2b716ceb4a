//! Echo hoarders: `/echo` clients that send large frames as fast as they can and never read the
//! echoes. Every echo the server cannot write waits in the server's memory; bounded by message
//! count alone, a queue of 60 KiB frames is tens of MiB per client. The server must bound each
//! client's queue in bytes and stop reading from a client whose queue is full, so its memory
//! stays flat however many hoarders there are.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::{CONNECT_TIMEOUT, Check, Figures as AnyFigures, Server, mib, show_tally};
use crate::cli::AbuseCheck;
use crate::client;

/// Each hoarder's frames: under the default MAX_FRAME_SIZE of 64 KiB, so none is refused for size.
const FRAME_BYTES: usize = 60 * 1024;
/// The most the server's resident memory may grow while the hoarders send.
const MAX_GROWTH: u64 = 100 * 1024 * 1024;
/// How often the server's memory is read.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// After the hoarders are gone, how long before "after" is read.
const AFTER: Duration = Duration::from_secs(2);

/// How many hoarders, for how long.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub hoarders: u32,
    pub duration: Duration,
}

/// What the echo-hoarders check measured.
#[derive(Debug, Serialize)]
pub struct Figures {
    hoarders: u32,
    connected: u32,
    frame_bytes: usize,
    seconds: f64,
    /// Frames handed to the sockets, all hoarders together.
    frames_sent: u64,
    rss_before_bytes: Option<u64>,
    rss_peak_bytes: Option<u64>,
    /// Once the hoarders were gone.
    rss_after_bytes: Option<u64>,
    rss_growth_bytes: Option<u64>,
    /// How the hoarders' connections ended, by what their sending saw.
    hoarder_ends: BTreeMap<String, u32>,
    first_connect_error: Option<String>,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "  {} of {} hoarders connected, sent {} frames of {} KiB ({:.0} MiB) in {:.1} s",
            self.connected,
            self.hoarders,
            self.frames_sent,
            self.frame_bytes / 1024,
            mib(self.frames_sent * self.frame_bytes as u64),
            self.seconds
        )?;
        let show = |bytes: Option<u64>| {
            bytes.map_or_else(|| "unknown".to_string(), |b| format!("{:.1} MiB", mib(b)))
        };
        writeln!(
            f,
            "  server RSS: before {}, peak {}, after {} (growth {})",
            show(self.rss_before_bytes),
            show(self.rss_peak_bytes),
            show(self.rss_after_bytes),
            show(self.rss_growth_bytes)
        )?;
        writeln!(f, "  hoarders: {}", show_tally(&self.hoarder_ends))?;
        if let Some(err) = &self.first_connect_error {
            writeln!(f, "  first connect error: {err}")?;
        }
        Ok(())
    }
}

/// Runs the check.
pub async fn run(server: &Server, plan: Plan) -> Check {
    let target = format!(
        "server RSS grows by less than {:.0} MiB while {} /echo clients send {} KiB frames for \
         {:?} and never read",
        mib(MAX_GROWTH),
        plan.hoarders,
        FRAME_BYTES / 1024,
        plan.duration
    );
    let Some(before) = server.rss() else {
        return Check::new(
            AbuseCheck::EchoHoarders,
            target,
            AnyFigures::NotRun {},
            vec!["not run: the server's memory cannot be read (--server-pid)".into()],
        );
    };
    let (stop_sampling, sampling) = watch::channel(false);
    let sampler = tokio::spawn(sample_peak(*server, before, sampling));

    let url = server.url("/echo");
    let connections = futures_util::future::join_all(
        (0..plan.hoarders).map(|_| client::open(&url, CONNECT_TIMEOUT)),
    )
    .await;
    let connect_errors = client::failures(&connections);
    let sockets: Vec<client::Socket> = connections.into_iter().filter_map(Result::ok).collect();
    let connected = sockets.len() as u32;
    let started = Instant::now();
    let deadline = started + plan.duration;
    let frame = Message::binary(vec![b'x'; FRAME_BYTES]);
    let hoarders: Vec<_> = sockets
        .into_iter()
        .map(|socket| tokio::spawn(hoard(socket, frame.clone(), deadline)))
        .collect();
    let mut frames_sent = 0;
    let mut ends = Vec::with_capacity(hoarders.len());
    for hoarder in hoarders {
        match hoarder.await {
            Ok((sent, end)) => {
                frames_sent += sent;
                ends.push(end);
            }
            Err(err) => ends.push(format!("hoarder task failed: {err}")),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    // The hoarders' sockets are gone with their tasks; give the server a moment to let go.
    tokio::time::sleep(AFTER).await;
    let _ = stop_sampling.send(true);
    let peak = sampler.await.ok().flatten();
    let after = server.rss();
    let growth = peak.map(|peak| peak.saturating_sub(before));

    let mut misses = Vec::new();
    match growth {
        Some(growth) if growth >= MAX_GROWTH => misses.push(format!(
            "server RSS grew by {:.1} MiB (limit {:.0} MiB)",
            mib(growth),
            mib(MAX_GROWTH)
        )),
        Some(_) => {}
        None => misses.push("the server's memory could not be read: is it still running?".into()),
    }
    if connect_errors.count > 0 {
        misses.push(format!(
            "{} hoarders could not connect",
            connect_errors.count
        ));
    }
    let figures = Figures {
        hoarders: plan.hoarders,
        connected,
        frame_bytes: FRAME_BYTES,
        seconds,
        frames_sent,
        rss_before_bytes: Some(before),
        rss_peak_bytes: peak,
        rss_after_bytes: after,
        rss_growth_bytes: growth,
        hoarder_ends: super::tally(ends.iter().map(String::as_str)),
        first_connect_error: connect_errors.first,
    };
    Check::new(
        AbuseCheck::EchoHoarders,
        target,
        AnyFigures::EchoHoarders(figures),
        misses,
    )
}

/// Sends `frame` over and over until `deadline`, never reading. Returns the frames handed to the
/// socket and how the sending ended. The socket is dropped on return, without a close handshake:
/// a hoarder does not read, so it would never see the server's reply.
async fn hoard(socket: client::Socket, frame: Message, deadline: Instant) -> (u64, String) {
    let (mut sink, _stream) = socket.split();
    let mut sent = 0;
    let outcome = tokio::time::timeout_at(deadline, async {
        loop {
            if let Err(err) = sink.send(frame.clone()).await {
                return err;
            }
            sent += 1;
        }
    })
    .await;
    let end = match outcome {
        Err(_) => "still sending at the end".to_string(),
        Ok(err) => format!("sending failed: {}", short_error(&err)),
    };
    (sent, end)
}

/// An error's kind without the details that differ between hoarders.
fn short_error(err: &tokio_tungstenite::tungstenite::Error) -> String {
    let text = err.to_string();
    text.split(" (os error").next().unwrap_or(&text).to_owned()
}

/// The highest resident memory seen until told to stop; `None` if it could not be read.
async fn sample_peak(server: Server, before: u64, mut stop: watch::Receiver<bool>) -> Option<u64> {
    let mut peak = before;
    loop {
        peak = peak.max(server.rss()?);
        tokio::select! {
            _ = stop.changed() => return Some(peak),
            _ = tokio::time::sleep(SAMPLE_EVERY) => {}
        }
    }
}
