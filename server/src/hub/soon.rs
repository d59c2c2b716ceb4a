//! A `/wss` client's burst of messages, published under one hold of the hub's lock.
//!
//! Published one by one, the messages of the clients that two worker threads serve took turns at
//! the hub's lock message by message, and every turn moved each recipient's outbox between the
//! cores' caches, where the claims one thread copies frames into without a lock
//! ([`outbox`](crate::outbox)) were closed by the other's frames at every message. A message read
//! within a [`Batching`](crate::outbox::Batching) poll waits in its thread's list instead, and the
//! list is published in order, under one hold, when the poll ends, when it holds
//! [`MOST_WAITING`] messages, or when the thread takes the hub's lock for anything else, so that
//! whatever the thread does with the hub keeps its order.

use std::cell::RefCell;
use std::sync::Arc;

use super::{Hub, Publication, State};
use crate::outbox::{self, BatchScope};

thread_local! {
    /// Messages published on this thread and not yet delivered, each with its hub.
    static WAITING: RefCell<Vec<(Arc<Hub>, Publication)>> = const { RefCell::new(Vec::new()) };
}

/// Messages a thread lets wait at most: every idle recipient still gets them in one write.
const MOST_WAITING: usize = 32;

/// Deliveries (messages times their channel's subscribers) one hold of the lock makes at most
/// before other threads get a turn: a few dozen microseconds, as one message to 2,000 clients
/// holds it anyway, so that a burst to a crowded channel does not hold up everyone else's
/// publishes and subscribes.
const DELIVERIES_PER_HOLD: usize = 2_048;

impl Hub {
    /// Publishes `publication` before this thread's batch scope ends (at once outside one), for
    /// a publisher that takes no answer.
    pub fn publish_soon(self: &Arc<Self>, publication: Publication) {
        if !outbox::in_batch_scope() {
            self.publish(&publication.channel, &publication.data);
            return;
        }
        let full = WAITING.with_borrow_mut(|waiting| {
            waiting.push((Arc::clone(self), publication));
            waiting.len() >= MOST_WAITING
        });
        outbox::before_scope_ends(deliver_waiting);
        if full {
            deliver_waiting();
        }
    }

    /// Delivers, in order, the messages this thread let wait for this hub, under the lock `state`
    /// is from, until they make `deliveries` deliveries; returns how many it delivered.
    pub(super) fn deliver_waiting_under(&self, state: &mut State, deliveries: usize) -> usize {
        let mut budget = deliveries;
        let mine: Vec<(Arc<Hub>, Publication)> = WAITING.with_borrow_mut(|waiting| {
            if waiting.is_empty() {
                return Vec::new();
            }
            waiting
                .extract_if(.., |(hub, publication)| {
                    // Another hub's stay where they are (tests run several in one thread).
                    if budget == 0 || !std::ptr::eq(&**hub, self) {
                        return false;
                    }
                    let subscribers = state
                        .channels
                        .get(&publication.channel)
                        .map_or(0, |channel| channel.members.len());
                    budget = budget.saturating_sub(subscribers.max(1));
                    true
                })
                .collect()
        });
        for (_, publication) in &mine {
            self.publish_under(state, &publication.channel, &publication.data);
        }
        mine.len()
    }
}

/// Delivers every message this thread let wait, hub by hub, [`DELIVERIES_PER_HOLD`] per hold of
/// a hub's lock: at the end of the poll, or before a connection of the thread closes.
pub fn deliver_waiting() {
    while let Some(hub) =
        WAITING.with_borrow(|waiting| waiting.first().map(|(hub, _)| Arc::clone(hub)))
    {
        let delivered = hub.deliver_waiting_under(&mut hub.lock_alone(), DELIVERIES_PER_HOLD);
        // After the lock, as a publish's scope ends, and counted as that many publishes.
        drop(BatchScope::enter_for(delivered));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use futures_util::FutureExt;

    use super::*;
    use crate::frame::Frame;
    use crate::hub::{ChannelName, Form, HistoryLimits, Subscriber};
    use crate::metrics::Metrics;
    use crate::outbox::{Batching, QueueLimits};

    fn hub() -> Arc<Hub> {
        let limits = QueueLimits {
            frames: 64,
            bytes: 1 << 20,
        };
        Hub::new(limits, HistoryLimits::OFF, Arc::new(Metrics::new()))
    }

    fn on_broadcast(hub: &Arc<Hub>) -> Subscriber {
        let mut subscriber = hub.subscriber(Form::Wss);
        subscriber.join_now(ChannelName::broadcast());
        subscriber
    }

    fn message(n: usize) -> Publication {
        Publication {
            channel: ChannelName::broadcast(),
            data: n.to_string().into(),
        }
    }

    fn envelope(n: usize) -> Frame {
        Frame::text(format!(r#"{{"message":{n}}}"#))
    }

    /// What the subscriber's writer would take now.
    fn queued(subscriber: &Subscriber) -> VecDeque<Frame> {
        let mut batch = VecDeque::new();
        let _ = subscriber.outbox.take_all(&mut batch).now_or_never();
        batch
    }

    #[tokio::test]
    async fn in_a_poll_messages_wait_for_its_end_and_arrive_in_order() {
        let hub = hub();
        let subscriber = on_broadcast(&hub);
        Batching::new(async {
            hub.publish_soon(message(1));
            hub.publish_soon(message(2));
            assert!(queued(&subscriber).is_empty(), "not before the poll ends");
        })
        .await;
        assert_eq!(queued(&subscriber), [envelope(1), envelope(2)]);
    }

    #[tokio::test]
    async fn outside_a_poll_a_message_is_delivered_at_once() {
        let hub = hub();
        let subscriber = on_broadcast(&hub);
        hub.publish_soon(message(1));
        assert_eq!(queued(&subscriber), [envelope(1)]);
    }

    #[tokio::test]
    async fn what_the_thread_does_next_with_the_hub_comes_after_them() {
        let hub = hub();
        let subscriber = on_broadcast(&hub);
        Batching::new(async {
            hub.publish_soon(message(1));
            hub.publish(&ChannelName::broadcast(), "2");
            assert_eq!(queued(&subscriber), [envelope(1), envelope(2)]);
            hub.publish_soon(message(3));
            assert_eq!(hub.subscribers(crate::hub::channel::BROADCAST), 1);
            assert_eq!(queued(&subscriber), [envelope(3)], "delivered by the look");
        })
        .await;
    }

    #[tokio::test]
    async fn a_full_list_is_delivered_without_waiting_for_the_poll_to_end() {
        let hub = hub();
        let subscriber = on_broadcast(&hub);
        Batching::new(async {
            for n in 0..MOST_WAITING {
                hub.publish_soon(message(n));
            }
            assert_eq!(
                queued(&subscriber),
                (0..MOST_WAITING).map(envelope).collect::<VecDeque<_>>()
            );
        })
        .await;
    }

    #[tokio::test]
    async fn one_hold_makes_about_its_share_of_deliveries_and_leaves_the_rest_in_order() {
        let hub = hub();
        let subscribers = [on_broadcast(&hub), on_broadcast(&hub)];
        Batching::new(async {
            for n in 0..3 {
                hub.publish_soon(message(n));
            }
            // Two subscribers: the first message takes 2 of 3, the second the last one.
            assert_eq!(hub.deliver_waiting_under(&mut hub.lock_alone(), 3), 2);
            for subscriber in &subscribers {
                assert_eq!(queued(subscriber), [envelope(0), envelope(1)]);
            }
        })
        .await;
        for subscriber in &subscribers {
            assert_eq!(queued(subscriber), [envelope(2)]);
        }
    }
}
