//! The `smoke` binary against a real server on loopback, with stand-ins for what only a deployment
//! has: a load balancer that answers 403 and a CloudFront that redirects plain HTTP. For the
//! broadcast check, two servers (the tasks) behind a round-robin proxy (the load balancer), with
//! and without a real `redis-server` between them.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

// The server tests' in-process server and Redis, shared by path: the rest of their support names
// the server's binary, which only its own crate can.
#[path = "../../server/tests/common/in_process.rs"]
mod in_process;
#[path = "../../server/tests/common/redis_server.rs"]
mod redis_server;

use in_process::{TestServer, refusing_address};
use redis_server::Redis;

const SMOKE: &str = env!("CARGO_BIN_EXE_smoke");

/// A stand-in that answers every request with `head` (status line and headers).
async fn stand_in(head: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let response = format!("{head}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

/// Runs `smoke` off the async runtime (it is a blocking child process).
async fn smoke(args: Vec<String>) -> (Option<i32>, String) {
    let output =
        tokio::task::spawn_blocking(move || Command::new(SMOKE).args(args).output().unwrap())
            .await
            .unwrap();
    (
        output.status.code(),
        String::from_utf8(output.stdout).unwrap(),
    )
}

fn args(server: SocketAddr, alb: SocketAddr, plain: SocketAddr) -> Vec<String> {
    vec![
        format!("--url=ws://{server}/wss"),
        format!("--alb={alb}"),
        format!("--plain-url=http://{plain}/"),
        "--timeout=5s".to_owned(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_deployment_passes_all_five_checks() {
    let server = TestServer::start(&[]).await;
    let alb = stand_in("HTTP/1.1 403 Forbidden").await;
    let plain = stand_in("HTTP/1.1 301 Moved Permanently\r\nLocation: https://example.test/").await;
    let (code, stdout) = smoke(args(server.addr, alb, plain)).await;
    assert_eq!(code, Some(0), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    for (number, line) in lines.iter().enumerate() {
        assert!(
            line.starts_with(&format!("ok    {}.", number + 1)),
            "{line}"
        );
    }
    assert!(lines[0].contains("broadcast round trip"), "{}", lines[0]);
    assert!(
        lines[1].contains("all 24 connections got all 6 messages"),
        "{}",
        lines[1]
    );
    assert!(
        lines[4].contains("301 redirect to https://"),
        "{}",
        lines[4]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_bypass_fails_check_4_and_says_where_to_look() {
    let server = TestServer::start(&[]).await;
    // The server itself plays a load balancer that forwards without the secret header.
    let plain = stand_in("HTTP/1.1 403 Forbidden").await;
    let (code, stdout) = smoke(args(server.addr, server.addr, plain)).await;
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL  4. load balancer bypass is closed"),
        "{stdout}"
    );
    assert!(stdout.contains("look at: the ALB listener"), "{stdout}");
    assert!(
        !stdout.contains("5."),
        "stops at the first failure: {stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_served_as_is_fails_check_5() {
    let server = TestServer::start(&[]).await;
    let alb = stand_in("HTTP/1.1 403 Forbidden").await;
    // The server answers plain HTTP with 200: what an allow-all viewer protocol policy would do.
    let (code, stdout) = smoke(args(server.addr, alb, server.addr)).await;
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL  5. CloudFront serves HTTPS only"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_server_fails_check_1_first() {
    let (_held, nothing) = refusing_address();
    let alb = stand_in("HTTP/1.1 403 Forbidden").await;
    let (code, stdout) = smoke(args(nothing, alb, alb)).await;
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.starts_with("FAIL  1. WebSocket through CloudFront"),
        "{stdout}"
    );
    assert_eq!(
        stdout.lines().count(),
        2,
        "one line and where to look: {stdout}"
    );
}

#[test]
fn without_flags_or_terraform_outputs_it_says_what_to_do() {
    let empty = std::env::temp_dir().join("smoke-no-terraform");
    std::fs::create_dir_all(&empty).unwrap();
    let output = Command::new(SMOKE)
        .arg(format!("--terraform-dir={}", empty.display()))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("websocket_url") || stderr.contains("terraform"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// One task of a deployment: a real server in this process with its own hub, connected to Redis
/// at `redis_url` if given and then returned once its backplane is up.
async fn task(redis_url: Option<&str>) -> TestServer {
    let Some(url) = redis_url else {
        return TestServer::start(&[]).await;
    };
    let task = TestServer::start(&["--redis-url", url]).await;
    // Until it has subscribed, a task would miss the others' messages for a reason that is not
    // the one under test.
    task.wait_for_metric("websocket_backplane_up", 1.0).await;
    task
}

/// The load balancer: TCP connection i goes to backend i % 2, bytes copied both ways. Returns its
/// address and how many connections each backend got.
async fn round_robin(backends: [SocketAddr; 2]) -> (SocketAddr, Arc<[AtomicUsize; 2]>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counts = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let counted = Arc::clone(&counts);
    tokio::spawn(async move {
        let mut next = 0;
        while let Ok((mut client, _)) = listener.accept().await {
            let backend = next % 2;
            next += 1;
            counted[backend].fetch_add(1, Ordering::SeqCst);
            let target = backends[backend];
            tokio::spawn(async move {
                if let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    (addr, counts)
}

/// Two tasks behind the round-robin proxy, sharing `redis` if given; runs smoke through the proxy
/// and checks that both tasks really got a share of the WebSockets, so that a verdict is about
/// two tasks and not one.
async fn two_tasks(redis: Option<&Redis>) -> (Option<i32>, String) {
    let url = redis.map(Redis::url);
    let tasks = [task(url.as_deref()).await, task(url.as_deref()).await];
    let (proxy, counts) = round_robin([tasks[0].addr, tasks[1].addr]).await;
    let alb = stand_in("HTTP/1.1 403 Forbidden").await;
    let plain = stand_in("HTTP/1.1 301 Moved Permanently\r\nLocation: https://example.test/").await;
    let mut args = args(proxy, alb, plain);
    // The failing case waits this long for messages that never come.
    args.retain(|arg| !arg.starts_with("--timeout"));
    args.push("--timeout=3s".to_owned());
    let (code, stdout) = smoke(args).await;
    // Check 2's 24 WebSockets alternate between the backends, whatever else went through.
    for (backend, task) in tasks.iter().enumerate() {
        let proxied = counts[backend].load(Ordering::SeqCst);
        assert!(
            proxied >= 12,
            "backend {backend} got {proxied} connections: {stdout}"
        );
        let opened = task.metric("websocket_connections_opened_total").await;
        assert!(
            opened >= 12.0,
            "backend {backend} opened {opened} WebSockets: {stdout}"
        );
    }
    (code, stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn two_tasks_sharing_redis_pass_the_broadcast_check() {
    let redis = Redis::start();
    let (code, stdout) = two_tasks(Some(&redis)).await;
    assert_eq!(code, Some(0), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    assert!(
        lines[1].starts_with("ok    2. broadcast reaches every task")
            && lines[1].contains("all 24 connections got all 6 messages"),
        "{}",
        lines[1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tasks_without_a_backplane_fail_check_2_and_name_it() {
    let (code, stdout) = two_tasks(None).await;
    assert_eq!(code, Some(1), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        3,
        "check 1, check 2 and where to look: {stdout}"
    );
    assert!(lines[0].starts_with("ok    1."), "{stdout}");
    assert!(
        lines[1].starts_with("FAIL  2. broadcast reaches every task")
            && lines[1]
                .contains("of 24 connections missed messages that other connections received")
            && lines[1].ends_with("the tasks do not share a backplane"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains("enable_redis_backplane = true"),
        "{}",
        lines[2]
    );
}
