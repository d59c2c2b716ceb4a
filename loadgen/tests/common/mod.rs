//! What the loadgen tests share: a server running in the test process (so `--server-pid` is this
//! process's pid), and running the real `loadgen` binary.
#![allow(dead_code)] // each test binary uses its own subset

use std::process::Output;

use serde_json::Value;

// The server tests' in-process server, shared by path: the rest of their support names the
// server's binary, which only its own crate can.
#[path = "../../../server/tests/common/in_process.rs"]
mod in_process;

pub use in_process::{TestServer, refusing_address};

pub async fn loadgen(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .output()
        .await
        .expect("run loadgen")
}

/// Runs loadgen with `argv` (which asks for `--json`), expecting `exit_code`; returns its JSON line.
pub async fn json_run(argv: &[&str], exit_code: i32) -> Value {
    let output = loadgen(argv).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(exit_code),
        "{argv:?}\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("one JSON line")
}
