//! Terraform's `aws_lambda_invocation` (`lifecycle_scope = "CRUD"`): one header on one origin.
//!
//! Terraform invokes the function only when the resource is created, when its `input` changes,
//! and when it is destroyed; an apply that changes nothing invokes nothing and reuses the stored
//! result. So every invocation is written to be safe to repeat: a create or update that finds
//! the wanted value already in place writes nothing and reports that value again.

use aws_sdk_cloudfront::Client;
use tracing::info;

use crate::Error;
use crate::change::{self, Edit};
use crate::distribution::{self, Outcome, Retry};
use crate::event::{Action, HeaderInput, HeaderOutput, TerraformEvent};
use crate::secret;

/// Runs one lifecycle step.
pub async fn handle(
    client: &Client,
    event: &TerraformEvent,
    retry: Retry,
) -> Result<HeaderOutput, Error> {
    match event.action {
        Action::Create | Action::Update => put(client, event, retry).await,
        Action::Delete => remove(client, &event.input, retry).await,
    }
}

/// Create or update: the header on the named origin, with the given value, the value already
/// there, or a new one (always a new one when the rotation token changed).
async fn put(client: &Client, event: &TerraformEvent, retry: Retry) -> Result<HeaderOutput, Error> {
    let input = &event.input;
    // Checked here too (apply checks again) so that a bad name fails before any request.
    change::check_name(&input.header_name)?;
    if let Some(given) = &input.header_value {
        secret::check(given)?;
    }
    let previous = match event.action {
        Action::Update => event.previous.as_ref(),
        _ => None,
    };
    let rotate = previous.is_some_and(|p| p.rotation_token != input.rotation_token);
    // Drawn once, so that a retried write does not hand out a different secret.
    let fresh = secret::generate()?;
    // Where the header was before, if the update moved or renamed it within this distribution:
    // its value moves along, and the old header goes.
    let moved_from = previous.filter(|p| {
        p.distribution_id == input.distribution_id
            && (p.origin_id != input.origin_id
                || !p.header_name.eq_ignore_ascii_case(&input.header_name))
    });

    let outcome = distribution::edit(client, &input.distribution_id, retry, |config| {
        let current = change::header_value(config, &input.origin_id, &input.header_name)?;
        let carried = moved_from.and_then(|p| {
            change::header_value(config, &p.origin_id, &p.header_name)
                .ok()
                .flatten()
        });
        let existing = current.or(carried).map(str::to_owned);
        let value = match (&input.header_value, rotate, &existing) {
            (Some(given), _, _) => given.clone(),
            (None, false, Some(existing)) => existing.clone(),
            (None, _, _) => fresh.clone(),
        };
        let replaced = existing.filter(|existing| *existing != value);
        let mut edits = Vec::new();
        if let Some(old) = moved_from {
            edits.push(Edit::Remove {
                origin_id: old.origin_id.clone(),
                name: old.header_name.clone(),
            });
        }
        edits.push(Edit::Set {
            origin_id: input.origin_id.clone(),
            name: input.header_name.clone(),
            value: value.clone(),
        });
        Ok((edits, (value, replaced)))
    })
    .await?;
    let Outcome::Done {
        decided: (value, replaced),
        updated,
    } = outcome
    else {
        return Err(format!(
            "CloudFront has no distribution {:?}: check DistributionId (the cdn module's distribution_id output)",
            input.distribution_id
        )
        .into());
    };
    // A move to another distribution leaves nothing behind on the old one.
    if let Some(old) = previous.filter(|p| p.distribution_id != input.distribution_id) {
        remove(client, old, retry).await?;
    }
    info!(
        distribution_id = %input.distribution_id,
        origin_id = %input.origin_id,
        header = %input.header_name,
        rotated = replaced.is_some(),
        updated,
        "origin header in place"
    );
    Ok(HeaderOutput {
        header_name: input.header_name.clone(),
        header_value: Some(value),
        previous_header_value: replaced,
    })
}

/// Delete: removes the named header from the named origin and nothing else. A distribution or
/// origin that no longer exists has nothing to remove, so `terraform destroy` never hangs on it.
/// The answer keeps the shape of the others, with no value: Terraform discards it.
async fn remove(client: &Client, input: &HeaderInput, retry: Retry) -> Result<HeaderOutput, Error> {
    let edit = Edit::Remove {
        origin_id: input.origin_id.clone(),
        name: input.header_name.clone(),
    };
    let outcome = distribution::edit(client, &input.distribution_id, retry, |_| {
        Ok((vec![edit.clone()], ()))
    })
    .await?;
    info!(
        distribution_id = %input.distribution_id,
        origin_id = %input.origin_id,
        header = %input.header_name,
        distribution_gone = outcome == Outcome::Missing,
        "origin header removed"
    );
    Ok(HeaderOutput {
        header_name: input.header_name.clone(),
        header_value: None,
        previous_header_value: None,
    })
}
