//! `type = "circleci"`: the OIDC token of a CircleCI job.
//!
//! CircleCI sets `CIRCLE_OIDC_TOKEN` and `CIRCLE_OIDC_TOKEN_V2` in every job (not in jobs of
//! pull requests from forks). `iss` is `https://oidc.circleci.com/org/<organization id>`, `aud`
//! the organization id, and the token expires an hour after it is issued. `sub` is
//! `org/<org id>/project/<project id>/user/<user id>`; the V2 token, preferred here, appends
//! `/vcs-origin/<repository URL>/vcs-ref/<ref>`. `oidc.circleci.com/project-id` and
//! `oidc.circleci.com/context-ids` are claims of their own. The token cannot be renewed inside
//! the job ([`super::ci_job`]).

use serde::Deserialize;

use super::{Context, Error, IdentityToken, Kind, Probe, ci_job};
use crate::checker::{Checker, Layer};

/// The V2 token (its `sub` also names the repository and the ref).
pub const ENV_TOKEN_V2: &str = "CIRCLE_OIDC_TOKEN_V2";
/// The first token, read when there is no V2 token.
pub const ENV_TOKEN: &str = "CIRCLE_OIDC_TOKEN";

/// `type = "circleci"` in the config file: nothing to set.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Spec {}

/// A CircleCI source has no flags of its own: `--source circleci` picks it.
#[derive(Debug, Clone, Default, clap::Args)]
#[group(skip)]
pub struct Flags {}

/// A checked CircleCI source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The variable the token came from.
    pub variable: String,
    /// The token.
    pub token: IdentityToken,
}

/// The CircleCI job's OIDC token.
#[derive(Debug)]
pub struct Circleci {
    settings: Settings,
}

impl Kind for Circleci {
    const NAME: &'static str = "circleci";
    const METRIC_LABEL: &'static str = "circleci";
    const PICKED_BY: &'static [&'static str] = &[];
    type Spec = Spec;
    type Flags = Flags;
    type Settings = Settings;

    fn layer(_: &mut Spec, _: &Flags, _: &Option<String>, _: &mut Layer<'_, '_>) {}

    fn check(c: &mut Checker<'_>, _at: &str, _: Spec, _: &mut dyn Context) -> Option<Settings> {
        match ci_job::read(c, &[ENV_TOKEN_V2, ENV_TOKEN]) {
            Some((variable, token)) => Some(Settings { variable, token }),
            None => {
                c.problem_at(
                    ENV_TOKEN_V2,
                    format!(
                        "not set, and neither is {ENV_TOKEN}: CircleCI sets them in every job \
                         except those of pull requests from forks"
                    ),
                );
                None
            }
        }
    }

    fn for_audience(_: &Settings, _: &str) -> Result<Settings, String> {
        Err(
            "a CircleCI job's OIDC token has the organization id as its audience and cannot be \
             asked for another"
                .to_owned(),
        )
    }

    fn describe(s: &Settings) -> String {
        format!("${}, which {}", s.variable, ci_job::expiry(&s.token))
    }

    fn new(settings: &Settings) -> Result<Self, super::SetupError> {
        Ok(Self {
            settings: settings.clone(),
        })
    }

    fn origin(&self) -> String {
        format!("the CircleCI job's OIDC token ${}", self.settings.variable)
    }

    fn stale_hint(&self) -> String {
        ci_job::stale_hint("CircleCI", &self.settings.variable)
    }

    async fn fetch(&self, _probe: &Probe) -> Result<IdentityToken, Error> {
        ci_job::fetch(&self.settings.token)
    }
}
