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
use clap::ArgMatches;
use serde::Deserialize;

use super::ExitError;
use crate::app;
use crate::backend::{Credentials, SecretAccessKey, SessionToken};
use crate::cli::CredentialProcessArgs;
use crate::config::{Config, ENV_AUTH_TOKEN, Env, Overrides};
use crate::metrics::Metrics;

/// The endpoint a running sidecar is asked at.
pub const ENV_FULL_URI: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
/// The file holding the token for it.
pub const ENV_AUTH_TOKEN_FILE: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE";

/// Prints the credentials; returns the exit code.
pub async fn run(
    args: &CredentialProcessArgs,
    matches: &ArgMatches,
    env: &dyn Env,
) -> Result<i32, ExitError> {
    let creds = match env.var(ENV_FULL_URI) {
        Some(uri) => from_sidecar(&uri, args.role.as_deref(), env).await?,
        None => exchange(args, matches, env).await?,
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
            return Err(ExitError::config(anyhow!(
                "{ENV_FULL_URI} is set but neither {ENV_AUTH_TOKEN} nor {ENV_AUTH_TOKEN_FILE}: \
                 set the one the sidecar at {uri} uses"
            )));
        }
    };
    check_uri(uri)?;
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
                crate::report::chain(&e)
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
    let expiration = crate::clock::parse_rfc3339(&parsed.expiration).ok_or_else(|| {
        ExitError::failure(anyhow!(
            "the sidecar at {url} sent an unreadable Expiration: {:?}",
            parsed.expiration
        ))
    })?;
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

/// Refuses a URI the AWS SDKs refuse: the authorization token may travel in clear text only to
/// this machine (a loopback address) or to the ECS and EKS agents' link-local addresses.
fn check_uri(uri: &str) -> Result<(), ExitError> {
    let url = reqwest::Url::parse(uri)
        .map_err(|e| ExitError::config(anyhow!("{ENV_FULL_URI} is not a URL ({e}): {uri:?}")))?;
    let host = url.host_str().unwrap_or("");
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let allowed = match url.scheme() {
        "https" => true,
        "http" => {
            bare.eq_ignore_ascii_case("localhost")
                || bare
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
                || ["169.254.170.2", "169.254.170.23", "fd00:ec2::23"].contains(&bare)
        }
        _ => false,
    };
    if allowed {
        return Ok(());
    }
    Err(ExitError::config(anyhow!(
        "{ENV_FULL_URI} is {uri}: the authorization token would be sent in clear text to {host}, \
         which is not a loopback address (the AWS SDKs refuse such a URL too); use https:// or \
         http://127.0.0.1"
    )))
}

async fn exchange(
    args: &CredentialProcessArgs,
    matches: &ArgMatches,
    env: &dyn Env,
) -> Result<Credentials, ExitError> {
    let mut flags = Overrides::new(matches, env);
    flags.fresh_auth_token = true;
    // The help promises one line on stderr: the SDK shows that line.
    let config = Config::load(&flags, env).map_err(|e| ExitError::config(anyhow!(e.one_line())))?;
    let alias = app::pick_role(&config, args.role.as_deref())?.alias.clone();
    let metrics = Arc::new(Metrics::new());
    let built = app::build(&config, &metrics).await?;
    let Some(backend) = built
        .roles
        .into_iter()
        .find(|(role, _)| role.alias == alias)
        .map(|(_, b)| b)
    else {
        return Err(ExitError::config(anyhow!("--role {alias}: no such role")));
    };
    backend
        .fetch()
        .await
        .map_err(|e| ExitError::failure(anyhow!(crate::report::chain(&e))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_the_token_in_clear_only_to_this_machine() {
        for ok in [
            "http://127.0.0.1:61679/v1/credentials",
            "http://localhost:1/x",
            "http://[::1]:1/x",
            "http://169.254.170.2/v2/credentials",
            "https://creds.example.com/x",
        ] {
            assert!(check_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://creds.example.com/x",
            "http://10.0.0.5:61679/v1/credentials",
            "ftp://127.0.0.1/x",
        ] {
            let e = check_uri(bad).expect_err(bad);
            assert_eq!(e.code, super::super::EXIT_CONFIG);
        }
    }
}
