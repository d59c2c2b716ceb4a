//! `loadgen churn`: clients that connect, read the greeting and close, over and over, to measure
//! how many handshakes a second the server completes (a deploy or a network blip makes every
//! client reconnect at once).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::cli::ChurnArgs;
use crate::client;
use crate::report::{self, Errors, Latency, PhaseStart, PhaseUsage};

/// The outcome of a churn run.
#[derive(Debug, Serialize)]
pub struct ChurnResult {
    scenario: &'static str,
    urls: Vec<String>,
    concurrency: u32,
    /// Connections that opened and greeted.
    handshakes: u64,
    #[serde(flatten)]
    errors: Errors,
    seconds: f64,
    handshakes_per_s: f64,
    /// From starting to connect until the greeting arrived.
    handshake_latency: Latency,
    usage: PhaseUsage,
}

impl ChurnResult {
    /// Whether every attempt succeeded.
    pub fn clean(&self) -> bool {
        self.errors.none() && self.handshakes > 0
    }
}

impl std::fmt::Display for ChurnResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "churn: {} at once for {:.1} s: {} handshakes, {:.0} handshakes/s",
            self.concurrency, self.seconds, self.handshakes, self.handshakes_per_s
        )?;
        writeln!(f, "  handshake latency {}", self.handshake_latency)?;
        if !self.errors.none() {
            writeln!(f, "  {}", self.errors)?;
        }
        writeln!(f, "  {}", self.usage)
    }
}

/// What one churning client counted.
struct Worker {
    latencies: Histogram<u64>,
    errors: Errors,
}

/// Runs the scenario.
pub async fn run(args: &ChurnArgs) -> Result<ChurnResult, String> {
    let common = &args.common;
    let phase = PhaseStart::now(&common.server_pids)?;
    let started = Instant::now();
    let deadline = started + args.duration;
    let urls = Arc::new(common.urls.clone());
    let workers: Vec<_> = (0..args.concurrency as usize)
        .map(|index| {
            let urls = Arc::clone(&urls);
            let timeout = common.connect_timeout;
            tokio::spawn(async move {
                let mut worker = Worker {
                    latencies: report::latency_histogram(),
                    errors: Errors::default(),
                };
                let mut attempt = index;
                while Instant::now() < deadline {
                    let url = &urls[attempt % urls.len()];
                    attempt += 1;
                    let begun = Instant::now();
                    match client::connect(url, timeout).await {
                        Ok(mut socket) => {
                            worker
                                .latencies
                                .saturating_record(begun.elapsed().as_micros() as u64);
                            // The server's close reply ends the stream.
                            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                                let _ = socket.close(None).await;
                                while let Some(Ok(_)) = socket.next().await {}
                            })
                            .await;
                        }
                        Err(err) => {
                            worker.errors.add(|| err.to_string());
                        }
                    }
                }
                worker
            })
        })
        .collect();

    let latencies = Mutex::new(report::latency_histogram());
    let mut errors = Errors::default();
    for worker in workers {
        let worker = worker
            .await
            .map_err(|err| format!("client panicked: {err}"))?;
        latencies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add(&worker.latencies)
            .map_err(|err| format!("merging latencies: {err}"))?;
        errors.merge(worker.errors);
    }
    let seconds = started.elapsed().as_secs_f64();
    let usage = phase.end(&common.server_pids)?;
    let latencies = latencies
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    let handshakes = latencies.len();
    Ok(ChurnResult {
        scenario: "churn",
        urls: common.urls.clone(),
        concurrency: args.concurrency,
        handshakes,
        errors,
        seconds,
        handshakes_per_s: handshakes as f64 / seconds,
        handshake_latency: Latency::from_micros(&latencies),
        usage,
    })
}
