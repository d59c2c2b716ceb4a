//! A rotation of the header's value, in three phases that `make rotate-secret` runs with a
//! Terraform apply after prepare (the load balancer then accepts the new value) and after retire
//! (it stops accepting the old one):
//!
//! - **prepare**: a new value becomes `pending`.
//! - **promote**: CloudFront sends `pending`, which becomes `current`; the old one `previous`.
//! - **retire**: once CloudFront has deployed the new value everywhere, `previous` goes.
//!
//! Each phase is safe to run again: one whose work is done changes nothing. Promote changes
//! CloudFront before the document, so a failure in between leaves the load balancer accepting
//! both values, and running promote again completes it.

use tracing::info;

use crate::Retry;
use crate::change::{self, Edit};
use crate::distribution::{self, Outcome};
use crate::event::{Phase, RotationEvent, RotationOutput};
use crate::state::State;
use crate::{Clients, Error, secret, store};

/// Runs one phase: reads the document, decides the next one (changing CloudFront on the way when
/// promoting) and writes it as the successor of the version read.
pub async fn handle(
    clients: &Clients,
    event: &RotationEvent,
    retry: Retry,
) -> Result<RotationOutput, Error> {
    // Checked before anything is read, so a bad name fails before any request.
    change::check_name(&event.header_name)?;
    let stored = store::read(&clients.secrets, &event.secret_id)
        .await?
        .ok_or_else(|| {
            format!(
                "secret {} holds no state document yet: apply Terraform first, whose invocation \
                 of this function writes the first value",
                event.secret_id
            )
        })?;
    let state = &stored.state;
    let next = match event.rotate {
        Phase::Prepare => prepare(state)?,
        Phase::Promote => promote(clients, event, state, retry).await?,
        Phase::Retire => retire(clients, event, state).await?,
    };
    let version_id = match &next {
        Some(next) => {
            store::write(
                &clients.secrets,
                &event.secret_id,
                Some(&stored.version_id),
                next,
            )
            .await?
        }
        None => stored.version_id.clone(),
    };
    let accepted_values = next.as_ref().unwrap_or(state).values().count();
    info!(
        secret_id = %event.secret_id,
        phase = ?event.rotate,
        changed = next.is_some(),
        version_id = %version_id,
        accepted_values,
        "rotation phase done"
    );
    Ok(RotationOutput {
        phase: event.rotate,
        changed: next.is_some(),
        accepted_values,
    })
}

/// A new value as `pending`, unless a rotation is under way: one already prepared (`pending`), or
/// promoted and not yet retired (`previous`). So running the whole sequence again after a failure
/// resumes that rotation instead of starting one whose promote would have to drop a value
/// CloudFront may still send. Always drawn fresh, so no value ever comes back.
fn prepare(state: &State) -> Result<Option<State>, Error> {
    if state.pending.is_some() || state.previous.is_some() {
        return Ok(None);
    }
    Ok(Some(State {
        pending: Some(secret::generate()?),
        ..state.clone()
    }))
}

/// `pending` onto the origin, then `{current: pending, previous: current}`.
async fn promote(
    clients: &Clients,
    event: &RotationEvent,
    state: &State,
    retry: Retry,
) -> Result<Option<State>, Error> {
    let Some(pending) = &state.pending else {
        if state.previous.is_some() {
            // Promoted already: the document has the shape promote leaves.
            return Ok(None);
        }
        return Err("nothing to promote: run the prepare phase first".into());
    };
    if state.previous.is_some() {
        // Only a document written by hand has both (prepare waits for the retire). There is one
        // slot for an old value, and CloudFront may still send this one.
        return Err(
            "the previous value is still accepted and CloudFront may still send it: run the retire \
             phase first, then promote"
                .into(),
        );
    }
    let edit = Edit::Set {
        origin_id: event.origin_id.clone(),
        name: event.header_name.clone(),
        value: pending.clone(),
    };
    let outcome = distribution::edit(&clients.cloudfront, &event.distribution_id, retry, &[edit])
        .await
        // The request carried the value; an error message might quote it.
        .map_err(|err| state.redact(&err.to_string()))?;
    if outcome == Outcome::Missing {
        return Err(distribution::missing(&event.distribution_id).into());
    }
    info!(
        distribution_id = %event.distribution_id,
        origin_id = %event.origin_id,
        header = %event.header_name,
        updated = outcome == Outcome::Updated,
        "origin header sends the pending value"
    );
    Ok(Some(State {
        current: pending.clone(),
        pending: None,
        previous: Some(state.current.clone()),
    }))
}

/// Drops `previous` once CloudFront has deployed a config whose header sends `current`.
async fn retire(
    clients: &Clients,
    event: &RotationEvent,
    state: &State,
) -> Result<Option<State>, Error> {
    if state.previous.is_none() {
        return Ok(None);
    }
    let id = &event.distribution_id;
    let snapshot = distribution::read(&clients.cloudfront, id)
        .await?
        .ok_or_else(|| distribution::missing(id))?;
    if snapshot.status != "Deployed" {
        return Err(format!(
            "CloudFront is still deploying the new header (status {}): wait for \
             `aws cloudfront wait distribution-deployed --id {id}` and retire again",
            snapshot.status
        )
        .into());
    }
    let sent = change::header_value(&snapshot.config, &event.origin_id, &event.header_name)?;
    if sent != Some(state.current.as_str()) {
        return Err(format!(
            "distribution {id} does not send the current value (header {:?} on origin {:?}); \
             refusing to retire the value it may still send",
            event.header_name, event.origin_id
        )
        .into());
    }
    Ok(Some(State {
        previous: None,
        ..state.clone()
    }))
}
