//! `sts-sidecar exec [flags] -- COMMAND [ARGS...]`: the server on an ephemeral loopback port
//! with a fresh random token, then COMMAND with the standard variables pointing at it.
//!
//! The child inherits the environment minus every variable that would make its SDK prefer other
//! credentials over the container provider; it gets SIGINT, SIGTERM and SIGHUP forwarded, and its
//! exit code (or 128 + the signal that killed it) becomes ours. Nothing here exits because an
//! upstream failed after the first credentials arrived.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::ArgMatches;

use super::ExitError;
use crate::app;
use crate::cli::ExecArgs;
use crate::config::{AuthSource, Config, Env, Overrides};

/// Variables that would win over the container provider in some SDK's default chain.
pub const CONFLICTING_VARS: [&str; 12] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_CREDENTIAL_PROCESS",
];

/// Runs COMMAND; returns the exit code to use.
pub async fn run(args: &ExecArgs, matches: &ArgMatches, env: &dyn Env) -> Result<i32, ExitError> {
    let mut flags = Overrides::new(matches, env);
    let ephemeral = SocketAddr::from(([127, 0, 0, 1], 0));
    flags.set_listen(
        args.listen.unwrap_or(ephemeral),
        args.admin_listen.unwrap_or(ephemeral),
    );
    if args.imds {
        flags.server.imds = Some(true);
    }
    flags.fresh_auth_token = true;
    // Google Cloud for the child: its provider's audience is served too.
    let gcp = gcp_args(args)?;
    if let Some(g) = &gcp {
        let aud = super::gcp_credentials::audience(&g.project_number, &g.pool, &g.provider);
        flags
            .common
            .token_audience
            .get_or_insert_with(Vec::new)
            .push(aud);
    }
    let config = Config::load(&flags, env)?;
    super::require_files(&config)?;
    let role = app::pick_role(&config, args.role.as_deref())?.alias.clone();
    let AuthSource::Generated(token) = &config.auth else {
        return Err(ExitError::failure(anyhow::anyhow!(
            "internal: exec needs a generated token"
        )));
    };
    let token = token.clone();
    let auth = app::auth(&config)?;
    let (credentials, admin) = app::bind_both(&config).await?;
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let sidecar = app::start(&config, auth, credentials, admin).await?;

    let Some(handle) = sidecar.roles.get(&role).cloned() else {
        return Err(ExitError::config(anyhow::anyhow!(
            "--role {role}: no such role"
        )));
    };
    let deadline = Duration::from_secs(args.ready_timeout);
    if handle.wait_usable(deadline).await.is_none() {
        let status = handle.status();
        sidecar.shutdown().await;
        return Err(ExitError::failure(anyhow::anyhow!(
            "no credentials for role {role} after {}s: {}",
            args.ready_timeout,
            status
                .last_error
                .unwrap_or_else(|| "still waiting for the first answer".to_owned())
        )));
    }

    let url = sidecar.credentials_url(Some(&role));
    let removed: Vec<&str> = CONFLICTING_VARS
        .iter()
        .copied()
        .filter(|v| env.var(v).is_some())
        .collect();
    if !removed.is_empty() {
        tracing::debug!(
            ?removed,
            "removed AWS credential variables from the child's environment"
        );
    }
    // Azure's federated token file and Google's configuration, when asked for.
    let mut extra: Vec<(&str, String)> = Vec::new();
    if let Some(tokens) = &config.identity_tokens
        && let Some((path, _)) = tokens.files.first()
    {
        let until = tokio::time::Instant::now() + deadline.min(Duration::from_secs(10));
        while !path.exists() && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if !path.exists() {
            tracing::warn!(
                path = %path.display(),
                "the federated token file is not written yet (the sidecar's log says why); the \
                 child starts anyway and Azure's library reads it when it appears"
            );
        }
        extra.push(("AZURE_FEDERATED_TOKEN_FILE", path.display().to_string()));
    }
    let private = match &gcp {
        Some(g) => {
            let dir = private_dir().map_err(|e| {
                ExitError::failure(anyhow::anyhow!("cannot make a private directory: {e}"))
            })?;
            let aud = super::gcp_credentials::audience(&g.project_number, &g.pool, &g.provider);
            let doc = super::gcp_credentials::document(
                &aud,
                &sidecar.credentials_addr.to_string(),
                token.expose(),
                g,
            );
            let path = dir.join("gcp-credentials.json");
            crate::files::replace(&path, format!("{doc:#}\n").as_bytes(), 0o600).map_err(|e| {
                ExitError::failure(anyhow::anyhow!("cannot write {}: {e}", path.display()))
            })?;
            extra.push(("GOOGLE_APPLICATION_CREDENTIALS", path.display().to_string()));
            Some(dir)
        }
        None => None,
    };
    let program = &args.command[0];
    let mut command = tokio::process::Command::new(program);
    command.envs(extra.iter().map(|(k, v)| (*k, v.as_str())));
    command
        .args(&args.command[1..])
        .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", &url)
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", token.expose());
    for var in CONFLICTING_VARS {
        command.env_remove(var);
    }
    if config.imds {
        command.env(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            format!("http://{}", sidecar.credentials_addr),
        );
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            sidecar.shutdown().await;
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            return Err(ExitError {
                code,
                source: anyhow::anyhow!("cannot run {program}: {e}"),
            });
        }
    };
    tracing::debug!(program = %program, pid = child.id(), credentials = %url, "child started");
    let code = supervise(&mut child).await.map_err(ExitError::failure);
    sidecar.shutdown().await;
    if let Some(dir) = private {
        let _ = std::fs::remove_dir_all(dir);
    }
    code
}

/// The Google flags as `gcp-credentials` takes them, checked; `None` without them.
fn gcp_args(args: &ExecArgs) -> Result<Option<crate::cli::GcpCredentialsArgs>, ExitError> {
    let Some(number) = &args.gcp_project_number else {
        return Ok(None);
    };
    let g = crate::cli::GcpCredentialsArgs {
        project_number: number.clone(),
        pool: args.gcp_pool.clone().unwrap_or_default(),
        provider: args.gcp_provider.clone().unwrap_or_default(),
        service_account: args.gcp_impersonate.clone(),
        listen: None,
        auth_token_file: None,
        out: None,
        google_token_url: None,
        google_iam_credentials_url: None,
    };
    let problems: Vec<String> = super::gcp_credentials::check(&g)
        .into_iter()
        .map(|p| {
            p.replacen("--service-account", "--gcp-impersonate", 1)
                .replacen("--project-number", "--gcp-project-number", 1)
                .replacen("--pool", "--gcp-pool", 1)
                .replacen("--provider", "--gcp-provider", 1)
        })
        .collect();
    if !problems.is_empty() {
        return Err(ExitError::config(anyhow::anyhow!(
            "cannot set up Google Cloud for the child:\n  {}",
            problems.join("\n  ")
        )));
    }
    Ok(Some(g))
}

/// A new directory only this user can enter, for files that hold the authorization token.
fn private_dir() -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::DirBuilderExt as _;
    let base = std::env::temp_dir();
    for attempt in 0..16u32 {
        let dir = base.join(format!("sts-sidecar-exec-{}-{attempt}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(
        "no free name for a private directory",
    ))
}

/// Waits for the child, forwarding SIGINT, SIGTERM and SIGHUP; returns its exit code, or
/// 128 + signal when a signal ended it.
#[cfg(unix)]
async fn supervise(child: &mut tokio::process::Child) -> anyhow::Result<i32> {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    use tokio::signal::unix::{SignalKind, signal};

    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    let forward = |sig: Signal| {
        if let Some(pid) = pid {
            tracing::debug!(signal = %sig, "forwarding to the child");
            let _ = kill(pid, sig);
        }
    };
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.context("waiting for the child")?,
            _ = int.recv() => forward(Signal::SIGINT),
            _ = term.recv() => forward(Signal::SIGTERM),
            _ = hup.recv() => forward(Signal::SIGHUP),
        }
    };
    use std::os::unix::process::ExitStatusExt as _;
    Ok(status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1))
}

#[cfg(not(unix))]
async fn supervise(child: &mut tokio::process::Child) -> anyhow::Result<i32> {
    let status = child.wait().await.context("waiting for the child")?;
    Ok(status.code().unwrap_or(1))
}
