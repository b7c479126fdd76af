//! The issuer's configuration: flags, each also an `STS_SIDECAR_*` variable (`--issuer-url` is
//! `STS_SIDECAR_ISSUER_URL`), checked into [`issuer::Settings`]. Keys and CA bundles are named
//! by a path or by `env:VARIABLE` (the PEM text in a variable, as a platform's secret store
//! hands it over); every problem is reported at once.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgMatches, Args, Command, FromArgMatches as _};

use super::flags::{address, boolean, env_layer, origins, reason, whole_number};
use super::{Error, Problem};
use crate::checker::{Checker, Origins};
use crate::env::Env;
use crate::issuer::{Accept, KeySource, Settings};
use crate::server::Limits;

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
/// The variable Cloud Foundry sets to the port an app must listen on.
pub const ENV_PORT: &str = "PORT";

/// A proof of identity the issuer can accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProofKind {
    /// A JWT signed with the instance key (RFC 7523 JWT bearer grant).
    Assertion,
    /// A client certificate over TLS (needs --tls-cert and --tls-key).
    Mtls,
    /// The certificate in X-Forwarded-Client-Cert, as a router that sets it from the
    /// handshake writes it (gorouter sanitize_set).
    Xfcc,
}

/// Flags of `issuer`.
#[derive(Debug, Clone, Default, Args)]
#[group(skip)]
pub struct IssuerFlags {
    /// The issuer URL: the `iss` of every token and the `aud` assertions must carry, e.g.
    /// https://token-issuer.apps.example.com (no trailing slash; what the IAM OIDC provider
    /// names)
    #[arg(long, value_name = "URL")]
    pub issuer_url: Option<String>,
    /// The instance identity CA: a PEM bundle of roots and intermediates, a path or
    /// env:VARIABLE (repeatable, or comma-separated)
    #[arg(long, value_name = "FILE", value_delimiter = ',')]
    pub instance_identity_ca: Vec<String>,
    /// The key that signs tokens: EC P-256 (ES256) or RSA of 2048 bits or more (RS256), PEM,
    /// a path or env:VARIABLE
    #[arg(long, value_name = "FILE")]
    pub signing_key: Option<String>,
    /// A key to publish in the JWKS without signing with it (the next key before a rotation,
    /// the previous one after), public or private PEM (repeatable, or comma-separated)
    #[arg(long, value_name = "FILE", value_delimiter = ',')]
    pub publish_key: Vec<String>,
    /// Serve HTTPS with this certificate chain (PEM), and ask clients for certificates
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<String>,
    /// The key of --tls-cert
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<String>,
    /// The proofs of identity accepted, comma-separated: assertion, mtls, xfcc [default:
    /// assertion,mtls]
    #[arg(long, value_name = "KINDS", value_delimiter = ',')]
    pub accept: Vec<ProofKind>,
    /// Audiences tokens may be issued for (repeatable, or comma-separated); the first is the
    /// default [default: sts.amazonaws.com]
    #[arg(long, value_name = "AUD", value_delimiter = ',')]
    pub audience: Vec<String>,
    /// A token's lifetime in seconds, 300-43200 [default: 3600]
    #[arg(long, value_name = "SECS", value_parser = whole_number)]
    pub lifetime: Option<u64>,
    /// Issue tokens only to these organizations (guids; repeatable, or comma-separated)
    #[arg(long, value_name = "GUID", value_delimiter = ',')]
    pub allow_org: Vec<String>,
    /// Issue tokens only to these spaces (guids; repeatable, or comma-separated)
    #[arg(long, value_name = "GUID", value_delimiter = ',')]
    pub allow_space: Vec<String>,
    /// Put org_guid, space_guid and app_guid into AWS session tags (the role's trust policy
    /// must then allow sts:TagSession)
    #[arg(long, value_name = "BOOL", value_parser = boolean, num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub session_tags: Option<bool>,
    /// Put the instance guid into the AWS source identity (the trust policy must then allow
    /// sts:SetSourceIdentity)
    #[arg(long, value_name = "BOOL", value_parser = boolean, num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub source_identity: Option<bool>,
    /// Where the issuer listens [default: 0.0.0.0:$PORT when PORT is set, else 0.0.0.0:8080]
    #[arg(long, value_name = "ADDR", value_parser = address)]
    pub listen: Option<SocketAddr>,
    /// Admin endpoint (/healthz /ready /metrics) [default: 127.0.0.1:61681]
    #[arg(long, value_name = "ADDR", value_parser = address)]
    pub admin_listen: Option<SocketAddr>,
    /// Cache-Control max-age of the discovery document and the keys, in seconds: relying
    /// parties cache them; a rotation waits this long [default: 3600]
    #[arg(long, value_name = "SECS", value_parser = whole_number, hide_short_help = true)]
    pub jwks_max_age: Option<u64>,
    /// Open connections at most [default: 4096]
    #[arg(long, value_name = "N", value_parser = whole_number, hide_short_help = true)]
    pub max_connections: Option<u64>,
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
pub fn load(cli: &ArgMatches, env: &dyn Env) -> Result<Settings, Error> {
    let mut command = command();
    command.build();
    let layer = env_layer(&command, env);
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
    check(&flags, &origins, problems, env)
}

/// Checks `flags` into settings.
pub fn check(
    flags: &IssuerFlags,
    origins: &Origins,
    problems: Vec<Problem>,
    env: &dyn Env,
) -> Result<Settings, Error> {
    let mut c = Checker::new(env, "", Default::default());
    for p in problems {
        c.problem_at(p.key, p.message);
    }
    let name = |id: &str| {
        origins.get(id).map_or_else(
            || format!("--{}", id.replace('_', "-")),
            ToString::to_string,
        )
    };
    let issuer_url = match flags.issuer_url.as_deref().map(str::trim) {
        None | Some("") => {
            c.problem_at(
                name("issuer_url"),
                "not set: pass --issuer-url https://<the issuer's public host> (what the IAM \
                 OIDC provider names)",
            );
            None
        }
        Some(url) => issuer_url(&mut c, &name("issuer_url"), url),
    };
    let source = |c: &mut Checker<'_>, id: &str, value: &str| -> Option<KeySource> {
        match value.trim().strip_prefix("env:") {
            Some(var) => match env.var(var).filter(|v| !v.trim().is_empty()) {
                Some(pem) => Some(KeySource::Env {
                    var: var.to_owned(),
                    pem: Arc::new(pem.into_bytes()),
                }),
                None => {
                    c.problem_at(name(id), format!("the variable {var} is not set"));
                    None
                }
            },
            None if value.trim().is_empty() => {
                c.problem_at(name(id), "must not be empty");
                None
            }
            None => Some(KeySource::File(PathBuf::from(value.trim()))),
        }
    };
    let ca: Vec<KeySource> = flags
        .instance_identity_ca
        .iter()
        .filter_map(|v| source(&mut c, "instance_identity_ca", v))
        .collect();
    if flags.instance_identity_ca.is_empty() {
        c.problem_at(
            name("instance_identity_ca"),
            "not set: pass --instance-identity-ca FILE, the Diego instance identity CA bundle \
             (roots and intermediates)",
        );
    }
    let signing_key = match &flags.signing_key {
        Some(v) => source(&mut c, "signing_key", v),
        None => {
            c.problem_at(
                name("signing_key"),
                "not set: pass --signing-key FILE (an EC P-256 or RSA private key in PEM)",
            );
            None
        }
    };
    let publish_keys: Vec<KeySource> = flags
        .publish_key
        .iter()
        .filter_map(|v| source(&mut c, "publish_key", v))
        .collect();
    let tls = match (&flags.tls_cert, &flags.tls_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            match (
                source(&mut c, "tls_cert", cert),
                source(&mut c, "tls_key", key),
            ) {
                (Some(cert), Some(key)) => Some((cert, key)),
                _ => None,
            }
        }
        (Some(_), None) => {
            c.problem_at(name("tls_cert"), "needs --tls-key too");
            None
        }
        (None, Some(_)) => {
            c.problem_at(name("tls_key"), "needs --tls-cert too");
            None
        }
    };
    let kinds = if flags.accept.is_empty() {
        vec![ProofKind::Assertion, ProofKind::Mtls]
    } else {
        flags.accept.clone()
    };
    let accept = Accept {
        assertion: kinds.contains(&ProofKind::Assertion),
        mtls: kinds.contains(&ProofKind::Mtls),
        xfcc: kinds.contains(&ProofKind::Xfcc),
    };
    if accept.mtls && tls.is_none() && !flags.accept.is_empty() {
        c.warn(format!(
            "{} names mtls but the issuer serves plain HTTP (no --tls-cert): no client can \
             prove itself that way",
            name("accept")
        ));
    }
    if accept.xfcc {
        c.warn(
            "X-Forwarded-Client-Cert is accepted: it proves only what the router in front put \
             there; the router must remove what clients send (gorouter: forwarded_client_cert: \
             sanitize_set) and nothing else may reach the issuer",
        );
    }
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
        &mut c,
        &name("lifetime"),
        flags.lifetime,
        DEFAULT_LIFETIME_SECS,
        300,
        43_200,
    );
    let jwks_max_age = number(
        &mut c,
        &name("jwks_max_age"),
        flags.jwks_max_age,
        DEFAULT_JWKS_MAX_AGE_SECS,
        0,
        86_400,
    );
    let max_connections = number(
        &mut c,
        &name("max_connections"),
        flags.max_connections,
        4096,
        1,
        1_000_000,
    );
    for (id, guids) in [
        ("allow_org", &flags.allow_org),
        ("allow_space", &flags.allow_space),
    ] {
        for g in guids {
            if g.is_empty() || !g.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
                c.problem_at(name(id), format!("must be guids, got {g:?}"));
            }
        }
    }
    let (listen, listen_origin) = match (flags.listen, c.var(ENV_PORT)) {
        (Some(addr), _) => (addr, name("listen")),
        (None, Some(port)) => match port.trim().parse::<u16>() {
            Ok(port) => (
                SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
                ENV_PORT.to_owned(),
            ),
            Err(_) => {
                c.problem_at(ENV_PORT, format!("must be a port number, got {port:?}"));
                (
                    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), DEFAULT_PORT),
                    ENV_PORT.to_owned(),
                )
            }
        },
        (None, None) => (
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), DEFAULT_PORT),
            "the default of --listen".to_owned(),
        ),
    };
    let (admin_listen, admin_listen_origin) = match flags.admin_listen {
        Some(addr) => (addr, name("admin_listen")),
        None => (
            DEFAULT_ADMIN_LISTEN,
            "the default of --admin-listen".to_owned(),
        ),
    };
    if listen == admin_listen && listen.port() != 0 {
        c.problem_at(
            name("admin_listen"),
            format!("must differ from the issuer's address ({listen})"),
        );
    }
    let (problems, warnings) = c.finish();
    match (issuer_url, signing_key, problems.is_empty()) {
        (Some(issuer_url), Some(signing_key), true) => {
            for w in &warnings {
                tracing::warn!("{w}");
            }
            Ok(Settings {
                issuer_url,
                listen,
                listen_origin,
                admin_listen,
                admin_listen_origin,
                ca,
                signing_key,
                publish_keys,
                tls,
                accept,
                audiences,
                lifetime: Duration::from_secs(lifetime),
                allow_orgs: flags.allow_org.clone(),
                allow_spaces: flags.allow_space.clone(),
                session_tags: flags.session_tags.unwrap_or(false),
                source_identity: flags.source_identity.unwrap_or(false),
                jwks_max_age: Duration::from_secs(jwks_max_age),
                reload_interval: Duration::from_secs(5),
                limits: Limits {
                    max_connections: usize::try_from(max_connections).unwrap_or(4096),
                    // Clients come over the network, a TLS handshake first (up to 10 s).
                    first_byte_timeout: Duration::from_secs(15),
                    ..Limits::default()
                },
            })
        }
        _ => Err(Error { problems }),
    }
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

/// The issuer URL as AWS wants an OIDC provider URL: `https://`, no query or fragment, no
/// trailing slash (plain `http://` only on loopback, for tests and local stacks).
fn issuer_url(c: &mut Checker<'_>, origin: &str, value: &str) -> Option<String> {
    let trimmed = value.trim_end_matches('/');
    match reqwest::Url::parse(trimmed) {
        Ok(u) if crate::checker::is_secret_safe(&u) => {
            if u.query().is_some() || u.fragment().is_some() {
                c.problem_at(origin, "must not have a query or fragment");
                return None;
            }
            if u.scheme() == "https" && u.port().is_some() {
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
        load(&matches, &env)
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
        assert!(s.accept.assertion && s.accept.mtls && !s.accept.xfcc);
        assert!(matches!(&s.signing_key, KeySource::Env { var, .. } if var == "SIGNING_KEY"));
        assert!(!format!("{s:?}").contains("BEGIN PRIVATE KEY"));
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
}
