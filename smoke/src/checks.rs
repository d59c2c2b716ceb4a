//! The five checks, in order: each prints one line; the first failure says what to look at and
//! ends the run with exit code 1.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use futures_util::future::{join_all, try_join_all};
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use tokio_tungstenite::tungstenite::Message;

use crate::targets::Targets;

/// A check's verdict: what was seen, or what failed and where to look.
type Verdict = Result<String, Failure>;

struct Failure {
    what: String,
    look_at: &'static str,
}

fn fail(what: impl Into<String>, look_at: &'static str) -> Failure {
    Failure {
        what: what.into(),
        look_at,
    }
}

/// Runs the checks in order and returns the process exit code. `connections` is how many
/// WebSockets check 2 opens at once.
pub async fn run_all(targets: &Targets, limit: Duration, connections: usize) -> ExitCode {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(limit)
        .build()
        .expect("an HTTP client");
    let passed = report(
        1,
        "WebSocket through CloudFront",
        &targets.websocket,
        websocket(&targets.websocket, limit).await,
    ) && report(
        2,
        "broadcast reaches every task",
        &targets.websocket,
        every_task(&targets.websocket, limit, connections).await,
    ) && report(
        3,
        "health through CloudFront",
        &targets.health,
        health(&http, &targets.health).await,
    ) && report(
        4,
        "load balancer bypass is closed",
        &targets.alb,
        alb_refuses(&http, &targets.alb).await,
    ) && report(
        5,
        "CloudFront serves HTTPS only",
        &targets.plain,
        https_only(&http, &targets.plain).await,
    );
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Prints a check's line (and where to look, on failure); true if it passed.
fn report(number: u8, title: &str, address: &str, verdict: Verdict) -> bool {
    match verdict {
        Ok(seen) => {
            println!("ok    {number}. {title}: {address}: {seen}");
            true
        }
        Err(failure) => {
            println!("FAIL  {number}. {title}: {address}: {}", failure.what);
            println!("      look at: {}", failure.look_at);
            false
        }
    }
}

/// Connects, expects the greeting, sends a JSON message with a random marker and waits for it to
/// come back as a broadcast (other clients' broadcasts may come first).
async fn websocket(url: &str, limit: Duration) -> Verdict {
    const LOOK: &str = "the CloudFront distribution (origin, origin request policy forwarding the upgrade headers), \
        the listener rule's secret header, and the ECS service's healthy targets";
    let started = Instant::now();
    let attempt = async {
        let mut socket = open(url, LOOK).await?;
        let marker = format!("{:016x}", rand::random::<u64>());
        let sent = format!(r#"{{"smoke":"{marker}"}}"#);
        socket
            .send(Message::text(sent.clone()))
            .await
            .map_err(|err| fail(format!("cannot send: {err}"), LOOK))?;
        let expected = format!(r#"{{"message":{sent}}}"#);
        while next_text(&mut socket).await? != expected {}
        let _ = socket.close(None).await;
        Ok(format!(
            "greeting and broadcast round trip in {} ms",
            started.elapsed().as_millis()
        ))
    };
    tokio::time::timeout(limit, attempt)
        .await
        .unwrap_or_else(|_| Err(fail(format!("no answer within {limit:?}"), LOOK)))
}

/// Messages check 2 sends, each from a different connection.
pub const SENDERS: usize = 6;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects and expects the greeting; a failure to read it is [`next_text`]'s, as it is.
async fn open(url: &str, look: &'static str) -> Result<Socket, Failure> {
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|err| fail(format!("cannot connect: {err}"), look))?;
    let greeting = next_text(&mut socket).await?;
    if greeting != r#"{"connection":"ok"}"# {
        return Err(fail(
            format!("expected the greeting, got {greeting:?}"),
            look,
        ));
    }
    Ok(socket)
}

/// Opens `connections` WebSockets at once, so that the load balancer spreads them over the tasks,
/// sends one message from each of [`SENDERS`] of them and waits until every connection has
/// received every message. Check 1 cannot see tasks that do not share a backplane: its one
/// connection gets its own message back from its own task. Here a client on task A misses what a
/// client on task B sent. With one task it passes, as it should: that deployment has no such bug.
async fn every_task(url: &str, limit: Duration, connections: usize) -> Verdict {
    const LOOK: &str = "the CloudFront distribution and the ECS service's healthy targets \
        (check 1 opened one connection; this one opens many at once, so also MAX_CONNECTIONS)";
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + limit;
    let opened = tokio::time::timeout_at(
        deadline,
        // The server joins a client to the broadcast before it greets it, so every message sent
        // once all greetings are in must reach every connection.
        try_join_all((0..connections).map(|index| async move {
            open(url, LOOK).await.map_err(|failure| {
                fail(format!("connection {}: {}", index + 1, failure.what), LOOK)
            })
        })),
    )
    .await;
    let mut sockets = match opened {
        Ok(result) => result?,
        Err(_) => {
            return Err(fail(
                format!("{connections} connections not all open and greeted within {limit:?}"),
                LOOK,
            ));
        }
    };

    // Each message carries a random nonce, so broadcasts of real clients (or of another smoke run)
    // are told apart; the server forwards a message exactly as written, so the envelope to expect
    // is known byte for byte.
    let sent: Vec<String> = (0..SENDERS.min(connections))
        .map(|_| {
            format!(
                r#"{{"smoke":"every-task","nonce":"{:016x}"}}"#,
                rand::random::<u64>()
            )
        })
        .collect();
    let expected: Vec<String> = sent
        .iter()
        .map(|message| format!(r#"{{"message":{message}}}"#))
        .collect();
    for (socket, message) in sockets.iter_mut().zip(&sent) {
        socket
            .send(Message::text(message.as_str()))
            .await
            .map_err(|err| fail(format!("cannot send: {err}"), LOOK))?;
    }

    // What each connection got, kept outside the readers so that it survives the time limit.
    let mut received = vec![vec![false; sent.len()]; connections];
    let each = sockets.iter_mut().zip(received.iter_mut()).enumerate();
    let readers = each.map(|(index, (socket, got))| {
        let expected = &expected;
        async move {
            while got.contains(&false) {
                let text = next_text(socket).await.map_err(|failure| Failure {
                    what: format!("connection {}: {}", index + 1, failure.what),
                    ..failure
                })?;
                if let Some(message) = expected.iter().position(|envelope| *envelope == text) {
                    got[message] = true;
                }
            }
            Ok::<_, Failure>(())
        }
    });
    if let Ok(result) = tokio::time::timeout_at(deadline, try_join_all(readers)).await {
        result?;
    }
    let elapsed = started.elapsed();
    // Closing is a courtesy to the server's logs; it must not hold the verdict up.
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        join_all(sockets.iter_mut().map(|socket| socket.close(None))),
    )
    .await;
    judge(&received, elapsed, limit)
}

/// The verdict of check 2 from what each connection received: `received[connection][message]`.
fn judge(received: &[Vec<bool>], elapsed: Duration, limit: Duration) -> Verdict {
    const NO_BACKPLANE: &str = "enable_redis_backplane = true in terraform.tfvars, or a single task \
        (desired_count = min_capacity = max_capacity = 1); if it is on, the tasks' backplane \
        warnings in their CloudWatch logs (\"cannot reach Redis\", \"cannot subscribe\", \
        \"backplane connection lost\")";
    const LOOK: &str = "the server's logs (CloudWatch log group of the ECS service): \
        websocket_messages_dropped_total says why messages were dropped";
    let connections = received.len();
    let sent = received.first().map_or(0, Vec::len);
    let got = |connection: &Vec<bool>| connection.iter().filter(|&&got| got).count();
    // A message counts as delivered if any connection got it.
    let delivered: Vec<bool> = (0..sent)
        .map(|message| received.iter().any(|connection| connection[message]))
        .collect();
    let reached = delivered.iter().filter(|&&got| got).count();
    if reached == 0 {
        return Err(fail(
            format!(
                "none of {connections} connections got any of the {sent} messages sent within {limit:?}"
            ),
            LOOK,
        ));
    }
    let missing: Vec<usize> = (0..connections)
        .filter(|&connection| received[connection] != delivered)
        .collect();
    if let Some(&worst) = missing
        .iter()
        .min_by_key(|&&connection| got(&received[connection]))
    {
        return Err(fail(
            format!(
                "{} of {connections} connections missed messages that other connections received \
                 (e.g. connection {} got {} of {sent}): the tasks do not share a backplane",
                missing.len(),
                worst + 1,
                got(&received[worst]),
            ),
            NO_BACKPLANE,
        ));
    }
    if reached < sent {
        return Err(fail(
            format!(
                "{} of the {sent} messages sent reached no connection, not even their sender's",
                sent - reached
            ),
            LOOK,
        ));
    }
    Ok(format!(
        "all {connections} connections got all {sent} messages in {} ms",
        elapsed.as_millis()
    ))
}

async fn next_text(socket: &mut Socket) -> Result<String, Failure> {
    const LOOK: &str = "the server's logs (CloudWatch log group of the ECS service)";
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text.to_string()),
            Some(Ok(Message::Close(frame))) => {
                return Err(fail(format!("closed by the server: {frame:?}"), LOOK));
            }
            Some(Ok(_)) => continue,
            Some(Err(err)) => return Err(fail(format!("connection failed: {err}"), LOOK)),
            None => return Err(fail("connection ended", LOOK)),
        }
    }
}

async fn health(http: &reqwest::Client, url: &str) -> Verdict {
    const LOOK: &str =
        "the ECS service's running tasks and target group health, and the CloudFront origin";
    let response = http
        .get(url)
        .send()
        .await
        .map_err(|err| fail(format!("{err}"), LOOK))?;
    match response.status() {
        StatusCode::OK => Ok("200".to_owned()),
        status => Err(fail(format!("answered {status}, expected 200"), LOOK)),
    }
}

/// Without the secret header the load balancer must answer 403. From outside AWS its security group
/// (CloudFront's prefix list only) usually lets nothing through at all, and an internal one (behind
/// a VPC origin) has no public address: either closes the bypass too.
async fn alb_refuses(http: &reqwest::Client, url: &str) -> Verdict {
    const LOOK: &str = "the ALB listener: its default action must be a fixed 403 and only the rule \
        matching the secret header may forward";
    match http.get(url).send().await {
        Ok(response) if response.status() == StatusCode::FORBIDDEN => {
            Ok("403 without the secret header".to_owned())
        }
        Ok(response) => Err(fail(
            format!("answered {} without the secret header", response.status()),
            LOOK,
        )),
        Err(err) if err.is_connect() || err.is_timeout() => Ok(format!(
            "not reachable from here ({}): only CloudFront may connect",
            if err.is_timeout() {
                "timed out"
            } else {
                "refused"
            }
        )),
        Err(err) => Err(fail(format!("{err}"), LOOK)),
    }
}

async fn https_only(http: &reqwest::Client, url: &str) -> Verdict {
    const LOOK: &str =
        "the CloudFront default cache behavior's viewer protocol policy (https-only)";
    let response = http
        .get(url)
        .send()
        .await
        .map_err(|err| fail(format!("{err}"), LOOK))?;
    let status = response.status();
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    match status {
        StatusCode::FORBIDDEN => Ok("403 over plain HTTP".to_owned()),
        _ if status.is_redirection() && location.starts_with("https://") => {
            Ok(format!("{} redirect to {location}", status.as_u16()))
        }
        _ => Err(fail(format!("answered {status} over plain HTTP"), LOOK)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIME: Duration = Duration::from_millis(120);

    /// `received[connection][message]` from the messages each connection got.
    fn received(got: &[&[usize]], sent: usize) -> Vec<Vec<bool>> {
        got.iter()
            .map(|messages| (0..sent).map(|m| messages.contains(&m)).collect())
            .collect()
    }

    #[test]
    fn every_connection_with_every_message_passes() {
        let all: &[usize] = &[0, 1, 2];
        let seen = judge(&received(&[all, all, all, all], 3), TIME, TIME).ok();
        assert_eq!(
            seen.as_deref(),
            Some("all 4 connections got all 3 messages in 120 ms")
        );
    }

    #[test]
    fn connections_that_got_only_their_tasks_messages_name_the_backplane() {
        // Two tasks without a backplane: messages 0 and 2 were sent on one, 1 on the other.
        let (a, b): (&[usize], &[usize]) = (&[0, 2], &[1]);
        let failure = judge(&received(&[a, b, a, b, b], 3), TIME, TIME).unwrap_err();
        assert_eq!(
            failure.what,
            "5 of 5 connections missed messages that other connections received \
             (e.g. connection 2 got 1 of 3): \
             the tasks do not share a backplane"
        );
        assert!(failure.look_at.contains("enable_redis_backplane"));
    }

    #[test]
    fn only_the_connections_that_missed_are_counted() {
        let (all, some): (&[usize], &[usize]) = (&[0, 1, 2], &[0]);
        let failure = judge(&received(&[all, all, some, all], 3), TIME, TIME).unwrap_err();
        assert!(
            failure
                .what
                .starts_with("1 of 4 connections missed messages that other connections received (e.g. connection 3 got 1 of 3)"),
            "{}",
            failure.what
        );
    }

    #[test]
    fn nothing_received_at_all_is_not_blamed_on_the_backplane() {
        let none: &[usize] = &[];
        let failure = judge(&received(&[none, none], 3), TIME, TIME).unwrap_err();
        assert_eq!(
            failure.what,
            "none of 2 connections got any of the 3 messages sent within 120ms"
        );
        assert!(!failure.look_at.contains("backplane"));
    }

    #[test]
    fn a_message_nobody_got_is_reported_as_lost() {
        let most: &[usize] = &[0, 2];
        let failure = judge(&received(&[most, most], 3), TIME, TIME).unwrap_err();
        assert_eq!(
            failure.what,
            "1 of the 3 messages sent reached no connection, not even their sender's"
        );
    }
}
