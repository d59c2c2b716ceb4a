//! Terraform's `aws_lambda_invocation` (`lifecycle_scope = "CRUD"`): a valid state document in
//! the secret, so that Terraform can start CloudFront and the load balancer with its values.
//!
//! Terraform invokes the function only when the resource is created, when its `input` changes,
//! and when it is destroyed. Create and update write only into a secret without a value, so a
//! repeated invocation, or one after a rotation, changes nothing. The answer names the version,
//! never a value: Terraform reads the values through a data source it marks sensitive.

use aws_sdk_secretsmanager::Client;
use tracing::info;

use crate::Error;
use crate::event::{Action, TerraformEvent, TerraformOutput};
use crate::secret;
use crate::state::State;
use crate::store;

/// Runs one lifecycle step.
pub async fn handle(client: &Client, event: &TerraformEvent) -> Result<TerraformOutput, Error> {
    let secret_id = &event.input.secret_id;
    let version_id = match event.action {
        Action::Create | Action::Update => Some(ensure(client, secret_id).await?),
        // Terraform deletes the secret itself, and CloudFront's header goes with the distribution
        // or stays valid until then: nothing to undo.
        Action::Delete => {
            info!(secret_id, "delete: nothing to undo");
            None
        }
    };
    Ok(TerraformOutput {
        secret_id: secret_id.clone(),
        version_id,
    })
}

/// The AWSCURRENT version's id, after writing a first document with a generated value if the
/// secret had none. An existing document, valid, is left as it is; an invalid one is an error.
async fn ensure(client: &Client, secret_id: &str) -> Result<String, Error> {
    if let Some(stored) = store::read(client, secret_id).await? {
        info!(
            secret_id,
            version_id = %stored.version_id,
            accepted_values = stored.state.values().count(),
            "state document already in place"
        );
        return Ok(stored.version_id);
    }
    let state = State::new(secret::generate()?);
    let version_id = store::write(client, secret_id, None, &state).await?;
    info!(
        secret_id,
        version_id = %version_id,
        "first value generated and stored"
    );
    Ok(version_id)
}
