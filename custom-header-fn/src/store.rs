//! The state document in Secrets Manager: GetSecretValue and PutSecretValue on the secret's
//! AWSCURRENT version, which is what Terraform reads.
//!
//! Secrets Manager has no conditional write, but it refuses a `ClientRequestToken` already used
//! for a version with other content. So each write names its new version after the version it
//! was decided from: of two invocations that read the same version, only the first can write a
//! successor (the second fails and is invoked again), and a write retried with the same content
//! is harmless.

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::SdkError;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use aws_sdk_secretsmanager::operation::put_secret_value::PutSecretValueError;
use sha2::{Digest, Sha256};

use crate::propagation::cannot;
use crate::state::State;
use crate::{Error, describe, hex};

/// The stage Terraform reads and PutSecretValue moves to the version it writes.
const STAGE: &str = "AWSCURRENT";

/// The document and the version it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub state: State,
    pub version_id: String,
}

/// The AWSCURRENT document, or `None` when the secret has no value yet (as Terraform creates it).
/// A value that is not a valid document is an error naming the problem, never the content; a
/// refusal for lack of permission is an [`AccessDenied`](crate::propagation::AccessDenied).
pub async fn read(client: &Client, secret_id: &str) -> Result<Option<Stored>, Error> {
    let read = match client
        .get_secret_value()
        .secret_id(secret_id)
        .version_stage(STAGE)
        .send()
        .await
    {
        Ok(read) => read,
        // A secret without any version; one that does not exist at all answers the same, and
        // then the write that follows names that.
        Err(SdkError::ServiceError(err))
            if matches!(err.err(), GetSecretValueError::ResourceNotFoundException(_)) =>
        {
            return Ok(None);
        }
        Err(err) => {
            let what = format!("read secret {secret_id}");
            return Err(cannot(what, describe("Secrets Manager", &err), &err));
        }
    };
    let version_id = read
        .version_id
        .ok_or_else(|| format!("Secrets Manager returned no VersionId for secret {secret_id}"))?;
    let text = read.secret_string.ok_or_else(|| {
        format!("secret {secret_id}: its {STAGE} version holds binary data, not the state document")
    })?;
    let state = State::parse(&text).map_err(|err| {
        format!(
            "secret {secret_id}: its {STAGE} version {version_id} is not a valid state document: {err}. \
             It must be {{\"current\": …, \"pending\": …, \"previous\": …}} with current required and each \
             value 64 lowercase hex characters"
        )
    })?;
    Ok(Some(Stored { state, version_id }))
}

/// Writes `state` as the new AWSCURRENT version, the successor of version `after` (`None` for
/// the first one). Returns the new version's id. A refusal for lack of permission is an
/// [`AccessDenied`](crate::propagation::AccessDenied); written again with the same content, the
/// version is the same.
pub async fn write(
    client: &Client,
    secret_id: &str,
    after: Option<&str>,
    state: &State,
) -> Result<String, Error> {
    let token = successor(after);
    match client
        .put_secret_value()
        .secret_id(secret_id)
        .client_request_token(&token)
        .secret_string(state.to_json())
        .version_stages(STAGE)
        .send()
        .await
    {
        Ok(written) => Ok(written.version_id.unwrap_or(token)),
        Err(SdkError::ServiceError(err))
            if matches!(err.err(), PutSecretValueError::ResourceExistsException(_)) =>
        {
            Err(format!(
                "secret {secret_id} changed while this function was updating it (another invocation \
                 wrote a version first): invoke again, to decide from the version now current"
            )
            .into())
        }
        Err(err) => {
            let what = format!("write secret {secret_id}");
            // The request carried the values; the service's message might quote them.
            let detail = state.redact(&describe("Secrets Manager", &err));
            Err(cannot(what, detail, &err))
        }
    }
}

/// The version id of the write that follows version `after`: the same for every invocation that
/// read `after`, 32 hex characters (Secrets Manager takes 32 to 64).
fn successor(after: Option<&str>) -> String {
    let digest = Sha256::digest(format!(
        "custom-header-fn successor of {}",
        after.unwrap_or("")
    ));
    hex(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successors_are_fixed_per_version_and_differ_between_versions() {
        let first = successor(None);
        assert_eq!(first.len(), 32);
        assert_eq!(first, successor(None));
        let second = successor(Some(&first));
        assert_ne!(second, first);
        assert_ne!(successor(Some(&second)), first, "no cycle back");
    }
}
