//! Every forgery we know of, refused for its own reason (its reason counter moves by one).

use base64::Engine as _;
use rustls_pki_types::pem::PemObject as _;
use sts_sidecar::issuer::{self, Accept, ProofKind};
use sts_sidecar::testing::pki::{InstanceIdentity, KeyKind, TestPki};

use super::{DAY, Setup, World, claims, error_of};

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
        accept: Accept::of(ProofKind::ALL),
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
            name: "an assertion that expired before it arrived",
            status: 401,
            reason: "stale",
            form: grant(world.assertion_with(
                &victim,
                &victim.key_pem,
                claims(&ids, &url, -130, 120),
            )),
            headers: vec![],
        },
        Forgery {
            name: "assertion issued 2 minutes ahead (more than the 60 s of clock skew)",
            status: 401,
            reason: "stale",
            form: grant(world.assertion_with(
                &victim,
                &victim.key_pem,
                claims(&ids, &url, 120, 120),
            )),
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
        let before = world.refused(f.reason).await;
        let (status, body) = world.post(&form, &f.headers).await;
        let (error, why) = error_of(&body);
        // Refused for its own reason, not merely refused.
        assert_eq!(
            world.refused(f.reason).await,
            before + 1.0,
            "{}: not counted as {} ({body})",
            f.name,
            f.reason
        );
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
    assert_eq!(
        world
            .metric("sts_sidecar_issuer_tokens_issued_total{audience=\"sts.amazonaws.com\"}")
            .await,
        1.0,
        "only the first use of the replayed assertion got a token"
    );

    // With the default proofs (assertion, mtls), the victim's real certificate in the header
    // without its key is ignored: there is no proof at all.
    world.stop().await;
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
