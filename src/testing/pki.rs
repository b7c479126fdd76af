//! A test PKI shaped like Cloud Foundry's (Diego's) instance identity: a root CA, an
//! intermediate CA, and per-instance leaf certificates whose subject is
//! `CN=<instance guid>, OU=organization:<guid>+OU=space:<guid>+OU=app:<guid>` (one multi-valued
//! RDN, as Diego writes it), a certificate file holding the leaf followed by the intermediate,
//! and an RSA key in PKCS#1 (`RSA PRIVATE KEY`) form. Also a separate CA and server certificate
//! for fake HTTPS upstreams. Everything is generated at test start.

use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use p256::pkcs8::DecodePrivateKey as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PublicKeyData as _,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use x509_cert::builder::{Builder as _, CertificateBuilder, Profile};
use x509_cert::der::{Decode as _, Encode as _, EncodePem as _, pem::LineEnding};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{ExtendedKeyUsage, SubjectAltName};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::{Time, Validity};

/// The guids of one CF app instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CfIds {
    /// Organization guid.
    pub org: String,
    /// Space guid.
    pub space: String,
    /// App guid.
    pub app: String,
    /// Instance guid (the certificate's CN).
    pub instance: String,
}

impl Default for CfIds {
    fn default() -> Self {
        Self {
            org: "4b84793c-f3ea-4a55-92b7-942726aac163".into(),
            space: "6755b19d-c543-4e0c-a4b3-cd6e7c9c68a3".into(),
            app: "02756191-2d66-4c47-9ab6-a3f1a6ca2fc1".into(),
            instance: "5b713474-27b5-435c-42b6-1f17".into(),
        }
    }
}

impl CfIds {
    /// `org:space:app`, the token service's `sub`.
    pub fn subject(&self) -> String {
        format!("{}:{}:{}", self.org, self.space, self.app)
    }
}

/// The kind of private key to issue an instance identity with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA, PKCS#1 PEM (what Diego writes).
    RsaPkcs1,
    /// RSA, PKCS#8 PEM.
    RsaPkcs8,
    /// ECDSA P-256, PKCS#8 PEM.
    EcPkcs8,
    /// ECDSA P-256, SEC1 PEM (`EC PRIVATE KEY`).
    EcSec1,
    /// ECDSA P-384, PKCS#8 PEM.
    EcP384Pkcs8,
    /// RSA 3072, PKCS#8 PEM.
    Rsa3072Pkcs8,
}

/// One instance identity: the certificate file and key file contents.
#[derive(Clone)]
pub struct InstanceIdentity {
    /// Leaf then intermediate, PEM.
    pub cert_pem: String,
    /// The private key, PEM.
    pub key_pem: String,
}

impl std::fmt::Debug for InstanceIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InstanceIdentity")
    }
}

/// The generated PKI and a temporary directory holding its files.
pub struct TestPki {
    dir: tempfile::TempDir,
    /// The app instance the identities are issued for.
    pub ids: CfIds,
    root_pem: String,
    intermediate_der: Vec<u8>,
    intermediate_pem: String,
    intermediate_name: Name,
    intermediate_signer: p256::ecdsa::SigningKey,
    server_ca_pem: String,
    server_ca: Issuer<'static, KeyPair>,
    server_names: Vec<String>,
    server_chain: Vec<CertificateDer<'static>>,
    server_key_der: Vec<u8>,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki")
            .field("dir", &self.dir.path())
            .finish()
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl TestPki {
    /// A new PKI for the default instance ids.
    pub fn new() -> Result<Self, BoxError> {
        Self::for_instance(CfIds::default())
    }

    /// A new PKI for `ids`.
    pub fn for_instance(ids: CfIds) -> Result<Self, BoxError> {
        Self::with_server_names(ids, &[])
    }

    /// A new PKI whose upstream server certificate also names `server_names` (besides
    /// `localhost` and `127.0.0.1`), e.g. a docker-compose service name.
    pub fn with_server_names(ids: CfIds, server_names: &[&str]) -> Result<Self, BoxError> {
        let dir = tempfile::tempdir()?;

        let root_key = KeyPair::generate()?;
        let root_params = ca_params("Diego Instance Identity Root CA")?;
        let root_cert = root_params.self_signed(&root_key)?;
        let root = Issuer::new(root_params, root_key);

        let intermediate_key = KeyPair::generate()?;
        let intermediate_cert = ca_params("Diego Instance Identity Intermediate CA")?
            .signed_by(&intermediate_key, &root)?;
        let intermediate_der = intermediate_cert.der().to_vec();
        let intermediate_name = x509_cert::Certificate::from_der(&intermediate_der)?
            .tbs_certificate
            .subject;
        let intermediate_signer =
            p256::ecdsa::SigningKey::from_pkcs8_der(&intermediate_key.serialize_der())?;

        let server_ca_key = KeyPair::generate()?;
        let server_ca_params = ca_params("Fake Upstreams Server CA")?;
        let server_ca_cert = server_ca_params.self_signed(&server_ca_key)?;
        let server_ca = Issuer::new(server_ca_params, server_ca_key);
        let server_key = KeyPair::generate()?;
        let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        names.extend(server_names.iter().map(|n| (*n).to_owned()));
        let server_cert = server_params(&names)?.signed_by(&server_key, &server_ca)?;

        let pki = Self {
            ids,
            root_pem: root_cert.pem(),
            intermediate_pem: intermediate_cert.pem(),
            intermediate_der,
            intermediate_name,
            intermediate_signer,
            server_ca_pem: server_ca_cert.pem(),
            server_ca,
            server_names: names,
            server_chain: vec![server_cert.der().clone()],
            server_key_der: server_key.serialize_der(),
            dir,
        };
        std::fs::write(pki.server_ca_path(), &pki.server_ca_pem)?;
        Ok(pki)
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where [`TestPki::install`] writes the certificate (like `CF_INSTANCE_CERT`).
    pub fn cert_path(&self) -> PathBuf {
        self.dir().join("instance.crt")
    }

    /// Where [`TestPki::install`] writes the key (like `CF_INSTANCE_KEY`).
    pub fn key_path(&self) -> PathBuf {
        self.dir().join("instance.key")
    }

    /// The CA that signed the fake upstreams' server certificate, as a PEM file.
    pub fn server_ca_path(&self) -> PathBuf {
        self.dir().join("upstreams-ca.pem")
    }

    /// The Diego root CA, PEM.
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// The Diego intermediate CA, PEM.
    pub fn intermediate_pem(&self) -> &str {
        &self.intermediate_pem
    }

    /// An instance identity valid from now for `lifetime` (Diego: 24 h).
    pub fn issue(&self, kind: KeyKind, lifetime: Duration) -> Result<InstanceIdentity, BoxError> {
        let now = u64::try_from(crate::clock::now_unix()).unwrap_or(0);
        self.issue_between(kind, now.saturating_sub(60), now + lifetime.as_secs())
    }

    /// An instance identity valid between two Unix times (for expired certificates).
    pub fn issue_between(
        &self,
        kind: KeyKind,
        not_before: u64,
        not_after: u64,
    ) -> Result<InstanceIdentity, BoxError> {
        self.issue_as(&self.ids.clone(), kind, not_before, not_after)
    }

    /// An identity of this CA naming `ids` (another instance, or a subject that is not an
    /// instance's), valid between two Unix times.
    pub fn issue_as(
        &self,
        ids: &CfIds,
        kind: KeyKind,
        not_before: u64,
        not_after: u64,
    ) -> Result<InstanceIdentity, BoxError> {
        let (key_pem, spki_der) = match kind {
            KeyKind::RsaPkcs1 | KeyKind::RsaPkcs8 => {
                let key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)?;
                let pem = if kind == KeyKind::RsaPkcs1 {
                    let pkcs8 = key.serialize_der();
                    let info = pkcs8::PrivateKeyInfo::try_from(pkcs8.as_slice())?;
                    pkcs8::der::pem::encode_string(
                        "RSA PRIVATE KEY",
                        LineEnding::LF,
                        info.private_key,
                    )
                    .map_err(|e| e.to_string())?
                } else {
                    key.serialize_pem()
                };
                (pem, key.subject_public_key_info())
            }
            KeyKind::EcPkcs8 => {
                let key = KeyPair::generate()?;
                (key.serialize_pem(), key.subject_public_key_info())
            }
            KeyKind::EcSec1 => {
                let key = KeyPair::generate()?;
                let pkcs8 = key.serialize_der();
                let info = pkcs8::PrivateKeyInfo::try_from(pkcs8.as_slice())?;
                let pem = pkcs8::der::pem::encode_string(
                    "EC PRIVATE KEY",
                    LineEnding::LF,
                    info.private_key,
                )
                .map_err(|e| e.to_string())?;
                (pem, key.subject_public_key_info())
            }
            KeyKind::EcP384Pkcs8 => {
                let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)?;
                (key.serialize_pem(), key.subject_public_key_info())
            }
            KeyKind::Rsa3072Pkcs8 => {
                let key =
                    KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_3072)?;
                (key.serialize_pem(), key.subject_public_key_info())
            }
        };
        let subject = Name::from_str(&format!(
            "CN={},OU=organization:{}+OU=space:{}+OU=app:{}",
            ids.instance, ids.org, ids.space, ids.app
        ))?;
        let mut serial = [0u8; 16];
        aws_lc_rs::rand::fill(&mut serial).map_err(|_| "rng failed")?;
        serial[0] &= 0x7f;
        let validity = Validity {
            not_before: Time::try_from(UNIX_EPOCH + Duration::from_secs(not_before))?,
            not_after: Time::try_from(UNIX_EPOCH + Duration::from_secs(not_after))?,
        };
        let mut builder = CertificateBuilder::new(
            Profile::Leaf {
                issuer: self.intermediate_name.clone(),
                enable_key_agreement: true,
                enable_key_encipherment: true,
            },
            SerialNumber::new(&serial)?,
            validity,
            subject,
            SubjectPublicKeyInfoOwned::from_der(&spki_der)?,
            &self.intermediate_signer,
        )?;
        use x509_cert::der::oid::db::rfc5280::{ID_KP_CLIENT_AUTH, ID_KP_SERVER_AUTH};
        builder.add_extension(&ExtendedKeyUsage(vec![
            ID_KP_CLIENT_AUTH,
            ID_KP_SERVER_AUTH,
        ]))?;
        builder.add_extension(&SubjectAltName(vec![GeneralName::DnsName(
            x509_cert::der::asn1::Ia5String::new(&ids.instance)?,
        )]))?;
        let leaf = builder.build::<p256::ecdsa::DerSignature>()?;
        let mut cert_pem = leaf.to_pem(LineEnding::LF)?;
        cert_pem.push_str(&self.intermediate_pem);
        let _ = leaf.to_der()?;
        Ok(InstanceIdentity { cert_pem, key_pem })
    }

    /// Writes an identity like the platform rotates it: key first, then certificate, each by
    /// an atomic rename.
    pub fn install(&self, identity: &InstanceIdentity) -> std::io::Result<()> {
        self.install_key(identity)?;
        self.install_cert(identity)
    }

    /// Replaces only the key file (the first half of a rotation).
    pub fn install_key(&self, identity: &InstanceIdentity) -> std::io::Result<()> {
        atomic_write(&self.key_path(), identity.key_pem.as_bytes())
    }

    /// Replaces only the certificate file (the second half of a rotation).
    pub fn install_cert(&self, identity: &InstanceIdentity) -> std::io::Result<()> {
        atomic_write(&self.cert_path(), identity.cert_pem.as_bytes())
    }

    /// Like [`TestPki::mtls_server_config`], but presenting a server certificate from the same CA
    /// that expired yesterday (for TLS failure tests).
    pub fn expired_mtls_server_config(&self) -> Result<Arc<rustls::ServerConfig>, BoxError> {
        let key = KeyPair::generate()?;
        let mut params = server_params(&self.server_names)?;
        let now = std::time::SystemTime::UNIX_EPOCH
            + Duration::from_secs(u64::try_from(crate::clock::now_unix()).unwrap_or(0));
        params.not_before = (now - Duration::from_secs(3 * 86_400)).into();
        params.not_after = (now - Duration::from_secs(86_400)).into();
        let cert = params.signed_by(&key, &self.server_ca)?;
        self.server_config_with(vec![cert.der().clone()], key.serialize_der())
    }

    /// A TLS server config for a fake upstream that presents the server certificate and asks
    /// for (but does not require) a client certificate chaining to the Diego root.
    pub fn mtls_server_config(&self) -> Result<Arc<rustls::ServerConfig>, BoxError> {
        self.server_config_with(self.server_chain.clone(), self.server_key_der.clone())
    }

    fn server_config_with(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key_der: Vec<u8>,
    ) -> Result<Arc<rustls::ServerConfig>, BoxError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.root_pem.as_bytes()) {
            roots.add(cert?)?;
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()?;
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                chain,
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der)),
            )?;
        Ok(Arc::new(config))
    }

    /// The intermediate CA certificate, DER.
    pub fn intermediate_der(&self) -> &[u8] {
        &self.intermediate_der
    }

    /// The fake upstreams' server certificate, PEM (for a server of our own, e.g. the issuer).
    pub fn server_cert_pem(&self) -> String {
        self.server_chain
            .iter()
            .map(|c| {
                let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, c);
                let lines: Vec<&str> = b64
                    .as_bytes()
                    .chunks(64)
                    .filter_map(|l| std::str::from_utf8(l).ok())
                    .collect();
                format!(
                    "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                    lines.join("\n")
                )
            })
            .collect()
    }

    /// The key of [`TestPki::server_cert_pem`], PKCS#8 PEM.
    pub fn server_key_pem(&self) -> Result<String, BoxError> {
        pkcs8::der::pem::encode_string("PRIVATE KEY", LineEnding::LF, &self.server_key_der)
            .map_err(|e| e.to_string().into())
    }

    /// The Diego CA bundle an issuer trusts (root and intermediate), written to a file.
    pub fn write_ca_bundle(&self) -> std::io::Result<PathBuf> {
        let path = self.dir().join("instance-identity-ca.pem");
        std::fs::write(&path, format!("{}{}", self.root_pem, self.intermediate_pem))?;
        Ok(path)
    }

    /// A certificate with this PKI's subject shape for `ids`, signed by `signer_key_pem` as if
    /// `signer_cert_der` were a CA (for forgery tests: an instance using its own leaf as a CA,
    /// or a CA nobody configured). Valid from now for a day; P-256 key, returned as
    /// (certificate PEM including `chain_pem`, key PEM).
    pub fn forge(
        ids: &CfIds,
        signer_cert_der: &[u8],
        signer_key_pem: &str,
        chain_pem: &str,
    ) -> Result<InstanceIdentity, BoxError> {
        use p256::pkcs8::DecodePrivateKey as _;
        let issuer = x509_cert::Certificate::from_der(signer_cert_der)?
            .tbs_certificate
            .subject;
        let signer = p256::ecdsa::SigningKey::from_pkcs8_pem(signer_key_pem)?;
        let key = KeyPair::generate()?;
        let subject = Name::from_str(&format!(
            "CN={},OU=organization:{}+OU=space:{}+OU=app:{}",
            ids.instance, ids.org, ids.space, ids.app
        ))?;
        let now = u64::try_from(crate::clock::now_unix()).unwrap_or(0);
        let validity = Validity {
            not_before: Time::try_from(UNIX_EPOCH + Duration::from_secs(now - 60))?,
            not_after: Time::try_from(UNIX_EPOCH + Duration::from_secs(now + 86_400))?,
        };
        let mut builder = CertificateBuilder::new(
            Profile::Leaf {
                issuer,
                enable_key_agreement: false,
                enable_key_encipherment: false,
            },
            SerialNumber::new(&[0x42])?,
            validity,
            subject,
            SubjectPublicKeyInfoOwned::from_der(&key.subject_public_key_info())?,
            &signer,
        )?;
        use x509_cert::der::oid::db::rfc5280::ID_KP_CLIENT_AUTH;
        builder.add_extension(&ExtendedKeyUsage(vec![ID_KP_CLIENT_AUTH]))?;
        let cert = builder.build::<p256::ecdsa::DerSignature>()?;
        Ok(InstanceIdentity {
            cert_pem: format!("{}{chain_pem}", cert.to_pem(LineEnding::LF)?),
            key_pem: key.serialize_pem(),
        })
    }

    /// A self-signed certificate carrying `ids` in its subject (a forged identity): the
    /// certificate PEM and its key PEM. With `ca`, it also claims to be a CA.
    pub fn self_signed(ids: &CfIds, ca: bool) -> Result<InstanceIdentity, BoxError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, ids.instance.clone());
        params.distinguished_name.push(
            DnType::OrganizationalUnitName,
            format!("organization:{}", ids.org),
        );
        params.distinguished_name.push(
            DnType::OrganizationalUnitName,
            format!("space:{}", ids.space),
        );
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, format!("app:{}", ids.app));
        if ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.self_signed(&key)?;
        Ok(InstanceIdentity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

use rustls_pki_types::pem::PemObject as _;

fn server_params(names: &[String]) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(names.to_vec())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "fake upstream");
    Ok(params)
}

fn ca_params(cn: &str) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

/// Writes `bytes` to a temporary name beside `path`, then renames it over `path`.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
