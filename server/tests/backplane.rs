//! The Redis backplane with a real `redis-server`: two server processes share one channel, every
//! client gets every message exactly once whichever process its sender is on, and a Redis outage
//! costs only cross-task delivery while it lasts.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Reconnection backs off up to 10 s, so recovery gets more patience than other waits.
const RECOVERY: Duration = Duration::from_secs(30);

/// The tests run one at a time: one restarts Redis on its port, and a port freed for a moment
/// could otherwise be handed to the other test.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A `redis-server` on a loopback port, without persistence, killed when dropped.
struct Redis {
    child: Child,
}

impl Redis {
    /// A plain-TCP server on `port`.
    fn start(port: u16) -> Redis {
        let port_text = port.to_string();
        let args = [
            "--port",
            &port_text,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ];
        Redis::spawn(&args, port)
    }

    /// A server with `args`, once it accepts connections on `port`.
    fn spawn(args: &[&str], port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .expect(
                "redis-server must be installed (Debian package redis-server; .ci/run installs it)",
            );
        let mut redis = Redis { child };
        let deadline = Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Something answering is not enough: it must be this redis-server (the port was free).
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            redis.child.try_wait().unwrap().is_none(),
            "redis-server exited: port {port} taken?"
        );
        redis
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_for_backplane(admin: SocketAddr, up: bool) {
    let deadline = Instant::now() + RECOVERY;
    let want = if up { 1.0 } else { 0.0 };
    while metric(admin, "websocket_backplane_up").await != want {
        assert!(
            Instant::now() < deadline,
            "backplane of {admin} never became {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every client sends `each` messages tagged with its index; returns, per receiving client, the
/// sequence numbers it got from each sender, after reading exactly `clients × each` messages.
async fn exchange(
    clients: &mut [Client],
    round: &str,
    each: usize,
) -> Vec<HashMap<usize, Vec<usize>>> {
    for (sender, client) in clients.iter_mut().enumerate() {
        for seq in 0..each {
            send_text(
                client,
                format!(r#"{{"round":"{round}","sender":{sender},"seq":{seq}}}"#),
            )
            .await;
        }
    }
    let expected = clients.len() * each;
    let mut received = Vec::new();
    for client in clients.iter_mut() {
        let mut by_sender: HashMap<usize, Vec<usize>> = HashMap::new();
        for _ in 0..expected {
            let envelope: serde_json::Value =
                serde_json::from_str(&next_text(client).await).unwrap();
            let message = &envelope["message"];
            assert_eq!(
                message["round"], round,
                "a message from another round: {message}"
            );
            let sender = message["sender"].as_u64().unwrap() as usize;
            by_sender
                .entry(sender)
                .or_default()
                .push(message["seq"].as_u64().unwrap() as usize);
        }
        received.push(by_sender);
    }
    received
}

fn assert_exactly_once_in_order(
    received: &[HashMap<usize, Vec<usize>>],
    senders: usize,
    each: usize,
) {
    for (client, by_sender) in received.iter().enumerate() {
        for sender in 0..senders {
            let expected: Vec<usize> = (0..each).collect();
            assert_eq!(
                by_sender.get(&sender),
                Some(&expected),
                "client {client}, sender {sender}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_cross_tasks_exactly_once_and_survive_a_redis_outage() {
    let _serial = ONE_AT_A_TIME.lock().await;
    const EACH: usize = 25;
    let redis_port = free_port();
    let mut redis = Redis::start(redis_port);
    let url = format!("redis://127.0.0.1:{redis_port}");
    let env = [
        ("REDIS_URL", url.as_str()),
        ("LOG_LEVEL", "warn"),
        ("EMF_INTERVAL", "0"),
    ];
    let mut task_a = Process::start(&env).await;
    let mut task_b = Process::start(&env).await;
    wait_for_backplane(task_a.admin, true).await;
    wait_for_backplane(task_b.admin, true).await;

    // Clients 0 and 1 on task A, 2 and 3 on task B.
    let mut clients = Vec::new();
    for task in [&task_a, &task_a, &task_b, &task_b] {
        clients.push(connect(&task.url("/wss")).await);
        assert_eq!(
            next_text(clients.last_mut().unwrap()).await,
            r#"{"connection":"ok"}"#
        );
    }
    let received = exchange(&mut clients, "before", EACH).await;
    assert_exactly_once_in_order(&received, clients.len(), EACH);

    // Redis goes away: each task keeps serving its own clients.
    drop(redis);
    wait_for_backplane(task_a.admin, false).await;
    wait_for_backplane(task_b.admin, false).await;
    let (on_a, on_b) = clients.split_at_mut(2);
    let local_a = exchange(on_a, "outage-a", EACH).await;
    assert_exactly_once_in_order(&local_a, 2, EACH);
    let local_b = exchange(on_b, "outage-b", EACH).await;
    assert_exactly_once_in_order(&local_b, 2, EACH);
    assert!(
        task_a.is_running() && task_b.is_running(),
        "no process exits"
    );
    let (status, _) = server::healthcheck::http_request(task_a.addr, "GET", "/health")
        .await
        .unwrap();
    assert_eq!(status, 200, "health stays 200 without Redis");
    assert!(
        metric(task_a.admin, "websocket_backplane_local_only_total").await >= (2 * EACH) as f64
    );

    // Redis is back: cross-task delivery resumes, exactly once. (`exchange` would fail on any
    // leftover outage message arriving late on the other task.)
    redis = Redis::start(redis_port);
    wait_for_backplane(task_a.admin, true).await;
    wait_for_backplane(task_b.admin, true).await;
    let received = exchange(&mut clients, "after", EACH).await;
    assert_exactly_once_in_order(&received, clients.len(), EACH);
    assert!(task_a.is_running() && task_b.is_running());
    drop(redis);
}

/// A throwaway CA and a server certificate for 127.0.0.1, made with the openssl command.
fn certificates(dir: &std::path::Path) {
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stderr(Stdio::null())
            .status()
            .expect("the openssl command must be installed");
        assert!(status.success(), "openssl {args:?}");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_an_auth_token() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let dir = std::env::temp_dir().join(format!("backplane-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    certificates(&dir);
    let port = free_port().to_string();
    let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let _redis = Redis::spawn(
        &[
            "--port",
            "0",
            "--tls-port",
            &port,
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            &file("server.pem"),
            "--tls-key-file",
            &file("server.key"),
            "--tls-auth-clients",
            "no",
            "--requirepass",
            "t0ken",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        port.parse().unwrap(),
    );
    let ca = file("ca.pem");
    let url = format!("rediss://:t0ken@127.0.0.1:{port}");
    let env = [
        ("REDIS_URL", url.as_str()),
        ("SSL_CERT_FILE", ca.as_str()),
        ("EMF_INTERVAL", "0"),
    ];
    let task_a = Process::start(&env).await;
    let task_b = Process::start(&env).await;
    wait_for_backplane(task_a.admin, true).await;
    wait_for_backplane(task_b.admin, true).await;
    let mut clients = vec![
        connect(&task_a.url("/wss")).await,
        connect(&task_b.url("/wss")).await,
    ];
    for client in &mut clients {
        next_text(client).await;
    }
    let received = exchange(&mut clients, "tls", 5).await;
    assert_exactly_once_in_order(&received, 2, 5);

    // The wrong token never connects; the task still serves its own clients.
    let wrong = format!("rediss://:wrong@127.0.0.1:{port}");
    let task_c = Process::start(&[
        ("REDIS_URL", wrong.as_str()),
        ("SSL_CERT_FILE", ca.as_str()),
    ])
    .await;
    wait_for_metric(task_c.admin, "websocket_backplane_up", 0.0).await;
    let mut alone = vec![connect(&task_c.url("/wss")).await];
    next_text(&mut alone[0]).await;
    assert_exactly_once_in_order(&exchange(&mut alone, "alone", 3).await, 1, 3);
    let failures = metric(
        task_c.admin,
        "websocket_backplane_connection_failures_total",
    )
    .await;
    assert!(failures >= 1.0, "failed attempts are counted: {failures}");
    let _ = std::fs::remove_dir_all(dir);
}
