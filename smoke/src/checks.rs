//! The four checks, in order: each prints one line; the first failure says what to look at and
//! ends the run with exit code 1.

use std::process::ExitCode;
use std::time::{Duration, Instant};

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

/// Runs the checks in order and returns the process exit code.
pub async fn run_all(targets: &Targets, limit: Duration) -> ExitCode {
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
        "health through CloudFront",
        &targets.health,
        health(&http, &targets.health).await,
    ) && report(
        3,
        "load balancer bypass is closed",
        &targets.alb,
        alb_refuses(&http, &targets.alb).await,
    ) && report(
        4,
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
        let (mut socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|err| fail(format!("cannot connect: {err}"), LOOK))?;
        let greeting = next_text(&mut socket).await?;
        if greeting != r#"{"connection":"ok"}"# {
            return Err(fail(
                format!("expected the greeting, got {greeting:?}"),
                LOOK,
            ));
        }
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

async fn next_text(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Result<String, Failure> {
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
/// (CloudFront's prefix list only) usually lets nothing through at all, which closes the bypass too.
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
            "not reachable from here ({}): the security group admits only CloudFront",
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
