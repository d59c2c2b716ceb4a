//! Where a published message goes: straight to this process's hub, or into a relay (the Redis
//! backplane) that carries it to the hub of every task; and what a relay hears from the hub.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{ChannelName, Hub, Offset};

/// A message on its way to a channel's subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// The channel it was published on.
    pub channel: ChannelName,
    /// The publisher's JSON, validated, as written.
    pub data: Box<str>,
}

/// What a relay hears from the hub, in the order it happened.
#[derive(Debug)]
pub enum Interest {
    /// A subscriber is waiting to go live on the channel: answer once the relay delivers the
    /// channel's messages from every task (or cannot now, and will once it reconnects).
    Wanted(ChannelName, oneshot::Sender<()>),
    /// The channel's last subscriber in this process left.
    Released(ChannelName),
}

/// Where a client's valid message goes.
#[derive(Debug, Clone)]
pub enum Fanout {
    /// Straight to this process's clients.
    Local(Arc<Hub>),
    /// Into a relay's bounded queue (the Redis backplane), which hands it to the hub of every
    /// task, this one's included.
    Relay(mpsc::Sender<Publication>),
}

impl Fanout {
    /// Publishes one message. Waits only when the relay's queue is full.
    ///
    /// The message is handed over before the future is returned, so that a reader waiting on it
    /// holds no copy: every connection's task is allocated for its largest state, this one
    /// included. For the same reason the relay send, several times an idle connection's state, is
    /// boxed.
    pub fn publish(&self, publication: Publication) -> impl Future<Output = ()> + Send + '_ {
        let relayed = match self {
            Fanout::Local(hub) => {
                hub.publish(&publication.channel, &publication.data);
                None
            }
            Fanout::Relay(queue) => Some(Box::pin(queue.send(publication))),
        };
        async move {
            if let Some(relayed) = relayed {
                // The relay outlives every connection; if it is gone the process is ending.
                let _ = relayed.await;
            }
        }
    }

    /// Publishes one message and returns its offset when it is known here: from this process's
    /// history, without a relay. (Not [`publish`](Self::publish), whose future every idle
    /// connection's task has room for: an offset would make that room larger.)
    pub async fn publish_for_offset(&self, publication: Publication) -> Option<Offset> {
        match self {
            Fanout::Local(hub) => hub.publish(&publication.channel, &publication.data),
            Fanout::Relay(queue) => {
                // As in `publish`.
                let _ = queue.send(publication).await;
                None
            }
        }
    }
}
