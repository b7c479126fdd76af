//! ARNs as the backends use them: IAM role ARNs (the role assumed) and Roles Anywhere trust
//! anchor and profile ARNs. Parsing only; nothing here calls AWS.

/// The six parts of an ARN: `arn`, partition, service, region, account, resource.
pub fn split(arn: &str) -> Option<[&str; 6]> {
    let mut parts = arn.splitn(6, ':');
    let mut out = [""; 6];
    for slot in &mut out {
        *slot = parts.next()?;
    }
    (out[0] == "arn").then_some(out)
}

/// The 12-digit account of an IAM role ARN, if `arn` is one.
pub fn role_account(arn: &str) -> Option<String> {
    let [_, partition, service, region, account, resource] = split(arn)?;
    if service != "iam" || !region.is_empty() {
        return None;
    }
    let name = resource.strip_prefix("role/")?;
    let name_ok = !name.is_empty()
        && name.len() <= 512
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b));
    let ok = partition.starts_with("aws") && is_account(account) && name_ok;
    ok.then(|| account.to_owned())
}

/// The region and account of a Roles Anywhere ARN of `kind` (`trust-anchor`, `profile`):
/// `arn:<partition>:rolesanywhere:<region>:<account>:<kind>/<id>`.
pub fn rolesanywhere<'a>(arn: &'a str, kind: &str) -> Option<(&'a str, &'a str)> {
    let [_, partition, service, region, account, res] = split(arn)?;
    if service != "rolesanywhere" {
        return None;
    }
    let id = res.strip_prefix(kind)?.strip_prefix('/')?;
    let ok = partition.starts_with("aws")
        && !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && is_account(account)
        && !id.is_empty()
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    ok.then_some((region, account))
}

fn is_account(account: &str) -> bool {
    account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_role_arns() {
        assert_eq!(
            role_account("arn:aws:iam::123456789012:role/x").as_deref(),
            Some("123456789012")
        );
        assert_eq!(
            role_account("arn:aws-cn:iam::123456789012:role/path/x").as_deref(),
            Some("123456789012")
        );
        assert_eq!(role_account("arn:aws:iam::12345678901:role/x"), None);
        assert_eq!(role_account("arn:aws:iam::123456789012:user/x"), None);
        assert_eq!(
            role_account("arn:aws:sts::123456789012:assumed-role/x/y"),
            None
        );
        assert_eq!(role_account("arn:aws:iam::123456789012:role/a b"), None);
    }

    #[test]
    fn parses_roles_anywhere_arns() {
        assert_eq!(
            rolesanywhere(
                "arn:aws:rolesanywhere:us-east-2:291738886548:trust-anchor/a545a1fc-5d86",
                "trust-anchor"
            ),
            Some(("us-east-2", "291738886548"))
        );
        assert_eq!(
            rolesanywhere(
                "arn:aws:rolesanywhere:us-east-2:291738886548:profile/x",
                "trust-anchor"
            ),
            None
        );
        assert_eq!(
            rolesanywhere("arn:aws:iam::291738886548:role/x", "profile"),
            None
        );
        assert_eq!(
            rolesanywhere("arn:aws:rolesanywhere:us-east-2:2917:profile/x", "profile"),
            None
        );
    }
}
