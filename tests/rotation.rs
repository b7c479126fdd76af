//! Instance identity: rotation in place (key renamed before certificate), key kinds, and the
//! errors for files that are missing, expired or never match. Uses the token source the
//! refresher uses, over real mTLS to the fake token service.

use crate::support::Chain as _;
use std::sync::Arc;
use std::time::Duration;

use sts_sidecar::testing::pki::KeyKind;
use sts_sidecar::token::TokenSource;

use crate::support::{Stack, token_source_for};

const DAY: Duration = Duration::from_secs(24 * 3600);

fn token_source(stack: &Stack) -> TokenSource {
    let config = stack.config();
    token_source_for(&config)
}

#[tokio::test]
async fn picks_up_a_rotation_without_restart_and_without_failed_requests() {
    let stack = Arc::new(Stack::start().await);
    stack.wait_ready().await;
    let source = token_source(&stack);
    let (first, _) = source.token().await.expect("token");
    let (again, _) = source.token().await.expect("token");
    assert_eq!(
        first, again,
        "token cached while the certificate is unchanged"
    );
    let calls_before = stack.token_service.calls();
    let serial_before = stack.token_service.client_serials().last().cloned();

    let next = stack.pki.issue(KeyKind::RsaPkcs1, DAY).expect("issue");
    stack.pki.install_key(&next).expect("key");
    // A fetch that starts between the two renames sees a mismatched pair and waits.
    let fetcher = token_source(&stack);
    let fetch = tokio::spawn({
        async move {
            let source = fetcher;
            let started = tokio::time::Instant::now();
            let result = source.token().await.map(|(t, _)| t);
            (result, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    stack.pki.install_cert(&next).expect("cert");
    let (during, waited) = fetch.await.expect("join");
    during.expect("a rotation in progress is waited out, not reported");
    assert!(waited >= Duration::from_millis(400), "{waited:?}");

    // The original source notices the rotation too and fetches with the new certificate.
    source.token().await.expect("token after rotation");
    assert_eq!(stack.token_service.calls(), calls_before + 2);
    let serials = stack.token_service.client_serials();
    assert_ne!(
        serials.last().cloned(),
        serial_before,
        "the new certificate was presented"
    );
}

#[tokio::test]
async fn a_refresh_during_a_rotation_waits_it_out_and_every_request_gets_200() {
    // See: issue #10 (the old form of this check could not fail: the sidecar served from cache
    // and never refreshed while the files were being replaced). Here the refresher's first
    // fetch starts between the two renames, while clients are already asking.
    let mut stack = Stack::with(crate::support::Options {
        server_toml: "cold_start_wait_ms = 5000".to_owned(),
        start: false,
        ..crate::support::Options::default()
    })
    .await;
    let next = stack.pki.issue(KeyKind::RsaPkcs1, DAY).expect("issue");
    stack.pki.install_key(&next).expect("key");
    stack.start_sidecar().await;
    let stack = Arc::new(stack);
    let clients = {
        let stack = stack.clone();
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..50 {
                statuses.push(stack.get_credentials().await.status);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            statuses
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        stack.token_service.calls(),
        0,
        "no token is fetched with a mismatched pair"
    );
    stack.pki.install_cert(&next).expect("cert");
    let statuses = clients.await.expect("clients");
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(stack.token_service.calls(), 1);
    let metrics = stack.get(&stack.admin_url("/metrics"), &[]).await.body;
    assert!(
        metrics.contains("sts_sidecar_refreshes_total{role=\"default\",outcome=\"success\"} 1"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("outcome=\"identity\""),
        "the rotation was reported as a failure:\n{metrics}"
    );
}

#[tokio::test]
async fn accepts_pkcs8_and_ec_keys() {
    let stack = Stack::start().await;
    for kind in [KeyKind::RsaPkcs8, KeyKind::EcPkcs8] {
        stack
            .pki
            .install(&stack.pki.issue(kind, DAY).expect("issue"))
            .expect("install");
        let (token, claims) = token_source(&stack)
            .token()
            .await
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        let claims = claims.expect("the token service issues JWTs");
        assert!(!token.expose().is_empty());
        assert_eq!(
            claims.sub.as_deref(),
            Some(stack.pki.ids.subject().as_str())
        );
        assert_eq!(claims.aud, vec!["sts.amazonaws.com"]);
    }
}

#[tokio::test]
async fn a_key_that_never_matches_is_reported_with_both_paths() {
    let stack = Stack::start().await;
    let a = stack.pki.issue(KeyKind::RsaPkcs1, DAY).expect("issue");
    let b = stack.pki.issue(KeyKind::RsaPkcs1, DAY).expect("issue");
    stack.pki.install_cert(&a).expect("cert");
    stack.pki.install_key(&b).expect("key");
    let e = token_source(&stack)
        .token()
        .await
        .expect_err("mismatch")
        .chain();
    assert!(e.contains("does not match"), "{e}");
    assert!(
        e.contains(&stack.pki.key_path().display().to_string()),
        "{e}"
    );
    assert!(
        e.contains(&stack.pki.cert_path().display().to_string()),
        "{e}"
    );
}

#[tokio::test]
async fn an_expired_certificate_is_reported() {
    let stack = Stack::start().await;
    let now = u64::try_from(sts_sidecar::clock::now_unix()).expect("time");
    let old = stack
        .pki
        .issue_between(KeyKind::RsaPkcs1, now - 2 * 86_400, now - 86_400)
        .expect("issue");
    stack.pki.install(&old).expect("install");
    let e = token_source(&stack)
        .token()
        .await
        .expect_err("expired")
        .chain();
    assert!(e.contains("expired") && e.contains("instance.crt"), "{e}");
}

#[tokio::test]
async fn missing_files_name_the_variable_and_the_path() {
    let stack = Stack::start().await;
    let mut env = stack.env.clone();
    env.insert(
        "CF_INSTANCE_CERT".into(),
        "/nonexistent/instance.crt".into(),
    );
    env.insert(
        "CF_INSTANCE_KEY".into(),
        stack.pki.key_path().display().to_string(),
    );
    let toml = stack
        .toml()
        .replace(
            &format!("cert_file = \"{}\"\n", stack.pki.cert_path().display()),
            "",
        )
        .replace(
            &format!("key_file = \"{}\"\n", stack.pki.key_path().display()),
            "",
        );
    let config = Stack::config_from(&toml, &env);
    assert_eq!(
        crate::support::token_service(&config).identity.cert_origin,
        "CF_INSTANCE_CERT"
    );
    let e = token_source_for(&config)
        .token()
        .await
        .expect_err("missing")
        .chain();
    assert!(
        e.contains("CF_INSTANCE_CERT") && e.contains("/nonexistent/instance.crt"),
        "{e}"
    );
}

#[tokio::test]
async fn token_service_failures_are_named() {
    use sts_sidecar::testing::fake_token_service::TokenReply;
    let stack = Stack::start().await;
    stack.wait_ready().await;
    let cases = [
        (TokenReply::Status(403), "refused the client certificate"),
        (TokenReply::Status(500), "answered HTTP 500"),
        (TokenReply::Html, "an HTML page"),
        (TokenReply::Empty, "an empty body"),
        (TokenReply::NotJwt, "not three dot-separated"),
        (TokenReply::ExpiredToken, "expired at"),
        (TokenReply::Slow(Duration::from_secs(10)), "timed out"),
    ];
    for (reply, expected) in cases {
        stack.token_service.push_reply(reply.clone());
        let e = token_source(&stack)
            .token()
            .await
            .expect_err("failure")
            .chain();
        assert!(e.contains(expected), "{reply:?}: {e}");
        assert!(
            e.contains(&stack.token_service.url()) || expected == "expired at",
            "{reply:?}: {e}"
        );
    }
    // Nothing listening at all.
    let toml = stack
        .toml()
        .replace(&stack.token_service.url(), "https://127.0.0.1:9");
    let config = Stack::config_from(&toml, &stack.env);
    let e = token_source_for(&config)
        .token()
        .await
        .expect_err("down")
        .chain();
    assert!(
        e.contains("cannot reach the token service at https://127.0.0.1:9/token"),
        "{e}"
    );
}

// See issue #4: TLS failures at the token service are reported as such.
#[tokio::test]
async fn tls_failures_at_the_token_service_are_named() {
    use sts_sidecar::testing::fake_token_service::FakeTokenService;
    let stack = Stack::start().await;

    // A CA bundle that does not include the service's CA (the Diego root instead).
    let dir = tempfile::tempdir().expect("tmp");
    let wrong_ca = dir.path().join("wrong-ca.pem");
    std::fs::write(&wrong_ca, stack.pki.root_pem()).expect("write");
    let toml = stack.toml().replace(
        &stack.pki.server_ca_path().display().to_string(),
        &wrong_ca.display().to_string(),
    );
    let config = Stack::config_from(&toml, &stack.env);
    let e = token_source_for(&config)
        .token()
        .await
        .expect_err("untrusted")
        .chain();
    assert!(
        e.contains("cannot reach the token service") && e.contains("invalid peer certificate"),
        "{e}"
    );
    assert!(e.contains("UnknownIssuer"), "{e}");

    // The right CA, but the service presents an expired certificate.
    let expired = FakeTokenService::start_with_expired_certificate(&stack.pki)
        .await
        .expect("start");
    let toml = stack
        .toml()
        .replace(&stack.token_service.url(), &expired.url());
    let config = Stack::config_from(&toml, &stack.env);
    let e = token_source_for(&config)
        .token()
        .await
        .expect_err("expired")
        .chain();
    assert!(
        e.contains("invalid peer certificate: certificate expired"),
        "{e}"
    );
    assert_eq!(
        expired.calls(),
        0,
        "no request was sent over the failed handshake"
    );
}
