//! Key material: the signing key, the keys published beside it, the instance identity CA and
//! the TLS certificate, read from files (or variables), and the documents relying parties read
//! (the discovery document and the JWKS).
//!
//! Files obey the rules the sidecar's authorization token file obeys: a regular file (links are
//! followed: Kubernetes mounts secrets through them; the file reached is checked), at most
//! [`MAX_FILE`] bytes, not writable by group or others, owned by this process's user or root.
//! Whoever else could write such a file could plant a key that signs tokens relying parties
//! accept. A file that breaks a rule is refused at start (the issuer exits naming it) and at
//! every reload (the working material stays, the error is logged and counted).
//!
//! Keys are data with a lifecycle: a key is published as soon as it is loaded, and when the
//! signing key is replaced in place, the previous one stays published for `--lifetime` + 5
//! minutes after it stopped signing here, so that every token it signed can still be verified.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::chains::Chains;
use super::settings::{KeySource, Settings};
use super::{ca, tls};
use crate::files::{self, Links, ReadError};
use crate::jws;

/// The largest key, certificate or CA file read.
pub const MAX_FILE: u64 = 1024 * 1024;
/// How long a retired key stays published after the token lifetime: relying parties accept a
/// token up to 5 minutes past its `exp`.
pub const RETIRE_SKEW_SECS: i64 = 300;

/// What a file looked like when read: a change means read again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Stamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
    ino: u64,
    mode: u32,
    uid: u32,
}

impl KeySource {
    fn read(&self) -> Result<Vec<u8>, LoadError> {
        match self {
            KeySource::File(path) => read_key_file(path),
            KeySource::Env { pem, .. } => Ok(pem.as_ref().clone()),
        }
    }

    fn stamp(&self) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt as _;
        let KeySource::File(path) = self else {
            return None;
        };
        let meta = std::fs::metadata(path).ok()?;
        Some(Stamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            ino: meta.ino(),
            mode: meta.mode(),
            uid: meta.uid(),
        })
    }
}

/// Reads a key material file, refusing one that another user could have written.
fn read_key_file(path: &Path) -> Result<Vec<u8>, LoadError> {
    let unsafe_file = |problem: String| LoadError::Unsafe {
        path: path.to_owned(),
        problem,
    };
    let (bytes, meta) = match files::read_regular(path, MAX_FILE, Links::Follow) {
        Ok(read) => read,
        Err(ReadError::Io(source)) => {
            return Err(LoadError::Read {
                what: path.display().to_string(),
                source,
            });
        }
        Err(other) => return Err(unsafe_file(other.to_string())),
    };
    files::only_ours(&meta, "plant a key").map_err(unsafe_file)?;
    Ok(bytes)
}

/// Why a key, certificate or bundle could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be read.
    #[error("cannot read {what}")]
    Read {
        /// The file.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file that breaks the rules for key material.
    #[error("{} {problem}", path.display())]
    Unsafe {
        /// The file.
        path: PathBuf,
        /// Which rule.
        problem: String,
    },
    /// A key does not parse or cannot sign. (The reason is the source: error chains print it
    /// after the name, once.)
    #[error("{what}")]
    Key {
        /// The file or variable.
        what: String,
        /// Why.
        #[source]
        source: jws::KeyError,
    },
    /// A CA bundle holds nothing usable.
    #[error("{what}")]
    Ca {
        /// The file or variable.
        what: String,
        /// Why.
        #[source]
        source: ca::CaError,
    },
    /// The TLS certificate and key cannot be used.
    #[error("{what}")]
    Tls {
        /// The files.
        what: String,
        /// Why.
        #[source]
        source: tls::TlsError,
    },
    /// The signing key is not RSA 2048+ or P-256.
    #[error("{what} is a {alg} key; tokens are signed with ES256 (P-256) or RS256 (RSA)")]
    SigningAlg {
        /// The file or variable.
        what: String,
        /// The key's algorithm.
        alg: &'static str,
    },
}

/// Everything read from files: keys, CA certificates, TLS.
#[derive(Debug)]
pub(super) struct Material {
    pub(super) signer: jws::Signer,
    /// The keys published besides the signing key (`--publish-key`).
    pub(super) published: Vec<jws::PublicKey>,
    pub(super) chains: Chains,
    pub(super) tls: Option<Arc<rustls::ServerConfig>>,
    stamps: Vec<Option<Stamp>>,
}

impl Material {
    pub(super) fn load(s: &Settings, counters: &ChainCounters) -> Result<Material, LoadError> {
        let stamps = stamps(s);
        let (signer, published) = load_keys(s)?;
        let mut ca_pems = Vec::new();
        for src in &s.ca {
            ca_pems.push((src, src.read()?));
        }
        let ca =
            ca::CaBundle::from_pems(ca_pems.iter().map(|(_, p)| p.as_slice())).map_err(|e| {
                LoadError::Ca {
                    what: ca_pems
                        .iter()
                        .map(|(s, _)| s.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    source: e,
                }
            })?;
        let tls = match &s.tls {
            None => None,
            Some((cert, key)) => Some(
                tls::server_config(&cert.read()?, &key.read()?, ca.subjects().to_vec()).map_err(
                    |source| LoadError::Tls {
                        what: format!("the TLS certificate {cert} and key {key}"),
                        source,
                    },
                )?,
            ),
        };
        Ok(Material {
            signer,
            published,
            chains: Chains::new(ca, counters.hits.clone(), counters.misses.clone()),
            tls,
            stamps,
        })
    }

    /// Whether a file changed since this was loaded.
    pub(super) fn stale(&self, s: &Settings) -> bool {
        stamps(s) != self.stamps
    }
}

/// The signing key and the keys published beside it.
pub(super) fn load_keys(s: &Settings) -> Result<(jws::Signer, Vec<jws::PublicKey>), LoadError> {
    let key_error = |src: &KeySource| {
        let what = src.to_string();
        move |source| LoadError::Key { what, source }
    };
    let signer =
        jws::Signer::from_pem(&s.signing_key.read()?).map_err(key_error(&s.signing_key))?;
    if signer.alg() == jws::Alg::Es384 {
        return Err(LoadError::SigningAlg {
            what: s.signing_key.to_string(),
            alg: "P-384",
        });
    }
    let mut published = Vec::new();
    for src in &s.publish_keys {
        published.push(jws::PublicKey::from_pem(&src.read()?).map_err(key_error(src))?);
    }
    Ok((signer, published))
}

fn stamps(s: &Settings) -> Vec<Option<Stamp>> {
    std::iter::once(&s.signing_key)
        .chain(&s.publish_keys)
        .chain(&s.ca)
        .chain(s.tls.iter().flat_map(|(c, k)| [c, k]))
        .map(KeySource::stamp)
        .collect()
}

/// Where the chain memory counts what it saved and what it verified (kept across reloads).
#[derive(Debug, Clone, Default)]
pub(super) struct ChainCounters {
    pub(super) hits: prometheus_client::metrics::counter::Counter,
    pub(super) misses: prometheus_client::metrics::counter::Counter,
}

/// A signing key replaced in place, still published until every token it signed expired.
#[derive(Debug, Clone)]
pub(super) struct Retired {
    pub(super) key: jws::PublicKey,
    /// Unix seconds after which no token it signed can be accepted.
    pub(super) until: i64,
}

impl Retired {
    /// `key`, which stopped signing at `now`.
    pub(super) fn new(key: jws::PublicKey, now: i64, s: &Settings) -> Self {
        let lifetime = i64::try_from(s.lifetime.as_secs()).unwrap_or(43_200);
        Self {
            key,
            until: now + lifetime + RETIRE_SKEW_SECS,
        }
    }
}

/// What relying parties read: the discovery document and the keys.
#[derive(Debug, Clone)]
pub struct Documents {
    /// `/.well-known/openid-configuration`.
    pub discovery: Bytes,
    /// `/token_keys` and `/.well-known/jwks.json`.
    pub jwks: Bytes,
    /// The `kid`s published, signing key first.
    pub kids: Vec<String>,
}

/// Where the JWKS is, below the issuer URL.
pub const JWKS_PATH: &str = "/token_keys";

impl Documents {
    /// The documents for the signing key, the published keys and the retired ones still
    /// within their time.
    pub(super) fn new(s: &Settings, m: &Material, retired: &[Retired]) -> Self {
        Self::of(s, m.signer.public(), &m.published, retired)
    }

    /// The documents for `signing`, `published` and `retired` keys.
    pub(super) fn of(
        s: &Settings,
        signing: &jws::PublicKey,
        published: &[jws::PublicKey],
        retired: &[Retired],
    ) -> Self {
        let mut keys: Vec<&jws::PublicKey> = vec![signing];
        for key in published.iter().chain(retired.iter().map(|r| &r.key)) {
            if !keys.iter().any(|k| k.kid() == key.kid()) {
                keys.push(key);
            }
        }
        let mut algs: Vec<&str> = keys.iter().map(|k| k.alg().name()).collect();
        algs.sort_unstable();
        algs.dedup();
        let jwks = serde_json::json!({
            "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()
        });
        let discovery = serde_json::json!({
            "issuer": s.issuer_url,
            "jwks_uri": format!("{}{JWKS_PATH}", s.issuer_url),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": algs,
            "claims_supported": ["iss", "sub", "aud", "iat", "exp", "jti", "org_guid",
                                 "space_guid", "app_guid", "instance_guid"],
        });
        Self {
            discovery: Bytes::from(discovery.to_string()),
            jwks: Bytes::from(jwks.to_string()),
            kids: keys.iter().map(|k| k.kid().to_owned()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn key_file(dir: &tempfile::TempDir, mode: u32) -> PathBuf {
        let path = dir.path().join(format!("key-{mode:o}.pem"));
        std::fs::write(
            &path,
            rcgen::KeyPair::generate().expect("key").serialize_pem(),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn key_files_writable_by_others_are_refused_naming_the_file() {
        // See: issue #23 item 5 (a world-writable --publish-key was served within 6 s).
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o620, 0o602, 0o666, 0o777] {
            let path = key_file(&dir, mode);
            let e = read_key_file(&path).expect_err("refused").to_string();
            assert!(
                e.contains(&path.display().to_string()) && e.contains(&format!("{mode:04o}")),
                "{e}"
            );
        }
        for mode in [0o600, 0o640, 0o644, 0o400] {
            assert!(read_key_file(&key_file(&dir, mode)).is_ok(), "{mode:o}");
        }
        let e = read_key_file(dir.path())
            .expect_err("a directory")
            .to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }

    #[test]
    fn key_files_of_another_owner_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_file(&dir, 0o644);
        if nix::unistd::geteuid().is_root() {
            nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(4321)), None).unwrap();
            let e = read_key_file(&path).expect_err("refused").to_string();
            assert!(e.contains("is owned by uid 4321"), "{e}");
        } else {
            // Not root: no other owner can be made here; the process's own file is accepted.
            assert!(read_key_file(&path).is_ok());
        }
    }
}
