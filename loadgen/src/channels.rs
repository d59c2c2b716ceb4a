//! `loadgen channels`: C clients connect to `/v1/ws`, client `i` subscribes to channel
//! `bench:{i % N}`, and once every subscription is confirmed S of them publish, round robin over
//! the channels; every subscriber counts what its channel got (the engine is in
//! [`crate::fanout`]).

use std::time::Instant;

use serde::Serialize;

use crate::cli::ChannelsArgs;
use crate::client::{self, Socket};
use crate::fanout::{self, Outcome, Rooms};

/// The outcome of a channels run.
#[derive(Debug, Serialize)]
pub struct ChannelsResult {
    scenario: &'static str,
    urls: Vec<String>,
    clients: u32,
    channels: u32,
    /// Subscribers of the least and the most subscribed channel (the clients that connected).
    subscribers_min: u32,
    subscribers_max: u32,
    /// From the first connect to the last `subscribed`.
    subscribe_seconds: f64,
    #[serde(flatten)]
    outcome: Outcome,
}

impl ChannelsResult {
    /// Whether the run saw no loss, duplicate or error.
    pub fn clean(&self) -> bool {
        self.outcome.clean()
    }
}

impl std::fmt::Display for ChannelsResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let subscribers = if self.subscribers_min == self.subscribers_max {
            format!("{}", self.subscribers_min)
        } else {
            format!("{} to {}", self.subscribers_min, self.subscribers_max)
        };
        writeln!(
            f,
            "channels: {}/{} clients subscribed in {:.2} s, {} channels of {subscribers}, {}",
            self.outcome.connected,
            self.clients,
            self.subscribe_seconds,
            self.channels,
            self.outcome.sending()
        )?;
        write!(f, "{}", self.outcome)
    }
}

/// The name of channel `index`.
fn channel_name(index: u32) -> String {
    format!("bench:{index}")
}

/// Runs the scenario.
pub async fn run(args: &ChannelsArgs) -> Result<ChannelsResult, String> {
    let common = &args.common;
    let names: Vec<String> = (0..args.channels).map(channel_name).collect();
    let started = Instant::now();
    let connections = client::open_many(args.clients, common.connect_concurrency, |i| {
        let url = &common.urls[i % common.urls.len()];
        let channel = &names[i % names.len()];
        async move { client::subscribe(url, channel, common.connect_timeout).await }
    })
    .await;
    let subscribe_seconds = started.elapsed().as_secs_f64();
    let errors = client::failures(&connections);
    let mut subscribers = vec![0u32; names.len()];
    let sockets: Vec<(Socket, usize)> = connections
        .into_iter()
        .enumerate()
        .filter_map(|(i, connection)| {
            let channel = i % names.len();
            let socket = connection.ok()?;
            subscribers[channel] += 1;
            Some((socket, channel))
        })
        .collect();
    if sockets.is_empty() {
        return Err(format!(
            "no client could subscribe at {}: {}",
            common.urls.join(", "),
            errors.first.unwrap_or_default()
        ));
    }
    let outcome = fanout::run(
        sockets,
        errors,
        Rooms::Channels(names),
        &args.send,
        &common.server_pids,
    )
    .await?;
    Ok(ChannelsResult {
        scenario: "channels",
        urls: common.urls.clone(),
        clients: args.clients,
        channels: args.channels,
        subscribers_min: subscribers.iter().copied().min().unwrap_or(0),
        subscribers_max: subscribers.iter().copied().max().unwrap_or(0),
        subscribe_seconds,
        outcome,
    })
}
