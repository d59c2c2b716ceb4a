//! The broadcast engine: who is connected, and handing each message to all of them; and the
//! [`Fanout`] a connection broadcasts through, to this hub or through a relay (the Redis
//! [`backplane`](crate::backplane)) to the hub of every task. The hub depends on no connection or
//! route; they, and the backplane, depend on it.
//!
//! A message is serialized once by the sender's connection; the hub hands every member a clone of
//! the same frame, whose bytes are reference-counted, so a broadcast to N clients copies no payload.
//! Each member has a bounded queue. The hub never waits on a queue: a member whose queue is full is
//! evicted on the spot and told so, so a slow client never slows the sender or anyone else, and the
//! memory a client can pin is bounded by its queue. One lock around the member list gives every
//! client the same order of messages.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::metrics::Metrics;
use crate::outbox::{Outbox, QueueLimits};

/// The set of connections on `/wss`. One per process, shared by `Arc`.
#[derive(Debug)]
pub struct Hub {
    members: Mutex<Members>,
    queue_limits: QueueLimits,
    metrics: Arc<Metrics>,
}

#[derive(Debug, Default)]
struct Members {
    next_id: u64,
    by_id: HashMap<u64, Arc<Outbox>>,
}

/// A connection's place in the hub: the outbox its frames arrive in. Dropping it leaves the hub, so
/// a connection cannot linger in the member list whatever way it ends.
#[derive(Debug)]
pub struct Membership {
    /// Frames waiting to be written to this client, in broadcast order; evicted if it fills up.
    pub outbox: Arc<Outbox>,
    id: u64,
    hub: Arc<Hub>,
}

impl Hub {
    /// An empty hub whose members may each have up to `queue_limits` waiting.
    pub fn new(queue_limits: QueueLimits, metrics: Arc<Metrics>) -> Arc<Hub> {
        Arc::new(Hub {
            members: Mutex::default(),
            queue_limits,
            metrics,
        })
    }

    /// Adds a member; it receives every frame broadcast from now on.
    pub fn join(self: &Arc<Self>) -> Membership {
        let outbox = Arc::new(Outbox::new());
        let mut members = self.lock();
        let id = members.next_id;
        members.next_id += 1;
        members.by_id.insert(id, Arc::clone(&outbox));
        Membership {
            outbox,
            id,
            hub: Arc::clone(self),
        }
    }

    /// Queues `frame` for every member, the sender included; a member whose outbox is full is
    /// evicted and removed. Returns how many members got it.
    pub fn broadcast(&self, frame: Message) -> usize {
        let mut members = self.lock();
        let before = members.by_id.len();
        members
            .by_id
            .retain(|_, outbox| outbox.push(frame.clone(), &self.queue_limits).is_ok());
        let queued = members.by_id.len();
        drop(members);
        if queued < before {
            self.metrics
                .messages_dropped("slow_consumer", (before - queued) as u64);
        }
        queued
    }

    /// How many members the hub has now.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// Whether the hub has no members.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Members> {
        // A panic elsewhere while holding the lock leaves the map consistent (no partial updates).
        self.members.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The payload of a data frame (empty for control frames).
pub fn payload(message: &Message) -> &[u8] {
    match message {
        Message::Text(text) => text.as_bytes(),
        Message::Binary(bytes) => bytes,
        _ => &[],
    }
}

/// Where a client's valid message goes.
#[derive(Debug, Clone)]
pub enum Fanout {
    /// Straight to this process's clients.
    Local(Arc<Hub>),
    /// Into a relay's bounded queue (the Redis backplane), which hands it to the hub of every
    /// task, this one's included.
    Relay(mpsc::Sender<Message>),
}

impl Fanout {
    /// Broadcasts one envelope. Waits only when the relay's queue is full.
    ///
    /// The envelope is handed over before the future is returned, so that a reader waiting on it
    /// holds no copy: every connection's task is allocated for its largest state, this one
    /// included. For the same reason the relay send, several times an idle connection's state, is
    /// boxed.
    pub fn broadcast(&self, frame: Message) -> impl Future<Output = ()> + Send + '_ {
        let publish = match self {
            Fanout::Local(hub) => {
                hub.broadcast(frame);
                None
            }
            Fanout::Relay(queue) => Some(Box::pin(queue.send(frame))),
        };
        async move {
            if let Some(publish) = publish {
                // The relay outlives every connection; if it is gone the process is ending.
                let _ = publish.await;
            }
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.hub.lock().by_id.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    fn hub(frames: usize) -> Arc<Hub> {
        let limits = QueueLimits {
            frames,
            bytes: 1 << 20,
        };
        Hub::new(limits, Arc::new(Metrics::new()))
    }

    #[tokio::test]
    async fn every_member_gets_every_frame_in_order() {
        let hub = hub(8);
        let a = hub.join();
        let b = hub.join();
        assert_eq!(hub.broadcast(Message::text("1")), 2);
        assert_eq!(hub.broadcast(Message::text("2")), 2);
        for member in [&a, &b] {
            let mut batch = VecDeque::new();
            member.outbox.take_all(&mut batch).await.unwrap();
            assert_eq!(batch, [Message::text("1"), Message::text("2")]);
        }
    }

    #[tokio::test]
    async fn a_full_outbox_evicts_only_that_member() {
        let hub = hub(2);
        let slow = hub.join();
        let fast = hub.join();
        for n in 0..5 {
            hub.broadcast(Message::text(n.to_string()));
            fast.outbox.take_all(&mut VecDeque::new()).await.unwrap();
        }
        slow.outbox.evicted().await;
        assert_eq!(hub.len(), 1, "only the fast member remains");
    }

    #[test]
    fn dropping_a_membership_leaves_the_hub() {
        let hub = hub(1);
        let member = hub.join();
        assert_eq!(hub.len(), 1);
        drop(member);
        assert!(hub.is_empty());
    }
}
