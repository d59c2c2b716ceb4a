//! The real `websocket-server` binary: signals, exit codes, configuration errors, the health check
//! subcommand, and what it writes to standard output (JSON logs and the EMF line).

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use server::healthcheck::http_request;

#[tokio::test]
async fn sigterm_drains_clients_with_1001_then_exits_0() {
    let drain = Duration::from_secs(3);
    let server = Process::start(&[
        ("DRAIN_TIMEOUT", "3s"),
        ("LOG_FORMAT", "json"),
        ("EMF_INTERVAL", "100ms"),
    ])
    .await;
    let url = format!("ws://{}/wss", server.addr);
    let mut polite = connect(&url).await;
    // A client that never reads never answers the close frame, so the drain runs to its timeout.
    let _deaf = connect(&url).await;
    assert_eq!(next_text(&mut polite).await, r#"{"connection":"ok"}"#);
    send_text(&mut polite, r#"{"hello":"world"}"#).await;
    next_text(&mut polite).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // let an EMF line or two out

    server.signal("TERM");
    assert_eq!(close_code(&mut polite).await, 1001);
    let (status, body) = http_request(server.addr, "GET", "/health").await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (503, "Draining"),
        "health during the drain"
    );
    assert!(
        !server.healthcheck().status.success(),
        "healthcheck fails while draining"
    );
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503)
        }
        other => panic!("expected 503 for an upgrade during the drain, got {other:?}"),
    }

    let exit = server.wait(drain + Duration::from_secs(3)).await;
    assert_eq!(exit.code, Some(0), "exit code");
    let waited = exit.waited;
    assert!(
        waited <= drain + Duration::from_secs(2),
        "exited {waited:?} after the drain started"
    );

    let stdout = exit.stdout;
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let counts: Vec<i64> = lines
        .iter()
        .filter(|line| line.get("_aws").is_some())
        .map(|emf| emf["ActiveConnections"].as_i64().unwrap())
        .collect();
    assert!(
        counts.contains(&2),
        "an EMF line counted both clients: {counts:?}"
    );
    let closed: Vec<_> = lines
        .iter()
        .filter(|line| line["message"] == "connection closed")
        .collect();
    assert_eq!(closed.len(), 2, "one close line per connection");
    for field in [
        "conn",
        "client",
        "duration_ms",
        "received",
        "sent",
        "reason",
    ] {
        assert!(
            closed[0].get(field).is_some(),
            "close line lacks {field}: {}",
            closed[0]
        );
    }
    assert!(
        closed
            .iter()
            .any(|line| line["received"] == 1 && line["reason"] == "server_shutdown")
    );
    assert_eq!(
        lines
            .iter()
            .filter(|line| line["message"] == "connection opened")
            .count(),
        2
    );
    assert!(!stdout.contains("hello"), "no message content in the logs");
}

#[tokio::test]
async fn sigint_with_no_clients_exits_0_at_once() {
    let server = Process::start(&[]).await;
    server.signal("INT");
    let exit = server.wait(Duration::from_secs(5)).await;
    assert_eq!(exit.code, Some(0));
}

#[tokio::test]
async fn healthcheck_exit_codes() {
    let server = Process::start(&[]).await;
    let healthy = server.healthcheck();
    assert_eq!(healthy.status.code(), Some(0), "{healthy:?}");
    server.signal("TERM");
    server.wait(Duration::from_secs(5)).await;

    let nobody = Command::new(BINARY)
        .arg("healthcheck")
        .env_clear()
        .env("PORT", free_port().to_string())
        .output()
        .unwrap();
    assert_eq!(nobody.status.code(), Some(1));
    let stderr = String::from_utf8(nobody.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("unhealthy:"), "{stderr}");
}

#[test]
fn every_bad_setting_is_refused_with_one_line_naming_it() {
    let cases: &[(&str, &str, &str)] = &[
        ("HOST", "not-an-address", "HOST"),
        ("PORT", "abc", "PORT"),
        ("PORT", "0", "PORT"),
        ("PORT", "70000", "PORT"),
        ("METRICS_PORT", "-1", "METRICS_PORT"),
        ("METRICS_PORT", "8080", "METRICS_PORT"),
        ("MAX_CONNECTIONS", "0", "MAX_CONNECTIONS"),
        ("MAX_CONNECTIONS", "many", "MAX_CONNECTIONS"),
        ("MAX_MESSAGE_SIZE", "0", "MAX_MESSAGE_SIZE"),
        ("MAX_MESSAGE_SIZE", "1000000000", "MAX_MESSAGE_SIZE"),
        ("MAX_FRAME_SIZE", "100000", "MAX_FRAME_SIZE"),
        ("CLIENT_QUEUE_SIZE", "0", "CLIENT_QUEUE_SIZE"),
        ("PING_INTERVAL", "0", "PING_INTERVAL"),
        ("PING_INTERVAL", "soon", "PING_INTERVAL"),
        ("PONG_TIMEOUT", "0s", "PONG_TIMEOUT"),
        ("DRAIN_TIMEOUT", "forever", "DRAIN_TIMEOUT"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT"),
        ("LOG_LEVEL", "info,=[", "LOG_LEVEL"),
        ("EMF_INTERVAL", "-5", "EMF_INTERVAL"),
        ("METRICS_NAMESPACE", "\u{7}", "METRICS_NAMESPACE"),
        ("SERVICE_NAME", &"x".repeat(300), "SERVICE_NAME"),
        ("REDIS_URL", "http://:hunter2@cache:6379", "REDIS_URL"),
        ("REDIS_CHANNEL", "two words", "REDIS_CHANNEL"),
    ];
    for (variable, value, named) in cases {
        let output = Command::new(BINARY)
            .env_clear()
            .env(variable, value)
            .output()
            .unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(
            output.status.code(),
            Some(2),
            "{variable}={value}: {stderr}"
        );
        assert_eq!(
            stderr.lines().count(),
            1,
            "{variable}={value}: one line, got {stderr:?}"
        );
        assert!(
            stderr.contains(named),
            "{variable}={value}: {stderr:?} does not name {named}"
        );
        assert!(
            !stderr.contains("hunter2"),
            "a secret in an error message: {stderr}"
        );
    }
}

#[test]
fn help_lists_every_setting() {
    let output = Command::new(BINARY)
        .arg("--help")
        .env_clear()
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for variable in [
        "HOST",
        "PORT",
        "METRICS_PORT",
        "MAX_CONNECTIONS",
        "MAX_MESSAGE_SIZE",
        "MAX_FRAME_SIZE",
        "CLIENT_QUEUE_SIZE",
        "PING_INTERVAL",
        "PONG_TIMEOUT",
        "DRAIN_TIMEOUT",
        "LOG_FORMAT",
        "LOG_LEVEL",
        "EMF_INTERVAL",
        "METRICS_NAMESPACE",
        "SERVICE_NAME",
        "REDIS_URL",
        "REDIS_CHANNEL",
    ] {
        assert!(
            // Secret-bearing settings are listed without their value.
            help.contains(&format!("[env: {variable}="))
                || help.contains(&format!("[env: {variable}]")),
            "--help lacks {variable}"
        );
    }
}

#[tokio::test]
async fn a_port_in_use_is_reported_and_exits_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let output = Command::new(BINARY)
        .env_clear()
        .envs([
            ("HOST", "127.0.0.1"),
            ("PORT", port.as_str()),
            ("METRICS_PORT", "0"),
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
}

#[tokio::test]
async fn connection_logs_name_the_client_from_x_forwarded_for() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let env = [
        ("LOG_FORMAT", "json"),
        ("EMF_INTERVAL", "0"),
        ("DRAIN_TIMEOUT", "1s"),
    ];
    let server = Process::start(&env).await;
    let mut request = server.url("/wss").into_client_request().unwrap();
    // What the ALB sends behind CloudFront: the viewer first, then the CloudFront edge.
    request.headers_mut().insert(
        "x-forwarded-for",
        "203.0.113.9, 198.51.100.7".parse().unwrap(),
    );
    let (mut client, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    next_text(&mut client).await;
    let mut direct = connect(&server.url("/wss")).await;
    next_text(&mut direct).await;
    server.signal("TERM");
    let exit = server.wait(Duration::from_secs(10)).await;
    let opened: Vec<serde_json::Value> = exit
        .stdout
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .filter(|line: &serde_json::Value| line["message"] == "connection opened")
        .collect();
    assert_eq!(opened.len(), 2);
    assert_eq!(opened[0]["client"], "203.0.113.9");
    assert!(
        opened[1]["client"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{}",
        opened[1]
    );
}
