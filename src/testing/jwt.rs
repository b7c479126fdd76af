//! RS256 JWT signing and verification for the fakes (the real token service signs with RSA;
//! STS verifies against the issuer's JWKS).

use aws_lc_rs::signature::{self, KeyPair as _, RsaKeyPair, UnparsedPublicKey};
use base64::Engine as _;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An RSA key that signs tokens.
pub struct JwtSigner {
    key: RsaKeyPair,
    kid: String,
}

impl std::fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSigner").field("kid", &self.kid).finish()
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl JwtSigner {
    /// A new 2048-bit key with key id `kid`.
    pub fn generate(kid: &str) -> Result<Self, BoxError> {
        let rcgen_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)?;
        let key = RsaKeyPair::from_pkcs8(&rcgen_key.serialize_der()).map_err(|e| e.to_string())?;
        Ok(Self {
            key,
            kid: kid.to_owned(),
        })
    }

    /// Signs `claims` as a compact JWS with header `{"kid","typ":"JWT","alg":"RS256"}`.
    pub fn sign(&self, claims: &serde_json::Value) -> Result<String, BoxError> {
        let header = serde_json::json!({"kid": self.kid, "typ": "JWT", "alg": "RS256"});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .map_err(|e| e.to_string())?;
        Ok(format!("{input}.{}", b64(&sig)))
    }

    /// The public key, PKCS#1 DER.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.key.public_key().as_ref().to_vec()
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWKS document, as the real token service serves it at `/token_keys`
    /// (`kty`, `e`, `kid`, `n`; no `use` or `alg`).
    pub fn jwks(&self) -> Result<serde_json::Value, BoxError> {
        use x509_cert::der::{Decode as _, Reader as _, SliceReader, asn1::UintRef};
        let der = self.public_key_der();
        let mut reader = SliceReader::new(&der)?;
        let (n, e) = reader.sequence(|r| {
            let n = UintRef::decode(r)?;
            let e = UintRef::decode(r)?;
            Ok((n.as_bytes().to_vec(), e.as_bytes().to_vec()))
        })?;
        Ok(
            serde_json::json!({"keys": [{"kty": "RSA", "e": b64(&e), "kid": self.kid, "n": b64(&n)}]}),
        )
    }
}

/// Whether `token` carries a valid RS256 signature by the key `public_key_der` (PKCS#1 DER).
pub fn verify(token: &str, public_key_der: &[u8]) -> bool {
    let Some((input, sig)) = token.rsplit_once('.') else {
        return false;
    };
    let Ok(sig) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig) else {
        return false;
    };
    UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, public_key_der)
        .verify(input.as_bytes(), &sig)
        .is_ok()
}
