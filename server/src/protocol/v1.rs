//! `/v1/ws`: channels over small JSON envelopes, every frame one object with a `type`.
//!
//! Client to server: `subscribe`, `unsubscribe` and `publish`, each naming a `channel` (a publish
//! also carries `data`, any JSON). Any of them may carry an `id` (a string or a number the client
//! picks); such a frame gets exactly one `ack` or `error` with that `id`, after everything else it
//! causes (`subscribed` comes before the `ack` of its subscribe). With sign-in, `refresh` carries
//! a newer token before the current one expires (the connection closes with 1008 when it does). Server to client: `subscribed`,
//! `unsubscribed`, `message` (the data exactly as published, and its `offset` when the server
//! keeps history) and `error` with a `code`. A subscribe with `since` (an offset) resumes: its
//! `subscribed` says whether what followed that offset is `recovered`, and those messages follow
//! it, before any live one.
//!
//! A frame that is not one JSON object with a known `type` is answered with `error` `bad_request`
//! and the connection stays open. Replies queue in the connection's outbox like messages, so a
//! client that sends frames and never reads is evicted as a slow consumer like any other.

use std::borrow::Cow;

use crate::frame::Frame;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use std::time::SystemTime;

use crate::auth::Grant;
use crate::connection::Context;
use crate::hub::{ChannelName, Offset, Publication, Subscriber};
use crate::limits;
use crate::metrics::Metrics;
use crate::outbox::Evicted;

/// The error codes a client can get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Not one JSON object with a known `type`, or a field missing or malformed.
    BadRequest,
    /// The connection's token does not allow this channel, or a refresh's token is refused.
    Forbidden,
    /// Subscribing would hold more than `MAX_CHANNELS_PER_CONNECTION` channels.
    TooManyChannels,
    /// Over the connection's message or byte rate; the frame was dropped.
    RateLimited,
    /// A subscribe asked to resume (`since`) from a server that keeps no history.
    HistoryDisabled,
}

impl Code {
    /// The `code` field, and the `reason` label when the frame is counted as dropped.
    pub fn label(self) -> &'static str {
        match self {
            Code::BadRequest => "bad_request",
            Code::Forbidden => "forbidden",
            Code::TooManyChannels => "too_many_channels",
            Code::RateLimited => "rate_limited",
            Code::HistoryDisabled => "history_disabled",
        }
    }
}

/// A client frame as parsed: borrowed from the frame's text, `data` and `id` kept as written.
#[derive(Deserialize)]
struct ClientFrame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    channel: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "present")]
    data: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    token: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    since: Option<Cow<'a, str>>,
}

/// A field that is present, `null` included: `Option<&RawValue>` alone reads `null` as absent,
/// and `null` is data a client may publish (over `/v1/ws` or `POST /v1/publish`).
pub(crate) fn present<'de, D: Deserializer<'de>>(
    field: D,
) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(field).map(Some)
}

/// Only the `id`, from a frame whose other fields were not needed (one dropped by the rate limit).
#[derive(Deserialize)]
struct IdOnly<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    id: Option<&'a RawValue>,
}

/// One `/v1/ws` connection's channels and what it may do.
#[derive(Debug)]
pub struct Session {
    subscriber: Subscriber,
    max_channels: usize,
    /// What the connection's token allows, with sign-in.
    grant: Option<Grant>,
    /// A refresh replaced the grant since the reader last asked.
    refreshed: bool,
}

/// A reply's `id` as the client wrote it.
type Id<'a> = Option<&'a RawValue>;

impl Session {
    /// A session whose client may hold up to `max_channels` channels at once, within what
    /// `grant` allows (everything without sign-in).
    pub fn new(subscriber: Subscriber, max_channels: usize, grant: Option<Grant>) -> Session {
        Session {
            subscriber,
            max_channels,
            grant,
            refreshed: false,
        }
    }

    /// When the connection's token now ends, if a refresh changed it since the last call.
    pub fn take_refreshed(&mut self) -> Option<SystemTime> {
        std::mem::take(&mut self.refreshed)
            .then(|| self.expires())
            .flatten()
    }

    /// When the connection's token ends, with sign-in.
    pub fn expires(&self) -> Option<SystemTime> {
        self.grant.as_ref().map(|grant| grant.expires)
    }

    /// The subscriber whose outbox the connection's writer drains.
    pub fn subscriber(&self) -> &Subscriber {
        &self.subscriber
    }

    /// Does what one client frame asks. `Err` only when the client's outbox overflowed: it is
    /// evicted, and the connection ends as a slow consumer.
    pub async fn receive(&mut self, payload: &[u8], context: &Context) -> Result<(), Evicted> {
        let metrics = &*context.metrics;
        let frame = match parse(payload) {
            Ok(frame) => frame,
            Err((id, message)) => return self.refuse(id, Code::BadRequest, message, metrics),
        };
        let id = frame.id;
        if let Some(id) = id
            && !is_string_or_number(id)
        {
            return self.refuse(
                Some(id),
                Code::BadRequest,
                "id must be a string or a number",
                metrics,
            );
        }
        let channel = match frame.kind.as_ref() {
            "subscribe" | "unsubscribe" | "publish" => match channel(&frame) {
                Ok(channel) => channel,
                Err(message) => return self.refuse(id, Code::BadRequest, message, metrics),
            },
            "refresh" => return self.refresh(&frame, context).await,
            _ => {
                return self.refuse(
                    id,
                    Code::BadRequest,
                    "type must be subscribe, unsubscribe, publish or refresh",
                    metrics,
                );
            }
        };
        let allowed = match (frame.kind.as_ref(), &self.grant) {
            (_, None) | ("unsubscribe", _) => true,
            ("subscribe", Some(grant)) => grant.may_subscribe(channel.as_str()),
            (_, Some(grant)) => grant.may_publish(channel.as_str()),
        };
        if !allowed {
            return self.refuse(
                id,
                Code::Forbidden,
                "the connection's token does not allow this channel",
                metrics,
            );
        }
        match frame.kind.as_ref() {
            "subscribe" => {
                let since = match frame.since.as_deref().map(Offset::parse) {
                    None => None,
                    Some(Ok(since)) => Some(since),
                    Some(Err(_)) => {
                        return self.refuse(
                            id,
                            Code::BadRequest,
                            "since must be an offset from a message of this channel",
                            metrics,
                        );
                    }
                };
                if since.is_some() && !context.hub.keeps_history() {
                    return self.refuse(
                        id,
                        Code::HistoryDisabled,
                        "this server keeps no history to resume from; subscribe without since",
                        metrics,
                    );
                }
                if !self.subscriber.holds(channel.as_str()) {
                    if self.subscriber.channel_count() >= self.max_channels {
                        return self.refuse(
                            id,
                            Code::TooManyChannels,
                            "this connection holds as many channels as it may; unsubscribe from one first",
                            metrics,
                        );
                    }
                    match since {
                        None => {
                            let subscribed = notice("subscribed", &channel);
                            self.subscriber.join(channel, Some(subscribed)).await?;
                        }
                        Some(since) => {
                            let name = channel.clone();
                            let subscribed = move |recovered| resumed(&name, recovered);
                            self.subscriber.resume(channel, since, subscribed).await?;
                        }
                    }
                }
            }
            "unsubscribe" => {
                let unsubscribed = notice("unsubscribed", &channel);
                self.subscriber
                    .leave(channel.as_str(), Some(unsubscribed))?;
            }
            _ => {
                let Some(data) = frame.data else {
                    return self.refuse(id, Code::BadRequest, "publish needs data", metrics);
                };
                metrics.messages_broadcast.inc();
                context
                    .fanout
                    .publish(Publication {
                        channel,
                        data: data.get().into(),
                    })
                    .await;
            }
        }
        match id {
            Some(id) => self.subscriber.send(ack(id)),
            None => Ok(()),
        }
    }

    /// `{"type":"refresh","token":…}`: a newer token for the same subject replaces the grant;
    /// channels it no longer allows end with `unsubscribed`. A refused refresh changes nothing.
    /// Both tokens must name their subject: without a `sub`, nothing shows that the new token
    /// was issued to whoever holds the connection.
    async fn refresh(&mut self, frame: &ClientFrame<'_>, context: &Context) -> Result<(), Evicted> {
        let metrics = &*context.metrics;
        let id = frame.id;
        let (Some(auth), Some(current)) = (&context.auth, &self.grant) else {
            return self.refuse(
                id,
                Code::BadRequest,
                "sign-in is not configured on this server",
                metrics,
            );
        };
        let Some(token) = frame.token.as_deref() else {
            return self.refuse(id, Code::BadRequest, "refresh needs a token", metrics);
        };
        let grant = match auth.verify(token).await {
            Ok(grant) => grant,
            Err(refusal) => {
                metrics.auth_failed(refusal.label());
                return self.refuse(id, Code::Forbidden, refusal.message(), metrics);
            }
        };
        let same_subject = matches!(
            (&grant.subject, &current.subject),
            (Some(new), Some(current)) if new == current
        );
        if !same_subject {
            metrics.auth_failed("other_subject");
            let message = match (&grant.subject, &current.subject) {
                (Some(_), Some(_)) => "the new token is for another subject",
                _ => "a refresh needs a sub in both the current and the new token",
            };
            return self.refuse(id, Code::Forbidden, message, metrics);
        }
        if grant.expires < current.expires {
            metrics.auth_failed("older");
            return self.refuse(
                id,
                Code::Forbidden,
                "the new token expires before the current one",
                metrics,
            );
        }
        let lost: Vec<ChannelName> = self
            .subscriber
            .channels()
            .iter()
            .filter(|channel| !grant.may_subscribe(channel.as_str()))
            .cloned()
            .collect();
        self.grant = Some(grant);
        self.refreshed = true;
        for channel in lost {
            let unsubscribed = notice("unsubscribed", &channel);
            self.subscriber
                .leave(channel.as_str(), Some(unsubscribed))?;
        }
        match id {
            Some(id) => self.subscriber.send(ack(id)),
            None => Ok(()),
        }
    }

    /// Answers a frame the rate limit dropped, if it asked for an answer.
    pub fn rate_limited(&self, payload: &[u8]) -> Result<(), Evicted> {
        let id = std::str::from_utf8(payload)
            .ok()
            .and_then(|text| serde_json::from_str::<IdOnly>(text).ok())
            .and_then(|frame| frame.id);
        match id {
            Some(id) => self.subscriber.send(error(
                Some(id),
                Code::RateLimited,
                "over this connection's message or byte rate; the frame was dropped",
            )),
            None => Ok(()),
        }
    }

    fn refuse(
        &self,
        id: Id<'_>,
        code: Code,
        message: &str,
        metrics: &Metrics,
    ) -> Result<(), Evicted> {
        metrics.messages_dropped(code.label(), 1);
        self.subscriber.send(error(id, code, message))
    }
}

/// The frame, or why it is not one (with its `id` when that much could be read).
fn parse(payload: &[u8]) -> Result<ClientFrame<'_>, (Id<'_>, &'static str)> {
    const NOT_A_FRAME: &str = "a frame is one JSON object with a type";
    let text = std::str::from_utf8(payload).map_err(|_| (None, NOT_A_FRAME))?;
    if limits::json_deeper_than(text, limits::MAX_JSON_DEPTH) {
        return Err((None, "the frame is nested too deeply"));
    }
    serde_json::from_str(text).map_err(|_| {
        let id = serde_json::from_str::<IdOnly>(text).ok().and_then(|f| f.id);
        (id, NOT_A_FRAME)
    })
}

fn channel(frame: &ClientFrame<'_>) -> Result<ChannelName, &'static str> {
    let name = frame.channel.as_deref().ok_or("channel is missing")?;
    ChannelName::parse(name)
        .map_err(|_| "a channel name is 1 to 128 characters of A-Z a-z 0-9 _ - . : @")
}

fn is_string_or_number(id: &RawValue) -> bool {
    id.get()
        .bytes()
        .next()
        .is_some_and(|first| first == b'"' || first == b'-' || first.is_ascii_digit())
}

fn notice(kind: &str, channel: &ChannelName) -> Frame {
    Frame::text(format!(r#"{{"type":"{kind}","channel":"{channel}"}}"#))
}

/// The `subscribed` of a subscribe with `since`: whether every message after it follows.
fn resumed(channel: &ChannelName, recovered: bool) -> Frame {
    Frame::text(format!(
        r#"{{"type":"subscribed","channel":"{channel}","recovered":{recovered}}}"#
    ))
}

fn ack(id: &RawValue) -> Frame {
    Frame::text(format!(r#"{{"type":"ack","id":{}}}"#, id.get()))
}

fn error(id: Id<'_>, code: Code, message: &str) -> Frame {
    let message = serde_json::to_string(message).expect("a string serializes");
    let code = code.label();
    Frame::text(match id {
        Some(id) => format!(
            r#"{{"type":"error","id":{},"code":"{code}","message":{message}}}"#,
            id.get()
        ),
        None => format!(r#"{{"type":"error","code":"{code}","message":{message}}}"#),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_keep_data_and_id_as_written() {
        let frame = parse(br#"{"type":"publish","channel":"a","data":{"b":1.50,"a":null},"id":7}"#)
            .ok()
            .unwrap();
        assert_eq!(frame.kind, "publish");
        assert_eq!(frame.data.unwrap().get(), r#"{"b":1.50,"a":null}"#);
        assert_eq!(frame.id.unwrap().get(), "7");
        let null = parse(br#"{"type":"publish","channel":"a","data":null}"#)
            .ok()
            .unwrap();
        assert_eq!(
            null.data.unwrap().get(),
            "null",
            "null is data, not absence"
        );
    }

    #[test]
    fn what_is_not_a_frame_is_refused_with_its_id_when_readable() {
        for bad in [&b"[1]"[..], b"hello", b"{}", br#"{"type":1}"#, b"\xff"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let (id, _) = parse(br#"{"type":7,"id":"x"}"#).err().unwrap();
        assert_eq!(id.unwrap().get(), r#""x""#);
    }

    #[test]
    fn ids_are_strings_or_numbers() {
        fn raw(json: &str) -> &RawValue {
            serde_json::from_str(json).unwrap()
        }
        assert!(is_string_or_number(raw(r#""a""#)));
        assert!(is_string_or_number(raw("-1.5e3")));
        assert!(!is_string_or_number(raw("{}")));
        assert!(!is_string_or_number(raw("true")));
    }

    #[test]
    fn errors_escape_their_message() {
        let frame = error(None, Code::BadRequest, "say \"hi\"");
        assert_eq!(
            frame.payload(),
            br#"{"type":"error","code":"bad_request","message":"say \"hi\""}"#
        );
    }
}
