//! The replaced CDK stack's custom resource, so that this function can take the Node function's
//! place as the `onEvent` handler of the CDK provider framework (which talks to CloudFormation).
//!
//! Create and update put the listed headers on the listed origins; an update also removes the
//! headers the old properties listed and the new ones do not; delete removes the listed headers
//! (the original ignored Delete and left them behind).
//!
//! The values are the stack's, as they were for the Node function: only CloudFront's own rules
//! apply to them (see [`crate::change`]), not the stricter ones of the state document's values.

use aws_sdk_cloudfront::Client;
use serde_json::json;
use tracing::info;

use crate::Error;
use crate::Retry;
use crate::change::Edit;
use crate::distribution::{self, Outcome};
use crate::event::{CustomResourceEvent, CustomResourceResponse, HeaderProperties, RequestType};

/// Handles one CloudFormation request.
pub async fn handle(
    client: &Client,
    event: &CustomResourceEvent,
    retry: Retry,
) -> Result<CustomResourceResponse, Error> {
    let properties = &event.resource_properties;
    let edits = match event.request_type {
        RequestType::Delete => removals(properties).collect(),
        RequestType::Create | RequestType::Update => {
            let listed = |origin_id: &str, name: &str| {
                properties
                    .headers()
                    .any(|(o, h)| o == origin_id && h.header_name.eq_ignore_ascii_case(name))
            };
            let mut edits: Vec<Edit> = event
                .old_resource_properties
                .iter()
                .filter(|old| old.distribution_id == properties.distribution_id)
                .flat_map(removals)
                .filter(|edit| match edit {
                    Edit::Remove { origin_id, name } => !listed(origin_id, name),
                    Edit::Set { .. } => false,
                })
                .collect();
            edits.extend(properties.headers().map(|(origin_id, header)| Edit::Set {
                origin_id: origin_id.to_owned(),
                name: header.header_name.clone(),
                value: header.header_value.clone(),
            }));
            edits
        }
    };
    let outcome = distribution::edit(client, &properties.distribution_id, retry, &edits).await?;
    if outcome == Outcome::Missing && event.request_type != RequestType::Delete {
        return Err(distribution::missing(&properties.distribution_id).into());
    }
    let names: Vec<&str> = properties
        .headers()
        .map(|(_, header)| header.header_name.as_str())
        .collect();
    info!(
        distribution_id = %properties.distribution_id,
        request_type = ?event.request_type,
        headers = %names.join(","),
        distribution_gone = outcome == Outcome::Missing,
        "custom resource done"
    );
    Ok(CustomResourceResponse {
        // Stable per distribution, so CloudFormation replaces the resource (create the new, delete
        // the old) only when the distribution changes.
        physical_resource_id: format!("{}/origin-custom-headers", properties.distribution_id),
        data: json!({ "DistributionId": properties.distribution_id, "HeaderNames": names.join(",") }),
    })
}

/// The removal of every header `properties` lists.
fn removals(properties: &HeaderProperties) -> impl Iterator<Item = Edit> + '_ {
    properties
        .headers()
        .map(|(origin_id, header)| Edit::Remove {
            origin_id: origin_id.to_owned(),
            name: header.header_name.clone(),
        })
}
