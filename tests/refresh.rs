//! Refresh policy. Paused tokio time against a scripted backend: the schedule and its jitter
//! bounds, backoff, stale-while-failing, the 5-minute floor, token invalidation and readiness.
//! Then, in real time through the fake STS and token service: each error class is classified
//! and retried as designed.

use std::time::Duration;

use crate::scripted::{Scripted, Step};
use sts_sidecar::backend::ErrorClass;
use sts_sidecar::cache::{FLOOR, RoleHandle};
use sts_sidecar::testing::fake_sts::StsReply;
use tokio::time::{Instant, sleep};

use crate::support::{Options, Stack, ready, scripted_role as start};

const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

fn key(role: &RoleHandle) -> Option<String> {
    role.current().map(|s| s.credentials.access_key_id.clone())
}

/// Watches `script` for `d` in 1-second steps; when (from now) each new call came.
async fn call_times(script: &Scripted, d: Duration) -> Vec<Duration> {
    let start = Instant::now();
    let mut seen = script.calls();
    let mut times = Vec::new();
    while start.elapsed() < d {
        sleep(Duration::from_secs(1)).await;
        while script.calls() > seen {
            seen += 1;
            times.push(start.elapsed());
        }
    }
    times
}

fn within(t: Duration, from: Duration, to: Duration) -> bool {
    t + Duration::from_secs(1) >= from && t <= to + Duration::from_secs(1)
}

#[tokio::test(start_paused = true)]
async fn the_first_refresh_is_spread_wide_and_later_ones_come_forty_minutes_before_expiry() {
    let script = Scripted::new(Step::Creds(HOUR));
    let (role, _task) = start(&script);
    let first = ready(&role).await;
    let times = call_times(&script, 45 * MIN).await;
    // The first refresh after a start may come up to 95 % early: 1 to 20 minutes after issue.
    assert!(within(times[0], MIN, 20 * MIN), "{times:?}");
    assert_ne!(key(&role).as_deref(), Some(first.as_str()));
    // Later ones up to 10 % early: 18 to 20 minutes after the previous one.
    assert!(within(times[1] - times[0], 18 * MIN, 20 * MIN), "{times:?}");
}

#[tokio::test(start_paused = true)]
async fn first_refreshes_spread_over_the_refresh_interval_then_keep_their_phase() {
    // 40 roles started together (a fleet restarted in the same minute): their first refreshes
    // fall anywhere in [1, 20] min, so they do not stay in step; the next ones come 18 to 20
    // minutes after each role's own first.
    let mut scripts = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let script = Scripted::new(Step::Creds(HOUR));
        let (role, task) = start(&script);
        ready(&role).await;
        scripts.push(script);
        tasks.push(task);
    }
    let start = Instant::now();
    let mut first = vec![None; scripts.len()];
    let mut second = vec![None; scripts.len()];
    while start.elapsed() < 41 * MIN {
        sleep(Duration::from_secs(5)).await;
        for (i, s) in scripts.iter().enumerate() {
            if s.calls() >= 2 && first[i].is_none() {
                first[i] = Some(start.elapsed());
            }
            if s.calls() >= 3 && second[i].is_none() {
                second[i] = Some(start.elapsed());
            }
        }
    }
    let first: Vec<Duration> = first.into_iter().map(|t| t.expect("refreshed")).collect();
    let slack = Duration::from_secs(5);
    assert!(
        first
            .iter()
            .all(|t| *t + slack >= MIN && *t <= 20 * MIN + slack),
        "{first:?}"
    );
    let earliest = first.iter().min().copied().unwrap_or_default();
    let latest = first.iter().max().copied().unwrap_or_default();
    assert!(
        latest - earliest > 7 * MIN,
        "first refreshes not spread: {first:?}"
    );
    for (f, s) in first.iter().zip(&second) {
        let s = s.expect("refreshed twice");
        assert!(
            s - *f + slack >= 18 * MIN && s - *f <= 20 * MIN + slack,
            "{f:?} then {s:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_first_refresh_after_a_recovery_is_spread_wide() {
    // 20 roles fail together (an outage) and recover together: their next refreshes must not
    // come back in step.
    let mut scripts = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let script = Scripted::new(Step::Creds(HOUR));
        let (role, task) = start(&script);
        ready(&role).await;
        script.set_default(Step::Fail(ErrorClass::Unavailable));
        scripts.push(script);
        tasks.push(task);
    }
    // Every role has made its first refresh (and failed) by 21 minutes.
    sleep(21 * MIN).await;
    for s in &scripts {
        s.set_default(Step::Creds(HOUR));
    }
    let recovered_at = Instant::now();
    let mut calls_then: Vec<Option<usize>> = vec![None; scripts.len()];
    let mut recovered = vec![None; scripts.len()];
    let mut next = vec![None; scripts.len()];
    // The recovery comes at each role's next retry (at most a quarter of its 34 minutes left,
    // 8.5 min, after a backoff that may itself run past the recovery), its next refresh up to
    // 20 minutes after that: watch long enough for the latest of them (30 minutes was not, once
    // in CI).
    while recovered_at.elapsed() < 40 * MIN {
        sleep(Duration::from_secs(1)).await;
        for (i, s) in scripts.iter().enumerate() {
            let calls = s.calls();
            match (calls_then[i], recovered[i], next[i]) {
                (None, _, _) => calls_then[i] = Some(calls),
                (Some(c), None, _) if calls > c => {
                    recovered[i] = Some(recovered_at.elapsed());
                    calls_then[i] = Some(calls);
                }
                (Some(c), Some(_), None) if calls > c => next[i] = Some(recovered_at.elapsed()),
                _ => {}
            }
        }
    }
    let gaps: Vec<Duration> = recovered
        .iter()
        .zip(&next)
        .map(|(r, n)| n.expect("refreshed after the recovery") - r.expect("recovered"))
        .collect();
    let slack = Duration::from_secs(2);
    assert!(
        gaps.iter()
            .all(|g| *g + slack >= MIN && *g <= 20 * MIN + slack),
        "{gaps:?}"
    );
    let spread = gaps.iter().max().copied().unwrap_or_default()
        - gaps.iter().min().copied().unwrap_or_default();
    assert!(
        spread > 5 * MIN,
        "refreshes after the recovery in step: {gaps:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn backoff_waits_longer_while_credentials_are_held_and_less_near_the_floor() {
    // Checked for every gap (no chance involved): a retry waits at most a quarter of the time
    // the credentials can still be served (at most 15 min), or the 2-minute cap of its class,
    // whichever is longer; so there are always several attempts before the floor.
    fn check_gaps(times: &[Duration], floor_at: Duration) {
        for pair in times.windows(2) {
            let gap = pair[1] - pair[0];
            let held = floor_at.saturating_sub(pair[0]);
            let cap = (held / 4).min(15 * MIN).max(2 * MIN) + Duration::from_secs(1);
            assert!(gap <= cap, "waited {gap:?} with {held:?} left: {times:?}");
        }
    }

    // A 1 h session: the scheduled refresh fails and so does every retry.
    let script = Scripted::new(Step::Creds(HOUR));
    let (role, _task) = start(&script);
    ready(&role).await;
    script.set_default(Step::Fail(ErrorClass::Unavailable));
    let times = call_times(&script, 70 * MIN).await;
    let floor_at = HOUR - FLOOR;
    check_gaps(&times, floor_at);
    let before_floor = times.iter().filter(|t| **t < floor_at).count();
    // The scheduled refresh, then at least four retries before the floor.
    assert!(before_floor >= 5, "{times:?}");
    assert!(!role.is_ready());

    // A 12 h session failing for hours: retries settle at the 15-minute cap, where the old
    // 2-minute cap made one call a minute.
    let script = Scripted::new(Step::Creds(12 * HOUR));
    let (role, _task) = start(&script);
    ready(&role).await;
    script.set_default(Step::Fail(ErrorClass::Unavailable));
    let times = call_times(&script, 12 * HOUR).await;
    check_gaps(&times, 12 * HOUR - FLOOR);
    let first = times[0];
    let in_four_hours = times.iter().filter(|t| **t < first + 4 * HOUR).count();
    // About 45 expected (a ramp, then one every 7.5 min on average); 240 with a 2-minute cap.
    assert!(in_four_hours <= 80, "{in_four_hours} attempts in 4 h");
    assert!(
        times.windows(2).any(|p| p[1] - p[0] > 10 * MIN),
        "no retry waited longer than 10 minutes: {times:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn long_sessions_refresh_at_half_life() {
    let script = Scripted::new(Step::Creds(12 * HOUR));
    let (role, _task) = start(&script);
    ready(&role).await;
    // Half life (6 h); the first refresh after a start may come up to 95 % early.
    let times = call_times(&script, 12 * HOUR).await;
    assert!(within(times[0], 18 * MIN, 6 * HOUR), "{times:?}");
    // Later ones up to 10 % early: 5 h 24 min to 6 h after the previous one.
    assert!(
        within(times[1] - times[0], 5 * HOUR + 24 * MIN, 6 * HOUR),
        "{times:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn every_answer_over_a_day_carries_forty_minutes_of_validity() {
    let script = Scripted::new(Step::Creds(HOUR));
    let (role, _task) = start(&script);
    ready(&role).await;
    let start = Instant::now();
    while start.elapsed() < 24 * HOUR {
        sleep(MIN).await;
        let snapshot = role.current().expect("credentials held");
        // The credentials' own expiry as the backend issued them (the cache's serve_until is
        // its own arithmetic).
        let remaining = script
            .expires_at(&snapshot.credentials.access_key_id)
            .expect("issued by the backend")
            .saturating_duration_since(Instant::now());
        assert!(
            remaining >= 39 * MIN,
            "only {remaining:?} left at {:?}",
            start.elapsed()
        );
    }
    let calls = script.calls();
    assert!((72..=81).contains(&calls), "{calls} refreshes in 24 h");
}

#[tokio::test(start_paused = true)]
async fn serves_cached_credentials_while_failing_until_the_floor() {
    let script = Scripted::new(Step::Creds(HOUR));
    let (role, _task) = start(&script);
    let first = ready(&role).await;
    let issued_at = Instant::now();
    script.set_default(Step::Fail(ErrorClass::Unavailable));

    sleep(54 * MIN + Duration::from_secs(50)).await;
    assert_eq!(
        key(&role).as_deref(),
        Some(first.as_str()),
        "stale credentials must be served"
    );
    assert!(role.is_ready());
    let retries = script.calls() - 2;
    // Full jitter, ceiling 1 s doubling to 120 s: retried, but no hot loop.
    assert!(
        (5..=300).contains(&retries),
        "{retries} retries in 35 minutes"
    );
    let status = role.status();
    assert_eq!(status.last_error_class, Some("unavailable"));
    assert!(status.consecutive_failures >= 5);

    // With only the floor left nothing is served and the role is not ready.
    sleep((55 * MIN + Duration::from_secs(1)).saturating_sub(issued_at.elapsed())).await;
    assert_eq!(key(&role), None);
    assert!(!role.is_ready());
    let waited_from = Instant::now();
    assert!(
        role.wait_usable(Duration::from_millis(1500))
            .await
            .is_none()
    );
    assert_eq!(waited_from.elapsed(), Duration::from_millis(1500));

    // Recovery: the next retry (at most 120 s away) brings fresh credentials.
    script.set_default(Step::Creds(HOUR));
    sleep(2 * MIN + Duration::from_secs(1)).await;
    assert!(role.is_ready());
    assert_ne!(key(&role).as_deref(), Some(first.as_str()));
    assert_eq!(role.status().last_error_class, None);
}

#[tokio::test(start_paused = true)]
async fn errors_that_need_a_human_are_retried_slowly() {
    let script = Scripted::new(Step::Creds(HOUR));
    let (role, _task) = start(&script);
    ready(&role).await;
    script.set_default(Step::Fail(ErrorClass::Denied));
    sleep(50 * MIN).await;
    let retries = script.calls() - 2;
    // Ceiling 30 s doubling to 300 s: about a dozen attempts in 30 minutes.
    assert!(
        (2..=60).contains(&retries),
        "{retries} retries in 30 minutes"
    );
    assert!(role.is_ready(), "cached credentials still served");
}

#[tokio::test(start_paused = true)]
async fn a_rejected_token_is_dropped_and_retried_at_once() {
    let script = Scripted::new(Step::Creds(HOUR));
    script.push(Step::Fail(ErrorClass::TokenRejected));
    let (role, _task) = start(&script);
    let before = Instant::now();
    ready(&role).await;
    assert_eq!(script.invalidations(), 1);
    assert_eq!(script.calls(), 2);
    assert!(
        before.elapsed() <= Duration::from_millis(200),
        "{:?}",
        before.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn readiness_waits_for_the_first_success() {
    let script = Scripted::new(Step::Creds(HOUR));
    for _ in 0..3 {
        script.push(Step::Fail(ErrorClass::Identity));
    }
    let (role, _task) = start(&script);
    sleep(Duration::from_millis(10)).await;
    assert!(!role.is_ready());
    assert!(role.status().consecutive_failures >= 1);
    // Three failures back off for at most 1 + 2 + 4 s.
    sleep(Duration::from_secs(8)).await;
    assert!(role.is_ready());
    assert_eq!(script.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn cold_start_requests_wait_at_most_the_grace() {
    let script = Scripted::new(Step::Creds(HOUR));
    script.push(Step::SlowCreds(Duration::from_secs(5), HOUR));
    let (role, _task) = start(&script);
    let t = Instant::now();
    assert!(
        role.wait_usable(Duration::from_millis(1500))
            .await
            .is_none()
    );
    assert_eq!(t.elapsed(), Duration::from_millis(1500));
    // A request arriving shortly before the answer gets it as soon as it lands.
    sleep(Duration::from_secs(3)).await;
    let t = Instant::now();
    assert!(
        role.wait_usable(Duration::from_millis(1500))
            .await
            .is_some()
    );
    assert!(t.elapsed() <= Duration::from_millis(500));
}

#[tokio::test(start_paused = true)]
async fn short_lived_credentials_never_replace_good_ones() {
    let script = Scripted::new(Step::Creds(HOUR));
    let (role, _task) = start(&script);
    let first = ready(&role).await;
    script.set_default(Step::Creds(Duration::from_secs(120)));
    sleep(25 * MIN).await;
    assert!(script.calls() >= 3);
    assert_eq!(key(&role).as_deref(), Some(first.as_str()));
    let status = role.status();
    assert_eq!(status.last_error_class, Some("malformed"));
    assert!(status.last_error.expect("error").contains("floor"));
}

// ---- real time, through the fakes ----

#[tokio::test]
async fn each_transient_sts_error_is_retried_within_a_second() {
    let cases = [
        StsReply::throttling(),
        StsReply::unavailable(),
        StsReply::idp_communication(),
        StsReply::MalformedXml,
        // A code we do not know on a 5xx or a 429 is the service's trouble: retried fast,
        // not as `denied`.
        StsReply::Error(502, "BadGatewayException".into(), "upstream".into()),
        StsReply::Error(429, "TooManyCallsException".into(), "slow down".into()),
    ];
    let mut runs = Vec::new();
    for error in cases {
        runs.push(tokio::spawn(async move {
            // A fast retry comes within about a second; the request may wait up to 5 s, so
            // that a loaded machine (six stacks start at once) cannot fail it, while a retry
            // classed as `denied` (15 s or more) still does.
            let mut stack = Stack::with(Options {
                start: false,
                server_toml: "cold_start_wait_ms = 5000".to_owned(),
                ..Options::default()
            })
            .await;
            stack.sts.push_reply(error.clone());
            stack.start_sidecar().await;
            let r = stack.get_credentials().await;
            assert_eq!(r.status, 200, "{error:?}: {}", r.body);
            assert_eq!(stack.sts.calls(), 2, "{error:?}");
            let metrics = stack.get(&stack.admin_url("/metrics"), &[]).await.body;
            let class = match &error {
                StsReply::Error(_, code, _) if code == "Throttling" => "throttled",
                StsReply::Error(429, _, _) => "throttled",
                StsReply::MalformedXml => "malformed",
                _ => "unavailable",
            };
            let needle =
                format!("sts_sidecar_refreshes_total{{role=\"default\",outcome=\"{class}\"}} 1");
            assert!(metrics.contains(&needle), "{error:?}: {needle} missing");
        }));
    }
    for run in runs {
        run.await.expect("case");
    }
}

#[tokio::test]
async fn a_token_service_shedding_load_is_counted_as_throttled_and_retried_fast() {
    let mut stack = Stack::with(Options {
        start: false,
        server_toml: "cold_start_wait_ms = 5000".to_owned(),
        ..Options::default()
    })
    .await;
    stack
        .token_service
        .push_reply(sts_sidecar::testing::fake_token_service::TokenReply::Status(429));
    stack.start_sidecar().await;
    let r = stack.get_credentials().await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(stack.token_service.calls(), 2);
    let metrics = stack.get(&stack.admin_url("/metrics"), &[]).await.body;
    let needle = "sts_sidecar_refreshes_total{role=\"default\",outcome=\"throttled\"} 1";
    assert!(metrics.contains(needle), "{needle} missing");
}

#[tokio::test]
async fn a_rejected_identity_token_is_fetched_again_before_retrying() {
    for rejection in [StsReply::invalid_token(), StsReply::expired_token()] {
        let mut stack = Stack::with(Options {
            start: false,
            ..Options::default()
        })
        .await;
        stack.sts.push_reply(rejection.clone());
        stack.start_sidecar().await;
        let r = stack.get_credentials().await;
        assert_eq!(r.status, 200, "{rejection:?}: {}", r.body);
        assert_eq!(stack.sts.calls(), 2, "{rejection:?}");
        assert_eq!(
            stack.token_service.calls(),
            2,
            "{rejection:?}: a fresh token for the retry"
        );
    }
}

#[tokio::test]
async fn access_denied_is_reported_with_its_code_and_message() {
    let mut stack = Stack::with(Options {
        start: false,
        ..Options::default()
    })
    .await;
    stack.sts.set_reply(StsReply::access_denied());
    stack.start_sidecar().await;
    let r = stack.get_credentials().await;
    assert_eq!(r.status, 503);
    let status = stack.get(&stack.admin_url("/status"), &[]).await.json();
    let role = &status["roles"][0];
    assert_eq!(role["last_error_class"], "denied");
    let error = role["last_error"].as_str().expect("error");
    assert!(
        error.contains("AccessDenied") && error.contains("Not authorized"),
        "{error}"
    );
    // Slow retry: no second attempt within the first seconds.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stack.sts.calls(), 1);
}

#[tokio::test]
async fn a_slow_sts_times_out_and_is_retried() {
    let mut stack = Stack::with(Options {
        start: false,
        ..Options::default()
    })
    .await;
    stack
        .sts
        .push_reply(StsReply::Slow(Duration::from_secs(30)));
    stack.start_sidecar().await;
    stack.wait_ready().await;
    assert_eq!(stack.sts.calls(), 2);
    let metrics = stack.get(&stack.admin_url("/metrics"), &[]).await.body;
    assert!(
        metrics.contains("sts_sidecar_refreshes_total{role=\"default\",outcome=\"unavailable\"} 1"),
        "{metrics}"
    );
}
