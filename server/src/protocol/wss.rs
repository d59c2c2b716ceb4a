//! `/wss`, the fixed wire contract of the replaced server: a greeting, then every JSON message a
//! client sends reaches every client as `{"message": <the JSON as sent>}`.

use serde_json::value::RawValue;

use super::Message;
use crate::hub::{ChannelName, Publication};
use crate::limits;
use crate::metrics::Metrics;

/// The first frame on `/wss`, as the replaced server sent it.
pub const GREETING: &str = r#"{"connection":"ok"}"#;

/// Why a client's message is not broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not one JSON value in UTF-8.
    InvalidJson,
    /// Nested deeper than `limits::MAX_JSON_DEPTH`.
    TooDeep,
}

impl Refused {
    /// The `reason` label of `websocket_messages_dropped_total`.
    pub fn label(self) -> &'static str {
        match self {
            Refused::InvalidJson => "invalid_json",
            Refused::TooDeep => "too_deep",
        }
    }
}

/// The JSON a client's message carries: validated, and forwarded as the client wrote it rather
/// than re-encoded (the value is the same, the sender's key order is kept, and no tree is built).
///
/// Text and binary frames are treated alike, as the replaced Node server did (it parsed whatever
/// bytes arrived).
pub fn data(message: Message<'_>) -> Result<&str, Refused> {
    let text = match message {
        // Checked by the reader.
        Message::Text(text) => text,
        Message::Binary(bytes) => std::str::from_utf8(bytes).map_err(|_| Refused::InvalidJson)?,
    };
    // serde_json's recursion limit does not apply to a RawValue, which it skips over without
    // recursing, so depth is checked on its own.
    let value: &RawValue = serde_json::from_str(text).map_err(|_| Refused::InvalidJson)?;
    let json = value.get();
    if limits::json_deeper_than(json, limits::MAX_JSON_DEPTH) {
        return Err(Refused::TooDeep);
    }
    Ok(json)
}

/// What a client's message publishes on the `broadcast` channel, counted as broadcast; `None`
/// (counted as dropped, by reason) when it is not one JSON value within the depth limit.
pub fn accept(message: Message<'_>, metrics: &Metrics) -> Option<Publication> {
    match data(message) {
        Ok(data) => {
            metrics.messages_broadcast.inc();
            Some(Publication {
                channel: ChannelName::broadcast(),
                data: data.into(),
            })
        }
        Err(refused) => {
            metrics.messages_dropped(refused.label(), 1);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::hub::channel::wss_envelope;

    /// The envelope of `payload` sent as a binary frame, which a text frame of the same bytes
    /// (when they are UTF-8) must get too.
    fn envelope(payload: &[u8]) -> Result<String, Refused> {
        let binary = data(Message::Binary(payload)).map(wss_envelope);
        if let Ok(text) = std::str::from_utf8(payload) {
            assert_eq!(data(Message::Text(text)).map(wss_envelope), binary);
        }
        binary
    }

    #[test]
    fn envelope_wraps_json_as_written() {
        assert_eq!(
            envelope(br#" {"b":1,"a":[true]} "#).unwrap(),
            r#"{"message":{"b":1,"a":[true]}}"#
        );
        assert_eq!(envelope(b"42").unwrap(), r#"{"message":42}"#);
        assert_eq!(envelope(br#""hi""#).unwrap(), r#"{"message":"hi"}"#);
    }

    #[test]
    fn envelope_refuses_what_is_not_one_json_value() {
        for payload in [
            &b"hello"[..],
            b"{",
            b"1 2",
            b"",
            b"\xff\xfe",
            br#"{"a":1}x"#,
        ] {
            assert_eq!(envelope(payload), Err(Refused::InvalidJson), "{payload:?}");
        }
    }

    #[test]
    fn envelope_refuses_json_nested_too_deep() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(envelope(deep.as_bytes()), Err(Refused::TooDeep));
        let fine = format!("{}{}", "{\"a\":[".repeat(64), "]}".repeat(64));
        assert!(envelope(fine.as_bytes()).is_ok());
    }
}
