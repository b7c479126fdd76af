//! The platform's proof of identity: an X.509 certificate chain and its private key, read from
//! files (on Cloud Foundry the ones named by `CF_INSTANCE_CERT` and `CF_INSTANCE_KEY`).
//!
//! The platform replaces both files in place, key first, certificate second. Each rename is atomic
//! but the pair is not, so a reader can see a new key next to the old certificate. This module
//! reads the two as a matched pair: a key that does not belong to the leaf certificate means
//! "read again in a moment", not "fail". It never logs or prints key material.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// How often a mismatched or missing pair is read again before giving up.
const PAIR_READ_ATTEMPTS: u32 = 15;
/// Pause between two reads of a mismatched pair (the platform renames within microseconds).
const PAIR_READ_PAUSE: Duration = Duration::from_millis(200);

/// Where the certificate and key live, and which setting named each path (for error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityFiles {
    /// The certificate chain file: leaf first, then any intermediates.
    pub cert_path: PathBuf,
    /// The setting that named `cert_path`, e.g. `CF_INSTANCE_CERT`.
    pub cert_origin: String,
    /// The private key file (PKCS#1, PKCS#8 or SEC1 PEM).
    pub key_path: PathBuf,
    /// The setting that named `key_path`, e.g. `CF_INSTANCE_KEY`.
    pub key_origin: String,
}

/// A certificate chain and the private key that matches its leaf, read at one moment.
#[derive(Clone)]
pub struct IdentityPair {
    /// The certificate file's bytes: compares equal across reads until the platform rotates it.
    pub cert_pem: Arc<Vec<u8>>,
    key_pem: Arc<Vec<u8>>,
    /// Facts about the leaf certificate.
    pub leaf: LeafInfo,
}

/// What the rest of the program needs to know about the leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafInfo {
    /// The subject in RFC 4514 form.
    pub subject: String,
    /// Every OU value of the subject, in order (Diego puts org, space and app guids here).
    pub organizational_units: Vec<String>,
    /// The end of validity, in Unix seconds.
    pub not_after: i64,
    /// The number of certificates in the file (leaf plus intermediates).
    pub chain_len: usize,
    /// The serial number in decimal (Diego serials are 128-bit).
    pub serial: String,
    /// The issuer in RFC 4514 form.
    pub issuer: String,
    /// Every attribute of the subject, in order, as (short name, value): `("CN", "...")`.
    pub subject_attributes: Vec<(String, String)>,
    /// Every attribute of the issuer, in order.
    pub issuer_attributes: Vec<(String, String)>,
    /// The subject alternative names as (kind, value): `("DNS", ...)`, `("IP", ...)`,
    /// `("URI", ...)`, `("EMAIL", ...)`.
    pub san: Vec<(String, String)>,
}

/// Why the identity could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read the {what} file {path} (from {origin})")]
    Read {
        /// "certificate" or "private key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The setting that named it.
        origin: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file held no usable PEM block of the expected kind.
    #[error("{path} (from {origin}) holds no PEM {what}")]
    NoPem {
        /// "certificate" or "private key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The setting that named it.
        origin: String,
    },
    /// The leaf certificate could not be parsed.
    #[error("the first certificate in {path} is not valid X.509: {reason}")]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        reason: String,
    },
    /// The key is of a kind rustls cannot use.
    #[error("the private key in {path} is not usable: {reason}")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What is wrong with it (never the key).
        reason: String,
    },
    /// Key and certificate never matched while reading them again.
    #[error(
        "the private key in {key_path} does not match the certificate in {cert_path} \
         (read {attempts} times)"
    )]
    Mismatch {
        /// The certificate file.
        cert_path: PathBuf,
        /// The key file.
        key_path: PathBuf,
        /// How many times the pair was read.
        attempts: u32,
    },
    /// The certificate has expired and the platform has not replaced it.
    #[error("the certificate in {path} expired at {not_after} (Unix seconds)")]
    Expired {
        /// The file.
        path: PathBuf,
        /// Its notAfter.
        not_after: i64,
    },
}

impl IdentityFiles {
    /// Reads certificate and key as a matched pair, retrying briefly while a rotation is under way
    /// (mismatched pair or a file that is briefly missing).
    pub async fn read_pair(&self) -> Result<IdentityPair, Error> {
        let mut attempt = 1;
        loop {
            match self.read_once().await {
                Ok(pair) => return Ok(pair),
                Err(e) if attempt < PAIR_READ_ATTEMPTS && e.may_be_rotation() => {
                    tracing::debug!(error = %e, attempt, "identity pair not readable yet, retrying");
                    attempt += 1;
                    tokio::time::sleep(PAIR_READ_PAUSE).await;
                }
                Err(Error::Mismatch { .. }) => {
                    return Err(Error::Mismatch {
                        cert_path: self.cert_path.clone(),
                        key_path: self.key_path.clone(),
                        attempts: attempt,
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn read_once(&self) -> Result<IdentityPair, Error> {
        let cert_pem = read(&self.cert_path, &self.cert_origin, "certificate").await?;
        let key_pem = read(&self.key_path, &self.key_origin, "private key").await?;
        let pair = parse_pair(self, cert_pem, key_pem)?;
        if pair.leaf.not_after <= crate::clock::now_unix() {
            return Err(Error::Expired {
                path: self.cert_path.clone(),
                not_after: pair.leaf.not_after,
            });
        }
        Ok(pair)
    }
}

impl Error {
    /// What the user should do about it (printed by `check`).
    pub fn hint(&self) -> String {
        match self {
            Error::Read { origin, .. } | Error::NoPem { origin, .. } => format!(
                "make {origin} name a readable PEM file (Cloud Foundry sets CF_INSTANCE_CERT and \
                 CF_INSTANCE_KEY; elsewhere pass --cert-file and --key-file)"
            ),
            Error::Mismatch { .. } => {
                "point --key-file at the private key of the certificate in --cert-file".to_owned()
            }
            Error::Expired { .. } => "the platform should have rotated the certificate; restart \
                                      the app instance if it did not"
                .to_owned(),
            Error::BadCertificate { .. } | Error::BadKey { .. } => {
                "use the instance identity certificate and key as the platform writes them (PEM)"
                    .to_owned()
            }
        }
    }

    /// Whether the platform may be in the middle of replacing the files.
    fn may_be_rotation(&self) -> bool {
        match self {
            Error::Mismatch { .. } => true,
            Error::Read { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
            _ => false,
        }
    }
}

impl IdentityPair {
    /// The certificates of the file, leaf first, DER.
    pub fn chain_der(&self) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(&self.cert_pem)
            .filter_map(Result::ok)
            .collect()
    }

    /// The private key, DER (PKCS#1, PKCS#8 or SEC1). The caller must not log it.
    pub fn key_der(&self) -> Option<PrivateKeyDer<'static>> {
        PrivateKeyDer::from_pem_slice(&self.key_pem).ok()
    }

    /// The certificate chain followed by the key, as one PEM buffer for an mTLS client identity.
    /// The caller must not log it.
    pub fn identity_pem(&self) -> Vec<u8> {
        let mut pem = Vec::with_capacity(self.cert_pem.len() + self.key_pem.len() + 1);
        pem.extend_from_slice(&self.cert_pem);
        if !pem.ends_with(b"\n") {
            pem.push(b'\n');
        }
        pem.extend_from_slice(&self.key_pem);
        pem
    }
}

impl std::fmt::Debug for IdentityPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityPair")
            .field("leaf", &self.leaf)
            .field("key", &"<redacted>")
            .finish()
    }
}

async fn read(path: &Path, origin: &str, what: &'static str) -> Result<Vec<u8>, Error> {
    tokio::fs::read(path).await.map_err(|source| Error::Read {
        what,
        path: path.to_owned(),
        origin: origin.to_owned(),
        source,
    })
}

fn parse_pair(
    files: &IdentityFiles,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
) -> Result<IdentityPair, Error> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    let Some(leaf_der) = chain.first() else {
        return Err(Error::NoPem {
            what: "certificate",
            path: files.cert_path.clone(),
            origin: files.cert_origin.clone(),
        });
    };
    let leaf = leaf_info(leaf_der, chain.len()).map_err(|e| Error::BadCertificate {
        path: files.cert_path.clone(),
        reason: e.to_string(),
    })?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| Error::NoPem {
        what: "private key",
        path: files.key_path.clone(),
        origin: files.key_origin.clone(),
    })?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    match CertifiedKey::from_der(chain, key, &provider) {
        Ok(_) => {}
        Err(rustls::Error::InconsistentKeys(_)) => {
            return Err(Error::Mismatch {
                cert_path: files.cert_path.clone(),
                key_path: files.key_path.clone(),
                attempts: 1,
            });
        }
        Err(e) => {
            return Err(Error::BadKey {
                path: files.key_path.clone(),
                reason: e.to_string(),
            });
        }
    }
    Ok(IdentityPair {
        cert_pem: Arc::new(cert_pem),
        key_pem: Arc::new(key_pem),
        leaf,
    })
}

/// Parses the facts we report about a leaf certificate.
pub fn leaf_info(
    der: &[u8],
    chain_len: usize,
) -> Result<LeafInfo, x509_parser::nom::Err<x509_parser::error::X509Error>> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der)?;
    let subject = cert.subject();
    let organizational_units = subject
        .iter_organizational_unit()
        .filter_map(|ou| ou.as_str().ok().map(str::to_owned))
        .collect();
    let attributes = |name: &x509_parser::x509::X509Name<'_>| -> Vec<(String, String)> {
        name.iter_attributes()
            .filter_map(|a| {
                let short = x509_parser::objects::oid2abbrev(
                    a.attr_type(),
                    x509_parser::objects::oid_registry(),
                )
                .map(str::to_owned)
                .unwrap_or_else(|_| a.attr_type().to_id_string());
                Some((short, a.as_str().ok()?.to_owned()))
            })
            .collect()
    };
    let san = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(("DNS".to_owned(), (*d).to_owned())),
                    GeneralName::URI(u) => Some(("URI".to_owned(), (*u).to_owned())),
                    GeneralName::RFC822Name(e) => Some(("EMAIL".to_owned(), (*e).to_owned())),
                    GeneralName::IPAddress(ip) => ip_text(ip).map(|ip| ("IP".to_owned(), ip)),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(LeafInfo {
        subject: subject.to_string(),
        organizational_units,
        not_after: cert.validity().not_after.timestamp(),
        chain_len,
        serial: cert.serial.to_str_radix(10),
        issuer: cert.issuer().to_string(),
        subject_attributes: attributes(subject),
        issuer_attributes: attributes(cert.issuer()),
        san,
    })
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes)
            .ok()
            .map(|b| std::net::Ipv4Addr::from(b).to_string()),
        16 => <[u8; 16]>::try_from(bytes)
            .ok()
            .map(|b| std::net::Ipv6Addr::from(b).to_string()),
        _ => None,
    }
}
