//! Channel history over real sockets: every `/v1/ws` message carries an offset, and a client that
//! subscribes again with `since` gets what it missed, then live messages, with nothing twice and
//! nothing missing at the seam; or is told it lost some.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::{Value, json};

async fn open(server: &TestServer) -> Client {
    connect(&server.url("/v1/ws")).await
}

async fn send(client: &mut Client, frame: Value) {
    send_text(client, frame.to_string()).await;
}

async fn next_json(client: &mut Client) -> Value {
    serde_json::from_str(&next_text(client).await).unwrap()
}

async fn subscribe(client: &mut Client, channel: &str) {
    send(client, json!({"type":"subscribe","channel":channel})).await;
    assert_eq!(
        next_json(client).await,
        json!({"type":"subscribed","channel":channel})
    );
}

/// Subscribes from `since` and returns whether the server recovered what followed it.
async fn resume(client: &mut Client, channel: &str, since: &str) -> bool {
    send(
        client,
        json!({"type":"subscribe","channel":channel,"since":since}),
    )
    .await;
    let reply = next_json(client).await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    assert_eq!(reply["channel"], channel, "{reply}");
    reply["recovered"]
        .as_bool()
        .expect("recovered is a boolean")
}

/// The next message's data and offset.
async fn next_message_and_offset(client: &mut Client) -> (Value, String) {
    let message = next_json(client).await;
    assert_eq!(message["type"], "message", "{message}");
    let offset = message["offset"].as_str().expect("an offset").to_owned();
    (message["data"].clone(), offset)
}

async fn publish(publisher: &mut Client, channel: &str, data: Value) {
    send(
        publisher,
        json!({"type":"publish","channel":channel,"data":data}),
    )
    .await;
}

/// Publishes and waits for the ack: by then everything the publisher sent is in history.
async fn publish_acked(publisher: &mut Client, channel: &str, data: Value) {
    send(
        publisher,
        json!({"type":"publish","channel":channel,"data":data,"id":"acked"}),
    )
    .await;
    assert_eq!(
        next_json(publisher).await,
        json!({"type":"ack","id":"acked"})
    );
}

/// The offset a reader of `room` saw of `data`, published by `publisher`, before it left.
async fn offset_seen_before_leaving(
    server: &TestServer,
    publisher: &mut Client,
    data: Value,
) -> String {
    let mut reader = open(server).await;
    subscribe(&mut reader, "room").await;
    publish(publisher, "room", data).await;
    next_message_and_offset(&mut reader).await.1
}

/// Nothing arrives for a while (a message that should not come would arrive well within it).
async fn assert_quiet(client: &mut Client) {
    let next = tokio::time::timeout(Duration::from_millis(300), client.next()).await;
    assert!(next.is_err(), "expected nothing, got {next:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reconnects_while_messages_flow_gets_each_exactly_once_in_order() {
    const MESSAGES: u64 = 3000;
    let server =
        TestServer::start(&["--history-size", "1000", "--max-messages-per-second", "0"]).await;
    let mut reader = open(&server).await;
    subscribe(&mut reader, "flow").await;

    // A publisher on its own connection, a message every few hundred microseconds, while the
    // reader drops its connection and comes back.
    let url = server.url("/v1/ws");
    let publisher = tokio::spawn(async move {
        let mut publisher = connect(&url).await;
        for n in 1..=MESSAGES {
            publish(&mut publisher, "flow", json!(n)).await;
            if n % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        publisher
    });
    let mut expected = 1;
    let mut last_offset = String::new();
    let mut reconnects = 0;
    while expected <= MESSAGES {
        let (data, offset) = next_message_and_offset(&mut reader).await;
        assert_eq!(data, json!(expected), "after offset {last_offset}");
        expected += 1;
        last_offset = offset;
        // Cut the connection every 700 messages, with publishes in flight, and resume.
        if expected % 700 == 0 {
            drop(reader);
            reader = open(&server).await;
            assert!(resume(&mut reader, "flow", &last_offset).await);
            reconnects += 1;
        }
    }
    assert_eq!(reconnects, 4);
    let _publisher = publisher.await.unwrap();
    assert_quiet(&mut reader).await;
}

#[tokio::test]
async fn replayed_messages_come_after_subscribed_and_before_live_ones() {
    let server = TestServer::start(&[]).await;
    let mut publisher = open(&server).await;
    let first = offset_seen_before_leaving(&server, &mut publisher, json!(1)).await;
    for n in 2..=4 {
        publish(&mut publisher, "room", json!(n)).await;
    }
    // Acknowledged: the three are in history before the resume.
    publish_acked(&mut publisher, "room", json!(5)).await;

    let mut reader = open(&server).await;
    send(
        &mut reader,
        json!({"type":"subscribe","channel":"room","since":first,"id":"again"}),
    )
    .await;
    assert_eq!(
        next_json(&mut reader).await,
        json!({"type":"subscribed","channel":"room","recovered":true})
    );
    let mut offsets = Vec::new();
    for n in 2..=5 {
        let (data, offset) = next_message_and_offset(&mut reader).await;
        assert_eq!(data, json!(n));
        offsets.push(offset);
    }
    assert_eq!(
        next_json(&mut reader).await,
        json!({"type":"ack","id":"again"})
    );
    publish(&mut publisher, "room", json!(6)).await;
    let (data, live) = next_message_and_offset(&mut reader).await;
    assert_eq!(data, json!(6));
    // Offsets of one channel share an epoch and count up by one.
    let epoch = first.split_once('-').unwrap().0;
    for (n, offset) in offsets.iter().chain([&live]).enumerate() {
        assert_eq!(*offset, format!("{epoch}-{}", n + 2));
    }

    // Resuming from the newest offset: recovered, nothing to replay.
    let mut caught_up = open(&server).await;
    assert!(resume(&mut caught_up, "room", &live).await);
    assert_quiet(&mut caught_up).await;
}

#[tokio::test]
async fn past_the_history_the_client_is_told_it_lost_messages_and_nothing_is_replayed() {
    let server = TestServer::start(&["--history-size", "5"]).await;
    let mut publisher = open(&server).await;
    let seen = offset_seen_before_leaving(&server, &mut publisher, json!(0)).await;
    // Six more: the one right after `seen` is no longer kept.
    for n in 1..=6 {
        publish(&mut publisher, "room", json!(n)).await;
    }
    publish_acked(&mut publisher, "room", json!(7)).await;

    let mut reader = open(&server).await;
    assert!(!resume(&mut reader, "room", &seen).await);
    // Subscribed all the same: live messages follow, and nothing from before.
    publish(&mut publisher, "room", json!("live")).await;
    assert_eq!(next_message_and_offset(&mut reader).await.0, json!("live"));

    // An offset of another epoch (a channel whose history ended) is lost too.
    let (epoch, position) = seen.split_once('-').unwrap();
    let other = format!(
        "{:016x}-{position}",
        u64::from_str_radix(epoch, 16).unwrap() ^ 1
    );
    let mut stranger = open(&server).await;
    assert!(!resume(&mut stranger, "room", &other).await);
}

#[tokio::test]
async fn expired_messages_are_lost_but_a_client_that_saw_the_last_one_missed_nothing() {
    let server = TestServer::start(&["--history-ttl", "2s"]).await;
    let mut publisher = open(&server).await;
    let first = offset_seen_before_leaving(&server, &mut publisher, json!(1)).await;
    publish_acked(&mut publisher, "room", json!(2)).await;

    // Within the time to live: recovered.
    let mut early = open(&server).await;
    assert!(resume(&mut early, "room", &first).await);
    let (_, second) = next_message_and_offset(&mut early).await;

    // Past it both messages are gone: from the first, the second is lost; from the second,
    // nothing was missed, and the channel goes on in the same epoch.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut late = open(&server).await;
    assert!(!resume(&mut late, "room", &first).await);
    let mut caught_up = open(&server).await;
    assert!(resume(&mut caught_up, "room", &second).await);
    publish(&mut publisher, "room", json!(3)).await;
    let (data, offset) = next_message_and_offset(&mut caught_up).await;
    assert_eq!(data, json!(3));
    assert_eq!(next_message_and_offset(&mut late).await.0, json!(3));
    assert_eq!(next_message_and_offset(&mut early).await.0, json!(3));
    let epoch = first.split_once('-').unwrap().0;
    assert_eq!(offset, format!("{epoch}-3"));
}

#[tokio::test]
async fn resuming_many_channels_at_once_never_overflows_the_clients_queue() {
    // A queue of 50 frames, 20 messages kept per channel, 5 channels of 20 missed messages: the
    // replays cannot all fit at once.
    let server = TestServer::start(&["--client-queue-size", "50", "--history-size", "20"]).await;
    let mut publisher = open(&server).await;
    let mut offsets = Vec::new();
    for c in 0..5 {
        let channel = format!("c{c}");
        let mut reader = open(&server).await;
        subscribe(&mut reader, &channel).await;
        publish(&mut publisher, &channel, json!(0)).await;
        offsets.push(next_message_and_offset(&mut reader).await.1);
        for n in 1..=20 {
            publish(&mut publisher, &channel, json!(n)).await;
        }
    }
    publish_acked(&mut publisher, "sync", json!("fence")).await;
    let mut client = open(&server).await;
    for (c, since) in offsets.iter().enumerate() {
        send(
            &mut client,
            json!({"type":"subscribe","channel":format!("c{c}"),"since":since}),
        )
        .await;
    }
    // Every channel answers, the connection stays open, and a recovered channel's replay is whole.
    let mut answered = 0;
    let mut recovered = 0;
    while answered < 5 {
        let frame = next_json(&mut client).await;
        match frame["type"].as_str() {
            Some("subscribed") => {
                answered += 1;
                if frame["recovered"] == true {
                    recovered += 1;
                    for n in 1..=20 {
                        let (data, _) = next_message_and_offset(&mut client).await;
                        assert_eq!(data, json!(n), "{frame}");
                    }
                }
            }
            _ => panic!("unexpected {frame}"),
        }
    }
    assert!(recovered >= 1, "the first resume fits");
    // Still open and subscribed to all five.
    publish(&mut publisher, "c4", json!("live")).await;
    assert_eq!(next_message_and_offset(&mut client).await.0, json!("live"));
}

#[tokio::test]
async fn wss_messages_are_part_of_the_broadcast_history() {
    let server = TestServer::start(&[]).await;
    let mut reader = open(&server).await;
    subscribe(&mut reader, "broadcast").await;
    let mut old = join(&server).await;
    send_text(&mut old, r#"{"n":1}"#).await;
    let (_, first) = next_message_and_offset(&mut reader).await;
    drop(reader);
    send_text(&mut old, r#"{"n":2}"#).await;
    // The /wss sender sees its own message: it is in history by then.
    assert_eq!(next_text(&mut old).await, r#"{"message":{"n":1}}"#);
    assert_eq!(next_text(&mut old).await, r#"{"message":{"n":2}}"#);
    let mut reader = open(&server).await;
    assert!(resume(&mut reader, "broadcast", &first).await);
    assert_eq!(next_message_and_offset(&mut reader).await.0, json!({"n":2}));
}

#[tokio::test]
async fn a_bad_since_or_history_off_is_an_error_and_subscribes_nothing() {
    let server = TestServer::start(&[]).await;
    let mut client = open(&server).await;
    let mut publisher = open(&server).await;
    for bad in ["", "12", "not-an-offset", "00000000000000zz-1"] {
        send(
            &mut client,
            json!({"type":"subscribe","channel":"room","since":bad,"id":bad}),
        )
        .await;
        let reply = next_json(&mut client).await;
        assert_eq!(reply["type"], "error", "{bad}: {reply}");
        assert_eq!(reply["code"], "bad_request", "{bad}: {reply}");
        assert_eq!(reply["id"], bad);
    }
    publish(&mut publisher, "room", json!(1)).await;
    assert_quiet(&mut client).await;

    let key = "history-off-publish-key-0123456789abcdef";
    let off = TestServer::start(&["--history-size", "0", "--publish-api-keys", key]).await;
    let mut client = open(&off).await;
    send(
        &mut client,
        json!({"type":"subscribe","channel":"room","since":"00000000000000ff-1","id":7}),
    )
    .await;
    let reply = next_json(&mut client).await;
    assert_eq!(
        (reply["type"].as_str(), reply["code"].as_str(), &reply["id"]),
        (Some("error"), Some("history_disabled"), &json!(7)),
        "{reply}"
    );
    // Not subscribed; and with history off, messages carry no offset.
    let mut publisher = open(&off).await;
    publish(&mut publisher, "room", json!(1)).await;
    assert_quiet(&mut client).await;
    subscribe(&mut client, "room").await;
    publish(&mut publisher, "room", json!(2)).await;
    assert_eq!(
        next_text(&mut client).await,
        r#"{"type":"message","channel":"room","data":2}"#
    );
    // Over HTTP, a message without an offset is answered `null`.
    let (status, body) = http_publish(off.addr, key, r#"{"channel":"room","data":3}"#).await;
    assert_eq!((status, body.as_str()), (200, r#"{"offsets":[null]}"#));
}
