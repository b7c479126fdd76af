//! The issuer's configuration: flags, each also an `STS_SIDECAR_*` variable (`--issuer-url` is
//! `STS_SIDECAR_ISSUER_URL`), checked into [`issuer::Settings`](crate::issuer::Settings). Keys
//! and CA bundles are named by a path or by `env:VARIABLE` (the PEM text in a variable, as a
//! platform's secret store hands it over); every problem is reported at once.
//!
//! The check is a few steps, each reading its own flags: the URLs, the key material, the
//! proofs, what tokens hold, the addresses, and the limits.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgMatches, FromArgMatches as _};

mod flags;

pub use flags::IssuerFlags;
pub(crate) use flags::command;

use super::flags::{env_layer, origins, reason};
use super::{Error, Problem};
use crate::checker::{Checker, Origins};
use crate::env::Env;
use crate::issuer::{Accept, Budget, KeySource, Settings};
use crate::listener::Limits;

/// The port the issuer listens on when `PORT` (set by Cloud Foundry) is not.
pub const DEFAULT_PORT: u16 = 8080;
/// Where the admin endpoint listens by default.
pub const DEFAULT_ADMIN_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 61681);
/// The audience when none is configured.
pub const DEFAULT_AUDIENCE: &str = "sts.amazonaws.com";
/// A token's lifetime by default.
pub const DEFAULT_LIFETIME_SECS: u64 = 3600;
/// `Cache-Control: max-age` of the discovery document and keys by default.
pub const DEFAULT_JWKS_MAX_AGE_SECS: u64 = 3600;
/// Open connections at most, by default. A silent connection costs about 3 KiB, one whose head
/// has arrived about 14 KiB (hyper's read and write buffers), one sending a body slowly about
/// 21 KiB, and up to twice that once a flood churns the allocator: with every slot held that
/// way the issuer peaks at about 23 MiB, inside the 32M its manifest gives it (at 512: 34 MiB;
/// bench/hostile.md).
pub const DEFAULT_MAX_CONNECTIONS: u64 = 256;
/// How long a client has from connecting to its first byte of HTTP (a TLS handshake included).
pub const FIRST_BYTE_SECS: u64 = 5;
/// The variable Cloud Foundry sets to the port an app must listen on.
pub const ENV_PORT: &str = "PORT";

/// What the settings are for: serving needs everything, publishing only the URL and the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `sts-sidecar issuer`.
    Serve,
    /// `sts-sidecar issuer publish`.
    Publish,
}

/// The issuer's settings from its command line (`cli`) over the variables.
pub fn load(cli: &ArgMatches, env: &dyn Env, purpose: Purpose) -> Result<Settings, Error> {
    let mut command = command();
    command.build();
    let layer = env_layer(&command, env, &super::known_variables());
    let mut flags = layer
        .matches
        .as_ref()
        .and_then(|m| IssuerFlags::from_arg_matches(m).ok())
        .unwrap_or_default();
    let mut problems = layer.problems;
    if cli.try_contains_id("issuer_url").is_ok()
        && let Err(e) = flags.update_from_arg_matches(cli)
    {
        problems.push(Problem {
            key: "the command line".to_owned(),
            message: reason(&e),
        });
    }
    let origins = origins(&command, cli, layer.matches.as_ref());
    check(&flags, &origins, problems, env, purpose)
}

/// Where a flag's value came from, in words (`--lifetime`, or the variable).
struct Names<'o>(&'o Origins);

impl Names<'_> {
    fn of(&self, id: &str) -> String {
        self.0.get(id).map_or_else(
            || format!("--{}", id.replace('_', "-")),
            ToString::to_string,
        )
    }
}

/// Checks `flags` into settings.
pub fn check(
    flags: &IssuerFlags,
    origins: &Origins,
    problems: Vec<Problem>,
    env: &dyn Env,
    purpose: Purpose,
) -> Result<Settings, Error> {
    let mut c = Checker::new(env, "", Default::default());
    for p in problems {
        c.problem_at(p.key, p.message);
    }
    let names = Names(origins);
    let (issuer_url, token_urls) = urls(&mut c, flags, &names);
    let keys = key_material(&mut c, flags, &names, purpose);
    let accept = proofs(&mut c, flags, &names, keys.tls.is_some());
    let tokens = tokens(&mut c, flags, &names);
    let (listen, admin) = addresses(&mut c, flags, &names);
    let (limits, budget, jwks_max_age) = limits(&mut c, flags, &names);
    let (problems, warnings) = c.finish();
    let (Some(issuer_url), Some(signing_key), true) =
        (issuer_url, keys.signing_key, problems.is_empty())
    else {
        return Err(Error { problems });
    };
    for w in &warnings {
        tracing::warn!("{w}");
    }
    Ok(Settings {
        issuer_url,
        token_urls,
        listen: listen.0,
        listen_origin: listen.1,
        admin_listen: admin.0,
        admin_listen_origin: admin.1,
        ca: keys.ca,
        signing_key,
        publish_keys: keys.publish_keys,
        tls: keys.tls,
        accept,
        audiences: tokens.audiences,
        lifetime: tokens.lifetime,
        allow_orgs: flags.allow_org.clone(),
        allow_spaces: flags.allow_space.clone(),
        session_tags: flags.session_tags.unwrap_or(false),
        source_identity: flags.source_identity.unwrap_or(false),
        jwks_max_age,
        reload_interval: Duration::from_secs(5),
        budget,
        limits,
    })
}

/// The issuer URL (required) and the token URLs.
fn urls(
    c: &mut Checker<'_>,
    flags: &IssuerFlags,
    names: &Names<'_>,
) -> (Option<String>, Vec<String>) {
    let issuer = match flags.issuer_url.as_deref().map(str::trim) {
        None | Some("") => {
            c.problem_at(
                names.of("issuer_url"),
                "not set: pass --issuer-url https://<the issuer's public host> (what the IAM \
                 OIDC provider names)",
            );
            None
        }
        Some(url) => issuer_url(c, &names.of("issuer_url"), url, true),
    };
    let token_urls = flags
        .token_url
        .iter()
        .filter_map(|u| issuer_url(c, &names.of("token_url"), u.trim(), false))
        .filter(|u| Some(u) != issuer.as_ref())
        .collect();
    (issuer, token_urls)
}

/// The key material the flags name.
#[derive(Default)]
struct KeyMaterial {
    ca: Vec<KeySource>,
    signing_key: Option<KeySource>,
    publish_keys: Vec<KeySource>,
    tls: Option<(KeySource, KeySource)>,
}

fn key_material(
    c: &mut Checker<'_>,
    flags: &IssuerFlags,
    names: &Names<'_>,
    purpose: Purpose,
) -> KeyMaterial {
    let source = |c: &mut Checker<'_>, id: &str, value: &str| -> Option<KeySource> {
        match value.trim().strip_prefix("env:") {
            Some(var) => match c.var(var).filter(|v| !v.trim().is_empty()) {
                Some(pem) => Some(KeySource::Env {
                    var: var.to_owned(),
                    pem: Arc::new(pem.into_bytes()),
                }),
                None => {
                    c.problem_at(names.of(id), format!("the variable {var} is not set"));
                    None
                }
            },
            None if value.trim().is_empty() => {
                c.problem_at(names.of(id), "must not be empty");
                None
            }
            None => Some(KeySource::File(PathBuf::from(value.trim()))),
        }
    };
    let mut keys = KeyMaterial::default();
    if purpose == Purpose::Serve {
        keys.ca = flags
            .instance_identity_ca
            .iter()
            .filter_map(|v| source(c, "instance_identity_ca", v))
            .collect();
        if flags.instance_identity_ca.is_empty() {
            c.problem_at(
                names.of("instance_identity_ca"),
                "not set: pass --instance-identity-ca FILE, the Diego instance identity CA \
                 bundle (roots and intermediates)",
            );
        }
    }
    keys.signing_key = match &flags.signing_key {
        Some(v) => source(c, "signing_key", v),
        None => {
            c.problem_at(
                names.of("signing_key"),
                "not set: pass --signing-key FILE (an EC P-256 or RSA private key in PEM)",
            );
            None
        }
    };
    keys.publish_keys = flags
        .publish_key
        .iter()
        .filter_map(|v| source(c, "publish_key", v))
        .collect();
    if purpose == Purpose::Publish {
        return keys;
    }
    keys.tls = match (&flags.tls_cert, &flags.tls_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => match (source(c, "tls_cert", cert), source(c, "tls_key", key)) {
            (Some(cert), Some(key)) => Some((cert, key)),
            _ => None,
        },
        (Some(_), None) => {
            c.problem_at(names.of("tls_cert"), "needs --tls-key too");
            None
        }
        (None, Some(_)) => {
            c.problem_at(names.of("tls_key"), "needs --tls-cert too");
            None
        }
    };
    keys
}

/// The proofs accepted, with a warning for each that cannot work or trusts more than the
/// request.
fn proofs(c: &mut Checker<'_>, flags: &IssuerFlags, names: &Names<'_>, tls: bool) -> Accept {
    let accept = if flags.accept.is_empty() {
        Accept::default()
    } else {
        Accept::of(&flags.accept)
    };
    for kind in accept.kinds() {
        if kind.needs_tls() && !tls && !flags.accept.is_empty() {
            c.warn(format!(
                "{} names {} but the issuer serves plain HTTP (no --tls-cert): no client can \
                 prove itself that way",
                names.of("accept"),
                kind.name()
            ));
        }
        if let Some(caution) = kind.caution() {
            c.warn(caution);
        }
    }
    accept
}

/// What tokens hold: audiences and lifetime; the org and space allow-lists are checked here.
struct Tokens {
    audiences: Vec<String>,
    lifetime: Duration,
}

fn tokens(c: &mut Checker<'_>, flags: &IssuerFlags, names: &Names<'_>) -> Tokens {
    let mut audiences: Vec<String> = flags
        .audience
        .iter()
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty())
        .collect();
    if audiences.is_empty() {
        audiences.push(DEFAULT_AUDIENCE.to_owned());
    }
    audiences.dedup();
    let lifetime = number(
        c,
        &names.of("lifetime"),
        flags.lifetime,
        DEFAULT_LIFETIME_SECS,
        300,
        43_200,
    );
    for (id, guids) in [
        ("allow_org", &flags.allow_org),
        ("allow_space", &flags.allow_space),
    ] {
        for g in guids {
            if g.is_empty() || !g.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
                c.problem_at(names.of(id), format!("must be guids, got {g:?}"));
            }
        }
    }
    Tokens {
        audiences,
        lifetime: Duration::from_secs(lifetime),
    }
}

/// Where the service and the admin endpoint listen, each with where that came from.
fn addresses(
    c: &mut Checker<'_>,
    flags: &IssuerFlags,
    names: &Names<'_>,
) -> ((SocketAddr, String), (SocketAddr, String)) {
    let any = |port| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
    let listen = match (flags.listen, c.var(ENV_PORT)) {
        (Some(addr), _) => (addr, names.of("listen")),
        (None, Some(port)) => match port.trim().parse::<u16>() {
            Ok(port) => (any(port), ENV_PORT.to_owned()),
            Err(_) => {
                c.problem_at(ENV_PORT, format!("must be a port number, got {port:?}"));
                (any(DEFAULT_PORT), ENV_PORT.to_owned())
            }
        },
        (None, None) => (any(DEFAULT_PORT), "the default of --listen".to_owned()),
    };
    let admin = match flags.admin_listen {
        Some(addr) => (addr, names.of("admin_listen")),
        None => (
            DEFAULT_ADMIN_LISTEN,
            "the default of --admin-listen".to_owned(),
        ),
    };
    if listen.0 == admin.0 && listen.0.port() != 0 {
        c.problem_at(
            names.of("admin_listen"),
            format!("must differ from the issuer's address ({})", listen.0),
        );
    }
    (listen, admin)
}

/// The connection limits, the per-instance budget and the documents' cache age.
fn limits(
    c: &mut Checker<'_>,
    flags: &IssuerFlags,
    names: &Names<'_>,
) -> (Limits, Budget, Duration) {
    let jwks_max_age = number(
        c,
        &names.of("jwks_max_age"),
        flags.jwks_max_age,
        DEFAULT_JWKS_MAX_AGE_SECS,
        0,
        86_400,
    );
    let max_connections = number(
        c,
        &names.of("max_connections"),
        flags.max_connections,
        DEFAULT_MAX_CONNECTIONS,
        1,
        1_000_000,
    );
    let default = Budget::default();
    let burst = number(
        c,
        &names.of("instance_burst"),
        flags.instance_burst,
        u64::from(default.burst),
        1,
        10_000_000,
    );
    let refill = number(
        c,
        &names.of("instance_refill_secs"),
        flags.instance_refill_secs,
        default.interval.as_secs(),
        1,
        3600,
    );
    let limits = Limits {
        max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
        // Clients come over the network, a TLS handshake first.
        first_byte_timeout: Duration::from_secs(FIRST_BYTE_SECS),
        // Heads are small (an X-Forwarded-Client-Cert is about 2 KiB): the smallest buffer.
        max_header_bytes: 8 * 1024,
        reads_bodies: true,
        ..Limits::default()
    };
    let budget = Budget {
        burst: u32::try_from(burst).unwrap_or(u32::MAX),
        interval: Duration::from_secs(refill),
    };
    (limits, budget, Duration::from_secs(jwks_max_age))
}

fn number(
    c: &mut Checker<'_>,
    origin: &str,
    value: Option<u64>,
    default: u64,
    min: u64,
    max: u64,
) -> u64 {
    match value {
        None => default,
        Some(v) if (min..=max).contains(&v) => v,
        Some(v) => {
            c.problem_at(
                origin,
                format!("must be a whole number from {min} to {max}, got {v}"),
            );
            default
        }
    }
}

/// A URL as AWS wants an OIDC provider URL (`iss`, when `is_issuer`) or as clients reach the
/// token endpoint: `https://`, no query or fragment, no trailing slash (plain `http://` only on
/// loopback, for tests and local stacks).
fn issuer_url(c: &mut Checker<'_>, origin: &str, value: &str, is_issuer: bool) -> Option<String> {
    let trimmed = value.trim_end_matches('/');
    match reqwest::Url::parse(trimmed) {
        Ok(u) if crate::checker::is_secret_safe(&u) => {
            if u.query().is_some() || u.fragment().is_some() {
                c.problem_at(origin, "must not have a query or fragment");
                return None;
            }
            if is_issuer && u.scheme() == "https" && u.port().is_some() {
                c.warn(format!(
                    "{origin}: {trimmed} has a port; AWS IAM OIDC provider URLs cannot name one"
                ));
            }
            Some(trimmed.to_owned())
        }
        Ok(_) => {
            c.problem_at(
                origin,
                format!(
                    "must be an https:// URL (relying parties fetch the keys from it; plain \
                     http:// only on a loopback address), got {value:?}"
                ),
            );
            None
        }
        Err(e) => {
            c.problem_at(origin, format!("is not a URL ({e}): {value:?}"));
            None
        }
    }
}

#[cfg(test)]
mod tests;
