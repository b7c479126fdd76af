//! IMDSv2 emulation on the credentials listener (docs/sdk-clients.md §4, items 9-12), and the real
//! Rust SDK IMDS provider against it.

use std::process::Command;
use std::time::Duration;

use crate::support::{Options, Stack};

const TTL: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const TOKEN: &str = "x-aws-ec2-metadata-token";

async fn imds_stack(extra: &str) -> Stack {
    let stack = Stack::with(Options {
        server_toml: format!("imds = true\n{extra}"),
        ..Options::default()
    })
    .await;
    stack.wait_ready().await;
    stack
}

fn base(stack: &Stack) -> String {
    format!("http://{}", stack.sidecar().credentials_addr)
}

async fn put_token(
    stack: &Stack,
    ttl: Option<&str>,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = stack.http.put(format!("{}/latest/api/token", base(stack)));
    if let Some(ttl) = ttl {
        req = req.header(TTL, ttl);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("put")
}

async fn get(stack: &Stack, path: &str, token: Option<&str>) -> (u16, String, Option<String>) {
    let mut req = stack.http.get(format!("{}{path}", base(stack)));
    if let Some(t) = token {
        req = req.header(TOKEN, t);
    }
    let r = req.send().await.expect("get");
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, r.text().await.expect("body"), ct)
}

#[tokio::test]
async fn token_endpoint_follows_the_imds_contract() {
    let stack = imds_stack("").await;
    for bad in [None, Some("0"), Some("21601"), Some("-1"), Some("abc")] {
        assert_eq!(put_token(&stack, bad, &[]).await.status(), 400, "{bad:?}");
    }
    assert_eq!(
        put_token(&stack, Some("21600"), &[("x-forwarded-for", "10.0.0.1")])
            .await
            .status(),
        400
    );
    for ttl in ["21600", "300", "1"] {
        let r = put_token(&stack, Some(ttl), &[]).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()[TTL], ttl, "the TTL is echoed");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .expect("ct")
                .starts_with("text/plain")
        );
        assert!(r.text().await.expect("token").len() >= 32);
    }
    // GET on the token path, PUT elsewhere: 405.
    assert_eq!(get(&stack, "/latest/api/token", None).await.0, 405);
}

#[tokio::test]
async fn credentials_need_a_live_session_token() {
    let stack = imds_stack("").await;
    let list = "/latest/meta-data/iam/security-credentials/";
    assert_eq!(get(&stack, list, None).await.0, 401, "IMDSv1 is off");
    assert_eq!(get(&stack, list, Some("made-up")).await.0, 401);
    let token = put_token(&stack, Some("21600"), &[])
        .await
        .text()
        .await
        .expect("token");
    let (status, body, _) = get(&stack, list, Some(&token)).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "default"),
        "exactly one role name, no newline"
    );
    assert_eq!(
        get(
            &stack,
            "/latest/meta-data/iam/security-credentials",
            Some(&token)
        )
        .await
        .1,
        "default"
    );

    let (status, body, ct) = get(
        &stack,
        "/latest/meta-data/iam/security-credentials/default",
        Some(&token),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(ct.as_deref(), Some("application/json"));
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    let issued = &stack.sts.issued()[0];
    assert_eq!(json["Code"], "Success");
    assert_eq!(json["Type"], "AWS-HMAC");
    assert_eq!(json["AccessKeyId"], issued.access_key_id.as_str());
    assert_eq!(json["SecretAccessKey"], issued.secret_access_key.as_str());
    assert_eq!(json["Token"], issued.session_token.as_str());
    assert_eq!(
        json["Expiration"],
        sts_sidecar::clock::format_rfc3339(issued.expiration)
    );
    assert_eq!(json["AccountId"], "123456789012");
    assert!(json["LastUpdated"].as_str().expect("time").ends_with('Z'));
    assert_eq!(
        get(
            &stack,
            "/latest/meta-data/iam/security-credentials/other",
            Some(&token)
        )
        .await
        .0,
        404
    );

    // A 1 s token expires.
    let short = put_token(&stack, Some("1"), &[])
        .await
        .text()
        .await
        .expect("token");
    assert_eq!(get(&stack, list, Some(&short)).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(&stack, list, Some(&short)).await.0, 401);
}

#[tokio::test]
async fn no_number_of_other_tokens_evicts_a_clients_token() {
    // See: issue #20 item 9 (1,024 PUTs used to evict a victim's long-lived token).
    let stack = imds_stack("").await;
    let list = "/latest/meta-data/iam/security-credentials/";
    let victim = put_token(&stack, Some("21600"), &[])
        .await
        .text()
        .await
        .expect("token");
    // Each as long-lived as the victim's, so that the victim's expires first.
    for _ in 0..1500 {
        let r = put_token(&stack, Some("21600"), &[]).await;
        assert_eq!(r.status(), 200);
    }
    assert_eq!(get(&stack, list, Some(&victim)).await.0, 200);
}

#[tokio::test]
async fn imds_is_off_by_default_and_v1_must_be_asked_for() {
    let stack = Stack::start().await;
    stack.wait_ready().await;
    assert_eq!(
        put_token(&stack, Some("21600"), &[]).await.status(),
        405,
        "not an IMDS server"
    );
    let v1 = imds_stack("imds_v1 = true").await;
    let (status, body, _) = get(&v1, "/latest/meta-data/iam/security-credentials/", None).await;
    assert_eq!((status, body.as_str()), (200, "default"));
}

#[tokio::test]
async fn the_rust_sdk_imds_provider_gets_credentials() {
    let stack = imds_stack("").await;
    let probe = crate::support::example("aws_config_probe");
    let endpoint = base(&stack);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(probe)
            .arg("imds")
            .env_clear()
            .env("HOME", std::env::temp_dir())
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", endpoint)
            .output()
            .expect("run")
    })
    .await
    .expect("join");
    let got = crate::support::stdout_json(&out);
    assert_eq!(
        got["access_key_id"],
        stack.sts.issued()[0].access_key_id.as_str()
    );
    assert_eq!(got["expiry_unix"], stack.sts.issued()[0].expiration);
}
