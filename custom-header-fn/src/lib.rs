//! custom-header-fn: puts the secret origin header on the CloudFront distribution, so that the
//! load balancer, which refuses requests without it, can only be reached through CloudFront.
//!
//! The Rust successor of the replaced stack's CloudFormation custom resource. `main.rs` only starts
//! the Lambda runtime; [`handle`] is the whole function, a plain async function over the event,
//! testable without Lambda.
//!
//! - [`event`]: the two event shapes and their answers.
//! - [`terraform`]: Terraform's CRUD invocation (one header, generated or given, rotation).
//! - [`custom_resource`]: the CloudFormation custom resource of the replaced stack.
//! - [`change`]: the pure edit of a distribution's origin headers, under CloudFront's rules.
//! - [`secret`]: generating and checking the header value.
//! - [`distribution`]: read, decide, write with `IfMatch`, retry on conflicts.

pub mod change;
pub mod custom_resource;
pub mod distribution;
pub mod event;
pub mod secret;
pub mod terraform;

use aws_config::BehaviorVersion;
use aws_config::meta::region::RegionProviderChain;
use aws_sdk_cloudfront::Client;
use aws_sdk_cloudfront::config::Region;
use lambda_runtime::Diagnostic;
use serde_json::Value;

pub use distribution::{RETRY, Retry};
use event::Event;

/// What the function fails with; its message is what Terraform or CloudFormation shows the user,
/// so it says what to fix and never contains a header value.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Handles one event of either shape. A failure reaches Terraform or CloudFormation as
/// `{"errorType": "OriginHeaderError", "errorMessage": …}` rather than under a Rust type name.
pub async fn handle(client: &Client, payload: Value) -> Result<Value, Diagnostic> {
    handle_with(client, payload, RETRY)
        .await
        .map_err(|err| Diagnostic {
            error_type: "OriginHeaderError".to_owned(),
            error_message: err.to_string(),
        })
}

/// [`handle`] with a chosen retry policy, so that tests need not wait out production backoff.
pub async fn handle_with(client: &Client, payload: Value, retry: Retry) -> Result<Value, Error> {
    Ok(match event::parse(payload)? {
        Event::Terraform(event) => {
            serde_json::to_value(terraform::handle(client, &event, retry).await?)?
        }
        Event::CustomResource(event) => {
            serde_json::to_value(custom_resource::handle(client, &event, retry).await?)?
        }
    })
}

/// The CloudFront client, configured from the environment like any AWS SDK (so `AWS_ENDPOINT_URL`
/// and `AWS_ENDPOINT_URL_CLOUDFRONT` are honoured). CloudFront is global and signs with us-east-1,
/// so that is the region when the environment names none (Lambda always does).
pub async fn client_from_env() -> Client {
    let region = RegionProviderChain::default_provider().or_else(Region::from_static("us-east-1"));
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .load()
        .await;
    Client::new(&config)
}

/// JSON log lines on standard output (CloudWatch Logs), at info level. `RUST_LOG` is deliberately
/// not read: at trace level the SDK logs request and response bodies, which carry the secret.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_max_level(tracing::Level::INFO)
        .without_time()
        .init();
}
