//! Arbitrary bytes on the admin listener: no panic, no hang, only HTTP responses, and never a
//! secret in any answer (`/status` and `/metrics` are redacted by construction).
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use sts_sidecar::server::AdminApp;
use sts_sidecar_fuzz::{World, assert_responses_well_formed, contains};

struct Target {
    world: World,
    app: Arc<AdminApp>,
}

static TARGET: LazyLock<Target> = LazyLock::new(|| {
    let world = World::new();
    let app = AdminApp::new(world.roles.clone(), world.metrics.clone(), Vec::new());
    let target = Target {
        world,
        app: Arc::new(app),
    };
    // The harness is wired: /status answers and shows the role.
    let out = run(&target, b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert!(
        out.starts_with(b"HTTP/1.1 200 "),
        "self-check failed: {:?}",
        String::from_utf8_lossy(&out)
    );
    assert!(
        contains(&out, b"\"default\""),
        "self-check: no role in /status"
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
    assert!(
        !target.world.shows_secrets(data, &out),
        "a secret on the admin listener: {}",
        String::from_utf8_lossy(&out)
    );
});
