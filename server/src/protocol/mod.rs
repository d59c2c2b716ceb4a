//! What a frame means on each WebSocket route: [`wss`] publishes every JSON message on the
//! `broadcast` channel and receives it in the original envelope, [`v1`] speaks channels in JSON
//! envelopes, [`echo`] sends every data frame back. The connection's lifecycle (reading, writing,
//! heartbeat, close) is the same for all three and lives in [`connection`](crate::connection).

pub mod echo;
pub mod v1;
pub mod wss;

use std::sync::Arc;

use futures_util::future::Either;

use crate::frame::Frame;
use crate::hub::{Fanout, Publication};
use crate::metrics::Metrics;
use crate::outbox::{Outbox, QueueLimits};

/// A data message a client sent, as the connection's reader hands it over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// Text, valid UTF-8.
    Text(&'a str),
    /// Binary.
    Binary(&'a [u8]),
}

impl<'a> Message<'a> {
    /// The payload, as bytes.
    pub fn payload(&self) -> &'a [u8] {
        match self {
            Message::Text(text) => text.as_bytes(),
            Message::Binary(bytes) => bytes,
        }
    }
}

/// What a connection does with the messages its client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/wss`: greet, then publish every JSON message on `broadcast`, whose messages every `/wss`
    /// client receives as `{"message": …}`.
    Broadcast,
    /// `/v1/ws`: subscribe, unsubscribe and publish on channels (see [`v1`]).
    Channels,
    /// `/echo`: send every data frame back unchanged (conformance runs and latency probes).
    Echo,
}

impl Route {
    /// The `route` field of the connection log lines.
    pub fn label(self) -> &'static str {
        match self {
            Route::Broadcast => "wss",
            Route::Channels => "v1",
            Route::Echo => "echo",
        }
    }
}

/// Where a `/wss` or `/echo` connection sends its client's data messages.
#[derive(Clone, Copy)]
pub enum Inbound<'a> {
    /// To every client on `broadcast`, through the fan-out (`/wss`).
    Broadcast(&'a Fanout),
    /// Back to the same client, through its own outbox and within these limits.
    Echo(&'a Arc<Outbox>, &'a QueueLimits),
}

/// An admitted message and where it goes.
pub enum Handover<'a> {
    /// Published through the fan-out.
    Publish(&'a Fanout, Publication),
    /// Queued in the client's own outbox.
    Echo(&'a Arc<Outbox>, &'a QueueLimits, Frame),
}

impl<'a> Inbound<'a> {
    /// What the route makes of an admitted data message: the handover to make, or `None` when it
    /// is dropped (and counted as such).
    pub fn accept(self, message: Message<'_>, metrics: &Metrics) -> Option<Handover<'a>> {
        match self {
            Inbound::Broadcast(fanout) => {
                wss::accept(message, metrics).map(|p| Handover::Publish(fanout, p))
            }
            // Framed here, once: the one copy an echo costs.
            Inbound::Echo(outbox, limits) => {
                let frame = match message {
                    Message::Text(text) => Frame::text(text),
                    Message::Binary(bytes) => Frame::binary(bytes),
                };
                Some(Handover::Echo(outbox, limits, frame))
            }
        }
    }
}

impl<'a> Handover<'a> {
    /// Hands the message over at once where it can (a publish to this process's hub may be
    /// delivered with the rest of the client's burst, when the task's poll ends); the future
    /// completes once it is taken, and holds only what waiting needs: a publish waits only for a
    /// full Redis publish queue, an echo for room in its own outbox (backpressure on a client that
    /// does not read).
    pub fn deliver(self) -> impl Future<Output = ()> + Send + 'a {
        match self {
            Handover::Publish(fanout, publication) => {
                Either::Left(fanout.publish_soon(publication))
            }
            Handover::Echo(outbox, limits, frame) => {
                Either::Right(echo::deliver(outbox, limits, frame))
            }
        }
    }
}
