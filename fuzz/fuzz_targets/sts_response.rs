//! Arbitrary STS answers (status and body) through the real aws-sdk-sts client and our
//! interpretation of its result: no panic; accepted credentials are complete; errors never carry
//! the identity token, even when the answer echoes it.
#![no_main]

use std::sync::{LazyLock, Mutex};

use aws_sdk_sts::config::retry::RetryConfig;
use aws_sdk_sts::config::{BehaviorVersion, Region};
use aws_smithy_http_client::test_util::infallible_client_fn;
use libfuzzer_sys::fuzz_target;
use sts_sidecar::backend::sts::interpret;

const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJmdXp6In0.c2lnbmF0dXJlLWZ1enotc2VjcmV0";
const ROLE: &str = "arn:aws:iam::123456789012:role/fuzz";
const STATUSES: [u16; 8] = [200, 400, 403, 404, 429, 500, 503, 302];

/// The answer the fake HTTP client gives next.
static NEXT: Mutex<(u16, Vec<u8>)> = Mutex::new((200, Vec::new()));

struct Target {
    rt: tokio::runtime::Runtime,
    client: aws_sdk_sts::Client,
}

static TARGET: LazyLock<Target> = LazyLock::new(|| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let http = infallible_client_fn(|_req| {
        let (status, body) = NEXT.lock().expect("lock").clone();
        http::Response::builder()
            .status(status)
            .header("content-type", "text/xml")
            .body(body)
            .expect("response")
    });
    // As the real backend: no SDK retries (one refresh is one call).
    let config = aws_sdk_sts::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-central-1"))
        .retry_config(RetryConfig::disabled())
        .http_client(http)
        .build();
    Target {
        rt,
        client: aws_sdk_sts::Client::from_conf(config),
    }
});

fuzz_target!(|data: &[u8]| {
    let (status, body) = match data.split_first() {
        Some((s, rest)) => (STATUSES[usize::from(*s) % STATUSES.len()], rest.to_vec()),
        None => (200, Vec::new()),
    };
    *NEXT.lock().expect("lock") = (status, body);
    let target = &*TARGET;
    let result = target.rt.block_on(
        target
            .client
            .assume_role_with_web_identity()
            .role_arn(ROLE)
            .role_session_name("fuzz")
            .web_identity_token(TOKEN)
            .send(),
    );
    match interpret(ROLE, "123456789012", result, TOKEN) {
        Ok(creds) => {
            assert!(!creds.access_key_id.is_empty());
            assert!(!creds.secret_access_key.expose().is_empty());
            assert!(!creds.session_token.expose().is_empty());
            assert_eq!(creds.role_arn, ROLE);
        }
        Err(e) => {
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains(TOKEN), "the identity token leaked: {shown}");
        }
    }
});
