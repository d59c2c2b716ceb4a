//! The reading half of a connection: every frame the client sends, held to the connection's rate
//! limits, then handed to its route's protocol.

use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::SystemTime;

use futures_util::FutureExt;
use futures_util::future::Either;
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::debug;

use super::socket::poll_message;
use super::{Activity, CloseReason, Context, EchoPlace, WebSocket};
use crate::auth::Grant;
use crate::hub::channel::BROADCAST;
use crate::limits::{RateLimiter, Verdict};
use crate::protocol::v1::Session;
use crate::protocol::{Handover, Inbound, payload};

/// The monotonic moment of a wall-clock one (a token's `exp` is wall-clock time).
fn until(at: SystemTime) -> Instant {
    Instant::now() + at.duration_since(SystemTime::now()).unwrap_or_default()
}

/// What the reader does after a client's frame.
enum Next<'a> {
    /// Reads on.
    Read,
    /// Makes this handover (a broadcast, or an echo), then reads on.
    Deliver(Handover<'a>),
    /// Hands this frame to the `/v1/ws` session, then reads on.
    Channels(Message),
    /// Stops: the connection is over.
    Stop(CloseReason),
}

/// What the route does with the client's messages.
pub(super) enum Handler<'a> {
    /// `/wss`: publishes them on `broadcast` (if the token, with sign-in, allows it).
    Broadcast(Option<&'a Grant>),
    /// `/echo`: sends them back through the connection's own outbox (until the token, with
    /// sign-in, expires).
    Echo(&'a EchoPlace),
    /// `/v1/ws`: the channels session.
    Channels(&'a mut Session),
}

/// The reading half's context: where messages go and what limits them.
pub(super) struct Reader<'a> {
    pub(super) context: &'a Context,
    pub(super) activity: &'a Activity,
    pub(super) handler: Handler<'a>,
}

impl<'a> Reader<'a> {
    pub(super) async fn run(mut self, stream: &mut WebSocket) -> CloseReason {
        let mut limiter = RateLimiter::new(&self.context.rate_limits);
        // With sign-in, the connection ends when its token does. Boxed: only then is there one.
        let mut deadline = self.expires().map(|at| Box::pin(sleep_until(until(at))));
        loop {
            // Decided by a plain function, and only the future to wait on kept past this block
            // (a local, and a match's scrutinee, keep their room in the task to the end of their
            // scope), so that a reader waiting holds only what it waits with: every connection's
            // task is allocated at its largest state's size.
            let pending = {
                // One future for both, polled by hand: a `select!` here would cost every
                // connection's task its state, sign-in or not.
                let next = std::future::poll_fn(|cx| {
                    if let Some(deadline) = deadline.as_mut()
                        && deadline.as_mut().poll(cx).is_ready()
                    {
                        return Poll::Ready(None);
                    }
                    poll_message(stream, cx).map(Some)
                });
                let frame = match next.await {
                    None => return CloseReason::TokenExpired,
                    Some(None) => return CloseReason::Abnormal,
                    Some(Some(frame)) => frame,
                };
                self.activity.heard();
                match self.receive(frame, &mut limiter) {
                    Next::Read => continue,
                    Next::Stop(reason) => return reason,
                    Next::Deliver(handover) => Either::Left(handover.deliver().map(Ok)),
                    Next::Channels(message) => {
                        let Handler::Channels(session) = &mut self.handler else {
                            unreachable!("only a /v1/ws reader hands frames to a session")
                        };
                        let context = self.context;
                        // Boxed with the frame it reads: a subscribe may wait for Redis, a
                        // refresh for the identity provider's keys.
                        Either::Right(Box::pin(async move {
                            session.receive(payload(&message), context).await
                        }))
                    }
                }
            };
            if pending.await.is_err() {
                return CloseReason::SlowConsumer;
            }
            // A refresh moves the end of the connection.
            if let Handler::Channels(session) = &mut self.handler
                && let (Some(deadline), Some(at)) = (deadline.as_mut(), session.take_refreshed())
            {
                deadline.as_mut().reset(until(at));
            }
        }
    }

    /// When the connection's token ends, with sign-in.
    fn expires(&self) -> Option<SystemTime> {
        match &self.handler {
            Handler::Broadcast(grant) => grant.map(|grant| grant.expires),
            Handler::Channels(session) => session.expires(),
            Handler::Echo(echo) => echo.grant.as_ref().map(|grant| grant.expires),
        }
    }

    fn receive(
        &mut self,
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
                if let Handler::Channels(session) = &self.handler
                    && session.rate_limited(payload(&message)).is_err()
                {
                    return Next::Stop(CloseReason::SlowConsumer);
                }
                return Next::Read;
            }
            Verdict::Close => {
                metrics.messages_dropped("rate_limited", 1);
                return Next::Stop(CloseReason::RateLimited);
            }
        }
        let inbound = match &self.handler {
            Handler::Channels(_) => return Next::Channels(message),
            Handler::Echo(echo) => Inbound::Echo(&echo.outbox, &self.context.queue_limits),
            Handler::Broadcast(Some(grant)) if !grant.may_publish(BROADCAST) => {
                metrics.messages_dropped("forbidden", 1);
                return Next::Read;
            }
            Handler::Broadcast(_) => Inbound::Broadcast(&self.context.fanout),
        };
        match inbound.accept(message, metrics) {
            Some(handover) => Next::Deliver(handover),
            None => Next::Read,
        }
    }
}
