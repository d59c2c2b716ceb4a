//! Requests refused for lack of permission while IAM is still propagating.
//!
//! On a first apply Terraform attaches the role's policy, creates the function and invokes it
//! seconds later; IAM is eventually consistent, and until the policy has reached Secrets Manager
//! (or CloudFront) they answer `AccessDeniedException` (`AccessDenied`). Terraform's create and
//! update retry such a refusal with growing, jittered waits for a bounded time, then give up with
//! a message saying what to do. Everywhere else a refusal fails at once: `make rotate-secret` runs
//! long after the policies were attached.

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use aws_sdk_cloudfront::error::{ProvideErrorMetadata, SdkError};
use tracing::warn;

use crate::{Error, jittered};

/// How long, and how often, a request refused with AccessDenied is tried again.
#[derive(Debug, Clone, Copy)]
pub struct Propagation {
    /// How long one invocation keeps trying, all its requests together.
    pub budget: Duration,
    /// Wait before the second try; doubled for each further one up to [`MAX_BACKOFF`], with up
    /// to 50 % jitter, and never past the budget.
    pub first_backoff: Duration,
}

/// The longest wait between two tries, so that a late grant is noticed within seconds.
pub const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// A request the service refused for lack of permission: `cannot {what}: {detail}`.
#[derive(Debug)]
pub struct AccessDenied {
    /// What could not be done: `read secret arn:…`, `write secret arn:…`, `read distribution E…`.
    pub what: String,
    /// The service's code and message, without any value the request carried.
    pub detail: String,
}

impl fmt::Display for AccessDenied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot {}: {}", self.what, self.detail)
    }
}

impl std::error::Error for AccessDenied {}

/// Still refused when the budget ran out: the role cannot do `what` yet.
#[derive(Debug)]
pub struct StillDenied {
    pub refused: AccessDenied,
    pub waited: Duration,
}

impl fmt::Display for StillDenied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the function's role cannot {} yet ({}, still after {} s of retries: IAM may still be \
             propagating a policy attached moments ago)",
            self.refused.what,
            self.refused.detail,
            self.waited.as_secs()
        )
    }
}

impl std::error::Error for StillDenied {}

/// The error of a request that failed: `cannot {what}: {detail}`, as an [`AccessDenied`] when the
/// service refused it for lack of permission. `detail` comes from [`describe`], redacted by the
/// caller when the request carried a value.
///
/// [`describe`]: crate::describe
pub(crate) fn cannot<E>(what: String, detail: String, err: &SdkError<E>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let denied = matches!(err, SdkError::ServiceError(failure)
        if matches!(failure.err().code(), Some("AccessDeniedException" | "AccessDenied")));
    if denied {
        Box::new(AccessDenied { what, detail })
    } else {
        format!("cannot {what}: {detail}").into()
    }
}

/// One invocation's patience: every request it retries shares the same end.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Patience {
    started: Instant,
    until: Instant,
    first_backoff: Duration,
}

impl Patience {
    pub(crate) fn new(propagation: Propagation) -> Self {
        let started = Instant::now();
        Self {
            started,
            until: started + propagation.budget,
            first_backoff: propagation.first_backoff,
        }
    }

    /// `call` until it is not refused with [`AccessDenied`], or until the budget is spent, then
    /// [`StillDenied`]. Any other outcome is returned as it is.
    pub(crate) async fn retry<T, F, Fut>(&self, mut call: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut backoff = self.first_backoff;
        loop {
            let err = match call().await {
                Err(err) if err.is::<AccessDenied>() => err,
                other => return other,
            };
            let refused = *err.downcast::<AccessDenied>().expect("checked above");
            let now = Instant::now();
            if now >= self.until {
                return Err(Box::new(StillDenied {
                    refused,
                    waited: now - self.started,
                }));
            }
            let wait = jittered(backoff).min(self.until - now);
            warn!(
                refused = %refused.what,
                retry_in = ?wait,
                "access denied; IAM may still be propagating the role's policy, trying again"
            );
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}
