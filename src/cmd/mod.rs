//! One file per subcommand. Errors here are `anyhow` with context; `main` maps them to exit
//! codes through [`ExitError`].

pub mod check;
pub mod credential_process;
pub mod exec;
pub mod serve;
pub mod trust;

use std::sync::Arc;

use anyhow::Context as _;

use crate::backend::{Backend, RolesAnywhere, Sts, sts};
use crate::config::{Config, RoleBackend, RoleConfig};
use crate::metrics::Metrics;
use crate::token::{Source, TokenSource};

/// What every subcommand runs: one token source per configured source that a role uses
/// (shared by all roles that name it, so it is fetched once) and one backend per role, in
/// config order.
#[derive(Debug)]
pub struct Built {
    /// The sources roles use, in config order.
    pub sources: Vec<Arc<TokenSource>>,
    /// Each role with its backend.
    pub roles: Vec<(RoleConfig, Backend)>,
}

impl Built {
    /// The token source named `name`.
    pub fn source(&self, name: &str) -> Option<&Arc<TokenSource>> {
        self.sources.iter().find(|s| s.name() == name)
    }
}

/// Builds the sources and backends the config describes: the one place that does. Reads local
/// files (CA bundles); makes no network call.
pub async fn build(config: &Config, metrics: &Arc<Metrics>) -> anyhow::Result<Built> {
    let mut sources: Vec<Arc<TokenSource>> = Vec::new();
    for sc in &config.sources {
        if !config
            .roles
            .iter()
            .any(|r| r.source() == Some(sc.name.as_str()))
        {
            continue;
        }
        let source =
            Source::from_settings(&sc.settings).with_context(|| format!("source {}", sc.name))?;
        sources.push(Arc::new(TokenSource::new(
            sc.name.clone(),
            source,
            metrics.clone(),
        )));
    }
    let client = sts::client(&config.sts).await;
    let mut roles = Vec::new();
    for role in &config.roles {
        let backend = match &role.backend {
            RoleBackend::WebIdentity { source } => {
                let token = sources
                    .iter()
                    .find(|s| s.name() == source)
                    .cloned()
                    .with_context(|| {
                        format!("internal: role {} names no built source", role.alias)
                    })?;
                Backend::Sts(Sts::new(
                    client.clone(),
                    token,
                    role.arn.clone(),
                    role.account_id.clone(),
                    role.session_name.clone(),
                    role.duration,
                    metrics.clone(),
                ))
            }
            RoleBackend::RolesAnywhere(settings) => Backend::RolesAnywhere(Box::new(
                RolesAnywhere::new(
                    settings,
                    &role.arn,
                    &role.account_id,
                    role.duration,
                    metrics.clone(),
                )
                .map_err(|why| anyhow::anyhow!("role {}: {why}", role.alias))?,
            )),
        };
        roles.push((role.clone(), backend));
    }
    Ok(Built { sources, roles })
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
