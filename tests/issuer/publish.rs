//! The keys published as static files and served by a plain static server (Python's
//! `http.server`), while the token endpoint is reached at another URL: STS verifies the token
//! by discovery at the static host, and the sidecar's assertions name the token URL.

use std::io::BufRead as _;

use sts_sidecar::issuer::KeySource;
use sts_sidecar::testing::fake_sts::FakeSts;
use tokio::net::TcpListener;

use super::{JsonValue as _, Setup, World, error_of, key_pem};

const BIN: &str = env!("CARGO_BIN_EXE_sts-sidecar");

/// `python3 -m http.server` on a free loopback port, serving `dir`; its URL.
struct StaticServer {
    child: std::process::Child,
    url: String,
}

impl StaticServer {
    fn start(dir: &std::path::Path) -> StaticServer {
        let mut child = std::process::Command::new("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 (the test suite needs it)");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("its first line");
        // "Serving HTTP on 127.0.0.1 port 40123 (http://127.0.0.1:40123/) ..."
        let port = line
            .split("port ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        StaticServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn keys_on_a_static_host_and_the_token_endpoint_elsewhere() {
    let site = tempfile::tempdir().unwrap();
    let keys = StaticServer::start(site.path());
    let keys_url = keys.url.clone();
    // The World gives the PKI, the keys and the helpers.
    let world = World::new(Setup {
        tls: true,
        ..Setup::default()
    })
    .await;
    let mut settings = world.settings(
        &Setup {
            tls: true,
            ..Setup::default()
        },
        &keys_url,
    );
    let next = world.dir.path().join("next.pem");
    std::fs::write(&next, key_pem(&rcgen::PKCS_ECDSA_P256_SHA256)).unwrap();
    settings.publish_keys = vec![KeySource::File(next.clone())];
    // The split issuer: its own port, its iss the static host.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let token_url = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    settings.token_urls = vec![token_url.clone()];
    let issuer = std::sync::Arc::new(sts_sidecar::issuer::Issuer::new(settings.clone()).unwrap());
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (_sighup, rx) = tokio::sync::mpsc::channel(1);
    let running = sts_sidecar::issuer::start(issuer, listener, admin, rx).unwrap();

    // `issuer publish`, the real binary, with the same flags.
    let out = std::process::Command::new(BIN)
        .args(["issuer", "publish", "--out"])
        .arg(site.path())
        .args(["--issuer-url", &keys_url, "--signing-key"])
        .arg(&world.signing_key)
        .arg("--publish-key")
        .arg(&next)
        .env_clear()
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8_lossy(&out.stdout);
    for file in [
        ".well-known/openid-configuration",
        "token_keys",
        ".well-known/jwks.json",
    ] {
        assert!(listed.contains(file), "{listed}");
    }
    // What the static host serves is what the issuer serves.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let served = http
        .get(format!("{keys_url}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(served["issuer"], keys_url);
    assert_eq!(served["jwks_uri"], format!("{keys_url}/token_keys"));
    let jwks = http
        .get(format!("{keys_url}/token_keys"))
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(
        serde_json::to_vec(&jwks).unwrap(),
        serde_json::to_vec(
            &serde_json::from_slice::<serde_json::Value>(&running.issuer.documents().jwks).unwrap()
        )
        .unwrap()
    );
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);

    // STS trusts the static host; the sidecar reaches the token endpoint.
    let sts = FakeSts::start(None).await.unwrap();
    sts.trust_issuer(&keys_url, None).unwrap();
    let app = world.sidecar(&token_url, &sts.endpoint()).await;
    assert_eq!(sts.seen()[0].subject, world.pki.ids.subject());
    app.shutdown().await;

    // An assertion for a URL the issuer does not answer to is refused, naming the ones it does.
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", sts_sidecar::issuer::GRANT_JWT_BEARER)
        .append_pair("assertion", &world.assertion(&world.victim, &world.pki.ids))
        .finish();
    let ca = reqwest::Certificate::from_pem(
        std::fs::read_to_string(world.pki.server_ca_path())
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    let tls_http = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_merge([ca])
        .build()
        .unwrap();
    let r = tls_http
        .post(format!("{token_url}/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (_, why) = error_of(&r.text().await.unwrap());
    assert!(why.contains(&keys_url) && why.contains(&token_url), "{why}");
    running.shutdown().await;
}
