//! `smoke`: verifies a live deployment from the outside, one line per check, and stops at the first
//! failure with what to look at. `make smoke` runs it on the Terraform outputs.

mod checks;
mod targets;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// Where to look; anything not given comes from `terraform output` in `--terraform-dir`.
#[derive(Debug, Parser)]
#[command(
    name = "smoke",
    version,
    about = "Verify a deployed websocket-service from the outside."
)]
struct Args {
    /// The WebSocket URL of the deployment, e.g. wss://d1234.cloudfront.net/wss (default: the
    /// Terraform output websocket_url).
    #[arg(long)]
    url: Option<String>,

    /// The load balancer's DNS name, or its http:// or https:// URL (default: the Terraform output
    /// load_balancer_url).
    #[arg(long)]
    alb: Option<String>,

    /// The plain-HTTP URL that must be refused or redirected (default: http:// on the host of --url).
    #[arg(long)]
    plain_url: Option<String>,

    /// The Terraform root module whose outputs name the deployment.
    #[arg(long, default_value = "terraform")]
    terraform_dir: std::path::PathBuf,

    /// Time limit of each check.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,

    /// WebSockets the broadcast check opens at once, so that the load balancer spreads them over
    /// every task; the fewer, the likelier they all land on one task and hide a missing backplane.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u16).range(checks::SENDERS as i64..=1000))]
    connections: u16,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    // One TLS provider for reqwest and the WebSocket client alike.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let targets =
        match targets::Targets::resolve(args.url, args.alb, args.plain_url, &args.terraform_dir) {
            Ok(targets) => targets,
            Err(message) => {
                eprintln!("smoke: {message}");
                return ExitCode::from(2);
            }
        };
    checks::run_all(&targets, args.timeout, args.connections.into()).await
}
