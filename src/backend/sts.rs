//! STS `AssumeRoleWithWebIdentity` through aws-sdk-sts. Region, endpoint
//! (`AWS_ENDPOINT_URL_STS`) and the rest of the usual AWS settings come through aws-config; the
//! SDK's own retries are off so that one refresh is one STS call.

use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_sts::config::http::HttpResponse;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sts::operation::assume_role_with_web_identity::{
    AssumeRoleWithWebIdentityError, AssumeRoleWithWebIdentityOutput,
};

use super::{Credentials, Error, ErrorClass, Role, SecretAccessKey, SessionToken, StsSettings};
use crate::metrics::Metrics;
use crate::token::{Claims, TokenSource};
use crate::trust::Trust;

/// A role assumed with web identity.
#[derive(Debug)]
pub struct Sts {
    client: aws_sdk_sts::Client,
    token: Arc<TokenSource>,
    role: Role,
    duration_secs: i32,
    metrics: Arc<Metrics>,
}

/// Builds an STS client from the usual AWS settings plus ours. Makes no network call.
pub async fn client(settings: &StsSettings) -> aws_sdk_sts::Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .no_credentials()
        .region(aws_config::Region::new(settings.region.clone()))
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(settings.timeout)
                .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
                .build(),
        );
    if let Some(endpoint) = &settings.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    aws_sdk_sts::Client::new(&loader.load().await)
}

/// The SDK's default HTTPS client (rustls on aws-lc-rs), plus what it lacks by default: the
/// `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY` variables.
fn http_client() -> aws_sdk_sts::config::SharedHttpClient {
    use aws_smithy_http_client::{Connector, proxy::ProxyConfig, tls};
    aws_smithy_http_client::Builder::new().build_with_connector_fn(|settings, components| {
        let mut builder = Connector::builder();
        builder.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            builder.set_sleep_impl(components.sleep_impl());
        }
        builder
            .proxy_config(ProxyConfig::from_env())
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::AwsLc,
            ))
            .build()
    })
}

impl Sts {
    /// A backend for `role`, with tokens from `token`.
    pub fn new(
        client: aws_sdk_sts::Client,
        token: Arc<TokenSource>,
        role: Role,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            client,
            token,
            duration_secs: i32::try_from(role.duration.as_secs()).unwrap_or(43_200),
            role,
            metrics,
        }
    }

    /// The role ARN.
    pub fn role_arn(&self) -> &str {
        &self.role.arn
    }

    /// The identity token source.
    pub fn token_source(&self) -> &TokenSource {
        &self.token
    }

    /// One `AssumeRoleWithWebIdentity` call (after getting a token, cached or fresh).
    pub async fn fetch(&self) -> Result<Credentials, Error> {
        let (token, _claims) = self.token.token().await?;
        let started = tokio::time::Instant::now();
        let result = self
            .client
            .assume_role_with_web_identity()
            .role_arn(&self.role.arn)
            .role_session_name(&self.role.session_name)
            .web_identity_token(token.expose())
            .duration_seconds(self.duration_secs)
            .send()
            .await;
        self.metrics
            .observe_upstream("sts", result.is_ok(), started.elapsed());
        interpret(
            &self.role.arn,
            &self.role.account_id,
            result,
            token.expose(),
        )
    }
}

/// Turns the result of one `AssumeRoleWithWebIdentity` call for `role_arn` into credentials or
/// a classified error. `token` (the identity token sent) is scrubbed from every message, even if
/// an upstream echoes it. Public for the fuzz target that feeds it arbitrary STS answers.
pub fn interpret(
    role_arn: &str,
    account_id: &str,
    result: Result<
        AssumeRoleWithWebIdentityOutput,
        SdkError<AssumeRoleWithWebIdentityError, HttpResponse>,
    >,
    token: &str,
) -> Result<Credentials, Error> {
    let output =
        result.map_err(|e| classify(role_arn, "AssumeRoleWithWebIdentity", e, &[token]))?;
    credentials(
        "AssumeRoleWithWebIdentity",
        role_arn,
        account_id,
        output.credentials(),
        output.assumed_role_user(),
    )
}

/// The credentials of a successful STS `call` (either kind of AssumeRole answers with the same
/// shapes), or why the answer is not usable.
pub(super) fn credentials(
    call: &'static str,
    role_arn: &str,
    account_id: &str,
    creds: Option<&aws_sdk_sts::types::Credentials>,
    assumed: Option<&aws_sdk_sts::types::AssumedRoleUser>,
) -> Result<Credentials, Error> {
    let malformed = |what: &str| Error::Transport {
        call,
        role_arn: role_arn.to_owned(),
        detail: format!("the answer has no {what}"),
        source: None,
        class: ErrorClass::Malformed,
    };
    let creds = creds.ok_or_else(|| malformed("Credentials"))?;
    if creds.access_key_id().is_empty() || creds.secret_access_key().is_empty() {
        return Err(malformed("access key"));
    }
    if creds.session_token().is_empty() {
        return Err(malformed("session token"));
    }
    Ok(Credentials {
        access_key_id: creds.access_key_id().to_owned(),
        secret_access_key: SecretAccessKey::new(creds.secret_access_key()),
        session_token: SessionToken::new(creds.session_token()),
        expiration: creds.expiration().secs(),
        account_id: account_id.to_owned(),
        role_arn: role_arn.to_owned(),
        assumed_role_arn: assumed.map(|u| u.arn().to_owned()),
    })
}

/// Turns a failed STS `call` for `role_arn` into a classified error; every one of `secrets`
/// (the identity token, or the first link's keys) is scrubbed from every message.
pub(super) fn classify<E>(
    role_arn: &str,
    call: &'static str,
    err: SdkError<E, HttpResponse>,
    secrets: &[&str],
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let role_arn = role_arn.to_owned();
    // Never let a secret through, even if an upstream echoes it.
    let scrub = |s: &str| {
        secrets
            .iter()
            .filter(|t| !t.is_empty())
            .fold(s.to_owned(), |s, t| s.replace(t, "<redacted>"))
    };
    let transport =
        |detail: String, class: ErrorClass, source: Option<super::BoxError>| Error::Transport {
            call,
            role_arn: role_arn.clone(),
            detail,
            source,
            class,
        };
    match err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code().map(scrub);
            let message = service.err().message().unwrap_or("").to_owned();
            match code {
                Some(code) => {
                    let mut class = classify_code(&code);
                    // An unknown code on a 5xx or a 429 is the service's trouble, not ours.
                    if class == ErrorClass::Denied && status >= 500 {
                        class = ErrorClass::Unavailable;
                    } else if class == ErrorClass::Denied && status == 429 {
                        class = ErrorClass::Throttled;
                    }
                    Error::Sts {
                        call,
                        class,
                        role_arn,
                        code,
                        message: scrub(&message),
                    }
                }
                None => transport(
                    format!("STS answered HTTP {status} without an error code"),
                    if status >= 500 {
                        ErrorClass::Unavailable
                    } else {
                        ErrorClass::Malformed
                    },
                    None,
                ),
            }
        }
        SdkError::TimeoutError(_) => {
            transport("timed out".to_owned(), ErrorClass::Unavailable, None)
        }
        SdkError::DispatchFailure(ref failure) => {
            let what = if failure.is_timeout() {
                "STS did not answer in time"
            } else if failure.is_io() {
                "cannot reach STS"
            } else {
                "the request to STS failed"
            };
            // The connector's error chain says why, in words (connection refused, DNS).
            let cause = failure
                .as_connector_error()
                .and_then(std::error::Error::source)
                .map(crate::report::chain);
            let detail = match cause {
                Some(cause) => format!("{what}: {}", scrub(&cause)),
                None => what.to_owned(),
            };
            transport(detail, ErrorClass::Unavailable, None)
        }
        SdkError::ResponseError(response) => {
            let status = response.raw().status().as_u16();
            let class = if status >= 500 {
                ErrorClass::Unavailable
            } else {
                ErrorClass::Malformed
            };
            transport(
                format!("STS answered HTTP {status} with a body that is not an STS answer"),
                class,
                None,
            )
        }
        SdkError::ConstructionFailure(_) => transport(
            "the request could not be built".to_owned(),
            ErrorClass::Denied,
            None,
        ),
        other => transport(
            scrub(&crate::report::chain(&other)),
            ErrorClass::Denied,
            None,
        ),
    }
}

/// What to do about an STS error code (printed by `check`), given the token's claims.
pub fn hint(code: &str, message: &str, claims: Option<&Claims>, role: &Role) -> String {
    let iss = claims
        .and_then(|c| c.iss.as_deref())
        .unwrap_or("<token issuer>");
    let role_arn = &role.arn;
    match code {
        "AccessDenied" => match claims {
            Some(claims) => {
                let trust = Trust::for_claims(claims, &role.account_id);
                let conditions = trust
                    .conditions
                    .iter()
                    .map(|(k, v)| format!("{k} = \"{v}\""))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(
                    "the trust policy of {role_arn} did not match this token: it must allow \
                     sts:AssumeRoleWithWebIdentity for the federated principal {} with \
                     conditions that match {conditions} (StringLike for wildcards); a condition \
                     on any other value, or another principal, is what failed",
                    trust.principal
                )
            }
            None => format!(
                "the trust policy of {role_arn} must allow sts:AssumeRoleWithWebIdentity for the \
                 token's issuer"
            ),
        },
        "InvalidIdentityToken" if message.contains("audience") => format!(
            "add {} to the client IDs (audiences) of the IAM OIDC provider for {iss}",
            claims
                .and_then(|c| c.aud.first())
                .map_or("the token's aud", String::as_str)
        ),
        "InvalidIdentityToken" => format!(
            "create an IAM OIDC provider for {iss} and make \
             {iss}/.well-known/openid-configuration and its JWKS reachable from the internet over \
             HTTPS"
        ),
        "IDPRejectedClaim" => "the identity provider rejected the token's claims: compare the \
                               trust policy's conditions with the claims above"
            .to_owned(),
        "ExpiredTokenException" | "ExpiredToken" => "the token expired before STS checked it: \
                                                     check the clocks (NTP) here and at the \
                                                     token's issuer"
            .to_owned(),
        "ValidationError" if message.contains("DurationSeconds") => {
            "lower --duration to at most the role's MaxSessionDuration".to_owned()
        }
        "RegionDisabledException" => "activate STS in this region for the account, or choose \
                                      another --sts-region"
            .to_owned(),
        _ => "see the STS error above".to_owned(),
    }
}

/// Maps an STS error code to what to do about it (docs/upstream-apis.md §3).
pub fn classify_code(code: &str) -> ErrorClass {
    match code {
        "Throttling"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "TooManyRequestsException"
        | "SlowDown"
        | "PriorRequestNotComplete" => ErrorClass::Throttled,
        "IDPCommunicationError"
        | "InternalFailure"
        | "InternalError"
        | "ServiceUnavailable"
        | "RequestTimeout"
        | "RequestTimeoutException" => ErrorClass::Unavailable,
        "InvalidIdentityToken" | "ExpiredTokenException" | "ExpiredToken" => {
            ErrorClass::TokenRejected
        }
        _ => ErrorClass::Denied,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_sts_error_codes() {
        assert_eq!(classify_code("Throttling"), ErrorClass::Throttled);
        assert_eq!(
            classify_code("IDPCommunicationError"),
            ErrorClass::Unavailable
        );
        assert_eq!(
            classify_code("InvalidIdentityToken"),
            ErrorClass::TokenRejected
        );
        assert_eq!(
            classify_code("ExpiredTokenException"),
            ErrorClass::TokenRejected
        );
        assert_eq!(classify_code("AccessDenied"), ErrorClass::Denied);
        assert_eq!(classify_code("IDPRejectedClaim"), ErrorClass::Denied);
        assert_eq!(classify_code("MalformedPolicyDocument"), ErrorClass::Denied);
    }
}
