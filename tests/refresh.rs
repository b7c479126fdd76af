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

#[tokio::test(start_paused = true)]
async fn refreshes_forty_minutes_before_expiry_with_bounded_jitter() {
    let script = Scripted::new(Step::Creds(HOUR));
    let (role, _task) = start(&script);
    let first = ready(&role).await;
    // Jitter moves the refresh up to 10 % earlier: between 18 and 20 minutes after issue.
    sleep(17 * MIN + Duration::from_secs(59)).await;
    assert_eq!(script.calls(), 1, "refreshed too early");
    assert_eq!(key(&role).as_deref(), Some(first.as_str()));
    sleep(2 * MIN + Duration::from_secs(2)).await;
    assert_eq!(script.calls(), 2, "did not refresh by 20 minutes");
    assert_ne!(key(&role).as_deref(), Some(first.as_str()));
}

#[tokio::test(start_paused = true)]
async fn jittered_refreshes_spread_over_the_window() {
    // 40 independent roles: their first refreshes must all fall in [18, 20] min and not all on
    // the same instant (the jitter is real).
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
    let mut refreshed_at = vec![None; scripts.len()];
    while start.elapsed() < 21 * MIN {
        sleep(Duration::from_secs(5)).await;
        for (i, s) in scripts.iter().enumerate() {
            if s.calls() >= 2 && refreshed_at[i].is_none() {
                refreshed_at[i] = Some(start.elapsed());
            }
        }
    }
    let times: Vec<Duration> = refreshed_at
        .into_iter()
        .map(|t| t.expect("refreshed"))
        .collect();
    assert!(
        times
            .iter()
            .all(|t| *t >= 18 * MIN - Duration::from_secs(5)
                && *t <= 20 * MIN + Duration::from_secs(5)),
        "{times:?}"
    );
    let distinct: std::collections::BTreeSet<_> = times.iter().collect();
    assert!(
        distinct.len() > 5,
        "jitter did not spread refreshes: {times:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn long_sessions_refresh_at_half_life() {
    let script = Scripted::new(Step::Creds(12 * HOUR));
    let (role, _task) = start(&script);
    ready(&role).await;
    sleep(5 * HOUR + 23 * MIN).await;
    assert_eq!(script.calls(), 1);
    sleep(38 * MIN).await;
    assert_eq!(script.calls(), 2);
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
        let remaining = snapshot
            .serve_until
            .saturating_duration_since(Instant::now())
            + FLOOR;
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
