//! The built `bootstrap` in the real Lambda runtime loop: `cargo lambda watch` serves the Runtime
//! API, the binary polls it as on Lambda (configured only by the environment, as there), and
//! `cargo lambda invoke` sends both event shapes.
//!
//! `--only-lambda-apis` keeps cargo-lambda from building the function itself: the test runs the
//! binary `cargo test` just built, with no second cargo build inside the test.

use std::process::Command;

use serde_json::Value;

use crate::support::{
    Moto, Process, create_distribution, custom_resource, free_port, headers, input, invocation,
    owned, read_config, tool,
};

/// A function served by `cargo lambda watch`, and its invoke port.
struct Function {
    port: u16,
    // Dropped in this order: the function first, then the API it polls.
    bootstrap: Process,
    _watch: Process,
}

impl Function {
    fn start(moto: &Moto) -> Self {
        let port = free_port();
        let mut watch = Command::new(tool("cargo-lambda"));
        watch.args(["lambda", "watch", "--only-lambda-apis", "--invoke-address"]);
        watch.args(["127.0.0.1", "--invoke-port", &port.to_string()]);
        watch
            .arg("--manifest-path")
            .arg(env!("CARGO_MANIFEST_PATH"));
        let mut watch = Process::start("cargo-lambda-watch", port, watch);
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
            .env("AWS_REGION", "us-east-1")
            // Nothing may look for credentials or a region beyond loopback.
            .env("AWS_EC2_METADATA_DISABLED", "true");
        Self {
            port,
            bootstrap: Process::start("bootstrap", port, bootstrap),
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
async fn both_event_shapes_through_the_lambda_runtime() {
    let moto = Moto::start();
    let client = moto.client();
    let id = create_distribution(&client, &[("alb", &[("X-Other", "keep")]), ("s3", &[])]).await;
    let function = Function::start(&moto);

    let v1 = input(&id, "alb", "X-Origin-Verify", "1");
    let created = function
        .invoke(&invocation(&v1, "create", None))
        .unwrap_or_else(|err| panic!("{err}\nfunction log:\n{}", function.bootstrap.output()));
    let secret = created["HeaderValue"].as_str().expect("a value").to_owned();
    assert_eq!(secret.len(), 64);
    assert_eq!(
        headers(&read_config(&client, &id).await, "alb"),
        owned(&[("X-Other", "keep"), ("X-Origin-Verify", &secret)])
    );

    let given = "c".repeat(40);
    let answer = function
        .invoke(&custom_resource(
            "Create",
            &id,
            &[("s3", "X-Origin-Verify", &given)],
            None,
        ))
        .expect("the custom resource is created");
    assert_eq!(
        answer["PhysicalResourceId"],
        format!("{id}/origin-custom-headers")
    );
    assert_eq!(answer["Data"]["HeaderNames"], "X-Origin-Verify");
    assert_eq!(
        headers(&read_config(&client, &id).await, "s3"),
        owned(&[("X-Origin-Verify", &given)])
    );

    let err = function
        .invoke(&invocation(
            &input(&id, "nope", "X-Origin-Verify", "1"),
            "create",
            None,
        ))
        .expect_err("an unknown origin fails");
    assert!(err.contains("OriginHeaderError"), "{err}");
    assert!(err.contains(r#"its origins are: "alb", "s3""#), "{err}");

    function
        .invoke(&invocation(&v1, "delete", Some(&v1)))
        .expect("deleted");
    assert_eq!(
        headers(&read_config(&client, &id).await, "alb"),
        owned(&[("X-Other", "keep")])
    );

    let log = function.bootstrap.output();
    for line in log.lines() {
        let entry: Value = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("not a JSON log line ({err}): {line}"));
        assert!(entry["level"].is_string(), "{line}");
    }
    assert!(
        log.contains(r#""message":"origin header in place""#),
        "{log}"
    );
    assert!(
        !log.contains(&secret) && !log.contains(&given),
        "a secret was logged:\n{log}"
    );
}
