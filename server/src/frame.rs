//! Server-to-client WebSocket frames, encoded once.
//!
//! A server's frames are never masked (RFC 6455, 5.1), so a message published to 10,000
//! subscribers is the same bytes, header and payload, on every one of their sockets. A [`Frame`]
//! holds those bytes, reference-counted: queuing it for a subscriber costs a reference count, or,
//! for a small frame written to an idle client, one copy of its bytes into the buffer the client's
//! next write hands the kernel (see [`outbox`](crate::outbox)). Framing every broadcast again for
//! every recipient was about a sixth of the server's CPU at full-speed broadcast.

use std::fmt;

use bytes::{Buf, Bytes};

const FIN: u8 = 0x80;

/// Frame opcodes (RFC 6455, 5.2), for the frames the server writes and those it reads.
pub(crate) mod opcode {
    pub(crate) const CONTINUATION: u8 = 0x0;
    pub(crate) const TEXT: u8 = 0x1;
    pub(crate) const BINARY: u8 = 0x2;
    pub(crate) const CLOSE: u8 = 0x8;
    pub(crate) const PING: u8 = 0x9;
    pub(crate) const PONG: u8 = 0xa;
}
use opcode::{BINARY, CLOSE, PING, PONG, TEXT};

/// The longest header of an unmasked frame: 2 bytes and a 64-bit length (RFC 6455, 5.2).
const MAX_HEADER: usize = 10;

/// The most a control frame may carry (RFC 6455, 5.5).
pub(crate) const MAX_CONTROL_PAYLOAD: usize = 125;

/// Frames handed to the kernel in one `writev` at most (Linux takes up to 1,024 slices per call;
/// 64 frames of a broadcast are already far more than a socket buffer takes at once).
pub const MAX_SLICES: usize = 64;

/// One or more complete frames, as written on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame(Bytes);

impl Frame {
    /// A text frame (the caller vouches for UTF-8: every server text is built from validated
    /// JSON or from its own ASCII).
    pub fn text(payload: impl AsRef<[u8]>) -> Frame {
        Frame::data(TEXT, payload.as_ref())
    }

    /// A binary frame.
    pub fn binary(payload: impl AsRef<[u8]>) -> Frame {
        Frame::data(BINARY, payload.as_ref())
    }

    fn data(opcode: u8, payload: &[u8]) -> Frame {
        let (header, size) = header_bytes(opcode, payload.len());
        let mut wire = Vec::with_capacity(size + payload.len());
        wire.extend_from_slice(&header[MAX_HEADER - size..]);
        wire.extend_from_slice(payload);
        Frame(wire.into())
    }

    /// An empty ping (the heartbeat's), shared by every connection.
    pub fn ping() -> Frame {
        Frame(Bytes::from_static(&[FIN | PING, 0]))
    }

    /// A close frame with a status code and a reason, which is cut to fit a control frame.
    pub fn close(code: u16, reason: &str) -> Frame {
        let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let mut payload = Vec::with_capacity(2 + end);
        payload.extend_from_slice(&code.to_be_bytes());
        payload.extend_from_slice(&reason.as_bytes()[..end]);
        Frame::data(CLOSE, &payload)
    }

    /// An empty close frame: the reply to a close frame that carried no status code.
    pub fn close_empty() -> Frame {
        Frame(Bytes::from_static(&[FIN | CLOSE, 0]))
    }

    /// A pong, carrying the payload of the ping it answers (RFC 6455, 5.5.3): at most 125
    /// bytes, which the reader has checked.
    pub fn pong(payload: &[u8]) -> Frame {
        Frame::data(PONG, payload)
    }

    /// The bytes to write.
    pub fn wire(&self) -> &[u8] {
        &self.0
    }

    /// Drops the first `written` bytes: they are on the wire.
    pub fn consume(&mut self, written: usize) {
        self.0.advance(written);
    }

    /// Whether the (first) frame is a text or binary message.
    pub fn is_data(&self) -> bool {
        matches!(self.opcode(), TEXT | BINARY)
    }

    /// Whether the (first) frame is a pong.
    pub fn is_pong(&self) -> bool {
        self.opcode() == PONG
    }

    fn opcode(&self) -> u8 {
        self.0.first().map_or(0, |first| first & 0x0f)
    }

    /// The payload of the (first) frame.
    pub fn payload(&self) -> &[u8] {
        let (start, end) = payload_range(&self.0);
        &self.0[start..end]
    }

    /// The frames of `wire`, whole frames of this server's written end to end, each on its own
    /// (sharing `wire`'s memory).
    pub fn split(mut wire: Bytes) -> impl Iterator<Item = Frame> {
        std::iter::from_fn(move || {
            if wire.is_empty() {
                return None;
            }
            let (_, end) = payload_range(&wire);
            Some(Frame(wire.split_to(end.max(1))))
        })
    }
}

/// Where, in `wire`, the payload of the frame it begins with starts and ends (both at most its
/// length, for a frame cut short).
fn payload_range(wire: &[u8]) -> (usize, usize) {
    let Some(&length_code) = wire.get(1) else {
        return (wire.len(), wire.len());
    };
    let (start, len) = match length_code & 0x7f {
        126 if wire.len() >= 4 => (4usize, u64::from(u16::from_be_bytes([wire[2], wire[3]]))),
        127 if wire.len() >= 10 => {
            let bytes: [u8; 8] = wire[2..10].try_into().expect("8 bytes");
            (10, u64::from_be_bytes(bytes))
        }
        126 | 127 => return (wire.len(), wire.len()),
        len => (2, u64::from(len)),
    };
    let end = usize::try_from(len)
        .map_or(wire.len(), |len| start.saturating_add(len))
        .min(wire.len());
    (start.min(end), end)
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.opcode() {
            TEXT => "text",
            BINARY => "binary",
            CLOSE => "close",
            PING => "ping",
            PONG => "pong",
            _ => "other",
        };
        write!(
            f,
            "Frame::{kind}({:?})",
            String::from_utf8_lossy(self.payload())
        )
    }
}

/// The header of an unmasked, final frame of `len` payload bytes (RFC 6455, 5.2), in the last
/// bytes of the returned array (the first are zeros, unused).
fn header_bytes(opcode: u8, len: usize) -> ([u8; MAX_HEADER], usize) {
    let mut header = [0; MAX_HEADER];
    let size = match len {
        0..=125 => {
            header[MAX_HEADER - 1] = len as u8;
            2
        }
        126..=0xffff => {
            header[MAX_HEADER - 3] = 126;
            header[MAX_HEADER - 2..].copy_from_slice(&(len as u16).to_be_bytes());
            4
        }
        _ => {
            header[MAX_HEADER - 9] = 127;
            header[MAX_HEADER - 8..].copy_from_slice(&(len as u64).to_be_bytes());
            10
        }
    };
    header[MAX_HEADER - size] = FIN | opcode;
    (header, size)
}

/// Builds a text frame in place: the payload is written once, after room for the longest header,
/// and the header goes right before it when the length is known, so an envelope assembled from
/// parts is never copied again to be framed.
pub struct TextFrameBuilder(Vec<u8>);

impl TextFrameBuilder {
    /// A builder with room for `capacity` payload bytes.
    pub fn with_capacity(capacity: usize) -> TextFrameBuilder {
        let mut buffer = Vec::with_capacity(MAX_HEADER + capacity);
        buffer.extend_from_slice(&[0; MAX_HEADER]);
        TextFrameBuilder(buffer)
    }

    /// Appends to the payload.
    pub fn push_str(&mut self, text: &str) {
        self.0.extend_from_slice(text.as_bytes());
    }

    /// The frame.
    pub fn finish(mut self) -> Frame {
        let (header, size) = header_bytes(TEXT, self.0.len() - MAX_HEADER);
        let start = MAX_HEADER - size;
        self.0[start..MAX_HEADER].copy_from_slice(&header[start..]);
        Frame(Bytes::from(self.0).slice(start..))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    use super::*;

    /// What a client's WebSocket library makes of the frame.
    fn parsed(frame: &Frame) -> (FrameHeader, Vec<u8>) {
        let mut cursor = Cursor::new(frame.wire());
        let (header, len) = FrameHeader::parse(&mut cursor)
            .unwrap()
            .expect("a whole header");
        let start = cursor.position() as usize;
        assert_eq!(
            start + len as usize,
            frame.wire().len(),
            "one frame, no more"
        );
        (header, frame.wire()[start..].to_vec())
    }

    #[test]
    fn every_length_class_parses_as_written() {
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 200_000] {
            let payload = "x".repeat(len);
            for frame in [Frame::text(&payload), {
                let mut builder = TextFrameBuilder::with_capacity(0);
                builder.push_str(&payload);
                builder.finish()
            }] {
                let (header, body) = parsed(&frame);
                assert!(header.is_final && header.mask.is_none());
                assert_eq!(header.opcode, OpCode::Data(Data::Text));
                assert_eq!(body, payload.as_bytes(), "{len}");
                assert_eq!(frame.payload(), payload.as_bytes());
                assert!(frame.is_data());
            }
        }
        let (header, body) = parsed(&Frame::binary([0, 1, 2]));
        assert_eq!(header.opcode, OpCode::Data(Data::Binary));
        assert_eq!(body, [0, 1, 2]);
    }

    #[test]
    fn a_close_frame_fits_a_control_frame() {
        let frame = Frame::close(1001, &"é".repeat(100));
        let (_, body) = parsed(&frame);
        assert!(body.len() <= MAX_CONTROL_PAYLOAD);
        assert_eq!(&body[..2], &1001u16.to_be_bytes());
        assert!(
            std::str::from_utf8(&body[2..]).is_ok(),
            "cut on a character"
        );
        assert!(!frame.is_data());
        assert_eq!(parsed(&Frame::close_empty()).1, b"");
        assert_eq!(parsed(&Frame::ping()).1, b"");
    }

    #[test]
    fn frames_written_end_to_end_split_apart_again() {
        let frames = [
            Frame::text("a"),
            Frame::binary(vec![1; 126]),
            Frame::pong(b""),
            Frame::text("é".repeat(40_000)),
            Frame::close(1000, "bye"),
        ];
        let wire: Vec<u8> = frames
            .iter()
            .flat_map(|frame| frame.wire().to_vec())
            .collect();
        assert_eq!(Frame::split(wire.into()).collect::<Vec<_>>(), frames);
    }

    #[test]
    fn consuming_leaves_the_unwritten_rest() {
        let mut frame = Frame::text("hello");
        // A two-byte header, then the payload.
        frame.consume(5);
        assert_eq!(frame.wire(), b"lo");
    }
}
