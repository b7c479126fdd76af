//! Why a token request was refused: one typed value per reason, each with its metric label,
//! HTTP status and OAuth error code. The text a client reads (and the log repeats) names what
//! failed in words; what came from the request is shown escaped and cut
//! ([`crate::report::Untrusted`]), and never an assertion, a certificate or a token.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use super::ca::ChainError;
use super::form::FormError;
use super::proof::assertion::{AssertionError, Staleness};
use super::proof::xfcc::XfccError;
use crate::listener::{Body, BodyError, json_response};
use crate::report::Untrusted;

/// Why a request was refused. Each variant is a reason label in the metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The body is too large, too slow, or cut off.
    #[error(transparent)]
    Body(BodyError),
    /// The form cannot be read.
    #[error(transparent)]
    Form(FormError),
    /// Another grant type.
    #[error(
        "grant_type {0} is not supported: send urn:ietf:params:oauth:grant-type:jwt-bearer (or \
         no body, with a client certificate)"
    )]
    UnsupportedGrant(Untrusted),
    /// No accepted proof at all.
    #[error("no proof of identity: send {hint} (accepted: {accepted})")]
    NoProof {
        /// What to send, for the first proof accepted.
        hint: &'static str,
        /// The proofs accepted.
        accepted: String,
    },
    /// The assertion cannot be read.
    #[error(transparent)]
    Assertion(AssertionError),
    /// The chain does not verify, or the leaf is not an instance identity.
    #[error(transparent)]
    Chain(ChainError),
    /// The leaf is expired or not valid yet.
    #[error("the certificate {}", if *.0 { "has expired" } else { "is not valid yet" })]
    Validity(bool),
    /// The assertion's signature, or its `iss`/`sub`.
    #[error(transparent)]
    Signature(super::proof::assertion::SignatureError),
    /// The assertion was made for another issuer.
    #[error("the assertion's aud is {got}, not this issuer's ({expected})")]
    Audience {
        /// The first `aud` the assertion named.
        got: Untrusted,
        /// What it may name.
        expected: String,
    },
    /// The assertion is too old, from the future, expired or too long-lived.
    #[error(transparent)]
    Stale(Staleness),
    /// The assertion was used before.
    #[error("the assertion was used before (its jti is known)")]
    Replay,
    /// The `X-Forwarded-Client-Cert` header cannot be read.
    #[error("X-Forwarded-Client-Cert {0}")]
    Xfcc(XfccError),
    /// Two proofs name different instances.
    #[error("the proofs in the request name different instances")]
    Disagree,
    /// The organization is not allowed.
    #[error("the organization {0} is not allowed")]
    Org(String),
    /// The space is not allowed.
    #[error("the space {0} is not allowed")]
    Space(String),
    /// The audience is not allowed.
    #[error("the audience {0} is not allowed")]
    AudienceNotAllowed(Untrusted),
    /// The instance asked for more tokens than its budget allows.
    #[error(
        "this instance asked for too many tokens; retry in {retry_after} s (a sidecar asks about \
         every half hour)"
    )]
    InstanceBudget {
        /// Seconds until it may ask again.
        retry_after: u64,
    },
    /// The service remembers as many assertions as it can (the last resort).
    #[error("too many assertions in flight; retry")]
    Busy,
    /// The token could not be signed.
    #[error("the token could not be signed")]
    Internal,
}

impl Refusal {
    /// The label in `sts_sidecar_issuer_refusals_total{reason=...}`.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Body(_) => "body",
            Refusal::Form(_) => "malformed",
            Refusal::UnsupportedGrant(_) => "grant_type",
            Refusal::NoProof { .. } => "no_proof",
            Refusal::Assertion(_) => "assertion",
            Refusal::Chain(ChainError::Subject(_)) => "subject",
            Refusal::Chain(_) => "chain",
            Refusal::Validity(_) => "validity",
            Refusal::Signature(_) => "signature",
            Refusal::Audience { .. } => "assertion_audience",
            Refusal::Stale(_) => "stale",
            Refusal::Replay => "replay",
            Refusal::Xfcc(_) => "xfcc",
            Refusal::Disagree => "proofs_disagree",
            Refusal::Org(_) => "org_not_allowed",
            Refusal::Space(_) => "space_not_allowed",
            Refusal::AudienceNotAllowed(_) => "audience_not_allowed",
            Refusal::InstanceBudget { .. } => "instance_budget",
            Refusal::Busy => "busy",
            Refusal::Internal => "internal",
        }
    }

    /// Every reason label, for tests and dashboards.
    pub const REASONS: [&'static str; 20] = [
        "body",
        "malformed",
        "grant_type",
        "no_proof",
        "assertion",
        "subject",
        "chain",
        "validity",
        "signature",
        "assertion_audience",
        "stale",
        "replay",
        "xfcc",
        "proofs_disagree",
        "org_not_allowed",
        "space_not_allowed",
        "audience_not_allowed",
        "instance_budget",
        "busy",
        "internal",
    ];

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Body(e) => e.status(),
            Refusal::Form(_) | Refusal::UnsupportedGrant(_) => StatusCode::BAD_REQUEST,
            Refusal::Org(_) | Refusal::Space(_) | Refusal::AudienceNotAllowed(_) => {
                StatusCode::FORBIDDEN
            }
            Refusal::InstanceBudget { .. } => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The OAuth `error` code (RFC 6749 section 5.2, RFC 8693 for `invalid_target`).
    fn code(&self) -> &'static str {
        match self {
            Refusal::Body(_) | Refusal::Form(_) => "invalid_request",
            Refusal::UnsupportedGrant(_) => "unsupported_grant_type",
            Refusal::Org(_) | Refusal::Space(_) => "access_denied",
            Refusal::AudienceNotAllowed(_) => "invalid_target",
            Refusal::InstanceBudget { .. } => "slow_down",
            Refusal::Busy => "temporarily_unavailable",
            Refusal::Internal => "server_error",
            _ => "invalid_client",
        }
    }

    /// `Retry-After`, for refusals that end by themselves.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Refusal::InstanceBudget { retry_after } => Some(*retry_after),
            Refusal::Busy => Some(1),
            _ => None,
        }
    }

    /// The OAuth error response.
    pub fn response(&self) -> Response<Body> {
        let body = serde_json::json!({
            "error": self.code(),
            "error_description": self.to_string(),
        });
        let mut r = json_response(self.status(), Bytes::from(body.to_string()));
        let headers = r.headers_mut();
        if self.status() == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_client\""),
            );
        }
        if let Some(secs) = self.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if matches!(self, Refusal::Body(_)) {
            // The rest of the body, if any, is not worth reading.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_listed_once() {
        let mut sorted = Refusal::REASONS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), Refusal::REASONS.len());
        for r in [
            Refusal::Replay,
            Refusal::Busy,
            Refusal::Internal,
            Refusal::InstanceBudget { retry_after: 3 },
            Refusal::Validity(true),
            Refusal::Disagree,
        ] {
            assert!(Refusal::REASONS.contains(&r.reason()), "{r:?}");
        }
    }

    #[test]
    fn a_spent_budget_is_429_with_retry_after() {
        let r = Refusal::InstanceBudget { retry_after: 17 }.response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "17");
    }

    #[test]
    fn what_the_client_sent_is_escaped_in_the_description() {
        let r = Refusal::AudienceNotAllowed(Untrusted::new("a\nINFO token issued"));
        let text = r.to_string();
        assert!(!text.contains('\n') && text.contains("a\\nINFO"), "{text}");
    }
}
