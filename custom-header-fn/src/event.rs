//! The two event shapes the function accepts, and what each expects back.
//!
//! 1. Terraform's `aws_lambda_invocation` with `lifecycle_scope = "CRUD"`: the module's input object
//!    plus the provider's `tf` object, `{"action": "create"|"update"|"delete", "prev_input": …}`.
//! 2. The CloudFormation custom resource of the replaced CDK stack (`RequestType`,
//!    `ResourceProperties`), answered as the CDK provider framework expects.
//!
//! The shape is decided by the `RequestType` key, so that a malformed event of either kind gets
//! that kind's own error message (which field is missing) rather than "matches neither shape".

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A parsed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Terraform(TerraformEvent),
    CustomResource(CustomResourceEvent),
}

/// What to put where, as the Terraform module passes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct HeaderInput {
    pub distribution_id: String,
    pub origin_id: String,
    pub header_name: String,
    /// The secret; when absent the value on the origin is kept, or one is generated.
    #[serde(default)]
    pub header_value: Option<String>,
    /// Changing it generates a new secret.
    #[serde(default)]
    pub rotation_token: Option<String>,
}

/// Which lifecycle step Terraform is performing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Delete,
}

/// The Terraform event: the input, the action, and the input of the previous invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerraformEvent {
    pub input: HeaderInput,
    pub action: Action,
    pub previous: Option<HeaderInput>,
}

/// The answer to Terraform, read by the listener rule through `jsondecode(…result)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HeaderOutput {
    pub header_name: String,
    /// The secret now on the origin (null after a delete).
    pub header_value: Option<String>,
    /// The secret it replaced, which the load balancer keeps accepting while CloudFront propagates.
    pub previous_header_value: Option<String>,
}

/// CloudFormation's request types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum RequestType {
    Create,
    Update,
    Delete,
}

/// The custom resource event (fields CloudFormation adds that the function does not need are
/// ignored).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CustomResourceEvent {
    pub request_type: RequestType,
    pub resource_properties: HeaderProperties,
    #[serde(default)]
    pub old_resource_properties: Option<HeaderProperties>,
}

/// The custom resource's properties: headers to put on origins of one distribution.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HeaderProperties {
    pub distribution_id: String,
    pub origins: Vec<OriginHeaders>,
}

impl HeaderProperties {
    /// Every listed header with the id of its origin.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &CustomHeader)> {
        self.origins.iter().flat_map(|origin| {
            origin
                .custom_headers
                .iter()
                .map(|header| (origin.origin_id.as_str(), header))
        })
    }
}

/// The headers for one origin.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OriginHeaders {
    pub origin_id: String,
    pub custom_headers: Vec<CustomHeader>,
}

/// One header.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CustomHeader {
    pub header_name: String,
    pub header_value: String,
}

/// The answer the CDK provider framework expects from an `onEvent` handler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CustomResourceResponse {
    pub physical_resource_id: String,
    pub data: Value,
}

/// Why an event was refused.
#[derive(Debug)]
pub struct EventError(String);

impl std::fmt::Display for EventError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EventError {}

/// The key the AWS provider adds to the input (its `terraform_key`, "tf" by default).
const TERRAFORM_KEY: &str = "tf";

/// The fields of [`HeaderInput`]. The previous input keeps only these, so that an apply after a
/// change of the module's input never fails on what an older version passed.
const INPUT_FIELDS: [&str; 5] = [
    "DistributionId",
    "OriginId",
    "HeaderName",
    "HeaderValue",
    "RotationToken",
];

#[derive(Deserialize)]
struct Lifecycle {
    action: Action,
    #[serde(default)]
    prev_input: Option<Value>,
}

/// Reads an event of either shape. Errors say which field is wrong; serde's messages name fields,
/// never the values they hold.
pub fn parse(payload: Value) -> Result<Event, EventError> {
    let Value::Object(mut fields) = payload else {
        return Err(EventError("the event must be a JSON object".to_owned()));
    };
    if fields.contains_key("RequestType") {
        return serde_json::from_value(Value::Object(fields))
            .map(Event::CustomResource)
            .map_err(|err| {
                EventError(format!(
                    "invalid custom resource event: {}",
                    without_values(&err)
                ))
            });
    }
    // Without the provider's object (lifecycle_scope CREATE_ONLY) an invocation can only create.
    let lifecycle = match fields.remove(TERRAFORM_KEY) {
        Some(lifecycle) => serde_json::from_value::<Lifecycle>(lifecycle).map_err(|err| {
            EventError(format!("invalid \"tf\" object: {}", without_values(&err)))
        })?,
        None => Lifecycle {
            action: Action::Create,
            prev_input: None,
        },
    };
    let input = header_input(Value::Object(fields), "input")?;
    let previous = match lifecycle.prev_input {
        Some(Value::Object(mut previous)) => {
            previous.retain(|key, _| INPUT_FIELDS.contains(&key.as_str()));
            Some(header_input(Value::Object(previous), "tf.prev_input")?)
        }
        _ => None,
    };
    Ok(Event::Terraform(TerraformEvent {
        input,
        action: lifecycle.action,
        previous,
    }))
}

fn header_input(value: Value, what: &str) -> Result<HeaderInput, EventError> {
    serde_json::from_value(value)
        .map_err(|err| EventError(format!("invalid {what}: {}", without_values(&err))))
}

/// serde_json's message without its position suffix; serde names fields and expected types, and
/// for a wrong type it quotes the offending value, which could be the secret: drop that part.
fn without_values(err: &serde_json::Error) -> String {
    let message = err.to_string();
    match message.split_once("invalid type: ") {
        Some((_, rest)) => format!(
            "wrong type ({})",
            rest.split(", expected").nth(1).map_or("", str::trim)
        ),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_terraform_crud_events_and_tolerates_old_fields_in_the_previous_input() {
        let event = parse(json!({
            "DistributionId": "E1", "OriginId": "alb", "HeaderName": "X-Origin-Verify", "RotationToken": "2",
            "tf": { "action": "update", "prev_input": {
                "DistributionId": "E1", "OriginId": "alb", "HeaderName": "X-Origin-Verify", "RotationToken": "1",
                "Dropped": "a field an older module passed" } }
        }))
        .unwrap();
        let Event::Terraform(event) = event else {
            panic!("a Terraform event")
        };
        assert_eq!(event.action, Action::Update);
        assert_eq!(event.input.rotation_token.as_deref(), Some("2"));
        assert_eq!(event.previous.unwrap().rotation_token.as_deref(), Some("1"));
    }

    #[test]
    fn an_event_without_tf_is_a_create() {
        let event =
            parse(json!({"DistributionId": "E1", "OriginId": "alb", "HeaderName": "X-A"})).unwrap();
        assert!(matches!(
            event,
            Event::Terraform(TerraformEvent {
                action: Action::Create,
                previous: None,
                ..
            })
        ));
    }

    #[test]
    fn reads_custom_resource_events() {
        let event = parse(json!({
            "RequestType": "Update", "ServiceToken": "arn", "ResponseURL": "https://x", "StackId": "s",
            "ResourceProperties": { "ServiceToken": "arn", "DistributionId": "E1",
                "Origins": [{ "OriginId": "alb", "CustomHeaders": [{ "HeaderName": "X-A", "HeaderValue": "v" }] }] },
            "OldResourceProperties": { "DistributionId": "E1", "Origins": [] }
        }))
        .unwrap();
        let Event::CustomResource(event) = event else {
            panic!("a custom resource event")
        };
        assert_eq!(event.request_type, RequestType::Update);
        assert_eq!(
            event.resource_properties.origins[0].custom_headers[0].header_name,
            "X-A"
        );
        assert!(event.old_resource_properties.is_some());
    }

    #[test]
    fn bad_events_name_the_field_and_never_the_value() {
        let missing = parse(json!({"DistributionId": "E1", "HeaderName": "X"})).unwrap_err();
        assert!(missing.to_string().contains("OriginId"), "{missing}");
        let typo = parse(
            json!({"DistributionId": "E1", "OriginId": "o", "HeaderName": "X", "HeaderValu": "s"}),
        );
        assert!(typo.unwrap_err().to_string().contains("HeaderValu"));
        let wrong = parse(
            json!({"DistributionId": "E1", "OriginId": "o", "HeaderName": "X", "HeaderValue": 12345678}),
        );
        assert!(!wrong.unwrap_err().to_string().contains("12345678"));
        let action = parse(
            json!({"DistributionId": "E1", "OriginId": "o", "HeaderName": "X", "tf": {"action": "replace"}}),
        );
        assert!(action.unwrap_err().to_string().contains("tf"));
        assert!(parse(json!([])).is_err());
    }
}
