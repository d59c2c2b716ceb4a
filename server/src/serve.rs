//! Serving HTTP on a listener: hyper does the connections, warp the routing, and this module bounds
//! the HTTP phase of every socket, before it upgrades to a WebSocket or closes.
//!
//! warp's own server and WebSocket filter would do, but the filter cannot size tungstenite's read
//! buffer, whose default 128 KiB is zero-filled on a connection's first read: about 139 KiB of
//! resident memory per idle connection, 1.4 GB at 10,000 connections. So this loop serves the
//! warp routes itself and hands each request three extensions the routes read: the TCP peer
//! ([`PeerAddr`]), the HTTP version, and for upgrade requests the connection's upgrade handle
//! ([`UpgradeSlot`]), with which `routes` completes the WebSocket handshake on its own terms.
//!
//! The HTTP phase is where a hostile client costs the least to be and the most to serve: a socket
//! that trickles a request head a byte at a time, or never finishes one, holds a file descriptor and
//! its buffered bytes for free. So every socket must send its first head within the header-read
//! timeout, a head may not exceed [`MAX_HEAD_BYTES`] (431), a keep-alive socket must send its next
//! head within the idle timeout, one that does not read its responses is closed once no head has
//! come for the idle and header-read timeouts together, and at most `MAX_HTTP_CONNECTIONS` sockets
//! may be in the phase at once: when full, the oldest is closed to let the newest in, so `/health`
//! and upgrades always get through, whatever the slow sockets do.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;
use tower_service::Service;
use tracing::{debug, warn};
use warp::Filter;
use warp::http::{Request, header};
use warp::reply::Response;

use crate::http_socket::HttpSocket;
use crate::metrics::Metrics;
use crate::outbox::Batching;
use crate::shutdown::Shutdown;

/// Largest request head (request line and headers) accepted; a larger one gets 431. A WebSocket
/// upgrade through CloudFront and the ALB is well under 4 KiB; 16 KiB leaves room for cookies.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// First wait after a failed accept (out of file descriptors, typically), doubled up to
/// `ACCEPT_BACKOFF_CAP` while accepting keeps failing: the error repeats until a socket closes, and
/// retrying at once would spin a core.
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_CAP: Duration = Duration::from_secs(1);

/// The TCP peer of the request's connection.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// The upgrade handle of a request that asked for one (`Upgrade:` header). The route that accepts
/// the upgrade takes it; a cloneable slot, because warp hands extensions out by clone.
#[derive(Debug, Clone)]
pub struct UpgradeSlot(Arc<Mutex<Option<OnUpgrade>>>);

impl UpgradeSlot {
    /// The handle, once.
    pub fn take(&self) -> Option<OnUpgrade> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// Bounds of the HTTP phase (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Time a new socket has to send its first complete request head.
    pub header_read_timeout: Duration,
    /// Time a keep-alive socket has to send its next complete request head.
    pub idle_timeout: Duration,
    /// Sockets in the HTTP phase at once.
    pub max_connections: usize,
}

/// Serves `routes` on `listener` until the life cycle terminates; then stops accepting and gives
/// in-flight requests `grace` to finish. Upgraded connections live on in their own tasks.
pub async fn serve<F>(
    listener: TcpListener,
    routes: F,
    limits: HttpLimits,
    metrics: Arc<Metrics>,
    mut shutdown: Shutdown,
    grace: Duration,
) where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    let phase = Arc::new(HttpPhase::new(limits.max_connections));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .max_buf_size(MAX_HEAD_BYTES)
        // hyper's header-read timeout runs from the moment it waits for a head, which for a
        // keep-alive socket is as soon as the previous response is written: the idle timeout.
        // The stricter timeout for the first head is kept in each connection's task below.
        .header_read_timeout(limits.idle_timeout);
    let mut backoff = ACCEPT_BACKOFF_FIRST;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    warn!(error = %err, retry_in = ?backoff, "accept failed");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.terminating() => break,
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_CAP);
                    continue;
                }
            },
            _ = shutdown.terminating() => break,
        };
        backoff = ACCEPT_BACKOFF_FIRST;
        // Writes are already batched (everything queued, then one flush), so Nagle's algorithm
        // only adds delay: a batch written while the previous one is unacknowledged would wait for
        // the peer's delayed ACK, up to 40 ms on Linux.
        if let Err(err) = stream.set_nodelay(true) {
            debug!(error = %err, "TCP_NODELAY not set");
        }
        let (place, crowded_out) = phase.enter();
        let accepted = Instant::now();
        // When the latest complete request head arrived, in milliseconds after the accept, plus
        // one (0: none yet). The deadlines below are measured from it.
        let last_head = Arc::new(AtomicU64::new(0));
        let service = {
            let (routes, last_head) = (routes.clone(), Arc::clone(&last_head));
            hyper::service::service_fn(move |request| {
                let at = accepted.elapsed().as_millis() as u64 + 1;
                last_head.store(at, Ordering::Relaxed);
                warp::service(routes.clone()).call(with_extensions(request, peer))
            })
        };
        let connection = http
            .serve_connection(TokioIo::new(HttpSocket::new(stream)), service)
            .with_upgrades();
        let metrics = Arc::clone(&metrics);
        let mut shutdown = shutdown.clone();
        // Batching: the messages of one `POST /v1/publish` go to each idle recipient in one system
        // call.
        tokio::spawn(Batching::new(async move {
            let _place = place;
            let deadline = tokio::time::sleep(limits.header_read_timeout);
            tokio::pin!(connection, deadline, crowded_out);
            let mut closing = false;
            let ended = loop {
                tokio::select! {
                    result = &mut connection => break match result {
                        Ok(()) => None,
                        Err(err) if err.is_timeout() => Some("idle_timeout"),
                        Err(err) if err.is_parse_too_large() => Some("head_too_large"),
                        Err(err) => {
                            debug!(error = %err, "HTTP connection ended with an error");
                            None
                        }
                    },
                    // The first head must come within the header-read timeout. After a head,
                    // hyper's own timer closes a socket idle for the idle timeout, but it runs
                    // only while hyper waits for a head: a client that never reads its response
                    // keeps hyper writing, so a socket with no new head for the idle timeout
                    // and then the header-read timeout is closed here.
                    () = &mut deadline => {
                        let since_head = match last_head.load(Ordering::Relaxed) {
                            0 => break Some("header_timeout"),
                            at => Duration::from_millis(at - 1),
                        };
                        let due = accepted
                            + since_head
                            + limits.idle_timeout
                            + limits.header_read_timeout;
                        if Instant::now() >= due {
                            break Some("response_stalled");
                        }
                        deadline.as_mut().reset(due);
                    }
                    _ = &mut crowded_out => break Some("crowded_out"),
                    _ = shutdown.terminating(), if !closing => {
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            };
            if let Some(reason) = ended {
                metrics.http_connection_closed(reason);
            }
        }));
    }
    drop(listener);
    let _ = tokio::time::timeout(grace, phase.emptied()).await;
}

/// Adds what the routes need to know about the request beyond its head (see the module doc).
fn with_extensions(mut request: Request<Incoming>, peer: SocketAddr) -> Request<Incoming> {
    let version = request.version();
    let extensions = request.extensions_mut();
    extensions.insert(PeerAddr(peer));
    extensions.insert(version);
    if request.headers().contains_key(header::UPGRADE) {
        let upgrade = hyper::upgrade::on(&mut request);
        request
            .extensions_mut()
            .insert(UpgradeSlot(Arc::new(Mutex::new(Some(upgrade)))));
    }
    request
}

/// The sockets in the HTTP phase, oldest first, each with the means to close it.
#[derive(Debug)]
struct HttpPhase {
    sockets: Mutex<Sockets>,
    capacity: usize,
    /// Wakes the shutdown when the last socket leaves.
    emptied: Notify,
}

#[derive(Debug, Default)]
struct Sockets {
    next_id: u64,
    by_age: BTreeMap<u64, oneshot::Sender<()>>,
}

/// A socket's place in the HTTP phase; leaves it when dropped.
struct Place {
    id: u64,
    phase: Arc<HttpPhase>,
}

impl HttpPhase {
    fn new(capacity: usize) -> HttpPhase {
        HttpPhase {
            sockets: Mutex::default(),
            capacity,
            emptied: Notify::new(),
        }
    }

    /// Admits a new socket, closing the oldest first if the phase is full. The future completes
    /// when this socket is the one crowded out.
    fn enter(self: &Arc<Self>) -> (Place, impl Future<Output = ()> + use<>) {
        let (close, closed) = oneshot::channel();
        let mut sockets = self.lock();
        if sockets.by_age.len() >= self.capacity
            && let Some((_, oldest)) = sockets.by_age.pop_first()
        {
            let _ = oldest.send(());
        }
        let id = sockets.next_id;
        sockets.next_id += 1;
        sockets.by_age.insert(id, close);
        let place = Place {
            id,
            phase: Arc::clone(self),
        };
        let crowded_out = async move {
            // Err: the place was left normally and its sender dropped; never completes then.
            if closed.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        (place, crowded_out)
    }

    async fn emptied(&self) {
        loop {
            let notified = self.emptied.notified();
            if self.lock().by_age.is_empty() {
                return;
            }
            notified.await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, Sockets> {
        // Every critical section leaves the map consistent, so a poisoned lock is still usable.
        self.sockets.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut sockets = self.phase.lock();
        sockets.by_age.remove(&self.id);
        if sockets.by_age.is_empty() {
            self.phase.emptied.notify_waiters();
        }
    }
}
