//! The command line (clap derive). Every `serve` flag can also be given as an
//! `STS_SIDECAR_<FLAG>` environment variable or in the TOML file; flags win.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Overrides;

/// Serves your app's own AWS role credentials on loopback, in the format every AWS SDK reads from
/// AWS_CONTAINER_CREDENTIALS_FULL_URI.
#[derive(Debug, Parser)]
#[command(
    name = "sts-sidecar",
    version,
    after_help = "Logging: STS_SIDECAR_LOG (e.g. info, debug, sts_sidecar=trace) and \
                  STS_SIDECAR_LOG_FORMAT (plain or json).\n\
                  Exit codes: 0 success, 64 configuration or usage error, 1 runtime failure."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
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
    Exec(ExecArgs),
    /// Print credentials as credential_process JSON, for ~/.aws/config
    #[command(
        long_about = "Print credentials as credential_process Version 1 JSON, for \
~/.aws/config:\n  [profile app]\n  credential_process = sts-sidecar credential-process\n\n\
When AWS_CONTAINER_CREDENTIALS_FULL_URI is set, the running sidecar there is asked (with \
AWS_CONTAINER_AUTHORIZATION_TOKEN or AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE); otherwise the \
exchange is done once here with the flags below. Only the JSON goes to stdout; on failure one \
line goes to stderr and the exit code is 1."
    )]
    CredentialProcess(CredentialProcessArgs),
    /// Diagnose the setup and print the trust policy each role needs
    #[command(
        long_about = "Diagnose the setup with exactly the settings serve would use: \
print the configuration (redacted), the authorization token's origin, each identity source's \
token claims (never the token) and the IAM trust-policy conditions filled with their values, \
then assume every role. Each failure says what to fix. Exit 0 only when every step passed.\n\n\
With --wait SECS, instead poll a running sidecar's /ready (for start scripts)."
    )]
    Check(CheckArgs),
}

/// Flags of `serve` (and of `check`, which judges the same settings).
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Where the identity and the roles come from.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Credentials endpoint address, loopback only [default: 127.0.0.1:61679]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Admin endpoint address (/healthz /ready /metrics /status) [default: 127.0.0.1:61680]
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<String>,
    /// Read the authorization token from FILE (created with a random token if missing)
    /// instead of $AWS_CONTAINER_AUTHORIZATION_TOKEN
    #[arg(long, value_name = "FILE")]
    pub auth_token_file: Option<String>,
    /// Also emulate IMDSv2 on the credentials listener, for code that only knows the EC2
    /// metadata service (AWS_EC2_METADATA_SERVICE_ENDPOINT=http://<listen address>)
    #[arg(long)]
    pub imds: bool,
}

/// Flags of `exec`.
#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    /// Where the identity and the roles come from.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Credentials endpoint address, loopback only [default: 127.0.0.1:0, an ephemeral port]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Admin endpoint address [default: 127.0.0.1:0, an ephemeral port]
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<String>,
    /// Also emulate IMDSv2 and set AWS_EC2_METADATA_SERVICE_ENDPOINT for the child
    #[arg(long)]
    pub imds: bool,
    /// Point the child at this role (by alias) instead of the default role
    #[arg(long, value_name = "ALIAS")]
    pub role: Option<String>,
    /// Seconds to wait for the first credentials before giving up
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub ready_timeout: u64,
    /// The command to run, after --
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// Flags of `credential-process`.
#[derive(Debug, Clone, Args)]
pub struct CredentialProcessArgs {
    /// Where the identity and the roles come from, when no sidecar is running.
    #[command(flatten)]
    pub common: CommonArgs,
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
    /// The role's trust policy (JSON, as `aws iam get-role --query
    /// Role.AssumeRolePolicyDocument` prints it): say which statement and condition the token
    /// fails
    #[arg(long, value_name = "FILE")]
    pub trust_policy: Option<std::path::PathBuf>,
}

/// The flags every subcommand shares: the config file, the identity source, the roles, STS.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// TOML config file (see config/sts-sidecar.toml) [env: STS_SIDECAR_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the identity token comes from: token-service (the default), file, gcp-metadata,
    /// oidc, github-actions or command. Usually implied by the source's own flags
    #[arg(long, value_name = "KIND")]
    pub source: Option<String>,
    /// Base URL of the CF Identity Token Service, e.g. https://cits.apps.example.com
    #[arg(long, value_name = "URL")]
    pub token_service_url: Option<String>,
    /// Extra CA certificates (PEM) to trust for the token service, besides the system roots
    #[arg(long, value_name = "FILE")]
    pub token_service_ca: Option<String>,
    /// Read the identity token from FILE, re-read when it changes (Kubernetes projected token;
    /// with no other source, $AWS_WEB_IDENTITY_TOKEN_FILE is used) [source: file]
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<String>,
    /// Service account whose ID token the GCP metadata server issues [default: default]
    /// [source: gcp-metadata]
    #[arg(long, value_name = "EMAIL")]
    pub gcp_service_account: Option<String>,
    /// OIDC token endpoint for the client-credentials grant [source: oidc]
    #[arg(long, value_name = "URL")]
    pub oidc_token_url: Option<String>,
    /// OIDC issuer; the token endpoint is read from its discovery document [source: oidc]
    #[arg(long, value_name = "URL")]
    pub oidc_issuer: Option<String>,
    /// OIDC client id [source: oidc]
    #[arg(long, value_name = "ID")]
    pub oidc_client_id: Option<String>,
    /// File holding the OIDC client secret (or set $STS_SIDECAR_OIDC_CLIENT_SECRET; never a
    /// flag value) [source: oidc]
    #[arg(long, value_name = "FILE")]
    pub oidc_client_secret_file: Option<String>,
    /// OAuth scope to ask for [source: oidc]
    #[arg(long, value_name = "SCOPE")]
    pub oidc_scope: Option<String>,
    /// Audience to ask for [default: sts.amazonaws.com for gcp-metadata and github-actions;
    /// none for oidc] [sources: gcp-metadata, oidc, github-actions]
    #[arg(long, value_name = "AUD")]
    pub audience: Option<String>,
    /// Program that prints the identity token, split on spaces and run without a shell (use
    /// the config file for arguments with spaces) [source: command]
    #[arg(long, value_name = "COMMAND")]
    pub token_command: Option<String>,
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
    /// Instance identity certificate chain [default: $CF_INSTANCE_CERT]
    #[arg(long, value_name = "FILE")]
    pub cert_file: Option<String>,
    /// Instance identity private key [default: $CF_INSTANCE_KEY]
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<String>,
    /// IAM role to assume; may use {org} {space} {app} {org_guid} {space_guid} {app_guid}
    /// {instance_index} {instance_guid} from VCAP_APPLICATION
    #[arg(long, value_name = "ARN")]
    pub role_arn: Option<String>,
    /// STS session name (same placeholders; made valid for STS)
    /// [default: {app}-{instance_index} on CF, else sts-sidecar]
    #[arg(long, value_name = "NAME")]
    pub role_session_name: Option<String>,
    /// Session duration in seconds, 900-43200, at most the role's maximum [default: 3600]
    #[arg(long, value_name = "SECS")]
    pub duration: Option<String>,
    /// STS region [default: $AWS_REGION, $AWS_DEFAULT_REGION, us-east-1]
    #[arg(long, value_name = "REGION")]
    pub sts_region: Option<String>,
    /// STS endpoint URL [default: $AWS_ENDPOINT_URL_STS, else the regional endpoint]
    #[arg(long, value_name = "URL")]
    pub sts_endpoint: Option<String>,
}

impl CommonArgs {
    /// The flags as config overrides, by flag name.
    pub fn overrides(&self) -> Overrides {
        let mut o = Overrides::default();
        o.config.clone_from(&self.config);
        for (name, value) in [
            ("source", &self.source),
            ("token-service-url", &self.token_service_url),
            ("token-service-ca", &self.token_service_ca),
            ("token-file", &self.token_file),
            ("gcp-service-account", &self.gcp_service_account),
            ("oidc-token-url", &self.oidc_token_url),
            ("oidc-issuer", &self.oidc_issuer),
            ("oidc-client-id", &self.oidc_client_id),
            ("oidc-client-secret-file", &self.oidc_client_secret_file),
            ("oidc-scope", &self.oidc_scope),
            ("audience", &self.audience),
            ("token-command", &self.token_command),
            ("trust-anchor-arn", &self.trust_anchor_arn),
            ("profile-arn", &self.profile_arn),
            ("rolesanywhere-endpoint", &self.rolesanywhere_endpoint),
            ("cert-file", &self.cert_file),
            ("key-file", &self.key_file),
            ("role-arn", &self.role_arn),
            ("role-session-name", &self.role_session_name),
            ("duration", &self.duration),
            ("sts-region", &self.sts_region),
            ("sts-endpoint", &self.sts_endpoint),
        ] {
            o.set_opt(name, value.as_deref());
        }
        o
    }
}

impl ServeArgs {
    /// The flags as config overrides, by flag name.
    pub fn overrides(&self) -> Overrides {
        let mut o = self.common.overrides();
        o.set_opt("listen", self.listen.as_deref());
        o.set_opt("admin-listen", self.admin_listen.as_deref());
        o.set_opt("auth-token-file", self.auth_token_file.as_deref());
        if self.imds {
            o.set("imds", "true");
        }
        o
    }
}

impl ExecArgs {
    /// The flags as config overrides, by flag name; both listeners default to ephemeral ports.
    pub fn overrides(&self) -> Overrides {
        let mut o = self.common.overrides();
        o.set("listen", self.listen.as_deref().unwrap_or("127.0.0.1:0"));
        o.set(
            "admin-listen",
            self.admin_listen.as_deref().unwrap_or("127.0.0.1:0"),
        );
        if self.imds {
            o.set("imds", "true");
        }
        o
    }
}
