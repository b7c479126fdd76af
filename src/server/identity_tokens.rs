//! `GET /v1/identity-token?audience=AUD[&format=text]` on the credentials listener, behind the
//! same authorization token: the platform identity's JWT for another relying party (Google
//! Cloud's workload identity federation, Azure's federated credentials, Vault's JWT auth).
//!
//! The answer is `{"token": "<jwt>", "expiration": "<RFC 3339>", "audience": "<aud>"}`, or the
//! bare token with `format=text` (`application/jwt`). An audience that is not on the allow-list
//! is 403, one the source cannot give 400, both naming why; an upstream failure is 503 with
//! `Retry-After`, its class named but not its message (the sidecar's log has it). The token
//! never reaches a log line.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, Uri, header};

use super::error_response;
use crate::listener::{Body, json_response};
use crate::token::audiences::{AudienceError, Audiences};

/// Answers one request (authorization already checked).
pub(super) async fn answer(tokens: Option<&Audiences>, uri: &Uri) -> Response<Body> {
    let Some(tokens) = tokens else {
        return error_response(
            StatusCode::NOT_FOUND,
            "NotConfigured",
            "no audiences are configured: --token-audience AUD (or [identity_tokens] audiences) \
             says which relying parties the sidecar serves identity tokens for",
        );
    };
    let mut audience = None;
    let mut text = false;
    for (k, v) in form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "audience" => audience = Some(v.into_owned()),
            "format" => text = v == "text",
            _ => {}
        }
    }
    let Some(audience) = audience.filter(|a| !a.is_empty()) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "MissingAudience",
            &format!(
                "ask with ?audience=AUD, one of: {}",
                tokens.allowed().join(", ")
            ),
        );
    };
    match tokens.token(&audience).await {
        Ok(t) if text => {
            let mut r = Response::new(http_body_util::Full::new(Bytes::from(
                t.token.expose().to_owned(),
            )));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/jwt"),
            );
            r
        }
        Ok(t) => json_response(
            StatusCode::OK,
            Bytes::from(
                serde_json::json!({
                    "token": t.token.expose(),
                    "expiration": crate::clock::format_rfc3339(t.expiration),
                    "audience": audience,
                })
                .to_string(),
            ),
        ),
        Err(e @ AudienceError::NotAllowed(_)) => {
            error_response(StatusCode::FORBIDDEN, "AudienceNotAllowed", &e.to_string())
        }
        Err(e @ (AudienceError::Unsupported { .. } | AudienceError::WrongAudience { .. })) => {
            error_response(
                StatusCode::BAD_REQUEST,
                "AudienceUnsupported",
                &e.to_string(),
            )
        }
        Err(e) => {
            tracing::warn!(
                source = tokens.source_name(),
                audience = %audience,
                error = %crate::report::chain(&e),
                "no identity token for an audience"
            );
            let mut r = error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "IdentityTokenUnavailable",
                &format!(
                    "the source {} could not give a token for {audience:?} just now; the \
                     sidecar's log has why",
                    tokens.source_name()
                ),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
    }
}
