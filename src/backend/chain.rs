//! Role chaining: STS `AssumeRole` signed with the credentials of another role (the first link).
//!
//! In `serve`, the first link is a role of its own with its own refresher, so each link is
//! cached and refreshed ahead of its own expiry; the chained role asks the first link's
//! refresher for its current credentials at each of its own refreshes. A command that fetches
//! once (`credential-process`, `check`) fetches the first link directly. When the first link has
//! no credentials, that is the cause the chained role reports. AWS caps a chained session at one
//! hour (the configuration clamps the duration).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use aws_sdk_sts::config::http::HttpResponse;
use aws_sdk_sts::error::SdkError;
use aws_sdk_sts::operation::assume_role::{AssumeRoleError, AssumeRoleOutput};

use super::{Credentials, Error, ErrorClass, ExternalId, MAX_CHAINED_SECS, Role};
use crate::metrics::Metrics;

/// Why the first link has no credentials, and what that means for retrying.
#[derive(Debug, Clone)]
pub struct FirstLinkError {
    /// In words, with the first link's own cause.
    pub why: String,
    /// Its class (the chained role retries as the first link does).
    pub class: ErrorClass,
}

/// Where a chained role gets the credentials it signs `AssumeRole` with.
pub trait FirstLink: Send + Sync + std::fmt::Debug {
    /// The first link's current credentials.
    fn credentials(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<Credentials, FirstLinkError>> + Send + '_>>;
}

/// A first link fetched directly, for commands that fetch once.
impl FirstLink for super::Backend {
    fn credentials(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<Credentials, FirstLinkError>> + Send + '_>> {
        Box::pin(async move {
            self.fetch().await.map_err(|e| FirstLinkError {
                class: e.class(),
                why: crate::report::chain(&e),
            })
        })
    }
}

/// A role assumed with `AssumeRole` and the credentials of another role.
#[derive(Debug)]
pub struct Chained {
    client: aws_sdk_sts::Client,
    role: Role,
    external_id: Option<ExternalId>,
    /// The first link's alias and role ARN, for messages and `/status`.
    via: (String, String),
    first: Box<dyn FirstLink>,
    metrics: Arc<Metrics>,
}

impl Chained {
    /// A chained backend for `role`, reached through the role `via` (alias, ARN) whose
    /// credentials `first` gives.
    pub fn new(
        client: aws_sdk_sts::Client,
        role: Role,
        external_id: Option<ExternalId>,
        via: (String, String),
        first: Box<dyn FirstLink>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            client,
            role,
            external_id,
            via,
            first,
            metrics,
        }
    }

    /// Takes the first link's credentials from `first` from now on (its refresher in `serve`).
    pub fn attach(&mut self, first: Box<dyn FirstLink>) {
        self.first = first;
    }

    /// The alias of the first link.
    pub fn via(&self) -> &str {
        &self.via.0
    }

    /// The role ARN.
    pub fn role_arn(&self) -> &str {
        &self.role.arn
    }

    /// Where the credentials come from, for `/status`.
    pub fn describe(&self) -> String {
        format!(
            "AssumeRole with the credentials of role {} ({})",
            self.via.0, self.via.1
        )
    }

    /// One `AssumeRole` call, with the first link's current credentials.
    pub async fn fetch(&self) -> Result<Credentials, Error> {
        let first = self
            .first
            .credentials()
            .await
            .map_err(|e| Error::FirstLink {
                role_arn: self.role.arn.clone(),
                via: self.via.0.clone(),
                via_arn: self.via.1.clone(),
                why: e.why,
                class: e.class,
            })?;
        let signing = aws_sdk_sts::config::Credentials::new(
            first.access_key_id.clone(),
            first.secret_access_key.expose(),
            Some(first.session_token.expose().to_owned()),
            None,
            "sts-sidecar-first-link",
        );
        let duration =
            i32::try_from(self.role.duration.as_secs().min(MAX_CHAINED_SECS)).unwrap_or(3600);
        let started = tokio::time::Instant::now();
        let mut call = self
            .client
            .assume_role()
            .role_arn(&self.role.arn)
            .role_session_name(&self.role.session_name)
            .duration_seconds(duration);
        if let Some(id) = &self.external_id {
            call = call.external_id(id.expose());
        }
        let result = call
            .customize()
            .config_override(aws_sdk_sts::config::Builder::default().credentials_provider(signing))
            .send()
            .await;
        self.metrics
            .observe_upstream("sts", result.is_ok(), started.elapsed());
        self.interpret(result, &first)
    }

    fn interpret(
        &self,
        result: Result<AssumeRoleOutput, SdkError<AssumeRoleError, HttpResponse>>,
        first: &Credentials,
    ) -> Result<Credentials, Error> {
        // Nothing secret of the first link may come back in a message.
        let secrets = [
            first.secret_access_key.expose(),
            first.session_token.expose(),
        ];
        let output =
            result.map_err(|e| super::sts::classify(&self.role.arn, "AssumeRole", e, &secrets))?;
        super::sts::credentials(
            "AssumeRole",
            &self.role.arn,
            &self.role.account_id,
            output.credentials(),
            output.assumed_role_user(),
        )
    }
}
