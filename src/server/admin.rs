//! The admin listener (separate loopback port, no secrets, no authorization):
//!
//! - `GET /healthz`: 200 while the process runs.
//! - `GET /ready`: 200 when every role holds credentials with more than the floor left and the
//!   process is not shutting down, else 503.
//! - `GET /metrics`: Prometheus/OpenMetrics text.
//! - `GET /status`: JSON per role (role ARN, expiry, last refresh, last error), redacted.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::{Body, Roles, error_response, json_response, screen, text_response};
use crate::metrics::Metrics;

/// The admin endpoint's state.
#[derive(Debug)]
pub struct AdminApp {
    roles: Roles,
    metrics: Arc<Metrics>,
    draining: AtomicBool,
    extra_hosts: Vec<IpAddr>,
}

impl AdminApp {
    /// An admin endpoint for `roles`.
    pub fn new(roles: Roles, metrics: Arc<Metrics>, extra_hosts: Vec<IpAddr>) -> Self {
        Self {
            roles,
            metrics,
            draining: AtomicBool::new(false),
            extra_hosts,
        }
    }

    /// From now on `/ready` answers 503.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether every role is ready and the process is not draining.
    pub fn is_ready(&self) -> bool {
        !self.draining.load(Ordering::Relaxed) && self.roles.all_ready()
    }

    /// Answers one request.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let response = self.route(&req);
        self.metrics
            .count_request("admin", response.status().as_u16());
        response
    }

    fn route<B>(&self, req: &Request<B>) -> Response<Body> {
        if req.method() != Method::GET {
            let mut r = error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "only GET is supported",
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET"));
            return r;
        }
        if let Err(refusal) = screen(req, &self.extra_hosts) {
            return refusal.response();
        }
        match req.uri().path() {
            "/healthz" => text_response(StatusCode::OK, "ok\n"),
            "/ready" => {
                let ready = self.is_ready();
                let status = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                let body = serde_json::json!({ "ready": ready });
                json_response(status, Bytes::from(body.to_string()))
            }
            "/metrics" => {
                let mut r = text_response(StatusCode::OK, self.metrics.encode());
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                r
            }
            "/status" => {
                let roles: Vec<_> = self.roles.all().into_iter().map(|r| r.status()).collect();
                let body = serde_json::json!({
                    "version": env!("CARGO_PKG_VERSION"),
                    "ready": self.is_ready(),
                    "draining": self.draining.load(Ordering::Relaxed),
                    "roles": roles,
                });
                json_response(StatusCode::OK, Bytes::from(body.to_string()))
            }
            _ => error_response(StatusCode::NOT_FOUND, "NotFound", "no such admin path"),
        }
    }
}
