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
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use tokio::sync::Notify;

use crate::frame::Frame;

/// The queue between whoever produces a connection's frames and its writer.
///
/// Every connection has one for its whole life, so it holds nothing it can do without: its limits
/// are the owner's (the hub's, or the connection's), and only an outbox built for backpressure has
/// the second notifier.
#[derive(Debug, Default)]
pub struct Outbox {
    state: Mutex<State>,
    /// Wakes the writer: frames arrived in an empty outbox, or it was evicted. One waker, the
    /// writer's, kept here: a waiting writer holds no waiter node of its own in its task, which
    /// every connection has for its whole life.
    ready: AtomicWaker,
    /// Wakes a producer waiting in `push_when_room`: the writer took the queued frames.
    room: Option<Box<Notify>>,
}

/// How much one outbox may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Frames.
    pub frames: usize,
    /// Payload bytes, at most `u32::MAX`. An empty outbox takes one frame of any size, so nothing
    /// can be stuck.
    pub bytes: u32,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Frame>,
    /// Payload bytes queued; a u32 beside `evicted` costs no space.
    bytes: u32,
    /// Control frames queued (pongs); a u16 in the same padding.
    control: u16,
    evicted: bool,
}

impl State {
    fn has_room_for(&self, limits: &QueueLimits, bytes: u32) -> bool {
        self.frames.is_empty()
            || (self.frames.len() < limits.frames
                && self.bytes.saturating_add(bytes) <= limits.bytes)
    }

    fn append(&mut self, frame: Frame, bytes: u32) -> bool {
        let was_empty = self.frames.is_empty();
        self.frames.push_back(frame);
        self.bytes = self.bytes.saturating_add(bytes);
        was_empty
    }
}

/// A frame's payload bytes, as counted against `QueueLimits::bytes` (a control frame's are at most
/// 125; a message is at most `MAX_MESSAGE_SIZE`, 64 MiB).
fn payload_bytes(frame: &Frame) -> u32 {
    u32::try_from(frame.payload().len()).unwrap_or(u32::MAX)
}

/// Control frames (pongs) an outbox holds at most. A client that pings faster than it reads would
/// otherwise grow its queue of pongs for as long as the rate limit lets it ping; past this, the
/// newest pong takes the place of the last one queued, which RFC 6455 (5.5.3) allows: a pong may
/// answer only the most recent ping.
pub const MAX_QUEUED_CONTROL_FRAMES: u16 = 32;

/// Frames' worth of room an idle connection's queues keep (16 bytes a frame), so that the next
/// few frames need no allocation.
pub const IDLE_ROOM: usize = 64;

/// The outbox was full once, so its client was let go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evicted;

impl Outbox {
    /// An empty outbox for [`Outbox::push`], which evicts when full.
    pub fn new() -> Outbox {
        Outbox::default()
    }

    /// An empty outbox whose producer may also wait for room ([`Outbox::push_when_room`]).
    pub fn with_backpressure() -> Outbox {
        Outbox {
            room: Some(Box::new(Notify::new())),
            ..Outbox::new()
        }
    }

    /// Whether `frames` more frames of `bytes` payload bytes in all fit beside what is queued.
    pub fn has_room(&self, frames: usize, bytes: usize, limits: &QueueLimits) -> bool {
        let state = self.lock();
        state.frames.len() + frames <= limits.frames
            && state.bytes as usize + bytes <= limits.bytes as usize
    }

    /// Queues `frame` if it fits in `limits`. A full outbox is evicted instead, and stays so: `Err`
    /// from then on.
    pub fn push(&self, frame: Frame, limits: &QueueLimits) -> Result<(), Evicted> {
        let bytes = payload_bytes(&frame);
        let mut state = self.lock();
        if state.evicted {
            return Err(Evicted);
        }
        if !state.has_room_for(limits, bytes) {
            state.evicted = true;
            drop(state);
            self.ready.wake();
            return Err(Evicted);
        }
        let was_empty = state.append(frame, bytes);
        drop(state);
        // A writer with frames in hand is not waiting; only the first frame needs to wake it.
        if was_empty {
            self.ready.wake();
        }
        Ok(())
    }

    /// Queues a control frame (a pong), which no data limit holds back; at
    /// [`MAX_QUEUED_CONTROL_FRAMES`] it replaces the last one queued instead.
    pub fn push_control(&self, frame: Frame) -> Result<(), Evicted> {
        let mut state = self.lock();
        if state.evicted {
            return Err(Evicted);
        }
        if state.control >= MAX_QUEUED_CONTROL_FRAMES {
            if let Some(last) = state
                .frames
                .iter_mut()
                .rev()
                .find(|queued| !queued.is_data())
            {
                *last = frame;
            }
            return Ok(());
        }
        state.control += 1;
        let was_empty = state.append(frame, 0);
        drop(state);
        if was_empty {
            self.ready.wake();
        }
        Ok(())
    }

    /// Queues `frame` if it fits in `limits` now; hands it back if not.
    pub fn try_push(&self, frame: Frame, limits: &QueueLimits) -> Result<(), Frame> {
        let bytes = payload_bytes(&frame);
        let mut state = self.lock();
        if !state.has_room_for(limits, bytes) {
            return Err(frame);
        }
        let was_empty = state.append(frame, bytes);
        drop(state);
        if was_empty {
            self.ready.wake();
        }
        Ok(())
    }

    /// Queues `frame` once there is room for it in `limits`, however long that takes.
    ///
    /// # Panics
    /// On an outbox not made [`Outbox::with_backpressure`]: nothing would ever wake the wait.
    pub async fn push_when_room(&self, mut frame: Frame, limits: &QueueLimits) {
        let room = self
            .room
            .as_deref()
            .expect("push_when_room needs an outbox made with_backpressure");
        loop {
            frame = match self.try_push(frame, limits) {
                Ok(()) => return,
                Err(frame) => frame,
            };
            // `notify_one` keeps a permit when nobody waits, so a batch taken between the failed
            // push and this wait is not missed.
            room.notified().await;
        }
    }

    /// Waits until there are frames and moves all of them into `batch` (expected empty), in order.
    ///
    /// The outbox and its writer trade queues: the writer's emptied batch becomes the outbox's
    /// queue. So the room a burst grew stays with the connection while it is busy (regrowing it
    /// at every batch was about 8 % of the server's CPU at full-speed broadcast, in reallocations
    /// and the page faults of the memory they took), and both queues let it go as soon as there
    /// is nothing to take: an idle connection keeps at most [`IDLE_ROOM`] frames' worth.
    ///
    /// Only the connection's writer may wait here or in [`Outbox::evicted`]: the outbox keeps one
    /// waker, and a second task waiting would take the writer's wake-ups.
    pub fn take_all<'a>(
        &'a self,
        batch: &'a mut VecDeque<Frame>,
    ) -> impl Future<Output = Result<(), Evicted>> + 'a {
        std::future::poll_fn(move |cx| self.poll_take_all(cx, batch))
    }

    fn poll_take_all(
        &self,
        cx: &mut Context<'_>,
        batch: &mut VecDeque<Frame>,
    ) -> Poll<Result<(), Evicted>> {
        // Swapped in, frames left in the batch would be queued again and sent twice.
        debug_assert!(batch.is_empty(), "take_all with frames still in the batch");
        // Registered before looking: a push after the look finds the outbox empty and wakes it.
        self.ready.register(cx.waker());
        let mut state = self.lock();
        if state.evicted {
            return Poll::Ready(Err(Evicted));
        }
        if !state.frames.is_empty() {
            std::mem::swap(&mut state.frames, batch);
            state.bytes = 0;
            state.control = 0;
            drop(state);
            if let Some(room) = &self.room {
                room.notify_one();
            }
            return Poll::Ready(Ok(()));
        }
        if state.frames.capacity() > IDLE_ROOM {
            state.frames = VecDeque::new();
        }
        drop(state);
        if batch.capacity() > IDLE_ROOM {
            *batch = VecDeque::new();
        }
        Poll::Pending
    }

    /// Completes once the outbox is evicted.
    pub async fn evicted(&self) {
        std::future::poll_fn(|cx| {
            self.ready.register(cx.waker());
            if self.lock().evicted {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
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
    const ONE_FRAME: QueueLimits = QueueLimits { frames: 1, ..ROOMY };
    const TEN_BYTES: QueueLimits = QueueLimits {
        frames: 100,
        bytes: 10,
    };

    #[tokio::test]
    async fn hands_over_everything_queued_in_order() {
        let outbox = Outbox::new();
        outbox.push(Frame::text("1"), &ROOMY).unwrap();
        outbox.push(Frame::text("2"), &ROOMY).unwrap();
        let mut batch = VecDeque::new();
        outbox.take_all(&mut batch).await.unwrap();
        assert_eq!(batch, [Frame::text("1"), Frame::text("2")]);
    }

    #[tokio::test]
    async fn a_push_into_a_full_outbox_evicts_it_for_good() {
        let outbox = Outbox::new();
        outbox.push(Frame::text("1"), &ONE_FRAME).unwrap();
        assert_eq!(outbox.push(Frame::text("2"), &ONE_FRAME), Err(Evicted));
        outbox.evicted().await;
        assert_eq!(outbox.take_all(&mut VecDeque::new()).await, Err(Evicted));
        assert_eq!(outbox.push(Frame::text("3"), &ONE_FRAME), Err(Evicted));
    }

    #[tokio::test]
    async fn bytes_bound_the_queue_but_an_empty_one_takes_any_frame() {
        let outbox = Outbox::new();
        outbox
            .push(Frame::text("x".repeat(25)), &TEN_BYTES)
            .unwrap();
        assert_eq!(outbox.push(Frame::text("y"), &TEN_BYTES), Err(Evicted));

        let outbox = Outbox::new();
        outbox.push(Frame::text("123456"), &TEN_BYTES).unwrap();
        outbox.push(Frame::text("7890"), &TEN_BYTES).unwrap();
        assert!(outbox.try_push(Frame::text("!"), &TEN_BYTES).is_err());
        outbox.take_all(&mut VecDeque::new()).await.unwrap();
        assert!(outbox.try_push(Frame::text("!"), &TEN_BYTES).is_ok());
    }

    #[tokio::test]
    async fn control_frames_pass_data_limits_and_the_newest_replaces_the_last_past_theirs() {
        let outbox = Outbox::new();
        outbox.push(Frame::text("1"), &ONE_FRAME).unwrap();
        let pong = |n: u16| Frame::pong(&n.to_be_bytes());
        for n in 0..MAX_QUEUED_CONTROL_FRAMES + 10 {
            outbox.push_control(pong(n)).unwrap();
        }
        let mut batch = VecDeque::new();
        outbox.take_all(&mut batch).await.unwrap();
        assert_eq!(batch.len(), 1 + usize::from(MAX_QUEUED_CONTROL_FRAMES));
        assert_eq!(batch[0], Frame::text("1"));
        assert_eq!(batch[batch.len() - 2], pong(MAX_QUEUED_CONTROL_FRAMES - 2));
        assert_eq!(
            batch[batch.len() - 1],
            pong(MAX_QUEUED_CONTROL_FRAMES + 9),
            "the newest last"
        );
        // Taken: room again.
        outbox.push_control(pong(1)).unwrap();
        batch.clear();
        outbox.take_all(&mut batch).await.unwrap();
        assert_eq!(batch, [pong(1)]);
    }

    #[tokio::test]
    async fn push_when_room_waits_for_the_writer() {
        let outbox = Arc::new(Outbox::with_backpressure());
        outbox.push(Frame::text("1"), &ONE_FRAME).unwrap();
        let producer = tokio::spawn({
            let outbox = Arc::clone(&outbox);
            async move { outbox.push_when_room(Frame::text("2"), &ONE_FRAME).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!producer.is_finished(), "waits while the outbox is full");
        let mut batch = VecDeque::new();
        outbox.take_all(&mut batch).await.unwrap();
        assert_eq!(batch, [Frame::text("1")]);
        producer.await.unwrap();
        batch.clear();
        outbox.take_all(&mut batch).await.unwrap();
        assert_eq!(batch, [Frame::text("2")]);
    }

    #[test]
    fn the_room_a_burst_grew_stays_while_busy_and_goes_when_idle() {
        use futures_util::FutureExt;
        let limits = QueueLimits {
            frames: 10_000,
            bytes: u32::MAX,
        };
        let outbox = Outbox::new();
        let mut batch = VecDeque::new();
        let burst = |outbox: &Outbox| {
            for _ in 0..1_000 {
                outbox.push(Frame::text("x"), &limits).unwrap();
            }
        };
        burst(&outbox);
        assert!(outbox.take_all(&mut batch).now_or_never().unwrap().is_ok());
        batch.clear();
        // Busy: the next burst is queued before the writer comes back; the queues trade places
        // and keep their room.
        burst(&outbox);
        assert!(outbox.take_all(&mut batch).now_or_never().unwrap().is_ok());
        assert!(outbox.lock().frames.capacity() >= 1_000);
        batch.clear();
        assert!(batch.capacity() >= 1_000);
        // Idle: nothing to take, and both let their room go.
        assert!(outbox.take_all(&mut batch).now_or_never().is_none());
        assert_eq!(batch.capacity(), 0);
        assert_eq!(outbox.lock().frames.capacity(), 0);
    }

    #[tokio::test]
    async fn a_waiting_writer_wakes_for_the_first_frame() {
        let outbox = Arc::new(Outbox::new());
        let writer = tokio::spawn({
            let outbox = Arc::clone(&outbox);
            async move {
                let mut batch = VecDeque::new();
                outbox.take_all(&mut batch).await.map(|()| batch.len())
            }
        });
        tokio::task::yield_now().await;
        outbox.push(Frame::text("1"), &ROOMY).unwrap();
        assert_eq!(writer.await.unwrap(), Ok(1));
    }
}
