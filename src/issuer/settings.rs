//! The issuer's checked settings (built by `config/issuer.rs` from flags and variables).

use std::net::SocketAddr;
use std::time::Duration;

use std::path::PathBuf;
use std::sync::Arc;

use super::budget::Budget;
use super::proof::Accept;
use crate::listener::Limits;

/// Where a key, certificate or CA bundle is read from.
#[derive(Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A PEM file, re-read when it changes.
    File(PathBuf),
    /// A variable holding the PEM text (read at start).
    Env {
        /// The variable.
        var: String,
        /// Its value.
        pem: Arc<Vec<u8>>,
    },
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::File(p) => write!(f, "File({})", p.display()),
            KeySource::Env { var, .. } => write!(f, "Env({var}, <redacted>)"),
        }
    }
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::File(p) => write!(f, "{}", p.display()),
            KeySource::Env { var, .. } => write!(f, "the variable {var}"),
        }
    }
}

/// The issuer's checked settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The `iss` claim, the URL the discovery document and keys are published under, and an
    /// `aud` assertions may carry (no trailing slash).
    pub issuer_url: String,
    /// Other URLs clients reach the token endpoint at (an internal route, while the keys are
    /// published elsewhere): assertions may name them as `aud` too.
    pub token_urls: Vec<String>,
    /// Where the service listens.
    pub listen: SocketAddr,
    /// Where `listen` came from.
    pub listen_origin: String,
    /// Where the admin endpoint listens.
    pub admin_listen: SocketAddr,
    /// Where `admin_listen` came from.
    pub admin_listen_origin: String,
    /// The instance identity CA bundles.
    pub ca: Vec<KeySource>,
    /// The key that signs tokens.
    pub signing_key: KeySource,
    /// Keys published but not signing (the next one, the previous one).
    pub publish_keys: Vec<KeySource>,
    /// The TLS certificate and key, when the issuer serves HTTPS itself.
    pub tls: Option<(KeySource, KeySource)>,
    /// The proofs accepted.
    pub accept: Accept,
    /// The audiences tokens may be issued for; the first is the default.
    pub audiences: Vec<String>,
    /// A token's lifetime (shortened to the certificate's when that ends sooner).
    pub lifetime: Duration,
    /// Organizations allowed (empty: all).
    pub allow_orgs: Vec<String>,
    /// Spaces allowed (empty: all).
    pub allow_spaces: Vec<String>,
    /// Put the three guids into AWS session tags.
    pub session_tags: bool,
    /// Put the instance guid into the AWS source identity.
    pub source_identity: bool,
    /// `Cache-Control: max-age` of the discovery document and the keys.
    pub jwks_max_age: Duration,
    /// How often key and CA files are looked at for changes.
    pub reload_interval: Duration,
    /// What each instance may ask for.
    pub budget: Budget,
    /// Connection limits.
    pub limits: Limits,
}

impl Settings {
    /// What an assertion's `aud` may name: the issuer URL, then the token URLs.
    pub fn assertion_audiences(&self) -> Vec<String> {
        std::iter::once(&self.issuer_url)
            .chain(&self.token_urls)
            .cloned()
            .collect()
    }
}
