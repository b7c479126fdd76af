//! `sts-sidecar issuer`: load the settings and the keys (a key that does not parse is an error
//! naming the file), bind, serve until SIGTERM or SIGINT; SIGHUP re-reads keys and certificates.

use std::sync::Arc;

use anyhow::Context as _;
use clap::ArgMatches;

use super::ExitError;
use crate::app;
use crate::cli::IssuerArgs;
use crate::config::Env;
use crate::issuer::{self, Issuer};

/// Runs the issuer until a signal.
pub async fn run(_args: &IssuerArgs, matches: &ArgMatches, env: &dyn Env) -> Result<(), ExitError> {
    let settings = crate::config::issuer::load(matches, env)?;
    let issuer = Arc::new(Issuer::new(settings.clone()).map_err(ExitError::config)?);
    let listener = app::bind(settings.listen, &settings.listen_origin).await?;
    let admin = app::bind(settings.admin_listen, &settings.admin_listen_origin).await?;
    let (reload, reload_rx) = tokio::sync::mpsc::channel(1);
    let running = issuer::start(issuer, listener, admin, reload_rx).map_err(ExitError::failure)?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        issuer = %settings.issuer_url,
        listen = %running.addr,
        admin = %running.admin_addr,
        tls = settings.tls.is_some(),
        accept = %settings.accept.names().join(","),
        audiences = %settings.audiences.join(","),
        signing_kid = %running.issuer.signing_kid(),
        "sts-sidecar issuer serving"
    );
    wait(reload).await.map_err(ExitError::failure)?;
    running.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Forwards SIGHUP to `reload` until SIGTERM or SIGINT.
async fn wait(reload: tokio::sync::mpsc::Sender<()>) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM received"); return Ok(()); }
                r = tokio::signal::ctrl_c() => { r.context("waiting for SIGINT")?; return Ok(()); }
                _ = hup.recv() => {
                    tracing::info!("SIGHUP received: re-reading keys and certificates");
                    let _ = reload.try_send(());
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = reload;
        tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")
    }
}
