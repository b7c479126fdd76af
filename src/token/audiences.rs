//! Identity tokens for other audiences (Google Cloud, Azure, Vault, anything that takes a JWT):
//! what `GET /v1/identity-token?audience=AUD` serves.
//!
//! One source of the configuration (by default the default role's) is asked for a token per
//! audience on the allow-list, each behind its own cache (a JWT is reused until half its life,
//! as for STS). A kind that can ask for an audience (the token service or `sts-sidecar issuer`,
//! the GCP metadata server, GitHub Actions, an OIDC provider that takes `audience`) gets a
//! source of its own per audience; one that has a single token (a file, a command, a CI job's
//! variable) serves it only for the audience it already carries. Either way a token whose `aud`
//! does not hold the audience asked for is refused: an upstream that ignores the parameter must
//! not hand one relying party's token to another.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Claims, Error, IdentityToken, Settings, Source, TokenSource};
use crate::metrics::Metrics;

/// Why no token for an audience.
#[derive(Debug, thiserror::Error)]
pub enum AudienceError {
    /// Not on the allow-list.
    #[error("the audience {0:?} is not on the allow-list (identity_tokens.audiences)")]
    NotAllowed(String),
    /// The source cannot ask for it, and its token is for another audience.
    #[error("the source {source_name} cannot give a token for {audience:?}: {why}")]
    Unsupported {
        /// The source's name.
        source_name: String,
        /// The audience asked for.
        audience: String,
        /// Why, in words.
        why: String,
    },
    /// The upstream answered a token for other audiences.
    #[error(
        "the source {source_name} answered a token for {got:?}, not {audience:?}: it does not \
         ask its upstream for an audience (the older CF Identity Token Service has one audience; \
         sts-sidecar issuer signs for those on its --audience list)"
    )]
    WrongAudience {
        /// The source's name.
        source_name: String,
        /// The audience asked for.
        audience: String,
        /// The token's audiences.
        got: Vec<String>,
    },
    /// The source failed (retryable).
    #[error(transparent)]
    Source(#[from] Error),
    /// The source for the audience could not be built.
    #[error("the source {source_name} cannot be set up for {audience:?}: {why}")]
    Setup {
        /// The source's name.
        source_name: String,
        /// The audience.
        audience: String,
        /// Why.
        why: String,
    },
}

/// A token for one audience, and when it expires (its `exp`).
#[derive(Debug, Clone)]
pub struct AudienceToken {
    /// The token.
    pub token: IdentityToken,
    /// Its `exp`, Unix seconds.
    pub expiration: i64,
}

/// The identity tokens the sidecar serves for other audiences.
#[derive(Debug)]
pub struct Audiences {
    name: String,
    settings: Settings,
    allowed: Vec<String>,
    metrics: Arc<Metrics>,
    sources: tokio::sync::Mutex<HashMap<String, Arc<TokenSource>>>,
}

impl Audiences {
    /// Tokens from the source `name` (its `settings`), for the `allowed` audiences only.
    pub fn new(
        name: &str,
        settings: Settings,
        allowed: Vec<String>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            settings,
            allowed,
            metrics,
            sources: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The audiences on the allow-list.
    pub fn allowed(&self) -> &[String] {
        &self.allowed
    }

    /// The source's name.
    pub fn source_name(&self) -> &str {
        &self.name
    }

    /// A token for `audience`, cached, renewed from half its life.
    pub async fn token(&self, audience: &str) -> Result<AudienceToken, AudienceError> {
        if !self.allowed.iter().any(|a| a == audience) {
            return Err(AudienceError::NotAllowed(audience.to_owned()));
        }
        let (settings, fixed) = match self.settings.for_audience(audience) {
            Ok(settings) => (settings, None),
            // A source with one token: serve it if it is for this audience.
            Err(why) => (self.settings.clone(), Some(why)),
        };
        let key = if fixed.is_some() { "" } else { audience };
        let source = {
            let mut sources = self.sources.lock().await;
            match sources.get(key) {
                Some(s) => s.clone(),
                None => {
                    let built = Source::new(&settings).map_err(|e| AudienceError::Setup {
                        source_name: self.name.clone(),
                        audience: audience.to_owned(),
                        why: crate::report::chain(&e),
                    })?;
                    let s = Arc::new(TokenSource::new(
                        self.name.clone(),
                        built,
                        self.metrics.clone(),
                    ));
                    sources.insert(key.to_owned(), s.clone());
                    s
                }
            }
        };
        let (token, claims) = source.token().await?;
        let claims: Option<Claims> = claims;
        let Some(claims) = claims else {
            return Err(AudienceError::WrongAudience {
                source_name: self.name.clone(),
                audience: audience.to_owned(),
                got: vec!["(not a JWT)".to_owned()],
            });
        };
        if !claims.aud.iter().any(|a| a == audience) {
            return Err(match fixed {
                Some(why) => AudienceError::Unsupported {
                    source_name: self.name.clone(),
                    audience: audience.to_owned(),
                    why,
                },
                None => AudienceError::WrongAudience {
                    source_name: self.name.clone(),
                    audience: audience.to_owned(),
                    got: claims.aud.clone(),
                },
            });
        }
        Ok(AudienceToken {
            token,
            expiration: claims.exp,
        })
    }
}

/// Keeps `path` holding a token for `audience` (Azure's federated token file): written whole
/// (a reader sees the old token or the new, never part), with `mode` (the authorization token
/// file's), again from half the token's remaining life on; after a failure it tries again in
/// 5 s, doubling to a minute, and leaves the last good token in place. Runs until aborted.
pub async fn keep_file(
    tokens: Arc<Audiences>,
    path: std::path::PathBuf,
    audience: String,
    mode: u32,
) {
    let mut last: Option<String> = None;
    let mut backoff = std::time::Duration::from_secs(5);
    loop {
        let wait = match tokens.token(&audience).await {
            Ok(t) => {
                backoff = std::time::Duration::from_secs(5);
                let fresh = last.as_deref() != Some(t.token.expose());
                if fresh {
                    match crate::files::replace(&path, t.token.expose().as_bytes(), mode) {
                        Ok(()) => {
                            tracing::info!(
                                path = %path.display(),
                                audience = %audience,
                                expires = %crate::clock::format_rfc3339(t.expiration),
                                "wrote the identity token file"
                            );
                            last = Some(t.token.expose().to_owned());
                        }
                        Err(e) => tracing::warn!(
                            path = %path.display(),
                            error = %e,
                            "cannot write the identity token file"
                        ),
                    }
                }
                next_write(t.expiration, crate::clock::now_unix())
            }
            Err(e) => {
                tracing::warn!(
                    path = %path.display(),
                    audience = %audience,
                    error = %crate::report::chain(&e),
                    "no identity token for the token file; the last one stays"
                );
                let wait = backoff;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(60));
                wait
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// When the token file is written again: from half the token's remaining life on (so a
/// reader never holds one in its last half), at least 30 s and at most an hour apart.
fn next_write(expiration: i64, now: i64) -> std::time::Duration {
    let left = expiration - now;
    std::time::Duration::from_secs(u64::try_from(left / 2).unwrap_or(0).clamp(30, 3600))
}

#[cfg(test)]
mod tests {
    use super::next_write;
    use std::time::Duration;

    #[test]
    fn the_token_file_is_renewed_from_half_its_remaining_life() {
        // See: issue #25 (Azure re-reads the file as it ages; it must never hold a stale one).
        assert_eq!(next_write(1_000 + 3_600, 1_000), Duration::from_secs(1_800));
        assert_eq!(next_write(1_000 + 600, 1_000), Duration::from_secs(300));
        // Nearly expired, or already: soon, but not in a loop.
        assert_eq!(next_write(1_000 + 20, 1_000), Duration::from_secs(30));
        assert_eq!(next_write(900, 1_000), Duration::from_secs(30));
        // A day-long token is still looked at hourly.
        assert_eq!(
            next_write(1_000 + 86_400, 1_000),
            Duration::from_secs(3_600)
        );
    }
}
