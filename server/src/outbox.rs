//! A connection's queue of frames to write: bounded, allocation-free while empty (an idle
//! connection costs a few dozen bytes here), and drained a whole batch at a time, so the writer
//! takes the lock once per batch and flushes once. A push into a full outbox does not wait: it
//! marks the outbox evicted, which is how a slow client is cut off without slowing the sender.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

/// The queue between whoever produces a connection's frames and its writer.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    /// Wakes the writer: frames arrived in an empty outbox, or it was evicted.
    ready: Notify,
    capacity: usize,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Message>,
    evicted: bool,
}

/// The outbox was full once, so its client was let go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evicted;

impl Outbox {
    /// An empty outbox that holds up to `capacity` frames.
    pub fn new(capacity: usize) -> Outbox {
        Outbox {
            state: Mutex::default(),
            ready: Notify::new(),
            capacity,
        }
    }

    /// Queues `frame`. A full outbox is evicted instead, and stays so: `Err` from then on.
    pub fn push(&self, frame: Message) -> Result<(), Evicted> {
        let mut state = self.lock();
        if state.evicted {
            return Err(Evicted);
        }
        if state.frames.len() >= self.capacity {
            state.evicted = true;
            drop(state);
            self.ready.notify_one();
            return Err(Evicted);
        }
        let was_empty = state.frames.is_empty();
        state.frames.push_back(frame);
        drop(state);
        // A writer with frames in hand is not waiting; only the first frame needs to wake it.
        if was_empty {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// Waits until there are frames and moves all of them into `batch` (expected empty), in order.
    pub async fn take_all(&self, batch: &mut VecDeque<Message>) -> Result<(), Evicted> {
        loop {
            {
                let mut state = self.lock();
                if state.evicted {
                    return Err(Evicted);
                }
                if !state.frames.is_empty() {
                    std::mem::swap(&mut state.frames, batch);
                    return Ok(());
                }
            }
            self.ready.notified().await;
        }
    }

    /// Completes once the outbox is evicted.
    pub async fn evicted(&self) {
        while !self.lock().evicted {
            self.ready.notified().await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hands_over_everything_queued_in_order() {
        let outbox = Outbox::new(4);
        outbox.push(Message::text("1")).unwrap();
        outbox.push(Message::text("2")).unwrap();
        let mut batch = VecDeque::new();
        outbox.take_all(&mut batch).await.unwrap();
        assert_eq!(batch, [Message::text("1"), Message::text("2")]);
    }

    #[tokio::test]
    async fn a_push_into_a_full_outbox_evicts_it_for_good() {
        let outbox = Outbox::new(1);
        outbox.push(Message::text("1")).unwrap();
        assert_eq!(outbox.push(Message::text("2")), Err(Evicted));
        outbox.evicted().await;
        assert_eq!(outbox.take_all(&mut VecDeque::new()).await, Err(Evicted));
        assert_eq!(outbox.push(Message::text("3")), Err(Evicted));
    }

    #[tokio::test]
    async fn a_waiting_writer_wakes_for_the_first_frame() {
        let outbox = std::sync::Arc::new(Outbox::new(4));
        let writer = tokio::spawn({
            let outbox = std::sync::Arc::clone(&outbox);
            async move {
                let mut batch = VecDeque::new();
                outbox.take_all(&mut batch).await.map(|()| batch.len())
            }
        });
        tokio::task::yield_now().await;
        outbox.push(Message::text("1")).unwrap();
        assert_eq!(writer.await.unwrap(), Ok(1));
    }
}
