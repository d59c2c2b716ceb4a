//! The load generator's messages: built by senders, recognised by receivers, on `/wss` (sent as
//! they are, received in `{"message":…}`) and on `/v1/ws` (published and received in the channel
//! protocol's envelopes, as their `data`).
//!
//! A message carries its run, sender, sequence number and send time, so that every receiver can
//! tell lost, duplicated and foreign messages apart and measure one-way latency without a clock
//! shared between machines (senders and receivers are in the same process). The fields come first
//! and in a fixed order, so a receiver reads them with a few byte comparisons instead of a JSON
//! parse: at millions of deliveries a second the load generator must stay cheaper than the server.

/// What identifies a message; the padding is not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The run that sent it; other runs' messages on the same deployment are ignored.
    pub run: u32,
    /// The sending client's index.
    pub sender: u32,
    /// The sender's sequence number, from 0.
    pub seq: u64,
    /// When it was sent (or meant to be, at a fixed rate), in microseconds since the run started.
    pub sent_us: u64,
}

/// The JSON a sender sends, padded with `p` to `size` bytes where the fields leave room.
pub fn encode(stamp: Stamp, size: usize) -> String {
    let Stamp {
        run,
        sender,
        seq,
        sent_us,
    } = stamp;
    let mut json = format!(r#"{{"r":{run},"s":{sender},"n":{seq},"t":{sent_us},"p":""#);
    let padding = size.saturating_sub(json.len() + 2);
    json.extend(std::iter::repeat_n('x', padding));
    json.push_str("\"}");
    json
}

/// The `/v1/ws` frame that publishes an [`encode`]d message of about `size` bytes on `channel`.
pub fn publish(channel: &str, stamp: Stamp, size: usize) -> String {
    let data = encode(stamp, size);
    format!(r#"{{"type":"publish","channel":"{channel}","data":{data}}}"#)
}

/// Reads the stamp from a broadcast `{"message":{…}}` of an [`encode`]d message; `None` for
/// anything else (the greeting, other clients' messages).
pub fn decode_broadcast(frame: &[u8]) -> Option<Stamp> {
    fields(frame.strip_prefix(br#"{"message":"#)?)
}

/// Reads the channel and the stamp from a `/v1/ws` `{"type":"message","channel":…,"data":{…}}`
/// (with an `"offset"` before `"data"` or without) of
/// an [`encode`]d message; `None` for anything else (replies, other clients' messages).
pub fn decode_channel_message(frame: &[u8]) -> Option<(&[u8], Stamp)> {
    let rest = frame.strip_prefix(br#"{"type":"message","channel":""#)?;
    // Channel names have no quotes or escapes (the server allows `A-Z a-z 0-9 _ - . : @`).
    let end = rest.iter().position(|&byte| byte == b'"')?;
    let (channel, rest) = rest.split_at(end);
    // The offset, when the server keeps history: hex digits and a dash and digits, no quotes.
    let rest = match rest.strip_prefix(br#"","offset":""#) {
        Some(offset) => &offset[offset.iter().position(|&byte| byte == b'"')?..],
        None => rest,
    };
    Some((channel, fields(rest.strip_prefix(br#"","data":"#)?)?))
}

/// The stamp of an [`encode`]d message at the start of `json`.
fn fields(json: &[u8]) -> Option<Stamp> {
    let (run, rest) = number(json.strip_prefix(br#"{"r":"#)?)?;
    let (sender, rest) = number(rest.strip_prefix(br#","s":"#)?)?;
    let (seq, rest) = number(rest.strip_prefix(br#","n":"#)?)?;
    let (sent_us, _) = number(rest.strip_prefix(br#","t":"#)?)?;
    Some(Stamp {
        run: u32::try_from(run).ok()?,
        sender: u32::try_from(sender).ok()?,
        seq,
        sent_us,
    })
}

/// The decimal number at the start of `bytes`, and what follows it.
fn number(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    let value = bytes[..digits]
        .iter()
        .fold(0u64, |value, digit| value * 10 + u64::from(digit - b'0'));
    Some((value, &bytes[digits..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAMP: Stamp = Stamp {
        run: 7,
        sender: 3,
        seq: 12_345,
        sent_us: 987_654_321,
    };

    #[test]
    fn a_broadcast_of_an_encoded_message_decodes_to_its_stamp() {
        let message = encode(STAMP, 128);
        assert_eq!(message.len(), 128);
        serde_json::from_str::<serde_json::Value>(&message).expect("valid JSON");
        let broadcast = format!(r#"{{"message":{message}}}"#);
        assert_eq!(decode_broadcast(broadcast.as_bytes()), Some(STAMP));
    }

    #[test]
    fn a_channel_message_of_a_publish_decodes_to_its_channel_and_stamp() {
        let publish = publish("bench:42", STAMP, 128);
        let frame: serde_json::Value = serde_json::from_str(&publish).expect("valid JSON");
        assert_eq!(frame["type"], "publish");
        assert_eq!(frame["channel"], "bench:42");
        assert_eq!(frame["data"]["n"], STAMP.seq);
        let data = encode(STAMP, 128);
        // As the server writes it: the data exactly as published.
        let message = format!(r#"{{"type":"message","channel":"bench:42","data":{data}}}"#);
        assert_eq!(
            decode_channel_message(message.as_bytes()),
            Some((&b"bench:42"[..], STAMP))
        );
        assert_eq!(decode_broadcast(message.as_bytes()), None);
        // With history, an offset comes before the data.
        let message = format!(
            r#"{{"type":"message","channel":"bench:42","offset":"00000000000000ff-7","data":{data}}}"#
        );
        assert_eq!(
            decode_channel_message(message.as_bytes()),
            Some((&b"bench:42"[..], STAMP))
        );
    }

    #[test]
    fn a_size_smaller_than_the_fields_only_drops_the_padding() {
        let message = encode(STAMP, 1);
        assert!(message.ends_with(r#""p":""}"#), "{message}");
    }

    #[test]
    fn anything_else_is_not_a_stamp() {
        for frame in [
            &br#"{"connection":"ok"}"#[..],
            br#"{"message":{"hello":1}}"#,
            br#"{"message":{"r":1,"s":2}}"#,
            br#"{"message":{"r":99999999999,"s":2,"n":3,"t":4}}"#,
            br#"{"type":"subscribed","channel":"bench:1"}"#,
            br#"{"type":"message","channel":"bench:1","data":{"hello":1}}"#,
            br#"{"type":"message","channel":"bench:1"#,
            br#"{"type":"message","channel":"bench:1","offset":"00000000000000ff-7"#,
            b"",
        ] {
            assert_eq!(decode_broadcast(frame), None, "{frame:?}");
            assert_eq!(decode_channel_message(frame), None, "{frame:?}");
        }
    }
}
