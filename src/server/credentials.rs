//! The container credentials endpoint: `GET /v1/credentials` (default role) and
//! `GET /v1/credentials/<alias>` (named roles), exactly as every AWS SDK expects
//! (docs/sdk-clients.md).
//!
//! Checks run in this order, cheapest and least revealing first: method, the target's form and
//! `Host` (DNS rebinding), proxies' headers, authorization, path. A request never calls an upstream; during a cold start
//! it waits briefly for the first credentials, then gets 503 with `Retry-After`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::auth::Refusals;
use super::{Auth, Body, Refusal, error_response, json_response, screen, text_response};
use crate::cache::RoleHandle;
use crate::metrics::Metrics;

/// The path of the default role.
pub const CREDENTIALS_PATH: &str = "/v1/credentials";
/// Where identity tokens for other audiences are served (`?audience=AUD[&format=text]`).
pub const IDENTITY_TOKEN_PATH: &str = "/v1/identity-token";

/// The roles served, by alias, and which one is the default.
#[derive(Debug, Clone)]
pub struct Roles {
    default: RoleHandle,
    by_alias: HashMap<String, RoleHandle>,
}

impl Roles {
    /// The first role is the default. `roles` must not be empty.
    pub fn new(roles: Vec<RoleHandle>) -> Option<Self> {
        let default = roles.first()?.clone();
        let by_alias = roles
            .into_iter()
            .map(|r| (r.alias().to_owned(), r))
            .collect();
        Some(Self { default, by_alias })
    }

    /// The default role.
    pub fn default_role(&self) -> &RoleHandle {
        &self.default
    }

    /// The role with `alias`.
    pub fn get(&self, alias: &str) -> Option<&RoleHandle> {
        self.by_alias.get(alias)
    }

    /// Every role, default first.
    pub fn all(&self) -> Vec<&RoleHandle> {
        let mut all: Vec<&RoleHandle> = vec![&self.default];
        let mut rest: Vec<&RoleHandle> = self
            .by_alias
            .values()
            .filter(|r| r.alias() != self.default.alias())
            .collect();
        rest.sort_by(|a, b| a.alias().cmp(b.alias()));
        all.extend(rest);
        all
    }

    /// Whether every role holds usable credentials.
    pub fn all_ready(&self) -> bool {
        self.by_alias.values().all(RoleHandle::is_ready)
    }
}

/// The credentials endpoint's state.
#[derive(Debug)]
pub struct CredentialsApp {
    roles: Roles,
    auth: Arc<Auth>,
    metrics: Arc<Metrics>,
    cold_start_wait: Duration,
    extra_hosts: Vec<IpAddr>,
    imds: Option<super::imds::Imds>,
    identity_tokens: Option<Arc<crate::token::audiences::Audiences>>,
    refusals: Refusals,
}

impl CredentialsApp {
    /// `cold_start_wait` is how long a request may wait for the first credentials (keep it under
    /// botocore's 2 s timeout). `extra_hosts` are non-loopback addresses accepted in `Host`.
    pub fn new(
        roles: Roles,
        auth: Arc<Auth>,
        metrics: Arc<Metrics>,
        cold_start_wait: Duration,
        extra_hosts: Vec<IpAddr>,
    ) -> Self {
        Self {
            roles,
            auth,
            metrics,
            cold_start_wait,
            extra_hosts,
            imds: None,
            identity_tokens: None,
            refusals: Refusals::default(),
        }
    }

    /// Also answers IMDSv2 requests (`allow_v1`: also token-less IMDSv1 GETs).
    pub fn with_imds(mut self, allow_v1: bool) -> Self {
        self.imds = Some(super::imds::Imds::new(allow_v1));
        self
    }

    /// Also serves identity tokens for other audiences at [`IDENTITY_TOKEN_PATH`].
    pub fn with_identity_tokens(mut self, tokens: Arc<crate::token::audiences::Audiences>) -> Self {
        self.identity_tokens = Some(tokens);
        self
    }

    /// Answers one request.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let response = self.route(&req).await;
        self.metrics
            .count_request("credentials", response.status().as_u16());
        response
    }

    async fn route<B>(&self, req: &Request<B>) -> Response<Body> {
        if let Some(imds) = &self.imds
            && req.uri().path().starts_with(super::imds::IMDS_PREFIX)
        {
            return match screen(req, &self.extra_hosts) {
                Ok(()) => imds.handle(req, &self.roles),
                // As EC2's IMDS answers a proxied request.
                Err(Refusal::Forwarded(_)) => text_response(StatusCode::BAD_REQUEST, ""),
                Err(refusal) => refusal.response(),
            };
        }
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
        let mut presented = req.headers().get_all(header::AUTHORIZATION).iter();
        let refused = match (presented.next(), presented.next()) {
            (None, _) => Some(("missing", StatusCode::UNAUTHORIZED)),
            (Some(token), None) if self.auth.check(token.as_bytes()).await => None,
            _ => Some(("wrong", StatusCode::FORBIDDEN)),
        };
        if let Some((reason, status)) = refused {
            self.metrics.count_auth_failure(reason);
            self.refusals.note();
            return if status == StatusCode::UNAUTHORIZED {
                error_response(
                    status,
                    "MissingAuthorization",
                    "the Authorization header is missing",
                )
            } else {
                error_response(
                    status,
                    "InvalidAuthorization",
                    "the Authorization header does not match the authorization token",
                )
            };
        }
        let path = req.uri().path();
        if path == IDENTITY_TOKEN_PATH {
            return super::identity_tokens::answer(self.identity_tokens.as_deref(), req.uri())
                .await;
        }
        let role = if path == CREDENTIALS_PATH {
            Some(self.roles.default_role())
        } else {
            path.strip_prefix(CREDENTIALS_PATH)
                .and_then(|rest| rest.strip_prefix('/'))
                .and_then(|alias| self.roles.get(alias))
        };
        let Some(role) = role else {
            return error_response(
                StatusCode::NOT_FOUND,
                "NotFound",
                "no such credentials path",
            );
        };
        if let Some(body) = role.current_body() {
            return json_response(StatusCode::OK, body);
        }
        match role.wait_usable(self.cold_start_wait).await {
            Some(snapshot) => json_response(StatusCode::OK, snapshot.body.clone()),
            None => {
                // The class of the last error says what kind of trouble it is without a word of
                // the upstream's message (which may name internals); /status has the message.
                let message = match role.last_error_class() {
                    Some(class) => format!(
                        "credentials are not available: the last refresh failed ({class}); \
                         the sidecar's /status has the error"
                    ),
                    None => "credentials are not available yet: waiting for the first answer; \
                             see the sidecar's /status"
                        .to_owned(),
                };
                let mut r = error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "CredentialsUnavailable",
                    &message,
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
        }
    }
}
