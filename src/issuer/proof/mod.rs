//! Proofs of identity: each turns what a request carries into a verified instance, and nothing
//! after them looks at how the instance was proven.
//!
//! Each kind of proof is one file implementing [`Proof`]: its name (as `--accept` lists it),
//! what a client sends, and `verify`, which finds the proof in the request (or says there is
//! none) and checks it to the end: every proof ends in the instance identity CA (`chains.rs`).
//! The list of kinds is the one [`proofs!`] invocation below, which also declares each file:
//! adding a proof is its file and one line there.
//!
//! A proof of a kind `--accept` does not list is ignored, not refused; every accepted proof a
//! request carries is verified, and they must all name the same instance.

use rustls_pki_types::CertificateDer;

use super::ca::Instance;
use super::chains::Chains;
use super::form::Form;
use super::refusal::Refusal;

/// What a proof sees of a request.
#[derive(Debug)]
pub struct Presented<'r> {
    /// The request's headers.
    pub headers: &'r http::HeaderMap,
    /// Its form.
    pub form: &'r Form,
    /// The client certificate chain of its TLS connection (the handshake proved the key).
    pub peer: Option<&'r [CertificateDer<'static>]>,
}

/// What every proof verifies with.
#[derive(Debug)]
pub struct Verifier<'v> {
    /// The instance identity CA, and the chains it verified before.
    pub chains: &'v Chains,
    /// Now, in Unix seconds.
    pub now: i64,
    /// What an assertion's `aud` may name: the issuer URL and the URLs clients reach it at.
    pub audiences: &'v [String],
}

/// An instance a proof verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proven {
    /// Who.
    pub instance: Instance,
    /// When the certificate that proved it expires (Unix seconds).
    pub not_after: i64,
    /// An assertion's `jti` and `exp`, remembered to refuse its replay.
    pub jti: Option<(String, i64)>,
}

/// One kind of proof.
pub trait Proof {
    /// Its name, as `--accept` lists it.
    const NAME: &'static str;
    /// What a client sends to prove itself this way (for a request that carries no proof).
    const HOW: &'static str;
    /// Accepted unless `--accept` says otherwise.
    const DEFAULT: bool;
    /// Whether only a TLS connection to the issuer itself can carry it.
    const NEEDS_TLS: bool = false;
    /// What accepting it trusts beyond the request, said at start when it is accepted.
    const CAUTION: Option<&'static str> = None;

    /// The proof of this kind in the request, verified; `None` when it carries none.
    fn verify(req: &Presented<'_>, v: &Verifier<'_>) -> Option<Result<Proven, Refusal>>;
}

/// Declares the kinds of proof, once: their files, [`ProofKind`] and its dispatch.
macro_rules! proofs {
    ($( $(#[$doc:meta])* $variant:ident($module:ident::$ty:ident), )*) => {
        $( pub mod $module; )*

        /// A kind of proof, as `--accept` names it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
        pub enum ProofKind {
            $( $(#[$doc])* $variant, )*
        }

        impl ProofKind {
            /// Every kind, in the order they are tried.
            pub const ALL: &'static [ProofKind] = &[$( ProofKind::$variant, )*];

            /// Its name.
            pub fn name(self) -> &'static str {
                match self {
                    $( ProofKind::$variant => <$module::$ty as Proof>::NAME, )*
                }
            }

            /// What a client sends to prove itself this way.
            pub fn how(self) -> &'static str {
                match self {
                    $( ProofKind::$variant => <$module::$ty as Proof>::HOW, )*
                }
            }

            /// Whether it is accepted by default.
            pub fn default_on(self) -> bool {
                match self {
                    $( ProofKind::$variant => <$module::$ty as Proof>::DEFAULT, )*
                }
            }

            /// Whether only TLS to the issuer can carry it.
            pub fn needs_tls(self) -> bool {
                match self {
                    $( ProofKind::$variant => <$module::$ty as Proof>::NEEDS_TLS, )*
                }
            }

            /// What accepting it trusts beyond the request.
            pub fn caution(self) -> Option<&'static str> {
                match self {
                    $( ProofKind::$variant => <$module::$ty as Proof>::CAUTION, )*
                }
            }

            fn verify(self, req: &Presented<'_>, v: &Verifier<'_>) -> Option<Result<Proven, Refusal>> {
                match self {
                    $( ProofKind::$variant => <$module::$ty as Proof>::verify(req, v), )*
                }
            }
        }
    };
}

proofs! {
    /// A JWT signed with the instance key (RFC 7523 JWT bearer grant).
    Assertion(assertion::Assertion),
    /// A client certificate over TLS (needs --tls-cert and --tls-key).
    Mtls(mtls::Mtls),
    /// The certificate in X-Forwarded-Client-Cert, as a router that sets it from the handshake
    /// writes it (gorouter sanitize_set).
    Xfcc(xfcc::Xfcc),
}

/// The proofs accepted, in the order of [`ProofKind::ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accept(Vec<ProofKind>);

impl Default for Accept {
    /// The kinds on by default.
    fn default() -> Self {
        Self(
            ProofKind::ALL
                .iter()
                .copied()
                .filter(|k| k.default_on())
                .collect(),
        )
    }
}

impl Accept {
    /// Exactly `kinds`.
    pub fn of(kinds: &[ProofKind]) -> Self {
        Self(
            ProofKind::ALL
                .iter()
                .copied()
                .filter(|k| kinds.contains(k))
                .collect(),
        )
    }

    /// Whether `kind` is accepted.
    pub fn contains(&self, kind: ProofKind) -> bool {
        self.0.contains(&kind)
    }

    /// The kinds accepted.
    pub fn kinds(&self) -> &[ProofKind] {
        &self.0
    }

    /// Their names, for messages.
    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|k| k.name()).collect()
    }
}

/// What a request proved: one instance, by one or more proofs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Who.
    pub instance: Instance,
    /// The earliest `notAfter` of the certificates that proved it.
    pub not_after: i64,
    /// The proofs, by name.
    pub proofs: Vec<&'static str>,
    /// The assertions' ids and expiries.
    pub jtis: Vec<(String, i64)>,
}

/// Verifies every accepted proof the request carries; they must name one instance.
pub fn prove(accept: &Accept, req: &Presented<'_>, v: &Verifier<'_>) -> Result<Identity, Refusal> {
    let mut identity: Option<Identity> = None;
    for kind in accept.kinds() {
        let Some(proven) = kind.verify(req, v) else {
            continue;
        };
        let proven = proven?;
        match &mut identity {
            None => {
                identity = Some(Identity {
                    instance: proven.instance,
                    not_after: proven.not_after,
                    proofs: vec![kind.name()],
                    jtis: proven.jti.into_iter().collect(),
                });
            }
            Some(id) if id.instance == proven.instance => {
                id.not_after = id.not_after.min(proven.not_after);
                id.proofs.push(kind.name());
                id.jtis.extend(proven.jti);
            }
            Some(_) => return Err(Refusal::Disagree),
        }
    }
    identity.ok_or_else(|| Refusal::NoProof {
        hint: accept.kinds().first().map_or("a proof", |k| k.how()),
        accepted: accept.names().join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_two_that_prove_the_key() {
        assert_eq!(
            Accept::default().kinds(),
            [ProofKind::Assertion, ProofKind::Mtls]
        );
        assert_eq!(
            Accept::of(&[ProofKind::Xfcc, ProofKind::Assertion]).names(),
            ["assertion", "xfcc"]
        );
        for kind in ProofKind::ALL {
            use clap::ValueEnum as _;
            let value = kind.to_possible_value().expect("a value");
            assert_eq!(
                value.get_name(),
                kind.name(),
                "--accept names it as it names itself"
            );
        }
    }
}
