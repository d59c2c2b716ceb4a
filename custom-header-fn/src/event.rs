//! The three event shapes the function accepts, and what each expects back.
//!
//! 1. Terraform's `aws_lambda_invocation` with `lifecycle_scope = "CRUD"`: the module's input
//!    (`{"SecretId": …}`) plus the provider's `tf` object, `{"action": "create"|"update"|"delete",
//!    "prev_input": …}`. A delete is read whatever its input; a `prev_input` of the previous,
//!    header-putting version of the module names the header to adopt.
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

/// The input of the previous version of the module, which put a generated value straight on the
/// origin: `{"DistributionId", "OriginId", "HeaderName", "RotationToken"?, "HeaderValue"?}`. Only
/// where the header is matters; the other fields are ignored, and `HeaderValue` never kept.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LegacyInput {
    pub distribution_id: String,
    pub origin_id: String,
    pub header_name: String,
}

/// The Terraform event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TerraformEvent {
    /// Create or update: a valid document in the secret now named.
    Ensure {
        action: Action,
        input: SecretInput,
        /// Set when `prev_input` was the previous version's: the header whose value to adopt
        /// rather than draw one, so that the load balancer accepts what CloudFront already sends.
        legacy: Option<LegacyInput>,
    },
    /// Delete: nothing to undo, whatever the input (the previous version's too, which Terraform
    /// sends when it destroys a deployment made with it). The secret's id, if the input has one.
    Delete { secret_id: Option<String> },
}

/// The answer to Terraform: which version of the secret holds the document (null after a
/// delete, like the id of a delete whose input named no secret). Never a value, so nothing secret
/// lands in Terraform's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TerraformOutput {
    pub secret_id: Option<String>,
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

/// The provider's object. `prev_input` is kept as it came, and read only if it is the previous
/// version's input: anything else there (this version's input, null on create) says nothing.
#[derive(Deserialize)]
struct Lifecycle {
    action: Action,
    #[serde(default)]
    prev_input: Value,
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
    let lifecycle = match fields.remove(TERRAFORM_KEY) {
        Some(lifecycle) => read::<Lifecycle>(lifecycle, "\"tf\" object")?,
        None => Lifecycle {
            action: Action::Create,
            prev_input: Value::Null,
        },
    };
    if lifecycle.action == Action::Delete {
        // Nothing to undo, so nothing to read: a destroy must never fail on the input's shape.
        let secret_id = fields.get("SecretId").and_then(Value::as_str);
        return Ok(Event::Terraform(TerraformEvent::Delete {
            secret_id: secret_id.map(str::to_owned),
        }));
    }
    Ok(Event::Terraform(TerraformEvent::Ensure {
        action: lifecycle.action,
        input: read(Value::Object(fields), "input")?,
        legacy: serde_json::from_value(lifecycle.prev_input).ok(),
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
    fn reads_terraform_crud_events_and_the_previous_versions_input() {
        let update = |prev_input: Value| {
            parse(json!({"SecretId": ARN, "tf": {"action": "update", "prev_input": prev_input}}))
                .unwrap()
        };
        let ensure = |legacy| {
            Event::Terraform(TerraformEvent::Ensure {
                action: Action::Update,
                input: SecretInput {
                    secret_id: ARN.into(),
                },
                legacy,
            })
        };
        // The previous version's input, with fields this one does not read: where the header is.
        let legacy = update(json!({
            "DistributionId": "E1", "OriginId": "alb", "HeaderName": "X-Origin-Verify",
            "RotationToken": "1", "HeaderValue": "never kept", "Dropped": "what an older module passed"
        }));
        assert_eq!(
            legacy,
            ensure(Some(LegacyInput {
                distribution_id: "E1".into(),
                origin_id: "alb".into(),
                header_name: "X-Origin-Verify".into(),
            }))
        );
        assert!(!format!("{legacy:?}").contains("never kept"));
        // Any other previous input says nothing, and is no error.
        for prev_input in [
            json!({"SecretId": ARN}),
            json!({"DistributionId": "E1", "OriginId": "alb"}),
            json!({"DistributionId": 1, "OriginId": "alb", "HeaderName": "X-Origin-Verify"}),
            json!("text"),
            Value::Null,
        ] {
            assert_eq!(update(prev_input.clone()), ensure(None), "{prev_input}");
        }
        let created = parse(json!({"SecretId": ARN, "tf": {"action": "create"}})).unwrap();
        assert!(matches!(
            created,
            Event::Terraform(TerraformEvent::Ensure {
                action: Action::Create,
                legacy: None,
                ..
            })
        ));
    }

    #[test]
    fn a_delete_is_read_whatever_its_input() {
        let delete = |input: Value| parse(input).unwrap();
        assert_eq!(
            delete(
                json!({"SecretId": ARN, "tf": {"action": "delete", "prev_input": {"SecretId": ARN}}})
            ),
            Event::Terraform(TerraformEvent::Delete {
                secret_id: Some(ARN.into())
            })
        );
        let old = json!({"DistributionId": "E1", "OriginId": "alb", "HeaderName": "X-Origin-Verify",
            "RotationToken": "1", "tf": {"action": "delete", "prev_input": {"DistributionId": "E1"}}});
        assert_eq!(
            delete(old),
            Event::Terraform(TerraformEvent::Delete { secret_id: None })
        );
        assert_eq!(
            delete(json!({"SecretId": 7, "tf": {"action": "delete"}})),
            Event::Terraform(TerraformEvent::Delete { secret_id: None })
        );
    }

    #[test]
    fn an_event_without_tf_is_a_create() {
        let event = parse(json!({"SecretId": ARN})).unwrap();
        assert!(matches!(
            event,
            Event::Terraform(TerraformEvent::Ensure {
                action: Action::Create,
                legacy: None,
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
        // The previous version's input is refused for a create or an update, not half understood.
        for tf in [None, Some(json!({"action": "update", "prev_input": null}))] {
            let mut old = json!({"DistributionId": "E1", "OriginId": "o", "HeaderName": "X"});
            if let Some(tf) = tf {
                old["tf"] = tf;
            }
            let old = parse(old).unwrap_err().to_string();
            assert!(
                old.contains("invalid input: unknown field `DistributionId`"),
                "{old}"
            );
        }
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
