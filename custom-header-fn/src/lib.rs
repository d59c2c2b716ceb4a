//! custom-header-fn: keeps the secret origin header's values in Secrets Manager and rotates the
//! header on the CloudFront distribution, so that the load balancer, which refuses requests
//! without it, can only be reached through CloudFront.
//!
//! `main.rs` only starts the Lambda runtime; [`handle`] is the whole function, a plain async
//! function over the event, testable without Lambda. No value ever leaves it in an answer, an
//! error or a log line: Terraform reads the state document from Secrets Manager itself.
//!
//! - [`event`]: the three event shapes and their answers.
//! - [`terraform`]: Terraform's CRUD invocation (a first value in the secret).
//! - [`rotation`]: the three rotation phases, prepare, promote and retire.
//! - [`custom_resource`]: the CloudFormation custom resource of the replaced stack.
//! - [`state`]: the state document (current, pending and previous values).
//! - [`store`]: reading and writing the document in Secrets Manager.
//! - [`secret`]: generating and checking a value.
//! - [`change`]: the pure edit of a distribution's origin headers, under CloudFront's rules.
//! - [`distribution`]: read, decide, write with `IfMatch`, retry on conflicts.
//! - [`propagation`]: Terraform's requests retried while IAM propagates the role's policy.

pub mod change;
pub mod custom_resource;
pub mod distribution;
pub mod event;
pub mod propagation;
pub mod rotation;
pub mod secret;
pub mod state;
pub mod store;
pub mod terraform;

use std::time::{Duration, SystemTime};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_cloudfront::config::SharedHttpClient;
use aws_sdk_cloudfront::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use lambda_runtime::Diagnostic;
use serde_json::Value;

use event::Event;
pub use propagation::Propagation;

/// What the function fails with; its message is what Terraform, CloudFormation or
/// `make rotate-secret` shows the user, so it says what to fix and never contains a value.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The two services the function talks to.
#[derive(Debug, Clone)]
pub struct Clients {
    pub cloudfront: aws_sdk_cloudfront::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
}

impl Clients {
    /// Both clients from one configuration. CloudFront is global: its endpoint rules sign with
    /// the partition's global region (us-east-1) whatever region the configuration names, so the
    /// region that counts is the one Secrets Manager needs, the function's own.
    pub fn new(config: &SdkConfig) -> Self {
        Self {
            cloudfront: aws_sdk_cloudfront::Client::new(config),
            secrets: aws_sdk_secretsmanager::Client::new(config),
        }
    }
}

/// What the function tries again, and how patiently.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// UpdateDistribution refused with PreconditionFailed (someone else changed the
    /// distribution): writes tried in all.
    pub attempts: u32,
    /// Wait before the second write; doubled for each further one, with up to 50 % jitter.
    pub first_backoff: Duration,
    /// Terraform's create and update only: requests refused with AccessDenied while IAM
    /// propagates the role's policy.
    pub propagation: Propagation,
}

/// What is done in production: five writes, 0.2 s to 1.6 s apart; AccessDenied retried for up to
/// a minute, 1 s, 2 s, 4 s then 8 s apart, cut short by [`handle`] so that the function answers
/// before Lambda's timeout.
pub const RETRY: Retry = Retry {
    attempts: 5,
    first_backoff: Duration::from_millis(200),
    propagation: Propagation {
        budget: Duration::from_secs(60),
        first_backoff: Duration::from_secs(1),
    },
};

/// Left of Lambda's timeout after the last retry, for that request and the answer.
const ANSWER_MARGIN: Duration = Duration::from_secs(5);

impl Retry {
    /// This policy with its AccessDenied retries ending [`ANSWER_MARGIN`] before `deadline`, so
    /// that the function fails with its own message rather than being stopped by Lambda.
    pub fn before(self, deadline: SystemTime) -> Self {
        let left = deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .saturating_sub(ANSWER_MARGIN);
        Self {
            propagation: Propagation {
                budget: self.propagation.budget.min(left),
                ..self.propagation
            },
            ..self
        }
    }
}

/// Handles one event of any shape, to be answered before `deadline` (the invocation's, from the
/// Lambda runtime). A failure reaches its caller as
/// `{"errorType": "OriginHeaderError", "errorMessage": …}` rather than under a Rust type name.
pub async fn handle(
    clients: &Clients,
    payload: Value,
    deadline: SystemTime,
) -> Result<Value, Diagnostic> {
    handle_with(clients, payload, RETRY.before(deadline))
        .await
        .map_err(|err| Diagnostic {
            error_type: "OriginHeaderError".to_owned(),
            error_message: err.to_string(),
        })
}

/// [`handle`] with a chosen retry policy, so that tests need not wait out production backoff.
pub async fn handle_with(clients: &Clients, payload: Value, retry: Retry) -> Result<Value, Error> {
    Ok(match event::parse(payload)? {
        Event::Terraform(event) => {
            serde_json::to_value(terraform::handle(clients, &event, retry.propagation).await?)?
        }
        Event::Rotation(event) => {
            serde_json::to_value(rotation::handle(clients, &event, retry).await?)?
        }
        Event::CustomResource(event) => serde_json::to_value(
            custom_resource::handle(&clients.cloudfront, &event, retry).await?,
        )?,
    })
}

/// The clients, configured from the environment like any AWS SDK (so `AWS_ENDPOINT_URL` and the
/// per-service `AWS_ENDPOINT_URL_*` are honoured), with the default credentials chain (on Lambda,
/// the execution role's credentials in `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
/// `AWS_SESSION_TOKEN`). Lambda always sets `AWS_REGION`; without it and any other region source
/// the region is us-east-1, CloudFront's.
pub async fn clients_from_env() -> Clients {
    // The loader's own region chain, not one built beside it: that one would have no HTTP client
    // for IMDS, since the SDK is built without a default one.
    let config = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .load()
        .await;
    let config = match config.region() {
        Some(_) => config,
        None => config
            .into_builder()
            .region(Region::from_static("us-east-1"))
            .build(),
    };
    Clients::new(&config)
}

/// The HTTP client of every request the function makes, credential and region look-ups included:
/// the SDK's hyper 1 client over rustls with ring, trusting the system's CA store (on Lambda's
/// provided.al2023, Amazon Linux's bundle). Plain `http://` endpoints (`AWS_ENDPOINT_URL`) work too.
pub fn http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// JSON log lines on standard output (CloudWatch Logs), at info level. `RUST_LOG` is deliberately
/// not read: at trace level the SDK logs request and response bodies, which carry the secret.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_max_level(tracing::Level::INFO)
        .without_time()
        .init();
}

/// `backoff` lengthened by up to half, so that retries from several invocations spread out.
pub(crate) fn jittered(backoff: Duration) -> Duration {
    backoff.mul_f64(1.0 + rand::random::<f64>() / 2.0)
}

/// `bytes` as lowercase hex, two characters each.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// What went wrong with a request to `service`, in words that carry no value read: the service's
/// error code and message, or the kind of transport failure. A response that could not be read
/// is not quoted, since a config or secret response holds the values.
pub(crate) fn describe<E>(service: &str, err: &SdkError<E>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::ServiceError(failure) => {
            let meta = failure.err();
            format!(
                "{}: {}",
                meta.code().unwrap_or("error"),
                meta.message().unwrap_or("no message")
            )
        }
        SdkError::DispatchFailure(_) => format!(
            "{service} could not be reached ({})",
            DisplayErrorContext(err)
        ),
        SdkError::TimeoutError(_) => format!("{service} did not answer in time"),
        SdkError::ResponseError(_) => format!("{service}'s answer could not be read"),
        _ => "the request could not be built".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_denied_retries_end_before_lambdas_timeout() {
        let budget_before = |seconds: u64| {
            RETRY
                .before(SystemTime::now() + Duration::from_secs(seconds))
                .propagation
                .budget
        };
        // Terraform's `timeout = 30`: about 25 s, the answer's margin left.
        let thirty = budget_before(30);
        assert!(
            thirty <= Duration::from_secs(25) && thirty > Duration::from_secs(24),
            "{thirty:?}"
        );
        assert_eq!(
            budget_before(900),
            Duration::from_secs(60),
            "at most a minute"
        );
        assert_eq!(budget_before(3), Duration::ZERO, "one try only");
        let past = RETRY.before(SystemTime::now() - Duration::from_secs(1));
        assert_eq!(past.propagation.budget, Duration::ZERO);
        assert_eq!(past.attempts, RETRY.attempts, "conflict retries unchanged");
    }
}
