//! `POST /v1/publish` over real sockets: keys, all-or-nothing bodies, limits, and delivery to
//! `/v1/ws` and `/wss` subscribers.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use tokio::net::TcpStream;

const KEY: &str = "test-publish-key-0123456789abcdefghij";
const OTHER_KEY: &str = "another-publish-key-0123456789abcdefgh";

async fn publish(addr: SocketAddr, key: &str, body: &str) -> (u16, Value) {
    let (status, body) = http_publish(addr, key, body).await;
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

async fn subscriber(server: &TestServer, channel: &str) -> Client {
    let mut client = connect(&server.url("/v1/ws")).await;
    send_text(
        &mut client,
        format!(r#"{{"type":"subscribe","channel":"{channel}"}}"#),
    )
    .await;
    assert_eq!(
        next_text(&mut client).await,
        format!(r#"{{"type":"subscribed","channel":"{channel}"}}"#)
    );
    client
}

fn keys() -> String {
    format!("{KEY},{OTHER_KEY}")
}

#[tokio::test]
async fn a_publish_reaches_websocket_subscribers_in_order_exactly_as_written() {
    let server = TestServer::start(&["--publish-api-keys", &keys()]).await;
    let mut room = subscriber(&server, "room").await;
    let mut old = join(&server).await;

    let (status, body) = publish(
        server.addr,
        KEY,
        r#"{"channel":"room","data":{"z":1.50,"a":"\u00e9"}}"#,
    )
    .await;
    assert_eq!(status, 200);
    let first = &body["offsets"][0];
    assert_eq!(
        next_text(&mut room).await,
        format!(
            r#"{{"type":"message","channel":"room","offset":{first},"data":{{"z":1.50,"a":"\u00e9"}}}}"#
        )
    );

    // A batch answers each item's offset, in request order; a channel's offsets follow each other.
    let batch = r#"[{"channel":"room","data":1},{"channel":"broadcast","data":{"to":"wss"}},{"channel":"room","data":2}]"#;
    let (status, body) = publish(server.addr, OTHER_KEY, batch).await;
    assert_eq!(status, 200);
    let offsets: Vec<&str> = body["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|offset| offset.as_str().unwrap())
        .collect();
    assert_eq!(offsets.len(), 3, "{body}");
    let epoch = first.as_str().unwrap().split_once('-').unwrap().0;
    assert_eq!(offsets[0], format!("{epoch}-2"));
    assert_eq!(offsets[2], format!("{epoch}-3"));
    assert_eq!(
        next_text(&mut room).await,
        format!(
            r#"{{"type":"message","channel":"room","offset":"{}","data":1}}"#,
            offsets[0]
        )
    );
    assert_eq!(
        next_text(&mut room).await,
        format!(
            r#"{{"type":"message","channel":"room","offset":"{}","data":2}}"#,
            offsets[2]
        )
    );
    assert_eq!(next_text(&mut old).await, r#"{"message":{"to":"wss"}}"#);
}

#[tokio::test]
async fn a_request_is_all_or_nothing_and_every_refusal_says_why() {
    let server =
        TestServer::start(&["--publish-api-keys", &keys(), "--max-message-size", "4096"]).await;
    let mut room = subscriber(&server, "room").await;
    let too_many = format!(
        "[{}]",
        vec![r#"{"channel":"room","data":0}"#; 101].join(",")
    );
    let too_large = format!(r#"{{"channel":"room","data":"{}"}}"#, "x".repeat(5000));
    let refusals: [(&str, &str, u16, &str); 8] = [
        (
            KEY,
            r#"[{"channel":"room","data":1},{"channel":"no spaces","data":2}]"#,
            400,
            "bad_request",
        ),
        (
            KEY,
            r#"[{"channel":"room","data":1},{"channel":"room"}]"#,
            400,
            "bad_request",
        ),
        (KEY, "not json", 400, "bad_request"),
        (KEY, "[]", 400, "bad_request"),
        (KEY, &too_many, 413, "too_many_messages"),
        (KEY, &too_large, 413, "too_large"),
        (
            "wrong-key-0123456789abcdefghijklmnopq",
            r#"{"channel":"room","data":1}"#,
            401,
            "unauthorized",
        ),
        ("", r#"{"channel":"room","data":1}"#, 401, "unauthorized"),
    ];
    for (key, body, status, code) in refusals {
        let (got, reply) = publish(server.addr, key, body).await;
        assert_eq!(got, status, "{body:.80}: {reply}");
        assert_eq!(reply["code"], code, "{body:.80}: {reply}");
        assert!(reply["message"].is_string(), "{reply}");
    }
    let (status, _) =
        publish_request(server.addr, "POST", &[], r#"{"channel":"room","data":1}"#).await;
    assert_eq!(status, 401, "no Authorization header");
    let (status, _) = publish_request(server.addr, "GET", &[], "").await;
    assert_eq!(status, 405);
    // Nothing of the refused requests was published.
    let quiet = tokio::time::timeout(
        Duration::from_millis(300),
        futures_util::StreamExt::next(&mut room),
    )
    .await;
    assert!(quiet.is_err(), "{quiet:?}");
    assert_eq!(
        server
            .metric("websocket_http_publish_refused_total{reason=\"unauthorized\"}")
            .await,
        3.0
    );
}

#[tokio::test]
async fn without_keys_http_publishing_is_off_and_says_so() {
    let server = TestServer::start(&[]).await;
    let (status, reply) = publish(server.addr, KEY, r#"{"channel":"room","data":1}"#).await;
    assert_eq!(status, 403);
    assert_eq!(reply["code"], "publish_disabled");
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("PUBLISH_API_KEYS")
    );
}

#[tokio::test]
async fn each_key_has_its_own_rate_limit() {
    let server = TestServer::start(&[
        "--publish-api-keys",
        &keys(),
        "--publish-messages-per-second",
        "1",
    ])
    .await;
    let mut room = subscriber(&server, "room").await;
    // The burst is one full request (100 messages); the next request is over it.
    let hundred = format!(
        "[{}]",
        (0..100)
            .map(|n| format!(r#"{{"channel":"room","data":{n}}}"#))
            .collect::<Vec<_>>()
            .join(",")
    );
    assert_eq!(publish(server.addr, KEY, &hundred).await.0, 200);
    let (status, reply) = publish(server.addr, KEY, r#"{"channel":"room","data":"over"}"#).await;
    assert_eq!(
        (status, reply["code"].as_str()),
        (429, Some("rate_limited"))
    );
    // The other key is not held back by the first one's use.
    assert_eq!(
        publish(
            server.addr,
            OTHER_KEY,
            r#"{"channel":"room","data":"other"}"#
        )
        .await
        .0,
        200
    );
    for n in 0..100 {
        assert_eq!(
            next_message(&mut room).await,
            format!(r#"{{"type":"message","channel":"room","data":{n}}}"#)
        );
    }
    assert_eq!(
        next_message(&mut room).await,
        r#"{"type":"message","channel":"room","data":"other"}"#
    );
}

#[tokio::test]
async fn a_body_that_never_finishes_is_answered_408_and_others_go_on() {
    let server = TestServer::start(&["--publish-api-keys", &keys()]).await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /v1/publish HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {KEY}\r\nContent-Length: 100\r\n\r\n{{\"chan"
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    // Meanwhile another request is served at once.
    assert_eq!(
        publish(server.addr, KEY, r#"{"channel":"room","data":1}"#)
            .await
            .0,
        200
    );
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), slow.read_to_end(&mut response))
        .await
        .expect("answered within the body timeout")
        .unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
}
