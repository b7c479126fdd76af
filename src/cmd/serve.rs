//! `sts-sidecar serve`: bind both listeners, start one refresher per role, serve until SIGTERM or
//! SIGINT, then drain.
//!
//! Order matters: binding comes first (so a port clash fails fast and the app can connect at
//! once), the refreshers start immediately after (so the first credentials arrive as soon as the
//! upstreams answer), and the process never exits because an upstream failed: on CF a dead sidecar
//! takes the app's container down with it.

use anyhow::Context as _;
use clap::ArgMatches;

use super::ExitError;
use crate::app;
use crate::cli::ServeArgs;
use crate::config::{Config, Env, Overrides};

/// Runs `serve` until a signal.
pub async fn run(_args: &ServeArgs, matches: &ArgMatches, env: &dyn Env) -> Result<(), ExitError> {
    let config = Config::load(&Overrides::new(matches, env), env)?;
    super::require_files(&config)?;
    let auth = app::auth(&config)?;
    let (credentials, admin) = app::bind_both(&config).await?;
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let sidecar = app::start(&config, auth, credentials, admin).await?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        credentials = %sidecar.credentials_url(None),
        admin = %sidecar.admin_addr,
        sources = %config.sources.iter().map(|s| format!("{} ({})", s.name, s.settings.kind())).collect::<Vec<_>>().join(", "),
        sts_region = %config.sts.region,
        imds = config.imds,
        roles = %config.roles.iter().map(|r| format!("{}={} ({})", r.alias, r.arn, r.session_name)).collect::<Vec<_>>().join(", "),
        "sts-sidecar serving"
    );
    let drain = wait_for_signal(config.drain)
        .await
        .map_err(ExitError::failure)?;
    sidecar.admin.set_draining();
    if !drain.is_zero() {
        tracing::info!(
            ?drain,
            "shutting down: still serving from cache while draining"
        );
        tokio::select! {
            () = tokio::time::sleep(drain) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    sidecar.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Waits for SIGTERM (drain for `drain`) or SIGINT (no drain); returns the drain time.
async fn wait_for_signal(drain: std::time::Duration) -> anyhow::Result<std::time::Duration> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM received"); Ok(drain) }
            r = tokio::signal::ctrl_c() => { r.context("waiting for SIGINT")?; tracing::info!("SIGINT received"); Ok(std::time::Duration::ZERO) }
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        let _ = drain;
        Ok(std::time::Duration::ZERO)
    }
}
