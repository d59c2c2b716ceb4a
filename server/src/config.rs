//! Every setting of the server, read once at start-up from environment variables or the matching
//! `--flags`, and validated before anything listens, so that a bad deployment fails at once with one
//! line naming the variable instead of misbehaving later.

use std::net::IpAddr;
use std::time::Duration;

use clap::parser::ValueSource;

use crate::auth::{AuthSettings, KeySource};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

/// The command line: the server's settings, and an optional subcommand.
#[derive(Debug, Parser)]
#[command(
    name = "websocket-server",
    version,
    args_override_self = true,
    about = "WebSocket broadcast server: every JSON message a client sends reaches every client.",
    after_help = "Every option can also be set by the environment variable shown in brackets."
)]
pub struct Cli {
    /// What to do instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The settings (shared by the subcommands, so `healthcheck` probes the configured port).
    #[command(flatten)]
    pub config: Config,
}

/// Subcommands of the binary.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Exit 0 only if GET /health on 127.0.0.1:PORT answers 200 within 2 s (the container health
    /// check, so the image needs no curl).
    Healthcheck,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Readable lines for a terminal.
    Text,
    /// One JSON object per line, for CloudWatch Logs.
    Json,
}

/// The server's settings. Field docs are the `--help` text; the README's table repeats them.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,

    /// Port of the WebSocket and health endpoints; 0: a free port the kernel picks, named in the
    /// start-up line (tests, local runs; a load balancer and the health check need a fixed one).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,

    /// Port of the admin endpoint serving Prometheus metrics at /metrics (keep it off the load
    /// balancer); 0 disables it.
    #[arg(long, env = "METRICS_PORT", default_value_t = 9090)]
    pub metrics_port: u16,

    /// Most WebSocket connections this process holds; further upgrades get HTTP 503.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// Largest message a client may send, in bytes; over it the connection is closed with 1009.
    #[arg(long, env = "MAX_MESSAGE_SIZE", default_value_t = 65_536,
          value_parser = clap::value_parser!(u64).range(1..=(64 << 20)))]
    pub max_message_size: u64,

    /// Largest single frame a client may send, in bytes (at most MAX_MESSAGE_SIZE); over it: 1009.
    #[arg(long, env = "MAX_FRAME_SIZE", default_value_t = 65_536,
          value_parser = clap::value_parser!(u64).range(1..=(64 << 20)))]
    pub max_frame_size: u64,

    /// Messages that may wait for one client; a client that falls further behind is disconnected
    /// with 1013 so it never slows anyone else.
    #[arg(long, env = "CLIENT_QUEUE_SIZE", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub client_queue_size: u32,

    /// Bytes that may wait for one client (as well as CLIENT_QUEUE_SIZE messages): a `/wss` client
    /// that falls further behind is disconnected with 1013; an `/echo` client that does not read is
    /// not read from either until its queue has room. At least MAX_MESSAGE_SIZE.
    #[arg(long, env = "CLIENT_QUEUE_BYTES", default_value_t = 1 << 20,
          value_parser = clap::value_parser!(u64).range(1..=(1 << 30)))]
    pub client_queue_bytes: u64,

    /// Messages a client may send per second, on average (every WebSocket route); a message over the
    /// limit is dropped, and a client over it for 5 s is closed with 1008. Every frame counts too
    /// (a message in k fragments costs k; pings and pongs count). 0: no limit.
    #[arg(long, env = "MAX_MESSAGES_PER_SECOND", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub max_messages_per_second: u32,

    /// Messages a client may send at once above MAX_MESSAGES_PER_SECOND before the limit applies.
    #[arg(long, env = "MESSAGE_BURST", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub message_burst: u32,

    /// Payload bytes a client may send per second, on average (burst: one second's worth, at least
    /// MAX_MESSAGE_SIZE); over it, as for MAX_MESSAGES_PER_SECOND. 0: no limit.
    #[arg(long, env = "MAX_BYTES_PER_SECOND", default_value_t = 1 << 20,
          value_parser = clap::value_parser!(u64).range(0..=(1 << 32)))]
    pub max_bytes_per_second: u64,

    /// How long a new connection may take to send its first request head (slow or unfinished heads
    /// are closed).
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub header_read_timeout: Duration,

    /// How long a keep-alive connection that has not upgraded may wait for (and take to send) its
    /// next request head. Keep it above the load balancer's idle timeout (60 s by default on an
    /// ALB): a target that closes first makes the ALB answer 502 on a reused socket.
    #[arg(long, env = "HTTP_IDLE_TIMEOUT", default_value = "75s", value_parser = positive_duration)]
    pub http_idle_timeout: Duration,

    /// Sockets that may be in the HTTP phase at once (not yet upgraded to WebSocket); when full, the
    /// oldest is closed to let the newest in, so slow heads cannot lock out /health or upgrades.
    #[arg(long, env = "MAX_HTTP_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_http_connections: u32,

    /// Threads that serve connections; 0: one per CPU the process may use. A fan-out's writes
    /// spread over them; on a machine whose cores something else also uses, fewer threads spend
    /// less CPU per delivery (BENCHMARKS.md).
    #[arg(long, env = "WORKER_THREADS", default_value_t = 0,
          value_parser = clap::value_parser!(u16).range(0..=1024))]
    pub worker_threads: u16,

    /// Proxies in front of the server that append to X-Forwarded-For (2 behind CloudFront and an
    /// ALB): the client address logged is that many entries from the right, which no client can
    /// forge. 0: the TCP peer.
    #[arg(long, env = "TRUSTED_PROXY_HOPS", default_value_t = 0,
          value_parser = clap::value_parser!(u8).range(0..=16))]
    pub trusted_proxy_hops: u8,

    /// How often the server pings each client (keep it below the load balancer's idle timeout).
    #[arg(long, env = "PING_INTERVAL", default_value = "30s", value_parser = positive_duration)]
    pub ping_interval: Duration,

    /// How long a client has to answer a ping (or to accept bytes) before it is dropped.
    #[arg(long, env = "PONG_TIMEOUT", default_value = "15s", value_parser = positive_duration)]
    pub pong_timeout: Duration,

    /// On SIGTERM/SIGINT, how long to wait for clients to finish the close handshake before exiting.
    #[arg(long, env = "DRAIN_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub drain_timeout: Duration,

    /// On SIGTERM/SIGINT, the time over which `/v1/ws` clients are closed with 1012, each at a
    /// random moment, so that they reconnect to other servers a few at a time; until its moment a
    /// client is served as before. `/wss` and `/echo` clients get 1001 at once. 0: all at once.
    /// At most DRAIN_TIMEOUT minus 5 s. Unset: 20s, or DRAIN_TIMEOUT minus 5 s if that is less.
    #[arg(long, env = "DRAIN_SPREAD", value_parser = duration)]
    pub drain_spread: Option<Duration>,

    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter: a level (error, warn, info, debug, trace) or tracing directives such as
    /// `info,server=debug`.
    #[arg(long, env = "LOG_LEVEL", default_value = "info", value_parser = log_filter)]
    pub log_level: String,

    /// How often to print the CloudWatch Embedded Metric Format line with the connection count
    /// (what auto scaling tracks); 0 disables it.
    #[arg(long, env = "EMF_INTERVAL", default_value = "60s", value_parser = duration)]
    pub emf_interval: Duration,

    /// CloudWatch namespace of the EMF metrics.
    #[arg(long, env = "METRICS_NAMESPACE", default_value = "WebSocketService", value_parser = cloudwatch_name)]
    pub metrics_namespace: String,

    /// Value of the `ServiceName` dimension of the EMF metrics.
    #[arg(long, env = "SERVICE_NAME", default_value = "websocket-server", value_parser = cloudwatch_name)]
    pub service_name: String,

    /// Redis pub/sub backplane, so that a message reaches the clients of every task
    /// (`redis://host:6379`, or `rediss://:token@host:6379` with TLS and an auth token). Unset: each
    /// process broadcasts to its own clients only.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// The Redis channel of the `broadcast` channel (what `/wss` clients send), which the tasks of
    /// one deployment share.
    #[arg(long, env = "REDIS_CHANNEL", default_value = "websocket:broadcast", value_parser = redis_channel)]
    pub redis_channel: String,

    /// Prefix of the Redis channels of every other channel: channel `c` travels on
    /// `<prefix>:c`.
    #[arg(long, env = "REDIS_CHANNEL_PREFIX", default_value = "websocket", value_parser = redis_channel)]
    pub redis_channel_prefix: String,

    /// Most channels one `/v1/ws` connection may hold at once; a subscribe beyond it gets error
    /// `too_many_channels`.
    #[arg(long, env = "MAX_CHANNELS_PER_CONNECTION", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_channels_per_connection: u32,

    /// Messages each channel keeps for clients that resume (`subscribe` with `since`); 0 keeps
    /// none, and messages carry no offset. In Redis with REDIS_URL, else in the process.
    #[arg(long, env = "HISTORY_SIZE", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub history_size: u32,

    /// How long a channel keeps each message for clients that resume (at most 24 h).
    #[arg(long, env = "HISTORY_TTL", default_value = "300s", value_parser = history_ttl)]
    pub history_ttl: Duration,

    /// Keys that may publish over HTTP (`POST /v1/publish`, `Authorization: Bearer <key>`),
    /// comma-separated, each at least 32 printable characters. Unset, and without sign-in, HTTP
    /// publishing answers 403.
    #[arg(long, env = "PUBLISH_API_KEYS", hide_env_values = true, value_parser = publish_keys)]
    pub publish_api_keys: Option<PublishKeys>,

    /// Messages each publish key may send per second over HTTP, on average (bursts: one second's
    /// worth, at least one full request); over it a request is refused whole with 429. 0: no limit.
    #[arg(long, env = "PUBLISH_MESSAGES_PER_SECOND", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub publish_messages_per_second: u32,

    /// Sign-in: the identity provider's JWKS URL (https://, or http:// to a loopback address).
    /// With it (or AUTH_JWKS_FILE) every WebSocket upgrade needs a valid JWT. Fetched at start-up,
    /// every 10 minutes, and on an unknown key id at most every 30 s.
    #[arg(long, env = "AUTH_JWKS_URL")]
    pub auth_jwks_url: Option<String>,

    /// Sign-in with the keys of a local JWKS file instead of a URL: read at start-up (the server
    /// does not start unless it holds a usable key), then again within a second of each change.
    #[arg(long, env = "AUTH_JWKS_FILE")]
    pub auth_jwks_file: Option<std::path::PathBuf>,

    /// The `iss` every token must carry (required with sign-in).
    #[arg(long, env = "AUTH_ISSUER")]
    pub auth_issuer: Option<String>,

    /// The `aud` every token must carry (required with sign-in).
    #[arg(long, env = "AUTH_AUDIENCE")]
    pub auth_audience: Option<String>,

    /// Clock skew allowed on a token's `exp` and `nbf` (at most 5 minutes).
    #[arg(long, env = "AUTH_LEEWAY", default_value = "5s", value_parser = duration)]
    pub auth_leeway: Duration,

    /// Whether MAX_CONNECTIONS was left at its default, which [`Config::fit_open_file_limit`] may
    /// lower; a value someone chose is never changed behind their back.
    #[arg(skip)]
    pub max_connections_is_default: bool,
}

/// Most clock skew `AUTH_LEEWAY` may allow.
pub const MAX_AUTH_LEEWAY: Duration = Duration::from_secs(300);

/// DRAIN_SPREAD when unset (and DRAIN_TIMEOUT leaves room for it).
pub const DEFAULT_DRAIN_SPREAD: Duration = Duration::from_secs(20);

/// What DRAIN_TIMEOUT must keep beyond DRAIN_SPREAD. The last connection's moment comes at the end
/// of the spread, and its client then gets as long for its close reply as any close handshake the
/// server starts is given; without that room, the drain's end would drop the last connections
/// with no close handshake, which is what the spread is there to avoid.
pub const DRAIN_SPREAD_MARGIN: Duration = crate::connection::CLOSE_HANDSHAKE_TIMEOUT;

/// File descriptors the process needs besides one per socket: standard streams, the listeners,
/// Redis connections, the runtime's epoll and wakers, with room to spare.
pub const FILE_DESCRIPTOR_MARGIN: u64 = 64;

/// Sockets the admin (metrics) port may have in the HTTP phase at once: a metrics scraper or two
/// needs a handful, and this port is never exposed to clients.
pub const ADMIN_HTTP_CONNECTIONS: u32 = 16;

impl Config {
    /// Checks the rules that involve more than one setting, naming the variables in the error.
    pub fn validate(&self) -> Result<(), String> {
        // Two zeros are no clash: METRICS_PORT=0 turns metrics off, PORT=0 picks a free port.
        if self.metrics_port == self.port && self.port != 0 {
            return Err(format!(
                "METRICS_PORT (--metrics-port) must differ from PORT (--port), both are {}",
                self.port
            ));
        }
        if self.max_frame_size > self.max_message_size {
            return Err(format!(
                "MAX_FRAME_SIZE (--max-frame-size) is {} but may not exceed MAX_MESSAGE_SIZE ({})",
                self.max_frame_size, self.max_message_size
            ));
        }
        if self.header_read_timeout > self.http_idle_timeout {
            return Err(format!(
                "HEADER_READ_TIMEOUT (--header-read-timeout) is {:?} but may not exceed HTTP_IDLE_TIMEOUT ({:?}), which also bounds every head",
                self.header_read_timeout, self.http_idle_timeout
            ));
        }
        if self.client_queue_bytes < self.max_message_size {
            return Err(format!(
                "CLIENT_QUEUE_BYTES (--client-queue-bytes) is {} but must be at least MAX_MESSAGE_SIZE ({}), or one message would overflow a queue",
                self.client_queue_bytes, self.max_message_size
            ));
        }
        // A resume queues its whole replay at once, behind its `subscribed`.
        if self.history_size >= self.client_queue_size {
            return Err(format!(
                "HISTORY_SIZE (--history-size) is {} but must be below CLIENT_QUEUE_SIZE ({}), or a resume could not fit in a client's queue",
                self.history_size, self.client_queue_size
            ));
        }
        if let Some(spread) = self.drain_spread
            && !spread.is_zero()
            && spread + DRAIN_SPREAD_MARGIN > self.drain_timeout
        {
            return Err(format!(
                "DRAIN_SPREAD (--drain-spread) is {spread:?} but may be at most DRAIN_TIMEOUT ({:?}) minus {DRAIN_SPREAD_MARGIN:?}, the time the last clients get for their close replies (or 0: all at once)",
                self.drain_timeout
            ));
        }
        if let Some(url) = &self.redis_url {
            crate::backplane::redis_client(url)?;
        }
        if let Some(keys) = &self.publish_api_keys {
            keys.keys()?;
        }
        if let Some(AuthSettings {
            source: KeySource::File(path),
            ..
        }) = self.auth_settings()?
        {
            // Read now, so that a file the server could not use fails the start rather than
            // starting a server that refuses every token.
            crate::auth::check_jwks_file(&path)
                .map_err(|why| format!("AUTH_JWKS_FILE (--auth-jwks-file): {why}"))?;
        }
        if let Some(channel) = self
            .redis_channel
            .strip_prefix(&self.redis_channel_prefix)
            .and_then(|rest| rest.strip_prefix(':'))
            .filter(|rest| *rest != crate::hub::channel::BROADCAST)
            .and_then(|rest| crate::hub::ChannelName::parse(rest).ok())
        {
            return Err(format!(
                "REDIS_CHANNEL (--redis-channel) {} is where REDIS_CHANNEL_PREFIX ({}) puts channel {channel}: pick a REDIS_CHANNEL outside the prefix, or <prefix>:broadcast",
                self.redis_channel, self.redis_channel_prefix
            ));
        }
        Ok(())
    }

    /// The DRAIN_SPREAD in force: the one set, or the default made to fit DRAIN_TIMEOUT, so that a
    /// short DRAIN_TIMEOUT set alone still starts (with less spread, or none).
    pub fn drain_spread(&self) -> Duration {
        self.drain_spread.unwrap_or_else(|| {
            DEFAULT_DRAIN_SPREAD.min(self.drain_timeout.saturating_sub(DRAIN_SPREAD_MARGIN))
        })
    }

    /// Sign-in's settings: `None` when it is off (no key source), an error naming the variable
    /// when they are incomplete or contradictory.
    pub fn auth_settings(&self) -> Result<Option<AuthSettings>, String> {
        let source = match (&self.auth_jwks_url, &self.auth_jwks_file) {
            (Some(_), Some(_)) => {
                return Err(
                    "AUTH_JWKS_URL (--auth-jwks-url) and AUTH_JWKS_FILE (--auth-jwks-file) are both set: pick one".to_owned(),
                );
            }
            (Some(url), None) => KeySource::Url(jwks_url(url)?),
            // Its content is checked by `validate`, once: this runs again when the server starts.
            (None, Some(path)) => KeySource::File(path.clone()),
            (None, None) => {
                if self.auth_issuer.is_some() || self.auth_audience.is_some() {
                    return Err("AUTH_ISSUER and AUTH_AUDIENCE need AUTH_JWKS_URL or AUTH_JWKS_FILE, the keys to check tokens with".to_owned());
                }
                return Ok(None);
            }
        };
        let required = |value: &Option<String>, name: &str| match value.as_deref() {
            Some(value) if !value.trim().is_empty() => Ok(value.to_owned()),
            _ => Err(format!(
                "{name} is required with sign-in: tokens from any other {} would be accepted",
                if name.starts_with("AUTH_ISSUER") {
                    "issuer"
                } else {
                    "application of the issuer"
                }
            )),
        };
        let issuer = required(&self.auth_issuer, "AUTH_ISSUER (--auth-issuer)")?;
        let audience = required(&self.auth_audience, "AUTH_AUDIENCE (--auth-audience)")?;
        if self.auth_leeway > MAX_AUTH_LEEWAY {
            return Err(format!(
                "AUTH_LEEWAY (--auth-leeway) is {:?}; at most {MAX_AUTH_LEEWAY:?} (more would accept tokens long expired)",
                self.auth_leeway
            ));
        }
        Ok(Some(AuthSettings {
            source,
            issuer,
            audience,
            leeway: self.auth_leeway,
        }))
    }

    /// File descriptors the configured limits need at most: every WebSocket, every socket in the
    /// HTTP phase on either port, and [`FILE_DESCRIPTOR_MARGIN`].
    pub fn file_descriptors_needed(&self) -> u64 {
        let admin = if self.metrics_port == 0 {
            0
        } else {
            ADMIN_HTTP_CONNECTIONS
        };
        u64::from(self.max_connections)
            + u64::from(self.max_http_connections)
            + u64::from(admin)
            + FILE_DESCRIPTOR_MARGIN
    }

    /// Makes the limits fit `open_files` (the process's file limit): a MAX_CONNECTIONS left at its
    /// default shrinks to what fits, and the warning to log is returned; one set explicitly that
    /// does not fit is an error, since accepting would then fail with EMFILE, /health included.
    pub fn fit_open_file_limit(&mut self, open_files: u64) -> Result<Option<String>, String> {
        let needed = self.file_descriptors_needed();
        if needed <= open_files {
            return Ok(None);
        }
        let room = open_files.saturating_sub(needed - u64::from(self.max_connections));
        if !self.max_connections_is_default || room == 0 {
            return Err(format!(
                "MAX_CONNECTIONS (--max-connections) {} plus MAX_HTTP_CONNECTIONS {} and {} spare need {needed} open files, but the limit is {open_files} (raise the nofile ulimit or lower them)",
                self.max_connections,
                self.max_http_connections,
                needed - u64::from(self.max_connections) - u64::from(self.max_http_connections)
            ));
        }
        let default = self.max_connections;
        self.max_connections = u32::try_from(room).unwrap_or(u32::MAX);
        Ok(Some(format!(
            "MAX_CONNECTIONS lowered from its default {default} to {room} to fit the open-file limit of {open_files}"
        )))
    }
}

/// Raises the soft open-file limit to the hard one (containers often start with a soft limit of
/// 1,024 whatever the hard limit) and returns the limit now in force.
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

impl Cli {
    /// Parses and validates the command line and environment, or exits: 0 after `--help` or
    /// `--version`, 2 with one line on standard error naming the bad setting.
    pub fn load() -> Cli {
        let parsed = Cli::command().try_get_matches().and_then(|matches| {
            let mut cli = Cli::from_arg_matches(&matches)?;
            cli.config.max_connections_is_default =
                matches.value_source("max_connections") == Some(ValueSource::DefaultValue);
            Ok(cli)
        });
        match parsed {
            Ok(cli) => match cli.config.validate() {
                Ok(()) => cli,
                Err(message) => exit_with_config_error(&message),
            },
            Err(err) if !err.use_stderr() => err.exit(),
            Err(err) => {
                // clap's message is several lines; its first names the flag and value, e.g.
                // "error: invalid value 'x' for '--port <PORT>': invalid digit found in string".
                let rendered = err.render().to_string();
                let first = rendered.lines().next().unwrap_or("invalid arguments");
                exit_with_config_error(first.trim_start_matches("error: "))
            }
        }
    }
}

/// Prints `message` as the one line of a configuration error and exits with status 2.
pub fn exit_with_config_error(message: &str) -> ! {
    eprintln!("websocket-server: configuration error: {message}");
    std::process::exit(2)
}

/// A duration as `30s`, `500ms`, `2m`, or a bare number of seconds.
fn duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    humantime::parse_duration(value)
        .map_err(|err| format!("{err} (write e.g. 30s, 500ms or a number of seconds)"))
}

fn positive_duration(value: &str) -> Result<Duration, String> {
    match duration(value)? {
        Duration::ZERO => Err("must be greater than zero".to_owned()),
        positive => Ok(positive),
    }
}

/// A history time to live: more than zero, at most a day (history is for reconnects, not storage).
fn history_ttl(value: &str) -> Result<Duration, String> {
    let ttl = positive_duration(value)?;
    if ttl > Duration::from_secs(24 * 60 * 60) {
        return Err("at most 24h".to_owned());
    }
    Ok(ttl)
}

fn log_filter(value: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(value)
        .map(|_| value.to_owned())
        .map_err(|err| err.to_string())
}

/// CloudWatch namespaces and dimension values: 1 to 255 characters, no control characters.
fn cloudwatch_name(value: &str) -> Result<String, String> {
    if value.is_empty() || value.len() > 255 || value.chars().any(char::is_control) {
        return Err("must be 1 to 255 printable characters".to_owned());
    }
    Ok(value.to_owned())
}

/// `PUBLISH_API_KEYS` as given. Its `Debug` never shows it, so a logged configuration leaks no
/// key; it is checked by [`Config::validate`] rather than by clap, whose error would repeat it.
#[derive(Clone, PartialEq, Eq)]
pub struct PublishKeys(String);

impl PublishKeys {
    /// The keys, checked.
    pub fn keys(&self) -> Result<Vec<String>, String> {
        crate::publish::parse_keys(&self.0)
            .map_err(|why| format!("PUBLISH_API_KEYS (--publish-api-keys): {why}"))
    }
}

impl std::fmt::Debug for PublishKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PublishKeys(hidden)")
    }
}

fn publish_keys(value: &str) -> Result<PublishKeys, String> {
    Ok(PublishKeys(value.to_owned()))
}

/// A JWKS URL: https, or plain http only to a loopback address (a local identity provider), since
/// keys fetched in clear could be swapped on the way.
fn jwks_url(value: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(value)
        .map_err(|err| format!("AUTH_JWKS_URL (--auth-jwks-url) is not a URL ({err})"))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    };
    match url.scheme() {
        "https" => Ok(value.to_owned()),
        "http" if loopback => Ok(value.to_owned()),
        _ => Err("AUTH_JWKS_URL (--auth-jwks-url) must be https:// (plain http:// only to a loopback address)".to_owned()),
    }
}

fn redis_channel(value: &str) -> Result<String, String> {
    if value.is_empty()
        || value.len() > 256
        || value.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err("must be 1 to 256 characters without spaces".to_owned());
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let argv = std::iter::once("websocket-server").chain(args.iter().copied());
        let cli = Cli::try_parse_from(argv).map_err(|err| err.to_string())?;
        cli.config.validate()?;
        Ok(cli.config)
    }

    #[test]
    fn durations_accept_units_and_bare_seconds() {
        assert_eq!(duration("45").unwrap(), Duration::from_secs(45));
        assert_eq!(duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(duration("2m").unwrap(), Duration::from_secs(120));
        assert!(duration("soon").is_err());
        assert!(positive_duration("0").is_err());
    }

    #[test]
    fn cross_setting_rules_name_both_variables() {
        let err = parse(&["--port", "9000", "--metrics-port", "9000"]).unwrap_err();
        assert!(
            err.contains("METRICS_PORT") && err.contains("PORT"),
            "{err}"
        );
        let err = parse(&["--max-message-size", "100", "--max-frame-size", "200"]).unwrap_err();
        assert!(err.contains("MAX_FRAME_SIZE"), "{err}");
        let err = parse(&["--redis-channel", "websocket:room"]).unwrap_err();
        assert!(
            err.contains("REDIS_CHANNEL") && err.contains("REDIS_CHANNEL_PREFIX"),
            "{err}"
        );
        assert!(
            parse(&[
                "--redis-channel",
                "app:broadcast",
                "--redis-channel-prefix",
                "app"
            ])
            .is_ok()
        );
        assert!(parse(&["--redis-channel", "legacy", "--redis-channel-prefix", "app"]).is_ok());
    }

    #[test]
    fn drain_spread_fits_inside_the_drain_timeout() {
        let spread = |args: &[&str]| parse(args).map(|config| config.drain_spread());
        assert_eq!(spread(&[]), Ok(Duration::from_secs(20)));
        // Unset, it shrinks to fit a shorter drain, down to none at all.
        assert_eq!(
            spread(&["--drain-timeout", "10s"]),
            Ok(Duration::from_secs(5))
        );
        assert_eq!(spread(&["--drain-timeout", "3s"]), Ok(Duration::ZERO));
        assert_eq!(
            spread(&["--drain-timeout", "30s", "--drain-spread", "25s"]),
            Ok(Duration::from_secs(25))
        );
        assert_eq!(
            spread(&["--drain-timeout", "1s", "--drain-spread", "0"]),
            Ok(Duration::ZERO)
        );
        for args in [
            &["--drain-spread", "26s"][..],
            &["--drain-timeout", "10s", "--drain-spread", "6s"],
            &["--drain-timeout", "3s", "--drain-spread", "1s"],
        ] {
            let err = spread(args).unwrap_err();
            assert!(
                err.contains("DRAIN_SPREAD") && err.contains("DRAIN_TIMEOUT"),
                "{args:?}: {err}"
            );
        }
    }

    #[test]
    fn publish_keys_are_checked_and_never_shown() {
        let key = "k".repeat(32);
        let config = parse(&["--publish-api-keys", &format!("{key},{key}2")]).unwrap();
        let keys = config.publish_api_keys.unwrap();
        assert_eq!(keys.keys().unwrap().len(), 2);
        assert!(!format!("{keys:?}").contains(&key));
        let err = parse(&["--publish-api-keys", "tooshortsecret"]).unwrap_err();
        assert!(err.contains("PUBLISH_API_KEYS"), "{err}");
        assert!(!err.contains("tooshortsecret"), "{err}");
    }

    #[test]
    fn sign_in_settings_are_complete_or_refused_by_name() {
        let with = |extra: &[&str]| {
            let mut args = vec!["--auth-issuer", "https://idp", "--auth-audience", "app"];
            args.extend_from_slice(extra);
            parse(&args)
        };
        assert!(with(&["--auth-jwks-url", "https://idp/jwks.json"]).is_ok());
        assert!(with(&["--auth-jwks-url", "http://127.0.0.1:8081/jwks"]).is_ok());
        let err = with(&["--auth-jwks-url", "http://idp.example.com/jwks"]).unwrap_err();
        assert!(err.contains("AUTH_JWKS_URL"), "{err}");
        let err = with(&["--auth-jwks-file", "/nonexistent/jwks.json"]).unwrap_err();
        assert!(err.contains("AUTH_JWKS_FILE"), "{err}");
        let err =
            parse(&["--auth-jwks-url", "https://idp/jwks", "--auth-issuer", "x"]).unwrap_err();
        assert!(err.contains("AUTH_AUDIENCE"), "{err}");
        let err = parse(&["--auth-issuer", "x"]).unwrap_err();
        assert!(err.contains("AUTH_JWKS_URL"), "{err}");
        let err = with(&["--auth-jwks-url", "https://idp/j", "--auth-leeway", "10m"]).unwrap_err();
        assert!(err.contains("AUTH_LEEWAY"), "{err}");
        assert!(parse(&[]).unwrap().auth_settings().unwrap().is_none());
    }

    #[test]
    fn a_jwks_file_must_hold_a_usable_key_at_start_up() {
        let dir = std::env::temp_dir().join(format!("config-jwks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let with_file = |path: &std::path::Path| {
            parse(&[
                "--auth-issuer",
                "https://idp",
                "--auth-audience",
                "app",
                "--auth-jwks-file",
                path.to_str().unwrap(),
            ])
        };
        let file = dir.join("jwks.json");
        let write = |content: &str| {
            std::fs::write(&file, content).unwrap();
            with_file(&file)
        };
        assert!(
            write(r#"{"keys":[{"kid":"ed","kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#)
                .is_ok()
        );
        let unsupported = r#"{"keys":[{"kid":"hmac","kty":"oct","k":"c2VjcmV0"}]}"#;
        for (content, why) in [
            ("not json", "not a JWKS document"),
            (r#"{"keys":[]}"#, "no usable key"),
            (unsupported, "no usable key"),
        ] {
            let err = write(content).unwrap_err();
            assert!(
                err.starts_with("AUTH_JWKS_FILE (--auth-jwks-file): ") && err.contains(why),
                "{content}: {err}"
            );
            assert!(!err.contains('\n'), "one line: {err}");
        }
        for unreadable in [dir.join("missing.json"), dir.clone()] {
            let err = with_file(&unreadable).unwrap_err();
            assert!(
                err.starts_with("AUTH_JWKS_FILE") && err.contains("cannot read"),
                "{err}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn log_filter_rejects_garbage() {
        assert!(log_filter("info,server=debug").is_ok());
        assert!(log_filter("info,=[").is_err());
    }
}
