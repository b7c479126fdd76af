//! `sts-sidecar issuer`: load the settings and the keys (a key that does not parse, or a key
//! file another user could write, is an error naming the file), bind, serve until SIGTERM or
//! SIGINT; SIGHUP re-reads keys and certificates. `issuer publish` writes the documents
//! relying parties read as static files instead.

use std::sync::Arc;

use anyhow::Context as _;
use clap::ArgMatches;

use super::ExitError;
use crate::app;
use crate::cli::{IssuerAction, IssuerArgs};
use crate::config::Env;
use crate::config::issuer::Purpose;
use crate::issuer::{self, Issuer};

/// Runs the issuer until a signal, or publishes its documents.
pub async fn run(args: &IssuerArgs, matches: &ArgMatches, env: &dyn Env) -> Result<(), ExitError> {
    if let Some(IssuerAction::Publish(publish)) = &args.action {
        let settings = crate::config::issuer::load(matches, env, Purpose::Publish)?;
        let documents = issuer::publish::documents(&settings).map_err(ExitError::config)?;
        let written =
            issuer::publish::write(&documents, &publish.out).map_err(ExitError::failure)?;
        for path in written {
            println!("{}", path.display());
        }
        tracing::info!(
            issuer = %settings.issuer_url,
            keys = %documents.kids.join(","),
            "published the discovery document and the keys"
        );
        return Ok(());
    }
    let settings = crate::config::issuer::load(matches, env, Purpose::Serve)?;
    let issuer = Arc::new(Issuer::new(settings.clone()).map_err(ExitError::config)?);
    let listener = app::bind(settings.listen, &settings.listen_origin).await?;
    let admin = app::bind(settings.admin_listen, &settings.admin_listen_origin).await?;
    let (reload, reload_rx) = tokio::sync::mpsc::channel(1);
    let running = issuer::start(issuer, listener, admin, reload_rx).map_err(ExitError::failure)?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        issuer = %settings.issuer_url,
        token_urls = %settings.token_urls.join(","),
        listen = %running.addr,
        admin = %running.admin_addr,
        tls = settings.tls.is_some(),
        accept = %settings.accept.names().join(","),
        audiences = %settings.audiences.join(","),
        signing_kid = %running.issuer.signing_kid(),
        max_connections = settings.limits.max_connections,
        "sts-sidecar issuer serving"
    );
    wait(&reload).await.map_err(ExitError::failure)?;
    running.shutdown().await;
    drop(reload);
    tracing::info!("stopped");
    Ok(())
}

/// Forwards SIGHUP to `reload` until SIGTERM or SIGINT.
async fn wait(reload: &tokio::sync::mpsc::Sender<()>) -> anyhow::Result<()> {
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
