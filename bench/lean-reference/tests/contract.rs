//! The lean reference keeps the `/wss` wire contract: checked against the real binary, over
//! loopback, with tokio-tungstenite as the client.

use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(5);

/// Starts the binary on a free loopback port; returns it and its `ws://…/wss` URL once it says
/// it is listening.
async fn start() -> (Child, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lean-reference"))
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = timeout(WAIT, lines.next_line())
        .await
        .expect("no listening line in time")
        .unwrap()
        .expect("stdout closed before the listening line");
    assert_eq!(line, format!("listening on 127.0.0.1:{port}"));
    (child, format!("ws://127.0.0.1:{port}/wss"))
}

/// Connects and checks the greeting.
async fn connect(url: &str) -> Client {
    let (mut client, _) = timeout(WAIT, connect_async(url)).await.unwrap().unwrap();
    assert_eq!(next_text(&mut client).await, r#"{"connection":"ok"}"#);
    client
}

/// The next text frame.
async fn next_text(client: &mut Client) -> String {
    let message = timeout(WAIT, client.next())
        .await
        .expect("no frame in time")
        .expect("connection ended")
        .unwrap();
    match message {
        Message::Text(text) => text.to_string(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

#[tokio::test]
async fn greets_broadcasts_as_written_and_drops_invalid_json() {
    let (mut child, url) = start().await;
    let mut alice = connect(&url).await;
    let mut bob = connect(&url).await;

    alice.send(Message::text(r#"{"b":1,"a":2}"#)).await.unwrap();
    assert_eq!(next_text(&mut alice).await, r#"{"message":{"b":1,"a":2}}"#);
    assert_eq!(next_text(&mut bob).await, r#"{"message":{"b":1,"a":2}}"#);

    // Not JSON: dropped, and the connection keeps working (the next frame is the next broadcast).
    bob.send(Message::text("hello")).await.unwrap();
    bob.send(Message::binary(&b"[1, 2.50]"[..])).await.unwrap();
    assert_eq!(next_text(&mut bob).await, r#"{"message":[1, 2.50]}"#);
    assert_eq!(next_text(&mut alice).await, r#"{"message":[1, 2.50]}"#);

    // A client close is answered, and the others carry on.
    bob.close(None).await.unwrap();
    alice.send(Message::text("42")).await.unwrap();
    assert_eq!(next_text(&mut alice).await, r#"{"message":42}"#);

    child.kill().await.unwrap();
}

#[tokio::test]
async fn other_paths_are_refused() {
    let (mut child, url) = start().await;
    let err = connect_async(url.replace("/wss", "/nope"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn a_bad_port_is_named_and_exits_2() {
    let output = Command::new(env!("CARGO_BIN_EXE_lean-reference"))
        .env("PORT", "eighty")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("PORT"), "{stderr}");
    assert!(output.stdout.is_empty());
}
