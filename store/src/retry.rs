//! Exponential backoff with full jitter, for every request the stores make.

use std::future::Future;
use std::time::Duration;

use tracing::debug;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            base: Duration::from_millis(200),
            max: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// For the parts of a multipart upload and its completion: the parts already stored are
    /// worth waiting a minute or two for, through a store throttling a crash storm (503
    /// SlowDown) or a network blip, rather than aborting the upload and starting again.
    pub fn patient() -> Self {
        Self {
            attempts: 8,
            base: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }

    /// The pause before try `attempt + 1` (`attempt` counts from 1): a random time up to
    /// `base × 2^(attempt-1)`, capped at `max`, so that many nodes failing together do not
    /// retry together.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max);
        ceiling.mul_f64(jitter())
    }

    /// Runs `operation` until it succeeds or the tries are used up; returns the last error.
    pub async fn run<T, E, F, Fut>(&self, what: &str, operation: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: std::fmt::Display,
    {
        self.run_while(what, |_| true, operation).await
    }

    /// [`RetryPolicy::run`], but an error `transient` says is final is returned at once (a
    /// missing object or refused credentials do not improve with waiting).
    pub async fn run_while<T, E, F, Fut>(
        &self,
        what: &str,
        transient: impl Fn(&E) -> bool,
        mut operation: F,
    ) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: std::fmt::Display,
    {
        let mut attempt = 1;
        loop {
            match operation().await {
                Ok(value) => return Ok(value),
                Err(err) if attempt < self.attempts && transient(&err) => {
                    let pause = self.backoff(attempt);
                    debug!(attempt, error = %err, pause_ms = pause.as_millis() as u64, "{what} failed; retrying");
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }
}

/// A number in [0.5, 1): enough randomness to spread retries, from the standard library's
/// per-process random hash keys and the clock.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    0.5 + (hasher.finish() >> 11) as f64 / (1u64 << 54) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy::default();
        for attempt in 1..20 {
            let pause = policy.backoff(attempt);
            let ceiling =
                Duration::from_millis(200 * (1u64 << (attempt - 1).min(16))).min(policy.max);
            assert!(
                pause <= ceiling && pause >= ceiling / 2,
                "{attempt}: {pause:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_success_and_gives_up_after_the_last_try() {
        let policy = RetryPolicy::default();
        let mut calls = 0;
        let result: Result<u32, String> = policy
            .run("op", || {
                calls += 1;
                let outcome = if calls < 3 {
                    Err(format!("fail {calls}"))
                } else {
                    Ok(calls)
                };
                async move { outcome }
            })
            .await;
        assert_eq!(result, Ok(3));

        let mut calls = 0;
        let result: Result<(), String> = policy
            .run("op", || {
                calls += 1;
                let outcome = Err(format!("fail {calls}"));
                async move { outcome }
            })
            .await;
        assert_eq!(result, Err("fail 5".to_owned()));
    }
}
