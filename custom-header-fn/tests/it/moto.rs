//! The handler against a real CloudFront API (moto): each lifecycle step, read back.

use custom_header_fn::handle_with;
use serde_json::{Value, json};

use crate::support::{
    FAST_RETRY, Moto, create_distribution, custom_resource, headers, input, invocation, owned,
    read_config,
};

fn is_generated(value: &Value) -> bool {
    value.as_str().is_some_and(|value| {
        value.len() == 64
            && value
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn text(value: &Value) -> &str {
    value.as_str().expect("a string")
}

#[tokio::test]
async fn terraform_create_update_rotate_rename_move_and_delete() {
    let moto = Moto::start();
    let client = moto.client();
    let id = create_distribution(
        &client,
        &[
            ("alb", &[("X-Other", "keep")]),
            ("s3", &[("X-S3", "untouched")]),
        ],
    )
    .await;
    let original = read_config(&client, &id).await;
    let run = |event| handle_with(&client, event, FAST_RETRY);

    let v1 = input(&id, "alb", "X-Origin-Verify", "1");
    let created = run(invocation(&v1, "create", None)).await.unwrap();
    assert!(is_generated(&created["HeaderValue"]), "{created}");
    assert_eq!(created["HeaderName"], "X-Origin-Verify");
    assert!(created["PreviousHeaderValue"].is_null());
    let first = text(&created["HeaderValue"]);
    let config = read_config(&client, &id).await;
    assert_eq!(
        headers(&config, "alb"),
        owned(&[("X-Other", "keep"), ("X-Origin-Verify", first)])
    );
    assert_eq!(headers(&config, "s3"), owned(&[("X-S3", "untouched")]));

    // Terraform retrying a create whose answer it lost, and an update that changes nothing the
    // value depends on: the value stays.
    assert_eq!(run(invocation(&v1, "create", None)).await.unwrap(), created);
    assert_eq!(
        run(invocation(&v1, "update", Some(&v1))).await.unwrap(),
        created
    );

    let v2 = input(&id, "alb", "X-Origin-Verify", "2");
    let rotated = run(invocation(&v2, "update", Some(&v1))).await.unwrap();
    let second = text(&rotated["HeaderValue"]);
    assert!(is_generated(&rotated["HeaderValue"]));
    assert_ne!(second, first);
    assert_eq!(rotated["PreviousHeaderValue"], first);
    assert_eq!(
        headers(&read_config(&client, &id).await, "alb"),
        owned(&[("X-Other", "keep"), ("X-Origin-Verify", second)]),
        "replaced in place"
    );

    let v3 = input(&id, "alb", "X-Origin-Secret", "2");
    let renamed = run(invocation(&v3, "update", Some(&v2))).await.unwrap();
    assert_eq!(
        renamed,
        json!({"HeaderName": "X-Origin-Secret", "HeaderValue": second, "PreviousHeaderValue": null})
    );
    assert_eq!(
        headers(&read_config(&client, &id).await, "alb"),
        owned(&[("X-Other", "keep"), ("X-Origin-Secret", second)])
    );

    let v4 = input(&id, "s3", "X-Origin-Secret", "2");
    let moved = run(invocation(&v4, "update", Some(&v3))).await.unwrap();
    assert_eq!(moved["HeaderValue"], second);
    let config = read_config(&client, &id).await;
    assert_eq!(headers(&config, "alb"), owned(&[("X-Other", "keep")]));
    assert_eq!(
        headers(&config, "s3"),
        owned(&[("X-S3", "untouched"), ("X-Origin-Secret", second)])
    );

    let given = "0123456789abcdefghijklmnopqrstuvwxyz0123";
    let mut v5 = v4.clone();
    v5["HeaderValue"] = json!(given);
    let set = run(invocation(&v5, "update", Some(&v4))).await.unwrap();
    assert_eq!(set["HeaderValue"], given);
    assert_eq!(set["PreviousHeaderValue"], second);

    let deleted = run(invocation(&v5, "delete", Some(&v5))).await.unwrap();
    assert_eq!(
        deleted,
        json!({"HeaderName": "X-Origin-Secret", "HeaderValue": null, "PreviousHeaderValue": null})
    );
    assert_eq!(
        read_config(&client, &id).await,
        original,
        "after delete the distribution is exactly as it was, every other field included"
    );
    run(invocation(&v5, "delete", Some(&v5)))
        .await
        .expect("deleting again finds nothing to remove");
}

#[tokio::test]
async fn bad_input_fails_before_any_write_with_a_message_to_act_on() {
    let moto = Moto::start();
    let client = moto.client();
    let ten: Vec<(String, String)> = (0..10).map(|n| (format!("X-H{n}"), "v".into())).collect();
    let ten: Vec<(&str, &str)> = ten.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let id = create_distribution(&client, &[("alb", &[("X-Other", "keep")]), ("full", &ten)]).await;
    let before = read_config(&client, &id).await;
    let secret = "Secret*Value0123456789abcdefghijklmnopq";
    let with_value = |value: &str| {
        let mut event = invocation(&input(&id, "alb", "X-Origin-Verify", "1"), "create", None);
        event["HeaderValue"] = json!(value);
        event
    };
    let cases = [
        (
            invocation(&input(&id, "nope", "X-Origin-Verify", "1"), "create", None),
            r#"no origin with id "nope"; its origins are: "alb", "full""#,
        ),
        (
            invocation(&input(&id, "alb", "X-Amz-Secret", "1"), "create", None),
            r#"CloudFront cannot add the header "X-Amz-Secret""#,
        ),
        (
            invocation(&input(&id, "alb", "Host", "1"), "create", None),
            r#"CloudFront cannot add the header "Host""#,
        ),
        (
            invocation(&input(&id, "alb", "X Origin", "1"), "create", None),
            "is not a valid header name",
        ),
        (
            invocation(&input(&id, "full", "X-Origin-Verify", "1"), "create", None),
            r#"origin "full" would have 11 custom headers; CloudFront allows 10"#,
        ),
        (with_value(secret), "only lowercase letters a-z and digits"),
        (with_value("abc123"), "HeaderValue has 6 characters"),
        (
            json!({"DistributionId": id, "HeaderName": "X-Origin-Verify", "HeaderValue": secret}),
            "missing field `OriginId`",
        ),
        (
            custom_resource("Create", &id, &[("alb", "Via", "v")], None),
            r#"CloudFront cannot add the header "Via""#,
        ),
    ];
    for (event, expected) in cases {
        let err = handle_with(&client, event.clone(), FAST_RETRY)
            .await
            .expect_err(&event.to_string())
            .to_string();
        assert!(err.contains(expected), "{err:?} should say {expected:?}");
        assert!(!err.contains("Secret*Value"), "{err:?} shows the value");
    }
    assert_eq!(read_config(&client, &id).await, before, "nothing written");
}

#[tokio::test]
async fn a_distribution_that_is_gone_fails_a_create_but_not_a_delete() {
    let moto = Moto::start();
    let client = moto.client();
    let gone = input("EGONE0000000", "alb", "X-Origin-Verify", "1");
    let err = handle_with(&client, invocation(&gone, "create", None), FAST_RETRY)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(r#"CloudFront has no distribution "EGONE0000000": check DistributionId"#),
        "{err}"
    );
    let deleted = handle_with(
        &client,
        invocation(&gone, "delete", Some(&gone)),
        FAST_RETRY,
    )
    .await
    .expect("a destroy never hangs on a distribution that is gone");
    assert_eq!(deleted["HeaderName"], "X-Origin-Verify");
    let headers = [("alb", "X-Origin-Verify", "a".repeat(40))];
    let headers: Vec<_> = headers
        .iter()
        .map(|(o, n, v)| (*o, *n, v.as_str()))
        .collect();
    handle_with(
        &client,
        custom_resource("Delete", "EGONE0000000", &headers, None),
        FAST_RETRY,
    )
    .await
    .expect("a stack deletion never hangs on it either");
}

#[tokio::test]
async fn custom_resource_create_update_and_delete() {
    let moto = Moto::start();
    let client = moto.client();
    let id = create_distribution(&client, &[("alb", &[("X-Other", "keep")]), ("s3", &[])]).await;
    let original = read_config(&client, &id).await;
    let (a, b) = ("a".repeat(40), "b".repeat(40));
    let first = [
        ("alb", "X-Origin-Verify", a.as_str()),
        ("s3", "X-Extra", b.as_str()),
    ];
    let second = [("alb", "X-Origin-Verify", b.as_str())];

    let created = handle_with(
        &client,
        custom_resource("Create", &id, &first, None),
        FAST_RETRY,
    )
    .await
    .unwrap();
    assert_eq!(
        created,
        json!({
            "PhysicalResourceId": format!("{id}/origin-custom-headers"),
            "Data": {"DistributionId": id, "HeaderNames": "X-Origin-Verify,X-Extra"}
        })
    );
    let config = read_config(&client, &id).await;
    assert_eq!(
        headers(&config, "alb"),
        owned(&[("X-Other", "keep"), ("X-Origin-Verify", &a)])
    );
    assert_eq!(headers(&config, "s3"), owned(&[("X-Extra", &b)]));

    handle_with(
        &client,
        custom_resource("Update", &id, &second, Some(&first)),
        FAST_RETRY,
    )
    .await
    .unwrap();
    let config = read_config(&client, &id).await;
    assert_eq!(
        headers(&config, "alb"),
        owned(&[("X-Other", "keep"), ("X-Origin-Verify", &b)])
    );
    assert_eq!(headers(&config, "s3"), [], "dropped from the properties");

    handle_with(
        &client,
        custom_resource("Delete", &id, &second, None),
        FAST_RETRY,
    )
    .await
    .unwrap();
    assert_eq!(read_config(&client, &id).await, original);
}
