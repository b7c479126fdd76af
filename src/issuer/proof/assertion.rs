//! The signed assertion (RFC 7523 JWT bearer grant): proof that the caller holds the instance
//! key, independent of any router between it and the issuer.
//!
//! The assertion is a JWS signed with the instance key (`RS256` for RSA, `ES256` for P-256,
//! `ES384` for P-384) whose `x5c` header carries the certificate chain (standard base64 DER,
//! leaf first). Its claims: `iss` and `sub` equal to the leaf's CN, `aud` equal to the issuer
//! URL (or a URL clients reach it at, `--token-url`) exactly as configured, `iat` at most
//! [`MAX_AHEAD`] ahead of the issuer's clock, `exp` after now and at most [`MAX_LIFETIME`] after
//! `iat`, and a `jti` of at least [`MIN_JTI`] characters that the issuer has not accepted before
//! while that assertion is valid (`budget.rs` remembers them, per instance).
//!
//! So an assertion is usable for at most `MAX_AHEAD + MAX_LIFETIME` (6 minutes) after it was
//! made, once per issuer process.

use base64::Engine as _;
use rustls_pki_types::CertificateDer;

use super::{Presented, Proof, Proven, Refusal, Verifier};
use crate::jws::{self, Alg};
use crate::report::Untrusted;

pub use super::super::refusal::{
    AssertionError, MAX_AHEAD, MAX_CHAIN, MAX_JTI, MAX_LIFETIME, MIN_JTI, SignatureError, Staleness,
};

/// The signed assertion.
#[derive(Debug)]
pub struct Assertion;

impl Proof for Assertion {
    const NAME: &'static str = "assertion";
    const HOW: &'static str =
        "a signed assertion (grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer)";
    const DEFAULT: bool = true;

    fn verify(req: &Presented<'_>, v: &Verifier<'_>) -> Option<Result<Proven, Refusal>> {
        let token = req.form.assertion.as_deref()?;
        let proven = (|| {
            let a = parse(token)?;
            a.check_claims(v.audiences, v.now)?;
            let verified = v.chains.verify(&a.chain, v.now)?;
            a.check_signature(&verified.spki, &verified.instance.instance)?;
            Ok(Proven {
                instance: verified.instance,
                not_after: verified.not_after,
                jti: Some((a.jti, a.exp)),
            })
        })();
        Some(proven)
    }
}

/// An assertion taken apart: nothing verified yet but its shape.
#[derive(Debug)]
pub struct Parsed {
    /// The signing algorithm.
    pub alg: Alg,
    /// The chain from `x5c`, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// `iss`.
    pub iss: String,
    /// `sub`.
    pub sub: String,
    /// `aud`: a string, or an array of strings.
    pub aud: Vec<String>,
    /// `iat`.
    pub iat: i64,
    /// `exp`.
    pub exp: i64,
    /// `jti`.
    pub jti: String,
    signing_input: String,
    signature: Vec<u8>,
}

/// Reads an assertion's header and claims.
pub fn parse(token: &str) -> Result<Parsed, AssertionError> {
    let parts = jws::parse(token).map_err(AssertionError::NotJws)?;
    let alg = parts
        .header
        .get("alg")
        .and_then(|a| a.as_str())
        .and_then(Alg::from_name)
        .ok_or(AssertionError::Alg)?;
    let x5c = parts
        .header
        .get("x5c")
        .and_then(|c| c.as_array())
        .filter(|c| !c.is_empty() && c.len() <= MAX_CHAIN)
        .ok_or(AssertionError::NoChain)?;
    let mut chain = Vec::with_capacity(x5c.len());
    for cert in x5c {
        let der = cert
            .as_str()
            .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
            .ok_or(AssertionError::ChainEntry)?;
        chain.push(CertificateDer::from(der));
    }
    let text = |name: &'static str| -> Result<String, AssertionError> {
        parts
            .claims
            .get(name)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .ok_or(AssertionError::Claim(name))
    };
    let number = |name: &'static str| -> Result<i64, AssertionError> {
        parts
            .claims
            .get(name)
            .and_then(serde_json::Value::as_i64)
            .ok_or(AssertionError::Claim(name))
    };
    let aud = match parts.claims.get("aud") {
        Some(serde_json::Value::String(a)) => vec![a.clone()],
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    Ok(Parsed {
        alg,
        chain,
        iss: text("iss")?,
        sub: text("sub")?,
        aud,
        iat: number("iat")?,
        exp: number("exp")?,
        jti: text("jti")?,
        signing_input: parts.signing_input.to_owned(),
        signature: parts.signature,
    })
}

impl Parsed {
    /// The checks that need no key: audience, times, `jti` length (cheap, so first).
    /// `audiences` are what `aud` may name.
    pub fn check_claims(&self, audiences: &[String], now: i64) -> Result<(), Refusal> {
        if !self.aud.iter().any(|a| audiences.contains(a)) {
            return Err(Refusal::Audience {
                got: Untrusted::new(self.aud.first().map_or("", String::as_str)),
                expected: audiences.join(" or "),
            });
        }
        if self.iat > now + MAX_AHEAD {
            return Err(Staleness::Ahead(self.iat - now).into());
        }
        if self.exp <= now {
            return Err(Staleness::Expired(now - self.exp).into());
        }
        if self.exp - self.iat > MAX_LIFETIME {
            return Err(Staleness::TooLong(self.exp - self.iat).into());
        }
        if !(MIN_JTI..=MAX_JTI).contains(&self.jti.chars().count()) {
            return Err(AssertionError::Jti.into());
        }
        Ok(())
    }

    /// Whether the leaf's key (its `SubjectPublicKeyInfo`) signed the assertion, and the
    /// assertion names the leaf's CN as `iss` and `sub`.
    pub fn check_signature(&self, leaf_spki: &[u8], cn: &str) -> Result<(), SignatureError> {
        let key = jws::PublicKey::from_spki(leaf_spki)
            .map_err(|e| SignatureError::Key(e.to_string()))?;
        if key.alg() != self.alg {
            return Err(SignatureError::Alg {
                said: self.alg.name(),
                signs: key.alg().name(),
            });
        }
        if !key.verify(self.alg, self.signing_input.as_bytes(), &self.signature) {
            return Err(SignatureError::Invalid);
        }
        if self.iss != cn || self.sub != cn {
            return Err(SignatureError::NotTheCn);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_refuses_assertions_without_alg_chain_or_claims() {
        let b64 = |v: serde_json::Value| jws::b64url(v.to_string().as_bytes());
        let token =
            |h: serde_json::Value, c: serde_json::Value| format!("{}.{}.c2ln", b64(h), b64(c));
        let claims = serde_json::json!({
            "iss": "i", "sub": "i", "aud": "https://x", "iat": 1, "exp": 2, "jti": "j"
        });
        for (header, want) in [
            (
                serde_json::json!({"alg": "none", "x5c": ["AA=="]}),
                "no alg",
            ),
            (
                serde_json::json!({"alg": "HS256", "x5c": ["AA=="]}),
                "no alg",
            ),
            (serde_json::json!({"alg": "ES256"}), "no x5c"),
            (serde_json::json!({"alg": "ES256", "x5c": []}), "no x5c"),
            (
                serde_json::json!({"alg": "ES256", "x5c": ["!!"]}),
                "not base64",
            ),
        ] {
            let e = parse(&token(header, claims.clone())).expect_err("refused");
            assert!(e.to_string().contains(want), "{e}");
        }
        let e = parse(&token(
            serde_json::json!({"alg": "ES256", "x5c": ["AA=="]}),
            serde_json::json!({"iss": "i"}),
        ))
        .expect_err("refused");
        assert!(e.to_string().contains("no sub claim"), "{e}");
    }

    fn parsed(iat: i64, exp: i64, jti: &str) -> Parsed {
        Parsed {
            alg: Alg::Es256,
            chain: Vec::new(),
            iss: "i".into(),
            sub: "i".into(),
            aud: vec!["https://issuer".into()],
            iat,
            exp,
            jti: jti.into(),
            signing_input: String::new(),
            signature: Vec::new(),
        }
    }

    #[test]
    fn an_assertion_lives_at_most_six_minutes_after_it_was_made() {
        // See: issue #23 item 3 (iat could lie 5 minutes ahead: ~10 minutes of use).
        let aud = ["https://issuer".to_owned()];
        let jti = "0123456789abcdef";
        let now = 1_000_000;
        assert!(parsed(now + 60, now + 360, jti).check_claims(&aud, now).is_ok());
        assert!(matches!(
            parsed(now + 61, now + 300, jti).check_claims(&aud, now),
            Err(Refusal::Stale(Staleness::Ahead(61)))
        ));
        assert!(matches!(
            parsed(now - 10, now + 291, jti).check_claims(&aud, now),
            Err(Refusal::Stale(Staleness::TooLong(301)))
        ));
        assert!(matches!(
            parsed(now - 300, now, jti).check_claims(&aud, now),
            Err(Refusal::Stale(Staleness::Expired(0)))
        ));
        assert!(matches!(
            parsed(now, now + 120, "short").check_claims(&aud, now),
            Err(Refusal::Assertion(AssertionError::Jti))
        ));
        assert!(matches!(
            parsed(now, now + 120, jti).check_claims(&["https://other".to_owned()], now),
            Err(Refusal::Audience { .. })
        ));
    }
}
