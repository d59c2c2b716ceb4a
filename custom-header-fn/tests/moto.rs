//! The handler against a real CloudFront API: a moto server on a loopback port, a distribution made
//! with the SDK, the handler run for each lifecycle step, and the distribution read back.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_cloudfront::Client;
use aws_sdk_cloudfront::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_cloudfront::types::{
    CustomHeaders, CustomOriginConfig, DefaultCacheBehavior, DistributionConfig, Origin,
    OriginCustomHeader, OriginProtocolPolicy, Origins, ViewerProtocolPolicy,
};
use custom_header_fn::distribution::Retry;
use serde_json::{Value, json};

/// A moto server on a free loopback port, killed when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server");
        let program = if venv.exists() {
            venv
        } else {
            PathBuf::from("moto_server")
        };
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start {} ({err}): run `make tools`",
                    program.display()
                )
            });
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    fn client(&self) -> Client {
        let config = aws_sdk_cloudfront::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .build();
        Client::from_conf(config)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const FAST: Retry = Retry {
    attempts: 3,
    first_backoff: Duration::from_millis(1),
};

fn origin(id: &str, headers: &[(&str, &str)]) -> Origin {
    let items: Vec<_> = headers
        .iter()
        .map(|(name, value)| {
            OriginCustomHeader::builder()
                .header_name(*name)
                .header_value(*value)
                .build()
                .unwrap()
        })
        .collect();
    Origin::builder()
        .id(id)
        .domain_name(format!("{id}.example.com"))
        .custom_headers(
            CustomHeaders::builder()
                .quantity(items.len() as i32)
                .set_items(Some(items))
                .build()
                .unwrap(),
        )
        .custom_origin_config(
            CustomOriginConfig::builder()
                .http_port(80)
                .https_port(443)
                .origin_protocol_policy(OriginProtocolPolicy::HttpOnly)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

/// A distribution with the load balancer origin (already carrying another header) and a second one.
async fn distribution(client: &Client) -> String {
    let origins = vec![
        origin("alb", &[("X-Other", "keep")]),
        origin("logs", &[("X-Logs", "untouched")]),
    ];
    let config = DistributionConfig::builder()
        .caller_reference(format!("test-{}", rand_suffix()))
        .comment("keep this comment")
        .enabled(true)
        .origins(
            Origins::builder()
                .quantity(2)
                .set_items(Some(origins))
                .build()
                .unwrap(),
        )
        .default_cache_behavior(
            DefaultCacheBehavior::builder()
                .target_origin_id("alb")
                .viewer_protocol_policy(ViewerProtocolPolicy::HttpsOnly)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let created = client
        .create_distribution()
        .distribution_config(config)
        .send()
        .await
        .unwrap();
    created.distribution.unwrap().id
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

async fn headers(client: &Client, id: &str, origin_id: &str) -> Vec<(String, String)> {
    let config = client
        .get_distribution_config()
        .id(id)
        .send()
        .await
        .unwrap()
        .distribution_config
        .unwrap();
    assert_eq!(config.comment, "keep this comment");
    let origin = config
        .origins
        .unwrap()
        .items
        .into_iter()
        .find(|o| o.id == origin_id)
        .unwrap();
    origin
        .custom_headers
        .and_then(|h| h.items)
        .unwrap_or_default()
        .into_iter()
        .map(|h| (h.header_name, h.header_value))
        .collect()
}

fn terraform(
    id: &str,
    name: &str,
    token: &str,
    action: &str,
    previous: Option<(&str, &str)>,
) -> Value {
    let input = |name: &str, token: &str| json!({"DistributionId": id, "OriginId": "alb", "HeaderName": name, "RotationToken": token});
    let mut event = input(name, token);
    event["tf"] = json!({"action": action, "prev_input": previous.map(|(n, t)| input(n, t))});
    event
}

async fn run(client: &Client, event: Value) -> Value {
    custom_header_fn::handle_with(client, event, FAST)
        .await
        .unwrap()
}

#[tokio::test]
async fn terraform_lifecycle_create_update_rotate_rename_delete() {
    let moto = Moto::start();
    let client = moto.client();
    let id = distribution(&client).await;
    let untouched = headers(&client, &id, "logs").await;

    // Create: a new 64-character secret, the other header kept.
    let created = run(
        &client,
        terraform(&id, "X-Origin-Verify", "1", "create", None),
    )
    .await;
    let secret = created["HeaderValue"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 64);
    assert_eq!(created["PreviousHeaderValue"], Value::Null);
    assert_eq!(
        headers(&client, &id, "alb").await,
        [
            ("X-Other".into(), "keep".into()),
            ("X-Origin-Verify".into(), secret.clone())
        ]
    );

    // Update with the same token: the same secret, nothing replaced.
    let same = run(
        &client,
        terraform(
            &id,
            "X-Origin-Verify",
            "1",
            "update",
            Some(("X-Origin-Verify", "1")),
        ),
    )
    .await;
    assert_eq!(
        (same["HeaderValue"].as_str(), &same["PreviousHeaderValue"]),
        (Some(secret.as_str()), &Value::Null)
    );

    // A new rotation token: a new secret, the old one reported for the load balancer's overlap.
    let rotated = run(
        &client,
        terraform(
            &id,
            "X-Origin-Verify",
            "2",
            "update",
            Some(("X-Origin-Verify", "1")),
        ),
    )
    .await;
    let new_secret = rotated["HeaderValue"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    assert_eq!(rotated["PreviousHeaderValue"], secret.as_str());
    assert_eq!(
        headers(&client, &id, "alb").await[1],
        ("X-Origin-Verify".into(), new_secret.clone())
    );

    // A renamed header: the old one removed, the secret carried over.
    let renamed = run(
        &client,
        terraform(
            &id,
            "X-Cdn-Secret",
            "2",
            "update",
            Some(("X-Origin-Verify", "2")),
        ),
    )
    .await;
    assert_eq!(renamed["HeaderValue"], new_secret.as_str());
    assert_eq!(
        headers(&client, &id, "alb").await,
        [
            ("X-Other".into(), "keep".into()),
            ("X-Cdn-Secret".into(), new_secret)
        ]
    );

    // Delete: exactly that header goes; everything else stays.
    let deleted = run(
        &client,
        terraform(
            &id,
            "X-Cdn-Secret",
            "2",
            "delete",
            Some(("X-Cdn-Secret", "2")),
        ),
    )
    .await;
    assert_eq!(deleted["HeaderValue"], Value::Null);
    assert_eq!(
        headers(&client, &id, "alb").await,
        [("X-Other".into(), "keep".into())]
    );
    assert_eq!(headers(&client, &id, "logs").await, untouched);
}

#[tokio::test]
async fn a_given_value_is_used_and_bad_input_changes_nothing() {
    let moto = Moto::start();
    let client = moto.client();
    let id = distribution(&client).await;
    let given = "0123456789abcdef".repeat(4);
    let mut event = terraform(&id, "X-Origin-Verify", "1", "create", None);
    event["HeaderValue"] = json!(given);
    let output = run(&client, event.clone()).await;
    assert_eq!(output["HeaderValue"], given.as_str());
    let before = headers(&client, &id, "alb").await;

    let mut refused = Vec::new();
    let mut bad_value = event.clone();
    bad_value["HeaderValue"] = json!("Secret*With?Wildcards-and-UPPERCASE-0123456789");
    refused.push(bad_value);
    let mut bad_origin = event.clone();
    bad_origin["OriginId"] = json!("nope");
    refused.push(bad_origin);
    let mut forbidden = event.clone();
    forbidden["HeaderName"] = json!("X-Amz-Secret");
    refused.push(forbidden);
    let mut missing = event.clone();
    missing.as_object_mut().unwrap().remove("HeaderName");
    refused.push(missing);
    for event in refused {
        let err = custom_header_fn::handle_with(&client, event, FAST)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains(&given) && !err.contains("Wildcards"),
            "no secret in errors: {err}"
        );
        assert_eq!(
            headers(&client, &id, "alb").await,
            before,
            "nothing written after: {err}"
        );
    }
    let err =
        custom_header_fn::handle_with(&client, terraform(&id, "X-A", "1", "create", None), FAST)
            .await
            .map(|_| ());
    assert!(err.is_ok());
    let mut unknown = terraform(&id, "X-A", "1", "create", None);
    unknown["OriginId"] = json!("nope");
    let err = custom_header_fn::handle_with(&client, unknown, FAST)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(r#""alb", "logs""#),
        "lists the origins that exist: {err}"
    );
}

#[tokio::test]
async fn deleting_from_a_distribution_that_is_gone_succeeds() {
    let moto = Moto::start();
    let client = moto.client();
    let event = terraform(
        "E0NOSUCHDIST",
        "X-Origin-Verify",
        "1",
        "delete",
        Some(("X-Origin-Verify", "1")),
    );
    let output = run(&client, event).await;
    assert_eq!(output["HeaderName"], "X-Origin-Verify");
    let create = terraform("E0NOSUCHDIST", "X-Origin-Verify", "1", "create", None);
    let err = custom_header_fn::handle_with(&client, create, FAST)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no distribution"), "{err}");
}

#[tokio::test]
async fn custom_resource_create_update_delete() {
    let moto = Moto::start();
    let client = moto.client();
    let id = distribution(&client).await;
    let event = |request: &str, headers: &[(&str, &str)], old: Option<&[(&str, &str)]>| {
        let props = |headers: &[(&str, &str)]| {
            json!({"ServiceToken": "arn:aws:lambda:us-east-1:1:function:x", "DistributionId": id,
                   "Origins": [{"OriginId": "alb", "CustomHeaders":
                       headers.iter().map(|(n, v)| json!({"HeaderName": n, "HeaderValue": v})).collect::<Vec<_>>()}]})
        };
        let mut event = json!({"RequestType": request, "RequestId": "r", "StackId": "s", "LogicalResourceId": "Headers",
                               "ResourceType": "Custom::OriginHeaders", "ResponseURL": "https://example.com",
                               "ResourceProperties": props(headers)});
        if let Some(old) = old {
            event["OldResourceProperties"] = props(old);
            event["PhysicalResourceId"] = json!(format!("{id}/origin-custom-headers"));
        }
        event
    };
    let created = run(
        &client,
        event("Create", &[("X-A", "one"), ("X-B", "two")], None),
    )
    .await;
    assert_eq!(
        created["PhysicalResourceId"],
        format!("{id}/origin-custom-headers")
    );
    assert_eq!(created["Data"]["HeaderNames"], "X-A,X-B");
    assert_eq!(headers(&client, &id, "alb").await.len(), 3);

    run(
        &client,
        event(
            "Update",
            &[("X-A", "uno")],
            Some(&[("X-A", "one"), ("X-B", "two")]),
        ),
    )
    .await;
    assert_eq!(
        headers(&client, &id, "alb").await,
        [
            ("X-Other".into(), "keep".into()),
            ("X-A".into(), "uno".into())
        ]
    );

    run(&client, event("Delete", &[("X-A", "uno")], None)).await;
    assert_eq!(
        headers(&client, &id, "alb").await,
        [("X-Other".into(), "keep".into())]
    );
}
