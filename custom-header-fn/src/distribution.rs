//! Reading and writing a distribution's config safely: GetDistributionConfig, apply the edits,
//! then UpdateDistribution with `IfMatch` set to the ETag read. If someone else changed the
//! distribution in between (PreconditionFailed), read again and apply again, a bounded number of
//! times with jittered exponential backoff. Nothing is written when the edits change nothing.
//!
//! And GetDistribution, for what only it tells: whether CloudFront has deployed the config.

use std::time::Duration;

use aws_sdk_cloudfront::Client;
use aws_sdk_cloudfront::error::SdkError;
use aws_sdk_cloudfront::operation::get_distribution::GetDistributionError;
use aws_sdk_cloudfront::operation::get_distribution_config::GetDistributionConfigError;
use aws_sdk_cloudfront::operation::update_distribution::UpdateDistributionError;
use aws_sdk_cloudfront::types::DistributionConfig;
use tracing::{info, warn};

use crate::change::{self, Edit};
use crate::{Error, describe};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The distribution does not exist.
    Missing,
    /// The config already was as wanted: no update.
    Unchanged,
    /// An update was written.
    Updated,
}

/// Reads the config, makes `edits` on it, and writes it back.
pub async fn edit(
    client: &Client,
    distribution_id: &str,
    retry: Retry,
    edits: &[Edit],
) -> Result<Outcome, Error> {
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
                    describe("CloudFront", &err)
                )
                .into());
            }
        };
        let mut config = read.distribution_config.ok_or_else(|| {
            format!("CloudFront returned no config for distribution {distribution_id}")
        })?;
        if !change::apply(&mut config, edits)? {
            info!(
                distribution_id,
                "origin headers already as wanted; no update"
            );
            return Ok(Outcome::Unchanged);
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
                return Ok(Outcome::Updated);
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
                    describe("CloudFront", &err)
                )
                .into());
            }
        }
    }
    Err(format!(
        "distribution {distribution_id} kept changing while this function tried to update it ({} attempts); \
         try again once other changes to it have finished",
        retry.attempts
    )
    .into())
}

fn jittered(backoff: Duration) -> Duration {
    backoff.mul_f64(1.0 + rand::random::<f64>() / 2.0)
}

/// A distribution as GetDistribution shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// `InProgress` until every edge location has the latest config, then `Deployed`.
    pub status: String,
    pub config: DistributionConfig,
}

/// The distribution's status and config, or `None` when it does not exist.
pub async fn read(client: &Client, distribution_id: &str) -> Result<Option<Snapshot>, Error> {
    let read = match client.get_distribution().id(distribution_id).send().await {
        Ok(read) => read,
        Err(SdkError::ServiceError(err))
            if matches!(err.err(), GetDistributionError::NoSuchDistribution(_)) =>
        {
            return Ok(None);
        }
        Err(err) => {
            return Err(format!(
                "cannot read distribution {distribution_id}: {}",
                describe("CloudFront", &err)
            )
            .into());
        }
    };
    let no_config = || format!("CloudFront returned no config for distribution {distribution_id}");
    let distribution = read.distribution.ok_or_else(no_config)?;
    Ok(Some(Snapshot {
        status: distribution.status,
        config: distribution.distribution_config.ok_or_else(no_config)?,
    }))
}
