//! Configuration: one TOML file, then `STS_SIDECAR_*` variables, then flags, parsed once into a
//! typed [`Config`]. Nothing is bound or fetched here; the only file read is the config file
//! itself.
//!
//! Data first, in three steps:
//! 1. [`file`] reads the TOML as typed sections (unknown keys and values of the wrong type
//!    reported with their key, never a reason to stop);
//! 2. [`flags`] turns flags and variables into typed values with their origin (clap's parsers
//!    for both);
//! 3. [`build`] writes them over the file's values (flags are the shorthand for the first role
//!    and its source), then checks everything into the typed [`Config`]: defaults, ranges,
//!    addresses, URLs, templates, which source each role uses.
//!
//! Every problem is reported at once, each with the key, variable or flag it came from.
//!
//! Environment variables read (all through [`Env`], so tests never touch the process
//! environment):
//!
//! | variable | meaning |
//! |---|---|
//! | `STS_SIDECAR_<FLAG>` | any flag, upper-cased with `_`, e.g. `STS_SIDECAR_ROLE_ARN`, `STS_SIDECAR_CONFIG` |
//! | `CF_INSTANCE_CERT`, `CF_INSTANCE_KEY` | default certificate and key files (set by CF) |
//! | `VCAP_APPLICATION`, `CF_INSTANCE_INDEX`, `CF_INSTANCE_GUID` | template values (set by CF) |
//! | `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` | the authorization token file, unless `--auth-token-file` names one |
//! | `AWS_CONTAINER_AUTHORIZATION_TOKEN` | the authorization token, unless a token file is set |
//! | `AWS_REGION`, `AWS_DEFAULT_REGION` | default STS region |
//! | `AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL` | default STS endpoint (read by aws-config) |
//! | `AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_ROLE_ARN`, `AWS_ROLE_SESSION_NAME` | Kubernetes IRSA: with no other source, the default role's token file, role and session name |

mod audiences;
mod build;
mod cf;
mod chain;
pub use crate::backend::MAX_CHAINED_SECS;
mod file;
pub mod flags;
pub mod issuer;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::checker::Problem;
pub use crate::env::{Env, ProcessEnv};
pub use flags::{CommonFlags, Overrides, ServerFlags};

use crate::backend::StsSettings;
use crate::backend::roles_anywhere;
use crate::checker::Checker;
use crate::listener::Limits;
use crate::server::AuthToken;
use crate::token;

/// Every variable of the namespace sts-sidecar reads, whichever subcommand reads it (the
/// sidecar's flags, the issuer's, and the few that are not flags).
pub(crate) fn known_variables() -> Vec<String> {
    let mut names: Vec<String> = [flags::command(), issuer::command()]
        .iter()
        .flat_map(|c| {
            c.get_arguments()
                .filter_map(|a| a.get_long())
                .map(flags::env_name)
        })
        .chain(flags::OTHER_VARS.iter().map(|v| (*v).to_owned()))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The prefix of flag variables (`STS_SIDECAR_ROLE_ARN` for `--role-arn`).
pub const ENV_PREFIX: &str = "STS_SIDECAR_";
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
/// The file the app's SDK reads the authorization token from: the sidecar's token file too,
/// unless `--auth-token-file` names another (as in the SDKs, the file wins over the variable).
pub const ENV_AUTH_TOKEN_FILE: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE";
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
/// The IRSA token file variable (set by the EKS pod identity webhook).
pub const ENV_WEB_IDENTITY_TOKEN_FILE: &str = "AWS_WEB_IDENTITY_TOKEN_FILE";
/// The IRSA role variable.
pub const ENV_ROLE_ARN: &str = "AWS_ROLE_ARN";
/// The IRSA session name variable (optional).
pub const ENV_ROLE_SESSION_NAME: &str = "AWS_ROLE_SESSION_NAME";

/// Where the credentials endpoint listens by default.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 61679);
/// Where the admin endpoint listens by default.
pub const DEFAULT_ADMIN_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 61680);
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

/// Where the authorization token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthSource {
    /// A fixed token (from `AWS_CONTAINER_AUTHORIZATION_TOKEN`).
    Fixed(AuthToken),
    /// A file, created with a random token if missing.
    File(PathBuf),
    /// A fresh random token only this process knows (`exec`, `credential-process`).
    Generated(AuthToken),
    /// None configured: only `check`, which serves nothing, accepts that.
    Unset,
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

/// What `/v1/identity-token` serves: tokens from one source, for these audiences only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityTokensConfig {
    /// The source's name.
    pub source: String,
    /// The audiences allowed.
    pub audiences: Vec<String>,
    /// Files kept holding a token: (path, audience). Azure's federated token file.
    pub files: Vec<(std::path::PathBuf, String)>,
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
    RolesAnywhere(Box<roles_anywhere::Settings>),
    /// STS `AssumeRole` with the credentials of the role `via` (role chaining).
    Chained {
        /// The alias of the first link.
        via: String,
        /// The external ID the role's trust policy asks for.
        external_id: Option<ExternalId>,
    },
}

pub use crate::backend::ExternalId;

impl RoleConfig {
    /// The identity source the role's token comes from (web-identity roles).
    pub fn source(&self) -> Option<&str> {
        match &self.backend {
            RoleBackend::WebIdentity { source } => Some(source),
            RoleBackend::RolesAnywhere(_) | RoleBackend::Chained { .. } => None,
        }
    }

    /// The backend's kind, for logs: `sts` or `roles-anywhere`.
    pub fn kind(&self) -> &'static str {
        match &self.backend {
            RoleBackend::WebIdentity { .. } => "sts",
            RoleBackend::RolesAnywhere(_) => "roles-anywhere",
            RoleBackend::Chained { .. } => "sts-chained",
        }
    }

    /// What the backend needs to know of the role.
    pub fn assume(&self) -> crate::backend::Role {
        crate::backend::Role {
            arn: self.arn.clone(),
            account_id: self.account_id.clone(),
            session_name: self.session_name.clone(),
            duration: self.duration,
        }
    }
}

/// One named identity source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    /// The name (`[source.NAME]`; `token-service` for `[token_service]`).
    pub name: String,
    /// Its kind and settings.
    pub settings: token::Settings,
}

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The credentials endpoint's address.
    pub listen: SocketAddr,
    /// Where `listen` came from (a flag, a variable, a key, or `the default`), for a bind error.
    pub listen_origin: String,
    /// The admin endpoint's address.
    pub admin_listen: SocketAddr,
    /// Where `admin_listen` came from.
    pub admin_listen_origin: String,
    /// Whether non-loopback addresses were allowed.
    pub allow_non_loopback: bool,
    /// Whether the IMDSv2 emulation is on.
    pub imds: bool,
    /// Whether IMDSv1 (GETs without a session token) is allowed too.
    pub imds_v1: bool,
    /// The authorization token.
    pub auth: AuthSource,
    /// The mode of a token file the sidecar creates (0600 unless asked).
    pub auth_token_file_mode: u32,
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
    /// The identity-token endpoint's source and audiences, when any are configured.
    pub identity_tokens: Option<IdentityTokensConfig>,
    /// Things that work but are probably not what was meant; logged at start.
    pub warnings: Vec<String>,
}

impl Config {
    /// The source named `name`.
    pub fn source(&self, name: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.name == name)
    }
}

/// Every problem found, reported at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The problems, in the order found.
    pub problems: Vec<Problem>,
}

impl Error {
    fn one(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            problems: vec![Problem {
                key: key.into(),
                message: message.into(),
            }],
        }
    }

    /// Every problem on one line (for `credential-process`, whose caller shows one line).
    pub fn one_line(&self) -> String {
        let problems: Vec<String> = self
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.key, p.message))
            .collect();
        format!("invalid configuration: {}", problems.join("; "))
    }
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
    /// variables and the flags, and checks everything.
    pub fn load(flags: &Overrides, env: &dyn Env) -> Result<Config, Error> {
        let text = read_file(flags, env)?;
        Config::parse(
            text.as_ref().map(|(t, n)| (t.as_str(), n.as_str())),
            flags,
            env,
        )
    }

    /// Parses `file` (its text and a name for messages), then the variables and the flags.
    pub fn parse(
        file: Option<(&str, &str)>,
        flags: &Overrides,
        env: &dyn Env,
    ) -> Result<Config, Error> {
        let (table, file_name) = match file {
            None => (toml::Table::new(), ""),
            Some((text, name)) => match file::parse(text, name) {
                Ok(t) => (t, name),
                Err(problem) => {
                    let mut problems = flags.problems.clone();
                    problems.push(problem);
                    return Err(Error { problems });
                }
            },
        };
        let mut checker = Checker::new(env, file_name, file::key_paths(&table));
        for p in &flags.problems {
            checker.problem_at(p.key.clone(), p.message.clone());
        }
        let data = file::read(&mut checker, table);
        let config = build::build(&mut checker, data, flags);
        let (problems, warnings) = checker.finish();
        match config {
            Some(mut c) if problems.is_empty() => {
                c.warnings = warnings;
                Ok(c)
            }
            _ => Err(Error { problems }),
        }
    }
}

/// Reads the file named by `--config` or `STS_SIDECAR_CONFIG`: its text and its name.
fn read_file(flags: &Overrides, env: &dyn Env) -> Result<Option<(String, String)>, Error> {
    let var = flags::env_name("config");
    let (path, origin) = match (&flags.common.config, env.var(&var)) {
        (Some(path), _) => (
            path.clone(),
            flags
                .origins
                .get("config")
                .map_or_else(|| "--config".to_owned(), ToString::to_string),
        ),
        (None, Some(path)) if !path.trim().is_empty() => (PathBuf::from(path), var),
        (None, _) => return Ok(None),
    };
    let path = &path;
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some((t, path.display().to_string()))),
        Err(e) => Err(Error::one(
            origin,
            format!("cannot read {}: {e}", path.display()),
        )),
    }
}

/// The admin address `serve` would listen on, from the flag, the variable or the config file,
/// without checking the rest of the configuration (for `check --wait`).
pub fn admin_listen(flags: &Overrides, env: &dyn Env) -> Result<SocketAddr, Error> {
    if let Some(addr) = flags.server.admin_listen {
        return Ok(addr);
    }
    let Some((text, name)) = read_file(flags, env)? else {
        return Ok(DEFAULT_ADMIN_LISTEN);
    };
    let mut table = file::parse(&text, &name).map_err(|p| Error { problems: vec![p] })?;
    let mut checker = Checker::new(env, &name, file::key_paths(&table));
    let server: file::Server = checker.section("server", table.remove("server"));
    let addr = checker.value("server.admin_listen", &server.admin_listen);
    let (problems, _) = checker.finish();
    match (addr, problems.is_empty()) {
        (addr, true) => Ok(addr.unwrap_or(DEFAULT_ADMIN_LISTEN)),
        (_, false) => Err(Error { problems }),
    }
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
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn key_names_holding_brackets_do_not_panic() {
        let config = Config::parse(
            Some(("[source.\"x[1]]\"]\ntype = \"file\"\npat = 1\n", "t.toml")),
            &Overrides::default(),
            &HashMap::new(),
        );
        assert!(config.is_err());
    }

    #[test]
    fn sanitizes_session_names() {
        assert_eq!(sanitize_session_name("my app-0"), "my-app-0");
        assert_eq!(sanitize_session_name("ok_name+=,.@-"), "ok_name+=,.@-");
        assert_eq!(sanitize_session_name(&"x".repeat(80)).len(), 64);
        assert_eq!(sanitize_session_name("a"), "a-sts-sidecar");
        assert_eq!(sanitize_session_name("ümlaut"), "-mlaut");
    }

    #[test]
    fn a_blank_role_arn_is_refused_not_dropped() {
        // Found by the config fuzz target: `arn = ""` was dropped without a word, and a config
        // whose only role had it was accepted with no role at all.
        let mut env = HashMap::new();
        env.insert(ENV_AUTH_TOKEN.to_owned(), "0123456789abcdef0123".to_owned());
        env.insert(
            "CF_INSTANCE_CERT".to_owned(),
            "/etc/cf/instance.crt".to_owned(),
        );
        env.insert(
            "CF_INSTANCE_KEY".to_owned(),
            "/etc/cf/instance.key".to_owned(),
        );
        for arn in ["\"\"", "\"   \""] {
            let text = format!(
                "[token_service]\nurl = \"https://cits.example.com\"\n[[role]]\narn = {arn}\n"
            );
            let e = Config::parse(Some((&text, "t.toml")), &Overrides::default(), &env)
                .expect_err("a role without an ARN");
            assert!(
                e.to_string().contains("role[0].arn in t.toml: no role ARN"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_broken_file_names_the_line() {
        let e = Config::parse(
            Some((
                "[server]\nlisten = \"127.0.0.1:1\"\nadmin_listen = \n",
                "f.toml",
            )),
            &Overrides::default(),
            &HashMap::new(),
        )
        .expect_err("broken");
        assert!(
            e.to_string()
                .contains("f.toml: not valid TOML at line 3, column"),
            "{e}"
        );
    }
}
