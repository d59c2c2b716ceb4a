//! What a frame means on each WebSocket route: [`wss`] broadcasts every JSON message to every
//! client in an envelope, [`echo`] sends every data frame back. The connection's lifecycle (reading,
//! writing, heartbeat, close) is the same for both and lives in [`connection`](crate::connection).

pub mod echo;
pub mod wss;

use futures_util::future::Either;
use tokio_tungstenite::tungstenite::Message;

use crate::hub::Fanout;
pub use crate::hub::payload;
use crate::metrics::Metrics;
use crate::outbox::{Outbox, QueueLimits};

/// What a connection does with the messages its client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/wss`: greet, then broadcast every JSON message to every client as `{"message": …}`.
    Broadcast,
    /// `/echo`: send every data frame back unchanged (conformance runs and latency probes).
    Echo,
}

impl Route {
    /// The `route` field of the connection log lines.
    pub fn label(self) -> &'static str {
        match self {
            Route::Broadcast => "wss",
            Route::Echo => "echo",
        }
    }
}

/// Where a connection's route sends its client's data messages.
#[derive(Clone, Copy)]
pub enum Inbound<'a> {
    /// To every client, through the fan-out (`/wss`).
    Broadcast(&'a Fanout),
    /// Back to the same client, through its own outbox and within these limits.
    Echo(&'a Outbox, &'a QueueLimits),
}

impl<'a> Inbound<'a> {
    /// Hands `message` over at once where it can; the future completes once it is taken, and
    /// holds only what waiting needs: a broadcast waits only for a full Redis publish queue, an
    /// echo for room in its own outbox (backpressure on a client that does not read).
    pub fn deliver(self, message: Message) -> impl Future<Output = ()> + Send + 'a {
        match self {
            Inbound::Broadcast(fanout) => Either::Left(fanout.broadcast(message)),
            Inbound::Echo(outbox, limits) => Either::Right(echo::deliver(outbox, limits, message)),
        }
    }

    /// What the route makes of an admitted data message: the message to hand over, or `None` when
    /// it is dropped (and counted as such).
    pub fn accept(self, message: Message, metrics: &Metrics) -> Option<Message> {
        match self {
            Inbound::Broadcast(_) => wss::accept(&message, metrics),
            Inbound::Echo(..) => Some(message),
        }
    }
}
