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
//! Session tokens are not stored: a token carries its own expiry, signed with a key made at
//! start (HMAC-SHA256 over the expiry and a random nonce). Nothing is kept per token, so no
//! number of tokens requested by another process can push out a client's token (a bounded
//! store could be flooded until it evicted the victim's), and memory does not grow with them.
//! A restart invalidates every token, as a reboot does on EC2; SDKs then fetch a new one.

use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use tokio::time::Instant;

use super::{Body, Roles, error_response, text_response};

/// The path prefix all IMDS requests share.
pub const IMDS_PREFIX: &str = "/latest/";
const TOKEN_PATH: &str = "/latest/api/token";
const CREDENTIALS_PATH: &str = "/latest/meta-data/iam/security-credentials";
const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
const MAX_TTL_SECS: u64 = 21_600;
/// A session token's bytes: expiry (milliseconds after `epoch`, big-endian), nonce, and the
/// first 24 bytes of the HMAC-SHA256 tag: 40 bytes, 54 characters of base64url. Tokens must stay
/// short: the CRT's IMDS client (aws-c-auth) keeps the token in a 64-byte buffer and rejects a
/// longer one; EC2's own are 56 characters.
const EXPIRY_LEN: usize = 8;
const NONCE_LEN: usize = 8;
const TAG_LEN: usize = 24;
const TOKEN_LEN: usize = EXPIRY_LEN + NONCE_LEN + TAG_LEN;

/// IMDS state: the key that signs session tokens.
pub struct Imds {
    key: hmac::Key,
    /// Expiries count from here (tokio's clock, so that tests can move it).
    epoch: Instant,
    allow_v1: bool,
}

impl std::fmt::Debug for Imds {
    // The key makes session tokens, which are bearer secrets for the credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imds")
            .field("key", &"<redacted>")
            .field("allow_v1", &self.allow_v1)
            .finish()
    }
}

impl Imds {
    /// `allow_v1` lets GETs through without a session token (IMDSv1).
    pub fn new(allow_v1: bool) -> Self {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).unwrap_or_else(|_| {
            // aws-lc's RNG does not fail in practice; fall back to rand's CSPRNG.
            hmac::Key::new(hmac::HMAC_SHA256, &rand::random::<[u8; 32]>())
        });
        Self {
            key,
            epoch: Instant::now(),
            allow_v1,
        }
    }

    /// A new session token valid for `ttl`.
    fn mint(&self, ttl: Duration) -> String {
        let expiry = (Instant::now() + ttl)
            .duration_since(self.epoch)
            .as_millis();
        let expiry = u64::try_from(expiry).unwrap_or(u64::MAX);
        let mut bytes = Vec::with_capacity(TOKEN_LEN);
        bytes.extend_from_slice(&expiry.to_be_bytes());
        bytes.extend_from_slice(&rand::random::<[u8; NONCE_LEN]>());
        let tag = hmac::sign(&self.key, &bytes);
        bytes.extend_from_slice(&tag.as_ref()[..TAG_LEN]);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Whether `token` was made here and has not expired.
    fn accepts(&self, token: &str) -> bool {
        let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token) else {
            return false;
        };
        if bytes.len() != TOKEN_LEN {
            return false;
        }
        let (signed, tag) = bytes.split_at(EXPIRY_LEN + NONCE_LEN);
        let expected = hmac::sign(&self.key, signed);
        if !constant_time_eq::constant_time_eq(&expected.as_ref()[..TAG_LEN], tag) {
            return false;
        }
        let mut expiry = [0u8; EXPIRY_LEN];
        expiry.copy_from_slice(&signed[..EXPIRY_LEN]);
        let expiry = self.epoch + Duration::from_millis(u64::from_be_bytes(expiry));
        Instant::now() < expiry
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

    /// `PUT /latest/api/token`. A proxied request (`X-Forwarded-For` and the like) never gets
    /// here: the credentials listener answers it 400, as EC2 does (`server::screen`).
    fn issue<B>(&self, req: &Request<B>) -> Response<Body> {
        let ttl = req
            .headers()
            .get(TTL_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|t| (1..=MAX_TTL_SECS).contains(t));
        let Some(ttl) = ttl else {
            return text_response(StatusCode::BAD_REQUEST, "");
        };
        let token = self.mint(Duration::from_secs(ttl));
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
        self.accepts(token)
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
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_hold_their_own_expiry_and_cannot_be_forged() {
        let imds = Imds::new(false);
        let token = imds.mint(Duration::from_secs(60));
        assert!(imds.accepts(&token));
        // No longer than EC2's own: the CRT refuses tokens over 64 characters.
        assert_eq!(token.len(), 54);
        // Another instance's key, a changed expiry, a cut token: refused.
        assert!(!Imds::new(false).accepts(&token));
        let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&token)
            .unwrap();
        bytes[0] ^= 0x01;
        let tampered = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
        assert!(!imds.accepts(&tampered));
        assert!(!imds.accepts(&token[..token.len() - 2]));
        assert!(!imds.accepts("not a token"));
        tokio::time::advance(Duration::from_millis(59_999)).await;
        assert!(imds.accepts(&token));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!imds.accepts(&token));
    }
}
