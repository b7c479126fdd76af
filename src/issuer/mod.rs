//! `sts-sidecar issuer`: the token service, so that the project is the whole system. It turns a
//! proof that the caller is a Cloud Foundry app instance into a JWT that AWS STS (or any OIDC
//! relying party) accepts, and publishes the keys that verify it.
//!
//! It is a shared service on a route relying parties must reach, so it is built as one:
//! - [`proof`]: the proofs of identity, one file each behind one seam (an assertion signed with
//!   the instance key, mTLS, `X-Forwarded-Client-Cert` when asked for); every one ends in the
//!   instance identity CA ([`ca`]), whose verifications are remembered per chain (`chains.rs`).
//! - `grant.rs`: the pipeline from a request to a token (form, proofs, replay, policy, budget,
//!   sign), each step a function that can refuse with a typed [`Refusal`].
//! - `budget.rs`: no tenant can hurt another: a token budget and the replay memory per verified
//!   instance.
//! - [`keys`]: key material with a lifecycle (files checked like the sidecar's token file,
//!   reloaded on change or SIGHUP, a replaced signing key kept published until its tokens
//!   expire) and the documents relying parties read; [`publish`] writes them as static files.
//! - `serve.rs`: the listeners, built from the listener kit ([`crate::listener`]): what a
//!   client without a proof can cost is bounded there (connections, heads, bodies, TLS
//!   handshakes), not here.
//!
//! The identity comes from a verified leaf only, never from a header, and `iss` from the
//! configuration, never from the request. The service is stateless but for each process's
//! memory of budgets and assertions; scale it out with no coordination.

mod budget;
pub mod ca;
pub mod chains;
mod claims;
pub mod form;
mod grant;
pub mod keys;
mod metrics;
pub mod proof;
pub mod publish;
mod refusal;
mod routes;
mod serve;
mod settings;
pub mod tls;

use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

pub use budget::Budget;
pub use keys::{Documents, LoadError};
pub use proof::{Accept, ProofKind};
pub use refusal::Refusal;
pub use serve::{PeerChain, Running, StartError, start};
pub use settings::{KeySource, Settings};

use keys::{Material, Retired};
use metrics::{IssuerMetrics, OutcomeLabel};

/// The grant type of RFC 7523's JWT bearer grant.
pub const GRANT_JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The largest request body read: an assertion with a two-certificate chain is about 4 KiB, one
/// with five RSA 4096 certificates about 12 KiB.
pub const MAX_BODY: usize = 16 * 1024;

/// The service's state, shared by every connection.
#[derive(Debug)]
pub struct Issuer {
    settings: Settings,
    assertion_audiences: Vec<String>,
    material: ArcSwap<Material>,
    documents: ArcSwap<Documents>,
    /// Signing keys replaced in place, published until their tokens expire.
    retired: Mutex<Vec<Retired>>,
    /// The file stamps of the last reload that failed (it is reported once, not every tick).
    failed: Mutex<Option<String>>,
    tenants: budget::Tenants,
    metrics: IssuerMetrics,
}

impl Issuer {
    /// The service for `settings`, its files read (an error names the file).
    pub fn new(settings: Settings) -> Result<Issuer, LoadError> {
        let metrics = IssuerMetrics::new();
        let material = Material::load(&settings, &metrics.chains)?;
        let documents = Documents::new(&settings, &material, &[]);
        Ok(Issuer {
            assertion_audiences: settings.assertion_audiences(),
            tenants: budget::Tenants::new(settings.budget),
            settings,
            material: ArcSwap::from_pointee(material),
            documents: ArcSwap::from_pointee(documents),
            retired: Mutex::new(Vec::new()),
            failed: Mutex::new(None),
            metrics,
        })
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The `kid` tokens are signed with now.
    pub fn signing_kid(&self) -> String {
        self.material.load().signer.public().kid().to_owned()
    }

    /// The discovery document and the keys, as served now.
    pub fn documents(&self) -> Arc<Documents> {
        self.documents.load_full()
    }

    /// Reads the files again when one changed (or `force`), replacing the keys, CA
    /// certificates and TLS configuration together; a file that does not load, or breaks the
    /// rules for key material, leaves the working ones in place. A signing key replaced stays
    /// published for `--lifetime` + 5 minutes. Returns whether anything was replaced.
    pub fn reload(&self, force: bool) -> Result<bool, LoadError> {
        self.reload_at(force, crate::clock::now_unix())
    }

    /// [`Issuer::reload`] at `now` (Unix seconds; tests pass the time they need).
    pub fn reload_at(&self, force: bool, now: i64) -> Result<bool, LoadError> {
        let current = self.material.load();
        if !force && !current.stale(&self.settings) {
            return Ok(false);
        }
        let material = match Material::load(&self.settings, &self.metrics.chains) {
            Ok(m) => m,
            Err(e) => {
                self.count_reload("refused");
                return Err(e);
            }
        };
        let old_kid = current.signer.public().kid().to_owned();
        let changed_kid = material.signer.public().kid() != old_kid;
        {
            let mut retired = self.retired.lock();
            if changed_kid {
                retired.retain(|r| r.key.kid() != old_kid);
                retired.push(Retired::new(
                    current.signer.public().clone(),
                    now,
                    &self.settings,
                ));
            }
            retired.retain(|r| r.until > now);
            self.documents.store(Arc::new(Documents::new(
                &self.settings,
                &material,
                &retired,
            )));
        }
        self.material.store(Arc::new(material));
        self.count_reload("loaded");
        *self.failed.lock() = None;
        tracing::info!(
            signing_kid = %self.signing_kid(),
            changed_signing_key = changed_kid,
            published = %self.documents.load().kids.join(","),
            "keys and certificates reloaded"
        );
        Ok(true)
    }

    /// What the reload task does at every tick (and on SIGHUP, with `force`): reload if a file
    /// changed, and stop publishing retired keys whose tokens have all expired. A failure is
    /// logged once per change of the files, not at every tick.
    pub fn tick(&self, force: bool) {
        self.tick_at(force, crate::clock::now_unix());
    }

    /// [`Issuer::tick`] at `now` (Unix seconds; tests pass the time they need).
    pub fn tick_at(&self, force: bool, now: i64) {
        match self.reload_at(force, now) {
            Ok(_) => {}
            Err(e) => {
                let text = crate::report::chain(&e);
                let mut failed = self.failed.lock();
                if force || failed.as_deref() != Some(text.as_str()) {
                    tracing::error!(
                        error = %text,
                        "cannot reload the keys and certificates; the ones loaded before stay in use"
                    );
                    *failed = Some(text);
                }
            }
        }
        let mut retired = self.retired.lock();
        let before = retired.len();
        retired.retain(|r| r.until > now);
        if retired.len() != before {
            let material = self.material.load();
            self.documents.store(Arc::new(Documents::new(
                &self.settings,
                &material,
                &retired,
            )));
            tracing::info!(
                published = %self.documents.load().kids.join(","),
                "a replaced signing key's tokens have all expired: it is no longer published"
            );
        }
        // Counted when done, so that whoever reads it sees the check's effects.
        self.metrics.checks.inc();
    }

    fn count_reload(&self, outcome: &'static str) {
        self.metrics
            .reloads
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// The Prometheus text of the metrics.
    pub fn encode_metrics(&self) -> String {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let (instances, remembered) = self.tenants.len();
        self.metrics.remembered.set(gauge(remembered));
        self.metrics.instances.set(gauge(instances));
        let (chains, _, _, _) = self.material.load().chains.stats();
        self.metrics.chains_remembered.set(gauge(chains));
        self.metrics
            .published_keys
            .set(gauge(self.documents.load().kids.len()));
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.metrics.registry);
        out
    }
}

/// Settings for unit tests: nothing read from them until an issuer is built.
#[cfg(test)]
pub(crate) fn testing_settings() -> Settings {
    Settings {
        issuer_url: "https://issuer.example.com".into(),
        token_urls: Vec::new(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        listen_origin: "test".into(),
        admin_listen: "127.0.0.1:0".parse().expect("addr"),
        admin_listen_origin: "test".into(),
        ca: Vec::new(),
        signing_key: KeySource::File("signing.pem".into()),
        publish_keys: Vec::new(),
        tls: None,
        accept: Accept::default(),
        audiences: vec!["sts.amazonaws.com".into()],
        lifetime: std::time::Duration::from_secs(3600),
        allow_orgs: Vec::new(),
        allow_spaces: Vec::new(),
        session_tags: false,
        source_identity: false,
        jwks_max_age: std::time::Duration::from_secs(3600),
        reload_interval: std::time::Duration::from_secs(5),
        budget: Budget::default(),
        limits: crate::listener::Limits::default(),
    }
}
