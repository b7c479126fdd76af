//! Soak: seven simulated days with paused time against a scripted backend. Outages of random
//! length and error class start at random times, plus a short identity outage at each 24 h
//! certificate rotation, while a client asks every 5 s. It asserts that no answer ever carried
//! credentials with less than the floor left, and that every outage short enough for the refresh
//! policy to ride out was invisible. It also reports the availability figure.
//!
//! The policy refreshes at 40 min remaining (1 h sessions) and serves until 5 min remain, and a
//! retry waits at most 2 min (5 min for the denied class, which is retried slowly). So an outage
//! can be ridden out if it is shorter than 40 - 5 - 2 = 33 min (40 - 5 - 5 = 30 min for the
//! denied class), wherever in the schedule it starts.

use std::time::Duration;

use crate::scripted::{Scripted, Step};
use rand::{RngExt as _, SeedableRng as _};
use sts_sidecar::backend::ErrorClass;
use sts_sidecar::cache::{BACKOFF_CAP, FLOOR, REFRESH_BEFORE, SLOW_BACKOFF_CAP};
use tokio::time::{Instant, sleep};

use crate::support::{ready, scripted_role};

const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);
/// The longest outage of `class` the policy hides: the refresh lead, minus the floor, minus the
/// longest wait between two retries of that class.
fn ride_out(class: ErrorClass) -> Duration {
    let cap = if class.is_slow() {
        SLOW_BACKOFF_CAP
    } else {
        BACKOFF_CAP
    };
    REFRESH_BEFORE - FLOOR - cap
}
const CLASSES: [ErrorClass; 5] = [
    ErrorClass::Throttled,
    ErrorClass::Unavailable,
    ErrorClass::TokenRejected,
    ErrorClass::Malformed,
    ErrorClass::Denied,
];

struct Outage {
    start: Duration,
    length: Duration,
    class: ErrorClass,
    visible: bool,
}

#[tokio::test(start_paused = true)]
async fn seven_days_of_random_faults_never_serve_stale_credentials() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5715_51de);
    // The outage plan: about one outage every 6 h, 1 s to 90 min long, plus a 20 s identity
    // outage at every 24 h rotation.
    let mut plan: Vec<Outage> = Vec::new();
    let mut t = Duration::from_secs(rng.random_range(600..6 * 3600));
    while t < 7 * DAY {
        let length = Duration::from_secs(rng.random_range(1..90 * 60));
        plan.push(Outage {
            start: t,
            length,
            class: CLASSES[rng.random_range(0..CLASSES.len())],
            visible: false,
        });
        t += length + Duration::from_secs(rng.random_range(600..12 * 3600));
    }
    for day in 1..7 {
        plan.push(Outage {
            start: day * DAY,
            length: Duration::from_secs(20),
            class: ErrorClass::Identity,
            visible: false,
        });
    }
    plan.sort_by_key(|o| o.start);
    plan.dedup_by(|b, a| b.start < a.start + a.length); // no overlapping outages

    let script = Scripted::new(Step::Creds(HOUR));
    let (role, _task) = scripted_role(&script);
    ready(&role).await;
    let start = Instant::now();
    let (mut asked, mut served) = (0u64, 0u64);
    let mut min_left = Duration::MAX;
    let mut current: Option<usize> = None;
    while start.elapsed() < 7 * DAY {
        let now = start.elapsed();
        // Switch the backend in and out of the planned outages.
        let active = plan
            .iter()
            .position(|o| now >= o.start && now < o.start + o.length);
        if active != current {
            match active {
                Some(i) => script.set_default(Step::Fail(plan[i].class)),
                None => script.set_default(Step::Creds(HOUR)),
            }
            current = active;
        }
        asked += 1;
        match role.current() {
            Some(snapshot) => {
                served += 1;
                // The credentials' own expiry, as the backend issued them: the cache's
                // serve_until is its own arithmetic and proves nothing about them.
                let expires = script
                    .expires_at(&snapshot.credentials.access_key_id)
                    .expect("served credentials the backend issued");
                let left = expires.saturating_duration_since(Instant::now());
                assert!(
                    left > FLOOR,
                    "served credentials with only {left:?} left at {now:?}"
                );
                min_left = min_left.min(left);
            }
            None => {
                // Blame the outage that is running or ended most recently.
                if let Some(o) = plan.iter_mut().rev().find(|o| o.start <= now) {
                    o.visible = true;
                }
            }
        }
        sleep(Duration::from_secs(5)).await;
    }
    let short: Vec<&Outage> = plan
        .iter()
        .filter(|o| o.length < ride_out(o.class))
        .collect();
    let long: Vec<&Outage> = plan
        .iter()
        .filter(|o| o.length >= ride_out(o.class))
        .collect();
    for o in &short {
        assert!(
            !o.visible,
            "a {:?} outage ({:?}) starting at {:?} was visible to clients",
            o.length, o.class, o.start
        );
    }
    let availability = served as f64 / asked as f64 * 100.0;
    println!(
        "soak: 7 days, {} outages ({} short enough to ride out, all invisible; {} longer, {} visible), \
         {asked} requests, availability {availability:.3} %, least validity served {min_left:?}, {} backend calls",
        plan.len(),
        short.len(),
        long.len(),
        long.iter().filter(|o| o.visible).count(),
        script.calls(),
    );
    assert!(short.len() >= 10, "the plan exercises enough short outages");
    assert!(!long.is_empty(), "and some long ones");
    assert!(availability > 95.0, "availability {availability:.3} %");
}

#[tokio::test(start_paused = true)]
async fn one_log_line_per_state_change_not_per_retry() {
    use tracing_subscriber::layer::SubscriberExt as _;
    let lines = crate::support::CapturedLogs::default();
    let subscriber = tracing_subscriber::registry()
        .with(sts_sidecar::telemetry::filter(Some("info")).expect("filter"))
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(lines.clone())
                .with_ansi(false),
        );
    let _guard = tracing::subscriber::set_default(subscriber);

    let script = Scripted::new(Step::Creds(HOUR));
    let (role, _task) = scripted_role(&script);
    ready(&role).await;
    // 30 minutes of throttling (many retries), then 30 of 5xx, then recovery.
    script.set_default(Step::Fail(ErrorClass::Throttled));
    sleep(50 * MIN).await;
    script.set_default(Step::Fail(ErrorClass::Unavailable));
    sleep(30 * MIN).await;
    script.set_default(Step::Creds(HOUR));
    sleep(3 * MIN).await;
    let retries = script.calls();
    let text = lines.text();
    let failed: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("refresh failed"))
        .collect();
    assert!(retries > 20, "{retries} attempts");
    assert_eq!(
        failed.len(),
        2,
        "one line per class change, not per retry:\n{text}"
    );
    assert!(
        failed[0].contains("class=\"throttled\"") || failed[0].contains("class=throttled"),
        "{}",
        failed[0]
    );
    assert!(failed[1].contains("unavailable"), "{}", failed[1]);
    assert_eq!(
        text.matches("credentials refreshed after failures").count(),
        1,
        "{text}"
    );
}
