//! `loadgen abuse` with the real binary against a real server on loopback: the short form passes
//! against the server as configured by default, a server configured to be weak fails the check
//! that concerns it, and what cannot be run is refused before anything is sent.

mod common;

use common::*;
use serde_json::Value;
use tokio::sync::Mutex;

/// One abuse run at a time: they load both cores and read this process's memory, so two at once
/// would disturb each other's figures.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// Runs `loadgen abuse --json` against `server`, expecting `exit_code`; returns its JSON line.
async fn abuse(server: &TestServer, args: &[&str], exit_code: i32) -> Value {
    let url = format!("ws://{}", server.addr);
    let admin = server.admin.to_string();
    let pid = std::process::id().to_string();
    let mut argv = vec![
        "abuse",
        "--url",
        &url,
        "--admin",
        &admin,
        "--server-pid",
        &pid,
    ];
    argv.extend(args);
    argv.push("--json");
    json_run(&argv, exit_code).await
}

fn check<'a>(result: &'a Value, name: &str) -> &'a Value {
    result["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {result}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quick_form_passes_against_the_default_limits() {
    let _serial = SERIAL.lock().await;
    // Default settings but the head deadline, so that slowloris takes 2 s rather than 10.
    let server = TestServer::start(&["--header-read-timeout", "2s"]).await;
    let result = abuse(&server, &["--quick"], 0).await;
    assert_eq!(result["failed"], 0, "{result}");
    assert_eq!(result["passed"], 6, "{result}");

    let slowloris = &check(&result, "slowloris")["figures"];
    assert_eq!(slowloris["closed_by_server"], 50, "{slowloris}");
    assert!(slowloris["health_polls"].as_u64().unwrap() > 0);
    assert_eq!(check(&result, "big-heads")["figures"]["answers"]["431"], 5);
    let flood = &check(&result, "flood")["figures"];
    assert_eq!(flood["flooder_close_code"], 1008, "{flood}");
    assert_eq!(flood["polite_lost"], 0, "{flood}");
    assert!(
        flood["dropped_rate_limited"].as_u64().unwrap() > 0,
        "{flood}"
    );
    let hoarders = &check(&result, "echo-hoarders")["figures"];
    assert!(
        hoarders["rss_growth_bytes"].as_u64().is_some(),
        "{hoarders}"
    );
    let cases = check(&result, "handshakes")["figures"]["cases"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(cases.len(), 7);
    assert!(cases.iter().all(|case| case["passed"] == true), "{cases:?}");
    let deep = &check(&result, "deep-json")["figures"];
    assert_eq!(deep["listener_got_deep"], false, "{deep}");
    assert_eq!(deep["dropped_too_deep"], 1, "{deep}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooder_without_a_rate_limit_fails_the_flood_check() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start(&["--max-messages-per-second", "0"]).await;
    // loadgen still expects the default limit of 100 a second.
    let result = abuse(&server, &["--quick", "--checks", "flood"], 1).await;
    let flood = check(&result, "flood");
    assert_eq!(flood["passed"], false);
    let misses = flood["misses"].to_string();
    assert!(misses.contains("the flooder got"), "{flood}");
    assert!(
        flood["figures"]["flooder_accepted_per_s"].as_f64().unwrap()
            > flood["figures"]["flooder_accepted_limit_per_s"]
                .as_f64()
                .unwrap(),
        "{flood}"
    );
    assert_ne!(flood["figures"]["flooder_close_code"], 1008, "{flood}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn told_there_is_no_limit_the_flood_check_only_reports_the_flooder_rate() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start(&[]).await;
    // Shorter than the 5 s over the limit that closes a client, and with no limit expected: the
    // flooder's rate and close are not judged, the listeners and the polite sender still are.
    let result = abuse(
        &server,
        &[
            "--checks",
            "flood",
            "--listeners",
            "5",
            "--flood-duration",
            "2s",
            "--max-messages-per-second",
            "0",
        ],
        0,
    )
    .await;
    let flood = check(&result, "flood");
    let target = flood["target"].as_str().unwrap();
    assert!(
        !target.contains("accepted rate") && !target.contains("1008"),
        "{target}"
    );
    assert!(flood["figures"]["flooder_accepted_limit_per_s"].is_null());
    assert!(flood["figures"]["flooder_accepted_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(flood["figures"]["open_at_end"], 5, "{flood}");
    server.stop().await;
}

#[tokio::test]
async fn only_loopback_is_attacked() {
    let output = loadgen(&["abuse", "--url", "ws://192.0.2.1:8080", "--checks", "flood"]).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--url") && stderr.contains("127.0.0.1"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_hoarders_check_needs_the_server_pid() {
    let output = loadgen(&["abuse", "--checks", "echo-hoarders"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--server-pid"));
}

#[tokio::test]
async fn nothing_listening_is_a_one_line_error() {
    let (_held, nothing) = refusing_address();
    let url = format!("ws://{nothing}");
    let output = loadgen(&["abuse", "--url", &url, "--checks", "handshakes"]).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("loadgen: the server at"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}
