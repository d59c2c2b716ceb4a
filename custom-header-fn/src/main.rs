//! The Lambda entry point: set up logging and the AWS clients once, then serve events.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    custom_header_fn::init_logging();
    let clients = custom_header_fn::clients_from_env().await;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        custom_header_fn::handle(&clients, event.payload, event.context.deadline())
    }))
    .await
}
