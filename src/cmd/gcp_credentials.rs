//! `sts-sidecar gcp-credentials`: a Google Cloud credential configuration (`type:
//! external_account`) that takes its subject token from the sidecar.
//!
//! Google's auth libraries read the file named by `GOOGLE_APPLICATION_CREDENTIALS`. A
//! URL-sourced one makes them GET `credential_source.url` with `credential_source.headers` and
//! read the token from the JSON field `format.subject_token_field_name`; they exchange it at
//! `token_url` (Google's STS) for the workload identity pool provider named by `audience`, and
//! with `service_account_impersonation_url` trade that for a service account's token. The URL
//! here is the sidecar's `/v1/identity-token` for that very audience, and the header its
//! authorization token, so the file holds a secret: `--out` writes it with mode 0600.

use std::path::Path;

use anyhow::anyhow;

use super::ExitError;
use crate::cli::GcpCredentialsArgs;
use crate::config::Env;

/// Google's STS token exchange.
const GOOGLE_TOKEN_URL: &str = "https://sts.googleapis.com/v1/token";
/// The IAM Credentials API (service account impersonation).
const GOOGLE_IAM_CREDENTIALS: &str = "https://iamcredentials.googleapis.com";
/// Where the sidecar listens unless told otherwise.
const DEFAULT_LISTEN: &str = "127.0.0.1:61679";

/// The audience Google's STS expects for a workload identity pool provider.
pub fn audience(project_number: &str, pool: &str, provider: &str) -> String {
    format!(
        "//iam.googleapis.com/projects/{project_number}/locations/global/workloadIdentityPools/\
         {pool}/providers/{provider}"
    )
}

/// Prints (or writes) the configuration.
pub fn run(args: &GcpCredentialsArgs, env: &dyn Env) -> Result<(), ExitError> {
    let problems = check(args);
    if !problems.is_empty() {
        return Err(ExitError::config(anyhow!(
            "cannot write the configuration:\n  {}",
            problems.join("\n  ")
        )));
    }
    let token = auth_token(args, env)?;
    let aud = audience(&args.project_number, &args.pool, &args.provider);
    let listen = args
        .listen
        .map_or_else(|| DEFAULT_LISTEN.to_owned(), |a| a.to_string());
    let doc = document(&aud, &listen, &token, args);
    let text = format!(
        "{}\n",
        serde_json::to_string_pretty(&doc).map_err(|e| ExitError::failure(anyhow!(e)))?
    );
    eprintln!(
        "sts-sidecar: the sidecar must serve this audience: --token-audience {aud} (or \
         [identity_tokens] audiences)"
    );
    match &args.out {
        Some(path) => write(path, &text),
        None => {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| ExitError::failure(anyhow!("writing to stdout: {e}")))
        }
    }
}

/// The configuration for `aud`, served at `listen` behind `token`.
pub fn document(
    aud: &str,
    listen: &str,
    token: &str,
    args: &GcpCredentialsArgs,
) -> serde_json::Value {
    let url = format!(
        "http://{listen}/v1/identity-token?audience={}",
        form_urlencoded::byte_serialize(aud.as_bytes()).collect::<String>()
    );
    let mut doc = serde_json::json!({
        "type": "external_account",
        "audience": aud,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": args.google_token_url.as_deref().unwrap_or(GOOGLE_TOKEN_URL),
        "credential_source": {
            "url": url,
            "headers": {"Authorization": token},
            "format": {"type": "json", "subject_token_field_name": "token"},
        },
    });
    if let Some(email) = &args.service_account {
        let base = args
            .google_iam_credentials_url
            .as_deref()
            .unwrap_or(GOOGLE_IAM_CREDENTIALS)
            .trim_end_matches('/');
        doc["service_account_impersonation_url"] = serde_json::Value::String(format!(
            "{base}/v1/projects/-/serviceAccounts/{email}:generateAccessToken"
        ));
    }
    doc
}

/// Every problem with the arguments, each naming its flag.
pub fn check(args: &GcpCredentialsArgs) -> Vec<String> {
    let mut problems = Vec::new();
    if args.project_number.is_empty() || !args.project_number.bytes().all(|b| b.is_ascii_digit()) {
        problems.push(format!(
            "--project-number: must be the project's number (digits; `gcloud projects describe \
             PROJECT --format 'value(projectNumber)'`), got {:?}",
            args.project_number
        ));
    }
    for (flag, id) in [("--pool", &args.pool), ("--provider", &args.provider)] {
        let ok = (4..=32).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !id.starts_with('-')
            && !id.ends_with('-');
        if !ok {
            problems.push(format!(
                "{flag}: must be an id of 4-32 characters a-z 0-9 -, got {id:?}"
            ));
        }
    }
    if let Some(email) = &args.service_account
        && (!email.contains('@') || email.chars().any(|c| c.is_whitespace() || c == '/'))
    {
        problems.push(format!(
            "--service-account: must be a service account's email, got {email:?}"
        ));
    }
    for (flag, url) in [
        ("--google-token-url", &args.google_token_url),
        (
            "--google-iam-credentials-url",
            &args.google_iam_credentials_url,
        ),
    ] {
        if let Some(url) = url
            && !reqwest::Url::parse(url).is_ok_and(|u| crate::checker::is_secret_safe(&u))
        {
            problems.push(format!(
                "{flag}: must be an https:// URL (or http:// on a loopback address), got {url:?}"
            ));
        }
    }
    problems
}

/// The sidecar's authorization token, for the configuration's header.
fn auth_token(args: &GcpCredentialsArgs, env: &dyn Env) -> Result<String, ExitError> {
    let file = args.auth_token_file.clone().or_else(|| {
        env.var(super::credential_process::ENV_AUTH_TOKEN_FILE)
            .map(Into::into)
    });
    let token = match file {
        Some(path) => std::fs::read_to_string(&path).map_err(|e| {
            ExitError::config(anyhow!(
                "cannot read the authorization token file {}: {e} (serve creates it when it \
                 starts; run this after it)",
                path.display()
            ))
        })?,
        None => env.var(crate::config::ENV_AUTH_TOKEN).ok_or_else(|| {
            ExitError::config(anyhow!(
                "no authorization token: pass --auth-token-file FILE (the sidecar's), or set \
                     AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE or AWS_CONTAINER_AUTHORIZATION_TOKEN"
            ))
        })?,
    };
    let token = token.trim().to_owned();
    if token.is_empty() {
        return Err(ExitError::config(anyhow!(
            "the authorization token is empty"
        )));
    }
    Ok(token)
}

fn write(path: &Path, text: &str) -> Result<(), ExitError> {
    crate::files::replace(path, text.as_bytes(), 0o600)
        .map_err(|e| ExitError::failure(anyhow!("cannot write {}: {e}", path.display())))
}
