//! Reading and writing a distribution's config safely: GetDistributionConfig, decide, then
//! UpdateDistribution with `IfMatch` set to the ETag read. If someone else changed the distribution
//! in between (PreconditionFailed), read again and decide again, a bounded number of times with
//! jittered exponential backoff. Nothing is written when the decision changes nothing.

use std::time::Duration;

use aws_sdk_cloudfront::Client;
use aws_sdk_cloudfront::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_cloudfront::operation::get_distribution_config::GetDistributionConfigError;
use aws_sdk_cloudfront::operation::update_distribution::UpdateDistributionError;
use aws_sdk_cloudfront::types::DistributionConfig;
use tracing::{info, warn};

use crate::Error;
use crate::change::{self, Edit};

/// How often, and how patiently, a conflicting write is retried.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Writes tried in all.
    pub attempts: u32,
    /// Wait before the second try; doubled for each further one, with up to 50 % jitter.
    pub first_backoff: Duration,
}

/// What is done in production: five tries, 0.2 s to 1.6 s apart.
pub const RETRY: Retry = Retry {
    attempts: 5,
    first_backoff: Duration::from_millis(200),
};

/// How an edit ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome<T> {
    /// The distribution does not exist.
    Missing,
    /// The decision's extra result, and whether an update was written.
    Done { decided: T, updated: bool },
}

/// Reads the config, lets `decide` turn it into edits (and a result), and writes them.
pub async fn edit<T>(
    client: &Client,
    distribution_id: &str,
    retry: Retry,
    mut decide: impl FnMut(&DistributionConfig) -> Result<(Vec<Edit>, T), Error>,
) -> Result<Outcome<T>, Error> {
    let mut backoff = retry.first_backoff;
    for attempt in 1..=retry.attempts {
        let read = match client
            .get_distribution_config()
            .id(distribution_id)
            .send()
            .await
        {
            Ok(read) => read,
            Err(SdkError::ServiceError(err))
                if matches!(err.err(), GetDistributionConfigError::NoSuchDistribution(_)) =>
            {
                return Ok(Outcome::Missing);
            }
            Err(err) => {
                return Err(format!(
                    "cannot read distribution {distribution_id}: {}",
                    describe(&err)
                )
                .into());
            }
        };
        let mut config = read.distribution_config.ok_or_else(|| {
            format!("CloudFront returned no config for distribution {distribution_id}")
        })?;
        let (edits, decided) = decide(&config)?;
        if !change::apply(&mut config, &edits)? {
            info!(
                distribution_id,
                "origin headers already as wanted; no update"
            );
            return Ok(Outcome::Done {
                decided,
                updated: false,
            });
        }
        let mut update = client
            .update_distribution()
            .id(distribution_id)
            .distribution_config(config);
        if let Some(etag) = read.e_tag {
            update = update.if_match(etag);
        }
        match update.send().await {
            Ok(_) => {
                info!(distribution_id, attempt, "origin headers updated");
                return Ok(Outcome::Done {
                    decided,
                    updated: true,
                });
            }
            Err(SdkError::ServiceError(err))
                if matches!(err.err(), UpdateDistributionError::PreconditionFailed(_)) =>
            {
                if attempt < retry.attempts {
                    warn!(distribution_id, attempt, retry_in = ?backoff, "distribution changed meanwhile; reading it again");
                    tokio::time::sleep(jittered(backoff)).await;
                    backoff *= 2;
                }
            }
            Err(err) => {
                return Err(format!(
                    "cannot update distribution {distribution_id}: {}",
                    describe(&err)
                )
                .into());
            }
        }
    }
    Err(format!(
        "distribution {distribution_id} kept changing while this function tried to update it ({} attempts); \
         run the apply again once other changes to it have finished",
        retry.attempts
    )
    .into())
}

fn jittered(backoff: Duration) -> Duration {
    backoff.mul_f64(1.0 + rand::random::<f64>() / 2.0)
}

/// What went wrong, in words that carry no secret: the service's error code and message (CloudFront
/// does not echo the request's config back), or the kind of transport failure. A response that
/// could not be read is not quoted, since a config response holds the header values.
fn describe<E: ProvideErrorMetadata + std::error::Error + 'static>(err: &SdkError<E>) -> String {
    match err {
        SdkError::ServiceError(service) => {
            let meta = service.err();
            format!(
                "{}: {}",
                meta.code().unwrap_or("error"),
                meta.message().unwrap_or("no message")
            )
        }
        SdkError::DispatchFailure(_) => format!(
            "CloudFront could not be reached ({})",
            DisplayErrorContext(err)
        ),
        SdkError::TimeoutError(_) => "CloudFront did not answer in time".to_owned(),
        SdkError::ResponseError(_) => "CloudFront's answer could not be read".to_owned(),
        _ => "the request could not be built".to_owned(),
    }
}
