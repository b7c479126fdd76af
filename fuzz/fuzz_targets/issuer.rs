//! Arbitrary bytes at the issuer: as a whole request on its listener (no panic, no hang, only
//! HTTP responses, and never a token, since no input can carry a proof signed by an instance
//! key), and straight into the parsers of untrusted input: the assertion, the JWS under it and
//! the X-Forwarded-Client-Cert header.
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use sts_sidecar::issuer::{self, Accept, Issuer, ProofKind};
use sts_sidecar::testing::pki::TestPki;
use sts_sidecar_fuzz::{World, assert_responses_well_formed, contains};

/// How a token's answer starts its headers.
const TOKEN_ANSWER: &[u8] = b"\r\ncontent-type: application/jwt\r\n";

struct Target {
    world: World,
    issuer: Arc<Issuer>,
    _pki: TestPki,
    _dir: tempfile::TempDir,
}

static TARGET: LazyLock<Target> = LazyLock::new(|| {
    let world = World::new();
    let pki = TestPki::new().expect("pki");
    let dir = tempfile::tempdir().expect("tmp");
    let signing = dir.path().join("signing.pem");
    std::fs::write(
        &signing,
        rcgen::KeyPair::generate().expect("key").serialize_pem(),
    )
    .expect("write");
    let mut settings = sts_sidecar::testing::issuer_settings(
        "https://issuer.fuzz.example",
        pki.write_ca_bundle().expect("ca"),
        signing,
    );
    settings.accept = Accept::of(ProofKind::ALL);
    settings.session_tags = true;
    settings.source_identity = true;
    let issuer = Arc::new(Issuer::new(settings).expect("issuer"));
    let target = Target {
        world,
        issuer,
        _pki: pki,
        _dir: dir,
    };
    // The harness is wired: discovery answers, and a token request without proof is refused.
    let out = run(&target, b"GET /token_keys HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        out.starts_with(b"HTTP/1.1 200 "),
        "self-check: {:?}",
        String::from_utf8_lossy(&out)
    );
    let out = run(
        &target,
        b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(
        out.starts_with(b"HTTP/1.1 401 "),
        "self-check: {:?}",
        String::from_utf8_lossy(&out)
    );
    // A refusal quoting a grant_type that holds "application/jwt" is not a token (found by
    // this target: the old check matched the text anywhere in the answer).
    let out = run(
        &target,
        b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
          Content-Length: 39\r\n\r\ngrant_type=x-application/jwt-bearer&a=b",
    );
    assert!(
        out.starts_with(b"HTTP/1.1 400 ") && !contains(&out, TOKEN_ANSWER),
        "self-check: {:?}",
        String::from_utf8_lossy(&out)
    );
    target
});

fn run(target: &Target, data: &[u8]) -> Vec<u8> {
    let issuer = target.issuer.clone();
    target.world.exchange(data, move |req| {
        let issuer = issuer.clone();
        async move { issuer.handle(req, None).await }
    })
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        // The parsers alone: a quick path to their corners.
        Some((0, rest)) => {
            if let Ok(text) = std::str::from_utf8(rest) {
                if let Ok(a) = issuer::proof::assertion::parse(text) {
                    let audiences = ["https://issuer.fuzz.example".to_owned()];
                    let _ = a.check_claims(&audiences, 1_800_000_000);
                }
                let _ = sts_sidecar::jws::parse(text);
            }
        }
        Some((1, rest)) => {
            let _ = issuer::proof::xfcc::parse(rest);
        }
        _ => {
            let target = &*TARGET;
            let out = run(target, data);
            assert_responses_well_formed(&out);
            // The header, not the text: a refusal may quote (escaped) what the client sent.
            assert!(
                !contains(&out, TOKEN_ANSWER),
                "a token was issued to input that holds no proof"
            );
        }
    }
});
