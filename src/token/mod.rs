//! Where the identity token (the JWT that STS `AssumeRoleWithWebIdentity` accepts) comes from,
//! and how long it is kept.
//!
//! # Kinds of source
//!
//! Each kind of source is one file and implements [`Kind`]: its section in the config file
//! (`Spec`), its flags (`Flags`), its checked settings (`Settings`, which also describe
//! themselves for `check`), and the source itself (`probe`, a cheap look at what tells the cache
//! that a cached token is stale, and `fetch`, one attempt at a token). The list of kinds is the
//! one [`kinds!`] invocation below: from it come the enums [`Spec`], [`Settings`], [`Source`],
//! the flag set [`Flags`] and [`KindName`] (the values of `--source` and `type = "..."`).
//! Adding a kind is its file and one line there.
//!
//! # The cache
//!
//! A [`TokenSource`] puts the one cache ([`cache`]) in front of a source, the same for every
//! kind: a token that is a JWT is reused until shortly before its own `exp` (never past it)
//! unless the probe changed; an opaque token is fetched again for every STS call;
//! [`TokenSource::invalidate`] (after STS said `InvalidIdentityToken` or
//! `ExpiredTokenException`) forces a fresh one. Concurrent callers share one fetch. This module
//! decodes claims (it does not verify signatures: STS does that) and never logs or prints a
//! token.

pub mod audiences;
pub mod cache;
mod ci_job;
pub mod circleci;
pub mod command;
pub mod file;
pub mod gcp_metadata;
pub mod github_actions;
pub mod gitlab;
mod http;
mod jwt;
pub mod oidc;
pub mod token_service;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

pub use cache::{TokenCache, TokenSource};
pub use jwt::{Claims, JwtError, decode_claims};

use crate::checker::{Checker, Layer};
use crate::identity::{IdentityFiles, IdentityPair};

crate::secret::secret_string!(
    /// A token that proves the app's identity to STS (usually a JWT).
    IdentityToken
);

/// One kind of identity source. Implemented by the source type of each kind's file.
pub trait Kind: fmt::Debug + Send + Sync + Sized + 'static {
    /// The kind as written in the config (`type = "..."`) and given to `--source`.
    const NAME: &'static str;
    /// The label of its upstream in metrics.
    const METRIC_LABEL: &'static str;
    /// Whether the shared `--audience` flag applies to it.
    const AUDIENCE: bool = false;
    /// The argument ids of its flags that pick this kind for the first role when given.
    const PICKED_BY: &'static [&'static str];
    /// Its section in the config file (`[source.NAME]` without `type`): every field a
    /// [`crate::checker::Field`].
    type Spec: serde::de::DeserializeOwned + Default + fmt::Debug;
    /// Its flags (each also an `STS_SIDECAR_*` variable).
    type Flags: clap::Args + clap::FromArgMatches + Clone + fmt::Debug + Default;
    /// Its checked settings.
    type Settings: Clone + fmt::Debug + PartialEq + Eq;

    /// Writes the flags given (and `audience`, when the kind takes one) over the first role's
    /// source.
    fn layer(
        spec: &mut Self::Spec,
        flags: &Self::Flags,
        audience: &Option<String>,
        l: &mut Layer<'_, '_>,
    );
    /// Checks the section at `at` (`source.NAME`), reporting every problem.
    fn check(
        c: &mut Checker<'_>,
        at: &str,
        spec: Self::Spec,
        ctx: &mut dyn Context,
    ) -> Option<Self::Settings>;
    /// The settings in one line, secrets redacted, for `check`.
    fn describe(settings: &Self::Settings) -> String;
    /// The certificate and key the kind presents, if any (for `check` to describe).
    fn identity(_settings: &Self::Settings) -> Option<&IdentityFiles> {
        None
    }
    /// The settings of a source like this one that asks for tokens for `audience` (the
    /// identity-token endpoint); `Err` says, in words, why this kind cannot.
    fn for_audience(settings: &Self::Settings, audience: &str) -> Result<Self::Settings, String> {
        let _ = (settings, audience);
        Err(format!(
            "a {} source has one token, for the audience it was made for, and cannot ask for \
             another",
            Self::NAME
        ))
    }
    /// The source for the settings. Reads local files (a CA bundle); makes no network call.
    fn new(settings: &Self::Settings) -> Result<Self, SetupError>;
    /// Where tokens come from, for logs, `/status` and `check` (a URL, a path, a program).
    fn origin(&self) -> String;
    /// What to do about a token that has already expired when it arrives.
    fn stale_hint(&self) -> String {
        "the source issues already-expired tokens: check its clock and this machine's (NTP)"
            .to_owned()
    }
    /// Looks at what decides whether a cached token is still current.
    fn probe(&self) -> impl Future<Output = Result<Probe, Error>> + Send {
        async { Ok(Probe::nothing()) }
    }
    /// One attempt at a token (no retries: the refresher owns retry policy).
    fn fetch(&self, probe: &Probe) -> impl Future<Output = Result<IdentityToken, Error>> + Send;
}

/// What a kind's checks may need from the rest of the configuration.
pub trait Context {
    /// The certificate and key (`[identity]`, the flags, or `CF_INSTANCE_*`), checked once;
    /// `None` when they could not be configured (already reported).
    fn identity(&mut self, c: &mut Checker<'_>) -> Option<IdentityFiles>;
}

/// Declares the kinds of source, once: every enum and dispatch below comes from this list.
macro_rules! kinds {
    ($( $(#[$doc:meta])* $variant:ident($module:ident::$ty:ident), )*) => {
        /// A source's section of the config file, by kind.
        #[derive(Debug)]
        pub enum Spec {
            $( $(#[$doc])* $variant(<$module::$ty as Kind>::Spec), )*
        }

        /// A source's checked settings, by kind.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Settings {
            $( $(#[$doc])* $variant(<$module::$ty as Kind>::Settings), )*
        }

        /// The ways of getting an identity token.
        #[derive(Debug)]
        pub enum Source {
            $( $(#[$doc])* $variant($module::$ty), )*
        }

        /// A kind of source, as `--source` and `type = "..."` name it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum KindName {
            $( $(#[$doc])* $variant, )*
        }

        /// The flags of every kind, and the ones they share.
        #[derive(Debug, Clone, Default, clap::Args)]
#[group(skip)]
        pub struct Flags {
            $(
                #[allow(missing_docs)]
                #[command(flatten)]
                pub $module: <$module::$ty as Kind>::Flags,
            )*
            /// Audience to ask for [default: sts.amazonaws.com for gcp-metadata and
            /// github-actions; none for oidc] [sources: gcp-metadata, oidc, github-actions]
            #[arg(long, value_name = "AUD")]
            pub audience: Option<String>,
        }

        impl KindName {
            /// Every kind, in the order they are documented.
            pub const ALL: &'static [KindName] = &[$(KindName::$variant),*];

            /// The kind as written in the config.
            pub fn name(self) -> &'static str {
                match self {
                    $( KindName::$variant => <$module::$ty as Kind>::NAME, )*
                }
            }

            /// The kind named `name`, if there is one.
            pub fn from_name(name: &str) -> Option<KindName> {
                Self::ALL.iter().copied().find(|k| k.name() == name)
            }

            /// Whether `--audience` applies to it.
            pub fn takes_audience(self) -> bool {
                match self {
                    $( KindName::$variant => <$module::$ty as Kind>::AUDIENCE, )*
                }
            }

            /// The argument ids of its own flags.
            pub fn flag_ids(self) -> Vec<String> {
                let command = clap::Command::new("flags");
                let command = match self {
                    $( KindName::$variant => {
                        <<$module::$ty as Kind>::Flags as clap::Args>::augment_args(command)
                    } )*
                };
                command.get_arguments().map(|a| a.get_id().to_string()).collect()
            }

            /// The argument ids of the flags that pick it.
            pub fn picked_by(self) -> &'static [&'static str] {
                match self {
                    $( KindName::$variant => <$module::$ty as Kind>::PICKED_BY, )*
                }
            }

            /// An empty section of this kind (a source made up from flags).
            pub fn empty_spec(self) -> Spec {
                match self {
                    $( KindName::$variant => Spec::$variant(Default::default()), )*
                }
            }

            /// Reads the section at `at` as a source of this kind.
            pub(crate) fn read(self, c: &mut Checker<'_>, at: &str, table: toml::Table) -> Spec {
                match self {
                    $( KindName::$variant => {
                        Spec::$variant(c.section(at, Some(toml::Value::Table(table))))
                    } )*
                }
            }
        }

        impl clap::ValueEnum for KindName {
            fn value_variants<'a>() -> &'a [Self] {
                Self::ALL
            }

            fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
                Some(clap::builder::PossibleValue::new(self.name()))
            }
        }

        impl Spec {
            /// Its kind.
            pub fn kind(&self) -> KindName {
                match self {
                    $( Spec::$variant(_) => KindName::$variant, )*
                }
            }

            /// Writes the flags given over this source (the first role's).
            pub(crate) fn layer(&mut self, flags: &Flags, l: &mut Layer<'_, '_>) {
                match self {
                    $( Spec::$variant(spec) => {
                        <$module::$ty as Kind>::layer(spec, &flags.$module, &flags.audience, l)
                    } )*
                }
            }

            /// Checks the section at `at`, reporting every problem.
            pub(crate) fn check(
                self,
                c: &mut Checker<'_>,
                at: &str,
                ctx: &mut dyn Context,
            ) -> Option<Settings> {
                match self {
                    $( Spec::$variant(spec) => {
                        <$module::$ty as Kind>::check(c, at, spec, ctx).map(Settings::$variant)
                    } )*
                }
            }
        }

        impl Settings {
            /// Its kind.
            pub fn kind(&self) -> KindName {
                match self {
                    $( Settings::$variant(_) => KindName::$variant, )*
                }
            }

            /// The settings in one line, secrets redacted, for `check`.
            pub fn describe(&self) -> String {
                match self {
                    $( Settings::$variant(s) => <$module::$ty as Kind>::describe(s), )*
                }
            }

            /// The certificate and key the source presents, if any.
            pub fn identity(&self) -> Option<&IdentityFiles> {
                match self {
                    $( Settings::$variant(s) => <$module::$ty as Kind>::identity(s), )*
                }
            }
        }

        impl Settings {
            /// The same source asking for tokens for `audience`, or why it cannot.
            pub fn for_audience(&self, audience: &str) -> Result<Settings, String> {
                match self {
                    $( Settings::$variant(s) => {
                        <$module::$ty as Kind>::for_audience(s, audience).map(Settings::$variant)
                    } )*
                }
            }
        }

        impl Source {
            /// The source the settings describe. Reads local files (a CA bundle); makes no
            /// network call.
            pub fn new(settings: &Settings) -> Result<Source, SetupError> {
                Ok(match settings {
                    $( Settings::$variant(s) => Source::$variant(<$module::$ty as Kind>::new(s)?), )*
                })
            }

            /// Its kind.
            pub fn kind(&self) -> KindName {
                match self {
                    $( Source::$variant(_) => KindName::$variant, )*
                }
            }

            /// The label of this source's upstream in metrics.
            pub fn metric_label(&self) -> &'static str {
                match self {
                    $( Source::$variant(_) => <$module::$ty as Kind>::METRIC_LABEL, )*
                }
            }

            /// Where tokens come from, for logs, `/status` and `check`.
            pub fn origin(&self) -> String {
                match self {
                    $( Source::$variant(s) => s.origin(), )*
                }
            }

            /// What to do about a token that has already expired when it arrives.
            pub fn stale_hint(&self) -> String {
                match self {
                    $( Source::$variant(s) => s.stale_hint(), )*
                }
            }

            /// Looks at what decides whether a cached token is still current.
            pub async fn probe(&self) -> Result<Probe, Error> {
                match self {
                    $( Source::$variant(s) => s.probe().await, )*
                }
            }

            /// One attempt at a token (no retries: the refresher owns retry policy).
            pub async fn fetch(&self, probe: &Probe) -> Result<IdentityToken, Error> {
                match self {
                    $( Source::$variant(s) => s.fetch(probe).await, )*
                }
            }
        }
    };
}

kinds! {
    /// `token-service`: the CF Identity Token Service (or `sts-sidecar issuer`), called over
    /// mTLS with the instance identity.
    TokenService(token_service::TokenService),
    /// `file`: a token file another process keeps fresh (Kubernetes, IRSA).
    File(file::TokenFile),
    /// `gcp-metadata`: a Google ID token from the GCP metadata server.
    GcpMetadata(gcp_metadata::GcpMetadata),
    /// `oidc`: the client-credentials grant at an OIDC provider.
    Oidc(oidc::Oidc),
    /// `github-actions`: the OIDC token of a GitHub Actions job.
    GithubActions(github_actions::GithubActions),
    /// `gitlab`: the ID token of a GitLab CI/CD job, from the variable it names.
    Gitlab(gitlab::Gitlab),
    /// `circleci`: the OIDC token of a CircleCI job.
    Circleci(circleci::Circleci),
    /// `command`: a program that prints a token.
    Command(command::CommandSource),
}

impl fmt::Display for KindName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a source found out before fetching: whether a cached token is still current, and what
/// the fetch needs.
#[derive(Debug)]
pub struct Probe {
    /// Compared with the stamp of the cached token: a different one means "fetch again".
    pub stamp: Stamp,
    /// The identity certificate and key, for sources that present them.
    pub identity: Option<IdentityPair>,
}

impl Probe {
    /// Nothing observable: only the token's own `exp` decides.
    pub fn nothing() -> Self {
        Self {
            stamp: Stamp::Nothing,
            identity: None,
        }
    }
}

/// What a cached token was obtained from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stamp {
    /// Nothing observable: only the token's own `exp` decides.
    Nothing,
    /// The bytes of the certificate file: a rotation changes them.
    Certificate(Arc<Vec<u8>>),
    /// What a token file's path resolves to.
    File(file::FileId),
}

/// Why a source could not be set up at start (before any network call).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The token service's CA bundle.
    #[error(transparent)]
    TokenService(#[from] token_service::SetupError),
    /// An HTTP client could not be set up.
    #[error("cannot set up the HTTP client")]
    Client(#[source] reqwest::Error),
}

/// Why no identity token could be had. Every variant names its origin (a URL, a path, a
/// program or a variable) and never the token; [`Error::hint`] says what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The certificate or key could not be read.
    #[error(transparent)]
    Identity(#[from] crate::identity::Error),
    /// The upstream could not be reached or did not answer in time.
    #[error("cannot reach {origin}")]
    Unreachable {
        /// What was called, e.g. `the token service at https://.../token`.
        origin: String,
        /// The transport error, with its causes.
        #[source]
        source: reqwest::Error,
        /// What to do about it.
        hint: String,
    },
    /// The upstream refused the request (401, 403, an OAuth error).
    #[error("{origin} {detail}")]
    Refused {
        /// What was called.
        origin: String,
        /// What it said, e.g. `refused the client certificate (HTTP 403 Forbidden)`.
        detail: String,
        /// What to do about it.
        hint: String,
    },
    /// The upstream answered with another error status.
    #[error("{origin} answered HTTP {status}")]
    Status {
        /// What was called.
        origin: String,
        /// The HTTP status.
        status: u16,
        /// What to do about it.
        hint: String,
    },
    /// The upstream answered 2xx with something that is not a token.
    #[error("{origin} answered with {what}, not a token")]
    Malformed {
        /// What was called.
        origin: String,
        /// What came instead (its shape, never its content).
        what: String,
        /// What to do about it.
        hint: String,
    },
    /// The token is already expired (or expires within seconds).
    #[error(
        "the identity token from {origin} expired at {} ({})",
        crate::clock::format_rfc3339(*exp),
        ago(*exp)
    )]
    Expired {
        /// Where it came from.
        origin: String,
        /// Its `exp` claim.
        exp: i64,
        /// What to do about it (depends on the kind).
        hint: String,
    },
    /// The source has nothing to give yet: a missing or empty file, a missing variable, a
    /// command that failed.
    #[error("{origin}: {detail}")]
    Unavailable {
        /// The path, variable or program.
        origin: String,
        /// What is wrong.
        detail: String,
        /// What to do about it.
        hint: String,
    },
}

/// How long ago `unix` was, in words (`3 h 5 min ago`, or `in 8 s` for a time just ahead).
fn ago(unix: i64) -> String {
    let delta = crate::clock::now_unix() - unix;
    let (n, suffix) = if delta >= 0 {
        (delta, " ago")
    } else {
        (-delta, " from now")
    };
    let text = match n {
        0..60 => format!("{n} s"),
        60..3600 => format!("{} min", n / 60),
        3600..86_400 => format!("{} h {} min", n / 3600, n % 3600 / 60),
        _ => format!("{} days", n / 86_400),
    };
    format!("{text}{suffix}")
}

impl Error {
    /// What the user should do about it (printed by `check`).
    pub fn hint(&self) -> String {
        match self {
            Error::Identity(e) => e.hint(),
            Error::Unreachable { hint, .. }
            | Error::Refused { hint, .. }
            | Error::Status { hint, .. }
            | Error::Malformed { hint, .. }
            | Error::Expired { hint, .. }
            | Error::Unavailable { hint, .. } => hint.clone(),
        }
    }
}
