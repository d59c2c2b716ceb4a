//! The demo page at `/` (and `/index.html`, CloudFront's default root object): a person can try the
//! service in a browser right after `make run` or `make apply`. Its three files are compiled into
//! the binary — no build step, no external assets — and served with a strict Content-Security-Policy
//! that allows only those same-origin files and the WebSocket back to the same host.

use warp::http::header::{self, HeaderValue};
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

const PAGE: &str = include_str!("demo/index.html");
const SCRIPT: &str = include_str!("demo/demo.js");
const STYLE: &str = include_str!("demo/demo.css");

/// Nothing but the page's own script, style and WebSocket; no framing, no form posts elsewhere.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /`, `/index.html`, `/demo.js` and `/demo.css`.
pub fn routes() -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let page = warp::path::end()
        .or(warp::path!("index.html"))
        .unify()
        .map(|| asset(PAGE, "text/html; charset=utf-8"));
    let script = warp::path!("demo.js").map(|| asset(SCRIPT, "text/javascript; charset=utf-8"));
    let style = warp::path!("demo.css").map(|| asset(STYLE, "text/css; charset=utf-8"));
    warp::get().and(page.or(script).unify().or(style).unify())
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // A new deployment shows its own page at once.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
