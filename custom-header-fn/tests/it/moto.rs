//! The handler against real CloudFront and Secrets Manager APIs (moto): each step, read back.

use custom_header_fn::{Clients, handle_with, store};
use serde_json::{Value, json};

use crate::support::{
    FAST_RETRY, Moto, assert_shows_none, create_distribution, create_secret, custom_resource,
    document, headers, legacy_input, legacy_update, owned, put_document, read_config, rotation,
    terraform, values,
};

const HEADER: &str = "X-Origin-Verify";

fn is_generated(value: &str) -> bool {
    value.len() == 64
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What Terraform sets up: the secret with its first value (the function's create), then the
/// distribution, started with that value on the load balancer's origin.
struct Deployment {
    clients: Clients,
    secret_id: String,
    distribution_id: String,
    first: String,
}

impl Deployment {
    async fn new(moto: &Moto) -> Self {
        let clients = moto.clients();
        let secret_id = create_secret(&clients.secrets, "origin-header").await;
        handle_with(&clients, terraform(&secret_id, "create"), FAST_RETRY)
            .await
            .expect("the first value");
        let first = document(&clients.secrets, &secret_id).await.0["current"]
            .as_str()
            .expect("a current value")
            .to_owned();
        let distribution_id = create_distribution(
            &clients.cloudfront,
            &[
                ("alb", &[("X-Other", "keep"), (HEADER, &first)]),
                ("s3", &[("X-S3", "untouched")]),
            ],
        )
        .await;
        Self {
            clients,
            secret_id,
            distribution_id,
            first,
        }
    }

    async fn rotate(&self, phase: &str) -> Result<Value, String> {
        let event = rotation(phase, &self.secret_id, &self.distribution_id, "alb", HEADER);
        handle_with(&self.clients, event, FAST_RETRY)
            .await
            .map_err(|err| err.to_string())
    }

    async fn document(&self) -> (Value, String) {
        document(&self.clients.secrets, &self.secret_id).await
    }

    async fn alb_headers(&self) -> Vec<(String, String)> {
        headers(
            &read_config(&self.clients.cloudfront, &self.distribution_id).await,
            "alb",
        )
    }
}

#[tokio::test]
#[ignore = "needs moto (make tools)"]
async fn terraform_create_stores_a_first_value_once_and_answers_without_it() {
    let moto = Moto::start();
    let clients = moto.clients();
    let secret_id = create_secret(&clients.secrets, "origin-header").await;
    let run = |event| handle_with(&clients, event, FAST_RETRY);

    let created = run(terraform(&secret_id, "create")).await.unwrap();
    let (doc, version_id) = document(&clients.secrets, &secret_id).await;
    assert_eq!(
        created,
        json!({"SecretId": secret_id, "VersionId": version_id})
    );
    let first = doc["current"].as_str().expect("a current value");
    assert!(is_generated(first), "{doc}");
    assert_eq!(doc.as_object().unwrap().len(), 1, "only current: {doc}");
    assert_shows_none(&created.to_string(), &values(&doc));

    // Terraform retrying a create whose answer it lost, and an update (a new SecretId, or a
    // change of the module): the document stays as it is.
    assert_eq!(run(terraform(&secret_id, "create")).await.unwrap(), created);
    assert_eq!(run(terraform(&secret_id, "update")).await.unwrap(), created);
    assert_eq!(
        document(&clients.secrets, &secret_id).await,
        (doc.clone(), version_id)
    );

    let deleted = run(terraform(&secret_id, "delete")).await.unwrap();
    assert_eq!(deleted, json!({"SecretId": secret_id, "VersionId": null}));
    assert_eq!(
        document(&clients.secrets, &secret_id).await.0,
        doc,
        "Terraform deletes the secret, not the function"
    );

    let err = run(terraform("no-such-secret", "create"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("cannot write secret no-such-secret: ResourceNotFoundException"),
        "{err}"
    );
}

#[tokio::test]
#[ignore = "needs moto (make tools)"]
async fn upgrading_from_the_previous_version_adopts_the_value_the_origin_sends() {
    let moto = Moto::start();
    let clients = moto.clients();
    // What the previous version left: a generated value on the origin, and no secret. The
    // upgrade's apply creates the secret, empty, and sends the update.
    let sent = "3c9a5e7b1d2f4a6c8e0b3c9a5e7b1d2f4a6c8e0b3c9a5e7b1d2f4a6c8e0b1234";
    let distribution_id = create_distribution(
        &clients.cloudfront,
        &[("alb", &[("X-Other", "keep"), (HEADER, sent)]), ("s3", &[])],
    )
    .await;
    let before = read_config(&clients.cloudfront, &distribution_id).await;
    let secret_id = create_secret(&clients.secrets, "origin-header").await;
    let update = legacy_update(
        &secret_id,
        legacy_input(&distribution_id, "alb", "x-origin-verify"),
    );

    let answer = handle_with(&clients, update.clone(), FAST_RETRY)
        .await
        .unwrap();
    let (doc, version_id) = document(&clients.secrets, &secret_id).await;
    assert_eq!(doc, json!({"current": sent}), "the value CloudFront sends");
    assert_eq!(
        answer,
        json!({"SecretId": secret_id, "VersionId": version_id})
    );
    assert_shows_none(&answer.to_string(), &[sent.into()]);
    assert_eq!(
        read_config(&clients.cloudfront, &distribution_id).await,
        before,
        "the distribution untouched"
    );

    // The update again (Terraform retrying it): the document stays.
    assert_eq!(
        handle_with(&clients, update, FAST_RETRY).await.unwrap(),
        answer
    );
    assert_eq!(
        document(&clients.secrets, &secret_id).await,
        (doc, version_id)
    );

    // And the first rotation moves on from it.
    let deployment = |phase| rotation(phase, &secret_id, &distribution_id, "alb", HEADER);
    for phase in ["prepare", "promote", "retire"] {
        handle_with(&clients, deployment(phase), FAST_RETRY)
            .await
            .unwrap();
    }
    let (rotated, _) = document(&clients.secrets, &secret_id).await;
    assert_ne!(rotated["current"], sent);
    assert_eq!(
        headers(
            &read_config(&clients.cloudfront, &distribution_id).await,
            "alb"
        ),
        owned(&[
            ("X-Other", "keep"),
            (HEADER, rotated["current"].as_str().unwrap())
        ])
    );
}

#[tokio::test]
#[ignore = "needs moto (make tools)"]
async fn upgrading_draws_a_value_when_the_origin_sends_none_to_adopt() {
    let moto = Moto::start();
    let clients = moto.clients();
    let invalid = "Not-A-Valid-Value-For-The-Load-Balancer*";
    let distribution_id = create_distribution(
        &clients.cloudfront,
        &[
            ("alb", &[("X-Other", "keep")]),
            ("old", &[(HEADER, invalid)]),
        ],
    )
    .await;
    let cases = [
        ("no header", legacy_input(&distribution_id, "alb", HEADER)),
        (
            "invalid value",
            legacy_input(&distribution_id, "old", HEADER),
        ),
        ("no origin", legacy_input(&distribution_id, "gone", HEADER)),
        (
            "no distribution",
            legacy_input("EGONE0000000", "alb", HEADER),
        ),
    ];
    for (n, (case, previous)) in cases.into_iter().enumerate() {
        let secret_id = create_secret(&clients.secrets, &format!("origin-header-{n}")).await;
        let answer = handle_with(&clients, legacy_update(&secret_id, previous), FAST_RETRY)
            .await
            .unwrap_or_else(|err| panic!("{case}: {err}"));
        let (doc, version_id) = document(&clients.secrets, &secret_id).await;
        let current = doc["current"].as_str().expect("a current value");
        assert!(is_generated(current), "{case}: drawn");
        assert_eq!(doc.as_object().unwrap().len(), 1, "{case}: {doc}");
        assert_eq!(
            answer,
            json!({"SecretId": secret_id, "VersionId": version_id}),
            "{case}"
        );
        assert_shows_none(&answer.to_string(), &[current.into(), invalid.into()]);
    }
    assert_eq!(
        headers(
            &read_config(&clients.cloudfront, &distribution_id).await,
            "old"
        ),
        owned(&[(HEADER, invalid)]),
        "the distribution untouched"
    );
}

#[tokio::test]
#[ignore = "needs moto (make tools)"]
async fn a_document_that_is_not_valid_is_an_error_that_does_not_quote_it() {
    let moto = Moto::start();
    let clients = moto.clients();
    let secret_id = create_secret(&clients.secrets, "origin-header").await;
    let good = &"0123456789abcdef".repeat(4);
    let cases = [
        (good.to_owned(), "it is not JSON (line 1, column 2)"),
        (format!(r#"{{"current": "{good}""#), "it is not JSON"),
        (format!(r#"["{good}"]"#), "it is not a JSON object"),
        (
            format!(r#"{{"current": "{good}", "Current": "{good}"}}"#),
            "it has keys other than",
        ),
        (
            format!(r#"{{"previous": "{good}"}}"#),
            "it has no \"current\" value",
        ),
        (
            r#"{"current": "Short*Value"}"#.to_owned(),
            "\"current\" has 11 characters; a value has 64",
        ),
        (
            format!(
                r#"{{"current": "{good}", "pending": "{}"}}"#,
                good.to_uppercase()
            ),
            "\"pending\" may contain only lowercase hex digits 0-9 and a-f",
        ),
    ];
    for (text, expected) in cases {
        put_document(&clients.secrets, &secret_id, &text).await;
        let before = clients
            .secrets
            .get_secret_value()
            .secret_id(&secret_id)
            .send()
            .await
            .unwrap();
        for event in [
            terraform(&secret_id, "create"),
            terraform(&secret_id, "update"),
            rotation("prepare", &secret_id, "E1", "alb", HEADER),
        ] {
            let err = handle_with(&clients, event, FAST_RETRY)
                .await
                .expect_err(&text)
                .to_string();
            assert!(
                err.starts_with(&format!("secret {secret_id}: its AWSCURRENT version ")),
                "{err}"
            );
            assert!(err.contains(expected), "{err:?} should say {expected:?}");
            assert_shows_none(
                &err,
                &[good.clone(), good.to_uppercase(), "Short*Value".into()],
            );
        }
        let after = clients
            .secrets
            .get_secret_value()
            .secret_id(&secret_id)
            .send()
            .await
            .unwrap();
        assert_eq!(after.version_id, before.version_id, "nothing written");
    }
}

#[tokio::test]
#[ignore = "needs moto (make tools)"]
async fn two_rotations_move_the_header_and_never_reuse_a_value() {
    let moto = Moto::start();
    let deployment = Deployment::new(&moto).await;
    let original = read_config(&deployment.clients.cloudfront, &deployment.distribution_id).await;
    let mut seen = vec![deployment.first.clone()];

    for _ in 0..2 {
        let current = seen.last().unwrap().clone();

        let prepared = deployment.rotate("prepare").await.unwrap();
        assert_eq!(
            prepared,
            json!({"Phase": "prepare", "Changed": true, "AcceptedValues": 2})
        );
        let (doc, version) = deployment.document().await;
        let pending = doc["pending"].as_str().expect("a pending value").to_owned();
        assert!(is_generated(&pending));
        assert!(!seen.contains(&pending), "a value came back");
        assert_eq!(doc, json!({"current": current, "pending": pending}));
        assert_eq!(
            deployment.rotate("prepare").await.unwrap(),
            json!({"Phase": "prepare", "Changed": false, "AcceptedValues": 2})
        );
        assert_eq!(
            deployment.document().await.1,
            version,
            "prepare again: no write"
        );
        assert_eq!(
            deployment.alb_headers().await,
            owned(&[("X-Other", "keep"), (HEADER, &current)]),
            "prepare leaves CloudFront alone"
        );

        let promoted = deployment.rotate("promote").await.unwrap();
        assert_eq!(
            promoted,
            json!({"Phase": "promote", "Changed": true, "AcceptedValues": 2})
        );
        let config = read_config(&deployment.clients.cloudfront, &deployment.distribution_id).await;
        assert_eq!(
            headers(&config, "alb"),
            owned(&[("X-Other", "keep"), (HEADER, &pending)]),
            "replaced in place, the other header untouched"
        );
        assert_eq!(headers(&config, "s3"), owned(&[("X-S3", "untouched")]));
        assert_eq!(
            deployment.document().await.0,
            json!({"current": pending, "previous": current})
        );
        assert_eq!(
            deployment.rotate("promote").await.unwrap(),
            json!({"Phase": "promote", "Changed": false, "AcceptedValues": 2})
        );

        // moto reports a distribution as Deployed from its first read on, also right after an
        // update; the refusal while it is InProgress is in mock.rs.
        let retired = deployment.rotate("retire").await.unwrap();
        assert_eq!(
            retired,
            json!({"Phase": "retire", "Changed": true, "AcceptedValues": 1})
        );
        assert_eq!(deployment.document().await.0, json!({"current": pending}));
        assert_eq!(
            deployment.rotate("retire").await.unwrap(),
            json!({"Phase": "retire", "Changed": false, "AcceptedValues": 1})
        );
        for answer in [prepared, promoted, retired] {
            assert_shows_none(&answer.to_string(), &seen);
        }
        seen.push(pending);
    }
    let mut config = read_config(&deployment.clients.cloudfront, &deployment.distribution_id).await;
    let mut expected = original;
    for config in [&mut config, &mut expected] {
        config.origins.as_mut().unwrap().items[0].custom_headers = None;
    }
    assert_eq!(config, expected, "every other field as it was");
}

#[tokio::test]
#[ignore = "needs moto (make tools)"]
async fn the_sequence_run_again_after_a_promote_resumes_that_rotation() {
    let moto = Moto::start();
    let deployment = Deployment::new(&moto).await;
    deployment.rotate("prepare").await.unwrap();
    deployment.rotate("promote").await.unwrap();
    let (promoted, version) = deployment.document().await;

    // What `make rotate-secret` does when run again after failing past promote: no new value
    // (its promote would have to drop one CloudFront may still send), the same rotation retired.
    for phase in ["prepare", "promote"] {
        assert_eq!(
            deployment.rotate(phase).await.unwrap(),
            json!({"Phase": phase, "Changed": false, "AcceptedValues": 2})
        );
    }
    assert_eq!(deployment.document().await.1, version, "nothing written");
    deployment.rotate("retire").await.unwrap();
    assert_eq!(
        deployment.document().await.0,
        json!({"current": promoted["current"]})
    );
}

#[tokio::test]
#[ignore = "needs moto (make tools)"]
async fn a_document_with_all_three_values_is_retired_before_it_is_promoted() {
    let moto = Moto::start();
    let deployment = Deployment::new(&moto).await;
    // Only a hand-written document has all three: CloudFront sends `current`, may still send
    // `previous`, and the load balancer accepts all of them.
    let (previous, pending) = ("a".repeat(64), "b".repeat(64));
    let current = deployment.first.clone();
    let three = json!({"current": current, "pending": pending, "previous": previous});
    put_document(
        &deployment.clients.secrets,
        &deployment.secret_id,
        &three.to_string(),
    )
    .await;
    let (_, version) = deployment.document().await;

    assert_eq!(
        deployment.rotate("prepare").await.unwrap(),
        json!({"Phase": "prepare", "Changed": false, "AcceptedValues": 3})
    );
    let err = deployment.rotate("promote").await.unwrap_err();
    assert_eq!(
        err,
        "the previous value is still accepted and CloudFront may still send it: run the retire \
         phase first, then promote"
    );
    assert_eq!(deployment.document().await.1, version, "nothing written");
    assert_eq!(
        deployment.alb_headers().await,
        owned(&[("X-Other", "keep"), (HEADER, &current)]),
        "CloudFront untouched"
    );

    assert_eq!(
        deployment.rotate("retire").await.unwrap(),
        json!({"Phase": "retire", "Changed": true, "AcceptedValues": 2})
    );
    assert_eq!(
        deployment.document().await.0,
        json!({"current": current, "pending": pending}),
        "retire keeps the pending value"
    );
    deployment.rotate("promote").await.unwrap();
    assert_eq!(
        deployment.document().await.0,
        json!({"current": pending, "previous": current})
    );
}

#[tokio::test]
#[ignore = "needs moto (make tools)"]
async fn promote_without_prepare_and_retire_off_the_current_value_are_refused() {
    let moto = Moto::start();
    let deployment = Deployment::new(&moto).await;
    let (_, version) = deployment.document().await;
    assert_eq!(
        deployment.rotate("promote").await.unwrap_err(),
        "nothing to promote: run the prepare phase first"
    );
    assert_eq!(
        deployment.rotate("retire").await.unwrap(),
        json!({"Phase": "retire", "Changed": false, "AcceptedValues": 1}),
        "nothing to retire"
    );
    assert_eq!(deployment.document().await.1, version, "nothing written");

    // The distribution still sends the old value, as after someone put it back by hand.
    let (old, new) = (deployment.first.clone(), "a".repeat(64));
    let state = json!({"current": new, "previous": old}).to_string();
    put_document(&deployment.clients.secrets, &deployment.secret_id, &state).await;
    let (_, version) = deployment.document().await;
    let err = deployment.rotate("retire").await.unwrap_err();
    assert_eq!(
        err,
        format!(
            "distribution {} does not send the current value (header \"X-Origin-Verify\" on origin \
             \"alb\"); refusing to retire the value it may still send",
            deployment.distribution_id
        )
    );
    assert_shows_none(&err, &[old, new]);
    assert_eq!(deployment.document().await.1, version, "nothing written");
}

#[tokio::test]
#[ignore = "needs moto (make tools)"]
async fn a_write_decided_from_a_version_no_longer_current_is_refused() {
    let moto = Moto::start();
    let deployment = Deployment::new(&moto).await;
    let secrets = &deployment.clients.secrets;
    let stale = store::read(secrets, &deployment.secret_id)
        .await
        .unwrap()
        .expect("a document");
    deployment.rotate("prepare").await.unwrap();
    let (prepared, version) = deployment.document().await;

    let mut other = stale.state.clone();
    other.pending = Some("b".repeat(64));
    let err = store::write(
        secrets,
        &deployment.secret_id,
        Some(&stale.version_id),
        &other,
    )
    .await
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        format!(
            "secret {} changed while this function was updating it (another invocation wrote a \
             version first): invoke again, to decide from the version now current",
            deployment.secret_id
        )
    );
    assert_eq!(deployment.document().await, (prepared, version.clone()));

    // The same decision written again (a retried write) is no new version and no error.
    let again = store::read(secrets, &deployment.secret_id)
        .await
        .unwrap()
        .unwrap();
    let written = store::write(
        secrets,
        &deployment.secret_id,
        Some(&stale.version_id),
        &again.state,
    )
    .await
    .unwrap();
    assert_eq!(written, version);
}

#[tokio::test]
#[ignore = "needs moto (make tools)"]
async fn bad_input_fails_before_any_write_with_a_message_to_act_on() {
    let moto = Moto::start();
    let deployment = Deployment::new(&moto).await;
    let clients = &deployment.clients;
    let ten: Vec<(String, String)> = (0..10).map(|n| (format!("X-H{n}"), "v".into())).collect();
    let ten: Vec<(&str, &str)> = ten.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let id = create_distribution(
        &clients.cloudfront,
        &[("alb", &[("X-Other", "keep")]), ("full", &ten)],
    )
    .await;
    let before = read_config(&clients.cloudfront, &id).await;
    deployment.rotate("prepare").await.unwrap();
    let (doc, version) = deployment.document().await;
    let promote = |origin: &str, header: &str| {
        rotation("promote", &deployment.secret_id, &id, origin, header)
    };
    let cases = [
        (
            promote("nope", HEADER),
            r#"no origin with id "nope"; its origins are: "alb", "full""#,
        ),
        (
            promote("alb", "X-Amz-Secret"),
            r#"CloudFront cannot add the header "X-Amz-Secret""#,
        ),
        (
            promote("alb", "Host"),
            r#"CloudFront cannot add the header "Host""#,
        ),
        (promote("alb", "X Origin"), "is not a valid header name"),
        (
            promote("full", HEADER),
            r#"origin "full" would have 11 custom headers; CloudFront allows 10"#,
        ),
        (
            json!({"Rotate": "promote", "SecretId": deployment.secret_id, "DistributionId": id, "HeaderName": HEADER}),
            "invalid rotation event: missing field `OriginId`",
        ),
        (
            json!({"DistributionId": id, "OriginId": "alb", "HeaderName": HEADER, "RotationToken": "1"}),
            "invalid input: unknown field `DistributionId`",
        ),
        (
            custom_resource("Create", &id, &[("alb", "Via", "v")], None),
            r#"CloudFront cannot add the header "Via""#,
        ),
    ];
    for (event, expected) in cases {
        let err = handle_with(clients, event.clone(), FAST_RETRY)
            .await
            .expect_err(&event.to_string())
            .to_string();
        assert!(err.contains(expected), "{err:?} should say {expected:?}");
        assert_shows_none(&err, &values(&doc));
    }
    assert_eq!(
        read_config(&clients.cloudfront, &id).await,
        before,
        "nothing written"
    );
    assert_eq!(
        deployment.document().await,
        (doc, version),
        "nothing written"
    );
}

#[tokio::test]
#[ignore = "needs moto (make tools)"]
async fn a_distribution_that_is_gone_fails_a_rotation_but_not_a_custom_resource_delete() {
    let moto = Moto::start();
    let deployment = Deployment::new(&moto).await;
    let gone = |phase| rotation(phase, &deployment.secret_id, "EGONE0000000", "alb", HEADER);
    deployment.rotate("prepare").await.unwrap();
    for phase in ["promote", "retire"] {
        if phase == "retire" {
            deployment.rotate("promote").await.unwrap();
        }
        let (_, version) = deployment.document().await;
        let err = handle_with(&deployment.clients, gone(phase), FAST_RETRY)
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            err, r#"CloudFront has no distribution "EGONE0000000": check DistributionId"#,
            "{phase}"
        );
        assert_eq!(
            deployment.document().await.1,
            version,
            "{phase} wrote nothing"
        );
    }

    let headers = [("alb", HEADER, "a".repeat(64))];
    let headers: Vec<_> = headers
        .iter()
        .map(|(o, n, v)| (*o, *n, v.as_str()))
        .collect();
    handle_with(
        &deployment.clients,
        custom_resource("Delete", "EGONE0000000", &headers, None),
        FAST_RETRY,
    )
    .await
    .expect("a stack deletion never hangs on it");
}

#[tokio::test]
#[ignore = "needs moto (make tools)"]
async fn custom_resource_create_update_and_delete() {
    let moto = Moto::start();
    let clients = moto.clients();
    let client = &clients.cloudfront;
    let id = create_distribution(client, &[("alb", &[("X-Other", "keep")]), ("s3", &[])]).await;
    let original = read_config(client, &id).await;
    let (a, b) = ("a".repeat(64), "b".repeat(64));
    let first = [("alb", HEADER, a.as_str()), ("s3", "X-Extra", b.as_str())];
    let second = [("alb", HEADER, b.as_str())];

    let created = handle_with(
        &clients,
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
    let config = read_config(client, &id).await;
    assert_eq!(
        headers(&config, "alb"),
        owned(&[("X-Other", "keep"), (HEADER, &a)])
    );
    assert_eq!(headers(&config, "s3"), owned(&[("X-Extra", &b)]));

    handle_with(
        &clients,
        custom_resource("Update", &id, &second, Some(&first)),
        FAST_RETRY,
    )
    .await
    .unwrap();
    let config = read_config(client, &id).await;
    assert_eq!(
        headers(&config, "alb"),
        owned(&[("X-Other", "keep"), (HEADER, &b)])
    );
    assert_eq!(headers(&config, "s3"), [], "dropped from the properties");

    handle_with(
        &clients,
        custom_resource("Delete", &id, &second, None),
        FAST_RETRY,
    )
    .await
    .unwrap();
    assert_eq!(read_config(client, &id).await, original);
}
