//! The real `websocket-server` binary: signals, exit codes, configuration errors, the health check
//! subcommand, and what it writes to standard output (JSON logs and the EMF line).

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use server::healthcheck::http_request;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

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

    let (_held, nobody) = refusing_address();
    let nobody = Command::new(BINARY)
        .arg("healthcheck")
        .env_clear()
        .env("PORT", nobody.port().to_string())
        .output()
        .unwrap();
    assert_eq!(nobody.status.code(), Some(1));
    let stderr = String::from_utf8(nobody.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("unhealthy:"), "{stderr}");

    // PORT=0 lets the kernel pick the server's port, which the health check cannot know.
    let unknown = Command::new(BINARY)
        .arg("healthcheck")
        .env_clear()
        .env("PORT", "0")
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(1));
    let stderr = String::from_utf8(unknown.stderr).unwrap();
    assert!(stderr.starts_with("unhealthy: PORT is 0"), "{stderr}");
}

#[test]
fn every_bad_setting_is_refused_with_one_line_naming_it() {
    let cases: &[(&str, &str, &str)] = &[
        ("HOST", "not-an-address", "HOST"),
        ("PORT", "abc", "PORT"),
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
        ("CLIENT_QUEUE_BYTES", "0", "CLIENT_QUEUE_BYTES"),
        ("CLIENT_QUEUE_BYTES", "1000", "CLIENT_QUEUE_BYTES"),
        ("MAX_MESSAGES_PER_SECOND", "-1", "MAX_MESSAGES_PER_SECOND"),
        ("MESSAGE_BURST", "0", "MESSAGE_BURST"),
        ("MAX_BYTES_PER_SECOND", "lots", "MAX_BYTES_PER_SECOND"),
        ("HEADER_READ_TIMEOUT", "0", "HEADER_READ_TIMEOUT"),
        ("HTTP_IDLE_TIMEOUT", "never", "HTTP_IDLE_TIMEOUT"),
        ("MAX_HTTP_CONNECTIONS", "0", "MAX_HTTP_CONNECTIONS"),
        ("TRUSTED_PROXY_HOPS", "17", "TRUSTED_PROXY_HOPS"),
        // Longer than HTTP_IDLE_TIMEOUT (75 s), which bounds every head too.
        ("HEADER_READ_TIMEOUT", "80s", "HEADER_READ_TIMEOUT"),
        // More than this machine's (or any container's) file limit allows.
        ("MAX_CONNECTIONS", "1000000", "MAX_CONNECTIONS"),
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
        "CLIENT_QUEUE_BYTES",
        "MAX_MESSAGES_PER_SECOND",
        "MESSAGE_BURST",
        "MAX_BYTES_PER_SECOND",
        "HEADER_READ_TIMEOUT",
        "HTTP_IDLE_TIMEOUT",
        "MAX_HTTP_CONNECTIONS",
        "TRUSTED_PROXY_HOPS",
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
async fn connection_logs_name_the_client_from_trusted_x_forwarded_for_entries() {
    // What the ALB sends behind CloudFront: whatever the client wrote itself, the viewer as
    // CloudFront saw it, then the CloudFront edge as the ALB saw it.
    const FORWARDED: &str = "6.6.6.6, 203.0.113.9, 198.51.100.7";
    for (hops, expected) in [("2", Some("203.0.113.9")), ("0", None)] {
        let env = [
            ("LOG_FORMAT", "json"),
            ("EMF_INTERVAL", "0"),
            ("DRAIN_TIMEOUT", "1s"),
            ("TRUSTED_PROXY_HOPS", hops),
        ];
        let server = Process::start(&env).await;
        let mut request = server.url("/wss").into_client_request().unwrap();
        request
            .headers_mut()
            .insert("x-forwarded-for", FORWARDED.parse().unwrap());
        let (mut client, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        next_text(&mut client).await;
        server.signal("TERM");
        let exit = server.wait(Duration::from_secs(10)).await;
        let opened: Vec<serde_json::Value> = exit
            .stdout
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .filter(|line: &serde_json::Value| line["message"] == "connection opened")
            .collect();
        assert_eq!(opened.len(), 1);
        let client = opened[0]["client"].as_str().unwrap();
        match expected {
            Some(address) => assert_eq!(client, address, "TRUSTED_PROXY_HOPS={hops}"),
            // No trusted proxy: the TCP peer, never a header the client wrote.
            None => assert!(client.starts_with("127.0.0.1:"), "{client}"),
        }
    }
}

/// Runs the binary with an open-file limit of `open_files` (soft and hard), as a container with a
/// low nofile ulimit would.
fn run_with_open_file_limit(open_files: u32, env: &[(&str, &str)]) -> std::process::Output {
    Command::new("bash")
        .args([
            "-c",
            &format!("ulimit -n {open_files} && exec \"$0\""),
            BINARY,
        ])
        .env_clear()
        .envs([("HOST", "127.0.0.1"), ("METRICS_PORT", "0")])
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[tokio::test]
async fn connection_limits_are_fitted_to_the_open_file_limit() {
    // An explicit MAX_CONNECTIONS that cannot fit: refused, naming it.
    let output = run_with_open_file_limit(2000, &[("MAX_CONNECTIONS", "5000")]);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("MAX_CONNECTIONS") && stderr.contains("2000"),
        "{stderr}"
    );

    // The default shrinks to what fits (2,000 - 1,024 in the HTTP phase - 64 spare), with one
    // warning, and the server serves. No metrics port: it would need 16 files more.
    let server = Process::start_with_open_file_limit(2000, &[("METRICS_PORT", "0")]).await;
    server.signal("TERM");
    let exit = server.wait(PATIENCE).await;
    assert_eq!(exit.code, Some(0));
    let stdout = exit.stdout;
    let warnings: Vec<_> = stdout
        .lines()
        .filter(|line| line.contains("WARN"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stdout}");
    assert!(
        warnings[0].contains("MAX_CONNECTIONS lowered from its default 10000 to 912"),
        "{stdout}"
    );
}
