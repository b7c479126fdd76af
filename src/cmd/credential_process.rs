//! `sts-sidecar credential-process [--role ALIAS]`: credentials as `credential_process`
//! Version 1 JSON on stdout (docs/sdk-clients.md §5), for tools that only read `~/.aws/config`.
//!
//! When `AWS_CONTAINER_CREDENTIALS_FULL_URI` and its token (`AWS_CONTAINER_AUTHORIZATION_TOKEN`
//! or `_FILE`) are set, a running sidecar is asked (`--role` appends `/<alias>` to that URL);
//! otherwise the exchange is done once with the serve flags. Only the JSON goes to stdout;
//! diagnostics go to stderr; stdin is never read.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use serde::Deserialize;

use super::{ExitError, build, pick_role};
use crate::backend::{Credentials, SecretAccessKey, SessionToken};
use crate::cli::CredentialProcessArgs;
use crate::config::{Config, ENV_AUTH_TOKEN, Env};
use crate::metrics::Metrics;

/// The endpoint a running sidecar is asked at.
pub const ENV_FULL_URI: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
/// The file holding the token for it.
pub const ENV_AUTH_TOKEN_FILE: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE";

/// Prints the credentials; returns the exit code.
pub async fn run(args: &CredentialProcessArgs, env: &dyn Env) -> Result<i32, ExitError> {
    let creds = match env.var(ENV_FULL_URI) {
        Some(uri) => from_sidecar(&uri, args.role.as_deref(), env).await?,
        None => exchange(args, env).await?,
    };
    let mut json = creds
        .process_json()
        .context("rendering the credentials as JSON")
        .map_err(ExitError::failure)?;
    json.push(b'\n');
    use std::io::Write as _;
    std::io::stdout()
        .write_all(&json)
        .context("writing to stdout")
        .map_err(ExitError::failure)?;
    Ok(0)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerCredentials {
    access_key_id: String,
    secret_access_key: String,
    token: String,
    expiration: String,
    account_id: Option<String>,
    role_arn: Option<String>,
}

async fn from_sidecar(
    uri: &str,
    role: Option<&str>,
    env: &dyn Env,
) -> Result<Credentials, ExitError> {
    let token = match (env.var(ENV_AUTH_TOKEN_FILE), env.var(ENV_AUTH_TOKEN)) {
        (Some(path), _) => std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {ENV_AUTH_TOKEN_FILE} {path}"))
            .map_err(ExitError::failure)?,
        (None, Some(token)) => token,
        (None, None) => {
            return Err(ExitError::failure(anyhow!(
                "{ENV_FULL_URI} is set but neither {ENV_AUTH_TOKEN} nor {ENV_AUTH_TOKEN_FILE}: \
                 set the one the sidecar at {uri} uses"
            )));
        }
    };
    let url = match role {
        Some(alias) => format!("{}/{alias}", uri.trim_end_matches('/')),
        None => uri.to_owned(),
    };
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| ExitError::failure(anyhow!("cannot set up an HTTP client: {e}")))?;
    let response = client
        .get(&url)
        .header(http::header::AUTHORIZATION, token)
        .send()
        .await
        .map_err(|e| {
            ExitError::failure(anyhow!(
                "cannot reach the sidecar at {url}: {}",
                crate::token::chain(&e)
            ))
        })?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| ExitError::failure(anyhow!("reading the answer from {url}: {e}")))?;
    if status != http::StatusCode::OK {
        let code = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("Code").and_then(|c| c.as_str()).map(str::to_owned))
            .unwrap_or_default();
        return Err(ExitError::failure(anyhow!(
            "the sidecar at {url} answered HTTP {} {code}",
            status.as_u16()
        )));
    }
    let parsed: ContainerCredentials = serde_json::from_slice(&body).map_err(|e| {
        ExitError::failure(anyhow!(
            "the sidecar at {url} answered JSON without credentials: {e}"
        ))
    })?;
    let expiration = aws_sdk_sts::primitives::DateTime::from_str(
        &parsed.expiration,
        aws_sdk_sts::primitives::DateTimeFormat::DateTime,
    )
    .map_err(|e| {
        ExitError::failure(anyhow!(
            "the sidecar at {url} sent an unreadable Expiration: {e}"
        ))
    })?
    .secs();
    Ok(Credentials {
        access_key_id: parsed.access_key_id,
        secret_access_key: SecretAccessKey::new(parsed.secret_access_key),
        session_token: SessionToken::new(parsed.token),
        expiration,
        account_id: parsed.account_id.unwrap_or_default(),
        role_arn: parsed.role_arn.unwrap_or_default(),
        assumed_role_arn: None,
    })
}

async fn exchange(args: &CredentialProcessArgs, env: &dyn Env) -> Result<Credentials, ExitError> {
    let mut flags = args.common.overrides();
    flags.fresh_auth_token = true;
    // The help promises one line on stderr and exit 1 on failure: the SDK shows that line.
    let config = Config::load(&flags, env).map_err(|e| {
        let problems: Vec<String> = e
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.key, p.message))
            .collect();
        ExitError::failure(anyhow!("invalid configuration: {}", problems.join("; ")))
    })?;
    let alias = pick_role(&config, args.role.as_deref())
        .map_err(|e| ExitError::failure(e.source))?
        .alias
        .clone();
    let metrics = Arc::new(Metrics::new());
    let built = build(&config, &metrics).await.map_err(ExitError::failure)?;
    let backend = built
        .roles
        .into_iter()
        .find(|(role, _)| role.alias == alias)
        .map(|(_, b)| b)
        .ok_or_else(|| ExitError::failure(anyhow!("--role {alias}: no such role")))?;
    backend
        .fetch()
        .await
        .map_err(|e| ExitError::failure(anyhow!(e)))
}
