//! The sidecar's token-service source through the issuer, from an STS that verifies by
//! discovery.

use super::{Setup, World};

#[tokio::test]
async fn the_sidecar_gets_credentials_through_the_issuer_from_an_sts_that_verifies_by_discovery() {
    use sts_sidecar::testing::fake_sts::FakeSts;
    let world = World::new(Setup {
        tls: true,
        ..Setup::default()
    })
    .await;
    let sts = FakeSts::start(None).await.unwrap();
    let server_ca = std::fs::read_to_string(world.pki.server_ca_path()).unwrap();
    sts.trust_issuer(&world.url, Some(&server_ca)).unwrap();
    let sidecar = world.sidecar(&world.url, &sts.endpoint()).await;
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

#[tokio::test]
async fn the_issuer_signs_identity_tokens_for_the_audiences_it_allows() {
    // See: issue #25. The token-service source asks the issuer for an audience; the issuer
    // signs for those on its --audience list and refuses the others, which the sidecar then
    // reports without serving a token for another audience.
    use sts_sidecar::testing::fake_sts::FakeSts;
    let world = World::new(Setup {
        tls: true,
        change: |s| {
            s.audiences = vec![
                "sts.amazonaws.com".into(),
                "api://AzureADTokenExchange".into(),
            ];
        },
        ..Setup::default()
    })
    .await;
    let sts = FakeSts::start(None).await.unwrap();
    let server_ca = std::fs::read_to_string(world.pki.server_ca_path()).unwrap();
    sts.trust_issuer(&world.url, Some(&server_ca)).unwrap();
    let sidecar = world
        .sidecar_with(
            &world.url,
            &sts.endpoint(),
            "[identity_tokens]\naudiences = [\"api://AzureADTokenExchange\", \"vault\"]\n",
        )
        .await;
    let ask = |aud: &'static str| {
        let http = world.http.clone();
        let addr = sidecar.credentials_addr;
        async move {
            let r = http
                .get(format!(
                    "http://{addr}/v1/identity-token?audience={aud}&format=text"
                ))
                .header("authorization", "issuer-test-authorization-token-0123")
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    };
    let (status, token) = ask("api://AzureADTokenExchange").await;
    assert_eq!(status, 200, "{token}");
    let claims = sts_sidecar::token::decode_claims(&token).unwrap();
    assert_eq!(claims.aud, vec!["api://AzureADTokenExchange".to_owned()]);
    assert_eq!(claims.iss.as_deref(), Some(world.url.as_str()));
    assert_eq!(
        claims.sub.as_deref(),
        Some(world.pki.ids.subject().as_str())
    );
    // On the sidecar's list but not the issuer's: the issuer refuses, the sidecar says 503.
    let (status, body) = ask("vault").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("IdentityTokenUnavailable"), "{body}");
    sidecar.shutdown().await;
}
