//! `sts-sidecar issuer`: the token service, so that the project is the whole system. It turns a
//! proof that the caller is a Cloud Foundry app instance into a JWT that AWS STS (or any OIDC
//! relying party) accepts, and publishes the keys that verify it.
//!
//! Proofs, the strongest by default ([`Accept`]):
//! 1. a signed assertion ([`assertion`]): the JWT bearer grant of RFC 7523, signed with the
//!    instance key; works through any router;
//! 2. mutual TLS ([`tls`]): a client certificate whose key the TLS handshake proved;
//! 3. `X-Forwarded-Client-Cert` ([`xfcc`]), only when asked for: a router's word, for routers
//!    that set it from the handshake (gorouter `sanitize_set`).
//!
//! Every proof ends in the same verification ([`ca`]): the chain verifies to a configured
//! instance identity CA, the leaf is valid now and allowed for client authentication, and its
//! subject names exactly one organization, space and app. Several proofs in one request must
//! name the same instance. The identity comes from the verified leaf only, never from a header,
//! and `iss` from the configuration, never from the request.
//!
//! The service is stateless but for each instance's memory of the assertions it accepted
//! (replays are refused per instance); keys and CA certificates are re-read when their files
//! change or on SIGHUP, a file that does not parse never replacing a working one.

pub mod assertion;
pub mod ca;
pub mod tls;
pub mod xfcc;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use rustls_pki_types::{CertificateDer, UnixTime};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::jws;
use crate::server::{Body, Limits, accept_until, json_response, text_response};
use ca::{CaBundle, Instance};

/// The grant type of RFC 7523's JWT bearer grant.
pub const GRANT_JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The largest request body read (an assertion with a two-certificate chain is about 4 KiB).
pub const MAX_BODY: usize = 64 * 1024;
/// How long a request's body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a key, certificate or CA bundle is read from.
#[derive(Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A PEM file, re-read when it changes.
    File(PathBuf),
    /// A variable holding the PEM text (read at start).
    Env {
        /// The variable.
        var: String,
        /// Its value.
        pem: Arc<Vec<u8>>,
    },
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::File(p) => write!(f, "File({})", p.display()),
            KeySource::Env { var, .. } => write!(f, "Env({var}, <redacted>)"),
        }
    }
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::File(p) => write!(f, "{}", p.display()),
            KeySource::Env { var, .. } => write!(f, "the variable {var}"),
        }
    }
}

/// What a file looked like when read: a change means read again.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
    ino: u64,
}

impl KeySource {
    fn read(&self) -> Result<Vec<u8>, LoadError> {
        match self {
            KeySource::File(path) => std::fs::read(path).map_err(|source| LoadError::Read {
                what: self.to_string(),
                source,
            }),
            KeySource::Env { pem, .. } => Ok(pem.as_ref().clone()),
        }
    }

    fn stamp(&self) -> Option<Stamp> {
        let KeySource::File(path) = self else {
            return None;
        };
        let meta = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let ino = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let ino = 0;
        Some(Stamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            ino,
        })
    }
}

/// Which proofs of identity are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accept {
    /// The signed assertion.
    pub assertion: bool,
    /// A client certificate over TLS.
    pub mtls: bool,
    /// `X-Forwarded-Client-Cert`.
    pub xfcc: bool,
}

impl Accept {
    /// The accepted kinds, for messages.
    pub fn names(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.assertion {
            out.push("assertion");
        }
        if self.mtls {
            out.push("mtls");
        }
        if self.xfcc {
            out.push("xfcc");
        }
        out
    }
}

/// The issuer's checked settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The `iss` claim and the assertions' `aud` (no trailing slash).
    pub issuer_url: String,
    /// Where the service listens.
    pub listen: SocketAddr,
    /// Where `listen` came from.
    pub listen_origin: String,
    /// Where the admin endpoint listens.
    pub admin_listen: SocketAddr,
    /// Where `admin_listen` came from.
    pub admin_listen_origin: String,
    /// The instance identity CA bundles.
    pub ca: Vec<KeySource>,
    /// The key that signs tokens.
    pub signing_key: KeySource,
    /// Keys published but not signing (the next one, the previous one).
    pub publish_keys: Vec<KeySource>,
    /// The TLS certificate and key, when the issuer serves HTTPS itself.
    pub tls: Option<(KeySource, KeySource)>,
    /// The proofs accepted.
    pub accept: Accept,
    /// The audiences tokens may be issued for; the first is the default.
    pub audiences: Vec<String>,
    /// A token's lifetime.
    pub lifetime: Duration,
    /// Organizations allowed (empty: all).
    pub allow_orgs: Vec<String>,
    /// Spaces allowed (empty: all).
    pub allow_spaces: Vec<String>,
    /// Put the three guids into AWS session tags.
    pub session_tags: bool,
    /// Put the instance guid into the AWS source identity.
    pub source_identity: bool,
    /// `Cache-Control: max-age` of the discovery document and the keys.
    pub jwks_max_age: Duration,
    /// How often key and CA files are looked at for changes.
    pub reload_interval: Duration,
    /// Connection limits.
    pub limits: Limits,
}

/// Why a key, certificate or bundle could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be read.
    #[error("cannot read {what}")]
    Read {
        /// The file.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A key does not parse or cannot sign.
    #[error("{what} {source}")]
    Key {
        /// The file or variable.
        what: String,
        /// Why.
        #[source]
        source: jws::KeyError,
    },
    /// A CA bundle holds nothing usable.
    #[error("{what} {source}")]
    Ca {
        /// The file or variable.
        what: String,
        /// Why.
        #[source]
        source: ca::CaError,
    },
    /// The TLS certificate and key cannot be used.
    #[error("{what}")]
    Tls {
        /// The files.
        what: String,
        /// Why.
        #[source]
        source: tls::TlsError,
    },
    /// The signing key is not RSA 2048+ or P-256.
    #[error("{what} is a {alg} key; tokens are signed with ES256 (P-256) or RS256 (RSA)")]
    SigningAlg {
        /// The file or variable.
        what: String,
        /// The key's algorithm.
        alg: &'static str,
    },
}

/// Everything read from files: keys, CA certificates, TLS.
#[derive(Debug)]
struct Material {
    signer: jws::Signer,
    jwks: Bytes,
    discovery: Bytes,
    ca: CaBundle,
    tls: Option<Arc<rustls::ServerConfig>>,
    stamps: Vec<Option<Stamp>>,
}

impl Material {
    fn load(s: &Settings) -> Result<Material, LoadError> {
        let stamps = sources(s).map(KeySource::stamp).collect();
        let key_error = |src: &KeySource| {
            let what = src.to_string();
            move |source| LoadError::Key { what, source }
        };
        let signer =
            jws::Signer::from_pem(&s.signing_key.read()?).map_err(key_error(&s.signing_key))?;
        if signer.alg() == jws::Alg::Es384 {
            return Err(LoadError::SigningAlg {
                what: s.signing_key.to_string(),
                alg: "P-384",
            });
        }
        let mut published = vec![signer.public().clone()];
        for src in &s.publish_keys {
            let key = jws::PublicKey::from_pem(&src.read()?).map_err(key_error(src))?;
            if !published.iter().any(|k| k.kid() == key.kid()) {
                published.push(key);
            }
        }
        let mut algs: Vec<&str> = published.iter().map(|k| k.alg().name()).collect();
        algs.sort_unstable();
        algs.dedup();
        let jwks = serde_json::json!({
            "keys": published.iter().map(jws::PublicKey::jwk).collect::<Vec<_>>()
        });
        let discovery = serde_json::json!({
            "issuer": s.issuer_url,
            "jwks_uri": format!("{}/token_keys", s.issuer_url),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": algs,
            "claims_supported": ["iss", "sub", "aud", "iat", "exp", "jti", "org_guid",
                                 "space_guid", "app_guid", "instance_guid"],
        });
        let mut ca_pems = Vec::new();
        for src in &s.ca {
            ca_pems.push((src, src.read()?));
        }
        let ca = CaBundle::from_pems(ca_pems.iter().map(|(_, p)| p.as_slice())).map_err(|e| {
            LoadError::Ca {
                what: ca_pems
                    .iter()
                    .map(|(s, _)| s.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                source: e,
            }
        })?;
        let tls = match &s.tls {
            None => None,
            Some((cert, key)) => Some(
                tls::server_config(&cert.read()?, &key.read()?, ca.subjects().to_vec()).map_err(
                    |source| LoadError::Tls {
                        what: format!("the TLS certificate {cert} and key {key}"),
                        source,
                    },
                )?,
            ),
        };
        Ok(Material {
            signer,
            jwks: Bytes::from(jwks.to_string()),
            discovery: Bytes::from(discovery.to_string()),
            ca,
            tls,
            stamps,
        })
    }
}

fn sources(s: &Settings) -> impl Iterator<Item = &KeySource> {
    std::iter::once(&s.signing_key)
        .chain(&s.publish_keys)
        .chain(&s.ca)
        .chain(s.tls.iter().flat_map(|(c, k)| [c, k]))
}

/// Why a request was refused. Each variant is a reason label in the metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The request is not a token request we can read.
    #[error("{0}")]
    Malformed(String),
    /// Another grant type.
    #[error("grant_type must be {GRANT_JWT_BEARER} (or no body, for a client certificate)")]
    UnsupportedGrant,
    /// No accepted proof at all.
    #[error("{0}")]
    NoProof(String),
    /// The assertion cannot be read.
    #[error("{0}")]
    Assertion(String),
    /// The chain does not verify, or the leaf is not an instance identity.
    #[error("{0}")]
    Chain(String),
    /// The leaf is expired or not valid yet.
    #[error("{0}")]
    Validity(String),
    /// The subject does not name one organization, space and app.
    #[error("{0}")]
    Subject(String),
    /// The assertion's signature, or its `iss`/`sub`.
    #[error("{0}")]
    Signature(String),
    /// The assertion was made for another issuer.
    #[error("{0}")]
    Audience(String),
    /// The assertion is too old, from the future, expired or too long-lived.
    #[error("{0}")]
    Stale(String),
    /// The assertion was used before.
    #[error("the assertion was used before (its jti is known)")]
    Replay,
    /// The `X-Forwarded-Client-Cert` header cannot be read.
    #[error("X-Forwarded-Client-Cert {0}")]
    Xfcc(String),
    /// Two proofs name different instances.
    #[error("the proofs in the request name different instances")]
    Disagree,
    /// The organization is not allowed.
    #[error("the organization {0} is not allowed")]
    Org(String),
    /// The space is not allowed.
    #[error("the space {0} is not allowed")]
    Space(String),
    /// The audience is not allowed.
    #[error("the audience {0:?} is not allowed")]
    AudienceNotAllowed(String),
    /// Too many assertions remembered.
    #[error("too many assertions in flight; retry")]
    Busy,
}

impl Refusal {
    /// The label in `sts_sidecar_issuer_refusals_total{reason=...}`.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Malformed(_) => "malformed",
            Refusal::UnsupportedGrant => "grant_type",
            Refusal::NoProof(_) => "no_proof",
            Refusal::Assertion(_) => "assertion",
            Refusal::Chain(_) => "chain",
            Refusal::Validity(_) => "validity",
            Refusal::Subject(_) => "subject",
            Refusal::Signature(_) => "signature",
            Refusal::Audience(_) => "assertion_audience",
            Refusal::Stale(_) => "stale",
            Refusal::Replay => "replay",
            Refusal::Xfcc(_) => "xfcc",
            Refusal::Disagree => "proofs_disagree",
            Refusal::Org(_) => "org_not_allowed",
            Refusal::Space(_) => "space_not_allowed",
            Refusal::AudienceNotAllowed(_) => "audience_not_allowed",
            Refusal::Busy => "busy",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Refusal::Malformed(_) | Refusal::UnsupportedGrant => StatusCode::BAD_REQUEST,
            Refusal::Org(_) | Refusal::Space(_) | Refusal::AudienceNotAllowed(_) => {
                StatusCode::FORBIDDEN
            }
            Refusal::Busy => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Refusal::Malformed(_) => "invalid_request",
            Refusal::UnsupportedGrant => "unsupported_grant_type",
            Refusal::Org(_) | Refusal::Space(_) => "access_denied",
            Refusal::AudienceNotAllowed(_) => "invalid_target",
            Refusal::Busy => "temporarily_unavailable",
            _ => "invalid_client",
        }
    }

    fn response(&self) -> Response<Body> {
        let body = serde_json::json!({
            "error": self.code(),
            "error_description": self.to_string(),
        });
        let mut r = json_response(self.status(), Bytes::from(body.to_string()));
        if self.status() == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_client\""),
            );
        }
        if *self == Refusal::Busy {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AudienceLabel {
    audience: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// The issuer's metrics.
struct IssuerMetrics {
    registry: Registry,
    issued: Family<AudienceLabel, Counter>,
    refused: Family<ReasonLabel, Counter>,
    duration: Family<OutcomeLabel, Histogram>,
    remembered: Gauge,
}

impl IssuerMetrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("sts_sidecar_issuer");
        let issued = Family::<AudienceLabel, Counter>::default();
        registry.register(
            "tokens_issued",
            "Tokens issued, by audience",
            issued.clone(),
        );
        let refused = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "refusals",
            "Token requests refused, by reason",
            refused.clone(),
        );
        let duration = Family::<OutcomeLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
        });
        registry.register(
            "request_duration_seconds",
            "Time to answer a token request, by outcome",
            duration.clone(),
        );
        let remembered = Gauge::default();
        registry.register(
            "assertions_remembered",
            "Assertion ids held to refuse replays",
            remembered.clone(),
        );
        Self {
            registry,
            issued,
            refused,
            duration,
            remembered,
        }
    }
}

impl std::fmt::Debug for IssuerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IssuerMetrics")
    }
}

/// The service's state, shared by every connection.
#[derive(Debug)]
pub struct Issuer {
    settings: Settings,
    material: ArcSwap<Material>,
    replay: assertion::Replay,
    metrics: IssuerMetrics,
}

/// A client certificate chain a TLS handshake presented (its key proven by the handshake).
pub type PeerChain = Arc<Vec<CertificateDer<'static>>>;

impl Issuer {
    /// The service for `settings`, its files read (an error names the file).
    pub fn new(settings: Settings) -> Result<Issuer, LoadError> {
        let material = Material::load(&settings)?;
        Ok(Issuer {
            settings,
            material: ArcSwap::from_pointee(material),
            replay: assertion::Replay::new(),
            metrics: IssuerMetrics::new(),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The `kid` tokens are signed with now.
    pub fn signing_kid(&self) -> String {
        self.material.load().signer.public().kid().to_owned()
    }

    /// Reads the files again when one changed (or `force`), replacing the keys, CA
    /// certificates and TLS configuration together; a file that does not load leaves the
    /// working ones in place. Returns whether anything was replaced.
    pub fn reload(&self, force: bool) -> Result<bool, LoadError> {
        let current = self.material.load();
        let stamps: Vec<Option<Stamp>> = sources(&self.settings).map(KeySource::stamp).collect();
        if !force && stamps == current.stamps {
            return Ok(false);
        }
        let material = Material::load(&self.settings)?;
        let changed_kid = material.signer.public().kid() != current.signer.public().kid();
        self.material.store(Arc::new(material));
        tracing::info!(
            signing_kid = %self.signing_kid(),
            changed_signing_key = changed_kid,
            "keys and certificates reloaded"
        );
        Ok(true)
    }

    /// The Prometheus text of the metrics.
    pub fn encode_metrics(&self) -> String {
        self.metrics
            .remembered
            .set(i64::try_from(self.replay.len()).unwrap_or(i64::MAX));
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.metrics.registry);
        out
    }

    /// Answers one request on the service listener; `peer` is the client certificate chain of
    /// a TLS connection.
    pub async fn handle(&self, req: Request<Incoming>, peer: Option<PeerChain>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let cache = |mut r: Response<Body>| {
            let value = format!("public, max-age={}", self.settings.jwks_max_age.as_secs());
            if let Ok(v) = HeaderValue::from_str(&value) {
                r.headers_mut().insert(header::CACHE_CONTROL, v);
            }
            r
        };
        match (&parts.method, parts.uri.path()) {
            (&Method::POST, "/token") => {}
            (&Method::GET, "/.well-known/openid-configuration") => {
                return cache(json_response(
                    StatusCode::OK,
                    self.material.load().discovery.clone(),
                ));
            }
            (&Method::GET, "/token_keys" | "/.well-known/jwks.json") => {
                let mut r = cache(json_response(
                    StatusCode::OK,
                    self.material.load().jwks.clone(),
                ));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                return r;
            }
            (&Method::GET, "/healthz" | "/ready") => return text_response(StatusCode::OK, "ok\n"),
            (_, "/token") => return method_not_allowed("POST"),
            (
                _,
                "/.well-known/openid-configuration"
                | "/token_keys"
                | "/.well-known/jwks.json"
                | "/healthz"
                | "/ready",
            ) => return method_not_allowed("GET"),
            _ => {
                return json_response(
                    StatusCode::NOT_FOUND,
                    Bytes::from_static(br#"{"error":"not_found"}"#),
                );
            }
        }
        let started = tokio::time::Instant::now();
        let body = read_body(body).await;
        let result = match body {
            Ok(body) => self.token(&parts, &body, peer.as_deref().map(Vec::as_slice)),
            Err(refusal) => Err(refusal),
        };
        let outcome = if result.is_ok() { "issued" } else { "refused" };
        self.metrics
            .duration
            .get_or_create(&OutcomeLabel { outcome })
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok((token, audience)) => {
                self.metrics
                    .issued
                    .get_or_create(&AudienceLabel { audience })
                    .inc();
                let mut r = Response::new(http_body_util::Full::new(Bytes::from(token)));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/jwt"),
                );
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                r
            }
            Err(refusal) => {
                self.metrics
                    .refused
                    .get_or_create(&ReasonLabel {
                        reason: refusal.reason(),
                    })
                    .inc();
                // The description names what failed, never the assertion or a certificate.
                tracing::info!(
                    reason = refusal.reason(),
                    status = refusal.status().as_u16(),
                    description = %refusal,
                    "token request refused"
                );
                refusal.response()
            }
        }
    }

    /// A token for the instance the request proves, and its audience.
    fn token(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
        peer: Option<&[CertificateDer<'static>]>,
    ) -> Result<(String, String), Refusal> {
        let form = Form::read(parts, body)?;
        let accept = self.settings.accept;
        let material = self.material.load();
        let now = crate::clock::now_unix();
        let unix_now =
            UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(now).unwrap_or(0)));
        let mut proven: Vec<(&'static str, Instance)> = Vec::new();
        let mut pending_jti: Option<(String, i64)> = None;
        if accept.assertion
            && let Some(token) = &form.assertion
        {
            let a = assertion::parse(token)?;
            a.check_claims(&self.settings.issuer_url, now)?;
            let (instance, spki) = material.ca.verify(&a.chain, unix_now)?;
            a.check_signature(&spki, &instance.instance)?;
            pending_jti = Some((a.jti.clone(), a.exp));
            proven.push(("assertion", instance));
        }
        if accept.mtls
            && let Some(chain) = peer.filter(|c| !c.is_empty())
        {
            let (instance, _) = material.ca.verify(chain, unix_now)?;
            proven.push(("mtls", instance));
        }
        if accept.xfcc {
            let mut values = parts.headers.get_all("x-forwarded-client-cert").iter();
            match (values.next(), values.next()) {
                (None, _) => {}
                (Some(_), Some(_)) => {
                    return Err(Refusal::Xfcc("appears more than once".to_owned()));
                }
                (Some(value), None) => {
                    let chain =
                        xfcc::parse(value.as_bytes()).map_err(|e| Refusal::Xfcc(e.to_string()))?;
                    let (instance, _) = material.ca.verify(&chain, unix_now)?;
                    proven.push(("xfcc", instance));
                }
            }
        }
        let Some((_, instance)) = proven.first() else {
            return Err(Refusal::NoProof(format!(
                "no proof of identity: send {} (accepted: {})",
                if accept.assertion {
                    "a signed assertion (grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer)"
                } else if accept.mtls {
                    "a client certificate over TLS"
                } else {
                    "the certificate in X-Forwarded-Client-Cert"
                },
                accept.names().join(", ")
            )));
        };
        if proven.iter().any(|(_, other)| other != instance) {
            return Err(Refusal::Disagree);
        }
        let refused = |refusal: Refusal| {
            tracing::info!(
                org_guid = %instance.org,
                space_guid = %instance.space,
                app_guid = %instance.app,
                instance_guid = %instance.instance,
                "a proven instance is not allowed a token"
            );
            Err(refusal)
        };
        let s = &self.settings;
        if !s.allow_orgs.is_empty() && !s.allow_orgs.contains(&instance.org) {
            return refused(Refusal::Org(instance.org.clone()));
        }
        if !s.allow_spaces.is_empty() && !s.allow_spaces.contains(&instance.space) {
            return refused(Refusal::Space(instance.space.clone()));
        }
        let audience = match &form.audience {
            None => s.audiences.first().cloned().unwrap_or_default(),
            Some(a) if s.audiences.contains(a) => a.clone(),
            Some(a) => return refused(Refusal::AudienceNotAllowed(a.clone())),
        };
        // Remember the assertion only once everything about it checked out, so that
        // unverified requests cannot fill the memory.
        if let Some((jti, exp)) = &pending_jti {
            self.replay.accept(jti, *exp, now)?;
        }
        let token = self
            .sign(&material.signer, instance, &audience, now)
            .map_err(|e| Refusal::Malformed(format!("internal: {e}")))?;
        let proofs: Vec<&str> = proven.iter().map(|(k, _)| *k).collect();
        tracing::info!(
            org_guid = %instance.org,
            space_guid = %instance.space,
            app_guid = %instance.app,
            instance_guid = %instance.instance,
            audience = %audience,
            proofs = %proofs.join(","),
            "token issued"
        );
        Ok((token, audience))
    }

    fn sign(
        &self,
        signer: &jws::Signer,
        instance: &Instance,
        audience: &str,
        now: i64,
    ) -> Result<String, jws::SignError> {
        let s = &self.settings;
        let lifetime = i64::try_from(s.lifetime.as_secs()).unwrap_or(3600);
        let mut jti = [0u8; 16];
        if aws_lc_rs::rand::fill(&mut jti).is_err() {
            jti = rand::random();
        }
        let mut claims = serde_json::json!({
            "iss": s.issuer_url,
            "sub": instance.subject(),
            "aud": audience,
            "iat": now,
            "exp": now + lifetime,
            "jti": jws::b64url(&jti),
            "org_guid": instance.org,
            "space_guid": instance.space,
            "app_guid": instance.app,
            "instance_guid": instance.instance,
        });
        if s.session_tags {
            claims["https://aws.amazon.com/tags"] = serde_json::json!({
                "principal_tags": {
                    "org_guid": [instance.org],
                    "space_guid": [instance.space],
                    "app_guid": [instance.app],
                }
            });
        }
        if s.source_identity {
            claims["https://aws.amazon.com/source_identity"] = instance.instance.clone().into();
        }
        signer.sign(
            serde_json::json!({"kid": signer.public().kid(), "typ": "JWT"}),
            &claims,
        )
    }
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        Bytes::from_static(
            br#"{"error":"invalid_request","error_description":"method not allowed"}"#,
        ),
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

async fn read_body(body: Incoming) -> Result<Bytes, Refusal> {
    let limited = http_body_util::Limited::new(body, MAX_BODY);
    match tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(_)) => Err(Refusal::Malformed(format!(
            "the body is larger than {MAX_BODY} bytes or was cut off"
        ))),
        Err(_) => Err(Refusal::Malformed(
            "the body did not arrive in time".to_owned(),
        )),
    }
}

/// The token request's form (body) and query.
#[derive(Debug, Default)]
struct Form {
    assertion: Option<String>,
    audience: Option<String>,
}

impl Form {
    fn read(parts: &http::request::Parts, body: &[u8]) -> Result<Form, Refusal> {
        let mut form = Form::default();
        let mut grant: Option<String> = None;
        let mut seen = std::collections::HashSet::new();
        let mut take = |k: &str, v: String, form: &mut Form| -> Result<(), Refusal> {
            if !seen.insert(k.to_owned()) {
                return Err(Refusal::Malformed(format!("{k} is given more than once")));
            }
            match k {
                "grant_type" => grant = Some(v),
                "assertion" => form.assertion = Some(v),
                "audience" => form.audience = Some(v),
                _ => {}
            }
            Ok(())
        };
        if let Some(query) = parts.uri.query() {
            for (k, v) in form_urlencoded::parse(query.as_bytes()) {
                if k == "audience" {
                    take(&k, v.into_owned(), &mut form)?;
                }
            }
        }
        if !body.trim_ascii().is_empty() {
            let content_type = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|v| {
                    v.split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_ascii_lowercase()
                });
            if content_type.as_deref() != Some("application/x-www-form-urlencoded") {
                return Err(Refusal::Malformed(
                    "the body must be application/x-www-form-urlencoded".to_owned(),
                ));
            }
            for (k, v) in form_urlencoded::parse(body) {
                take(&k, v.into_owned(), &mut form)?;
            }
        }
        match (grant.as_deref(), &form.assertion) {
            (Some(GRANT_JWT_BEARER), Some(_)) | (None, None) => Ok(form),
            (Some(GRANT_JWT_BEARER), None) => Err(Refusal::Malformed(
                "grant_type is the JWT bearer grant but there is no assertion".to_owned(),
            )),
            (Some(_), _) => Err(Refusal::UnsupportedGrant),
            (None, Some(_)) => Err(Refusal::Malformed(format!(
                "an assertion needs grant_type={GRANT_JWT_BEARER}"
            ))),
        }
    }
}

/// A running issuer: the service listener, the admin listener, the reload task.
#[derive(Debug)]
pub struct Running {
    /// Where the service listens.
    pub addr: SocketAddr,
    /// Where the admin endpoint listens.
    pub admin_addr: SocketAddr,
    /// The service state.
    pub issuer: Arc<Issuer>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    reload: JoinHandle<()>,
}

impl Running {
    /// Stops accepting, lets requests in flight finish, stops reloading.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        self.reload.abort();
    }
}

/// Why the issuer could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A bound listener has no local address.
    #[error("the {what} listener has no local address")]
    Listener {
        /// Which.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Serves `issuer` on already bound listeners; re-reads its files every reload interval and
/// when `reload_now` fires (SIGHUP).
pub fn start(
    issuer: Arc<Issuer>,
    listener: TcpListener,
    admin: TcpListener,
    mut reload_now: tokio::sync::mpsc::Receiver<()>,
) -> Result<Running, StartError> {
    let local = |l: &TcpListener, what| {
        l.local_addr()
            .map_err(|source| StartError::Listener { what, source })
    };
    let addr = local(&listener, "issuer")?;
    let admin_addr = local(&admin, "admin")?;
    let (stop, stopped) = watch::channel(false);
    let until = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let limits = issuer.settings.limits;
    let service = tokio::spawn(serve(
        listener,
        limits,
        issuer.clone(),
        until(stopped.clone()),
    ));
    let admin_issuer = issuer.clone();
    let admin_task = tokio::spawn(crate::server::serve(
        admin,
        limits,
        move |req: Request<Incoming>| {
            let issuer = admin_issuer.clone();
            async move { admin_answer(&issuer, &req) }
        },
        until(stopped),
    ));
    let reloading = issuer.clone();
    let interval = issuer.settings.reload_interval;
    let reload = tokio::spawn(async move {
        loop {
            let force = tokio::select! {
                () = tokio::time::sleep(interval) => false,
                got = reload_now.recv() => got.is_some(),
            };
            if let Err(e) = reloading.reload(force) {
                tracing::error!(
                    error = %crate::report::chain(&e),
                    "cannot reload the keys and certificates; the ones loaded before stay in use"
                );
            }
        }
    });
    Ok(Running {
        addr,
        admin_addr,
        issuer,
        stop,
        tasks: vec![service, admin_task],
        reload,
    })
}

fn admin_answer<B>(issuer: &Issuer, req: &Request<B>) -> Response<Body> {
    if req.method() != Method::GET {
        return method_not_allowed("GET");
    }
    match req.uri().path() {
        "/healthz" | "/ready" => text_response(StatusCode::OK, "ok\n"),
        "/metrics" => {
            let mut r = text_response(StatusCode::OK, issuer.encode_metrics());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        _ => json_response(
            StatusCode::NOT_FOUND,
            Bytes::from_static(br#"{"error":"not_found"}"#),
        ),
    }
}

/// The service listener: plain HTTP, or TLS with an optional client certificate, with the
/// sidecar's connection limits.
async fn serve(
    listener: TcpListener,
    limits: Limits,
    issuer: Arc<Issuer>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    accept_until(listener, &limits, shutdown, |accepted, connections| {
        let tls = issuer.material.load().tls.clone();
        let issuer = issuer.clone();
        let later = connections.later();
        match tls {
            None => {
                later.spawn_accepted(accepted, move |req| {
                    let issuer = issuer.clone();
                    async move { issuer.handle(req, None).await }
                });
            }
            Some(config) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                let (stream, handshake_done) = accepted.take_stream();
                let slot = handshake_done.slot.reference();
                let task = tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                    let Ok(Ok(tls)) = handshake else {
                        tracing::debug!("TLS handshake failed or timed out");
                        return;
                    };
                    let peer: Option<PeerChain> = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .map(|c| Arc::new(c.iter().map(|c| c.clone().into_owned()).collect()));
                    let task = handshake_done.spawn(later, tls, move |req| {
                        let issuer = issuer.clone();
                        let peer = peer.clone();
                        async move { issuer.handle(req, peer).await }
                    });
                    let _ = task.await;
                });
                // A slow handshake is a waiting connection too: its slot can be taken.
                slot.closes_with(task.abort_handle());
            }
        }
    })
    .await;
}
