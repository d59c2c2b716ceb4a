//! Helpers shared by the integration tests: a server on a loopback port, WebSocket clients, and
//! reading the server's own metrics.
#![allow(dead_code)] // each test binary uses its own subset

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use server::config::Cli;
use server::healthcheck::http_request;
use server::{Listeners, bind};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Long enough for anything that should happen; only reached when a test is about to fail.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A server running in this process on 127.0.0.1, with its admin (metrics) port.
pub struct TestServer {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl TestServer {
    /// Starts a server with the given `--flags` on top of the defaults. The drain is short because
    /// test clients that are not being read never answer the server's close frame.
    pub async fn start(flags: &[&str]) -> TestServer {
        let argv = [
            "websocket-server",
            "--host",
            "127.0.0.1",
            "--emf-interval",
            "0",
            "--drain-timeout",
            "1s",
        ];
        let cli = Cli::try_parse_from(argv.iter().chain(flags)).expect("valid test flags");
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let listeners = Listeners {
            public: bind(loopback).unwrap(),
            admin: Some(bind(loopback).unwrap()),
        };
        let addr = listeners.public.local_addr().unwrap();
        let admin = listeners.admin.as_ref().unwrap().local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server::run(&cli.config, listeners, async {
                let _ = stopped.await;
            })
            .await
        });
        TestServer {
            addr,
            admin,
            stop: Some(stop),
            task,
        }
    }

    /// Starts the drain and waits for `run` to return.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(PATIENCE, &mut self.task)
            .await
            .expect("server stops")
            .unwrap();
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// A value from the server's Prometheus text, e.g. `websocket_connections_closed_total{reason="slow_consumer"}`
    /// (0 when the series does not exist yet).
    pub async fn metric(&self, series: &str) -> f64 {
        let (status, body) = http_request(self.admin, "GET", "/metrics").await.unwrap();
        assert_eq!(status, 200);
        body.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits until `series` reaches `value`; panics with the last value after `PATIENCE`.
    pub async fn wait_for_metric(&self, series: &str, value: f64) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let now = self.metric(series).await;
            if now == value {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{series} is {now}, expected {value}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Opens a WebSocket to `url`.
pub async fn connect(url: &str) -> Client {
    let (client, _) = tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect in time")
        .expect("connect");
    client
}

/// Opens `/wss` and consumes the greeting.
pub async fn join(server: &TestServer) -> Client {
    let mut client = connect(&server.url("/wss")).await;
    assert_eq!(next_text(&mut client).await, r#"{"connection":"ok"}"#);
    client
}

/// The next data frame, as text; panics on anything else or after `PATIENCE`.
pub async fn next_text(client: &mut Client) -> String {
    match next_frame(client).await {
        Message::Text(text) => text.to_string(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// The next frame that is not a ping or pong.
pub async fn next_frame(client: &mut Client) -> Message {
    loop {
        let frame = tokio::time::timeout(PATIENCE, client.next())
            .await
            .expect("a frame in time")
            .expect("the stream is open")
            .expect("a valid frame");
        if !(frame.is_ping() || frame.is_pong()) {
            return frame;
        }
    }
}

/// Reads until the server's close frame and returns its code; panics if the stream ends without one.
pub async fn close_code(client: &mut Client) -> u16 {
    loop {
        match tokio::time::timeout(PATIENCE, client.next())
            .await
            .expect("a close frame in time")
        {
            Some(Ok(Message::Close(Some(frame)))) => return frame.code.into(),
            Some(Ok(Message::Close(None))) => panic!("close frame without a code"),
            Some(Ok(_)) => continue,
            other => panic!("stream ended without a close frame: {other:?}"),
        }
    }
}

pub async fn send_text(client: &mut Client, text: impl Into<String>) {
    client.send(Message::text(text.into())).await.expect("send");
}

/// A port nothing listens on right now (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
