//! A fake identity provider for the HTTP sources, on plain HTTP on loopback, speaking three
//! real protocols at once:
//!
//! - the GCP metadata server: `GET /computeMetadata/v1/instance/service-accounts/<account>/
//!   identity?audience=..&format=full`, only with `Metadata-Flavor: Google`, answering a bare
//!   JWT (`iss` `https://accounts.google.com`, `sub` = `azp` = the account's numeric id) with
//!   `Metadata-Flavor: Google` on the response;
//! - an OIDC provider: `GET /.well-known/openid-configuration` and `POST /oauth2/token` with the
//!   client-credentials grant, client authentication by HTTP Basic or in the body, answering
//!   `{"access_token": <jwt>, ...}` or an OAuth error;
//! - GitHub's job token endpoint: `GET /github/token?api-version=2.0&audience=..` with
//!   `Authorization: Bearer <request token>`, answering `{"count": 1, "value": <jwt>}`.
//!
//! Every token is signed with the fake's own RSA key ([`FakeIdp::public_key_der`], for the fake
//! STS to trust). Replies can be scripted to fail on purpose, and every request is recorded.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use parking_lot::Mutex;
use tokio::task::JoinHandle;

use super::jwt::JwtSigner;
use super::{FakeRequest, reply, serve_fake};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The GCP service account's numeric unique id in tokens.
pub const GCP_ACCOUNT_ID: &str = "112233445566778899001";
/// The GCP service account's email.
pub const GCP_ACCOUNT_EMAIL: &str = "app@project.iam.gserviceaccount.com";
/// The OIDC client the fake knows.
pub const OIDC_CLIENT_ID: &str = "sidecar-client";
/// Its secret.
pub const OIDC_CLIENT_SECRET: &str = "oidc-client-secret-7d1a9c2e";
/// The GitHub job's request token the fake accepts.
pub const GITHUB_REQUEST_TOKEN: &str = "github-request-token-5b8e3f0a";
/// The GitHub repository in tokens.
pub const GITHUB_REPOSITORY: &str = "octo-org/octo-app";

/// The fake's endpoints, each with its own queue of scripted replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// The GCP metadata identity path.
    Metadata,
    /// The OIDC token endpoint.
    OAuth,
    /// GitHub's job token endpoint.
    Github,
}

/// What an endpoint answers next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdpReply {
    /// A valid answer.
    Token,
    /// This status with an empty body (metadata: still flavoured).
    Status(u16),
    /// 200 with an HTML page (and no flavour header).
    Html,
    /// A valid-looking token, but the metadata flavour header is missing.
    NoFlavor,
    /// Wait, then a valid answer.
    Slow(Duration),
    /// An OAuth error (`400`, `{"error", "error_description"}`).
    OAuthError(String, String),
    /// An access token without `aud` (it carries `client_id`, as Cognito's do).
    NoAudience,
    /// An ID token (with `aud`) beside an access token without one.
    WithIdToken,
}

/// One request the fake saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The path.
    pub path: String,
    /// The query parameters.
    pub query: HashMap<String, String>,
    /// The form body parameters.
    pub form: HashMap<String, String>,
    /// The Authorization header.
    pub authorization: Option<String>,
    /// The Metadata-Flavor header.
    pub flavor: Option<String>,
}

/// A running fake identity provider.
#[derive(Debug)]
pub struct FakeIdp {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

#[derive(Debug)]
struct State {
    signer: JwtSigner,
    base: Mutex<String>,
    seen: Mutex<Vec<Seen>>,
    next: Mutex<HashMap<Endpoint, VecDeque<IdpReply>>>,
    issued: Mutex<Vec<String>>,
    lifetime: Mutex<Duration>,
}

impl Drop for FakeIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeIdp {
    /// Starts on `127.0.0.1:0`.
    pub async fn start() -> Result<Self, BoxError> {
        let state = Arc::new(State {
            signer: JwtSigner::generate("idp")?,
            base: Mutex::new(String::new()),
            seen: Mutex::new(Vec::new()),
            next: Mutex::new(HashMap::new()),
            issued: Mutex::new(Vec::new()),
            lifetime: Mutex::new(Duration::from_secs(3600)),
        });
        let handler_state = state.clone();
        let (addr, task) = serve_fake(None, move |req| {
            let state = handler_state.clone();
            async move { state.handle(req).await }
        })
        .await?;
        *state.base.lock() = format!("http://127.0.0.1:{}", addr.port());
        Ok(Self { addr, state, task })
    }

    /// `http://127.0.0.1:<port>`: the OIDC issuer.
    pub fn url(&self) -> String {
        self.state.base.lock().clone()
    }

    /// `127.0.0.1:<port>`: for `GCE_METADATA_HOST`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}/oauth2/token", self.url())
    }

    /// `ACTIONS_ID_TOKEN_REQUEST_URL` for the fake GitHub endpoint.
    pub fn github_request_url(&self) -> String {
        format!("{}/github/token?api-version=2.0", self.url())
    }

    /// The signing key, PKCS#1 DER, for the fake STS to trust.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.state.signer.public_key_der()
    }

    /// A token signed with the fake's key, for token files and commands: `iss` this fake,
    /// `aud` `sts.amazonaws.com`, living `lifetime`.
    pub fn mint_token(&self, sub: &str, lifetime: Duration) -> String {
        self.state.mint(serde_json::json!({
            "iss": self.url(),
            "sub": sub,
            "aud": ["sts.amazonaws.com"],
            "iat": crate::clock::now_unix(),
            "exp": crate::clock::now_unix() + i64::try_from(lifetime.as_secs()).unwrap_or(0),
        }))
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().clone()
    }

    /// Requests to paths starting with `prefix`.
    pub fn calls(&self, prefix: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.path.starts_with(prefix))
            .count()
    }

    /// Every token issued.
    pub fn issued(&self) -> Vec<String> {
        self.state.issued.lock().clone()
    }

    /// Answer the next request to `endpoint` with `reply`.
    pub fn push_reply(&self, endpoint: Endpoint, reply: IdpReply) {
        self.state
            .next
            .lock()
            .entry(endpoint)
            .or_default()
            .push_back(reply);
    }

    /// Lifetime of tokens issued from now on.
    pub fn set_lifetime(&self, lifetime: Duration) {
        *self.state.lifetime.lock() = lifetime;
    }
}

impl State {
    async fn handle(&self, req: FakeRequest) -> Response<Full<Bytes>> {
        let path = req.head.uri.path().to_owned();
        let query: HashMap<String, String> =
            form_urlencoded::parse(req.head.uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let form: HashMap<String, String> =
            form_urlencoded::parse(&req.body).into_owned().collect();
        let header = |name: &str| {
            req.head
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let seen = Seen {
            path: path.clone(),
            query: query.clone(),
            form: form.clone(),
            authorization: header("authorization"),
            flavor: header("metadata-flavor"),
        };
        self.seen.lock().push(seen.clone());
        if path == "/.well-known/openid-configuration" {
            let base = self.base.lock().clone();
            return reply(
                200,
                "application/json",
                serde_json::json!({
                    "issuer": base,
                    "token_endpoint": format!("{base}/oauth2/token"),
                    "jwks_uri": format!("{base}/jwks"),
                })
                .to_string(),
            );
        }
        let endpoint = if path.starts_with("/computeMetadata/v1/instance/service-accounts/") {
            Endpoint::Metadata
        } else if path == "/oauth2/token" && req.head.method == http::Method::POST {
            Endpoint::OAuth
        } else if path == "/github/token" {
            Endpoint::Github
        } else {
            return reply(404, "text/plain", "not found");
        };
        let next = self
            .next
            .lock()
            .get_mut(&endpoint)
            .and_then(VecDeque::pop_front)
            .unwrap_or(IdpReply::Token);
        if let IdpReply::Slow(delay) = next {
            tokio::time::sleep(delay).await;
        }
        match endpoint {
            Endpoint::Metadata => self.metadata(&seen, next),
            Endpoint::OAuth => self.oauth(&seen, next),
            Endpoint::Github => self.github(&seen, next),
        }
    }

    fn mint(&self, claims: serde_json::Value) -> String {
        let token = self.signer.sign(&claims).unwrap_or_default();
        self.issued.lock().push(token.clone());
        token
    }

    fn exp(&self) -> i64 {
        crate::clock::now_unix() + i64::try_from(self.lifetime.lock().as_secs()).unwrap_or(3600)
    }

    fn metadata(&self, seen: &Seen, next: IdpReply) -> Response<Full<Bytes>> {
        if seen.flavor.as_deref() != Some("Google") {
            return flavored(reply(
                403,
                "text/html",
                "<html>Missing Metadata-Flavor</html>",
            ));
        }
        let account = seen
            .path
            .trim_start_matches("/computeMetadata/v1/instance/service-accounts/")
            .trim_end_matches("/identity");
        if account != "default" && account != GCP_ACCOUNT_EMAIL {
            return flavored(reply(404, "text/html", "<html>Not Found</html>"));
        }
        let Some(audience) = seen.query.get("audience") else {
            return flavored(reply(
                400,
                "text/plain",
                "non-empty audience parameter required",
            ));
        };
        match next {
            IdpReply::Status(s) => return flavored(reply(s, "text/plain", "")),
            IdpReply::Html => return reply(200, "text/html", "<html>captive portal</html>"),
            _ => {}
        }
        let token = self.mint(serde_json::json!({
            "iss": "https://accounts.google.com",
            "sub": GCP_ACCOUNT_ID,
            "azp": GCP_ACCOUNT_ID,
            "aud": audience,
            "email": GCP_ACCOUNT_EMAIL,
            "email_verified": true,
            "iat": crate::clock::now_unix(),
            "exp": self.exp(),
        }));
        let response = reply(200, "text/html; charset=utf-8", token);
        if next == IdpReply::NoFlavor {
            response
        } else {
            flavored(response)
        }
    }

    fn oauth(&self, seen: &Seen, next: IdpReply) -> Response<Full<Bytes>> {
        let oauth_error = |status: u16, code: &str, description: &str| {
            reply(
                status,
                "application/json",
                serde_json::json!({"error": code, "error_description": description}).to_string(),
            )
        };
        if seen.form.get("grant_type").map(String::as_str) != Some("client_credentials") {
            return oauth_error(400, "unsupported_grant_type", "only client_credentials");
        }
        let basic = seen
            .authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Basic "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|pair| {
                let (id, secret) = pair.split_once(':')?;
                let dec = |s: &str| {
                    form_urlencoded::parse(format!("x={s}").as_bytes())
                        .next()
                        .map(|(_, v)| v.into_owned())
                };
                Some((dec(id)?, dec(secret)?))
            });
        let post = seen
            .form
            .get("client_id")
            .cloned()
            .zip(seen.form.get("client_secret").cloned());
        let authenticated = match (basic, post) {
            (Some(creds), None) | (None, Some(creds)) => {
                creds.0 == OIDC_CLIENT_ID && creds.1 == OIDC_CLIENT_SECRET
            }
            _ => false,
        };
        if !authenticated {
            return oauth_error(401, "invalid_client", "Client authentication failed");
        }
        match next {
            IdpReply::Status(s) => return reply(s, "text/plain", ""),
            IdpReply::Html => return reply(200, "text/html", "<html>login page</html>"),
            IdpReply::OAuthError(code, description) => {
                return oauth_error(400, &code, &description);
            }
            _ => {}
        }
        let base = self.base.lock().clone();
        let mut claims = serde_json::json!({
            "iss": base,
            "sub": OIDC_CLIENT_ID,
            "client_id": OIDC_CLIENT_ID,
            "token_use": "access",
            "scope": seen.form.get("scope").cloned().unwrap_or_default(),
            "iat": crate::clock::now_unix(),
            "exp": self.exp(),
        });
        if next != IdpReply::NoAudience && next != IdpReply::WithIdToken {
            claims["aud"] = serde_json::Value::String(
                seen.form
                    .get("audience")
                    .cloned()
                    .unwrap_or_else(|| "sts.amazonaws.com".to_owned()),
            );
        }
        let token = self.mint(claims);
        let mut answer =
            serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600});
        if next == IdpReply::WithIdToken {
            answer["id_token"] = serde_json::Value::String(self.mint(serde_json::json!({
                "iss": base,
                "sub": OIDC_CLIENT_ID,
                "aud": "sts.amazonaws.com",
                "azp": OIDC_CLIENT_ID,
                "iat": crate::clock::now_unix(),
                "exp": self.exp(),
            })));
        }
        reply(200, "application/json", answer.to_string())
    }

    fn github(&self, seen: &Seen, next: IdpReply) -> Response<Full<Bytes>> {
        if seen.authorization.as_deref() != Some(&format!("Bearer {GITHUB_REQUEST_TOKEN}")) {
            return reply(401, "application/json", r#"{"message":"Bad credentials"}"#);
        }
        if seen.query.get("api-version").map(String::as_str) != Some("2.0") {
            return reply(400, "application/json", r#"{"message":"api-version"}"#);
        }
        match next {
            IdpReply::Status(s) => return reply(s, "application/json", "{}"),
            IdpReply::Html => return reply(200, "text/html", "<html>unicorn</html>"),
            _ => {}
        }
        let audience = seen
            .query
            .get("audience")
            .cloned()
            .unwrap_or_else(|| "https://github.com/octo-org".to_owned());
        let token = self.mint(serde_json::json!({
            "iss": "https://token.actions.githubusercontent.com",
            "sub": format!("repo:{GITHUB_REPOSITORY}:ref:refs/heads/main"),
            "aud": audience,
            "repository": GITHUB_REPOSITORY,
            "ref": "refs/heads/main",
            "workflow": "deploy",
            "actor": "octocat",
            "iat": crate::clock::now_unix(),
            "exp": self.exp(),
        }));
        reply(
            200,
            "application/json",
            serde_json::json!({"count": 1, "value": token}).to_string(),
        )
    }
}

fn flavored(mut r: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    r.headers_mut()
        .insert("metadata-flavor", http::HeaderValue::from_static("Google"));
    r
}
