//! The WebSocket server: every JSON message a client sends on `/wss` reaches every open `/wss`
//! client as `{"message": …}`, and `/v1/ws` clients subscribe and publish on named channels.
//!
//! `main.rs` only wires these modules; [`run`] is the server itself, so that tests can start it
//! in-process on a loopback port and stop it with a future instead of a signal.
//!
//! - [`config`]: settings from the environment and flags, validated at start-up.
//! - [`serve`]: the HTTP accept loop (hyper), feeding requests to the warp routes.
//! - [`routes`]: HTTP paths, status codes, the WebSocket handshake and admission (drain, limit).
//! - [`connection`]: one WebSocket from upgrade to close (reading, batched writing, heartbeat,
//!   close), the same for every route.
//! - [`protocol`]: what a frame means on each WebSocket route (`/wss`, `/v1/ws`, `/echo`).
//! - [`publish`]: `POST /v1/publish`, publishing over HTTP with an API key.
//! - [`auth`]: sign-in with JWTs from the team's identity provider.
//! - [`limits`]: what one client may send (rate, JSON depth).
//! - [`hub`]: channels and their subscribers, and the fan-out through them; [`outbox`]: each
//!   connection's bounded queue; [`frame`]: the frames in it, encoded once for every recipient.
//! - [`backplane`]: optional Redis pub/sub, a relay the fan-out uses so that a message reaches
//!   the subscribers of its channel on every task.
//!
//! Dependencies point one way: routes → connection → protocol → hub ← backplane.
//! - [`shutdown`]: the drain signal passed to everything that reacts to it.
//! - [`metrics`]: Prometheus counters and the CloudWatch EMF line.
//! - [`demo`]: the demo page at `/`.
//! - [`logging`], [`healthcheck`]: log output and the container health check.

pub mod auth;
pub mod backplane;
pub mod config;
pub mod connection;
pub mod demo;
pub mod frame;
pub mod healthcheck;
pub mod http_socket;
pub mod hub;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod outbox;
pub mod protocol;
pub mod publish;
pub mod routes;
pub mod serve;
pub mod shutdown;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;
use tracing::{info, warn};

use config::Config;
use connection::{Heartbeat, SizeLimits};
use hub::{Fanout, HistoryLimits, Hub};
use limits::RateLimits;
use metrics::Metrics;
use outbox::QueueLimits;
use routes::AppState;
use serve::HttpLimits;

/// Pending connections the kernel queues per listener. The default (128) drops connects in a burst
/// of clients reconnecting at once, and each dropped SYN costs that client a one-second retry.
const LISTEN_BACKLOG: u32 = 4096;

/// How long in-flight plain HTTP requests, and connections cut at the drain deadline, may take to
/// finish once the drain is over.
const HTTP_SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// The sockets the server serves on, bound before [`run`] so that a port in use is reported at once
/// (and so tests can bind port 0 and learn the port).
#[derive(Debug)]
pub struct Listeners {
    /// WebSocket and health endpoints.
    pub public: TcpListener,
    /// Prometheus metrics, if enabled.
    pub admin: Option<TcpListener>,
}

impl Listeners {
    /// Binds the public port and, unless it is 0, the metrics port.
    pub fn bind(config: &Config) -> io::Result<Listeners> {
        let public = bind(SocketAddr::new(config.host, config.port))?;
        let admin = match config.metrics_port {
            0 => None,
            port => Some(bind(SocketAddr::new(config.host, port))?),
        };
        Ok(Listeners { public, admin })
    }
}

/// Binds a listener with a backlog large enough for reconnect storms.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket
        .bind(addr)
        .map_err(|err| io::Error::new(err.kind(), format!("cannot listen on {addr}: {err}")))?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves until `stop` completes, then drains: `/health` turns 503, upgrades are refused, `/wss`
/// and `/echo` clients get close 1001 at once and `/v1/ws` clients 1012 each at a random moment
/// within `DRAIN_SPREAD`, and this waits up to `DRAIN_TIMEOUT` for them before returning.
pub async fn run(config: &Config, listeners: Listeners, stop: impl Future<Output = ()>) {
    // Ring as rustls' process-wide crypto provider, for rediss:// and the JWKS fetch alike: rustls
    // picks one by itself only when exactly one is compiled in. Ring is the workspace's only one
    // (deny.toml bans aws-lc-rs), and naming it keeps TLS working if a dependency ever brings
    // another. Err only if one is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let metrics = Arc::new(Metrics::new());
    let queue_limits = QueueLimits {
        frames: config.client_queue_size as usize,
        bytes: u32::try_from(config.client_queue_bytes)
            .expect("CLIENT_QUEUE_BYTES is at most 1 GiB"),
    };
    let history = HistoryLimits {
        size: config.history_size as usize,
        ttl: config.history_ttl,
    };
    // With the Redis backplane, history lives in Redis, where every task hands out the same
    // offsets; the hub's own history is for a process without one.
    let hub_history = match config.redis_url {
        Some(_) => HistoryLimits::OFF,
        None => history,
    };
    let hub = Hub::new(queue_limits, hub_history, Arc::clone(&metrics));
    let (lifecycle, shutdown) = shutdown::channel();
    let permits = Arc::new(Semaphore::new(config.max_connections as usize));
    let fanout = match &config.redis_url {
        None => Fanout::Local(Arc::clone(&hub)),
        Some(url) => {
            let client = backplane::redis_client(url).expect("REDIS_URL is validated at start-up");
            backplane::start(
                client,
                backplane::ChannelNames {
                    broadcast: config.redis_channel.clone(),
                    prefix: config.redis_channel_prefix.clone(),
                },
                Arc::clone(&hub),
                history,
                &metrics,
                shutdown.clone(),
            )
        }
    };

    let auth = config
        .auth_settings()
        .expect("sign-in settings are validated at start-up")
        .map(|settings| Arc::new(auth::Authenticator::new(settings)));
    if let Some(auth) = &auth {
        let auth = Arc::clone(auth);
        let shutdown = shutdown.clone();
        tokio::spawn(async move { auth.keep_keys_fresh(shutdown).await });
    }
    let publish = Arc::new(publish::PublishApi::new(
        config
            .publish_api_keys
            .as_ref()
            .map(|keys| {
                keys.keys()
                    .expect("PUBLISH_API_KEYS is validated at start-up")
            })
            .unwrap_or_default(),
        auth.clone(),
        config.publish_messages_per_second,
        config.max_message_size as usize,
        fanout.clone(),
        Arc::clone(&metrics),
        shutdown.clone(),
    ));
    let state = AppState {
        context: Arc::new(connection::Context {
            hub,
            fanout,
            max_channels: config.max_channels_per_connection as usize,
            metrics: Arc::clone(&metrics),
            heartbeat: Heartbeat {
                ping_interval: config.ping_interval,
                pong_timeout: config.pong_timeout,
            },
            rate_limits: RateLimits::new(
                config.max_messages_per_second,
                config.message_burst,
                config.max_bytes_per_second,
                config.max_message_size,
            ),
            queue_limits,
            shutdown: shutdown.clone(),
            drain_spread: config.drain_spread(),
            // Both at most 64 MiB (config.rs).
            size_limits: SizeLimits {
                frame: config.max_frame_size as u32,
                message: config.max_message_size as u32,
            },
            auth: auth.clone(),
        }),
        permits: Arc::clone(&permits),
        trusted_proxy_hops: config.trusted_proxy_hops,
        publish,
        auth,
    };
    let http_limits = HttpLimits {
        header_read_timeout: config.header_read_timeout,
        idle_timeout: config.http_idle_timeout,
        max_connections: config.max_http_connections as usize,
    };

    info!(address = %listeners.public.local_addr().map_or_else(|e| e.to_string(), |a| a.to_string()), "serving WebSocket on /wss, /v1/ws and /echo");
    let mut servers = vec![tokio::spawn(serve::serve(
        listeners.public,
        routes::public(state),
        http_limits,
        Arc::clone(&metrics),
        shutdown.clone(),
        HTTP_SHUTDOWN_GRACE,
    ))];
    if let Some(admin) = listeners.admin {
        info!(address = %admin.local_addr().map_or_else(|e| e.to_string(), |a| a.to_string()), "serving metrics on /metrics");
        let admin_limits = HttpLimits {
            max_connections: config::ADMIN_HTTP_CONNECTIONS as usize,
            ..http_limits
        };
        servers.push(tokio::spawn(serve::serve(
            admin,
            routes::admin(Arc::clone(&metrics)),
            admin_limits,
            Arc::clone(&metrics),
            shutdown.clone(),
            HTTP_SHUTDOWN_GRACE,
        )));
    }
    let emf = (!config.emf_interval.is_zero()).then(|| {
        tokio::spawn(metrics::emf_loop(
            Arc::clone(&metrics),
            config.emf_interval,
            metrics::Emf::new(
                config.metrics_namespace.clone(),
                config.service_name.clone(),
            ),
            shutdown,
        ))
    });

    stop.await;
    info!(connections = metrics.connections.get(), drain_timeout = ?config.drain_timeout, drain_spread = ?config.drain_spread(), "draining");
    lifecycle.drain();
    let every_connection_closed = || permits.acquire_many(config.max_connections);
    let drained = tokio::time::timeout(config.drain_timeout, every_connection_closed()).await;
    lifecycle.terminate();
    match drained {
        Ok(_) => info!("all connections closed"),
        Err(_) => {
            warn!(
                connections = metrics.connections.get(),
                "drain timeout reached; dropping the remaining connections"
            );
            // They stop waiting for their clients at once; this only lets them log their close.
            let _ = tokio::time::timeout(HTTP_SHUTDOWN_GRACE, every_connection_closed()).await;
        }
    }
    for server in servers {
        let _ = server.await;
    }
    // The counts since the last periodic EMF line, the drain's closes and refusals included, once
    // every connection has been counted; CloudWatch would never see them otherwise.
    if let Some(emf) = emf
        && let Ok(mut emf) = emf.await
    {
        println!("{}", emf.last_line(&metrics, std::time::SystemTime::now()));
    }
    info!("stopped");
}
