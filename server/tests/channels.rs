//! `/v1/ws` over real sockets: channels, the envelope rules, replies by `id`, the limits, and the
//! `broadcast` channel shared with `/wss`.

mod common;

use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

async fn open(server: &TestServer) -> Client {
    connect(&server.url("/v1/ws")).await
}

async fn send(client: &mut Client, frame: &str) {
    send_text(client, frame).await;
}

async fn next_json(client: &mut Client) -> Value {
    serde_json::from_str(&next_text(client).await).unwrap()
}

/// Subscribes with an id and checks the two replies, in order.
async fn subscribe(client: &mut Client, channel: &str) {
    send(
        client,
        &json!({"type":"subscribe","channel":channel,"id":channel}).to_string(),
    )
    .await;
    assert_eq!(
        next_json(client).await,
        json!({"type":"subscribed","channel":channel})
    );
    assert_eq!(next_json(client).await, json!({"type":"ack","id":channel}));
}

/// Nothing arrives for a while (a message that should not come would arrive well within it).
async fn assert_quiet(client: &mut Client) {
    use futures_util::StreamExt;
    let next = tokio::time::timeout(Duration::from_millis(300), client.next()).await;
    assert!(next.is_err(), "expected nothing, got {next:?}");
}

#[tokio::test]
async fn a_message_reaches_the_subscribers_of_its_channel_exactly_as_written() {
    let server = TestServer::start(&[]).await;
    let mut alice = open(&server).await;
    let mut bob = open(&server).await;
    let mut carol = open(&server).await;
    subscribe(&mut alice, "room:1").await;
    subscribe(&mut bob, "room:1").await;
    subscribe(&mut carol, "room:2").await;

    // Key order, number spelling and escapes survive: the data is forwarded as written.
    let data = r#"{"z":1.50,"a":"\u00e9\n","n":[1e3,null]}"#;
    send(
        &mut bob,
        &format!(r#"{{"type":"publish","channel":"room:1","data":{data},"id":42}}"#),
    )
    .await;
    let expected = format!(r#"{{"type":"message","channel":"room:1","data":{data}}}"#);
    assert_eq!(next_message(&mut alice).await, expected);
    assert_eq!(
        next_message(&mut bob).await,
        expected,
        "the sender is subscribed"
    );
    assert_eq!(next_json(&mut bob).await, json!({"type":"ack","id":42}));
    assert_quiet(&mut carol).await;

    // A publisher need not be subscribed, and does not get its own message then.
    send(
        &mut carol,
        r#"{"type":"publish","channel":"room:1","data":null}"#,
    )
    .await;
    assert_eq!(
        next_message(&mut alice).await,
        r#"{"type":"message","channel":"room:1","data":null}"#
    );
    assert_quiet(&mut carol).await;
}

#[tokio::test]
async fn every_frame_with_an_id_gets_exactly_one_answer_and_bad_ones_keep_the_connection() {
    let server = TestServer::start(&[]).await;
    let mut client = open(&server).await;
    let refusals = [
        (r#"{"type":"dance","id":1}"#, Some(json!(1))),
        (r#"{"type":"subscribe","id":"s"}"#, Some(json!("s"))),
        (
            r#"{"type":"subscribe","channel":"has space","id":2}"#,
            Some(json!(2)),
        ),
        (
            r#"{"type":"subscribe","channel":"","id":3}"#,
            Some(json!(3)),
        ),
        (
            &format!(
                r#"{{"type":"subscribe","channel":"{}","id":4}}"#,
                "x".repeat(129)
            ),
            Some(json!(4)),
        ),
        (r#"{"type":"publish","channel":"a","id":5}"#, Some(json!(5))),
        (
            r#"{"type":"publish","channel":"a","data":1,"id":{"no":1}}"#,
            Some(json!({"no":1})),
        ),
        (r#"{"type":"publish","id":"late","channel":}"#, None),
        ("not json", None),
        ("[1,2]", None),
        (r#"{"channel":"a"}"#, None),
    ];
    for (frame, id) in &refusals {
        send(&mut client, frame).await;
        let reply = next_json(&mut client).await;
        assert_eq!(reply["type"], "error", "{frame}: {reply}");
        assert_eq!(reply["code"], "bad_request", "{frame}: {reply}");
        assert!(reply["message"].is_string(), "{frame}: {reply}");
        assert_eq!(reply.get("id"), id.as_ref(), "{frame}: {reply}");
    }
    // Binary frames are read as text, as on /wss.
    client
        .send(Message::binary(
            &br#"{"type":"subscribe","channel":"b","id":"bin"}"#[..],
        ))
        .await
        .unwrap();
    assert_eq!(
        next_json(&mut client).await,
        json!({"type":"subscribed","channel":"b"})
    );
    assert_eq!(
        next_json(&mut client).await,
        json!({"type":"ack","id":"bin"})
    );
    // Still open, still working, and nothing else was queued by the refusals.
    subscribe(&mut client, "after").await;
    assert_eq!(
        server
            .metric("websocket_messages_dropped_total{reason=\"bad_request\"}")
            .await,
        refusals.len() as f64
    );
}

#[tokio::test]
async fn channels_are_limited_per_connection_and_unsubscribing_frees_a_slot() {
    let server = TestServer::start(&["--max-channels-per-connection", "2"]).await;
    let mut client = open(&server).await;
    let mut watcher = open(&server).await;
    subscribe(&mut client, "a").await;
    subscribe(&mut client, "b").await;
    // A channel already held: an ack, no second `subscribed`, no slot used.
    send(
        &mut client,
        r#"{"type":"subscribe","channel":"a","id":"again"}"#,
    )
    .await;
    assert_eq!(
        next_json(&mut client).await,
        json!({"type":"ack","id":"again"})
    );
    send(
        &mut client,
        r#"{"type":"subscribe","channel":"c","id":"c"}"#,
    )
    .await;
    let refused = next_json(&mut client).await;
    assert_eq!(refused["code"], "too_many_channels", "{refused}");
    assert_eq!(refused["id"], "c");

    // Not subscribed to c: its messages do not arrive.
    send(
        &mut watcher,
        r#"{"type":"publish","channel":"c","data":"lost"}"#,
    )
    .await;
    assert_quiet(&mut client).await;

    send(
        &mut client,
        r#"{"type":"unsubscribe","channel":"a","id":"u"}"#,
    )
    .await;
    assert_eq!(
        next_json(&mut client).await,
        json!({"type":"unsubscribed","channel":"a"})
    );
    assert_eq!(next_json(&mut client).await, json!({"type":"ack","id":"u"}));
    // Unsubscribing from a channel not held changes nothing and is acknowledged.
    send(
        &mut client,
        r#"{"type":"unsubscribe","channel":"a","id":"u2"}"#,
    )
    .await;
    assert_eq!(
        next_json(&mut client).await,
        json!({"type":"ack","id":"u2"})
    );
    subscribe(&mut client, "c").await;

    // After unsubscribing, a's messages stop; c's arrive.
    send(&mut watcher, r#"{"type":"publish","channel":"a","data":1}"#).await;
    send(&mut watcher, r#"{"type":"publish","channel":"c","data":2}"#).await;
    assert_eq!(
        serde_json::from_str::<Value>(&next_message(&mut client).await).unwrap(),
        json!({"type":"message","channel":"c","data":2})
    );
    assert_eq!(server.metric("websocket_subscriptions").await, 2.0);
    assert_eq!(server.metric("websocket_channels").await, 2.0);
    drop(client);
    server.wait_for_metric("websocket_subscriptions", 0.0).await;
    assert_eq!(server.metric("websocket_channels").await, 0.0);
}

#[tokio::test]
async fn broadcast_is_the_channel_wss_clients_share() {
    let server = TestServer::start(&[]).await;
    let mut old = join(&server).await;
    let mut new = open(&server).await;
    subscribe(&mut new, "broadcast").await;

    send_text(&mut old, r#"{"from":"wss"}"#).await;
    assert_eq!(next_text(&mut old).await, r#"{"message":{"from":"wss"}}"#);
    assert_eq!(
        next_message(&mut new).await,
        r#"{"type":"message","channel":"broadcast","data":{"from":"wss"}}"#
    );

    send(
        &mut new,
        r#"{"type":"publish","channel":"broadcast","data":{"from":"v1"}}"#,
    )
    .await;
    assert_eq!(next_text(&mut old).await, r#"{"message":{"from":"v1"}}"#);
    assert_eq!(
        next_message(&mut new).await,
        r#"{"type":"message","channel":"broadcast","data":{"from":"v1"}}"#
    );

    // Other channels never reach /wss.
    send(&mut new, r#"{"type":"publish","channel":"other","data":1}"#).await;
    assert_quiet(&mut old).await;
}

#[tokio::test]
async fn a_frame_over_the_rate_limit_is_answered_rate_limited_and_others_are_unaffected() {
    let server =
        TestServer::start(&["--max-messages-per-second", "1", "--message-burst", "2"]).await;
    let mut flooder = open(&server).await;
    let mut bystander = open(&server).await;
    subscribe(&mut bystander, "calm").await;
    // The first frames fit the burst; then frames are dropped, each answered by its id.
    let mut answers = Vec::new();
    for n in 0..6 {
        send(
            &mut flooder,
            &format!(r#"{{"type":"publish","channel":"calm","data":{n},"id":{n}}}"#),
        )
        .await;
    }
    for _ in 0..6 {
        answers.push(next_json(&mut flooder).await);
    }
    let limited: Vec<&Value> = answers
        .iter()
        .filter(|a| a["code"] == "rate_limited")
        .collect();
    assert!(!limited.is_empty(), "{answers:?}");
    let acked: Vec<u64> = answers
        .iter()
        .filter(|a| a["type"] == "ack")
        .map(|a| a["id"].as_u64().unwrap())
        .collect();
    assert_eq!(
        acked.len() + limited.len(),
        6,
        "one answer per frame: {answers:?}"
    );
    // The bystander got exactly the acknowledged messages, in order.
    for n in &acked {
        assert_eq!(
            serde_json::from_str::<Value>(&next_message(&mut bystander).await).unwrap(),
            json!({"type":"message","channel":"calm","data":n})
        );
    }
    assert_quiet(&mut bystander).await;
}
