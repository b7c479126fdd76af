//! The token grant, as a pipeline of short steps: read the form, verify the proofs, refuse a
//! replay, apply the policy (organizations, spaces, audiences), spend the instance's budget
//! (remembering its assertions), sign. Each step can refuse; none after the proofs looks at how
//! the identity was proven.

use rustls_pki_types::CertificateDer;

use super::Issuer;
use super::claims;
use super::form::Form;
use super::proof::{self, Identity, Presented, Verifier};
use super::refusal::Refusal;
use super::settings::Settings;
use crate::report::Untrusted;

/// A token issued.
#[derive(Debug)]
pub(super) struct Issued {
    /// The JWT.
    pub(super) token: String,
    /// Its audience.
    pub(super) audience: String,
    /// Who it was issued to, and how they proved it.
    pub(super) identity: Identity,
    /// Its `exp`, and whether the certificate's end shortened it.
    pub(super) exp: i64,
}

/// A refusal, and the identity the request proved before it was refused (for the log).
#[derive(Debug)]
pub(super) struct Refused {
    /// Why.
    pub(super) refusal: Refusal,
    /// Who, when a proof had checked out.
    pub(super) identity: Option<Box<Identity>>,
}

impl From<Refusal> for Refused {
    fn from(refusal: Refusal) -> Self {
        Self {
            refusal,
            identity: None,
        }
    }
}

/// Runs the pipeline for one request (head `parts`, `body`, the TLS client chain `peer`) at
/// `now_ms` (Unix milliseconds).
pub(super) fn grant(
    issuer: &Issuer,
    parts: &http::request::Parts,
    body: &[u8],
    peer: Option<&[CertificateDer<'static>]>,
    now_ms: i64,
) -> Result<Issued, Refused> {
    let s = &issuer.settings;
    let now = now_ms.div_euclid(1000);
    let form = Form::read(parts, body)?;
    let material = issuer.material.load();
    let identity = proof::prove(
        &s.accept,
        &Presented {
            headers: &parts.headers,
            form: &form,
            peer,
        },
        &Verifier {
            chains: &material.chains,
            now,
            audiences: &issuer.assertion_audiences,
        },
    )?;
    let refused = |refusal: Refusal, identity: &Identity| Refused {
        refusal,
        identity: Some(Box::new(identity.clone())),
    };
    for (jti, _) in &identity.jtis {
        issuer
            .tenants
            .check_replay(jti, now_ms)
            .map_err(|r| refused(r, &identity))?;
    }
    let audience =
        policy(s, &identity, form.audience.as_deref()).map_err(|r| refused(r, &identity))?;
    issuer
        .tenants
        .spend(&identity.instance.instance, &identity.jtis, now_ms)
        .map_err(|r| refused(r, &identity))?;
    let claims = claims::claims(s, &identity.instance, identity.not_after, &audience, now);
    let exp = claims["exp"].as_i64().unwrap_or(now);
    let token = claims::sign(&material.signer, &claims).map_err(|e| {
        tracing::error!(error = %e, "cannot sign a token");
        refused(Refusal::Internal, &identity)
    })?;
    Ok(Issued {
        token,
        audience,
        identity,
        exp,
    })
}

/// Whether the instance may have a token, and for which audience: its organization and space
/// on the allow-lists (when there are any), and the audience asked for (or the default) on the
/// audience allow-list.
pub(super) fn policy(
    s: &Settings,
    identity: &Identity,
    asked: Option<&str>,
) -> Result<String, Refusal> {
    let instance = &identity.instance;
    if !s.allow_orgs.is_empty() && !s.allow_orgs.contains(&instance.org) {
        return Err(Refusal::Org(instance.org.clone()));
    }
    if !s.allow_spaces.is_empty() && !s.allow_spaces.contains(&instance.space) {
        return Err(Refusal::Space(instance.space.clone()));
    }
    match asked {
        None => Ok(s.audiences.first().cloned().unwrap_or_default()),
        Some(a) if s.audiences.iter().any(|allowed| allowed == a) => Ok(a.to_owned()),
        Some(a) => Err(Refusal::AudienceNotAllowed(Untrusted::new(a))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issuer::ca::Instance;

    fn settings() -> Settings {
        crate::issuer::testing_settings()
    }

    fn identity() -> Identity {
        Identity {
            instance: Instance {
                org: "0000aaaa".into(),
                space: "1111bbbb".into(),
                app: "2222cccc".into(),
                instance: "3333dddd".into(),
            },
            not_after: 2_000_000_000,
            proofs: vec!["assertion"],
            jtis: Vec::new(),
        }
    }

    #[test]
    fn the_policy_checks_orgs_spaces_and_audiences() {
        let mut s = settings();
        s.audiences = vec!["sts.amazonaws.com".into(), "vault".into()];
        assert_eq!(policy(&s, &identity(), None).unwrap(), "sts.amazonaws.com");
        assert_eq!(policy(&s, &identity(), Some("vault")).unwrap(), "vault");
        assert!(matches!(
            policy(&s, &identity(), Some("other")),
            Err(Refusal::AudienceNotAllowed(_))
        ));
        s.allow_spaces = vec!["1111bbbb".into()];
        assert!(policy(&s, &identity(), None).is_ok());
        s.allow_spaces = vec!["9999".into()];
        assert_eq!(
            policy(&s, &identity(), None),
            Err(Refusal::Space("1111bbbb".into()))
        );
        s.allow_orgs = vec!["9999".into()];
        assert_eq!(
            policy(&s, &identity(), None),
            Err(Refusal::Org("0000aaaa".into()))
        );
    }

    #[test]
    fn a_token_never_outlives_the_certificate_that_proved_it() {
        // See: issue #23 item 6 (a certificate expiring in 89 s yielded a 3,600 s token).
        let s = settings();
        let id = identity();
        let now = 1_800_000_000;
        let c = claims::claims(&s, &id.instance, now + 89, "sts.amazonaws.com", now);
        assert_eq!(c["exp"].as_i64(), Some(now + 89));
        let c = claims::claims(&s, &id.instance, now + 86_400, "sts.amazonaws.com", now);
        assert_eq!(c["exp"].as_i64(), Some(now + 3600));
        assert_eq!(c["sub"], "0000aaaa:1111bbbb:2222cccc");
    }

    #[test]
    fn session_tags_and_source_identity_each_alone() {
        let mut s = settings();
        let id = identity();
        s.session_tags = true;
        let c = claims::claims(&s, &id.instance, 2_000_000_000, "a", 1_800_000_000);
        assert_eq!(
            c["https://aws.amazon.com/tags"]["principal_tags"]["org_guid"],
            serde_json::json!(["0000aaaa"])
        );
        assert!(c.get("https://aws.amazon.com/source_identity").is_none());
        s.session_tags = false;
        s.source_identity = true;
        let c = claims::claims(&s, &id.instance, 2_000_000_000, "a", 1_800_000_000);
        assert!(c.get("https://aws.amazon.com/tags").is_none());
        assert_eq!(c["https://aws.amazon.com/source_identity"], "3333dddd");
    }
}
