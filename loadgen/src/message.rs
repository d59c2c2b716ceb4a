//! The load generator's messages: built by senders, recognised by receivers.
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

/// The prefix every broadcast of a load generator message starts with.
const BROADCAST_PREFIX: &[u8] = br#"{"message":{"r":"#;

/// Reads the stamp from a broadcast `{"message":{…}}` of an [`encode`]d message; `None` for
/// anything else (the greeting, other clients' messages).
pub fn decode_broadcast(frame: &[u8]) -> Option<Stamp> {
    let rest = frame.strip_prefix(BROADCAST_PREFIX)?;
    let (run, rest) = number(rest)?;
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
            b"",
        ] {
            assert_eq!(decode_broadcast(frame), None, "{frame:?}");
        }
    }
}
