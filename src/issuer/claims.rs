//! The token: its claims and its signature. Nothing here looks at how the identity was proven.

use super::ca::Instance;
use super::settings::Settings;
use crate::jws;

/// The claims of a token for `instance` and `audience` issued at `now` (Unix seconds). It
/// expires after `--lifetime`, or when the certificate that proved the identity does
/// (`not_after`), whichever comes first: a token never outlives its proof.
pub(super) fn claims(
    s: &Settings,
    instance: &Instance,
    not_after: i64,
    audience: &str,
    now: i64,
) -> serde_json::Value {
    let lifetime = i64::try_from(s.lifetime.as_secs()).unwrap_or(3600);
    let mut jti = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut jti).is_err() {
        jti = rand::random();
    }
    let mut claims = serde_json::json!({
        "iss": s.issuer_url,
        "sub": instance.subject(),
        "aud": audience,
        "iat": now,
        "exp": (now + lifetime).min(not_after),
        "jti": jws::b64url(&jti),
        "org_guid": instance.org,
        "space_guid": instance.space,
        "app_guid": instance.app,
        "instance_guid": instance.instance,
    });
    if s.session_tags {
        claims["https://aws.amazon.com/tags"] = serde_json::json!({
            "principal_tags": {
                "org_guid": [instance.org],
                "space_guid": [instance.space],
                "app_guid": [instance.app],
            }
        });
    }
    if s.source_identity {
        claims["https://aws.amazon.com/source_identity"] = instance.instance.clone().into();
    }
    claims
}

/// The signed token.
pub(super) fn sign(
    signer: &jws::Signer,
    claims: &serde_json::Value,
) -> Result<String, jws::SignError> {
    signer.sign(
        serde_json::json!({"kid": signer.public().kid(), "typ": "JWT"}),
        claims,
    )
}
