//! custom-header-fn: puts the secret origin header on the CloudFront distribution, so that the
//! load balancer, which refuses requests without it, can only be reached through CloudFront.
//!
//! The Rust successor of the replaced stack's CloudFormation custom resource. `main.rs` only starts
//! the Lambda runtime; [`handle`] is the whole function, a plain async function over the event,
//! testable without Lambda.
//!
//! - [`event`]: the two event shapes (Terraform CRUD invocation, CloudFormation custom resource).
//! - [`change`]: the pure edit of a distribution's origin headers, under CloudFront's rules.
//! - [`secret`]: generating and checking the header value.
//! - [`distribution`]: read, decide, write with `IfMatch`, retry on conflicts.

pub mod change;
pub mod distribution;
pub mod event;
pub mod secret;

use aws_sdk_cloudfront::Client;
use serde_json::{Value, json};
use tracing::info;

use change::Edit;
use distribution::{Outcome, RETRY, Retry};
use event::{
    Action, CustomResourceEvent, CustomResourceResponse, Event, HeaderInput, HeaderOutput,
    RequestType,
};

/// What the function fails with; its message is what Terraform or CloudFormation shows the user.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Handles one event of either shape.
pub async fn handle(client: &Client, payload: Value) -> Result<Value, Error> {
    handle_with(client, payload, RETRY).await
}

/// [`handle`] with a chosen retry policy (tests use a fast one).
pub async fn handle_with(client: &Client, payload: Value, retry: Retry) -> Result<Value, Error> {
    match event::parse(payload)? {
        Event::Terraform(event) => {
            let output = match event.action {
                Action::Create | Action::Update => {
                    put(
                        client,
                        &event.input,
                        event.action,
                        event.previous.as_ref(),
                        retry,
                    )
                    .await?
                }
                Action::Delete => remove(client, &event.input, retry).await?,
            };
            Ok(serde_json::to_value(output)?)
        }
        Event::CustomResource(event) => Ok(serde_json::to_value(
            custom_resource(client, event, retry).await?,
        )?),
    }
}

/// Create or update: the header on the named origin, with the given value, the value already
/// there, or a new one (always a new one when the rotation token changed).
async fn put(
    client: &Client,
    input: &HeaderInput,
    action: Action,
    previous: Option<&HeaderInput>,
    retry: Retry,
) -> Result<HeaderOutput, Error> {
    change::check_name(&input.header_name)?;
    if let Some(given) = &input.header_value {
        secret::check(given)?;
    }
    let rotate = action == Action::Update
        && previous.is_some_and(|p| p.rotation_token != input.rotation_token);
    // Drawn once, so that a retried write does not hand out a different secret.
    let fresh = secret::generate()?;
    // Where the header was before, if the update moved or renamed it within this distribution.
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
        header = %input.header_name,
        origin = %input.origin_id,
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

/// Delete: removes exactly the header this function manages; a distribution or origin that no
/// longer exists has nothing to remove, so `terraform destroy` never hangs on it.
async fn remove(client: &Client, input: &HeaderInput, retry: Retry) -> Result<HeaderOutput, Error> {
    let edit = Edit::Remove {
        origin_id: input.origin_id.clone(),
        name: input.header_name.clone(),
    };
    let outcome = distribution::edit(client, &input.distribution_id, retry, |_| {
        Ok((vec![edit.clone()], ()))
    })
    .await?;
    let gone = outcome == Outcome::Missing;
    info!(header = %input.header_name, origin = %input.origin_id, distribution_gone = gone, "origin header removed");
    Ok(HeaderOutput {
        header_name: input.header_name.clone(),
        header_value: None,
        previous_header_value: None,
    })
}

/// The replaced stack's custom resource: the listed headers on the listed origins. An update also
/// removes headers the old properties had and the new ones do not; a delete removes them all (the
/// original ignored Delete and left them behind).
async fn custom_resource(
    client: &Client,
    event: CustomResourceEvent,
    retry: Retry,
) -> Result<CustomResourceResponse, Error> {
    let properties = &event.resource_properties;
    let listed = |props: &event::HeaderProperties| -> Vec<(String, String, String)> {
        props
            .origins
            .iter()
            .flat_map(|origin| {
                origin.custom_headers.iter().map(|header| {
                    (
                        origin.origin_id.clone(),
                        header.header_name.clone(),
                        header.header_value.clone(),
                    )
                })
            })
            .collect()
    };
    let wanted = listed(properties);
    let removals = |headers: Vec<(String, String, String)>| {
        headers
            .into_iter()
            .map(|(origin_id, name, _)| Edit::Remove { origin_id, name })
            .collect::<Vec<_>>()
    };
    let edits = match event.request_type {
        RequestType::Delete => removals(wanted.clone()),
        RequestType::Create | RequestType::Update => {
            let stale = event
                .old_resource_properties
                .as_ref()
                .filter(|old| old.distribution_id == properties.distribution_id)
                .map(|old| {
                    listed(old)
                        .into_iter()
                        .filter(|(origin, name, _)| {
                            !wanted
                                .iter()
                                .any(|(o, n, _)| o == origin && n.eq_ignore_ascii_case(name))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut edits = removals(stale);
            edits.extend(wanted.iter().map(|(origin_id, name, value)| Edit::Set {
                origin_id: origin_id.clone(),
                name: name.clone(),
                value: value.clone(),
            }));
            edits
        }
    };
    let outcome = distribution::edit(client, &properties.distribution_id, retry, |_| {
        Ok((edits.clone(), ()))
    })
    .await?;
    if outcome == Outcome::Missing && event.request_type != RequestType::Delete {
        return Err(format!(
            "CloudFront has no distribution {:?}: check DistributionId",
            properties.distribution_id
        )
        .into());
    }
    let names: Vec<&str> = wanted.iter().map(|(_, name, _)| name.as_str()).collect();
    Ok(CustomResourceResponse {
        // Stable per distribution, so CloudFormation replaces (create new, delete old) only when
        // the distribution changes.
        physical_resource_id: format!("{}/origin-custom-headers", properties.distribution_id),
        data: json!({ "DistributionId": properties.distribution_id, "HeaderNames": names.join(",") }),
    })
}

/// JSON log lines on standard output (CloudWatch Logs), filtered by `RUST_LOG` (default info).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .without_time()
        .init();
}
