//! From data to the typed [`Config`]: defaults, ranges, addresses, URLs, templates, and which
//! source each role uses. Every problem is recorded with its origin; nothing stops at the first.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::file::{self, SourceSpec};
use super::{
    AuthSource, Checker, Config, DEFAULT_ADMIN_LISTEN, DEFAULT_ALIAS, DEFAULT_COLD_START_WAIT_MS,
    DEFAULT_DRAIN_SECS, DEFAULT_DURATION_SECS, DEFAULT_LISTEN, DEFAULT_REGION,
    DEFAULT_SESSION_NAME, DEFAULT_SESSION_NAME_CF, DEFAULT_UPSTREAM_TIMEOUT_SECS, ENV_AUTH_TOKEN,
    ENV_AWS_DEFAULT_REGION, ENV_AWS_ENDPOINT_URL, ENV_AWS_ENDPOINT_URL_ROLESANYWHERE,
    ENV_AWS_ENDPOINT_URL_STS, ENV_AWS_REGION, ENV_CF_INSTANCE_CERT, ENV_CF_INSTANCE_KEY,
    ENV_VCAP_APPLICATION, Overrides, RoleBackend, RoleConfig, SourceConfig, SourceSettings,
    parse_role_arn, sanitize_session_name,
};
use crate::backend::roles_anywhere::Settings as RoleSettingsRa;
use crate::backend::sts::StsSettings;
use crate::identity::IdentityFiles;
use crate::server::{AuthToken, Limits};
use crate::token;

/// Builds the typed config; `None` when something essential is missing (the problems say what).
pub(super) fn build(
    c: &mut Checker<'_>,
    data: Option<file::File>,
    flags: &Overrides,
) -> Option<Config> {
    let data = data?;
    let server = data.server.unwrap_or_default();
    let allow_non_loopback = c.switch(
        "server.allow_non_loopback",
        server.allow_non_loopback.as_ref(),
    );
    let listen = addr(
        c,
        "server.listen",
        server.listen.as_deref(),
        DEFAULT_LISTEN,
        allow_non_loopback,
    );
    let admin_listen = addr(
        c,
        "server.admin_listen",
        server.admin_listen.as_deref(),
        DEFAULT_ADMIN_LISTEN,
        allow_non_loopback,
    );
    if listen == admin_listen && listen.port() != 0 {
        c.problem(
            "server.admin_listen",
            format!("must differ from server.listen ({listen})"),
        );
    }
    let max_connections = c.uint(
        "server.max_connections",
        server.max_connections.as_ref(),
        1024,
        1,
        1_000_000,
    );
    let header_read_timeout = c.uint(
        "server.header_read_timeout_secs",
        server.header_read_timeout_secs.as_ref(),
        5,
        1,
        300,
    );
    let cold_start_wait = c.uint(
        "server.cold_start_wait_ms",
        server.cold_start_wait_ms.as_ref(),
        DEFAULT_COLD_START_WAIT_MS,
        0,
        10_000,
    );
    let drain = c.uint(
        "server.drain_secs",
        server.drain_secs.as_ref(),
        DEFAULT_DRAIN_SECS,
        0,
        300,
    );
    let imds = c.switch("server.imds", server.imds.as_ref());
    let imds_v1 = c.switch("server.imds_v1", server.imds_v1.as_ref());
    if imds_v1 && !imds {
        c.problem("server.imds_v1", "needs server.imds = true (or --imds)");
    }
    let auth = auth(c, server.auth_token_file.as_ref(), flags);

    let identity_spec = data.identity.unwrap_or_default();
    let mut identity = LazyIdentity {
        spec: &identity_spec,
        files: None,
    };
    let sources = sources(c, data.token_service, data.source, &mut identity);
    let (sts, sts_endpoint_env) = sts(c, data.sts.unwrap_or_default());
    let ra = ra_globals(c, data.rolesanywhere.unwrap_or_default());
    let roles = roles(c, data.role, &sources, &ra, &mut identity);

    Some(Config {
        listen,
        admin_listen,
        allow_non_loopback,
        imds,
        imds_v1,
        auth: auth?,
        limits: Limits {
            max_connections: usize::try_from(max_connections).unwrap_or(1024),
            header_read_timeout: Duration::from_secs(header_read_timeout),
            ..Limits::default()
        },
        cold_start_wait: Duration::from_millis(cold_start_wait),
        drain: Duration::from_secs(drain),
        sources,
        sts,
        sts_endpoint_env,
        roles,
        warnings: std::mem::take(&mut c.warnings),
    })
}

fn addr(
    c: &mut Checker<'_>,
    key: &str,
    value: Option<&str>,
    default: &str,
    allow_non_loopback: bool,
) -> SocketAddr {
    let fallback: SocketAddr = default
        .parse()
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
    let Some(value) = value else {
        return fallback;
    };
    match value.trim().parse::<SocketAddr>() {
        Ok(a) if a.ip().is_loopback() || allow_non_loopback => a,
        Ok(a) => {
            c.problem(
                key,
                format!(
                    "{a} is not a loopback address; credentials must not leave the machine (set \
                     server.allow_non_loopback = true to allow it anyway)"
                ),
            );
            fallback
        }
        Err(_) => {
            c.problem(
                key,
                format!("must be IP:PORT, e.g. {default}, got {value:?}"),
            );
            fallback
        }
    }
}

fn auth(c: &mut Checker<'_>, file: Option<&String>, flags: &Overrides) -> Option<AuthSource> {
    if flags.fresh_auth_token {
        return Some(AuthSource::Generated(crate::server::auth::generate()));
    }
    let from_env = c.env.var(ENV_AUTH_TOKEN).filter(|t| !t.is_empty());
    match file.map(|f| f.trim()).filter(|f| !f.is_empty()) {
        Some(path) => {
            if from_env.is_some() {
                c.warn(format!(
                    "{ENV_AUTH_TOKEN} is set but the authorization token is read from {} ({}); \
                     the variable is ignored",
                    path,
                    c.origin("server.auth_token_file")
                ));
            }
            Some(AuthSource::File(PathBuf::from(path)))
        }
        None => match from_env {
            Some(t) => Some(AuthSource::Fixed(AuthToken::new(t))),
            None => {
                c.problem(
                    "server.auth_token_file",
                    format!(
                        "no authorization token: set {ENV_AUTH_TOKEN} (shared with the app) or \
                         --auth-token-file FILE"
                    ),
                );
                None
            }
        },
    }
}

/// The certificate and key: `[identity]` (or the flags), else the Cloud Foundry variables.
pub(crate) fn identity(c: &mut Checker<'_>, spec: &file::Identity) -> Option<IdentityFiles> {
    let cert = required_path(
        c,
        spec.cert_file.as_ref(),
        ENV_CF_INSTANCE_CERT,
        "identity.cert_file",
        "--cert-file",
        "certificate",
    );
    let key = required_path(
        c,
        spec.key_file.as_ref(),
        ENV_CF_INSTANCE_KEY,
        "identity.key_file",
        "--key-file",
        "private key",
    );
    let (cert_path, cert_origin) = cert?;
    let (key_path, key_origin) = key?;
    Some(IdentityFiles {
        cert_path,
        cert_origin,
        key_path,
        key_origin,
    })
}

fn required_path(
    c: &mut Checker<'_>,
    value: Option<&String>,
    var: &str,
    key: &str,
    flag: &str,
    what: &str,
) -> Option<(PathBuf, String)> {
    if let Some(v) = value.filter(|v| !v.trim().is_empty()) {
        return Some((PathBuf::from(v), c.origin(key)));
    }
    match c.env(var) {
        Some(v) => Some((PathBuf::from(v), var.to_owned())),
        None => {
            c.problem(
                key,
                format!(
                    "no {what} file: {var} is not set (Cloud Foundry sets it); pass {flag} FILE"
                ),
            );
            None
        }
    }
}

/// The certificate and key, checked once, when the first source or role needs them.
struct LazyIdentity<'s> {
    spec: &'s file::Identity,
    files: Option<Option<IdentityFiles>>,
}

impl LazyIdentity<'_> {
    fn get(&mut self, c: &mut Checker<'_>) -> Option<IdentityFiles> {
        if self.files.is_none() {
            self.files = Some(identity(c, self.spec));
        }
        self.files.clone().flatten()
    }
}

/// `[rolesanywhere]`, checked: shared by every Roles Anywhere role.
struct RaGlobals {
    /// An explicit endpoint and where it came from.
    endpoint: Option<(String, String)>,
    fips: bool,
    dual_stack: bool,
    timeout: Duration,
}

fn ra_globals(c: &mut Checker<'_>, spec: file::RolesAnywhere) -> RaGlobals {
    let timeout = c.timeout(
        "rolesanywhere",
        spec.timeout_secs.as_ref(),
        DEFAULT_UPSTREAM_TIMEOUT_SECS,
        120,
    );
    let fips = c.switch("rolesanywhere.fips", spec.fips.as_ref());
    let dual_stack = c.switch("rolesanywhere.dual_stack", spec.dual_stack.as_ref());
    let what = "the Roles Anywhere endpoint";
    let endpoint = match spec.endpoint.filter(|e| !e.trim().is_empty()) {
        Some(e) => c
            .secret_url("rolesanywhere.endpoint", &e, what)
            .map(|u| (u.trim_end_matches('/').to_owned(), c.origin("rolesanywhere.endpoint"))),
        None => c.env(ENV_AWS_ENDPOINT_URL_ROLESANYWHERE).and_then(|e| {
            let key = ENV_AWS_ENDPOINT_URL_ROLESANYWHERE;
            let ok = reqwest::Url::parse(e.trim()).is_ok_and(|u| {
                u.scheme() == "https"
                    || (u.scheme() == "http" && super::is_loopback_host(&u))
            });
            if ok {
                Some((e.trim().trim_end_matches('/').to_owned(), key.to_owned()))
            } else {
                c.problem_at(
                    key.to_owned(),
                    format!("must be an https:// URL (plain http:// only on a loopback address), got {e:?}"),
                );
                None
            }
        }),
    };
    RaGlobals {
        endpoint,
        fips,
        dual_stack,
        timeout,
    }
}

fn sources(
    c: &mut Checker<'_>,
    legacy: Option<token::token_service::Spec>,
    named: std::collections::BTreeMap<String, SourceSpec>,
    identity: &mut LazyIdentity<'_>,
) -> Vec<SourceConfig> {
    let mut specs: Vec<(String, String, SourceSpec)> = Vec::new();
    if let Some(spec) = legacy {
        specs.push((
            "token-service".to_owned(),
            "token_service".to_owned(),
            SourceSpec::TokenService(spec),
        ));
    }
    for (name, spec) in named {
        let at = format!("source.{name}");
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
        if !ok {
            c.problem(
                &at,
                format!("the source name {name:?} must be 1-64 characters of A-Z a-z 0-9 - _"),
            );
            continue;
        }
        if specs.iter().any(|(n, _, _)| *n == name) {
            c.problem(
                &at,
                "defined twice: [token_service] is the source named token-service",
            );
            continue;
        }
        specs.push((name, at, spec));
    }
    let mut out = Vec::new();
    for (name, at, spec) in specs {
        let settings = match spec {
            SourceSpec::TokenService(spec) => {
                let files = identity.get(c);
                token::token_service::settings(c, &at, spec, files)
                    .map(SourceSettings::TokenService)
            }
            SourceSpec::File(spec) => token::file::settings(c, &at, spec).map(SourceSettings::File),
            SourceSpec::GcpMetadata(spec) => {
                token::gcp_metadata::settings(c, &at, spec).map(SourceSettings::GcpMetadata)
            }
            SourceSpec::Oidc(spec) => token::oidc::settings(c, &at, spec).map(SourceSettings::Oidc),
            SourceSpec::GithubActions(spec) => {
                token::github_actions::settings(c, &at, spec).map(SourceSettings::GithubActions)
            }
            SourceSpec::Command(spec) => {
                token::command::settings(c, &at, spec).map(SourceSettings::Command)
            }
        };
        if let Some(settings) = settings {
            out.push(SourceConfig { name, settings });
        }
    }
    out
}

fn sts(c: &mut Checker<'_>, spec: file::Sts) -> (StsSettings, Option<String>) {
    let timeout = c.uint(
        "sts.timeout_secs",
        spec.timeout_secs.as_ref(),
        DEFAULT_UPSTREAM_TIMEOUT_SECS,
        1,
        120,
    );
    let region = spec
        .region
        .filter(|r| !r.trim().is_empty())
        .or_else(|| c.env(ENV_AWS_REGION))
        .or_else(|| c.env(ENV_AWS_DEFAULT_REGION))
        .unwrap_or_else(|| DEFAULT_REGION.to_owned());
    let endpoint = spec.endpoint.and_then(|e| {
        let e = e.trim().to_owned();
        match reqwest::Url::parse(&e) {
            Ok(u) if u.scheme() == "https" || u.scheme() == "http" => Some(e),
            _ => {
                c.problem("sts.endpoint", format!("must be an http(s) URL, got {e:?}"));
                None
            }
        }
    });
    let endpoint_env = match endpoint {
        Some(_) => None,
        None => [ENV_AWS_ENDPOINT_URL_STS, ENV_AWS_ENDPOINT_URL]
            .into_iter()
            .find_map(|var| c.env(var).map(|v| format!("{v} (from {var})"))),
    };
    (
        StsSettings {
            region,
            endpoint,
            timeout: Duration::from_secs(timeout),
        },
        endpoint_env,
    )
}

fn roles(
    c: &mut Checker<'_>,
    specs: Vec<file::Role>,
    sources: &[SourceConfig],
    ra: &RaGlobals,
    identity: &mut LazyIdentity<'_>,
) -> Vec<RoleConfig> {
    let mut specs = specs;
    if specs.is_empty() {
        specs.push(file::Role::default());
    }
    let mut roles: Vec<RoleConfig> = Vec::new();
    for (i, spec) in specs.into_iter().enumerate() {
        let path = format!("role[{i}]");
        let first = i == 0;
        let alias = match spec.alias {
            Some(a) => {
                let ok = !a.is_empty()
                    && a.len() <= 64
                    && a.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
                if !ok {
                    c.problem(
                        &format!("{path}.alias"),
                        format!(
                            "must be 1-64 characters of A-Z a-z 0-9 - _ . (it is a URL path \
                             segment), got {a:?}"
                        ),
                    );
                }
                a
            }
            None if first => DEFAULT_ALIAS.to_owned(),
            None => {
                c.problem(
                    &format!("{path}.alias"),
                    "required for every role after the first",
                );
                continue;
            }
        };
        if roles.iter().any(|r| r.alias == alias) {
            c.problem(
                &format!("{path}.alias"),
                format!("alias {alias:?} is used twice"),
            );
        }
        let duration_secs = c.uint(
            &format!("{path}.duration_secs"),
            spec.duration_secs.as_ref(),
            DEFAULT_DURATION_SECS,
            900,
            43_200,
        );
        let ra_arns = match (spec.trust_anchor_arn, spec.profile_arn) {
            (None, None) => None,
            (Some(t), Some(p)) => Some(Some((t, p))),
            (Some(_), None) => {
                c.problem(
                    &format!("{path}.profile_arn"),
                    "not set: a Roles Anywhere role needs --profile-arn with --trust-anchor-arn",
                );
                Some(None)
            }
            (None, Some(_)) => {
                c.problem(
                    &format!("{path}.trust_anchor_arn"),
                    "not set: a Roles Anywhere role needs --trust-anchor-arn with --profile-arn",
                );
                Some(None)
            }
        };
        let explicit_session = spec.session_name.is_some();
        let backend_source = match &ra_arns {
            None => Some(role_source(c, &path, spec.source.clone(), sources)),
            Some(_) => {
                if spec.source.is_some() {
                    c.problem(
                        &format!("{path}.source"),
                        "a Roles Anywhere role signs with the certificate and uses no identity \
                         source: remove source, or trust_anchor_arn and profile_arn",
                    );
                }
                None
            }
        };
        let arn_key = format!("{path}.arn");
        let Some(arn) = spec.arn else {
            c.problem(
                &arn_key,
                "no role ARN: pass --role-arn arn:aws:iam::<account>:role/<name> or set [[role]] arn",
            );
            continue;
        };
        let Some(arn) = c.template(&arn_key, &arn) else {
            continue;
        };
        let Some(account_id) = parse_role_arn(&arn) else {
            c.problem(
                &arn_key,
                format!(
                    "is not an IAM role ARN (arn:<partition>:iam::<12-digit account>:role/<name>): \
                     {arn:?}"
                ),
            );
            continue;
        };
        let session_key = format!("{path}.session_name");
        let session = spec.session_name.unwrap_or_else(|| {
            if c.env.var(ENV_VCAP_APPLICATION).is_some() {
                DEFAULT_SESSION_NAME_CF
            } else {
                DEFAULT_SESSION_NAME
            }
            .to_owned()
        });
        let Some(session_name) = c.template(&session_key, &session) else {
            continue;
        };
        let backend = match (ra_arns, backend_source) {
            (None, Some(Some(source))) => RoleBackend::WebIdentity { source },
            (Some(Some((anchor, profile))), None) => {
                let Some(settings) = ra_role(
                    c,
                    &path,
                    &anchor,
                    &profile,
                    explicit_session.then(|| sanitize_session_name(&session_name)),
                    ra,
                    identity,
                ) else {
                    continue;
                };
                RoleBackend::RolesAnywhere(Box::new(settings))
            }
            _ => continue,
        };
        roles.push(RoleConfig {
            alias,
            arn,
            account_id,
            session_name: sanitize_session_name(&session_name),
            duration: Duration::from_secs(duration_secs),
            backend,
        });
    }
    roles
}

/// Checks a Roles Anywhere role's ARNs and builds its settings.
fn ra_role(
    c: &mut Checker<'_>,
    path: &str,
    anchor: &str,
    profile: &str,
    session_name: Option<String>,
    ra: &RaGlobals,
    identity: &mut LazyIdentity<'_>,
) -> Option<RoleSettingsRa> {
    use crate::backend::roles_anywhere::{default_endpoint, parse_arn};
    let anchor_key = format!("{path}.trust_anchor_arn");
    let profile_key = format!("{path}.profile_arn");
    let shape = |kind: &str| {
        format!(
            "is not a Roles Anywhere {kind} ARN (arn:aws:rolesanywhere:<region>:<account>:{kind}/<id>)"
        )
    };
    let anchor_parts = parse_arn(anchor.trim(), "trust-anchor");
    if anchor_parts.is_none() {
        c.problem(
            &anchor_key,
            format!("{}: {anchor:?}", shape("trust-anchor")),
        );
    }
    let profile_parts = parse_arn(profile.trim(), "profile");
    if profile_parts.is_none() {
        c.problem(&profile_key, format!("{}: {profile:?}", shape("profile")));
    }
    let ((anchor_region, _), (profile_region, _)) = (anchor_parts?, profile_parts?);
    if anchor_region != profile_region {
        c.problem(
            &profile_key,
            format!(
                "is in {profile_region} but the trust anchor ({}) is in {anchor_region}: \
                 Roles Anywhere needs both in the same region",
                c.origin(&anchor_key)
            ),
        );
        return None;
    }
    let files = identity.get(c)?;
    let (endpoint, endpoint_origin) = ra.endpoint.clone().unwrap_or_else(|| {
        (
            default_endpoint(anchor_region, ra.fips, ra.dual_stack),
            "the trust anchor's region".to_owned(),
        )
    });
    Some(RoleSettingsRa {
        trust_anchor_arn: anchor.trim().to_owned(),
        profile_arn: profile.trim().to_owned(),
        region: anchor_region.to_owned(),
        endpoint,
        endpoint_origin,
        session_name,
        timeout: ra.timeout,
        identity: files,
    })
}

/// The source a role names, or the only one there is.
fn role_source(
    c: &mut Checker<'_>,
    path: &str,
    named: Option<String>,
    sources: &[SourceConfig],
) -> Option<String> {
    let key = format!("{path}.source");
    let known = || {
        sources
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match named {
        Some(name) if sources.iter().any(|s| s.name == name) => Some(name),
        Some(name) => {
            // A source with problems of its own is not in the list: say so only when it does
            // not exist at all.
            if !c
                .problems
                .iter()
                .any(|p| p.key.contains(&format!("source.{name}")))
            {
                let known = known();
                c.problem(
                    &key,
                    format!(
                        "no source named {name:?} (configured: {})",
                        if known.is_empty() { "none" } else { &known }
                    ),
                );
            }
            None
        }
        None if sources.len() == 1 => sources.first().map(|s| s.name.clone()),
        None if sources.is_empty() => None,
        None => {
            let known = known();
            c.problem(
                &key,
                format!("required when more than one source is configured (configured: {known})"),
            );
            None
        }
    }
}
