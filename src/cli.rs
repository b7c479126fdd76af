//! The command line (clap derive): the subcommands and their own flags. The flags that
//! configure the sidecar are defined by the configuration ([`crate::config::flags`]); each is
//! also an `STS_SIDECAR_<FLAG>` environment variable and a key of the TOML file; flags win.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};

use crate::config::flags::{address, boolean};
use crate::config::{CommonFlags, ServerFlags};

/// Serves your app's own AWS role credentials on loopback, in the format every AWS SDK reads from
/// AWS_CONTAINER_CREDENTIALS_FULL_URI.
#[derive(Debug, Parser)]
#[command(
    name = "sts-sidecar",
    version,
    args_override_self = true,
    after_help = "Every flag is also a variable: --role-arn is STS_SIDECAR_ROLE_ARN (flags win). \
                  Logging: STS_SIDECAR_LOG (e.g. info, debug, sts_sidecar=trace) and \
                  STS_SIDECAR_LOG_FORMAT (plain or json).\n\
                  Exit codes: 0 success, 64 configuration or usage error, 1 runtime failure."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Leave the process dumpable, for debugging: by default it is marked non-dumpable (no core
    /// file, no same-user ptrace or /proc/PID/mem) and its core size limit is 0, because a dump
    /// holds the credentials [variable: STS_SIDECAR_ALLOW_CORE_DUMPS]
    #[arg(long, global = true, value_name = "BOOL", value_parser = boolean, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", hide_short_help = true)]
    pub allow_core_dumps: Option<bool>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch credentials for the configured roles, keep them fresh, and serve them
    #[command(
        long_about = "Fetch credentials for the configured roles, keep them fresh, and \
serve them on loopback.\n\nPoint the app at it with:\n  \
AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:61679/v1/credentials\n  \
AWS_CONTAINER_AUTHORIZATION_TOKEN=<the same token the sidecar uses>"
    )]
    #[command(args_override_self = true)]
    Serve(ServeArgs),
    /// Run a command with credentials from a private server on ephemeral ports
    #[command(
        long_about = "Run COMMAND with credentials. The server starts on an ephemeral \
loopback port with a fresh random token (the admin listener on another ephemeral port), waits \
for the first credentials, and runs COMMAND with AWS_CONTAINER_CREDENTIALS_FULL_URI and \
AWS_CONTAINER_AUTHORIZATION_TOKEN set and every other AWS credential variable removed. \
SIGINT, SIGTERM and SIGHUP are forwarded; the exit code is COMMAND's (128+signal if a signal \
ended it).\n\nOn Cloud Foundry a start command like\n  \
sts-sidecar exec --token-service-url URL --role-arn ARN -- java -jar app.jar\nneeds no sidecar \
entry at all; in a GitHub Actions step\n  \
sts-sidecar exec --source github-actions --role-arn ARN -- ./deploy.sh\nneeds no other setup."
    )]
    #[command(args_override_self = true)]
    Exec(ExecArgs),
    /// Print credentials as credential_process JSON, for ~/.aws/config
    #[command(
        long_about = "Print credentials as credential_process Version 1 JSON, for \
~/.aws/config:\n  [profile app]\n  credential_process = sts-sidecar credential-process\n\n\
When AWS_CONTAINER_CREDENTIALS_FULL_URI is set, the running sidecar there is asked (with \
AWS_CONTAINER_AUTHORIZATION_TOKEN or AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE); otherwise the \
exchange is done once here with the flags below. Only the JSON goes to stdout; on failure one \
line goes to stderr and the exit code is 64 for a configuration error, 1 otherwise."
    )]
    #[command(args_override_self = true)]
    CredentialProcess(CredentialProcessArgs),
    /// Diagnose the setup and print the trust policy each role needs
    #[command(
        long_about = "Diagnose the setup with exactly the settings serve would use: \
print the configuration (redacted), the authorization token's origin, each identity source's \
token claims (never the token) and the IAM trust-policy conditions filled with their values, \
then assume every role. Each failure says what to fix. Exit 0 only when every step passed.\n\n\
With --wait SECS, instead poll a running sidecar's /ready (for start scripts)."
    )]
    #[command(args_override_self = true)]
    Check(CheckArgs),
    /// Run the token service: issue JWTs to app instances that prove their identity
    #[command(
        long_about = "Run the token service: issue JWTs to Cloud Foundry app instances that \
prove their instance identity, and publish the keys that verify them \
(/.well-known/openid-configuration, /token_keys).\n\nA caller proves itself with an assertion \
signed by its instance key (the default; works behind any router), a client certificate over \
TLS (--tls-cert/--tls-key), or, only with --accept xfcc, the certificate a router puts in \
X-Forwarded-Client-Cert. Every certificate must verify to --instance-identity-ca.\n\n\
On Cloud Foundry (binary buildpack):\n  sts-sidecar issuer --issuer-url https://issuer.apps.example.com \\\n    \
--instance-identity-ca ca.pem --signing-key env:SIGNING_KEY\nlistens on $PORT. SIGHUP (or a \
changed file) re-reads keys and certificates; SIGTERM drains and stops."
    )]
    #[command(args_override_self = true)]
    Issuer(IssuerArgs),
    /// Print a shell completion script, or the man page
    #[command(
        long_about = "Print a completion script for SHELL (bash, zsh, fish, elvish, powershell), \
or with `man` the manual page (roff), generated from this binary's own flags.\n\n\
Examples:\n  sts-sidecar completions bash > /etc/bash_completion.d/sts-sidecar\n  \
sts-sidecar completions zsh > \"${fpath[1]}/_sts-sidecar\"\n  \
sts-sidecar completions man > /usr/local/share/man/man1/sts-sidecar.1"
    )]
    Completions(CompletionsArgs),
    /// Print a Google Cloud credential configuration that takes its identity from the sidecar
    #[command(
        long_about = "Print a Google Cloud credential configuration (type external_account, for \
GOOGLE_APPLICATION_CREDENTIALS) whose subject token the Google auth libraries fetch from the \
sidecar's /v1/identity-token for the workload identity pool provider's audience, with the \
sidecar's authorization token in the request's headers. Unmodified Google SDKs then exchange it \
at Google's STS (and, with --service-account, impersonate that service account).\n\n\
The sidecar must serve that audience: it is printed on stderr as the --token-audience to add.\n\n\
Example:\n  sts-sidecar gcp-credentials --project-number 123456789012 --pool cf --provider \
sts-sidecar \\\n    --service-account app@my-project.iam.gserviceaccount.com --out gcp.json\n  \
GOOGLE_APPLICATION_CREDENTIALS=gcp.json my-app"
    )]
    GcpCredentials(GcpCredentialsArgs),
}

/// Flags of `gcp-credentials`.
#[derive(Debug, Clone, Args)]
pub struct GcpCredentialsArgs {
    /// The project number (digits) that holds the workload identity pool
    #[arg(long, value_name = "NUMBER")]
    pub project_number: String,
    /// The workload identity pool's id
    #[arg(long, value_name = "ID")]
    pub pool: String,
    /// The pool's provider (the OIDC issuer registered there)
    #[arg(long, value_name = "ID")]
    pub provider: String,
    /// Impersonate this service account (without it the federated identity itself is used)
    #[arg(long, value_name = "EMAIL")]
    pub service_account: Option<String>,
    /// Where the sidecar listens [default: 127.0.0.1:61679]
    #[arg(long, value_name = "ADDR", value_parser = address)]
    pub listen: Option<SocketAddr>,
    /// The sidecar's authorization token file [default: $AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE,
    /// else the token in $AWS_CONTAINER_AUTHORIZATION_TOKEN]
    #[arg(long, value_name = "FILE")]
    pub auth_token_file: Option<std::path::PathBuf>,
    /// Write the configuration to FILE (mode 0600, replaced whole) instead of stdout: it holds
    /// the authorization token
    #[arg(long, value_name = "FILE")]
    pub out: Option<std::path::PathBuf>,
    /// Google's STS token endpoint [default: https://sts.googleapis.com/v1/token]
    #[arg(long, value_name = "URL", hide_short_help = true)]
    pub google_token_url: Option<String>,
    /// The IAM Credentials API [default: https://iamcredentials.googleapis.com]
    #[arg(long, value_name = "URL", hide_short_help = true)]
    pub google_iam_credentials_url: Option<String>,
}

/// What `completions` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompletionsFor {
    /// Bash.
    Bash,
    /// Zsh.
    Zsh,
    /// Fish.
    Fish,
    /// Elvish.
    Elvish,
    /// PowerShell.
    Powershell,
    /// The manual page (roff), for `man`.
    Man,
}

/// Flags of `completions`.
#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell, or `man`
    #[arg(value_name = "SHELL")]
    pub shell: CompletionsFor,
}

/// Flags of `issuer`.
#[derive(Debug, Clone, Args)]
pub struct IssuerArgs {
    /// The issuer's settings.
    #[command(flatten)]
    pub flags: crate::config::issuer::IssuerFlags,
    /// Instead of serving.
    #[command(subcommand)]
    pub action: Option<IssuerAction>,
}

/// What `issuer` does instead of serving.
#[derive(Debug, Clone, Subcommand)]
pub enum IssuerAction {
    /// Write the discovery document and the keys as static files and exit
    #[command(
        long_about = "Write the discovery document and the keys (JWKS) for the issuer's \
flags as static files under --out, and exit: .well-known/openid-configuration, token_keys and \
.well-known/jwks.json. Upload them to a static host at --issuer-url (a bucket, a static route), \
so that relying parties fetch the keys there and the token endpoint can stay internal; point \
the sidecars at the token endpoint with --token-service-url, and name that URL here with \
--token-url so that their assertions are accepted.\n\nExample:\n  sts-sidecar issuer publish \
--out site --issuer-url https://keys.example.com --signing-key signing.pem \\\n    \
--publish-key next.pem"
    )]
    Publish(PublishArgs),
}

/// Flags of `issuer publish`.
#[derive(Debug, Clone, Args)]
pub struct PublishArgs {
    /// The directory to write the files under (created if missing)
    #[arg(long, value_name = "DIR")]
    pub out: std::path::PathBuf,
}

/// Flags of `serve` (and of `check`, which judges the same settings).
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Where the identity and the roles come from.
    #[command(flatten)]
    pub common: CommonFlags,
    /// The listeners.
    #[command(flatten)]
    pub server: ServerFlags,
}

/// Flags of `exec`.
#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    /// Where the identity and the roles come from.
    #[command(flatten)]
    pub common: CommonFlags,
    /// Credentials endpoint address, loopback only [default: 127.0.0.1:0, an ephemeral port]
    #[arg(long = "listen", id = "exec_listen", value_name = "ADDR", value_parser = address)]
    pub listen: Option<SocketAddr>,
    /// Admin endpoint address [default: 127.0.0.1:0, an ephemeral port]
    #[arg(long = "admin-listen", id = "exec_admin_listen", value_name = "ADDR", value_parser = address)]
    pub admin_listen: Option<SocketAddr>,
    /// Also emulate IMDSv2 and set AWS_EC2_METADATA_SERVICE_ENDPOINT for the child
    #[arg(long = "imds", id = "exec_imds")]
    pub imds: bool,
    /// Point the child at this role (by alias) instead of the default role
    #[arg(long, value_name = "ALIAS")]
    pub role: Option<String>,
    /// Seconds to wait for the first credentials before giving up
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub ready_timeout: u64,
    /// Also give the child Google Cloud credentials: the workload identity pool provider's
    /// project number (with --gcp-pool and --gcp-provider); the child gets
    /// GOOGLE_APPLICATION_CREDENTIALS, a configuration that takes its identity from this server
    #[arg(long, value_name = "NUMBER", requires_all = ["gcp_pool", "gcp_provider"])]
    pub gcp_project_number: Option<String>,
    /// The workload identity pool (with --gcp-project-number)
    #[arg(long, value_name = "ID", requires = "gcp_project_number")]
    pub gcp_pool: Option<String>,
    /// The pool's provider (with --gcp-project-number)
    #[arg(long, value_name = "ID", requires = "gcp_project_number")]
    pub gcp_provider: Option<String>,
    /// The service account the child's Google SDK impersonates (with --gcp-project-number)
    #[arg(long, value_name = "EMAIL", requires = "gcp_project_number")]
    pub gcp_impersonate: Option<String>,
    /// The command to run, after --
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// Flags of `credential-process`.
#[derive(Debug, Clone, Args)]
pub struct CredentialProcessArgs {
    /// Where the identity and the roles come from, when no sidecar is running.
    #[command(flatten)]
    pub common: CommonFlags,
    /// The role's alias (default: the default role)
    #[arg(long, value_name = "ALIAS")]
    pub role: Option<String>,
}

/// Flags of `check`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// The serve flags to check.
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Only this role (by alias)
    #[arg(long, value_name = "ALIAS")]
    pub role: Option<String>,
    /// Poll a running sidecar's /ready (at --admin-listen) for up to SECS seconds instead
    #[arg(long, value_name = "SECS")]
    pub wait: Option<u64>,
    /// Check the configuration only (flags, STS_SIDECAR_* variables, the config file, role
    /// templates) and exit: no file is read but the config file, nothing is called. For staging,
    /// where CF_INSTANCE_CERT and CF_INSTANCE_KEY are not set yet: the paths Diego gives them at
    /// run time stand in
    #[arg(long, conflicts_with_all = ["wait", "trust_policy"])]
    pub config_only: bool,
    /// With --config-only, at staging: the directory the app is staged in. A file configured
    /// under /home/vcap/app (where the app runs) is looked for here; a file elsewhere that is
    /// not there yet is named as a warning, since it may be mounted at run time
    #[arg(long, value_name = "DIR", requires = "config_only")]
    pub app_dir: Option<std::path::PathBuf>,
    /// The role's trust policy (JSON, as `aws iam get-role --query
    /// Role.AssumeRolePolicyDocument` prints it): say which statement and condition the token
    /// fails
    #[arg(long, value_name = "FILE")]
    pub trust_policy: Option<std::path::PathBuf>,
}

#[cfg(test)]
mod tests {
    /// clap checks a command's definitions (unique names, valid `requires`) only when it builds
    /// that subcommand in a debug build: check them all here, before a user's `exec` panics.
    #[test]
    fn every_subcommands_flags_are_consistent() {
        use clap::CommandFactory as _;
        super::Cli::command().debug_assert();
    }
}
