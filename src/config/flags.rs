//! Flags and `STS_SIDECAR_*` variables, as typed values with where each came from.
//!
//! Every flag here is also a variable: `--role-arn` is `STS_SIDECAR_ROLE_ARN`, `--imds` is
//! `STS_SIDECAR_IMDS=true`. A variable is parsed by its flag's own clap parser, so a value means
//! the same in both places and has the same type. A flag wins over its variable, both win over
//! the file. A variable of our namespace that names no flag is an error naming the closest known
//! one (a misspelled variable would otherwise be silently ignored).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Command, FromArgMatches};

use super::{ENV_PREFIX, Problem};
use crate::checker::{Origin, Origins, closest};
use crate::env::Env;
use crate::token;

/// Variables of our namespace that are not flags: read where they are used.
pub(super) const OTHER_VARS: &[&str] = &[
    crate::telemetry::ENV_LOG,
    crate::telemetry::ENV_LOG_FORMAT,
    token::oidc::ENV_CLIENT_SECRET,
    crate::hardening::ENV_ALLOW_CORE_DUMPS,
    // Read by the Cloud Foundry buildpack at staging (buildpack/bin/supply); the sidecar sees
    // the app's environment, so they must not be refused as unknown.
    "STS_SIDECAR_BUILDPACK_MEMORY_MB",
    "STS_SIDECAR_BUILDPACK_PROCESS_TYPES",
];

/// The flags every subcommand shares: the config file, the identity source, the roles, STS.
#[derive(Debug, Clone, Default, Args)]
#[group(skip)]
pub struct CommonFlags {
    /// TOML config file (see config/sts-sidecar.toml)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the identity token comes from (default token-service). Usually implied by the
    /// source's own flags
    #[arg(long, value_name = "KIND")]
    pub source: Option<token::KindName>,
    /// The identity sources' flags.
    #[command(flatten)]
    pub sources: token::Flags,
    /// IAM Roles Anywhere trust anchor: with --profile-arn, the role's credentials come from
    /// CreateSession signed with --cert-file/--key-file, no identity token needed
    #[arg(long, value_name = "ARN")]
    pub trust_anchor_arn: Option<String>,
    /// IAM Roles Anywhere profile (same region as the trust anchor)
    #[arg(long, value_name = "ARN")]
    pub profile_arn: Option<String>,
    /// Roles Anywhere endpoint URL [default: $AWS_ENDPOINT_URL_ROLESANYWHERE, else the trust
    /// anchor's regional endpoint]
    #[arg(long, value_name = "URL")]
    pub rolesanywhere_endpoint: Option<String>,
    /// Timeout of one Roles Anywhere call, 1-120 seconds [default: 10]
    #[arg(long, value_name = "SECS", value_parser = whole_number, hide_short_help = true)]
    pub rolesanywhere_timeout_secs: Option<u64>,
    /// Instance identity certificate chain [default: $CF_INSTANCE_CERT]
    #[arg(long, value_name = "FILE")]
    pub cert_file: Option<PathBuf>,
    /// Instance identity private key [default: $CF_INSTANCE_KEY]
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// IAM role to assume; may use {org} {space} {app} {org_guid} {space_guid} {app_guid}
    /// {instance_index} {instance_guid} from VCAP_APPLICATION
    #[arg(long, value_name = "ARN")]
    pub role_arn: Option<String>,
    /// STS session name (same placeholders; made valid for STS)
    /// [default: {app}-{instance_index} on CF, else sts-sidecar]
    #[arg(long, value_name = "NAME")]
    pub role_session_name: Option<String>,
    /// Session duration in seconds, 900-43200, at most the role's maximum [default: 3600]
    #[arg(long, value_name = "SECS", value_parser = whole_number)]
    pub duration: Option<u64>,
    /// Reach --role-arn through this role (role chaining, e.g. into another account): assume
    /// ARN with the identity first, then --role-arn with AssumeRole and its credentials; the
    /// first link is also served, as the role `via`. AWS caps a chained session at one hour
    #[arg(long, value_name = "ARN")]
    pub via_role_arn: Option<String>,
    /// The external ID the second role's trust policy asks for (sts:ExternalId) [role chaining]
    #[arg(long, value_name = "ID")]
    pub external_id: Option<String>,
    /// Serve identity tokens for AUD at /v1/identity-token?audience=AUD (Google Cloud, Azure,
    /// Vault); repeat it or separate with commas. Only these audiences are served
    #[arg(long, value_name = "AUD", value_delimiter = ',')]
    pub token_audience: Option<Vec<String>>,
    /// Keep FILE holding the identity token for --azure-audience, replaced whole from half its
    /// life on: Azure's workload identity reads it from AZURE_FEDERATED_TOKEN_FILE
    #[arg(long, value_name = "FILE")]
    pub azure_token_file: Option<PathBuf>,
    /// The audience of --azure-token-file [default: api://AzureADTokenExchange]
    #[arg(long, value_name = "AUD")]
    pub azure_audience: Option<String>,
    /// STS region [default: $AWS_REGION, $AWS_DEFAULT_REGION, us-east-1]
    #[arg(long, value_name = "REGION")]
    pub sts_region: Option<String>,
    /// STS endpoint URL [default: $AWS_ENDPOINT_URL_STS, else the regional endpoint]
    #[arg(long, value_name = "URL")]
    pub sts_endpoint: Option<String>,
    /// Timeout of one STS call, 1-120 seconds [default: 10]
    #[arg(long, value_name = "SECS", value_parser = whole_number, hide_short_help = true)]
    pub sts_timeout_secs: Option<u64>,
}

/// The flags of the listeners (`serve` and `check`).
#[derive(Debug, Clone, Default, Args)]
#[group(skip)]
pub struct ServerFlags {
    /// Credentials endpoint address, loopback only [default: 127.0.0.1:61679]
    #[arg(long, value_name = "ADDR", value_parser = address)]
    pub listen: Option<SocketAddr>,
    /// Admin endpoint address (/healthz /ready /metrics /status) [default: 127.0.0.1:61680]
    #[arg(long, value_name = "ADDR", value_parser = address)]
    pub admin_listen: Option<SocketAddr>,
    /// Read the authorization token from FILE (created with a random token if missing)
    /// instead of $AWS_CONTAINER_AUTHORIZATION_TOKEN
    #[arg(long, value_name = "FILE")]
    pub auth_token_file: Option<PathBuf>,
    /// Mode of the token file when the sidecar creates it: 0600, or 0640 to let the file's
    /// group read it too (on Kubernetes: the pod's fsGroup, shared with the app container)
    /// [default: 0600]
    #[arg(long, value_name = "MODE", value_parser = token_file_mode, hide_short_help = true)]
    pub auth_token_file_mode: Option<String>,
    /// Also emulate IMDSv2 on the credentials listener, for code that only knows the EC2
    /// metadata service (AWS_EC2_METADATA_SERVICE_ENDPOINT=http://<listen address>)
    #[arg(long, value_name = "BOOL", value_parser = boolean, num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub imds: Option<bool>,
    /// Also allow IMDSv1 (GETs without a session token); needs --imds
    #[arg(long, value_name = "BOOL", value_parser = boolean, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", hide_short_help = true)]
    pub imds_v1: Option<bool>,
    /// Allow non-loopback listen addresses (credentials then leave the machine)
    #[arg(long, value_name = "BOOL", value_parser = boolean, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", hide_short_help = true)]
    pub allow_non_loopback: Option<bool>,
    /// Open connections per listener at most; at the cap a new one takes the slot of the oldest
    /// waiting one [default: 256]
    #[arg(long, value_name = "N", value_parser = whole_number, hide_short_help = true)]
    pub max_connections: Option<u64>,
    /// Seconds a client may take to send a request's headers [default: 5]
    #[arg(long, value_name = "SECS", value_parser = whole_number, hide_short_help = true)]
    pub header_read_timeout_secs: Option<u64>,
    /// Milliseconds a request waits for the first credentials, 0-10000 [default: 1500]
    #[arg(long, value_name = "MS", value_parser = whole_number, hide_short_help = true)]
    pub cold_start_wait_ms: Option<u64>,
    /// Seconds to keep serving from cache after SIGTERM, 0-300 [default: 5]
    #[arg(long, value_name = "SECS", value_parser = whole_number, hide_short_help = true)]
    pub drain_secs: Option<u64>,
}

/// The modes a token file may be created with: readable by its owner, and perhaps its group;
/// never writable or readable by anyone else.
pub const TOKEN_FILE_MODES: [&str; 4] = ["0600", "0640", "0400", "0440"];

/// A token file mode, as written (`0640`; the leading zero may be left out).
pub fn token_file_mode(s: &str) -> Result<String, String> {
    let s = s.trim();
    let normal = format!("{:0>4}", s);
    if TOKEN_FILE_MODES.contains(&normal.as_str()) {
        Ok(normal)
    } else {
        Err(format!(
            "must be one of {} (the owner reads it, perhaps its group; nobody else), got {s:?}",
            TOKEN_FILE_MODES.join(", ")
        ))
    }
}

/// A whole number (`u64`).
pub fn whole_number(s: &str) -> Result<u64, String> {
    s.trim()
        .parse()
        .map_err(|_| "must be a whole number".to_owned())
}

/// An `IP:PORT` address.
pub fn address(s: &str) -> Result<SocketAddr, String> {
    s.trim()
        .parse()
        .map_err(|_| "must be IP:PORT, e.g. 127.0.0.1:61679".to_owned())
}

/// `true` or `false`, nothing else (`yes` is refused, not guessed).
pub fn boolean(s: &str) -> Result<bool, String> {
    match s.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("must be true or false".to_owned()),
    }
}

/// The flags given (on the command line, or as `STS_SIDECAR_*` variables), typed, with where
/// each came from.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// The shared flags.
    pub common: CommonFlags,
    /// The listener flags.
    pub server: ServerFlags,
    /// Where each given flag came from, by argument id.
    pub origins: Origins,
    /// Variables that could not be read (reported with the configuration's problems).
    pub problems: Vec<Problem>,
    /// Ignore configured authorization tokens and use a fresh random one (`exec`,
    /// `credential-process`: nothing outside this process needs to know it).
    pub fresh_auth_token: bool,
    /// Accept a configuration without an authorization token (`check`: it serves nothing).
    pub auth_optional: bool,
}

/// Every flag that is also a variable, as one clap command.
pub(crate) fn command() -> Command {
    let command = Command::new("sts-sidecar")
        .no_binary_name(true)
        .args_override_self(true);
    ServerFlags::augment_args(CommonFlags::augment_args(command))
}

/// `STS_SIDECAR_<FLAG>` for a flag's long name.
pub fn env_name(long: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        long.replace('-', "_").to_ascii_uppercase()
    )
}

/// Every variable the flags can be given by.
pub fn env_names() -> Vec<String> {
    command()
        .get_arguments()
        .filter_map(|a| a.get_long())
        .map(env_name)
        .collect()
}

/// A command's flags read from their `STS_SIDECAR_*` variables.
pub(crate) struct EnvLayer {
    /// The flags the variables give (`None` when they could not be read together).
    pub(crate) matches: Option<ArgMatches>,
    /// Variables that are wrong, or that name no flag of any subcommand.
    pub(crate) problems: Vec<Problem>,
}

/// Reads the variables of `command`'s flags, each with its flag's own parser; a variable of our
/// namespace that is none of them and not in `known` (every subcommand's) is a problem.
pub(crate) fn env_layer(command: &Command, env: &dyn Env, known: &[String]) -> EnvLayer {
    let mut problems = Vec::new();
    let mut argv: Vec<OsString> = Vec::new();
    let mut vars = env.vars();
    vars.sort();
    for (var, value) in vars {
        if !var.starts_with(ENV_PREFIX) || OTHER_VARS.contains(&var.as_str()) {
            continue;
        }
        let arg = command
            .get_arguments()
            .find(|a| a.get_long().is_some_and(|l| env_name(l) == var));
        let Some(arg) = arg else {
            if !known.contains(&var) {
                let hint = closest(&var, known.iter().map(String::as_str))
                    .map(|n| format!(" (did you mean {n}?)"))
                    .unwrap_or_default();
                problems.push(Problem {
                    key: var.clone(),
                    message: format!("is not a variable sts-sidecar knows{hint}"),
                });
            }
            continue;
        };
        if value.trim().is_empty() {
            continue;
        }
        let Some(long) = arg.get_long() else { continue };
        // Each variable alone first, so that a bad one is named and the others still count.
        let token: OsString = format!("--{long}={value}").into();
        match command.clone().try_get_matches_from([token.clone()]) {
            Ok(_) => argv.push(token),
            Err(e) => problems.push(Problem {
                key: var.clone(),
                message: format!("invalid value {value:?}: {}", reason(&e)),
            }),
        }
    }
    let matches = match command.clone().try_get_matches_from(argv) {
        Ok(m) => Some(m),
        Err(e) => {
            problems.push(Problem {
                key: format!("{ENV_PREFIX}*"),
                message: reason(&e),
            });
            None
        }
    };
    EnvLayer { matches, problems }
}

/// Where each of `command`'s flags came from: typed on the command line (`cli`), or a variable.
pub(crate) fn origins(command: &Command, cli: &ArgMatches, env: Option<&ArgMatches>) -> Origins {
    let mut origins = Origins::default();
    for arg in command.get_arguments() {
        let (id, Some(long)) = (arg.get_id().as_str(), arg.get_long()) else {
            continue;
        };
        let given = |m: &ArgMatches| {
            m.try_contains_id(id).unwrap_or(false)
                && m.value_source(id) == Some(ValueSource::CommandLine)
        };
        if given(cli) {
            origins.insert(id, Origin::Flag(format!("--{long}")));
        } else if env.is_some_and(given) {
            origins.insert(id, Origin::Env(env_name(long)));
        }
    }
    origins
}

impl Overrides {
    /// The flags of a subcommand's command line (`cli`) over the `STS_SIDECAR_*` variables.
    pub fn new(cli: &ArgMatches, env: &dyn Env) -> Overrides {
        let mut command = command();
        command.build();
        let EnvLayer {
            matches: from_env,
            mut problems,
        } = env_layer(&command, env, &super::known_variables());
        let (mut common, mut server) = match &from_env {
            Some(m) => (
                CommonFlags::from_arg_matches(m).unwrap_or_default(),
                ServerFlags::from_arg_matches(m).unwrap_or_default(),
            ),
            None => Default::default(),
        };
        let origins = origins(&command, cli, from_env.as_ref());
        let defines = |id: &str| cli.try_contains_id(id).is_ok();
        if defines("role_arn")
            && let Err(e) = common.update_from_arg_matches(cli)
        {
            problems.push(Problem {
                key: "the command line".to_owned(),
                message: reason(&e),
            });
        }
        if defines("auth_token_file")
            && let Err(e) = server.update_from_arg_matches(cli)
        {
            problems.push(Problem {
                key: "the command line".to_owned(),
                message: reason(&e),
            });
        }
        Overrides {
            common,
            server,
            origins,
            problems,
            fresh_auth_token: false,
            auth_optional: false,
        }
    }

    /// The flags of `args` (as typed after `serve`) over the variables: for tests and tools
    /// that hold a command line as strings.
    pub fn from_args<I, S>(args: I, env: &dyn Env) -> Result<Overrides, clap::Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString> + Clone,
    {
        let matches = command().try_get_matches_from(args)?;
        Ok(Overrides::new(&matches, env))
    }

    /// Sets a listener address as if a flag gave it (`exec` picks ephemeral ports).
    pub fn set_listen(&mut self, listen: SocketAddr, admin_listen: SocketAddr) {
        self.server.listen = Some(listen);
        self.server.admin_listen = Some(admin_listen);
        self.origins
            .insert("listen", Origin::Flag("--listen".to_owned()));
        self.origins
            .insert("admin_listen", Origin::Flag("--admin-listen".to_owned()));
    }
}

/// Why clap refused a value, in words: the parser's own reason, or the values allowed.
pub(crate) fn reason(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    if let Some(source) = std::error::Error::source(e) {
        return source.to_string();
    }
    if let Some(ContextValue::Strings(valid)) = e.get(ContextKind::ValidValue) {
        return format!("must be one of {}", valid.join(", "));
    }
    e.kind().to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> HashMap<String, String> {
        vars.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn flags_win_over_variables_and_each_value_knows_its_origin() {
        let e = env(&[
            ("STS_SIDECAR_DURATION", "1800"),
            ("STS_SIDECAR_ROLE_ARN", "arn:aws:iam::123456789012:role/env"),
            ("STS_SIDECAR_IMDS", "true"),
        ]);
        let o = Overrides::from_args(["--duration", "2700", "--listen", "127.0.0.1:1"], &e)
            .expect("parses");
        assert_eq!(o.common.duration, Some(2700));
        assert_eq!(
            o.common.role_arn.as_deref(),
            Some("arn:aws:iam::123456789012:role/env")
        );
        assert_eq!(o.server.imds, Some(true));
        assert_eq!(
            o.origins.get("duration"),
            Some(&Origin::Flag("--duration".into()))
        );
        assert_eq!(
            o.origins.get("role_arn"),
            Some(&Origin::Env("STS_SIDECAR_ROLE_ARN".into()))
        );
        assert!(o.problems.is_empty(), "{:?}", o.problems);
    }

    #[test]
    fn variables_of_the_wrong_type_and_unknown_variables_are_problems() {
        let e = env(&[
            ("STS_SIDECAR_IMDS", "yes"),
            ("STS_SIDECAR_DURATION", "an hour"),
            ("STS_SIDECAR_ROLE_ARM", "arn:aws:iam::123456789012:role/x"),
            ("STS_SIDECAR_LOG", "debug"),
        ]);
        let o = Overrides::from_args(Vec::<String>::new(), &e).expect("parses");
        let text: Vec<String> = o
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.key, p.message))
            .collect();
        assert_eq!(
            text,
            [
                "STS_SIDECAR_DURATION: invalid value \"an hour\": must be a whole number",
                "STS_SIDECAR_IMDS: invalid value \"yes\": must be true or false",
                "STS_SIDECAR_ROLE_ARM: is not a variable sts-sidecar knows (did you mean \
                 STS_SIDECAR_ROLE_ARN?)",
            ]
        );
        assert_eq!(o.server.imds, None);
    }

    #[test]
    fn a_flag_given_twice_takes_the_last_value() {
        // A wrapper (a buildpack's start command) passes defaults; the user's flags come later.
        let o = Overrides::from_args(["--duration", "900", "--duration", "1800"], &env(&[]))
            .expect("parses");
        assert_eq!(o.common.duration, Some(1800));
    }

    #[test]
    fn every_flag_is_a_variable() {
        let names = env_names();
        for name in [
            "STS_SIDECAR_CONFIG",
            "STS_SIDECAR_ROLE_ARN",
            "STS_SIDECAR_TOKEN_FILE",
            "STS_SIDECAR_OIDC_CLIENT_SECRET_FILE",
            "STS_SIDECAR_AUDIENCE",
            "STS_SIDECAR_MAX_CONNECTIONS",
            "STS_SIDECAR_TOKEN_SERVICE_TIMEOUT_SECS",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} missing: {names:?}");
        }
    }
}
