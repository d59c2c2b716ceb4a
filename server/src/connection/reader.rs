//! The reading half of a connection: every frame the client sends, held to the connection's rate
//! limits, then handed to its route's protocol.

use std::sync::atomic::Ordering;

use futures_util::StreamExt;
use futures_util::stream::SplitStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::debug;

use super::{Activity, CloseReason, Context, WebSocket};
use crate::limits::{RateLimiter, Verdict};
use crate::outbox::Outbox;
use crate::protocol::{Inbound, payload};

/// What the reader does after a client's frame.
enum Next<'a> {
    /// Reads on.
    Read,
    /// Hands this message (a broadcast envelope, or an echo) over, then reads on.
    Deliver(Inbound<'a>, Message),
    /// Stops: the connection is over.
    Stop(CloseReason),
}

/// The reading half's context: where messages go and what limits them.
pub(super) struct Reader<'a> {
    pub(super) context: &'a Context,
    pub(super) activity: &'a Activity,
    /// The connection's own outbox on `/echo`; `None` on `/wss`, which broadcasts.
    pub(super) echo: Option<&'a Outbox>,
}

impl<'a> Reader<'a> {
    pub(super) async fn run(self, stream: &mut SplitStream<WebSocket>) -> CloseReason {
        let mut limiter = RateLimiter::new(&self.context.rate_limits);
        loop {
            let Some(frame) = stream.next().await else {
                return CloseReason::Abnormal;
            };
            self.activity.heard();
            // Decided by a plain function, and the wait outside the match, so that a reader
            // waiting holds only what it waits with: every connection's task is allocated at
            // its largest state's size.
            let (inbound, message) = match self.receive(frame, &mut limiter) {
                Next::Read => continue,
                Next::Deliver(inbound, message) => (inbound, message),
                Next::Stop(reason) => return reason,
            };
            inbound.deliver(message).await;
        }
    }

    fn receive(
        &self,
        frame: Result<Message, tungstenite::Error>,
        limiter: &mut RateLimiter,
    ) -> Next<'a> {
        let message = match frame {
            Ok(message) => message,
            Err(err) => {
                debug!(error = %err, "read failed");
                return Next::Stop(CloseReason::from_read_error(&err));
            }
        };
        if message.is_close() {
            return Next::Stop(CloseReason::ClientClosed);
        }
        // Pings are answered by the WebSocket layer; pongs only count as signs of life. Both,
        // like every frame, counted toward the rate limit as they arrived (`FrameMetered`).
        if !(message.is_text() || message.is_binary()) {
            return Next::Read;
        }
        let metrics = &*self.context.metrics;
        let size = payload(&message).len();
        self.activity.received.fetch_add(1, Ordering::Relaxed);
        metrics.messages_received.inc();
        metrics.bytes_received.inc_by(size as u64);
        match limiter.admit(&self.context.rate_limits, size) {
            Verdict::Accept => {}
            Verdict::Drop => {
                metrics.messages_dropped("rate_limited", 1);
                return Next::Read;
            }
            Verdict::Close => {
                metrics.messages_dropped("rate_limited", 1);
                return Next::Stop(CloseReason::RateLimited);
            }
        }
        let inbound = match self.echo {
            Some(outbox) => Inbound::Echo(outbox, &self.context.queue_limits),
            None => Inbound::Broadcast(&self.context.fanout),
        };
        match inbound.accept(message, metrics) {
            Some(message) => Next::Deliver(inbound, message),
            None => Next::Read,
        }
    }
}
