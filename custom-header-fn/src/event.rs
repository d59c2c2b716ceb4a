//! The three event shapes the function accepts, and what each expects back.
//!
//! 1. Terraform's `aws_lambda_invocation` with `lifecycle_scope = "CRUD"`: the module's input
//!    (`{"SecretId": …}`) plus the provider's `tf` object, `{"action": "create"|"update"|"delete",
//!    "prev_input": …}`.
//! 2. A rotation phase, which `make rotate-secret` sends with `aws lambda invoke`:
//!    `{"Rotate": "prepare"|"promote"|"retire", "SecretId", "DistributionId", "OriginId",
//!    "HeaderName"}`.
//! 3. The CloudFormation custom resource of the replaced CDK stack (`RequestType`,
//!    `ResourceProperties`), answered as the CDK provider framework expects.
//!
//! The shape is decided by the `RequestType` and `Rotate` keys, so that a malformed event of any
//! kind gets that kind's own error message (which field is missing) rather than "matches no
//! shape". No answer carries a value: Terraform reads them from Secrets Manager.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A parsed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Terraform(TerraformEvent),
    Rotation(RotationEvent),
    CustomResource(CustomResourceEvent),
}

/// Which secret holds the state document, as the Terraform module passes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct SecretInput {
    pub secret_id: String,
}

/// Which lifecycle step Terraform is performing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Delete,
}

/// The Terraform event: the input and the action. The previous input does not matter: every
/// create or update ensures the same thing, a valid document in the secret now named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerraformEvent {
    pub input: SecretInput,
    pub action: Action,
}

/// The answer to Terraform: which version of the secret holds the document (null after a
/// delete). Never a value, so nothing secret lands in Terraform's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TerraformOutput {
    pub secret_id: String,
    pub version_id: Option<String>,
}

/// A rotation's phases, run in this order with a Terraform apply after prepare and after retire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// A new value becomes `pending`, for the load balancer to accept.
    Prepare,
    /// CloudFront sends `pending`, which becomes `current`; the old one becomes `previous`.
    Promote,
    /// Once CloudFront has deployed the new value, `previous` goes.
    Retire,
}

/// One rotation phase, and where the header is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct RotationEvent {
    pub rotate: Phase,
    pub secret_id: String,
    pub distribution_id: String,
    pub origin_id: String,
    pub header_name: String,
}

/// The answer to a rotation phase: whether it wrote anything, and how many values the load
/// balancer must accept now (what the next Terraform apply gives it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RotationOutput {
    pub phase: Phase,
    pub changed: bool,
    pub accepted_values: usize,
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

/// The provider's object; its `prev_input` is not needed, and serde leaves it aside.
#[derive(Deserialize)]
struct Lifecycle {
    action: Action,
}

/// Reads an event of any shape. Errors say which field is wrong; serde's messages name fields,
/// never the values they hold.
pub fn parse(payload: Value) -> Result<Event, EventError> {
    let Value::Object(mut fields) = payload else {
        return Err(EventError("the event must be a JSON object".to_owned()));
    };
    if fields.contains_key("RequestType") {
        return read(Value::Object(fields), "custom resource event").map(Event::CustomResource);
    }
    if fields.contains_key("Rotate") {
        return read(Value::Object(fields), "rotation event").map(Event::Rotation);
    }
    // Without the provider's object (lifecycle_scope CREATE_ONLY) an invocation can only create.
    let action = match fields.remove(TERRAFORM_KEY) {
        Some(lifecycle) => read::<Lifecycle>(lifecycle, "\"tf\" object")?.action,
        None => Action::Create,
    };
    Ok(Event::Terraform(TerraformEvent {
        input: read(Value::Object(fields), "input")?,
        action,
    }))
}

fn read<T: serde::de::DeserializeOwned>(value: Value, what: &str) -> Result<T, EventError> {
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

    const ARN: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:origin-AbCdEf";

    #[test]
    fn reads_terraform_crud_events_whatever_the_previous_input_held() {
        let event = parse(json!({
            "SecretId": ARN,
            "tf": { "action": "update", "prev_input": {
                "DistributionId": "E1", "RotationToken": "1", "Dropped": "what an older module passed" } }
        }))
        .unwrap();
        assert_eq!(
            event,
            Event::Terraform(TerraformEvent {
                input: SecretInput {
                    secret_id: ARN.into()
                },
                action: Action::Update,
            })
        );
    }

    #[test]
    fn an_event_without_tf_is_a_create() {
        let event = parse(json!({"SecretId": ARN})).unwrap();
        assert!(matches!(
            event,
            Event::Terraform(TerraformEvent {
                action: Action::Create,
                ..
            })
        ));
    }

    #[test]
    fn reads_rotation_events() {
        let event = parse(json!({
            "Rotate": "promote", "SecretId": ARN, "DistributionId": "E1", "OriginId": "alb",
            "HeaderName": "X-Origin-Verify"
        }))
        .unwrap();
        assert_eq!(
            event,
            Event::Rotation(RotationEvent {
                rotate: Phase::Promote,
                secret_id: ARN.into(),
                distribution_id: "E1".into(),
                origin_id: "alb".into(),
                header_name: "X-Origin-Verify".into(),
            })
        );
        assert_eq!(
            serde_json::to_value(RotationOutput {
                phase: Phase::Retire,
                changed: false,
                accepted_values: 1
            })
            .unwrap(),
            json!({"Phase": "retire", "Changed": false, "AcceptedValues": 1})
        );
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
        let old = parse(json!({"DistributionId": "E1", "OriginId": "o", "HeaderName": "X"}));
        let old = old.unwrap_err().to_string();
        assert!(
            old.contains("invalid input: unknown field `DistributionId`"),
            "{old}"
        );
        let missing = parse(json!({"Rotate": "prepare", "SecretId": ARN, "OriginId": "o"}));
        let missing = missing.unwrap_err().to_string();
        assert!(
            missing.contains("invalid rotation event: missing field"),
            "{missing}"
        );
        let phase = parse(json!({"Rotate": "rollback", "SecretId": ARN}));
        assert!(phase.unwrap_err().to_string().contains("rollback"));
        let wrong = parse(json!({"SecretId": 12345678}));
        assert!(!wrong.unwrap_err().to_string().contains("12345678"));
        let action = parse(json!({"SecretId": ARN, "tf": {"action": "replace"}}));
        assert!(action.unwrap_err().to_string().contains("tf"));
        assert!(parse(json!([])).is_err());
    }
}
