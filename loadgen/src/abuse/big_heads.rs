//! Big heads: sockets that send a request head of more than 64 KiB and never finish it. A server
//! that buffers whatever a head grows to gives every such socket that much of its memory; it
//! should answer 431 once a head passes its limit (16 KiB) and close the socket, long before any
//! read timeout would.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::{Check, Figures as AnyFigures, Server, Spread, http, show_tally, tally};
use crate::cli::AbuseCheck;

/// Bytes of header lines each socket sends after its request line.
const HEAD_BYTES: usize = 66 * 1024;
/// How long the server has to close each socket: well under the default HEADER_READ_TIMEOUT, so
/// that only a size limit can meet it.
const WAIT: Duration = Duration::from_secs(5);
/// Time limit for one socket to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the big-heads check measured.
#[derive(Debug, Serialize)]
pub struct Figures {
    sockets: u32,
    head_bytes: usize,
    /// The server's answers, by status ("closed without an answer" and so on for none).
    answers: BTreeMap<String, u32>,
    closed_by_server: u32,
    closed_after_s: Option<Spread>,
    connect_errors: u32,
    first_connect_error: Option<String>,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "  {} sockets, {} KiB heads: answers {} (431 expected)",
            self.sockets,
            self.head_bytes / 1024,
            show_tally(&self.answers)
        )?;
        write!(
            f,
            "  closed by the server: {} of {}",
            self.closed_by_server, self.sockets
        )?;
        match self.closed_after_s {
            Some(spread) => writeln!(f, " ({spread})")?,
            None => writeln!(f)?,
        }
        if let Some(err) = &self.first_connect_error {
            writeln!(
                f,
                "  connect errors: {} (first: {err})",
                self.connect_errors
            )?;
        }
        Ok(())
    }
}

/// How one socket ended.
struct End {
    answer: String,
    /// How long after connecting the server closed it, if it did within [`WAIT`].
    closed_after: Option<Duration>,
}

/// Runs the check.
pub async fn run(server: &Server, sockets: u32) -> Check {
    let head = big_head(server.addr);
    let tasks: Vec<_> = (0..sockets)
        .map(|_| tokio::spawn(big_head_socket(server.addr, head.clone())))
        .collect();
    let mut ends = Vec::with_capacity(tasks.len());
    for task in tasks {
        ends.push(
            task.await
                .unwrap_or_else(|err| Err(format!("socket task failed: {err}"))),
        );
    }
    let (mut connect_errors, mut first_connect_error) = (0, None);
    let mut answers = Vec::new();
    let mut closed_after = Vec::new();
    for end in &ends {
        match end {
            Err(err) => {
                connect_errors += 1;
                first_connect_error.get_or_insert_with(|| err.clone());
            }
            Ok(end) => {
                answers.push(end.answer.as_str());
                closed_after.extend(end.closed_after.map(|after| after.as_secs_f64()));
            }
        }
    }
    let closed = closed_after.len() as u32;
    let figures = Figures {
        sockets,
        head_bytes: head.len(),
        answers: tally(answers),
        closed_by_server: closed,
        closed_after_s: Spread::of(closed_after),
        connect_errors,
        first_connect_error,
    };
    let mut misses = Vec::new();
    let connected = sockets - connect_errors;
    if closed < connected {
        misses.push(format!(
            "{} of {connected} sockets still open {WAIT:?} after connecting",
            connected - closed
        ));
    }
    if connect_errors > 0 {
        misses.push(format!("{connect_errors} sockets could not connect"));
    }
    let target = format!(
        "each of {sockets} sockets sending an unfinished {} KiB head answered 431 (or at least \
         closed) and closed by the server within {WAIT:?}",
        HEAD_BYTES / 1024
    );
    Check::new(
        AbuseCheck::BigHeads,
        target,
        AnyFigures::BigHeads(figures),
        misses,
    )
}

/// A valid request line and host, then header lines past [`HEAD_BYTES`], without the blank line
/// that would end the head.
fn big_head(addr: SocketAddr) -> Vec<u8> {
    let mut head = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n").into_bytes();
    let filler = "a".repeat(100);
    let mut line = 0;
    while head.len() < HEAD_BYTES {
        head.extend_from_slice(format!("X-Filler-{line:05}: {filler}\r\n").as_bytes());
        line += 1;
    }
    head
}

async fn big_head_socket(addr: SocketAddr, head: Vec<u8>) -> Result<End, String> {
    let stream = http::connect(addr, CONNECT_TIMEOUT).await?;
    let opened = Instant::now();
    let deadline = opened + WAIT;
    let (mut reader, mut writer) = stream.into_split();
    // The server is expected to stop reading (and close) part-way, so the write may never finish
    // or may fail; only what comes back is judged.
    let writing = tokio::spawn(async move {
        let _ = tokio::time::timeout_at(deadline, writer.write_all(&head)).await;
        writer
    });
    let reply = http::read_reply(&mut reader, deadline).await;
    let closed = match reply.end {
        http::End::Closed | http::End::Failed(_) => true,
        http::End::TimedOut => false,
        http::End::Head | http::End::NotHttp1 => http::closed_by(&mut reader, deadline).await,
    };
    let closed_after = closed.then(|| opened.elapsed());
    // Held until here, so that the socket is not half-closed by us before the server decides.
    drop(writing.await);
    Ok(End {
        answer: reply.describe(),
        closed_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_is_big_and_never_ends() {
        let head = big_head("127.0.0.1:8080".parse().unwrap());
        assert!(head.len() >= HEAD_BYTES);
        assert!(head.starts_with(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"));
        assert!(head.ends_with(b"\r\n"));
        assert!(!head.windows(4).any(|window| window == b"\r\n\r\n"));
    }
}
