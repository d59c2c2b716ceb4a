//! The built `bootstrap` in the real Lambda runtime loop: `cargo lambda watch` serves the Runtime
//! API, the binary polls it as on Lambda (configured only by the environment, as there), and
//! `cargo lambda invoke` sends each event shape.
//!
//! `--only-lambda-apis` keeps cargo-lambda from building the function itself: the test runs the
//! binary `cargo test` just built, with no second cargo build inside the test.

use std::process::Command;

use serde_json::{Value, json};

use crate::support::{
    Moto, Process, assert_shows_none, create_distribution, create_secret, custom_resource,
    document, free_port, headers, legacy_delete, legacy_input, legacy_update, owned, read_config,
    rotation, terraform, tool, values,
};

/// Not us-east-1: Secrets Manager must be called in the function's own region (moto keeps
/// secrets per region), CloudFront whatever the region.
const REGION: &str = "eu-west-1";

/// A function served by `cargo lambda watch`, and its invoke port.
struct Function {
    port: u16,
    // Dropped in this order: the function first, then the API it polls.
    bootstrap: Process,
    _watch: Process,
}

impl Function {
    fn start(moto: &Moto) -> Self {
        // cargo lambda watch prints no address it bound, so its port is picked here (the one
        // bind-then-release left in these tests; the function and `invoke` need to know it).
        let port = free_port();
        let mut watch = Command::new(tool("cargo-lambda"));
        watch.args(["lambda", "watch", "--only-lambda-apis", "--invoke-address"]);
        watch.args(["127.0.0.1", "--invoke-port", &port.to_string()]);
        watch
            .arg("--manifest-path")
            .arg(env!("CARGO_MANIFEST_PATH"));
        let mut watch = Process::start("cargo-lambda-watch", &port.to_string(), watch);
        watch.wait_for_port(port);

        let mut bootstrap = Command::new(env!("CARGO_BIN_EXE_bootstrap"));
        bootstrap
            .env_clear()
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{port}/.rt"),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_ENDPOINT_URL", &moto.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", REGION)
            // Nothing may look for credentials or a region beyond loopback.
            .env("AWS_EC2_METADATA_DISABLED", "true");
        Self {
            port,
            bootstrap: Process::start("bootstrap", &port.to_string(), bootstrap),
            _watch: watch,
        }
    }

    /// Invokes the function; its answer, or the error cargo-lambda reports (unwrapped to one line).
    fn invoke(&self, event: &Value) -> Result<Value, String> {
        let output = Command::new(tool("cargo-lambda"))
            .args(["lambda", "invoke", "--invoke-address", "127.0.0.1"])
            .args([
                "--invoke-port",
                &self.port.to_string(),
                "--output-format",
                "json",
            ])
            .args(["--data-ascii", &event.to_string()])
            .output()
            .expect("cargo lambda invoke runs");
        if output.status.success() {
            Ok(serde_json::from_slice(&output.stdout).expect("a JSON answer"))
        } else {
            let report = String::from_utf8_lossy(&output.stderr).replace('│', " ");
            Err(report.split_whitespace().collect::<Vec<_>>().join(" "))
        }
    }
}

#[tokio::test]
#[ignore = "needs moto and cargo-lambda (make tools)"]
async fn every_event_shape_through_the_lambda_runtime() {
    let moto = Moto::start();
    let clients = moto.clients_in(REGION);
    let secret_id = create_secret(&clients.secrets, "origin-header").await;
    let function = Function::start(&moto);
    let invoke = |event: &Value| {
        function
            .invoke(event)
            .unwrap_or_else(|err| panic!("{err}\nfunction log:\n{}", function.bootstrap.output()))
    };

    let created = invoke(&terraform(&secret_id, "create"));
    let (first, version) = document(&clients.secrets, &secret_id).await;
    assert_eq!(
        created,
        json!({"SecretId": secret_id, "VersionId": version})
    );
    let current = first["current"].as_str().expect("a current value");
    assert_eq!(current.len(), 64);

    let id = create_distribution(
        &clients.cloudfront,
        &[
            ("alb", &[("X-Other", "keep"), ("X-Origin-Verify", current)]),
            ("s3", &[]),
        ],
    )
    .await;
    let phase = |name| rotation(name, &secret_id, &id, "alb", "X-Origin-Verify");
    assert_eq!(
        invoke(&phase("prepare")),
        json!({"Phase": "prepare", "Changed": true, "AcceptedValues": 2})
    );
    let (prepared, _) = document(&clients.secrets, &secret_id).await;
    let pending = prepared["pending"].as_str().expect("a pending value");
    assert_eq!(invoke(&phase("promote"))["Changed"], true);
    assert_eq!(
        headers(&read_config(&clients.cloudfront, &id).await, "alb"),
        owned(&[("X-Other", "keep"), ("X-Origin-Verify", pending)])
    );
    assert_eq!(
        invoke(&phase("retire")),
        json!({"Phase": "retire", "Changed": true, "AcceptedValues": 1})
    );
    assert_eq!(
        document(&clients.secrets, &secret_id).await.0,
        json!({"current": pending})
    );

    let given = "c".repeat(40);
    let answer = invoke(&custom_resource(
        "Create",
        &id,
        &[("s3", "X-Origin-Verify", &given)],
        None,
    ));
    assert_eq!(
        answer["PhysicalResourceId"],
        format!("{id}/origin-custom-headers")
    );
    assert_eq!(answer["Data"]["HeaderNames"], "X-Origin-Verify");
    assert_eq!(
        headers(&read_config(&clients.cloudfront, &id).await, "s3"),
        owned(&[("X-Origin-Verify", &given)])
    );

    invoke(&phase("prepare"));
    let err = function
        .invoke(&rotation(
            "promote",
            &secret_id,
            &id,
            "nope",
            "X-Origin-Verify",
        ))
        .expect_err("an unknown origin fails");
    assert!(err.contains("OriginHeaderError"), "{err}");
    assert!(err.contains(r#"its origins are: "alb", "s3""#), "{err}");

    assert_eq!(
        invoke(&terraform(&secret_id, "delete")),
        json!({"SecretId": secret_id, "VersionId": null})
    );

    // A deployment of the previous version, upgraded: the value the origin sends is adopted.
    let upgraded = create_secret(&clients.secrets, "upgraded-origin-header").await;
    let previous = legacy_input(&id, "alb", "X-Origin-Verify");
    let answer = invoke(&legacy_update(&upgraded, previous.clone()));
    let (adopted, version) = document(&clients.secrets, &upgraded).await;
    assert_eq!(answer, json!({"SecretId": upgraded, "VersionId": version}));
    assert_eq!(adopted, json!({"current": pending}));
    assert_eq!(
        invoke(&legacy_delete(previous)),
        json!({"SecretId": null, "VersionId": null})
    );

    let log = function.bootstrap.output();
    for line in log.lines() {
        let entry: Value = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("not a JSON log line ({err}): {line}"));
        assert!(entry["level"].is_string(), "{line}");
    }
    for message in [
        "first value generated and stored",
        "value the origin sends adopted and stored",
        "origin header sends the pending value",
        "rotation phase done",
        "custom resource done",
    ] {
        assert!(
            log.contains(&format!(r#""message":"{message}""#)),
            "{message}: {log}"
        );
    }
    let mut secrets = values(&first);
    secrets.extend(values(&document(&clients.secrets, &secret_id).await.0));
    secrets.extend([pending.to_owned(), given]);
    assert_shows_none(&log, &secrets);
    assert_shows_none(&err, &secrets);
}
