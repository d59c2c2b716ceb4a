//! The real `websocket-server` binary: signals, exit codes, configuration errors, the health check
//! subcommand, and what it writes to standard output (JSON logs and the EMF line).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use server::healthcheck::http_request;
use tokio_tungstenite::tungstenite::Message;
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

    let lines = exit.json_lines();
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
    assert!(
        !exit.stdout.contains("hello"),
        "no message content in the logs"
    );
}

/// What a `/v1/ws` subscriber saw of the drain.
struct Subscriber {
    /// The `data` of every message on the channel, as received.
    received: Vec<u64>,
    /// When the server's close frame arrived, and its code.
    closed: Option<(Instant, u16)>,
}

/// Reads a `/v1/ws` client until its connection ends, answering the server's close frame (the
/// WebSocket layer sends the reply as the stream is read on).
async fn read_channel_until_closed(mut client: Client) -> Subscriber {
    let mut seen = Subscriber {
        received: Vec::new(),
        closed: None,
    };
    while let Some(Ok(frame)) = client.next().await {
        match frame {
            Message::Text(text) => {
                let message: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert_eq!(message["type"], "message", "{text}");
                seen.received.push(message["data"].as_u64().unwrap());
            }
            Message::Close(frame) => {
                let code = frame.map_or(1005, |frame| frame.code.into());
                seen.closed = Some((Instant::now(), code));
            }
            _ => {}
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_v1_clients_with_1012_spread_over_drain_spread() {
    const SPREAD: Duration = Duration::from_secs(3);
    const DRAIN: Duration = Duration::from_secs(8);
    const SUBSCRIBERS: usize = 40;
    const KEY: &str = "drain-spread-publish-key-0123456789abcdef";
    let server = Process::start(&[
        ("DRAIN_SPREAD", "3s"),
        ("DRAIN_TIMEOUT", "8s"),
        ("LOG_FORMAT", "json"),
        ("EMF_INTERVAL", "0"),
        ("PUBLISH_API_KEYS", KEY),
    ])
    .await;
    let url = server.url("/v1/ws");
    let mut subscribers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let mut client = connect(&url).await;
        send_text(&mut client, r#"{"type":"subscribe","channel":"c"}"#).await;
        assert_eq!(
            next_text(&mut client).await,
            r#"{"type":"subscribed","channel":"c"}"#
        );
        subscribers.push(tokio::spawn(read_channel_until_closed(client)));
    }
    let mut wss = connect(&server.url("/wss")).await;
    assert_eq!(next_text(&mut wss).await, r#"{"connection":"ok"}"#);

    // The publisher sends message n every 50 ms until the drain closes it too, noting when each
    // went out; it reads on only to see (and answer) its own close frame.
    let publisher = connect(&url).await;
    let publishing = tokio::spawn(async move {
        let (mut sink, mut stream) = publisher.split();
        let mut sent = Vec::new();
        let mut closed = None;
        let mut pace = tokio::time::interval(Duration::from_millis(50));
        while closed.is_none() {
            tokio::select! {
                _ = pace.tick() => {
                    let text = format!(r#"{{"type":"publish","channel":"c","data":{}}}"#, sent.len());
                    if sink.send(Message::text(text)).await.is_err() {
                        break;
                    }
                    sent.push(Instant::now());
                }
                frame = stream.next() => match frame {
                    Some(Ok(Message::Close(frame))) => {
                        closed = Some((Instant::now(), frame.map_or(1005, |frame| frame.code.into())));
                    }
                    Some(Ok(_)) => {}
                    _ => break,
                },
            }
        }
        while let Some(Ok(_)) = stream.next().await {}
        (sent, closed)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    server.signal("TERM");
    let drain_started = Instant::now();
    assert_eq!(close_code(&mut wss).await, 1001, "/wss closes as before");
    let wss_closed = drain_started.elapsed();
    assert!(
        wss_closed < Duration::from_secs(1),
        "/wss closed {wss_closed:?} into the drain, not at once"
    );
    // Reading on sends the close reply, so the server need not wait for the drain's end.
    let wss_answering = tokio::spawn(async move { while let Some(Ok(_)) = wss.next().await {} });
    // Publishing over HTTP stops with the drain, even while /v1/ws clients are still served.
    let (status, _) = http_publish(server.addr, KEY, r#"{"channel":"c","data":"late"}"#).await;
    assert_eq!(status, 503, "POST /v1/publish while draining");

    let (sent, publisher_closed) = tokio::time::timeout(DRAIN, publishing)
        .await
        .expect("the publisher is closed within the drain")
        .unwrap();
    let (publisher_closed, code) = publisher_closed.expect("the publisher got a close frame");
    assert_eq!(code, 1012, "the publisher's close code");
    let mut closes = vec![publisher_closed - drain_started];
    // A message sent this long before a client's close (and before the publisher's) must have
    // reached it: loopback delivery takes milliseconds.
    let margin = Duration::from_millis(500);
    let mut checked_while_publishing = 0;
    for (index, subscriber) in subscribers.into_iter().enumerate() {
        let seen = tokio::time::timeout(DRAIN, subscriber)
            .await
            .expect("every subscriber is closed within the drain")
            .unwrap();
        let (closed, code) = seen
            .closed
            .unwrap_or_else(|| panic!("subscriber {index} got no close frame"));
        assert_eq!(code, 1012, "subscriber {index}'s close code");
        closes.push(closed - drain_started);
        let in_order: Vec<u64> = (0..seen.received.len() as u64).collect();
        assert_eq!(
            seen.received, in_order,
            "subscriber {index} got every message in order, without a gap"
        );
        let until = closed.min(publisher_closed);
        let due = sent.iter().filter(|at| **at + margin <= until).count();
        assert!(
            seen.received.len() >= due,
            "subscriber {index}, closed {:?} into the drain, got {} messages, {due} were sent \
             over {margin:?} before its close (publisher closed {:?} into the drain)",
            closed - drain_started,
            seen.received.len(),
            publisher_closed - drain_started
        );
        if closed < publisher_closed && publisher_closed > drain_started + margin {
            checked_while_publishing += 1;
        }
    }
    eprintln!(
        "{} /v1/ws closes from {:?} to {:?} into the drain; {checked_while_publishing} subscribers closed while the publisher was still sending",
        closes.len(),
        closes.iter().min().unwrap(),
        closes.iter().max().unwrap()
    );

    // Turns are uniform over the spread: with 41 of them, fewer than half in its first tenth and
    // at least one in its last third fail only if closes came all at once (or early); a chance of
    // about (2/3)^41, 6e-8, otherwise.
    let early = closes.iter().filter(|at| **at < SPREAD / 10).count();
    assert!(
        early < closes.len() / 2,
        "{early} of {} closes in the first tenth of the spread: {closes:?}",
        closes.len()
    );
    assert!(
        closes.iter().any(|at| *at >= SPREAD * 2 / 3),
        "no close in the last third of the spread: {closes:?}"
    );
    let last = *closes.iter().max().unwrap();
    assert!(
        last < SPREAD + Duration::from_millis(1500),
        "a close {last:?} into the drain, after the spread: {closes:?}"
    );

    // Every client answered, so the process ends as the last one closes, not at DRAIN_TIMEOUT.
    wss_answering.await.unwrap();
    let exit = server.wait(DRAIN).await;
    assert_eq!(exit.code, Some(0), "exit code");
    let exited = drain_started.elapsed();
    assert!(
        exited < last + Duration::from_secs(2) && exited < DRAIN,
        "exited {exited:?} into the drain, the last close at {last:?}"
    );
    let lines = exit.json_lines();
    let draining = lines
        .iter()
        .find(|line| line["message"] == "draining")
        .expect("a draining line");
    assert_eq!(draining["drain_spread"], "3s", "{draining}");
    assert!(
        lines
            .iter()
            .any(|line| line["message"] == "all connections closed")
    );
    let reasons: Vec<&str> = lines
        .iter()
        .filter(|line| line["message"] == "connection closed")
        .map(|line| line["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons.iter().filter(|r| **r == "service_restart").count(),
        SUBSCRIBERS + 1,
        "{reasons:?}"
    );
    assert_eq!(
        reasons.iter().filter(|r| **r == "server_shutdown").count(),
        1,
        "{reasons:?}"
    );
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
        ("DRAIN_SPREAD", "soon", "DRAIN_SPREAD"),
        ("DRAIN_SPREAD", "-1s", "DRAIN_SPREAD"),
        // More than the default DRAIN_TIMEOUT (30 s) minus the 5 s the last clients get to reply.
        ("DRAIN_SPREAD", "26s", "DRAIN_SPREAD"),
        ("DRAIN_SPREAD", "1m", "DRAIN_SPREAD"),
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
        ("WORKER_THREADS", "2000", "WORKER_THREADS"),
        ("WORKER_THREADS", "-1", "WORKER_THREADS"),
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
fn a_drain_spread_must_leave_room_for_the_last_close_handshakes() {
    for env in [
        [("DRAIN_TIMEOUT", "10s"), ("DRAIN_SPREAD", "6s")],
        [("DRAIN_TIMEOUT", "3s"), ("DRAIN_SPREAD", "500ms")],
    ] {
        let output = Command::new(BINARY).env_clear().envs(env).output().unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(2), "{env:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{env:?}: {stderr}");
        assert!(
            stderr.contains("DRAIN_SPREAD") && stderr.contains("DRAIN_TIMEOUT"),
            "{env:?}: {stderr}"
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
        "DRAIN_SPREAD",
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
        "WORKER_THREADS",
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
            .json_lines()
            .into_iter()
            .filter(|line| line["message"] == "connection opened")
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

#[tokio::test]
async fn log_lines_logged_thousands_a_second_are_all_written_whole_up_to_the_exit() {
    const CONNECTIONS: usize = 2_000;
    const AT_ONCE: usize = 50;
    let env = [("LOG_FORMAT", "json"), ("EMF_INTERVAL", "0")];
    let server = Process::start(&env).await;
    let url = server.url("/wss");
    for _ in 0..CONNECTIONS / AT_ONCE {
        let clients = (0..AT_ONCE).map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let mut client = connect(&url).await;
                next_text(&mut client).await;
                client.close(None).await.unwrap();
                // Until the server's close frame: its side is closed and logged by then.
                while let Some(Ok(_)) = client.next().await {}
            })
        });
        for client in futures_util::future::join_all(clients).await {
            client.unwrap();
        }
    }
    // At once: the last lines are still waiting to be written when the signal comes.
    server.signal("TERM");
    let exit = server.wait(Duration::from_secs(10)).await;
    assert_eq!(exit.code, Some(0));
    let lines = exit.json_lines();
    let count = |message: &str| lines.iter().filter(|l| l["message"] == message).count();
    assert_eq!(count("connection opened"), CONNECTIONS);
    assert_eq!(count("connection closed"), CONNECTIONS);
    assert_eq!(lines.last().unwrap()["message"], "stopped");
}

#[tokio::test]
async fn what_the_drain_writes_to_a_slow_reader_is_counted_in_its_close_line() {
    // More than the kernel buffers for a socket (4 MB at most here): when the drain starts, the
    // writer is in the middle of a batch and more is queued; the close writes both.
    const MESSAGES: usize = 100;
    let env = [
        ("LOG_FORMAT", "json"),
        ("EMF_INTERVAL", "0"),
        ("DRAIN_TIMEOUT", "10s"),
        ("CLIENT_QUEUE_BYTES", "67108864"),
        ("MAX_BYTES_PER_SECOND", "0"),
    ];
    let server = Process::start(&env).await;
    let url = server.url("/wss");
    let mut slow = small_buffer_client(server.addr, &url).await;
    next_text(&mut slow).await;
    let mut publisher = connect(&url).await;
    next_text(&mut publisher).await;
    let filler = "x".repeat(60 * 1024);
    for seq in 0..MESSAGES {
        send_text(&mut publisher, format!(r#"{{"seq":{seq},"f":"{filler}"}}"#)).await;
    }
    for _ in 0..MESSAGES {
        next_text(&mut publisher).await;
    }
    server.signal("TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..MESSAGES {
        next_text(&mut slow).await;
    }
    assert_eq!(close_code(&mut slow).await, 1001);
    assert_eq!(close_code(&mut publisher).await, 1001);
    drop((slow, publisher));
    let exit = server.wait(Duration::from_secs(15)).await;
    let sent: Vec<u64> = exit
        .json_lines()
        .into_iter()
        .filter(|line| line["message"] == "connection closed")
        .map(|line| line["sent"].as_u64().unwrap())
        .collect();
    // Each: the messages (the greeting goes out with the 101; a close frame is not a message).
    assert_eq!(sent, [MESSAGES as u64; 2]);
}
