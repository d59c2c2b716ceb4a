//! What moto cannot show: a write refused because someone else changed the distribution (moto
//! ignores `IfMatch`), a distribution still deploying (moto reports Deployed from its first read
//! on, even right after an update), and the absence of a call. Mocked SDK clients count the calls.

use std::sync::{Arc, Mutex};

use aws_sdk_cloudfront::config::{BehaviorVersion, Region};
use aws_sdk_cloudfront::operation::get_distribution::GetDistributionOutput;
use aws_sdk_cloudfront::operation::get_distribution_config::GetDistributionConfigOutput;
use aws_sdk_cloudfront::operation::update_distribution::{
    UpdateDistributionError, UpdateDistributionOutput,
};
use aws_sdk_cloudfront::primitives::DateTime;
use aws_sdk_cloudfront::types::Distribution;
use aws_sdk_cloudfront::types::error::PreconditionFailed;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput;
use aws_sdk_secretsmanager::operation::put_secret_value::PutSecretValueOutput;
use aws_smithy_mocks::{
    MockResponse, MockResponseInterceptor, Rule, RuleMode, create_mock_http_client, mock,
};
use custom_header_fn::{Clients, handle_with};
use serde_json::{Value, json};

use crate::support::{
    FAST_RETRY, distribution_config, headers, owned, rotation, terraform, test_credentials,
};

type CloudFront = aws_sdk_cloudfront::Client;
type Secrets = aws_sdk_secretsmanager::Client;

const OLD: &str = "0123456789abcdefghijklmnopqrstuvwxyz0123";
const NEW: &str = "9876543210zyxwvutsrqponmlkjihgfedcba9876";
const SECRET_ID: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:origin-AbCdEf";

fn interceptor(rules: &[&Rule]) -> MockResponseInterceptor {
    rules.iter().fold(
        MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny),
        |interceptor, rule| interceptor.with_rule(rule),
    )
}

/// Clients that answer only what the rules say; any other call fails.
fn clients(cloudfront: &[&Rule], secrets: &[&Rule]) -> Clients {
    let region = Region::from_static("us-east-1");
    Clients {
        cloudfront: CloudFront::from_conf(
            aws_sdk_cloudfront::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(region.clone())
                .credentials_provider(test_credentials())
                .http_client(create_mock_http_client())
                .interceptor(interceptor(cloudfront))
                .build(),
        ),
        secrets: Secrets::from_conf(
            aws_sdk_secretsmanager::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(region)
                .credentials_provider(test_credentials())
                .http_client(create_mock_http_client())
                .interceptor(interceptor(secrets))
                .build(),
        ),
    }
}

/// GetDistributionConfig answering with the config and a new ETag on every read ("E1", "E2", …),
/// as CloudFront does after each change.
fn reads(headers: &'static [(&'static str, &'static str)]) -> Rule {
    let served = Mutex::new(0);
    mock!(CloudFront::get_distribution_config).then_compute_output(move |_| {
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
    let rule = mock!(CloudFront::update_distribution).then_compute_response(move |request| {
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

/// GetDistribution: the status and the alb origin's headers.
fn distribution(status: &'static str, headers: &'static [(&'static str, &'static str)]) -> Rule {
    mock!(CloudFront::get_distribution).then_output(move || {
        let distribution = Distribution::builder()
            .id("E1")
            .arn("arn:aws:cloudfront::123456789012:distribution/E1")
            .status(status)
            .last_modified_time(DateTime::from_secs(0))
            .in_progress_invalidation_batches(0)
            .domain_name("d111111abcdef8.cloudfront.net")
            .distribution_config(distribution_config(&[("alb", headers)]))
            .build()
            .expect("a distribution");
        GetDistributionOutput::builder()
            .distribution(distribution)
            .e_tag("E1")
            .build()
    })
}

/// GetSecretValue answering with `document` as version "v1".
fn document(document: Value) -> Rule {
    mock!(Secrets::get_secret_value).then_output(move || {
        GetSecretValueOutput::builder()
            .secret_string(document.to_string())
            .version_id("v1")
            .version_stages("AWSCURRENT")
            .build()
    })
}

/// PutSecretValue accepting every document, and the documents it was sent.
fn stores() -> (Rule, Arc<Mutex<Vec<Value>>>) {
    let stored = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&stored);
    let rule = mock!(Secrets::put_secret_value).then_compute_output(move |request| {
        let text = request.secret_string().expect("a string value");
        seen.lock()
            .unwrap()
            .push(serde_json::from_str(text).expect("JSON"));
        PutSecretValueOutput::builder()
            .version_id(request.client_request_token().expect("a token"))
            .build()
    });
    (rule, stored)
}

fn promote(origin_id: &str) -> Value {
    rotation("promote", SECRET_ID, "E1", origin_id, "X-Origin-Verify")
}

fn prepared() -> Rule {
    document(json!({"current": OLD, "pending": NEW}))
}

#[tokio::test]
async fn a_conflicting_write_reads_again_and_retries_with_the_new_etag() {
    let (get, (update, written)) = (
        reads(&[("X-Other", "keep"), ("X-Origin-Verify", OLD)]),
        writes(2),
    );
    let (secret, (put, stored)) = (prepared(), stores());
    let clients = clients(&[&get, &update], &[&secret, &put]);
    let answer = handle_with(&clients, promote("alb"), FAST_RETRY)
        .await
        .expect("succeeds on the third try");
    assert_eq!(
        answer,
        json!({"Phase": "promote", "Changed": true, "AcceptedValues": 2})
    );
    assert_eq!((get.num_calls(), update.num_calls()), (3, 3));
    let expected = owned(&[("X-Other", "keep"), ("X-Origin-Verify", NEW)]);
    assert_eq!(
        *written.lock().unwrap(),
        [("E1", &expected), ("E2", &expected), ("E3", &expected)]
            .map(|(etag, headers)| (etag.to_owned(), headers.clone())),
        "each try read the config again and wrote the pending value with the ETag it read"
    );
    assert_eq!(
        *stored.lock().unwrap(),
        [json!({"current": NEW, "previous": OLD})],
        "the document after CloudFront"
    );
}

#[tokio::test]
async fn a_distribution_that_keeps_changing_gives_up_after_five_tries_and_keeps_the_document() {
    let (get, (update, _)) = (reads(&[]), writes(usize::MAX));
    let (secret, (put, _)) = (prepared(), stores());
    let clients = clients(&[&get, &update], &[&secret, &put]);
    let err = handle_with(&clients, promote("alb"), FAST_RETRY)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "distribution E1 kept changing while this function tried to update it (5 attempts); \
         try again once other changes to it have finished"
    );
    assert_eq!((get.num_calls(), update.num_calls()), (5, 5));
    assert_eq!(put.num_calls(), 0, "the document waits for CloudFront");
}

#[tokio::test]
async fn a_promote_run_again_after_the_document_write_failed_only_writes_the_document() {
    let (get, (update, _)) = (
        reads(&[("X-Other", "keep"), ("X-Origin-Verify", NEW)]),
        writes(0),
    );
    let (secret, (put, stored)) = (prepared(), stores());
    let clients = clients(&[&get, &update], &[&secret, &put]);
    handle_with(&clients, promote("alb"), FAST_RETRY)
        .await
        .unwrap();
    assert_eq!((get.num_calls(), update.num_calls()), (1, 0));
    assert_eq!(
        *stored.lock().unwrap(),
        [json!({"current": NEW, "previous": OLD})]
    );
}

#[tokio::test]
async fn bad_input_makes_no_write() {
    let (get, (update, _)) = (reads(&[]), writes(0));
    let (secret, (put, _)) = (prepared(), stores());
    let clients = clients(&[&get, &update], &[&secret, &put]);
    let err = handle_with(&clients, promote("missing"), FAST_RETRY)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(r#"its origins are: "alb""#),
        "{err}"
    );
    assert_eq!((update.num_calls(), put.num_calls()), (0, 0));
}

#[tokio::test]
async fn retire_waits_until_cloudfront_has_deployed_the_new_value() {
    let (secret, (put, stored)) = (document(json!({"current": NEW, "previous": OLD})), stores());
    let retire = rotation("retire", SECRET_ID, "E1", "alb", "X-Origin-Verify");

    let deploying = distribution("InProgress", &[("X-Origin-Verify", NEW)]);
    let clients_deploying = clients(&[&deploying], &[&secret, &put]);
    let err = handle_with(&clients_deploying, retire.clone(), FAST_RETRY)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "CloudFront is still deploying the new header (status InProgress): wait for \
         `aws cloudfront wait distribution-deployed --id E1` and retire again"
    );
    assert_eq!(put.num_calls(), 0);

    let deployed = distribution("Deployed", &[("X-Origin-Verify", NEW)]);
    let clients_deployed = clients(&[&deployed], &[&secret, &put]);
    let answer = handle_with(&clients_deployed, retire, FAST_RETRY)
        .await
        .unwrap();
    assert_eq!(
        answer,
        json!({"Phase": "retire", "Changed": true, "AcceptedValues": 1})
    );
    assert_eq!(*stored.lock().unwrap(), [json!({"current": NEW})]);
}

#[tokio::test]
async fn terraform_delete_calls_nothing() {
    // No rule at all: any request would fail.
    let clients = clients(&[], &[]);
    let answer = handle_with(&clients, terraform(SECRET_ID, "delete"), FAST_RETRY)
        .await
        .expect("nothing to undo");
    assert_eq!(answer, json!({"SecretId": SECRET_ID, "VersionId": null}));
}
