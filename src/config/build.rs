//! From data to the typed [`Config`]: the flags written over the file's values, then defaults,
//! ranges, addresses, URLs, templates, and which source each role uses. Every problem is recorded
//! with its origin; nothing stops at the first.
//!
//! Flags are the shorthand for one role: the role flags apply to the first role, the source
//! flags to its source. A kind's own flag (`--token-file`, `--oidc-token-url`, ...) or `--source
//! KIND` picks the kind; if the first role's source in the file is of another kind, the flags
//! replace it. With no source anywhere, the Kubernetes IRSA variables
//! (`AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_ROLE_ARN`, `AWS_ROLE_SESSION_NAME`) configure a file
//! source and the default role; without them, the historical default is a token-service source.

use std::net::SocketAddr;
use std::time::Duration;

use super::cf;
use super::chain;
use super::file::{self, File, FileSource};
use super::flags::token_file_mode;
use super::{
    AuthSource, Config, DEFAULT_ADMIN_LISTEN, DEFAULT_ALIAS, DEFAULT_COLD_START_WAIT_MS,
    DEFAULT_DRAIN_SECS, DEFAULT_DURATION_SECS, DEFAULT_LISTEN, DEFAULT_REGION,
    DEFAULT_SESSION_NAME, DEFAULT_SESSION_NAME_CF, DEFAULT_UPSTREAM_TIMEOUT_SECS, ENV_AUTH_TOKEN,
    ENV_AUTH_TOKEN_FILE, ENV_AWS_DEFAULT_REGION, ENV_AWS_ENDPOINT_URL,
    ENV_AWS_ENDPOINT_URL_ROLESANYWHERE, ENV_AWS_ENDPOINT_URL_STS, ENV_AWS_REGION,
    ENV_CF_INSTANCE_CERT, ENV_CF_INSTANCE_KEY, ENV_ROLE_ARN, ENV_ROLE_SESSION_NAME,
    ENV_VCAP_APPLICATION, ENV_WEB_IDENTITY_TOKEN_FILE, Overrides, RoleBackend, RoleConfig,
    SourceConfig, sanitize_session_name,
};
use crate::backend::StsSettings;
use crate::backend::arn;
use crate::backend::roles_anywhere::{self, default_endpoint};
use crate::checker::{Checker, Field, Layer, Origin, Origins, layer};
use crate::identity::IdentityFiles;
use crate::listener::{DEFAULT_MAX_CONNECTIONS, Limits};
use crate::server::AuthToken;
use crate::server::auth::SHORT_TOKEN;
use crate::token::{self, KindName};

/// Builds the typed config; `None` when something essential is missing (the problems say what).
pub(super) fn build(c: &mut Checker<'_>, mut data: File, flags: &Overrides) -> Option<Config> {
    layer_flags(c, &mut data, flags);
    let server = &data.server;
    let allow_non_loopback = c.switch("server.allow_non_loopback", &server.allow_non_loopback);
    let listen = addr(
        c,
        "server.listen",
        &server.listen,
        DEFAULT_LISTEN,
        allow_non_loopback,
        "credentials must not leave the machine",
    );
    let admin_listen = addr(
        c,
        "server.admin_listen",
        &server.admin_listen,
        DEFAULT_ADMIN_LISTEN,
        allow_non_loopback,
        "the admin endpoint (/status, /metrics, /ready) answers anyone who reaches it and must \
         not leave the machine",
    );
    if listen == admin_listen && listen.port() != 0 {
        c.problem(
            "server.admin_listen",
            format!("must differ from server.listen ({listen})"),
        );
    }
    let max_connections = c.number(
        "server.max_connections",
        &server.max_connections,
        DEFAULT_MAX_CONNECTIONS as u64,
        1,
        1_000_000,
    );
    let header_read_timeout = c.number(
        "server.header_read_timeout_secs",
        &server.header_read_timeout_secs,
        5,
        1,
        300,
    );
    let cold_start_wait = c.number(
        "server.cold_start_wait_ms",
        &server.cold_start_wait_ms,
        DEFAULT_COLD_START_WAIT_MS,
        0,
        10_000,
    );
    let drain = c.number(
        "server.drain_secs",
        &server.drain_secs,
        DEFAULT_DRAIN_SECS,
        0,
        300,
    );
    let imds = c.switch("server.imds", &server.imds);
    let imds_v1 = c.switch("server.imds_v1", &server.imds_v1);
    if imds_v1 && !imds {
        c.problem("server.imds_v1", "needs server.imds = true (or --imds)");
    }
    let auth = auth(c, &server.auth_token_file, flags);
    let auth_token_file_mode =
        match c.text("server.auth_token_file_mode", &server.auth_token_file_mode) {
            None => 0o600,
            Some(mode) => match token_file_mode(&mode) {
                Ok(mode) => u32::from_str_radix(&mode, 8).unwrap_or(0o600),
                Err(e) => {
                    c.problem("server.auth_token_file_mode", e);
                    0o600
                }
            },
        };

    let mut identity = LazyIdentity {
        spec: &data.identity,
        files: None,
    };
    let sources = sources(c, data.sources, &mut identity);
    let (sts, sts_endpoint_env) = sts(c, &data.sts);
    let ra = ra_globals(c, &data.rolesanywhere);
    let mut cf = cf::Vars::default();
    let roles = roles(c, &mut cf, data.roles, &sources, &ra, &mut identity);
    let identity_tokens = super::audiences::check(c, &data.identity_tokens, &roles, &sources);

    Some(Config {
        listen,
        listen_origin: origin_or_default(c, "server.listen"),
        admin_listen,
        admin_listen_origin: origin_or_default(c, "server.admin_listen"),
        allow_non_loopback,
        imds,
        imds_v1,
        auth: auth?,
        auth_token_file_mode,
        limits: Limits {
            max_connections: usize::try_from(max_connections).unwrap_or(DEFAULT_MAX_CONNECTIONS),
            header_read_timeout: Duration::from_secs(header_read_timeout),
            ..Limits::default()
        },
        cold_start_wait: Duration::from_millis(cold_start_wait),
        drain: Duration::from_secs(drain),
        sources,
        sts,
        sts_endpoint_env,
        roles,
        identity_tokens,
        warnings: Vec::new(),
    })
}

/// Where a key's value came from, or `the default of KEY` when nothing gave it.
fn origin_or_default(c: &Checker<'_>, key: &str) -> String {
    let origin = c.origin(key);
    if origin == key {
        format!("the default of {key}")
    } else {
        origin
    }
}

/// Writes the flags (and variables) over the file's values.
fn layer_flags(c: &mut Checker<'_>, data: &mut File, flags: &Overrides) {
    let o = &flags.origins;
    let (f, g) = (&flags.server, &flags.common);
    let s = &mut data.server;
    let mut l = Layer::new(c, o, "server");
    layer!(l, s.listen <- f.listen);
    layer!(l, s.admin_listen <- f.admin_listen);
    layer!(l, s.auth_token_file <- f.auth_token_file);
    layer!(l, s.auth_token_file_mode <- f.auth_token_file_mode);
    layer!(l, s.imds <- f.imds);
    layer!(l, s.imds_v1 <- f.imds_v1);
    layer!(l, s.allow_non_loopback <- f.allow_non_loopback);
    layer!(l, s.max_connections <- f.max_connections);
    layer!(l, s.header_read_timeout_secs <- f.header_read_timeout_secs);
    layer!(l, s.cold_start_wait_ms <- f.cold_start_wait_ms);
    layer!(l, s.drain_secs <- f.drain_secs);
    let i = &mut data.identity;
    let mut l = Layer::new(c, o, "identity");
    layer!(l, i.cert_file <- g.cert_file);
    layer!(l, i.key_file <- g.key_file);
    let s = &mut data.sts;
    let mut l = Layer::new(c, o, "sts");
    layer!(l, s.region <- g.sts_region);
    layer!(l, s.endpoint <- g.sts_endpoint);
    layer!(l, s.timeout_secs <- g.sts_timeout_secs);
    let r = &mut data.rolesanywhere;
    let mut l = Layer::new(c, o, "rolesanywhere");
    layer!(l, r.endpoint <- g.rolesanywhere_endpoint);
    layer!(l, r.timeout_secs <- g.rolesanywhere_timeout_secs);
    if data.roles.is_empty() {
        data.roles.push(file::Role::default());
    }
    let r = &mut data.roles[0];
    let mut l = Layer::new(c, o, "role[0]");
    layer!(l, r.arn <- g.role_arn);
    layer!(l, r.session_name <- g.role_session_name);
    layer!(l, r.duration_secs <- g.duration);
    layer!(l, r.trust_anchor_arn <- g.trust_anchor_arn);
    layer!(l, r.profile_arn <- g.profile_arn);
    layer!(l, r.external_id <- g.external_id);
    let t = &mut data.identity_tokens;
    let mut l = Layer::new(c, o, "identity_tokens");
    l.set(
        &mut t.audiences,
        "audiences",
        &g.token_audience,
        "token_audience",
    );
    layer!(l, t.azure_token_file <- g.azure_token_file);
    layer!(l, t.azure_audience <- g.azure_audience);
    layer_source(c, data, flags);
    super::chain::layer_via(c, o, data, &g.via_role_arn);
}

/// The kind the flags pick, if any, and what picked it; two different kinds are a problem
/// naming both.
fn picked_kind(c: &mut Checker<'_>, flags: &Overrides) -> Result<Option<(KindName, Origin)>, ()> {
    let o = &flags.origins;
    let mut candidates: Vec<(KindName, Origin)> = Vec::new();
    if let (Some(kind), Some(origin)) = (flags.common.source, o.get("source")) {
        candidates.push((kind, origin.clone()));
    }
    for kind in KindName::ALL {
        if let Some(origin) = kind.picked_by().iter().find_map(|id| o.get(id)) {
            candidates.push((*kind, origin.clone()));
        }
    }
    let mut picked: Option<(KindName, Origin)> = None;
    for (kind, origin) in candidates {
        match &picked {
            Some((k, first)) if *k != kind => {
                c.problem_at(
                    origin.to_string(),
                    format!(
                        "selects the identity source {kind}, but {first} selects {k}: give the \
                         settings of one"
                    ),
                );
                return Err(());
            }
            Some(_) => {}
            None => picked = Some((kind, origin)),
        }
    }
    Ok(picked)
}

/// Decides the first role's source and writes the source flags over it.
fn layer_source(c: &mut Checker<'_>, data: &mut File, flags: &Overrides) {
    let Ok(picked) = picked_kind(c, flags) else {
        return;
    };
    let first = &data.roles[0];
    // A Roles Anywhere first role needs no source: make none up for it.
    let roles_anywhere = first.trust_anchor_arn.is_present() || first.profile_arn.is_present();
    if roles_anywhere && picked.is_none() && data.sources.is_empty() {
        return;
    }
    // The first role's source in the file: the one it names, or the only one there is.
    let target = match first.source.as_value() {
        Some(name) => data.sources.iter().position(|s| s.name == *name),
        None if data.sources.len() == 1 => Some(0),
        None => None,
    };
    let target = match (picked, target) {
        (Some((kind, _)), Some(i)) if data.sources[i].kind() == Some(kind) => i,
        (Some((kind, origin)), _) => {
            let same_name = data
                .sources
                .iter()
                .position(|s| s.name == kind.name() && s.kind() == Some(kind));
            match same_name {
                Some(i) => {
                    set_role_source(c, data, kind.name(), origin);
                    i
                }
                // Keep the historical layout (and its key names in messages).
                None if kind == KindName::TokenService && data.sources.is_empty() => {
                    legacy_source(data)
                }
                // A new source from the flags alone, for the first role.
                None => {
                    let at = format!("source.{}", kind.name());
                    c.given(format!("{at}.type"), origin.clone());
                    data.sources.retain(|s| s.name != kind.name());
                    data.sources.push(FileSource {
                        name: kind.name().to_owned(),
                        at,
                        spec: Some(kind.empty_spec()),
                    });
                    set_role_source(c, data, kind.name(), origin);
                    data.sources.len() - 1
                }
            }
        }
        (None, Some(i)) => i,
        (None, None) if data.sources.is_empty() => match c.var(ENV_WEB_IDENTITY_TOKEN_FILE) {
            Some(path) => return irsa(c, data, path),
            None => legacy_source(data),
        },
        (None, None) => return,
    };
    let source = &mut data.sources[target];
    let kind = source.kind();
    // Flags of other kinds typed on the command line do not apply: say so. (Variables may be
    // set for a whole environment and are only ignored.)
    let shown_kind = kind.map_or("of no known type".to_owned(), |k| k.name().to_owned());
    for other in KindName::ALL.iter().filter(|k| Some(**k) != kind) {
        for id in other.flag_ids() {
            if let Some(origin) = flags.origins.get(&id).filter(|o| o.is_flag()) {
                c.problem_at(
                    origin.to_string(),
                    format!(
                        "applies to {other} sources, but the first role's source {} is \
                         {shown_kind}",
                        source.at
                    ),
                );
            }
        }
    }
    if !kind.is_some_and(KindName::takes_audience)
        && let Some(origin) = flags.origins.get("audience").filter(|o| o.is_flag())
    {
        let takers: Vec<&str> = KindName::ALL
            .iter()
            .filter(|k| k.takes_audience())
            .map(|k| k.name())
            .collect();
        c.problem_at(
            origin.to_string(),
            format!(
                "applies to {} sources, but the first role's source {} is {shown_kind}",
                takers.join(" and "),
                source.at
            ),
        );
    }
    if let Some(spec) = &mut source.spec {
        spec.layer(
            &flags.common.sources,
            &mut Layer::new(c, &flags.origins, &source.at),
        );
    }
}

fn legacy_source(data: &mut File) -> usize {
    data.sources.push(FileSource {
        name: KindName::TokenService.name().to_owned(),
        at: "token_service".to_owned(),
        spec: Some(KindName::TokenService.empty_spec()),
    });
    data.sources.len() - 1
}

fn set_role_source(c: &mut Checker<'_>, data: &mut File, name: &str, origin: Origin) {
    data.roles[0].source.set(name.to_owned());
    c.given("role[0].source", origin);
}

/// Kubernetes IRSA: the token file and role the pod identity webhook sets, for the default role.
fn irsa(c: &mut Checker<'_>, data: &mut File, path: String) {
    let from = Origin::Env(ENV_WEB_IDENTITY_TOKEN_FILE.to_owned());
    let mut spec = KindName::File.empty_spec();
    let mut flags = token::Flags::default();
    flags.file.token_file = Some(path.into());
    let mut origins = Origins::default();
    origins.insert("token_file", from.clone());
    spec.layer(&flags, &mut Layer::new(c, &origins, "source.file"));
    c.given("source.file.type", from);
    data.sources.push(FileSource {
        name: KindName::File.name().to_owned(),
        at: "source.file".to_owned(),
        spec: Some(spec),
    });
    let role = &mut data.roles[0];
    for (var, key, field) in [
        (ENV_ROLE_ARN, "arn", &mut role.arn),
        (
            ENV_ROLE_SESSION_NAME,
            "session_name",
            &mut role.session_name,
        ),
    ] {
        if let Some(value) = c.var(var)
            && !field.is_present()
        {
            field.set(value);
            c.given(format!("role[0].{key}"), Origin::Env(var.to_owned()));
        }
    }
}

fn addr(
    c: &mut Checker<'_>,
    key: &str,
    field: &Field<SocketAddr>,
    default: SocketAddr,
    allow_non_loopback: bool,
    why: &str,
) -> SocketAddr {
    match c.value(key, field) {
        None => default,
        Some(a) if a.ip().is_loopback() || allow_non_loopback => a,
        Some(a) => {
            c.problem(
                key,
                format!(
                    "{a} is not a loopback address; {why} (set server.allow_non_loopback = true \
                     to allow it anyway)"
                ),
            );
            default
        }
    }
}

fn auth(
    c: &mut Checker<'_>,
    file: &Field<std::path::PathBuf>,
    flags: &Overrides,
) -> Option<AuthSource> {
    if flags.fresh_auth_token {
        return Some(AuthSource::Generated(crate::server::auth::generate()));
    }
    let from_env = c.env().var(ENV_AUTH_TOKEN).filter(|t| !t.is_empty());
    let ignored = |c: &mut Checker<'_>, path: &std::path::Path, origin: &str| {
        if from_env.is_some() {
            c.warn(format!(
                "{ENV_AUTH_TOKEN} is set but the authorization token is read from {} \
                 ({origin}); the variable is ignored",
                path.display(),
            ));
        }
    };
    match c.path("server.auth_token_file", file) {
        Some(path) => {
            let origin = c.origin("server.auth_token_file");
            ignored(c, &path, &origin);
            Some(AuthSource::File(path))
        }
        None if file.is_present() => None,
        None => {
            // The app's SDK reads this file; as in the SDKs, the file wins over the variable.
            if let Some(path) = c.var(ENV_AUTH_TOKEN_FILE).filter(|f| !f.trim().is_empty()) {
                let path = std::path::PathBuf::from(path.trim());
                ignored(c, &path, ENV_AUTH_TOKEN_FILE);
                return Some(AuthSource::File(path));
            }
            match from_env {
                Some(t) => {
                    if t.chars().count() < SHORT_TOKEN {
                        c.warn(format!(
                            "the authorization token in {ENV_AUTH_TOKEN} has {} characters: any \
                             process on this machine can guess one that short; use at least \
                             {SHORT_TOKEN} random characters (or --auth-token-file, which \
                             creates a 43-character token)",
                            t.chars().count()
                        ));
                    }
                    Some(AuthSource::Fixed(AuthToken::new(t)))
                }
                None if flags.auth_optional => Some(AuthSource::Unset),
                None => {
                    c.problem(
                        "server.auth_token_file",
                        format!(
                            "no authorization token: set {ENV_AUTH_TOKEN_FILE} (the file the \
                             app's SDK reads; created with a random token if missing), \
                             {ENV_AUTH_TOKEN} (shared with the app), or --auth-token-file FILE"
                        ),
                    );
                    None
                }
            }
        }
    }
}

/// The certificate and key: `[identity]` (or the flags), else the Cloud Foundry variables.
fn identity(c: &mut Checker<'_>, spec: &file::Identity) -> Option<IdentityFiles> {
    let cert = required_path(
        c,
        &spec.cert_file,
        ENV_CF_INSTANCE_CERT,
        "identity.cert_file",
        "--cert-file",
        "certificate",
    );
    let key = required_path(
        c,
        &spec.key_file,
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
    field: &Field<std::path::PathBuf>,
    var: &str,
    key: &str,
    flag: &str,
    what: &str,
) -> Option<(std::path::PathBuf, String)> {
    if field.is_present() {
        return c.path(key, field).map(|p| (p, c.origin(key)));
    }
    match c.var(var) {
        Some(v) => Some((v.into(), var.to_owned())),
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

impl token::Context for LazyIdentity<'_> {
    fn identity(&mut self, c: &mut Checker<'_>) -> Option<IdentityFiles> {
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

fn ra_globals(c: &mut Checker<'_>, spec: &file::RolesAnywhere) -> RaGlobals {
    let timeout = c.timeout(
        "rolesanywhere",
        &spec.timeout_secs,
        DEFAULT_UPSTREAM_TIMEOUT_SECS,
        120,
    );
    let fips = c.switch("rolesanywhere.fips", &spec.fips);
    let dual_stack = c.switch("rolesanywhere.dual_stack", &spec.dual_stack);
    let what = "the Roles Anywhere endpoint";
    let endpoint = match c.text("rolesanywhere.endpoint", &spec.endpoint) {
        Some(e) => c.secret_url("rolesanywhere.endpoint", &e, what).map(|u| {
            (
                u.trim_end_matches('/').to_owned(),
                c.origin("rolesanywhere.endpoint"),
            )
        }),
        None => c.var(ENV_AWS_ENDPOINT_URL_ROLESANYWHERE).and_then(|e| {
            let var = ENV_AWS_ENDPOINT_URL_ROLESANYWHERE;
            if reqwest::Url::parse(e.trim()).is_ok_and(|u| crate::checker::is_secret_safe(&u)) {
                Some((e.trim().trim_end_matches('/').to_owned(), var.to_owned()))
            } else {
                c.problem_at(
                    var,
                    format!(
                        "must be an https:// URL (plain http:// only on a loopback address), \
                         got {e:?}"
                    ),
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
    specs: Vec<FileSource>,
    identity: &mut LazyIdentity<'_>,
) -> Vec<SourceConfig> {
    let mut out = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for FileSource { name, at, spec } in specs {
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
        if seen.contains(&name) {
            c.problem(
                &at,
                "defined twice: [token_service] is the source named token-service",
            );
            continue;
        }
        seen.push(name.clone());
        if let Some(settings) = spec.and_then(|spec| spec.check(c, &at, identity)) {
            out.push(SourceConfig { name, settings });
        }
    }
    out
}

fn sts(c: &mut Checker<'_>, spec: &file::Sts) -> (StsSettings, Option<String>) {
    let timeout = c.timeout(
        "sts",
        &spec.timeout_secs,
        DEFAULT_UPSTREAM_TIMEOUT_SECS,
        120,
    );
    let region = c
        .text("sts.region", &spec.region)
        .or_else(|| c.var(ENV_AWS_REGION))
        .or_else(|| c.var(ENV_AWS_DEFAULT_REGION))
        .unwrap_or_else(|| DEFAULT_REGION.to_owned());
    let endpoint = c.text("sts.endpoint", &spec.endpoint).and_then(|e| {
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
            .find_map(|var| c.var(var).map(|v| format!("{v} (from {var})"))),
    };
    (
        StsSettings {
            region,
            endpoint,
            timeout,
        },
        endpoint_env,
    )
}

fn roles(
    c: &mut Checker<'_>,
    cf: &mut cf::Vars,
    specs: Vec<file::Role>,
    sources: &[SourceConfig],
    ra: &RaGlobals,
    identity: &mut LazyIdentity<'_>,
) -> Vec<RoleConfig> {
    let mut roles: Vec<RoleConfig> = Vec::new();
    for (i, spec) in specs.into_iter().enumerate() {
        let path = format!("role[{i}]");
        let alias_key = format!("{path}.alias");
        let alias = match c.value(&alias_key, &spec.alias) {
            Some(a) => {
                let ok = !a.is_empty()
                    && a.len() <= 64
                    && a.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
                if !ok {
                    c.problem(
                        &alias_key,
                        format!(
                            "must be 1-64 characters of A-Z a-z 0-9 - _ . (it is a URL path \
                             segment), got {a:?}"
                        ),
                    );
                }
                a
            }
            None if i == 0 && !spec.alias.is_present() => DEFAULT_ALIAS.to_owned(),
            None if spec.alias.is_present() => continue,
            None => {
                c.problem(&alias_key, "required for every role after the first");
                continue;
            }
        };
        if roles.iter().any(|r| r.alias == alias) {
            c.problem(&alias_key, format!("alias {alias:?} is used twice"));
        }
        let duration_secs = c.number(
            &format!("{path}.duration_secs"),
            &spec.duration_secs,
            DEFAULT_DURATION_SECS,
            900,
            43_200,
        );
        let anchor = c.text(&format!("{path}.trust_anchor_arn"), &spec.trust_anchor_arn);
        let profile = c.text(&format!("{path}.profile_arn"), &spec.profile_arn);
        let ra_arns = match (anchor, profile) {
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
        let chained = chain::spec(c, &path, &spec);
        let source_key = format!("{path}.source");
        let named_source = c.text(&source_key, &spec.source);
        let explicit_session = spec.session_name.is_present();
        let backend_source = match &ra_arns {
            _ if chained.is_some() => None,
            None => Some(role_source(c, &path, named_source, sources)),
            Some(_) => {
                if spec.source.is_present() {
                    c.problem(
                        &source_key,
                        "a Roles Anywhere role signs with the certificate and uses no identity \
                         source: remove source, or trust_anchor_arn and profile_arn",
                    );
                }
                None
            }
        };
        let arn_key = format!("{path}.arn");
        let Some(arn) = c.text(&arn_key, &spec.arn) else {
            // Missing or blank (`arn = ""`, an empty STS_SIDECAR_ROLE_ARN): a role without an
            // ARN must not be dropped silently, or a config of one such role would serve none.
            // A value of the wrong type was reported already.
            if !matches!(spec.arn, crate::checker::Field::Invalid(_)) {
                c.problem(
                    &arn_key,
                    "no role ARN: pass --role-arn arn:aws:iam::<account>:role/<name> or set \
                     [[role]] arn",
                );
            }
            continue;
        };
        let Some(arn) = template(c, cf, &arn_key, &arn) else {
            continue;
        };
        let Some(account_id) = arn::role_account(&arn) else {
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
        let session = c
            .value(&session_key, &spec.session_name)
            .unwrap_or_else(|| {
                if c.env().var(ENV_VCAP_APPLICATION).is_some() {
                    DEFAULT_SESSION_NAME_CF
                } else {
                    DEFAULT_SESSION_NAME
                }
                .to_owned()
            });
        let Some(session_name) = template(c, cf, &session_key, &session) else {
            continue;
        };
        let backend = match (chained, ra_arns, backend_source) {
            (Some(chained), _, _) => chained,
            (None, None, Some(Some(source))) => RoleBackend::WebIdentity { source },
            (None, Some(Some((anchor, profile))), None) => {
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
    chain::resolve(c, &mut roles);
    roles
}

/// Fills the Cloud Foundry placeholders of the value at `key`.
fn template(c: &mut Checker<'_>, cf: &mut cf::Vars, key: &str, value: &str) -> Option<String> {
    match cf.fill(c.env(), value) {
        Ok(v) => Some(v),
        Err(why) => {
            c.problem(key, why.to_string());
            None
        }
    }
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
) -> Option<roles_anywhere::Settings> {
    let anchor_key = format!("{path}.trust_anchor_arn");
    let profile_key = format!("{path}.profile_arn");
    let shape = |kind: &str| {
        format!(
            "is not a Roles Anywhere {kind} ARN (arn:aws:rolesanywhere:<region>:<account>:{kind}/<id>)"
        )
    };
    let anchor_parts = arn::rolesanywhere(anchor.trim(), "trust-anchor");
    if anchor_parts.is_none() {
        c.problem(
            &anchor_key,
            format!("{}: {anchor:?}", shape("trust-anchor")),
        );
    }
    let profile_parts = arn::rolesanywhere(profile.trim(), "profile");
    if profile_parts.is_none() {
        c.problem(&profile_key, format!("{}: {profile:?}", shape("profile")));
    }
    let ((anchor_region, _), (profile_region, _)) = (anchor_parts?, profile_parts?);
    if anchor_region != profile_region {
        let anchor_origin = c.origin(&anchor_key);
        c.problem(
            &profile_key,
            format!(
                "is in {profile_region} but the trust anchor ({anchor_origin}) is in \
                 {anchor_region}: Roles Anywhere needs both in the same region"
            ),
        );
        return None;
    }
    let files = token::Context::identity(identity, c)?;
    let (endpoint, endpoint_origin) = ra.endpoint.clone().unwrap_or_else(|| {
        (
            default_endpoint(anchor_region, ra.fips, ra.dual_stack),
            "the trust anchor's region".to_owned(),
        )
    });
    Some(roles_anywhere::Settings {
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
            let has_problems = c
                .problems()
                .iter()
                .any(|p| p.key.contains(&format!("source.{name}")));
            if !has_problems {
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
