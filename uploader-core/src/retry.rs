//! Retries with exponential backoff and full jitter.
//!
//! A failed request is retried only when [`StoreError::is_retryable`] says so (5xx, throttling,
//! timeouts, broken connections), at most `max_attempts` times in all. The wait before attempt
//! `n + 1` is uniform in `[0, min(max_backoff, base × 2^n)]` (AWS's "full jitter"), which spreads
//! clients that failed together. Throttling waits start from a larger base.
//!
//! `with_retries` is the one loop that sends a request of the pipeline: it takes a request
//! permit of the shared budget for each attempt, retries by the policy, counts retries, and lets
//! cancellation interrupt the waits (and the request itself where that is safe).

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::future::BoxFuture;
use rand::Rng as _;
use tracing::debug;

use crate::error::TransferError;
use crate::job::Job;
use crate::report::Event;
use crate::store::StoreError;

/// Default number of attempts per request (1 try + 4 retries).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Default base of the backoff.
pub const DEFAULT_BASE_BACKOFF: Duration = Duration::from_millis(100);
/// Default cap of one wait.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(20);

/// How failed requests are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, including the first (≥ 1).
    pub max_attempts: u32,
    /// Base of the exponential backoff.
    pub base: Duration,
    /// Cap of one wait.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            base: DEFAULT_BASE_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32, err: &StoreError) -> Duration {
        let base = if err.is_throttle() {
            self.base * 4
        } else {
            self.base
        };
        let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let ceiling = exp.min(self.max_backoff);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(0..=nanos))
    }

    /// Whether a request that failed with `err` on attempt `attempt` (1-based) is tried again.
    pub fn should_retry(&self, attempt: u32, err: &StoreError) -> bool {
        attempt < self.max_attempts && err.is_retryable()
    }
}

/// Whether cancellation may interrupt a request in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interrupt {
    /// Drop the request (an upload part: the whole multipart upload is aborted anyway).
    Yes,
    /// Let the request finish: its effect must be known (a created multipart upload must be
    /// aborted, a completed one reported as uploaded; a PUT either landed or not).
    No,
}

/// What the attempts of one request went through.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Attempts {
    /// The request was sent more than once.
    pub retried: bool,
    /// An attempt failed in a way that may have left it executed (its answer lost).
    pub lost: bool,
}

/// Runs `op` under a budget permit, retrying retryable failures with backoff. Cancellation
/// interrupts the waits, and the request itself when `interrupt` allows.
pub(crate) async fn with_retries<'a, T>(
    job: &'a Job,
    index: usize,
    interrupt: Interrupt,
    op: impl FnMut() -> BoxFuture<'a, Result<T, TransferError>>,
) -> Result<T, TransferError> {
    with_retries_noting(job, index, interrupt, op).await.0
}

/// [`with_retries`], also telling what the attempts went through (for the requests whose lost
/// answers must be looked for).
pub(crate) async fn with_retries_noting<'a, T>(
    job: &'a Job,
    index: usize,
    interrupt: Interrupt,
    mut op: impl FnMut() -> BoxFuture<'a, Result<T, TransferError>>,
) -> (Result<T, TransferError>, Attempts) {
    let policy = job.config.retry;
    let mut attempt = 1;
    let mut noted = Attempts::default();
    loop {
        let permit = tokio::select! {
            biased;
            () = job.cancel.cancelled() => return (Err(TransferError::Cancelled), noted),
            p = job.budget.acquire() => p,
        };
        let result = if interrupt == Interrupt::Yes {
            tokio::select! {
                biased;
                () = job.cancel.cancelled() => return (Err(TransferError::Cancelled), noted),
                r = op() => r,
            }
        } else {
            op().await
        };
        drop(permit);
        if let Err(TransferError::Store(e)) = &result
            && e.may_have_landed()
        {
            noted.lost = true;
        }
        match result {
            Err(TransferError::Store(e)) if policy.should_retry(attempt, &e) => {
                let wait = policy.backoff(attempt, &e);
                debug!(attempt, ?wait, error = %e, "retrying");
                job.retries.fetch_add(1, Ordering::Relaxed);
                job.emit(Event::Retry { index, attempt });
                noted.retried = true;
                tokio::select! {
                    () = job.cancel.cancelled() => return (Err(TransferError::Cancelled), noted),
                    () = tokio::time::sleep(wait) => {}
                }
                attempt += 1;
            }
            other => return (other, noted),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(status: u16, code: &str) -> StoreError {
        StoreError::service(
            "PutObject",
            status,
            crate::store::s3::service_kind(status, code),
            code,
        )
    }

    #[test]
    fn classification() {
        let retryable = [
            service(500, "InternalError"),
            service(503, "SlowDown"),
            service(429, "TooManyRequests"),
            service(400, "RequestTimeout"),
            StoreError::Timeout {
                operation: "UploadPart",
            },
            StoreError::Network {
                operation: "UploadPart",
                source: "connection reset by peer".into(),
            },
        ];
        for e in &retryable {
            assert!(e.is_retryable(), "{e}");
        }
        let fatal = [
            service(403, "AccessDenied"),
            service(404, "NoSuchBucket"),
            service(400, "BadDigest"),
            service(412, "PreconditionFailed"),
            StoreError::Body {
                operation: "PutObject",
                source: std::io::Error::other("gone"),
            },
        ];
        for e in &fatal {
            assert!(!e.is_retryable(), "{e}");
        }
    }

    #[test]
    fn attempts_are_bounded_and_fatal_errors_are_not_retried() {
        let p = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        let e = service(503, "SlowDown");
        assert!(p.should_retry(1, &e));
        assert!(p.should_retry(2, &e));
        assert!(!p.should_retry(3, &e));
        assert!(!p.should_retry(1, &service(403, "AccessDenied")));
    }

    #[test]
    fn backoff_is_jittered_under_an_exponential_ceiling() {
        let p = RetryPolicy {
            max_attempts: 10,
            base: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        };
        let e = service(500, "InternalError");
        for attempt in 1..=8u32 {
            let ceiling = (Duration::from_millis(100) * 2u32.pow(attempt - 1)).min(p.max_backoff);
            let waits: Vec<_> = (0..200).map(|_| p.backoff(attempt, &e)).collect();
            assert!(waits.iter().all(|w| *w <= ceiling), "attempt {attempt}");
            // Full jitter: the waits are spread, not all at the ceiling.
            let distinct: std::collections::HashSet<_> = waits.iter().collect();
            assert!(distinct.len() > 100, "attempt {attempt}");
        }
        // Throttling backs off from a 4× larger base.
        let slow = service(503, "SlowDown");
        let max_seen = (0..500).map(|_| p.backoff(1, &slow)).max().unwrap();
        assert!(max_seen > Duration::from_millis(100));
    }
}
