//! A fake STS for `AssumeRoleWithWebIdentity` (query protocol, XML answers). It checks what real
//! STS checks (docs/upstream-apis.md §3): action, role ARN, session name rules, duration limits, token
//! length and shape, `exp`, `aud`, and, when given the issuer's key, the RS256 signature. It can
//! be told to fail on purpose (throttling, 5xx, token errors, `AccessDenied`, slow answers,
//! malformed XML, short-lived credentials) and counts the calls it saw.

mod assume_role;

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

use super::{FakeRequest, reply, serve_fake};
use crate::token::decode_claims;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the fake answers to a valid request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StsReply {
    /// Credentials for the requested duration.
    Credentials,
    /// Credentials that expire after this long, whatever was asked.
    ShortLived(Duration),
    /// An STS error: HTTP status, code, message.
    Error(u16, String, String),
    /// Wait this long, then answer with credentials.
    Slow(Duration),
    /// Wait until the test opens the gate, then answer with credentials.
    Held(Gate),
    /// 200 with a body that is not the expected XML.
    MalformedXml,
    /// `InvalidIdentityToken` whose message repeats the token (to prove it is scrubbed).
    EchoToken,
}

/// What a [`StsReply::Held`] answer waits for.
#[derive(Debug, Clone, Default)]
pub struct Gate(Arc<tokio::sync::Notify>);

impl PartialEq for Gate {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Gate {}

impl Gate {
    /// Lets the held answer go (now, or as soon as it is waiting).
    pub fn open(&self) {
        self.0.notify_one();
    }
}

impl StsReply {
    /// `Throttling` / "Rate exceeded" (400), as STS sends it.
    pub fn throttling() -> Self {
        Self::Error(400, "Throttling".into(), "Rate exceeded".into())
    }
    /// A 503 `ServiceUnavailable`.
    pub fn unavailable() -> Self {
        Self::Error(
            503,
            "ServiceUnavailable".into(),
            "Service unavailable".into(),
        )
    }
    /// `AccessDenied` (403).
    pub fn access_denied() -> Self {
        Self::Error(
            403,
            "AccessDenied".into(),
            "Not authorized to perform sts:AssumeRoleWithWebIdentity".into(),
        )
    }
    /// `InvalidIdentityToken` (400).
    pub fn invalid_token() -> Self {
        Self::Error(
            400,
            "InvalidIdentityToken".into(),
            "Couldn't retrieve verification key from your identity provider".into(),
        )
    }
    /// `ExpiredTokenException` (400).
    pub fn expired_token() -> Self {
        Self::Error(
            400,
            "ExpiredTokenException".into(),
            "Token expired: current date/time is after the token's exp".into(),
        )
    }
    /// `IDPCommunicationError` (400).
    pub fn idp_communication() -> Self {
        Self::Error(
            400,
            "IDPCommunicationError".into(),
            "Couldn't reach the identity provider".into(),
        )
    }
    /// `IDPRejectedClaim` (403).
    pub fn idp_rejected() -> Self {
        Self::Error(
            403,
            "IDPRejectedClaim".into(),
            "The claims in the token were rejected".into(),
        )
    }
}

/// One request the fake accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    /// `RoleArn`.
    pub role_arn: String,
    /// `RoleSessionName`.
    pub session_name: String,
    /// `DurationSeconds`.
    pub duration_secs: u64,
    /// The token's `sub` (`AssumeRoleWithWebIdentity`), or the access key id the request was
    /// signed with (`AssumeRole`).
    pub subject: String,
    /// `AssumeRoleWithWebIdentity` or `AssumeRole`.
    pub action: String,
    /// `ExternalId` (`AssumeRole`).
    pub external_id: Option<String>,
}

/// One set of credentials the fake issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token.
    pub session_token: String,
    /// Expiry, Unix seconds.
    pub expiration: i64,
}

/// A running fake STS.
#[derive(Debug)]
pub struct FakeSts {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

#[derive(Debug)]
struct State {
    calls: AtomicUsize,
    serial: AtomicUsize,
    seen: Mutex<Vec<SeenRequest>>,
    issued: Mutex<Vec<Issued>>,
    next: Mutex<VecDeque<StsReply>>,
    default: Mutex<StsReply>,
    trusted_keys: Mutex<Vec<Vec<u8>>>,
    /// Issuers registered as OIDC providers: their URL and a client trusting their CA.
    issuers: Mutex<Vec<(String, reqwest::Client)>>,
    audience: String,
    max_session_secs: u64,
    secret_marker: Mutex<String>,
}

impl Drop for FakeSts {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeSts {
    /// Starts on `127.0.0.1:0`. With `trusted_key` (PKCS#1 DER) it verifies token signatures.
    pub async fn start(trusted_key: Option<Vec<u8>>) -> Result<Self, BoxError> {
        let state = Arc::new(State {
            calls: AtomicUsize::new(0),
            serial: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
            issued: Mutex::new(Vec::new()),
            next: Mutex::new(VecDeque::new()),
            default: Mutex::new(StsReply::Credentials),
            trusted_keys: Mutex::new(trusted_key.into_iter().collect()),
            issuers: Mutex::new(Vec::new()),
            audience: "sts.amazonaws.com".into(),
            max_session_secs: 43_200,
            secret_marker: Mutex::new(String::new()),
        });
        let handler_state = state.clone();
        let (addr, task) = serve_fake(None, move |req| {
            let state = handler_state.clone();
            async move { state.handle(req).await }
        })
        .await?;
        Ok(Self { addr, state, task })
    }

    /// The endpoint URL (`http://127.0.0.1:<port>`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.addr.port())
    }

    /// How many requests arrived.
    pub fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    /// The requests that were answered with credentials.
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.state.seen.lock().clone()
    }

    /// The credentials issued, oldest first.
    pub fn issued(&self) -> Vec<Issued> {
        self.state.issued.lock().clone()
    }

    /// Answer every later valid request with `reply`.
    pub fn set_reply(&self, reply: StsReply) {
        *self.state.default.lock() = reply;
    }

    /// Answer the next valid request with `reply` (queued before the default).
    pub fn push_reply(&self, reply: StsReply) {
        self.state.next.lock().push_back(reply);
    }

    /// Also accept tokens signed with `key` (PKCS#1 DER): another identity provider.
    pub fn trust(&self, key: Vec<u8>) {
        self.state.trusted_keys.lock().push(key);
    }

    /// Register `issuer` (its URL, as in `iss`) as an OIDC provider, as `aws iam
    /// create-open-id-connect-provider` does: its tokens are verified with the keys its
    /// discovery document names, fetched for every call (no cache: each test sees the keys
    /// published now). `ca_pem` is trusted for its HTTPS.
    pub fn trust_issuer(&self, issuer: &str, ca_pem: Option<&str>) -> Result<(), BoxError> {
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5));
        if let Some(pem) = ca_pem {
            builder =
                builder.tls_certs_merge(reqwest::Certificate::from_pem_bundle(pem.as_bytes())?);
        }
        self.state
            .issuers
            .lock()
            .push((issuer.trim_end_matches('/').to_owned(), builder.build()?));
        Ok(())
    }

    /// Embed `marker` in every secret key and session token issued from now on.
    pub fn set_secret_marker(&self, marker: &str) {
        *self.state.secret_marker.lock() = marker.to_owned();
    }
}

/// Verifies `token` as STS does for an OIDC provider: the discovery document at the issuer, its
/// `jwks_uri`, the key with the token's `kid`, the signature.
async fn verify_by_discovery(
    token: &str,
    issuer: &str,
    client: &reqwest::Client,
) -> Result<(), String> {
    let fetch = |url: String| async move {
        let r = client.get(&url).send().await.map_err(|_| {
            format!("Couldn't retrieve verification key from your identity provider ({url})")
        })?;
        let body = r.bytes().await.map_err(|_| format!("cannot read {url}"))?;
        serde_json::from_slice::<serde_json::Value>(&body).map_err(|_| {
            format!("the identity provider answered {url} with something that is not JSON")
        })
    };
    let discovery = fetch(format!("{issuer}/.well-known/openid-configuration")).await?;
    if discovery["issuer"].as_str() != Some(issuer) {
        return Err("the discovery document names another issuer".to_owned());
    }
    let jwks_uri = discovery["jwks_uri"]
        .as_str()
        .ok_or("the discovery document has no jwks_uri")?
        .to_owned();
    let jwks = fetch(jwks_uri).await?;
    let parts = crate::jws::parse(token).map_err(|_| "Couldn't parse the web identity token")?;
    let kid = parts.header.get("kid").and_then(|k| k.as_str());
    let alg = parts
        .header
        .get("alg")
        .and_then(|a| a.as_str())
        .and_then(crate::jws::Alg::from_name)
        .ok_or("unsupported alg")?;
    let keys = jwks["keys"].as_array().cloned().unwrap_or_default();
    let jwk = keys
        .iter()
        .find(|k| k["kid"].as_str() == kid)
        .ok_or("No matching key in the identity provider's JWKS")?;
    let key = jwk_to_public_key(jwk).ok_or("the JWK cannot be read")?;
    if key.verify(alg, parts.signing_input.as_bytes(), &parts.signature) {
        Ok(())
    } else {
        Err("The web identity token signature could not be verified".to_owned())
    }
}

/// A JWK (RSA or EC) as a verifying key.
fn jwk_to_public_key(jwk: &serde_json::Value) -> Option<crate::jws::PublicKey> {
    use base64::Engine as _;
    let b64 = |k: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(jwk[k].as_str()?)
            .ok()
    };
    match jwk["kty"].as_str()? {
        "EC" => {
            let alg = match jwk["crv"].as_str()? {
                "P-256" => crate::jws::Alg::Es256,
                "P-384" => crate::jws::Alg::Es384,
                _ => return None,
            };
            let mut point = vec![4u8];
            point.extend(b64("x")?);
            point.extend(b64("y")?);
            crate::jws::PublicKey::ec(alg, point).ok()
        }
        "RSA" => Some(crate::jws::PublicKey::rsa(&b64("n")?, &b64("e")?)),
        _ => None,
    }
}

impl State {
    async fn handle(&self, req: FakeRequest) -> Response<Full<Bytes>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if req.head.method != http::Method::POST {
            return error(405, "InvalidAction", "Use POST");
        }
        let form: std::collections::HashMap<String, String> =
            form_urlencoded::parse(&req.body).into_owned().collect();
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        if get("Version") != "2011-06-15" {
            return error(400, "InvalidAction", "Could not find operation");
        }
        match get("Action") {
            "AssumeRoleWithWebIdentity" => {}
            "AssumeRole" => return self.assume_role(&req, &form).await,
            _ => return error(400, "InvalidAction", "Could not find operation"),
        }
        let role_arn = get("RoleArn");
        if role_arn.len() < 20 || role_arn.len() > 2048 || !role_arn.starts_with("arn:") {
            return error(
                400,
                "ValidationError",
                "1 validation error detected: Value at 'roleArn' failed to satisfy constraint",
            );
        }
        let session = get("RoleSessionName");
        let session_ok = (2..=64).contains(&session.len())
            && session
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b));
        if !session_ok {
            return error(
                400,
                "ValidationError",
                "1 validation error detected: Value at 'roleSessionName' failed to satisfy constraint",
            );
        }
        let duration: u64 = match form.get("DurationSeconds") {
            None => 3600,
            Some(d) => match d.parse() {
                Ok(d) if (900..=43_200).contains(&d) => d,
                _ => {
                    return error(
                        400,
                        "ValidationError",
                        "1 validation error detected: Value at 'durationSeconds' failed to satisfy constraint",
                    );
                }
            },
        };
        if duration > self.max_session_secs {
            return error(
                400,
                "ValidationError",
                "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
            );
        }
        let token = get("WebIdentityToken");
        if !(4..=20_000).contains(&token.len()) {
            return error(
                400,
                "ValidationError",
                "1 validation error detected: Value at 'webIdentityToken' failed to satisfy constraint",
            );
        }
        let Ok(claims) = decode_claims(token) else {
            return error(
                400,
                "InvalidIdentityToken",
                "Couldn't parse the web identity token",
            );
        };
        if claims.exp <= crate::clock::now_unix() {
            return error(
                400,
                "ExpiredTokenException",
                "Token expired: current date/time is after the token's exp",
            );
        }
        if !claims.aud.contains(&self.audience) {
            return error(400, "InvalidIdentityToken", "Incorrect token audience");
        }
        let keys = self.trusted_keys.lock().clone();
        let issuer = self
            .issuers
            .lock()
            .iter()
            .find(|(url, _)| Some(url.as_str()) == claims.iss.as_deref())
            .cloned();
        match issuer {
            Some((url, client)) => {
                if let Err(why) = verify_by_discovery(token, &url, &client).await {
                    return error(400, "InvalidIdentityToken", &why);
                }
            }
            None if !keys.is_empty() && !keys.iter().any(|key| super::jwt::verify(token, key)) => {
                return error(
                    400,
                    "InvalidIdentityToken",
                    "The web identity token signature could not be verified",
                );
            }
            None => {}
        }
        let next = self.next.lock().pop_front();
        let action = next.unwrap_or_else(|| self.default.lock().clone());
        let lifetime = match action {
            StsReply::Credentials => Duration::from_secs(duration),
            StsReply::ShortLived(d) => d,
            StsReply::Slow(delay) => {
                tokio::time::sleep(delay).await;
                Duration::from_secs(duration)
            }
            StsReply::Held(gate) => {
                gate.0.notified().await;
                Duration::from_secs(duration)
            }
            StsReply::Error(status, code, message) => return error(status, &code, &message),
            StsReply::EchoToken => {
                return error(
                    400,
                    "InvalidIdentityToken",
                    &format!("Token {token} is not valid"),
                );
            }
            StsReply::MalformedXml => {
                return reply(200, "text/xml", "<AssumeRoleWithWebIdentityResponse><oops");
            }
        };
        self.seen.lock().push(SeenRequest {
            role_arn: role_arn.to_owned(),
            session_name: session.to_owned(),
            duration_secs: duration,
            subject: claims.sub.clone().unwrap_or_default(),
            action: "AssumeRoleWithWebIdentity".to_owned(),
            external_id: None,
        });
        let n = self.serial.fetch_add(1, Ordering::SeqCst) + 1;
        let marker = self.secret_marker.lock().clone();
        let issued = Issued {
            access_key_id: format!("ASIAFAKE{n:012}"),
            secret_access_key: format!("{marker}secret{n:034}"),
            session_token: format!("{marker}FwoGZXIvYXdzEFAKE{}{n:08}", "x".repeat(300)),
            expiration: crate::clock::now_unix() + i64::try_from(lifetime.as_secs()).unwrap_or(0),
        };
        self.issued.lock().push(issued.clone());
        let (account, role_name) = role_arn
            .split_once("::")
            .and_then(|(_, rest)| rest.split_once(":role/"))
            .unwrap_or(("000000000000", "role"));
        let role_name = role_name.rsplit('/').next().unwrap_or(role_name);
        let body = format!(
            r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Audience>{aud}</Audience>
    <AssumedRoleUser>
      <AssumedRoleId>AROAFAKE{n:012}:{session}</AssumedRoleId>
      <Arn>arn:aws:sts::{account}:assumed-role/{role_name}/{session}</Arn>
    </AssumedRoleUser>
    <Provider>{iss}</Provider>
    <Credentials>
      <AccessKeyId>{akid}</AccessKeyId>
      <SecretAccessKey>{secret}</SecretAccessKey>
      <SessionToken>{token}</SessionToken>
      <Expiration>{exp}</Expiration>
    </Credentials>
    <SubjectFromWebIdentityToken>{sub}</SubjectFromWebIdentityToken>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata>
    <RequestId>00000000-0000-0000-0000-{n:012}</RequestId>
  </ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>
"#,
            aud = xml(&self.audience),
            session = xml(session),
            account = xml(account),
            role_name = xml(role_name),
            iss = xml(claims.iss.as_deref().unwrap_or("")),
            akid = issued.access_key_id,
            secret = xml(&issued.secret_access_key),
            token = xml(&issued.session_token),
            exp = crate::clock::format_rfc3339(issued.expiration),
            sub = xml(claims.sub.as_deref().unwrap_or("")),
        );
        reply(200, "text/xml", body)
    }
}

fn error(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = format!(
        r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error>
    <Type>Sender</Type>
    <Code>{}</Code>
    <Message>{}</Message>
  </Error>
  <RequestId>00000000-0000-0000-0000-000000000000</RequestId>
</ErrorResponse>
"#,
        xml(code),
        xml(message)
    );
    reply(status, "text/xml", body)
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
