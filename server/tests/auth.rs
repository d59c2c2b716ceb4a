//! Sign-in with JWTs over real sockets: tokens in each place a client can put them, every way a
//! token can be wrong, key rotation through a JWKS URL and a file, what the claims allow, expiry
//! and refresh.

mod common;

use std::time::Duration;

use common::jwt::*;
use common::*;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};

/// Opens `url` with extra request headers; the client, or the HTTP status it was refused with.
async fn try_connect(url: &str, headers: &[(&str, &str)]) -> Result<(Client, Option<String>), u16> {
    let mut request = url.into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    match tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(request))
        .await
        .expect("an answer in time")
    {
        Ok((client, response)) => {
            let protocol = response
                .headers()
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().unwrap().to_owned());
            Ok((client, protocol))
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(other) => panic!("connect failed: {other}"),
    }
}

async fn with_token(server: &TestServer, path: &str, token: &str) -> Result<Client, u16> {
    let bearer = format!("Bearer {token}");
    try_connect(&server.url(path), &[("authorization", &bearer)])
        .await
        .map(|(client, _)| client)
}

fn flags(jwks_url: &str) -> Vec<String> {
    [
        "--auth-jwks-url",
        jwks_url,
        "--auth-issuer",
        ISSUER,
        "--auth-audience",
        AUDIENCE,
    ]
    .map(str::to_owned)
    .to_vec()
}

async fn start(jwks_url: &str, extra: &[&str]) -> TestServer {
    let mut args = flags(jwks_url);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    TestServer::start(&args).await
}

async fn next_json(client: &mut Client) -> Value {
    serde_json::from_str(&next_text(client).await).unwrap()
}

async fn send_json(client: &mut Client, frame: Value) {
    send_text(client, frame.to_string()).await;
}

#[tokio::test]
async fn an_upgrade_needs_a_valid_token_in_any_of_three_places() {
    let key = SigningKey::ed25519("ed-1");
    let jwks = JwksServer::start(jwks(&[&key])).await;
    let server = start(&jwks.url, &[]).await;
    let token = key.sign(&claims("alice"));

    for path in ["/wss", "/v1/ws"] {
        assert_eq!(
            try_connect(&server.url(path), &[]).await.err(),
            Some(401),
            "{path}"
        );
    }
    let mut wss = with_token(&server, "/wss", &token).await.unwrap();
    assert_eq!(next_text(&mut wss).await, r#"{"connection":"ok"}"#);
    assert!(with_token(&server, "/v1/ws", &token).await.is_ok());
    // Browsers: the subprotocol pair, and the server selects `bearer`.
    let (_, protocol) = try_connect(
        &server.url("/v1/ws"),
        &[("sec-websocket-protocol", &format!("bearer, {token}"))],
    )
    .await
    .unwrap();
    assert_eq!(protocol.as_deref(), Some("bearer"));
    assert!(
        try_connect(&server.url(&format!("/v1/ws?token={token}")), &[])
            .await
            .is_ok()
    );
    assert_eq!(
        server
            .metric("websocket_auth_failures_total{reason=\"missing\"}")
            .await,
        2.0
    );
}

#[tokio::test]
async fn every_kind_of_bad_token_is_refused_with_401_and_counted() {
    let key = SigningKey::p256("ec-1");
    let rsa = SigningKey::rsa("rsa-1");
    let impostor = SigningKey::p256("ec-1");
    let jwks = JwksServer::start(jwks(&[&key, &rsa])).await;
    let server = start(&jwks.url, &[]).await;
    // RS256 and ES256 keys both work.
    assert!(
        with_token(&server, "/v1/ws", &rsa.sign(&claims("r")))
            .await
            .is_ok()
    );
    assert!(
        with_token(&server, "/v1/ws", &key.sign(&claims("e")))
            .await
            .is_ok()
    );

    let mut expired = claims("a");
    expired["exp"] = json!(at(-60));
    let mut wrong_audience = claims("a");
    wrong_audience["aud"] = json!("another-app");
    let mut wrong_issuer = claims("a");
    wrong_issuer["iss"] = json!("https://evil.test");
    let mut no_exp = claims("a");
    no_exp.as_object_mut().unwrap().remove("exp");
    let mut bad_pattern = claims("a");
    bad_pattern["channels"] = json!(["has space"]);
    let unsigned = {
        let header = base64_url(r#"{"alg":"none","kid":"ec-1"}"#);
        format!("{header}.{}.", base64_url(&claims("a").to_string()))
    };
    let cases = [
        (impostor.sign(&claims("a")), "bad_signature"),
        (key.sign(&expired), "expired"),
        (key.sign(&wrong_audience), "wrong_audience"),
        (key.sign(&wrong_issuer), "wrong_issuer"),
        (key.sign(&no_exp), "malformed"),
        (key.sign(&bad_pattern), "malformed"),
        (unsigned, "malformed"),
        ("not.a.jwt".to_owned(), "malformed"),
        (
            SigningKey::ed25519("nobody").sign(&claims("a")),
            "unknown_key",
        ),
    ];
    for (token, reason) in &cases {
        assert_eq!(
            with_token(&server, "/v1/ws", token).await.err(),
            Some(401),
            "{reason}"
        );
    }
    for reason in [
        "bad_signature",
        "expired",
        "wrong_audience",
        "wrong_issuer",
        "unknown_key",
    ] {
        assert_eq!(
            server
                .metric(&format!(
                    "websocket_auth_failures_total{{reason=\"{reason}\"}}"
                ))
                .await,
            1.0,
            "{reason}"
        );
    }
    assert_eq!(
        server
            .metric("websocket_auth_failures_total{reason=\"malformed\"}")
            .await,
        4.0
    );
}

fn base64_url(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

#[tokio::test]
async fn a_rotated_key_is_fetched_on_first_sight_but_at_most_every_30_seconds() {
    let old = SigningKey::ed25519("old");
    let new = SigningKey::ed25519("new");
    let jwks_server = JwksServer::start(jwks(&[&old])).await;
    let server = start(&jwks_server.url, &[]).await;
    assert!(
        with_token(&server, "/v1/ws", &old.sign(&claims("a")))
            .await
            .is_ok()
    );
    let fetched = jwks_server.fetches();
    assert_eq!(fetched, 1, "loaded once at start-up");

    // The provider rotates. Within 30 s of the last fetch, an unknown kid fetches nothing.
    jwks_server.set(jwks(&[&old, &new]));
    let token = new.sign(&claims("a"));
    assert_eq!(with_token(&server, "/v1/ws", &token).await.err(), Some(401));
    assert_eq!(jwks_server.fetches(), fetched);
    // Past the interval, the first unknown kid fetches once, and the new key works.
    tokio::time::sleep(server::auth::REFETCH_INTERVAL + Duration::from_secs(1)).await;
    assert!(with_token(&server, "/v1/ws", &token).await.is_ok());
    assert!(with_token(&server, "/v1/ws", &token).await.is_ok());
    assert_eq!(jwks_server.fetches(), fetched + 1);
}

#[tokio::test]
async fn a_jwks_file_is_read_again_on_an_unknown_key() {
    let old = SigningKey::ed25519("old");
    let new = SigningKey::rsa("new");
    let file = std::env::temp_dir().join(format!("jwks-{}.json", std::process::id()));
    std::fs::write(&file, jwks(&[&old])).unwrap();
    let path = file.to_string_lossy().into_owned();
    let server = TestServer::start(&[
        "--auth-jwks-file",
        &path,
        "--auth-issuer",
        ISSUER,
        "--auth-audience",
        AUDIENCE,
    ])
    .await;
    assert!(
        with_token(&server, "/v1/ws", &old.sign(&claims("a")))
            .await
            .is_ok()
    );
    std::fs::write(&file, jwks(&[&new])).unwrap();
    assert!(
        with_token(&server, "/v1/ws", &new.sign(&claims("a")))
            .await
            .is_ok()
    );
    std::fs::remove_file(&file).unwrap();
}

#[tokio::test]
async fn claims_limit_channels_and_publishing() {
    let key = SigningKey::ed25519("k");
    let jwks_server = JwksServer::start(jwks(&[&key])).await;
    let server = start(&jwks_server.url, &[]).await;
    let mut limited = claims("bob");
    limited["channels"] = json!(["room:*", "lobby"]);
    limited["publish"] = json!(["room:1"]);
    let mut client = with_token(&server, "/v1/ws", &key.sign(&limited))
        .await
        .unwrap();

    for (frame, code) in [
        (json!({"type":"subscribe","channel":"room:2","id":1}), None),
        (
            json!({"type":"subscribe","channel":"secret","id":2}),
            Some("forbidden"),
        ),
        (
            json!({"type":"publish","channel":"room:1","data":1,"id":3}),
            None,
        ),
        (
            json!({"type":"publish","channel":"lobby","data":1,"id":4}),
            Some("forbidden"),
        ),
        (
            json!({"type":"publish","channel":"other","data":1,"id":5}),
            Some("forbidden"),
        ),
    ] {
        let id = frame["id"].clone();
        send_json(&mut client, frame).await;
        let mut reply = next_json(&mut client).await;
        if reply["type"] == "subscribed" {
            reply = next_json(&mut client).await;
        }
        match code {
            None => assert_eq!(reply, json!({"type":"ack","id":id})),
            Some(code) => {
                assert_eq!(reply["code"], code, "{reply}");
                assert_eq!(reply["id"], id);
            }
        }
    }

    // /wss is the broadcast channel: a token that does not allow it cannot open /wss (403), and
    // one that allows it but not publishing there has its messages dropped.
    assert_eq!(
        with_token(&server, "/wss", &key.sign(&limited)).await.err(),
        Some(403)
    );
    let mut listen_only = claims("carol");
    listen_only["publish"] = json!([]);
    let mut quiet = with_token(&server, "/wss", &key.sign(&listen_only))
        .await
        .unwrap();
    let mut loud = with_token(&server, "/wss", &key.sign(&claims("dave")))
        .await
        .unwrap();
    assert_eq!(next_text(&mut quiet).await, r#"{"connection":"ok"}"#);
    assert_eq!(next_text(&mut loud).await, r#"{"connection":"ok"}"#);
    send_text(&mut quiet, r#"{"from":"quiet"}"#).await;
    send_text(&mut loud, r#"{"from":"loud"}"#).await;
    assert_eq!(
        next_text(&mut quiet).await,
        r#"{"message":{"from":"loud"}}"#
    );
    assert_eq!(next_text(&mut loud).await, r#"{"message":{"from":"loud"}}"#);
}

#[tokio::test]
async fn an_expired_token_closes_with_1008_unless_refreshed_in_time() {
    let key = SigningKey::ed25519("k");
    let jwks_server = JwksServer::start(jwks(&[&key])).await;
    let server = start(&jwks_server.url, &["--auth-leeway", "0s"]).await;
    let short = |sub: &str, seconds: i64| {
        let mut c = claims(sub);
        c["exp"] = json!(at(seconds));
        key.sign(&c)
    };

    let mut wss = with_token(&server, "/wss", &short("a", 2)).await.unwrap();
    let mut lapsing = with_token(&server, "/v1/ws", &short("b", 2)).await.unwrap();
    let mut refreshed = with_token(&server, "/v1/ws", &short("c", 2)).await.unwrap();
    for channel in ["room:1", "room:2"] {
        send_json(
            &mut refreshed,
            json!({"type":"subscribe","channel":channel}),
        )
        .await;
        assert_eq!(next_json(&mut refreshed).await["type"], "subscribed");
    }

    // Refused refreshes change nothing: another subject, a bad token.
    send_json(
        &mut refreshed,
        json!({"type":"refresh","token":short("someone-else", 60),"id":"x"}),
    )
    .await;
    let reply = next_json(&mut refreshed).await;
    assert_eq!(
        (reply["code"].as_str(), reply["id"].as_str()),
        (Some("forbidden"), Some("x"))
    );
    send_json(
        &mut refreshed,
        json!({"type":"refresh","token":"garbage","id":"y"}),
    )
    .await;
    assert_eq!(next_json(&mut refreshed).await["code"], "forbidden");

    // A good refresh that no longer allows room:2 ends that subscription.
    let mut narrower = claims("c");
    narrower["exp"] = json!(at(60));
    narrower["channels"] = json!(["room:1"]);
    send_json(
        &mut refreshed,
        json!({"type":"refresh","token":key.sign(&narrower),"id":"r"}),
    )
    .await;
    assert_eq!(
        next_json(&mut refreshed).await,
        json!({"type":"unsubscribed","channel":"room:2"})
    );
    assert_eq!(
        next_json(&mut refreshed).await,
        json!({"type":"ack","id":"r"})
    );

    assert_eq!(next_text(&mut wss).await, r#"{"connection":"ok"}"#);
    assert_eq!(close_code(&mut wss).await, 1008);
    assert_eq!(close_code(&mut lapsing).await, 1008);
    // Past the first token's end, the refreshed connection still works.
    tokio::time::sleep(Duration::from_secs(1)).await;
    send_json(
        &mut refreshed,
        json!({"type":"publish","channel":"room:1","data":"still here"}),
    )
    .await;
    assert_eq!(
        next_json(&mut refreshed).await,
        json!({"type":"message","channel":"room:1","data":"still here"})
    );
    drop((wss, lapsing));
    server
        .wait_for_metric(
            "websocket_connections_closed_total{reason=\"token_expired\"}",
            2.0,
        )
        .await;
}

#[tokio::test]
async fn a_token_publishes_over_http_where_its_claims_allow_all_or_nothing() {
    let key = SigningKey::ed25519("k");
    let jwks_server = JwksServer::start(jwks(&[&key])).await;
    // Sign-in alone turns HTTP publishing on, for tokens.
    let server = start(&jwks_server.url, &[]).await;
    let reader = key.sign(&claims("reader"));
    let mut room = with_token(&server, "/v1/ws", &reader).await.unwrap();
    send_json(&mut room, json!({"type":"subscribe","channel":"room:1"})).await;
    assert_eq!(next_json(&mut room).await["type"], "subscribed");

    let mut backend = claims("backend");
    backend["publish"] = json!(["room:*"]);
    let backend = key.sign(&backend);
    let (status, _) = http_publish(server.addr, &backend, r#"{"channel":"room:1","data":1}"#).await;
    assert_eq!(status, 200);
    assert_eq!(
        next_json(&mut room).await,
        json!({"type":"message","channel":"room:1","data":1})
    );
    // One channel it may not publish on refuses the whole request.
    let (status, body) = http_publish(
        server.addr,
        &backend,
        r#"[{"channel":"room:1","data":2},{"channel":"lobby","data":2}]"#,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["code"],
        "forbidden"
    );
    let mut expired = claims("backend");
    expired["exp"] = json!(at(-60));
    let (status, _) = http_publish(
        server.addr,
        &key.sign(&expired),
        r#"{"channel":"room:1","data":3}"#,
    )
    .await;
    assert_eq!(status, 401);
    let quiet = tokio::time::timeout(
        Duration::from_millis(300),
        futures_util::StreamExt::next(&mut room),
    )
    .await;
    assert!(quiet.is_err(), "{quiet:?}");
}
