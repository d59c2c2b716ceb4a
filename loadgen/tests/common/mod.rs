//! What the loadgen tests share: a server running in the test process (so `--server-pid` is this
//! process's pid), and running the real `loadgen` binary.
#![allow(dead_code)] // each test binary uses its own subset

use std::net::SocketAddr;
use std::process::Output;

use clap::Parser;
use serde_json::Value;
use server::Listeners;
use server::config::Cli;
use tokio::sync::oneshot;

/// A server on loopback ports in this process.
pub struct Server {
    pub addr: SocketAddr,
    /// The metrics port.
    pub admin: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Starts a server with `flags` on top of quiet defaults (no EMF lines, errors only in the log,
    /// a short drain).
    pub async fn start(flags: &[&str]) -> Server {
        let argv = [
            "websocket-server",
            "--emf-interval",
            "0",
            "--drain-timeout",
            "1s",
            "--log-level",
            "error",
        ];
        let cli = Cli::try_parse_from(argv.iter().chain(flags)).expect("valid flags");
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let listeners = Listeners {
            public: server::bind(loopback).unwrap(),
            admin: Some(server::bind(loopback).unwrap()),
        };
        let addr = listeners.public.local_addr().unwrap();
        let admin = listeners.admin.as_ref().unwrap().local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server::run(&cli.config, listeners, async {
                let _ = stopped.await;
            })
            .await
        });
        Server {
            addr,
            admin,
            stop,
            task,
        }
    }

    /// The broadcast endpoint's URL.
    pub fn url(&self) -> String {
        format!("ws://{}/wss", self.addr)
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }
}

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
