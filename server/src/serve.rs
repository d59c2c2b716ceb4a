//! Serving HTTP on a listener: hyper does the connections, warp the routing.
//!
//! warp's own server and WebSocket filter would do, but the filter cannot size tungstenite's read
//! buffer, whose default 128 KiB is zero-filled on a connection's first read: about 139 KiB of
//! resident memory per idle connection, 1.4 GB at 10,000 connections. So this loop serves the
//! warp routes itself and hands each request two extensions the routes read: the TCP peer
//! ([`PeerAddr`]), and for upgrade requests the connection's upgrade handle ([`UpgradeSlot`]), with
//! which `routes` completes the WebSocket handshake on its own terms.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower_service::Service;
use tracing::{debug, warn};
use warp::Filter;
use warp::http::{Request, header};
use warp::reply::Response;

use crate::shutdown::Shutdown;

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

/// Serves `routes` on `listener` until the life cycle terminates; then stops accepting and gives
/// in-flight requests `grace` to finish. Upgraded connections live on in their own tasks.
pub async fn serve<F>(listener: TcpListener, routes: F, mut shutdown: Shutdown, grace: Duration)
where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, typically: back off instead of spinning.
                    warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.terminating() => break,
        };
        // Writes are already batched (everything queued, then one flush), so Nagle's algorithm
        // only adds delay: a batch written while the previous one is unacknowledged would wait for
        // the peer's delayed ACK, up to 40 ms on Linux.
        if let Err(err) = stream.set_nodelay(true) {
            debug!(error = %err, "TCP_NODELAY not set");
        }
        let routes = routes.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(PeerAddr(peer));
            if request.headers().contains_key(header::UPGRADE) {
                let upgrade = hyper::upgrade::on(&mut request);
                request
                    .extensions_mut()
                    .insert(UpgradeSlot(Arc::new(Mutex::new(Some(upgrade)))));
            }
            warp::service(routes.clone()).call(request)
        });
        let connection = Builder::new(TokioExecutor::new())
            .http1_only()
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                debug!(error = %err, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(grace, graceful.shutdown()).await;
}
