//! `websocket-server healthcheck`: the container health check, built into the binary so that the
//! runtime image needs no curl. Also a minimal HTTP probe the tests reuse.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::Config;

/// How long the health check may take before it counts as failed.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Sends `METHOD path` over HTTP/1.1 and returns the response's status code and body.
pub async fn http_request(addr: SocketAddr, method: &str, path: &str) -> io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response);
    let invalid = || io::Error::new(io::ErrorKind::InvalidData, "not an HTTP response");
    let status = response
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(invalid)?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .unwrap_or_default();
    Ok((status, body.to_owned()))
}

/// Probes `/health` on the configured port; exit 0 only on 200 within `TIMEOUT`.
pub async fn run(config: &Config) -> ExitCode {
    // A server listening on every address is reachable on loopback.
    let host = if config.host.is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        config.host
    };
    if config.port == 0 {
        return fail(
            "PORT is 0 (a port the kernel picks): the health check needs the port the server listens on",
        );
    }
    let addr = SocketAddr::new(host, config.port);
    match tokio::time::timeout(TIMEOUT, http_request(addr, "GET", "/health")).await {
        Ok(Ok((200, _))) => ExitCode::SUCCESS,
        Ok(Ok((status, _))) => fail(&format!("GET http://{addr}/health answered {status}")),
        Ok(Err(err)) => fail(&format!("GET http://{addr}/health failed: {err}")),
        Err(_) => fail(&format!(
            "GET http://{addr}/health did not answer within {TIMEOUT:?}"
        )),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("unhealthy: {message}");
    ExitCode::FAILURE
}
