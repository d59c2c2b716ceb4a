//! Terraform's `aws_lambda_invocation` (`lifecycle_scope = "CRUD"`): a valid state document in
//! the secret, so that Terraform can start CloudFront and the load balancer with its values.
//!
//! Terraform invokes the function only when the resource is created, when its `input` changes,
//! and when it is destroyed. Create and update write only into a secret without a value, so a
//! repeated invocation, or one after a rotation, changes nothing. The answer names the version,
//! never a value: Terraform reads the values through a data source it marks sensitive.
//!
//! The first value is drawn, except on the update that upgrades a deployment of the previous
//! version of the module, which put a value straight on the origin (its input is `prev_input`).
//! CloudFront keeps sending that value (the distribution ignores changes to its origin's header),
//! so the document adopts it: a drawn one would leave the load balancer refusing every request.
//!
//! On a first apply the role's policy may not have reached Secrets Manager when the function
//! runs: requests refused with AccessDenied are tried again for a while (see [`propagation`]).
//!
//! [`propagation`]: crate::propagation

use tracing::{info, warn};

use crate::change;
use crate::distribution;
use crate::event::{Action, LegacyInput, SecretInput, TerraformEvent, TerraformOutput};
use crate::propagation::{Patience, Propagation, StillDenied};
use crate::secret;
use crate::state::State;
use crate::store;
use crate::{Clients, Error};

/// Runs one lifecycle step.
pub async fn handle(
    clients: &Clients,
    event: &TerraformEvent,
    propagation: Propagation,
) -> Result<TerraformOutput, Error> {
    match event {
        TerraformEvent::Ensure {
            action,
            input,
            legacy,
        } => {
            let patience = Patience::new(propagation);
            let version_id = ensure(clients, &input.secret_id, legacy.as_ref(), patience)
                .await
                .map_err(|err| advise(err, *action, input, legacy.as_ref()))?;
            Ok(TerraformOutput {
                secret_id: Some(input.secret_id.clone()),
                version_id: Some(version_id),
            })
        }
        // Terraform deletes the secret itself, and CloudFront's header goes with the distribution
        // or stays valid until then: nothing to undo. Not even the header the previous version
        // put on the origin, which CloudFront keeps sending and the load balancer accepting.
        TerraformEvent::Delete { secret_id } => {
            info!(secret_id = secret_id.as_deref(), "delete: nothing to undo");
            Ok(TerraformOutput {
                secret_id: secret_id.clone(),
                version_id: None,
            })
        }
    }
}

/// The AWSCURRENT version's id, after writing a first document if the secret had none: with the
/// value the origin sends if a deployment of the previous version is being upgraded, a generated
/// one otherwise. An existing document, valid, is left as it is; an invalid one is an error.
async fn ensure(
    clients: &Clients,
    secret_id: &str,
    legacy: Option<&LegacyInput>,
    patience: Patience,
) -> Result<String, Error> {
    let secrets = &clients.secrets;
    if let Some(stored) = patience.retry(|| store::read(secrets, secret_id)).await? {
        info!(
            secret_id,
            version_id = %stored.version_id,
            accepted_values = stored.state.values().count(),
            "state document already in place"
        );
        return Ok(stored.version_id);
    }
    let adopted = match legacy {
        Some(legacy) => adopt(clients, legacy, patience).await?,
        None => None,
    };
    let adopted_value = adopted.is_some();
    let state = State::new(match adopted {
        Some(value) => value,
        None => secret::generate()?,
    });
    // A retry after a refusal sends the same version id and content: no second version.
    let version_id = patience
        .retry(|| store::write(secrets, secret_id, None, &state))
        .await?;
    if adopted_value {
        info!(
            secret_id,
            version_id = %version_id,
            "value the origin sends adopted and stored"
        );
    } else {
        info!(
            secret_id,
            version_id = %version_id,
            "first value generated and stored"
        );
    }
    Ok(version_id)
}

/// The value the previous version put on the origin, if the distribution still sends one that
/// passes [`secret::check`]; `None` (logged, with the reason) when there is none to adopt. A
/// failure to read the distribution is an error: a drawn value could differ from what CloudFront
/// sends, and the load balancer would then refuse every request.
async fn adopt(
    clients: &Clients,
    legacy: &LegacyInput,
    patience: Patience,
) -> Result<Option<String>, Error> {
    let LegacyInput {
        distribution_id,
        origin_id,
        header_name,
    } = legacy;
    let config = patience
        .retry(|| distribution::config(&clients.cloudfront, distribution_id))
        .await?;
    let reason = match &config {
        None => "the distribution does not exist".to_owned(),
        Some(config) => match change::header_value(config, origin_id, header_name) {
            Err(err) => err.to_string(),
            Ok(None) => "the origin has no such header".to_owned(),
            Ok(Some(value)) => match secret::check(value) {
                Ok(()) => {
                    info!(
                        distribution_id,
                        origin_id, header_name, "adopting the value the origin sends"
                    );
                    return Ok(Some(value.to_owned()));
                }
                Err(err) => format!("the value it sends {err}"),
            },
        },
    };
    warn!(
        distribution_id,
        origin_id,
        header_name,
        %reason,
        "no value to adopt from the previous version; drawing a new one"
    );
    Ok(None)
}

/// What to do about a failed create or update, added to its error.
///
/// Terraform invokes a create that failed again on the next apply. An update that failed is
/// different: the AWS provider keeps its new input in the state all the same, so the next apply
/// sees no change and invokes nothing, and the secret may stay without a document. The function
/// must then be invoked by hand with the same event (the values of the previous version's input
/// left out: the three fields where the header is are all it reads).
fn advise(err: Error, action: Action, input: &SecretInput, legacy: Option<&LegacyInput>) -> Error {
    match action {
        Action::Create if err.is::<StillDenied>() => format!("{err}: run the apply again").into(),
        Action::Create | Action::Delete => err,
        Action::Update => {
            let mut event = serde_json::json!({ "SecretId": input.secret_id });
            if let Some(legacy) = legacy {
                event["tf"] = serde_json::json!({ "action": "update", "prev_input": {
                    "DistributionId": legacy.distribution_id,
                    "OriginId": legacy.origin_id,
                    "HeaderName": legacy.header_name,
                } });
            }
            let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME")
                .unwrap_or_else(|_| "<function name>".to_owned());
            let region = std::env::var("AWS_REGION")
                .map(|region| format!(" --region {region}"))
                .unwrap_or_default();
            format!(
                "{err}. Terraform keeps an update's new input even when the invocation fails, so \
                 the next apply will not invoke this function again: once the cause is fixed, \
                 invoke it by hand with `aws lambda invoke{region} --function-name {} \
                 --cli-binary-format raw-in-base64-out --payload {} /dev/stdout`, then apply again",
                shell_quote(&function),
                shell_quote(&event.to_string())
            )
            .into()
        }
    }
}

/// `text` as one word for a POSIX shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(shell_quote(r#"{"a":"b"}"#), r#"'{"a":"b"}'"#);
        assert_eq!(shell_quote("X-It's"), r"'X-It'\''s'");
    }
}
