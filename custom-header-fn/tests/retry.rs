//! The optimistic-concurrency path moto cannot exercise (it ignores ETags): a mocked CloudFront
//! answers the first write with PreconditionFailed.

use std::time::Duration;

use aws_sdk_cloudfront::Client;
use aws_sdk_cloudfront::operation::get_distribution_config::GetDistributionConfigOutput;
use aws_sdk_cloudfront::operation::update_distribution::{
    UpdateDistributionError, UpdateDistributionOutput,
};
use aws_sdk_cloudfront::types::error::PreconditionFailed;
use aws_sdk_cloudfront::types::{DistributionConfig, Origin, Origins};
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use custom_header_fn::distribution::Retry;
use serde_json::json;

const FAST: Retry = Retry {
    attempts: 3,
    first_backoff: Duration::from_millis(1),
};

fn config() -> DistributionConfig {
    let origin = Origin::builder()
        .id("alb")
        .domain_name("alb.example.com")
        .build()
        .unwrap();
    DistributionConfig::builder()
        .caller_reference("ref")
        .comment("c")
        .enabled(true)
        .origins(
            Origins::builder()
                .quantity(1)
                .items(origin)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

fn event() -> serde_json::Value {
    json!({"DistributionId": "E1", "OriginId": "alb", "HeaderName": "X-Origin-Verify",
           "tf": {"action": "create", "prev_input": null}})
}

#[tokio::test]
async fn a_conflicting_write_is_read_again_and_retried_with_the_new_etag() {
    let reads = mock!(Client::get_distribution_config)
        .sequence()
        .output(|| {
            GetDistributionConfigOutput::builder()
                .distribution_config(config())
                .e_tag("ETAG-1")
                .build()
        })
        .output(|| {
            GetDistributionConfigOutput::builder()
                .distribution_config(config())
                .e_tag("ETAG-2")
                .build()
        })
        .build();
    let stale = mock!(Client::update_distribution)
        .match_requests(|request| request.if_match() == Some("ETAG-1"))
        .then_error(|| {
            UpdateDistributionError::PreconditionFailed(PreconditionFailed::builder().build())
        });
    let fresh = mock!(Client::update_distribution)
        .match_requests(|request| {
            let origin = &request
                .distribution_config()
                .unwrap()
                .origins
                .as_ref()
                .unwrap()
                .items[0];
            request.if_match() == Some("ETAG-2")
                && origin.custom_headers.as_ref().unwrap().quantity == 1
        })
        .then_output(|| UpdateDistributionOutput::builder().build());
    let client = mock_client!(
        aws_sdk_cloudfront,
        RuleMode::MatchAny,
        [&reads, &stale, &fresh]
    );

    let output = custom_header_fn::handle_with(&client, event(), FAST)
        .await
        .unwrap();
    assert_eq!(output["HeaderValue"].as_str().unwrap().len(), 64);
    assert_eq!(reads.num_calls(), 2, "read again after the conflict");
    assert_eq!((stale.num_calls(), fresh.num_calls()), (1, 1));
}

#[tokio::test]
async fn a_distribution_that_keeps_changing_fails_with_a_clear_message() {
    let reads = mock!(Client::get_distribution_config).then_output(|| {
        GetDistributionConfigOutput::builder()
            .distribution_config(config())
            .e_tag("E")
            .build()
    });
    let conflicts = mock!(Client::update_distribution).then_error(|| {
        UpdateDistributionError::PreconditionFailed(PreconditionFailed::builder().build())
    });
    let client = mock_client!(aws_sdk_cloudfront, RuleMode::MatchAny, [&reads, &conflicts]);

    let err = custom_header_fn::handle_with(&client, event(), FAST)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("kept changing") && err.contains("3 attempts"),
        "{err}"
    );
    assert_eq!(conflicts.num_calls(), 3);
}
