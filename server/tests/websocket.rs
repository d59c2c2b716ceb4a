//! The wire contract and the protective behaviours, against a server on a loopback port with real
//! WebSocket clients.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use server::healthcheck::http_request;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::error::Error as WsError;

#[tokio::test]
async fn greets_on_open() {
    let server = TestServer::start(&[]).await;
    join(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn broadcasts_every_message_to_every_client_including_the_sender() {
    const CLIENTS: usize = 20;
    const SENDERS: usize = 5;
    const MESSAGES: usize = 200;
    let server = TestServer::start(&[]).await;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(join(&server).await);
    }
    let (mut senders, receivers) = {
        let mut all = clients.into_iter();
        let senders: Vec<_> = all.by_ref().take(SENDERS).collect();
        (senders, all.collect::<Vec<_>>())
    };
    // Senders read concurrently with writing, as a browser does, so nobody stalls.
    let mut tasks = Vec::new();
    for (sender_id, client) in senders.drain(..).enumerate() {
        tasks.push(tokio::spawn(async move {
            let (mut write, mut read) = client.split();
            let writing = async {
                for seq in 0..MESSAGES {
                    let body = format!(r#"{{"sender":{sender_id},"seq":{seq}}}"#);
                    write.send(Message::text(body)).await.unwrap();
                }
            };
            let reading = collect(&mut read, SENDERS * MESSAGES);
            let ((), seen) = tokio::join!(writing, reading);
            seen
        }));
    }
    for client in receivers {
        tasks.push(tokio::spawn(async move {
            let (_write, mut read) = client.split();
            collect(&mut read, SENDERS * MESSAGES).await
        }));
    }
    for task in tasks {
        let seen = task.await.unwrap();
        // Every message exactly once, and each sender's messages in the order sent.
        for sender in 0..SENDERS as u64 {
            let sequence = &seen[&sender];
            assert_eq!(
                sequence,
                &(0..MESSAGES as u64).collect::<Vec<_>>(),
                "sender {sender}"
            );
        }
    }
    server.stop().await;

    async fn collect(
        read: &mut (impl StreamExt<Item = Result<Message, WsError>> + Unpin),
        count: usize,
    ) -> HashMap<u64, Vec<u64>> {
        let mut seen: HashMap<u64, Vec<u64>> = HashMap::new();
        for _ in 0..count {
            let frame = tokio::time::timeout(PATIENCE, read.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            let envelope: serde_json::Value =
                serde_json::from_str(frame.to_text().unwrap()).unwrap();
            let message = &envelope["message"];
            let sender = message["sender"].as_u64().unwrap();
            seen.entry(sender)
                .or_default()
                .push(message["seq"].as_u64().unwrap());
        }
        seen
    }
}

#[tokio::test]
async fn drops_what_is_not_json_and_keeps_the_connection() {
    let server = TestServer::start(&[]).await;
    let mut client = join(&server).await;
    send_text(&mut client, "not json").await;
    send_text(&mut client, r#"{"a":1"#).await;
    client
        .send(Message::binary(&b"\xff\x00"[..]))
        .await
        .unwrap();
    send_text(&mut client, r#"{"ok":true}"#).await;
    assert_eq!(next_text(&mut client).await, r#"{"message":{"ok":true}}"#);
    assert_eq!(
        server
            .metric(r#"websocket_messages_dropped_total{reason="invalid_json"}"#)
            .await,
        3.0
    );
    server.stop().await;
}

#[tokio::test]
async fn binary_json_is_broadcast_as_text() {
    let server = TestServer::start(&[]).await;
    let mut client = join(&server).await;
    client
        .send(Message::binary(&br#"[1,2]"#[..]))
        .await
        .unwrap();
    assert_eq!(
        next_frame(&mut client).await,
        Message::text(r#"{"message":[1,2]}"#)
    );
    server.stop().await;
}

#[tokio::test]
async fn closes_an_oversize_message_with_1009() {
    let server =
        TestServer::start(&["--max-message-size", "1024", "--max-frame-size", "1024"]).await;
    let mut client = join(&server).await;
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(2000));
    send_text(&mut client, big).await;
    assert_eq!(close_code(&mut client).await, 1009);
    server
        .wait_for_metric(
            r#"websocket_connections_closed_total{reason="message_too_big"}"#,
            1.0,
        )
        .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuts_off_a_stalled_client_while_the_others_receive_everything() {
    const MESSAGES: usize = 2000;
    // Before each WINDOW of messages the sender waits until it and the reader have read all but the
    // last window, so the clients that do read are never more than two windows behind, well inside
    // their queue however the test's tasks are scheduled; the stalled client falls out of it.
    const WINDOW: usize = 32;
    // Unlimited inbound rate: the sender sends as fast as the readers read.
    let server = TestServer::start(&[
        "--client-queue-size",
        "128",
        "--max-messages-per-second",
        "0",
        "--max-bytes-per-second",
        "0",
    ])
    .await;
    // A client that never reads, with a tiny receive buffer so the server's writes stall quickly.
    let _stalled = small_buffer_client(server.addr, &server.url("/wss")).await;
    server.wait_for_metric("websocket_connections", 1.0).await;

    let mut sender = join(&server).await;
    let mut reader = join(&server).await;
    let (read, mut read_so_far) = tokio::sync::watch::channel(0usize);
    let reading = tokio::spawn(async move {
        for seq in 0..MESSAGES {
            let text = next_text(&mut reader).await;
            assert!(
                text.starts_with(&format!(r#"{{"message":{{"seq":{seq},"#)),
                "message {seq}"
            );
            read.send_replace(seq + 1);
        }
    });
    let pad = "x".repeat(4000);
    let mut sent = 0usize;
    for window in (0..MESSAGES).collect::<Vec<_>>().chunks(WINDOW) {
        let behind = sent.saturating_sub(WINDOW);
        tokio::time::timeout(PATIENCE, read_so_far.wait_for(|&read| read >= behind))
            .await
            .expect("the reader keeps up")
            .expect("the reader is running");
        for seq in window {
            send_text(&mut sender, format!(r#"{{"seq":{seq},"pad":"{pad}"}}"#)).await;
        }
        sent += window.len();
        for _ in window {
            next_text(&mut sender).await;
        }
    }
    reading
        .await
        .expect("the reading client got every message in order");
    server
        .wait_for_metric(
            r#"websocket_connections_closed_total{reason="slow_consumer"}"#,
            1.0,
        )
        .await;
    server.stop().await;
}

#[tokio::test]
async fn heartbeat_drops_a_client_that_stops_answering() {
    let server = TestServer::start(&["--ping-interval", "100ms", "--pong-timeout", "200ms"]).await;
    // This client keeps reading, so its WebSocket layer answers every ping: it must stay.
    let (mut lively_write, mut lively_read) = join(&server).await.split();
    let lively = tokio::spawn(async move {
        loop {
            let frame = tokio::time::timeout(PATIENCE, lively_read.next())
                .await
                .unwrap();
            match frame.unwrap().unwrap() {
                Message::Text(text) => return text.to_string(),
                Message::Ping(_) => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
    });
    // This one never reads after the greeting, so it never answers a ping.
    let _silent = join(&server).await;
    server
        .wait_for_metric(
            r#"websocket_connections_closed_total{reason="pong_timeout"}"#,
            1.0,
        )
        .await;
    // Several heartbeats later the reading client is still there and still served.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.metric("websocket_connections").await, 1.0);
    lively_write.send(Message::text("1")).await.unwrap();
    assert_eq!(lively.await.unwrap(), r#"{"message":1}"#);
    server.stop().await;
}

#[tokio::test]
async fn refuses_upgrades_over_the_connection_limit_with_503() {
    let server = TestServer::start(&["--max-connections", "2"]).await;
    let _first = join(&server).await;
    let _second = join(&server).await;
    match tokio_tungstenite::connect_async(server.url("/wss")).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("expected HTTP 503, got {other:?}"),
    }
    assert_eq!(
        server
            .metric(r#"websocket_upgrades_rejected_total{reason="connection_limit"}"#)
            .await,
        1.0
    );
    server.stop().await;
}

#[tokio::test]
async fn echo_returns_every_frame_unchanged() {
    let server = TestServer::start(&[]).await;
    let mut client = connect(&server.url("/echo")).await;
    for frame in [
        Message::text("not even json"),
        Message::binary(&[0u8, 1, 2, 255][..]),
    ] {
        client.send(frame.clone()).await.unwrap();
        assert_eq!(next_frame(&mut client).await, frame);
    }
    server.stop().await;
}

#[tokio::test]
async fn answers_plain_http_with_the_right_status() {
    let server = TestServer::start(&[]).await;
    let cases = [
        ("GET", "/health", 200),
        ("GET", "/nope", 404),
        ("POST", "/health", 405),
        ("POST", "/wss", 405),
        ("GET", "/wss", 426),
        ("GET", "/echo", 426),
    ];
    for (method, path, expected) in cases {
        let (status, _) = http_request(server.addr, method, path).await.unwrap();
        assert_eq!(status, expected, "{method} {path}");
    }
    let (_, body) = http_request(server.addr, "GET", "/health").await.unwrap();
    assert_eq!(body, "Ok");
    let (_, body) = http_request(server.addr, "GET", "/wss").await.unwrap();
    assert!(body.contains("WebSocket"), "{body}");
    let (status, _) = http_request(server.admin, "GET", "/metrics").await.unwrap();
    assert_eq!(status, 200);
    let (status, _) = http_request(server.admin, "GET", "/wss").await.unwrap();
    assert_eq!(status, 404, "the admin port serves only metrics");
    server.stop().await;
}

#[tokio::test]
async fn drain_closes_every_client_with_1001_and_refuses_new_ones() {
    let server = TestServer::start(&["--drain-timeout", "5s"]).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(join(&server).await);
    }
    let addr = server.addr;
    let url = server.url("/wss");
    let stopping = tokio::spawn(server.stop());
    for client in &mut clients {
        assert_eq!(close_code(client).await, 1001);
    }
    stopping.await.unwrap();
    // Once the drain finished the server is gone.
    assert!(tokio_tungstenite::connect_async(url).await.is_err());
    assert!(http_request(addr, "GET", "/health").await.is_err());
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[tokio::test]
async fn a_drain_first_delivers_what_a_slow_reader_is_owed_whole_then_closes_it_with_1001() {
    // A client reading slowly has frames in flight: half of one on the wire, more queued. The
    // drain's close frame comes after the rest of them, and every frame arrives whole.
    // 9 MB: more than the kernel buffers for a socket (4 MB at most here), within the queue.
    const MESSAGES: usize = 150;
    let server = TestServer::start(&[
        "--client-queue-bytes",
        "67108864",
        "--max-bytes-per-second",
        "0",
    ])
    .await;
    let mut slow = small_buffer_client(server.addr, &server.url("/wss")).await;
    next_text(&mut slow).await;
    let mut publisher = join(&server).await;
    let filler = "x".repeat(60 * 1024);
    for seq in 0..MESSAGES {
        send_text(
            &mut publisher,
            format!(r#"{{"seq":{seq},"filler":"{filler}"}}"#),
        )
        .await;
    }
    // Everything was fanned out once the publisher has its own copies back.
    for _ in 0..MESSAGES {
        next_text(&mut publisher).await;
    }
    let stopping = tokio::spawn(server.stop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    for seq in 0..MESSAGES {
        let message: serde_json::Value = serde_json::from_str(&next_text(&mut slow).await).unwrap();
        assert_eq!(message["message"]["seq"], seq, "in order, none lost");
    }
    assert_eq!(close_code(&mut slow).await, 1001);
    assert_eq!(close_code(&mut publisher).await, 1001);
    stopping.await.unwrap();
}

#[tokio::test]
async fn the_demo_page_is_served_with_a_strict_content_security_policy() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start(&[]).await;
    for (path, content_type) in [
        ("/", "text/html"),
        ("/index.html", "text/html"),
        ("/demo.js", "text/javascript"),
        ("/demo.css", "text/css"),
    ] {
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let head = response
            .split("\r\n\r\n")
            .next()
            .unwrap()
            .to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{path}: {head}");
        assert!(
            head.contains(&format!("content-type: {content_type}")),
            "{path}: {head}"
        );
        assert!(
            head.contains("content-security-policy: default-src 'none'; script-src 'self'"),
            "{path}: {head}"
        );
        assert!(
            head.contains("x-content-type-options: nosniff"),
            "{path}: {head}"
        );
    }
    server.stop().await;
}
