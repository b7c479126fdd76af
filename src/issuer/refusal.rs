//! Why a token request was refused: one typed value per reason, each with its metric label,
//! HTTP status and OAuth error code. The text a client reads (and the log repeats) names what
//! failed in words; what came from the request is shown escaped and cut
//! ([`crate::report::Untrusted`]), and never an assertion, a certificate or a token.

//!
//! The reasons the parts of the grant give (the form's, each proof's, the chain's) are here too,
//! so that this file depends on nothing else of the issuer's and every step depends on it.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use super::GRANT_JWT_BEARER;
use crate::listener::{Body, BodyError, json_response};
use crate::report::Untrusted;

/// The longest `jti` accepted (the sidecar sends 32 characters).
pub const MAX_JTI: usize = 256;
/// The shortest `jti` accepted.
pub const MIN_JTI: usize = 16;
/// How far ahead of the issuer's clock `iat` may be (clock skew).
pub const MAX_AHEAD: i64 = 60;
/// How long after `iat` an assertion may expire at most.
pub const MAX_LIFETIME: i64 = 300;
/// The most certificates `x5c` may hold.
pub const MAX_CHAIN: usize = 5;
/// The largest `X-Forwarded-Client-Cert` value read.
pub const MAX_XFCC: usize = 16 * 1024;

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
    Signature(SignatureError),
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

/// Why a form cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// A key given twice (in the body, or in the body and the query).
    #[error("{0} is given more than once")]
    Duplicate(Untrusted),
    /// A body of another type.
    #[error("the body must be application/x-www-form-urlencoded")]
    ContentType,
    /// The JWT bearer grant without its assertion.
    #[error("grant_type is the JWT bearer grant but there is no assertion")]
    NoAssertion,
    /// An assertion without the grant that carries it.
    #[error("an assertion needs grant_type={GRANT_JWT_BEARER}")]
    NoGrant,
}

impl From<FormError> for Refusal {
    fn from(e: FormError) -> Self {
        Refusal::Form(e)
    }
}

/// Why an assertion cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    /// Not a compact JWS with JSON header and claims.
    #[error("the assertion {0}")]
    NotJws(crate::jws::ParseError),
    /// No supported `alg`.
    #[error("the assertion names no alg of RS256, ES256, ES384")]
    Alg,
    /// No usable `x5c`.
    #[error("the assertion has no x5c certificate chain (1 to {MAX_CHAIN} certificates)")]
    NoChain,
    /// An `x5c` entry that is not base64.
    #[error("the assertion has an x5c entry that is not base64 DER")]
    ChainEntry,
    /// A claim missing or of the wrong type.
    #[error("the assertion has no {0} claim of the right type")]
    Claim(&'static str),
    /// A `jti` too short or too long.
    #[error("the assertion's jti must have {MIN_JTI} to {MAX_JTI} characters")]
    Jti,
}

impl From<AssertionError> for Refusal {
    fn from(e: AssertionError) -> Self {
        Refusal::Assertion(e)
    }
}

/// Why an assertion is out of its time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Staleness {
    /// `iat` ahead of the issuer's clock by more than [`MAX_AHEAD`].
    #[error(
        "the assertion was issued {0} s in the future (at most {MAX_AHEAD} s: check the clocks)"
    )]
    Ahead(i64),
    /// `exp` is past.
    #[error("the assertion expired {0} s ago")]
    Expired(i64),
    /// `exp` more than [`MAX_LIFETIME`] after `iat`.
    #[error("the assertion expires {0} s after it was issued (at most {MAX_LIFETIME} s)")]
    TooLong(i64),
}

impl From<Staleness> for Refusal {
    fn from(e: Staleness) -> Self {
        Refusal::Stale(e)
    }
}

/// Why an assertion's signature or issuer does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The leaf's key cannot verify a JWS.
    #[error("the certificate's key {0}")]
    Key(String),
    /// The assertion's `alg` is not what the leaf's key signs.
    #[error("the assertion says {said} but the certificate's key signs {signs}")]
    Alg {
        /// The `alg` in the header.
        said: &'static str,
        /// What the key signs.
        signs: &'static str,
    },
    /// The signature is wrong.
    #[error("the assertion's signature does not verify with the certificate's key")]
    Invalid,
    /// `iss` or `sub` is not the leaf's CN.
    #[error("the assertion's iss and sub are not the certificate's CN")]
    NotTheCn,
}

impl From<SignatureError> for Refusal {
    fn from(e: SignatureError) -> Self {
        Refusal::Signature(e)
    }
}

/// Why the header cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XfccError {
    /// Longer than [`MAX_XFCC`].
    #[error("is longer than {MAX_XFCC} bytes")]
    TooLong,
    /// Several elements (comma-separated) or several headers: which one names the caller?
    #[error("holds more than one certificate")]
    Several,
    /// Neither base64 DER, a PEM, nor an element with `Cert="..."`.
    #[error("holds no certificate in a format routers write")]
    Format,
}

/// Why a chain does not prove an instance identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// No certificate at all.
    #[error("no certificate")]
    Empty,
    /// More than 4 intermediates.
    #[error("more than 4 intermediates")]
    TooLong,
    /// The leaf is not DER webpki can read.
    #[error("the leaf is not a valid certificate")]
    BadLeaf,
    /// An instance identity used to sign another certificate.
    #[error(
        "a certificate in the chain signed another but is not a CA (an instance identity used \
         as a CA)"
    )]
    LeafAsCa,
    /// A CA certificate presented as the leaf.
    #[error("the leaf is a CA certificate, not an instance identity")]
    CaAsLeaf,
    /// No client-authentication usage.
    #[error("the certificate is not allowed for client authentication")]
    NotClientAuth,
    /// Not issued under a configured CA.
    #[error("the chain does not verify to a configured instance identity CA")]
    UnknownIssuer,
    /// A signature in the chain is wrong.
    #[error(
        "a signature in the chain does not verify (a certificate was altered or issued by \
         another key)"
    )]
    BadSignature,
    /// Anything else webpki refused (its words).
    #[error("the chain does not verify ({0})")]
    Other(String),
    /// The leaf verifies but its subject is not an instance identity's.
    #[error(transparent)]
    Subject(SubjectError),
}

/// Why a leaf's subject names no single instance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    /// x509-parser cannot read it.
    #[error("the leaf cannot be parsed")]
    Unparsable,
    /// An `OU=<what>:` whose value is not a guid.
    #[error("the OU {0}: value is not a guid")]
    NotAGuid(&'static str),
    /// No `OU=<what>:`.
    #[error("the subject has no OU={0}:")]
    Missing(&'static str),
    /// Several `OU=<what>:`.
    #[error("the subject has {1} OU={0}: values")]
    Several(&'static str, usize),
    /// No single guid CN.
    #[error("the subject has no single instance guid CN")]
    NoInstance,
}

impl From<SubjectError> for Refusal {
    fn from(e: SubjectError) -> Self {
        Refusal::Chain(ChainError::Subject(e))
    }
}

impl From<ChainError> for Refusal {
    fn from(e: ChainError) -> Self {
        Refusal::Chain(e)
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
