//! Why a connection ended, and ending it: the close code and text the server sends (RFC 6455,
//! 7.4.1), and how long the close handshake may take.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::net::TcpStream;
use tokio::time::sleep;

use super::incoming::{Incoming, Received};
use super::socket::{write_frame, write_frames};
use crate::frame::Frame;
use crate::outbox::{Outbox, Sent};
use crate::shutdown::Shutdown;

/// How long a close handshake the server starts (other than on drain) may take before the socket
/// is simply dropped: a peer that misbehaved gets no more patience than that.
pub const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a client closed for flooding keeps its socket after the server's close frame, unread:
/// time for the frame (and what was queued before it) to reach the client, while TCP flow control
/// holds the flood back at no cost to the server. Reading on for the close reply would mean parsing
/// the flood; dropping at once would reset the connection and discard the close frame unsent.
const FLOODER_LINGER: Duration = Duration::from_secs(1);

/// Why a connection ended. Also the `reason` label of `websocket_connections_closed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client started the close handshake.
    ClientClosed,
    /// The TCP connection ended or failed without a close handshake (RFC 6455's 1006).
    Abnormal,
    /// The client fell a whole queue behind, or did not accept bytes for the pong timeout.
    SlowConsumer,
    /// The client answered nothing for the pong timeout after a ping.
    PongTimeout,
    /// A frame or message over the configured limit.
    MessageTooBig,
    /// The client stayed over its message or byte rate limit for `limits::OVER_LIMIT_GRACE`.
    RateLimited,
    /// A frame that breaks RFC 6455.
    ProtocolError,
    /// A text frame that is not UTF-8.
    InvalidUtf8,
    /// The process is draining: `/wss` and `/echo` connections, all at once.
    ServerShutdown,
    /// The process is draining and this `/v1/ws` connection's turn came, at its moment within
    /// `DRAIN_SPREAD`.
    ServiceRestart,
    /// The client's token expired (plus the leeway) and no newer one came in time.
    TokenExpired,
}

impl CloseReason {
    /// The metric label and log field.
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "client_closed",
            CloseReason::Abnormal => "abnormal",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::PongTimeout => "pong_timeout",
            CloseReason::MessageTooBig => "message_too_big",
            CloseReason::RateLimited => "rate_limited",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::InvalidUtf8 => "invalid_utf8",
            CloseReason::ServerShutdown => "server_shutdown",
            CloseReason::ServiceRestart => "service_restart",
            CloseReason::TokenExpired => "token_expired",
        }
    }

    /// The close code the server sends, if it starts the close handshake (RFC 6455, 7.4.1; 1012
    /// and 1013 are in IANA's WebSocket close code registry).
    fn close_code(self) -> Option<u16> {
        match self {
            CloseReason::ServerShutdown => Some(1001),
            // "Service Restart": the client may reconnect, to another task behind the load
            // balancer, where 1001 ("going away") only says that this end is leaving.
            CloseReason::ServiceRestart => Some(1012),
            CloseReason::ProtocolError => Some(1002),
            CloseReason::InvalidUtf8 => Some(1007),
            CloseReason::RateLimited | CloseReason::TokenExpired => Some(1008),
            CloseReason::MessageTooBig => Some(1009),
            CloseReason::SlowConsumer => Some(1013),
            CloseReason::ClientClosed | CloseReason::Abnormal | CloseReason::PongTimeout => None,
        }
    }

    /// The close frame's reason text: what the client did, in words a developer reading a
    /// browser's close event understands.
    fn close_text(self) -> &'static str {
        match self {
            CloseReason::RateLimited => "rate limit exceeded for 5 s",
            CloseReason::MessageTooBig => "message too big",
            CloseReason::SlowConsumer => "too slow reading messages",
            CloseReason::ServerShutdown => "server shutting down",
            CloseReason::ServiceRestart => "server restarting; reconnect",
            CloseReason::ProtocolError => "protocol error",
            CloseReason::InvalidUtf8 => "invalid UTF-8",
            CloseReason::TokenExpired => "token expired",
            other => other.label(),
        }
    }

    /// Whether the client is owed what is queued for it before the close frame: when the server
    /// ends a connection that still reads (the drain, a client's bad frame or expired token), but
    /// not one that fell behind, stopped answering, or floods. Nor one that closed itself: its
    /// close is answered "as soon as practical" (RFC 6455, 5.5.1), not after a backlog of up to
    /// `CLIENT_QUEUE_BYTES` that a slow reader might not take within the close handshake's
    /// timeout, and that a browser which called `close()` drops unread.
    fn delivers_queued(self) -> bool {
        matches!(
            self,
            CloseReason::ServerShutdown
                | CloseReason::ServiceRestart
                | CloseReason::ProtocolError
                | CloseReason::InvalidUtf8
                | CloseReason::MessageTooBig
                | CloseReason::TokenExpired
        )
    }

    /// Whether the drain closed the connection: its close handshake may then last until the
    /// drain ends (`DRAIN_TIMEOUT`), rather than `CLOSE_HANDSHAKE_TIMEOUT`.
    fn is_drain(self) -> bool {
        matches!(
            self,
            CloseReason::ServerShutdown | CloseReason::ServiceRestart
        )
    }
}

/// What the writer leaves to the close: the socket, the rest of the batch it was writing, and the
/// outbox with what is queued behind it.
pub(super) struct Unsent<'a> {
    pub(super) socket: &'a TcpStream,
    pub(super) batch: VecDeque<Frame>,
    /// What the batch counts in the metrics once written (the writer counts a batch it finishes).
    pub(super) interrupted: Sent,
    pub(super) outbox: &'a Outbox,
}

/// Ends the connection politely where that makes sense: the server's close frame and the client's
/// reply for server-side reasons, the reply to the client's close frame, or nothing for a peer
/// that is gone or silent. During a drain the wait lasts until the drain ends; otherwise up to
/// `CLOSE_HANDSHAKE_TIMEOUT`.
pub(super) async fn close(
    unsent: Unsent<'_>,
    mut incoming: Incoming<'_>,
    reason: CloseReason,
    mut shutdown: Shutdown,
) {
    let Unsent {
        socket,
        mut batch,
        interrupted,
        outbox,
    } = unsent;
    let handshake = async {
        // From here on only the close writes: no frame may follow the close frame. A frame a
        // producer claimed is written when its publish is done (and the wait is bounded below
        // like the rest of the close).
        outbox.reclaim(&mut batch).await;
        // Before any frame of the close: the rest of an interrupted batch, whose first frame may
        // be half written (anything after it would read as that frame's payload); then what the
        // client is still owed. Nothing for a peer that is gone or silent: nothing more is sent.
        if !matches!(reason, CloseReason::Abnormal | CloseReason::PongTimeout) {
            if write_frames(socket, &mut batch).await.is_err() {
                return;
            }
            // Counted as the writer counts what it writes: in the client's `sent` and the
            // process's metrics.
            outbox.wrote(interrupted);
            if reason.delivers_queued()
                && let Some(Ok(owed)) = outbox.take_all(&mut batch).now_or_never()
            {
                if write_frames(socket, &mut batch).await.is_err() {
                    return;
                }
                outbox.wrote(owed);
            }
        }
        match reason.close_code() {
            // After our close frame, wait for the client's (the stream ends after it); a flooder
            // is not read from again.
            Some(code)
                if write_frame(socket, Frame::close(code, reason.close_text()))
                    .await
                    .is_ok() =>
            {
                if reason == CloseReason::RateLimited {
                    sleep(FLOODER_LINGER).await;
                } else {
                    // Whatever the client still sends is read past (and not answered: no frame
                    // may follow a close frame), up to its own close frame or the stream's end;
                    // after a frame the reader could not parse, nothing more is read (RFC 6455,
                    // 7.1.7: the connection may simply be dropped).
                    while let Ok(received) = incoming.next().await {
                        if received == Received::Close {
                            break;
                        }
                    }
                }
            }
            // The answer to the client's close frame: the same code, or 1002 for one a client may
            // not send.
            None if reason == CloseReason::ClientClosed => {
                let _ = write_frame(socket, incoming.close_reply()).await;
            }
            _ => {}
        }
    };
    tokio::select! {
        _ = handshake => {}
        _ = shutdown.terminating() => {}
        _ = sleep(CLOSE_HANDSHAKE_TIMEOUT), if !reason.is_drain() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_server_side_reason_has_a_close_code() {
        assert_eq!(CloseReason::ServerShutdown.close_code(), Some(1001));
        assert_eq!(CloseReason::ServiceRestart.close_code(), Some(1012));
        assert_eq!(CloseReason::MessageTooBig.close_code(), Some(1009));
        assert_eq!(CloseReason::SlowConsumer.close_code(), Some(1013));
        assert_eq!(CloseReason::RateLimited.close_code(), Some(1008));
        assert_eq!(CloseReason::PongTimeout.close_code(), None);
    }
}
