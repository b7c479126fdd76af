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
    /// Fetch credentials for the configured roles, keep them fresh, and serve them.
    ///
    /// Point the app at it with:
    ///   AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:61679/v1/credentials
    ///   AWS_CONTAINER_AUTHORIZATION_TOKEN=<the same token the sidecar uses>
    #[command(verbatim_doc_comment)]
    Serve(ServeArgs),
    /// Run COMMAND with credentials: start the server on an ephemeral loopback port with a fresh
    /// random token, wait for the first credentials, run COMMAND with
    /// AWS_CONTAINER_CREDENTIALS_FULL_URI and AWS_CONTAINER_AUTHORIZATION_TOKEN set (other AWS
    /// credential variables removed), forward SIGINT/SIGTERM/SIGHUP, and exit with its code
    /// (128+signal if it was killed).
    ///
    /// On Cloud Foundry, a start command like
    ///   sts-sidecar exec --token-service-url URL --role-arn ARN -- java -jar app.jar
    /// needs no sidecar entry at all.
    #[command(verbatim_doc_comment)]
    Exec(ExecArgs),
    /// Print credentials as credential_process Version 1 JSON, for ~/.aws/config:
    ///   [profile app]
    ///   credential_process = sts-sidecar credential-process
    /// Asks a running sidecar when AWS_CONTAINER_CREDENTIALS_FULL_URI (and its token) are set,
    /// otherwise does the exchange itself once with the serve flags. Diagnostics go to stderr.
    #[command(verbatim_doc_comment)]
    CredentialProcess(CredentialProcessArgs),
    /// Diagnose the setup: print the effective configuration (redacted), the certificate's subject
    /// and expiry, the identity token's claims, and assume every role; say what to fix for each
    /// failure. Exit 0 only when every step passed. With --wait SECS, instead poll a running
    /// sidecar's /ready (for start scripts).
    #[command(verbatim_doc_comment)]
    Check(CheckArgs),
}

/// Flags of `exec`.
#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    /// The serve flags (--listen and --admin-listen default to ephemeral ports here).
    #[command(flatten)]
    pub serve: ServeArgs,
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
    /// The serve flags, used when no sidecar is running.
    #[command(flatten)]
    pub serve: ServeArgs,
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
}

/// Flags of `serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// TOML config file (see config/sts-sidecar.toml) [env: STS_SIDECAR_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Credentials endpoint address, loopback only [default: 127.0.0.1:61679]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Admin endpoint address (/healthz /ready /metrics /status) [default: 127.0.0.1:61680]
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<String>,
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
    /// Read the authorization token from FILE (created with a random token if missing)
    /// instead of $AWS_CONTAINER_AUTHORIZATION_TOKEN
    #[arg(long, value_name = "FILE")]
    pub auth_token_file: Option<String>,
    /// STS region [default: $AWS_REGION, $AWS_DEFAULT_REGION, us-east-1]
    #[arg(long, value_name = "REGION")]
    pub sts_region: Option<String>,
    /// STS endpoint URL [default: $AWS_ENDPOINT_URL_STS, else the regional endpoint]
    #[arg(long, value_name = "URL")]
    pub sts_endpoint: Option<String>,
    /// Also emulate IMDSv2 on the credentials listener, for code that only knows the EC2
    /// metadata service (AWS_EC2_METADATA_SERVICE_ENDPOINT=http://<listen address>)
    #[arg(long)]
    pub imds: bool,
}

impl ServeArgs {
    /// The flags as config overrides, by flag name.
    pub fn overrides(&self) -> Overrides {
        let mut o = Overrides::default();
        o.config.clone_from(&self.config);
        for (name, value) in [
            ("listen", &self.listen),
            ("admin-listen", &self.admin_listen),
            ("source", &self.source),
            ("token-service-url", &self.token_service_url),
            ("token-service-ca", &self.token_service_ca),
            ("cert-file", &self.cert_file),
            ("key-file", &self.key_file),
            ("role-arn", &self.role_arn),
            ("role-session-name", &self.role_session_name),
            ("duration", &self.duration),
            ("auth-token-file", &self.auth_token_file),
            ("sts-region", &self.sts_region),
            ("sts-endpoint", &self.sts_endpoint),
        ] {
            o.set_opt(name, value.as_deref());
        }
        if self.imds {
            o.set("imds", "true");
        }
        o
    }
}
