//! The socket of a connection in its HTTP phase, which keeps the response accepting a WebSocket
//! upgrade for the connection to write with its first frame.
//!
//! hyper writes every response itself, the `101 Switching Protocols` included, and only then hands
//! the socket over; the `/wss` greeting followed in a second system call and a second TCP segment,
//! which the client's side receives and wakes for separately. Connection churn is mostly such
//! per-segment work on both ends: kept here and written together with the greeting, the 101 costs
//! neither. Every other response goes out as hyper writes it.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How an accepted upgrade's response begins (hyper writes HTTP/1.1 status lines as such).
const SWITCHING_PROTOCOLS: &[u8] = b"HTTP/1.1 101 ";

/// A TCP socket in its HTTP phase.
#[derive(Debug)]
pub struct HttpSocket {
    stream: TcpStream,
    /// The 101 response, held back (empty until one is written).
    switching: Vec<u8>,
}

impl HttpSocket {
    /// The socket of a new connection.
    pub fn new(stream: TcpStream) -> HttpSocket {
        HttpSocket {
            stream,
            switching: Vec::new(),
        }
    }

    /// The socket, and the 101 response that upgraded it, which the caller must write before
    /// anything else (empty if none was written).
    pub fn into_parts(self) -> (TcpStream, Vec<u8>) {
        (self.stream, self.switching)
    }

    /// Whether `bytes` go to the held response: they are its beginning, or follow it.
    fn holds(&self, bytes: &[u8]) -> bool {
        !self.switching.is_empty() || bytes.starts_with(SWITCHING_PROTOCOLS)
    }
}

impl AsyncRead for HttpSocket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for HttpSocket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.holds(buf) {
            self.switching.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let first = bufs.iter().find(|buf| !buf.is_empty());
        if first.is_some_and(|first| self.holds(first)) {
            let mut held = 0;
            for buf in bufs {
                self.switching.extend_from_slice(buf);
                held += buf.len();
            }
            return Poll::Ready(Ok(held));
        }
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    async fn pair() -> (HttpSocket, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (HttpSocket::new(server), client)
    }

    #[tokio::test]
    async fn other_responses_go_out_and_a_101_is_held_for_the_connection() {
        let (mut socket, mut client) = pair().await;
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        socket.write_all(ok).await.unwrap();
        let mut read = vec![0; ok.len()];
        client.read_exact(&mut read).await.unwrap();
        assert_eq!(read, ok);

        let head = b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n";
        let slices = [IoSlice::new(&head[..20]), IoSlice::new(&head[20..])];
        assert_eq!(socket.write_vectored(&slices).await.unwrap(), head.len());
        socket.write_all(b"\r\n").await.unwrap();
        socket.flush().await.unwrap();
        let (stream, switching) = socket.into_parts();
        assert_eq!(switching, [&head[..], b"\r\n"].concat());
        drop(stream);
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "nothing of the 101 was written: {rest:?}");
    }
}
