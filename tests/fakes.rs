//! The fakes answer like the real upstreams they stand for (docs/upstream-apis.md §1 and §6), since the
//! dev token service runs on its own in the local stack and docker-compose.

use base64::Engine as _;

use crate::support::Stack;

fn https_client(stack: &Stack, with_identity: bool) -> reqwest::Client {
    let ca = std::fs::read(stack.pki.server_ca_path()).expect("ca");
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(&ca).expect("ca pem"));
    if with_identity {
        let mut pem = std::fs::read(stack.pki.cert_path()).expect("cert");
        pem.extend(std::fs::read(stack.pki.key_path()).expect("key"));
        builder = builder.identity(reqwest::Identity::from_pem(&pem).expect("identity"));
    }
    builder.build().expect("client")
}

#[tokio::test]
async fn the_dev_token_service_answers_like_the_real_one() {
    let stack = Stack::start().await;
    let url = stack.token_service.url();
    let anonymous = https_client(&stack, false);

    // No client certificate: 403, like Spring Security's x509 filter.
    let r = anonymous
        .post(format!("{url}/token"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    // Wrong method on /token.
    let r = https_client(&stack, true)
        .get(format!("{url}/token"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 405);

    // Discovery document and JWKS without a certificate; the issuer is the URL the caller used.
    let host_url = url.replace("127.0.0.1", "localhost");
    let discovery: serde_json::Value = anonymous
        .get(format!("{host_url}/.well-known/openid-configuration"))
        .send()
        .await
        .expect("discovery")
        .json()
        .await
        .expect("json");
    assert_eq!(discovery["issuer"], host_url.as_str());
    assert_eq!(discovery["jwks_uri"], format!("{host_url}/token_keys"));
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"][0],
        "RS256"
    );
    let jwks: serde_json::Value = anonymous
        .get(format!("{url}/token_keys"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    let key = &jwks["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["e"].as_str(), key["kid"].as_str()),
        (Some("RSA"), Some("AQAB"), Some("first"))
    );
    let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(key["n"].as_str().expect("n"))
        .expect("b64");
    assert_eq!(n.len(), 256, "a 2048-bit modulus without a leading zero");

    // With the instance identity: a bare RS256 JWT, text/plain, claims like the real service.
    let r = https_client(&stack, true)
        .post(format!("{url}/token"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/plain")
    );
    let token = r.text().await.expect("body");
    assert!(!token.ends_with('\n'));
    let mut parts = token.split('.');
    let header: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts.next().expect("h"))
            .expect("b64"),
    )
    .expect("json");
    assert_eq!(
        header,
        serde_json::json!({"kid": "first", "typ": "JWT", "alg": "RS256"})
    );
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts.next().expect("p"))
            .expect("b64"),
    )
    .expect("json");
    let ids = &stack.pki.ids;
    assert_eq!(claims["sub"], ids.subject());
    assert_eq!(claims["aud"], "sts.amazonaws.com");
    assert_eq!(
        (
            claims["org_guid"].as_str(),
            claims["space_guid"].as_str(),
            claims["app_guid"].as_str()
        ),
        (
            Some(ids.org.as_str()),
            Some(ids.space.as_str()),
            Some(ids.app.as_str())
        )
    );
    assert_eq!(
        claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"),
        12 * 3600
    );
    assert!(sts_sidecar::testing::jwt::verify(
        &token,
        &stack.token_service.public_key_der()
    ));
}

#[tokio::test]
async fn the_fake_sts_checks_what_real_sts_checks() {
    let stack = Stack::start().await;
    let token = stack
        .token_service
        .mint(
            &stack.pki.ids.subject(),
            std::time::Duration::from_secs(600),
        )
        .expect("mint");
    let expired = stack
        .token_service
        .mint("o:s:a", std::time::Duration::ZERO)
        .expect("mint");
    let forged = format!("{}x", &token[..token.len() - 1]);
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let call = |form: Vec<(&'static str, String)>| {
        let client = client.clone();
        let endpoint = stack.sts.endpoint();
        async move {
            let r = client
                .post(endpoint)
                .form(&form)
                .send()
                .await
                .expect("post");
            (r.status().as_u16(), r.text().await.expect("body"))
        }
    };
    let base = |token: &str, session: &str, duration: &str| {
        vec![
            ("Action", "AssumeRoleWithWebIdentity".to_owned()),
            ("Version", "2011-06-15".to_owned()),
            ("RoleArn", "arn:aws:iam::123456789012:role/x".to_owned()),
            ("RoleSessionName", session.to_owned()),
            ("WebIdentityToken", token.to_owned()),
            ("DurationSeconds", duration.to_owned()),
        ]
    };
    let cases = [
        (base(&token, "ok-session", "3600"), 200, "<AccessKeyId>"),
        (base(&token, "x", "3600"), 400, "roleSessionName"),
        (base(&token, "bad session", "3600"), 400, "roleSessionName"),
        (base(&token, "ok", "600"), 400, "durationSeconds"),
        (base(&token, "ok", "43201"), 400, "durationSeconds"),
        (base("abc", "ok", "3600"), 400, "webIdentityToken"),
        (
            base("not-a-jwt-at-all", "ok", "3600"),
            400,
            "InvalidIdentityToken",
        ),
        (base(&expired, "ok", "3600"), 400, "ExpiredTokenException"),
        (
            base(&forged, "ok", "3600"),
            400,
            "signature could not be verified",
        ),
    ];
    for (form, status, needle) in cases {
        let (got, body) = call(form.clone()).await;
        assert_eq!(got, status, "{form:?}: {body}");
        assert!(body.contains(needle), "{form:?}: {needle} not in {body}");
    }
}
