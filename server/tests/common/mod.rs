//! Helpers shared by the integration tests: a server on a loopback port, WebSocket clients, and
//! reading the server's own metrics.
#![allow(dead_code)] // each test binary uses its own subset

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use server::healthcheck::http_request;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

mod in_process;
pub use in_process::{PATIENCE, TestServer, metric, wait_for_metric};

pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket to `url`.
pub async fn connect(url: &str) -> Client {
    let (client, _) = tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect in time")
        .expect("connect");
    client
}

/// A socket to `addr` with a tiny receive buffer, so that the server's writes to it stall as soon
/// as its client stops reading.
pub async fn small_buffer_socket(addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(addr).await.unwrap()
}

/// A WebSocket to `url` (on `addr`) over [`small_buffer_socket`]; greeting not read.
pub async fn small_buffer_client(addr: SocketAddr, url: &str) -> Client {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let stream = MaybeTlsStream::Plain(small_buffer_socket(addr).await);
    let request = url.into_client_request().unwrap();
    let (client, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
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

/// A `websocket-server` process on free loopback ports, killed when dropped. Its standard output
/// and error are collected by threads, so a chatty server never blocks on a full pipe.
pub struct Process {
    child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub port: u16,
    stdout: Collected,
    stderr: Collected,
}

type Collected = Arc<Mutex<Vec<u8>>>;

fn collect(mut pipe: impl Read + Send + 'static) -> Collected {
    let buffer = Collected::default();
    let sink = Arc::clone(&buffer);
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(n @ 1..) = pipe.read(&mut chunk) {
            sink.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    buffer
}

/// What a finished process left.
pub struct Exit {
    pub code: Option<i32>,
    pub stdout: String,
    pub waited: Duration,
}

pub const BINARY: &str = env!("CARGO_BIN_EXE_websocket-server");

impl Process {
    /// Starts the binary with `env` on top of loopback ports and waits until it is healthy.
    pub async fn start(env: &[(&str, &str)]) -> Process {
        let port = free_port();
        let admin_port = free_port();
        let mut child = Command::new(BINARY)
            .env_clear()
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("METRICS_PORT", admin_port.to_string())
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start websocket-server");
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let admin = SocketAddr::from(([127, 0, 0, 1], admin_port));
        let process = Process {
            child,
            addr,
            admin,
            port,
            stdout,
            stderr,
        };
        let deadline = Instant::now() + PATIENCE;
        while !matches!(http_request(addr, "GET", "/health").await, Ok((200, _))) {
            let stderr = String::from_utf8_lossy(&process.stderr.lock().unwrap()).into_owned();
            assert!(
                Instant::now() < deadline,
                "the server never became healthy: {stderr}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        process
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now, in bytes (VmRSS from /proc).
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status");
        kib * 1024
    }

    pub async fn metric(&self, series: &str) -> f64 {
        metric(self.admin, series).await
    }

    pub async fn wait_for_metric(&self, series: &str, value: f64) {
        wait_for_metric(self.admin, series, value).await
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status();
        assert!(status.unwrap().success(), "kill -{name}");
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the process to exit (panics after `limit`).
    pub async fn wait(mut self, limit: Duration) -> Exit {
        let started = Instant::now();
        while self.is_running() {
            assert!(
                started.elapsed() < limit,
                "the process did not exit within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let code = self.child.wait().unwrap().code();
        // The collecting threads see end-of-file once the process is gone.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let stdout = String::from_utf8(self.stdout.lock().unwrap().clone()).unwrap();
        Exit {
            code,
            stdout,
            waited: started.elapsed(),
        }
    }

    pub fn healthcheck(&self) -> Output {
        Command::new(BINARY)
            .arg("healthcheck")
            .env_clear()
            .env("PORT", self.port.to_string())
            .output()
            .unwrap()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
