//! IAM Roles Anywhere `CreateSession`: credentials straight from an X.509 certificate and its
//! key, with no identity token and no token service.
//!
//! `POST <endpoint>/sessions?profileArn=..&roleArn=..&trustAnchorArn=..` with the body
//! `{"durationSeconds":N}` (plus `roleSessionName` when one is configured; the profile must
//! accept it), signed with the certificate's key ([`super::x509_sign`]). The answer is `201` with
//! `credentialSet[0].credentials` (`accessKeyId`, `secretAccessKey`, `sessionToken`,
//! `expiration` in RFC 3339). Errors are JSON with `message` and a type in the
//! `x-amzn-ErrorType` header (or `__type`/`code` in the body): `AccessDeniedException` (trust
//! anchor disabled, a certificate it did not issue, a role that does not trust
//! `rolesanywhere.amazonaws.com`, a principal-tag condition not met), `ValidationException`
//! (duration over the profile's limit, a bad ARN) and `ResourceNotFoundException` need a human;
//! throttling and 5xx are retried like STS's.
//!
//! The certificate and key are read as a matched pair at every refresh, exactly as for the token
//! service ([`crate::identity`]), so a rotation in progress is waited out.

use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;

use super::x509_sign::{self, SigningKey};
use super::{Credentials, Error, ErrorClass, SecretAccessKey, SessionToken};
use crate::identity::IdentityFiles;
use crate::metrics::Metrics;

/// A Roles Anywhere role, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The trust anchor.
    pub trust_anchor_arn: String,
    /// The profile.
    pub profile_arn: String,
    /// The region of both.
    pub region: String,
    /// The endpoint's base URL (no trailing slash).
    pub endpoint: String,
    /// Where `endpoint` came from (a flag, variable, key, or the default).
    pub endpoint_origin: String,
    /// `roleSessionName`, when configured.
    pub session_name: Option<String>,
    /// Timeout of one call.
    pub timeout: Duration,
    /// The certificate and key.
    pub identity: IdentityFiles,
}

/// The parts of a Roles Anywhere ARN: `arn:<partition>:rolesanywhere:<region>:<account>:<kind>/<id>`.
pub fn parse_arn<'a>(arn: &'a str, kind: &str) -> Option<(&'a str, &'a str)> {
    let [_, partition, service, region, account, res] = crate::config::split_arn(arn)?;
    if service != "rolesanywhere" {
        return None;
    }
    let id = res.strip_prefix(kind)?.strip_prefix('/')?;
    let ok = partition.starts_with("aws")
        && !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !id.is_empty()
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    ok.then_some((region, account))
}

/// The default endpoint for `region`: regional, FIPS and/or dual-stack.
pub fn default_endpoint(region: &str, fips: bool, dual_stack: bool) -> String {
    let name = if fips {
        "rolesanywhere-fips"
    } else {
        "rolesanywhere"
    };
    let domain = if dual_stack {
        "api.aws"
    } else {
        "amazonaws.com"
    };
    format!("https://{name}.{region}.{domain}")
}

/// One role's `CreateSession` client.
#[derive(Debug)]
pub struct RolesAnywhere {
    settings: Settings,
    role_arn: String,
    account_id: String,
    duration_secs: u64,
    url: String,
    host: String,
    query: String,
    client: reqwest::Client,
    metrics: std::sync::Arc<Metrics>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    credential_set: Vec<CredentialSet>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CredentialSet {
    credentials: Option<AnswerCredentials>,
    assumed_role_user: Option<AssumedRoleUser>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnswerCredentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
    expiration: String,
}

#[derive(Deserialize)]
struct AssumedRoleUser {
    arn: Option<String>,
}

impl RolesAnywhere {
    /// A client for `role_arn` (in `account_id`); makes no network call.
    pub fn new(
        settings: &Settings,
        role_arn: &str,
        account_id: &str,
        duration: Duration,
        metrics: std::sync::Arc<Metrics>,
    ) -> Result<Self, String> {
        let base = reqwest::Url::parse(&settings.endpoint).map_err(|e| e.to_string())?;
        let host = match (base.host_str(), base.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => return Err(format!("{} has no host", settings.endpoint)),
        };
        let query = x509_sign::query(&settings.profile_arn, role_arn, &settings.trust_anchor_arn);
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("sts-sidecar/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| crate::token::chain(&e))?;
        Ok(Self {
            url: format!("{}/sessions?{query}", settings.endpoint),
            settings: settings.clone(),
            role_arn: role_arn.to_owned(),
            account_id: account_id.to_owned(),
            duration_secs: duration.as_secs(),
            host,
            query,
            client,
            metrics,
        })
    }

    /// The role ARN.
    pub fn role_arn(&self) -> &str {
        &self.role_arn
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// `Roles Anywhere <endpoint> with the certificate <path>`, for `/status`.
    pub fn describe(&self) -> String {
        format!(
            "Roles Anywhere {} with the certificate {}",
            self.settings.endpoint,
            self.settings.identity.cert_path.display()
        )
    }

    /// The request body.
    fn body(&self) -> String {
        match &self.settings.session_name {
            Some(name) => serde_json::json!({
                "durationSeconds": self.duration_secs,
                "roleSessionName": name,
            })
            .to_string(),
            None => format!("{{\"durationSeconds\":{}}}", self.duration_secs),
        }
    }

    /// One `CreateSession` call with the certificate and key as they are now.
    pub async fn fetch(&self) -> Result<Credentials, Error> {
        let pair = self.settings.identity.read_pair().await?;
        let key = pair
            .key_der()
            .ok_or_else(|| {
                self.failed(
                    None,
                    "the private key is not PEM".to_owned(),
                    ErrorClass::Identity,
                )
            })
            .and_then(|k| {
                SigningKey::from_der(&k).map_err(|why| {
                    self.failed(
                        None,
                        format!("the private key is {why}"),
                        ErrorClass::Identity,
                    )
                })
            })?;
        let b64 = |c: &[u8]| base64::engine::general_purpose::STANDARD.encode(c);
        let chain = pair.chain_der();
        let Some((leaf, rest)) = chain.split_first() else {
            return Err(self.failed(
                None,
                "the certificate file holds no certificate".to_owned(),
                ErrorClass::Identity,
            ));
        };
        let x509 = b64(leaf.as_ref());
        let further: Vec<String> = rest.iter().map(|c| b64(c.as_ref())).collect();
        let chain_header = (!further.is_empty()).then(|| further.join(","));
        let body = self.body();
        let amz_date = x509_sign::amz_date(crate::clock::now_unix());
        let request = x509_sign::Request {
            host: &self.host,
            query: &self.query,
            body: body.as_bytes(),
            amz_date: &amz_date,
            region: &self.settings.region,
            x509: &x509,
            chain: chain_header.as_deref(),
        };
        let authorization = x509_sign::sign(&key, &pair.leaf.serial, &request)
            .map_err(|why| self.failed(None, why, ErrorClass::Identity))?;
        let mut call = self
            .client
            .post(&self.url)
            .header(::http::header::HOST, &self.host)
            .header(::http::header::CONTENT_TYPE, "application/json")
            .header("x-amz-date", &amz_date)
            .header("x-amz-x509", &x509)
            .header(::http::header::AUTHORIZATION, authorization);
        if let Some(chain) = &chain_header {
            call = call.header("x-amz-x509-chain", chain);
        }
        let started = tokio::time::Instant::now();
        let result = call.body(body).send().await;
        let response = match result {
            Ok(r) => r,
            Err(e) => {
                self.metrics
                    .observe_upstream("rolesanywhere", false, started.elapsed());
                let detail = if e.is_timeout() {
                    "timed out".to_owned()
                } else {
                    crate::token::chain(&e)
                };
                return Err(self.failed(None, detail, ErrorClass::Unavailable));
            }
        };
        let status = response.status();
        let error_type = response
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(':').next().unwrap_or(v).to_owned());
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.failed(None, crate::token::chain(&e), ErrorClass::Unavailable))?;
        self.metrics
            .observe_upstream("rolesanywhere", status.is_success(), started.elapsed());
        if !status.is_success() {
            return Err(self.error_answer(status.as_u16(), error_type, &bytes));
        }
        self.interpret(&bytes)
    }

    fn failed(&self, code: Option<String>, detail: String, class: ErrorClass) -> Error {
        Error::RolesAnywhere {
            role_arn: self.role_arn.clone(),
            code,
            detail,
            class,
        }
    }

    fn error_answer(&self, status: u16, header_type: Option<String>, body: &[u8]) -> Error {
        let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let text = |k: &str| json.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let code = header_type
            .or_else(|| text("__type"))
            .or_else(|| text("code"))
            .map(|c| c.rsplit('#').next().unwrap_or(&c).to_owned());
        let message = text("message")
            .or_else(|| text("Message"))
            .unwrap_or_default();
        let class = classify(status, code.as_deref());
        let detail = match &code {
            Some(c) => format!("HTTP {status} {c}: {message}"),
            None => format!(
                "HTTP {status}{}",
                if message.is_empty() {
                    String::new()
                } else {
                    format!(": {message}")
                }
            ),
        };
        self.failed(code, detail, class)
    }

    fn interpret(&self, body: &[u8]) -> Result<Credentials, Error> {
        let malformed = |what: &str| {
            self.failed(
                None,
                format!("the answer has no {what}"),
                ErrorClass::Malformed,
            )
        };
        let answer: Answer =
            serde_json::from_slice(body).map_err(|_| malformed("credentialSet"))?;
        let set = answer
            .credential_set
            .into_iter()
            .next()
            .ok_or_else(|| malformed("credentialSet[0]"))?;
        let creds = set.credentials.ok_or_else(|| malformed("credentials"))?;
        if creds.access_key_id.is_empty()
            || creds.secret_access_key.is_empty()
            || creds.session_token.is_empty()
        {
            return Err(malformed("complete credentials"));
        }
        let expiration = aws_sdk_sts::primitives::DateTime::from_str(
            &creds.expiration,
            aws_sdk_sts::primitives::DateTimeFormat::DateTime,
        )
        .map_err(|_| malformed("readable expiration"))?
        .secs();
        Ok(Credentials {
            access_key_id: creds.access_key_id,
            secret_access_key: SecretAccessKey::new(creds.secret_access_key),
            session_token: SessionToken::new(creds.session_token),
            expiration,
            account_id: self.account_id.clone(),
            role_arn: self.role_arn.clone(),
            assumed_role_arn: set.assumed_role_user.and_then(|u| u.arn),
        })
    }
}

/// What to do about an error answer.
pub fn classify(status: u16, code: Option<&str>) -> ErrorClass {
    match code {
        Some("ThrottlingException" | "TooManyRequestsException") => ErrorClass::Throttled,
        _ if status == 429 => ErrorClass::Throttled,
        _ if status >= 500 => ErrorClass::Unavailable,
        _ => ErrorClass::Denied,
    }
}

/// What to do about a `CreateSession` error code (printed by `check`).
pub fn hint(code: Option<&str>, detail: &str, role_arn: &str) -> String {
    match code {
        Some("AccessDeniedException") => format!(
            "Roles Anywhere refused: check that the trust anchor is enabled and holds the CA that \
             issued the certificate (for Cloud Foundry the Diego instance identity CA bundle), \
             that the profile is enabled and lists {role_arn}, and that the role's trust policy \
             allows rolesanywhere.amazonaws.com sts:AssumeRole, sts:TagSession and \
             sts:SetSourceIdentity with conditions the certificate's principal tags meet"
        ),
        Some("ValidationException") if detail.contains("uration") => {
            "lower --duration to at most the profile's durationSeconds".to_owned()
        }
        Some("ValidationException") => "check the trust anchor, profile and role ARNs, and that \
                                        the profile accepts a role session name if one is set"
            .to_owned(),
        Some("ResourceNotFoundException") => "the trust anchor or profile does not exist in this \
                                              region and account"
            .to_owned(),
        _ => "check --rolesanywhere-endpoint (or AWS_ENDPOINT_URL_ROLESANYWHERE) and HTTPS_PROXY"
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_roles_anywhere_arns() {
        assert_eq!(
            parse_arn(
                "arn:aws:rolesanywhere:us-east-2:291738886548:trust-anchor/a545a1fc-5d86",
                "trust-anchor"
            ),
            Some(("us-east-2", "291738886548"))
        );
        assert_eq!(
            parse_arn(
                "arn:aws:rolesanywhere:us-east-2:291738886548:profile/x",
                "trust-anchor"
            ),
            None
        );
        assert_eq!(
            parse_arn("arn:aws:iam::291738886548:role/x", "profile"),
            None
        );
        assert_eq!(
            parse_arn("arn:aws:rolesanywhere:us-east-2:2917:profile/x", "profile"),
            None
        );
    }

    #[test]
    fn endpoints_follow_the_region_fips_and_dual_stack() {
        assert_eq!(
            default_endpoint("eu-central-1", false, false),
            "https://rolesanywhere.eu-central-1.amazonaws.com"
        );
        assert_eq!(
            default_endpoint("us-east-1", true, false),
            "https://rolesanywhere-fips.us-east-1.amazonaws.com"
        );
        assert_eq!(
            default_endpoint("us-east-1", false, true),
            "https://rolesanywhere.us-east-1.api.aws"
        );
    }

    #[test]
    fn classifies_error_answers() {
        assert_eq!(
            classify(403, Some("AccessDeniedException")),
            ErrorClass::Denied
        );
        assert_eq!(
            classify(400, Some("ValidationException")),
            ErrorClass::Denied
        );
        assert_eq!(
            classify(400, Some("ThrottlingException")),
            ErrorClass::Throttled
        );
        assert_eq!(classify(429, None), ErrorClass::Throttled);
        assert_eq!(classify(503, None), ErrorClass::Unavailable);
    }
}
