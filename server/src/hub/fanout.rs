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

/// A message in a relay's queue, and where to answer its offset once the relay has published it
/// (for `POST /v1/publish`; a WebSocket publish asks for none).
#[derive(Debug)]
pub struct Relayed {
    /// The message.
    pub publication: Publication,
    /// Told the message's offset, or `None` when it got none (history off, or Redis unreachable).
    pub answer: Option<oneshot::Sender<Option<Offset>>>,
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
    Relay(mpsc::Sender<Relayed>),
}

impl Fanout {
    /// Publishes one message. Waits only when the relay's queue is full.
    ///
    /// The message is handed over before the future is returned, so that a reader waiting on it
    /// holds no copy: every connection's task is allocated for its largest state, this one
    /// included. For the same reason the relay send, several times an idle connection's state, is
    /// boxed.
    pub fn publish(&self, publication: Publication) -> impl Future<Output = ()> + Send + '_ {
        self.hand_over(publication, |hub, publication| {
            hub.publish(&publication.channel, &publication.data);
        })
    }

    /// Publishes one message, which this process's hub may deliver a little later: with the
    /// messages published around it, before this thread's batch scope ends (see
    /// [`Hub::publish_soon`]). For a publisher that takes no answer and is told nothing of it.
    pub fn publish_soon(&self, publication: Publication) -> impl Future<Output = ()> + Send + '_ {
        self.hand_over(publication, Hub::publish_soon)
    }

    fn hand_over(
        &self,
        publication: Publication,
        local: fn(&Arc<Hub>, Publication),
    ) -> impl Future<Output = ()> + Send + '_ {
        let relayed = match self {
            Fanout::Local(hub) => {
                local(hub, publication);
                None
            }
            Fanout::Relay(queue) => Some(Box::pin(queue.send(Relayed {
                publication,
                answer: None,
            }))),
        };
        async move {
            if let Some(relayed) = relayed {
                // The relay outlives every connection; if it is gone the process is ending.
                let _ = relayed.await;
            }
        }
    }

    /// Publishes messages in order and returns each one's offset, in the same order (`None` for
    /// one that got none). (Not [`publish`](Self::publish), whose future every idle connection's
    /// task has room for: an offset would make that room larger.)
    pub async fn publish_for_offsets(&self, publications: Vec<Publication>) -> Vec<Option<Offset>> {
        match self {
            Fanout::Local(hub) => publications
                .iter()
                .map(|publication| hub.publish(&publication.channel, &publication.data))
                .collect(),
            Fanout::Relay(queue) => {
                // All handed over first, so they travel in one batch; then the answers.
                let mut answers = Vec::with_capacity(publications.len());
                for publication in publications {
                    let (answer, offset) = oneshot::channel();
                    let relayed = Relayed {
                        publication,
                        answer: Some(answer),
                    };
                    // As in `publish`: the relay outlives every publisher.
                    let _ = queue.send(relayed).await;
                    answers.push(offset);
                }
                let mut offsets = Vec::with_capacity(answers.len());
                for offset in answers {
                    offsets.push(offset.await.ok().flatten());
                }
                offsets
            }
        }
    }
}
