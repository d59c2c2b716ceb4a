//! `loadgen idle`: opens N connections and holds them, to measure how fast the server accepts them
//! and what an idle connection costs it: memory, and CPU time while held (its heartbeat).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Serialize;
use tokio::sync::watch;

use crate::cli::IdleArgs;
use crate::client;
use crate::report::{Errors, PhaseStart, PhaseUsage};

/// How long the connections sit idle before the server's memory is read, so that anything the
/// server does right after a handshake is finished.
const SETTLE: Duration = Duration::from_secs(1);

/// The outcome of an idle run.
#[derive(Debug, Serialize)]
pub struct IdleResult {
    scenario: &'static str,
    urls: Vec<String>,
    connections: u32,
    connected: u32,
    /// Connections that failed to open, or closed while held.
    #[serde(flatten)]
    errors: Errors,
    /// From the first connect to the last greeting.
    connect_seconds: f64,
    handshakes_per_s: f64,
    /// The growth of the server's resident memory per held connection (with --server-pid).
    server_bytes_per_connection: Option<f64>,
    /// Seconds the connections were held after the memory was read.
    idle_seconds: f64,
    /// The server's CPU seconds per second over those (with --server-pid): what holding the
    /// connections costs, pings and pongs included.
    server_idle_cpu_per_s: Option<f64>,
    usage: PhaseUsage,
}

impl IdleResult {
    /// Whether every connection opened and stayed open.
    pub fn clean(&self) -> bool {
        self.errors.none()
    }
}

impl std::fmt::Display for IdleResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "idle: {}/{} connections open in {:.2} s: {:.0} handshakes/s",
            self.connected, self.connections, self.connect_seconds, self.handshakes_per_s
        )?;
        if let Some(bytes) = self.server_bytes_per_connection {
            writeln!(
                f,
                "  server memory per idle connection: {:.0} B ({:.2} KiB)",
                bytes,
                bytes / 1024.0
            )?;
        }
        if let Some(cpu) = self.server_idle_cpu_per_s {
            writeln!(
                f,
                "  server CPU while idle: {:.2} ms per second, over {:.0} s",
                cpu * 1000.0,
                self.idle_seconds
            )?;
        }
        if !self.errors.none() {
            writeln!(f, "  {}", self.errors)?;
        }
        writeln!(f, "  {}", self.usage)
    }
}

/// Runs the scenario.
pub async fn run(args: &IdleArgs) -> Result<IdleResult, String> {
    let common = &args.common;
    let phase = PhaseStart::now(&common.server_pids)?;
    let started = Instant::now();
    let connections = client::connect_many_from(
        &common.urls,
        &args.source_addresses,
        args.connections,
        common.connect_concurrency,
        common.connect_timeout,
    )
    .await;
    let connect_seconds = started.elapsed().as_secs_f64();
    let mut errors = client::failures(&connections);
    let sockets: Vec<client::Socket> = connections.into_iter().filter_map(Result::ok).collect();
    let connected = sockets.len();

    // Each held connection keeps reading, so that the server's pings are answered and a
    // connection the server closes is counted.
    let (stop, stopped) = watch::channel(false);
    let holders: Vec<_> = sockets
        .into_iter()
        .map(|mut socket| {
            let mut stopped = stopped.clone();
            tokio::spawn(async move {
                let ended = loop {
                    tokio::select! {
                        _ = stopped.changed() => break None,
                        frame = socket.next() => match frame {
                            Some(Ok(_)) => continue,
                            Some(Err(err)) => break Some(err.to_string()),
                            None => break Some("connection ended".to_string()),
                        },
                    }
                };
                if ended.is_none() {
                    let _ = tokio::time::timeout(Duration::from_secs(2), socket.close(None)).await;
                }
                ended
            })
        })
        .collect();

    tokio::time::sleep(SETTLE.min(args.hold)).await;
    let usage = phase.end(&common.server_pids)?;
    let server_bytes_per_connection = match (phase.server(), usage.server_rss_bytes) {
        (Some(before), Some(after)) if connected > 0 => {
            Some((after as f64 - before.rss_bytes as f64) / connected as f64)
        }
        _ => None,
    };
    let idle = PhaseStart::now(&common.server_pids)?;
    let idle_started = Instant::now();
    tokio::time::sleep(args.hold.saturating_sub(SETTLE)).await;
    let idle_seconds = idle_started.elapsed().as_secs_f64();
    let server_idle_cpu_per_s = idle
        .end(&common.server_pids)?
        .server_cpu_s
        .filter(|_| idle_seconds >= 1.0)
        .map(|cpu| cpu / idle_seconds);
    let _ = stop.send(true);

    for holder in holders {
        if let Some(err) = holder
            .await
            .map_err(|err| format!("holder panicked: {err}"))?
        {
            errors.add(|| format!("while held: {err}"));
        }
    }
    Ok(IdleResult {
        scenario: "idle",
        urls: common.urls.clone(),
        connections: args.connections,
        connected: connected as u32,
        errors,
        connect_seconds,
        handshakes_per_s: connected as f64 / connect_seconds,
        server_bytes_per_connection,
        idle_seconds,
        server_idle_cpu_per_s,
        usage,
    })
}
