//! Where the identity token (the JWT that STS `AssumeRoleWithWebIdentity` accepts) comes from,
//! and how long it is kept.
//!
//! A [`Source`] is one way of getting a token (a closed set: one file per variant). Each variant
//! provides three things: [`Source::probe`], a cheap look at what tells the cache that a cached
//! token is stale (the identity certificate's bytes, a token file's identity, or nothing);
//! [`Source::fetch`], one attempt at a token; and a label for metrics and logs.
//!
//! A [`TokenSource`] puts the one cache in front of a source, the same for every variant: a token
//! that is a JWT is reused until shortly before its own `exp` (never past it) unless the probe
//! changed; an opaque token is fetched again for every STS call; [`TokenSource::invalidate`]
//! (after STS said `InvalidIdentityToken` or `ExpiredTokenException`) forces a fresh one.
//! Concurrent callers share one fetch. This module decodes claims (it does not verify
//! signatures: STS does that) and never logs or prints a token.

pub mod command;
pub mod file;
pub mod gcp_metadata;
pub mod github_actions;
mod http;
mod jwt;
pub mod oidc;
pub mod token_service;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

pub use command::CommandSource;
pub use file::TokenFile;
pub use gcp_metadata::GcpMetadata;
pub use github_actions::GithubActions;
pub use jwt::{Claims, JwtError, decode_claims};
pub use oidc::Oidc;
pub use token_service::TokenService;

use crate::config::SourceSettings;
use crate::identity::IdentityPair;
use crate::metrics::Metrics;

crate::secret::secret_string!(
    /// A token that proves the app's identity to STS (usually a JWT).
    IdentityToken
);

/// A JWT must be replaced when less than this much of its lifetime is left (or half its
/// lifetime, if that is shorter).
const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// A JWT with less than this left is treated as already expired.
const TOKEN_MIN_LIFETIME: Duration = Duration::from_secs(10);

/// The ways of getting an identity token (a closed set: one file per variant).
#[derive(Debug)]
pub enum Source {
    /// `token-service`: the CF Identity Token Service, called over mTLS with the instance
    /// identity.
    TokenService(TokenService),
    /// `file`: a token file another process keeps fresh (Kubernetes, IRSA).
    File(TokenFile),
    /// `gcp-metadata`: a Google ID token from the GCP metadata server.
    GcpMetadata(GcpMetadata),
    /// `oidc`: the client-credentials grant at an OIDC provider.
    Oidc(Oidc),
    /// `github-actions`: the OIDC token of a GitHub Actions job.
    GithubActions(GithubActions),
    /// `command`: a program that prints a token.
    Command(CommandSource),
}

/// What a source found out before fetching: whether a cached token is still current, and what
/// the fetch needs.
#[derive(Debug)]
pub struct Probe {
    /// Compared with the stamp of the cached token: a different one means "fetch again".
    pub stamp: Stamp,
    /// The identity certificate and key, for sources that present them.
    pub identity: Option<IdentityPair>,
}

/// What a cached token was obtained from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stamp {
    /// Nothing observable: only the token's own `exp` decides.
    Nothing,
    /// The bytes of the certificate file: a rotation changes them.
    Certificate(Arc<Vec<u8>>),
    /// What a token file's path resolves to.
    File(file::FileId),
}

/// Where a token came from, for messages: `kind` is the source kind (`token-service`, ...),
/// `name` the configured source name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceName {
    /// The configured name (`[source.NAME]`).
    pub name: String,
    /// The kind, as written in the config (`type = "..."`).
    pub kind: &'static str,
}

/// Why a source could not be set up at start (before any network call).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The token service's CA bundle.
    #[error(transparent)]
    TokenService(#[from] token_service::SetupError),
    /// An HTTP client could not be set up.
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
}

impl Source {
    /// The source the config describes. Reads local files (a CA bundle); makes no network call.
    pub fn from_settings(settings: &SourceSettings) -> Result<Source, SetupError> {
        Ok(match settings {
            SourceSettings::TokenService(s) => {
                Source::TokenService(TokenService::from_settings(s)?)
            }
            SourceSettings::File(s) => Source::File(TokenFile::new(s)),
            SourceSettings::GcpMetadata(s) => {
                Source::GcpMetadata(GcpMetadata::new(s).map_err(SetupError::Client)?)
            }
            SourceSettings::Oidc(s) => Source::Oidc(Oidc::new(s).map_err(SetupError::Client)?),
            SourceSettings::GithubActions(s) => {
                Source::GithubActions(GithubActions::new(s).map_err(SetupError::Client)?)
            }
            SourceSettings::Command(s) => Source::Command(CommandSource::new(s)),
        })
    }

    /// The kind, as written in the config.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::TokenService(_) => "token-service",
            Source::File(_) => "file",
            Source::GcpMetadata(_) => "gcp-metadata",
            Source::Oidc(_) => "oidc",
            Source::GithubActions(_) => "github-actions",
            Source::Command(_) => "command",
        }
    }

    /// The label of this source's upstream in metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Source::TokenService(_) => "token_service",
            Source::File(_) => "token_file",
            Source::GcpMetadata(_) => "gcp_metadata",
            Source::Oidc(_) => "oidc",
            Source::GithubActions(_) => "github_actions",
            Source::Command(_) => "command",
        }
    }

    /// Where tokens come from, for logs, `/status` and `check` (a URL, a path, a program).
    pub fn origin(&self) -> String {
        match self {
            Source::TokenService(s) => format!("token service {}", s.url()),
            Source::File(s) => s.origin(),
            Source::GcpMetadata(s) => s.origin(),
            Source::Oidc(s) => s.origin(),
            Source::GithubActions(s) => s.origin(),
            Source::Command(s) => s.origin(),
        }
    }

    /// Looks at what decides whether a cached token is still current.
    pub async fn probe(&self) -> Result<Probe, Error> {
        match self {
            Source::TokenService(s) => {
                let pair = s.identity().read_pair().await?;
                Ok(Probe {
                    stamp: Stamp::Certificate(pair.cert_pem.clone()),
                    identity: Some(pair),
                })
            }
            Source::File(s) => s.probe().await,
            Source::GcpMetadata(_)
            | Source::Oidc(_)
            | Source::GithubActions(_)
            | Source::Command(_) => Ok(Probe {
                stamp: Stamp::Nothing,
                identity: None,
            }),
        }
    }

    /// One attempt at a token (no retries: the refresher owns retry policy).
    pub async fn fetch(&self, probe: &Probe) -> Result<IdentityToken, Error> {
        match self {
            Source::TokenService(s) => match &probe.identity {
                Some(pair) => s.fetch(pair).await,
                None => Err(Error::Unavailable {
                    origin: self.origin(),
                    detail: "internal: no identity pair was read".to_owned(),
                    hint: String::new(),
                }),
            },
            Source::File(s) => s.fetch().await,
            Source::GcpMetadata(s) => s.fetch().await,
            Source::Oidc(s) => s.fetch().await,
            Source::GithubActions(s) => s.fetch().await,
            Source::Command(s) => s.fetch().await,
        }
    }
}

/// What the cache in front of a source needs from it. [`Source`] is the production
/// implementation; the fleet benchmark (`bench/fleet.rs`) implements it with a simulated token
/// service so that its numbers come from this module's cache.
pub trait Fetch: std::fmt::Debug + Send + Sync + 'static {
    /// Looks at what decides whether a cached token is still current.
    fn probe(&self) -> impl std::future::Future<Output = Result<Probe, Error>> + Send;
    /// One attempt at a token (no retries: the refresher owns retry policy).
    fn fetch(
        &self,
        probe: &Probe,
    ) -> impl std::future::Future<Output = Result<IdentityToken, Error>> + Send;
    /// The label of this source's upstream in metrics.
    fn metric_label(&self) -> &'static str;
    /// Where tokens come from, for logs, `/status` and `check`.
    fn origin(&self) -> String;
}

impl Fetch for Source {
    async fn probe(&self) -> Result<Probe, Error> {
        Source::probe(self).await
    }

    async fn fetch(&self, probe: &Probe) -> Result<IdentityToken, Error> {
        Source::fetch(self, probe).await
    }

    fn metric_label(&self) -> &'static str {
        Source::metric_label(self)
    }

    fn origin(&self) -> String {
        Source::origin(self)
    }
}

/// A token source with its cache.
#[derive(Debug)]
pub struct TokenSource<S: Fetch = Source> {
    name: String,
    source: S,
    cache: tokio::sync::Mutex<Option<Cached>>,
    metrics: Arc<Metrics>,
    renew_at_half_life: bool,
}

#[derive(Debug)]
struct Cached {
    token: IdentityToken,
    claims: Claims,
    /// From here on a fetch is tried; if it fails the cached token is still used.
    renew_at: Instant,
    /// From here on the cached token is not used any more.
    refetch_at: Instant,
    stamp: Stamp,
}

/// Why no identity token could be had. Every variant names its origin (a URL, a path, a
/// program or a variable) and never the token; [`Error::hint`] says what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The certificate or key could not be read.
    #[error(transparent)]
    Identity(#[from] crate::identity::Error),
    /// The upstream could not be reached or did not answer in time.
    #[error("cannot reach {origin}: {detail}")]
    Unreachable {
        /// What was called, e.g. `the token service at https://.../token`.
        origin: String,
        /// The transport error, with its causes.
        detail: String,
        /// Whether it was a timeout.
        timed_out: bool,
        /// What to do about it.
        hint: String,
    },
    /// The upstream refused the request (401, 403, an OAuth error).
    #[error("{origin} {detail}")]
    Refused {
        /// What was called.
        origin: String,
        /// What it said, e.g. `refused the client certificate (HTTP 403 Forbidden)`.
        detail: String,
        /// What to do about it.
        hint: String,
    },
    /// The upstream answered with another error status.
    #[error("{origin} answered HTTP {status}")]
    Status {
        /// What was called.
        origin: String,
        /// The HTTP status.
        status: u16,
        /// What to do about it.
        hint: String,
    },
    /// The upstream answered 2xx with something that is not a token.
    #[error("{origin} answered with {what}, not a token")]
    Malformed {
        /// What was called.
        origin: String,
        /// What came instead (its shape, never its content).
        what: String,
        /// What to do about it.
        hint: String,
    },
    /// The token is already expired (or expires within seconds).
    #[error("the identity token from {origin} has already expired (exp {exp})")]
    Expired {
        /// Where it came from.
        origin: String,
        /// Its `exp` claim.
        exp: i64,
    },
    /// The source has nothing to give yet: a missing or empty file, a missing variable, a
    /// command that failed.
    #[error("{origin}: {detail}")]
    Unavailable {
        /// The path, variable or program.
        origin: String,
        /// What is wrong.
        detail: String,
        /// What to do about it.
        hint: String,
    },
}

impl Error {
    /// What the user should do about it (printed by `check`).
    pub fn hint(&self) -> String {
        match self {
            Error::Identity(e) => e.hint(),
            Error::Unreachable { hint, .. }
            | Error::Refused { hint, .. }
            | Error::Status { hint, .. }
            | Error::Malformed { hint, .. }
            | Error::Unavailable { hint, .. } => hint.clone(),
            Error::Expired { .. } => "the source issues already-expired tokens: check its clock \
                                      and this machine's (NTP)"
                .to_owned(),
        }
    }
}

impl<S: Fetch> TokenSource<S> {
    /// Wraps the source named `name` with an empty cache.
    pub fn new(name: impl Into<String>, source: S, metrics: Arc<Metrics>) -> Self {
        Self {
            name: name.into(),
            source,
            cache: tokio::sync::Mutex::new(None),
            metrics,
            renew_at_half_life: true,
        }
    }

    /// Whether a JWT is renewed from half its life on, keeping the cached one while the source
    /// fails (the default), or only when it must be replaced, shortly before `exp` (the fleet
    /// benchmark compares both).
    pub fn renewing_at_half_life(mut self, on: bool) -> Self {
        self.renew_at_half_life = on;
        self
    }

    /// The configured name of the source.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The source itself.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// A valid identity token, with its claims when it is a JWT: the cached one, or a fresh one
    /// if it is near expiry, the probe changed (a rotation), or it was invalidated.
    pub async fn token(&self) -> Result<(IdentityToken, Option<Claims>), Error> {
        let mut cache = self.cache.lock().await;
        let probe = self.source.probe().await?;
        if let Some(pair) = &probe.identity {
            self.metrics.set_certificate_expiry(pair.leaf.not_after);
        }
        // A cached token that is past its renewal point but may still be used is kept if the
        // fetch fails, so a source that is down for a while costs nothing until the token nears
        // its own expiry.
        let mut keep_on_failure = false;
        if let Some(cached) = cache.as_ref() {
            let same = cached.stamp == probe.stamp;
            let now = Instant::now();
            if same && now < cached.renew_at {
                return Ok((cached.token.clone(), Some(cached.claims.clone())));
            }
            keep_on_failure = same && now < cached.refetch_at;
            if !same {
                tracing::info!(source = %self.name, "identity changed, fetching a new identity token");
            }
        }
        let started = Instant::now();
        let result = self.source.fetch(&probe).await;
        self.metrics.observe_upstream(
            self.source.metric_label(),
            result.is_ok(),
            started.elapsed(),
        );
        if let (Err(e), Some(cached)) = (&result, cache.as_ref().filter(|_| keep_on_failure)) {
            tracing::warn!(
                source = %self.name,
                error = %e,
                exp = cached.claims.exp,
                "cannot renew the identity token; using the cached one until it nears expiry"
            );
            return Ok((cached.token.clone(), Some(cached.claims.clone())));
        }
        let token = result?;
        let Ok(claims) = decode_claims(token.expose()) else {
            // Opaque (or a JWT without exp): nothing tells how long it lives, so it is not kept.
            *cache = None;
            tracing::debug!(source = %self.name, "fetched an opaque identity token");
            return Ok((token, None));
        };
        let lifetime = crate::clock::until_unix(claims.exp);
        if lifetime < TOKEN_MIN_LIFETIME {
            return Err(Error::Expired {
                origin: self.source.origin(),
                exp: claims.exp,
            });
        }
        self.metrics
            .set_identity_token_expiry(&self.name, claims.exp);
        let margin = TOKEN_REFRESH_MARGIN.min(lifetime / 2);
        // Half the token's whole life (from `iat`, when it has a sensible one): a token that was
        // already old when fetched (a token file written hours ago) is renewed sooner.
        let whole = claims
            .iat
            .filter(|iat| *iat < claims.exp)
            .map_or(lifetime, |iat| {
                Duration::from_secs(u64::try_from(claims.exp - iat).unwrap_or(0)).max(lifetime)
            });
        let renew_margin = if self.renew_at_half_life {
            margin.max(whole / 2)
        } else {
            margin
        };
        tracing::debug!(
            source = %self.name,
            sub = claims.sub.as_deref().unwrap_or(""),
            exp = claims.exp,
            "fetched identity token"
        );
        *cache = Some(Cached {
            token: token.clone(),
            claims: claims.clone(),
            renew_at: Instant::now() + lifetime.saturating_sub(renew_margin),
            refetch_at: Instant::now() + (lifetime - margin),
            stamp: probe.stamp,
        });
        Ok((token, Some(claims)))
    }

    /// Forgets the cached token, so the next call fetches a new one (STS rejected it).
    pub async fn invalidate(&self) {
        *self.cache.lock().await = None;
    }

    /// A short description of the source, for logs and status: `name (kind origin)`.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.name, self.source.origin())
    }
}

/// An error and its causes on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
