//! `sts-sidecar issuer` in process: every proof, every forgery refused for its own reason, the
//! claims and keys relying parties read, budgets and limits, key files and reloads, a rotation
//! across two instances, the keys published as static files, and the sidecar's token-service
//! source getting credentials through it from an STS that verifies by discovery.

mod binary;
mod forgeries;
mod keys;
mod limits;
mod proofs;
mod publish;
mod rotation;
mod sidecar;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rustls_pki_types::pem::PemObject as _;
use sts_sidecar::issuer::{self, Accept, Issuer, KeySource, Running, Settings};
use sts_sidecar::jws;
use sts_sidecar::testing::pki::{CfIds, InstanceIdentity, KeyKind, TestPki};
use tokio::net::TcpListener;

pub const DAY: Duration = Duration::from_secs(86_400);

/// A Diego-shaped PKI, an issuer's keys and files, and a running issuer.
pub struct World {
    pub pki: TestPki,
    pub dir: tempfile::TempDir,
    pub victim: InstanceIdentity,
    pub signing_key: PathBuf,
    pub running: Option<Running>,
    /// Sends a forced reload (SIGHUP); kept so that the reload task keeps listening.
    pub reload: Option<tokio::sync::mpsc::Sender<()>>,
    pub url: String,
    pub http: reqwest::Client,
}

/// How to run the issuer: the test's changes to the defaults of `testing::issuer_settings`.
#[derive(Clone)]
pub struct Setup {
    pub accept: Accept,
    pub tls: bool,
    pub signing: &'static rcgen::SignatureAlgorithm,
    pub change: fn(&mut Settings),
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            accept: Accept::default(),
            tls: false,
            signing: &rcgen::PKCS_ECDSA_P256_SHA256,
            change: |_| {},
        }
    }
}

pub fn key_pem(alg: &'static rcgen::SignatureAlgorithm) -> String {
    rcgen::KeyPair::generate_for(alg)
        .expect("key")
        .serialize_pem()
}

impl World {
    pub async fn new(setup: Setup) -> World {
        Self::with_pki(TestPki::new().expect("pki"), setup).await
    }

    pub async fn with_pki(pki: TestPki, setup: Setup) -> World {
        let victim = pki.issue(KeyKind::EcPkcs8, DAY).expect("victim identity");
        let dir = tempfile::tempdir().expect("tmp");
        let signing_key = dir.path().join("signing.pem");
        std::fs::write(&signing_key, key_pem(setup.signing)).expect("key");
        let mut world = World {
            pki,
            dir,
            victim,
            signing_key,
            running: None,
            reload: None,
            url: String::new(),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
        };
        world.start(setup).await;
        world
    }

    pub fn settings(&self, setup: &Setup, url: &str) -> Settings {
        let mut s = sts_sidecar::testing::issuer_settings(
            url,
            self.pki.write_ca_bundle().expect("ca"),
            self.signing_key.clone(),
        );
        s.accept = setup.accept.clone();
        s.tls = setup.tls.then(|| {
            let cert = self.dir.path().join("tls.crt");
            let key = self.dir.path().join("tls.key");
            std::fs::write(&cert, self.pki.server_cert_pem()).expect("cert");
            std::fs::write(&key, self.pki.server_key_pem().expect("key pem")).expect("key");
            (KeySource::File(cert), KeySource::File(key))
        });
        (setup.change)(&mut s);
        s
    }

    pub async fn start(&mut self, setup: Setup) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let scheme = if setup.tls { "https" } else { "http" };
        self.url = format!("{scheme}://127.0.0.1:{port}");
        let settings = self.settings(&setup, &self.url);
        let issuer = Arc::new(Issuer::new(settings).expect("issuer"));
        let (reload, rx) = tokio::sync::mpsc::channel(1);
        self.reload = Some(reload);
        self.running = Some(issuer::start(issuer, listener, admin, rx).expect("start"));
    }

    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }

    pub fn issuer(&self) -> &Issuer {
        &self.running.as_ref().expect("running").issuer
    }

    /// An assertion by `identity` with these claims, signed with `key_pem`.
    pub fn assertion_with(
        &self,
        identity: &InstanceIdentity,
        key_pem: &str,
        claims: serde_json::Value,
    ) -> String {
        let signer = jws::Signer::from_pem(key_pem.as_bytes()).expect("signer");
        signer
            .sign(
                serde_json::json!({"typ": "JWT", "x5c": x5c(identity)}),
                &claims,
            )
            .expect("sign")
    }

    /// A valid assertion by `identity` (its own key, fresh times, a new jti).
    pub fn assertion(&self, identity: &InstanceIdentity, ids: &CfIds) -> String {
        self.assertion_with(identity, &identity.key_pem, claims(ids, &self.url, 0, 120))
    }

    pub async fn post(&self, form: &[(&str, &str)], headers: &[(&str, String)]) -> (u16, String) {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut req = self
            .http
            .post(format!("{}/token", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let r = req.send().await.expect("post");
        let status = r.status().as_u16();
        (status, r.text().await.expect("body"))
    }

    pub async fn token_with_assertion(&self, assertion: &str) -> (u16, String) {
        self.post(
            &[
                ("grant_type", issuer::GRANT_JWT_BEARER),
                ("assertion", assertion),
            ],
            &[],
        )
        .await
    }

    pub async fn token_for_audience(&self, assertion: &str, audience: &str) -> (u16, String) {
        self.post(
            &[
                ("grant_type", issuer::GRANT_JWT_BEARER),
                ("assertion", assertion),
                ("audience", audience),
            ],
            &[],
        )
        .await
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("get")
    }

    pub async fn metrics(&self) -> String {
        let admin = self.running.as_ref().expect("running").admin_addr;
        self.http
            .get(format!("http://{admin}/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// The value of a counter or gauge, by its whole name with labels (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        metric_in(&self.metrics().await, name)
    }

    /// An in-process sidecar with this world's instance identity installed, whose token service
    /// is `token_url` and whose STS is `sts`, started with its credentials (or panicking with
    /// its status after 10 s).
    pub async fn sidecar(&self, token_url: &str, sts: &str) -> sts_sidecar::app::Sidecar {
        self.sidecar_with(token_url, sts, "").await
    }

    /// [`World::sidecar`] with more of the config file (`extra`, appended).
    pub async fn sidecar_with(
        &self,
        token_url: &str,
        sts: &str,
        extra: &str,
    ) -> sts_sidecar::app::Sidecar {
        self.pki.install(&self.victim).expect("install");
        let toml = format!(
            r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[identity]
cert_file = "{cert}"
key_file = "{key}"
[token_service]
url = "{token_url}"
ca_file = "{ca}"
[sts]
endpoint = "{sts}"
[[role]]
arn = "arn:aws:iam::123456789012:role/through-the-issuer"
{extra}
"#,
            cert = self.pki.cert_path().display(),
            key = self.pki.key_path().display(),
            ca = self.pki.server_ca_path().display(),
        );
        let env: std::collections::HashMap<String, String> = [(
            "AWS_CONTAINER_AUTHORIZATION_TOKEN".to_owned(),
            "issuer-test-authorization-token-0123".to_owned(),
        )]
        .into_iter()
        .collect();
        let config = sts_sidecar::config::Config::parse(
            Some((&toml, "issuer.toml")),
            &sts_sidecar::config::Overrides::default(),
            &env,
        )
        .expect("config");
        let auth = sts_sidecar::app::auth(&config).expect("auth");
        let sidecar = sts_sidecar::app::start(
            &config,
            auth,
            TcpListener::bind("127.0.0.1:0").await.expect("bind"),
            TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        )
        .await
        .expect("start");
        let handle = sidecar.roles.default_role().clone();
        assert!(
            handle.wait_usable(Duration::from_secs(10)).await.is_some(),
            "{:?}",
            handle.status()
        );
        sidecar
    }

    /// How many requests were refused for `reason`.
    pub async fn refused(&self, reason: &str) -> f64 {
        self.metric(&format!(
            "sts_sidecar_issuer_refusals_total{{reason=\"{reason}\"}}"
        ))
        .await
    }
}

/// The value of `name` (with its labels) in Prometheus text, 0 when absent.
pub fn metric_in(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The chain of `identity` as `x5c` wants it.
pub fn x5c(identity: &InstanceIdentity) -> Vec<String> {
    rustls_pki_types::CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
        .map(|c| base64::engine::general_purpose::STANDARD.encode(c.expect("cert")))
        .collect()
}

/// Assertion claims for `ids` at `aud`, issued `iat_offset` seconds from now, valid for
/// `lifetime` seconds, with a fresh jti.
pub fn claims(ids: &CfIds, aud: &str, iat_offset: i64, lifetime: i64) -> serde_json::Value {
    let now = sts_sidecar::clock::now_unix() + iat_offset;
    serde_json::json!({
        "iss": ids.instance,
        "sub": ids.instance,
        "aud": aud,
        "iat": now,
        "exp": now + lifetime,
        "jti": jws::b64url(&rand_bytes()),
    })
}

pub fn rand_bytes() -> [u8; 16] {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).expect("rng");
    b
}

pub fn error_of(body: &str) -> (String, String) {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    (
        v["error"].as_str().unwrap_or("").to_owned(),
        v["error_description"].as_str().unwrap_or("").to_owned(),
    )
}

/// The JWT's header and claims.
pub fn decode(token: &str) -> (serde_json::Value, serde_json::Value) {
    let parts = jws::parse(token).expect("jws");
    (
        serde_json::Value::Object(parts.header),
        serde_json::Value::Object(parts.claims),
    )
}

pub trait JsonValue {
    async fn json_value(self) -> serde_json::Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> serde_json::Value {
        let bytes = self.bytes().await.expect("body");
        serde_json::from_slice(&bytes).expect("json")
    }
}
