//! The reading half of a connection: every frame the client sends, held to the connection's rate
//! limits, then handed to its route's protocol.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::SystemTime;

use futures_util::FutureExt;
use futures_util::future::Either;
use tokio::time::{Instant, sleep_until};

use super::incoming::{Incoming, Received};
use super::{Activity, CloseReason, Context, EchoPlace};
use crate::auth::Grant;
use crate::frame::Frame;
use crate::hub::channel::BROADCAST;
use crate::limits::{RateLimiter, Verdict};
use crate::outbox::Outbox;
use crate::protocol::v1::Session;
use crate::protocol::{Handover, Inbound};

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
    /// Hands the message to the `/v1/ws` session, then reads on.
    Channels,
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
    /// Where the pongs go: the connection's outbox, for the writer to send in order.
    pub(super) replies: &'a Arc<Outbox>,
}

impl<'a> Reader<'a> {
    /// Reads until the connection ends, and says why it did. An async block rather than an async
    /// fn, which would keep a second copy of the reader in every connection's task.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn keeps a second copy of its arguments"
    )]
    pub(super) fn run(mut self, incoming: &mut Incoming<'_>) -> impl Future<Output = CloseReason> {
        async move {
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
                        incoming.poll_next(cx).map(Some)
                    });
                    let received = match next.await {
                        None => return CloseReason::TokenExpired,
                        Some(Err(reason)) => return reason,
                        Some(Ok(received)) => received,
                    };
                    self.activity.heard();
                    match self.receive(received, incoming, &mut limiter) {
                        Next::Read => continue,
                        Next::Stop(reason) => return reason,
                        Next::Deliver(handover) => Either::Left(handover.deliver().map(Ok)),
                        Next::Channels => {
                            let Handler::Channels(session) = &mut self.handler else {
                                unreachable!("only a /v1/ws reader hands messages to a session")
                            };
                            let context = self.context;
                            let payload = incoming.payload();
                            // Boxed: a subscribe may wait for Redis, a refresh for the identity
                            // provider's keys. The message stays in the reader's buffer meanwhile.
                            Either::Right(Box::pin(async move {
                                session.receive(payload, context).await
                            }))
                        }
                    }
                };
                if pending.await.is_err() {
                    return CloseReason::SlowConsumer;
                }
                // A refresh moves the end of the connection.
                if let Handler::Channels(session) = &mut self.handler
                    && let (Some(deadline), Some(at)) =
                        (deadline.as_mut(), session.take_refreshed())
                {
                    deadline.as_mut().reset(until(at));
                }
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
        received: Received,
        incoming: &Incoming<'_>,
        limiter: &mut RateLimiter,
    ) -> Next<'a> {
        // Pongs only count as signs of life. Both, like every frame, counted toward the rate
        // limit as they arrived (`FrameRate`).
        let message = match received {
            Received::Close => return Next::Stop(CloseReason::ClientClosed),
            Received::Ping => {
                // An outbox that takes no more is evicted, which the writer acts on.
                let _ = self.replies.push_control(Frame::pong(incoming.payload()));
                return Next::Read;
            }
            Received::Pong => return Next::Read,
            Received::Text | Received::Binary => match incoming.message(received) {
                Ok(Some(message)) => message,
                Ok(None) => return Next::Read,
                Err(reason) => return Next::Stop(reason),
            },
        };
        let metrics = &*self.context.metrics;
        let size = message.payload().len();
        self.activity.received.fetch_add(1, Ordering::Relaxed);
        metrics.messages_received.inc();
        metrics.bytes_received.inc_by(size as u64);
        match limiter.admit(&self.context.rate_limits, size) {
            Verdict::Accept => {}
            Verdict::Drop => {
                metrics.messages_dropped("rate_limited", 1);
                if let Handler::Channels(session) = &self.handler
                    && session.rate_limited(message.payload()).is_err()
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
            Handler::Channels(_) => return Next::Channels,
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
