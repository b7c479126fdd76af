//! The sidecar assembled from a [`Config`]: the token sources and backends it describes (one
//! source per configured source a role uses, shared by every role that names it, so it is
//! fetched once; one backend per role), the authorization checker, and the running sidecar
//! (both listeners and one refresher per role). Every subcommand and the tests build through
//! here; `cmd` only handles arguments and exit codes.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backend::{self, Backend, RolesAnywhere};
use crate::cache::{self, RoleHandle};
use crate::config::{AuthSource, Config, ENV_AUTH_TOKEN, RoleBackend, RoleConfig};
use crate::metrics::Metrics;
use crate::server::{self, AdminApp, Auth, CredentialsApp, Roles};
use crate::token::{self, Source, TokenSource};

/// Why the sidecar could not be assembled or started.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A source could not be set up (an unreadable CA bundle): a configuration problem.
    #[error("source {name}")]
    Source {
        /// The source's name.
        name: String,
        /// Why.
        #[source]
        source: token::SetupError,
    },
    /// A backend could not be set up: a configuration problem.
    #[error(transparent)]
    Backend(#[from] backend::Error),
    /// The authorization token is unusable.
    #[error(transparent)]
    Auth(#[from] server::auth::Error),
    /// No authorization token was configured (only `check` accepts that).
    #[error("no authorization token is configured")]
    NoAuthToken,
    /// No role has the alias asked for.
    #[error("--role {alias}: no such role (configured: {known})")]
    NoSuchRole {
        /// The alias asked for.
        alias: String,
        /// The aliases configured.
        known: String,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({origin})")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The flag, variable or key that named it.
        origin: String,
        /// Why (address in use, permission denied).
        #[source]
        source: std::io::Error,
    },
    /// A bound listener has no local address (not expected).
    #[error("the {what} listener has no local address")]
    Listener {
        /// Which listener.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Whether the user's configuration is at fault (exit 64) rather than the machine (exit 1).
    pub fn is_config(&self) -> bool {
        match self {
            Error::Source { .. }
            | Error::Backend(_)
            | Error::NoSuchRole { .. }
            | Error::NoAuthToken => true,
            // A token file that cannot be written (full disk, read-only directory) is not a
            // usage error; a token of a shape SDKs refuse is.
            Error::Auth(e) => matches!(e, server::auth::Error::Invalid { .. }),
            Error::Bind { .. } | Error::Listener { .. } => false,
        }
    }
}

/// The sources and backends a config describes.
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
pub async fn build(config: &Config, metrics: &Arc<Metrics>) -> Result<Built, Error> {
    let mut sources: Vec<Arc<TokenSource>> = Vec::new();
    for sc in &config.sources {
        let for_tokens = config
            .identity_tokens
            .as_ref()
            .is_some_and(|t| t.source == sc.name);
        if !for_tokens
            && !config
                .roles
                .iter()
                .any(|r| r.source() == Some(sc.name.as_str()))
        {
            continue;
        }
        let source = Source::new(&sc.settings).map_err(|source| Error::Source {
            name: sc.name.clone(),
            source,
        })?;
        sources.push(Arc::new(TokenSource::new(
            sc.name.clone(),
            source,
            metrics.clone(),
        )));
    }
    #[cfg(feature = "sts")]
    let client = backend::sts::client(&config.sts).await;
    #[cfg(not(feature = "sts"))]
    let client = ();
    let mut roles = Vec::new();
    for role in &config.roles {
        roles.push((
            role.clone(),
            backend_for(config, role, &sources, &client, metrics)?,
        ));
    }
    Ok(Built { sources, roles })
}

#[cfg(feature = "sts")]
type StsClient = aws_sdk_sts::Client;
#[cfg(not(feature = "sts"))]
type StsClient = ();

/// The backend of one role. A chained role gets its own instance of its first link's backend
/// (`serve` attaches the first link's refresher instead, see [`start`]); the configuration
/// guarantees that chains end.
fn backend_for(
    config: &Config,
    role: &RoleConfig,
    sources: &[Arc<TokenSource>],
    client: &StsClient,
    metrics: &Arc<Metrics>,
) -> Result<Backend, Error> {
    let setup = |detail: String| {
        Error::Backend(backend::Error::Setup {
            role_arn: role.arn.clone(),
            detail,
            source: None,
        })
    };
    Ok(match &role.backend {
        RoleBackend::WebIdentity { source } => {
            // Config guarantees the name; a role naming no built source cannot be served.
            let Some(token) = sources.iter().find(|s| s.name() == source).cloned() else {
                return Err(setup(format!(
                    "names the source {source}, which was not built"
                )));
            };
            #[cfg(feature = "sts")]
            {
                Backend::Sts(backend::Sts::new(
                    client.clone(),
                    token,
                    role.assume(),
                    metrics.clone(),
                ))
            }
            #[cfg(not(feature = "sts"))]
            {
                let _ = (token, client);
                return Err(setup(
                    "this build has no STS support (the sts feature)".to_owned(),
                ));
            }
        }
        RoleBackend::RolesAnywhere(settings) => Backend::RolesAnywhere(Box::new(
            RolesAnywhere::new(settings, &role.assume(), metrics.clone())?,
        )),
        RoleBackend::Chained { via, external_id } => {
            let Some(first) = config.roles.iter().find(|r| r.alias == *via) else {
                return Err(setup(format!(
                    "is reached through role {via}, which does not exist"
                )));
            };
            #[cfg(feature = "sts")]
            {
                let first_backend = backend_for(config, first, sources, client, metrics)?;
                Backend::Chained(Box::new(backend::chain::Chained::new(
                    client.clone(),
                    role.assume(),
                    external_id.clone(),
                    (first.alias.clone(), first.arn.clone()),
                    Box::new(first_backend),
                    metrics.clone(),
                )))
            }
            #[cfg(not(feature = "sts"))]
            {
                let _ = (first, external_id, client);
                return Err(setup(
                    "this build has no STS support (the sts feature)".to_owned(),
                ));
            }
        }
    })
}

/// The role with `alias`, or the default role.
pub fn pick_role<'c>(config: &'c Config, alias: Option<&str>) -> Result<&'c RoleConfig, Error> {
    let known = || {
        config
            .roles
            .iter()
            .map(|r| r.alias.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let found = match alias {
        None => config.roles.first(),
        Some(alias) => config.roles.iter().find(|r| r.alias == alias),
    };
    found.ok_or_else(|| Error::NoSuchRole {
        alias: alias.unwrap_or("(the default)").to_owned(),
        known: known(),
    })
}

/// A file the configuration names that cannot be used now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableFile {
    /// The setting that named it (`--cert-file`, `CF_INSTANCE_KEY`, `token_service.ca_file`).
    pub origin: String,
    /// The file.
    pub path: std::path::PathBuf,
    /// What is wrong with it, and what to do.
    pub problem: String,
}

impl std::fmt::Display for UnreadableFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} {}",
            self.origin,
            self.path.display(),
            self.problem
        )
    }
}

/// The certificate, key and CA files the configuration names that do not exist or cannot be
/// read now. Waiting does not bring them (a typo, a volume that is not mounted), so `serve`
/// stops at start naming each, rather than starting and answering 503 forever; a file that
/// exists but does not parse, or a key that does not match its certificate yet, can still
/// recover (a rotation in progress) and is left to the refreshers.
///
/// `locate` says where to look for a path now (`check --config-only --app-dir` at staging
/// looks for `/home/vcap/app/...` in the directory the app is staged in); the path reported is
/// the configured one.
pub fn unreadable_files(
    config: &Config,
    locate: impl Fn(&std::path::Path) -> std::path::PathBuf,
) -> Vec<UnreadableFile> {
    const IDENTITY_FIX: &str = "check the path (on Cloud Foundry, leave the certificate and key \
                                to CF_INSTANCE_CERT and CF_INSTANCE_KEY)";
    const CA_FIX: &str = "check the path of the CA bundle that signs the token service's \
                          certificate";
    let mut files: Vec<(String, &std::path::Path, &str)> = Vec::new();
    fn identity<'c>(
        id: &'c crate::identity::IdentityFiles,
        files: &mut Vec<(String, &'c std::path::Path, &'static str)>,
        fix: &'static str,
    ) {
        files.push((id.cert_origin.clone(), id.cert_path.as_path(), fix));
        files.push((id.key_origin.clone(), id.key_path.as_path(), fix));
    }
    for source in &config.sources {
        if let Some(id) = source.settings.identity() {
            identity(id, &mut files, IDENTITY_FIX);
        }
        if let token::Settings::TokenService(ts) = &source.settings
            && let Some(ca) = &ts.ca_file
        {
            files.push((format!("{}.ca_file", source.name), ca.as_path(), CA_FIX));
        }
    }
    for role in &config.roles {
        if let RoleBackend::RolesAnywhere(ra) = &role.backend {
            identity(&ra.identity, &mut files, IDENTITY_FIX);
        }
    }
    let mut seen = std::collections::HashSet::new();
    files
        .into_iter()
        .filter(|(_, path, _)| seen.insert(path.to_path_buf()))
        .filter_map(|(origin, path, fix)| {
            let problem = match std::fs::File::open(locate(path)).and_then(|f| f.metadata()) {
                Ok(meta) if meta.is_file() => return None,
                Ok(meta) => format!("is a {}, not a file: {fix}", crate::files::kind(&meta)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    format!("does not exist: {fix}")
                }
                Err(e) => format!("cannot be read ({e}): {fix}"),
            };
            Some(UnreadableFile {
                origin,
                path: path.to_path_buf(),
                problem,
            })
        })
        .collect()
}

/// The authorization checker the config asks for; a token file that does not exist yet is
/// created with a random token.
pub fn auth(config: &Config) -> Result<Auth, Error> {
    Ok(match &config.auth {
        AuthSource::Fixed(token) => Auth::fixed(token.clone(), ENV_AUTH_TOKEN)?,
        AuthSource::Generated(token) => Auth::fixed(token.clone(), "the generated token")?,
        AuthSource::File(path) => {
            let (auth, created) = Auth::from_file(path, config.auth_token_file_mode)?;
            if created {
                tracing::info!(
                    path = %path.display(),
                    "wrote a new random authorization token (mode {:04o})",
                    config.auth_token_file_mode
                );
            }
            auth
        }
        AuthSource::Unset => return Err(Error::NoAuthToken),
    })
}

/// Binds a listener; the error names the flag, variable or key that chose the address.
pub async fn bind(addr: SocketAddr, origin: &str) -> Result<TcpListener, Error> {
    listen(addr).map_err(|source| Error::Bind {
        addr,
        origin: origin.to_owned(),
        source,
    })
}

/// Connections the kernel completes and queues for us before it drops new ones (capped by
/// `net.core.somaxconn`). Larger than tokio's 1,024: a client that connects during a flood of
/// connections then waits in the queue for a slot (microseconds, see `server::slots`) instead
/// of having its SYN dropped and resent a second later.
const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As TcpListener::bind does: a restart may bind while old connections are in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Binds both listeners of `config`.
pub async fn bind_both(config: &Config) -> Result<(TcpListener, TcpListener), Error> {
    let credentials = bind(config.listen, &config.listen_origin).await?;
    let admin = bind(config.admin_listen, &config.admin_listen_origin).await?;
    Ok((credentials, admin))
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

    /// The URL of a role's credentials (`None`: the default role).
    pub fn credentials_url(&self, alias: Option<&str>) -> String {
        match alias {
            Some(alias) if alias != self.roles.default_role().alias() => {
                format!("http://{}/v1/credentials/{alias}", self.credentials_addr)
            }
            _ => format!("http://{}/v1/credentials", self.credentials_addr),
        }
    }
}

/// Starts a refresher for every role, in the config's order. A chained role starts after its
/// first link and takes the first link's credentials from that link's refresher, so each link
/// is cached and refreshed on its own.
fn spawn_roles(
    roles: Vec<(RoleConfig, Backend)>,
    metrics: &Arc<Metrics>,
) -> (Vec<RoleHandle>, Vec<JoinHandle<()>>) {
    let mut handles: Vec<Option<RoleHandle>> = vec![None; roles.len()];
    let aliases: Vec<String> = roles.iter().map(|(r, _)| r.alias.clone()).collect();
    let mut pending: Vec<(usize, RoleConfig, Backend)> = roles
        .into_iter()
        .enumerate()
        .map(|(i, (r, b))| (i, r, b))
        .collect();
    let mut refreshers = Vec::new();
    while !pending.is_empty() {
        let before = pending.len();
        let mut waiting = Vec::new();
        for (i, role, mut backend) in pending {
            if let RoleBackend::Chained { via, .. } = &role.backend {
                let first = aliases
                    .iter()
                    .position(|a| a == via)
                    .and_then(|j| handles[j].clone());
                match (first, &mut backend) {
                    #[cfg(feature = "sts")]
                    (Some(first), Backend::Chained(chained)) => chained.attach(Box::new(first)),
                    (Some(_), _) => {}
                    (None, _) => {
                        waiting.push((i, role, backend));
                        continue;
                    }
                }
            }
            let (source, kind) = backend.source_name();
            metrics.set_role_source(&role.alias, source, kind);
            let (handle, task) = cache::spawn_role(&role.alias, backend, metrics.clone());
            handles[i] = Some(handle);
            refreshers.push(task);
        }
        if waiting.len() == before {
            // The configuration refuses loops; a chained role whose first link cannot start
            // keeps the first link's own backend, fetched directly.
            for (i, role, backend) in waiting.drain(..) {
                let (handle, task) = cache::spawn_role(&role.alias, backend, metrics.clone());
                handles[i] = Some(handle);
                refreshers.push(task);
            }
        }
        pending = waiting;
    }
    (handles.into_iter().flatten().collect(), refreshers)
}

/// Starts refreshers and both servers on already bound listeners.
pub async fn start(
    config: &Config,
    auth: Auth,
    credentials: TcpListener,
    admin: TcpListener,
) -> Result<Sidecar, Error> {
    let metrics = Arc::new(Metrics::new());
    let built = build(config, &metrics).await?;
    let (handles, refreshers) = spawn_roles(built.roles, &metrics);
    let roles = Roles::new(handles).ok_or_else(|| Error::NoSuchRole {
        alias: "(the default)".to_owned(),
        known: String::new(),
    })?;
    let extra_hosts: Vec<_> = [config.listen.ip(), config.admin_listen.ip()]
        .into_iter()
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
        .collect();
    let local = |l: &TcpListener, what| {
        l.local_addr()
            .map_err(|source| Error::Listener { what, source })
    };
    let credentials_addr = local(&credentials, "credentials")?;
    let admin_addr = local(&admin, "admin")?;
    let mut app = CredentialsApp::new(
        roles.clone(),
        Arc::new(auth),
        metrics.clone(),
        config.cold_start_wait,
        extra_hosts.clone(),
    );
    let mut refreshers = refreshers;
    if let Some(tokens) = &config.identity_tokens
        && let Some(source) = config.source(&tokens.source)
    {
        let audiences = Arc::new(token::audiences::Audiences::new(
            &tokens.source,
            source.settings.clone(),
            tokens.audiences.clone(),
            metrics.clone(),
        ));
        for (path, audience) in &tokens.files {
            refreshers.push(tokio::spawn(token::audiences::keep_file(
                audiences.clone(),
                path.clone(),
                audience.clone(),
                config.auth_token_file_mode,
            )));
        }
        app = app.with_identity_tokens(audiences);
    }
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

/// Where the authorization token is, for messages (`check`).
pub fn auth_origin(config: &Config) -> String {
    match &config.auth {
        AuthSource::Fixed(_) => format!("<redacted>, from {ENV_AUTH_TOKEN}"),
        AuthSource::File(p) => format!("from the file {}", p.display()),
        AuthSource::Generated(_) => "<redacted>, generated for this process".to_owned(),
        AuthSource::Unset => "not set".to_owned(),
    }
}
