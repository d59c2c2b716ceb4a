//! A TCP proxy on loopback standing in for the load balancer: it hands each new connection to the
//! next of its targets in turn, and the test decides which targets serve and when every relayed
//! connection is cut.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// The proxy; it stops, and cuts what it relays, when dropped.
pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    accepting: JoinHandle<()>,
}

struct State {
    /// Where new connections go, in turn; none turns them away (closed at once).
    targets: Vec<SocketAddr>,
    next: usize,
    connections: Vec<AbortHandle>,
}

impl Proxy {
    pub async fn start(targets: Vec<SocketAddr>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            targets,
            next: 0,
            connections: Vec::new(),
        }));
        let shared = Arc::clone(&state);
        let accepting = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut state = shared.lock().unwrap();
                if state.targets.is_empty() {
                    continue;
                }
                let target = state.targets[state.next % state.targets.len()];
                state.next += 1;
                let relaying = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                state
                    .connections
                    .retain(|connection| !connection.is_finished());
                state.connections.push(relaying.abort_handle());
            }
        });
        Proxy {
            addr,
            state,
            accepting,
        }
    }

    /// Sends no new connections to `target` (as a load balancer deregistering it); the ones it
    /// has stay until it closes them.
    pub fn retire(&self, target: SocketAddr) {
        self.state.lock().unwrap().targets.retain(|t| *t != target);
    }

    /// Drops every relayed connection (both of its sockets) and turns new ones away.
    pub fn cut(&self) {
        let mut state = self.state.lock().unwrap();
        state.targets.clear();
        for connection in state.connections.drain(..) {
            connection.abort();
        }
    }

    /// Relays new connections again, to `target` alone.
    pub fn mend(&self, target: SocketAddr) {
        self.state.lock().unwrap().targets = vec![target];
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accepting.abort();
        let mut state = self.state.lock().unwrap();
        for connection in state.connections.drain(..) {
            connection.abort();
        }
    }
}
