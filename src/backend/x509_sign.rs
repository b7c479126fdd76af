//! Request signing for IAM Roles Anywhere: SigV4's canonical request and string to sign, but
//! signed with the certificate's private key instead of an HMAC (`AWS4-X509-RSA-SHA256` or
//! `AWS4-X509-ECDSA-SHA256`; SHA-256 for every curve, P-384 included).
//!
//! - canonical request: `POST`, `/sessions`, the sorted RFC 3986-encoded query, one
//!   `name:value` line per signed header (lower-case names, sorted), an empty line, the signed
//!   header names joined by `;`, and the hex SHA-256 of the body;
//! - string to sign: the algorithm, the `X-Amz-Date`, the scope
//!   `<YYYYMMDD>/<region>/rolesanywhere/aws4_request`, and the hex SHA-256 of the canonical
//!   request, one per line;
//! - signature: RSA PKCS#1 v1.5 or ECDSA (ASN.1 DER) over SHA-256 of the string to sign, in lower
//!   case hex;
//! - `Authorization: <algorithm> Credential=<certificate serial, decimal>/<scope>,
//!   SignedHeaders=<names>, Signature=<hex>`.
//!
//! The leaf certificate goes in `X-Amz-X509` and every further certificate of the file in
//! `X-Amz-X509-Chain` (comma-separated base64 DER); both are signed headers. The vector in
//! `tests/data/roles-anywhere/` is reproduced byte for byte (the unit test below).
//!
//! aws-lc-rs signs P-256 with SHA-256 but pairs P-384 only with SHA-384, so P-384 keys sign the
//! SHA-256 digest through the RustCrypto `p384` crate.

use aws_lc_rs::digest;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use rustls_pki_types::PrivateKeyDer;

/// The service name in the scope.
pub const SERVICE: &str = "rolesanywhere";

/// Why a private key cannot sign (never the key itself).
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// An RSA key aws-lc refuses.
    #[error("an RSA key that cannot sign: {0}")]
    Rsa(aws_lc_rs::error::KeyRejected),
    /// An EC key on another curve.
    #[error("an EC key on a curve other than P-256 or P-384")]
    Curve,
    /// Neither RSA nor EC.
    #[error("a key of an unknown kind")]
    Unknown,
}

/// A signature could not be made.
#[derive(Debug, thiserror::Error)]
#[error("{0} signing failed")]
pub struct SignError(&'static str);

/// A private key that signs `CreateSession` requests.
pub enum SigningKey {
    /// An RSA key (PKCS#1 or PKCS#8).
    Rsa(RsaKeyPair),
    /// A P-256 key (SEC1 or PKCS#8).
    P256(EcdsaKeyPair),
    /// A P-384 key (SEC1 or PKCS#8).
    P384(Box<p384::ecdsa::SigningKey>),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SigningKey::Rsa(_) => "SigningKey::Rsa(<redacted>)",
            SigningKey::P256(_) => "SigningKey::P256(<redacted>)",
            SigningKey::P384(_) => "SigningKey::P384(<redacted>)",
        })
    }
}

impl SigningKey {
    /// Reads a key; the error says what kind of key it is, never the key.
    pub fn from_der(key: &PrivateKeyDer<'_>) -> Result<Self, KeyError> {
        match key {
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der())
                .map(SigningKey::Rsa)
                .map_err(KeyError::Rsa),
            PrivateKeyDer::Sec1(k) => ec_key(k.secret_sec1_der()),
            PrivateKeyDer::Pkcs8(k) => {
                let der = k.secret_pkcs8_der();
                match RsaKeyPair::from_pkcs8(der) {
                    Ok(rsa) => Ok(SigningKey::Rsa(rsa)),
                    Err(_) => ec_key(der),
                }
            }
            _ => Err(KeyError::Unknown),
        }
    }

    /// The signing algorithm's name for the `Authorization` header.
    pub fn algorithm(&self) -> &'static str {
        match self {
            SigningKey::Rsa(_) => "AWS4-X509-RSA-SHA256",
            SigningKey::P256(_) | SigningKey::P384(_) => "AWS4-X509-ECDSA-SHA256",
        }
    }

    /// What the key is, for messages and `check`: `RSA 2048`, `EC P-256`, `EC P-384`.
    pub fn describe(&self) -> String {
        match self {
            SigningKey::Rsa(k) => format!("RSA {}", k.public_modulus_len() * 8),
            SigningKey::P256(_) => "EC P-256".to_owned(),
            SigningKey::P384(_) => "EC P-384".to_owned(),
        }
    }

    /// Signs `message` (the string to sign) with SHA-256.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        match self {
            SigningKey::Rsa(k) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .map_err(|_| SignError("RSA"))?;
                Ok(sig)
            }
            SigningKey::P256(k) => k
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| SignError("ECDSA")),
            SigningKey::P384(k) => {
                use p384::ecdsa::signature::hazmat::PrehashSigner as _;
                let digest = digest::digest(&digest::SHA256, message);
                let sig: p384::ecdsa::Signature = k
                    .sign_prehash(digest.as_ref())
                    .map_err(|_| SignError("ECDSA"))?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
        }
    }

    /// The public key, for checking it against the certificate in tests (SPKI-less bytes:
    /// RSA PKCS#1 or an EC point).
    pub fn public_key(&self) -> Vec<u8> {
        match self {
            SigningKey::Rsa(k) => k.public_key().as_ref().to_vec(),
            SigningKey::P256(k) => k.public_key().as_ref().to_vec(),
            SigningKey::P384(k) => k
                .verifying_key()
                .to_encoded_point(false)
                .as_bytes()
                .to_vec(),
        }
    }
}

fn ec_key(der: &[u8]) -> Result<SigningKey, KeyError> {
    if let Ok(k) =
        EcdsaKeyPair::from_private_key_der(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, der)
    {
        return Ok(SigningKey::P256(k));
    }
    use p384::pkcs8::DecodePrivateKey as _;
    let secret = p384::SecretKey::from_sec1_der(der)
        .or_else(|_| p384::SecretKey::from_pkcs8_der(der))
        .map_err(|_| KeyError::Curve)?;
    Ok(SigningKey::P384(Box::new(p384::ecdsa::SigningKey::from(
        secret,
    ))))
}

/// One `CreateSession` request to sign.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The `Host` header: host, and port when not the scheme's default.
    pub host: &'a str,
    /// The encoded query (see [`query`]).
    pub query: &'a str,
    /// The JSON body.
    pub body: &'a [u8],
    /// `X-Amz-Date`, `YYYYMMDDTHHMMSSZ`.
    pub amz_date: &'a str,
    /// The region of the scope.
    pub region: &'a str,
    /// `X-Amz-X509`: the leaf certificate, base64 DER.
    pub x509: &'a str,
    /// `X-Amz-X509-Chain`: the further certificates, comma-separated base64 DER.
    pub chain: Option<&'a str>,
}

/// The signed request's headers: name (lower case) and value, in signing order.
pub fn headers<'a>(r: &Request<'a>) -> Vec<(&'static str, &'a str)> {
    let mut h = vec![
        ("content-type", "application/json"),
        ("host", r.host),
        ("x-amz-date", r.amz_date),
        ("x-amz-x509", r.x509),
    ];
    if let Some(chain) = r.chain {
        h.push(("x-amz-x509-chain", chain));
    }
    h
}

/// The signed header names joined by `;`.
pub fn signed_headers(r: &Request<'_>) -> String {
    headers(r)
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(";")
}

/// The canonical request.
pub fn canonical_request(r: &Request<'_>) -> String {
    let mut out = format!("POST\n/sessions\n{}\n", r.query);
    for (name, value) in headers(r) {
        out.push_str(name);
        out.push(':');
        out.push_str(value.trim());
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed_headers(r));
    out.push('\n');
    out.push_str(&hex(digest::digest(&digest::SHA256, r.body).as_ref()));
    out
}

/// `<YYYYMMDD>/<region>/rolesanywhere/aws4_request`.
pub fn scope(r: &Request<'_>) -> String {
    format!(
        "{}/{}/{SERVICE}/aws4_request",
        r.amz_date.get(..8).unwrap_or(""),
        r.region
    )
}

/// The string to sign for `algorithm`.
pub fn string_to_sign(algorithm: &str, r: &Request<'_>) -> String {
    let canonical = canonical_request(r);
    format!(
        "{algorithm}\n{}\n{}\n{}",
        r.amz_date,
        scope(r),
        hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
    )
}

/// The `Authorization` header value.
pub fn authorization(algorithm: &str, serial: &str, r: &Request<'_>, signature: &[u8]) -> String {
    format!(
        "{algorithm} Credential={serial}/{}, SignedHeaders={}, Signature={}",
        scope(r),
        signed_headers(r),
        hex(signature)
    )
}

/// Signs `r` with `key` for the certificate with decimal `serial`: the `Authorization` value.
pub fn sign(key: &SigningKey, serial: &str, r: &Request<'_>) -> Result<String, SignError> {
    let algorithm = key.algorithm();
    let signature = key.sign(string_to_sign(algorithm, r).as_bytes())?;
    Ok(authorization(algorithm, serial, r, &signature))
}

/// The query for the three ARNs: keys sorted, values RFC 3986-encoded (`:` is `%3A`, `/` `%2F`).
pub fn query(profile_arn: &str, role_arn: &str, trust_anchor_arn: &str) -> String {
    format!(
        "profileArn={}&roleArn={}&trustAnchorArn={}",
        encode(profile_arn),
        encode(role_arn),
        encode(trust_anchor_arn)
    )
}

/// RFC 3986 percent-encoding: everything but `A-Z a-z 0-9 - _ . ~`.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `YYYYMMDDTHHMMSSZ` for a Unix time.
pub fn amz_date(unix: i64) -> String {
    crate::clock::format_rfc3339(unix).replace(['-', ':'], "")
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    use super::*;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/tests/data/roles-anywhere/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("fixture")
    }

    #[test]
    fn reproduces_the_rsa_vector_byte_for_byte() {
        let cert = CertificateDer::from_pem_slice(fixture("alice-cert.crt").as_bytes()).unwrap();
        let key = PrivateKeyDer::from_pem_slice(fixture("alice-cert.key").as_bytes()).unwrap();
        let key = SigningKey::from_der(&key).unwrap();
        let x509 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        let query = query(
            "arn:aws:rolesanywhere:us-east-2:291738886548:profile/6f4943fb-13d4-4242-89c4-be367595c380",
            "arn:aws:iam::291738886548:role/rolesanywhere1",
            "arn:aws:rolesanywhere:us-east-2:291738886548:trust-anchor/a545a1fc-5d86-4032-8f4c-61cdd6ff92da",
        );
        let body = fixture("request_body.json");
        let r = Request {
            host: "127.0.0.1:8080",
            query: &query,
            body: body.as_bytes(),
            amz_date: "20240706T113859Z",
            region: "us-east-2",
            x509: &x509,
            chain: None,
        };
        assert_eq!(canonical_request(&r), fixture("rsa_canonical_request.txt"));
        assert_eq!(
            string_to_sign(key.algorithm(), &r),
            fixture("rsa_string_to_sign.txt")
        );
        let info = crate::identity::leaf_info(cert.as_ref(), 1).unwrap();
        assert_eq!(info.serial, "21");
        let auth = sign(&key, &info.serial, &r).unwrap();
        let signature = fixture("rsa_signature.hex");
        assert_eq!(
            auth,
            format!(
                "AWS4-X509-RSA-SHA256 Credential=21/20240706/us-east-2/rolesanywhere/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date;x-amz-x509, Signature={}",
                signature.trim()
            )
        );
    }

    #[test]
    fn encodes_like_the_signing_helper() {
        assert_eq!(
            encode("arn:aws:iam::1:role/a b~c*"),
            "arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fa%20b~c%2A"
        );
        assert_eq!(amz_date(1_720_265_939), "20240706T113859Z");
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = PrivateKeyDer::from_pem_slice(fixture("alice-cert.key").as_bytes()).unwrap();
        let key = SigningKey::from_der(&key).unwrap();
        assert_eq!(format!("{key:?}"), "SigningKey::Rsa(<redacted>)");
        assert_eq!(key.describe(), "RSA 2048");
    }
}
