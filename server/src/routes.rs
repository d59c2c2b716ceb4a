//! The HTTP surface: which paths exist, what each answers, and the admission checks in front of a
//! WebSocket upgrade (drain, connection limit).
//!
//! Public port: `GET /wss` (broadcast), `GET /echo`, `GET /health`, and the demo page (`GET /`).
//! Admin port: `GET /metrics`.
//! Anything else is 404, a known path with another method is 405, and a plain GET to a WebSocket
//! path is 426 Upgrade Required.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::Semaphore;
use warp::http::{StatusCode, header};
use warp::reject::MethodNotAllowed;
use warp::reply::{Reply, Response};
use warp::ws::Ws;
use warp::{Filter, Rejection};

use crate::connection::{Connection, Route};
use crate::metrics::Metrics;

/// What the public routes share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The template each accepted connection is cloned from.
    pub connection: Connection,
    /// One permit per open connection; `MAX_CONNECTIONS` in all.
    pub permits: Arc<Semaphore>,
    /// Largest message a client may send, in bytes.
    pub max_message_size: usize,
    /// Largest frame a client may send, in bytes.
    pub max_frame_size: usize,
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
                header::HeaderValue::from_static(
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
    // A GET without the upgrade headers still reaches the handler, so it can say what is missing.
    let upgrade_request = warp::ws().map(Some).or(warp::any().map(|| None)).unify();
    warp::path(path)
        .and(warp::path::end())
        .and(warp::get())
        .and(upgrade_request)
        .and(client_address())
        .map(move |ws: Option<Ws>, client: String| admit(&state, ws, route, client))
}

fn admit(state: &AppState, ws: Option<Ws>, route: Route, client: String) -> Response {
    let Some(ws) = ws else {
        let mut response = text(
            StatusCode::UPGRADE_REQUIRED,
            "This endpoint speaks WebSocket only: send a WebSocket upgrade request (Upgrade: websocket, Sec-WebSocket-Version: 13).",
        );
        response.headers_mut().insert(
            header::UPGRADE,
            header::HeaderValue::from_static("websocket"),
        );
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            header::HeaderValue::from_static("13"),
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
    let connection = state.connection.clone();
    ws.max_message_size(state.max_message_size)
        .max_frame_size(state.max_frame_size)
        .on_upgrade(move |socket| async move {
            connection.serve(socket, route, client).await;
            drop(permit);
        })
        .into_response()
}

/// The client's address for logs: the first hop of X-Forwarded-For when present (CloudFront and
/// the ALB append to it), else the TCP peer.
fn client_address() -> impl Filter<Extract = (String,), Error = Infallible> + Clone {
    warp::header::headers_cloned()
        .and(warp::addr::remote())
        .map(|headers: warp::http::HeaderMap, peer: Option<SocketAddr>| {
            let forwarded = headers
                .get("x-forwarded-for")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.split(',').next())
                .map(str::trim)
                .filter(|first| !first.is_empty());
            match (forwarded, peer) {
                (Some(first), _) => first.to_owned(),
                (None, Some(peer)) => peer.to_string(),
                (None, None) => "unknown".to_owned(),
            }
        })
}

async fn answer_rejection(rejection: Rejection) -> Result<Response, Infallible> {
    Ok(if rejection.is_not_found() {
        text(StatusCode::NOT_FOUND, "Not Found")
    } else if rejection.find::<MethodNotAllowed>().is_some() {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET"));
        response
    } else {
        text(StatusCode::BAD_REQUEST, "Bad Request")
    })
}

fn text(status: StatusCode, body: &'static str) -> Response {
    warp::reply::with_status(body, status).into_response()
}
