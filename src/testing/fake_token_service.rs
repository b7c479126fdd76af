//! A fake CF Identity Token Service over real mTLS. Like the real one (docs/upstream-apis.md §1) it
//! answers `POST /token` with a bare RS256 JWT (`sub` = `org:space:app` from the client
//! certificate's OUs, `aud` = `sts.amazonaws.com`, 12 h lifetime, `text/plain`), 403 without a
//! client certificate, and serves `/.well-known/openid-configuration` and `/token_keys`. It can be
//! told to fail on purpose and counts the token requests it saw.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use parking_lot::Mutex;
use tokio::task::JoinHandle;

use super::jwt::JwtSigner;
use super::pki::TestPki;
use super::{FakeRequest, reply, serve_fake_on};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Lifetime of issued tokens, hard-coded in the real service too.
const TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// What the fake answers to a `POST /token` with a client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenReply {
    /// A valid JWT.
    Token,
    /// A JWT whose `exp` is already past.
    ExpiredToken,
    /// This HTTP status with an empty body.
    Status(u16),
    /// 200 with an HTML page.
    Html,
    /// 200 with an empty body.
    Empty,
    /// 200 with a body that is not a JWT.
    NotJwt,
    /// Wait this long, then answer with a valid JWT.
    Slow(Duration),
    /// This status, content type and body.
    Custom(u16, String, String),
}

/// A running fake token service.
#[derive(Debug)]
pub struct FakeTokenService {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

#[derive(Debug)]
struct State {
    signer: JwtSigner,
    issuer: Mutex<String>,
    calls: AtomicUsize,
    subjects: Mutex<Vec<String>>,
    serials: Mutex<Vec<String>>,
    tokens: Mutex<Vec<String>>,
    next: Mutex<VecDeque<TokenReply>>,
    default: Mutex<TokenReply>,
}

impl Drop for FakeTokenService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeTokenService {
    /// Starts on `127.0.0.1:0` with the PKI's server certificate, trusting its Diego root.
    pub async fn start(pki: &TestPki) -> Result<Self, BoxError> {
        Self::start_on(pki, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts on `addr`.
    pub async fn start_on(pki: &TestPki, addr: SocketAddr) -> Result<Self, BoxError> {
        Self::start_with_tls(addr, pki.mtls_server_config()?).await
    }

    /// Starts on `127.0.0.1:0` presenting an expired server certificate.
    pub async fn start_with_expired_certificate(pki: &TestPki) -> Result<Self, BoxError> {
        Self::start_with_tls(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            pki.expired_mtls_server_config()?,
        )
        .await
    }

    async fn start_with_tls(
        addr: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
    ) -> Result<Self, BoxError> {
        let state = Arc::new(State {
            signer: JwtSigner::generate("first")?,
            issuer: Mutex::new(String::new()),
            calls: AtomicUsize::new(0),
            subjects: Mutex::new(Vec::new()),
            serials: Mutex::new(Vec::new()),
            tokens: Mutex::new(Vec::new()),
            next: Mutex::new(VecDeque::new()),
            default: Mutex::new(TokenReply::Token),
        });
        let handler_state = state.clone();
        let (addr, task) = serve_fake_on(addr, Some(tls), move |req| {
            let state = handler_state.clone();
            async move { state.handle(req).await }
        })
        .await?;
        *state.issuer.lock() = format!("https://127.0.0.1:{}", addr.port());
        Ok(Self { addr, state, task })
    }

    /// The base URL (`https://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    /// How many `POST /token` requests arrived (with or without a certificate).
    pub fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    /// The `sub` of every token issued.
    pub fn subjects(&self) -> Vec<String> {
        self.state.subjects.lock().clone()
    }

    /// The serial number (hex) of the client certificate of every token request that had one.
    pub fn client_serials(&self) -> Vec<String> {
        self.state.serials.lock().clone()
    }

    /// Every token issued (for tests that look for leaks).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.state.tokens.lock().clone()
    }

    /// Answer every later request with `reply`.
    pub fn set_reply(&self, reply: TokenReply) {
        *self.state.default.lock() = reply;
    }

    /// Answer the next request with `reply` (queued before the default).
    pub fn push_reply(&self, reply: TokenReply) {
        self.state.next.lock().push_back(reply);
    }

    /// The public key that signs tokens (PKCS#1 DER), for a fake STS to verify them.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.state.signer.public_key_der()
    }

    /// A token for `sub` signed by this service, valid for `lifetime` (for direct use in tests).
    pub fn mint(&self, sub: &str, lifetime: Duration) -> Result<String, BoxError> {
        self.state.mint(sub, lifetime)
    }
}

impl State {
    fn mint(&self, sub: &str, lifetime: Duration) -> Result<String, BoxError> {
        let now = crate::clock::now_unix();
        let exp = now + i64::try_from(lifetime.as_secs()).unwrap_or(0);
        let mut parts = sub.splitn(3, ':');
        let claims = serde_json::json!({
            "iss": *self.issuer.lock(),
            "sub": sub,
            "aud": "sts.amazonaws.com",
            "iat": now,
            "exp": exp,
            "org_guid": parts.next().unwrap_or(""),
            "space_guid": parts.next().unwrap_or(""),
            "app_guid": parts.next().unwrap_or(""),
        });
        self.signer.sign(&claims)
    }

    async fn handle(&self, req: FakeRequest) -> Response<Full<Bytes>> {
        let path = req.head.uri.path();
        // Like the real service, the issuer is the base URL the caller used.
        if let Some(host) = req
            .head
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
        {
            *self.issuer.lock() = format!("https://{host}");
        }
        match (req.head.method.as_str(), path) {
            ("GET", "/token_keys") => match self.signer.jwks() {
                Ok(jwks) => reply(200, "application/json", jwks.to_string()),
                Err(_) => reply(500, "text/plain", ""),
            },
            ("GET", "/.well-known/openid-configuration") => {
                let issuer = self.issuer.lock().clone();
                let body = serde_json::json!({
                    "issuer": issuer,
                    "jwks_uri": format!("{issuer}/token_keys"),
                    "response_types_supported": ["id_token"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "subject_types_supported": ["public"],
                });
                reply(200, "application/json", body.to_string())
            }
            ("POST", "/token") => self.token(&req).await,
            (_, "/token") => reply(405, "application/json", r#"{"error":"Method Not Allowed"}"#),
            _ => reply(404, "application/json", r#"{"error":"Not Found"}"#),
        }
    }

    async fn token(&self, req: &FakeRequest) -> Response<Full<Bytes>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let Some(leaf) = req.peer_certs.first() else {
            return reply(403, "application/json", r#"{"error":"Forbidden"}"#);
        };
        let Some((sub, serial)) = subject_of(leaf) else {
            return reply(403, "application/json", r#"{"error":"Forbidden"}"#);
        };
        self.serials.lock().push(serial);
        let next = self.next.lock().pop_front();
        let action = next.unwrap_or_else(|| self.default.lock().clone());
        let lifetime = TOKEN_LIFETIME;
        match action {
            TokenReply::Token => self.issue(&sub, lifetime),
            TokenReply::Slow(delay) => {
                tokio::time::sleep(delay).await;
                self.issue(&sub, lifetime)
            }
            TokenReply::ExpiredToken => {
                let now = crate::clock::now_unix();
                let claims = serde_json::json!({"iss": *self.issuer.lock(), "sub": sub, "aud": "sts.amazonaws.com", "iat": now - 7200, "exp": now - 3600});
                match self.signer.sign(&claims) {
                    Ok(t) => reply(200, "text/plain;charset=UTF-8", t),
                    Err(_) => reply(500, "text/plain", ""),
                }
            }
            TokenReply::Status(status) => reply(status, "application/json", ""),
            TokenReply::Html => reply(
                200,
                "text/html;charset=UTF-8",
                "<html><body>Whitelabel Error Page</body></html>",
            ),
            TokenReply::Empty => reply(200, "text/plain;charset=UTF-8", ""),
            TokenReply::NotJwt => reply(200, "text/plain;charset=UTF-8", "this is not a token"),
            TokenReply::Custom(status, content_type, body) => reply(status, &content_type, body),
        }
    }

    fn issue(&self, sub: &str, lifetime: Duration) -> Response<Full<Bytes>> {
        match self.mint(sub, lifetime) {
            Ok(token) => {
                self.subjects.lock().push(sub.to_owned());
                self.tokens.lock().push(token.clone());
                reply(200, "text/plain;charset=UTF-8", token)
            }
            Err(_) => reply(500, "text/plain", ""),
        }
    }
}

/// `org:space:app` from the OUs of a Diego-style certificate, as the real service extracts it,
/// and the certificate's serial number.
fn subject_of(cert: &[u8]) -> Option<(String, String)> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    let mut org = String::new();
    let mut space = String::new();
    let mut app = String::new();
    for ou in parsed.subject().iter_organizational_unit() {
        let Ok(value) = ou.as_str() else { continue };
        if let Some(v) = value.strip_prefix("organization:") {
            org = v.to_owned();
        } else if let Some(v) = value.strip_prefix("space:") {
            space = v.to_owned();
        } else if let Some(v) = value.strip_prefix("app:") {
            app = v.to_owned();
        }
    }
    Some((
        format!("{org}:{space}:{app}"),
        parsed.raw_serial_as_string(),
    ))
}
