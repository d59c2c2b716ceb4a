//! Helpers shared by the integration tests: the server in this process ([`TestServer`]) or as the
//! real binary ([`Process`]), a `redis-server` of a test's own ([`Redis`]), WebSocket clients, and
//! reading the server's own metrics.
#![allow(dead_code)] // each test binary uses its own subset

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use server::healthcheck::http_request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

mod in_process;
pub mod jwt;
mod proxy;
mod redis_server;
#[allow(unused_imports)] // each test binary uses its own subset
pub use in_process::{PATIENCE, TestServer, metric, refusing_address, wait_for_metric};
#[allow(unused_imports)]
pub use proxy::Proxy;
#[allow(unused_imports)]
pub use redis_server::Redis;

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

/// `frame` without its `"offset":"…"`: messages on `/v1/ws` carry one (drawn per channel at
/// random) when the server keeps history, and tests of other rules compare the rest byte for byte.
pub fn without_offset(frame: &str) -> String {
    const FIELD: &str = r#","offset":""#;
    let Some(start) = frame.find(FIELD) else {
        return frame.to_owned();
    };
    let value = start + FIELD.len();
    let end = value
        + frame[value..]
            .find('"')
            .expect("an offset ends with a quote")
        + 1;
    format!("{}{}", &frame[..start], &frame[end..])
}

/// The next data frame as text, without its offset ([`without_offset`]).
pub async fn next_message(client: &mut Client) -> String {
    without_offset(&next_text(client).await)
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

/// Sends one request to `/v1/publish` with `Connection: close` and returns the status and the
/// body.
pub async fn publish_request(
    addr: SocketAddr,
    method: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut head = format!(
        "{method} /v1/publish HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(body.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(PATIENCE, socket.read_to_end(&mut response))
        .await
        .expect("a response in time")
        .unwrap();
    let response = String::from_utf8(response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

/// `POST /v1/publish` of `body` with `key`; the status and the body.
pub async fn http_publish(addr: SocketAddr, key: &str, body: &str) -> (u16, String) {
    let bearer = format!("Bearer {key}");
    publish_request(addr, "POST", &[("Authorization", &bearer)], body).await
}

pub async fn send_text(client: &mut Client, text: impl Into<String>) {
    client.send(Message::text(text.into())).await.expect("send");
}

/// A loopback port free a moment ago (bound, then released), so another process may take it
/// before the caller binds it: callers tell their own listener from someone else's and try again.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `websocket-server` process on loopback, killed when dropped. Its addresses are read from its
/// own start-up lines, so they are sockets this process bound and not someone else's. Its standard
/// output and error are collected by threads, so a chatty server never blocks on a full pipe.
pub struct Process {
    child: Child,
    pub addr: SocketAddr,
    admin: Option<SocketAddr>,
    stdout: Collected,
    stderr: Collected,
}

/// What the process wrote to one pipe so far, read by a thread of its own until end-of-file.
struct Collected {
    bytes: Arc<Mutex<Vec<u8>>>,
    reader: std::thread::JoinHandle<()>,
}

fn collect(mut pipe: impl Read + Send + 'static) -> Collected {
    let bytes = Arc::<Mutex<Vec<u8>>>::default();
    let sink = Arc::clone(&bytes);
    let reader = std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(n @ 1..) = pipe.read(&mut chunk) {
            sink.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    Collected { bytes, reader }
}

fn text(collected: &Collected) -> String {
    String::from_utf8_lossy(&collected.bytes.lock().unwrap()).into_owned()
}

/// Waits until the pipe's reader has seen end-of-file (the process is gone), so that nothing the
/// process wrote is missing: the last lines it writes as it exits are the ones tests read most.
async fn finished(collected: &Collected) -> &Collected {
    let started = Instant::now();
    while !collected.reader.is_finished() {
        assert!(
            started.elapsed() < PATIENCE,
            "the pipe stays open after the exit"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    collected
}

/// What a finished process left.
pub struct Exit {
    pub code: Option<i32>,
    pub stdout: String,
    pub waited: Duration,
}

impl Exit {
    /// Standard output as JSON lines (`LOG_FORMAT=json`: every line the process writes is one).
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}")))
            .collect()
    }
}

pub const BINARY: &str = env!("CARGO_BIN_EXE_websocket-server");

/// The start-up lines the server logs once each listener is bound, with its `address`.
const SERVING_PUBLIC: &str = "serving WebSocket on /wss, /v1/ws and /echo";
const SERVING_METRICS: &str = "serving metrics on /metrics";

/// How many times a start is tried, on new ports each time, when another process took one first.
const ATTEMPTS: u32 = 5;

/// Another process bound the admin port between `free_port` and the server's own bind; with
/// the server's standard error.
struct PortTaken(String);

impl Process {
    /// Starts the binary with `env` on top of loopback ports and waits until it is healthy.
    /// `("METRICS_PORT", "0")` in `env` starts it without its admin port.
    pub async fn start(env: &[(&str, &str)]) -> Process {
        Process::launch(env, || Command::new(BINARY)).await
    }

    /// Like `start`, with an open-file limit of `open_files` (soft and hard), as a container with
    /// a low nofile ulimit would have.
    pub async fn start_with_open_file_limit(open_files: u32, env: &[(&str, &str)]) -> Process {
        Process::launch(env, || {
            let mut command = Command::new("bash");
            command.args([
                "-c",
                &format!("ulimit -n {open_files} && exec \"$0\""),
                BINARY,
            ]);
            command
        })
        .await
    }

    async fn launch(env: &[(&str, &str)], command: impl Fn() -> Command) -> Process {
        let mut attempt = 1;
        loop {
            match Process::try_launch(command(), env).await {
                Ok(process) => return process,
                Err(PortTaken(stderr)) if attempt < ATTEMPTS => {
                    eprintln!(
                        "websocket-server lost a port to another process, starting again: {stderr}"
                    );
                    attempt += 1;
                }
                Err(PortTaken(stderr)) => {
                    panic!("websocket-server lost a port {ATTEMPTS} times in a row: {stderr}")
                }
            }
        }
    }

    async fn try_launch(mut command: Command, env: &[(&str, &str)]) -> Result<Process, PortTaken> {
        // The kernel picks the public port (PORT=0). METRICS_PORT=0 means no metrics, so the admin
        // port is picked here, and taken again if another process binds it first; the start-up
        // lines prove that the server itself holds both.
        let admin_port = free_port();
        let metrics = !env.contains(&("METRICS_PORT", "0"));
        let mut child = command
            .env_clear()
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("METRICS_PORT", admin_port.to_string())
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start websocket-server");
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        let deadline = Instant::now() + PATIENCE;
        let (addr, admin) = loop {
            let logged = text(&stdout);
            let addr = logged_address(&logged, SERVING_PUBLIC);
            let admin = logged_address(&logged, SERVING_METRICS);
            if let Some(addr) = addr
                && (admin.is_some() || !metrics)
            {
                break (addr, admin);
            }
            if let Some(status) = child.try_wait().unwrap() {
                let stderr = text(finished(&stderr).await);
                if status.code() == Some(1) && stderr.contains("cannot listen on") {
                    return Err(PortTaken(stderr.trim_end().to_owned()));
                }
                panic!(
                    "websocket-server exited ({status}) before serving: {stderr}{}",
                    text(&stdout)
                );
            }
            assert!(
                Instant::now() < deadline,
                "no start-up line from websocket-server (LOG_LEVEL must let the server's info \
                 lines through): {}{}",
                text(&stderr),
                logged
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let process = Process {
            child,
            addr,
            admin,
            stdout,
            stderr,
        };
        while !matches!(http_request(addr, "GET", "/health").await, Ok((200, _))) {
            assert!(
                Instant::now() < deadline,
                "the server never became healthy: {}",
                text(&process.stderr)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(process)
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// The admin (metrics) port's address; panics if the process was started without one.
    pub fn admin(&self) -> SocketAddr {
        self.admin
            .expect("started with METRICS_PORT=0: no admin port")
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
        metric(self.admin(), series).await
    }

    pub async fn wait_for_metric(&self, series: &str, value: f64) {
        wait_for_metric(self.admin(), series, value).await
    }

    pub fn signal(&self, name: &str) {
        // bash's own `kill`: the kill command (procps) is missing from slim images.
        let status = Command::new("bash")
            .args(["-c", "kill -s \"$0\" \"$1\"", name, &self.pid().to_string()])
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
        let stdout =
            String::from_utf8(finished(&self.stdout).await.bytes.lock().unwrap().clone()).unwrap();
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
            .env("PORT", self.addr.port().to_string())
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

/// The `address` of the first complete line of `log` that contains `message`, in either log
/// format: `LOG_FORMAT=json` (a field of the object) or text (`address=…`, maybe in colour).
fn logged_address(log: &str, message: &str) -> Option<SocketAddr> {
    let complete = &log[..log.rfind('\n')? + 1];
    let line = complete.lines().find(|line| line.contains(message))?;
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(line) {
        return json["address"].as_str()?.parse().ok();
    }
    let plain = without_colours(line);
    let address = plain
        .split_whitespace()
        .find_map(|word| word.strip_prefix("address="))?;
    address.parse().ok()
}

/// `line` without its ANSI colour sequences (ESC `[` … `m`).
fn without_colours(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            plain.push(c);
        }
    }
    plain
}
