//! The CF Identity Token Service: `POST <url>/token` over mTLS with the instance identity
//! certificate chain (leaf and intermediate) as the client identity; the answer is a bare JWT.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;

use super::{Context, Error, IdentityToken, Kind, Probe, Stamp, decode_claims};
use crate::checker::{Checker, Field, Layer, layer};
use crate::identity::{IdentityFiles, IdentityPair};
use crate::jws;

/// Default timeout of one call.
pub const DEFAULT_TIMEOUT_SECS: u64 = 10;

/// `type = "token-service"` (or the `[token_service]` section) in the config file.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct Spec {
    url: Field<String>,
    ca_file: Field<PathBuf>,
    timeout_secs: Field<u64>,
}

/// The flags of a token-service source.
#[derive(Debug, Clone, Default, clap::Args)]
#[group(skip)]
pub struct Flags {
    /// Base URL of the CF Identity Token Service (or `sts-sidecar issuer`), e.g.
    /// https://cits.apps.example.com [source: token-service]
    #[arg(long, value_name = "URL")]
    pub token_service_url: Option<String>,
    /// Extra CA certificates (PEM) to trust for the token service, besides the system roots
    #[arg(long, value_name = "FILE")]
    pub token_service_ca: Option<PathBuf>,
    /// Timeout of one token-service call, 1-120 seconds [default: 10]
    #[arg(long, value_name = "SECS", hide_short_help = true)]
    pub token_service_timeout_secs: Option<u64>,
}

/// A checked token-service source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Its base URL (https, no trailing slash).
    pub url: String,
    /// Extra CA certificates to trust.
    pub ca_file: Option<PathBuf>,
    /// Timeout of one call.
    pub timeout: Duration,
    /// The client identity presented over mTLS.
    pub identity: IdentityFiles,
    /// The audience asked for (`sts-sidecar issuer` takes it; none: the service's default).
    pub audience: Option<String>,
}

fn https_base_url(c: &mut Checker<'_>, key: &str, value: &str) -> Option<String> {
    match reqwest::Url::parse(value.trim()) {
        Ok(u) if u.scheme() == "https" && u.host().is_some() => {
            if u.query().is_some() || u.fragment().is_some() {
                c.problem(key, "must not have a query or fragment");
                return None;
            }
            Some(value.trim().trim_end_matches('/').to_owned())
        }
        Ok(_) => {
            c.problem(
                key,
                format!("must be an https:// URL (the token service needs mTLS), got {value:?}"),
            );
            None
        }
        Err(e) => {
            c.problem(key, format!("is not a URL ({e}): {value:?}"));
            None
        }
    }
}

impl Kind for TokenService {
    const NAME: &'static str = "token-service";
    const METRIC_LABEL: &'static str = "token_service";
    const PICKED_BY: &'static [&'static str] = &["token_service_url", "token_service_ca"];
    type Spec = Spec;
    type Flags = Flags;
    type Settings = Settings;

    fn layer(spec: &mut Spec, flags: &Flags, _audience: &Option<String>, l: &mut Layer<'_, '_>) {
        layer!(l, spec.url <- flags.token_service_url);
        layer!(l, spec.ca_file <- flags.token_service_ca);
        layer!(l, spec.timeout_secs <- flags.token_service_timeout_secs);
    }

    fn check(c: &mut Checker<'_>, at: &str, spec: Spec, ctx: &mut dyn Context) -> Option<Settings> {
        let identity = ctx.identity(c);
        let timeout = c.timeout(at, &spec.timeout_secs, DEFAULT_TIMEOUT_SECS, 120);
        let ca_file = c.path(&format!("{at}.ca_file"), &spec.ca_file);
        let key = format!("{at}.url");
        let url = match c.text(&key, &spec.url) {
            None if !spec.url.is_present() => {
                c.problem(
                    &key,
                    "not set: pass --token-service-url https://<token service host> (or choose \
                     another identity source with --source)",
                );
                None
            }
            None => None,
            Some(u) => https_base_url(c, &key, &u),
        };
        Some(Settings {
            url: url?,
            ca_file,
            timeout,
            identity: identity?,
            audience: None,
        })
    }

    /// `sts-sidecar issuer` signs for any audience on its `--audience` allow-list; the older CF
    /// Identity Token Service ignores the parameter and answers its one audience, which the
    /// endpoint then refuses as a token for another audience.
    fn for_audience(s: &Settings, audience: &str) -> Result<Settings, String> {
        Ok(Settings {
            audience: Some(audience.to_owned()),
            ..s.clone()
        })
    }

    fn describe(s: &Settings) -> String {
        format!(
            "{}{}, certificate {} (from {}), key {} (from {})",
            s.url,
            s.ca_file
                .as_ref()
                .map(|c| format!(" trusting {}", c.display()))
                .unwrap_or_default(),
            s.identity.cert_path.display(),
            s.identity.cert_origin,
            s.identity.key_path.display(),
            s.identity.key_origin
        )
    }

    fn identity(s: &Settings) -> Option<&IdentityFiles> {
        Some(&s.identity)
    }

    fn new(s: &Settings) -> Result<Self, super::SetupError> {
        let mut service = Self::with(&s.url, s.identity.clone(), s.ca_file.as_deref(), s.timeout)?;
        service.audience.clone_from(&s.audience);
        Ok(service)
    }

    fn origin(&self) -> String {
        format!("token service {}", self.url())
    }

    async fn probe(&self) -> Result<Probe, Error> {
        let pair = self.identity.read_pair().await?;
        Ok(Probe {
            stamp: Stamp::Certificate(pair.cert_pem.clone()),
            identity: Some(pair),
        })
    }

    async fn fetch(&self, probe: &Probe) -> Result<IdentityToken, Error> {
        match &probe.identity {
            Some(pair) => self.exchange(pair).await,
            None => Err(Error::Unavailable {
                origin: self.origin(),
                detail: "internal: no identity pair was read".to_owned(),
                hint: String::new(),
            }),
        }
    }
}

/// A token-service client. It builds a new TLS client whenever the certificate file changes.
pub struct TokenService {
    url: String,
    token_url: String,
    /// The audience asked for, if any.
    audience: Option<String>,
    identity: IdentityFiles,
    extra_roots: Vec<reqwest::Certificate>,
    timeout: Duration,
    /// The session built for the certificate file's bytes (rebuilt when they change).
    client: parking_lot::Mutex<Option<(Arc<Vec<u8>>, Session)>>,
}

/// The HTTP client and assertion signer for one certificate.
type Session = (reqwest::Client, Option<Arc<jws::Signer>>);

/// How long an assertion is valid: long enough for a clock two minutes behind the issuer's,
/// short enough that the issuer remembers few of them to refuse replays.
pub const ASSERTION_LIFETIME_SECS: i64 = 120;
/// The grant type of RFC 7523's JWT bearer grant.
const GRANT_JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService")
            .field("url", &self.url)
            .field("identity", &self.identity)
            .field("extra_roots", &self.extra_roots.len())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Why the token-service client could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The CA bundle could not be read.
    #[error("cannot read the token service CA bundle {path}")]
    ReadCa {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The CA bundle holds no certificate.
    #[error("the token service CA bundle {path} holds no PEM certificate")]
    NoCa {
        /// The file.
        path: PathBuf,
    },
}

impl TokenService {
    /// A client for the service at `url` (scheme and host, no path), trusting the system roots
    /// plus the certificates in `ca_file`.
    pub fn with(
        url: &str,
        identity: IdentityFiles,
        ca_file: Option<&Path>,
        timeout: Duration,
    ) -> Result<Self, SetupError> {
        let mut extra_roots = Vec::new();
        if let Some(path) = ca_file {
            let pem = std::fs::read(path).map_err(|source| SetupError::ReadCa {
                path: path.to_owned(),
                source,
            })?;
            extra_roots = reqwest::Certificate::from_pem_bundle(&pem).unwrap_or_default();
            if extra_roots.is_empty() {
                return Err(SetupError::NoCa {
                    path: path.to_owned(),
                });
            }
        }
        let base = url.trim_end_matches('/');
        Ok(Self {
            url: base.to_owned(),
            token_url: format!("{base}/token"),
            audience: None,
            identity,
            extra_roots,
            timeout,
            client: parking_lot::Mutex::new(None),
        })
    }

    /// The service's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Where the client identity comes from.
    pub fn identity(&self) -> &IdentityFiles {
        &self.identity
    }

    /// Exchanges the identity pair for a token: one POST, no retries (the caller retries).
    pub async fn exchange(&self, pair: &IdentityPair) -> Result<IdentityToken, Error> {
        let (client, signer) = self.client_for(pair)?;
        let url = &self.token_url;
        let mut request = client
            .post(url)
            .header(http::header::ACCEPT, "application/jwt, text/plain, */*");
        // The assertion proves the key to an issuer behind any router; a service that only
        // knows mTLS ignores the body and reads the certificate presented above.
        let assertion = self.assertion(pair, &signer);
        if assertion.is_some() || self.audience.is_some() {
            let mut form = form_urlencoded::Serializer::new(String::new());
            if let Some(assertion) = &assertion {
                form.append_pair("grant_type", GRANT_JWT_BEARER)
                    .append_pair("assertion", assertion);
            }
            if let Some(audience) = &self.audience {
                form.append_pair("audience", audience);
            }
            let body = form.finish();
            request = request
                .header(
                    http::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(body);
        }
        let response = request.send().await.map_err(|e| unreachable(url, e))?;
        let status = response.status();
        if status == http::StatusCode::FORBIDDEN || status == http::StatusCode::UNAUTHORIZED {
            // An OAuth error (sts-sidecar issuer) says why; its text never holds a secret.
            let described = super::http::read_limited(response)
                .await
                .ok()
                .flatten()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v.get("error_description")?.as_str().map(str::to_owned))
                .map(|d| d.chars().take(300).collect::<String>());
            return Err(Error::Refused {
                origin: origin(url),
                detail: match described {
                    Some(why) => format!("refused the instance identity (HTTP {status}): {why}"),
                    None => format!(
                        "refused the client certificate (HTTP {status}); check that the \
                         certificate is the instance identity certificate and that the service \
                         trusts its CA"
                    ),
                },
                hint: "the token service must trust the Diego instance identity CA, and a route \
                       in front of it must pass the client certificate on (gorouter: \
                       forwarded_client_cert = sanitize_set)"
                    .to_owned(),
            });
        }
        if !status.is_success() {
            let hint = match status {
                // sts-sidecar issuer's budget per instance: a sidecar that asks about every
                // half hour never meets it, so something asks far more often.
                http::StatusCode::TOO_MANY_REQUESTS => "the token service limits how often one \
                    instance may ask (it said when to ask again): something asks for tokens far \
                    more often than a sidecar does; it is retried with backoff"
                    .to_owned(),
                s if s.is_server_error() => "the token service failed: it is retried".to_owned(),
                _ => BASE_URL_HINT.to_owned(),
            };
            return Err(Error::Status {
                origin: origin(url),
                status: status.as_u16(),
                hint,
            });
        }
        let html = super::http::is_html(&response);
        let body = super::http::read_limited(response)
            .await
            .map_err(|e| unreachable(url, e))?;
        let Some(body) = body else {
            return Err(not_jwt(
                url,
                format!("a body larger than {} bytes", super::http::MAX_BODY),
            ));
        };
        interpret(url, &body, html)
    }

    /// An assertion for one call: signed with the instance key, the chain in `x5c`, valid for
    /// [`ASSERTION_LIFETIME_SECS`]. `None` when the key cannot sign a JWS (the certificate alone
    /// is then the proof, as with the existing service).
    fn assertion(&self, pair: &IdentityPair, signer: &Option<Arc<jws::Signer>>) -> Option<String> {
        let signer = signer.as_ref()?;
        let cn = pair
            .leaf
            .subject_attributes
            .iter()
            .find(|(n, _)| n == "CN")
            .map(|(_, v)| v.clone())?;
        let chain: Vec<String> = pair
            .chain_der()
            .iter()
            .map(|c| base64::engine::general_purpose::STANDARD.encode(c))
            .collect();
        let now = crate::clock::now_unix();
        let mut jti = [0u8; 24];
        if aws_lc_rs::rand::fill(&mut jti).is_err() {
            jti = rand::random();
        }
        let claims = serde_json::json!({
            "iss": cn,
            "sub": cn,
            "aud": self.url,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
            "jti": jws::b64url(&jti),
        });
        signer
            .sign(serde_json::json!({"typ": "JWT", "x5c": chain}), &claims)
            .map_err(|e| tracing::debug!(error = %e, "cannot sign the assertion; sending none"))
            .ok()
    }

    fn client_for(&self, pair: &IdentityPair) -> Result<Session, Error> {
        let mut slot = self.client.lock();
        if let Some((cert, session)) = slot.as_ref()
            && *cert == pair.cert_pem
        {
            return Ok(session.clone());
        }
        let setup = |source: reqwest::Error| Error::Unreachable {
            origin: format!(
                "{} (the TLS client cannot be set up)",
                origin(&self.token_url)
            ),
            source,
            hint: "use the instance identity certificate and key as the platform writes them"
                .to_owned(),
        };
        let identity = reqwest::Identity::from_pem(&pair.identity_pem()).map_err(setup)?;
        let client = reqwest::Client::builder()
            .identity(identity)
            .tls_certs_merge(self.extra_roots.iter().cloned())
            .timeout(self.timeout)
            .connect_timeout(self.timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("sts-sidecar/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(setup)?;
        let signer = pair
            .key_der()
            .and_then(|k| jws::Signer::from_der(&k).ok())
            .map(Arc::new);
        *slot = Some((pair.cert_pem.clone(), (client.clone(), signer.clone())));
        Ok((client, signer))
    }
}

/// Reads a successful token-service answer (`html`: its content type said HTML): a bare JWT,
/// possibly with surrounding whitespace. Errors describe the body's shape, never its content.
/// Public for the fuzz target that feeds it arbitrary bodies.
pub fn interpret(url: &str, body: &[u8], html: bool) -> Result<IdentityToken, Error> {
    let trimmed = body.trim_ascii();
    if trimmed.is_empty() {
        return Err(not_jwt(url, "an empty body".to_owned()));
    }
    if html || trimmed.starts_with(b"<") {
        return Err(not_jwt(url, format!("an HTML page ({} bytes)", body.len())));
    }
    let Ok(text) = std::str::from_utf8(trimmed) else {
        return Err(not_jwt(url, format!("{} bytes of binary data", body.len())));
    };
    match decode_claims(text) {
        Ok(_) => Ok(IdentityToken::new(text)),
        Err(why) => Err(not_jwt(url, format!("a {}-byte body ({why})", body.len()))),
    }
}

/// What to do when the service answers something other than a token.
const BASE_URL_HINT: &str = "pass the token service's base URL (without /token); the service \
                             answers POST /token with a bare JWT";

fn origin(url: &str) -> String {
    format!("the token service at {url}")
}

fn not_jwt(url: &str, what: String) -> Error {
    Error::Malformed {
        origin: origin(url),
        what,
        hint: BASE_URL_HINT.to_owned(),
    }
}

fn unreachable(url: &str, source: reqwest::Error) -> Error {
    super::http::unreachable(
        &origin(url),
        source,
        "check --token-service-url, HTTPS_PROXY/NO_PROXY, and --token-service-ca if the \
         service's certificate comes from a private CA",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_what_came_instead_of_a_jwt() {
        let e = |body: &[u8], html| {
            interpret("https://x/token", body, html)
                .unwrap_err()
                .to_string()
        };
        assert!(e(b"", false).contains("an empty body"));
        assert!(e(b"  \n", false).contains("an empty body"));
        assert!(e(b"<html>secret-page</html>", false).contains("an HTML page"));
        assert!(e(b"{}", true).contains("an HTML page"));
        let not = e(b"not-a-jwt-secretish", false);
        assert!(not.contains("not three dot-separated"), "{not}");
        assert!(!not.contains("secretish"), "{not}");
    }
}
