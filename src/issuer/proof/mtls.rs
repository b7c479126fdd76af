//! Mutual TLS: a client certificate whose key the TLS handshake proved (the issuer serves HTTPS
//! itself, `--tls-cert`). The chain is judged here, not in the handshake, so that a refusal has
//! a reason, a status and a metric instead of a failed handshake (`tls.rs`).

use super::{Presented, Proof, Proven, Refusal, Verifier};

/// A client certificate over TLS.
#[derive(Debug)]
pub struct Mtls;

impl Proof for Mtls {
    const NAME: &'static str = "mtls";
    const HOW: &'static str = "a client certificate over TLS";
    const DEFAULT: bool = true;
    const NEEDS_TLS: bool = true;

    fn verify(req: &Presented<'_>, v: &Verifier<'_>) -> Option<Result<Proven, Refusal>> {
        let chain = req.peer.filter(|c| !c.is_empty())?;
        Some(v.chains.verify(chain, v.now).map(|verified| Proven {
            instance: verified.instance,
            not_after: verified.not_after,
            jti: None,
        }))
    }
}
