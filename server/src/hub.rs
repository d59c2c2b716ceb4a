//! The broadcast engine: who is connected, and handing each message to all of them.
//!
//! A message is serialized once by the sender's connection; the hub hands every member a clone of
//! the same frame, whose bytes are reference-counted, so a broadcast to N clients copies no payload.
//! Each member has a bounded queue. The hub never waits on a queue: a member whose queue is full is
//! evicted on the spot and told so, so a slow client never slows the sender or anyone else, and the
//! memory a client can pin is bounded by its queue. One lock around the member list gives every
//! client the same order of messages.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use crate::metrics::Metrics;

/// The set of connections on `/wss`. One per process, shared by `Arc`.
#[derive(Debug)]
pub struct Hub {
    members: Mutex<Members>,
    queue_size: usize,
    metrics: Arc<Metrics>,
}

#[derive(Debug, Default)]
struct Members {
    next_id: u64,
    by_id: HashMap<u64, Member>,
}

#[derive(Debug)]
struct Member {
    queue: mpsc::Sender<Message>,
    evict: Option<oneshot::Sender<()>>,
}

/// A connection's place in the hub: its queue of frames to write, and the notice that it was evicted.
/// Dropping it leaves the hub, so a connection cannot linger in the member list whatever way it ends.
#[derive(Debug)]
pub struct Membership {
    /// Frames waiting to be written to this client, in broadcast order.
    pub queue: mpsc::Receiver<Message>,
    /// Completes if the client fell `queue_size` frames behind and was removed.
    pub evicted: oneshot::Receiver<()>,
    id: u64,
    hub: Arc<Hub>,
}

impl Hub {
    /// An empty hub whose members may each have `queue_size` frames waiting.
    pub fn new(queue_size: usize, metrics: Arc<Metrics>) -> Arc<Hub> {
        Arc::new(Hub {
            members: Mutex::default(),
            queue_size,
            metrics,
        })
    }

    /// Adds a member; it receives every frame broadcast from now on.
    pub fn join(self: &Arc<Self>) -> Membership {
        let (queue_sender, queue) = mpsc::channel(self.queue_size);
        let (evict, evicted) = oneshot::channel();
        let mut members = self.lock();
        let id = members.next_id;
        members.next_id += 1;
        members.by_id.insert(
            id,
            Member {
                queue: queue_sender,
                evict: Some(evict),
            },
        );
        Membership {
            queue,
            evicted,
            id,
            hub: Arc::clone(self),
        }
    }

    /// Queues `frame` for every member, the sender included. Returns how many members got it.
    pub fn broadcast(&self, frame: Message) -> usize {
        let mut members = self.lock();
        let mut queued = 0;
        let mut evicted = 0;
        members
            .by_id
            .retain(|_, member| match member.queue.try_send(frame.clone()) {
                Ok(()) => {
                    queued += 1;
                    true
                }
                Err(TrySendError::Full(_)) => {
                    if let Some(evict) = member.evict.take() {
                        let _ = evict.send(());
                    }
                    evicted += 1;
                    false
                }
                // The connection is ending; its Membership's drop would remove it too.
                Err(TrySendError::Closed(_)) => false,
            });
        drop(members);
        if evicted > 0 {
            self.metrics.messages_dropped("slow_consumer", evicted);
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

impl Drop for Membership {
    fn drop(&mut self) {
        self.hub.lock().by_id.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(queue_size: usize) -> Arc<Hub> {
        Hub::new(queue_size, Arc::new(Metrics::new()))
    }

    #[tokio::test]
    async fn every_member_gets_every_frame_in_order() {
        let hub = hub(8);
        let mut a = hub.join();
        let mut b = hub.join();
        assert_eq!(hub.broadcast(Message::text("1")), 2);
        assert_eq!(hub.broadcast(Message::text("2")), 2);
        for member in [&mut a, &mut b] {
            assert_eq!(member.queue.recv().await.unwrap(), Message::text("1"));
            assert_eq!(member.queue.recv().await.unwrap(), Message::text("2"));
        }
    }

    #[tokio::test]
    async fn a_full_queue_evicts_only_that_member() {
        let hub = hub(2);
        let mut slow = hub.join();
        let mut fast = hub.join();
        for n in 0..5 {
            hub.broadcast(Message::text(n.to_string()));
            fast.queue.recv().await.unwrap();
        }
        assert!(
            (&mut slow.evicted).await.is_ok(),
            "the slow member is told it was evicted"
        );
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
