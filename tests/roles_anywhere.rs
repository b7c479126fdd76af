//! IAM Roles Anywhere roles end to end: the real config parser, builder, signer and server
//! against a fake Roles Anywhere that verifies signatures, chains and dates (and refuses what
//! the real one refuses), for RSA and EC (P-256, P-384) identities in every key format, through
//! a rotation and an outage, beside a web-identity role.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use sts_sidecar::app;
use sts_sidecar::backend::{Backend, ErrorClass, x509_sign};
use sts_sidecar::config::{Config, Overrides};
use sts_sidecar::metrics::Metrics;
use sts_sidecar::testing::fake_roles_anywhere::{FakeRolesAnywhere, RaReply};
use sts_sidecar::testing::pki::{KeyKind, TestPki};
use tokio::net::TcpListener;

use crate::support::AUTH_TOKEN;

const DAY: Duration = Duration::from_secs(24 * 3600);
const ANCHOR: &str = "arn:aws:rolesanywhere:eu-central-1:123456789012:trust-anchor/0a1b2c3d-1111";
const PROFILE: &str = "arn:aws:rolesanywhere:eu-central-1:123456789012:profile/4e5f6a7b-2222";
const ROLE: &str = "arn:aws:iam::123456789012:role/cf-ra-app";

struct World {
    pki: TestPki,
    ra: FakeRolesAnywhere,
    env: HashMap<String, String>,
}

impl World {
    async fn new(kind: KeyKind) -> World {
        let pki = TestPki::new().expect("pki");
        pki.install(&pki.issue(kind, DAY).expect("issue"))
            .expect("install");
        let ra = FakeRolesAnywhere::start("eu-central-1", pki.root_pem())
            .await
            .expect("fake roles anywhere");
        let env = [
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", AUTH_TOKEN.to_owned()),
            ("CF_INSTANCE_CERT", pki.cert_path().display().to_string()),
            ("CF_INSTANCE_KEY", pki.key_path().display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        World { pki, ra, env }
    }

    fn toml(&self, extra_role_keys: &str) -> String {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
             [rolesanywhere]\nendpoint = \"{}\"\ntimeout_secs = 2\n\
             [[role]]\narn = \"{ROLE}\"\ntrust_anchor_arn = \"{ANCHOR}\"\nprofile_arn = \"{PROFILE}\"\n{extra_role_keys}",
            self.ra.endpoint()
        )
    }

    fn config(&self, extra_role_keys: &str) -> Config {
        Config::parse(
            Some((&self.toml(extra_role_keys), "ra.toml")),
            &Overrides::default(),
            &self.env,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn backend(&self, config: &Config) -> Backend {
        let built = sts_sidecar::app::build(config, &Arc::new(Metrics::new()))
            .await
            .expect("build");
        built.roles.into_iter().next().expect("a role").1
    }
}

#[tokio::test]
async fn every_key_kind_signs_requests_the_fake_verifies() {
    for kind in [
        KeyKind::RsaPkcs1,
        KeyKind::RsaPkcs8,
        KeyKind::EcPkcs8,
        KeyKind::EcSec1,
        KeyKind::EcP384Pkcs8,
    ] {
        let world = World::new(kind).await;
        let backend = world.backend(&world.config("")).await;
        let creds = backend
            .fetch()
            .await
            .unwrap_or_else(|e| panic!("{kind:?}: {e} / refused: {:?}", world.ra.refused()));
        assert_eq!(creds.account_id, "123456789012");
        assert_eq!(creds.role_arn, ROLE);
        let seen = world.ra.seen();
        let seen = seen.last().expect("accepted");
        let want = match kind {
            KeyKind::RsaPkcs1 | KeyKind::RsaPkcs8 => "AWS4-X509-RSA-SHA256",
            _ => "AWS4-X509-ECDSA-SHA256",
        };
        assert_eq!(seen.algorithm, want, "{kind:?}");
        assert_eq!(
            seen.chain_len, 2,
            "{kind:?}: the intermediate goes in X-Amz-X509-Chain"
        );
        assert_eq!(seen.cn, world.pki.ids.instance, "{kind:?}");
        // Diego serials are 128-bit: far beyond u64, in decimal.
        assert!(seen.serial.len() > 20, "{kind:?}: {}", seen.serial);
    }
}

/// Sends a `CreateSession` signed with the installed identity, tweaked by `tweak`.
async fn send(world: &World, pki: &TestPki, tweak: impl FnOnce(&mut Tweak)) -> (u16, String) {
    use rustls_pki_types::pem::PemObject as _;
    let cert_pem = std::fs::read(pki.cert_path()).expect("cert");
    let key_pem = std::fs::read(pki.key_path()).expect("key");
    let chain: Vec<_> = rustls_pki_types::CertificateDer::pem_slice_iter(&cert_pem)
        .map(|c| c.expect("pem"))
        .collect();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(&key_pem).expect("key");
    let key = x509_sign::SigningKey::from_der(&key).expect("signing key");
    let serial = sts_sidecar::identity::leaf_info(chain[0].as_ref(), chain.len())
        .expect("leaf")
        .serial;
    let b64 = |c: &[u8]| base64::engine::general_purpose::STANDARD.encode(c);
    let mut t = Tweak {
        amz_date: x509_sign::amz_date(sts_sidecar::clock::now_unix()),
        body: "{\"durationSeconds\":3600}".to_owned(),
        sent_body: None,
        chain: Some(
            chain[1..]
                .iter()
                .map(|c| b64(c.as_ref()))
                .collect::<Vec<_>>()
                .join(","),
        ),
    };
    tweak(&mut t);
    let host = world.ra.endpoint().trim_start_matches("http://").to_owned();
    let query = x509_sign::query(PROFILE, ROLE, ANCHOR);
    let x509 = b64(chain[0].as_ref());
    let request = x509_sign::Request {
        host: &host,
        query: &query,
        body: t.body.as_bytes(),
        amz_date: &t.amz_date,
        region: "eu-central-1",
        x509: &x509,
        chain: t.chain.as_deref(),
    };
    let authorization = x509_sign::sign(&key, &serial, &request).expect("sign");
    let mut call = reqwest::Client::new()
        .post(format!("{}/sessions?{query}", world.ra.endpoint()))
        .header("content-type", "application/json")
        .header("x-amz-date", &t.amz_date)
        .header("x-amz-x509", &x509)
        .header("authorization", authorization);
    if let Some(chain) = &t.chain {
        call = call.header("x-amz-x509-chain", chain);
    }
    let r = call
        .body(t.sent_body.clone().unwrap_or(t.body.clone()))
        .send()
        .await
        .expect("send");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

struct Tweak {
    amz_date: String,
    body: String,
    sent_body: Option<String>,
    chain: Option<String>,
}

#[tokio::test]
async fn the_fake_refuses_what_roles_anywhere_refuses() {
    let world = World::new(KeyKind::RsaPkcs1).await;
    let (status, _) = send(&world, &world.pki, |_| {}).await;
    assert_eq!(
        status,
        201,
        "an honest request passes: {:?}",
        world.ra.refused()
    );

    // A canonical request that is not the one sent: the body changed after signing.
    let (status, body) = send(&world, &world.pki, |t| {
        t.sent_body = Some("{\"durationSeconds\":43200}".to_owned());
    })
    .await;
    assert_eq!(status, 403);
    assert!(
        body.contains("signature we calculated does not match"),
        "{body}"
    );

    // The leaf alone does not chain to the root.
    let (status, body) = send(&world, &world.pki, |t| t.chain = None).await;
    assert_eq!(status, 403);
    assert!(body.contains("Untrusted certificate"), "{body}");

    // A stale date.
    let (status, body) = send(&world, &world.pki, |t| {
        t.amz_date = x509_sign::amz_date(sts_sidecar::clock::now_unix() - 600);
    })
    .await;
    assert_eq!(status, 403);
    assert!(body.contains("Signature expired"), "{body}");

    // A leaf from another PKI, correctly signed, is not trusted.
    let other = TestPki::new().expect("pki");
    other
        .install(&other.issue(KeyKind::RsaPkcs1, DAY).expect("issue"))
        .expect("install");
    let (status, body) = send(&world, &other, |_| {}).await;
    assert_eq!(status, 403);
    assert!(body.contains("Untrusted certificate"), "{body}");
}

#[tokio::test]
async fn errors_are_classified_with_a_hint_each() {
    let world = World::new(KeyKind::EcPkcs8).await;
    let backend = world.backend(&world.config("duration_secs = 3600")).await;
    let cases = [
        (
            RaReply::AccessDenied("Trust anchor is disabled".into()),
            ErrorClass::Denied,
            "trust anchor is enabled",
        ),
        (
            RaReply::NotFound,
            ErrorClass::Denied,
            "does not exist in this region",
        ),
        (RaReply::Throttled, ErrorClass::Throttled, "HTTPS_PROXY"),
        (RaReply::Status(503), ErrorClass::Unavailable, "HTTPS_PROXY"),
    ];
    for (reply, class, hint) in cases {
        world.ra.push_reply(reply.clone());
        let e = backend.fetch().await.expect_err("failure");
        assert_eq!(e.class(), class, "{reply:?}: {e}");
        let sts_sidecar::backend::Error::RolesAnywhere {
            code,
            detail,
            role_arn,
            ..
        } = &e
        else {
            panic!("{reply:?}: {e:?}");
        };
        let text = sts_sidecar::backend::roles_anywhere::hint(code.as_deref(), detail, role_arn);
        assert!(text.contains(hint), "{reply:?}: {text}");
    }
    world.ra.set_duration_limit(900);
    let e = backend.fetch().await.expect_err("over the profile's limit");
    let sts_sidecar::backend::Error::RolesAnywhere {
        code,
        detail,
        role_arn,
        ..
    } = &e
    else {
        panic!("{e:?}");
    };
    assert_eq!(code.as_deref(), Some("ValidationException"));
    assert!(
        sts_sidecar::backend::roles_anywhere::hint(code.as_deref(), detail, role_arn)
            .contains("lower --duration")
    );
}

#[tokio::test]
async fn served_after_a_cold_start_outage_and_through_a_rotation_beside_a_web_identity_role() {
    use sts_sidecar::testing::fake_idp::FakeIdp;
    use sts_sidecar::testing::fake_sts::FakeSts;
    let world = World::new(KeyKind::RsaPkcs1).await;
    let idp = FakeIdp::start().await.expect("idp");
    let sts = FakeSts::start(Some(idp.public_key_der()))
        .await
        .expect("sts");
    let token_file = world.pki.dir().join("k8s-token");
    std::fs::write(
        &token_file,
        idp.mint_token("system:serviceaccount:a:b", DAY),
    )
    .expect("token");
    let toml = format!(
        "{}\n[sts]\nendpoint = \"{}\"\n[source.k8s]\ntype = \"file\"\npath = \"{}\"\n\
         [[role]]\nalias = \"web\"\narn = \"arn:aws:iam::210987654321:role/web\"\nsource = \"k8s\"\n",
        world.toml(""),
        sts.endpoint(),
        token_file.display()
    );
    let config = Config::parse(
        Some((&toml, "mixed.toml")),
        &Overrides::default(),
        &world.env,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // The first CreateSession meets an outage: the refresher retries it like an STS 5xx.
    world.ra.push_reply(RaReply::Status(503));
    let auth = app::auth(&config).expect("auth");
    let sidecar = app::start(
        &config,
        auth,
        TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        TcpListener::bind("127.0.0.1:0").await.expect("bind"),
    )
    .await
    .expect("start");
    for role in ["default", "web"] {
        let handle = sidecar.roles.get(role).expect("role").clone();
        assert!(
            handle.wait_usable(Duration::from_secs(10)).await.is_some(),
            "{role}: {:?} refused: {:?}",
            handle.status(),
            world.ra.refused()
        );
    }
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let get = |path: &'static str| {
        let http = http.clone();
        let url = format!("http://{}{path}", sidecar.credentials_addr);
        async move {
            let r = http
                .get(url)
                .header("authorization", AUTH_TOKEN)
                .send()
                .await
                .expect("get");
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        }
    };
    let (status, body) = get("/v1/credentials").await;
    assert_eq!(status, 200);
    assert_eq!(body["RoleArn"], ROLE);
    assert_eq!(body["AccountId"], "123456789012");
    let (status, body) = get("/v1/credentials/web").await;
    assert_eq!(status, 200);
    assert_eq!(body["AccountId"], "210987654321");
    let status = reqwest::get(format!("http://{}/status", sidecar.admin_addr))
        .await
        .expect("status")
        .text()
        .await
        .expect("body");
    assert!(
        status.contains("Roles Anywhere http://127.0.0.1:"),
        "{status}"
    );
    assert!(!status.contains("PRIVATE KEY"));

    assert_eq!(
        world.ra.seen().len(),
        1,
        "one good CreateSession after the 503"
    );
    assert!(world.ra.calls() >= 2);

    // A rotation (key first, then certificate): the next CreateSession presents the new one.
    let backend = world.backend(&config).await;
    let before = world.ra.seen().len();
    let next = world.pki.issue(KeyKind::RsaPkcs1, DAY).expect("issue");
    world.pki.install_key(&next).expect("key");
    let fetch = tokio::spawn(async move { backend.fetch().await.map(|c| c.access_key_id) });
    tokio::time::sleep(Duration::from_millis(400)).await;
    world.pki.install_cert(&next).expect("cert");
    fetch
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("a rotation in progress is waited out: {e}"));
    let seen = world.ra.seen();
    assert_eq!(seen.len(), before + 1);
    let leaf: rustls_pki_types::CertificateDer<'_> =
        rustls_pki_types::pem::PemObject::from_pem_slice(next.cert_pem.as_bytes()).expect("pem");
    let new_serial = sts_sidecar::identity::leaf_info(leaf.as_ref(), 1)
        .expect("leaf")
        .serial;
    assert_eq!(seen.last().expect("seen").serial, new_serial);
    sidecar.shutdown().await;
}

#[tokio::test]
async fn check_shows_what_roles_anywhere_will_see_and_assumes_the_role() {
    let world = World::new(KeyKind::RsaPkcs1).await;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sts-sidecar"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(&world.env)
        .args(["check", "--role-arn", ROLE])
        .args(["--trust-anchor-arn", ANCHOR, "--profile-arn", PROFILE])
        .args(["--rolesanywhere-endpoint", &world.ra.endpoint()])
        .stdin(std::process::Stdio::null());
    let out = crate::support::output(cmd).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids = &world.pki.ids;
    for needle in [
        format!("aws:PrincipalTag/x509Subject/CN = {}", ids.instance),
        format!("aws:PrincipalTag/x509Subject/OU = app:{}", ids.app),
        "aws:PrincipalTag/x509Issuer/CN = ".to_owned(),
        format!("aws:PrincipalTag/x509SAN/DNS = {}", ids.instance),
        "how Roles Anywhere turns several values of one attribute into tags is not documented"
            .to_owned(),
        format!("source identity {} (the subject CN)", ids.instance),
        format!("\"aws:SourceArn\": \"{ANCHOR}\""),
        "{\"Service\": \"rolesanywhere.amazonaws.com\"}".to_owned(),
        format!(
            "default → arn:aws:sts::123456789012:assumed-role/cf-ra-app/{}",
            ids.instance
        ),
        "check passed".to_owned(),
    ] {
        assert!(text.contains(&needle), "missing {needle:?} in\n{text}");
    }
    assert!(!text.contains("PRIVATE KEY"));
}

#[tokio::test]
async fn an_outage_while_cached_is_ridden_out() {
    let world = World::new(KeyKind::RsaPkcs1).await;
    let backend = world.backend(&world.config("")).await;
    let (role, _task) =
        sts_sidecar::cache::spawn_role("default", backend, Arc::new(Metrics::new()));
    let first = role
        .wait_usable(Duration::from_secs(10))
        .await
        .expect("first credentials")
        .credentials
        .access_key_id
        .clone();
    for _ in 0..50 {
        world.ra.push_reply(RaReply::Status(503));
    }
    let calls = world.ra.calls();
    // Past the refresh point (20 minutes into a 1-hour session): the refresher meets the outage.
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(25 * 60)).await;
    tokio::time::resume();
    for _ in 0..100 {
        if world.ra.calls() > calls + 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        world.ra.calls() > calls + 1,
        "the refresher tried (and retried) during the outage"
    );
    let held = role
        .current()
        .expect("still served from cache during the outage");
    assert_eq!(held.credentials.access_key_id, first);
    let status = role.status();
    assert_eq!(status.last_error_class, Some("unavailable"), "{status:?}");
}

#[tokio::test]
async fn credential_process_and_exec_serve_roles_anywhere_too() {
    let world = World::new(KeyKind::EcPkcs8).await;
    let base = |sub: &str| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sts-sidecar"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CF_INSTANCE_CERT", world.pki.cert_path())
            .env("CF_INSTANCE_KEY", world.pki.key_path())
            .args([sub, "--role-arn", ROLE])
            .args(["--trust-anchor-arn", ANCHOR, "--profile-arn", PROFILE])
            .args(["--rolesanywhere-endpoint", &world.ra.endpoint()])
            .stdin(std::process::Stdio::null());
        cmd
    };
    let out = crate::support::output(base("credential-process")).await;
    let json = crate::support::stdout_json(&out);
    assert_eq!(json["Version"], 1);
    assert!(
        json["AccessKeyId"]
            .as_str()
            .unwrap_or("")
            .starts_with("ASIAFAKERA"),
        "{json}"
    );
    assert_eq!(json["AccountId"], "123456789012");

    let mut exec = base("exec");
    exec.args([
        "--",
        &crate::support::example("aws_config_probe")
            .display()
            .to_string(),
    ]);
    let out = crate::support::output(exec).await;
    let got = crate::support::stdout_json(&out);
    assert!(
        got.to_string().contains("ASIAFAKERA"),
        "the child's SDK got the fake's credentials: {got}"
    );
}
