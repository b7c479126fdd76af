//! The real binary: `--help`, exit codes for configuration and bind errors, and clean exits on
//! SIGTERM and SIGINT.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{AUTH_TOKEN, Stack};

const BIN: &str = env!("CARGO_BIN_EXE_sts-sidecar");

fn command() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear();
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    cmd
}

#[test]
fn help_teaches_the_flags_and_exits_zero() {
    let out = command().args(["serve", "--help"]).output().expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--admin-listen",
        "--token-service-url",
        "--token-service-ca",
        "--role-arn",
        "--role-session-name",
        "--duration",
        "--auth-token-file",
        "--config",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ] {
        assert!(text.contains(flag), "{flag} missing from serve --help");
    }
    let out = command().arg("--version").output().expect("run");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn configuration_errors_exit_64_listing_every_problem() {
    let out = command()
        .args(["serve", "--duration", "60"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "--duration: must be a whole number from 900 to 43200",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        "CF_INSTANCE_CERT",
        "token_service.url",
        "no role ARN",
    ] {
        assert!(err.contains(needle), "{needle} missing:\n{err}");
    }
    let out = command().args(["serve", "--bogus"]).output().expect("run");
    assert_eq!(out.status.code(), Some(64));
}

async fn spawn_serve(
    stack: &Stack,
    listen: &str,
    extra_env: &[(&str, &str)],
) -> std::process::Child {
    spawn_serve_via(stack, listen, &stack.sts.endpoint(), extra_env).await
}

async fn spawn_serve_via(
    stack: &Stack,
    listen: &str,
    sts_endpoint: &str,
    extra_env: &[(&str, &str)],
) -> std::process::Child {
    let config = stack.config();
    let mut cmd = command();
    cmd.args(["serve", "--listen", listen, "--admin-listen", "127.0.0.1:0"])
        .args(["--token-service-url", &config.token_service.url])
        .args([
            "--token-service-ca",
            &stack.pki.server_ca_path().display().to_string(),
        ])
        .args(["--role-arn", "arn:aws:iam::123456789012:role/cli"])
        .args(["--sts-endpoint", sts_endpoint])
        .env("CF_INSTANCE_CERT", stack.pki.cert_path())
        .env("CF_INSTANCE_KEY", stack.pki.key_path())
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", AUTH_TOKEN)
        .env("STS_SIDECAR_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn")
}

async fn wait_exit(child: std::process::Child) -> (Option<i32>, String) {
    tokio::task::spawn_blocking(move || {
        let out = child.wait_with_output().expect("wait");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .expect("join")
}

#[tokio::test]
async fn a_listen_address_in_use_exits_1_naming_it() {
    let stack = Stack::start().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let child = spawn_serve(&stack, &addr, &[]).await;
    let (code, err) = wait_exit(child).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot listen on {addr} (server.listen)")),
        "{err}"
    );
}

#[tokio::test]
async fn sigterm_and_sigint_stop_the_server_cleanly() {
    for (signal, drain) in [("-TERM", "1"), ("-INT", "30")] {
        let stack = Stack::start().await;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let listen = format!("127.0.0.1:{port}");
        let child = spawn_serve(&stack, &listen, &[("STS_SIDECAR_DRAIN_SECS", drain)]).await;
        let url = format!("http://{listen}/v1/credentials");
        let mut ok = false;
        for _ in 0..100 {
            if let Ok(r) = stack
                .http
                .get(&url)
                .header("authorization", AUTH_TOKEN)
                .send()
                .await
                && r.status() == 200
            {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ok, "the binary never served credentials");
        let pid = child.id().to_string();
        let started = tokio::time::Instant::now();
        assert!(
            Command::new("kill")
                .args([signal, &pid])
                .status()
                .expect("kill")
                .success()
        );
        let (code, err) = wait_exit(child).await;
        assert_eq!(code, Some(0), "{signal}: {err}");
        assert!(err.contains("\"stopped\""), "{signal}: {err}");
        assert!(
            err.contains("sts-sidecar serving") && err.contains(&listen),
            "startup line: {err}"
        );
        // SIGTERM drains (1 s here); SIGINT does not wait for the 30 s drain.
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{signal} took {:?}",
            started.elapsed()
        );
    }
}

async fn first_status(stack: &Stack, listen: &str) -> u16 {
    // Each 503 takes the 1.5 s cold-start grace, so bound the polling by time, not count.
    let url = format!("http://{listen}/v1/credentials");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut last = 0;
    while tokio::time::Instant::now() < deadline {
        if let Ok(r) = stack
            .http
            .get(&url)
            .header("authorization", AUTH_TOKEN)
            .send()
            .await
        {
            last = r.status().as_u16();
            if last != 503 {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

/// Runs `serve` on a free port until its first non-503 answer, then stops it with SIGINT;
/// returns that answer's status and everything the binary logged.
async fn first_answer(
    stack: &Stack,
    sts_endpoint: &str,
    extra_env: &[(&str, &str)],
) -> (u16, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let child = spawn_serve_via(stack, &listen, sts_endpoint, extra_env).await;
    let status = first_status(stack, &listen).await;
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let (_, err) = wait_exit(child).await;
    (status, err)
}

#[tokio::test]
async fn sts_calls_go_through_http_proxy_when_set() {
    let stack = Stack::start().await;
    stack.wait_ready().await;
    let calls_before = stack.sts.calls();
    // Nothing listens at the STS endpoint itself; only the "proxy" (the fake STS) can answer.
    let (status, err) = first_answer(
        &stack,
        "http://127.0.0.2:9",
        &[("HTTP_PROXY", &stack.sts.endpoint())],
    )
    .await;
    assert_eq!(status, 200, "{err}");
    assert_eq!(stack.sts.calls(), calls_before + 1);
}

#[tokio::test]
async fn turning_on_imdsv1_is_warned_about_at_startup() {
    let stack = Stack::start().await;
    let env = [
        ("STS_SIDECAR_IMDS", "true"),
        ("STS_SIDECAR_IMDS_V1", "true"),
    ];
    let (status, err) = first_answer(&stack, &stack.sts.endpoint(), &env).await;
    assert_eq!(status, 200, "{err}");
    assert!(
        err.contains("IMDSv1 is on") && err.contains("\"level\":\"WARN\""),
        "{err}"
    );
    assert!(
        err.contains("\"imds\":true"),
        "the startup line says IMDS is on: {err}"
    );
}
