//! `type = "oidc"`: the OAuth 2.0 client-credentials grant at any OIDC provider's token endpoint
//! (Cognito user pools, Keycloak, Auth0, Entra ID).
//!
//! `POST <token endpoint>` with `grant_type=client_credentials` (plus `scope` and `audience` when
//! configured); the client authenticates with HTTP Basic (`client_secret_basic`, the default:
//! id and secret each form-urlencoded, then base64, as RFC 6749 section 2.3.1 says) or in the
//! body (`client_secret_post`). The endpoint is configured, or read once from the issuer's
//! `/.well-known/openid-configuration` (`token_endpoint`). The answer's `id_token` is used when
//! there is one, else its `access_token`. STS accepts only tokens whose `aud` names a client ID
//! of its OIDC provider: a token without `aud` (Cognito access tokens carry `client_id`
//! instead) is warned about, naming the claim, because STS will refuse it.
//!
//! The client secret comes from a file (read at every fetch, so it can be rotated) or from
//! `STS_SIDECAR_OIDC_CLIENT_SECRET`, never from a flag value (flags show up in `ps`). It is sent
//! only over `https://`, or plain `http://` to a loopback address (tests, local emulators).

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;

use super::{Context, Error, IdentityToken, Kind, Probe, decode_claims, http};
use crate::checker::{Checker, Field, Layer, layer};

/// Default timeout of one call.
pub const DEFAULT_TIMEOUT_SECS: u64 = 10;

/// The client secret's variable (the value itself, not a file).
pub const ENV_CLIENT_SECRET: &str = "STS_SIDECAR_OIDC_CLIENT_SECRET";

crate::secret::secret_string!(
    /// An OAuth client secret.
    ClientSecret
);

/// `type = "oidc"` in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Spec {
    token_url: Field<String>,
    issuer: Field<String>,
    client_id: Field<String>,
    client_secret_file: Field<PathBuf>,
    scope: Field<String>,
    audience: Field<String>,
    auth_method: Field<String>,
    timeout_secs: Field<u64>,
}

/// The flags of an OIDC source.
#[derive(Debug, Clone, Default, clap::Args)]
#[group(skip)]
pub struct Flags {
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
    pub oidc_client_secret_file: Option<PathBuf>,
    /// OAuth scope to ask for [source: oidc]
    #[arg(long, value_name = "SCOPE")]
    pub oidc_scope: Option<String>,
}

/// Where the token endpoint is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Configured.
    TokenUrl(String),
    /// Read from the issuer's discovery document.
    Issuer(String),
}

/// Where the client secret is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretFrom {
    /// A file, read at each fetch.
    File(PathBuf),
    /// `STS_SIDECAR_OIDC_CLIENT_SECRET`.
    Value(ClientSecret),
}

/// How the client authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// HTTP Basic.
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Post,
}

/// A checked OIDC source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The token endpoint or issuer.
    pub endpoint: Endpoint,
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub secret: SecretFrom,
    /// `scope`, if any.
    pub scope: Option<String>,
    /// `audience`, if any.
    pub audience: Option<String>,
    /// Client authentication.
    pub auth: AuthMethod,
    /// Timeout of one call.
    pub timeout: Duration,
}

impl Kind for Oidc {
    const NAME: &'static str = "oidc";
    const METRIC_LABEL: &'static str = "oidc";
    const AUDIENCE: bool = true;
    const PICKED_BY: &'static [&'static str] = &[
        "oidc_token_url",
        "oidc_issuer",
        "oidc_client_id",
        "oidc_client_secret_file",
        "oidc_scope",
    ];
    type Spec = Spec;
    type Flags = Flags;
    type Settings = Settings;

    fn layer(spec: &mut Spec, flags: &Flags, audience: &Option<String>, l: &mut Layer<'_, '_>) {
        layer!(l, spec.token_url <- flags.oidc_token_url);
        layer!(l, spec.issuer <- flags.oidc_issuer);
        layer!(l, spec.client_id <- flags.oidc_client_id);
        layer!(l, spec.client_secret_file <- flags.oidc_client_secret_file);
        layer!(l, spec.scope <- flags.oidc_scope);
        l.set(&mut spec.audience, "audience", audience, "audience");
    }

    fn check(c: &mut Checker<'_>, at: &str, spec: Spec, _: &mut dyn Context) -> Option<Settings> {
        let timeout = c.timeout(at, &spec.timeout_secs, DEFAULT_TIMEOUT_SECS, 120);
        let what = "the OIDC token endpoint";
        let url_key = format!("{at}.token_url");
        let issuer_key = format!("{at}.issuer");
        let endpoint = match (
            c.text(&url_key, &spec.token_url),
            c.text(&issuer_key, &spec.issuer),
        ) {
            (Some(u), None) => c.secret_url(&url_key, &u, what).map(Endpoint::TokenUrl),
            (None, Some(i)) => c
                .secret_url(&issuer_key, &i, what)
                .map(|i| Endpoint::Issuer(i.trim_end_matches('/').to_owned())),
            (Some(_), Some(_)) => {
                let both = format!(
                    "give {} or {}, not both",
                    c.origin(&url_key),
                    c.origin(&issuer_key)
                );
                c.problem(&issuer_key, both);
                None
            }
            (None, None) => {
                c.problem(
                    &url_key,
                    "not set: pass --oidc-token-url URL or --oidc-issuer URL",
                );
                None
            }
        };
        let client_id = c.text(&format!("{at}.client_id"), &spec.client_id);
        if client_id.is_none() {
            c.problem(
                &format!("{at}.client_id"),
                "not set: pass --oidc-client-id ID",
            );
        }
        let file_key = format!("{at}.client_secret_file");
        let from_env = c.var(ENV_CLIENT_SECRET);
        let secret = match (c.path(&file_key, &spec.client_secret_file), from_env) {
            (Some(path), None) => Some(SecretFrom::File(path)),
            (None, Some(value)) => Some(SecretFrom::Value(ClientSecret::new(value.trim()))),
            (Some(_), Some(_)) => {
                c.problem(
                    &file_key,
                    format!("{ENV_CLIENT_SECRET} is set too: give the secret one way"),
                );
                None
            }
            (None, None) => {
                if !spec.client_secret_file.is_present() {
                    c.problem(
                        &file_key,
                        format!(
                            "no client secret: pass --oidc-client-secret-file FILE or set \
                             {ENV_CLIENT_SECRET} (never a flag value: flags show in ps)"
                        ),
                    );
                }
                None
            }
        };
        let method_key = format!("{at}.auth_method");
        let auth = match c
            .value(&method_key, &spec.auth_method)
            .as_deref()
            .map(str::trim)
        {
            None | Some("client_secret_basic") => Some(AuthMethod::Basic),
            Some("client_secret_post") => Some(AuthMethod::Post),
            Some(other) => {
                c.problem(
                    &method_key,
                    format!("must be client_secret_basic or client_secret_post, got {other:?}"),
                );
                None
            }
        };
        Some(Settings {
            endpoint: endpoint?,
            client_id: client_id?,
            secret: secret?,
            scope: c.text(&format!("{at}.scope"), &spec.scope),
            audience: c.text(&format!("{at}.audience"), &spec.audience),
            auth: auth?,
            timeout,
        })
    }

    /// The provider is asked with `audience` (Auth0, Keycloak with an audience mapper); one that
    /// ignores it answers a token for another audience, which the endpoint then refuses.
    fn for_audience(s: &Settings, audience: &str) -> Result<Settings, String> {
        Ok(Settings {
            audience: Some(audience.to_owned()),
            ..s.clone()
        })
    }

    fn describe(s: &Settings) -> String {
        format!(
            "{}, client {}{}{}, secret {}",
            match &s.endpoint {
                Endpoint::TokenUrl(u) => u.clone(),
                Endpoint::Issuer(i) => format!("issuer {i}"),
            },
            s.client_id,
            s.scope
                .as_ref()
                .map(|x| format!(", scope {x}"))
                .unwrap_or_default(),
            s.audience
                .as_ref()
                .map(|x| format!(", audience {x}"))
                .unwrap_or_default(),
            match &s.secret {
                SecretFrom::File(p) => format!("from the file {}", p.display()),
                SecretFrom::Value(_) => format!("<redacted>, from {ENV_CLIENT_SECRET}"),
            }
        )
    }

    fn new(settings: &Settings) -> Result<Self, super::SetupError> {
        Ok(Self {
            settings: settings.clone(),
            client: http::client(settings.timeout, &[], true).map_err(super::SetupError::Client)?,
            discovered: tokio::sync::OnceCell::new(),
        })
    }

    fn origin(&self) -> String {
        match (&self.settings.endpoint, self.discovered.get()) {
            (Endpoint::TokenUrl(u), _) => format!("the OIDC token endpoint {u}"),
            (Endpoint::Issuer(_), Some(u)) => format!("the OIDC token endpoint {u}"),
            (Endpoint::Issuer(i), None) => format!("the OIDC issuer {i}"),
        }
    }

    async fn fetch(&self, _probe: &Probe) -> Result<IdentityToken, Error> {
        self.grant().await
    }
}

/// Gets tokens with the client-credentials grant.
#[derive(Debug)]
pub struct Oidc {
    settings: Settings,
    client: reqwest::Client,
    /// The token endpoint read from the discovery document, once.
    discovered: tokio::sync::OnceCell<String>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    id_token: Option<String>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct Discovery {
    token_endpoint: Option<String>,
}

impl Oidc {
    /// One client-credentials grant.
    async fn grant(&self) -> Result<IdentityToken, Error> {
        let url = self.token_url().await?;
        let origin = format!("the OIDC token endpoint {url}");
        let secret = self.secret().await?;
        let (body, basic) = self.form(&secret);
        let mut request = self.client.post(&url);
        if let Some(basic) = basic {
            request = request.header(::http::header::AUTHORIZATION, basic);
        }
        let response = request
            .header(
                ::http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(::http::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                http::unreachable(
                    &origin,
                    e,
                    "check --oidc-token-url / --oidc-issuer and HTTPS_PROXY/NO_PROXY",
                )
            })?;
        let status = response.status();
        let html = http::is_html(&response);
        let body = http::read_limited(response)
            .await
            .map_err(|e| http::unreachable(&origin, e, "the token endpoint is retried"))?
            .unwrap_or_default();
        let scrub = |s: &str| s.replace(secret.expose(), "<redacted>");
        if let Ok(err) = serde_json::from_slice::<ErrorAnswer>(&body) {
            let description = err
                .error_description
                .map(|d| format!(": {}", scrub(&d)))
                .unwrap_or_default();
            return Err(Error::Refused {
                origin,
                detail: format!(
                    "answered {} (HTTP {}){description}",
                    scrub(&err.error),
                    status.as_u16()
                ),
                hint: oauth_hint(&err.error),
            });
        }
        if !status.is_success() {
            return Err(Error::Status {
                origin,
                status: status.as_u16(),
                hint: "check --oidc-token-url (the token endpoint, not the issuer)".to_owned(),
            });
        }
        let answer: Option<TokenAnswer> = (!html)
            .then(|| serde_json::from_slice(&body).ok())
            .flatten();
        let Some(token) = answer.and_then(|a| a.id_token.or(a.access_token)) else {
            return Err(Error::Malformed {
                origin,
                what: format!(
                    "{} without access_token or id_token",
                    http::shape(&body, html)
                ),
                hint: "the token endpoint must answer the client-credentials grant with JSON"
                    .to_owned(),
            });
        };
        let token = token.trim();
        match decode_claims(token) {
            Ok(claims) if claims.aud.is_empty() => {
                let instead = if claims.extra("client_id").is_some() {
                    " (it carries client_id instead, as Cognito access tokens do)"
                } else {
                    ""
                };
                tracing::warn!(
                    origin = %origin,
                    "the identity token has no aud claim{instead}: STS refuses tokens without one; \
                     configure the provider to set aud (an audience mapper, a resource server) or \
                     use an ID token"
                );
            }
            Ok(_) => {}
            Err(_) => tracing::warn!(
                origin = %origin,
                "the token endpoint issued an opaque access token, not a JWT: STS accepts only JWTs"
            ),
        }
        Ok(IdentityToken::new(token))
    }

    /// The form body and, for `client_secret_basic`, the Authorization header value.
    fn form(&self, secret: &ClientSecret) -> (String, Option<String>) {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        if let Some(scope) = &self.settings.scope {
            form.append_pair("scope", scope);
        }
        if let Some(audience) = &self.settings.audience {
            form.append_pair("audience", audience);
        }
        let basic = match self.settings.auth {
            AuthMethod::Basic => {
                let enc =
                    |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                let pair = format!("{}:{}", enc(&self.settings.client_id), enc(secret.expose()));
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
            }
            AuthMethod::Post => {
                form.append_pair("client_id", &self.settings.client_id);
                form.append_pair("client_secret", secret.expose());
                None
            }
        };
        (form.finish(), basic)
    }

    async fn token_url(&self) -> Result<String, Error> {
        let issuer = match &self.settings.endpoint {
            Endpoint::TokenUrl(u) => return Ok(u.clone()),
            Endpoint::Issuer(i) => i,
        };
        let url = self
            .discovered
            .get_or_try_init(|| self.discover(issuer))
            .await?;
        Ok(url.clone())
    }

    async fn discover(&self, issuer: &str) -> Result<String, Error> {
        let url = format!("{issuer}/.well-known/openid-configuration");
        let origin = format!("the OIDC discovery document {url}");
        let hint = "check --oidc-issuer (the issuer URL, without /.well-known/...)";
        let response = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| http::unreachable(&origin, e, hint))?;
        let status = response.status();
        if !status.is_success() {
            return Err(Error::Status {
                origin,
                status: status.as_u16(),
                hint: hint.to_owned(),
            });
        }
        let body = http::read_limited(response)
            .await
            .map_err(|e| http::unreachable(&origin, e, hint))?
            .unwrap_or_default();
        let endpoint = serde_json::from_slice::<Discovery>(&body)
            .ok()
            .and_then(|d| d.token_endpoint);
        let Some(endpoint) = endpoint else {
            return Err(Error::Malformed {
                origin,
                what: format!("{} without token_endpoint", http::shape(&body, false)),
                hint: hint.to_owned(),
            });
        };
        let ok = reqwest::Url::parse(&endpoint).is_ok_and(|u| {
            u.scheme() == "https" || (u.scheme() == "http" && crate::checker::is_loopback_host(&u))
        });
        if !ok {
            return Err(Error::Malformed {
                origin,
                what: format!("a token_endpoint that is not https:// ({endpoint})"),
                hint: "the client secret is sent only over https:// (or http:// on loopback)"
                    .to_owned(),
            });
        }
        Ok(endpoint)
    }

    async fn secret(&self) -> Result<ClientSecret, Error> {
        match &self.settings.secret {
            SecretFrom::Value(v) => Ok(v.clone()),
            SecretFrom::File(path) => {
                let unavailable = |detail: String| Error::Unavailable {
                    origin: format!("the client secret file {}", path.display()),
                    detail,
                    hint: "make --oidc-client-secret-file name a readable file holding the \
                           secret"
                        .to_owned(),
                };
                let text = tokio::fs::read_to_string(path)
                    .await
                    .map_err(|e| unavailable(format!("cannot be read: {}", e.kind())))?;
                let secret = text.trim();
                if secret.is_empty() {
                    return Err(unavailable("is empty".to_owned()));
                }
                Ok(ClientSecret::new(secret))
            }
        }
    }
}

/// What to do about an OAuth error code (RFC 6749 section 5.2).
fn oauth_hint(code: &str) -> String {
    match code {
        "invalid_client" => "the provider does not know this client id and secret: check \
                             --oidc-client-id, the secret, and the source's auth_method \
                             (client_secret_basic or client_secret_post)"
            .to_owned(),
        "unauthorized_client" => "enable the client-credentials grant for this client at the \
                                  provider"
            .to_owned(),
        "invalid_scope" => "ask only for scopes the client may have (--oidc-scope)".to_owned(),
        "invalid_target" => "the provider does not know the --audience asked for".to_owned(),
        _ => "see the provider's error above".to_owned(),
    }
}
