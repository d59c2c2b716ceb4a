//! Writing to the connection's socket: frames the hub encoded once, many per system call.
//!
//! The reader ([`incoming`](super::incoming)), the writer and the producers that write to an idle
//! connection directly (see [`outbox`](crate::outbox)) share the TCP socket without a lock around
//! it: reading and writing are independent in the kernel, and who may write is decided by the
//! connection's outbox. The frames the reader must have sent (a pong for each ping) go through the
//! outbox like any other, in order. Splitting a WebSocket stream instead would put a lock between
//! the halves that every frame read or written passes (about 8 % of the server's CPU at
//! full-speed broadcast), and would frame every message again in every connection.

use std::collections::VecDeque;
use std::io;
use std::task::Poll;

use tokio::net::TcpStream;

use crate::frame::Frame;
use crate::outbox::try_write_gathered;

/// Writes every frame of `batch`, emptying it, with as few system calls as the socket allows.
/// Only whoever holds the socket (see [`outbox`](crate::outbox)) may call this.
pub async fn write_frames(socket: &TcpStream, batch: &mut VecDeque<Frame>) -> io::Result<()> {
    std::future::poll_fn(|cx| {
        while !batch.is_empty() {
            let mut written = match try_write_gathered(socket, batch.iter().map(Frame::wire)) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(written) => written,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    std::task::ready!(socket.poll_write_ready(cx))?;
                    continue;
                }
                Err(err) => return Poll::Ready(Err(err)),
            };
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

/// Writes `bytes` whole (nothing, when there are none).
pub async fn write_all(socket: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match socket.try_write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => bytes = &bytes[written..],
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => socket.writable().await?,
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// Writes one frame whole.
pub async fn write_frame(socket: &TcpStream, frame: Frame) -> io::Result<()> {
    write_frames(socket, &mut VecDeque::from([frame])).await
}
