//! Sign-in with JWTs over real sockets: tokens in each place a client can put them, every way a
//! token can be wrong (another algorithm than its key's among them), key rotation and removal
//! through a JWKS URL and a file, how often a file is read whatever clients send, a file the server
//! cannot use at start-up, what the claims allow, expiry and refresh.

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

/// Sign-in with the keys from `source` (`--auth-jwks-url` or `--auth-jwks-file`) at `location`.
fn sign_in_flags(source: &str, location: &str) -> Vec<String> {
    [
        source,
        location,
        "--auth-issuer",
        ISSUER,
        "--auth-audience",
        AUDIENCE,
    ]
    .map(str::to_owned)
    .to_vec()
}

fn flags(jwks_url: &str) -> Vec<String> {
    sign_in_flags("--auth-jwks-url", jwks_url)
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
    // The start-up load first: a handshake before it would fetch by itself.
    jwks_server.wait_for_fetches(1).await;
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

fn file_flags(file: &JwksFile) -> Vec<String> {
    sign_in_flags("--auth-jwks-file", file.path())
}

/// Polls until `token` opens `/v1/ws` (true) or `limit` has passed (false).
async fn accepted_within(server: &TestServer, token: &str, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if with_token(server, "/v1/ws", token).await.is_ok() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_jwks_file_is_followed_keys_come_and_go_but_an_empty_set_changes_nothing() {
    let old = SigningKey::ed25519("old");
    let new = SigningKey::rsa("new");
    let file = JwksFile::new(&jwks(&[&old]));
    let args = file_flags(&file);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = TestServer::start(&args).await;
    let (old_token, new_token) = (old.sign(&claims("a")), new.sign(&claims("a")));
    assert!(with_token(&server, "/v1/ws", &old_token).await.is_ok());

    // A key added to the file is taken within a look or two.
    file.write(&jwks(&[&old, &new]));
    let patience = server::auth::FILE_INTERVAL * 2 + Duration::from_secs(1);
    assert!(accepted_within(&server, &new_token, patience).await);

    // A file without a usable key (an empty set, or keys of no kind taken) is read and ignored,
    // even when a made-up key id asks for it: the keys held stay.
    let made_up = SigningKey::ed25519("made-up").sign(&claims("a"));
    for useless in [
        r#"{"keys":[]}"#.to_owned(),
        json!({"keys":[{"kid":"hmac","kty":"oct","k":"c2VjcmV0"}]}).to_string(),
    ] {
        file.write(&useless);
        tokio::time::sleep(patience).await;
        assert_eq!(
            with_token(&server, "/v1/ws", &made_up).await.err(),
            Some(401)
        );
        assert!(
            with_token(&server, "/v1/ws", &old_token).await.is_ok(),
            "{useless}"
        );
        assert!(
            with_token(&server, "/v1/ws", &new_token).await.is_ok(),
            "{useless}"
        );
    }

    // A key removed from the file (revoked) is refused once the file has been looked at again,
    // though no token named a key id the server did not hold.
    file.write(&jwks(&[&new]));
    tokio::time::sleep(patience).await;
    let unknown = "websocket_auth_failures_total{reason=\"unknown_key\"}";
    let before = server.metric(unknown).await;
    assert_eq!(
        with_token(&server, "/v1/ws", &old_token).await.err(),
        Some(401)
    );
    assert_eq!(server.metric(unknown).await, before + 1.0);
    assert!(with_token(&server, "/v1/ws", &new_token).await.is_ok());
}

/// Lines of `log` that contain `message`.
fn count_lines(log: &str, message: &str) -> usize {
    log.lines().filter(|line| line.contains(message)).count()
}

#[tokio::test]
async fn a_flood_of_made_up_key_ids_reads_a_jwks_file_at_most_once_a_second() {
    let key = SigningKey::ed25519("k");
    let file = JwksFile::new(&jwks(&[&key]));
    let started = std::time::Instant::now();
    let process = Process::start(&[
        ("AUTH_JWKS_FILE", file.path()),
        ("AUTH_ISSUER", ISSUER),
        ("AUTH_AUDIENCE", AUDIENCE),
        ("METRICS_PORT", "0"),
    ])
    .await;
    let made_up = format!(
        "Bearer {}",
        SigningKey::ed25519("made-up").sign(&claims("a"))
    );
    // The file changes all the time, first with a new key id each time, then broken a new way
    // each time, so every read of it logs: "JWKS loaded" or "JWKS not loaded".
    let mut round = 0;
    for (phase, seconds) in [("valid", 2), ("broken", 2)] {
        let until = std::time::Instant::now() + Duration::from_secs(seconds);
        while std::time::Instant::now() < until {
            round += 1;
            let document = match phase {
                "valid" => jwks(&[&key, &SigningKey::ed25519(&format!("k{round}"))]),
                _ => format!("{{\"keys\": [{round}"),
            };
            file.write(&document);
            let refused = try_connect(&process.url("/v1/ws"), &[("authorization", &made_up)]).await;
            assert_eq!(refused.err(), Some(401));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(round > 40, "{round} rounds");
    process.signal("TERM");
    let exit = process.wait(PATIENCE).await;
    let elapsed = started.elapsed().as_secs();
    let loaded = count_lines(&exit.stdout, "JWKS loaded");
    let failed = count_lines(&exit.stdout, "JWKS not loaded");
    assert!(
        loaded >= 2 && failed >= 1,
        "the changes were read: {loaded} loaded, {failed} failed\n{}",
        exit.stdout
    );
    // One read at start-up, then at most one a second.
    assert!(
        (loaded + failed) as u64 <= 2 + elapsed,
        "{loaded} loaded and {failed} failed in {elapsed} s\n{}",
        exit.stdout
    );
}

/// `document` with whitespace after it, one byte past the largest JWKS document taken (1 MiB):
/// still valid JSON, so only its size can be why it is refused.
fn padded_past_the_size_limit(document: &str) -> String {
    format!("{document}{}", " ".repeat((1 << 20) + 1 - document.len()))
}

#[tokio::test]
async fn a_jwks_url_serving_more_than_a_mebibyte_is_refused_and_the_server_carries_on() {
    let key = SigningKey::ed25519("k");
    let jwks_server = JwksServer::start(padded_past_the_size_limit(&jwks(&[&key]))).await;
    let process = Process::start(&[
        ("AUTH_JWKS_URL", jwks_server.url.as_str()),
        ("AUTH_ISSUER", ISSUER),
        ("AUTH_AUDIENCE", AUDIENCE),
        ("METRICS_PORT", "0"),
    ])
    .await;
    jwks_server.wait_for_fetches(1).await;
    let bearer = format!("Bearer {}", key.sign(&claims("a")));
    let refused = try_connect(&process.url("/v1/ws"), &[("authorization", &bearer)]).await;
    assert_eq!(refused.err(), Some(401), "no key was taken from it");
    // Still serving: the health check passes.
    let health = process.healthcheck();
    assert!(health.status.success(), "{health:?}");
    process.signal("TERM");
    let exit = process.wait(PATIENCE).await;
    assert!(
        exit.stdout.contains("JWKS not loaded") && exit.stdout.contains("over 1048576 bytes"),
        "{}",
        exit.stdout
    );
}

#[tokio::test]
async fn a_jwks_file_the_server_cannot_use_stops_it_at_start_up_with_status_2() {
    let hmac_only = json!({"keys":[{"kid":"hmac","kty":"oct","k":"c2VjcmV0"}]}).to_string();
    let oversized = padded_past_the_size_limit(&jwks(&[&SigningKey::ed25519("k")]));
    let unusable = JwksFile::new("");
    let dir = unusable.path.parent().unwrap().to_owned();
    let missing = dir.join("missing.json");
    let cases: Vec<(String, &str)> = [
        ("not json", "not a JWKS document"),
        (r#"{"keys":[]}"#, "no usable key"),
        (hmac_only.as_str(), "no usable key"),
        (oversized.as_str(), "over 1048576 bytes"),
    ]
    .into_iter()
    .map(|(content, why)| {
        let path = dir.join(format!("{}.json", content.len()));
        std::fs::write(&path, content).unwrap();
        (path.to_str().unwrap().to_owned(), why)
    })
    .chain([
        (missing.to_str().unwrap().to_owned(), "cannot read"),
        (dir.to_str().unwrap().to_owned(), "cannot read"),
    ])
    .collect();
    for (path, why) in &cases {
        let mut child = std::process::Command::new(BINARY)
            .env_clear()
            .envs([
                ("HOST", "127.0.0.1"),
                ("PORT", "0"),
                ("METRICS_PORT", "0"),
                ("AUTH_JWKS_FILE", path),
                ("AUTH_ISSUER", ISSUER),
                ("AUTH_AUDIENCE", AUDIENCE),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                panic!("{path}: the server started");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(2), "{path}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{path}: {stderr}");
        assert!(
            stderr.contains("AUTH_JWKS_FILE") && stderr.contains(why),
            "{path}: {stderr}"
        );
    }
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
    // The quiet client's message went nowhere: neither client gets anything more.
    for client in [&mut quiet, &mut loud] {
        let more = tokio::time::timeout(
            Duration::from_millis(300),
            futures_util::StreamExt::next(client),
        )
        .await;
        assert!(more.is_err(), "{more:?}");
    }
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
        serde_json::from_str::<Value>(&next_message(&mut refreshed).await).unwrap(),
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
        serde_json::from_str::<Value>(&next_message(&mut room).await).unwrap(),
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

#[tokio::test]
async fn tokens_that_pick_another_algorithm_than_their_key_are_refused() {
    let rsa = SigningKey::rsa("rsa-1");
    let ed = SigningKey::ed25519("ed-1");
    let jwks_server = JwksServer::start(jwks(&[&rsa, &ed])).await;
    let server = start(&jwks_server.url, &[]).await;
    let good = claims("a");
    // HMAC with what is public: the RSA key's modulus, or the whole JWKS document, as the
    // secret, naming a real key id. A server that took the algorithm from the token would check
    // these with the public key as the secret, and accept them.
    let document = jwks(&[&rsa, &ed]);
    let malformed = [
        hs256("rsa-1", &rsa_modulus(), &good),
        hs256("rsa-1", document.as_bytes(), &good),
        hs256("ed-1", rsa.jwk["n"].as_str().unwrap().as_bytes(), &good),
    ];
    for token in &malformed {
        assert_eq!(with_token(&server, "/v1/ws", token).await.err(), Some(401));
    }
    // An algorithm the server takes, but not the named key's.
    let impostor = SigningKey::ed25519("rsa-1").sign(&good);
    assert_eq!(
        with_token(&server, "/v1/ws", &impostor).await.err(),
        Some(401)
    );
    assert_eq!(
        server
            .metric("websocket_auth_failures_total{reason=\"malformed\"}")
            .await,
        3.0
    );
    assert_eq!(
        server
            .metric("websocket_auth_failures_total{reason=\"bad_signature\"}")
            .await,
        1.0
    );
    // The real keys still work.
    assert!(
        with_token(&server, "/v1/ws", &rsa.sign(&good))
            .await
            .is_ok()
    );
    assert!(with_token(&server, "/v1/ws", &ed.sign(&good)).await.is_ok());
}

#[tokio::test]
async fn an_exp_past_the_end_of_time_is_malformed_and_a_far_one_works() {
    let key = SigningKey::ed25519("k");
    let jwks_server = JwksServer::start(jwks(&[&key])).await;
    let server = start(&jwks_server.url, &[]).await;
    let with_exp = |exp: u64| {
        let mut c = claims("a");
        c["exp"] = json!(exp);
        key.sign(&c)
    };
    // Seconds no clock holds, and one that only the leeway takes past the end.
    for exp in [u64::MAX, i64::MAX as u64] {
        assert_eq!(
            with_token(&server, "/v1/ws", &with_exp(exp)).await.err(),
            Some(401),
            "{exp}"
        );
    }
    assert_eq!(
        server
            .metric("websocket_auth_failures_total{reason=\"malformed\"}")
            .await,
        2.0
    );
    // Year 33658: far, but a time; the connection works until then.
    let mut far = with_token(&server, "/v1/ws", &with_exp(1_000_000_000_000))
        .await
        .unwrap();
    send_json(&mut far, json!({"type":"subscribe","channel":"a","id":1})).await;
    assert_eq!(next_json(&mut far).await["type"], "subscribed");
    assert_eq!(next_json(&mut far).await, json!({"type":"ack","id":1}));
}

/// Sends a refresh with `token` and `id`; the reply.
async fn refresh(client: &mut Client, token: String, id: &str) -> Value {
    send_json(client, json!({"type":"refresh","token":token,"id":id})).await;
    next_json(client).await
}

#[tokio::test]
async fn a_refresh_needs_the_same_sub_in_both_tokens_and_no_earlier_exp() {
    let key = SigningKey::ed25519("k");
    let jwks_server = JwksServer::start(jwks(&[&key])).await;
    let server = start(&jwks_server.url, &["--auth-leeway", "0s"]).await;
    let token = |sub: Option<&str>, exp: i64| {
        let mut c = claims(sub.unwrap_or("unused"));
        c["exp"] = json!(exp);
        if sub.is_none() {
            c.as_object_mut().unwrap().remove("sub");
        }
        key.sign(&c)
    };
    let (now, later, latest) = (at(600), at(1200), at(1800));

    let mut named = with_token(&server, "/v1/ws", &token(Some("d"), now))
        .await
        .unwrap();
    let mut anonymous = with_token(&server, "/v1/ws", &token(None, now))
        .await
        .unwrap();
    for (from_named, new, id) in [
        (true, token(None, later), "named to none"),
        (true, token(Some("e"), later), "another"),
        (false, token(None, later), "none to none"),
        (false, token(Some("d"), later), "none to named"),
    ] {
        let client = if from_named {
            &mut named
        } else {
            &mut anonymous
        };
        let reply = refresh(client, new, id).await;
        assert_eq!(
            (reply["code"].as_str(), reply["id"].as_str()),
            (Some("forbidden"), Some(id)),
            "{reply}"
        );
    }
    assert_eq!(
        server
            .metric("websocket_auth_failures_total{reason=\"other_subject\"}")
            .await,
        4.0
    );

    // Older: the new token ends before the current one.
    let mut current = with_token(&server, "/v1/ws", &token(Some("f"), later))
        .await
        .unwrap();
    let reply = refresh(&mut current, token(Some("f"), now), "older").await;
    assert_eq!(
        (reply["code"].as_str(), reply["id"].as_str()),
        (Some("forbidden"), Some("older")),
        "{reply}"
    );
    assert_eq!(
        server
            .metric("websocket_auth_failures_total{reason=\"older\"}")
            .await,
        1.0
    );
    // The same subject with a later end is taken, on both connections that have a sub.
    for (client, sub) in [(&mut current, "f"), (&mut named, "d")] {
        let reply = refresh(client, token(Some(sub), latest), "ok").await;
        assert_eq!(reply, json!({"type":"ack","id":"ok"}));
    }
}
