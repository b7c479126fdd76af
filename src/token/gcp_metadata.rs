//! `type = "gcp-metadata"`: a Google-signed ID token for the instance's service account from the
//! GCP metadata server (Cloud Run, GCE, GKE with workload identity).
//!
//! `GET http://<host>/computeMetadata/v1/instance/service-accounts/<account>/identity
//! ?audience=<aud>&format=full` with `Metadata-Flavor: Google`; the answer is the bare JWT
//! (`iss` `https://accounts.google.com`, about one hour of life, a new token per request). The
//! host is `metadata.google.internal` unless `GCE_METADATA_HOST` (a host or host:port, the
//! variable Google's own libraries read) or the config names another. The server is plain HTTP
//! by nature and reachable only directly, so no proxy is used; an answer without
//! `Metadata-Flavor: Google` did not come from it and is refused.

use std::time::Duration;

use super::{Context, Error, IdentityToken, Kind, Probe, decode_claims, http};
use crate::checker::{Checker, Field, Layer, layer};

/// The metadata server's host when nothing else names one.
pub const DEFAULT_HOST: &str = "metadata.google.internal";
/// The variable Google's client libraries read for another metadata host.
pub const ENV_GCE_METADATA_HOST: &str = "GCE_METADATA_HOST";
/// The audience asked for when none is configured.
pub const DEFAULT_AUDIENCE: &str = "sts.amazonaws.com";
/// Default timeout of one call.
pub const DEFAULT_TIMEOUT_SECS: u64 = 10;

/// `type = "gcp-metadata"` in the config file.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct Spec {
    audience: Field<String>,
    service_account: Field<String>,
    host: Field<String>,
    timeout_secs: Field<u64>,
}

/// The flags of a GCP metadata source.
#[derive(Debug, Clone, Default, clap::Args)]
#[group(skip)]
pub struct Flags {
    /// Service account whose ID token the GCP metadata server issues [default: default]
    /// [source: gcp-metadata]
    #[arg(long, value_name = "EMAIL")]
    pub gcp_service_account: Option<String>,
}

/// A checked metadata-server source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The identity URL, query included.
    pub url: String,
    /// The audience asked for.
    pub audience: String,
    /// The service account (`default` or an email).
    pub service_account: String,
    /// Timeout of one call.
    pub timeout: Duration,
}

impl Kind for GcpMetadata {
    const NAME: &'static str = "gcp-metadata";
    const METRIC_LABEL: &'static str = "gcp_metadata";
    const AUDIENCE: bool = true;
    const PICKED_BY: &'static [&'static str] = &["gcp_service_account"];
    type Spec = Spec;
    type Flags = Flags;
    type Settings = Settings;

    fn layer(spec: &mut Spec, flags: &Flags, audience: &Option<String>, l: &mut Layer<'_, '_>) {
        layer!(l, spec.service_account <- flags.gcp_service_account);
        l.set(&mut spec.audience, "audience", audience, "audience");
    }

    fn check(c: &mut Checker<'_>, at: &str, spec: Spec, _: &mut dyn Context) -> Option<Settings> {
        let timeout = c.timeout(at, &spec.timeout_secs, DEFAULT_TIMEOUT_SECS, 120);
        let audience = c
            .text(&format!("{at}.audience"), &spec.audience)
            .unwrap_or_else(|| DEFAULT_AUDIENCE.to_owned());
        let account_key = format!("{at}.service_account");
        let service_account = c
            .text(&account_key, &spec.service_account)
            .unwrap_or_else(|| "default".to_owned());
        if !service_account
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@._-".contains(&b))
        {
            c.problem(
                &account_key,
                format!("must be default or a service account email, got {service_account:?}"),
            );
            return None;
        }
        let host_key = format!("{at}.host");
        let (host, host_origin) = match c.text(&host_key, &spec.host) {
            Some(h) => (h, c.origin(&host_key)),
            None => match c.var(ENV_GCE_METADATA_HOST) {
                Some(h) => (h, ENV_GCE_METADATA_HOST.to_owned()),
                None => (DEFAULT_HOST.to_owned(), c.origin(&host_key)),
            },
        };
        let host = host
            .trim()
            .trim_start_matches("http://")
            .trim_end_matches('/');
        let base = format!(
            "http://{host}/computeMetadata/v1/instance/service-accounts/{service_account}/identity"
        );
        let mut url = match reqwest::Url::parse(&base) {
            Ok(u) if u.host().is_some() && u.path().ends_with("/identity") => u,
            _ => {
                c.problem_at(
                    host_origin,
                    format!("must be a host or host:port, got {host:?}"),
                );
                return None;
            }
        };
        url.query_pairs_mut()
            .append_pair("audience", &audience)
            .append_pair("format", "full");
        Some(Settings {
            url: url.to_string(),
            audience,
            service_account,
            timeout,
        })
    }

    fn for_audience(s: &Settings, audience: &str) -> Result<Settings, String> {
        let mut url = reqwest::Url::parse(&s.url).map_err(|e| e.to_string())?;
        url.query_pairs_mut()
            .clear()
            .append_pair("audience", audience)
            .append_pair("format", "full");
        Ok(Settings {
            url: url.to_string(),
            audience: audience.to_owned(),
            ..s.clone()
        })
    }

    fn describe(s: &Settings) -> String {
        format!(
            "{}, service account {}, audience {}",
            s.url.split('?').next().unwrap_or(""),
            s.service_account,
            s.audience
        )
    }

    fn new(settings: &Settings) -> Result<Self, super::SetupError> {
        Ok(Self {
            settings: settings.clone(),
            client: http::client(settings.timeout, &[], false)
                .map_err(super::SetupError::Client)?,
        })
    }

    fn origin(&self) -> String {
        format!(
            "the GCP metadata server at {}",
            self.settings.url.split('?').next().unwrap_or("")
        )
    }

    async fn fetch(&self, _probe: &Probe) -> Result<IdentityToken, Error> {
        self.identity_token().await
    }
}

/// Asks the metadata server for ID tokens.
#[derive(Debug)]
pub struct GcpMetadata {
    settings: Settings,
    client: reqwest::Client,
}

impl GcpMetadata {
    /// One identity request.
    async fn identity_token(&self) -> Result<IdentityToken, Error> {
        let origin = self.origin();
        let response = self
            .client
            .get(&self.settings.url)
            .header("Metadata-Flavor", "Google")
            .send()
            .await
            .map_err(|e| {
                http::unreachable(
                    &origin,
                    e,
                    "this only works on Google Cloud (Cloud Run, GCE, GKE): elsewhere set \
                     GCE_METADATA_HOST to a metadata server or choose another source",
                )
            })?;
        let flavored = response
            .headers()
            .get("Metadata-Flavor")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("Google"));
        let status = response.status();
        if !flavored {
            return Err(Error::Malformed {
                origin,
                what: format!(
                    "an HTTP {} answer without the Metadata-Flavor: Google header",
                    status.as_u16()
                ),
                hint: "something other than the metadata server answered: check \
                       GCE_METADATA_HOST and that no proxy or captive portal intercepts it"
                    .to_owned(),
            });
        }
        if !status.is_success() {
            let hint = if status == ::http::StatusCode::NOT_FOUND {
                format!(
                    "the instance has no service account {:?} (on GKE: enable workload identity \
                     for the pod's service account)",
                    self.settings.service_account
                )
            } else {
                "the metadata server failed: it is retried".to_owned()
            };
            return Err(Error::Status {
                origin,
                status: status.as_u16(),
                hint,
            });
        }
        // The real server labels the bare token text/html: judge the body, not the label.
        let body = http::read_limited(response)
            .await
            .map_err(|e| http::unreachable(&origin, e, "the metadata server is retried"))?;
        let malformed = |what: String| Error::Malformed {
            origin: origin.clone(),
            what,
            hint: "the metadata server answers the identity path with a bare JWT".to_owned(),
        };
        let Some(body) = body else {
            return Err(malformed(format!("more than {} bytes", http::MAX_BODY)));
        };
        let text = std::str::from_utf8(body.trim_ascii()).unwrap_or("");
        if decode_claims(text).is_err() {
            return Err(malformed(http::shape(&body, false)));
        }
        Ok(IdentityToken::new(text))
    }
}
