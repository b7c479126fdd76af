//! The signed assertion (RFC 7523 JWT bearer grant): proof that the caller holds the instance
//! key, independent of any router between it and the issuer.
//!
//! The assertion is a JWS signed with the instance key (`RS256` for RSA, `ES256` for P-256,
//! `ES384` for P-384) whose `x5c` header carries the certificate chain (standard base64 DER,
//! leaf first). Its claims: `iss` and `sub` equal to the leaf's CN, `aud` equal to the issuer
//! URL exactly as configured, `iat` within [`MAX_SKEW`] of the issuer's clock, `exp` after now
//! and at most [`MAX_LIFETIME`] after `iat`, and a `jti` of at least [`MIN_JTI`] characters that
//! this instance has not accepted before while that assertion is valid ([`Replay`]).

use std::collections::HashMap;
use std::hash::BuildHasher as _;

use base64::Engine as _;
use parking_lot::Mutex;
use rustls_pki_types::CertificateDer;

use super::Refusal;
use crate::jws::{self, Alg};

/// How far `iat` may be from the issuer's clock, either way.
pub const MAX_SKEW: i64 = 300;
/// How long after `iat` an assertion may expire at most.
pub const MAX_LIFETIME: i64 = 300;
/// The shortest `jti` accepted.
pub const MIN_JTI: usize = 16;
/// The most certificates `x5c` may hold.
const MAX_CHAIN: usize = 5;
/// The most `jti`s remembered at once (about 32 MiB); beyond, assertions are refused as busy.
pub const MAX_REMEMBERED: usize = 2_000_000;

/// An assertion taken apart: nothing verified yet but its shape.
#[derive(Debug)]
pub struct Assertion {
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
pub fn parse(token: &str) -> Result<Assertion, Refusal> {
    let malformed = |what: &str| Refusal::Assertion(format!("the assertion {what}"));
    let parts = jws::parse(token).map_err(|e| malformed(&e.to_string()))?;
    let alg = parts
        .header
        .get("alg")
        .and_then(|a| a.as_str())
        .and_then(Alg::from_name)
        .ok_or_else(|| malformed("names no alg of RS256, ES256, ES384"))?;
    let x5c = parts
        .header
        .get("x5c")
        .and_then(|c| c.as_array())
        .filter(|c| !c.is_empty() && c.len() <= MAX_CHAIN)
        .ok_or_else(|| malformed("has no x5c certificate chain (1 to 5 certificates)"))?;
    let mut chain = Vec::with_capacity(x5c.len());
    for cert in x5c {
        let der = cert
            .as_str()
            .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
            .ok_or_else(|| malformed("has an x5c entry that is not base64 DER"))?;
        chain.push(CertificateDer::from(der));
    }
    let text = |name: &str| -> Result<String, Refusal> {
        parts
            .claims
            .get(name)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .ok_or_else(|| malformed(&format!("has no {name} claim")))
    };
    let number = |name: &str| -> Result<i64, Refusal> {
        parts
            .claims
            .get(name)
            .and_then(serde_json::Value::as_i64)
            .ok_or_else(|| malformed(&format!("has no integer {name} claim")))
    };
    let aud = match parts.claims.get("aud") {
        Some(serde_json::Value::String(a)) => vec![a.clone()],
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    Ok(Assertion {
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

impl Assertion {
    /// The checks that need no key: audience, times, `jti` length (cheap, so first).
    pub fn check_claims(&self, issuer_url: &str, now: i64) -> Result<(), Refusal> {
        if !self.aud.iter().any(|a| a == issuer_url) {
            return Err(Refusal::Audience(format!(
                "the assertion's aud is not {issuer_url}"
            )));
        }
        if self.iat < now - MAX_SKEW {
            return Err(Refusal::Stale(format!(
                "the assertion was issued {} s ago (at most {MAX_SKEW} s)",
                now - self.iat
            )));
        }
        if self.iat > now + MAX_SKEW {
            return Err(Refusal::Stale(format!(
                "the assertion was issued {} s in the future (at most {MAX_SKEW} s)",
                self.iat - now
            )));
        }
        if self.exp <= now {
            return Err(Refusal::Stale("the assertion has expired".to_owned()));
        }
        if self.exp - self.iat > MAX_LIFETIME {
            return Err(Refusal::Stale(format!(
                "the assertion expires {} s after it was issued (at most {MAX_LIFETIME} s)",
                self.exp - self.iat
            )));
        }
        if self.jti.chars().count() < MIN_JTI {
            return Err(Refusal::Assertion(format!(
                "the assertion's jti is shorter than {MIN_JTI} characters"
            )));
        }
        Ok(())
    }

    /// Whether the leaf's key (its `SubjectPublicKeyInfo`) signed the assertion, and the
    /// assertion names the leaf's CN as `iss` and `sub`.
    pub fn check_signature(&self, leaf_spki: &[u8], cn: &str) -> Result<(), Refusal> {
        let key = jws::PublicKey::from_spki(leaf_spki)
            .map_err(|e| Refusal::Signature(format!("the certificate's key {e}")))?;
        if key.alg() != self.alg {
            return Err(Refusal::Signature(format!(
                "the assertion says {} but the certificate's key signs {}",
                self.alg.name(),
                key.alg().name()
            )));
        }
        if !key.verify(self.alg, self.signing_input.as_bytes(), &self.signature) {
            return Err(Refusal::Signature(
                "the assertion's signature does not verify with the certificate's key".to_owned(),
            ));
        }
        if self.iss != cn || self.sub != cn {
            return Err(Refusal::Signature(
                "the assertion's iss and sub are not the certificate's CN".to_owned(),
            ));
        }
        Ok(())
    }
}

/// The `jti`s this instance accepted, each kept until its assertion expires. Keys are keyed
/// hashes of the `jti` (SipHash with a random key), so memory is bounded per entry.
#[derive(Debug)]
pub struct Replay {
    hasher: std::collections::hash_map::RandomState,
    inner: Mutex<ReplayInner>,
}

#[derive(Debug, Default)]
struct ReplayInner {
    seen: HashMap<u64, i64>,
    next_prune: i64,
}

impl Default for Replay {
    fn default() -> Self {
        Self::new()
    }
}

impl Replay {
    /// An empty set.
    pub fn new() -> Self {
        Self {
            hasher: std::collections::hash_map::RandomState::new(),
            inner: Mutex::new(ReplayInner::default()),
        }
    }

    /// Records `jti` (valid until `exp`); a `jti` already recorded and still valid is a replay.
    pub fn accept(&self, jti: &str, exp: i64, now: i64) -> Result<(), Refusal> {
        let key = self.hasher.hash_one(jti);
        let mut inner = self.inner.lock();
        if now >= inner.next_prune {
            inner.seen.retain(|_, until| *until > now);
            inner.next_prune = now + 10;
        }
        if inner.seen.get(&key).is_some_and(|until| *until > now) {
            return Err(Refusal::Replay);
        }
        if inner.seen.len() >= MAX_REMEMBERED {
            return Err(Refusal::Busy);
        }
        inner.seen.insert(key, exp);
        Ok(())
    }

    /// How many `jti`s are remembered.
    pub fn len(&self) -> usize {
        self.inner.lock().seen.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jti_is_refused_while_its_assertion_is_valid_and_forgotten_after() {
        let replay = Replay::new();
        assert!(replay.accept("0123456789abcdef", 100, 50).is_ok());
        assert!(matches!(
            replay.accept("0123456789abcdef", 100, 60),
            Err(Refusal::Replay)
        ));
        assert!(replay.accept("another-jti-0000", 100, 60).is_ok());
        // Past exp it is pruned (and could no longer be used anyway).
        assert!(replay.accept("third-jti-000000", 200, 150).is_ok());
        assert_eq!(replay.len(), 1);
        assert!(replay.accept("0123456789abcdef", 300, 150).is_ok());
    }

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
}
