//! The real `loadgen` binary against a real server on loopback: every scenario completes and
//! counts what it should, and a server that loses messages makes it fail.

mod common;

use common::*;
use serde_json::Value;

/// Runs loadgen with `--json` against `server`'s `/wss`, expecting `exit_code`; returns its JSON
/// line.
async fn measure(server: &TestServer, args: &[&str], exit_code: i32) -> Value {
    measure_at(server, "/wss", args, exit_code).await
}

/// Like [`measure`], at `path`.
async fn measure_at(server: &TestServer, path: &str, args: &[&str], exit_code: i32) -> Value {
    let pid = std::process::id().to_string();
    let mut argv = args.to_vec();
    let url = server.url(path);
    argv.extend(["--url", &url, "--server-pid", &pid, "--json"]);
    json_run(&argv, exit_code).await
}

/// A clean run's figures: `expected` deliveries expected and made, nothing lost, duplicated or
/// failed, latency measured and the server's CPU time read.
fn every_delivery_counted_and_timed(result: &Value, expected: u64) {
    assert_eq!(result["expected_deliveries"], expected, "{result}");
    assert_eq!(result["delivered"], expected, "{result}");
    assert_eq!(result["lost"], 0, "{result}");
    assert_eq!(result["duplicated"], 0, "{result}");
    assert_eq!(result["errors"], 0, "{result}");
    assert!(result["latency"]["p99_ms"].as_f64().unwrap() > 0.0);
    assert!(result["usage"]["server_cpu_s"].as_f64().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_counts_every_delivery_and_times_it() {
    // Full speed is over the server's default rate limit per client; the limits are off here as in
    // make bench, or the server would rightly drop most of each sender's messages.
    let server = TestServer::start(&[
        "--max-messages-per-second",
        "0",
        "--max-bytes-per-second",
        "0",
    ])
    .await;
    let result = measure(
        &server,
        &["broadcast", "-c", "20", "-s", "4", "-m", "300", "-b", "200"],
        0,
    )
    .await;
    assert_eq!(result["sent"], 4 * 300);
    every_delivery_counted_and_timed(&result, 20 * 4 * 300);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_at_a_rate_for_a_duration_sends_that_many() {
    let server = TestServer::start(&[]).await;
    let result = measure(
        &server,
        &[
            "broadcast",
            "-c",
            "5",
            "-s",
            "2",
            "-r",
            "50",
            "--duration",
            "1s",
        ],
        0,
    )
    .await;
    // 50 a second for one second, from each of two senders.
    assert_eq!(result["sent"], 100);
    assert_eq!(result["delivered"], 5 * 100);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_the_server_drops_count_as_lost() {
    // Queues of two frames, and senders allowed far ahead: the server evicts its slow clients
    // (with the rate limits off, so that eviction is what loses the messages).
    let server = TestServer::start(&[
        "--client-queue-size",
        "2",
        "--max-messages-per-second",
        "0",
        "--max-bytes-per-second",
        "0",
    ])
    .await;
    let result = measure(
        &server,
        &[
            "broadcast",
            "-c",
            "20",
            "-s",
            "10",
            "-m",
            "2000",
            "--window",
            "1000",
            "--settle",
            "1s",
        ],
        1,
    )
    .await;
    assert!(result["lost"].as_u64().unwrap() > 0, "{result}");
    assert!(result["errors"].as_u64().unwrap() > 0, "{result}");
    assert!(
        result["first_error"]
            .as_str()
            .unwrap()
            .contains("closed by the server"),
        "{result}"
    );
    server.stop().await;
}

/// Full speed is over the server's default rate limit per client, as for broadcast.
const NO_RATE_LIMITS: [&str; 4] = [
    "--max-messages-per-second",
    "0",
    "--max-bytes-per-second",
    "0",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_deliver_each_message_to_its_channels_subscribers_only() {
    let server = TestServer::start(&NO_RATE_LIMITS).await;
    // 53 clients over 10 channels: bench:0 to bench:2 have 6 subscribers, the others 5. Each of
    // the 2 senders sends 105 messages round robin, sender 0 from bench:0 and sender 1 from
    // bench:1: ten rounds over all channels (10 × 53 deliveries each), then 5 more messages,
    // sender 0's to bench:0-4 (6+6+6+5+5) and sender 1's to bench:1-5 (6+6+5+5+5).
    let result = measure_at(
        &server,
        "/v1/ws",
        &[
            "channels",
            "-c",
            "53",
            "--channels",
            "10",
            "-s",
            "2",
            "-m",
            "105",
            "-b",
            "200",
        ],
        0,
    )
    .await;
    let expected = 2 * 10 * 53 + (6 + 6 + 6 + 5 + 5) + (6 + 6 + 5 + 5 + 5);
    assert_eq!(result["scenario"], "channels");
    assert_eq!(result["connected"], 53);
    assert_eq!(result["subscribers_min"], 5);
    assert_eq!(result["subscribers_max"], 6);
    assert_eq!(result["sent"], 2 * 105);
    every_delivery_counted_and_timed(&result, expected);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_at_a_rate_for_a_duration_send_that_many() {
    let server = TestServer::start(&[]).await;
    let result = measure_at(
        &server,
        "/v1/ws",
        &[
            "channels",
            "-c",
            "12",
            "--channels",
            "4",
            "-s",
            "2",
            "-r",
            "40",
            "--duration",
            "1s",
        ],
        0,
    )
    .await;
    // 40 a second for one second from each of two senders, 3 subscribers per channel.
    assert_eq!(result["sent"], 80);
    assert_eq!(result["delivered"], 80 * 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_the_server_drops_on_channels_count_as_lost() {
    // As for broadcast: queues of two frames and senders far ahead, so the server evicts
    // subscribers, whose channels' later messages never reach them.
    let mut flags = vec!["--client-queue-size", "2"];
    flags.extend(NO_RATE_LIMITS);
    let server = TestServer::start(&flags).await;
    let result = measure_at(
        &server,
        "/v1/ws",
        &[
            "channels",
            "-c",
            "20",
            "--channels",
            "2",
            "-s",
            "10",
            "-m",
            "2000",
            "--window",
            "1000",
            "--settle",
            "1s",
        ],
        1,
    )
    .await;
    assert!(result["lost"].as_u64().unwrap() > 0, "{result}");
    assert!(
        result["delivered"].as_u64().unwrap() < result["expected_deliveries"].as_u64().unwrap(),
        "{result}"
    );
    assert!(result["errors"].as_u64().unwrap() > 0, "{result}");
    server.stop().await;
}

#[tokio::test]
async fn channels_against_wss_say_the_url_is_wrong() {
    let server = TestServer::start(&[]).await;
    let url = server.url("/wss");
    let output = loadgen(&[
        "channels",
        "-c",
        "2",
        "--channels",
        "1",
        "-s",
        "1",
        "--url",
        &url,
    ])
    .await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not subscribed"), "{stderr}");
    assert!(stderr.contains("/v1/ws"), "{stderr}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_holds_every_connection_and_reads_server_memory() {
    let server = TestServer::start(&[]).await;
    let result = measure(&server, &["idle", "-n", "300", "--hold", "1s"], 0).await;
    assert_eq!(result["connected"], 300);
    assert!(result["handshakes_per_s"].as_f64().unwrap() > 0.0);
    assert!(result["server_bytes_per_connection"].as_f64().is_some());
    server.stop().await;
}

/// Established TCP connections from `source` to `port` on this host (IPv4, /proc/net/tcp).
fn established_from(source: std::net::Ipv4Addr, port: u16) -> usize {
    // Addresses in /proc/net/tcp are the in-memory u32, printed in hex: little-endian here.
    let local = format!("{:08X}:", u32::from_le_bytes(source.octets()));
    let remote = format!(":{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields[1].starts_with(&local) && fields[2].ends_with(&remote) && fields[3] == "01"
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_spreads_connections_over_source_addresses_and_measures_the_held_cpu() {
    let server = TestServer::start(&[]).await;
    let url = server.url("/wss");
    let pid = std::process::id().to_string();
    let argv = [
        "idle",
        "-n",
        "40",
        "--hold",
        "4s",
        "--source-address",
        "127.0.0.2",
        "--source-address",
        "127.0.0.3",
        "--url",
        &url,
        "--server-pid",
        &pid,
        "--json",
    ];
    let run = tokio::spawn({
        let argv: Vec<String> = argv.iter().map(|arg| arg.to_string()).collect();
        async move {
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            json_run(&argv, 0).await
        }
    });
    let port = server.addr.port();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let spread = loop {
        let spread = [
            established_from([127, 0, 0, 2].into(), port),
            established_from([127, 0, 0, 3].into(), port),
        ];
        if spread == [20, 20] || std::time::Instant::now() > deadline {
            break spread;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        spread,
        [20, 20],
        "half of the connections from each address"
    );
    let result = run.await.unwrap();
    assert_eq!(result["connected"], 40);
    assert!(result["idle_seconds"].as_f64().unwrap() >= 2.5, "{result}");
    assert!(
        result["server_idle_cpu_per_s"].as_f64().unwrap() >= 0.0,
        "{result}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_completes_handshakes() {
    let server = TestServer::start(&[]).await;
    let result = measure(&server, &["churn", "-k", "5", "--duration", "1s"], 0).await;
    assert!(result["handshakes"].as_u64().unwrap() > 10, "{result}");
    assert_eq!(result["errors"], 0);
    server.stop().await;
}

#[tokio::test]
async fn nothing_listening_is_a_one_line_error() {
    let (_held, nothing) = refusing_address();
    let url = format!("ws://{nothing}/wss");
    let output = loadgen(&[
        "broadcast",
        "-c",
        "2",
        "-s",
        "1",
        "--url",
        &url,
        "--connect-timeout",
        "2s",
    ])
    .await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("loadgen: no client could connect"),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}

#[tokio::test]
async fn bad_arguments_name_the_flag() {
    let output = loadgen(&["broadcast", "--clients", "2", "--senders", "3"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--senders"));
    let output = loadgen(&["channels", "--clients", "5", "--channels", "6"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--channels"));
    let output = loadgen(&["idle", "--url", "http://127.0.0.1:1/wss"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--url"));
}
