//! A connection's queue of frames to write: bounded in frames and in payload bytes, allocation-free
//! while empty (an idle connection costs a few dozen bytes here), and drained a whole batch at a
//! time, so the writer takes the lock once per batch and flushes once.
//!
//! Two ways in. [`Outbox::push`] never waits: a push into a full outbox marks it evicted, which is
//! how a slow client is cut off without slowing the sender (broadcasts). [`Outbox::push_when_room`]
//! waits for room instead, which is backpressure for a client that is both the producer and the
//! consumer of its queue (echo): it is simply not read from until it reads.
//!
//! The byte bound is what makes the memory a client can pin predictable: a count alone lets 1,024
//! queued 64 KiB frames hold 64 MiB for one client that never reads.

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
    /// Wakes a producer waiting in `push_when_room`: the writer took the queued frames.
    room: Notify,
    limits: QueueLimits,
}

/// How much one outbox may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Frames.
    pub frames: usize,
    /// Payload bytes. An empty outbox takes one frame of any size, so nothing can be stuck.
    pub bytes: usize,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Message>,
    bytes: usize,
    evicted: bool,
}

impl State {
    fn has_room_for(&self, limits: &QueueLimits, bytes: usize) -> bool {
        self.frames.is_empty()
            || (self.frames.len() < limits.frames && self.bytes + bytes <= limits.bytes)
    }

    fn append(&mut self, frame: Message, bytes: usize) -> bool {
        let was_empty = self.frames.is_empty();
        self.frames.push_back(frame);
        self.bytes += bytes;
        was_empty
    }
}

/// The outbox was full once, so its client was let go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evicted;

impl Outbox {
    /// An empty outbox that holds up to `limits`.
    pub fn new(limits: QueueLimits) -> Outbox {
        Outbox {
            state: Mutex::default(),
            ready: Notify::new(),
            room: Notify::new(),
            limits,
        }
    }

    /// Queues `frame`. A full outbox is evicted instead, and stays so: `Err` from then on.
    pub fn push(&self, frame: Message) -> Result<(), Evicted> {
        // Payload bytes; a control frame's are at most 125.
        let bytes = frame.len();
        let mut state = self.lock();
        if state.evicted {
            return Err(Evicted);
        }
        if !state.has_room_for(&self.limits, bytes) {
            state.evicted = true;
            drop(state);
            self.ready.notify_one();
            return Err(Evicted);
        }
        let was_empty = state.append(frame, bytes);
        drop(state);
        // A writer with frames in hand is not waiting; only the first frame needs to wake it.
        if was_empty {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// Queues `frame` if it fits now; hands it back if not.
    pub fn try_push(&self, frame: Message) -> Result<(), Message> {
        let bytes = frame.len();
        let mut state = self.lock();
        if !state.has_room_for(&self.limits, bytes) {
            return Err(frame);
        }
        let was_empty = state.append(frame, bytes);
        drop(state);
        if was_empty {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// Queues `frame` once there is room for it, however long that takes.
    pub async fn push_when_room(&self, mut frame: Message) {
        loop {
            frame = match self.try_push(frame) {
                Ok(()) => return,
                Err(frame) => frame,
            };
            // `notify_one` keeps a permit when nobody waits, so a batch taken between the failed
            // push and this wait is not missed.
            self.room.notified().await;
        }
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
                    state.bytes = 0;
                    drop(state);
                    self.room.notify_one();
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
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    const ROOMY: QueueLimits = QueueLimits {
        frames: 4,
        bytes: 1 << 20,
    };

    #[tokio::test]
    async fn hands_over_everything_queued_in_order() {
        let outbox = Outbox::new(ROOMY);
        outbox.push(Message::text("1")).unwrap();
        outbox.push(Message::text("2")).unwrap();
        let mut batch = VecDeque::new();
        outbox.take_all(&mut batch).await.unwrap();
        assert_eq!(batch, [Message::text("1"), Message::text("2")]);
    }

    #[tokio::test]
    async fn a_push_into_a_full_outbox_evicts_it_for_good() {
        let outbox = Outbox::new(QueueLimits { frames: 1, ..ROOMY });
        outbox.push(Message::text("1")).unwrap();
        assert_eq!(outbox.push(Message::text("2")), Err(Evicted));
        outbox.evicted().await;
        assert_eq!(outbox.take_all(&mut VecDeque::new()).await, Err(Evicted));
        assert_eq!(outbox.push(Message::text("3")), Err(Evicted));
    }

    #[tokio::test]
    async fn bytes_bound_the_queue_but_an_empty_one_takes_any_frame() {
        let outbox = Outbox::new(QueueLimits {
            frames: 100,
            bytes: 10,
        });
        outbox.push(Message::text("x".repeat(25))).unwrap();
        assert_eq!(outbox.push(Message::text("y")), Err(Evicted));

        let outbox = Outbox::new(QueueLimits {
            frames: 100,
            bytes: 10,
        });
        outbox.push(Message::text("123456")).unwrap();
        outbox.push(Message::text("7890")).unwrap();
        assert!(outbox.try_push(Message::text("!")).is_err());
        outbox.take_all(&mut VecDeque::new()).await.unwrap();
        assert!(outbox.try_push(Message::text("!")).is_ok());
    }

    #[tokio::test]
    async fn push_when_room_waits_for_the_writer() {
        let outbox = Arc::new(Outbox::new(QueueLimits { frames: 1, ..ROOMY }));
        outbox.push(Message::text("1")).unwrap();
        let producer = tokio::spawn({
            let outbox = Arc::clone(&outbox);
            async move { outbox.push_when_room(Message::text("2")).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!producer.is_finished(), "waits while the outbox is full");
        let mut batch = VecDeque::new();
        outbox.take_all(&mut batch).await.unwrap();
        assert_eq!(batch, [Message::text("1")]);
        producer.await.unwrap();
        batch.clear();
        outbox.take_all(&mut batch).await.unwrap();
        assert_eq!(batch, [Message::text("2")]);
    }

    #[tokio::test]
    async fn a_waiting_writer_wakes_for_the_first_frame() {
        let outbox = Arc::new(Outbox::new(ROOMY));
        let writer = tokio::spawn({
            let outbox = Arc::clone(&outbox);
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
