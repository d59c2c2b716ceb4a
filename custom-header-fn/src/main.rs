//! The Lambda entry point: set up logging and the CloudFront client once, then serve events.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    custom_header_fn::init_logging();
    let client = custom_header_fn::client_from_env().await;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        custom_header_fn::handle(&client, event.payload)
    }))
    .await
}
