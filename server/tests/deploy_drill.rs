//! A rolling deploy on loopback: two tasks sharing a real Redis behind a round-robin TCP proxy (the
//! load balancer), `/v1/ws` clients subscribed over channels, publishes flowing. One task is taken
//! out of the proxy and stopped (SIGTERM), as ECS deregisters and stops a task: its clients are
//! closed with 1012 over `DRAIN_SPREAD`, reconnect through the proxy to the other task, and resume
//! from their last offset. Every client must see every message of its channel once, in order.
//!
//! `make test` runs a short form; `make deploy-drill` the full one (`DRILL_CLIENTS=2000
//! DRILL_CHANNELS=100 DRILL_SPREAD=20`), whose figures are in BENCHMARKS.md.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// The drill's size, from the environment (the short form by default).
struct Size {
    clients: usize,
    channels: usize,
    spread_seconds: u64,
    /// Messages published per second, over all channels.
    rate: u64,
}

impl Size {
    fn from_env() -> Size {
        let read = |name: &str, default: u64| {
            std::env::var(name).map_or(default, |value| {
                value
                    .parse()
                    .unwrap_or_else(|_| panic!("{name} is a number"))
            })
        };
        let channels = read("DRILL_CHANNELS", 10) as usize;
        Size {
            clients: read("DRILL_CLIENTS", 200) as usize,
            channels,
            spread_seconds: read("DRILL_SPREAD", 3),
            rate: read("DRILL_RATE", 10 * channels as u64),
        }
    }
}

/// What one client saw.
#[derive(Default)]
struct Seen {
    /// Messages missing from the channel's sequence, and messages seen twice or out of order.
    lost: u64,
    duplicated: u64,
    /// `recovered: false` answers to a resume.
    unrecovered: u64,
    /// When (since the drill began) each reconnection was made, and the longest time between two
    /// messages.
    reconnected_at: Vec<Duration>,
    longest_gap: Duration,
    last: Option<u64>,
}

/// One client: subscribes to `channel` through the proxy, and after every disconnection comes
/// back with a short random backoff and resumes from its last offset, until `stop`.
async fn client(
    proxy: SocketAddr,
    channel: String,
    began: Instant,
    subscribed: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> Seen {
    let mut seen = Seen::default();
    let mut offset: Option<String> = None;
    let mut last_message = Instant::now();
    let url = format!("ws://{proxy}/v1/ws");
    while !stop.load(Ordering::SeqCst) {
        let Ok(Ok((mut socket, _))) =
            tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(&url)).await
        else {
            tokio::time::sleep(Duration::from_millis(rand::random_range(50..250))).await;
            continue;
        };
        let subscribe = match &offset {
            Some(since) => {
                serde_json::json!({"type":"subscribe","channel":channel,"since":since})
            }
            None => serde_json::json!({"type":"subscribe","channel":channel}),
        };
        if socket
            .send(Message::text(subscribe.to_string()))
            .await
            .is_err()
        {
            continue;
        }
        loop {
            let frame = tokio::select! {
                frame = socket.next() => frame,
                () = tokio::time::sleep(Duration::from_millis(100)) => {
                    if stop.load(Ordering::SeqCst) { return seen; }
                    continue;
                }
            };
            let Some(Ok(Message::Text(text))) = frame else {
                break;
            };
            let frame: Value = serde_json::from_str(&text).unwrap();
            match frame["type"].as_str() {
                Some("subscribed") => {
                    if offset.is_some() {
                        seen.reconnected_at.push(began.elapsed());
                        seen.unrecovered += u64::from(frame["recovered"] != true);
                    } else {
                        subscribed.fetch_add(1, Ordering::SeqCst);
                    }
                }
                Some("message") => {
                    let n = frame["data"]["n"].as_u64().unwrap();
                    if seen.last.is_some() {
                        seen.longest_gap = seen.longest_gap.max(last_message.elapsed());
                    }
                    match seen.last {
                        Some(last) if n <= last => seen.duplicated += 1,
                        Some(last) => seen.lost += n - last - 1,
                        None => {}
                    }
                    seen.last = Some(seen.last.map_or(n, |last| last.max(n)));
                    last_message = Instant::now();
                    offset = frame["offset"].as_str().map(str::to_owned);
                }
                _ => panic!("unexpected {frame}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(rand::random_range(0..100))).await;
    }
    seen
}

/// Publishes `{"n":k}` on the channels in turn, k counting per channel, at `rate` a second, on
/// the task that stays; returns the last k of each channel.
async fn publisher(
    task: String,
    channels: Vec<String>,
    rate: u64,
    stop: Arc<AtomicBool>,
) -> Vec<u64> {
    let mut socket = connect(&task).await;
    let mut counts = vec![0u64; channels.len()];
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    let mut turn = 0;
    while !stop.load(Ordering::SeqCst) {
        tick.tick().await;
        let index = turn % channels.len();
        turn += 1;
        counts[index] += 1;
        let frame = serde_json::json!({"type":"publish","channel":channels[index],"data":{"n":counts[index]}});
        socket.send(Message::text(frame.to_string())).await.unwrap();
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn a_rolling_deploy_loses_and_repeats_nothing() {
    let size = Size::from_env();
    let redis = Redis::start();
    let url = redis.url();
    let spread = format!("{}s", size.spread_seconds);
    let drain_timeout = format!("{}s", size.spread_seconds + 15);
    let queue = (size.clients * 4).max(1024).to_string();
    let env = [
        ("REDIS_URL", url.as_str()),
        ("EMF_INTERVAL", "0"),
        ("DRAIN_SPREAD", spread.as_str()),
        ("DRAIN_TIMEOUT", drain_timeout.as_str()),
        ("MAX_MESSAGES_PER_SECOND", "0"),
        ("CLIENT_QUEUE_SIZE", queue.as_str()),
    ];
    let leaving = Process::start(&env).await;
    let staying = Process::start(&env).await;
    let proxy = Proxy::start(vec![leaving.addr, staying.addr]).await;

    let channels: Vec<String> = (0..size.channels).map(|c| format!("drill:{c}")).collect();
    let began = Instant::now();
    let stop_clients = Arc::new(AtomicBool::new(false));
    let subscribed = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..size.clients)
        .map(|i| {
            tokio::spawn(client(
                proxy.addr,
                channels[i % size.channels].clone(),
                began,
                Arc::clone(&subscribed),
                Arc::clone(&stop_clients),
            ))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while subscribed.load(Ordering::SeqCst) < size.clients {
        assert!(Instant::now() < deadline, "clients did not all subscribe");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stop_publisher = Arc::new(AtomicBool::new(false));
    let publishing = tokio::spawn(publisher(
        staying.url("/v1/ws"),
        channels.clone(),
        size.rate,
        Arc::clone(&stop_publisher),
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The deploy: the load balancer stops sending new connections to the task, then it is stopped.
    let stopped_at = began.elapsed();
    proxy.retire(leaving.addr);
    leaving.signal("TERM");
    let exit = leaving
        .wait(Duration::from_secs(size.spread_seconds + 20))
        .await;
    assert_eq!(exit.code, Some(0), "{}", exit.stdout);
    // Everyone back, then a moment of traffic on the one task.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_publisher.store(true, Ordering::SeqCst);
    let published = publishing.await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop_clients.store(true, Ordering::SeqCst);

    let mut reconnects = Vec::new();
    let (mut lost, mut duplicated, mut unrecovered, mut behind) = (0, 0, 0, 0);
    let mut longest_gap = Duration::ZERO;
    for (i, seen) in clients.into_iter().enumerate() {
        let seen = seen.await.unwrap();
        lost += seen.lost;
        duplicated += seen.duplicated;
        unrecovered += seen.unrecovered;
        behind += u64::from(seen.last != Some(published[i % size.channels]));
        longest_gap = longest_gap.max(seen.longest_gap);
        reconnects.extend(
            seen.reconnected_at
                .iter()
                .map(|at| at.saturating_sub(stopped_at)),
        );
    }
    reconnects.sort();
    let mut per_second: BTreeMap<u64, usize> = BTreeMap::new();
    for at in &reconnects {
        *per_second.entry(at.as_secs()).or_default() += 1;
    }
    let peak = per_second.values().max().copied().unwrap_or(0);
    let first = reconnects.first().copied().unwrap_or_default();
    let last = reconnects.last().copied().unwrap_or_default();
    println!(
        "deploy drill: {} clients over {} channels, {} messages/s, DRAIN_SPREAD {}: {} reconnects \
         from {:.2} s to {:.2} s after SIGTERM, peak {} in one second; longest gap a client saw \
         {} ms; {} messages published; lost {lost}, duplicated {duplicated}, not recovered \
         {unrecovered}, clients behind at the end {behind}",
        size.clients,
        size.channels,
        size.rate,
        spread,
        reconnects.len(),
        first.as_secs_f64(),
        last.as_secs_f64(),
        peak,
        longest_gap.as_millis(),
        published.iter().sum::<u64>(),
    );
    assert!(
        reconnects.len() >= size.clients / 3,
        "about half the clients were on the stopped task"
    );
    assert_eq!(
        (lost, duplicated, unrecovered, behind),
        (0, 0, 0, 0),
        "lost, duplicated, not recovered, behind"
    );
    // Spread, not a wall: the last reconnect comes well after the first.
    assert!(
        last - first > Duration::from_secs(size.spread_seconds) / 2,
        "reconnects from {first:?} to {last:?}"
    );
}
