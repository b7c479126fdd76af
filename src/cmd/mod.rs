//! One file per subcommand. Errors here are `anyhow` with context; `main` maps them to exit
//! codes through [`ExitError`].

pub mod check;
pub mod credential_process;
pub mod exec;
pub mod serve;

use std::sync::Arc;

use anyhow::Context as _;

use crate::backend::{Backend, Sts, sts};
use crate::config::{Config, RoleConfig};
use crate::metrics::Metrics;
use crate::token::{Source, TokenService, TokenSource};

/// The identity token source and one backend per configured role (in config order), as every
/// subcommand builds them. Reads the CA bundle; makes no network call.
pub async fn backends(
    config: &Config,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<(Arc<TokenSource>, Vec<(RoleConfig, Backend)>)> {
    let service = TokenService::new(
        &config.token_service.url,
        config.identity.clone(),
        config.token_service.ca_file.as_deref(),
        config.token_service.timeout,
    )
    .context("token_service.ca_file")?;
    let token = Arc::new(TokenSource::new(
        "token-service",
        Source::TokenService(service),
        metrics.clone(),
    ));
    let client = sts::client(&config.sts).await;
    let backends = config
        .roles
        .iter()
        .map(|role| {
            let backend = Backend::Sts(Sts::new(
                client.clone(),
                token.clone(),
                role.arn.clone(),
                role.account_id.clone(),
                role.session_name.clone(),
                role.duration,
                metrics.clone(),
            ));
            (role.clone(), backend)
        })
        .collect();
    Ok((token, backends))
}

/// The role with `alias`, or the default role; a usage error names the known aliases.
pub fn pick_role<'c>(config: &'c Config, alias: Option<&str>) -> Result<&'c RoleConfig, ExitError> {
    match alias {
        None => config
            .roles
            .first()
            .ok_or_else(|| ExitError::config(anyhow::anyhow!("no role configured"))),
        Some(alias) => config
            .roles
            .iter()
            .find(|r| r.alias == alias)
            .ok_or_else(|| {
                let known: Vec<&str> = config.roles.iter().map(|r| r.alias.as_str()).collect();
                ExitError::config(anyhow::anyhow!(
                    "--role {alias}: no such role (configured: {})",
                    known.join(", ")
                ))
            }),
    }
}

/// An error with the exit code it should produce.
#[derive(Debug, thiserror::Error)]
#[error("{source:#}")]
pub struct ExitError {
    /// 64 for configuration and usage errors, 1 otherwise.
    pub code: i32,
    /// What went wrong.
    #[source]
    pub source: anyhow::Error,
}

/// Exit code for configuration and usage errors (`EX_USAGE`).
pub const EXIT_CONFIG: i32 = 64;
/// Exit code for runtime failures.
pub const EXIT_FAILURE: i32 = 1;

impl ExitError {
    /// A configuration or usage error.
    pub fn config(source: impl Into<anyhow::Error>) -> Self {
        Self {
            code: EXIT_CONFIG,
            source: source.into(),
        }
    }

    /// A runtime failure.
    pub fn failure(source: impl Into<anyhow::Error>) -> Self {
        Self {
            code: EXIT_FAILURE,
            source: source.into(),
        }
    }
}
