//! The one identity-token cache, the same for every kind of source.
//!
//! [`TokenCache`] holds the rules and nothing else (no I/O, no clock of its own: it is told the
//! time), so that the fleet simulation (`bench/fleet.rs`) runs exactly these rules in front of a
//! simulated token service. [`TokenSource`] puts it in front of a real [`Source`].
//!
//! - A JWT is reused until its renewal point: half its whole life (from `iat`, so a token that
//!   was already old when fetched is renewed sooner), but at least [`REFRESH_MARGIN`] before
//!   `exp`. From there a fetch is tried; if it fails, the cached token is still used until the
//!   margin before `exp`, so a source that is down for a while costs nothing.
//! - A different probe stamp (a rotated certificate, a replaced token file) means fetch now.
//! - An opaque token (or a JWT without `exp`) is not kept.
//! - A token that arrives already expired is an error saying when it expired.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Claims, Error, IdentityToken, Source, Stamp, decode_claims};
use crate::metrics::Metrics;

/// A JWT must be replaced when less than this much of its lifetime is left (or half its
/// lifetime, if that is shorter).
pub const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// A JWT with less than this left is treated as already expired.
const MIN_LIFETIME: Duration = Duration::from_secs(10);

/// The cached token and the rules for reusing it.
#[derive(Debug)]
pub struct TokenCache {
    cached: Option<Cached>,
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

/// What the cache says before a fetch.
#[derive(Debug)]
pub enum Lookup {
    /// Use this cached token.
    Use(IdentityToken, Claims),
    /// Fetch a new one.
    Fetch {
        /// The cached token may still be used if the fetch fails.
        keep_on_failure: bool,
        /// The stamp differs from the cached token's: the identity changed.
        changed: bool,
    },
}

/// A token to use, and whether it is the cached one because a renewal failed.
#[derive(Debug)]
pub struct Settled {
    /// The token.
    pub token: IdentityToken,
    /// Its claims, when it is a JWT.
    pub claims: Option<Claims>,
    /// The fetch failed with this error and the cached token is used instead.
    pub kept_after: Option<Error>,
}

impl Default for TokenCache {
    fn default() -> Self {
        Self::new()
    }
}

impl TokenCache {
    /// An empty cache that renews from half a token's life.
    pub fn new() -> Self {
        Self {
            cached: None,
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

    /// Whether the cached token can be used now for an identity with `stamp`.
    pub fn lookup(&self, stamp: &Stamp, now: Instant) -> Lookup {
        match &self.cached {
            None => Lookup::Fetch {
                keep_on_failure: false,
                changed: false,
            },
            Some(cached) => {
                let same = cached.stamp == *stamp;
                if same && now < cached.renew_at {
                    return Lookup::Use(cached.token.clone(), cached.claims.clone());
                }
                Lookup::Fetch {
                    keep_on_failure: same && now < cached.refetch_at,
                    changed: !same,
                }
            }
        }
    }

    /// Takes the result of a fetch made after `lookup` said [`Lookup::Fetch`]: caches a JWT,
    /// falls back to the cached token when allowed, or returns the error. `expired` builds the
    /// error for a token that arrived already expired (from its `exp`).
    pub fn settle(
        &mut self,
        result: Result<IdentityToken, Error>,
        stamp: Stamp,
        keep_on_failure: bool,
        now: Instant,
        expired: impl FnOnce(i64) -> Error,
    ) -> Result<Settled, Error> {
        let token = match result {
            Ok(token) => token,
            Err(e) => {
                return match self.cached.as_ref().filter(|_| keep_on_failure) {
                    Some(cached) => Ok(Settled {
                        token: cached.token.clone(),
                        claims: Some(cached.claims.clone()),
                        kept_after: Some(e),
                    }),
                    None => Err(e),
                };
            }
        };
        let Ok(claims) = decode_claims(token.expose()) else {
            // Opaque (or a JWT without exp): nothing tells how long it lives, so it is not kept.
            self.cached = None;
            return Ok(Settled {
                token,
                claims: None,
                kept_after: None,
            });
        };
        let lifetime = crate::clock::until_unix(claims.exp);
        if lifetime < MIN_LIFETIME {
            return Err(expired(claims.exp));
        }
        let margin = REFRESH_MARGIN.min(lifetime / 2);
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
        self.cached = Some(Cached {
            token: token.clone(),
            claims: claims.clone(),
            renew_at: now + lifetime.saturating_sub(renew_margin),
            refetch_at: now + (lifetime - margin),
            stamp,
        });
        Ok(Settled {
            token,
            claims: Some(claims),
            kept_after: None,
        })
    }

    /// Forgets the cached token.
    pub fn clear(&mut self) {
        self.cached = None;
    }
}

/// A named source with its cache.
#[derive(Debug)]
pub struct TokenSource {
    name: String,
    source: Source,
    cache: tokio::sync::Mutex<TokenCache>,
    metrics: Arc<Metrics>,
}

impl TokenSource {
    /// Wraps the source named `name` with an empty cache.
    pub fn new(name: impl Into<String>, source: Source, metrics: Arc<Metrics>) -> Self {
        Self {
            name: name.into(),
            source,
            cache: tokio::sync::Mutex::new(TokenCache::new()),
            metrics,
        }
    }

    /// Whether a JWT is renewed from half its life on (the default) or only shortly before
    /// `exp` (see [`TokenCache::renewing_at_half_life`]).
    pub fn renewing_at_half_life(self, on: bool) -> Self {
        Self {
            cache: tokio::sync::Mutex::new(TokenCache::new().renewing_at_half_life(on)),
            ..self
        }
    }

    /// The configured name of the source.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The source itself.
    pub fn source(&self) -> &Source {
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
        let keep_on_failure = match cache.lookup(&probe.stamp, Instant::now()) {
            super::cache::Lookup::Use(token, claims) => return Ok((token, Some(claims))),
            super::cache::Lookup::Fetch {
                keep_on_failure,
                changed,
            } => {
                if changed {
                    tracing::info!(source = %self.name, "identity changed, fetching a new identity token");
                }
                keep_on_failure
            }
        };
        let started = Instant::now();
        let result = self.source.fetch(&probe).await;
        self.metrics.observe_upstream(
            self.source.metric_label(),
            result.is_ok(),
            started.elapsed(),
        );
        let settled = cache.settle(
            result,
            probe.stamp,
            keep_on_failure,
            Instant::now(),
            |exp| Error::Expired {
                origin: self.source.origin(),
                exp,
                hint: self.source.stale_hint(),
            },
        )?;
        match (&settled.kept_after, &settled.claims) {
            (Some(e), Some(claims)) => tracing::warn!(
                source = %self.name,
                error = %crate::report::chain(e),
                exp = claims.exp,
                "cannot renew the identity token; using the cached one until it nears expiry"
            ),
            (None, Some(claims)) => {
                self.metrics
                    .set_identity_token_expiry(&self.name, claims.exp);
                tracing::debug!(
                    source = %self.name,
                    sub = claims.sub.as_deref().unwrap_or(""),
                    exp = claims.exp,
                    "fetched identity token"
                );
            }
            (_, None) => tracing::debug!(source = %self.name, "fetched an opaque identity token"),
        }
        Ok((settled.token, settled.claims))
    }

    /// Forgets the cached token, so the next call fetches a new one (STS rejected it).
    pub async fn invalidate(&self) {
        self.cache.lock().await.clear();
    }

    /// A short description of the source, for logs and status: `name (origin)`.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.name, self.source.origin())
    }
}
