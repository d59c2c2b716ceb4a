//! `loadgen abuse`: hostile and broken clients against a server on 127.0.0.1, each check with a
//! target the server must meet.
//!
//! The load scenarios measure how fast the server is for clients that behave; this one checks that
//! one client that does not behave cannot take the service away from the others: by holding
//! sockets with request heads that never end (slowloris) or never fit (big heads), by flooding a
//! broadcast that multiplies every message by the number of listeners, by sending to `/echo`
//! without ever reading the echoes, by handshakes that break RFC 6455, and by JSON nested deeper
//! than common recursive parsers survive. Every check prints what happened and what it expected,
//! so that a failure says which defence is missing.
//!
//! Only 127.0.0.1 is accepted (see `cli::loopback_url`): these are attacks, and must never be aimed
//! at a deployment.

mod big_heads;
mod deep_json;
mod echo_hoarders;
mod flood;
mod handshakes;
mod http;
mod slowloris;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cli::{AbuseArgs, AbuseCheck};
use crate::report::Usage;

/// A pause between checks, so that the server has let go of the previous check's sockets.
const BETWEEN_CHECKS: Duration = Duration::from_secs(1);

/// Time limit for one plain request, such as the `GET /health` before each check.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Time limit for opening one WebSocket connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The server under test.
#[derive(Debug, Clone, Copy)]
pub struct Server {
    addr: SocketAddr,
    pid: Option<u32>,
    admin: Option<SocketAddr>,
    /// Marks this run's messages, so that another client of the same server cannot be mistaken
    /// for one of ours.
    run: u32,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// The server's resident memory now, in bytes.
    fn rss(&self) -> Option<u64> {
        let pid = self.pid?;
        Usage::of(&[pid])
            .ok()
            .flatten()
            .map(|usage| usage.rss_bytes)
    }

    /// `websocket_messages_dropped_total{reason}` now, if `--admin` was given and answers.
    async fn dropped(&self, reason: &str) -> Option<u64> {
        let dropped = http::dropped_messages(self.admin?, REQUEST_TIMEOUT)
            .await
            .ok()?;
        Some(dropped.get(reason).copied().unwrap_or(0))
    }
}

/// The counts and durations of one run: the full form's, the short form's (`--quick`), or flags'.
#[derive(Debug, Clone, Copy)]
struct Plan {
    slowloris: slowloris::Plan,
    big_heads: u32,
    flood: flood::Plan,
    hoard: echo_hoarders::Plan,
}

impl Plan {
    fn new(args: &AbuseArgs) -> Plan {
        let quick = args.quick;
        let secs = Duration::from_secs;
        Plan {
            slowloris: slowloris::Plan {
                sockets: args.slowloris.unwrap_or(pick(quick, 300, 50)),
                interval: args.slowloris_interval,
                target: args.slowloris_target,
            },
            big_heads: args.big_heads.unwrap_or(pick(quick, 20, 5)),
            flood: flood::Plan {
                listeners: args.listeners.unwrap_or(pick(quick, 200, 100)),
                duration: args
                    .flood_duration
                    .unwrap_or(pick(quick, secs(10), secs(7))),
                max_messages_per_second: args.max_messages_per_second,
                message_burst: args.message_burst,
                over_limit_close: args.over_limit_close,
            },
            hoard: echo_hoarders::Plan {
                hoarders: args.hoarders.unwrap_or(pick(quick, 20, 5)),
                duration: args
                    .hoard_duration
                    .unwrap_or(pick(quick, secs(10), secs(5))),
            },
        }
    }
}

/// The short form's value with `--quick`, else the full form's.
fn pick<T>(quick: bool, full: T, short: T) -> T {
    if quick { short } else { full }
}

/// The outcome of an abuse run.
#[derive(Debug, Serialize)]
pub struct AbuseResult {
    scenario: &'static str,
    url: String,
    quick: bool,
    passed: u32,
    failed: u32,
    seconds: f64,
    checks: Vec<Check>,
}

impl AbuseResult {
    /// Whether every check met its target.
    pub fn clean(&self) -> bool {
        self.failed == 0
    }
}

impl std::fmt::Display for AbuseResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "abuse{}: {} checks against {} in {:.1} s: {} passed, {} failed",
            if self.quick { " (quick)" } else { "" },
            self.checks.len(),
            self.url,
            self.seconds,
            self.passed,
            self.failed
        )?;
        for check in &self.checks {
            write!(f, "{check}")?;
        }
        Ok(())
    }
}

/// One check: what it demanded, what it measured, and which targets it missed.
#[derive(Debug, Serialize)]
pub struct Check {
    /// As `--checks` spells it.
    name: &'static str,
    passed: bool,
    /// The target, in words.
    target: String,
    /// One line per target missed; empty when the check passed.
    misses: Vec<String>,
    /// What the check measured.
    figures: Figures,
}

impl Check {
    fn new(check: AbuseCheck, target: String, figures: Figures, misses: Vec<String>) -> Check {
        Check {
            name: name(check),
            passed: misses.is_empty(),
            target,
            misses,
            figures,
        }
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = if self.passed { "passed" } else { "FAILED" };
        writeln!(f, "{}: {verdict}", self.name)?;
        writeln!(f, "  target: {}", self.target)?;
        write!(f, "{}", self.figures)?;
        for miss in &self.misses {
            writeln!(f, "  MISSED: {miss}")?;
        }
        Ok(())
    }
}

/// What each check measured.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Figures {
    Slowloris(slowloris::Figures),
    BigHeads(big_heads::Figures),
    Flood(flood::Figures),
    EchoHoarders(echo_hoarders::Figures),
    Handshakes(handshakes::Figures),
    DeepJson(deep_json::Figures),
    /// The check could not start.
    NotRun {},
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Figures::Slowloris(figures) => figures.fmt(f),
            Figures::BigHeads(figures) => figures.fmt(f),
            Figures::Flood(figures) => figures.fmt(f),
            Figures::EchoHoarders(figures) => figures.fmt(f),
            Figures::Handshakes(figures) => figures.fmt(f),
            Figures::DeepJson(figures) => figures.fmt(f),
            Figures::NotRun {} => Ok(()),
        }
    }
}

/// The smallest, middle and largest of some durations, in seconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Spread {
    /// `None` for no values.
    fn of(mut seconds: Vec<f64>) -> Option<Spread> {
        if seconds.is_empty() {
            return None;
        }
        seconds.sort_by(f64::total_cmp);
        Some(Spread {
            min: seconds[0],
            median: seconds[seconds.len() / 2],
            max: seconds[seconds.len() - 1],
        })
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "first {:.2} s, median {:.2} s, last {:.2} s",
            self.min, self.median, self.max
        )
    }
}

fn name(check: AbuseCheck) -> &'static str {
    match check {
        AbuseCheck::Slowloris => "slowloris",
        AbuseCheck::BigHeads => "big-heads",
        AbuseCheck::Flood => "flood",
        AbuseCheck::EchoHoarders => "echo-hoarders",
        AbuseCheck::Handshakes => "handshakes",
        AbuseCheck::DeepJson => "deep-json",
    }
}

/// Runs the checks in the order given.
pub async fn run(args: &AbuseArgs) -> Result<AbuseResult, String> {
    let server = Server {
        addr: args.url,
        pid: args.server_pid,
        admin: args.admin,
        run: rand::random(),
    };
    // Nothing can be judged against a server that is not there: that is a usage error.
    http::health(server.addr, REQUEST_TIMEOUT)
        .await
        .map_err(|err| format!("the server at {} is not serving: {err}", server.addr))?;
    if let Some(pid) = server.pid {
        Usage::of(&[pid])?;
    }
    let plan = Plan::new(args);
    let started = Instant::now();
    let mut checks = Vec::with_capacity(args.checks.len());
    for (index, &check) in args.checks.iter().enumerate() {
        if index > 0 {
            tokio::time::sleep(BETWEEN_CHECKS).await;
        }
        // A server that an earlier check brought down fails the rest, each saying so, rather than
        // with misses that blame the wrong defence.
        if let Err(err) = http::health(server.addr, REQUEST_TIMEOUT).await {
            checks.push(Check::new(
                check,
                "the server serves before the check starts".into(),
                Figures::NotRun {},
                vec![format!("not run: {err}")],
            ));
            continue;
        }
        checks.push(match check {
            AbuseCheck::Slowloris => slowloris::run(&server, plan.slowloris).await,
            AbuseCheck::BigHeads => big_heads::run(&server, plan.big_heads).await,
            AbuseCheck::Flood => flood::run(&server, plan.flood).await,
            AbuseCheck::EchoHoarders => echo_hoarders::run(&server, plan.hoard).await,
            AbuseCheck::Handshakes => handshakes::run(&server).await,
            AbuseCheck::DeepJson => deep_json::run(&server).await,
        });
    }
    let failed = checks.iter().filter(|check| !check.passed).count() as u32;
    Ok(AbuseResult {
        scenario: "abuse",
        url: server.url(""),
        quick: args.quick,
        passed: checks.len() as u32 - failed,
        failed,
        seconds: started.elapsed().as_secs_f64(),
        checks,
    })
}

/// Counts of labelled outcomes, printed as `label ×count, …`.
fn tally<'a>(labels: impl IntoIterator<Item = &'a str>) -> std::collections::BTreeMap<String, u32> {
    let mut counts = std::collections::BTreeMap::new();
    for label in labels {
        *counts.entry(label.to_owned()).or_insert(0) += 1;
    }
    counts
}

/// `431 ×20, closed without an answer ×2`, or `none`.
fn show_tally(counts: &std::collections::BTreeMap<String, u32>) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    counts
        .iter()
        .map(|(label, count)| format!("{label} ×{count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Bytes as MiB with one decimal.
fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_of_durations() {
        let spread = Spread::of(vec![3.0, 1.0, 2.0]).unwrap();
        assert_eq!((spread.min, spread.median, spread.max), (1.0, 2.0, 3.0));
        assert!(Spread::of(Vec::new()).is_none());
    }

    #[test]
    fn tallies_print_in_order() {
        let counts = tally(["431", "closed", "431"]);
        assert_eq!(show_tally(&counts), "431 ×2, closed ×1");
        assert_eq!(show_tally(&tally([])), "none");
    }
}
