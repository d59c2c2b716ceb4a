//! Writing to the connection's socket: frames the hub encoded once, many per `writev`.
//!
//! The TCP socket is split into owned halves that share no lock: the writer owns the writing half,
//! the reader ([`incoming`](super::incoming)) the reading half, and the frames the reader must
//! have sent (a pong for each ping) go to the connection's outbox like any other, for the writer
//! to send in order. Splitting a WebSocket stream instead would put a lock between the halves that
//! every frame read or written passes (about 8 % of the server's CPU at full-speed broadcast), and
//! would frame every message again in every connection.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::Poll;

use tokio::io::AsyncWrite;
use tokio::net::tcp::OwnedWriteHalf;

use crate::frame::Frame;

/// Frames handed to the kernel in one `writev` at most (Linux takes up to 1,024 slices per call;
/// 64 frames of a broadcast are already far more than a socket buffer takes at once).
const MAX_SLICES: usize = 64;

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
