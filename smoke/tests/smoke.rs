//! The `smoke` binary against a real server on loopback, with stand-ins for what only a deployment
//! has: a load balancer that answers 403 and a CloudFront that redirects plain HTTP.

use std::net::SocketAddr;
use std::process::Command;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SMOKE: &str = env!("CARGO_BIN_EXE_smoke");

/// Starts the real server in this process on a loopback port.
async fn server() -> SocketAddr {
    let cli =
        server::config::Cli::try_parse_from(["websocket-server", "--emf-interval", "0"]).unwrap();
    let listeners = server::Listeners {
        public: server::bind("127.0.0.1:0".parse().unwrap()).unwrap(),
        admin: None,
    };
    let addr = listeners.public.local_addr().unwrap();
    tokio::spawn(async move { server::run(&cli.config, listeners, std::future::pending()).await });
    addr
}

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
async fn a_healthy_deployment_passes_all_four_checks() {
    let server = server().await;
    let alb = stand_in("HTTP/1.1 403 Forbidden").await;
    let plain = stand_in("HTTP/1.1 301 Moved Permanently\r\nLocation: https://example.test/").await;
    let (code, stdout) = smoke(args(server, alb, plain)).await;
    assert_eq!(code, Some(0), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    for (number, line) in lines.iter().enumerate() {
        assert!(
            line.starts_with(&format!("ok    {}.", number + 1)),
            "{line}"
        );
    }
    assert!(lines[0].contains("broadcast round trip"), "{}", lines[0]);
    assert!(
        lines[3].contains("301 redirect to https://"),
        "{}",
        lines[3]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_bypass_fails_check_3_and_says_where_to_look() {
    let server = server().await;
    // The server itself plays a load balancer that forwards without the secret header.
    let plain = stand_in("HTTP/1.1 403 Forbidden").await;
    let (code, stdout) = smoke(args(server, server, plain)).await;
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL  3. load balancer bypass is closed"),
        "{stdout}"
    );
    assert!(stdout.contains("look at: the ALB listener"), "{stdout}");
    assert!(
        !stdout.contains("4."),
        "stops at the first failure: {stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_served_as_is_fails_check_4() {
    let server = server().await;
    let alb = stand_in("HTTP/1.1 403 Forbidden").await;
    // The server answers plain HTTP with 200: what an allow-all viewer protocol policy would do.
    let (code, stdout) = smoke(args(server, alb, server)).await;
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL  4. CloudFront serves HTTPS only"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_server_fails_check_1_first() {
    let nothing = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
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
