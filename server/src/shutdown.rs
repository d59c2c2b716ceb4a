//! The drain signal, passed explicitly to everything that must react to it (routes, connections,
//! the metrics loop) rather than kept in global state.
//!
//! Draining is one-way: once the process has been told to stop, `/health` answers 503, new upgrades
//! are refused, and every connection closes with 1001.

use tokio::sync::watch;

/// Starts the drain. Held by whoever owns the process's life cycle (`run`).
#[derive(Debug)]
pub struct DrainTrigger {
    sender: watch::Sender<bool>,
}

/// Tells its holder whether, and when, the process starts draining. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown {
    receiver: watch::Receiver<bool>,
}

/// A trigger and the first of its receivers.
pub fn channel() -> (DrainTrigger, Shutdown) {
    let (sender, receiver) = watch::channel(false);
    (DrainTrigger { sender }, Shutdown { receiver })
}

impl DrainTrigger {
    /// Starts draining; every `Shutdown` sees it.
    pub fn drain(&self) {
        self.sender.send_replace(true);
    }
}

impl Shutdown {
    /// Whether the drain has started.
    pub fn is_draining(&self) -> bool {
        *self.receiver.borrow()
    }

    /// Completes once the drain has started (at once if it already has). Cancel-safe, so it can
    /// sit in a `select!` loop.
    pub async fn draining(&mut self) {
        // An error means the trigger is gone, which only happens as the process ends: also a drain.
        let _ = self.receiver.wait_for(|draining| *draining).await;
    }
}

/// Completes on the first SIGTERM (what ECS sends) or SIGINT (Ctrl-C).
pub async fn termination_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("install the SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("install the SIGINT handler");
    tokio::select! {
        _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "termination signal received"),
        _ = interrupt.recv() => tracing::info!(signal = "SIGINT", "termination signal received"),
    }
}
