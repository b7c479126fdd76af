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

use super::{Error, IdentityToken, decode_claims, http};
use crate::config::file::Uint;
use crate::config::{Checker, DEFAULT_UPSTREAM_TIMEOUT_SECS};

/// The token endpoint of the job (set by GitHub).
pub const ENV_REQUEST_URL: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";
/// The bearer token for it (set by GitHub).
pub const ENV_REQUEST_TOKEN: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";
/// The audience asked for when none is configured.
pub const DEFAULT_AUDIENCE: &str = "sts.amazonaws.com";

crate::secret::secret_string!(
    /// The job's `ACTIONS_ID_TOKEN_REQUEST_TOKEN`.
    RequestToken
);

/// `type = "github-actions"` in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    audience: Option<String>,
    timeout_secs: Option<Uint>,
}

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

/// Checks the source at `at` (`source.NAME`): the job's variables must be there.
pub(crate) fn settings(c: &mut Checker<'_>, at: &str, spec: Spec) -> Option<Settings> {
    let timeout = c.timeout(
        at,
        spec.timeout_secs.as_ref(),
        DEFAULT_UPSTREAM_TIMEOUT_SECS,
        120,
    );
    let audience = crate::config::or_default(spec.audience, DEFAULT_AUDIENCE);
    let missing = |var: &str| {
        format!(
            "{var} is not set: GitHub sets it only in jobs with `permissions: id-token: write` \
             (add it to the workflow or the job)"
        )
    };
    let url = c.env(ENV_REQUEST_URL);
    let token = c.env(ENV_REQUEST_TOKEN);
    if url.is_none() {
        c.problem_at(ENV_REQUEST_URL.to_owned(), missing(ENV_REQUEST_URL));
    }
    if token.is_none() {
        c.problem_at(ENV_REQUEST_TOKEN.to_owned(), missing(ENV_REQUEST_TOKEN));
    }
    let (url, token) = (url?, token?);
    let mut parsed = match reqwest::Url::parse(url.trim()) {
        Ok(u)
            if u.scheme() == "https"
                || (u.scheme() == "http" && crate::config::is_loopback_host(&u)) =>
        {
            u
        }
        _ => {
            c.problem_at(
                ENV_REQUEST_URL.to_owned(),
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
    /// A client for the job's token endpoint (no network call).
    pub fn new(settings: &Settings) -> Result<Self, String> {
        Ok(Self {
            settings: settings.clone(),
            client: http::client(settings.timeout, &[], true)?,
        })
    }

    /// `the GitHub Actions token endpoint URL` (without its query).
    pub fn origin(&self) -> String {
        format!(
            "the GitHub Actions token endpoint {}",
            self.settings.url.split('?').next().unwrap_or("")
        )
    }

    /// One token request.
    pub async fn fetch(&self) -> Result<IdentityToken, Error> {
        let origin = self.origin();
        let response = self
            .client
            .get(&self.settings.url)
            .bearer_auth(self.settings.token.expose())
            .header(::http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| http::unreachable(&origin, &e, "the token endpoint is retried"))?;
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
            .map_err(|e| http::unreachable(&origin, &e, "the token endpoint is retried"))?
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
