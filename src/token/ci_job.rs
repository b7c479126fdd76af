//! What the GitLab CI and CircleCI sources share: the job's ID token comes in an environment
//! variable, set by the CI system when the job starts, and nothing inside the job can renew it.
//!
//! The token is read once, with the configuration, and served until its `exp`; after that the
//! cache refuses it as expired with [`stale_hint`], which says to rerun the job (a retry of a
//! step in the same job gets the same token). `check` prints when it expires.

use super::{Error, IdentityToken, decode_claims};

/// Reads the token from the first of `names` that is set and not blank; `None` when none is.
/// A value that is not a JWT is kept as it is: STS will say what is wrong with it, and `check`
/// says it is not a JWT.
pub(super) fn read(
    c: &crate::checker::Checker<'_>,
    names: &[&str],
) -> Option<(String, IdentityToken)> {
    names.iter().find_map(|name| {
        c.var(name)
            .filter(|v| !v.trim().is_empty())
            .map(|v| ((*name).to_owned(), IdentityToken::new(v.trim())))
    })
}

/// When the token expires, in words, for `describe` (no claim but `exp` is shown).
pub(super) fn expiry(token: &IdentityToken) -> String {
    match decode_claims(token.expose()) {
        Ok(claims) => format!(
            "expires {} (renewed only by rerunning the job)",
            crate::clock::format_rfc3339(claims.exp)
        ),
        Err(_) => "is not a JWT".to_owned(),
    }
}

/// What to do about the job's token once it has expired.
pub(super) fn stale_hint(system: &str, variable: &str) -> String {
    format!(
        "{system} sets {variable} when the job starts and nothing can renew it inside the job: \
         rerun the job (retrying a step reuses the expired token), or keep what needs AWS within \
         the token's lifetime"
    )
}

/// The token, as long as the cache takes it (it refuses it once expired).
pub(super) fn fetch(token: &IdentityToken) -> Result<IdentityToken, Error> {
    Ok(token.clone())
}
