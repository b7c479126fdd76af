//! Arbitrary bytes on the credentials listener (ECS endpoint and IMDSv2 emulation): no panic,
//! no hang, only HTTP responses, and credentials only to a request that carried the token.
#![no_main]

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use sts_sidecar::server::{Auth, AuthToken, CredentialsApp};
use sts_sidecar_fuzz::{AUTH_TOKEN, World, assert_responses_well_formed, contains};

struct Target {
    world: World,
    app: Arc<CredentialsApp>,
}

static TARGET: LazyLock<Target> = LazyLock::new(|| {
    let world = World::new();
    let auth = Auth::fixed(AuthToken::new(AUTH_TOKEN), "fuzz").expect("valid token");
    let app = CredentialsApp::new(
        world.roles.clone(),
        Arc::new(auth),
        world.metrics.clone(),
        Duration::from_millis(10),
        Vec::new(),
    )
    .with_imds(false);
    let target = Target {
        world,
        app: Arc::new(app),
    };
    // The harness is wired: an authorized request gets the secrets (so their absence below
    // means something).
    let request = format!(
        "GET /v1/credentials HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {AUTH_TOKEN}\r\n\r\n"
    );
    let out = run(&target, request.as_bytes());
    assert!(
        out.starts_with(b"HTTP/1.1 200 "),
        "self-check failed: {:?}",
        String::from_utf8_lossy(&out)
    );
    assert!(
        target.world.shows_secrets(request.as_bytes(), &out),
        "self-check: no credentials"
    );
    target
});

fn run(target: &Target, data: &[u8]) -> Vec<u8> {
    let app = target.app.clone();
    target.world.exchange(data, move |req| {
        let app = app.clone();
        async move { app.handle(req).await }
    })
}

fuzz_target!(|data: &[u8]| {
    let target = &*TARGET;
    let out = run(target, data);
    assert_responses_well_formed(&out);
    if !contains(data, AUTH_TOKEN.as_bytes()) {
        // IMDSv2 hands credentials only for a token from a PUT in the same run, which the
        // input cannot know: no secret may come back without the authorization token.
        assert!(
            !target.world.shows_secrets(data, &out) && !contains(&out, b"ASIASCRIPTED"),
            "credentials served without the authorization token"
        );
    }
});
