//! The trust policy of a chained role: `check --trust-policy FILE --role <chained>` says whether
//! it lets the first link's role session `sts:AssumeRole` it, and which statement or condition
//! does not.
//!
//! An `AWS` principal matches the first link as IAM matches it: the role's ARN (any of its
//! sessions), the session's own `arn:aws:sts::<account>:assumed-role/<name>/<session>`, the
//! account (`arn:aws:iam::<account>:root` or the bare 12 digits; the first link's permissions
//! must then allow the call too), or `*`. Conditions on `sts:ExternalId`, `aws:PrincipalArn`
//! and `aws:PrincipalAccount` are evaluated; others are reported as not evaluated.

use serde_json::Value;

use super::{PolicyError, Verdict, holds, statements, strings};

/// The session that calls `AssumeRole`: the first link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstLink {
    /// Its role ARN.
    pub role_arn: String,
    /// Its account.
    pub account: String,
    /// Its session name.
    pub session_name: String,
}

impl FirstLink {
    /// `arn:aws:sts::<account>:assumed-role/<role name>/<session>`.
    pub fn session_arn(&self) -> String {
        let name = self.role_arn.rsplit('/').next().unwrap_or("");
        let partition = self.role_arn.split(':').nth(1).unwrap_or("aws");
        format!(
            "arn:{partition}:sts::{}:assumed-role/{name}/{}",
            self.account, self.session_name
        )
    }

    fn is(&self, principal: &str) -> bool {
        let partition = self.role_arn.split(':').nth(1).unwrap_or("aws");
        principal == "*"
            || principal == self.role_arn
            || principal == self.session_arn()
            || principal == self.account
            || principal == format!("arn:{partition}:iam::{}:root", self.account)
    }
}

/// Evaluates `policy` for `AssumeRole` by `first`, with `external_id` sent (or none).
pub fn evaluate(
    policy: &str,
    first: &FirstLink,
    external_id: Option<&str>,
) -> Result<Verdict, PolicyError> {
    let mut lines = Vec::new();
    let mut allowed = false;
    for (i, st) in statements(policy)?.iter().enumerate() {
        let at = format!("statement {i}");
        if st.get("Effect").and_then(Value::as_str) != Some("Allow") {
            lines.push(format!("{at}: not an Allow statement"));
            continue;
        }
        let actions = strings(st.get("Action"));
        if !actions
            .iter()
            .any(|a| a == "*" || a == "sts:*" || a.eq_ignore_ascii_case("sts:AssumeRole"))
        {
            lines.push(format!(
                "{at}: its Action ({}) is not sts:AssumeRole",
                actions.join(", ")
            ));
            continue;
        }
        let principal = st.get("Principal");
        let aws = match principal {
            Some(Value::String(s)) if s == "*" => vec!["*".to_owned()],
            other => strings(other.and_then(|p| p.get("AWS"))),
        };
        if !aws.iter().any(|p| first.is(p)) {
            lines.push(format!(
                "{at}: its AWS principal ({}) is not the first link {} (nor its session, nor \
                 its account)",
                if aws.is_empty() {
                    "none".to_owned()
                } else {
                    aws.join(", ")
                },
                first.role_arn
            ));
            continue;
        }
        let mut failed = Vec::new();
        let mut unknown = Vec::new();
        if let Some(Value::Object(ops)) = st.get("Condition") {
            for (op, keys) in ops {
                let Value::Object(keys) = keys else { continue };
                for (key, wanted) in keys {
                    let wanted = strings(Some(wanted));
                    let value = match key.to_ascii_lowercase().as_str() {
                        "sts:externalid" => Some(external_id.map(str::to_owned)),
                        "aws:principalarn" => Some(Some(first.role_arn.clone())),
                        "aws:principalaccount" => Some(Some(first.account.clone())),
                        _ => None,
                    };
                    let Some(value) = value else {
                        unknown.push(format!("{op} {key}"));
                        continue;
                    };
                    match holds(op, &wanted, value.clone().map(|v| vec![v])) {
                        Some(true) => {}
                        Some(false) => failed.push(format!(
                            "{op} {key} {wanted:?} does not match {}",
                            value.map_or("(none sent)".to_owned(), |v| {
                                if key.eq_ignore_ascii_case("sts:ExternalId") {
                                    "the configured external ID".to_owned()
                                } else {
                                    format!("{v:?}")
                                }
                            })
                        )),
                        None => unknown.push(format!("{op} {key}")),
                    }
                }
            }
        }
        if failed.is_empty() && unknown.is_empty() {
            allowed = true;
            lines.push(format!("{at}: allows {}", first.session_arn()));
        } else if failed.is_empty() {
            lines.push(format!(
                "{at}: principal and action match; not evaluated: {}",
                unknown.join("; ")
            ));
        } else {
            lines.push(format!("{at}: condition {}", failed.join("; and ")));
        }
    }
    Ok(Verdict { allowed, lines })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> FirstLink {
        FirstLink {
            role_arn: "arn:aws:iam::111111111111:role/app".into(),
            account: "111111111111".into(),
            session_name: "app-0".into(),
        }
    }

    #[test]
    fn a_chained_roles_trust_policy_is_evaluated_for_the_first_links_session() {
        // See: issue #25.
        let policy = |principal: &str, condition: &str| {
            format!(
                r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow",
                "Principal":{{"AWS":"{principal}"}},"Action":"sts:AssumeRole"{condition}}}]}}"#
            )
        };
        let ext = r#","Condition":{"StringEquals":{"sts:ExternalId":"ext-4f2a"}}"#;
        for principal in [
            "arn:aws:iam::111111111111:role/app",
            "arn:aws:sts::111111111111:assumed-role/app/app-0",
            "arn:aws:iam::111111111111:root",
            "111111111111",
        ] {
            let v = evaluate(&policy(principal, ext), &app(), Some("ext-4f2a")).unwrap();
            assert!(v.allowed, "{principal}: {v:?}");
        }
        let v = evaluate(
            &policy("arn:aws:iam::111111111111:role/app", ext),
            &app(),
            None,
        )
        .unwrap();
        assert!(!v.allowed && v.lines[0].contains("(none sent)"), "{v:?}");
        let v = evaluate(
            &policy("arn:aws:iam::111111111111:role/app", ext),
            &app(),
            Some("other"),
        )
        .unwrap();
        assert!(
            !v.allowed
                && v.lines[0].contains("the configured external ID")
                && !v.lines[0].contains("other"),
            "{v:?}"
        );
        let v = evaluate(
            &policy("arn:aws:iam::333333333333:role/app", ""),
            &app(),
            None,
        )
        .unwrap();
        assert!(
            !v.allowed && v.lines[0].contains("is not the first link"),
            "{v:?}"
        );
        let web = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":"x"},"Action":"sts:AssumeRoleWithWebIdentity"}]}"#;
        let v = evaluate(web, &app(), None).unwrap();
        assert!(
            !v.allowed && v.lines[0].contains("is not sts:AssumeRole"),
            "{v:?}"
        );
    }
}
