//! A server running in this process and reading its metrics. Apart from `mod.rs` because it needs
//! only the `server` library: the smoke and loadgen tests include this file by path, where
//! `CARGO_BIN_EXE_websocket-server` (which `mod.rs` names) does not exist.
#![allow(dead_code)] // each test binary uses its own subset

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Parser;
use server::config::Cli;
use server::healthcheck::http_request;
use server::{Listeners, bind};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Long enough for anything that should happen; only reached when a test is about to fail.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A server running in this process on 127.0.0.1, with its admin (metrics) port. Dropping it
/// starts the drain too, so keep it for as long as the server is needed.
pub struct TestServer {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl TestServer {
    /// Starts a server with the given `--flags` on top of the defaults. The drain is short because
    /// test clients that are not being read never answer the server's close frame.
    pub async fn start(flags: &[&str]) -> TestServer {
        TestServer::start_at("127.0.0.1:0".parse().unwrap(), flags).await
    }

    /// Like `start`, on a given public address (to restart a server where clients reconnect).
    pub async fn start_at(public: SocketAddr, flags: &[&str]) -> TestServer {
        let argv = [
            "websocket-server",
            "--host",
            "127.0.0.1",
            "--emf-interval",
            "0",
            "--drain-timeout",
            "1s",
        ];
        let cli = Cli::try_parse_from(argv.iter().chain(flags)).expect("valid test flags");
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let listeners = Listeners {
            public: bind(public).unwrap(),
            admin: Some(bind(loopback).unwrap()),
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
        TestServer {
            addr,
            admin,
            stop: Some(stop),
            task,
        }
    }

    /// Starts the drain and waits for `run` to return.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(PATIENCE, &mut self.task)
            .await
            .expect("server stops")
            .unwrap();
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    pub async fn metric(&self, series: &str) -> f64 {
        metric(self.admin, series).await
    }

    pub async fn wait_for_metric(&self, series: &str, value: f64) {
        wait_for_metric(self.admin, series, value).await
    }
}

/// A value from a server's Prometheus text on its admin port, e.g.
/// `websocket_connections_closed_total{reason="slow_consumer"}` (0 when the series does not exist yet).
pub async fn metric(admin: SocketAddr, series: &str) -> f64 {
    let (status, body) = http_request(admin, "GET", "/metrics").await.unwrap();
    assert_eq!(status, 200);
    body.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Waits until `series` reaches `value`; panics with the last value after `PATIENCE`.
pub async fn wait_for_metric(admin: SocketAddr, series: &str, value: f64) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let now = metric(admin, series).await;
        if now == value {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} is {now}, expected {value}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A loopback address that refuses connections for as long as the returned socket lives: bound but
/// never listening, so no other process can start listening there meanwhile (a port bound and
/// released at once could be anyone's by the time it is used).
pub fn refusing_address() -> (tokio::net::TcpSocket, SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}
