//! `check` for the identity tokens other relying parties get: for each configured audience, the
//! token the sidecar would serve (its claims, never the token) and what the relying party must
//! hold to accept it: Google's workload identity pool provider, Azure's federated identity
//! credential, or any other JWT verifier (Vault's JWT auth role).

use std::sync::Arc;

use super::Report;
use crate::config::{Config, IdentityTokensConfig};
use crate::metrics::Metrics;
use crate::token::audiences::Audiences;
use crate::token::decode_claims;

/// Prints one block per audience; false when a token could not be had.
pub(super) async fn check(
    out: &mut Report,
    config: &Config,
    tokens: &IdentityTokensConfig,
) -> bool {
    let Some(source) = config.source(&tokens.source) else {
        return false;
    };
    out.line(format!(
        "\nidentity tokens (/v1/identity-token), from source {}",
        tokens.source
    ));
    let audiences = Audiences::new(
        &tokens.source,
        source.settings.clone(),
        tokens.audiences.clone(),
        Arc::new(Metrics::new()),
    );
    let mut ok = true;
    for audience in &tokens.audiences {
        let claims = match audiences.token(audience).await {
            Ok(t) => decode_claims(t.token.expose()).ok(),
            Err(e) => {
                ok = false;
                out.line(format!("  FAIL  {audience}: {}", crate::report::chain(&e)));
                continue;
            }
        };
        let Some(claims) = claims else { continue };
        let iss = claims.iss.clone().unwrap_or_default();
        let sub = claims.sub.clone().unwrap_or_default();
        out.line(format!("  ok    {audience}"));
        out.line(format!("        iss         {iss}"));
        out.line(format!("        sub         {sub}"));
        for line in relying_party(audience, &iss, &sub) {
            out.line(format!("        {line}"));
        }
    }
    ok
}

/// What the relying party for `audience` must say to accept a token from `iss` for `sub`.
fn relying_party(audience: &str, iss: &str, sub: &str) -> Vec<String> {
    if let Some(provider) = audience.strip_prefix("//iam.googleapis.com/") {
        let pool = provider
            .rsplit_once("/providers/")
            .map_or(provider, |(p, _)| p);
        vec![
            format!("Google: the pool provider {provider} has --issuer-uri {iss}"),
            "Google: its allowed audiences include the provider's own name (the default)"
                .to_owned(),
            format!(
                "Google: google.subject=assertion.sub maps to {sub:?}; grant roles to \
                 principal://iam.googleapis.com/{pool}/subject/{sub}"
            ),
        ]
    } else if audience == "api://AzureADTokenExchange" {
        vec![format!(
            "Azure: a federated identity credential with issuer {iss}, subject {sub:?}, \
             audiences [{audience}]"
        )]
    } else {
        vec![format!(
            "any JWT verifier (Vault's JWT auth role): discovery at {iss}, bound_audiences \
             {audience:?}, and a bound claim or subject matching {sub:?}"
        )]
    }
}
