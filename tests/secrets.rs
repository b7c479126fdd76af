//! Marker secrets (authorization token, identity token, secret key, session token, private key)
//! never reach a log line at trace level (ours and every dependency's), an error message, the
//! admin endpoints, or a `Debug` print.

use sts_sidecar::testing::fake_sts::StsReply;
use sts_sidecar::testing::fake_token_service::TokenReply;
use tracing_subscriber::layer::SubscriberExt as _;

use crate::support::{Options, Stack};

const AUTH_MARKER: &str = "authmarker-7f3a9c1e5b2d4086a1c3e5f7";
const STS_MARKER: &str = "stsmarker9d8c7b6a";
const BODY_MARKER: &str = "bodymarker-0a1b2c3d";

#[tokio::test]
async fn no_secret_reaches_logs_errors_or_debug_output() {
    // Process-wide, through the production filter at its most verbose setting: a thread-scoped
    // subscriber misses events from callsites first hit elsewhere.
    let capture = crate::support::CapturedLogs::default();
    let subscriber = tracing_subscriber::registry()
        .with(sts_sidecar::telemetry::filter(Some("trace")).expect("filter"))
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(capture.clone())
                .with_ansi(false),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(capture.clone()),
        );
    tracing::subscriber::set_global_default(subscriber)
        .expect("only this test installs a subscriber");
    let _ = tracing_log::LogTracer::init();

    let mut stack = Stack::with(Options {
        env: vec![("AWS_CONTAINER_AUTHORIZATION_TOKEN", AUTH_MARKER.to_owned())],
        start: false,
        ..Options::default()
    })
    .await;
    stack.sts.set_secret_marker(STS_MARKER);
    // The first STS answer repeats the identity token in its error message.
    stack.sts.push_reply(StsReply::EchoToken);
    stack.start_sidecar().await;
    let ok = stack
        .get(&stack.credentials_url(), &[("authorization", AUTH_MARKER)])
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.body.contains(STS_MARKER), "the marker really was issued");
    let _ = stack
        .get(
            &stack.credentials_url(),
            &[("authorization", &format!("{AUTH_MARKER}x"))],
        )
        .await;
    let _ = stack.get(&stack.credentials_url(), &[]).await;

    // Failures whose bodies or causes carry data: a token-service body, an echoed token.
    stack.token_service.push_reply(TokenReply::Custom(
        200,
        "text/plain".into(),
        format!("{BODY_MARKER}.x.y"),
    ));
    let service_error = {
        let e = crate::support::token_source_for(&stack.config())
            .token()
            .await
            .expect_err("bad body");
        format!("{e} {e:?}")
    };
    let status = stack.get(&stack.admin_url("/status"), &[]).await.body;
    let metrics = stack.get(&stack.admin_url("/metrics"), &[]).await.body;

    // Errors from bad configuration that involve the token.
    let mut env = stack.env.clone();
    env.insert(
        "AWS_CONTAINER_AUTHORIZATION_TOKEN".into(),
        format!("{AUTH_MARKER}\n"),
    );
    let config = Stack::config_from(&stack.toml(), &env);
    let auth_error = format!(
        "{:#}",
        sts_sidecar::cmd::serve::auth(&config).expect_err("newline refused")
    );
    assert!(auth_error.contains("newline"), "{auth_error}");

    let snapshot = stack
        .sidecar()
        .roles
        .default_role()
        .current()
        .expect("held");
    let debug = format!(
        "{:?} {:?} {:?} {:?}",
        stack.config(),
        stack.sidecar(),
        snapshot,
        stack.sidecar().roles
    );
    let logs = capture.text();
    for expected in [
        "sts_sidecar::cache",
        "credentials refreshed",
        "refresh failed",
        "fetched identity token",
    ] {
        assert!(logs.contains(expected), "the capture missed {expected:?}");
    }

    let mut secrets: Vec<(String, String)> = vec![
        ("authorization token".into(), AUTH_MARKER.into()),
        ("STS secret/session marker".into(), STS_MARKER.into()),
        ("token-service body".into(), BODY_MARKER.into()),
    ];
    for token in stack.token_service.issued_tokens() {
        let signature = token.rsplit('.').next().expect("jws").to_owned();
        secrets.push(("identity token signature".into(), signature));
        secrets.push(("identity token".into(), token));
    }
    let key_pem = std::fs::read_to_string(stack.pki.key_path()).expect("key");
    for line in key_pem.lines().filter(|l| l.len() >= 40) {
        secrets.push(("private key".into(), line.to_owned()));
    }
    assert!(stack.token_service.issued_tokens().len() >= 2);
    let outputs = [
        ("logs", &logs),
        ("/status", &status),
        ("/metrics", &metrics),
        ("token error", &service_error),
        ("auth error", &auth_error),
        ("Debug", &debug),
    ];
    for (what, text) in outputs {
        for (name, secret) in &secrets {
            assert!(!text.contains(secret.as_str()), "{name} leaked into {what}");
        }
    }
    // The echoed token was scrubbed but the STS error code survived.
    assert!(
        logs.contains("InvalidIdentityToken") && logs.contains("<redacted>"),
        "STS error logged without its token"
    );
}
