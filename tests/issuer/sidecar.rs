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
