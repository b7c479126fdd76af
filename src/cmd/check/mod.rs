//! `sts-sidecar check`: what a user runs first when something is wrong, and the trust-policy
//! doctor. It judges exactly the settings `serve` would run with (a configuration `serve` refuses
//! is refused here too, exit 64), prints them redacted, then for each identity source the token's
//! claims (never the token) and the IAM condition keys a role's trust policy must use for it,
//! filled with the token's real values, and finally assumes each role. Each failure gets one line
//! saying what to fix. Exit 0 only when every step passed.
//!
//! `check --wait SECS` instead polls a running sidecar's `/ready` at `--admin-listen` (or
//! `STS_SIDECAR_ADMIN_LISTEN`, or the config file's `server.admin_listen`), for start scripts.

mod audiences;
mod staging;

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use clap::ArgMatches;

use super::ExitError;
use crate::app;
use crate::backend;
use crate::cli::CheckArgs;
use crate::clock::format_rfc3339;
use crate::config::{AuthSource, Config, ENV_AUTH_TOKEN, Env, Overrides};
use crate::metrics::Metrics;
use crate::token::{Claims, TokenSource};
use crate::trust::{self, Trust};

/// Runs the checks; returns the exit code (0 all passed, 1 something failed).
pub async fn run(args: &CheckArgs, matches: &ArgMatches, env: &dyn Env) -> Result<i32, ExitError> {
    if args.config_only {
        return staging::config_only(args, matches, env);
    }
    let mut flags = Overrides::new(matches, env);
    if let Some(secs) = args.wait {
        return wait(&flags, env, Duration::from_secs(secs)).await;
    }
    // The doctor serves nothing: it does not need the token serve shares with the app.
    flags.auth_optional = true;
    let config = Config::load(&flags, env)?;
    let selected = match &args.role {
        Some(alias) => vec![app::pick_role(&config, Some(alias))?.alias.clone()],
        None => config.roles.iter().map(|r| r.alias.clone()).collect(),
    };
    let policy = match &args.trust_policy {
        None => None,
        Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
            ExitError::config(anyhow!(
                "--trust-policy: cannot read {}: {e}",
                path.display()
            ))
        })?),
    };
    let mut out = Report::default();
    print_config(&mut out, &config);
    let mut failed = check_auth(&mut out, &config);

    let metrics = Arc::new(Metrics::new());
    let built = app::build(&config, &metrics).await?;
    let mut claims_by_source: Vec<(String, Option<Claims>)> = Vec::new();
    for source in &built.sources {
        let (ok, claims) = check_source(&mut out, &config, source).await;
        failed |= !ok;
        claims_by_source.push((source.name().to_owned(), claims));
    }
    if let Some(tokens) = &config.identity_tokens {
        failed |= !audiences::check(&mut out, &config, tokens).await;
    }
    for role in config.roles.iter().filter(|r| selected.contains(&r.alias)) {
        if let crate::config::RoleBackend::RolesAnywhere(ra) = &role.backend {
            failed |= !check_roles_anywhere(&mut out, &role.alias, &role.arn, ra).await;
        }
    }

    out.line("\nroles");
    for (role, backend) in built
        .roles
        .iter()
        .filter(|(r, _)| selected.contains(&r.alias))
    {
        let claims = claims_by_source
            .iter()
            .find(|(n, _)| Some(n.as_str()) == role.source())
            .and_then(|(_, c)| c.as_ref());
        let chain = chained_from(&config, role);
        if let Some((first, external_id)) = &chain {
            out.line(format!(
                "  chain {} ({}) → {} ({}) with sts:AssumeRole{}",
                first.alias,
                first.arn,
                role.alias,
                role.arn,
                if external_id.is_some() {
                    " and an external ID"
                } else {
                    ""
                }
            ));
        }
        let verdict = match (&policy, claims, &chain) {
            // A chained role trusts the first link's session, not a token.
            (Some(policy), _, Some((first, external_id))) => Some(trust::chained::evaluate(
                policy,
                &trust::chained::FirstLink {
                    role_arn: first.arn.clone(),
                    account: first.account_id.clone(),
                    session_name: first.session_name.clone(),
                },
                external_id.as_ref().map(|e| e.expose()),
            )),
            (Some(policy), Some(claims), None) => {
                Some(trust::evaluate(policy, claims, &role.account_id))
            }
            _ => None,
        };
        match backend.fetch().await {
            Ok(creds) => out.line(format!(
                "  ok    {} → {} (expires {})",
                role.alias,
                creds.assumed_role_arn.as_deref().unwrap_or(&creds.role_arn),
                format_rfc3339(creds.expiration)
            )),
            Err(e) => {
                failed = true;
                out.line(format!(
                    "  FAIL  {} ({}): {}",
                    role.alias,
                    role.arn,
                    crate::report::chain(&e)
                ));
                let denied =
                    matches!(&e, backend::Error::Sts { code, .. } if code == "AccessDenied");
                let failing = verdict
                    .as_ref()
                    .and_then(|v| v.as_ref().ok())
                    .filter(|v| denied && !v.allowed)
                    .and_then(|v| v.lines.iter().find(|l| l.contains("condition")));
                match failing {
                    Some(line) => out.line(format!(
                        "  fix:  the trust policy of {} refuses this token: {line}",
                        role.arn
                    )),
                    None => out.line(format!("  fix:  {}", e.hint(claims, &role.assume()))),
                }
            }
        }
        match verdict {
            Some(Ok(v)) => {
                // The policy refuses what the token says: the role cannot be assumed with this
                // source, whatever STS answered (an emulator may not check trust policies).
                failed |= !v.allowed;
                let what = if chain.is_some() {
                    "the first link's session"
                } else {
                    "this token"
                };
                out.line(format!(
                    "        trust policy {}:",
                    if v.allowed {
                        format!("allows {what}")
                    } else {
                        format!("does not allow {what}")
                    }
                ));
                for line in &v.lines {
                    out.line(format!("          {line}"));
                }
            }
            Some(Err(why)) => {
                failed = true;
                out.line(format!(
                    "  FAIL  --trust-policy {}",
                    crate::report::chain(&why)
                ));
            }
            None if policy.is_some() => out.line(
                "        trust policy not evaluated: the source gave no JWT to read claims from",
            ),
            None => {}
        }
    }
    out.line(format!(
        "\n{}",
        if failed {
            "check failed"
        } else {
            "check passed"
        }
    ));
    Ok(i32::from(failed))
}

/// Writes to stdout; a closed pipe (`check | head -1`) ends the output quietly instead of
/// panicking.
#[derive(Default)]
struct Report {
    closed: bool,
}

impl Report {
    fn line(&mut self, text: impl AsRef<str>) {
        if self.closed {
            return;
        }
        let mut stdout = std::io::stdout().lock();
        if writeln!(stdout, "{}", text.as_ref()).is_err() {
            self.closed = true;
        }
    }
}

/// For a chained role, its first link and the external ID it sends.
fn chained_from<'c>(
    config: &'c Config,
    role: &crate::config::RoleConfig,
) -> Option<(
    &'c crate::config::RoleConfig,
    Option<crate::config::ExternalId>,
)> {
    match &role.backend {
        crate::config::RoleBackend::Chained { via, external_id } => config
            .roles
            .iter()
            .find(|r| r.alias == *via)
            .map(|first| (first, external_id.clone())),
        _ => None,
    }
}

fn print_config(out: &mut Report, config: &Config) {
    out.line("configuration");
    out.line(format!("  listen            {}", config.listen));
    out.line(format!("  admin_listen      {}", config.admin_listen));
    out.line(format!(
        "  imds              {}{}",
        config.imds,
        if config.imds_v1 {
            " (IMDSv1 allowed)"
        } else {
            ""
        }
    ));
    out.line(format!("  auth token        {}", app::auth_origin(config)));
    out.line(format!("  sts region        {}", config.sts.region));
    out.line(format!(
        "  sts endpoint      {}",
        match (&config.sts.endpoint, &config.sts_endpoint_env) {
            (Some(e), _) => e.clone(),
            (None, Some(from_env)) => from_env.clone(),
            (None, None) => "(AWS default: the regional endpoint)".to_owned(),
        }
    ));
    for source in &config.sources {
        out.line(format!(
            "  source            {} ({}): {}",
            source.name,
            source.settings.kind(),
            source.settings.describe()
        ));
    }
    for role in &config.roles {
        out.line(format!(
            "  role              {}: {} for {}s, {}",
            role.alias,
            role.arn,
            role.duration.as_secs(),
            match &role.backend {
                crate::config::RoleBackend::WebIdentity { source } => {
                    format!("session {}, source {source}", role.session_name)
                }
                crate::config::RoleBackend::RolesAnywhere(ra) => ra.describe(),
                crate::config::RoleBackend::Chained { via, external_id } => format!(
                    "session {}, reached through role {via} (AssumeRole{})",
                    role.session_name,
                    if external_id.is_some() {
                        ", with an external ID"
                    } else {
                        ""
                    }
                ),
            }
        ));
    }
    if let Some(tokens) = &config.identity_tokens {
        out.line(format!(
            "  identity tokens   from source {} for {} (/v1/identity-token)",
            tokens.source,
            tokens.audiences.join(", ")
        ));
    }
    for warning in &config.warnings {
        out.line(format!("  warning           {warning}"));
    }
}

/// The authorization token `serve` would use: refused here when `serve` would refuse it.
fn check_auth(out: &mut Report, config: &Config) -> bool {
    out.line("\nauthorization token");
    let result = match &config.auth {
        AuthSource::File(path) if !path.exists() => {
            out.line(format!(
                "  ok    {} does not exist yet: serve creates it with a random token (mode {:04o})",
                path.display(),
                config.auth_token_file_mode
            ));
            return false;
        }
        AuthSource::File(path) => crate::server::Auth::from_file(path, config.auth_token_file_mode)
            .map(|_| format!("read from {}", path.display())),
        AuthSource::Fixed(token) => crate::server::Auth::fixed(token.clone(), ENV_AUTH_TOKEN)
            .map(|_| format!("from {ENV_AUTH_TOKEN}")),
        AuthSource::Generated(_) => Ok("generated".to_owned()),
        AuthSource::Unset => {
            // Not needed to check anything; only `serve` needs one.
            out.line(format!(
                "  note  none configured: serve needs one shared with the app ({} with a \
                 file the SDK reads too, or {ENV_AUTH_TOKEN}, or --auth-token-file)",
                crate::config::ENV_AUTH_TOKEN_FILE
            ));
            return false;
        }
    };
    match result {
        Ok(what) => {
            out.line(format!("  ok    {what}"));
            false
        }
        Err(e) => {
            out.line(format!("  FAIL  {e}"));
            out.line(
                "  fix:  use a token of at least 16 printable characters, without a trailing \
                 newline, shared with the app (AWS_CONTAINER_AUTHORIZATION_TOKEN or \
                 AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE)",
            );
            true
        }
    }
}

/// What Roles Anywhere will see of the certificate: principal tags, source identity, and the
/// trust policy the role needs. Returns whether the certificate and key could be read.
async fn check_roles_anywhere(
    out: &mut Report,
    alias: &str,
    role_arn: &str,
    ra: &crate::backend::roles_anywhere::Settings,
) -> bool {
    out.line(format!("\nroles anywhere {alias} ({role_arn})"));
    let pair = match ra.identity.read_pair().await {
        Ok(pair) => pair,
        Err(e) => {
            out.line(format!("  FAIL  {e}"));
            out.line(format!("  fix:  {}", e.hint()));
            return false;
        }
    };
    let leaf = &pair.leaf;
    let key = pair
        .key_der()
        .and_then(|k| crate::backend::x509_sign::SigningKey::from_der(&k).ok());
    out.line(format!(
        "  ok    certificate {} ({} in chain: the leaf in X-Amz-X509, {} more in X-Amz-X509-Chain)",
        ra.identity.cert_path.display(),
        leaf.chain_len,
        leaf.chain_len.saturating_sub(1)
    ));
    out.line(format!(
        "        serial      {} (decimal, as the Credential sends it)",
        leaf.serial
    ));
    out.line(format!("        subject     {}", leaf.subject));
    out.line(format!("        issuer      {}", leaf.issuer));
    out.line(format!(
        "        expires     {}",
        format_rfc3339(leaf.not_after)
    ));
    match &key {
        Some(k) => out.line(format!(
            "        key         {} ({})",
            k.describe(),
            k.algorithm()
        )),
        None => {
            out.line("  FAIL  the private key cannot sign (RSA, EC P-256 or P-384 needed)");
            return false;
        }
    }
    for line in backend::roles_anywhere::describe_certificate(leaf, &ra.trust_anchor_arn) {
        out.line(format!("  {line}"));
    }
    true
}

/// Reads the identity (when the source presents one) and fetches one token; prints the claims
/// and the trust-policy conditions. Returns whether it worked, and the claims.
async fn check_source(
    out: &mut Report,
    config: &Config,
    source: &TokenSource,
) -> (bool, Option<Claims>) {
    let kind = source.source().kind();
    out.line(format!("\nsource {} ({kind})", source.name()));
    let mut ok = true;
    if let Some(identity) = config
        .source(source.name())
        .and_then(|s| s.settings.identity())
    {
        match identity.read_pair().await {
            Ok(pair) => {
                let leaf = &pair.leaf;
                out.line(format!(
                    "  ok    certificate {} ({} in chain)",
                    identity.cert_path.display(),
                    leaf.chain_len
                ));
                out.line(format!("        subject     {}", leaf.subject));
                for ou in &leaf.organizational_units {
                    out.line(format!("        OU          {ou}"));
                }
                out.line(format!(
                    "        expires     {}",
                    format_rfc3339(leaf.not_after)
                ));
            }
            Err(e) => {
                out.line(format!("  FAIL  {e}"));
                out.line(format!("  fix:  {}", e.hint()));
                return (false, None);
            }
        }
    }
    let claims = match source.token().await {
        Ok((_token, Some(claims))) => {
            out.line(format!(
                "  ok    identity token from {}",
                source.source().origin()
            ));
            out.line(format!(
                "        iss         {}",
                claims.iss.as_deref().unwrap_or("(none)")
            ));
            out.line(format!(
                "        sub         {}",
                claims.sub.as_deref().unwrap_or("(none)")
            ));
            out.line(format!(
                "        aud         {}",
                if claims.aud.is_empty() {
                    "(none)".to_owned()
                } else {
                    claims.aud.join(", ")
                }
            ));
            for (name, value) in &claims.extra {
                out.line(format!("        {name:<11} {value}"));
            }
            out.line(format!(
                "        exp         {}",
                format_rfc3339(claims.exp)
            ));
            Some(claims)
        }
        Ok((_token, None)) => {
            out.line(format!(
                "  ok    identity token from {} (opaque, not a JWT: fetched for every STS call)",
                source.source().origin()
            ));
            None
        }
        Err(e) => {
            ok = false;
            out.line(format!("  FAIL  {}", crate::report::chain(&e)));
            out.line(format!("  fix:  {}", e.hint()));
            None
        }
    };
    if let Some(claims) = &claims {
        let account = config
            .roles
            .iter()
            .find(|r| r.source() == Some(source.name()))
            .map_or("<account>", |r| r.account_id.as_str());
        let trust = Trust::for_claims(claims, account);
        out.line("  trust policy of every role using this source:");
        out.line(format!(
            "        Principal   {{\"Federated\": \"{}\"}}",
            trust.principal
        ));
        out.line("        Action      sts:AssumeRoleWithWebIdentity");
        for (key, value) in &trust.conditions {
            out.line(format!("        Condition   \"{key}\": \"{value}\""));
        }
        for note in &trust.notes {
            out.line(format!("        note        {note}"));
        }
    }
    (ok, claims)
}

async fn wait(flags: &Overrides, env: &dyn Env, limit: Duration) -> Result<i32, ExitError> {
    // The same address serve would use: flag, variable, config file, default.
    let admin = crate::config::admin_listen(flags, env)?;
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
                Report::default().line(format!("ready: {url}"));
                return Ok(0);
            }
            Ok(r) => last = format!("HTTP {}", r.status().as_u16()),
            Err(e) => last = crate::report::chain(&e),
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
