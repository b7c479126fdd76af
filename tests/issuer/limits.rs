//! What one client may cost: an instance's token budget, and connection slots under a flood of
//! clients that prove nothing.

use std::time::Duration;

use sts_sidecar::issuer::Budget;
use sts_sidecar::testing::pki::KeyKind;
use tokio::io::AsyncWriteExt as _;

use super::{Setup, World, decode, error_of};

#[tokio::test]
async fn an_instance_over_its_budget_gets_429_and_no_other_instance_does() {
    // See: issue #23 item 3 (one tenant could fill the replay memory and make everyone's
    // request fail).
    let world = World::new(Setup {
        change: |s| {
            s.budget = Budget {
                burst: 3,
                interval: Duration::from_secs(600),
            }
        },
        ..Setup::default()
    })
    .await;
    let ids = world.pki.ids.clone();
    for _ in 0..3 {
        let (status, body) = world
            .token_with_assertion(&world.assertion(&world.victim, &ids))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let r = world
        .http
        .post(format!("{}/token", world.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", sts_sidecar::issuer::GRANT_JWT_BEARER)
                .append_pair("assertion", &world.assertion(&world.victim, &ids))
                .finish(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=600).contains(&retry), "{retry}");
    let (error, why) = error_of(&r.text().await.unwrap());
    assert_eq!(error, "slow_down");
    assert!(why.contains("too many tokens"), "{why}");
    assert_eq!(world.refused("instance_budget").await, 1.0);
    // Another instance of the same app is not refused for it.
    let mut other = ids.clone();
    other.instance = "99999999-0000-4000-8000-000000000000".into();
    let now = sts_sidecar::clock::now_unix() as u64;
    let identity = world
        .pki
        .issue_as(&other, KeyKind::EcPkcs8, now - 60, now + 86_400)
        .unwrap();
    let (status, token) = world
        .token_with_assertion(&world.assertion(&identity, &other))
        .await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(decode(&token).1["instance_guid"], other.instance);
    assert_eq!(
        world.metric("sts_sidecar_issuer_instances_tracked").await,
        2.0
    );
    assert_eq!(
        world
            .metric("sts_sidecar_issuer_assertions_remembered")
            .await,
        4.0
    );
}

#[tokio::test]
async fn a_token_request_is_answered_while_silent_clients_hold_every_slot() {
    let world = World::new(Setup {
        change: |s| s.limits.max_connections = 8,
        ..Setup::default()
    })
    .await;
    let addr = world.running.as_ref().unwrap().addr;
    // Eight connections that say nothing, and eight trickling a token request's body.
    let mut holders = Vec::new();
    for i in 0..16 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        if i % 2 == 1 {
            s.write_all(
                b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 4000\r\n\r\ngrant_type=",
            )
            .await
            .unwrap();
        }
        holders.push(s);
    }
    // Answered (within the client's 10 s): a slot held by a client that is only waiting is
    // given to it.
    let (status, body) = world
        .token_with_assertion(&world.assertion(&world.victim, &world.pki.ids))
        .await;
    assert_eq!(status, 200, "{body}");
    drop(holders);
}
