//! `sts-sidecar check`: what a user runs first when something is wrong. It prints the
//! effective configuration (redacted), reads the certificate, fetches an identity token (printing
//! its claims, never the token), and assumes each role. Each failure gets one line saying what
//! to fix. Exit 0 only when every step passed.
//!
//! `check --wait SECS` instead polls a running sidecar's `/ready` at `--admin-listen` (or
//! `STS_SIDECAR_ADMIN_LISTEN`, default 127.0.0.1:61680), for start scripts.

use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;

use super::{ExitError, backends, pick_role};
use crate::backend::{self, ErrorClass};
use crate::cli::CheckArgs;
use crate::clock::format_rfc3339;
use crate::config::{AuthSource, Config, DEFAULT_ADMIN_LISTEN, Env};
use crate::metrics::Metrics;
use crate::token::Claims;

/// Runs the checks; returns the exit code (0 all passed, 1 something failed).
pub async fn run(args: &CheckArgs, env: &dyn Env) -> Result<i32, ExitError> {
    if let Some(secs) = args.wait {
        return wait(args, env, Duration::from_secs(secs)).await;
    }
    let mut flags = args.serve.overrides();
    flags.fresh_auth_token = true;
    let config = Config::load(&flags, env).map_err(ExitError::config)?;
    let selected = match &args.role {
        Some(alias) => vec![pick_role(&config, Some(alias))?.alias.clone()],
        None => config.roles.iter().map(|r| r.alias.clone()).collect(),
    };
    print_config(&config);
    let mut failed = false;

    println!("\nidentity");
    let metrics = Arc::new(Metrics::new());
    let (token_source, backends) = backends(&config, &metrics)
        .await
        .map_err(ExitError::config)?;
    match config.identity.read_pair().await {
        Ok(pair) => {
            let leaf = &pair.leaf;
            println!(
                "  ok    certificate {} ({} in chain)",
                config.identity.cert_path.display(),
                leaf.chain_len
            );
            println!("        subject     {}", leaf.subject);
            for ou in &leaf.organizational_units {
                println!("        OU          {ou}");
            }
            println!("        expires     {}", format_rfc3339(leaf.not_after));
        }
        Err(e) => {
            failed = true;
            println!("  FAIL  {e}");
            println!("  fix:  {}", e.hint());
        }
    }

    println!("\nidentity token");
    let claims = match token_source.token().await {
        Ok((_token, Some(claims))) => {
            println!("  ok    from {}", config.token_service.url);
            println!(
                "        iss         {}",
                claims.iss.as_deref().unwrap_or("(none)")
            );
            println!(
                "        sub         {}",
                claims.sub.as_deref().unwrap_or("(none)")
            );
            println!("        aud         {}", claims.aud.join(", "));
            println!("        exp         {}", format_rfc3339(claims.exp));
            Some(claims)
        }
        Ok((_token, None)) => {
            println!(
                "  ok    from {} (an opaque token, not a JWT)",
                token_source.describe()
            );
            None
        }
        Err(e) => {
            failed = true;
            println!("  FAIL  {e}");
            println!("  fix:  {}", e.hint());
            None
        }
    };

    println!("\nroles");
    for (role, backend) in backends.iter().filter(|(r, _)| selected.contains(&r.alias)) {
        if claims.is_none() {
            failed = true;
            println!("  skip  {} ({}): no identity token", role.alias, role.arn);
            continue;
        }
        match backend.fetch().await {
            Ok(creds) => println!(
                "  ok    {} → {} (expires {})",
                role.alias,
                creds.assumed_role_arn.as_deref().unwrap_or(&creds.role_arn),
                format_rfc3339(creds.expiration)
            ),
            Err(e) => {
                failed = true;
                println!("  FAIL  {} ({}): {e}", role.alias, role.arn);
                println!("  fix:  {}", sts_hint(&e, claims.as_ref(), &role.arn));
            }
        }
    }
    println!(
        "\n{}",
        if failed {
            "check failed"
        } else {
            "check passed"
        }
    );
    Ok(i32::from(failed))
}

fn print_config(config: &Config) {
    println!("configuration");
    println!("  listen            {}", config.listen);
    println!("  admin_listen      {}", config.admin_listen);
    println!(
        "  imds              {}{}",
        config.imds,
        if config.imds_v1 {
            " (IMDSv1 allowed)"
        } else {
            ""
        }
    );
    println!(
        "  auth token        {}",
        match &config.auth {
            AuthSource::Fixed(_) => "<redacted>".to_owned(),
            AuthSource::File(p) => format!("file {}", p.display()),
        }
    );
    println!(
        "  certificate       {} (from {})",
        config.identity.cert_path.display(),
        config.identity.cert_origin
    );
    println!(
        "  key               {} (from {})",
        config.identity.key_path.display(),
        config.identity.key_origin
    );
    println!("  token service     {}", config.token_service.url);
    if let Some(ca) = &config.token_service.ca_file {
        println!("  token service CA  {}", ca.display());
    }
    println!("  sts region        {}", config.sts.region);
    println!(
        "  sts endpoint      {}",
        config.sts.endpoint.as_deref().unwrap_or("(AWS default)")
    );
    for role in &config.roles {
        println!(
            "  role              {}: {} session {} for {}s",
            role.alias,
            role.arn,
            role.session_name,
            role.duration.as_secs()
        );
    }
}

fn sts_hint(e: &backend::Error, claims: Option<&Claims>, role_arn: &str) -> String {
    let iss = claims
        .and_then(|c| c.iss.as_deref())
        .unwrap_or("<token service URL>");
    let provider = iss.trim_start_matches("https://");
    let sub = claims
        .and_then(|c| c.sub.as_deref())
        .unwrap_or("<org guid>:<space guid>:<app guid>");
    match e {
        backend::Error::Token(inner) => inner.hint(),
        backend::Error::Sts { code, message, .. } => match code.as_str() {
            "AccessDenied" => format!(
                "the trust policy of {role_arn} must allow sts:AssumeRoleWithWebIdentity for the federated principal {provider} with the condition {provider}:sub matching \"{sub}\" (e.g. StringLike \"<org guid>:<space guid>:*\") and {provider}:aud = sts.amazonaws.com"
            ),
            "InvalidIdentityToken" if message.contains("audience") => format!(
                "add sts.amazonaws.com to the client IDs (audiences) of the IAM OIDC provider for {iss}"
            ),
            "InvalidIdentityToken" => format!(
                "create an IAM OIDC provider for {iss} and make {iss}/.well-known/openid-configuration and its JWKS reachable from the internet over HTTPS"
            ),
            "IDPRejectedClaim" => format!("the identity provider rejected the token's claims: compare the trust policy's conditions with sub = \"{sub}\""),
            "ExpiredTokenException" | "ExpiredToken" => "the token expired before STS checked it: check the clocks (NTP) here and at the token service".to_owned(),
            "ValidationError" if message.contains("DurationSeconds") => "lower --duration to at most the role's MaxSessionDuration".to_owned(),
            "RegionDisabledException" => "activate STS in this region for the account, or choose another --sts-region".to_owned(),
            _ => "see the STS error above".to_owned(),
        },
        backend::Error::Transport { class, .. } => match class {
            ErrorClass::Unavailable | ErrorClass::Throttled => "check --sts-region / --sts-endpoint (or AWS_ENDPOINT_URL_STS) and HTTPS_PROXY".to_owned(),
            _ => "the STS endpoint answered something that is not STS: check --sts-endpoint".to_owned(),
        },
    }
}

async fn wait(args: &CheckArgs, env: &dyn Env, limit: Duration) -> Result<i32, ExitError> {
    let admin = args
        .serve
        .admin_listen
        .clone()
        .or_else(|| env.var("STS_SIDECAR_ADMIN_LISTEN"))
        .unwrap_or_else(|| DEFAULT_ADMIN_LISTEN.to_owned());
    let url = format!("http://{admin}/ready");
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| ExitError::failure(anyhow!("cannot set up an HTTP client: {e}")))?;
    let deadline = tokio::time::Instant::now() + limit;
    let mut last: String;
    loop {
        match client.get(&url).send().await {
            Ok(r) if r.status() == http::StatusCode::OK => {
                println!("ready: {url}");
                return Ok(0);
            }
            Ok(r) => last = format!("HTTP {}", r.status().as_u16()),
            Err(e) => last = crate::token::chain(&e),
        }
        if tokio::time::Instant::now() >= deadline {
            eprintln!(
                "sts-sidecar: not ready after {}s at {url}: {last}",
                limit.as_secs()
            );
            return Ok(1);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
