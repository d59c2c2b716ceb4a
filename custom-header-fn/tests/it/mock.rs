//! What moto cannot show: a write refused because someone else changed the distribution (moto
//! ignores `IfMatch`), a distribution still deploying (moto reports Deployed from its first read
//! on, even right after an update), requests refused while IAM propagates (moto allows them all),
//! and the absence of a call. Mocked SDK clients count the calls.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_cloudfront::config::{BehaviorVersion, Region};
use aws_sdk_cloudfront::operation::get_distribution::GetDistributionOutput;
use aws_sdk_cloudfront::operation::get_distribution_config::{
    GetDistributionConfigError, GetDistributionConfigOutput,
};
use aws_sdk_cloudfront::operation::update_distribution::{
    UpdateDistributionError, UpdateDistributionOutput,
};
use aws_sdk_cloudfront::primitives::DateTime;
use aws_sdk_cloudfront::types::Distribution;
use aws_sdk_cloudfront::types::error::{AccessDenied, PreconditionFailed};
use aws_sdk_secretsmanager::error::ErrorMetadata;
use aws_sdk_secretsmanager::operation::get_secret_value::{
    GetSecretValueError, GetSecretValueOutput,
};
use aws_sdk_secretsmanager::operation::put_secret_value::{
    PutSecretValueError, PutSecretValueOutput,
};
use aws_sdk_secretsmanager::types::error::ResourceNotFoundException;
use aws_smithy_mocks::{
    MockResponse, MockResponseInterceptor, Rule, RuleMode, create_mock_http_client, mock,
};
use custom_header_fn::{Clients, Propagation, Retry, handle_with};
use serde_json::{Value, json};

use crate::support::{
    FAST_RETRY, assert_shows_none, distribution_config, headers, legacy_delete, legacy_input,
    legacy_update, owned, rotation, terraform, test_credentials,
};

type CloudFront = aws_sdk_cloudfront::Client;
type Secrets = aws_sdk_secretsmanager::Client;

const OLD: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const NEW: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
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

#[tokio::test]
async fn terraform_delete_of_the_previous_versions_input_calls_nothing() {
    // What `terraform destroy` sends for a deployment of the previous version: its input, which
    // this version refuses for a create or an update.
    let clients = clients(&[], &[]);
    let previous = legacy_input("E1", "alb", "X-Origin-Verify");
    let answer = handle_with(&clients, legacy_delete(previous), FAST_RETRY)
        .await
        .expect("a destroy never fails on the input's shape");
    assert_eq!(answer, json!({"SecretId": null, "VersionId": null}));
}

/// What Secrets Manager answers a role whose policy has not reached it yet.
fn denied(action: &str) -> ErrorMetadata {
    ErrorMetadata::builder()
        .code("AccessDeniedException")
        .message(format!(
            "User: arn:aws:sts::123456789012:assumed-role/origin-secret/origin-secret is not \
             authorized to perform: secretsmanager:{action} on resource: {SECRET_ID} because no \
             identity-based policy allows the secretsmanager:{action} action"
        ))
        .build()
}

/// GetSecretValue refusing the first `denials` reads, then answering that the secret has no
/// value yet, as the module creates it.
fn empty_secret(denials: usize) -> Rule {
    let served = Mutex::new(0);
    mock!(Secrets::get_secret_value).then_compute_response(move |_| {
        let mut served = served.lock().unwrap();
        *served += 1;
        if *served <= denials {
            MockResponse::Error(GetSecretValueError::generic(denied("GetSecretValue")))
        } else {
            MockResponse::Error(GetSecretValueError::ResourceNotFoundException(
                ResourceNotFoundException::builder()
                    .message("Secrets Manager can't find the specified secret value for staging label: AWSCURRENT")
                    .build(),
            ))
        }
    })
}

/// A write as PutSecretValue saw it: its ClientRequestToken and document.
type Put = (String, Value);

/// PutSecretValue refusing the first `denials` writes, then accepting them; every write it saw.
fn puts(denials: usize) -> (Rule, Arc<Mutex<Vec<Put>>>) {
    let written = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&written);
    let rule = mock!(Secrets::put_secret_value).then_compute_response(move |request| {
        let mut seen = seen.lock().unwrap();
        let token = request.client_request_token().expect("a token").to_owned();
        let text = request.secret_string().expect("a string value");
        seen.push((token.clone(), serde_json::from_str(text).expect("JSON")));
        if seen.len() <= denials {
            MockResponse::Error(PutSecretValueError::generic(denied("PutSecretValue")))
        } else {
            MockResponse::Output(PutSecretValueOutput::builder().version_id(token).build())
        }
    });
    (rule, written)
}

/// Production's policy with AccessDenied retried for `budget` only.
fn patient_for(budget: Duration) -> Retry {
    Retry {
        propagation: Propagation {
            budget,
            first_backoff: Duration::from_millis(1),
        },
        ..FAST_RETRY
    }
}

#[tokio::test]
async fn terraform_create_waits_while_iam_propagates_the_roles_policy() {
    let get = empty_secret(2);
    let (put, written) = puts(2);
    let clients = clients(&[], &[&get, &put]);
    let answer = handle_with(&clients, terraform(SECRET_ID, "create"), FAST_RETRY)
        .await
        .expect("allowed on the third try");
    let written = written.lock().unwrap();
    assert_eq!((get.num_calls(), written.len()), (3, 3));
    let (token, document) = &written[2];
    assert_eq!(answer, json!({"SecretId": SECRET_ID, "VersionId": token}));
    let current = document["current"].as_str().expect("a current value");
    assert_eq!(
        (current.len(), document.as_object().unwrap().len()),
        (64, 1)
    );
    assert!(
        written.iter().all(|write| write == &written[0]),
        "every try wrote the same version with the same value"
    );
}

#[tokio::test]
async fn terraform_gives_up_on_access_denied_saying_what_to_do() {
    let budget = Duration::from_millis(100);
    let never = empty_secret(usize::MAX);
    let (put, written) = puts(0);
    let clients_never = clients(&[], &[&never, &put]);

    let started = Instant::now();
    let err = handle_with(
        &clients_never,
        terraform(SECRET_ID, "create"),
        patient_for(budget),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(started.elapsed() >= budget, "{:?}", started.elapsed());
    assert!(never.num_calls() > 2, "{} tries", never.num_calls());
    assert!(
        err.starts_with(&format!(
            "the function's role cannot read secret {SECRET_ID} yet (AccessDeniedException: User: \
             arn:aws:sts::123456789012:assumed-role/origin-secret/origin-secret is not authorized"
        )),
        "{err}"
    );
    assert!(
        err.ends_with(
            "still after 0 s of retries: IAM may still be propagating a policy attached moments \
             ago): run the apply again"
        ),
        "{err}"
    );
    assert!(written.lock().unwrap().is_empty(), "nothing written");

    // An update that failed is not invoked again by the next apply: the message says how to.
    let previous = json!({"DistributionId": "E1", "OriginId": "alb", "HeaderName": "X-Origin-Verify",
        "RotationToken": "1", "HeaderValue": "0123456789abcdef0123456789abcdef"});
    let err = handle_with(
        &clients_never,
        legacy_update(SECRET_ID, previous),
        patient_for(budget),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&format!(
            "the function's role cannot read secret {SECRET_ID} yet"
        )),
        "{err}"
    );
    assert!(
        err.contains(
            "Terraform keeps an update's new input even when the invocation fails, so the next \
             apply will not invoke this function again: once the cause is fixed, invoke it by hand \
             with `aws lambda invoke"
        ),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            r#"--payload '{{"SecretId":"{SECRET_ID}","tf":{{"action":"update","prev_input":{{"DistributionId":"E1","OriginId":"alb","HeaderName":"X-Origin-Verify"}}}}}}' /dev/stdout`, then apply again"#
        )),
        "{err}"
    );
    assert!(
        !err.contains("0123456789abcdef"),
        "the previous value: {err}"
    );

    // Allowed to read, not yet to write.
    let get = empty_secret(0);
    let (put, written) = puts(usize::MAX);
    let clients_read_only = clients(&[], &[&get, &put]);
    let err = handle_with(
        &clients_read_only,
        terraform(SECRET_ID, "create"),
        patient_for(budget),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with(&format!(
            "the function's role cannot write secret {SECRET_ID} yet (AccessDeniedException: "
        )),
        "{err}"
    );
    let written = written.lock().unwrap();
    assert!(written.len() > 2, "{} tries", written.len());
    let values: Vec<String> = written
        .iter()
        .map(|(_, document)| document["current"].as_str().unwrap().to_owned())
        .collect();
    assert_shows_none(&err, &values);
}

#[tokio::test]
async fn adopting_the_previous_versions_header_waits_for_cloudfront_access_and_never_draws_blind() {
    const SENT: &str = "5e1f0c2a9b8d7e6f5e1f0c2a9b8d7e6f5e1f0c2a9b8d7e6f5e1f0c2a9b8d7e6f";
    let previous = legacy_input("E1", "alb", "X-Origin-Verify");

    // Refused once (the new policy was attached in the same apply), then read.
    let config = mock!(CloudFront::get_distribution_config)
        .sequence()
        .error(|| {
            // With the metadata a real response has (the mocked client does not deserialize one).
            let message = "User is not authorized to perform: cloudfront:GetDistributionConfig";
            GetDistributionConfigError::AccessDenied(
                AccessDenied::builder()
                    .message(message)
                    .meta(
                        aws_sdk_cloudfront::error::ErrorMetadata::builder()
                            .code("AccessDenied")
                            .message(message)
                            .build(),
                    )
                    .build(),
            )
        })
        .output(|| {
            GetDistributionConfigOutput::builder()
                .distribution_config(distribution_config(&[(
                    "alb",
                    &[("X-Other", "keep"), ("X-Origin-Verify", SENT)],
                )]))
                .e_tag("E1")
                .build()
        })
        .build();
    let (get, (put, written)) = (empty_secret(0), puts(0));
    let clients_adopting = clients(&[&config], &[&get, &put]);
    let answer = handle_with(
        &clients_adopting,
        legacy_update(SECRET_ID, previous.clone()),
        FAST_RETRY,
    )
    .await
    .unwrap();
    assert_eq!(config.num_calls(), 2);
    let adopted: Vec<Value> = written.lock().unwrap().drain(..).map(|put| put.1).collect();
    assert_eq!(adopted, [json!({"current": SENT})]);
    assert!(!answer.to_string().contains(SENT), "{answer}");

    // Any other failure to read the distribution: no value drawn, which the load balancer would
    // accept instead of the one CloudFront sends.
    let failing = mock!(CloudFront::get_distribution_config).then_error(|| {
        GetDistributionConfigError::generic(
            aws_sdk_cloudfront::error::ErrorMetadata::builder()
                .code("InvalidArgument")
                .message("The argument is invalid.")
                .build(),
        )
    });
    let (get, (put, written)) = (empty_secret(0), puts(0));
    let clients_failing = clients(&[&failing], &[&get, &put]);
    let err = handle_with(
        &clients_failing,
        legacy_update(SECRET_ID, previous),
        FAST_RETRY,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("cannot read distribution E1: InvalidArgument: The argument is invalid."),
        "{err}"
    );
    assert_eq!(failing.num_calls(), 1, "not retried");
    assert!(written.lock().unwrap().is_empty(), "nothing written");
}
