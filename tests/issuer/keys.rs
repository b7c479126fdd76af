//! Key material: reloads (by hand, periodic and on SIGHUP, with paused time), files another user
//! could write, a signing key replaced in place, and the keys each kind of file may hold.

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;
use std::time::Duration;

use sts_sidecar::issuer::{self, Issuer, KeySource};
use sts_sidecar::jws;
use tokio::net::TcpListener;

use super::{JsonValue as _, Setup, World, decode, key_pem};

fn kids_of(jwks: &serde_json::Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_owned())
        .collect()
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
    assert_eq!(
        world
            .metric("sts_sidecar_issuer_reloads_total{outcome=\"refused\"}")
            .await,
        1.0
    );
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
async fn a_key_file_another_user_could_write_is_refused_at_start_and_at_reload() {
    // See: issue #23 item 5 (a world-writable --publish-key was served within 6 s).
    let mut world = World::new(Setup::default()).await;
    let publish = world.dir.path().join("next.pem");
    std::fs::write(&publish, key_pem(&rcgen::PKCS_ECDSA_P256_SHA256)).unwrap();
    std::fs::set_permissions(&publish, std::fs::Permissions::from_mode(0o666)).unwrap();
    // At start: an error naming the file and the rule.
    let mut settings = world.settings(&Setup::default(), &world.url);
    settings.publish_keys = vec![KeySource::File(publish.clone())];
    let e = Issuer::new(settings).expect_err("refused").to_string();
    assert!(
        e.contains(&publish.display().to_string()) && e.contains("mode 0666"),
        "{e}"
    );
    // At reload: the signing key overwritten by "another user" with a group-writable file.
    let kid = world.issuer().signing_kid();
    let planted = key_pem(&rcgen::PKCS_ECDSA_P256_SHA256);
    std::fs::write(&world.signing_key, &planted).unwrap();
    std::fs::set_permissions(&world.signing_key, std::fs::Permissions::from_mode(0o664)).unwrap();
    world.issuer().tick(false);
    assert_eq!(
        world.issuer().signing_kid(),
        kid,
        "the planted key is not used"
    );
    let planted_kid = jws::PublicKey::from_pem(planted.as_bytes())
        .unwrap()
        .kid()
        .to_owned();
    let jwks = world.get("/token_keys").await.json_value().await;
    assert!(!kids_of(&jwks).contains(&planted_kid), "nor published");
    assert_eq!(
        world
            .metric("sts_sidecar_issuer_reloads_total{outcome=\"refused\"}")
            .await,
        1.0
    );
    // Logged once per change, not at every tick: a second tick counts a check, not a refusal.
    world.issuer().tick(false);
    assert_eq!(
        world
            .metric("sts_sidecar_issuer_reloads_total{outcome=\"refused\"}")
            .await,
        2.0,
        "every attempt is counted"
    );
    // Once the mode is fixed, the key is taken.
    std::fs::set_permissions(&world.signing_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    world.issuer().tick(false);
    assert_eq!(world.issuer().signing_kid(), planted_kid);
    world.stop().await;
}

#[tokio::test]
async fn a_signing_key_replaced_in_place_stays_published_until_its_tokens_expire() {
    let world = World::new(Setup::default()).await;
    let old_kid = world.issuer().signing_kid();
    let (_, old_token) = world
        .token_with_assertion(&world.assertion(&world.victim, &world.pki.ids))
        .await;
    let now = sts_sidecar::clock::now_unix();
    std::fs::write(&world.signing_key, key_pem(&rcgen::PKCS_ECDSA_P256_SHA256)).unwrap();
    assert!(world.issuer().reload_at(false, now).expect("reload"));
    let new_kid = world.issuer().signing_kid();
    assert_ne!(new_kid, old_kid);
    // The new key is published at once, the old one kept: its token still verifies.
    let jwks = world.get("/token_keys").await.json_value().await;
    assert_eq!(kids_of(&jwks), [new_kid.clone(), old_kid.clone()]);
    assert_eq!(decode(&old_token).0["kid"], old_kid);
    // Until --lifetime (1 h) + 5 minutes after it stopped signing.
    world.issuer().tick_at(false, now + 3600 + 299);
    let jwks = world.get("/token_keys").await.json_value().await;
    assert_eq!(kids_of(&jwks).len(), 2);
    world.issuer().tick_at(false, now + 3600 + 301);
    let jwks = world.get("/token_keys").await.json_value().await;
    assert_eq!(kids_of(&jwks), [new_kid]);
    let discovery = world
        .get("/.well-known/openid-configuration")
        .await
        .json_value()
        .await;
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"],
        serde_json::json!(["ES256"])
    );
}

#[tokio::test]
async fn a_public_pem_can_be_published_and_a_p384_signing_key_is_refused() {
    let world = World::new(Setup::default()).await;
    let next = rcgen::KeyPair::generate().unwrap();
    let public = world.dir.path().join("next.pub.pem");
    std::fs::write(&public, next.public_key_pem()).unwrap();
    let mut settings = world.settings(&Setup::default(), &world.url);
    settings.publish_keys = vec![KeySource::File(public)];
    let issuer = Issuer::new(settings).expect("a public key is enough to publish");
    let next_kid = jws::PublicKey::from_pem(next.serialize_pem().as_bytes())
        .unwrap()
        .kid()
        .to_owned();
    assert_eq!(issuer.documents().kids[1], next_kid);

    let p384 = world.dir.path().join("p384.pem");
    std::fs::write(&p384, key_pem(&rcgen::PKCS_ECDSA_P384_SHA384)).unwrap();
    let mut settings = world.settings(&Setup::default(), &world.url);
    settings.signing_key = KeySource::File(p384.clone());
    let e = Issuer::new(settings).expect_err("P-384 does not sign tokens");
    assert!(
        e.to_string().contains(&p384.display().to_string()) && e.to_string().contains("P-384 key"),
        "{e}"
    );

    let short = world.dir.path().join("short.pem");
    std::fs::write(&short, include_str!("../data/rsa-1024-test-key.pem")).unwrap();
    let mut settings = world.settings(&Setup::default(), &world.url);
    settings.signing_key = KeySource::File(short.clone());
    let e = sts_sidecar::report::chain(&Issuer::new(settings).expect_err("too short"));
    assert!(e.contains(&short.display().to_string()), "{e}");
}

async fn started(
    world: &World,
    interval: Duration,
) -> (issuer::Running, tokio::sync::mpsc::Sender<()>) {
    let mut settings = world.settings(&Setup::default(), &world.url);
    settings.reload_interval = interval;
    let issuer = Arc::new(Issuer::new(settings).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    (issuer::start(issuer, listener, admin, rx).unwrap(), tx)
}

fn checks(running: &issuer::Running) -> f64 {
    super::metric_in(
        &running.issuer.encode_metrics(),
        "sts_sidecar_issuer_key_checks_total",
    )
}

/// Lets the reload task's blocking work finish: real time passes on the blocking pool while
/// the test's paused clock stands still.
async fn settle(running: &issuer::Running, at_least: f64) {
    for _ in 0..2000 {
        if checks(running) >= at_least {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
        tokio::task::yield_now().await;
    }
    panic!("the reload task did not check {at_least} times");
}

#[tokio::test(start_paused = true)]
async fn a_running_issuer_reloads_every_interval_and_on_sighup_without_spinning() {
    // See: issue #23 (the tests dropped the sender and the reload loop spun on a closed channel).
    let world = World::new(Setup::default()).await;
    let (running, sighup) = started(&world, Duration::from_secs(5)).await;
    let first = running.issuer.signing_kid();
    // Periodic: a changed file is taken at the next tick, not before.
    std::fs::write(&world.signing_key, key_pem(&rcgen::PKCS_ECDSA_P256_SHA256)).unwrap();
    tokio::time::sleep(Duration::from_millis(4_900)).await;
    assert_eq!(checks(&running), 0.0);
    assert_eq!(running.issuer.signing_kid(), first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    settle(&running, 1.0).await;
    let second = running.issuer.signing_kid();
    assert_ne!(second, first, "taken at the tick");
    // SIGHUP: a forced reload at once, though nothing changed.
    let loaded = |r: &issuer::Running| {
        super::metric_in(
            &r.issuer.encode_metrics(),
            "sts_sidecar_issuer_reloads_total{outcome=\"loaded\"}",
        )
    };
    assert_eq!(loaded(&running), 1.0);
    sighup.send(()).await.unwrap();
    settle(&running, 2.0).await;
    assert_eq!(loaded(&running), 2.0, "forced");
    // With nobody left to send SIGHUP, it goes on ticking once per interval, no faster.
    drop(sighup);
    // No time passes on the paused clock: a loop that spins on the closed channel would check
    // over and over meanwhile (and, never idle, keep the clock from ever moving on).
    let before = checks(&running);
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(2));
        tokio::task::yield_now().await;
    }
    assert_eq!(
        checks(&running),
        before,
        "checked with no time passing: spinning"
    );
    for i in 1..=10 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        settle(&running, before + f64::from(i)).await;
    }
    // A spinning task would have checked thousands of times meanwhile.
    let ticks = checks(&running) - before;
    assert!((9.0..=11.0).contains(&ticks), "{ticks} checks in 50 s");
    running.shutdown().await;
}
