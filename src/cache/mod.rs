//! One refresher task per role; many readers.
//!
//! The refresher calls the backend, publishes each good credential set on a `watch` channel as a
//! ready-to-send [`Snapshot`], and sleeps until the next refresh or retry. Readers (the HTTP
//! handlers) only borrow the current snapshot; they never call an upstream and never wait for
//! more than the cold-start grace. A failure never replaces or withdraws a good snapshot: it is
//! served until only the [`FLOOR`] of its lifetime is left.
//!
//! Timing (the SDKs' own refresh windows, which this must stay clear of, are in
//! docs/sdk-clients.md §3.4): refresh when the remaining lifetime falls to
//! `max(lifetime / 2, min(40 min, lifetime - 5 min))`, up to 10 % earlier for jitter (up to 95 %
//! for the first refresh after a start or a recovery, so that a fleet that got its credentials
//! in the same minute does not stay in step); on failure retry with full-jitter exponential
//! backoff, slowly for errors that need a human, and while good credentials are held with a cap
//! that grows to a quarter of the time they can still be served. `bench/fleet.rs` shows what each
//! rule does to a fleet of 100,000.

#[cfg(feature = "sts")]
mod first_link;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::backend::{self, Credentials, ErrorClass};
use crate::clock;
use crate::metrics::Metrics;

/// Credentials are never served with less than this much validity left.
pub const FLOOR: Duration = Duration::from_secs(5 * 60);
/// Refresh no later than this long before expiry (when the lifetime allows it).
pub const REFRESH_BEFORE: Duration = Duration::from_secs(40 * 60);
/// Share of the refresh delay removed at most by jitter.
pub const JITTER: f64 = 0.10;
/// Share of the refresh delay removed at most by jitter on the first refresh after a start or
/// after failures (see [`Policy::settle_spread`]).
pub const SETTLE_SPREAD: f64 = 0.95;
/// Backoff for transient errors: first ceiling and cap.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// The longest wait between two retries of a transient error.
pub const BACKOFF_CAP: Duration = Duration::from_secs(120);
/// Backoff for errors that need a human (`AccessDenied`, ...).
const SLOW_BACKOFF_BASE: Duration = Duration::from_secs(30);
/// The longest wait between two retries of an error that needs a human.
pub const SLOW_BACKOFF_CAP: Duration = Duration::from_secs(300);
/// While good credentials are held, a retry may wait up to this share of the time they can still
/// be served ([`Policy::held_share`]), and never longer than [`HELD_BACKOFF_CAP`].
pub const HELD_SHARE: f64 = 0.25;
/// The longest wait between two retries while good credentials are held.
pub const HELD_BACKOFF_CAP: Duration = Duration::from_secs(15 * 60);
/// The shortest pause between two attempts.
const MIN_DELAY: Duration = Duration::from_millis(200);

/// The refresher's jitter. [`Policy::default`] is what sts-sidecar runs; the fleet benchmark
/// (`bench/fleet.rs`) also runs other values to show what each one does to a fleet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Share of the refresh delay removed at most by jitter on an ordinary refresh.
    pub jitter: f64,
    /// The same for the first refresh after the process started and the first after a
    /// recovery from failures. Those are the refreshes a whole fleet can make in step (every
    /// instance restarted in the same minute, or every instance recovered in the same minute
    /// after an outage); drawing them from a wide window spreads the fleet's later refreshes
    /// over the session instead of keeping them in step for days. It costs each instance one
    /// early refresh per start or recovery.
    pub settle_spread: f64,
    /// While good credentials are held, the backoff cap grows to this share of the time they
    /// can still be served (at most [`HELD_BACKOFF_CAP`]; never below the class's own cap).
    /// With 35 minutes left a retry waits up to about 9 minutes instead of 2: a fleet whose STS
    /// is down sends a quarter of the calls, and its retries after the recovery are spread over
    /// minutes instead of arriving together; still every instance gets at least four attempts
    /// before its credentials reach the floor. `0` keeps the class caps.
    pub held_share: f64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            jitter: JITTER,
            settle_spread: SETTLE_SPREAD,
            held_share: HELD_SHARE,
        }
    }
}

/// What a refresher keeps fresh. Production roles are [`crate::backend::Backend`]s; tests
/// implement it with scripted answers to check the refresh policy in paused time.
pub trait Refresh: Send + Sync + 'static {
    /// One attempt at new credentials (no retries: the refresher owns retry policy).
    fn fetch(&self) -> impl Future<Output = Result<Credentials, backend::Error>> + Send;
    /// Drops any cached identity token (STS rejected it).
    fn invalidate_token(&self) -> impl Future<Output = ()> + Send;
    /// The IAM role ARN assumed.
    fn role_arn(&self) -> &str;
    /// Where the identity comes from, for `/status`.
    fn source(&self) -> String;
}

impl Refresh for backend::Backend {
    async fn fetch(&self) -> Result<Credentials, backend::Error> {
        backend::Backend::fetch(self).await
    }

    async fn invalidate_token(&self) {
        backend::Backend::invalidate_token(self).await;
    }

    fn role_arn(&self) -> &str {
        backend::Backend::role_arn(self)
    }

    fn source(&self) -> String {
        backend::Backend::source(self)
    }
}

/// One published credential set, ready to send.
pub struct Snapshot {
    /// The credentials.
    pub credentials: Credentials,
    /// The container-credentials JSON, rendered once.
    pub body: Bytes,
    /// The IMDS credentials JSON, rendered once.
    pub imds_body: Bytes,
    /// Until when this snapshot may be served (expiry minus [`FLOOR`]).
    pub serve_until: Instant,
}

impl std::fmt::Debug for Snapshot {
    // The body holds the secret key and session token: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("credentials", &self.credentials)
            .field(
                "body",
                &format_args!("<{} bytes redacted>", self.body.len()),
            )
            .field("serve_until", &self.serve_until)
            .finish()
    }
}

/// A reader's handle on one role.
#[derive(Clone, Debug)]
pub struct RoleHandle {
    alias: Arc<str>,
    /// The latest snapshot, for the hot path: a load here touches no shared lock.
    latest: Arc<ArcSwapOption<Snapshot>>,
    /// The same snapshots as a channel, for readers that wait (cold start).
    rx: watch::Receiver<Option<Arc<Snapshot>>>,
    status: Arc<Mutex<Status>>,
}

#[derive(Debug, Default)]
struct Status {
    role_arn: String,
    source: String,
    expiration: Option<i64>,
    last_refresh: Option<i64>,
    last_error: Option<String>,
    last_error_class: Option<&'static str>,
    consecutive_failures: u32,
    next_attempt: Option<Instant>,
}

/// What `/status` shows for one role (no secrets).
#[derive(Debug, Clone, Serialize)]
pub struct RoleStatus {
    /// The role's alias.
    pub alias: String,
    /// The IAM role ARN.
    pub role_arn: String,
    /// Where the identity comes from: the source's name and origin.
    pub source: String,
    /// Whether usable credentials are held.
    pub ready: bool,
    /// The access key id served (not secret).
    pub access_key_id: Option<String>,
    /// Expiry of the credentials held.
    pub expiration: Option<String>,
    /// Seconds until expiry.
    pub expires_in_secs: Option<i64>,
    /// When the last successful refresh happened.
    pub last_refresh: Option<String>,
    /// The last error, if the last attempt failed.
    pub last_error: Option<String>,
    /// Its class.
    pub last_error_class: Option<&'static str>,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// Seconds until the next attempt.
    pub next_attempt_in_secs: Option<u64>,
}

impl RoleHandle {
    /// The role's alias.
    pub fn alias(&self) -> &str {
        &self.alias
    }

    /// The snapshot to serve now, if one with more than the floor left is held.
    pub fn current(&self) -> Option<Arc<Snapshot>> {
        self.latest
            .load_full()
            .filter(|s| s.serve_until > Instant::now())
    }

    /// The container-credentials body to serve now, if usable credentials are held. The hot
    /// path: it clones only the body (as any server does), not the snapshot's `Arc`, so no
    /// reference count shared between worker threads is touched.
    pub fn current_body(&self) -> Option<Bytes> {
        let guard = self.latest.load();
        guard
            .as_ref()
            .filter(|s| s.serve_until > Instant::now())
            .map(|s| s.body.clone())
    }

    /// The snapshot to serve, waiting up to `grace` for one (cold start).
    pub async fn wait_usable(&self, grace: Duration) -> Option<Arc<Snapshot>> {
        if let Some(s) = self.current() {
            return Some(s);
        }
        let mut rx = self.rx.clone();
        let usable = rx.wait_for(|s| s.as_ref().is_some_and(|s| s.serve_until > Instant::now()));
        match tokio::time::timeout(grace, usable).await {
            Ok(Ok(s)) => s.clone(),
            _ => None,
        }
    }

    /// Whether usable credentials are held.
    pub fn is_ready(&self) -> bool {
        self.current().is_some()
    }

    /// The class of the last failed attempt (`denied`, `unavailable`, ...), if the last attempt
    /// failed: what an operator wants in a 503 (the message itself is only in `/status`).
    pub fn last_error_class(&self) -> Option<&'static str> {
        self.status.lock().last_error_class
    }

    /// The role's state for `/status`.
    pub fn status(&self) -> RoleStatus {
        let current = self.current();
        let status = self.status.lock();
        let now = Instant::now();
        RoleStatus {
            alias: self.alias.to_string(),
            role_arn: status.role_arn.clone(),
            source: status.source.clone(),
            ready: current.is_some(),
            access_key_id: current.map(|s| s.credentials.access_key_id.clone()),
            expiration: status.expiration.map(clock::format_rfc3339),
            expires_in_secs: status.expiration.map(|e| e - clock::now_unix()),
            last_refresh: status.last_refresh.map(clock::format_rfc3339),
            last_error: status.last_error.clone(),
            last_error_class: status.last_error_class,
            consecutive_failures: status.consecutive_failures,
            next_attempt_in_secs: status
                .next_attempt
                .map(|t| t.saturating_duration_since(now).as_secs()),
        }
    }
}

/// Starts the refresher for one role; it fetches at once, then keeps the credentials fresh until
/// the returned task is aborted.
pub fn spawn_role<B: Refresh>(
    alias: &str,
    backend: B,
    metrics: Arc<Metrics>,
) -> (RoleHandle, tokio::task::JoinHandle<()>) {
    spawn_role_with(alias, backend, metrics, Policy::default())
}

/// [`spawn_role`] with another jitter policy (the fleet benchmark compares them).
pub fn spawn_role_with<B: Refresh>(
    alias: &str,
    backend: B,
    metrics: Arc<Metrics>,
    policy: Policy,
) -> (RoleHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(None);
    let status = Arc::new(Mutex::new(Status {
        role_arn: backend.role_arn().to_owned(),
        source: backend.source(),
        ..Status::default()
    }));
    let latest = Arc::new(ArcSwapOption::empty());
    let handle = RoleHandle {
        alias: Arc::from(alias),
        latest: latest.clone(),
        rx,
        status: status.clone(),
    };
    let refresher = Refresher {
        alias: alias.to_owned(),
        backend,
        latest,
        tx,
        status,
        metrics,
        policy,
    };
    let task = tokio::spawn(refresher.run());
    (handle, task)
}

struct Refresher<B> {
    alias: String,
    backend: B,
    latest: Arc<ArcSwapOption<Snapshot>>,
    tx: watch::Sender<Option<Arc<Snapshot>>>,
    status: Arc<Mutex<Status>>,
    metrics: Arc<Metrics>,
    policy: Policy,
}

impl<B: Refresh> Refresher<B> {
    async fn run(self) {
        let mut failures: u32 = 0;
        let mut last_class: Option<ErrorClass> = None;
        // The next success is the first after a start or a recovery: spread its refresh wide.
        let mut settling = true;
        loop {
            let span = tracing::info_span!("refresh", role = %self.alias);
            let delay = match self.attempt().instrument(span.clone()).await {
                Ok(lifetime) => {
                    let _enter = span.enter();
                    if failures > 0 {
                        tracing::info!(failures, "credentials refreshed after failures");
                    }
                    failures = 0;
                    last_class = None;
                    let spread = if settling {
                        self.policy.settle_spread
                    } else {
                        self.policy.jitter
                    };
                    settling = false;
                    refresh_delay_within(lifetime, spread, rand::random::<f64>())
                }
                Err((class, message)) => {
                    let _enter = span.enter();
                    failures = failures.saturating_add(1);
                    settling = true;
                    let held_for = self.tx.borrow().as_ref().map_or(Duration::ZERO, |s| {
                        s.serve_until.saturating_duration_since(Instant::now())
                    });
                    let held = held_for > Duration::ZERO;
                    let delay = backoff_delay_holding(
                        failures,
                        class,
                        rand::random::<f64>(),
                        held_for.mul_f64(self.policy.held_share.clamp(0.0, 1.0)),
                    );
                    if last_class != Some(class) {
                        // One line per state change, not one per retry.
                        if class.is_slow() {
                            tracing::error!(error = %message, class = class.label(), serving_cached = held, retry_in = ?delay, "refresh failed");
                        } else {
                            tracing::warn!(error = %message, class = class.label(), serving_cached = held, retry_in = ?delay, "refresh failed");
                        }
                    } else {
                        tracing::debug!(error = %message, class = class.label(), failures, retry_in = ?delay, "refresh failed again");
                    }
                    last_class = Some(class);
                    if class == ErrorClass::TokenRejected {
                        self.backend.invalidate_token().await;
                    }
                    delay
                }
            };
            self.status.lock().next_attempt = Some(Instant::now() + delay);
            tokio::time::sleep(delay).await;
        }
    }

    /// One refresh; on success the remaining lifetime of the new credentials.
    async fn attempt(&self) -> Result<Duration, (ErrorClass, String)> {
        let result = self.backend.fetch().await;
        let outcome = match &result {
            Ok(_) => "success",
            Err(e) => e.class().label(),
        };
        let failed = |class: ErrorClass, message: String| {
            let mut status = self.status.lock();
            status.last_error = Some(message.clone());
            status.last_error_class = Some(class.label());
            status.consecutive_failures = status.consecutive_failures.saturating_add(1);
            (class, message)
        };
        let creds = match result {
            Ok(creds) => creds,
            Err(e) => {
                self.metrics.count_refresh(&self.alias, outcome);
                return Err(failed(e.class(), crate::report::chain(&e)));
            }
        };
        let lifetime = clock::until_unix(creds.expiration);
        if lifetime <= FLOOR {
            // Not usable: keep what we have and treat it as a failure.
            self.metrics
                .count_refresh(&self.alias, ErrorClass::Malformed.label());
            return Err(failed(
                ErrorClass::Malformed,
                format!(
                    "sts returned credentials that expire in {}s, less than the {}s floor",
                    lifetime.as_secs(),
                    FLOOR.as_secs()
                ),
            ));
        }
        // Rendered once, here: a body that cannot be rendered is a failed refresh, never an
        // empty 200.
        let rendered = creds
            .container_json()
            .and_then(|body| Ok((body, creds.imds_json(clock::now_unix())?)));
        let (body, imds_body) = match rendered {
            Ok(r) => r,
            Err(e) => {
                self.metrics
                    .count_refresh(&self.alias, ErrorClass::Malformed.label());
                return Err(failed(
                    ErrorClass::Malformed,
                    format!("cannot render the credentials as JSON: {e}"),
                ));
            }
        };
        self.metrics.count_refresh(&self.alias, outcome);
        self.metrics
            .set_credential_expiry(&self.alias, creds.expiration);
        tracing::info!(
            access_key_id = %creds.access_key_id,
            expiration = %clock::format_rfc3339(creds.expiration),
            "credentials refreshed"
        );
        {
            let mut status = self.status.lock();
            status.expiration = Some(creds.expiration);
            status.last_refresh = Some(clock::now_unix());
            status.last_error = None;
            status.last_error_class = None;
            status.consecutive_failures = 0;
        }
        let snapshot = Snapshot {
            body: Bytes::from(body),
            imds_body: Bytes::from(imds_body),
            serve_until: Instant::now() + (lifetime - FLOOR),
            credentials: creds,
        };
        let snapshot = Arc::new(snapshot);
        // Publish to the hot path first, then wake the waiters.
        self.latest.store(Some(snapshot.clone()));
        self.tx.send_replace(Some(snapshot));
        Ok(lifetime)
    }
}

/// How long to wait before refreshing credentials that have `lifetime` left right after they
/// were obtained. `unit` in `[0, 1)` picks the jitter (up to 10 % earlier, never later).
pub fn refresh_delay(lifetime: Duration, unit: f64) -> Duration {
    refresh_delay_within(lifetime, JITTER, unit)
}

/// [`refresh_delay`] with `spread` (in `[0, 1]`) as the share of the delay that jitter may
/// remove: the first refresh after a start or a recovery uses [`SETTLE_SPREAD`].
pub fn refresh_delay_within(lifetime: Duration, spread: f64, unit: f64) -> Duration {
    let threshold = (lifetime / 2).max(REFRESH_BEFORE.min(lifetime.saturating_sub(FLOOR)));
    let base = lifetime.saturating_sub(threshold);
    base.mul_f64(1.0 - spread.clamp(0.0, 1.0) * unit.clamp(0.0, 1.0))
        .max(MIN_DELAY)
}

/// How long to wait before retry number `failures` (1 for the first retry) of a failure of
/// `class`: full jitter over an exponentially growing ceiling. `unit` in `[0, 1)`.
pub fn backoff_delay(failures: u32, class: ErrorClass, unit: f64) -> Duration {
    backoff_delay_holding(failures, class, unit, Duration::ZERO)
}

/// [`backoff_delay`] while good credentials are held: the cap grows to `stretch` (a share of
/// the time they can still be served, see [`Policy::held_share`]), at most to
/// [`HELD_BACKOFF_CAP`], never below the class's cap.
pub fn backoff_delay_holding(
    failures: u32,
    class: ErrorClass,
    unit: f64,
    stretch: Duration,
) -> Duration {
    let (base, class_cap) = if class.is_slow() {
        (SLOW_BACKOFF_BASE, SLOW_BACKOFF_CAP)
    } else {
        (BACKOFF_BASE, BACKOFF_CAP)
    };
    let cap = class_cap.max(stretch.min(HELD_BACKOFF_CAP));
    let exponent = failures.saturating_sub(1).min(16);
    let ceiling = base.saturating_mul(1 << exponent).min(cap);
    if class == ErrorClass::TokenRejected && failures == 1 {
        // A fresh token may fix it: retry almost at once.
        return MIN_DELAY;
    }
    let unit = unit.clamp(0.0, 1.0);
    if class.is_slow() {
        // "Retried slowly" must hold for every draw: full jitter could pick
        // 200 ms after an AccessDenied. Half the ceiling is fixed, half random.
        return ceiling / 2 + (ceiling / 2).mul_f64(unit);
    }
    ceiling.mul_f64(unit).max(MIN_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn one_hour_sessions_refresh_with_forty_minutes_left() {
        assert_eq!(refresh_delay(60 * MIN, 0.0), 20 * MIN);
        let earliest = refresh_delay(60 * MIN, 0.999_999);
        assert!(earliest >= 18 * MIN && earliest < 20 * MIN, "{earliest:?}");
    }

    #[test]
    fn long_sessions_refresh_at_half_life() {
        assert_eq!(refresh_delay(12 * 60 * MIN, 0.0), 6 * 60 * MIN);
        assert_eq!(refresh_delay(2 * 60 * MIN, 0.0), 60 * MIN);
    }

    #[test]
    fn short_sessions_keep_five_minutes() {
        // 15 min: threshold max(7.5, min(40, 10)) = 10 min left, so refresh after 5 min.
        assert_eq!(refresh_delay(15 * MIN, 0.0), 5 * MIN);
        assert_eq!(refresh_delay(Duration::ZERO, 0.5), MIN_DELAY);
    }

    #[test]
    fn every_refresh_leaves_at_least_thirty_minutes_on_default_sessions() {
        for i in 0..=100 {
            let unit = f64::from(i) / 100.0;
            let d = refresh_delay(60 * MIN, unit);
            assert!(60 * MIN - d >= 40 * MIN, "{unit}: {d:?}");
            assert!(60 * MIN - d <= 42 * MIN, "{unit}: {d:?}");
        }
    }

    #[test]
    fn backoff_grows_to_its_cap_with_full_jitter() {
        let c = ErrorClass::Unavailable;
        assert_eq!(backoff_delay(1, c, 1.0), Duration::from_secs(1));
        assert_eq!(backoff_delay(2, c, 1.0), Duration::from_secs(2));
        assert_eq!(backoff_delay(5, c, 1.0), Duration::from_secs(16));
        assert_eq!(backoff_delay(30, c, 1.0), BACKOFF_CAP);
        assert_eq!(backoff_delay(u32::MAX, c, 1.0), BACKOFF_CAP);
        assert_eq!(backoff_delay(30, c, 0.0), MIN_DELAY);
        for i in 0..100 {
            let unit = f64::from(i) / 100.0;
            let d = backoff_delay(4, c, unit);
            assert!(d >= MIN_DELAY && d <= Duration::from_secs(8), "{d:?}");
        }
    }

    #[test]
    fn the_settling_refresh_may_come_up_to_ninety_five_percent_early() {
        assert_eq!(refresh_delay_within(60 * MIN, SETTLE_SPREAD, 0.0), 20 * MIN);
        assert_eq!(refresh_delay_within(60 * MIN, SETTLE_SPREAD, 1.0), MIN);
        assert_eq!(
            refresh_delay_within(12 * 60 * MIN, SETTLE_SPREAD, 1.0),
            18 * MIN
        );
        assert_eq!(
            refresh_delay_within(60 * MIN, JITTER, 0.5),
            refresh_delay(60 * MIN, 0.5)
        );
        assert_eq!(Policy::default().settle_spread, SETTLE_SPREAD);
    }

    #[test]
    fn held_credentials_stretch_the_backoff_cap() {
        let c = ErrorClass::Unavailable;
        // 35 minutes left: a quarter of it.
        let stretch = (35 * MIN).mul_f64(HELD_SHARE);
        assert_eq!(backoff_delay_holding(30, c, 1.0, stretch), stretch);
        // Never beyond the held cap, never below the class cap.
        assert_eq!(
            backoff_delay_holding(30, c, 1.0, 6 * 60 * MIN),
            HELD_BACKOFF_CAP
        );
        assert_eq!(backoff_delay_holding(30, c, 1.0, MIN), BACKOFF_CAP);
        // The exponential ramp is unchanged: a stretch only raises the cap.
        assert_eq!(
            backoff_delay_holding(1, c, 1.0, stretch),
            Duration::from_secs(1)
        );
        assert_eq!(
            backoff_delay_holding(5, c, 1.0, stretch),
            Duration::from_secs(16)
        );
        // Slow classes keep their floor of half the ceiling.
        let d = ErrorClass::Denied;
        assert_eq!(backoff_delay_holding(30, d, 0.0, stretch), stretch / 2);
        assert_eq!(
            backoff_delay_holding(1, ErrorClass::TokenRejected, 1.0, stretch),
            MIN_DELAY
        );
        assert_eq!(
            backoff_delay_holding(7, c, 0.3, Duration::ZERO),
            backoff_delay(7, c, 0.3)
        );
    }

    #[test]
    fn denied_retries_slowly_and_rejected_tokens_retry_at_once() {
        assert_eq!(backoff_delay(1, ErrorClass::Denied, 1.0), SLOW_BACKOFF_BASE);
        assert_eq!(backoff_delay(10, ErrorClass::Denied, 1.0), SLOW_BACKOFF_CAP);
        // Never fast, whatever the draw.
        assert_eq!(
            backoff_delay(1, ErrorClass::Denied, 0.0),
            SLOW_BACKOFF_BASE / 2
        );
        assert_eq!(
            backoff_delay(10, ErrorClass::Denied, 0.0),
            SLOW_BACKOFF_CAP / 2
        );
        assert_eq!(backoff_delay(1, ErrorClass::TokenRejected, 1.0), MIN_DELAY);
        assert_eq!(
            backoff_delay(2, ErrorClass::TokenRejected, 1.0),
            Duration::from_secs(2)
        );
    }
}
