//! Reading and writing a distribution's config safely: GetDistributionConfig, apply the edits,
//! then UpdateDistribution with `IfMatch` set to the ETag read. If someone else changed the
//! distribution in between (PreconditionFailed), read again and apply again, a bounded number of
//! times with jittered exponential backoff. Nothing is written when the edits change nothing.
//!
//! GetDistributionConfig alone, for the value an origin's header sends: the permission the
//! previous version of the module's policy also granted, when a deployment of it is upgraded.
//!
//! And GetDistribution, for what only it tells: whether CloudFront has deployed the config.

use aws_sdk_cloudfront::Client;
use aws_sdk_cloudfront::error::SdkError;
use aws_sdk_cloudfront::operation::get_distribution::GetDistributionError;
use aws_sdk_cloudfront::operation::get_distribution_config::GetDistributionConfigError;
use aws_sdk_cloudfront::operation::update_distribution::UpdateDistributionError;
use aws_sdk_cloudfront::types::DistributionConfig;
use tracing::{info, warn};

use crate::change::{self, Edit};
use crate::propagation::cannot;
use crate::{Error, Retry, describe, jittered};

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

/// The error for a distribution that does not exist where it must: the id is wrong.
pub(crate) fn missing(distribution_id: &str) -> String {
    format!("CloudFront has no distribution {distribution_id:?}: check DistributionId")
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
        let Some((mut config, e_tag)) = read_config(client, distribution_id).await? else {
            return Ok(Outcome::Missing);
        };
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
        if let Some(etag) = e_tag {
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

/// The config, as GetDistributionConfig reads it, or `None` when the distribution does not exist.
/// A refusal for lack of permission is an [`AccessDenied`](crate::propagation::AccessDenied).
pub async fn config(
    client: &Client,
    distribution_id: &str,
) -> Result<Option<DistributionConfig>, Error> {
    Ok(read_config(client, distribution_id)
        .await?
        .map(|(config, _)| config))
}

/// GetDistributionConfig: the config and its ETag.
async fn read_config(
    client: &Client,
    distribution_id: &str,
) -> Result<Option<(DistributionConfig, Option<String>)>, Error> {
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
            return Ok(None);
        }
        Err(err) => {
            let what = format!("read distribution {distribution_id}");
            return Err(cannot(what, describe("CloudFront", &err), &err));
        }
    };
    let config = read.distribution_config.ok_or_else(|| {
        format!("CloudFront returned no config for distribution {distribution_id}")
    })?;
    Ok(Some((config, read.e_tag)))
}

/// A distribution as GetDistribution shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// `InProgress` until every edge location has the latest config, then `Deployed`.
    pub status: String,
    pub config: DistributionConfig,
}

/// The distribution's status and config, or `None` when it does not exist. A refusal for lack of
/// permission is an [`AccessDenied`](crate::propagation::AccessDenied).
pub async fn read(client: &Client, distribution_id: &str) -> Result<Option<Snapshot>, Error> {
    let read = match client.get_distribution().id(distribution_id).send().await {
        Ok(read) => read,
        Err(SdkError::ServiceError(err))
            if matches!(err.err(), GetDistributionError::NoSuchDistribution(_)) =>
        {
            return Ok(None);
        }
        Err(err) => {
            let what = format!("read distribution {distribution_id}");
            return Err(cannot(what, describe("CloudFront", &err), &err));
        }
    };
    let no_config = || format!("CloudFront returned no config for distribution {distribution_id}");
    let distribution = read.distribution.ok_or_else(no_config)?;
    Ok(Some(Snapshot {
        status: distribution.status,
        config: distribution.distribution_config.ok_or_else(no_config)?,
    }))
}
