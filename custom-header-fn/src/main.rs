//! The Lambda entry point: set up logging and the CloudFront client once, then serve events.

use aws_config::BehaviorVersion;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    custom_header_fn::init_logging();
    let config = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let client = aws_sdk_cloudfront::Client::new(&config);
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        custom_header_fn::handle(&client, event.payload)
    }))
    .await
}
