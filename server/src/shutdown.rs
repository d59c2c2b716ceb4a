//! The process's life cycle, passed explicitly to everything that must react to it (routes,
//! connections, listeners, the metrics loop) rather than kept in global state.
//!
//! Two one-way steps. Draining: `/health` answers 503, new upgrades are refused, and every
//! connection closes with 1001 and waits for its client's close reply. Terminating (the drain
//! finished, or `DRAIN_TIMEOUT` passed): connections still waiting give up and log their close
//! line, and the listeners stop.

use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Serving,
    Draining,
    Terminating,
}

/// Moves the process through its phases. Held by whoever owns the process's life cycle (`run`).
#[derive(Debug)]
pub struct Lifecycle {
    sender: watch::Sender<Phase>,
}

/// Tells its holder whether, and when, the process drains and terminates. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown {
    receiver: watch::Receiver<Phase>,
}

/// A life cycle in the serving phase, and the first of its receivers.
pub fn channel() -> (Lifecycle, Shutdown) {
    let (sender, receiver) = watch::channel(Phase::Serving);
    (Lifecycle { sender }, Shutdown { receiver })
}

impl Lifecycle {
    /// Starts draining.
    pub fn drain(&self) {
        self.sender
            .send_if_modified(|phase| advance(phase, Phase::Draining));
    }

    /// Ends the drain: whatever is still open is let go.
    pub fn terminate(&self) {
        self.sender
            .send_if_modified(|phase| advance(phase, Phase::Terminating));
    }
}

fn advance(phase: &mut Phase, to: Phase) -> bool {
    let moved = *phase < to;
    *phase = (*phase).max(to);
    moved
}

impl Shutdown {
    /// Whether the drain has started.
    pub fn is_draining(&self) -> bool {
        *self.receiver.borrow() >= Phase::Draining
    }

    /// Completes once the drain has started (at once if it already has). Cancel-safe, so it can
    /// sit in a `select!` loop.
    pub async fn draining(&mut self) {
        self.reach(Phase::Draining).await
    }

    /// Completes once the drain is over. Cancel-safe.
    pub async fn terminating(&mut self) {
        self.reach(Phase::Terminating).await
    }

    async fn reach(&mut self, phase: Phase) {
        // An error means the life cycle is gone, which only happens as the process ends.
        let _ = self.receiver.wait_for(|now| *now >= phase).await;
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
