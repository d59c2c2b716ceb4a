//! The HTTP surface: which paths exist, what each answers, and the admission checks in front of a
//! WebSocket upgrade (drain, connection limit).
//!
//! Public port: `GET /wss` (broadcast), `GET /echo`, `GET /health`, and the demo page (`GET /`).
//! Admin port: `GET /metrics`.
//! Anything else is 404, a known path with another method is 405, and a plain GET to a WebSocket
//! path is 426 Upgrade Required.

use std::convert::Infallible;
use std::sync::Arc;

use hyper::upgrade::OnUpgrade;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use warp::http::StatusCode;
use warp::http::header::{self, HeaderMap, HeaderValue};
use warp::reject::MethodNotAllowed;
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use crate::connection::{Connection, Route};
use crate::metrics::Metrics;
use crate::serve::{PeerAddr, UpgradeSlot};

/// What the public routes share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// What every accepted connection shares.
    pub connection: Arc<Connection>,
    /// One permit per open connection; `MAX_CONNECTIONS` in all.
    pub permits: Arc<Semaphore>,
}

/// The routes behind the load balancer.
pub fn public(state: AppState) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let health = {
        let state = state.clone();
        warp::path!("health").and(warp::get()).map(move || {
            if state.connection.shutdown.is_draining() {
                text(StatusCode::SERVICE_UNAVAILABLE, "Draining")
            } else {
                text(StatusCode::OK, "Ok")
            }
        })
    };
    health
        .or(crate::demo::routes())
        .unify()
        .or(websocket("wss", Route::Broadcast, state.clone()))
        .unify()
        .or(websocket("echo", Route::Echo, state))
        .unify()
        .recover(answer_rejection)
        .unify()
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
    path: &'static str,
    route: Route,
    state: AppState,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path(path)
        .and(warp::path::end())
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<UpgradeSlot>())
        .and(warp::ext::optional::<PeerAddr>())
        .map(
            move |headers: HeaderMap, slot: Option<UpgradeSlot>, peer: Option<PeerAddr>| {
                let client = client_address(&headers, peer);
                let handshake = Handshake::from_request(&headers, slot);
                admit(&state, handshake, route, client)
            },
        )
}

/// What a valid WebSocket upgrade request brings (RFC 6455, 4.2.1): its key and the connection's
/// upgrade handle.
struct Handshake {
    key: HeaderValue,
    upgrade: OnUpgrade,
}

impl Handshake {
    fn from_request(headers: &HeaderMap, slot: Option<UpgradeSlot>) -> Option<Handshake> {
        let lists = |name: header::HeaderName, token: &str| {
            headers
                .get_all(name)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(','))
                .any(|item| item.trim().eq_ignore_ascii_case(token))
        };
        let upgrade_requested =
            lists(header::CONNECTION, "upgrade") && lists(header::UPGRADE, "websocket");
        let version_13 = headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v == "13");
        let key = headers.get(header::SEC_WEBSOCKET_KEY)?.clone();
        if !(upgrade_requested && version_13) {
            return None;
        }
        Some(Handshake {
            key,
            upgrade: slot?.take()?,
        })
    }
}

fn admit(state: &AppState, handshake: Option<Handshake>, route: Route, client: String) -> Response {
    let Some(handshake) = handshake else {
        let mut response = text(
            StatusCode::UPGRADE_REQUIRED,
            "This endpoint speaks WebSocket only: send a WebSocket upgrade request (Upgrade: websocket, Sec-WebSocket-Version: 13).",
        );
        response
            .headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return response;
    };
    let metrics = &state.connection.metrics;
    if state.connection.shutdown.is_draining() {
        metrics.upgrade_rejected("draining");
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "The server is shutting down; reconnect.",
        );
    }
    let Ok(permit) = Arc::clone(&state.permits).try_acquire_owned() else {
        metrics.upgrade_rejected("connection_limit");
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "Connection limit reached; try again later.",
        );
    };
    // The upgrade completes once hyper has sent the 101 below and handed over the connection.
    let connection = Arc::clone(&state.connection);
    tokio::spawn(connection.serve(handshake.upgrade, route, client, permit));
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
    response
}

/// The client's address for logs: the first hop of X-Forwarded-For when present (CloudFront and
/// the ALB append to it), else the TCP peer.
fn client_address(headers: &HeaderMap, peer: Option<PeerAddr>) -> String {
    let forwarded = headers
        .get("x-forwarded-for")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(',').next())
        .map(str::trim)
        .filter(|first| !first.is_empty());
    match (forwarded, peer) {
        (Some(first), _) => first.to_owned(),
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
