//! A backend that follows a script instead of calling an upstream, for paused-time tests of the
//! refresh policy (real sockets and paused time do not mix: tokio advances the clock while a
//! request waits on I/O, so client timeouts fire early).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use sts_sidecar::backend::{Credentials, Error, ErrorClass, SecretAccessKey, SessionToken};
use sts_sidecar::cache::Refresh;

/// One scripted answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Credentials that live this long.
    Creds(Duration),
    /// Wait, then credentials that live this long.
    SlowCreds(Duration, Duration),
    /// A failure of this class.
    Fail(ErrorClass),
}

/// A scripted backend; clones share the script.
#[derive(Debug, Clone)]
pub struct Scripted {
    state: Arc<Mutex<State>>,
    role_arn: String,
}

#[derive(Debug)]
struct State {
    default: Step,
    queue: VecDeque<Step>,
    calls: usize,
    invalidations: usize,
    /// When each key issued expires, on tokio's clock (the one paused tests move).
    expiries: std::collections::HashMap<String, tokio::time::Instant>,
}

impl Scripted {
    /// Answers `default` unless a pushed step is queued.
    pub fn new(default: Step) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                default,
                queue: VecDeque::new(),
                calls: 0,
                invalidations: 0,
                expiries: std::collections::HashMap::new(),
            })),
            role_arn: "arn:aws:iam::123456789012:role/scripted".to_owned(),
        }
    }

    /// From now on answer `step`.
    pub fn set_default(&self, step: Step) {
        self.state.lock().default = step;
    }

    /// Answer `step` next.
    pub fn push(&self, step: Step) {
        self.state.lock().queue.push_back(step);
    }

    /// Fetches so far.
    pub fn calls(&self) -> usize {
        self.state.lock().calls
    }

    /// Token invalidations so far.
    pub fn invalidations(&self) -> usize {
        self.state.lock().invalidations
    }

    /// When the credentials with `access_key_id` expire, on tokio's clock: as this backend
    /// issued them, not as the cache computed it.
    pub fn expires_at(&self, access_key_id: &str) -> Option<tokio::time::Instant> {
        self.state.lock().expiries.get(access_key_id).copied()
    }

    /// Records a token invalidation.
    pub fn invalidate(&self) {
        self.state.lock().invalidations += 1;
    }

    /// Plays the next step.
    pub async fn fetch(&self) -> Result<Credentials, Error> {
        let (step, n) = {
            let mut state = self.state.lock();
            state.calls += 1;
            let step = state.queue.pop_front().unwrap_or(state.default);
            (step, state.calls)
        };
        let lifetime = match step {
            Step::Creds(lifetime) => lifetime,
            Step::SlowCreds(delay, lifetime) => {
                tokio::time::sleep(delay).await;
                lifetime
            }
            Step::Fail(class) => {
                return Err(Error::Transport {
                    call: "AssumeRoleWithWebIdentity",
                    role_arn: self.role_arn.clone(),
                    detail: format!("scripted {} failure", class.label()),
                    source: None,
                    class,
                });
            }
        };
        let access_key_id = format!("ASIASCRIPTED{n:08}");
        self.state.lock().expiries.insert(
            access_key_id.clone(),
            tokio::time::Instant::now() + lifetime,
        );
        Ok(Credentials {
            access_key_id,
            secret_access_key: SecretAccessKey::new(format!("secret{n}")),
            session_token: SessionToken::new(format!("session{n}")),
            expiration: sts_sidecar::clock::now_unix()
                + i64::try_from(lifetime.as_secs()).unwrap_or(0),
            account_id: "123456789012".to_owned(),
            role_arn: self.role_arn.clone(),
            assumed_role_arn: None,
        })
    }
}

impl Refresh for Scripted {
    async fn fetch(&self) -> Result<Credentials, Error> {
        Scripted::fetch(self).await
    }

    async fn invalidate_token(&self) {
        self.invalidate();
    }

    fn role_arn(&self) -> &str {
        &self.role_arn
    }

    fn source(&self) -> String {
        "scripted".to_owned()
    }
}
