//! The connection's TCP socket, split into halves that share no lock.
//!
//! The writer owns the writing half and writes frames the hub encoded once, many per `writev`. The
//! reader's WebSocket layer (tungstenite, which checks every frame a client sends against RFC 6455)
//! owns the reading half; the frames it must send itself, a pong for each ping, go to the
//! connection's outbox like any other, for the writer to send in order. Splitting the WebSocket
//! stream instead would put a lock between the halves that every frame read or written passes
//! (about 8 % of the server's CPU at full-speed broadcast), and would frame every message again
//! in every connection.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::frame::Frame;
use crate::limits::FrameMetered;
use crate::outbox::Outbox;

/// The reading side of a connection: tungstenite over the metered reading half.
pub type WebSocket = tungstenite::WebSocket<Polled>;

/// The metered reading half behind tungstenite's `Read` and `Write`, which it calls from inside
/// the connection task's poll: a read that would wait registers the task's waker and says
/// `WouldBlock`. (tokio-tungstenite's adapter does the same with two `Arc`s of wakers per
/// connection, for a stream whose reads and writes may come from different tasks; here both come
/// from the one task that owns the reading half, and 128 bytes per idle connection are saved.)
pub struct Polled {
    socket: FrameMetered<ReadSide>,
    waker: Waker,
    /// tungstenite failed: its state is not to be read from again (a frame over the size limit is
    /// left half read), so the stream has ended.
    failed: bool,
}

impl Polled {
    /// `socket`, to be polled through [`poll_message`].
    pub fn new(socket: FrameMetered<ReadSide>) -> Polled {
        Polled {
            socket,
            waker: Waker::noop().clone(),
            failed: false,
        }
    }

    /// The reading half.
    pub fn get_mut(&mut self) -> &mut ReadSide {
        self.socket.get_mut()
    }

    fn poll<T>(
        &mut self,
        operation: impl FnOnce(
            Pin<&mut FrameMetered<ReadSide>>,
            &mut Context<'_>,
        ) -> Poll<io::Result<T>>,
    ) -> io::Result<T> {
        match operation(
            Pin::new(&mut self.socket),
            &mut Context::from_waker(&self.waker),
        ) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl io::Read for Polled {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.poll(|socket, cx| {
            let mut buf = ReadBuf::new(buf);
            socket
                .poll_read(cx, &mut buf)
                .map_ok(|()| buf.filled().len())
        })
    }
}

impl io::Write for Polled {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.poll(|socket, cx| socket.poll_write(cx, buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.poll(|socket, cx| socket.poll_flush(cx))
    }
}

/// The client's next message, as a stream of them would give it: `None` once the connection is
/// closed, or after an error.
pub fn poll_message(
    websocket: &mut WebSocket,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Message, tungstenite::Error>>> {
    let polled = websocket.get_mut();
    if polled.failed {
        return Poll::Ready(None);
    }
    polled.waker.clone_from(cx.waker());
    match websocket.read() {
        Ok(message) => Poll::Ready(Some(Ok(message))),
        Err(tungstenite::Error::Io(err)) if err.kind() == io::ErrorKind::WouldBlock => {
            Poll::Pending
        }
        Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
            Poll::Ready(None)
        }
        Err(err) => {
            websocket.get_mut().failed = true;
            Poll::Ready(Some(Err(err)))
        }
    }
}

/// [`poll_message`] as a future.
pub async fn next_message(
    websocket: &mut WebSocket,
) -> Option<Result<Message, tungstenite::Error>> {
    std::future::poll_fn(|cx| poll_message(websocket, cx)).await
}

/// Frames handed to the kernel in one `writev` at most (Linux takes up to 1,024 slices per call;
/// 64 frames of a broadcast are already far more than a socket buffer takes at once).
const MAX_SLICES: usize = 64;

/// The reading half as the WebSocket layer sees it.
pub struct ReadSide {
    socket: OwnedReadHalf,
    /// Where the WebSocket layer's own frames go: the connection's outbox.
    replies: Arc<Outbox>,
}

impl ReadSide {
    /// The reading half, and the outbox for pongs.
    pub fn new(socket: OwnedReadHalf, replies: Arc<Outbox>) -> ReadSide {
        ReadSide { socket, replies }
    }

    /// Sends the WebSocket layer's frames to `replies` from now on.
    pub fn send_replies_to(&mut self, replies: Arc<Outbox>) {
        self.replies = replies;
    }
}

impl AsyncRead for ReadSide {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().socket).poll_read(cx, buf)
    }
}

/// Takes the WebSocket layer's writes, whole frames every time (it writes its buffer out after
/// encoding each reply), into the outbox. Nothing waits here: an outbox that cannot take more has
/// been evicted, which the writer notices and closes the connection for.
impl AsyncWrite for ReadSide {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let _ = self
            .replies
            .push_control(Frame::encoded(Bytes::copy_from_slice(buf)));
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Writes every frame of `batch`, emptying it, with as few `writev` calls as the socket allows.
pub async fn write_frames(
    socket: &mut OwnedWriteHalf,
    batch: &mut VecDeque<Frame>,
) -> io::Result<()> {
    std::future::poll_fn(|cx| {
        while !batch.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let mut count = 0;
            for (slice, frame) in slices.iter_mut().zip(batch.iter()) {
                *slice = IoSlice::new(frame.wire());
                count += 1;
            }
            let mut written = std::task::ready!(
                Pin::new(&mut *socket).poll_write_vectored(cx, &slices[..count])
            )?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            while let Some(front) = batch.front_mut() {
                let len = front.wire().len();
                if written < len {
                    front.consume(written);
                    break;
                }
                written -= len;
                batch.pop_front();
            }
        }
        Poll::Ready(Ok(()))
    })
    .await
}

/// Writes one frame whole.
pub async fn write_frame(socket: &mut OwnedWriteHalf, frame: Frame) -> io::Result<()> {
    write_frames(socket, &mut VecDeque::from([frame])).await
}
