//! `exec`, `credential-process` and `check` as users run them: the real binary against the fakes.

use std::process::{Command, Stdio};
use std::time::Duration;

use sts_sidecar::testing::fake_sts::StsReply;
use sts_sidecar::testing::fake_token_service::TokenReply;

use crate::support::{AUTH_TOKEN, Options, ROLE_ARN, Stack, output};

const BIN: &str = env!("CARGO_BIN_EXE_sts-sidecar");

/// The binary with the stack's upstreams and identity, and nothing else from our environment.
fn sidecar(stack: &Stack, subcommand: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .env("CF_INSTANCE_CERT", stack.pki.cert_path())
        .env("CF_INSTANCE_KEY", stack.pki.key_path())
        .arg(subcommand)
        .args(["--token-service-url", &stack.token_service.url()])
        .args([
            "--token-service-ca",
            &stack.pki.server_ca_path().display().to_string(),
        ])
        .args(["--role-arn", ROLE_ARN])
        .args(["--sts-endpoint", &stack.sts.endpoint()]);
    cmd
}

/// `check` with the authorization token `serve` would need.
fn check(stack: &Stack) -> Command {
    let mut cmd = sidecar(stack, "check");
    cmd.env("AWS_CONTAINER_AUTHORIZATION_TOKEN", AUTH_TOKEN);
    cmd
}

// ---- exec

#[tokio::test]
async fn exec_gives_the_child_credentials_and_its_exit_code() {
    let stack = Stack::start().await;
    // The Rust SDK's container provider, run under exec, finds credentials with no other setup.
    let mut cmd = sidecar(&stack, "exec");
    cmd.env("AWS_ACCESS_KEY_ID", "AKIASTATICKEY")
        .env("AWS_PROFILE", "other")
        .args([
            "--",
            &crate::support::example("aws_config_probe")
                .display()
                .to_string(),
        ]);
    let out = output(cmd).await;
    let got = crate::support::stdout_json(&out);
    assert!(
        got["access_key_id"]
            .as_str()
            .expect("key")
            .starts_with("ASIAFAKE")
    );

    // Environment: the two variables set, the conflicting ones gone.
    let mut cmd = sidecar(&stack, "exec");
    cmd.env("AWS_ACCESS_KEY_ID", "AKIASTATICKEY").env("AWS_PROFILE", "other")
        .args(["--", "sh", "-c", "echo \"$AWS_CONTAINER_CREDENTIALS_FULL_URI|${#AWS_CONTAINER_AUTHORIZATION_TOKEN}|${AWS_ACCESS_KEY_ID-unset}|${AWS_PROFILE-unset}\"; exit 3"]);
    let out = output(cmd).await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    let parts: Vec<&str> = line.trim().split('|').collect();
    assert!(
        parts[0].starts_with("http://127.0.0.1:") && parts[0].ends_with("/v1/credentials"),
        "{line}"
    );
    assert_eq!(parts[1], "43", "a fresh 32-byte token");
    assert_eq!(&parts[2..], ["unset", "unset"]);
    // The child's stderr is its own: the sidecar says nothing there but warnings and errors
    // (see: issue #24, INFO lines in the wrapped command's output).
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("INFO"), "{err}");
    let mut cmd = sidecar(&stack, "exec");
    cmd.env("STS_SIDECAR_LOG", "info").args(["--", "true"]);
    let out = output(cmd).await;
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("INFO"),
        "asked for: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Killed by a signal: 128 + signal.
    let mut cmd = sidecar(&stack, "exec");
    cmd.args(["--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(output(cmd).await.status.code(), Some(143));

    // Not found: 127 with a clear message.
    let mut cmd = sidecar(&stack, "exec");
    cmd.args(["--", "/nonexistent/program"]);
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot run /nonexistent/program"));
}

#[tokio::test]
async fn exec_forwards_signals_to_the_child() {
    let stack = Stack::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let started = dir.path().join("started");
    let script = format!(
        "trap 'exit 7' TERM; touch {}; while :; do sleep 0.05; done",
        started.display()
    );
    let mut cmd = sidecar(&stack, "exec");
    cmd.args(["--", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn");
    for _ in 0..200 {
        if started.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(started.exists(), "the child never started");
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill")
            .success()
    );
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().expect("wait"))
        .await
        .expect("join");
    assert_eq!(
        out.status.code(),
        Some(7),
        "the child's trap ran: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn exec_gives_up_clearly_when_credentials_never_come() {
    let stack = Stack::start().await;
    stack.sts.set_reply(StsReply::access_denied());
    let mut cmd = sidecar(&stack, "exec");
    cmd.args(["--ready-timeout", "1", "--", "true"]);
    let started = tokio::time::Instant::now();
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no credentials for role default after 1s") && err.contains("AccessDenied"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

// ---- credential-process

fn process_json(out: &std::process::Output) -> serde_json::Value {
    let json = crate::support::stdout_json(out);
    assert!(out.stdout.len() < 8 * 1024);
    json
}

#[tokio::test]
async fn credential_process_asks_a_running_sidecar() {
    let roles = format!(
        "[[role]]\narn = \"{ROLE_ARN}\"\n\n[[role]]\nalias = \"reports\"\narn = \"arn:aws:iam::210987654321:role/reports\"\n"
    );
    let stack = Stack::with(Options {
        roles_toml: Some(roles),
        ..Options::default()
    })
    .await;
    stack.wait_ready().await;
    let run = |role: Option<&str>, token: &str| {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env(
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                stack.credentials_url(),
            )
            .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", token)
            .arg("credential-process");
        if let Some(role) = role {
            cmd.args(["--role", role]);
        }
        // stdin stays open and unwritten: a helper that read it would hang here.
        cmd.stdin(Stdio::piped());
        cmd
    };
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        output_keep_stdin(run(None, AUTH_TOKEN)),
    )
    .await
    .expect("never reads stdin");
    let json = process_json(&out);
    assert_eq!(json["Version"], 1, "a JSON number");
    let issued = stack.sts.issued();
    let default = issued
        .iter()
        .find(|i| i.access_key_id == json["AccessKeyId"])
        .expect("issued by STS");
    assert_eq!(json["SessionToken"], default.session_token.as_str());
    assert_eq!(json["SecretAccessKey"], default.secret_access_key.as_str());
    assert_eq!(
        json["Expiration"],
        sts_sidecar::clock::format_rfc3339(default.expiration)
    );
    assert_eq!(json["AccountId"], "123456789012");
    assert!(json.get("Token").is_none());

    let reports = process_json(&output_keep_stdin(run(Some("reports"), AUTH_TOKEN)).await);
    assert_eq!(reports["AccountId"], "210987654321");

    let out = output_keep_stdin(run(None, "wrong-token")).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "nothing on stdout on failure");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("answered HTTP 403 InvalidAuthorization"),
        "{err}"
    );
}

async fn output_keep_stdin(mut cmd: Command) -> std::process::Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn");
    tokio::task::spawn_blocking(move || child.wait_with_output().expect("wait"))
        .await
        .expect("join")
}

#[tokio::test]
async fn credential_process_does_the_exchange_itself_without_a_sidecar() {
    let stack = Stack::start().await;
    stack.wait_ready().await;
    let before = stack.sts.calls();
    let json = process_json(&output(sidecar(&stack, "credential-process")).await);
    assert_eq!(stack.sts.calls(), before + 1);
    assert_eq!(
        json["AccessKeyId"],
        stack
            .sts
            .issued()
            .last()
            .expect("issued")
            .access_key_id
            .as_str()
    );

    stack.sts.push_reply(StsReply::access_denied());
    let out = output(sidecar(&stack, "credential-process")).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("AccessDenied"));
}

// ---- check

#[tokio::test]
async fn check_reports_every_step_and_passes() {
    let stack = Stack::start().await;
    let out = output(check(&stack)).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let ids = &stack.pki.ids;
    for needle in [
        format!("OU          organization:{}", ids.org),
        format!("OU          app:{}", ids.app),
        format!("sub         {}", ids.subject()),
        "aud         sts.amazonaws.com".to_owned(),
        "default → arn:aws:sts::123456789012:assumed-role/cf-myorg-myspace/sts-sidecar".to_owned(),
        "auth token        <redacted>".to_owned(),
        "check passed".to_owned(),
    ] {
        assert!(text.contains(&needle), "missing {needle:?} in\n{text}");
    }
    for token in stack.token_service.issued_tokens() {
        assert!(!text.contains(&token), "the identity token was printed");
    }
}

#[tokio::test]
async fn check_says_what_to_fix() {
    let stack = Stack::start().await;
    stack.wait_ready().await;
    let cases = [
        (
            Some(TokenReply::Status(403)),
            None,
            "the token service must trust the Diego instance identity CA",
        ),
        (
            None,
            Some(StsReply::access_denied()),
            "sts:AssumeRoleWithWebIdentity for the federated principal \
             arn:aws:iam::123456789012:oidc-provider/127.0.0.1",
        ),
        (
            None,
            Some(StsReply::Error(
                400,
                "InvalidIdentityToken".into(),
                "Incorrect token audience".into(),
            )),
            "add sts.amazonaws.com to the client IDs",
        ),
    ];
    for (token_reply, sts_reply, fix) in cases {
        if let Some(r) = token_reply {
            stack.token_service.push_reply(r);
        }
        if let Some(r) = sts_reply {
            stack.sts.push_reply(r);
        }
        let out = output(check(&stack)).await;
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(
            text.contains(fix) && text.contains("check failed"),
            "missing {fix:?} in\n{text}"
        );
    }
    let sub_line = format!(":sub = \"{}\"", stack.pki.ids.subject());
    stack.sts.push_reply(StsReply::access_denied());
    let text = String::from_utf8_lossy(&output(check(&stack)).await.stdout).into_owned();
    assert!(
        text.contains(&sub_line),
        "the fix names the token's sub: {text}"
    );
}

#[tokio::test]
async fn check_wait_polls_readiness() {
    let stack = Stack::start().await;
    stack.wait_ready().await;
    let admin = stack.sidecar().admin_addr.to_string();
    let ok = output({
        let mut c = Command::new(BIN);
        c.env_clear()
            .args(["check", "--wait", "5", "--admin-listen", &admin]);
        c
    })
    .await;
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .to_string();
    let started = tokio::time::Instant::now();
    let down = output({
        let mut c = Command::new(BIN);
        c.env_clear()
            .args(["check", "--wait", "1", "--admin-listen", &closed]);
        c
    })
    .await;
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("not ready after 1s"));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn check_wait_reads_the_admin_address_from_the_config_file() {
    // See: issue #10 (check --wait ignored --config).
    let stack = Stack::start().await;
    stack.wait_ready().await;
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\nadmin_listen = \"{}\"\n",
            stack.sidecar().admin_addr
        ),
    )
    .expect("write");
    let out = output({
        let mut c = Command::new(BIN);
        c.env_clear()
            .args(["check", "--wait", "5", "--config"])
            .arg(&file);
        c
    })
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn check_judges_the_authorization_token_serve_would_use() {
    // See: issue #10 (check made up its own token and passed what serve refuses), and issue
    // #24 (the doctor, run as documented with no token, exited 64: it serves nothing).
    let stack = Stack::start().await;
    stack.wait_ready().await;
    let missing = output(sidecar(&stack, "check")).await;
    let text = String::from_utf8_lossy(&missing.stdout);
    assert_eq!(missing.status.code(), Some(0), "{text}");
    assert!(
        text.contains("none configured: serve needs one shared with the app"),
        "{text}"
    );
    // The SDK's token file variable counts, as serve reads it.
    let dir = tempfile::tempdir().expect("tmp");
    let sdk_file = dir.path().join("sdk-token");
    std::fs::write(&sdk_file, "short\n").expect("write");
    let mut cmd = sidecar(&stack, "check");
    cmd.env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", &sdk_file);
    let out = output(cmd).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(&sdk_file.display().to_string()), "{text}");

    let file = dir.path().join("token");
    let mut cmd = sidecar(&stack, "check");
    cmd.arg("--auth-token-file").arg(&file);
    let out = output(cmd).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("does not exist yet: serve creates it"),
        "{text}"
    );
    assert!(!file.exists(), "check must not create the token file");

    std::fs::write(&file, "short\n").expect("write");
    let mut cmd = sidecar(&stack, "check");
    cmd.arg("--auth-token-file").arg(&file);
    let out = output(cmd).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL") && text.contains(&file.display().to_string()),
        "{text}"
    );
}

#[tokio::test]
async fn check_into_a_closed_pipe_ends_quietly() {
    // See: issue #10 (`check | head -1` panicked with exit 134).
    let stack = Stack::start().await;
    stack.wait_ready().await;
    let mut cmd = check(&stack);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let status = tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().expect("spawn");
        // Read nothing: close our end at once, as `head -1` does after its line.
        drop(child.stdout.take());
        let mut err = String::new();
        use std::io::Read as _;
        child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut err)
            .expect("stderr");
        (child.wait().expect("wait"), err)
    })
    .await
    .expect("join");
    let (status, err) = status;
    assert!(matches!(status.code(), Some(0 | 1)), "{status:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[tokio::test]
async fn credential_process_fails_in_one_line_naming_what_is_missing() {
    // See: issue #10 (it asked the sidecar without a token and reported the 403; with no
    // settings it printed several lines). See: issue #17 (configuration errors exit 64, as the
    // README promises, still in one line).
    let out = output({
        let mut c = Command::new(BIN);
        c.env_clear()
            .env(
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://127.0.0.1:9/v1/credentials",
            )
            .arg("credential-process");
        c
    })
    .await;
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "neither AWS_CONTAINER_AUTHORIZATION_TOKEN nor AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"
        ),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(out.stdout.is_empty());

    let out = output({
        let mut c = Command::new(BIN);
        c.env_clear().arg("credential-process");
        c
    })
    .await;
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("invalid configuration") && err.contains("no role ARN"),
        "{err}"
    );
}

#[tokio::test]
async fn check_names_the_sts_endpoint_aws_config_will_use() {
    // See: issue #10 (check printed "(AWS default)" while AWS_ENDPOINT_URL_STS was in use).
    let stack = Stack::start().await;
    stack.wait_ready().await;
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CF_INSTANCE_CERT", stack.pki.cert_path())
        .env("CF_INSTANCE_KEY", stack.pki.key_path())
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", AUTH_TOKEN)
        .env("AWS_ENDPOINT_URL_STS", stack.sts.endpoint())
        .arg("check")
        .args(["--token-service-url", &stack.token_service.url()])
        .args([
            "--token-service-ca",
            &stack.pki.server_ca_path().display().to_string(),
        ])
        .args(["--role-arn", ROLE_ARN]);
    let out = output(cmd).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(&format!(
            "sts endpoint      {} (from AWS_ENDPOINT_URL_STS)",
            stack.sts.endpoint()
        )),
        "{text}"
    );
}

// ---- what a new user tripped over (issue #17)

#[tokio::test]
async fn exec_says_in_words_that_sts_cannot_be_reached() {
    // See: issue #17 (the message ended in `DispatchFailure(... ConnectorError ...)`).
    let stack = Stack::start().await;
    let unused = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed = format!("http://{}", unused.local_addr().expect("addr"));
    drop(unused);
    let mut cmd = sidecar(&stack, "exec");
    cmd.args([
        "--sts-endpoint",
        &closed,
        "--ready-timeout",
        "2",
        "--",
        "true",
    ]);
    let out = output(cmd).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no credentials for role default after 2s")
            && err.contains("cannot reach STS")
            && err.to_lowercase().contains("connection refused"),
        "{err}"
    );
    for debug in ["DispatchFailure", "ConnectorError", "{ ", "Some("] {
        assert!(!err.contains(debug), "a debug dump ({debug}) in: {err}");
    }
}

#[tokio::test]
async fn an_unreadable_key_file_keeps_the_reason() {
    // See: issue #17 (missing and permission denied read the same).
    let stack = Stack::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let missing = dir.path().join("no-such.key");
    let mut cmd = check(&stack);
    cmd.args(["--key-file", &missing.display().to_string()]);
    let out = output(cmd).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "cannot read the private key file {} (from --key-file)",
            missing.display()
        )) && text.contains("No such file or directory"),
        "{text}"
    );
    // A directory where the key should be: another reason, also named.
    let mut cmd = check(&stack);
    cmd.args(["--key-file", &dir.path().display().to_string()]);
    let out = output(cmd).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Is a directory"), "{text}");
}

#[tokio::test]
async fn credential_process_never_sends_the_token_in_clear_to_another_host() {
    // See: issue #17 (it sent the authorization token to a non-loopback http:// host).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let out = output({
        let mut c = Command::new(BIN);
        c.env_clear()
            .env(
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://10.255.255.1:61679/v1/credentials",
            )
            .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", AUTH_TOKEN)
            .arg("credential-process");
        c
    })
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(
        err.contains("would be sent in clear text to 10.255.255.1") && !err.contains(AUTH_TOKEN),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    drop(listener);
}

#[test]
fn check_config_only_judges_the_configuration_as_at_staging() {
    // See: issue #19. At staging there is no instance certificate yet and nothing to call: the
    // buildpack runs `check --config-only` so that a bad setting fails the push, not every start.
    let base = |cmd: &mut Command| {
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "VCAP_APPLICATION",
                r#"{"application_name":"movie-app","organization_name":"org","space_name":"dev"}"#,
            )
            .env(
                "STS_SIDECAR_ROLE_ARN",
                "arn:aws:iam::123456789012:role/cf-{org}-{space}",
            )
            .args([
                "check",
                "--config-only",
                "--auth-token-file",
                "/home/vcap/tmp/token",
            ]);
    };
    let mut ok = Command::new(BIN);
    base(&mut ok);
    let out = ok
        .env(
            "STS_SIDECAR_TOKEN_SERVICE_URL",
            "https://issuer.example.com",
        )
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("arn:aws:iam::123456789012:role/cf-org-dev")
            && text.contains("/etc/cf-instance-credentials/instance.crt")
            && text.contains("configuration ok"),
        "{text}"
    );
    let mut bad = Command::new(BIN);
    base(&mut bad);
    let out = bad
        .env("STS_SIDECAR_TOKEN_SERVICE_UR", "https://issuer.example.com")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(
        err.contains("did you mean STS_SIDECAR_TOKEN_SERVICE_URL?")
            && err.contains("token_service.url: not set"),
        "{err}"
    );
}

#[test]
fn check_config_only_at_staging_looks_for_the_apps_files_where_it_is_staged() {
    // At staging the app is in the build directory, not yet at /home/vcap/app: a CA bundle the
    // app carries is looked for there (a typo fails the push); a file elsewhere may be mounted
    // at run time and is only named.
    let build = tempfile::tempdir().expect("tempdir");
    std::fs::write(build.path().join("ca.pem"), "not checked here").expect("write");
    let run = |ca: &str, app_dir: Option<&std::path::Path>| {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "STS_SIDECAR_ROLE_ARN",
                "arn:aws:iam::123456789012:role/cf-app",
            )
            .env(
                "STS_SIDECAR_TOKEN_SERVICE_URL",
                "https://issuer.example.com",
            )
            .env("STS_SIDECAR_TOKEN_SERVICE_CA", ca)
            .args(["check", "--config-only", "--auth-token-file", "/tmp/t"]);
        if let Some(dir) = app_dir {
            cmd.arg("--app-dir").arg(dir);
        }
        let out = cmd.output().expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run("/home/vcap/app/ca.pem", Some(build.path()));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(!out.contains("warning"), "{out}");
    let (code, _, err) = run("/home/vcap/app/ca.pme", Some(build.path()));
    assert_eq!(code, Some(64), "{err}");
    assert!(
        err.contains("token-service.ca_file: /home/vcap/app/ca.pme does not exist"),
        "{err}"
    );
    let (code, out, err) = run("/var/vcap/data/volume/ca.pem", Some(build.path()));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("warning")
            && out.contains("/var/vcap/data/volume/ca.pem does not exist")
            && out.contains("must be there when the app runs"),
        "{out}"
    );
    // Without --app-dir (a user's own check) every file must be there.
    let (code, _, err) = run("/home/vcap/app/ca.pem", None);
    assert_eq!(code, Some(64), "{err}");
}

#[test]
fn gcp_credentials_writes_a_url_sourced_external_account_configuration() {
    // See: issue #25. What Google's auth libraries read from GOOGLE_APPLICATION_CREDENTIALS:
    // the sidecar's identity-token URL for the provider's audience, its authorization token in
    // the headers (so the file is written 0600), Google's STS, and the impersonation URL.
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tmp");
    let token = dir.path().join("token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").expect("token");
    let out = dir.path().join("gcp.json");
    let run = Command::new(BIN)
        .env_clear()
        .args([
            "gcp-credentials",
            "--project-number",
            "123456789012",
            "--pool",
            "cf-apps",
        ])
        .args(["--provider", "sts-sidecar", "--listen", "127.0.0.1:7001"])
        .args(["--service-account", "app@p.iam.gserviceaccount.com"])
        .arg("--auth-token-file")
        .arg(&token)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{err}");
    let aud = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/cf-apps/providers/sts-sidecar";
    assert!(err.contains(&format!("--token-audience {aud}")), "{err}");
    assert_eq!(
        std::fs::metadata(&out).expect("file").permissions().mode() & 0o777,
        0o600
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("read")).expect("json");
    assert_eq!(doc["type"], "external_account");
    assert_eq!(doc["audience"], aud);
    assert_eq!(
        doc["subject_token_type"],
        "urn:ietf:params:oauth:token-type:jwt"
    );
    assert_eq!(doc["token_url"], "https://sts.googleapis.com/v1/token");
    let source = &doc["credential_source"];
    assert_eq!(
        source["url"],
        format!(
            "http://127.0.0.1:7001/v1/identity-token?audience={}",
            aud.replace('/', "%2F")
        )
    );
    assert_eq!(
        source["headers"]["Authorization"],
        "0123456789abcdef0123456789abcdef"
    );
    assert_eq!(source["format"]["subject_token_field_name"], "token");
    assert_eq!(
        doc["service_account_impersonation_url"],
        "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/app@p.iam.gserviceaccount.com:generateAccessToken"
    );
    // Every wrong argument is named at once, and nothing is written.
    let bad = Command::new(BIN)
        .env_clear()
        .args([
            "gcp-credentials",
            "--project-number",
            "my-project",
            "--pool",
            "P",
        ])
        .args([
            "--provider",
            "x",
            "--google-token-url",
            "http://sts.example.com/v1/token",
        ])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(64), "{err}");
    for needle in [
        "--project-number: must be the project's number",
        "--pool: must be an id of 4-32 characters",
        "--provider: must be an id",
        "--google-token-url: must be an https:// URL",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in {err}");
    }
}

#[tokio::test]
async fn exec_gives_the_child_a_google_cloud_configuration_that_points_back_at_it() {
    // See: issue #25. GOOGLE_APPLICATION_CREDENTIALS for the child: exec's own server and token,
    // the provider's audience (which exec serves), in a file only this user can read, gone
    // when the child ends.
    let stack = Stack::start().await;
    let mut cmd = sidecar(&stack, "exec");
    cmd.args(["--gcp-project-number", "123456789012", "--gcp-pool", "cf-apps"])
        .args(["--gcp-provider", "sts-sidecar"])
        .args([
            "--",
            "sh",
            "-c",
            "cat \"$GOOGLE_APPLICATION_CREDENTIALS\"; echo \"|$AWS_CONTAINER_CREDENTIALS_FULL_URI|$AWS_CONTAINER_AUTHORIZATION_TOKEN|$GOOGLE_APPLICATION_CREDENTIALS|$(stat -c %a \"$GOOGLE_APPLICATION_CREDENTIALS\")\"",
        ]);
    let out = output(cmd).await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (json, tail) = text
        .rsplit_once('|')
        .map(|_| text.split_at(text.find("\n|").expect("marker")))
        .expect("output");
    let fields: Vec<&str> = tail.trim().trim_start_matches('|').split('|').collect();
    let (uri, token, path, mode) = (fields[0], fields[1], fields[2], fields[3]);
    let doc: serde_json::Value = serde_json::from_str(json).expect("json");
    let server = uri.trim_end_matches("/v1/credentials");
    assert!(
        doc["credential_source"]["url"]
            .as_str()
            .unwrap_or("")
            .starts_with(&format!("{server}/v1/identity-token?audience=%2F%2Fiam.googleapis.com%2Fprojects%2F123456789012")),
        "{doc}"
    );
    assert_eq!(doc["credential_source"]["headers"]["Authorization"], token);
    assert_eq!(mode, "600");
    assert!(
        !std::path::Path::new(path).exists(),
        "the file outlived the child"
    );

    // The Google flags are checked like gcp-credentials', named as exec's.
    let mut cmd = sidecar(&stack, "exec");
    cmd.args([
        "--gcp-project-number",
        "my-project",
        "--gcp-pool",
        "cf-apps",
    ])
    .args(["--gcp-provider", "sts-sidecar", "--", "true"]);
    let out = output(cmd).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(
        err.contains("--gcp-project-number: must be the project's number"),
        "{err}"
    );
}
