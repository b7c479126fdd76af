//! The instance identity CA with a memory of the chains it verified, so that an instance pays
//! for its chain once: its later requests cost the proof's own check (an assertion's signature)
//! and the token's signature, not a path build and two or three signature checks.
//!
//! An entry is keyed by the SHA-256 of the chain exactly as presented (each certificate's DER,
//! length-prefixed), holds what the verification found, and is used only while every
//! certificate of the chain is still valid; the whole memory goes with the CA bundle (a reload
//! starts a new one). It is bounded in entries and in bytes; when full, the oldest entries go
//! first. Only chains that verified are remembered: a request without a valid chain can add
//! nothing, and an instance has only the certificates Diego gave it.

use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use rustls_pki_types::{CertificateDer, UnixTime};

use super::Refusal;
use super::ca::{CaBundle, Verified};

/// The most chains remembered.
pub const MAX_ENTRIES: usize = 8192;
/// The most bytes the remembered chains may take (keys, identities, leaf keys, bookkeeping).
pub const MAX_BYTES: usize = 4 * 1024 * 1024;
/// What an entry costs beyond its identity and key: the map's and the queue's share, the key.
const ENTRY_OVERHEAD: usize = 160;

type Key = [u8; 32];

/// The CA bundle and the chains verified with it.
#[derive(Debug)]
pub struct Chains {
    ca: CaBundle,
    memory: Mutex<Memory>,
    max_entries: usize,
    max_bytes: usize,
    hits: Counter,
    misses: Counter,
}

#[derive(Debug, Default)]
struct Memory {
    entries: HashMap<Key, Verified>,
    /// Keys in the order they were remembered.
    order: VecDeque<Key>,
    bytes: usize,
}

fn cost(v: &Verified) -> usize {
    ENTRY_OVERHEAD + v.instance.size() + v.spki.len()
}

fn key(chain: &[CertificateDer<'_>]) -> Key {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for cert in chain {
        ctx.update(&(cert.len() as u64).to_be_bytes());
        ctx.update(cert.as_ref());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

impl Chains {
    /// A memory of at most [`MAX_ENTRIES`] chains and [`MAX_BYTES`] bytes for `ca`, counting
    /// verifications saved and made in `hits` and `misses`.
    pub fn new(ca: CaBundle, hits: Counter, misses: Counter) -> Self {
        Self::with_bounds(ca, MAX_ENTRIES, MAX_BYTES).counting(hits, misses)
    }

    /// A memory with other bounds (0 entries: remember nothing).
    pub fn with_bounds(ca: CaBundle, max_entries: usize, max_bytes: usize) -> Self {
        Self {
            ca,
            memory: Mutex::new(Memory::default()),
            max_entries,
            max_bytes,
            hits: Counter::default(),
            misses: Counter::default(),
        }
    }

    fn counting(mut self, hits: Counter, misses: Counter) -> Self {
        self.hits = hits;
        self.misses = misses;
        self
    }

    /// The CA bundle.
    pub fn ca(&self) -> &CaBundle {
        &self.ca
    }

    /// What `chain` proves at `now` (Unix seconds): remembered, or verified and remembered.
    pub fn verify(&self, chain: &[CertificateDer<'_>], now: i64) -> Result<Verified, Refusal> {
        let key = key(chain);
        {
            let mut memory = self.memory.lock();
            match memory.entries.get(&key) {
                Some(v) if v.chain_not_after > now => {
                    self.hits.inc();
                    return Ok(v.clone());
                }
                Some(_) => {
                    // Expired since: verify again, which says so in the words of the rules.
                    if let Some(v) = memory.entries.remove(&key) {
                        memory.bytes -= cost(&v);
                    }
                }
                None => {}
            }
        }
        self.misses.inc();
        let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(now).unwrap_or(0),
        ));
        let verified = self.ca.verify(chain, at)?;
        self.remember(key, &verified);
        Ok(verified)
    }

    fn remember(&self, key: Key, verified: &Verified) {
        let size = cost(verified);
        if self.max_entries == 0 || size > self.max_bytes {
            return;
        }
        let mut memory = self.memory.lock();
        if memory.entries.contains_key(&key) {
            return;
        }
        while memory.entries.len() >= self.max_entries || memory.bytes + size > self.max_bytes {
            let Some(oldest) = memory.order.pop_front() else {
                break;
            };
            if let Some(v) = memory.entries.remove(&oldest) {
                memory.bytes -= cost(&v);
            }
        }
        memory.entries.insert(key, verified.clone());
        memory.order.push_back(key);
        memory.bytes += size;
        // Keys of entries removed on expiry stay queued until their turn: keep the queue from
        // growing past the map by more than itself.
        if memory.order.len() > 2 * memory.entries.len() + 16 {
            let Memory { entries, order, .. } = &mut *memory;
            order.retain(|k| entries.contains_key(k));
        }
    }

    /// (chains remembered, bytes they take, verifications saved, verifications made).
    pub fn stats(&self) -> (usize, usize, u64, u64) {
        let memory = self.memory.lock();
        (
            memory.entries.len(),
            memory.bytes,
            self.hits.get(),
            self.misses.get(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::pki::{KeyKind, TestPki};
    use rustls_pki_types::pem::PemObject as _;

    fn chain_of(pem: &str) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .map(|c| c.expect("pem"))
            .collect()
    }

    fn bundle(pki: &TestPki) -> CaBundle {
        let path = pki.write_ca_bundle().expect("ca");
        CaBundle::from_pems([std::fs::read(path).expect("read").as_slice()]).expect("bundle")
    }

    #[test]
    fn a_chain_is_verified_once_while_it_is_valid() {
        let pki = TestPki::new().expect("pki");
        let id = pki
            .issue(KeyKind::EcPkcs8, std::time::Duration::from_secs(3600))
            .expect("identity");
        let chains = Chains::with_bounds(bundle(&pki), MAX_ENTRIES, MAX_BYTES);
        let chain = chain_of(&id.cert_pem);
        let now = crate::clock::now_unix();
        let first = chains.verify(&chain, now).expect("verifies");
        let again = chains.verify(&chain, now + 10).expect("remembered");
        assert_eq!(first, again);
        assert_eq!(chains.stats().2, 1, "one verification saved");
        assert_eq!(chains.stats().3, 1, "one made");
        // Past the leaf's notAfter it is verified again, and refused as expired.
        let later = first.not_after + 1;
        assert!(matches!(
            chains.verify(&chain, later),
            Err(Refusal::Validity(true))
        ));
        assert_eq!(chains.stats().0, 0, "the expired entry is gone");
    }

    #[test]
    fn refused_chains_are_not_remembered_and_the_memory_is_bounded() {
        let pki = TestPki::new().expect("pki");
        let other = TestPki::new().expect("other pki");
        let chains = Chains::with_bounds(bundle(&pki), 3, MAX_BYTES);
        let now = crate::clock::now_unix();
        let stranger = other
            .issue(KeyKind::EcPkcs8, std::time::Duration::from_secs(3600))
            .expect("stranger");
        assert!(chains.verify(&chain_of(&stranger.cert_pem), now).is_err());
        assert_eq!(chains.stats().0, 0);
        let mut ids = Vec::new();
        for _ in 0..5 {
            let id = pki
                .issue(KeyKind::EcPkcs8, std::time::Duration::from_secs(3600))
                .expect("identity");
            chains
                .verify(&chain_of(&id.cert_pem), now)
                .expect("verifies");
            ids.push(id);
        }
        let (entries, bytes, _, _) = chains.stats();
        assert_eq!(entries, 3);
        assert!(bytes > 0 && bytes < 3 * 1024, "{bytes}");
        // The newest are remembered, the oldest went first.
        let misses = chains.stats().3;
        chains.verify(&chain_of(&ids[4].cert_pem), now).unwrap();
        assert_eq!(chains.stats().3, misses);
        chains.verify(&chain_of(&ids[0].cert_pem), now).unwrap();
        assert_eq!(chains.stats().3, misses + 1);
        // A byte bound below one entry remembers nothing.
        let tiny = Chains::with_bounds(bundle(&pki), 100, 10);
        tiny.verify(&chain_of(&ids[0].cert_pem), now).unwrap();
        assert_eq!(tiny.stats().0, 0);
    }
}
