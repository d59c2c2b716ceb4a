//! Command-line arguments. Every knob has a default and a range; clap refuses a bad value with a
//! one-line error naming the flag (exit 2), and [`Cli::check`] the combinations clap cannot see.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Load generator for the WebSocket broadcast service.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// The scenarios.
#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// C clients connect; S of them send M JSON messages of about B bytes (or for a duration);
    /// every client counts what it receives: deliveries/s, one-way latency, lost and duplicated.
    Broadcast(BroadcastArgs),
    /// C clients on /v1/ws, each subscribed to one of N channels; S of them publish M messages
    /// of about B bytes round robin over the channels; every subscriber counts what its channel
    /// got: deliveries/s, one-way latency, lost and duplicated.
    Channels(ChannelsArgs),
    /// N connections opened and held: handshakes/s and, with --server-pid, server memory per
    /// connection.
    Idle(IdleArgs),
    /// Connect, read the greeting, close, in a loop from K clients at once: handshakes/s.
    Churn(ChurnArgs),
    /// Hostile clients against a server on 127.0.0.1 (slow and oversized request heads, a flood,
    /// clients that never read, bad handshakes, deeply nested JSON): each check passes or fails.
    Abuse(AbuseArgs),
}

/// What every scenario shares.
#[derive(Debug, Args)]
pub struct Common {
    /// WebSocket URL, ws:// or wss://. Repeat it to spread the clients over several servers
    /// (round robin), e.g. two tasks sharing a Redis backplane.
    #[arg(long = "url", default_value = "ws://127.0.0.1:8080/wss", value_parser = websocket_url)]
    pub urls: Vec<String>,

    /// The server's process id, to report its CPU time and memory (repeatable, summed).
    #[arg(long = "server-pid")]
    pub server_pids: Vec<u32>,

    /// Print one JSON line instead of the human summary.
    #[arg(long)]
    pub json: bool,

    /// Time limit for one connection to open and greet.
    #[arg(long, default_value = "10s", value_parser = positive_duration)]
    pub connect_timeout: Duration,

    /// Connections being opened at once while the clients connect.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub connect_concurrency: u32,
}

/// `loadgen broadcast`.
#[derive(Debug, Args)]
pub struct BroadcastArgs {
    #[command(flatten)]
    pub common: Common,

    /// Clients connected, every one a receiver.
    #[arg(long, short = 'c', default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=200_000))]
    pub clients: u32,

    #[command(flatten)]
    pub send: SendArgs,
}

/// `loadgen channels`. The same flags as broadcast, on `/v1/ws` and with channels.
#[derive(Debug, Args)]
#[command(mut_arg("urls", |url| url.default_value("ws://127.0.0.1:8080/v1/ws")))]
pub struct ChannelsArgs {
    #[command(flatten)]
    pub common: Common,

    /// Clients connected, every one subscribed to one channel: client i to bench:{i % channels}.
    #[arg(long, short = 'c', default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=200_000))]
    pub clients: u32,

    /// Channels the clients are spread over, bench:0 to bench:{channels - 1}; at most --clients,
    /// so that every channel has a subscriber.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=200_000))]
    pub channels: u32,

    #[command(flatten)]
    pub send: SendArgs,
}

/// What the senders of broadcast and channels send, and when the run ends.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// How many of the clients also send (the first ones).
    #[arg(long, short = 's', default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=200_000))]
    pub senders: u32,

    /// Messages each sender sends (unless --duration is given).
    #[arg(long, short = 'm', default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub messages: u64,

    /// Send for this long instead of a fixed number of messages, e.g. 60s.
    #[arg(long, value_parser = positive_duration)]
    pub duration: Option<Duration>,

    /// Approximate size of each message's data, bytes (the fields need about 60; the rest is
    /// padding).
    #[arg(long, short = 'b', default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    pub bytes: u32,

    /// Messages per second per sender; 0 sends at full speed.
    #[arg(long, short = 'r', default_value_t = 0.0, value_parser = rate)]
    pub rate: f64,

    /// At full speed, how many of its messages a sender may have on their way: sent, and not yet
    /// received by every client they are for (all of them on /wss, the channel's subscribers on
    /// /v1/ws). It keeps the server's per-client queues short (senders times window, well under the
    /// server's CLIENT_QUEUE_SIZE), so full speed measures throughput rather than which client the
    /// server gives up on first.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub window: u64,

    /// How long receivers may go without a new delivery, once the senders are done, before the
    /// missing messages count as lost.
    #[arg(long, default_value = "5s", value_parser = positive_duration)]
    pub settle: Duration,

    /// Print a live line every second on stderr: connections, deliveries/s, p99, errors.
    #[arg(long)]
    pub progress: bool,
}

/// `loadgen idle`.
#[derive(Debug, Args)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: Common,

    /// Connections to open and hold.
    #[arg(long, short = 'n', default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=200_000))]
    pub connections: u32,

    /// How long to hold them once all are open; memory is read after the first second of it, and
    /// the server's CPU time over the rest (hold longer than its PING_INTERVAL to see the
    /// heartbeat's cost).
    #[arg(long, default_value = "2s", value_parser = positive_duration)]
    pub hold: Duration,

    /// Local addresses to open the connections from, in turn (repeatable), e.g. 127.0.0.2 and
    /// 127.0.0.3 on loopback: one source address has about 28,000 ephemeral ports toward one
    /// server port, fewer while earlier runs' sockets linger in TIME_WAIT.
    #[arg(long = "source-address")]
    pub source_addresses: Vec<std::net::IpAddr>,
}

/// `loadgen churn`.
#[derive(Debug, Args)]
pub struct ChurnArgs {
    #[command(flatten)]
    pub common: Common,

    /// Clients connecting and closing at once.
    #[arg(long, short = 'k', default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,

    /// How long to keep churning.
    #[arg(long, default_value = "10s", value_parser = positive_duration)]
    pub duration: Duration,
}

/// `loadgen abuse`. Counts and durations left out take the full form's values, or the short
/// form's with `--quick`. The limits the server is expected to enforce are flags too, so that the
/// checks match a server configured otherwise.
#[derive(Debug, Args)]
pub struct AbuseArgs {
    /// The server, ws://127.0.0.1:PORT; /wss, /echo and /health on that port are used (a path given
    /// is ignored). Only 127.0.0.1: these checks are attacks, never to be run at a deployment.
    #[arg(long, default_value = "ws://127.0.0.1:8080", value_parser = loopback_url)]
    pub url: SocketAddr,

    /// The server's process id, to read its memory (needed by the echo-hoarders check).
    #[arg(long)]
    pub server_pid: Option<u32>,

    /// The server's metrics address, 127.0.0.1:PORT, to print the counters of dropped messages.
    #[arg(long, value_parser = loopback_addr)]
    pub admin: Option<SocketAddr>,

    /// Print one JSON line instead of the human summary.
    #[arg(long)]
    pub json: bool,

    /// The short form for CI: fewer sockets and shorter floods (about 20 s in all).
    #[arg(long)]
    pub quick: bool,

    /// The checks to run, comma-separated, in this order.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = AbuseCheck::ALL)]
    pub checks: Vec<AbuseCheck>,

    /// Slowloris sockets [default: 300; --quick: 50].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=5_000))]
    pub slowloris: Option<u32>,

    /// How often each slowloris socket sends one more byte of its request head.
    #[arg(long, default_value = "2s", value_parser = positive_duration)]
    pub slowloris_interval: Duration,

    /// Every slowloris socket must be closed by the server within this (HEADER_READ_TIMEOUT and
    /// some slack).
    #[arg(long, default_value = "30s", value_parser = positive_duration)]
    pub slowloris_target: Duration,

    /// Sockets sending an unfinished request head of 64 KiB+ [default: 20; --quick: 5].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub big_heads: Option<u32>,

    /// `/wss` clients that only listen while one client floods [default: 200; --quick: 100].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub listeners: Option<u32>,

    /// How long the flooder floods [default: 10s; --quick: 7s].
    #[arg(long, value_parser = positive_duration)]
    pub flood_duration: Option<Duration>,

    /// The server's MAX_MESSAGES_PER_SECOND; 0 if it has no limit (the flooder's rate is then
    /// only reported).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub max_messages_per_second: u32,

    /// The server's MESSAGE_BURST.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub message_burst: u32,

    /// How long the server lets a client stay over the limit before closing it with 1008; a flood
    /// that lasts longer must end that way.
    #[arg(long, default_value = "5s", value_parser = positive_duration)]
    pub over_limit_close: Duration,

    /// `/echo` clients that send 60 KiB frames and never read [default: 20; --quick: 5].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub hoarders: Option<u32>,

    /// How long the echo hoarders send [default: 10s; --quick: 5s].
    #[arg(long, value_parser = positive_duration)]
    pub hoard_duration: Option<Duration>,
}

/// The checks of `loadgen abuse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AbuseCheck {
    /// Request heads sent a byte at a time and never finished.
    Slowloris,
    /// Unfinished request heads of 64 KiB+.
    BigHeads,
    /// One client flooding `/wss` among listeners and a polite sender.
    Flood,
    /// `/echo` clients that send large frames and never read.
    EchoHoarders,
    /// Upgrade requests that break RFC 6455 or are not HTTP/1.1.
    Handshakes,
    /// A message nested 10,000 levels deep.
    DeepJson,
}

impl AbuseCheck {
    /// Every check, in the order they run by default.
    pub const ALL: [AbuseCheck; 6] = [
        AbuseCheck::Slowloris,
        AbuseCheck::BigHeads,
        AbuseCheck::Flood,
        AbuseCheck::EchoHoarders,
        AbuseCheck::Handshakes,
        AbuseCheck::DeepJson,
    ];
}

impl Cli {
    /// The rules that span flags.
    pub fn check(&self) -> Result<(), String> {
        match &self.scenario {
            Scenario::Broadcast(args) => senders_among_clients(&args.send, args.clients),
            Scenario::Channels(args) if args.channels > args.clients => Err(format!(
                "--channels ({}) must not exceed --clients ({}): a channel without a subscriber \
                 would measure nothing",
                args.channels, args.clients
            )),
            Scenario::Channels(args) => senders_among_clients(&args.send, args.clients),
            Scenario::Abuse(args)
                if args.server_pid.is_none() && args.checks.contains(&AbuseCheck::EchoHoarders) =>
            {
                Err("the echo-hoarders check reads the server's memory: give --server-pid, or leave \
                     the check out with --checks"
                    .into())
            }
            _ => Ok(()),
        }
    }
}

fn senders_among_clients(send: &SendArgs, clients: u32) -> Result<(), String> {
    if send.senders > clients {
        return Err(format!(
            "--senders ({}) must not exceed --clients ({}): the senders are clients",
            send.senders, clients
        ));
    }
    Ok(())
}

fn websocket_url(value: &str) -> Result<String, String> {
    let scheme = value.split_once("://").map(|(scheme, _)| scheme);
    match scheme {
        Some("ws" | "wss") if value.len() > "wss://".len() => Ok(value.to_owned()),
        _ => Err("expected a ws:// or wss:// URL, e.g. ws://127.0.0.1:8080/wss".into()),
    }
}

/// A ws:// URL of a server on 127.0.0.1, as the address to connect to.
fn loopback_url(value: &str) -> Result<SocketAddr, String> {
    let authority = value
        .strip_prefix("ws://")
        .ok_or("expected ws://127.0.0.1:PORT (plain ws://, on this machine)")?;
    let authority = authority.split('/').next().unwrap_or_default();
    loopback_addr(authority)
}

/// `127.0.0.1:PORT`: the abuse scenario never talks to another address.
fn loopback_addr(value: &str) -> Result<SocketAddr, String> {
    match value.parse::<SocketAddr>() {
        Ok(addr) if addr.ip() == Ipv4Addr::LOCALHOST && addr.port() != 0 => Ok(addr),
        Ok(_) => {
            Err("only 127.0.0.1 with a port is allowed: these checks attack the server".into())
        }
        Err(_) => Err("expected 127.0.0.1:PORT".into()),
    }
}

fn positive_duration(value: &str) -> Result<Duration, String> {
    match humantime::parse_duration(value) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        Ok(_) => Err("must be more than zero".into()),
        Err(err) => Err(format!("{err} (write e.g. 10s, 500ms, 2m)")),
    }
}

fn rate(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(rate) if (0.0..=1_000_000.0).contains(&rate) => Ok(rate),
        _ => Err("expected messages per second from 0 (full speed) to 1000000".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, String> {
        let cli = Cli::try_parse_from(std::iter::once("loadgen").chain(args.iter().copied()))
            .map_err(|err| err.to_string())?;
        cli.check()?;
        Ok(cli)
    }

    #[test]
    fn defaults_parse() {
        for scenario in ["broadcast", "channels", "idle", "churn"] {
            parse(&[scenario]).unwrap();
        }
        parse(&["abuse", "--server-pid", "1"]).unwrap();
    }

    #[test]
    fn bad_values_name_their_flag() {
        for (args, flag) in [
            (&["broadcast", "--url", "http://x/wss"][..], "--url"),
            (&["broadcast", "--rate=-1"], "--rate"),
            (&["broadcast", "--clients", "0"], "--clients"),
            (&["idle", "--hold", "0s"], "--hold"),
            (&["idle", "--source-address", "127.0.0"], "--source-address"),
            (&["churn", "--duration", "soon"], "--duration"),
            (
                &["broadcast", "--clients", "2", "--senders", "3"],
                "--senders",
            ),
            (
                &[
                    "channels",
                    "--clients",
                    "2",
                    "--senders",
                    "3",
                    "--channels",
                    "1",
                ],
                "--senders",
            ),
            (&["channels", "--channels", "0"], "--channels"),
            (
                &["channels", "--clients", "5", "--channels", "6"],
                "--channels",
            ),
            (&["channels", "--url", "http://x/v1/ws"], "--url"),
            (&["abuse", "--url", "ws://10.0.0.1:8080"], "--url"),
            (&["abuse", "--url", "wss://127.0.0.1:8080"], "--url"),
            (&["abuse", "--admin", "localhost:9090"], "--admin"),
            (&["abuse", "--checks", "flood,nope"], "--checks"),
            (&["abuse"], "--server-pid"),
        ] {
            let err = parse(args).unwrap_err();
            assert!(err.contains(flag), "{args:?}: {err}");
        }
    }

    #[test]
    fn channels_default_to_the_channels_endpoint() {
        let Scenario::Channels(args) = parse(&["channels"]).unwrap().scenario else {
            panic!("not channels");
        };
        assert_eq!(args.common.urls, ["ws://127.0.0.1:8080/v1/ws"]);
        let Scenario::Broadcast(args) = parse(&["broadcast"]).unwrap().scenario else {
            panic!("not broadcast");
        };
        assert_eq!(args.common.urls, ["ws://127.0.0.1:8080/wss"]);
    }

    #[test]
    fn abuse_urls_give_the_loopback_address_whatever_the_path() {
        for url in [
            "ws://127.0.0.1:8080",
            "ws://127.0.0.1:8080/",
            "ws://127.0.0.1:8080/wss",
        ] {
            assert_eq!(
                loopback_url(url).unwrap(),
                "127.0.0.1:8080".parse().unwrap()
            );
        }
        assert!(loopback_url("ws://127.0.0.1").is_err());
        assert!(loopback_url("ws://[::1]:8080").is_err());
    }
}
