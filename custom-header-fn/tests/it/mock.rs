//! What moto cannot show: a write refused because someone else changed the distribution
//! (moto ignores `IfMatch`), and the absence of a write. A mocked SDK client counts the calls.

use std::sync::{Arc, Mutex};

use aws_sdk_cloudfront::Client;
use aws_sdk_cloudfront::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_cloudfront::operation::get_distribution_config::GetDistributionConfigOutput;
use aws_sdk_cloudfront::operation::update_distribution::{
    UpdateDistributionError, UpdateDistributionOutput,
};
use aws_sdk_cloudfront::types::error::PreconditionFailed;
use aws_smithy_mocks::{
    MockResponse, MockResponseInterceptor, Rule, RuleMode, create_mock_http_client, mock,
};
use custom_header_fn::handle_with;

use crate::support::{FAST_RETRY, distribution_config, headers, input, invocation, owned};

const SECRET: &str = "0123456789abcdefghijklmnopqrstuvwxyz0123";

fn client(rules: &[&Rule]) -> Client {
    let interceptor = rules.iter().fold(
        MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny),
        |interceptor, rule| interceptor.with_rule(rule),
    );
    let config = aws_sdk_cloudfront::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::from_static("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .http_client(create_mock_http_client())
        .interceptor(interceptor)
        .build();
    Client::from_conf(config)
}

/// GetDistributionConfig answering with the config and a new ETag on every read ("E1", "E2", …),
/// as CloudFront does after each change.
fn reads(headers: &'static [(&'static str, &'static str)]) -> Rule {
    let served = Mutex::new(0);
    mock!(Client::get_distribution_config).then_compute_output(move |_| {
        let mut served = served.lock().unwrap();
        *served += 1;
        GetDistributionConfigOutput::builder()
            .distribution_config(distribution_config(&[("alb", headers)]))
            .e_tag(format!("E{served}"))
            .build()
    })
}

/// A write as the mock saw it: its `IfMatch` and the origin's custom headers in its config.
type Written = (String, Vec<(String, String)>);

/// UpdateDistribution refusing the first `conflicts` writes with PreconditionFailed, and what
/// each write sent.
fn writes(conflicts: usize) -> (Rule, Arc<Mutex<Vec<Written>>>) {
    let written = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&written);
    let rule = mock!(Client::update_distribution).then_compute_response(move |request| {
        let mut seen = seen.lock().unwrap();
        let config = request.distribution_config().expect("a config");
        seen.push((
            request.if_match().unwrap_or_default().to_owned(),
            headers(config, "alb"),
        ));
        if seen.len() <= conflicts {
            MockResponse::Error(UpdateDistributionError::PreconditionFailed(
                PreconditionFailed::builder()
                    .message("The request failed because it didn't meet the preconditions in one or more request-header fields.")
                    .build(),
            ))
        } else {
            MockResponse::Output(UpdateDistributionOutput::builder().e_tag("done").build())
        }
    });
    (rule, written)
}

fn create(origin_id: &str) -> serde_json::Value {
    invocation(
        &input("E1", origin_id, "X-Origin-Verify", "1"),
        "create",
        None,
    )
}

#[tokio::test]
async fn a_conflicting_write_reads_again_and_retries_with_the_new_etag() {
    let (get, (update, written)) = (reads(&[("X-Other", "keep")]), writes(2));
    let client = client(&[&get, &update]);
    let answer = handle_with(&client, create("alb"), FAST_RETRY)
        .await
        .expect("succeeds on the third try");
    let secret = answer["HeaderValue"].as_str().expect("a value");
    assert_eq!((get.num_calls(), update.num_calls()), (3, 3));
    let expected = owned(&[("X-Other", "keep"), ("X-Origin-Verify", secret)]);
    assert_eq!(
        *written.lock().unwrap(),
        [("E1", &expected), ("E2", &expected), ("E3", &expected)]
            .map(|(etag, headers)| (etag.to_owned(), headers.clone())),
        "each try read the config again and wrote the same secret with the ETag it read"
    );
}

#[tokio::test]
async fn a_distribution_that_keeps_changing_gives_up_after_five_tries() {
    let (get, (update, _)) = (reads(&[]), writes(usize::MAX));
    let client = client(&[&get, &update]);
    let err = handle_with(&client, create("alb"), FAST_RETRY)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "distribution E1 kept changing while this function tried to update it (5 attempts); \
         run the apply again once other changes to it have finished"
    );
    assert_eq!((get.num_calls(), update.num_calls()), (5, 5));
}

#[tokio::test]
async fn a_header_already_in_place_is_not_written_again() {
    let (get, (update, _)) = (
        reads(&[("X-Other", "keep"), ("X-Origin-Verify", SECRET)]),
        writes(0),
    );
    let client = client(&[&get, &update]);
    let answer = handle_with(&client, create("alb"), FAST_RETRY)
        .await
        .unwrap();
    assert_eq!(
        answer["HeaderValue"], SECRET,
        "the value on the origin is kept"
    );
    assert!(answer["PreviousHeaderValue"].is_null());
    let v1 = input("E1", "alb", "X-Origin-Verify", "1");
    handle_with(&client, invocation(&v1, "update", Some(&v1)), FAST_RETRY)
        .await
        .unwrap();
    assert_eq!((get.num_calls(), update.num_calls()), (2, 0));
}

#[tokio::test]
async fn bad_input_makes_no_write() {
    let (get, (update, _)) = (reads(&[]), writes(0));
    let client = client(&[&get, &update]);
    let err = handle_with(&client, create("missing"), FAST_RETRY)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(r#"its origins are: "alb""#),
        "{err}"
    );
    assert_eq!(update.num_calls(), 0);
}
