//! The HTTP surface: which paths exist, what each answers, and the admission checks in front of a
//! WebSocket upgrade (drain, connection limit).
//!
//! Public port: `GET /wss` (broadcast), `GET /v1/ws` (channels), `POST /v1/publish`, `GET /echo`,
//! `GET /health`, and the demo page (`GET /`).
//! Admin port: `GET /metrics`.
//! Anything else is 404, a known path with another method is 405, and a plain GET to a WebSocket
//! path is 426 Upgrade Required. An upgrade request that breaks RFC 6455, 4.2.1 is refused before
//! anything is allocated for it: 426 for a version other than 13 (with the one we speak), 400 for
//! the rest. Every 503 closes its socket, so a refused client holds nothing while it backs off.

use std::convert::Infallible;
use std::sync::Arc;

use hyper::upgrade::OnUpgrade;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use warp::http::header::{self, HeaderMap, HeaderValue};
use warp::http::{StatusCode, Version};
use warp::reject::MethodNotAllowed;
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use crate::auth::{self, Authenticator, Carrier, Grant};
use crate::connection;
use crate::hub::channel::BROADCAST;
use crate::metrics::Metrics;
use crate::outbox::Batching;
use crate::protocol::Route;
use crate::publish::PublishApi;
use crate::serve::{PeerAddr, UpgradeSlot};

/// What the public routes share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// What every accepted connection shares.
    pub context: Arc<connection::Context>,
    /// One permit per open connection; `MAX_CONNECTIONS` in all.
    pub permits: Arc<Semaphore>,
    /// Proxies whose X-Forwarded-For entries are trusted (`TRUSTED_PROXY_HOPS`).
    pub trusted_proxy_hops: u8,
    /// `POST /v1/publish`.
    pub publish: Arc<PublishApi>,
    /// Sign-in, when configured: every upgrade needs a valid token.
    pub auth: Option<Arc<Authenticator>>,
}

/// The routes behind the load balancer.
pub fn public(state: AppState) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let health = {
        let state = state.clone();
        warp::path!("health").and(warp::get()).map(move || {
            if state.context.shutdown.is_draining() {
                unavailable("Draining")
            } else {
                text(StatusCode::OK, "Ok")
            }
        })
    };
    health
        .or(crate::demo::routes())
        .unify()
        .or(websocket(
            warp::path!("wss"),
            Route::Broadcast,
            state.clone(),
        ))
        .unify()
        .or(websocket(
            warp::path!("v1" / "ws"),
            Route::Channels,
            state.clone(),
        ))
        .unify()
        .or(websocket(warp::path!("echo"), Route::Echo, state.clone()))
        .unify()
        .or(publish(state.publish))
        .unify()
        .recover(answer_rejection)
        .unify()
}

/// `POST /v1/publish`; any other method is 405 with `Allow: POST`.
fn publish(api: Arc<PublishApi>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "publish")
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(
            move |method: warp::http::Method, headers: HeaderMap, body| {
                let api = Arc::clone(&api);
                async move {
                    if method != warp::http::Method::POST {
                        let mut response =
                            text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
                        response
                            .headers_mut()
                            .insert(header::ALLOW, HeaderValue::from_static("POST"));
                        return response;
                    }
                    let body = Box::pin(futures_util::StreamExt::map(
                        body,
                        |chunk: Result<_, warp::Error>| {
                            chunk.map(|mut chunk| {
                                let remaining = warp::Buf::remaining(&chunk);
                                warp::Buf::copy_to_bytes(&mut chunk, remaining)
                            })
                        },
                    ));
                    api.handle(&headers, body).await
                }
            },
        )
}

/// The routes of the admin port (never exposed through the load balancer).
pub fn admin(
    metrics: Arc<Metrics>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    warp::path!("metrics")
        .and(warp::get())
        .map(move || {
            let mut response = metrics.encode().into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            response
        })
        .recover(answer_rejection)
        .unify()
}

fn websocket(
    path: impl Filter<Extract = (), Error = Rejection> + Clone,
    route: Route,
    state: AppState,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    path.and(warp::get())
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<Version>())
        .and(warp::ext::optional::<UpgradeSlot>())
        .and(warp::ext::optional::<PeerAddr>())
        .and(query)
        .then(
            move |headers: HeaderMap,
                  version: Option<Version>,
                  slot: Option<UpgradeSlot>,
                  peer: Option<PeerAddr>,
                  query: String| {
                let state = state.clone();
                async move {
                    let handshake = match Handshake::from_request(&headers, version, slot) {
                        Ok(handshake) => handshake,
                        Err(refusal) => return refusal.response(),
                    };
                    let signed_in = match &state.auth {
                        None => None,
                        Some(auth) => match sign_in(auth, &headers, &query, route, &state).await {
                            Ok(signed_in) => Some(signed_in),
                            Err(response) => return response,
                        },
                    };
                    let client = client_address(&headers, peer, state.trusted_proxy_hops);
                    admit(&state, handshake, route, client, signed_in)
                }
            },
        )
}

/// A verified token: what it allows, and whether the 101 must select the `bearer` subprotocol.
struct SignedIn {
    grant: Box<Grant>,
    carrier: Carrier,
}

/// Checks the upgrade's token: 401 when it is missing or invalid, 403 when it does not allow the
/// `/wss` channel on `/wss`.
async fn sign_in(
    auth: &Authenticator,
    headers: &HeaderMap,
    query: &str,
    route: Route,
    state: &AppState,
) -> Result<SignedIn, Response> {
    let metrics = &state.context.metrics;
    let refused = |refusal: auth::Refusal| {
        metrics.auth_failed(refusal.label());
        let mut response = text(StatusCode::UNAUTHORIZED, refusal.message());
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        response
    };
    let (token, carrier) =
        auth::token_of(headers, Some(query)).ok_or_else(|| refused(auth::Refusal::Missing))?;
    let grant = auth.verify(token).await.map_err(refused)?;
    if route == Route::Broadcast && !grant.may_subscribe(BROADCAST) {
        metrics.auth_failed("forbidden");
        return Err(text(
            StatusCode::FORBIDDEN,
            "This token does not allow the broadcast channel, which /wss is.",
        ));
    }
    Ok(SignedIn {
        grant: Box::new(grant),
        carrier,
    })
}

/// What a valid WebSocket upgrade request brings (RFC 6455, 4.2.1): its key and the connection's
/// upgrade handle.
struct Handshake {
    key: HeaderValue,
    upgrade: OnUpgrade,
}

/// Why an upgrade request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HandshakeRefusal {
    /// Not an upgrade request at all: a plain GET (426, saying what to send).
    NotAnUpgrade,
    /// A `Sec-WebSocket-Version` other than 13 (426 with the version we speak, RFC 6455, 4.4).
    UnsupportedVersion,
    /// Not HTTP/1.1, no `Host`, or a `Sec-WebSocket-Key` that is not base64 of 16 bytes (400).
    Malformed(&'static str),
}

impl HandshakeRefusal {
    fn response(self) -> Response {
        let (status, body) = match self {
            HandshakeRefusal::NotAnUpgrade => (
                StatusCode::UPGRADE_REQUIRED,
                "This endpoint speaks WebSocket only: send a WebSocket upgrade request (Upgrade: websocket, Sec-WebSocket-Version: 13).",
            ),
            HandshakeRefusal::UnsupportedVersion => (
                StatusCode::UPGRADE_REQUIRED,
                "Unsupported WebSocket version: this server speaks Sec-WebSocket-Version 13.",
            ),
            HandshakeRefusal::Malformed(why) => return text(StatusCode::BAD_REQUEST, why),
        };
        let mut response = text(status, body);
        let headers = response.headers_mut();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        response
    }
}

impl Handshake {
    fn from_request(
        headers: &HeaderMap,
        version: Option<Version>,
        slot: Option<UpgradeSlot>,
    ) -> Result<Handshake, HandshakeRefusal> {
        let lists = |name: header::HeaderName, token: &str| {
            headers
                .get_all(name)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(','))
                .any(|item| item.trim().eq_ignore_ascii_case(token))
        };
        if !(lists(header::CONNECTION, "upgrade") && lists(header::UPGRADE, "websocket")) {
            return Err(HandshakeRefusal::NotAnUpgrade);
        }
        if headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_none_or(|v| v != "13")
        {
            return Err(HandshakeRefusal::UnsupportedVersion);
        }
        if version != Some(Version::HTTP_11) {
            return Err(HandshakeRefusal::Malformed(
                "A WebSocket upgrade must be an HTTP/1.1 request.",
            ));
        }
        if headers.get(header::HOST).is_none_or(HeaderValue::is_empty) {
            return Err(HandshakeRefusal::Malformed(
                "A WebSocket upgrade needs a Host header.",
            ));
        }
        let key = match headers.get(header::SEC_WEBSOCKET_KEY) {
            Some(key) if is_websocket_key(key.as_bytes()) => key.clone(),
            _ => {
                return Err(HandshakeRefusal::Malformed(
                    "Sec-WebSocket-Key must be the base64 encoding of 16 bytes.",
                ));
            }
        };
        // Only a request hyper saw as an upgrade has a handle; without one there is nothing to
        // switch protocols on.
        let upgrade = slot
            .and_then(|slot| slot.take())
            .ok_or(HandshakeRefusal::NotAnUpgrade)?;
        Ok(Handshake { key, upgrade })
    }
}

/// Whether `key` is the base64 encoding of 16 bytes: 22 characters of the base64 alphabet and
/// `==` padding (RFC 6455, 4.1 and 4.2.1).
fn is_websocket_key(key: &[u8]) -> bool {
    let is_base64 = |byte: &u8| byte.is_ascii_alphanumeric() || *byte == b'+' || *byte == b'/';
    key.len() == 24 && key[..22].iter().all(is_base64) && key.ends_with(b"==")
}

fn admit(
    state: &AppState,
    handshake: Handshake,
    route: Route,
    client: String,
    signed_in: Option<SignedIn>,
) -> Response {
    let metrics = &state.context.metrics;
    if state.context.shutdown.is_draining() {
        metrics.upgrade_rejected("draining");
        return unavailable("The server is shutting down; reconnect.");
    }
    let Ok(permit) = Arc::clone(&state.permits).try_acquire_owned() else {
        metrics.upgrade_rejected("connection_limit");
        return unavailable("Connection limit reached; try again later.");
    };
    // The upgrade completes once hyper has sent the 101 below and handed over the connection.
    let context = Arc::clone(&state.context);
    let (grant, carrier) = match signed_in {
        Some(SignedIn { grant, carrier }) => (Some(grant), Some(carrier)),
        None => (None, None),
    };
    // Batching: a burst of messages the client sends is written to each idle recipient in one
    // system call.
    tokio::spawn(Batching::new(context.serve(
        handshake.upgrade,
        route,
        client.into(),
        permit,
        grant,
    )));
    let mut response =
        warp::reply::with_status(warp::reply(), StatusCode::SWITCHING_PROTOCOLS).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    let accept = derive_accept_key(handshake.key.as_bytes());
    headers.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
    );
    if carrier == Some(Carrier::Subprotocol) {
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(auth::BEARER_PROTOCOL),
        );
    }
    response
}

/// The client's address for logs. Each proxy appends the address it received the request from to
/// X-Forwarded-For, so with `hops` trusted proxies in front (CloudFront, then the ALB: 2) the entry
/// `hops` places from the right is the one the first trusted proxy wrote: the client as CloudFront
/// saw it. Entries further left are whatever the client sent, and never used. With fewer entries
/// than hops, which only a misconfiguration produces (a hop that does not append), the leftmost
/// entry is taken as it is. `hops` = 0: the TCP peer.
fn client_address(headers: &HeaderMap, peer: Option<PeerAddr>, hops: u8) -> String {
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .collect();
    let trusted = match usize::from(hops) {
        0 => None,
        hops => forwarded.get(forwarded.len().saturating_sub(hops)),
    };
    match (trusted, peer) {
        (Some(entry), _) => (*entry).to_owned(),
        (None, Some(PeerAddr(peer))) => peer.to_string(),
        (None, None) => "unknown".to_owned(),
    }
}

async fn answer_rejection(rejection: Rejection) -> Result<Response, Infallible> {
    Ok(if rejection.is_not_found() {
        text(StatusCode::NOT_FOUND, "Not Found")
    } else if rejection.find::<MethodNotAllowed>().is_some() {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        response
    } else {
        text(StatusCode::BAD_REQUEST, "Bad Request")
    })
}

fn text(status: StatusCode, body: &'static str) -> Response {
    warp::reply::with_status(body, status).into_response()
}

/// A 503 that closes its socket: the client is told to go elsewhere or come back later, and a
/// keep-alive socket left open would only hold a file descriptor (and a place in the HTTP phase)
/// for nothing.
fn unavailable(body: &'static str) -> Response {
    let mut response = text(StatusCode::SERVICE_UNAVAILABLE, body);
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn client_address_takes_trusted_hops_from_the_right() {
        let peer = Some(PeerAddr("10.0.0.9:4000".parse().unwrap()));
        let headers = forwarded(&["6.6.6.6, 203.0.113.7", "130.176.1.1"]);
        assert_eq!(client_address(&headers, peer, 2), "203.0.113.7");
        assert_eq!(client_address(&headers, peer, 1), "130.176.1.1");
        assert_eq!(client_address(&headers, peer, 0), "10.0.0.9:4000");
        assert_eq!(client_address(&headers, peer, 5), "6.6.6.6");
        assert_eq!(client_address(&HeaderMap::new(), peer, 2), "10.0.0.9:4000");
    }

    #[test]
    fn websocket_keys_are_base64_of_16_bytes() {
        assert!(is_websocket_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        for bad in [
            &b""[..],
            b"abc",
            b"dGhlIHNhbXBsZSBub25jZQ",
            b"dGhlIHNhbXBsZSBub25jZQ=",
            b"dGhlIHNhbXBsZSBub25j!Q==",
            b"dGhlIHNhbXBsZSBub25jZSE=",
        ] {
            assert!(!is_websocket_key(bad), "{bad:?}");
        }
    }
}
