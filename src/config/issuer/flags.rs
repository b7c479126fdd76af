//! The issuer's flags (each also an `STS_SIDECAR_*` variable), global so that they may follow
//! `issuer publish` too.

use std::net::SocketAddr;

use clap::{Args, Command};

use crate::config::flags::{address, boolean, whole_number};
use crate::issuer::ProofKind;

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
    /// The proofs of identity accepted, comma-separated [default: assertion,mtls]
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

/// Every issuer flag, as one clap command.
pub(crate) fn command() -> Command {
    IssuerFlags::augment_args(
        Command::new("issuer")
            .no_binary_name(true)
            .args_override_self(true),
    )
}
