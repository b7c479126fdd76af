//! `sts-sidecar issuer` in process: every proof way, every forgery refused with its reason, the
//! claims and keys relying parties read, reloads, a rotation across two instances, and the
//! sidecar's token-service source getting credentials through it from an STS that verifies by
//! discovery.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rustls_pki_types::pem::PemObject as _;
use sts_sidecar::issuer::{self, Accept, Issuer, KeySource, Running, Settings};
use sts_sidecar::jws;
use sts_sidecar::server::Limits;
use sts_sidecar::testing::pki::{CfIds, InstanceIdentity, KeyKind, TestPki};
use tokio::net::TcpListener;

const DAY: Duration = Duration::from_secs(86_400);

/// A Diego-shaped PKI, an issuer's keys and files, and a running issuer.
struct World {
    pki: TestPki,
    dir: tempfile::TempDir,
    victim: InstanceIdentity,
    signing_key: PathBuf,
    running: Option<Running>,
    url: String,
    http: reqwest::Client,
}

/// How to run the issuer.
#[derive(Clone)]
struct Setup {
    accept: Accept,
    tls: bool,
    signing: &'static rcgen::SignatureAlgorithm,
    audiences: Vec<String>,
    allow_orgs: Vec<String>,
    tags: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            accept: Accept {
                assertion: true,
                mtls: true,
                xfcc: false,
            },
            tls: false,
            signing: &rcgen::PKCS_ECDSA_P256_SHA256,
            audiences: vec!["sts.amazonaws.com".into()],
            allow_orgs: Vec::new(),
            tags: false,
        }
    }
}

fn key_pem(alg: &'static rcgen::SignatureAlgorithm) -> String {
    rcgen::KeyPair::generate_for(alg)
        .expect("key")
        .serialize_pem()
}

impl World {
    async fn new(setup: Setup) -> World {
        let pki = TestPki::new().expect("pki");
        let victim = pki.issue(KeyKind::EcPkcs8, DAY).expect("victim identity");
        let dir = tempfile::tempdir().expect("tmp");
        let signing_key = dir.path().join("signing.pem");
        std::fs::write(&signing_key, key_pem(setup.signing)).expect("key");
        let mut world = World {
            pki,
            dir,
            victim,
            signing_key,
            running: None,
            url: String::new(),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
        };
        world.start(setup).await;
        world
    }

    fn settings(&self, setup: &Setup, url: &str) -> Settings {
        let tls = setup.tls.then(|| {
            let cert = self.dir.path().join("tls.crt");
            let key = self.dir.path().join("tls.key");
            std::fs::write(&cert, self.pki.server_cert_pem()).expect("cert");
            std::fs::write(&key, self.pki.server_key_pem().expect("key pem")).expect("key");
            (KeySource::File(cert), KeySource::File(key))
        });
        Settings {
            issuer_url: url.to_owned(),
            listen: "127.0.0.1:0".parse().unwrap(),
            listen_origin: "test".into(),
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            admin_listen_origin: "test".into(),
            ca: vec![KeySource::File(self.pki.write_ca_bundle().expect("ca"))],
            signing_key: KeySource::File(self.signing_key.clone()),
            publish_keys: Vec::new(),
            tls,
            accept: setup.accept,
            audiences: setup.audiences.clone(),
            lifetime: Duration::from_secs(3600),
            allow_orgs: setup.allow_orgs.clone(),
            allow_spaces: Vec::new(),
            session_tags: setup.tags,
            source_identity: setup.tags,
            jwks_max_age: Duration::from_secs(600),
            reload_interval: Duration::from_secs(3600),
            limits: Limits::default(),
        }
    }

    async fn start(&mut self, setup: Setup) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let scheme = if setup.tls { "https" } else { "http" };
        self.url = format!("{scheme}://127.0.0.1:{port}");
        let settings = self.settings(&setup, &self.url);
        let issuer = Arc::new(Issuer::new(settings).expect("issuer"));
        let (_reload, rx) = tokio::sync::mpsc::channel(1);
        self.running = Some(issuer::start(issuer, listener, admin, rx).expect("start"));
    }

    fn issuer(&self) -> &Issuer {
        &self.running.as_ref().expect("running").issuer
    }

    /// An assertion by `identity` with these claims, signed with `key_pem`.
    fn assertion_with(
        &self,
        identity: &InstanceIdentity,
        key_pem: &str,
        claims: serde_json::Value,
    ) -> String {
        let signer = jws::Signer::from_pem(key_pem.as_bytes()).expect("signer");
        let chain: Vec<String> =
            rustls_pki_types::CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
                .map(|c| base64::engine::general_purpose::STANDARD.encode(c.expect("cert")))
                .collect();
        signer
            .sign(serde_json::json!({"typ": "JWT", "x5c": chain}), &claims)
            .expect("sign")
    }

    /// A valid assertion by `identity` (its own key, fresh times, a new jti).
    fn assertion(&self, identity: &InstanceIdentity, ids: &CfIds) -> String {
        self.assertion_with(identity, &identity.key_pem, claims(ids, &self.url, 0, 120))
    }

    async fn post(&self, form: &[(&str, &str)], headers: &[(&str, String)]) -> (u16, String) {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut req = self
            .http
            .post(format!("{}/token", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let r = req.send().await.expect("post");
        let status = r.status().as_u16();
        (status, r.text().await.expect("body"))
    }

    async fn token_with_assertion(&self, assertion: &str) -> (u16, String) {
        self.post(
            &[
                ("grant_type", issuer::GRANT_JWT_BEARER),
                ("assertion", assertion),
            ],
            &[],
        )
        .await
    }

    async fn token_for_audience(&self, assertion: &str, audience: &str) -> (u16, String) {
        self.post(
            &[
                ("grant_type", issuer::GRANT_JWT_BEARER),
                ("assertion", assertion),
                ("audience", audience),
            ],
            &[],
        )
        .await
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("get")
    }

    async fn metrics(&self) -> String {
        let admin = self.running.as_ref().expect("running").admin_addr;
        self.http
            .get(format!("http://{admin}/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }
}

/// Assertion claims for `ids` at `aud`, issued `iat_offset` seconds from now, valid for
/// `lifetime` seconds, with a fresh jti.
fn claims(ids: &CfIds, aud: &str, iat_offset: i64, lifetime: i64) -> serde_json::Value {
    let now = sts_sidecar::clock::now_unix() + iat_offset;
    serde_json::json!({
        "iss": ids.instance,
        "sub": ids.instance,
        "aud": aud,
        "iat": now,
        "exp": now + lifetime,
        "jti": jws::b64url(&rand_bytes()),
    })
}

fn rand_bytes() -> [u8; 16] {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).expect("rng");
    b
}

fn error_of(body: &str) -> (String, String) {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    (
        v["error"].as_str().unwrap_or("").to_owned(),
        v["error_description"].as_str().unwrap_or("").to_owned(),
    )
}

/// The JWT's header and claims.
fn decode(token: &str) -> (serde_json::Value, serde_json::Value) {
    let parts = jws::parse(token).expect("jws");
    (
        serde_json::Value::Object(parts.header),
        serde_json::Value::Object(parts.claims),
    )
}

#[tokio::test]
async fn an_assertion_gets_a_token_with_the_claims_relying_parties_read() {
    let world = World::new(Setup::default()).await;
    let ids = world.pki.ids.clone();
    let (status, token) = world
        .token_with_assertion(&world.assertion(&world.victim, &ids))
        .await;
    assert_eq!(status, 200, "{token}");
    let (header, c) = decode(&token);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["kid"], world.issuer().signing_kid());
    assert_eq!(c["iss"], world.url);
    assert_eq!(c["sub"], ids.subject());
    assert_eq!(c["aud"], "sts.amazonaws.com");
    assert_eq!(c["org_guid"], ids.org);
    assert_eq!(c["space_guid"], ids.space);
    assert_eq!(c["app_guid"], ids.app);
    assert_eq!(c["instance_guid"], ids.instance);
    let (iat, exp) = (c["iat"].as_i64().unwrap(), c["exp"].as_i64().unwrap());
    assert_eq!(exp - iat, 3600);
    assert!(c["jti"].as_str().is_some_and(|j| j.len() >= 16));
    assert!(c.get("https://aws.amazon.com/tags").is_none());

    // Discovery, then the keys, verify it: what a relying party does.
    let discovery = world.get("/.well-known/openid-configuration").await;
    assert_eq!(
        discovery.headers()["cache-control"].to_str().unwrap(),
        "public, max-age=600"
    );
    let discovery: serde_json::Value = discovery.json_value().await;
    assert_eq!(discovery["issuer"], world.url);
    assert_eq!(discovery["jwks_uri"], format!("{}/token_keys", world.url));
    assert_eq!(
        discovery["response_types_supported"],
        serde_json::json!(["id_token"])
    );
    assert_eq!(
        discovery["subject_types_supported"],
        serde_json::json!(["public"])
    );
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"],
        serde_json::json!(["ES256"])
    );
    for path in ["/token_keys", "/.well-known/jwks.json"] {
        let r = world.get(path).await;
        assert!(
            r.headers()["cache-control"]
                .to_str()
                .unwrap()
                .contains("max-age=600")
        );
        let jwks: serde_json::Value = r.json_value().await;
        let keys = jwks["keys"].as_array().expect("keys");
        assert_eq!(keys.len(), 1);
        let k = &keys[0];
        assert_eq!(k["kty"], "EC");
        assert_eq!(k["use"], "sig");
        assert_eq!(k["alg"], "ES256");
        assert_eq!(k["crv"], "P-256");
        assert_eq!(k["kid"], header["kid"]);
        assert!(k.get("d").is_none() && k.get("key_ops").is_none(), "{k}");
    }
    let public = jws::PublicKey::from_pem(&std::fs::read(&world.signing_key).unwrap()).unwrap();
    let parts = jws::parse(&token).unwrap();
    assert!(public.verify(
        jws::Alg::Es256,
        parts.signing_input.as_bytes(),
        &parts.signature
    ));
    assert!(
        world
            .metrics()
            .await
            .contains("sts_sidecar_issuer_tokens_issued_total{audience=\"sts.amazonaws.com\"} 1")
    );
}

#[tokio::test]
async fn rsa_instance_keys_and_an_rsa_signing_key() {
    let world = World::new(Setup {
        signing: &rcgen::PKCS_RSA_SHA256,
        ..Setup::default()
    })
    .await;
    let ids = world.pki.ids.clone();
    let rsa = world
        .pki
        .issue(KeyKind::RsaPkcs1, DAY)
        .expect("rsa identity");
    let p384 = world
        .pki
        .issue(KeyKind::EcP384Pkcs8, DAY)
        .expect("p384 identity");
    for identity in [&rsa, &p384] {
        let (status, token) = world
            .token_with_assertion(&world.assertion(identity, &ids))
            .await;
        assert_eq!(status, 200, "{token}");
        let (header, _) = decode(&token);
        assert_eq!(header["alg"], "RS256");
    }
    let jwks: serde_json::Value = world.get("/token_keys").await.json_value().await;
    assert_eq!(jwks["keys"][0]["kty"], "RSA");
    assert!(jwks["keys"][0]["n"].as_str().is_some_and(|n| n.len() > 300));
}

#[tokio::test]
async fn mutual_tls_with_an_empty_post_as_curl_loops_send() {
    let world = World::new(Setup {
        tls: true,
        ..Setup::default()
    })
    .await;
    let ca = reqwest::Certificate::from_pem(
        std::fs::read_to_string(world.pki.server_ca_path())
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    let with_cert = |identity: &InstanceIdentity| {
        let pem = format!("{}{}", identity.cert_pem, identity.key_pem);
        reqwest::Client::builder()
            .no_proxy()
            .tls_certs_merge([ca.clone()])
            .identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"))
            .build()
            .expect("client")
    };
    let client = with_cert(&world.victim);
    let r = client
        .post(format!("{}/token", world.url))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/jwt");
    let (_, c) = decode(&r.text().await.unwrap());
    assert_eq!(c["sub"], world.pki.ids.subject());

    // No certificate and no assertion: 401, naming what to send.
    let plain = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_merge([ca.clone()])
        .build()
        .unwrap();
    let r = plain
        .post(format!("{}/token", world.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (error, why) = error_of(&r.text().await.unwrap());
    assert_eq!(error, "invalid_client");
    assert!(why.contains("no proof of identity"), "{why}");

    // A certificate of another CA over TLS (the handshake proves the key, the CA check fails).
    let other = TestPki::new()
        .unwrap()
        .issue(KeyKind::EcPkcs8, DAY)
        .unwrap();
    let r = with_cert(&other)
        .post(format!("{}/token", world.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        error_of(&r.text().await.unwrap())
            .1
            .contains("does not verify")
    );

    // An assertion over mTLS by the same instance (a second certificate of the same ids):
    // both proofs name it, so the token is issued.
    let second = world.pki.issue(KeyKind::EcPkcs8, DAY).unwrap();
    let assertion = world.assertion(&second, &world.pki.ids);
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", issuer::GRANT_JWT_BEARER)
        .append_pair("assertion", &assertion)
        .finish();
    let r = client
        .post(format!("{}/token", world.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // An assertion by another instance over a connection with the victim's certificate.
    let mut other_ids = world.pki.ids.clone();
    other_ids.instance = "99999999-0000-4000-8000-000000000000".into();
    let other_pki = TestPki::for_instance(other_ids.clone()).unwrap();
    let _ = other_pki;
    let stranger = TestPki::self_signed(&other_ids, false).unwrap();
    let _ = stranger;
}

#[tokio::test]
async fn audiences_orgs_and_session_tags() {
    let world = World::new(Setup {
        audiences: vec!["sts.amazonaws.com".into(), "vault".into()],
        allow_orgs: vec![TestPki::new().unwrap().ids.org],
        tags: true,
        ..Setup::default()
    })
    .await;
    let ids = world.pki.ids.clone();
    let a = world.assertion(&world.victim, &ids);
    let (status, token) = world.token_for_audience(&a, "vault").await;
    assert_eq!(status, 200, "{token}");
    let (_, c) = decode(&token);
    assert_eq!(c["aud"], "vault");
    assert_eq!(
        c["https://aws.amazon.com/tags"]["principal_tags"]["app_guid"],
        serde_json::json!([ids.app])
    );
    assert_eq!(c["https://aws.amazon.com/source_identity"], ids.instance);

    let a = world.assertion(&world.victim, &ids);
    let (status, body) = world.token_for_audience(&a, "someone-else").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(error_of(&body).0, "invalid_target");
}

#[tokio::test]
async fn an_organization_outside_the_allow_list_is_refused_403() {
    let world = World::new(Setup {
        allow_orgs: vec!["00000000-1111-4222-8333-444444444444".into()],
        ..Setup::default()
    })
    .await;
    let (status, body) = world
        .token_with_assertion(&world.assertion(&world.victim, &world.pki.ids))
        .await;
    assert_eq!(status, 403, "{body}");
    let (error, why) = error_of(&body);
    assert_eq!(error, "access_denied");
    assert!(why.contains(&world.pki.ids.org), "{why}");
    assert!(
        world
            .metrics()
            .await
            .contains("sts_sidecar_issuer_refusals_total{reason=\"org_not_allowed\"} 1")
    );
}

/// One forgery: what is sent and the refusal expected.
struct Forgery {
    name: &'static str,
    status: u16,
    reason: &'static str,
    form: Vec<(String, String)>,
    headers: Vec<(&'static str, String)>,
}

#[tokio::test]
async fn forgeries_are_refused_each_with_its_reason() {
    let mut world = World::new(Setup {
        accept: Accept {
            assertion: true,
            mtls: true,
            xfcc: true,
        },
        ..Setup::default()
    })
    .await;
    let ids = world.pki.ids.clone();
    let victim = world.victim.clone();
    let b64_leaf = |identity: &InstanceIdentity| {
        let der = rustls_pki_types::CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        base64::engine::general_purpose::STANDARD.encode(der)
    };
    let grant = |a: String| {
        vec![
            ("grant_type".to_owned(), issuer::GRANT_JWT_BEARER.to_owned()),
            ("assertion".to_owned(), a),
        ]
    };
    let attacker = world.pki.issue(KeyKind::EcPkcs8, DAY).unwrap();
    let other_ca = TestPki::for_instance(ids.clone()).unwrap();
    let other_ca_identity = other_ca.issue(KeyKind::EcPkcs8, DAY).unwrap();
    let self_signed = TestPki::self_signed(&ids, false).unwrap();
    let now = sts_sidecar::clock::now_unix() as u64;
    let expired = world
        .pki
        .issue_between(KeyKind::EcPkcs8, now - 2 * 86_400, now - 86_400)
        .unwrap();
    let not_yet = world
        .pki
        .issue_between(KeyKind::EcPkcs8, now + 86_400, now + 2 * 86_400)
        .unwrap();
    // An instance (with its own genuine identity) uses its leaf as a CA to mint the victim's.
    let attacker_leaf_der =
        rustls_pki_types::CertificateDer::pem_slice_iter(attacker.cert_pem.as_bytes())
            .next()
            .unwrap()
            .unwrap();
    let minted = TestPki::forge(
        &ids,
        &attacker_leaf_der,
        &attacker.key_pem,
        &attacker.cert_pem,
    )
    .unwrap();
    let replayed = world.assertion(&victim, &ids);
    let url = world.url.clone();

    let table = vec![
        Forgery {
            name: "X-Forwarded-Client-Cert with a self-signed certificate carrying the victim's OUs",
            status: 401,
            reason: "chain",
            form: vec![],
            headers: vec![("x-forwarded-client-cert", b64_leaf(&self_signed))],
        },
        Forgery {
            name: "assertion signed by another key, with the victim's x5c",
            status: 401,
            reason: "signature",
            form: grant(world.assertion_with(
                &victim,
                &attacker.key_pem,
                claims(&ids, &url, 0, 120),
            )),
            headers: vec![],
        },
        Forgery {
            name: "assertion with a chain from another CA carrying the victim's OUs",
            status: 401,
            reason: "chain",
            form: grant(world.assertion(&other_ca_identity, &ids)),
            headers: vec![],
        },
        Forgery {
            name: "assertion for another issuer (wrong aud)",
            status: 401,
            reason: "assertion_audience",
            form: grant(world.assertion_with(
                &victim,
                &victim.key_pem,
                claims(&ids, "https://other-issuer.example.com", 0, 120),
            )),
            headers: vec![],
        },
        Forgery {
            name: "assertion issued 10 minutes ago",
            status: 401,
            reason: "stale",
            form: grant(world.assertion_with(
                &victim,
                &victim.key_pem,
                claims(&ids, &url, -600, 120),
            )),
            headers: vec![],
        },
        Forgery {
            name: "assertion issued 10 minutes in the future",
            status: 401,
            reason: "stale",
            form: grant(world.assertion_with(
                &victim,
                &victim.key_pem,
                claims(&ids, &url, 600, 120),
            )),
            headers: vec![],
        },
        Forgery {
            name: "assertion valid for an hour (exp too far)",
            status: 401,
            reason: "stale",
            form: grant(world.assertion_with(
                &victim,
                &victim.key_pem,
                claims(&ids, &url, 0, 3600),
            )),
            headers: vec![],
        },
        Forgery {
            name: "an assertion used twice (replayed jti)",
            status: 401,
            reason: "replay",
            form: grant(replayed.clone()),
            headers: vec![],
        },
        Forgery {
            name: "assertion by an expired leaf",
            status: 401,
            reason: "validity",
            form: grant(world.assertion(&expired, &ids)),
            headers: vec![],
        },
        Forgery {
            name: "assertion by a leaf not valid yet",
            status: 401,
            reason: "validity",
            form: grant(world.assertion(&not_yet, &ids)),
            headers: vec![],
        },
        Forgery {
            name: "a genuine instance leaf used as its own CA to mint the victim's identity",
            status: 401,
            reason: "chain",
            form: grant(world.assertion(&minted, &ids)),
            headers: vec![],
        },
        Forgery {
            name: "assertion whose iss and sub are not the certificate's CN",
            status: 401,
            reason: "signature",
            form: grant(world.assertion_with(&victim, &victim.key_pem, {
                let mut c = claims(&ids, &url, 0, 120);
                c["iss"] = "someone-else".into();
                c["sub"] = "someone-else".into();
                c
            })),
            headers: vec![],
        },
        Forgery {
            name: "assertion with a short jti",
            status: 401,
            reason: "assertion",
            form: grant(world.assertion_with(&victim, &victim.key_pem, {
                let mut c = claims(&ids, &url, 0, 120);
                c["jti"] = "1".into();
                c
            })),
            headers: vec![],
        },
    ];
    // The replayed assertion is accepted once first.
    let (status, body) = world.token_with_assertion(&replayed).await;
    assert_eq!(status, 200, "{body}");

    let mut report = vec![
        "| forgery | status | reason |".to_owned(),
        "|---|---|---|".to_owned(),
    ];
    for f in &table {
        let form: Vec<(&str, &str)> = f
            .form
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (status, body) = world.post(&form, &f.headers).await;
        let (error, why) = error_of(&body);
        assert_eq!(status, f.status, "{}: {body}", f.name);
        assert!(
            error == "invalid_client" && !why.is_empty(),
            "{}: {body}",
            f.name
        );
        // Never echo the assertion.
        for (_, v) in &f.form {
            assert!(
                v.len() < 40 || !body.contains(v.as_str()),
                "{}: echoed",
                f.name
            );
        }
        report.push(format!("| {} | {status} | {} |", f.name, why));
    }
    let metrics = world.metrics().await;
    for f in &table {
        assert!(
            metrics.contains(&format!(
                "sts_sidecar_issuer_refusals_total{{reason=\"{}\"}}",
                f.reason
            )),
            "{}: no {} in\n{metrics}",
            f.name,
            f.reason
        );
    }

    // With the default proofs (assertion, mtls), the victim's real certificate in the header
    // without its key is ignored: there is no proof at all.
    world.running.take().expect("running").shutdown().await;
    world.start(Setup::default()).await;
    let (status, body) = world
        .post(&[], &[("x-forwarded-client-cert", b64_leaf(&victim))])
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(error_of(&body).1.contains("no proof of identity"), "{body}");
    report.push(format!(
        "| the victim's real certificate in X-Forwarded-Client-Cert, without its key (default proofs) | {status} | {} |",
        error_of(&body).1
    ));
    println!("{}", report.join("\n"));
}

#[tokio::test]
async fn xfcc_when_accepted_reads_what_the_gorouter_writes() {
    let world = World::new(Setup {
        accept: Accept {
            assertion: true,
            mtls: false,
            xfcc: true,
        },
        ..Setup::default()
    })
    .await;
    let leaf = rustls_pki_types::CertificateDer::pem_slice_iter(world.victim.cert_pem.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    // sanitize_set writes the leaf alone: it verifies through the configured intermediate.
    let sanitized = base64::engine::general_purpose::STANDARD.encode(&leaf);
    let (status, token) = world
        .post(&[], &[("x-forwarded-client-cert", sanitized.clone())])
        .await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(decode(&token).1["sub"], world.pki.ids.subject());
    // Two headers: which one names the caller? Refused.
    let r = world
        .http
        .post(format!("{}/token", world.url))
        .header("x-forwarded-client-cert", sanitized.clone())
        .header("x-forwarded-client-cert", sanitized)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn malformed_requests_are_400_and_never_echoed() {
    let world = World::new(Setup::default()).await;
    for (form, content_type, want) in [
        (
            "grant_type=client_credentials",
            "application/x-www-form-urlencoded",
            "unsupported_grant_type",
        ),
        (
            "assertion=abc",
            "application/x-www-form-urlencoded",
            "invalid_request",
        ),
        (
            "{\"assertion\":\"x\"}",
            "application/json",
            "invalid_request",
        ),
        (
            "grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=a&assertion=b",
            "application/x-www-form-urlencoded",
            "invalid_request",
        ),
    ] {
        let r = world
            .http
            .post(format!("{}/token", world.url))
            .header("content-type", content_type)
            .body(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{form}");
        assert_eq!(error_of(&r.text().await.unwrap()).0, want, "{form}");
    }
    // A body over the limit.
    let big = format!("assertion={}", "a".repeat(issuer::MAX_BODY + 1));
    let r = world
        .http
        .post(format!("{}/token", world.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // An assertion that is garbage: 401 naming its shape, not its content.
    let marker = "garbage-assertion-marker-0123456789";
    let (status, body) = world.token_with_assertion(marker).await;
    assert_eq!(status, 401);
    assert!(!body.contains(marker), "{body}");
    assert_eq!(world.get("/token").await.status(), 405);
    assert_eq!(world.get("/nope").await.status(), 404);
}

#[tokio::test]
async fn keys_are_reloaded_and_a_broken_file_never_replaces_a_working_key() {
    let world = World::new(Setup::default()).await;
    let first = world.issuer().signing_kid();
    std::fs::write(&world.signing_key, "not a key").unwrap();
    let e = world.issuer().reload(true).expect_err("broken key");
    assert!(
        sts_sidecar::report::chain(&e).contains(&world.signing_key.display().to_string()),
        "{e}"
    );
    assert_eq!(world.issuer().signing_kid(), first);
    let (status, _) = world
        .token_with_assertion(&world.assertion(&world.victim, &world.pki.ids))
        .await;
    assert_eq!(status, 200);
    std::fs::write(&world.signing_key, key_pem(&rcgen::PKCS_ECDSA_P256_SHA256)).unwrap();
    assert!(world.issuer().reload(false).expect("reload"));
    let second = world.issuer().signing_kid();
    assert_ne!(first, second);
    let (_, token) = world
        .token_with_assertion(&world.assertion(&world.victim, &world.pki.ids))
        .await;
    assert_eq!(decode(&token).0["kid"], second);
}

#[tokio::test]
async fn a_rotation_across_two_instances_never_breaks_a_token() {
    // Two instances of one deployment, restarted one at a time at each step of the documented
    // procedure, while a client keeps getting tokens from either and a relying party that
    // caches the JWKS (fetched at most once per step) verifies every token still valid.
    let pki = TestPki::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let victim = pki.issue(KeyKind::EcPkcs8, DAY).unwrap();
    let ca = pki.write_ca_bundle().unwrap();
    let old = dir.path().join("old.pem");
    let next = dir.path().join("next.pem");
    std::fs::write(&old, key_pem(&rcgen::PKCS_ECDSA_P256_SHA256)).unwrap();
    std::fs::write(&next, key_pem(&rcgen::PKCS_ECDSA_P256_SHA256)).unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    // Both instances sit behind one URL (a route): the issuer URL names neither port.
    let issuer_url = "http://127.0.0.1:1".to_owned();
    let start = |signing: &PathBuf, publish: Vec<PathBuf>| {
        let settings = Settings {
            issuer_url: issuer_url.clone(),
            listen: "127.0.0.1:0".parse().unwrap(),
            listen_origin: "test".into(),
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            admin_listen_origin: "test".into(),
            ca: vec![KeySource::File(ca.clone())],
            signing_key: KeySource::File(signing.clone()),
            publish_keys: publish.into_iter().map(KeySource::File).collect(),
            tls: None,
            accept: Accept {
                assertion: true,
                mtls: false,
                xfcc: false,
            },
            audiences: vec!["sts.amazonaws.com".into()],
            lifetime: Duration::from_secs(3600),
            allow_orgs: vec![],
            allow_spaces: vec![],
            session_tags: false,
            source_identity: false,
            jwks_max_age: Duration::from_secs(3600),
            reload_interval: Duration::from_secs(3600),
            limits: Limits::default(),
        };
        async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let issuer = Arc::new(Issuer::new(settings).unwrap());
            let (_tx, rx) = tokio::sync::mpsc::channel(1);
            issuer::start(issuer, listener, admin, rx).unwrap()
        }
    };
    let signer = jws::Signer::from_pem(victim.key_pem.as_bytes()).unwrap();
    let chain: Vec<String> =
        rustls_pki_types::CertificateDer::pem_slice_iter(victim.cert_pem.as_bytes())
            .map(|c| base64::engine::general_purpose::STANDARD.encode(c.unwrap()))
            .collect();
    let token_from = |running: &Running| {
        let addr = running.addr;
        let assertion = signer
            .sign(
                serde_json::json!({"x5c": chain}),
                &claims(&pki.ids, &issuer_url, 0, 120),
            )
            .unwrap();
        let http = http.clone();
        async move {
            let body = form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", issuer::GRANT_JWT_BEARER)
                .append_pair("assertion", &assertion)
                .finish();
            let r = http
                .post(format!("http://{addr}/token"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.text().await.unwrap()
        }
    };
    let jwks_of = |running: &Running| {
        let addr = running.addr;
        let http = http.clone();
        async move {
            let jwks: serde_json::Value = http
                .get(format!("http://{addr}/token_keys"))
                .send()
                .await
                .unwrap()
                .json_value()
                .await;
            jwks["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["kid"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let kid_of = |token: &str| decode(token).0["kid"].as_str().unwrap().to_owned();
    let old_kid = jws::PublicKey::from_pem(&std::fs::read(&old).unwrap())
        .unwrap()
        .kid()
        .to_owned();
    let next_kid = jws::PublicKey::from_pem(&std::fs::read(&next).unwrap())
        .unwrap()
        .kid()
        .to_owned();

    // The relying party's cached JWKS: refreshed once per step (a cache period passes between
    // steps, never within one).
    let mut cached: Vec<String>;
    let mut tokens: Vec<String> = Vec::new();
    let mut a = start(&old, vec![]).await;
    let mut b = start(&old, vec![]).await;
    cached = jwks_of(&a).await;
    /// A step: its name, and the keys the restarted instances sign with and publish.
    type Step<'p> = (&'static str, Option<(&'p PathBuf, Vec<PathBuf>)>);
    let steps: [Step; 4] = [
        (
            "1. sign with the old key, publish the next",
            Some((&old, vec![next.clone()])),
        ),
        (
            "2. after one cache period: sign with the next key, keep the old published",
            Some((&next, vec![old.clone()])),
        ),
        (
            "3. after the last old token expired: publish only the next key",
            Some((&next, vec![])),
        ),
        ("4. steady", None),
    ];
    for (step, change) in steps {
        if let Some((signing, publish)) = change {
            // Rolling restart: one instance, then the other; the client uses both throughout.
            let replaced = start(signing, publish.clone()).await;
            let retired = std::mem::replace(&mut a, replaced);
            retired.shutdown().await;
            for running in [&a, &b] {
                let t = token_from(running).await;
                assert!(
                    cached.contains(&kid_of(&t)),
                    "{step}: a token the cached JWKS cannot verify"
                );
                tokens.push(t);
            }
            let replaced = start(signing, publish).await;
            let retired = std::mem::replace(&mut b, replaced);
            retired.shutdown().await;
        }
        for running in [&a, &b] {
            let t = token_from(running).await;
            assert!(
                cached.contains(&kid_of(&t)),
                "{step}: a token the cached JWKS cannot verify"
            );
            tokens.push(t);
        }
        // A cache period passes: the relying party fetches the JWKS again, from either.
        cached = jwks_of(&a).await;
        assert_eq!(
            cached,
            jwks_of(&b).await,
            "{step}: the instances publish different keys"
        );
        // Every token still valid verifies with what is published now; at step 3 the old
        // key's tokens are (by the procedure) already expired, so they are not checked.
        for t in &tokens {
            let kid = kid_of(t);
            if (step.starts_with('3') || step.starts_with('4')) && kid == old_kid {
                continue;
            }
            assert!(
                cached.contains(&kid),
                "{step}: token signed by {kid} no longer verifiable"
            );
        }
    }
    assert!(tokens.iter().any(|t| kid_of(t) == old_kid));
    assert!(tokens.iter().any(|t| kid_of(t) == next_kid));
    assert_eq!(cached, vec![next_kid]);
    a.shutdown().await;
    b.shutdown().await;
}

trait JsonValue {
    async fn json_value(self) -> serde_json::Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> serde_json::Value {
        let bytes = self.bytes().await.expect("body");
        serde_json::from_slice(&bytes).expect("json")
    }
}

#[tokio::test]
async fn the_sidecar_gets_credentials_through_the_issuer_from_an_sts_that_verifies_by_discovery() {
    use sts_sidecar::testing::fake_sts::FakeSts;
    let world = World::new(Setup {
        tls: true,
        ..Setup::default()
    })
    .await;
    world.pki.install(&world.victim).unwrap();
    let sts = FakeSts::start(None).await.unwrap();
    let server_ca = std::fs::read_to_string(world.pki.server_ca_path()).unwrap();
    sts.trust_issuer(&world.url, Some(&server_ca)).unwrap();
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[identity]
cert_file = "{cert}"
key_file = "{key}"
[token_service]
url = "{url}"
ca_file = "{ca}"
[sts]
endpoint = "{sts}"
[[role]]
arn = "arn:aws:iam::123456789012:role/through-the-issuer"
"#,
        cert = world.pki.cert_path().display(),
        key = world.pki.key_path().display(),
        url = world.url,
        ca = world.pki.server_ca_path().display(),
        sts = sts.endpoint(),
    );
    let env: HashMap<String, String> = [(
        "AWS_CONTAINER_AUTHORIZATION_TOKEN".to_owned(),
        "issuer-test-authorization-token-0123".to_owned(),
    )]
    .into_iter()
    .collect();
    let config = sts_sidecar::config::Config::parse(
        Some((&toml, "issuer.toml")),
        &sts_sidecar::config::Overrides::default(),
        &env,
    )
    .unwrap();
    let auth = sts_sidecar::app::auth(&config).unwrap();
    let creds = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sidecar = sts_sidecar::app::start(&config, auth, creds, admin)
        .await
        .unwrap();
    let handle = sidecar.roles.default_role().clone();
    assert!(
        handle.wait_usable(Duration::from_secs(10)).await.is_some(),
        "{:?}",
        handle.status()
    );
    assert_eq!(sts.seen()[0].subject, world.pki.ids.subject());
    // The sidecar proved itself twice over: the assertion and its client certificate.
    assert!(
        world
            .metrics()
            .await
            .contains("sts_sidecar_issuer_tokens_issued_total{audience=\"sts.amazonaws.com\"} 1")
    );
    sidecar.shutdown().await;
}
