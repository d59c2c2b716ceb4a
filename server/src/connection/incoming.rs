//! The reading half of a connection: the frames a client sends, read straight from the socket and
//! held to RFC 6455 as they are parsed (masking, reserved bits and opcodes, control frames,
//! fragmentation, UTF-8, close codes), to the size limits, and to the frame rate.
//!
//! The bytes read wait in a buffer that exists only while there are some: an idle connection holds
//! none. A WebSocket library's reader keeps its read buffer, and its state for both directions,
//! for the connection's whole life, in every connection's task; reading the frames here instead of
//! through tungstenite took an idle `/wss` connection from 2,529 to 1,957 bytes of the server's
//! memory (`bench/run.py --only idle`, 10,000 connections). The writing half never needed it: the
//! server's frames are encoded once for all their recipients ([`Frame`]).
//!
//! Every frame is counted against the message rate as it completes, control and continuation
//! frames too: a client that sends a message's first fragment and then empty continuation frames
//! forever completes no message, and would otherwise never be seen.

use std::io;
use std::task::{Context, Poll, ready};

use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::CloseReason;
use crate::frame::opcode::{BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT};
use crate::frame::{Frame, MAX_CONTROL_PAYLOAD};
use crate::limits::{FrameRate, RateLimits};
use crate::protocol::Message;

/// Bytes asked of the socket at least, per read: a page. A larger frame is read as it arrives,
/// its room grown at most [`MAX_READ_GROWTH`] at a time, so that a header claiming a frame of the
/// largest size allowed reserves at most that much beyond the bytes that actually came.
const READ_CHUNK: usize = 4096;
const MAX_READ_GROWTH: usize = 64 * 1024;

/// The sizes a client's frames and messages may reach (`MAX_FRAME_SIZE`, `MAX_MESSAGE_SIZE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeLimits {
    /// Payload bytes of one frame.
    pub frame: u32,
    /// Payload bytes of one message, all its fragments together.
    pub message: u32,
}

/// What the client sent: its payload is [`Incoming::payload`] until the next read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// A text message ([`Incoming::message`] checks its UTF-8).
    Text,
    /// A binary message.
    Binary,
    /// A ping, to be answered with a pong carrying its payload.
    Ping,
    /// A pong: a sign of life.
    Pong,
    /// A close frame: the client ends the connection ([`Incoming::close_reply`] answers it).
    Close,
}

/// A message whose first fragments have arrived. Boxed in [`Incoming`]: few connections ever
/// have one.
#[derive(Debug)]
struct Fragments {
    text: bool,
    payload: Vec<u8>,
    /// How much of `payload` is known to be valid UTF-8 (a character may be cut between two
    /// fragments; anything else invalid fails the message at the fragment it is in).
    checked: usize,
}

/// Where the payload of what the last read returned is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handed {
    Nothing,
    /// In the read buffer, from `start` for `len` bytes.
    Buffered {
        start: u32,
        len: u32,
    },
    /// In the assembled fragments.
    Fragments,
}

/// The connection's reading side.
#[derive(Debug)]
pub struct Incoming<'a> {
    socket: &'a TcpStream,
    /// Bytes read and not yet parsed, from `parsed` on; no allocation while there are none.
    buffer: Vec<u8>,
    parsed: usize,
    fragments: Option<Box<Fragments>>,
    handed: Handed,
    limits: SizeLimits,
    rate: FrameRate,
    /// The status code of the client's close frame, once it came with one.
    close_code: Option<u16>,
    /// A read failed: the stream is in no state to be parsed on.
    failed: bool,
}

/// A frame's first bytes, parsed.
#[derive(Debug, Clone, Copy)]
struct Header {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    /// Header bytes, before the payload.
    size: usize,
    len: u64,
}

impl<'a> Incoming<'a> {
    /// The reading half of `socket`, starting with `early`, the bytes read with the upgrade
    /// request.
    pub fn new(
        socket: &'a TcpStream,
        early: Vec<u8>,
        limits: SizeLimits,
        rates: &RateLimits,
    ) -> Incoming<'a> {
        Incoming {
            socket,
            buffer: early,
            parsed: 0,
            fragments: None,
            handed: Handed::Nothing,
            limits,
            rate: FrameRate::new(rates),
            close_code: None,
            failed: false,
        }
    }

    /// The next thing the client sent. `Err` ends the connection for that reason: the stream
    /// ended without a close frame ([`CloseReason::Abnormal`]), a frame broke the protocol, a
    /// limit was reached; from then on, every read is `Err(Abnormal)`.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Result<Received, CloseReason>> {
        if self.failed {
            return Poll::Ready(Err(CloseReason::Abnormal));
        }
        if std::mem::replace(&mut self.handed, Handed::Nothing) == Handed::Fragments {
            self.fragments = None;
        }
        let next = loop {
            let wanted = match self.parse() {
                Ok(Parsed::Received(received)) => break Ok(received),
                Ok(Parsed::Consumed) => continue,
                Ok(Parsed::Wanting(bytes)) => bytes,
                Err(reason) => break Err(reason),
            };
            if let Err(reason) = ready!(self.fill(cx, wanted)) {
                break Err(reason);
            }
        };
        self.failed = next.is_err();
        Poll::Ready(next)
    }

    /// [`Incoming::poll_next`] as a future.
    pub async fn next(&mut self) -> Result<Received, CloseReason> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// The payload of what the last read returned.
    pub fn payload(&self) -> &[u8] {
        match self.handed {
            Handed::Nothing => &[],
            Handed::Buffered { start, len } => {
                &self.buffer[start as usize..start as usize + len as usize]
            }
            Handed::Fragments => self.fragments.as_ref().map_or(&[], |f| &f.payload),
        }
    }

    /// The data message the last read returned: [`Received::Text`] or [`Received::Binary`], or
    /// `None` for a control frame. A text message's UTF-8 is checked here, once (a fragmented
    /// one's was also checked fragment by fragment as it came, so that it fails at the fragment
    /// that breaks it); text that is not UTF-8 is [`CloseReason::InvalidUtf8`].
    pub fn message(&self, received: Received) -> Result<Option<Message<'_>>, CloseReason> {
        match received {
            Received::Text => std::str::from_utf8(self.payload())
                .map(|text| Some(Message::Text(text)))
                .map_err(|_| CloseReason::InvalidUtf8),
            Received::Binary => Ok(Some(Message::Binary(self.payload()))),
            Received::Ping | Received::Pong | Received::Close => Ok(None),
        }
    }

    /// The answer to the client's close frame (RFC 6455, 5.5.1): its status code back, 1002 for
    /// one a client may not send, or an empty close frame for an empty one.
    pub fn close_reply(&self) -> Frame {
        match self.close_code {
            Some(code) if close_code_allowed(code) => Frame::close(code, ""),
            Some(_) => Frame::close(1002, "protocol error"),
            None => Frame::close_empty(),
        }
    }

    /// Reads more: at least `wanted` bytes of room (the rest of the frame being parsed), at least
    /// [`READ_CHUNK`]. Readiness is asked first, so a connection polled with nothing to read
    /// allocates nothing, and a buffer left with nothing to parse is let go while it waits.
    fn fill(&mut self, cx: &mut Context<'_>, wanted: usize) -> Poll<Result<(), CloseReason>> {
        loop {
            self.buffer.drain(..self.parsed);
            self.parsed = 0;
            // The room a large frame grew is let go once what is left needs far less (a few
            // bytes of the next frame must not keep a 64 MiB buffer for the connection's life);
            // within a frame the need stays that frame's size, so nothing is copied twice.
            let needed = (self.buffer.len() + wanted).max(READ_CHUNK);
            if self.buffer.capacity() > 4 * needed {
                self.buffer.shrink_to(self.buffer.len() + READ_CHUNK);
            }
            let readiness = self.socket.poll_read_ready(cx);
            if readiness.is_pending() && self.buffer.is_empty() {
                // Nothing to parse and nothing to read: the room goes until bytes come.
                self.buffer = Vec::new();
            }
            if ready!(readiness).is_err() {
                return Poll::Ready(Err(CloseReason::Abnormal));
            }
            self.buffer
                .reserve(wanted.clamp(READ_CHUNK, MAX_READ_GROWTH));
            match read_draining(self.socket, &mut self.buffer) {
                // The stream ended with no close frame.
                Ok(0) => return Poll::Ready(Err(CloseReason::Abnormal)),
                Ok(_) => return Poll::Ready(Ok(())),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Poll::Ready(Err(CloseReason::Abnormal)),
            }
        }
    }

    /// Parses the next frame in the buffer, if it is all there.
    fn parse(&mut self) -> Result<Parsed, CloseReason> {
        let available = &self.buffer[self.parsed..];
        let header = match parse_header(available)? {
            Some(header) => header,
            None => return Ok(Parsed::Wanting(MAX_HEADER)),
        };
        self.check(&header)?;
        // Within the limits checked above, which are u32s.
        let len = header.len as usize;
        let frame_len = header.size + len;
        if available.len() < frame_len {
            return Ok(Parsed::Wanting(frame_len - available.len()));
        }
        if self.rate.admit().is_err() {
            return Err(CloseReason::RateLimited);
        }
        let start = self.parsed + header.size;
        self.parsed += frame_len;
        let payload = &mut self.buffer[start..start + len];
        unmask(payload, header.mask);
        let handed = Handed::Buffered {
            start: start as u32,
            len: len as u32,
        };
        let received = match header.opcode {
            PING => Received::Ping,
            PONG => Received::Pong,
            CLOSE => {
                self.close_code = close_code(payload)?;
                Received::Close
            }
            CONTINUATION => {
                let fragments = self.fragments.as_mut().ok_or(CloseReason::ProtocolError)?;
                fragments.payload.extend_from_slice(payload);
                fragments.check_utf8(header.fin)?;
                if !header.fin {
                    return Ok(Parsed::Consumed);
                }
                self.handed = Handed::Fragments;
                return Ok(Parsed::Received(if fragments.text {
                    Received::Text
                } else {
                    Received::Binary
                }));
            }
            opcode if !header.fin => {
                let mut fragments = Box::new(Fragments {
                    text: opcode == TEXT,
                    payload: payload.to_vec(),
                    checked: 0,
                });
                fragments.check_utf8(false)?;
                self.fragments = Some(fragments);
                return Ok(Parsed::Consumed);
            }
            // Its UTF-8 is checked when it is taken (`message`).
            TEXT => Received::Text,
            _ => Received::Binary,
        };
        self.handed = handed;
        Ok(Parsed::Received(received))
    }

    /// Whether a frame with this header may come now, at this size.
    fn check(&self, header: &Header) -> Result<(), CloseReason> {
        let under_way = self
            .fragments
            .as_ref()
            .map_or(0, |f| f.payload.len() as u64);
        match header.opcode {
            CLOSE | PING | PONG if !header.fin || header.len > MAX_CONTROL_PAYLOAD as u64 => {
                Err(CloseReason::ProtocolError)
            }
            CLOSE | PING | PONG => Ok(()),
            CONTINUATION if self.fragments.is_none() => Err(CloseReason::ProtocolError),
            TEXT | BINARY if self.fragments.is_some() => Err(CloseReason::ProtocolError),
            CONTINUATION | TEXT | BINARY
                if header.len > u64::from(self.limits.frame)
                    || under_way + header.len > u64::from(self.limits.message) =>
            {
                Err(CloseReason::MessageTooBig)
            }
            CONTINUATION | TEXT | BINARY => Ok(()),
            _ => Err(CloseReason::ProtocolError),
        }
    }
}

/// What parsing the buffer came to.
enum Parsed {
    Received(Received),
    /// A fragment, added to the message under way.
    Consumed,
    /// This many more bytes are needed.
    Wanting(usize),
}

/// The longest header of a client's frame: 2 bytes, a 64-bit length and the masking key.
const MAX_HEADER: usize = 14;

/// The header at the start of `bytes`, if it is all there (RFC 6455, 5.2).
fn parse_header(bytes: &[u8]) -> Result<Option<Header>, CloseReason> {
    let [first, second, ..] = *bytes else {
        return Ok(None);
    };
    // No extension is negotiated, so no reserved bit may be set; every client frame is masked
    // (5.1, 5.3).
    if first & 0x70 != 0 || second & 0x80 == 0 {
        return Err(CloseReason::ProtocolError);
    }
    let (len, length_size) = match second & 0x7f {
        126 => match bytes.get(2..4) {
            Some(extended) => (u64::from(u16::from_be_bytes([extended[0], extended[1]])), 2),
            None => return Ok(None),
        },
        127 => match bytes.get(2..10) {
            Some(extended) => {
                let len = u64::from_be_bytes(extended.try_into().expect("8 bytes"));
                // "the most significant bit MUST be 0"
                if len >> 63 != 0 {
                    return Err(CloseReason::ProtocolError);
                }
                (len, 8)
            }
            None => return Ok(None),
        },
        len => (u64::from(len), 0),
    };
    let size = 2 + length_size + 4;
    let Some(mask) = bytes.get(size - 4..size) else {
        return Ok(None);
    };
    Ok(Some(Header {
        fin: first & 0x80 != 0,
        opcode: first & 0x0f,
        mask: mask.try_into().expect("4 bytes"),
        size,
        len,
    }))
}

/// Removes the client's masking (RFC 6455, 5.3), eight bytes at a time.
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let word = u64::from_ne_bytes((&*chunk).try_into().expect("8 bytes")) ^ wide;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    for (byte, key) in chunks.into_remainder().iter_mut().zip(mask.iter().cycle()) {
        *byte ^= key;
    }
}

/// The status code of a close frame's payload, checked: a code needs two bytes, and a reason
/// after it must be UTF-8 (RFC 6455, 5.5.1).
fn close_code(payload: &[u8]) -> Result<Option<u16>, CloseReason> {
    match payload {
        [] => Ok(None),
        [_] => Err(CloseReason::ProtocolError),
        [high, low, reason @ ..] => {
            if std::str::from_utf8(reason).is_err() {
                return Err(CloseReason::InvalidUtf8);
            }
            Ok(Some(u16::from_be_bytes([*high, *low])))
        }
    }
}

/// Whether a client may close with `code` (RFC 6455, 7.4.1; 1012 and 1013 from IANA's registry):
/// 1005, 1006 and 1015 never go on the wire, and 1004, 1014 and the rest below 3000 are reserved.
fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1013 | 3000..=4999)
}

impl Fragments {
    /// Checks the UTF-8 of a text message's payload so far: a character cut at the end is
    /// waited for unless the message is `complete`.
    fn check_utf8(&mut self, complete: bool) -> Result<(), CloseReason> {
        if !self.text {
            return Ok(());
        }
        match std::str::from_utf8(&self.payload[self.checked..]) {
            Ok(_) => self.checked = self.payload.len(),
            Err(err) if err.error_len().is_none() && !complete => {
                self.checked += err.valid_up_to();
            }
            Err(_) => return Err(CloseReason::InvalidUtf8),
        }
        Ok(())
    }
}

/// Reads what the socket holds into `buffer`'s spare room. A read that leaves room unfilled took
/// everything the kernel had, so the socket's read readiness is cleared with it, as tokio's own
/// `poll_read` does on epoll (tokio-rs/tokio#5866): otherwise the next read is a `recvfrom` that
/// only says `EAGAIN`, one wasted system call per message a client sends at a time (10,300
/// `recvfrom` for 5,000 messages in the steady broadcast). Data that arrives after the read
/// raises a new edge, and tokio does not clear a readiness newer than the one it read under.
fn read_draining(socket: &TcpStream, buffer: &mut Vec<u8>) -> io::Result<usize> {
    let mut read = None;
    let result = socket.try_io(Interest::READABLE, || {
        let room = buffer.spare_capacity_mut();
        let asked = room.len();
        let n = SockRef::from(socket).recv(room)?;
        // SAFETY: `recv` initialised the first `n` bytes of the spare room.
        unsafe { buffer.set_len(buffer.len() + n) };
        read = Some(n);
        if 0 < n && n < asked {
            // Drained: clears the readiness (the bytes are kept in `read`).
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match (result, read) {
        (Err(err), Some(n)) if err.kind() == io::ErrorKind::WouldBlock => Ok(n),
        (result, _) => result,
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    const LIMITS: SizeLimits = SizeLimits {
        frame: 100_000,
        message: 150_000,
    };

    /// A client's frame: FIN, `opcode`, masked with a key that changes every byte it touches.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut bytes = vec![u8::from(fin) << 7 | opcode];
        match payload.len() {
            n @ 0..=125 => bytes.push(0x80 | n as u8),
            n @ 126..=65_535 => {
                bytes.push(0x80 | 126);
                bytes.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                bytes.push(0x80 | 127);
                bytes.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = [0x12, 0x34, 0x56, 0x78];
        bytes.extend_from_slice(&mask);
        bytes.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, k)| b ^ k));
        bytes
    }

    /// The largest limits the configuration allows.
    const LARGEST: SizeLimits = SizeLimits {
        frame: 64 << 20,
        message: 64 << 20,
    };

    /// Whether the reader, polled once, waits for more bytes.
    async fn waits(incoming: &mut Incoming<'_>) -> bool {
        std::future::poll_fn(|cx| Poll::Ready(incoming.poll_next(cx).is_pending())).await
    }

    /// A connected pair on loopback: the client's socket, and the server's reader. The server's
    /// socket is leaked, so that it lives as long as the test's reader borrows it.
    async fn pair(limits: SizeLimits) -> (TcpStream, Incoming<'static>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let server: &'static TcpStream = Box::leak(Box::new(server));
        let rates = RateLimits::new(0, 1, 0, 1);
        (client, Incoming::new(server, Vec::new(), limits, &rates))
    }

    /// Everything the reader makes of `bytes`, written `chunk` bytes at a time, up to its error.
    async fn decode(
        bytes: &[u8],
        chunk: usize,
        limits: SizeLimits,
    ) -> Vec<Result<(Received, Vec<u8>), CloseReason>> {
        let (mut client, mut incoming) = pair(limits).await;
        let bytes = bytes.to_vec();
        let writer = tokio::spawn(async move {
            for piece in bytes.chunks(chunk) {
                client.write_all(piece).await.unwrap();
                client.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
            client.shutdown().await.unwrap();
            client
        });
        let mut seen = Vec::new();
        loop {
            // As the connection's reader takes them: a message through `message`.
            match incoming
                .next()
                .await
                .and_then(|received| incoming.message(received).map(|_| received))
            {
                Ok(received) => seen.push(Ok((received, incoming.payload().to_vec()))),
                Err(reason) => {
                    seen.push(Err(reason));
                    break;
                }
            }
        }
        drop(writer.await.unwrap());
        seen
    }

    #[tokio::test]
    async fn frames_cut_anywhere_are_read_whole_unmasked_and_fragments_joined() {
        let big: Vec<u8> = (0..70_000u32).map(|n| n as u8).collect();
        let mut stream = Vec::new();
        stream.extend(frame(true, TEXT, "héllo".as_bytes()));
        // "é" is cut between the two fragments, with a ping between them.
        stream.extend(frame(false, TEXT, &"ça é".as_bytes()[..5]));
        stream.extend(frame(true, PING, b"are you there"));
        stream.extend(frame(false, CONTINUATION, &"ça é".as_bytes()[5..]));
        stream.extend(frame(false, CONTINUATION, b""));
        stream.extend(frame(true, CONTINUATION, b"!"));
        stream.extend(frame(true, BINARY, &big));
        stream.extend(frame(true, PONG, b""));
        stream.extend(frame(true, CLOSE, &[0x03, 0xe8, b'b', b'y', b'e']));
        for chunk in [1, 3, 7, 4096, stream.len()] {
            let seen = decode(&stream, chunk, LIMITS).await;
            let expected: Vec<Result<(Received, Vec<u8>), CloseReason>> = vec![
                Ok((Received::Text, "héllo".into())),
                Ok((Received::Ping, b"are you there".to_vec())),
                Ok((Received::Text, "ça é!".into())),
                Ok((Received::Binary, big.clone())),
                Ok((Received::Pong, Vec::new())),
                Ok((Received::Close, vec![0x03, 0xe8, b'b', b'y', b'e'])),
                Err(CloseReason::Abnormal),
            ];
            assert_eq!(seen, expected, "written {chunk} bytes at a time");
        }
    }

    #[tokio::test]
    async fn every_frame_rfc_6455_forbids_ends_the_connection_with_its_reason() {
        let mut unmasked = frame(true, TEXT, b"hi");
        unmasked[1] &= 0x7f;
        unmasked.drain(2..6);
        let mut reserved_bit = frame(true, TEXT, b"hi");
        reserved_bit[0] |= 0x40;
        let mut huge_length = frame(true, BINARY, &[0; 70_000]);
        huge_length[2] |= 0x80;
        let cases: Vec<(&str, Vec<u8>, CloseReason)> = vec![
            ("unmasked", unmasked, CloseReason::ProtocolError),
            ("reserved bit", reserved_bit, CloseReason::ProtocolError),
            (
                "reserved data opcode",
                frame(true, 0x3, b""),
                CloseReason::ProtocolError,
            ),
            (
                "reserved control opcode",
                frame(true, 0xb, b""),
                CloseReason::ProtocolError,
            ),
            (
                "fragmented ping",
                frame(false, PING, b""),
                CloseReason::ProtocolError,
            ),
            (
                "long ping",
                frame(true, PING, &[0; 126]),
                CloseReason::ProtocolError,
            ),
            (
                "lone continuation",
                frame(true, CONTINUATION, b"x"),
                CloseReason::ProtocolError,
            ),
            (
                "a message inside a message",
                [frame(false, TEXT, b"a"), frame(true, TEXT, b"b")].concat(),
                CloseReason::ProtocolError,
            ),
            (
                "64-bit length with its top bit set",
                huge_length,
                CloseReason::ProtocolError,
            ),
            (
                "close with one byte",
                frame(true, CLOSE, &[3]),
                CloseReason::ProtocolError,
            ),
            (
                "text not UTF-8",
                frame(true, TEXT, &[0xc3, 0x28]),
                CloseReason::InvalidUtf8,
            ),
            (
                // Fails at the fragment that breaks it, not at the message's end.
                "fragment not UTF-8",
                [
                    frame(false, TEXT, b"ok"),
                    frame(false, CONTINUATION, &[0xff]),
                ]
                .concat(),
                CloseReason::InvalidUtf8,
            ),
            (
                "message ending mid-character",
                [
                    frame(false, TEXT, b"ok"),
                    frame(true, CONTINUATION, &[0xc3]),
                ]
                .concat(),
                CloseReason::InvalidUtf8,
            ),
            (
                "close reason not UTF-8",
                frame(true, CLOSE, &[3, 0xe8, 0xff]),
                CloseReason::InvalidUtf8,
            ),
            (
                "frame over the limit",
                frame(true, BINARY, &[0; 100_001]),
                CloseReason::MessageTooBig,
            ),
            (
                "fragments over the limit",
                [
                    frame(false, BINARY, &[0; 100_000]),
                    frame(true, CONTINUATION, &[0; 50_001]),
                ]
                .concat(),
                CloseReason::MessageTooBig,
            ),
        ];
        for (case, bytes, reason) in cases {
            let seen = decode(&bytes, bytes.len(), LIMITS).await;
            assert_eq!(seen.last(), Some(&Err(reason)), "{case}: {seen:?}");
            assert!(seen[..seen.len() - 1].iter().all(Result::is_ok), "{case}");
        }
    }

    #[tokio::test]
    async fn a_close_frame_is_answered_with_its_code_or_1002_for_one_a_client_may_not_send() {
        for (payload, reply) in [
            (vec![], Frame::close_empty()),
            (1000u16.to_be_bytes().to_vec(), Frame::close(1000, "")),
            (4321u16.to_be_bytes().to_vec(), Frame::close(4321, "")),
            (
                1005u16.to_be_bytes().to_vec(),
                Frame::close(1002, "protocol error"),
            ),
            (
                1014u16.to_be_bytes().to_vec(),
                Frame::close(1002, "protocol error"),
            ),
            (
                999u16.to_be_bytes().to_vec(),
                Frame::close(1002, "protocol error"),
            ),
        ] {
            let (mut client, mut incoming) = pair(LIMITS).await;
            client
                .write_all(&frame(true, CLOSE, &payload))
                .await
                .unwrap();
            assert_eq!(incoming.next().await, Ok(Received::Close));
            assert_eq!(incoming.close_reply(), reply, "{payload:?}");
        }
    }

    #[tokio::test]
    async fn a_reader_with_nothing_to_read_holds_no_buffer() {
        let (mut client, mut incoming) = pair(LIMITS).await;
        client.write_all(&frame(true, PONG, b"")).await.unwrap();
        assert_eq!(incoming.next().await, Ok(Received::Pong));
        assert!(incoming.buffer.capacity() > 0);
        assert!(waits(&mut incoming).await);
        assert_eq!(incoming.buffer.capacity(), 0);
    }

    #[tokio::test]
    async fn bytes_that_come_after_a_read_emptied_the_socket_wake_the_reader() {
        const TEXT_SENT: &[u8] = b"sent in pieces, each after the reader found none left";
        let (mut client, mut incoming) = pair(LIMITS).await;
        let whole = frame(true, TEXT, TEXT_SENT);
        let pieces: Vec<&[u8]> = whole.chunks(7).collect();
        let (last, pieces) = pieces.split_last().unwrap();
        for piece in pieces {
            client.write_all(piece).await.unwrap();
            // Until the driver has seen the bytes; then the reader reads them (a read that
            // leaves room, so the socket counts as emptied) and waits.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            assert!(waits(&mut incoming).await);
            assert!(!incoming.buffer.is_empty(), "a piece of a frame is kept");
        }
        client.write_all(last).await.unwrap();
        let received = tokio::time::timeout(std::time::Duration::from_secs(5), incoming.next())
            .await
            .expect("the last piece wakes the reader");
        assert_eq!(received, Ok(Received::Text));
        assert_eq!(incoming.payload(), TEXT_SENT);
        assert!(waits(&mut incoming).await);
        assert_eq!(
            incoming.buffer.capacity(),
            0,
            "nothing left to parse: no room held"
        );
    }

    #[tokio::test]
    async fn a_read_that_fills_the_room_reads_on_until_the_socket_is_empty() {
        let (mut client, mut incoming) = pair(LIMITS).await;
        // Far more than one read's room (READ_CHUNK), in one write: reads that fill their room
        // leave the socket's readiness set, so the reader goes on without a new edge.
        let payload = vec![b'a'; 20 * READ_CHUNK];
        let mut bytes = frame(true, BINARY, &payload);
        bytes.extend(frame(true, TEXT, b"after"));
        client.write_all(&bytes).await.unwrap();
        for (expected, payload) in [(Received::Binary, &payload[..]), (Received::Text, b"after")] {
            let received = tokio::time::timeout(std::time::Duration::from_secs(5), incoming.next())
                .await
                .expect("read without waiting for more bytes");
            assert_eq!(received, Ok(expected));
            assert_eq!(incoming.payload(), payload);
        }
    }

    #[tokio::test]
    async fn the_room_a_large_frame_grew_is_let_go_when_a_few_bytes_are_left() {
        let (mut client, mut incoming) = pair(LARGEST).await;
        let big = frame(true, BINARY, &vec![7; 8 << 20]);
        let writer = tokio::spawn(async move {
            client.write_all(&big).await.unwrap();
            // The first byte of the next frame's header.
            client.write_all(&[0x82]).await.unwrap();
            client
        });
        assert_eq!(incoming.next().await, Ok(Received::Binary));
        let _client = writer.await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(waits(&mut incoming).await);
        assert!(
            incoming.buffer.capacity() <= 2 * READ_CHUNK,
            "{}",
            incoming.buffer.capacity()
        );
    }

    #[tokio::test]
    async fn a_header_claiming_a_huge_frame_reserves_only_what_comes() {
        let (mut client, mut incoming) = pair(LARGEST).await;
        let header = &frame(true, BINARY, &vec![0; 60 << 20])[..14];
        client.write_all(header).await.unwrap();
        client.write_all(&[0; 100]).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(waits(&mut incoming).await);
        assert!(
            incoming.buffer.capacity() <= 2 * MAX_READ_GROWTH,
            "{}",
            incoming.buffer.capacity()
        );
    }
}
