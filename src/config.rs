//! Configuration: one TOML file, then `STS_SIDECAR_*` environment overrides, then CLI flags,
//! parsed once into a typed [`Config`]. Unknown keys are rejected and every error is reported at
//! once, each with the key, variable or flag it came from. Nothing is bound or fetched here; the
//! only file read is the config file itself.
//!
//! Environment variables read (all through the [`Env`] trait, so tests never touch the process
//! environment):
//!
//! | variable | meaning |
//! |---|---|
//! | `STS_SIDECAR_CONFIG` | the config file (like `--config`) |
//! | `STS_SIDECAR_<FLAG>` | any `serve` flag, upper-cased with `_`, e.g. `STS_SIDECAR_ROLE_ARN` |
//! | `CF_INSTANCE_CERT`, `CF_INSTANCE_KEY` | default certificate and key files (set by CF) |
//! | `VCAP_APPLICATION`, `CF_INSTANCE_INDEX`, `CF_INSTANCE_GUID` | template values (set by CF) |
//! | `AWS_CONTAINER_AUTHORIZATION_TOKEN` | the authorization token, unless a token file is set |
//! | `AWS_REGION`, `AWS_DEFAULT_REGION` | default STS region |

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::backend::sts::StsSettings;
use crate::identity::IdentityFiles;
use crate::server::{AuthToken, Limits};

/// The config file, if not given with `--config`.
pub const ENV_CONFIG: &str = "STS_SIDECAR_CONFIG";
/// The prefix of flag overrides in the environment.
pub const ENV_PREFIX: &str = "STS_SIDECAR_";
/// The log filter (`tracing` env-filter syntax, default `info`).
pub const ENV_LOG: &str = "STS_SIDECAR_LOG";
/// The log format: `plain` (default) or `json`.
pub const ENV_LOG_FORMAT: &str = "STS_SIDECAR_LOG_FORMAT";
/// The instance identity certificate file (set by Cloud Foundry).
pub const ENV_CF_INSTANCE_CERT: &str = "CF_INSTANCE_CERT";
/// The instance identity key file (set by Cloud Foundry).
pub const ENV_CF_INSTANCE_KEY: &str = "CF_INSTANCE_KEY";
/// The app's metadata (set by Cloud Foundry), source of template values.
pub const ENV_VCAP_APPLICATION: &str = "VCAP_APPLICATION";
/// The instance index (set by Cloud Foundry).
pub const ENV_CF_INSTANCE_INDEX: &str = "CF_INSTANCE_INDEX";
/// The instance guid (set by Cloud Foundry).
pub const ENV_CF_INSTANCE_GUID: &str = "CF_INSTANCE_GUID";
/// The authorization token shared with the app's SDK.
pub const ENV_AUTH_TOKEN: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN";
/// The AWS region.
pub const ENV_AWS_REGION: &str = "AWS_REGION";
/// The AWS region (older name).
pub const ENV_AWS_DEFAULT_REGION: &str = "AWS_DEFAULT_REGION";

/// Where the credentials endpoint listens by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:61679";
/// Where the admin endpoint listens by default.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:61680";
/// The default STS session duration.
pub const DEFAULT_DURATION_SECS: u64 = 3600;
/// The STS region when nothing else names one.
pub const DEFAULT_REGION: &str = "us-east-1";
/// The default session name on Cloud Foundry.
pub const DEFAULT_SESSION_NAME_CF: &str = "{app}-{instance_index}";
/// The default session name elsewhere.
pub const DEFAULT_SESSION_NAME: &str = "sts-sidecar";
/// The alias of the first role unless it names one.
pub const DEFAULT_ALIAS: &str = "default";
/// Default upstream timeout.
pub const DEFAULT_UPSTREAM_TIMEOUT_SECS: u64 = 10;
/// Default cold-start wait of a request (under botocore's 2 s timeout).
pub const DEFAULT_COLD_START_WAIT_MS: u64 = 1500;
/// Default time to keep serving after SIGTERM.
pub const DEFAULT_DRAIN_SECS: u64 = 5;

/// Reads environment variables. Tests use a `HashMap`.
pub trait Env {
    /// The variable's value, if set (and valid UTF-8).
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Values given as flags (or their `STS_SIDECAR_*` variables); every field overrides the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--config`
    pub config: Option<PathBuf>,
    /// `--listen`
    pub listen: Option<String>,
    /// `--admin-listen`
    pub admin_listen: Option<String>,
    /// `--token-service-url`
    pub token_service_url: Option<String>,
    /// `--token-service-ca`
    pub token_service_ca: Option<String>,
    /// `--cert-file`
    pub cert_file: Option<String>,
    /// `--key-file`
    pub key_file: Option<String>,
    /// `--role-arn`
    pub role_arn: Option<String>,
    /// `--role-session-name`
    pub role_session_name: Option<String>,
    /// `--duration`
    pub duration: Option<String>,
    /// `--auth-token-file`
    pub auth_token_file: Option<String>,
    /// `--sts-region`
    pub sts_region: Option<String>,
    /// `--sts-endpoint`
    pub sts_endpoint: Option<String>,
    /// `--imds` ("true" when given)
    pub imds: Option<String>,
    /// Ignore configured authorization tokens and use a fresh random one (`exec`, `check`,
    /// `credential-process`: nothing outside this process needs to know it).
    pub fresh_auth_token: bool,
}

/// Where the authorization token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthSource {
    /// A fixed token (from `AWS_CONTAINER_AUTHORIZATION_TOKEN`).
    Fixed(AuthToken),
    /// A file, created with a random token if missing.
    File(PathBuf),
}

/// One role to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleConfig {
    /// The alias (`/v1/credentials/<alias>`).
    pub alias: String,
    /// The IAM role ARN, templates filled in.
    pub arn: String,
    /// The 12-digit account of `arn`.
    pub account_id: String,
    /// The session name, templates filled in and made valid for STS.
    pub session_name: String,
    /// The session duration.
    pub duration: Duration,
}

/// The token service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenServiceConfig {
    /// Its base URL (https).
    pub url: String,
    /// Extra CA certificates to trust.
    pub ca_file: Option<PathBuf>,
    /// Timeout of one call.
    pub timeout: Duration,
}

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The credentials endpoint's address.
    pub listen: SocketAddr,
    /// The admin endpoint's address.
    pub admin_listen: SocketAddr,
    /// Whether non-loopback addresses were allowed.
    pub allow_non_loopback: bool,
    /// Whether the IMDSv2 emulation is on.
    pub imds: bool,
    /// Whether IMDSv1 (GETs without a session token) is allowed too.
    pub imds_v1: bool,
    /// The authorization token.
    pub auth: AuthSource,
    /// Connection limits.
    pub limits: Limits,
    /// How long a request waits for the first credentials.
    pub cold_start_wait: Duration,
    /// How long to keep serving after SIGTERM.
    pub drain: Duration,
    /// The identity certificate and key.
    pub identity: IdentityFiles,
    /// The token service.
    pub token_service: TokenServiceConfig,
    /// STS.
    pub sts: StsSettings,
    /// The roles; the first is the default.
    pub roles: Vec<RoleConfig>,
}

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key, variable or flag (e.g. `role[0].arn in sts-sidecar.toml`, `--duration`).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// Every problem found, reported at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The problems, in the order found.
    pub problems: Vec<Problem>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "invalid configuration ({n} problem{})",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {}: {}", p.key, p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl Config {
    /// Loads the file named by `--config` or `STS_SIDECAR_CONFIG` (if any), applies the
    /// environment and the flags, and validates everything.
    pub fn load(flags: &Overrides, env: &dyn Env) -> Result<Config, Error> {
        let path = flags
            .config
            .clone()
            .map(|p| (p, "--config".to_owned()))
            .or_else(|| {
                env.var(ENV_CONFIG)
                    .map(|p| (PathBuf::from(p), ENV_CONFIG.to_owned()))
            });
        let text = match &path {
            None => None,
            Some((p, origin)) => match std::fs::read_to_string(p) {
                Ok(t) => Some((t, p.display().to_string())),
                Err(e) => {
                    return Err(Error {
                        problems: vec![Problem {
                            key: origin.clone(),
                            message: format!("cannot read {}: {e}", p.display()),
                        }],
                    });
                }
            },
        };
        Config::parse(
            text.as_ref().map(|(t, n)| (t.as_str(), n.as_str())),
            flags,
            env,
        )
    }

    /// Parses `file` (its text and a name for messages), then the environment and the flags.
    pub fn parse(
        file: Option<(&str, &str)>,
        flags: &Overrides,
        env: &dyn Env,
    ) -> Result<Config, Error> {
        let mut p = Parser {
            problems: Vec::new(),
            env,
            flags,
            file_name: file.map(|(_, n)| n.to_owned()).unwrap_or_default(),
            vars: None,
        };
        let table = match file {
            None => toml::Table::new(),
            Some((text, name)) => match text.parse::<toml::Table>() {
                Ok(t) => t,
                Err(e) => {
                    return Err(Error {
                        problems: vec![Problem {
                            key: name.to_owned(),
                            message: format!("not valid TOML: {}", e.message()),
                        }],
                    });
                }
            },
        };
        let config = p.config(&table);
        match config {
            Some(c) if p.problems.is_empty() => Ok(c),
            _ => Err(Error {
                problems: p.problems,
            }),
        }
    }
}

/// A value and where it came from.
struct Sourced {
    value: String,
    origin: String,
}

struct Parser<'a> {
    problems: Vec<Problem>,
    env: &'a dyn Env,
    flags: &'a Overrides,
    file_name: String,
    vars: Option<Result<HashMap<&'static str, String>, String>>,
}

/// A view of one TOML table that records which keys were read.
struct Section<'t> {
    table: Option<&'t toml::Table>,
    path: String,
    seen: Vec<&'static str>,
}

impl<'a> Parser<'a> {
    fn problem(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    fn file_key(&self, path: &str) -> String {
        format!("{path} in {}", self.file_name)
    }

    fn section<'t>(&mut self, table: &'t toml::Table, name: &str) -> Section<'t> {
        match table.get(name) {
            None => Section {
                table: None,
                path: name.to_owned(),
                seen: Vec::new(),
            },
            Some(toml::Value::Table(t)) => Section {
                table: Some(t),
                path: name.to_owned(),
                seen: Vec::new(),
            },
            Some(_) => {
                self.problem(self.file_key(name), "must be a table");
                Section {
                    table: None,
                    path: name.to_owned(),
                    seen: Vec::new(),
                }
            }
        }
    }

    /// A string from the file at `section.key`, as text (numbers and booleans too).
    fn file_value(
        &mut self,
        section: &mut Section<'_>,
        key: &'static str,
        kind: Kind,
    ) -> Option<Sourced> {
        section.seen.push(key);
        let value = section.table?.get(key)?;
        let origin = self.file_key(&format!("{}.{key}", section.path));
        let text = match (kind, value) {
            (Kind::Str, toml::Value::String(s)) => s.clone(),
            (Kind::Uint, toml::Value::Integer(i)) if *i >= 0 => i.to_string(),
            (Kind::Bool, toml::Value::Boolean(b)) => b.to_string(),
            _ => {
                self.problem(origin, format!("must be {}", kind.describe()));
                return None;
            }
        };
        Some(Sourced {
            value: text,
            origin,
        })
    }

    fn finish(&mut self, section: Section<'_>) {
        let Some(table) = section.table else { return };
        for key in table.keys() {
            if !section.seen.contains(&key.as_str()) {
                self.problem(
                    self.file_key(&format!("{}.{key}", section.path)),
                    format!(
                        "unknown key (known keys in [{}]: {})",
                        section.path,
                        section.seen.join(", ")
                    ),
                );
            }
        }
    }

    /// flag > `STS_SIDECAR_<NAME>` > file.
    fn layered(
        &mut self,
        flag: &Option<String>,
        name: &str,
        file: Option<Sourced>,
    ) -> Option<Sourced> {
        let flag_name = format!("--{}", name.replace('_', "-"));
        let env_name = format!("{ENV_PREFIX}{}", name.to_ascii_uppercase());
        if let Some(v) = flag {
            return Some(Sourced {
                value: v.clone(),
                origin: flag_name,
            });
        }
        if let Some(v) = self.env.var(&env_name) {
            return Some(Sourced {
                value: v,
                origin: env_name,
            });
        }
        file
    }

    fn uint(&mut self, s: Option<Sourced>, default: u64, min: u64, max: u64) -> u64 {
        let Some(s) = s else { return default };
        match s.value.trim().parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => v,
            _ => {
                self.problem(
                    s.origin,
                    format!(
                        "must be a whole number from {min} to {max}, got {:?}",
                        s.value
                    ),
                );
                default
            }
        }
    }

    fn boolean(&mut self, s: Option<Sourced>) -> bool {
        let Some(s) = s else { return false };
        match s.value.trim() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" | "" => false,
            other => {
                self.problem(s.origin, format!("must be true or false, got {other:?}"));
                false
            }
        }
    }

    fn addr(&mut self, s: Option<Sourced>, default: &str, allow_non_loopback: bool) -> SocketAddr {
        let fallback: SocketAddr = default
            .parse()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
        let Some(s) = s else { return fallback };
        match s.value.trim().parse::<SocketAddr>() {
            Ok(a) if a.ip().is_loopback() || allow_non_loopback => a,
            Ok(a) => {
                self.problem(
                    s.origin,
                    format!(
                        "{a} is not a loopback address; credentials must not leave the machine \
                     (set server.allow_non_loopback = true to allow it anyway)"
                    ),
                );
                fallback
            }
            Err(_) => {
                self.problem(
                    s.origin,
                    format!("must be IP:PORT, e.g. {default}, got {:?}", s.value),
                );
                fallback
            }
        }
    }

    fn config(&mut self, root: &toml::Table) -> Option<Config> {
        for key in root.keys() {
            if !["server", "identity", "token_service", "sts", "role"].contains(&key.as_str()) {
                self.problem(
                    self.file_key(key),
                    "unknown key (known: server, identity, token_service, sts, role)",
                );
            }
        }
        let flags = self.flags;

        // [server]
        let mut server = self.section(root, "server");
        let allow = self.file_value(&mut server, "allow_non_loopback", Kind::Bool);
        let allow = self.layered(&None, "allow_non_loopback", allow);
        let allow_non_loopback = self.boolean(allow);
        let listen = self.file_value(&mut server, "listen", Kind::Str);
        let listen = self.layered(&flags.listen, "listen", listen);
        let listen = self.addr(listen, DEFAULT_LISTEN, allow_non_loopback);
        let admin = self.file_value(&mut server, "admin_listen", Kind::Str);
        let admin = self.layered(&flags.admin_listen, "admin_listen", admin);
        let admin_listen = self.addr(admin, DEFAULT_ADMIN_LISTEN, allow_non_loopback);
        if listen == admin_listen && listen.port() != 0 {
            self.problem(
                "server.admin_listen",
                format!("must differ from server.listen ({listen})"),
            );
        }
        let token_file = self.file_value(&mut server, "auth_token_file", Kind::Str);
        let token_file = self.layered(&flags.auth_token_file, "auth_token_file", token_file);
        let max_conn = self.file_value(&mut server, "max_connections", Kind::Uint);
        let max_conn = self.layered(&None, "max_connections", max_conn);
        let max_connections = self.uint(max_conn, 1024, 1, 1_000_000);
        let hrt = self.file_value(&mut server, "header_read_timeout_secs", Kind::Uint);
        let hrt = self.layered(&None, "header_read_timeout_secs", hrt);
        let header_read_timeout = self.uint(hrt, 5, 1, 300);
        let csw = self.file_value(&mut server, "cold_start_wait_ms", Kind::Uint);
        let csw = self.layered(&None, "cold_start_wait_ms", csw);
        let cold_start_wait = self.uint(csw, DEFAULT_COLD_START_WAIT_MS, 0, 10_000);
        let drain = self.file_value(&mut server, "drain_secs", Kind::Uint);
        let drain = self.layered(&None, "drain_secs", drain);
        let drain = self.uint(drain, DEFAULT_DRAIN_SECS, 0, 300);
        let imds = self.file_value(&mut server, "imds", Kind::Bool);
        let imds = self.layered(&flags.imds, "imds", imds);
        let imds = self.boolean(imds);
        let imds_v1 = self.file_value(&mut server, "imds_v1", Kind::Bool);
        let imds_v1 = self.layered(&None, "imds_v1", imds_v1);
        let imds_v1 = self.boolean(imds_v1);
        if imds_v1 && !imds {
            self.problem("server.imds_v1", "needs server.imds = true (or --imds)");
        }
        self.finish(server);

        let auth = if flags.fresh_auth_token {
            Some(AuthSource::Fixed(crate::server::auth::generate()))
        } else {
            match token_file {
                Some(f) if !f.value.trim().is_empty() => {
                    Some(AuthSource::File(PathBuf::from(f.value)))
                }
                _ => match self.env.var(ENV_AUTH_TOKEN) {
                    Some(t) if !t.is_empty() => Some(AuthSource::Fixed(AuthToken::new(t))),
                    _ => {
                        self.problem(
                        "server.auth_token_file",
                        format!("no authorization token: set {ENV_AUTH_TOKEN} (shared with the app) or --auth-token-file FILE"),
                    );
                        None
                    }
                },
            }
        };

        // [identity]
        let mut identity = self.section(root, "identity");
        let cert = self.file_value(&mut identity, "cert_file", Kind::Str);
        let cert = self.layered(&flags.cert_file, "cert_file", cert);
        let key = self.file_value(&mut identity, "key_file", Kind::Str);
        let key = self.layered(&flags.key_file, "key_file", key);
        self.finish(identity);
        let cert = self.required_path(
            cert,
            ENV_CF_INSTANCE_CERT,
            "identity.cert_file",
            "--cert-file",
            "certificate",
        );
        let key = self.required_path(
            key,
            ENV_CF_INSTANCE_KEY,
            "identity.key_file",
            "--key-file",
            "private key",
        );

        // [token_service]
        let mut ts = self.section(root, "token_service");
        let url = self.file_value(&mut ts, "url", Kind::Str);
        let url = self.layered(&flags.token_service_url, "token_service_url", url);
        let ca = self.file_value(&mut ts, "ca_file", Kind::Str);
        let ca = self.layered(&flags.token_service_ca, "token_service_ca", ca);
        let timeout = self.file_value(&mut ts, "timeout_secs", Kind::Uint);
        let timeout = self.layered(&None, "token_service_timeout_secs", timeout);
        let ts_timeout = self.uint(timeout, DEFAULT_UPSTREAM_TIMEOUT_SECS, 1, 120);
        self.finish(ts);
        let url = match url {
            None => {
                self.problem(
                    "token_service.url",
                    "not set: pass --token-service-url https://<token service host>",
                );
                None
            }
            Some(u) => self.https_url(u),
        };

        // [sts]
        let mut sts = self.section(root, "sts");
        let region = self.file_value(&mut sts, "region", Kind::Str);
        let region = self.layered(&flags.sts_region, "sts_region", region);
        let endpoint = self.file_value(&mut sts, "endpoint", Kind::Str);
        let endpoint = self.layered(&flags.sts_endpoint, "sts_endpoint", endpoint);
        let timeout = self.file_value(&mut sts, "timeout_secs", Kind::Uint);
        let timeout = self.layered(&None, "sts_timeout_secs", timeout);
        let sts_timeout = self.uint(timeout, DEFAULT_UPSTREAM_TIMEOUT_SECS, 1, 120);
        self.finish(sts);
        let region = region
            .map(|r| r.value)
            .or_else(|| self.env.var(ENV_AWS_REGION))
            .or_else(|| self.env.var(ENV_AWS_DEFAULT_REGION))
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_REGION.to_owned());
        let endpoint = endpoint.and_then(|e| match reqwest::Url::parse(e.value.trim()) {
            Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {
                Some(e.value.trim().to_owned())
            }
            _ => {
                self.problem(
                    e.origin,
                    format!("must be an http(s) URL, got {:?}", e.value),
                );
                None
            }
        });

        // [[role]]
        let roles = self.roles(root);

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
            identity: IdentityFiles {
                cert_path: cert.as_ref()?.0.clone(),
                cert_origin: cert?.1,
                key_path: key.as_ref()?.0.clone(),
                key_origin: key?.1,
            },
            token_service: TokenServiceConfig {
                url: url?,
                ca_file: ca.map(|c| PathBuf::from(c.value)),
                timeout: Duration::from_secs(ts_timeout),
            },
            sts: StsSettings {
                region,
                endpoint,
                timeout: Duration::from_secs(sts_timeout),
            },
            roles,
        })
    }

    fn required_path(
        &mut self,
        s: Option<Sourced>,
        var: &str,
        key: &str,
        flag: &str,
        what: &str,
    ) -> Option<(PathBuf, String)> {
        if let Some(s) = s.filter(|s| !s.value.trim().is_empty()) {
            return Some((PathBuf::from(s.value), s.origin));
        }
        match self.env.var(var).filter(|v| !v.trim().is_empty()) {
            Some(v) => Some((PathBuf::from(v), var.to_owned())),
            None => {
                self.problem(
                    key,
                    format!(
                        "no {what} file: {var} is not set (Cloud Foundry sets it); pass {flag} FILE"
                    ),
                );
                None
            }
        }
    }

    fn https_url(&mut self, s: Sourced) -> Option<String> {
        match reqwest::Url::parse(s.value.trim()) {
            Ok(u) if u.scheme() == "https" && u.host().is_some() => {
                if u.query().is_some() || u.fragment().is_some() {
                    self.problem(s.origin, "must not have a query or fragment");
                    return None;
                }
                Some(s.value.trim().trim_end_matches('/').to_owned())
            }
            Ok(_) => {
                self.problem(
                    s.origin,
                    format!(
                        "must be an https:// URL (the token service needs mTLS), got {:?}",
                        s.value
                    ),
                );
                None
            }
            Err(e) => {
                self.problem(s.origin, format!("is not a URL ({e}): {:?}", s.value));
                None
            }
        }
    }

    fn roles(&mut self, root: &toml::Table) -> Vec<RoleConfig> {
        let flags = self.flags;
        let mut entries: Vec<(Option<&toml::Table>, String)> = Vec::new();
        match root.get("role") {
            None => {}
            Some(toml::Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    match item {
                        toml::Value::Table(t) => entries.push((Some(t), format!("role[{i}]"))),
                        _ => self.problem(
                            self.file_key(&format!("role[{i}]")),
                            "must be a table ([[role]])",
                        ),
                    }
                }
            }
            Some(_) => self.problem(
                self.file_key("role"),
                "must be an array of tables: write [[role]], not [role]",
            ),
        }
        if entries.is_empty() {
            entries.push((None, "role[0]".to_owned()));
        }
        let mut roles = Vec::new();
        let mut aliases: Vec<String> = Vec::new();
        for (i, (table, path)) in entries.into_iter().enumerate() {
            let mut section = Section {
                table,
                path: path.clone(),
                seen: Vec::new(),
            };
            let first = i == 0;
            let pick = |flag: &Option<String>| if first { flag.clone() } else { None };
            let alias = self.file_value(&mut section, "alias", Kind::Str);
            let arn = self.file_value(&mut section, "arn", Kind::Str);
            let arn = if first {
                self.layered(&pick(&flags.role_arn), "role_arn", arn)
            } else {
                arn
            };
            let session = self.file_value(&mut section, "session_name", Kind::Str);
            let session = if first {
                self.layered(
                    &pick(&flags.role_session_name),
                    "role_session_name",
                    session,
                )
            } else {
                session
            };
            let duration = self.file_value(&mut section, "duration_secs", Kind::Uint);
            let duration = if first {
                self.layered(&pick(&flags.duration), "duration", duration)
            } else {
                duration
            };
            self.finish(section);

            let alias = match alias {
                Some(a) => {
                    let ok = !a.value.is_empty()
                        && a.value.len() <= 64
                        && a.value
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
                    if !ok {
                        self.problem(a.origin.clone(), format!("must be 1-64 characters of A-Z a-z 0-9 - _ . (it is a URL path segment), got {:?}", a.value));
                    }
                    a.value
                }
                None if first => DEFAULT_ALIAS.to_owned(),
                None => {
                    self.problem(
                        self.file_key(&format!("{path}.alias")),
                        "required for every role after the first",
                    );
                    continue;
                }
            };
            if aliases.contains(&alias) {
                self.problem(
                    self.file_key(&format!("{path}.alias")),
                    format!("alias {alias:?} is used twice"),
                );
            }
            aliases.push(alias.clone());
            let duration_secs = self.uint(duration, DEFAULT_DURATION_SECS, 900, 43_200);
            let Some(arn) = arn else {
                self.problem(format!("{path}.arn"), "no role ARN: pass --role-arn arn:aws:iam::<account>:role/<name> or set [[role]] arn");
                continue;
            };
            let arn_origin = arn.origin.clone();
            let Some(arn_value) = self.template(&arn) else {
                continue;
            };
            let Some(account_id) = parse_role_arn(&arn_value) else {
                self.problem(arn_origin, format!("is not an IAM role ARN (arn:<partition>:iam::<12-digit account>:role/<name>): {arn_value:?}"));
                continue;
            };
            let session = session.unwrap_or_else(|| Sourced {
                value: if self.env.var(ENV_VCAP_APPLICATION).is_some() {
                    DEFAULT_SESSION_NAME_CF
                } else {
                    DEFAULT_SESSION_NAME
                }
                .to_owned(),
                origin: format!("{path}.session_name (default)"),
            });
            let Some(session_name) = self.template(&session) else {
                continue;
            };
            roles.push(RoleConfig {
                alias,
                arn: arn_value,
                account_id,
                session_name: sanitize_session_name(&session_name),
                duration: Duration::from_secs(duration_secs),
            });
        }
        roles
    }

    /// Fills `{org}`, `{space}`, `{app}`, their `_guid` forms, `{instance_index}` and
    /// `{instance_guid}` from the Cloud Foundry environment.
    fn template(&mut self, s: &Sourced) -> Option<String> {
        let mut out = String::new();
        let mut rest = s.value.as_str();
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let Some(len) = rest[start..].find('}') else {
                self.problem(s.origin.clone(), "has a '{' without a closing '}'");
                return None;
            };
            let name = &rest[start + 1..start + len];
            match self.template_var(name) {
                Ok(v) => out.push_str(&v),
                Err(why) => {
                    self.problem(s.origin.clone(), why);
                    return None;
                }
            }
            rest = &rest[start + len + 1..];
        }
        out.push_str(rest);
        Some(out)
    }

    fn template_var(&mut self, name: &str) -> Result<String, String> {
        const NAMES: [&str; 8] = [
            "org",
            "space",
            "app",
            "org_guid",
            "space_guid",
            "app_guid",
            "instance_index",
            "instance_guid",
        ];
        if !NAMES.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{name}}} (known: {})",
                NAMES.map(|n| format!("{{{n}}}")).join(", ")
            ));
        }
        if self.vars.is_none() {
            self.vars = Some(cf_vars(self.env));
        }
        match self.vars.as_ref() {
            Some(Ok(vars)) => vars.get(name).cloned().ok_or_else(|| {
                format!("placeholder {{{name}}} has no value: {} or {ENV_CF_INSTANCE_INDEX}/{ENV_CF_INSTANCE_GUID} lacks it", ENV_VCAP_APPLICATION)
            }),
            Some(Err(why)) => Err(format!("placeholder {{{name}}} cannot be filled: {why}")),
            None => Err("internal: template values missing".to_owned()),
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Uint,
    Bool,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Str => "a string",
            Kind::Uint => "a whole number",
            Kind::Bool => "true or false",
        }
    }
}

fn cf_vars(env: &dyn Env) -> Result<HashMap<&'static str, String>, String> {
    let raw = env.var(ENV_VCAP_APPLICATION).ok_or_else(|| {
        format!("{ENV_VCAP_APPLICATION} is not set (is this running on Cloud Foundry?)")
    })?;
    let v: serde_json::Value = serde_json::from_str(&raw)
        .map_err(|e| format!("{ENV_VCAP_APPLICATION} is not JSON: {e}"))?;
    let mut vars = HashMap::new();
    let mut take = |name: &'static str, keys: &[&str]| {
        if let Some(s) = keys.iter().find_map(|k| v.get(*k).and_then(|x| x.as_str())) {
            vars.insert(name, s.to_owned());
        }
    };
    take("org", &["organization_name"]);
    take("space", &["space_name"]);
    take("app", &["application_name", "name"]);
    take("org_guid", &["organization_id"]);
    take("space_guid", &["space_id"]);
    take("app_guid", &["application_id"]);
    if let Some(i) = env.var(ENV_CF_INSTANCE_INDEX) {
        vars.insert("instance_index", i);
    }
    if let Some(g) = env.var(ENV_CF_INSTANCE_GUID) {
        vars.insert("instance_guid", g);
    }
    Ok(vars)
}

/// The account id of an IAM role ARN, if `arn` is one.
pub fn parse_role_arn(arn: &str) -> Option<String> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let name = resource.strip_prefix("role/")?;
    let name_ok = !name.is_empty()
        && name.len() <= 512
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b));
    let ok = partition.starts_with("aws")
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && name_ok;
    ok.then(|| account.to_owned())
}

/// Makes `name` a valid STS session name: 2-64 characters of `[\w+=,.@-]`, other characters
/// replaced by `-`.
pub fn sanitize_session_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if out.len() < 2 {
        out = format!("{out}-sts-sidecar");
        out.truncate(64);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_role_arns() {
        assert_eq!(
            parse_role_arn("arn:aws:iam::123456789012:role/x").as_deref(),
            Some("123456789012")
        );
        assert_eq!(
            parse_role_arn("arn:aws-cn:iam::123456789012:role/path/x").as_deref(),
            Some("123456789012")
        );
        assert_eq!(parse_role_arn("arn:aws:iam::12345678901:role/x"), None);
        assert_eq!(parse_role_arn("arn:aws:iam::123456789012:user/x"), None);
        assert_eq!(
            parse_role_arn("arn:aws:sts::123456789012:assumed-role/x/y"),
            None
        );
        assert_eq!(parse_role_arn("arn:aws:iam::123456789012:role/a b"), None);
    }

    #[test]
    fn sanitizes_session_names() {
        assert_eq!(sanitize_session_name("my app-0"), "my-app-0");
        assert_eq!(sanitize_session_name("ok_name+=,.@-"), "ok_name+=,.@-");
        assert_eq!(sanitize_session_name(&"x".repeat(80)).len(), 64);
        assert_eq!(sanitize_session_name("a"), "a-sts-sidecar");
        assert_eq!(sanitize_session_name("ümlaut"), "-mlaut");
    }
}
