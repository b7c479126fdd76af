//! The issuer as its users run it: the README's Cloud Foundry recipe (the signing key in a
//! variable, the port from `PORT`), and exit 64 on a configuration or key material error.

use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use sts_sidecar::jws;
use sts_sidecar::testing::pki::TestPki;

use super::key_pem;

const BIN: &str = env!("CARGO_BIN_EXE_sts-sidecar");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn the_cloud_foundry_recipe_serves_the_key_from_a_variable_on_port() {
    let pki = TestPki::new().unwrap();
    let ca = pki.write_ca_bundle().unwrap();
    let key = key_pem(&rcgen::PKCS_ECDSA_P256_SHA256);
    let kid = jws::PublicKey::from_pem(key.as_bytes())
        .unwrap()
        .kid()
        .to_owned();
    let (port, admin) = (free_port(), free_port());
    let mut child = Command::new(BIN)
        .args([
            "issuer",
            "--issuer-url",
            "https://token-issuer.apps.example.com",
        ])
        .arg("--instance-identity-ca")
        .arg(&ca)
        .args(["--signing-key", "env:ISSUER_SIGNING_KEY"])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .env_clear()
        .env("PORT", port.to_string())
        .env("ISSUER_SIGNING_KEY", &key)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut jwks = None;
    for _ in 0..200 {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/token_keys"))
            .send()
            .await
        {
            jwks = Some(r.json::<serde_json::Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let jwks = jwks.expect("the issuer listened on $PORT");
    assert_eq!(jwks["keys"][0]["kid"], kid);
    let health = http
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = tokio::task::spawn_blocking(move || {
        let status = child.wait().unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        (status, err)
    })
    .await
    .unwrap();
    assert_eq!(out.0.code(), Some(0), "{}", out.1);
    assert!(
        !out.1.contains("BEGIN"),
        "the key never reaches the log: {}",
        out.1
    );
}

#[test]
fn a_configuration_or_key_file_error_exits_64_naming_it() {
    let out = Command::new(BIN)
        .args(["issuer", "--lifetime", "10"])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in ["--issuer-url", "--signing-key", "--lifetime"] {
        assert!(err.contains(want), "{err}");
    }
    let pki = TestPki::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signing.pem");
    std::fs::write(&key, key_pem(&rcgen::PKCS_ECDSA_P256_SHA256)).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = Command::new(BIN)
        .args(["issuer", "--issuer-url", "https://i.example.com"])
        .arg("--instance-identity-ca")
        .arg(pki.write_ca_bundle().unwrap())
        .arg("--signing-key")
        .arg(&key)
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&key.display().to_string()) && err.contains("mode 0666"),
        "{err}"
    );
}
