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
        sts_sidecar::app::auth(&config).expect_err("newline refused")
    );
    assert!(auth_error.contains("newline"), "{auth_error}");

    // Every other source, through a sidecar each, with failures whose answers carry data.
    let (sources_text, source_secrets) = other_sources().await;
    // The issuer: a token issued, assertions refused, its keys.
    let (issuer_text, issuer_secrets) = issuer().await;

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
        "the identity token has no aud claim (it carries client_id instead",
        "sts_sidecar::cache",
        "credentials refreshed",
        "refresh failed",
        "fetched identity token",
        "token issued",
        "token request refused",
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
    secrets.extend(source_secrets);
    secrets.extend(issuer_secrets);
    let outputs = [
        ("logs", &logs),
        ("/status", &status),
        ("/metrics", &metrics),
        ("token error", &service_error),
        ("auth error", &auth_error),
        ("Debug", &debug),
        ("other sources' errors, status and Debug", &sources_text),
        ("the issuer's answers, metrics and Debug", &issuer_text),
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

/// Runs an issuer: one token issued for an assertion, refusals of a replay and of garbage that
/// carries a marker, its metrics and `Debug`. Returns what it showed and the secrets: the
/// assertion, the token, the signing key and the instance key.
async fn issuer() -> (String, Vec<(String, String)>) {
    use std::sync::Arc;

    use base64::Engine as _;
    use rustls_pki_types::pem::PemObject as _;
    use sts_sidecar::issuer::{self, Accept, Issuer, ProofKind};
    use sts_sidecar::testing::pki::{KeyKind, TestPki};

    const GARBAGE_MARKER: &str = "issuermarker-5c4b3a29181706f5";
    let pki = TestPki::new().expect("pki");
    let identity = pki
        .issue(KeyKind::RsaPkcs1, std::time::Duration::from_secs(86_400))
        .expect("identity");
    let dir = tempfile::tempdir().expect("tmp");
    let signing_pem = rcgen::KeyPair::generate().expect("key").serialize_pem();
    let signing = dir.path().join("signing.pem");
    std::fs::write(&signing, &signing_pem).expect("write");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let mut settings =
        sts_sidecar::testing::issuer_settings(&url, pki.write_ca_bundle().expect("ca"), signing);
    settings.accept = Accept::of(ProofKind::ALL);
    settings.session_tags = true;
    settings.source_identity = true;
    settings.jwks_max_age = std::time::Duration::from_secs(60);
    let debug_settings = format!("{settings:?}");
    let issuer = Arc::new(Issuer::new(settings).expect("issuer"));
    let (_tx, rx) = tokio::sync::mpsc::channel(1);
    let running = issuer::start(issuer.clone(), listener, admin, rx).expect("start");
    let signer = sts_sidecar::jws::Signer::from_pem(identity.key_pem.as_bytes()).expect("signer");
    let chain: Vec<String> =
        rustls_pki_types::CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
            .map(|c| base64::engine::general_purpose::STANDARD.encode(c.expect("cert")))
            .collect();
    let now = sts_sidecar::clock::now_unix();
    let cn = &pki.ids.instance;
    let assertion = signer
        .sign(
            serde_json::json!({"x5c": chain}),
            &serde_json::json!({"iss": cn, "sub": cn, "aud": url, "iat": now, "exp": now + 60,
                                "jti": "secrets-test-jti-000000000001"}),
        )
        .expect("sign");
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let post = |body: String| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let r = http
                .post(format!("{url}/token"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .expect("post");
            format!("{} {}", r.status(), r.text().await.expect("text"))
        }
    };
    let form = |a: &str| {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", issuer::GRANT_JWT_BEARER)
            .append_pair("assertion", a)
            .finish()
    };
    let issued = post(form(&assertion)).await;
    assert!(issued.starts_with("200 "), "{issued}");
    let token = issued.trim_start_matches("200 ").to_owned();
    let replayed = post(form(&assertion)).await;
    assert!(replayed.starts_with("401 "), "{replayed}");
    let garbage = post(form(&format!(
        "{GARBAGE_MARKER}.{GARBAGE_MARKER}.{GARBAGE_MARKER}"
    )))
    .await;
    let xfcc = http
        .post(format!("{url}/token"))
        .header("x-forwarded-client-cert", GARBAGE_MARKER)
        .send()
        .await
        .expect("post")
        .text()
        .await
        .expect("text");
    let metrics = http
        .get(format!("http://{}/metrics", running.admin_addr))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let text = format!(
        "{replayed}\n{garbage}\n{xfcc}\n{metrics}\n{debug_settings}\n{issuer:?}\n{running:?}"
    );
    running.shutdown().await;
    let mut secrets = vec![
        ("issuer: assertion".to_owned(), assertion.clone()),
        (
            "issuer: assertion signature".to_owned(),
            assertion.rsplit('.').next().expect("jws").to_owned(),
        ),
        (
            "issuer: a garbage assertion's text".to_owned(),
            GARBAGE_MARKER.to_owned(),
        ),
        ("issuer: token".to_owned(), token.clone()),
        (
            "issuer: token signature".to_owned(),
            token.rsplit('.').next().expect("jws").to_owned(),
        ),
    ];
    for pem in [&signing_pem, &identity.key_pem] {
        for line in pem.lines().filter(|l| l.len() >= 40) {
            secrets.push(("issuer: a private key".to_owned(), line.to_owned()));
        }
    }
    (text, secrets)
}

/// Runs a sidecar on each of the other sources (file, gcp-metadata, oidc, github-actions,
/// command) against the fake identity provider, including failures, and returns everything they
/// showed (errors, `Debug`, `/status`) and the secrets that must not be in it or in the logs.
async fn other_sources() -> (String, Vec<(String, String)>) {
    use sts_sidecar::config::{Config, Overrides};
    use sts_sidecar::testing::fake_idp::{
        Endpoint, FakeIdp, GITHUB_REQUEST_TOKEN, IdpReply, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET,
    };

    const ARG_MARKER: &str = "argmarker-5e6f7a8b9c";
    const EXTERNAL_ID_MARKER: &str = "extidmarker-7c8d9e0f";
    let idp = FakeIdp::start().await.expect("idp");
    // A Roles Anywhere role signs with this identity's key.
    let pki = sts_sidecar::testing::pki::TestPki::new().expect("pki");
    pki.install(
        &pki.issue(
            sts_sidecar::testing::pki::KeyKind::EcP384Pkcs8,
            std::time::Duration::from_secs(86_400),
        )
        .expect("issue"),
    )
    .expect("install");
    let ra = sts_sidecar::testing::fake_roles_anywhere::FakeRolesAnywhere::start(
        "eu-central-1",
        pki.root_pem(),
    )
    .await
    .expect("ra");
    let sts = sts_sidecar::testing::fake_sts::FakeSts::start(Some(idp.public_key_der()))
        .await
        .expect("sts");
    let dir = tempfile::tempdir().expect("tmp");
    let token_file = dir.path().join("token");
    std::fs::write(
        &token_file,
        idp.mint_token("file-sub", std::time::Duration::from_secs(3600)),
    )
    .expect("token");
    let script = dir.path().join("get-token");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$1\" >/dev/null\necho '{}'\n",
            idp.mint_token("cmd-sub", std::time::Duration::from_secs(3600))
        ),
    )
    .expect("script");
    let failing = dir.path().join("failing");
    std::fs::write(&failing, "#!/bin/sh\necho half-a-token-on-stdout\nexit 2\n").expect("script");
    {
        use std::os::unix::fs::PermissionsExt as _;
        for s in [&script, &failing] {
            std::fs::set_permissions(s, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
    }
    let env: std::collections::HashMap<String, String> = [
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN", AUTH_MARKER.to_owned()),
        ("GCE_METADATA_HOST", idp.host()),
        (
            "STS_SIDECAR_OIDC_CLIENT_SECRET",
            OIDC_CLIENT_SECRET.to_owned(),
        ),
        ("ACTIONS_ID_TOKEN_REQUEST_URL", idp.github_request_url()),
        (
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
            GITHUB_REQUEST_TOKEN.to_owned(),
        ),
        ("CF_INSTANCE_CERT", pki.cert_path().display().to_string()),
        ("CF_INSTANCE_KEY", pki.key_path().display().to_string()),
        ("AWS_ENDPOINT_URL_ROLESANYWHERE", ra.endpoint()),
        (
            "ID_TOKEN",
            idp.mint_token("gitlab-sub", std::time::Duration::from_secs(3600)),
        ),
        (
            "CIRCLE_OIDC_TOKEN_V2",
            idp.mint_token("circleci-sub", std::time::Duration::from_secs(3600)),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         [sts]\nendpoint = \"{sts}\"\ntimeout_secs = 3\n\
         [source.file]\ntype = \"file\"\npath = \"{file}\"\n\
         [source.gcp]\ntype = \"gcp-metadata\"\n\
         [source.oidc]\ntype = \"oidc\"\ntoken_url = \"{oidc}\"\nclient_id = \"{OIDC_CLIENT_ID}\"\n\
         [source.gh]\ntype = \"github-actions\"\n\
         [source.cmd]\ntype = \"command\"\ncommand = [\"{script}\", \"{ARG_MARKER}\"]\n\
         [source.bad]\ntype = \"command\"\ncommand = [\"{failing}\", \"{ARG_MARKER}\"]\n\
         [source.gl]\ntype = \"gitlab\"\n\
         [source.cc]\ntype = \"circleci\"\n\
         [[role]]\narn = \"arn:aws:iam::123456789012:role/a\"\nsource = \"file\"\n\
         [[role]]\nalias = \"gcp\"\narn = \"arn:aws:iam::123456789012:role/b\"\nsource = \"gcp\"\n\
         [[role]]\nalias = \"oidc\"\narn = \"arn:aws:iam::123456789012:role/c\"\nsource = \"oidc\"\n\
         [[role]]\nalias = \"gh\"\narn = \"arn:aws:iam::123456789012:role/d\"\nsource = \"gh\"\n\
         [[role]]\nalias = \"cmd\"\narn = \"arn:aws:iam::123456789012:role/e\"\nsource = \"cmd\"\n\
         [[role]]\nalias = \"bad\"\narn = \"arn:aws:iam::123456789012:role/f\"\nsource = \"bad\"\n\
         [[role]]\nalias = \"gl\"\narn = \"arn:aws:iam::123456789012:role/h\"\nsource = \"gl\"\n\
         [[role]]\nalias = \"cc\"\narn = \"arn:aws:iam::123456789012:role/i\"\nsource = \"cc\"\n\
         [[role]]\nalias = \"chain\"\narn = \"arn:aws:iam::210987654321:role/j\"\nvia = \"gcp\"\n\
         external_id = \"{EXTERNAL_ID_MARKER}\"\n\
         [[role]]\nalias = \"ra\"\narn = \"arn:aws:iam::123456789012:role/g\"\n\
         trust_anchor_arn = \"arn:aws:rolesanywhere:eu-central-1:123456789012:trust-anchor/t1\"\n\
         profile_arn = \"arn:aws:rolesanywhere:eu-central-1:123456789012:profile/p1\"\n\
         [identity_tokens]\nsource = \"gcp\"\naudiences = [\"vault\"]\nazure_token_file = \"{azure}\"\n",
        azure = dir.path().join("azure-token").display(),
        sts = sts.endpoint(),
        file = token_file.display(),
        oidc = idp.token_url(),
        script = script.display(),
        failing = failing.display(),
    );
    // The first OIDC token has no aud: STS refuses it and the sidecar warns.
    idp.push_reply(Endpoint::OAuth, IdpReply::NoAudience);
    let config = Config::parse(Some((&toml, "secrets.toml")), &Overrides::default(), &env)
        .unwrap_or_else(|e| panic!("{e}"));
    let auth = sts_sidecar::app::auth(&config).expect("auth");
    let creds = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let sidecar = sts_sidecar::app::start(&config, auth, creds, admin)
        .await
        .expect("start");
    for alias in [
        "default", "gcp", "oidc", "gh", "cmd", "gl", "cc", "chain", "ra",
    ] {
        let role = sidecar.roles.get(alias).expect("role").clone();
        assert!(
            role.wait_usable(std::time::Duration::from_secs(10))
                .await
                .is_some(),
            "{alias}: {:?}",
            role.status()
        );
    }
    // Identity tokens for other audiences: served, written to the Azure file, and refused.
    let http = reqwest::Client::new();
    for query in [
        "audience=vault",
        "audience=vault&format=text",
        "audience=elsewhere",
    ] {
        let _ = http
            .get(format!(
                "http://{}/v1/identity-token?{query}",
                sidecar.credentials_addr
            ))
            .header("authorization", AUTH_MARKER)
            .send()
            .await
            .expect("identity token");
    }
    for _ in 0..200 {
        if dir.path().join("azure-token").exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(
        dir.path().join("azure-token").exists(),
        "the Azure file was written"
    );
    let mut text = format!("{config:?} {sidecar:?}");
    let status = reqwest::get(format!("http://{}/status", sidecar.admin_addr))
        .await
        .expect("status")
        .text()
        .await
        .expect("body");
    text.push_str(&status);
    assert!(status.contains("exited with code 2"), "{status}");
    // A wrong client secret, echoed by nobody but tried: the error names the client, not it.
    let mut wrong = env.clone();
    wrong.insert(
        "STS_SIDECAR_OIDC_CLIENT_SECRET".into(),
        "wrongsecretmarker-1a2b".into(),
    );
    let config = Config::parse(Some((&toml, "secrets.toml")), &Overrides::default(), &wrong)
        .expect("config");
    let oidc = config.source("oidc").expect("oidc");
    let source = sts_sidecar::token::TokenSource::new(
        "oidc",
        sts_sidecar::token::Source::new(&oidc.settings).expect("source"),
        std::sync::Arc::new(sts_sidecar::metrics::Metrics::new()),
    );
    let e = source.token().await.expect_err("invalid_client");
    text.push_str(&format!("{e} {e:?} {}", e.hint()));
    sidecar.shutdown().await;

    let mut secrets: Vec<(String, String)> = vec![
        ("OIDC client secret".into(), OIDC_CLIENT_SECRET.into()),
        (
            "wrong OIDC client secret".into(),
            "wrongsecretmarker-1a2b".into(),
        ),
        ("GitHub request token".into(), GITHUB_REQUEST_TOKEN.into()),
        ("command argument".into(), ARG_MARKER.into()),
        ("external ID".into(), EXTERNAL_ID_MARKER.into()),
        ("command output".into(), "half-a-token-on-stdout".into()),
    ];
    for token in idp.issued() {
        let signature = token.rsplit('.').next().expect("jws").to_owned();
        secrets.push(("identity token signature (other source)".into(), signature));
        secrets.push(("identity token (other source)".into(), token));
    }
    assert!(idp.issued().len() >= 5);
    assert!(!ra.seen().is_empty(), "the Roles Anywhere role was served");
    let key_pem = std::fs::read_to_string(pki.key_path()).expect("key");
    for line in key_pem.lines().filter(|l| l.len() >= 40) {
        secrets.push(("Roles Anywhere private key".into(), line.to_owned()));
    }
    // What the fake Roles Anywhere issues: its secret keys and session tokens.
    secrets.push(("Roles Anywhere secret key".into(), "rasecret000000".into()));
    secrets.push((
        "Roles Anywhere session token".into(),
        "FwoGZXIvYXdzEFAKERA".into(),
    ));
    (text, secrets)
}
