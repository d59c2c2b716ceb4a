//! Deep JSON: one message nested 10,000 levels deep. It is valid JSON, so a server that only
//! checks validity broadcasts it, and every recipient whose parser recurses (most browsers' and
//! many libraries') overflows its stack on it. The server must drop it (MAX_JSON_DEPTH) and keep
//! the sender connected: a message right after it from the same client must still be broadcast.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::{CONNECT_TIMEOUT, Check, Figures as AnyFigures, Server};
use crate::cli::AbuseCheck;
use crate::client::{self, Socket};

/// Levels of nesting of the deep message.
const DEPTH: usize = 10_000;
/// How long the marker has to arrive.
const WAIT: Duration = Duration::from_secs(5);

/// What the deep-JSON check measured.
#[derive(Debug, Serialize)]
pub struct Figures {
    depth: usize,
    /// Whether the other listener received the deep message.
    listener_got_deep: bool,
    /// Whether the other listener received the marker sent after it.
    listener_got_marker: bool,
    /// Whether the sender's own marker came back to it (so it was still connected).
    sender_got_marker: bool,
    /// How the sender's connection ended, if it did.
    sender_end: Option<String>,
    /// `websocket_messages_dropped_total{reason="too_deep"}` over the check (with --admin).
    dropped_too_deep: Option<u64>,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let yes_no = |got: bool| if got { "yes" } else { "no" };
        writeln!(
            f,
            "  {}-deep array, then a marker: listener got the deep message: {}, the marker: {}; \
             the sender got its marker back: {}",
            self.depth,
            yes_no(self.listener_got_deep),
            yes_no(self.listener_got_marker),
            yes_no(self.sender_got_marker)
        )?;
        if let Some(end) = &self.sender_end {
            writeln!(f, "  the sender's connection ended: {end}")?;
        }
        if let Some(dropped) = self.dropped_too_deep {
            writeln!(f, "  server counted {dropped} messages dropped as too_deep")?;
        }
        Ok(())
    }
}

/// What one client saw before the marker (or the deadline).
#[derive(Debug, Default)]
struct Seen {
    deep: bool,
    marker: bool,
    end: Option<String>,
}

/// Runs the check.
pub async fn run(server: &Server) -> Check {
    let target = format!(
        "a {DEPTH}-deep JSON array is not broadcast (another listener gets the marker sent after \
         it, not the array) and its sender stays connected (its marker is broadcast)"
    );
    let dropped_before = server.dropped("too_deep").await;
    let url = server.url("/wss");
    let (sender, listener) = match (
        client::connect(&url, CONNECT_TIMEOUT).await,
        client::connect(&url, CONNECT_TIMEOUT).await,
    ) {
        (Ok(sender), Ok(listener)) => (sender, listener),
        (Err(err), _) | (_, Err(err)) => {
            return Check::new(
                AbuseCheck::DeepJson,
                target,
                AnyFigures::NotRun {},
                vec![format!("not run: {err}")],
            );
        }
    };
    let marker = format!(r#"{{"marker":{}}}"#, server.run);
    let broadcast_marker = format!(r#"{{"message":{marker}}}"#);
    let deadline = Instant::now() + WAIT;
    let listening = tokio::spawn(watch_for(listener, broadcast_marker.clone(), deadline));
    let (mut sink, stream) = sender.split();
    let deep = format!("{}{}", "[".repeat(DEPTH), "]".repeat(DEPTH));
    let sent = tokio::time::timeout_at(deadline, async {
        sink.send(Message::text(deep)).await?;
        sink.send(Message::text(marker)).await
    })
    .await;
    let sender_seen = match sent {
        Err(_) => Seen {
            end: Some("the server took neither message".into()),
            ..Seen::default()
        },
        Ok(Err(err)) => Seen {
            end: Some(format!("sending failed: {err}")),
            ..Seen::default()
        },
        Ok(Ok(())) => {
            let socket = stream.reunite(sink).expect("the halves of one connection");
            watch_for(socket, broadcast_marker, deadline).await
        }
    };
    let listener_seen = listening.await.unwrap_or_default();
    let dropped_after = server.dropped("too_deep").await;

    let mut misses = Vec::new();
    if listener_seen.deep {
        misses.push(format!("the listener received the {DEPTH}-deep message"));
    }
    if !listener_seen.marker {
        misses.push(format!(
            "the listener did not receive the marker within {WAIT:?}{}",
            listener_seen
                .end
                .as_ref()
                .map_or_else(String::new, |end| format!(" (its connection ended: {end})"))
        ));
    }
    if !sender_seen.marker {
        misses.push(format!(
            "the sender's marker did not come back to it within {WAIT:?}{}",
            sender_seen
                .end
                .as_ref()
                .map_or_else(String::new, |end| format!(" (its connection ended: {end})"))
        ));
    }
    let figures = Figures {
        depth: DEPTH,
        listener_got_deep: listener_seen.deep,
        listener_got_marker: listener_seen.marker,
        sender_got_marker: sender_seen.marker,
        sender_end: sender_seen.end,
        dropped_too_deep: dropped_before
            .zip(dropped_after)
            .map(|(before, after)| after.saturating_sub(before)),
    };
    Check::new(
        AbuseCheck::DeepJson,
        target,
        AnyFigures::DeepJson(figures),
        misses,
    )
}

/// Reads until `marker` arrives, the connection ends, or `deadline`, noting a deep message on the
/// way; then closes the connection.
async fn watch_for(mut socket: Socket, marker: String, deadline: Instant) -> Seen {
    let mut seen = Seen::default();
    loop {
        let frame = match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => break,
            Ok(frame) => frame,
        };
        match frame {
            Some(Ok(Message::Text(text))) => {
                if text.as_str() == marker {
                    seen.marker = true;
                    break;
                }
                if text.as_str().starts_with(r#"{"message":[["#) {
                    seen.deep = true;
                }
            }
            Some(Ok(Message::Close(close))) => {
                seen.end = Some(close.map_or_else(
                    || "closed by the server without a code".to_string(),
                    |close| format!("closed by the server with {}", u16::from(close.code)),
                ));
                break;
            }
            Some(Ok(_)) => {}
            Some(Err(err)) => {
                seen.end = Some(format!("connection failed: {err}"));
                break;
            }
            None => {
                seen.end = Some("connection ended".into());
                break;
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), socket.close(None)).await;
    seen
}
