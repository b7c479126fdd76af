//! Starts a whole stack in-process: a Diego-shaped PKI, the fake token service (mTLS), the fake
//! STS, and sts-sidecar configured through its real config parser.

use std::collections::HashMap;
use std::time::Duration;

use sts_sidecar::app::{self, Sidecar};
use sts_sidecar::config::{Config, Overrides};
use sts_sidecar::testing::fake_sts::FakeSts;
use sts_sidecar::testing::fake_token_service::FakeTokenService;
use sts_sidecar::testing::pki::{KeyKind, TestPki};
use tokio::net::TcpListener;

pub const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/cf-myorg-myspace";
pub const AUTH_TOKEN: &str = "test-authorization-token-0123456789abcdef";

/// An example binary built next to this test binary by `cargo test` (e.g. `aws_config_probe`).
pub fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} missing: run `cargo test` (it builds examples)",
        path.display()
    );
    path
}

/// The default role's token source, as the refresher would build it from `config` (fresh
/// cache, own metrics).
pub fn token_source_for(config: &Config) -> sts_sidecar::token::TokenSource {
    use sts_sidecar::token::{Source, TokenSource};
    let name = config.roles[0].source().expect("a web-identity role");
    let settings = &config
        .source(name)
        .expect("the default role's source")
        .settings;
    TokenSource::new(
        name,
        Source::new(settings).expect("source"),
        std::sync::Arc::new(sts_sidecar::metrics::Metrics::new()),
    )
}

/// The token-service settings of `config` (the stack's only source).
pub fn token_service(config: &Config) -> &sts_sidecar::token::token_service::Settings {
    match config.sources.iter().map(|s| &s.settings).next() {
        Some(sts_sidecar::token::Settings::TokenService(s)) => s,
        _ => panic!("the stack's config has no token-service source"),
    }
}

pub struct Stack {
    pub pki: TestPki,
    pub token_service: FakeTokenService,
    pub sts: FakeSts,
    pub sidecar: Option<Sidecar>,
    pub env: HashMap<String, String>,
    pub http: reqwest::Client,
    options_toml: Option<(String, String, String)>,
}

/// How to set up a stack.
pub struct Options {
    /// Extra TOML appended to the generated file (e.g. more `[[role]]`s).
    pub extra_toml: String,
    /// Replaces the `[[role]]` section.
    pub roles_toml: Option<String>,
    /// Extra `[server]` keys.
    pub server_toml: String,
    /// Environment for the config parser.
    pub env: Vec<(&'static str, String)>,
    /// Start the sidecar right away.
    pub start: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            extra_toml: String::new(),
            roles_toml: None,
            server_toml: String::new(),
            env: vec![("AWS_CONTAINER_AUTHORIZATION_TOKEN", AUTH_TOKEN.to_owned())],
            start: true,
        }
    }
}

impl Stack {
    pub async fn start() -> Stack {
        Stack::with(Options::default()).await
    }

    pub async fn with(options: Options) -> Stack {
        let pki = TestPki::new().expect("pki");
        pki.install(
            &pki.issue(KeyKind::RsaPkcs1, Duration::from_secs(24 * 3600))
                .expect("issue"),
        )
        .expect("install");
        let token_service = FakeTokenService::start(&pki).await.expect("token service");
        let sts = FakeSts::start(Some(token_service.public_key_der()))
            .await
            .expect("sts");
        let env: HashMap<String, String> = options
            .env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let mut stack = Stack {
            pki,
            token_service,
            sts,
            sidecar: None,
            env,
            http,
            options_toml: None,
        };
        stack.options_toml = Some(options_toml(&options));
        if options.start {
            stack.start_sidecar().await;
        }
        stack
    }

    pub fn toml(&self) -> String {
        let o = self.options_toml.clone().unwrap_or_default();
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
{server}

[identity]
cert_file = "{cert}"
key_file = "{key}"

[token_service]
url = "{ts}"
ca_file = "{ca}"
timeout_secs = 3

[sts]
region = "eu-central-1"
endpoint = "{sts}"
timeout_secs = 3

{roles}
{extra}
"#,
            server = o.0,
            cert = self.pki.cert_path().display(),
            key = self.pki.key_path().display(),
            ts = self.token_service.url(),
            ca = self.pki.server_ca_path().display(),
            sts = self.sts.endpoint(),
            roles = o.1,
            extra = o.2,
        )
    }

    pub fn config(&self) -> Config {
        Self::config_from(&self.toml(), &self.env)
    }

    /// Parses `toml` (a variant of [`Stack::toml`]) with `env` through the real parser.
    pub fn config_from(toml: &str, env: &HashMap<String, String>) -> Config {
        Config::parse(Some((toml, "test.toml")), &Overrides::default(), env)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub async fn start_sidecar(&mut self) {
        let config = self.config();
        let auth = app::auth(&config).expect("auth");
        let creds = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        self.sidecar = Some(
            app::start(&config, auth, creds, admin)
                .await
                .expect("start"),
        );
    }

    pub fn sidecar(&self) -> &Sidecar {
        self.sidecar.as_ref().expect("sidecar started")
    }

    pub fn credentials_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/v1/credentials",
            self.sidecar().credentials_addr.port()
        )
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!(
            "http://127.0.0.1:{}{path}",
            self.sidecar().admin_addr.port()
        )
    }

    /// GET the default role's credentials with the right token.
    pub async fn get_credentials(&self) -> Reply {
        self.get(&self.credentials_url(), &[("authorization", AUTH_TOKEN)])
            .await
    }

    pub async fn get(&self, url: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = self.http.get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await.expect("body");
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Waits (in tokio time) until the sidecar reports ready.
    pub async fn wait_ready(&self) {
        for _ in 0..200 {
            if self.sidecar().admin.is_ready() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "sidecar never became ready: {}",
            self.get(&self.admin_url("/status"), &[]).await.body
        );
    }
}

fn options_toml(o: &Options) -> (String, String, String) {
    let roles = o.roles_toml.clone().unwrap_or_else(|| {
        format!("[[role]]\narn = \"{ROLE_ARN}\"\nsession_name = \"my-app-0\"\n")
    });
    (o.server_toml.clone(), roles, o.extra_toml.clone())
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A `tracing` writer that keeps everything written, for tests that read the logs.
#[derive(Clone, Default)]
pub struct CapturedLogs(pub std::sync::Arc<parking_lot::Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock()).into_owned()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLogs {
    type Writer = CapturedLogs;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// One role refreshed by `script` (paused-time policy tests), with its refresher task.
pub fn scripted_role(
    script: &crate::scripted::Scripted,
) -> (sts_sidecar::cache::RoleHandle, tokio::task::JoinHandle<()>) {
    sts_sidecar::cache::spawn_role(
        "default",
        script.clone(),
        std::sync::Arc::new(sts_sidecar::metrics::Metrics::new()),
    )
}

/// Waits (up to 1 s) for `role`'s first usable credentials; returns their access key id.
pub async fn ready(role: &sts_sidecar::cache::RoleHandle) -> String {
    let snapshot = role
        .wait_usable(std::time::Duration::from_secs(1))
        .await
        .expect("credentials");
    snapshot.credentials.access_key_id.clone()
}

/// The JSON a command printed on stdout, after checking it succeeded (its stderr shown if not).
pub fn stdout_json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

/// Runs `cmd` to completion with stdin closed, off the async runtime; its output.
pub async fn output(mut cmd: std::process::Command) -> std::process::Output {
    cmd.stdin(std::process::Stdio::null());
    tokio::task::spawn_blocking(move || cmd.output().expect("run"))
        .await
        .expect("join")
}

/// Flags as typed after `serve` (no `STS_SIDECAR_*` variables).
pub fn flags(args: &[&str]) -> sts_sidecar::config::Overrides {
    sts_sidecar::config::Overrides::from_args(args, &HashMap::new())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// An error with its causes, as the product prints it.
pub trait Chain {
    /// The message and every cause on one line.
    fn chain(&self) -> String;
}

impl<E: std::error::Error> Chain for E {
    fn chain(&self) -> String {
        sts_sidecar::report::chain(self)
    }
}
