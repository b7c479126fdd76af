//! Optional IMDSv2 emulation on the credentials listener, for code that only knows the EC2
//! metadata service (docs/sdk-clients.md §4, items 9-12). Users set
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:<port>`.
//!
//! - `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds: 1..21600` returns a
//!   random session token (`text/plain`) and echoes the TTL header; a missing or bad TTL is 400,
//!   and so is a request carrying `X-Forwarded-For` (as real IMDS does). It never calls STS and
//!   never fails otherwise.
//! - `GET /latest/meta-data/iam/security-credentials[/]` returns the default role's name (its
//!   alias), with no newline. `GET …/security-credentials/<alias>` returns the IMDS credentials JSON
//!   (`Code`, `LastUpdated`, `Type`, keys, `Expiration`, `AccountId`); an unknown alias is 404.
//! - Every GET needs a valid, unexpired `X-aws-ec2-metadata-token` (401 otherwise), unless the
//!   config turns on IMDSv1, which reopens the SSRF path and is warned about at startup.
//!
//! Session tokens are kept in a bounded store (the soonest-expiring is evicted when it is full).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use parking_lot::Mutex;
use tokio::time::Instant;

use super::{Body, Roles, error_response, text_response};

/// The path prefix all IMDS requests share.
pub const IMDS_PREFIX: &str = "/latest/";
const TOKEN_PATH: &str = "/latest/api/token";
const CREDENTIALS_PATH: &str = "/latest/meta-data/iam/security-credentials";
const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
const MAX_TTL_SECS: u64 = 21_600;
/// Live session tokens at most.
pub const MAX_TOKENS: usize = 1024;

/// IMDS state: the session tokens handed out.
pub struct Imds {
    tokens: Mutex<HashMap<String, Instant>>,
    allow_v1: bool,
}

impl std::fmt::Debug for Imds {
    // The session tokens are bearer secrets for the credentials: count them, never print them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imds")
            .field(
                "tokens",
                &format_args!("<{} redacted>", self.tokens.lock().len()),
            )
            .field("allow_v1", &self.allow_v1)
            .finish()
    }
}

impl Imds {
    /// `allow_v1` lets GETs through without a session token (IMDSv1).
    pub fn new(allow_v1: bool) -> Self {
        Self {
            tokens: Mutex::new(HashMap::new()),
            allow_v1,
        }
    }

    /// Answers a request whose path starts with [`IMDS_PREFIX`].
    pub fn handle<B>(&self, req: &Request<B>, roles: &Roles) -> Response<Body> {
        let path = req.uri().path();
        if path == TOKEN_PATH || path == "/latest/api/token/" {
            if req.method() != Method::PUT {
                return method_not_allowed("PUT");
            }
            return self.issue(req);
        }
        if req.method() != Method::GET {
            return method_not_allowed("GET");
        }
        if !self.allow_v1 && !self.valid(req) {
            return text_response(StatusCode::UNAUTHORIZED, "");
        }
        let Some(rest) = path.strip_prefix(CREDENTIALS_PATH) else {
            return text_response(StatusCode::NOT_FOUND, "");
        };
        match rest.trim_end_matches('/') {
            "" => text_response(StatusCode::OK, roles.default_role().alias().to_owned()),
            alias => match alias.strip_prefix('/').and_then(|a| roles.get(a)) {
                Some(role) => match role.current() {
                    Some(snapshot) => {
                        let mut r =
                            Response::new(http_body_util::Full::new(snapshot.imds_body.clone()));
                        r.headers_mut().insert(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("application/json"),
                        );
                        r
                    }
                    None => error_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "CredentialsUnavailable",
                        "credentials are not available yet",
                    ),
                },
                None => text_response(StatusCode::NOT_FOUND, ""),
            },
        }
    }

    fn issue<B>(&self, req: &Request<B>) -> Response<Body> {
        if req.headers().contains_key("x-forwarded-for") {
            return text_response(StatusCode::BAD_REQUEST, "");
        }
        let ttl = req
            .headers()
            .get(TTL_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|t| (1..=MAX_TTL_SECS).contains(t));
        let Some(ttl) = ttl else {
            return text_response(StatusCode::BAD_REQUEST, "");
        };
        let token = super::auth::generate().expose().to_owned();
        let now = Instant::now();
        {
            let mut tokens = self.tokens.lock();
            if tokens.len() >= MAX_TOKENS {
                tokens.retain(|_, expiry| *expiry > now);
            }
            if tokens.len() >= MAX_TOKENS
                && let Some(oldest) = tokens
                    .iter()
                    .min_by_key(|(_, e)| **e)
                    .map(|(t, _)| t.clone())
            {
                tokens.remove(&oldest);
            }
            tokens.insert(token.clone(), now + Duration::from_secs(ttl));
        }
        let mut r = text_response(StatusCode::OK, Bytes::from(token));
        r.headers_mut().insert(TTL_HEADER, HeaderValue::from(ttl));
        r
    }

    fn valid<B>(&self, req: &Request<B>) -> bool {
        let Some(token) = req
            .headers()
            .get(TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let now = Instant::now();
        let mut tokens = self.tokens.lock();
        match tokens.get(token) {
            Some(expiry) if *expiry > now => true,
            Some(_) => {
                tokens.remove(token);
                false
            }
            None => false,
        }
    }
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = text_response(StatusCode::METHOD_NOT_ALLOWED, "");
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;

    #[tokio::test]
    async fn debug_never_shows_a_session_token() {
        // See: issue #10 (Imds derived Debug over its session tokens).
        let imds = Imds::new(false);
        let req = Request::builder()
            .method(Method::PUT)
            .uri(TOKEN_PATH)
            .header(TTL_HEADER, "60")
            .body(())
            .expect("request");
        let response = imds.issue(&req);
        assert_eq!(response.status(), StatusCode::OK);
        let token = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let token = String::from_utf8_lossy(&token).into_owned();
        assert!(token.len() >= 16);
        let shown = format!("{imds:?}");
        assert!(!shown.contains(&token), "{shown}");
        assert!(shown.contains("<1 redacted>"), "{shown}");
    }
}
