//! Where the identity token (a JWT that STS accepts) comes from, and how long it is kept.
//!
//! A [`TokenSource`] owns one way of getting a token and a cache in front of it: the token is
//! reused until shortly before its own `exp`, fetched again after the identity certificate
//! rotates, and dropped when STS says it is invalid or expired. Concurrent callers share one
//! fetch. This module decodes claims (it does not verify signatures: STS does that) and never
//! logs or prints a token.

mod jwt;
pub mod token_service;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

pub use jwt::{Claims, JwtError, decode_claims};
pub use token_service::TokenService;

use crate::metrics::Metrics;

crate::secret::secret_string!(
    /// A JWT that proves the app's identity to STS.
    IdentityToken
);

/// Refetch the token when less than this much of its lifetime is left (or half its lifetime, if
/// that is shorter).
const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// The ways of getting an identity token (a closed set: one file per variant).
#[derive(Debug)]
pub enum Source {
    /// The CF Identity Token Service, called over mTLS with the instance identity.
    TokenService(TokenService),
}

/// A token source with its cache.
#[derive(Debug)]
pub struct TokenSource {
    source: Source,
    cache: tokio::sync::Mutex<Option<Cached>>,
    metrics: Arc<Metrics>,
}

#[derive(Debug)]
struct Cached {
    token: IdentityToken,
    claims: Claims,
    refetch_at: Instant,
    /// The certificate file the token was obtained with; a different one means a rotation.
    cert_pem: Option<Arc<Vec<u8>>>,
}

/// Why no identity token could be had.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The certificate or key could not be read.
    #[error(transparent)]
    Identity(#[from] crate::identity::Error),
    /// The token service could not be reached or did not answer in time.
    #[error("cannot reach the token service at {url}: {detail}")]
    Unreachable {
        /// The URL called.
        url: String,
        /// The transport error, with its causes.
        detail: String,
        /// Whether it was a timeout.
        timed_out: bool,
    },
    /// The token service answered 403: it did not accept the client certificate.
    #[error(
        "the token service at {url} refused the client certificate (HTTP 403 Forbidden); check \
         that the certificate is the instance identity certificate and that the service trusts \
         its CA"
    )]
    Forbidden {
        /// The URL called.
        url: String,
    },
    /// The token service answered with another error status.
    #[error("the token service at {url} answered HTTP {status}")]
    Status {
        /// The URL called.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The token service answered 2xx with something that is not a JWT.
    #[error("the token service at {url} answered with {what}, not a JWT")]
    NotJwt {
        /// The URL called.
        url: String,
        /// What came instead (never the body itself).
        what: String,
    },
    /// The token is already expired (or expires within seconds).
    #[error("the identity token from {origin} has already expired (exp {exp})")]
    Expired {
        /// Where it came from.
        origin: String,
        /// Its `exp` claim.
        exp: i64,
    },
}

impl TokenSource {
    /// Wraps a source with an empty cache.
    pub fn new(source: Source, metrics: Arc<Metrics>) -> Self {
        Self {
            source,
            cache: tokio::sync::Mutex::new(None),
            metrics,
        }
    }

    /// A valid identity token: the cached one, or a fresh one if it is near expiry, the identity
    /// certificate rotated, or it was invalidated.
    pub async fn token(&self) -> Result<(IdentityToken, Claims), Error> {
        let mut cache = self.cache.lock().await;
        match &self.source {
            Source::TokenService(service) => {
                let pair = service.identity().read_pair().await?;
                self.metrics.set_certificate_expiry(pair.leaf.not_after);
                if let Some(cached) = cache.as_ref() {
                    let same_cert = cached.cert_pem.as_ref() == Some(&pair.cert_pem);
                    if same_cert && Instant::now() < cached.refetch_at {
                        return Ok((cached.token.clone(), cached.claims.clone()));
                    }
                    if !same_cert {
                        tracing::info!(
                            "identity certificate rotated, fetching a new identity token"
                        );
                    }
                }
                let started = Instant::now();
                let result = service.fetch(&pair).await;
                self.metrics
                    .observe_upstream("token_service", result.is_ok(), started.elapsed());
                let (token, claims) = result?;
                self.store(&mut cache, token, claims, Some(pair.cert_pem))
            }
        }
    }

    /// Forgets the cached token, so the next call fetches a new one (STS rejected it).
    pub async fn invalidate(&self) {
        *self.cache.lock().await = None;
    }

    /// A short description of the source, for logs and status.
    pub fn describe(&self) -> String {
        match &self.source {
            Source::TokenService(service) => format!("token service {}", service.url()),
        }
    }

    fn store(
        &self,
        cache: &mut Option<Cached>,
        token: IdentityToken,
        claims: Claims,
        cert_pem: Option<Arc<Vec<u8>>>,
    ) -> Result<(IdentityToken, Claims), Error> {
        let lifetime = crate::clock::until_unix(claims.exp);
        if lifetime < Duration::from_secs(10) {
            return Err(Error::Expired {
                origin: self.describe(),
                exp: claims.exp,
            });
        }
        self.metrics.set_identity_token_expiry(claims.exp);
        let margin = TOKEN_REFRESH_MARGIN.min(lifetime / 2);
        tracing::debug!(
            sub = claims.sub.as_deref().unwrap_or(""),
            exp = claims.exp,
            "fetched identity token"
        );
        *cache = Some(Cached {
            token: token.clone(),
            claims: claims.clone(),
            refetch_at: Instant::now() + (lifetime - margin),
            cert_pem,
        });
        Ok((token, claims))
    }
}
