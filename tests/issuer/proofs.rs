//! Every proof, and every forgery refused for its own reason.

use std::time::Duration;

use base64::Engine as _;
use rustls_pki_types::pem::PemObject as _;
use sts_sidecar::issuer::Settings;
use sts_sidecar::issuer::{self, Accept, ProofKind};
use sts_sidecar::jws;
use sts_sidecar::testing::pki::{CfIds, InstanceIdentity, KeyKind, TestPki};

use super::{DAY, JsonValue as _, Setup, World, decode, error_of};

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

    // An assertion by another instance of the same CA over a connection with the victim's
    // certificate: both proofs verify, but they name different instances.
    let mut other_ids = world.pki.ids.clone();
    other_ids.instance = "99999999-0000-4000-8000-000000000000".into();
    let now = sts_sidecar::clock::now_unix() as u64;
    let other = world
        .pki
        .issue_as(&other_ids, KeyKind::EcPkcs8, now - 60, now + 86_400)
        .unwrap();
    let before = world.refused("proofs_disagree").await;
    let assertion = world.assertion(&other, &other_ids);
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", issuer::GRANT_JWT_BEARER)
        .append_pair("assertion", &assertion)
        .finish();
    let r = client
        .post(format!("{}/token", world.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        error_of(&r.text().await.unwrap())
            .1
            .contains("different instances")
    );
    assert_eq!(world.refused("proofs_disagree").await, before + 1.0);
    // The same assertion alone (no client certificate) is that instance's own proof.
    let r = plain
        .post(format!("{}/token", world.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        decode(&r.text().await.unwrap()).1["instance_guid"],
        other_ids.instance
    );
}

#[tokio::test]
async fn audiences_orgs_and_session_tags() {
    let world = World::new(Setup {
        change: |s| {
            s.audiences = vec!["sts.amazonaws.com".into(), "vault".into()];
            s.allow_orgs = vec![TestPki::new().unwrap().ids.org];
            s.session_tags = true;
            s.source_identity = true;
        },
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

/// An instance outside an allow-list: 403 `access_denied` naming its guid (`named`), counted
/// as `reason`.
async fn refused_by_allow_list(change: fn(&mut Settings), named: fn(&CfIds) -> &str, reason: &str) {
    let world = World::new(Setup {
        change,
        ..Setup::default()
    })
    .await;
    let (status, body) = world
        .token_with_assertion(&world.assertion(&world.victim, &world.pki.ids))
        .await;
    assert_eq!(status, 403, "{body}");
    let (error, why) = error_of(&body);
    assert_eq!(error, "access_denied");
    assert!(why.contains(named(&world.pki.ids)), "{why}");
    assert_eq!(world.refused(reason).await, 1.0);
}

#[tokio::test]
async fn an_organization_outside_the_allow_list_is_refused_403() {
    refused_by_allow_list(
        |s| s.allow_orgs = vec!["00000000-1111-4222-8333-444444444444".into()],
        |ids| &ids.org,
        "org_not_allowed",
    )
    .await;
}

#[tokio::test]
async fn a_space_outside_the_allow_list_is_refused_403() {
    refused_by_allow_list(
        |s| s.allow_spaces = vec!["00000000-1111-4222-8333-444444444444".into()],
        |ids| &ids.space,
        "space_not_allowed",
    )
    .await;
}

#[tokio::test]
async fn a_leaf_of_the_ca_whose_subject_names_no_instance_is_refused() {
    // A certificate the configured CA really issued, but with an OU that is not a guid.
    let mut ids = TestPki::new().unwrap().ids;
    ids.app = "not a guid".into();
    let pki = TestPki::for_instance(ids.clone()).unwrap();
    let world = World::with_pki(pki, Setup::default()).await;
    let (status, body) = world
        .token_with_assertion(&world.assertion(&world.victim, &ids))
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(
        error_of(&body).1.contains("OU app: value is not a guid"),
        "{body}"
    );
    assert_eq!(world.refused("subject").await, 1.0);
    assert_eq!(world.refused("chain").await, 0.0);
}

#[tokio::test]
async fn the_lifetime_is_the_configured_one_and_never_outlives_the_certificate() {
    // See: issue #23 item 6.
    let world = World::new(Setup {
        change: |s| s.lifetime = Duration::from_secs(900),
        ..Setup::default()
    })
    .await;
    let (status, token) = world
        .token_with_assertion(&world.assertion(&world.victim, &world.pki.ids))
        .await;
    assert_eq!(status, 200, "{token}");
    let (_, c) = decode(&token);
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 900);
    // A certificate that expires in 89 s yields a token that expires with it.
    let now = sts_sidecar::clock::now_unix() as u64;
    let short = world
        .pki
        .issue_between(KeyKind::EcPkcs8, now - 60, now + 89)
        .unwrap();
    let (status, token) = world
        .token_with_assertion(&world.assertion(&short, &world.pki.ids))
        .await;
    assert_eq!(status, 200, "{token}");
    let (_, c) = decode(&token);
    assert_eq!(c["exp"].as_i64().unwrap(), (now + 89) as i64);
}

#[tokio::test]
async fn healthz_answers_on_the_service_port_and_the_admin_port() {
    let world = World::new(Setup::default()).await;
    let r = world.get("/healthz").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok\n");
    let admin = world.running.as_ref().unwrap().admin_addr;
    let r = world
        .http
        .get(format!("http://{admin}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(world.get("/healthz").await.status(), 200);
    let post = world
        .http
        .post(format!("{}/healthz", world.url))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
}

#[tokio::test]
async fn xfcc_when_accepted_reads_what_the_gorouter_writes() {
    let world = World::new(Setup {
        accept: Accept::of(&[ProofKind::Assertion, ProofKind::Xfcc]),
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
    // A body over the limit: refused from its Content-Length, before it is read.
    let big = format!("assertion={}", "a".repeat(issuer::MAX_BODY + 1));
    let r = world
        .http
        .post(format!("{}/token", world.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(world.refused("body").await, 1.0);
    // An assertion that is garbage: 401 naming its shape, not its content.
    let marker = "garbage-assertion-marker-0123456789";
    let (status, body) = world.token_with_assertion(marker).await;
    assert_eq!(status, 401);
    assert!(!body.contains(marker), "{body}");
    assert_eq!(world.get("/token").await.status(), 405);
    assert_eq!(world.get("/nope").await.status(), 404);
}
