//! `[identity_tokens]` (and `--token-audience`): which audiences the identity-token endpoint
//! serves, and from which source. The allow-list is the point: an app can only have tokens for
//! the relying parties its configuration names.

use super::file::IdentityTokens;
use super::{IdentityTokensConfig, RoleBackend, RoleConfig, SourceConfig};
use crate::checker::Checker;

/// The audience Azure's workload identity expects by default.
pub(super) const AZURE_AUDIENCE: &str = "api://AzureADTokenExchange";

/// At most this many audiences (each has its own cache).
const MAX_AUDIENCES: usize = 32;

/// Checks the section; `None` when no audience is configured (the endpoint answers 404).
pub(super) fn check(
    c: &mut Checker<'_>,
    spec: &IdentityTokens,
    roles: &[RoleConfig],
    sources: &[SourceConfig],
) -> Option<IdentityTokensConfig> {
    let key = "identity_tokens.audiences";
    let mut audiences = c.value(key, &spec.audiences).unwrap_or_default();
    let mut files = Vec::new();
    if let Some(path) = c.path("identity_tokens.azure_token_file", &spec.azure_token_file) {
        let audience = c
            .text("identity_tokens.azure_audience", &spec.azure_audience)
            .unwrap_or_else(|| AZURE_AUDIENCE.to_owned());
        // The file's audience is served by the endpoint too: it is on the allow-list.
        audiences.push(audience.clone());
        files.push((path, audience));
    }
    if audiences.is_empty() {
        return None;
    }
    let mut ok = Vec::new();
    for aud in audiences {
        let aud = aud.trim().to_owned();
        if aud.is_empty() || aud.len() > 1024 || aud.chars().any(char::is_control) {
            c.problem(
                key,
                format!("{aud:?}: an audience is 1-1024 characters, no control characters"),
            );
        } else if !ok.contains(&aud) {
            ok.push(aud);
        }
    }
    if ok.len() > MAX_AUDIENCES {
        c.problem(
            key,
            format!("at most {MAX_AUDIENCES} audiences, got {}", ok.len()),
        );
    }
    let source_key = "identity_tokens.source";
    let source = match c.text(source_key, &spec.source) {
        Some(name) => name,
        None => match default_source(roles) {
            Some(name) => name,
            None => {
                c.problem(
                    source_key,
                    "not set, and the default role has no identity source (a Roles Anywhere \
                     role): name a [source.NAME]",
                );
                return None;
            }
        },
    };
    if !sources.iter().any(|s| s.name == source) {
        let known: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
        c.problem(
            source_key,
            format!(
                "no source named {source:?} (configured: {})",
                known.join(", ")
            ),
        );
        return None;
    }
    Some(IdentityTokensConfig {
        source,
        audiences: ok,
        files,
    })
}

/// The default role's source, through its chain's first links.
fn default_source(roles: &[RoleConfig]) -> Option<String> {
    let mut role = roles.first()?;
    for _ in 0..roles.len() {
        match &role.backend {
            RoleBackend::WebIdentity { source } => return Some(source.clone()),
            RoleBackend::RolesAnywhere(_) => return None,
            RoleBackend::Chained { via, .. } => role = roles.iter().find(|r| r.alias == *via)?,
        }
    }
    None
}
