//! `type = "gitlab"`: the ID token of a GitLab CI/CD job.
//!
//! A job asks for it with `id_tokens:` in `.gitlab-ci.yml`, naming a variable and the audience:
//!
//! ```yaml
//! id_tokens:
//!   ID_TOKEN:
//!     aud: sts.amazonaws.com
//! ```
//!
//! GitLab sets the variable to a JWT whose `iss` is the GitLab instance's URL and whose `sub` is,
//! by default, `project_path:{group}/{project}:ref_type:{branch|tag}:ref:{name}` (a project can
//! change the components after `project_path`); `project_path`, `ref`, `ref_type`,
//! `environment`, `namespace_path` and others are claims of their own. The audience is the
//! job's choice; the sidecar cannot ask for another. The token cannot be renewed inside the job
//! ([`super::ci_job`]).

use serde::Deserialize;

use super::{Context, Error, IdentityToken, Kind, Probe, ci_job};
use crate::checker::{Checker, Field, Layer, layer};

/// The variable read when none is configured.
pub const DEFAULT_VARIABLE: &str = "ID_TOKEN";

/// `type = "gitlab"` in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Spec {
    variable: Field<String>,
}

/// The flags of a GitLab source.
#[derive(Debug, Clone, Default, clap::Args)]
#[group(skip)]
pub struct Flags {
    /// Read the GitLab CI job's ID token from the variable NAME, the name the job gives it under
    /// `id_tokens:` [default: ID_TOKEN] [source: gitlab]
    #[arg(long, value_name = "NAME")]
    pub gitlab_token_variable: Option<String>,
}

/// A checked GitLab source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The variable the token came from.
    pub variable: String,
    /// The token.
    pub token: IdentityToken,
}

/// The GitLab CI job's ID token.
#[derive(Debug)]
pub struct Gitlab {
    settings: Settings,
}

impl Kind for Gitlab {
    const NAME: &'static str = "gitlab";
    const METRIC_LABEL: &'static str = "gitlab";
    const PICKED_BY: &'static [&'static str] = &["gitlab_token_variable"];
    type Spec = Spec;
    type Flags = Flags;
    type Settings = Settings;

    fn layer(spec: &mut Spec, flags: &Flags, _audience: &Option<String>, l: &mut Layer<'_, '_>) {
        layer!(l, spec.variable <- flags.gitlab_token_variable);
    }

    fn check(c: &mut Checker<'_>, at: &str, spec: Spec, _: &mut dyn Context) -> Option<Settings> {
        let variable = c
            .text(&format!("{at}.variable"), &spec.variable)
            .unwrap_or_else(|| DEFAULT_VARIABLE.to_owned());
        match ci_job::read(c, &[&variable]) {
            Some((variable, token)) => Some(Settings { variable, token }),
            None => {
                c.problem_at(
                    &variable,
                    format!(
                        "not set: GitLab sets it only for a job that asks for an ID token: add \
                         `id_tokens: {{{variable}: {{aud: sts.amazonaws.com}}}}` to the job in \
                         .gitlab-ci.yml (or name the job's variable with \
                         --gitlab-token-variable)"
                    ),
                );
                None
            }
        }
    }

    fn for_audience(_: &Settings, _: &str) -> Result<Settings, String> {
        Err(
            "a GitLab job's ID token has the audience the job asked for under id_tokens; ask \
             for another variable with that audience there"
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
        format!("the GitLab CI job's ID token ${}", self.settings.variable)
    }

    fn stale_hint(&self) -> String {
        ci_job::stale_hint("GitLab", &self.settings.variable)
    }

    async fn fetch(&self, _probe: &Probe) -> Result<IdentityToken, Error> {
        ci_job::fetch(&self.settings.token)
    }
}
