//! The writing half of a connection: its queue drained in batches, the heartbeat, and the events
//! that interrupt a write (the drain, eviction, a silent peer).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::time::{Sleep, sleep};

use super::socket::write_frames;
use super::{Activity, CloseReason, Context, Heartbeat};
use crate::frame::Frame;
use crate::outbox::{Outbox, Sent};
use crate::shutdown::Shutdown;

/// The writing half and the events that can interrupt it.
pub(super) struct Writer<'a> {
    pub(super) socket: &'a TcpStream,
    /// The frames being written. Whatever is left of them when the connection ends goes out
    /// before the close frame: the first may be half on the wire already.
    pub(super) batch: VecDeque<Frame>,
    pub(super) outbox: &'a Arc<Outbox>,
    pub(super) heartbeat: HeartbeatTimer,
    /// How the drain ends this connection.
    pub(super) departure: Departure,
    pub(super) activity: &'a Activity,
    /// The heartbeat's settings and the metrics (one reference for both: every connection's task
    /// holds it for life).
    pub(super) context: &'a Context,
}

impl Writer<'_> {
    /// Writes until the connection ends; returns why, and what the batch it was in the middle of
    /// counts (nothing if none), for the close to count once it has written the rest.
    pub(super) async fn run(&mut self, shutdown: &mut Shutdown) -> (CloseReason, Sent) {
        // One wait for the drain for the connection's whole life: made anew at every batch, it
        // would join and leave the drain signal's waiters each time (a tenth of the server's CPU
        // at a steady 50,000 deliveries/s: 1.65 s against 1.48 s).
        let mut draining = std::pin::pin!(shutdown.draining());
        loop {
            let taken = tokio::select! {
                biased;
                // Once leaving, `draining` would complete at every turn of the loop.
                _ = draining.as_mut(), if self.departure != Departure::Leaving => match self.departure.drain_started(self.context.drain_spread, &mut self.heartbeat) {
                    Some(reason) => return (reason, Sent::default()),
                    None => continue,
                },
                _ = self.heartbeat.timer.as_mut() => match self.departure {
                    Departure::Leaving => return (CloseReason::ServiceRestart, Sent::default()),
                    _ => match self.heartbeat.beat(&self.context.heartbeat, self.activity) {
                        Beat::Dead => return (CloseReason::PongTimeout, Sent::default()),
                        Beat::Alive => continue,
                        // Through the outbox, like every frame: written at once if nothing is
                        // queued, else behind what is.
                        Beat::Ping => match self.outbox.push_control(Frame::ping()) {
                            Ok(()) => continue,
                            Err(_) => return (CloseReason::SlowConsumer, Sent::default()),
                        },
                    },
                },
                taken = self.outbox.take_all(&mut self.batch) => match taken {
                    Ok(taken) => taken,
                    Err(_) => return (CloseReason::SlowConsumer, Sent::default()),
                },
            };
            // Boxed: a batch in flight needs far more state than an idle connection, and every
            // connection's task is allocated at its largest state's size.
            // Interrupted, the batch goes to the close with what it counts, counted once the close
            // has written the rest.
            if let Err(reason) = Box::pin(self.write(draining.as_mut(), taken)).await {
                return (reason, taken);
            }
        }
    }

    /// Writes the whole batch (`taken` says what to count once it is written); gives up as soon
    /// as the drain closes the connection, the client is evicted, or the client stays silent past
    /// the pong timeout while the write is stuck.
    async fn write(
        &mut self,
        mut draining: Pin<&mut impl Future<Output = ()>>,
        taken: Sent,
    ) -> Result<(), CloseReason> {
        let written = write_frames(self.socket, &mut self.batch);
        tokio::pin!(written);
        loop {
            tokio::select! {
                biased;
                written = &mut written => {
                    written.map_err(|_| CloseReason::Abnormal)?;
                    self.outbox.wrote(taken);
                    return Ok(());
                }
                _ = draining.as_mut(), if self.departure != Departure::Leaving => {
                    if let Some(reason) = self.departure.drain_started(self.context.drain_spread, &mut self.heartbeat) {
                        return Err(reason);
                    }
                }
                _ = self.outbox.evicted() => return Err(CloseReason::SlowConsumer),
                // No ping can go out while the socket is stuck; the timer still runs, so a client that
                // neither reads nor says anything for the pong timeout is let go. A ping that falls
                // due is queued behind what is being written, its pong deadline already running, so
                // that a client slow for a moment is not judged on a ping it never got.
                _ = self.heartbeat.timer.as_mut() => match self.departure {
                    Departure::Leaving => return Err(CloseReason::ServiceRestart),
                    _ => match self.heartbeat.beat(&self.context.heartbeat, self.activity) {
                        Beat::Dead => return Err(CloseReason::SlowConsumer),
                        Beat::Ping => if self.outbox.push_control(Frame::ping()).is_err() {
                            return Err(CloseReason::SlowConsumer);
                        },
                        Beat::Alive => {}
                    },
                },
            }
        }
    }
}

/// How the drain ends a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Departure {
    /// Close 1001 as soon as the drain starts (`/wss`, whose wire contract says so, and `/echo`).
    AtOnce,
    /// Close 1012 at a random moment within `DRAIN_SPREAD` (`/v1/ws`).
    Spread,
    /// Draining, and this connection's moment is set: the heartbeat's timer firing means close.
    Leaving,
}

impl Departure {
    /// The drain has started: the reason to close with now, or `None` for a connection whose
    /// close is spread over `spread`. That one takes a moment uniformly at random within the
    /// spread, so that the clients of a stopping task reconnect to the others a few at a time
    /// rather than all in the same second, and is served as before until then. Its moment is kept
    /// by the heartbeat's timer (no ping is due any more): a timer of its own would make every
    /// connection's task larger, draining or not.
    fn drain_started(
        &mut self,
        spread: Duration,
        heartbeat: &mut HeartbeatTimer,
    ) -> Option<CloseReason> {
        match self {
            Departure::AtOnce => Some(CloseReason::ServerShutdown),
            Departure::Spread if spread.is_zero() => Some(CloseReason::ServiceRestart),
            // Its moment is set already (the branches that call this are off while leaving).
            Departure::Leaving => None,
            Departure::Spread => {
                *self = Departure::Leaving;
                let turn = spread.mul_f64(rand::random::<f64>());
                heartbeat
                    .timer
                    .as_mut()
                    .reset(tokio::time::Instant::now() + turn);
                None
            }
        }
    }
}

/// What the heartbeat timer decided when it fired.
enum Beat {
    /// Send a ping now.
    Ping,
    /// The client answered in time; nothing to send yet.
    Alive,
    /// No sign of life since the last ping, for the whole pong timeout.
    Dead,
}

/// One timer for both the next ping and the pong deadline, so an idle connection holds one timer.
pub(super) struct HeartbeatTimer {
    timer: std::pin::Pin<Box<Sleep>>,
    ping_sent: Option<Instant>,
}

impl HeartbeatTimer {
    pub(super) fn new(settings: &Heartbeat) -> Self {
        HeartbeatTimer {
            timer: Box::pin(sleep(settings.ping_interval)),
            ping_sent: None,
        }
    }

    /// Called when the timer fires; re-arms it.
    fn beat(&mut self, settings: &Heartbeat, activity: &Activity) -> Beat {
        let now = tokio::time::Instant::now();
        match self.ping_sent {
            Some(sent) if !activity.heard_since(sent) => Beat::Dead,
            Some(sent) => {
                self.ping_sent = None;
                let next_ping = tokio::time::Instant::from_std(sent) + settings.ping_interval;
                self.timer.as_mut().reset(next_ping.max(now));
                Beat::Alive
            }
            None => {
                self.ping_sent = Some(now.into_std());
                self.timer.as_mut().reset(now + settings.pong_timeout);
                Beat::Ping
            }
        }
    }
}
