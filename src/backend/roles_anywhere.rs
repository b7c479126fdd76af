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
use super::{Credentials, Error, ErrorClass, Role, SecretAccessKey, SessionToken};
use crate::identity::{IdentityFiles, LeafInfo};
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

impl Settings {
    /// The settings in one line, for `check`.
    pub fn describe(&self) -> String {
        format!(
            "Roles Anywhere at {} (from {}), trust anchor {}, profile {}{}",
            self.endpoint,
            self.endpoint_origin,
            self.trust_anchor_arn,
            self.profile_arn,
            self.session_name
                .as_ref()
                .map(|n| format!(", session {n}"))
                .unwrap_or_default()
        )
    }
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
    /// A client for `role`; makes no network call.
    pub fn new(
        settings: &Settings,
        role: &Role,
        metrics: std::sync::Arc<Metrics>,
    ) -> Result<Self, Error> {
        let setup = |detail: String, source: Option<super::BoxError>| Error::Setup {
            role_arn: role.arn.clone(),
            detail,
            source,
        };
        let base = reqwest::Url::parse(&settings.endpoint).map_err(|e| {
            setup(
                format!(
                    "the Roles Anywhere endpoint {} is not a URL",
                    settings.endpoint
                ),
                Some(Box::new(e)),
            )
        })?;
        let host = match (base.host_str(), base.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => {
                return Err(setup(
                    format!(
                        "the Roles Anywhere endpoint {} has no host",
                        settings.endpoint
                    ),
                    None,
                ));
            }
        };
        let query = x509_sign::query(&settings.profile_arn, &role.arn, &settings.trust_anchor_arn);
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("sts-sidecar/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                setup(
                    "cannot set up the HTTP client".to_owned(),
                    Some(Box::new(e)),
                )
            })?;
        Ok(Self {
            url: format!("{}/sessions?{query}", settings.endpoint),
            settings: settings.clone(),
            role_arn: role.arn.clone(),
            account_id: role.account_id.clone(),
            duration_secs: role.duration.as_secs(),
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
            .map_err(|why| self.failed(None, why.to_string(), ErrorClass::Identity))?;
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
                    "timed out"
                } else {
                    "cannot reach Roles Anywhere"
                };
                return Err(self.transport(detail, e));
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
            .map_err(|e| self.transport("the answer could not be read", e))?;
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
            source: None,
            class,
        }
    }

    fn transport(&self, detail: &str, e: reqwest::Error) -> Error {
        Error::RolesAnywhere {
            role_arn: self.role_arn.clone(),
            code: None,
            detail: detail.to_owned(),
            source: Some(Box::new(e)),
            class: ErrorClass::Unavailable,
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
        let expiration = crate::clock::parse_rfc3339(&creds.expiration)
            .ok_or_else(|| malformed("readable expiration"))?;
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

/// What Roles Anywhere will make of a certificate, for `check`: the principal tags it sets
/// (`aws:PrincipalTag/x509Subject/CN = ...`), a note when the subject has several values of one
/// attribute (Diego's OUs), the source identity, and the trust policy the role needs.
pub fn describe_certificate(leaf: &LeafInfo, trust_anchor_arn: &str) -> Vec<String> {
    let mut out = vec!["principal tags Roles Anywhere sets from the certificate:".to_owned()];
    let mut counts: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (name, _) in &leaf.subject_attributes {
        *counts.entry(name.as_str()).or_default() += 1;
    }
    for (name, value) in &leaf.subject_attributes {
        out.push(format!(
            "      aws:PrincipalTag/x509Subject/{name} = {value}"
        ));
    }
    for (name, value) in &leaf.issuer_attributes {
        out.push(format!(
            "      aws:PrincipalTag/x509Issuer/{name} = {value}"
        ));
    }
    for (kind, value) in leaf.san.iter().filter(|(k, _)| k == "DNS" || k == "URI") {
        out.push(format!("      aws:PrincipalTag/x509SAN/{kind} = {value}"));
    }
    let mut repeated: Vec<(&&str, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    repeated.sort();
    if let Some((name, n)) = repeated.first() {
        out.push(format!(
            "      note        the subject has {n} {name} values (Diego puts org, space and app \
             in one multi-valued RDN); how Roles Anywhere turns several values of one attribute \
             into tags is not documented, so the lines above show one per value and conditions \
             on {name} are unverified: prefer CN or test them"
        ));
    }
    let cn = leaf
        .subject_attributes
        .iter()
        .find(|(n, _)| n == "CN")
        .map_or("(no CN)", |(_, v)| v.as_str());
    out.push(format!("      source identity {cn} (the subject CN)"));
    out.push("trust policy of the role:".to_owned());
    out.push("      Principal   {\"Service\": \"rolesanywhere.amazonaws.com\"}".to_owned());
    out.push("      Action      sts:AssumeRole, sts:TagSession, sts:SetSourceIdentity".to_owned());
    out.push(format!(
        "      Condition   \"ArnEquals\": {{\"aws:SourceArn\": \"{trust_anchor_arn}\"}}"
    ));
    let app_ou = leaf
        .organizational_units
        .iter()
        .find(|ou| ou.starts_with("app:"));
    out.push(match app_ou {
        // Diego: the instance GUID changes with every instance; the app guid does not.
        Some(ou) => format!(
            "      Condition   \"StringLike\": {{\"aws:PrincipalTag/x509Subject/OU\": \"*{ou}*\"}}  \
             (unverified: see the note on several OU values)"
        ),
        None => format!(
            "      Condition   \"StringEquals\": {{\"aws:PrincipalTag/x509Subject/CN\": \"{cn}\"}}"
        ),
    });
    out
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
