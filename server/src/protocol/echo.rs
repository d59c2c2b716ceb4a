//! `/echo`: every data frame goes back to its sender unchanged (conformance runs, latency probes).
//! The echo queues in the connection's own outbox, so a client that does not read its echoes is
//! held back (backpressure) instead of growing the queue.

use std::sync::Arc;

use crate::frame::Frame;
use crate::outbox::{Outbox, QueueLimits};

/// Queues `frame` in the client's own outbox at once if there is room; otherwise the returned
/// future waits for room, holding only what waiting needs.
pub fn deliver<'a>(
    outbox: &'a Arc<Outbox>,
    limits: &'a QueueLimits,
    frame: Frame,
) -> impl Future<Output = ()> + Send + 'a {
    // Boxed: only a client that does not read its echoes ever waits here.
    let waiting = outbox
        .try_push(frame, limits)
        .err()
        .map(|frame| Box::pin(outbox.push_when_room(frame, limits)));
    async move {
        if let Some(waiting) = waiting {
            waiting.await;
        }
    }
}
