//! Role chaining: a role reached through another. The first link is any role (its identity
//! gives it credentials); the chained role is assumed with `AssumeRole`, signed with the first
//! link's credentials, typically in another account. AWS caps a chained session at one hour, so
//! a longer duration is clamped and said once (a configuration warning).

use super::file::{self, File};
use super::{RoleBackend, RoleConfig};
use crate::checker::{Checker, Layer, Origins};

/// The alias of the first link `--via-role-arn` adds.
pub(super) const VIA_ALIAS: &str = "via";
use crate::backend::MAX_CHAINED_SECS;

/// `--via-role-arn ARN`: the default role is reached through a new role `via` with that ARN,
/// which takes the identity source the flags gave the default role.
pub(super) fn layer_via(
    c: &mut Checker<'_>,
    o: &Origins,
    data: &mut File,
    via_arn: &Option<String>,
) {
    if via_arn.is_none() {
        return;
    }
    let i = data.roles.len();
    let mut first = file::Role::default();
    first.alias.set(VIA_ALIAS.to_owned());
    first.source = std::mem::take(&mut data.roles[0].source);
    let mut l = Layer::new(c, o, &format!("role[{i}]"));
    l.set(&mut first.arn, "arn", via_arn, "via_role_arn");
    data.roles.push(first);
    data.roles[0].via.set(VIA_ALIAS.to_owned());
}

/// The chain settings of the role at `path`, if it names a `via` role; problems for what a
/// chained role cannot also have.
pub(super) fn spec(c: &mut Checker<'_>, path: &str, role: &file::Role) -> Option<RoleBackend> {
    let via = c.text(&format!("{path}.via"), &role.via)?;
    for (key, field) in [
        ("source", &role.source),
        ("trust_anchor_arn", &role.trust_anchor_arn),
        ("profile_arn", &role.profile_arn),
    ] {
        if field.is_present() {
            c.problem(
                &format!("{path}.{key}"),
                format!(
                    "a chained role is assumed with the credentials of role {via:?}: remove \
                     {key} (it belongs to the first link)"
                ),
            );
        }
    }
    let key = format!("{path}.external_id");
    let external_id = c.text(&key, &role.external_id);
    if let Some(id) = &external_id {
        let ok = (2..=1224).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@:/-_".contains(&b));
        if !ok {
            c.problem(
                &key,
                "must be 2-1224 characters of A-Z a-z 0-9 + = , . @ : / - _ (what STS accepts)",
            );
        }
    }
    Some(RoleBackend::Chained {
        via,
        external_id: external_id.map(super::ExternalId::new),
    })
}

/// Checks every chain once all roles are known: `via` names another role, chains end (no
/// loop), and a chained session asks for at most an hour.
pub(super) fn resolve(c: &mut Checker<'_>, roles: &mut [RoleConfig]) {
    let aliases: Vec<String> = roles.iter().map(|r| r.alias.clone()).collect();
    for (i, role) in roles.iter_mut().enumerate() {
        let RoleBackend::Chained { via, .. } = &role.backend else {
            continue;
        };
        let key = format!("role[{i}].via");
        if *via == role.alias || !aliases.contains(via) {
            c.problem(
                &key,
                format!(
                    "names no other role: {via:?} (roles: {})",
                    aliases.join(", ")
                ),
            );
            continue;
        }
        if role.duration.as_secs() > MAX_CHAINED_SECS {
            c.warn(format!(
                "role {} is reached through {via:?}: AWS caps a chained session at one hour, so \
                 its duration is {MAX_CHAINED_SECS} s instead of {} s",
                role.alias,
                role.duration.as_secs()
            ));
            role.duration = std::time::Duration::from_secs(MAX_CHAINED_SECS);
        }
    }
    // A loop (a via b, b via a) would never get credentials.
    for (i, role) in roles.iter().enumerate() {
        let mut seen = vec![role.alias.as_str()];
        let mut at = role;
        while let RoleBackend::Chained { via, .. } = &at.backend {
            let Some(next) = roles.iter().find(|r| r.alias == *via) else {
                break;
            };
            if seen.contains(&next.alias.as_str()) {
                c.problem(
                    &format!("role[{i}].via"),
                    format!("the chain loops: {} -> {}", seen.join(" -> "), next.alias),
                );
                break;
            }
            seen.push(&next.alias);
            at = next;
        }
    }
}
