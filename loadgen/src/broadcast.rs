//! `loadgen broadcast`: C clients connect to `/wss`, S of them send, every client counts what it
//! receives: all messages, its own included (the engine is in [`crate::fanout`]).

use serde::Serialize;

use crate::cli::BroadcastArgs;
use crate::client::{self, Socket};
use crate::fanout::{self, Outcome, Rooms};

/// The outcome of a broadcast run.
#[derive(Debug, Serialize)]
pub struct BroadcastResult {
    scenario: &'static str,
    urls: Vec<String>,
    clients: u32,
    #[serde(flatten)]
    outcome: Outcome,
}

impl BroadcastResult {
    /// Whether the run saw no loss, duplicate or error.
    pub fn clean(&self) -> bool {
        self.outcome.clean()
    }
}

impl std::fmt::Display for BroadcastResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "broadcast: {}/{} clients connected, {}",
            self.outcome.connected,
            self.clients,
            self.outcome.sending()
        )?;
        write!(f, "{}", self.outcome)
    }
}

/// Runs the scenario.
pub async fn run(args: &BroadcastArgs) -> Result<BroadcastResult, String> {
    let common = &args.common;
    let connections = client::connect_many(
        &common.urls,
        args.clients,
        common.connect_concurrency,
        common.connect_timeout,
    )
    .await;
    let errors = client::failures(&connections);
    let sockets: Vec<(Socket, usize)> = connections
        .into_iter()
        .filter_map(Result::ok)
        .map(|socket| (socket, 0))
        .collect();
    if sockets.is_empty() {
        return Err(format!(
            "no client could connect to {}: {}",
            common.urls.join(", "),
            errors.first.unwrap_or_default()
        ));
    }
    let outcome = fanout::run(
        sockets,
        errors,
        Rooms::Broadcast,
        &args.send,
        &common.server_pids,
    )
    .await?;
    Ok(BroadcastResult {
        scenario: "broadcast",
        urls: common.urls.clone(),
        clients: args.clients,
        outcome,
    })
}
