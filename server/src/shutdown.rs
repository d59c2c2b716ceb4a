//! The process's life cycle, passed explicitly to everything that must react to it (routes,
//! connections, listeners, the metrics loop) rather than kept in global state.
//!
//! Two one-way steps. Draining: `/health` answers 503, new upgrades are refused, and every
//! connection closes (`/wss` and `/echo` with 1001 at once, `/v1/ws` with 1012 at its own moment
//! within `DRAIN_SPREAD`) and waits for its client's close reply. Terminating (the drain
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
    pub fn draining(&mut self) -> impl Future<Output = ()> + '_ {
        self.reach(Phase::Draining)
    }

    /// Completes once the drain is over. Cancel-safe.
    pub fn terminating(&mut self) -> impl Future<Output = ()> + '_ {
        self.reach(Phase::Terminating)
    }

    /// Every idle connection waits on this (through `draining`), so its state is part of each
    /// connection's memory: hence a loop over `changed`, returned by `draining` as it is, rather
    /// than `wait_for` inside another async fn (144 bytes against 200).
    async fn reach(&mut self, phase: Phase) {
        while *self.receiver.borrow_and_update() < phase {
            // An error means the life cycle is gone, which only happens as the process ends.
            if self.receiver.changed().await.is_err() {
                return;
            }
        }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn waiters_wake_for_each_phase_and_later_ones_return_at_once() {
        let (lifecycle, mut shutdown) = channel();
        assert!(!shutdown.is_draining());
        let mut waiter = shutdown.clone();
        let waiting = tokio::spawn(async move {
            waiter.draining().await;
            waiter.terminating().await;
        });
        tokio::task::yield_now().await;
        lifecycle.drain();
        assert!(shutdown.is_draining());
        shutdown.draining().await;
        lifecycle.terminate();
        let waited = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert!(waited.is_ok_and(|joined| joined.is_ok()));
        shutdown.terminating().await;
        shutdown.draining().await;
    }
}
