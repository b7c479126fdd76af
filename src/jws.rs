//! Compact JWS (RFC 7515) with the algorithms AWS STS accepts and Diego instance keys use:
//! `RS256` (RSA PKCS#1 v1.5, SHA-256), `ES256` (P-256, SHA-256) and `ES384` (P-384, SHA-384),
//! ECDSA signatures in the fixed `r || s` form JWS requires (not ASN.1). Keys become JWKs
//! (RFC 7517) with their RFC 7638 thumbprint as `kid`, so every process that holds the same key
//! derives the same `kid` without coordination.
//!
//! Used by the issuer (signing tokens, verifying assertions) and by the token-service source
//! (signing assertions with the instance key). A leaf: no I/O, never logs; errors name what is
//! wrong, never key material.

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use base64::Engine as _;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject as _;
use serde::Serialize;

/// The algorithms signed and verified here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    /// RSA PKCS#1 v1.5 with SHA-256.
    Rs256,
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// ECDSA P-384 with SHA-384.
    Es384,
}

impl Alg {
    /// The `alg` header value.
    pub fn name(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
        }
    }

    /// The algorithm an `alg` header names, if it is one of ours.
    pub fn from_name(name: &str) -> Option<Alg> {
        match name {
            "RS256" => Some(Alg::Rs256),
            "ES256" => Some(Alg::Es256),
            "ES384" => Some(Alg::Es384),
            _ => None,
        }
    }
}

/// Why a key cannot be used (never the key itself).
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// No PEM block of a private or public key.
    #[error("holds no PEM private key or public key")]
    NoPem,
    /// An RSA key shorter than 2048 bits.
    #[error("is an RSA key of {0} bits; at least 2048 are needed")]
    RsaTooShort(usize),
    /// A key of a kind or curve not supported.
    #[error("is not an RSA, EC P-256 or EC P-384 key")]
    Unsupported,
    /// A key the crypto library refuses.
    #[error("is not a usable key: {0}")]
    Rejected(String),
}

/// A signature could not be made or a token could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The crypto library failed.
    #[error("signing failed")]
    Crypto,
    /// The header or claims could not be serialized.
    #[error("the token could not be encoded")]
    Json(#[from] serde_json::Error),
}

/// The public half of a key as a JWK: `kty`, `kid`, `use`, `alg` and the public parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Jwk {
    /// `RSA` or `EC`.
    pub kty: &'static str,
    /// The RFC 7638 thumbprint.
    pub kid: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: &'static str,
    /// The algorithm the key signs with.
    pub alg: &'static str,
    /// RSA modulus (base64url).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA exponent (base64url).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// EC curve.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crv: Option<&'static str>,
    /// EC x coordinate (base64url).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// EC y coordinate (base64url).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
}

/// A public key: what verifies, and its JWK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    alg: Alg,
    /// For RSA the modulus and exponent (big-endian), for EC the uncompressed point.
    raw: Raw,
    jwk: Jwk,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Raw {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Ec(Vec<u8>),
}

/// A private key that signs, with its public key.
pub struct Signer {
    key: SignerKey,
    public: PublicKey,
}

enum SignerKey {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("alg", &self.public.alg)
            .field("kid", &self.public.jwk.kid)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// base64url without padding.
pub fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl PublicKey {
    /// The key in a `SubjectPublicKeyInfo` (a certificate's, or a `PUBLIC KEY` PEM's).
    pub fn from_spki(spki_der: &[u8]) -> Result<PublicKey, KeyError> {
        use x509_parser::prelude::FromDer as _;
        use x509_parser::public_key::PublicKey as Parsed;
        let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der)
            .map_err(|_| KeyError::Unsupported)?;
        match spki.parsed().map_err(|_| KeyError::Unsupported)? {
            Parsed::RSA(rsa) => {
                let modulus = strip_zeros(rsa.modulus);
                let bits = modulus.len() * 8;
                if bits < 2048 {
                    return Err(KeyError::RsaTooShort(bits));
                }
                Ok(Self::rsa(modulus, strip_zeros(rsa.exponent)))
            }
            Parsed::EC(point) => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|oid| oid.to_id_string());
                let alg = match curve.as_deref() {
                    Some("1.2.840.10045.3.1.7") => Alg::Es256,
                    Some("1.3.132.0.34") => Alg::Es384,
                    _ => return Err(KeyError::Unsupported),
                };
                Self::ec(alg, point.data().to_vec())
            }
            _ => Err(KeyError::Unsupported),
        }
    }

    /// The public key in a PEM: `PUBLIC KEY`, or the public half of a private key.
    pub fn from_pem(pem: &[u8]) -> Result<PublicKey, KeyError> {
        if let Ok(spki) = rustls_pki_types::SubjectPublicKeyInfoDer::from_pem_slice(pem) {
            return Self::from_spki(spki.as_ref());
        }
        Ok(Signer::from_pem(pem)?.public)
    }

    /// An RSA key from its modulus and exponent (big-endian), as a JWK's `n` and `e` hold them.
    pub fn rsa(modulus: &[u8], exponent: &[u8]) -> PublicKey {
        let (n, e) = (b64url(modulus), b64url(exponent));
        // RFC 7638: the required members, in lexicographic order, no whitespace.
        let kid = thumbprint(&format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#));
        PublicKey {
            alg: Alg::Rs256,
            raw: Raw::Rsa {
                n: modulus.to_vec(),
                e: exponent.to_vec(),
            },
            jwk: Jwk {
                kty: "RSA",
                kid,
                use_: "sig",
                alg: Alg::Rs256.name(),
                n: Some(n),
                e: Some(e),
                crv: None,
                x: None,
                y: None,
            },
        }
    }

    /// An EC key of `alg`'s curve from its uncompressed point (`04 || x || y`).
    pub fn ec(alg: Alg, point: Vec<u8>) -> Result<PublicKey, KeyError> {
        let (crv, len) = match alg {
            Alg::Es256 => ("P-256", 32),
            Alg::Es384 => ("P-384", 48),
            Alg::Rs256 => return Err(KeyError::Unsupported),
        };
        if point.len() != 1 + 2 * len || point[0] != 4 {
            return Err(KeyError::Unsupported);
        }
        let (x, y) = (b64url(&point[1..=len]), b64url(&point[1 + len..]));
        let kid = thumbprint(&format!(
            r#"{{"crv":"{crv}","kty":"EC","x":"{x}","y":"{y}"}}"#
        ));
        Ok(PublicKey {
            alg,
            raw: Raw::Ec(point),
            jwk: Jwk {
                kty: "EC",
                kid,
                use_: "sig",
                alg: alg.name(),
                n: None,
                e: None,
                crv: Some(crv),
                x: Some(x),
                y: Some(y),
            },
        })
    }

    /// The algorithm this key verifies.
    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// Its JWK.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// Its `kid` (the RFC 7638 thumbprint).
    pub fn kid(&self) -> &str {
        &self.jwk.kid
    }

    /// Whether `signature` is this key's signature of `message` with `alg` (which must be the
    /// key's own algorithm).
    pub fn verify(&self, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
        if alg != self.alg {
            return false;
        }
        match (&self.raw, alg) {
            (Raw::Rsa { n, e }, Alg::Rs256) => signature::RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
            (Raw::Ec(point), Alg::Es256) => {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
            (Raw::Ec(point), Alg::Es384) => {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
            _ => false,
        }
    }
}

/// RFC 7638: base64url of the SHA-256 of the canonical JWK members.
fn thumbprint(canonical: &str) -> String {
    b64url(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()).as_ref())
}

/// Big-endian integers in keys may carry a leading zero byte (DER sign padding): JWK does not.
fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    &bytes[start..]
}

/// The modulus size of an RSA key in PKCS#8 (for the message refusing a short one).
fn rsa_bits(pkcs8: &[u8]) -> Option<usize> {
    let info = x509_parser::der_parser::parse_der(pkcs8).ok()?.1;
    // PrivateKeyInfo ::= SEQUENCE { version, algorithm, privateKey OCTET STRING (RSAPrivateKey) }
    let inner = info.as_sequence().ok()?.get(2)?.as_slice().ok()?;
    let key = x509_parser::der_parser::parse_der(inner).ok()?.1;
    // RSAPrivateKey ::= SEQUENCE { version, modulus, ... }
    let modulus = key.as_sequence().ok()?.get(1)?.as_slice().ok()?;
    Some(strip_zeros(modulus).len() * 8)
}

impl Signer {
    /// A private key in PEM (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub fn from_pem(pem: &[u8]) -> Result<Signer, KeyError> {
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|_| KeyError::NoPem)?;
        Self::from_der(&der)
    }

    /// A private key in DER.
    pub fn from_der(der: &PrivateKeyDer<'_>) -> Result<Signer, KeyError> {
        let rsa = |kp: RsaKeyPair| -> Result<Signer, KeyError> {
            let spki = kp
                .public_key()
                .as_der()
                .map_err(|e| KeyError::Rejected(e.to_string()))?;
            let public = PublicKey::from_spki(spki.as_ref())?;
            Ok(Signer {
                key: SignerKey::Rsa(kp),
                public,
            })
        };
        match der {
            PrivateKeyDer::Pkcs1(k) => rsa(RsaKeyPair::from_der(k.secret_pkcs1_der())
                .map_err(|e| KeyError::Rejected(e.to_string()))?),
            PrivateKeyDer::Pkcs8(k) => match RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()) {
                Ok(kp) => rsa(kp),
                // aws-lc refuses RSA keys under 2048 bits by name; say so rather than
                // "not RSA or EC".
                Err(e) if e.description_() == "TooSmall" => Err(KeyError::RsaTooShort(
                    rsa_bits(k.secret_pkcs8_der()).unwrap_or(0),
                )),
                Err(_) => Self::ec(k.secret_pkcs8_der()),
            },
            PrivateKeyDer::Sec1(k) => Self::ec(k.secret_sec1_der()),
            _ => Err(KeyError::Unsupported),
        }
    }

    fn ec(der: &[u8]) -> Result<Signer, KeyError> {
        for (alg, signing) in [
            (Alg::Es256, &signature::ECDSA_P256_SHA256_FIXED_SIGNING),
            (Alg::Es384, &signature::ECDSA_P384_SHA384_FIXED_SIGNING),
        ] {
            if let Ok(kp) = EcdsaKeyPair::from_private_key_der(signing, der) {
                let public = PublicKey::ec(alg, kp.public_key().as_ref().to_vec())?;
                return Ok(Signer {
                    key: SignerKey::Ec(kp),
                    public,
                });
            }
        }
        Err(KeyError::Unsupported)
    }

    /// The public key.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The algorithm it signs with.
    pub fn alg(&self) -> Alg {
        self.public.alg
    }

    /// Signs `message`.
    pub fn sign_bytes(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        match &self.key {
            SignerKey::Rsa(kp) => {
                let mut sig = vec![0u8; kp.public_modulus_len()];
                kp.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .map_err(|_| SignError::Crypto)?;
                Ok(sig)
            }
            SignerKey::Ec(kp) => kp
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| SignError::Crypto),
        }
    }

    /// A compact JWS of `claims` with `alg` and `header` (other members, e.g. `kid`, `typ`,
    /// `x5c`: a JSON object).
    pub fn sign(
        &self,
        header: serde_json::Value,
        claims: &serde_json::Value,
    ) -> Result<String, SignError> {
        let mut header = header;
        if let Some(h) = header.as_object_mut() {
            h.insert("alg".to_owned(), self.alg().name().into());
        }
        let input = format!(
            "{}.{}",
            b64url(&serde_json::to_vec(&header)?),
            b64url(&serde_json::to_vec(claims)?)
        );
        let signature = self.sign_bytes(input.as_bytes())?;
        Ok(format!("{input}.{}", b64url(&signature)))
    }
}

/// A compact JWS taken apart, nothing verified yet.
#[derive(Debug)]
pub struct Parts<'t> {
    /// The decoded header.
    pub header: serde_json::Map<String, serde_json::Value>,
    /// The decoded payload.
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// `base64url(header).base64url(payload)`: what the signature covers.
    pub signing_input: &'t str,
    /// The signature.
    pub signature: Vec<u8>,
}

/// Why a string is not a compact JWS with JSON header and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not three non-empty dot-separated parts.
    #[error("is not three dot-separated base64url parts")]
    Shape,
    /// A part is not base64url, or the header or payload is not a JSON object.
    #[error("has a part that is not base64url JSON")]
    Encoding,
}

/// Takes a compact JWS apart (header and payload decoded, signature not checked).
pub fn parse(token: &str) -> Result<Parts<'_>, ParseError> {
    let mut it = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(ParseError::Shape);
    };
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return Err(ParseError::Shape);
    }
    let decode = |part: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| ParseError::Encoding)
    };
    let object = |part: &str| -> Result<serde_json::Map<String, serde_json::Value>, ParseError> {
        serde_json::from_slice(&decode(part)?).map_err(|_| ParseError::Encoding)
    };
    Ok(Parts {
        header: object(h)?,
        claims: object(p)?,
        signing_input: &token[..h.len() + 1 + p.len()],
        signature: decode(s)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_pem(alg: &'static rcgen::SignatureAlgorithm) -> String {
        rcgen::KeyPair::generate_for(alg)
            .expect("key")
            .serialize_pem()
    }

    #[test]
    fn signs_and_verifies_with_every_algorithm() {
        for alg in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
            &rcgen::PKCS_RSA_SHA256,
        ] {
            let signer = Signer::from_pem(key_pem(alg).as_bytes()).expect("signer");
            let token = signer
                .sign(
                    serde_json::json!({"typ": "JWT"}),
                    &serde_json::json!({"sub": "x"}),
                )
                .expect("sign");
            let parts = parse(&token).expect("parse");
            let named = Alg::from_name(parts.header["alg"].as_str().unwrap()).unwrap();
            assert!(signer.public().verify(
                named,
                parts.signing_input.as_bytes(),
                &parts.signature
            ));
            assert!(!signer.public().verify(named, b"other", &parts.signature));
            // The public PEM gives the same key and kid.
            let public_pem = rcgen::KeyPair::from_pem(&key_pem(alg)).is_ok();
            assert!(public_pem);
        }
    }

    #[test]
    fn the_kid_is_the_rfc_7638_thumbprint() {
        // RFC 7638 section 3.1's example key and thumbprint.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let e = "AQAB";
        let kid = thumbprint(&format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#));
        assert_eq!(kid, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn a_short_rsa_key_is_refused() {
        // A real 1024-bit key (a test fixture: rcgen makes no RSA keys that short).
        let short = include_str!("../tests/data/rsa-1024-test-key.pem");
        let e = Signer::from_pem(short.as_bytes()).expect_err("refused");
        assert!(matches!(e, KeyError::RsaTooShort(1024)), "{e:?}");
        assert!(matches!(
            PublicKey::from_pem(short.as_bytes()),
            Err(KeyError::RsaTooShort(1024))
        ));
        let pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
            .expect("key")
            .serialize_pem();
        assert!(Signer::from_pem(pem.as_bytes()).is_ok());
        assert!(matches!(
            Signer::from_pem(b"not a key"),
            Err(KeyError::NoPem)
        ));
    }

    #[test]
    fn a_public_pem_gives_the_key_of_its_private_half() {
        let key = rcgen::KeyPair::generate().expect("key");
        let from_private = PublicKey::from_pem(key.serialize_pem().as_bytes()).expect("private");
        let from_public = PublicKey::from_pem(key.public_key_pem().as_bytes()).expect("public");
        assert_eq!(from_private, from_public);
        assert_eq!(from_private.kid(), from_public.kid());
    }

    #[test]
    fn debug_never_shows_the_key() {
        let signer =
            Signer::from_pem(key_pem(&rcgen::PKCS_ECDSA_P256_SHA256).as_bytes()).expect("key");
        let shown = format!("{signer:?}");
        assert!(
            shown.contains("<redacted>") && !shown.contains("BEGIN"),
            "{shown}"
        );
    }

    #[test]
    fn parse_refuses_what_is_not_a_jws() {
        assert_eq!(parse("a.b").unwrap_err(), ParseError::Shape);
        assert_eq!(parse("a.b.c.d").unwrap_err(), ParseError::Shape);
        assert_eq!(parse("!.e30.c2ln").unwrap_err(), ParseError::Encoding);
        assert!(parse("e30.e30.c2ln").is_ok());
    }
}
