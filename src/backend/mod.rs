//! How an identity token (or certificate) becomes AWS credentials: STS
//! `AssumeRoleWithWebIdentity` ([`sts`]) or IAM Roles Anywhere `CreateSession`
//! ([`roles_anywhere`], signed by [`x509_sign`]).
//!
//! A [`Backend`] owns its inputs and exposes one async method, [`Backend::fetch`], that makes
//! exactly one upstream call (no retries: the refresher in `cache.rs` owns retry policy, so one
//! refresh is one STS call). Errors carry an [`ErrorClass`] that tells the refresher what to do.

pub mod arn;
#[cfg(feature = "sts")]
pub mod chain;
pub mod roles_anywhere;
#[cfg(feature = "sts")]
pub mod sts;
pub mod x509_sign;

use std::time::Duration;

use serde::Serialize;

pub use roles_anywhere::RolesAnywhere;
#[cfg(feature = "sts")]
pub use sts::Sts;

use crate::token::{self, Claims};

/// A cause kept with an error, whatever its type.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where and how to call STS.
#[derive(Debug, Clone)]
pub struct StsSettings {
    /// The region (regional endpoints are recommended).
    pub region: String,
    /// An explicit endpoint URL; otherwise aws-config's (which honours `AWS_ENDPOINT_URL_STS`).
    pub endpoint: Option<String>,
    /// Timeout for one call.
    pub timeout: Duration,
}

/// The role a backend assumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// The IAM role ARN.
    pub arn: String,
    /// Its 12-digit account.
    pub account_id: String,
    /// The session name (valid for STS).
    pub session_name: String,
    /// The session duration.
    pub duration: Duration,
}

crate::secret::secret_string!(
    /// An `sts:ExternalId` for a chained `AssumeRole`: not a credential, but a shared value that
    /// guards against the confused deputy, so it is kept out of logs and `Debug` like one.
    ExternalId
);

/// The longest session AWS gives a role assumed with another role's credentials.
pub const MAX_CHAINED_SECS: u64 = 3600;

crate::secret::secret_string!(
    /// The secret half of an AWS access key.
    SecretAccessKey
);
crate::secret::secret_string!(
    /// An STS session token.
    SessionToken
);

/// A set of temporary AWS credentials for one role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The access key id (not secret).
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: SecretAccessKey,
    /// The session token.
    pub session_token: SessionToken,
    /// When the credentials expire, Unix seconds.
    pub expiration: i64,
    /// The 12-digit account of the role.
    pub account_id: String,
    /// The IAM role ARN that was assumed (not the assumed-role session ARN).
    pub role_arn: String,
    /// The assumed-role session ARN STS reported, if any.
    pub assumed_role_arn: Option<String>,
}

impl Credentials {
    /// The container-credentials JSON every SDK accepts (docs/sdk-clients.md §3.1): exactly these
    /// fields, `Expiration` as `YYYY-MM-DDTHH:MM:SSZ`.
    pub fn container_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Body<'a> {
            access_key_id: &'a str,
            secret_access_key: &'a str,
            token: &'a str,
            expiration: String,
            account_id: &'a str,
            role_arn: &'a str,
        }
        serde_json::to_vec(&Body {
            access_key_id: &self.access_key_id,
            secret_access_key: self.secret_access_key.expose(),
            token: self.session_token.expose(),
            expiration: crate::clock::format_rfc3339(self.expiration),
            account_id: &self.account_id,
            role_arn: &self.role_arn,
        })
    }
}

impl Credentials {
    /// The IMDS credentials JSON (docs/sdk-clients.md §4 step 3): `Code` = `Success`, `LastUpdated`,
    /// `Type` = `AWS-HMAC`, the keys, `Expiration` and `AccountId`.
    pub fn imds_json(&self, last_updated: i64) -> Result<Vec<u8>, serde_json::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Body<'a> {
            code: &'a str,
            last_updated: String,
            r#type: &'a str,
            access_key_id: &'a str,
            secret_access_key: &'a str,
            token: &'a str,
            expiration: String,
            account_id: &'a str,
        }
        serde_json::to_vec(&Body {
            code: "Success",
            last_updated: crate::clock::format_rfc3339(last_updated),
            r#type: "AWS-HMAC",
            access_key_id: &self.access_key_id,
            secret_access_key: self.secret_access_key.expose(),
            token: self.session_token.expose(),
            expiration: crate::clock::format_rfc3339(self.expiration),
            account_id: &self.account_id,
        })
    }

    /// The `credential_process` Version 1 JSON (docs/sdk-clients.md §5): number `Version`,
    /// `SessionToken` (not `Token`).
    pub fn process_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Body<'a> {
            version: u8,
            access_key_id: &'a str,
            secret_access_key: &'a str,
            session_token: &'a str,
            expiration: String,
            account_id: &'a str,
        }
        serde_json::to_vec(&Body {
            version: 1,
            access_key_id: &self.access_key_id,
            secret_access_key: self.secret_access_key.expose(),
            session_token: self.session_token.expose(),
            expiration: crate::clock::format_rfc3339(self.expiration),
            account_id: &self.account_id,
        })
    }
}

/// The ways of getting credentials (a closed set: one file per variant).
#[derive(Debug)]
pub enum Backend {
    /// STS `AssumeRoleWithWebIdentity` with an identity token.
    #[cfg(feature = "sts")]
    Sts(Sts),
    /// IAM Roles Anywhere `CreateSession` signed with the certificate's key.
    RolesAnywhere(Box<RolesAnywhere>),
    /// STS `AssumeRole` with the credentials of another role (role chaining).
    #[cfg(feature = "sts")]
    Chained(Box<chain::Chained>),
}

impl Backend {
    /// One attempt at new credentials.
    pub async fn fetch(&self) -> Result<Credentials, Error> {
        match self {
            #[cfg(feature = "sts")]
            Backend::Sts(sts) => sts.fetch().await,
            Backend::RolesAnywhere(ra) => ra.fetch().await,
            #[cfg(feature = "sts")]
            Backend::Chained(c) => c.fetch().await,
        }
    }

    /// Drops any cached identity token, so the next fetch gets a fresh one.
    pub async fn invalidate_token(&self) {
        match self {
            #[cfg(feature = "sts")]
            Backend::Sts(sts) => sts.token_source().invalidate().await,
            // No identity token: the certificate is read afresh at every refresh; a chained
            // role's first link renews its own.
            Backend::RolesAnywhere(_) => {}
            #[cfg(feature = "sts")]
            Backend::Chained(_) => {}
        }
    }

    /// The role ARN this backend assumes.
    pub fn role_arn(&self) -> &str {
        match self {
            #[cfg(feature = "sts")]
            Backend::Sts(sts) => sts.role_arn(),
            Backend::RolesAnywhere(ra) => ra.role_arn(),
            #[cfg(feature = "sts")]
            Backend::Chained(c) => c.role_arn(),
        }
    }

    /// The name and kind of the source the role's identity comes from, for metrics.
    pub fn source_name(&self) -> (&str, &'static str) {
        match self {
            #[cfg(feature = "sts")]
            Backend::Sts(sts) => (
                sts.token_source().name(),
                sts.token_source().source().kind().name(),
            ),
            Backend::RolesAnywhere(_) => ("roles-anywhere", "roles-anywhere"),
            #[cfg(feature = "sts")]
            Backend::Chained(c) => (c.via(), "chained"),
        }
    }

    /// Where the role's identity comes from, for `/status`: the source's name and origin.
    pub fn source(&self) -> String {
        match self {
            #[cfg(feature = "sts")]
            Backend::Sts(sts) => sts.token_source().describe(),
            Backend::RolesAnywhere(ra) => ra.describe(),
            #[cfg(feature = "sts")]
            Backend::Chained(c) => c.describe(),
        }
    }
}

/// What to do about a chained `AssumeRole` that STS refused.
#[cfg(feature = "sts")]
fn chain_hint(code: &str, role: &Role) -> String {
    match code {
        "AccessDenied" => format!(
            "the trust policy of {} must allow sts:AssumeRole for the first link's role (its ARN \
             as the AWS principal), with an sts:ExternalId condition matching --external-id if \
             it has one; and the first link's role needs sts:AssumeRole on {} in its own \
             permissions",
            role.arn, role.arn
        ),
        "ValidationError" => {
            "a chained session lasts at most an hour (DurationSeconds 3600)".to_owned()
        }
        _ => "see the STS error above".to_owned(),
    }
}

/// What the caller should do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Throttled by the upstream: back off and retry.
    Throttled,
    /// Transient: 5xx, timeout, connection failure, `IDPCommunicationError`: retry.
    Unavailable,
    /// The identity token was rejected as invalid or expired: fetch a new one, then retry.
    TokenRejected,
    /// The identity (certificate, key, token service) could not produce a token: retry.
    Identity,
    /// Refused for a reason retrying will not fix soon (`AccessDenied`, `IDPRejectedClaim`,
    /// policy errors): report loudly, retry slowly.
    Denied,
    /// The upstream answered something we could not understand: retry.
    Malformed,
}

impl ErrorClass {
    /// The label used in metrics and status.
    pub fn label(self) -> &'static str {
        match self {
            ErrorClass::Throttled => "throttled",
            ErrorClass::Unavailable => "unavailable",
            ErrorClass::TokenRejected => "token_rejected",
            ErrorClass::Identity => "identity",
            ErrorClass::Denied => "denied",
            ErrorClass::Malformed => "malformed",
        }
    }

    /// The class a label names (the inverse of [`ErrorClass::label`]).
    pub fn from_label(label: &str) -> Option<ErrorClass> {
        [
            ErrorClass::Throttled,
            ErrorClass::Unavailable,
            ErrorClass::TokenRejected,
            ErrorClass::Identity,
            ErrorClass::Denied,
            ErrorClass::Malformed,
        ]
        .into_iter()
        .find(|c| c.label() == label)
    }

    /// Whether retries should be slow (the problem needs a human).
    pub fn is_slow(self) -> bool {
        matches!(self, ErrorClass::Denied)
    }
}

/// Why no credentials were obtained.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No identity token.
    #[error(transparent)]
    Token(#[from] token::Error),
    /// The certificate or key could not be read (Roles Anywhere).
    #[error(transparent)]
    Identity(#[from] crate::identity::Error),
    /// Roles Anywhere `CreateSession` failed.
    #[error("rolesanywhere CreateSession for {role_arn} failed: {detail}")]
    RolesAnywhere {
        /// The role.
        role_arn: String,
        /// The error type, e.g. `AccessDeniedException`, when the service named one.
        code: Option<String>,
        /// What went wrong.
        detail: String,
        /// The cause (a transport error), if any.
        #[source]
        source: Option<BoxError>,
        /// What to do about it.
        class: ErrorClass,
    },
    /// STS answered with an error code.
    #[error("sts {call} for {role_arn} failed: {code}: {message}")]
    Sts {
        /// The STS action.
        call: &'static str,
        /// The role.
        role_arn: String,
        /// The STS error code, e.g. `AccessDenied`.
        code: String,
        /// The STS error message.
        message: String,
        /// What to do about it.
        class: ErrorClass,
    },
    /// STS could not be reached, timed out, or answered something unparseable.
    #[error("sts {call} for {role_arn} failed: {detail}")]
    Transport {
        /// The STS action.
        call: &'static str,
        /// The role.
        role_arn: String,
        /// What went wrong, in words.
        detail: String,
        /// The cause (a connection error, say), if any.
        #[source]
        source: Option<BoxError>,
        /// What to do about it.
        class: ErrorClass,
    },
    /// A chained role's first link has no credentials to sign `AssumeRole` with.
    #[error(
        "{role_arn} is reached through role {via} ({via_arn}), which has no credentials: {why}"
    )]
    FirstLink {
        /// The chained role.
        role_arn: String,
        /// The first link's alias.
        via: String,
        /// The first link's role ARN.
        via_arn: String,
        /// The first link's own error.
        why: String,
        /// Its class.
        class: ErrorClass,
    },
    /// The backend could not be set up (before any network call).
    #[error("role {role_arn}: {detail}")]
    Setup {
        /// The role.
        role_arn: String,
        /// What is wrong.
        detail: String,
        /// The cause.
        #[source]
        source: Option<BoxError>,
    },
}

impl Error {
    /// What the caller should do about this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            // A token service that is shedding load is throttling, like STS: what a fleet's
            // metrics must show (`outcome="throttled"`), not an identity problem.
            Error::Token(token::Error::Status { status: 429, .. }) => ErrorClass::Throttled,
            Error::Token(_) | Error::Identity(_) => ErrorClass::Identity,
            Error::Setup { .. } => ErrorClass::Denied,
            Error::Sts { class, .. }
            | Error::Transport { class, .. }
            | Error::FirstLink { class, .. }
            | Error::RolesAnywhere { class, .. } => *class,
        }
    }

    /// What the user should do about it (printed by `check`), given the claims of the identity
    /// token that was sent (when it is a JWT) and the role.
    pub fn hint(&self, claims: Option<&Claims>, role: &Role) -> String {
        match self {
            Error::Token(inner) => inner.hint(),
            Error::Identity(inner) => inner.hint(),
            Error::RolesAnywhere { code, detail, .. } => {
                roles_anywhere::hint(code.as_deref(), detail, &role.arn)
            }
            Error::FirstLink { via, .. } => format!(
                "the first link of the chain, role {via}, must work first: see its own error \
                 (`check --role {via}`)"
            ),
            #[cfg(feature = "sts")]
            Error::Sts {
                call: "AssumeRole",
                code,
                ..
            } => chain_hint(code, role),
            #[cfg(feature = "sts")]
            Error::Sts { code, message, .. } => sts::hint(code, message, claims, role),
            #[cfg(not(feature = "sts"))]
            Error::Sts { .. } => {
                let _ = (claims, role);
                "see the STS error above".to_owned()
            }
            Error::Transport { class, .. } => match class {
                ErrorClass::Unavailable | ErrorClass::Throttled => "check --sts-region / \
                                                                    --sts-endpoint (or \
                                                                    AWS_ENDPOINT_URL_STS) and \
                                                                    HTTPS_PROXY"
                    .to_owned(),
                _ => "the STS endpoint answered something that is not STS: check --sts-endpoint"
                    .to_owned(),
            },
            Error::Setup { .. } => "fix the role's configuration".to_owned(),
        }
    }
}
