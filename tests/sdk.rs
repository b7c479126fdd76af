//! The real Rust SDK container credentials provider (aws-config), run as a child process with
//! only the standard variables set, gets credentials from the running server.

use std::process::Command;

use crate::support::{AUTH_TOKEN, Stack};

fn run_probe(vars: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(crate::support::example("aws_config_probe"));
    cmd.env_clear();
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    cmd.env("HOME", std::env::temp_dir());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.output().expect("run probe")
}

#[tokio::test]
async fn aws_config_reads_credentials_with_the_env_token() {
    let stack = Stack::start().await;
    stack.wait_ready().await;
    let url = stack.credentials_url();
    let out = tokio::task::spawn_blocking(move || {
        run_probe(&[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &url),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", AUTH_TOKEN),
        ])
    })
    .await
    .expect("join");
    let got = crate::support::stdout_json(&out);
    let issued = &stack.sts.issued()[0];
    assert_eq!(got["access_key_id"], issued.access_key_id.as_str());
    assert_eq!(got["has_secret"], true);
    assert_eq!(got["has_session_token"], true);
    assert_eq!(got["expiry_unix"], issued.expiration);
    assert_eq!(got["account_id"], "123456789012");
}

#[tokio::test]
async fn aws_config_reads_credentials_with_a_token_file() {
    let stack = Stack::start().await;
    stack.wait_ready().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("token");
    std::fs::write(&file, AUTH_TOKEN).expect("write");
    let url = stack.credentials_url();
    let file_s = file.display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        run_probe(&[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &url),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", &file_s),
        ])
    })
    .await
    .expect("join");
    let got = crate::support::stdout_json(&out);
    assert_eq!(
        got["access_key_id"],
        stack.sts.issued()[0].access_key_id.as_str()
    );
}

#[tokio::test]
async fn aws_config_fails_clearly_with_a_wrong_token() {
    let stack = Stack::start().await;
    stack.wait_ready().await;
    let url = stack.credentials_url();
    let out = tokio::task::spawn_blocking(move || {
        run_probe(&[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &url),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "not-the-token"),
        ])
    })
    .await
    .expect("join");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("403")
            || stderr.to_lowercase().contains("forbidden")
            || stderr.contains("InvalidAuthorization"),
        "{stderr}"
    );
}
