//! `POST /v1/publish`: a backend publishes on channels without holding a WebSocket.
//!
//! The body is one message `{"channel":"c","data":<any JSON>}` or an array of 1 to
//! [`MAX_MESSAGES_PER_REQUEST`] of them, published in order, each reaching the channel's
//! subscribers on every task as a WebSocket publish does. A request is all or nothing: one invalid
//! item refuses it whole, before anything is published. The caller shows a key from
//! `PUBLISH_API_KEYS`, or (with sign-in) a JWT whose claims allow publishing on every channel of the
//! request, as `Authorization: Bearer …`; each key and each token subject has its own rate limit
//! (`PUBLISH_MESSAGES_PER_SECOND`, counted in messages). Errors are `{"code":…,"message":…}`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use warp::http::StatusCode;
use warp::http::header::{self, HeaderMap, HeaderValue};
use warp::reply::Response;

use crate::auth::{Authenticator, Grant};
use crate::hub::{ChannelName, Fanout, Offset, Publication};
use crate::limits::{self, RateLimiter, RateLimits, Verdict};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// Most messages one request may publish; more is 413.
pub const MAX_MESSAGES_PER_REQUEST: usize = 100;

/// Shortest key `PUBLISH_API_KEYS` accepts: 32 characters of a random alphabet are beyond guessing.
pub const MIN_KEY_LENGTH: usize = 32;

/// How long a request may take to send its body. A body trickled a byte at a time would otherwise
/// hold its socket for as long as the client likes.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Token subjects whose rate limits are kept; past it they all start afresh, which costs a
/// publisher with a valid token at most one extra second's worth.
const MAX_SUBJECTS: usize = 10_000;

/// The HTTP publishing endpoint's settings and state. One per process.
#[derive(Debug)]
pub struct PublishApi {
    keys: Vec<Key>,
    /// Sign-in, when configured: a JWT may publish where its claims allow.
    auth: Option<Arc<Authenticator>>,
    /// Rate limits of the token subjects that published.
    subjects: Mutex<HashMap<String, RateLimiter>>,
    limits: RateLimits,
    max_body: usize,
    fanout: Fanout,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
}

#[derive(Debug)]
struct Key {
    secret: Box<[u8]>,
    limiter: Mutex<RateLimiter>,
}

/// Who is publishing.
enum Publisher<'a> {
    /// A key of `PUBLISH_API_KEYS`: any channel.
    Key(&'a Key),
    /// A signed-in token: the channels its claims allow.
    Token(Box<Grant>),
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One item of a request's body.
#[derive(Deserialize)]
struct Item<'a> {
    #[serde(borrow)]
    channel: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "crate::protocol::v1::present")]
    data: Option<&'a RawValue>,
}

/// Checks `PUBLISH_API_KEYS`: comma-separated keys of at least [`MIN_KEY_LENGTH`] printable
/// characters. The error never repeats a key.
pub fn parse_keys(value: &str) -> Result<Vec<String>, String> {
    let keys: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .map(str::to_owned)
        .collect();
    for (index, key) in keys.iter().enumerate() {
        if key.len() < MIN_KEY_LENGTH || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "key {} of {} is not at least {MIN_KEY_LENGTH} printable characters without spaces",
                index + 1,
                keys.len()
            ));
        }
    }
    if keys.is_empty() {
        return Err("holds no key; leave it unset to turn HTTP publishing off".to_owned());
    }
    Ok(keys)
}

/// Why a request is refused.
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Refusal {
        Refusal::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl PublishApi {
    /// The endpoint with `keys` and `auth` (neither: HTTP publishing is off and says so), each
    /// key and token subject allowed `messages_per_second` (0: no limit), bodies up to `max_body`
    /// bytes.
    pub fn new(
        keys: Vec<String>,
        auth: Option<Arc<Authenticator>>,
        messages_per_second: u32,
        max_body: usize,
        fanout: Fanout,
        metrics: Arc<Metrics>,
        shutdown: Shutdown,
    ) -> PublishApi {
        // One second's worth at once, as for a connection's bytes; never less than one request.
        let burst = messages_per_second.max(MAX_MESSAGES_PER_REQUEST as u32);
        let limits = RateLimits::new(messages_per_second, burst, 0, 0);
        PublishApi {
            keys: keys
                .into_iter()
                .map(|key| Key {
                    secret: key.into_bytes().into_boxed_slice(),
                    limiter: Mutex::new(RateLimiter::new(&limits)),
                })
                .collect(),
            auth,
            subjects: Mutex::default(),
            limits,
            max_body,
            fanout,
            metrics,
            shutdown,
        }
    }

    /// Answers one request.
    pub async fn handle<B>(&self, headers: &HeaderMap, body: B) -> Response
    where
        B: Stream<Item = Result<Bytes, warp::Error>> + Unpin,
    {
        match self.publish(headers, body).await {
            Ok(offsets) => {
                self.metrics.messages_broadcast.inc_by(offsets.len() as u64);
                // In request order; `null` for a message without one (history off, or Redis
                // unreachable when it was published).
                let offsets: Vec<Option<String>> = offsets
                    .iter()
                    .map(|offset| offset.map(|offset| offset.to_string()))
                    .collect();
                json(
                    StatusCode::OK,
                    serde_json::json!({ "offsets": offsets }).to_string(),
                )
            }
            Err(refusal) => {
                self.metrics.publish_refused(refusal.code);
                let body = serde_json::json!({"code": refusal.code, "message": refusal.message});
                let mut response = json(refusal.status, body.to_string());
                if refusal.status == StatusCode::UNAUTHORIZED {
                    response
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                }
                if refusal.status == StatusCode::SERVICE_UNAVAILABLE {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                response
            }
        }
    }

    async fn publish<B>(&self, headers: &HeaderMap, body: B) -> Result<Vec<Option<Offset>>, Refusal>
    where
        B: Stream<Item = Result<Bytes, warp::Error>> + Unpin,
    {
        if self.shutdown.is_draining() {
            return Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "draining",
                "this task is shutting down; retry",
            ));
        }
        if self.keys.is_empty() && self.auth.is_none() {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "publish_disabled",
                "HTTP publishing is not set up on this deployment (neither PUBLISH_API_KEYS nor sign-in is configured)",
            ));
        }
        let publisher = self.authenticate(headers).await?;
        let body = read_body(body, self.max_body).await?;
        let publications = parse(&body)?;
        if let Publisher::Token(grant) = &publisher
            && let Some(refused) = publications
                .iter()
                .find(|p| !grant.may_publish(p.channel.as_str()))
        {
            self.metrics.auth_failed("forbidden");
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "the token does not allow publishing on {}; nothing was published",
                    refused.channel
                ),
            ));
        }
        let bytes = publications.iter().map(|p| p.data.len()).sum();
        let count = publications.len();
        let verdict = match &publisher {
            Publisher::Key(key) => lock(&key.limiter).admit_all(&self.limits, count, bytes),
            Publisher::Token(grant) => {
                let mut subjects = lock(&self.subjects);
                let subject = grant.subject.clone().unwrap_or_default();
                if subjects.len() >= MAX_SUBJECTS && !subjects.contains_key(&subject) {
                    subjects.clear();
                }
                subjects
                    .entry(subject)
                    .or_insert_with(|| RateLimiter::new(&self.limits))
                    .admit_all(&self.limits, count, bytes)
            }
        };
        if verdict != Verdict::Accept {
            return Err(Refusal::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "over this key's PUBLISH_MESSAGES_PER_SECOND; nothing was published",
            ));
        }
        Ok(self.fanout.publish_for_offsets(publications).await)
    }

    async fn authenticate(&self, headers: &HeaderMap) -> Result<Publisher<'_>, Refusal> {
        let unauthorized = |message: &str| {
            Refusal::new(StatusCode::UNAUTHORIZED, "unauthorized", message.to_owned())
        };
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                unauthorized(
                    "send a publish key or a token as Authorization: Bearer <key or token>",
                )
            })?;
        // Every key is compared, in constant time, so the answer's timing says nothing about
        // which key or how much of one matched.
        let mut found = None;
        for key in &self.keys {
            if constant_time_eq(&key.secret, token.as_bytes()) {
                found = Some(key);
            }
        }
        if let Some(key) = found {
            return Ok(Publisher::Key(key));
        }
        let Some(auth) = &self.auth else {
            return Err(unauthorized("the publish key is not valid"));
        };
        match auth.verify(token).await {
            Ok(grant) => Ok(Publisher::Token(Box::new(grant))),
            Err(refusal) => {
                self.metrics.auth_failed(refusal.label());
                Err(unauthorized(if self.keys.is_empty() {
                    refusal.message()
                } else {
                    "neither a valid publish key nor a valid token"
                }))
            }
        }
    }
}

/// Reads the whole body, refusing one over `limit` bytes (413) or slower than [`BODY_TIMEOUT`].
async fn read_body<B>(mut body: B, limit: usize) -> Result<Bytes, Refusal>
where
    B: Stream<Item = Result<Bytes, warp::Error>> + Unpin,
{
    let too_large = || {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is over {limit} bytes (MAX_MESSAGE_SIZE)"),
        )
    };
    let read = async {
        let mut collected = BytesMut::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|_| Refusal::bad_request("the body could not be read"))?;
            if collected.len() + chunk.remaining() > limit {
                return Err(too_large());
            }
            collected.extend_from_slice(&chunk);
        }
        Ok(collected.freeze())
    };
    tokio::time::timeout(BODY_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| {
            Err(Refusal::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "the body took too long to arrive",
            ))
        })
}

/// The messages of a body, or why it is refused (nothing is published then).
fn parse(body: &[u8]) -> Result<Vec<Publication>, Refusal> {
    let text = std::str::from_utf8(body)
        .map_err(|_| Refusal::bad_request("the body is not UTF-8 JSON"))?;
    if limits::json_deeper_than(text, limits::MAX_JSON_DEPTH) {
        return Err(Refusal::bad_request("the body is nested too deeply"));
    }
    let value: &RawValue = serde_json::from_str(text)
        .map_err(|_| Refusal::bad_request("the body is not one JSON value"))?;
    let items: Vec<&RawValue> = if value.get().starts_with('[') {
        serde_json::from_str(value.get())
            .map_err(|_| Refusal::bad_request("the body is not one JSON value"))?
    } else {
        vec![value]
    };
    if items.len() > MAX_MESSAGES_PER_REQUEST {
        return Err(Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_messages",
            format!("at most {MAX_MESSAGES_PER_REQUEST} messages per request"),
        ));
    }
    if items.is_empty() {
        return Err(Refusal::bad_request("the array holds no message"));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let refuse = |why: &str| Refusal::bad_request(format!("message {index}: {why}"));
            let item: Item = serde_json::from_str(item.get())
                .map_err(|_| refuse("not an object with a channel and data"))?;
            let channel = item.channel.ok_or_else(|| refuse("channel is missing"))?;
            let channel = ChannelName::parse(&channel).map_err(|err| refuse(&err.to_string()))?;
            let data = item.data.ok_or_else(|| refuse("data is missing"))?;
            Ok(Publication {
                channel,
                data: data.get().into(),
            })
        })
        .collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn json(status: StatusCode, body: String) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_long_and_never_repeated_in_errors() {
        let good = "k".repeat(32);
        assert_eq!(parse_keys(&format!("{good}, {good}x")).unwrap().len(), 2);
        let err = parse_keys(&format!("{good},short-secret")).unwrap_err();
        assert!(
            err.contains("key 2 of 2") && !err.contains("short-secret"),
            "{err}"
        );
        assert!(parse_keys(" , ").is_err());
        assert!(
            parse_keys(&format!("{} x", "k".repeat(32))).is_err(),
            "no spaces"
        );
    }

    #[test]
    fn a_body_is_one_message_or_an_array_all_or_nothing() {
        let one = parse(br#"{"channel":"a","data":{"z":1,"a":2}}"#)
            .ok()
            .unwrap();
        assert_eq!(&*one[0].data, r#"{"z":1,"a":2}"#);
        let many = parse(br#"[{"channel":"a","data":1},{"channel":"b","data":null}]"#)
            .ok()
            .unwrap();
        assert_eq!(many.len(), 2);
        assert_eq!(&*many[1].data, "null");
        for bad in [
            &br#"[{"channel":"a","data":1},{"channel":"bad name","data":1}]"#[..],
            br#"{"channel":"a"}"#,
            br#"{"data":1}"#,
            b"[]",
            b"42",
            b"{",
        ] {
            let refusal = parse(bad).err().unwrap();
            assert_eq!(refusal.status, StatusCode::BAD_REQUEST, "{bad:?}");
        }
        let too_many = format!("[{}]", vec![r#"{"channel":"a","data":1}"#; 101].join(","));
        assert_eq!(
            parse(too_many.as_bytes()).err().unwrap().status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    #[test]
    fn keys_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
