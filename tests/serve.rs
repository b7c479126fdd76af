//! The credentials and admin endpoints over real sockets, against the fakes.

use std::time::Duration;

use sts_sidecar::testing::fake_sts::StsReply;
use sts_sidecar::testing::fake_token_service::TokenReply;

use crate::support::{AUTH_TOKEN, Options, ROLE_ARN, Stack};

fn is_sdk_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

#[tokio::test]
async fn serves_credentials_exactly_as_sdks_expect() {
    let stack = Stack::start().await;
    let r = stack.get_credentials().await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = r.json();
    let keys: Vec<&String> = body.as_object().expect("object").keys().collect();
    assert_eq!(
        keys,
        [
            "AccessKeyId",
            "AccountId",
            "Expiration",
            "RoleArn",
            "SecretAccessKey",
            "Token"
        ]
    );
    assert!(!r.body.contains("\"Code\""), "{}", r.body);
    let issued = stack.sts.issued();
    assert_eq!(issued.len(), 1);
    assert_eq!(body["AccessKeyId"], issued[0].access_key_id.as_str());
    assert_eq!(
        body["SecretAccessKey"],
        issued[0].secret_access_key.as_str()
    );
    assert_eq!(body["Token"], issued[0].session_token.as_str());
    let expiration = body["Expiration"].as_str().expect("string");
    assert!(is_sdk_timestamp(expiration), "{expiration}");
    assert_eq!(
        expiration,
        sts_sidecar::clock::format_rfc3339(issued[0].expiration)
    );
    assert_eq!(body["AccountId"], "123456789012");
    assert_eq!(body["RoleArn"], ROLE_ARN);

    // What STS saw: the token service's subject, the configured role, session and duration.
    let seen = stack.sts.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].role_arn, ROLE_ARN);
    assert_eq!(seen[0].session_name, "my-app-0");
    assert_eq!(seen[0].duration_secs, 3600);
    assert_eq!(seen[0].subject, stack.pki.ids.subject());
    assert_eq!(
        stack.token_service.subjects(),
        vec![stack.pki.ids.subject()]
    );
}

#[tokio::test]
async fn accepts_every_loopback_host_form_and_query_strings() {
    let stack = Stack::start().await;
    let port = stack.sidecar().credentials_addr.port();
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        "localhost".to_owned(),
    ] {
        let r = stack
            .get(
                &stack.credentials_url(),
                &[("authorization", AUTH_TOKEN), ("host", &host)],
            )
            .await;
        assert_eq!(r.status, 200, "{host}: {}", r.body);
    }
    let r = stack
        .get(
            &format!("{}?x=y", stack.credentials_url()),
            &[("authorization", AUTH_TOKEN)],
        )
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn refuses_bad_requests_with_json_errors() {
    let stack = Stack::start().await;
    let url = stack.credentials_url();
    let bearer = format!("Bearer {AUTH_TOKEN}");
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (vec![], "", 401, "MissingAuthorization"),
        (
            vec![("authorization", "wrong")],
            "",
            403,
            "InvalidAuthorization",
        ),
        (
            vec![("authorization", bearer.as_str())],
            "",
            403,
            "InvalidAuthorization",
        ),
        (
            vec![("authorization", AUTH_TOKEN), ("host", "evil.example:80")],
            "",
            403,
            "InvalidHost",
        ),
        (
            vec![
                ("authorization", AUTH_TOKEN),
                ("x-forwarded-for", "10.0.0.1"),
            ],
            "",
            403,
            "Forwarded",
        ),
        (
            vec![("authorization", AUTH_TOKEN), ("forwarded", "for=10.0.0.1")],
            "",
            403,
            "Forwarded",
        ),
        (
            vec![("authorization", AUTH_TOKEN), ("x-real-ip", "10.0.0.1")],
            "",
            403,
            "Forwarded",
        ),
        (
            vec![("authorization", AUTH_TOKEN), ("via", "1.1 proxy")],
            "",
            403,
            "Forwarded",
        ),
        (
            vec![("authorization", AUTH_TOKEN), ("x-forwarded-host", "a")],
            "",
            403,
            "Forwarded",
        ),
        (
            vec![("authorization", AUTH_TOKEN)],
            "/nope",
            404,
            "NotFound",
        ),
        (
            vec![("authorization", AUTH_TOKEN)],
            "/../v1/credentials/x",
            404,
            "NotFound",
        ),
    ];
    for (headers, suffix, status, code) in cases {
        let r = stack.get(&format!("{url}{suffix}"), &headers).await;
        assert_eq!(r.status, status, "{headers:?} {suffix}: {}", r.body);
        assert_eq!(r.header("content-type"), Some("application/json"));
        let body = r.json();
        assert_eq!(body["Code"], code);
        assert_eq!(body["code"], code);
        assert!(body["Message"].is_string() && body["message"].is_string());
        assert!(!r.body.contains(AUTH_TOKEN));
    }
    let r = stack
        .http
        .post(&url)
        .header("authorization", AUTH_TOKEN)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 405);
    assert_eq!(
        r.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("GET")
    );
}

#[tokio::test]
async fn answers_503_with_retry_after_while_upstreams_are_slow() {
    let stack = Stack::with(Options {
        start: false,
        ..Options::default()
    })
    .await;
    stack
        .token_service
        .push_reply(TokenReply::Slow(Duration::from_secs(6)));
    let mut stack = stack;
    stack.start_sidecar().await;
    let started = tokio::time::Instant::now();
    let r = stack.get_credentials().await;
    let waited = started.elapsed();
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.json()["Code"], "CredentialsUnavailable");
    assert!(
        r.json()["Message"]
            .as_str()
            .is_some_and(|m| m.contains("waiting for the first answer")),
        "{}",
        r.body
    );
    // It waited the cold-start grace (1.5 s) rather than answering at once; that it did not
    // wait for the slow token service is shown by the sidecar still not being ready after the
    // answer (an upper bound on the time would race a busy machine).
    assert!(waited >= Duration::from_millis(1400), "{waited:?}");
    let ready = stack.get(&stack.admin_url("/ready"), &[]).await;
    assert_eq!(ready.status, 503);
    stack.wait_ready().await;
    assert_eq!(stack.get_credentials().await.status, 200);
    assert_eq!(stack.get(&stack.admin_url("/ready"), &[]).await.status, 200);
}

#[tokio::test]
async fn a_cold_start_with_1000_concurrent_requests_makes_one_call_each_upstream() {
    let mut stack = Stack::with(Options {
        start: false,
        ..Options::default()
    })
    .await;
    // Upstreams answer after 300 ms, so every request arrives before the first credentials.
    stack
        .token_service
        .push_reply(TokenReply::Slow(Duration::from_millis(300)));
    stack.start_sidecar().await;
    let stack = std::sync::Arc::new(stack);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let stack = stack.clone();
        tasks.spawn(async move { stack.get_credentials().await.status });
    }
    let mut statuses = std::collections::BTreeMap::new();
    while let Some(status) = tasks.join_next().await {
        *statuses.entry(status.expect("task")).or_insert(0) += 1;
    }
    assert_eq!(statuses.get(&200), Some(&1000), "{statuses:?}");
    assert_eq!(stack.token_service.calls(), 1);
    assert_eq!(stack.sts.calls(), 1);
}

#[tokio::test]
async fn admin_endpoints_report_state_without_secrets() {
    let stack = Stack::start().await;
    stack.wait_ready().await;
    let health = stack.get(&stack.admin_url("/healthz"), &[]).await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    assert_eq!(
        stack.get(&stack.admin_url("/ready"), &[]).await.json()["ready"],
        true
    );
    let _ = stack.get_credentials().await;

    let status = stack.get(&stack.admin_url("/status"), &[]).await;
    assert_eq!(status.status, 200);
    let json = status.json();
    let role = &json["roles"][0];
    assert_eq!(role["alias"], "default");
    assert_eq!(role["role_arn"], ROLE_ARN);
    assert_eq!(role["ready"], true);
    assert!(role["expires_in_secs"].as_i64().expect("number") > 3500);

    let metrics = stack.get(&stack.admin_url("/metrics"), &[]).await;
    assert_eq!(metrics.status, 200);
    for needle in [
        "sts_sidecar_credential_expiry_timestamp_seconds{role=\"default\"}",
        "sts_sidecar_refreshes_total{role=\"default\",outcome=\"success\"} 1",
        "sts_sidecar_upstream_request_duration_seconds_count{upstream=\"sts\",outcome=\"success\"} 1",
        "sts_sidecar_upstream_request_duration_seconds_count{upstream=\"token_service\",outcome=\"success\"} 1",
        "sts_sidecar_http_requests_total{listener=\"credentials\",status=\"200\"} 1",
        "sts_sidecar_certificate_expiry_timestamp_seconds ",
        "sts_sidecar_identity_token_expiry_timestamp_seconds{source=\"token-service\"} ",
        "sts_sidecar_role_info{role=\"default\",source=\"token-service\",kind=\"token-service\"} 1",
    ] {
        assert!(
            metrics.body.contains(needle),
            "missing {needle} in\n{}",
            metrics.body
        );
    }
    let issued = &stack.sts.issued()[0];
    for body in [&status.body, &metrics.body] {
        assert!(!body.contains(&issued.secret_access_key) && !body.contains(&issued.session_token));
        assert!(!body.contains(AUTH_TOKEN));
    }
    assert_eq!(stack.get(&stack.admin_url("/nope"), &[]).await.status, 404);
}

#[tokio::test]
async fn serves_named_roles_by_alias() {
    let roles = format!(
        "[[role]]\narn = \"{ROLE_ARN}\"\n\n[[role]]\nalias = \"reports\"\narn = \"arn:aws:iam::210987654321:role/reports\"\nduration_secs = 900\n"
    );
    let stack = Stack::with(Options {
        roles_toml: Some(roles),
        ..Options::default()
    })
    .await;
    stack.wait_ready().await;
    let default = stack.get_credentials().await.json();
    let named = stack
        .get(
            &format!("{}/reports", stack.credentials_url()),
            &[("authorization", AUTH_TOKEN)],
        )
        .await
        .json();
    assert_eq!(default["RoleArn"], ROLE_ARN);
    assert_eq!(named["RoleArn"], "arn:aws:iam::210987654321:role/reports");
    assert_eq!(named["AccountId"], "210987654321");
    assert_ne!(default["AccessKeyId"], named["AccessKeyId"]);
    // Both roles share one identity token.
    assert_eq!(stack.token_service.calls(), 1);
    assert_eq!(stack.sts.calls(), 2);
    let unknown = stack
        .get(
            &format!("{}/other", stack.credentials_url()),
            &[("authorization", AUTH_TOKEN)],
        )
        .await;
    assert_eq!(unknown.status, 404);
}

#[tokio::test]
async fn creates_and_follows_an_authorization_token_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("auth-token");
    let server = format!("auth_token_file = \"{}\"", path.display());
    let stack = Stack::with(Options {
        server_toml: server,
        env: vec![],
        ..Options::default()
    })
    .await;
    let token = std::fs::read_to_string(&path).expect("token file written");
    assert_eq!(token.len(), 43);
    assert!(!token.ends_with('\n'));
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
        0o600
    );
    let url = stack.credentials_url();
    assert_eq!(
        stack.get(&url, &[("authorization", &token)]).await.status,
        200
    );

    // Rotate the file: the new token works at once, the old one during the grace period.
    std::fs::write(dir.path().join("new"), "rotated-token-abcdefghijklmnop").expect("write");
    std::fs::rename(dir.path().join("new"), &path).expect("rename");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        stack
            .get(&url, &[("authorization", "rotated-token-abcdefghijklmnop")])
            .await
            .status,
        200
    );
    assert_eq!(
        stack.get(&url, &[("authorization", &token)]).await.status,
        200
    );
    assert_eq!(
        stack
            .get(&url, &[("authorization", "something-else")])
            .await
            .status,
        403
    );

    // See: issue #20 item 3. Swapped for a FIFO nobody writes to, the file is refused at once:
    // wrong tokens get their 403, the admin port and the right token keep answering.
    std::fs::remove_file(&path).expect("rm");
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let wrong = tokio::time::timeout(
        Duration::from_secs(5),
        stack.get(&url, &[("authorization", "after-the-fifo")]),
    )
    .await
    .expect("answered while the token file is a FIFO");
    assert_eq!(wrong.status, 403);
    assert_eq!(
        stack.get(&stack.admin_url("/healthz"), &[]).await.status,
        200
    );
    assert_eq!(
        stack
            .get(&url, &[("authorization", "rotated-token-abcdefghijklmnop")])
            .await
            .status,
        200
    );
    // See: issue #20 item 6: refusals are counted.
    let metrics = stack.get(&stack.admin_url("/metrics"), &[]).await.body;
    assert!(
        metrics.contains("sts_sidecar_auth_failures_total{reason=\"wrong\"} 2"),
        "{metrics}"
    );
}

async fn raw_request(addr: std::net::SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await;
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let stack = Stack::start().await;
    let big = "x".repeat(20 * 1024);
    let request = format!(
        "GET /v1/credentials HTTP/1.1\r\nHost: localhost\r\nAuthorization: {AUTH_TOKEN}\r\nX-Big: {big}\r\nConnection: close\r\n\r\n"
    );
    let response = raw_request(stack.sidecar().credentials_addr, request.as_bytes()).await;
    assert!(
        response.starts_with("HTTP/1.1 431"),
        "{}",
        &response[..response.len().min(200)]
    );
    // The server keeps serving others.
    assert_eq!(stack.get_credentials().await.status, 200);
}

#[tokio::test]
async fn http_1_0_and_pipelined_requests_are_answered() {
    let stack = Stack::start().await;
    stack.wait_ready().await;
    let addr = stack.sidecar().credentials_addr;
    let one = raw_request(
        addr,
        format!("GET /v1/credentials HTTP/1.0\r\nAuthorization: {AUTH_TOKEN}\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(one.starts_with("HTTP/1.0 200"), "{one}");
    let two = format!(
        "GET /v1/credentials HTTP/1.1\r\nHost: localhost\r\nAuthorization: {AUTH_TOKEN}\r\n\r\nGET /v1/credentials HTTP/1.1\r\nHost: localhost\r\nAuthorization: wrong\r\nConnection: close\r\n\r\n"
    );
    let both = raw_request(addr, two.as_bytes()).await;
    assert_eq!(both.matches("HTTP/1.1 200").count(), 1, "{both}");
    assert_eq!(both.matches("HTTP/1.1 403").count(), 1, "{both}");
}

#[tokio::test]
async fn at_the_cap_a_new_client_takes_the_slot_of_a_waiting_one() {
    // See: issue #20 item 1 (idle connections that reconnect at once used to hold every slot).
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let stack = Stack::with(Options {
        server_toml: "max_connections = 2\nheader_read_timeout_secs = 30".into(),
        ..Options::default()
    })
    .await;
    stack.wait_ready().await;
    let addr = stack.sidecar().credentials_addr;
    // Two slow clients take both slots, sending half a request each.
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /v1/credentials HTTP/1.1\r\nHost: loc")
            .await
            .expect("write");
        slow.push(s);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A third client is served at once (not after the 30 s header timeout)...
    let third = tokio::time::timeout(Duration::from_secs(10), stack.get_credentials())
        .await
        .expect("served while two slow clients held both slots");
    assert_eq!(third.status, 200);
    // ...in the slot of the oldest slow client, which was closed; the other one is still open.
    let mut buf = Vec::new();
    let oldest = tokio::time::timeout(Duration::from_secs(3), slow[0].read_to_end(&mut buf)).await;
    assert!(oldest.is_ok(), "the oldest slow client is still connected");
    let newer = tokio::time::timeout(Duration::from_millis(200), slow[1].read(&mut buf)).await;
    assert!(newer.is_err(), "the newer slow client was closed too");
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_within_about_a_second() {
    // See: issue #20 item 1.
    use tokio::io::AsyncReadExt as _;
    let stack = Stack::with(Options {
        server_toml: "header_read_timeout_secs = 30".into(),
        ..Options::default()
    })
    .await;
    stack.wait_ready().await;
    for addr in [stack.sidecar().credentials_addr, stack.sidecar().admin_addr] {
        let mut silent = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "{addr}: a silent connection was kept");
        assert!(buf.is_empty());
    }
}

// See issue #4: hostile and malformed requests each get a 4xx and the server keeps serving.
#[tokio::test]
async fn hostile_requests_get_4xx_and_the_server_keeps_serving() {
    let stack = Stack::start().await;
    stack.wait_ready().await;
    let addr = stack.sidecar().credentials_addr;
    let long = "a".repeat(12 * 1024);
    let cases: Vec<(String, &str)> = vec![
        (
            format!(
                "GET /v1/credentials HTTP/1.1\r\nHost: localhost\r\nAuthorization: {long}\r\nConnection: close\r\n\r\n"
            ),
            "403",
        ),
        (
            format!(
                "GET /v1/credentials HTTP/1.1\r\nHost: localhost\r\nAuthorization: {AUTH_TOKEN}\r\n x\r\nConnection: close\r\n\r\n"
            ),
            "400",
        ),
        (
            format!(
                "GET /v1/credentials HTTP/1.1\r\nHost: localhost\r\nAuthorization: {AUTH_TOKEN}\rX\r\nConnection: close\r\n\r\n"
            ),
            "400",
        ),
        (
            format!(
                "GET /v1/credentials%2Fdefault HTTP/1.1\r\nHost: localhost\r\nAuthorization: {AUTH_TOKEN}\r\nConnection: close\r\n\r\n"
            ),
            "404",
        ),
        (
            format!(
                "GET /v1/credentials/%64efault HTTP/1.1\r\nHost: localhost\r\nAuthorization: {AUTH_TOKEN}\r\nConnection: close\r\n\r\n"
            ),
            "404",
        ),
        (
            format!(
                "GET //v1/credentials HTTP/1.1\r\nHost: localhost\r\nAuthorization: {AUTH_TOKEN}\r\nConnection: close\r\n\r\n"
            ),
            "404",
        ),
        (
            format!(
                "GET /v1/credentials/./ HTTP/1.1\r\nHost: localhost\r\nAuthorization: {AUTH_TOKEN}\r\nConnection: close\r\n\r\n"
            ),
            "404",
        ),
        // See: issue #20 item 7 (these three were answered 200).
        (
            format!(
                "GET http://evil.example/v1/credentials HTTP/1.1\r\nHost: localhost\r\nAuthorization: {AUTH_TOKEN}\r\nConnection: close\r\n\r\n"
            ),
            "400",
        ),
        (
            format!(
                "GET /v1/credentials HTTP/1.1\r\nAuthorization: {AUTH_TOKEN}\r\nConnection: close\r\n\r\n"
            ),
            "400",
        ),
        (
            format!(
                "GET /v1/credentials HTTP/1.1\r\nHost: localhost\r\nHost: localhost\r\nAuthorization: {AUTH_TOKEN}\r\nConnection: close\r\n\r\n"
            ),
            "400",
        ),
        ("GARBAGE\r\n\r\n".to_owned(), "400"),
    ];
    for method in ["HEAD", "OPTIONS", "TRACE", "DELETE", "PATCH"] {
        let r = raw_request(addr, format!("{method} /v1/credentials HTTP/1.1\r\nHost: localhost\r\nAuthorization: {AUTH_TOKEN}\r\nConnection: close\r\n\r\n").as_bytes()).await;
        assert!(
            r.starts_with("HTTP/1.1 405"),
            "{method}: {}",
            &r[..r.len().min(80)]
        );
    }
    for (request, status) in cases {
        let r = raw_request(addr, request.as_bytes()).await;
        assert!(
            r.starts_with(&format!("HTTP/1.1 {status}")),
            "{}: {}",
            &request[..request.len().min(60)],
            &r[..r.len().min(80)]
        );
        assert!(!r.contains(&stack.sts.issued()[0].secret_access_key));
    }
    // The admin listener screens requests the same way.
    let admin = stack.sidecar().admin_addr;
    for (request, status) in [
        (
            "GET /ready HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: 10.0.0.1\r\n",
            "403",
        ),
        (
            "GET /ready HTTP/1.1\r\nHost: localhost\r\nForwarded: for=10.0.0.1\r\n",
            "403",
        ),
        (
            "GET http://evil.example/ready HTTP/1.1\r\nHost: localhost\r\n",
            "400",
        ),
        ("GET /ready HTTP/1.1\r\n", "400"),
        ("GET /ready HTTP/1.1\r\nHost: localhost\r\n", "200"),
    ] {
        let r = raw_request(
            admin,
            format!("{request}Connection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(
            r.starts_with(&format!("HTTP/1.1 {status}")),
            "{request:?}: {}",
            &r[..r.len().min(80)]
        );
    }
    assert_eq!(stack.get_credentials().await.status, 200);
}

#[tokio::test]
async fn thousands_of_idle_connections_are_cut_off_and_do_not_stop_service() {
    let stack = Stack::with(Options {
        server_toml: "header_read_timeout_secs = 1".into(),
        ..Options::default()
    })
    .await;
    stack.wait_ready().await;
    let addr = stack.sidecar().credentials_addr;
    // 2,000 idle connections against a cap of 1,024: the excess waits in the kernel's backlog.
    let mut idle = Vec::new();
    for _ in 0..2000 {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => idle.push(s),
            Err(_) => break,
        }
    }
    assert!(idle.len() >= 1024, "opened {}", idle.len());
    // Idle connections are closed by the header-read timeout; a real client is served soon after.
    let started = tokio::time::Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(15), stack.get_credentials())
        .await
        .expect("served within 15 s");
    assert_eq!(r.status, 200);
    assert!(started.elapsed() < Duration::from_secs(15));
    drop(idle);
}

#[tokio::test]
async fn a_503_names_the_class_of_the_last_error_and_no_secret() {
    // See: issue #17 (the README said the 503 carries the last error; it only pointed to /status).
    let mut stack = Stack::with(Options {
        start: false,
        ..Options::default()
    })
    .await;
    for _ in 0..3 {
        stack.sts.push_reply(StsReply::access_denied());
    }
    stack.start_sidecar().await;
    let status = loop {
        let st = stack.get(&stack.admin_url("/status"), &[]).await;
        if st.json()["roles"][0]["last_error_class"] == "denied" {
            break st;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let r = stack.get_credentials().await;
    assert_eq!(r.status, 503, "{}", r.body);
    let message = r.json()["Message"].as_str().unwrap_or("").to_owned();
    assert!(
        message.contains("the last refresh failed (denied)"),
        "{message}"
    );
    // The upstream's own words stay in /status.
    let error = status.json()["roles"][0]["last_error"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(error.contains("AccessDenied"), "{error}");
    assert!(!message.contains("AccessDenied") && !message.contains(ROLE_ARN));
}
