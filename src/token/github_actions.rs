//! `type = "github-actions"`: the OIDC token of a GitHub Actions job.
//!
//! GitHub sets `ACTIONS_ID_TOKEN_REQUEST_URL` (it already carries a query string) and
//! `ACTIONS_ID_TOKEN_REQUEST_TOKEN` only in jobs with `permissions: id-token: write`. The token
//! comes from `GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=AUD` with
//! `Authorization: Bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN`, as `{"value": "<jwt>"}`; `iss` is
//! `https://token.actions.githubusercontent.com`, `sub` names the repository and the ref or
//! environment. The request token is a secret: it is sent only over `https://` (or plain
//! `http://` to a loopback address, for tests) and never logged.

use std::time::Duration;

use serde::Deserialize;

use super::{Context, Error, IdentityToken, Kind, Probe, decode_claims, http};
use crate::checker::{Checker, Field, Layer};

/// The token endpoint of the job (set by GitHub).
pub const ENV_REQUEST_URL: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";
/// The bearer token for it (set by GitHub).
pub const ENV_REQUEST_TOKEN: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";
/// The audience asked for when none is configured.
pub const DEFAULT_AUDIENCE: &str = "sts.amazonaws.com";
/// Default timeout of one call.
pub const DEFAULT_TIMEOUT_SECS: u64 = 10;

crate::secret::secret_string!(
    /// The job's `ACTIONS_ID_TOKEN_REQUEST_TOKEN`.
    RequestToken
);

/// `type = "github-actions"` in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Spec {
    audience: Field<String>,
    timeout_secs: Field<u64>,
}

/// A GitHub Actions source has no flags of its own: `--source github-actions` picks it and
/// `--audience` applies.
#[derive(Debug, Clone, Default, clap::Args)]
#[group(skip)]
pub struct Flags {}

/// A checked GitHub Actions source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The full request URL, audience included.
    pub url: String,
    /// The request token.
    pub token: RequestToken,
    /// The audience asked for.
    pub audience: String,
    /// Timeout of one call.
    pub timeout: Duration,
}

impl Kind for GithubActions {
    const NAME: &'static str = "github-actions";
    const METRIC_LABEL: &'static str = "github_actions";
    const AUDIENCE: bool = true;
    const PICKED_BY: &'static [&'static str] = &[];
    type Spec = Spec;
    type Flags = Flags;
    type Settings = Settings;

    fn layer(spec: &mut Spec, _flags: &Flags, audience: &Option<String>, l: &mut Layer<'_, '_>) {
        l.set(&mut spec.audience, "audience", audience, "audience");
    }

    /// The job's variables must be there.
    fn check(c: &mut Checker<'_>, at: &str, spec: Spec, _: &mut dyn Context) -> Option<Settings> {
        let timeout = c.timeout(at, &spec.timeout_secs, DEFAULT_TIMEOUT_SECS, 120);
        let audience = c
            .text(&format!("{at}.audience"), &spec.audience)
            .unwrap_or_else(|| DEFAULT_AUDIENCE.to_owned());
        // The problem is named by the variable already: say what is wrong, not its name again.
        const MISSING: &str = "not set: GitHub sets it only in jobs with `permissions: id-token: \
                               write` (add it to the workflow or the job)";
        let url = c.var(ENV_REQUEST_URL);
        let token = c.var(ENV_REQUEST_TOKEN);
        if url.is_none() {
            c.problem_at(ENV_REQUEST_URL, MISSING);
        }
        if token.is_none() {
            c.problem_at(ENV_REQUEST_TOKEN, MISSING);
        }
        let (url, token) = (url?, token?);
        let mut parsed = match reqwest::Url::parse(url.trim()) {
            Ok(u) if crate::checker::is_secret_safe(&u) => u,
            _ => {
                c.problem_at(
                    ENV_REQUEST_URL,
                    "must be an https:// URL (the request token is a secret)",
                );
                return None;
            }
        };
        parsed.query_pairs_mut().append_pair("audience", &audience);
        Some(Settings {
            url: parsed.to_string(),
            token: RequestToken::new(token.trim()),
            audience,
            timeout,
        })
    }

    fn for_audience(s: &Settings, audience: &str) -> Result<Settings, String> {
        let mut url = reqwest::Url::parse(&s.url).map_err(|e| e.to_string())?;
        // GitHub's URL carries a query of its own: keep it, replace the audience.
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "audience")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(kept)
            .append_pair("audience", audience);
        Ok(Settings {
            url: url.to_string(),
            audience: audience.to_owned(),
            ..s.clone()
        })
    }

    fn describe(s: &Settings) -> String {
        format!(
            "{}, audience {}",
            s.url.split('?').next().unwrap_or(""),
            s.audience
        )
    }

    fn new(settings: &Settings) -> Result<Self, super::SetupError> {
        Ok(Self {
            settings: settings.clone(),
            client: http::client(settings.timeout, &[], true).map_err(super::SetupError::Client)?,
        })
    }

    fn origin(&self) -> String {
        format!(
            "the GitHub Actions token endpoint {}",
            self.settings.url.split('?').next().unwrap_or("")
        )
    }

    async fn fetch(&self, _probe: &Probe) -> Result<IdentityToken, Error> {
        self.request().await
    }
}

/// Asks GitHub for the job's OIDC token.
#[derive(Debug)]
pub struct GithubActions {
    settings: Settings,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct Answer {
    value: Option<String>,
}

impl GithubActions {
    /// One token request.
    async fn request(&self) -> Result<IdentityToken, Error> {
        let origin = self.origin();
        let response = self
            .client
            .get(&self.settings.url)
            .bearer_auth(self.settings.token.expose())
            .header(::http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| http::unreachable(&origin, e, "the token endpoint is retried"))?;
        let status = response.status();
        if status == ::http::StatusCode::UNAUTHORIZED || status == ::http::StatusCode::FORBIDDEN {
            return Err(Error::Refused {
                origin,
                detail: format!("refused the request token (HTTP {})", status.as_u16()),
                hint: format!(
                    "{ENV_REQUEST_TOKEN} is valid only while its job runs, in a job with \
                     `permissions: id-token: write`"
                ),
            });
        }
        if !status.is_success() {
            return Err(Error::Status {
                origin,
                status: status.as_u16(),
                hint: "GitHub's token endpoint failed: it is retried".to_owned(),
            });
        }
        let html = http::is_html(&response);
        let body = http::read_limited(response)
            .await
            .map_err(|e| http::unreachable(&origin, e, "the token endpoint is retried"))?
            .unwrap_or_default();
        let value = serde_json::from_slice::<Answer>(&body)
            .ok()
            .and_then(|a| a.value)
            .filter(|v| decode_claims(v.trim()).is_ok());
        match value {
            Some(v) => Ok(IdentityToken::new(v.trim())),
            None => Err(Error::Malformed {
                origin,
                what: format!("{} without a JWT in value", http::shape(&body, html)),
                hint: "GitHub answers {\"value\": \"<jwt>\"}".to_owned(),
            }),
        }
    }
}
