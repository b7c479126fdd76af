//! Configuration: one TOML file, then `STS_SIDECAR_*` environment overrides, then CLI flags,
//! parsed once into a typed [`Config`]. Nothing is bound or fetched here; the only file read is
//! the config file itself.
//!
//! Data first, in three steps:
//! 1. `layer` writes flags and variables into the file's TOML table, recording where each
//!    value came from;
//! 2. `file` reads the table as serde structs (unknown keys refused, source kinds a tagged
//!    enum), every structural problem found by retrying without the offending key;
//! 3. `checks` turns the data into the typed [`Config`] (defaults, ranges, URLs, templates,
//!    which source each role uses).
//!
//! Every problem is reported at once, each with the key, variable or flag it came from.
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
//! | `AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL` | default STS endpoint (read by aws-config) |
//! | `AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_ROLE_ARN`, `AWS_ROLE_SESSION_NAME` | Kubernetes IRSA: with no other source, the default role's token file, role and session name |

mod cf;
mod checks;
pub(crate) mod file;
mod layer;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use layer::{ENV_ROLE_ARN, ENV_ROLE_SESSION_NAME, ENV_WEB_IDENTITY_TOKEN_FILE, flag_names};

use crate::backend::sts::StsSettings;
use crate::server::{AuthToken, Limits};
use crate::token;

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
/// The Roles Anywhere endpoint when none is configured here (the AWS convention).
pub const ENV_AWS_ENDPOINT_URL_ROLESANYWHERE: &str = "AWS_ENDPOINT_URL_ROLESANYWHERE";
/// The STS endpoint aws-config uses when none is configured here.
pub const ENV_AWS_ENDPOINT_URL_STS: &str = "AWS_ENDPOINT_URL_STS";
/// The endpoint for every AWS service aws-config uses when none is configured here.
pub const ENV_AWS_ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";

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

/// Values given as flags, by flag name without the dashes (`role-arn`); every one overrides the
/// file and the `STS_SIDECAR_*` variable of the same name.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--config`
    pub config: Option<PathBuf>,
    values: BTreeMap<String, String>,
    /// Ignore configured authorization tokens and use a fresh random one (`exec`,
    /// `credential-process`: nothing outside this process needs to know it).
    pub fresh_auth_token: bool,
}

impl Overrides {
    /// Sets flag `--name` to `value`.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.values.insert(name.to_owned(), value.into());
    }

    /// Sets flag `--name` to `value` if it is given.
    pub fn set_opt(&mut self, name: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.set(name, v);
        }
    }

    /// The value of flag `--name`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }
}

/// Where the authorization token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthSource {
    /// A fixed token (from `AWS_CONTAINER_AUTHORIZATION_TOKEN`).
    Fixed(AuthToken),
    /// A file, created with a random token if missing.
    File(PathBuf),
    /// A fresh random token only this process knows (`exec`, `credential-process`).
    Generated(AuthToken),
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
    /// How its credentials are obtained.
    pub backend: RoleBackend,
}

/// How a role's credentials are obtained (one arm per backend).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleBackend {
    /// STS `AssumeRoleWithWebIdentity` with a token from the source of this name.
    WebIdentity {
        /// The source's name.
        source: String,
    },
    /// IAM Roles Anywhere `CreateSession` with the certificate.
    RolesAnywhere(Box<crate::backend::roles_anywhere::Settings>),
}

impl RoleConfig {
    /// The identity source the role's token comes from (web-identity roles).
    pub fn source(&self) -> Option<&str> {
        match &self.backend {
            RoleBackend::WebIdentity { source } => Some(source),
            RoleBackend::RolesAnywhere(_) => None,
        }
    }

    /// The backend's kind, for logs: `sts` or `roles-anywhere`.
    pub fn kind(&self) -> &'static str {
        match &self.backend {
            RoleBackend::WebIdentity { .. } => "sts",
            RoleBackend::RolesAnywhere(_) => "roles-anywhere",
        }
    }
}

/// One named identity source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    /// The name (`[source.NAME]`; `token-service` for `[token_service]`).
    pub name: String,
    /// Its kind and settings.
    pub settings: SourceSettings,
}

/// The settings of one source, by kind (one arm per kind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSettings {
    /// `type = "token-service"`
    TokenService(token::token_service::Settings),
    /// `type = "file"`
    File(token::file::Settings),
    /// `type = "gcp-metadata"`
    GcpMetadata(token::gcp_metadata::Settings),
    /// `type = "oidc"`
    Oidc(token::oidc::Settings),
    /// `type = "github-actions"`
    GithubActions(token::github_actions::Settings),
    /// `type = "command"`
    Command(token::command::Settings),
}

impl SourceSettings {
    /// The kind, as written in the config.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceSettings::TokenService(_) => "token-service",
            SourceSettings::File(_) => "file",
            SourceSettings::GcpMetadata(_) => "gcp-metadata",
            SourceSettings::Oidc(_) => "oidc",
            SourceSettings::GithubActions(_) => "github-actions",
            SourceSettings::Command(_) => "command",
        }
    }
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
    /// The identity sources, by name, in config order.
    pub sources: Vec<SourceConfig>,
    /// STS.
    pub sts: StsSettings,
    /// Where the STS endpoint comes from when `sts.endpoint` is `None`: the aws-config
    /// variable that names one, if set.
    pub sts_endpoint_env: Option<String>,
    /// The roles; the first is the default.
    pub roles: Vec<RoleConfig>,
    /// Things that work but are probably not what was meant; logged at start.
    pub warnings: Vec<String>,
}

impl Config {
    /// The source named `name`.
    pub fn source(&self, name: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.name == name)
    }
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
        let text = Config::read_file(flags, env)?;
        Config::parse(
            text.as_ref().map(|(t, n)| (t.as_str(), n.as_str())),
            flags,
            env,
        )
    }

    /// Reads the file named by `--config` or `STS_SIDECAR_CONFIG`: its text and its name.
    fn read_file(flags: &Overrides, env: &dyn Env) -> Result<Option<(String, String)>, Error> {
        let path = flags
            .config
            .clone()
            .map(|p| (p, "--config".to_owned()))
            .or_else(|| {
                env.var(ENV_CONFIG)
                    .map(|p| (PathBuf::from(p), ENV_CONFIG.to_owned()))
            });
        match path {
            None => Ok(None),
            Some((p, origin)) => match std::fs::read_to_string(&p) {
                Ok(t) => Ok(Some((t, p.display().to_string()))),
                Err(e) => Err(Error {
                    problems: vec![Problem {
                        key: origin,
                        message: format!("cannot read {}: {e}", p.display()),
                    }],
                }),
            },
        }
    }

    /// Parses `file` (its text and a name for messages), then the environment and the flags.
    pub fn parse(
        file: Option<(&str, &str)>,
        flags: &Overrides,
        env: &dyn Env,
    ) -> Result<Config, Error> {
        let (table, file_name) = match file {
            None => (toml::Table::new(), String::new()),
            Some((text, name)) => match text.parse::<toml::Table>() {
                Ok(t) => (t, name.to_owned()),
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
        let mut file_keys = HashSet::new();
        collect_keys(&table, "", &mut file_keys);
        let layered = layer::apply(table, flags, env);
        let mut checker = Checker {
            env,
            file_name,
            file_keys,
            origins: layered.origins,
            problems: Vec::new(),
            warnings: Vec::new(),
            cf: cf::Vars::default(),
        };
        for (origin, message) in layered.problems {
            checker.problems.push(Problem {
                key: origin,
                message,
            });
        }
        let data = checker.data(layered.root);
        let config = checks::build(&mut checker, data, flags);
        match config {
            Some(c) if checker.problems.is_empty() => Ok(c),
            _ => Err(Error {
                problems: checker.problems,
            }),
        }
    }
}

/// The admin address `serve` would listen on, from the flag, the variable or the config file,
/// without checking the rest of the configuration (for `check --wait`).
pub fn admin_listen(flags: &Overrides, env: &dyn Env) -> Result<SocketAddr, Error> {
    let text = Config::read_file(flags, env)?;
    let table = match &text {
        None => toml::Table::new(),
        Some((t, name)) => t.parse::<toml::Table>().map_err(|e| Error {
            problems: vec![Problem {
                key: name.clone(),
                message: format!("not valid TOML: {}", e.message()),
            }],
        })?,
    };
    let layered = layer::apply(table, flags, env);
    let value = layered
        .root
        .get("server")
        .and_then(|s| s.get("admin_listen"))
        .and_then(|v| v.as_str())
        .unwrap_or(DEFAULT_ADMIN_LISTEN);
    value.trim().parse().map_err(|_| Error {
        problems: vec![Problem {
            key: layered
                .origins
                .get("server.admin_listen")
                .cloned()
                .unwrap_or_else(|| "server.admin_listen".to_owned()),
            message: format!("must be IP:PORT, e.g. {DEFAULT_ADMIN_LISTEN}, got {value:?}"),
        }],
    })
}

/// Everything the checks need: where each key came from, the problems so far, the environment.
pub(crate) struct Checker<'a> {
    env: &'a dyn Env,
    file_name: String,
    /// Every key path the file itself has (`server.listen`, `role[0].arn`).
    file_keys: HashSet<String>,
    /// Key paths written by a flag or variable, and which one.
    origins: HashMap<String, String>,
    problems: Vec<Problem>,
    warnings: Vec<String>,
    cf: cf::Vars,
}

impl Checker<'_> {
    /// Where the value at `key` came from: the flag or variable, `KEY in FILE`, or the bare key
    /// path when it is missing (a default).
    pub(crate) fn origin(&self, key: &str) -> String {
        if let Some(o) = self.origins.get(key) {
            return o.clone();
        }
        // A key the file has, or a missing key of a table the file has.
        let parent = key.rsplit_once('.').map(|(p, _)| p);
        if self.file_keys.contains(key) || parent.is_some_and(|p| self.file_keys.contains(p)) {
            return format!("{key} in {}", self.file_name);
        }
        key.to_owned()
    }

    /// Records a problem with the value at `key`.
    pub(crate) fn problem(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            key: self.origin(key),
            message: message.into(),
        });
    }

    /// Records a problem with a value whose origin is already known (a variable).
    pub(crate) fn problem_at(&mut self, origin: String, message: impl Into<String>) {
        self.problems.push(Problem {
            key: origin,
            message: message.into(),
        });
    }

    /// Records something that works but is probably not what was meant.
    pub(crate) fn warn(&mut self, message: impl Into<String>) {
        self.warnings.push(message.into());
    }

    /// A variable of the environment, blank counted as unset.
    pub(crate) fn env(&self, name: &str) -> Option<String> {
        self.env.var(name).filter(|v| !v.trim().is_empty())
    }

    /// A whole number from `min` to `max` (`default` when missing or wrong).
    pub(crate) fn uint(
        &mut self,
        key: &str,
        value: Option<&file::Uint>,
        default: u64,
        min: u64,
        max: u64,
    ) -> u64 {
        let parsed = match value {
            None => return default,
            Some(file::Uint::Number(n)) => u64::try_from(*n).ok(),
            Some(file::Uint::Text(t)) => t.trim().parse::<u64>().ok(),
        };
        match parsed {
            Some(v) if (min..=max).contains(&v) => v,
            _ => {
                let shown = match value {
                    Some(file::Uint::Number(n)) => n.to_string(),
                    Some(file::Uint::Text(t)) => format!("{t:?}"),
                    None => String::new(),
                };
                self.problem(
                    key,
                    format!("must be a whole number from {min} to {max}, got {shown}"),
                );
                default
            }
        }
    }

    /// The `timeout_secs` key of the source at `at`: 1 to `max` seconds, `default` if missing.
    pub(crate) fn timeout(
        &mut self,
        at: &str,
        value: Option<&file::Uint>,
        default: u64,
        max: u64,
    ) -> Duration {
        Duration::from_secs(self.uint(&format!("{at}.timeout_secs"), value, default, 1, max))
    }

    /// A boolean (`false` when missing or wrong).
    pub(crate) fn switch(&mut self, key: &str, value: Option<&file::Switch>) -> bool {
        match value {
            None => false,
            Some(file::Switch::Bool(b)) => *b,
            Some(file::Switch::Text(t)) => match t.trim() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" | "" => false,
                other => {
                    self.problem(key, format!("must be true or false, got {other:?}"));
                    false
                }
            },
        }
    }

    /// A path that must not be blank.
    pub(crate) fn path(&mut self, key: &str, value: Option<&String>) -> Option<PathBuf> {
        match value.map(|v| v.trim()) {
            Some("") => {
                self.problem(key, "must not be empty");
                None
            }
            Some(v) => Some(PathBuf::from(v)),
            None => None,
        }
    }

    /// A URL of an endpoint that receives a secret: `https://`, or plain `http://` on a
    /// loopback address (tests and local emulators). `what` names the endpoint in messages.
    pub(crate) fn secret_url(&mut self, key: &str, value: &str, what: &str) -> Option<String> {
        let value = value.trim();
        match reqwest::Url::parse(value) {
            Ok(u) if u.scheme() == "https" && u.host().is_some() => Some(value.to_owned()),
            Ok(u) if u.scheme() == "http" && is_loopback_host(&u) => Some(value.to_owned()),
            Ok(_) => {
                self.problem(
                    key,
                    format!(
                        "must be an https:// URL ({what} receives a secret; plain http:// only \
                         on a loopback address), got {value:?}"
                    ),
                );
                None
            }
            Err(e) => {
                self.problem(key, format!("is not a URL ({e}): {value:?}"));
                None
            }
        }
    }

    /// Fills the Cloud Foundry placeholders of the value at `key`.
    pub(crate) fn template(&mut self, key: &str, value: &str) -> Option<String> {
        match self.cf.fill(self.env, value) {
            Ok(v) => Some(v),
            Err(why) => {
                self.problem(key, why);
                None
            }
        }
    }

    /// Reads the layered table as data. A structural problem (an unknown key, a value of the
    /// wrong type) is recorded and its key removed, and the table is read again, so that every
    /// such problem is reported, not only the first.
    fn data(&mut self, root: toml::Table) -> Option<file::File> {
        let mut value = toml::Value::Table(root);
        for _ in 0..256 {
            let e = match serde_path_to_error::deserialize::<_, file::File>(value.clone()) {
                Ok(data) => return Some(data),
                Err(e) => e,
            };
            let path = e.path().to_string();
            let message = e.inner().message().to_owned();
            let (key, message) = describe(&path, &message, &value);
            self.problem(&key, message);
            if !remove(&mut value, &key) && !remove(&mut value, &path) {
                return None;
            }
        }
        None
    }
}

/// `value` unless it is missing or blank, else `default`.
pub(crate) fn or_default(value: Option<String>, default: &str) -> String {
    value
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// Whether `url` names a loopback host (`localhost`, 127.0.0.0/8, `::1`).
pub(crate) fn is_loopback_host(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Turns serde's message about the value at `path` into the key it concerns and our wording.
fn describe(path: &str, message: &str, root: &toml::Value) -> (String, String) {
    let quoted: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    let join = |parent: &str, k: &str| {
        if parent.is_empty() || parent == "." {
            k.to_owned()
        } else if parent == k || parent.ends_with(&format!(".{k}")) {
            parent.to_owned()
        } else {
            format!("{parent}.{k}")
        }
    };
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let field = quoted.first().copied().unwrap_or("");
        let key = join(path, field);
        let parent = key.strip_suffix(field).unwrap_or("").trim_end_matches('.');
        let known: Vec<&str> = quoted.iter().skip(1).copied().collect();
        let known = if rest.contains("there are no fields") || known.is_empty() {
            "none".to_owned()
        } else {
            known.join(", ")
        };
        let section = if parent.is_empty() {
            "known".to_owned()
        } else {
            let parent = parent.split('[').next().unwrap_or(parent);
            format!("known keys in [{parent}]")
        };
        return (key, format!("unknown key ({section}: {known})"));
    }
    if message.starts_with("unknown variant ") {
        let kind = quoted.first().copied().unwrap_or("");
        return (
            path.to_owned(),
            format!(
                "unknown source type {kind:?} (known: {})",
                file::SourceSpec::KINDS.join(", ")
            ),
        );
    }
    if message == "missing field `type`" {
        return (
            join(path, "type"),
            format!(
                "missing: every source needs type = one of {}",
                file::SourceSpec::KINDS.join(", ")
            ),
        );
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        let (got, expected) = rest.split_once(", expected ").unwrap_or((rest, "?"));
        if path == "role" && got.starts_with("map") {
            return (
                path.to_owned(),
                "must be an array of tables: write [[role]], not [role]".to_owned(),
            );
        }
        // Inside a source (a tagged enum) serde does not say which key: find a key of the
        // type it complained about.
        let key = match lookup(root, path) {
            Some(toml::Value::Table(t)) if path.starts_with("source.") => t
                .iter()
                .find(|(_, v)| toml_kind(v).is_some_and(|k| got.starts_with(k)))
                .map(|(k, _)| format!("{path}.{k}"))
                .unwrap_or_else(|| path.to_owned()),
            _ => path.to_owned(),
        };
        return (key, format!("must be {expected}, got {got}"));
    }
    (path.to_owned(), message.to_owned())
}

fn toml_kind(v: &toml::Value) -> Option<&'static str> {
    Some(match v {
        toml::Value::String(_) => "string",
        toml::Value::Integer(_) => "integer",
        toml::Value::Float(_) => "floating point",
        toml::Value::Boolean(_) => "boolean",
        toml::Value::Array(_) => "sequence",
        toml::Value::Table(_) => "map",
        toml::Value::Datetime(_) => return None,
    })
}

/// Splits `a.b[2].c` into segments.
fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            out.push(Segment::Key(&rest[..i]));
            rest = &rest[i..];
            // `[N]` indexes; anything else (a key that itself holds brackets) ends the part.
            while let Some(inner) = rest.strip_prefix('[') {
                let Some(end) = inner.find(']') else { break };
                if let Ok(n) = inner[..end].parse() {
                    out.push(Segment::Index(n));
                }
                rest = &inner[end + 1..];
            }
        } else {
            out.push(Segment::Key(rest));
        }
    }
    out
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn lookup<'v>(root: &'v toml::Value, path: &str) -> Option<&'v toml::Value> {
    let mut v = root;
    for s in segments(path) {
        v = match s {
            Segment::Key(k) => v.as_table()?.get(k)?,
            Segment::Index(i) => v.as_array()?.get(i)?,
        };
    }
    Some(v)
}

/// Removes the value at `path`; whether there was one.
fn remove(root: &mut toml::Value, path: &str) -> bool {
    let segs = segments(path);
    let Some((last, parents)) = segs.split_last() else {
        return false;
    };
    let mut v = root;
    for s in parents {
        let next = match s {
            Segment::Key(k) => v.as_table_mut().and_then(|t| t.get_mut(*k)),
            Segment::Index(i) => v.as_array_mut().and_then(|a| a.get_mut(*i)),
        };
        match next {
            Some(n) => v = n,
            None => return false,
        }
    }
    match last {
        Segment::Key(k) => v.as_table_mut().and_then(|t| t.remove(*k)).is_some(),
        Segment::Index(i) => match v.as_array_mut() {
            // Keep the indexes of the other entries: replace with an empty table.
            Some(a) if *i < a.len() => {
                a[*i] = toml::Value::Table(toml::Table::new());
                true
            }
            _ => false,
        },
    }
}

/// Records every key path of `table` (`server.listen`, `role[0].arn`).
fn collect_keys(table: &toml::Table, prefix: &str, out: &mut HashSet<String>) {
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => collect_keys(t, &path, out),
            toml::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let toml::Value::Table(t) = item {
                        let item_path = format!("{path}[{i}]");
                        collect_keys(t, &item_path, out);
                        out.insert(item_path);
                    }
                }
            }
            _ => {}
        }
        out.insert(path);
    }
}

/// The six parts of an ARN: `arn`, partition, service, region, account, resource.
pub fn split_arn(arn: &str) -> Option<[&str; 6]> {
    let mut parts = arn.splitn(6, ':');
    let mut out = [""; 6];
    for slot in &mut out {
        *slot = parts.next()?;
    }
    (out[0] == "arn").then_some(out)
}

/// The account id of an IAM role ARN, if `arn` is one.
pub fn parse_role_arn(arn: &str) -> Option<String> {
    let [_, partition, service, region, account, resource] = split_arn(arn)?;
    if service != "iam" || !region.is_empty() {
        return None;
    }
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
    fn key_paths_with_brackets_in_names_do_not_panic() {
        for path in [
            "a[0]]",
            "a[]",
            "a[x]",
            "source.a]b",
            "[",
            "]",
            "a[0][1].b",
            "a.[0",
        ] {
            let _ = segments(path);
        }
        let mut v = toml::Value::Table(toml::Table::new());
        assert!(!remove(&mut v, "x[1]]"));
        let config = Config::parse(
            Some(("[source.\"x[1]]\"]\ntype = \"file\"\npat = 1\n", "t.toml")),
            &Overrides::default(),
            &HashMap::new(),
        );
        assert!(config.is_err());
    }

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
