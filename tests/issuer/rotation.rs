//! The documented three-step key rotation across two instances restarted one at a time.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rustls_pki_types::pem::PemObject as _;
use sts_sidecar::issuer::{self, Accept, Issuer, KeySource, ProofKind, Running};
use sts_sidecar::jws;
use sts_sidecar::testing::pki::{KeyKind, TestPki};
use tokio::net::TcpListener;

use super::{DAY, JsonValue as _, claims, decode, key_pem};

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
        let mut settings =
            sts_sidecar::testing::issuer_settings(&issuer_url, ca.clone(), signing.clone());
        settings.publish_keys = publish.into_iter().map(KeySource::File).collect();
        settings.accept = Accept::of(&[ProofKind::Assertion]);
        settings.jwks_max_age = Duration::from_secs(3600);
        async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let issuer = Arc::new(Issuer::new(settings).unwrap());
            // Dropping the sender leaves the periodic reloads (an hour away).
            let (_, rx) = tokio::sync::mpsc::channel(1);
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
