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

use clap::{ArgMatches, Args, Command, FromArgMatches as _};

use super::flags::{address, boolean, env_layer, origins, reason, whole_number};
use super::{Error, Problem};
use crate::checker::{Checker, Origins};
use crate::env::Env;
use crate::issuer::{Accept, Budget, KeySource, ProofKind, Settings};
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

/// Flags of `issuer` (global: also after `issuer publish`).
#[derive(Debug, Clone, Default, Args)]
#[group(skip)]
pub struct IssuerFlags {
    /// The issuer URL: the `iss` of every token, where relying parties fetch the keys, and the
    /// `aud` assertions may carry, e.g. https://token-issuer.apps.example.com (no trailing
    /// slash; what the IAM OIDC provider names)
    #[arg(long, value_name = "URL", global = true)]
    pub issuer_url: Option<String>,
    /// Another URL clients reach the token endpoint at, when the keys are published elsewhere
    /// (e.g. https://token-issuer.apps.internal:8443): assertions may name it as aud too
    /// (repeatable, or comma-separated)
    #[arg(long, value_name = "URL", value_delimiter = ',', global = true)]
    pub token_url: Vec<String>,
    /// The instance identity CA: a PEM bundle of roots and intermediates, a path or
    /// env:VARIABLE (repeatable, or comma-separated)
    #[arg(long, value_name = "FILE", value_delimiter = ',', global = true)]
    pub instance_identity_ca: Vec<String>,
    /// The key that signs tokens: EC P-256 (ES256) or RSA of 2048 bits or more (RS256), PEM,
    /// a path or env:VARIABLE
    #[arg(long, value_name = "FILE", global = true)]
    pub signing_key: Option<String>,
    /// A key to publish in the JWKS without signing with it (the next key before a rotation,
    /// the previous one after), public or private PEM (repeatable, or comma-separated)
    #[arg(long, value_name = "FILE", value_delimiter = ',', global = true)]
    pub publish_key: Vec<String>,
    /// Serve HTTPS with this certificate chain (PEM), and ask clients for certificates
    #[arg(long, value_name = "FILE", global = true)]
    pub tls_cert: Option<String>,
    /// The key of --tls-cert
    #[arg(long, value_name = "FILE", global = true)]
    pub tls_key: Option<String>,
    /// The proofs of identity accepted, comma-separated: assertion, mtls, xfcc [default:
    /// assertion,mtls]
    #[arg(long, value_name = "KINDS", value_delimiter = ',', global = true)]
    pub accept: Vec<ProofKind>,
    /// Audiences tokens may be issued for (repeatable, or comma-separated); the first is the
    /// default [default: sts.amazonaws.com]
    #[arg(long, value_name = "AUD", value_delimiter = ',', global = true)]
    pub audience: Vec<String>,
    /// A token's lifetime in seconds, 300-43200, shortened to the certificate's when that ends
    /// sooner [default: 3600]
    #[arg(long, value_name = "SECS", value_parser = whole_number, global = true)]
    pub lifetime: Option<u64>,
    /// Issue tokens only to these organizations (guids; repeatable, or comma-separated)
    #[arg(long, value_name = "GUID", value_delimiter = ',', global = true)]
    pub allow_org: Vec<String>,
    /// Issue tokens only to these spaces (guids; repeatable, or comma-separated)
    #[arg(long, value_name = "GUID", value_delimiter = ',', global = true)]
    pub allow_space: Vec<String>,
    /// Put org_guid, space_guid and app_guid into AWS session tags (the role's trust policy
    /// must then allow sts:TagSession)
    #[arg(long, value_name = "BOOL", value_parser = boolean, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", global = true)]
    pub session_tags: Option<bool>,
    /// Put the instance guid into the AWS source identity (the trust policy must then allow
    /// sts:SetSourceIdentity)
    #[arg(long, value_name = "BOOL", value_parser = boolean, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", global = true)]
    pub source_identity: Option<bool>,
    /// Where the issuer listens [default: 0.0.0.0:$PORT when PORT is set, else 0.0.0.0:8080]
    #[arg(long, value_name = "ADDR", value_parser = address, global = true)]
    pub listen: Option<SocketAddr>,
    /// Admin endpoint (/healthz /ready /metrics) [default: 127.0.0.1:61681]
    #[arg(long, value_name = "ADDR", value_parser = address, global = true)]
    pub admin_listen: Option<SocketAddr>,
    /// Cache-Control max-age of the discovery document and the keys, in seconds: relying
    /// parties cache them; a rotation waits this long [default: 3600]
    #[arg(long, value_name = "SECS", value_parser = whole_number, hide_short_help = true,
          global = true)]
    pub jwks_max_age: Option<u64>,
    /// Open connections at most; one costs 3 to 50 KiB before it proves anything [default:
    /// 256]
    #[arg(long, value_name = "N", value_parser = whole_number, hide_short_help = true,
          global = true)]
    pub max_connections: Option<u64>,
    /// Tokens one instance may get at once, before --instance-refill-secs applies [default: 20]
    #[arg(long, value_name = "N", value_parser = whole_number, hide_short_help = true,
          global = true)]
    pub instance_burst: Option<u64>,
    /// Then one more token per instance every this many seconds; beyond, 429 with
    /// Retry-After [default: 30]
    #[arg(long, value_name = "SECS", value_parser = whole_number, hide_short_help = true,
          global = true)]
    pub instance_refill_secs: Option<u64>,
}

/// What the settings are for: serving needs everything, publishing only the URL and the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `sts-sidecar issuer`.
    Serve,
    /// `sts-sidecar issuer publish`.
    Publish,
}

/// Every issuer flag, as one clap command.
pub(crate) fn command() -> Command {
    IssuerFlags::augment_args(
        Command::new("issuer")
            .no_binary_name(true)
            .args_override_self(true),
    )
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
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(args: &[&str], env: &[(&str, &str)]) -> Result<Settings, Error> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let matches = command().try_get_matches_from(args).expect("parses");
        load(&matches, &env, Purpose::Serve)
    }

    #[test]
    fn every_problem_is_named_at_once() {
        let e = settings(&["--lifetime", "10", "--tls-cert", "c.pem"], &[])
            .expect_err("incomplete")
            .to_string();
        for want in [
            "--issuer-url: not set",
            "--instance-identity-ca: not set",
            "--signing-key: not set",
            "--lifetime: must be a whole number from 300 to 43200, got 10",
            "--tls-cert: needs --tls-key too",
        ] {
            assert!(e.contains(want), "missing {want:?} in {e}");
        }
    }

    #[test]
    fn cloud_foundry_defaults_and_variables() {
        let s = settings(
            &[
                "--instance-identity-ca",
                "ca.pem",
                "--signing-key",
                "env:SIGNING_KEY",
            ],
            &[
                ("PORT", "8081"),
                ("STS_SIDECAR_ISSUER_URL", "https://issuer.example.com/"),
                ("SIGNING_KEY", "-----BEGIN PRIVATE KEY-----"),
                ("STS_SIDECAR_AUDIENCE", "sts.amazonaws.com,vault"),
            ],
        )
        .expect("settings");
        assert_eq!(s.listen, "0.0.0.0:8081".parse().unwrap());
        assert_eq!(s.issuer_url, "https://issuer.example.com");
        assert_eq!(s.audiences, ["sts.amazonaws.com", "vault"]);
        assert_eq!(
            s.accept,
            Accept::of(&[ProofKind::Assertion, ProofKind::Mtls])
        );
        assert!(matches!(&s.signing_key, KeySource::Env { var, .. } if var == "SIGNING_KEY"));
        assert!(!format!("{s:?}").contains("BEGIN PRIVATE KEY"));
        assert_eq!(s.limits.max_connections, 256);
        assert!(s.limits.reads_bodies);
        assert_eq!(s.budget, Budget::default());
    }

    #[test]
    fn a_plain_http_issuer_only_on_loopback() {
        let e = settings(
            &[
                "--issuer-url",
                "http://issuer.example.com",
                "--instance-identity-ca",
                "ca.pem",
                "--signing-key",
                "k.pem",
            ],
            &[],
        )
        .expect_err("http")
        .to_string();
        assert!(e.contains("--issuer-url: must be an https:// URL"), "{e}");
        assert!(
            settings(
                &[
                    "--issuer-url",
                    "http://127.0.0.1:8080",
                    "--instance-identity-ca",
                    "ca.pem",
                    "--signing-key",
                    "k.pem",
                ],
                &[],
            )
            .is_ok()
        );
    }

    #[test]
    fn token_urls_and_budgets() {
        let s = settings(
            &[
                "--issuer-url",
                "https://keys.example.com",
                "--token-url",
                "https://issuer.apps.internal:8443/,https://keys.example.com",
                "--instance-identity-ca",
                "ca.pem",
                "--signing-key",
                "k.pem",
                "--instance-burst",
                "5",
                "--instance-refill-secs",
                "60",
            ],
            &[],
        )
        .expect("settings");
        assert_eq!(s.token_urls, ["https://issuer.apps.internal:8443"]);
        assert_eq!(
            s.assertion_audiences(),
            [
                "https://keys.example.com",
                "https://issuer.apps.internal:8443"
            ]
        );
        assert_eq!(s.budget.burst, 5);
        assert_eq!(s.budget.interval, Duration::from_secs(60));
        let e = settings(
            &[
                "--issuer-url",
                "https://keys.example.com",
                "--token-url",
                "http://issuer.internal",
            ],
            &[],
        )
        .expect_err("plain http off loopback")
        .to_string();
        assert!(e.contains("--token-url: must be an https:// URL"), "{e}");
    }

    #[test]
    fn publishing_needs_only_the_url_and_the_keys() {
        let env = HashMap::new();
        let matches = command()
            .try_get_matches_from([
                "--issuer-url",
                "https://k.example.com",
                "--signing-key",
                "k.pem",
            ])
            .expect("parses");
        assert!(load(&matches, &env, Purpose::Publish).is_ok());
        assert!(load(&matches, &env, Purpose::Serve).is_err());
    }
}
