//! The instance identity CA and what a verified leaf says.
//!
//! Every proof of identity ends here: the presented chain (leaf, then any intermediates) must
//! verify to one of the configured certificates (roots and intermediates alike are trusted, so
//! that a CA rotation can overlap and a leaf forwarded without its chain still verifies through
//! a configured intermediate), the leaf must be inside its validity period, allowed for client
//! authentication, not a CA, and its subject must hold exactly one `OU=organization:<guid>`,
//! `OU=space:<guid>` and `OU=app:<guid>`. The identity is read from that verified leaf only.
//! What a verification found is remembered per chain by `chains.rs`.

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};

use super::Refusal;
pub use super::refusal::{ChainError, SubjectError};

/// The configured CA certificates, as trust anchors.
#[derive(Debug)]
pub struct CaBundle {
    anchors: Vec<TrustAnchor<'static>>,
    /// Subjects of the anchors, for the TLS `CertificateRequest` hint.
    subjects: Vec<rustls::DistinguishedName>,
}

/// Why a CA bundle cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// No certificate in it.
    #[error("holds no PEM certificate")]
    Empty,
    /// A certificate webpki cannot use as an anchor.
    #[error("holds a certificate that cannot be a trust anchor: {0}")]
    Anchor(webpki::Error),
}

/// Who a verified leaf certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// The organization guid.
    pub org: String,
    /// The space guid.
    pub space: String,
    /// The app guid.
    pub app: String,
    /// The instance guid (the subject CN).
    pub instance: String,
}

impl Instance {
    /// `<org>:<space>:<app>`, the `sub` existing trust policies match.
    pub fn subject(&self) -> String {
        format!("{}:{}:{}", self.org, self.space, self.app)
    }

    /// The bytes it holds (for memory bounds).
    pub fn size(&self) -> usize {
        self.org.len() + self.space.len() + self.app.len() + self.instance.len()
    }
}

/// What a verified chain proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Who the leaf names.
    pub instance: Instance,
    /// The leaf's `SubjectPublicKeyInfo` (DER): what an assertion must be signed with.
    pub spki: Vec<u8>,
    /// The leaf's `notAfter` (Unix seconds): no token outlives it.
    pub not_after: i64,
    /// The earliest `notAfter` in the chain: how long this verification may be remembered.
    pub chain_not_after: i64,
}

impl CaBundle {
    /// The certificates of every PEM bundle in `pems`.
    pub fn from_pems<'p>(pems: impl IntoIterator<Item = &'p [u8]>) -> Result<CaBundle, CaError> {
        let mut anchors = Vec::new();
        let mut subjects = Vec::new();
        for pem in pems {
            for der in CertificateDer::pem_slice_iter(pem).filter_map(Result::ok) {
                let anchor = webpki::anchor_from_trusted_cert(&der)
                    .map_err(CaError::Anchor)?
                    .to_owned();
                // webpki keeps the subject's contents; TLS hints carry the whole Name.
                subjects.push(rustls::DistinguishedName::in_sequence(
                    anchor.subject.as_ref(),
                ));
                anchors.push(anchor);
            }
        }
        if anchors.is_empty() {
            return Err(CaError::Empty);
        }
        Ok(CaBundle { anchors, subjects })
    }

    /// How many certificates it trusts.
    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    /// Whether it trusts nothing (never true for a built bundle).
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// The subjects of the trusted certificates.
    pub fn subjects(&self) -> &[rustls::DistinguishedName] {
        &self.subjects
    }

    /// Verifies `chain` (leaf first) at `now` for client authentication and reads the instance
    /// it names.
    pub fn verify(&self, chain: &[CertificateDer<'_>], now: UnixTime) -> Result<Verified, Refusal> {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Err(ChainError::Empty.into());
        };
        if intermediates.len() > 4 {
            return Err(ChainError::TooLong.into());
        }
        let end_entity = webpki::EndEntityCert::try_from(leaf)
            .map_err(|_| Refusal::from(ChainError::BadLeaf))?;
        let algorithms = rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .all;
        end_entity
            .verify_for_usage(
                algorithms,
                &self.anchors,
                intermediates,
                now,
                webpki::KeyUsage::client_auth(),
                None,
                None,
            )
            .map_err(refusal)?;
        let (instance, spki, not_after) = read_leaf(leaf.as_ref())?;
        let mut chain_not_after = not_after;
        for cert in intermediates {
            if let Ok((_, c)) = x509_parser::parse_x509_certificate(cert.as_ref()) {
                chain_not_after = chain_not_after.min(c.validity().not_after.timestamp());
            }
        }
        Ok(Verified {
            instance,
            spki,
            not_after,
            chain_not_after,
        })
    }
}

/// Names what webpki refused, in the words of the proof rules.
fn refusal(e: webpki::Error) -> Refusal {
    use webpki::Error as E;
    match e {
        E::CertExpired { .. } => Refusal::Validity(true),
        E::CertNotValidYet { .. } => Refusal::Validity(false),
        E::EndEntityUsedAsCa => ChainError::LeafAsCa.into(),
        E::CaUsedAsEndEntity => ChainError::CaAsLeaf.into(),
        E::RequiredEkuNotFoundContext(_) => ChainError::NotClientAuth.into(),
        E::UnknownIssuer => ChainError::UnknownIssuer.into(),
        E::InvalidSignatureForPublicKey => ChainError::BadSignature.into(),
        other => ChainError::Other(other.to_string()).into(),
    }
}

/// The organization, space, app and instance of a leaf, read from its subject; its key and its
/// `notAfter`.
fn read_leaf(der: &[u8]) -> Result<(Instance, Vec<u8>, i64), SubjectError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|_| SubjectError::Unparsable)?;
    let subject = cert.subject();
    let mut org = Vec::new();
    let mut space = Vec::new();
    let mut app = Vec::new();
    for ou in subject.iter_organizational_unit() {
        let Ok(ou) = ou.as_str() else { continue };
        if let Some(v) = ou.strip_prefix("organization:") {
            org.push(v);
        } else if let Some(v) = ou.strip_prefix("space:") {
            space.push(v);
        } else if let Some(v) = ou.strip_prefix("app:") {
            app.push(v);
        }
    }
    let one = |values: Vec<&str>, what: &'static str| -> Result<String, SubjectError> {
        match values.as_slice() {
            [v] if is_guid(v) => Ok((*v).to_owned()),
            [_] => Err(SubjectError::NotAGuid(what)),
            [] => Err(SubjectError::Missing(what)),
            _ => Err(SubjectError::Several(what, values.len())),
        }
    };
    let org = one(org, "organization")?;
    let space = one(space, "space")?;
    let app = one(app, "app")?;
    let cns: Vec<&str> = subject
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .collect();
    let instance = match cns.as_slice() {
        [cn] if is_guid(cn) => (*cn).to_owned(),
        _ => return Err(SubjectError::NoInstance),
    };
    let spki = cert.public_key().raw.to_vec();
    let not_after = cert.validity().not_after.timestamp();
    Ok((
        Instance {
            org,
            space,
            app,
            instance,
        },
        spki,
        not_after,
    ))
}

/// A guid as Diego writes them (hexadecimal and dashes), at most 64 characters.
fn is_guid(v: &str) -> bool {
    !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_hints_are_whole_distinguished_names() {
        // See: issue #18 (OpenSSL clients failed the handshake on hints without the SEQUENCE).
        use x509_parser::prelude::FromDer as _;
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Diego Instance Identity Root CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let pem = params.self_signed(&key).expect("cert").pem();
        let bundle = CaBundle::from_pems([pem.as_bytes()]).expect("bundle");
        let hint = bundle.subjects()[0].as_ref();
        let (rest, name) = x509_parser::x509::X509Name::from_der(hint).expect("a DER Name");
        assert!(rest.is_empty());
        assert_eq!(name.to_string(), "CN=Diego Instance Identity Root CA");
    }

    #[test]
    fn guids_are_hex_and_dashes() {
        assert!(is_guid("4b84793c-f3ea-4a55-92b7-942726aac163"));
        assert!(!is_guid(""));
        assert!(!is_guid("4b84793c f3ea"));
        assert!(!is_guid("x"));
    }
}
