//! The sidecar's token-service source through the issuer, from an STS that verifies by
//! discovery.

use std::collections::HashMap;
use std::time::Duration;

use tokio::net::TcpListener;

use super::{Setup, World};

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
