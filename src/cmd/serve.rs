//! `sts-sidecar serve`: bind both listeners, start one refresher per role, serve until SIGTERM or
//! SIGINT, then drain.
//!
//! Order matters: binding comes first (so a port clash fails fast and the app can connect at
//! once), the refreshers start immediately after (so the first credentials arrive as soon as the
//! upstreams answer), and the process never exits because an upstream failed: on CF a dead sidecar
//! takes the app's container down with it.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::ExitError;
use crate::cache::{self, RoleHandle};
use crate::cli::ServeArgs;
use crate::config::{AuthSource, Config, ENV_AUTH_TOKEN, Env};
use crate::metrics::Metrics;
use crate::server::{self, AdminApp, Auth, CredentialsApp, Roles};

/// Runs `serve` until a signal.
pub async fn run(args: &ServeArgs, env: &dyn Env) -> Result<(), ExitError> {
    let config = Config::load(&args.overrides(), env).map_err(ExitError::config)?;
    let auth = auth(&config).map_err(|e| {
        // A token file that cannot be written (full disk, read-only directory) is not a
        // usage error.
        let io = matches!(
            e.downcast_ref(),
            Some(crate::server::auth::Error::Io { .. })
        );
        if io {
            ExitError::failure(e)
        } else {
            ExitError::config(e)
        }
    })?;
    let credentials = bind(config.listen, "server.listen").await?;
    let admin = bind(config.admin_listen, "server.admin_listen").await?;
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let sidecar = start(&config, auth, credentials, admin).await?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        credentials = %format!("http://{}/v1/credentials", sidecar.credentials_addr),
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

/// A running sidecar: both listeners and the refreshers.
#[derive(Debug)]
pub struct Sidecar {
    /// Where the credentials endpoint listens.
    pub credentials_addr: SocketAddr,
    /// Where the admin endpoint listens.
    pub admin_addr: SocketAddr,
    /// The roles served.
    pub roles: Roles,
    /// The admin endpoint (readiness).
    pub admin: Arc<AdminApp>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
    refreshers: Vec<JoinHandle<()>>,
}

impl Sidecar {
    /// Stops accepting, lets in-flight requests finish, stops the refreshers.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for server in self.servers {
            let _ = server.await;
        }
        for refresher in &self.refreshers {
            refresher.abort();
        }
    }
}

/// The authorization checker the config asks for.
pub fn auth(config: &Config) -> anyhow::Result<Auth> {
    match &config.auth {
        AuthSource::Fixed(token) => Ok(Auth::fixed(token.clone(), ENV_AUTH_TOKEN)?),
        AuthSource::Generated(token) => Ok(Auth::fixed(token.clone(), "the generated token")?),
        AuthSource::File(path) => {
            let (auth, created) = Auth::from_file(path)?;
            if created {
                tracing::info!(path = %path.display(), "wrote a new random authorization token (mode 0600)");
            }
            Ok(auth)
        }
    }
}

/// Starts refreshers and both servers on already bound listeners. A source that cannot be set
/// up (an unreadable CA bundle) is a configuration error (64); anything else a runtime one (1).
pub async fn start(
    config: &Config,
    auth: Auth,
    credentials: TcpListener,
    admin: TcpListener,
) -> Result<Sidecar, ExitError> {
    let metrics = Arc::new(Metrics::new());
    let built = super::build(config, &metrics)
        .await
        .map_err(ExitError::config)?;
    let mut handles: Vec<RoleHandle> = Vec::new();
    let mut refreshers = Vec::new();
    for (role, backend) in built.roles {
        let (source, kind) = backend.source_name();
        metrics.set_role_source(&role.alias, source, kind);
        let (handle, task) = cache::spawn_role(&role.alias, backend, metrics.clone());
        handles.push(handle);
        refreshers.push(task);
    }
    let roles = Roles::new(handles)
        .context("no role configured")
        .map_err(ExitError::config)?;
    let extra_hosts: Vec<_> = [config.listen.ip(), config.admin_listen.ip()]
        .into_iter()
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
        .collect();
    let credentials_addr = credentials
        .local_addr()
        .context("the credentials listener")
        .map_err(ExitError::failure)?;
    let admin_addr = admin
        .local_addr()
        .context("the admin listener")
        .map_err(ExitError::failure)?;
    let mut app = CredentialsApp::new(
        roles.clone(),
        Arc::new(auth),
        metrics.clone(),
        config.cold_start_wait,
        extra_hosts.clone(),
    );
    if config.imds {
        app = app.with_imds(config.imds_v1);
        if config.imds_v1 {
            tracing::warn!(
                "IMDSv1 is on: any request that reaches the listener, including one forged through \
                 a server-side request forgery in the app, can read credentials without a session token"
            );
        }
    }
    let app = Arc::new(app);
    let admin_app = Arc::new(AdminApp::new(roles.clone(), metrics.clone(), extra_hosts));
    let (stop, stopped) = watch::channel(false);
    let until_stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let mut servers = Vec::new();
    servers.push(tokio::spawn(server::serve(
        credentials,
        config.limits,
        move |req| {
            let app = app.clone();
            async move { app.handle(req).await }
        },
        until_stopped(stopped.clone()),
    )));
    let admin_for_server = admin_app.clone();
    servers.push(tokio::spawn(server::serve(
        admin,
        config.limits,
        move |req| {
            let app = admin_for_server.clone();
            async move { app.handle(req).await }
        },
        until_stopped(stopped),
    )));
    Ok(Sidecar {
        credentials_addr,
        admin_addr,
        roles,
        admin: admin_app,
        metrics,
        stop,
        servers,
        refreshers,
    })
}

async fn bind(addr: SocketAddr, key: &str) -> Result<TcpListener, ExitError> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ({key})"))
        .map_err(ExitError::failure)
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
