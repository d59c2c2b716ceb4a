//! Channel names, and the frames a channel message becomes on each protocol.
//!
//! A message is the publisher's JSON exactly as written; each protocol wraps it in its own
//! envelope. The hub builds each envelope at most once per message, however many subscribers
//! receive it.

use std::borrow::Borrow;
use std::fmt;
use std::sync::{Arc, OnceLock};

use super::Offset;
use crate::frame::{Frame, TextFrameBuilder};

/// The channel `/wss` clients share: what they send goes to everyone on it, and a `/v1/ws` client
/// subscribed to it sees the same messages.
pub const BROADCAST: &str = "broadcast";

/// Longest channel name, in characters (all ASCII).
pub const MAX_CHANNEL_NAME: usize = 128;

/// A valid channel name: 1 to 128 characters of `A-Z a-z 0-9 _ - . : @`. None of them needs
/// escaping in JSON or has a meaning in a Redis channel name, so a name is copied into envelopes
/// and Redis channel names as it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(Arc<str>);

/// Why a string is not a channel name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidChannelName;

impl fmt::Display for InvalidChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a channel name is 1 to {MAX_CHANNEL_NAME} characters of A-Z a-z 0-9 _ - . : @"
        )
    }
}

impl ChannelName {
    /// Checks `name` against the channel name rules.
    pub fn parse(name: &str) -> Result<ChannelName, InvalidChannelName> {
        let allowed = |byte: &u8| byte.is_ascii_alphanumeric() || b"_-.:@".contains(byte);
        if (1..=MAX_CHANNEL_NAME).contains(&name.len()) && name.bytes().all(|b| allowed(&b)) {
            Ok(ChannelName(Arc::from(name)))
        } else {
            Err(InvalidChannelName)
        }
    }

    /// The `/wss` channel. One name shared by every `/wss` connection, which holds it for life.
    pub fn broadcast() -> ChannelName {
        static NAME: OnceLock<ChannelName> = OnceLock::new();
        NAME.get_or_init(|| ChannelName(Arc::from(BROADCAST)))
            .clone()
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the `/wss` channel.
    pub fn is_broadcast(&self) -> bool {
        &*self.0 == BROADCAST
    }
}

impl Borrow<str> for ChannelName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The protocol a subscriber speaks, which decides the envelope its messages arrive in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `/wss`: `{"message":<data>}`.
    Wss,
    /// `/v1/ws`: `{"type":"message","channel":"<name>","offset":"<offset>","data":<data>}`.
    V1,
}

/// Where an envelope is written: a `String`, or straight into the frame that carries it.
trait Envelope {
    fn put(&mut self, text: &str);
}

impl Envelope for String {
    fn put(&mut self, text: &str) {
        self.push_str(text);
    }
}

impl Envelope for TextFrameBuilder {
    fn put(&mut self, text: &str) {
        self.push_str(text);
    }
}

const WSS_OPEN: &str = r#"{"message":"#;

fn write_wss_envelope(out: &mut impl Envelope, data: &str) {
    out.put(WSS_OPEN);
    out.put(data);
    out.put("}");
}

fn write_v1_envelope(
    out: &mut impl Envelope,
    channel: &ChannelName,
    data: &str,
    offset: Option<Offset>,
) {
    out.put(r#"{"type":"message","channel":""#);
    out.put(channel.as_str());
    if let Some(offset) = offset {
        out.put(r#"","offset":""#);
        // An offset is hex digits, a dash and decimal digits: nothing to escape.
        out.put(&offset.to_string());
    }
    out.put(r#"","data":"#);
    out.put(data);
    out.put("}");
}

/// Room for everything in a `/v1/ws` envelope but its channel name and data.
const V1_ENVELOPE_ROOM: usize = 80;

/// The `/wss` envelope of `data` (JSON as the publisher wrote it).
pub fn wss_envelope(data: &str) -> String {
    let mut envelope = String::with_capacity(data.len() + WSS_OPEN.len() + 1);
    write_wss_envelope(&mut envelope, data);
    envelope
}

/// The data inside a `/wss` envelope, if `envelope` is one.
pub fn wss_data(envelope: &str) -> Option<&str> {
    envelope.strip_prefix(WSS_OPEN)?.strip_suffix('}')
}

/// The `/v1/ws` envelope of `data` published on `channel`, with its offset when history keeps it.
pub fn v1_envelope(channel: &ChannelName, data: &str, offset: Option<Offset>) -> String {
    let mut envelope =
        String::with_capacity(data.len() + channel.as_str().len() + V1_ENVELOPE_ROOM);
    write_v1_envelope(&mut envelope, channel, data, offset);
    envelope
}

/// The frame of one message for a subscriber speaking `form`, its envelope written in place.
pub(super) fn frame(
    form: Form,
    channel: &ChannelName,
    data: &str,
    offset: Option<Offset>,
) -> Frame {
    match form {
        Form::Wss => {
            let mut frame = TextFrameBuilder::with_capacity(data.len() + WSS_OPEN.len() + 1);
            write_wss_envelope(&mut frame, data);
            frame.finish()
        }
        Form::V1 => {
            let mut frame = TextFrameBuilder::with_capacity(
                data.len() + channel.as_str().len() + V1_ENVELOPE_ROOM,
            );
            write_v1_envelope(&mut frame, channel, data, offset);
            frame.finish()
        }
    }
}

/// One message's frames, built on first need and then shared (the bytes are reference-counted).
#[derive(Default)]
pub(super) struct Frames {
    wss: Option<Frame>,
    v1: Option<Frame>,
}

impl Frames {
    pub(super) fn get(
        &mut self,
        form: Form,
        channel: &ChannelName,
        data: &str,
        offset: Option<Offset>,
    ) -> &Frame {
        let slot = match form {
            Form::Wss => &mut self.wss,
            Form::V1 => &mut self.v1,
        };
        slot.get_or_insert_with(|| frame(form, channel, data, offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_1_to_128_allowed_characters() {
        for good in [
            "a",
            "room:42",
            "user@example.com",
            "A-b_c.d",
            &"x".repeat(128),
        ] {
            assert!(ChannelName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "a/b", "é", "a\"b", "a*", &"x".repeat(129)] {
            assert_eq!(ChannelName::parse(bad), Err(InvalidChannelName), "{bad}");
        }
    }

    #[test]
    fn envelopes_carry_the_data_as_written() {
        let room = ChannelName::parse("room:1").unwrap();
        assert_eq!(
            wss_envelope(r#"{"b":1,"a":2}"#),
            r#"{"message":{"b":1,"a":2}}"#
        );
        assert_eq!(
            v1_envelope(&room, "1.50", None),
            r#"{"type":"message","channel":"room:1","data":1.50}"#
        );
        let offset = Offset::parse("00000000000000ff-7").unwrap();
        assert_eq!(
            v1_envelope(&room, "1.50", Some(offset)),
            r#"{"type":"message","channel":"room:1","offset":"00000000000000ff-7","data":1.50}"#
        );
        assert_eq!(wss_data(&wss_envelope("[1]")), Some("[1]"));
        assert_eq!(wss_data("[1]"), None);
    }

    #[test]
    fn frames_carry_the_envelopes() {
        let room = ChannelName::parse("room:1").unwrap();
        let offset = Some(Offset::parse("00000000000000ff-7").unwrap());
        assert_eq!(
            frame(Form::Wss, &room, "[1]", offset).payload(),
            wss_envelope("[1]").as_bytes()
        );
        assert_eq!(
            frame(Form::V1, &room, "[1]", offset).payload(),
            v1_envelope(&room, "[1]", offset).as_bytes()
        );
    }
}
