//! What each path of the issuer answers: `POST /token` (the grant), the discovery document and
//! the keys, `/healthz`; and the admin listener's `/metrics`.

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::grant::{self, Refused};
use super::metrics::{AudienceLabel, OutcomeLabel, ReasonLabel};
use super::{Issuer, MAX_BODY, PeerChain, Refusal};
use crate::listener::{self, Body, json_response, text_response};

impl Issuer {
    /// Answers one request on the service listener; `peer` is the client certificate chain of
    /// a TLS connection.
    pub async fn handle(&self, req: Request<Incoming>, peer: Option<PeerChain>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let cache = |mut r: Response<Body>| {
            let value = format!("public, max-age={}", self.settings.jwks_max_age.as_secs());
            if let Ok(v) = HeaderValue::from_str(&value) {
                r.headers_mut().insert(header::CACHE_CONTROL, v);
            }
            r
        };
        match (&parts.method, parts.uri.path()) {
            (&Method::POST, "/token") => {}
            (&Method::GET, "/.well-known/openid-configuration") => {
                return cache(json_response(
                    StatusCode::OK,
                    self.documents.load().discovery.clone(),
                ));
            }
            (&Method::GET, "/token_keys" | "/.well-known/jwks.json") => {
                return cache(json_response(
                    StatusCode::OK,
                    self.documents.load().jwks.clone(),
                ));
            }
            (&Method::GET, "/healthz" | "/ready") => return text_response(StatusCode::OK, "ok\n"),
            (_, "/token") => return method_not_allowed("POST"),
            (
                _,
                "/.well-known/openid-configuration"
                | "/token_keys"
                | "/.well-known/jwks.json"
                | "/healthz"
                | "/ready",
            ) => return method_not_allowed("GET"),
            _ => {
                return json_response(
                    StatusCode::NOT_FOUND,
                    Bytes::from_static(br#"{"error":"not_found"}"#),
                );
            }
        }
        let started = tokio::time::Instant::now();
        let result = match listener::body::read(&parts, body, MAX_BODY).await {
            Ok(body) => grant::grant(
                self,
                &parts,
                &body,
                peer.as_deref().map(Vec::as_slice),
                crate::clock::now_unix_ms(),
            ),
            Err(e) => Err(Refused::from(Refusal::Body(e))),
        };
        let outcome = if result.is_ok() { "issued" } else { "refused" };
        self.metrics
            .duration
            .get_or_create(&OutcomeLabel { outcome })
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(issued) => {
                let instance = &issued.identity.instance;
                tracing::info!(
                    org_guid = %instance.org,
                    space_guid = %instance.space,
                    app_guid = %instance.app,
                    instance_guid = %instance.instance,
                    audience = %issued.audience,
                    proofs = %issued.identity.proofs.join(","),
                    exp = issued.exp,
                    "token issued"
                );
                self.metrics
                    .issued
                    .get_or_create(&AudienceLabel {
                        audience: issued.audience,
                    })
                    .inc();
                let mut r = Response::new(http_body_util::Full::new(Bytes::from(issued.token)));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/jwt"),
                );
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                r
            }
            Err(Refused { refusal, identity }) => {
                self.metrics
                    .refused
                    .get_or_create(&ReasonLabel {
                        reason: refusal.reason(),
                    })
                    .inc();
                // The description names what failed, escaped, never an assertion or a
                // certificate; the guids are those of a verified leaf.
                match identity {
                    Some(id) => tracing::info!(
                        reason = refusal.reason(),
                        status = refusal.status().as_u16(),
                        description = %refusal,
                        org_guid = %id.instance.org,
                        space_guid = %id.instance.space,
                        app_guid = %id.instance.app,
                        instance_guid = %id.instance.instance,
                        "token request refused"
                    ),
                    None => tracing::info!(
                        reason = refusal.reason(),
                        status = refusal.status().as_u16(),
                        description = %refusal,
                        "token request refused"
                    ),
                }
                refusal.response()
            }
        }
    }

    /// Answers one request on the admin listener.
    pub(super) fn admin_answer<B>(&self, req: &Request<B>) -> Response<Body> {
        if req.method() != Method::GET {
            return method_not_allowed("GET");
        }
        match req.uri().path() {
            "/healthz" | "/ready" => text_response(StatusCode::OK, "ok\n"),
            "/metrics" => {
                let mut r = text_response(StatusCode::OK, self.encode_metrics());
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                r
            }
            _ => json_response(
                StatusCode::NOT_FOUND,
                Bytes::from_static(br#"{"error":"not_found"}"#),
            ),
        }
    }
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        Bytes::from_static(
            br#"{"error":"invalid_request","error_description":"method not allowed"}"#,
        ),
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}
