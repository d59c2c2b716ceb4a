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
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::frame::Frame;
use crate::outbox::Outbox;

/// Frames handed to the kernel in one `writev` at most (Linux takes up to 1,024 slices per call;
/// 64 frames of a broadcast are already far more than a socket buffer takes at once).
const MAX_SLICES: usize = 64;

/// The reading half as the WebSocket layer sees it.
pub struct ReadSide {
    /// Bytes the client sent right behind its upgrade request, read with the request by the HTTP
    /// server: they come first. Empty for nearly every client, and then not a slice of the HTTP
    /// server's read buffer: that would keep its 8 KiB for the connection's whole life.
    early: Bytes,
    socket: OwnedReadHalf,
    /// Where the WebSocket layer's own frames go: the connection's outbox.
    replies: Arc<Outbox>,
}

impl ReadSide {
    /// The reading half, with the bytes already read from it and the outbox for pongs.
    pub fn new(early: Bytes, socket: OwnedReadHalf, replies: Arc<Outbox>) -> ReadSide {
        ReadSide {
            early: if early.is_empty() {
                Bytes::new()
            } else {
                early
            },
            socket,
            replies,
        }
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
        let this = self.get_mut();
        if !this.early.is_empty() {
            let take = this.early.len().min(buf.remaining());
            buf.put_slice(&this.early[..take]);
            this.early.advance(take);
            if this.early.is_empty() {
                this.early = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.socket).poll_read(cx, buf)
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
